"""Complex input to ``logsumexp``, ``softmax`` and ``log_softmax``.

SciPy accepts complex arrays in these three functions; so does csoftmax, with
SciPy's results and special values.  This path is vectorised NumPy in
complex128, not a C kernel: complex inputs are rare, their cost is the complex
``exp``/``log`` NumPy already vectorises, and a fourth kernel family on three
ISA paths would add build time for little gain.  It does not depend on SciPy
(delegating to ``scipy.special`` would make the results depend on whether
SciPy is installed).  The real-valued paths never come here: the front end
routes by the dtype kind, after its fast paths.

The log-sum-exp of complex ``a`` (weights ``b``, real or complex):

* ``M`` is the element with the largest real part (the last one of a tie),
  ``m`` its weight (1 without ``b``); elements with ``b == 0`` are left out;
* ``s = sum_{k != M} b_k exp(a_k - M) / m``; the result is
  ``log1p(s) + log(m) + M``, so a small imaginary part keeps its relative
  precision and a large real part does not overflow;
* where that is not finite (infinite or NaN elements), the plain
  ``log(sum(b * exp(a)))`` is the result instead;
* the imaginary part of the result (with ``return_sign``: of the sign, the
  unit complex number ``sum / |sum|``) is wrapped into (-pi, pi].

Sums run in complex128 (complex64 input is computed in complex128 and the
result rounded once); clongdouble is computed in complex128 and returned as
clongdouble, as longdouble is on the real path.
"""
from __future__ import annotations

import math

import numpy as np

_C128 = np.dtype(np.complex128)


def complex_dtypes(dt: np.dtype) -> tuple[np.dtype, np.dtype]:
    """(compute dtype, result dtype) for a complex input dtype."""
    return _C128, (np.dtype(np.complex64) if dt == np.complex64 else np.dtype(dt))


def wrap_phase(x, *, xp=None):
    """Angles wrapped into (-pi, pi]: `x` itself where ``|x| < pi``.

    (``xp`` is accepted and ignored, for SciPy's ``_wrap_radians`` calling
    convention.)
    """
    x = np.asarray(x)
    with np.errstate(invalid="ignore"):
        wrapped = math.pi - np.mod(math.pi - x, 2 * math.pi)
    return np.where(np.abs(x) < math.pi, x, wrapped)


def _div_real(z: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``z / r`` for real ``r``, part by part: NumPy's complex division forms
    ``1 / r`` first, which overflows for a subnormal ``r``."""
    return z.real / r + 1j * (z.imag / r)


def _csign(z: np.ndarray) -> np.ndarray:
    """``z / |z|`` (0 where z == 0): SciPy's sign of a complex number, which is
    NaN for an infinite z (NumPy's ``np.sign`` would give a unit number).  A
    subnormal z still has a unit sign (SciPy's division overflows there)."""
    z = np.asarray(z)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = np.abs(z)
        ok = np.isfinite(r) & (r > 0)
        out = np.where(ok, _div_real(z, np.where(ok, r, 1.0)), z / r)
    return np.where(z == 0, 0j, out)


def _cdiv(s: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``s / m`` without the overflow of ``1 / m`` for a subnormal ``m``:
    ``(s * conj(m / |m|)) / |m|`` where ``|m|`` is finite and non-zero."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = np.abs(m)
        ok = np.isfinite(r) & (r > 0)
        r1 = np.where(ok, r, 1.0)
        q = _div_real(s * np.conj(_div_real(m, r1)), r1)
        return np.where(ok, q, s / m)


def _as_complex(v: np.ndarray, cdt: np.dtype) -> np.ndarray:
    return v.astype(cdt) if v.dtype != cdt else v


def _with_phase(re: np.ndarray, im: np.ndarray) -> np.ndarray:
    """``re + i * wrap(im)`` formed as complex arithmetic (SciPy's rules: a NaN
    imaginary part makes the whole value NaN)."""
    return re + wrap_phase(im).astype(_C128) * 1j


def _rows(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """(batch, reduced) view/copy of `a`, batch axes in order."""
    keep = [i for i in range(a.ndim) if i not in axes]
    t = np.transpose(a, keep + list(axes))
    nb = math.prod(a.shape[i] for i in keep)
    return t.reshape(nb, -1)


def logsumexp(a: np.ndarray, b: np.ndarray | None, axes: tuple[int, ...],
              return_sign: bool):
    """(res, sign or None) over `axes` of complex-promoted `a` (and `b`),
    both already broadcast, at least 1-d; shapes are the batch shape (the
    caller applies keepdims, out= and the result dtype)."""
    cdt = _C128
    batch = tuple(n for i, n in enumerate(a.shape) if i not in axes)
    a2 = _rows(_as_complex(a, cdt), axes)
    b2 = None if b is None else _rows(_as_complex(b, cdt), axes)
    if a2.shape[1] == 0 or a2.shape[0] == 0:
        res = np.full(batch, -np.inf, dtype=cdt)
        with np.errstate(invalid="ignore"):
            sgn = _csign(res)
        if return_sign:
            return res.real.copy(), _with_phase(sgn.real, sgn.imag)
        return _with_phase(res.real, res.imag), None
    with np.errstate(all="ignore"):
        # the plain sum: the result where the stable form is not finite
        plain = np.exp(a2) if b2 is None else b2 * np.exp(a2)
        tot = plain.sum(axis=1)
        sgn_plain = _csign(tot) if return_sign else None
        res_plain = np.log(np.abs(tot) if return_sign else tot)

        x = a2 if b2 is None else np.where(b2 == 0, complex(-np.inf, 0.0), a2)
        re = x.real
        rmax = re.max(axis=1, keepdims=True)
        hit = re == rmax
        nr, nc = x.shape
        rows = np.arange(nr)
        # the last element with the largest real part (none: a NaN row)
        last = nc - 1 - np.argmax(hit[:, ::-1], axis=1)
        has = hit[rows, last]
        amax = np.where(has, x[rows, last], x.sum(axis=1))
        rest = x.copy()
        rest[rows[has], last[has]] = complex(-np.inf, 0.0)
        if b2 is None:
            m = np.ones(nr, dtype=cdt)
            e = np.exp(rest - amax[:, None])
        else:
            m = np.where(has, b2[rows, last], (b2 * hit).sum(axis=1))
            e = b2 * np.exp(rest - amax[:, None])
        s = e.sum(axis=1)
        s = np.where(s == 0, s, _cdiv(s, m))
        sgn = _csign(s + 1) * _csign(m) * np.exp(1j * amax.imag)
        res = np.log1p(s) + np.log(m) + amax
        if return_sign:
            res = res.real
        fin = np.isfinite(res)
        res = np.where(fin, res, res_plain)
        if return_sign:
            sgn = np.where(fin, sgn, sgn_plain)
            return res.reshape(batch), _with_phase(sgn.real, sgn.imag).reshape(batch)
        return _with_phase(res.real, res.imag).reshape(batch), None


def softmax(x: np.ndarray, axes: tuple[int, ...], log: bool) -> np.ndarray:
    """softmax / log_softmax of complex `x` (at least 1-d) over `axes`, in
    complex128: shifted by the largest element in NumPy's complex order
    (real part, then imaginary), as SciPy does."""
    xc = _as_complex(x, _C128)
    if xc.size == 0:
        return xc.copy()
    with np.errstate(all="ignore"):
        xm = np.max(xc, axis=axes, keepdims=True)
        if not log:
            e = np.exp(xc - xm)
            return e / e.sum(axis=axes, keepdims=True)
        xm = np.where(np.isfinite(xm), xm, 0)
        t = xc - xm
        return t - np.log(np.exp(t).sum(axis=axes, keepdims=True))

"""NumPy-style front end: dtype policy, axes, outputs, aliasing.

Everything NumPy-level is settled here; ``_core`` then only sees aligned,
native-endian float32/float64 row views ``(n0, n1, c)`` whose strides are
whole elements, and the C kernels loop over those rows with the GIL released.

Row views.  For a single class axis ``a`` of an array of shape ``S`` the rows
are the grid ``(prod(S[:a]), prod(S[a+1:]))`` and the view is
``reshape(n0, c, n1).transpose(0, 2, 1)``: no copy for any C-ordered array and
for most views, including PyTorch's ``(N, C, d1, ...)`` with ``axis=1``.  For
several axes (or ``axis=None``) the reduced axes are moved last and merged.
Only when NumPy cannot express that grouping as a view (or the data is
misaligned, byte-swapped or of another dtype) is a contiguous copy made.
"""
from __future__ import annotations

import copy
import math
import operator

import numpy as np
from numpy.exceptions import AxisError
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from . import _complex, _core

__all__ = [
    "logsumexp",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "cross_entropy_with_grad",
]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_REDUCTIONS = ("none", "sum", "mean")


# --------------------------------------------------------------------------- dtypes

def _is_half(dt: np.dtype) -> bool:
    """float16, or bfloat16 (ml_dtypes' dtype, recognised by its name: ml_dtypes
    is never imported here)."""
    return dt.itemsize == 2 and (dt.char == "e" or dt.name == "bfloat16")


def _dtypes(dt: np.dtype, what: str) -> tuple[np.dtype, np.dtype]:
    """(compute dtype, result dtype) for an input dtype.

    float32 and float64 are kept; float16 and bfloat16 are computed in float32
    and returned in their own dtype (logsumexp, softmax, log_softmax and the
    cross-entropy read and write them directly: _kernel_dtype); integers
    become float64; longdouble is computed in float64 and returned as
    longdouble.  Anything else (complex, bool, object, strings, datetimes)
    raises TypeError.
    """
    if dt == _F32 or dt == _F64:
        return dt, dt
    if _is_half(dt):
        return _F32, dt
    kind = dt.kind
    if kind == "f":
        if dt.itemsize <= 4:
            return _F32, dt
        return _F64, dt
    if kind in "iu":
        return _F64, _F64
    if kind == "c":
        raise TypeError(f"{what}: complex input is not supported (got {dt})")
    raise TypeError(f"{what}: expected a real floating or integer array, got dtype {dt}")


def _kernel_dtype(cdt: np.dtype, rdt: np.dtype) -> np.dtype:
    """The dtype the row kernels read and write: the 16-bit dtype itself for
    float16 / bfloat16 results (src_c/kernels_half.h), else the compute dtype."""
    return rdt if _is_half(rdt) else cdt


def _row_dtype(rdt: np.dtype, dtype, what: str) -> np.dtype:
    """The dtype of per-row results (log-sum-exp, loss): `dtype` if given, else
    float32 for float16 / bfloat16 input (a 16-bit loss is too coarse to
    train or evaluate with), else the result dtype."""
    if dtype is None:
        return _F32 if _is_half(rdt) else rdt
    d = np.dtype(dtype)
    if d.kind != "f" and not _is_half(d):
        raise TypeError(f"{what}: dtype must be a floating dtype, got {d}")
    return d


def _native(a: np.ndarray, cdt: np.dtype) -> np.ndarray:
    """`a` as an aligned, native-endian array of dtype `cdt` (a view when possible)."""
    if a.dtype != cdt:
        return a.astype(cdt)
    if not a.flags.aligned:
        return a.copy()
    return a


# --------------------------------------------------------------------------- row views

def _rows3(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray | None:
    """The (n0, n1, c) row view of `a` for class axes `axes`, or None if a copy is needed."""
    shape = a.shape
    try:
        if len(axes) == 1:
            ax = axes[0]
            n0 = math.prod(shape[:ax])
            n1 = math.prod(shape[ax + 1:])
            v = np.reshape(a, (n0, shape[ax], n1), copy=False)
            v = v.transpose(0, 2, 1)
        else:
            k = len(axes)
            moved = np.moveaxis(a, axes, tuple(range(a.ndim - k, a.ndim)))
            nb = math.prod(moved.shape[: a.ndim - k])
            c = math.prod(moved.shape[a.ndim - k:])
            v = np.reshape(moved, (nb, 1, c), copy=False)
    except ValueError:
        return None
    item = a.itemsize
    if any(s % item for s in v.strides):
        return None
    return v


def _moved_shape(shape, axes):
    """(moved shape, source positions, destination positions) for class axes last."""
    k, nd = len(axes), len(shape)
    dest = tuple(range(nd - k, nd))
    moved = tuple(n for i, n in enumerate(shape) if i not in axes) + tuple(shape[i] for i in axes)
    return moved, dest


def _rows3_in(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Row view of an input; copies (classes last, C order) when no view exists."""
    v = _rows3(a, axes)
    if v is None:
        if len(axes) == 1:
            v = _rows3(np.ascontiguousarray(a), axes)
        else:
            moved = np.ascontiguousarray(np.moveaxis(a, axes, _moved_shape(a.shape, axes)[1]))
            nb = math.prod(moved.shape[: a.ndim - len(axes)])
            v = moved.reshape(nb, 1, -1)
    return v


def _alloc_rows(shape, dtype, axes):
    """A new array of `shape` and its row view.

    C order when that has a row view (always for one class axis); otherwise
    the memory is laid out classes-last and a transposed view is returned.
    """
    y = np.empty(shape, dtype=dtype)
    v = _rows3(y, axes)
    if v is not None:
        return y, v
    mshape, dest = _moved_shape(shape, axes)
    ym = np.empty(mshape, dtype=dtype)
    nb = math.prod(mshape[: len(shape) - len(axes)])
    return np.moveaxis(ym, dest, axes), ym.reshape(nb, 1, -1)


def _rows2(a: np.ndarray, n0: int, n1: int) -> np.ndarray | None:
    """(n0, n1) view of a per-row array (shape = batch shape), or None."""
    try:
        v = np.reshape(a, (n0, n1), copy=False)
    except ValueError:
        return None
    if any(s % a.itemsize for s in v.strides):
        return None
    return v


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """True if a and b are exactly the same memory, element for element."""
    return (
        a.shape == b.shape
        and a.strides == b.strides
        and a.dtype == b.dtype
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def _axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        return tuple(sorted(normalize_axis_tuple(axis, ndim)))
    try:
        ax = operator.index(axis)
    except TypeError:
        return tuple(sorted(normalize_axis_tuple(tuple(axis), ndim)))
    return (normalize_axis_index(ax, ndim),)


def _reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool):
    """`shape` without `axes` (kept as 1 with keepdims)."""
    if keepdims:
        return tuple(1 if i in axes else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def _check_out(out, shape: tuple[int, ...], dtype: np.dtype, name: str = "out") -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise ValueError(f"{name} has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def _grad_out(z_in, out, inplace: bool, shape, rdt: np.dtype, name: str):
    """Where a gradient goes: the logits themselves (inplace=True, checked), a
    checked `out`, or None (a new array)."""
    if inplace and out is not None:
        raise ValueError(f"{name}: give either out= or inplace=True, not both")
    if inplace:
        if not isinstance(z_in, np.ndarray):
            raise TypeError("inplace=True needs logits to be a numpy.ndarray")
        if not z_in.flags.writeable:
            raise ValueError("inplace=True but logits is read-only")
        if z_in.dtype.kind != "f" and not _is_half(z_in.dtype):
            raise ValueError(f"inplace=True needs floating-point logits, got {z_in.dtype}")
        return z_in
    if out is not None:
        _check_out(out, shape, rdt)
    return out


def _direct_target(out: np.ndarray, cdt: np.dtype, axes, src: np.ndarray | None):
    """Row view of `out` the kernel may write directly, or None (use a temporary).

    Direct writing needs the compute dtype, alignment, a row view, and no
    partial overlap with the source (exact aliasing is fine: kernels are
    written for in-place use).
    """
    if out.dtype != cdt or not out.flags.aligned or out.dtype.byteorder not in "=|":
        return None
    if src is not None and np.shares_memory(out, src) and not _same_view(out, src):
        return None
    return _rows3(out, axes)


# --------------------------------------------------------------------------- where= masks
#
# where= is a NumPy front end over the unchanged kernels (where=None never
# comes here: not one extra pass or copy).  The input is copied once with the
# masked elements replaced (-inf for logsumexp/softmax, whatever they held,
# NaN included), the kernel runs on the copy, and the masked outputs are set
# afterwards (softmax 0, log_softmax -inf, gradient 0), so that a fully
# masked row gives no NaN.  The cross-entropy has its own notes at
# _xent_where.

def _where_mask(where, shape, name: str) -> np.ndarray:
    """`where` as a boolean array broadcast to `shape` (a view, no copy).

    Checked before anything is computed or written: TypeError unless its
    dtype is bool, ValueError unless it broadcasts to `shape` (NumPy's rule:
    `where` may not add dimensions or stretch a non-1 axis).
    """
    w = np.asarray(where)
    if w.dtype != np.bool_:
        raise TypeError(f"{name}: where must be a boolean array, got dtype {w.dtype}")
    try:
        return np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(f"{name}: where of shape {w.shape} does not broadcast to the "
                         f"input's shape {tuple(shape)}") from None


def _masked_copy(x: np.ndarray, wb: np.ndarray, dtype, fill) -> np.ndarray:
    """A new C-ordered array of `dtype`: `x` where `wb`, else `fill`."""
    return np.where(wb, x, np.asarray(fill, dtype=dtype)).astype(dtype, copy=False)


def _logsumexp_where(a, axis, b, keepdims, return_sign, out, where, dtype=None):
    """logsumexp with a where= mask: masked elements as if b were 0 there."""
    a = np.asarray(a)
    b = None if b is None else np.asarray(b)
    shape = a.shape if b is None else np.broadcast_shapes(a.shape, b.shape)
    wb = _where_mask(where, shape, "logsumexp")
    sh1 = shape if shape else (1,)            # 0-d input works as 1-d
    axes = _axes(axis, len(sh1))
    if a.dtype.kind == "c" or (b is not None and b.dtype.kind == "c"):
        # complex: masked elements get b = 0, which SciPy's algorithm leaves
        # out (csoftmax/_complex.py), and a = -inf, so that the direct-sum
        # fallback of a row with nothing left sums zeros (-inf, sign 0)
        if a.dtype.kind not in "iufc":
            raise TypeError(f"logsumexp: expected a real, integer or complex a, "
                            f"got dtype {a.dtype}")
        if b is None:
            bm = wb.astype(np.zeros((), a.dtype).real.dtype)   # keeps complex64
        else:
            if b.dtype.kind not in "biufc":
                raise TypeError(f"logsumexp: expected a real, integer or complex b, "
                                f"got dtype {b.dtype}")
            bm = np.where(wb, b, 0)
        am = np.where(wb, a, -np.inf) if a.dtype.kind in "fc" else a
        r = _logsumexp_complex(am, axis, bm, keepdims, return_sign, out)
        if not return_sign:
            return r
        res, sgn = r
        empty = ~np.any(wb.reshape(sh1), axis=axes, keepdims=keepdims)
        if empty.any():
            sgn = np.where(empty, 0, sgn).astype(np.asarray(sgn).dtype)
            sgn = sgn[()] if sgn.ndim == 0 else sgn
        return res, sgn
    if b is not None:
        _dtypes(a.dtype, "logsumexp")      # reject bool/object a before promotion
        cdt, rdt = _dtypes(np.result_type(a.dtype, b.dtype), "logsumexp")
    else:
        cdt, rdt = _dtypes(a.dtype, "logsumexp")
    rdt = _row_dtype(rdt, dtype, "logsumexp")
    res_shape = _reduced_shape(sh1, axes, keepdims)
    if out is not None:
        _check_out(out, res_shape, rdt)
    am = _masked_copy(a, wb, cdt, -np.inf)
    bm = None if b is None else _masked_copy(b, wb, cdt, 0.0)
    r = logsumexp(am, axis, bm, keepdims, return_sign)       # the plain path, cdt
    lse, sgn = r if return_sign else (r, None)
    lse = np.asarray(lse)
    if out is not None:
        np.copyto(out, lse, casting="unsafe")
        res = out
    else:
        res = lse.astype(rdt, copy=False)
        res = res[()] if res.ndim == 0 else res
    if not return_sign:
        return res
    # a row with nothing left (all masked, or empty) has the sum 0: sign 0
    # (JAX's convention; SciPy's sign of an empty sum is -1)
    empty = ~np.any(wb.reshape(sh1), axis=axes, keepdims=keepdims)
    sgn = np.where(empty, 0.0, sgn).astype(rdt)
    return res, (sgn[()] if sgn.ndim == 0 else sgn)


def _grad_rows(out, z: np.ndarray, cdt: np.dtype, axes):
    """(gradient array, its row view): `out` itself when the kernel can write it
    directly (see _direct_target), else a new array, copied into `out` by
    _finish_grad."""
    grad3 = _direct_target(out, cdt, axes, z) if out is not None else None
    if grad3 is not None:
        return out, grad3
    return _alloc_rows(z.shape, cdt, axes)


def _finish_grad(g: np.ndarray, out, rdt: np.dtype):
    """The gradient as returned: `out` (filled from `g` if the kernel wrote a
    temporary), or `g` in the result dtype."""
    if out is not None:
        if g is not out:
            np.copyto(out, g, casting="unsafe")
        return out
    return g if g.dtype == rdt else g.astype(rdt)


# --------------------------------------------------------------------------- logsumexp

def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, *, out=None,
              where=None, dtype=None):
    """Compute the log of the sum of exponentials of input elements.

    A drop-in replacement for :func:`scipy.special.logsumexp`: same
    signature, defaults and results.  Real input is computed by C kernels in
    one read pass over the data; complex `a` or `b` by a vectorised NumPy path
    in complex128 with SciPy's algorithm and special values
    (``csoftmax/_complex.py``).

    Parameters
    ----------
    a : array_like
        Input array (integer input is computed in float64; float16 and
        bfloat16 (``ml_dtypes.bfloat16``) are read directly, computed in
        float32 with float64 sums and returned as float32; complex64 in
        complex128 and returned as complex64).
    axis : None or int or tuple of ints, optional
        Axis or axes over which the sum is taken.  By default all elements.
    b : array_like, optional
        Scaling factor for ``exp(a)``, broadcastable to `a`; may be negative.
        Elements with ``b == 0`` are ignored (even if `a` is inf or NaN there).
    keepdims : bool, optional
        Keep the reduced axes as dimensions of size one.
    return_sign : bool, optional
        Also return the sign of the sum; otherwise a negative sum gives NaN.
    out : ndarray, optional
        Array of the result's shape and dtype to write the result into.
    where : array_like of bool, optional
        Elements to include, broadcastable to `a` (and `b`) as NumPy's
        ``where=``: elements where it is False are left out (as if `b` were
        0 there), whatever they hold, NaN included.  A row with nothing left
        gives ``-inf`` and, with `return_sign`, the sign 0 -- no NaN and no
        warning (JAX's ``logsumexp(where=)``).  The masked input is copied
        once; ``where=None`` is the plain path.
    dtype : dtype, optional
        The result's dtype (a floating dtype).  Default: float32 for float16
        and bfloat16 input, else the input's (float64 for integers).  Not for
        complex input.

    Returns
    -------
    res : ndarray or scalar
        ``log(sum(b * exp(a)))`` over `axis` (of its absolute value if
        `return_sign`).  A 0-d result is returned as a NumPy scalar (unless
        `out` is given).
    sgn : ndarray or scalar
        Only if `return_sign`: +1, 0 or -1 (NaN where the result is NaN); for
        complex input the unit complex number ``sum / |sum|`` (imaginary part
        in (-pi, pi]) while `res` is the real ``log|sum|``.  Complex results
        without `return_sign` have their imaginary part in (-pi, pi].

    Notes
    -----
    The result is ``M + log1p((n_M - 1) + sum_{x != M} exp(x - M))`` with
    ``M`` the maximum and ``n_M`` its multiplicity, so ``logsumexp([0, -40])``
    is ``4.25e-18`` rather than 0.  NaN anywhere gives NaN; +inf gives +inf;
    all ``-inf`` (or an empty reduction) gives ``-inf``, as in SciPy.

    Examples
    --------
    >>> import numpy as np, csoftmax
    >>> float(csoftmax.logsumexp(np.arange(10.0)))
    9.45862974442671
    >>> csoftmax.logsumexp([1.0, 2.0], b=[1, -1], return_sign=True)
    (np.float64(1.541324854612918), np.float64(-1.0))
    """
    if (type(a) is np.ndarray and b is None and out is None and not keepdims
            and not return_sign and a.ndim == 2 and type(axis) is int
            and (axis == -1 or axis == 1) and where is None and dtype is None):
        r = _core.logsumexp_fast(a)         # small-call fast path (same bits), or None
        if r is not None:
            return r
    if where is not None:
        return _logsumexp_where(a, axis, b, keepdims, return_sign, out, where, dtype)
    a = np.asarray(a)
    if b is not None:
        b = np.asarray(b)
    if a.dtype.kind == "c" or (b is not None and b.dtype.kind == "c"):
        if dtype is not None:
            raise TypeError("logsumexp: dtype= is for real input")
        return _logsumexp_complex(a, axis, b, keepdims, return_sign, out)
    if b is not None:
        _dtypes(a.dtype, "logsumexp")      # reject bool/object a before promotion
        cdt, rdt = _dtypes(np.result_type(a.dtype, b.dtype), "logsumexp")
        a, b = np.broadcast_arrays(a, b)
    else:
        cdt, rdt = _dtypes(a.dtype, "logsumexp")
    kdt = _kernel_dtype(cdt, rdt)           # 16-bit input: read as it is
    half = kdt != cdt
    ldt = _F32 if half else cdt             # what the kernel writes per row
    rdt = _row_dtype(rdt, dtype, "logsumexp")
    if a.ndim == 0:
        a = a.reshape(1)
        if b is not None:
            b = b.reshape(1)
    axes = _axes(axis, a.ndim)
    batch_shape = _reduced_shape(a.shape, axes, False)
    res_shape = _reduced_shape(a.shape, axes, keepdims)
    if out is not None:
        _check_out(out, res_shape, rdt)

    lse = np.empty(batch_shape, dtype=ldt)
    sign = np.empty(batch_shape, dtype=ldt) if (return_sign and b is not None) else None
    c = math.prod(a.shape[i] for i in axes)
    if lse.size == 0:
        pass
    elif c == 0:
        lse.fill(-np.inf)
        if sign is not None:
            sign.fill(-1.0)       # SciPy: sign(-inf)
    else:
        x3 = _rows3_in(_native(a, kdt), axes)
        n0, n1 = x3.shape[0], x3.shape[1]
        l2 = _rows2(lse, n0, n1)
        if b is None:
            (_core.logsumexp_rows_h if half else _core.logsumexp_rows)(x3, l2)
        else:
            b3 = _rows3_in(_native(b, kdt), axes)
            (_core.logsumexp_b_rows_h if half else _core.logsumexp_b_rows)(
                x3, b3, l2, None if sign is None else _rows2(sign, n0, n1))
    if return_sign and b is None:
        # Without weights the sum is positive unless it is 0 (lse = -inf) or NaN.
        sign = np.where(lse == -np.inf, -1.0 if c == 0 else 0.0, 1.0).astype(ldt)
        sign[np.isnan(lse)] = np.nan

    res = lse.reshape(res_shape)
    if out is not None:
        np.copyto(out, res, casting="unsafe")
        res = out
    elif rdt != ldt:
        res = res.astype(rdt)
    elif res.ndim == 0:
        res = res[()]
    if not return_sign:
        return res
    sign = sign.reshape(res_shape)
    if rdt != ldt:
        sign = sign.astype(rdt)
    if sign.ndim == 0:
        sign = sign[()]
    if out is None and isinstance(res, np.ndarray) and res.ndim == 0:
        res = res[()]
    return res, sign


def _logsumexp_complex(a, axis, b, keepdims, return_sign, out):
    """logsumexp with complex `a` or `b` (csoftmax/_complex.py: SciPy's results)."""
    if a.dtype.kind not in "iufc":
        raise TypeError(f"logsumexp: expected a real, integer or complex a, got dtype {a.dtype}")
    if b is not None and b.dtype.kind not in "biufc":
        raise TypeError(f"logsumexp: expected a real, integer or complex b, got dtype {b.dtype}")
    dt = a.dtype if b is None else np.result_type(a.dtype, b.dtype)
    _, rdt = _complex.complex_dtypes(dt)
    if b is not None:
        a, b = np.broadcast_arrays(a, b)
    if a.ndim == 0:
        a = a.reshape(1)
        b = None if b is None else b.reshape(1)
    axes = _axes(axis, a.ndim)
    res_shape = _reduced_shape(a.shape, axes, keepdims)
    res_dt = np.dtype(rdt.char.lower()) if return_sign else rdt     # |sum| is real
    if out is not None:
        _check_out(out, res_shape, res_dt)
    res, sgn = _complex.logsumexp(a, b, axes, return_sign)
    res = res.reshape(res_shape)
    if out is not None:
        np.copyto(out, res, casting="unsafe")
        res = out
    else:
        res = res.astype(res_dt, copy=False)
        if res.ndim == 0:
            res = res[()]
    if not return_sign:
        return res
    sgn = sgn.reshape(res_shape).astype(rdt, copy=False)
    return res, (sgn[()] if sgn.ndim == 0 else sgn)


# --------------------------------------------------------------------------- softmax

def _softmax_impl(x, axis, out, log: bool, name: str):
    x = np.asarray(x)
    if x.dtype.kind == "c":
        return _softmax_complex(x, axis, out, log)
    cdt, rdt = _dtypes(x.dtype, name)
    cdt = _kernel_dtype(cdt, rdt)           # 16-bit input: read and written as it is
    half = _is_half(cdt)
    zero_d = x.ndim == 0
    xv = x.reshape(1) if zero_d else x
    axes = _axes(axis, xv.ndim)
    if out is not None:
        _check_out(out, x.shape, rdt)
    c = math.prod(xv.shape[i] for i in axes)

    xin = _native(xv, cdt)
    direct = None
    if out is not None and not zero_d:
        direct = _direct_target(out, cdt, axes, x)
    if direct is not None:
        y = out
        y3 = direct
    else:
        y, y3 = _alloc_rows(xv.shape, cdt, axes)
    if xv.size and c:
        x3 = _rows3_in(xin, axes)
        (_core.softmax_rows_h if half else _core.softmax_rows)(x3, y3, log)

    if out is not None:
        if y is not out:
            np.copyto(out, y.reshape(out.shape), casting="unsafe")
        return out
    if rdt != cdt:
        y = y.astype(rdt)
    if zero_d:
        return y.reshape(())[()]
    return y


def _softmax_where(x, axis, out, where, log: bool, name: str):
    """softmax / log_softmax with a where= mask: the kernel on a copy with
    -inf at masked elements, then 0 (softmax) or -inf (log_softmax) there."""
    x = np.asarray(x)
    wb = _where_mask(where, x.shape, name)
    fill = -np.inf if log else 0.0
    _axes(axis, max(x.ndim, 1))                     # AxisError before any work
    if x.dtype.kind == "c":
        _, rdt = _complex.complex_dtypes(x.dtype)
        if out is not None:
            _check_out(out, x.shape, rdt)
        y = np.asarray(_softmax_complex(np.where(wb, x, -np.inf), axis, None, log))
        y = np.where(wb, y, fill).astype(rdt, copy=False)
        if out is not None:
            np.copyto(out, y)
            return out
        return y[()] if y.ndim == 0 else y
    cdt, rdt = _dtypes(x.dtype, name)
    if out is not None:
        _check_out(out, x.shape, rdt)
    xm = _masked_copy(x, wb, cdt, -np.inf)
    if out is not None and out.dtype == cdt:
        y = _softmax_impl(xm, axis, out, log, name)     # xm is private: no overlap
    else:
        y = _softmax_impl(xm, axis, xm, log, name)      # in place on the copy
    np.copyto(y, fill, where=~wb)
    if out is not None:
        if y is not out:
            np.copyto(out, y, casting="unsafe")
        return out
    if rdt != cdt:
        y = y.astype(rdt)
    return y[()] if y.ndim == 0 else y


def _softmax_complex(x, axis, out, log: bool):
    """softmax / log_softmax of complex `x` (csoftmax/_complex.py)."""
    _, rdt = _complex.complex_dtypes(x.dtype)
    if out is not None:
        _check_out(out, x.shape, rdt)
    xv = x.reshape(1) if x.ndim == 0 else x
    y = _complex.softmax(xv, _axes(axis, xv.ndim), log).reshape(x.shape)
    if out is not None:
        np.copyto(out, y, casting="unsafe")
        return out
    y = y.astype(rdt, copy=False)
    return y[()] if x.ndim == 0 else y


def softmax(x, axis=None, *, out=None, where=None):
    """Compute the softmax function, ``exp(x) / sum(exp(x))`` along `axis`.

    A drop-in replacement for :func:`scipy.special.softmax` (complex input:
    NumPy in complex128, shifted by the largest element as SciPy does).

    Parameters
    ----------
    x : array_like
        Input array.
    axis : int or tuple of ints, optional
        Axis or axes to normalise over; default None: the whole array.
    out : ndarray, optional
        Array of `x`'s shape and the result dtype to write into; it may be
        `x` itself (in place, no temporary).
    where : array_like of bool, optional
        Elements to include, broadcastable to `x`: elements where it is False
        take no part (as if they were ``-inf``, whatever they hold, NaN
        included) and are 0 in the result; a fully masked row is all 0, with
        no NaN and no warning (JAX's ``softmax(where=)``).  A temporary copy
        of `x` is made; ``where=None`` is the plain path.

    Returns
    -------
    s : ndarray
        Same shape as `x`; sums to 1 along `axis`.  A row holding NaN or
        +inf, or only ``-inf``, becomes NaN (as in SciPy; with `where`, at
        its unmasked elements).

    Examples
    --------
    >>> import numpy as np, csoftmax
    >>> csoftmax.softmax(np.array([0.0, np.log(3.0)]))
    array([0.25, 0.75])
    """
    if where is not None:
        return _softmax_where(x, axis, out, where, False, "softmax")
    return _softmax_impl(x, axis, out, False, "softmax")


def log_softmax(x, axis=None, *, out=None, where=None):
    """Compute the logarithm of the softmax function along `axis`.

    A drop-in replacement for :func:`scipy.special.log_softmax` (complex
    input as SciPy: ``t - log(sum(exp(t)))``, ``t = x - max``); real input is
    computed as ``(x - max) - log(sum(exp(x - max)))`` with the log
    term in the ``log1p`` form, so no precision is lost when one entry
    dominates.

    Parameters
    ----------
    x : array_like
        Input array.
    axis : int or tuple of ints, optional
        Axis or axes to normalise over; default None: the whole array.
    out : ndarray, optional
        Array of `x`'s shape and the result dtype; may be `x` itself.
    where : array_like of bool, optional
        Elements to include, broadcastable to `x`: elements where it is False
        take no part (as if ``-inf``, NaN there included) and are ``-inf`` in
        the result; a fully masked row is all ``-inf``, with no NaN and no
        warning (JAX's ``log_softmax(where=)``).

    Returns
    -------
    s : ndarray
        Same shape as `x`.

    Examples
    --------
    >>> import numpy as np, csoftmax
    >>> csoftmax.log_softmax(np.array([1000.0, 1.0]))
    array([   0., -999.])
    """
    if where is not None:
        return _softmax_where(x, axis, out, where, True, "log_softmax")
    return _softmax_impl(x, axis, out, True, "log_softmax")


# --------------------------------------------------------------------------- cross-entropy

class _XentSpec:
    """Everything the cross-entropy kernels need, validated and normalised."""

    __slots__ = ("z", "t", "ax", "batch_shape", "cdt", "rdt", "kdt", "ldt", "half", "soft",
                 "c", "n", "n0", "n1",
                 "weight", "wsum", "sample_weight", "ignore_index", "eps", "alpha", "cap",
                 "reduction", "labels")


def _opt_float(v, name, what, lo=None, hi=None, lo_open=False):
    if isinstance(v, (str, bytes)):
        raise TypeError(f"{what}: {name} must be a real number, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{what}: {name} must be a real number, got {v!r}") from None
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"{what}: {name} must be finite, got {f}")
    if lo is not None and (f < lo or (lo_open and f == lo)):
        raise ValueError(f"{what}: {name} must be {'>' if lo_open else '>='} {lo}, got {f}")
    if hi is not None and f > hi:
        raise ValueError(f"{what}: {name} must be <= {hi}, got {f}")
    return f


def _nonneg_array(v, shape, dtype, name, what):
    arr = np.asarray(v)
    if (arr.dtype.kind not in "fiu" or arr.dtype.kind == "b") and not _is_half(arr.dtype):
        raise TypeError(f"{what}: {name} must be a real array, got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{what}: {name} has shape {arr.shape}, expected {tuple(shape)}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.size and not np.all(arr >= 0):     # also catches NaN
        bad = "NaN" if np.isnan(arr).any() else "negative"
        raise ValueError(f"{what}: {name} must be non-negative and not NaN (found {bad} values)")
    return arr


def _prepare_xent(logits, target, axis, reduction, weight, sample_weight, ignore_index,
                  label_smoothing, z_loss, softcap, name, dtype=None):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    sp = _XentSpec()
    sp.reduction = reduction
    z = np.asarray(logits)
    sp.cdt, sp.rdt = _dtypes(z.dtype, name)
    if z.ndim == 0:
        raise ValueError(f"{name}: logits must have at least one dimension (the class axis)")
    ax = normalize_axis_index(operator.index(axis), z.ndim)
    batch_shape = z.shape[:ax] + z.shape[ax + 1:]
    t = np.asarray(target)
    kind = t.dtype.kind
    if kind in "iu":
        if t.shape != batch_shape:
            raise ValueError(
                f"{name}: integer target has shape {t.shape}; expected {batch_shape} "
                f"(logits shape {z.shape} without the class axis {ax})")
        sp.soft = False
    elif kind == "f" or _is_half(t.dtype):
        if t.shape != z.shape:
            raise ValueError(
                f"{name}: probability target has shape {t.shape}; expected the logits' "
                f"shape {z.shape}")
        sp.soft = True
    elif kind == "b":
        raise TypeError(f"{name}: boolean target; use an integer dtype for class labels")
    else:
        raise TypeError(f"{name}: target must be integer labels or float probabilities, "
                        f"got dtype {t.dtype}")
    sp.z, sp.t, sp.ax, sp.batch_shape = z, t, ax, batch_shape
    # 16-bit logits are read (and the gradient written) as they are, with soft
    # targets of the same dtype; other soft targets go through float32 copies
    sp.half = _is_half(sp.rdt) and (not sp.soft or t.dtype == z.dtype)
    sp.kdt = sp.rdt if sp.half else sp.cdt
    sp.ldt = _row_dtype(sp.rdt, dtype, name)
    sp.c = z.shape[ax]
    sp.n = math.prod(batch_shape)
    sp.n0 = math.prod(z.shape[:ax])
    sp.n1 = math.prod(z.shape[ax + 1:])
    sp.weight = (None if weight is None else
                 _nonneg_array(weight, (sp.c,), sp.cdt, "weight", name).copy())   # private copy
    sp.wsum = float(sp.c) if sp.weight is None else float(np.sum(sp.weight, dtype=np.float64))
    # (a private copy: the kernel reads it row by row while writing the
    # gradient, which may be the very memory the caller's array lives in)
    sp.sample_weight = (None if sample_weight is None else
                        _nonneg_array(sample_weight, batch_shape, np.float64, "sample_weight",
                                      name).reshape(-1).copy())
    if ignore_index is None:
        sp.ignore_index = None
    else:
        try:
            sp.ignore_index = operator.index(ignore_index)
        except TypeError:
            raise TypeError(f"{name}: ignore_index must be an integer or None") from None
    sp.eps = _opt_float(label_smoothing, "label_smoothing", name, 0.0, 1.0)
    sp.alpha = _opt_float(z_loss, "z_loss", name, 0.0)
    sp.cap = 0.0 if softcap is None else _opt_float(softcap, "softcap", name, 0.0, lo_open=True)
    if sp.cap:
        big = float(np.finfo(sp.cdt).max)
        if sp.cap > big / 4:
            sp.cap = 0.0        # c tanh(z / c) == z to working precision for such c
        else:
            sp.cap = max(sp.cap, 4.0 / big)   # keep 1 / c finite in the compute dtype
    sp.labels = None
    if not sp.soft:
        sp.labels = _labels_int64(t, sp.c, sp)
    return sp


def _labels_int64(t: np.ndarray, c: int, sp=None) -> np.ndarray:
    """Labels as native int64, refusing uint64 values that do not fit (no wraparound).

    A uint64 label equal to an ignore_index above int64's range is ignored:
    such labels become -1 and the kernel's ignore value becomes -1 (no valid
    label is negative, and no uint64 label can be -1).
    """
    if t.dtype.kind == "u" and t.dtype.itemsize == 8 and t.size:
        big = t > np.uint64(np.iinfo(np.int64).max)
        ig = None if sp is None else sp.ignore_index
        if big.any() and ig is not None and ig > np.iinfo(np.int64).max and ig < 2**64:
            hit = t == np.uint64(ig)
            if hit.any():
                lab = np.where(hit, np.uint64(0), t).astype(np.int64)
                lab[hit] = -1
                sp.ignore_index = -1
                big = big & ~hit
                if not big.any():
                    return lab
        if big.any():                    # (the uint64 labels that are not ignored)
            pos = np.unravel_index(int(np.argmax(big)), t.shape)
            raise ValueError(
                f"target label {int(t[pos])} at index {tuple(int(i) for i in pos)} is out of "
                f"range for {c} classes (valid labels are 0..{c - 1})")
    lab = np.asarray(t, dtype=np.int64)
    if not lab.flags.aligned:        # e.g. np.frombuffer(..., offset=1): C reads int64 words
        lab = lab.copy()
    return lab


def _label_rows(labels: np.ndarray, n0: int, n1: int, ignore_index, batch_shape, c: int,
                grad3=None):
    """What a label kernel takes: the (n0, n1) int64 labels (copied when they live
    in the gradient's memory: the kernel reads row i's label after earlier rows
    were written), its ignore value and use_ignore (off for an ignore_index no int64
    label can equal).  With no classes every label that is not ignored is bad:
    raised here, as no kernel runs."""
    lab2 = _rows2(labels, n0, n1)
    if lab2 is None:
        lab2 = np.ascontiguousarray(labels).reshape(n0, n1)
    if grad3 is not None and np.may_share_memory(lab2, grad3):
        lab2 = lab2.copy()
    use_ignore = ignore_index is not None and -(2**63) <= ignore_index < 2**63
    ig = ignore_index if use_ignore else 0
    if c == 0:
        bad = lab2 != ig if use_ignore else np.ones(lab2.shape, bool)
        if bad.any():
            row = int(np.argmax(bad.reshape(-1)))
            _raise_label(row, int(lab2.reshape(-1)[row]), batch_shape, c)
    return lab2, ig, use_ignore


def _denominator(sp: _XentSpec) -> float:
    """What "mean" divides by (PyTorch): sum of s_i * w_{y_i} over counted samples.

    A positive denominator below 2**-960 would make the gradient factor
    1/denominator overflow; the private sample weights (or, without them, the
    class weights) are then scaled by a power of two, which changes neither the
    mean nor its gradient but keeps every factor finite.
    """
    d = _raw_denominator(sp)
    if not (0.0 < d < 2.0**-960):
        return d
    # the smallest power of two that lifts d to [2**-960, 2**-959): a larger one
    # (e.g. d to [0.5, 1)) could overflow the largest weight where this one does not
    k = -959 - math.frexp(d)[1]
    if sp.sample_weight is not None:
        sw = np.ldexp(sp.sample_weight, k)
        if np.max(sw) <= 2.0**1000:
            sp.sample_weight = sw
            return _raw_denominator(sp)
    elif sp.weight is not None and not sp.soft and not sp.alpha:
        # (not with z-loss: its alpha lse**2 is not weighted by the class weights)
        w = np.ldexp(sp.weight.astype(np.float64), k)
        if np.max(w) <= float(np.finfo(sp.cdt).max) / 4:
            sp.weight = w.astype(sp.cdt)
            sp.wsum = float(np.sum(sp.weight, dtype=np.float64))
            return _raw_denominator(sp)
    return d


def _raw_denominator(sp: _XentSpec) -> float:
    if sp.soft:
        return float(sp.n) if sp.sample_weight is None else float(np.sum(sp.sample_weight))
    lab = sp.labels.reshape(-1)
    keep = np.ones(lab.shape, bool) if sp.ignore_index is None else lab != sp.ignore_index
    s = np.ones(lab.shape) if sp.sample_weight is None else sp.sample_weight
    if sp.weight is None:
        return float(np.sum(s[keep]))
    # labels are validated by the kernel; clip only so this gather cannot fail first
    w = sp.weight.astype(np.float64)[np.clip(lab[keep], 0, max(sp.c - 1, 0))] if sp.c else 0.0
    return float(np.sum(s[keep] * w))


def _run_xent(sp: _XentSpec, grad3, grad_scale: float, row_gscale, want_lse: bool):
    """Call the kernel; returns (per-sample losses, per-sample lse or None), float64."""
    axes = (sp.ax,)
    loss = np.zeros(sp.batch_shape, dtype=np.float64)
    lse = np.zeros(sp.n, dtype=np.float64) if want_lse else None
    if sp.n == 0:
        return loss, lse
    l2 = loss.reshape(sp.n0, sp.n1)
    kw = dict(row_scale=sp.sample_weight, row_gscale=row_gscale, class_weight=sp.weight,
              wsum=sp.wsum, label_smoothing=sp.eps, z_loss=sp.alpha, softcap=sp.cap,
              lse_out=lse)
    if sp.soft:
        if sp.c == 0:
            if lse is not None:
                lse.fill(-np.inf)
            return loss, lse
        z3 = _rows3_in(_native(sp.z, sp.kdt), axes)
        tt = _native(sp.t, sp.kdt)
        if grad3 is not None and np.shares_memory(tt, grad3):
            tt = tt.copy()
        t3 = _rows3_in(tt, axes)
        (_core.xent_soft_rows_h if sp.half else _core.xent_soft_rows)(
            z3, t3, l2, grad3, grad_scale, **kw)
        return loss, lse
    lab2, ig, use_ignore = _label_rows(sp.labels, sp.n0, sp.n1, sp.ignore_index,
                                       sp.batch_shape, sp.c, grad3)
    if sp.c == 0:
        return loss, lse
    z3 = _rows3_in(_native(sp.z, sp.kdt), axes)
    try:
        (_core.xent_labels_rows_h if sp.half else _core.xent_labels_rows)(
            z3, lab2, l2, grad3, grad_scale, ig, use_ignore, **kw)
    except _core.LabelError as e:
        _raise_label(e.row, e.value, sp.batch_shape, sp.c)
    return loss, lse


def _upstream(grad_scale, sp: _XentSpec, reduction: str, name: str):
    """The upstream gradient: (scalar, None), or with reduction="none" (1.0, a
    private float64 copy of the per-sample factors, flattened)."""
    if np.ndim(grad_scale) == 0:
        return _opt_float(grad_scale, "grad_scale", name), None
    if reduction != "none":
        raise ValueError(f"{name}: an array grad_scale needs reduction='none' "
                         f"(for 'sum'/'mean' the loss is a scalar)")
    gs_arr = np.asarray(grad_scale, dtype=np.float64)
    if gs_arr.shape != sp.batch_shape:
        raise ValueError(f"{name}: grad_scale has shape {gs_arr.shape}, expected the "
                         f"per-sample loss shape {sp.batch_shape}")
    return 1.0, gs_arr.reshape(-1).copy()      # private: see sample_weight


def _grad_factors(gs0: float, gs_arr, sp: _XentSpec, reduction: str, denom: float):
    """(the kernel's grad_scale, its per-row factors or None): the upstream
    gradient, the mean's 1/denominator and the sample weights."""
    scale = gs0 * ((1.0 / denom if denom else math.nan) if reduction == "mean" else 1.0)
    row_gscale = gs_arr
    if sp.sample_weight is not None:
        row_gscale = sp.sample_weight if gs_arr is None else sp.sample_weight * gs_arr
    return scale, row_gscale


def _raise_label(row, value, batch_shape, c):
    pos = tuple(int(i) for i in np.unravel_index(row, batch_shape)) if batch_shape else ()
    valid = f"valid labels are 0..{c - 1}" if c else "there are no classes"
    raise ValueError(
        f"target label {value} at index {pos} (sample {row}) is out of range for {c} "
        f"classes ({valid})") from None


def _reduce(loss: np.ndarray, sp: _XentSpec, denom: float):
    rdt = sp.ldt
    if sp.reduction == "none":
        with np.errstate(over="ignore"):       # a float32 loss may round to inf
            return loss.astype(rdt)
    total = _core.sum_f64(loss.reshape(-1))     # the fast path's order too
    with np.errstate(over="ignore"):
        if sp.reduction == "sum":
            return rdt.type(total)
        return rdt.type(total / denom if denom else np.nan)


def _finish(sp, loss, lse, denom, return_lse, extra=()):
    res = _reduce(loss, sp, denom)
    if return_lse:
        with np.errstate(over="ignore"):
            lse = lse.reshape(sp.batch_shape).astype(sp.ldt)
        return (res,) + tuple(extra) + (lse,)
    return (res,) + tuple(extra) if extra else res


def _xent_where(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                label_smoothing, z_loss, softcap, return_lse, where, want_grad,
                grad_scale=1.0, out=None, inplace=False, dtype=None):
    """cross_entropy[_with_grad] with a where= mask of the classes taking part.

    The kernels run unchanged on a private copy of the logits:

    1. Soft-capping is applied here (NumPy's tanh), before the mask, so that
       a masked class stays out (the kernel's cap would map -inf to -c); the
       kernel then runs without it and the gradient gets the chain factor
       ``1 - tanh(z / c)**2`` afterwards.
    2. Rows with no unmasked class (and rows whose label is ignore_index)
       are not counted: loss 0, gradient 0, lse 0, label not checked, not in
       "mean".  Labels: they become ignored rows.  Soft targets: target row 0,
       logits row 0, sample weight 0.
    3. Labels without smoothing (the common case, e.g. a vocabulary mask):
       masked logits are -inf, so a label on a masked class gives +inf as a
       -inf logit would.
    4. Soft targets or label smoothing: the kernel's soft path with explicit
       targets.  Labels become one-hot rows; smoothing spreads eps over the
       row's C_r unmasked classes (``eps / C_r`` each, not ``eps / C``:
       the smoothing mass goes to unmasked classes only, exactly).  The soft
       path forms ``t_k * (z_k - shift)``, which is NaN for a -inf logit even
       where t_k = 0; masked logits are therefore a finite value far below the
       row's unmasked maximum M (``M - (1e4 + |M|)``, clipped to the dtype's
       range: its exp is exactly 0 in both precisions, so it takes no part).
       Target mass t_k != 0 at a masked class (after the class weight) is then
       added to the loss as ``t_k * inf`` (+inf; NaN where t_k is NaN); it
       still counts in sum(t) for the gradient, as for a -inf logit.  (The
       one row this cannot express is an unmasked maximum equal to the most
       negative finite number of the dtype: nothing finite lies below it.
       Such a row gets -inf at masked classes and so NaN, loudly, rather
       than a masked class counted as a maximum.)
    5. The gradient is set to exactly 0 at every masked class.
    """
    name = "cross_entropy_with_grad" if want_grad else "cross_entropy"
    z_in = logits
    sp = _prepare_xent(logits, target, axis, reduction, weight, sample_weight, ignore_index,
                       label_smoothing, z_loss, softcap, name, dtype)
    sp.half, sp.kdt = False, sp.cdt       # the kernels run on a private copy in cdt
    z, ax, cdt, c = sp.z, sp.ax, sp.cdt, sp.c
    axes = (ax,)
    wb = _where_mask(where, z.shape, name)
    gs0 = gs_arr = None
    if want_grad:
        gs0, gs_arr = _upstream(grad_scale, sp, reduction, name)
        out = _grad_out(z_in, out, inplace, z.shape, sp.rdt, name)

    row_ok = np.any(wb, axis=ax)                     # rows with an unmasked class
    if sp.soft:
        counted = row_ok
        lab = None
    else:
        lab = sp.labels
        ig = sp.ignore_index
        use_ig = ig is not None and -(2**63) <= ig < 2**63
        counted = row_ok & (lab != ig) if use_ig else row_ok
        bad = counted & ((lab < 0) | (lab >= c))
        if bad.any():                                # (the kernel would not see them all)
            row = int(np.argmax(bad.reshape(-1)))
            _raise_label(row, int(lab.reshape(-1)[row]), sp.batch_shape, c)
        if not counted.all():
            kig = ig if use_ig else -1               # no counted label is -1
            lab = np.where(counted, lab, kig)        # a private copy
            sp.labels, sp.ignore_index = lab, kig
    cnt_k = np.expand_dims(counted, ax)              # broadcasts along the classes

    zc = _native(z, cdt)
    chain = None
    if sp.cap:
        cap = cdt.type(sp.cap)
        with np.errstate(over="ignore"):             # z / c beyond the range: tanh = +-1
            th = np.tanh(zc / cap)
        if want_grad:
            chain = 1 - th * th
        th *= cap                                    # (a private array: zc is th)
        zc = th
        sp.cap = 0.0

    soft_mode = sp.soft or sp.eps != 0.0
    if not soft_mode and sp.weight is not None and c:
        # a label on a masked class with class weight 0 takes no part (its
        # coefficient is 0), which -inf * 0 in the kernel would make NaN
        lab_k = np.expand_dims(np.clip(lab, 0, c - 1), ax)
        y_masked = counted & ~np.take_along_axis(wb, lab_k, axis=ax).squeeze(ax)
        soft_mode = bool(np.any(y_masked & (sp.weight[lab_k.squeeze(ax)] == 0)))

    # labels: sum s_i w_{y_i} over the counted rows (soft targets: below)
    denom = _denominator(sp) if reduction == "mean" and not sp.soft else 1.0
    rows_mm = contrib = None
    nw = ~wb                                         # the masked elements
    if not soft_mode:
        sp.z = _masked_copy(zc, wb, cdt, -np.inf)
        kp = sp
    else:
        eps = sp.eps
        if sp.soft:
            tq = _native(sp.t, cdt)
            tq = tq * cdt.type(1.0 - eps) if eps else tq.copy()
        else:
            tq = np.zeros(z.shape, dtype=cdt)
            if c:
                lab_k = np.expand_dims(np.clip(lab, 0, c - 1), ax)
                np.put_along_axis(tq, lab_k, cdt.type(1.0 - eps), axis=ax)
        if eps:
            c_r = np.maximum(np.sum(wb, axis=ax, keepdims=True), 1)
            tq += np.where(wb, (eps / c_r).astype(cdt), cdt.type(0))
        np.copyto(tq, 0, where=~cnt_k)
        # target mass at masked classes: +inf (NaN for a NaN target)
        coef = tq if sp.weight is None else tq * np.expand_dims(
            sp.weight, tuple(i for i in range(z.ndim) if i != ax))
        mm = nw & (coef != 0)
        rows_mm = np.any(mm, axis=ax)
        if rows_mm.any():
            with np.errstate(invalid="ignore"):
                contrib = np.sum(np.where(mm, coef.astype(np.float64) * np.inf, 0.0), axis=ax)
        else:
            rows_mm = None
        # masked logits: far below the row's unmasked maximum (see 4. above)
        big = float(np.finfo(cdt).max)
        zk = _masked_copy(zc, wb, cdt, -np.inf)
        m = np.max(zk, axis=ax, keepdims=True, initial=-np.inf).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            low = np.where(np.isfinite(m) & (m > -big),
                           np.maximum(m - (1e4 + np.abs(m)), -big), -np.inf)
        np.copyto(zk, low.astype(cdt), where=nw)
        np.copyto(zk, 0, where=~cnt_k)
        kp = copy.copy(sp)
        kp.z, kp.t, kp.soft, kp.labels, kp.eps = zk, tq, True, None, 0.0
        s = (np.ones(sp.n) if sp.sample_weight is None else sp.sample_weight.copy())
        s[~counted.reshape(-1)] = 0.0
        kp.sample_weight = s
        if sp.soft and reduction == "mean":
            denom = _denominator(kp)                 # soft: sum of s_i over counted rows

    grad3 = g = None
    if want_grad:
        scale, row_gscale = _grad_factors(gs0, gs_arr, kp, reduction, denom)
        g, grad3 = _grad_rows(out, kp.z, cdt, axes)
        loss, lse = _run_xent(kp, grad3 if g.size else None, scale, row_gscale, return_lse)
    else:
        loss, lse = _run_xent(kp, None, 1.0, None, return_lse)

    if rows_mm is not None:
        sw = 1.0 if kp.sample_weight is None else kp.sample_weight.reshape(sp.batch_shape)
        with np.errstate(invalid="ignore"):
            extra = sw * contrib
            loss = np.where(rows_mm, np.where(np.isfinite(loss), 0.0, loss) + extra, loss)
    if lse is not None and soft_mode:
        lse[~counted.reshape(-1)] = 0.0
    if not want_grad:
        return _finish(sp, loss, lse, denom, return_lse)
    if chain is not None:
        g *= chain
    np.copyto(g, 0, where=nw)
    return _finish(sp, loss, lse, denom, return_lse, extra=(_finish_grad(g, out, sp.rdt),))


_XENT_PARAMS_DOC = """
    logits : array_like
        Unnormalised scores; classes along `axis`.  float32 and float64 are
        kept; float16 and bfloat16 (``ml_dtypes.bfloat16``) are read as they
        are and computed in float32 with float64 sums (the gradient is
        written in their dtype, the loss returned as float32: see `dtype`);
        integers in float64.
    target : array_like
        Integer class labels (any signed or unsigned integer dtype) with the
        shape of `logits` without `axis`, or class probabilities (float) with
        the shape of `logits`.
    axis : int, optional
        The class axis (default -1).  ``(N, C, d1, ...)`` with ``axis=1`` is
        PyTorch's K-dimensional layout; no copy is made for it.
    weight : array_like, optional
        Class weights ``w``, shape ``(C,)``, non-negative (PyTorch's `weight`).
    sample_weight : array_like, optional
        Per-sample weights ``s`` (shape of the per-sample loss), non-negative;
        each sample's loss (z-loss included) is multiplied by ``s_i``.
    ignore_index : int or None, optional
        Integer labels equal to it (default -100, as PyTorch) give loss 0 and
        gradient 0 and do not count in the mean; None disables it.
    reduction : {"mean", "sum", "none"}, optional
        "none": per-sample losses; "sum"; "mean": divided by ``sum s_i w_{y_i}``
        over counted samples (labels) or by ``sum s_i`` (soft targets), as
        PyTorch.  Sums are taken in float64 in a fixed order.
    label_smoothing : float, optional
        ``eps`` in [0, 1].  Labels: ``l = (1-eps) w_y (lse - z_y) +
        (eps/C) sum_c w_c (lse - z_c)``; soft targets: ``q -> (1-eps) q + eps/C``.
    z_loss : float, optional
        ``alpha >= 0``: ``alpha * lse**2`` is added to each counted sample's loss.
    softcap : float, optional
        ``c > 0``: logits are replaced by ``c * tanh(z / c)`` first (Gemma 2);
        the gradient includes ``1 - tanh(z / c)**2``.
    return_lse : bool, optional
        Also return the per-sample log-sum-exp (after softcap; 0 for ignored
        samples), in the result dtype.
    where : array_like of bool, optional
        The classes taking part, broadcastable to `logits` (per row, or one
        vocabulary mask for every row: ``(C,)`` when the class axis is last,
        ``(C, 1, ...)`` otherwise -- NumPy broadcasting aligns trailing axes).  Masked classes are left out
        as if their (capped) logit were ``-inf``, whatever they hold (NaN
        included), and their gradient is exactly 0.  A label on a masked
        class, or soft-target mass there, gives loss +inf as a -inf logit
        would (NaN with sample weight 0: ``0 * inf``); a term whose
        coefficient (``(1-eps) w_y``, ``w_c t_c``) is 0 there is left out.  Label
        smoothing spreads ``eps`` over the row's ``C_r`` unmasked classes
        (``eps / C_r`` each).  A row with no unmasked class counts as ignored:
        loss 0, gradient 0, lse 0, label not checked, not in "mean" -- no NaN
        and no warning.  Implemented in NumPy around the kernels (one masked
        copy of the logits; dense targets for soft targets and smoothing);
        ``where=None`` is the plain path.
    dtype : dtype, optional
        The dtype of the loss (and of the returned lse): a floating dtype.
        Default: float32 for float16 and bfloat16 logits (a 16-bit loss is
        too coarse), else the logits' result dtype.  The gradient always has
        the logits' result dtype."""


def cross_entropy(logits, target, *, axis=-1, weight=None, sample_weight=None,
                  ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0,
                  softcap=None, return_lse=False, where=None, dtype=None):
    if where is not None:
        return _xent_where(logits, target, axis, weight, sample_weight, ignore_index,
                           reduction, label_smoothing, z_loss, softcap, return_lse, where,
                           False, dtype=dtype)
    if dtype is None:
        r = _core.xent_try(logits, target, axis, weight, sample_weight, ignore_index,
                           reduction, label_smoothing, z_loss, softcap, return_lse, 1.0, None,
                           False, False)
        if r is not None:
            return r
    sp = _prepare_xent(logits, target, axis, reduction, weight, sample_weight, ignore_index,
                       label_smoothing, z_loss, softcap, "cross_entropy", dtype)
    loss, lse = _run_xent(sp, None, 1.0, None, return_lse)
    denom = _denominator(sp) if reduction == "mean" else 1.0
    return _finish(sp, loss, lse, denom, return_lse)


cross_entropy.__doc__ = """Softmax cross-entropy loss with PyTorch's options, in one fused C pass.

    Per sample (integer label ``y``, ``lse = log sum_k exp z_k``):
    ``s * [(1-eps) w_y (lse - z_y) + (eps/C) sum_c w_c (lse - z_c) + alpha lse**2]``.

    Parameters
    ----------""" + _XENT_PARAMS_DOC + """

    Returns
    -------
    loss : ndarray or NumPy scalar
        Per-sample losses for ``reduction="none"``, else a scalar of the
        result dtype.
    lse : ndarray
        Only with ``return_lse=True``.

    Raises
    ------
    ValueError
        A label outside ``[0, C)`` that is not `ignore_index` (the message
        names its index), a target or weight of the wrong shape, negative or
        NaN weights, an option out of range, an unknown `reduction`.
    numpy.exceptions.AxisError
        `axis` out of range.

    Examples
    --------
    >>> import numpy as np, csoftmax
    >>> z = np.array([[2.0, 0.0, 0.0]])
    >>> round(float(csoftmax.cross_entropy(z, np.array([0]))), 12)   # log(e^2 + 2) - 2
    0.239544781366
    """


def cross_entropy_with_grad(logits, target, *, axis=-1, weight=None, sample_weight=None,
                            ignore_index=-100, reduction="mean", label_smoothing=0.0,
                            z_loss=0.0, softcap=None, return_lse=False, grad_scale=1.0,
                            out=None, inplace=False, where=None, dtype=None):
    if where is not None:
        return _xent_where(logits, target, axis, weight, sample_weight, ignore_index,
                           reduction, label_smoothing, z_loss, softcap, return_lse, where,
                           True, grad_scale, out, inplace, dtype)
    name = "cross_entropy_with_grad"
    if dtype is None:
        r = _core.xent_try(logits, target, axis, weight, sample_weight, ignore_index,
                           reduction, label_smoothing, z_loss, softcap, return_lse,
                           grad_scale, out, inplace, True)
        if r is not None:
            return r
    z_in = logits
    sp = _prepare_xent(logits, target, axis, reduction, weight, sample_weight, ignore_index,
                       label_smoothing, z_loss, softcap, name, dtype)
    z = sp.z
    axes = (sp.ax,)
    gs0, gs_arr = _upstream(grad_scale, sp, reduction, name)
    out = _grad_out(z_in, out, inplace, z.shape, sp.rdt, name)

    denom = _denominator(sp) if reduction == "mean" else 1.0
    scale, row_gscale = _grad_factors(gs0, gs_arr, sp, reduction, denom)
    g, grad3 = _grad_rows(out, z, sp.kdt, axes)
    loss, lse = _run_xent(sp, grad3 if g.size else None, scale, row_gscale, return_lse)
    return _finish(sp, loss, lse, denom, return_lse, extra=(_finish_grad(g, out, sp.rdt),))


cross_entropy_with_grad.__doc__ = """Softmax cross-entropy loss and its gradient in one fused pass.

    With ``y = softmax(z)`` and a one-hot (or soft) target ``t``, the gradient
    of one sample's plain loss is ``y - t`` (soft: ``sum(t) * y - t``); the
    options add ``2 alpha lse y`` (z-loss), the smoothing and weight terms,
    and the soft-cap chain rule.  The gradient is of the *reduced* loss:
    "mean" divides by the mean's denominator, and it is multiplied by
    `grad_scale` (the upstream gradient).

    Parameters
    ----------""" + _XENT_PARAMS_DOC + """
    grad_scale : float or array_like, optional
        Upstream gradient: a scalar, or with ``reduction="none"`` an array of
        the per-sample loss shape (``grad = sum_i grad_scale_i d l_i / dz``).
    out : ndarray, optional
        Preallocated gradient (shape of `logits`, result dtype); may be
        `logits` itself.  Returned.
    inplace : bool, optional
        Write the gradient into `logits` (a writeable floating-point ndarray)
        and return it: for float32/float64 logits no extra memory is used.

    Returns
    -------
    loss : ndarray or NumPy scalar
    grad : ndarray
        ``d loss / d logits``: the `out` or `logits` object when given.
    lse : ndarray
        Only with ``return_lse=True``.

    Raises
    ------
    ValueError
        As :func:`cross_entropy`; also `out` of the wrong shape or dtype,
        `inplace=True` on a read-only or non-float array, both `out` and
        `inplace`.  On any error neither `out` nor `logits` is modified.

    Examples
    --------
    >>> import numpy as np, csoftmax
    >>> loss, g = csoftmax.cross_entropy_with_grad(np.zeros((1, 4)), np.array([1]))
    >>> g
    array([[ 0.25, -0.75,  0.25,  0.25]])
    """

"""Shared test support for csoftmax: tolerances, error bookkeeping, ISA
reporting, array layouts and hypothesis settings.

Everything the test modules share lives here, in one place.  Because the suite
is run with ``--import-mode=importlib`` (test modules are not importable by
name), this module registers itself in ``sys.modules`` as
``csoftmax_testsupport``; test modules do ``from csoftmax_testsupport import
...`` and therefore share this very module object (and its error record).

Tolerances
----------
A result ``got`` is compared with the float64 reference ``ref`` as::

    |got - ref| <= rtol * (|ref| + scale) + atol

``scale`` is zero except where the quantity is computed by an addition with
cancellation, where it is the magnitude of the summands (the condition of the
final operation), see ``lse_scale``, ``log_softmax_scale``, ``loss_scale``,
``grad_scale``.  Reductions (logsumexp, losses) use ``atol = 0``; elementwise
outputs (softmax, gradients) use the absolute floor ``atol``.

* float64: rtol 1e-13 everywhere (atol 1e-300 for elementwise results, only
  to absorb subnormal rounding).
* float32: rtol 1e-6 for lse and losses; elementwise rtol 2e-6 plus atol 1e-7
  (the float32 exp argument x - max is rounded, so tiny probabilities only
  have ~1e-6 relative accuracy).
* float16 (computed in float32, rounded to float16): rtol 1e-3, atol 1e-7.

NaN and infinities must match position by position (and sign for inf).

The largest observed normalized error ``|got - ref| / (|ref| + scale +
atol / rtol)`` per (function, dtype) is recorded and printed at the end of the
session (``pytest_terminal_summary``), together with the active kernel ISA.

ISA
---
``CSOFTMAX_ISA`` (scalar|avx2|avx512) selects the kernel path when csoftmax
is imported; the suite never re-imports in-process: CI runs the whole suite
once per ISA with the variable set.  ``csoftmax.show_config()`` reports the
active path (``"isa"``) and the ``"available"`` ones.

Hypothesis
----------
Profile ``csoftmax`` (default): deadline=None, 40 examples, no example
database (nothing is written to the working directory).  Set
``CSOFTMAX_HYPOTHESIS_PROFILE=thorough`` for 400 examples.
"""

import math
import os
import sys
import threading

import numpy as np
import pytest

sys.modules.setdefault("csoftmax_testsupport", sys.modules[__name__])


def _check_installed_package():
    """Refuse to test an uncompiled source tree: the suite is about the built
    extension, and `python -m pytest` from the repository root would put the
    source directory (which has no compiled _core) ahead of the install."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("csoftmax._core")
    except ImportError:
        spec = None
    if spec is None or not str(spec.origin).endswith((".so", ".pyd")):
        raise pytest.UsageError(
            "csoftmax is not importable as a compiled package (found "
            f"{getattr(spec, 'origin', None)!r}). Install it (python -m pip install "
            "'.[test]') and run the `pytest` executable, not `python -m pytest`, "
            "from the repository root, or run pytest from another directory.")


_check_installed_package()

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "csoftmax",
        deadline=None,
        max_examples=40,
        database=None,
        suppress_health_check=[HealthCheck.too_slow,
                               HealthCheck.data_too_large],
    )
    settings.register_profile(
        "thorough",
        deadline=None,
        max_examples=400,
        database=None,
        suppress_health_check=[HealthCheck.too_slow,
                               HealthCheck.data_too_large],
    )
    settings.load_profile(os.environ.get("CSOFTMAX_HYPOTHESIS_PROFILE",
                                         "csoftmax"))
except ImportError:  # pragma: no cover - hypothesis is a test requirement
    pass


# ---------------------------------------------------------------------------
# reference module
# ---------------------------------------------------------------------------

def load_reference():
    """``csoftmax.reference``; if the package itself cannot be imported (e.g.
    the extension is not built yet) the source file next to the tests is
    loaded on its own, so the reference can be checked independently."""
    try:
        from csoftmax import reference
        return reference
    except ImportError:
        import importlib.util
        path = os.path.join(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))), "csoftmax", "reference.py")
        spec = importlib.util.spec_from_file_location(
            "csoftmax_reference_standalone", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


# ---------------------------------------------------------------------------
# dtypes and tolerances
# ---------------------------------------------------------------------------

#: per computation dtype: rtol for reductions (lse, losses) and the
#: (rtol, atol) of elementwise outputs (softmax, log_softmax, gradients)
TOLERANCES = {
    "float64": {"reduce": 1e-13, "elem_rtol": 1e-13, "elem_atol": 1e-300},
    "float32": {"reduce": 1e-6, "elem_rtol": 2e-6, "elem_atol": 1e-7},
    "float16": {"reduce": 1e-3, "elem_rtol": 1e-3, "elem_atol": 1e-7},
}

#: how much looser a comparison against scipy.special in the *same* low
#: precision is (scipy's own rounding error adds to ours)
SCIPY_FACTOR = 2.0


def result_dtype(dtype):
    """dtype of csoftmax results for inputs of ``dtype``: float32, float64 and
    float16 are kept, integers give float64."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype
    if dtype.kind in "iu":
        return np.dtype(np.float64)
    raise TypeError(f"no csoftmax result dtype for {dtype}")


def row_dtype(dtype):
    """dtype of csoftmax's per-row results (log-sum-exp, losses) for inputs of
    ``dtype``: float32 for float16 and bfloat16 (README: half precision), else
    result_dtype."""
    dtype = np.dtype(dtype)
    if dtype.itemsize == 2 and (dtype.char == "e" or dtype.name == "bfloat16"):
        return np.dtype(np.float32)
    return result_dtype(dtype)


def tolerance(dtype, kind):
    """(rtol, atol) for results of dtype ``dtype`` (the *result* dtype);
    ``kind`` is "reduce" (lse, losses) or "elem" (softmax, grads, ...)."""
    t = TOLERANCES[result_dtype(dtype).name]
    if kind == "reduce":
        return t["reduce"], 0.0
    if kind == "elem":
        return t["elem_rtol"], t["elem_atol"]
    raise ValueError(kind)


# ---------------------------------------------------------------------------
# error record
# ---------------------------------------------------------------------------

_ERR_LOCK = threading.Lock()
#: (function, dtype) -> {"norm": max normalized error, "abs": max |got-ref|,
#: "rtol": rtol, "n": number of compared values}
MAX_ERRORS = {}


def record_error(func, dtype, norm_err, abs_err, rtol, n):
    key = (func, np.dtype(dtype).name)
    with _ERR_LOCK:
        e = MAX_ERRORS.setdefault(
            key, {"norm": 0.0, "abs": 0.0, "rtol": rtol, "n": 0})
        e["norm"] = max(e["norm"], float(norm_err))
        e["abs"] = max(e["abs"], float(abs_err))
        e["rtol"] = max(e["rtol"], rtol)
        e["n"] += int(n)


def assert_close(got, ref, *, func, dtype, kind, scale=0.0, atol_factor=1.0,
                 factor=1.0, ctx="", check_dtype=True, record=True):
    """Assert that ``got`` (a csoftmax result) matches the float64 ``ref``.

    dtype       -- expected dtype of ``got`` (the result dtype), also selects
                   the tolerance.
    kind        -- "reduce" or "elem" (see ``tolerance``).
    scale       -- per-element cancellation scale added to |ref| (broadcast).
    atol_factor -- multiplies the absolute floor (e.g. 1/n for mean grads).
    factor      -- multiplies the whole tolerance (comparisons with scipy).
    """
    dtype = np.dtype(dtype)
    where = f" [{func}, {dtype.name}{', ' + ctx if ctx else ''}]"
    assert isinstance(got, (np.ndarray, np.generic)), (
        f"result is {type(got).__name__}, not a NumPy array/scalar" + where)
    if check_dtype:
        assert got.dtype == dtype, f"dtype {got.dtype} != {dtype}" + where
    got64 = np.asarray(got, dtype=np.float64)
    ref64 = np.asarray(ref, dtype=np.float64)
    assert got64.shape == ref64.shape, (
        f"shape {got64.shape} != {ref64.shape}" + where)
    if dtype.kind == "f" and dtype.itemsize < 8:
        # a float64 reference value beyond the result dtype's range is an
        # infinity in that dtype (e.g. float32 log_softmax of [3e38, -3e38])
        with np.errstate(over="ignore"):
            ref64 = np.where(np.isinf(ref64.astype(dtype)),
                             ref64.astype(dtype), ref64).astype(np.float64)

    nan_got, nan_ref = np.isnan(got64), np.isnan(ref64)
    if not np.array_equal(nan_got, nan_ref):
        bad = np.argwhere(nan_got != nan_ref)[:5]
        raise AssertionError(
            f"NaN positions differ at {bad.tolist()}: got "
            f"{got64[tuple(bad.T)]}, ref {ref64[tuple(bad.T)]}" + where)
    inf_got, inf_ref = np.isinf(got64), np.isinf(ref64)
    if not (np.array_equal(inf_got, inf_ref)
            and np.array_equal(got64[inf_got], ref64[inf_ref])):
        bad = np.argwhere((inf_got != inf_ref)
                          | (inf_got & (got64 != ref64)))[:5]
        raise AssertionError(
            f"infinities differ at {bad.tolist()}: got "
            f"{got64[tuple(bad.T)]}, ref {ref64[tuple(bad.T)]}" + where)

    rtol, atol = tolerance(dtype, kind)
    rtol *= factor
    # the absolute floor never goes below the result dtype's subnormal
    # spacing (rounding to it is unavoidable, e.g. float16 mean gradients)
    atol = max(atol * factor * atol_factor,
               float(np.finfo(dtype).smallest_subnormal))
    finite = np.isfinite(ref64)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), ref64.shape)
    g, r, s = got64[finite], ref64[finite], scale[finite]
    if g.size == 0:
        return
    diff = np.abs(g - r)
    with np.errstate(over="ignore"):
        bound = rtol * (np.abs(r) + s) + atol
    with np.errstate(over="ignore"):
        norm = diff / (np.abs(r) + s + atol / rtol)
    norm = np.where(diff == 0, 0.0, norm)
    if record and factor == 1.0:
        record_error(func, dtype, norm.max(), diff.max(), rtol, g.size)
    if not np.all(diff <= bound):
        i = int(np.argmax(diff - bound))
        idx = np.argwhere(finite)[i].tolist() if ref64.ndim else []
        raise AssertionError(
            f"{int(np.sum(diff > bound))} of {g.size} values out of "
            f"tolerance; worst at {idx}: got {g[i]!r}, ref {r[i]!r}, "
            f"|diff| {diff[i]:.3g} > bound {bound[i]:.3g} "
            f"(rtol {rtol:.3g}, scale {s[i]:.3g}, atol {atol:.3g}); max "
            f"normalized error {norm.max():.3g}" + where)


def assert_consistent(a, b, dtype, ctx=""):
    """Two csoftmax results that must agree up to rounding (e.g. computed
    through different memory layouts or kernels, where the summation order
    may differ): same NaN / inf pattern, finite values within twice the
    elementwise tolerance of ``dtype``.  Not recorded in the error table."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    assert a64.shape == b64.shape, ctx
    assert_same_specials(a64, b64, ctx)
    rtol, atol = tolerance(dtype, "elem")
    atol = max(atol, float(np.finfo(result_dtype(dtype)).smallest_subnormal))
    fin = np.isfinite(a64)
    np.testing.assert_allclose(a64[fin], b64[fin], rtol=2 * rtol,
                               atol=2 * atol, err_msg=ctx)


def assert_same_specials(got, ref, ctx=""):
    """Only the NaN / inf pattern (used where values are checked elsewhere)."""
    g = np.asarray(got, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    assert g.shape == r.shape, ctx
    assert np.array_equal(np.isnan(g), np.isnan(r)), f"NaN pattern {ctx}"
    assert np.array_equal(np.where(np.isinf(g), g, 0),
                          np.where(np.isinf(r), r, 0)), f"inf pattern {ctx}"


# ---------------------------------------------------------------------------
# cancellation scales (computed in float64 with NumPy only)
# ---------------------------------------------------------------------------

def _reduce_axes(axis, ndim):
    from numpy.lib.array_utils import normalize_axis_tuple
    if axis is None:
        return tuple(range(ndim))
    return normalize_axis_tuple(axis, ndim)


def lse_scale(x, axis=None, keepdims=False, b=None):
    """Scale for lse = m + log|S|, S = sum(b exp(x - m)): the sum is
    computed with error ~eps * sum|b exp(x - m)|, i.e. a relative error of
    eps * cond in S (cond = sum|..| / |sum ..|), and the final addition
    with error eps * (|m| + |log|S||).  Returned with the result's shape."""
    x = np.asarray(x, dtype=np.float64)
    if b is not None:
        x, bb = np.broadcast_arrays(x, np.asarray(b, dtype=np.float64))
    if x.ndim == 0:
        x = x.reshape(1)
        bb = None if b is None else bb.reshape(1)
    axes = _reduce_axes(axis, x.ndim)
    if x.size == 0:
        return 0.0
    with np.errstate(all="ignore"):
        if b is not None:
            x = np.where(bb == 0, -np.inf, x)
        m = np.max(x, axis=axes, keepdims=True)
        msafe = np.where(np.isfinite(m), m, 0.0)
        e = np.exp(x - msafe)
        if b is None:
            s_abs = s = np.sum(e, axis=axes, keepdims=True)
        else:
            s = np.sum(bb * e, axis=axes, keepdims=True)
            s_abs = np.sum(np.abs(bb) * e, axis=axes, keepdims=True)
        cond = np.where(s != 0, s_abs / np.abs(s), 0.0)
        scale = np.abs(msafe) + np.abs(np.log(np.abs(s))) + cond
        scale = np.where(np.isfinite(scale), scale, 0.0)
    if not keepdims:
        scale = np.squeeze(scale, axis=axes)
    return scale


def log_softmax_scale(x, axis=None):
    """log_softmax = (x - m) - log(s): error ~eps * (|x - m| + log s)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return 0.0
    axes = _reduce_axes(axis, x.ndim) if x.ndim else None
    with np.errstate(all="ignore"):
        m = np.max(x, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        tmp = x - m
        logs = np.log(np.sum(np.exp(tmp), axis=axes, keepdims=True))
        scale = np.abs(tmp) + np.abs(logs)
    return np.where(np.isfinite(scale), scale, 0.0)


def loss_scale(n_per_value=1.0):
    """Per-sample loss = (m - z_label) + log(s) is a sum of non-negative
    terms; only log(s) near s = 1 carries an absolute error ~eps.  So the
    scale is 1 per sample (n for a sum of n losses, 1 for their mean)."""
    return float(n_per_value)


def grad_scale(p, t_sum, t):
    """grad = sum(t) * p - t (t one-hot for labels): cancellation scale
    |sum(t) p| + |t|, elementwise."""
    with np.errstate(all="ignore"):
        s = np.abs(t_sum * p) + np.abs(t)
    return np.where(np.isfinite(s), s, 0.0)


# ---------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------

LAYOUTS = ("C", "F", "strided", "negstride", "broadcast", "readonly")


def random_targets(rng, shape, soft, dtype, axis=1):
    """Cross-entropy targets for logits of `shape` with the class axis `axis`:
    probabilities along it (`soft`, of `dtype`) or integer labels of the shape
    without it."""
    if soft:
        t = rng.random(shape)
        t /= t.sum(axis=axis, keepdims=True)
        return t.astype(dtype)
    return rng.integers(0, shape[axis], shape[:axis] + shape[axis + 1:])


def with_layout(base, layout):
    """An array equal to ``base`` (except "broadcast", see below) with the
    requested memory layout:

    C          C-contiguous copy
    F          Fortran-ordered copy
    strided    every axis a [::2] slice of a twice larger array
    negstride  every axis a [::-1] view (negative strides)
    broadcast  np.broadcast_to(base[:1], base.shape): zero stride on axis 0
               (for 1-D input the whole vector is one repeated value)
    readonly   C-contiguous copy with writeable=False
    """
    base = np.asarray(base)
    if base.ndim == 0 or layout == "C":
        return base.copy()
    if layout == "F":
        return np.asfortranarray(base.copy())
    if layout == "strided":
        big = np.zeros(tuple(2 * n for n in base.shape), dtype=base.dtype)
        view = big[(slice(None, None, 2),) * base.ndim]
        view[...] = base
        return view
    if layout == "negstride":
        rev = (slice(None, None, -1),) * base.ndim
        return np.ascontiguousarray(base[rev])[rev]
    if layout == "broadcast":
        if base.shape[0] == 0:
            return np.broadcast_to(base, base.shape)
        return np.broadcast_to(base[:1], base.shape)
    if layout == "readonly":
        c = base.copy()
        c.flags.writeable = False
        return c
    raise ValueError(layout)


def empty_like_layout(shape, dtype, layout, fill=np.nan):
    """A writeable array for ``out=`` with the given layout ("C", "F" or
    "strided"), pre-filled with ``fill`` so that untouched elements show."""
    base = np.full(shape, fill, dtype=dtype)
    return with_layout(base, layout)


# ---------------------------------------------------------------------------
# fused linear + cross-entropy: comparison with first-order error bounds
# ---------------------------------------------------------------------------

_U = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float64): 2.0**-53}


def _ref():
    return load_reference()


def _ref_logits(x, w, b, opts):
    n = int(np.prod(np.shape(x)[:-1]))
    z = np.asarray(x, np.float64).reshape(n, w.shape[1]) @ np.asarray(w, np.float64).T
    if b is not None:
        z = z + np.asarray(b, np.float64)
    return z


def assert_linear_close(got, x, w, b, t, opts, *, dtype, what, n_chunks=1, acc64=False,
                        return_lse=False, grad_scale=1.0):
    """(loss, dx, dW[, db][, lse]) against the reference, with first-order error bounds.

    With u the unit roundoff of the compute dtype, row i's logits carry an
    error delta_i <= D u max_v (|x_i| @ |W|.T)_v (the BLAS's dot products), so
    the logits' gradient G moves by |dG_iv| <= 2 delta_i (|G_iv| + S_i P_iv)
    (S_i = sum_v |G_iv|, P = softmax); dx = G @ W and dW = G.T @ x add their
    own rounding (V resp. N + chunks terms).  Each bound gets a factor 16.
    """
    dtype = np.dtype(dtype)
    cdt = np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    u = _U[cdt]
    reduction = opts.get("reduction", "mean")
    exp = _ref().linear_cross_entropy_with_grad(x, w, t, bias=b, return_lse=return_lse,
                                             grad_scale=grad_scale, **opts)
    d, v = w.shape[1], w.shape[0]
    n = int(np.prod(np.shape(x)[:-1]))
    x64 = np.abs(np.asarray(x, np.float64)).reshape(n, d)
    w64 = np.abs(np.asarray(w, np.float64))
    z = _ref_logits(x, w, b, opts)
    lead = np.shape(x)[:-1]
    t3 = np.asarray(t)
    tt = t3.reshape(-1, v) if t3.dtype.kind == "f" else t3.reshape(-1)
    o2 = {("weight" if k == "class_weight" else k):
          (np.asarray(a).reshape(-1) if k == "sample_weight" else a)
          for k, a in opts.items() if k != "reduction"}
    if np.ndim(grad_scale):
        grad_scale = np.asarray(grad_scale).reshape(-1)
    ig = opts.get("ignore_index", -100)
    if (reduction == "mean" and tt.ndim == 1 and ig is not None and np.all(tt == ig)):
        # every sample ignored: the mean is 0/0 = NaN, and csoftmax's gradients are 0
        # (as PyTorch's); the reference's would be 0 * NaN
        exp = (exp[0],) + tuple(np.zeros_like(np.asarray(e, np.float64))
                                for e in exp[1:len(exp) - bool(return_lse)]) \
            + ((exp[-1],) if return_lse else ())
    with np.errstate(all="ignore"):
        G = _ref().cross_entropy_with_grad(z, tt, reduction=reduction, grad_scale=grad_scale,
                                        **o2)[1] if n else np.zeros((0, v))
        Gn = _ref().cross_entropy_with_grad(z, tt, reduction="none", **o2)[1] if n else G
        G = np.nan_to_num(G) if reduction == "mean" and not np.isfinite(exp[0]) else G
        zc = z if opts.get("softcap") is None else opts["softcap"] * np.tanh(z / opts["softcap"])
        P = _ref().softmax(zc, axis=-1) if n and v else np.zeros_like(z)
        delta = d * u * ((x64 @ w64.T).max(axis=1) if v else np.zeros(n))        # (n,)
        aG = np.abs(G)
        f = _row_factor(opts, reduction, grad_scale, tt, zc, n, v)
        T = np.zeros((n, v))
        if tt.ndim == 2:
            T = np.abs(tt)
        else:
            ok = (tt >= 0) & (tt < v)
            T[np.flatnonzero(ok), tt[ok]] = 1.0
        # the logits' error moves G; the kernel's own rounding is a few u of f (P + T)
        Bg = (2 * delta[:, None] * (aG + aG.sum(axis=1, keepdims=True) * P)
              + 8 * u * f[:, None] * (P + T + 1.0 / max(v, 1)))
        L = np.abs(Gn).sum(axis=1) * delta                     # per-sample loss error
    per_loss = np.abs(np.asarray(_ref().linear_cross_entropy(
        x, w, t, bias=b, **dict(opts, reduction="none")), np.float64)).reshape(-1)
    if reduction == "none":
        tol_loss = (L + 8 * u * per_loss).reshape(lead)
    else:
        tot = float(np.sum(L + 8 * u * per_loss))
        if reduction == "mean":
            s_sum = float(np.sum(np.asarray(_ref().linear_cross_entropy(
                x, w, t, bias=b, **dict(opts, reduction="sum")))))
            tot = tot * (abs(float(exp[0])) / abs(s_sum) if s_sum else 1.0)
        tol_loss = tot
    acc = (n_chunks if not acc64 else 0) + n + 2
    tols = [tol_loss,
            (Bg @ w64 + (v + 2) * u * (aG @ w64)).reshape(np.shape(x)),
            Bg.T @ x64 + acc * u * (aG.T @ x64)]
    if b is not None:
        tols.append(Bg.sum(axis=0) + acc * u * aG.sum(axis=0))
    if return_lse:
        lse_ref = np.abs(np.asarray(exp[-1], np.float64)).reshape(-1)
        tols.append((delta + 8 * u * lse_ref).reshape(lead))
    assert len(got) == len(exp) == len(tols), what
    for k, (g, r, tol) in enumerate(zip(got, exp, tols)):
        g = np.asarray(g)
        r = np.asarray(r, np.float64)
        assert g.shape == r.shape, f"{what}: output {k} shape {g.shape} != {r.shape}"
        # the loss (output 0) and lse are per-row results: float32 for float16 input
        want = row_dtype(dtype) if k == 0 or (return_lse and k == len(got) - 1) else dtype
        assert g.dtype == want, f"{what}: output {k} dtype {g.dtype} != {want}"
        g64 = g.astype(np.float64)
        np.testing.assert_array_equal(np.isnan(g64), np.isnan(r),
                                      err_msg=f"{what}: NaN positions, output {k}")
        fin = np.isfinite(r)
        # (+ one rounding to the result dtype, e.g. float16 results computed in float32)
        tol = 16 * np.broadcast_to(np.asarray(tol, np.float64), r.shape) \
            + float(np.finfo(dtype).eps) * np.abs(r) + 4 * float(np.finfo(dtype).tiny)
        diff = np.abs(g64 - r)
        bad = fin & ~(diff <= tol)
        assert not bad.any(), (
            f"{what}: output {k}: {int(bad.sum())} of {r.size} out of tolerance, worst "
            f"diff {float(diff[bad].max()):.3g} (tol there "
            f"{float(tol[bad][np.argmax(diff[bad])]):.3g})")
        inf = ~fin & ~np.isnan(r)
        np.testing.assert_array_equal(g64[inf], r[inf], err_msg=f"{what}: inf, output {k}")
    return exp


def _row_factor(opts, reduction, grad_scale, tt, zc, n, v):
    """An upper bound of each row's gradient factor: |grad_scale| s_i max(w) (1 + 2 alpha
    |lse_i|), divided by the mean's denominator."""
    sw = np.ones(n) if opts.get("sample_weight") is None else \
        np.asarray(opts["sample_weight"], np.float64).reshape(-1)
    cw = opts.get("class_weight")
    wmax = 1.0 if cw is None else float(np.max(cw)) if v else 0.0
    lse = _ref().logsumexp(zc, axis=-1) if n and v else np.zeros(n)
    gs = np.abs(np.broadcast_to(np.asarray(grad_scale, np.float64), (n,)))
    f = gs * sw * wmax * (1 + 2 * opts.get("z_loss", 0.0) * np.abs(lse))
    if tt.ndim == 2:
        f = f * np.abs(tt).sum(axis=1)
    if reduction == "mean":
        if tt.ndim == 2:
            den = sw.sum()
        else:
            ig = opts.get("ignore_index", -100)
            keep = tt != ig if ig is not None else np.ones(n, bool)
            wy = np.ones(n) if cw is None else np.asarray(cw, np.float64)[
                np.clip(tt, 0, max(v - 1, 0))]
            den = float(np.sum((sw * wy)[keep]))
        f = f / den if den else f
    return np.nan_to_num(f)


# ---------------------------------------------------------------------------
# issue 16 losses (binary cross-entropy, distillation KL, token log-probs):
# accuracy bounds and the checks shared by test_losses.py and test_driver.py
# ---------------------------------------------------------------------------
#
# Bounds (spec 16, "Accuracy bounds"); |got - ref| against the float64 reference:
# * losses and per-row values: rtol * (|ref| + scale), rtol = TOLERANCES "reduce"
#   (float64 1e-13; float32 1e-6, the README's cross-entropy bound; float16 1e-3).
#   scale: BCE w * max(1, pos_weight) per element (the absolute floor loss_scale
#   gives a cross-entropy sample), summed/averaged like the loss; token_logprobs 1
#   per row for logp and entropy (loss_scale(1)); KL see kl_loss_scale.
# * gradient entries: GRAD_ULPS * u * F + u_r * |ref|: u the unit roundoff of the
#   arithmetic (2**-24 for float32 and float16, 2**-53 for float64 and integer
#   logits), F the entry's gradient scale (|grad_scale| x the reduction's factor x
#   w max(1, pos_weight) for BCE, x T max(1, sum p) for KL), u_r = 2**-11 for
#   float16 results only (the float32 value rounded once).  For float64 results the
#   float64 reference carries rounding errors of the same order as the kernel's (a
#   few u of F, from sum(p), the sum of the exponentials and the division; two
#   summation orders of the reference itself differ by 4.4 u F), so there the bound
#   is doubled: 2 * GRAD_ULPS * u * F, still "a few ULP" of the entries' scale.

#: unit roundoff of the arithmetic csoftmax uses for a result dtype
U_COMPUTE = {"float64": _U[np.dtype(np.float64)], "float32": _U[np.dtype(np.float32)],
             "float16": _U[np.dtype(np.float32)]}    # float16 is computed in float32
#: the result's own rounding (float16 results are rounded float32 values)
U_RESULT = {"float64": 0.0, "float32": 0.0, "float16": 2.0**-11}
#: spec 16: gradient entries within 4 u of their scale
GRAD_ULPS = 4.0


def assert_grad_close(got, ref, F, *, func, dtype, ctx="", record=True):
    """A gradient against the float64 reference: same NaN/inf pattern, finite
    entries within GRAD_ULPS * u * F + u_r |ref| (F broadcast to the shape)."""
    dtype = np.dtype(dtype)
    where = f" [{func}, {dtype.name}{', ' + ctx if ctx else ''}]"
    assert isinstance(got, np.ndarray), f"gradient is {type(got).__name__}" + where
    assert got.dtype == dtype, f"gradient dtype {got.dtype} != {dtype}" + where
    g = got.astype(np.float64)
    r = np.asarray(ref, np.float64)
    assert g.shape == r.shape, f"gradient shape {g.shape} != {r.shape}" + where
    assert_same_specials(g, r, "gradient" + where)
    fin = np.isfinite(r)
    if not fin.any():
        return
    u, ur = U_COMPUTE[dtype.name], U_RESULT[dtype.name]
    ulps = GRAD_ULPS * (2.0 if dtype == np.float64 else 1.0)   # see above
    floor = float(np.finfo(dtype).smallest_subnormal)
    F = np.broadcast_to(np.asarray(F, np.float64), r.shape)[fin]
    gf, rf = g[fin], r[fin]
    diff = np.abs(gf - rf)
    bound = ulps * u * F + ur * np.abs(rf) + floor
    ratio = diff / bound
    if record:
        record_error(func, dtype, float(ratio.max()) * ulps * u, float(diff.max()),
                     ulps * u, gf.size)
    if not np.all(diff <= bound):
        i = int(np.argmax(ratio))
        idx = np.argwhere(fin)[i].tolist()
        raise AssertionError(
            f"{int(np.sum(diff > bound))} of {gf.size} gradient entries out of tolerance; "
            f"worst at {idx}: got {gf[i]!r}, ref {rf[i]!r}, |diff| {diff[i]:.3g} > bound "
            f"{bound[i]:.3g} (F {F[i]:.3g}, {diff[i] / (u * max(F[i], 1e-300)):.3g} u F)"
            + where)


def _loss_kind_check(loss, shape, rdt, reduction, where):
    if reduction == "none":
        assert isinstance(loss, (np.ndarray, np.generic)), (
            f"'none' loss is {type(loss).__name__}" + where)
        assert np.shape(loss) == tuple(shape), (
            f"'none' loss shape {np.shape(loss)} != {tuple(shape)}" + where)
    else:
        assert isinstance(loss, np.floating), (
            f"{reduction} loss is {type(loss).__name__}, not a NumPy floating scalar" + where)
    assert loss.dtype == rdt, f"loss dtype {loss.dtype} != {rdt}" + where


def bce_elem_scale(shape, weight=None, pos_weight=None):
    """w * max(1, pos_weight) per element (float64, broadcast to shape)."""
    w = np.ones(shape) if weight is None else np.broadcast_to(
        np.asarray(weight, np.float64), shape)
    p = 1.0 if pos_weight is None else np.maximum(
        1.0, np.asarray(pos_weight, np.float64))
    return np.broadcast_to(w * p, shape)


def check_bce(loss, grad, logits, target, *, weight=None, pos_weight=None,
              reduction="mean", grad_scale=1.0, func="binary_cross_entropy", ctx="",
              expected=None, factor=1.0):
    """(loss, grad) of csoftmax.binary_cross_entropy(_with_grad) against the
    reference (or against ``expected`` = (loss, grad), e.g. PyTorch's, with the
    bounds multiplied by ``factor``); grad may be None."""
    ref = load_reference()
    shape = np.shape(logits)
    rdt = result_dtype(np.asarray(logits).dtype)
    where = f" [{func}, {rdt.name}, {ctx}]"
    if expected is None:
        expected = ref.binary_cross_entropy_with_grad(
            logits, target, weight=weight, pos_weight=pos_weight, reduction=reduction,
            grad_scale=grad_scale)
    eloss, egrad = expected
    _loss_kind_check(loss, shape, row_dtype(rdt), reduction, where)
    sc = bce_elem_scale(shape, weight, pos_weight)
    n = max(int(np.prod(shape)), 1)
    lscale = {"none": sc, "sum": np.sum(sc), "mean": np.sum(sc) / n}[reduction]
    assert_close(loss, eloss, func=f"{func}[{reduction}] loss", dtype=row_dtype(rdt),
                 kind="reduce",
                 scale=lscale, ctx=ctx, factor=factor, record=factor == 1.0)
    if grad is None:
        return
    fac = 1.0 / n if reduction == "mean" else 1.0
    F = factor * sc * fac * np.abs(np.asarray(grad_scale, np.float64))
    assert_grad_close(grad, egrad, F, func=f"{func}[{reduction}] grad", dtype=rdt, ctx=ctx,
                      record=factor == 1.0)


def _kl_parts(s, teacher, axis, T, kind):
    """float64 (a = s/T, lse_a, p, |log p| magnitude, lse of the teacher) with the
    classes last."""
    ref = load_reference()
    s = np.moveaxis(np.asarray(s, np.float64), axis, -1)
    t = np.moveaxis(np.asarray(teacher, np.float64), axis, -1)
    with np.errstate(all="ignore"):
        a = s / T
        lse_a = np.asarray(ref.logsumexp(a, axis=-1)) if a.size else np.zeros(a.shape[:-1])
        if kind == "logits":
            b = t / T
            p = ref.softmax(b, axis=-1) if b.size else b
            mag = np.abs(b)
            lse_b = np.asarray(ref.logsumexp(b, axis=-1)) if b.size else lse_a * 0
        elif kind == "log_probs":
            p, mag, lse_b = np.exp(t), np.abs(t), np.zeros(lse_a.shape)
        else:
            p, mag, lse_b = t, np.abs(np.log(t)), np.zeros(lse_a.shape)
    return a, lse_a, np.asarray(p, np.float64), mag, lse_b


def kl_loss_scale(s, teacher, *, axis=-1, temperature=1.0, teacher_kind="logits"):
    """(per-row cancellation scale of the KL, per-row sum of p), row shape, float64.

    The float32 KL of a student close to its teacher is far smaller than log C:
    it is sum_k p_k (log p_k - log q_k) = sum_k p_k (b_k - a_k) + sum(p) (lse_a - lse_b)
    with a = s/T, b = t/T, and the terms that cancel carry errors of u times their
    magnitude (the rounding of s/T itself is u |a_k|).  So the bound is absolute,
    scaled by the row's log-sum-exp and logit magnitudes:
    T**2 (sum_{p_k > 0} p_k (|a_k| + |b_k|) + sum(p) (|lse_a| + |lse_b| + 1)),
    |b_k| read as |log p_k| for the log_probs / probs teachers."""
    T = float(temperature)
    a, lse_a, p, mag, lse_b = _kl_parts(s, teacher, axis, T, teacher_kind)
    with np.errstate(all="ignore"):
        terms = np.where(p > 0, p * (np.abs(a) + mag), 0.0)
        psum = np.sum(p, axis=-1)
        sc = T * T * (np.sum(terms, axis=-1) + psum * (np.abs(lse_a) + np.abs(lse_b) + 1.0))
    return np.where(np.isfinite(sc), sc, 0.0), psum


def check_kl(loss, grad, s, teacher, *, axis=-1, temperature=1.0, teacher_kind="logits",
             reduction="batchmean", mask=None, grad_scale=1.0, func="kl_div", ctx="",
             expected=None, factor=1.0):
    """(loss, grad) of csoftmax.kl_div(_with_grad) against the reference (or
    ``expected``); grad may be None."""
    ref = load_reference()
    shape = np.shape(s)
    ax = axis % len(shape)
    row_shape = shape[:ax] + shape[ax + 1:]
    C = shape[ax]
    rdt = result_dtype(np.asarray(s).dtype)
    where = f" [{func}, {rdt.name}, {ctx}]"
    if expected is None:
        expected = ref.kl_div_with_grad(s, teacher, axis=axis, temperature=temperature,
                                        teacher_kind=teacher_kind, reduction=reduction,
                                        mask=mask, grad_scale=grad_scale)
    eloss, egrad = expected
    _loss_kind_check(loss, row_shape, row_dtype(rdt), reduction, where)
    keep = np.ones(row_shape, bool) if mask is None else np.asarray(mask, bool)
    sc, psum = kl_loss_scale(s, teacher, axis=ax, temperature=temperature,
                             teacher_kind=teacher_kind)
    sc = np.where(keep, sc, 0.0)
    counted = int(np.sum(keep))
    den = {"none": 1, "sum": 1, "batchmean": counted, "mean": counted * C}[reduction] or 1
    lscale = sc if reduction == "none" else np.sum(sc) / den
    assert_close(loss, eloss, func=f"{func}[{reduction}] loss", dtype=row_dtype(rdt),
                 kind="reduce",
                 scale=lscale, ctx=ctx, factor=factor, record=factor == 1.0)
    if grad is None:
        return
    psum = np.nan_to_num(psum, nan=0.0, posinf=0.0)
    gs = np.abs(np.broadcast_to(np.asarray(grad_scale, np.float64), row_shape))
    F = factor * float(temperature) * np.maximum(1.0, psum) * gs / den
    F = np.expand_dims(np.where(keep, F, 0.0), ax)
    assert_grad_close(grad, egrad, F, func=f"{func}[{reduction}] grad", dtype=rdt, ctx=ctx,
                      record=factor == 1.0)


def check_token_logprobs(res, logits, labels, *, axis=-1, return_entropy=False,
                         ignore_index=None, ctx="", expected=None, factor=1.0):
    """csoftmax.token_logprobs' result against the reference (or ``expected``):
    logp and entropy per row within rtol * (|ref| + 1)."""
    ref = load_reference()
    shape = np.shape(logits)
    ax = axis % len(shape)
    row_shape = shape[:ax] + shape[ax + 1:]
    rdt = result_dtype(np.asarray(logits).dtype)
    where = f" [token_logprobs, {rdt.name}, {ctx}]"
    if expected is None:
        expected = ref.token_logprobs(logits, labels, axis=axis, return_entropy=True,
                                      ignore_index=ignore_index)
    elogp, eent = expected
    if return_entropy:
        assert isinstance(res, tuple) and len(res) == 2, (
            f"return_entropy=True gave {type(res).__name__}" + where)
        logp, ent = res
    else:
        logp, ent = res, None
    for name, got, exp in (("logp", logp, elogp), ("entropy", ent, eent)):
        if got is None:
            continue
        assert isinstance(got, (np.ndarray, np.generic)), (
            f"{name} is {type(got).__name__}" + where)
        assert np.shape(got) == row_shape, f"{name} shape {np.shape(got)} != {row_shape}" + where
        assert_close(got, exp, func=f"token_logprobs {name}", dtype=row_dtype(rdt),
                     kind="reduce",
                     scale=loss_scale(1), ctx=ctx, factor=factor, record=factor == 1.0)


# ---------------------------------------------------------------------------
# csoftmax configuration / ISA
# ---------------------------------------------------------------------------

def _show_config():
    try:
        import csoftmax
        return csoftmax.show_config()
    except Exception as exc:  # noqa: BLE001 - only for the report header
        return {"isa": f"<unavailable: {type(exc).__name__}: {exc}>",
                "available": []}


@pytest.fixture(scope="session")
def isa_config():
    """The dict returned by csoftmax.show_config()."""
    import csoftmax
    return csoftmax.show_config()


@pytest.fixture(scope="session")
def isa(isa_config):
    """Name of the active kernel path (set via CSOFTMAX_ISA at import)."""
    return isa_config["isa"]


def _available_isas():
    try:
        from csoftmax import _core
        return _core.isa_available()
    except ImportError:          # (the package check reports it)
        return ["scalar"]


@pytest.fixture(params=_available_isas())
def each_isa(request):
    """Every ISA path of this build (the emulated AVX-512 one included under
    tools/avx512_emu.sh), switched in-process for one test, then restored."""
    from csoftmax import _core
    before = _core.isa_active()
    _core.isa_set(request.param)
    yield request.param
    _core.isa_set(before)


def pytest_report_header(config):
    cfg = _show_config()
    lines = [f"csoftmax ISA: {cfg.get('isa')} (available: "
             f"{cfg.get('available')}; CSOFTMAX_ISA="
             f"{os.environ.get('CSOFTMAX_ISA', '<unset>')})"]
    if _shard() is not None:
        lines.append(f"test shard {os.environ['CSOFTMAX_TEST_SHARD']} (CSOFTMAX_TEST_SHARD)")
    return lines


def _shard():
    """CSOFTMAX_TEST_SHARD="i/n": this process runs every n-th collected test
    starting at the i-th (0 <= i < n); unset: all of them.  For the slow runs
    (tools/sanitize.sh, tools/avx512_emu.sh) that use one pytest process per
    core; round robin over the sorted node ids spreads each file's
    parametrisations over the shards."""
    spec = os.environ.get("CSOFTMAX_TEST_SHARD", "").strip()
    if not spec:
        return None
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        i = n = -1
    if not 0 <= i < n:
        raise pytest.UsageError(f"CSOFTMAX_TEST_SHARD={spec!r}: expected 'i/n' with 0 <= i < n")
    return i, n


def pytest_collection_modifyitems(config, items):
    shard = _shard()
    if shard is None:
        return
    i, n = shard
    # by node id, so that every shard process agrees whatever order a plugin left
    ids = sorted(it.nodeid for it in items)
    mine = set(ids[i::n])
    config.hook.pytest_deselected(items=[it for it in items if it.nodeid not in mine])
    items[:] = [it for it in items if it.nodeid in mine]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not MAX_ERRORS:
        return
    tr = terminalreporter
    cfg = _show_config()
    tr.section(f"csoftmax max observed errors (ISA {cfg.get('isa')})")
    tr.write_line("normalized error = |got - ref| / (|ref| + scale + atol/rtol)"
                  "; pass iff <= rtol")
    tr.write_line(f"{'function':<40}{'dtype':<9}{'max norm err':>14}"
                  f"{'rtol':>10}{'ratio':>8}{'max |diff|':>12}{'values':>11}")
    for (func, dtype), e in sorted(MAX_ERRORS.items()):
        ratio = e["norm"] / e["rtol"] if e["rtol"] else math.nan
        tr.write_line(f"{func:<40}{dtype:<9}{e['norm']:>14.3e}"
                      f"{e['rtol']:>10.1e}{ratio:>8.3f}{e['abs']:>12.3e}"
                      f"{e['n']:>11d}")

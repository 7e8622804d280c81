"""where= masks (issue 16, part 4): logsumexp, softmax, log_softmax and the
cross-entropy with a boolean mask of the elements (classes) taking part.

Oracles:
* csoftmax.reference (float64, written independently of the fast code);
* JAX's ``logsumexp``/``softmax``/``log_softmax(where=)`` in float64 (the
  anchor the issue names; skipped when JAX is not installed);
* identities that need no oracle: a mask equals ``-inf`` logits (rows that
  are not fully masked; bit for bit where the same kernel runs), a ``(C,)``
  class mask equals dropping those classes, NaN at masked elements changes
  nothing, fully masked rows count as ignored rows.

Every masked computation runs with warnings turned into errors: masking alone
must give neither NaN nor a RuntimeWarning.
"""
import contextlib
import warnings
import zlib

import numpy as np
import pytest

import csoftmax as cs
from csoftmax_testsupport import (
    assert_close, load_reference, log_softmax_scale, lse_scale, result_dtype, row_dtype,
    with_layout)

R = load_reference()

DTYPES = ("float32", "float64", "float16", "int64")
# (shape, axis) for logsumexp / softmax: class axis last, not last (PyTorch's
# (N, C, H, W) with axis=1), first, several axes, the whole array
SHAPES = [((7, 13), -1), ((3, 5, 4, 2), 1), ((6, 9), 0), ((4, 5, 6), (0, 2)),
          ((30,), None)]
KINDS = ("true", "false", "classes", "rows", "full")


@contextlib.contextmanager
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in (axis if isinstance(axis, tuple) else (axis,)))


def _mask(rng, shape, axis, kind):
    """A where= argument of the given kind (broadcastable to `shape`)."""
    axes = _axes(axis, len(shape))
    if kind == "true":
        return np.True_
    if kind == "false":
        return False
    if kind == "classes":          # the same class mask for every row
        m = rng.random(tuple(n if i in axes else 1 for i, n in enumerate(shape))) > 0.4
        m.reshape(-1)[0] = True
        return m
    if kind == "rows":             # whole rows in or out
        m = rng.random(tuple(1 if i in axes else n for i, n in enumerate(shape))) > 0.3
        m.reshape(-1)[0] = False
        return m
    m = rng.random(shape) > 0.45
    # row 0 fully masked, row 1 one element only, row 2 complete
    kept = [i for i in range(len(shape)) if i not in axes]
    moved = np.moveaxis(m, axes, tuple(range(len(shape) - len(axes), len(shape))))
    rows = moved.reshape(-1, int(np.prod([shape[a] for a in axes])))
    rows[0] = False
    if rows.shape[0] > 2:
        rows[1] = False
        rows[1, -1] = True
        rows[2] = True
    if not kept:
        rows[0, 0] = True           # (one row only: not fully masked)
    return np.ascontiguousarray(np.moveaxis(rows.reshape(moved.shape), tuple(
        range(len(shape) - len(axes), len(shape))), axes))


def _values(rng, shape, dtype, wb):
    """Input of `dtype`; masked elements hold NaN (floats) or a huge integer,
    which would dominate or poison any row they were not left out of."""
    if np.dtype(dtype).kind == "i":
        x = rng.integers(-6, 7, size=shape).astype(dtype)
        x[~wb] = 10**9
    else:
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        x[~wb] = np.nan
    return x


def _problem(seed, shape, axis, dtype, kind):
    rng = np.random.default_rng(seed)
    w = _mask(rng, shape, axis, kind)
    wb = np.broadcast_to(w, shape)
    return _values(rng, shape, dtype, wb), w, wb


def _seed(*parts):
    # crc32, not hash(): str hashing is salted per process, which made the
    # problems (and so the pass/fail of a tight bound) differ from run to run
    return zlib.crc32("|".join(str(p) for p in parts).encode())


# --------------------------------------------------------------------------- logsumexp

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape,axis", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_against_reference(dtype, shape, axis, kind):
    x, w, wb = _problem(_seed("lse", dtype, shape, kind), shape, axis, dtype, kind)
    rdt = row_dtype(dtype)          # float32 for float16 input
    with no_warnings():
        got = cs.logsumexp(x, axis=axis, where=w)
        got2, sgn = cs.logsumexp(x, axis=axis, where=w, return_sign=True)
        gotk = cs.logsumexp(x, axis=axis, where=w, keepdims=True)
    ref, rsgn = R.logsumexp(x, axis=axis, where=w, return_sign=True)
    x64 = np.where(wb, x.astype(np.float64), -np.inf)
    scale = lse_scale(x64, axis)
    assert_close(got, ref, func="logsumexp[where]", dtype=rdt, kind="reduce", scale=scale)
    np.testing.assert_array_equal(got2, got)
    np.testing.assert_array_equal(np.asarray(gotk).reshape(np.shape(got)), got)
    assert np.asarray(sgn).dtype == rdt
    np.testing.assert_array_equal(sgn, rsgn)
    empty = ~np.any(wb, axis=_axes(axis, len(shape)))
    assert np.all(np.asarray(got)[empty] == -np.inf)
    assert np.all(np.asarray(sgn)[empty] == 0)
    assert not np.isnan(np.asarray(got, np.float64)).any()


@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_logsumexp_with_b(dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((6, 9)) * 2).astype(dtype)
    b = rng.standard_normal((6, 9)).astype(dtype)       # signs of both kinds
    w = rng.random((6, 9)) > 0.3
    w[0] = False
    x[~w] = np.nan
    b[~w & (rng.random((6, 9)) > 0.5)] = np.inf          # ignored too
    with no_warnings():
        got, sgn = cs.logsumexp(x, axis=1, b=b, where=w, return_sign=True)
        got_plain = cs.logsumexp(x, axis=1, b=np.abs(b), where=w)
    ref, rsgn = R.logsumexp(x, axis=1, b=b, where=w, return_sign=True)
    x64 = np.where(w, x.astype(np.float64), -np.inf)
    assert_close(got, ref, func="logsumexp[where,b]", dtype=dtype, kind="reduce",
                 scale=lse_scale(x64, 1, b=np.where(w, b.astype(np.float64), 0.0)))
    np.testing.assert_array_equal(sgn, rsgn)
    assert got[0] == -np.inf and sgn[0] == 0
    assert_close(got_plain, R.logsumexp(x, axis=1, b=np.abs(b), where=w),
                 func="logsumexp[where,b]", dtype=dtype, kind="reduce",
                 scale=lse_scale(x64, 1, b=np.where(w, np.abs(b.astype(np.float64)), 0.0)))


def test_logsumexp_scalar_and_empty():
    with no_warnings():
        assert cs.logsumexp(3.0, where=False) == -np.inf
        assert cs.logsumexp(3.0, where=True) == 3.0
        r, s = cs.logsumexp(np.float32(3.0), where=False, return_sign=True)
        assert r == -np.inf and s == 0 and r.dtype == np.float32
        # an empty row has nothing left: -inf with sign 0 (SciPy's sign is -1)
        r, s = cs.logsumexp(np.zeros((2, 0)), axis=1, where=True, return_sign=True)
    np.testing.assert_array_equal(r, [-np.inf, -np.inf])
    np.testing.assert_array_equal(s, [0.0, 0.0])
    np.testing.assert_array_equal(cs.logsumexp(np.zeros((2, 0)), axis=1, return_sign=True)[1],
                                  [-1.0, -1.0])


# --------------------------------------------------------------------------- softmax

@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape,axis", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_against_reference(dtype, shape, axis, kind, log):
    x, w, wb = _problem(_seed("sm", dtype, shape, kind, log), shape, axis, dtype, kind)
    rdt = result_dtype(dtype)
    f, rf = (cs.log_softmax, R.log_softmax) if log else (cs.softmax, R.softmax)
    with no_warnings():
        got = f(x, axis=axis, where=w)
    ref = rf(x, axis=axis, where=w)
    name = ("log_softmax" if log else "softmax") + "[where]"
    x64 = np.where(wb, x.astype(np.float64), -np.inf)
    scale = log_softmax_scale(x64, axis) if log else 0.0
    assert_close(got, ref, func=name, dtype=rdt, kind="elem", scale=scale)
    assert got.shape == x.shape
    assert np.all(got[~wb] == (-np.inf if log else 0.0))
    assert not np.isnan(got.astype(np.float64)).any()
    if not log and dtype != "float16":
        sums = np.sum(got.astype(np.float64), axis=_axes(axis, len(shape)))
        full = np.any(wb, axis=_axes(axis, len(shape)))
        np.testing.assert_allclose(sums[full], 1.0, rtol=1e-5)
        assert np.all(sums[~full] == 0.0)


def test_softmax_zero_d():
    with no_warnings():
        assert cs.softmax(2.0, where=True) == 1.0
        assert cs.softmax(2.0, where=False) == 0.0
        assert cs.log_softmax(np.float32(2.0), where=False) == -np.inf
        assert cs.log_softmax(np.float32(2.0), where=np.True_).dtype == np.float32


# --------------------------------------------------------------------------- JAX

def _jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape,axis", SHAPES, ids=str)
def test_against_jax(shape, axis, kind):
    """JAX's where= results in float64: the semantics the issue anchors on."""
    jax = _jax()
    x, w, wb = _problem(_seed("jax", shape, kind), shape, axis, "float64", kind)
    jw = np.asarray(wb)
    with no_warnings():
        mine = [cs.logsumexp(x, axis=axis, where=w),
                cs.logsumexp(x, axis=axis, where=w, return_sign=True)[1],
                cs.softmax(x, axis=axis, where=w),
                cs.log_softmax(x, axis=axis, where=w)]
    jl, js = jax.nn.logsumexp(x, axis=axis, where=jw, return_sign=True)
    theirs = [jl, js, jax.nn.softmax(x, axis=axis, where=jw),
              jax.nn.log_softmax(x, axis=axis, where=jw)]
    for m, t in zip(mine, theirs):
        t = np.asarray(t, dtype=np.float64)
        m = np.asarray(m, dtype=np.float64)
        assert m.shape == t.shape
        np.testing.assert_array_equal(np.isinf(m), np.isinf(t))
        np.testing.assert_allclose(m, t, rtol=1e-12, atol=1e-15)


def test_reference_against_jax():
    """The reference itself agrees with JAX (rows with an unmasked -inf too)."""
    jax = _jax()
    rng = np.random.default_rng(11)
    x = rng.standard_normal((9, 8)) * 4
    w = rng.random((9, 8)) > 0.4
    w[0] = False
    x[1, :3] = -np.inf
    w[1, :3] = True
    x[~w] = np.nan
    for got, exp in [(R.logsumexp(x, axis=1, where=w), jax.nn.logsumexp(x, axis=1, where=w)),
                     (R.softmax(x, axis=1, where=w), jax.nn.softmax(x, axis=1, where=w)),
                     (R.log_softmax(x, axis=1, where=w),
                      jax.nn.log_softmax(x, axis=1, where=w))]:
        np.testing.assert_allclose(got, np.asarray(exp), rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- masks and -inf

@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("shape,axis", [((40, 67), -1), ((3, 17, 5, 2), 1)], ids=str)
def test_mask_equals_neg_inf(dtype, shape, axis):
    """Rows that are not fully masked: the result of the -inf logits, bit for
    bit (the same kernel runs on the same values)."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    w = rng.random(shape) > 0.5
    np.put_along_axis(w, np.zeros((1,) * len(shape), np.intp), True, axis=axis)
    xinf = np.where(w, x, -np.inf).astype(dtype)
    x[~w] = 1e30                                         # would dominate if used
    with no_warnings():
        np.testing.assert_array_equal(cs.logsumexp(x, axis=axis, where=w),
                                      cs.logsumexp(xinf, axis=axis))
        np.testing.assert_array_equal(cs.softmax(x, axis=axis, where=w),
                                      cs.softmax(xinf, axis=axis))
        np.testing.assert_array_equal(cs.log_softmax(x, axis=axis, where=w),
                                      cs.log_softmax(xinf, axis=axis))
        ax = axis % len(shape)
        bshape = shape[:ax] + shape[ax + 1:]
        lab = rng.integers(0, shape[ax], bshape)
        lab.reshape(-1)[::5] = -100
        for red in ("none", "sum", "mean"):
            l1, g1, s1 = cs.cross_entropy_with_grad(x, lab, axis=axis, where=w, reduction=red,
                                                    return_lse=True)
            l2, g2, s2 = cs.cross_entropy_with_grad(xinf, lab, axis=axis, reduction=red,
                                                    return_lse=True)
            np.testing.assert_array_equal(l1, l2)
            np.testing.assert_array_equal(s1, s2)
            np.testing.assert_array_equal(g1, np.where(w, g2, 0))


def test_nan_only_matters_unmasked():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, 10))
    w = rng.random((6, 10)) > 0.3
    w[:, 0] = True
    a = np.where(w, x, np.nan)
    b = np.where(w, x, 123.0)
    lab = np.zeros(6, np.int64)
    with no_warnings():
        for f in (cs.softmax, cs.log_softmax, cs.logsumexp):
            np.testing.assert_array_equal(f(a, axis=1, where=w), f(b, axis=1, where=w))
        for opts in ({}, {"label_smoothing": 0.2, "softcap": 3.0}):
            ra = cs.cross_entropy_with_grad(a, lab, where=w, reduction="none", **opts)
            rb = cs.cross_entropy_with_grad(b, lab, where=w, reduction="none", **opts)
            for u, v in zip(ra, rb):
                np.testing.assert_array_equal(u, v)
    # a NaN at an unmasked element still poisons its row (as without where=)
    a[2, 0] = np.nan
    assert np.isnan(cs.logsumexp(a, axis=1, where=w)[2])
    assert np.isnan(cs.softmax(a, axis=1, where=w)[2][w[2]]).all()
    assert np.all(cs.softmax(a, axis=1, where=w)[2][~w[2]] == 0)
    loss, g = cs.cross_entropy_with_grad(a, lab, where=w, reduction="none")
    assert np.isnan(loss[2]) and np.isnan(g[2][w[2]]).all() and np.all(g[2][~w[2]] == 0)
    assert not np.isnan(np.delete(loss, 2)).any()


def test_where_none_and_true_are_plain():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 33)).astype(np.float32)
    lab = rng.integers(0, 33, 8)
    for f in (cs.logsumexp, cs.softmax, cs.log_softmax):
        plain = f(x, axis=1)
        np.testing.assert_array_equal(f(x, axis=1, where=None), plain)
        np.testing.assert_array_equal(f(x, axis=1, where=True), plain)
    for w in (None, True):
        l1, g1 = cs.cross_entropy_with_grad(x, lab, where=w)
        l0, g0 = cs.cross_entropy_with_grad(x, lab)
        assert l1 == l0
        np.testing.assert_array_equal(g1, g0)
        assert cs.cross_entropy(x, lab, where=w) == cs.cross_entropy(x, lab)


# --------------------------------------------------------------------------- cross-entropy

OPTIONS = {
    "plain": {},
    "weight": {"weight": True},
    "sample_weight": {"sample_weight": True},
    "smoothing": {"label_smoothing": 0.15},
    "z_loss": {"z_loss": 1e-2},
    "softcap": {"softcap": 2.5},
    "lse": {"return_lse": True},
    "all": {"weight": True, "sample_weight": True, "label_smoothing": 0.3, "z_loss": 1e-3,
            "softcap": 4.0, "return_lse": True},
}
# (|got - ref| / max |ref|) per result dtype, within the float32 bounds the
# README states (loss ~1e-6 of its scale; gradient entries 2e-6 relative): the
# soft-cap with where= is applied by NumPy and chained after the kernel, a few
# more roundings than the kernel's own path (seen: 4.05 * 2**-24 of the largest)
TOL = {"float64": (1e-12, 1e-13), "float32": (2e-6, 16 * 2.0**-24), "float16": (2e-3, 2e-3)}


def _xent_problem(seed, dtype, soft, layout, kind):
    rng = np.random.default_rng(seed)
    shape, ax = ((9, 11), 1) if layout == "last" else ((3, 7, 4, 2), 1)
    if layout == "last":
        ax = -1
    axn = ax % len(shape)
    w = _mask(rng, shape, ax, kind)
    wb = np.broadcast_to(w, shape)
    z = _values(rng, shape, dtype, wb)
    valid = np.moveaxis(wb, axn, -1)
    bshape = valid.shape[:-1]
    if soft:
        t = rng.random(valid.shape) * valid
        with np.errstate(invalid="ignore"):
            t = t / t.sum(-1, keepdims=True)
        t[~valid.any(-1)] = 0.7                # fully masked rows: never looked at
        t = np.moveaxis(t, -1, axn).astype(dtype if dtype != "int64" else "float64")
    else:
        t = np.empty(bshape, np.int64)
        for i in np.ndindex(bshape):
            ok = np.flatnonzero(valid[i])
            t[i] = rng.choice(ok) if ok.size else 10**6     # a fully masked row: any label
        t.reshape(-1)[1::4] = -100
    return z, t, w, wb, rng, shape, axn


def _opts(spec, rng, shape, axn):
    o = dict(spec)
    if o.get("weight"):
        o["weight"] = rng.random(shape[axn]) + 0.2
    if o.get("sample_weight"):
        o["sample_weight"] = rng.random(shape[:axn] + shape[axn + 1:]) + 0.1
    return o


def _check(got, ref, dtype, what, tol):
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"NaN {what}")
    np.testing.assert_array_equal(np.where(np.isinf(got), got, 0),
                                  np.where(np.isinf(ref), ref, 0), err_msg=f"inf {what}")
    f = np.isfinite(ref)
    if f.any():
        scale = max(float(np.max(np.abs(ref[f]))), 1e-300)
        err = float(np.max(np.abs(got[f] - ref[f]))) / scale
        assert err <= tol, f"{what} [{dtype}]: error {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("kind", ("classes", "full"))
@pytest.mark.parametrize("layout", ("last", "nchw"))
@pytest.mark.parametrize("opt", list(OPTIONS))
@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_against_reference(dtype, soft, opt, layout, kind):
    z, t, w, wb, rng, shape, axn = _xent_problem(
        _seed("xent", dtype, soft, opt, layout, kind), dtype, soft, layout, kind)
    o = _opts(OPTIONS[opt], rng, shape, axn)
    rdt, ldt = result_dtype(dtype), row_dtype(dtype)    # gradient, loss (float32 for float16)
    tl, tg = TOL[ldt.name][0], TOL[rdt.name][1]
    for red in ("none", "sum", "mean"):
        with no_warnings():
            got = cs.cross_entropy_with_grad(z, t, axis=axn, reduction=red, where=w, **o)
            only = cs.cross_entropy(z, t, axis=axn, reduction=red, where=w, **o)
        ref = R.cross_entropy_with_grad(z, t, axis=axn, reduction=red, where=w, **o)
        loss, grad = got[0], got[1]
        assert grad.dtype == rdt and grad.shape == z.shape
        assert np.asarray(loss).dtype == ldt
        _check(loss, ref[0], ldt, f"loss {red}", tl)
        _check(grad, ref[1], rdt, f"grad {red}", tg)
        assert np.all(grad[~wb] == 0), "gradient not 0 at masked classes"
        if o.get("return_lse"):
            _check(got[2], ref[2], ldt, "lse", tl)
            np.testing.assert_array_equal(only[0], loss)
            np.testing.assert_array_equal(only[1], got[2])
        else:
            np.testing.assert_array_equal(only, loss)
        for r in got:
            assert not np.isnan(np.asarray(r, np.float64)).any(), "NaN from masking"


@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.2}, {"z_loss": 0.01},
                                  {"softcap": 3.0}, {"weight": "w"}, {"sample_weight": "s"},
                                  {"label_smoothing": 0.1, "weight": "w", "z_loss": 1e-3}],
                         ids=str)
@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
def test_xent_class_mask_equals_dropped_classes(soft, opts):
    """A (C,) vocabulary mask is the loss over the kept classes only: the
    plain kernels on z[:, keep] are the oracle (smoothing: eps / C_kept)."""
    rng = np.random.default_rng(21)
    n, c = 12, 15
    z = rng.standard_normal((n, c)) * 2
    keep = rng.random(c) > 0.35
    keep[[0, 5]] = True
    idx = np.flatnonzero(keep)
    w = rng.random(c) + 0.1
    s = rng.random(n) + 0.5
    o = {k: (w if v == "w" else s if v == "s" else v) for k, v in opts.items()}
    o_sub = dict(o, weight=w[idx]) if "weight" in o else o
    if soft:
        t_sub = rng.random((n, idx.size))
        t_sub /= t_sub.sum(1, keepdims=True)
        t = np.zeros((n, c))
        t[:, idx] = t_sub
    else:
        t_sub = rng.integers(0, idx.size, n)
        t = idx[t_sub]
    z_masked = z.copy()
    z_masked[:, ~keep] = np.nan
    for red in ("none", "sum", "mean"):
        with no_warnings():
            l1, g1, s1 = cs.cross_entropy_with_grad(z_masked, t, where=keep, reduction=red,
                                                    return_lse=True, **o)
        l2, g2, s2 = cs.cross_entropy_with_grad(z[:, idx], t_sub, reduction=red,
                                                return_lse=True, **o_sub)
        np.testing.assert_allclose(l1, l2, rtol=1e-13)
        np.testing.assert_allclose(s1, s2, rtol=1e-13)
        np.testing.assert_allclose(g1[:, idx], g2, rtol=1e-12, atol=1e-15)
        assert np.all(g1[:, ~keep] == 0)


def test_xent_smoothing_formula():
    """eps / C_r on each unmasked class, by hand in float64."""
    z = np.array([[1.0, 2.0, -1.0, 0.5, 3.0],
                  [0.0, 0.0, 0.0, 0.0, 0.0]])
    w = np.array([[True, True, False, True, False],
                  [False, True, True, True, True]])
    y = np.array([1, 4])
    eps = 0.3
    loss, g = cs.cross_entropy_with_grad(z, y, label_smoothing=eps, where=w, reduction="none")
    for i in range(2):
        v = np.flatnonzero(w[i])
        lse = np.log(np.sum(np.exp(z[i, v])))
        exp_loss = (1 - eps) * (lse - z[i, y[i]]) + eps / v.size * np.sum(lse - z[i, v])
        np.testing.assert_allclose(loss[i], exp_loss, rtol=1e-14)
        p = np.where(w[i], np.exp(z[i] - lse), 0.0)
        target = (1 - eps) * (np.arange(5) == y[i]) + eps * w[i] / v.size
        np.testing.assert_allclose(g[i], p - target, rtol=1e-13, atol=1e-16)


def test_xent_label_on_masked_class():
    z = np.array([[0.5, 2.0, -1.0, 1.0]] * 3)
    w = np.array([True, False, True, True])
    y = np.array([1, 0, 1])
    v = np.flatnonzero(w)
    p = np.zeros(4)
    p[v] = np.exp(z[0, v]) / np.exp(z[0, v]).sum()
    with no_warnings():
        loss, g = cs.cross_entropy_with_grad(z, y, where=w, reduction="none")
        assert loss[0] == np.inf and loss[2] == np.inf and np.isfinite(loss[1])
        np.testing.assert_allclose(g[0], p, rtol=1e-14)     # d/dz of the unmasked part
        assert g[0, 1] == 0
        # smoothing: still +inf; a zero coefficient at the masked label: finite
        assert np.isinf(cs.cross_entropy(z, y, where=w, label_smoothing=0.1,
                                         reduction="none")[0])
        lw = cs.cross_entropy(z, y, where=w, weight=[1.0, 0.0, 1.0, 1.0], reduction="none")
        assert lw[0] == 0.0 and lw[1] > 0
        l1 = cs.cross_entropy(z, y, where=w, label_smoothing=1.0, reduction="none")
        assert np.all(np.isfinite(l1))
        # soft targets: mass on a masked class is +inf too
        t = np.full((3, 4), 0.25)
        ls, gs_ = cs.cross_entropy_with_grad(z, t, where=w, reduction="none")
        assert np.all(ls == np.inf) and np.all(gs_[:, 1] == 0)
        np.testing.assert_allclose(gs_[0], p - np.where(w, 0.25, 0.0), rtol=1e-13)
    # the same results as a -inf logit (outside the masked entries)
    zi = np.where(w, z, -np.inf)
    l2, g2 = cs.cross_entropy_with_grad(zi, y, reduction="none")
    np.testing.assert_array_equal(loss, l2)
    np.testing.assert_array_equal(g, np.where(w, g2, 0.0))


@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_fully_masked_rows_are_ignored(dtype, soft):
    """Loss 0, gradient 0, lse 0, not in the mean: the rows left out."""
    rng = np.random.default_rng(6)
    z = (rng.standard_normal((10, 6)) * 3).astype(dtype)
    w = np.ones((10, 6), bool)
    gone = np.array([0, 3, 4, 9])
    w[gone] = False
    rest = np.setdiff1d(np.arange(10), gone)
    if soft:
        t = rng.random((10, 6))
        t /= t.sum(1, keepdims=True)
        t[gone] = np.nan                       # never read
    else:
        t = rng.integers(0, 6, 10)
        t[gone] = [-5, 6, 10**9, 7]            # never checked
    sw = rng.random(10) + 0.5
    opts = dict(sample_weight=sw, z_loss=1e-2, label_smoothing=0.1, weight=rng.random(6) + 1)
    for red in ("none", "sum", "mean"):
        with no_warnings():
            loss, g, lse = cs.cross_entropy_with_grad(z, t, where=w, reduction=red,
                                                      return_lse=True, **opts)
        o2 = dict(opts, sample_weight=sw[rest])
        l2, g2, lse2 = cs.cross_entropy_with_grad(z[rest], t[rest], reduction=red,
                                                  return_lse=True, **o2)
        rtol = {"float16": 2e-3, "float32": 2e-6}.get(dtype, 1e-13)
        if red == "none":
            assert np.all(loss[gone] == 0)
            np.testing.assert_allclose(loss[rest], l2, rtol=rtol)
        else:
            np.testing.assert_allclose(loss, l2, rtol=rtol)
        assert np.all(g[gone] == 0) and np.all(lse[gone] == 0)
        np.testing.assert_allclose(g[rest].astype(np.float64), g2.astype(np.float64),
                                   rtol=rtol, atol=rtol * float(np.max(np.abs(g2))))
    # every row masked: the mean has nothing to divide by (NaN, as all ignored)
    with no_warnings():
        lm, gm = cs.cross_entropy_with_grad(z, t, where=False)
        assert cs.cross_entropy(z, t, where=False, reduction="sum") == 0
    assert np.isnan(lm) and np.all(gm == 0)


# --------------------------------------------------------------------------- out= / inplace

@pytest.mark.parametrize("layout", ("C", "F", "strided"))
@pytest.mark.parametrize("dtype", ("float32", "float64", "float16"))
def test_out_forms(dtype, layout):
    rng = np.random.default_rng(13)
    shape = (4, 9, 3)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    w = rng.random(shape) > 0.4
    w[0, :, 0] = False
    lab = rng.integers(0, 9, (4, 3))
    with no_warnings():
        for f in (cs.softmax, cs.log_softmax):
            exp = f(x, axis=1, where=w)
            out = with_layout(np.full(shape, 7, dtype), layout)
            assert f(x, axis=1, where=w, out=out) is out
            np.testing.assert_array_equal(out, exp)
            xi = with_layout(x, layout)
            assert f(xi, axis=1, where=w, out=xi) is xi              # in place
            np.testing.assert_array_equal(xi, exp)
        exp = cs.logsumexp(x, axis=1, where=w, keepdims=True)
        out = with_layout(np.full((4, 1, 3), 7, row_dtype(dtype)), layout)
        assert cs.logsumexp(x, axis=1, where=w, keepdims=True, out=out) is out
        np.testing.assert_array_equal(out, exp)
        l0, g0 = cs.cross_entropy_with_grad(x, lab, axis=1, where=w, label_smoothing=0.1)
        out = with_layout(np.full(shape, 7, dtype), layout)
        l1, g1 = cs.cross_entropy_with_grad(x, lab, axis=1, where=w, label_smoothing=0.1,
                                            out=out)
        assert g1 is out and l1 == l0
        np.testing.assert_array_equal(g1, g0)
        xi = with_layout(x, layout)
        l2, g2 = cs.cross_entropy_with_grad(xi, lab, axis=1, where=w, label_smoothing=0.1,
                                            inplace=True)
        assert g2 is xi and l2 == l0
        np.testing.assert_array_equal(g2, g0)
        l3, g3 = cs.cross_entropy_with_grad(x.copy(), lab, axis=1, where=w)
        xi = x.copy()
        l4, g4 = cs.cross_entropy_with_grad(xi, lab, axis=1, where=w, inplace=True)
        assert g4 is xi and l4 == l3
        np.testing.assert_array_equal(g4, g3)


# --------------------------------------------------------------------------- complex

def test_complex_class_mask_equals_dropped():
    rng = np.random.default_rng(17)
    x = rng.standard_normal((5, 8)) + 1j * rng.standard_normal((5, 8))
    keep = np.array([1, 0, 1, 1, 0, 1, 0, 1], bool)
    xm = x.copy()
    xm[:, ~keep] = np.nan
    with no_warnings():
        np.testing.assert_allclose(cs.logsumexp(xm, axis=1, where=keep),
                                   cs.logsumexp(x[:, keep], axis=1), rtol=1e-14)
        for f in (cs.softmax, cs.log_softmax):
            r = f(xm, axis=1, where=keep)
            np.testing.assert_allclose(r[:, keep], f(x[:, keep], axis=1), rtol=1e-13)
        assert np.all(cs.softmax(xm, axis=1, where=keep)[:, ~keep] == 0)
        assert np.all(cs.log_softmax(xm, axis=1, where=keep)[:, ~keep] == -np.inf)
        r, s = cs.logsumexp(x.astype(np.complex64), axis=1, where=False, return_sign=True)
    assert np.all(r == -np.inf) and np.all(s == 0)
    assert r.dtype == np.float32 and s.dtype == np.complex64


# --------------------------------------------------------------------------- bad input

def test_bad_where():
    x = np.random.default_rng(0).standard_normal((4, 5))
    lab = np.array([0, 1, 2, 3])
    calls = [
        lambda wh, **k: cs.logsumexp(x, axis=1, where=wh, **k),
        lambda wh, **k: cs.softmax(x, axis=1, where=wh, **k),
        lambda wh, **k: cs.log_softmax(x, axis=1, where=wh, **k),
        lambda wh, **k: cs.cross_entropy(x, lab, where=wh),
        lambda wh, **k: cs.cross_entropy_with_grad(x, lab, where=wh, **k),
    ]
    for f in calls:
        with pytest.raises(TypeError, match="where must be a boolean"):
            f(np.ones((4, 5), np.int64))
        with pytest.raises(TypeError, match="where must be a boolean"):
            f(1.0)
        with pytest.raises(ValueError, match="does not broadcast"):
            f(np.ones(6, bool))
        with pytest.raises(ValueError, match="does not broadcast"):
            f(np.ones((2, 4, 5), bool))             # NumPy's where= cannot add axes
        with pytest.raises(ValueError, match="does not broadcast"):
            f(np.ones((4, 1, 5), bool))
    # nothing is written when the mask is refused
    out = np.full((4, 5), 7.0)
    with pytest.raises(ValueError):
        cs.softmax(x, axis=1, where=np.ones(3, bool), out=out)
    with pytest.raises(ValueError):
        cs.cross_entropy_with_grad(x, lab, where=np.ones(3, bool), out=out)
    assert np.all(out == 7.0)
    xi = x.copy()
    with pytest.raises(TypeError):
        cs.cross_entropy_with_grad(xi, lab, where=np.ones((4, 5), np.uint8), inplace=True)
    np.testing.assert_array_equal(xi, x)
    # a bad label of a counted row is reported (and nothing written)
    with pytest.raises(ValueError, match="out of range"):
        cs.cross_entropy_with_grad(xi, np.array([0, 9, 1, 1]), where=np.ones(5, bool),
                                   inplace=True, label_smoothing=0.1)
    np.testing.assert_array_equal(xi, x)
    # complex logits are refused by the cross-entropy, with or without a mask
    with pytest.raises(TypeError, match="complex"):
        cs.cross_entropy(x + 0j, lab, where=True)

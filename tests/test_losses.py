"""binary_cross_entropy(_with_grad), kl_div(_with_grad), token_logprobs (issue 16).

Oracles, none of them csoftmax itself:
* csoftmax.reference (float64, written from the spec's formulas);
* PyTorch in float64 (F.binary_cross_entropy_with_logits with every weight /
  pos_weight combination, F.kl_div(F.log_softmax(s / T), p) * T**2 at several
  temperatures, log_softmax(...).gather and -sum p log p), gradients by autograd;
  the reference is checked against it first (section 1), then csoftmax (section 5);
* central differences of the reference loss for the gradients (float64).

The accuracy bounds (spec 16) are written down with the shared checks in
conftest.py (check_bce, check_kl, check_token_logprobs, assert_grad_close).
"""
import itertools
import warnings
import zlib

import numpy as np
import pytest

import csoftmax
from csoftmax_testsupport import (
    LAYOUTS, assert_grad_close, check_bce, check_kl, check_token_logprobs, load_reference,
    result_dtype, with_layout)

ref = load_reference()

DTYPES = ("float32", "float64", "float16", "int64")
REDUCTIONS = ("none", "sum", "mean")
KL_REDUCTIONS = ("none", "sum", "batchmean", "mean")
KINDS = ("logits", "log_probs", "probs")
LENGTHS = tuple(range(1, 68))
LONG = (5000, 70000)


def _seed(*parts):
    return zlib.crc32("/".join(map(str, parts)).encode())


def _torch():
    return pytest.importorskip("torch")


# ---------------------------------------------------------------------------
# problem makers
# ---------------------------------------------------------------------------

def make_logits(shape, dtype, rng, scale=4.0):
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        return rng.integers(-20, 21, size=shape).astype(dt)
    return (rng.standard_normal(shape) * scale).astype(dt)


def target_dtype(dtype):
    """BCE targets / KL probabilities: the result dtype (float64 for int logits)."""
    return result_dtype(dtype)


def make_bce_target(shape, dtype, rng):
    t = rng.random(shape)
    flat = t.reshape(-1)
    flat[::5] = 0.0                      # exact 0 and 1: the coefficient rule
    flat[1::5] = 1.0
    flat[2::7] = 0.5
    return t.astype(target_dtype(dtype))


def make_teacher(kind, shape, axis, dtype, rng, zeros=True):
    """A teacher of ``kind`` for student logits of ``shape``; with ``zeros`` some
    zero probabilities (-inf logits / log-probs, 0 probabilities)."""
    dt = np.dtype(dtype)
    ax = axis % len(shape)
    if kind == "logits" and dt.kind in "iu":
        return rng.integers(-20, 21, size=shape).astype(dt)
    t = rng.standard_normal(shape) * 3.0
    if zeros and shape[ax] > 1:
        # one zero-probability class per row (never all of them)
        idx = rng.integers(0, shape[ax], size=shape[:ax] + (1,) + shape[ax + 1:])
        np.put_along_axis(t, idx, -np.inf, axis=ax)
    tdt = target_dtype(dtype)
    if kind == "logits":
        return t.astype(tdt)
    logp = ref.log_softmax(t, axis=ax)
    if kind == "log_probs":
        return np.asarray(logp).astype(tdt)
    p = np.exp(logp).astype(tdt)
    return np.clip(p, 0, 1)


def make_labels(row_shape, c, rng, dtype=np.int64):
    return rng.integers(0, c, size=row_shape).astype(dtype)


def moved_row_shape(shape, axis):
    ax = axis % len(shape)
    return shape[:ax] + shape[ax + 1:]


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}")) if a.ndim else a.reshape(1).view(
        np.dtype(f"u{a.dtype.itemsize}"))


# ===========================================================================
# 1. the reference against PyTorch (float64, gradients by autograd)
# ===========================================================================

def _torch_bce(z, t, w, p, reduction):
    torch = _torch()
    F = torch.nn.functional
    tz = torch.tensor(np.asarray(z, np.float64), requires_grad=True)
    tl = F.binary_cross_entropy_with_logits(
        tz, torch.tensor(np.asarray(t, np.float64)),
        weight=None if w is None else torch.tensor(np.asarray(w, np.float64)),
        pos_weight=None if p is None else torch.tensor(np.asarray(p, np.float64)),
        reduction=reduction)
    tl.sum().backward()
    return tl.detach().numpy(), tz.grad.numpy()


def _bce_weights(kind, shape, rng):
    if kind == "none":
        return None
    if kind == "full":
        return rng.random(shape) * 2.0
    if kind == "last":
        return rng.random(shape[-1:]) * 2.0 + 0.1
    if kind == "rows":                      # (N, 1): broadcast along the last axis
        return rng.random(shape[:-1] + (1,)) * 2.0
    if kind == "scalar":
        return np.array(1.7)
    raise ValueError(kind)


def _bce_pos(kind, shape, rng):
    if kind == "none":
        return None
    if kind == "vec":
        return rng.random(shape[-1]) * 3.0
    if kind == "one":
        return np.array([2.5])
    if kind == "scalar":
        return np.array(0.4)
    raise ValueError(kind)


BCE_W = ("none", "full", "last", "rows", "scalar")
BCE_P = ("none", "vec", "one", "scalar")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pk", BCE_P)
@pytest.mark.parametrize("wk", BCE_W)
def test_reference_bce_vs_torch(wk, pk, reduction):
    rng = np.random.default_rng(_seed("rbce", wk, pk, reduction))
    for shape in ((6,), (5, 7), (2, 3, 9)):
        z = rng.standard_normal(shape) * 6.0
        z.reshape(-1)[:2] = (35.0, -35.0)
        t = rng.random(shape)
        t.reshape(-1)[2::4] = np.round(t.reshape(-1)[2::4])
        w, p = _bce_weights(wk, shape, rng), _bce_pos(pk, shape, rng)
        tl, tg = _torch_bce(z, t, w, p, reduction)
        loss, grad = ref.binary_cross_entropy_with_grad(z, t, weight=w, pos_weight=p,
                                                        reduction=reduction)
        assert np.shape(loss) == np.shape(tl) and grad.shape == tg.shape
        # PyTorch's max(z,0) - z t + log1p(exp(-|z|)) is accurate to eps*(|l| + |z|)
        np.testing.assert_allclose(loss, tl, rtol=1e-13, atol=1e-13 * 35 * z.size)
        np.testing.assert_allclose(grad, tg, rtol=1e-12, atol=1e-15)
        assert np.array_equal(ref.binary_cross_entropy(z, t, weight=w, pos_weight=p,
                                                       reduction=reduction), loss)


def test_reference_bce_special_values_vs_torch():
    """Wherever PyTorch's loss is finite the reference equals it; where PyTorch
    gives NaN for 0 * inf the spec's coefficient rule gives 0."""
    z = np.array([np.inf, np.inf, -np.inf, -np.inf, np.nan, 1e4, -1e4, 1e4, -1e4, 0.0])
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 1.0, 0.0, 0.0, 1.0, 0.3])
    for p in (None, np.array(2.0)):
        tl, tg = _torch_bce(z, t, None, p, "none")
        loss, grad = ref.binary_cross_entropy_with_grad(z, t, pos_weight=p, reduction="none")
        fin = np.isfinite(tl)
        np.testing.assert_allclose(loss[fin], tl[fin], rtol=1e-15)
        np.testing.assert_array_equal(loss[:5], [0.0, np.inf, 0.0, np.inf, np.nan])
        np.testing.assert_allclose(grad, tg, rtol=1e-15, atol=1e-16)


def _torch_kl(s, teacher, axis, T, kind, reduction):
    torch = _torch()
    F = torch.nn.functional
    ts = torch.tensor(np.asarray(s, np.float64), requires_grad=True)
    tt = torch.tensor(np.asarray(teacher, np.float64))
    if kind == "logits":
        p = F.softmax(tt / T, dim=axis)
    elif kind == "log_probs":
        p = tt.exp()
    else:
        p = tt
    per = F.kl_div(F.log_softmax(ts / T, dim=axis), p, reduction="none").sum(dim=axis) * T**2
    n = per.numel()
    C = s.shape[axis]
    tl = {"none": per, "sum": per.sum(), "batchmean": per.sum() / n,
          "mean": per.sum() / (n * C)}[reduction]
    tl.sum().backward()
    return tl.detach().numpy(), ts.grad.numpy()


@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", (0.5, 1.0, 2.0, 7.3))
def test_reference_kl_vs_torch(T, kind, reduction):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(_seed("rkl", T, kind, reduction))
    for shape, axis in (((6, 11), -1), ((3, 5, 4, 2), 1), ((9,), 0)):
        s = rng.standard_normal(shape) * 3.0
        teacher = make_teacher(kind, shape, axis, np.float64, rng)
        tl, tg = _torch_kl(s, teacher, axis, T, kind, reduction)
        loss, grad = ref.kl_div_with_grad(s, teacher, axis=axis, temperature=T,
                                          teacher_kind=kind, reduction=reduction)
        np.testing.assert_allclose(loss, tl, rtol=1e-13, atol=1e-14 * T * T)
        np.testing.assert_allclose(grad, tg, rtol=1e-12, atol=1e-15 * T)
        assert np.array_equal(ref.kl_div(s, teacher, axis=axis, temperature=T,
                                         teacher_kind=kind, reduction=reduction), loss)
        if len(shape) == 2 and reduction != "none":
            # the spec's anchor: F.kl_div's own reductions on (N, C), times T**2
            tp = {"logits": F.softmax(torch.tensor(teacher) / T, dim=1),
                  "log_probs": torch.tensor(teacher).exp(),
                  "probs": torch.tensor(teacher)}[kind]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")      # PyTorch's note on "mean"
                direct = F.kl_div(F.log_softmax(torch.tensor(s) / T, dim=1), tp,
                                  reduction=reduction) * T**2
            np.testing.assert_allclose(loss, direct.numpy(), rtol=1e-13, atol=1e-14)


def test_reference_token_logprobs_vs_torch():
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(_seed("rtlp"))
    for shape, axis in (((7, 11), -1), ((3, 5, 4, 2), 1), ((9,), 0), ((4, 1), -1)):
        z = rng.standard_normal(shape) * 4.0
        lab = make_labels(moved_row_shape(shape, axis), shape[axis], rng)
        ls = F.log_softmax(torch.tensor(z), dim=axis)
        lp = ls.gather(axis % len(shape), torch.tensor(lab).unsqueeze(axis)).squeeze(axis)
        ent = -(ls.exp() * ls).sum(dim=axis)
        logp, e = ref.token_logprobs(z, lab, axis=axis, return_entropy=True)
        np.testing.assert_allclose(logp, lp.numpy(), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(e, ent.numpy(), rtol=1e-13, atol=1e-14)
        assert np.array_equal(ref.token_logprobs(z, lab, axis=axis), logp)


# ===========================================================================
# 2. reference gradients against central differences of the reference loss
# ===========================================================================

def central_diff(f, x, h=1e-5):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


def _sumloss(v):
    return float(np.sum(v))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_reference_bce_grad_central_differences(reduction):
    rng = np.random.default_rng(_seed("cdbce", reduction))
    z = rng.standard_normal((3, 5)) * 2
    t = rng.random((3, 5))
    t[0, :2] = (0.0, 1.0)
    w, p = rng.random((3, 5)) + 0.2, rng.random(5) * 3
    kw = dict(weight=w, pos_weight=p, reduction=reduction)
    num = central_diff(lambda v: _sumloss(ref.binary_cross_entropy(v, t, **kw)), z)
    _, g = ref.binary_cross_entropy_with_grad(z, t, grad_scale=1.0, **kw)
    np.testing.assert_allclose(g, num, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_reference_kl_grad_central_differences(kind, reduction):
    rng = np.random.default_rng(_seed("cdkl", kind, reduction))
    s = rng.standard_normal((4, 6)) * 2
    teacher = make_teacher(kind, s.shape, -1, np.float64, rng)
    if kind == "log_probs":
        teacher = teacher - 0.3                 # rows not summing to 1
    elif kind == "probs":
        teacher = teacher * 0.7
    mask = np.array([True, False, True, True])
    kw = dict(temperature=1.7, teacher_kind=kind, reduction=reduction, mask=mask)
    num = central_diff(lambda v: _sumloss(ref.kl_div(v, teacher, **kw)), s)
    _, g = ref.kl_div_with_grad(s, teacher, **kw)
    np.testing.assert_allclose(g, num, rtol=1e-7, atol=1e-9)


# ===========================================================================
# 3. the reference on the spec's own statements
# ===========================================================================

def test_reference_spec_statements():
    # BCE: z = +inf, t = 1 and z = -inf, t = 0 give 0; NaN z gives NaN; "mean" of
    # nothing is NaN
    l = ref.binary_cross_entropy(np.array([np.inf, -np.inf, np.nan]),
                                 np.array([1.0, 0.0, 1.0]), reduction="none")
    np.testing.assert_array_equal(l, [0.0, 0.0, np.nan])
    assert np.isnan(ref.binary_cross_entropy(np.zeros((0, 3)), np.zeros((0, 3))))
    # KL: p_k == 0 terms are 0 even where q_k == 0; a teacher equal to the student 0
    s = np.array([[0.0, -np.inf, 1.0]])
    assert ref.kl_div(s, np.array([[0.3, 0.0, 0.7]]), teacher_kind="probs") > 0
    assert np.isfinite(ref.kl_div(s, np.array([[0.3, 0.0, 0.7]]), teacher_kind="probs"))
    assert ref.kl_div(s, s, temperature=3.0) == 0.0
    # token_logprobs special rows
    z = np.array([[0.0, np.inf, 1.0], [0.0, np.inf, 1.0], [-np.inf] * 3, [np.nan, 0, 0]])
    lp, e = ref.token_logprobs(z, np.array([1, 0, 0, 2]), return_entropy=True)
    np.testing.assert_array_equal(lp, [np.nan, -np.inf, np.nan, np.nan])
    assert np.isnan(e).all()


# ===========================================================================
# 4. csoftmax against the reference
# ===========================================================================

# ---------------------------------------------------------------- dtypes x lengths

@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_lengths(dtype):
    rng = np.random.default_rng(_seed("bcelen", dtype))
    for c in LENGTHS:
        z = make_logits((3, c), dtype, rng)
        t = make_bce_target((3, c), dtype, rng)
        w = (rng.random(c) + 0.1).astype(target_dtype(dtype)) if c % 2 else None
        p = (rng.random(c) * 3).astype(target_dtype(dtype)) if c % 3 == 0 else None
        for red in REDUCTIONS:
            kw = dict(weight=w, pos_weight=p, reduction=red)
            ctx = f"C={c}, w={w is not None}, p={p is not None}"
            loss = csoftmax.binary_cross_entropy(z, t, **kw)
            check_bce(loss, None, z, t, ctx=ctx, **kw)
            loss, grad = csoftmax.binary_cross_entropy_with_grad(z, t, **kw)
            check_bce(loss, grad, z, t, func="binary_cross_entropy_with_grad", ctx=ctx, **kw)


@pytest.mark.parametrize("c", LONG)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_long(dtype, c):
    rng = np.random.default_rng(_seed("bcelong", dtype, c))
    z = make_logits((2, c), dtype, rng)
    t = make_bce_target((2, c), dtype, rng)
    p = (rng.random(c) * 2).astype(target_dtype(dtype))
    for red in REDUCTIONS:
        loss, grad = csoftmax.binary_cross_entropy_with_grad(z, t, pos_weight=p, reduction=red)
        check_bce(loss, grad, z, t, pos_weight=p, reduction=red,
                  func="binary_cross_entropy_with_grad", ctx=f"C={c}")


def _kl_case(kind, dtype, shape, axis, rng, T):
    s = make_logits(shape, dtype, rng)
    teacher = make_teacher(kind, shape, axis, dtype, rng)
    return s, teacher


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_lengths(dtype):
    rng = np.random.default_rng(_seed("kllen", dtype))
    for c in LENGTHS:
        kind = KINDS[c % 3]
        T = (1.0, 2.0, 0.7, 4.5)[c % 4]
        s, teacher = _kl_case(kind, dtype, (3, c), -1, rng, T)
        for red in KL_REDUCTIONS:
            kw = dict(temperature=T, teacher_kind=kind, reduction=red)
            ctx = f"C={c}, kind={kind}, T={T}"
            loss = csoftmax.kl_div(s, teacher, **kw)
            check_kl(loss, None, s, teacher, ctx=ctx, **kw)
            loss, grad = csoftmax.kl_div_with_grad(s, teacher, **kw)
            check_kl(loss, grad, s, teacher, func="kl_div_with_grad", ctx=ctx, **kw)


@pytest.mark.parametrize("c", LONG)
@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_long(dtype, c):
    rng = np.random.default_rng(_seed("kllong", dtype, c))
    for kind, T in zip(KINDS, (1.0, 2.0, 3.0)):
        s, teacher = _kl_case(kind, dtype, (2, c), -1, rng, T)
        for red in ("none", "batchmean"):
            kw = dict(temperature=T, teacher_kind=kind, reduction=red)
            loss, grad = csoftmax.kl_div_with_grad(s, teacher, **kw)
            check_kl(loss, grad, s, teacher, func="kl_div_with_grad",
                     ctx=f"C={c}, kind={kind}", **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_token_logprobs_lengths(dtype):
    rng = np.random.default_rng(_seed("tlplen", dtype))
    for c in LENGTHS:
        z = make_logits((3, c), dtype, rng)
        lab = make_labels((3,), c, rng)
        ctx = f"C={c}"
        check_token_logprobs(csoftmax.token_logprobs(z, lab), z, lab, ctx=ctx)
        check_token_logprobs(csoftmax.token_logprobs(z, lab, return_entropy=True), z, lab,
                             return_entropy=True, ctx=ctx)


@pytest.mark.parametrize("c", LONG)
@pytest.mark.parametrize("dtype", DTYPES)
def test_token_logprobs_long(dtype, c):
    rng = np.random.default_rng(_seed("tlplong", dtype, c))
    z = make_logits((2, c), dtype, rng)
    lab = np.array([0, c - 1])
    check_token_logprobs(csoftmax.token_logprobs(z, lab, return_entropy=True), z, lab,
                         return_entropy=True, ctx=f"C={c}")


# ---------------------------------------------------------------- layouts

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_layouts(dtype, layout):
    rng = np.random.default_rng(_seed("bcelay", dtype, layout))
    for shape in ((37,), (5, 19), (3, 4, 35)):
        z = with_layout(make_logits(shape, dtype, rng), layout)
        t = with_layout(make_bce_target(shape, dtype, rng), layout)
        w = with_layout((rng.random(shape[-1:]) + 0.5).astype(target_dtype(dtype)), layout)
        for red, wt in itertools.product(REDUCTIONS, (None, w)):
            z0, t0 = np.array(z), np.array(t)
            loss, grad = csoftmax.binary_cross_entropy_with_grad(z, t, weight=wt,
                                                                 reduction=red)
            np.testing.assert_array_equal(z, z0)
            np.testing.assert_array_equal(t, t0)
            check_bce(loss, grad, z0, t0, weight=wt, reduction=red,
                      func="binary_cross_entropy_with_grad", ctx=f"{shape} {layout}")
            loss2 = csoftmax.binary_cross_entropy(z, t, weight=wt, reduction=red)
            check_bce(loss2, None, z0, t0, weight=wt, reduction=red, ctx=f"{shape} {layout}")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_layouts(dtype, layout):
    rng = np.random.default_rng(_seed("kllay", dtype, layout))
    for (shape, axis), kind in itertools.product(
            (((5, 19), -1), ((3, 4, 35), -1), ((2, 7, 3, 5), 1), ((6, 40), 0)), KINDS):
        s = with_layout(make_logits(shape, dtype, rng), layout)
        teacher = with_layout(make_teacher(kind, shape, axis, dtype, rng), layout)
        s0, t0 = np.array(s), np.array(teacher)
        for red in KL_REDUCTIONS:
            kw = dict(axis=axis, temperature=1.5, teacher_kind=kind, reduction=red)
            loss, grad = csoftmax.kl_div_with_grad(s, teacher, **kw)
            np.testing.assert_array_equal(s, s0)
            check_kl(loss, grad, s0, t0, func="kl_div_with_grad",
                     ctx=f"{shape} axis={axis} {layout} {kind}", **kw)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_token_logprobs_layouts(dtype, layout):
    rng = np.random.default_rng(_seed("tlplay", dtype, layout))
    for shape, axis in (((5, 19), -1), ((3, 4, 35), -1), ((2, 7, 3, 5), 1), ((6, 40), 0),
                        ((33,), 0)):
        z = with_layout(make_logits(shape, dtype, rng), layout)
        rs = moved_row_shape(shape, axis)
        lab = make_labels(rs, shape[axis], rng)
        lab = with_layout(lab, layout) if lab.ndim else lab
        z0 = np.array(z)
        res = csoftmax.token_logprobs(z, lab, axis=axis, return_entropy=True)
        np.testing.assert_array_equal(z, z0)
        check_token_logprobs(res, z0, np.array(lab), axis=axis, return_entropy=True,
                             ctx=f"{shape} axis={axis} {layout}")


# ---------------------------------------------------------------- class axis 1 of 4-D

@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_axis1_of_nchw_matches_moved(dtype):
    """(N, C, H, W) with axis=1 gives the same numbers as the classes moved last
    (up to rounding) and as the reference."""
    rng = np.random.default_rng(_seed("nchw", dtype))
    shape = (2, 9, 4, 5)
    s = make_logits(shape, dtype, rng)
    teacher = make_teacher("logits", shape, 1, dtype, rng)
    mask = rng.random((2, 4, 5)) < 0.8
    for red in KL_REDUCTIONS:
        kw = dict(temperature=2.0, reduction=red, mask=mask)
        loss, grad = csoftmax.kl_div_with_grad(s, teacher, axis=1, **kw)
        check_kl(loss, grad, s, teacher, axis=1, func="kl_div_with_grad", ctx="NCHW", **kw)
        lm, gm = csoftmax.kl_div_with_grad(np.moveaxis(s, 1, -1), np.moveaxis(teacher, 1, -1),
                                           axis=-1, **kw)
        rt = 1e-12 if dtype == "float64" else 4e-6
        np.testing.assert_allclose(loss, lm, rtol=rt, atol=rt)
        np.testing.assert_allclose(grad, np.moveaxis(gm, -1, 1), rtol=rt, atol=rt * 1e-2)
    lab = make_labels((2, 4, 5), 9, rng)
    res = csoftmax.token_logprobs(s, lab, axis=1, return_entropy=True)
    check_token_logprobs(res, s, lab, axis=1, return_entropy=True, ctx="NCHW")
    res_n = csoftmax.token_logprobs(s, lab, axis=-3, return_entropy=True)
    np.testing.assert_array_equal(res[0], res_n[0])
    np.testing.assert_array_equal(res[1], res_n[1])


# ---------------------------------------------------------------- extreme values

def _extreme_logits(shape, dtype, rng):
    dt = np.dtype(dtype)
    z = rng.standard_normal(shape) * 3.0
    flat = z.reshape(-1)
    k = flat.size
    flat[rng.integers(0, k, k // 6 + 1)] = rng.choice([1e4, -1e4, 3e3, -3e3, 88.0, -104.0],
                                                      k // 6 + 1)
    return flat.reshape(shape).astype(dt)


@pytest.mark.parametrize("dtype", ("float32", "float64", "float16"))
def test_bce_extreme(dtype):
    rng = np.random.default_rng(_seed("bceext", dtype))
    shape = (7, 41)
    z = _extreme_logits(shape, dtype, rng)
    z[0, :8] = [np.inf, np.inf, -np.inf, -np.inf, np.inf, -np.inf, np.nan, np.nan]
    t = make_bce_target(shape, dtype, rng)
    t[0, :8] = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.0, 1.0]
    t[1, :] = np.where(z[1] > 0, 1.0, 0.0)          # confident and right: loss ~0
    t[2, :] = np.where(z[2] > 0, 0.0, 1.0)          # confident and wrong: loss ~|z|
    p = (rng.random(41) * 3 + 0.1).astype(target_dtype(dtype))
    w = (rng.random(shape) + 0.1).astype(target_dtype(dtype))
    for red, wt, pw in itertools.product(REDUCTIONS, (None, w), (None, p)):
        kw = dict(weight=wt, pos_weight=pw, reduction=red)
        ctx = f"extreme, w={wt is not None}, p={pw is not None}"
        loss, grad = csoftmax.binary_cross_entropy_with_grad(z, t, **kw)
        check_bce(loss, grad, z, t, func="binary_cross_entropy_with_grad", ctx=ctx, **kw)
        # finite rows alone (the sum of row 0 is NaN)
        loss, grad = csoftmax.binary_cross_entropy_with_grad(
            z[1:], t[1:], weight=None if wt is None else wt[1:], pos_weight=pw, reduction=red)
        check_bce(loss, grad, z[1:], t[1:], weight=None if wt is None else wt[1:],
                  pos_weight=pw, reduction=red, func="binary_cross_entropy_with_grad",
                  ctx=ctx + " finite rows")


def test_bce_coefficient_rule_exact():
    """z = +inf, t = 1 and z = -inf, t = 0 give exactly 0 (not NaN), in every dtype;
    t = 1 with z = -inf and t = 0 with z = +inf give +inf."""
    for dt in ("float32", "float64", "float16"):
        z = np.array([np.inf, -np.inf, -np.inf, np.inf, np.nan], dt)
        t = np.array([1.0, 0.0, 1.0, 0.0, 1.0], dt)
        loss, grad = csoftmax.binary_cross_entropy_with_grad(z, t, reduction="none")
        np.testing.assert_array_equal(loss, np.array([0, 0, np.inf, np.inf, np.nan], dt))
        np.testing.assert_array_equal(grad, np.array([0, 0, -1, 1, np.nan], dt))
        assert np.isinf(csoftmax.binary_cross_entropy(z[:4], t[:4], reduction="sum"))
        assert csoftmax.binary_cross_entropy(z[:2], t[:2], reduction="mean") == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ("float32", "float64", "float16"))
def test_kl_extreme(dtype, kind):
    """|s| up to 1e4, -inf student entries (finite row max) where the teacher has
    zero and nonzero mass, NaN rows of the student and of the teacher."""
    rng = np.random.default_rng(_seed("klext", dtype, kind))
    shape = (8, 37)
    s = _extreme_logits(shape, dtype, rng)
    teacher = make_teacher(kind, shape, -1, dtype, rng)
    zero_t = {"logits": -np.inf, "log_probs": -np.inf, "probs": 0.0}[kind]
    s[0, 3] = -np.inf
    teacher[0, 3] = zero_t                      # q = 0 and p = 0: term 0
    s[1, 5] = -np.inf                           # q = 0, p > 0: KL = +inf
    if kind == "logits":
        teacher[1, 5] = 2.0
    s[2, 7] = np.nan                            # student NaN: NaN
    if kind != "probs":
        teacher[3, 0] = np.nan                  # teacher NaN: NaN
    teacher[4, :] = zero_t
    teacher[4, 11] = 0.0 if kind != "probs" else 1.0     # one-hot teacher
    s[5] = s[5].astype(np.float64) * 0 + 1e4    # all equal, very large
    s[5, 2] = -1e4
    for T, red in itertools.product((1.0, 2.0, 0.3), KL_REDUCTIONS):
        kw = dict(temperature=T, teacher_kind=kind, reduction=red)
        ctx = f"extreme, {kind}, T={T}"
        loss, grad = csoftmax.kl_div_with_grad(s, teacher, **kw)
        check_kl(loss, grad, s, teacher, func="kl_div_with_grad", ctx=ctx, **kw)
        # without the special rows, every reduction is finite
        loss, grad = csoftmax.kl_div_with_grad(s[4:], teacher[4:], **kw)
        check_kl(loss, grad, s[4:], teacher[4:], func="kl_div_with_grad", ctx=ctx + " rows 4:",
                 **kw)


@pytest.mark.parametrize("c", (129, 5000, 70000))
@pytest.mark.parametrize("T", (0.3, 1.0, 2.0, 3.7))
@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_kl_large_offset(dtype, T, c):
    """Rows of comparable logits far from 0 (1e4 + N(0, 3), and -1e4 + ...): the
    result depends only on s - max(s), so the rounding of |s| / T must not enter
    (spec: gradient entries within a few ULP / 4 u of their scale).  Rows longer
    than one chunk of the row pass exercise the merge of the chunks' maxima."""
    rng = np.random.default_rng(_seed("kloff", dtype, T, c))
    s = (1e4 + rng.standard_normal((3, c)) * 3).astype(dtype)
    s[1] *= -1
    s[2, ::7] = -np.inf
    teacher = (s.astype(np.float64) + rng.standard_normal((3, c))).astype(dtype)
    for red in ("none", "batchmean"):
        kw = dict(temperature=T, reduction=red)
        loss, grad = csoftmax.kl_div_with_grad(s, teacher, **kw)
        check_kl(loss, grad, s, teacher, func="kl_div_with_grad", ctx=f"offset 1e4, C={c}",
                 **kw)
    lab = np.array([0, 5, 1])
    check_token_logprobs(csoftmax.token_logprobs(s, lab, return_entropy=True), s, lab,
                         return_entropy=True, ctx=f"offset 1e4, C={c}")


def test_kl_nan_rows_give_nan_loss():
    for dt, kind in itertools.product(("float32", "float64"), ("logits", "log_probs")):
        s = np.zeros((3, 5), dt)
        t = np.zeros((3, 5), dt) if kind == "logits" else np.full((3, 5), -np.log(5), dt)
        s[0, 1] = np.nan
        t[1, 4] = np.nan
        l = csoftmax.kl_div(s, t, teacher_kind=kind, reduction="none")
        assert np.isnan(l[0]) and np.isnan(l[1]) and abs(l[2]) < 1e-6, (dt, kind, l)
        l, g = csoftmax.kl_div_with_grad(s, t, teacher_kind=kind, reduction="sum")
        assert np.isnan(l)
        assert np.isnan(g[0]).all() and np.isnan(g[1]).all() and np.all(abs(g[2]) < 1e-6)


@pytest.mark.parametrize("dtype", ("float32", "float64", "float16"))
def test_token_logprobs_extreme(dtype):
    rng = np.random.default_rng(_seed("tlpext", dtype))
    z = _extreme_logits((9, 45), dtype, rng)
    z[0, 4] = np.nan
    z[1, 2] = np.inf                               # label on the +inf: NaN
    z[2, 2] = np.inf                               # label elsewhere: -inf
    z[3] = -np.inf                                 # all -inf: NaN
    z[4, ::2] = -np.inf                            # -inf entries, label on one: -inf
    z[5, 1:] = -np.inf                             # one finite entry: logp 0, entropy 0
    z[6] = 1e4                                     # all equal: log(1/C), entropy log C
    lab = rng.integers(0, 45, 9)
    lab[1], lab[2], lab[4], lab[5] = 2, 3, 0, 0
    res = csoftmax.token_logprobs(z, lab, return_entropy=True)
    check_token_logprobs(res, z, lab, return_entropy=True, ctx="extreme")
    assert np.isnan(res[0][0]) and np.isnan(res[1][0])
    assert np.isnan(res[0][1]) and res[0][2] == -np.inf and np.isnan(res[1][1:4]).all()
    assert np.isnan(res[0][3]) and res[0][4] == -np.inf
    assert res[0][5] == 0 and res[1][5] == 0


def test_token_logprobs_entropy_accuracy_large_shift():
    """Entropy lse - sum p z of rows around 1e4 (float32): the terms that cancel
    are ~1e4, the entropy ~1; the bound is 1e-6 (|H| + 1) (spec: the float32
    cross-entropy bound)."""
    rng = np.random.default_rng(3)
    z = (1e4 + rng.standard_normal((64, 300)) * 2).astype(np.float32)
    z[:32] *= -1
    lab = rng.integers(0, 300, 64)
    res = csoftmax.token_logprobs(z, lab, return_entropy=True)
    check_token_logprobs(res, z, lab, return_entropy=True, ctx="shift 1e4")


# ---------------------------------------------------------------- masks / ignore_index

@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_mask(dtype):
    rng = np.random.default_rng(_seed("klmask", dtype))
    shape = (9, 23)
    s = make_logits(shape, dtype, rng)
    teacher = make_teacher("logits", shape, -1, dtype, rng)
    if np.dtype(dtype).kind == "f":
        s[1, 3] = np.nan                       # masked rows are never read
        teacher[4, 0] = np.nan
    mask = np.ones(9, bool)
    mask[[1, 4, 7]] = False
    for red, kind in itertools.product(KL_REDUCTIONS, ("logits", "probs")):
        t = teacher if kind == "logits" else make_teacher("probs", shape, -1, dtype, rng)
        kw = dict(temperature=2.0, teacher_kind=kind, reduction=red, mask=mask)
        loss, grad = csoftmax.kl_div_with_grad(s, t, **kw)
        check_kl(loss, grad, s, t, func="kl_div_with_grad", ctx=f"mask {kind}", **kw)
        assert np.all(grad[~mask] == 0)
        check_kl(csoftmax.kl_div(s, t, **kw), None, s, t, ctx=f"mask {kind}", **kw)
    # the masked rows do not count: batchmean over the 6 counted rows
    full = csoftmax.kl_div(s[mask], teacher[mask], temperature=2.0, reduction="sum")
    bm = csoftmax.kl_div(s, teacher, temperature=2.0, reduction="batchmean", mask=mask)
    np.testing.assert_allclose(bm, full / 6, rtol=1e-5 if dtype != "float16" else 2e-3)


def test_kl_fully_masked_no_nan_no_warnings():
    s = np.full((4, 6), np.nan, np.float32)
    t = np.full((4, 6), np.nan, np.float32)
    mask = np.zeros(4, bool)
    out = np.full((4, 6), 7.0, np.float32)
    for red in KL_REDUCTIONS:
        with warnings.catch_warnings():
            if red in ("none", "sum"):
                warnings.simplefilter("error")
            loss, grad = csoftmax.kl_div_with_grad(s, t, mask=mask, reduction=red, out=out)
            l2 = csoftmax.kl_div(s, t, mask=mask, reduction=red)
        assert grad is out and np.all(grad == 0), red
        if red in ("none", "sum"):
            assert np.all(np.asarray(loss) == 0), (red, loss)
        else:
            assert np.isnan(loss), (red, loss)          # 0 counted rows: nan
        np.testing.assert_array_equal(l2, loss)


@pytest.mark.parametrize("dtype", DTYPES)
def test_token_logprobs_ignore_index(dtype):
    rng = np.random.default_rng(_seed("tlpig", dtype))
    z = make_logits((11, 17), dtype, rng)
    lab = make_labels((11,), 17, rng)
    lab[[0, 5, 6]] = -100
    if np.dtype(dtype).kind == "f":
        z[5] = np.nan                              # ignored rows are never read
    for ig, labs in ((-100, lab), (3, np.where(lab == -100, 3, lab))):
        res = csoftmax.token_logprobs(z, labs, ignore_index=ig, return_entropy=True)
        check_token_logprobs(res, z, labs, ignore_index=ig, return_entropy=True,
                             ctx=f"ignore_index={ig}")
        ign = labs == ig
        assert np.all(res[0][ign] == 0) and np.all(res[1][ign] == 0)
    for ldt in ("int8", "int32", "uint8", "uint16", "int64"):
        labs = np.abs(np.where(lab == -100, 0, lab)).astype(ldt)
        check_token_logprobs(csoftmax.token_logprobs(z, labs), z, labs, ctx=f"labels {ldt}")


# ---------------------------------------------------------------- out= / inplace=

@pytest.mark.parametrize("layout", ("C", "F", "strided", "negstride"))
@pytest.mark.parametrize("dtype", ("float32", "float64", "float16", "int64"))
def test_bce_out_and_inplace(dtype, layout):
    rng = np.random.default_rng(_seed("bceout", dtype, layout))
    shape = (6, 21)
    rdt = result_dtype(dtype)
    z = make_logits(shape, dtype, rng)
    t = make_bce_target(shape, dtype, rng)
    for red in REDUCTIONS:
        out = with_layout(np.full(shape, np.nan, rdt), layout)
        loss, grad = csoftmax.binary_cross_entropy_with_grad(z, t, reduction=red, out=out,
                                                             grad_scale=0.5)
        assert grad is out
        check_bce(loss, grad, z, t, reduction=red, grad_scale=0.5,
                  func="binary_cross_entropy_with_grad", ctx=f"out {layout}")
        if np.dtype(dtype) in (np.float32, np.float64):
            zin = with_layout(z.copy(), layout)
            loss, grad = csoftmax.binary_cross_entropy_with_grad(zin, t, reduction=red,
                                                                 inplace=True)
            assert grad is zin
            check_bce(loss, grad, z, t, reduction=red,
                      func="binary_cross_entropy_with_grad", ctx=f"inplace {layout}")


@pytest.mark.parametrize("layout", ("C", "F", "strided", "negstride"))
@pytest.mark.parametrize("dtype", ("float32", "float64", "float16", "int64"))
def test_kl_out(dtype, layout):
    rng = np.random.default_rng(_seed("klout", dtype, layout))
    rdt = result_dtype(dtype)
    for shape, axis in (((6, 21), -1), ((2, 5, 3, 4), 1)):
        s = make_logits(shape, dtype, rng)
        teacher = make_teacher("logits", shape, axis, dtype, rng)
        for red in KL_REDUCTIONS:
            out = with_layout(np.full(shape, np.nan, rdt), layout)
            kw = dict(axis=axis, temperature=3.0, reduction=red, grad_scale=-2.0)
            loss, grad = csoftmax.kl_div_with_grad(s, teacher, out=out, **kw)
            assert grad is out
            check_kl(loss, grad, s, teacher, func="kl_div_with_grad", ctx=f"out {layout}",
                     **kw)


def test_bce_inplace_rejects_non_float():
    t = np.full((2, 3), 0.5)
    z = np.zeros((2, 3), np.int64)
    z0 = z.copy()
    with pytest.raises((TypeError, ValueError)):
        csoftmax.binary_cross_entropy_with_grad(z, t, inplace=True)
    np.testing.assert_array_equal(z, z0)
    # float16 logits are accepted in place, as by cross_entropy_with_grad (computed
    # in float32, the gradient rounded into the caller's array)
    z = np.array([[0.0, 1.0, -2.0], [3.0, -4.0, 0.5]], np.float16)
    want = ref.binary_cross_entropy_with_grad(z, t)[1]
    _, g = csoftmax.binary_cross_entropy_with_grad(z, t, inplace=True)
    assert g is z
    np.testing.assert_allclose(z.astype(np.float64), want, rtol=2e-3, atol=1e-4)
    z = np.zeros((2, 3))
    z.flags.writeable = False
    with pytest.raises((TypeError, ValueError)):
        csoftmax.binary_cross_entropy_with_grad(z, t, inplace=True)


# ---------------------------------------------------------------- reductions / grad_scale

@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_reductions_consistent(dtype):
    rng = np.random.default_rng(_seed("red", dtype))
    z = make_logits((16, 30), dtype, rng)
    t = make_bce_target((16, 30), dtype, rng)
    none, gn = csoftmax.binary_cross_entropy_with_grad(z, t, reduction="none")
    total, gs = csoftmax.binary_cross_entropy_with_grad(z, t, reduction="sum")
    mean, gm = csoftmax.binary_cross_entropy_with_grad(z, t, reduction="mean")
    rt = 1e-12 if dtype == "float64" else 2e-6
    np.testing.assert_allclose(total, none.astype(np.float64).sum(), rtol=rt)
    np.testing.assert_allclose(mean, total / z.size, rtol=rt)
    np.testing.assert_array_equal(gn, gs)
    np.testing.assert_allclose(gm, gs / z.size, rtol=rt, atol=0)
    assert csoftmax.binary_cross_entropy(z, t) == mean           # default "mean"
    s = make_logits((16, 30), dtype, rng)
    te = make_teacher("logits", (16, 30), -1, dtype, rng)
    kn = csoftmax.kl_div(s, te, reduction="none")
    ks = csoftmax.kl_div(s, te, reduction="sum")
    np.testing.assert_allclose(ks, kn.astype(np.float64).sum(), rtol=rt)
    np.testing.assert_allclose(csoftmax.kl_div(s, te), ks / 16, rtol=rt)   # batchmean
    np.testing.assert_allclose(csoftmax.kl_div(s, te, reduction="mean"), ks / 480, rtol=rt)
    for red in KL_REDUCTIONS:
        kw = dict(temperature=1.3, reduction=red, grad_scale=0.25)
        loss, grad = csoftmax.kl_div_with_grad(s, te, **kw)
        check_kl(loss, grad, s, te, func="kl_div_with_grad", ctx="grad_scale", **kw)


def test_empty_inputs():
    z = np.zeros((0, 4))
    assert np.isnan(csoftmax.binary_cross_entropy(z, z))
    assert csoftmax.binary_cross_entropy(z, z, reduction="sum") == 0
    l, g = csoftmax.binary_cross_entropy_with_grad(z, z, reduction="none")
    assert l.shape == (0, 4) and g.shape == (0, 4)
    assert np.isnan(csoftmax.kl_div(z, z))                        # 0 rows: nan
    assert csoftmax.kl_div(z, z, reduction="sum") == 0
    lp, e = csoftmax.token_logprobs(z, np.zeros(0, np.int64), return_entropy=True)
    assert lp.shape == (0,) and e.shape == (0,)


# ---------------------------------------------------------------- threads

def test_thread_count_bit_identity():
    cfg = csoftmax.show_config()
    if not cfg["openmp"]:
        pytest.skip("built without OpenMP")
    rng = np.random.default_rng(11)
    shape = (512, 2000)
    z = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = rng.random(shape).astype(np.float32)
    te = (rng.standard_normal(shape) * 3).astype(np.float32)
    lab = rng.integers(0, 2000, 512)
    mask = rng.random(512) < 0.9
    calls = [
        lambda: csoftmax.binary_cross_entropy_with_grad(z, t, reduction="mean"),
        lambda: csoftmax.binary_cross_entropy_with_grad(z, t, reduction="none"),
        lambda: (csoftmax.binary_cross_entropy(z, t, reduction="sum"),),
        lambda: csoftmax.kl_div_with_grad(z, te, temperature=2.0, mask=mask),
        lambda: csoftmax.kl_div_with_grad(z, te, reduction="none"),
        lambda: (csoftmax.kl_div(z.T, te.T, axis=0, reduction="sum"),),
        lambda: csoftmax.token_logprobs(z, lab, return_entropy=True),
    ]
    try:
        res = {}
        for n in (1, 2):
            csoftmax.set_num_threads(n)
            res[n] = [c() for c in calls]
    finally:
        csoftmax.set_num_threads(max(int(cfg["max_threads"]), 1))
    for i, (a, b) in enumerate(zip(res[1], res[2])):
        for x, y in zip(a, b):
            assert np.array_equal(bits(np.asarray(x)), bits(np.asarray(y))), f"call {i}"


# ---------------------------------------------------------------- bad input

def _bce_bad_cases():
    z = np.zeros((4, 5))
    t = np.full((4, 5), 0.5)
    w = np.ones((4, 5))
    yield "target shape", dict(target=np.full((4, 6), 0.5))
    yield "target broadcastable only", dict(target=np.full((1, 5), 0.5))
    yield "target > 1", dict(target=np.where(np.eye(4, 5) > 0, 1.5, t))
    yield "target < 0", dict(target=np.where(np.eye(4, 5) > 0, -1e-3, t))
    yield "target nan", dict(target=np.where(np.eye(4, 5) > 0, np.nan, t))
    yield "weight negative", dict(weight=np.where(np.eye(4, 5) > 0, -1.0, w))
    yield "weight nan", dict(weight=np.where(np.eye(4, 5) > 0, np.nan, w))
    yield "weight inf", dict(weight=np.where(np.eye(4, 5) > 0, np.inf, w))
    yield "weight shape", dict(weight=np.ones(4))
    yield "pos_weight negative", dict(pos_weight=np.array([1, 1, -1, 1, 1.0]))
    yield "pos_weight inf", dict(pos_weight=np.array([1, 1, np.inf, 1, 1.0]))
    yield "pos_weight nan", dict(pos_weight=np.array(np.nan))
    yield "pos_weight shape", dict(pos_weight=np.ones(4))
    yield "pos_weight 2-d", dict(pos_weight=np.ones((4, 5)))
    yield "reduction", dict(reduction="batchmean")
    del z


BCE_BAD = list(_bce_bad_cases())


@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("name,kw", BCE_BAD, ids=[c[0] for c in BCE_BAD])
def test_bce_bad_input(name, kw, dtype):
    z = np.linspace(-2, 2, 20).reshape(4, 5).astype(dtype)
    kw = dict(kw)
    t = kw.pop("target", np.full((4, 5), 0.5)).astype(dtype)
    z0 = z.copy()
    with pytest.raises(ValueError):
        csoftmax.binary_cross_entropy(z, t, **kw)
    out = np.full((4, 5), 7.0, dtype)
    with pytest.raises(ValueError):
        csoftmax.binary_cross_entropy_with_grad(z, t, out=out, **kw)
    assert np.all(out == 7.0), "out= written before the error"
    with pytest.raises(ValueError):
        csoftmax.binary_cross_entropy_with_grad(z, t, inplace=True, **kw)
    np.testing.assert_array_equal(z, z0, err_msg="inplace logits written before the error")
    with pytest.raises(ValueError):           # the reference agrees
        ref.binary_cross_entropy_with_grad(z, t, **kw)


def _kl_bad_cases():
    yield "teacher shape", dict(teacher=np.zeros((4, 6)))
    yield "teacher transposed", dict(teacher=np.zeros((5, 4)))
    for T in (0.0, -1.0, np.inf, -np.inf, np.nan):
        yield f"temperature {T}", dict(temperature=T)
    yield "probs > 1", dict(teacher=np.full((4, 5), 0.2) + np.eye(4, 5), teacher_kind="probs")
    yield "probs < 0", dict(teacher=np.full((4, 5), 0.2) - np.eye(4, 5), teacher_kind="probs")
    yield "teacher_kind", dict(teacher_kind="softmax")
    yield "mask shape", dict(mask=np.ones(5, bool))
    yield "mask with class axis", dict(mask=np.ones((4, 5), bool))
    yield "reduction", dict(reduction="average")


KL_BAD = list(_kl_bad_cases())


@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("name,kw", KL_BAD, ids=[c[0] for c in KL_BAD])
def test_kl_bad_input(name, kw, dtype):
    s = np.linspace(-2, 2, 20).reshape(4, 5).astype(dtype)
    kw = dict(kw)
    t = kw.pop("teacher", np.zeros((4, 5))).astype(dtype)
    with pytest.raises(ValueError):
        csoftmax.kl_div(s, t, **kw)
    out = np.full((4, 5), 7.0, dtype)
    with pytest.raises(ValueError):
        csoftmax.kl_div_with_grad(s, t, out=out, **kw)
    assert np.all(out == 7.0), "out= written before the error"
    with pytest.raises(ValueError):
        ref.kl_div_with_grad(s, t, **kw)


def _tlp_bad_cases():
    yield "labels shape", dict(labels=np.zeros(5, np.int64))
    yield "labels 2-d", dict(labels=np.zeros((4, 1), np.int64))
    yield "labels float", dict(labels=np.zeros(4))
    yield "label = C", dict(labels=np.array([0, 1, 5, 2]))
    yield "label -1", dict(labels=np.array([0, -1, 1, 2]))
    yield "label -1, other ignore_index", dict(labels=np.array([0, -1, 1, 2]),
                                               ignore_index=-100)
    yield "huge label", dict(labels=np.array([0, 1, 2, 2**40]))


TLP_BAD = list(_tlp_bad_cases())


@pytest.mark.parametrize("name,kw", TLP_BAD, ids=[c[0] for c in TLP_BAD])
def test_token_logprobs_bad_input(name, kw):
    z = np.zeros((4, 5))
    kw = dict(kw)
    lab = kw.pop("labels")
    # a label array of the wrong dtype is a TypeError (as cross_entropy's boolean
    # target), everything else a ValueError
    exc = TypeError if np.asarray(lab).dtype.kind not in "iu" else ValueError
    for re in (False, True):
        with pytest.raises(exc):
            csoftmax.token_logprobs(z, lab, return_entropy=re, **kw)
    with pytest.raises(exc):
        ref.token_logprobs(z, lab, **kw)


def test_kl_probs_masked_rows_not_checked():
    """A masked row is never read, so probabilities outside [0, 1] there are no error."""
    s = np.zeros((3, 3))
    p = np.full((3, 3), 1 / 3)
    p[1] = 2.0
    m = np.array([True, False, True])
    got = csoftmax.kl_div(s, p, teacher_kind="probs", mask=m)
    want = ref.kl_div(s, p, teacher_kind="probs", mask=m)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError):
        csoftmax.kl_div(s, p, teacher_kind="probs")


def test_token_logprobs_bad_label_message_names_sample():
    z = np.zeros((50, 5))
    lab = np.zeros(50, np.int64)
    lab[37] = 1234
    with pytest.raises(ValueError, match="37"):
        csoftmax.token_logprobs(z, lab)


# ===========================================================================
# 5. csoftmax against PyTorch (float64 and float32 inputs, float64 PyTorch)
#    and its gradients against central differences of the reference loss
# ===========================================================================

@pytest.mark.parametrize("dtype", ("float64", "float32"))
@pytest.mark.parametrize("pk", BCE_P)
@pytest.mark.parametrize("wk", BCE_W)
def test_bce_vs_torch(wk, pk, dtype):
    rng = np.random.default_rng(_seed("tbce", wk, pk, dtype))
    shape = (6, 13)
    z = (rng.standard_normal(shape) * 5).astype(dtype)
    t = make_bce_target(shape, dtype, rng)
    w = _bce_weights(wk, shape, rng)
    p = _bce_pos(pk, shape, rng)
    w = None if w is None else w.astype(dtype)
    p = None if p is None else p.astype(dtype)
    for red in REDUCTIONS:
        exp = _torch_bce(z, t, w, p, red)
        loss, grad = csoftmax.binary_cross_entropy_with_grad(z, t, weight=w, pos_weight=p,
                                                             reduction=red)
        # PyTorch's own float64 rounding: twice the bounds
        check_bce(loss, grad, z, t, weight=w, pos_weight=p, reduction=red,
                  func="binary_cross_entropy_with_grad", ctx=f"vs torch {wk} {pk}",
                  expected=exp, factor=2.0)


@pytest.mark.parametrize("dtype", ("float64", "float32"))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", (0.5, 1.0, 2.0, 7.3))
def test_kl_vs_torch(T, kind, dtype):
    rng = np.random.default_rng(_seed("tkl", T, kind, dtype))
    for shape, axis in (((6, 11), -1), ((3, 5, 4, 2), 1)):
        s = make_logits(shape, dtype, rng, scale=3.0)
        teacher = make_teacher(kind, shape, axis, dtype, rng)
        for red in KL_REDUCTIONS:
            exp = _torch_kl(s, teacher, axis, T, kind, red)
            loss, grad = csoftmax.kl_div_with_grad(s, teacher, axis=axis, temperature=T,
                                                   teacher_kind=kind, reduction=red)
            check_kl(loss, grad, s, teacher, axis=axis, temperature=T, teacher_kind=kind,
                     reduction=red, func="kl_div_with_grad", ctx=f"vs torch {shape}",
                     expected=exp, factor=2.0)


@pytest.mark.parametrize("dtype", ("float64", "float32"))
def test_token_logprobs_vs_torch(dtype):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(_seed("ttlp", dtype))
    for shape, axis in (((7, 11), -1), ((3, 5, 4, 2), 1), ((9,), 0), ((16, 300), -1)):
        z = make_logits(shape, dtype, rng)
        lab = make_labels(moved_row_shape(shape, axis), shape[axis], rng)
        ls = F.log_softmax(torch.tensor(z.astype(np.float64)), dim=axis)
        lp = ls.gather(axis % len(shape), torch.tensor(lab).unsqueeze(axis)).squeeze(axis)
        ent = -(ls.exp() * ls).sum(dim=axis)
        res = csoftmax.token_logprobs(z, lab, axis=axis, return_entropy=True)
        check_token_logprobs(res, z, lab, axis=axis, return_entropy=True, ctx="vs torch",
                             expected=(lp.numpy(), ent.numpy()), factor=2.0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_grad_central_differences(reduction):
    rng = np.random.default_rng(_seed("cdbce2", reduction))
    z = rng.standard_normal((3, 7)) * 2
    t = make_bce_target((3, 7), "float64", rng)
    kw = dict(weight=rng.random(7) + 0.1, pos_weight=rng.random(7) * 2, reduction=reduction)
    num = central_diff(lambda v: _sumloss(ref.binary_cross_entropy(v, t, **kw)), z)
    _, g = csoftmax.binary_cross_entropy_with_grad(z, t, **kw)
    np.testing.assert_allclose(g, num, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_kl_grad_central_differences(kind, reduction):
    rng = np.random.default_rng(_seed("cdkl2", kind, reduction))
    s = rng.standard_normal((2, 6, 3)) * 2
    teacher = make_teacher(kind, s.shape, 1, np.float64, rng)
    mask = np.array([[True, True, False], [True, False, True]])
    kw = dict(axis=1, temperature=0.8, teacher_kind=kind, reduction=reduction, mask=mask)
    num = central_diff(lambda v: _sumloss(ref.kl_div(v, teacher, **kw)), s)
    _, g = csoftmax.kl_div_with_grad(s, teacher, **kw)
    np.testing.assert_allclose(g, num, rtol=1e-7, atol=1e-9)


def test_grad_bound_helper_can_fail():
    """The gradient check rejects a gradient off by more than its bound."""
    g = np.array([0.5, -0.25], np.float32)
    with pytest.raises(AssertionError):
        assert_grad_close(g * np.float32(1 + 2**-20), g.astype(np.float64), 1.0,
                          func="selftest", dtype=np.float32, record=False)
    assert_grad_close(g, g.astype(np.float64), 1.0, func="selftest", dtype=np.float32,
                      record=False)

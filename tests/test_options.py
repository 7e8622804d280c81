"""Cross-entropy options (issue 3): PyTorch's semantics, z-loss, soft-capping,
sample weights, per-row lse and upstream gradients, all inside the fused pass.

Oracles: torch.nn.functional.cross_entropy in float64 with autograd (where
PyTorch has the option), csoftmax.reference (float64) for everything, and
central differences of the loss for the gradient.
"""
import itertools

import numpy as np
import pytest

import csoftmax as cs
from csoftmax import reference as R
from csoftmax_testsupport import random_targets

TOL_LOSS = {np.float64: 1e-12, np.float32: 1e-5}
TOL_GRAD = {np.float64: 1e-12, np.float32: 1e-6}     # absolute, relative to max |grad|


def _rel(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    assert a.shape == b.shape
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN positions differ"
    f = np.isfinite(b)
    if not f.any():
        return 0.0
    return float(np.max(np.abs(a[f] - b[f]) / np.maximum(np.abs(b[f]), 1e-300)))


def _abs_scaled(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN positions differ"
    f = np.isfinite(b)
    if not f.any():
        return 0.0
    scale = max(float(np.max(np.abs(b[f]))), 1e-300)
    return float(np.max(np.abs(a[f] - b[f]))) / scale


def _problem(rng, dtype, soft, ignore, kdim, n=6, c=7):
    shape = (n, c, 3) if kdim else (n, c)
    z = (rng.standard_normal(shape) * 2.5).astype(dtype)
    t = random_targets(rng, shape, soft, dtype)
    if not soft:
        if ignore == "some":
            t.reshape(-1)[::3] = -100
        elif ignore == "all":
            t[...] = -100
    return z, t


# --------------------------------------------------------------------------- PyTorch



def _torch():
    return pytest.importorskip("torch")


COMBOS = [
    (dt, red, wt, ig, eps, soft, kdim)
    for dt, red, wt, ig, eps, soft, kdim in itertools.product(
        [np.float64, np.float32], ["none", "sum", "mean"], [False, True],
        ["none", "some", "all"], [0.0, 0.1, 0.9], [False, True], [False, True])
    if not (soft and ig != "none")
]


@pytest.mark.parametrize("dt,red,wt,ig,eps,soft,kdim", COMBOS,
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_against_pytorch(dt, red, wt, ig, eps, soft, kdim):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(hash((np.dtype(dt).name, red, wt, ig, eps, soft, kdim)) % 2**32)
    z, t = _problem(rng, dt, soft, ig, kdim)
    w = (rng.random(z.shape[1]) + 0.1).astype(dt) if wt else None
    loss, g = cs.cross_entropy_with_grad(z, t, axis=1, weight=w, reduction=red,
                                         label_smoothing=eps)
    loss_only = cs.cross_entropy(z, t, axis=1, weight=w, reduction=red, label_smoothing=eps)
    tz = torch.tensor(z.astype(np.float64), requires_grad=True)
    tt = torch.tensor(t.astype(np.float64)) if soft else torch.tensor(t)
    tw = None if w is None else torch.tensor(w.astype(np.float64))
    tl = F.cross_entropy(tz, tt, weight=tw, reduction=red, label_smoothing=eps)
    tl.sum().backward()
    assert np.asarray(loss).dtype == np.dtype(dt) and g.dtype == np.dtype(dt)
    assert _rel(loss, tl.detach().numpy()) <= TOL_LOSS[dt]
    assert _rel(loss_only, tl.detach().numpy()) <= TOL_LOSS[dt]
    assert _abs_scaled(g, tz.grad.numpy()) <= TOL_GRAD[dt] * 10


# --------------------------------------------------------------------------- reference

OPTION_SETS = [
    dict(),
    dict(z_loss=1e-2),
    dict(softcap=3.0),
    dict(softcap=30.0, z_loss=1e-4),
    dict(sample_weight="s"),
    dict(weight="w", label_smoothing=0.2, z_loss=0.05, softcap=4.0, sample_weight="s"),
    dict(ignore_index=None),
    dict(ignore_index=2),
]


def _materialise(kw, rng, c, bshape):
    out = dict(kw)
    if out.get("weight") == "w":
        out["weight"] = rng.random(c) + 0.2
    if out.get("sample_weight") == "s":
        out["sample_weight"] = rng.random(bshape) + 0.3
    return out


REF_CASES = [
    (dt, soft, red, opts)
    for dt, soft, red, opts in itertools.product(
        [np.float64, np.float32], [False, True], ["none", "sum", "mean"], range(len(OPTION_SETS)))
    if not (soft and "ignore_index" in OPTION_SETS[opts])   # labels only
]


@pytest.mark.parametrize("dt,soft,red,opts", REF_CASES,
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_against_reference(dt, soft, red, opts):
    kw0 = OPTION_SETS[opts]
    rng = np.random.default_rng(1000 + opts)
    z, t = _problem(rng, dt, soft, "some", True, n=5, c=9)
    if not soft and kw0.get("ignore_index", -100) != -100:
        t = np.where(t == -100, 1, t)     # -100 is a bad label when not ignored
    kw = _materialise(kw0, rng, 9, (5, 3))
    gsa = rng.standard_normal((5, 3)) if red == "none" else 0.7
    loss, g, lse = cs.cross_entropy_with_grad(z, t, axis=1, reduction=red, return_lse=True,
                                              grad_scale=gsa, **kw)
    rl, rg, rlse = R.cross_entropy_with_grad(z, t, axis=1, reduction=red, return_lse=True,
                                             grad_scale=gsa, **kw)
    tol = TOL_LOSS[dt] / 10 if dt == np.float64 else 2e-6
    assert _rel(loss, rl) <= tol
    assert _rel(lse, rlse) <= tol
    assert _abs_scaled(g, rg) <= (1e-13 if dt == np.float64 else 1e-6)


@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
@pytest.mark.parametrize("kw", [
    dict(z_loss=1e-2), dict(softcap=2.0), dict(softcap=2.0, z_loss=0.1, label_smoothing=0.2),
    dict(sample_weight=np.array([1.0, 2.0, 0.5, 3.0])),
    dict(weight=np.linspace(0.2, 2, 9), label_smoothing=0.3, z_loss=0.05, softcap=5.0,
         sample_weight=np.array([1.0, 2.0, 0.5, 3.0])),
], ids=["zloss", "softcap", "cap+zloss+smooth", "sample_weight", "everything"])
def test_finite_differences(soft, kw):
    rng = np.random.default_rng(7)
    z = rng.standard_normal((4, 9)) * 3
    t = rng.random((4, 9))
    t /= t.sum(1, keepdims=True)
    lab = rng.integers(0, 9, 4)
    lab[1] = -100
    tgt = t if soft else lab
    gsa = np.array([0.3, -1.0, 2.0, 0.7])
    _, g = cs.cross_entropy_with_grad(z, tgt, reduction="none", grad_scale=gsa, **kw)
    f = lambda zz: float(np.sum(gsa * cs.cross_entropy(zz, tgt, reduction="none", **kw)))
    h = 1e-6
    num = np.zeros_like(z)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            zp, zm = z.copy(), z.copy()
            zp[i, j] += h
            zm[i, j] -= h
            num[i, j] = (f(zp) - f(zm)) / (2 * h)
    assert np.max(np.abs(num - g)) < 1e-7
    if not soft:
        assert np.all(g[1] == 0.0)


def test_all_ignored_is_nan_mean_zero_grad():
    z = np.random.default_rng(0).standard_normal((4, 5))
    lab = np.full(4, -100)
    loss, g = cs.cross_entropy_with_grad(z, lab)
    assert np.isnan(loss)
    assert np.all(g == 0.0)


def test_ignored_rows_are_never_read():
    z = np.random.default_rng(0).standard_normal((4, 40))
    z[2] = np.nan
    lab = np.array([1, 2, -100, 3])
    loss, g = cs.cross_entropy_with_grad(z, lab, reduction="none", z_loss=0.1)
    assert loss[2] == 0.0 and np.all(g[2] == 0.0)
    assert np.all(np.isfinite(loss[[0, 1, 3]]))


def test_softcap_does_not_modify_input_and_inplace_works():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, 50)).astype(np.float32) * 40
    z0 = z.copy()
    lab = rng.integers(0, 50, 6)
    l1, g1 = cs.cross_entropy_with_grad(z, lab, softcap=30.0)
    assert np.array_equal(z, z0)
    l2, g2 = cs.cross_entropy_with_grad(z, lab, softcap=30.0, inplace=True)
    assert g2 is z
    assert l1 == l2 and np.array_equal(g1, g2)


def test_options_with_long_rows_and_strides():
    """Chunked rows (C > 4096) and non-contiguous views go through the same options."""
    rng = np.random.default_rng(2)
    z = (rng.standard_normal((3, 2 * 9000)) * 4)[:, ::2]
    lab = rng.integers(0, 9000, 3)
    w = rng.random(9000) + 0.5
    kw = dict(weight=w, label_smoothing=0.1, z_loss=1e-3, softcap=10.0)
    loss, g = cs.cross_entropy_with_grad(z, lab, **kw)
    rl, rg = R.cross_entropy_with_grad(z, lab, **kw)
    assert _rel(loss, rl) <= 1e-13
    assert _abs_scaled(g, rg) <= 1e-13


@pytest.mark.parametrize("kw,match", [
    (dict(weight=np.ones(4)), "weight"),
    (dict(weight=-np.ones(5)), "non-negative"),
    (dict(weight=np.array([1, 1, np.nan, 1, 1.0])), "NaN"),
    (dict(label_smoothing=1.5), "label_smoothing"),
    (dict(label_smoothing=-0.1), "label_smoothing"),
    (dict(label_smoothing=float("nan")), "label_smoothing"),
    (dict(z_loss=-1.0), "z_loss"),
    (dict(softcap=0.0), "softcap"),
    (dict(softcap=-2.0), "softcap"),
    (dict(sample_weight=np.ones(3)), "sample_weight"),
    (dict(sample_weight=-np.ones(4)), "non-negative"),
    (dict(grad_scale=np.ones(4)), "grad_scale"),
])
def test_bad_options(kw, match):
    z = np.zeros((4, 5))
    z0 = z.copy()
    out = np.full_like(z, 7.0)
    with pytest.raises(ValueError, match=match):
        cs.cross_entropy_with_grad(z, np.array([0, 1, 2, 3]), out=out, **kw)
    assert np.array_equal(out, np.full_like(z, 7.0)) and np.array_equal(z, z0)


def test_label_out_of_range_when_ignore_disabled():
    with pytest.raises(ValueError, match="label -100"):
        cs.cross_entropy(np.zeros((2, 3)), np.array([0, -100]), ignore_index=None)


@pytest.mark.parametrize("dt", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("c", [1, 2, 5, 8, 13, 32, 33])
@pytest.mark.parametrize("red", ["none", "mean"])
def test_short_rows_with_row_options(dt, c, red):
    """Short rows (c <= 32) are processed several rows at a time; the per-row
    options, ignored rows and special rows must come out as in the row path."""
    rng = np.random.default_rng(c)
    n = 37                                   # not a multiple of any vector width
    z = (rng.standard_normal((n, c)) * 3).astype(dt)
    lab = rng.integers(0, c, n)
    lab[::5] = -100
    z[3, 0] = np.nan                         # NaN row inside a tile
    z[6, :] = -np.inf                        # all -inf
    z[7, c // 2] = np.inf                    # +inf row
    z[4] = np.nan                            # a counted all-NaN row: NaN loss
    z[5] = np.nan                            # row 5 is ignored: never read, loss 0, grad 0
    sw = rng.random(n) + 0.5
    gsa = rng.standard_normal(n) if red == "none" else 1.0
    loss, g, lse = cs.cross_entropy_with_grad(z, lab, reduction=red, sample_weight=sw,
                                              grad_scale=gsa, return_lse=True)
    rl, rg, rlse = R.cross_entropy_with_grad(z, lab, reduction=red, sample_weight=sw,
                                             grad_scale=gsa, return_lse=True)
    assert loss is not None
    assert np.all(g[5] == 0.0)
    ok = np.isfinite(rg).all(axis=1)
    tol = 1e-13 if dt == np.float64 else 2e-6
    if red == "none":
        assert _rel(loss, rl) <= tol
    else:
        assert np.isnan(loss) == np.isnan(rl)
    assert _abs_scaled(g[ok], rg[ok]) <= (1e-13 if dt == np.float64 else 1e-6)
    assert np.array_equal(np.isnan(g), np.isnan(rg))
    assert _rel(lse, rlse) <= tol
    # loss-only call agrees with the fused call
    l2 = cs.cross_entropy(z, lab, reduction="none", sample_weight=sw)
    rl2 = R.cross_entropy(z, lab, reduction="none", sample_weight=sw)
    assert _rel(l2, rl2) <= tol


def test_subnormal_mean_denominator_with_a_large_weight():
    """Found by the fuzzer: class weights 1e-310 (the labels') next to 0.06 (no label)
    give a mean denominator of 2e-310; lifting it by 2**1029 (to [0.5, 1)) overflowed
    the 0.06 weight and the gradient became inf/NaN.  The smallest lift is used now."""
    z = np.array([[0, 1, 0, 1, 0], [1, 0, 0, 0, 13], [8, 0, 27, 0, 9], [6, 0, 0, 0, 0],
                  [0, 0, 8, 0, 0]], dtype=np.float64)
    t = np.array([0, 2, 2, 0, 0])
    w = np.array([0.0, 0.0, 1e-310, 0.06, 1e-310])
    # with z-loss the class weights may not be rescaled (alpha lse**2 is not weighted):
    # here its mean is truly beyond float64's range
    assert cs.cross_entropy(z, t, weight=w, z_loss=1e-4) == R.cross_entropy(
        z, t, weight=w, z_loss=1e-4) == np.inf
    assert np.isclose(cs.cross_entropy(z, t, weight=w, z_loss=1e-9),
                      R.cross_entropy(z, t, weight=w, z_loss=1e-9), rtol=1e-12)
    for kw in ({}, {"softcap": 30.0}):
        loss, g = cs.cross_entropy_with_grad(z, t, weight=w, **kw)
        rl, rg = R.cross_entropy_with_grad(z, t, weight=w, **kw)
        assert np.isfinite(loss) and np.all(np.isfinite(g)), kw
        np.testing.assert_allclose(loss, rl, rtol=1e-12)
        np.testing.assert_allclose(g, rg, rtol=1e-10, atol=1e-13)

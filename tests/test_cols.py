"""The column family (src_c/kernels_cols.h): a strided class axis whose other
axis is contiguous -- PyTorch's (N, C, d1, ...) with axis=1, reductions over
axis 0 of C-ordered arrays, F-ordered (N, C) with axis=-1.

Everything is compared with the float64 reference (csoftmax.reference); the
options also with PyTorch's K-dimensional F.cross_entropy.  Class lengths
1..67 and position (lane) lengths 1..67 cross every vector width and block
size (4 vectors of 8 float32 / 4 float64 lanes on AVX2, 2 of 16 / 8 on
AVX-512, 4 of 4 / 2 on the baseline); several chunks (C > 4096); special
values in some lanes of a block; in-place; threads.

Determinism (README): a row's result on the column path depends only on its
own values and C -- not on its position, the block it falls in, or the
thread count -- which is tested bit for bit here; it agrees with the row
path (the same row laid out with contiguous classes) to rounding only.
"""
import itertools

import numpy as np
import pytest

import csoftmax
from csoftmax_testsupport import (
    assert_close, grad_scale, load_reference, log_softmax_scale, loss_scale, lse_scale,
    random_targets)

ref = load_reference()
FLOATS = ("float32", "float64")
POSITIONS = (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 67)
CLASSES = tuple(range(1, 68))


def _values(shape, dtype, seed, far=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3.0
    if far and x.size > 4:
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, 3)] -= 60.0
        flat[-1] = flat[0]                         # ties
    return x.astype(dtype)


def _check_ops(x, axis, dtype, ctx, labels=None, soft=None):
    """Every public function on x with class axis `axis`, against the reference."""
    rdt = np.dtype(dtype)
    assert_close(csoftmax.logsumexp(x, axis=axis), ref.logsumexp(x, axis=axis),
                 func="logsumexp (cols)", dtype=rdt, kind="reduce",
                 scale=lse_scale(x, axis), ctx=ctx)
    assert_close(csoftmax.softmax(x, axis=axis), ref.softmax(x, axis=axis),
                 func="softmax (cols)", dtype=rdt, kind="elem", ctx=ctx)
    assert_close(csoftmax.log_softmax(x, axis=axis), ref.log_softmax(x, axis=axis),
                 func="log_softmax (cols)", dtype=rdt, kind="elem",
                 scale=log_softmax_scale(x, axis), ctx=ctx)
    ax = axis % x.ndim
    c = x.shape[ax]
    bshape = tuple(n for i, n in enumerate(x.shape) if i != ax)
    rng = np.random.default_rng(c * 1000 + x.size)
    if labels is None:
        labels = rng.integers(0, c, bshape)
    if soft is None:
        soft = rng.random(x.shape)
        soft /= soft.sum(axis=ax, keepdims=True)
        soft = soft.astype(dtype)
    p = ref.softmax(x, axis=ax)
    for tgt, kind in ((labels, "labels"), (soft, "soft")):
        loss, grad = csoftmax.cross_entropy_with_grad(x, tgt, axis=axis, reduction="none")
        eloss, egrad = ref.cross_entropy_with_grad(x, tgt, axis=axis, reduction="none")
        assert_close(loss, eloss, func=f"xent {kind} loss (cols)", dtype=rdt, kind="reduce",
                     scale=loss_scale(1), ctx=ctx)
        if kind == "labels":
            tt = np.zeros_like(p)
            np.put_along_axis(tt, np.expand_dims(tgt, ax), 1.0, axis=ax)
        else:
            tt = tgt.astype(np.float64)
        assert_close(grad, egrad, func=f"xent {kind} grad (cols)", dtype=rdt, kind="elem",
                     scale=grad_scale(p, np.sum(tt, axis=ax, keepdims=True), tt), ctx=ctx)
        assert_close(csoftmax.cross_entropy(x, tgt, axis=axis, reduction="none"), eloss,
                     func=f"xent {kind} loss (cols)", dtype=rdt, kind="reduce",
                     scale=loss_scale(1), ctx=ctx + " loss only")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("npos", POSITIONS)
def test_position_lengths(npos, dtype):
    """(N, C, d) with axis=1: every lane count of a block and of its last block."""
    for c in (1, 2, 5, 40):
        x = _values((2, c, npos), dtype, seed=npos * 100 + c)
        _check_ops(x, 1, dtype, f"(2, {c}, {npos}) axis=1")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("c", CLASSES)
def test_class_lengths(c, dtype):
    """Class lengths 1..67 with full and partial blocks; axis=0 of a C-ordered
    (C, P) array and an F-ordered (P, C) array with axis=-1 as well."""
    x = _values((3, c, 37), dtype, seed=c)
    _check_ops(x, 1, dtype, f"(3, {c}, 37) axis=1")
    y = _values((c, 70), dtype, seed=c + 500)
    _check_ops(y, 0, dtype, f"({c}, 70) axis=0")
    f = np.asfortranarray(_values((45, c), dtype, seed=c + 900))
    _check_ops(f, -1, dtype, f"F-ordered (45, {c}) axis=-1")


@pytest.mark.parametrize("dtype", FLOATS)
def test_segmentation_shape_and_two_spatial_axes(dtype):
    x = _values((2, 21, 9, 13), dtype, seed=3)
    _check_ops(x, 1, dtype, "(2, 21, 9, 13) axis=1")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("c", (4097, 9000))
def test_several_chunks(c, dtype):
    """C > 4096: several chunks per block, combined lane by lane (and no
    scratch block for the exps: the passes read and write y directly)."""
    x = _values((1, c, 35), dtype, seed=c)
    _check_ops(x, 1, dtype, f"(1, {c}, 35) axis=1")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("layout", ["negstride", "stride2", "readonly", "broadcast_classes",
                                    "broadcast_positions", "sliced"])
def test_layout_variants(layout, dtype):
    """Inner strides that are not 1 (the row path takes them), read-only and
    broadcast input, a sliced view with unaligned start."""
    base = _values((3, 11, 40), dtype, seed=11)
    if layout == "negstride":
        x = base[:, :, ::-1]
    elif layout == "stride2":
        x = _values((3, 11, 80), dtype, seed=12)[:, :, ::2]
    elif layout == "readonly":
        x = base.copy()
        x.flags.writeable = False
    elif layout == "broadcast_classes":
        x = np.broadcast_to(base[:, :1, :], base.shape)      # class stride 0
    elif layout == "broadcast_positions":
        x = np.broadcast_to(base[:, :, :1], base.shape)      # position stride 0
    else:
        x = _values((3, 12, 41), dtype, seed=13)[:, 1:, 1:]
    _check_ops(x, 1, dtype, f"layout {layout}")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("c", (7, 5000))
def test_inplace_and_out(c, dtype):
    """out= aliasing the input (softmax, log_softmax, the gradient), a strided
    out=, inplace=True; several chunks (C = 5000) take the pre-scan."""
    x0 = _values((2, c, 33), dtype, seed=c)
    x0[1, :, 5] = -np.inf                         # a special lane in the block, in place
    x0[0, 3, 7] = np.nan
    rdt = np.dtype(dtype)
    for name in ("softmax", "log_softmax"):
        x = x0.copy()
        r = getattr(csoftmax, name)(x, axis=1, out=x)
        assert r is x
        exp = getattr(ref, name)(x0, axis=1)
        kw = {} if name == "softmax" else dict(scale=log_softmax_scale(x0, 1))
        assert_close(x, exp, func=f"{name} in place (cols)", dtype=rdt, kind="elem",
                     ctx=f"c={c}", **kw)
        out = np.full((2, c, 66), np.nan, dtype)[:, :, ::2]
        getattr(csoftmax, name)(x0, axis=1, out=out)
        assert_close(out, exp, func=f"{name} strided out (cols)", dtype=rdt, kind="elem",
                     ctx=f"c={c}", **kw)
    labels = np.random.default_rng(c).integers(0, c, (2, 33))
    eloss, egrad = ref.cross_entropy_with_grad(x0, labels, axis=1, reduction="none")
    x = x0.copy()
    loss, g = csoftmax.cross_entropy_with_grad(x, labels, axis=1, reduction="none",
                                               inplace=True)
    assert g is x
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(eloss))
    np.testing.assert_array_equal(np.isnan(g), np.isnan(egrad))
    ok = np.isfinite(egrad)
    np.testing.assert_allclose(g[ok], egrad[ok], rtol=2e-6, atol=1e-7 if dtype == "float32" else 1e-15)


@pytest.mark.parametrize("dtype", FLOATS)
def test_special_values_in_some_lanes(dtype):
    """NaN, +inf, all -inf, and a lane with -inf at the target, among ordinary
    lanes of the same block: the block goes through the row functions and
    every lane gets SciPy's / the reference's result."""
    x = _values((2, 6, 40), dtype, seed=5)
    x[0, 2, 3] = np.nan
    x[0, 4, 10] = np.inf
    x[1, :, 20] = -np.inf
    x[1, 1, 30] = -np.inf
    labels = np.random.default_rng(1).integers(0, 6, (2, 40))
    labels[1, 30] = 1
    rdt = np.dtype(dtype)
    for name in ("logsumexp", "softmax", "log_softmax"):
        got = getattr(csoftmax, name)(x, axis=1)
        exp = getattr(ref, name)(x, axis=1)
        assert_close(got, exp, func=f"{name} specials (cols)", dtype=rdt,
                     kind="reduce" if name == "logsumexp" else "elem",
                     scale=lse_scale(x, 1) if name == "logsumexp" else
                     (log_softmax_scale(x, 1) if name == "log_softmax" else 0.0))
    loss, g = csoftmax.cross_entropy_with_grad(x, labels, axis=1, reduction="none")
    eloss, egrad = ref.cross_entropy_with_grad(x, labels, axis=1, reduction="none")
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(eloss))
    np.testing.assert_array_equal(np.isinf(loss), np.isinf(eloss))
    np.testing.assert_array_equal(np.isnan(g), np.isnan(egrad))


@pytest.mark.parametrize("dtype", FLOATS)
def test_ignored_positions_are_not_used(dtype):
    """Ignored labels: NaN logits there change nothing (loss 0, gradient 0)."""
    x = _values((2, 9, 40), dtype, seed=8)
    labels = np.random.default_rng(2).integers(0, 9, (2, 40))
    labels[0, 5] = labels[1, 33] = -100
    x[0, :, 5] = np.nan
    x[1, :, 33] = np.inf
    loss, g = csoftmax.cross_entropy_with_grad(x, labels, axis=1, reduction="none")
    assert loss[0, 5] == 0 and loss[1, 33] == 0
    assert np.all(g[0, :, 5] == 0) and np.all(g[1, :, 33] == 0)
    keep = labels != -100
    xc = np.where(np.isfinite(x), x, 0.0).astype(dtype)
    eloss, egrad = ref.cross_entropy_with_grad(xc, np.where(keep, labels, 0), axis=1,
                                               reduction="none")
    assert_close(loss[keep], eloss[keep], func="xent ignore (cols)", dtype=np.dtype(dtype),
                 kind="reduce", scale=1.0)
    mean, gm = csoftmax.cross_entropy_with_grad(x, labels, axis=1)
    assert np.isfinite(mean) and np.all(np.isfinite(gm))


def _rows_layout_results(x, axis, labels):
    """All results for x (class axis `axis`), as float64 arrays."""
    out = [csoftmax.logsumexp(x, axis=axis), csoftmax.softmax(x, axis=axis),
           csoftmax.log_softmax(x, axis=axis)]
    out += list(csoftmax.cross_entropy_with_grad(x, labels, axis=axis, reduction="none",
                                                 label_smoothing=0.1, z_loss=1e-3,
                                                 return_lse=True))
    return [np.asarray(o) for o in out]


@pytest.mark.parametrize("dtype", FLOATS)
def test_result_does_not_depend_on_position(dtype):
    """Bit for bit: the same rows at other positions (another lane, another
    block, the partial last block) give the same results."""
    c, npos, shift = 13, 70, 37
    x = _values((1, c, npos), dtype, seed=21)
    labels = np.random.default_rng(3).integers(0, c, (1, npos))
    a = _rows_layout_results(x, 1, labels)
    xr = np.roll(x, shift, axis=2)
    b = _rows_layout_results(xr, 1, np.roll(labels, shift, axis=1))
    for u, v in zip(a, b):
        pos_axis = u.ndim - 1
        np.testing.assert_array_equal(np.roll(u, shift, axis=pos_axis).view(np.uint8),
                                      v.view(np.uint8))


@pytest.mark.parametrize("dtype", FLOATS)
def test_agrees_with_the_row_path_to_rounding(dtype):
    """The same rows with contiguous classes (the row path): equal to rounding,
    not necessarily bit for bit (another summation order)."""
    c, npos = 50, 40
    x = _values((2, c, npos), dtype, seed=31)
    labels = np.random.default_rng(4).integers(0, c, (2, npos))
    cols = _rows_layout_results(x, 1, labels)
    xt = np.ascontiguousarray(np.moveaxis(x, 1, 2))          # (2, npos, c), classes last
    rows = _rows_layout_results(xt, 2, labels)
    rtol = 2e-6 if dtype == "float32" else 1e-13
    for u, v in zip(cols, rows):
        if u.ndim == 3:
            v = np.moveaxis(v, 2, 1)
        np.testing.assert_array_equal(np.isfinite(u), np.isfinite(v))
        # elementwise to rounding of the largest magnitude (the gradient's
        # target entries are differences: compared absolutely)
        np.testing.assert_allclose(u, v, rtol=2 * rtol,
                                   atol=4 * rtol * float(np.max(np.abs(v))))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("c", (20, 5000))
def test_threads_bit_identical(c, dtype):
    """One and two threads over the blocks give the same bits (also with
    soft-capping, whose scratch block is per thread)."""
    npos = 20000 if c == 20 else 300
    x = _values((1, c, npos), dtype, seed=c)
    labels = np.random.default_rng(5).integers(0, c, (1, npos))
    old = csoftmax.show_config()["max_threads"]
    res = []
    try:
        for n in (1, 2):
            csoftmax.set_num_threads(n)
            r = _rows_layout_results(x, 1, labels)
            r += list(csoftmax.cross_entropy_with_grad(x, labels, axis=1, softcap=5.0,
                                                       reduction="none"))
            res.append([np.asarray(v) for v in r])
    finally:
        csoftmax.set_num_threads(old)
    for u, v in zip(*res):
        np.testing.assert_array_equal(u.view(np.uint8), v.view(np.uint8))


# ----------------------------------------------------------------- every option

OPTION_SETS = [
    dict(),
    dict(weight="w"),
    dict(label_smoothing=0.2),
    dict(weight="w", label_smoothing=0.1),
    dict(z_loss=1e-2),
    dict(softcap=3.0),
    dict(sample_weight="s"),
    dict(weight="w", label_smoothing=0.2, z_loss=0.05, softcap=4.0, sample_weight="s"),
    dict(ignore_index=2),
    dict(return_lse=True, grad_scale="g"),
]


OPTION_CASES = [(shape, opts, soft, dtype)
                for shape, opts, soft, dtype in itertools.product(
                    [(3, 7, 40), (2, 5000, 9)], range(len(OPTION_SETS)), [False, True], FLOATS)
                if not (soft and "ignore_index" in OPTION_SETS[opts])]     # labels only


@pytest.mark.parametrize("shape,opts,soft,dtype", OPTION_CASES)
def test_options_against_reference(shape, opts, soft, dtype):
    kw = dict(OPTION_SETS[opts])
    rng = np.random.default_rng(opts * 7 + soft)
    c = shape[1]
    x = (rng.standard_normal(shape) * 2.5).astype(dtype)
    bshape = (shape[0],) + shape[2:]
    t = random_targets(rng, shape, soft, dtype)
    if not soft:
        t.reshape(-1)[::5] = kw.get("ignore_index", -100)
    if kw.get("weight") == "w":
        kw["weight"] = (rng.random(c) + 0.2).astype(dtype)
    if kw.get("sample_weight") == "s":
        kw["sample_weight"] = rng.random(bshape) + 0.3
    if kw.get("grad_scale") == "g":
        kw["grad_scale"] = rng.random(bshape) + 0.5
    want_lse = kw.pop("return_lse", False)
    gsc = kw.pop("grad_scale", 1.0)
    res = csoftmax.cross_entropy_with_grad(x, t, axis=1, reduction="none", grad_scale=gsc,
                                           return_lse=want_lse, **kw)
    eres = ref.cross_entropy_with_grad(x, t, axis=1, reduction="none", grad_scale=gsc,
                                       return_lse=want_lse, **kw)
    tol = {"float32": (2e-5, 1e-6), "float64": (1e-12, 1e-13)}[dtype]
    gmax = float(np.max(np.abs(eres[1]))) or 1.0
    np.testing.assert_allclose(res[0], eres[0], rtol=tol[0], atol=tol[0])
    np.testing.assert_allclose(res[1], eres[1], rtol=0, atol=tol[1] * 10 * gmax)
    if want_lse:
        np.testing.assert_allclose(res[2], eres[2], rtol=tol[0])
    # the loss alone, and the mean reduction, agree with the loss + gradient call
    np.testing.assert_allclose(csoftmax.cross_entropy(x, t, axis=1, reduction="none", **kw),
                               res[0], rtol=0, atol=0)


COMBOS = [
    (dt, red, wt, ig, eps, soft)
    for dt, red, wt, ig, eps, soft in itertools.product(
        ["float64", "float32"], ["none", "sum", "mean"], [False, True],
        ["none", "some", "all"], [0.0, 0.1, 0.9], [False, True])
    if not (soft and ig != "none")
]


@pytest.mark.parametrize("dt,red,wt,ig,eps,soft", COMBOS)
def test_kdim_against_pytorch(dt, red, wt, ig, eps, soft):
    """PyTorch's K-dimensional loss, (N, C, d1, d2) with axis=1, every option
    combination of tests/test_options.py; d1 * d2 = 45 positions (a full and a
    partial block on every path)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(hash((dt, red, wt, ig, eps, soft)) % 2**32)
    n, c = 2, 7
    z = (rng.standard_normal((n, c, 5, 9)) * 2.5).astype(dt)
    if soft:
        t = rng.random(z.shape)
        t /= t.sum(axis=1, keepdims=True)
        t = t.astype(dt)
    else:
        t = rng.integers(0, c, (n, 5, 9))
        if ig == "some":
            t.reshape(-1)[::3] = -100
        elif ig == "all":
            t[...] = -100
    w = (rng.random(c) + 0.1).astype(dt) if wt else None
    loss, g = csoftmax.cross_entropy_with_grad(z, t, axis=1, weight=w, reduction=red,
                                               label_smoothing=eps)
    tz = torch.tensor(z.astype(np.float64), requires_grad=True)
    tt = torch.tensor(t.astype(np.float64)) if soft else torch.tensor(t)
    tw = None if w is None else torch.tensor(w.astype(np.float64))
    tl = F.cross_entropy(tz, tt, weight=tw, reduction=red, label_smoothing=eps)
    tl.sum().backward()
    tl = tl.detach().numpy()
    tol = 1e-12 if dt == "float64" else 1e-5
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(tl))
    ok = np.isfinite(tl)
    np.testing.assert_allclose(np.asarray(loss)[ok], tl[ok], rtol=tol, atol=tol)
    gref = tz.grad.numpy()
    scale = max(float(np.max(np.abs(gref))), 1e-300)
    assert float(np.max(np.abs(g - gref))) / scale <= tol * 10

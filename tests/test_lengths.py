"""Row lengths (SIMD widths and tails), degenerate shapes: N = 0, C = 1,
0-d input, empty arrays, one row of 10**6 elements, input dtype promotion."""

import numpy as np
import pytest
import scipy.special as sps

import csoftmax
from csoftmax_testsupport import (
    SCIPY_FACTOR, assert_close, grad_scale, load_reference, log_softmax_scale,
    loss_scale, lse_scale)

ref = load_reference()

LENGTHS = list(range(1, 68)) + [127, 128, 129, 1000]
FLOATS = ("float32", "float64")


def _rows(n, dtype, seed):
    """Three rows of length n: moderate, wide-range and tied values."""
    rng = np.random.default_rng(seed)
    x = np.empty((3, n))
    x[0] = rng.standard_normal(n) * 3.0
    x[1] = rng.uniform(-80.0, 80.0, n)
    x[2] = np.round(rng.standard_normal(n))          # many exact ties
    return x.astype(dtype)


def _check_all(x, dtype, ctx):
    """lse / softmax / log_softmax over the rows (axis=-1) and over the
    columns of the transpose (axis=0, strided reduction), and cross-entropy
    with labels on the rows."""
    rdt = np.dtype(dtype)
    for xx, axis in ((x, -1), (x.T, 0), (np.asfortranarray(x), 1)):
        c = f"{ctx}, axis={axis}, strides={xx.strides}"
        assert_close(csoftmax.logsumexp(xx, axis=axis),
                     ref.logsumexp(xx, axis=axis), func="logsumexp",
                     dtype=rdt, kind="reduce", scale=lse_scale(xx, axis),
                     ctx=c)
        assert_close(csoftmax.softmax(xx, axis=axis),
                     ref.softmax(xx, axis=axis), func="softmax", dtype=rdt,
                     kind="elem", ctx=c)
        assert_close(csoftmax.log_softmax(xx, axis=axis),
                     ref.log_softmax(xx, axis=axis), func="log_softmax",
                     dtype=rdt, kind="elem",
                     scale=log_softmax_scale(xx, axis), ctx=c)
    # whole array, axis=None
    assert_close(csoftmax.logsumexp(x), ref.logsumexp(x), func="logsumexp",
                 dtype=rdt, kind="reduce", scale=lse_scale(x), ctx=ctx)
    assert_close(csoftmax.logsumexp(x[1]), sps.logsumexp(x[1]),
                 func="logsumexp", dtype=rdt, kind="reduce",
                 scale=lse_scale(x[1]), factor=SCIPY_FACTOR,
                 ctx=ctx + " vs scipy")
    # cross-entropy on the rows
    n_classes = x.shape[1]
    labels = np.array([0, n_classes - 1, n_classes // 2])
    loss, grad = csoftmax.cross_entropy_with_grad(x, labels, reduction="none")
    eloss, egrad = ref.cross_entropy_with_grad(x, labels, reduction="none")
    assert_close(loss, eloss, func="cross_entropy_with_grad[none] loss",
                 dtype=rdt, kind="reduce", scale=loss_scale(1), ctx=ctx)
    p = ref.softmax(x, axis=-1)
    onehot = np.zeros_like(p)
    onehot[np.arange(3), labels] = 1.0
    assert_close(grad, egrad, func="cross_entropy_with_grad[none] grad",
                 dtype=rdt, kind="elem", scale=grad_scale(p, 1.0, onehot),
                 ctx=ctx)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", LENGTHS)
def test_row_lengths(n, dtype):
    x = _rows(n, dtype, seed=1000 + n)
    _check_all(x, dtype, f"n={n}")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [1, 7, 16, 17, 31, 33, 64, 65, 129])
def test_row_lengths_offset_start(n, dtype):
    """Rows that start at an odd element offset (unaligned data)."""
    base = _rows(n + 1, dtype, seed=2000 + n)
    x = base[:, 1:]
    assert not x.flags.c_contiguous or n == 0
    _check_all(x, dtype, f"n={n}, unaligned")


@pytest.mark.parametrize("dtype", FLOATS)
def test_single_row_of_a_million(dtype):
    rng = np.random.default_rng(7)
    n = 10**6
    x = (rng.standard_normal(n) * 2.0).astype(dtype)
    rdt = np.dtype(dtype)
    c = "n=10**6"
    assert_close(csoftmax.logsumexp(x), ref.logsumexp(x), func="logsumexp",
                 dtype=rdt, kind="reduce", scale=lse_scale(x), ctx=c)
    assert_close(csoftmax.softmax(x), ref.softmax(x), func="softmax",
                 dtype=rdt, kind="elem", ctx=c)
    assert_close(csoftmax.log_softmax(x), ref.log_softmax(x),
                 func="log_softmax", dtype=rdt, kind="elem",
                 scale=log_softmax_scale(x), ctx=c)
    logits = x.reshape(1, n)
    labels = np.array([12345])
    for reduction in ("none", "mean"):
        loss, grad = csoftmax.cross_entropy_with_grad(
            logits, labels, reduction=reduction)
        eloss, egrad = ref.cross_entropy_with_grad(
            logits, labels, reduction=reduction)
        assert_close(loss, eloss, func=f"cross_entropy_with_grad[{reduction}]"
                     " loss", dtype=rdt, kind="reduce", scale=loss_scale(1),
                     ctx=c)
        p = ref.softmax(logits, axis=-1)
        onehot = np.zeros_like(p)
        onehot[0, 12345] = 1.0
        assert_close(grad, egrad, func=f"cross_entropy_with_grad[{reduction}]"
                     " grad", dtype=rdt, kind="elem",
                     scale=grad_scale(p, 1.0, onehot), ctx=c)


@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("dtype", FLOATS)
def test_long_rows_split_over_threads(dtype, nthreads):
    """Fewer than two rows per thread with C >= 2**16: each row's chunks are
    shared among the threads (the long-row split); C = 70001 is not a
    multiple of the chunk length.  Rows, strided rows and the transpose."""
    n = 70001
    x = _rows(n, dtype, seed=77)
    old = csoftmax.show_config()["max_threads"]
    csoftmax.set_num_threads(nthreads)
    try:
        _check_all(x, dtype, f"n={n}, {nthreads} threads")
    finally:
        csoftmax.set_num_threads(old)


@pytest.mark.parametrize("dtype", FLOATS)
def test_long_rows_special_values_split(dtype):
    """Special values in one chunk of a split long row: +inf (with a NaN in
    another chunk or not), NaN alone, all -inf; against the reference, with
    the loss and gradient semantics of short rows, for 1 and 2 threads."""
    n = 70001
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((5, n)) * 2).astype(dtype)
    x[0, 40000] = np.inf
    x[1, 50000] = np.inf
    x[1, 3] = np.nan
    x[2, 69999] = np.nan
    x[3, :] = -np.inf
    labels = np.array([40000, 7, 8, 9, 10])
    rdt = np.dtype(dtype)
    res = {}
    old = csoftmax.show_config()["max_threads"]
    try:
        for nt in (1, 2):
            csoftmax.set_num_threads(nt)
            for i in range(5):      # one row at a time: 1 row < 2 per thread
                xi = x[i:i + 1]
                c = f"row {i}, {nt} threads"
                got = [csoftmax.logsumexp(xi, axis=-1), csoftmax.softmax(xi),
                       csoftmax.log_softmax(xi)]
                loss, grad = csoftmax.cross_entropy_with_grad(xi, labels[i:i + 1],
                                                              reduction="none")
                got += [loss, grad]
                g2 = xi.copy()
                loss2, _ = csoftmax.cross_entropy_with_grad(g2, labels[i:i + 1],
                                                            reduction="none", inplace=True)
                np.testing.assert_array_equal(loss2, loss, err_msg=c + " (in place)")
                np.testing.assert_array_equal(g2, grad, err_msg=c + " (in place)")
                with np.errstate(all="ignore"):
                    want = [ref.logsumexp(xi, axis=-1), ref.softmax(xi),
                            ref.log_softmax(xi)]
                    wl, wg = ref.cross_entropy_with_grad(xi, labels[i:i + 1], reduction="none")
                # NaN and infinity positions must match exactly (assert_close)
                scales = (lse_scale(xi, -1) if i in (2, 4) else 0.0, 0.0,
                          log_softmax_scale(xi, -1) if i in (2, 4) else 0.0, 10.0, 1.0)
                for name, a, b, sc in zip(("logsumexp", "softmax", "log_softmax", "loss",
                                           "grad"), got, want + [wl, wg], scales):
                    assert_close(a, b, func=f"{name} (long row)", dtype=rdt, kind="elem",
                                 scale=sc, ctx=c)
                res[(nt, i)] = [np.asarray(a).tobytes() for a in got]
    finally:
        csoftmax.set_num_threads(old)
    for i in range(5):
        assert res[(1, i)] == res[(2, i)], f"row {i}: 1 and 2 threads differ"


# ---------------------------------------------------------------------------
# N = 0, empty reductions, C = 1
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
def test_zero_rows(dtype):
    """N = 0 rows of C = 5 classes."""
    x = np.empty((0, 5), dtype=dtype)
    res = csoftmax.logsumexp(x, axis=-1)
    assert res.shape == (0,) and res.dtype == dtype
    for f in (csoftmax.softmax, csoftmax.log_softmax):
        res = f(x, axis=-1)
        assert res.shape == (0, 5) and res.dtype == dtype
    labels = np.empty((0,), dtype=np.int64)
    loss = csoftmax.cross_entropy(x, labels, reduction="none")
    assert loss.shape == (0,) and loss.dtype == dtype
    loss, grad = csoftmax.cross_entropy_with_grad(x, labels, reduction="sum")
    assert loss == 0 and loss.dtype == dtype
    assert grad.shape == (0, 5) and grad.dtype == dtype
    # mean over zero samples is 0/0 = NaN (as torch.nn.functional)
    with np.errstate(all="ignore"):
        loss, grad = csoftmax.cross_entropy_with_grad(x, labels)
    assert np.isnan(loss) and loss.dtype == dtype
    assert grad.shape == (0, 5)
    soft = np.empty((0, 5), dtype=dtype)
    assert csoftmax.cross_entropy(x, soft, reduction="sum") == 0


@pytest.mark.parametrize("dtype", FLOATS)
def test_empty_reduction_axis(dtype):
    """Reducing over an axis of length 0: lse = -inf (SciPy), softmax and
    log_softmax give an empty array (SciPy raises there, from np.max)."""
    x = np.empty((3, 0), dtype=dtype)
    res = csoftmax.logsumexp(x, axis=-1)
    assert res.dtype == dtype
    np.testing.assert_array_equal(res, np.full(3, -np.inf))
    np.testing.assert_array_equal(res, sps.logsumexp(x, axis=-1))
    res = csoftmax.logsumexp(x, axis=-1, keepdims=True)
    assert res.shape == (3, 1)
    res = csoftmax.logsumexp(x)
    assert np.ndim(res) == 0 and res == -np.inf
    for f in (csoftmax.softmax, csoftmax.log_softmax):
        for axis in (None, -1, 0):
            res = f(x, axis=axis)
            assert res.shape == (3, 0) and res.dtype == dtype
    one_d = np.empty(0, dtype=dtype)
    assert csoftmax.logsumexp(one_d) == -np.inf
    assert csoftmax.softmax(one_d).shape == (0,)


def test_empty_logsumexp_sign_matches_scipy():
    """SciPy returns sign -1 (= sign(-inf)) for an empty reduction; an
    all -inf row (a non-empty zero sum) has sign 0."""
    res, sgn = csoftmax.logsumexp(np.empty((2, 0)), axis=1, return_sign=True)
    eres, esgn = sps.logsumexp(np.empty((2, 0)), axis=1, return_sign=True)
    np.testing.assert_array_equal(res, eres)
    np.testing.assert_array_equal(sgn, esgn)
    res, sgn = csoftmax.logsumexp(np.full(3, -np.inf), return_sign=True)
    assert res == -np.inf and sgn == 0


@pytest.mark.parametrize("dtype", FLOATS + ("float16",))
def test_one_class(dtype):
    """C = 1: lse = x, softmax = 1, log_softmax = 0, CE loss 0, grad 0."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((6, 1)) * 10).astype(dtype)
    np.testing.assert_array_equal(csoftmax.logsumexp(x, axis=1), x[:, 0])
    np.testing.assert_array_equal(csoftmax.softmax(x, axis=1),
                                  np.ones_like(x))
    np.testing.assert_array_equal(csoftmax.log_softmax(x, axis=1),
                                  np.zeros_like(x))
    labels = np.zeros(6, dtype=np.int32)
    for reduction in ("none", "sum", "mean"):
        loss, grad = csoftmax.cross_entropy_with_grad(x, labels,
                                                      reduction=reduction)
        np.testing.assert_array_equal(loss, np.zeros(np.shape(loss)))
        np.testing.assert_array_equal(grad, np.zeros_like(x))
        assert grad.dtype == dtype
    # soft target of total mass 1 on one class: also 0
    loss, grad = csoftmax.cross_entropy_with_grad(
        x, np.ones_like(x), reduction="none")
    np.testing.assert_array_equal(loss, np.zeros(6))
    np.testing.assert_array_equal(grad, np.zeros_like(x))


# ---------------------------------------------------------------------------
# 0-d input, lists, scalar results, axis=()
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
def test_zero_dim(dtype):
    x = np.array(2.5, dtype=dtype)
    for axis in (None, 0, -1):
        res = csoftmax.logsumexp(x, axis=axis)
        assert np.ndim(res) == 0 and res.dtype == dtype and res == 2.5
    res = csoftmax.logsumexp(x, keepdims=True)
    assert np.shape(res) == np.shape(sps.logsumexp(x, keepdims=True)) == (1,)
    res, sgn = csoftmax.logsumexp(x, return_sign=True)
    assert res == 2.5 and sgn == 1
    res = csoftmax.logsumexp(x, b=np.array(2.0, dtype=dtype))
    assert_close(res, ref.logsumexp(x, b=2.0), func="logsumexp",
                 dtype=dtype, kind="reduce", scale=3.0, ctx="0-d, b=2")
    s = csoftmax.softmax(x)
    assert np.ndim(s) == 0 and s.dtype == dtype and s == 1.0
    s = csoftmax.log_softmax(x)
    assert np.ndim(s) == 0 and s.dtype == dtype and s == 0.0
    out = np.empty((), dtype=dtype)
    assert csoftmax.softmax(x, out=out) is out and out == 1.0
    out = np.empty((), dtype=dtype)
    assert csoftmax.logsumexp(x, out=out) is out and out == 2.5


def test_python_scalars_and_lists():
    assert csoftmax.logsumexp(3.0) == 3.0
    assert csoftmax.logsumexp([1, 2, 3]).dtype == np.float64
    assert_close(csoftmax.logsumexp([1, 2, 3]), sps.logsumexp([1, 2, 3]),
                 func="logsumexp", dtype=np.float64, kind="reduce", scale=4.0)
    assert_close(csoftmax.softmax([[1.0, 2.0], [3.0, 5.0]], axis=1),
                 sps.softmax([[1.0, 2.0], [3.0, 5.0]], axis=1),
                 func="softmax", dtype=np.float64, kind="elem")
    assert_close(csoftmax.logsumexp([1.0, 2.0], b=[1, -0.5],
                                    return_sign=True)[0],
                 sps.logsumexp([1.0, 2.0], b=[1, -0.5], return_sign=True)[0],
                 func="logsumexp", dtype=np.float64, kind="reduce",
                 scale=lse_scale([1.0, 2.0], b=[1, -0.5]))
    loss = csoftmax.cross_entropy([[1.0, 2.0, 3.0]], [2], reduction="sum")
    assert_close(loss, ref.cross_entropy([[1.0, 2.0, 3.0]], [2],
                                         reduction="sum"),
                 func="cross_entropy[sum] loss", dtype=np.float64,
                 kind="reduce", scale=1.0)


def test_full_reduction_returns_numpy_scalar():
    """Like scipy.special.logsumexp, a full reduction gives a NumPy scalar
    (not a 0-d array), and a reduced loss is a NumPy scalar."""
    x = np.arange(6.0).reshape(2, 3)
    assert isinstance(sps.logsumexp(x), np.float64)
    assert isinstance(csoftmax.logsumexp(x), np.float64)
    assert isinstance(csoftmax.logsumexp(x.astype(np.float32)), np.float32)
    loss = csoftmax.cross_entropy(x.astype(np.float32), np.array([0, 1]))
    assert isinstance(loss, np.float32)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "uint8",
                                   "uint16", "uint32", "uint64", "int64"])
def test_integer_inputs_promote_to_float64(dtype):
    x = np.array([[1, 5, 3], [0, 2, 7]], dtype=dtype)
    for name in ("logsumexp", "softmax", "log_softmax"):
        res = getattr(csoftmax, name)(x, axis=1)
        assert res.dtype == np.float64, (name, dtype)
        exp = getattr(sps, name)(x.astype(np.float64), axis=1)
        np.testing.assert_allclose(res, exp, rtol=1e-13, atol=1e-15)
    loss, grad = csoftmax.cross_entropy_with_grad(x, np.array([1, 2]))
    assert loss.dtype == np.float64 and grad.dtype == np.float64


def test_float16_computed_in_float32():
    """float16 in; the log-sum-exp float32 (float16 with dtype=), softmax float16;
    computed in float32 (scipy would compute in float16, with far larger errors)."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((5, 300)) * 3).astype(np.float16)
    assert csoftmax.logsumexp(x, axis=1).dtype == np.float32
    res = csoftmax.logsumexp(x, axis=1, dtype=np.float16)
    assert res.dtype == np.float16
    exp32 = ref.logsumexp(x.astype(np.float32), axis=1).astype(np.float16)
    # the float32 result rounded once to float16: within one float16 ulp
    np.testing.assert_array_max_ulp(res, exp32, maxulp=1)
    res = csoftmax.softmax(x, axis=1)
    assert res.dtype == np.float16
    np.testing.assert_array_max_ulp(
        res, ref.softmax(x, axis=1).astype(np.float16), maxulp=1)


def test_axis_empty_tuple_is_elementwise():
    """SciPy: axis=() reduces over no axis: lse(x) = x, softmax = 1."""
    x = np.array([[1.0, -2.0], [3.5, 0.0]])
    np.testing.assert_array_equal(csoftmax.logsumexp(x, axis=()),
                                  sps.logsumexp(x, axis=()))
    np.testing.assert_array_equal(csoftmax.softmax(x, axis=()),
                                  sps.softmax(x, axis=()))
    np.testing.assert_array_equal(csoftmax.log_softmax(x, axis=()),
                                  sps.log_softmax(x, axis=()))

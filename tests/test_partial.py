"""The class-slice states: partial_logsumexp / partial_cross_entropy / merge_*.

Checked against the float64 reference (csoftmax.reference, which merges in one
step, not left to right) and against the one-piece csoftmax functions:
one state is the one-piece result bit for bit (row kernels: contiguous rows
of more than 32 classes), several merged in any grouping are within the
one-piece accuracy bounds of the reference (README, "Beyond one machine").
"""
import itertools

import numpy as np
import pytest

import csoftmax as cs
from csoftmax import _partial
from csoftmax_testsupport import assert_close, load_reference

ref = load_reference()
DTYPES = [np.float32, np.float64]


def _splits(c, k, rng):
    """k slices (start, stop) of 0..c, some possibly empty."""
    cuts = np.sort(rng.integers(0, c + 1, k - 1))
    b = [0] + cuts.tolist() + [c]
    return list(zip(b[:-1], b[1:]))


def _logits(rng, n, c, dtype, scale=4.0):
    return (rng.standard_normal((n, c)) * scale).astype(dtype)


def _specials(x):
    """Rows of SciPy's special values, in varying slices."""
    x = x.copy()
    c = x.shape[1]
    x[0, c // 3] = np.nan
    x[1, c - 1] = np.inf
    x[2, :] = -np.inf
    x[3, : c // 2] = -np.inf              # a slice of -inf, the rest finite
    x[4, 0] = np.inf
    x[4, c - 1] = np.nan                  # NaN wins over +inf in another slice
    x[5, 1] = np.inf
    x[5, 2] = np.inf                      # two +inf
    return x


# ----------------------------------------------------------------- one state = one piece

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [33, 1000, 4097, 70000])
def test_one_state_is_one_piece_bits(dtype, c, isa):
    rng = np.random.default_rng(c)
    x = _logits(rng, 6 if c > 5000 else 40, c, dtype)
    x = _specials(x) if c >= 64 else x
    st = cs.partial_logsumexp(x)
    assert st.shape == (x.shape[0], 6) and st.dtype == np.float64
    lse = cs.merge_logsumexp([st]).astype(dtype)
    assert np.array_equal(lse, cs.logsumexp(x, axis=-1), equal_nan=True)
    # the merged softmax / log-softmax kernels from that one state
    m2 = st.reshape(-1, 6)
    x3 = x.reshape(-1, 1, c)
    for mode, f in ((0, cs.softmax), (1, cs.log_softmax)):
        y = np.empty_like(x)
        _partial._merged_apply(mode, x3, _partial._lse_factors(m2, mode == 1),
                               y.reshape(x3.shape))
        assert np.array_equal(y, f(x, axis=-1), equal_nan=True), f.__name__


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1}, {"softcap": 5.0},
                                  {"z_loss": 1e-3, "label_smoothing": 0.2},
                                  {"ignore_index": 3}])
def test_one_state_cross_entropy_bits(dtype, opts, isa):
    rng = np.random.default_rng(1)
    n, c = 50, 3000
    x = _logits(rng, n, c, dtype)
    lab = rng.integers(0, c, n)
    lab[7] = opts.get("ignore_index", -100)
    w = rng.random(c).astype(dtype)
    for weight in (None, w):
        kw = dict(opts, weight=weight)
        zl = kw.pop("z_loss", 0.0)
        st = cs.partial_cross_entropy(x, lab, num_classes=c, **kw)
        got = cs.merge_cross_entropy([st], lab, num_classes=c, reduction="none", z_loss=zl,
                                     **kw)
        one = cs.cross_entropy(x.astype(np.float64) if dtype == np.float64 else x, lab,
                               reduction="none", z_loss=zl, **kw)
        assert np.array_equal(got.astype(dtype), one), (opts, weight is None)


# ----------------------------------------------------------------- several states

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [2, 3, 5])
def test_merge_any_grouping(dtype, k, isa):
    rng = np.random.default_rng(10 + k)
    n, c = 12, 9000
    x = _specials(_logits(rng, n, c, dtype))
    sl = _splits(c, k, rng)
    states = [cs.partial_logsumexp(x[:, a:b]) for a, b in sl]
    flat = cs.merge_logsumexp(states)
    want = ref.logsumexp(x, axis=-1)
    rdt = np.dtype(dtype)
    assert_close(flat.astype(rdt), want, func="merge_logsumexp", dtype=rdt, kind="reduce")
    # reference states, merged by the reference in one step
    rstates = [ref.partial_logsumexp(x[:, a:b]) for a, b in sl]
    assert_close(ref.merge_logsumexp(rstates), want, func="ref.merge_logsumexp",
                 dtype=np.float64, kind="reduce", record=False)
    # every tree: left nested, right nested, pairs
    trees = [cs.merge_partials([cs.merge_partials(states[:i]), cs.merge_partials(states[i:])])
             for i in range(1, k)]
    for t in trees:
        got = cs.merge_logsumexp([t]).astype(rdt)
        assert_close(got, want, func="merge_logsumexp", dtype=rdt, kind="reduce")
        # merged vs one-piece: both within the bound of the reference
        assert_close(got, cs.logsumexp(x, axis=-1).astype(np.float64), func="vs one-piece",
                     dtype=rdt, kind="reduce", factor=2.0)
    # stacked input is the same as a sequence
    assert np.array_equal(cs.merge_logsumexp(list(np.stack(states))), flat, equal_nan=True)
    # a single array is one state (its rows are not merged with each other)
    assert np.array_equal(cs.merge_logsumexp(states[0]), cs.merge_logsumexp([states[0]]),
                          equal_nan=True)


def test_merge_of_one_state_is_identity():
    rng = np.random.default_rng(3)
    x = _specials(_logits(rng, 10, 500, np.float64))
    st = cs.partial_logsumexp(x)
    assert np.array_equal(cs.merge_partials([st]), st, equal_nan=True)


def test_states_against_reference():
    rng = np.random.default_rng(4)
    x = _specials(_logits(rng, 10, 300, np.float64))
    lab = rng.integers(0, 300, 10)
    lab[2] = -100
    w = rng.random(300)
    for a, b in [(0, 100), (100, 101), (101, 300), (50, 50)]:
        got = cs.partial_cross_entropy(x[:, a:b], lab, num_classes=300, start=a, weight=w,
                                       label_smoothing=0.1)
        want = ref.partial_cross_entropy(x[:, a:b], lab, num_classes=300, start=a, weight=w,
                                         label_smoothing=0.1)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(got[:, 1], want[:, 1])      # counts are exact
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1},
                                  {"softcap": 6.0, "z_loss": 1e-3},
                                  {"label_smoothing": 0.3, "z_loss": 1e-2}])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_merge_cross_entropy(dtype, opts, reduction, isa):
    rng = np.random.default_rng(5)
    n, c = 40, 5000
    x = _logits(rng, n, c, dtype)
    x[0, 10] = -np.inf                       # a -inf logit (not the label)
    lab = rng.integers(0, c, n)
    lab[:4] = [0, c - 1, 2500, -100]
    lab[10:14] = np.arange(10, 14)           # labels in the first slice only
    w = rng.random(c)
    sw = rng.random(n)
    zl = opts.get("z_loss", 0.0)
    kw = {k: v for k, v in opts.items() if k != "z_loss"}
    for k in (2, 3):
        sl = _splits(c, k, rng)
        states = [cs.partial_cross_entropy(x[:, a:b], lab, num_classes=c, start=a, weight=w,
                                           **kw) for a, b in sl]
        got = cs.merge_cross_entropy(states, lab, num_classes=c, weight=w, sample_weight=sw,
                                     reduction=reduction, z_loss=zl, **kw)
        want = ref.cross_entropy(x, lab, weight=w, sample_weight=sw, reduction=reduction,
                                 z_loss=zl, **kw)
        rdt = np.dtype(dtype)
        assert_close(np.asarray(got).astype(rdt), want, func="merge_cross_entropy",
                     dtype=rdt, kind="reduce", scale=1.0)
        rgot = ref.merge_cross_entropy(
            [ref.partial_cross_entropy(x[:, a:b], lab, num_classes=c, start=a, weight=w, **kw)
             for a, b in sl], lab, num_classes=c, weight=w, sample_weight=sw,
            reduction=reduction, z_loss=zl, **kw)
        assert_close(np.asarray(rgot), want, func="ref.merge_cross_entropy",
                     dtype=np.float64, kind="reduce", scale=1.0, record=False)


def test_special_rows_cross_entropy():
    rng = np.random.default_rng(6)
    c = 600
    x = _specials(_logits(rng, 8, c, np.float64))
    lab = np.array([5, c - 1, 0, 0, 3, 1, 300, 7])
    for kw in ({}, {"label_smoothing": 0.1}):
        states = [cs.partial_cross_entropy(x[:, a:b], lab, num_classes=c, start=a, **kw)
                  for a, b in [(0, 200), (200, 200), (200, c)]]
        got = cs.merge_cross_entropy(states, lab, num_classes=c, reduction="none", **kw)
        one = cs.cross_entropy(x, lab, reduction="none", **kw)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(one))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(one))
        fin = np.isfinite(one)
        np.testing.assert_allclose(got[fin], one[fin], rtol=1e-13)


def test_bad_input():
    x = np.zeros((3, 10))
    lab = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="out of range"):
        cs.partial_cross_entropy(x, np.array([0, 1, 20]), num_classes=20)
    with pytest.raises(ValueError, match="not inside"):
        cs.partial_cross_entropy(x, lab, num_classes=12, start=5)
    with pytest.raises(TypeError, match="probability"):
        cs.partial_cross_entropy(x, np.zeros((3, 10)), num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        cs.partial_cross_entropy(x, lab, num_classes=-1)
    with pytest.raises(ValueError, match="weight"):
        cs.partial_cross_entropy(x, lab, num_classes=10, weight=np.ones(9))
    with pytest.raises(ValueError, match="fields"):
        cs.merge_logsumexp([np.zeros((3, 5))])
    with pytest.raises(ValueError, match="shape"):
        cs.merge_logsumexp([np.zeros((3, 6)), np.zeros((4, 6))])
    with pytest.raises(ValueError, match="no states"):
        cs.merge_logsumexp([])
    with pytest.raises(TypeError):
        cs.partial_logsumexp(np.zeros(3, complex))
    with pytest.raises(ValueError, match="out of range"):
        cs.merge_cross_entropy([cs.partial_logsumexp(x)], np.array([0, 1, 10]), num_classes=10)
    # no classes, every row ignored: NaN mean as the one-piece function, no exception
    got = cs.merge_cross_entropy([np.empty((2, 6))], np.full(2, -100), num_classes=0,
                                 label_smoothing=0.1)
    assert np.isnan(got) and np.isnan(cs.cross_entropy(np.zeros((2, 0)), np.full(2, -100),
                                                       label_smoothing=0.1))


def test_batch_shapes_and_axis():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 50, 3))
    st = cs.partial_logsumexp(x, axis=1)
    assert st.shape == (2, 3, 6)
    np.testing.assert_allclose(cs.merge_logsumexp([st]), ref.logsumexp(x, axis=1), rtol=1e-14)
    # empty slices and an empty batch
    assert cs.partial_logsumexp(np.zeros((4, 0))).tolist() == [[-np.inf, 0, 0, 0, 0, 0]] * 4
    assert cs.partial_logsumexp(np.zeros((0, 5))).shape == (0, 6)
    assert np.all(cs.merge_logsumexp([cs.partial_logsumexp(np.zeros((2, 0)))]) == -np.inf)


def test_threads_bit_identical():
    rng = np.random.default_rng(8)
    x = _logits(rng, 64, 70000, np.float32)
    prev = cs._core.max_threads()
    try:
        cs.set_num_threads(1)
        a = cs.partial_logsumexp(x)
        cs.set_num_threads(2)
        b = cs.partial_logsumexp(x)
    finally:
        cs.set_num_threads(prev)
    assert np.array_equal(a, b)


def test_field_names():
    assert cs.STATE_FIELDS == ("max", "count", "sumexp", "target_logit", "weight_sum",
                               "weighted_gap")
    assert len(list(itertools.chain(cs.STATE_FIELDS))) == 6

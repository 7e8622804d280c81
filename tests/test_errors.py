"""Every documented error, its exception type and message, and that neither
``out`` nor the logits are modified when an error is raised."""

import re

import numpy as np
import pytest
from numpy.exceptions import AxisError

import csoftmax

SENTINEL = 12345.0


def _logits(dtype=np.float64, shape=(20, 5), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(dtype)


def _assert_label_error(excinfo, position):
    msg = str(excinfo.value)
    assert re.search(r"(?i)\blabels?\b", msg), msg
    assert re.search(rf"(?<![\d.]){position}(?![\d.])", msg), (
        f"position {position} not in message: {msg!r}")


# ---------------------------------------------------------------------------
# labels out of range
# ---------------------------------------------------------------------------

BAD_LABELS = [
    # (label dtype, bad value, position)
    ("int64", 5, 13),          # == C
    ("int64", 7, 0),
    ("int64", -1, 19),         # negative, last sample
    ("int8", -128, 11),
    ("int32", 2**31 - 1, 6),
    ("uint8", 255, 9),
    ("uint16", 5, 17),
    ("uint32", 2**32 - 1, 3),
    ("uint64", 2**64 - 1, 14),  # would be -1 if reinterpreted as int64
    ("uint64", 2**63, 8),
    ("int16", -300, 16),
]


@pytest.mark.parametrize("label_dtype,value,pos", BAD_LABELS)
@pytest.mark.parametrize("mode", ["loss", "grad", "out", "inplace"])
def test_label_out_of_range(mode, label_dtype, value, pos):
    logits = _logits()
    labels = np.arange(20, dtype=np.int64) % 5
    labels = labels.astype(label_dtype)
    labels[pos] = value
    if pos + 2 < 20:
        labels[pos + 2] = value            # only the first one is reported
    before = logits.copy()
    out = np.full_like(logits, SENTINEL)
    with pytest.raises(ValueError, match=r"(?i)label") as excinfo:
        if mode == "loss":
            csoftmax.cross_entropy(logits, labels)
        elif mode == "grad":
            csoftmax.cross_entropy_with_grad(logits, labels)
        elif mode == "out":
            csoftmax.cross_entropy_with_grad(logits, labels, out=out)
        else:
            csoftmax.cross_entropy_with_grad(logits, labels, inplace=True)
    _assert_label_error(excinfo, pos)
    np.testing.assert_array_equal(logits, before)
    assert np.all(out == SENTINEL)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_label_error_position_is_flat_sample_index(reduction):
    """(N, C, d1, d2) with axis=1: the reported position is the C-order flat
    index into the target array."""
    logits = _logits(shape=(2, 4, 3, 5))
    labels = np.zeros((2, 3, 5), dtype=np.int32)
    labels[1, 2, 3] = 4                    # C = 4 -> out of range
    pos = np.ravel_multi_index((1, 2, 3), labels.shape)   # = 28
    before = logits.copy()
    with pytest.raises(ValueError, match=r"(?i)label") as excinfo:
        csoftmax.cross_entropy_with_grad(logits, labels, axis=1,
                                         reduction=reduction, inplace=True)
    _assert_label_error(excinfo, pos)
    np.testing.assert_array_equal(logits, before)


def test_no_classes_every_label_is_out_of_range():
    with pytest.raises(ValueError, match=r"(?i)label") as excinfo:
        csoftmax.cross_entropy(np.empty((3, 0)), np.zeros(3, dtype=np.int64))
    _assert_label_error(excinfo, 0)


# ---------------------------------------------------------------------------
# target shape / dtype
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    np.zeros(19, dtype=np.int64),               # one sample short
    np.zeros((20, 1), dtype=np.int64),           # extra axis
    np.zeros((20, 5), dtype=np.int64),           # int with the logits' shape
    np.zeros(20, dtype=np.float64),              # float needs logits' shape
    np.zeros((20, 4), dtype=np.float64),
    np.zeros((5, 20), dtype=np.float64),
    np.zeros((), dtype=np.int64),
], ids=["short", "extra-axis", "int-full-shape", "float-1d", "float-C-1",
        "float-transposed", "0-d"])
@pytest.mark.parametrize("mode", ["loss", "out", "inplace"])
def test_target_shape_mismatch(target, mode):
    logits = _logits()
    before = logits.copy()
    out = np.full_like(logits, SENTINEL)
    with pytest.raises(ValueError, match=r"(?i)shape"):
        if mode == "loss":
            csoftmax.cross_entropy(logits, target)
        elif mode == "out":
            csoftmax.cross_entropy_with_grad(logits, target, out=out)
        else:
            csoftmax.cross_entropy_with_grad(logits, target, inplace=True)
    np.testing.assert_array_equal(logits, before)
    assert np.all(out == SENTINEL)


def test_target_shape_mismatch_with_class_axis_1():
    logits = _logits(shape=(2, 4, 3))
    with pytest.raises(ValueError, match=r"(?i)shape"):
        # shape of "classes last" instead of axis=1
        csoftmax.cross_entropy(logits, np.zeros((2, 4), np.int64), axis=1)


@pytest.mark.parametrize("target", [np.zeros(20, dtype=bool),
                                    np.zeros(20, dtype=complex),
                                    np.array(["a"] * 20, dtype=object)],
                         ids=["bool", "complex", "object"])
def test_bad_target_dtype(target):
    with pytest.raises((TypeError, ValueError)):
        csoftmax.cross_entropy(_logits(), target)


# ---------------------------------------------------------------------------
# out= shape / dtype, read-only arrays
# ---------------------------------------------------------------------------

def _out_calls(x, out):
    """(name, thunk) for every function that takes out= with x's shape."""
    labels = np.zeros(x.shape[0], dtype=np.int64)
    return [
        ("softmax", lambda: csoftmax.softmax(x, axis=1, out=out)),
        ("log_softmax", lambda: csoftmax.log_softmax(x, axis=1, out=out)),
        ("cross_entropy_with_grad",
         lambda: csoftmax.cross_entropy_with_grad(x, labels, out=out)),
    ]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("out_shape", [(20, 4), (5, 20), (20, 5, 1), (100,),
                                       ()])
def test_out_wrong_shape(dtype, out_shape):
    x = _logits(dtype)
    before = x.copy()
    for name in ("softmax", "log_softmax", "cross_entropy_with_grad"):
        out = np.full(out_shape, SENTINEL, dtype)
        with pytest.raises(ValueError, match=r"(?i)shape"):
            dict(_out_calls(x, out))[name]()
        assert np.all(out == SENTINEL), name
        np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("dtype,out_dtype", [
    ("float64", "float32"), ("float32", "float64"), ("float64", "int64"),
    ("int64", "int64"), ("int64", "float32"), ("float16", "float32"),
    ("float32", "float16"), ("float64", "complex128")])
def test_out_wrong_dtype(dtype, out_dtype):
    x = _logits(dtype) if np.dtype(dtype).kind == "f" else \
        np.arange(100, dtype=dtype).reshape(20, 5) % 7
    for name in ("softmax", "log_softmax", "cross_entropy_with_grad"):
        out = np.full(x.shape, 7, dtype=out_dtype)
        with pytest.raises(ValueError, match=r"(?i)dtype|type"):
            dict(_out_calls(x, out))[name]()
        assert np.all(out == 7), name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logsumexp_out_wrong_shape_or_dtype(dtype):
    x = _logits(dtype)
    for out in (np.full(5, SENTINEL, dtype), np.full((20, 1), SENTINEL, dtype),
                np.full((), SENTINEL, dtype)):
        with pytest.raises(ValueError, match=r"(?i)shape"):
            csoftmax.logsumexp(x, axis=1, out=out)
        assert np.all(out == SENTINEL)
    other = np.float32 if dtype == "float64" else np.float64
    out = np.full(20, SENTINEL, other)
    with pytest.raises(ValueError, match=r"(?i)dtype|type"):
        csoftmax.logsumexp(x, axis=1, out=out)
    assert np.all(out == SENTINEL)
    # with return_sign, out= receives the lse only
    out = np.full(20, SENTINEL, dtype)
    lse, sgn = csoftmax.logsumexp(x, axis=1, return_sign=True, out=out)
    assert lse is out and np.shape(sgn) == (20,)


def test_out_read_only():
    x = _logits()
    out = np.full_like(x, SENTINEL)
    out.flags.writeable = False
    for name, call in _out_calls(x, out):
        with pytest.raises(ValueError):
            call()
    assert np.all(out == SENTINEL)


@pytest.mark.parametrize("layout", ["readonly", "broadcast"])
def test_inplace_read_only_logits(layout):
    base = _logits()
    if layout == "readonly":
        logits = base.copy()
        logits.flags.writeable = False
    else:
        logits = np.broadcast_to(base[:1], base.shape)
    before = np.array(logits)
    labels = np.zeros(20, dtype=np.int64)
    with pytest.raises(ValueError, match=r"(?i)read-?only|writ[e]?able"):
        csoftmax.cross_entropy_with_grad(logits, labels, inplace=True)
    np.testing.assert_array_equal(logits, before)


def test_softmax_out_read_only_input_as_out():
    x = _logits()
    x.flags.writeable = False
    with pytest.raises(ValueError):
        csoftmax.softmax(x, axis=1, out=x)


# ---------------------------------------------------------------------------
# axis
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [2, -3, 5, (0, 2), (-3,)])
def test_axis_out_of_range(axis):
    x = _logits()
    with pytest.raises(AxisError, match="axis"):
        csoftmax.logsumexp(x, axis=axis)
    with pytest.raises(AxisError, match="axis"):
        csoftmax.softmax(x, axis=axis)
    with pytest.raises(AxisError, match="axis"):
        csoftmax.log_softmax(x, axis=axis)
    if isinstance(axis, int):
        labels = np.zeros(20, dtype=np.int64)
        before = x.copy()
        with pytest.raises(AxisError, match="axis"):
            csoftmax.cross_entropy(x, labels, axis=axis)
        with pytest.raises(AxisError, match="axis"):
            csoftmax.cross_entropy_with_grad(x, labels, axis=axis,
                                             inplace=True)
        np.testing.assert_array_equal(x, before)


def test_axis_out_of_range_with_out_leaves_out_unchanged():
    x = _logits()
    out = np.full_like(x, SENTINEL)
    with pytest.raises(AxisError):
        csoftmax.softmax(x, axis=2, out=out)
    with pytest.raises(AxisError):
        csoftmax.cross_entropy_with_grad(x, np.zeros(20, np.int64), axis=-3,
                                         out=out)
    assert np.all(out == SENTINEL)


def test_duplicate_axis():
    x = _logits()
    for f in (csoftmax.logsumexp, csoftmax.softmax, csoftmax.log_softmax):
        with pytest.raises(ValueError, match=r"(?i)duplicate|repeat|axis"):
            f(x, axis=(0, 0))
        with pytest.raises(ValueError, match=r"(?i)duplicate|repeat|axis"):
            f(x, axis=(1, -1))


# ---------------------------------------------------------------------------
# reduction
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["avg", "", "MEAN", None, "batchmean"])
def test_unknown_reduction(reduction):
    x = _logits()
    labels = np.zeros(20, dtype=np.int64)
    before = x.copy()
    out = np.full_like(x, SENTINEL)
    with pytest.raises(ValueError, match=r"(?i)reduction"):
        csoftmax.cross_entropy(x, labels, reduction=reduction)
    with pytest.raises(ValueError, match=r"(?i)reduction"):
        csoftmax.cross_entropy_with_grad(x, labels, reduction=reduction,
                                         out=out)
    with pytest.raises(ValueError, match=r"(?i)reduction"):
        csoftmax.cross_entropy_with_grad(x, labels, reduction=reduction,
                                         inplace=True)
    np.testing.assert_array_equal(x, before)
    assert np.all(out == SENTINEL)


# ---------------------------------------------------------------------------
# unsupported input dtypes
# ---------------------------------------------------------------------------

BAD_INPUTS = {
    "complex128": np.ones((4, 3), dtype=np.complex128),
    "complex64": np.ones((4, 3), dtype=np.complex64),
    "bool": np.ones((4, 3), dtype=bool),
    "object": np.ones((4, 3)).astype(object),
    "str": np.full((4, 3), "1.0"),
}


UNSUPPORTED_CALLS = {
    "logsumexp": lambda x: csoftmax.logsumexp(x, axis=1),
    "logsumexp(b=float)": lambda x: csoftmax.logsumexp(x, axis=1,
                                                       b=np.ones(3)),
    "softmax": lambda x: csoftmax.softmax(x, axis=1),
    "log_softmax": lambda x: csoftmax.log_softmax(x, axis=1),
    "cross_entropy": lambda x: csoftmax.cross_entropy(
        x, np.zeros(4, dtype=np.int64)),
    "cross_entropy_with_grad": lambda x: csoftmax.cross_entropy_with_grad(
        x, np.zeros(4, dtype=np.int64)),
}


# complex input is supported by logsumexp / softmax / log_softmax (tests/test_complex.py)
COMPLEX_OK = {"logsumexp", "logsumexp(b=float)", "softmax", "log_softmax"}


@pytest.mark.parametrize("func", sorted(UNSUPPORTED_CALLS))
@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_unsupported_input_dtype(kind, func):
    if kind.startswith("complex") and func in COMPLEX_OK:
        UNSUPPORTED_CALLS[func](BAD_INPUTS[kind])          # supported: must not raise
        return
    with pytest.raises(TypeError):
        UNSUPPORTED_CALLS[func](BAD_INPUTS[kind])


def test_complex_weights_accepted():
    got = csoftmax.logsumexp(np.ones(3), b=np.ones(3, dtype=complex))
    assert np.asarray(got).dtype == np.complex128
    assert got == pytest.approx(1 + np.log(3), rel=1e-15)       # log(3 e)

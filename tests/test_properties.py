"""Hypothesis properties on finite inputs of moderate magnitude.

Settings come from the profile loaded in conftest.py (deadline=None, a
bounded number of examples)."""

import numpy as np
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import csoftmax
from csoftmax_testsupport import (
    assert_close, grad_scale, load_reference, log_softmax_scale, loss_scale,
    lse_scale, tolerance)

ref = load_reference()

DTYPES = st.sampled_from(["float32", "float64"])


@st.composite
def matrices(draw, max_rows=6, max_cols=70, dyadic=False):
    """(dtype, 2-D array) with 1..max_rows rows of 1..max_cols finite values.

    dyadic=True draws multiples of 2**-10 in [-1024, 1024]: exactly
    representable in float32, and x + c stays exact for integer |c| <= 1024,
    so shift invariance can be tested without rounding the input."""
    dtype = draw(DTYPES)
    shape = (draw(st.integers(1, max_rows)), draw(st.integers(1, max_cols)))
    if dyadic:
        ints = draw(hnp.arrays(np.int64, shape,
                               elements=st.integers(-2**20, 2**20)))
        return dtype, (ints / 1024.0).astype(dtype)
    width = 32 if dtype == "float32" else 64
    elements = st.floats(-200, 200, allow_nan=False, allow_infinity=False,
                         width=width)
    return dtype, draw(hnp.arrays(dtype, shape, elements=elements))


@given(matrices())
def test_softmax_rows_sum_to_one(case):
    dtype, x = case
    p = csoftmax.softmax(x, axis=1)
    rtol, atol = tolerance(dtype, "elem")
    assert np.all(p >= 0) and np.all(p <= 1)
    total = np.sum(p.astype(np.float64), axis=1)
    # each p_i within rtol * p_i + atol, plus the final rounding of p_i
    bound = 2 * rtol + x.shape[1] * (atol + np.finfo(dtype).eps / 2)
    assert np.all(np.abs(total - 1.0) <= bound), np.abs(total - 1.0).max()


@given(matrices(dyadic=True), st.integers(-1024, 1024))
def test_logsumexp_shift_invariance(case, c):
    dtype, x = case
    shifted = x + np.asarray(c, dtype=dtype)       # exact (dyadic values)
    np.testing.assert_array_equal(shifted - c, x)
    a = csoftmax.logsumexp(x, axis=1).astype(np.float64)
    b = csoftmax.logsumexp(shifted, axis=1).astype(np.float64)
    rtol, _ = tolerance(dtype, "reduce")
    # both sides have the lse error; the addition of c is exact in float64
    scale = lse_scale(x, 1) + abs(c)
    assert np.all(np.abs(b - (a + c)) <= 2 * rtol * (np.abs(a + c) + scale))


@given(matrices(dyadic=True), st.integers(-1024, 1024))
def test_softmax_shift_invariance(case, c):
    dtype, x = case
    shifted = x + np.asarray(c, dtype=dtype)
    p = csoftmax.softmax(x, axis=1)
    q = csoftmax.softmax(shifted, axis=1)
    rtol, atol = tolerance(dtype, "elem")
    np.testing.assert_allclose(q, p, rtol=2 * rtol, atol=2 * atol)


@given(matrices(), st.data())
def test_grad_rows_sum_to_zero_for_labels(case, data):
    dtype, x = case
    labels = data.draw(hnp.arrays(np.int64, x.shape[0],
                                  elements=st.integers(0, x.shape[1] - 1)))
    _, grad = csoftmax.cross_entropy_with_grad(x, labels, reduction="sum")
    rtol, atol = tolerance(dtype, "elem")
    total = np.sum(grad.astype(np.float64), axis=1)
    bound = 3 * rtol + x.shape[1] * (atol + np.finfo(dtype).eps)
    assert np.all(np.abs(total) <= bound), np.abs(total).max()
    # the label entry is the only negative one
    rows = np.arange(x.shape[0])
    assert np.all(grad[rows, labels] <= 0)
    mask = np.ones_like(grad, dtype=bool)
    mask[rows, labels] = False
    assert np.all(grad[mask] >= 0)


@given(matrices(max_rows=4, max_cols=40), st.data())
def test_agreement_with_reference(case, data):
    dtype, x = case
    axis = data.draw(st.sampled_from([None, 0, 1, -1, (0, 1)]))
    c = f"axis={axis}"
    assert_close(csoftmax.logsumexp(x, axis=axis),
                 ref.logsumexp(x, axis=axis), func="logsumexp", dtype=dtype,
                 kind="reduce", scale=lse_scale(x, axis), ctx=c)
    assert_close(csoftmax.softmax(x, axis=axis), ref.softmax(x, axis=axis),
                 func="softmax", dtype=dtype, kind="elem", ctx=c)
    assert_close(csoftmax.log_softmax(x, axis=axis),
                 ref.log_softmax(x, axis=axis), func="log_softmax",
                 dtype=dtype, kind="elem", scale=log_softmax_scale(x, axis),
                 ctx=c)
    b = data.draw(hnp.arrays(np.float64, x.shape,
                             elements=st.floats(0, 4))).astype(dtype)
    assert_close(csoftmax.logsumexp(x, axis=axis, b=b),
                 ref.logsumexp(x, axis=axis, b=b), func="logsumexp",
                 dtype=dtype, kind="reduce", scale=lse_scale(x, axis, b=b),
                 ctx=c + ", b")


@given(matrices(max_rows=5, max_cols=40), st.data())
def test_cross_entropy_agreement_with_reference(case, data):
    dtype, x = case
    n, k = x.shape
    reduction = data.draw(st.sampled_from(["none", "sum", "mean"]))
    if data.draw(st.booleans()):
        target = data.draw(hnp.arrays(
            data.draw(st.sampled_from([np.int8, np.int32, np.uint16,
                                       np.int64, np.uint64])),
            n, elements=st.integers(0, min(k - 1, 127))))
        t = np.eye(k)[target.astype(np.int64)]
    else:
        w = data.draw(hnp.arrays(np.float64, x.shape,
                                 elements=st.floats(0, 1)))
        w[:, 0] += 1e-3
        target = (w / w.sum(axis=1, keepdims=True)).astype(dtype)
        t = target.astype(np.float64)
    loss, grad = csoftmax.cross_entropy_with_grad(x, target,
                                                  reduction=reduction)
    eloss, egrad = ref.cross_entropy_with_grad(x, target, reduction=reduction)
    assert_close(loss, eloss, func=f"cross_entropy_with_grad[{reduction}] "
                 "loss", dtype=dtype, kind="reduce",
                 scale=loss_scale(n if reduction == "sum" else 1))
    p = ref.softmax(x, axis=1)
    scale = grad_scale(p, t.sum(axis=1, keepdims=True), t)
    div = n if reduction == "mean" else 1
    assert_close(grad, egrad, func=f"cross_entropy_with_grad[{reduction}] "
                 "grad", dtype=dtype, kind="elem", scale=scale / div,
                 atol_factor=1.0 / div)

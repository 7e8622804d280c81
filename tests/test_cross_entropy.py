"""cross_entropy / cross_entropy_with_grad: label dtypes, soft targets,
reductions, class axis, out= / inplace=, non-contiguous logits, finite
difference gradient checks and float32 accuracy on wide rows."""

import numpy as np
import pytest

import csoftmax
from csoftmax_testsupport import (
    assert_close, assert_consistent, grad_scale, load_reference, loss_scale, result_dtype,
    row_dtype, with_layout)

ref = load_reference()

INT_DTYPES = ("int8", "int16", "int32", "int64",
              "uint8", "uint16", "uint32", "uint64")
REDUCTIONS = ("none", "sum", "mean")


def check_against_reference(logits, target, *, axis=-1, reduction="mean",
                            loss=None, grad=None, ctx=""):
    """Compare a csoftmax (loss, grad) with the float64 reference."""
    rdt = result_dtype(np.asarray(logits).dtype)
    eloss, egrad = ref.cross_entropy_with_grad(logits, target, axis=axis,
                                               reduction=reduction)
    ax = axis % np.ndim(logits)
    shape = np.shape(logits)
    n = int(np.prod([s for i, s in enumerate(shape) if i != ax]))
    func = "cross_entropy_with_grad" if grad is not None else "cross_entropy"
    if reduction == "none":
        assert isinstance(loss, (np.ndarray, np.generic))
        assert np.shape(loss) == tuple(s for i, s in enumerate(shape)
                                       if i != ax)
    else:
        assert isinstance(loss, np.floating), type(loss)
    assert_close(loss, eloss, func=f"{func}[{reduction}] loss", dtype=row_dtype(rdt),
                 kind="reduce",
                 scale=loss_scale(n if reduction == "sum" else 1), ctx=ctx)
    if grad is None:
        return
    p = ref.softmax(logits, axis=ax)
    t = np.asarray(target)
    if t.dtype.kind in "iu":
        tt = np.zeros_like(p)
        np.put_along_axis(tt, np.expand_dims(t.astype(np.intp), ax), 1.0,
                          axis=ax)
    else:
        tt = t.astype(np.float64)
    scale = grad_scale(p, np.sum(tt, axis=ax, keepdims=True), tt)
    atol_factor = 1.0
    if reduction == "mean" and n:
        scale, atol_factor = scale / n, 1.0 / n
    assert_close(grad, egrad, func=f"{func}[{reduction}] grad", dtype=rdt,
                 kind="elem", scale=scale, atol_factor=atol_factor, ctx=ctx)


# ---------------------------------------------------------------------------
# label dtypes, soft targets, reductions
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_dtype", INT_DTYPES)
@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_integer_label_dtypes(dtype, label_dtype, reduction):
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal((37, 100)) * 3).astype(dtype)
    labels = rng.integers(0, 100, size=37).astype(label_dtype)
    labels[0], labels[1] = 0, 99                   # both ends of the range
    loss = csoftmax.cross_entropy(logits, labels, reduction=reduction)
    check_against_reference(logits, labels, reduction=reduction, loss=loss,
                            ctx=f"labels {label_dtype}")
    loss, grad = csoftmax.cross_entropy_with_grad(logits, labels,
                                                  reduction=reduction)
    assert grad.dtype == dtype and grad.shape == logits.shape
    check_against_reference(logits, labels, reduction=reduction, loss=loss,
                            grad=grad, ctx=f"labels {label_dtype}")
    # same labels as int64 give bit-identical results
    loss64, grad64 = csoftmax.cross_entropy_with_grad(
        logits, labels.astype(np.int64), reduction=reduction)
    np.testing.assert_array_equal(loss, loss64)
    np.testing.assert_array_equal(grad, grad64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype,target_dtype", [
    ("float32", "float32"), ("float64", "float64"), ("float32", "float64"),
    ("float64", "float32"), ("float16", "float16"), ("int64", "float64")])
def test_soft_targets(dtype, target_dtype, reduction):
    rng = np.random.default_rng(9)
    logits = (rng.standard_normal((25, 40)) * 3).astype(dtype)
    t = rng.uniform(0, 1, size=(25, 40))
    t[:5] = 0.0
    t[:5, 3] = 1.0                               # one-hot rows
    t[5:10] = rng.uniform(0, 1, size=(5, 40)) ** 8   # near-sparse rows
    t /= t.sum(axis=1, keepdims=True)
    t[10] *= 0.5                                 # total mass 0.5 (grad uses sum(t))
    t = t.astype(target_dtype)
    rdt = result_dtype(dtype)
    loss, grad = csoftmax.cross_entropy_with_grad(logits, t,
                                                  reduction=reduction)
    assert grad.dtype == rdt
    if reduction != "none":
        assert loss.dtype == row_dtype(rdt)      # the logits' dtype decides
    check_against_reference(logits, t, reduction=reduction, loss=loss,
                            grad=grad, ctx=f"soft {target_dtype}")
    loss2 = csoftmax.cross_entropy(logits, t, reduction=reduction)
    assert_consistent(loss2, loss, row_dtype(rdt), "cross_entropy vs _with_grad")


def test_soft_one_hot_equals_labels():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((20, 11))
    labels = rng.integers(0, 11, 20)
    onehot = np.eye(11)[labels]
    for reduction in REDUCTIONS:
        l1, g1 = csoftmax.cross_entropy_with_grad(logits, labels,
                                                  reduction=reduction)
        l2, g2 = csoftmax.cross_entropy_with_grad(logits, onehot,
                                                  reduction=reduction)
        np.testing.assert_allclose(l1, l2, rtol=1e-13)
        np.testing.assert_allclose(g1, g2, rtol=1e-13, atol=1e-16)


def test_reductions_are_consistent():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((64, 9)).astype(np.float32)
    labels = rng.integers(0, 9, 64)
    none, gnone = csoftmax.cross_entropy_with_grad(logits, labels,
                                                   reduction="none")
    total, gsum = csoftmax.cross_entropy_with_grad(logits, labels,
                                                   reduction="sum")
    mean, gmean = csoftmax.cross_entropy_with_grad(logits, labels,
                                                   reduction="mean")
    np.testing.assert_allclose(total, none.astype(np.float64).sum(),
                               rtol=1e-6)
    np.testing.assert_allclose(mean, total / 64, rtol=1e-6)
    np.testing.assert_array_equal(gnone, gsum)
    np.testing.assert_allclose(gmean, gsum / 64, rtol=1e-6, atol=1e-9)
    # the default reduction is "mean"
    assert_consistent(csoftmax.cross_entropy(logits, labels), mean,
                      np.float32, "default reduction")


# ---------------------------------------------------------------------------
# class axis
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("tkind", ("labels", "soft"))
def test_class_axis_1_of_4d(tkind, dtype, reduction):
    """(N, C, d1, d2) with axis=1, as torch's layout for segmentation."""
    rng = np.random.default_rng(12)
    shape = (3, 7, 4, 5)
    logits = (rng.standard_normal(shape) * 2).astype(dtype)
    if tkind == "labels":
        target = rng.integers(0, 7, size=(3, 4, 5)).astype(np.int16)
        moved_target = target
    else:
        t = rng.uniform(0, 1, shape)
        target = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
        moved_target = np.moveaxis(target, 1, -1)
    loss, grad = csoftmax.cross_entropy_with_grad(logits, target, axis=1,
                                                  reduction=reduction)
    assert grad.shape == shape
    check_against_reference(logits, target, axis=1, reduction=reduction,
                            loss=loss, grad=grad, ctx="axis=1")
    # same numbers as with the classes moved last (up to rounding)
    loss_m, grad_m = csoftmax.cross_entropy_with_grad(
        np.moveaxis(logits, 1, -1), moved_target, axis=-1,
        reduction=reduction)
    rtol = 1e-12 if dtype == "float64" else 2e-6
    np.testing.assert_allclose(loss, loss_m, rtol=rtol)
    np.testing.assert_allclose(grad, np.moveaxis(grad_m, -1, 1), rtol=rtol,
                               atol=1e-7 if dtype == "float32" else 1e-15)
    # negative axis spelling
    loss_n, grad_n = csoftmax.cross_entropy_with_grad(
        logits, target, axis=-3, reduction=reduction)
    np.testing.assert_array_equal(loss_n, loss)
    np.testing.assert_array_equal(grad_n, grad)


def test_unbatched_1d_logits():
    """1-D logits: one sample, 0-d label."""
    z = np.array([0.5, 2.0, -1.0, 0.0])
    for reduction in REDUCTIONS:
        loss, grad = csoftmax.cross_entropy_with_grad(
            z, np.array(1), reduction=reduction)
        check_against_reference(z, np.array(1), reduction=reduction,
                                loss=loss, grad=grad, ctx="1-d")


# ---------------------------------------------------------------------------
# out= and inplace=
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ("C", "F", "strided"))
@pytest.mark.parametrize("dtype", ("float32", "float64", "float16"))
def test_out_argument(dtype, layout):
    rng = np.random.default_rng(21)
    logits = (rng.standard_normal((13, 21)) * 2).astype(dtype)
    labels = rng.integers(0, 21, 13)
    out = with_layout(np.full((13, 21), np.nan, dtype=dtype), layout)
    before = logits.copy()
    loss, grad = csoftmax.cross_entropy_with_grad(logits, labels, out=out)
    assert grad is out
    np.testing.assert_array_equal(logits, before)
    check_against_reference(logits, labels, loss=loss, grad=out,
                            ctx=f"out {layout}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout", ("C", "F", "strided", "negstride"))
@pytest.mark.parametrize("dtype", ("float32", "float64", "float16"))
def test_inplace(dtype, layout, reduction):
    rng = np.random.default_rng(22)
    base = (rng.standard_normal((17, 33)) * 2).astype(dtype)
    logits = with_layout(base, layout)
    labels = rng.integers(0, 33, 17)
    before = logits.copy()
    loss, grad = csoftmax.cross_entropy_with_grad(
        logits, labels, reduction=reduction, inplace=True)
    assert grad is logits
    assert not np.array_equal(logits, before), "logits were not overwritten"
    check_against_reference(before, labels, reduction=reduction, loss=loss,
                            grad=logits, ctx=f"inplace {layout}")
    # the same as the out-of-place result (up to rounding: ``before`` is
    # C-contiguous, the logits may not be)
    loss2, grad2 = csoftmax.cross_entropy_with_grad(before, labels,
                                                    reduction=reduction)
    assert_consistent(loss, loss2, row_dtype(dtype), "loss")
    assert_consistent(grad, grad2, dtype, "grad")


def test_inplace_axis1_soft_targets():
    rng = np.random.default_rng(23)
    logits = rng.standard_normal((2, 5, 3, 4))
    t = rng.uniform(0, 1, logits.shape)
    t /= t.sum(axis=1, keepdims=True)
    before = logits.copy()
    loss, grad = csoftmax.cross_entropy_with_grad(logits, t, axis=1,
                                                  inplace=True)
    assert grad is logits
    check_against_reference(before, t, axis=1, loss=loss, grad=grad,
                            ctx="inplace axis=1 soft")


# ---------------------------------------------------------------------------
# non-contiguous logits
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ("F", "strided", "negstride", "broadcast",
                                    "readonly"))
@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_non_contiguous_logits(dtype, layout):
    rng = np.random.default_rng(31)
    logits = with_layout((rng.standard_normal((19, 70)) * 3).astype(dtype),
                         layout)
    labels = rng.integers(0, 70, 19)
    for reduction in REDUCTIONS:
        loss, grad = csoftmax.cross_entropy_with_grad(logits, labels,
                                                      reduction=reduction)
        check_against_reference(logits, labels, reduction=reduction,
                                loss=loss, grad=grad, ctx=layout)
    # transposed: classes on axis 0
    lt = logits.T
    loss, grad = csoftmax.cross_entropy_with_grad(lt, labels, axis=0)
    check_against_reference(lt, labels, axis=0, loss=loss, grad=grad,
                            ctx=layout + " transposed")


# ---------------------------------------------------------------------------
# gradient by finite differences (independent of the reference)
# ---------------------------------------------------------------------------

def _numeric_grad(f, z, h=1e-5):
    g = np.zeros_like(z)
    it = np.nditer(z, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        zp, zm = z.copy(), z.copy()
        zp[i] += h
        zm[i] -= h
        g[i] = (f(zp) - f(zm)) / (2 * h)
    return g


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["labels_2d", "soft_2d", "labels_axis1",
                                  "soft_axis0", "labels_1d"])
def test_gradient_finite_differences(case, reduction):
    rng = np.random.default_rng(41)
    if case == "labels_2d":
        z, axis = rng.standard_normal((4, 6)) * 2, -1
        target = rng.integers(0, 6, 4)
    elif case == "soft_2d":
        z, axis = rng.standard_normal((3, 5)) * 2, -1
        target = rng.uniform(0, 1, (3, 5))
        target /= target.sum(axis=1, keepdims=True)
        target[1] *= 0.3
    elif case == "labels_axis1":
        z, axis = rng.standard_normal((2, 4, 3)), 1
        target = rng.integers(0, 4, (2, 3)).astype(np.uint8)
    elif case == "soft_axis0":
        z, axis = rng.standard_normal((5, 3)), 0
        target = rng.uniform(0, 1, (5, 3))
        target /= target.sum(axis=0, keepdims=True)
    else:
        z, axis = rng.standard_normal(7), -1
        target = np.array(3)

    def total(zz):
        loss = csoftmax.cross_entropy(zz, target, axis=axis,
                                      reduction=reduction)
        return float(np.sum(loss))            # "none": grad of the sum

    _, grad = csoftmax.cross_entropy_with_grad(z, target, axis=axis,
                                               reduction=reduction)
    num = _numeric_grad(total, z)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------
# float32 accuracy
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape,offset", [
    ((4, 100_000), 0.0), ((3, 100_000), 1000.0), ((64, 1000), 0.0),
    ((64, 1000), -500.0), ((1000, 10), 0.0), ((257, 33), 100.0)])
def test_float32_loss_accuracy(shape, offset):
    """Per-sample and reduced float32 losses within 1e-6 relative of the
    float64 reference, also for logits far from 0 (an implementation that
    computes lse in float32 and then subtracts z[label] loses digits)."""
    rng = np.random.default_rng(shape[1])
    logits = (rng.standard_normal(shape) * 3 + offset).astype(np.float32)
    labels = rng.integers(0, shape[1], shape[0])
    eloss = ref.cross_entropy(logits, labels, reduction="none")
    # a loss close to 0 can only be known to ~eps absolutely (log(s), s ~ 1),
    # so the 1e-6 *relative* requirement applies to losses >= 0.5
    big = eloss >= 0.5
    assert np.mean(big) > 0.5
    for reduction in REDUCTIONS:
        loss, grad = csoftmax.cross_entropy_with_grad(logits, labels,
                                                      reduction=reduction)
        exp = ref.cross_entropy(logits, labels, reduction=reduction)
        if reduction == "none":
            loss_c, exp_c = loss[big], exp[big]
        else:
            loss_c, exp_c = loss, exp
        rel = np.abs(np.asarray(loss_c, np.float64) - exp_c) / np.abs(exp_c)
        assert np.max(rel) <= 1e-6, (reduction, np.max(rel))
        check_against_reference(logits, labels, reduction=reduction,
                                loss=loss, grad=grad,
                                ctx=f"float32 {shape} offset {offset}")


def test_confident_predictions_small_loss():
    """Tiny losses (confident, correct predictions) are not rounded to
    garbage: the absolute error stays at the eps level."""
    z = np.array([[20.0, 0.0, -3.0], [0.0, -40.0, -50.0]])
    labels = np.array([0, 0])
    for dtype, tol in (("float64", 1e-15), ("float32", 1e-7)):
        loss = csoftmax.cross_entropy(z.astype(dtype), labels,
                                      reduction="none")
        exp = ref.cross_entropy(z, labels, reduction="none")
        assert np.all(loss >= 0)
        np.testing.assert_allclose(loss, exp, rtol=0, atol=tol)

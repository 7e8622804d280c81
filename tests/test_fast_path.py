"""The small-call fast paths (logsumexp over the last axis of a 2-D array;
cross-entropy of 2-D logits with 1-D int64 labels and default options) give
exactly the bits of the general front end, take the general path for
everything they do not handle, and keep every error message.

The general path is forced with arguments that mean the same but are not
the fast path's exact types: ``axis=(1,)`` for logsumexp and
``ignore_index=np.int64(-100)`` for the cross-entropy.  Both results are also
checked against the float64 reference elsewhere (test_cross_entropy.py,
test_lengths.py); here the point is that the two paths agree bit for bit."""

import numpy as np
import pytest

import csoftmax
from csoftmax import _core

FLOATS = (np.float32, np.float64)
SHAPES = [(1, 1), (1, 10), (4, 10), (3, 7), (33, 5), (64, 1000), (65, 129), (2, 70001)]


def _problem(shape, dtype, seed, ignored=()):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    lab = rng.integers(0, shape[1], shape[0])
    for i in ignored:
        if i < shape[0]:
            lab[i] = -100
    return z, lab


def _try(z, lab, out=None, reduction="mean", want_grad=True, **kw):
    """_core.xent_try with the public defaults, overridden by kw."""
    a = dict(axis=-1, weight=None, sample_weight=None, ignore_index=-100,
             label_smoothing=0.0, z_loss=0.0, softcap=None, return_lse=False,
             grad_scale=1.0, inplace=False)
    a.update(kw)
    return _core.xent_try(z, lab, a["axis"], a["weight"], a["sample_weight"],
                          a["ignore_index"], reduction, a["label_smoothing"], a["z_loss"],
                          a["softcap"], a["return_lse"], a["grad_scale"], out, a["inplace"],
                          want_grad)


def _same(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), f"{what}: fast and general paths differ"


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_logsumexp_fast_equals_general(shape, dtype):
    z, _ = _problem(shape, dtype, 1)
    assert _core.logsumexp_fast(z) is not None            # the fast path applies
    for zz in (z, z[:, ::-1], np.asfortranarray(z), z[::-1]):
        _same(csoftmax.logsumexp(zz, axis=-1), csoftmax.logsumexp(zz, axis=(1,)), "lse")
        _same(csoftmax.logsumexp(zz, axis=1), csoftmax.logsumexp(zz, axis=(1,)), "lse")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_xent_fast_equals_general(shape, dtype, reduction):
    z, lab = _problem(shape, dtype, 2, ignored=(1, 5))
    gen = dict(ignore_index=np.int64(-100), reduction=reduction)
    assert _try(z, lab, reduction=reduction) is not None      # the fast path applies
    for gs in (1.0, 0.25, -3, 0.0):
        l1, g1 = csoftmax.cross_entropy_with_grad(z, lab, reduction=reduction, grad_scale=gs)
        l2, g2 = csoftmax.cross_entropy_with_grad(z, lab, grad_scale=gs, **gen)
        _same(l1, l2, "loss")
        _same(g1, g2, "grad")
        assert type(l1) is type(l2)
    l2, g2 = csoftmax.cross_entropy_with_grad(z, lab, **gen)
    out = np.full_like(z, np.nan)
    l3, g3 = csoftmax.cross_entropy_with_grad(z, lab, reduction=reduction, out=out)
    assert g3 is out
    _same(l3, l2, "loss (out=)")
    _same(out, g2, "grad (out=)")
    _same(csoftmax.cross_entropy(z, lab, reduction=reduction),
          csoftmax.cross_entropy(z, lab, **gen), "forward-only loss")
    # strided / transposed logits and out= (compared with the general path on
    # the same layout: for C <= 32 a contiguous layout takes the rows-per-lane
    # kernel, whose last bit may differ from the strided one)
    zt = np.asfortranarray(z)
    ot = np.asfortranarray(np.empty_like(z))
    l4, _ = csoftmax.cross_entropy_with_grad(zt, lab, reduction=reduction, out=ot)
    l5, g5 = csoftmax.cross_entropy_with_grad(zt, lab, **gen)
    _same(l4, l5, "loss (Fortran order)")
    _same(ot, g5, "grad (Fortran order)")


@pytest.mark.parametrize("dtype", FLOATS)
def test_xent_fast_all_ignored(dtype):
    z, lab = _problem((4, 10), dtype, 3)
    lab[:] = -100
    loss, grad = csoftmax.cross_entropy_with_grad(z, lab)
    assert np.isnan(loss) and loss.dtype == dtype           # PyTorch: NaN mean
    assert np.all(grad == 0)
    loss_s, _ = csoftmax.cross_entropy_with_grad(z, lab, reduction="sum")
    assert loss_s == 0


def test_xent_fast_bad_label_keeps_message_and_buffers():
    z, lab = _problem((4, 10), np.float64, 4)
    lab[2] = 10
    out = np.full_like(z, 7.0)
    with pytest.raises(ValueError, match=r"target label 10 at index \(2,\)"):
        csoftmax.cross_entropy_with_grad(z, lab, out=out)
    assert np.all(out == 7.0)
    with pytest.raises(ValueError, match=r"target label 10 at index \(2,\)"):
        csoftmax.cross_entropy(z, lab)


def test_xent_fast_out_errors_are_the_general_ones():
    z, lab = _problem((4, 10), np.float32, 5)
    ro = np.zeros_like(z)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        csoftmax.cross_entropy_with_grad(z, lab, out=ro)
    with pytest.raises((ValueError, TypeError), match="dtype"):
        csoftmax.cross_entropy_with_grad(z, lab, out=np.zeros(z.shape, np.float64))
    with pytest.raises(ValueError, match="shape"):
        csoftmax.cross_entropy_with_grad(z, lab, out=np.zeros((4, 11), np.float32))


@pytest.mark.parametrize("dtype", FLOATS)
def test_xent_fast_overlaps(dtype):
    """out= exactly the logits (in place), partially overlapping the logits,
    and labels living in out=: all as if there were no overlap."""
    z, lab = _problem((6, 16), dtype, 6)
    want_l, want_g = csoftmax.cross_entropy_with_grad(z, lab, ignore_index=np.int64(-100))
    zz = z.copy()
    l1, g1 = csoftmax.cross_entropy_with_grad(zz, lab, out=zz)
    _same(l1, want_l, "loss (out is logits)")
    _same(zz, want_g, "grad (out is logits)")
    buf = np.zeros((7, 16), dtype)
    buf[1:] = z
    l2, g2 = csoftmax.cross_entropy_with_grad(buf[1:], lab, out=buf[:6])
    _same(l2, want_l, "loss (partial overlap)")
    _same(buf[:6], want_g, "grad (partial overlap)")
    if dtype == np.float64:
        out = np.zeros_like(z)
        lab_in = out.view(np.int64)[::-1, -1]
        lab_in[:] = lab[::-1]
        l3, _ = csoftmax.cross_entropy_with_grad(z, lab_in[::-1], out=out)
        _same(l3, want_l, "loss (labels inside out=)")
        _same(out, want_g, "grad (labels inside out=)")


def test_fast_path_declines_what_it_does_not_handle():
    z, lab = _problem((4, 10), np.float32, 7)
    assert _try(z, lab) is not None
    assert _try(z, lab.astype(np.int32)) is None
    assert _try(z, lab.astype(">i8")) is None
    assert _try(z, lab[:3]) is None
    assert _try(z, lab, out=np.zeros((4, 10), np.float64)) is None
    assert _try(z, lab, reduction="none") is None
    assert _try(z, lab, label_smoothing=0.1) is None
    assert _try(z, lab, ignore_index=np.int64(-100)) is None
    assert _try(z, lab, ignore_index=-1) is None
    assert _try(z, lab, grad_scale=float("nan")) is None
    assert _try(z, lab, grad_scale=np.float64(1.0)) is None
    assert _try(z, lab, axis=0) is None
    assert _try(z.reshape(2, 2, 10), lab.reshape(2, 2)) is None
    assert _try(z[:, :0], lab) is None
    ro = np.zeros_like(z)
    ro.flags.writeable = False
    assert _try(z, lab, out=ro) is None
    assert _core.logsumexp_fast(z.astype(">f4")) is None
    assert _core.logsumexp_fast(z.astype(np.float16)) is None
    assert _core.logsumexp_fast(np.zeros((0, 3), np.float32)) is None
    mis = np.frombuffer(b"\0" + z.tobytes(), dtype=np.float32, offset=1).reshape(4, 10)
    assert not mis.flags.aligned
    assert _core.logsumexp_fast(mis) is None
    # and the public functions still answer those cases correctly
    np.testing.assert_array_equal(csoftmax.logsumexp(mis, axis=-1),
                                  csoftmax.logsumexp(z, axis=-1))
    _same(csoftmax.cross_entropy(z, lab.astype(np.int32)), csoftmax.cross_entropy(z, lab),
          "int32 labels")


def test_pairwise_sum_order_and_accuracy():
    rng = np.random.default_rng(8)
    for n in (0, 1, 31, 32, 33, 1000, 4097):
        a = rng.standard_normal(n)
        s = _core.sum_f64(a)
        exact = float(np.sum(a.astype(np.longdouble))) if n else 0.0
        assert abs(s - exact) <= 1e-14 * max(1.0, float(np.sum(np.abs(a))))

"""csoftmax.torch: the binary cross-entropy and distillation KL adapters.

* binary_cross_entropy_with_logits against F.binary_cross_entropy_with_logits
  for every weight / pos_weight combination (none, full, broadcast), every
  reduction, hard and soft targets, 1- to 3-d input, float32 and float64, with
  gradients through autograd and non-trivial upstream gradients;
* kl_div against F.kl_div(F.log_softmax(s / T, dim), p) * T**2 at several
  temperatures, for the three teacher kinds, every reduction, masks, class dims
  in the middle and non-contiguous input;
* gradcheck (float64), no copies (the kernels see the tensors' own memory,
  the gradient becomes .grad without a copy), inplace=True for the BCE, the
  module forms, errors.

References are computed in float64 from the same values; the float32 results
are held to float32 tolerances.
"""
import itertools
import tracemalloc
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import csoftmax.torch as cst  # noqa: E402  (after the importorskip)


def _close(got, ref, dtype, scale=1.0):
    """got (dtype) against a reference computed in float64 from the same inputs."""
    ref = ref.to(got.dtype)
    if dtype == torch.float64:
        torch.testing.assert_close(got, ref, rtol=1e-11, atol=1e-13 * scale)
    else:
        torch.testing.assert_close(got, ref, rtol=2e-5, atol=2e-6 * scale)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randn(shape, dtype=torch.float64, seed=0, std=2.0):
    return (std * torch.randn(shape, generator=_gen(seed), dtype=torch.float64)).to(dtype)


def _rand(shape, dtype=torch.float64, seed=0):
    return torch.rand(shape, generator=_gen(seed), dtype=torch.float64).to(dtype)


def _grads(fn, x, upstream=None):
    """(loss, d loss / d x) of fn(x) through autograd (x cloned as a leaf)."""
    xi = x.detach().clone().requires_grad_(True)
    loss = fn(xi)
    if upstream is None:
        loss.backward()
    else:
        loss.backward(upstream)
    return loss.detach(), xi.grad


# =========================================================================== BCE

BCE_SHAPES = [(7,), (6, 5), (2, 3, 4)]


def _bce_target(shape, dtype, soft=True, seed=1):
    """Targets in [0, 1] with exact 0s and 1s among the soft values."""
    t = _rand(shape, seed=seed)
    if not soft:
        return (t > 0.5).to(dtype)
    flat = t.view(-1)
    flat[::5] = 0.0
    flat[1::7] = 1.0
    return t.to(dtype)


def _weight(kind, shape, dtype):
    if kind is None:
        return None
    if kind == "full":
        w = _rand(shape, seed=3) + 0.25
    elif kind == "last":                       # broadcast along the leading dims
        w = _rand(shape[-1:], seed=3) + 0.25
    elif kind == "lead":                       # broadcast along the last dim
        w = _rand(shape[:-1] + (1,), seed=3) + 0.25
    else:                                      # a 0-d weight
        w = torch.tensor(1.7, dtype=torch.float64)
    if w.numel() > 1:
        w.view(-1)[0] = 0.0                    # a zero weight too
    return w.to(dtype)


def _pos_weight(kind, shape, dtype):
    if kind is None:
        return None
    if kind == "C":
        pw = _rand(shape[-1:], seed=4) * 3.0
    else:                                      # one value for every class
        pw = torch.tensor([2.5], dtype=torch.float64)
    return pw.to(dtype)


def _bce_pair(x, t, upstream=None, **kw):
    """((ref loss, ref grad) in float64 from PyTorch, (loss, grad) from csoftmax)."""
    up64 = None if upstream is None else upstream.double()
    kw64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    ref = _grads(lambda z: F.binary_cross_entropy_with_logits(z, t.double(), **kw64),
                 x.double(), up64)
    got = _grads(lambda z: cst.binary_cross_entropy_with_logits(z, t, **kw), x, upstream)
    return ref, got


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", BCE_SHAPES, ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("weight", [None, "full", "last", "lead", "scalar"])
@pytest.mark.parametrize("pos_weight", [None, "C", "one"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_matches_torch(dtype, shape, weight, pos_weight, reduction):
    if weight == "lead" and len(shape) == 1:
        weight = "full"
    x = _randn(shape, dtype)
    t = _bce_target(shape, dtype)
    kw = dict(weight=_weight(weight, shape, dtype),
              pos_weight=_pos_weight(pos_weight, shape, dtype), reduction=reduction)
    up = _randn(shape, dtype, seed=9, std=1.0) if reduction == "none" else None
    (rl, rg), (gl, gg) = _bce_pair(x, t, up, **kw)
    assert gl.dtype == dtype and gg.dtype == dtype
    assert gl.shape == rl.shape and gg.shape == x.shape
    _close(gl, rl, dtype)
    _close(gg, rg, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_bce_hard_targets_and_extreme_logits(dtype):
    x = _randn((8, 6), dtype, std=1.0)
    x[0] = torch.tensor([1e4, -1e4, 80.0, -80.0, 30.0, -30.0], dtype=dtype)
    t = _bce_target((8, 6), dtype, soft=False)
    t[0] = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.5, 0.5], dtype=dtype)
    for reduction in ("mean", "sum", "none"):
        up = _randn((8, 6), dtype, seed=5) if reduction == "none" else None
        (rl, rg), (gl, gg) = _bce_pair(x, t, up, reduction=reduction,
                                       pos_weight=_pos_weight("C", (8, 6), dtype))
        _close(gl, rl, dtype, scale=1e4)
        _close(gg, rg, dtype)


@pytest.mark.parametrize("scale", [1.0, 3.5, 0.0, -2.0])
def test_bce_upstream_scalar_gradient(scale):
    x = _randn((6, 5))
    t = _bce_target((6, 5), torch.float64)
    w = _weight("last", (6, 5), torch.float64)
    for reduction in ("mean", "sum"):
        grads = []
        for fn in (F.binary_cross_entropy_with_logits, cst.binary_cross_entropy_with_logits):
            xi = x.clone().requires_grad_(True)
            (scale * fn(xi, t, w, reduction=reduction)).backward()
            grads.append(xi.grad)
        _close(grads[1], grads[0], torch.float64)


def test_bce_none_upstream_broadcast_and_ones():
    x = _randn((4, 3))
    t = _bce_target((4, 3), torch.float64)
    for post in (lambda l: l.sum(), lambda l: (l * torch.arange(3.0, dtype=l.dtype)).sum(),
                 lambda l: l.mean(dim=0).sum(), lambda l: l[1:].sum()):
        grads = []
        for fn in (F.binary_cross_entropy_with_logits, cst.binary_cross_entropy_with_logits):
            xi = x.clone().requires_grad_(True)
            post(fn(xi, t, reduction="none")).backward()
            grads.append(xi.grad)
        _close(grads[1], grads[0], torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_bce_noncontiguous(dtype):
    base = _randn((5, 8), dtype)
    x = base.t()                                    # (8, 5), not contiguous
    tb = _bce_target((5, 8), dtype)
    t = tb.t()
    w = _weight("full", (5, 8), dtype).t()
    assert not x.is_contiguous() and not t.is_contiguous()
    for reduction in ("mean", "none"):
        up = _randn((8, 5), dtype, seed=7).t().contiguous().t() if reduction == "none" else None
        (rl, rg), (gl, gg) = _bce_pair(x, t, up, weight=w, reduction=reduction,
                                       pos_weight=_pos_weight("C", (8, 5), dtype))
        _close(gl, rl, dtype)
        _close(gg, rg, dtype)
    # a strided slice of a non-leaf: the gradient reaches the base through the view
    b = _randn((6, 10), dtype).requires_grad_(True)
    tt = _bce_target((3, 5), dtype)
    cst.binary_cross_entropy_with_logits(b[::2, ::2], tt, reduction="sum").backward()
    br = b.detach().double().requires_grad_(True)
    F.binary_cross_entropy_with_logits(br[::2, ::2], tt.double(), reduction="sum").backward()
    _close(b.grad, br.grad, dtype)
    assert b.grad[1::2].abs().sum() == 0


def test_bce_gradient_layout_follows_input():
    x = _randn((4, 6)).t().requires_grad_(True)       # a non-contiguous leaf
    cst.binary_cross_entropy_with_logits(x, _bce_target((6, 4), torch.float64)).backward()
    assert x.grad.stride() == x.stride()


def test_bce_integer_and_bfloat16_targets_are_converted():
    x = _randn((5, 4), torch.float32)
    hard = (_rand((5, 4), seed=2) > 0.5)
    ref = F.binary_cross_entropy_with_logits(x, hard.float())
    _close(cst.binary_cross_entropy_with_logits(x, hard.to(torch.int64)), ref, torch.float32)
    _close(cst.binary_cross_entropy_with_logits(x, hard), ref, torch.float32)
    soft = _bce_target((5, 4), torch.bfloat16)
    _close(cst.binary_cross_entropy_with_logits(x, soft),
           F.binary_cross_entropy_with_logits(x, soft.float()), torch.float32)
    # float64 targets with float32 logits: read as they are, float32 result
    t64 = _bce_target((5, 4), torch.float64)
    got = cst.binary_cross_entropy_with_logits(x, t64)
    assert got.dtype == torch.float32
    _close(got, F.binary_cross_entropy_with_logits(x.double(), t64), torch.float32)


def test_bce_empty_mean_is_nan_like_torch():
    x = torch.empty(0, 3, dtype=torch.float64, requires_grad=True)
    t = torch.empty(0, 3, dtype=torch.float64)
    loss = cst.binary_cross_entropy_with_logits(x, t)
    assert torch.isnan(loss) and torch.isnan(F.binary_cross_entropy_with_logits(x, t))
    loss.backward()
    assert x.grad.shape == (0, 3)


BCE_GRADCHECK = {
    "plain": dict(),
    "sum": dict(reduction="sum"),
    "none": dict(reduction="none"),
    "weight": dict(weight="full"),
    "weight-bcast": dict(weight="last", reduction="sum"),
    "pos_weight": dict(pos_weight="C"),
    "both-none": dict(weight="lead", pos_weight="C", reduction="none"),
    "hard": dict(soft=False, pos_weight="one"),
    "1d": dict(shape=(6,), weight="full"),
    "3d": dict(shape=(2, 3, 4), pos_weight="C", reduction="none"),
    "noncontig": dict(transpose=True, weight="full"),
    "inplace": dict(inplace=True, pos_weight="C"),
    "inplace-none": dict(inplace=True, reduction="none"),
}


@pytest.mark.parametrize("name", list(BCE_GRADCHECK))
def test_bce_gradcheck(name):
    o = dict(BCE_GRADCHECK[name])
    shape = o.pop("shape", (4, 5))
    dt = torch.float64
    t = _bce_target(shape, dt, soft=o.pop("soft", True))
    w = _weight(o.pop("weight", None), shape, dt)
    pw = _pos_weight(o.pop("pos_weight", None), shape, dt)
    inplace = o.pop("inplace", False)
    x = _randn(shape)
    if o.pop("transpose", False):
        x = _randn(shape[::-1]).t()
    x.requires_grad_(True)

    def fn(z):
        if inplace:
            z = z * 1.0                   # an intermediate: the one inplace may overwrite
        return cst.binary_cross_entropy_with_logits(z, t, w, pos_weight=pw, inplace=inplace,
                                                    **o)

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-8, rtol=1e-6)
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-8, rtol=1e-6,
                                    fast_mode=True)


def test_bce_double_backward_is_refused():
    x = _randn((3, 4)).requires_grad_(True)
    loss = cst.binary_cross_entropy_with_logits(x, _bce_target((3, 4), torch.float64))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, x, create_graph=True)


def test_bce_retain_graph_backward_twice_accumulates():
    x = _randn((4, 6)).requires_grad_(True)
    loss = cst.binary_cross_entropy_with_logits(x, _bce_target((4, 6), torch.float64))
    loss.backward(retain_graph=True)
    g1 = x.grad.clone()
    loss.backward()
    _close(x.grad, 2 * g1, torch.float64)


def test_bce_no_grad_paths_compute_loss_only():
    x = _randn((5, 7))
    t = _bce_target((5, 7), torch.float64)
    ref = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    out = cst.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert not out.requires_grad and out.grad_fn is None
    _close(out, ref, torch.float64)
    xg = x.clone().requires_grad_(True)
    z = xg * 1.0
    with torch.no_grad():
        out2 = cst.binary_cross_entropy_with_logits(z, t, inplace=True)
    assert out2.grad_fn is None
    torch.testing.assert_close(z.detach(), x, rtol=0, atol=0)      # nothing written
    _close(out2, ref.mean(), torch.float64)


# ------------------------------------------------------------------- BCE inplace=True

def test_bce_inplace_on_linear_output_writes_gradient():
    gen = _gen(4)
    h = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    lin = torch.nn.Linear(6, 5).double()
    t = _bce_target((8, 5), torch.float64)
    pw = _pos_weight("C", (8, 5), torch.float64)
    z = lin(h)
    ptr = z.data_ptr()
    ref_z = z.detach().clone().requires_grad_(True)
    ref_loss = F.binary_cross_entropy_with_logits(ref_z, t, pos_weight=pw)
    ref_loss.backward()
    v0 = z._version
    loss = cst.binary_cross_entropy_with_logits(z, t, pos_weight=pw, inplace=True)
    assert z._version > v0 and z.data_ptr() == ptr
    _close(z.detach(), ref_z.grad, torch.float64)      # z now holds d loss / d z
    _close(loss.detach(), ref_loss.detach(), torch.float64)
    loss.backward()
    lin2 = torch.nn.Linear(6, 5).double()
    lin2.load_state_dict(lin.state_dict())
    F.binary_cross_entropy_with_logits(lin2(h), t, pos_weight=pw).backward()
    _close(lin.weight.grad, lin2.weight.grad, torch.float64)
    _close(lin.bias.grad, lin2.bias.grad, torch.float64)


def test_bce_inplace_refusals():
    x = _randn((4, 5)).requires_grad_(True)
    t = _bce_target((4, 5), torch.float64)
    before = x.detach().clone()
    with pytest.raises(RuntimeError, match="leaf"):
        cst.binary_cross_entropy_with_logits(x, t, inplace=True)
    with pytest.raises(RuntimeError, match="leaf"):
        cst.binary_cross_entropy_with_logits(x[:, :], t, inplace=True)
    z = torch.sigmoid(x)                        # SigmoidBackward saved its output
    with pytest.raises(RuntimeError, match="saved"):
        cst.binary_cross_entropy_with_logits(z, t, inplace=True)
    torch.testing.assert_close(x.detach(), before, rtol=0, atol=0)


# ------------------------------------------------------------------- BCE zero copy

@pytest.mark.parametrize("inplace", [False, True])
def test_bce_kernel_sees_the_tensor_memory(monkeypatch, inplace):
    seen = []
    real = cst._np_bce_with_grad

    def spy(logits, target, **kw):
        seen.append((logits.__array_interface__["data"][0],
                     target.__array_interface__["data"][0],
                     kw["weight"].__array_interface__["data"][0]))
        return real(logits, target, **kw)

    monkeypatch.setattr(cst, "_np_bce_with_grad", spy)
    x = _randn((3, 8, 5)).requires_grad_(True)
    z = x * 2.0 if inplace else x
    t = _bce_target((3, 8, 5), torch.float64)[:, ::2]          # strided views
    w = _weight("full", (3, 8, 5), torch.float64)[:, ::2]
    z = z[:, ::2]
    loss = cst.binary_cross_entropy_with_logits(z, t, w, inplace=inplace)
    assert seen == [(z.data_ptr(), t.data_ptr(), w.data_ptr())]
    loss.backward()


def test_bce_gradient_is_handed_over_without_copy():
    x = _randn((64, 100)).requires_grad_(True)
    loss = cst.binary_cross_entropy_with_logits(x, _bce_target((64, 100), torch.float64))
    ptrs = []
    loss.grad_fn.register_hook(lambda grad_in, grad_out: ptrs.append(grad_in[0].data_ptr()))
    loss.backward()
    assert x.grad.data_ptr() == ptrs[0]


# ------------------------------------------------------------------- BCE errors and module

def test_bce_errors():
    x = _randn((4, 5)).requires_grad_(True)
    t = _bce_target((4, 5), torch.float64)
    fn = cst.binary_cross_entropy_with_logits
    with pytest.raises(TypeError, match="float32 or float64"):
        fn(x.detach().half(), t)
    with pytest.raises(TypeError, match="float32 or float64"):
        fn(torch.ones(4, 5, dtype=torch.int64), t)
    with pytest.raises(TypeError):
        fn(x.detach().numpy(), t)
    with pytest.raises(RuntimeError, match="target"):
        fn(x, t.clone().requires_grad_(True))
    with pytest.raises(RuntimeError, match="weight"):
        fn(x, t, torch.ones(5, dtype=torch.float64, requires_grad=True))
    with pytest.raises(RuntimeError, match="pos_weight"):
        fn(x, t, pos_weight=torch.ones(5, dtype=torch.float64, requires_grad=True))
    with pytest.raises(ValueError, match="same as input size"):
        fn(x, t[:2])
    with pytest.raises(ValueError, match="reduction"):
        fn(x, t, reduction="batchmean")
    with pytest.raises(ValueError):
        fn(x, t + 0.5)                                     # targets outside [0, 1]
    with pytest.raises(ValueError):
        fn(x, t, -torch.ones(5, dtype=torch.float64))      # negative weight
    with pytest.raises(ValueError):
        fn(x, t, pos_weight=torch.ones(4, 5, dtype=torch.float64))   # 2-d pos_weight
    with pytest.raises(ValueError, match="BCEWithLogitsLoss"):
        cst.BCEWithLogitsLoss(reduction="avg")
    assert x.grad is None


def test_bce_module():
    w = _weight("last", (6, 3), torch.float64)
    pw = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    m = cst.BCEWithLogitsLoss(w, pos_weight=pw, reduction="sum")
    assert set(m.state_dict()) == {"weight", "pos_weight"}
    assert "reduction='sum'" in repr(m)
    m32 = cst.BCEWithLogitsLoss(w, pos_weight=pw).float()      # the buffers follow .float()
    assert m32.weight.dtype == torch.float32 and m32.pos_weight.dtype == torch.float32
    x = _randn((6, 3))
    t = _bce_target((6, 3), torch.float64)
    ref = torch.nn.BCEWithLogitsLoss(w, pos_weight=pw, reduction="sum")
    (rl, rg), (gl, gg) = (_grads(lambda z: ref(z, t), x), _grads(lambda z: m(z, t), x))
    _close(gl, rl, torch.float64)
    _close(gg, rg, torch.float64)
    _close(cst.BCEWithLogitsLoss()(x, t), F.binary_cross_entropy_with_logits(x, t),
           torch.float64)


def _train_multilabel(loss_fn, steps=15, seed=3):
    gen = _gen(seed)
    n, d, c = 64, 5, 4
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = (x @ torch.randn(d, c, generator=gen, dtype=torch.float64) > 0).double()
    model = torch.nn.Linear(d, c).double()
    with torch.no_grad():
        model.weight.copy_(0.1 * torch.randn(c, d, generator=gen, dtype=torch.float64))
        model.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.5)
    curve = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        curve.append(loss.item())
    return curve


@pytest.mark.parametrize("inplace", [False, True])
def test_bce_training_loop_matches_torch(inplace):
    pw = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    ref = _train_multilabel(torch.nn.BCEWithLogitsLoss(pos_weight=pw))
    got = _train_multilabel(cst.BCEWithLogitsLoss(pos_weight=pw, inplace=inplace))
    assert ref[-1] < 0.7 * ref[0]                                # it does learn
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)


# =========================================================================== KL

def _teacher(kind, shape, dim, dtype, seed=11, zeros=False):
    """A teacher of the given kind; `zeros`: probabilities with exact zeros."""
    raw = _randn(shape, seed=seed)
    if kind == "logits":
        t = raw
    elif kind == "log_probs":
        t = F.log_softmax(raw, dim=dim)
    else:
        t = F.softmax(raw, dim=dim)
        if zeros:
            t = torch.where(t < 0.5 / shape[dim], torch.zeros_like(t), t)
            t = t / t.sum(dim, keepdim=True)
    return t.to(dtype)


def _kl_ref(s, teacher, T, kind, reduction, mask=None, dim=-1):
    """The documented loss in float64 PyTorch ops: F.kl_div(F.log_softmax(s / T), p) * T**2."""
    s, teacher = s.double(), teacher.double()
    logq = F.log_softmax(s / T, dim=dim)
    if kind == "logits":
        per = F.kl_div(logq, F.softmax(teacher / T, dim=dim), reduction="none")
    elif kind == "log_probs":
        per = F.kl_div(logq, teacher, reduction="none", log_target=True)
    else:
        per = F.kl_div(logq, teacher, reduction="none")
    rows = per.sum(dim) * T ** 2
    n = rows.numel()
    if mask is not None:
        rows = torch.where(mask, rows, torch.zeros_like(rows))
        n = int(mask.sum())
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    c = s.shape[dim]
    return rows.sum() / (n if reduction == "batchmean" else n * c)


def _kl_pair(s, teacher, upstream=None, **kw):
    T = kw.get("temperature", 1.0)
    kind = kw.get("teacher_kind", "logits")
    reduction = kw.get("reduction", "batchmean")
    dim = kw.get("dim", -1)
    mask = kw.get("mask")
    up64 = None if upstream is None else upstream.double()
    ref = _grads(lambda z: _kl_ref(z, teacher, T, kind, reduction, mask, dim), s.double(),
                 up64)
    got = _grads(lambda z: cst.kl_div(z, teacher, **kw), s, upstream)
    return ref, got


TEMPERATURES = [1.0, 0.5, 2.0, 4.0]
KINDS = ["logits", "log_probs", "probs"]
KL_REDUCTIONS = ["batchmean", "sum", "mean", "none"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("T", TEMPERATURES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
def test_kl_matches_torch_2d(dtype, T, kind, reduction):
    """On (N, C): exactly PyTorch's reductions of F.kl_div, times T**2."""
    s = _randn((6, 9), dtype)
    t = _teacher(kind, (6, 9), -1, dtype, zeros=True)
    up = _randn((6,), dtype, seed=9, std=1.0) if reduction == "none" else None
    (rl, rg), (gl, gg) = _kl_pair(s, t, up, temperature=T, teacher_kind=kind,
                                  reduction=reduction)
    assert gl.dtype == dtype and gg.dtype == dtype and gl.shape == rl.shape
    _close(gl, rl, dtype, scale=T ** 2)
    _close(gg, rg, dtype, scale=T)
    if reduction != "none":
        # and the F.kl_div reduction itself (2-d: "batchmean" divides by N)
        s64, t64 = s.double(), t.double()
        logq = F.log_softmax(s64 / T, dim=1)
        p = {"logits": lambda: F.softmax(t64 / T, dim=1), "log_probs": lambda: t64.exp(),
             "probs": lambda: t64}[kind]()
        with warnings.catch_warnings():     # PyTorch's note on "mean" vs "batchmean"
            warnings.simplefilter("ignore", UserWarning)
            direct = F.kl_div(logq, p, reduction=reduction) * T ** 2
        _close(gl, direct, dtype, scale=T ** 2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("layout", ["3d-last", "3d-mid", "transposed", "strided", "1d"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
def test_kl_layouts(dtype, layout, kind, reduction):
    T = 2.0
    if layout == "3d-last":
        s, dim = _randn((2, 3, 7), dtype), -1
    elif layout == "3d-mid":
        s, dim = _randn((2, 7, 3), dtype), 1
    elif layout == "transposed":
        s, dim = _randn((7, 5), dtype).t(), 1          # classes along the long stride
    elif layout == "strided":
        s, dim = _randn((4, 16), dtype)[:, ::2], -1
    else:
        s, dim = _randn((7,), dtype), 0
    if layout == "transposed":
        t = _teacher(kind, (7, 5), 0, dtype).t()
    elif layout == "strided":
        t = _teacher(kind, (4, 16), -1, dtype)[:, ::2]   # probs: rows sum below 1
    else:
        t = _teacher(kind, tuple(s.shape), dim, dtype)
    up = None
    if reduction == "none":
        rows = tuple(n for k, n in enumerate(s.shape) if k != dim % s.dim())
        up = _randn(rows, dtype, seed=8, std=1.0)
    (rl, rg), (gl, gg) = _kl_pair(s, t, up, temperature=T, teacher_kind=kind,
                                  reduction=reduction, dim=dim)
    assert gl.shape == rl.shape and gg.shape == s.shape
    _close(gl, rl, dtype, scale=T ** 2)
    _close(gg, rg, dtype, scale=T)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
def test_kl_mask(dtype, reduction):
    s = _randn((3, 4, 6), dtype)
    t = _teacher("logits", (3, 4, 6), -1, dtype)
    mask = _rand((3, 4), seed=6) > 0.4
    mask[0, 0], mask[0, 1] = True, False
    up = _randn((3, 4), dtype, seed=9, std=1.0) if reduction == "none" else None
    (rl, rg), (gl, gg) = _kl_pair(s, t, up, temperature=1.5, reduction=reduction, mask=mask)
    _close(gl, rl, dtype, scale=2.25)
    _close(gg, rg, dtype)
    assert torch.all(gg[~mask] == 0)
    if reduction == "none":
        assert torch.all(gl[~mask] == 0)


def test_kl_masked_rows_are_never_read():
    s = _randn((4, 5)).requires_grad_(True)
    t = _teacher("logits", (4, 5), -1, torch.float64)
    mask = torch.tensor([True, False, True, False])
    s_bad = s.detach().clone()
    s_bad[~mask] = float("nan")
    t_bad = t.clone()
    t_bad[~mask] = float("nan")
    s_bad.requires_grad_(True)
    loss = cst.kl_div(s_bad, t_bad, mask=mask)
    loss.backward()
    ref = _kl_ref(s.detach(), t, 1.0, "logits", "batchmean", mask)
    _close(loss.detach(), ref, torch.float64)
    assert torch.isfinite(s_bad.grad).all() and torch.all(s_bad.grad[~mask] == 0)
    all_off = cst.kl_div(s.detach(), t, mask=torch.zeros(4, dtype=torch.bool))
    assert torch.isnan(all_off)                      # batchmean over 0 rows


@pytest.mark.parametrize("scale", [1.0, 3.5, 0.0, -2.0])
def test_kl_upstream_scalar_gradient(scale):
    s = _randn((5, 6))
    t = _teacher("probs", (5, 6), -1, torch.float64)
    for reduction in ("batchmean", "sum", "mean"):
        ref = _grads(lambda z: scale * _kl_ref(z, t, 2.0, "probs", reduction), s)[1]
        got = _grads(lambda z: scale * cst.kl_div(z, t, temperature=2.0, teacher_kind="probs",
                                                  reduction=reduction), s)[1]
        _close(got, ref, torch.float64)


def test_kl_unnormalized_teacher_gradient():
    """p need not sum to 1 for probs/log_probs: gradient T * (sum(p) q - p)."""
    s = _randn((4, 5))
    p = _rand((4, 5), seed=3) * 0.5                  # in [0, 1], rows do not sum to 1
    for kind, t in (("probs", p), ("log_probs", p.log())):
        (rl, rg), (gl, gg) = _kl_pair(s, t, temperature=3.0, teacher_kind=kind,
                                      reduction="sum")
        _close(gl, rl, torch.float64, scale=9)
        _close(gg, rg, torch.float64)


KL_GRADCHECK = {
    "plain": dict(),
    "sum-T2": dict(reduction="sum", temperature=2.0),
    "mean-T0.5": dict(reduction="mean", temperature=0.5),
    "none": dict(reduction="none", temperature=3.0),
    "log_probs": dict(teacher_kind="log_probs", temperature=2.0),
    "probs-zeros": dict(teacher_kind="probs", reduction="none"),
    "3d-mid": dict(shape=(2, 4, 3), dim=1, reduction="none"),
    "mask": dict(shape=(3, 2, 4), mask=True, temperature=1.5),
    "mask-none": dict(shape=(3, 2, 4), mask=True, reduction="none"),
    "noncontig": dict(transpose=True, temperature=2.0),
    "1d": dict(shape=(6,), dim=0, reduction="sum"),
}


@pytest.mark.parametrize("name", list(KL_GRADCHECK))
def test_kl_gradcheck(name):
    o = dict(KL_GRADCHECK[name])
    shape = o.pop("shape", (4, 5))
    dim = o.get("dim", -1)
    kind = o.get("teacher_kind", "logits")
    t = _teacher(kind, shape, dim, torch.float64, zeros=True)
    if o.pop("mask", False):
        mask = torch.ones(shape[:-1], dtype=torch.bool)
        mask.view(-1)[::3] = False
        o["mask"] = mask
    s = _randn(shape)
    if o.pop("transpose", False):
        s = _randn(shape[::-1]).t()
    s.requires_grad_(True)

    def fn(z):
        return cst.kl_div(z, t, **o)

    assert torch.autograd.gradcheck(fn, (s,), eps=1e-6, atol=1e-8, rtol=1e-6)
    assert torch.autograd.gradcheck(fn, (s,), eps=1e-6, atol=1e-8, rtol=1e-6,
                                    fast_mode=True)


def test_kl_double_backward_is_refused():
    s = _randn((3, 4)).requires_grad_(True)
    loss = cst.kl_div(s, _teacher("logits", (3, 4), -1, torch.float64))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, s, create_graph=True)


def test_kl_no_grad_path_and_teacher_under_no_grad():
    s = _randn((5, 7))
    teacher_model = torch.nn.Linear(7, 7).double()
    with torch.no_grad():
        t = teacher_model(s)                  # the usual way to get teacher logits
    out = cst.kl_div(s, t, temperature=2.0, reduction="none")
    assert out.grad_fn is None
    _close(out, _kl_ref(s, t, 2.0, "logits", "none"), torch.float64)
    # a teacher that requires grad is fine when no gradient is being recorded
    t_req = t.clone().requires_grad_(True)
    with torch.no_grad():
        _close(cst.kl_div(s, t_req), _kl_ref(s, t, 1.0, "logits", "batchmean"),
               torch.float64)


def test_kl_kernel_sees_the_tensor_memory(monkeypatch):
    seen = []
    real = cst._np_kl_div_with_grad

    def spy(student, teacher, **kw):
        seen.append((student.__array_interface__["data"][0],
                     teacher.__array_interface__["data"][0]))
        return real(student, teacher, **kw)

    monkeypatch.setattr(cst, "_np_kl_div_with_grad", spy)
    s = _randn((6, 8)).t().requires_grad_(True)        # a non-contiguous leaf
    t = _teacher("logits", (6, 8), 0, torch.float64).t()
    loss = cst.kl_div(s, t, dim=0)
    assert seen == [(s.data_ptr(), t.data_ptr())]
    loss.backward()
    assert s.grad.stride() == s.stride()


def test_kl_gradient_is_handed_over_without_copy():
    s = _randn((32, 50)).requires_grad_(True)
    loss = cst.kl_div(s, _teacher("logits", (32, 50), -1, torch.float64), temperature=2.0)
    ptrs = []
    loss.grad_fn.register_hook(lambda grad_in, grad_out: ptrs.append(grad_in[0].data_ptr()))
    loss.backward()
    assert s.grad.data_ptr() == ptrs[0]


def test_kl_errors():
    s = _randn((4, 5)).requires_grad_(True)
    t = _teacher("logits", (4, 5), -1, torch.float64)
    with pytest.raises(TypeError, match="float32 or float64"):
        cst.kl_div(s.detach().half(), t)
    with pytest.raises(TypeError):
        cst.kl_div(s.detach().numpy(), t)
    with pytest.raises(TypeError, match="teacher"):
        cst.kl_div(s, torch.ones(4, 5, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="teacher.detach"):
        cst.kl_div(s, t.clone().requires_grad_(True))
    with pytest.raises(ValueError, match="shape"):
        cst.kl_div(s, t[:2])
    with pytest.raises(ValueError, match="teacher_kind"):
        cst.kl_div(s, t, teacher_kind="softmax")
    with pytest.raises(ValueError, match="reduction"):
        cst.kl_div(s, t, reduction="avg")
    with pytest.raises(IndexError, match="dim"):
        cst.kl_div(s, t, dim=2)
    with pytest.raises(TypeError, match="mask"):
        cst.kl_div(s, t, mask=torch.ones(4))
    with pytest.raises(ValueError):
        cst.kl_div(s, t, mask=torch.ones(5, dtype=torch.bool))      # not the row shape
    for bad_t in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            cst.kl_div(s, t, temperature=bad_t)
    with pytest.raises(ValueError):
        cst.kl_div(s, t + 1.0, teacher_kind="probs")                 # outside [0, 1]
    with pytest.raises(ValueError, match="at least one"):
        cst.kl_div(torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0))
    with pytest.raises(ValueError, match="DistillationKLLoss"):
        cst.DistillationKLLoss(reduction="avg")
    assert s.grad is None


def test_kl_module():
    m = cst.DistillationKLLoss(2.0, teacher_kind="log_probs", reduction="sum")
    assert "temperature=2.0" in repr(m) and "log_probs" in repr(m)
    s = _randn((2, 3, 6))
    t = _teacher("log_probs", (2, 3, 6), -1, torch.float64)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    ref = _grads(lambda z: _kl_ref(z, t, 2.0, "log_probs", "sum", mask), s)
    got = _grads(lambda z: m(z, t, mask), s)
    _close(got[0], ref[0], torch.float64)
    _close(got[1], ref[1], torch.float64)
    _close(cst.DistillationKLLoss()(s, t.exp() * 3.0),
           _kl_ref(s, t.exp() * 3.0, 1.0, "logits", "batchmean"), torch.float64)


def test_kl_distillation_loop_matches_torch():
    """A student trained on a teacher's soft targets (float64): the loss curve of
    csoftmax's kl_div and of F.kl_div(...) * T**2 agree step for step."""
    gen = _gen(12)
    x = torch.randn(48, 5, generator=gen, dtype=torch.float64)
    teacher = torch.nn.Linear(5, 6).double()
    with torch.no_grad():
        t_logits = 3.0 * teacher(x)
    T = 2.0

    def run(loss_fn):
        student = torch.nn.Linear(5, 6).double()
        with torch.no_grad():
            student.weight.copy_(0.1 * torch.randn(6, 5, generator=_gen(13),
                                                   dtype=torch.float64))
            student.bias.zero_()
        opt = torch.optim.SGD(student.parameters(), lr=0.3, momentum=0.5)
        curve = []
        for _ in range(15):
            opt.zero_grad()
            loss = loss_fn(student(x))
            loss.backward()
            opt.step()
            curve.append(loss.item())
        return curve

    ref = run(lambda s: F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t_logits / T, dim=1),
                                 reduction="batchmean") * T ** 2)
    got = run(lambda s: cst.kl_div(s, t_logits, temperature=T))
    assert ref[-1] < 0.7 * ref[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)


def test_options_grid_smoke_float32():
    """float32 (N, d, C) input, every (reduction, weight, pos_weight) for the BCE and
    every (reduction, kind) for the KL, with a half upstream gradient for "none"."""
    x = _randn((3, 4, 5), torch.float32)
    t = _bce_target((3, 4, 5), torch.float32)
    for reduction, wk, pk in itertools.product(("mean", "sum", "none"), (None, "last"),
                                               (None, "C")):
        up = torch.full((3, 4, 5), 0.5) if reduction == "none" else None
        (rl, rg), (gl, gg) = _bce_pair(x, t, up, reduction=reduction,
                                       weight=_weight(wk, (3, 4, 5), torch.float32),
                                       pos_weight=_pos_weight(pk, (3, 4, 5), torch.float32))
        _close(gl, rl, torch.float32)
        _close(gg, rg, torch.float32)
    for reduction, kind in itertools.product(KL_REDUCTIONS, KINDS):
        tk = _teacher(kind, (3, 4, 5), -1, torch.float32)
        up = torch.full((3, 4), 0.5) if reduction == "none" else None
        (rl, rg), (gl, gg) = _kl_pair(x, tk, up, teacher_kind=kind, reduction=reduction,
                                      temperature=3.0)
        _close(gl, rl, torch.float32, scale=9)
        _close(gg, rg, torch.float32, scale=3)


# =========================================================================== both

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_no_copy_of_the_logits(dtype):
    """NumPy allocations are traced by tracemalloc (torch's are not).  Contiguous
    input: one logits-sized NumPy buffer, the gradient; non-contiguous input: the
    gradient is a torch buffer of input's layout, and nothing logits-sized is
    allocated on the NumPy side (a copy of the logits or teacher would be)."""
    x = _randn((256, 1000), dtype).requires_grad_(True)
    t = _rand((256, 1000), dtype)
    w = _rand((1000,), dtype, seed=2)
    nbytes = x.numel() * x.element_size()
    calls = {
        "bce": (lambda: cst.binary_cross_entropy_with_logits(x, t, w, pos_weight=w), 1),
        "bce-T": (lambda: cst.binary_cross_entropy_with_logits(x.t(), t.t(), w[:256]), 0),
        "kl": (lambda: cst.kl_div(x, t, temperature=2.0), 1),
        "kl-log_probs": (lambda: cst.kl_div(x, t.log(), teacher_kind="log_probs"), 1),
        "kl-T": (lambda: cst.kl_div(x.t(), t.t(), dim=0, reduction="none"), 0),
        "bce-nograd": (lambda: cst.binary_cross_entropy_with_logits(x.detach(), t), 0),
        "kl-nograd": (lambda: cst.kl_div(x.detach(), t), 0),
    }
    for name, (call, buffers) in calls.items():
        tracemalloc.start()
        try:
            loss = call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < (buffers + 0.125) * nbytes, f"{name}: {peak} bytes for {nbytes}"
        if loss.requires_grad:
            loss.sum().backward()


def test_special_values_pass_through():
    """The NumPy functions' documented special values reach the tensors unchanged:
    infinite logits with hard targets give 0 (PyTorch gives NaN there), a NaN
    logit gives NaN; a NaN student row gives a NaN row loss."""
    inf, nan = float("inf"), float("nan")
    x = torch.tensor([inf, -inf, inf, 0.5], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    loss = cst.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert loss[0] == 0 and loss[1] == 0 and loss[2] == inf
    loss[:2].sum().backward()
    assert torch.all(x.grad[:2] == 0)
    xn = torch.tensor([nan, 1.0], dtype=torch.float64)
    assert torch.isnan(cst.binary_cross_entropy_with_logits(xn, torch.ones(2, dtype=torch.float64),
                                                            reduction="none")[0])
    s = _randn((3, 4))
    s[1, 2] = nan
    rows = cst.kl_div(s, _teacher("logits", (3, 4), -1, torch.float64), reduction="none")
    assert torch.isnan(rows[1]) and torch.isfinite(rows[[0, 2]]).all()

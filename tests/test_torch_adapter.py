"""csoftmax.torch: the autograd adapter against torch.nn.functional.cross_entropy.

* gradcheck (float64) over every option, PyTorch's and csoftmax's own;
* loss and gradient equal to F.cross_entropy for weight, ignore_index,
  reduction, label_smoothing, probability targets and (N, C, d1, d2) input;
* a 20-step SGD run of a softmax regression whose loss curve matches
  F.cross_entropy step for step (float64, 1e-10);
* the inplace=True rule: refusals, and what is allowed;
* no copy of contiguous input, layouts, errors, the module form.
"""
import itertools
import tracemalloc

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import csoftmax.torch as cst  # noqa: E402  (after the importorskip)


def _close(got, ref, dtype):
    if dtype == torch.float64:
        torch.testing.assert_close(got, ref, rtol=1e-11, atol=1e-13)
    else:
        torch.testing.assert_close(got, ref, rtol=2e-5, atol=2e-6)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _logits(shape, dtype=torch.float64, seed=0):
    return (2.0 * torch.randn(shape, generator=_gen(seed), dtype=torch.float64)).to(dtype)


def _labels(batch_shape, c, seed=1, ignore=None, n_ignored=0):
    t = torch.randint(0, c, batch_shape, generator=_gen(seed))
    if ignore is not None and n_ignored and t.numel():
        flat = t.view(-1)
        flat[: min(n_ignored, flat.numel() - 1) or 1] = ignore
    return t


def _soft(shape, class_dim, seed=2, dtype=torch.float64):
    return torch.softmax(torch.randn(shape, generator=_gen(seed), dtype=torch.float64),
                         dim=class_dim).to(dtype)


# ------------------------------------------------------------------- F.cross_entropy equality

SHAPES = [(7,), (6, 5), (3, 4, 2, 3)]          # (C,), (N, C), (N, C, d1, d2)


def _case(shape, soft, ignore_index, n_ignored, dtype):
    x = _logits(shape, dtype)
    cdim = 0 if len(shape) == 1 else 1
    c = shape[cdim]
    batch = shape[:cdim] + shape[cdim + 1:]
    if soft:
        t = _soft(shape, cdim, dtype=dtype)
    else:
        t = _labels(batch, c, ignore=ignore_index, n_ignored=n_ignored)
    return x, t, c


def _run_pair(x, t, upstream, **kw):
    """(loss, grad) from F.cross_entropy and from csoftmax.torch.cross_entropy."""
    out = []
    for fn in (F.cross_entropy, cst.cross_entropy):
        xi = x.detach().clone().requires_grad_(True)
        loss = fn(xi, t, **kw)
        if upstream is None:
            loss.backward()
        else:
            loss.backward(upstream)
        out.append((loss.detach(), xi.grad))
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=["C", "NC", "NCd1d2"])
@pytest.mark.parametrize("soft", [False, True], ids=["labels", "probs"])
@pytest.mark.parametrize("weighted", [False, True], ids=["nowt", "weight"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
def test_matches_torch(dtype, shape, soft, weighted, reduction, label_smoothing):
    ignore_index, n_ignored = (-100, 2) if len(shape) > 1 else (-100, 0)
    x, t, c = _case(shape, soft, ignore_index, n_ignored, dtype)
    kw = dict(reduction=reduction, label_smoothing=label_smoothing,
              ignore_index=ignore_index)
    if weighted:
        kw["weight"] = torch.rand(c, generator=_gen(5), dtype=torch.float64).to(dtype) + 0.25
    upstream = None
    if reduction == "none":
        bshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        upstream = torch.randn(bshape, generator=_gen(9), dtype=torch.float64).to(dtype)
    (ref_l, ref_g), (got_l, got_g) = _run_pair(x, t, upstream, **kw)
    assert got_l.dtype == dtype and got_g.dtype == dtype
    assert got_l.shape == ref_l.shape
    _close(got_l, ref_l, dtype)
    _close(got_g, ref_g, dtype)


@pytest.mark.parametrize("ignore_index", [-100, 2, -1])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ignore_index_matches_torch(ignore_index, reduction):
    x = _logits((9, 4))
    t = torch.tensor([0, 2, 1, ignore_index, 3, 2, ignore_index, 0, 1])
    kw = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=0.1,
              weight=torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64))
    up = torch.linspace(-1, 2, 9, dtype=torch.float64) if reduction == "none" else None
    (ref_l, ref_g), (got_l, got_g) = _run_pair(x, t, up, **kw)
    _close(got_l, ref_l, torch.float64)
    _close(got_g, ref_g, torch.float64)


def test_all_ignored_mean_is_nan_like_torch():
    x = _logits((4, 5))
    t = torch.full((4,), -100)
    (ref_l, ref_g), (got_l, got_g) = _run_pair(x, t, None)
    assert torch.isnan(ref_l) and torch.isnan(got_l)
    torch.testing.assert_close(got_g, ref_g)


@pytest.mark.parametrize("scale", [1.0, 3.5, 0.0, -2.0])
def test_upstream_scalar_gradient(scale):
    x = _logits((6, 5))
    t = _labels((6,), 5)
    for reduction in ("mean", "sum"):
        grads = []
        for fn in (F.cross_entropy, cst.cross_entropy):
            xi = x.clone().requires_grad_(True)
            (scale * fn(xi, t, reduction=reduction)).backward()
            grads.append(xi.grad)
        _close(grads[1], grads[0], torch.float64)


def test_none_reduction_all_ones_upstream():
    x = _logits((6, 5))
    t = _labels((6,), 5)
    xi = x.clone().requires_grad_(True)
    cst.cross_entropy(xi, t, reduction="none").sum().backward()
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(xr, t, reduction="none").sum().backward()
    _close(xi.grad, xr.grad, torch.float64)


def test_noncontiguous_input():
    base = _logits((5, 8))
    x = base.t()                       # (8, 5), not contiguous
    assert not x.is_contiguous()
    t = _labels((8,), 5)
    xs = x.detach().clone().requires_grad_(True)
    (ref_l, ref_g), (got_l, got_g) = _run_pair(xs, t, None)
    _close(got_l, ref_l, torch.float64)
    # through a non-contiguous non-leaf
    b = base.clone().requires_grad_(True)
    cst.cross_entropy(b.t(), t).backward()
    _close(b.grad.t(), ref_g, torch.float64)


def test_channels_last_kdim():
    x = _logits((2, 5, 3, 4)).contiguous(memory_format=torch.channels_last)
    t = _labels((2, 3, 4), 5)
    (ref_l, ref_g), (got_l, got_g) = _run_pair(x, t, None)
    _close(got_l, ref_l, torch.float64)
    _close(got_g, ref_g, torch.float64)


def test_soft_target_other_float_dtype():
    x = _logits((4, 6), torch.float32)
    p = _soft((4, 6), 1, dtype=torch.float64)
    ref = F.cross_entropy(x, p.float())
    got = cst.cross_entropy(x, p)                                 # float64 probabilities
    got16 = cst.cross_entropy(x, p.to(torch.bfloat16))            # converted to float32
    _close(got, ref, torch.float32)
    _close(got16, F.cross_entropy(x, p.to(torch.bfloat16).float()), torch.float32)


def test_return_lse():
    x = _logits((5, 7)).requires_grad_(True)
    t = _labels((5,), 7)
    loss, lse = cst.cross_entropy(x, t, return_lse=True)
    assert not lse.requires_grad
    _close(lse, torch.logsumexp(x.detach(), dim=1), torch.float64)
    loss.backward()
    xr = x.detach().clone().requires_grad_(True)
    F.cross_entropy(xr, t).backward()
    _close(x.grad, xr.grad, torch.float64)
    # K-dim: lse has the per-sample shape
    xk = _logits((2, 3, 4))
    _, lse_k = cst.cross_entropy(xk, _labels((2, 4), 3), reduction="none", return_lse=True)
    _close(lse_k, torch.logsumexp(xk, dim=1), torch.float64)


def test_no_grad_paths_compute_loss_only():
    x = _logits((5, 7))
    t = _labels((5,), 7)
    ref = F.cross_entropy(x, t)
    out = cst.cross_entropy(x, t)                      # input does not require grad
    assert not out.requires_grad and out.grad_fn is None
    _close(out, ref, torch.float64)
    xg = x.clone().requires_grad_(True)
    with torch.no_grad():
        out2 = cst.cross_entropy(xg, t, inplace=True)
    assert out2.grad_fn is None
    torch.testing.assert_close(xg.detach(), x, rtol=0, atol=0)   # nothing written
    _close(out2, ref, torch.float64)


# --------------------------------------------------------------------------- csoftmax extensions

def _reference_extended(x, t, weight, sample_weight, ignore_index, reduction,
                        label_smoothing, z_loss, softcap):
    """csoftmax's documented loss written with torch ops (autograd gives the gradient)."""
    cdim = 0 if x.dim() == 1 else 1
    z = softcap * torch.tanh(x / softcap) if softcap is not None else x
    lse = torch.logsumexp(z, dim=cdim)
    per = F.cross_entropy(z, t, weight=weight, ignore_index=ignore_index,
                          reduction="none", label_smoothing=label_smoothing)
    if t.is_floating_point():
        counted = torch.ones_like(lse)
        wy = torch.ones_like(lse)
    else:
        counted = (t != ignore_index).to(x.dtype)
        wy = (weight[t.clamp(min=0)] if weight is not None
              else torch.ones_like(lse)) * counted
    per = per + z_loss * lse ** 2 * counted
    s = sample_weight if sample_weight is not None else torch.ones_like(lse)
    per = per * s
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    denom = s.sum() if t.is_floating_point() else (s * wy).sum()
    return per.sum() / denom


@pytest.mark.parametrize("soft", [False, True], ids=["labels", "probs"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("softcap", [None, 2.5])
def test_extensions_match_torch_reference(soft, reduction, softcap):
    x = _logits((6, 5))
    t = _soft((6, 5), 1) if soft else torch.tensor([0, 4, -100, 2, 1, 3])
    kw = dict(weight=torch.tensor([1.0, 0.5, 2.0, 1.5, 0.75], dtype=torch.float64),
              sample_weight=torch.linspace(0.2, 2.0, 6, dtype=torch.float64),
              ignore_index=-100, reduction=reduction, label_smoothing=0.1,
              z_loss=0.05, softcap=softcap)
    xr = x.clone().requires_grad_(True)
    ref = _reference_extended(xr, t, **kw)
    xg = x.clone().requires_grad_(True)
    got = cst.cross_entropy(xg, t, **kw)
    _close(got.detach(), ref.detach(), torch.float64)
    up = torch.linspace(-1, 1, 6, dtype=torch.float64) if reduction == "none" else None
    ref.backward(up)
    got.backward(up)
    _close(xg.grad, xr.grad, torch.float64)


# --------------------------------------------------------------------------- gradcheck

GRADCHECK_CASES = {
    "plain": dict(),
    "sum": dict(reduction="sum"),
    "none": dict(reduction="none"),
    "weight+ignore": dict(weight="w", ignore_index=1),
    "smoothing": dict(label_smoothing=0.2, weight="w"),
    "sample_weight": dict(sample_weight="s", reduction="none"),
    "zloss+softcap": dict(z_loss=0.1, softcap=2.0, label_smoothing=0.05),
    "soft": dict(target="soft", weight="w"),
    "soft-none-capped": dict(target="soft", reduction="none", softcap=1.5, z_loss=0.2),
    "kdim": dict(shape=(2, 4, 3), weight="w", ignore_index=0),
    "kdim-soft": dict(shape=(2, 4, 3), target="soft", reduction="none"),
    "1d": dict(shape=(5,)),
    "lse": dict(return_lse=True),
    "inplace": dict(inplace=True),
}


@pytest.mark.parametrize("name", list(GRADCHECK_CASES))
def test_gradcheck(name):
    opts = dict(GRADCHECK_CASES[name])
    shape = opts.pop("shape", (5, 4))
    cdim = 0 if len(shape) == 1 else 1
    c = shape[cdim]
    batch = shape[:cdim] + shape[cdim + 1:]
    if opts.pop("target", "labels") == "soft":
        t = _soft(shape, cdim)
    else:
        t = _labels(batch, c)
    if opts.get("weight") == "w":
        opts["weight"] = torch.linspace(0.5, 2.0, c, dtype=torch.float64)
    if opts.get("sample_weight") == "s":
        opts["sample_weight"] = torch.linspace(0.1, 1.0, max(1, int(np.prod(batch))),
                                               dtype=torch.float64).reshape(batch)
    x = _logits(shape).requires_grad_(True)
    inplace = opts.pop("inplace", False)
    return_lse = opts.get("return_lse", False)

    def fn(z):
        if inplace:
            z = z * 1.0                   # an intermediate: the one inplace may overwrite
        out = cst.cross_entropy(z, t, inplace=inplace, **opts)
        return out[0] if return_lse else out

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-8, rtol=1e-6)
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-8, rtol=1e-6,
                                    fast_mode=True)


def test_double_backward_is_refused():
    x = _logits((3, 4)).requires_grad_(True)
    loss = cst.cross_entropy(x, _labels((3,), 4))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, x, create_graph=True)


def test_retain_graph_backward_twice_accumulates():
    x = _logits((4, 6)).requires_grad_(True)
    t = _labels((4,), 6)
    loss = cst.cross_entropy(x, t)
    loss.backward(retain_graph=True)
    g1 = x.grad.clone()
    loss.backward()
    _close(x.grad, 2 * g1, torch.float64)
    with pytest.raises(RuntimeError):
        loss.backward()                  # buffers freed, as for any torch op


# --------------------------------------------------------------------------- training loop

def _train(loss_fn, steps=20, seed=3):
    gen = _gen(seed)
    n, d, c = 96, 6, 4
    centers = 2.0 * torch.randn(c, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=gen)
    x = centers[y] + torch.randn(n, d, generator=gen, dtype=torch.float64)
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
    return curve, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("variant", ["functional", "module", "inplace", "options"])
def test_training_loop_matches_torch(variant):
    w = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    if variant == "functional":
        ref_fn, fn = F.cross_entropy, cst.cross_entropy
    elif variant == "module":
        ref_fn, fn = torch.nn.CrossEntropyLoss(), cst.CrossEntropyLoss()
    elif variant == "inplace":
        ref_fn = F.cross_entropy
        fn = cst.CrossEntropyLoss(inplace=True)   # Linear output: allowed
    else:
        ref_fn = torch.nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)
        fn = cst.CrossEntropyLoss(weight=w, label_smoothing=0.1)
    ref_curve, ref_params = _train(ref_fn)
    curve, params = _train(fn)
    assert len(curve) == 20
    assert ref_curve[-1] < 0.5 * ref_curve[0]                 # it does learn
    np.testing.assert_allclose(curve, ref_curve, rtol=0, atol=1e-10)
    for p, q in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- inplace=True

def test_inplace_refuses_leaf_requiring_grad():
    x = _logits((4, 5)).requires_grad_(True)
    before = x.detach().clone()
    with pytest.raises(RuntimeError, match="leaf"):
        cst.cross_entropy(x, _labels((4,), 5), inplace=True)
    torch.testing.assert_close(x.detach(), before, rtol=0, atol=0)


def test_inplace_refuses_view_of_leaf():
    x = _logits((4, 5)).requires_grad_(True)
    before = x.detach().clone()
    for view in (x[:, :], x.view(4, 5), x.t().t()):
        with pytest.raises(RuntimeError, match="leaf"):
            cst.cross_entropy(view, _labels((4,), 5), inplace=True)
    torch.testing.assert_close(x.detach(), before, rtol=0, atol=0)


@pytest.mark.parametrize("producer", ["tanh", "exp", "tanh-view", "sigmoid-reshape"])
def test_inplace_refuses_tensor_saved_by_its_producer(producer):
    h = _logits((4, 5)).requires_grad_(True)
    if producer == "tanh":
        z = torch.tanh(h)
    elif producer == "exp":
        z = torch.exp(h)
    elif producer == "tanh-view":
        z = torch.tanh(h.view(2, 2, 5)).view(4, 5)
    else:
        z = torch.sigmoid(h).reshape(4, 5)
    before = z.detach().clone()
    with pytest.raises(RuntimeError, match="saved"):
        cst.cross_entropy(z, _labels((4,), 5), inplace=True)
    torch.testing.assert_close(z.detach(), before, rtol=0, atol=0)


def test_inplace_on_linear_output_writes_gradient():
    gen = _gen(4)
    h = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    lin = torch.nn.Linear(6, 5).double()
    t = _labels((8,), 5)
    z = lin(h)
    ptr = z.data_ptr()
    ref_z = z.detach().clone().requires_grad_(True)
    ref_loss = F.cross_entropy(ref_z, t)
    ref_loss.backward()
    v0 = z._version
    loss = cst.cross_entropy(z, t, inplace=True)
    assert z._version > v0                        # autograd was told about the write
    assert z.data_ptr() == ptr
    _close(z.detach(), ref_z.grad, torch.float64)   # z now holds d loss / d z
    _close(loss.detach(), ref_loss.detach(), torch.float64)
    loss.backward()
    lin2 = torch.nn.Linear(6, 5).double()
    lin2.load_state_dict(lin.state_dict())
    F.cross_entropy(lin2(h), t).backward()
    _close(lin.weight.grad, lin2.weight.grad, torch.float64)
    _close(lin.bias.grad, lin2.bias.grad, torch.float64)


def test_inplace_other_saver_is_caught_at_backward():
    lin = torch.nn.Linear(3, 4).double()
    z = lin(_logits((5, 3)))
    reg = z.pow(2).sum()                          # PowBackward saved z
    loss = cst.cross_entropy(z, _labels((5,), 4), inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (loss + reg).backward()


def test_inplace_and_numpy_writes_no_extra_buffer():
    lin = torch.nn.Linear(16, 4096)
    z = lin(torch.randn(256, 16))
    t = torch.randint(0, 4096, (256,))
    tracemalloc.start()
    try:
        loss = cst.cross_entropy(z, t, inplace=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    loss.backward()
    assert peak < z.numel() * z.element_size() // 8


# --------------------------------------------------------------------------- zero copy

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_contiguous_input_is_not_copied(dtype):
    """NumPy allocations are traced by tracemalloc (torch's own are not).  The
    adapter allocates exactly one logits-sized NumPy buffer, the gradient; a
    copy of the logits would be a second one."""
    x = _logits((512, 2000), dtype).requires_grad_(True)
    t = _labels((512,), 2000)
    p = _soft((64, 2000), 1, dtype=dtype)
    xs = _logits((64, 2000), dtype).requires_grad_(True)
    nbytes = x.numel() * x.element_size()
    nbytes_s = xs.numel() * xs.element_size()
    tracemalloc.start()
    try:
        loss = cst.cross_entropy(x, t)
        _, peak = tracemalloc.get_traced_memory()
        # later peaks are counted from what is still held (the buffers above)
        tracemalloc.reset_peak()
        held = tracemalloc.get_traced_memory()[0]
        loss_s = cst.cross_entropy(xs, p, reduction="sum")
        peak_s = tracemalloc.get_traced_memory()[1] - held
        tracemalloc.reset_peak()
        held = tracemalloc.get_traced_memory()[0]
        loss_f = cst.cross_entropy(x.detach(), t)          # no grad: no buffer at all
        peak_f = tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * nbytes, f"{peak} bytes traced for {nbytes} bytes of logits"
    assert peak_s < 1.25 * nbytes_s, f"{peak_s} bytes traced for {nbytes_s} bytes of logits"
    assert peak_f < nbytes // 8, f"{peak_f} bytes traced for a loss-only call"
    loss.backward()
    loss_s.backward()
    _close(loss_f, loss.detach(), dtype)


@pytest.mark.parametrize("inplace", [False, True])
def test_kernel_sees_the_tensor_memory(monkeypatch, inplace):
    """The array handed to csoftmax is a view of the tensor's own memory (no torch-side copy)."""
    seen = []
    real = cst._np_cross_entropy_with_grad

    def spy(logits, target, **kw):
        seen.append((logits.__array_interface__["data"][0], target.__array_interface__["data"][0]))
        return real(logits, target, **kw)

    monkeypatch.setattr(cst, "_np_cross_entropy_with_grad", spy)
    x = _logits((3, 8, 5)).requires_grad_(True)
    z = x * 2.0 if inplace else x
    t = _labels((3, 5), 8)
    loss = cst.cross_entropy(z, t, inplace=inplace)
    assert seen == [(z.data_ptr(), t.data_ptr())]
    loss.backward()


def test_gradient_is_handed_over_without_copy():
    """loss.backward() on a leaf: the forward's gradient buffer becomes x.grad."""
    x = _logits((64, 100)).requires_grad_(True)
    loss = cst.cross_entropy(x, _labels((64,), 100))
    ptrs = []
    loss.grad_fn.register_hook(lambda grad_in, grad_out: ptrs.append(grad_in[0].data_ptr()))
    loss.backward()
    assert x.grad.data_ptr() == ptrs[0]


# --------------------------------------------------------------------------- errors

def test_errors():
    x = _logits((4, 5)).requires_grad_(True)
    t = _labels((4,), 5)
    with pytest.raises(TypeError, match="float32, float64, float16 or bfloat16"):
        cst.cross_entropy(torch.ones(4, 5, dtype=torch.int64), t)
    with pytest.raises(TypeError, match="float32, float64, float16 or bfloat16"):
        cst.cross_entropy(x.detach().to(torch.complex64), t)
    with pytest.raises(TypeError, match="class indices"):
        cst.cross_entropy(x, t > 2)
    with pytest.raises(RuntimeError, match="weight"):
        cst.cross_entropy(x, t, torch.ones(5, dtype=torch.float64, requires_grad=True))
    with pytest.raises(RuntimeError, match="target"):
        cst.cross_entropy(x, _soft((4, 5), 1).requires_grad_(True))
    with pytest.raises(ValueError, match="reduction"):
        cst.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="out of range"):
        cst.cross_entropy(x, torch.tensor([0, 1, 5, 2]))
    with pytest.raises(ValueError, match="shape"):
        cst.cross_entropy(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="at least one"):
        cst.cross_entropy(torch.tensor(1.0, dtype=torch.float64), torch.tensor(0))
    with pytest.raises(TypeError):
        cst.cross_entropy(x.detach().numpy(), t)
    with pytest.raises(ValueError, match="CrossEntropyLoss"):
        cst.CrossEntropyLoss(reduction="avg")
    assert x.grad is None


# --------------------------------------------------------------------------- module

def test_module():
    w = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    m = cst.CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.2, z_loss=1e-3)
    assert "weight" in m.state_dict()
    assert "label_smoothing=0.2" in repr(m) and "z_loss" in repr(m)
    m32 = cst.CrossEntropyLoss(weight=w).float()       # the buffer follows .to()/.float()
    assert m32.weight is not None and m32.weight.dtype == torch.float32
    x = _logits((6, 3))
    t = torch.tensor([0, 1, 2, 2, 0, 1])
    ref = torch.nn.CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.2)(x, t)
    got_plain = cst.CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.2)(x, t)
    _close(got_plain, ref, torch.float64)
    sw = torch.linspace(0.5, 1.5, 6, dtype=torch.float64)
    got = cst.CrossEntropyLoss(reduction="none")(x, t, sw)
    _close(got, sw * F.cross_entropy(x, t, reduction="none"), torch.float64)
    assert isinstance(m(x, t), torch.Tensor)


def test_options_grid_smoke_float32_kdim():
    """Every (reduction, smoothing, weight) combination on a float32 (N, C, d) input."""
    x = _logits((3, 6, 5), torch.float32)
    t = _labels((3, 5), 6, ignore=-100, n_ignored=3)
    w = torch.linspace(0.5, 1.5, 6)
    for reduction, eps, weight in itertools.product(("mean", "sum", "none"), (0.0, 0.3),
                                                    (None, w)):
        up = torch.ones(3, 5) * 0.5 if reduction == "none" else None
        (rl, rg), (gl, gg) = _run_pair(x, t, up, reduction=reduction,
                                       label_smoothing=eps, weight=weight)
        _close(gl, rl, torch.float32)
        _close(gg, rg, torch.float32)

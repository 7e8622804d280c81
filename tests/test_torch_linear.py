"""csoftmax.torch.linear_cross_entropy against PyTorch (float64).

* loss and the gradients of input, linear_weight and linear_bias equal to
  F.linear_cross_entropy (its chunked path and its reference path) and to
  autograd through F.cross_entropy(x @ W.T + b), for weight, ignore_index,
  label_smoothing, every reduction, probability targets, (B, T, D) input;
* gradcheck on a small case, for each reduction (the "none" gradients are
  computed in backward with the per-sample upstream gradient);
* only the gradients that are required are computed; frozen weights work;
* no copies of the tensors; errors.
"""
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import csoftmax.torch as cst  # noqa: E402  (after the importorskip)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _problem(lead=(12,), d=7, v=9, seed=0, dtype=torch.float64, bias=True):
    g = _gen(seed)
    x = torch.randn(lead + (d,), generator=g, dtype=dtype).requires_grad_()
    w = (torch.randn((v, d), generator=g, dtype=dtype) / d**0.5).requires_grad_()
    b = (0.1 * torch.randn(v, generator=g, dtype=dtype)).requires_grad_() if bias else None
    t = torch.randint(0, v, lead, generator=g)
    return x, w, b, t


def _grads(loss_fn, *params):
    for p in params:
        if p is not None:
            p.grad = None
    loss = loss_fn()
    (loss.sum() if loss.dim() else loss).backward()
    return loss.detach(), [None if p is None else p.grad.clone() for p in params]


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.15}, {"weight": "w"},
                                  {"ignore_index": 3}, {"weight": "w", "label_smoothing": 0.3}])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_pytorch(reduction, opts, bias):
    x, w, b, t = _problem(bias=bias, seed=len(opts) + 3 * bias)
    kw = dict(opts)
    if kw.get("weight") == "w":
        kw["weight"] = torch.rand(9, generator=_gen(4), dtype=torch.float64) + 0.2
    ig = kw.pop("ignore_index", -100)
    t[[1, 5]] = ig
    params = (x, w, b)
    got, g_got = _grads(lambda: cst.linear_cross_entropy(
        x, w, t, linear_bias=b, reduction=reduction, ignore_index=ig, chunk_size=5,
        **kw), *params)
    ref, g_ref = _grads(lambda: F.cross_entropy(
        F.linear(x, w, b), t, reduction=reduction, ignore_index=ig, **kw), *params)
    _close(got, ref)
    for a, c in zip(g_got, g_ref):
        if c is not None:
            _close(a, c)
    # PyTorch 2.13's chunked path gives the same (it has no label smoothing: it
    # falls back to materialising the logits, with a warning)
    if (hasattr(F, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions")
            and not kw.get("label_smoothing")):
        ref2, g_ref2 = _grads(lambda: F.linear_cross_entropy(
            x, w, t, linear_bias=b, reduction=reduction, ignore_index=ig,
            options=torch.nn.LinearCrossEntropyOptions(), **kw), *params)
        _close(got, ref2)
        for a, c in zip(g_got, g_ref2):
            if c is not None:
                _close(a, c)


def test_probability_targets_and_leading_shape():
    x, w, b, _ = _problem(lead=(2, 3), seed=7)
    p = torch.rand((2, 3, 9), generator=_gen(8), dtype=torch.float64)
    p = p / p.sum(-1, keepdim=True)
    got, g_got = _grads(lambda: cst.linear_cross_entropy(x, w, p, linear_bias=b), x, w, b)
    ref, g_ref = _grads(lambda: F.cross_entropy(
        F.linear(x, w, b).reshape(6, 9), p.reshape(6, 9)), x, w, b)
    _close(got, ref)
    for a, c in zip(g_got, g_ref):
        _close(a, c)


def test_upstream_gradient_scales():
    x, w, b, t = _problem(seed=9)
    loss = cst.linear_cross_entropy(x, w, t, linear_bias=b)
    (3.5 * loss).backward()
    g = [p.grad.clone() for p in (x, w, b)]
    for p in (x, w, b):
        p.grad = None
    F.cross_entropy(F.linear(x, w, b), t).mul(3.5).backward()
    for a, p in zip(g, (x, w, b)):
        _close(a, p.grad)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck(reduction):
    x, w, b, t = _problem(lead=(5,), d=3, v=4, seed=10)
    t[2] = -100

    def f(xx, ww, bb):
        return cst.linear_cross_entropy(xx, ww, t, linear_bias=bb, reduction=reduction,
                                        label_smoothing=0.1, z_loss=0.01, softcap=2.0,
                                        chunk_size=2)

    assert torch.autograd.gradcheck(f, (x, w, b), eps=1e-6, atol=1e-7)


def test_only_required_gradients_are_computed(monkeypatch):
    from csoftmax import _linear
    x, w, b, t = _problem(seed=11)
    w.requires_grad_(False)
    seen = []
    real = _linear._with_grad_needed

    def spy(*a, **k):
        seen.append(a[4])
        return real(*a, **k)

    monkeypatch.setattr(_linear, "_with_grad_needed", spy)
    loss = cst.linear_cross_entropy(x, w, t, linear_bias=b)
    loss.backward()
    assert seen == [(True, False, True)]
    assert w.grad is None and x.grad is not None and b.grad is not None
    ref = F.cross_entropy(F.linear(x.detach(), w, b.detach()), t)
    _close(loss.detach(), ref)
    with torch.no_grad():
        nl = cst.linear_cross_entropy(x, w, t, linear_bias=b)
    assert not nl.requires_grad and len(seen) == 1
    _close(nl, ref)


def test_float32_no_copies():
    x, w, b, t = _problem(lead=(64,), d=32, v=300, seed=12, dtype=torch.float32)
    loss = cst.linear_cross_entropy(x, w, t, linear_bias=b)
    loss.backward()
    assert x.grad.dtype == torch.float32 and w.grad.shape == w.shape
    ref_loss = F.cross_entropy(F.linear(x.detach().double(), w.detach().double(),
                                        b.detach().double()), t)
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-5, atol=1e-6)


def test_errors():
    x, w, b, t = _problem(seed=13)
    with pytest.raises(TypeError, match="float32 or both"):
        cst.linear_cross_entropy(x, w.float(), t)
    with pytest.raises(ValueError, match="features"):
        cst.linear_cross_entropy(x[:, :5], w, t)
    bad = t.clone()
    bad[4] = 9
    with pytest.raises(ValueError, match=r"label 9 at index \(4,\)"):
        cst.linear_cross_entropy(x, w, bad)
    assert x.grad is None
    with pytest.raises(ValueError, match="reduction"):
        cst.linear_cross_entropy(x, w, t, reduction="avg")
    with pytest.raises(RuntimeError, match="requires grad"):
        cst.linear_cross_entropy(x, w, t, weight=torch.ones(9, requires_grad=True,
                                                            dtype=torch.float64))


def test_retained_graph_backward_twice():
    x, w, b, t = _problem(seed=14)
    loss = cst.linear_cross_entropy(x, w, t, linear_bias=b)
    loss.backward(retain_graph=True)
    first = [p.grad.clone() for p in (x, w, b)]
    (2 * loss).backward()                 # recomputed from the saved inputs
    for a, p in zip(first, (x, w, b)):
        _close(p.grad, 3 * a)


def test_tensors_reach_numpy_without_copies(monkeypatch):
    from csoftmax import _linear
    x, w, b, t = _problem(lead=(6,), d=5, v=8, seed=15, dtype=torch.float32)
    seen = []
    real = _linear._with_grad_needed

    def spy(xx, ww, tt, bb, need, **k):
        seen.append((xx, ww, bb, tt))
        return real(xx, ww, tt, bb, need, **k)

    monkeypatch.setattr(_linear, "_with_grad_needed", spy)
    cst.linear_cross_entropy(x, w, t, linear_bias=b).backward()
    xx, ww, bb, tt = seen[0]
    for arr, ten in ((xx, x), (ww, w), (bb, b), (tt, t)):
        assert arr.__array_interface__["data"][0] == ten.data_ptr()

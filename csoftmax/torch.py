"""PyTorch adapter: csoftmax's fused losses as autograd functions.

``import csoftmax`` never imports torch; importing *this* module does (install
it with ``pip install "csoftmax[torch]"``).

    >>> import torch, csoftmax.torch as cst
    >>> logits = torch.randn(4, 10, requires_grad=True)
    >>> loss = cst.cross_entropy(logits, torch.tensor([1, 0, 9, 3]))
    >>> loss.backward()

:func:`linear_cross_entropy` is the fused ``F.linear_cross_entropy``: the loss of
``input @ linear_weight.T + linear_bias`` with gradients for all three, one chunk of
logits at a time (see :func:`csoftmax.linear_cross_entropy_with_grad`).

:func:`cross_entropy` takes the arguments of ``torch.nn.functional.cross_entropy``
(``input`` of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``; class-index or
class-probability ``target``; ``weight``, ``ignore_index``, ``reduction``,
``label_smoothing``) plus csoftmax's ``sample_weight``, ``z_loss``, ``softcap``,
``return_lse`` and ``inplace``.  :class:`CrossEntropyLoss` is the module form.

:func:`binary_cross_entropy_with_logits` (module :class:`BCEWithLogitsLoss`) is
PyTorch's sigmoid cross-entropy (``weight``, ``pos_weight``, ``reduction``, plus
``inplace``), on :func:`csoftmax.binary_cross_entropy_with_grad`.  :func:`kl_div`
(module :class:`DistillationKLLoss`) is the distillation loss
``F.kl_div(F.log_softmax(student / T, dim), p_teacher) * T**2`` from the
student's *logits*, on :func:`csoftmax.kl_div_with_grad`.  Both differentiate
with respect to the logits only and raise ``RuntimeError`` for a target,
teacher or weight that requires grad (pass ``.detach()``); both work as below.

How it works
------------
Forward makes one call to :func:`csoftmax.cross_entropy_with_grad` (resp. the
BCE's or KL's ``*_with_grad``) on zero-copy
NumPy views of the tensors (``tensor.detach().numpy()``; CPU float32/float64
only) and keeps only the gradient of the loss (a new buffer, or ``input``
itself with ``inplace=True``); the logits are not saved. Backward does no
softmax work: it returns that gradient multiplied by the incoming gradient (a
scalar for ``"mean"``/``"sum"``, one factor per sample -- per element for the
BCE, per row for the KL -- for ``"none"``); when
the incoming gradient is exactly 1 (the usual ``loss.backward()``) the stored
gradient itself is handed to autograd (which then adopts it as ``.grad`` of a
leaf without a copy). When ``input`` does not require grad (or grad mode is
off) only the loss is computed. Higher-order gradients are not available:
backward with ``create_graph=True`` raises.

``inplace=True``: the gradient overwrites ``input``
---------------------------------------------------
(:func:`cross_entropy` and :func:`binary_cross_entropy_with_logits`.)
The gradient is written into ``input``'s own memory (no second logits-sized
buffer). Afterwards ``input`` holds ``d loss / d input`` (of the reduced loss,
before the upstream gradient is applied), not the logits. The rule: ``input``
must be an intermediate result whose values autograd does not need. It is
refused with a ``RuntimeError`` before anything is written when

* ``input`` is a leaf that requires grad (a parameter: its values would be
  destroyed), or a view of one;
* the autograd node that produced ``input`` (looking through view operations)
  saved it for its own backward, e.g. ``torch.tanh`` or ``torch.exp``; the
  output of ``nn.Linear`` / ``x @ W`` is fine.

After writing, ``input``'s version counter is bumped (as any in-place op
does), so any *other* node that saved this memory (e.g. ``logits.pow(2)``
computed before the loss) makes backward raise PyTorch's "modified by an
inplace operation" error instead of silently using the gradient as logits.
When no gradient is needed (``input`` does not require grad, or grad mode is
off) nothing is written.
"""
from __future__ import annotations

from typing import Any, Literal, overload

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "csoftmax.torch needs PyTorch: pip install 'csoftmax[torch]' (torch>=2.1)"
    ) from exc

import numpy as np
from torch import Tensor
from torch.autograd.function import FunctionCtx

from . import _linear
from ._losses import _KL_REDUCTIONS, _TEACHER_KINDS
from . import binary_cross_entropy as _np_bce
from . import binary_cross_entropy_with_grad as _np_bce_with_grad
from . import cross_entropy as _np_cross_entropy
from . import cross_entropy_with_grad as _np_cross_entropy_with_grad
from . import kl_div as _np_kl_div
from . import kl_div_with_grad as _np_kl_div_with_grad
from . import linear_cross_entropy as _np_linear_cross_entropy

__all__ = ["cross_entropy", "CrossEntropyLoss", "linear_cross_entropy",
           "binary_cross_entropy_with_logits", "BCEWithLogitsLoss",
           "kl_div", "DistillationKLLoss"]

_Reduction = Literal["none", "mean", "sum"]
_KLReduction = Literal["none", "batchmean", "sum", "mean"]
_TeacherKind = Literal["logits", "log_probs", "probs"]
_FLOAT_DTYPES = (torch.float32, torch.float64)
# cross_entropy also takes 16-bit logits: read and written by the kernels as
# they are (bfloat16 through its 16-bit storage, as ml_dtypes.bfloat16)
_CE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_MAX_VIEW_HOPS = 64


# --------------------------------------------------------------------------- helpers

def _bf16() -> np.dtype[Any]:
    """NumPy's bfloat16 dtype (ml_dtypes), imported only when a bfloat16 tensor
    arrives."""
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("csoftmax.torch: bfloat16 tensors need the ml_dtypes package "
                        "(pip install ml_dtypes, or csoftmax[bf16])") from None
    return np.dtype(ml_dtypes.bfloat16)


def _as_numpy(t: Tensor) -> np.ndarray[Any, Any]:
    """Zero-copy NumPy view of a CPU tensor (detached; strides are kept); a
    bfloat16 tensor is viewed through its 16-bit storage as ml_dtypes.bfloat16."""
    if t.dtype == torch.bfloat16:
        return t.detach().view(torch.int16).numpy().view(_bf16())
    return t.detach().numpy()


def _const_tensor(t: Tensor | None, name: str, dtype: torch.dtype | None = None,
                  fn: str = "csoftmax.torch.cross_entropy", wrt: str = "input"
                  ) -> np.ndarray[Any, Any] | None:
    """A NumPy view of an argument we do not differentiate with respect to.

    ``fn`` names the public function in messages, ``wrt`` the argument that does
    get a gradient."""
    if t is None:
        return None
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor "
                        f"or None, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{fn}: {name} is on {t.device}; "
                         f"csoftmax runs on the CPU only")
    if t.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(
            f"{fn}: {name} requires grad, but gradients with "
            f"respect to {name} are not implemented (only with respect to {wrt}); "
            f"pass {name}.detach() if it is a constant")
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    return _as_numpy(t)


def _target_array(target: Tensor, dtype: torch.dtype, name: str) -> np.ndarray[Any, Any]:
    """Class indices or probabilities (the latter in `dtype` unless float32/64)."""
    if target.is_floating_point():
        t = _const_tensor(target, "target (probabilities)",
                          None if target.dtype in _FLOAT_DTYPES else dtype)
    elif target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"{name}: target must hold class indices (integer) or "
                        f"probabilities (float), got {target.dtype}")
    else:
        t = _const_tensor(target, "target")
    assert t is not None
    return t


def _same_memory(a: Tensor, b: Tensor) -> bool:
    try:
        return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
                    and a.untyped_storage().data_ptr() != 0)
    except RuntimeError:       # e.g. a tensor without storage
        return False


def _saved_tensors_of(node: Any) -> list[Tensor]:
    """The tensors an autograd node saved for its backward (its ``_saved_*`` attributes)."""
    found: list[Tensor] = []
    for name in dir(node):
        if not name.startswith("_saved_"):
            continue
        try:
            val = getattr(node, name)
        except RuntimeError:   # already freed, or not unpackable
            continue
        if isinstance(val, Tensor):
            found.append(val)
        elif isinstance(val, (list, tuple)):
            found.extend(v for v in val if isinstance(v, Tensor))
    return found


def _check_inplace(input: Tensor, fn: str = "csoftmax.torch.cross_entropy") -> None:
    """Refuse ``inplace=True`` on a tensor whose values autograd needs (see the module doc)."""
    what = f"{fn}(inplace=True)"
    if input.is_leaf:
        raise RuntimeError(
            f"{what}: input is a leaf tensor that requires grad; writing the gradient "
            f"into it would destroy the values autograd differentiates with respect to. "
            f"Use inplace=True only on an intermediate result (e.g. the output of a "
            f"Linear layer), or inplace=False")
    base = input._base
    if base is not None and base.is_leaf and base.requires_grad:
        raise RuntimeError(
            f"{what}: input is a view of a leaf tensor that requires grad; writing the "
            f"gradient into it would overwrite that tensor. Use inplace=False")
    # Walk up from input's producer through view-like nodes (they share input's
    # memory) and refuse if any of them saved that memory, or if it belongs to a leaf.
    node = input.grad_fn
    for _ in range(_MAX_VIEW_HOPS):
        if node is None:
            break
        if type(node).__name__ == "AccumulateGrad":
            var = getattr(node, "variable", None)
            if isinstance(var, Tensor) and _same_memory(var, input):
                raise RuntimeError(
                    f"{what}: input shares memory with a leaf tensor that requires grad; "
                    f"use inplace=False")
            break
        for saved in _saved_tensors_of(node):
            if _same_memory(saved, input):
                raise RuntimeError(
                    f"{what}: autograd still needs input's values: "
                    f"{type(node).__name__} (the operation that produced input) saved them "
                    f"for its backward, so they must not be overwritten. Use inplace=False")
        # follow the first differentiable parent only if this node is a view op,
        # i.e. its output (input) aliases its input's memory
        name = type(node).__name__
        if not _is_view_node(name):
            break
        parents = [fn for fn, _ in node.next_functions if fn is not None]
        if not parents:
            break
        node = parents[0]


# autograd nodes of operations whose output aliases their input's memory
_VIEW_NODES = frozenset({
    "View", "UnsafeView", "Reshape", "ReshapeAlias", "Alias", "AsStrided", "Transpose",
    "Permute", "T", "Select", "Slice", "Narrow", "Expand", "Squeeze", "Unsqueeze",
    "Diagonal", "Unfold", "Split", "SplitWithSizes", "Unbind", "Chunk", "Detach",
    "Movedim", "Swapaxes", "Flatten", "Unflatten", "Real", "Imag", "ViewAsReal",
    "ViewAsComplex",
})


def _is_view_node(name: str) -> bool:
    base = name.rstrip("0123456789")
    if base.endswith("Backward"):
        base = base[: -len("Backward")]
    return base in _VIEW_NODES


# --------------------------------------------------------------------------- autograd

_NP_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16}


def _grad_buffer(input: Tensor) -> tuple[np.ndarray[Any, Any], Tensor]:
    """A new buffer for the gradient with respect to ``input``: the NumPy array the
    kernel writes (``out=``) and the tensor over the same memory."""
    if input.is_contiguous():
        # a NumPy allocation: large ones are backed by transparent huge pages,
        # which makes the kernel's first write to the gradient much cheaper
        # than into a fresh torch.empty buffer (fewer page faults)
        if input.dtype == torch.bfloat16:
            gnp = np.empty(tuple(input.shape), dtype=_bf16())
            return gnp, torch.from_numpy(gnp.view(np.int16)).view(torch.bfloat16)
        gnp = np.empty(tuple(input.shape), dtype=_NP_DTYPES[input.dtype])
        return gnp, torch.from_numpy(gnp)
    # same layout as input (keeps AccumulateGrad's layout contract)
    grad_t = torch.empty_like(input, requires_grad=False)
    return _as_numpy(grad_t), grad_t


def _refuse_double_backward(fn: str, alternative: str) -> None:
    if torch.is_grad_enabled():
        # create_graph=True: the stored gradient is a constant to autograd, so a
        # second derivative would silently miss the loss's Hessian
        raise RuntimeError(
            f"{fn}: double backward (create_graph=True) is not supported; use "
            f"{alternative} for higher-order gradients")


def _times_upstream(g: Tensor, grad_loss: Tensor, per_sample: bool,
                    class_dim: int | None) -> Tensor:
    """The forward's gradient ``g`` times the upstream gradient ``grad_loss``.

    ``per_sample`` (reduction="none"): ``grad_loss`` has one entry per sample,
    broadcast over ``class_dim`` (``None``: one entry per element of ``g``).
    When the upstream gradient is exactly 1 (``loss.backward()``, or
    ``loss.sum().backward()`` for "none") ``g`` itself is returned."""
    if per_sample:
        if bool(torch.all(grad_loss == 1)):
            return g
        f = grad_loss if class_dim is None else grad_loss.unsqueeze(class_dim)
        if g.dtype != f.dtype:           # a 16-bit gradient, a float32 loss: one rounding
            return (g.to(f.dtype) * f).to(g.dtype)
        return g * f
    if float(grad_loss) == 1.0:
        return g                         # loss.backward(): nothing to scale
    if g.dtype != grad_loss.dtype:
        return (g.to(grad_loss.dtype) * grad_loss).to(g.dtype)
    return g * grad_loss


class _Options:
    """Everything but the tensors, passed through ``Function.apply`` as one object."""

    __slots__ = ("axis", "ignore_index", "reduction", "label_smoothing", "z_loss",
                 "softcap", "return_lse", "inplace")

    def __init__(self, axis: int, ignore_index: int | None, reduction: _Reduction,
                 label_smoothing: float, z_loss: float, softcap: float | None,
                 return_lse: bool, inplace: bool) -> None:
        self.axis = axis
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.return_lse = return_lse
        self.inplace = inplace


def _call(z: np.ndarray[Any, Any], t: np.ndarray[Any, Any],
          w: np.ndarray[Any, Any] | None, sw: np.ndarray[Any, Any] | None,
          o: _Options, out: np.ndarray[Any, Any] | None, inplace: bool,
          with_grad: bool) -> tuple[Any, ...]:
    kw: dict[str, Any] = dict(axis=o.axis, weight=w, sample_weight=sw,
                              ignore_index=o.ignore_index, reduction=o.reduction,
                              label_smoothing=o.label_smoothing, z_loss=o.z_loss,
                              softcap=o.softcap, return_lse=o.return_lse)
    if not with_grad:
        r = _np_cross_entropy(z, t, **kw)
        return (r[0], None, r[1]) if o.return_lse else (r, None, None)
    r = _np_cross_entropy_with_grad(z, t, out=out, inplace=inplace, **kw)
    return (r[0], r[1], r[2]) if o.return_lse else (r[0], r[1], None)


def _loss_tensor(loss: Any) -> Tensor:
    return torch.from_numpy(np.asarray(loss))


class _CrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, input: Tensor, t: np.ndarray[Any, Any],
                w: np.ndarray[Any, Any] | None, sw: np.ndarray[Any, Any] | None,
                o: _Options) -> Tensor | tuple[Tensor, Tensor]:
        z = _as_numpy(input)
        if o.inplace:
            grad_t = input.detach()
            loss, _, lse = _call(z, t, w, sw, o, None, True, True)
            # we wrote into input's memory behind autograd's back: tell it
            torch.autograd.graph.increment_version(input)
        else:
            gnp, grad_t = _grad_buffer(input)
            loss, _, lse = _call(z, t, w, sw, o, gnp, False, True)
        ctx.save_for_backward(grad_t)
        ctx.reduction = o.reduction          # type: ignore[attr-defined]
        ctx.class_dim = o.axis               # type: ignore[attr-defined]
        loss_t = _loss_tensor(loss)
        if o.return_lse:
            lse_t = _loss_tensor(lse)
            ctx.mark_non_differentiable(lse_t)
            return loss_t, lse_t
        return loss_t

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, *_unused: Any) -> tuple[Tensor | None, ...]:
        _refuse_double_backward("csoftmax.torch.cross_entropy",
                                "torch.nn.functional.cross_entropy")
        (g,) = ctx.saved_tensors
        gi = _times_upstream(g, grad_loss, ctx.reduction == "none", ctx.class_dim)
        return gi, None, None, None, None


# --------------------------------------------------------------------------- public API

@overload
def cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, *,
    sample_weight: Tensor | None = None, ignore_index: int | None = -100,
    reduction: _Reduction = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
    softcap: float | None = None, return_lse: Literal[False] = False, inplace: bool = False,
) -> Tensor: ...
@overload
def cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, *,
    sample_weight: Tensor | None = None, ignore_index: int | None = -100,
    reduction: _Reduction = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
    softcap: float | None = None, return_lse: Literal[True], inplace: bool = False,
) -> tuple[Tensor, Tensor]: ...
@overload
def cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, *,
    sample_weight: Tensor | None = None, ignore_index: int | None = -100,
    reduction: _Reduction = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
    softcap: float | None = None, return_lse: bool = False, inplace: bool = False,
) -> Tensor | tuple[Tensor, Tensor]: ...


def cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, *,
    sample_weight: Tensor | None = None, ignore_index: int | None = -100,
    reduction: _Reduction = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
    softcap: float | None = None, return_lse: bool = False, inplace: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Cross-entropy of ``input`` logits, as ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    input : Tensor
        CPU float32, float64, float16 or bfloat16 logits of shape ``(C,)``,
        ``(N, C)`` or ``(N, C, d1, ...)``: classes on dim 1 (dim 0 for 1-D
        input).  Any strides; no copy is made.  16-bit logits are computed in
        float32 with float64 sums; their gradient is of their dtype, the loss
        float32 (bfloat16 needs the ``ml_dtypes`` package).
    target : Tensor
        Class indices (an integer tensor of ``input``'s shape without the class
        dim) or class probabilities (a float tensor of ``input``'s shape; no
        gradient flows to it).
    weight : Tensor, optional
        Class weights, shape ``(C,)`` (a constant).
    sample_weight : Tensor, optional
        Per-sample weights (shape of the per-sample loss), a csoftmax extension;
        see :func:`csoftmax.cross_entropy`.
    ignore_index, reduction, label_smoothing
        As PyTorch (``ignore_index`` applies to class indices only; ``None``
        disables it).
    z_loss, softcap
        csoftmax extensions: ``z_loss * lse**2`` per sample; logits soft-capped
        to ``softcap * tanh(z / softcap)`` first.
    return_lse : bool
        Also return the per-sample log-sum-exp (a tensor without gradient).
    inplace : bool
        Write the gradient into ``input`` (see the module docstring for the
        rule; refused with ``RuntimeError`` when autograd needs ``input``).

    Returns
    -------
    Tensor, or (Tensor, Tensor) with ``return_lse``
        The loss (a 0-d tensor for "mean"/"sum"; per sample for "none"), of
        ``input``'s dtype (float32 for float16 / bfloat16 input), and the lse.
    """
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise TypeError("csoftmax.torch.cross_entropy: input and target must be torch.Tensor")
    if input.device.type != "cpu" or target.device.type != "cpu":
        raise ValueError(f"csoftmax.torch.cross_entropy: tensors must be on the CPU "
                         f"(input on {input.device}, target on {target.device})")
    if input.dtype not in _CE_DTYPES:
        raise TypeError(f"csoftmax.torch.cross_entropy: input must be float32, float64, "
                        f"float16 or bfloat16, got {input.dtype} (convert with input.float())")
    if input.dim() == 0:
        raise ValueError("csoftmax.torch.cross_entropy: input must have at least one "
                         "dimension (the classes)")
    if input.is_complex() or input.layout != torch.strided:
        raise TypeError("csoftmax.torch.cross_entropy: input must be a dense real tensor")
    axis = 0 if input.dim() == 1 else 1
    t = _target_array(target, input.dtype, "csoftmax.torch.cross_entropy")
    w = _const_tensor(weight, "weight")
    sw = _const_tensor(sample_weight, "sample_weight")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"csoftmax.torch.cross_entropy: reduction must be 'none', 'mean' "
                         f"or 'sum', got {reduction!r}")
    opts = _Options(axis, ignore_index, reduction, float(label_smoothing), float(z_loss),
                    softcap, bool(return_lse), bool(inplace))

    if not (torch.is_grad_enabled() and input.requires_grad):
        # no gradient wanted: the loss alone, input is never written
        loss, _, lse = _call(_as_numpy(input), t, w, sw, opts, None, False, False)
        if return_lse:
            return _loss_tensor(loss), _loss_tensor(lse)
        return _loss_tensor(loss)
    if inplace:
        _check_inplace(input)
    out: Tensor | tuple[Tensor, Tensor] = _CrossEntropyFunction.apply(  # type: ignore[no-untyped-call]
        input, t, w, sw, opts)
    return out


class CrossEntropyLoss(torch.nn.Module):
    """Module form of :func:`cross_entropy` (cf. ``torch.nn.CrossEntropyLoss``).

    ``weight`` is registered as a buffer (it follows ``.to()`` / ``state_dict``);
    ``forward(input, target, sample_weight=None)`` returns the loss.
    """

    weight: Tensor | None

    def __init__(self, weight: Tensor | None = None, *, ignore_index: int | None = -100,
                 reduction: _Reduction = "mean", label_smoothing: float = 0.0,
                 z_loss: float = 0.0, softcap: float | None = None,
                 inplace: bool = False) -> None:
        super().__init__()
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(f"CrossEntropyLoss: reduction must be 'none', 'mean' or "
                             f"'sum', got {reduction!r}")
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction: _Reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.inplace = inplace

    def forward(self, input: Tensor, target: Tensor,
                sample_weight: Tensor | None = None) -> Tensor:
        return cross_entropy(input, target, self.weight, sample_weight=sample_weight,
                             ignore_index=self.ignore_index, reduction=self.reduction,
                             label_smoothing=self.label_smoothing, z_loss=self.z_loss,
                             softcap=self.softcap, inplace=self.inplace)

    def extra_repr(self) -> str:
        parts = [f"reduction={self.reduction!r}", f"ignore_index={self.ignore_index}"]
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        if self.z_loss:
            parts.append(f"z_loss={self.z_loss}")
        if self.softcap is not None:
            parts.append(f"softcap={self.softcap}")
        if self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)


# --------------------------------------------------------------------------- linear + CE

class _LinearOptions:
    __slots__ = ("kw", "reduction", "lead")

    def __init__(self, kw: dict[str, Any], reduction: _Reduction,
                 lead: tuple[int, ...]) -> None:
        self.kw = kw
        self.reduction = reduction
        self.lead = lead


class _LinearCrossEntropyFunction(torch.autograd.Function):
    """Gradients computed in forward (mean/sum) and scaled in backward; for
    reduction="none" they depend on the per-sample upstream gradient and are
    computed in backward instead (one more forward product)."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, linear_weight: Tensor, linear_bias: Tensor | None,
                t: np.ndarray[Any, Any], o: _LinearOptions) -> Tensor:
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                linear_bias is not None and ctx.needs_input_grad[2])
        x = _as_numpy(input)
        w = _as_numpy(linear_weight)
        b = None if linear_bias is None else _as_numpy(linear_bias)
        ctx.reduction = o.reduction
        ctx.need = need
        ctx.t = t
        ctx.o = o
        # (references only: backward recomputes from them when it has to)
        ctx.save_for_backward(input, linear_weight, linear_bias)
        if o.reduction == "none":
            (loss, _), _ = _linear._with_grad_needed(x, w, t, b, (False,) * 3,
                                                     reduction="none", **o.kw)
            ctx.grads = None
            return _loss_tensor(loss)
        (loss, _), grads = _linear._with_grad_needed(x, w, t, b, need,
                                                     reduction=o.reduction, **o.kw)
        ctx.grads = [None if g is None else torch.from_numpy(g) for g in grads]
        return _loss_tensor(loss)

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "csoftmax.torch.linear_cross_entropy: double backward (create_graph=True) "
                "is not supported")
        out = ctx.grads
        if out is None:
            # reduction="none" (the gradients depend on the per-sample upstream
            # gradient), or a second backward through a retained graph
            input, linear_weight, linear_bias = ctx.saved_tensors
            gs = grad_loss.detach().to(torch.float64).numpy()
            _, grads = _linear._with_grad_needed(
                _as_numpy(input), _as_numpy(linear_weight), ctx.t,
                None if linear_bias is None else _as_numpy(linear_bias), ctx.need,
                reduction=ctx.reduction, grad_scale=gs if gs.ndim else float(gs),
                **ctx.o.kw)
            out = [None if g is None else torch.from_numpy(g) for g in grads]
        else:
            # hand the forward's gradients over once and let go of them, so that
            # autograd can adopt them as .grad without a copy
            ctx.grads = None
            if float(grad_loss) != 1.0:
                out = [None if g is None else g * grad_loss for g in out]
        return out[0], out[1], out[2], None, None


def linear_cross_entropy(
    input: Tensor, linear_weight: Tensor, target: Tensor, *,
    linear_bias: Tensor | None = None, weight: Tensor | None = None,
    reduction: _Reduction = "mean", ignore_index: int | None = -100,
    label_smoothing: float = 0.0, sample_weight: Tensor | None = None,
    z_loss: float = 0.0, softcap: float | None = None, chunk_size: int | None = None,
) -> Tensor:
    """Cross-entropy of ``input @ linear_weight.T + linear_bias``, as
    ``torch.nn.functional.linear_cross_entropy``, without the logits.

    Parameters
    ----------
    input : Tensor
        CPU float32 or float64, shape ``(..., D)`` (PyTorch takes ``(D,)`` and
        ``(N, D)``; any leading shape works here).
    linear_weight : Tensor
        ``(V, D)``, the ``nn.Linear`` weight, same dtype.
    target : Tensor
        Class indices of shape ``input.shape[:-1]``, or probabilities
        ``input.shape[:-1] + (V,)``.
    linear_bias : Tensor, optional
        ``(V,)``.
    weight, reduction, ignore_index, label_smoothing
        As PyTorch (``weight``: class weights).  ``ignore_index=None`` disables it.
    sample_weight, z_loss, softcap, chunk_size
        csoftmax extensions (see :func:`csoftmax.linear_cross_entropy`).

    Returns
    -------
    Tensor
        The loss (0-d for "mean"/"sum", ``input.shape[:-1]`` for "none").

    Gradients for ``input``, ``linear_weight`` and ``linear_bias`` (those that
    require grad) are computed in the forward for "mean"/"sum" (as
    Liger-Kernel does) and handed back in backward, scaled by the upstream
    gradient; for "none" they are computed in backward with the per-sample
    upstream gradient (one more forward product), as is a second backward
    through a retained graph.  Tensors are read through zero-copy NumPy views.
    """
    name = "csoftmax.torch.linear_cross_entropy"
    for nm, tt in (("input", input), ("linear_weight", linear_weight), ("target", target)):
        if not isinstance(tt, Tensor):
            raise TypeError(f"{name}: {nm} must be a torch.Tensor")
        if tt.device.type != "cpu":
            raise ValueError(f"{name}: {nm} is on {tt.device}; csoftmax runs on the CPU only")
    if input.dtype not in _FLOAT_DTYPES or linear_weight.dtype != input.dtype:
        raise TypeError(f"{name}: input and linear_weight must both be float32 or both "
                        f"float64, got {input.dtype} and {linear_weight.dtype}")
    if linear_bias is not None:
        if not isinstance(linear_bias, Tensor) or linear_bias.dtype != input.dtype:
            raise TypeError(f"{name}: linear_bias must be a tensor of input's dtype")
    if input.dim() == 0:
        raise ValueError(f"{name}: input must have at least one dimension (the features)")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{name}: reduction must be 'none', 'mean' or 'sum', "
                         f"got {reduction!r}")
    t = _target_array(target, input.dtype, name)
    kw: dict[str, Any] = dict(class_weight=_const_tensor(weight, "weight"),
                              sample_weight=_const_tensor(sample_weight, "sample_weight"),
                              ignore_index=ignore_index,
                              label_smoothing=float(label_smoothing), z_loss=float(z_loss),
                              softcap=softcap, chunk_size=chunk_size)
    wants = torch.is_grad_enabled() and (
        input.requires_grad or linear_weight.requires_grad
        or (linear_bias is not None and linear_bias.requires_grad))
    if not wants:
        b = None if linear_bias is None else _as_numpy(linear_bias)
        return _loss_tensor(_np_linear_cross_entropy(
            _as_numpy(input), _as_numpy(linear_weight), t, bias=b, reduction=reduction,
            **kw))
    o = _LinearOptions(kw, reduction, tuple(input.shape[:-1]))
    out: Tensor = _LinearCrossEntropyFunction.apply(  # type: ignore[no-untyped-call]
        input, linear_weight, linear_bias, t, o)
    return out


# --------------------------------------------------------------------------- binary CE

_BCE = "csoftmax.torch.binary_cross_entropy_with_logits"
_KL = "csoftmax.torch.kl_div"


def _check_logits(input: Tensor, others: tuple[tuple[str, Tensor], ...], fn: str,
                  name: str = "input") -> None:
    """``input`` (the tensor differentiated) and the other required tensors: CPU
    tensors, ``input`` dense real float32/float64."""
    for nm, tt in ((name, input),) + others:
        if not isinstance(tt, Tensor):
            raise TypeError(f"{fn}: {nm} must be a torch.Tensor, got {type(tt).__name__}")
        if tt.device.type != "cpu":
            raise ValueError(f"{fn}: {nm} is on {tt.device}; csoftmax runs on the CPU only")
    if input.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: {name} must be float32 or float64, got {input.dtype} "
                        f"(convert with {name}.float())")
    if input.layout != torch.strided:
        raise TypeError(f"{fn}: {name} must be a dense (strided) tensor")


def _float_const(t: Tensor | None, name: str, dtype: torch.dtype, fn: str,
                 wrt: str) -> np.ndarray[Any, Any] | None:
    """A constant real operand: float32/float64 tensors as zero-copy NumPy views
    (the kernels take either), other real dtypes converted to ``dtype`` (bfloat16,
    for one, has no NumPy view)."""
    if isinstance(t, Tensor) and t.is_complex():
        raise TypeError(f"{fn}: {name} must be real, got {t.dtype}")
    conv = None if not isinstance(t, Tensor) or t.dtype in _FLOAT_DTYPES else dtype
    return _const_tensor(t, name, conv, fn=fn, wrt=wrt)


class _BinaryCrossEntropyFunction(torch.autograd.Function):
    """Gradient computed in forward (one pass), scaled by the upstream gradient in
    backward, as :class:`_CrossEntropyFunction`."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, t: np.ndarray[Any, Any],
                w: np.ndarray[Any, Any] | None, pw: np.ndarray[Any, Any] | None,
                reduction: _Reduction, inplace: bool) -> Tensor:
        z = _as_numpy(input)
        if inplace:
            grad_t = input.detach()
            loss, _ = _np_bce_with_grad(z, t, weight=w, pos_weight=pw, reduction=reduction,
                                        inplace=True)
            # we wrote into input's memory behind autograd's back: tell it
            torch.autograd.graph.increment_version(input)
        else:
            gnp, grad_t = _grad_buffer(input)
            loss, _ = _np_bce_with_grad(z, t, weight=w, pos_weight=pw, reduction=reduction,
                                        out=gnp)
        ctx.save_for_backward(grad_t)
        ctx.reduction = reduction
        return _loss_tensor(loss)

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        _refuse_double_backward(_BCE, "torch.nn.functional.binary_cross_entropy_with_logits")
        (g,) = ctx.saved_tensors
        # reduction="none": one upstream entry per element, same shape as g
        gi = _times_upstream(g, grad_loss, ctx.reduction == "none", None)
        return gi, None, None, None, None, None


def binary_cross_entropy_with_logits(
    input: Tensor, target: Tensor, weight: Tensor | None = None, *,
    pos_weight: Tensor | None = None, reduction: _Reduction = "mean", inplace: bool = False,
) -> Tensor:
    """Sigmoid (binary / multi-label) cross-entropy of logits, as
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Per element ``w * (p * t * softplus(-z) + (1 - t) * softplus(z))``, gradient
    ``w * ((1 - t) * sigmoid(z) - p * t * sigmoid(-z))`` (``w * (sigmoid(z) - t)``
    without ``pos_weight``); see :func:`csoftmax.binary_cross_entropy_with_grad`.

    Parameters
    ----------
    input : Tensor
        CPU float32 or float64 logits, any shape; any strides, no copy is made.
    target : Tensor
        Same shape as ``input``; (soft) targets in [0, 1] (``ValueError``
        otherwise).  float32/float64 are read as they are; other dtypes (integer
        0/1 labels, bfloat16, ...) are converted to ``input``'s dtype (PyTorch
        refuses integer targets).  A constant: no gradient flows to it.
    weight : Tensor, optional
        Finite, >= 0, broadcastable to ``input`` (a constant).
    pos_weight : Tensor, optional
        Finite, >= 0, of shape ``()``, ``(1,)`` or ``(C,)`` with ``C =
        input.shape[-1]``: the weight of the positive term along the last dim (a
        constant).  PyTorch also broadcasts 2-D ``pos_weight``; here it must be
        at most 1-D.
    reduction : {"mean", "sum", "none"}
        As PyTorch ("mean": over all elements; nan for an empty input).
    inplace : bool
        csoftmax extension: write the gradient into ``input`` (the rule of
        :func:`cross_entropy`'s ``inplace``, see the module docstring).

    Returns
    -------
    Tensor
        The loss, of ``input``'s dtype: 0-d for "mean"/"sum", ``input``'s shape
        for "none".

    Only ``input`` gets a gradient: ``target``, ``weight`` and ``pos_weight``
    that require grad raise ``RuntimeError`` (pass ``.detach()``), rather than
    silently getting none.  Higher-order gradients are not available.
    """
    fn = _BCE
    _check_logits(input, (("target", target),), fn)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{fn}: reduction must be 'none', 'mean' or 'sum', "
                         f"got {reduction!r}")
    if target.shape != input.shape:
        raise ValueError(f"{fn}: target size ({target.shape}) must be the same as input "
                         f"size ({input.shape})")
    t = _float_const(target, "target", input.dtype, fn, "input")
    assert t is not None
    w = _float_const(weight, "weight", input.dtype, fn, "input")
    pw = _float_const(pos_weight, "pos_weight", input.dtype, fn, "input")
    if not (torch.is_grad_enabled() and input.requires_grad):
        # no gradient wanted: the loss alone, input is never written
        return _loss_tensor(_np_bce(_as_numpy(input), t, weight=w, pos_weight=pw,
                                    reduction=reduction))
    if inplace:
        _check_inplace(input, fn)
    out: Tensor = _BinaryCrossEntropyFunction.apply(  # type: ignore[no-untyped-call]
        input, t, w, pw, reduction, bool(inplace))
    return out


class BCEWithLogitsLoss(torch.nn.Module):
    """Module form of :func:`binary_cross_entropy_with_logits` (cf.
    ``torch.nn.BCEWithLogitsLoss``).

    ``weight`` and ``pos_weight`` are registered as buffers (they follow
    ``.to()`` / ``state_dict``); ``forward(input, target)`` returns the loss.
    """

    weight: Tensor | None
    pos_weight: Tensor | None

    def __init__(self, weight: Tensor | None = None, *, reduction: _Reduction = "mean",
                 pos_weight: Tensor | None = None, inplace: bool = False) -> None:
        super().__init__()
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(f"BCEWithLogitsLoss: reduction must be 'none', 'mean' or "
                             f"'sum', got {reduction!r}")
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.reduction: _Reduction = reduction
        self.inplace = inplace

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return binary_cross_entropy_with_logits(
            input, target, self.weight, pos_weight=self.pos_weight,
            reduction=self.reduction, inplace=self.inplace)

    def extra_repr(self) -> str:
        parts = [f"reduction={self.reduction!r}"]
        if self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)


# --------------------------------------------------------------------------- distillation KL

class _KLOptions:
    __slots__ = ("axis", "temperature", "teacher_kind", "reduction")

    def __init__(self, axis: int, temperature: float, teacher_kind: _TeacherKind,
                 reduction: _KLReduction) -> None:
        self.axis = axis
        self.temperature = temperature
        self.teacher_kind = teacher_kind
        self.reduction = reduction


class _KLDivFunction(torch.autograd.Function):
    """Gradient for the student computed in forward, scaled in backward (per row
    for reduction="none"), as :class:`_CrossEntropyFunction`."""

    @staticmethod
    def forward(ctx: Any, student: Tensor, t: np.ndarray[Any, Any],
                mask: np.ndarray[Any, Any] | None, o: _KLOptions) -> Tensor:
        gnp, grad_t = _grad_buffer(student)
        loss, _ = _np_kl_div_with_grad(_as_numpy(student), t, axis=o.axis,
                                       temperature=o.temperature,
                                       teacher_kind=o.teacher_kind,
                                       reduction=o.reduction, mask=mask, out=gnp)
        ctx.save_for_backward(grad_t)
        ctx.reduction = o.reduction
        ctx.class_dim = o.axis
        return _loss_tensor(loss)

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        _refuse_double_backward(_KL, "torch.nn.functional.kl_div")
        (g,) = ctx.saved_tensors
        gi = _times_upstream(g, grad_loss, ctx.reduction == "none", ctx.class_dim)
        return gi, None, None, None


def kl_div(
    student_logits: Tensor, teacher: Tensor, *, temperature: float = 1.0,
    teacher_kind: _TeacherKind = "logits", reduction: _KLReduction = "batchmean",
    mask: Tensor | None = None, dim: int = -1,
) -> Tensor:
    """Distillation loss ``KL(p_teacher || softmax(student_logits / T)) * T**2``.

    Equals ``F.kl_div(F.log_softmax(student_logits / T, dim), p, reduction=...) *
    T**2`` with ``p = softmax(teacher / T)`` for ``teacher_kind="logits"``, ``p =
    exp(teacher)`` for ``"log_probs"`` (temperature not applied) and ``p =
    teacher`` for ``"probs"`` (in [0, 1]); ``0 * log 0 = 0``.  Note the arguments:
    *logits* of the student, not ``torch.nn.functional.kl_div``'s log-probabilities.
    See :func:`csoftmax.kl_div_with_grad`.

    Parameters
    ----------
    student_logits : Tensor
        CPU float32 or float64, classes along ``dim``; any strides, no copy.
    teacher : Tensor
        Same shape; a constant (no gradient flows to it).  float32/float64 are
        read as they are, other float dtypes converted to the student's.
    temperature : float
        ``T > 0``, finite.
    teacher_kind : {"logits", "log_probs", "probs"}
    reduction : {"batchmean", "sum", "mean", "none"}
        "none": the per-row KL (the shape without ``dim``); "sum"; "batchmean":
        the sum over the counted rows divided by their number (PyTorch's
        "batchmean" on 2-D input); "mean": divided by rows * C (PyTorch's "mean").
    mask : Tensor, optional
        Boolean, the row shape: rows where it is False give 0 (loss and
        gradient) and do not count in "batchmean"/"mean".
    dim : int
        The class dim (default: the last, as for ``(batch, seq, vocab)`` logits).

    Returns
    -------
    Tensor
        The loss, of the student's dtype.

    Only ``student_logits`` gets a gradient, ``T * (sum(p) * q - p)`` per row
    (``T * (q - p)`` when ``p`` sums to 1) with the reduction's factor.  A
    teacher that requires grad raises ``RuntimeError`` instead of being detached
    silently (in online/mutual distillation the teacher is trained too, and would
    quietly get no gradient): pass ``teacher.detach()``, or compute it under
    ``torch.no_grad()``.  Higher-order gradients are not available.
    """
    fn = _KL
    _check_logits(student_logits, (("teacher", teacher),), fn, name="student_logits")
    nd = student_logits.dim()
    if nd == 0:
        raise ValueError(f"{fn}: student_logits must have at least one dimension "
                         f"(the classes)")
    if not isinstance(dim, int) or not -nd <= dim < nd:
        raise IndexError(f"{fn}: dim {dim!r} out of range for a {nd}-d student_logits")
    axis = dim % nd
    _check_kl_options(reduction, teacher_kind, fn)
    if teacher.shape != student_logits.shape:
        raise ValueError(f"{fn}: teacher shape {tuple(teacher.shape)} differs from "
                         f"student_logits shape {tuple(student_logits.shape)}")
    if not teacher.is_floating_point():
        raise TypeError(f"{fn}: teacher must be a float tensor, got {teacher.dtype}")
    t = _float_const(teacher, "teacher", student_logits.dtype, fn, "student_logits")
    assert t is not None
    if mask is not None and isinstance(mask, Tensor) and mask.dtype != torch.bool:
        raise TypeError(f"{fn}: mask must be a bool tensor, got {mask.dtype}")
    m = _const_tensor(mask, "mask", fn=fn, wrt="student_logits")
    o = _KLOptions(axis, float(temperature), teacher_kind, reduction)
    if not (torch.is_grad_enabled() and student_logits.requires_grad):
        return _loss_tensor(_np_kl_div(_as_numpy(student_logits), t, axis=axis,
                                       temperature=o.temperature, teacher_kind=teacher_kind,
                                       reduction=reduction, mask=m))
    out: Tensor = _KLDivFunction.apply(  # type: ignore[no-untyped-call]
        student_logits, t, m, o)
    return out


def _check_kl_options(reduction: str, teacher_kind: str, fn: str) -> None:
    """The KL's option values, as the NumPy function takes them (checked here before
    any tensor work, also for the module at construction)."""
    if reduction not in _KL_REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be 'batchmean', 'sum', 'mean' or 'none', "
                         f"got {reduction!r}")
    if teacher_kind not in _TEACHER_KINDS:
        raise ValueError(f"{fn}: teacher_kind must be 'logits', 'log_probs' or 'probs', "
                         f"got {teacher_kind!r}")


class DistillationKLLoss(torch.nn.Module):
    """Module form of :func:`kl_div`: ``forward(student_logits, teacher,
    mask=None)`` returns ``KL(p_teacher || q_student) * T**2``.

    Not a drop-in ``torch.nn.KLDivLoss`` (which takes log-probabilities and a
    target distribution): the student is given as logits, the teacher as
    ``teacher_kind`` says.
    """

    def __init__(self, temperature: float = 1.0, *, teacher_kind: _TeacherKind = "logits",
                 reduction: _KLReduction = "batchmean", dim: int = -1) -> None:
        super().__init__()
        _check_kl_options(reduction, teacher_kind, "DistillationKLLoss")
        self.temperature = float(temperature)
        self.teacher_kind: _TeacherKind = teacher_kind
        self.reduction: _KLReduction = reduction
        self.dim = dim

    def forward(self, student_logits: Tensor, teacher: Tensor,
                mask: Tensor | None = None) -> Tensor:
        return kl_div(student_logits, teacher, temperature=self.temperature,
                      teacher_kind=self.teacher_kind, reduction=self.reduction,
                      mask=mask, dim=self.dim)

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, teacher_kind={self.teacher_kind!r}, "
                f"reduction={self.reduction!r}, dim={self.dim}")

"""The neighbouring losses: binary (sigmoid) cross-entropy, distillation KL,
per-token log-probabilities with entropy.

Design
1. Each function is a section of this module over one C kernel family of its
   own (``src_c/kernels_bce.h``, ``kernels_kl.h``, ``kernels_tokens.h``), with
   the same name through the layers: ``binary_cross_entropy`` ->
   ``_core.bce_rows`` -> ``csm_bce_<dtype>``; ``kl_div`` -> ``kl_div_rows`` ->
   ``csm_kl_div_<dtype>``; ``token_logprobs`` -> ``token_logprobs_rows`` ->
   ``csm_token_logprobs_<dtype>``.  The float64 definitions are the functions
   of the same names in ``csoftmax.reference``.
2. The front end settles dtypes (``_api._dtypes``: float32/float64 kept,
   float16 computed in float32, integers in float64), builds the (n0, n1, c)
   row views without copies where NumPy can express them (``_api._rows3``),
   validates every option before any output is written, and reduces the
   kernels' per-row float64 sums in a fixed order (``_core.sum_f64``), so
   results do not depend on the thread count.
3. The kernels check what only a full read can check (labels, binary targets
   in [0, 1]) before they write anything; their errors become ValueError here.
4. A new loss goes the same way: a kernel file under ``src_c/``, a wrapper in
   ``_core.pyx``, a section here, a reference, rows in the test registry.
"""
from __future__ import annotations

import math
import operator
import types

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from . import _core
from ._api import (_alloc_rows, _dtypes, _finish_grad, _grad_out, _grad_rows, _is_half,
                   _label_rows, _labels_int64, _native, _opt_float, _raise_label, _row_dtype,
                   _rows3, _rows3_in)

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "kl_div",
    "kl_div_with_grad",
    "token_logprobs",
]


def _real_array(v, what: str, name: str) -> np.ndarray:
    a = np.asarray(v)
    if a.dtype.kind not in "fiub" and not _is_half(a.dtype):
        raise TypeError(f"{what}: {name} must be a real array, got dtype {a.dtype}")
    return a


def _finite_nonneg(a: np.ndarray, what: str, name: str) -> None:
    if a.size and not np.all((a >= 0) & (a < np.inf)):       # NaN fails both
        bad = "NaN" if np.isnan(a).any() else ("infinite" if np.isinf(a).any() else "negative")
        raise ValueError(f"{what}: {name} must be finite and non-negative (found {bad} values)")


def _scalar(total: float, rdt: np.dtype):
    with np.errstate(over="ignore"):
        return rdt.type(total)


def _upstream_array(grad_scale, reduction: str, shape, what: str, name: str):
    """(scalar factor, None) or, with reduction="none", (1.0, a float64 copy of the
    per-element / per-row upstream gradient of `shape`)."""
    if np.ndim(grad_scale) == 0:
        return _opt_float(grad_scale, "grad_scale", name), None
    if reduction != "none":
        raise ValueError(f"{name}: an array grad_scale needs reduction='none'")
    arr = np.asarray(grad_scale, dtype=np.float64)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: grad_scale has shape {arr.shape}, expected the {what} "
                         f"{tuple(shape)}")
    return 1.0, arr.copy()


# --------------------------------------------------------------------------- binary cross-entropy

_BCE_REDUCTIONS = ("none", "sum", "mean")


def _bce(logits, target, weight, pos_weight, reduction, grad_scale, out, inplace, want_grad,
         name):
    if reduction not in _BCE_REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_BCE_REDUCTIONS}, got {reduction!r}")
    z_in = logits
    z = np.asarray(logits)
    cdt, rdt = _dtypes(z.dtype, name)
    ldt = _row_dtype(rdt, None, name)     # the loss: float32 for 16-bit input
    t = _real_array(target, name, "target")
    if t.shape != z.shape:
        raise ValueError(f"{name}: target has shape {t.shape}, expected the logits' shape "
                         f"{z.shape}")
    shape = z.shape
    c = shape[-1] if z.ndim else 1
    w = None
    if weight is not None:
        w = _real_array(weight, name, "weight")
        try:
            bshape = np.broadcast_shapes(w.shape, shape)
        except ValueError:
            bshape = None
        if bshape != shape:
            raise ValueError(f"{name}: weight of shape {w.shape} does not broadcast to the "
                             f"logits' shape {shape}")
        _finite_nonneg(w, name, "weight")
    p = None
    if pos_weight is not None:
        p = _real_array(pos_weight, name, "pos_weight")
        if p.ndim > 1 or (p.ndim == 1 and p.shape[0] not in (1, c)):
            raise ValueError(f"{name}: pos_weight has shape {p.shape}; expected ({c},) (one "
                             f"per element of the last axis) or a single value")
        _finite_nonneg(p, name, "pos_weight")
    gs0, gs_arr = 1.0, None
    if want_grad:
        gs0, gs_arr = _upstream_array(grad_scale, reduction, shape, "logits' shape", name)
        out = _grad_out(z_in, out, inplace, shape, rdt, name)
    n = z.size
    if reduction == "mean":
        gs0 = gs0 / n if n else math.nan        # the mean's 1/numel, as PyTorch's

    # rows: the last axis, the leading axes merged (a 0-d array is one element)
    zz = z.reshape(1) if z.ndim == 0 else z
    axes = (zz.ndim - 1,)
    z3 = _rows3_in(_native(zz, cdt), axes)
    tt = _native(t.reshape(zz.shape), cdt)
    w3 = None
    if w is not None:
        wb = np.broadcast_to(_native(w, cdt), shape).reshape(zz.shape)
        w3 = _rows3(wb, axes)
        if w3 is None:
            w3 = _rows3_in(np.ascontiguousarray(wb), axes)
    pv = None
    if p is not None:
        pv = np.ascontiguousarray(np.broadcast_to(p.astype(cdt), (c,)))

    g = grad3 = outz = None
    if want_grad:
        outz = None if out is None else out.reshape(zz.shape)     # a view (same size)
        g, grad3 = _grad_rows(outz, zz, cdt, axes)
        # inputs living in the gradient's memory (other than the logits exactly)
        if np.may_share_memory(tt, g):
            tt = tt.copy()
        if w3 is not None and np.may_share_memory(w3, g):
            w3 = w3.copy()
    t3 = _rows3_in(tt, axes)
    rowloss = eloss = el3 = None
    if reduction == "none":
        eloss, el3 = _alloc_rows(zz.shape, cdt, axes)
    else:
        rowloss = np.zeros(z3.shape[:2], dtype=np.float64)
    if n:
        try:
            _core.bce_rows(z3, t3, rowloss, el3, grad3, gs0, w3, pv)
        except _core.TargetError as e:
            row, k = int(e.row), int(e.index)
            flat = row * c + k
            pos = tuple(int(i) for i in np.unravel_index(flat, shape)) if z.ndim else ()
            val = float(t[pos])
            raise ValueError(f"{name}: target {val} at index {pos} is outside [0, 1]") from None
    if reduction == "none":
        with np.errstate(over="ignore"):
            res = eloss.reshape(shape).astype(ldt)
    else:
        total = _core.sum_f64(rowloss.reshape(-1)) if n else 0.0
        res = _scalar(total if reduction == "sum" else (total / n if n else math.nan), ldt)
    if not want_grad:
        return res
    if gs_arr is not None:
        g *= gs_arr.reshape(g.shape).astype(g.dtype, copy=False)
    grad = _finish_grad(g, outz, rdt)
    return res, (out if out is not None else grad.reshape(shape))


def binary_cross_entropy(logits, target, *, weight=None, pos_weight=None, reduction="mean"):
    """Binary (sigmoid) cross-entropy with logits, PyTorch's
    ``binary_cross_entropy_with_logits``.

    Per element, with ``sp(x) = log(1 + exp(x))`` evaluated stably as
    ``max(x, 0) + log1p(exp(-|x|))``::

        l = w * (p * t * sp(-z) + (1 - t) * sp(z))

    a sum of two non-negative terms (a term whose factor ``t`` or ``1 - t`` is
    exactly 0 is exactly 0, so infinite logits with hard targets give 0).

    Parameters
    ----------
    logits : array_like
        Scores ``z`` of any shape (float32/float64 kept, float16 computed in
        float32, integers in float64).
    target : array_like
        Same shape; (soft) targets in ``[0, 1]``.
    weight : array_like, optional
        Broadcastable to the logits' shape (PyTorch's broadcast); >= 0, finite.
    pos_weight : array_like, optional
        Weight ``p`` of the positive term per element of the LAST axis (shape
        ``(C,)`` or one value); >= 0, finite.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` divides the sum by the number of elements (weights do not
        change it, as in PyTorch); ``"none"`` returns the elementwise loss.

    Returns
    -------
    loss : NumPy scalar or ndarray (the logits' result dtype)

    Raises
    ------
    ValueError
        Shape mismatch, a target outside ``[0, 1]`` or NaN (naming it),
        negative / non-finite weights, an unknown reduction.
    TypeError
        Complex or non-numeric input.
    """
    return _bce(logits, target, weight, pos_weight, reduction, 1.0, None, False, False,
                "binary_cross_entropy")


def binary_cross_entropy_with_grad(logits, target, *, weight=None, pos_weight=None,
                                   reduction="mean", grad_scale=1.0, out=None, inplace=False):
    """Binary cross-entropy with logits and its gradient in one pass.

    ``d l / d z = w * ((1 - t) * sigmoid(z) - p * t * sigmoid(-z))``, which is
    ``w * (sigmoid(z) - t)`` without `pos_weight`; the gradient is of the
    reduced loss ("mean": divided by the number of elements) times
    `grad_scale` (a scalar, or with ``reduction="none"`` an array of the
    logits' shape: the upstream gradient per element).

    Parameters are those of :func:`binary_cross_entropy`, and

    grad_scale : float or array_like
    out : ndarray, optional
        Preallocated gradient (logits' shape, result dtype); may be `logits`.
    inplace : bool
        Write the gradient into `logits` (a writeable floating-point ndarray).

    Returns
    -------
    (loss, grad)

    On any error neither `out` nor `logits` is modified.
    """
    return _bce(logits, target, weight, pos_weight, reduction, grad_scale, out, inplace, True,
                "binary_cross_entropy_with_grad")


# --------------------------------------------------------------------------- distillation KL

_KL_REDUCTIONS = ("batchmean", "sum", "mean", "none")
_TEACHER_KINDS = ("logits", "log_probs", "probs")


def _kl(student_logits, teacher, axis, temperature, teacher_kind, reduction, mask, grad_scale,
        out, want_grad, name):
    if reduction not in _KL_REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_KL_REDUCTIONS}, got {reduction!r}")
    if teacher_kind not in _TEACHER_KINDS:
        raise ValueError(f"{name}: teacher_kind must be one of {_TEACHER_KINDS}, "
                         f"got {teacher_kind!r}")
    s = np.asarray(student_logits)
    cdt, rdt = _dtypes(s.dtype, name)
    ldt = _row_dtype(rdt, None, name)     # the loss: float32 for 16-bit input
    if s.ndim == 0:
        raise ValueError(f"{name}: the student logits need at least one dimension (the classes)")
    t = _real_array(teacher, name, "teacher")
    if t.shape != s.shape:
        raise ValueError(f"{name}: teacher has shape {t.shape}, expected the student's shape "
                         f"{s.shape}")
    T = _opt_float(temperature, "temperature", name, 0.0, lo_open=True)
    ax = normalize_axis_index(operator.index(axis), s.ndim)
    batch_shape = s.shape[:ax] + s.shape[ax + 1:]
    c = s.shape[ax]
    nrows = math.prod(batch_shape)
    n0, n1 = math.prod(s.shape[:ax]), math.prod(s.shape[ax + 1:])
    rm = None
    counted = nrows
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != np.bool_:
            raise TypeError(f"{name}: mask must be a boolean array, got dtype {m.dtype}")
        if m.shape != batch_shape:
            raise ValueError(f"{name}: mask has shape {m.shape}, expected the row shape "
                             f"{batch_shape}")
        rm = np.ascontiguousarray(m, dtype=np.uint8).reshape(-1)
        counted = int(np.count_nonzero(rm))
    gs0, gs_arr = 1.0, None
    if want_grad:
        gs0, gs_arr = _upstream_array(grad_scale, reduction, batch_shape, "row shape", name)
        gs_arr = None if gs_arr is None else gs_arr.reshape(-1)
        out = _grad_out(None, out, False, s.shape, rdt, name)
    kind = 0
    tc = _native(t, cdt)
    if teacher_kind == "probs":
        ok = (tc >= 0) & (tc <= 1)
        if rm is not None:          # masked rows are never read: not checked either
            ok |= ~np.expand_dims(rm.reshape(batch_shape).astype(bool), ax)
        if tc.size and not np.all(ok):
            raise ValueError(f"{name}: teacher probabilities must lie in [0, 1] (found values "
                             f"outside, or NaN)")
        with np.errstate(divide="ignore"):
            tc = np.log(tc)             # log 0 = -inf: a zero weight, left out by the kernel
        kind = 1
    elif teacher_kind == "log_probs":
        kind = 1
    denom = {"batchmean": counted, "mean": counted * c}.get(reduction, 1)
    scale = gs0 * ((1.0 / denom if denom else math.nan) if reduction in ("batchmean", "mean")
                   else 1.0)
    axes = (ax,)
    loss = np.zeros((n0, n1), dtype=np.float64)
    g = grad3 = None
    if want_grad:
        g, grad3 = _grad_rows(out, s, cdt, axes)
        if np.may_share_memory(tc, g):
            tc = tc.copy()
    if nrows and c:
        s3 = _rows3_in(_native(s, cdt), axes)
        t3 = _rows3_in(tc, axes)
        _core.kl_div_rows(s3, t3, loss, grad3, T, kind, scale, gs_arr, rm)
    if reduction == "none":
        with np.errstate(over="ignore"):
            res = loss.reshape(batch_shape).astype(ldt)
    else:
        total = _core.sum_f64(np.ascontiguousarray(loss).reshape(-1)) if nrows else 0.0
        if reduction == "sum":
            res = _scalar(total, ldt)
        else:
            res = _scalar(total / denom if denom else math.nan, ldt)
    if not want_grad:
        return res
    return res, _finish_grad(g, out, rdt)


_KL_DOC = """
    Parameters
    ----------
    student_logits : array_like
        Student scores ``s``, classes along `axis` (float32/float64 kept,
        float16 computed in float32, integers in float64).
    teacher : array_like
        Same shape: the teacher's logits, log-probabilities or probabilities
        (`teacher_kind`).
    axis : int
        The class axis (default last).
    temperature : float
        ``T > 0``: ``q = softmax(s / T)``; the loss is scaled by ``T**2``.
    teacher_kind : {"logits", "log_probs", "probs"}
        ``p = softmax(teacher / T)``, ``exp(teacher)`` or ``teacher`` (in
        ``[0, 1]``; converted to its log once, one temporary of its size).
        The temperature applies to teacher *logits* only.
    reduction : {"batchmean", "sum", "mean", "none"}
        ``"batchmean"``: the sum over rows divided by the number of counted
        rows (PyTorch's ``batchmean`` for a 2-D input); ``"mean"``: divided by
        rows x classes (PyTorch's ``"mean"``); ``"none"``: per row (the shape
        of `student_logits` without `axis`).
    mask : array_like of bool, optional
        Row shape; rows where it is False give loss 0, gradient 0, are not
        read and do not count in "batchmean"/"mean".
"""


def kl_div(student_logits, teacher, *, axis=-1, temperature=1.0, teacher_kind="logits",
           reduction="batchmean", mask=None):
    return _kl(student_logits, teacher, axis, temperature, teacher_kind, reduction, mask, 1.0,
               None, False, "kl_div")


kl_div.__doc__ = """Distillation KL divergence ``T**2 * KL(p_teacher || softmax(s / T))``.

    Per row ``T**2 * sum_k p_k (log p_k - log q_k)`` with ``0 log 0 = 0``:
    the same as ``F.kl_div(F.log_softmax(s / T, axis), p, reduction=...) *
    T**2`` in PyTorch (per row; see `reduction`).  One read of each row for
    the loss (chunked online max, as the softmax kernels).
""" + _KL_DOC + """
    Returns
    -------
    loss : NumPy scalar or ndarray (the student's result dtype)

    Raises
    ------
    ValueError
        Shape mismatch, ``temperature <= 0`` or not finite, probabilities
        outside ``[0, 1]``, unknown reduction / teacher_kind, a mask of the
        wrong shape.
    TypeError
        A non-boolean mask, complex or non-numeric input.
    """


def kl_div_with_grad(student_logits, teacher, *, axis=-1, temperature=1.0,
                     teacher_kind="logits", reduction="batchmean", mask=None, grad_scale=1.0,
                     out=None):
    return _kl(student_logits, teacher, axis, temperature, teacher_kind, reduction, mask,
               grad_scale, out, True, "kl_div_with_grad")


kl_div_with_grad.__doc__ = """Distillation KL (as :func:`kl_div`) and its gradient for the student.

    Per row ``d loss / d s = T * (sum(p) * q - p)`` (``T * (q - p)`` for a
    normalised teacher), for the chosen reduction, times `grad_scale` (a
    scalar, or with ``reduction="none"`` an array of the row shape).  The
    loss takes one read of both rows, the gradient one more.
""" + _KL_DOC + """
    grad_scale : float or array_like
    out : ndarray, optional
        Preallocated gradient (student's shape and result dtype); may be the
        student logits themselves.

    Returns
    -------
    (loss, grad)
    """


# --------------------------------------------------------------------------- token log-probabilities

def token_logprobs(logits, labels, *, axis=-1, return_entropy=False, ignore_index=None):
    """``log softmax(logits)[label]`` per row and optionally the entropy, in one pass.

    The N x C log-softmax is never written: one read of each row gives the
    label's log-probability and, with ``return_entropy=True``, the entropy
    ``-sum_k p_k log p_k`` (``0 log 0 = 0``), what PPO/GRPO-style training
    needs per token.

    Parameters
    ----------
    logits : array_like
        Scores, classes along `axis` (float32/float64 kept, float16 computed
        in float32, integers in float64).
    labels : array_like of int
        The row shape (logits' shape without `axis`); each in ``[0, C)``
        unless equal to `ignore_index`.
    axis : int
    return_entropy : bool
    ignore_index : int, optional
        Rows with this label give 0 (and entropy 0); their logits are not read.

    Returns
    -------
    logp : ndarray (row shape, the logits' result dtype)
    entropy : ndarray
        Only with ``return_entropy=True``.

    Special rows follow :func:`log_softmax` / :func:`softmax`: a NaN gives
    NaN; a row holding +inf gives NaN at a +inf label and -inf elsewhere, and
    entropy NaN; a row of only -inf gives NaN.

    Raises
    ------
    ValueError
        A label out of range (naming the sample), a shape mismatch.
    TypeError
        Non-integer labels, complex or non-numeric logits.
    """
    name = "token_logprobs"
    z = np.asarray(logits)
    cdt, rdt = _dtypes(z.dtype, name)
    ldt = _row_dtype(rdt, None, name)     # the loss: float32 for 16-bit input
    if z.ndim == 0:
        raise ValueError(f"{name}: logits need at least one dimension (the classes)")
    ax = normalize_axis_index(operator.index(axis), z.ndim)
    batch_shape = z.shape[:ax] + z.shape[ax + 1:]
    c = z.shape[ax]
    n0, n1 = math.prod(z.shape[:ax]), math.prod(z.shape[ax + 1:])
    t = np.asarray(labels)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: labels must be integers, got dtype {t.dtype}")
    if t.shape != batch_shape:
        raise ValueError(f"{name}: labels have shape {t.shape}; expected {batch_shape} "
                         f"(logits shape {z.shape} without the class axis {ax})")

    ig = None
    if ignore_index is not None:
        try:
            ig = operator.index(ignore_index)
        except TypeError:
            raise TypeError(f"{name}: ignore_index must be an integer or None") from None
    sp = types.SimpleNamespace(ignore_index=ig)     # _labels_int64 may remap it
    lab = _labels_int64(t, c, sp)
    lab2, ig, use_ignore = _label_rows(lab, n0, n1, sp.ignore_index, batch_shape, c)
    logp = np.zeros((n0, n1), dtype=np.float64)
    ent = np.zeros((n0, n1), dtype=np.float64) if return_entropy else None
    if n0 * n1 and c:
        z3 = _rows3_in(_native(z, cdt), (ax,))
        try:
            _core.token_logprobs_rows(z3, lab2, logp, ent, ig, use_ignore)
        except _core.LabelError as e:
            _raise_label(e.row, e.value, batch_shape, c)
    with np.errstate(over="ignore"):
        lp = logp.reshape(batch_shape).astype(ldt)
        if not return_entropy:
            return lp
        return lp, ent.reshape(batch_shape).astype(ldt)

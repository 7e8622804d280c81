"""Class-axis partials: log-sum-exp and cross-entropy of rows whose classes are split.

Design
------
1. A *state* summarises one slice of a row's classes in six float64 numbers
   (``STATE_FIELDS``): the max ``m`` (of the soft-capped logits), how many
   elements equal it, the sum of ``exp(x - m)`` over the others, the target's
   logit when the label lies in the slice (else 0), and with label smoothing
   the slice's sum of class weights ``t`` and ``sum t_k (sh - x_k)`` with
   ``sh = m`` (finite) or 0.  These are the per-chunk quantities the one-piece
   C row pass combines (``src_c/kernels_partial.h``), computed by the same
   code in one read of the slice.
2. States merge left to right in C (``src_c/partial_merge.c``) exactly as the
   row pass merges its chunks; a merged state is a state, so merges nest in
   any tree.  The log-sum-exp is ``m + log1p(count - 1 + s)`` (the log1p form:
   ``[0, -40]`` is exact; a loss near 0 keeps its relative accuracy).  A
   single state (the whole row in one slice) gives the one-piece result of the
   row kernels bit for bit; a merge of several agrees with it to a few units
   in the last place of float64 (README, "Beyond one machine", states the
   bound and ``tests/test_partial.py`` checks it).
3. SciPy's special values survive the merge: NaN anywhere gives NaN, else a
   +inf gives +inf, all -inf (or no classes) gives -inf; the cross-entropy
   and the merged softmax / log-softmax / gradient follow the one-piece
   functions on such rows.
4. The cross-entropy's options are validated by the one-piece code
   (``_api._prepare_xent`` on a zero-stride stand-in of the logits), so the
   two cannot drift apart; labels are checked against the whole class axis
   before anything is computed.  Every option merges: class weights, sample
   weights, ``ignore_index``, label smoothing, z-loss, soft-capping (the
   state holds capped values).  Probability targets are not part of the
   partial interface (their target dot product would need the targets
   sliced like the logits; use the one-piece functions).
5. The slices are then written from the merged state by C kernels that read
   each slice once more (``_softmax_merged``, ``_log_softmax_merged``,
   ``_xent_grad_merged`` here; ``csoftmax.dask`` uses them per block).
"""
from __future__ import annotations

import math
import operator

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from . import _api, _core

__all__ = ["STATE_FIELDS", "partial_logsumexp", "partial_cross_entropy", "merge_partials",
           "merge_logsumexp", "merge_cross_entropy"]

#: Names of the last axis of a state array, in order.
STATE_FIELDS = ("max", "count", "sumexp", "target_logit", "weight_sum", "weighted_gap")
_NF = len(STATE_FIELDS)


# --------------------------------------------------------------------------- helpers

def _rows_of(a: np.ndarray, axis: int, cdt: np.dtype):
    """(array as the compute dtype with the class axis last, its (n0, 1, c) view)."""
    a = _api._native(a, cdt)
    a = np.moveaxis(a, axis, -1)
    batch = a.shape[:-1]
    n = math.prod(batch)
    r3 = a.reshape(n, 1, a.shape[-1]) if n else np.zeros((0, 1, a.shape[-1]), cdt)
    return a, batch, r3


def _float_in(a, name):
    z = np.asarray(a)
    if z.dtype.kind == "c":
        raise TypeError(f"{name}: complex input is not supported by the partial functions")
    cdt, rdt = _api._dtypes(z.dtype, name)
    if z.ndim == 0:
        raise ValueError(f"{name}: input must have at least one dimension (the class axis)")
    return z, cdt, rdt


def _check_states(states, name):
    """One state array, or a list / tuple of them -> float64 (P, R, 6), batch."""
    seq = [states] if isinstance(states, np.ndarray) else list(states)
    if not seq:
        raise ValueError(f"{name}: no states to merge")
    arrs = []
    for i, s in enumerate(seq):
        s = np.asarray(s)
        if s.dtype != np.float64 or s.ndim < 1 or s.shape[-1] != _NF:
            raise ValueError(f"{name}: state {i} must be a float64 array whose last axis has "
                             f"{_NF} fields {STATE_FIELDS}, got dtype {s.dtype} shape "
                             f"{s.shape}")
        if arrs and s.shape != arrs[0].shape:
            raise ValueError(f"{name}: state {i} has shape {s.shape}, state 0 {arrs[0].shape}")
        arrs.append(s)
    batch = arrs[0].shape[:-1]
    R = math.prod(batch)
    stack = np.empty((len(arrs), R, _NF))
    for i, s in enumerate(arrs):
        stack[i] = s.reshape(R, _NF)
    return stack, batch


def _merge_stack(stack: np.ndarray) -> np.ndarray:
    """(P, R, 6) float64 (any strides) -> merged (R, 6)."""
    out = np.empty((stack.shape[1], _NF))
    _core.partial_merge(stack, out)
    return out


def _log1p_of(state2: np.ndarray) -> np.ndarray:
    L = np.empty(state2.shape[0])
    _core.partial_log1p(state2, L)
    return L


class _SliceSpec:
    """The validated cross-entropy options of a split row (see Design 4)."""

    __slots__ = ("sp", "c", "cdt", "rdt", "use_ig", "ig", "w64")


def _slice_spec(cdt, batch_shape, num_classes, target, weight, sample_weight, ignore_index,
                reduction, label_smoothing, z_loss, softcap, name) -> _SliceSpec:
    try:
        c = operator.index(num_classes)
    except TypeError:
        raise TypeError(f"{name}: num_classes must be an integer") from None
    if c < 0:
        raise ValueError(f"{name}: num_classes must be >= 0, got {c}")
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: target must be integer class labels (got dtype {t.dtype}); "
                        f"probability targets are not supported by the partial functions")
    stand_in = np.broadcast_to(np.zeros((), cdt), tuple(batch_shape) + (c,))
    sp = _api._prepare_xent(stand_in, t, -1, reduction, weight, sample_weight, ignore_index,
                            label_smoothing, z_loss, softcap, name)
    ss = _SliceSpec()
    ss.sp, ss.c, ss.cdt, ss.rdt = sp, c, sp.cdt, sp.rdt
    ig = sp.ignore_index
    ss.use_ig = ig is not None and -(2**63) <= ig < 2**63
    ss.ig = ig if ss.use_ig else 0
    lab = sp.labels.reshape(-1)
    bad = (lab < 0) | (lab >= c)
    if ss.use_ig:
        bad &= lab != ss.ig
    if bad.any():
        row = int(np.argmax(bad))
        _api._raise_label(row, int(lab[row]), sp.batch_shape, c)
    ss.w64 = None if sp.weight is None else sp.weight.astype(np.float64)
    return ss


def _states(x3: np.ndarray, ss: _SliceSpec | None = None, start: int = 0) -> np.ndarray:
    """(n, 1, 6) states of (n, 1, c) rows: the log-sum-exp state, or with ss the
    cross-entropy state of classes start .. start + c - 1."""
    out = np.empty((x3.shape[0], 1, _NF))
    if ss is None:
        _core.partial_rows(x3, out)
        return out
    sp = ss.sp
    _core.partial_rows(x3, out, sp.labels.reshape(-1, 1), start, ss.ig, ss.use_ig,
                       _slice_weight(ss, start, x3.shape[2]), sp.eps, sp.cap)
    return out


def _slice_weight(ss: _SliceSpec, start: int, c: int):
    if ss.sp.weight is None:
        return None
    return np.ascontiguousarray(ss.sp.weight[start:start + c])


def _row_terms(ss: _SliceSpec, merged: np.ndarray, want_grad: bool, grad_scale=1.0,
               row_gscale=None):
    """Per-row loss and lse (float64, flat) from merged states, and with want_grad
    the (R, 4) factors of the merged gradient kernel (see csoftmax.h)."""
    sp = ss.sp
    R = merged.shape[0]
    lab = sp.labels.reshape(-1)
    keep = np.ones(R, bool) if not ss.use_ig else lab != ss.ig
    M, cnt, s, zt, tdot = (merged[:, 0], merged[:, 1], merged[:, 2], merged[:, 3],
                           merged[:, 5])
    L = _log1p_of(merged)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        lse = M + L
        wt = np.ones(R) if ss.w64 is None else ss.w64[np.where(keep, lab, 0)] if ss.c else \
            np.ones(R)
        eps, alpha, C, W = sp.eps, sp.alpha, float(ss.c), sp.wsum
        smooth = eps != 0.0
        epsC = eps / C if C else 0.0       # (no classes: every row is ignored)
        finite = np.isfinite(M)
        loss = (1.0 - eps) * wt * ((M - zt) + L)
        if smooth:
            loss += epsC * (tdot + W * L)
        if alpha != 0.0:
            loss += alpha * lse * lse
        # SciPy's special rows, as the one-piece kernel
        if not finite.all():
            sprow = ~finite
            if smooth:
                spec = np.full(R, np.nan)
            else:
                spec = np.where(np.isnan(M) | (M != np.inf) | (zt == np.inf), np.nan, np.inf)
            loss = np.where(sprow, spec, loss)
        if sp.sample_weight is not None:
            loss = sp.sample_weight * loss
        loss = np.where(keep, loss, 0.0)
        lse = np.where(keep, lse, 0.0)
        if not want_grad:
            return loss, lse, None
        g0 = np.full(R, float(grad_scale)) if row_gscale is None else grad_scale * row_gscale
        stot = cnt + s
        A = (1.0 - eps) * wt + (epsC * W if smooth else 0.0)
        kb = epsC if smooth else 0.0
        if alpha != 0.0:
            A = A + 2.0 * alpha * lse
        num = np.where(zt == M, -((cnt - 1.0) + s), np.exp(zt - M) - stot)
        gt = A * (num / stot) + (A - (1.0 - eps) * wt - kb * wt)
        if sp.cap:
            cap = float(ss.cdt.type(sp.cap))
            u = zt / cap
            gt = gt * (1.0 - u * u)
        mrg = np.empty((R, 4))
        mrg[:, 0] = np.where(keep, M, 0.0)
        mrg[:, 1] = g0 * A / stot
        mrg[:, 2] = g0 * kb
        mrg[:, 3] = g0 * gt
    return loss, lse, mrg


def _lse_factors(merged: np.ndarray, log: bool) -> np.ndarray:
    """(R, 4) factors of the merged softmax (M, 1/(count+s)) or log-softmax (M, L)."""
    mrg = np.zeros((merged.shape[0], 4))
    mrg[:, 0] = merged[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        mrg[:, 1] = _log1p_of(merged) if log else 1.0 / (merged[:, 1] + merged[:, 2])
    return mrg


def _merged_apply(mode: int, x3: np.ndarray, mrg: np.ndarray, y3: np.ndarray, label=None,
                  start=0, ss: _SliceSpec | None = None):
    """Run a merged kernel on (n, 1, c) rows; label: flat int64 labels (mode 2)."""
    m3 = mrg.reshape(mrg.shape[0], 1, 4)
    if mode != 2:
        _core.merged_rows(mode, x3, m3, y3)
        return
    sp = ss.sp
    _core.merged_rows(2, x3, m3, y3, label.reshape(-1, 1), int(start), ss.ig, ss.use_ig,
                      _slice_weight(ss, start, x3.shape[2]), sp.eps, sp.cap)


# --------------------------------------------------------------------------- public API

def partial_logsumexp(a, axis=-1) -> np.ndarray:
    """The log-sum-exp state of a slice of the classes, per row.

    Parameters
    ----------
    a : array_like
        Real logits; `axis` holds one slice (any part) of each row's classes.
    axis : int, optional
        The class axis (default -1).

    Returns
    -------
    state : ndarray of float64, shape ``a.shape`` without `axis`, plus ``(6,)``
        Fields ``STATE_FIELDS``: max, count of the max, sum of ``exp(a - max)``
        over the others; the last three are 0 here.  Merge states of the
        slices of a row with :func:`merge_logsumexp` (or :func:`merge_partials`).

    Examples
    --------
    >>> import numpy as np, csoftmax
    >>> x = np.array([[0.0, 1.0, 2.0, 3.0]])
    >>> parts = [csoftmax.partial_logsumexp(x[:, :2]), csoftmax.partial_logsumexp(x[:, 2:])]
    >>> bool(np.isclose(csoftmax.merge_logsumexp(parts)[0], csoftmax.logsumexp(x[0])))
    True
    """
    z, cdt, _ = _float_in(a, "partial_logsumexp")
    ax = normalize_axis_index(operator.index(axis), z.ndim)
    _, batch, x3 = _rows_of(z, ax, cdt)
    return _states(x3).reshape(tuple(batch) + (_NF,))


def partial_cross_entropy(logits, target, *, num_classes, start=0, axis=-1, weight=None,
                          ignore_index=-100, label_smoothing=0.0, softcap=None) -> np.ndarray:
    """The cross-entropy state of a slice of the classes, per row.

    Parameters
    ----------
    logits : array_like
        Real logits of classes ``start .. start + n - 1`` along `axis`.
    target : array_like of int
        Labels of the whole class axis (shape of `logits` without `axis`); all
        are checked to lie in ``[0, num_classes)`` or equal `ignore_index`.
    num_classes : int
        The whole class axis's length C.
    start : int, optional
        The slice's first class.
    weight : array_like, optional
        Class weights of all C classes (the slice's part is used).
    ignore_index, label_smoothing, softcap
        As :func:`csoftmax.cross_entropy`; they must be the same for every
        slice of a row (the smoothing only needs "is it zero" here).

    Returns
    -------
    state : ndarray of float64, batch shape + ``(6,)`` (``STATE_FIELDS``).
        Merge the slices' states with :func:`merge_cross_entropy`.
    """
    name = "partial_cross_entropy"
    z, cdt, _ = _float_in(logits, name)
    ax = normalize_axis_index(operator.index(axis), z.ndim)
    _, batch, x3 = _rows_of(z, ax, cdt)
    n = x3.shape[2]
    start = operator.index(start)
    ss = _slice_spec(cdt, batch, num_classes, target, weight, None, ignore_index, "none",
                     label_smoothing, 0.0, softcap, name)
    if start < 0 or start + n > ss.c:
        raise ValueError(f"{name}: classes {start}..{start + n - 1} are not inside "
                         f"0..{ss.c - 1} (num_classes={ss.c})")
    return _states(x3, ss, start).reshape(tuple(batch) + (_NF,))


def merge_partials(states) -> np.ndarray:
    """Merge the states of a row's slices, in the given order, into one state.

    `states` is a list or tuple of state arrays of one shape (a single NumPy
    array is one state: pass ``list(stacked)`` for states stacked on an axis).  The result is a state again, so merges nest:
    ``merge([merge([a, b]), c])`` and ``merge([a, merge([b, c])])`` agree with
    ``merge([a, b, c])`` to rounding.  Merging one state returns it unchanged.
    """
    stack, batch = _check_states(states, "merge_partials")
    return _merge_stack(stack).reshape(tuple(batch) + (_NF,))


def merge_logsumexp(states) -> np.ndarray:
    """The log-sum-exp (float64) of rows from the states of their slices (a list of
    state arrays; a single array is one state).

    With one state (the whole row) this is the one-piece
    :func:`csoftmax.logsumexp` of the row kernels bit for bit (before its
    rounding to the input dtype); with several it agrees to rounding.
    """
    stack, batch = _check_states(states, "merge_logsumexp")
    merged = _merge_stack(stack)
    with np.errstate(invalid="ignore"):
        lse = merged[:, 0] + _log1p_of(merged)
    return lse.reshape(batch)


def merge_cross_entropy(states, target, *, num_classes, weight=None, sample_weight=None,
                        ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0,
                        softcap=None, return_lse=False):
    """The cross-entropy of rows from the states of their slices.

    `target`, `weight`, `ignore_index`, `label_smoothing`, `softcap` must be
    those given to :func:`partial_cross_entropy`; `sample_weight`,
    `reduction`, `z_loss` and `return_lse` are as in
    :func:`csoftmax.cross_entropy`.  Losses are float64 (a per-sample
    array for ``reduction="none"``, else a ``np.float64``).  Class weights are
    used in float64: to reproduce the one-piece bits for float32 logits, give
    float32 weights (the one-piece kernels round them to the logits' dtype).
    """
    name = "merge_cross_entropy"
    stack, batch = _check_states(states, name)
    ss = _slice_spec(np.dtype(np.float64), batch, num_classes, target, weight, sample_weight,
                     ignore_index, reduction, label_smoothing, z_loss, softcap, name)
    merged = _merge_stack(stack)
    loss, lse, _ = _row_terms(ss, merged, False)
    sp = ss.sp
    if reduction == "none":
        res = loss.reshape(batch)
    else:
        total = _core.sum_f64(loss) if loss.size else 0.0
        if reduction == "sum":
            res = np.float64(total)
        else:
            d = _api._raw_denominator(sp)
            res = np.float64(total / d if d else math.nan)
    if return_lse:
        return res, lse.reshape(batch)
    return res

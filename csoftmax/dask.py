"""csoftmax on Dask arrays: rows, and classes, spread over chunks (``pip install "csoftmax[dask]"``).

Design
------
1. Every function takes a ``dask.array.Array`` and returns a lazy result
   (a Dask array, or a 0-d Dask array for a reduced loss); nothing is computed
   until ``.compute()`` / ``persist()``.  The class axis is moved last
   (``da.moveaxis``, lazy) and moved back for outputs of the logits' shape.
2. Classes in one chunk: each block goes through the one-piece kernels
   (``map_blocks``), so the result is the NumPy function's bit for bit.
3. The class axis split over chunks (vocabulary sharding): each block of
   logits becomes a per-row *state* of its slice of the classes
   (``csoftmax.partial_*``, one read of the block, ``src_c/kernels_partial.h``);
   the states of a row are merged by ``dask.array.reduction`` in a tree
   (``split_every`` honoured) in block order, in C (``partial_merge.c``); the
   loss and log-sum-exp come from the merged state.  ``softmax``,
   ``log_softmax`` and the gradient read each logits block once more, with its
   rows' merged state (``map_blocks``).  So a cross-entropy and its gradient
   cost two reads of the logits and one write of the gradient, one tree
   reduction of 48 bytes per row and class chunk (Megatron's vocabulary-
   parallel loss needs three all-reduces for the same).
4. Options.  Everything the one-piece cross-entropy offers with integer
   labels merges: ``weight``, ``sample_weight``, ``ignore_index``,
   ``label_smoothing``, ``z_loss``, ``softcap``, every reduction,
   ``grad_scale`` (a scalar).  Probability targets are refused (TypeError):
   their target sums would need the targets chunked like the logits (use the
   NumPy functions per block for them).
   Labels must be a Dask array chunked like the rows (or a NumPy array, which
   is chunked so); class weights a NumPy array.  Labels are checked inside
   each block's task: a bad one raises ValueError at compute time, naming its
   position in the whole array.
5. Threads.  A task runs the kernels on ``threads_per_task()`` OpenMP threads
   (default 1: one kernel thread per Dask thread, so a worker with k threads
   uses k cores), set for the task's own thread and restored after it;
   ``set_threads_per_task(n)`` or ``CSOFTMAX_DASK_THREADS`` change it.
"""
from __future__ import annotations

import math
import operator
import os

import numpy as np

try:
    import dask.array as da
except ImportError as e:          # pragma: no cover - the extra is not installed
    raise ImportError('csoftmax.dask needs Dask: pip install "csoftmax[dask]"') from e

from . import _api, _core, _partial

__all__ = ["logsumexp", "softmax", "log_softmax", "cross_entropy", "cross_entropy_with_grad",
           "threads_per_task", "set_threads_per_task"]

_SDT = np.dtype([(f, np.float64) for f in _partial.STATE_FIELDS])
_NF = len(_partial.STATE_FIELDS)
_threads = [None]


def threads_per_task() -> int:
    """OpenMP threads a task's kernels use (default 1, or ``CSOFTMAX_DASK_THREADS``)."""
    if _threads[0] is not None:
        return _threads[0]
    v = os.environ.get("CSOFTMAX_DASK_THREADS", "").strip()
    if not v:
        return 1
    try:
        return max(int(v), 1)
    except ValueError:
        raise ValueError(f"CSOFTMAX_DASK_THREADS must be a positive integer, got {v!r}") from None


def set_threads_per_task(n: int | None) -> None:
    """Set the kernels' threads per Dask task (None: back to the default).

    Takes effect for graphs built afterwards: the value is part of each task.
    """
    if n is None:
        _threads[0] = None
        return
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"set_threads_per_task: n must be >= 1, got {n}")
    _threads[0] = n


class _Limit:
    """The kernels' OpenMP threads for the calling thread, restored on exit."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.prev = _core.max_threads()
        _core.set_num_threads(self.n)

    def __exit__(self, *exc):
        _core.set_num_threads(self.prev)


# --------------------------------------------------------------------------- input checks

def _dask_in(x, name):
    if not isinstance(x, da.Array):
        raise TypeError(f"csoftmax.dask.{name}: expected a dask.array.Array, got "
                        f"{type(x).__name__}; for NumPy arrays use csoftmax.{name}")
    if any(math.isnan(s) for s in x.shape):
        raise ValueError(f"csoftmax.dask.{name}: unknown chunk sizes; call "
                         f"x.compute_chunk_sizes() first")
    if x.ndim == 0:
        raise ValueError(f"csoftmax.dask.{name}: input must have at least one dimension "
                         f"(the class axis)")
    if np.dtype(x.dtype).kind == "c":
        raise TypeError(f"csoftmax.dask.{name}: complex input is not supported")
    cdt, rdt = _api._dtypes(np.dtype(x.dtype), name)
    return cdt, rdt


def _axis(axis, ndim, name):
    if isinstance(axis, tuple) or axis is None:
        raise TypeError(f"csoftmax.dask.{name}: axis must be one integer (the class axis)")
    from numpy.lib.array_utils import normalize_axis_index
    return normalize_axis_index(operator.index(axis), ndim)


def _split_every(v, name, ax=None, nd=None):
    """split_every as given; a dict keyed by the caller's axes is re-keyed for the
    class axis moved last (ax: the class axis, nd: the number of dimensions)."""
    if v is None:
        return None
    if isinstance(v, dict):
        out = {}
        for k, n in v.items():
            k = operator.index(k) % nd
            out[nd - 1 if k == ax else (k if k < ax else k - 1)] = n
        return out
    v = operator.index(v)
    if v < 2:
        raise ValueError(f"csoftmax.dask.{name}: split_every must be >= 2, got {v}")
    return v


def _rowlike(a, xm, what, name, dtype=None):
    """A per-row array (labels, sample weights) as Dask, chunked like xm's rows."""
    want = xm.shape[:-1]
    if isinstance(a, da.Array):
        if a.shape != want:
            raise ValueError(f"csoftmax.dask.{name}: {what} has shape {a.shape}, expected "
                             f"{want} (the logits' without the class axis)")
        if a.chunks != xm.chunks[:-1]:
            raise ValueError(f"csoftmax.dask.{name}: {what} chunks {a.chunks} do not match "
                             f"the rows' chunks {xm.chunks[:-1]}; use "
                             f"{what}.rechunk({xm.chunks[:-1]})")
        return a
    arr = np.asarray(a)
    if arr.shape != want:
        raise ValueError(f"csoftmax.dask.{name}: {what} has shape {arr.shape}, expected "
                         f"{want} (the logits' without the class axis)")
    return da.from_array(arr, chunks=xm.chunks[:-1])


def _starts(chunks):
    return tuple(int(s) for s in np.cumsum((0,) + tuple(chunks))[:-1])


def _rows_block(b, cdt):
    """A block (classes last) in the compute dtype, and its (n, 1, c) rows."""
    b = np.asarray(b)
    b, _, x3 = _partial._rows_of(b, b.ndim - 1, cdt)
    return b, x3


def _loc_error(e, offs):
    """Re-raise a block's label error with the position in the whole array."""
    msg = str(e)
    return ValueError(f"{msg} [in the block whose first row is at {offs}; positions above "
                      f"are within the block]")


# --------------------------------------------------------------------------- states

def _as_f64(st):
    st = np.asarray(st)
    if not st.flags.c_contiguous:       # (not ascontiguousarray: it makes a 0-d array 1-d)
        st = st.copy()
    return st.reshape(-1).view(np.float64).reshape(st.shape + (_NF,))   # (0-d too)


def _as_struct(a):
    a = np.ascontiguousarray(a, dtype=np.float64)
    return a.view(_SDT)[..., 0]


def _merge_struct(a, axis=None, keepdims=False):
    f = _as_f64(a)                                  # (..., k, 6)
    batch = f.shape[:-2]
    R = math.prod(batch)
    stack = np.moveaxis(f.reshape(R, f.shape[-2], _NF), 1, 0)   # (k, R, 6), a view
    m = _partial._merge_stack(stack).reshape(batch + (_NF,))
    s = _as_struct(m)
    return s[..., None] if keepdims else s


def _ident(a, axis=None, keepdims=False):
    return a


def _merge_tree(states, split_every):
    nd = states.ndim
    return da.reduction(states, chunk=_ident, combine=_merge_struct, aggregate=_merge_struct,
                        axis=nd - 1, keepdims=False, dtype=_SDT, split_every=split_every,
                        concatenate=True, meta=np.empty((0,) * (nd - 1), _SDT),
                        name="csoftmax-merge")      # (a prefix here; map_blocks takes token=)


def _lse_state_block(b, cdt, nt):
    with _Limit(nt):
        b, x3 = _rows_block(b, cdt)
        out = _partial._states(x3)
    return _as_struct(out.reshape(b.shape[:-1] + (1, _NF)))


def _lse_states(xm, cdt):
    nd = xm.ndim
    return xm.map_blocks(_lse_state_block, cdt, threads_per_task(), dtype=_SDT,
                         chunks=xm.chunks[:-1] + ((1,) * xm.numblocks[-1],),
                         meta=np.empty((0,) * nd, _SDT), token="csoftmax-lse-state")


def _back(y, ax, nd):
    return da.moveaxis(y, -1, ax) if ax != nd - 1 else y


# --------------------------------------------------------------------------- log-sum-exp

def _lse_block(b, nt):
    with _Limit(nt):
        return _api.logsumexp(np.asarray(b), axis=-1)


def _lse_from_state(st, rdt):
    f = _as_f64(st)
    batch = f.shape[:-1]
    m = f.reshape(-1, _NF)
    with np.errstate(invalid="ignore", over="ignore"):
        return (m[:, 0] + _partial._log1p_of(m)).reshape(batch).astype(rdt)


def logsumexp(x, axis=-1, keepdims=False, *, split_every=None):
    """``log(sum(exp(x), axis))`` of a Dask array, lazily (see :func:`csoftmax.logsumexp`).

    `axis` is one integer (default -1).  Classes in one chunk: the one-piece
    kernel per block (same bits).  Classes over several chunks: per-block
    states merged in a tree of `split_every` (Dask's default if None); agrees
    with the one-piece result to rounding (README, "Beyond one machine").
    SciPy's special values (NaN, +-inf rows) are kept.
    """
    name = "logsumexp"
    cdt, rdt = _dask_in(x, name)
    rdt = _api._row_dtype(rdt, None, name)      # float32 for float16 / bfloat16 input
    ax = _axis(axis, x.ndim, name)
    se = _split_every(split_every, name, ax, x.ndim)
    xm = da.moveaxis(x, ax, -1) if ax != x.ndim - 1 else x
    nd = xm.ndim
    if xm.numblocks[-1] == 1:
        res = xm.map_blocks(_lse_block, threads_per_task(), drop_axis=nd - 1, dtype=rdt,
                            meta=np.empty((0,) * (nd - 1), rdt), token="csoftmax-lse")
    else:
        merged = _merge_tree(_lse_states(xm, cdt), se)
        res = merged.map_blocks(_lse_from_state, rdt, dtype=rdt,
                                meta=np.empty((0,) * (nd - 1), rdt), token="csoftmax-lse")
    if keepdims:
        res = da.expand_dims(res, ax)
    return res


# --------------------------------------------------------------------------- softmax

def _softmax_block(b, log, nt):
    with _Limit(nt):
        f = _api.log_softmax if log else _api.softmax
        return f(np.asarray(b), axis=-1)


def _softmax_merged_block(b, st, log, cdt, rdt, nt):
    with _Limit(nt):
        b, x3 = _rows_block(b, cdt)
        mrg = _partial._lse_factors(_as_f64(st).reshape(-1, _NF), log)
        y = np.empty(b.shape, cdt)
        _partial._merged_apply(1 if log else 0, x3, mrg, y.reshape(x3.shape))
    return y if rdt == cdt else y.astype(rdt)


def _softmax_impl(x, axis, split_every, log, name):
    cdt, rdt = _dask_in(x, name)
    ax = _axis(axis, x.ndim, name)
    se = _split_every(split_every, name, ax, x.ndim)
    xm = da.moveaxis(x, ax, -1) if ax != x.ndim - 1 else x
    nd = xm.ndim
    nt = threads_per_task()
    if xm.numblocks[-1] == 1:
        y = xm.map_blocks(_softmax_block, log, nt, dtype=rdt, meta=np.empty((0,) * nd, rdt),
                          token=f"csoftmax-{name}")
    else:
        merged = _merge_tree(_lse_states(xm, cdt), se)
        y = da.map_blocks(_softmax_merged_block, xm, merged[..., None], log, cdt, rdt, nt,
                          dtype=rdt, meta=np.empty((0,) * nd, rdt), token=f"csoftmax-{name}")
    return _back(y, ax, nd)


def softmax(x, axis=-1, *, split_every=None):
    """Softmax of a Dask array along one axis, lazily (see :func:`csoftmax.softmax`).

    With the class axis over several chunks each block is read twice: once
    for its state, once to write its output from the merged state.
    """
    return _softmax_impl(x, axis, split_every, False, "softmax")


def log_softmax(x, axis=-1, *, split_every=None):
    """Log-softmax of a Dask array along one axis, lazily (see :func:`csoftmax.log_softmax`)."""
    return _softmax_impl(x, axis, split_every, True, "log_softmax")


# --------------------------------------------------------------------------- cross-entropy

class _Opts:
    """The cross-entropy options, validated on the client (picklable, small)."""

    def __init__(self, name, cdt, rdt, C, weight, ignore_index, reduction, label_smoothing,
                 z_loss, softcap, has_sw):
        # validate exactly as the one-piece function does, on a stand-in
        stand_in = np.broadcast_to(np.zeros((), cdt), (0, C))
        sp = _api._prepare_xent(stand_in, np.zeros((0,), np.int64), -1, reduction, weight,
                                None, ignore_index, label_smoothing, z_loss, softcap,
                                f"csoftmax.dask.{name}")
        self.name, self.cdt, self.rdt, self.C = name, cdt, rdt, C
        self.weight = None if weight is None else sp.weight     # validated, cdt
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.eps, self.alpha, self.softcap = sp.eps, sp.alpha, softcap
        self.has_sw = has_sw

    def spec(self, labels, sw, batch, offs=None):
        """The block's _SliceSpec (labels checked against all C classes).  offs: the
        block's first row in the whole array; a bad label is reported with it.  Every
        task that reads a block's labels checks them here, so whichever of them the
        scheduler runs first reports the same error."""
        try:
            return _partial._slice_spec(self.cdt, batch, self.C, labels, self.weight, sw,
                                        self.ignore_index, "none", self.eps, self.alpha,
                                        self.softcap, f"csoftmax.dask.{self.name}")
        except ValueError as e:
            if offs is None:
                raise
            raise _loc_error(e, offs) from None


def _offs(block_id, row_starts):
    return tuple(row_starts[d][i] for d, i in enumerate(block_id[:len(row_starts)]))


def _xent_state_block(b, lab, o, starts, row_starts, nt, block_id=None):
    with _Limit(nt):
        b, x3 = _rows_block(b, o.cdt)
        lab = np.asarray(lab)[..., 0]
        ss = o.spec(lab, None, b.shape[:-1], _offs(block_id, row_starts))
        out = _partial._states(x3, ss, starts[block_id[-1]])
    return _as_struct(out.reshape(b.shape[:-1] + (1, _NF)))


def _loss_from_state(st, lab, sw, o, row_starts, block_id=None):
    """Per-row float64 loss from merged states."""
    f = _as_f64(st)
    ss = o.spec(np.asarray(lab), None if sw is None else np.asarray(sw), f.shape[:-1],
                _offs(block_id, row_starts))
    loss, _, _ = _partial._row_terms(ss, f.reshape(-1, _NF), False)
    return loss.reshape(f.shape[:-1])


def _grad_merged_block(b, st, lab, sw, den, o, grad_scale, starts, row_starts, nt,
                       block_id=None):
    with _Limit(nt):
        b, x3 = _rows_block(b, o.cdt)
        lab = np.asarray(lab)[..., 0]
        swb = None if sw is None else np.asarray(sw)[..., 0]
        ss = o.spec(lab, swb, b.shape[:-1], _offs(block_id, row_starts))
        scale = _scale(grad_scale, o.reduction, den)
        gsr = None if swb is None else ss.sp.sample_weight
        _, _, mrg = _partial._row_terms(ss, _as_f64(st).reshape(-1, _NF), True, scale, gsr)
        y = np.empty(b.shape, o.cdt)
        _partial._merged_apply(2, x3, mrg, y.reshape(x3.shape), ss.sp.labels,
                               starts[block_id[-1]], ss)
    return y if o.rdt == o.cdt else y.astype(o.rdt)


def _scale(grad_scale, reduction, den):
    if reduction != "mean":
        return grad_scale
    den = float(den)
    return grad_scale * (1.0 / den) if den else math.nan     # as _api._grad_factors


def _den_block(lab, sw, o, row_starts, block_id=None):
    """The block's part of the "mean" denominator (sum of s_i w_{y_i} over counted
    rows), by the one-piece code (_api._raw_denominator) on the block's spec, as a
    (1, ..., 1) array."""
    lab = np.asarray(lab)
    ss = o.spec(lab, None if sw is None else np.asarray(sw), lab.shape,
                _offs(block_id, row_starts))
    return np.full((1,) * lab.ndim, _api._raw_denominator(ss.sp))


def _onepiece_block(b, lab, sw, o, grad_scale, den, want_grad, row_starts, nt,
                    block_id=None):
    """Classes in one chunk: the one-piece kernel; (per-row float64 loss, grad or None)."""
    with _Limit(nt):
        b = np.asarray(b)
        lab = np.asarray(lab)[..., 0]
        sw = None if sw is None else np.asarray(sw)[..., 0]
        try:
            sp = _api._prepare_xent(b, lab, -1, "none", o.weight, sw, o.ignore_index, o.eps,
                                    o.alpha, o.softcap, f"csoftmax.dask.{o.name}")
            if not want_grad:
                loss, _ = _api._run_xent(sp, None, 1.0, None, False)
                return loss, None
            scale, rg = _api._grad_factors(_scale(grad_scale, o.reduction, den), None, sp,
                                           "none", 1.0)
            g = np.empty(b.shape, sp.cdt)
            loss, _ = _api._run_xent(sp, g.reshape(sp.n0, sp.n1, sp.c), scale, rg, False)
        except ValueError as e:
            if "target label" in str(e) and block_id is not None:
                raise _loc_error(e, _offs(block_id, row_starts)) from None
            raise
    return loss, (g if g.dtype == o.rdt else g.astype(o.rdt))


def _first(p):
    return p[0][..., None]


def _second(p):
    return p[1]


def _safe_div(t, d):
    t, d = float(t), float(d)
    return np.float64(t / d) if d else np.float64(math.nan)


def _prepare(logits, target, axis, weight, sample_weight, ignore_index, reduction,
             label_smoothing, z_loss, softcap, split_every, name):
    cdt, rdt = _dask_in(logits, name)
    ax = _axis(axis, logits.ndim, name)
    se = _split_every(split_every, name, ax, logits.ndim)
    xm = da.moveaxis(logits, ax, -1) if ax != logits.ndim - 1 else logits
    C = int(xm.shape[-1])
    # (the dtype of a Dask array without computing it)
    tdt = np.dtype(target.dtype) if hasattr(target, "dtype") else np.asarray(target).dtype
    tk = tdt.kind
    if tk == "f" and getattr(target, "shape", None) == logits.shape:
        raise TypeError(f"csoftmax.dask.{name}: probability targets are not supported by "
                        f"csoftmax.dask; give integer class labels")
    if tk not in "iu":
        raise TypeError(f"csoftmax.dask.{name}: target must be integer class labels, got "
                        f"dtype {tdt}")
    lab = _rowlike(target, xm, "target", name)
    sw = None if sample_weight is None else _rowlike(sample_weight, xm, "sample_weight", name)
    if sw is not None and np.dtype(sw.dtype).kind not in "fiu":
        raise TypeError(f"csoftmax.dask.{name}: sample_weight must be a real array")
    o = _Opts(name, cdt, rdt, C, weight, ignore_index, reduction, label_smoothing, z_loss,
              softcap, sw is not None)
    return xm, ax, lab, sw, o, se


def _xent(logits, target, axis, weight, sample_weight, ignore_index, reduction,
          label_smoothing, z_loss, softcap, split_every, grad_scale, want_grad, name):
    xm, ax, lab, sw, o, se = _prepare(logits, target, axis, weight, sample_weight,
                                      ignore_index, reduction, label_smoothing, z_loss,
                                      softcap, split_every, name)
    gs = 1.0 if grad_scale is None else _api._opt_float(grad_scale, "grad_scale",
                                                        f"csoftmax.dask.{name}")
    nd = xm.ndim
    nt = threads_per_task()
    row_starts = tuple(_starts(c) for c in xm.chunks[:-1])
    den = None
    if reduction == "mean":
        d_blocks = da.map_blocks(_den_block, lab, sw, o, row_starts, dtype=np.float64,
                                 chunks=tuple((1,) * len(c) for c in lab.chunks),
                                 meta=np.empty((0,) * (nd - 1)), token="csoftmax-den")
        den = d_blocks.sum()
    grad = None
    if xm.numblocks[-1] == 1:
        # (the per-row arrays get a trailing axis of 1 to line up with the blocks)
        pair = da.map_blocks(_onepiece_block, xm, lab[..., None],
                             None if sw is None else sw[..., None], o, gs,
                             den if want_grad else None, want_grad, row_starts, nt,
                             dtype=o.rdt, meta=np.empty((0,) * nd, o.rdt),
                             token=f"csoftmax-{name}-block")
        # (not drop_axis: that would make Dask concatenate the pairs)
        loss_rows = pair.map_blocks(_first, chunks=xm.chunks[:-1] + ((1,),), dtype=np.float64,
                                    meta=np.empty((0,) * nd), token="csoftmax-loss")[..., 0]
        if want_grad:
            grad = pair.map_blocks(_second, dtype=o.rdt, meta=np.empty((0,) * nd, o.rdt),
                                   token="csoftmax-grad")
    else:
        starts = _starts(xm.chunks[-1])
        states = da.map_blocks(_xent_state_block, xm, lab[..., None], o, starts, row_starts,
                               nt, dtype=_SDT,
                               chunks=xm.chunks[:-1] + ((1,) * xm.numblocks[-1],),
                               meta=np.empty((0,) * nd, _SDT), token="csoftmax-xent-state")
        merged = _merge_tree(states, se)
        loss_rows = da.map_blocks(_loss_from_state, merged, lab, sw, o, row_starts,
                                  dtype=np.float64,
                                  meta=np.empty((0,) * (nd - 1)), token="csoftmax-loss")
        if want_grad:
            grad = da.map_blocks(_grad_merged_block, xm, merged[..., None], lab[..., None],
                                 None if sw is None else sw[..., None],
                                 den if den is not None else 1.0, o, gs, starts,
                                 row_starts, nt,
                                 dtype=o.rdt, meta=np.empty((0,) * nd, o.rdt),
                                 token="csoftmax-grad")
    ldt = _api._row_dtype(o.rdt, None, name)     # the loss: float32 for 16-bit logits
    if reduction == "none":
        loss = loss_rows.astype(ldt)
    else:
        total = loss_rows.sum(dtype=np.float64)
        if reduction == "mean":
            total = da.blockwise(_safe_div, (), total, (), den, (), dtype=np.float64,
                                 meta=np.empty((), np.float64))
        loss = total.astype(ldt)
    if not want_grad:
        return loss
    return loss, _back(grad, ax, nd)


def cross_entropy(logits, target, *, axis=-1, weight=None, sample_weight=None,
                  ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0,
                  softcap=None, split_every=None):
    """Softmax cross-entropy of Dask logits and integer labels, lazily.

    The options are :func:`csoftmax.cross_entropy`'s (integer labels only).
    `target` (and `sample_weight`) must be chunked like the logits' rows (a
    NumPy array is chunked so); `weight` is a NumPy array of all C classes.
    Returns a 0-d Dask array ("mean", "sum") or the per-sample losses
    ("none").  Per-sample losses are summed in float64 in a fixed tree order.
    """
    return _xent(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                 label_smoothing, z_loss, softcap, split_every, None, False, "cross_entropy")


def cross_entropy_with_grad(logits, target, *, axis=-1, weight=None, sample_weight=None,
                            ignore_index=-100, reduction="mean", label_smoothing=0.0,
                            z_loss=0.0, softcap=None, grad_scale=1.0, split_every=None):
    """Loss and its gradient w.r.t. the logits, both lazy: ``(loss, grad)``.

    As :func:`cross_entropy`; `grad` has the logits' shape, chunks and
    result dtype, and is multiplied by the scalar `grad_scale` (the upstream
    gradient).  Compute both together (``dask.compute(loss, grad)``) so that
    the logits are read for the states once and for the gradient once.
    """
    return _xent(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                 label_smoothing, z_loss, softcap, split_every, grad_scale, True,
                 "cross_entropy_with_grad")

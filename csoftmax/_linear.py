"""Fused linear + cross-entropy: the loss of ``x @ W.T + b`` without the N x V logits.

Design
------
1. Everything is validated before any arithmetic: shapes, dtypes, options and
   every label (out-of-range labels raise naming the sample, and nothing is
   written to caller-provided outputs).  The cross-entropy options are
   normalised by the same code as :func:`csoftmax.cross_entropy_with_grad`
   (``_api._prepare_xent``, run on a zero-stride stand-in for the logits, so
   the two functions cannot drift apart), which also gives the "mean"
   denominator from the labels alone.
2. The rows that count (labels equal to ``ignore_index`` are dropped *before*
   the GEMMs) are processed ``chunk_size`` at a time, in a fixed order:
       z_c  = x_c @ W.T (+ b)          into one reused buffer
       fused C pass: loss_c, and z_c := d loss / d z_c in place
       dx_c = g_c @ W                  straight into dx's rows
       dW  += g_c.T @ x_c              (the first chunk writes dW directly;
                                        later ones add 2 MiB blocks)
       db  += 1 @ g_c
   So at most one chunk of logits exists at a time; W is never copied (the
   transposes and slices are views NumPy hands to the BLAS as they are).
3. The per-sample losses go into one float64 array and are reduced at the end
   in the order the plain cross-entropy uses.
4. Threads and determinism.  The products go through NumPy's own BLAS
   (``np.matmul(..., out=...)``), cut into blocks whose shapes depend on the
   problem only: logits in blocks of 2048 classes, dW/db in blocks of W's rows,
   dx as at most 4 partial products over class blocks added in a fixed order.
   Each block is one single-threaded BLAS call (the BLAS is held at one thread
   for the call through threadpoolctl); csoftmax's thread count
   (``set_num_threads``, ``OMP_NUM_THREADS``, ``threadpool_limits``) sets both
   how many workers run the blocks and the fused pass's OpenMP threads.  A
   multi-threaded OpenBLAS call does not give the same bits for 1 and 2
   threads (measured: dW differs in the last bits); this split does, and the
   two phases never run at once, so there is no oversubscription.  Each block
   packs its own slice of the operands, so the split costs no extra passes.
   Known limit: from a thread other than the main one, OpenBLAS 0.3.31 did not
   always apply the one-thread setting, so such calls agree to rounding only.
"""
from __future__ import annotations

import contextlib
import math
import operator
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _api, _core

__all__ = ["linear_cross_entropy", "linear_cross_entropy_with_grad", "DEFAULT_CHUNK_BYTES"]

#: Default budget for one chunk of logits (rows = budget // (V * itemsize)).
DEFAULT_CHUNK_BYTES = 64 * 2**20
# The products are cut into blocks whose shapes depend on the problem only (never
# on the thread count): each block is one single-threaded BLAS call, so every
# output element is summed in the same order whatever the number of threads.
_FWD_COLS = 2048                     # logits columns per block of x_c @ W.T
_DX_K = 8192                         # classes per partial product of g_c @ W (at most 4)
_ACC_BLOCK_BYTES = 2 * 2**20         # rows of W per block of dW (+)= g_c.T @ x_c
_POOL_MIN_WORK = 2**22               # multiply-adds per chunk product to use the workers


# --------------------------------------------------------------------------- threads

_controller = None
_pools: dict[int, object] = {}
_pool_lock = threading.Lock()


def _blas_libs():
    """threadpoolctl's handles of the BLAS libraries loaded in this process (cached)."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


_limit_lock = threading.Lock()
_limit_depth = 0
_limiter = None


@contextlib.contextmanager
def _blas_single():
    """The BLAS on one thread for the duration of a call (csoftmax runs the blocks
    in parallel itself, so the work split never depends on the thread count).

    The BLAS's setting is process-wide: concurrent calls from several Python
    threads share one limit, set by the first to enter and restored by the
    last to leave."""
    global _limit_depth, _limiter
    with _limit_lock:
        if _limit_depth == 0:
            # (the libraries' own calls: threadpoolctl's limiter works from its
            # cached counts, which go stale when calls come from several threads)
            saved = []
            for lib in _blas_libs().lib_controllers:
                k = lib.get_num_threads()
                if k is not None and k > 1:
                    lib.set_num_threads(1)
                    saved.append((lib, k))
            _limiter = saved
        _limit_depth += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_depth -= 1
            if _limit_depth == 0:
                for lib, k in _limiter or ():
                    lib.set_num_threads(k)
                _limiter = None


def _pool(nthreads: int):
    """A persistent pool of `nthreads` workers for the BLAS blocks (None for 1)."""
    if nthreads <= 1:
        return None
    with _pool_lock:
        p = _pools.get(nthreads)
        if p is None:
            p = _pools[nthreads] = ThreadPoolExecutor(
                max_workers=nthreads, thread_name_prefix="csoftmax-blas")
        return p


def _quiet(job):
    # NumPy's error state is per thread: non-finite products (documented to
    # propagate) must not warn from the workers either
    with np.errstate(all="ignore"):
        job()


def _run_jobs(pool, jobs) -> None:
    if pool is None or len(jobs) == 1:
        for job in jobs:
            job()
    else:
        for f in [pool.submit(_quiet, job) for job in jobs]:
            f.result()


def _blocks(total: int, size: int):
    return [(i, min(total, i + size)) for i in range(0, total, size)]


# --------------------------------------------------------------------------- validation

class _LinSpec:
    __slots__ = ("x2", "w", "b", "xs", "lead", "n", "d", "v", "cdt", "rdt", "sp", "rows",
                 "lab", "denom", "chunk", "t2")


def _float_array(a, name, what):
    arr = np.asarray(a)
    if (arr.dtype.kind not in "fiu" or arr.dtype.kind == "b") and not _api._is_half(arr.dtype):
        raise TypeError(f"{what}: {name} must be a real floating or integer array, "
                        f"got dtype {arr.dtype}")
    return arr


def _blasable(a: np.ndarray, cdt: np.dtype) -> np.ndarray:
    """``a`` as a 2-D array the BLAS takes as it is (C- or F-ordered), else a C copy."""
    if a.dtype == cdt and a.dtype.isnative and a.flags.aligned and (
            a.flags.c_contiguous or a.flags.f_contiguous):
        return a
    return np.ascontiguousarray(a, dtype=cdt)


def _prepare(x, weight, target, bias, class_weight, sample_weight, ignore_index, reduction,
             label_smoothing, z_loss, softcap, chunk_size, name):
    X = _float_array(x, "x", name)
    Wm = _float_array(weight, "weight", name)
    if X.ndim < 1:
        raise ValueError(f"{name}: x must have at least one dimension (the features)")
    if Wm.ndim != 2:
        raise ValueError(f"{name}: weight must be 2-D (V, D) as nn.Linear stores it, got "
                         f"shape {Wm.shape}")
    v, d = Wm.shape
    if X.shape[-1] != d:
        raise ValueError(f"{name}: x has {X.shape[-1]} features (last axis) but weight "
                         f"has {d} (shape {Wm.shape} is (V, D))")
    ls = _LinSpec()
    ls.cdt, ls.rdt = _api._dtypes(np.result_type(X.dtype, Wm.dtype), name)
    ls.v, ls.d = v, d
    ls.lead = X.shape[:-1]
    ls.n = math.prod(ls.lead)
    ls.xs = X.shape
    ls.x2 = _blasable(X.reshape(ls.n, d), ls.cdt)
    ls.w = _blasable(Wm, ls.cdt)
    if bias is None:
        ls.b = None
    else:
        b = _float_array(bias, "bias", name)
        if b.shape != (v,):
            raise ValueError(f"{name}: bias has shape {b.shape}, expected ({v},)")
        ls.b = np.ascontiguousarray(b, dtype=ls.cdt)
    if class_weight is not None:
        class_weight = _api._nonneg_array(class_weight, (v,), ls.cdt, "class_weight", name)
    # The cross-entropy's own validation, on a stand-in for the logits that
    # takes no memory (zero strides): target shape, weights, options, labels.
    stand_in = np.broadcast_to(np.zeros((), ls.cdt), ls.lead + (v,))
    sp = _api._prepare_xent(stand_in, target, -1, reduction, class_weight, sample_weight,
                            ignore_index, label_smoothing, z_loss, softcap, name)
    sp.rdt = ls.rdt              # the stand-in has the compute dtype
    ls.sp = sp
    if chunk_size is not None:
        try:
            chunk_size = operator.index(chunk_size)
        except TypeError:
            raise TypeError(f"{name}: chunk_size must be a positive integer or None") from None
        if chunk_size <= 0:
            raise ValueError(f"{name}: chunk_size must be >= 1, got {chunk_size}")
    ls.t2 = None
    ls.lab = None
    ls.rows = None                     # None: all rows count (no gather)
    if sp.soft:
        ls.t2 = _api._native(sp.t, ls.cdt).reshape(ls.n, v)
    else:
        lab = sp.labels.reshape(-1)
        ig = sp.ignore_index
        use_ig = ig is not None and -(2**63) <= ig < 2**63
        keep = (lab != ig) if use_ig else None
        bad = (lab < 0) | (lab >= v)
        if keep is not None:
            bad &= keep
        if bad.any():
            row = int(np.argmax(bad))
            _api._raise_label(row, int(lab[row]), sp.batch_shape, v)
        ls.lab = lab
        if keep is not None and not keep.all():
            ls.rows = np.flatnonzero(keep)
    ls.denom = _api._denominator(sp) if reduction == "mean" else 1.0
    kept = ls.n if ls.rows is None else ls.rows.size
    if chunk_size is None:
        itemsize = ls.cdt.itemsize
        m_max = max(1, DEFAULT_CHUNK_BYTES // max(1, v * itemsize))
        # equal chunks: every chunk streams W (and dW) once, so a short last
        # chunk would cost almost as much as a full one
        chunk_size = -(-kept // -(-kept // m_max)) if kept else 1
    ls.chunk = max(1, min(chunk_size, kept))
    return ls


# --------------------------------------------------------------------------- the loop

def _run(ls: _LinSpec, want_grad: bool, scale: float, row_gscale, want_lse: bool, outs):
    """Chunk loop; returns (per-sample loss float64, lse float64 or None).

    `outs` = (dx2, dW, db): the arrays to write, each None when not wanted.
    """
    sp = ls.sp
    n, d, v, cdt = ls.n, ls.d, ls.v, ls.cdt
    loss = np.zeros(n, dtype=np.float64)
    lse = np.zeros(n, dtype=np.float64) if want_lse else None
    dx = dW = db = None
    if want_grad:
        dx, dW, db = outs
    rows = ls.rows
    kept = n if rows is None else rows.size
    if kept == 0 or v == 0:
        if sp.soft and v == 0 and lse is not None:
            lse.fill(-np.inf)
        for a in (dx, dW, db):
            if a is not None:
                a.fill(0)
        return loss, lse
    if rows is not None and dx is not None:
        dx.fill(0)                          # ignored rows: gradient 0
    nthreads = max(1, _core.max_threads())
    m_max = ls.chunk
    # worker threads only when a chunk's product is worth a hand-off (~1 ms of
    # work); the blocks are the same either way, and so are the results
    pool = _pool(nthreads if m_max * v * d >= _POOL_MIN_WORK else 1)
    zbuf = np.empty((m_max, v), dtype=cdt)
    xbuf = np.empty((m_max, d), dtype=cdt) if rows is not None else None
    dxbuf = np.empty((m_max, d), dtype=cdt) if (rows is not None and dx is not None) else None
    w, wT, bias = ls.w, ls.w.T, ls.b
    fwd_blocks = _blocks(v, _FWD_COLS)
    acc_blocks = _blocks(v, max(1, _ACC_BLOCK_BYTES // max(1, d * cdt.itemsize)))
    want_acc = dW is not None or db is not None
    direct = all(a is None or a.dtype == cdt for a in (dW, db))
    if not direct:
        for a in (dW, db):
            if a is not None:
                a.fill(0)
    tmps = None
    if want_acc and (len(range(0, kept, m_max)) > 1 or not direct):
        # one accumulation temporary per worker, handed out through a queue
        vb = acc_blocks[0][1]
        tmps = queue.SimpleQueue()
        for _ in range(min(nthreads, len(acc_blocks))):
            tmps.put((np.empty((vb, d), dtype=cdt) if dW is not None else None,
                      np.empty(vb, dtype=cdt) if db is not None else None))
    ones = np.ones(m_max, dtype=cdt) if db is not None else None
    kw = dict(class_weight=sp.weight, wsum=sp.wsum, label_smoothing=sp.eps,
              z_loss=sp.alpha, softcap=sp.cap)

    def fwd(xc, zc, v0, v1):
        def job():
            np.matmul(xc, wT[:, v0:v1], out=zc[:, v0:v1])
            if bias is not None:
                zc[:, v0:v1] += bias[v0:v1]
        return job

    # dx_c = g_c @ W sums over all V classes: cut into at most 4 partial products
    # over fixed class blocks (each packs its part of g_c and W once), added in order
    dx_blocks = _blocks(v, max(_DX_K, -(-v // 4))) if dx is not None else []
    parts = [np.empty((m_max, d), dtype=cdt) for _ in dx_blocks[1:]]

    def dx_job(zc, out, v0, v1):
        return lambda: np.matmul(zc[:, v0:v1], w[v0:v1], out=out)

    def acc_job(zc, xc, m, v0, v1, first):
        def job():
            gT = zc[:, v0:v1].T
            if first:                       # the first chunk writes dW directly
                if dW is not None:
                    np.matmul(gT, xc, out=dW[v0:v1])
                if db is not None:
                    np.matmul(ones[:m], zc[:, v0:v1], out=db[v0:v1])
                return
            tmp, tb = tmps.get()
            try:
                if dW is not None:
                    t = tmp[:v1 - v0]
                    np.matmul(gT, xc, out=t)
                    dW[v0:v1] += t
                if db is not None:
                    np.matmul(ones[:m], zc[:, v0:v1], out=tb[:v1 - v0])
                    db[v0:v1] += tb[:v1 - v0]
            finally:
                tmps.put((tmp, tb))
        return job

    first = True
    for c0 in range(0, kept, m_max):
        c1 = min(kept, c0 + m_max)
        m = c1 - c0
        if rows is None:
            sel = slice(c0, c1)
            xc = ls.x2[sel]
        else:
            sel = rows[c0:c1]
            xc = np.take(ls.x2, sel, axis=0, out=xbuf[:m])
        zc = zbuf[:m]
        # 1. logits of the chunk
        _run_jobs(pool, [fwd(xc, zc, v0, v1) for v0, v1 in fwd_blocks])
        # 2. the fused pass: per-sample loss, and the gradient in place
        z3 = zc.reshape(m, 1, v)
        g3 = z3 if want_grad else None
        if rows is None:            # views: the kernel writes the results in place
            lc = loss[sel]
            lsec = None if lse is None else lse[sel]
        else:
            lc = np.zeros(m)
            lsec = None if lse is None else np.zeros(m)
        rs = None if sp.sample_weight is None else np.ascontiguousarray(sp.sample_weight[sel])
        rg = None if row_gscale is None else np.ascontiguousarray(row_gscale[sel])
        l2 = lc.reshape(m, 1)
        if sp.soft:
            t3 = ls.t2[sel].reshape(m, 1, v)
            _core.xent_soft_rows(z3, t3, l2, g3, scale, row_scale=rs, row_gscale=rg,
                                 lse_out=lsec, **kw)
        else:
            lab2 = np.ascontiguousarray(ls.lab[sel]).reshape(m, 1)
            _core.xent_labels_rows(z3, lab2, l2, g3, scale, 0, False, row_scale=rs,
                                   row_gscale=rg, lse_out=lsec, **kw)
        if rows is not None:
            loss[sel] = lc
            if lse is not None:
                lse[sel] = lsec
        if not want_grad:
            continue
        # 3. dx_c = g_c @ W, and dW (+)= g_c.T @ x_c, db (+)= 1 @ g_c
        jobs = []
        if dx is not None:
            dxc = dx[sel] if rows is None else dxbuf[:m]
            outs_dx = [dxc] + [p[:m] for p in parts]
            jobs += [dx_job(zc, o, v0, v1) for o, (v0, v1) in zip(outs_dx, dx_blocks)]
        if want_acc:
            jobs += [acc_job(zc, xc, m, v0, v1, first and direct) for v0, v1 in acc_blocks]
        _run_jobs(pool, jobs)
        if dx is not None:
            for p in outs_dx[1:]:
                dxc += p
            if rows is not None:
                dx[sel] = dxc
        first = False
    return loss, lse


def _outputs(out, ls, acc_dt, name):
    """The (dx2, dW, db) the loop writes and the arrays handed back to the caller."""
    shapes = [ls.xs, (ls.v, ls.d)] + ([(ls.v,)] if ls.b is not None else [])
    names = ["dx", "dweight", "dbias"]
    if out is None:
        given = [None] * len(shapes)
    else:
        if not isinstance(out, tuple) or len(out) != len(shapes):
            raise ValueError(f"{name}: out must be a tuple of {len(shapes)} arrays "
                             f"({', '.join(names[:len(shapes)])})")
        given = list(out)
        for k, (o, shp) in enumerate(zip(given, shapes)):
            _api._check_out(o, shp, ls.rdt, names[k])
            for src, what in ((ls.x2, "x"), (ls.w, "weight"), (ls.b, "bias"),
                              (ls.t2, "target")):
                if src is not None and np.may_share_memory(o, src):
                    raise ValueError(f"{name}: out {names[k]} overlaps {what}")
            for j in range(k):
                if np.may_share_memory(o, given[j]):
                    raise ValueError(f"{name}: out {names[k]} overlaps out {names[j]}")
    work = []
    for k, (o, shp) in enumerate(zip(given, shapes)):
        dt = ls.cdt if k == 0 else acc_dt
        if o is not None and o.dtype == dt and o.flags.c_contiguous and o.flags.aligned \
                and o.dtype.isnative:
            work.append(o)
        else:
            work.append(np.empty(shp, dtype=dt))
    dx2 = work[0].reshape(ls.n, ls.d)
    return given, work, (dx2, work[1], work[2] if ls.b is not None else None)


def _finish_grads(given, work, ls):
    res = []
    for o, w in zip(given, work):
        if o is not None:
            if w is not o:
                np.copyto(o, w, casting="unsafe")
            res.append(o)
        elif w.dtype != ls.rdt:
            with np.errstate(over="ignore"):
                res.append(w.astype(ls.rdt))
        else:
            res.append(w)
    return res


def _acc_dtype(accumulate_dtype, cdt, name):
    if accumulate_dtype is None:
        return cdt
    dt = np.dtype(accumulate_dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"{name}: accumulate_dtype must be float32, float64 or None, "
                         f"got {dt}")
    if dt.itemsize < cdt.itemsize:
        raise ValueError(f"{name}: accumulate_dtype {dt} is narrower than the compute "
                         f"dtype {cdt}")
    return dt


# --------------------------------------------------------------------------- public API

def linear_cross_entropy(x, weight, target, *, bias=None, class_weight=None,
                         sample_weight=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0, z_loss=0.0, softcap=None, return_lse=False,
                         chunk_size=None):
    name = "linear_cross_entropy"
    ls = _prepare(x, weight, target, bias, class_weight, sample_weight, ignore_index,
                  reduction, label_smoothing, z_loss, softcap, chunk_size, name)
    with _blas_single(), np.errstate(all="ignore"):
        loss, lse = _run(ls, False, 1.0, None, return_lse, None)
    sp = ls.sp
    return _api._finish(sp, loss.reshape(sp.batch_shape), lse, ls.denom, return_lse)


def linear_cross_entropy_with_grad(x, weight, target, *, bias=None, class_weight=None,
                                   sample_weight=None, ignore_index=-100, reduction="mean",
                                   label_smoothing=0.0, z_loss=0.0, softcap=None,
                                   return_lse=False, grad_scale=1.0, chunk_size=None,
                                   accumulate_dtype=None, out=None):
    name = "linear_cross_entropy_with_grad"
    ls = _prepare(x, weight, target, bias, class_weight, sample_weight, ignore_index,
                  reduction, label_smoothing, z_loss, softcap, chunk_size, name)
    acc_dt = _acc_dtype(accumulate_dtype, ls.cdt, name)
    scale, row_gscale = _api._grad_factors(
        *_api._upstream(grad_scale, ls.sp, reduction, name), ls.sp, reduction, ls.denom)
    given, work, outs = _outputs(out, ls, acc_dt, name)
    with _blas_single(), np.errstate(all="ignore"):
        loss, lse = _run(ls, True, scale, row_gscale, return_lse, outs)
    grads = _finish_grads(given, work, ls)
    sp = ls.sp
    return _api._finish(sp, loss.reshape(sp.batch_shape), lse, ls.denom, return_lse,
                        extra=tuple(grads))


def _with_grad_needed(x, weight, target, bias, need, *, class_weight=None,
                      sample_weight=None, ignore_index=-100, reduction="mean",
                      label_smoothing=0.0, z_loss=0.0, softcap=None, return_lse=False,
                      grad_scale=1.0, chunk_size=None):
    """As linear_cross_entropy_with_grad, computing only the gradients flagged in
    `need` = (dx, dweight, dbias); the others come back as None (for csoftmax.torch)."""
    name = "linear_cross_entropy"
    ls = _prepare(x, weight, target, bias, class_weight, sample_weight, ignore_index,
                  reduction, label_smoothing, z_loss, softcap, chunk_size, name)
    scale, row_gscale = _api._grad_factors(
        *_api._upstream(grad_scale, ls.sp, reduction, name), ls.sp, reduction, ls.denom)
    shapes = [ls.xs, (ls.v, ls.d), (ls.v,)]
    res = [np.empty(shp, dtype=ls.cdt) if (k < 2 or ls.b is not None) and need[k] else None
           for k, shp in enumerate(shapes)]
    outs = (None if res[0] is None else res[0].reshape(ls.n, ls.d), res[1], res[2])
    with _blas_single(), np.errstate(all="ignore"):
        loss, lse = _run(ls, any(a is not None for a in outs), scale, row_gscale,
                         return_lse, outs)
    sp = ls.sp
    r = _api._finish(sp, loss.reshape(sp.batch_shape), lse, ls.denom, return_lse)
    return (r, None) if not return_lse else r, res


_LIN_PARAMS_DOC = """
    x : array_like
        Inputs (features last), shape ``(..., D)``.
    weight : array_like
        The linear layer's weight, shape ``(V, D)`` as ``torch.nn.Linear``
        stores it: logits are ``x @ weight.T + bias``.  Used where it is (C-
        or F-ordered); a copy is made only for another dtype or other strides.
    target : array_like
        Integer labels of shape ``x.shape[:-1]``, or class probabilities of
        shape ``x.shape[:-1] + (V,)``.
    bias : array_like, optional
        Shape ``(V,)``.
    class_weight : array_like, optional
        Class weights ``w``, shape ``(V,)`` (the ``weight`` of
        :func:`cross_entropy`; renamed here because ``weight`` is the matrix).
    sample_weight, ignore_index, reduction, label_smoothing, z_loss, softcap, return_lse
        Exactly as in :func:`cross_entropy`.  Rows whose label is
        `ignore_index` are dropped before the matrix products.
    chunk_size : int, optional
        Rows of logits computed at a time (default: the fewest equal chunks of
        at most ``DEFAULT_CHUNK_BYTES`` = 64 MiB of logits each, at least one
        row).  Each chunk reads W (and updates dW) once more: with few rows and
        many classes a larger chunk is faster, at the cost of its memory."""


linear_cross_entropy.__doc__ = """Cross-entropy of the logits ``x @ weight.T + bias``, one chunk at a time.

    The N x V logits are never held: each chunk of ``chunk_size`` rows is
    multiplied by NumPy's BLAS into one reused buffer and reduced by the
    fused C pass.  The result equals ``cross_entropy(x @ weight.T + bias,
    target, ...)`` up to the rounding of the matrix product.

    Parameters
    ----------""" + _LIN_PARAMS_DOC + """

    Returns
    -------
    loss : ndarray or NumPy scalar
        As :func:`cross_entropy` (result dtype of ``x`` and ``weight``).
    lse : ndarray
        Only with ``return_lse=True``.

    Raises
    ------
    ValueError
        Mismatched feature sizes, `weight` not 2-D, a label out of range (the
        message names the sample), `chunk_size` < 1, and everything
        :func:`cross_entropy` refuses.

    Examples
    --------
    >>> import numpy as np, csoftmax
    >>> x = np.array([[1.0, 0.0]]); W = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    >>> round(float(csoftmax.linear_cross_entropy(x, W, np.array([0]))), 12)
    0.239544781366
    """

linear_cross_entropy_with_grad.__doc__ = """Loss of ``x @ weight.T + bias`` and its gradients for `x`, `weight` and `bias`.

    Per chunk of rows: logits by NumPy's BLAS into a reused buffer, loss and
    gradient ``g`` by the fused C pass in place, then ``dx = g @ weight`` and
    ``dweight += g.T @ x`` (and ``dbias += g.sum(0)``).  Peak extra memory is
    ``dx + dweight (+ dbias) + one chunk of logits``, plus at most 3 partial
    products of ``chunk_size x D`` (V > 8192) and 2 MiB per thread.

    Parameters
    ----------""" + _LIN_PARAMS_DOC + """
    grad_scale : float or array_like, optional
        The upstream gradient, as in :func:`cross_entropy_with_grad`.
    accumulate_dtype : dtype, optional
        dtype in which ``dweight`` and ``dbias`` are summed over chunks
        (default: the compute dtype; ``np.float64`` for float32 input costs
        a float64 ``(V, D)`` accumulator).
    out : tuple of ndarray, optional
        ``(dx, dweight)`` or, with `bias`, ``(dx, dweight, dbias)``: arrays of
        the result dtype that receive the gradients (must not overlap the
        inputs); returned.

    Returns
    -------
    loss : ndarray or NumPy scalar
    dx : ndarray
        Shape of `x`; rows of ignored samples are 0.
    dweight : ndarray
        Shape ``(V, D)``.
    dbias : ndarray
        Shape ``(V,)``; only when `bias` is given.
    lse : ndarray
        Only with ``return_lse=True``.

    Notes
    -----
    Chunk order is fixed, so results do not depend on the thread count of
    csoftmax's pass; with more than one chunk ``dweight`` and ``dbias`` are
    sums of per-chunk products, rounded once per chunk in the accumulation
    dtype (README: "Fused linear + cross-entropy" states the bound).

    Examples
    --------
    >>> import numpy as np, csoftmax
    >>> x = np.ones((2, 3)); W = np.zeros((4, 3))
    >>> loss, dx, dW = csoftmax.linear_cross_entropy_with_grad(x, W, np.array([0, 1]))
    >>> dW[:, 0]
    array([-0.25, -0.25,  0.25,  0.25])
    """

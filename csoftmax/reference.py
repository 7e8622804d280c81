"""Pure-NumPy reference implementations of the csoftmax functions.

This module is the test oracle for the C kernels.  It is written for clarity,
not speed, and shares no code with the compiled extension:

* every input is cast to float64 and every floating result is float64,
  whatever the input dtype (so a float32 or float16 input is evaluated
  exactly as its float64 value);
* ``logsumexp``, ``softmax`` and ``log_softmax`` reproduce the results of
  ``scipy.special`` (including the handling of NaN / +-inf), using the same
  algorithms;
* the cross-entropy functions are defined through ``log_softmax``: the loss of
  a row ``z`` with label ``k`` is ``-log_softmax(z)[k]``, its gradient is
  ``softmax(z) - onehot(k)``; for a soft target ``t`` (probabilities with the
  shape of the logits) the loss is ``-sum_k t_k * log_softmax(z)_k`` and the
  gradient is ``sum(t) * softmax(z) - t``.  The options (class and sample
  weights, ignore_index, label smoothing, z-loss, soft-capping) follow
  PyTorch's ``F.cross_entropy`` formulas, written out in ``_cross_entropy``.
* ``linear_cross_entropy(_with_grad)`` materialises the logits
  ``x @ weight.T + bias`` in float64 and applies ``_cross_entropy`` to them;
  the gradients follow by the chain rule: ``dx = g @ weight``,
  ``dweight = g.T @ x``, ``dbias = g.sum(0)`` with ``g`` the logits' gradient.
* the class-slice states (``partial_logsumexp``, ``partial_cross_entropy``,
  ``merge_*``) are defined from their meaning: per slice the max, its count,
  the sum of the other exponentials, the target logit and the smoothing sums;
  the merge rescales every slice to the overall max in one step (not left to
  right), and ``merge_cross_entropy`` is ``cross_entropy``'s formula on the
  merged log-sum-exp.
* ``log_softmax`` uses the log1p form for rows with a finite maximum, so the
  reference is accurate where one entry dominates (SciPy's formula is not).

Deliberate choices where SciPy has nothing sensible to copy:

* ``softmax`` / ``log_softmax`` of an array with no elements return an empty
  float64 array of the same shape (SciPy raises from ``np.max``).
* ``logsumexp`` of an empty reduction returns ``-inf`` with sign ``-1``, which
  is what SciPy returns (its empty-input branch takes ``sign(-inf)``).
* bool and object inputs raise ``TypeError`` (csoftmax rejects them); complex
  input has references of its own, ``logsumexp_complex``, ``softmax_complex``
  and ``log_softmax_complex``, for finite input (another algorithm than
  csoftmax's complex path: shifted by the largest real part only, summed in
  clongdouble).
"""

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

__all__ = [
    "logsumexp",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "cross_entropy_with_grad",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "logsumexp_complex",
    "softmax_complex",
    "log_softmax_complex",
    "partial_logsumexp",
    "partial_cross_entropy",
    "merge_partials",
    "merge_logsumexp",
    "merge_cross_entropy",
]

_REDUCTIONS = ("none", "sum", "mean")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def _as_float64(x, what="input"):
    """Return ``x`` as a float64 ndarray (a copy; the caller's data is never
    touched).  Only real integer and real floating inputs are accepted."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{what} must have a real integer or floating dtype, "
            f"got {arr.dtype}")
    return arr.astype(np.float64, copy=True)


def _axes(axis, ndim):
    """Normalize ``axis`` (None, int or tuple) to a sorted tuple of axes."""
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(normalize_axis_tuple(axis, ndim)))


def _to_rows(x, axes):
    """Move the reduced ``axes`` to the end and flatten to (rows, K).

    Returns the 2-D view/copy together with the shape of the kept axes, so
    that a per-row result can be reshaped back.
    """
    kept = [ax for ax in range(x.ndim) if ax not in axes]
    moved = np.transpose(x, kept + list(axes))
    kept_shape = tuple(x.shape[ax] for ax in kept)
    k = int(np.prod([x.shape[ax] for ax in axes], dtype=np.int64))
    rows = int(np.prod(kept_shape, dtype=np.int64))
    return moved.reshape(rows, k), kept_shape


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if ax in axes else n for ax, n in enumerate(shape))
    return tuple(n for ax, n in enumerate(shape) if ax not in axes)


def _scalar_if_0d(arr):
    arr = np.asarray(arr)
    return arr[()] if arr.ndim == 0 else arr


def _where_mask(where, shape):
    """``where`` (a boolean array) broadcast to ``shape``, or None.

    The ``where=`` semantics of every function here: elements where the mask
    is False take no part, as if they were -inf, whatever they hold (NaN
    included); a row with no element left is "fully masked" and gets the
    neutral result (logsumexp -inf with sign 0, softmax 0, log_softmax -inf,
    cross-entropy loss 0 and gradient 0, not counted in "mean").
    """
    if where is None:
        return None
    w = np.asarray(where)
    if w.dtype != np.bool_:
        raise TypeError(f"where must be a boolean array, got dtype {w.dtype}")
    try:
        return np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(f"where of shape {w.shape} does not broadcast to the "
                         f"input's shape {tuple(shape)}") from None


# ---------------------------------------------------------------------------
# logsumexp
# ---------------------------------------------------------------------------

def _grad_scale_arg(grad_scale, reduction):
    gs = np.asarray(grad_scale, dtype=np.float64)
    if gs.ndim and reduction != "none":
        raise ValueError("an array grad_scale needs reduction='none'")
    return gs


def _check_labels(flat, n_classes, ignored):
    """Raise for the first label outside [0, n_classes) that is not ignored."""
    bad = np.flatnonzero(~ignored & ((flat < 0) | (flat >= n_classes)))
    if bad.size:
        pos = int(bad[0])
        raise ValueError(f"label {int(flat[pos])} at position {pos} is out of range "
                         f"[0, {n_classes})")


def _lse_rows(rows, weights):
    """logsumexp of every row of the 2-D float64 array ``rows``.

    ``weights`` is None or an array of the same shape.  Returns (lse, sign),
    1-D arrays of length ``rows.shape[0]``; ``lse`` is log|sum| and ``sign``
    the sign of the sum (SciPy's ``return_sign=True`` convention).
    """
    with np.errstate(all="ignore"):
        a = rows
        if weights is not None:
            # SciPy: an element with zero weight adds nothing, even if it is
            # NaN or infinite (in the accurate path below).
            a = np.where(weights == 0, -np.inf, a)

        m = np.max(a, axis=1, keepdims=True)        # NaN propagates
        is_max = a == m                             # all False in NaN rows

        # Terms other than the maximal ones, shifted by the row maximum.
        # (If m is -inf every element is maximal; if m is NaN, exp gives NaN.)
        others = np.where(is_max, -np.inf, a)
        terms = np.exp(others - m)
        if weights is None:
            count = np.sum(is_max, axis=1, keepdims=True).astype(np.float64)
            s = np.sum(np.where(is_max, 0.0, terms), axis=1, keepdims=True)
            # log(count + s) written as log1p((count - 1) + s): accurate when
            # the maximum is unique and the others are tiny, e.g.
            # lse([0, -40]) = log1p(exp(-40)) = 4.25e-18.
            lse = m + np.log1p((count - 1.0) + s)
            sign = np.ones_like(lse)
        else:
            # SciPy's weighted algorithm: w = total weight at the maximal
            # elements, s = (sum of the other weighted terms) / w,
            # lse = m + log|w| + log|1 + s|.
            w = np.sum(np.where(is_max, weights, 0.0), axis=1, keepdims=True)
            s = np.sum(weights * terms, axis=1, keepdims=True)
            s = np.where(s == 0, s, s / w)
            sign = np.sign(s + 1.0) * np.sign(w)
            s = np.where(s < -1.0, -s - 2.0, s)     # log1p(-s-2) = log|1+s|
            lse = np.log1p(s) + np.log(np.abs(w)) + m

        # Where that is not finite, SciPy falls back to the direct formula
        # log|sum(b * exp(a))| on the *original* values; this decides the
        # special cases (+inf rows, all -inf rows -> -inf with sign 0, NaN).
        direct_terms = np.exp(rows) if weights is None else weights * np.exp(rows)
        direct = np.sum(direct_terms, axis=1, keepdims=True)
        direct_sign = np.sign(direct)
        direct_lse = np.log(np.abs(direct))

        finite = np.isfinite(lse)
        lse = np.where(finite, lse, direct_lse)
        sign = np.where(finite, sign, direct_sign)
    return lse[:, 0], sign[:, 0]


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False,
              *, out=None, where=None):
    """log(sum(b * exp(a))) over ``axis``; see scipy.special.logsumexp.

    ``out`` (optional) receives the lse values (not the sign).  ``where``
    (boolean, broadcastable to ``a`` (and ``b``)): masked elements are left
    out, as if ``b`` were 0 there; a row with nothing left gives -inf with
    sign 0 (also an empty row, where SciPy's sign is -1).
    """
    x = _as_float64(a, "a")
    w = None
    if b is not None:
        w = _as_float64(b, "b")
        x, w = np.broadcast_arrays(x, w)
        w = np.array(w)
        x = np.array(x)
    mask = _where_mask(where, x.shape)
    if mask is not None:
        x = np.where(mask, x, -np.inf)
        w = None if w is None else np.where(mask, w, 0.0)
    if x.ndim == 0:                      # SciPy works on at least 1-D input
        x = x.reshape(1)
        w = None if w is None else w.reshape(1)
        mask = None if mask is None else mask.reshape(1)

    axes = _axes(axis, x.ndim)
    result_shape = _reduced_shape(x.shape, axes, keepdims)

    if x.size == 0:
        lse = np.full(result_shape, -np.inf)
        sign = np.full(result_shape, -1.0)   # SciPy: sign(-inf)
    else:
        rows, kept_shape = _to_rows(x, axes)
        wrows = None if w is None else _to_rows(w, axes)[0]
        lse_rows, sign_rows = _lse_rows(rows, wrows)
        lse = lse_rows.reshape(result_shape)
        sign = sign_rows.reshape(result_shape)
        if not return_sign:
            # A negative sum has no real logarithm.
            lse = np.where(sign < 0, np.nan, lse)
    if mask is not None:
        # nothing left in the row: the sum is 0 (JAX's convention: sign 0)
        empty = ~np.any(mask, axis=axes, keepdims=keepdims)
        lse = np.where(empty, -np.inf, lse)
        sign = np.where(empty, 0.0, sign)

    if out is not None:
        out[...] = lse
        lse = out
    else:
        lse = _scalar_if_0d(lse)
    if return_sign:
        return lse, _scalar_if_0d(sign)
    return lse


# ---------------------------------------------------------------------------
# softmax / log_softmax
# ---------------------------------------------------------------------------

def softmax(x, axis=None, *, out=None, where=None):
    """exp(x) / sum(exp(x)) over ``axis``, shifted by the maximum (SciPy's
    formula).  A row containing NaN or +inf, or made only of -inf, gives an
    all-NaN row; -inf entries of a row with a finite maximum give 0.

    ``where``: masked elements are computed as -inf and the result there is
    0, whatever the rest of the row gives (JAX's ``softmax(where=)``); a fully
    masked row is all 0."""
    z = _as_float64(x, "x")
    mask = _where_mask(where, z.shape)
    if mask is not None:
        z = np.where(mask, z, -np.inf)
    axes = _axes(axis, z.ndim)
    if z.size == 0:
        res = z
    else:
        with np.errstate(all="ignore"):
            z_max = np.max(z, axis=axes, keepdims=True)
            e = np.exp(z - z_max)
            res = e / np.sum(e, axis=axes, keepdims=True)
    if mask is not None:
        res = np.where(mask, res, 0.0)
    if out is not None:
        out[...] = res
        return out
    return _scalar_if_0d(res)


def _log_softmax_last(z):
    """log_softmax over the last axis of a float64 array.

    Rows with a finite maximum m use ``(z - m) - log1p((count - 1) + s)``
    with ``count`` the number of entries equal to m and ``s`` the sum of
    exp(z - m) over the others: no precision is lost when one entry dominates
    (``log(sum)`` would round ``1 + tiny`` to 1).  Other rows follow SciPy's
    formula with the shift replaced by 0.
    """
    with np.errstate(all="ignore"):
        m = np.max(z, axis=-1, keepdims=True)
        finite = np.isfinite(m)
        shift = np.where(finite, m, 0.0)
        tmp = z - shift
        is_max = z == m
        count = np.sum(is_max, axis=-1, keepdims=True).astype(np.float64)
        s = np.sum(np.where(is_max, 0.0, np.exp(tmp)), axis=-1, keepdims=True)
        accurate = tmp - np.log1p((count - 1.0) + s)
        scipy_form = tmp - np.log(np.sum(np.exp(tmp), axis=-1, keepdims=True))
        return np.where(finite, accurate, scipy_form)


def log_softmax(x, axis=None, *, out=None, where=None):
    """log(softmax(x)): ``(x - max) - log(sum(exp(x - max)))`` with the log
    term in the log1p form (see ``_log_softmax_last``); rows whose maximum is
    not finite follow SciPy (shift 0, ``tmp - log(sum(exp(tmp)))``).

    ``where``: masked elements are computed as -inf and the result there is
    -inf, whatever the rest of the row gives; a fully masked row is all -inf."""
    z = _as_float64(x, "x")
    mask = _where_mask(where, z.shape)
    if mask is not None:
        z = np.where(mask, z, -np.inf)
    if z.ndim == 0:
        z = z.reshape(1)
        zero_d = True
    else:
        zero_d = False
    axes = _axes(axis, z.ndim)
    if z.size == 0:
        res = z
    else:
        rows, kept_shape = _to_rows(z, axes)
        res_rows = _log_softmax_last(rows)
        kept = [ax for ax in range(z.ndim) if ax not in axes]
        moved_shape = tuple(z.shape[ax] for ax in kept) + tuple(z.shape[ax] for ax in axes)
        res = np.transpose(res_rows.reshape(moved_shape),
                           np.argsort(kept + list(axes)))
    if zero_d:
        res = res.reshape(())
    if mask is not None:
        res = np.where(mask, res, -np.inf)
    if out is not None:
        out[...] = res
        return out
    return _scalar_if_0d(res)


# ---------------------------------------------------------------------------
# cross-entropy
# ---------------------------------------------------------------------------

def _check_nonneg(v, shape, name):
    arr = np.asarray(v, dtype=np.float64)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    if not np.all(arr >= 0):
        raise ValueError(f"{name} must be non-negative and not NaN")
    return arr


def _cross_entropy(logits, target, axis, reduction, weight=None, sample_weight=None,
                   ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None,
                   grad_scale=1.0, where=None):
    """Shared implementation, PyTorch's F.cross_entropy semantics plus z-loss,
    soft-capping and sample weights.  Returns (loss, grad, lse) in float64;
    ``grad`` is the gradient of the returned loss times ``grad_scale`` (for
    "none": of sum_i grad_scale_i * loss_i).

    Per sample, with z' = c tanh(z / c) (softcap c) or z, p = softmax(z'),
    lse = logsumexp(z'), class weights w (W = sum w), smoothing e, z-loss a,
    sample weight s:
      labels y:  l = s [(1-e) w_y (-log p_y) + (e/C) sum_c w_c (-log p_c) + a lse^2]
      soft q:    t = w * ((1-e) q + e/C),  l = s [-sum_c t_c log p_c + a lse^2]
    "mean" divides by sum_i s_i w_{y_i} over the samples that are not ignored
    (labels) or by sum_i s_i (soft targets).

    ``where`` (boolean, broadcastable to the logits): the classes where it is
    False take no part: z' is -inf there (after the soft-cap), so p is 0 and
    log p is -inf; the smoothing's e/C becomes e/C_r over the row's C_r
    unmasked classes (the smoothing mass goes to unmasked classes only); a
    term whose coefficient ((1-e) w_y for a label, t_c for a soft target) is
    exactly 0 at a masked class is left out, a positive one makes the loss
    +inf; the gradient is 0 at every masked class.  A row with no unmasked
    class counts as ignored: loss 0, gradient 0, lse 0, label not checked,
    not in the "mean".
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError("label_smoothing must be in [0, 1]")
    alpha = float(z_loss)
    if not alpha >= 0.0:
        raise ValueError("z_loss must be >= 0")
    if softcap is not None and not float(softcap) > 0.0:
        raise ValueError("softcap must be > 0")
    z = _as_float64(logits, "logits")
    if z.ndim == 0:
        raise ValueError("logits must have at least one dimension")
    axis = normalize_axis_index(axis, z.ndim)
    z = np.moveaxis(z, axis, -1)                 # classes last
    n_classes = z.shape[-1]
    sample_shape = z.shape[:-1]
    w = np.ones(n_classes) if weight is None else _check_nonneg(weight, (n_classes,), "weight")
    s = (np.ones(sample_shape) if sample_weight is None
         else _check_nonneg(sample_weight, sample_shape, "sample_weight"))
    gs = _grad_scale_arg(grad_scale, reduction)
    mask = _where_mask(where, np.shape(logits))
    valid = None if mask is None else np.moveaxis(mask, axis, -1)
    row_valid = None if valid is None else np.any(valid, axis=-1)

    with np.errstate(all="ignore"):
        if softcap is not None:
            c = float(softcap)
            zc = c * np.tanh(z / c)
            chain = 1.0 - np.tanh(z / c) ** 2
        else:
            zc = z
            chain = 1.0
        if valid is not None:
            zc = np.where(valid, zc, -np.inf)
        # (no classes or no samples: nothing to compute, np.max would raise)
        logp = _log_softmax_last(zc) if zc.size else zc.copy()
        # SciPy's softmax (not exp(logp)): a row with NaN or +inf, or all
        # -inf, gives an all-NaN softmax and so an all-NaN gradient
        p = softmax(zc, axis=-1) if zc.size else zc.copy()
        lse = logsumexp(zc, axis=-1) if zc.size else np.zeros(sample_shape)
        lse = np.asarray(lse, dtype=np.float64).reshape(sample_shape)

    t = np.asarray(target)
    if t.dtype.kind in "iu":
        if t.shape != sample_shape:
            raise ValueError(
                f"integer target must have shape {sample_shape} (logits "
                f"without the class axis), got {t.shape}")
        flat = t.reshape(-1)
        ignored = (np.zeros(flat.shape, bool) if ignore_index is None
                   else flat == ignore_index)
        if row_valid is not None:
            ignored = ignored | ~row_valid.reshape(-1)   # fully masked: ignored
        _check_labels(flat, n_classes, ignored)
        ignored = ignored.reshape(sample_shape)
        y = np.where(ignored, 0, t).astype(np.intp)[..., None]
        onehot = np.zeros(z.shape)
        if n_classes:
            np.put_along_axis(onehot, y, 1.0, axis=-1)
        w_y = w[y[..., 0]] if n_classes else np.zeros(sample_shape)
        with np.errstate(all="ignore"):
            nll = -np.take_along_axis(logp, y, axis=-1)[..., 0] if n_classes else 0.0 * w_y
            smooth = -np.sum(w * logp, axis=-1)
            # Terms with a zero coefficient are left out rather than
            # multiplied by 0: the smoothing sum is +inf as soon as a row
            # has a -inf logit (which is fine at a non-target class), and
            # 0 * inf would turn the loss into NaN.
            per = (1.0 - eps) * w_y * nll
            W = np.sum(w)
            dper = (1.0 - eps) * w_y[..., None] * (p - onehot)
            if valid is not None and n_classes:
                # a label on a masked class with a zero coefficient takes no part
                y_masked = ~np.take_along_axis(valid, y, axis=-1)[..., 0]
                per = np.where(y_masked & ((1.0 - eps) * w_y == 0), 0.0, per)
            if eps and n_classes and valid is None:
                per = per + (eps / n_classes) * smooth
                dper = dper + (eps / n_classes) * (W * p - w)
            elif eps and n_classes:
                # uniform over the row's unmasked classes: e / C_r each
                e_r = eps / np.maximum(np.sum(valid, axis=-1), 1)
                w_valid = np.where(valid, w, 0.0)
                smooth_r = -np.sum(np.where(valid, w * logp, 0.0), axis=-1)
                per = per + e_r * smooth_r
                dper = dper + e_r[..., None] * (
                    np.sum(w_valid, axis=-1, keepdims=True) * p - w_valid)
            if alpha:
                per = per + alpha * lse ** 2
                dper = dper + 2.0 * alpha * lse[..., None] * p
            per = np.where(ignored, 0.0, s * per)
            dper = dper * chain
            grad = np.where(ignored[..., None], 0.0, s[..., None] * dper)
            if valid is not None:
                grad = np.where(valid, grad, 0.0)
                lse = np.where(row_valid, lse, 0.0)
        denom = float(np.sum(np.where(ignored, 0.0, s * w_y)))
    elif t.dtype.kind == "f":
        if t.shape != np.shape(logits):
            raise ValueError(
                f"soft target must have the shape of the logits "
                f"{np.shape(logits)}, got {t.shape}")
        q = np.moveaxis(t.astype(np.float64), axis, -1)
        if valid is None:
            tt = w * ((1.0 - eps) * q + (eps / n_classes if n_classes else 0.0))
        else:
            # smoothing: e / C_r on each of the row's C_r unmasked classes
            e_r = eps / np.maximum(np.sum(valid, axis=-1, keepdims=True), 1)
            tt = w * ((1.0 - eps) * q + np.where(valid, e_r, 0.0))
        with np.errstate(all="ignore"):
            terms = tt * logp
            if valid is not None:
                # masked classes: a zero t_c takes no part (not 0 * -inf)
                terms = np.where(~valid & (tt == 0), 0.0, terms)
            per = -np.sum(terms, axis=-1)
            dper = np.sum(tt, axis=-1, keepdims=True) * p - tt
            if alpha:
                per = per + alpha * lse ** 2
                dper = dper + 2.0 * alpha * lse[..., None] * p
            per = s * per
            dper = dper * chain
            grad = s[..., None] * dper
            if valid is not None:
                per = np.where(row_valid, per, 0.0)
                grad = np.where(valid & row_valid[..., None], grad, 0.0)
                lse = np.where(row_valid, lse, 0.0)
        denom = float(np.sum(s if valid is None else np.where(row_valid, s, 0.0)))
    else:
        raise TypeError(
            f"target must be an integer (labels) or floating (probabilities) "
            f"array, got dtype {t.dtype}")

    with np.errstate(all="ignore"):
        if reduction == "none":
            loss = per
            grad = grad * (gs[..., None] if gs.ndim else gs)
        elif reduction == "sum":
            loss = np.float64(np.sum(per))
            grad = grad * gs
        else:
            loss = np.float64(np.sum(per) / denom) if denom else np.float64(np.nan)
            grad = grad * gs / denom if denom else grad * np.nan
    return loss, np.moveaxis(grad, -1, axis), lse


def cross_entropy(logits, target, *, axis=-1, weight=None, sample_weight=None,
                  ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0,
                  softcap=None, return_lse=False, where=None):
    """Softmax cross-entropy loss; see ``_cross_entropy`` (``where``: a mask
    of the classes taking part)."""
    loss, _, lse = _cross_entropy(logits, target, axis, reduction, weight, sample_weight,
                                  ignore_index, label_smoothing, z_loss, softcap,
                                  where=where)
    if return_lse:
        return loss, _lse_zero_ignored(lse, target, ignore_index)
    return loss


def cross_entropy_with_grad(logits, target, *, axis=-1, weight=None, sample_weight=None,
                            ignore_index=-100, reduction="mean", label_smoothing=0.0,
                            z_loss=0.0, softcap=None, return_lse=False, grad_scale=1.0,
                            where=None):
    """(loss, d loss / d logits[, lse]); for reduction="none" the gradient is that
    of sum_i grad_scale_i * loss_i."""
    loss, grad, lse = _cross_entropy(logits, target, axis, reduction, weight, sample_weight,
                                     ignore_index, label_smoothing, z_loss, softcap,
                                     grad_scale, where=where)
    if return_lse:
        return loss, grad, _lse_zero_ignored(lse, target, ignore_index)
    return loss, grad


def _lse_zero_ignored(lse, target, ignore_index):
    t = np.asarray(target)
    if t.dtype.kind in "iu" and ignore_index is not None:
        lse = np.where(t == ignore_index, 0.0, lse)
    return lse


# ---------------------------------------------------------------------------
# fused linear + cross-entropy (the logits materialised)
# ---------------------------------------------------------------------------

def _linear_logits(x, weight, bias):
    xx = _as_float64(x, "x")
    w = _as_float64(weight, "weight")
    if w.ndim != 2 or xx.ndim < 1 or xx.shape[-1] != w.shape[1]:
        raise ValueError(f"x {xx.shape} and weight {w.shape} do not fit (weight is (V, D))")
    x2 = xx.reshape(int(np.prod(xx.shape[:-1])), w.shape[1])
    z = x2 @ w.T
    if bias is not None:
        z = z + _as_float64(bias, "bias")
    return xx.shape, x2, w, z.reshape(xx.shape[:-1] + (w.shape[0],))


def linear_cross_entropy(x, weight, target, *, bias=None, class_weight=None,
                         sample_weight=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0, z_loss=0.0, softcap=None, return_lse=False):
    """``cross_entropy(x @ weight.T + bias, target, weight=class_weight, ...)``."""
    _, _, _, z = _linear_logits(x, weight, bias)
    return cross_entropy(z, target, axis=-1, weight=class_weight,
                         sample_weight=sample_weight, ignore_index=ignore_index,
                         reduction=reduction, label_smoothing=label_smoothing,
                         z_loss=z_loss, softcap=softcap, return_lse=return_lse)


def linear_cross_entropy_with_grad(x, weight, target, *, bias=None, class_weight=None,
                                   sample_weight=None, ignore_index=-100, reduction="mean",
                                   label_smoothing=0.0, z_loss=0.0, softcap=None,
                                   return_lse=False, grad_scale=1.0):
    """``(loss, dx, dweight[, dbias][, lse])`` by the chain rule through the
    materialised logits."""
    xshape, x2, w, z = _linear_logits(x, weight, bias)
    r = cross_entropy_with_grad(z, target, axis=-1, weight=class_weight,
                                sample_weight=sample_weight, ignore_index=ignore_index,
                                reduction=reduction, label_smoothing=label_smoothing,
                                z_loss=z_loss, softcap=softcap, return_lse=return_lse,
                                grad_scale=grad_scale)
    g = r[1].reshape(-1, w.shape[0])
    grads = [(g @ w).reshape(xshape), g.T @ x2]
    if bias is not None:
        grads.append(g.sum(axis=0))
    return (r[0], *grads) + ((r[2],) if return_lse else ())


# ---------------------------------------------------------------------------
# complex input (finite values)
# ---------------------------------------------------------------------------

def _wrap_angle(x):
    """Angles into (-pi, pi]."""
    w = np.pi - np.mod(np.pi - np.asarray(x, dtype=np.float64), 2 * np.pi)
    return np.where(np.abs(x) < np.pi, x, w)


def _complex_rows(a, axes):
    arr = np.asarray(a)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    axes = _axes(axes, arr.ndim)
    rows, kept = _to_rows(arr.astype(np.clongdouble), axes)
    return arr.shape, axes, rows, kept


def logsumexp_complex(a, axis=None, b=None, keepdims=False, return_sign=False):
    """``log(sum(b * exp(a)))`` of finite complex input (principal branch:
    imaginary part in (-pi, pi]), shifted by each row's largest real part and
    summed in clongdouble; with ``return_sign``: ``(log|sum|, sum / |sum|)``."""
    if b is not None:
        a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    shape, axes, rows, kept = _complex_rows(a, axis)
    w = None if b is None else _complex_rows(b, axis)[2]
    r = rows.real.max(axis=1, keepdims=True)
    terms = np.exp(rows - r)
    tot = (terms if w is None else w * terms).sum(axis=1)
    out_shape = _reduced_shape(shape, axes, keepdims)
    mag = (np.log(np.abs(tot)) + r[:, 0]).astype(np.float64)
    if return_sign:
        ph = np.angle(tot).astype(np.float64)
        return (_scalar_if_0d(mag.reshape(out_shape)),
                _scalar_if_0d(np.exp(1j * ph).reshape(out_shape)))
    res = mag + 1j * _wrap_angle(np.angle(tot).astype(np.float64))
    return _scalar_if_0d(res.reshape(out_shape))


def _complex_softmax(x, axis, log):
    arr = np.asarray(x)
    shape, axes, rows, kept = _complex_rows(arr, axis)
    r = rows.real.max(axis=1, keepdims=True)
    t = rows - r
    tot = np.exp(t).sum(axis=1, keepdims=True)
    res_rows = (t - np.log(tot)) if log else np.exp(t) / tot
    keep_axes = [ax for ax in range(len(shape)) if ax not in axes]
    moved = tuple(shape[ax] for ax in keep_axes) + tuple(shape[ax] for ax in axes)
    res = np.transpose(res_rows.reshape(moved), np.argsort(keep_axes + list(axes)))
    res = res.astype(np.complex128)
    return res.reshape(arr.shape) if arr.ndim else res.reshape(())[()]


def softmax_complex(x, axis=None):
    """``exp(x) / sum(exp(x))`` of finite complex input, in clongdouble."""
    return _complex_softmax(x, axis, False)


def log_softmax_complex(x, axis=None):
    """``log(softmax(x))`` of finite complex input, in clongdouble, up to a
    multiple of ``2 pi i`` per row (compare imaginary parts modulo 2 pi)."""
    return _complex_softmax(x, axis, True)


# ---------------------------------------------------------------------------
# class-slice states
# ---------------------------------------------------------------------------
def _capped(z, softcap):
    return z if softcap is None else float(softcap) * np.tanh(z / float(softcap))


def _slice_state(z, labels, start, w, smooth, softcap):
    """(rows, 6) states of rows z (rows, c) holding classes start.. start+c-1."""
    z = _capped(z, softcap)
    rows, c = z.shape
    st = np.zeros((rows, 6))
    for r in range(rows):
        v = z[r]
        if np.isnan(v).any():
            st[r, :3] = (np.nan, 0.0, np.nan)
        elif np.isposinf(v).any():
            st[r, :3] = (np.inf, 1.0, 0.0)
        elif c == 0 or np.isneginf(v).all():
            st[r, :3] = (-np.inf, 0.0, 0.0)
        else:
            m = v.max()
            st[r, :3] = (m, np.sum(v == m), np.sum(np.exp(v[v != m] - m)))
        if labels is not None and start <= labels[r] < start + c:
            st[r, 3] = v[labels[r] - start]
        if smooth:
            ws = w[start:start + c]
            sh = st[r, 0] if np.isfinite(st[r, 0]) else 0.0
            st[r, 4] = ws.sum()
            # (a NaN or +inf slice makes the row's loss NaN whatever this is: 0)
            special = np.isnan(st[r, 0]) or st[r, 0] == np.inf
            st[r, 5] = np.sum(ws * (sh - v)) if c and not special else 0.0
    return st


def partial_logsumexp(a, axis=-1):
    """States (batch + (6,)) of a slice of the classes along ``axis``."""
    z = np.moveaxis(_as_float64(a), axis, -1)
    st = _slice_state(z.reshape(int(np.prod(z.shape[:-1])), z.shape[-1]), None, 0, None,
                      False, None)
    return st.reshape(z.shape[:-1] + (6,))


def partial_cross_entropy(logits, target, *, num_classes, start=0, axis=-1, weight=None,
                          ignore_index=-100, label_smoothing=0.0, softcap=None):
    """States of a slice (classes ``start ..``) for the cross-entropy."""
    z = np.moveaxis(_as_float64(logits), axis, -1)
    lab = np.asarray(target, dtype=np.int64).reshape(-1)
    w = np.ones(num_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    st = _slice_state(z.reshape(lab.size, z.shape[-1]), lab, start, w,
                      label_smoothing != 0.0, softcap)
    if ignore_index is not None:
        st[lab == ignore_index] = (-np.inf, 0, 0, 0, 0, 0)
    return st.reshape(z.shape[:-1] + (6,))


def merge_partials(states):
    """Merge states (sequence of batch + (6,) arrays): every slice rescaled to the
    overall max at once."""
    p = np.stack([np.asarray(s, dtype=np.float64) for s in states])   # (P, ..., 6)
    m = p[..., 0]
    out = np.zeros(p.shape[1:])
    nan = np.isnan(m).any(0)
    pinf = np.isposinf(m).any(0) & ~nan
    with np.errstate(invalid="ignore"):
        M = np.max(np.where(np.isnan(m), -np.inf, m), axis=0)
        top = (m == M) & np.isfinite(M)
        scale = np.where(top, 1.0, np.exp(np.where(np.isfinite(M), m - M, -np.inf)))
        cnt = np.sum(np.where(top, p[..., 1], 0.0), 0)
        s = np.sum(np.where(top, p[..., 2], (p[..., 1] + p[..., 2]) * scale), 0)
        shM = np.where(np.isfinite(M), M, 0.0)
        shi = np.where(np.isfinite(m), m, 0.0)
        tdot = np.sum(p[..., 4] * (shM - shi) + p[..., 5], 0)
    out[..., 0] = np.where(nan, np.nan, np.where(pinf, np.inf, M))
    out[..., 1] = np.where(nan, 0.0, np.where(pinf, 1.0, cnt))
    out[..., 2] = np.where(nan, np.nan, np.where(pinf, 0.0, s))
    out[..., 3] = p[..., 3].sum(0)
    out[..., 4] = p[..., 4].sum(0)
    out[..., 5] = tdot
    return out


def merge_logsumexp(states):
    """log-sum-exp from the states of a row's slices."""
    st = merge_partials(states)
    with np.errstate(invalid="ignore", divide="ignore"):
        return st[..., 0] + np.log1p((st[..., 1] - 1.0) + st[..., 2])


def merge_cross_entropy(states, target, *, num_classes, weight=None, sample_weight=None,
                        ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0,
                        softcap=None, return_lse=False):
    """The cross-entropy formula of ``_cross_entropy`` on the merged states:
    -log p_y = lse - z'_y, sum_c w_c (-log p_c) = W lse - sum_c w_c z'_c."""
    del softcap          # the states hold capped logits already
    st = merge_partials(states)
    lab = np.asarray(target, dtype=np.int64)
    C = num_classes
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    s = np.ones(lab.shape) if sample_weight is None else np.asarray(sample_weight, np.float64)
    keep = np.ones(lab.shape, bool) if ignore_index is None else lab != ignore_index
    e, a = float(label_smoothing), float(z_loss)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        lse = merge_logsumexp(states)
        M = st[..., 0]
        wy = w[np.where(keep, lab, 0)]
        sum_wz = st[..., 4] * np.where(np.isfinite(M), M, 0.0) - st[..., 5]
        loss = (1 - e) * wy * (lse - st[..., 3])
        if e:
            loss = loss + e / C * (w.sum() * lse - sum_wz)
        if a:
            loss = loss + a * lse**2
        loss = np.where(keep, s * loss, 0.0)
    if reduction == "none":
        res = loss
    elif reduction == "sum":
        res = float(np.sum(loss))
    else:
        d = float(np.sum(np.where(keep, s * wy, 0.0)))
        res = float(np.sum(loss) / d) if d else float("nan")
    if return_lse:
        return res, np.where(keep, lse, 0.0)
    return res


# ---------------------------------------------------------------------------
# binary (sigmoid) cross-entropy, distillation KL, per-token log-probabilities
# (issue 16).  Written from the formulas of the spec, in float64:
#
#   binary_cross_entropy   l = w (p t sp(-z) + (1 - t) sp(z)), sp = softplus,
#                          dl/dz = w ((1 - t) sigmoid(z) - p t sigmoid(-z));
#                          a term whose coefficient t (resp. 1 - t) is exactly 0
#                          contributes exactly 0 (z = +inf, t = 1 gives 0).
#   kl_div                 per row T**2 sum_k p_k (log p_k - log q_k), q = softmax(s / T),
#                          p from the teacher; p_k == 0 terms are exactly 0;
#                          gradient T (sum_k p_k q - p).
#   token_logprobs         log_softmax(z)[label] and -sum_k p_k log p_k (0 log 0 = 0).
# ---------------------------------------------------------------------------

_KL_REDUCTIONS = ("none", "sum", "mean", "batchmean")
_TEACHER_KINDS = ("logits", "log_probs", "probs")


def _softplus(x):
    """log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)): +inf -> +inf, -inf -> 0,
    NaN -> NaN, no overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x):
    """1 / (1 + exp(-x)), written with exp(-|x|) so that nothing overflows;
    sigmoid(+inf) = 1, sigmoid(-inf) = 0, NaN -> NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _write_out(grad, out):
    if out is None:
        return grad
    if np.shape(out) != grad.shape:
        raise ValueError(f"out must have shape {grad.shape}, got {np.shape(out)}")
    out[...] = grad
    return out


def _bce(logits, target, weight, pos_weight, reduction, grad_scale):
    """(loss, grad) of the binary cross-entropy with logits, float64."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    z = _as_float64(logits, "logits")
    t = _as_float64(target, "target")
    if t.shape != z.shape:
        raise ValueError(f"target must have the shape of the logits {z.shape}, got {t.shape}")
    if not np.all((t >= 0.0) & (t <= 1.0)):           # also catches NaN
        raise ValueError("target must be in [0, 1] (and not NaN)")
    w = np.ones(z.shape)
    if weight is not None:
        w0 = _as_float64(weight, "weight")
        try:
            w = np.broadcast_to(w0, z.shape)
        except ValueError:
            raise ValueError(f"weight of shape {w0.shape} does not broadcast to the "
                             f"logits' shape {z.shape}") from None
        if not np.all(np.isfinite(w0) & (w0 >= 0.0)):
            raise ValueError("weight must be finite and >= 0")
    pw = np.ones(())
    if pos_weight is not None:
        p0 = _as_float64(pos_weight, "pos_weight")
        last = z.shape[-1] if z.ndim else 1
        if p0.ndim > 1:
            raise ValueError(f"pos_weight must have at most one dimension, got {p0.shape}")
        try:
            pw = np.broadcast_to(p0, (last,))
        except ValueError:
            raise ValueError(f"pos_weight of shape {p0.shape} does not broadcast to the "
                             f"last axis ({last},)") from None
        if not np.all(np.isfinite(p0) & (p0 >= 0.0)):
            raise ValueError("pos_weight must be finite and >= 0")
        if z.ndim == 0:
            pw = pw.reshape(())
    gs = _grad_scale_arg(grad_scale, reduction)

    with np.errstate(all="ignore"):
        # the coefficient rule: t == 0 drops the first term, t == 1 the second
        pos = np.where(t == 0.0, 0.0, pw * t * _softplus(-z))
        neg = np.where(t == 1.0, 0.0, (1.0 - t) * _softplus(z))
        per = w * (pos + neg)
        grad = w * ((1.0 - t) * _sigmoid(z) - pw * t * _sigmoid(-z))
        n = z.size
        if reduction == "none":
            loss = per
            grad = grad * gs
        elif reduction == "sum":
            loss = np.float64(np.sum(per))
            grad = grad * gs
        else:
            loss = np.float64(np.sum(per) / n) if n else np.float64(np.nan)
            grad = grad * gs / n if n else grad
    return loss, grad


def binary_cross_entropy(logits, target, *, weight=None, pos_weight=None, reduction="mean"):
    """Sigmoid cross-entropy with logits (PyTorch's binary_cross_entropy_with_logits):
    per element ``w (p t softplus(-z) + (1 - t) softplus(z))``; "mean" divides by
    the number of elements (none: nan)."""
    return _bce(logits, target, weight, pos_weight, reduction, 1.0)[0]


def binary_cross_entropy_with_grad(logits, target, *, weight=None, pos_weight=None,
                                   reduction="mean", grad_scale=1.0, out=None, inplace=False):
    """(loss, d loss / d logits): ``w ((1 - t) sigmoid(z) - p t sigmoid(-z))`` times
    grad_scale (and 1/numel for "mean"); ``out`` / ``inplace`` receive the gradient."""
    if inplace:
        if out is not None:
            raise ValueError("out= and inplace=True are exclusive")
        if not (isinstance(logits, np.ndarray) and logits.dtype.kind == "f"):
            raise TypeError("inplace=True needs floating-point logits (a numpy.ndarray)")
    loss, grad = _bce(logits, target, weight, pos_weight, reduction, grad_scale)
    if inplace:
        out = logits
    return loss, _write_out(grad, out)


def _kl(student_logits, teacher, axis, temperature, teacher_kind, reduction, mask,
        grad_scale):
    """(loss, grad) of the distillation KL, float64."""
    if reduction not in _KL_REDUCTIONS:
        raise ValueError(f"reduction must be one of {_KL_REDUCTIONS}, got {reduction!r}")
    if teacher_kind not in _TEACHER_KINDS:
        raise ValueError(f"teacher_kind must be one of {_TEACHER_KINDS}, got {teacher_kind!r}")
    T = float(temperature)
    if not (np.isfinite(T) and T > 0.0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    s = _as_float64(student_logits, "student_logits")
    tt = _as_float64(teacher, "teacher")
    if s.shape != tt.shape:
        raise ValueError(f"teacher must have the shape of the student logits {s.shape}, "
                         f"got {tt.shape}")
    if s.ndim == 0:
        raise ValueError("the logits must have at least one dimension")
    axis = normalize_axis_index(axis, s.ndim)
    s = np.moveaxis(s, axis, -1)                       # classes last
    tt = np.moveaxis(tt, axis, -1)
    row_shape, C = s.shape[:-1], s.shape[-1]
    if mask is None:
        keep = np.ones(row_shape, bool)
    else:
        keep = np.asarray(mask)
        if keep.dtype != np.bool_:
            raise TypeError(f"mask must be a boolean array, got dtype {keep.dtype}")
        if keep.shape != row_shape:
            raise ValueError(f"mask must have the row shape {row_shape}, got {keep.shape}")
    # masked rows are never read: only the counted rows are validated
    if teacher_kind == "probs" and not np.all((tt[keep] >= 0.0) & (tt[keep] <= 1.0)):
        raise ValueError("teacher probabilities must be in [0, 1] (and not NaN)")
    gs = _grad_scale_arg(grad_scale, reduction)

    def scaled(x):
        # (x - max) / T rather than x / T: softmax and log_softmax are the same
        # mathematically, but only the rounding of the shifted values (relative
        # 2**-53 of |x - max| / T, not of |x| / T) enters the result, so the
        # reference stays within a few ULP where the probabilities are not small
        if not x.size:
            return x / T
        m = np.max(x, axis=-1, keepdims=True)
        return (x - np.where(np.isfinite(m), m, 0.0)) / T

    with np.errstate(all="ignore"):
        a = scaled(s)
        if s.size:
            logq = _log_softmax_last(a)
            q = softmax(a, axis=-1)
        else:
            logq = q = a.copy()
        if teacher_kind == "logits":
            b = scaled(tt)
            logp = _log_softmax_last(b) if s.size else b.copy()
            p = softmax(b, axis=-1) if s.size else b.copy()
        elif teacher_kind == "log_probs":
            logp, p = tt, np.exp(tt)
        else:
            logp, p = np.log(tt), tt
        # 0 log 0 = 0: a term with p_k == 0 is exactly 0, even where q_k == 0
        terms = np.where(p == 0.0, 0.0, p * (logp - logq))
        kl = T * T * np.sum(terms, axis=-1)
        nan_row = np.isnan(s).any(axis=-1) | np.isnan(tt).any(axis=-1)
        kl = np.where(nan_row, np.nan, kl)
        grad = T * (np.sum(p, axis=-1, keepdims=True) * q - p)
        kl = np.where(keep, kl, 0.0)
        grad = np.where(keep[..., None], grad, 0.0)
        counted = int(np.sum(keep))
        if reduction == "none":
            loss = kl
            grad = grad * (gs[..., None] if gs.ndim else gs)
        else:
            den = {"sum": 1, "batchmean": counted, "mean": counted * C}[reduction]
            loss = np.float64(np.sum(kl) / den) if den else np.float64(np.nan)
            grad = grad * gs / den if den else grad * 0.0
    return loss, np.moveaxis(grad, -1, axis)


def kl_div(student_logits, teacher, *, axis=-1, temperature=1.0, teacher_kind="logits",
           reduction="batchmean", mask=None):
    """Distillation loss KL(p_teacher || softmax(student / T)) * T**2 per row (rows along
    the axes other than ``axis``); see ``_kl``.  "batchmean" divides by the number of
    counted (unmasked) rows, "mean" by that times C."""
    return _kl(student_logits, teacher, axis, temperature, teacher_kind, reduction, mask,
               1.0)[0]


def kl_div_with_grad(student_logits, teacher, *, axis=-1, temperature=1.0,
                     teacher_kind="logits", reduction="batchmean", mask=None, grad_scale=1.0,
                     out=None):
    """(loss, d loss / d student_logits) = T (sum(p) q - p) per row, times grad_scale and
    the reduction's factor; masked rows give 0."""
    loss, grad = _kl(student_logits, teacher, axis, temperature, teacher_kind, reduction,
                     mask, grad_scale)
    return loss, _write_out(grad, out)


def token_logprobs(logits, labels, *, axis=-1, return_entropy=False, ignore_index=None):
    """log_softmax(logits, axis)[label] per row and, with ``return_entropy``, the
    entropy -sum_k p_k log p_k of softmax(logits) (0 log 0 = 0).  Rows whose label is
    ``ignore_index`` give 0 and 0.  Special rows follow ``log_softmax`` / ``softmax``."""
    z = _as_float64(logits, "logits")
    if z.ndim == 0:
        raise ValueError("logits must have at least one dimension")
    axis = normalize_axis_index(axis, z.ndim)
    z = np.moveaxis(z, axis, -1)
    row_shape, C = z.shape[:-1], z.shape[-1]
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array, got dtype {lab.dtype}")
    if lab.shape != row_shape:
        raise ValueError(f"labels must have the row shape {row_shape}, got {lab.shape}")
    flat = lab.reshape(-1)
    ignored = (np.zeros(flat.shape, bool) if ignore_index is None
               else flat == ignore_index)
    _check_labels(flat, C, ignored)
    n = flat.size
    rows = z.reshape(n, C)
    y = np.where(ignored, 0, flat).astype(np.intp)
    with np.errstate(all="ignore"):
        if rows.size:
            logp_all = _log_softmax_last(rows)
            p = softmax(rows, axis=-1)
            logp = logp_all[np.arange(n), y]
            ent = -np.sum(np.where(p == 0.0, 0.0, p * logp_all), axis=-1)
        else:
            logp = ent = np.zeros(n)
    logp = np.where(ignored, 0.0, logp).reshape(row_shape)
    ent = np.where(ignored, 0.0, ent).reshape(row_shape)
    return (logp, ent) if return_entropy else logp


__all__ += [
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "kl_div",
    "kl_div_with_grad",
    "token_logprobs",
]

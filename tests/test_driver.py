"""Registry-driven comparison of every public function with the float64
reference (and, for the SciPy functions, with scipy.special directly).

One test per (function, input dtype, input layout); inside it the driver
loops over a fixed set of shapes x axes x ``out=`` forms (x weights /
keepdims / reductions / target kinds where they apply).  Each registry entry
knows how to call csoftmax, the reference and scipy for one case, and how to
check the result.
"""

import itertools
import zlib

import numpy as np
import pytest
import scipy.special as sps

import csoftmax
from csoftmax_testsupport import (
    LAYOUTS, SCIPY_FACTOR, assert_close, assert_linear_close, check_bce, check_kl,
    check_token_logprobs, empty_like_layout, grad_scale, load_reference, log_softmax_scale,
    loss_scale, lse_scale, result_dtype, row_dtype, with_layout)

ref = load_reference()

DTYPES = ("float32", "float64", "int64", "float16")

SHAPES = ((1,), (7,), (33,), (1, 1), (4, 17), (17, 4), (3, 5, 9),
          (2, 3, 1, 19))

OUT_FORMS = ("none", "out", "out_strided", "inplace")


def reduce_axes(ndim):
    """axis arguments to try for an array of ``ndim`` dims."""
    axes = [None, 0, -1]
    if ndim == 1:
        axes += [(0,)]
    if ndim >= 2:
        axes += [1, (0, -1)]
    if ndim >= 3:
        axes += [(1, 2), (0, 1, 2) if ndim == 3 else (0, 2, 3)]
    return axes


def class_axes(ndim):
    """axis arguments for the cross-entropy class axis."""
    axes = [-1, 0]
    if ndim >= 2:
        axes += [1]
    if ndim >= 3:
        axes += [-2]
    return axes


def make_values(shape, dtype, rng):
    """Moderate random values of ``dtype``; ints in [-20, 20]."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return rng.integers(-20, 21, size=shape).astype(dtype)
    x = rng.standard_normal(shape) * 4.0
    # a few far-below-max entries (tiny probabilities) and exact ties
    flat = x.reshape(-1)
    if flat.size > 3:
        flat[rng.integers(0, flat.size, size=2)] -= 60.0
        flat[-1] = flat[0]
    return x.astype(dtype)


def reduced_shape(shape, axis, keepdims):
    if len(shape) == 0:
        shape = (1,)
    axes = (tuple(range(len(shape))) if axis is None else
            tuple(a % len(shape) for a in np.atleast_1d(axis)))
    if keepdims:
        return tuple(1 if i in axes else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def make_out(form, shape, dtype, x):
    """(out argument, or None) for an ``out=`` form; None if the form does
    not apply (returns the marker "skip")."""
    if form == "none":
        return None
    if form == "out":
        return empty_like_layout(shape, dtype, "C")
    if form == "out_strided":
        if len(shape) == 0:
            return "skip"
        return empty_like_layout(shape, dtype, "strided")
    if form == "inplace":
        if (x.dtype != dtype or not x.flags.writeable
                or x.shape != tuple(shape)):
            return "skip"
        return x
    raise ValueError(form)


def check_returned(res, out, ctx):
    if out is not None:
        assert res is out, f"out= array was not returned ({ctx})"


# ---------------------------------------------------------------------------
# registry entries
# ---------------------------------------------------------------------------

def run_logsumexp(x, dtype, rng, out_form, ctx):
    if out_form == "inplace":
        return                       # a reduction has no in-place form
    rdt = result_dtype(dtype)
    b_forms = ["none", "full", "bcast", "signed"]
    for axis, keepdims, bform in itertools.product(
            reduce_axes(x.ndim), (False, True), b_forms):
        b = None
        if bform == "full":
            b = rng.uniform(0.0, 3.0, size=x.shape).astype(rdt)
        elif bform == "bcast":
            bshape = (1,) * (x.ndim - 1) + (x.shape[-1],)
            b = rng.uniform(0.5, 2.0, size=bshape).astype(rdt)
            b[..., 0] = 0.0                  # zero weights are ignored
        elif bform == "signed":
            # mixed signs (possible cancellation is accounted for by the
            # condition number in lse_scale); checked with return_sign
            b = rng.uniform(-1.0, 1.0, size=x.shape).astype(rdt)
        rshape = reduced_shape(x.shape, axis, keepdims)
        out = make_out(out_form, rshape, row_dtype(dtype), x)
        if isinstance(out, str):
            continue
        return_sign = bform == "signed"
        c = f"{ctx}, axis={axis}, keepdims={keepdims}, b={bform}, out={out_form}"
        x_before = x.copy()
        kwargs = dict(axis=axis, b=b, keepdims=keepdims,
                      return_sign=return_sign)
        res = csoftmax.logsumexp(x, **kwargs, out=out)
        exp = ref.logsumexp(x, **kwargs)
        scale = lse_scale(x, axis, keepdims, b)
        if return_sign:
            res, sgn = res
            exp, esgn = exp
            assert np.asarray(sgn).shape == np.asarray(esgn).shape, c
            ok = np.isfinite(np.asarray(exp))
            np.testing.assert_array_equal(
                np.asarray(sgn, dtype=float)[ok],
                np.asarray(esgn)[ok], err_msg="sign " + c)
        check_returned(res, out, c)
        assert_close(res, exp, func="logsumexp", dtype=row_dtype(dtype), kind="reduce",
                     scale=scale, ctx=c)
        np.testing.assert_array_equal(x, x_before, err_msg="input changed")
        if dtype in ("float32", "float64", "int64") and b is None:
            sres = sps.logsumexp(x, axis=axis, keepdims=keepdims)
            assert_close(res, sres, func="logsumexp", dtype=rdt,
                         kind="reduce", scale=scale, factor=SCIPY_FACTOR,
                         ctx=c + " vs scipy")


def _run_softmax_like(name, x, dtype, rng, out_form, ctx):
    rdt = result_dtype(dtype)
    cfunc = getattr(csoftmax, name)
    rfunc = getattr(ref, name)
    sfunc = getattr(sps, name)
    for axis in reduce_axes(x.ndim):
        if out_form == "inplace":
            if not x.flags.writeable or x.dtype != rdt:
                continue
            # a fresh copy with the same layout: x is reused afterwards
            xin = with_layout(np.array(x), _layout_of(x))
            out = xin
        else:
            xin = x
            out = make_out(out_form, x.shape, rdt, x)
            if isinstance(out, str):
                continue
        c = f"{ctx}, axis={axis}, out={out_form}"
        x_before = np.array(xin)
        exp = rfunc(x_before, axis=axis)
        sexp = (sfunc(x_before, axis=axis)
                if dtype in ("float32", "float64", "int64") else None)
        res = cfunc(xin, axis=axis, out=out)
        check_returned(res, out, c)
        if out_form != "inplace":
            np.testing.assert_array_equal(xin, x_before,
                                          err_msg="input changed " + c)
        if name == "softmax":
            kw = dict(kind="elem")
        else:
            kw = dict(kind="elem", scale=log_softmax_scale(x_before, axis))
        assert_close(res, exp, func=name, dtype=rdt, ctx=c, **kw)
        if sexp is not None:
            if name == "log_softmax":
                # scipy's tmp - log(sum) rounds log(1 + tiny): it is only
                # accurate to ~eps absolutely (scale 1 -> rtol absolute)
                kw["scale"] = kw["scale"] + 1.0
            assert_close(res, sexp, func=name, dtype=rdt, ctx=c + " vs scipy",
                         factor=SCIPY_FACTOR, **kw)


def _layout_of(x):
    if not x.flags.writeable:
        return "readonly"
    if x.flags.c_contiguous:
        return "C"
    if x.flags.f_contiguous:
        return "F"
    if any(s < 0 for s in x.strides):
        return "negstride"
    return "strided"


def run_softmax(x, dtype, rng, out_form, ctx):
    _run_softmax_like("softmax", x, dtype, rng, out_form, ctx)


def run_log_softmax(x, dtype, rng, out_form, ctx):
    _run_softmax_like("log_softmax", x, dtype, rng, out_form, ctx)


def make_target(kind, logits_shape, axis, rng, dtype=np.int64):
    ndim = len(logits_shape)
    ax = axis % ndim
    n_classes = logits_shape[ax]
    sample_shape = tuple(n for i, n in enumerate(logits_shape) if i != ax)
    if kind == "labels":
        return rng.integers(0, n_classes, size=sample_shape).astype(dtype)
    t = rng.uniform(0.0, 1.0, size=logits_shape)
    t /= np.sum(t, axis=ax, keepdims=True)
    return t.astype(dtype)


def check_ce(res_loss, res_grad, logits, target, axis, reduction, rdt, ctx,
             func):
    """Compare (loss, grad) with the reference; grad may be None."""
    exp_loss, exp_grad = ref.cross_entropy_with_grad(
        logits, target, axis=axis, reduction=reduction)
    ax = axis % logits.ndim
    n = int(np.prod([s for i, s in enumerate(logits.shape) if i != ax]))
    if reduction == "none":
        # per-sample losses; for 1-D logits the shape is () (a 0-d array or
        # a NumPy scalar are both fine)
        assert isinstance(res_loss, (np.ndarray, np.generic)), ctx
        assert np.shape(res_loss) == np.shape(exp_loss), ctx
        lscale = loss_scale(1)
    else:
        assert isinstance(res_loss, np.floating), (
            f"{reduction} loss is {type(res_loss).__name__}, not a NumPy "
            f"floating scalar ({ctx})")
        lscale = loss_scale(n if reduction == "sum" else 1)
    assert_close(res_loss, exp_loss, func=f"{func}[{reduction}] loss",
                 dtype=row_dtype(rdt), kind="reduce", scale=lscale, ctx=ctx)
    if res_grad is None:
        return
    p = ref.softmax(logits, axis=ax)
    tgt = np.asarray(target)
    if tgt.dtype.kind in "iu":
        onehot = np.zeros_like(p)
        np.put_along_axis(onehot, np.expand_dims(tgt.astype(np.intp), ax),
                          1.0, axis=ax)
        tt = onehot
    else:
        tt = tgt.astype(np.float64)
    gscale = grad_scale(p, np.sum(tt, axis=ax, keepdims=True), tt)
    atol_factor = 1.0
    if reduction == "mean" and n:
        gscale = gscale / n
        atol_factor = 1.0 / n
    assert_close(res_grad, exp_grad, func=f"{func}[{reduction}] grad",
                 dtype=rdt, kind="elem", scale=gscale, atol_factor=atol_factor,
                 ctx=ctx)


def run_cross_entropy(x, dtype, rng, out_form, ctx):
    if out_form != "none":
        return                                  # no out= for the loss only
    rdt = result_dtype(dtype)
    for axis, tkind, reduction in itertools.product(
            class_axes(x.ndim), ("labels", "soft"), ("none", "sum", "mean")):
        tdt = np.int64 if tkind == "labels" else rdt
        target = make_target(tkind, x.shape, axis, rng, tdt)
        c = f"{ctx}, axis={axis}, target={tkind}, reduction={reduction}"
        x_before = x.copy()
        loss = csoftmax.cross_entropy(x, target, axis=axis,
                                      reduction=reduction)
        np.testing.assert_array_equal(x, x_before, err_msg="input changed")
        check_ce(loss, None, x, target, axis, reduction, rdt, c,
                 "cross_entropy")


def run_cross_entropy_with_grad(x, dtype, rng, out_form, ctx):
    rdt = result_dtype(dtype)
    for axis, tkind, reduction in itertools.product(
            class_axes(x.ndim), ("labels", "soft"), ("none", "sum", "mean")):
        tdt = np.int64 if tkind == "labels" else rdt
        target = make_target(tkind, x.shape, axis, rng, tdt)
        c = (f"{ctx}, axis={axis}, target={tkind}, reduction={reduction}, "
             f"out={out_form}")
        kwargs = dict(axis=axis, reduction=reduction)
        if out_form == "inplace":
            if not x.flags.writeable or x.dtype != rdt:
                continue
            xin = with_layout(np.array(x), _layout_of(x))
            x_before = np.array(xin)
            loss, grad = csoftmax.cross_entropy_with_grad(
                xin, target, inplace=True, **kwargs)
            assert grad is xin, "inplace=True must return the logits " + c
        else:
            out = make_out(out_form, x.shape, rdt, x)
            if isinstance(out, str):
                continue
            x_before = x.copy()
            loss, grad = csoftmax.cross_entropy_with_grad(
                x, target, out=out, **kwargs)
            check_returned(grad, out, c)
            np.testing.assert_array_equal(x, x_before, err_msg="input changed")
        check_ce(loss, grad, x_before, target, axis, reduction, rdt, c,
                 "cross_entropy_with_grad")


def _linear_case(x, dtype, rng):
    """x (any shape) as the features (..., D) of a linear layer with V classes: a weight
    of x's dtype (and layout family), a bias, labels with some ignored."""
    d = x.shape[-1]
    v = int(rng.integers(1, 12))
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        w = rng.integers(-2, 3, size=(v, d)).astype(dt)
        b = rng.integers(-2, 3, size=v).astype(dt)
    else:
        w = (rng.standard_normal((v, d)) / np.sqrt(d)).astype(dt)
        b = (0.1 * rng.standard_normal(v)).astype(dt)
    t = rng.integers(0, v, size=x.shape[:-1])
    if t.size:
        t.reshape(-1)[:: 3] = -100
    return w, b, t


def run_linear_cross_entropy(x, dtype, rng, out_form, ctx):
    if out_form != "none":
        return
    w, b, t = _linear_case(x, dtype, rng)
    for reduction, chunk in itertools.product(("none", "sum", "mean"), (None, 2)):
        c = f"{ctx}, V={w.shape[0]}, reduction={reduction}, chunk_size={chunk}"
        x_before = x.copy()
        loss = csoftmax.linear_cross_entropy(x, w, t, bias=b, reduction=reduction,
                                             chunk_size=chunk)
        np.testing.assert_array_equal(x, x_before, err_msg="input changed")
        # the loss alone: compare it as the first output of the gradient call
        got = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, reduction=reduction,
                                                      chunk_size=chunk)
        np.testing.assert_array_equal(loss, got[0], err_msg=c)
        assert_linear_close(got, x, w, b, t, {"reduction": reduction},
                            dtype=result_dtype(dtype), what=c,
                            n_chunks=1 if chunk is None else -(-max(t.size, 1) // chunk))


def run_linear_cross_entropy_with_grad(x, dtype, rng, out_form, ctx):
    if out_form not in ("none", "out"):
        return                                  # out= is a tuple of arrays here
    w, b, t = _linear_case(x, dtype, rng)
    rdt = result_dtype(dtype)
    for reduction in ("none", "mean"):
        c = f"{ctx}, V={w.shape[0]}, reduction={reduction}, out={out_form}"
        out = None
        if out_form == "out":
            out = (np.full(x.shape, np.nan, rdt), np.full(w.shape, np.nan, rdt),
                   np.full(w.shape[0], np.nan, rdt))
        got = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, reduction=reduction,
                                                      chunk_size=3, out=out)
        if out is not None:
            assert all(g is o for g, o in zip(got[1:], out)), c
        assert_linear_close(got, x, w, b, t, {"reduction": reduction}, dtype=rdt, what=c,
                            n_chunks=-(-max(t.size, 1) // 3))


def _slices(c, rng):
    """1 to 3 slices (start, stop) of 0..c, an empty one possible."""
    k = int(rng.integers(1, 4))
    cuts = np.sort(rng.integers(0, c + 1, k - 1))
    b = [0] + cuts.tolist() + [c]
    return list(zip(b[:-1], b[1:]))


def run_partial_logsumexp(x, dtype, rng, out_form, ctx):
    """partial_logsumexp over slices of the last axis, merge_partials (a nested
    merge) and merge_logsumexp, against the reference's log-sum-exp."""
    if out_form != "none" or x.ndim == 0:
        return
    rdt = result_dtype(dtype)
    sl = _slices(x.shape[-1], rng)
    states = [csoftmax.partial_logsumexp(x[..., a:b]) for a, b in sl]
    for st in states:
        assert st.shape == x.shape[:-1] + (6,) and st.dtype == np.float64, ctx
    want = ref.logsumexp(x, axis=-1)
    got = csoftmax.merge_logsumexp(states)
    assert_close(got.astype(rdt), want, func="partial_logsumexp", dtype=rdt, kind="reduce",
                 scale=lse_scale(x, axis=-1), ctx=f"{ctx}, slices={sl}")
    nested = csoftmax.merge_logsumexp([csoftmax.merge_partials(states[:1]),
                                       csoftmax.merge_partials(states[1:] or states[:0] +
                                                               [csoftmax.partial_logsumexp(
                                                                   x[..., :0])])])
    assert_close(nested.astype(rdt), want, func="partial_logsumexp", dtype=rdt,
                 kind="reduce", scale=lse_scale(x, axis=-1), ctx=f"{ctx}, nested")
    # the reference's states merge to the same
    rst = [ref.partial_logsumexp(x[..., a:b]) for a, b in sl]
    assert_close(ref.merge_logsumexp(rst), want, func="ref.merge_logsumexp",
                 dtype=np.float64, kind="reduce", record=False, ctx=ctx)


def run_partial_cross_entropy(x, dtype, rng, out_form, ctx):
    """partial_cross_entropy over slices of the last axis and merge_cross_entropy,
    against the reference's cross-entropy (every reduction, some options)."""
    if out_form != "none" or x.ndim == 0 or x.shape[-1] == 0:
        return
    rdt = result_dtype(dtype)
    c = x.shape[-1]
    t = rng.integers(0, c, size=x.shape[:-1])
    if t.size:
        t.reshape(-1)[::4] = -100
    w = rng.random(c)
    sl = _slices(c, rng)
    for reduction, opts in itertools.product(("none", "sum", "mean"),
                                             ({}, {"label_smoothing": 0.1, "weight": w})):
        cc = f"{ctx}, slices={sl}, reduction={reduction}, opts={sorted(opts)}"
        states = [csoftmax.partial_cross_entropy(x[..., a:b], t, num_classes=c, start=a,
                                                 **opts) for a, b in sl]
        got = csoftmax.merge_cross_entropy(states, t, num_classes=c, reduction=reduction,
                                           z_loss=1e-3, **opts)
        want = ref.cross_entropy(x, t, reduction=reduction, z_loss=1e-3, **opts)
        n = max(t.size, 1)
        if reduction != "none":
            assert isinstance(got, np.float64), cc
        assert_close(np.asarray(got).astype(rdt), want, func="partial_cross_entropy",
                     dtype=rdt, kind="reduce", scale=loss_scale(n if reduction == "sum" else 1),
                     ctx=cc)


# ---------------------------------------------------------------------------
# issue 16: binary cross-entropy, distillation KL, token log-probabilities
# (the bounds are those of conftest's check_bce / check_kl / check_token_logprobs)
# ---------------------------------------------------------------------------

def _bce_case(x, dtype, rng):
    """Soft targets for logits x (exact 0 and 1 among them, same layout family as x)
    and a weight / pos_weight of the result dtype."""
    rdt = result_dtype(dtype)
    t = rng.random(x.shape)
    if t.size:
        t.reshape(-1)[::4] = 0.0
        t.reshape(-1)[1::4] = 1.0
    t = with_layout(t.astype(rdt), _layout_of(x))
    last = x.shape[-1] if x.ndim else 1
    w = rng.uniform(0.0, 2.0, size=x.shape).astype(rdt)
    pw = rng.uniform(0.0, 3.0, size=last).astype(rdt)
    return t, (dict(), dict(weight=w), dict(weight=w[..., :1]), dict(pos_weight=pw),
               dict(weight=w, pos_weight=pw))


def run_binary_cross_entropy(x, dtype, rng, out_form, ctx):
    if out_form != "none":
        return                                  # no out= for the loss only
    t, opts = _bce_case(x, dtype, rng)
    for reduction, kw in itertools.product(("none", "sum", "mean"), opts):
        c = f"{ctx}, reduction={reduction}, opts={sorted(kw)}"
        x_before = x.copy()
        loss = csoftmax.binary_cross_entropy(x, t, reduction=reduction, **kw)
        np.testing.assert_array_equal(x, x_before, err_msg="input changed")
        check_bce(loss, None, x_before, t, reduction=reduction, ctx=c, **kw)


def run_binary_cross_entropy_with_grad(x, dtype, rng, out_form, ctx):
    rdt = result_dtype(dtype)
    t, opts = _bce_case(x, dtype, rng)
    for reduction, kw in itertools.product(("none", "sum", "mean"), opts):
        c = f"{ctx}, reduction={reduction}, opts={sorted(kw)}, out={out_form}"
        if out_form == "inplace":
            # (inplace needs writable float32/float64 logits)
            if not x.flags.writeable or x.dtype not in (np.float32, np.float64):
                continue
            xin = with_layout(np.array(x), _layout_of(x))
            x_before = np.array(xin)
            loss, grad = csoftmax.binary_cross_entropy_with_grad(
                xin, t, reduction=reduction, inplace=True, grad_scale=0.5, **kw)
            assert grad is xin, "inplace=True must return the logits " + c
        else:
            out = make_out(out_form, x.shape, rdt, x)
            if isinstance(out, str):
                continue
            x_before = x.copy()
            loss, grad = csoftmax.binary_cross_entropy_with_grad(
                x, t, reduction=reduction, out=out, grad_scale=0.5, **kw)
            check_returned(grad, out, c)
            np.testing.assert_array_equal(x, x_before, err_msg="input changed")
        check_bce(loss, grad, x_before, t, reduction=reduction, grad_scale=0.5,
                  func="binary_cross_entropy_with_grad", ctx=c, **kw)


def _kl_teacher(kind, x, ax, rng):
    """A teacher of ``kind`` for the student x (classes on ``ax``), in x's layout
    family; some zero probabilities where a row has more than one class."""
    rdt = result_dtype(x.dtype)
    t = rng.standard_normal(x.shape) * 3.0
    if x.shape[ax] > 1 and t.size:
        t[(slice(None),) * ax + (0,)] = -np.inf
    if kind == "logits":
        t = t.astype(x.dtype) if x.dtype.kind == "f" else np.where(
            np.isinf(t), -50, np.round(t)).astype(x.dtype)
    else:
        logp = ref.log_softmax(t, axis=ax)
        t = (logp if kind == "log_probs" else np.exp(logp)).astype(rdt)
        t = np.clip(t, None, 1.0) if kind == "probs" else t
    return with_layout(t, _layout_of(x))


def _kl_combos(x):
    for axis, kind, reduction in itertools.product(
            class_axes(x.ndim), ("logits", "log_probs", "probs"),
            ("none", "sum", "batchmean", "mean")):
        T = {"logits": 2.0, "log_probs": 1.0, "probs": 0.6}[kind]
        yield axis, kind, reduction, T


def _kl_mask(x, ax, rng, reduction):
    rows = x.shape[:ax] + x.shape[ax + 1:]
    if reduction == "sum" or not rows:
        return None
    m = rng.random(rows) < 0.7
    return m


def run_kl_div(x, dtype, rng, out_form, ctx):
    if out_form != "none":
        return
    for axis, kind, reduction, T in _kl_combos(x):
        ax = axis % x.ndim
        teacher = _kl_teacher(kind, x, ax, rng)
        mask = _kl_mask(x, ax, rng, reduction)
        kw = dict(axis=axis, temperature=T, teacher_kind=kind, reduction=reduction,
                  mask=mask)
        c = f"{ctx}, axis={axis}, kind={kind}, T={T}, reduction={reduction}"
        x_before = x.copy()
        loss = csoftmax.kl_div(x, teacher, **kw)
        np.testing.assert_array_equal(x, x_before, err_msg="input changed")
        check_kl(loss, None, x_before, teacher, ctx=c, **kw)


def run_kl_div_with_grad(x, dtype, rng, out_form, ctx):
    if out_form == "inplace":
        return                                  # kl_div_with_grad has no inplace=
    rdt = result_dtype(dtype)
    for axis, kind, reduction, T in _kl_combos(x):
        ax = axis % x.ndim
        teacher = _kl_teacher(kind, x, ax, rng)
        mask = _kl_mask(x, ax, rng, reduction)
        out = make_out(out_form, x.shape, rdt, x)
        if isinstance(out, str):
            continue
        kw = dict(axis=axis, temperature=T, teacher_kind=kind, reduction=reduction,
                  mask=mask, grad_scale=1.5)
        c = f"{ctx}, axis={axis}, kind={kind}, T={T}, reduction={reduction}, out={out_form}"
        x_before = x.copy()
        loss, grad = csoftmax.kl_div_with_grad(x, teacher, out=out, **kw)
        check_returned(grad, out, c)
        np.testing.assert_array_equal(x, x_before, err_msg="input changed")
        check_kl(loss, grad, x_before, teacher, func="kl_div_with_grad", ctx=c, **kw)


def run_token_logprobs(x, dtype, rng, out_form, ctx):
    if out_form != "none":
        return
    for axis, entropy in itertools.product(class_axes(x.ndim), (False, True)):
        ax = axis % x.ndim
        rows = x.shape[:ax] + x.shape[ax + 1:]
        labels = np.asarray(rng.integers(0, x.shape[ax], size=rows))
        ig = None
        if labels.size > 1:
            labels.reshape(-1)[::3] = -1
            ig = -1
        c = f"{ctx}, axis={axis}, return_entropy={entropy}"
        x_before = x.copy()
        res = csoftmax.token_logprobs(x, labels, axis=axis, return_entropy=entropy,
                                      ignore_index=ig)
        np.testing.assert_array_equal(x, x_before, err_msg="input changed")
        check_token_logprobs(res, x_before, labels, axis=axis, return_entropy=entropy,
                             ignore_index=ig, ctx=c)


#: the registry: name -> runner(x, dtype, rng, out_form, ctx)
REGISTRY = {
    "logsumexp": run_logsumexp,
    "softmax": run_softmax,
    "log_softmax": run_log_softmax,
    "cross_entropy": run_cross_entropy,
    "cross_entropy_with_grad": run_cross_entropy_with_grad,
    "linear_cross_entropy": run_linear_cross_entropy,
    "linear_cross_entropy_with_grad": run_linear_cross_entropy_with_grad,
    # (the merge_* functions are driven by these two rows)
    "partial_logsumexp": run_partial_logsumexp,
    "partial_cross_entropy": run_partial_cross_entropy,
    "binary_cross_entropy": run_binary_cross_entropy,
    "binary_cross_entropy_with_grad": run_binary_cross_entropy_with_grad,
    "kl_div": run_kl_div,
    "kl_div_with_grad": run_kl_div_with_grad,
    "token_logprobs": run_token_logprobs,
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry(name, dtype, layout):
    runner = REGISTRY[name]
    seed = zlib.crc32(f"{name}/{dtype}/{layout}".encode())
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        base = make_values(shape, dtype, rng)
        x = with_layout(base, layout)
        assert x.dtype == np.dtype(dtype)
        for out_form in OUT_FORMS:
            runner(x, dtype, rng, out_form,
                   f"shape={shape}, layout={layout}, seed={seed}")


def test_registry_covers_public_api():
    """Every public function of csoftmax (and of the reference) is driven."""
    for name in REGISTRY:
        assert callable(getattr(csoftmax, name))
        assert callable(getattr(ref, name))

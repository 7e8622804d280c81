"""NaN / +inf / -inf handling (SciPy semantics), with the special value at
the first, a middle and the last position of rows whose lengths hit the SIMD
main loops and tails; compared with the reference and with scipy.special."""

import numpy as np
import pytest
import scipy.special as sps

import csoftmax
from csoftmax_testsupport import (
    SCIPY_FACTOR, assert_close, assert_consistent, grad_scale, load_reference, log_softmax_scale,
    loss_scale, lse_scale)

ref = load_reference()

LENGTHS = (1, 2, 8, 16, 17, 33, 67)
FLOATS = ("float32", "float64")
NAN, INF = np.nan, np.inf


def positions(n):
    return sorted({0, n // 2, n - 1})


def special_rows(n, dtype, seed=0):
    """(names, 2-D array) of rows of length n with special values."""
    rng = np.random.default_rng(seed + n)
    big = float(np.finfo(dtype).max)
    rows, names = [], []

    def add(name, row):
        names.append(name)
        rows.append(row)

    for p in positions(n):
        q = (p + 1) % n
        base = rng.standard_normal(n) * 3
        for name, val in (("nan", NAN), ("+inf", INF), ("-inf", -INF),
                          ("max", big), ("-max", -big)):
            r = base.copy()
            r[p] = val
            add(f"{name}@{p}", r)
        if n > 1:
            r = base.copy(); r[p], r[q] = INF, -INF
            add(f"+inf@{p},-inf@{q}", r)
            r = base.copy(); r[p], r[q] = NAN, INF
            add(f"nan@{p},+inf@{q}", r)
            r = base.copy(); r[p], r[q] = INF, INF
            add(f"+inf@{p},+inf@{q}", r)
            r = base.copy(); r[p], r[q] = -INF, NAN
            add(f"-inf@{p},nan@{q}", r)
            r = base.copy(); r[p], r[q] = big, big
            add(f"max@{p},max@{q}", r)
        r = np.full(n, -INF); r[p] = base[p]
        add(f"only finite@{p}", r)
        r = np.full(n, -INF); r[p] = INF
        add(f"only +inf@{p}", r)
        r = np.full(n, -big); r[p] = big
        add(f"-max, max@{p}", r)
    add("all -inf", np.full(n, -INF))
    add("all +inf", np.full(n, INF))
    add("all nan", np.full(n, NAN))
    add("all max", np.full(n, big))
    add("all -max", np.full(n, -big))
    return names, np.array(rows).astype(dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", LENGTHS)
def test_logsumexp_special(n, dtype):
    names, x = special_rows(n, dtype)
    for xx, axis in ((x, -1), (x.T, 0), (x.T.copy(), 0)):
        c = f"n={n}, axis={axis}, rows={names}"
        res = csoftmax.logsumexp(xx, axis=axis)
        assert_close(res, ref.logsumexp(xx, axis=axis), func="logsumexp",
                     dtype=dtype, kind="reduce", scale=lse_scale(xx, axis),
                     ctx=c)
        with np.errstate(all="ignore"):
            sres = sps.logsumexp(xx, axis=axis)
        assert_close(res, sres, func="logsumexp", dtype=dtype,
                     kind="reduce", scale=lse_scale(xx, axis),
                     factor=SCIPY_FACTOR, ctx=c + " vs scipy")
        res, sgn = csoftmax.logsumexp(xx, axis=axis, return_sign=True)
        eres, esgn = ref.logsumexp(xx, axis=axis, return_sign=True)
        assert_close(res, eres, func="logsumexp", dtype=dtype, kind="reduce",
                     scale=lse_scale(xx, axis), ctx=c + " return_sign")
        np.testing.assert_array_equal(sgn, esgn, err_msg="sign " + c)
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(
                sgn, sps.logsumexp(xx, axis=axis, return_sign=True)[1],
                err_msg="sign vs scipy " + c)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", LENGTHS)
def test_softmax_special(n, dtype, name):
    names, x = special_rows(n, dtype)
    cfunc, rfunc, sfunc = (getattr(m, name) for m in (csoftmax, ref, sps))
    for xx, axis in ((x, -1), (x.T, 0)):
        c = f"n={n}, axis={axis}"
        scale = 0.0 if name == "softmax" else log_softmax_scale(xx, axis)
        res = cfunc(xx, axis=axis)
        exp = rfunc(xx, axis=axis)
        for i, row_name in enumerate(names):
            sl = (i, slice(None)) if axis == -1 else (slice(None), i)
            sc = scale if np.ndim(scale) == 0 else scale[sl]
            assert_close(res[sl], exp[sl], func=name, dtype=dtype,
                         kind="elem", scale=sc, ctx=f"{c}, row {row_name}")
        with np.errstate(all="ignore"):
            sres = sfunc(xx, axis=axis)
        # scipy's log_softmax is only accurate to ~eps absolutely (it rounds
        # log(1 + tiny)); scale + 1 allows rtol absolute
        assert_close(res, sres, func=name, dtype=dtype, kind="elem",
                     scale=scale if name == "softmax" else scale + 1.0,
                     factor=SCIPY_FACTOR, ctx=c + " vs scipy")
        # in place gives the same
        inplace = xx.copy()
        assert cfunc(inplace, axis=axis, out=inplace) is inplace
        assert_consistent(inplace, res, dtype, c + " in place")


def test_softmax_special_documented_cases():
    """The cases spelled out in the specification."""
    for dtype in FLOATS:
        r = csoftmax.softmax(np.array([1.0, NAN, 2.0], dtype))
        assert np.all(np.isnan(r))
        r = csoftmax.softmax(np.array([1.0, INF, 2.0], dtype))
        assert np.all(np.isnan(r))
        r = csoftmax.softmax(np.array([-INF, -INF], dtype))
        assert np.all(np.isnan(r))
        r = csoftmax.softmax(np.array([-INF, 0.0, -INF, 0.0], dtype))
        np.testing.assert_array_equal(r, [0.0, 0.5, 0.0, 0.5])
        r = csoftmax.log_softmax(np.array([INF, 1.0], dtype))
        np.testing.assert_array_equal(r, [NAN, -INF])
        r = csoftmax.log_softmax(np.array([-INF, 0.0], dtype))
        np.testing.assert_array_equal(r, [-INF, 0.0])
        assert np.isnan(csoftmax.logsumexp(np.array([NAN, INF], dtype)))
        assert csoftmax.logsumexp(np.array([1.0, INF], dtype)) == INF
        assert csoftmax.logsumexp(np.array([-INF, -INF], dtype)) == -INF
        assert csoftmax.logsumexp(np.array([-INF, 3.0], dtype)) == 3.0


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [17, 33, 67])
def test_cross_entropy_special(n, dtype):
    """Loss = -log_softmax(row)[label] with special values at the label and
    elsewhere; grad = softmax - onehot (per sample, reduction="none")."""
    names, x = special_rows(n, dtype)
    for label_kind in ("at-special", "elsewhere"):
        labels = np.empty(len(names), dtype=np.int64)
        for i, row_name in enumerate(names):
            p = int(row_name.split("@")[1].split(",")[0]) \
                if "@" in row_name else 0
            labels[i] = p if label_kind == "at-special" else (p + 1) % n
        loss, grad = csoftmax.cross_entropy_with_grad(x, labels,
                                                      reduction="none")
        eloss, egrad = ref.cross_entropy_with_grad(x, labels,
                                                   reduction="none")
        p = ref.softmax(x, axis=-1)
        onehot = np.eye(n)[labels]
        for i, row_name in enumerate(names):
            c = f"n={n}, row {row_name}, label {labels[i]}"
            assert_close(loss[i:i + 1], eloss[i:i + 1],
                         func="cross_entropy_with_grad[none] loss",
                         dtype=dtype, kind="reduce", scale=loss_scale(1),
                         ctx=c)
            assert_close(grad[i], egrad[i],
                         func="cross_entropy_with_grad[none] grad",
                         dtype=dtype, kind="elem",
                         scale=grad_scale(p[i], 1.0, onehot[i]), ctx=c)
        assert_consistent(csoftmax.cross_entropy(x, labels,
                                                 reduction="none"),
                          loss, dtype, "cross_entropy vs _with_grad")
        # reductions propagate NaN / inf like a plain sum of the losses
        for reduction in ("sum", "mean"):
            with np.errstate(all="ignore"):
                total = csoftmax.cross_entropy(x, labels, reduction=reduction)
                etotal = ref.cross_entropy(x, labels, reduction=reduction)
            assert_close(total, etotal,
                         func=f"cross_entropy[{reduction}] loss", dtype=dtype,
                         kind="reduce", scale=loss_scale(len(names)),
                         ctx=f"n={n}, specials, {reduction}")


def test_cross_entropy_documented_cases():
    for dtype in FLOATS:
        z = np.array([[-INF, 0.0, 1.0],      # -inf at a non-target: fine
                      [-INF, 0.0, 1.0],      # -inf at the target: +inf loss
                      [1.0, NAN, 0.0],
                      [INF, 1.0, 0.0]], dtype)
        labels = np.array([1, 0, 0, 1])
        loss, grad = csoftmax.cross_entropy_with_grad(z, labels,
                                                      reduction="none")
        assert np.isfinite(loss[0])
        assert np.all(np.isfinite(grad[0])) and grad[0, 0] == 0
        assert loss[1] == INF
        p = sps.softmax(np.array([-INF, 0.0, 1.0]))
        np.testing.assert_allclose(grad[1], p - [1, 0, 0],
                                   rtol=2e-6 if dtype == "float32" else 1e-13)
        assert np.isnan(loss[2]) and np.all(np.isnan(grad[2]))
        # -log_softmax([inf, 1, 0])[1] = +inf; the softmax row is NaN
        assert loss[3] == INF and np.all(np.isnan(grad[3]))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [17, 33])
def test_logsumexp_special_with_weights(n, dtype):
    """Zero weights ignore NaN / inf elements (SciPy); negative weights at
    an infinite maximum, sums cancelling to exactly zero."""
    rng = np.random.default_rng(n)
    rows, weights = [], []
    for p in positions(n):
        q = (p + 1) % n
        base = rng.standard_normal(n)
        b = rng.uniform(0.5, 1.5, n)
        for val in (NAN, INF, -INF):
            r, w = base.copy(), b.copy()
            r[p], w[p] = val, 0.0
            rows.append(r); weights.append(w)
        r, w = base.copy(), b.copy()
        r[p], w[p] = INF, -1.0                     # -inf sum: NaN / sign -1
        rows.append(r); weights.append(w)
        r, w = np.full(n, 2.0), np.zeros(n)
        w[p], w[q] = 1.0, -1.0                     # exact zero: -inf, sign 0
        rows.append(r); weights.append(w)
    rows.append(base.copy()); weights.append(np.zeros(n))     # all b = 0
    x, b = np.array(rows).astype(dtype), np.array(weights).astype(dtype)
    for return_sign in (False, True):
        res = csoftmax.logsumexp(x, axis=1, b=b, return_sign=return_sign)
        exp = ref.logsumexp(x, axis=1, b=b, return_sign=return_sign)
        with np.errstate(all="ignore"):
            sexp = sps.logsumexp(x, axis=1, b=b, return_sign=return_sign)
        if return_sign:
            np.testing.assert_array_equal(res[1], exp[1])
            np.testing.assert_array_equal(res[1], sexp[1])
            res, exp, sexp = res[0], exp[0], sexp[0]
        scale = lse_scale(x, 1, b=b)
        assert_close(res, exp, func="logsumexp", dtype=dtype, kind="reduce",
                     scale=scale, ctx=f"n={n}, b, return_sign={return_sign}")
        assert_close(res, sexp, func="logsumexp", dtype=dtype, kind="reduce",
                     scale=scale, factor=SCIPY_FACTOR,
                     ctx=f"n={n}, b, return_sign={return_sign} vs scipy")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["rows", "cols"])
def test_a_whole_chunk_of_minus_inf(dtype, layout):
    """Rows of several chunks (C = 9000 > 4096) whose first chunk is all -inf
    (a masked-out span) and whose later chunk is finite: the -inf chunk adds
    nothing (its exp must not take the cheap form, which assumes finite
    values).  Row path and column path."""
    from csoftmax import reference as R
    rng = np.random.default_rng(9)
    c = 9000
    x = rng.standard_normal((3, c)).astype(dtype)
    x[:, :5000] = -np.inf
    x[1, 7000] = np.nan                         # and a NaN row for comparison
    if layout == "cols":
        x = np.asfortranarray(x)                # positions contiguous: the column family
    labels = np.array([6000, 100, 8999])
    for name in ("logsumexp", "softmax", "log_softmax"):
        got = np.asarray(getattr(csoftmax, name)(x, axis=-1), dtype=np.float64)
        exp = getattr(R, name)(x, axis=-1)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(exp))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(exp))
        ok = np.isfinite(exp)
        np.testing.assert_allclose(got[ok], exp[ok], rtol=2e-6, atol=1e-7)
    loss, g = csoftmax.cross_entropy_with_grad(x, labels, reduction="none")
    eloss, eg = R.cross_entropy_with_grad(x, labels, reduction="none")
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(eloss))
    np.testing.assert_array_equal(np.isinf(loss), np.isinf(eloss))
    ok = np.isfinite(eloss)
    np.testing.assert_allclose(loss[ok], eloss[ok], rtol=1e-6)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(eg))

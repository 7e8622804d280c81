"""The reference itself, checked against scipy.special (logsumexp, softmax,
log_softmax) and torch.nn.functional in float64 (cross-entropy, log_softmax).

These tests do not need the compiled extension: if ``csoftmax`` cannot be
imported, the reference is loaded from its source file."""

import itertools

import numpy as np
import pytest
import scipy.special as sps

from csoftmax_testsupport import load_reference

ref = load_reference()

NAN, INF = np.nan, np.inf


def assert_same(got, exp, rtol=1e-14, atol=0.0, err_msg=""):
    """float64 equality up to a few ulps, NaN/inf positions exact."""
    got = np.asarray(got)
    exp = np.asarray(exp)
    assert got.shape == exp.shape, (got.shape, exp.shape, err_msg)
    np.testing.assert_allclose(got, exp, rtol=rtol, atol=atol,
                               equal_nan=True, err_msg=err_msg)


def test_reference_is_independent_of_the_extension():
    import ast
    path = ref.__file__
    tree = ast.parse(open(path).read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or ".").split(".")[0] or ".")
    assert imported <= {"numpy"}, imported


# ---------------------------------------------------------------------------
# logsumexp vs scipy
# ---------------------------------------------------------------------------

def _grid_arrays():
    rng = np.random.default_rng(0)
    yield "randn", rng.standard_normal((4, 5, 6)) * 5
    yield "wide", rng.uniform(-700, 700, (3, 40))
    yield "ties", np.round(rng.standard_normal((5, 7)))
    yield "1d", rng.standard_normal(33)
    vals = np.array([0.0, 1.0, -1.0, 3.0, INF, -INF, NAN])
    yield "specials", rng.choice(vals, size=(6, 5, 4))
    yield "tiny", np.array([[0.0, -40.0], [0.0, -800.0], [-1e308, 1e308]])


@pytest.mark.parametrize("name,x", list(_grid_arrays()),
                         ids=[n for n, _ in _grid_arrays()])
def test_logsumexp_matches_scipy(name, x):
    rng = np.random.default_rng(1)
    axes = [None, 0, -1]
    if x.ndim >= 2:
        axes += [1, (0, 1)]
    if x.ndim >= 3:
        axes += [(0, 2), (-1, -2, -3), ()]
    weights = [None, rng.uniform(0, 2, x.shape),
               rng.choice([-1.0, 0.0, 0.5, 2.0], size=x.shape),
               rng.uniform(0, 1, x.shape[-1:])]
    with np.errstate(all="ignore"):
        for axis, b, keepdims, return_sign in itertools.product(
                axes, weights, (False, True), (False, True)):
            c = f"{name}, axis={axis}, keepdims={keepdims}, sign={return_sign}"
            got = ref.logsumexp(x, axis=axis, b=b, keepdims=keepdims,
                                return_sign=return_sign)
            exp = sps.logsumexp(x, axis=axis, b=b, keepdims=keepdims,
                                return_sign=return_sign)
            if return_sign:
                assert_same(got[0], exp[0], err_msg=c)
                assert_same(got[1], exp[1], err_msg=c + " sign")
                assert np.asarray(got[0]).dtype == np.float64
            else:
                assert_same(got, exp, err_msg=c)
                assert type(got) is type(exp), c   # scalar vs array


def test_logsumexp_accurate_log1p_form():
    assert ref.logsumexp([0.0, -40.0]) == pytest.approx(4.248354255291589e-18,
                                                        rel=1e-15)
    assert ref.logsumexp([0.0, -40.0]) == sps.logsumexp([0.0, -40.0])
    # several maxima: log(count + s) without losing s
    got = ref.logsumexp([5.0 - 40.0, 5.0, 5.0])
    assert got == pytest.approx(5.0 + np.log(2.0) + np.exp(-40.0) / 2,
                                rel=1e-15)
    assert ref.logsumexp([-40.0, 0.0, 0.0]) - np.log(2.0) == \
        pytest.approx(np.exp(-40.0) / 2, rel=1e-2)


def test_logsumexp_edge_cases_match_scipy():
    cases = [
        dict(a=np.float64(2.5)),
        dict(a=np.float64(2.5), keepdims=True),
        dict(a=np.float64(2.5), axis=0),
        dict(a=np.float64(2.5), b=np.float64(-1.0), return_sign=True),
        dict(a=np.empty(0)),
        dict(a=np.empty(0), return_sign=True),
        dict(a=np.empty((3, 0)), axis=1, return_sign=True),
        dict(a=np.empty((0, 3)), axis=1),
        dict(a=np.empty((3, 0)), axis=0, keepdims=True),
        dict(a=[1, 2, 3]),
        dict(a=[1.0, 1.0], b=[1.0, -1.0], return_sign=True),
        dict(a=[1.0, 1.0], b=[1.0, -1.0]),
        dict(a=[INF, 1.0], b=[0.0, 1.0], return_sign=True),
        dict(a=[NAN, 1.0], b=[0.0, 1.0]),
        dict(a=[INF, INF], b=[1.0, -1.0], return_sign=True),
        dict(a=[INF, 0.0], b=[-1.0, 1.0], return_sign=True),
        dict(a=[1.0, 2.0], b=[0.0, 0.0], return_sign=True),
        dict(a=[-INF, -INF], return_sign=True),
        dict(a=np.ones((2, 3)), b=np.ones((4, 1, 1))),     # b broadcasts a
    ]
    for kw in cases:
        with np.errstate(all="ignore"):
            got = ref.logsumexp(**kw)
            exp = sps.logsumexp(**kw)
        if kw.get("return_sign"):
            assert_same(got[0], exp[0], err_msg=str(kw))
            assert_same(got[1], exp[1], err_msg=str(kw))
        else:
            assert_same(got, exp, err_msg=str(kw))
            assert np.shape(got) == np.shape(exp)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int32", "uint8"])
def test_reference_computes_in_float64(dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((4, 9)) * 3).astype(dtype)
    x64 = x.astype(np.float64)
    for name in ("logsumexp", "softmax", "log_softmax"):
        got = getattr(ref, name)(x, axis=1)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, getattr(ref, name)(x64, axis=1))
        assert_same(got, getattr(sps, name)(x64, axis=1), rtol=1e-14,
                    atol=1e-15)


@pytest.mark.parametrize("kind", ["complex", "bool", "object"])
def test_reference_rejects_non_real(kind):
    x = np.ones(3).astype(kind)
    for name in ("logsumexp", "softmax", "log_softmax"):
        with pytest.raises(TypeError):
            getattr(ref, name)(x)


# ---------------------------------------------------------------------------
# softmax / log_softmax vs scipy
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,x", list(_grid_arrays()),
                         ids=[n for n, _ in _grid_arrays()])
@pytest.mark.parametrize("func", ["softmax", "log_softmax"])
def test_softmax_matches_scipy(func, name, x):
    axes = [None, 0, -1]
    if x.ndim >= 2:
        axes += [1, (0, 1)]
    if x.ndim >= 3:
        axes += [(0, 2), ()]
    for axis in axes:
        with np.errstate(all="ignore"):
            got = getattr(ref, func)(x, axis=axis)
            exp = getattr(sps, func)(x, axis=axis)
        if func == "softmax":
            assert_same(got, exp, atol=1e-300, err_msg=f"{func} {name} {axis}")
            continue
        # The reference log_softmax uses the log1p form where the row maximum
        # is finite; SciPy's tmp - log(sum(exp(tmp))) rounds 1 + tiny, so it
        # is only accurate to ~eps absolutely (plus the usual relative error
        # of the subtraction, scaled by |x - max| + log(sum)).
        np.testing.assert_array_equal(np.isnan(got), np.isnan(exp))
        np.testing.assert_array_equal(np.where(np.isinf(got), got, 0),
                                      np.where(np.isinf(exp), exp, 0))
        fin = np.isfinite(exp)
        with np.errstate(all="ignore"):
            scale = np.abs(x - np.max(x, axis=axis, keepdims=True)) \
                if axis != () else np.zeros_like(x)
            bound = 1e-14 * (np.abs(exp) + np.where(np.isfinite(scale),
                                                    scale, 0)) + 4.5e-16
        assert np.all(np.abs(got[fin] - exp[fin]) <= bound[fin]), \
            f"{func} {name} {axis}"


def test_log_softmax_accurate_where_one_entry_dominates():
    got = ref.log_softmax(np.array([0.0, -40.0, -50.0]))
    tiny = np.log1p(np.exp(-40.0) + np.exp(-50.0))
    np.testing.assert_allclose(got, [-tiny, -40.0 - tiny, -50.0 - tiny],
                               rtol=1e-15)
    assert got[0] == pytest.approx(-4.2483542552915889e-18, rel=1e-12)
    # and it is x - logsumexp(x)
    x = np.random.default_rng(1).standard_normal((5, 9)) * 10
    np.testing.assert_allclose(ref.log_softmax(x, axis=1),
                               x - ref.logsumexp(x, axis=1, keepdims=True),
                               rtol=1e-13, atol=1e-13)


def test_softmax_special_rows():
    with np.errstate(all="ignore"):
        assert np.all(np.isnan(ref.softmax([1.0, NAN, 2.0])))
        assert np.all(np.isnan(ref.softmax([1.0, INF])))
        assert np.all(np.isnan(ref.softmax([-INF, -INF])))
        np.testing.assert_array_equal(ref.softmax([-INF, 0.0]), [0.0, 1.0])
        np.testing.assert_array_equal(ref.log_softmax([INF, 1.0]),
                                      [NAN, -INF])
        np.testing.assert_array_equal(ref.log_softmax([-INF, 0.0]),
                                      [-INF, 0.0])
        assert np.all(np.isnan(ref.log_softmax([-INF, -INF])))


def test_softmax_zero_dim_and_empty():
    assert ref.softmax(np.float64(3.0)) == sps.softmax(np.float64(3.0)) == 1
    assert ref.log_softmax(np.float64(3.0)) == 0
    # SciPy raises on empty reductions (np.max); the reference returns an
    # empty array of the input's shape
    for shape in [(0,), (3, 0), (0, 4)]:
        for f in (ref.softmax, ref.log_softmax):
            r = f(np.empty(shape), axis=-1)
            assert r.shape == shape and r.dtype == np.float64


def test_out_argument_of_the_reference():
    x = np.arange(6.0).reshape(2, 3)
    out = np.empty((2, 3))
    assert ref.softmax(x, axis=1, out=out) is out
    assert_same(out, sps.softmax(x, axis=1))
    out = np.empty(2)
    assert ref.logsumexp(x, axis=1, out=out) is out
    assert_same(out, sps.logsumexp(x, axis=1))


# ---------------------------------------------------------------------------
# cross-entropy vs torch (float64)
# ---------------------------------------------------------------------------

try:
    import torch
    F = torch.nn.functional
except ImportError:  # pragma: no cover - torch is a test requirement
    torch = F = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


def _torch_ce(logits, target, axis, reduction):
    """torch CE (classes on axis 1 for torch) with the autograd gradient
    (of the loss; for reduction "none" of the sum of the losses)."""
    z = np.moveaxis(np.asarray(logits, dtype=np.float64), axis, 1
                    if np.ndim(logits) > 1 else 0)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    t = np.asarray(target)
    if t.dtype.kind in "iu":
        tt = torch.tensor(t.astype(np.int64))
    else:
        tt = torch.tensor(np.moveaxis(t.astype(np.float64), axis, 1
                                      if t.ndim > 1 else 0))
    loss = F.cross_entropy(zt, tt, reduction=reduction)
    loss.sum().backward()
    grad = zt.grad.numpy()
    grad = np.moveaxis(grad, 1 if grad.ndim > 1 else 0, axis)
    return loss.detach().numpy(), grad


CE_CASES = [
    ("labels (N, C)", (16, 10), -1, "labels"),
    ("labels (N, C) axis=1", (16, 10), 1, "labels"),
    ("labels (N, C, d1, d2)", (3, 6, 4, 5), 1, "labels"),
    ("labels (C,)", (7,), -1, "labels"),
    ("soft (N, C)", (12, 9), -1, "soft"),
    ("soft (N, C, d1, d2)", (2, 5, 3, 4), 1, "soft"),
    ("soft unnormalized (N, C)", (8, 6), -1, "soft-mass"),
    ("labels wide", (4, 3000), -1, "labels"),
    ("labels confident", (6, 5), -1, "confident"),
]


@needs_torch
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("case", CE_CASES, ids=[c[0] for c in CE_CASES])
def test_cross_entropy_matches_torch(case, reduction):
    _, shape, axis, kind = case
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    logits = rng.standard_normal(shape) * 3
    ax = axis % len(shape)
    sample_shape = tuple(s for i, s in enumerate(shape) if i != ax)
    if kind in ("labels", "confident"):
        target = rng.integers(0, shape[ax], size=sample_shape)
        if kind == "confident":
            np.put_along_axis(logits, np.expand_dims(target, ax), 30.0,
                              axis=ax)
    else:
        target = rng.uniform(0, 1, shape)
        target /= target.sum(axis=ax, keepdims=True)
        if kind == "soft-mass":
            target *= 0.7
    loss, grad = ref.cross_entropy_with_grad(logits, target, axis=axis,
                                             reduction=reduction)
    tloss, tgrad = _torch_ce(logits, target, axis, reduction)
    assert_same(loss, tloss, rtol=1e-13, atol=1e-15, err_msg="loss")
    assert_same(grad, tgrad, rtol=1e-12, atol=1e-15, err_msg="grad")
    assert_same(ref.cross_entropy(logits, target, axis=axis,
                                  reduction=reduction), loss)
    if reduction != "none":
        assert isinstance(loss, np.float64)
    else:
        assert loss.shape == sample_shape


@needs_torch
def test_log_softmax_matches_torch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 50)) * 10
    x[0, 3] = -INF
    for axis in (0, 1, -1):
        got = ref.log_softmax(x, axis=axis)
        exp = F.log_softmax(torch.tensor(x), dim=axis).numpy()
        assert_same(got, exp, rtol=1e-13, atol=1e-14)
        exp = F.softmax(torch.tensor(x), dim=axis).numpy()
        assert_same(ref.softmax(x, axis=axis), exp, rtol=1e-13, atol=1e-300)


@needs_torch
def test_cross_entropy_special_values_match_torch():
    z = np.array([[-INF, 0.0, 1.0], [-INF, 0.0, 1.0], [1.0, NAN, 0.0],
                  [INF, 1.0, 0.0], [3.0, 3.0, 3.0]])
    labels = np.array([1, 0, 0, 1, 2])
    with np.errstate(all="ignore"):
        loss, grad = ref.cross_entropy_with_grad(z, labels, reduction="none")
    tloss, tgrad = _torch_ce(z, labels, -1, "none")
    rows = [0, 1, 2, 4]
    assert_same(loss[rows], tloss[rows], err_msg="loss")
    assert_same(grad[rows], tgrad[rows], err_msg="grad")
    assert loss[1] == INF and np.isfinite(loss[0])
    # a row with +inf: torch shifts by the (infinite) max and gives NaN;
    # SciPy's log_softmax (shift 0 when the max is not finite) gives
    # [nan, -inf, -inf], so the loss at a finite label is +inf, and the
    # gradient softmax(z) - onehot is NaN
    assert np.isnan(tloss[3])
    with np.errstate(all="ignore"):
        assert loss[3] == -sps.log_softmax(z[3])[1] == INF
    assert np.all(np.isnan(grad[3]))


def test_cross_entropy_errors_of_the_reference():
    z = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"label.*position 2"):
        ref.cross_entropy(z, np.array([0, 1, 3, 5]))
    with pytest.raises(ValueError, match="label"):
        ref.cross_entropy(z, np.array([0, -1, 0, 0]))
    with pytest.raises(ValueError, match="shape"):
        ref.cross_entropy(z, np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        ref.cross_entropy(z, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="reduction"):
        ref.cross_entropy(z, np.zeros(4, dtype=np.int64), reduction="avg")
    with pytest.raises(np.exceptions.AxisError):
        ref.cross_entropy(z, np.zeros(4, dtype=np.int64), axis=2)
    with pytest.raises(TypeError):
        ref.cross_entropy(z, np.zeros(4, dtype=bool))

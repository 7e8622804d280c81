"""Complex input to logsumexp, softmax and log_softmax (csoftmax/_complex.py).

Against the independent clongdouble reference (``reference.*_complex``:
shifted by the largest real part only), against SciPy where it is installed
(the same results, special values included), the dtype policy, ``out=``,
``keepdims``/``return_sign`` shapes, and the errors that remain.  SciPy's own
test module runs against csoftmax in ``test_scipy_suite.py``.
"""
import itertools
import math

import numpy as np
import pytest

import csoftmax
from csoftmax import reference as ref

try:
    import scipy.special as sps
except ImportError:                       # pragma: no cover - SciPy is a test dependency
    sps = None
needs_scipy = pytest.mark.skipif(sps is None, reason="SciPy not installed")

RTOL = {np.complex128: 1e-13, np.complex64: 2e-6}


def _cplx(shape, seed, scale=3.0, dtype=np.complex128):
    rng = np.random.default_rng(seed)
    z = scale * rng.standard_normal(shape) + 1j * scale * rng.standard_normal(shape)
    return z.astype(dtype)


def _close_mod_2pi(got, want, rtol):
    """Equal real parts; imaginary parts equal modulo 2 pi (branch of the log)."""
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_allclose(got.real, want.real, rtol=rtol, atol=rtol * 10)
    d = np.angle(np.exp(1j * (got.imag - want.imag)))
    np.testing.assert_allclose(d, 0, atol=rtol * 100)


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
@pytest.mark.parametrize("shape,axis", [((7,), None), ((5, 9), -1), ((5, 9), 0),
                                        ((3, 4, 6), (0, 2)), ((2, 33), 1), ((1, 200), None)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_against_reference(dtype, shape, axis, keepdims):
    a = _cplx(shape, 1, dtype=dtype)
    got = csoftmax.logsumexp(a, axis=axis, keepdims=keepdims)
    want = ref.logsumexp_complex(a, axis=axis, keepdims=keepdims)
    assert np.asarray(got).dtype == dtype
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype])
    assert np.all(np.abs(np.imag(got)) <= math.pi)


@pytest.mark.parametrize("bkind", ["real", "complex", "negative"])
@pytest.mark.parametrize("return_sign", [False, True])
def test_logsumexp_weights_and_sign(bkind, return_sign):
    a = _cplx((6, 11), 2)
    rng = np.random.default_rng(3)
    b = rng.uniform(0.1, 2.0, (6, 11))
    if bkind == "complex":
        b = b + 1j * rng.standard_normal((6, 11))
    elif bkind == "negative":
        b = -b
    got = csoftmax.logsumexp(a, axis=1, b=b, return_sign=return_sign)
    want = ref.logsumexp_complex(a, axis=1, b=b, return_sign=return_sign)
    if return_sign:
        (r, s), (wr, ws) = got, want
        assert r.dtype == np.float64 and s.dtype == np.complex128
        np.testing.assert_allclose(r, wr, rtol=1e-13)
        np.testing.assert_allclose(s, ws, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(np.abs(s), 1.0, rtol=1e-15)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-13)


def test_real_a_with_complex_b_and_the_reverse():
    a = np.linspace(-2, 2, 10)
    b = np.exp(1j * np.linspace(0, 3, 10))
    got = csoftmax.logsumexp(a, b=b)
    np.testing.assert_allclose(got, ref.logsumexp_complex(a, b=b), rtol=1e-13)
    assert np.asarray(got).dtype == np.complex128
    z = a + 0.5j
    np.testing.assert_allclose(csoftmax.logsumexp(z, b=np.abs(a) + 1),
                               ref.logsumexp_complex(z, b=np.abs(a) + 1), rtol=1e-13)


def test_small_imaginary_part_keeps_relative_precision():
    x = np.array([0.0, 1e-17j])
    got = complex(csoftmax.logsumexp(x))
    assert got.real == pytest.approx(math.log(2), rel=1e-15)
    assert got.imag == pytest.approx(0.5e-17, rel=1e-14)


def test_large_real_parts_do_not_overflow():
    a = np.array([1000 + 1j, 1000 - 2j, 999.0 + 0.5j])
    got = csoftmax.logsumexp(a)
    want = ref.logsumexp_complex(a)
    np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
@pytest.mark.parametrize("shape,axis", [((9,), None), ((4, 13), -1), ((4, 13), 0),
                                        ((3, 4, 5), (1, 2))])
def test_softmax_against_reference(log, dtype, shape, axis):
    x = _cplx(shape, 5, dtype=dtype)
    f = csoftmax.log_softmax if log else csoftmax.softmax
    got = f(x, axis=axis)
    assert got.dtype == dtype and got.shape == x.shape
    want = (ref.log_softmax_complex if log else ref.softmax_complex)(x, axis=axis)
    if log:
        _close_mod_2pi(got, want, RTOL[dtype])
    else:
        np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-3)
        # the softmax of a complex row sums to 1
        s = got.sum(axis=axis)
        np.testing.assert_allclose(s, np.ones_like(s), rtol=RTOL[dtype] * 100)


@needs_scipy
@pytest.mark.parametrize("seed", range(4))
def test_same_results_as_scipy(seed):
    rng = np.random.default_rng(seed)
    a = _cplx((5, 17), seed, scale=10 * (seed + 1))
    b = rng.standard_normal((5, 17)) + 1j * rng.standard_normal((5, 17))
    for kw in ({}, {"axis": 1}, {"axis": 0, "keepdims": True}, {"b": b, "axis": 1}):
        np.testing.assert_allclose(csoftmax.logsumexp(a, **kw), sps.logsumexp(a, **kw),
                                   rtol=1e-13)
        r, s = csoftmax.logsumexp(a, return_sign=True, **kw)
        wr, ws = sps.logsumexp(a, return_sign=True, **kw)
        np.testing.assert_allclose(r, wr, rtol=1e-13)
        np.testing.assert_allclose(s, ws, rtol=1e-13, atol=1e-15)
    for axis in (None, 0, 1):
        np.testing.assert_allclose(csoftmax.softmax(a, axis=axis), sps.softmax(a, axis=axis),
                                   rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(csoftmax.log_softmax(a, axis=axis),
                                   sps.log_softmax(a, axis=axis), rtol=1e-12, atol=1e-12)


SPECIALS = [0.0, 1.5 - 2j, complex(-np.inf, 0.0), complex(np.inf, 0.0),
            complex(np.inf, np.inf), complex(-np.inf, -np.inf), complex(np.inf, 2.0),
            complex(np.nan, 0.0), complex(0.0, np.nan), complex(1.0, np.inf)]


def _same(got, want, msg):
    """Component by component: NaN and infinities where SciPy has them, finite
    parts to rounding."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, msg
    for part in (np.real, np.imag):
        np.testing.assert_allclose(part(got), part(want), rtol=1e-14, atol=1e-300,
                                   equal_nan=True, err_msg=msg)


@needs_scipy
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_special_values_as_scipy():
    """Every pair of special values, with and without weights and sign:
    SciPy's results, NaN and infinities position by position."""
    for x, y in itertools.product(SPECIALS, repeat=2):
        a = np.array([x, y])
        for kw in ({}, {"b": np.array([1.0, -2.0])}, {"b": np.array([0.0, 1j])}):
            _same(csoftmax.logsumexp(a, **kw), sps.logsumexp(a, **kw), f"{a} {kw}")
            got, want = csoftmax.logsumexp(a, return_sign=True, **kw), \
                sps.logsumexp(a, return_sign=True, **kw)
            _same(got[0], want[0], f"{a} {kw} |sum|")
            _same(got[1], want[1], f"{a} {kw} sign")
        with np.errstate(all="ignore"):
            _same(csoftmax.softmax(a), sps.softmax(a), f"softmax {a}")
            _same(csoftmax.log_softmax(a), sps.log_softmax(a), f"log_softmax {a}")


def test_dtypes_and_scalars():
    assert isinstance(csoftmax.logsumexp(np.complex64(1 + 1j)), np.complex64)
    assert isinstance(csoftmax.logsumexp(1 + 2j), np.complex128)
    r, s = csoftmax.logsumexp(np.array([1 + 1j], np.complex64), return_sign=True)
    assert r.dtype == np.float32 and s.dtype == np.complex64
    g = np.array([1 + 1j, 2 - 1j], np.clongdouble)
    assert csoftmax.logsumexp(g).dtype == np.clongdouble
    assert csoftmax.softmax(g).dtype == np.clongdouble
    assert csoftmax.softmax(np.complex128(3j)) == 1.0
    assert csoftmax.logsumexp(np.zeros((0,), np.complex128)) == -np.inf
    assert csoftmax.softmax(np.zeros((2, 0), np.complex64)).shape == (2, 0)
    # deliberate difference (README): an empty reduction with return_sign gives a real
    # -inf like every other complex return_sign result (SciPy: a complex -inf+0j)
    r0, s0 = csoftmax.logsumexp(np.zeros((2, 0), np.complex64), axis=1, return_sign=True)
    assert r0.dtype == np.float32 and np.all(r0 == -np.inf)
    assert s0.dtype == np.complex64 and np.all(np.isnan(s0))


def test_out_for_complex():
    a = _cplx((4, 5), 7)
    out = np.empty(4, np.complex128)
    assert csoftmax.logsumexp(a, axis=1, out=out) is out
    np.testing.assert_allclose(out, ref.logsumexp_complex(a, axis=1), rtol=1e-13)
    with pytest.raises(ValueError, match="dtype"):
        csoftmax.logsumexp(a, axis=1, out=np.empty(4))
    y = np.empty_like(a)
    assert csoftmax.softmax(a, axis=1, out=y) is y
    np.testing.assert_allclose(y, ref.softmax_complex(a, axis=1), rtol=1e-13)
    assert csoftmax.log_softmax(a, axis=1, out=a) is a          # in place
    with pytest.raises(ValueError, match="dtype"):
        csoftmax.softmax(a, out=np.empty(a.shape))


def test_inputs_are_not_written():
    a = _cplx((3, 4), 9)
    b = np.ones((3, 4)) * (1 - 1j)
    a0, b0 = a.copy(), b.copy()
    csoftmax.logsumexp(a, b=b, axis=0, return_sign=True)
    csoftmax.softmax(a)
    csoftmax.log_softmax(a, axis=1)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_what_stays_an_error():
    z = _cplx((4, 3), 11)
    with pytest.raises(TypeError, match="complex"):
        csoftmax.cross_entropy(z, np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="complex"):
        csoftmax.cross_entropy_with_grad(z, np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="dtype"):
        csoftmax.logsumexp(np.array([True, False]), b=np.array([1j, 1]))
    with pytest.raises(TypeError, match="dtype"):
        csoftmax.logsumexp(z, b=np.array(["x"] * 3))


def test_subnormal_sum_keeps_a_unit_sign():
    """A finite, non-zero but subnormal sum: the sign is a unit number (SciPy's
    1 / |sum| overflows to inf + nan j there, a documented difference)."""
    x = np.full(5, -0.45, np.complex64)
    b = np.array(1e-310)
    got = csoftmax.logsumexp(x, b=b, keepdims=True, return_sign=True)
    exp = ref.logsumexp_complex(x, b=b, keepdims=True, return_sign=True)
    np.testing.assert_allclose(got[0], exp[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], exp[1], rtol=0, atol=1e-12)
    z = np.array([1 + 2j, 3 - 1j])
    bz = np.array([1e-310j, 2e-311])
    got = csoftmax.logsumexp(z, b=bz, return_sign=True)
    exp = ref.logsumexp_complex(z, b=bz, return_sign=True)
    np.testing.assert_allclose(got[0], exp[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], exp[1], rtol=0, atol=1e-9)  # b has ~12 digits

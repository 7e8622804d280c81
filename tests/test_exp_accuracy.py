"""The kernels' vector exp, swept against a more precise exp on every ISA path.

The bounds asserted here are the ones stated in src_c/csm_vec.h and the README.
"""
import numpy as np
import pytest

from csoftmax import _core

@pytest.fixture
def isa(each_isa):
    return each_isa            # every ISA path (tests/conftest.py)


def _ulp_err_f32(x):
    got = np.empty_like(x)
    _core.exp_kernel(x, got)
    exact = np.exp(x.astype(np.float64))          # within 0.5 ULP of float64
    with np.errstate(over="ignore"):              # exact values past float32's range -> inf
        ref32 = exact.astype(np.float32)
    # error in units of the float32 spacing at the exact value
    spacing = np.spacing(np.abs(ref32)).astype(np.float64)
    spacing = np.maximum(spacing, np.float64(2.0**-149))
    return np.abs(got.astype(np.float64) - exact) / spacing, got, exact


def test_exp_f32_sweep(isa):
    # Every 13th float32 bit pattern in [-104, 89]: about 1.6e8 values.
    lo = np.float32(-104.0).view(np.uint32)      # negative: sign bit set
    hi = np.float32(89.0).view(np.uint32)
    pos = np.arange(0, hi + 1, 13, dtype=np.uint32).view(np.float32)
    neg = np.arange(np.uint32(0x80000000), lo + 1, 13, dtype=np.uint32).view(np.float32)
    worst = 0.0
    for part in (pos, neg):
        for chunk in np.array_split(part, 16):
            err, got, exact = _ulp_err_f32(chunk)
            normal = exact >= np.finfo(np.float32).tiny
            if normal.any():
                worst = max(worst, float(err[normal].max()))
            # subnormal and underflowing results: within one subnormal spacing
            assert np.all(err[~normal] <= 1.0), isa
    # FMA paths round the polynomial once per step; baseline (mul + add) twice
    bound = 1.5 if isa == "scalar" else 1.0
    print(f"exp f32 [{isa}] max error {worst:.3f} ULP")
    assert worst <= bound, f"{isa}: max error {worst:.3f} ULP"


def test_exp_f64_sample(isa):
    rng = np.random.default_rng(1234)
    x = np.concatenate([
        rng.uniform(-745.0, 709.0, 1_000_000),
        rng.uniform(-1.0, 1.0, 500_000),
        rng.uniform(-40.0, 0.0, 500_000),
    ])
    got = np.empty_like(x)
    _core.exp_kernel(x, got)
    exact = np.exp(x.astype(np.longdouble))
    normal = exact >= np.finfo(np.float64).tiny
    spacing = np.spacing(exact.astype(np.float64)[normal]).astype(np.longdouble)
    err = np.abs(got[normal].astype(np.longdouble) - exact[normal]) / spacing
    worst = float(err.max())
    print(f"exp f64 [{isa}] max error {worst:.3f} ULP")
    assert worst <= 2.0, f"{isa}: max error {worst:.3f} ULP"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_bounded_path_same_bits(isa, dtype):
    """The kernels take a cheaper exp (no clamps, 2^n in one step) for a chunk
    whose arguments all lie in [-86, 0] (float32; [-700, 0] float64) and the
    full one otherwise; both must give the same bits there.  exp_kernel uses
    the cheap one for a vector with every lane in range: the same values,
    once alone and once with an out-of-range neighbour in every vector."""
    lo = -86.0 if dtype == np.float32 else -700.0
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(lo, 0.0, 200_000), -np.logspace(-30, 0, 1000),
                        np.array([0.0, -0.0, lo])]).astype(dtype)
    alone = np.empty_like(x)
    _core.exp_kernel(x, alone)
    mixed = np.empty((x.size, 2), dtype)
    mixed[:, 0] = x
    mixed[:, 1] = 1.0                                 # out of range: the full exp
    got = np.empty_like(mixed)
    _core.exp_kernel(mixed.reshape(-1), got.reshape(-1))
    np.testing.assert_array_equal(alone.view(np.uint8), got[:, 0].copy().view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_special_values(isa, dtype):
    x = np.array([0.0, -0.0, -np.inf, np.inf, np.nan, -1e4, 1e4, -200.0, 100.0],
                 dtype=dtype)
    got = np.empty_like(x)
    _core.exp_kernel(x, got)
    with np.errstate(over="ignore"):
        ref = np.exp(x)
    assert got[0] == 1.0 and got[1] == 1.0          # exp(0) is exactly 1
    assert got[2] == 0.0 and got[3] == np.inf and np.isnan(got[4])
    assert got[5] == 0.0 and got[6] == np.inf
    np.testing.assert_allclose(got[7:], ref[7:], rtol=4 * np.finfo(dtype).eps, atol=0)


def _softcap(x, cap):
    out = np.empty_like(x)
    _core.softcap_kernel(x, cap, out)
    return out


def test_softcap_tanh_f32_sweep(isa):
    """tanh (softcap=1) on every 29th float32 in [0, 12] against a float64 tanh:
    the rational branch (|x| < 1) within 3 ULP, the exp branch within 1.5 ULP,
    |tanh| <= 1, odd, and the bounds stated in src_c/csm_vec.h."""
    hi = np.float32(12.0).view(np.uint32)
    x = np.arange(0, hi + 1, 29, dtype=np.uint32).view(np.float32)
    got = _softcap(x, 1.0)
    exact = np.tanh(x.astype(np.float64))
    spacing = np.maximum(np.spacing(exact.astype(np.float32)).astype(np.float64), 2.0**-149)
    err = np.abs(got.astype(np.float64) - exact) / spacing
    small = x < 1
    print(f"softcap tanh f32 [{isa}] max error {err[small].max():.2f} ULP (|x| < 1), "
          f"{err[~small].max():.2f} ULP (|x| >= 1)")
    assert err[small].max() <= 3.0
    assert err[~small].max() <= 1.5
    assert np.abs(got).max() <= 1.0
    np.testing.assert_array_equal(_softcap(-x, 1.0), -got)
    assert got[-1] == 1.0                                   # tanh rounds to 1 from ~9.01 on


@pytest.mark.parametrize("cap", [0.5, 3.0, 30.0, 1e4])
def test_softcap_caps(isa, cap):
    rng = np.random.default_rng(7)
    for dtype, bound in ((np.float32, 3.5e-7), (np.float64, 4e-15)):
        z = (rng.standard_normal(200_000) * 3 * cap).astype(dtype)
        got = _softcap(z, cap)
        exact = cap * np.tanh(z.astype(np.float64) / cap)
        rel = np.abs(got - exact) / np.abs(exact)
        assert rel.max() <= bound, (dtype, rel.max())
        assert np.abs(got).max() <= cap


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softcap_special_values(isa, dtype):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30], dtype=dtype)
    got = _softcap(x, 1.0)
    np.testing.assert_array_equal(got[[0, 1, 7, 8]], [1.0, -1.0, 1.0, -1.0])
    assert np.isnan(got[2])
    assert got[3] == 0.0 and got[4] == 0.0 and np.signbit(got[4])
    np.testing.assert_array_equal(got[5:7], x[5:7])         # tiny x: exactly x

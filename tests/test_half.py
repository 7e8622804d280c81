"""float16 and bfloat16 read and written by the kernels directly (src_c/kernels_half.h).

Every check runs on every ISA path the build has (``isa`` fixture: switched in
process, the emulated AVX-512 path included under tools/avx512_emu.sh) and
compares against the float64 reference (``csoftmax.reference``) evaluated on the
16-bit values (exact in float64):

* 16-bit outputs (softmax, log_softmax, gradient): within 1 ULP of the reference
  rounded once to the output dtype (ULPs counted on the bit patterns, so
  subnormals and a change of sign count right);
* per-row results (log-sum-exp, loss): float32, within the float32 bounds the
  README states for float32 input.

The conversions themselves are checked against NumPy's float16 and ml_dtypes'
bfloat16 casts on all 65536 patterns (widening) and on a sweep of float32 values
(narrowing, round to nearest even).
"""
import subprocess
import sys
import tempfile
import tracemalloc

import numpy as np
import pytest

import csoftmax
from csoftmax import _core
from csoftmax_testsupport import assert_close, load_reference

ml_dtypes = pytest.importorskip("ml_dtypes")

ref = load_reference()
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
HALF = (F16, BF16)
IDS = ("float16", "bfloat16")
@pytest.fixture
def isa(each_isa):
    return each_isa            # every ISA path (tests/conftest.py)


@pytest.fixture(params=HALF, ids=IDS)
def hdt(request):
    return request.param


# ---------------------------------------------------------------- helpers

def _ordinal(a):
    """Bit patterns of 16-bit floats as integers ordered like the values
    (-0 and +0 both 0)."""
    b = np.ascontiguousarray(a).view(np.uint16).astype(np.int64)
    return np.where(b & 0x8000, -(b & 0x7FFF), b)


def assert_ulp(got, exact, dtype, maxulp=1, ctx="", float32_abs=False):
    """got (16-bit) within maxulp of `exact` (float64) rounded once to dtype;
    NaN exactly where the reference is NaN, infinities equal.

    float32_abs: entries that are differences of larger terms (the gradient with
    label smoothing, weights, z-loss: A p_k - (e/C) w_k) may instead be within
    float32's absolute bound, 4 u of the largest entry (u = 2**-24), as for
    float32 input: float32 arithmetic cannot resolve a cancellation deeper than
    that, whatever the output dtype."""
    dtype = np.dtype(dtype)
    assert got.dtype == dtype, (got.dtype, dtype)
    exact = np.asarray(exact, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        want = exact.astype(np.float32).astype(dtype) if dtype == BF16 else exact.astype(dtype)
    g64 = got.astype(np.float64)
    nan_g, nan_w = np.isnan(g64), np.isnan(want.astype(np.float64))
    assert np.array_equal(nan_g, nan_w), f"{ctx}: NaN positions differ"
    ok = ~nan_g
    d = np.abs(_ordinal(got)[ok] - _ordinal(want)[ok])
    if float32_abs and d.size:
        fin = np.isfinite(exact)
        big = float(np.max(np.abs(exact[fin]))) if fin.any() else 0.0
        close = np.abs(g64[ok] - exact[ok]) <= 2.0**-22 * big
        d = np.where(close, 0, d)
    worst = int(d.max()) if d.size else 0
    assert worst <= maxulp, f"{ctx}: {worst} ULP from the rounded float64 reference"


def _rand(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(dtype)


def _f64(a):
    return np.asarray(a).astype(np.float32).astype(np.float64)


# ---------------------------------------------------------------- conversions

def test_widen_every_pattern(isa, hdt):
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    h = bits.view(hdt)
    got = np.empty(bits.size, np.float32)
    _core.half_widen(h, got)
    want = h.astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
    g = got[nan].view(np.uint32)
    if hdt == BF16:      # a shift: every pattern, NaN payloads included, kept exactly
        assert np.array_equal(got.view(np.uint32), bits.astype(np.uint32) << 16)
    else:                # NaN keeps its sign and payload, quieted (F16C's rule, every path)
        assert np.all(g & 0x00400000)
        assert np.array_equal(g >> 31, (bits[nan] >> 15).astype(np.uint32))
        assert np.array_equal((g >> 13) & 0x1FF, (bits[nan] & 0x1FF).astype(np.uint32))


def _narrow_inputs(hdt):
    rng = np.random.default_rng(7)
    rnd = rng.integers(0, 2**32, size=400_000, dtype=np.uint64).astype(np.uint32)
    # every rounding boundary: the 16-bit values, the midpoints between
    # neighbours and one float32 ULP either side of them
    pos = np.arange(0, 0x7C01 if hdt == F16 else 0x7F81, dtype=np.uint32).astype(np.uint16)
    v = pos.view(hdt).astype(np.float64)
    mid = (v[:-1] + v[1:]) / 2
    extra = np.array([3.0e38, 65504.0, 65519.99, 65520.0, 1e-8, 2.0**-25, 2.0**-24 * 1.5,
                      2.0**-149, np.inf], np.float64)
    vals = np.concatenate([v, mid, extra]).astype(np.float32)
    near = np.concatenate([vals, np.nextafter(vals, np.float32(np.inf)),
                           np.nextafter(vals, np.float32(-np.inf))])
    specials = np.array([0x7FC00000, 0x7F800001, 0x7FBFFFFF, 0xFFC12345, 0x7FFFFFFF],
                        np.uint32).view(np.float32)
    x = np.concatenate([rnd.view(np.float32), near, -near, specials])
    return np.ascontiguousarray(x, dtype=np.float32)


def test_narrow_rounds_to_nearest_even(isa, hdt):
    x = _narrow_inputs(hdt)
    got = np.empty(x.size, hdt)
    _core.half_narrow(x, got)
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(hdt)
    nan = np.isnan(x)
    gb, wb = got.view(np.uint16), want.view(np.uint16)
    assert np.array_equal(gb[~nan], wb[~nan])
    # NaN stays NaN (quiet), with its sign
    g = gb[nan]
    assert np.all(np.isnan(got[nan].astype(np.float32)))
    assert np.array_equal(g >> 15, (x[nan].view(np.uint32) >> 31).astype(np.uint16))


def test_gathered_and_vector_conversions_agree(isa, hdt):
    """Strided rows are converted element by element (portable C), contiguous
    ones by the ISA's vector code: the same bits."""
    rng = np.random.default_rng(1)
    x = _rand(rng, (40, 37), hdt, 6.0)
    x[3, 5] = np.inf
    x[4, 1] = np.nan
    xs = np.asfortranarray(x)            # classes strided, rows contiguous: column staging
    xg = np.ascontiguousarray(x.T).T[:, :]
    sl = np.zeros((40, 74), hdt)[:, ::2]  # strided both ways: gathers
    sl[...] = x
    for f in (csoftmax.softmax, csoftmax.log_softmax):
        a = f(x, axis=1)
        for y in (f(xs, axis=1), f(xg, axis=1), f(sl, axis=1)):
            assert np.array_equal(a.view(np.uint16), np.ascontiguousarray(y).view(np.uint16))


# ---------------------------------------------------------------- results vs reference

SHAPES = [(1, 1), (3, 7), (17, 10), (1000, 10), (5, 67), (64, 1000), (3, 5000), (2, 9000)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_softmax_log_softmax_lse(isa, hdt, shape):
    rng = np.random.default_rng(sum(shape))
    x = _rand(rng, shape, hdt)
    x64 = _f64(x)
    y = csoftmax.softmax(x, axis=-1)
    assert_ulp(y, ref.softmax(x64, axis=-1), hdt, ctx="softmax")
    y = csoftmax.log_softmax(x, axis=-1)
    assert_ulp(y, ref.log_softmax(x64, axis=-1), hdt, ctx="log_softmax")
    lse = csoftmax.logsumexp(x, axis=-1)
    assert lse.dtype == np.float32
    assert_close(lse, ref.logsumexp(x64, axis=-1), func="logsumexp[half]",
                 dtype=np.float32, kind="reduce")
    lse16 = csoftmax.logsumexp(x, axis=-1, dtype=hdt)
    assert lse16.dtype == hdt
    assert_ulp(lse16, ref.logsumexp(x64, axis=-1), hdt, ctx="logsumexp dtype=")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cross_entropy_with_grad(isa, hdt, shape):
    rng = np.random.default_rng(3 + sum(shape))
    z = _rand(rng, shape, hdt)
    t = rng.integers(0, shape[1], shape[0])
    z64 = _f64(z)
    for red in ("none", "mean"):
        loss, g = csoftmax.cross_entropy_with_grad(z, t, reduction=red)
        rl, rg = ref.cross_entropy_with_grad(z64, t, reduction=red)
        assert g.dtype == hdt and np.asarray(loss).dtype == np.float32
        assert_ulp(g, rg, hdt, ctx=f"grad {red}")
        assert_close(np.asarray(loss), rl, func="cross_entropy[half]", dtype=np.float32,
                     kind="reduce")
    out = np.full(shape, np.nan, hdt)
    loss, g = csoftmax.cross_entropy_with_grad(z, t, out=out, reduction="sum")
    assert g is out
    assert_ulp(out, ref.cross_entropy_with_grad(z64, t, reduction="sum")[1], hdt, ctx="out=")
    zc = z.copy()
    loss2, g2 = csoftmax.cross_entropy_with_grad(zc, t, inplace=True, reduction="sum")
    assert g2 is zc and np.array_equal(zc.view(np.uint16), out.view(np.uint16))
    assert float(loss2) == float(loss)
    l1 = csoftmax.cross_entropy(z, t, reduction="none")
    assert l1.dtype == np.float32
    np.testing.assert_array_equal(l1, csoftmax.cross_entropy_with_grad(z, t, reduction="none")[0])
    l16 = csoftmax.cross_entropy(z, t, reduction="none", dtype=hdt)
    assert l16.dtype == hdt


OPTIONS = [
    dict(weight="w"), dict(sample_weight="s"), dict(ignore_index=2), dict(label_smoothing=0.1),
    dict(z_loss=1e-3), dict(softcap=5.0), dict(grad_scale=0.5, reduction="sum"),
    dict(weight="w", label_smoothing=0.2, z_loss=1e-2, softcap=4.0, sample_weight="s"),
]


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o))
@pytest.mark.parametrize("soft", (False, True), ids=("labels", "soft"))
def test_cross_entropy_options(isa, hdt, opts, soft):
    rng = np.random.default_rng(11)
    n, c = 50, 33
    z = _rand(rng, (n, c), hdt)
    if soft:
        p = rng.random((n, c))
        t = (p / p.sum(1, keepdims=True)).astype(np.float32).astype(hdt)
        t64 = _f64(t)
    else:
        t = t64 = rng.integers(0, c, n)
        t[::7] = 2
    kw = dict(opts)
    if kw.get("weight") == "w":
        kw["weight"] = rng.random(c).astype(np.float32)
    if kw.get("sample_weight") == "s":
        kw["sample_weight"] = rng.random(n)
    if soft:
        kw.pop("ignore_index", None)
    kw.setdefault("reduction", "none")
    loss, g, lse = csoftmax.cross_entropy_with_grad(z, t, return_lse=True, **kw)
    rl, rg, rlse = ref.cross_entropy_with_grad(_f64(z), t64, return_lse=True, **kw)
    assert g.dtype == hdt and loss.dtype == np.float32 and lse.dtype == np.float32
    plain = set(opts) <= {"sample_weight", "ignore_index", "grad_scale", "reduction"}
    assert_ulp(g, rg, hdt, ctx=f"grad {opts}", float32_abs=not plain)
    assert_close(loss, rl, func="cross_entropy[half]", dtype=np.float32, kind="reduce",
                 scale=float(np.max(np.abs(rl))) * 1e-3)
    assert_close(lse, rlse, func="cross_entropy lse[half]", dtype=np.float32, kind="reduce")


def test_logsumexp_b_and_sign(isa, hdt):
    rng = np.random.default_rng(5)
    a = _rand(rng, (30, 40), hdt)
    b = _rand(rng, (30, 40), hdt, 1.0)
    r, s = csoftmax.logsumexp(a, axis=1, b=b, return_sign=True)
    rr, rs = ref.logsumexp(_f64(a), axis=1, b=_f64(b), return_sign=True)
    assert r.dtype == np.float32 and s.dtype == np.float32
    ok = np.abs(rr) > 1e-3          # away from a cancelling sum
    assert_close(r[ok], rr[ok], func="logsumexp b[half]", dtype=np.float32, kind="reduce",
                 scale=1.0)
    np.testing.assert_array_equal(s, rs)


# ---------------------------------------------------------------- layouts

LAYOUTS = ["nchw-axis1", "axis0", "fortran", "reversed", "strided"]


def _layout(x, layout):
    if layout == "nchw-axis1":
        return x.reshape(4, 6, 5, 7).copy(), 1
    if layout == "axis0":
        return np.ascontiguousarray(x.T), 0
    if layout == "fortran":
        return np.asfortranarray(x), -1
    if layout == "reversed":
        return x[::-1, ::-1], -1
    big = np.zeros((x.shape[0] * 2, x.shape[1] * 3), x.dtype)
    big[::2, ::3] = x
    return big[::2, ::3], -1


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts(isa, hdt, layout):
    rng = np.random.default_rng(9)
    x, ax = _layout(_rand(rng, (20, 42), hdt), layout)
    x64 = _f64(x)
    for f, rf in ((csoftmax.softmax, ref.softmax), (csoftmax.log_softmax, ref.log_softmax)):
        assert_ulp(f(x, axis=ax), rf(x64, axis=ax), hdt, ctx=f"{f.__name__} {layout}")
        out = np.empty_like(x)           # same layout as x
        assert f(x, axis=ax, out=out) is out
        assert_ulp(out, rf(x64, axis=ax), hdt, ctx=f"{f.__name__} out= {layout}")
    assert_close(csoftmax.logsumexp(x, axis=ax), ref.logsumexp(x64, axis=ax),
                 func="logsumexp[half]", dtype=np.float32, kind="reduce")
    c = x.shape[ax]
    batch = tuple(n for i, n in enumerate(x.shape) if i != ax % x.ndim)
    t = rng.integers(0, c, batch)
    loss, g = csoftmax.cross_entropy_with_grad(x, t, axis=ax, reduction="none")
    rl, rg = ref.cross_entropy_with_grad(x64, t, axis=ax, reduction="none")
    assert_ulp(g, rg, hdt, ctx=f"grad {layout}")
    assert_close(loss, rl, func="cross_entropy[half]", dtype=np.float32, kind="reduce")
    xi = x.copy() if layout != "reversed" else x[::-1, ::-1].copy()[::-1, ::-1]
    _, gi = csoftmax.cross_entropy_with_grad(xi, t, axis=ax, reduction="none", inplace=True)
    assert gi is xi
    assert_ulp(xi, rg, hdt, ctx=f"inplace {layout}")


# ---------------------------------------------------------------- long sums

@pytest.mark.parametrize("n", (10_000, 100_000, 1_000_000))
def test_bf16_long_sums(isa, n):
    """NumPy's own bfloat16 sum of 10**4 ones is 256 (bf16 accumulation); the
    kernels sum in float64: log-sum-exp, softmax and the loss over 10**5 and
    10**6 classes are right to float32 accuracy."""
    if n == 10_000:
        assert float(np.ones(n, BF16).sum()) == 256.0      # the peer's failure, for the record
    z = np.zeros((1, n), BF16)
    lse = csoftmax.logsumexp(z, axis=-1)
    assert abs(float(lse[0]) - np.log(n)) <= 4 * np.finfo(np.float32).eps * np.log(n)
    rng = np.random.default_rng(n)
    x = _rand(rng, (2, n), BF16, 2.0)
    assert_close(csoftmax.logsumexp(x, axis=-1), ref.logsumexp(_f64(x), axis=-1),
                 func="logsumexp[bf16 long]", dtype=np.float32, kind="reduce")
    y = csoftmax.softmax(z, axis=-1)
    assert_ulp(y, np.full((1, n), 1.0 / n), BF16, ctx="softmax long")
    t = np.array([3, n - 1])
    loss, g = csoftmax.cross_entropy_with_grad(x, t, reduction="none")
    rl, rg = ref.cross_entropy_with_grad(_f64(x), t, reduction="none")
    assert_close(loss, rl, func="cross_entropy[bf16 long]", dtype=np.float32, kind="reduce")
    assert_ulp(g, rg, BF16, ctx="grad long")


# ---------------------------------------------------------------- special values

def _specials(hdt):
    big = float(np.finfo(np.float16).max) if hdt == F16 else float(ml_dtypes.finfo(BF16).max)
    tiny = 2.0**-24 if hdt == F16 else 2.0**-133      # the smallest subnormal
    rows = [
        [0.0, np.nan, 1.0, 2.0],
        [np.inf, 0.0, 1.0, 2.0],
        [np.inf, np.inf, 0.0, -np.inf],
        [-np.inf] * 4,
        [big, big, 0.0, -big],
        [tiny, -tiny, 3 * tiny, 0.0],
        [-big, -big, -big, -big],
        [1.0, -np.inf, -np.inf, 2.0],
    ]
    return np.array(rows, np.float64).astype(np.float32).astype(hdt)


def test_special_values(isa, hdt):
    x = _specials(hdt)
    x64 = _f64(x)
    with np.errstate(all="ignore"):
        assert_ulp(csoftmax.softmax(x, axis=1), ref.softmax(x64, axis=1), hdt, ctx="softmax")
        assert_ulp(csoftmax.log_softmax(x, axis=1), ref.log_softmax(x64, axis=1), hdt,
                   ctx="log_softmax")
        got = csoftmax.logsumexp(x, axis=1)
        want = ref.logsumexp(x64, axis=1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    assert_close(got[fin], want[fin], func="logsumexp[half specials]", dtype=np.float32,
                 kind="reduce")
    t = np.array([0, 1, 2, 0, 3, 2, 1, 3])
    with np.errstate(all="ignore"):
        loss, g = csoftmax.cross_entropy_with_grad(x, t, reduction="none")
        rl, rg = ref.cross_entropy_with_grad(x64, t, reduction="none")
    assert_ulp(g, rg, hdt, ctx="grad specials")
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(rl))
    fin = np.isfinite(rl)
    np.testing.assert_array_equal(loss[~fin & ~np.isnan(rl)], rl[~fin & ~np.isnan(rl)])
    assert_close(loss[fin], rl[fin], func="cross_entropy[half specials]", dtype=np.float32,
                 kind="reduce", scale=1.0)


def test_bad_label_writes_nothing(isa, hdt):
    rng = np.random.default_rng(2)
    z = _rand(rng, (3000, 12), hdt)            # several blocks of rows
    t = rng.integers(0, 12, 3000)
    t[2500] = 12
    out = np.full(z.shape, 7.0, hdt)
    zc = z.copy()
    with pytest.raises(ValueError, match="out of range"):
        csoftmax.cross_entropy_with_grad(z, t, out=out)
    with pytest.raises(ValueError, match="out of range"):
        csoftmax.cross_entropy_with_grad(zc, t, inplace=True)
    assert np.all(out.astype(np.float32) == 7.0)
    assert np.array_equal(zc.view(np.uint16), z.view(np.uint16))


def test_wrong_out_dtype_and_bad_dtype_keyword(hdt):
    z = np.zeros((2, 3), hdt)
    with pytest.raises(ValueError, match="dtype"):
        csoftmax.softmax(z, axis=1, out=np.empty((2, 3), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        csoftmax.logsumexp(z, axis=1, out=np.empty(2, hdt))       # float32 by default
    csoftmax.logsumexp(z, axis=1, out=np.empty(2, hdt), dtype=hdt)
    with pytest.raises(TypeError, match="dtype"):
        csoftmax.cross_entropy(z, np.array([0, 1]), dtype=np.int32)


# ---------------------------------------------------------------- memory

def test_no_float32_copy_of_the_logits(hdt):
    """The 16-bit logits are neither copied to float32 nor the gradient made in
    float32: NumPy's allocations during the call stay far below one float32
    copy (the kernels' staging buffers, 256 KB per thread, are malloc'ed in C)."""
    rng = np.random.default_rng(0)
    z = _rand(rng, (2048, 1000), hdt)
    t = rng.integers(0, 1000, 2048)
    out = np.empty_like(z)
    f32_copy = z.size * 4
    for call in (lambda: csoftmax.cross_entropy_with_grad(z, t, out=out),
                 lambda: csoftmax.softmax(z, axis=-1, out=out),
                 lambda: csoftmax.logsumexp(z, axis=-1)):
        tracemalloc.start()
        call()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < f32_copy / 16, peak


def test_ml_dtypes_not_imported():
    code = ("import sys, numpy as np, csoftmax\n"
            "csoftmax.softmax(np.zeros((2, 3), np.float16), axis=1)\n"
            "csoftmax.cross_entropy(np.zeros((2, 3), np.float16), np.array([0, 1]))\n"
            "assert 'ml_dtypes' not in sys.modules, 'ml_dtypes imported'\n")
    # (from another directory: the source tree must not shadow the installed package)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tempfile.gettempdir())


# ---------------------------------------------------------------- csoftmax.torch

@pytest.mark.parametrize("layout", ("nc", "ncd", "transposed"))
def test_torch_adapter_half(hdt, layout):
    torch = pytest.importorskip("torch")
    import csoftmax.torch as ct
    tdt = torch.float16 if hdt == F16 else torch.bfloat16
    g = torch.Generator().manual_seed(4)
    if layout == "nc":
        base = torch.randn(64, 100, generator=g)
    elif layout == "ncd":
        base = torch.randn(8, 30, 5, generator=g)
    else:
        base = torch.randn(100, 64, generator=g).t()        # classes strided
    z = (3 * base).to(tdt)
    if layout == "transposed":
        z = (3 * torch.randn(100, 64, generator=g)).to(tdt).t()
    z.requires_grad_(True)
    t = torch.randint(0, z.shape[1], (z.shape[0],) + tuple(z.shape[2:]), generator=g)
    z64 = z.detach().to(torch.float64).requires_grad_(True)
    for red in ("mean", "none"):
        z.grad = None
        z64.grad = None
        loss = ct.cross_entropy(z, t, reduction=red)
        assert loss.dtype == torch.float32
        up = torch.ones_like(loss) if red == "mean" else torch.rand(loss.shape, generator=g)
        loss.backward(up)
        ref_loss = torch.nn.functional.cross_entropy(z64, t, reduction=red)
        ref_loss.backward(up.to(torch.float64))
        assert z.grad.dtype == tdt
        np.testing.assert_allclose(loss.detach().numpy(), ref_loss.detach().numpy(),
                                   rtol=1e-6, atol=1e-6)
        gnp = z.grad.view(torch.int16).numpy().view(hdt)
        # "none" with an upstream factor: the float32 product rounded once more
        assert_ulp(gnp, z64.grad.numpy(), hdt, maxulp=1 if red == "mean" else 2,
                   ctx=f"torch grad {red}")


def test_torch_adapter_half_no_copy_and_inplace(hdt):
    torch = pytest.importorskip("torch")
    import csoftmax.torch as ct
    from csoftmax.torch import _as_numpy
    tdt = torch.float16 if hdt == F16 else torch.bfloat16
    z = torch.randn(32, 50).to(tdt)
    v = _as_numpy(z)
    assert v.dtype == hdt and v.ctypes.data == z.data_ptr()          # a view, no copy
    w = torch.randn(50, 50).to(tdt).requires_grad_(True)
    x = torch.randn(32, 50).to(tdt)
    t = torch.randint(0, 50, (32,))
    h = x @ w                                    # an intermediate autograd does not need
    hz = h.detach().clone()
    ptr = h.data_ptr()
    loss = ct.cross_entropy(h, t, inplace=True)
    loss.backward()
    assert h.data_ptr() == ptr and w.grad is not None and w.grad.dtype == tdt
    h64 = hz.to(torch.float64).requires_grad_(True)
    torch.nn.functional.cross_entropy(h64, t).backward()
    # h now holds d loss / d h, written by the kernel in h's dtype
    assert_ulp(_as_numpy(h.detach()), h64.grad.numpy(), hdt, ctx="torch inplace")

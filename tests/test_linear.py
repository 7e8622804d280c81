"""Fused linear + cross-entropy against the float64 reference that materialises the logits.

Tolerances (``assert_linear_close`` in conftest.py): first-order bounds from
the float32/float64 rounding of the logits (each a D-term dot product), of
the fused pass and of the second products (V resp. N + chunks terms).  The
chunk-size bound of the README is checked in ``test_chunk_size_bound``.
"""
import tracemalloc

import numpy as np
import pytest

import csoftmax
from csoftmax_testsupport import assert_linear_close, load_reference

ref = load_reference()

OPTION_SETS = {
    "plain": {},
    "class_weight": {"class_weight": "w"},
    "sample_weight": {"sample_weight": "s"},
    "smoothing": {"label_smoothing": 0.2},
    "z_loss": {"z_loss": 1e-3},
    "softcap": {"softcap": 3.0},
    "everything": {"class_weight": "w", "sample_weight": "s", "label_smoothing": 0.1,
                   "z_loss": 1e-2, "softcap": 5.0},
}


def _problem(rng, lead, d, v, dtype, *, bias=True, ignore_frac=0.25, soft=False):
    x = (rng.standard_normal(lead + (d,)) * 0.5).astype(dtype)
    w = (rng.standard_normal((v, d)) / np.sqrt(max(d, 1))).astype(dtype)
    b = (rng.standard_normal(v) * 0.1).astype(dtype) if bias else None
    if soft:
        t = rng.random(lead + (v,))
        t /= t.sum(axis=-1, keepdims=True)
        t = t.astype(dtype)
    else:
        t = rng.integers(0, v, lead)
        if ignore_frac:
            t = np.where(rng.random(lead) < ignore_frac, -100, t)
    return x, w, b, t


def _opts(spec, rng, lead, v):
    o = dict(spec)
    if o.get("class_weight") == "w":
        o["class_weight"] = rng.uniform(0.2, 2.0, v)
    if o.get("sample_weight") == "s":
        o["sample_weight"] = rng.uniform(0.0, 2.0, lead)
    return o


def _check(x, w, t, b, opts, chunk_size, *, dtype, what, return_lse=False, grad_scale=1.0,
           **kw):
    """Run csoftmax and compare it with the reference; returns (got, expected)."""
    got = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, chunk_size=chunk_size,
                                                  return_lse=return_lse,
                                                  grad_scale=grad_scale, **opts)
    n_kept = int(np.prod(np.shape(x)[:-1]))
    n_chunks = -(-n_kept // chunk_size) if chunk_size else 1
    exp = assert_linear_close(got, x, w, b, t, opts, dtype=dtype, what=what,
                              n_chunks=n_chunks, return_lse=return_lse,
                              grad_scale=grad_scale, **kw)
    return got, exp


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opt_name", sorted(OPTION_SETS))
def test_options_against_reference(opt_name, reduction, dtype):
    rng = np.random.default_rng(abs(hash((opt_name, reduction, dtype))) % 2**32)
    lead, d, v = (23,), 19, 37
    x, w, b, t = _problem(rng, lead, d, v, dtype)
    opts = _opts(OPTION_SETS[opt_name], rng, lead, v)
    for cs in (1, 7, 1000, None):
        got, _ = _check(x, w, t, b, dict(opts, reduction=reduction), cs, return_lse=True,
                        dtype=dtype, what=f"{opt_name}/{reduction}/{dtype}/chunk={cs}")
        loss_only = csoftmax.linear_cross_entropy(x, w, t, bias=b, chunk_size=cs,
                                                  reduction=reduction, **opts)
        # the forward-only call runs the same chunks through the same kernel
        np.testing.assert_array_equal(loss_only, got[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("v", [1, 2, 17, 1000, 3001])
def test_class_counts(v, soft, dtype):
    rng = np.random.default_rng(v * 7 + soft)
    lead, d = (29,), 24
    x, w, b, t = _problem(rng, lead, d, v, dtype, soft=soft)
    for cs in (1, 7, 64):
        _check(x, w, t, b, {"label_smoothing": 0.05}, cs, dtype=dtype,
               what=f"V={v}/soft={soft}/chunk={cs}")


@pytest.mark.parametrize("lead", [(), (1,), (2, 5), (3, 4, 2)])
def test_leading_shapes(lead):
    rng = np.random.default_rng(len(lead))
    x, w, b, t = _problem(rng, lead, 8, 11, np.float64, ignore_frac=0.0)
    got, _ = _check(x, w, np.asarray(t), b, {"reduction": "none"}, 3, dtype=np.float64,
                    what=f"lead={lead}")
    assert got[1].shape == x.shape and got[2].shape == w.shape and got[3].shape == (11,)


def test_grad_scale_array_and_scalar():
    rng = np.random.default_rng(5)
    x, w, b, t = _problem(rng, (4, 6), 9, 13, np.float64)
    gs = rng.standard_normal((4, 6))
    _check(x, w, t, b, {"reduction": "none"}, 5, grad_scale=gs, dtype=np.float64,
           what="grad_scale array")
    _check(x, w, t, b, {"reduction": "mean"}, 5, grad_scale=-2.5, dtype=np.float64,
           what="grad_scale scalar")
    with pytest.raises(ValueError, match="needs reduction='none'"):
        csoftmax.linear_cross_entropy_with_grad(x, w, t, grad_scale=gs)


def test_ignored_rows_and_all_ignored():
    rng = np.random.default_rng(8)
    x, w, b, t = _problem(rng, (10,), 6, 7, np.float64, ignore_frac=0.0)
    t[[0, 3, 9]] = -100
    loss, dx, dw, db = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, chunk_size=3)
    assert np.all(dx[[0, 3, 9]] == 0)
    assert_linear_close((loss, dx, dw, db), x, w, b, t, {}, dtype=np.float64, what="ignored")
    # every sample ignored: "mean" divides by 0 -> NaN, gradients 0 (PyTorch's result;
    # the reference's gradient would be 0 * NaN)
    t[:] = -100
    loss, dx, dw, db = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b)
    assert np.isnan(loss)
    assert not dx.any() and not dw.any() and not db.any()
    for red in ("sum", "none"):
        _check(x, w, t, b, {"reduction": red}, 4, dtype=np.float64, what=f"all ignored {red}")
    # another ignore_index, and None (then -100 is an out-of-range label)
    t2 = rng.integers(0, 7, 10)
    t2[2] = 5
    _check(x, w, t2, b, {"ignore_index": 5, "reduction": "sum"}, 4, dtype=np.float64,
           what="ignore_index=5")
    with pytest.raises(ValueError, match=r"label -100 at index \(0,\)"):
        csoftmax.linear_cross_entropy(x, w, t, ignore_index=None)


def test_ignored_rows_skip_the_gemms(monkeypatch):
    """Ignored rows are dropped before the products: the GEMMs see only the others."""
    import csoftmax._linear as lin
    rng = np.random.default_rng(9)
    x, w, b, t = _problem(rng, (12,), 5, 8, np.float64, ignore_frac=0.0)
    t[::2] = -100
    rows_seen = []
    real_matmul = np.matmul

    def spy(a, bb, out=None):
        if np.shares_memory(bb, w):          # x_c @ W.T and g_c @ W: m rows each
            rows_seen.append(a.shape[0])
        return real_matmul(a, bb, out=out)

    monkeypatch.setattr(lin.np, "matmul", spy)
    try:
        csoftmax.linear_cross_entropy_with_grad(x, w, t, chunk_size=4)
    finally:
        monkeypatch.undo()
    assert sum(rows_seen) == 2 * 6, rows_seen     # forward (x W.T) and dx (g W), 6 rows each


def test_soft_targets_and_out():
    rng = np.random.default_rng(11)
    x, w, b, t = _problem(rng, (3, 5), 7, 9, np.float32, soft=True)
    out = (np.full(x.shape, np.nan, np.float32), np.full(w.shape, np.nan, np.float32),
           np.full(9, np.nan, np.float32))
    r = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, chunk_size=4, out=out)
    assert r[1] is out[0] and r[2] is out[1] and r[3] is out[2]
    assert_linear_close(r, x, w, b, t, {}, dtype=np.float32, n_chunks=4, what="soft out")
    # non-contiguous out arrays are filled through a temporary
    outF = (np.asfortranarray(np.zeros(x.shape, np.float32)),
            np.zeros((18, 7), np.float32)[::2], np.zeros(9, np.float32))
    r2 = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, chunk_size=4, out=outF)
    for a, o in zip(r2[1:], outF):
        assert a is o
    for a, c in zip(r2[1:], r[1:]):
        np.testing.assert_array_equal(a, c)


def test_layouts_of_x_and_weight():
    rng = np.random.default_rng(12)
    x, w, b, t = _problem(rng, (9,), 6, 10, np.float64)
    base = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, chunk_size=4)
    xs = np.zeros((18, 12))[::2, ::2]
    xs[...] = x
    for xx, ww in ((xs, w), (x, np.asfortranarray(w)), (x, w.T.copy().T),
                   (np.asfortranarray(x), w[::-1][::-1]), (x.astype(np.float32), w)):
        _check(xx, ww, t, b, {}, 4, dtype=np.result_type(xx, ww), what="layout")
    assert base[2].flags.c_contiguous


def test_float16_and_integer_inputs():
    rng = np.random.default_rng(13)
    x, w, b, t = _problem(rng, (6,), 4, 5, np.float16)
    got = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b)
    # the loss float32 (README: half precision), the gradients float16
    assert got[0].dtype == np.float32
    assert all(g.dtype == np.float16 for g in got[1:])
    xi = rng.integers(-3, 4, (6, 4))
    wi = rng.integers(-2, 3, (5, 4))
    _check(xi, wi, t, None, {}, None, dtype=np.float64, what="int")


def test_chunk_size_bound():
    """README bound: changing chunk_size changes loss and dx only by the BLAS's rounding
    of the logits, and dW, db also by the rounding of the chunk sums:
    |dW(k) - dW(1)| <= (k + 2) u sum_i |g_iv x_id| with k chunks (float32)."""
    rng = np.random.default_rng(14)
    n, d, v = 300, 64, 500
    x, w, b, t = _problem(rng, (n,), d, v, np.float32)
    one = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, chunk_size=n,
                                                  reduction="sum")
    g = ref.cross_entropy_with_grad(x.astype(np.float64) @ w.T.astype(np.float64) + b,
                                    t, reduction="sum")[1]
    x64 = np.abs(x.astype(np.float64))
    mag_w = np.abs(g).T @ x64
    mag_b = np.abs(g).sum(axis=0)
    u = 2.0**-24
    for cs in (1, 7, 64, 299):
        k = -(-np.count_nonzero(t != -100) // cs)
        got = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, chunk_size=cs,
                                                      reduction="sum")
        # loss, dx: same rows, same kernel, only the logits' rounding may differ
        np.testing.assert_allclose(got[0], one[0], rtol=1e-6)
        np.testing.assert_allclose(got[1], one[1], rtol=1e-4, atol=1e-6)
        # dW, db: the accumulation bound (plus the logits' share, 4 u per entry)
        lim_w = (k + 2 + 4 * 8) * u * mag_w + 1e-30
        lim_b = (k + 2 + 4 * 8) * u * mag_b + 1e-30
        assert np.all(np.abs(got[2].astype(np.float64) - one[2]) <= lim_w), cs
        assert np.all(np.abs(got[3].astype(np.float64) - one[3]) <= lim_b), cs


def test_accumulate_dtype_float64():
    rng = np.random.default_rng(15)
    n, d, v = 200, 16, 64
    x, w, b, t = _problem(rng, (n,), d, v, np.float32)
    exp = ref.linear_cross_entropy_with_grad(x, w, t, bias=b, reduction="sum")
    r32 = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, chunk_size=1,
                                                  reduction="sum")
    r64 = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, chunk_size=1,
                                                  reduction="sum", accumulate_dtype=np.float64)
    assert r64[2].dtype == np.float32 and r64[3].dtype == np.float32
    assert_linear_close(r64, x, w, b, t, {"reduction": "sum"}, dtype=np.float32, acc64=True,
                        what="acc64")
    err32 = np.abs(r32[2] - exp[2]).max()
    err64 = np.abs(r64[2] - exp[2]).max()
    assert err64 <= err32
    with pytest.raises(ValueError, match="accumulate_dtype"):
        csoftmax.linear_cross_entropy_with_grad(x, w, t, accumulate_dtype=np.int32)
    with pytest.raises(ValueError, match="narrower"):
        csoftmax.linear_cross_entropy_with_grad(x.astype(np.float64), w, t,
                                                accumulate_dtype=np.float32)


def test_thread_count_does_not_change_the_result():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(16)
    x, w, b, t = _problem(rng, (257,), 48, 700, np.float32)
    with threadpoolctl.threadpool_limits(1):
        one = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, chunk_size=64)
    with threadpoolctl.threadpool_limits(2):
        two = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, chunk_size=64)
    for a, c in zip(one, two):
        np.testing.assert_array_equal(a, c)


def test_one_setting_controls_both_thread_pools():
    """csoftmax's thread count (set_num_threads, OMP_NUM_THREADS, threadpoolctl) sets the
    workers of the BLAS blocks; the BLAS itself runs on one thread during a call and
    gets its own setting back afterwards."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import threading
    import csoftmax._linear as lin

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("no BLAS library found by threadpoolctl")
    with lin._blas_single():
        assert all(k == 1 for k in blas_threads())
    assert blas_threads() == before
    with threadpoolctl.threadpool_limits(1):
        # threadpoolctl reaches csoftmax's OpenMP runtime as well
        assert csoftmax.show_config()["max_threads"] == 1
    used = []
    real_pool = lin._pool

    def spy(n):
        used.append(n)
        return real_pool(n)

    rng = np.random.default_rng(21)
    x, w, b, t = _problem(rng, (64,), 64, 3000, np.float32)   # 32 x 3000 x 64 per chunk
    lin._pool = spy
    try:
        def worker():
            csoftmax.set_num_threads(1)
            csoftmax.linear_cross_entropy_with_grad(x, w, t, chunk_size=32)

        th = threading.Thread(target=worker)
        th.start()
        th.join()
        assert used == [1] and real_pool(1) is None
        if csoftmax.show_config()["openmp"]:
            with threadpoolctl.threadpool_limits(2, user_api="openmp"):
                csoftmax.linear_cross_entropy_with_grad(x, w, t, chunk_size=32)
            assert used[-1] == 2
    finally:
        lin._pool = real_pool
    assert blas_threads() == before


def test_memory_stays_at_one_chunk():
    """NumPy-side allocations (tracemalloc) during a call: dx + dW + one chunk of
    logits + one accumulation block per worker, never the N x V logits; no copy of W."""
    rng = np.random.default_rng(17)
    n, d, v = 1024, 64, 4000
    x = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((v, d), dtype=np.float32) * 0.1
    t = rng.integers(0, v, n)
    cs = 128
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        r = csoftmax.linear_cross_entropy_with_grad(x, w, t, chunk_size=cs,
                                                    label_smoothing=0.1, z_loss=1e-4,
                                                    softcap=30.0)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    item = 4
    workers = max(1, csoftmax.show_config()["max_threads"])
    budget = (n * d + v * d + cs * v) * item + workers * min(2 * 2**20, v * d * item) + 64 * n
    assert peak <= 1.10 * budget, (peak, budget)
    assert peak < n * v * item          # the full logits would not even fit
    del r


def test_non_finite_inputs_propagate():
    rng = np.random.default_rng(18)
    x, w, b, t = _problem(rng, (6,), 5, 7, np.float64, ignore_frac=0.0)
    x[2, 1] = np.nan
    with np.errstate(invalid="ignore"):      # the reference's NumPy products warn
        got, _ = _check(x, w, t, b, {"reduction": "none"}, 4, dtype=np.float64,
                        what="NaN in x")
    assert np.isnan(got[0][2]) and np.all(np.isfinite(np.delete(got[0], 2)))
    assert np.all(np.isnan(got[1][2])) and np.all(np.isfinite(np.delete(got[1], 2, 0)))
    assert np.all(np.isnan(got[2]))
    x[2, 1] = 0.0
    w[3, 0] = np.inf
    got = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, reduction="none")
    with np.errstate(invalid="ignore"):
        exp = ref.linear_cross_entropy_with_grad(x, w, t, bias=b, reduction="none")
    np.testing.assert_array_equal(np.isnan(got[0]), np.isnan(exp[0]))


def test_bad_input_raises_and_writes_nothing():
    rng = np.random.default_rng(19)
    x, w, b, t = _problem(rng, (5,), 4, 6, np.float64, ignore_frac=0.0)
    f = csoftmax.linear_cross_entropy_with_grad
    with pytest.raises(ValueError, match="features"):
        f(x, w[:, :3], t)
    with pytest.raises(ValueError, match="2-D"):
        f(x, w.reshape(6, 2, 2), t)
    with pytest.raises(ValueError, match="2-D"):
        f(x, w[0], t)
    with pytest.raises(ValueError, match="at least one dimension"):
        f(np.float64(1.0), w[:, :1], t)
    with pytest.raises(ValueError, match="bias has shape"):
        f(x, w, t, bias=b[:-1])
    with pytest.raises(ValueError, match="class_weight has shape"):
        f(x, w, t, class_weight=np.ones(5))
    with pytest.raises(TypeError, match="complex|real"):
        f(x.astype(complex), w, t)
    with pytest.raises(TypeError, match="chunk_size"):
        f(x, w, t, chunk_size=2.5)
    for cs in (0, -3):
        with pytest.raises(ValueError, match="chunk_size must be >= 1"):
            f(x, w, t, chunk_size=cs)
    with pytest.raises(ValueError, match="integer target has shape"):
        f(x, w, t[:-1])
    out = (np.full(x.shape, 7.0), np.full(w.shape, 7.0))
    bad = t.copy()
    bad[3] = 6
    with pytest.raises(ValueError, match=r"label 6 at index \(3,\) \(sample 3\)"):
        f(x, w, bad, out=out, chunk_size=1)
    assert np.all(out[0] == 7.0) and np.all(out[1] == 7.0)
    bad[3] = -1
    with pytest.raises(ValueError, match=r"label -1 at index \(3,\)"):
        csoftmax.linear_cross_entropy(x, w, bad)
    with pytest.raises(ValueError, match="out must be a tuple of 3"):
        f(x, w, t, bias=b, out=out)
    with pytest.raises(ValueError, match="shape"):
        f(x, w, t, out=(out[1], out[0]))
    with pytest.raises(ValueError, match="dtype"):
        f(x, w, t, out=(out[0].astype(np.float32), out[1]))
    with pytest.raises(ValueError, match="overlaps weight"):
        f(x, w, t, out=(np.empty_like(x), w))
    with pytest.raises(ValueError, match="overlaps out dx"):
        big = np.empty(w.size + x.size)
        f(x, w, t, out=(big[:x.size].reshape(x.shape), big[:w.size].reshape(w.shape)))
    with pytest.raises(ValueError, match="reduction"):
        f(x, w, t, reduction="avg")


def test_empty_problems():
    rng = np.random.default_rng(20)
    x = rng.standard_normal((0, 3))
    w = rng.standard_normal((4, 3))
    loss, dx, dw = csoftmax.linear_cross_entropy_with_grad(x, w, np.zeros(0, int),
                                                           reduction="sum")
    assert loss == 0 and dx.shape == (0, 3) and not dw.any()
    x = rng.standard_normal((2, 0))
    w = np.zeros((4, 0))
    _check(x, w, np.array([1, 2]), None, {}, 1, dtype=np.float64, what="D=0")


def test_numpy_blas_makes_no_copy_of_the_transposed_views():
    """The three products as _linear issues them (W.T and its column blocks, g's column
    blocks transposed, row blocks of W) reach NumPy's BLAS without a copy: NumPy would
    make any such copy through its allocator, which tracemalloc sees."""
    rng = np.random.default_rng(22)
    m, d, v = 64, 96, 5000
    x = rng.standard_normal((m, d), dtype=np.float32)
    w = rng.standard_normal((v, d), dtype=np.float32)
    z = np.empty((m, v), np.float32)
    dx = np.empty((m, d), np.float32)
    dw = np.empty((1024, d), np.float32)
    calls = [lambda: np.matmul(x, w.T[:, 2048:4096], out=z[:, 2048:4096]),
             lambda: np.matmul(z[:, 1024:2048].T, x, out=dw),
             lambda: np.matmul(z[:, 0:4096], w[0:4096], out=dx)]
    for call in calls:
        call()                                 # warm (first-call allocations)
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024, peak          # a copy would be >= 370 KiB here


def test_concurrent_calls_from_python_threads():
    """Calls from several Python threads at once share nothing but the workers: each
    result equals the single call's to rounding (bit for bit is promised for calls from
    the main thread only: OpenBLAS 0.3.31 did not always honour a thread setting made
    from another thread, README), and the BLAS's own setting is back afterwards."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from concurrent.futures import ThreadPoolExecutor

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]

    before = blas_threads()
    rng = np.random.default_rng(23)
    x, w, b, t = _problem(rng, (96,), 64, 2500, np.float32)
    one = csoftmax.linear_cross_entropy_with_grad(x, w, t, bias=b, chunk_size=40)
    with ThreadPoolExecutor(4) as ex:
        res = list(ex.map(lambda _: csoftmax.linear_cross_entropy_with_grad(
            x, w, t, bias=b, chunk_size=40), range(8)))
    for r in res:
        for a, c in zip(r, one):
            np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-8)
    assert blas_threads() == before

"""csoftmax.dask on Dask's threaded scheduler and on a real distributed.LocalCluster of
worker processes (started and closed by a fixture; no process may outlive it).

Every function is compared with the one-piece csoftmax result (bit for bit when the
classes are in one chunk) and with the float64 reference, for class chunkings of 1, 2,
3 and uneven chunks, rows with NaN / +-inf / all -inf, chunks without a label, a row
block whose labels are all ignore_index, float32 and float64, split_every=2.

CSOFTMAX_TEST_CLUSTER=0 leaves out the process cluster (the sanitizer and emulator
runs of tools/ set it: their instrumented extension would be loaded in each worker).
"""
import logging
import multiprocessing
import os
import pickle

import numpy as np
import pytest

import csoftmax as cs
from csoftmax_testsupport import assert_close, load_reference

import dask
import dask.array as da
import csoftmax.dask as cd

ref = load_reference()

WITH_CLUSTER = os.environ.get("CSOFTMAX_TEST_CLUSTER", "1") != "0"
SCHEDULERS = ["threads"] + (["cluster"] if WITH_CLUSTER else [])
N, C = 70, 257
ROW_CHUNKS = (32, 32, 6)
CLASS_CHUNKS = {"1": (C,), "2": (128, 129), "3": (100, 100, 57), "uneven": (1, 200, 56)}


@pytest.fixture(scope="module")
def cluster():
    if not WITH_CLUSTER:
        yield None
        return
    from distributed import Client, LocalCluster
    before = set(p.pid for p in multiprocessing.active_children())
    lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(lc, set_as_default=False, timeout=60)
    try:
        yield client
    finally:
        client.close(timeout=30)
        lc.close(timeout=30)
        left = [p for p in multiprocessing.active_children() if p.pid not in before]
        for p in left:
            p.join(10)
        left = [p for p in left if p.is_alive()]
        assert not left, f"worker processes left behind: {left}"


def run(sched, cluster, *objs):
    if sched == "threads":
        return dask.compute(*objs, scheduler="threads")
    return tuple(cluster.compute(list(objs), sync=True))


def _problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((N, C)) * 4).astype(dtype)
    x[0, 150] = np.nan                # NaN in the second class chunk
    x[1, 5] = np.inf                  # +inf in the first
    x[2, :] = -np.inf                 # all -inf
    x[3, :120] = -np.inf              # a chunk of -inf, the rest finite
    x[4, 0] = np.inf
    x[4, C - 1] = np.nan              # NaN wins over +inf in another chunk
    lab = rng.integers(0, 100, N)     # no label in the classes >= 100 chunks
    lab[1] = 5
    lab[32:64] = -100                 # a whole row block ignored
    lab[5] = C - 1
    return x, lab


def _darr(x, lab, cchunks):
    return (da.from_array(x, chunks=(ROW_CHUNKS, cchunks)),
            da.from_array(lab, chunks=(ROW_CHUNKS,)))


def _eq_or_close(got, one, dtype, func, one_chunk):
    if one_chunk:
        assert np.array_equal(got, one, equal_nan=True), func
        return
    assert got.dtype == one.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(one), err_msg=func)
    fin = np.isfinite(one)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(one)], one[~fin & ~np.isnan(one)])
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got[fin], one[fin], rtol=rtol, atol=rtol * 10, err_msg=func)


@pytest.mark.parametrize("sched", SCHEDULERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunking", list(CLASS_CHUNKS))
def test_functions(sched, dtype, chunking, cluster):
    x, lab = _problem(dtype)
    X, L = _darr(x, lab, CLASS_CHUNKS[chunking])
    one_chunk = chunking == "1"
    rdt = np.dtype(dtype)
    lse, sm, lsm = run(sched, cluster, cd.logsumexp(X, split_every=2), cd.softmax(X),
                       cd.log_softmax(X, split_every=2))
    for got, f, name, kind in ((lse, cs.logsumexp, "logsumexp", "reduce"),
                               (sm, cs.softmax, "softmax", "elem"),
                               (lsm, cs.log_softmax, "log_softmax", "reduce")):
        one = f(x, axis=-1)
        _eq_or_close(got, one, dtype, name, one_chunk)
        assert_close(got, getattr(ref, name)(x, axis=-1), func=f"dask.{name}", dtype=rdt,
                     kind=kind)
    keep = ~np.isnan(x).any(1) & ~np.isinf(x).any(1)      # the loss of finite rows
    xf, lf = x[keep], lab[keep]
    Xf, Lf = (da.from_array(xf, chunks=(16, CLASS_CHUNKS[chunking])),
              da.from_array(lf, chunks=(16,)))
    for red in ("mean", "none"):
        loss, grad = run(sched, cluster,
                         *cd.cross_entropy_with_grad(Xf, Lf, reduction=red, split_every=2))
        l1, g1 = cs.cross_entropy_with_grad(xf, lf, reduction=red)
        rl, rg = ref.cross_entropy_with_grad(xf, lf, reduction=red)
        assert loss.dtype == rdt and grad.dtype == rdt and grad.shape == xf.shape
        if one_chunk:
            assert np.array_equal(grad, g1) and (red == "mean" or np.array_equal(loss, l1))
        assert_close(loss, rl, func="dask.cross_entropy", dtype=rdt, kind="reduce",
                     scale=1.0)
        assert_close(grad, rg, func="dask.cross_entropy_with_grad", dtype=rdt, kind="elem",
                     atol_factor=1.0 / len(lf) if red == "mean" else 1.0)
    # special rows: the per-sample loss and gradient as the one-piece function
    loss, grad = run(sched, cluster, *cd.cross_entropy_with_grad(X, L, reduction="none"))
    l1, g1 = cs.cross_entropy_with_grad(x, lab, reduction="none")
    _eq_or_close(loss, l1, dtype, "loss", one_chunk)
    _eq_or_close(grad, g1, dtype, "grad", one_chunk)


OPTIONS = [
    {"weight": True, "label_smoothing": 0.1},
    {"sample_weight": True, "z_loss": 1e-3, "reduction": "sum"},
    {"softcap": 5.0, "ignore_index": 7, "reduction": "mean"},
    {"weight": True, "sample_weight": True, "label_smoothing": 0.2, "z_loss": 1e-2,
     "softcap": 8.0, "grad_scale": 0.5},
    {"ignore_index": None, "reduction": "none", "grad_scale": 3.0},
]


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o))
@pytest.mark.parametrize("chunking", ["1", "3", "uneven"])
def test_options(opts, chunking):
    rng = np.random.default_rng(3)
    n, c = 80, 300
    x = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    lab = rng.integers(0, c, n)
    lab[::9] = 7
    cch = {"1": (c,), "3": (100, 100, 100), "uneven": (3, 250, 47)}[chunking]
    X = da.from_array(x, chunks=(25, cch))
    L = da.from_array(lab, chunks=(25,))
    kw = dict(opts)
    if kw.pop("weight", False):
        kw["weight"] = rng.random(c)
    sw = None
    if kw.pop("sample_weight", False):
        sw = rng.random(n)
        kw["sample_weight"] = sw
    gs = kw.pop("grad_scale", 1.0)
    dkw = dict(kw)
    if sw is not None:
        dkw["sample_weight"] = da.from_array(sw, chunks=(25,))
    loss, grad = dask.compute(*cd.cross_entropy_with_grad(X, L, grad_scale=gs, **dkw),
                              scheduler="threads")
    loss_only = cd.cross_entropy(X, L, **dkw).compute(scheduler="threads")
    one_l, one_g = cs.cross_entropy_with_grad(x, lab, grad_scale=gs, **kw)
    rl, rg = ref.cross_entropy_with_grad(x, lab, grad_scale=gs, **kw)
    assert np.array_equal(loss, loss_only)
    rdt = np.dtype(np.float32)
    red = kw.get("reduction", "mean")
    assert_close(loss, rl, func="dask.cross_entropy", dtype=rdt, kind="reduce", scale=1.0)
    assert_close(grad, rg, func="dask.cross_entropy_with_grad", dtype=rdt, kind="elem",
                 atol_factor=(1.0 / n if red == "mean" else 1.0) * max(gs, 1.0))
    if chunking == "1":
        assert np.array_equal(grad, one_g)
    np.testing.assert_allclose(loss, one_l, rtol=2e-6)


def test_nd_axis_and_float16():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 40, 5)).astype(np.float16)
    X = da.from_array(x, chunks=(4, (15, 25), 3))
    got = cd.softmax(X, axis=1).compute(scheduler="threads")
    assert got.dtype == np.float16 and got.shape == x.shape
    assert_close(got, ref.softmax(x, axis=1), func="dask.softmax", dtype=np.float16,
                 kind="elem")
    # the log-sum-exp and the loss come back as float32 (README: half precision),
    # split classes or not
    for Xc in (X, da.from_array(x, chunks=(4, 40, 3))):
        lse = cd.logsumexp(Xc, axis=1, keepdims=True).compute(scheduler="threads")
        assert lse.shape == (6, 1, 5) and lse.dtype == np.float32
        assert_close(lse, ref.logsumexp(x, axis=1, keepdims=True), func="dask.logsumexp",
                     dtype=np.float32, kind="reduce")
        lab = rng.integers(0, 40, (6, 5))
        L = da.from_array(lab, chunks=(4, 3))
        for red in ("mean", "none"):
            loss = cd.cross_entropy(Xc, L, axis=1, reduction=red).compute(scheduler="threads")
            assert loss.dtype == np.float32
            assert_close(loss, ref.cross_entropy(x, lab, axis=1, reduction=red),
                         func="dask.cross_entropy", dtype=np.float32, kind="reduce")


def test_one_dimensional_split_and_split_every_dict():
    x = np.arange(8.0)
    X = da.from_array(x, chunks=3)
    got = cd.logsumexp(X).compute(scheduler="threads")
    assert got.shape == () and np.isclose(got, cs.logsumexp(x))
    loss = cd.cross_entropy(X, np.int64(3)).compute(scheduler="threads")
    assert np.isclose(loss, cs.cross_entropy(x, 3))
    # split_every keyed by the caller's class axis (1 here), moved last inside
    rng = np.random.default_rng(9)
    y = rng.standard_normal((4, 60, 3))
    Y = da.from_array(y, chunks=(2, 10, 3))
    a = cd.logsumexp(Y, axis=1, split_every={1: 2})
    b = cd.logsumexp(Y, axis=1, split_every=2)
    assert len(a.dask) == len(b.dask)
    np.testing.assert_allclose(a.compute(scheduler="threads"), cs.logsumexp(y, axis=1),
                               rtol=1e-14)


def test_uint64_labels_with_huge_ignore_index():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((6, 12))
    big = np.uint64(2**64 - 1)
    lab = np.array([1, 2, big, 3, big, 0], dtype=np.uint64)
    want_l, want_g = cs.cross_entropy_with_grad(x, lab, ignore_index=2**64 - 1)
    for cch in (12, (5, 7)):
        X = da.from_array(x, chunks=(3, cch))
        L = da.from_array(lab, chunks=(3,))
        l, g = dask.compute(*cd.cross_entropy_with_grad(X, L, ignore_index=2**64 - 1),
                            scheduler="threads")
        np.testing.assert_allclose(l, want_l, rtol=1e-14)
        np.testing.assert_allclose(g, want_g, rtol=1e-13, atol=1e-17)


def test_labels_not_computed_while_building():
    calls = []

    def labels(block_id=None):
        calls.append(block_id)
        return np.zeros(4, np.int64)
    L = da.map_blocks(labels, chunks=((4, 4),), dtype=np.int64, meta=np.empty(0, np.int64))
    X = da.from_array(np.zeros((8, 10)), chunks=(4, 5))
    cd.cross_entropy(X, L)
    cd.cross_entropy_with_grad(X, L, sample_weight=da.ones((8,), chunks=4))
    assert calls == []


def test_distinct_inputs_distinct_graphs():
    """Graphs of inputs of one shape and chunking must not share keys."""
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((2, 8, 10))
    lab = np.arange(8) % 10
    for ch in (10, 5):
        A, B = (da.from_array(v, chunks=(4, ch)) for v in (a, b))
        ra, rb = (cd.cross_entropy_with_grad(V, lab, reduction="none") for V in (A, B))
        la, ga, lb, gb = dask.compute(*ra, *rb, scheduler="threads")
        np.testing.assert_allclose(la, cs.cross_entropy(a, lab, reduction="none"), rtol=1e-13)
        np.testing.assert_allclose(lb, cs.cross_entropy(b, lab, reduction="none"), rtol=1e-13)
        np.testing.assert_allclose(gb, cs.cross_entropy_with_grad(b, lab, reduction="none")[1],
                                   rtol=1e-13, atol=1e-17)
        assert cd.softmax(A).name != cd.softmax(B).name
        assert cd.logsumexp(A).name != cd.logsumexp(B).name


def test_lazy_nothing_computed():
    def boom(b):
        raise AssertionError("computed while building the graph")
    X = da.from_array(np.zeros((8, 10)), chunks=(4, 5)).map_blocks(boom, dtype=np.float64)
    L = da.zeros((8,), chunks=(4,), dtype=np.int64)
    r = [cd.logsumexp(X), cd.softmax(X), cd.log_softmax(X), cd.cross_entropy(X, L),
         *cd.cross_entropy_with_grad(X, L)]
    for a in r:
        assert isinstance(a, da.Array)
    assert r[0].chunks == ((4, 4),) and r[1].chunks == X.chunks and r[3].shape == ()
    assert r[5].chunks == X.chunks and r[5].dtype == np.float64


def test_bad_input():
    x = np.zeros((8, 10))
    X = da.from_array(x, chunks=(4, 5))
    with pytest.raises(TypeError, match="dask.array"):
        cd.logsumexp(x)
    with pytest.raises(TypeError, match="dask.array"):
        cd.cross_entropy(x, np.zeros(8, int))
    with pytest.raises(ValueError, match="chunks"):
        cd.cross_entropy(X, da.zeros((8,), chunks=(3,), dtype=int))
    with pytest.raises(ValueError, match="shape"):
        cd.cross_entropy(X, np.zeros(7, int))
    with pytest.raises(TypeError, match="probability"):
        cd.cross_entropy(X, da.from_array(np.full((8, 10), 0.1), chunks=(4, 5)))
    with pytest.raises(TypeError, match="axis"):
        cd.softmax(X, axis=(0, 1))
    with pytest.raises(ValueError, match="split_every"):
        cd.logsumexp(X, split_every=1)
    with pytest.raises(ValueError, match="weight"):
        cd.cross_entropy(X, da.zeros((8,), chunks=(4,), dtype=int), weight=np.ones(9))
    with pytest.raises(ValueError, match="label_smoothing"):
        cd.cross_entropy(X, da.zeros((8,), chunks=(4,), dtype=int), label_smoothing=2.0)
    # a bad label is found inside its block, at compute time, with its position
    lab = np.zeros(8, int)
    lab[6] = 10
    for cch in (10, 5):
        Xc = da.from_array(x, chunks=(4, cch))
        with pytest.raises(ValueError, match=r"out of range.*first row is at \(4,\)"):
            cd.cross_entropy(Xc, lab).compute(scheduler="threads")


def test_threads_per_task(monkeypatch):
    assert cd.threads_per_task() == 1
    monkeypatch.setenv("CSOFTMAX_DASK_THREADS", "2")
    assert cd.threads_per_task() == 2
    cd.set_threads_per_task(3)
    try:
        assert cd.threads_per_task() == 3
    finally:
        cd.set_threads_per_task(None)
    with pytest.raises(ValueError):
        cd.set_threads_per_task(0)
    monkeypatch.setenv("CSOFTMAX_DASK_THREADS", "abc")
    with pytest.raises(ValueError, match="CSOFTMAX_DASK_THREADS"):
        cd.threads_per_task()
    monkeypatch.delenv("CSOFTMAX_DASK_THREADS")
    # a task sets its own thread's count and restores it
    seen = []

    def probe(b):
        seen.append(cs._core.max_threads())
        return b
    prev = cs._core.max_threads()
    X = da.from_array(np.zeros((4, 10)), chunks=(2, 5))
    with cd._Limit(1):
        probe(None)
    assert seen == [1] and cs._core.max_threads() == prev
    cd.logsumexp(X).compute(scheduler="sync")
    assert cs._core.max_threads() == prev


def test_options_pickle():
    o = cd._Opts("cross_entropy", np.dtype(np.float32), np.dtype(np.float32), 5, np.ones(5),
                 -100, "mean", 0.1, 0.0, None, False)
    o2 = pickle.loads(pickle.dumps(o))
    assert o2.C == 5 and o2.eps == 0.1


def test_stub_matches_runtime():
    """csoftmax/dask.pyi: the same functions, parameter names, kinds and defaults."""
    import ast
    import inspect
    import pathlib
    stub = pathlib.Path(cd.__file__).with_suffix(".pyi")
    tree = ast.parse(stub.read_text())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert sorted(funcs) == sorted(cd.__all__)
    for name, fn in funcs.items():
        a = fn.args
        stub_params = [(p.arg, "pos") for p in a.args] + [(p.arg, "kw") for p in a.kwonlyargs]
        defaults = ([None] * (len(a.args) - len(a.defaults)) + list(a.defaults)
                    + list(a.kw_defaults))
        sig = inspect.signature(getattr(cd, name)).parameters.values()
        run = [(p.name, "kw" if p.kind == p.KEYWORD_ONLY else "pos") for p in sig]
        assert stub_params == run, name
        for d, p in zip(defaults, sig):
            if d is None:
                assert p.default is inspect.Parameter.empty, (name, p.name)
            else:
                assert ast.literal_eval(d) == p.default, (name, p.name)


def test_bad_label_position_from_every_task():
    """Whichever task reads a block's labels first reports the block's position:
    the threaded scheduler may run the "mean" denominator, the state, the loss or
    the gradient task first (an ASan run got the denominator's bare message)."""
    x = np.zeros((8, 10))
    lab = np.zeros(8, int)
    lab[6] = 10
    for cch in (10, 5):
        X = da.from_array(x, chunks=(4, cch))
        loss, grad = cd.cross_entropy_with_grad(X, lab)
        dsk = {**dict(loss.__dask_graph__()), **dict(grad.__dask_graph__())}
        seen = set()
        for key in dsk:                     # each task computed on its own
            name = str(key[0] if isinstance(key, tuple) else key)
            try:
                dask.get(dsk, key)
            except ValueError as e:
                assert "out of range" in str(e) and "first row is at (4,)" in str(e), (name, e)
                seen.add(name.rsplit("-", 1)[0])            # without the token
        assert {"csoftmax-den", "csoftmax-loss", "csoftmax-grad"} <= seen, seen

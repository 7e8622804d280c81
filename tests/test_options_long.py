"""Cross-entropy options on rows of several chunks (C > 4096), where the
kernels take paths that short rows do not: the soft-capped row kept in a
per-thread scratch row, the per-chunk weight sums of label smoothing computed
once per call, and long rows (C >= 2**16) split over the threads.  Every case is checked
against the float64 reference (csoftmax.reference), loss-only against
loss + gradient, in place and with strided rows, and 1 thread against 2
threads bit for bit.
"""
import numpy as np
import pytest

import csoftmax as cs
from csoftmax import reference as R

# (loss, gradient): float32 losses are formed in float64 from float32 sums;
# the gradient is compared absolutely, relative to its largest entry per row
# (README: entries within 2e-6 relative, so within 2e-6 of the row's largest)
TOL = {np.float64: (1e-12, 1e-13), np.float32: (2e-6, 2e-6)}

CONFIGS = {
    "cap": dict(softcap=30.0),
    # |z / c| >= 1 in a third of the entries: most vectors take tanh's exp branch
    # (with c = 0.5 nearly every entry saturates, where even the float64
    # reference's 1 - tanh^2 has no relative accuracy left)
    "cap-small": dict(softcap=3.0),
    "cap+smooth": dict(softcap=4.0, label_smoothing=0.2),
    "all": dict(softcap=30.0, weight="w", label_smoothing=0.1, z_loss=1e-3,
                sample_weight="s", return_lse=True),
    "smooth": dict(label_smoothing=0.3),
    "weight+smooth": dict(weight="w", label_smoothing=0.1, return_lse=True),
}


def _problem(dtype, n, c, soft, seed):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((n, c)) * 3).astype(dtype)
    if soft:
        t = rng.random((n, c)).astype(dtype)
        t /= t.sum(1, keepdims=True)
    else:
        t = rng.integers(0, c, n)
    return z, t, rng


def _opts(name, rng, n, c):
    kw = dict(CONFIGS[name])
    if kw.get("weight") == "w":
        kw["weight"] = rng.random(c) + 0.3
    if kw.get("sample_weight") == "s":
        kw["sample_weight"] = rng.random(n) + 0.5
    return kw


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _grad_err(g, rg):
    g, rg = np.asarray(g, np.float64), np.asarray(rg, np.float64)
    return float(np.max(np.abs(g - rg) / np.max(np.abs(rg), axis=-1, keepdims=True)))


def _split(res, kw):
    """(loss, grad, lse) from cross_entropy_with_grad's result."""
    if kw.get("return_lse"):
        return res
    return res[0], res[1], None


@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [4097, 9000])
def test_multichunk_rows_against_reference(c, dtype, name, soft):
    n = 6
    z, t, rng = _problem(dtype, n, c, soft, seed=c + len(name))
    kw = _opts(name, rng, n, c)
    ltol, gtol = TOL[dtype]
    for red in ("none", "mean"):
        got = _split(cs.cross_entropy_with_grad(z, t, reduction=red, **kw), kw)
        want = _split(R.cross_entropy_with_grad(z, t, reduction=red, **kw), kw)
        assert _rel(got[0], want[0]) <= ltol, (red, _rel(got[0], want[0]))
        assert _grad_err(got[1], want[1]) <= gtol, (red, _grad_err(got[1], want[1]))
        if kw.get("return_lse"):
            assert _rel(got[2], want[2]) <= ltol
        # the loss without the gradient takes other paths (no late sums)
        lo = cs.cross_entropy(z, t, reduction=red, **kw)
        lo = lo[0] if kw.get("return_lse") else lo
        assert _rel(lo, want[0]) <= ltol
        # in place, and into a strided gradient
        zi = z.copy()
        gi = _split(cs.cross_entropy_with_grad(zi, t, reduction=red, inplace=True, **kw), kw)
        np.testing.assert_array_equal(gi[0], got[0])
        np.testing.assert_array_equal(zi, got[1])
        big = np.zeros((n, 2 * c), dtype)
        out = big[:, ::2]
        cs.cross_entropy_with_grad(z, t, reduction=red, out=out, **kw)
        np.testing.assert_array_equal(out, got[1])
        assert not big[:, 1::2].any()


@pytest.mark.parametrize("name", ["cap", "all", "weight+smooth"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_class_axis_strided(dtype, name):
    """The class axis with a stride (axis=0 of a C-ordered array): the
    soft-capped values go through the scratch row from strided loads."""
    c, n = 5000, 3
    z, t, rng = _problem(dtype, n, c, False, seed=11)
    kw = _opts(name, rng, n, c)
    zt = np.ascontiguousarray(z.T)                    # (c, n), classes along axis 0
    got = _split(cs.cross_entropy_with_grad(zt, t, axis=0, reduction="none", **kw), kw)
    want = _split(cs.cross_entropy_with_grad(z, t, reduction="none", **kw), kw)
    ltol, gtol = TOL[dtype]
    assert _rel(got[0], want[0]) <= ltol
    assert _grad_err(got[1].T, want[1]) <= gtol


@pytest.mark.parametrize("name", ["cap", "all", "cap+smooth"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_bitwise(dtype, name):
    """Many rows (rows over threads, a scratch row per thread) and one long row
    (its chunks over the threads, one shared scratch row): 1 and 2 threads
    give the same bits, and the long row matches the reference."""
    old = cs.show_config()["max_threads"]
    cases = [(64, 5000), (1, 70001)]
    res = {}
    try:
        for nt in (1, 2):
            cs.set_num_threads(nt)
            for n, c in cases:
                z, t, rng = _problem(dtype, n, c, False, seed=n)
                kw = _opts(name, rng, n, c)
                out = _split(cs.cross_entropy_with_grad(z, t, reduction="none", **kw), kw)
                res[(nt, n)] = [np.asarray(a).tobytes() for a in out if a is not None]
                if n == 1:
                    want = _split(R.cross_entropy_with_grad(z, t, reduction="none", **kw), kw)
                    ltol, gtol = TOL[dtype]
                    assert _rel(out[0], want[0]) <= ltol
                    assert _grad_err(out[1], want[1]) <= gtol
    finally:
        cs.set_num_threads(old)
    for n, _ in cases:
        assert res[(1, n)] == res[(2, n)], f"{n} rows: 1 and 2 threads differ"

"""Typical uses of csoftmax, checked by ``mypy --strict tests/typing_usage.py``.

``assert_type`` makes mypy fail when the stub (csoftmax/__init__.pyi) gives
another type than the one written here; every call is also run by
tests/test_typing.py, so the file is valid, working code too.  (Not a test
module itself: pytest collects ``test_*.py`` only.)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

import csoftmax

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:
    def assert_type(value, _type):  # runtime no-op (typing.assert_type is 3.11+)
        return value


def main() -> None:
    rng = np.random.default_rng(0)
    x32: NDArray[np.float32] = rng.standard_normal((8, 5)).astype(np.float32)
    x64: NDArray[np.float64] = rng.standard_normal((8, 5))
    labels: NDArray[np.int64] = rng.integers(0, 5, size=8)

    # ------------------------------------------------------------------ logsumexp
    assert_type(csoftmax.logsumexp(x64), np.float64)          # axis=None: a scalar
    assert_type(csoftmax.logsumexp(x32), np.float32)
    r = csoftmax.logsumexp(x64, axis=1)
    assert_type(r, NDArray[np.float64] | np.float64)
    assert np.shape(r) == (8,)
    assert_type(csoftmax.logsumexp([1.0, 2.0]), np.floating[Any])
    val, sign = csoftmax.logsumexp([1.0, 2.0], b=[1, -1], return_sign=True)
    assert_type(val, np.floating[Any])
    assert_type(sign, np.floating[Any])
    assert float(sign) == -1.0
    res_arr, sgn_arr = csoftmax.logsumexp(x32, axis=-1, return_sign=True)
    assert_type(res_arr, NDArray[np.float32] | np.float32)
    out = np.empty(8)
    # out=: that very array (its static type, shape type included) is returned
    assert_type(csoftmax.logsumexp(x64, axis=1, out=out),
                np.ndarray[tuple[int], np.dtype[np.float64]])
    keep: NDArray[np.float64] = np.empty((8, 1))
    lse_k, _ = csoftmax.logsumexp(x64, 1, None, True, True, out=keep)
    assert_type(lse_k, NDArray[np.float64])
    assert lse_k is keep
    # complex input: complex results; with return_sign a real log|sum| and a unit sign
    zc = (x64 + 1j * x64).astype(np.complex128)
    assert_type(csoftmax.logsumexp(zc), np.complex128)
    zl = csoftmax.logsumexp(zc, axis=1)
    assert_type(zl, NDArray[np.complex128] | np.complex128)
    zr, zs = csoftmax.logsumexp(zc, axis=1, return_sign=True)
    assert_type(zs, NDArray[np.complex128] | np.complex128)
    assert np.allclose(np.abs(zs), 1.0)
    assert_type(csoftmax.softmax(zc, axis=1), NDArray[np.complex128])
    assert_type(csoftmax.log_softmax(zc, axis=1), NDArray[np.complex128])
    flag: bool = bool(rng.integers(2))
    assert_type(csoftmax.logsumexp(x64, return_sign=flag), Any)
    print(float(csoftmax.logsumexp(np.arange(10.0))))

    # ------------------------------------------------------------------ softmax
    p = csoftmax.softmax(x32, axis=1)
    assert_type(p, NDArray[np.float32])
    assert p.shape == (8, 5)
    assert_type(csoftmax.log_softmax(x64, axis=(0, 1)), NDArray[np.float64])
    assert_type(csoftmax.softmax([[1, 2], [3, 4]], axis=0), NDArray[np.floating[Any]])
    assert_type(csoftmax.softmax(np.float64(2.0)), np.float64)
    assert_type(csoftmax.log_softmax(3.0), np.floating[Any])
    same = csoftmax.softmax(x64, axis=1, out=x64)               # in place
    assert_type(same, NDArray[np.float64])
    assert same is x64
    vocab = np.arange(5) < 4                                     # where=: a class mask
    assert_type(csoftmax.softmax(x64, axis=1, where=vocab), NDArray[np.float64])

    # ------------------------------------------------------------------ cross_entropy
    z = rng.standard_normal((8, 5)).astype(np.float32)
    assert_type(csoftmax.cross_entropy(z, labels), np.float32)
    assert_type(csoftmax.cross_entropy(z, labels, reduction="sum"), np.float32)
    per = csoftmax.cross_entropy(z, labels, reduction="none")
    assert_type(per, NDArray[np.float32])
    assert per.shape == (8,)
    loss, lse = csoftmax.cross_entropy(z, labels, return_lse=True, label_smoothing=0.1)
    assert_type(loss, np.float32)
    assert_type(lse, NDArray[np.float32])
    per2, lse2 = csoftmax.cross_entropy(z, labels, reduction="none", return_lse=True)
    assert_type(per2, NDArray[np.float32])
    soft = csoftmax.softmax(rng.standard_normal((8, 5)), axis=1)
    assert_type(csoftmax.cross_entropy([[0.0, 1.0]], [1]), np.floating[Any])
    assert_type(csoftmax.cross_entropy(x64, soft, weight=np.ones(5), z_loss=1e-4),
                np.float64)
    red: str = "mean"
    assert red in ("mean", "sum", "none")
    # a plain str reduction: the union of the possible results
    anyres = csoftmax.cross_entropy(z, labels, reduction=red)  # type: ignore[call-overload]
    del anyres

    # ------------------------------------------------------------------ with grad
    l0, g0 = csoftmax.cross_entropy_with_grad(z, labels)
    assert_type(l0, np.float32)
    assert_type(g0, NDArray[np.float32])
    assert g0.shape == z.shape
    ln, gn = csoftmax.cross_entropy_with_grad(x64, labels, reduction="none",
                                              grad_scale=np.full(8, 0.5))
    assert_type(ln, NDArray[np.float64])
    l3, g3, lse3 = csoftmax.cross_entropy_with_grad(x64, labels, return_lse=True,
                                                    softcap=30.0, ignore_index=None)
    assert_type(l3, np.float64)
    assert_type(lse3, NDArray[np.float64])
    buf = np.empty_like(x64)
    _, gb = csoftmax.cross_entropy_with_grad(x64, labels, out=buf, sample_weight=np.ones(8))
    assert gb is buf
    zi = x64.copy()
    _, gi = csoftmax.cross_entropy_with_grad(zi, labels, inplace=True)
    assert gi is zi
    lw, gw = csoftmax.cross_entropy_with_grad(x64, labels % 4, where=np.arange(5) < 4)
    assert_type(gw, NDArray[np.float64])
    lg, gg = csoftmax.cross_entropy_with_grad([[0.0, 1.0, 2.0]], [2])
    assert_type(lg, np.floating[Any])
    assert_type(gg, NDArray[np.floating[Any]])

    # ------------------------------------------------------------------ linear + CE
    w32: NDArray[np.float32] = rng.standard_normal((7, 5)).astype(np.float32)
    feats: NDArray[np.float32] = x32
    l7 = csoftmax.linear_cross_entropy(feats, w32, labels % 7, chunk_size=3)
    assert_type(l7, np.float32)
    ll, dxl, dwl = csoftmax.linear_cross_entropy_with_grad(feats, w32, labels % 7)
    assert_type(ll, np.float32)
    assert_type(dwl, NDArray[np.float32])
    assert dxl.shape == feats.shape and dwl.shape == w32.shape
    lb, dxb, dwb, dbb = csoftmax.linear_cross_entropy_with_grad(
        feats, w32, labels % 7, bias=np.zeros(7, np.float32), reduction="none")
    assert_type(lb, NDArray[np.float32])
    assert_type(dbb, NDArray[np.float32])
    assert dbb.shape == (7,)

    # ------------------------------------------------------------------ class-slice states
    xs = np.zeros((4, 10), np.float32)
    st = csoftmax.partial_logsumexp(xs[:, :5])
    assert_type(st, NDArray[np.float64])
    assert_type(csoftmax.merge_logsumexp([st, csoftmax.partial_logsumexp(xs[:, 5:])]),
                NDArray[np.float64])
    sc = csoftmax.partial_cross_entropy(xs, labels[:4] % 10, num_classes=10)
    assert_type(csoftmax.merge_partials([sc]), NDArray[np.float64])
    assert_type(csoftmax.merge_cross_entropy([sc], labels[:4] % 10, num_classes=10),
                np.float64)
    assert_type(csoftmax.merge_cross_entropy([sc], labels[:4] % 10, num_classes=10,
                                             reduction="none"), NDArray[np.float64])

    # ------------------------------------------------------------------ config
    cfg = csoftmax.show_config()
    assert_type(cfg["isa"], str)
    assert_type(cfg["available"], list[str])
    assert_type(cfg["openmp"], bool)
    assert_type(cfg["max_threads"], int)
    assert isinstance(csoftmax.__version__, str)


if __name__ == "__main__":
    main()

"""``csoftmax`` / ``python -m csoftmax``: self-check against the reference, then a timing table.

``csoftmax``            self-check (exit status 1 on any failure) + table
``csoftmax check``      self-check only
``csoftmax bench ...``  the full benchmark (see ``--help``)

(``python -m csoftmax`` is the same from any directory but the source checkout,
where Python would import the uncompiled source package.)
"""
from __future__ import annotations

import sys

import numpy as np

import csoftmax
from csoftmax import reference

# Accuracy promised in the README (relative to the float64 reference, with an
# absolute floor for entries near zero): per compute dtype.
TOL = {np.float32: (1e-6, 1e-7), np.float64: (1e-13, 1e-300)}


def _err(got, ref, rtol, atol):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    # NaN where NaN, and infinities of the same sign where infinite
    same_special = np.array_equal(np.isnan(got), np.isnan(ref)) and np.array_equal(
        np.where(np.isinf(got), got, 0.0), np.where(np.isinf(ref), ref, 0.0))
    fin = np.isfinite(ref)
    if not fin.any():
        return 0.0, same_special
    e = np.abs(got[fin] - ref[fin]) / (np.abs(ref[fin]) * rtol + atol)
    return float(e.max()) * rtol, same_special and bool(np.all(e <= 1.0))


def self_check(out=sys.stdout) -> bool:
    rng = np.random.default_rng(20261128)
    ok_all = True
    print(f"csoftmax {csoftmax.__version__}: {csoftmax.show_config()}", file=out)
    print(f"{'check':44s} {'dtype':8s} {'max rel err':>12s}  result", file=out)
    for dtype in (np.float32, np.float64):
        rtol, atol = TOL[dtype]
        z = (4 * rng.standard_normal((64, 1000))).astype(dtype)
        z[3, 17] = np.nan
        z[5, :] = -np.inf
        z[7, 999] = np.inf
        z[9, 100:900] = -np.inf
        lab = rng.integers(0, 1000, 64)
        soft = rng.random((64, 1000)).astype(dtype)
        soft /= soft.sum(axis=1, keepdims=True)
        zk = (3 * rng.standard_normal((8, 10, 5, 3))).astype(dtype)
        labk = rng.integers(0, 10, (8, 5, 3))
        checks = [
            ("logsumexp(axis=-1), with nan/inf rows", csoftmax.logsumexp(z, axis=-1),
             reference.logsumexp(z, axis=-1)),
            ("logsumexp(axis=None)", csoftmax.logsumexp(zk), reference.logsumexp(zk)),
            ("softmax(axis=1)", csoftmax.softmax(zk, axis=1), reference.softmax(zk, axis=1)),
            ("log_softmax(axis=-1)", csoftmax.log_softmax(z, axis=-1),
             reference.log_softmax(z, axis=-1)),
        ]
        loss, g = csoftmax.cross_entropy_with_grad(z[10:], lab[10:], reduction="none")
        rl, rg = reference.cross_entropy_with_grad(z[10:], lab[10:], reduction="none")
        checks += [("cross_entropy loss, labels", loss, rl), ("cross_entropy grad, labels", g, rg)]
        loss, g = csoftmax.cross_entropy_with_grad(z[10:], soft[10:], reduction="mean")
        rl, rg = reference.cross_entropy_with_grad(z[10:], soft[10:], reduction="mean")
        checks += [("cross_entropy loss, soft targets", loss, rl),
                   ("cross_entropy grad, soft targets", g, rg)]
        loss, g = csoftmax.cross_entropy_with_grad(zk, labk, axis=1)
        rl, rg = reference.cross_entropy_with_grad(zk, labk, axis=1)
        checks += [("cross_entropy (N, C, d1, d2) axis=1 loss", loss, rl),
                   ("cross_entropy (N, C, d1, d2) axis=1 grad", g, rg)]
        # fused linear + cross-entropy, 5 chunks: its logits carry the rounding of a
        # D-term dot product, so its tolerance is D times the kernels' (name: "x D")
        xl = rng.standard_normal((72, 32)).astype(dtype)
        wl = (rng.standard_normal((500, 32)) / 6).astype(dtype)
        bl = rng.standard_normal(500).astype(dtype)
        ll = rng.integers(0, 500, 72)
        ll[::7] = -100
        got = csoftmax.linear_cross_entropy_with_grad(xl, wl, ll, bias=bl, chunk_size=16,
                                                      label_smoothing=0.1)
        exp = reference.linear_cross_entropy_with_grad(xl, wl, ll, bias=bl,
                                                       label_smoothing=0.1)
        checks += [(f"linear_cross_entropy {what} (x D)", g_, r_)
                   for what, g_, r_ in zip(("loss", "grad x", "grad W", "grad bias"), got, exp)]
        # class-slice states: the logits split into 3 slices, merged (with nan/inf rows)
        sl = [(0, 300), (300, 301), (301, 1000)]
        parts = [csoftmax.partial_logsumexp(z[:, a:b]) for a, b in sl]
        checks += [("merge_logsumexp of 3 slices, nan/inf rows",
                    csoftmax.merge_logsumexp(parts).astype(dtype),
                    reference.logsumexp(z, axis=-1))]
        parts = [csoftmax.partial_cross_entropy(z[10:, a:b], lab[10:], num_classes=1000,
                                                start=a, label_smoothing=0.1) for a, b in sl]
        checks += [("merge_cross_entropy of 3 slices",
                    np.asarray(csoftmax.merge_cross_entropy(
                        parts, lab[10:], num_classes=1000, label_smoothing=0.1,
                        reduction="none")).astype(dtype),
                    reference.cross_entropy(z[10:], lab[10:], label_smoothing=0.1,
                                            reduction="none"))]
        # the neighbouring losses and where= (csoftmax/_losses.py, the masks)
        zb, tb = z[10:20, :200], rng.random((10, 200)).astype(dtype)
        tb[:, ::5] = 1.0
        wb, pb = rng.random((10, 1)), 3 * rng.random(200)
        got = csoftmax.binary_cross_entropy_with_grad(zb, tb, weight=wb, pos_weight=pb,
                                                      reduction="none")
        exp = reference.binary_cross_entropy_with_grad(zb, tb, weight=wb, pos_weight=pb,
                                                       reduction="none")
        checks += [("binary_cross_entropy loss, weights", got[0], exp[0]),
                   ("binary_cross_entropy grad, weights", got[1], exp[1])]
        zt = (2 * rng.standard_normal((54, 1000))).astype(dtype)
        got = csoftmax.kl_div_with_grad(z[10:], zt, temperature=2.0, reduction="none")
        exp = reference.kl_div_with_grad(z[10:], zt, temperature=2.0, reduction="none")
        checks += [("kl_div T=2 loss per row", got[0], exp[0]),
                   ("kl_div T=2 grad", got[1], exp[1])]
        got = csoftmax.token_logprobs(z, lab, return_entropy=True)
        exp = reference.token_logprobs(z, lab, return_entropy=True)
        checks += [("token_logprobs, nan/inf rows", got[0], exp[0]),
                   ("token_logprobs entropy, nan/inf rows", got[1], exp[1])]
        keep = rng.random(zk.shape) < 0.7
        keep[0] = False                     # a fully masked sample: zeros, no NaN
        checks += [("softmax(axis=1, where=) with masked rows",
                    csoftmax.softmax(zk, axis=1, where=keep),
                    reference.softmax(zk, axis=1, where=keep))]
        for name, got, ref in checks:
            # gradients are differences (y - t): judge them against their scale
            tol = rtol * (32 if "(x D)" in name else 1)
            a = tol * float(np.nanmax(np.abs(ref))) if "grad" in name else atol
            e, ok = _err(got, ref, tol, a)
            ok_all &= ok
            print(f"{name:44s} {np.dtype(dtype).name:8s} {e:12.3e}  {'ok' if ok else 'FAIL'}",
                  file=out)
    print("self-check:", "PASSED" if ok_all else "FAILED", file=out)
    return ok_all


def main(argv: list[str]) -> int:
    if argv and argv[0] == "bench":
        from ._bench import bench_main
        return bench_main(argv[1:])
    if argv and argv[0] not in ("check",):
        print(__doc__)
        return 2
    ok = self_check()
    if not argv:
        from ._bench import main_table
        main_table()
    return 0 if ok else 1


def cli() -> int:
    """Entry point of the `csoftmax` command."""
    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``csoftmax bench --half``: float16 and bfloat16 against float32 and PyTorch.

Per shape, in one interleaved run (``_bench._median_ms``): csoftmax's
``cross_entropy_with_grad(out=)`` and ``logsumexp(axis=-1)`` on float32,
float16 and bfloat16 copies of the same logits, and PyTorch's
``F.cross_entropy(...).backward()`` on bfloat16 CPU tensors (a leaf over the
same bfloat16 memory).  The targets of issue 14 are judged from these figures
(PASS / MISS lines): a 16-bit call at most 0.65x the float32 time for C >= 1000
(half the bytes) and at most 1.0x for C < 1000; at least 3x faster than
PyTorch's bf16 loss + backward at 4096 x 32000 and 64 x 128256.  bfloat16 needs
ml_dtypes (and PyTorch for its column; without it the column is left out).
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

import csoftmax
from csoftmax._bench import (_copies, _cpu_isas, _cpu_name, _limit_threads, _median_ms,
                             _torch)

HALF_SHAPES = [(4096, 10), (65536, 10), (4096, 1000), (4096, 32000), (64, 128256)]
SMOKE_SHAPES = [(64, 10), (8, 1000)]
TORCH_TARGETS = {(4096, 32000), (64, 128256)}


def _bf16() -> Any:
    import ml_dtypes
    return np.dtype(ml_dtypes.bfloat16)


def _torch_bf16(torch: Any, zs: list[np.ndarray], lab: np.ndarray):
    """F.cross_entropy forward + backward on bfloat16 leaves over the arrays' memory."""
    tz = [torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) for a in zs]
    tl = torch.from_numpy(lab)
    F = torch.nn.functional
    k = len(tz)

    def xent(i: int) -> Any:
        t = tz[i % k].detach().requires_grad_(True)
        loss = F.cross_entropy(t, tl)
        loss.backward()
        return loss

    return xent


def run_half(shapes=None, threads=(1,), reps: int = 11, cold: bool = True,
             out=sys.stdout, smoke: bool = False) -> dict[str, list]:
    """The table per shape and the targets; returns {"rows": timings, "targets":
    verdicts} (``smoke``: tiny shapes, nothing judged)."""
    shapes = shapes or (SMOKE_SHAPES if smoke else HALF_SHAPES)
    torch = _torch()
    bf16 = _bf16()
    dts = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16), "bfloat16": bf16}
    rng = np.random.default_rng(14)
    rows: list[dict] = []
    cfg = csoftmax.show_config()
    print(f"csoftmax {csoftmax.__version__}  isa={cfg['isa']}  cold={cold}  reps={reps}",
          file=out)
    print(f"cpu: {_cpu_name()}; {_cpu_isas()}", file=out)
    if smoke:
        print("SMOKE run: tiny shapes, one round, warm data -- nothing is judged", file=out)
    verdicts: list[dict] = []
    for nthr in threads:
        with _limit_threads(nthr, torch):
            for (n, c) in shapes:
                z32 = (3 * rng.standard_normal((n, c))).astype(np.float32)
                lab = rng.integers(0, c, n)
                fns: dict[Any, Any] = {}
                for name, dt in dts.items():
                    zs = _copies(z32.astype(dt), cold)
                    g = np.empty(z32.shape, dt)
                    k = len(zs)
                    fns[("xent", name)] = (lambda i, zs=zs, g=g, k=k:
                                           csoftmax.cross_entropy_with_grad(zs[i % k], lab, out=g))
                    fns[("lse", name)] = (lambda i, zs=zs, k=k:
                                          csoftmax.logsumexp(zs[i % k], axis=-1))
                    if name == "bfloat16" and torch is not None:
                        fns[("torch", name)] = _torch_bf16(torch, zs, lab)
                del z32
                t = _median_ms(fns, reps)
                for (op, name), ms in t.items():
                    rows.append({"shape": [n, c], "threads": nthr, "op": op, "dtype": name,
                                 "ms": ms})
                verdicts += _print_block(n, c, nthr, cfg["isa"], t, out)
    print("\ntargets (issue 14):", file=out)
    for v in verdicts:
        v["judged"] = not smoke
        mark = ("PASS" if v["pass"] else "MISS") if not smoke else "(smoke)"
        print(f"  {mark:7s} {v['text']}", file=out)
    return {"rows": rows, "targets": verdicts}


def _print_block(n: int, c: int, nthr: int, isa: str, t: dict, out) -> list[dict]:
    print(f"\n{n}x{c} threads={nthr} isa={isa}", file=out)
    print(f"  {'function':28s} {'float32 ms':>10s} {'float16 ms (x f32)':>19s} "
          f"{'bfloat16 ms (x f32)':>20s}", file=out)
    names = {"xent": "cross_entropy_with_grad(out=)", "lse": "logsumexp(axis=-1)"}
    verdicts = []
    lim = 0.65 if c >= 1000 else 1.0
    for op, label in names.items():
        f32 = t[(op, "float32")]
        cells = []
        for name in ("float16", "bfloat16"):
            ms = t[(op, name)]
            r = ms / f32
            cells.append(f"{ms:9.3f} ({r:5.2f}x)")
            verdicts.append({"shape": [n, c], "threads": nthr, "function": label,
                             "dtype": name, "ratio": r, "limit": lim, "pass": r <= lim,
                             "text": f"{label:29s} {name:8s} {n}x{c} thr={nthr}: "
                                     f"{r:.2f}x the float32 time (target <= {lim}x)"})
        print(f"  {label:28s} {f32:10.3f} {cells[0]:>19s} {cells[1]:>20s}", file=out)
    if ("torch", "bfloat16") in t:
        tt, cs = t[("torch", "bfloat16")], t[("xent", "bfloat16")]
        print(f"  torch bf16 F.cross_entropy fwd+bwd {tt:.3f} ms = {tt / cs:.2f}x csoftmax's "
              f"bfloat16 time", file=out)
        if (n, c) in TORCH_TARGETS:
            verdicts.append({"shape": [n, c], "threads": nthr, "function": "torch bf16",
                             "dtype": "bfloat16", "ratio": tt / cs, "limit": 3.0,
                             "pass": tt / cs >= 3.0,
                             "text": f"torch bf16 fwd+bwd / csoftmax bf16  {n}x{c} "
                                     f"thr={nthr}: {tt / cs:.2f}x (target >= 3x)"})
    return verdicts


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="bench_half", description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default=None, help="NxC list (default: %s)" % ",".join(
        f"{n}x{c}" for n, c in HALF_SHAPES))
    p.add_argument("--threads", default="1", help="comma-separated thread counts")
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 11)")
    p.add_argument("--warm", action="store_true", help="no rotation of input copies")
    p.add_argument("--smoke", action="store_true", help="tiny shapes, one round (a test runs it)")
    p.add_argument("--json", default=None, help="write the raw rows and targets here")
    a = p.parse_args(argv)
    shapes = None
    if a.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
    from csoftmax._bench import _config, _write_json
    res = run_half(shapes=shapes, threads=tuple(int(t) for t in a.threads.split(",")),
                   reps=1 if a.smoke else (a.reps or 11), cold=not (a.warm or a.smoke),
                   smoke=a.smoke)
    if a.json:
        _write_json(a.json, {"config": _config(), "cold": not (a.warm or a.smoke),
                             "half": res})
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))

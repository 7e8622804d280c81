"""Benchmark harness shared by ``python -m csoftmax [bench]`` and ``benchmarks/``.

Timing rules (the machine is shared and noisy): every figure is the median of
repeated calls; competitors are timed side by side in one process, interleaved
round-robin so drift hits all of them alike; "cold" runs rotate over enough
input copies (>= 96 MiB in total) that each call reads from DRAM, not cache.
Floors measured in the same run: ``copy`` = ``np.copyto`` over the logits-sized
buffers, ``read`` = ``np.max`` over the flattened logits.
"""
from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time
from typing import Callable

import numpy as np

import csoftmax
from csoftmax import reference

COLD_BYTES = 96 << 20


def _median_ms(fns: dict[str, Callable[[int], object]], reps: int, min_time: float = 0.0):
    """Interleaved medians (ms) for several callables taking a rotation index."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():          # warm-up (first-touch of outputs, JIT of peers)
        f(0)
    t_start = time.perf_counter()
    i = 0
    gc.disable()
    try:
        while i < reps or (time.perf_counter() - t_start) < min_time:
            for k, f in fns.items():
                t0 = time.perf_counter()
                f(i + 1)
                times[k].append(time.perf_counter() - t0)
            i += 1
            if i >= 10 * reps:
                break
    finally:
        gc.enable()
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def _copies(x: np.ndarray, cold: bool) -> list[np.ndarray]:
    n = 1 if not cold else max(1, -(-COLD_BYTES // max(x.nbytes, 1)))
    return [x] + [x.copy() for _ in range(n - 1)]


# ----------------------------------------------------------------------------- peers

def numpy_xent_with_grad(z: np.ndarray, labels: np.ndarray):
    """The hand-rolled NumPy loss + gradient a user would write (input dtype)."""
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    lse = np.log(s) + m
    n = z.shape[0]
    loss = (lse[:, 0] - z[np.arange(n), labels]).mean()
    g = e / s
    g[np.arange(n), labels] -= 1
    g /= n
    return loss, g


def numpy_logsumexp(z: np.ndarray):
    m = z.max(axis=1, keepdims=True)
    return np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]


def _torch():
    try:
        import torch  # noqa: F401
        return torch
    except Exception:
        return None


def _scipy_special():
    try:
        import scipy.special as ss
        return ss
    except Exception:
        return None


# ----------------------------------------------------------------------------- main job table

def main_table(shape=(4096, 1000), reps: int = 15, out=sys.stdout) -> list[dict]:
    """The small table of ``python -m csoftmax``: C path vs the NumPy reference."""
    rng = np.random.default_rng(0)
    rows = []
    for dtype in (np.float32, np.float64):
        z = (3 * rng.standard_normal(shape)).astype(dtype)
        lab = rng.integers(0, shape[1], shape[0])
        g = np.empty_like(z)
        cases = {
            "logsumexp(axis=-1)": {
                "csoftmax": lambda i: csoftmax.logsumexp(z, axis=-1),
                "numpy idiom": lambda i: numpy_logsumexp(z),
                "reference (f64)": lambda i: reference.logsumexp(z, axis=-1),
            },
            "softmax(axis=-1)": {
                "csoftmax": lambda i: csoftmax.softmax(z, axis=-1),
                "reference (f64)": lambda i: reference.softmax(z, axis=-1),
            },
            "cross_entropy_with_grad(out=)": {
                "csoftmax": lambda i: csoftmax.cross_entropy_with_grad(z, lab, out=g),
                "numpy idiom": lambda i: numpy_xent_with_grad(z, lab),
                "reference (f64)": lambda i: reference.cross_entropy_with_grad(z, lab),
            },
        }
        for op, fns in cases.items():
            t = _median_ms(fns, reps)
            base = t["csoftmax"]
            for k, v in t.items():
                rows.append({"op": op, "dtype": np.dtype(dtype).name, "impl": k,
                             "ms": v, "ratio": v / base})
    w = max(len(r["op"]) for r in rows)
    print(f"\nTiming on {shape[0]}x{shape[1]} (median of {reps}, ms; ratio = time / csoftmax)",
          file=out)
    print(f"{'operation':{w}s}  {'dtype':8s} {'implementation':16s} {'ms':>9s} {'ratio':>7s}",
          file=out)
    for r in rows:
        print(f"{r['op']:{w}s}  {r['dtype']:8s} {r['impl']:16s} {r['ms']:9.3f} {r['ratio']:7.2f}",
              file=out)
    return rows


# ----------------------------------------------------------------------------- full benchmark

BENCH_SHAPES = [(4096, 1000), (512, 32768), (64, 128256), (65536, 10), (1, 1000000)]


def run_bench(shapes=None, dtypes=("float32", "float64"), threads=(1,), reps: int = 11,
              cold: bool = True, json_path: str | None = None, out=sys.stdout) -> list[dict]:
    """Peers and floors, side by side per shape; returns the raw rows."""
    shapes = shapes or BENCH_SHAPES
    torch = _torch()
    ss = _scipy_special()
    rng = np.random.default_rng(1)
    rows: list[dict] = []
    print(f"csoftmax {csoftmax.__version__}  isa={csoftmax.show_config()['isa']}  "
          f"cold={cold}  reps={reps}", file=out)
    try:
        from threadpoolctl import threadpool_limits
    except Exception:
        threadpool_limits = None
    from csoftmax import _core
    for nthr in threads:
        # threadpoolctl limits NumPy's BLAS and every OpenMP runtime it finds;
        # csoftmax's own limit is set directly as well (works without it)
        ctx = threadpool_limits(limits=nthr) if threadpool_limits else None
        _core.set_num_threads(nthr)
        if torch is not None:
            torch.set_num_threads(nthr)
        try:
            if ctx is not None:
                ctx.__enter__()
            for dt in dtypes:
                for (n, c) in shapes:
                    z0 = (3 * rng.standard_normal((n, c))).astype(dt)
                    zs = _copies(z0, cold)
                    lab = rng.integers(0, c, n)
                    g = np.empty_like(z0)
                    dst = np.empty_like(z0)
                    k = len(zs)
                    fns = {
                        "copy floor": lambda i: np.copyto(dst, zs[i % k]),
                        "read floor": lambda i: np.max(zs[i % k]),
                        "csoftmax xent+grad": lambda i: csoftmax.cross_entropy_with_grad(
                            zs[i % k], lab, out=g),
                        "csoftmax logsumexp": lambda i: csoftmax.logsumexp(zs[i % k], axis=-1),
                        "numpy xent+grad": lambda i: numpy_xent_with_grad(zs[i % k], lab),
                    }
                    if ss is not None:
                        fns["scipy logsumexp"] = lambda i: ss.logsumexp(zs[i % k], axis=-1)
                    if torch is not None:
                        tz = [torch.from_numpy(a) for a in zs]
                        tl = torch.from_numpy(lab)
                        F = torch.nn.functional

                        def torch_xent(i):
                            t = tz[i % k].detach().requires_grad_(True)
                            loss = F.cross_entropy(t, tl)
                            loss.backward()
                            return loss

                        fns["torch xent fwd+bwd"] = torch_xent
                        fns["torch logsumexp"] = lambda i: torch.logsumexp(tz[i % k], dim=-1)
                    t = _median_ms(fns, reps)
                    for impl, ms in t.items():
                        rows.append({"shape": [n, c], "dtype": dt, "threads": nthr,
                                     "impl": impl, "ms": ms})
                    _print_block(n, c, dt, nthr, t, out)
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
    _core.set_num_threads(os.cpu_count() or 1)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"config": csoftmax.show_config(), "cold": cold, "rows": rows}, f, indent=1)
    return rows


def _print_block(n, c, dt, nthr, t, out):
    cp, rd = t["copy floor"], t["read floor"]
    print(f"\n{n}x{c} {dt} threads={nthr}", file=out)
    print(f"  {'implementation':22s} {'ms':>9s} {'x copy':>7s} {'x read':>7s} {'vs csoftmax':>11s}",
          file=out)
    for impl, ms in t.items():
        ref = t["csoftmax logsumexp"] if "logsumexp" in impl else t["csoftmax xent+grad"]
        rel = "" if "floor" in impl else f"{ms / ref:11.2f}"
        print(f"  {impl:22s} {ms:9.3f} {ms / cp:7.2f} {ms / rd:7.2f} {rel}", file=out)


def bench_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="csoftmax bench",
                                description="csoftmax against peers and memory floors")
    p.add_argument("--shapes", default=None,
                   help="comma-separated NxC list, e.g. 4096x1000,65536x10 (default: the issue's five)")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--threads", default="1", help="comma-separated thread counts, e.g. 1,2")
    p.add_argument("--reps", type=int, default=11)
    p.add_argument("--warm", action="store_true", help="reuse one input (cache-warm) instead of rotating")
    p.add_argument("--json", default=None, help="write raw rows to this path")
    a = p.parse_args(argv)
    shapes = None
    if a.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
    run_bench(shapes=shapes, dtypes=tuple(a.dtypes.split(",")),
              threads=tuple(int(t) for t in a.threads.split(",")), reps=a.reps,
              cold=not a.warm, json_path=a.json)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(bench_main(sys.argv[1:]))

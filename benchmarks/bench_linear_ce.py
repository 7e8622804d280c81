"""Fused linear + cross-entropy: time and peak memory, each variant in its own process.

    python benchmarks/bench_linear_ce.py                 # both shapes, 1 and 2 threads
    python benchmarks/bench_linear_ce.py --avx2          # peers and csoftmax capped to AVX2
    python benchmarks/bench_linear_ce.py --smoke         # tiny shapes, 1 rep (a test runs this)

Variants (float32, forward + backward, the gradients of x and W):
  gemms        the three bare products with NumPy's BLAS: z = x @ W.T, z @ W, z.T @ x
  csoftmax     csoftmax.linear_cross_entropy_with_grad (numpy arrays)
  cs-1chunk    the same with chunk_size=N: all logits at once (what chunking costs)
  cs-torch     csoftmax.torch.linear_cross_entropy(...).backward()
  torch        PyTorch: F.cross_entropy(F.linear(x, W), t).backward()
  torch-chunk  PyTorch: F.linear_cross_entropy(..., options=LinearCrossEntropyOptions())
each with and without label smoothing (0.1); csoftmax also with smoothing, z-loss
and soft-capping together ("all").  Time: median over --rounds fresh processes per
variant (rounds interleave the variants) of --reps calls each after one warm-up.
Memory: peak RSS (VmHWM, reset once the inputs are made and the libraries
imported) minus the resident size at that point, i.e. what the calls add (largest
over the rounds).  Threads: the process is
pinned to the first `threads` CPUs and every pool (OpenMP, OpenBLAS, MKL, torch) is
set to that many threads.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SHAPES = {"1024x512x32000": (1024, 512, 32000), "256x512x128256": (256, 512, 128256)}
SMOKE_SHAPES = {"64x16x300": (64, 16, 300)}
VARIANTS = ["gemms", "csoftmax", "cs-1chunk", "cs-torch", "torch", "torch-chunk"]


def _peak_mib() -> float:
    """Peak resident size (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> None:
    """Start the peak afresh (Linux: clear_refs 5), so that neither the parent's
    image inherited through fork nor transient import-time memory counts."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2.0**20


def worker(variant: str, shape: tuple[int, int, int], smoothing: str, reps: int) -> dict:
    import numpy as np
    n, d, v = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((v, d), dtype=np.float32)
    w *= np.float32(0.05)                      # (in place: no transient copy of W)
    t = rng.integers(0, v, n)
    opts = {"off": {}, "on": {"label_smoothing": 0.1},
            "all": {"label_smoothing": 0.1, "z_loss": 1e-4, "softcap": 30.0}}[smoothing]
    if variant == "gemms":
        def run():
            z = x @ w.T
            z @ w
            z.T @ x
    elif variant in ("csoftmax", "cs-1chunk"):
        import csoftmax
        if variant == "cs-1chunk":            # all rows in one chunk: no chunking cost
            opts = dict(opts, chunk_size=n)

        def run():
            csoftmax.linear_cross_entropy_with_grad(x, w, t, **opts)
    else:
        import warnings

        import torch
        import torch.nn.functional as F
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        xt = torch.from_numpy(x).requires_grad_()
        wt = torch.from_numpy(w).requires_grad_()
        tt = torch.from_numpy(t)
        warnings.simplefilter("ignore")        # the chunked path's smoothing fallback warns
        if variant == "cs-torch":
            import csoftmax.torch as cst

            def loss():
                return cst.linear_cross_entropy(xt, wt, tt, **opts)
        elif variant == "torch":
            def loss():
                return F.cross_entropy(F.linear(xt, wt), tt, **opts)
        else:
            o = torch.nn.LinearCrossEntropyOptions()

            def loss():
                return F.linear_cross_entropy(xt, wt, tt, options=o, **opts)

        def run():
            xt.grad = None
            wt.grad = None
            loss().backward()
    base = _rss_mib()           # what is resident now: inputs, libraries
    _reset_peak()
    run()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    try:
        from threadpoolctl import threadpool_info
        arch = ",".join(str(i.get("architecture")) for i in threadpool_info()
                        if i["user_api"] == "blas")
    except ImportError:
        arch = "?"
    return {"time": statistics.median(times), "times": times,
            "peak_extra_mib": _peak_mib() - base, "blas_arch": arch}


def _isa_env(avx2: bool) -> dict[str, str]:
    if not avx2:
        return {}
    return {"CSOFTMAX_ISA": "avx2", "OPENBLAS_CORETYPE": "Haswell",
            "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def run_rounds(variant, shape_name, shape, smoothing, threads, reps, avx2, rounds, into):
    """One more round of a variant (a fresh process) merged into `into`."""
    r = run_one(variant, shape_name, shape, smoothing, threads, reps, avx2)
    if "error" in r or "error" in into:
        into.clear()
        into.update(r if "error" in r else into)
        return
    into.setdefault("times", []).extend(r["times"])
    into["time"] = statistics.median(into["times"])
    into["peak_extra_mib"] = max(into.get("peak_extra_mib", 0.0), r["peak_extra_mib"])
    into["rounds"] = into.get("rounds", 0) + 1
    into["blas_arch"] = r.get("blas_arch")


def run_one(variant, shape_name, shape, smoothing, threads, reps, avx2):
    env = dict(os.environ)
    env.update(_isa_env(avx2))
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", variant,
           "--worker-shape", ",".join(map(str, shape)), "--worker-smoothing", smoothing,
           "--reps", str(reps)]
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def header(avx2: bool) -> str:
    import numpy as np
    from csoftmax._bench import _cpu_name       # the name every csoftmax table prints
    lines = [f"CPU: {_cpu_name()}  ({os.cpu_count()} CPUs)"]
    try:
        import csoftmax
        env = _isa_env(avx2)
        isa = env.get("CSOFTMAX_ISA", csoftmax.show_config()["isa"])
        lines.append(f"csoftmax {csoftmax.__version__}: ISA {isa}")
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info
        blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})"
                for i in threadpool_info() if i["user_api"] == "blas"]
        lines.append(f"NumPy {np.__version__} BLAS: {', '.join(blas)}"
                     + ("  [OPENBLAS_CORETYPE=Haswell]" if avx2 else ""))
    except ImportError:
        pass
    try:
        import torch
        lines.append(f"torch {torch.__version__}: {torch.backends.cpu.get_cpu_capability()}"
                     + ("  [ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2]"
                        if avx2 else ""))
    except ImportError:
        lines.append("torch: not installed (its rows are skipped)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=2, help="timed calls per process")
    ap.add_argument("--rounds", type=int, default=3, help="processes per variant")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--avx2", action="store_true", help="cap every library to AVX2")
    ap.add_argument("--smoke", action="store_true", help="tiny shape, 1 rep")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--worker")
    ap.add_argument("--worker-shape")
    ap.add_argument("--worker-smoothing")
    a = ap.parse_args(argv)
    if a.worker:
        shape = tuple(int(s) for s in a.worker_shape.split(","))
        print(json.dumps(worker(a.worker, shape, a.worker_smoothing, a.reps)))
        return 0
    shapes = SMOKE_SHAPES if a.smoke else {k: SHAPES[k] for k in a.shapes.split(",")}
    reps = 1 if a.smoke else a.reps
    threads = [int(s) for s in a.threads.split(",")]
    threads = [k for k in threads if k <= len(os.sched_getaffinity(0))]
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    variants = [v for v in a.variants.split(",")
                if have_torch or v in ("gemms", "csoftmax", "cs-1chunk")]
    print(header(a.avx2), flush=True)
    results = []
    failed = False
    for sname, shape in shapes.items():
        for k in threads:
            rows = {}
            cases = [(var, sm) for var in variants
                     for sm in (("off", "on", "all") if var == "csoftmax" else
                                ("off",) if var in ("gemms", "cs-1chunk") else ("off", "on"))]
            # rounds interleave the variants, so that a slow phase of a shared
            # machine hits all of them alike; each round is a fresh process
            for _ in range(1 if a.smoke else a.rounds):
                for case in cases:
                    run_rounds(case[0], sname, shape, case[1], k, reps, a.avx2, a.rounds,
                               rows.setdefault(case, {}))
            for (var, sm), r in rows.items():
                results.append(dict(shape=sname, threads=k, variant=var, smoothing=sm, **r))
                failed |= "error" in r
            n, d, v = shape
            mib = 2.0**20
            floor = (n * d + v * d + min(n, max(1, 64 * 2**20 // (v * 4))) * v) * 4 / mib
            archs = sorted({str(r.get("blas_arch")) for r in rows.values() if "time" in r})
            print(f"\n{sname} (N x D x V), float32, {k} thread(s); csoftmax's memory floor "
                  f"dx + dW + one chunk of logits = {floor:.0f} MiB; OpenBLAS kernels in the "
                  f"workers: {', '.join(archs)}")
            print(f"{'variant':12s} {'smooth':6s} {'time':>9s} {'x gemms':>8s} "
                  f"{'torch/cs':>9s} {'chunk/cs':>9s} {'extra MiB':>10s}")
            g = rows.get(("gemms", "off"), {}).get("time")
            for (var, sm), r in rows.items():
                if "error" in r:
                    print(f"{var:12s} {sm:6s} ERROR {r['error']}")
                    continue
                sm_t = "on" if sm == "all" else sm
                tt = rows.get(("torch", sm_t), {}).get("time")
                tc = rows.get(("torch-chunk", sm_t), {}).get("time")
                cs = var in ("csoftmax", "cs-torch", "cs-1chunk")
                ratio = lambda p: f"{p / r['time']:9.2f}" if (p and cs) else f"{'':9s}"  # noqa: E731
                print(f"{var:12s} {sm:6s} {r['time'] * 1e3:7.0f}ms "
                      f"{(r['time'] / g if g else float('nan')):8.2f} {ratio(tt)} {ratio(tc)} "
                      f"{r['peak_extra_mib']:10.0f}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"header": header(a.avx2), "results": results}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-call overhead on tiny problems (issue 4's target: <= 3 us per call).

    python benchmarks/bench_overhead.py [--calls 20000]

logsumexp of a (1, 10) array and cross_entropy_with_grad of a (4, 10) array
with integer labels, float32 and float64, next to scipy.special.logsumexp
and PyTorch (torch.logsumexp; F.cross_entropy forward + backward) when they
are installed.  Each figure is the median over rounds of the mean time of a
batch of calls; the implementations are interleaved round by round.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import csoftmax as cs


def _cases(dtype):
    rng = np.random.default_rng(0)
    z1 = rng.standard_normal((1, 10)).astype(dtype)
    z4 = rng.standard_normal((4, 10)).astype(dtype)
    lab = rng.integers(0, 10, 4)
    g = np.empty_like(z4)
    lse = {"csoftmax": lambda: cs.logsumexp(z1, axis=-1)}
    xent = {"csoftmax": lambda: cs.cross_entropy_with_grad(z4, lab),
            "csoftmax out=": lambda: cs.cross_entropy_with_grad(z4, lab, out=g)}
    try:
        import scipy.special as ss
        lse["scipy"] = lambda: ss.logsumexp(z1, axis=-1)
    except ImportError:
        pass
    try:
        import torch
        import torch.nn.functional as F
        t1 = torch.from_numpy(z1)
        t4 = torch.from_numpy(z4)
        tl = torch.from_numpy(lab)
        lse["torch"] = lambda: torch.logsumexp(t1, dim=-1)

        def torch_xent():
            x = t4.detach().requires_grad_(True)
            F.cross_entropy(x, tl).backward()
            return x.grad
        xent["torch fwd+bwd"] = torch_xent
    except ImportError:
        pass
    return {"logsumexp (1, 10)": lse, "cross_entropy_with_grad (4, 10)": xent}


def measure(fns, calls, rounds=15):
    per = max(1, calls // rounds)
    times = {k: [] for k in fns}
    for f in fns.values():
        for _ in range(200):
            f()
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(per):
                f()
            times[k].append((time.perf_counter() - t0) / per)
    return {k: 1e6 * statistics.median(v) for k, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=20000, help="calls per implementation")
    a = p.parse_args(argv)
    cs.set_num_threads(1)
    print(f"per-call time in microseconds (median over rounds), isa={cs.show_config()['isa']}")
    for dtype in (np.float32, np.float64):
        for op, fns in _cases(dtype).items():
            t = measure(fns, a.calls)
            base = t["csoftmax"]
            cells = "  ".join(f"{k} {v:7.2f} us ({v / base:5.1f}x)" for k, v in t.items())
            print(f"{np.dtype(dtype).name:8s} {op:32s} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

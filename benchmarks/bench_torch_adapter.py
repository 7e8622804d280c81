"""csoftmax.torch.cross_entropy against torch.nn.functional.cross_entropy:
one forward + backward step (issue 5's figure).

    python benchmarks/bench_torch_adapter.py [N C] [--threads T]

Default (4096, 32000) float32 logits, a leaf tensor that requires grad,
integer targets, reduction "mean", one thread for both libraries.  Medians
over two rounds of blocks of steps per library; each step allocates its
gradient (as a training step does) and frees the previous one.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import csoftmax
import csoftmax.torch as cst


def step(fn, z, t):
    x = z.detach().requires_grad_(True)
    loss = fn(x, t)
    loss.backward()
    return loss, x.grad


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shape", nargs="*", type=int, default=[4096, 32000])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args(argv)
    n, c = a.shape
    torch.set_num_threads(a.threads)
    csoftmax.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    z = torch.from_numpy((3 * rng.standard_normal((n, c))).astype(np.float32))
    t = torch.from_numpy(rng.integers(0, c, n))
    fns = {"F.cross_entropy": F.cross_entropy, "csoftmax.torch.cross_entropy": cst.cross_entropy}
    # same answer first
    (l1, g1), (l2, g2) = (step(f, z, t) for f in fns.values())
    print(f"({n}, {c}) float32, {a.threads} thread(s), isa={csoftmax.show_config()['isa']}; "
          f"|loss diff| {abs(l1.item() - l2.item()):.2e}, "
          f"max |grad diff| {float((g1 - g2).abs().max()):.2e}")
    # blocks of steps per implementation (two rounds), not one-by-one
    # interleaving: a 500 MB gradient is freshly allocated by each step, and
    # right after the other library's step the page faults of that allocation
    # cost several times more here (the first-touch cost of this VM's memory)
    times = {k: [] for k in fns}
    for _ in range(2):
        for k, f in fns.items():
            step(f, z, t)
            for _ in range(a.reps):
                t0 = time.perf_counter()
                step(f, z, t)
                times[k].append(time.perf_counter() - t0)
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    base = med["csoftmax.torch.cross_entropy"]
    for k, v in med.items():
        print(f"  {k:30s} {v:9.2f} ms  {v / base:5.2f}x csoftmax")
    return 0


if __name__ == "__main__":
    sys.exit(main())

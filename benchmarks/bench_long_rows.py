"""One long row split over threads (issue 4): 1 vs 2 threads, nothing else running.

    python benchmarks/bench_long_rows.py [C] [--calls 200]

logsumexp and cross_entropy_with_grad(out=) of one (1, C) row (default
C = 10**6), float32 and float64: medians of repeated calls (the row is
cache-warm after the first call: this measures the split, not DRAM), and a
check that 1 and 2 threads give the same bits.  Peers are not run here: an
other OpenMP runtime's spinning threads would take the second core.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import csoftmax


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("c", nargs="?", type=int, default=10**6)
    p.add_argument("--calls", type=int, default=200)
    a = p.parse_args(argv)
    print(f"one row of {a.c} classes, isa={csoftmax.show_config()['isa']}; median ms per call")
    for dtype in (np.float32, np.float64):
        z = np.random.default_rng(0).standard_normal((1, a.c)).astype(dtype)
        lab = np.array([a.c // 3])
        g = np.empty_like(z)
        fns = {"logsumexp": lambda: csoftmax.logsumexp(z, axis=-1),
               "cross_entropy_with_grad": lambda: csoftmax.cross_entropy_with_grad(z, lab, out=g)}
        res = {}
        for name, f in fns.items():
            line = []
            for nt in (1, 2):
                csoftmax.set_num_threads(nt)
                f()
                ts = []
                for _ in range(a.calls):
                    t0 = time.perf_counter()
                    r = f()
                    ts.append(time.perf_counter() - t0)
                res[(name, nt)] = np.asarray(r[0] if isinstance(r, tuple) else r).tobytes() + \
                    (g.tobytes() if isinstance(r, tuple) else b"")
                line.append(1e3 * statistics.median(ts))
            same = res[(name, 1)] == res[(name, 2)]
            print(f"  {np.dtype(dtype).name:8s} {name:24s} 1 thread {line[0]:7.3f}  "
                  f"2 threads {line[1]:7.3f}  ({line[0] / line[1]:4.2f}x)  "
                  f"bit-identical: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

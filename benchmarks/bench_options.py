"""Cost of the cross-entropy options relative to the plain call (issue 3).

    OMP_NUM_THREADS=1 python benchmarks/bench_options.py [N C [REPS]]

Interleaved medians (REPS rounds, default 7) on one (N, C) float32 problem
(default 4096 x 32000), integer labels, out= preallocated.
"""
import sys

import numpy as np

import csoftmax as cs
from csoftmax._bench import _median_ms


def main(argv):
    n, c = (int(argv[0]), int(argv[1])) if len(argv) >= 2 else (4096, 32000)
    reps = int(argv[2]) if len(argv) >= 3 else 7
    rng = np.random.default_rng(0)
    z = (3 * rng.standard_normal((n, c))).astype(np.float32)
    lab = rng.integers(0, c, n)
    g = np.empty_like(z)
    w = (rng.random(c) + 0.5).astype(np.float32)
    sw = rng.random(n) + 0.5
    cfgs = {
        "plain": {},
        "weight + label_smoothing": dict(weight=w, label_smoothing=0.1),
        "z_loss": dict(z_loss=1e-4),
        "sample_weight + return_lse": dict(sample_weight=sw, return_lse=True),
        "softcap": dict(softcap=30.0),
        "all but softcap": dict(weight=w, sample_weight=sw, label_smoothing=0.1, z_loss=1e-4,
                                return_lse=True),
        "all options": dict(weight=w, sample_weight=sw, label_smoothing=0.1, z_loss=1e-4,
                            softcap=30.0, return_lse=True),
    }
    fns = {k: (lambda i, kw=kw: cs.cross_entropy_with_grad(z, lab, out=g, **kw))
           for k, kw in cfgs.items()}
    t = _median_ms(fns, reps=reps)
    print(f"cross_entropy_with_grad {n}x{c} float32, isa={cs.show_config()['isa']}, "
          f"medians of {reps} interleaved rounds")
    for k, v in t.items():
        print(f"  {k:28s} {v:9.2f} ms  {v / t['plain']:5.2f}x plain")


if __name__ == "__main__":
    main(sys.argv[1:])

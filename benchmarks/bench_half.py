"""float16 and bfloat16 against float32 and PyTorch's bfloat16 loss + backward (issue 14).

    python benchmarks/bench_half.py                      # the five shapes, one thread
    python benchmarks/bench_half.py --threads 1,2 --json half.json
    python benchmarks/bench_half.py --smoke              # tiny shapes, one round (a test runs it)

Same as ``csoftmax bench --half``; see csoftmax/_bench_half.py for what is timed and
the targets judged PASS / MISS (cold data, ratios measured side by side in one run).
Needs ml_dtypes; PyTorch (pip install torch==2.13.0) is used when installed.  Pin the
run to one core on a shared machine: ``taskset -c 1 ...``.
"""
import sys

from csoftmax._bench_half import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

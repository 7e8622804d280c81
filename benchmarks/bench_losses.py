"""The losses of issue 16 against PyTorch, the NumPy idiom and the machine's floors.

    python benchmarks/bench_losses.py                    # 4096x1000 and 64x128256, one thread
    python benchmarks/bench_losses.py --threads 1,2 --json losses.json
    python benchmarks/bench_losses.py --smoke            # tiny shapes, one round (a test runs it)

Same as ``csoftmax bench --losses``; see csoftmax/_bench_losses.py for the peers,
the timing groups and the targets judged PASS / MISS (one thread, float32, cold
data).  PyTorch (pip install torch==2.13.0) and threadpoolctl are used when
installed.  Pin the run to one core on a shared machine: ``taskset -c 1 ...``.
"""
import sys

from csoftmax._bench_losses import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""csoftmax against its peers and the machine's memory floors.

    python benchmarks/bench.py [--shapes 4096x1000,...] [--threads 1,2] [--json out.json]

Same as ``python -m csoftmax bench``; see csoftmax/_bench.py for the timing
rules (interleaved medians, inputs rotated over >= 96 MiB so data is cold,
copy and read floors measured in the same run).  Peers are used when
installed: SciPy, PyTorch (pip install torch==2.13.0), threadpoolctl for
thread control.
"""
import sys

from csoftmax._bench import bench_main

if __name__ == "__main__":
    sys.exit(bench_main(sys.argv[1:]))

"""benchmarks/bench_dask.py runs: its smoke mode (tiny sizes, one round, clusters of 1
and 2 worker processes) and its JSON is well formed.  The numbers are not checked (speed
is a benchmark matter, not a test); the losses of the two variants must agree."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_dask.py"


@pytest.mark.skipif(not SCRIPT.is_file(), reason="benchmarks/ is not next to the tests")
@pytest.mark.skipif(os.environ.get("CSOFTMAX_TEST_CLUSTER", "1") == "0",
                    reason="CSOFTMAX_TEST_CLUSTER=0: no worker processes in this run")
def test_smoke_run(tmp_path):
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "cpu:" in p.stdout and "isa" in p.stdout
    res = json.loads(out.read_text())
    for nw in ("1", "2"):
        g = res["generated"][nw]
        assert set(g["median_s"]) == {"csoftmax", "plain-dask", "gen-only"}
        assert abs(g["loss"]["csoftmax"] - g["loss"]["plain-dask"]) < 1e-4
        assert all(t > 0 for t in g["median_s"].values())
        assert res["in_memory"][nw]["dask_s"] > 0

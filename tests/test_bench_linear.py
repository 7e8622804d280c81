"""benchmarks/bench_linear_ce.py runs: its smoke mode (a tiny shape, one round, one call
per process) for every variant that is installed, and its JSON is well formed.  The
numbers are not checked (speed is a benchmark matter, not a test)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_linear_ce.py"


@pytest.mark.skipif(not SCRIPT.is_file(), reason="benchmarks/ is not next to the tests")
def test_smoke_run(tmp_path):
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--threads", "1",
                        "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "CPU:" in p.stdout and "ISA" in p.stdout
    res = json.loads(out.read_text())["results"]
    variants = {r["variant"] for r in res}
    assert {"gemms", "csoftmax"} <= variants
    for r in res:
        assert "error" not in r, r
        assert r["time"] > 0 and r["peak_extra_mib"] >= 0

"""benchmarks/bench_half.py and ``csoftmax bench --half`` run: the smoke mode (tiny
shapes, one round) prints the machine line, the table and the targets (not judged),
and its JSON is well formed.  The times are not checked (speed is a benchmark matter)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ml_dtypes")
SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_half.py"


@pytest.mark.skipif(not SCRIPT.is_file(), reason="benchmarks/ is not next to the tests")
def test_smoke_run(tmp_path):
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "cpu:" in p.stdout and "isa=" in p.stdout and "SMOKE" in p.stdout
    assert "targets (issue 14)" in p.stdout and "PASS" not in p.stdout
    res = json.loads(out.read_text())
    assert res["cold"] is False and res["config"]["isa"]
    rows = res["half"]["rows"]
    got = {(r["op"], r["dtype"]) for r in rows}
    for op in ("xent", "lse"):
        assert {(op, "float32"), (op, "float16"), (op, "bfloat16")} <= got
    assert all(r["ms"] > 0 for r in rows)
    targets = res["half"]["targets"]
    assert targets and all(not t["judged"] for t in targets)


def test_bench_main_half(capsys):
    from csoftmax._bench import bench_main
    assert bench_main(["--half", "--smoke", "--shapes", "8x40"]) == 0
    out = capsys.readouterr().out
    assert "8x40" in out and "cross_entropy_with_grad(out=)" in out and "bfloat16" in out

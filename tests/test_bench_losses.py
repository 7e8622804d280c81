"""benchmarks/bench_losses.py and ``csoftmax bench --losses`` run: the smoke mode (tiny
shapes, one round) prints the machine line, the table and the targets, and its JSON is
well formed; the peers compute what csoftmax computes.  The times are not checked
(speed is a benchmark matter, not a test)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_losses.py"
FUNCTIONS = {"binary_cross_entropy_with_grad", "binary_cross_entropy", "kl_div_with_grad",
             "kl_div", "token_logprobs", "token_logprobs(+entropy)"}


@pytest.mark.skipif(not SCRIPT.is_file(), reason="benchmarks/ is not next to the tests")
def test_smoke_run(tmp_path):
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "cpu:" in p.stdout and "isa=" in p.stdout and "SMOKE" in p.stdout
    assert "copy floor" in p.stdout and "issue 16 targets" in p.stdout
    for name in FUNCTIONS:
        assert name in p.stdout
    res = json.loads(out.read_text())
    assert res["cold"] is False and res["config"]["isa"]
    loss = res["losses"]
    impls = {(r["case"], r["impl"]) for r in loss["rows"]}
    assert ("", "copy floor") in impls and ("", "csoftmax logsumexp") in impls
    assert {("kl+grad", "csoftmax"), ("kl+grad", "numpy"), ("bce", "numpy")} <= impls
    assert all(r["ms"] > 0 for r in loss["rows"])
    assert {t["function"] for t in loss["targets"]} == FUNCTIONS
    assert all(not t["judged"] for t in loss["targets"])       # smoke: nothing judged
    assert {c["function"] for c in loss["checks"]} == FUNCTIONS
    for c in loss["checks"]:                # float32 peers against csoftmax's float32
        assert c["max_rel_diff"] < 1e-4, c


def test_bench_main_losses(capsys):
    from csoftmax._bench import bench_main

    assert bench_main(["--losses", "--smoke", "--shapes", "8x40", "--bce-shapes", "8x40"]) == 0
    text = capsys.readouterr().out
    assert "8x40 float32 threads=1" in text and "token_logprobs(+entropy)" in text
    assert "PASS" in text or "MISS" in text

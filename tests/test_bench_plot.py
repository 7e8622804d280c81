"""``csoftmax bench --plot``: the class sweep, its PNG and its JSON.

Tiny problems (N*C of a few thousand, one timed round, warm data), so the whole
module takes seconds; the numbers themselves are not checked, only that every
implementation was timed and the files are well formed.  matplotlib is a test
requirement (pyproject's ``test`` extra); the missing-matplotlib message is
checked by hiding it from the import system.
"""
import io
import json
import struct
import sys

import pytest

from csoftmax import _bench
from csoftmax.__main__ import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROW_KEYS = {"op", "impl", "n", "c", "dtype", "threads", "ms", "gbps", "ns_per_elem"}
CLASSES = (10, 100, 1000)
ELEMS = 3000
TINY = ["--classes", ",".join(map(str, CLASSES)), "--elems", str(ELEMS), "--reps", "1",
        "--warm"]


def _check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 200, (width, height)
    assert 5_000 < len(data) < 200_000, len(data)      # drawn, and kept small


def _check_sweep(sweep):
    rows = sweep["rows"]
    assert rows
    for r in rows:
        assert set(r) == ROW_KEYS, r
        assert r["ms"] > 0 and r["gbps"] > 0 and r["ns_per_elem"] > 0, r
        assert r["dtype"] == "float32" and r["threads"] == 1
        assert r["n"] == max(1, round(ELEMS / r["c"]))
    assert sorted({r["c"] for r in rows}) == list(CLASSES)
    for c in CLASSES:
        got = {(r["op"], r["impl"]) for r in rows if r["c"] == c}
        for need in [("floor", "copy floor"), ("floor", "read floor"),
                     ("cross_entropy_with_grad", "csoftmax"), ("logsumexp", "csoftmax"),
                     ("cross_entropy_with_grad", "numpy"), ("logsumexp", "numpy"),
                     ("cross_entropy_with_grad", "reference"), ("logsumexp", "reference")]:
            assert need in got, (c, need)
        # peers appear exactly when installed
        for peer, mod in (("scipy", "scipy"), ("torch", "torch")):
            assert (("logsumexp", peer) in got) == (mod in sys.modules), (c, peer)


def test_plot_and_json_files(tmp_path, capsys):
    png, js = tmp_path / "sweep.png", tmp_path / "sweep.json"
    assert main(["bench", "--plot", str(png), "--json", str(js), *TINY]) == 0
    _check_png(png)
    payload = json.loads(js.read_text())
    assert "rows" not in payload            # --plot alone: the sweep, not the shape table
    assert payload["config"]["isa"]
    assert payload["sweep"]["classes"] == list(CLASSES)
    _check_sweep(payload["sweep"])
    cap = capsys.readouterr()
    assert f"[1/{len(CLASSES)}] C=10 " in cap.err       # progress on stderr
    assert "] C=" not in cap.out                         # ... not on stdout
    assert "class sweep" in cap.out and "plot written" in cap.out


def test_json_to_stdout_with_table_and_sweep(tmp_path, capsys):
    png = tmp_path / "sweep.png"
    assert _bench.bench_main(["--plot", str(png), "--json", "-", "--shapes", "8x16",
                              "--dtypes", "float32", *TINY]) == 0
    cap = capsys.readouterr()
    payload = json.loads(cap.out)            # stdout holds the JSON and nothing else
    assert {r["impl"] for r in payload["rows"]} >= {"csoftmax xent+grad", "copy floor"}
    assert all(r["ms"] > 0 for r in payload["rows"])
    _check_sweep(payload["sweep"])
    assert "class sweep" in cap.err and f"[{len(CLASSES)}/{len(CLASSES)}]" in cap.err
    _check_png(png)


def test_plot_sweep_from_rows(tmp_path):
    rows = _bench.run_sweep(classes=(10, 64), elems=640, reps=1, cold=False,
                            out=None, progress=None)
    path = _bench.plot_sweep(rows, str(tmp_path / "direct.png"), title="t")
    _check_png(tmp_path / "direct.png")
    assert path.endswith("direct.png")


def test_progress_overwrites_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    _bench._progress(s, "[1/2] a")
    _bench._progress(s, "done", final=True)
    assert s.getvalue() == "\r\033[K[1/2] a\r\033[Kdone\n"
    p = io.StringIO()
    _bench._progress(p, "[1/2] a")
    assert p.getvalue() == "[1/2] a\n"


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    png = tmp_path / "never.png"
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--plot", str(png), *TINY])
    msg = str(exc.value.code)
    assert "matplotlib" in msg and 'pip install "csoftmax[bench]"' in msg
    assert not png.exists()
    assert "[1/" not in capsys.readouterr().err     # refused before the sweep ran
    with pytest.raises(SystemExit, match=r"csoftmax\[bench\]"):
        _bench.plot_sweep([], str(png))


def test_sweep_shapes_keep_n_times_c():
    for n, c in _bench.sweep_shapes(_bench.SWEEP_CLASSES, _bench.SWEEP_ELEMS):
        assert 0.9 < n * c / _bench.SWEEP_ELEMS < 1.1, (n, c)


def test_layout_sweep_times_every_case(monkeypatch, capsys):
    """``csoftmax bench --layouts`` on shrunken cases: every case timed with its
    floors and peers, the CPU and ISA printed (the numbers are not checked)."""
    from csoftmax import _bench_layouts as L
    tiny = [("seg", "xent", (2, 5, 3, 7), 1, "C"), ("F ce", "xent", (9, 6), -1, "F"),
            ("sm0", "softmax", (4, 33), 0, "C"), ("lse0", "lse", (3, 40), 0, "C"),
            ("F lse", "lse", (17, 5), -1, "F")]
    monkeypatch.setattr(L, "LAYOUT_CASES", tiny)
    assert _bench.bench_main(["--layouts", "--json", "-", "--reps", "1", "--warm",
                              "--dtypes", "float32,float64"]) == 0
    cap = capsys.readouterr()
    payload = json.loads(cap.out)
    assert "rows" not in payload             # --layouts alone replaces the shape table
    rows = payload["layouts"]
    assert all(r["ms"] > 0 for r in rows)
    for label, op, shape, axis, order in tiny:
        for dt in ("float32", "float64"):
            got = {r["impl"] for r in rows if r["case"] == label and r["dtype"] == dt}
            need = {"csoftmax", "copy floor", "read floor"}
            if op == "lse" and axis == 0:
                need.add("transpose + rows")
            if "torch" in sys.modules:
                need.add("torch fwd+bwd" if op == "xent" else "torch")
            if "scipy" in sys.modules and op != "xent":
                need.add("scipy")
            assert need <= got, (label, dt, got)
    assert "cpu: " in cap.err and "isa=" in cap.err

"""SciPy's own test module for logsumexp / softmax / log_softmax
(``scipy/special/tests/test_logsumexp.py``, shipped inside SciPy's wheel),
run against csoftmax: any divergence from SciPy shows up here.

The module runs in a subprocess with the plugin
``tests/scipy_suite/csm_scipy_suite_plugin.py``, which points its imports at
csoftmax (see there); its results are read from a JUnit XML report.
``DELIBERATE`` lists the test ids where csoftmax differs from SciPy on purpose
(the README lists them too); none today.  Skipped when SciPy is not
installed or its wheel has no tests.
"""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DELIBERATE: set[str] = set()


def _scipy_test_module():
    sps = pytest.importorskip("scipy.special", reason="SciPy not installed")
    path = os.path.join(os.path.dirname(sps.__file__), "tests", "test_logsumexp.py")
    if not os.path.exists(path):
        pytest.skip(f"this SciPy installation has no {path}")
    return path


def test_scipy_logsumexp_test_module_passes_on_csoftmax(tmp_path):
    path = _scipy_test_module()
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    report = tmp_path / "report.xml"
    # the plugin's directory ahead of what the parent had (the emulated AVX-512
    # run, tools/avx512_emu.sh, puts its runner on PYTHONPATH)
    path_dirs = [os.path.join(HERE, "scipy_suite")] + \
        [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path_dirs))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "csm_scipy_suite_plugin",
         "-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini"),
         "--rootdir", str(tmp_path), f"--junitxml={report}", path],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    failed, skipped, passed = [], [], 0
    for case in ET.parse(report).getroot().iter("testcase"):
        tid = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(tid)
        elif case.find("skipped") is not None:
            skipped.append(tid)
        else:
            passed += 1
    unexpected = [t for t in failed if t.split(".")[-1] not in DELIBERATE]
    print(f"SciPy's test_logsumexp.py on csoftmax: {passed} passed, {len(failed)} failed "
          f"({len(failed) - len(unexpected)} deliberate), {len(skipped)} skipped")
    assert not unexpected, "\n".join(unexpected[:30]) + "\n" + proc.stdout[-4000:]
    # the module really ran (SciPy 1.17.1: 407 tests), and csoftmax was what it called
    assert passed >= 100, proc.stdout[-3000:]
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]

"""Kernel path (ISA) selection.

The active path is fixed when csoftmax is imported (``CSOFTMAX_ISA`` =
scalar|avx2|avx512); the rest of the suite tests whatever path is active, and
CI runs it once per ISA.  Here we only check the reported configuration and,
in subprocesses (never by re-importing in this process), that every
available path gives results within tolerance of the reference."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from csoftmax_testsupport import (
    assert_close, grad_scale, load_reference, log_softmax_scale, loss_scale,
    lse_scale)

ref = load_reference()

KNOWN_ISAS = ("scalar", "avx2", "avx512")


def test_show_config(isa_config, isa):
    assert isinstance(isa_config, dict)
    assert isa in KNOWN_ISAS
    available = list(isa_config["available"])
    assert "scalar" in available
    assert isa in available
    assert set(available) <= set(KNOWN_ISAS)


def test_requested_isa_is_active(isa, isa_config):
    requested = os.environ.get("CSOFTMAX_ISA")
    if not requested:
        pytest.skip("CSOFTMAX_ISA not set")
    if requested not in isa_config["available"]:
        pytest.skip(f"CSOFTMAX_ISA={requested} not available on this CPU "
                    f"({isa_config['available']})")
    assert isa == requested


_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import csoftmax
    out_path = sys.argv[1]
    rng = np.random.default_rng(2024)
    res = {"config": csoftmax.show_config()}
    arrays = {}
    for dtype in ("float32", "float64"):
        for n in (1, 7, 8, 15, 16, 17, 31, 33, 64, 67, 129, 1000):
            x = (rng.standard_normal((3, n)) * 4).astype(dtype)
            x[1, n // 2] -= 70
            arrays[f"x_{dtype}_{n}"] = x
            arrays[f"lse_{dtype}_{n}"] = csoftmax.logsumexp(x, axis=1)
            arrays[f"lseT_{dtype}_{n}"] = csoftmax.logsumexp(x.T, axis=0)
            arrays[f"sm_{dtype}_{n}"] = csoftmax.softmax(x, axis=1)
            arrays[f"lsm_{dtype}_{n}"] = csoftmax.log_softmax(x, axis=1)
            lab = np.array([0, n - 1, n // 2])
            loss, grad = csoftmax.cross_entropy_with_grad(
                x, lab, reduction="none")
            arrays[f"loss_{dtype}_{n}"] = loss
            arrays[f"grad_{dtype}_{n}"] = grad
            s = x.copy()
            s[0, 0] = np.nan
            s[1, n - 1] = np.inf
            s[2, :] = -np.inf
            arrays[f"sx_{dtype}_{n}"] = s
            arrays[f"slse_{dtype}_{n}"] = csoftmax.logsumexp(s, axis=1)
            arrays[f"ssm_{dtype}_{n}"] = csoftmax.softmax(s, axis=1)
    np.savez(out_path, **arrays)
    print(json.dumps(res["config"]))
""")


def _run_child(isa, tmp_path):
    env = dict(os.environ)
    env["CSOFTMAX_ISA"] = isa
    out = tmp_path / f"{isa}.npz"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(out)],
                          env=env, capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout.strip().splitlines()[-1])
    return config, dict(np.load(out))


def test_every_available_isa_matches_reference(isa_config, tmp_path):
    results = {}
    for name in isa_config["available"]:
        config, arrays = _run_child(name, tmp_path)
        assert config["isa"] == name, (name, config)
        results[name] = arrays
        for key, x in arrays.items():
            if not key.startswith("x_"):
                continue
            suffix = key[2:]
            dtype = x.dtype
            c = f"ISA {name}, {suffix}"
            assert_close(arrays["lse_" + suffix], ref.logsumexp(x, axis=1),
                         func="logsumexp", dtype=dtype, kind="reduce",
                         scale=lse_scale(x, 1), ctx=c, record=False)
            assert_close(arrays["lseT_" + suffix], ref.logsumexp(x, axis=1),
                         func="logsumexp", dtype=dtype, kind="reduce",
                         scale=lse_scale(x, 1), ctx=c + " (T)", record=False)
            assert_close(arrays["sm_" + suffix], ref.softmax(x, axis=1),
                         func="softmax", dtype=dtype, kind="elem", ctx=c,
                         record=False)
            assert_close(arrays["lsm_" + suffix], ref.log_softmax(x, axis=1),
                         func="log_softmax", dtype=dtype, kind="elem",
                         scale=log_softmax_scale(x, 1), ctx=c, record=False)
            n = x.shape[1]
            lab = np.array([0, n - 1, n // 2])
            eloss, egrad = ref.cross_entropy_with_grad(x, lab,
                                                       reduction="none")
            assert_close(arrays["loss_" + suffix], eloss,
                         func="cross_entropy_with_grad[none] loss",
                         dtype=dtype, kind="reduce", scale=loss_scale(1),
                         ctx=c, record=False)
            p = ref.softmax(x, axis=1)
            onehot = np.eye(n)[lab]
            assert_close(arrays["grad_" + suffix], egrad,
                         func="cross_entropy_with_grad[none] grad",
                         dtype=dtype, kind="elem",
                         scale=grad_scale(p, 1.0, onehot), ctx=c,
                         record=False)
            s = arrays["sx_" + suffix]
            assert_close(arrays["slse_" + suffix], ref.logsumexp(s, axis=1),
                         func="logsumexp", dtype=dtype, kind="reduce",
                         scale=lse_scale(s, 1), ctx=c + " specials",
                         record=False)
            assert_close(arrays["ssm_" + suffix], ref.softmax(s, axis=1),
                         func="softmax", dtype=dtype, kind="elem",
                         ctx=c + " specials", record=False)
    assert "scalar" in results


def test_test_seam_only_in_test_builds(isa_config):
    """The dispatcher's test seam (src_c/dispatch.c, Design 3) refuses to install
    a runner in a normal build; tools/avx512_emu.sh builds with it on purpose."""
    import ctypes

    import csoftmax._core as core
    lib = ctypes.CDLL(core.__file__)
    if lib.csm_seam_built():
        assert isa_config["emulated"] == bool(lib.csm_seam_active())
        pytest.skip("a CSOFTMAX_TEST_SEAM=1 build (the emulated AVX-512 run)")
    assert not isa_config["emulated"]
    lib.csm_seam_install.argtypes = [ctypes.c_void_p]
    assert lib.csm_seam_install(None) == 3          # CSM_ERR_ISA: nothing changes
    assert not lib.csm_seam_active()

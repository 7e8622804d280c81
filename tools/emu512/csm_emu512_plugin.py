"""pytest plugin for the emulated AVX-512 run (tools/avx512_emu.sh).

Load with ``-p csm_emu512_plugin`` (tools/emu512 on PYTHONPATH) against a
csoftmax built with CSOFTMAX_TEST_SEAM=1, with CSOFTMAX_EMU_AVX512=1 set.
Refuses to run unless csoftmax really executes its AVX-512 kernels on the
emulator; a crash of an emulated kernel fails the test that made the call
(the call itself returns CSM_ERR_SEAM, a RuntimeError, as well)."""
import os

import pytest

_ON = os.environ.get("CSOFTMAX_EMU_AVX512", "0") not in ("", "0")


def pytest_configure(config):
    if not _ON:
        return
    import csoftmax
    import csm_emu512
    cfg = csoftmax.show_config()
    if not (cfg.get("emulated") and cfg.get("isa") == "avx512" and csm_emu512.emulator()):
        want = os.environ.get("CSOFTMAX_ISA")
        if not (want and want != "avx512" and cfg.get("emulated")):
            raise pytest.UsageError(
                f"csm_emu512: csoftmax does not run its AVX-512 kernels on the emulator "
                f"(show_config: {cfg}); build it with CSOFTMAX_TEST_SEAM=1")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    if not _ON:
        return (yield)
    import csm_emu512
    n = len(csm_emu512.CRASHES)
    try:
        return (yield)
    finally:
        if len(csm_emu512.CRASHES) > n:
            raise AssertionError("an emulated AVX-512 kernel crashed:\n"
                                 + "\n".join(csm_emu512.CRASHES[n:]))


def pytest_report_header(config):
    if _ON:
        import csoftmax
        return [f"csm_emu512: AVX-512 kernels on the Bochs CPU emulator; "
                f"show_config: {csoftmax.show_config()}"]
    return []


def pytest_terminal_summary(terminalreporter):
    if _ON:
        import csm_emu512
        emu = csm_emu512.emulator()
        stats = emu.stats if emu else {}
        terminalreporter.write_line(f"csm_emu512: {stats}; crashes: {len(csm_emu512.CRASHES)}")

"""Self-check of the emulated run (tools/avx512_emu.sh, before the tests).

1. The emulator alone, on a probe library built from selfcheck.c: the guest
   CPU reports AVX-512 F/DQ/BW/VL, a masked load that ends at a page end
   (the page after it unmapped) works, and an unmasked one faults as a crash.
2. csoftmax: show_config() says the AVX-512 path runs emulated, and one
   call matches the float64 reference.
Exits non-zero on any failure.  Usage: python selfcheck.py BUILD_DIR
"""
import ctypes
import mmap
import os
import subprocess
import sys

import numpy as np

import csm_emu512

HERE = os.path.dirname(os.path.abspath(__file__))


class Probe(ctypes.Structure):
    _fields_ = [("p", ctypes.c_void_p), ("n", ctypes.c_long), ("sum", ctypes.c_float),
                ("leaf7_ebx", ctypes.c_uint)]


def check_emulator(build_dir):
    so = os.path.join(build_dir, "libcsm_emu512_probe.so")
    subprocess.run(["gcc", "-O2", "-fPIC", "-shared", os.path.join(HERE, "selfcheck.c"),
                    "-o", so], check=True)
    lib = ctypes.CDLL(so)
    emu = csm_emu512.Emu512([so])
    try:
        m = mmap.mmap(-1, 2 * mmap.PAGESIZE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        ctypes.CDLL(None).munmap(ctypes.c_void_p(base + mmap.PAGESIZE),
                                 ctypes.c_size_t(mmap.PAGESIZE))
        p = base + mmap.PAGESIZE - 12                # 3 floats up to the page end
        for i in range(3):
            ctypes.c_float.from_address(p + 4 * i).value = i + 1.0
        a = Probe(p, 3, 0.0, 0)
        emu.call(ctypes.cast(lib.probe_masked, ctypes.c_void_p).value, ctypes.addressof(a))
        b = a.leaf7_ebx
        flags = {n: bool((b >> k) & 1) for n, k in
                 (("avx512f", 16), ("avx512dq", 17), ("avx512bw", 30), ("avx512vl", 31))}
        if not all(flags.values()) or a.sum != 6.0:
            sys.exit(f"FAIL: emulated CPUID leaf 7 {flags}, masked-load sum {a.sum} (want 6)")
        print(f"  emulated CPU: {flags}; masked 3-lane load at a page end: sum {a.sum}")
        try:
            emu.call(ctypes.cast(lib.probe_unmasked, ctypes.c_void_p).value,
                     ctypes.addressof(a))
        except csm_emu512.EmuCrash as e:
            print("  an unmasked load into an unmapped page is caught:",
                  str(e).splitlines()[0].split(": ", 1)[1])
        else:
            sys.exit("FAIL: an unmasked load into an unmapped page did not fault")
    finally:
        emu.close()


def check_csoftmax():
    import csoftmax
    from csoftmax import reference
    cfg = csoftmax.show_config()
    print("  csoftmax.show_config():", cfg)
    if not (cfg["isa"] == "avx512" and cfg["emulated"]):
        sys.exit("FAIL: csoftmax does not run its AVX-512 kernels emulated")
    x = np.random.default_rng(1).standard_normal((5, 37)).astype(np.float32)
    got = csoftmax.logsumexp(x, axis=1)
    want = reference.logsumexp(x.astype(np.float64), axis=1)
    err = float(np.max(np.abs(got - want) / np.abs(want)))
    if not err < 1e-6:
        sys.exit(f"FAIL: logsumexp on the emulated path, relative error {err:.2e}")
    print(f"  logsumexp (5, 37) float32, emulated AVX-512: max relative error {err:.1e}; "
          f"emulator {csm_emu512.emulator().stats}")


if __name__ == "__main__":
    check_emulator(sys.argv[1])
    check_csoftmax()

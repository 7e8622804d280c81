"""Build the csoftmax extension: Cython wrapper + plain-C kernels.

All C is compiled with the compiler's baseline target; the AVX2 and AVX-512
kernels live in target regions inside their own files and are chosen at run
time, so no -march/-mavx flag is ever passed and a wheel runs on any x86-64.
OpenMP is used when the compiler supports it (probed below), never required.
"""
import os
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

C_SOURCES = [
    "src_c/dispatch.c",
    "src_c/kernels_scalar.c",
    "src_c/kernels_avx2.c",
    "src_c/kernels_avx512.c",
    "src_c/partial_scalar.c",
    "src_c/partial_avx2.c",
    "src_c/partial_avx512.c",
    "src_c/partial_merge.c",
    "src_c/losses_scalar.c",
    "src_c/losses_avx2.c",
    "src_c/losses_avx512.c",
    "src_c/half_scalar.c",
    "src_c/half_avx2.c",
    "src_c/half_avx512.c",
    "src_c/seam_avx512.c",      # empty unless CSOFTMAX_TEST_SEAM=1 (tests only)
]


def _compiler_accepts(compiler, flags, code="int main(void){return 0;}\n", link_flags=()):
    """Compile and link a tiny program with `flags`; True if it works."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=list(flags))
            compiler.link_executable(objs, os.path.join(tmp, "probe"),
                                     extra_postargs=list(link_flags))
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    def build_extensions(self):
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            cflags = ["/O2", "/fp:precise"]
            omp_c, omp_l = ["/openmp"], []
        else:
            # -O3: GCC 12 vectorizes the kernels' lane blocks only at -O3.
            # -ffp-contract=off: no silent FMA; the kernels choose FMA explicitly.
            # -fno-trapping-math: lets the vectorizer if-convert the exp's clamps
            #   (changes no result; we never enable FP traps).
            # -g0: Python's own CFLAGS add -g, which makes the wheel 9 MB.
            cflags = ["-O3", "-std=c11", "-ffp-contract=off", "-fno-trapping-math", "-g0"]
            omp_c, omp_l = ["-fopenmp"], ["-fopenmp"]
        # CSOFTMAX_TEST_SEAM=1: the dispatcher's test seam (src_c/dispatch.c,
        # Design 3) for running the AVX-512 kernels on an emulated CPU; for
        # tools/avx512_emu.sh only, never for a wheel.
        seam = os.environ.get("CSOFTMAX_TEST_SEAM", "0") not in ("", "0")
        if seam:
            print("csoftmax: TEST SEAM build (CSOFTMAX_TEST_SEAM=1)", file=sys.stderr)
        # objects of a seam build must never end up in a normal one (or the
        # reverse): a change of kind in the same build directory rebuilds all
        kind_file = os.path.join(self.build_temp, "csoftmax-build-kind")
        kind = "test-seam" if seam else "release"
        try:
            with open(kind_file) as f:
                if f.read().strip() != kind:
                    self.force = True
        except OSError:
            self.force = True
        os.makedirs(self.build_temp, exist_ok=True)
        with open(kind_file, "w") as f:
            f.write(kind + "\n")
        use_omp = os.environ.get("CSOFTMAX_OPENMP", "1") != "0"
        if use_omp and ctype != "msvc":
            probe = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
            use_omp = _compiler_accepts(self.compiler, omp_c, probe, omp_l)
        if not use_omp:
            omp_c, omp_l = [], []
        print(f"csoftmax: OpenMP {'on' if use_omp else 'off'}", file=sys.stderr)
        # CSOFTMAX_EXTRA_CFLAGS / _LDFLAGS come last (they override -O3), e.g. the
        # sanitizer build of tools/sanitize.sh; CSOFTMAX_PLAIN_SOURCES names C
        # files (basenames) compiled without CSOFTMAX_EXTRA_CFLAGS.
        extra_cflags = os.environ.get("CSOFTMAX_EXTRA_CFLAGS", "").split()
        plain = set(os.environ.get("CSOFTMAX_PLAIN_SOURCES", "").split())
        for ext in self.extensions:
            if seam:
                ext.define_macros = list(ext.define_macros or []) + [("CSM_TEST_SEAM", "1")]
            ext.extra_compile_args = cflags + omp_c + extra_cflags
            ext.extra_link_args = omp_l + os.environ.get("CSOFTMAX_EXTRA_LDFLAGS", "").split()
        _parallel_compile(self.compiler, plain, extra_cflags)
        super().build_extensions()


def _parallel_compile(compiler, plain=(), extra_cflags=()):
    """Compile the sources of one extension concurrently (one job per core),
    the kernel files first (they take longest), and without `extra_cflags` for
    the sources named in `plain`.

    The kernels are expanded per dtype, ISA and option combination, so each
    C file takes a while at -O3; setuptools would compile them one by one.
    """
    jobs = int(os.environ.get("CSOFTMAX_BUILD_JOBS", "0")) or (os.cpu_count() or 1)
    if compiler.compiler_type == "msvc" or (jobs <= 1 and not plain):
        return
    from concurrent.futures import ThreadPoolExecutor

    n_extra = len(extra_cflags)

    def compile_all(sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                    extra_preargs=None, extra_postargs=None, depends=None):
        macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj):
            src, ext = build[obj]
            post = extra_postargs
            if os.path.basename(src) in plain and n_extra:
                assert post[-n_extra:] == list(extra_cflags)
                post = post[:-n_extra]
                print(f"csoftmax: {src} compiled without CSOFTMAX_EXTRA_CFLAGS",
                      file=sys.stderr, flush=True)
            compiler._compile(obj, src, ext, cc_args, post, pp_opts)

        todo = sorted((o for o in objects if o in build),
                      key=lambda o: not os.path.basename(build[o][0]).startswith(
                          ("kernels_", "partial_", "losses_")))
        with ThreadPoolExecutor(max(jobs, 1)) as pool:
            list(pool.map(one, todo))
        return objects

    compiler.compile = compile_all


def _extensions():
    from Cython.Build import cythonize

    ext = Extension(
        "csoftmax._core",
        sources=["csoftmax/_core.pyx"] + C_SOURCES,
        include_dirs=["src_c"],
        depends=[os.path.join("src_c", f) for f in sorted(os.listdir("src_c"))
                 if f.endswith(".h")],
    )
    return cythonize([ext], compiler_directives={"language_level": "3"})


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})

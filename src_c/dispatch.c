/*
 * dispatch.c -- choose the kernel table once.
 *
 * Design
 *   1. CPUID + XGETBV decide the best ISA this CPU and OS support (AVX2 needs
 *      FMA, F16C and the YMM state; AVX-512 needs F, DQ, BW, VL and the ZMM and
 *      opmask state).  The environment variable CSOFTMAX_ISA (scalar | avx2 |
 *      avx512) may force a lower one; csm_isa_set() switches later.
 *   2. The public csm_* entry points are generated from the kernel list
 *      (CSM_KERNELS in csm_internal.h) and jump through the chosen table.
 *   3. Test seam.  A build with CSM_TEST_SEAM (setup.py: CSOFTMAX_TEST_SEAM=1;
 *      never a release wheel) can run the AVX-512 kernels on a CPU without
 *      AVX-512: once a runner is installed (csm_seam_install, csm_seam.h),
 *      AVX-512 counts as the best ISA, and its table is a table of wrappers
 *      (seam_avx512.c) that hand each call -- the unmodified AVX-512 machine
 *      code with its real arguments -- to the runner, which executes it on an
 *      emulated CPU (tools/emu512/).  Nothing else differs, so the seam needs
 *      no change when kernels are added or this file is refactored: the
 *      wrappers come from the same kernel list.  In other builds the seam
 *      functions exist but csm_seam_install refuses (CSM_ERR_ISA).
 */
#include <stdlib.h>
#include <string.h>
#include "csm_internal.h"

#if defined(CSM_HAVE_X86_DISPATCH)
#  include <cpuid.h>

static unsigned long long csm_xgetbv0(void)
{
    unsigned int lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static csm_isa csm_detect(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return CSM_ISA_SCALAR;
    const int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
    const int f16c = (c >> 29) & 1;     /* the half-precision family's conversions */
    if (!osxsave || !avx || !f16c) return CSM_ISA_SCALAR;
    const unsigned long long xcr0 = csm_xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return CSM_ISA_SCALAR;          /* XMM + YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return CSM_ISA_SCALAR;
    const int avx2 = (b >> 5) & 1;
    if (!avx2 || !fma) return CSM_ISA_SCALAR;
    const int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    if (f && dq && bw && vl && (xcr0 & 0xe6) == 0xe6)          /* + opmask, ZMM state */
        return CSM_ISA_AVX512;
    return CSM_ISA_AVX2;
}
#else
static csm_isa csm_detect(void) { return CSM_ISA_SCALAR; }
#endif

/* ---- test seam (Design 3) ---------------------------------------------------- */
#if defined(CSM_TEST_SEAM) && defined(CSM_HAVE_X86_DISPATCH)
extern const csm_table csm_table_avx512_seam;       /* seam_avx512.c */
static csm_seam_runner csm_runner = NULL;
int csm_seam_built(void) { return 1; }
int csm_seam_active(void) { return csm_runner != NULL; }
int csm_seam_run(void (*fn)(void *), void *arg) { return csm_runner ? csm_runner(fn, arg) : 1; }
#else
int csm_seam_built(void) { return 0; }
int csm_seam_active(void) { return 0; }
int csm_seam_run(void (*fn)(void *), void *arg) { (void)fn; (void)arg; return 1; }
#endif

int csm_seam_wanted(void)
{
    const char *e = getenv("CSOFTMAX_EMU_AVX512");
    return csm_seam_built() && e && *e && strcmp(e, "0") != 0;
}

static csm_isa csm_detect_any(void)
{
    if (csm_seam_active()) return CSM_ISA_AVX512;
    return csm_detect();
}

static const csm_table *csm_tables(csm_isa isa)
{
#if defined(CSM_HAVE_X86_DISPATCH)
#  if defined(CSM_TEST_SEAM)
    if (isa == CSM_ISA_AVX512 && csm_runner) return &csm_table_avx512_seam;
#  endif
    if (isa == CSM_ISA_AVX512) return &csm_table_avx512;
    if (isa == CSM_ISA_AVX2) return &csm_table_avx2;
#endif
    (void)isa;
    return &csm_table_scalar;
}

/* Set once by csm_init (called from the module's import, under the GIL) and
 * changed only by csm_isa_set (and csm_seam_install); kernels read the pointer. */
static const csm_table *csm_tbl = NULL;
static csm_isa csm_best = CSM_ISA_SCALAR, csm_active = CSM_ISA_SCALAR;

static void csm_init(void)
{
    if (csm_tbl) return;
    csm_best = csm_detect_any();
    csm_active = csm_best;
    const char *env = getenv("CSOFTMAX_ISA");
    if (env && *env) {
        csm_isa want = csm_best;
        if (!strcmp(env, "scalar") || !strcmp(env, "baseline")) want = CSM_ISA_SCALAR;
        else if (!strcmp(env, "avx2")) want = CSM_ISA_AVX2;
        else if (!strcmp(env, "avx512")) want = CSM_ISA_AVX512;
        if (want < csm_active) csm_active = want;   /* only downwards */
    }
    csm_tbl = csm_tables(csm_active);
}

int csm_seam_install(csm_seam_runner runner)
{
#if defined(CSM_TEST_SEAM) && defined(CSM_HAVE_X86_DISPATCH)
    if (!runner) return CSM_ERR_ARG;
    csm_runner = runner;
    csm_tbl = NULL;          /* choose again, with AVX-512 now available */
    csm_init();
    return CSM_OK;
#else
    (void)runner;
    return CSM_ERR_ISA;
#endif
}

csm_isa csm_isa_best(void) { csm_init(); return csm_best; }
csm_isa csm_isa_active(void) { csm_init(); return csm_active; }

int csm_isa_set(csm_isa isa)
{
    csm_init();
    if (isa < CSM_ISA_SCALAR || isa > csm_best) return CSM_ERR_ISA;
    csm_active = isa;
    csm_tbl = csm_tables(isa);
    return CSM_OK;
}

const char *csm_isa_name(csm_isa isa)
{
    switch (isa) {
    case CSM_ISA_AVX512: return "avx512";
    case CSM_ISA_AVX2: return "avx2";
    default: return "scalar";
    }
}

#if defined(_OPENMP)
#  include <omp.h>
int csm_max_threads(void) { return omp_get_max_threads(); }
void csm_set_num_threads(int n) { if (n > 0) omp_set_num_threads(n); }
#else
int csm_max_threads(void) { return 1; }
void csm_set_num_threads(int n) { (void)n; }
#endif

#define CSM_T_() (csm_init(), csm_tbl)
#define CSM_ENTRY_(name, K, T) \
    int csm_##name CSM_P_##K(T) { return CSM_T_()->name CSM_A_##K; }
CSM_KERNELS(CSM_ENTRY_)

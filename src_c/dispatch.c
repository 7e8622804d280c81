/*
 * dispatch.c -- choose the kernel table once: CPUID + XGETBV decide the best
 * ISA this CPU and OS support; the environment variable CSOFTMAX_ISA
 * (scalar | avx2 | avx512) may force a lower one.  The public csm_* entry
 * points jump through the chosen table.
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
    if (!osxsave || !avx) return CSM_ISA_SCALAR;
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

static const csm_table *csm_tables(csm_isa isa)
{
#if defined(CSM_HAVE_X86_DISPATCH)
    if (isa == CSM_ISA_AVX512) return &csm_table_avx512;
    if (isa == CSM_ISA_AVX2) return &csm_table_avx2;
#endif
    (void)isa;
    return &csm_table_scalar;
}

/* Set once by csm_init (called from the module's import, under the GIL) and
 * changed only by csm_isa_set; kernels read the pointer. */
static const csm_table *csm_tbl = NULL;
static csm_isa csm_best = CSM_ISA_SCALAR, csm_active = CSM_ISA_SCALAR;

static void csm_init(void)
{
    if (csm_tbl) return;
    csm_best = csm_detect();
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

int csm_logsumexp_f32(csm_shape sh, const float *x, csm_strides xs, float *lse, csm_strides ls)
{ return CSM_T_()->logsumexp_f32(sh, x, xs, lse, ls); }
int csm_logsumexp_f64(csm_shape sh, const double *x, csm_strides xs, double *lse, csm_strides ls)
{ return CSM_T_()->logsumexp_f64(sh, x, xs, lse, ls); }
int csm_logsumexp_b_f32(csm_shape sh, const float *x, csm_strides xs, const float *b, csm_strides bs,
                        float *lse, csm_strides ls, float *sign, csm_strides ss)
{ return CSM_T_()->logsumexp_b_f32(sh, x, xs, b, bs, lse, ls, sign, ss); }
int csm_logsumexp_b_f64(csm_shape sh, const double *x, csm_strides xs, const double *b, csm_strides bs,
                        double *lse, csm_strides ls, double *sign, csm_strides ss)
{ return CSM_T_()->logsumexp_b_f64(sh, x, xs, b, bs, lse, ls, sign, ss); }
int csm_softmax_f32(csm_shape sh, const float *x, csm_strides xs, float *y, csm_strides ys)
{ return CSM_T_()->softmax_f32(sh, x, xs, y, ys); }
int csm_softmax_f64(csm_shape sh, const double *x, csm_strides xs, double *y, csm_strides ys)
{ return CSM_T_()->softmax_f64(sh, x, xs, y, ys); }
int csm_log_softmax_f32(csm_shape sh, const float *x, csm_strides xs, float *y, csm_strides ys)
{ return CSM_T_()->log_softmax_f32(sh, x, xs, y, ys); }
int csm_log_softmax_f64(csm_shape sh, const double *x, csm_strides xs, double *y, csm_strides ys)
{ return CSM_T_()->log_softmax_f64(sh, x, xs, y, ys); }
int csm_xent_labels_f32(csm_shape sh, const float *z, csm_strides zs, const int64_t *label,
                        csm_strides lbs, const csm_xent_opts *opt, double *loss, csm_strides ls,
                        float *grad, csm_strides gs, csm_error *err)
{ return CSM_T_()->xent_labels_f32(sh, z, zs, label, lbs, opt, loss, ls, grad, gs, err); }
int csm_xent_labels_f64(csm_shape sh, const double *z, csm_strides zs, const int64_t *label,
                        csm_strides lbs, const csm_xent_opts *opt, double *loss, csm_strides ls,
                        double *grad, csm_strides gs, csm_error *err)
{ return CSM_T_()->xent_labels_f64(sh, z, zs, label, lbs, opt, loss, ls, grad, gs, err); }
int csm_xent_soft_f32(csm_shape sh, const float *z, csm_strides zs, const float *t, csm_strides ts,
                      const csm_xent_opts *opt, double *loss, csm_strides ls, float *grad, csm_strides gs)
{ return CSM_T_()->xent_soft_f32(sh, z, zs, t, ts, opt, loss, ls, grad, gs); }
int csm_xent_soft_f64(csm_shape sh, const double *z, csm_strides zs, const double *t, csm_strides ts,
                      const csm_xent_opts *opt, double *loss, csm_strides ls, double *grad, csm_strides gs)
{ return CSM_T_()->xent_soft_f64(sh, z, zs, t, ts, opt, loss, ls, grad, gs); }
void csm_exp_f32(ptrdiff_t n, const float *x, float *out) { CSM_T_()->exp_f32(n, x, out); }
void csm_exp_f64(ptrdiff_t n, const double *x, double *out) { CSM_T_()->exp_f64(n, x, out); }
void csm_softcap_f32(ptrdiff_t n, const float *x, double cap, float *out)
{ CSM_T_()->softcap_f32(n, x, cap, out); }
void csm_softcap_f64(ptrdiff_t n, const double *x, double cap, double *out)
{ CSM_T_()->softcap_f64(n, x, cap, out); }

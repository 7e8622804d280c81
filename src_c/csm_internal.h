/* csm_internal.h -- pieces shared by every ISA build of the kernels. */
#ifndef CSM_INTERNAL_H
#define CSM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <float.h>
#include <stdlib.h>
#include "csoftmax.h"

/* Run-time x86 dispatch needs GCC/clang target regions and cpuid.h; other
 * compilers and architectures get the baseline kernels only. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#  define CSM_HAVE_X86_DISPATCH 1
#endif

/*
 * Rows longer than CSM_ONECHUNK are processed in at most CSM_MAXCH chunks of
 * at least CSM_MINCHUNK elements: each chunk is read once from memory to find
 * its max, then again from L1/L2 to sum exp(x - chunk max); the running
 * (max, count, sum) is combined across chunks, so memory is read once.  The
 * chunking depends on c only, never on strides or threads.
 */
#define CSM_ONECHUNK 4096
#define CSM_MINCHUNK 2048
#define CSM_MAXCH 64

static inline ptrdiff_t csm_chunk_len(ptrdiff_t c)
{
    if (c <= CSM_ONECHUNK) return c > 0 ? c : 1;
    ptrdiff_t k = (c + CSM_MAXCH - 1) / CSM_MAXCH;
    k = (k + 63) / 64 * 64;
    return k < CSM_MINCHUNK ? CSM_MINCHUNK : k;
}

/* exp(a - b) for the per-chunk rescale factors; the common a == b case (a
 * single chunk, or the chunk holding the max) skips the libm call. */
static inline double csm_expdiff(double a, double b)
{
    return a == b ? 1.0 : exp(a - b);
}

/*
 * The running state of a log-sum-exp taken in parts (the row pass's chunks, the
 * partial family's slices, the KL's chunks): max M, count of elements equal to
 * M, sum s of the others' exp((x - M) * scale).  csm_lse_merge adds a part (its
 * max md, count cc, sum cs relative to md); first: the state is empty.  A part
 * or state of only -inf (M = -inf, cnt 0, s 0 or NaN) merges without NaN from
 * -inf - -inf: exp(-inf) = 0 scales it away, keeping a NaN it carries.
 */
typedef struct { double M, cnt, s; } csm_lsest;

static inline void csm_lse_merge(csm_lsest *a, int first, double md, double cc, double cs,
                                 double scale)
{
    if (first) {
        a->M = md;
        a->cnt = cc;
        a->s = cs;
    } else if (md > a->M) {
        a->s = cs + (a->cnt + a->s) * exp((a->M - md) * scale);
        a->cnt = cc;
        a->M = md;
    } else if (md == a->M) {
        a->cnt += cc;
        a->s += cs;
    } else {
        a->s += (cc + cs) * exp((md - a->M) * scale);
    }
}

/* Rows * classes above which the row loop is split over OpenMP threads. */
#define CSM_PAR_MIN ((ptrdiff_t)1 << 17)

/*
 * Long rows.  With fewer than two rows per thread and c >= CSM_SPLIT_MIN, the
 * rows are taken one after the other and each row's chunks are shared among
 * the threads instead; the per-chunk partial results are combined by one
 * thread in chunk order, so the bits do not depend on the thread count.
 */
#define CSM_SPLIT_MIN ((ptrdiff_t)1 << 16)
#if defined(_OPENMP) && !defined(_MSC_VER)
#  include <omp.h>
#  define CSM_PRAGMA_(x) _Pragma(#x)
static inline int csm_split_rows(ptrdiff_t nrows, ptrdiff_t c)
{
    if (c < CSM_SPLIT_MIN) return 0;
    int nt = omp_get_max_threads();
    return nt > 1 && nrows < 2 * (ptrdiff_t)nt;
}
/* row loop: over threads above the size threshold, unless rows are split */
static inline int csm_rows_parallel(ptrdiff_t nrows, ptrdiff_t c)
{
    return nrows > 1 && nrows * c >= CSM_PAR_MIN && !csm_split_rows(nrows, c);
}
#  define CSM_ROWS_FOR(nrows, c)                                                    \
     CSM_PRAGMA_(omp parallel for schedule(static) if (csm_rows_parallel(nrows, c)))
/* for (q = 0; q < nch; q++) { body } over the chunks of one row: shared among
 * the threads for a long row outside a parallel row loop, else a plain loop
 * (no OpenMP region is entered for ordinary rows: that would cost a team
 * set-up per row) */
static inline int csm_split_here(ptrdiff_t c)
{
    return c >= CSM_SPLIT_MIN && !omp_in_parallel() && omp_get_max_threads() > 1;
}
#  define CSM_CHUNK_LOOP(c, nch, q, ...)                                            \
     if (csm_split_here(c)) {                                                       \
         CSM_PRAGMA_(omp parallel for schedule(static))                            \
         for (ptrdiff_t q = 0; q < (nch); q++) { __VA_ARGS__ }                      \
     } else {                                                                       \
         for (ptrdiff_t q = 0; q < (nch); q++) { __VA_ARGS__ }                      \
     }
#else
#  define CSM_ROWS_FOR(nrows, c)
#  define CSM_CHUNK_LOOP(c, nch, q, ...) \
     for (ptrdiff_t q = 0; q < (nch); q++) { __VA_ARGS__ }
#endif

/*
 * Row scratch: one row of c elements per thread that may run the row loop
 * (one row in all when a long row's chunks are split among the threads, which
 * write disjoint parts of it).  A thread takes its row by its number in the
 * team of the row loop's own parallel region; outside that region (a serial
 * row loop, or a call from inside someone else's parallel region) every row
 * is processed by the calling thread and row 0 is used.
 */
typedef struct {
    char *p;
    size_t row_bytes;
    int level;          /* omp_get_level() at the call */
} csm_scratch;

/* want == 0: nothing allocated, rows are NULL.  Returns 0, or -1 if out of
 * memory. */
static inline int csm_scratch_init(csm_scratch *s, int want, ptrdiff_t nrows, ptrdiff_t c,
                                   size_t item)
{
    s->p = NULL;
    s->row_bytes = 0;
    s->level = 0;
    if (!want || nrows <= 0 || c <= 0) return 0;
    size_t rows = 1;
#if defined(_OPENMP) && !defined(_MSC_VER)
    s->level = omp_get_level();
    if (csm_rows_parallel(nrows, c)) rows = (size_t)omp_get_max_threads();
#endif
    if ((size_t)c > SIZE_MAX / item / rows) return -1;
    s->row_bytes = (size_t)c * item;
    s->p = (char *)malloc(rows * s->row_bytes);
    return s->p ? 0 : -1;
}

static inline void *csm_scratch_row(const csm_scratch *s)
{
    if (!s->p) return NULL;
#if defined(_OPENMP) && !defined(_MSC_VER)
    if (omp_get_level() > s->level) return s->p + (size_t)omp_get_thread_num() * s->row_bytes;
#endif
    return s->p;
}

static inline void csm_scratch_free(csm_scratch *s)
{
    free(s->p);
    s->p = NULL;
}

/*
 * The dispatched kernels, listed once.  X(name, KIND, T): entry point
 * csm_<name> (csoftmax.h), per-ISA function csm_<name>_<isa>, table field
 * <name>; KIND names the signature, T the element type.  From this list come
 * the table type below, each ISA's table (kernels_table.h), the public entry
 * points (dispatch.c) and the test seam's wrappers (seam_avx512.c), so a new
 * kernel is one line here plus its declaration in csoftmax.h.
 *
 * Per KIND: CSM_P_<KIND>(T) the parameter list, CSM_A_<KIND> the argument
 * names in order (and, for a new KIND, its fields CSM_F_<KIND> / CSM_U_<KIND> in
 * seam_avx512.c).  Every kernel returns a csm_status.
 */
#define CSM_P_ROWS(T) (csm_shape sh, const T *x, csm_strides xs, T *y, csm_strides ys)
#define CSM_A_ROWS (sh, x, xs, y, ys)
#define CSM_P_LSEB(T) (csm_shape sh, const T *x, csm_strides xs, const T *b, csm_strides bs, \
                       T *lse, csm_strides ls, T *sign, csm_strides ss)
#define CSM_A_LSEB (sh, x, xs, b, bs, lse, ls, sign, ss)
#define CSM_P_XL(T) (csm_shape sh, const T *z, csm_strides zs, const int64_t *label,     \
                     csm_strides lbs, const csm_xent_opts *opt, double *loss, csm_strides ls, \
                     T *grad, csm_strides gs, csm_error *err)
#define CSM_A_XL (sh, z, zs, label, lbs, opt, loss, ls, grad, gs, err)
#define CSM_P_XS(T) (csm_shape sh, const T *z, csm_strides zs, const T *t, csm_strides ts,  \
                     const csm_xent_opts *opt, double *loss, csm_strides ls, T *grad,          \
                     csm_strides gs)
#define CSM_A_XS (sh, z, zs, t, ts, opt, loss, ls, grad, gs)
#define CSM_P_PART(T) (csm_shape sh, const T *x, csm_strides xs, const int64_t *label,   \
                       csm_strides lbs, const csm_xent_opts *opt, double *part,           \
                       csm_strides ps)
#define CSM_A_PART (sh, x, xs, label, lbs, opt, part, ps)
#define CSM_P_MRG(T) (csm_shape sh, const T *x, csm_strides xs, const int64_t *label,    \
                      csm_strides lbs, const csm_xent_opts *opt, const double *mrg,       \
                      csm_strides ms, T *y, csm_strides ys)
#define CSM_A_MRG (sh, x, xs, label, lbs, opt, mrg, ms, y, ys)
#define CSM_P_BCE(T) (csm_shape sh, const T *z, csm_strides zs, const T *t, csm_strides ts,  \
                      const csm_bce_opts *opt, double *rowloss, csm_strides rls, T *eloss,     \
                      csm_strides els, T *grad, csm_strides gs, csm_error *err)
#define CSM_A_BCE (sh, z, zs, t, ts, opt, rowloss, rls, eloss, els, grad, gs, err)
#define CSM_P_KL(T) (csm_shape sh, const T *s, csm_strides ss, const T *t, csm_strides ts,   \
                     const csm_kl_opts *opt, double *loss, csm_strides ls, T *grad,            \
                     csm_strides gs)
#define CSM_A_KL (sh, s, ss, t, ts, opt, loss, ls, grad, gs)
#define CSM_P_TOK(T) (csm_shape sh, const T *x, csm_strides xs, const int64_t *label,      \
                      csm_strides lbs, int64_t ignore_index, int use_ignore, double *logp,    \
                      csm_strides ls, double *ent, csm_strides es, csm_error *err)
#define CSM_A_TOK (sh, x, xs, label, lbs, ignore_index, use_ignore, logp, ls, ent, es, err)
#define CSM_P_VEC(T) (ptrdiff_t n, const T *x, T *out)
#define CSM_A_VEC (n, x, out)
#define CSM_P_CAP(T) (ptrdiff_t n, const T *x, double cap, T *out)
#define CSM_A_CAP (n, x, cap, out)
/* the half-precision family (kernels_half.h): T is uint16_t, per-row results float */
#define CSM_P_HLSE(T) (csm_shape sh, const T *x, csm_strides xs, float *lse, csm_strides ls)
#define CSM_A_HLSE (sh, x, xs, lse, ls)
#define CSM_P_HLSEB(T) (csm_shape sh, const T *x, csm_strides xs, const T *b, csm_strides bs, \
                        float *lse, csm_strides ls, float *sign, csm_strides ss)
#define CSM_A_HLSEB (sh, x, xs, b, bs, lse, ls, sign, ss)
#define CSM_P_HWIDEN(T) (ptrdiff_t n, const T *x, float *out)
#define CSM_A_HWIDEN (n, x, out)
#define CSM_P_HNARROW(T) (ptrdiff_t n, const float *x, T *out)
#define CSM_A_HNARROW (n, x, out)

#define CSM_KERNELS(X)                                                          \
    X(logsumexp_f32, ROWS, float) X(logsumexp_f64, ROWS, double)                \
    X(logsumexp_b_f32, LSEB, float) X(logsumexp_b_f64, LSEB, double)            \
    X(softmax_f32, ROWS, float) X(softmax_f64, ROWS, double)                    \
    X(log_softmax_f32, ROWS, float) X(log_softmax_f64, ROWS, double)            \
    X(xent_labels_f32, XL, float) X(xent_labels_f64, XL, double)                \
    X(xent_soft_f32, XS, float) X(xent_soft_f64, XS, double)                    \
    X(exp_f32, VEC, float) X(exp_f64, VEC, double)                              \
    X(softcap_f32, CAP, float) X(softcap_f64, CAP, double)                      \
    X(partial_f32, PART, float) X(partial_f64, PART, double)                    \
    X(softmax_merged_f32, MRG, float) X(softmax_merged_f64, MRG, double)        \
    X(log_softmax_merged_f32, MRG, float) X(log_softmax_merged_f64, MRG, double) \
    X(xent_grad_merged_f32, MRG, float) X(xent_grad_merged_f64, MRG, double)     \
    X(bce_f32, BCE, float) X(bce_f64, BCE, double)                              \
    X(kl_div_f32, KL, float) X(kl_div_f64, KL, double)                          \
    X(token_logprobs_f32, TOK, float) X(token_logprobs_f64, TOK, double)          \
    CSM_HALF_KERNELS(X, f16) CSM_HALF_KERNELS(X, bf16)

/* the half-precision family, per 16-bit format F (f16, bf16): half_<isa>.c */
#define CSM_HALF_KERNELS(X, F)                                                  \
    X(logsumexp_##F, HLSE, uint16_t) X(logsumexp_b_##F, HLSEB, uint16_t)        \
    X(softmax_##F, ROWS, uint16_t) X(log_softmax_##F, ROWS, uint16_t)           \
    X(xent_labels_##F, XL, uint16_t) X(xent_soft_##F, XS, uint16_t)             \
    X(widen_##F, HWIDEN, uint16_t) X(narrow_##F, HNARROW, uint16_t)

/*
 * Column geometry (the column family, kernels_cols.h).  A batch whose class
 * stride is not 1 but one grid axis has unit stride in the input -- n1 for
 * PyTorch's (N, C, d...) with axis=1 and for axis=0 reductions, n0 (with
 * n1 == 1) for an F-ordered (N, C) with axis=-1 -- is walked as no outer
 * rows x np positions, the positions along the unit-stride axis (swap: n0).
 * Any array of the grid then has (outer, position, class) strides
 * csm_col_str(g, s); flat row indices (the options' per-row arrays, error
 * rows) stay those of the original grid, csm_col_flat.
 */
typedef struct {
    int swap;               /* positions along n0 (n1 == 1), else along n1 */
    ptrdiff_t no, np, c;    /* outer rows, positions, classes */
} csm_colgeo;

static inline int csm_col_pick(csm_shape sh, csm_strides xs, csm_colgeo *g)
{
    if (sh.c < 1 || xs.sc == 1) return 0;
    g->c = sh.c;
    if (sh.n1 >= 2 && xs.s1 == 1) {
        g->swap = 0;
        g->no = sh.n0;
        g->np = sh.n1;
        return 1;
    }
    if (sh.n1 == 1 && sh.n0 >= 2 && xs.s0 == 1) {
        g->swap = 1;
        g->no = 1;
        g->np = sh.n0;
        return 1;
    }
    return 0;
}

static inline csm_strides csm_col_str(const csm_colgeo *g, csm_strides s)
{
    csm_strides t = {0, s.s0, s.sc};
    return g->swap ? t : s;
}

static inline ptrdiff_t csm_col_flat(const csm_colgeo *g, ptrdiff_t io, ptrdiff_t ip)
{
    return g->swap ? ip : io * g->np + ip;
}

/* Per-ISA function table, filled by kernels_<isa>.c (kernels_table.h). */
#define CSM_TABLE_FIELD_(name, K, T) int (*name) CSM_P_##K(T);
typedef struct {
    CSM_KERNELS(CSM_TABLE_FIELD_)
} csm_table;
#undef CSM_TABLE_FIELD_

extern const csm_table csm_table_scalar;
#if defined(CSM_HAVE_X86_DISPATCH)
extern const csm_table csm_table_avx2;
extern const csm_table csm_table_avx512;
#endif

/* Test seam (a build with CSM_TEST_SEAM only, see dispatch.c). */
#include "csm_seam.h"

#endif

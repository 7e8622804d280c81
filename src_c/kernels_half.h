/*
 * kernels_half.h -- the half-precision family: float16 and bfloat16 rows read
 * and written directly, computed by the float32 kernels of the same ISA.
 *
 * Included once by each half_<isa>.c, inside its ISA target region, with
 * CSM_ISA and CSM_X86 defined (0 none, 1 SSE2, 2 AVX2 + FMA + F16C, 3 AVX-512).
 *
 * Design
 *   1. The grid's rows are taken in blocks of consecutive flat rows (along n1
 *      inside one i0, or along n0 when n1 == 1) of about CSM_HBLK elements; a
 *      block depends on (n0, n1, c) only, never on the thread count.  Each
 *      thread widens its block into a float32 staging buffer of its own (at
 *      most CSM_HBLK floats, 256 KB, or one row when c is longer: it stays in
 *      L2), runs the float32 kernel of this ISA on it -- the whole
 *      option set, the tile and column paths, the chunked row pass with its
 *      float64 sums -- and narrows the block's softmax / log-softmax /
 *      gradient from the buffer into the output, rounding once.  Memory sees
 *      the 16-bit input and output only: no float32 copy of the array and no
 *      float32 output are ever made; per-row results (log-sum-exp, loss) are
 *      written by the float32 kernel straight into the caller's float32 /
 *      float64 arrays.
 *   2. The buffer keeps the block's memory order: rows of contiguous classes
 *      are staged row after row; a block whose classes are strided but whose
 *      rows are contiguous (positions of an (N, C, H, W) array along axis 1, an
 *      F-ordered (N, C) along its last axis) is staged class after class, so
 *      both the conversion loops and the float32 kernel (its column family)
 *      run on contiguous memory; any other layout is gathered element by
 *      element.
 *   3. Conversions: F16C (vcvtph2ps / vcvtps2ph, 256 bits on AVX2, 512 on
 *      AVX-512) for float16, a 16-bit shift and an integer round-to-nearest-
 *      even for bfloat16, the portable functions of csm_half.h on the baseline
 *      path and for gathers.  All give the same bits (csm_half.h).
 *   4. Labels are checked over the whole grid before the first block, so a bad
 *      label writes nothing, as in the float32 kernels; the options are checked
 *      by the float32 kernel on every block alike (a bad option fails them all
 *      before any output is written).  Only CSM_ERR_NOMEM (a staging buffer or
 *      the soft-cap's scratch row) can leave a call's outputs partly written.
 *   5. Long rows (c >= CSM_SPLIT_MIN with fewer than two rows per thread) run
 *      the blocks on the calling thread, so the float32 kernel shares each
 *      row's chunks among the threads as it does for float32 input.
 */
#include "csm_half.h"

/* Elements per block.  Each float32 kernel call costs about 1-2 us besides its
 * work (an OpenMP region is entered even when it runs on one thread), so blocks
 * are large: measured at 4096 x 1000 and 64 x 128256 (AVX2, one thread), 8192
 * and 16384 were 10-20% slower than 65536. */
#define CSM_HBLK 65536
#define CSM_HE_(name, isa) csm_##name##_##isa
#define CSM_HE(name, isa) CSM_HE_(name, isa)
#define CSM_HFN(name) CSM_HE(name, CSM_ISA)

/* the float32 kernels of this ISA (kernels_<isa>.c), run on the staged blocks */
int CSM_HFN(logsumexp_f32) CSM_P_ROWS(float);
int CSM_HFN(logsumexp_b_f32) CSM_P_LSEB(float);
int CSM_HFN(softmax_f32) CSM_P_ROWS(float);
int CSM_HFN(log_softmax_f32) CSM_P_ROWS(float);
int CSM_HFN(xent_labels_f32) CSM_P_XL(float);
int CSM_HFN(xent_soft_f32) CSM_P_XS(float);

enum { CSM_HF16 = 0, CSM_HBF16 = 1 };

/* ---- contiguous conversions (Design 3) ------------------------------------ */

static void CSM_HFN(hwiden)(int fmt, const uint16_t *restrict p, ptrdiff_t n, float *restrict o)
{
    ptrdiff_t i = 0;
#if CSM_X86 >= 3
    if (fmt == CSM_HF16) {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(o + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + i))));
    } else {
        for (; i + 16 <= n; i += 16) {
            __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p + i)));
            _mm512_storeu_si512((void *)(o + i), _mm512_slli_epi32(w, 16));
        }
    }
#elif CSM_X86 >= 2
    if (fmt == CSM_HF16) {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(o + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + i))));
    } else {
        for (; i + 8 <= n; i += 8) {
            __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + i)));
            _mm256_storeu_si256((__m256i *)(o + i), _mm256_slli_epi32(w, 16));
        }
    }
#endif
    if (fmt == CSM_HF16) {
        for (; i < n; i++) o[i] = csm_f16_to_f32(p[i]);
    } else {
        for (; i < n; i++) o[i] = csm_bf16_to_f32(p[i]);
    }
}

#if CSM_X86 >= 2
/* bfloat16 rounding of 32-bit float lanes (csm_f32_to_bf16), as 32-bit integers */
#  if CSM_X86 >= 3
static inline __m512i CSM_HFN(bf16_round16)(__m512 v)
{
    const __m512i x = _mm512_castps_si512(v);
    const __m512i hi = _mm512_srli_epi32(x, 16);
    const __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)),
                         _mm512_and_si512(hi, _mm512_set1_epi32(1))), 16);
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(
        _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_or_epi32(r, nan, hi, _mm512_set1_epi32(0x40));
}
#  endif
static inline __m256i CSM_HFN(bf16_round8)(__m256 v)
{
    const __m256i x = _mm256_castps_si256(v);
    const __m256i hi = _mm256_srli_epi32(x, 16);
    const __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)),
                         _mm256_and_si256(hi, _mm256_set1_epi32(1))), 16);
    const __m256i nan = _mm256_cmpgt_epi32(
        _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    return _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
}
#endif

static void CSM_HFN(hnarrow)(int fmt, const float *restrict o, ptrdiff_t n, uint16_t *restrict p)
{
    ptrdiff_t i = 0;
#if CSM_X86 >= 3
    if (fmt == CSM_HF16) {
        for (; i + 16 <= n; i += 16)
            _mm256_storeu_si256((__m256i *)(p + i),
                                _mm512_cvtps_ph(_mm512_loadu_ps(o + i),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    } else {
        for (; i + 16 <= n; i += 16)
            _mm256_storeu_si256((__m256i *)(p + i),
                                _mm512_cvtepi32_epi16(CSM_HFN(bf16_round16)(_mm512_loadu_ps(o + i))));
    }
#elif CSM_X86 >= 2
    if (fmt == CSM_HF16) {
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(p + i),
                             _mm256_cvtps_ph(_mm256_loadu_ps(o + i),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    } else {
        for (; i + 16 <= n; i += 16) {
            /* packus works per 128-bit lane: [a0-3 b0-3 a4-7 b4-7], then put in order */
            __m256i a = CSM_HFN(bf16_round8)(_mm256_loadu_ps(o + i));
            __m256i b = CSM_HFN(bf16_round8)(_mm256_loadu_ps(o + i + 8));
            _mm256_storeu_si256((__m256i *)(p + i),
                                _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8));
        }
    }
#endif
    if (fmt == CSM_HF16) {
        for (; i < n; i++) p[i] = csm_f32_to_f16(o[i]);
    } else {
        for (; i < n; i++) p[i] = csm_f32_to_bf16(o[i]);
    }
}

static inline float CSM_HFN(h2f)(int fmt, uint16_t h)
{
    return fmt == CSM_HF16 ? csm_f16_to_f32(h) : csm_bf16_to_f32(h);
}

static inline uint16_t CSM_HFN(f2h)(int fmt, float f)
{
    return fmt == CSM_HF16 ? csm_f32_to_f16(f) : csm_f32_to_bf16(f);
}

/* ---- the staged block driver (Design 1, 2) --------------------------------- */

enum { CSM_HOP_LSE, CSM_HOP_LSEB, CSM_HOP_SOFTMAX, CSM_HOP_LOGSOFTMAX, CSM_HOP_XL, CSM_HOP_XS };

typedef struct {
    int op, fmt;
    csm_shape sh;
    const uint16_t *x;  csm_strides xs;     /* logits */
    const uint16_t *t;  csm_strides ts;     /* soft targets (XS), weights b (LSEB); else NULL */
    uint16_t *y;        csm_strides ys;     /* softmax, log-softmax, gradient; may be NULL */
    float *lse;         csm_strides ls;     /* LSE, LSEB */
    float *sign;        csm_strides ss;     /* LSEB, may be NULL */
    const int64_t *label; csm_strides lbs;  /* XL */
    const csm_xent_opts *opt;               /* XL, XS */
    double *loss;       csm_strides los;    /* XL, XS */
    csm_error *err;                         /* XL */
} csm_hargs;

/* One block: len consecutive flat rows starting at grid index (i0, j) (j along
 * n1 when along1, else j == 0 and the block runs along n0). */
typedef struct {
    ptrdiff_t i0, j, len, flat;
} csm_hblock;

/* Stage (or write back) a block of a 16-bit array p with strides s: rows at
 * stride rs (s1 along n1, s0 along n0), classes at s.sc; buffer b row-major
 * (col == 0: b[r*c + k]) or class-major (col == 1: b[k*len + r]). */
static void CSM_HFN(hstage)(int fmt, const uint16_t *p, ptrdiff_t rs, ptrdiff_t cs,
                            ptrdiff_t len, ptrdiff_t c, int col, float *restrict b)
{
    if (!col && cs == 1 && rs == c) {        /* a contiguous block: one run */
        CSM_HFN(hwiden)(fmt, p, len * c, b);
    } else if (!col) {
        for (ptrdiff_t r = 0; r < len; r++) {
            const uint16_t *q = p + r * rs;
            float *o = b + r * c;
            if (cs == 1) CSM_HFN(hwiden)(fmt, q, c, o);
            else for (ptrdiff_t k = 0; k < c; k++) o[k] = CSM_HFN(h2f)(fmt, q[k * cs]);
        }
    } else {
        for (ptrdiff_t k = 0; k < c; k++) {
            const uint16_t *q = p + k * cs;
            float *o = b + k * len;
            if (rs == 1) CSM_HFN(hwiden)(fmt, q, len, o);
            else for (ptrdiff_t r = 0; r < len; r++) o[r] = CSM_HFN(h2f)(fmt, q[r * rs]);
        }
    }
}

static void CSM_HFN(hunstage)(int fmt, const float *restrict b, ptrdiff_t len, ptrdiff_t c,
                              int col, uint16_t *p, ptrdiff_t rs, ptrdiff_t cs)
{
    if (!col && cs == 1 && rs == c) {
        CSM_HFN(hnarrow)(fmt, b, len * c, p);
    } else if (!col) {
        for (ptrdiff_t r = 0; r < len; r++) {
            uint16_t *q = p + r * rs;
            const float *o = b + r * c;
            if (cs == 1) CSM_HFN(hnarrow)(fmt, o, c, q);
            else for (ptrdiff_t k = 0; k < c; k++) q[k * cs] = CSM_HFN(f2h)(fmt, o[k]);
        }
    } else {
        for (ptrdiff_t k = 0; k < c; k++) {
            uint16_t *q = p + k * cs;
            const float *o = b + k * len;
            if (rs == 1) CSM_HFN(hnarrow)(fmt, o, len, q);
            else for (ptrdiff_t r = 0; r < len; r++) q[r * rs] = CSM_HFN(f2h)(fmt, o[r]);
        }
    }
}

/* a per-row array's strides for a block: its rows at stride rs */
static inline csm_strides csm_hsub(ptrdiff_t rs, csm_strides s)
{
    csm_strides t = {rs, 0, s.sc};
    return t;
}

/* Run the float32 kernel on one staged block; returns its status. */
static int CSM_HFN(hblock_run)(const csm_hargs *a, csm_hblock bk, int along1, int col,
                               float *b0, float *b1)
{
    const csm_shape sh = a->sh;
    const ptrdiff_t c = sh.c, len = bk.len;
    const csm_shape sub = {len, 1, c};
    const csm_strides bs = col ? (csm_strides){1, 0, len} : (csm_strides){c, 0, 1};
#define CSM_HOFF(s) (bk.i0 * (s).s0 + bk.j * (s).s1)
#define CSM_HRS(s) (along1 ? (s).s1 : (s).s0)
    CSM_HFN(hstage)(a->fmt, a->x + CSM_HOFF(a->xs), CSM_HRS(a->xs), a->xs.sc, len, c, col, b0);
    if (a->t)
        CSM_HFN(hstage)(a->fmt, a->t + CSM_HOFF(a->ts), CSM_HRS(a->ts), a->ts.sc, len, c, col,
                        b1);
    int st = CSM_OK;
    csm_xent_opts o = {0};
    const csm_xent_opts *op = a->opt ? &o : NULL;
    if (a->opt) {
        o = *a->opt;
        if (o.row_scale) o.row_scale += bk.flat;
        if (o.row_gscale) o.row_gscale += bk.flat;
        if (o.lse_out) o.lse_out += bk.flat;
    }
    switch (a->op) {
    case CSM_HOP_LSE:
        st = CSM_HFN(logsumexp_f32)(sub, b0, bs, a->lse + CSM_HOFF(a->ls),
                                    csm_hsub(CSM_HRS(a->ls), a->ls));
        break;
    case CSM_HOP_LSEB:
        st = CSM_HFN(logsumexp_b_f32)(sub, b0, bs, b1, bs, a->lse + CSM_HOFF(a->ls),
                                      csm_hsub(CSM_HRS(a->ls), a->ls),
                                      a->sign ? a->sign + CSM_HOFF(a->ss) : NULL,
                                      csm_hsub(CSM_HRS(a->ss), a->ss));
        break;
    case CSM_HOP_SOFTMAX:
        st = CSM_HFN(softmax_f32)(sub, b0, bs, b0, bs);
        break;
    case CSM_HOP_LOGSOFTMAX:
        st = CSM_HFN(log_softmax_f32)(sub, b0, bs, b0, bs);
        break;
    case CSM_HOP_XL: {
        csm_error e = {0, 0};
        st = CSM_HFN(xent_labels_f32)(sub, b0, bs, a->label + CSM_HOFF(a->lbs),
                                      csm_hsub(CSM_HRS(a->lbs), a->lbs), op,
                                      a->loss + CSM_HOFF(a->los),
                                      csm_hsub(CSM_HRS(a->los), a->los), a->y ? b0 : NULL, bs,
                                      &e);
        break;
    }
    case CSM_HOP_XS:
        st = CSM_HFN(xent_soft_f32)(sub, b0, bs, b1, bs, op, a->loss + CSM_HOFF(a->los),
                                    csm_hsub(CSM_HRS(a->los), a->los), a->y ? b0 : NULL, bs);
        break;
    default:
        st = CSM_ERR_ARG;
    }
    if (st == CSM_OK && a->y)
        CSM_HFN(hunstage)(a->fmt, b0, len, c, col, a->y + CSM_HOFF(a->ys), CSM_HRS(a->ys),
                          a->ys.sc);
#undef CSM_HOFF
#undef CSM_HRS
    return st;
}

static int CSM_HFN(hrun)(const csm_hargs *a)
{
    const csm_shape sh = a->sh;
    if (sh.n0 < 0 || sh.n1 < 0 || sh.c < 0) return CSM_ERR_ARG;
    const ptrdiff_t c = sh.c, nrows = sh.n0 * sh.n1;
    if (a->op == CSM_HOP_XL) {               /* Design 4: every label first */
        for (ptrdiff_t r = 0; r < nrows; r++) {
            const ptrdiff_t i0 = r / sh.n1, i1 = r % sh.n1;
            const int64_t lab = a->label[i0 * a->lbs.s0 + i1 * a->lbs.s1];
            if (a->opt && a->opt->use_ignore && lab == a->opt->ignore_index) continue;
            if (lab < 0 || lab >= c) {
                if (a->err) {
                    a->err->row = r;
                    a->err->value = lab;
                }
                return CSM_ERR_LABEL;
            }
        }
    }
    if (nrows == 0) {                        /* the float32 kernel checks the options */
        static const float none[1];
        const csm_shape sub = {0, 1, c};
        const csm_strides bs = {c, 0, 1};
        csm_error er = {0, 0};
        if (a->op == CSM_HOP_XL)
            return CSM_HFN(xent_labels_f32)(sub, none, bs, a->label, bs, a->opt, a->loss, bs,
                                            NULL, bs, &er);
        if (a->op == CSM_HOP_XS)
            return CSM_HFN(xent_soft_f32)(sub, none, bs, none, bs, a->opt, a->loss, bs, NULL,
                                          bs);
        return CSM_OK;
    }
    /* Design 1: the blocks */
    const int along1 = sh.n1 > 1;
    const ptrdiff_t nalong = along1 ? sh.n1 : sh.n0;
    ptrdiff_t B = c >= CSM_HBLK ? 1 : CSM_HBLK / (c > 0 ? c : 1);
    if (B > 16) B -= B % 16;                 /* whole SIMD tiles of rows, as in one call */
    if (B > nalong) B = nalong;
    const ptrdiff_t per = (nalong + B - 1) / B, nb = (along1 ? sh.n0 : 1) * per;
    const ptrdiff_t rsx = along1 ? a->xs.s1 : a->xs.s0;
    const int col = a->xs.sc != 1 && rsx == 1 && c > 1;
    const size_t fl = (size_t)B * (size_t)(c > 0 ? c : 1);
    const size_t need = fl * (a->t ? 2u : 1u) * sizeof(float);
    int status = CSM_OK;
#if defined(_OPENMP) && !defined(_MSC_VER)
    const int par = nb > 1 && nrows * c >= CSM_PAR_MIN && !csm_split_rows(nrows, c)
                    && !omp_in_parallel();
#  pragma omp parallel if (par)
#endif
    {
        float *buf = (float *)malloc(need);
        if (!buf) {
#if defined(_OPENMP) && !defined(_MSC_VER)
#  pragma omp atomic write
#endif
            status = CSM_ERR_NOMEM;
        }
#if defined(_OPENMP) && !defined(_MSC_VER)
#  pragma omp for schedule(static)
#endif
        for (ptrdiff_t q = 0; q < nb; q++) {
            if (!buf) continue;
            csm_hblock bk;
            const ptrdiff_t w = q % per;
            bk.i0 = along1 ? q / per : w * B;
            bk.j = along1 ? w * B : 0;
            bk.len = nalong - w * B < B ? nalong - w * B : B;
            bk.flat = along1 ? bk.i0 * sh.n1 + bk.j : bk.i0;
            const int s = CSM_HFN(hblock_run)(a, bk, along1, col, buf, buf + fl);
            if (s != CSM_OK) {
#if defined(_OPENMP) && !defined(_MSC_VER)
#  pragma omp atomic write
#endif
                status = s;
            }
        }
        free(buf);
    }
    return status;
}

/* ---- entry points ------------------------------------------------------------ */

#define CSM_HALF_ENTRIES(F, FMT)                                                            \
int CSM_HFN(logsumexp_##F)(csm_shape sh, const uint16_t *x, csm_strides xs, float *lse,     \
                           csm_strides ls)                                                  \
{                                                                                           \
    csm_hargs a = {0};                                                                      \
    a.op = CSM_HOP_LSE; a.fmt = FMT; a.sh = sh; a.x = x; a.xs = xs; a.lse = lse; a.ls = ls; \
    return CSM_HFN(hrun)(&a);                                                               \
}                                                                                           \
int CSM_HFN(logsumexp_b_##F)(csm_shape sh, const uint16_t *x, csm_strides xs,              \
                             const uint16_t *b, csm_strides bs, float *lse, csm_strides ls, \
                             float *sign, csm_strides ss)                                   \
{                                                                                           \
    csm_hargs a = {0};                                                                      \
    a.op = CSM_HOP_LSEB; a.fmt = FMT; a.sh = sh; a.x = x; a.xs = xs; a.t = b; a.ts = bs;    \
    a.lse = lse; a.ls = ls; a.sign = sign; a.ss = ss;                                       \
    return CSM_HFN(hrun)(&a);                                                               \
}                                                                                           \
int CSM_HFN(softmax_##F)(csm_shape sh, const uint16_t *x, csm_strides xs, uint16_t *y,      \
                         csm_strides ys)                                                    \
{                                                                                           \
    csm_hargs a = {0};                                                                      \
    a.op = CSM_HOP_SOFTMAX; a.fmt = FMT; a.sh = sh; a.x = x; a.xs = xs; a.y = y; a.ys = ys; \
    return CSM_HFN(hrun)(&a);                                                               \
}                                                                                           \
int CSM_HFN(log_softmax_##F)(csm_shape sh, const uint16_t *x, csm_strides xs, uint16_t *y,  \
                             csm_strides ys)                                                \
{                                                                                           \
    csm_hargs a = {0};                                                                      \
    a.op = CSM_HOP_LOGSOFTMAX; a.fmt = FMT; a.sh = sh; a.x = x; a.xs = xs;                  \
    a.y = y; a.ys = ys;                                                                     \
    return CSM_HFN(hrun)(&a);                                                               \
}                                                                                           \
int CSM_HFN(xent_labels_##F)(csm_shape sh, const uint16_t *z, csm_strides zs,              \
                             const int64_t *label, csm_strides lbs,                         \
                             const csm_xent_opts *opt, double *loss, csm_strides ls,        \
                             uint16_t *grad, csm_strides gs, csm_error *err)                \
{                                                                                           \
    csm_hargs a = {0};                                                                      \
    a.op = CSM_HOP_XL; a.fmt = FMT; a.sh = sh; a.x = z; a.xs = zs; a.label = label;         \
    a.lbs = lbs; a.opt = opt; a.loss = loss; a.los = ls; a.y = grad; a.ys = gs; a.err = err; \
    return CSM_HFN(hrun)(&a);                                                               \
}                                                                                           \
int CSM_HFN(xent_soft_##F)(csm_shape sh, const uint16_t *z, csm_strides zs,                \
                           const uint16_t *t, csm_strides ts, const csm_xent_opts *opt,     \
                           double *loss, csm_strides ls, uint16_t *grad, csm_strides gs)    \
{                                                                                           \
    csm_hargs a = {0};                                                                      \
    a.op = CSM_HOP_XS; a.fmt = FMT; a.sh = sh; a.x = z; a.xs = zs; a.t = t; a.ts = ts;      \
    a.opt = opt; a.loss = loss; a.los = ls; a.y = grad; a.ys = gs;                          \
    return CSM_HFN(hrun)(&a);                                                               \
}                                                                                           \
int CSM_HFN(widen_##F)(ptrdiff_t n, const uint16_t *x, float *out)                          \
{                                                                                           \
    if (n < 0) return CSM_ERR_ARG;                                                          \
    CSM_HFN(hwiden)(FMT, x, n, out);                                                        \
    return CSM_OK;                                                                          \
}                                                                                           \
int CSM_HFN(narrow_##F)(ptrdiff_t n, const float *x, uint16_t *out)                         \
{                                                                                           \
    if (n < 0) return CSM_ERR_ARG;                                                          \
    CSM_HFN(hnarrow)(FMT, x, n, out);                                                       \
    return CSM_OK;                                                                          \
}

CSM_HALF_ENTRIES(f16, CSM_HF16)
CSM_HALF_ENTRIES(bf16, CSM_HBF16)
#undef CSM_HALF_ENTRIES

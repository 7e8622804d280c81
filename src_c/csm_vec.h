/*
 * csm_vec.h -- the few vector operations the kernels need, and the vector exp.
 *
 * Included once per kernel translation unit, inside that unit's ISA target
 * region, after the unit has defined
 *   CSM_VB       vector width in bytes (16 baseline, 32 AVX2, 64 AVX-512)
 *   CSM_X86      0 (none), 1 (SSE2), 2 (AVX2 + FMA), 3 (AVX-512)
 * With GCC or clang the types are GNU vector extensions (so one source serves
 * every width) and max/min/FMA map to the x86 instructions with exactly the
 * semantics written in the comments.  Other compilers (MSVC) get "vectors" of
 * one lane: the same code, scalar.
 *
 * Per dtype D in {f32, f64}:
 *   csm_v_D / csm_u_D     value vector and same-width unsigned vector
 *   CSM_VL_D              lanes
 *   csm_splat_D(s)        broadcast
 *   csm_max_D(a, b)       a > b ? a : b   (b if either is NaN)
 *   csm_min_D(a, b)       a < b ? a : b   (b if either is NaN)
 *   csm_madd_D(a, b, c)   a*b + c, fused on FMA paths, two roundings otherwise
 *   csm_is1_D(a, b)       1.0 where a == b, else 0.0
 *   csm_vexp_D(x)         exp, see below
 *
 * The exp (both precisions).  Clamp x (NaN passes through untouched),
 * n = round(x / ln2) by the 1.5 * 2^p "shifter", r = x - n ln2 with a two-part
 * (Cody-Waite) ln2, a Taylor polynomial for exp(r) on |r| <= ln2/2, and 2^n
 * applied as 2^floor(n/2) * 2^(n - floor(n/2)), so results in the subnormal
 * range come out of one final rounding and overflow gives +inf by itself.
 *   csm_vexp_f32: valid for every input.  x <= -104 -> +0, x >= 89 -> +inf,
 *     -inf -> 0, +inf -> +inf, NaN -> NaN.  Degree-7 polynomial (truncation
 *     error < 6e-9 relative).  Maximum error over all floats with normal
 *     results: 1 ULP on the FMA paths (measured 0.91), 1.5 ULP on the baseline
 *     path (measured 1.19); tests/test_exp_accuracy.py sweeps every 13th float
 *     in [-104, 89] per ISA against a float64 exp; subnormal results are
 *     within 1 ULP of the subnormal spacing.
 *   csm_vexp_f64: valid for every input.  x <= -746 -> +0, x >= 710 -> +inf.
 *     Degree-13 polynomial (truncation < 5e-18 relative).  Maximum error
 *     2 ULP for normal results (measured 0.85 FMA, 1.13 baseline) on 2*10**6
 *     points against a long-double exp.
 *   exp(0) is exactly 1; the kernels rely on it.
 */
#ifndef CSM_VEC_H
#define CSM_VEC_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#  define CSM_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#  define CSM_INLINE static __forceinline
#else
#  define CSM_INLINE static inline
#endif

#if (defined(__GNUC__) || defined(__clang__)) && CSM_VB > 8
#  define CSM_GNU_VEC 1
#else
#  define CSM_GNU_VEC 0
#endif

#if CSM_X86 >= 1
#  include <immintrin.h>
#endif
#if defined(__GNUC__) && !defined(__clang__)
/* Wide vectors are only passed between always-inline functions: no ABI. */
#  pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if CSM_GNU_VEC
typedef float csm_v_f32 __attribute__((vector_size(CSM_VB)));
typedef uint32_t csm_u_f32 __attribute__((vector_size(CSM_VB)));
typedef double csm_v_f64 __attribute__((vector_size(CSM_VB)));
typedef uint64_t csm_u_f64 __attribute__((vector_size(CSM_VB)));
/* VL_f32 doubles: the f32 -> f64 widening of one float vector */
typedef double csm_v_f32w __attribute__((vector_size(CSM_VB * 2)));
#  define CSM_VL_f32 (CSM_VB / 4)
#  define CSM_VL_f64 (CSM_VB / 8)
#  define CSM_LANE(v, j) ((v)[j])
#  define CSM_BITS(U, v) ((U)(v))
#  define CSM_FROMBITS(V, u) ((V)(u))
#  define CSM_WIDEN_f32(v) __builtin_convertvector((v), csm_v_f32w)
#  define CSM_NARROW_f32(w) __builtin_convertvector((w), csm_v_f32)
/* The two halves of a float vector widened to double vectors of the ISA's
 * width: in hot loops these stay in registers, where arithmetic on the
 * double-width csm_v_f32w is lowered through the stack on AVX2 / SSE2. */
typedef float csm_v_f32h __attribute__((vector_size(CSM_VB / 2)));
CSM_INLINE csm_v_f64 csm_widen_lo_f32(csm_v_f32 v)
{
    csm_v_f32h h;
    memcpy(&h, &v, sizeof h);
    return __builtin_convertvector(h, csm_v_f64);
}
CSM_INLINE csm_v_f64 csm_widen_hi_f32(csm_v_f32 v)
{
    csm_v_f32h h;
    memcpy(&h, (const char *)&v + sizeof h, sizeof h);
    return __builtin_convertvector(h, csm_v_f64);
}
#else
typedef float csm_v_f32;
typedef uint32_t csm_u_f32;
typedef double csm_v_f64;
typedef uint64_t csm_u_f64;
typedef double csm_v_f32w;
#  define CSM_VL_f32 1
#  define CSM_VL_f64 1
#  define CSM_LANE(v, j) (v)
static inline uint32_t csm_bits_f32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float csm_frombits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint64_t csm_bits_f64(double f) { uint64_t u; memcpy(&u, &f, 8); return u; }
static inline double csm_frombits_f64(uint64_t u) { double f; memcpy(&f, &u, 8); return f; }
#  define CSM_BITS(U, v) (sizeof(U) == 4 ? (U)csm_bits_f32((float)(v)) : (U)csm_bits_f64((double)(v)))
#  define CSM_FROMBITS(V, u) (sizeof(V) == 4 ? (V)csm_frombits_f32((uint32_t)(u)) : (V)csm_frombits_f64((uint64_t)(u)))
#  define CSM_WIDEN_f32(v) ((double)(v))
#  define CSM_NARROW_f32(w) ((float)(w))
#endif

CSM_INLINE csm_v_f32 csm_splat_f32(float s)
{
    csm_v_f32 v = {0};
    for (int j = 0; j < CSM_VL_f32; j++) CSM_LANE(v, j) = s;
    return v;
}

CSM_INLINE csm_v_f64 csm_splat_f64(double s)
{
    csm_v_f64 v = {0};
    for (int j = 0; j < CSM_VL_f64; j++) CSM_LANE(v, j) = s;
    return v;
}

/* ---- max / min / fused multiply-add ---------------------------------------- */
#if CSM_X86 == 3
#  define csm_max_f32(a, b) _mm512_max_ps((a), (b))
#  define csm_min_f32(a, b) _mm512_min_ps((a), (b))
#  define csm_max_f64(a, b) _mm512_max_pd((a), (b))
#  define csm_min_f64(a, b) _mm512_min_pd((a), (b))
#  define csm_madd_f32(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#  define csm_madd_f64(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#elif CSM_X86 == 2
#  define csm_max_f32(a, b) _mm256_max_ps((a), (b))
#  define csm_min_f32(a, b) _mm256_min_ps((a), (b))
#  define csm_max_f64(a, b) _mm256_max_pd((a), (b))
#  define csm_min_f64(a, b) _mm256_min_pd((a), (b))
#  define csm_madd_f32(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#  define csm_madd_f64(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#elif CSM_X86 == 1 && CSM_GNU_VEC
#  define csm_max_f32(a, b) _mm_max_ps((a), (b))
#  define csm_min_f32(a, b) _mm_min_ps((a), (b))
#  define csm_max_f64(a, b) _mm_max_pd((a), (b))
#  define csm_min_f64(a, b) _mm_min_pd((a), (b))
#  define csm_madd_f32(a, b, c) ((a) * (b) + (c))
#  define csm_madd_f64(a, b, c) ((a) * (b) + (c))
#elif CSM_GNU_VEC
/* Portable GNU-vector selects (aarch64 and others). */
#  define CSM_SEL_(V, U, m, a, b) ((V)(((U)(m) & (U)(a)) | (~(U)(m) & (U)(b))))
#  define csm_max_f32(a, b) CSM_SEL_(csm_v_f32, csm_u_f32, (a) > (b), (a), (b))
#  define csm_min_f32(a, b) CSM_SEL_(csm_v_f32, csm_u_f32, (a) < (b), (a), (b))
#  define csm_max_f64(a, b) CSM_SEL_(csm_v_f64, csm_u_f64, (a) > (b), (a), (b))
#  define csm_min_f64(a, b) CSM_SEL_(csm_v_f64, csm_u_f64, (a) < (b), (a), (b))
#  define csm_madd_f32(a, b, c) ((a) * (b) + (c))
#  define csm_madd_f64(a, b, c) ((a) * (b) + (c))
#else
#  define csm_max_f32(a, b) ((a) > (b) ? (a) : (b))
#  define csm_min_f32(a, b) ((a) < (b) ? (a) : (b))
#  define csm_max_f64(a, b) ((a) > (b) ? (a) : (b))
#  define csm_min_f64(a, b) ((a) < (b) ? (a) : (b))
#  define csm_madd_f32(a, b, c) ((a) * (b) + (c))
#  define csm_madd_f64(a, b, c) ((a) * (b) + (c))
#endif

#if CSM_GNU_VEC
#  define csm_is1_f32(a, b) \
      ((csm_v_f32)((csm_u_f32)((a) == (b)) & CSM_BITS(csm_u_f32, csm_splat_f32(1.0f))))
#  define csm_is1_f64(a, b) \
      ((csm_v_f64)((csm_u_f64)((a) == (b)) & CSM_BITS(csm_u_f64, csm_splat_f64(1.0))))
#else
#  define csm_is1_f32(a, b) ((a) == (b) ? 1.0f : 0.0f)
#  define csm_is1_f64(a, b) ((a) == (b) ? 1.0 : 0.0)
#endif

/* ---- exp ---------------------------------------------------------------------- */

CSM_INLINE csm_v_f32 csm_vexp_f32(csm_v_f32 x)
{
#define S_(c) csm_splat_f32(c)
    const float shifter = 12582912.0f;                 /* 1.5 * 2^23 */
    x = csm_max_f32(S_(-104.0f), x);                   /* NaN stays NaN */
    x = csm_min_f32(S_(89.0f), x);
    csm_v_f32 t = csm_madd_f32(x, S_(1.44269504088896341f), S_(shifter));
    csm_v_f32 n = t - S_(shifter);
    csm_v_f32 r = csm_madd_f32(n, S_(-0.693145751953125f), x);   /* ln2 hi: n*hi exact */
    r = csm_madd_f32(n, S_(-1.428606765330187e-06f), r);          /* ln2 lo */
    csm_v_f32 p = S_(1.98412698e-4f);                  /* 1/7! ... 1/0! */
    p = csm_madd_f32(p, r, S_(1.38888889e-3f));
    p = csm_madd_f32(p, r, S_(8.33333333e-3f));
    p = csm_madd_f32(p, r, S_(4.16666667e-2f));
    p = csm_madd_f32(p, r, S_(1.66666667e-1f));
    p = csm_madd_f32(p, r, S_(0.5f));
    p = csm_madd_f32(p, r, S_(1.0f));
    p = csm_madd_f32(p, r, S_(1.0f));
    /* n + 256 in [105, 385] as an integer; halves give two normal powers of 2 */
    csm_u_f32 ni = CSM_BITS(csm_u_f32, t) - CSM_BITS(csm_u_f32, S_(shifter)) + 256u;
    csm_u_f32 n1 = ni >> 1, n2 = ni - n1;
    csm_v_f32 s1 = CSM_FROMBITS(csm_v_f32, (n1 - 1u) << 23);    /* 2^(n1 - 128) */
    csm_v_f32 s2 = CSM_FROMBITS(csm_v_f32, (n2 - 1u) << 23);
    return (p * s1) * s2;
#undef S_
}

CSM_INLINE csm_v_f64 csm_vexp_f64(csm_v_f64 x)
{
#define S_(c) csm_splat_f64(c)
    const double shifter = 6755399441055744.0;         /* 1.5 * 2^52 */
    x = csm_max_f64(S_(-746.0), x);
    x = csm_min_f64(S_(710.0), x);
    csm_v_f64 t = csm_madd_f64(x, S_(1.4426950408889634074), S_(shifter));
    csm_v_f64 n = t - S_(shifter);
    csm_v_f64 r = csm_madd_f64(n, S_(-6.93147180369123816490e-01), x);
    r = csm_madd_f64(n, S_(-1.90821492927058770002e-10), r);
    csm_v_f64 p = S_(1.6059043836821613e-10);          /* 1/13! ... 1/0! */
    p = csm_madd_f64(p, r, S_(2.0876756987868099e-09));
    p = csm_madd_f64(p, r, S_(2.5052108385441720e-08));
    p = csm_madd_f64(p, r, S_(2.7557319223985893e-07));
    p = csm_madd_f64(p, r, S_(2.7557319223985888e-06));
    p = csm_madd_f64(p, r, S_(2.4801587301587302e-05));
    p = csm_madd_f64(p, r, S_(1.9841269841269841e-04));
    p = csm_madd_f64(p, r, S_(1.3888888888888889e-03));
    p = csm_madd_f64(p, r, S_(8.3333333333333333e-03));
    p = csm_madd_f64(p, r, S_(4.1666666666666667e-02));
    p = csm_madd_f64(p, r, S_(1.6666666666666667e-01));
    p = csm_madd_f64(p, r, S_(0.5));
    p = csm_madd_f64(p, r, S_(1.0));
    p = csm_madd_f64(p, r, S_(1.0));
    csm_u_f64 ni = CSM_BITS(csm_u_f64, t) - CSM_BITS(csm_u_f64, S_(shifter)) + 2048u;
    csm_u_f64 n1 = ni >> 1, n2 = ni - n1;
    csm_v_f64 s1 = CSM_FROMBITS(csm_v_f64, (n1 - 1u) << 52);    /* 2^(n1 - 1024) */
    csm_v_f64 s2 = CSM_FROMBITS(csm_v_f64, (n2 - 1u) << 52);
    return (p * s1) * s2;
#undef S_
}

/*
 * tanh for the soft-cap.  |x| >= 1/8: sign(x) (1 - 2 / (exp(2|x|) + 1))
 * (relative error a few ULP there); |x| < 1/8: the odd Taylor series to x^15
 * (truncation < 4e-17 relative), so c tanh(z / c) keeps z's relative
 * precision when c >> |z|.  +-inf -> +-1, NaN -> NaN.
 */
#define CSM_TANH_BODY(D, U, splat, vexp, madd)                                        \
    const U sign = CSM_BITS(U, splat(-0.0));                                          \
    U xb = CSM_BITS(U, x);                                                            \
    D ax = CSM_FROMBITS(D, xb & ~sign);                                               \
    D e = vexp(ax + ax);                                                              \
    D big = splat(1.0) - splat(2.0) / (e + splat(1.0));                               \
    big = CSM_FROMBITS(D, CSM_BITS(U, big) | (xb & sign));                            \
    D w = x * x;                                                                      \
    D p = splat(-929569.0 / 638512875.0);                                             \
    p = madd(p, w, splat(21844.0 / 6081075.0));                                       \
    p = madd(p, w, splat(-1382.0 / 155925.0));                                        \
    p = madd(p, w, splat(62.0 / 2835.0));                                             \
    p = madd(p, w, splat(-17.0 / 315.0));                                             \
    p = madd(p, w, splat(2.0 / 15.0));                                                \
    p = madd(p, w, splat(-1.0 / 3.0));                                                \
    D small = madd(x * w, p, x);                                                      \
    U m = (U)(ax < splat(0.125));                                                     \
    return CSM_FROMBITS(D, (CSM_BITS(U, small) & m) | (CSM_BITS(U, big) & ~m));

#if CSM_GNU_VEC
CSM_INLINE csm_v_f32 csm_vtanh_f32(csm_v_f32 x)
{
#define CSM_SPLAT32_(c) csm_splat_f32((float)(c))
    CSM_TANH_BODY(csm_v_f32, csm_u_f32, CSM_SPLAT32_, csm_vexp_f32, csm_madd_f32)
#undef CSM_SPLAT32_
}

CSM_INLINE csm_v_f64 csm_vtanh_f64(csm_v_f64 x)
{
    CSM_TANH_BODY(csm_v_f64, csm_u_f64, csm_splat_f64, csm_vexp_f64, csm_madd_f64)
}
#else
CSM_INLINE csm_v_f32 csm_vtanh_f32(csm_v_f32 x) { return tanhf(x); }
CSM_INLINE csm_v_f64 csm_vtanh_f64(csm_v_f64 x) { return tanh(x); }
#endif
#undef CSM_TANH_BODY

/* ---- lane masks and masked loads/stores (row tails) ------------------------ */
/* csm_lanemask_D(n): lanes j < n all ones, others zero (0 <= n <= VL). */
CSM_INLINE csm_u_f32 csm_lanemask_f32(ptrdiff_t n)
{
#if CSM_GNU_VEC
    csm_u_f32 iota = {0};
    for (int j = 0; j < CSM_VL_f32; j++) iota[j] = (uint32_t)j;
    return (csm_u_f32)(iota < (uint32_t)n);
#else
    return n > 0 ? 0xffffffffu : 0u;
#endif
}

CSM_INLINE csm_u_f64 csm_lanemask_f64(ptrdiff_t n)
{
#if CSM_GNU_VEC
    csm_u_f64 iota = {0};
    for (int j = 0; j < CSM_VL_f64; j++) iota[j] = (uint64_t)j;
    return (csm_u_f64)(iota < (uint64_t)n);
#else
    return n > 0 ? ~(uint64_t)0 : 0u;
#endif
}

/* Contiguous masked load (masked lanes read as 0, never fault) and store. */
#if CSM_X86 == 3
#  define CSM_HAVE_MASKED 1
#  define csm_mload_f32(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1u), (p))
#  define csm_mstore_f32(p, n, v) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1u), (v))
#  define csm_mload_f64(p, n) _mm512_maskz_loadu_pd((__mmask8)((1u << (n)) - 1u), (p))
#  define csm_mstore_f64(p, n, v) _mm512_mask_storeu_pd((p), (__mmask8)((1u << (n)) - 1u), (v))
#elif CSM_X86 == 2
#  define CSM_HAVE_MASKED 1
#  define csm_mload_f32(p, n) _mm256_maskload_ps((p), (__m256i)csm_lanemask_f32(n))
#  define csm_mstore_f32(p, n, v) _mm256_maskstore_ps((p), (__m256i)csm_lanemask_f32(n), (v))
#  define csm_mload_f64(p, n) _mm256_maskload_pd((p), (__m256i)csm_lanemask_f64(n))
#  define csm_mstore_f64(p, n, v) _mm256_maskstore_pd((p), (__m256i)csm_lanemask_f64(n), (v))
#else
#  define CSM_HAVE_MASKED 0
#endif

/*
 * log1p(s) for s >= 0 (or NaN), in double, vectorized: used to finish many
 * short rows at once.  u = 1 + s, u = 2^k m with m in [sqrt(1/2), sqrt(2)),
 * log m = 2 atanh(f / (2 + f)), f = m - 1, series to z^23 (truncation below
 * 1e-18 relative), plus the rounding correction (s - (u - 1)) / u.
 * Error <= 2 ULP (tests compare with math.log1p).
 */
CSM_INLINE csm_v_f64 csm_vlog1p_f64(csm_v_f64 s)
{
#define S_(c) csm_splat_f64(c)
    const csm_v_f64 one = S_(1.0);
    const csm_v_f64 two52 = S_(4503599627370496.0);          /* 2^52 */
    csm_v_f64 u = one + s;
    csm_v_f64 corr = (s - (u - one)) / u;
    csm_u_f64 b = CSM_BITS(csm_u_f64, u);
    /* k = biased exponent - 1023, converted exactly through the 2^52 trick */
    csm_v_f64 k = CSM_FROMBITS(csm_v_f64, (b >> 52) | CSM_BITS(csm_u_f64, two52)) - two52
                  - S_(1023.0);
    /* m in [1, 2): mantissa bits under the exponent of 1.0 */
    const csm_u_f64 expo = CSM_BITS(csm_u_f64, S_(INFINITY));  /* exponent field mask */
    csm_v_f64 m = CSM_FROMBITS(csm_v_f64, (b & ~expo) | CSM_BITS(csm_u_f64, one));
    /* m > sqrt(2): halve it, k + 1 */
    csm_u_f64 big = (csm_u_f64)(m > S_(1.4142135623730951));
    m = CSM_FROMBITS(csm_v_f64, (CSM_BITS(csm_u_f64, m * S_(0.5)) & big) |
                                (CSM_BITS(csm_u_f64, m) & ~big));
    k = k + CSM_FROMBITS(csm_v_f64, CSM_BITS(csm_u_f64, one) & big);
    csm_v_f64 f = m - one;
    csm_v_f64 z = f / (S_(2.0) + f);
    csm_v_f64 w = z * z;
    csm_v_f64 q = S_(1.0 / 23.0);
    q = csm_madd_f64(q, w, S_(1.0 / 21.0));
    q = csm_madd_f64(q, w, S_(1.0 / 19.0));
    q = csm_madd_f64(q, w, S_(1.0 / 17.0));
    q = csm_madd_f64(q, w, S_(1.0 / 15.0));
    q = csm_madd_f64(q, w, S_(1.0 / 13.0));
    q = csm_madd_f64(q, w, S_(1.0 / 11.0));
    q = csm_madd_f64(q, w, S_(1.0 / 9.0));
    q = csm_madd_f64(q, w, S_(1.0 / 7.0));
    q = csm_madd_f64(q, w, S_(1.0 / 5.0));
    q = csm_madd_f64(q, w, S_(1.0 / 3.0));
    csm_v_f64 z2 = z + z;
    csm_v_f64 lo = csm_madd_f64(k, S_(1.90821492927058770002e-10), corr) + z2 * w * q;
    csm_v_f64 hi = csm_madd_f64(k, S_(6.93147180369123816490e-01), z2);
    return (hi + lo) + (s - s);        /* (s - s) carries a NaN through */
#undef S_
}

#endif /* CSM_VEC_H */

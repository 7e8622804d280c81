/*
 * csm_exp.h -- branch-free exp for float and double, written so that a loop
 * calling it auto-vectorizes (no libm call, no data-dependent branch).
 *
 * Method (both precisions): clamp x, n = round(x / ln2) by the 1.5*2^p
 * "shifter" trick, r = x - n*ln2 with a two-part (Cody-Waite) ln2, a Taylor
 * polynomial for exp(r) on |r| <= ln2/2, and 2^n applied as two factors
 * 2^(n/2) * 2^(n - n/2) so that results down into the subnormal range are
 * produced by one final rounding (gradual underflow is honoured) and +inf is
 * produced for overflow without special-casing.
 *
 * Valid range: every input.
 *   csm_expf: x <= -104   -> +0   (true value < 2^-150, rounds to 0)
 *             x >=  89    -> +inf (true value > FLT_MAX)
 *             NaN -> NaN, -inf -> 0, +inf -> +inf.
 *   csm_exp:  x <= -746   -> +0,  x >= 710 -> +inf, NaN -> NaN.
 * Accuracy (measured by tests/test_exp.py sweeping every float in
 * [-104, 89] for csm_expf, and 10**7 doubles in [-746, 710]):
 *   csm_expf: max error <= 2 ULP for normal results (measured: see README)
 *   csm_exp:  max error <= 2 ULP for normal results
 * Subnormal results carry at most 1 ULP of the smallest subnormal extra.
 * exp(0) is exactly 1 (the kernels rely on this).
 *
 * CSM_MADD(a, b, c) is a*b + c.  Inside an FMA target region (AVX2/AVX-512
 * builds) it is a fused multiply-add; on the baseline path it is a multiply
 * and an add.  The build uses -ffp-contract=off so the compiler never makes
 * that choice on its own.
 */
#ifndef CSM_EXP_H
#define CSM_EXP_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#  define CSM_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#  define CSM_INLINE static __forceinline
#else
#  define CSM_INLINE static inline
#endif

#if defined(__FMA__) && (defined(__GNUC__) || defined(__clang__))
#  define CSM_MADDF(a, b, c) __builtin_fmaf((a), (b), (c))
#  define CSM_MADD(a, b, c) __builtin_fma((a), (b), (c))
#else
#  define CSM_MADDF(a, b, c) ((a) * (b) + (c))
#  define CSM_MADD(a, b, c) ((a) * (b) + (c))
#endif

CSM_INLINE uint32_t csm_f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
CSM_INLINE float csm_u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
CSM_INLINE uint64_t csm_d2u(double f) { uint64_t u; memcpy(&u, &f, 8); return u; }
CSM_INLINE double csm_u2d(uint64_t u) { double f; memcpy(&f, &u, 8); return f; }

CSM_INLINE float csm_expf(float x)
{
    const float shifter = 12582912.0f;          /* 1.5 * 2^23 */
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f;    /* 15 significant bits: n*ln2_hi exact */
    const float ln2_lo = 1.428606765330187e-06f;
    /* Clamp; written so that NaN falls through both comparisons unchanged. */
    x = x < -104.0f ? -104.0f : x;
    x = x > 89.0f ? 89.0f : x;
    float t = CSM_MADDF(x, log2e, shifter);
    float n = t - shifter;
    float r = CSM_MADDF(n, -ln2_hi, x);
    r = CSM_MADDF(n, -ln2_lo, r);
    /* exp(r), |r| <= 0.3466: Taylor to degree 7 (truncation < 6e-9 relative). */
    float p = 1.98412698e-4f;                    /* 1/7! */
    p = CSM_MADDF(p, r, 1.38888889e-3f);         /* 1/6! */
    p = CSM_MADDF(p, r, 8.33333333e-3f);         /* 1/5! */
    p = CSM_MADDF(p, r, 4.16666667e-2f);         /* 1/4! */
    p = CSM_MADDF(p, r, 1.66666667e-1f);         /* 1/3! */
    p = CSM_MADDF(p, r, 0.5f);
    p = CSM_MADDF(p, r, 1.0f);
    p = CSM_MADDF(p, r, 1.0f);
    /* n as an integer in [-151, 129]; split into halves so each 2^k is normal. */
    uint32_t ni = csm_f2u(t) - csm_f2u(shifter) + 256u;   /* n + 256 >= 0 */
    uint32_t n1 = ni >> 1;                                 /* floor(n/2) + 128 */
    uint32_t n2 = ni - n1;                                 /* n - floor(n/2) + 128 */
    float s1 = csm_u2f((n1 - 1u) << 23);                  /* 2^(n1-128) */
    float s2 = csm_u2f((n2 - 1u) << 23);
    return (p * s1) * s2;
}

CSM_INLINE double csm_exp(double x)
{
    const double shifter = 6755399441055744.0;    /* 1.5 * 2^52 */
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 6.93147180369123816490e-01;  /* 32 significant bits */
    const double ln2_lo = 1.90821492927058770002e-10;
    x = x < -746.0 ? -746.0 : x;
    x = x > 710.0 ? 710.0 : x;
    double t = CSM_MADD(x, log2e, shifter);
    double n = t - shifter;
    double r = CSM_MADD(n, -ln2_hi, x);
    r = CSM_MADD(n, -ln2_lo, r);
    /* exp(r), |r| <= 0.3466: Taylor to degree 13 (truncation < 5e-18 relative). */
    double p = 1.6059043836821613e-10;            /* 1/13! */
    p = CSM_MADD(p, r, 2.0876756987868099e-09);   /* 1/12! */
    p = CSM_MADD(p, r, 2.5052108385441720e-08);   /* 1/11! */
    p = CSM_MADD(p, r, 2.7557319223985893e-07);   /* 1/10! */
    p = CSM_MADD(p, r, 2.7557319223985888e-06);   /* 1/9! */
    p = CSM_MADD(p, r, 2.4801587301587302e-05);   /* 1/8! */
    p = CSM_MADD(p, r, 1.9841269841269841e-04);   /* 1/7! */
    p = CSM_MADD(p, r, 1.3888888888888889e-03);   /* 1/6! */
    p = CSM_MADD(p, r, 8.3333333333333333e-03);   /* 1/5! */
    p = CSM_MADD(p, r, 4.1666666666666667e-02);   /* 1/4! */
    p = CSM_MADD(p, r, 1.6666666666666667e-01);   /* 1/3! */
    p = CSM_MADD(p, r, 0.5);
    p = CSM_MADD(p, r, 1.0);
    p = CSM_MADD(p, r, 1.0);
    /* n in [-1077, 1025] */
    uint64_t ni = csm_d2u(t) - csm_d2u(shifter) + 2048u;  /* n + 2048 >= 0 */
    uint64_t n1 = ni >> 1;                                 /* floor(n/2) + 1024 */
    uint64_t n2 = ni - n1;
    double s1 = csm_u2d((n1 - 1u) << 52);                 /* 2^(n1-1024) */
    double s2 = csm_u2d((n2 - 1u) << 52);
    return (p * s1) * s2;
}

#endif /* CSM_EXP_H */

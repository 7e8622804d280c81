/*
 * csm_half.h -- portable conversions between float and the two 16-bit float
 * formats (plain C, any compiler, any architecture).
 *
 *   f16   IEEE 754 binary16: 1 sign, 5 exponent, 10 fraction bits
 *   bf16  bfloat16: the top half of a binary32 (8 exponent, 7 fraction bits)
 *
 * Widening is exact.  Narrowing rounds once to nearest, ties to even; values
 * beyond the largest finite half round to +-inf exactly when round-to-nearest
 * says so; NaN stays NaN with its sign and top payload bits and the quiet bit
 * set.  These are the results of x86's F16C instructions (vcvtph2ps,
 * vcvtps2ph with round-to-nearest) and of ml_dtypes' bfloat16 casts, bit for
 * bit, so the vector paths (kernels_half.h) and this one agree on every input
 * (tests/test_half.py checks all 65536 halves and a sweep of floats per ISA).
 * The subnormal case relies on the default floating-point environment (round
 * to nearest, no flush-to-zero), which the library never changes.
 */
#ifndef CSM_HALF_H
#define CSM_HALF_H

#include <stdint.h>
#include <string.h>

static inline float csm_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t csm_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float csm_f16_to_f32(uint16_t h)
{
    const uint32_t s = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f)                                   /* inf, NaN (quieted) */
        return csm_bits_f32(s | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u));
    if (e != 0) return csm_bits_f32(s | ((e + 112u) << 23) | (m << 13));
    /* zero or subnormal: m * 2^-24, exact in float */
    const float f = (float)m * 0x1p-24f;
    return s ? -f : f;
}

static inline uint16_t csm_f32_to_f16(float f)
{
    const uint32_t x = csm_f32_bits(f);
    const uint16_t s = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(s | 0x7e00u | ((a >> 13) & 0x3ffu));   /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(s | 0x7c00u);   /* >= 65520: inf (and inf) */
    if (a >= 0x38800000u) {                                  /* a normal half: >= 2^-14 */
        const uint32_t r = a + 0xfffu + ((a >> 13) & 1u);   /* ties to even at bit 13 */
        return (uint16_t)(s | ((r - 0x38000000u) >> 13));
    }
    /* a subnormal half or zero: adding 0.5 (ulp 2^-24) rounds |f| to a multiple of
     * 2^-24, to nearest even; the low bits of the sum are that multiple */
    const float g = csm_bits_f32(a) + 0.5f;
    return (uint16_t)(s | (csm_f32_bits(g) - 0x3f000000u));
}

static inline float csm_bf16_to_f32(uint16_t h)
{
    return csm_bits_f32((uint32_t)h << 16);
}

static inline uint16_t csm_f32_to_bf16(float f)
{
    const uint32_t x = csm_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);   /* NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

#endif

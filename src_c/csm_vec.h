/*
 * csm_vec.h -- the few vector operations the kernels need (the vector exp is in csm_exp.h).
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
 *   csm_any_f32(m)        any lane of a comparison mask set
 *   csm_lanemask_D(n)     lanes j < n all ones
 *   csm_mload_D, csm_mstore_D   masked contiguous loads / stores (AVX2, AVX-512)
 * The transcendental functions are in csm_exp.h.
 */
#ifndef CSM_VEC_H
#define CSM_VEC_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#  define CSM_INLINE static inline __attribute__((always_inline))
#  define CSM_NOINLINE __attribute__((noinline))
/* a helper some kernel families do not call (no -Wunused-function) */
#  define CSM_MAYBE_UNUSED __attribute__((unused))
#elif defined(_MSC_VER)
#  define CSM_INLINE static __forceinline
#  define CSM_NOINLINE __declspec(noinline)
#  define CSM_MAYBE_UNUSED
#else
#  define CSM_INLINE static inline
#  define CSM_NOINLINE
#  define CSM_MAYBE_UNUSED
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
/* ... and back: the float vector of two double halves (one rounding each) */
CSM_INLINE csm_v_f32 csm_narrow2_f32(csm_v_f64 lo, csm_v_f64 hi)
{
    csm_v_f32h a = __builtin_convertvector(lo, csm_v_f32h);
    csm_v_f32h b = __builtin_convertvector(hi, csm_v_f32h);
    csm_v_f32 v;
    memcpy(&v, &a, sizeof a);
    memcpy((char *)&v + sizeof a, &b, sizeof b);
    return v;
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

#if CSM_GNU_VEC
/* A scalar operand of a vector operation is broadcast: one vbroadcast, which
 * GCC hoists out of loops (a lane-by-lane build it recomputed per vector).
 * s - 0 keeps the sign of -0.0 and the payload of a NaN. */
CSM_INLINE csm_v_f32 csm_splat_f32(float s) { return s - (csm_v_f32){0}; }
CSM_INLINE csm_v_f64 csm_splat_f64(double s) { return s - (csm_v_f64){0}; }
#else
CSM_INLINE csm_v_f32 csm_splat_f32(float s) { return s; }
CSM_INLINE csm_v_f64 csm_splat_f64(double s) { return s; }
#endif

/* Comparison results as lane masks (all ones / zero; a scalar comparison
 * gives 0 / 1), and selects on them: csm_sel_D(m, a, b) = m ? a : b. */
#if CSM_GNU_VEC
#  define CSM_MASK_f32(c) ((csm_u_f32)(c))
#  define CSM_MASK_f64(c) ((csm_u_f64)(c))
#else
#  define CSM_MASK_f32(c) ((csm_u_f32)0 - (csm_u_f32)(c))
#  define CSM_MASK_f64(c) ((csm_u_f64)0 - (csm_u_f64)(c))
#endif
CSM_INLINE csm_v_f32 csm_sel_f32(csm_u_f32 m, csm_v_f32 a, csm_v_f32 b)
{
    return CSM_FROMBITS(csm_v_f32, (CSM_BITS(csm_u_f32, a) & m) | (CSM_BITS(csm_u_f32, b) & ~m));
}
CSM_INLINE csm_v_f64 csm_sel_f64(csm_u_f64 m, csm_v_f64 a, csm_v_f64 b)
{
    return CSM_FROMBITS(csm_v_f64, (CSM_BITS(csm_u_f64, a) & m) | (CSM_BITS(csm_u_f64, b) & ~m));
}
/* is any lane of the mask m set? */
#if CSM_X86 == 3
#  define csm_anym_f32(m) (_mm512_test_epi32_mask((__m512i)(m), (__m512i)(m)) != 0)
#  define csm_anym_f64(m) (_mm512_test_epi64_mask((__m512i)(m), (__m512i)(m)) != 0)
#elif CSM_X86 == 2
#  define csm_anym_f32(m) (_mm256_movemask_ps((__m256)(m)) != 0)
#  define csm_anym_f64(m) (_mm256_movemask_pd((__m256d)(m)) != 0)
#elif CSM_X86 == 1 && CSM_GNU_VEC
#  define csm_anym_f32(m) (_mm_movemask_ps((__m128)(m)) != 0)
#  define csm_anym_f64(m) (_mm_movemask_pd((__m128d)(m)) != 0)
#else
CSM_INLINE int csm_anym_f32(csm_u_f32 m)
{
    uint32_t a = 0;
    for (int j = 0; j < CSM_VL_f32; j++) a |= CSM_LANE(m, j);
    return a != 0;
}
CSM_INLINE int csm_anym_f64(csm_u_f64 m)
{
    uint64_t a = 0;
    for (int j = 0; j < CSM_VL_f64; j++) a |= CSM_LANE(m, j);
    return a != 0;
}
#endif

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

/* csm_any_f32(m): is any lane of the comparison mask m set? */
#if CSM_X86 == 3
#  define csm_any_f32(m) (_mm512_test_epi32_mask((__m512i)(m), (__m512i)(m)) != 0)
#elif CSM_X86 == 2
#  define csm_any_f32(m) (_mm256_movemask_ps((__m256)(m)) != 0)
#elif CSM_X86 == 1 && CSM_GNU_VEC
#  define csm_any_f32(m) (_mm_movemask_ps((__m128)(m)) != 0)
#elif CSM_GNU_VEC
CSM_INLINE int csm_any_f32(csm_u_f32 m)
{
    uint32_t a = 0;
    for (int j = 0; j < CSM_VL_f32; j++) a |= m[j];
    return a != 0;
}
#else
#  define csm_any_f32(m) ((m) != 0)
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

#endif /* CSM_VEC_H */

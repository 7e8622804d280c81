/* AVX2 build of the half-precision family (kernels_half.h): F16C conversions
 * around the AVX2 float32 kernels, in a target region as kernels_avx2.c (the
 * dispatcher selects AVX2 only on CPUs with F16C, which every AVX2 CPU has). */
#include "csm_internal.h"

#if defined(CSM_HAVE_X86_DISPATCH)
#  include <immintrin.h>
#  if defined(__clang__)
#    pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#  else
#    pragma GCC push_options
#    pragma GCC target("avx2,fma,f16c")
#  endif

#define CSM_X86 2
#define CSM_ISA avx2
#include "kernels_half.h"

#  if defined(__clang__)
#    pragma clang attribute pop
#  else
#    pragma GCC pop_options
#  endif
#else
typedef int csm_half_avx2_unused;   /* keep the translation unit non-empty */
#endif

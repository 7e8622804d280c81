/* AVX2 + FMA build of the kernels, compiled inside a target region so the
 * file needs no per-file compiler flags (the rest of the extension stays
 * baseline).  Selected at run time by dispatch.c only if the CPU and OS
 * support AVX2, FMA, F16C (the half-precision family's conversions) and the
 * YMM state. */
#include "csm_internal.h"

#if defined(CSM_HAVE_X86_DISPATCH)
#  include <immintrin.h>
#  if defined(__clang__)
#    pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#  else
#    pragma GCC push_options
#    pragma GCC target("avx2,fma,f16c")
#  endif

#define CSM_VB 32
#define CSM_X86 2
#define CSM_ISA avx2
#include "kernels_table.h"

#  if defined(__clang__)
#    pragma clang attribute pop
#  else
#    pragma GCC pop_options
#  endif
#else
#  if defined(CSM_FAMILY_PARTIAL)
typedef int csm_partial_avx2_unused;
#  elif defined(CSM_FAMILY_LOSSES)
typedef int csm_losses_avx2_unused;
#  elif defined(CSM_FAMILY_HALF)
typedef int csm_half_avx2_unused;
#  else
typedef int csm_avx2_unused;
#  endif   /* keep the translation unit non-empty */
#endif

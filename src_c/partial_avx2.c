/* AVX2 + FMA build of the partial family (kernels_partial.h): its own translation
 * unit, so that the build compiles it beside kernels_avx2.c on another core;
 * the same target region and vector width as kernels_avx2.c. */
#include "csm_internal.h"

#if defined(CSM_HAVE_X86_DISPATCH)
#  include <immintrin.h>
#  if defined(__clang__)
#    pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#  else
#    pragma GCC push_options
#    pragma GCC target("avx2,fma")
#  endif

#define CSM_VB 32
#define CSM_X86 2
#define CSM_ISA avx2
#define CSM_FAMILY_PARTIAL 1
#include "kernels_table.h"

#  if defined(__clang__)
#    pragma clang attribute pop
#  else
#    pragma GCC pop_options
#  endif
#else
typedef int csm_partial_avx2_unused;   /* keep the translation unit non-empty */
#endif

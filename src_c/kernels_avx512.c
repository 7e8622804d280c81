/* AVX-512 (F, DQ, BW, VL) build of the kernels with 512-bit vectors; see
 * kernels_avx2.c for the scheme. */
#include "csm_internal.h"

#if defined(CSM_HAVE_X86_DISPATCH)
#  include <immintrin.h>
#  if defined(__clang__)
#    pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c"))), apply_to = function)
#  else
#    pragma GCC push_options
#    pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")
#  endif

#define CSM_VB 64
#define CSM_X86 3
#define CSM_ISA avx512
#include "kernels_table.h"

#  if defined(__clang__)
#    pragma clang attribute pop
#  else
#    pragma GCC pop_options
#  endif
#else
#  if defined(CSM_FAMILY_PARTIAL)
typedef int csm_partial_avx512_unused;
#  elif defined(CSM_FAMILY_LOSSES)
typedef int csm_losses_avx512_unused;
#  elif defined(CSM_FAMILY_HALF)
typedef int csm_half_avx512_unused;
#  else
typedef int csm_avx512_unused;
#  endif
#endif

/* AVX-512 build of the half-precision family (kernels_half.h); see half_avx2.c. */
#include "csm_internal.h"

#if defined(CSM_HAVE_X86_DISPATCH)
#  include <immintrin.h>
#  if defined(__clang__)
#    pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c"))), apply_to = function)
#  else
#    pragma GCC push_options
#    pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")
#  endif

#define CSM_X86 3
#define CSM_ISA avx512
#include "kernels_half.h"

#  if defined(__clang__)
#    pragma clang attribute pop
#  else
#    pragma GCC pop_options
#  endif
#else
typedef int csm_half_avx512_unused;
#endif

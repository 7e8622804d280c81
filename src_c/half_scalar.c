/* Baseline build of the half-precision family (kernels_half.h): the portable
 * conversions of csm_half.h around the baseline float32 kernels. */
#include "csm_internal.h"

#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
#  define CSM_X86 1
#else
#  define CSM_X86 0
#endif
#define CSM_ISA scalar
#include "kernels_half.h"

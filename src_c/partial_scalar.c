/* Baseline build of the partial family (kernels_partial.h): its own translation
 * unit, so that the build compiles it beside kernels_scalar.c on another core;
 * the same target region and vector width as kernels_scalar.c. */
#include "csm_internal.h"

#define CSM_VB 16
#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
#  define CSM_X86 1
#else
#  define CSM_X86 0
#endif
#define CSM_ISA scalar
#define CSM_FAMILY_PARTIAL 1
#include "kernels_table.h"

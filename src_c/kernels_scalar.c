/* Baseline build of the kernels: the compiler's default target.  On x86-64
 * that is SSE2 (128-bit vectors, no FMA); on aarch64 NEON through GNU
 * vectors; with MSVC one-lane "vectors" (plain C).  Always present. */
#include "csm_internal.h"

#define CSM_VB 16
#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
#  define CSM_X86 1
#else
#  define CSM_X86 0
#endif
#define CSM_ISA scalar
#include "kernels_table.h"

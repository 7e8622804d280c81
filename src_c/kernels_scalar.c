/* Baseline build of the kernels: the compiler's default target (SSE2 on
 * x86-64, NEON on aarch64, plain C elsewhere).  Always present. */
#include "csm_internal.h"

#define CSM_ISA scalar
#include "kernels_table.h"

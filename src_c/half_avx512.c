/* The half-precision family (kernels_half.h) for the same ISA as kernels_avx512.c:
 * that file again with CSM_FAMILY_HALF, as a translation unit of its own. */
#define CSM_FAMILY_HALF 1
#include "kernels_avx512.c"

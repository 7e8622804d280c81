/* The half-precision family (kernels_half.h: F16C conversions around the float32
 * kernels) for the same ISA as kernels_avx2.c: that file again with CSM_FAMILY_HALF,
 * as a translation unit of its own. */
#define CSM_FAMILY_HALF 1
#include "kernels_avx2.c"

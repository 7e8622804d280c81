/* The half-precision family (kernels_half.h: the portable conversions of csm_half.h
 * around the baseline float32 kernels) for the same ISA as kernels_scalar.c: that file
 * again with CSM_FAMILY_HALF, as a translation unit of its own. */
#define CSM_FAMILY_HALF 1
#include "kernels_scalar.c"

/* The neighbouring losses (kernels_bce.h, kernels_kl.h, kernels_tokens.h) for the same
 * ISA as kernels_scalar.c: that file again with CSM_FAMILY_LOSSES, as a translation unit
 * of its own so that the build compiles it beside the others on another core. */
#define CSM_FAMILY_LOSSES 1
#include "kernels_scalar.c"

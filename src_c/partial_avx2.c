/* The partial family (kernels_partial.h) for the same ISA as kernels_avx2.c: that file
 * again with CSM_FAMILY_PARTIAL, as a translation unit of its own so that the build
 * compiles it beside kernels_avx2.c on another core. */
#define CSM_FAMILY_PARTIAL 1
#include "kernels_avx2.c"

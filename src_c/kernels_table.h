/* kernels_table.h -- expands kernels_impl.h for float and double under the
 * current ISA (CSM_ISA) and defines that ISA's function table.  Included by
 * each kernels_<isa>.c inside its target region, and by each partial_<isa>.c
 * with CSM_FAMILY_PARTIAL, and each losses_<isa>.c with CSM_FAMILY_LOSSES
 * (that family's kernels only, no table: the table
 * of kernels_<isa>.c names them through the declarations below); each
 * half_<isa>.c (CSM_FAMILY_HALF) gets kernels_half.h alone, which runs the
 * float32 kernels of its ISA and needs none of the per-dtype expansion. */
#if defined(CSM_FAMILY_HALF)
#  include "kernels_half.h"
#else
#include "csm_vec.h"
#include "csm_exp.h"

#define CSM_T float
#define CSM_SFX f32
#define CSM_IS_F32 1
#include "kernels_impl.h"

#define CSM_T double
#define CSM_SFX f64
#define CSM_IS_F32 0
#include "kernels_impl.h"

#if !defined(CSM_FAMILY_PARTIAL) && !defined(CSM_FAMILY_LOSSES)
#define CSM_TBL_(isa) csm_table_##isa
#define CSM_DECL_(name, K, T) int CSM_E(name, CSM_ISA) CSM_P_##K(T);
#define CSM_TBL(isa) CSM_TBL_(isa)
#define CSM_E_(name, isa) csm_##name##_##isa
#define CSM_E(name, isa) CSM_E_(name, isa)
#define CSM_TBL_INIT_(name, K, T) .name = CSM_E(name, CSM_ISA),
CSM_KERNELS(CSM_DECL_)

const csm_table CSM_TBL(CSM_ISA) = {
    CSM_KERNELS(CSM_TBL_INIT_)
};
#endif
#endif  /* CSM_FAMILY_HALF */

/* kernels_table.h -- expands kernels_impl.h for float and double under the
 * current ISA (CSM_ISA) and defines that ISA's function table.  Included by
 * each kernels_<isa>.c inside its target region. */
#include "csm_vec.h"

#define CSM_T float
#define CSM_SFX f32
#define CSM_IS_F32 1
#include "kernels_impl.h"

#define CSM_T double
#define CSM_SFX f64
#define CSM_IS_F32 0
#include "kernels_impl.h"

#define CSM_TBL_(isa) csm_table_##isa
#define CSM_TBL(isa) CSM_TBL_(isa)
#define CSM_E_(op, d, isa) op##_##d##_##isa
#define CSM_E2(op, d, isa) CSM_E_(op, d, isa)
#define CSM_E(op, d) CSM_E2(op, d, CSM_ISA)

const csm_table CSM_TBL(CSM_ISA) = {
    CSM_E(csm_logsumexp, f32), CSM_E(csm_logsumexp, f64),
    CSM_E(csm_logsumexp_b, f32), CSM_E(csm_logsumexp_b, f64),
    CSM_E(csm_softmax, f32), CSM_E(csm_softmax, f64),
    CSM_E(csm_log_softmax, f32), CSM_E(csm_log_softmax, f64),
    CSM_E(csm_xent_labels, f32), CSM_E(csm_xent_labels, f64),
    CSM_E(csm_xent_soft, f32), CSM_E(csm_xent_soft, f64),
    CSM_E(csm_exp, f32), CSM_E(csm_exp, f64),
    CSM_E(csm_softcap, f32), CSM_E(csm_softcap, f64),
};

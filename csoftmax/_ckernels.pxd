# Declarations of the plain-C kernel API (src_c/csoftmax.h).
from libc.stdint cimport int64_t, uint8_t, uint16_t

cdef extern from "csoftmax.h" nogil:
    ctypedef enum csm_status:
        CSM_OK
        CSM_ERR_LABEL
        CSM_ERR_ARG
        CSM_ERR_ISA
        CSM_ERR_NOMEM
        CSM_ERR_VALUE

    ctypedef struct csm_shape:
        Py_ssize_t n0
        Py_ssize_t n1
        Py_ssize_t c

    ctypedef struct csm_strides:
        Py_ssize_t s0
        Py_ssize_t s1
        Py_ssize_t sc

    ctypedef struct csm_error:
        Py_ssize_t row
        int64_t value

    ctypedef struct csm_xent_opts:
        double grad_scale
        int64_t ignore_index
        int use_ignore
        const double *row_scale
        const double *row_gscale
        const void *class_weight
        double class_weight_sum
        double label_smoothing
        double z_loss
        double softcap
        double *lse_out
        int64_t label_offset

    ctypedef struct csm_bce_opts:
        double grad_scale
        const void *weight
        csm_strides ws
        const void *pos_weight
        Py_ssize_t pws

    ctypedef struct csm_kl_opts:
        double temperature
        int teacher_kind
        double grad_scale
        const double *row_gscale
        const uint8_t *row_mask

    ctypedef enum csm_isa:
        CSM_ISA_SCALAR
        CSM_ISA_AVX2
        CSM_ISA_AVX512

    csm_isa csm_isa_best()
    csm_isa csm_isa_active()
    int csm_isa_set(csm_isa isa)
    const char *csm_isa_name(csm_isa isa)
    int csm_max_threads()
    void csm_set_num_threads(int n)

    int csm_logsumexp_f32(csm_shape sh, const float *x, csm_strides xs, float *lse, csm_strides ls)
    int csm_logsumexp_f64(csm_shape sh, const double *x, csm_strides xs, double *lse, csm_strides ls)
    int csm_logsumexp_b_f32(csm_shape sh, const float *x, csm_strides xs, const float *b, csm_strides bs,
                            float *lse, csm_strides ls, float *sign, csm_strides ss)
    int csm_logsumexp_b_f64(csm_shape sh, const double *x, csm_strides xs, const double *b, csm_strides bs,
                            double *lse, csm_strides ls, double *sign, csm_strides ss)
    int csm_softmax_f32(csm_shape sh, const float *x, csm_strides xs, float *y, csm_strides ys)
    int csm_softmax_f64(csm_shape sh, const double *x, csm_strides xs, double *y, csm_strides ys)
    int csm_log_softmax_f32(csm_shape sh, const float *x, csm_strides xs, float *y, csm_strides ys)
    int csm_log_softmax_f64(csm_shape sh, const double *x, csm_strides xs, double *y, csm_strides ys)
    int csm_xent_labels_f32(csm_shape sh, const float *z, csm_strides zs, const int64_t *label,
                            csm_strides lbs, const csm_xent_opts *opt, double *loss, csm_strides ls,
                            float *grad, csm_strides gs, csm_error *err)
    int csm_xent_labels_f64(csm_shape sh, const double *z, csm_strides zs, const int64_t *label,
                            csm_strides lbs, const csm_xent_opts *opt, double *loss, csm_strides ls,
                            double *grad, csm_strides gs, csm_error *err)
    int csm_xent_soft_f32(csm_shape sh, const float *z, csm_strides zs, const float *t, csm_strides ts,
                          const csm_xent_opts *opt, double *loss, csm_strides ls,
                          float *grad, csm_strides gs)
    int csm_xent_soft_f64(csm_shape sh, const double *z, csm_strides zs, const double *t, csm_strides ts,
                          const csm_xent_opts *opt, double *loss, csm_strides ls,
                          double *grad, csm_strides gs)
    # half precision (src_c/kernels_half.h): 16-bit patterns, float32 compute
    int csm_logsumexp_f16(csm_shape sh, const uint16_t *x, csm_strides xs, float *lse, csm_strides ls)
    int csm_logsumexp_b_f16(csm_shape sh, const uint16_t *x, csm_strides xs, const uint16_t *b,
                            csm_strides bs, float *lse, csm_strides ls, float *sign, csm_strides ss)
    int csm_softmax_f16(csm_shape sh, const uint16_t *x, csm_strides xs, uint16_t *y, csm_strides ys)
    int csm_log_softmax_f16(csm_shape sh, const uint16_t *x, csm_strides xs, uint16_t *y, csm_strides ys)
    int csm_xent_labels_f16(csm_shape sh, const uint16_t *z, csm_strides zs, const int64_t *label,
                            csm_strides lbs, const csm_xent_opts *opt, double *loss, csm_strides ls,
                            uint16_t *grad, csm_strides gs, csm_error *err)
    int csm_xent_soft_f16(csm_shape sh, const uint16_t *z, csm_strides zs, const uint16_t *t,
                          csm_strides ts, const csm_xent_opts *opt, double *loss, csm_strides ls,
                          uint16_t *grad, csm_strides gs)
    int csm_widen_f16(Py_ssize_t n, const uint16_t *x, float *out)
    int csm_narrow_f16(Py_ssize_t n, const float *x, uint16_t *out)
    # half precision (src_c/kernels_half.h): 16-bit patterns, float32 compute
    int csm_logsumexp_bf16(csm_shape sh, const uint16_t *x, csm_strides xs, float *lse, csm_strides ls)
    int csm_logsumexp_b_bf16(csm_shape sh, const uint16_t *x, csm_strides xs, const uint16_t *b,
                            csm_strides bs, float *lse, csm_strides ls, float *sign, csm_strides ss)
    int csm_softmax_bf16(csm_shape sh, const uint16_t *x, csm_strides xs, uint16_t *y, csm_strides ys)
    int csm_log_softmax_bf16(csm_shape sh, const uint16_t *x, csm_strides xs, uint16_t *y, csm_strides ys)
    int csm_xent_labels_bf16(csm_shape sh, const uint16_t *z, csm_strides zs, const int64_t *label,
                            csm_strides lbs, const csm_xent_opts *opt, double *loss, csm_strides ls,
                            uint16_t *grad, csm_strides gs, csm_error *err)
    int csm_xent_soft_bf16(csm_shape sh, const uint16_t *z, csm_strides zs, const uint16_t *t,
                          csm_strides ts, const csm_xent_opts *opt, double *loss, csm_strides ls,
                          uint16_t *grad, csm_strides gs)
    int csm_widen_bf16(Py_ssize_t n, const uint16_t *x, float *out)
    int csm_narrow_bf16(Py_ssize_t n, const float *x, uint16_t *out)
    int csm_exp_f32(Py_ssize_t n, const float *x, float *out)
    int csm_exp_f64(Py_ssize_t n, const double *x, double *out)
    int csm_softcap_f32(Py_ssize_t n, const float *x, double cap, float *out)
    int csm_softcap_f64(Py_ssize_t n, const double *x, double cap, double *out)

    # the partial family (class slices)
    int csm_partial_f32(csm_shape sh, const float *x, csm_strides xs, const int64_t *label,
                        csm_strides lbs, const csm_xent_opts *opt, double *part, csm_strides ps)
    int csm_partial_f64(csm_shape sh, const double *x, csm_strides xs, const int64_t *label,
                        csm_strides lbs, const csm_xent_opts *opt, double *part, csm_strides ps)
    int csm_partial_merge(Py_ssize_t nparts, Py_ssize_t nrows, const double *part,
                          Py_ssize_t pp, Py_ssize_t pr, Py_ssize_t pf, double *out,
                          Py_ssize_t orow, Py_ssize_t of)
    int csm_partial_log1p(Py_ssize_t nrows, const double *state, Py_ssize_t sr, Py_ssize_t sf,
                          double *L, Py_ssize_t ls)
    int csm_softmax_merged_f32(csm_shape sh, const float *x, csm_strides xs,
                               const int64_t *label, csm_strides lbs, const csm_xent_opts *opt,
                               const double *mrg, csm_strides ms, float *y, csm_strides ys)
    int csm_softmax_merged_f64(csm_shape sh, const double *x, csm_strides xs,
                               const int64_t *label, csm_strides lbs, const csm_xent_opts *opt,
                               const double *mrg, csm_strides ms, double *y, csm_strides ys)
    int csm_log_softmax_merged_f32(csm_shape sh, const float *x, csm_strides xs,
                                   const int64_t *label, csm_strides lbs,
                                   const csm_xent_opts *opt, const double *mrg,
                                   csm_strides ms, float *y, csm_strides ys)
    int csm_log_softmax_merged_f64(csm_shape sh, const double *x, csm_strides xs,
                                   const int64_t *label, csm_strides lbs,
                                   const csm_xent_opts *opt, const double *mrg,
                                   csm_strides ms, double *y, csm_strides ys)
    int csm_xent_grad_merged_f32(csm_shape sh, const float *x, csm_strides xs,
                                 const int64_t *label, csm_strides lbs,
                                 const csm_xent_opts *opt, const double *mrg,
                                 csm_strides ms, float *y, csm_strides ys)
    int csm_xent_grad_merged_f64(csm_shape sh, const double *x, csm_strides xs,
                                 const int64_t *label, csm_strides lbs,
                                 const csm_xent_opts *opt, const double *mrg,
                                 csm_strides ms, double *y, csm_strides ys)

    # the neighbouring losses (kernels_bce.h, kernels_kl.h, kernels_tokens.h)
    int csm_bce_f32(csm_shape sh, const float *z, csm_strides zs, const float *t, csm_strides ts,
                    const csm_bce_opts *opt, double *rowloss, csm_strides rls, float *eloss,
                    csm_strides els, float *grad, csm_strides gs, csm_error *err)
    int csm_bce_f64(csm_shape sh, const double *z, csm_strides zs, const double *t, csm_strides ts,
                    const csm_bce_opts *opt, double *rowloss, csm_strides rls, double *eloss,
                    csm_strides els, double *grad, csm_strides gs, csm_error *err)
    int csm_kl_div_f32(csm_shape sh, const float *s, csm_strides ss, const float *t, csm_strides ts,
                       const csm_kl_opts *opt, double *loss, csm_strides ls, float *grad,
                       csm_strides gs)
    int csm_kl_div_f64(csm_shape sh, const double *s, csm_strides ss, const double *t,
                       csm_strides ts, const csm_kl_opts *opt, double *loss, csm_strides ls,
                       double *grad, csm_strides gs)
    int csm_token_logprobs_f32(csm_shape sh, const float *x, csm_strides xs, const int64_t *label,
                               csm_strides lbs, int64_t ignore_index, int use_ignore,
                               double *logp, csm_strides ls, double *ent, csm_strides es,
                               csm_error *err)
    int csm_token_logprobs_f64(csm_shape sh, const double *x, csm_strides xs,
                               const int64_t *label, csm_strides lbs, int64_t ignore_index,
                               int use_ignore, double *logp, csm_strides ls, double *ent,
                               csm_strides es, csm_error *err)

/*
 * csoftmax.h -- public C API of the csoftmax row kernels (plain C11, no Python).
 *
 * Data model
 *   A batch of rows is an (n0, n1) grid; every row has c elements ("classes").
 *   Element k of row (i0, i1) of an array p lives at
 *       p[i0 * s.s0 + i1 * s.s1 + k * s.sc]
 *   with strides counted in ELEMENTS (not bytes); any stride may be zero or
 *   negative.  A plain (N, C) C-ordered matrix is n0 = N, n1 = 1, s = {C, 0, 1};
 *   PyTorch's K-dimensional layout (N, C, d) with classes on axis 1 is
 *   n0 = N, n1 = d, s = {C*d, 1, d}: no copy is needed for either.
 *   Per-row outputs (lse, loss) use s0 and s1 only.
 *
 * Conventions
 *   - sizes and indices are ptrdiff_t, so n0*n1*c above 2**31 works;
 *   - outputs may alias the matching input exactly (y == x, same strides) where
 *     a function says so; partial overlap is the caller's business;
 *   - kernels never allocate, never call back, never print; they return a
 *     csm_status and, for bad labels, the row and value in *err;
 *   - inputs are validated before any output is written, so on error nothing
 *     has changed;
 *   - results are identical whatever the strides, the thread count, or where
 *     a row ends relative to the SIMD width (same lane assignment everywhere);
 *     different ISA paths may differ in the last bits (FMA vs mul+add).
 */
#ifndef CSOFTMAX_H
#define CSOFTMAX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CSM_OK = 0,
    CSM_ERR_LABEL = 1,      /* a label outside [0, c) that is not ignore_index */
    CSM_ERR_ARG = 2,        /* a size is negative or an option is invalid */
    CSM_ERR_ISA = 3,        /* requested ISA not available on this CPU/build */
    CSM_ERR_NOMEM = 4,      /* a scratch row could not be allocated (nothing written) */
    CSM_ERR_VALUE = 5       /* an input value outside its domain (a binary target not in
                               [0, 1]); *err names it, nothing written */
} csm_status;

typedef struct { ptrdiff_t n0, n1, c; } csm_shape;
typedef struct { ptrdiff_t s0, s1, sc; } csm_strides;

typedef struct {
    ptrdiff_t row;          /* flat row index i0 * n1 + i1 of the first bad label */
    int64_t value;          /* the bad label (CSM_ERR_VALUE: the element's class index) */
} csm_error;

/*
 * Options of the fused cross-entropy.  Zero-initialise, then set what is used
 * (grad_scale = 1 is the neutral value; every pointer may be NULL).
 * Per-row arrays are indexed by the flat row index i0 * n1 + i1.
 */
typedef struct {
    double grad_scale;          /* every gradient row is multiplied by this */
    int64_t ignore_index;       /* labels equal to it: loss 0, gradient 0, row never read */
    int use_ignore;             /* 0: every label must be in [0, c) */
    const double *row_scale;    /* per-row loss factor (sample weight); NULL = 1 */
    const double *row_gscale;   /* per-row gradient factor (sample weight x upstream
                                   gradient); NULL = 1 */
    const void *class_weight;   /* (c,) contiguous class weights w, of the logits' dtype */
    double class_weight_sum;    /* sum of w (c when class_weight is NULL) */
    double label_smoothing;     /* epsilon in [0, 1] */
    double z_loss;              /* alpha >= 0: alpha * lse^2 added to each sample's loss */
    double softcap;             /* c > 0: logits replaced by c * tanh(z / c); 0 = off */
    double *lse_out;            /* per-row log-sum-exp (after softcap); NULL = not wanted;
                                   0 for ignored rows */
    int64_t label_offset;       /* partial family only: the slice's first class; a label
                                   L is in the slice if 0 <= L - label_offset < c */
} csm_xent_opts;

/* ISA tiers; csm_isa_active() reports the one chosen at first use. */
typedef enum { CSM_ISA_SCALAR = 0, CSM_ISA_AVX2 = 1, CSM_ISA_AVX512 = 2 } csm_isa;

/* Best ISA this CPU + build supports (CPUID + XGETBV). */
csm_isa csm_isa_best(void);
/* Currently active ISA. */
csm_isa csm_isa_active(void);
/* Force an ISA (only downwards from csm_isa_best()); CSM_ERR_ISA otherwise. */
int csm_isa_set(csm_isa isa);
/* "scalar", "avx2", "avx512". */
const char *csm_isa_name(csm_isa isa);
/* Number of OpenMP threads kernels will use (1 without OpenMP). */
int csm_max_threads(void);
/* Set it (OpenMP's omp_set_num_threads for the calling thread; no-op without OpenMP). */
void csm_set_num_threads(int n);

/*
 * lse[row] = log(sum_k exp(x[row, k])), computed as
 *   M + log1p((count(x == M) - 1) + sum_{x != M} exp(x - M))
 * in one read pass over x (chunked online max/sum).  Special rows follow
 * SciPy: NaN anywhere -> NaN; +inf (no NaN) -> +inf; all -inf -> -inf;
 * c == 0 -> -inf.
 */
int csm_logsumexp_f32(csm_shape sh, const float *x, csm_strides xs,
                      float *lse, csm_strides ls);
int csm_logsumexp_f64(csm_shape sh, const double *x, csm_strides xs,
                      double *lse, csm_strides ls);

/*
 * SciPy's logsumexp with weights b (same shape as x; strides may be 0 to
 * broadcast): lse = log|sum_k b_k exp(x_k)|, sign = sign of the sum
 * (sign may be NULL).  Elements with b == 0 are ignored, as in SciPy.
 * If sign is NULL a negative sum gives NaN.
 */
int csm_logsumexp_b_f32(csm_shape sh, const float *x, csm_strides xs,
                        const float *b, csm_strides bs,
                        float *lse, csm_strides ls, float *sign, csm_strides ss);
int csm_logsumexp_b_f64(csm_shape sh, const double *x, csm_strides xs,
                        const double *b, csm_strides bs,
                        double *lse, csm_strides ls, double *sign, csm_strides ss);

/*
 * y = softmax(x) / log_softmax(x) along each row.  y may alias x exactly.
 * softmax: a row containing NaN or +inf, or all -inf, becomes all NaN (SciPy).
 * log_softmax: y = (x - M) - log(sum exp(x - M)), rounded once from double;
 * special rows as SciPy (shift 0 when the max is not finite).
 */
int csm_softmax_f32(csm_shape sh, const float *x, csm_strides xs, float *y, csm_strides ys);
int csm_softmax_f64(csm_shape sh, const double *x, csm_strides xs, double *y, csm_strides ys);
int csm_log_softmax_f32(csm_shape sh, const float *x, csm_strides xs, float *y, csm_strides ys);
int csm_log_softmax_f64(csm_shape sh, const double *x, csm_strides xs, double *y, csm_strides ys);

/*
 * Fused softmax cross-entropy with integer labels T, PyTorch's semantics.
 * With z' = softcap ? c tanh(z / c) : z, lse = log sum_k exp z'_k, class
 * weights w (default 1, W = sum w), smoothing e, z-loss a, sample weight s:
 *   loss = s * [(1-e) w_T (lse - z'_T) + (e/C) sum_k w_k (lse - z'_k) + a lse^2]
 *   grad_k = grad_scale * row_gscale * [A softmax(z')_k - (1-e) w_T [k == T]
 *            - (e/C) w_k] * dz'_k/dz_k,      A = (1-e) w_T + (e/C) W + 2 a lse
 * loss is always written (double); grad only if not NULL and may alias z
 * exactly (in-place).  Labels are all checked first; on a bad one nothing is
 * written and *err names it.  Ignored rows get loss 0 and a zero gradient and
 * their logits are never read.  With softcap, one scratch row of c elements
 * per thread is allocated for the call (CSM_ERR_NOMEM, nothing written, if
 * that fails; the same for csm_xent_soft_*).
 */
int csm_xent_labels_f32(csm_shape sh, const float *z, csm_strides zs,
                        const int64_t *label, csm_strides lbs, const csm_xent_opts *opt,
                        double *loss, csm_strides ls, float *grad, csm_strides gs,
                        csm_error *err);
int csm_xent_labels_f64(csm_shape sh, const double *z, csm_strides zs,
                        const int64_t *label, csm_strides lbs, const csm_xent_opts *opt,
                        double *loss, csm_strides ls, double *grad, csm_strides gs,
                        csm_error *err);

/*
 * Fused softmax cross-entropy with soft targets q (same shape as z).  With
 * t = w * ((1-e) q + e/C):
 *   loss = s * [sum_k t_k (lse - z'_k) + a lse^2]
 *   grad_k = grad_scale * row_gscale * [(sum t + 2 a lse) softmax(z')_k - t_k] * dz'_k/dz_k
 * grad may alias z exactly; it must not overlap q.
 */
int csm_xent_soft_f32(csm_shape sh, const float *z, csm_strides zs,
                      const float *t, csm_strides ts, const csm_xent_opts *opt,
                      double *loss, csm_strides ls, float *grad, csm_strides gs);
int csm_xent_soft_f64(csm_shape sh, const double *z, csm_strides zs,
                      const double *t, csm_strides ts, const csm_xent_opts *opt,
                      double *loss, csm_strides ls, double *grad, csm_strides gs);

/*
 * The partial family (classes split into slices; kernels_partial.h has the
 * design).  csm_partial writes per row the slice's state, CSM_PART_N doubles
 * at part[i0*ps.s0 + i1*ps.s1 + f*ps.sc]:
 *   f = 0 max m of x' (NaN if the slice holds a NaN), 1 count of x' == m,
 *   2 sum over the others of exp(x' - m), 3 the target's x' when the label
 *   is in the slice (else 0), 4 sum of t_k = w_k (smoothing only, else 0),
 *   5 sum_k t_k (sh - x'_k), sh = m if finite else 0 (smoothing only; 0 when m is
 *   NaN or +inf: such a row's loss is NaN anyway).
 * label == NULL (and opt == NULL allowed): the log-sum-exp state only.  opt
 * uses label_offset, ignore_index/use_ignore (ignored rows: the state of an
 * empty slice, logits not read), class_weight (the slice's c weights),
 * label_smoothing (only as "non-zero") and softcap.  Labels outside the slice
 * are not errors: the caller validates them against the whole class axis.
 */
#define CSM_PART_N 6
int csm_partial_f32(csm_shape sh, const float *x, csm_strides xs, const int64_t *label,
                    csm_strides lbs, const csm_xent_opts *opt, double *part, csm_strides ps);
int csm_partial_f64(csm_shape sh, const double *x, csm_strides xs, const int64_t *label,
                    csm_strides lbs, const csm_xent_opts *opt, double *part, csm_strides ps);

/*
 * Merge nparts states per row, left to right, into out (a state again):
 * part[i*pp + r*pr + f*pf], out[r*orow + f*of].  One state is returned as is.
 * csm_partial_log1p: L[r*ls] = log1p(count - 1 + s) of state rows
 * (state[r*sr + f*sf]); the row's log-sum-exp is m + L.  Not dispatched.
 */
int csm_partial_merge(ptrdiff_t nparts, ptrdiff_t nrows, const double *part, ptrdiff_t pp,
                      ptrdiff_t pr, ptrdiff_t pf, double *out, ptrdiff_t orow, ptrdiff_t of);
int csm_partial_log1p(ptrdiff_t nrows, const double *state, ptrdiff_t sr, ptrdiff_t sf,
                      double *L, ptrdiff_t ls);

/*
 * A slice written from its row's merged state, per row mrg[i0*ms.s0 +
 * i1*ms.s1 + f*ms.sc] (M = field 0 is the merged max; a row whose M is not
 * finite gets SciPy's special values: NaN; log-softmax of a +inf row: NaN at
 * +inf, -inf elsewhere).  y may alias x exactly.
 *   softmax:      f1 = 1 / (count + s)            y = exp(x - M) f1
 *   log_softmax:  f1 = L                          y = (x - M) - L (double, rounded once)
 *   xent_grad:    f1 = g0 A / (count + s), f2 = g0 (e/C), f3 = the target's gradient
 *                 y_k = (exp(x'_k - M) f1 - f2 w_k) dx'_k/dx_k, y_T = f3 (label in the
 *                 slice, label_offset as csm_partial), ignored rows 0; opt as csm_partial.
 * softmax / log_softmax ignore label and opt (may be NULL).
 */
int csm_softmax_merged_f32(csm_shape sh, const float *x, csm_strides xs, const int64_t *label,
                           csm_strides lbs, const csm_xent_opts *opt, const double *mrg,
                           csm_strides ms, float *y, csm_strides ys);
int csm_softmax_merged_f64(csm_shape sh, const double *x, csm_strides xs, const int64_t *label,
                           csm_strides lbs, const csm_xent_opts *opt, const double *mrg,
                           csm_strides ms, double *y, csm_strides ys);
int csm_log_softmax_merged_f32(csm_shape sh, const float *x, csm_strides xs,
                               const int64_t *label, csm_strides lbs,
                               const csm_xent_opts *opt, const double *mrg, csm_strides ms,
                               float *y, csm_strides ys);
int csm_log_softmax_merged_f64(csm_shape sh, const double *x, csm_strides xs,
                               const int64_t *label, csm_strides lbs,
                               const csm_xent_opts *opt, const double *mrg, csm_strides ms,
                               double *y, csm_strides ys);
int csm_xent_grad_merged_f32(csm_shape sh, const float *x, csm_strides xs,
                             const int64_t *label, csm_strides lbs, const csm_xent_opts *opt,
                             const double *mrg, csm_strides ms, float *y, csm_strides ys);
int csm_xent_grad_merged_f64(csm_shape sh, const double *x, csm_strides xs,
                             const int64_t *label, csm_strides lbs, const csm_xent_opts *opt,
                             const double *mrg, csm_strides ms, double *y, csm_strides ys);

/*
 * ---- The neighbouring losses (kernels_bce.h, kernels_kl.h, kernels_tokens.h) ----
 * Each is a family of its own, compiled in the losses_<isa>.c translation units.
 */

/*
 * Binary (sigmoid) cross-entropy with logits, elementwise over the (n0, n1, c)
 * grid.  With sp(x) = max(x, 0) + log1p(exp(-|x|)), target t in [0, 1], weight w
 * (default 1) and pos_weight p (per class k, default 1):
 *   l = w * (p t sp(-z) + (1 - t) sp(z))      (a term whose factor t or 1 - t is
 *                                              exactly 0 adds exactly 0)
 *   g = grad_scale * w * ((1 - t) sigmoid(z) - p t sigmoid(-z))
 * Every target is checked first (t in [0, 1], not NaN); on a bad one nothing is
 * written, CSM_ERR_VALUE, and *err gives its row and class index.  Outputs, each
 * optional (NULL): rowloss[row] = sum_k l (double, fixed order), eloss = l per
 * element, grad (may alias z exactly).  weight is laid out like z (any strides,
 * zero to broadcast), pos_weight has c entries at stride pws (0: one value).
 */
typedef struct {
    double grad_scale;
    const void *weight;         /* of the logits' dtype; NULL = 1 */
    csm_strides ws;
    const void *pos_weight;     /* of the logits' dtype; NULL = 1 */
    ptrdiff_t pws;
} csm_bce_opts;

int csm_bce_f32(csm_shape sh, const float *z, csm_strides zs, const float *t, csm_strides ts,
                const csm_bce_opts *opt, double *rowloss, csm_strides rls, float *eloss,
                csm_strides els, float *grad, csm_strides gs, csm_error *err);
int csm_bce_f64(csm_shape sh, const double *z, csm_strides zs, const double *t,
                csm_strides ts, const csm_bce_opts *opt, double *rowloss, csm_strides rls,
                double *eloss, csm_strides els, double *grad, csm_strides gs, csm_error *err);

/*
 * Distillation KL per row, KL(p || q) at temperature T, scaled by T^2:
 *   q = softmax(s / T);  p = softmax(t / T) (teacher_kind 0, logits) or exp(t)
 *   (teacher_kind 1, log-probabilities; T does not apply to them);
 *   loss = T^2 sum_k p_k (log p_k - log q_k)      (0 log 0 = 0)
 *   grad_k = grad_scale * row_gscale * T (sum(p) q_k - p_k)
 * One read of both rows per chunk for the sums (chunked online max, as the row
 * pass); with grad, the chunk's exps are kept (the student's in grad, the
 * teacher's in one scratch row of c elements per thread: CSM_ERR_NOMEM, nothing
 * written, if that fails) and rescaled in place.  Rows with row_mask[row]
 * == 0 get loss 0 and a zero gradient and are not read.  A row whose student or
 * teacher holds NaN, +inf, or only -inf (logits kind) gets NaN.  grad may be NULL
 * and may alias s exactly.
 */
typedef struct {
    double temperature;         /* T > 0 */
    int teacher_kind;           /* 0 logits, 1 log-probabilities */
    double grad_scale;
    const double *row_gscale;   /* per-row gradient factor; NULL = 1 */
    const uint8_t *row_mask;    /* per row, 0 = masked; NULL = every row */
} csm_kl_opts;

int csm_kl_div_f32(csm_shape sh, const float *s, csm_strides ss, const float *t,
                   csm_strides ts, const csm_kl_opts *opt, double *loss, csm_strides ls,
                   float *grad, csm_strides gs);
int csm_kl_div_f64(csm_shape sh, const double *s, csm_strides ss, const double *t,
                   csm_strides ts, const csm_kl_opts *opt, double *loss, csm_strides ls,
                   double *grad, csm_strides gs);

/*
 * Per-row log-probability of the label and (ent != NULL) the entropy, in one
 * read of the row (the row pass with one more accumulator, sum e^(x-m) (x-m)):
 *   logp = (z_T - M) - L,  entropy = L - A / S,
 * S = sum exp(z - M), L = log S (as log1p), A = sum exp(z - M) (z - M).
 * Labels are all checked first (CSM_ERR_LABEL, *err, nothing written); rows
 * whose label is ignore_index (use_ignore) get 0 and 0 and are not read.
 * Special rows as log_softmax / softmax: NaN -> NaN; +inf -> logp NaN at a +inf
 * label, else -inf, entropy NaN; all -inf -> NaN, NaN.
 */
int csm_token_logprobs_f32(csm_shape sh, const float *x, csm_strides xs, const int64_t *label,
                           csm_strides lbs, int64_t ignore_index, int use_ignore,
                           double *logp, csm_strides ls, double *ent, csm_strides es,
                           csm_error *err);
int csm_token_logprobs_f64(csm_shape sh, const double *x, csm_strides xs,
                           const int64_t *label, csm_strides lbs, int64_t ignore_index,
                           int use_ignore, double *logp, csm_strides ls, double *ent,
                           csm_strides es, csm_error *err);

/*
 * ---- Half precision (kernels_half.h, compiled in half_<isa>.c) ----
 * float16 (IEEE binary16, suffix f16) and bfloat16 (suffix bf16) arrays are
 * passed as their 16-bit patterns (uint16_t) with the strides of csm_strides.
 * Each function computes exactly what its float32 namesake computes on the
 * widened values (exact), with the same options, special rows and status
 * codes; the 16-bit results (softmax, log-softmax, gradient) are the float32
 * results rounded once to nearest even (NaN stays NaN), the per-row results
 * are float32 (log-sum-exp, sign) or double (loss, as float32).  class_weight
 * in csm_xent_opts is float32 here.  Inputs are read and outputs written in
 * blocks through a per-thread float32 buffer of at most 65536 elements (or one
 * row), never a float32 copy of the array; y / grad may alias x / z exactly.
 * A bad label writes nothing; CSM_ERR_NOMEM (a buffer) may leave outputs
 * partly written.
 * csm_widen_*: out[i] = the float of x[i] (exact); csm_narrow_*: out[i] =
 * x[i] rounded to the format (to nearest even, NaN quieted), on the active
 * ISA path (F16C / AVX2 / AVX-512 or portable C): for the tests and for small
 * conversions of the front end.
 */
#define CSM_HALF_DECLS(F)                                                                    \
int csm_logsumexp_##F(csm_shape sh, const uint16_t *x, csm_strides xs, float *lse,          \
                      csm_strides ls);                                                       \
int csm_logsumexp_b_##F(csm_shape sh, const uint16_t *x, csm_strides xs, const uint16_t *b, \
                        csm_strides bs, float *lse, csm_strides ls, float *sign,             \
                        csm_strides ss);                                                     \
int csm_softmax_##F(csm_shape sh, const uint16_t *x, csm_strides xs, uint16_t *y,           \
                    csm_strides ys);                                                         \
int csm_log_softmax_##F(csm_shape sh, const uint16_t *x, csm_strides xs, uint16_t *y,       \
                        csm_strides ys);                                                     \
int csm_xent_labels_##F(csm_shape sh, const uint16_t *z, csm_strides zs,                    \
                        const int64_t *label, csm_strides lbs, const csm_xent_opts *opt,     \
                        double *loss, csm_strides ls, uint16_t *grad, csm_strides gs,        \
                        csm_error *err);                                                     \
int csm_xent_soft_##F(csm_shape sh, const uint16_t *z, csm_strides zs, const uint16_t *t,   \
                      csm_strides ts, const csm_xent_opts *opt, double *loss,                \
                      csm_strides ls, uint16_t *grad, csm_strides gs);                       \
int csm_widen_##F(ptrdiff_t n, const uint16_t *x, float *out);                              \
int csm_narrow_##F(ptrdiff_t n, const float *x, uint16_t *out);
CSM_HALF_DECLS(f16)
CSM_HALF_DECLS(bf16)
#undef CSM_HALF_DECLS

/* The vector exp the kernels use, exported for the accuracy sweep test:
 * out[i] = exp(x[i]) for i < n, on the active ISA path.  Returns CSM_OK. */
int csm_exp_f32(ptrdiff_t n, const float *x, float *out);
int csm_exp_f64(ptrdiff_t n, const double *x, double *out);
/* The soft-cap the cross-entropy applies, exported for the accuracy sweep:
 * out[i] = cap * tanh(x[i] / cap) for i < n (cap > 0), on the active ISA path.
 * Returns CSM_OK. */
int csm_softcap_f32(ptrdiff_t n, const float *x, double cap, float *out);
int csm_softcap_f64(ptrdiff_t n, const double *x, double cap, double *out);

#ifdef __cplusplus
}
#endif
#endif /* CSOFTMAX_H */

/*
 * seam_avx512.c -- TEST-ONLY (compiled to nothing unless CSM_TEST_SEAM): the
 * AVX-512 kernel table of the test seam (dispatch.c, Design 3).
 *
 * For each kernel of CSM_KERNELS, a wrapper with the kernel's signature packs
 * its arguments into a struct and asks the installed runner to execute a
 * thunk: a plain function of this library that unpacks them and calls the
 * real AVX-512 kernel (csm_table_avx512) with the real ABI.  The runner of
 * the tests executes the thunk on an emulated CPU with AVX-512, so the code
 * under test is the unmodified machine code of kernels_avx512.c.  A crash on
 * the emulated CPU makes the call return CSM_ERR_SEAM.
 *
 * Per signature KIND of csm_internal.h: CSM_F_<KIND>(T) the struct fields in
 * argument order, CSM_U_<KIND> the thunk's call arguments.
 */
#include "csm_internal.h"

#if defined(CSM_TEST_SEAM) && defined(CSM_HAVE_X86_DISPATCH)

#define CSM_F_ROWS(T) csm_shape sh; const T *x; csm_strides xs; T *y; csm_strides ys;
#define CSM_U_ROWS (a->sh, a->x, a->xs, a->y, a->ys)
#define CSM_F_LSEB(T) csm_shape sh; const T *x; csm_strides xs; const T *b; csm_strides bs; \
                      T *lse; csm_strides ls; T *sign; csm_strides ss;
#define CSM_U_LSEB (a->sh, a->x, a->xs, a->b, a->bs, a->lse, a->ls, a->sign, a->ss)
#define CSM_F_XL(T) csm_shape sh; const T *z; csm_strides zs; const int64_t *label; \
                    csm_strides lbs; const csm_xent_opts *opt; double *loss; csm_strides ls; \
                    T *grad; csm_strides gs; csm_error *err;
#define CSM_U_XL (a->sh, a->z, a->zs, a->label, a->lbs, a->opt, a->loss, a->ls, a->grad, \
                  a->gs, a->err)
#define CSM_F_XS(T) csm_shape sh; const T *z; csm_strides zs; const T *t; csm_strides ts; \
                    const csm_xent_opts *opt; double *loss; csm_strides ls; T *grad;      \
                    csm_strides gs;
#define CSM_U_XS (a->sh, a->z, a->zs, a->t, a->ts, a->opt, a->loss, a->ls, a->grad, a->gs)
#define CSM_F_PART(T) csm_shape sh; const T *x; csm_strides xs; const int64_t *label; \
                      csm_strides lbs; const csm_xent_opts *opt; double *part; csm_strides ps;
#define CSM_U_PART (a->sh, a->x, a->xs, a->label, a->lbs, a->opt, a->part, a->ps)
#define CSM_F_MRG(T) csm_shape sh; const T *x; csm_strides xs; const int64_t *label; \
                     csm_strides lbs; const csm_xent_opts *opt; const double *mrg;     \
                     csm_strides ms; T *y; csm_strides ys;
#define CSM_U_MRG (a->sh, a->x, a->xs, a->label, a->lbs, a->opt, a->mrg, a->ms, a->y, a->ys)
#define CSM_F_BCE(T) csm_shape sh; const T *z; csm_strides zs; const T *t; csm_strides ts; \
    const csm_bce_opts *opt; double *rowloss; csm_strides rls; T *eloss; csm_strides els; \
    T *grad; csm_strides gs; csm_error *err;
#define CSM_U_BCE (a->sh, a->z, a->zs, a->t, a->ts, a->opt, a->rowloss, a->rls, a->eloss, \
                   a->els, a->grad, a->gs, a->err)
#define CSM_F_KL(T) csm_shape sh; const T *s; csm_strides ss; const T *t; csm_strides ts; \
    const csm_kl_opts *opt; double *loss; csm_strides ls; T *grad; csm_strides gs;
#define CSM_U_KL (a->sh, a->s, a->ss, a->t, a->ts, a->opt, a->loss, a->ls, a->grad, a->gs)
#define CSM_F_TOK(T) csm_shape sh; const T *x; csm_strides xs; const int64_t *label; \
    csm_strides lbs; int64_t ignore_index; int use_ignore; double *logp; csm_strides ls; \
    double *ent; csm_strides es; csm_error *err;
#define CSM_U_TOK (a->sh, a->x, a->xs, a->label, a->lbs, a->ignore_index, a->use_ignore, \
                   a->logp, a->ls, a->ent, a->es, a->err)
#define CSM_F_VEC(T) ptrdiff_t n; const T *x; T *out;
#define CSM_U_VEC (a->n, a->x, a->out)
#define CSM_F_CAP(T) ptrdiff_t n; const T *x; double cap; T *out;
#define CSM_U_CAP (a->n, a->x, a->cap, a->out)
#define CSM_F_HLSE(T) csm_shape sh; const T *x; csm_strides xs; float *lse; csm_strides ls;
#define CSM_U_HLSE (a->sh, a->x, a->xs, a->lse, a->ls)
#define CSM_F_HLSEB(T) csm_shape sh; const T *x; csm_strides xs; const T *b; csm_strides bs; \
                       float *lse; csm_strides ls; float *sign; csm_strides ss;
#define CSM_U_HLSEB (a->sh, a->x, a->xs, a->b, a->bs, a->lse, a->ls, a->sign, a->ss)
#define CSM_F_HWIDEN(T) ptrdiff_t n; const T *x; float *out;
#define CSM_U_HWIDEN (a->n, a->x, a->out)
#define CSM_F_HNARROW(T) ptrdiff_t n; const float *x; T *out;
#define CSM_U_HNARROW (a->n, a->x, a->out)

#define CSM_ID_(...) __VA_ARGS__
#define CSM_XP_(x) x
#define CSM_SEAM_WRAP_(name, K, T)                                                   \
    typedef struct { CSM_F_##K(T) int ret; } csm_seam_args_##name;                   \
    static void csm_seam_thunk_##name(void *p)                                       \
    {                                                                                \
        csm_seam_args_##name *a = (csm_seam_args_##name *)p;                         \
        a->ret = csm_table_avx512.name CSM_U_##K;                                    \
    }                                                                                \
    static int csm_seam_##name CSM_P_##K(T)                                          \
    {                                                                                \
        csm_seam_args_##name a = {CSM_XP_(CSM_ID_ CSM_A_##K), CSM_ERR_SEAM};         \
        if (csm_seam_run(csm_seam_thunk_##name, &a) != 0) return CSM_ERR_SEAM;       \
        return a.ret;                                                                \
    }
CSM_KERNELS(CSM_SEAM_WRAP_)

#define CSM_SEAM_INIT_(name, K, T) .name = csm_seam_##name,
const csm_table csm_table_avx512_seam = {
    CSM_KERNELS(CSM_SEAM_INIT_)
};

#else
typedef int csm_seam_unused;   /* keep the translation unit non-empty */
#endif

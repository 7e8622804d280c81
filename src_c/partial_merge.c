/*
 * partial_merge.c -- merging the per-row states of class slices (the partial
 * family, kernels_partial.h): plain double arithmetic, no SIMD, no dispatch,
 * so every ISA path merges alike.
 *
 * Design
 *   1. States are merged left to right, exactly as the row pass combines its
 *      chunks (kernels_chunks.h): the running max M, the count of elements
 *      equal to M, and the sum s of the others scaled to M; a state with a
 *      larger max rescales the running sum by exp(M_old - M_new).  A merged
 *      state is itself a state, so merges nest (a tree of any shape); merging
 *      a single state returns it unchanged.
 *   2. The weighted sums of label smoothing are kept relative to the shift
 *      sh = M (M finite) or 0: tdot = sum_i [tsum_i (sh - sh_i) + tdot_i].
 *      The target logit is summed (it is 0 in every slice but the label's).
 *   3. SciPy's precedence: a NaN state makes the row NaN; otherwise a +inf
 *      state makes it +inf (count 1, s 0); all -inf stays -inf.
 */
#include <math.h>
#include "csm_internal.h"

#define F(p, f) (p)[(f) * fs]

int csm_partial_merge(ptrdiff_t nparts, ptrdiff_t nrows, const double *part, ptrdiff_t pp,
                      ptrdiff_t pr, ptrdiff_t pf, double *out, ptrdiff_t orow, ptrdiff_t of)
{
    if (nparts < 0 || nrows < 0) return CSM_ERR_ARG;
    for (ptrdiff_t r = 0; r < nrows; r++) {
        csm_lsest a = {-INFINITY, 0.0, 0.0};
        double zt = 0.0, tsum = 0.0, tdot = 0.0;
        int nan = 0, pinf = 0;
        for (ptrdiff_t i = 0; i < nparts; i++) {
            const double *p = part + i * pp + r * pr;
            ptrdiff_t fs = pf;
            const double md = F(p, 0), cc = F(p, 1), cs = F(p, 2);
            zt += F(p, 3);
            if (md != md) nan = 1;
            else if (md == INFINITY) pinf = 1;
            if (nan || pinf) continue;
            /* the smoothing sums, relative to the new shift */
            const double shi = md > -INFINITY ? md : 0.0;
            const double sh = a.M > -INFINITY ? a.M : 0.0;
            if (i == 0 || md > a.M)
                tdot = (i == 0 ? 0.0 : tsum * (shi - sh) + tdot) + F(p, 5);
            else
                tdot += F(p, 4) * (sh - shi) + F(p, 5);
            csm_lse_merge(&a, i == 0, md, cc, cs, 1.0);
            tsum += F(p, 4);
        }
        double *o = out + r * orow;
        ptrdiff_t fs = of;
        if (nan) {
            a.M = NAN;
            a.cnt = 0.0;
            a.s = NAN;
        } else if (pinf) {
            a.M = INFINITY;
            a.cnt = 1.0;
            a.s = 0.0;
        }
        F(o, 0) = a.M;
        F(o, 1) = a.cnt;
        F(o, 2) = a.s;
        F(o, 3) = zt;
        F(o, 4) = tsum;
        F(o, 5) = tdot;
    }
    return CSM_OK;
}

int csm_partial_log1p(ptrdiff_t nrows, const double *state, ptrdiff_t sr, ptrdiff_t sf,
                      double *L, ptrdiff_t ls)
{
    if (nrows < 0) return CSM_ERR_ARG;
    for (ptrdiff_t r = 0; r < nrows; r++) {
        const double *p = state + r * sr;
        L[r * ls] = log1p((p[sf] - 1.0) + p[2 * sf]);
    }
    return CSM_OK;
}

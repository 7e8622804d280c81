/*
 * kernels_tokens.h -- per-row log-probability of the label and entropy
 * (csm_token_logprobs_<dtype>), on the chunked row pass (kernels_chunks.h).
 *
 * Design
 *   1. One read of the row: the row pass's max / count / exp-sum, plus (only
 *      when the entropy is wanted: the flag is a literal, so the lse-only loop
 *      is the plain one) A = sum exp(x - M) (x - M), each chunk's sum moved
 *      from its own max to the row's in double (row_pass, `ent`).
 *   2. logp = (z_T - M) - L and entropy = L - A / S with S = count + s and
 *      L = log1p(count - 1 + s): both terms of the entropy are >= 0 (A <= 0),
 *      so there is no cancellation, and a near-certain row keeps its small
 *      entropy's relative accuracy.
 *   3. No column family: a strided class axis goes through the row pass's
 *      strided loads (the same bits, slower).
 */

static void CSM_H(token_row)(const T *xr, ptrdiff_t xsc, ptrdiff_t c, ptrdiff_t tgt,
                             const int want_ent, const T *pfx, double *lp, double *en)
{
    const double zt = (double)xr[tgt * xsc];
    CSM_H(rowst) st;
    if (want_ent)
        CSM_H(row_pass)(xr, xsc, NULL, 0, c, 0, 0, NULL, 0, 0, NULL, pfx, NULL, &st, 1);
    else
        CSM_H(row_pass)(xr, xsc, NULL, 0, c, 0, 0, NULL, 0, 0, NULL, pfx, NULL, &st, 0);
    if (st.special) {
        /* log_softmax's special rows (kernels_row1.h): NaN anywhere -> NaN; a
         * +inf max -> NaN at a +inf label, -inf elsewhere; all -inf -> NaN */
        const int nan = CSM_H(row_has_nan)(xr, xsc, c);
        *lp = (nan || !st.pinf || zt == INFINITY) ? NAN : -INFINITY;
        *en = NAN;
        return;
    }
    const double S = st.cnt + st.s;
    const double L = log1p((st.cnt - 1.0) + st.s);
    *lp = (zt - st.M) - L;
    *en = want_ent ? L - st.ea / S : 0.0;
}

int CSM_FN(csm_token_logprobs)(csm_shape sh, const T *x, csm_strides xs, const int64_t *label,
                               csm_strides lbs, int64_t ignore_index, int use_ignore,
                               double *logp, csm_strides ls, double *ent, csm_strides es,
                               csm_error *err)
{
    if (CSM_H(bad_shape)(sh) || !label || !logp) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    /* every label first: nothing is written if one is bad */
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        const int64_t lb = label[i0 * lbs.s0 + i1 * lbs.s1];
        if (use_ignore && lb == ignore_index) continue;
        if (lb < 0 || lb >= (int64_t)c) {
            if (err) {
                err->row = r;
                err->value = lb;
            }
            return CSM_ERR_LABEL;
        }
    }
    const int want = ent != NULL;
    CSM_ROWS_FOR(nrows, c)
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        const int64_t lb = label[i0 * lbs.s0 + i1 * lbs.s1];
        double lp = 0.0, en = 0.0;
        if (!(use_ignore && lb == ignore_index)) {
            const T *xr = x + i0 * xs.s0 + i1 * xs.s1;
            const T *pfx = CSM_NEXT_ROW(x, sh, xs, r, nrows);
            if (want) CSM_H(token_row)(xr, xs.sc, c, (ptrdiff_t)lb, 1, pfx, &lp, &en);
            else CSM_H(token_row)(xr, xs.sc, c, (ptrdiff_t)lb, 0, pfx, &lp, &en);
        }
        logp[i0 * ls.s0 + i1 * ls.s1] = lp;
        if (want) ent[i0 * es.s0 + i1 * es.s1] = en;
    }
    return CSM_OK;
}

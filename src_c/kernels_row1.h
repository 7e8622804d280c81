/*
 * kernels_row1.h -- the operations on one row through the chunked pass
 * (kernels_chunks.h): log-sum-exp, softmax, log-softmax, the cross-entropy
 * with every option.  The row family loops over rows with them; the column
 * family (kernels_cols.h) calls them for a row it does not handle itself
 * (a max of +-inf, SciPy's special values).
 */

/* log-sum-exp of one row through the chunked pass. */
static double CSM_H(lse_row)(const T *xr, ptrdiff_t xsc, ptrdiff_t c, const T *pfx)
{
    if (c == 0) return -INFINITY;
    CSM_H(rowst) st;
    CSM_H(row_pass)(xr, xsc, NULL, 0, c, 0, 0, NULL, 0, 0, NULL, pfx, NULL, &st, 0);
    if (st.special) {
        if (CSM_H(row_has_nan)(xr, xsc, c)) return NAN;
        return st.pinf ? INFINITY : -INFINITY;
    }
    return st.M + log1p((st.cnt - 1.0) + st.s);
}

/* softmax of one row (c >= 1); y may be x (same stride). */
static void CSM_H(softmax_row)(const T *xr, ptrdiff_t xsc, T *yr, ptrdiff_t ysc, ptrdiff_t c,
                               const T *pfx, T *pfy)
{
    CSM_H(rowst) st;
    CSM_H(row_pass)(xr, xsc, yr, ysc, c, 1, 0, NULL, 0, 0, NULL, pfx, pfy, &st, 0);
    if (st.special) {
        CSM_H(seg_fill)(yr, ysc, c, (T)NAN);
        return;
    }
    double inv = 1.0 / (st.cnt + st.s);
    CSM_CHUNK_LOOP(c, st.nch, q,
        ptrdiff_t k0 = q * st.K, len = c - k0 < st.K ? c - k0 : st.K;
        T f = (T)(csm_expdiff((double)st.cm[q], st.M) * inv);
        if (ysc == 1) CSM_H(seg_scale)(yr + k0, 1, len, f);
        else CSM_H(seg_scale)(yr + k0 * ysc, ysc, len, f);
    )
}

/* log_softmax of one row (c >= 1); y may be x (same stride). */
static void CSM_H(log_softmax_row)(const T *xr, ptrdiff_t xsc, T *yr, ptrdiff_t ysc,
                                   ptrdiff_t c, const T *pfx)
{
    CSM_H(rowst) st;
    CSM_H(row_pass)(xr, xsc, NULL, 0, c, 0, 0, NULL, 0, 0, NULL, pfx, NULL, &st, 0);
    if (st.special) {
        /* SciPy: shift 0; tmp - log(sum(exp(tmp))).  With the max -inf every
         * entry is -inf - (-inf) or NaN; with +inf the sum is +inf, giving
         * NaN at +inf entries and -inf elsewhere; any NaN makes all NaN. */
        int nan = CSM_H(row_has_nan)(xr, xsc, c);
        for (ptrdiff_t k = 0; k < c; k++) {
            T v = xr[k * xsc];
            yr[k * ysc] = (nan || !st.pinf || v == (T)INFINITY) ? (T)NAN : -(T)INFINITY;
        }
        return;
    }
    double L = log1p((st.cnt - 1.0) + st.s);
    CSM_CHUNK_LOOP(c, st.nch, q,
        ptrdiff_t k0 = q * st.K, len = c - k0 < st.K ? c - k0 : st.K;
        if (xsc == 1 && ysc == 1) CSM_H(seg_logsm)(xr + k0, 1, yr + k0, 1, len, st.M, L);
        else CSM_H(seg_logsm)(xr + k0 * xsc, xsc, yr + k0 * ysc, ysc, len, st.M, L);
    )
}

/*
 * One cross-entropy row, labels (tgt >= 0) or soft targets (tp->q != NULL).
 * Writes *lr (loss), lse_out[r] if wanted, and the gradient row if gr.
 */
CSM_INLINE void CSM_H(xent_row)(const T *zr, ptrdiff_t zsc, T *gr, ptrdiff_t gsc,
                                 ptrdiff_t c, ptrdiff_t tgt, const CSM_H(tspec) *tp,
                                 const int smooth, const int capped, const csm_xent_opts *opt,
                                 double rscale, double gscale, double *lr, double *lse_out,
                                 T *vb, const T *pfz, T *pfg)
{
    const T cap = capped ? (T)opt->softcap : (T)0;
    const T icap = capped ? (T)1 / cap : (T)0;
    const int labels = tgt >= 0;
    const int soft = !labels || smooth;     /* needs the weighted sums */
    const double eps = opt->label_smoothing, alpha = opt->z_loss;
    const T *w = (const T *)opt->class_weight;
    /* z'_T, read before gr may overwrite it */
    double zt = 0.0, wt = 1.0;
    if (labels) {
        V vt = CSM_H(vload_part)(zr + tgt * zsc, 1, 1, 0);
        zt = (double)CSM_LANE(CSM_H(vcap)(vt, capped, cap, icap), 0);
        wt = w ? (double)w[tgt] : 1.0;
    }
    CSM_H(rowst) st;
    CSM_ROW_PASS_ANY(zr, zsc, gr, gr ? gsc : 0, c, gr != NULL, soft, tp, capped, cap, vb,
                        pfz, pfg, &st);
    if (st.special) {
        /* -log_softmax[T] with SciPy/PyTorch special values (only without
         * soft-capping, which maps every infinity to a finite value) */
        int nan = CSM_H(row_has_nan)(zr, zsc, c);
        if (gr) {
            /* chunks stored hold exp(z - m): a NaN of z survives there
             * (needed when gr is z); a chunk with max +inf was not stored, and
             * gr there is not ours to read */
            for (ptrdiff_t q = 0; q < st.nch && !nan; q++) {
                ptrdiff_t k0 = q * st.K, len = c - k0 < st.K ? c - k0 : st.K;
                if (st.cm[q] != (T)INFINITY) nan = CSM_H(row_has_nan)(gr + k0 * gsc, gsc, len);
            }
            CSM_H(seg_fill)(gr, gsc, c, (T)NAN);
        }
        if (labels && !smooth)
            *lr = (nan || !st.pinf || zt == INFINITY) ? NAN : INFINITY;
        else
            *lr = NAN;
        *lr *= rscale;
        if (lse_out) *lse_out = nan ? NAN : (st.pinf ? INFINITY : -INFINITY);
        return;
    }
    const double stot = st.cnt + st.s;
    const double L = log1p((st.cnt - 1.0) + st.s);
    const double lse = st.M + L;
    if (lse_out) *lse_out = lse;
    double loss, A, kb;
    if (labels) {
        const double W = opt->class_weight_sum;
        loss = (1.0 - eps) * wt * ((st.M - zt) + L);
        if (smooth) loss += eps / (double)c * (st.tdot + W * L);
        A = (1.0 - eps) * wt + (smooth ? eps / (double)c * W : 0.0);
        kb = smooth ? eps / (double)c : 0.0;
    } else {
        loss = st.tdot + st.tsum * L;
        A = st.tsum;
        kb = 1.0;
    }
    if (alpha != 0.0) {
        loss += alpha * lse * lse;
        A += 2.0 * alpha * lse;
    }
    *lr = rscale * loss;
    if (!gr) return;
    const double g0 = opt->grad_scale * gscale;
    const T tkb = (T)(g0 * kb);
    /* literal flags: one branch-free loop per case */
#define CSM_SG(G, GS, LEN, FA, SOFT, K0, CAP) \
    CSM_H(seg_grad)(G, GS, LEN, FA, SOFT, tp, K0, tkb, CAP, (CAP) ? vb + (K0) : NULL, icap)
    CSM_CHUNK_LOOP(c, st.nch, q,
        ptrdiff_t k0 = q * st.K, len = c - k0 < st.K ? c - k0 : st.K;
        T fa = (T)(csm_expdiff((double)st.cm[q], st.M) * (g0 * A / stot));
        if (gsc == 1) {
            if (capped) { if (soft) CSM_SG(gr + k0, 1, len, fa, 1, k0, 1);
                          else CSM_SG(gr + k0, 1, len, fa, 0, k0, 1); }
            else { if (soft) CSM_SG(gr + k0, 1, len, fa, 1, k0, 0);
                   else CSM_SG(gr + k0, 1, len, fa, 0, k0, 0); }
        } else {
            CSM_SG(gr + k0 * gsc, gsc, len, fa, soft, k0, capped);
        }
    )
#undef CSM_SG
    if (labels) {
        /* g_T = g0 [A (y_T - 1) + A - (1-e) w_T - (e/C) w_T] * chain, with
         * y_T - 1 = (e_T - stot) / stot formed without cancellation */
        double num = zt == st.M ? -((st.cnt - 1.0) + st.s) : exp(zt - st.M) - stot;
        double gt = A * (num / stot) + (A - (1.0 - eps) * wt - kb * wt);
        if (capped) {
            double u = zt / (double)cap;
            gt *= 1.0 - u * u;
        }
        gr[tgt * gsc] = (T)(g0 * gt);
    }
}

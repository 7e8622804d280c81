/*
 * kernels_partial.h -- the partial family: rows whose classes are split into
 * slices (vocabulary shards: csoftmax.dask, csoftmax.partial_*).  Each slice
 * is reduced to a small per-row state (csm_partial), the states of a row are
 * merged in a fixed order (csm_partial_merge, partial_merge.c), and each
 * slice is then written from the merged state (csm_softmax_merged,
 * csm_log_softmax_merged, csm_xent_grad_merged).  Compiled in translation
 * units of its own (partial_<isa>.c) on the shared chunked row pass.
 *
 * Design
 *   1. The state of a slice is the row pass's own (kernels_chunks.h, Design
 *      3 of kernels_impl.h): the max m (of the soft-capped values), the count
 *      of elements equal to m, the sum s of exp(x' - m) over the others; for
 *      the cross-entropy also the capped target logit z'_T when the label
 *      falls in the slice (label - opt->label_offset in [0, c)), and with
 *      label smoothing the slice's sum of class weights t and its weighted
 *      sum sum_k t_k (sh - x'_k), sh = m when m is finite, else 0.  These are
 *      exactly the per-chunk quantities the one-piece kernels combine, so a
 *      state merged from one slice gives the one-piece result of the row
 *      family bit for bit, and several slices give it to rounding.
 *   2. Special slices are folded into the state: any NaN -> m = NaN (s = NaN);
 *      a +inf (no NaN) -> m = +inf, count 1, s = 0; all -inf (or no classes)
 *      -> m = -inf, count 0, s = 0.  Merging keeps SciPy's precedence: NaN,
 *      then +inf, then the finite merge.
 *   3. The "merged" kernels read each slice once more: the row pass stores
 *      exp(x' - m_chunk) per chunk (pass 1 from memory, pass 2 from cache),
 *      and the final pass scales each chunk by exp(m_chunk - M) * f, with the
 *      row's M and f = 1 / (count + s) (softmax) or grad_scale * A / (count +
 *      s) (gradient) supplied per row by the caller, who merged the states.
 *      A row whose merged M is not finite is one of SciPy's special rows and
 *      gets its one-piece values (NaN; log-softmax: NaN at +inf, -inf else).
 */

/* fields of a state row, and of the per-row array of the merged kernels */
#define CSM_PS_M 0
#define CSM_PS_CNT 1
#define CSM_PS_S 2
#define CSM_PS_ZT 3
#define CSM_PS_TSUM 4
#define CSM_PS_TDOT 5

/* The options both halves of the family read (opt may be NULL: none). */
typedef struct {
    int use_ig, smooth, capped;
    int64_t ig, off;
    T cap, icap;
    CSM_H(tspec) tp;
} CSM_H(sliceopt);

static CSM_H(sliceopt) CSM_H(slice_opts)(const csm_xent_opts *opt, int labels)
{
    CSM_H(sliceopt) o = {0};
    o.tp.qb = 1;
    if (!opt) return o;
    o.use_ig = labels && opt->use_ignore;
    o.ig = opt->ignore_index;
    o.off = opt->label_offset;
    o.smooth = opt->label_smoothing != 0.0;
    o.capped = opt->softcap > 0.0;
    o.cap = o.capped ? (T)opt->softcap : (T)0;
    o.icap = o.capped ? (T)1 / o.cap : (T)0;
    o.tp.w = (const T *)opt->class_weight;
    return o;
}

int CSM_FN(csm_partial)(csm_shape sh, const T *x, csm_strides xs, const int64_t *label,
                        csm_strides lbs, const csm_xent_opts *opt, double *part,
                        csm_strides ps)
{
    if (CSM_H(bad_shape)(sh) || (label && !opt)) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    const CSM_H(sliceopt) o = CSM_H(slice_opts)(opt, label != NULL);
    const int use_ig = o.use_ig, smooth = o.smooth, capped = o.capped;
    const int64_t ig = o.ig, off = o.off;
    const T cap = o.cap, icap = o.icap;
    CSM_H(tspec) tp = o.tp;
    double tsum_c[CSM_MAXCH], tsum_all = 0.0;
    if (smooth && c > 0) {
        tsum_all = CSM_H(tsum_chunks)(tp.w, c, tsum_c);
        tp.tsum_c = tsum_c;
    }
    csm_scratch scr;
    if (csm_scratch_init(&scr, capped, nrows, c, sizeof(T))) return CSM_ERR_NOMEM;
    CSM_ROWS_FOR(nrows, c)
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        const T *xr = x + i0 * xs.s0 + i1 * xs.s1;
        double *pr = part + i0 * ps.s0 + i1 * ps.s1;
        double M = -INFINITY, cnt = 0.0, s = 0.0, zt = 0.0, tsum = 0.0, tdot = 0.0;
        const int64_t lab = label ? label[i0 * lbs.s0 + i1 * lbs.s1] : 0;
        if (c > 0 && !(use_ig && lab == ig)) {
            if (label && (uint64_t)(lab - off) < (uint64_t)c) {
                V vt = CSM_H(vload_part)(xr + (lab - off) * xs.sc, 1, 1, 0);
                zt = (double)CSM_LANE(CSM_H(vcap)(vt, capped, cap, icap), 0);
            }
            CSM_H(rowst) st;
            CSM_ROW_PASS_ANY(xr, xs.sc, NULL, 0, c, 0, smooth, &tp, capped, cap,
                                (T *)csm_scratch_row(&scr), CSM_NEXT_ROW(x, sh, xs, r, nrows),
                                NULL, &st);
            if (st.special) {
                if (CSM_H(row_has_nan)(xr, xs.sc, c)) {
                    M = NAN;
                    s = NAN;
                } else if (st.pinf) {
                    M = INFINITY;
                    cnt = 1.0;
                } else if (smooth) {       /* all -inf: sum t (0 - x) */
                    for (ptrdiff_t k = 0; k < c; k++)
                        tdot -= (tp.w ? (double)tp.w[k] : 1.0) * (double)xr[k * xs.sc];
                }
                tsum = smooth ? tsum_all : 0.0;
            } else {
                M = st.M;
                cnt = st.cnt;
                s = st.s;
                if (s != s) {           /* a NaN with a finite max */
                    M = NAN;
                    cnt = 0.0;
                }
                if (smooth) {
                    tsum = st.tsum;
                    tdot = M == M ? st.tdot : 0.0;   /* (a NaN row: 0, as above) */
                }
            }
        }
        pr[CSM_PS_M * ps.sc] = M;
        pr[CSM_PS_CNT * ps.sc] = cnt;
        pr[CSM_PS_S * ps.sc] = s;
        pr[CSM_PS_ZT * ps.sc] = zt;
        pr[CSM_PS_TSUM * ps.sc] = tsum;
        pr[CSM_PS_TDOT * ps.sc] = tdot;
    }
    csm_scratch_free(&scr);
    return CSM_OK;
}

/*
 * The merged kernels (Design 3).  mode 0: softmax, mrg = (M, 1 / (count + s));
 * mode 1: log-softmax, mrg = (M, L) with L = log1p(count - 1 + s);
 * mode 2: gradient, mrg = (M, g0 A / (count + s), g0 kb, g_T): every element
 * (e f - kb' t_k) dz'/dz as csm_xent_labels, the target element (if in the
 * slice) set to g_T, ignored rows zero.
 */
static int CSM_H(merged)(int mode, csm_shape sh, const T *x, csm_strides xs,
                         const int64_t *label, csm_strides lbs, const csm_xent_opts *opt,
                         const double *mrg, csm_strides ms, T *y, csm_strides ys)
{
    if (CSM_H(bad_shape)(sh) || (mode == 2 && (!opt || !label))) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    if (c == 0) return CSM_OK;
    const CSM_H(sliceopt) o = CSM_H(slice_opts)(mode == 2 ? opt : NULL, mode == 2);
    const int use_ig = o.use_ig, smooth = o.smooth, capped = o.capped;
    const int64_t ig = o.ig, off = o.off;
    const T cap = o.cap, icap = o.icap;
    const CSM_H(tspec) tp = o.tp;
    csm_scratch scr;
    if (csm_scratch_init(&scr, capped, nrows, c, sizeof(T))) return CSM_ERR_NOMEM;
    CSM_ROWS_FOR(nrows, c)
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        const T *xr = x + i0 * xs.s0 + i1 * xs.s1;
        T *yr = y + i0 * ys.s0 + i1 * ys.s1;
        const double *mr = mrg + i0 * ms.s0 + i1 * ms.s1;
        const double M = mr[0], f = mr[ms.sc];
        int64_t lab = 0;
        if (mode == 2) {
            lab = label[i0 * lbs.s0 + i1 * lbs.s1];
            if (use_ig && lab == ig) {
                CSM_H(seg_fill)(yr, ys.sc, c, (T)0);
                continue;
            }
        }
        if (!(M > -INFINITY && M < INFINITY)) {
            if (mode == 1 && M == INFINITY) {
                for (ptrdiff_t k = 0; k < c; k++)
                    yr[k * ys.sc] = xr[k * xs.sc] == (T)INFINITY ? (T)NAN : -(T)INFINITY;
            } else {
                CSM_H(seg_fill)(yr, ys.sc, c, (T)NAN);
            }
            continue;
        }
        if (mode == 1) {
            if (xs.sc == 1 && ys.sc == 1) CSM_H(seg_logsm)(xr, 1, yr, 1, c, M, f);
            else CSM_H(seg_logsm)(xr, xs.sc, yr, ys.sc, c, M, f);
            continue;
        }
        T *vb = (T *)csm_scratch_row(&scr);
        CSM_H(rowst) st;
        CSM_ROW_PASS_ANY(xr, xs.sc, yr, ys.sc, c, 1, 0, NULL, capped, cap, vb,
                            CSM_NEXT_ROW(x, sh, xs, r, nrows), CSM_NEXT_ROW(y, sh, ys, r, nrows),
                            &st);
        const T tkb = mode == 2 ? (T)mr[2 * ms.sc] : (T)0;
        for (ptrdiff_t q = 0; q < st.nch; q++) {
            const ptrdiff_t k0 = q * st.K, len = c - k0 < st.K ? c - k0 : st.K;
            const T fa = (T)(csm_expdiff((double)st.cm[q], M) * f);
            T *yc = yr + k0 * ys.sc;
            if (mode == 0) {
                if (ys.sc == 1) CSM_H(seg_scale)(yc, 1, len, fa);
                else CSM_H(seg_scale)(yc, ys.sc, len, fa);
            } else if (ys.sc == 1) {
                if (capped) {
                    if (smooth) CSM_H(seg_grad)(yc, 1, len, fa, 1, &tp, k0, tkb, 1, vb + k0, icap);
                    else CSM_H(seg_grad)(yc, 1, len, fa, 0, &tp, k0, tkb, 1, vb + k0, icap);
                } else {
                    if (smooth) CSM_H(seg_grad)(yc, 1, len, fa, 1, &tp, k0, tkb, 0, NULL, icap);
                    else CSM_H(seg_grad)(yc, 1, len, fa, 0, &tp, k0, tkb, 0, NULL, icap);
                }
            } else {
                CSM_H(seg_grad)(yc, ys.sc, len, fa, smooth, &tp, k0, tkb, capped,
                                capped ? vb + k0 : NULL, icap);
            }
        }
        if (mode == 2 && (uint64_t)(lab - off) < (uint64_t)c)
            yr[(lab - off) * ys.sc] = (T)mr[3 * ms.sc];
    }
    csm_scratch_free(&scr);
    return CSM_OK;
}

int CSM_FN(csm_softmax_merged)(csm_shape sh, const T *x, csm_strides xs,
                               const int64_t *label, csm_strides lbs, const csm_xent_opts *opt,
                               const double *mrg, csm_strides ms, T *y, csm_strides ys)
{
    return CSM_H(merged)(0, sh, x, xs, label, lbs, opt, mrg, ms, y, ys);
}

int CSM_FN(csm_log_softmax_merged)(csm_shape sh, const T *x, csm_strides xs,
                                   const int64_t *label, csm_strides lbs,
                                   const csm_xent_opts *opt, const double *mrg,
                                   csm_strides ms, T *y, csm_strides ys)
{
    return CSM_H(merged)(1, sh, x, xs, label, lbs, opt, mrg, ms, y, ys);
}

int CSM_FN(csm_xent_grad_merged)(csm_shape sh, const T *x, csm_strides xs,
                                 const int64_t *label, csm_strides lbs,
                                 const csm_xent_opts *opt, const double *mrg,
                                 csm_strides ms, T *y, csm_strides ys)
{
    return CSM_H(merged)(2, sh, x, xs, label, lbs, opt, mrg, ms, y, ys);
}

/*
 * kernels_rows.h -- the row family: the public kernels (csm_<op>_<dtype>_<isa>)
 * over rows walked one at a time with the chunked pass (kernels_chunks.h),
 * and short contiguous rows several per vector (kernels_tiles.h).
 */

/* ---- logsumexp -------------------------------------------------------------- */

int CSM_FN(csm_logsumexp)(csm_shape sh, const T *x, csm_strides xs, T *lse, csm_strides ls)
{
    if (CSM_H(bad_shape)(sh)) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    csm_colgeo cg;
    if (nrows > 0 && csm_col_pick(sh, xs, &cg)) return CSM_H(cols_rows)(&cg, x, xs, lse, ls, 0);
    ptrdiff_t done = 0;
#if CSM_TILES
    if (c >= 1 && c <= CSM_TILE_MAXC && xs.sc == 1 && nrows >= VL) {
        const ptrdiff_t ntiles = nrows / VL;
        CSM_PARALLEL_FOR(ntiles, nrows * c)
        for (ptrdiff_t tI = 0; tI < ntiles; tI++) {
            const T *p[VL];
            const ptrdiff_t r0 = tI * VL;
            CSM_H(tile_rows)(x, sh, xs, r0, p);
            V M;
            D acc, cnt;
            if (CSM_H(tile_core)(p, c, NULL, &M, &acc, &cnt)) {
                D out = CSM_WIDEN_T(M) + CSM_H(dlog1p)((cnt - 1.0) + acc);
                for (int j = 0; j < VL; j++) {
                    CSM_ROW_INDEX(r0 + j, sh, i0, i1);
                    lse[i0 * ls.s0 + i1 * ls.s1] = (T)out[j];
                }
            } else {
                for (int j = 0; j < VL; j++) {
                    CSM_ROW_INDEX(r0 + j, sh, i0, i1);
                    lse[i0 * ls.s0 + i1 * ls.s1] = (T)CSM_H(lse_row)(p[j], 1, c, NULL);
                }
            }
        }
        done = ntiles * VL;
    }
#endif
    CSM_ROWS_FOR(nrows - done, c)
    for (ptrdiff_t r = done; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        const T *xr = x + i0 * xs.s0 + i1 * xs.s1;
        lse[i0 * ls.s0 + i1 * ls.s1] = (T)CSM_H(lse_row)(xr, xs.sc, c,
                                                         CSM_NEXT_ROW(x, sh, xs, r, nrows));
    }
    return CSM_OK;
}

/*
 * Weighted log-sum-exp, SciPy's algorithm in double (not a hot path):
 * a' = a where b != 0 else -inf; M = max a' (NaN if any a' is NaN);
 * m = sum of b at a' == M; s = sum of b exp(a' - M) elsewhere, divided by m;
 * result log1p(s) + log|m| + M with sign(1 + s) * sign(m); if that is not
 * finite, the direct log|sum b exp(a)|.
 */
int CSM_FN(csm_logsumexp_b)(csm_shape sh, const T *x, csm_strides xs, const T *b, csm_strides bs,
                            T *lse, csm_strides ls, T *sign, csm_strides ss)
{
    if (CSM_H(bad_shape)(sh)) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    CSM_PARALLEL_FOR(nrows, nrows * c)
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        const T *xr = x + i0 * xs.s0 + i1 * xs.s1;
        const T *br = b + i0 * bs.s0 + i1 * bs.s1;
        double M = -INFINITY;
        int nan = 0;
        for (ptrdiff_t k = 0; k < c; k++) {
            double bk = (double)br[k * bs.sc], ak = (double)xr[k * xs.sc];
            if (bk == 0.0) continue;
            if (ak != ak) nan = 1;
            else if (ak > M) M = ak;
        }
        double out, sg;
        double m = 0.0, s = 0.0;
        if (!nan && c > 0) {
            for (ptrdiff_t k = 0; k < c; k++) {
                double bk = (double)br[k * bs.sc], ak = (double)xr[k * xs.sc];
                if (bk == 0.0) continue;
                if (ak == M) m += bk;
                else s += bk * exp(ak - M);
            }
            if (s != 0.0) s = s / m;
            sg = (s + 1.0 > 0 ? 1.0 : (s + 1.0 < 0 ? -1.0 : (s + 1.0 == 0 ? 0.0 : NAN)))
               * (m > 0 ? 1.0 : (m < 0 ? -1.0 : (m == 0 ? 0.0 : NAN)));
            if (s < -1.0) s = -s - 2.0;
            out = log1p(s) + log(fabs(m)) + M;
        } else {
            out = NAN;
            sg = NAN;
        }
        if (!sign && sg < 0) out = NAN;
        if (!isfinite(out)) {
            double d = 0.0;
            for (ptrdiff_t k = 0; k < c; k++)
                d += (double)br[k * bs.sc] * exp((double)xr[k * xs.sc]);
            sg = d > 0 ? 1.0 : (d < 0 ? -1.0 : (d == 0 ? 0.0 : NAN));
            out = log(sign ? fabs(d) : d);
        }
        lse[i0 * ls.s0 + i1 * ls.s1] = (T)out;
        if (sign) sign[i0 * ss.s0 + i1 * ss.s1] = (T)sg;
    }
    return CSM_OK;
}

/* ---- softmax / log_softmax --------------------------------------------------- */

int CSM_FN(csm_softmax)(csm_shape sh, const T *x, csm_strides xs, T *y, csm_strides ys)
{
    if (CSM_H(bad_shape)(sh)) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    if (c == 0) return CSM_OK;
    csm_colgeo cg;
    if (nrows > 0 && csm_col_pick(sh, xs, &cg)) return CSM_H(cols_rows)(&cg, x, xs, y, ys, 1);
    CSM_ROWS_FOR(nrows, c)
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        CSM_H(softmax_row)(x + i0 * xs.s0 + i1 * xs.s1, xs.sc, y + i0 * ys.s0 + i1 * ys.s1,
                           ys.sc, c, CSM_NEXT_ROW(x, sh, xs, r, nrows),
                           CSM_NEXT_ROW(y, sh, ys, r, nrows));
    }
    return CSM_OK;
}

int CSM_FN(csm_log_softmax)(csm_shape sh, const T *x, csm_strides xs, T *y, csm_strides ys)
{
    if (CSM_H(bad_shape)(sh)) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    if (c == 0) return CSM_OK;
    csm_colgeo cg;
    if (nrows > 0 && csm_col_pick(sh, xs, &cg)) return CSM_H(cols_rows)(&cg, x, xs, y, ys, 2);
    CSM_ROWS_FOR(nrows, c)
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        CSM_H(log_softmax_row)(x + i0 * xs.s0 + i1 * xs.s1, xs.sc, y + i0 * ys.s0 + i1 * ys.s1,
                               ys.sc, c, CSM_NEXT_ROW(x, sh, xs, r, nrows));
    }
    return CSM_OK;
}

/* ---- cross-entropy ------------------------------------------------------------- */

int CSM_FN(csm_xent_labels)(csm_shape sh, const T *z, csm_strides zs,
                            const int64_t *label, csm_strides lbs, const csm_xent_opts *opt,
                            double *loss, csm_strides ls, T *grad, csm_strides gs,
                            csm_error *err)
{
    if (CSM_H(bad_shape)(sh) || !opt) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    const int use_ig = opt->use_ignore;
    const int64_t ig = opt->ignore_index;
    /* Validate every label before anything is written (two nested loops:
     * no division per row; unsigned compare: one test for both ends). */
    for (ptrdiff_t i0 = 0; i0 < sh.n0; i0++) {
        const int64_t *lp = label + i0 * lbs.s0;
        for (ptrdiff_t i1 = 0; i1 < sh.n1; i1++) {
            const int64_t lab = lp[i1 * lbs.s1];
            if ((uint64_t)lab >= (uint64_t)c && !(use_ig && lab == ig)) {
                if (err) { err->row = i0 * sh.n1 + i1; err->value = lab; }
                return CSM_ERR_LABEL;
            }
        }
    }
    const int smooth = opt->label_smoothing != 0.0;
    const int capped = opt->softcap > 0.0;
    CSM_H(tspec) tp = {NULL, 0, (const T *)opt->class_weight, 0, 1, NULL};
    /* the smoothing's per-chunk sums of t = w, once for every row */
    double tsum_c[CSM_MAXCH];
    if (smooth && c > 0) {
        CSM_H(tsum_chunks)(tp.w, c, tsum_c);
        tp.tsum_c = tsum_c;
    }
    csm_colgeo cg;
    if (nrows > 0 && csm_col_pick(sh, zs, &cg) && CSM_H(cols_fit)(c, capped))
        return CSM_H(cols_xent)(&cg, z, zs, label, lbs, NULL, zs, opt, loss, ls, grad, gs,
                                smooth ? tsum_c : NULL);
    ptrdiff_t done = 0;
#if CSM_TILES
    if (c >= 1 && c <= CSM_TILE_MAXC && zs.sc == 1 && (!grad || gs.sc == 1) && nrows >= VL &&
        !smooth && !capped && !opt->class_weight && opt->z_loss == 0.0) {
        const ptrdiff_t ntiles = nrows / VL;
        static const T zero_row[CSM_TILE_MAXC];
        CSM_PARALLEL_FOR(ntiles, nrows * c)
        for (ptrdiff_t tI = 0; tI < ntiles; tI++) {
            const ptrdiff_t r0 = tI * VL;
            const T *p[VL];
            T *g[VL];
            int64_t lab[VL];
            int skip[VL];
            CSM_H(tile_rows)(z, sh, zs, r0, p);
            if (grad) CSM_H(tile_rows)(grad, sh, gs, r0, (const T **)g);
            D zt = CSM_H(dsplat)(0.0);
            for (int j = 0; j < VL; j++) {
                CSM_ROW_INDEX(r0 + j, sh, i0, i1);
                lab[j] = label[i0 * lbs.s0 + i1 * lbs.s1];
                skip[j] = use_ig && lab[j] == ig;
                if (skip[j]) p[j] = zero_row;          /* ignored rows are never read */
                else zt[j] = (double)p[j][lab[j]];
            }
            V M, E[CSM_TILE_MAXC];
            D acc, cnt;
            if (!CSM_H(tile_core)(p, c, grad ? E : NULL, &M, &acc, &cnt)) {
                for (int j = 0; j < VL; j++) {
                    const ptrdiff_t r = r0 + j;
                    CSM_ROW_INDEX(r, sh, i0, i1);
                    double *lr = loss + i0 * ls.s0 + i1 * ls.s1;
                    if (skip[j]) {
                        *lr = 0.0;
                        if (opt->lse_out) opt->lse_out[r] = 0.0;
                        if (grad) CSM_H(seg_fill)(g[j], 1, c, (T)0);
                        continue;
                    }
                    CSM_H(xent_row)(p[j], 1, grad ? g[j] : NULL, 1, c, (ptrdiff_t)lab[j], &tp,
                                    0, 0, opt, opt->row_scale ? opt->row_scale[r] : 1.0,
                                    opt->row_gscale ? opt->row_gscale[r] : 1.0, lr,
                                    opt->lse_out ? opt->lse_out + r : NULL, NULL, NULL, NULL);
                }
                continue;
            }
            const D Md = CSM_WIDEN_T(M);
            const D L = CSM_H(dlog1p)((cnt - 1.0) + acc);
            const D stot = cnt + acc;
            D gf = CSM_H(dsplat)(opt->grad_scale);
            for (int j = 0; j < VL; j++) {
                const ptrdiff_t r = r0 + j;
                CSM_ROW_INDEX(r, sh, i0, i1);
                const double rs = opt->row_scale ? opt->row_scale[r] : 1.0;
                if (opt->row_gscale) gf[j] *= opt->row_gscale[r];
                if (skip[j]) gf[j] = 0.0;
                loss[i0 * ls.s0 + i1 * ls.s1] = skip[j] ? 0.0 : rs * ((Md[j] - zt[j]) + L[j]);
                if (opt->lse_out) opt->lse_out[r] = skip[j] ? 0.0 : Md[j] + L[j];
            }
            if (!grad) continue;
            const V F = CSM_NARROW_T(gf / stot);
            for (ptrdiff_t k = 0; k < c; k++) {
                V gk = E[k] * F;
                for (int j = 0; j < VL; j++) g[j][k] = gk[j];
            }
            /* the target entry: g0 (y_T - 1) with y_T - 1 = (e_T - stot) / stot */
            for (int j = 0; j < VL; j++) {
                if (skip[j]) continue;
                const ptrdiff_t tg = (ptrdiff_t)lab[j];
                double num = zt[j] == Md[j] ? -((cnt[j] - 1.0) + acc[j])
                                            : (double)E[tg][j] - stot[j];
                g[j][tg] = (T)(gf[j] * (num / stot[j]));
            }
        }
        done = ntiles * VL;
    }
#endif
    /* soft-capped rows are kept capped in a scratch row (see row_pass) */
    csm_scratch scr;
    if (csm_scratch_init(&scr, capped, nrows - done, c, sizeof(T)))
        return CSM_ERR_NOMEM;
    CSM_ROWS_FOR(nrows - done, c)
    for (ptrdiff_t r = done; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        T *gr = grad ? grad + i0 * gs.s0 + i1 * gs.s1 : NULL;
        double *lr = loss + i0 * ls.s0 + i1 * ls.s1;
        int64_t lab = label[i0 * lbs.s0 + i1 * lbs.s1];
        if (use_ig && lab == ig) {
            *lr = 0.0;
            if (opt->lse_out) opt->lse_out[r] = 0.0;
            if (gr) CSM_H(seg_fill)(gr, gs.sc, c, (T)0);
            continue;
        }
        const double rs = opt->row_scale ? opt->row_scale[r] : 1.0;
        const double rg = opt->row_gscale ? opt->row_gscale[r] : 1.0;
        CSM_H(xent_row)(z + i0 * zs.s0 + i1 * zs.s1, zs.sc, gr, gs.sc, c, (ptrdiff_t)lab, &tp,
                        smooth, capped, opt, rs, rg, lr,
                        opt->lse_out ? opt->lse_out + r : NULL, (T *)csm_scratch_row(&scr),
                        CSM_NEXT_ROW(z, sh, zs, r, nrows),
                        grad ? CSM_NEXT_ROW(grad, sh, gs, r, nrows) : NULL);
    }
    csm_scratch_free(&scr);
    return CSM_OK;
}

int CSM_FN(csm_xent_soft)(csm_shape sh, const T *z, csm_strides zs,
                          const T *t, csm_strides ts, const csm_xent_opts *opt,
                          double *loss, csm_strides ls, T *grad, csm_strides gs)
{
    if (CSM_H(bad_shape)(sh) || !opt) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    const int capped = opt->softcap > 0.0;
    const double eps = opt->label_smoothing;
    csm_colgeo cg;
    if (nrows > 0 && csm_col_pick(sh, zs, &cg) && CSM_H(cols_fit)(c, capped))
        return CSM_H(cols_xent)(&cg, z, zs, NULL, zs, t, ts, opt, loss, ls, grad, gs, NULL);
    csm_scratch scr;
    if (csm_scratch_init(&scr, capped, nrows, c, sizeof(T))) return CSM_ERR_NOMEM;
    CSM_ROWS_FOR(nrows, c)
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        T *gr = grad ? grad + i0 * gs.s0 + i1 * gs.s1 : NULL;
        double *lr = loss + i0 * ls.s0 + i1 * ls.s1;
        const double rs = opt->row_scale ? opt->row_scale[r] : 1.0;
        const double rg = opt->row_gscale ? opt->row_gscale[r] : 1.0;
        if (c == 0) {
            *lr = 0.0;
            if (opt->lse_out) opt->lse_out[r] = -INFINITY;
            continue;
        }
        CSM_H(tspec) tp = {t + i0 * ts.s0 + i1 * ts.s1, ts.sc, (const T *)opt->class_weight,
                           (T)(1.0 - eps), (T)(eps / (double)c), NULL};
        CSM_H(xent_row)(z + i0 * zs.s0 + i1 * zs.s1, zs.sc, gr, gs.sc, c, -1, &tp, 0, capped,
                        opt, rs, rg, lr, opt->lse_out ? opt->lse_out + r : NULL,
                        (T *)csm_scratch_row(&scr), CSM_NEXT_ROW(z, sh, zs, r, nrows),
                        grad ? CSM_NEXT_ROW(grad, sh, gs, r, nrows) : NULL);
    }
    csm_scratch_free(&scr);
    return CSM_OK;
}

/* The exp as the kernels use it: a vector whose lanes all lie in
 * [VEXPB_LO, 0] (or are NaN) takes VEXPB, any other VEXP, so the accuracy
 * sweep covers both and the test of equal bits can compare them. */
CSM_INLINE V CSM_H(vexp_any)(V v)
{
    for (int j = 0; j < VL; j++)
        if (CSM_LANE(v, j) < (T)VEXPB_LO || CSM_LANE(v, j) > 0) return VEXP(v);
    return VEXPB(v);
}

int CSM_FN(csm_exp)(ptrdiff_t n, const T *x, T *out)
{
    ptrdiff_t i = 0;
    for (; i + VL <= n; i += VL)
        CSM_H(vstore)(out + i, 1, CSM_H(vexp_any)(CSM_H(vload)(x + i, 1)));
    if (i < n)
        CSM_H(vstore_part)(out + i, 1, n - i,
                           CSM_H(vexp_any)(CSM_H(vload_part)(x + i, 1, n - i, 0)));
    return CSM_OK;
}

int CSM_FN(csm_softcap)(ptrdiff_t n, const T *x, double cap, T *out)
{
    const T c = (T)cap, ic = (T)1 / c;
    ptrdiff_t i = 0;
    for (; i + VL <= n; i += VL)
        CSM_H(vstore)(out + i, 1, CSM_H(vcap)(CSM_H(vload)(x + i, 1), 1, c, ic));
    if (i < n)
        CSM_H(vstore_part)(out + i, 1, n - i,
                           CSM_H(vcap)(CSM_H(vload_part)(x + i, 1, n - i, 0), 1, c, ic));
    return CSM_OK;
}

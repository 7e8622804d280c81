/*
 * kernels_bce.h -- binary (sigmoid) cross-entropy with logits, elementwise
 * (csm_bce_<dtype>), on the shared vector helpers (kernels_common.h, csm_exp.h).
 *
 * Design
 *   1. Per element, with e = exp(-|z|) in (0, 1] and l = log1p(e):
 *        sp(z) = max(z, 0) + l,  sp(-z) = max(-z, 0) + l,
 *        sigmoid(z) = 1 / (1 + e) for z >= 0, e / (1 + e) below, sigmoid(-z) the other,
 *        loss = w (p t sp(-z) + (1 - t) sp(z)),
 *        grad = g0 w ((1 - t) sigmoid(z) - p t sigmoid(-z)).
 *      Both loss terms are >= 0: no cancellation (PyTorch's (1 - t) z + ... form
 *      cancels for soft targets), and a term whose factor is exactly 0 is left out,
 *      so +-inf logits with a hard target give 0, not inf - inf.
 *   2. log1p on (0, 1]: float32 by 2 atanh(u / (2 + u)) to u^15 (truncation below
 *      1.5e-9 relative, about 2 ULP in all); float64 by csm_vlog1p_f64 (2 ULP).
 *   3. Targets are checked over the whole grid before anything is written.
 *      Each row's loss is summed in double lanes in a fixed order (rows are
 *      independent, so the bits do not depend on the thread count).
 *   4. Rows are the (n0, n1) grid of the front end's row view and k runs along
 *      its last axis; contiguous rows get plain vector loads, other strides
 *      lane-by-lane loads (the same arithmetic, the same bits).
 */

#if CSM_IS_F32
CSM_INLINE V CSM_H(vlog1p01)(V u)
{
    V s = u / (VSPLAT(2) + u);
    V w = s * s;
    V p = VSPLAT(1.0f / 15.0f);
    p = VMADD(p, w, VSPLAT(1.0f / 13.0f));
    p = VMADD(p, w, VSPLAT(1.0f / 11.0f));
    p = VMADD(p, w, VSPLAT(1.0f / 9.0f));
    p = VMADD(p, w, VSPLAT(1.0f / 7.0f));
    p = VMADD(p, w, VSPLAT(1.0f / 5.0f));
    p = VMADD(p, w, VSPLAT(1.0f / 3.0f));
    p = p * w;
    V s2 = s + s;
    return VMADD(s2, p, s2);
}
#else
CSM_INLINE V CSM_H(vlog1p01)(V u) { return csm_vlog1p_f64(u); }
#endif

/* The row's loss accumulator: double lanes (float32 vectors widened in two
 * halves), summed in a fixed order at the end of the row. */
#if CSM_IS_F32 && CSM_GNU_VEC
typedef csm_v_f64 CSM_H(bacc);
CSM_INLINE void CSM_H(bce_acc)(CSM_H(bacc) *a0, CSM_H(bacc) *a1, V v)
{
    *a0 += csm_widen_lo_f32(v);
    *a1 += csm_widen_hi_f32(v);
}
#elif CSM_IS_F32
typedef double CSM_H(bacc);
CSM_INLINE void CSM_H(bce_acc)(CSM_H(bacc) *a0, CSM_H(bacc) *a1, V v)
{
    (void)a1;
    *a0 += (double)v;
}
#else
typedef V CSM_H(bacc);
CSM_INLINE void CSM_H(bce_acc)(CSM_H(bacc) *a0, CSM_H(bacc) *a1, V v)
{
    (void)a1;
    *a0 += v;
}
#endif
CSM_INLINE double CSM_H(bce_accsum)(CSM_H(bacc) a)
{
    enum { NL = sizeof(CSM_H(bacc)) / sizeof(double) };
    double b[NL];
    memcpy(b, &a, sizeof b);
    for (int h = NL / 2; h >= 1; h /= 2)
        for (int j = 0; j < h; j++) b[j] += b[j + h];
    return b[0];
}

/* Are all n (<= VL) lanes of v in [0, 1]?  (NaN is not.) */
CSM_INLINE int CSM_H(bce_tok)(V v, ptrdiff_t n)
{
    U ok = VMASK(v >= VSPLAT(0)) & VMASK(v <= VSPLAT(1));
    U all = VLMASK(n);
    return !VANYM((ok & all) ^ all);
}

/* One vector of the loss and gradient: z, t, weights wv (1 when none) and pv. */
CSM_INLINE void CSM_H(bce_vec)(V z, V t, V wv, V pv, V *lv, V *gv)
{
    const V zero = VSPLAT(0), one = VSPLAT(1);
    const U sgn = CSM_BITS(U, VSPLAT(-0.0));
    V a = CSM_FROMBITS(V, CSM_BITS(U, z) & ~sgn);
    V e = VEXP(-a);
    V l = CSM_H(vlog1p01)(e);
    V r = one / (one + e);
    V er = e * r;
    U pos = VMASK(z >= zero);                   /* NaN: not pos (both sides NaN anyway) */
    V sig = VSEL(pos, r, er), nsig = VSEL(pos, er, r);
    V spz = VMAX(z, zero) + l, spn = VMAX(-z, zero) + l;
    V u = one - t, pt = pv * t;
    /* terms with factor exactly 0 are left out (0 * inf) */
    V tp = CSM_FROMBITS(V, CSM_BITS(U, pt * spn) & VMASK(t != zero));
    V tn = CSM_FROMBITS(V, CSM_BITS(U, u * spz) & VMASK(u != zero));
    *lv = wv * (tp + tn);
    *gv = wv * (u * sig - pt * nsig);
}

/* A row's arrays and options (strides in elements; w / pw NULL: 1). */
typedef struct {
    const T *z, *t, *w, *pw;
    ptrdiff_t zs, ts, ws, pws;
    T *e, *g;           /* per-element loss / gradient, or NULL */
    ptrdiff_t es, gs;
    T g0;
} CSM_H(bcerow);

/* VL elements from k (n < VL: a padded partial load, pad 0; weights pad 1) */
CSM_INLINE V CSM_H(bce_ld)(const T *p, ptrdiff_t s, ptrdiff_t n, T pad)
{
    return n == VL ? CSM_H(vload)(p, s) : CSM_H(vload_part)(p, s, n, pad);
}

/* One step over VL elements at k (n valid); returns the loss vector (lanes
 * >= n zero).  S: literal 1 when every stride is 1, else 0 (the row's strides);
 * HW, HP, HE, HG: literal "weight / pos_weight / eloss / grad present". */
CSM_INLINE V CSM_H(bce_step)(const CSM_H(bcerow) rw, ptrdiff_t k, ptrdiff_t n, const int S,
                             const int HW, const int HP, const int HE, const int HG)
{
    const ptrdiff_t zs = S ? 1 : rw.zs, ts = S ? 1 : rw.ts, es = S ? 1 : rw.es,
                    gs = S ? 1 : rw.gs;
    V z = CSM_H(bce_ld)(rw.z + k * zs, zs, n, 0);
    V t = CSM_H(bce_ld)(rw.t + k * ts, ts, n, 0);
    V wv = VSPLAT(1), pv = VSPLAT(1);
    if (HW) wv = rw.ws == 0 ? VSPLAT(*rw.w) : CSM_H(bce_ld)(rw.w + k * rw.ws, rw.ws, n, 1);
    if (HP) pv = rw.pws == 0 ? VSPLAT(*rw.pw) : CSM_H(bce_ld)(rw.pw + k * rw.pws, rw.pws, n, 1);
    V lv, gv;
    CSM_H(bce_vec)(z, t, wv, pv, &lv, &gv);
    if (HE) {
        if (n == VL) CSM_H(vstore)(rw.e + k * es, es, lv);
        else CSM_H(vstore_part)(rw.e + k * es, es, n, lv);
    }
    if (HG) {
        gv = gv * VSPLAT(rw.g0);
        if (n == VL) CSM_H(vstore)(rw.g + k * gs, gs, gv);
        else CSM_H(vstore_part)(rw.g + k * gs, gs, n, gv);
    }
    return n == VL ? lv : CSM_H(vkeep)(lv, n);
}

/* The row: whole vectors in blocks of CSM_BCE_BLK, each block's losses summed
 * in the vector type and then added to the double lanes (a short, fixed
 * order: float32 error of 8 terms per lane, not of the whole row). */
#define CSM_BCE_BLK 8
CSM_INLINE double CSM_H(bce_row_k)(const CSM_H(bcerow) rw, ptrdiff_t c, const int S,
                                   const int HW, const int HP, const int HE, const int HG)
{
    CSM_H(bacc) a0, a1;
    memset(&a0, 0, sizeof a0);
    memset(&a1, 0, sizeof a1);
    ptrdiff_t k = 0;
    while (k + VL <= c) {
        V blk = VSPLAT(0);
        for (int b = 0; b < CSM_BCE_BLK && k + VL <= c; b++, k += VL)
            blk += CSM_H(bce_step)(rw, k, VL, S, HW, HP, HE, HG);
        CSM_H(bce_acc)(&a0, &a1, blk);
    }
    if (k < c) CSM_H(bce_acc)(&a0, &a1, CSM_H(bce_step)(rw, k, c - k, S, HW, HP, HE, HG));
    return CSM_H(bce_accsum)(a0 + a1);
}

/* bce_row_k with the flags as literals: one branch-free loop per case. */
static double CSM_H(bce_row)(const CSM_H(bcerow) *rw, ptrdiff_t c)
{
    const int s1 = rw->zs == 1 && rw->ts == 1 && (!rw->e || rw->es == 1)
                   && (!rw->g || rw->gs == 1);
#define CSM_BR(S, HW, HP)                                                      \
    return rw->g ? (rw->e ? CSM_H(bce_row_k)(*rw, c, S, HW, HP, 1, 1)          \
                          : CSM_H(bce_row_k)(*rw, c, S, HW, HP, 0, 1))         \
                 : (rw->e ? CSM_H(bce_row_k)(*rw, c, S, HW, HP, 1, 0)          \
                          : CSM_H(bce_row_k)(*rw, c, S, HW, HP, 0, 0));
    if (s1) {
        if (rw->w) { if (rw->pw) { CSM_BR(1, 1, 1) } else { CSM_BR(1, 1, 0) } }
        else { if (rw->pw) { CSM_BR(1, 0, 1) } else { CSM_BR(1, 0, 0) } }
    }
    CSM_BR(0, rw->w != NULL, rw->pw != NULL)
#undef CSM_BR
}

int CSM_FN(csm_bce)(csm_shape sh, const T *z, csm_strides zs, const T *t, csm_strides ts,
                    const csm_bce_opts *opt, double *rowloss, csm_strides rls, T *eloss,
                    csm_strides els, T *grad, csm_strides gs, csm_error *err)
{
    if (CSM_H(bad_shape)(sh) || !opt) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    if (nrows == 0 || c == 0) {
        for (ptrdiff_t r = 0; r < nrows && rowloss; r++) {
            CSM_ROW_INDEX(r, sh, i0, i1);
            rowloss[i0 * rls.s0 + i1 * rls.s1] = 0.0;
        }
        return CSM_OK;
    }
    /* every target first: in [0, 1] (NaN is not); vector test, then the
     * first bad element of the row found one by one */
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        const T *tr = t + i0 * ts.s0 + i1 * ts.s1;
        int ok;
        {
            U acc = VLMASK(VL);
            ptrdiff_t k = 0;
            if (ts.sc == 1) {
                for (; k + VL <= c; k += VL) {
                    V v = CSM_H(vload)(tr + k, 1);
                    acc &= VMASK(v >= VSPLAT(0)) & VMASK(v <= VSPLAT(1));
                }
            } else {
                for (; k + VL <= c; k += VL) {
                    V v = CSM_H(vload)(tr + k * ts.sc, ts.sc);
                    acc &= VMASK(v >= VSPLAT(0)) & VMASK(v <= VSPLAT(1));
                }
            }
            ok = !VANYM(acc ^ VLMASK(VL));
            if (ok && k < c)
                ok = CSM_H(bce_tok)(CSM_H(vload_part)(tr + k * ts.sc, ts.sc, c - k, 0), c - k);
        }
        if (ok) continue;
        for (ptrdiff_t k = 0; k < c; k++) {
            const T v = tr[k * ts.sc];
            if (!(v >= (T)0 && v <= (T)1)) {
                if (err) {
                    err->row = r;
                    err->value = (int64_t)k;
                }
                break;
            }
        }
        return CSM_ERR_VALUE;
    }
    const T *w = (const T *)opt->weight, *pw = (const T *)opt->pos_weight;
    const csm_strides ws = opt->ws;
    CSM_PARALLEL_FOR(nrows, nrows * c)
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        CSM_H(bcerow) rw;
        rw.z = z + i0 * zs.s0 + i1 * zs.s1;
        rw.t = t + i0 * ts.s0 + i1 * ts.s1;
        rw.w = w ? w + i0 * ws.s0 + i1 * ws.s1 : NULL;
        rw.pw = pw;
        rw.zs = zs.sc;
        rw.ts = ts.sc;
        rw.ws = ws.sc;
        rw.pws = opt->pws;
        rw.e = eloss ? eloss + i0 * els.s0 + i1 * els.s1 : NULL;
        rw.g = grad ? grad + i0 * gs.s0 + i1 * gs.s1 : NULL;
        rw.es = els.sc;
        rw.gs = gs.sc;
        rw.g0 = (T)opt->grad_scale;
        const double l = CSM_H(bce_row)(&rw, c);
        if (rowloss) rowloss[i0 * rls.s0 + i1 * rls.s1] = l;
    }
    return CSM_OK;
}

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
 *   2. log1p(e) for e in (0, 1]: csm_exp.h's csm_vlog1p01_D.
 *   3. Targets are checked over the whole grid before anything is written.
 *      Each row's loss is summed in double lanes in a fixed order (rows are
 *      independent, so the bits do not depend on the thread count).
 *   4. Rows are the (n0, n1) grid of the front end's row view and k runs along
 *      its last axis; contiguous rows get plain vector loads, other strides
 *      lane-by-lane loads (the same arithmetic, the same bits).
 */


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

/*
 * nx (a literal, 1..2) vectors of the loss and gradient: z, t, weights wv (1 when
 * none) and pv.  Written stage by stage across the vectors, so that their long
 * dependency chains (exp, the divisions, the log1p series: ~120 cycles) overlap
 * in program order (GCC does not schedule them before register allocation, see
 * csm_exp.h); the operations, and so the bits, are those of nx separate vectors.
 * exp(-|z|) is the clamp-free exp on max(-|z|, LO) (NaN kept), redone with the
 * full exp for a vector with some |z| beyond -LO (rare: a branch).
 */
CSM_INLINE void CSM_H(bce_vecn)(const V *z, const V *t, const V *wv, const V *pv, V *lv,
                                V *gv, const int nx)
{
    const V zero = VSPLAT(0), one = VSPLAT(1), lo = VSPLAT((T)VEXPB_LO);
    const U sgn = CSM_BITS(U, VSPLAT(-0.0));
    V a[2], x[2], e[2], l[2], r[2];
    for (int j = 0; j < nx; j++) {
        a[j] = CSM_FROMBITS(V, CSM_BITS(U, z[j]) & ~sgn);
        x[j] = VMAX(lo, -a[j]);                     /* NaN stays NaN */
    }
    VEXPBN(x, e, nx);
    for (int j = 0; j < nx; j++)
        if (VANYM(VMASK(-a[j] < lo))) e[j] = VEXP(-a[j]);
    for (int j = 0; j < nx; j++) {
        l[j] = VLOG1P01(e[j]);
        r[j] = one / (one + e[j]);
    }
    for (int j = 0; j < nx; j++) {
        V er = e[j] * r[j];
        U pos = VMASK(z[j] >= zero);                /* NaN: not pos (both sides NaN anyway) */
        V sig = VSEL(pos, r[j], er), nsig = VSEL(pos, er, r[j]);
        V spz = VMAX(z[j], zero) + l[j], spn = VMAX(-z[j], zero) + l[j];
        V u = one - t[j], pt = pv[j] * t[j];
        /* terms with factor exactly 0 are left out (0 * inf) */
        V tp = CSM_FROMBITS(V, CSM_BITS(U, pt * spn) & VMASK(t[j] != zero));
        V tn = CSM_FROMBITS(V, CSM_BITS(U, u * spz) & VMASK(u != zero));
        lv[j] = wv[j] * (tp + tn);
        gv[j] = wv[j] * (u * sig - pt * nsig);
    }
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

/* One step over nx (literal) vectors at k, n valid elements in the last (n < VL
 * only with nx == 1); returns the sum of their loss vectors (lanes >= n zero).
 * S: literal 1 when every stride is 1, else 0 (the row's strides); HW, HP, HE,
 * HG: literal "weight / pos_weight / eloss / grad present". */
CSM_INLINE V CSM_H(bce_step)(const CSM_H(bcerow) rw, ptrdiff_t k, ptrdiff_t n, const int nx,
                             const int S, const int HW, const int HP, const int HE,
                             const int HG)
{
    const ptrdiff_t zs = S ? 1 : rw.zs, ts = S ? 1 : rw.ts, es = S ? 1 : rw.es,
                    gs = S ? 1 : rw.gs;
    V z[2], t[2], wv[2], pv[2], lv[2], gv[2];
    for (int j = 0; j < nx; j++) {
        const ptrdiff_t kj = k + j * VL;
        z[j] = CSM_H(bce_ld)(rw.z + kj * zs, zs, n, 0);
        t[j] = CSM_H(bce_ld)(rw.t + kj * ts, ts, n, 0);
        wv[j] = pv[j] = VSPLAT(1);
        if (HW) wv[j] = rw.ws == 0 ? VSPLAT(*rw.w) : CSM_H(bce_ld)(rw.w + kj * rw.ws, rw.ws, n, 1);
        if (HP) pv[j] = rw.pws == 0 ? VSPLAT(*rw.pw)
                                    : CSM_H(bce_ld)(rw.pw + kj * rw.pws, rw.pws, n, 1);
    }
    CSM_H(bce_vecn)(z, t, wv, pv, lv, gv, nx);
    V sum = VSPLAT(0);
    for (int j = 0; j < nx; j++) {
        const ptrdiff_t kj = k + j * VL;
        if (HE) {
            if (n == VL) CSM_H(vstore)(rw.e + kj * es, es, lv[j]);
            else CSM_H(vstore_part)(rw.e + kj * es, es, n, lv[j]);
        }
        if (HG) {
            V g = gv[j] * VSPLAT(rw.g0);
            if (n == VL) CSM_H(vstore)(rw.g + kj * gs, gs, g);
            else CSM_H(vstore_part)(rw.g + kj * gs, gs, n, g);
        }
        sum += n == VL ? lv[j] : CSM_H(vkeep)(lv[j], n);
    }
    return sum;
}

/* The row: pairs of whole vectors in blocks of CSM_BCE_BLK, each block's losses
 * summed in the vector type and then added to the double lanes (a short, fixed
 * order: float32 error of 8 terms per lane, not of the whole row). */
#define CSM_BCE_BLK 4
CSM_INLINE double CSM_H(bce_row_k)(const CSM_H(bcerow) rw, ptrdiff_t c, const int S,
                                   const int HW, const int HP, const int HE, const int HG)
{
    CSM_H(bacc) a0, a1;
    memset(&a0, 0, sizeof a0);
    memset(&a1, 0, sizeof a1);
    ptrdiff_t k = 0;
    while (k + 2 * VL <= c) {
        V blk = VSPLAT(0);
        for (int b = 0; b < CSM_BCE_BLK && k + 2 * VL <= c; b++, k += 2 * VL)
            blk += CSM_H(bce_step)(rw, k, VL, 2, S, HW, HP, HE, HG);
        CSM_H(bce_acc)(&a0, &a1, blk);
    }
    for (; k < c; k += VL) {
        const ptrdiff_t n = c - k < VL ? c - k : VL;
        CSM_H(bce_acc)(&a0, &a1, CSM_H(bce_step)(rw, k, n, 1, S, HW, HP, HE, HG));
    }
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

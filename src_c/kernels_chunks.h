/*
 * kernels_chunks.h -- the chunked online pass over one row (kernels_impl.h,
 * Design 3 and 4), shared by every family that walks a row at a time:
 * per-chunk max / exp-sum / gradient / rescale helpers, the weighted-target
 * description of the cross-entropy, the row state (rowst) and row_pass.
 */

/* ---- chunk helpers ------------------------------------------------------- */

/* Max over len elements ignoring NaN (-inf if there is none); *mn gets the
 * min, also ignoring NaN (+inf if none).  The pass reads memory; the min
 * costs nothing there and tells row_pass whether every exp argument of the
 * chunk lies in VEXPB's range. */
CSM_INLINE T CSM_H(seg_maxmin)(const T *x, ptrdiff_t xs, ptrdiff_t len, T *mn)
{
    const T ninf = -(T)INFINITY;
    V a0 = VSPLAT(ninf), a1 = a0, b0 = VSPLAT((T)INFINITY), b1 = b0;
    ptrdiff_t i = 0;
    for (; i + 2 * VL <= len; i += 2 * VL) {
        V v0 = CSM_H(vload)(x + i * xs, xs), v1 = CSM_H(vload)(x + (i + VL) * xs, xs);
        a0 = VMAX(v0, a0);
        a1 = VMAX(v1, a1);
        b0 = VMIN(v0, b0);
        b1 = VMIN(v1, b1);
    }
    for (; i + VL <= len; i += VL) {
        V v0 = CSM_H(vload)(x + i * xs, xs);
        a0 = VMAX(v0, a0);
        b0 = VMIN(v0, b0);
    }
    if (i < len) {
        V v0 = CSM_H(vload_part)(x + i * xs, xs, len - i, (T)NAN);   /* NaN pad: ignored */
        a0 = VMAX(v0, a0);
        b0 = VMIN(v0, b0);
    }
    a0 = VMAX(a1, a0);
    b0 = VMIN(b1, b0);
    T m = ninf, lo = (T)INFINITY;
    for (int j = 0; j < VL; j++) {
        m = CSM_LANE(a0, j) > m ? CSM_LANE(a0, j) : m;
        lo = CSM_LANE(b0, j) < lo ? CSM_LANE(b0, j) : lo;
    }
    *mn = lo;
    return m;
}

/*
 * Target description for the weighted sums of the cross-entropy:
 *   t_k = (q ? q_k * qa + qb : 1) * (w ? w_k : 1)
 * q: soft targets (stride qs), w: class weights (contiguous).
 */
typedef struct {
    const T *q;
    ptrdiff_t qs;
    const T *w;
    T qa, qb;
    const double *tsum_c;   /* without q: sum of t over each chunk (the same for every row) */
} CSM_H(tspec);

/* t for VL elements starting at element k (n < VL: a padded partial load).
 * hq / hw: literal "tp.q / tp.w is set", so that each case gets a loop
 * without branches.  tp is taken by value: the callers' loops store T values,
 * which could alias a struct in memory (qa, qb are T), and GCC would then
 * reload and re-splat the fields on every vector. */
CSM_INLINE V CSM_H(tload)(const CSM_H(tspec) tp, ptrdiff_t k, ptrdiff_t n, const int hq,
                           const int hw)
{
    V w = VSPLAT(1);
    if (hw) w = n == VL ? CSM_H(vload)(tp.w + k, 1) : CSM_H(vload_part)(tp.w + k, 1, n, 0);
    if (!hq) return w;
    V q = n == VL ? CSM_H(vload)(tp.q + k * tp.qs, tp.qs)
                  : CSM_H(vload_part)(tp.q + k * tp.qs, tp.qs, n, 0);
    V t = q * VSPLAT(tp.qa) + VSPLAT(tp.qb);
    return hw ? t * w : t;
}

/* The per-chunk sums of the class weights w (1 each when w is NULL) over a row
 * of c > 0 classes, as the row pass chunks it; returns their total. */
CSM_MAYBE_UNUSED static double CSM_H(tsum_chunks)(const T *w, ptrdiff_t c, double *tsum_c)
{
    const ptrdiff_t K = csm_chunk_len(c), nch = (c + K - 1) / K;
    double all = 0.0;
    for (ptrdiff_t q = 0; q < nch; q++) {
        const ptrdiff_t k0 = q * K, len = c - k0 < K ? c - k0 : K;
        double sw = 0.0;
        for (ptrdiff_t k = 0; k < len; k++) sw += w ? (double)w[k0 + k] : 1.0;
        tsum_c[q] = sw;
        all += sw;
    }
    return all;
}

/* Calls F(hq, hw) with the literal flags of tspec tl. */
#define CSM_TSPEC_CASES(tl, F)                     \
    do {                                           \
        if ((tl).q) {                              \
            if ((tl).w) { F(1, 1) } else { F(1, 0) } \
        } else {                                   \
            if ((tl).w) { F(0, 1) } else { F(0, 0) } \
        }                                          \
    } while (0)

/* Soft-capped logits c * tanh(v / c), or v itself. */
CSM_INLINE V CSM_H(vcap)(V v, const int capped, T cap, T icap)
{
    return capped ? VCTANH(v, VSPLAT(cap), VSPLAT(icap)) : v;
}

/*
 * Software prefetch of what the next chunk pass will read from memory (the
 * next chunk of the row, or the next row): issued from the exp pass, which
 * works from cache and keeps the vector units busy while memory is idle, so
 * the next max pass finds its data in L1/L2.  One step covers the 4 VL
 * elements of one iteration; p == NULL: nothing.  w: for writing (the
 * gradient or softmax output, whose lines are read for ownership anyway).
 */
#if defined(__GNUC__) || defined(__clang__)
#  define CSM_PREFETCH_STEP(p, i, w)                                          \
     do {                                                                     \
         if (p)                                                               \
             for (size_t o_ = 0; o_ < CSM_EXPSUM_NX * sizeof(V); o_ += 64)    \
                 __builtin_prefetch((const char *)((p) + (i)) + o_, w, 3);    \
     } while (0)
#else
#  define CSM_PREFETCH_STEP(p, i, w) ((void)0)
#endif

/*
 * Chunk pass 2 over len elements: e = exp(x - sh); elements with x == m are
 * counted (*cnt) and left out of the sum (*sum).  With store, y receives e
 * (y may be x: every vector is read before it is written).  bnd: every
 * x - sh is known to be in VEXPB's range.  With soft, the cross-entropy's
 * weighted sums *tz = sum t (x - sh) and, with soft targets (tp->q),
 * *tsum = sum t; t from tp, offset by the caller's tk0 (the chunk start).
 * The exp's sum uses two interleaved accumulators, the count (exact) and the
 * weighted sums one each, so that all stay in the 16 registers of AVX2.  The
 * tail is one padded vector masked out of every sum.  With ent, *ea = sum
 * exp(x - sh) (x - sh) (the entropy's sum; an element at -inf adds 0).
 */
CSM_INLINE void CSM_H(seg_expsum)(const T *x, ptrdiff_t xs, T *y, ptrdiff_t ys,
                                   ptrdiff_t len, T sh, T m, const int store, const int bnd,
                                   const int soft, const CSM_H(tspec) *tp, ptrdiff_t tk0,
                                   const T *pfx, T *pfy,
                                   double *sum, double *cnt, double *tsum, double *tz,
                                   const int ent, double *ea)
{
    const V vsh = VSPLAT(sh), vm = VSPLAT(m), zero = VSPLAT(0);
    /* the entropy's d = x - sh, with -inf lifted to a finite value (e is 0 there) */
    const V vlo = VSPLAT(CSM_IS_F32 ? -FLT_MAX : -DBL_MAX);
    const CSM_H(tspec) tl = soft ? *tp : (CSM_H(tspec)){0};
    V acc0 = zero, acc1 = zero, nm = zero, ta = zero, tza = zero, eacc = zero;
    ptrdiff_t i = 0;
    /* NX vectors per step, their exps interleaved (csm_vexpbn); vector j of
     * a step feeds accumulator j % 2; the whole vectors after the last step
     * and the padded tail feed acc0 */
#define CSM_EXPSUM_STEP(k, NX, HQ, HW)                                       \
    do {                                                                     \
        V v_[NX], d_[NX], is_[NX], e_[NX];                                   \
        for (int j = 0; j < (NX); j++) {                                     \
            v_[j] = CSM_H(vload)(x + ((k) + j * VL) * xs, xs);               \
            d_[j] = v_[j] - vsh;                                             \
            is_[j] = VIS1(v_[j], vm);                                        \
            if (soft && !(HQ) && !(HW)) {                                    \
                tza += d_[j];                   /* t == 1 */                 \
            } else if (soft) {                                               \
                V tv_ = CSM_H(tload)(tl, tk0 + (k) + j * VL, VL, HQ, HW);    \
                if (HQ) ta += tv_;                                           \
                tza = VMADD(tv_, d_[j], tza);                                \
            }                                                                \
        }                                                                    \
        if ((NX) == 4) nm += (is_[0] + is_[1]) + (is_[2 % (NX)] + is_[3 % (NX)]); \
        else for (int j = 0; j < (NX); j++) nm += is_[j];                    \
        if (bnd) VEXPBN(d_, e_, NX);                                         \
        else for (int j = 0; j < (NX); j++) e_[j] = VEXP(d_[j]);             \
        if (ent) {        /* a short tree per step: one add on the loop chain */ \
            V dl_[NX];                                                       \
            for (int j = 0; j < (NX); j++) {                                 \
                dl_[j] = d_[j];                                              \
                if (!bnd) dl_[j] = VMAX(dl_[j], vlo);                        \
            }                                                                \
            V ep_ = e_[0] * dl_[0];                                          \
            for (int j = 1; j < (NX); j++) ep_ = VMADD(e_[j], dl_[j], ep_);  \
            eacc += ep_;                                                     \
        }                                                                    \
        for (int j = 0; j < (NX); j++) {                                     \
            if (j % 2) acc1 += e_[j] - is_[j];                               \
            else acc0 += e_[j] - is_[j];                                     \
            if (store) CSM_H(vstore)(y + ((k) + j * VL) * ys, ys, e_[j]);    \
        }                                                                    \
    } while (0)
#ifndef CSM_EXPSUM_NX
#define CSM_EXPSUM_NX 4
#endif
#define CSM_EXPSUM_LOOP(HQ, HW)                                              \
    for (; i + CSM_EXPSUM_NX * VL <= len; i += CSM_EXPSUM_NX * VL) {         \
        CSM_PREFETCH_STEP(pfx, i, 0);                                        \
        CSM_PREFETCH_STEP(pfy, i, 1);                                        \
        CSM_EXPSUM_STEP(i, CSM_EXPSUM_NX, HQ, HW);                           \
    }                                                                        \
    for (; i + VL <= len; i += VL) CSM_EXPSUM_STEP(i, 1, HQ, HW);
    if (soft) CSM_TSPEC_CASES(tl, CSM_EXPSUM_LOOP);
    else { CSM_EXPSUM_LOOP(0, 0) }
#undef CSM_EXPSUM_LOOP
#undef CSM_EXPSUM_STEP
    for (; i < len; i += VL) {
        const ptrdiff_t n = len - i < VL ? len - i : VL;
        V v = n == VL ? CSM_H(vload)(x + i * xs, xs) : CSM_H(vload_part)(x + i * xs, xs, n, m);
        V d = v - vsh;
        V e = bnd ? VEXPB(d) : VEXP(d);
        V is = VIS1(v, vm);
        acc0 += CSM_H(vkeep)(e - is, n);
        nm += CSM_H(vkeep)(is, n);
        if (ent) eacc += CSM_H(vkeep)(e * VMAX(d, vlo), n);
        if (soft) {
            V tv = CSM_H(vkeep)(CSM_H(tload)(tl, tk0 + i, n, tl.q != NULL, tl.w != NULL), n);
            ta += tv;
            tza = VMADD(tv, d, tza);
        }
        if (store) {
            if (n == VL) CSM_H(vstore)(y + i * ys, ys, e);
            else CSM_H(vstore_part)(y + i * ys, ys, n, e);
        }
    }
    *sum = CSM_H(vsum)(acc0) + CSM_H(vsum)(acc1);
    *cnt = CSM_H(vsum)(nm);
    if (ent) *ea = CSM_H(vsum)(eacc);
    if (soft) {
        *tsum = CSM_H(vsum)(ta);
        *tz = CSM_H(vsum)(tza);
    }
}

/*
 * Soft-capping, chunk pass 1: v[k] = c tanh(x[k] / c) into v (contiguous),
 * returns the max of v ignoring NaN (-inf if none).  The tanh runs here, on
 * data arriving from memory, where the max pass of an uncapped row leaves the
 * vector units idle; the exp pass then reads v from cache.
 */
CSM_INLINE T CSM_H(seg_cap_max)(const T *x, ptrdiff_t xs, T *v, ptrdiff_t len, T cap, T icap)
{
    const T ninf = -(T)INFINITY;
    V a0 = VSPLAT(ninf);     /* one accumulator: a second one spilled to the stack */
    ptrdiff_t i = 0;
    for (; i + VL <= len; i += VL) {
        V v0 = CSM_H(vcap)(CSM_H(vload)(x + i * xs, xs), 1, cap, icap);
        CSM_H(vstore)(v + i, 1, v0);
        a0 = VMAX(v0, a0);
    }
    if (i < len) {
        /* NaN padding: ignored by the max */
        V v0 = CSM_H(vcap)(CSM_H(vload_part)(x + i * xs, xs, len - i, (T)NAN), 1, cap, icap);
        CSM_H(vstore_part)(v + i, 1, len - i, v0);
        a0 = VMAX(v0, a0);
    }
    T m = ninf;
    for (int j = 0; j < VL; j++) m = CSM_LANE(a0, j) > m ? CSM_LANE(a0, j) : m;
    return m;
}

/*
 * Gradient pass over len elements of g (holding e):
 *   r = g * fa - t * kb                  (t term only if soft)
 *   g = capped ? r * (1 - (x' / cap)^2) : r      (x' from vb, contiguous)
 */
CSM_INLINE void CSM_H(seg_grad)(T *g, ptrdiff_t gs, ptrdiff_t len, T fa, const int soft,
                                 const CSM_H(tspec) *tp, ptrdiff_t tk0, T kb,
                                 const int capped, const T *vb, T icap)
{
    const V vfa = VSPLAT(fa), vnkb = VSPLAT(-kb), vic = VSPLAT(icap), one = VSPLAT(1);
    const CSM_H(tspec) tl = soft ? *tp : (CSM_H(tspec)){0};
    ptrdiff_t i = 0;
#define CSM_GRAD_V(sv, k, n, HQ, HW)                                         \
    do {                                                                     \
        sv = sv * vfa;                                                       \
        if (soft) sv = VMADD(CSM_H(tload)(tl, tk0 + (k), n, HQ, HW), vnkb, sv); \
        if (capped) {                                                        \
            V u_ = ((n) == VL ? CSM_H(vload)(vb + (k), 1)                    \
                              : CSM_H(vload_part)(vb + (k), 1, n, 0)) * vic; \
            sv = sv * VMADD(-u_, u_, one);                                   \
        }                                                                    \
    } while (0)
#define CSM_GRAD_LOOP(HQ, HW)                                                \
    for (; i + VL <= len; i += VL) {                                         \
        V sv = CSM_H(vload)(g + i * gs, gs);                                 \
        CSM_GRAD_V(sv, i, VL, HQ, HW);                                       \
        CSM_H(vstore)(g + i * gs, gs, sv);                                   \
    }                                                                        \
    if (i < len) {                                                           \
        const ptrdiff_t n = len - i;                                         \
        V sv = CSM_H(vload_part)(g + i * gs, gs, n, 0);                      \
        CSM_GRAD_V(sv, i, n, HQ, HW);                                        \
        CSM_H(vstore_part)(g + i * gs, gs, n, sv);                           \
    }
    if (soft) CSM_TSPEC_CASES(tl, CSM_GRAD_LOOP);
    else { CSM_GRAD_LOOP(0, 0) }
#undef CSM_GRAD_LOOP
#undef CSM_GRAD_V
}

/* y[k] *= f for len elements. */
CSM_INLINE void CSM_H(seg_scale)(T *y, ptrdiff_t ys, ptrdiff_t len, T f)
{
    const V vf = VSPLAT(f);
    ptrdiff_t i = 0;
    for (; i + VL <= len; i += VL)
        CSM_H(vstore)(y + i * ys, ys, CSM_H(vload)(y + i * ys, ys) * vf);
    if (i < len)
        CSM_H(vstore_part)(y + i * ys, ys, len - i,
                           CSM_H(vload_part)(y + i * ys, ys, len - i, 0) * vf);
}

/* y[k] = (x[k] - M) - L, evaluated in double and rounded once to T. */
#if CSM_IS_F32
#  define CSM_LOGSM_V(v, M, L) CSM_NARROW_f32((CSM_WIDEN_f32(v) - (M)) - (L))
#else
#  define CSM_LOGSM_V(v, M, L) (((v) - (M)) - (L))
#endif
CSM_INLINE void CSM_H(seg_logsm)(const T *x, ptrdiff_t xs, T *y, ptrdiff_t ys,
                                  ptrdiff_t len, double M, double L)
{
    ptrdiff_t i = 0;
    for (; i + VL <= len; i += VL) {
        V v = CSM_H(vload)(x + i * xs, xs);
        CSM_H(vstore)(y + i * ys, ys, CSM_LOGSM_V(v, M, L));
    }
    if (i < len) {
        V v = CSM_H(vload_part)(x + i * xs, xs, len - i, 0);
        CSM_H(vstore_part)(y + i * ys, ys, len - i, CSM_LOGSM_V(v, M, L));
    }
}
#undef CSM_LOGSM_V

CSM_INLINE void CSM_H(seg_fill)(T *y, ptrdiff_t ys, ptrdiff_t len, T v)
{
    for (ptrdiff_t i = 0; i < len; i++) y[i * ys] = v;
}

/* ---- the online row pass ------------------------------------------------- */

typedef struct {
    double M;           /* row max of x' (ignoring NaN) */
    double cnt;         /* number of elements equal to M */
    double s;           /* sum over the others of exp(x' - M) */
    double tsum;        /* soft: sum of t */
    double tdot;        /* soft: sum_k t_k (M - x'_k) */
    double ea;          /* ent: sum_k exp(x_k - M) (x_k - M) */
    int special;        /* 1: max is +inf (pass stopped early) or -inf */
    int pinf;           /* max is +inf */
    ptrdiff_t K;        /* chunk length */
    ptrdiff_t nch;      /* chunks processed */
    T cm[CSM_MAXCH];    /* per-chunk max; -inf for an all -inf/NaN chunk */
} CSM_H(rowst);

/*
 * One pass over a row (see Design 3).  With store, y receives exp(x' - sh_c)
 * per chunk (to be rescaled by exp(cm[c] - M) / (cnt + s)).  Soft-capped
 * (capped, vb required): vb receives the capped row x' (contiguous, c
 * elements), from which the exp pass, the weighted sums and later the
 * gradient's chain rule read.  The chunks are independent (shared among
 * threads for a long row, see CSM_CHUNK_LOOP); their partial sums are then
 * combined in chunk order.  A chunk whose max is +inf is not stored (st->cm
 * tells which).
 */
/* seg_expsum over the chunk's src (stride S), into yc (stride YS), bnd B */
#define CSM_ES(S, YS, B) CSM_H(seg_expsum)(src, S, yc, YS, len, sh, m, store, B,       \
                                           soft, tp, k0, pfx_c, pfy_c, &cs, &cc, &tsv, &tzv, \
                                           ent, &eav)
/* ent (a literal; no store, soft or capped with it): st->ea as well. */
CSM_INLINE void CSM_H(row_pass)(const T *x, ptrdiff_t xs, T *y, ptrdiff_t ys, ptrdiff_t c,
                                 const int store, const int soft, const CSM_H(tspec) *tp,
                                 const int capped, T cap, T *vb, const T *pfx, T *pfy,
                                 CSM_H(rowst) *st, const int ent)
{
    const ptrdiff_t K = csm_chunk_len(c);
    const ptrdiff_t nch = c > 0 ? (c + K - 1) / K : 0;
    const T icap = capped ? (T)1 / cap : (T)0;
    const int bnd = capped && (double)cap <= CSM_EXPB_MAXCAP;
    double cs_c[CSM_MAXCH], cc_c[CSM_MAXCH], ts_c[CSM_MAXCH], tz_c[CSM_MAXCH], sh_c[CSM_MAXCH];
    double ea_c[CSM_MAXCH];
    T *cm = st->cm;
    CSM_CHUNK_LOOP(c, nch, q,
        const ptrdiff_t k0 = q * K, len = c - k0 < K ? c - k0 : K;
        const T *xc = x + k0 * xs;
        T *yc = store ? y + k0 * ys : NULL;
        /* prefetch (contiguous rows only): the next chunk, after the last one
         * what the caller says comes next (pfx, pfy: the next row) */
        const T *pfx_c = xs != 1 ? NULL : q + 1 < nch ? xc + K : pfx;
        T *pfy_c = !store || ys != 1 ? NULL : q + 1 < nch ? yc + K : pfy;
        /* the chunk's (capped) values: src at stride ss */
        const T *src = xc;
        ptrdiff_t ss = xs;
        T m;
        int bq = bnd;
        if (capped) {
            src = vb + k0;
            ss = 1;
            m = xs == 1 ? CSM_H(seg_cap_max)(xc, 1, vb + k0, len, cap, icap)
                        : CSM_H(seg_cap_max)(xc, xs, vb + k0, len, cap, icap);
        } else {
            T mn;
            m = xs == 1 ? CSM_H(seg_maxmin)(xc, 1, len, &mn)
                        : CSM_H(seg_maxmin)(xc, xs, len, &mn);
            /* every x - m of the chunk in [EXPB_LO, 0] (or NaN): the exp
             * without clamps and with a one-step 2^n, the same bits there */
            bq = m < (T)INFINITY && m > -(T)INFINITY && (double)mn - (double)m >= VEXPB_LO;
        }
        cm[q] = m;
        if (m == (T)INFINITY) continue;
        T sh = m == -(T)INFINITY ? (T)0 : m;
        double cs, cc, tsv = 0.0, tzv = 0.0, eav = 0.0;
        if (ss == 1 && (!store || ys == 1)) {
            if (bq) CSM_ES(1, 1, 1);
            else CSM_ES(1, 1, 0);
        } else {
            CSM_ES(ss, ys, bq);
        }
        if (m == -(T)INFINITY) {   /* nothing to add but a NaN, if any */
            cs = cs + cc;
            cc = 0.0;
        }
        cs_c[q] = cs;
        cc_c[q] = cc;
        sh_c[q] = (double)sh;
        ts_c[q] = soft && !tp->q ? tp->tsum_c[q] : tsv;
        tz_c[q] = tzv;
        if (ent) ea_c[q] = eav;
    )
    st->special = 0;
    st->pinf = 0;
    st->K = K;
    st->nch = nch;
    st->tsum = 0.0;
    st->tdot = 0.0;
    st->ea = 0.0;
    for (ptrdiff_t q = 0; q < nch; q++) {
        if (cm[q] == (T)INFINITY) {
            st->special = 1;
            st->pinf = 1;
            return;
        }
    }
    csm_lsest a = {-INFINITY, 0.0, 0.0};
    for (ptrdiff_t q = 0; q < nch; q++)
        csm_lse_merge(&a, q == 0, (double)cm[q], cc_c[q], cs_c[q], 1.0);
    const double M = a.M, cnt = a.cnt, s = a.s;
    st->M = M;
    st->cnt = cnt;
    st->s = s;
    if (!(M > -INFINITY)) st->special = 1;
    if (ent && !st->special) {
        /* each chunk's sum moved from its shift sh_q to M */
        double a = 0.0;
        for (ptrdiff_t q = 0; q < nch; q++)
            a += csm_expdiff((double)cm[q], M) * (ea_c[q] + (sh_c[q] - M) * (cc_c[q] + cs_c[q]));
        st->ea = a;
    }
    if (soft && !st->special) {
        double tsum = 0.0, tdot = 0.0;
        for (ptrdiff_t q = 0; q < nch; q++) {
            tsum += ts_c[q];
            tdot += ts_c[q] * (M - sh_c[q]) - tz_c[q];
        }
        st->tsum = tsum;
        st->tdot = tdot;
    }
}

#undef CSM_ES

/* row_pass with store / soft / capped as compile-time constants: each
 * combination gets its own branch-free inner loops.  Eight copies of the row
 * pass per dtype: the largest function of the library, so it is compiled once
 * per ISA, in kernels_<isa>.c, and the partial family's unit (partial_<isa>.c)
 * calls that copy (an extern name per dtype and ISA, csm_row_pass_any_<dt>_<isa>)
 * instead of compiling its own, which was three quarters of that unit's code
 * and compile time.  The losses units do not use it. */
#define CSM_ROW_PASS_ANY CSM_FN(csm_row_pass_any)
void CSM_ROW_PASS_ANY(const T *x, ptrdiff_t xs, T *y, ptrdiff_t ys, ptrdiff_t c,
                      int store, int soft, const CSM_H(tspec) *tp, int capped,
                      T cap, T *vb, const T *pfx, T *pfy, CSM_H(rowst) *st);
#if !defined(CSM_FAMILY_PARTIAL) && !defined(CSM_FAMILY_LOSSES)
void CSM_ROW_PASS_ANY(const T *x, ptrdiff_t xs, T *y, ptrdiff_t ys, ptrdiff_t c,
                      int store, int soft, const CSM_H(tspec) *tp, int capped,
                      T cap, T *vb, const T *pfx, T *pfy, CSM_H(rowst) *st)
{
#define CSM_RP(S, F, C) CSM_H(row_pass)(x, xs, y, ys, c, S, F, tp, C, cap, vb, pfx, pfy, st, 0)
    if (store) {
        if (soft) { if (capped) CSM_RP(1, 1, 1); else CSM_RP(1, 1, 0); }
        else { if (capped) CSM_RP(1, 0, 1); else CSM_RP(1, 0, 0); }
    } else {
        if (soft) { if (capped) CSM_RP(0, 1, 1); else CSM_RP(0, 1, 0); }
        else { if (capped) CSM_RP(0, 0, 1); else CSM_RP(0, 0, 0); }
    }
#undef CSM_RP
}
#endif

/* Slow-path scan: does the row hold a NaN? */
static int CSM_H(row_has_nan)(const T *x, ptrdiff_t xs, ptrdiff_t c)
{
    for (ptrdiff_t k = 0; k < c; k++)
        if (x[k * xs] != x[k * xs]) return 1;
    return 0;
}

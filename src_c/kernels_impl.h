/*
 * kernels_impl.h -- the row kernels, written once and expanded per dtype and ISA.
 *
 * Before including, define:
 *   CSM_T      float or double
 *   CSM_SFX    f32 or f64         (dtype suffix of public names)
 *   CSM_ISA    scalar, avx2, ...  (ISA suffix)
 *   CSM_IS_F32 1 for float, 0 for double
 * and, once per unit, include csm_vec.h (vector types and exp for the ISA).
 * The file is included twice per translation unit (float, double) and undefines
 * them at the end.
 *
 * Design
 *   1. Every loop over a row works on whole vectors of the ISA (csm_vec.h:
 *      GNU vector types of CSM_VB bytes; one lane under MSVC).  A vector is
 *      loaded, computed, then stored, so exact aliasing of input and output
 *      (in-place) is safe.  The tail of a row is one padded vector whose
 *      extra lanes are masked out of every sum, so the tail runs the same
 *      polynomial as the body and element i always feeds lane i % VL of the
 *      same accumulator: for one ISA, a row-path result never depends on the
 *      row's stride or on the thread count.  (The rows-per-lane path for
 *      c <= CSM_TILE_MAXC, taken only with contiguous classes, sums in another
 *      order: its last bit may differ from the row path's.)
 *   2. The same always-inline helpers are called with a literal stride 1 for
 *      contiguous rows (plain vector loads) and with the real stride
 *      otherwise (lane-by-lane gathers); both give the same bits.
 *   3. A row is processed in chunks (csm_chunk_len).  Per chunk: max m_c
 *      (reads memory), then exp(x - m_c) summed in lanes, excluding the
 *      elements equal to m_c, which are counted instead (second read, from
 *      cache), optionally storing exp(x - m_c) into the output.  The running
 *      state (M, count of elements equal to M, sum of the others scaled to M)
 *      is combined across chunks in double.  Then lse = M + log1p(count - 1 +
 *      sum): exact for [0, -40], and a loss near zero keeps full relative
 *      accuracy.  A final pass rescales the stored exponentials per chunk.
 *   4. Rows whose max is +inf, or -inf (all -inf or NaN), take a slow path that
 *      reproduces SciPy's results; NaN with a finite max propagates naturally.
 */

#define CSM_CAT3_(a, b, c) a##_##b##_##c
#define CSM_CAT3(a, b, c) CSM_CAT3_(a, b, c)
#define CSM_CAT2_(a, b) a##_##b
#define CSM_CAT2(a, b) CSM_CAT2_(a, b)
/* public, ISA-suffixed name: csm_<op>_<dtype>_<isa> */
#define CSM_FN(op) CSM_CAT3(op, CSM_SFX, CSM_ISA)
/* internal helper name, unique per dtype inside this TU */
#define CSM_H(name) CSM_CAT2(name, CSM_SFX)

typedef CSM_T CSM_H(csm_t);
#define T CSM_H(csm_t)

/* ---- vector helpers ------------------------------------------------------ */

#define V CSM_CAT2(csm_v, CSM_SFX)
#define U CSM_CAT2(csm_u, CSM_SFX)
#define VL CSM_CAT2(CSM_VL, CSM_SFX)
#define VSPLAT CSM_CAT2(csm_splat, CSM_SFX)
#define VMAX CSM_CAT2(csm_max, CSM_SFX)
#define VIS1 CSM_CAT2(csm_is1, CSM_SFX)
#define VEXP CSM_CAT2(csm_vexp, CSM_SFX)
#define VEXPB CSM_CAT2(csm_vexpb, CSM_SFX)
#define VMADD CSM_CAT2(csm_madd, CSM_SFX)
/* soft-caps for which x' - max >= -2c (|tanh| <= 1 + 1e-6) stays within VEXPB's range */
#define CSM_EXPB_MAXCAP (-0.49 * CSM_CAT2(CSM_EXPB_LO, CSM_SFX))
#define VCTANH CSM_CAT2(csm_vctanh, CSM_SFX)

/* Load VL elements at stride s (s == 1: one vector load). */
CSM_INLINE V CSM_H(vload)(const T *p, ptrdiff_t s)
{
    V v = {0};
    if (s == 1) {
        memcpy(&v, p, sizeof v);
    } else {
        for (int j = 0; j < VL; j++) CSM_LANE(v, j) = p[j * s];
    }
    return v;
}

#define VLMASK CSM_CAT2(csm_lanemask, CSM_SFX)
#if CSM_HAVE_MASKED
#  define VMLOAD CSM_CAT2(csm_mload, CSM_SFX)
#  define VMSTORE CSM_CAT2(csm_mstore, CSM_SFX)
#endif

/* Load n < VL elements; the other lanes get pad. */
CSM_INLINE V CSM_H(vload_part)(const T *p, ptrdiff_t s, ptrdiff_t n, T pad)
{
#if CSM_HAVE_MASKED
    if (s == 1) {
        U m = VLMASK(n);
        return CSM_FROMBITS(V, (CSM_BITS(U, VMLOAD(p, n)) & m) | (CSM_BITS(U, VSPLAT(pad)) & ~m));
    }
#endif
    V v = VSPLAT(pad);
    for (ptrdiff_t j = 0; j < n; j++) CSM_LANE(v, j) = p[j * s];
    return v;
}

CSM_INLINE void CSM_H(vstore)(T *p, ptrdiff_t s, V v)
{
    if (s == 1) {
        memcpy(p, &v, sizeof v);
    } else {
        for (int j = 0; j < VL; j++) p[j * s] = CSM_LANE(v, j);
    }
}

CSM_INLINE void CSM_H(vstore_part)(T *p, ptrdiff_t s, ptrdiff_t n, V v)
{
#if CSM_HAVE_MASKED
    if (s == 1) {
        VMSTORE(p, n, v);
        return;
    }
#endif
    for (ptrdiff_t j = 0; j < n; j++) p[j * s] = CSM_LANE(v, j);
}

/* Lanes n.. set to +0 (bitwise, so a NaN or inf there vanishes too). */
CSM_INLINE V CSM_H(vkeep)(V v, ptrdiff_t n)
{
    return CSM_FROMBITS(V, CSM_BITS(U, v) & VLMASK(n));
}

/* Sum of the lanes in a fixed pairwise order, in double. */
CSM_INLINE double CSM_H(vsum)(V a)
{
    double b[VL];
    for (int j = 0; j < VL; j++) b[j] = (double)CSM_LANE(a, j);
    for (int h = VL / 2; h >= 1; h /= 2)
        for (int j = 0; j < h; j++) b[j] += b[j + h];
    return b[0];
}

/* ---- chunk helpers ------------------------------------------------------- */

/* Max over len elements ignoring NaN; -inf if there is none. */
CSM_INLINE T CSM_H(seg_max)(const T *x, ptrdiff_t xs, ptrdiff_t len)
{
    const T ninf = -(T)INFINITY;
    V a0 = VSPLAT(ninf), a1 = a0;
    ptrdiff_t i = 0;
    for (; i + 2 * VL <= len; i += 2 * VL) {
        a0 = VMAX(CSM_H(vload)(x + i * xs, xs), a0);
        a1 = VMAX(CSM_H(vload)(x + (i + VL) * xs, xs), a1);
    }
    for (; i + VL <= len; i += VL) a0 = VMAX(CSM_H(vload)(x + i * xs, xs), a0);
    if (i < len) a0 = VMAX(CSM_H(vload_part)(x + i * xs, xs, len - i, ninf), a0);
    a0 = VMAX(a1, a0);
    T m = ninf;
    for (int j = 0; j < VL; j++) m = CSM_LANE(a0, j) > m ? CSM_LANE(a0, j) : m;
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
 * Chunk pass 2 over len elements: e = exp(x - sh); elements with x == m are
 * counted (*cnt) and left out of the sum (*sum).  With store, y receives e
 * (y may be x: every vector is read before it is written).  bnd: every
 * x - sh is known to be in VEXPB's range.  With soft, the cross-entropy's
 * weighted sums *tz = sum t (x - sh) and, with soft targets (tp->q),
 * *tsum = sum t; t from tp, offset by the caller's tk0 (the chunk start).
 * The exp's sum uses two interleaved accumulators, the count (exact) and the
 * weighted sums one each, so that all stay in the 16 registers of AVX2.  The
 * tail is one padded vector masked out of every sum.
 */
CSM_INLINE void CSM_H(seg_expsum)(const T *x, ptrdiff_t xs, T *y, ptrdiff_t ys,
                                   ptrdiff_t len, T sh, T m, const int store, const int bnd,
                                   const int soft, const CSM_H(tspec) *tp, ptrdiff_t tk0,
                                   double *sum, double *cnt, double *tsum, double *tz)
{
    const V vsh = VSPLAT(sh), vm = VSPLAT(m), zero = VSPLAT(0);
    const CSM_H(tspec) tl = soft ? *tp : (CSM_H(tspec)){0};
    V acc0 = zero, acc1 = zero, nm = zero, ta = zero, tza = zero;
    ptrdiff_t i = 0;
#define CSM_EXPSUM_STEP(k, A, HQ, HW)                                        \
    do {                                                                     \
        /* short live ranges (the sums of d and the count before the exp): \
         * the unweighted smoothing case spilled x to the stack otherwise */ \
        V v_ = CSM_H(vload)(x + (k) * xs, xs);                               \
        V d_ = v_ - vsh;                                                     \
        V is_ = VIS1(v_, vm);                                                \
        nm += is_;                                                           \
        if (soft && !(HQ) && !(HW)) {                                        \
            tza += d_;                      /* t == 1 */                     \
        } else if (soft) {                                                   \
            V tv_ = CSM_H(tload)(tl, tk0 + (k), VL, HQ, HW);                 \
            if (HQ) ta += tv_;                                               \
            tza = VMADD(tv_, d_, tza);                                       \
        }                                                                    \
        V e_ = bnd ? VEXPB(d_) : VEXP(d_);                                   \
        A += e_ - is_;                                                       \
        if (store) CSM_H(vstore)(y + (k) * ys, ys, e_);                      \
    } while (0)
#define CSM_EXPSUM_LOOP(HQ, HW)                                              \
    for (; i + 2 * VL <= len; i += 2 * VL) {                                 \
        CSM_EXPSUM_STEP(i, acc0, HQ, HW);                                    \
        CSM_EXPSUM_STEP(i + VL, acc1, HQ, HW);                               \
    }
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
#define CSM_ES(S, YS, B) CSM_H(seg_expsum)(src, S, yc, YS, len, sh, m, store, B, \
                                           soft, tp, k0, &cs, &cc, &tsv, &tzv)
CSM_INLINE void CSM_H(row_pass)(const T *x, ptrdiff_t xs, T *y, ptrdiff_t ys, ptrdiff_t c,
                                 const int store, const int soft, const CSM_H(tspec) *tp,
                                 const int capped, T cap, T *vb, CSM_H(rowst) *st)
{
    const ptrdiff_t K = csm_chunk_len(c);
    const ptrdiff_t nch = c > 0 ? (c + K - 1) / K : 0;
    const T icap = capped ? (T)1 / cap : (T)0;
    const int bnd = capped && (double)cap <= CSM_EXPB_MAXCAP;
    double cs_c[CSM_MAXCH], cc_c[CSM_MAXCH], ts_c[CSM_MAXCH], tz_c[CSM_MAXCH], sh_c[CSM_MAXCH];
    T *cm = st->cm;
    CSM_CHUNK_LOOP(c, nch, q,
        const ptrdiff_t k0 = q * K, len = c - k0 < K ? c - k0 : K;
        const T *xc = x + k0 * xs;
        T *yc = store ? y + k0 * ys : NULL;
        /* the chunk's (capped) values: src at stride ss */
        const T *src = xc;
        ptrdiff_t ss = xs;
        T m;
        if (capped) {
            src = vb + k0;
            ss = 1;
            m = xs == 1 ? CSM_H(seg_cap_max)(xc, 1, vb + k0, len, cap, icap)
                        : CSM_H(seg_cap_max)(xc, xs, vb + k0, len, cap, icap);
        } else {
            m = xs == 1 ? CSM_H(seg_max)(xc, 1, len) : CSM_H(seg_max)(xc, xs, len);
        }
        cm[q] = m;
        if (m == (T)INFINITY) continue;
        T sh = m == -(T)INFINITY ? (T)0 : m;
        double cs, cc, tsv = 0.0, tzv = 0.0;
        if (ss == 1 && (!store || ys == 1)) {
            if (bnd) CSM_ES(1, 1, 1);
            else CSM_ES(1, 1, 0);
        } else {
            CSM_ES(ss, ys, bnd);
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
    )
    double M = -INFINITY, cnt = 0.0, s = 0.0;
    st->special = 0;
    st->pinf = 0;
    st->K = K;
    st->nch = nch;
    st->tsum = 0.0;
    st->tdot = 0.0;
    for (ptrdiff_t q = 0; q < nch; q++) {
        if (cm[q] == (T)INFINITY) {
            st->special = 1;
            st->pinf = 1;
            return;
        }
    }
    for (ptrdiff_t q = 0; q < nch; q++) {
        const double md = (double)cm[q], cs = cs_c[q], cc = cc_c[q];
        if (q == 0) {
            s = cs;
            cnt = cc;
            M = md;
        } else if (md > M) {
            s = cs + (cnt + s) * exp(M - md);
            cnt = cc;
            M = md;
        } else if (md == M) {
            cnt += cc;
            s += cs;
        } else {
            s += (cc + cs) * exp(md - M);
        }
    }
    st->M = M;
    st->cnt = cnt;
    st->s = s;
    if (!(M > -INFINITY)) st->special = 1;
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
 * combination gets its own branch-free inner loops. */
static void CSM_H(row_pass_any)(const T *x, ptrdiff_t xs, T *y, ptrdiff_t ys, ptrdiff_t c,
                                int store, int soft, const CSM_H(tspec) *tp, int capped,
                                T cap, T *vb, CSM_H(rowst) *st)
{
#define CSM_RP(S, F, C) CSM_H(row_pass)(x, xs, y, ys, c, S, F, tp, C, cap, vb, st)
    if (store) {
        if (soft) { if (capped) CSM_RP(1, 1, 1); else CSM_RP(1, 1, 0); }
        else { if (capped) CSM_RP(1, 0, 1); else CSM_RP(1, 0, 0); }
    } else {
        if (soft) { if (capped) CSM_RP(0, 1, 1); else CSM_RP(0, 1, 0); }
        else { if (capped) CSM_RP(0, 0, 1); else CSM_RP(0, 0, 0); }
    }
#undef CSM_RP
}

/* Slow-path scan: does the row hold a NaN? */
static int CSM_H(row_has_nan)(const T *x, ptrdiff_t xs, ptrdiff_t c)
{
    for (ptrdiff_t k = 0; k < c; k++)
        if (x[k * xs] != x[k * xs]) return 1;
    return 0;
}

/* ---- row loop -------------------------------------------------------------- */

#define CSM_ROW_INDEX(r, sh, i0, i1)                       \
    ptrdiff_t i0 = (sh).n1 == 1 ? (r) : (r) / (sh).n1;     \
    ptrdiff_t i1 = (sh).n1 == 1 ? 0 : (r) % (sh).n1

#if defined(_OPENMP) && !defined(_MSC_VER)
#  define CSM_PARALLEL_FOR(nrows, work) \
     CSM_PRAGMA_(omp parallel for schedule(static) if ((nrows) > 1 && (work) >= CSM_PAR_MIN))
#else
#  define CSM_PARALLEL_FOR(nrows, work)
#endif

static int CSM_H(bad_shape)(csm_shape sh)
{
    return sh.n0 < 0 || sh.n1 < 0 || sh.c < 0;
}

/* ---- short rows: one row per lane ---------------------------------------------- */
/*
 * For c <= CSM_TILE_MAXC with a contiguous class axis, VL rows are processed
 * together, row j in lane j ("transposed"): the per-row overhead of the chunked
 * pass (lane reductions, scalar log1p) is paid once per VL rows.  Each row's
 * sum is accumulated in double, element by element, and finished with the
 * vector log1p.  Tiles holding a row whose max is not finite go to the row path.
 */
#define CSM_TILE_MAXC 32
#if CSM_GNU_VEC
#  define CSM_TILES 1
#  if CSM_IS_F32
typedef csm_v_f32w CSM_H(dvec);
#    define CSM_WIDEN_T(v) CSM_WIDEN_f32(v)
#    define CSM_NARROW_T(d) CSM_NARROW_f32(d)
#  else
typedef csm_v_f64 CSM_H(dvec);
#    define CSM_WIDEN_T(v) (v)
#    define CSM_NARROW_T(d) (d)
#  endif
#  define D CSM_H(dvec)

CSM_INLINE D CSM_H(dsplat)(double v)
{
    D d = {0};
    for (int j = 0; j < VL; j++) d[j] = v;
    return d;
}

CSM_INLINE D CSM_H(dlog1p)(D s)
{
#  if CSM_IS_F32
    csm_v_f64 h[2];
    memcpy(h, &s, sizeof s);
    h[0] = csm_vlog1p_f64(h[0]);
    h[1] = csm_vlog1p_f64(h[1]);
    memcpy(&s, h, sizeof s);
    return s;
#  else
    return csm_vlog1p_f64(s);
#  endif
}

/*
 * Shared part of a tile: X[k] (lane j = row j, element k), M = row max,
 * acc = sum exp(x - M) over x != M (double), cnt = count of x == M.  E[k] gets
 * exp(X[k] - M) when E is not NULL.  Returns 0 if some lane's max is +-inf.
 */
CSM_INLINE int CSM_H(tile_core)(const T *const *p, ptrdiff_t c, V *E, V *Mo, D *acc, D *cnt)
{
    V X[CSM_TILE_MAXC];
    V M = VSPLAT(-(T)INFINITY);
    for (ptrdiff_t k = 0; k < c; k++) {
        V v = {0};
        for (int j = 0; j < VL; j++) v[j] = p[j][k];
        X[k] = v;
        M = VMAX(v, M);
    }
    int ok = 1;
    for (int j = 0; j < VL; j++) ok &= (M[j] > -(T)INFINITY) & (M[j] < (T)INFINITY);
    if (!ok) return 0;
    D a = CSM_H(dsplat)(0.0), n = a;
#  if CSM_IS_F32
    /* the same sums, lane by lane, in two register-width halves */
    csm_v_f64 aL = {0}, aH = {0}, nL = {0}, nH = {0};
    for (ptrdiff_t k = 0; k < c; k++) {
        V e = VEXP(X[k] - M);
        V is = VIS1(X[k], M);
        V d = e - is;
        aL += csm_widen_lo_f32(d);
        aH += csm_widen_hi_f32(d);
        nL += csm_widen_lo_f32(is);
        nH += csm_widen_hi_f32(is);
        if (E) E[k] = e;
    }
    memcpy(&a, &aL, sizeof aL);
    memcpy((char *)&a + sizeof aL, &aH, sizeof aH);
    memcpy(&n, &nL, sizeof nL);
    memcpy((char *)&n + sizeof nL, &nH, sizeof nH);
#  else
    for (ptrdiff_t k = 0; k < c; k++) {
        V e = VEXP(X[k] - M);
        V is = VIS1(X[k], M);
        a += CSM_WIDEN_T(e - is);
        n += CSM_WIDEN_T(is);
        if (E) E[k] = e;
    }
#  endif
    *Mo = M;
    *acc = a;
    *cnt = n;
    return 1;
}

/* Row pointers of the VL rows r0.. of a batch. */
CSM_INLINE void CSM_H(tile_rows)(const T *x, csm_shape sh, csm_strides xs, ptrdiff_t r0,
                                  const T **p)
{
    for (int j = 0; j < VL; j++) {
        ptrdiff_t r = r0 + j;
        ptrdiff_t i0 = sh.n1 == 1 ? r : r / sh.n1, i1 = sh.n1 == 1 ? 0 : r % sh.n1;
        p[j] = x + i0 * xs.s0 + i1 * xs.s1;
    }
}
#else
#  define CSM_TILES 0
#endif

/* ---- logsumexp -------------------------------------------------------------- */

/* log-sum-exp of one row through the chunked pass. */
static double CSM_H(lse_row)(const T *xr, ptrdiff_t xsc, ptrdiff_t c)
{
    if (c == 0) return -INFINITY;
    CSM_H(rowst) st;
    CSM_H(row_pass)(xr, xsc, NULL, 0, c, 0, 0, NULL, 0, 0, NULL, &st);
    if (st.special) {
        if (CSM_H(row_has_nan)(xr, xsc, c)) return NAN;
        return st.pinf ? INFINITY : -INFINITY;
    }
    return st.M + log1p((st.cnt - 1.0) + st.s);
}

int CSM_FN(csm_logsumexp)(csm_shape sh, const T *x, csm_strides xs, T *lse, csm_strides ls)
{
    if (CSM_H(bad_shape)(sh)) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
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
                    lse[i0 * ls.s0 + i1 * ls.s1] = (T)CSM_H(lse_row)(p[j], 1, c);
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
        lse[i0 * ls.s0 + i1 * ls.s1] = (T)CSM_H(lse_row)(xr, xs.sc, c);
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
    CSM_ROWS_FOR(nrows, c)
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        const T *xr = x + i0 * xs.s0 + i1 * xs.s1;
        T *yr = y + i0 * ys.s0 + i1 * ys.s1;
        CSM_H(rowst) st;
        CSM_H(row_pass)(xr, xs.sc, yr, ys.sc, c, 1, 0, NULL, 0, 0, NULL, &st);
        if (st.special) {
            CSM_H(seg_fill)(yr, ys.sc, c, (T)NAN);
            continue;
        }
        double inv = 1.0 / (st.cnt + st.s);
        CSM_CHUNK_LOOP(c, st.nch, q,
            ptrdiff_t k0 = q * st.K, len = c - k0 < st.K ? c - k0 : st.K;
            T f = (T)(csm_expdiff((double)st.cm[q], st.M) * inv);
            if (ys.sc == 1) CSM_H(seg_scale)(yr + k0, 1, len, f);
            else CSM_H(seg_scale)(yr + k0 * ys.sc, ys.sc, len, f);
        )
    }
    return CSM_OK;
}

int CSM_FN(csm_log_softmax)(csm_shape sh, const T *x, csm_strides xs, T *y, csm_strides ys)
{
    if (CSM_H(bad_shape)(sh)) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    if (c == 0) return CSM_OK;
    CSM_ROWS_FOR(nrows, c)
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        const T *xr = x + i0 * xs.s0 + i1 * xs.s1;
        T *yr = y + i0 * ys.s0 + i1 * ys.s1;
        CSM_H(rowst) st;
        CSM_H(row_pass)(xr, xs.sc, NULL, 0, c, 0, 0, NULL, 0, 0, NULL, &st);
        if (st.special) {
            /* SciPy: shift 0; tmp - log(sum(exp(tmp))).  With the max -inf every
             * entry is -inf - (-inf) or NaN; with +inf the sum is +inf, giving
             * NaN at +inf entries and -inf elsewhere; any NaN makes all NaN. */
            int nan = CSM_H(row_has_nan)(xr, xs.sc, c);
            for (ptrdiff_t k = 0; k < c; k++) {
                T v = xr[k * xs.sc];
                yr[k * ys.sc] = (nan || !st.pinf || v == (T)INFINITY) ? (T)NAN : -(T)INFINITY;
            }
            continue;
        }
        double L = log1p((st.cnt - 1.0) + st.s);
        CSM_CHUNK_LOOP(c, st.nch, q,
            ptrdiff_t k0 = q * st.K, len = c - k0 < st.K ? c - k0 : st.K;
            if (xs.sc == 1 && ys.sc == 1) CSM_H(seg_logsm)(xr + k0, 1, yr + k0, 1, len, st.M, L);
            else CSM_H(seg_logsm)(xr + k0 * xs.sc, xs.sc, yr + k0 * ys.sc, ys.sc, len, st.M, L);
        )
    }
    return CSM_OK;
}

/* ---- cross-entropy ------------------------------------------------------------- */

/*
 * One cross-entropy row, labels (tgt >= 0) or soft targets (tp->q != NULL).
 * Writes *lr (loss), lse_out[r] if wanted, and the gradient row if gr.
 */
CSM_INLINE void CSM_H(xent_row)(const T *zr, ptrdiff_t zsc, T *gr, ptrdiff_t gsc,
                                 ptrdiff_t c, ptrdiff_t tgt, const CSM_H(tspec) *tp,
                                 const int smooth, const int capped, const csm_xent_opts *opt,
                                 double rscale, double gscale, double *lr, double *lse_out,
                                 T *vb)
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
    CSM_H(row_pass_any)(zr, zsc, gr, gr ? gsc : 0, c, gr != NULL, soft, tp, capped, cap, vb,
                        &st);
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

int CSM_FN(csm_xent_labels)(csm_shape sh, const T *z, csm_strides zs,
                            const int64_t *label, csm_strides lbs, const csm_xent_opts *opt,
                            double *loss, csm_strides ls, T *grad, csm_strides gs,
                            csm_error *err)
{
    if (CSM_H(bad_shape)(sh) || !opt) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    const int use_ig = opt->use_ignore;
    const int64_t ig = opt->ignore_index;
    /* Validate every label before anything is written. */
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        int64_t lab = label[i0 * lbs.s0 + i1 * lbs.s1];
        if (use_ig && lab == ig) continue;
        if (lab < 0 || lab >= (int64_t)c) {
            if (err) { err->row = r; err->value = lab; }
            return CSM_ERR_LABEL;
        }
    }
    const int smooth = opt->label_smoothing != 0.0;
    const int capped = opt->softcap > 0.0;
    CSM_H(tspec) tp = {NULL, 0, (const T *)opt->class_weight, 0, 1, NULL};
    /* the smoothing's per-chunk sums of t = w, once for every row */
    double tsum_c[CSM_MAXCH];
    if (smooth && c > 0) {
        const ptrdiff_t K = csm_chunk_len(c), nch = (c + K - 1) / K;
        for (ptrdiff_t q = 0; q < nch; q++) {
            const ptrdiff_t k0 = q * K, len = c - k0 < K ? c - k0 : K;
            double sw = 0.0;
            for (ptrdiff_t k = 0; k < len; k++) sw += tp.w ? (double)tp.w[k0 + k] : 1.0;
            tsum_c[q] = sw;
        }
        tp.tsum_c = tsum_c;
    }
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
                                    opt->lse_out ? opt->lse_out + r : NULL, NULL);
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
                        opt->lse_out ? opt->lse_out + r : NULL, (T *)csm_scratch_row(&scr));
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
                        (T *)csm_scratch_row(&scr));
    }
    csm_scratch_free(&scr);
    return CSM_OK;
}

int CSM_FN(csm_exp)(ptrdiff_t n, const T *x, T *out)
{
    ptrdiff_t i = 0;
    for (; i + VL <= n; i += VL) CSM_H(vstore)(out + i, 1, VEXP(CSM_H(vload)(x + i, 1)));
    if (i < n) CSM_H(vstore_part)(out + i, 1, n - i, VEXP(CSM_H(vload_part)(x + i, 1, n - i, 0)));
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

#undef T
#undef V
#undef U
#undef VL
#undef VSPLAT
#undef VMAX
#undef VIS1
#undef VEXP
#undef VEXPB
#undef VMADD
#undef CSM_EXPB_MAXCAP
#undef VLMASK
#undef VMLOAD
#undef VMSTORE
#undef VCTANH
#undef CSM_TSPEC_CASES
#undef CSM_IS_F32
#undef D
#undef CSM_WIDEN_T
#undef CSM_NARROW_T
#undef CSM_TILES
#undef CSM_ROW_INDEX
#undef CSM_PARALLEL_FOR
#undef CSM_T
#undef CSM_SFX

/*
 * kernels_cols.h -- the column family: rows whose classes are strided while
 * another grid axis is contiguous (csm_col_pick, csm_internal.h): PyTorch's
 * K-dimensional (N, C, d1, ...) with axis=1, reductions over axis 0, an
 * F-ordered (N, C) with axis=-1.  The row family would walk such a row at
 * its class stride one lane at a time; here each vector lane is one row
 * (one position) and the loops run over the classes, so every load and
 * store is a whole vector of neighbouring positions.
 *
 * Design
 *   1. Blocks.  A block is CSM_COL_NV vectors of consecutive positions (one
 *      or two cache lines) of one outer row; the block loop over (outer,
 *      block) pairs is shared among the threads, so (1, C, H*W) uses them
 *      all.  A last, partial block pads its lanes with 0 and never stores
 *      them.
 *   2. Chunks over the classes, as the row pass: csm_chunk_len(c) classes
 *      per chunk, so a block's chunk (at most 4096 classes x 128 bytes)
 *      stays in L2 between its passes.  Per chunk: pass 1 reads memory for
 *      the lanes' max (and min); pass 2 reads it again from cache for
 *      exp(x - max), summed in float per lane (the elements equal to the
 *      max counted, not summed, as in the row pass) and flushed into double
 *      every CSM_COL_FLUSH classes, optionally storing the exponentials;
 *      while it runs it prefetches what pass 1 reads next (the next chunk or
 *      the next block).  The lanes' (max, count, sum) are combined across
 *      chunks in double, lane by lane, as the row pass combines its chunks;
 *      the last pass (rescale, log-softmax, gradient) walks the chunks again.
 *   3. Same numerics as the row path: the log1p form, float32 input summed
 *      in float per at most 256 terms and in double beyond, one exp per
 *      element (the cheap one when a chunk's lanes allow, csm_exp.h), the
 *      soft-cap computed once in pass 1 into a scratch block.  A row's
 *      result depends only on its own values and c (not on its position,
 *      the block, the thread count), but the summation order differs from
 *      the row path's, so the two agree to rounding, not bit for bit.
 *   4. A block holding a lane whose max is +-inf (SciPy's special rows) is
 *      done by the row functions of kernels_row1.h, lane by lane, before
 *      anything of it is stored (with several chunks and y == x, pass 1
 *      runs over all chunks first to know).  Ignored labels: their lanes
 *      are replaced by 0 after loading and get loss 0, gradient 0.
 */

#if CSM_VB >= 64
#  define CSM_COL_NV 2
#else
#  define CSM_COL_NV 4
#endif
#define CSM_COL_NL (CSM_COL_NV * VL)      /* lanes (positions) per block */
#define CSM_COL_FLUSH 256
/* prefetch: the block CSM_COL_PFD ahead, its outputs too (CSM_COL_PFW) */
#ifndef CSM_COL_PFD
#  define CSM_COL_PFD 4
#endif
#ifndef CSM_COL_PFW
#  define CSM_COL_PFW 1
#endif

/* The lanes' double state: ND double vectors per vector of T (two halves of a
 * float vector), NDV per block. */
#if CSM_IS_F32 && CSM_GNU_VEC
#  define ND 2
CSM_INLINE void CSM_H(widen)(V v, csm_v_f64 *d)
{
    d[0] = csm_widen_lo_f32(v);
    d[1] = csm_widen_hi_f32(v);
}
CSM_INLINE V CSM_H(narrow)(const csm_v_f64 *d) { return csm_narrow2_f32(d[0], d[1]); }
#else
#  define ND 1
CSM_INLINE void CSM_H(widen)(V v, csm_v_f64 *d) { d[0] = (csm_v_f64)v; }
CSM_INLINE V CSM_H(narrow)(const csm_v_f64 *d) { return (V)d[0]; }
#endif
#define NDV (CSM_COL_NV * ND)
#define DSPLAT csm_splat_f64
#define DMASK CSM_MASK_f64
#define DSEL csm_sel_f64

/* Lanes p .. p + n (n may exceed VL: a whole vector; n <= 0: none) at position
 * stride ps; missing lanes read as 0 and are not written. */
CSM_INLINE V CSM_H(cload)(const T *p, ptrdiff_t ps, ptrdiff_t n)
{
    if (n >= VL) return CSM_H(vload)(p, ps);
    if (n <= 0) return VSPLAT(0);
    return CSM_H(vload_part)(p, ps, n, 0);
}

CSM_INLINE void CSM_H(cstore)(T *p, ptrdiff_t ps, ptrdiff_t n, V v)
{
    if (n >= VL) CSM_H(vstore)(p, ps, v);
    else if (n > 0) CSM_H(vstore_part)(p, ps, n, v);
}

/* The same, with fast (a literal) meaning "a whole vector at unit stride":
 * full blocks of unit-stride arrays get loops without a branch per vector. */
CSM_INLINE V CSM_H(fload)(const T *p, ptrdiff_t ps, ptrdiff_t n, const int fast)
{
    if (fast) {
        V v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    return CSM_H(cload)(p, ps, n);
}

CSM_INLINE void CSM_H(fstore)(T *p, ptrdiff_t ps, ptrdiff_t n, V v, const int fast)
{
    if (fast) memcpy(p, &v, sizeof v);
    else CSM_H(cstore)(p, ps, n, v);
}

/* A vector of VL lane values from a lane array. */
CSM_INLINE V CSM_H(lanes)(const T *a)
{
    V v;
    memcpy(&v, a, sizeof v);
    return v;
}

/* Per-lane results of the passes over one block (double vectors of lanes). */
typedef struct {
    csm_v_f64 M[NDV];           /* max of x' (ignoring NaN) */
    csm_v_f64 cnt[NDV];         /* elements equal to M */
    csm_v_f64 s[NDV];           /* sum of the others' exp(x' - M) */
    csm_v_f64 tsum[NDV];        /* soft: sum of t */
    csm_v_f64 tdot[NDV];        /* soft: sum t (M - x') */
    int special;                /* a lane's max is +-inf (or no value but NaN) */
    ptrdiff_t K, nch;
    V cm[CSM_MAXCH][CSM_COL_NV];   /* per-chunk lane max; what stored exps are relative to */
} CSM_H(colst);

/* Targets of the weighted sums, per class k and lane: t = (q ? q*qa + qb : 1) * (w ? w_k : 1);
 * q (soft targets) at class stride qk, position stride qp. */
typedef struct {
    const T *q;
    ptrdiff_t qk, qp;
    const T *w;
    T qa, qb;
    const double *tsum_c;       /* without q: sum of t per chunk (the same for every lane) */
} CSM_H(ctspec);

CSM_INLINE V CSM_H(ctload)(const CSM_H(ctspec) *tp, ptrdiff_t k, int j, ptrdiff_t n)
{
    V t = VSPLAT(tp->w ? tp->w[k] : (T)1);
    if (!tp->q) return t;
    V q = CSM_H(cload)(tp->q + k * tp->qk + j * VL * tp->qp, tp->qp, n);
    return (q * VSPLAT(tp->qa) + VSPLAT(tp->qb)) * t;
}

/* The full exp of a block's vectors, for chunks the cheap one cannot take:
 * not inlined, which keeps col_pass's variants small (it is rarely taken). */
static CSM_NOINLINE void CSM_H(col_vexp)(const V *d, V *e)
{
    for (int j = 0; j < CSM_COL_NV; j++) e[j] = VEXP(d[j]);
}

/*
 * Passes 1 and 2 over every chunk of one block (Design 2): x at (class xk,
 * position xp) strides from the block's first element, nl lanes valid; y
 * receives exp(x' - cm) when store.  ign: lanes to replace by 0 (NULL: none).
 * vb (c x CSM_COL_NL, contiguous, or NULL) receives x' in pass 1 and pass 2
 * reads it there (capped: it must be given); eb (the same shape, or NULL)
 * receives the exps instead of y.  pf: where pass 1 of
 * the next block reads (NULL: nothing to prefetch).  prescan: pass 1 over
 * every chunk first (store with y == x and several chunks).  Returns with
 * st->special set, and nothing stored, if some lane is special.
 */
CSM_INLINE void CSM_H(col_pass)(const T *x, ptrdiff_t xk, ptrdiff_t xp, T *y, ptrdiff_t yk,
                                 ptrdiff_t yp, ptrdiff_t c, ptrdiff_t nl, const U *ign,
                                 const int store, const int soft, const CSM_H(ctspec) *tp,
                                 const int capped, const int fast, T cap, T *vb, T *eb,
                                 const T *pf, const T *pfw, int prescan, CSM_H(colst) *st)
{
    const ptrdiff_t K = csm_chunk_len(c), nch = (c + K - 1) / K;
    const T icap = capped ? (T)1 / cap : (T)0;
    const int bcap = capped && (double)cap <= CSM_EXPB_MAXCAP;
    const V pinf = VSPLAT((T)INFINITY), ninf = VSPLAT(-(T)INFINITY), zero = VSPLAT(0);
    ptrdiff_t nv[CSM_COL_NV];
    for (int j = 0; j < CSM_COL_NV; j++) nv[j] = nl - j * VL;
    st->K = K;
    st->nch = nch;
    st->special = 0;
#define CSM_CLOAD(k, j)                                                                   \
    (ign ? VSEL(ign[j], zero, CSM_H(fload)(x + (k) * xk + (j) * VL * xp, xp, nv[j], fast))  \
         : CSM_H(fload)(x + (k) * xk + (j) * VL * xp, xp, nv[j], fast))
    /* pass 1 of chunk q: lane max / min (of x', stored into vb when capped) */
#define CSM_PASS1(q, MX, MN)                                                   \
    do {                                                                       \
        const ptrdiff_t k0_ = (q) * K, k1_ = k0_ + K < c ? k0_ + K : c;        \
        for (int j = 0; j < CSM_COL_NV; j++) {                                 \
            MX[j] = ninf;                                                      \
            MN[j] = pinf;                                                      \
        }                                                                      \
        for (ptrdiff_t k = k0_; k < k1_; k++)                                  \
            for (int j = 0; j < CSM_COL_NV; j++) {                             \
                V v_ = CSM_CLOAD(k, j);                                        \
                if (capped) v_ = CSM_H(vcap)(v_, 1, cap, icap);                \
                if (vb) memcpy(vb + k * CSM_COL_NL + j * VL, &v_, sizeof v_);  \
                MX[j] = VMAX(v_, MX[j]);                                       \
                MN[j] = VMIN(v_, MN[j]);                                       \
            }                                                                  \
    } while (0)
    V mx[CSM_COL_NV], mn[CSM_COL_NV];
    if (prescan && nch > 1) {
        V all[CSM_COL_NV];
        for (int j = 0; j < CSM_COL_NV; j++) all[j] = ninf;
        for (ptrdiff_t q = 0; q < nch; q++) {
            CSM_PASS1(q, mx, mn);
            for (int j = 0; j < CSM_COL_NV; j++) all[j] = VMAX(mx[j], all[j]);
        }
        /* pad lanes hold 0: never special */
        for (int j = 0; j < CSM_COL_NV; j++)
            st->special |= VANYM(VMASK(all[j] == pinf) | VMASK(all[j] == ninf));
        if (st->special) return;
    }
    const csm_v_f64 dninf = DSPLAT(-INFINITY), dzero = DSPLAT(0.0);
    for (ptrdiff_t q = 0; q < nch; q++) {
        const ptrdiff_t k0 = q * K, k1 = k0 + K < c ? k0 + K : c;
        CSM_PASS1(q, mx, mn);
        /* special lanes stop the block before anything is stored: +inf, or
         * no value but NaN when this chunk is the whole row (several chunks:
         * y != x, or the prescan has checked) */
        int bq = 1;
        V shv[CSM_COL_NV];
        for (int j = 0; j < CSM_COL_NV; j++) {
            st->special |= VANYM(VMASK(mx[j] == pinf) | (nch == 1 ? VMASK(mx[j] == ninf) : (U){0}));
            /* the cheap exp: every lane finite with its values within range */
            U okm = VMASK(mx[j] < pinf) & VMASK(mx[j] > ninf) &
                    VMASK(mn[j] - mx[j] >= VSPLAT((T)VEXPB_LO));
            bq &= !VANYM(~okm);
            st->cm[q][j] = mx[j];
            shv[j] = VSEL(VMASK(mx[j] == ninf), zero, mx[j]);
        }
        if (st->special) return;
        if (bcap) bq = 1;
        /* pass 2 */
        V acc[CSM_COL_NV], nm[CSM_COL_NV], ta[CSM_COL_NV], tza[CSM_COL_NV];
        csm_v_f64 cs[NDV], cc[NDV], ts[NDV], tz[NDV];
        for (int i = 0; i < NDV; i++) cs[i] = cc[i] = ts[i] = tz[i] = dzero;
        for (ptrdiff_t kf = k0; kf < k1; kf += CSM_COL_FLUSH) {
            const ptrdiff_t kf1 = kf + CSM_COL_FLUSH < k1 ? kf + CSM_COL_FLUSH : k1;
            for (int j = 0; j < CSM_COL_NV; j++) acc[j] = nm[j] = ta[j] = tza[j] = zero;
            for (ptrdiff_t k = kf; k < kf1; k++) {
                /* prefetch: the same class of the next chunk, else of the next block */
                if (q + 1 < nch && k + K < c) {
                    for (ptrdiff_t o = 0; o < CSM_COL_NL * (ptrdiff_t)sizeof(T); o += 64)
                        CSM_PREFETCH((const char *)(x + (k + K) * xk) + o);
                } else if (pf) {
                    for (ptrdiff_t o = 0; o < CSM_COL_NL * (ptrdiff_t)sizeof(T); o += 64)
                        CSM_PREFETCH((const char *)(pf + (k - k0) * xk) + o);
                    if (CSM_COL_PFW && pfw)
                        for (ptrdiff_t o = 0; o < CSM_COL_NL * (ptrdiff_t)sizeof(T); o += 64)
                            CSM_PREFETCHW((const char *)(pfw + (k - k0) * yk) + o);
                }
                V v[CSM_COL_NV], d[CSM_COL_NV], e[CSM_COL_NV], is[CSM_COL_NV];
                for (int j = 0; j < CSM_COL_NV; j++) {
                    if (vb) memcpy(&v[j], vb + k * CSM_COL_NL + j * VL, sizeof v[j]);
                    else v[j] = CSM_CLOAD(k, j);
                    d[j] = v[j] - shv[j];
                    is[j] = VIS1(v[j], mx[j]);
                    nm[j] += is[j];
                    if (soft) {
                        V t = CSM_H(ctload)(tp, k, j, nv[j]);
                        if (tp->q) ta[j] += t;
                        tza[j] = VMADD(t, d[j], tza[j]);
                    }
                }
                if (bq) VEXPBN(d, e, CSM_COL_NV);
                else CSM_H(col_vexp)(d, e);
                for (int j = 0; j < CSM_COL_NV; j++) {
                    acc[j] += e[j] - is[j];     /* exact: e == 1 where is == 1 */
                    if (store && eb) memcpy(eb + k * CSM_COL_NL + j * VL, &e[j], sizeof e[j]);
                    else if (store) CSM_H(fstore)(y + k * yk + j * VL * yp, yp, nv[j], e[j], fast);
                }
            }
            for (int j = 0; j < CSM_COL_NV; j++) {
                csm_v_f64 h[ND];
                CSM_H(widen)(acc[j], h);
                for (int i = 0; i < ND; i++) cs[j * ND + i] += h[i];
                CSM_H(widen)(nm[j], h);
                for (int i = 0; i < ND; i++) cc[j * ND + i] += h[i];
                if (soft) {
                    CSM_H(widen)(ta[j], h);
                    for (int i = 0; i < ND; i++) ts[j * ND + i] += h[i];
                    CSM_H(widen)(tza[j], h);
                    for (int i = 0; i < ND; i++) tz[j * ND + i] += h[i];
                }
            }
        }
        /* combine into the running lane state, the row pass's rules, lane-wise */
        csm_v_f64 md[NDV];
        for (int j = 0; j < CSM_COL_NV; j++) CSM_H(widen)(mx[j], md + j * ND);
        const csm_v_f64 tq0 = DSPLAT(soft && !tp->q ? tp->tsum_c[q] : 0.0);
        for (int i = 0; i < NDV; i++) {
            const csm_u_f64 none = DMASK(md[i] == dninf);
            const csm_v_f64 sh = DSEL(none, dzero, md[i]);
            /* a chunk with no value but NaN: nothing to add but the NaN */
            csm_v_f64 s_q = DSEL(none, cs[i] + cc[i], cs[i]);
            csm_v_f64 c_q = DSEL(none, dzero, cc[i]);
            const csm_v_f64 t_q = soft && tp->q ? ts[i] : tq0;
            const csm_v_f64 z_q = -tz[i];                      /* sum t (sh - x') */
            if (q == 0) {
                st->s[i] = s_q;
                st->cnt[i] = c_q;
                st->M[i] = md[i];
                if (soft) {
                    st->tsum[i] = t_q;
                    st->tdot[i] = z_q;
                }
                continue;
            }
            const csm_v_f64 M = st->M[i];
            const csm_u_f64 gt = DMASK(md[i] > M), eq = DMASK(md[i] == M);
            /* one exp: of (lower max - higher max); unused where equal */
            const csm_v_f64 lo = DSEL(gt, M, md[i]), hi = DSEL(gt, md[i], M);
            const csm_v_f64 ex = csm_vexp_f64(DSEL(eq, dzero, lo - hi));
            const csm_v_f64 s0 = st->s[i], n0 = st->cnt[i];
            st->s[i] = DSEL(gt, s_q + (n0 + s0) * ex, DSEL(eq, s0 + s_q, s0 + (c_q + s_q) * ex));
            st->cnt[i] = DSEL(gt, c_q, DSEL(eq, n0 + c_q, n0));
            const csm_v_f64 Mn = DSEL(gt, md[i], M);
            st->M[i] = Mn;
            if (soft) {
                /* tdot relative to the new max; this chunk's sum t (M - x') =
                 * sum t (sh - x') + sum t (M - sh) */
                csm_v_f64 td = st->tdot[i] + DSEL(gt, st->tsum[i] * (md[i] - M), dzero);
                st->tdot[i] = td + z_q + DSEL(none, dzero, t_q * (Mn - sh));
                st->tsum[i] += t_q;
            }
        }
    }
    for (int i = 0; i < NDV; i++) st->special |= csm_anym_f64(DMASK(st->M[i] == dninf));
#undef CSM_PASS1
#undef CSM_CLOAD
}

/* col_pass for the plain cases with store and fast (a full block at unit
 * strides) as compile-time constants, each a function of its own; every
 * option (soft targets or smoothing, soft-capping) and every partial or
 * strided block takes one general function with run-time flags.  More
 * literal variants were measured to cost build time (GCC spends it on the
 * register allocation of each) for no gain on these rarer, already costlier
 * cases. */
#define CSM_COLPASS_ARGS const T *x, ptrdiff_t xk, ptrdiff_t xp, T *y, ptrdiff_t yk,   \
                         ptrdiff_t yp, ptrdiff_t c, ptrdiff_t nl, const U *ign,        \
                         const CSM_H(ctspec) *tp, T cap, T *vb, T *eb, const T *pf,        \
                         const T *pfw, int prescan, CSM_H(colst) *st
static CSM_NOINLINE void CSM_H(col_pass_fast0)(CSM_COLPASS_ARGS)
{
    CSM_H(col_pass)(x, xk, xp, y, yk, yp, c, nl, ign, 0, 0, tp, 0, 1, cap, vb, eb, pf, pfw,
                    prescan, st);
}
static CSM_NOINLINE void CSM_H(col_pass_fast1)(CSM_COLPASS_ARGS)
{
    CSM_H(col_pass)(x, xk, xp, y, yk, yp, c, nl, ign, 1, 0, tp, 0, 1, cap, vb, eb, pf, pfw,
                    prescan, st);
}
static CSM_NOINLINE void CSM_H(col_pass_gen)(CSM_COLPASS_ARGS, int store, int soft, int capped)
{
    CSM_H(col_pass)(x, xk, xp, y, yk, yp, c, nl, ign, store, soft, tp, capped, 0, cap, vb, eb,
                    pf, pfw, prescan, st);
}

static void CSM_H(col_pass_any)(const T *x, ptrdiff_t xk, ptrdiff_t xp, T *y, ptrdiff_t yk,
                                ptrdiff_t yp, ptrdiff_t c, ptrdiff_t nl, const U *ign,
                                int store, int soft, const CSM_H(ctspec) *tp, int capped,
                                T cap, T *vb, T *eb, const T *pf, const T *pfw, int prescan,
                                CSM_H(colst) *st)
{
    if (nl == CSM_COL_NL && xp == 1 && (!store || yp == 1 || eb) && !soft && !capped) {
        if (store)
            CSM_H(col_pass_fast1)(x, xk, xp, y, yk, yp, c, nl, ign, tp, cap, vb, eb, pf, pfw,
                                  prescan, st);
        else
            CSM_H(col_pass_fast0)(x, xk, xp, y, yk, yp, c, nl, ign, tp, cap, vb, eb, pf, pfw,
                                  prescan, st);
    } else {
        CSM_H(col_pass_gen)(x, xk, xp, y, yk, yp, c, nl, ign, tp, cap, vb, eb, pf, pfw, prescan,
                            st, store, soft, capped);
    }
}
#undef CSM_COLPASS_ARGS

/* log1p((cnt - 1) + s) of every lane (the vector log1p of csm_exp.h on
 * GNU-vector builds, the scalar one otherwise) */
CSM_INLINE void CSM_H(col_log1p)(const CSM_H(colst) *st, csm_v_f64 *L)
{
    for (int i = 0; i < NDV; i++) {
        csm_v_f64 a = (st->cnt[i] - DSPLAT(1.0)) + st->s[i];
#if CSM_GNU_VEC
        L[i] = csm_vlog1p_f64(a);
#else
        L[i] = log1p(a);
#endif
    }
}

/* ---- the block loop ------------------------------------------------------------ */

/* (outer row, first position, lanes) of block b */
#define CSM_COL_BLOCK(g, b, io, p0, nl)                                          \
    const ptrdiff_t nbp_ = ((g)->np + CSM_COL_NL - 1) / CSM_COL_NL;             \
    const ptrdiff_t io = (b) / nbp_, p0 = (b) % nbp_ * CSM_COL_NL;               \
    const ptrdiff_t nl = (g)->np - p0 < CSM_COL_NL ? (g)->np - p0 : CSM_COL_NL

static ptrdiff_t CSM_H(col_nblocks)(const csm_colgeo *g)
{
    return g->no * ((g->np + CSM_COL_NL - 1) / CSM_COL_NL);
}

/* The block loop is shared among the threads when par (csm_cols_par); a
 * thread's scratch block is then its number's, else block 0. */
static int CSM_H(cols_par)(ptrdiff_t nb, ptrdiff_t c)
{
    return nb > 1 && nb * c * CSM_COL_NL >= CSM_PAR_MIN;
}
#if defined(_OPENMP) && !defined(_MSC_VER)
#  define CSM_COLS_FOR(par) CSM_PRAGMA_(omp parallel for schedule(static) if (par))
#  define CSM_COL_THREAD(par) ((par) ? omp_get_thread_num() : 0)
#  define CSM_COL_NTHREADS(par) ((par) ? omp_get_max_threads() : 1)
#else
#  define CSM_COLS_FOR(par)
#  define CSM_COL_THREAD(par) 0
#  define CSM_COL_NTHREADS(par) 1
#endif

/* Where pass 1 of block b + 1 reads (its first element), or NULL. */
CSM_INLINE const T *CSM_H(col_next)(const T *x, csm_strides s, const csm_colgeo *g, ptrdiff_t b,
                                     ptrdiff_t nb)
{
    ptrdiff_t bn = b + CSM_COL_PFD < nb ? b + CSM_COL_PFD : nb - 1;
    if (bn <= b) return NULL;
    CSM_COL_BLOCK(g, bn, io, p0, nl);
    (void)nl;
    return x + io * s.s0 + p0 * s.s1;
}

/* lanes p0.. of a per-row array (position stride ps) from double vectors */
CSM_INLINE void CSM_H(col_put)(T *p, ptrdiff_t ps, ptrdiff_t nl, const csm_v_f64 *v)
{
    for (int j = 0; j < CSM_COL_NV; j++)
        CSM_H(cstore)(p + j * VL * ps, ps, nl - j * VL, CSM_H(narrow)(v + j * ND));
}

/* The last pass's factor of chunk q, per lane: g (double, per lane) times
 * exp(cm_q - M), the rescaling of the chunk's exps to the row max (none with
 * one chunk) */
CSM_INLINE void CSM_H(col_factor)(const CSM_H(colst) *st, ptrdiff_t q, const csm_v_f64 *g,
                                   V *F)
{
    for (int j = 0; j < CSM_COL_NV; j++) {
        csm_v_f64 cmd[ND], f[ND];
        CSM_H(widen)(st->cm[q][j], cmd);
        for (int i = 0; i < ND; i++) {
            const int n = j * ND + i;
            f[i] = st->nch == 1 ? g[n] : csm_vexp_f64(cmd[i] - st->M[n]) * g[n];
        }
        F[j] = CSM_H(narrow)(f);
    }
}

/* ---- logsumexp / softmax / log_softmax ------------------------------------- */

/*
 * The scratch block (per thread), [class][lane] contiguous: eb, the block's
 * exps, from which the last pass writes y once (for c <= CSM_COL_SCRATCH_MAXC:
 * a block's exps then fit in L2), so that y is written once and the exps are
 * read back from lines outside the cache-set conflicts of a class stride that
 * is a multiple of 4 KiB (H * W = 64 * 64: every class of a block in the same
 * L1 and L2 sets); vb, the soft-capped values.  A copy of x into vb for every
 * op was measured slower (pass 1's stores cost more than the conflicts).
 */
#define CSM_COL_SCRATCH_MAXC 4096
typedef struct {
    T *p;
    size_t per;       /* elements per thread */
    int nvb, neb;     /* blocks of c x NL: vb (0/1), eb (0/1) */
} CSM_H(colscr);

static int CSM_H(colscr_init)(CSM_H(colscr) *s, ptrdiff_t c, int store, int capped, int par)
{
    s->p = NULL;
    s->nvb = capped;
    s->neb = store && c <= CSM_COL_SCRATCH_MAXC;
    s->per = (size_t)c * CSM_COL_NL * (size_t)(s->nvb + s->neb);
    if (!s->per) return 0;
    const size_t nt = (size_t)CSM_COL_NTHREADS(par);
    if (s->per > SIZE_MAX / sizeof(T) / nt) return -1;
    s->p = (T *)malloc(nt * s->per * sizeof(T));
    return s->p ? 0 : -1;
}

/* this thread's vb and eb (NULL when not kept) */
#define CSM_COLSCR_GET(s, par, c, vb, eb)                                                  \
    T *vb = NULL, *eb = NULL;                                                              \
    if ((s).p) {                                                                           \
        T *b_ = (s).p + (size_t)CSM_COL_THREAD(par) * (s).per;                             \
        vb = (s).nvb ? b_ : NULL;                                                          \
        eb = (s).neb ? b_ + (size_t)(s).nvb * (size_t)(c) * CSM_COL_NL : NULL;             \
    }

/* op: 0 logsumexp (y: the lse array, per-row strides), 1 softmax, 2 log_softmax */
static int CSM_H(cols_rows)(const csm_colgeo *g, const T *x, csm_strides xs0, T *y,
                            csm_strides ys0, int op)
{
    const csm_strides xs = csm_col_str(g, xs0), ys = csm_col_str(g, ys0);
    const ptrdiff_t c = g->c, nb = CSM_H(col_nblocks)(g);
    const int inplace = op == 1 && y == x && ys.s1 == xs.s1 && ys.sc == xs.sc && ys.s0 == xs.s0;
    const int par = CSM_H(cols_par)(nb, c);
    CSM_H(colscr) scr;
    if (CSM_H(colscr_init)(&scr, c, op == 1, 0, par)) return CSM_ERR_NOMEM;
    CSM_COLS_FOR(par)
    for (ptrdiff_t b = 0; b < nb; b++) {
        CSM_COL_BLOCK(g, b, io, p0, nl);
        CSM_COLSCR_GET(scr, par, c, vb, eb);
        const T *xb = x + io * xs.s0 + p0 * xs.s1;
        T *yb = y + io * ys.s0 + p0 * ys.s1;
        const int fy = nl == CSM_COL_NL && ys.s1 == 1, fx = nl == CSM_COL_NL && xs.s1 == 1;
        CSM_H(colst) st;
        CSM_H(col_pass_any)(xb, xs.sc, xs.s1, op == 1 ? yb : NULL, ys.sc, ys.s1, c, nl, NULL,
                            op == 1, 0, NULL, 0, 0, vb, eb, CSM_H(col_next)(x, xs, g, b, nb),
                            op == 0 ? NULL : CSM_H(col_next)(y, ys, g, b, nb), inplace, &st);
        if (st.special) {         /* Design 4: these lanes through the row functions */
            for (ptrdiff_t l = 0; l < nl; l++) {
                const T *xr = xb + l * xs.s1;
                if (op == 0) yb[l * ys.s1] = (T)CSM_H(lse_row)(xr, xs.sc, c, NULL);
                else if (op == 1) CSM_H(softmax_row)(xr, xs.sc, yb + l * ys.s1, ys.sc, c, NULL, NULL);
                else CSM_H(log_softmax_row)(xr, xs.sc, yb + l * ys.s1, ys.sc, c, NULL);
            }
            continue;
        }
        csm_v_f64 L[NDV];
        CSM_H(col_log1p)(&st, L);
        if (op == 0) {
            csm_v_f64 out[NDV];
            for (int i = 0; i < NDV; i++) out[i] = st.M[i] + L[i];
            CSM_H(col_put)(yb, ys.s1, nl, out);
            continue;
        }
        /* softmax: exp(cm - M) / (cnt + s) */
        csm_v_f64 inv[NDV];
        if (op == 1)
            for (int i = 0; i < NDV; i++) inv[i] = DSPLAT(1.0) / (st.cnt[i] + st.s[i]);
        for (ptrdiff_t q = 0; q < st.nch; q++) {
            const ptrdiff_t k0 = q * st.K, k1 = k0 + st.K < c ? k0 + st.K : c;
            if (op == 1) {
                V F[CSM_COL_NV];
                CSM_H(col_factor)(&st, q, inv, F);
#define CSM_SCALE_LOOP(FY)                                                           \
                for (ptrdiff_t k = k0; k < k1; k++)                                  \
                    for (int j = 0; j < CSM_COL_NV; j++) {                           \
                        T *p = yb + k * ys.sc + j * VL * ys.s1;                      \
                        V e = eb ? CSM_H(lanes)(eb + k * CSM_COL_NL + j * VL)        \
                                 : CSM_H(fload)(p, ys.s1, nl - j * VL, FY);          \
                        CSM_H(fstore)(p, ys.s1, nl - j * VL, e * F[j], FY);          \
                    }
                if (fy) { CSM_SCALE_LOOP(1) } else { CSM_SCALE_LOOP(0) }
#undef CSM_SCALE_LOOP
            } else {
                /* (x - M) - L in double, rounded once (the row path's seg_logsm) */
#define CSM_LOGSM_LOOP(FX, FY)                                                       \
                for (ptrdiff_t k = k0; k < k1; k++)                                  \
                    for (int j = 0; j < CSM_COL_NV; j++) {                           \
                        csm_v_f64 h[ND];                                             \
                        V v = vb ? CSM_H(lanes)(vb + k * CSM_COL_NL + j * VL)        \
                                 : CSM_H(fload)(xb + k * xs.sc + j * VL * xs.s1, xs.s1, \
                                                nl - j * VL, FX);                    \
                        CSM_H(widen)(v, h);                                          \
                        for (int i = 0; i < ND; i++)                                 \
                            h[i] = (h[i] - st.M[j * ND + i]) - L[j * ND + i];        \
                        CSM_H(fstore)(yb + k * ys.sc + j * VL * ys.s1, ys.s1, nl - j * VL, \
                                      CSM_H(narrow)(h), FY);                         \
                    }
                if (fy && fx) { CSM_LOGSM_LOOP(1, 1) } else { CSM_LOGSM_LOOP(0, 0) }
#undef CSM_LOGSM_LOOP
            }
        }
    }
    free(scr.p);
    return CSM_OK;
}

/* ---- cross-entropy -------------------------------------------------------------- */

/* Soft-capping keeps a block's capped values (c x NL) per thread: beyond
 * 16 MiB of them the row path, which keeps one row, is used instead. */
static int CSM_H(cols_fit)(ptrdiff_t c, int capped)
{
    return !capped || (double)c * CSM_COL_NL * sizeof(T) <= 16.0 * 1024 * 1024;
}

/* z'_T of every lane: the same vector soft-cap as the passes (the same bits) */
CSM_INLINE void CSM_H(cap_lanes)(double *zt, T cap, T icap)
{
    T zl[CSM_COL_NL];
    for (int l = 0; l < CSM_COL_NL; l++) zl[l] = (T)zt[l];
    for (int j = 0; j < CSM_COL_NV; j++) {
        V v = CSM_H(vcap)(CSM_H(lanes)(zl + j * VL), 1, cap, icap);
        memcpy(zl + j * VL, &v, sizeof v);
    }
    for (int l = 0; l < CSM_COL_NL; l++) zt[l] = (double)zl[l];
}

/* z'_T of the nl lanes, at offsets off from the block's first element */
CSM_INLINE void CSM_H(col_zt)(const T *zb, const ptrdiff_t *off, ptrdiff_t nl, int capped,
                               T cap, T icap, double *zt)
{
    for (ptrdiff_t l = 0; l < nl; l++) zt[l] = (double)zb[off[l]];
    if (capped) CSM_H(cap_lanes)(zt, cap, icap);
}

/* lane values (CSM_COL_NL doubles) as double vectors, and back */
CSM_INLINE void CSM_H(dload)(const double *a, csm_v_f64 *v)
{
    memcpy(v, a, NDV * sizeof(csm_v_f64));
}
CSM_INLINE void CSM_H(dstore)(double *a, const csm_v_f64 *v)
{
    memcpy(a, v, NDV * sizeof(csm_v_f64));
}

/*
 * Labels (label != NULL) or soft targets (t), every option; labels already
 * validated.  Per lane the loss, lse and gradient are those of xent_row.
 */
static int CSM_H(cols_xent)(const csm_colgeo *g, const T *z, csm_strides zs0,
                            const int64_t *label, csm_strides lbs0, const T *t,
                            csm_strides ts0, const csm_xent_opts *opt, double *loss,
                            csm_strides ls0, T *grad, csm_strides gs0, const double *tsum_c)
{
    const csm_strides zs = csm_col_str(g, zs0), lbs = csm_col_str(g, lbs0);
    const csm_strides ts = csm_col_str(g, ts0), ls = csm_col_str(g, ls0);
    const csm_strides gs = grad ? csm_col_str(g, gs0) : zs;
    const ptrdiff_t c = g->c, nb = CSM_H(col_nblocks)(g);
    const int labels = label != NULL;
    const int smooth = opt->label_smoothing != 0.0, capped = opt->softcap > 0.0;
    const int soft = !labels || smooth;
    const double eps = opt->label_smoothing, alpha = opt->z_loss;
    const double W = opt->class_weight_sum;
    const T *w = (const T *)opt->class_weight;
    const T cap = capped ? (T)opt->softcap : (T)0, icap = capped ? (T)1 / cap : (T)0;
    const int inplace = grad && (const T *)grad == z && gs.s0 == zs.s0 && gs.s1 == zs.s1 &&
                        gs.sc == zs.sc;
    const int par = CSM_H(cols_par)(nb, c);
    CSM_H(colscr) scr;
    if (CSM_H(colscr_init)(&scr, c, grad != NULL, capped, par)) return CSM_ERR_NOMEM;
    CSM_COLS_FOR(par)
    for (ptrdiff_t b = 0; b < nb; b++) {
        CSM_COL_BLOCK(g, b, io, p0, nl);
        CSM_COLSCR_GET(scr, par, c, vb, eb);
        const T *zb = z + io * zs.s0 + p0 * zs.s1;
        T *gb = grad ? grad + io * gs.s0 + p0 * gs.s1 : NULL;
        double *lb = loss + io * ls.s0 + p0 * ls.s1;
        /* per lane: target, ignored?, sample weight, upstream gradient, z'_T, w_T */
        /* off, goff: where z_T and its gradient entry are, from zb and gb */
        ptrdiff_t tg[CSM_COL_NL], off[CSM_COL_NL], goff[CSM_COL_NL];
        int skip[CSM_COL_NL], nskip = 0;
        double rs[CSM_COL_NL], g0[CSM_COL_NL], zt[CSM_COL_NL], wt[CSM_COL_NL];
        const ptrdiff_t r0 = csm_col_flat(g, io, p0);      /* flat row of lane l: r0 + l */
        const double gsc = opt->grad_scale;
        for (int l = 0; l < CSM_COL_NL; l++) {
            tg[l] = 0;
            off[l] = goff[l] = 0;
            skip[l] = l >= nl;
            rs[l] = 1.0;
            g0[l] = l < nl ? gsc : 0.0;
            zt[l] = 0.0;
            wt[l] = 1.0;
        }
        if (opt->row_scale)
            for (ptrdiff_t l = 0; l < nl; l++) rs[l] = opt->row_scale[r0 + l];
        if (opt->row_gscale)
            for (ptrdiff_t l = 0; l < nl; l++) g0[l] = gsc * opt->row_gscale[r0 + l];
        if (labels) {
            const int64_t *lp = label + io * lbs.s0 + p0 * lbs.s1;
            const int use_ig = opt->use_ignore;
            const int64_t ig = opt->ignore_index;
            for (ptrdiff_t l = 0; l < nl; l++) {
                const int64_t lab = lp[l * lbs.s1];
                off[l] = l * zs.s1;            /* an ignored lane reads its class 0 */
                if (use_ig && lab == ig) {
                    skip[l] = 1;
                    nskip++;
                    g0[l] = 0.0;
                    continue;
                }
                tg[l] = (ptrdiff_t)lab;
                off[l] += tg[l] * zs.sc;
                goff[l] = l * gs.s1 + tg[l] * gs.sc;
                if (w) wt[l] = (double)w[tg[l]];
            }
        }
        /* z_T: read after the passes, from cache, unless they may overwrite
         * it (in place without the scratch block of exps) */
        const int zt_late = !(inplace && !eb);
        if (labels && !zt_late) CSM_H(col_zt)(zb, off, nl, capped, cap, icap, zt);
        U ignm[CSM_COL_NV];
        for (int j = 0; j < CSM_COL_NV && nskip; j++) {
            U m = {0};
            for (int l = 0; l < VL; l++)
                if (skip[j * VL + l] && j * VL + l < nl) CSM_LANE(m, l) = ~CSM_LANE(m, l);
            ignm[j] = m;
        }
        CSM_H(ctspec) tp = {labels ? NULL : t + io * ts.s0 + p0 * ts.s1, ts.sc, ts.s1, w,
                            labels ? (T)0 : (T)(1.0 - eps), labels ? (T)1 : (T)(eps / (double)c),
                            tsum_c};
        CSM_H(colst) st;
        CSM_H(col_pass_any)(zb, zs.sc, zs.s1, gb, gs.sc, gs.s1, c, nl, nskip ? ignm : NULL,
                            gb != NULL, soft, &tp, capped, cap, vb, eb,
                            CSM_H(col_next)(z, zs, g, b, nb),
                            gb ? CSM_H(col_next)(grad, gs, g, b, nb) : NULL, inplace, &st);
        if (labels && zt_late) CSM_H(col_zt)(zb, off, nl, capped, cap, icap, zt);
        if (st.special) {         /* Design 4 */
            for (ptrdiff_t l = 0; l < nl; l++) {
                const ptrdiff_t r = csm_col_flat(g, io, p0 + l);
                double *lr = lb + l * ls.s1;
                T *gr = gb ? gb + l * gs.s1 : NULL;
                if (labels && skip[l]) {
                    *lr = 0.0;
                    if (opt->lse_out) opt->lse_out[r] = 0.0;
                    if (gr) CSM_H(seg_fill)(gr, gs.sc, c, (T)0);
                    continue;
                }
                CSM_H(tspec) rt = {labels ? NULL : tp.q + l * ts.s1, ts.sc, w, tp.qa, tp.qb,
                                   tsum_c};
                /* capped: c elements of the block scratch serve as the row's */
                CSM_H(xent_row)(zb + l * zs.s1, zs.sc, gr, gs.sc, c, labels ? tg[l] : -1, &rt,
                                labels && smooth, capped, opt, rs[l],
                                opt->row_gscale ? opt->row_gscale[r] : 1.0, lr,
                                opt->lse_out ? opt->lse_out + r : NULL, vb, NULL, NULL);
            }
            continue;
        }
        /* per lane, in double vectors: loss, lse, the gradient's factors
         * (xent_row's formulas) */
        csm_v_f64 L[NDV], A[NDV], stot[NDV], lse[NDV], lo[NDV];
        CSM_H(col_log1p)(&st, L);
        csm_v_f64 Wt[NDV], Zt[NDV], Rs[NDV];
        CSM_H(dload)(wt, Wt);
        CSM_H(dload)(zt, Zt);
        CSM_H(dload)(rs, Rs);
        const csm_v_f64 one = DSPLAT(1.0), e1 = DSPLAT(1.0 - eps), ec = DSPLAT(eps / (double)c);
        const csm_v_f64 va = DSPLAT(alpha);
        for (int i = 0; i < NDV; i++) {
            stot[i] = st.cnt[i] + st.s[i];
            lse[i] = st.M[i] + L[i];
            if (labels) {
                lo[i] = e1 * Wt[i] * ((st.M[i] - Zt[i]) + L[i]);
                if (smooth) lo[i] = lo[i] + ec * (st.tdot[i] + DSPLAT(W) * L[i]);
                A[i] = e1 * Wt[i] + (smooth ? ec * DSPLAT(W) : DSPLAT(0.0));
            } else {
                lo[i] = st.tdot[i] + st.tsum[i] * L[i];
                A[i] = st.tsum[i];
            }
            if (alpha != 0.0) {
                lo[i] = lo[i] + va * lse[i] * lse[i];
                A[i] = A[i] + DSPLAT(2.0) * va * lse[i];
            }
            lo[i] = Rs[i] * lo[i];
        }
        const double kb = labels ? (smooth ? eps / (double)c : 0.0) : 1.0;
        double lov[CSM_COL_NL], lsev[CSM_COL_NL];
        CSM_H(dstore)(lov, lo);
        CSM_H(dstore)(lsev, lse);
        for (ptrdiff_t l = 0; l < nl; l++) lb[l * ls.s1] = skip[l] ? 0.0 : lov[l];
        if (opt->lse_out)
            for (ptrdiff_t l = 0; l < nl; l++) opt->lse_out[r0 + l] = skip[l] ? 0.0 : lsev[l];
        if (!gb) continue;
        /* gradient: g = e fa - t kb g0, times the soft-cap's chain factor */
        csm_v_f64 G0[NDV], GA[NDV];
        CSM_H(dload)(g0, G0);
        for (int i = 0; i < NDV; i++) GA[i] = G0[i] * A[i] / stot[i];
        V NKB[CSM_COL_NV];
        for (int j = 0; j < CSM_COL_NV; j++) {
            csm_v_f64 h[ND];
            for (int i = 0; i < ND; i++) h[i] = -G0[j * ND + i] * DSPLAT(kb);
            NKB[j] = CSM_H(narrow)(h);
        }
        const V vic = VSPLAT(icap), vone = VSPLAT(1);
        for (ptrdiff_t q = 0; q < st.nch; q++) {
            const ptrdiff_t k0 = q * st.K, k1 = k0 + st.K < c ? k0 + st.K : c;
            V FA[CSM_COL_NV];      /* ignored lanes: g0 = 0, so 0 (their e are finite) */
            CSM_H(col_factor)(&st, q, GA, FA);
#define CSM_GRAD_LOOP(FG)                                                        \
            for (ptrdiff_t k = k0; k < k1; k++)                                  \
                for (int j = 0; j < CSM_COL_NV; j++) {                           \
                    T *p = gb + k * gs.sc + j * VL * gs.s1;                      \
                    const ptrdiff_t n = nl - j * VL;                             \
                    V v = (eb ? CSM_H(lanes)(eb + k * CSM_COL_NL + j * VL)       \
                              : CSM_H(fload)(p, gs.s1, n, FG)) * FA[j];          \
                    if (soft) v = VMADD(CSM_H(ctload)(&tp, k, j, n), NKB[j], v); \
                    if (capped) {                                                \
                        V u = CSM_H(lanes)(vb + k * CSM_COL_NL + j * VL) * vic;  \
                        v = v * VMADD(-u, u, vone);                              \
                    }                                                            \
                    CSM_H(fstore)(p, gs.s1, n, v, FG);                           \
                }
            if (nl == CSM_COL_NL && gs.s1 == 1 && eb && !soft && !capped) {
                /* the plain loss: g = e fa, from the scratch block */
                for (ptrdiff_t k = k0; k < k1; k++) {
                    T *p = gb + k * gs.sc;
                    const T *e = eb + k * CSM_COL_NL;
                    for (int j = 0; j < CSM_COL_NV; j++) {
                        V v;
                        memcpy(&v, e + j * VL, sizeof v);
                        v = v * FA[j];
                        memcpy(p + j * VL, &v, sizeof v);
                    }
                }
            } else if (nl == CSM_COL_NL && gs.s1 == 1) { CSM_GRAD_LOOP(1) } else { CSM_GRAD_LOOP(0) }
#undef CSM_GRAD_LOOP
        }
        if (!labels) continue;
        /* the target entries, as xent_row: y_T - 1 = (e_T - stot) / stot */
        double gtv[CSM_COL_NL];
        {
            csm_v_f64 GT[NDV];
            const csm_v_f64 vkb = DSPLAT(kb), vcap = DSPLAT((double)cap);
            for (int i = 0; i < NDV; i++) {
                const csm_v_f64 num = DSEL(DMASK(Zt[i] == st.M[i]),
                                           -((st.cnt[i] - one) + st.s[i]),
                                           csm_vexp_f64(Zt[i] - st.M[i]) - stot[i]);
                csm_v_f64 gt = A[i] * (num / stot[i]) + (A[i] - e1 * Wt[i] - vkb * Wt[i]);
                if (capped) {
                    const csm_v_f64 u = Zt[i] / vcap;
                    gt = gt * (one - u * u);
                }
                GT[i] = G0[i] * gt;
            }
            CSM_H(dstore)(gtv, GT);
        }
        for (ptrdiff_t l = 0; l < nl; l++)
            if (!skip[l]) gb[goff[l]] = (T)gtv[l];
    }
    free(scr.p);
    return CSM_OK;
}

#undef CSM_COLSCR_GET
#undef CSM_COL_BLOCK
#undef CSM_COLS_FOR
#undef CSM_COL_THREAD
#undef CSM_COL_NTHREADS
#undef ND
#undef NDV
#undef DSPLAT
#undef DMASK
#undef DSEL

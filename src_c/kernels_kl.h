/*
 * kernels_kl.h -- distillation KL between a teacher's and a student's softmax
 * at temperature T (csm_kl_div_<dtype>), on the shared vector helpers and the
 * row pass's chunking (csm_chunk_len, seg_maxmin).
 *
 * Design
 *   1. A row is taken in the row pass's chunks.  Per chunk: the max of the
 *      student s (and of the teacher t, logits kind) -- one read from memory --
 *      then, from cache, with ds = (s - m_s) / T and da = (t - m_t) / T:
 *        student  sum exp(ds) (the elements at the max counted apart, as the
 *                 row pass does, so log S is log1p(count - 1 + rest)),
 *        teacher  the same of da (logits), or P = sum p, p = exp(t) (log-probs),
 *        D        sum exp(da) (da - ds)  (logits), sum p (t - ds)  (log-probs),
 *      terms with a zero teacher weight left out (0 log 0 = 0).  Chunks are
 *      merged in double in chunk order, each moved to the row's maxima.
 *   2. loss = T^2 (D / S_t - L_t + L_s)  (logits)  or  T^2 (D + P L_s)  (log-probs),
 *      with every term measured from the row maxima: for close teacher and
 *      student the differences are small numbers, not differences of logits.
 *   3. With a gradient, the chunk pass also stores both exps (the student's into
 *      the gradient row, the teacher's into a scratch row per thread), so the
 *      gradient T (P q - p) (times the caller's factors) is one rescale pass per
 *      chunk from cache: two exps per element in all, as for the loss alone.
 *      The gradient may alias the student exactly: each vector is read before
 *      it is written.
 *   4. A row whose student or teacher holds NaN, +inf, or (logits) only -inf
 *      gets NaN loss and gradient; a masked row 0 and 0, not read.
 */

/* Chunk sums: see Design 1.  kind: literal 0 (logits) / 1 (log-probs).  bs, bt:
 * literal "every exp argument of the student / teacher lies in VEXPB's range". */
#define CSM_KLX(B, x) ((B) ? VEXPB(x) : VEXP(x))
CSM_INLINE void CSM_H(kl_seg)(const T *s, ptrdiff_t ss, const T *t, ptrdiff_t ts,
                               ptrdiff_t len, T shs, T ms, T sht, T mt, T invT,
                               const int kind, const int bs, const int bt, double out[5],
                               const int store, T *gy, ptrdiff_t gys, T *vb)
{
    const V zero = VSPLAT(0), vi = VSPLAT(invT);
    const V vshs = VSPLAT(shs), vms = VSPLAT(ms), vsht = VSPLAT(sht), vmt = VSPLAT(mt);
    V as = zero, ns = zero, at = zero, nt = zero, dd = zero;
    for (ptrdiff_t i = 0; i < len; i += VL) {
        const ptrdiff_t n = len - i < VL ? len - i : VL;
        V vs = n == VL ? CSM_H(vload)(s + i * ss, ss) : CSM_H(vload_part)(s + i * ss, ss, n, ms);
        V vt = n == VL ? CSM_H(vload)(t + i * ts, ts)
                       : CSM_H(vload_part)(t + i * ts, ts, n, kind ? -(T)INFINITY : mt);
        V ds = (vs - vshs) * vi;
        V es = CSM_KLX(bs, ds);
        V is = VIS1(vs, vms);
        V ea, da, term;
        if (kind == 0) {
            da = (vt - vsht) * vi;
            ea = CSM_KLX(bt, da);
            V it = VIS1(vt, vmt);
            at += CSM_H(vkeep)(ea - it, n);
            nt += CSM_H(vkeep)(it, n);
            term = ea * (da - ds);
        } else {
            ea = VEXP(vt);
            at += CSM_H(vkeep)(ea, n);
            term = ea * (vt - ds);
        }
        /* a zero teacher weight adds exactly 0 (0 * inf) */
        term = CSM_FROMBITS(V, CSM_BITS(U, term) & VMASK(ea != zero));
        as += CSM_H(vkeep)(es - is, n);
        ns += CSM_H(vkeep)(is, n);
        dd += CSM_H(vkeep)(term, n);
        if (store) {            /* both exps kept for the gradient (Design 3) */
            if (n == VL) {
                CSM_H(vstore)(gy + i * gys, gys, es);
                CSM_H(vstore)(vb + i, 1, ea);
            } else {
                CSM_H(vstore_part)(gy + i * gys, gys, n, es);
                CSM_H(vstore_part)(vb + i, 1, n, ea);
            }
        }
    }
    out[0] = CSM_H(vsum)(as);
    out[1] = CSM_H(vsum)(ns);
    out[2] = CSM_H(vsum)(at);
    out[3] = CSM_H(vsum)(nt);
    out[4] = CSM_H(vsum)(dd);
}

/* Gradient over len elements from the stored exps: g = g fq - vb fp. */
CSM_INLINE void CSM_H(kl_grad_seg)(T *g, ptrdiff_t gs, const T *vb, ptrdiff_t len, T fq, T fp)
{
    const V vfq = VSPLAT(fq), vfp = VSPLAT(fp);
    ptrdiff_t i = 0;
    for (; i + VL <= len; i += VL)
        CSM_H(vstore)(g + i * gs, gs, CSM_H(vload)(g + i * gs, gs) * vfq - CSM_H(vload)(vb + i, 1) * vfp);
    if (i < len) {
        const ptrdiff_t n = len - i;
        V gv = CSM_H(vload_part)(g + i * gs, gs, n, 0) * vfq - CSM_H(vload_part)(vb + i, 1, n, 0) * vfp;
        CSM_H(vstore_part)(g + i * gs, gs, n, gv);
    }
}

static void CSM_H(kl_row)(const T *sr, ptrdiff_t ssc, const T *tr, ptrdiff_t tsc, ptrdiff_t c,
                          const int kind, double Tmp, double gfac, double *lr, T *gr,
                          ptrdiff_t gsc, T *vb)
{
    const ptrdiff_t K = csm_chunk_len(c), nch = (c + K - 1) / K;
    const T invT = (T)(1.0 / Tmp);
    /* the softmaxes' running states (csm_lse_merge), maxima unscaled: only their
     * differences are divided by T, so the rounding of |x| / T never reaches a
     * result */
    csm_lsest st = {-INFINITY, 0.0, 0.0}, tt = {-INFINITY, 0.0, 0.0};
    double P = 0.0, D = 0.0;
    double shs_c[CSM_MAXCH], sht_c[CSM_MAXCH], d_c[CSM_MAXCH], a_c[CSM_MAXCH];
    int tninf_c[CSM_MAXCH];
    T Ms = -(T)INFINITY, Mt = -(T)INFINITY;     /* the row maxima, unscaled */
    int sninf_c[CSM_MAXCH];
    int special = c == 0;
    for (ptrdiff_t q = 0; q < nch && !special; q++) {
        const ptrdiff_t k0 = q * K, len = c - k0 < K ? c - k0 : K;
        const T *sc = sr + k0 * ssc, *tc = tr + k0 * tsc;
        T mn_s, mn_t = 0, ms, mt = 0;
        ms = ssc == 1 ? CSM_H(seg_maxmin)(sc, 1, len, &mn_s)
                      : CSM_H(seg_maxmin)(sc, ssc, len, &mn_s);
        if (kind == 0)
            mt = tsc == 1 ? CSM_H(seg_maxmin)(tc, 1, len, &mn_t)
                          : CSM_H(seg_maxmin)(tc, tsc, len, &mn_t);
        /* chunk exps without clamps when every argument is in VEXPB's range */
        const int bs = ms > -(T)INFINITY && ((double)mn_s - (double)ms) * invT >= VEXPB_LO;
        const int bt = kind == 0 && mt > -(T)INFINITY
                       && ((double)mn_t - (double)mt) * invT >= VEXPB_LO;
        if (ms == (T)INFINITY || mt == (T)INFINITY) {
            special = 1;
            break;
        }
        const T shs = ms == -(T)INFINITY ? (T)0 : ms, sht = mt == -(T)INFINITY ? (T)0 : mt;
        double o[5];
        T *gy = gr ? gr + k0 * gsc : NULL, *vbc = gr ? vb + k0 : NULL;
#define CSM_KLS(SS, TS, BS, BT, ST, GS) \
    CSM_H(kl_seg)(sc, SS, tc, TS, len, shs, ms, sht, mt, invT, kind, BS, BT, o, ST, gy, GS, vbc)
        if (ssc == 1 && tsc == 1 && (!gr || gsc == 1)) {
            if (gr) {
                if (bs) { if (bt) CSM_KLS(1, 1, 1, 1, 1, 1); else CSM_KLS(1, 1, 1, 0, 1, 1); }
                else { if (bt) CSM_KLS(1, 1, 0, 1, 1, 1); else CSM_KLS(1, 1, 0, 0, 1, 1); }
            } else {
                if (bs) { if (bt) CSM_KLS(1, 1, 1, 1, 0, 1); else CSM_KLS(1, 1, 1, 0, 0, 1); }
                else { if (bt) CSM_KLS(1, 1, 0, 1, 0, 1); else CSM_KLS(1, 1, 0, 0, 0, 1); }
            }
        } else {
            CSM_KLS(ssc, tsc, 0, 0, gr != NULL, gsc);
        }
#undef CSM_KLS
        sninf_c[q] = ms == -(T)INFINITY;
        if (ms == -(T)INFINITY) { o[0] += o[1]; o[1] = 0.0; }
        if (kind == 0 && mt == -(T)INFINITY) { o[2] += o[3]; o[3] = 0.0; }
        csm_lse_merge(&st, q == 0, (double)ms, o[1], o[0], (double)invT);
        if (kind == 0)
            csm_lse_merge(&tt, q == 0, (double)mt, o[3], o[2], (double)invT);
        else
            P += o[2];
        Ms = ms > Ms ? ms : Ms;
        Mt = mt > Mt ? mt : Mt;
        tninf_c[q] = kind == 0 && mt == -(T)INFINITY;
        shs_c[q] = (double)shs;
        sht_c[q] = (double)sht;
        d_c[q] = o[4];
        a_c[q] = o[2] + o[3];
    }
    if (!special && (st.M == -INFINITY || (kind == 0 && tt.M == -INFINITY))) special = 1;
    if (special) {
        *lr = NAN;
        if (gr) CSM_H(seg_fill)(gr, gsc, c, (T)NAN);
        return;
    }
    /* every chunk's D moved to the row maxima (Design 2) */
    for (ptrdiff_t q = 0; q < nch; q++) {
        if (kind == 0) {
            /* an all -inf teacher chunk adds 0 (NaN if it held one) */
            if (tninf_c[q]) D += d_c[q] * 0.0;
            else D += csm_expdiff((sht_c[q] - tt.M) * invT, 0.0)
                      * (d_c[q] + a_c[q] * ((sht_c[q] - tt.M) - (shs_c[q] - st.M)) * invT);
        } else {
            D += d_c[q] - a_c[q] * (shs_c[q] - st.M) * invT;
        }
    }
    const double Ss = st.cnt + st.s, Ls = log1p((st.cnt - 1.0) + st.s);
    const double T2 = Tmp * Tmp;
    double St = 1.0;
    if (kind == 0) {
        St = tt.cnt + tt.s;
        *lr = T2 * (D / St - log1p((tt.cnt - 1.0) + tt.s) + Ls);
        P = 1.0;
    } else {
        *lr = T2 * (D + P * Ls);
    }
    if (!gr) return;
    /* g = T (P q - p) g0: per chunk, the stored exps times their chunk's factor
     * (0 for an all -inf chunk: its exps are 0, or NaN, kept by 0 * NaN) */
    const double g0 = Tmp * gfac;
    const double fq0 = g0 * P / Ss, fp0 = kind == 0 ? g0 / St : g0;
    for (ptrdiff_t q = 0; q < nch; q++) {
        const ptrdiff_t k0 = q * K, len = c - k0 < K ? c - k0 : K;
        const T fq = (T)(sninf_c[q] ? fq0 * 0.0 : fq0 * csm_expdiff((shs_c[q] - st.M) * invT, 0.0));
        const T fp = (T)(kind == 1 ? fp0 : tninf_c[q] ? fp0 * 0.0
                                                       : fp0 * csm_expdiff((sht_c[q] - tt.M) * invT, 0.0));
        if (gsc == 1) CSM_H(kl_grad_seg)(gr + k0, 1, vb + k0, len, fq, fp);
        else CSM_H(kl_grad_seg)(gr + k0 * gsc, gsc, vb + k0, len, fq, fp);
    }
}

int CSM_FN(csm_kl_div)(csm_shape sh, const T *s, csm_strides ss, const T *t, csm_strides ts,
                       const csm_kl_opts *opt, double *loss, csm_strides ls, T *grad,
                       csm_strides gs)
{
    if (CSM_H(bad_shape)(sh) || !opt || !loss) return CSM_ERR_ARG;
    if (!(opt->temperature > 0.0) || !isfinite(opt->temperature)) return CSM_ERR_ARG;
    if (opt->teacher_kind != 0 && opt->teacher_kind != 1) return CSM_ERR_ARG;
    const ptrdiff_t nrows = sh.n0 * sh.n1, c = sh.c;
    const int kind = opt->teacher_kind;
    /* the teacher's exps of a row, for the gradient (one row per thread) */
    csm_scratch scr;
    if (csm_scratch_init(&scr, grad != NULL, nrows, c, sizeof(T)) != 0) return CSM_ERR_NOMEM;
    CSM_ROWS_FOR(nrows, c)
    for (ptrdiff_t r = 0; r < nrows; r++) {
        CSM_ROW_INDEX(r, sh, i0, i1);
        double *lr = loss + i0 * ls.s0 + i1 * ls.s1;
        T *gr = grad ? grad + i0 * gs.s0 + i1 * gs.s1 : NULL;
        if (opt->row_mask && !opt->row_mask[r]) {
            *lr = 0.0;
            if (gr) CSM_H(seg_fill)(gr, gs.sc, c, (T)0);
            continue;
        }
        const double gfac = opt->grad_scale * (opt->row_gscale ? opt->row_gscale[r] : 1.0);
        const T *sr = s + i0 * ss.s0 + i1 * ss.s1, *tr = t + i0 * ts.s0 + i1 * ts.s1;
        T *vb = (T *)csm_scratch_row(&scr);
        if (kind == 0)
            CSM_H(kl_row)(sr, ss.sc, tr, ts.sc, c, 0, opt->temperature, gfac, lr, gr, gs.sc, vb);
        else
            CSM_H(kl_row)(sr, ss.sc, tr, ts.sc, c, 1, opt->temperature, gfac, lr, gr, gs.sc, vb);
    }
    csm_scratch_free(&scr);
    return CSM_OK;
}

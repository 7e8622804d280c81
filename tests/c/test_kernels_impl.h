/* test_kernels_impl.h -- the checks of test_kernels.c for one element type:
 * T (float or double), SFX (f32 / f64), RTOL and ATOL defined by the includer. */
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define F(name) CAT(name, SFX)
#define STR_(x) #x
#define STR(x) STR_(x)

/*
 * A batch of n0 x n1 rows of c elements in one of four layouts:
 *   0 rows contiguous          s = {n1 c, c, 1}
 *   1 classes strided (N,C,d)  s = {c n1, 1, n1}
 *   2 classes reversed         base at element c-1 of each row, sc = -1
 *   3 every stride doubled, the gaps NaN (a stray read shows)
 */
typedef struct {
    T *buf, *base;
    csm_strides s;
    ptrdiff_t n0, n1, c;
} F(batch);

static F(batch) F(batch_new)(ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t c, int mode)
{
    F(batch) b = {0};
    b.n0 = n0;
    b.n1 = n1;
    b.c = c;
    ptrdiff_t n = n0 * n1 * c * (mode == 3 ? 2 : 1) + 1;
    b.buf = malloc((size_t)n * sizeof(T));
    for (ptrdiff_t i = 0; i < n; i++) b.buf[i] = (T)NAN;
    b.base = b.buf;
    if (mode == 0) b.s = (csm_strides){n1 * c, c, 1};
    if (mode == 1) b.s = (csm_strides){c * n1, 1, n1};
    if (mode == 2) { b.s = (csm_strides){n1 * c, c, -1}; b.base = b.buf + (c - 1); }
    if (mode == 3) b.s = (csm_strides){2 * n1 * c, 2 * c, 2};
    return b;
}

static T *F(at)(F(batch) *b, ptrdiff_t r, ptrdiff_t k)
{
    ptrdiff_t i0 = r / b->n1, i1 = r % b->n1;
    return b->base + i0 * b->s.s0 + i1 * b->s.s1 + k * b->s.sc;
}

static csm_shape F(shape)(const F(batch) *b) { return (csm_shape){b->n0, b->n1, b->c}; }

/* random logits: N(0, 1) * spread, one element of some rows far below */
static void F(fill)(F(batch) *b, double spread)
{
    for (ptrdiff_t r = 0; r < b->n0 * b->n1; r++)
        for (ptrdiff_t k = 0; k < b->c; k++)
            *F(at)(b, r, k) = (T)(nrand() * spread - (k == r % b->c && r % 3 == 1 ? 60 : 0));
}

/* row r as long doubles */
static void F(row)(F(batch) *b, ptrdiff_t r, R *out)
{
    for (ptrdiff_t k = 0; k < b->c; k++) out[k] = (R)*F(at)(b, r, k);
}

/* ---- logsumexp, softmax, log_softmax --------------------------------------------- */
static void F(t_rows)(ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t c, int mode)
{
    F(batch) x = F(batch_new)(n0, n1, c, mode), y = F(batch_new)(n0, n1, c, mode);
    F(fill)(&x, 3.0);
    const ptrdiff_t nr = n0 * n1;
    T *lse = malloc((size_t)nr * sizeof(T));
    R *xr = malloc((size_t)c * sizeof(R));
    csm_strides ls = {n1, 1, 0};
    if (F(csm_logsumexp)(F(shape)(&x), x.base, x.s, lse, ls) != CSM_OK) fail("status", c, 0, 1, 0);
    for (int log = 0; log < 2; log++) {
        int st = log ? F(csm_log_softmax)(F(shape)(&x), x.base, x.s, y.base, y.s)
                     : F(csm_softmax)(F(shape)(&x), x.base, x.s, y.base, y.s);
        if (st != CSM_OK) fail("status", c, 0, st, 0);
        for (ptrdiff_t r = 0; r < nr; r++) {
            F(row)(&x, r, xr);
            R M, Lr = ref_lse_rel(xr, c, &M), L = M + Lr;
            if (!log) check("logsumexp", c, r, lse[r], L, RTOL, fabsl(M) + fabsl(Lr) + 1, 0);
            for (ptrdiff_t k = 0; k < c; k++) {
                double got = *F(at)(&y, r, k);
                if (log)
                    check("log_softmax", c, k, got, (xr[k] - M) - Lr, RTOL,
                          fabsl(xr[k] - M) + fabsl(Lr), ATOL);
                else
                    check("softmax", c, k, got, expl(xr[k] - L), RTOL, 0, ATOL);
            }
        }
    }
    /* in place: y == x */
    F(csm_log_softmax)(F(shape)(&y), y.base, y.s, y.base, y.s);   /* y: log_softmax already */
    for (ptrdiff_t r = 0; r < nr; r++) {
        F(row)(&x, r, xr);
        R M, Lr = ref_lse_rel(xr, c, &M);
        for (ptrdiff_t k = 0; k < c; k++)   /* log_softmax is idempotent */
            check("log_softmax in place", c, k, *F(at)(&y, r, k), (xr[k] - M) - Lr, 2 * RTOL,
                  fabsl(xr[k] - M) + fabsl(Lr) + 1, ATOL);
    }
    free(x.buf);
    free(y.buf);
    free(lse);
    free(xr);
}

/* ---- weighted logsumexp with the sign ---------------------------------------------- */
static void F(t_lseb)(ptrdiff_t c)
{
    F(batch) x = F(batch_new)(2, 2, c, 0), b = F(batch_new)(2, 2, c, 1);
    F(fill)(&x, 2.0);
    for (ptrdiff_t r = 0; r < 4; r++)
        for (ptrdiff_t k = 0; k < c; k++)
            *F(at)(&b, r, k) = (T)(k % 5 == 3 ? 0.0 : 2.0 * urand() - (r == 2 ? 1.5 : 0.5));
    T lse[4], sg[4];
    csm_strides ls = {2, 1, 0};
    F(csm_logsumexp_b)(F(shape)(&x), x.base, x.s, b.base, b.s, lse, ls, sg, ls);
    for (ptrdiff_t r = 0; r < 4; r++) {
        R M = -INFINITY, S = 0, Sa = 0;
        for (ptrdiff_t k = 0; k < c; k++)
            if (*F(at)(&b, r, k) != 0 && *F(at)(&x, r, k) > M) M = *F(at)(&x, r, k);
        for (ptrdiff_t k = 0; k < c; k++) {
            R bk = *F(at)(&b, r, k), e = bk == 0 ? 0 : expl((R)*F(at)(&x, r, k) - M);
            S += bk * e;
            Sa += fabsl(bk) * e;
        }
        if (M == -INFINITY) continue;
        R cond = Sa / fabsl(S);
        if (cond > 1e4) continue;         /* a near-cancelling sum: no meaningful check */
        check("logsumexp b", c, r, lse[r], M + logl(fabsl(S)), RTOL, fabsl(M) + cond + 1, 0);
        check("logsumexp b sign", c, r, sg[r], S > 0 ? 1 : -1, 0, 0, 0);
    }
    free(x.buf);
    free(b.buf);
}

/* ---- cross-entropy ----------------------------------------------------------------- */
typedef struct { double eps, alpha, cap, gscale; int weights, rows, lse, ignore; } F(xcase);

/*
 * One batch of loss + gradient against the reference of csoftmax.h:
 * labels (soft = 0) or soft targets q (soft = 1); grad through the in-place
 * path (grad == z) when inplace.
 */
static void F(t_xent)(ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t c, int mode, int soft,
                      F(xcase) o, int inplace)
{
    const ptrdiff_t nr = n0 * n1;
    F(batch) z = F(batch_new)(n0, n1, c, mode), q = F(batch_new)(n0, n1, c, 0);
    F(batch) g = F(batch_new)(n0, n1, c, mode);
    F(fill)(&z, 2.5);
    int64_t *lab = malloc((size_t)nr * sizeof(int64_t));
    double *loss = malloc((size_t)nr * sizeof(double)), *lse = malloc((size_t)nr * sizeof(double));
    double *rs = malloc((size_t)nr * sizeof(double)), *rg = malloc((size_t)nr * sizeof(double));
    T *w = malloc((size_t)c * sizeof(T));
    R *zr = malloc((size_t)c * sizeof(R)), *zc = malloc((size_t)c * sizeof(R));
    R W = 0;
    for (ptrdiff_t k = 0; k < c; k++) { w[k] = o.weights ? (T)(0.25 + urand()) : (T)1; W += w[k]; }
    for (ptrdiff_t r = 0; r < nr; r++) {
        lab[r] = (int64_t)((r * 7 + 3) % c);
        if (o.ignore && r % 4 == 2) {
            lab[r] = -100;
            if (!soft) for (ptrdiff_t k = 0; k < c; k++) *F(at)(&z, r, k) = (T)NAN;  /* never read */
        }
        rs[r] = o.rows ? 0.5 + urand() : 1.0;
        rg[r] = o.rows ? rs[r] * (0.5 + urand()) : 1.0;
        for (ptrdiff_t k = 0; k < c; k++) *F(at)(&q, r, k) = (T)urand();
    }
    csm_xent_opts opt;
    memset(&opt, 0, sizeof opt);
    opt.grad_scale = o.gscale;
    opt.ignore_index = -100;
    opt.use_ignore = o.ignore;
    opt.row_scale = o.rows ? rs : NULL;
    opt.row_gscale = o.rows ? rg : NULL;
    opt.class_weight = o.weights ? w : NULL;
    opt.class_weight_sum = (double)W;
    opt.label_smoothing = o.eps;
    opt.z_loss = o.alpha;
    opt.softcap = o.cap;
    opt.lse_out = o.lse ? lse : NULL;
    T *gp = g.base;
    csm_strides gs = g.s;
    if (inplace) {
        /* a copy of z to compare with, z itself receives the gradient */
        for (ptrdiff_t r = 0; r < nr; r++)
            for (ptrdiff_t k = 0; k < c; k++) *F(at)(&g, r, k) = *F(at)(&z, r, k);
        gp = z.base;
        gs = z.s;
    }
    csm_strides ls = {n1, 1, 0}, lbs = {n1, 1, 0};
    csm_error err = {-1, 0};
    int st = soft ? F(csm_xent_soft)(F(shape)(&z), z.base, z.s, q.base, q.s, &opt, loss, ls, gp, gs)
                  : F(csm_xent_labels)(F(shape)(&z), z.base, z.s, lab, lbs, &opt, loss, ls, gp,
                                       gs, &err);
    if (st != CSM_OK) fail("xent status", c, 0, st, 0);
    F(batch) *zin = inplace ? &g : &z, *gout = inplace ? &z : &g;
    const double rtol = o.cap > 0 ? 2 * RTOL : RTOL;
    const char *what = soft ? "xent soft" : "xent labels";
    for (ptrdiff_t r = 0; r < nr; r++) {
        const int ign = !soft && o.ignore && lab[r] == -100;
        if (ign) {
            check(what, c, r, loss[r], 0, 0, 0, 0);
            for (ptrdiff_t k = 0; k < c; k++) check(what, c, k, *F(at)(gout, r, k), 0, 0, 0, 0);
            continue;
        }
        F(row)(zin, r, zr);
        for (ptrdiff_t k = 0; k < c; k++)
            zc[k] = o.cap > 0 ? (R)o.cap * tanhl(zr[k] / (R)o.cap) : zr[k];
        R L = ref_lse(zc, c), e = o.eps, loss_ref, mag, A, tsum = 0;
        R *t = malloc((size_t)c * sizeof(R));
        if (soft) {
            for (ptrdiff_t k = 0; k < c; k++) {
                t[k] = (R)w[k] * ((1 - e) * (R)*F(at)(&q, r, k) + e / (R)c);
                tsum += t[k];
            }
        } else {
            for (ptrdiff_t k = 0; k < c; k++)
                t[k] = (k == lab[r] ? (1 - e) * (R)w[k] : 0) + e / (R)c * (R)w[k];
            tsum = (1 - e) * (R)w[lab[r]] + e / (R)c * W;
        }
        loss_ref = 0;
        mag = 0;
        for (ptrdiff_t k = 0; k < c; k++) {
            loss_ref += t[k] * (L - zc[k]);
            mag += t[k] * (fabsl(L - zc[k]) + 1);
        }
        loss_ref += (R)o.alpha * L * L;
        mag += (R)o.alpha * (L * L + fabsl(L));
        check(what, c, r, loss[r], (R)rs[r] * loss_ref, rtol, (R)rs[r] * mag, 0);
        if (o.lse) check("xent lse", c, r, lse[r], L, rtol, fabsl(L) + 1, 0);
        A = tsum + 2 * (R)o.alpha * L;
        R g0 = (R)o.gscale * (R)rg[r];
        for (ptrdiff_t k = 0; k < c; k++) {
            R p = expl(zc[k] - L), ch = 1;
            if (o.cap > 0) { R u = zc[k] / (R)o.cap; ch = 1 - u * u; }
            R gref = g0 * (A * p - t[k]) * ch;
            R gmag = fabsl(g0) * (fabsl(A) * p + t[k]);
            check(what, c, k, *F(at)(gout, r, k), gref, rtol, gmag, ATOL * (double)fabsl(g0));
        }
        free(t);
    }
    /* a bad label: status, the first bad row, nothing written */
    if (!soft && !inplace) {
        lab[nr - 1] = c;
        lab[nr / 2] = -7;
        for (ptrdiff_t r = 0; r < nr; r++) loss[r] = 42.0;
        T before = *F(at)(&g, 0, 0);
        err.row = -1;
        st = F(csm_xent_labels)(F(shape)(&z), z.base, z.s, lab, lbs, &opt, loss, ls, g.base, g.s,
                                &err);
        n_checks++;
        if (st != CSM_ERR_LABEL || err.row != nr / 2 || err.value != -7 || loss[0] != 42.0 ||
            memcmp(&before, F(at)(&g, 0, 0), sizeof before) != 0)
            fail("bad label: status / row / nothing written", c, err.row, st, CSM_ERR_LABEL);
    }
    free(z.buf); free(q.buf); free(g.buf);
    free(lab); free(loss); free(lse); free(rs); free(rg); free(w); free(zr); free(zc);
}

/* ---- special rows ------------------------------------------------------------------- */
static void F(t_special)(void)
{
    const T inf = (T)INFINITY, nan = (T)NAN;
    T x[5][4] = {{0, -40, -(T)INFINITY, -(T)INFINITY},   /* the log1p case */
                 {1, nan, 2, 3}, {1, inf, 2, 3}, {-inf, -inf, -inf, -inf}, {5, 5, 5, 5}};
    T lse[5], y[5][4];
    csm_shape sh = {5, 1, 4};
    csm_strides xs = {4, 0, 1}, ls = {1, 0, 0};
    F(csm_logsumexp)(sh, &x[0][0], xs, lse, ls);
    check("lse [0, -40]", 2, 0, lse[0], log1pl(expl(-40.0L)), RTOL, 0, 0);
    check("lse NaN row", 4, 1, lse[1], NAN, 0, 0, 0);
    check("lse +inf row", 4, 2, lse[2], INFINITY, 0, 0, 0);
    check("lse -inf row", 4, 3, lse[3], -INFINITY, 0, 0, 0);
    check("lse equal row", 4, 4, lse[4], 5 + logl(4), RTOL, 6, 0);
    F(csm_softmax)(sh, &x[0][0], xs, &y[0][0], xs);
    for (int k = 0; k < 4; k++) {
        check("softmax NaN row", 4, k, y[1][k], NAN, 0, 0, 0);
        check("softmax +inf row", 4, k, y[2][k], NAN, 0, 0, 0);
        check("softmax -inf row", 4, k, y[3][k], NAN, 0, 0, 0);
        check("softmax equal row", 4, k, y[4][k], 0.25, RTOL, 0, 0);
    }
    /* cross-entropy near zero keeps its relative precision */
    int64_t lab[1] = {0};
    double loss[1];
    csm_xent_opts opt;
    memset(&opt, 0, sizeof opt);
    opt.grad_scale = 1;
    opt.class_weight_sum = 4;
    csm_shape s1 = {1, 1, 4};
    F(csm_xent_labels)(s1, &x[0][0], xs, lab, ls, &opt, loss, ls, NULL, xs, NULL);
    check("xent near 0", 2, 0, loss[0], log1pl(expl(-40.0L)), RTOL, 0, 0);
}

/* ---- the partial family: states of class slices, merged, slices written back ---- */
static void F(t_partial)(ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t c, int mode, int nsl)
{
    F(batch) x = F(batch_new)(n0, n1, c, mode), y = F(batch_new)(n0, n1, c, mode);
    F(fill)(&x, 3.0);
    const ptrdiff_t nr = n0 * n1;
    ptrdiff_t cut[8];
    for (int i = 0; i <= nsl; i++) cut[i] = c * i / nsl;      /* slices may be empty */
    double *part = malloc((size_t)(nsl * nr * CSM_PART_N) * sizeof(double));
    double *mg = malloc((size_t)(nr * CSM_PART_N) * sizeof(double));
    double *L = malloc((size_t)nr * sizeof(double)), *mrg = malloc((size_t)nr * 4 * sizeof(double));
    int64_t *lab = malloc((size_t)nr * sizeof(int64_t));
    R *xr = malloc((size_t)(c ? c : 1) * sizeof(R));
    csm_xent_opts opt;
    memset(&opt, 0, sizeof opt);
    opt.grad_scale = 1.0;
    for (ptrdiff_t r = 0; r < nr; r++) lab[r] = (r * 7919) % c;
    const csm_strides ps = {n1 * CSM_PART_N, CSM_PART_N, 1}, ms = {n1 * 4, 4, 1};
    const csm_strides lbs = {n1, 1, 0};
    for (int i = 0; i < nsl; i++) {
        csm_shape sh = {n0, n1, cut[i + 1] - cut[i]};
        opt.label_offset = cut[i];
        if (F(csm_partial)(sh, x.base + cut[i] * x.s.sc, x.s, lab, lbs, &opt,
                           part + i * nr * CSM_PART_N, ps) != CSM_OK)
            fail("partial status", c, i, 1, 0);
    }
    csm_partial_merge(nsl, nr, part, nr * CSM_PART_N, CSM_PART_N, 1, mg, CSM_PART_N, 1);
    csm_partial_log1p(nr, mg, CSM_PART_N, 1, L, 1);
    for (ptrdiff_t r = 0; r < nr; r++) {
        F(row)(&x, r, xr);
        R M, Lr = ref_lse_rel(xr, c, &M);
        const double *g = mg + r * CSM_PART_N;
        check("partial+merge lse", c, r, g[0] + L[r], M + Lr, RTOL, fabsl(M) + fabsl(Lr) + 1, 0);
        check("partial target logit", c, r, g[3], xr[lab[r]], 0, 0, 0);
    }
    for (int kind = 0; kind < 3; kind++) {
        for (ptrdiff_t r = 0; r < nr; r++) {
            const double *g = mg + r * CSM_PART_N, stot = g[1] + g[2];
            const double zt = g[3], M = g[0];
            mrg[4 * r] = M;
            mrg[4 * r + 1] = kind == 1 ? L[r] : 1.0 / stot;
            mrg[4 * r + 2] = 0.0;
            const double num = zt == M ? -((g[1] - 1.0) + g[2]) : exp(zt - M) - stot;
            mrg[4 * r + 3] = num / stot;          /* A = 1: y_T - 1 */
        }
        for (int i = 0; i < nsl; i++) {
            csm_shape sh = {n0, n1, cut[i + 1] - cut[i]};
            opt.label_offset = cut[i];
            const T *xs = x.base + cut[i] * x.s.sc;
            T *ys = y.base + cut[i] * y.s.sc;
            int st = kind == 0 ? F(csm_softmax_merged)(sh, xs, x.s, NULL, lbs, NULL, mrg, ms, ys, y.s)
                   : kind == 1 ? F(csm_log_softmax_merged)(sh, xs, x.s, NULL, lbs, NULL, mrg, ms,
                                                          ys, y.s)
                   : F(csm_xent_grad_merged)(sh, xs, x.s, lab, lbs, &opt, mrg, ms, ys, y.s);
            if (st != CSM_OK) fail("merged status", c, i, st, 0);
        }
        for (ptrdiff_t r = 0; r < nr; r++) {
            F(row)(&x, r, xr);
            R M, Lr = ref_lse_rel(xr, c, &M), Lt = M + Lr;
            for (ptrdiff_t k = 0; k < c; k++) {
                double got = *F(at)(&y, r, k);
                if (kind == 1)
                    check("log_softmax_merged", c, k, got, (xr[k] - M) - Lr, RTOL,
                          fabsl(xr[k] - M) + fabsl(Lr), ATOL);
                else
                    check(kind ? "xent_grad_merged" : "softmax_merged", c, k, got,
                          expl(xr[k] - Lt) - (kind == 2 && k == lab[r] ? 1 : 0), RTOL, 0, ATOL);
            }
        }
    }
    free(x.buf);
    free(y.buf);
    free(part);
    free(mg);
    free(L);
    free(mrg);
    free(lab);
    free(xr);
}

static void F(run)(void)
{
    const int before = n_fail;
    const int nchk = n_checks;
    for (ptrdiff_t c = 1; c <= 67; c++)
        for (int mode = 0; mode < 4; mode++) F(t_rows)(2, 3, c, mode);
    const ptrdiff_t long_c[] = {100, 1000, 4097, 9000};
    for (int i = 0; i < 4; i++)
        for (int mode = 0; mode < 4; mode++) F(t_rows)(1, 2, long_c[i], mode);
    F(t_rows)(1, 1, 70001, 0);                   /* a row split among the threads */
    for (ptrdiff_t c = 1; c <= 67; c += 3)
        for (int mode = 0; mode < 4; mode++)
            for (int nsl = 1; nsl <= 3; nsl++) F(t_partial)(2, 3, c, mode, nsl);
    for (int i = 0; i < 4; i++)
        for (int mode = 0; mode < 4; mode++) F(t_partial)(1, 2, long_c[i], mode, 1 + (i + mode) % 4);
    F(t_partial)(1, 1, 70001, 0, 2);
    F(t_rows)(40, 1, 5, 0);                      /* short rows, several per vector */
    for (ptrdiff_t c = 1; c <= 40; c += 3) F(t_lseb)(c);
    const F(xcase) plain = {0, 0, 0, 1, 0, 0, 0, 0};
    const F(xcase) all = {0.1, 1e-3, 6.0, 0.5, 1, 1, 1, 1};
    const F(xcase) some = {0.3, 0, 0, 2.0, 1, 0, 1, 1};
    for (ptrdiff_t c = 1; c <= 67; c += (c < 20 ? 1 : 5))
        for (int mode = 0; mode < 4; mode++)
            for (int soft = 0; soft < 2; soft++) {
                F(t_xent)(2, 3, c, mode, soft, plain, 0);
                F(t_xent)(2, 3, c, mode, soft, all, 0);
                F(t_xent)(2, 3, c, mode, soft, some, mode == 1);
            }
    for (int i = 0; i < 4; i++)
        for (int soft = 0; soft < 2; soft++) {
            F(t_xent)(1, 3, long_c[i], 0, soft, plain, 0);
            F(t_xent)(1, 3, long_c[i], 1, soft, all, 0);
            F(t_xent)(1, 3, long_c[i], 2, soft, some, 1);
        }
    /* the column family: classes strided, positions contiguous (layout 1),
     * full and partial blocks of positions, one and several chunks */
    const ptrdiff_t col_c[] = {1, 2, 5, 33, 67, 100, 4097};
    for (int i = 0; i < 7; i++) {
        F(t_rows)(2, 70, col_c[i], 1);
        for (int soft = 0; soft < 2; soft++) {
            F(t_xent)(2, 40, col_c[i], 1, soft, plain, 0);
            F(t_xent)(1, 37, col_c[i], 1, soft, all, 0);
            F(t_xent)(2, 33, col_c[i], 1, soft, some, 1);
        }
    }
    F(t_xent)(48, 1, 10, 0, 0, plain, 0);       /* short rows, several per vector */
    F(t_xent)(48, 1, 10, 0, 0, plain, 1);
    F(t_special)();
    printf("  %s: %d checks, %d failed\n", STR(SFX), n_checks - nchk, n_fail - before);
}

#undef CAT_
#undef CAT
#undef F
#undef STR_
#undef STR

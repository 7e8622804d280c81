/*
 * csm_exp.h -- the vector transcendental functions of the kernels, on the
 * vector types of csm_vec.h (included after it, in the same target region).
 *
 * Per dtype D in {f32, f64}:
 *   csm_vexp_D(x)          exp, see below
 *   csm_vexpb_D(x)         the same exp for x in [CSM_EXPB_LO_D, 0] only
 *   csm_vexpbn_D(x, e, nx) nx of those at once, interleaved
 *   csm_vctanh_D(z, c, ic) c tanh(z ic), the soft-cap (see there)
 *   csm_vlog1p_f64(s)      log1p for s >= 0, to finish short rows
 *   csm_vlog1p01_D(u)      log1p for u in [0, 1] (the binary cross-entropy's softplus)
 *
 * The exp (both precisions).  Clamp x (NaN passes through untouched),
 * n = round(x / ln2) by the 1.5 * 2^p "shifter", r = x - n ln2 with a two-part
 * (Cody-Waite) ln2, a minimax polynomial for exp(r) on |r| <= ln2/2, and 2^n
 * applied as 2^floor(n/2) * 2^(n - floor(n/2)), so results in the subnormal
 * range come out of one final rounding and overflow gives +inf by itself.
 *   csm_vexp_f32: valid for every input.  x <= -104 -> +0, x >= 89 -> +inf,
 *     -inf -> 0, +inf -> +inf, NaN -> NaN.  Degree-6 polynomial (3.1e-9
 *     relative).  Maximum error over all floats with normal results: 1 ULP
 *     on the FMA paths (measured 0.88), 1.5 ULP on the baseline path
 *     (measured 1.16); tests/test_exp_accuracy.py sweeps every 13th float in
 *     [-104, 89] per ISA against a float64 exp; subnormal results are within
 *     1 ULP of the subnormal spacing.
 *   csm_vexp_f64: valid for every input.  x <= -746 -> +0, x >= 710 -> +inf.
 *     Degree-11 polynomial (3.6e-18 relative).  Maximum error 2 ULP for
 *     normal results (measured 0.89 FMA, 1.17 baseline) on 2*10**6 points
 *     against a long-double exp.
 *   csm_vexpb_D / csm_vexpbn_D: the same bits for x in [CSM_EXPB_LO_D, 0]
 *     at about half the instructions (no clamps, 2^n in one step).
 *   exp(0) is exactly 1; the kernels rely on it.
 */
#ifndef CSM_EXP_H
#define CSM_EXP_H

/* ---- exp ---------------------------------------------------------------------- */

/*
 * The reduction and the polynomial shared by every exp below, for nx (a
 * literal, 1..4) independent vectors at once: p[j] = exp(r) for
 * x[j] = n ln2 + r, with n in the low bits of t[j] (t - shifter = n).  The
 * stages are written across the vectors, so that for nx > 1 the long
 * dependency chain of one exp (about 45 cycles) overlaps the others' in
 * program order, which the out-of-order window alone does not achieve (GCC
 * does not schedule before register allocation on x86); the operations, and
 * so the bits, are those of nx separate exps.
 *
 * Polynomial: minimax for exp(r) with c0 = c1 = 1 on |r| <= 1.0001 ln2/2,
 * fitted for this file by Lawson's iteration on the relative error: degree
 * 6 for float32 (3.1e-9), degree 11 for float64 (3.6e-18).
 */
#define CSM_SHIFTER_f32 12582912.0f                    /* 1.5 * 2^23 */
#define CSM_SHIFTER_f64 6755399441055744.0             /* 1.5 * 2^52 */
#define CSM_EXP_REDUCE_(D, L2E, SH, HI, LO)                                          \
    for (int j = 0; j < nx; j++) t[j] = csm_madd_##D(x[j], csm_splat_##D(L2E),       \
                                                     csm_splat_##D(SH));             \
    for (int j = 0; j < nx; j++) n[j] = t[j] - csm_splat_##D(SH);                    \
    for (int j = 0; j < nx; j++) r[j] = csm_madd_##D(n[j], csm_splat_##D(HI), x[j]); \
    for (int j = 0; j < nx; j++) r[j] = csm_madd_##D(n[j], csm_splat_##D(LO), r[j]);
#define CSM_PSTEP_(D, c) \
    for (int j = 0; j < nx; j++) p[j] = csm_madd_##D(p[j], r[j], csm_splat_##D(c));

CSM_INLINE void csm_exp_polyn_f32(const csm_v_f32 *x, csm_v_f32 *t, csm_v_f32 *p, const int nx)
{
    csm_v_f32 n[4], r[4];
    /* ln2 = hi + lo, hi with 12 significant bits: n * hi is exact */
    CSM_EXP_REDUCE_(f32, 1.44269504088896341f, CSM_SHIFTER_f32, -0.693145751953125f,
                    -1.428606765330187e-06f)
    for (int j = 0; j < nx; j++) p[j] = csm_splat_f32(1.381459638e-3f);
    CSM_PSTEP_(f32, 8.368717091e-3f) CSM_PSTEP_(f32, 4.166838809e-2f)
    CSM_PSTEP_(f32, 1.666652063e-1f) CSM_PSTEP_(f32, 4.999999345e-1f)
    CSM_PSTEP_(f32, 1.0f) CSM_PSTEP_(f32, 1.0f)
}

CSM_INLINE void csm_exp_polyn_f64(const csm_v_f64 *x, csm_v_f64 *t, csm_v_f64 *p, const int nx)
{
    csm_v_f64 n[4], r[4];
    CSM_EXP_REDUCE_(f64, 1.4426950408889634074, CSM_SHIFTER_f64, -6.93147180369123816490e-01,
                    -1.90821492927058770002e-10)
    for (int j = 0; j < nx; j++) p[j] = csm_splat_f64(2.500006354925759723e-8);
    CSM_PSTEP_(f64, 2.763024893189953030e-7) CSM_PSTEP_(f64, 2.755758637033838729e-6)
    CSM_PSTEP_(f64, 2.480149309726126396e-5) CSM_PSTEP_(f64, 1.984126950657842679e-4)
    CSM_PSTEP_(f64, 1.388888894363180264e-3) CSM_PSTEP_(f64, 8.333333333494464670e-3)
    CSM_PSTEP_(f64, 4.166666666653015177e-2) CSM_PSTEP_(f64, 1.666666666666641251e-1)
    CSM_PSTEP_(f64, 5.000000000000010628e-1) CSM_PSTEP_(f64, 1.0) CSM_PSTEP_(f64, 1.0)
}
#undef CSM_PSTEP_
#undef CSM_EXP_REDUCE_

CSM_INLINE csm_v_f32 csm_vexp_f32(csm_v_f32 x)
{
#define S_(c) csm_splat_f32(c)
    x = csm_max_f32(S_(-104.0f), x);                   /* NaN stays NaN */
    x = csm_min_f32(S_(89.0f), x);
    csm_v_f32 t, p;
    csm_exp_polyn_f32(&x, &t, &p, 1);
    /* n + 256 in [105, 385] as an integer; halves give two normal powers of 2 */
    csm_u_f32 ni = CSM_BITS(csm_u_f32, t) - CSM_BITS(csm_u_f32, S_(CSM_SHIFTER_f32)) + 256u;
    csm_u_f32 n1 = ni >> 1, n2 = ni - n1;
    csm_v_f32 s1 = CSM_FROMBITS(csm_v_f32, (n1 - 1u) << 23);    /* 2^(n1 - 128) */
    csm_v_f32 s2 = CSM_FROMBITS(csm_v_f32, (n2 - 1u) << 23);
    return (p * s1) * s2;
#undef S_
}

CSM_INLINE csm_v_f64 csm_vexp_f64(csm_v_f64 x)
{
#define S_(c) csm_splat_f64(c)
    x = csm_max_f64(S_(-746.0), x);
    x = csm_min_f64(S_(710.0), x);
    csm_v_f64 t, p;
    csm_exp_polyn_f64(&x, &t, &p, 1);
    csm_u_f64 ni = CSM_BITS(csm_u_f64, t) - CSM_BITS(csm_u_f64, S_(CSM_SHIFTER_f64)) + 2048u;
    csm_u_f64 n1 = ni >> 1, n2 = ni - n1;
    csm_v_f64 s1 = CSM_FROMBITS(csm_v_f64, (n1 - 1u) << 52);    /* 2^(n1 - 1024) */
    csm_v_f64 s2 = CSM_FROMBITS(csm_v_f64, (n2 - 1u) << 52);
    return (p * s1) * s2;
#undef S_
}

/*
 * The exp for arguments known to lie in [CSM_EXPB_LO_D, 0] (or NaN), nx
 * vectors at once (csm_vexpbn_D) or one (csm_vexpb_D): the same reduction
 * and polynomial as csm_vexp_D, without the clamps and with 2^n in one step
 * (every result is normal), hence the same bits for those arguments
 * (tests/test_exp_accuracy.py checks it).  2^n: n + bias sits in the low bits
 * of t, the shifter's own bits vanish in the shift (its low 9 / 12 bits are
 * zero); the multiply (not an integer add into p's exponent) keeps NaN a NaN.
 * The kernels use it for every chunk whose min and max are less than
 * -CSM_EXPB_LO_D apart, and for soft-capped rows (x' - max >= -2c).
 */
#define CSM_EXPB_LO_f32 (-86.0)
#define CSM_EXPB_LO_f64 (-700.0)
CSM_INLINE void csm_vexpbn_f32(const csm_v_f32 *x, csm_v_f32 *e, const int nx)
{
    csm_v_f32 t[4], p[4];
    csm_exp_polyn_f32(x, t, p, nx);
    for (int j = 0; j < nx; j++)
        e[j] = p[j] * CSM_FROMBITS(csm_v_f32, (CSM_BITS(csm_u_f32, t[j]) << 23) + (127u << 23));
}

CSM_INLINE void csm_vexpbn_f64(const csm_v_f64 *x, csm_v_f64 *e, const int nx)
{
    csm_v_f64 t[4], p[4];
    csm_exp_polyn_f64(x, t, p, nx);
    for (int j = 0; j < nx; j++)
        e[j] = p[j] * CSM_FROMBITS(csm_v_f64, (CSM_BITS(csm_u_f64, t[j]) << 52) +
                                              ((uint64_t)1023u << 52));
}

CSM_INLINE csm_v_f32 csm_vexpb_f32(csm_v_f32 x)
{
    csm_v_f32 e;
    csm_vexpbn_f32(&x, &e, 1);
    return e;
}

CSM_INLINE csm_v_f64 csm_vexpb_f64(csm_v_f64 x)
{
    csm_v_f64 e;
    csm_vexpbn_f64(&x, &e, 1);
    return e;
}

/*
 * tanh for the soft-cap.  +-inf -> +-1, NaN -> NaN, odd, exact x for tiny x.
 *
 * float32, split at |x| = 1 per vector:
 *   |x| < 1 in every lane (soft-capped logits mostly are): no exp,
 *     x P(x^2) / Q(x^2), P and Q of degree 2 in x^2, a minimax fit of the
 *     relative error on [0, 1] (1.5e-10; made for this file by Lawson's
 *     iteration on weighted least squares).  Float32 evaluation: <= 3 ULP
 *     (mean 0.5).
 *   some lane |x| >= 1: those lanes get 1 - 2 e / (1 + e), e = exp(-2|x|)
 *     (|x| capped at 10, where tanh rounds to 1): the small term carries the
 *     rounding, so 1 - tanh^2 (the chain rule) stays accurate near |t| = 1,
 *     which a rational form with its relative error does not give.
 *   tests/test_exp_accuracy.py sweeps it against a float64 tanh.
 *
 * float64: |x| >= 1/8: sign(x) (1 - 2 / (exp(2|x|) + 1)) (relative error a
 * few ULP there); |x| < 1/8: the odd Taylor series to x^15 (truncation
 * < 4e-17 relative), so c tanh(z / c) keeps z's relative precision when
 * c >> |z|.
 *
 * csm_vctanh_D(z, c, ic) is c tanh(z ic) for ic = 1/c rounded (the soft-cap;
 * c = ic = 1: tanh); the float32 rational branch forms it as z R(x^2),
 * x = z ic: one rounding and one multiply fewer than c (x R).
 */
CSM_INLINE csm_v_f32 csm_vctanh_f32(csm_v_f32 z, csm_v_f32 c, csm_v_f32 ic)
{
#define S_(c) csm_splat_f32(c)
    const csm_u_f32 sign = CSM_BITS(csm_u_f32, S_(-0.0f));
    csm_v_f32 x = z * ic;
    csm_v_f32 ax = CSM_FROMBITS(csm_v_f32, CSM_BITS(csm_u_f32, x) & ~sign);
    csm_v_f32 w = x * x;
    csm_v_f32 p = csm_madd_f32(S_(0.0010325023111610494f), w, S_(0.11071615853453864f));
    p = csm_madd_f32(p, w, S_(1.0f));
    csm_v_f32 q = csm_madd_f32(S_(0.015715736176824816f), w, S_(0.44404948371188563f));
    q = csm_madd_f32(q, w, S_(1.0f));
    csm_v_f32 t = z * (p / q);
#if CSM_GNU_VEC
    csm_u_f32 big = (csm_u_f32)(ax >= S_(1.0f));         /* NaN: not big */
#else
    csm_u_f32 big = ax >= 1.0f;
#endif
    if (csm_any_f32(big)) {
        csm_v_f32 e = csm_vexpb_f32(S_(-2.0f) * csm_min_f32(S_(10.0f), ax));
        csm_v_f32 d = (e + e) / (e + S_(1.0f));
        csm_v_f32 tb = c * CSM_FROMBITS(csm_v_f32, CSM_BITS(csm_u_f32, S_(1.0f) - d) |
                                                    (CSM_BITS(csm_u_f32, x) & sign));
#if CSM_GNU_VEC
        t = CSM_FROMBITS(csm_v_f32, (CSM_BITS(csm_u_f32, tb) & big) |
                                    (CSM_BITS(csm_u_f32, t) & ~big));
#else
        t = big ? tb : t;
#endif
    }
    return t;
#undef S_
}

#if CSM_GNU_VEC
CSM_INLINE csm_v_f64 csm_vtanh_f64(csm_v_f64 x)
{
#define S_(c) csm_splat_f64(c)
    const csm_u_f64 sign = CSM_BITS(csm_u_f64, S_(-0.0));
    csm_u_f64 xb = CSM_BITS(csm_u_f64, x);
    csm_v_f64 ax = CSM_FROMBITS(csm_v_f64, xb & ~sign);
    csm_v_f64 e = csm_vexp_f64(ax + ax);
    csm_v_f64 big = S_(1.0) - S_(2.0) / (e + S_(1.0));
    big = CSM_FROMBITS(csm_v_f64, CSM_BITS(csm_u_f64, big) | (xb & sign));
    csm_v_f64 w = x * x;
    csm_v_f64 p = S_(-929569.0 / 638512875.0);
    p = csm_madd_f64(p, w, S_(21844.0 / 6081075.0));
    p = csm_madd_f64(p, w, S_(-1382.0 / 155925.0));
    p = csm_madd_f64(p, w, S_(62.0 / 2835.0));
    p = csm_madd_f64(p, w, S_(-17.0 / 315.0));
    p = csm_madd_f64(p, w, S_(2.0 / 15.0));
    p = csm_madd_f64(p, w, S_(-1.0 / 3.0));
    csm_v_f64 small = csm_madd_f64(x * w, p, x);
    csm_u_f64 m = (csm_u_f64)(ax < S_(0.125));
    /* the sign of x, also on -0 (the series gives +0 there) */
    return CSM_FROMBITS(csm_v_f64, (CSM_BITS(csm_u_f64, small) & m) |
                                   (CSM_BITS(csm_u_f64, big) & ~m) | (xb & sign));
#undef S_
}
#else
CSM_INLINE csm_v_f64 csm_vtanh_f64(csm_v_f64 x) { return tanh(x); }
#endif

CSM_INLINE csm_v_f64 csm_vctanh_f64(csm_v_f64 z, csm_v_f64 c, csm_v_f64 ic)
{
    return c * csm_vtanh_f64(z * ic);
}

/*
 * log1p(s) for s >= 0 (or NaN), in double, vectorized: used to finish many
 * short rows at once.  u = 1 + s, u = 2^k m with m in [sqrt(1/2), sqrt(2)),
 * log m = 2 atanh(f / (2 + f)), f = m - 1, series to z^23 (truncation below
 * 1e-18 relative), plus the rounding correction (s - (u - 1)) / u.
 * Error <= 2 ULP (tests compare with math.log1p).
 */
CSM_INLINE csm_v_f64 csm_vlog1p_f64(csm_v_f64 s)
{
#define S_(c) csm_splat_f64(c)
    const csm_v_f64 one = S_(1.0);
    const csm_v_f64 two52 = S_(4503599627370496.0);          /* 2^52 */
    csm_v_f64 u = one + s;
    csm_v_f64 corr = (s - (u - one)) / u;
    csm_u_f64 b = CSM_BITS(csm_u_f64, u);
    /* k = biased exponent - 1023, converted exactly through the 2^52 trick */
    csm_v_f64 k = CSM_FROMBITS(csm_v_f64, (b >> 52) | CSM_BITS(csm_u_f64, two52)) - two52
                  - S_(1023.0);
    /* m in [1, 2): mantissa bits under the exponent of 1.0 */
    const csm_u_f64 expo = CSM_BITS(csm_u_f64, S_(INFINITY));  /* exponent field mask */
    csm_v_f64 m = CSM_FROMBITS(csm_v_f64, (b & ~expo) | CSM_BITS(csm_u_f64, one));
    /* m > sqrt(2): halve it, k + 1 */
    csm_u_f64 big = CSM_MASK_f64(m > S_(1.4142135623730951));
    m = CSM_FROMBITS(csm_v_f64, (CSM_BITS(csm_u_f64, m * S_(0.5)) & big) |
                                (CSM_BITS(csm_u_f64, m) & ~big));
    k = k + CSM_FROMBITS(csm_v_f64, CSM_BITS(csm_u_f64, one) & big);
    csm_v_f64 f = m - one;
    csm_v_f64 z = f / (S_(2.0) + f);
    csm_v_f64 w = z * z;
    csm_v_f64 q = S_(1.0 / 23.0);
    q = csm_madd_f64(q, w, S_(1.0 / 21.0));
    q = csm_madd_f64(q, w, S_(1.0 / 19.0));
    q = csm_madd_f64(q, w, S_(1.0 / 17.0));
    q = csm_madd_f64(q, w, S_(1.0 / 15.0));
    q = csm_madd_f64(q, w, S_(1.0 / 13.0));
    q = csm_madd_f64(q, w, S_(1.0 / 11.0));
    q = csm_madd_f64(q, w, S_(1.0 / 9.0));
    q = csm_madd_f64(q, w, S_(1.0 / 7.0));
    q = csm_madd_f64(q, w, S_(1.0 / 5.0));
    q = csm_madd_f64(q, w, S_(1.0 / 3.0));
    csm_v_f64 z2 = z + z;
    csm_v_f64 lo = csm_madd_f64(k, S_(1.90821492927058770002e-10), corr) + z2 * w * q;
    csm_v_f64 hi = csm_madd_f64(k, S_(6.93147180369123816490e-01), z2);
    return (hi + lo) + (s - s);        /* (s - s) carries a NaN through */
#undef S_
}

/*
 * log1p(u) for u in [0, 1] (or NaN): the softplus log1p(exp(-|z|)) of the binary
 * cross-entropy.  float32: 2 atanh(s), s = u / (2 + u) in [0, 1/3], the odd series
 * to s^15 (truncation below 1.5e-9 relative), evaluated in float32: about 3 ULP
 * by its roundings (s, the series, the final multiply-add) -- not swept on its own;
 * tests/test_losses.py checks the losses built on it against a float64 reference.
 * float64: csm_vlog1p_f64 (2 ULP).
 */
CSM_INLINE csm_v_f32 csm_vlog1p01_f32(csm_v_f32 u)
{
#define S_(c) csm_splat_f32(c)
    csm_v_f32 s = u / (S_(2.0f) + u);
    csm_v_f32 w = s * s;
    csm_v_f32 p = S_(1.0f / 15.0f);
    p = csm_madd_f32(p, w, S_(1.0f / 13.0f));
    p = csm_madd_f32(p, w, S_(1.0f / 11.0f));
    p = csm_madd_f32(p, w, S_(1.0f / 9.0f));
    p = csm_madd_f32(p, w, S_(1.0f / 7.0f));
    p = csm_madd_f32(p, w, S_(1.0f / 5.0f));
    p = csm_madd_f32(p, w, S_(1.0f / 3.0f));
    p = p * w;
    csm_v_f32 s2 = s + s;
    return csm_madd_f32(s2, p, s2);
#undef S_
}

CSM_INLINE csm_v_f64 csm_vlog1p01_f64(csm_v_f64 u) { return csm_vlog1p_f64(u); }

#endif /* CSM_EXP_H */

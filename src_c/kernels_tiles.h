/*
 * kernels_tiles.h -- short rows (c <= CSM_TILE_MAXC) with contiguous classes,
 * one row per lane (part of the row family, kernels_rows.h).
 */

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

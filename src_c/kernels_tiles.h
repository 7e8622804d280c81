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
 * When every lane's values lie within VEXPB_LO of its max (the usual case),
 * the bounded exp runs four vectors at a time (the same bits as VEXP there,
 * csm_exp.h); each group of four terms is summed in T and added into the
 * double sums once (float32: at most 3 roundings of a group before it is
 * carried in double).
 */
#  ifndef CSM_TILE_NX
#    define CSM_TILE_NX 4
#  endif
/* the double sums: two register-width halves of lanes for float32 */
#  if CSM_IS_F32
#    define CSM_TILE_SUMS csm_v_f64 aL = {0}, aH = {0}, nL = {0}, nH = {0}
#    define CSM_TILE_ADD(d, is)                                                    \
        do {                                                                       \
            aL += csm_widen_lo_f32(d);                                             \
            aH += csm_widen_hi_f32(d);                                             \
            nL += csm_widen_lo_f32(is);                                            \
            nH += csm_widen_hi_f32(is);                                            \
        } while (0)
#    define CSM_TILE_FINISH(a, n)                                                  \
        do {                                                                       \
            memcpy(&(a), &aL, sizeof aL);                                          \
            memcpy((char *)&(a) + sizeof aL, &aH, sizeof aH);                      \
            memcpy(&(n), &nL, sizeof nL);                                          \
            memcpy((char *)&(n) + sizeof nL, &nH, sizeof nH);                      \
        } while (0)
#  else
#    define CSM_TILE_SUMS V aS = VSPLAT(0), nS = VSPLAT(0)
#    define CSM_TILE_ADD(d, is) (aS += (d), nS += (is))
#    define CSM_TILE_FINISH(a, n) ((a) = aS, (n) = nS)
#  endif

CSM_INLINE int CSM_H(tile_core)(const T *const *p, ptrdiff_t c, V *E, V *Mo, D *acc, D *cnt)
{
    V X[CSM_TILE_MAXC];
    V M = VSPLAT(-(T)INFINITY), MN = VSPLAT((T)INFINITY);
    for (ptrdiff_t k = 0; k < c; k++) {
        V v = {0};
        for (int j = 0; j < VL; j++) v[j] = p[j][k];
        X[k] = v;
        M = VMAX(v, M);
        MN = VMIN(v, MN);
    }
    if (VANYM(~(VMASK(M > VSPLAT(-(T)INFINITY)) & VMASK(M < VSPLAT((T)INFINITY))))) return 0;
    const int bnd = !VANYM(~VMASK(MN - M >= VSPLAT((T)VEXPB_LO)));
    D a, n;
    CSM_TILE_SUMS;
    ptrdiff_t k = 0;
    if (bnd)
        for (; k + CSM_TILE_NX <= c; k += CSM_TILE_NX) {
            V d[CSM_TILE_NX], e[CSM_TILE_NX], is[CSM_TILE_NX];
            for (int i = 0; i < CSM_TILE_NX; i++) d[i] = X[k + i] - M;
            VEXPBN(d, e, CSM_TILE_NX);
            for (int i = 0; i < CSM_TILE_NX; i++) {
                is[i] = VIS1(X[k + i], M);
                if (E) E[k + i] = e[i];
            }
            /* exact where is == 1 (e == 1 there) */
            V gs = ((e[0] - is[0]) + (e[1] - is[1])) + ((e[2] - is[2]) + (e[3] - is[3]));
            CSM_TILE_ADD(gs, (is[0] + is[1]) + (is[2] + is[3]));
        }
    for (; k < c; k++) {
        V e = bnd ? VEXPB(X[k] - M) : VEXP(X[k] - M);
        V is = VIS1(X[k], M);
        CSM_TILE_ADD(e - is, is);
        if (E) E[k] = e;
    }
    CSM_TILE_FINISH(a, n);
    *Mo = M;
    *acc = a;
    *cnt = n;
    return 1;
}
#  undef CSM_TILE_SUMS
#  undef CSM_TILE_ADD
#  undef CSM_TILE_FINISH

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

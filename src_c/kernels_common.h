/*
 * kernels_common.h -- names and vector helpers shared by every kernel family,
 * expanded per dtype (see kernels_impl.h, which includes it first).
 *
 * Defines T (the element type), V / U / VL (its vector, unsigned vector and
 * lane count on this ISA), the csm_<op>_<dtype> wrappers of csm_vec.h under
 * short names, CSM_FN(op) (a public, ISA-suffixed name) and CSM_H(name) (a
 * helper name unique per dtype in the translation unit); strided and masked
 * vector loads and stores; the fixed-order lane sum; the row grid's index
 * macro and the OpenMP loop helper.
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
#define VMIN CSM_CAT2(csm_min, CSM_SFX)
#define VSEL CSM_CAT2(csm_sel, CSM_SFX)
#define VMASK CSM_CAT2(CSM_MASK, CSM_SFX)
#define VANYM CSM_CAT2(csm_anym, CSM_SFX)
#define VIS1 CSM_CAT2(csm_is1, CSM_SFX)
#define VEXP CSM_CAT2(csm_vexp, CSM_SFX)
#define VEXPB CSM_CAT2(csm_vexpb, CSM_SFX)
#define VEXPBN CSM_CAT2(csm_vexpbn, CSM_SFX)
#define VLOG1P01 CSM_CAT2(csm_vlog1p01, CSM_SFX)
#define VMADD CSM_CAT2(csm_madd, CSM_SFX)
/* soft-caps for which x' - max >= -2c (|tanh| <= 1 + 1e-6) stays within VEXPB's range */
#define CSM_EXPB_MAXCAP (-0.49 * VEXPB_LO)
#define VCTANH CSM_CAT2(csm_vctanh, CSM_SFX)
#define VEXPB_LO CSM_CAT2(CSM_EXPB_LO, CSM_SFX)

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

/* ---- row loop -------------------------------------------------------------- */

#define CSM_ROW_INDEX(r, sh, i0, i1)                       \
    ptrdiff_t i0 = (sh).n1 == 1 ? (r) : (r) / (sh).n1;     \
    ptrdiff_t i1 = (sh).n1 == 1 ? 0 : (r) % (sh).n1

#if defined(__GNUC__) || defined(__clang__)
#  define CSM_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#  define CSM_PREFETCHW(p) __builtin_prefetch((p), 1, 3)
#else
#  define CSM_PREFETCH(p) ((void)0)
#  define CSM_PREFETCHW(p) ((void)0)
#endif

/* Start of row r + 1 of the grid (array p, strides s) when its classes are
 * contiguous and r + 1 < nrows, else NULL: what the row pass prefetches. */
#define CSM_NEXT_ROW(p, sh, s, r, nrows)                                        \
    ((s).sc != 1 || (r) + 1 >= (nrows) ? NULL                                   \
     : (sh).n1 == 1 ? (p) + ((r) + 1) * (s).s0                                  \
     : (p) + ((r) + 1) / (sh).n1 * (s).s0 + ((r) + 1) % (sh).n1 * (s).s1)

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

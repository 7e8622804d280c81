/*
 * test_kernels.c -- the C kernels against a long-double reference, through
 * the public C API (csoftmax.h) only: no Python, so it runs wherever the
 * kernels compile, e.g. aarch64 under qemu-user (tools/cross_aarch64.sh) and
 * natively on every x86 path (CSOFTMAX_ISA=scalar|avx2|avx512 picks one).
 *
 * Checked, for float32 and float64: logsumexp (plain, and with weights b and
 * the sign), softmax, log_softmax (also in place), the fused cross-entropy
 * with labels and with soft targets, with and without every option (class
 * weights, label smoothing, z-loss, soft-capping, sample weights, an upstream
 * gradient, ignore_index, the per-row lse), over row lengths 1..67 and
 * several chunks long, contiguous, strided and reversed class axes, rows
 * over two grid axes; SciPy's special values; a bad label writes nothing;
 * the vector exp's ULP error over a sweep of [-104, 89] (float32); float16 and
 * bfloat16: every pattern widened exactly and round-tripped, narrowing to nearest
 * even checked against the neighbours, the staged softmax and cross-entropy.
 *
 * Tolerances (relative to the float-rounded magnitudes the result is formed
 * from, as the Python suite's): float32 2e-6 (4e-6 with soft-capping),
 * float64 5e-13.  Prints one line per group and exits 1 on any failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "csoftmax.h"

typedef long double R;

static int n_fail = 0, n_checks = 0;
static double worst = 0.0;          /* largest error / tolerance seen */

static void fail(const char *what, ptrdiff_t c, ptrdiff_t k, double got, double want)
{
    if (n_fail < 25)
        fprintf(stderr, "FAIL %s (c=%td, index %td): got %.17g want %.17g\n", what, c, k,
                got, want);
    n_fail++;
}

/* got vs want within rtol * scale (+ atol); NaN and inf must match */
static void check(const char *what, ptrdiff_t c, ptrdiff_t k, double got, R want,
                  double rtol, R scale, double atol)
{
    n_checks++;
    double w = (double)want;
    if (isnan(w) || isnan(got)) {
        if (!(isnan(w) && isnan(got))) fail(what, c, k, got, w);
        return;
    }
    if (isinf(w) || isinf(got)) {
        if (got != w) fail(what, c, k, got, w);
        return;
    }
    double tol = rtol * (double)(fabsl(want) + scale) + atol;
    double err = fabs(got - w);
    if (tol > 0 && err / tol > worst) worst = err / tol;
    if (!(err <= tol)) fail(what, c, k, got, w);
}

/* ---- deterministic inputs ---------------------------------------------------- */
static unsigned long long rng_state = 88172645463325252ull;
static double urand(void)            /* [0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static double nrand(void)
{
    double u = urand() + 1e-300, v = urand();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* ---- reference ------------------------------------------------------------------ */
/* log sum exp of x[0..c) = *m + the returned value, in the log1p form (exact
 * for [0, -40] in long double too): M + log1p((count of M - 1) + sum over
 * the others exp(x - M)); *m = M (0 when M is not finite) */
static R ref_lse_rel(const R *x, ptrdiff_t c, R *mo)
{
    R m = -INFINITY;
    int nan = 0;
    *mo = 0;
    for (ptrdiff_t k = 0; k < c; k++) {
        if (isnan(x[k])) nan = 1;
        else if (x[k] > m) m = x[k];
    }
    if (nan) return NAN;
    if (c == 0 || m == -INFINITY) return -INFINITY;
    if (m == INFINITY) return INFINITY;
    R s = 0, cnt = 0;
    for (ptrdiff_t k = 0; k < c; k++) {
        if (x[k] == m) cnt += 1;
        else s += expl(x[k] - m);
    }
    s += cnt - 1;
    *mo = m;
    return log1pl(s);
}

static R ref_lse(const R *x, ptrdiff_t c)
{
    R m, l = ref_lse_rel(x, c, &m);
    return m + l;
}

/* ---- one dtype at a time: the same code for float and double --------------- */
#define T float
#define SFX f32
#define RTOL 2e-6
#define ATOL 1e-7
#include "test_kernels_impl.h"
#undef T
#undef SFX
#undef RTOL
#undef ATOL
#define T double
#define SFX f64
#define RTOL 5e-13
#define ATOL 1e-300
#include "test_kernels_impl.h"

/* ---- the vector exp, float32 ----------------------------------------------------- */
static void exp_sweep(void)
{
    const ptrdiff_t n = 1 << 16;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    double max_ulp = 0.0;
    for (float lo = -104.0f; lo < 89.0f; lo += 4.0f) {
        for (ptrdiff_t i = 0; i < n; i++) x[i] = lo + 4.0f * (float)i / (float)n;
        csm_exp_f32(n, x, y);
        for (ptrdiff_t i = 0; i < n; i++) {
            R e = expl((R)x[i]);
            if (e < (R)1.1754943508222875e-38L || e > (R)3.4028234663852886e38L) continue;
            double ulp = (double)ldexpl(1.0L, ilogbl(e) - 23);
            double u = (double)fabsl((R)y[i] - e) / ulp;
            if (u > max_ulp) max_ulp = u;
        }
    }
    csm_exp_f32(1, (float[]){0.0f}, y);
    n_checks++;
    if (y[0] != 1.0f) fail("exp(0) == 1", 1, 0, y[0], 1.0);
    /* the README's bound: 1 ULP on the FMA paths (avx2, avx512), 1.5 without FMA */
    double bound = csm_isa_active() == CSM_ISA_SCALAR ? 1.5 : 1.0;
    n_checks++;
    if (!(max_ulp <= bound)) fail("exp_f32 max ULP", n, 0, max_ulp, bound);
    printf("  exp_f32: max error %.3f ULP over [-104, 89] (normal results; bound %.1f)\n",
           max_ulp, bound);
    free(x);
    free(y);
}

/* ---- half precision: conversions and the staged kernels ---------------------- */
static R half_value(uint16_t h, int bf)     /* the exact value of a 16-bit pattern */
{
    const int s = h >> 15, e = bf ? (h >> 7) & 0xff : (h >> 10) & 0x1f;
    const int m = bf ? h & 0x7f : h & 0x3ff, mb = bf ? 7 : 10, emax = bf ? 0xff : 0x1f;
    const int bias = bf ? 127 : 15;
    R v;
    if (e == emax) v = m ? (R)NAN : (R)INFINITY;
    else if (e == 0) v = ldexpl((R)m, 1 - bias - mb);
    else v = ldexpl((R)(m + (1 << mb)), e - bias - mb);
    return s ? -v : v;
}

static void half_checks(void)
{
    int bad_w = 0, bad_rt = 0, bad_n = 0;
    for (int bf = 0; bf < 2; bf++) {
        int (*widen)(ptrdiff_t, const uint16_t *, float *) = bf ? csm_widen_bf16 : csm_widen_f16;
        int (*narrow)(ptrdiff_t, const float *, uint16_t *) = bf ? csm_narrow_bf16 : csm_narrow_f16;
        static uint16_t h[65536], back[65536];
        static float f[65536];
        for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
        widen(65536, h, f);
        narrow(65536, f, back);
        for (int i = 0; i < 65536; i++) {
            R v = half_value(h[i], bf);
            n_checks++;
            if (isnan((double)v) ? !isnan(f[i]) : (R)f[i] != v) bad_w++;
            if (!isnan((double)v) && back[i] != h[i]) bad_rt++;       /* exact round trip */
        }
        /* narrowing rounds to nearest, ties to even: random floats in the format's range,
         * and the midpoints between neighbours */
        enum { N = 200000 };
        static float x[N];
        static uint16_t r[N];
        for (int i = 0; i < N; i++) {
            if (i % 2) {
                uint16_t a = (uint16_t)(urand() * (bf ? 0x7f7f : 0x7bff));
                x[i] = (float)((half_value(a, bf) + half_value((uint16_t)(a + 1), bf)) / 2);
            } else {
                x[i] = (float)(nrand() * ldexp(1.0, (int)(urand() * 40) - 26));
            }
        }
        narrow(N, x, r);
        for (int i = 0; i < N; i++) {
            const uint16_t a = r[i] & 0x7fff;
            const R v = fabsl((R)x[i]), got = half_value(a, bf);
            const R lo = a ? half_value((uint16_t)(a - 1), bf) : -1, hi = half_value((uint16_t)(a + 1), bf);
            n_checks++;
            if ((r[i] >> 15) != (x[i] < 0 ? 1 : 0) && x[i] != 0) { bad_n++; continue; }
            if (isinf((double)got)) continue;               /* overflow: checked by the Python suite */
            const R d = fabsl(v - got);
            int ok = d <= fabsl(v - hi) && d <= fabsl(v - lo);
            if (ok && (d == fabsl(v - hi) || (a && d == fabsl(v - lo)))) ok = (a & 1) == 0;  /* tie */
            if (!ok) bad_n++;
        }
    }
    n_fail += bad_w + bad_rt + bad_n;
    if (bad_w + bad_rt + bad_n)
        fprintf(stderr, "FAIL half conversions: widen %d, round trip %d, narrow %d\n", bad_w,
                bad_rt, bad_n);
    /* the staged kernels: softmax and the cross-entropy gradient of float16 / bfloat16
     * rows (several blocks, a row longer than a block) against long double */
    const ptrdiff_t shapes[3][2] = {{3000, 33}, {3, 70000}, {50, 1000}};
    for (int bf = 0; bf < 2; bf++) {
        const double rtol = bf ? 8.0 / 256 : 2.0 / 2048;    /* 1 ULP of the format, twice */
        const double atol = bf ? 1e-38 : 0x1p-24;             /* one subnormal step */
        for (int q = 0; q < 3; q++) {
            const ptrdiff_t n = shapes[q][0], c = shapes[q][1];
            uint16_t *z = malloc((size_t)(n * c) * 2), *y = malloc((size_t)(n * c) * 2);
            float *zf = malloc((size_t)(n * c) * 4);
            int64_t *lab = malloc((size_t)n * 8);
            double *loss = malloc((size_t)n * 8);
            R *row = malloc((size_t)c * sizeof(R));
            for (ptrdiff_t i = 0; i < n * c; i++) zf[i] = (float)(3 * nrand());
            (bf ? csm_narrow_bf16 : csm_narrow_f16)(n * c, zf, z);
            for (ptrdiff_t i = 0; i < n; i++) lab[i] = (int64_t)(urand() * (double)c);
            csm_shape sh = {n, 1, c};
            csm_strides s = {c, 0, 1}, ls = {1, 0, 0};
            csm_xent_opts o;
            memset(&o, 0, sizeof o);
            o.grad_scale = 1.0;
            o.class_weight_sum = (double)c;
            csm_error err;
            int st = (bf ? csm_softmax_bf16 : csm_softmax_f16)(sh, z, s, y, s);
            n_checks++;
            if (st != CSM_OK) fail("half softmax status", c, 0, st, 0);
            for (ptrdiff_t i = 0; i < n; i += (n > 100 ? 97 : 1)) {
                for (ptrdiff_t k = 0; k < c; k++) row[k] = half_value(z[i * c + k], bf);
                R m, l = ref_lse_rel(row, c, &m);
                for (ptrdiff_t k = 0; k < c; k++)
                    check(bf ? "softmax_bf16" : "softmax_f16", c, k,
                          (double)half_value(y[i * c + k], bf), expl(row[k] - m - l), rtol, 0,
                          atol);
            }
            st = (bf ? csm_xent_labels_bf16 : csm_xent_labels_f16)(sh, z, s, lab, ls, &o, loss,
                                                                   ls, y, s, &err);
            n_checks++;
            if (st != CSM_OK) fail("half xent status", c, 0, st, 0);
            for (ptrdiff_t i = 0; i < n; i += (n > 100 ? 97 : 1)) {
                for (ptrdiff_t k = 0; k < c; k++) row[k] = half_value(z[i * c + k], bf);
                R m, l = ref_lse_rel(row, c, &m);
                check("xent loss half", c, i, loss[i], m + l - row[lab[i]], 2e-6, 1, 0);
                for (ptrdiff_t k = 0; k < c; k++)
                    check(bf ? "xent grad bf16" : "xent grad f16", c, k,
                          (double)half_value(y[i * c + k], bf),
                          expl(row[k] - m - l) - (k == lab[i]), rtol, 0, atol + 2e-7);
            }
            free(z); free(y); free(zf); free(lab); free(loss); free(row);
        }
    }
    printf("  half: float16 / bfloat16 conversions (all 65536 patterns each, %d rounding "
           "cases), staged softmax and cross-entropy\n", 400000);
}

int main(void)
{
    printf("csoftmax C kernels, ISA path %s (best here: %s), %d thread(s)\n",
           csm_isa_name(csm_isa_active()), csm_isa_name(csm_isa_best()), csm_max_threads());
    run_f32();
    run_f64();
    exp_sweep();
    half_checks();
    printf("%d checks, %d failed; largest error / tolerance %.3f\n", n_checks, n_fail, worst);
    return n_fail ? 1 : 0;
}

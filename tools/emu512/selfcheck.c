/* Probe of the emulated CPU for tools/emu512/selfcheck.py: AVX-512 in CPUID
 * leaf 7, a masked 3-lane load that ends at the end of a page (the masked
 * lanes beyond must not fault), and an unmasked load across into an unmapped
 * page (must fault).  Built with target attributes only, as the kernels are. */
#include <cpuid.h>
#include <immintrin.h>

struct probe { const float *p; long n; float sum; unsigned leaf7_ebx; };

__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
void probe_masked(void *v)
{
    struct probe *a = v;
    __mmask16 m = (__mmask16)((1u << a->n) - 1u);
    a->sum = _mm512_mask_reduce_add_ps(m, _mm512_maskz_loadu_ps(m, a->p));
    unsigned eax, ecx, edx;
    __cpuid_count(7, 0, eax, a->leaf7_ebx, ecx, edx);
}

__attribute__((target("avx512f")))
void probe_unmasked(void *v)
{
    struct probe *a = v;
    a->sum = _mm512_reduce_add_ps(_mm512_loadu_ps(a->p));
}

/* ops.c -- per-layer helpers for the CPU fast path: RMS norm and SiLU(gate) * up.
 * Both are cheap next to the products; they live in C so that a layer's
 * float work does not bounce between numpy temporaries. */
#include <math.h>

#include "cpu_internal.h"
#include "pyggml_cpu.h"

/* ggml_compute_forward_rms_norm_f32, then ggml_mul by the weight:
 * sum of float squares in double, mean and scale in float, y = (x * scale) * w */
int pyggml_rms_norm(const float *x, int64_t ldx, const float *weight, float *y, int64_t ldy,
                    int64_t n_rows, int64_t n, float eps) {
    if (n_rows < 0 || n < 1) return PYGGML_ERR_SHAPE;
    if (n_rows == 0) return PYGGML_OK;
    if (!x || !y || (n_rows > 1 && (ldx < n || ldy < n))) return PYGGML_ERR_ARG;
    for (int64_t t = 0; t < n_rows; t++) {
        const float *xr = x + t * ldx;
        float *yr = y + t * ldy;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += (double)(xr[i] * xr[i]);
        const float mean = (float)(sum / n);
        const float scale = 1.0f / sqrtf(mean + eps);
        if (weight)
            for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] * scale) * weight[i];
        else
            for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * scale;
    }
    return PYGGML_OK;
}

#ifdef __AVX2__
/* e^x: x = n ln2 + r, |r| <= ln2 / 2, e^r by Cephes' degree-6 polynomial, 2^n into the
 * exponent bits; computed on x clamped to [-87.3, 88] (where e^x is a normal float), then
 * inf above 88.72 and 0 below -87.3, as expf overflows and (nearly) underflows there. */
static inline __m256 exp_ps(__m256 x) {
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);     /* ln2 in two parts */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 e_r = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const __m256 e = _mm256_mul_ps(e_r, _mm256_castsi256_ps(two_n));
    const __m256 over = _mm256_cmp_ps(x, _mm256_set1_ps(88.72f), _CMP_GT_OQ);
    const __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
    return _mm256_andnot_ps(under, _mm256_blendv_ps(e, _mm256_set1_ps(__builtin_inff()), over));
}
#endif

int pyggml_silu_mul(const float *gate, const float *up, float *out, int64_t n) {
    if (n < 0) return PYGGML_ERR_SHAPE;
    if (n == 0) return PYGGML_OK;
    if (!gate || !up || !out) return PYGGML_ERR_ARG;
    int64_t i = 0;
#ifdef __AVX2__
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
        const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
#endif
    for (; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
    return PYGGML_OK;
}

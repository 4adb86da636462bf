/* ops.c -- the element-wise steps of a layer (layer.c): RMS norm, SiLU(gate) * up,
 * GELU(gate) * up, and the softmax of attention scores.  Cheap next to the products, they
 * live in C so that a layer's float work does not bounce between numpy temporaries, and
 * they give ggml's float32 bits. */
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

/* ================================================================ ggml's exponential
 * SiLU and softmax must give ggml's float32 bits, not merely accurate ones: a quantized
 * model is chaotic at the last bit (pyggml/model/numerics.py says why).  ggml's exp is
 * ggml_v_expf (ggml-cpu/vec.h), here in its AVX-512 form, the one llama.cpp runs on
 * AVX-512 machines (numerics.expf is the same in numpy):
 *
 *     n = round(x * log2e)             z = fma(x, log2e, 1.5 * 2^23), n = z - 1.5 * 2^23
 *     b = x - n * ln2                  two fnmadd, ln2 = LN2_HI + LN2_LO
 *     j = 1 + c1 b + ... + c5 b^5      ggml's tree of fma in b and u = b * b
 *     e = j * 2^n, rounded once        (scalef); |n| > 192: 0 if n <= 0, inf otherwise
 *
 * The power of two is applied in two halves, j * 2^h * 2^(n - h) with h = n / 2: both
 * are normal floats for |n| <= 192, j * 2^h is exact, and the second product rounds once,
 * like scalef, also where e is subnormal or overflows to inf.
 * ggml leaves the last n % 16 elements of a row to the C library's expf (its loops go 16
 * at a time), and so do these functions. */
#define EXP_SHIFT 0x1.8p23f
#define EXP_LOG2E 0x1.715476p+0f
#define EXP_LN2_HI 0x1.62e4p-1f
#define EXP_LN2_LO 0x1.7f7d1cp-20f
#define EXP_C1 0x1.ffffecp-1f
#define EXP_C2 0x1.fffdb6p-2f
#define EXP_C3 0x1.555e66p-3f
#define EXP_C4 0x1.573e2ep-5f
#define EXP_C5 0x1.0e4020p-7f
#define GGML_SIMD_WIDTH 16               /* ggml's AVX-512 loops; the rest goes to expf */

/* 2^e for |e| <= 126, from its exponent bits */
static inline float pow2i(int e) { return bits_to_fp32((uint32_t)(e + 127) << 23); }

static float ggml_expf(float x) {
    const float n = fmaf(x, EXP_LOG2E, EXP_SHIFT) - EXP_SHIFT;
    const float b = fmaf(-n, EXP_LN2_LO, fmaf(-n, EXP_LN2_HI, x));
    if (!(fabsf(n) <= 192)) return n > 192 ? INFINITY : n < -192 ? 0.0f : n;  /* NaN stays */
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(EXP_C5, b, EXP_C4), u, fmaf(EXP_C3, b, EXP_C2)), u,
                         fmaf(EXP_C1, b, 1.0f));
    const int ni = (int)n, h = ni / 2;
    return j * pow2i(h) * pow2i(ni - h);
}

/* float sum of 16 values in _mm512_reduce_add_ps's order (GCC): halves, quarters, ... */
static inline float sum16(const float *e) {
    float t[8];
    for (int i = 0; i < 8; i++) t[i] = e[8 + i] + e[i];
    for (int i = 0; i < 4; i++) t[i] = t[4 + i] + t[i];
    return (t[0] + t[2]) + (t[1] + t[3]);
}

#ifdef __AVX2__
static inline __m256 ggml_expf_ps(__m256 x) {
    const __m256 shift = _mm256_set1_ps(EXP_SHIFT);
    const __m256 n = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(EXP_LOG2E), shift), shift);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_LO),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), x));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(EXP_C5), b, _mm256_set1_ps(EXP_C4)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(EXP_C3), b, _mm256_set1_ps(EXP_C2))),
        u, _mm256_fmadd_ps(_mm256_set1_ps(EXP_C1), b, _mm256_set1_ps(1.0f)));
    /* lanes with |n| > 192 get garbage powers here and are replaced below; NaN stays NaN */
    const __m256i ni = _mm256_cvtps_epi32(n), h = _mm256_srai_epi32(ni, 1);
    const __m256i bias = _mm256_set1_epi32(127), rest = _mm256_sub_epi32(ni, h);
    const __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
    const __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(rest, bias), 23));
    const __m256 e = _mm256_mul_ps(_mm256_mul_ps(j, p1), p2);
    const __m256 beyond = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), n),
                                        _mm256_set1_ps(192), _CMP_GT_OQ);
    const __m256 not_positive = _mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ);
    const __m256 alt = _mm256_andnot_ps(not_positive, _mm256_set1_ps(INFINITY));    /* 0 or inf */
    return _mm256_blendv_ps(e, alt, beyond);
}

static inline float sum16_ps(__m256 lo, __m256 hi) {       /* sum16's order */
    const __m256 t = _mm256_add_ps(hi, lo);
    __m128 q = _mm_add_ps(_mm256_extractf128_ps(t, 1), _mm256_castps256_ps128(t));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}
#endif

/* ggml_vec_swiglu_f32 on each row: x / (1 + exp(0 - x)) * up */
int pyggml_silu_mul(const float *gate, const float *up, float *out, int64_t n_rows, int64_t n) {
    if (n_rows < 0 || n < 0) return PYGGML_ERR_SHAPE;
    if (n_rows == 0 || n == 0) return PYGGML_OK;
    if (!gate || !up || !out) return PYGGML_ERR_ARG;
    const int64_t n_simd = n - n % GGML_SIMD_WIDTH;
    for (int64_t t = 0; t < n_rows; t++, gate += n, up += n, out += n) {
        int64_t i = 0;
#ifdef __AVX2__
        for (; i < n_simd; i += 8) {
            const __m256 g = _mm256_loadu_ps(gate + i);
            const __m256 e = ggml_expf_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
            const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
            _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
        }
#else
        for (; i < n_simd; i++) out[i] = gate[i] / (1.0f + ggml_expf(0.0f - gate[i])) * up[i];
#endif
        for (; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
    }
    return PYGGML_OK;
}

/* ggml_vec_geglu_f32 with GGML_GELU_FP16: ggml does not compute GELU but looks it up in
 * a table of the fp16 GELU of every fp16 value, indexed by the gate rounded to fp16 */
int pyggml_gelu_mul(const float *gate, const float *up, float *out, int64_t n,
                    const uint16_t *table) {
    if (n < 0) return PYGGML_ERR_SHAPE;
    if (n == 0) return PYGGML_OK;
    if (!gate || !up || !out || !table) return PYGGML_ERR_ARG;
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        if (g <= -10.0f) out[i] = 0.0f;
        else if (g >= 10.0f) out[i] = g * up[i];
        else out[i] = fp16_to_fp32(table[fp32_to_fp16(g)]) * up[i];
    }
    return PYGGML_OK;
}

/* ggml_compute_forward_soft_max's row (after scale and mask), in place: x = softmax(x)
 * for a row of n entries as llama.cpp has it, padded with masked (-inf) entries to a
 * multiple of 16 (its n_kv is one of 256), so that every entry goes through ggml's SIMD
 * loop: e = ggml's exp(x - max), the float sum of each 16 (_mm512_reduce_add_ps's order,
 * the padding adding 0) added in double, then x = e * (float)(1 / sum).  -inf entries give
 * 0; a row needs one finite entry. */
void softmax_row(float *x, int64_t n) {
    float max = -INFINITY;
    int64_t i_max = 0;
#ifdef __AVX2__
    /* four chains of _mm256_max_ps(x, m) = x > m ? x : m, the step of the loop below: a
     * max in another order, NaN still skipped (a tie of +0 and -0 may keep the other
     * zero, which changes no exp(x - max)); one chain was 2/3 of softmax_row's time */
    const __m256 lowest = _mm256_set1_ps(-INFINITY);
    __m256 m[4] = {lowest, lowest, lowest, lowest};
    for (; i_max + 32 <= n; i_max += 32)
        for (int c = 0; c < 4; c++) m[c] = _mm256_max_ps(_mm256_loadu_ps(x + i_max + 8 * c), m[c]);
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3])));
    for (int l = 0; l < 8; l++) max = lanes[l] > max ? lanes[l] : max;
#endif
    for (int64_t i = i_max; i < n; i++) max = x[i] > max ? x[i] : max;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i += GGML_SIMD_WIDTH) {
        const int64_t m = n - i < GGML_SIMD_WIDTH ? n - i : GGML_SIMD_WIDTH;
#ifdef __AVX2__
        if (m == GGML_SIMD_WIDTH) {
            const __m256 vmax = _mm256_set1_ps(max);
            const __m256 lo = ggml_expf_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
            const __m256 hi = ggml_expf_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vmax));
            _mm256_storeu_ps(x + i, lo);
            _mm256_storeu_ps(x + i + 8, hi);
            sum += (double)sum16_ps(lo, hi);
            continue;
        }
#endif
        float e[GGML_SIMD_WIDTH];
        for (int l = 0; l < GGML_SIMD_WIDTH; l++) e[l] = l < m ? ggml_expf(x[i + l] - max) : 0.0f;
        memcpy(x + i, e, (size_t)m * sizeof(float));
        sum += (double)sum16(e);
    }
    const float scale = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= scale;
}

/* quants_ref.c -- the scalar reference for every type: dequantize a row, quantize
 * activations, dot one weight row with one activation row.
 *
 * These functions define what the fast kernels (quants_avx2.c) compute.  They
 * follow ggml's formulas in the order ggml and gguf-py evaluate them, so that
 * dequantization is bit-exact; the library is built with -ffp-contract=off so
 * that `d * q - m` is never fused into one rounding.  Block layouts are drawn
 * in ggml_blocks.h.
 */
#include <math.h>

#include "cpu_internal.h"

const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                  1, 13, 25, 38, 53, 69, 89, 113};

/* ================================================================ dequantize one row */

static void dequant_f32(const void *w, float *y, int64_t k) { memcpy(y, w, (size_t)k * 4); }

static void dequant_f16(const void *w, float *y, int64_t k) {
    const ggml_half *x = w;
    for (int64_t i = 0; i < k; i++) y[i] = fp16_to_fp32(x[i]);
}

static void dequant_bf16(const void *w, float *y, int64_t k) {
    const uint16_t *x = w;
    for (int64_t i = 0; i < k; i++) y[i] = bf16_to_fp32(x[i]);
}

static void dequant_q4_0(const void *w, float *y, int64_t k) {
    const block_q4_0 *x = w;
    for (int64_t i = 0; i < k / QK4_0; i++, y += QK4_0) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = d * ((x[i].qs[j] & 0x0F) - 8);
            y[j + QK4_0 / 2] = d * ((x[i].qs[j] >> 4) - 8);
        }
    }
}

static void dequant_q4_1(const void *w, float *y, int64_t k) {
    const block_q4_1 *x = w;
    for (int64_t i = 0; i < k / QK4_1; i++, y += QK4_1) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = d * (x[i].qs[j] & 0x0F) + m;
            y[j + QK4_1 / 2] = d * (x[i].qs[j] >> 4) + m;
        }
    }
}

/* 5-bit quants: low nibble from qs, 5th bit j of the little-endian u32 qh */
static inline int q5_lo(const uint8_t *qs, uint32_t qh, int j) {
    return (qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
}
static inline int q5_hi(const uint8_t *qs, uint32_t qh, int j) {
    return (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
}

static void dequant_q5_0(const void *w, float *y, int64_t k) {
    const block_q5_0 *x = w;
    for (int64_t i = 0; i < k / QK5_0; i++, y += QK5_0) {
        const float d = fp16_to_fp32(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < QK5_0 / 2; j++) {
            y[j] = d * (q5_lo(x[i].qs, qh, j) - 16);
            y[j + QK5_0 / 2] = d * (q5_hi(x[i].qs, qh, j) - 16);
        }
    }
}

static void dequant_q5_1(const void *w, float *y, int64_t k) {
    const block_q5_1 *x = w;
    for (int64_t i = 0; i < k / QK5_1; i++, y += QK5_1) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < QK5_1 / 2; j++) {
            y[j] = d * q5_lo(x[i].qs, qh, j) + m;
            y[j + QK5_1 / 2] = d * q5_hi(x[i].qs, qh, j) + m;
        }
    }
}

static void dequant_q8_0(const void *w, float *y, int64_t k) {
    const block_q8_0 *x = w;
    for (int64_t i = 0; i < k / QK8_0; i++, y += QK8_0) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK8_0; j++) y[j] = x[i].qs[j] * d;
    }
}

static void dequant_iq4_nl(const void *w, float *y, int64_t k) {
    const block_iq4_nl *x = w;
    for (int64_t i = 0; i < k / QK4_NL; i++, y += QK4_NL) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            y[j] = d * kvalues_iq4nl[x[i].qs[j] & 0x0F];
            y[j + QK4_NL / 2] = d * kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

/* K-quants: element e of a super-block lives in half h = e / 128, slice
 * j = (e % 128) / 32 and lane l = e % 32; Q2_K and Q3_K keep its 2 low bits at
 * bits 2j..2j+1 of qs[32h + l]. */

static void dequant_q2_K(const void *w, float *y, int64_t k) {
    const block_q2_K *x = w;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        for (int e = 0; e < QK_K; e++, y++) {
            const int sc = x[i].scales[e / 16];
            const int q = (x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            const float dl = d * (sc & 0x0F), ml = dmin * (sc >> 4);
            *y = dl * q - ml;
        }
    }
}

/* Q3_K's sixteen 6-bit scales, +32 biased:
 *   bytes 0..7  low nibbles of scales 0..7, high nibbles of scales 8..15
 *   bytes 8..11 2 high bits of scale j at bits 2*(j/4) of byte 8 + j%4      */
static void q3_K_scales(const uint8_t *b, int8_t s[16]) {
    for (int j = 0; j < 16; j++) {
        const int low4 = j < 8 ? (b[j] & 0x0F) : (b[j - 8] >> 4);
        const int hi2 = (b[8 + j % 4] >> (2 * (j / 4))) & 3;
        s[j] = (int8_t)((low4 | (hi2 << 4)) - 32);
    }
}

/* 3-bit quant of element e: 2 low bits as Q2_K, high bit in hmask[l] bit e/32; q = L - 4 */
static inline int q3_K_quant(const block_q3_K *x, int e) {
    const int low = (x->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    const int hb = (x->hmask[e % 32] >> (e / 32)) & 1;
    return low + 4 * hb - 4;
}

static void dequant_q3_K(const void *w, float *y, int64_t k) {
    const block_q3_K *x = w;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d);
        int8_t s[16];
        q3_K_scales(x[i].scales, s);
        for (int e = 0; e < QK_K; e++, y++) {
            const float dl = d * s[e / 16];
            *y = dl * q3_K_quant(&x[i], e);
        }
    }
}

/* Q4_K/Q5_K: 6-bit scale and min of sub-block j (ggml's get_scale_min_k4):
 *   j < 4:  sc = q[j] & 63,  m = q[j+4] & 63
 *   j >= 4: sc = low nibble of q[j+4] | top 2 bits of q[j-4] << 4
 *           m  = high nibble of q[j+4] | top 2 bits of q[j]   << 4          */
static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* element e of Q4_K: sub-block j = e / 32; nibble (e % 64) / 32 of qs[32 * (e / 64) + e % 32] */
static inline int q4_K_quant(const uint8_t *qs, int e) {
    return (qs[32 * (e / 64) + e % 32] >> (4 * ((e % 64) / 32))) & 0x0F;
}

static void dequant_q4_K(const void *w, float *y, int64_t k) {
    const block_q4_K *x = w;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        for (int j = 0; j < QK_K / 32; j++) {
            int sc, m;
            scale_min_k4(j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            for (int e = 32 * j; e < 32 * j + 32; e++) *y++ = d1 * q4_K_quant(x[i].qs, e) - m1;
        }
    }
}

static void dequant_q5_K(const void *w, float *y, int64_t k) {
    const block_q5_K *x = w;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        for (int j = 0; j < QK_K / 32; j++) {
            int sc, m;
            scale_min_k4(j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            for (int e = 32 * j; e < 32 * j + 32; e++) {
                const int q = q4_K_quant(x[i].qs, e) | (((x[i].qh[e % 32] >> j) & 1) << 4);
                *y++ = d1 * q - m1;
            }
        }
    }
}

/* element e of Q6_K: low 4 bits from ql[64h + l + 32*(j&1)] nibble j>>1, high 2 bits
 * at bits 2j of qh[32h + l] (h, j, l as for Q2_K); q in 0..63, biased by 32 */
static inline int q6_K_quant(const block_q6_K *x, int e) {
    const int h = e / 128, j = (e % 128) / 32, l = e % 32;
    const int low4 = (x->ql[64 * h + l + 32 * (j & 1)] >> (4 * (j >> 1))) & 0x0F;
    const int hi2 = (x->qh[32 * h + l] >> (2 * j)) & 3;
    return low4 | (hi2 << 4);
}

static void dequant_q6_K(const void *w, float *y, int64_t k) {
    const block_q6_K *x = w;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d);
        for (int e = 0; e < QK_K; e++, y++) {
            const float dl = d * x[i].scales[e / 16];
            *y = dl * (q6_K_quant(&x[i], e) - 32);
        }
    }
}

/* ================================================================ quantize activations */

static inline float max_abs(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) amax = fmaxf(amax, fabsf(x[j]));
    return amax;
}

/* Q8_0 and Q8_1 activations as llama.cpp makes them at run time on x86: ggml-cpu's
 * quantize_row_q8_0 / q8_1 (arch/x86/quants.c), not the _ref functions that write Q8_0
 * weights (those use id = 1 / d and roundf; pyggml/quants/q8.py explains why it matters):
 *     d = max / 127 (stored fp16), id = 127 / max (0 if max is 0), q = rint(x * id)
 * with its instructions' answers for extreme blocks: a lane that is inf or NaN (127 / max
 * overflows when max < ~3.7e-37; inf in x) converts to INT32_MIN (cvtps_epi32) and packs
 * to -128; Q8_1's s = fp16(d * (float)sum) sums those int32 lanes with wrap-around. */
static inline int32_t cvtps_lane(float v) {
    return fabsf(v) <= 127.0f ? (int32_t)v : INT32_MIN;       /* v is integral, inf or NaN */
}

static void quantize_row_q8_01(const float *x, void *vy, int64_t k, int with_sum) {
    for (int64_t i = 0; i < k / 32; i++, x += 32) {
        const float amax = max_abs(x, 32);
        const float d = amax / 127;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int8_t *qs = with_sum ? ((block_q8_1 *)vy)[i].qs : ((block_q8_0 *)vy)[i].qs;
        uint32_t sum = 0;                                      /* wraps like vpaddd */
        for (int j = 0; j < 32; j++) {
            const int32_t lane = cvtps_lane(rintf(x[j] * id));
            qs[j] = (int8_t)(lane < -128 ? -128 : lane);       /* packs saturate */
            sum += (uint32_t)lane;
        }
        if (with_sum) {
            ((block_q8_1 *)vy)[i].d = fp32_to_fp16(d);
            ((block_q8_1 *)vy)[i].s = fp32_to_fp16(d * (float)(int32_t)sum);
        } else {
            ((block_q8_0 *)vy)[i].d = fp32_to_fp16(d);
        }
    }
}

void quantize_row_q8_0(const float *x, void *y, int64_t k) { quantize_row_q8_01(x, y, k, 0); }
void quantize_row_q8_1(const float *x, void *y, int64_t k) { quantize_row_q8_01(x, y, k, 1); }

/* ggml's nearest_int: round half to even through the float mantissa (|f| < 2^22) */
static inline int nearest_int(float f) {
    const float shifted = f + 12582912.0f;
    int32_t i;
    memcpy(&i, &shifted, 4);
    return (i & 0x007FFFFF) - 0x00400000;
}

/* max = the signed value of largest |x| (the first one), iscale = -127 / max,
 * q = min(127, nearest_int(iscale * x)), d = 1 / iscale (negative when max > 0).
 * An all-zero block gets d = 0 and zero qs and bsums. */
void quantize_row_q8_K_ref(const float *x, void *vy, int64_t k) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            const int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[i].qs[16 * g + j];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* ================================================================ dot products
 * ggml's pairing: each block's integer dot is exact (int32), then scaled by
 * the product of the two block scales in float and summed across blocks. */

static float dot_f32(int64_t k, const void *w, const void *act) {
    const float *x = w, *y = act;
    double sum = 0.0;          /* the reference may be more exact than the kernel, never less */
    for (int64_t i = 0; i < k; i++) sum += (double)x[i] * y[i];
    return (float)sum;
}

static float dot_f16(int64_t k, const void *w, const void *act) {
    const ggml_half *x = w;
    const float *y = act;
    double sum = 0.0;
    for (int64_t i = 0; i < k; i++) sum += (double)fp16_to_fp32(x[i]) * y[i];
    return (float)sum;
}

static float dot_bf16(int64_t k, const void *w, const void *act) {
    const uint16_t *x = w;
    const float *y = act;
    double sum = 0.0;
    for (int64_t i = 0; i < k; i++) sum += (double)bf16_to_fp32(x[i]) * y[i];
    return (float)sum;
}

static float dot_q4_0(int64_t k, const void *w, const void *act) {
    const block_q4_0 *x = w;
    const block_q8_0 *y = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < k / QK4_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++)
            sumi += ((x[i].qs[j] & 0x0F) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        sumf += fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d) * sumi;
    }
    return sumf;
}

/* with a min: sum_j (d q_j + m) d8 q8_j = d d8 sum q q8 + m s, s = d8 sum q8 from the Q8_1 block */
static float dot_q4_1(int64_t k, const void *w, const void *act) {
    const block_q4_1 *x = w;
    const block_q8_1 *y = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < k / QK4_1; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_1 / 2; j++)
            sumi += (x[i].qs[j] & 0x0F) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
        sumf += fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d) * sumi
              + fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
    }
    return sumf;
}

static float dot_q5_0(int64_t k, const void *w, const void *act) {
    const block_q5_0 *x = w;
    const block_q8_0 *y = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < k / QK5_0; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        int sumi = 0;
        for (int j = 0; j < QK5_0 / 2; j++)
            sumi += (q5_lo(x[i].qs, qh, j) - 16) * y[i].qs[j] + (q5_hi(x[i].qs, qh, j) - 16) * y[i].qs[j + 16];
        sumf += fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d) * sumi;
    }
    return sumf;
}

static float dot_q5_1(int64_t k, const void *w, const void *act) {
    const block_q5_1 *x = w;
    const block_q8_1 *y = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < k / QK5_1; i++) {
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        int sumi = 0;
        for (int j = 0; j < QK5_1 / 2; j++)
            sumi += q5_lo(x[i].qs, qh, j) * y[i].qs[j] + q5_hi(x[i].qs, qh, j) * y[i].qs[j + 16];
        sumf += fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d) * sumi
              + fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
    }
    return sumf;
}

static float dot_q8_0(int64_t k, const void *w, const void *act) {
    const block_q8_0 *x = w;
    const block_q8_0 *y = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < k / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sumf += fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d) * sumi;
    }
    return sumf;
}

static float dot_iq4_nl(int64_t k, const void *w, const void *act) {
    const block_iq4_nl *x = w;
    const block_q8_0 *y = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < k / QK4_NL; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_NL / 2; j++)
            sumi += kvalues_iq4nl[x[i].qs[j] & 0x0F] * y[i].qs[j]
                  + kvalues_iq4nl[x[i].qs[j] >> 4] * y[i].qs[j + 16];
        sumf += fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d) * sumi;
    }
    return sumf;
}

/* K-quants with a min: the min term needs only sums of 16 activation quants (bsums):
 *   dot = d d8 sum_g sc_g sum_{e in g} q_e q8_e  -  dmin d8 sum_g m_g bsum_g */

static float dot_q2_K(int64_t k, const void *w, const void *act) {
    const block_q2_K *x = w;
    const block_q8_K *y = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < k / QK_K; i++) {
        int sumi = 0, summ = 0;
        for (int e = 0; e < QK_K; e++)
            sumi += (x[i].scales[e / 16] & 0x0F) *
                    ((x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) * y[i].qs[e];
        for (int g = 0; g < QK_K / 16; g++) summ += (x[i].scales[g] >> 4) * y[i].bsums[g];
        sumf += y[i].d * fp16_to_fp32(x[i].d) * sumi - y[i].d * fp16_to_fp32(x[i].dmin) * summ;
    }
    return sumf;
}

static float dot_q3_K(int64_t k, const void *w, const void *act) {
    const block_q3_K *x = w;
    const block_q8_K *y = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < k / QK_K; i++) {
        int8_t s[16];
        q3_K_scales(x[i].scales, s);
        int sumi = 0;
        for (int e = 0; e < QK_K; e++) sumi += s[e / 16] * q3_K_quant(&x[i], e) * y[i].qs[e];
        sumf += y[i].d * fp16_to_fp32(x[i].d) * sumi;
    }
    return sumf;
}

static float dot_q4_K(int64_t k, const void *w, const void *act) {
    const block_q4_K *x = w;
    const block_q8_K *y = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < k / QK_K; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < QK_K / 32; j++) {
            int sc, m, sub = 0;
            scale_min_k4(j, x[i].scales, &sc, &m);
            for (int e = 32 * j; e < 32 * j + 32; e++) sub += q4_K_quant(x[i].qs, e) * y[i].qs[e];
            sumi += sc * sub;
            summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        sumf += y[i].d * fp16_to_fp32(x[i].d) * sumi - y[i].d * fp16_to_fp32(x[i].dmin) * summ;
    }
    return sumf;
}

static float dot_q5_K(int64_t k, const void *w, const void *act) {
    const block_q5_K *x = w;
    const block_q8_K *y = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < k / QK_K; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < QK_K / 32; j++) {
            int sc, m, sub = 0;
            scale_min_k4(j, x[i].scales, &sc, &m);
            for (int e = 32 * j; e < 32 * j + 32; e++) {
                const int q = q4_K_quant(x[i].qs, e) | (((x[i].qh[e % 32] >> j) & 1) << 4);
                sub += q * y[i].qs[e];
            }
            sumi += sc * sub;
            summ += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        sumf += y[i].d * fp16_to_fp32(x[i].d) * sumi - y[i].d * fp16_to_fp32(x[i].dmin) * summ;
    }
    return sumf;
}

static float dot_q6_K(int64_t k, const void *w, const void *act) {
    const block_q6_K *x = w;
    const block_q8_K *y = act;
    float sumf = 0.0f;
    for (int64_t i = 0; i < k / QK_K; i++) {
        int sumi = 0;
        for (int e = 0; e < QK_K; e++) sumi += x[i].scales[e / 16] * (q6_K_quant(&x[i], e) - 32) * y[i].qs[e];
        sumf += y[i].d * fp16_to_fp32(x[i].d) * sumi;
    }
    return sumf;
}

/* ================================================================ the table */

#define REF_DOT_ROWS(name)                                                                   \
    static void name##_rows(int64_t k, const void *w, const void *act, int64_t act_stride,    \
                            int n_act, float *out, int64_t ldo) {                           \
        for (int r = 0; r < n_act; r++)                                                      \
            out[r * ldo] = name(k, w, (const char *)act + r * act_stride);                   \
    }
REF_DOT_ROWS(dot_f32)
REF_DOT_ROWS(dot_f16)
REF_DOT_ROWS(dot_bf16)
REF_DOT_ROWS(dot_q4_0)
REF_DOT_ROWS(dot_q4_1)
REF_DOT_ROWS(dot_q5_0)
REF_DOT_ROWS(dot_q5_1)
REF_DOT_ROWS(dot_q8_0)
REF_DOT_ROWS(dot_iq4_nl)
REF_DOT_ROWS(dot_q2_K)
REF_DOT_ROWS(dot_q3_K)
REF_DOT_ROWS(dot_q4_K)
REF_DOT_ROWS(dot_q5_K)
REF_DOT_ROWS(dot_q6_K)

#define ROW(T, bs, ts, act, name) {GGML_TYPE_##T, bs, ts, act, dequant_##name, dot_##name, dot_##name##_rows}
static const type_traits ref_table[] = {
    ROW(F32, 1, 4, GGML_TYPE_F32, f32),
    ROW(F16, 1, 2, GGML_TYPE_F32, f16),
    ROW(BF16, 1, 2, GGML_TYPE_F32, bf16),
    ROW(Q4_0, QK4_0, 18, GGML_TYPE_Q8_0, q4_0),
    ROW(Q4_1, QK4_1, 20, GGML_TYPE_Q8_1, q4_1),
    ROW(Q5_0, QK5_0, 22, GGML_TYPE_Q8_0, q5_0),
    ROW(Q5_1, QK5_1, 24, GGML_TYPE_Q8_1, q5_1),
    ROW(Q8_0, QK8_0, 34, GGML_TYPE_Q8_0, q8_0),
    ROW(IQ4_NL, QK4_NL, 18, GGML_TYPE_Q8_0, iq4_nl),
    ROW(Q2_K, QK_K, 84, GGML_TYPE_Q8_K, q2_K),
    ROW(Q3_K, QK_K, 110, GGML_TYPE_Q8_K, q3_K),
    ROW(Q4_K, QK_K, 144, GGML_TYPE_Q8_K, q4_K),
    ROW(Q5_K, QK_K, 176, GGML_TYPE_Q8_K, q5_K),
    ROW(Q6_K, QK_K, 210, GGML_TYPE_Q8_K, q6_K),
    /* activation-only types: sizes for pyggml_row_bytes, no kernels */
    {GGML_TYPE_Q8_1, QK8_1, 36, -1, NULL, NULL, NULL},
    {GGML_TYPE_Q8_K, QK_K, 292, -1, NULL, NULL, NULL},
};

const type_traits *ref_traits(int type) {
    for (size_t i = 0; i < sizeof ref_table / sizeof ref_table[0]; i++)
        if (ref_table[i].type == type) return &ref_table[i];
    return NULL;
}

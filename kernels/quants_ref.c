/* quants_ref.c -- the scalar reference for every type: dequantize a row, quantize
 * activations, dot one weight row with one activation row in each of ggml's orders.
 *
 * These functions define what the fast kernels (quants_avx2.c, panels_avx2.c)
 * compute, bit for bit.  They follow ggml's formulas in the order ggml and gguf-py
 * evaluate them, so that dequantization is bit-exact; the library is built with
 * -ffp-contract=off so that `d * q - m` is never fused into one rounding, and the
 * products call fmaf() wherever ggml's kernels fuse.  Block layouts are drawn in
 * ggml_blocks.h.
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
 * An all-zero block gets d = 0 and zero qs and bsums.  (repack.cpp quantizes a prompt's
 * rows 4 at a time, ggml_quantize_mat_q8_K_4x8, taking +max whenever +max and -max both
 * occur: q and d then change sign together, which no product can tell.) */
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

/* ================================================================ products
 * Float weights: a double sum (these products are not ggml's, see ggml_order.c). */

static float dot_f32(int64_t k, const void *w, const void *act) {
    const float *x = w, *y = act;
    double sum = 0.0;
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

/* Quantized weights.  Every kernel of ggml first forms exact integer dot products per
 * block; what differs between them is how those integers are grouped before they meet
 * the float scales.  The reference computes, per block, the integers exactly as ggml's
 * x86 vec_dot kernels hold them -- 8 int32 lanes, lane l getting the products of the
 * elements e with (e % 32) / 4 == l (each 32-byte register of activation quants feeds
 * 8 lanes of 4 bytes), sub-block scales applied -- and then combines them in the float
 * order asked for (ggml_order.c draws each):
 *
 *   VEC_DOT   the lanes as 8 float accumulators (FMA per block), ggml's horizontal
 *             sum, and each type's own extras (min terms, second accumulators)
 *   TINYBLAS  8 float accumulators, one per lane, hsum (IQ4_NL: unlike its vec_dot)
 *   GEMV      one float chain per output: acc = fma(isum, dw dy, acc) block after
 *             block, with the min term in a second chain subtracted at the end
 *   GEMM      the same, in steps of 64 elements (Q4_K) or 128 (Q2_K)
 *   TILED     one chain per output: acc = fma(isum dw - dmin imin, dy, acc)
 *
 * The integer sums fit int32 (|lane| < 2^27); ggml's instructions would wrap, and so
 * do these (uint32 arithmetic). */
typedef struct {
    int32_t lane[8];     /* ggml's 8 integer lanes of the block's dot product */
    int32_t part[4];     /* the same products summed by 64 elements (K-quants' GEMM steps) */
    int32_t min[8];      /* the min term in ggml's lanes: Q2_K 8, Q4_K and Q5_K 4; else 0 */
    float dx, mx;        /* weight block: d, and dmin (K-quants) or m (Q4_1, Q5_1) */
    float dy, sy;        /* activation block: d, and Q8_1's s */
} block_ints;

typedef void (*block_ints_fn)(const void *w, const void *act, int64_t i, block_ints *b);

static inline void add_lane(block_ints *b, int e, int32_t v) {
    b->lane[(e % 32) / 4] = (int32_t)((uint32_t)b->lane[(e % 32) / 4] + (uint32_t)v);
    b->part[e / 64 % 4] = (int32_t)((uint32_t)b->part[e / 64 % 4] + (uint32_t)v);
}

/* ---------------------------------------------------------------- 32-element blocks */

static inline int q4_quant(const uint8_t *qs, int e) { return e < 16 ? qs[e] & 0x0F : qs[e - 16] >> 4; }

static void ints_q4_0(const void *w, const void *act, int64_t i, block_ints *b) {
    const block_q4_0 *x = (const block_q4_0 *)w + i;
    const block_q8_0 *y = (const block_q8_0 *)act + i;
    for (int e = 0; e < 32; e++) add_lane(b, e, (q4_quant(x->qs, e) - 8) * y->qs[e]);
    b->dx = fp16_to_fp32(x->d);
    b->dy = fp16_to_fp32(y->d);
}

static void ints_q4_1(const void *w, const void *act, int64_t i, block_ints *b) {
    const block_q4_1 *x = (const block_q4_1 *)w + i;
    const block_q8_1 *y = (const block_q8_1 *)act + i;
    for (int e = 0; e < 32; e++) add_lane(b, e, q4_quant(x->qs, e) * y->qs[e]);
    b->dx = fp16_to_fp32(x->d);
    b->mx = fp16_to_fp32(x->m);
    b->dy = fp16_to_fp32(y->d);
    b->sy = fp16_to_fp32(y->s);
}

static inline int q5_quant(const uint8_t *qs, const uint8_t *qh, int e) {
    uint32_t h;
    memcpy(&h, qh, 4);
    return e < 16 ? q5_lo(qs, h, e) : q5_hi(qs, h, e - 16);
}

static void ints_q5_0(const void *w, const void *act, int64_t i, block_ints *b) {
    const block_q5_0 *x = (const block_q5_0 *)w + i;
    const block_q8_0 *y = (const block_q8_0 *)act + i;
    for (int e = 0; e < 32; e++) add_lane(b, e, (q5_quant(x->qs, x->qh, e) - 16) * y->qs[e]);
    b->dx = fp16_to_fp32(x->d);
    b->dy = fp16_to_fp32(y->d);
}

static void ints_q5_1(const void *w, const void *act, int64_t i, block_ints *b) {
    const block_q5_1 *x = (const block_q5_1 *)w + i;
    const block_q8_1 *y = (const block_q8_1 *)act + i;
    for (int e = 0; e < 32; e++) add_lane(b, e, q5_quant(x->qs, x->qh, e) * y->qs[e]);
    b->dx = fp16_to_fp32(x->d);
    b->mx = fp16_to_fp32(x->m);
    b->dy = fp16_to_fp32(y->d);
    b->sy = fp16_to_fp32(y->s);
}

static void ints_q8_0(const void *w, const void *act, int64_t i, block_ints *b) {
    const block_q8_0 *x = (const block_q8_0 *)w + i;
    const block_q8_0 *y = (const block_q8_0 *)act + i;
    for (int e = 0; e < 32; e++) add_lane(b, e, x->qs[e] * y->qs[e]);
    b->dx = fp16_to_fp32(x->d);
    b->dy = fp16_to_fp32(y->d);
}

static void ints_iq4_nl(const void *w, const void *act, int64_t i, block_ints *b) {
    const block_iq4_nl *x = (const block_iq4_nl *)w + i;
    const block_q8_0 *y = (const block_q8_0 *)act + i;
    for (int e = 0; e < 32; e++) add_lane(b, e, kvalues_iq4nl[q4_quant(x->qs, e)] * y->qs[e]);
    b->dx = fp16_to_fp32(x->d);
    b->dy = fp16_to_fp32(y->d);
}

/* ---------------------------------------------------------------- K-quants x Q8_K */

static void ints_q2_K(const void *w, const void *act, int64_t i, block_ints *b) {
    const block_q2_K *x = (const block_q2_K *)w + i;
    const block_q8_K *y = (const block_q8_K *)act + i;
    for (int e = 0; e < QK_K; e++) {
        const int q = (x->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
        add_lane(b, e, (x->scales[e / 16] & 0x0F) * q * y->qs[e]);
    }
    for (int l = 0; l < 8; l++)          /* mins times bsums, pairs of groups: _mm256_madd_epi16 */
        b->min[l] = (x->scales[2 * l] >> 4) * y->bsums[2 * l] + (x->scales[2 * l + 1] >> 4) * y->bsums[2 * l + 1];
    b->dx = fp16_to_fp32(x->d);
    b->mx = fp16_to_fp32(x->dmin);
    b->dy = y->d;
}

static void ints_q3_K(const void *w, const void *act, int64_t i, block_ints *b) {
    const block_q3_K *x = (const block_q3_K *)w + i;
    const block_q8_K *y = (const block_q8_K *)act + i;
    int8_t s[16];
    q3_K_scales(x->scales, s);
    /* the quant's bias of 4 leaves in each lane: ggml subtracts 4 q8 where the high bit is clear */
    for (int e = 0; e < QK_K; e++) add_lane(b, e, s[e / 16] * q3_K_quant(x, e) * y->qs[e]);
    b->dx = fp16_to_fp32(x->d);
    b->dy = y->d;
}

/* Q4_K and Q5_K: the min term in 4 lanes, lane p = m_2p bsum32_2p + m_2p+1 bsum32_2p+1
 * (bsum32_j = bsums[2j] + bsums[2j+1], the sum of sub-block j's activation quants) */
static void k4_mins(const uint8_t *scales, const block_q8_K *y, block_ints *b) {
    int sc, m[8];
    for (int j = 0; j < 8; j++) scale_min_k4(j, scales, &sc, &m[j]);
    for (int p = 0; p < 4; p++)
        b->min[p] = m[2 * p] * (y->bsums[4 * p] + y->bsums[4 * p + 1])
                  + m[2 * p + 1] * (y->bsums[4 * p + 2] + y->bsums[4 * p + 3]);
}

static void ints_q4_K(const void *w, const void *act, int64_t i, block_ints *b) {
    const block_q4_K *x = (const block_q4_K *)w + i;
    const block_q8_K *y = (const block_q8_K *)act + i;
    for (int e = 0; e < QK_K; e++) {
        int sc, m;
        scale_min_k4(e / 32, x->scales, &sc, &m);
        add_lane(b, e, sc * q4_K_quant(x->qs, e) * y->qs[e]);
    }
    k4_mins(x->scales, y, b);
    b->dx = fp16_to_fp32(x->d);
    b->mx = fp16_to_fp32(x->dmin);
    b->dy = y->d;
}

static void ints_q5_K(const void *w, const void *act, int64_t i, block_ints *b) {
    const block_q5_K *x = (const block_q5_K *)w + i;
    const block_q8_K *y = (const block_q8_K *)act + i;
    for (int e = 0; e < QK_K; e++) {
        int sc, m;
        scale_min_k4(e / 32, x->scales, &sc, &m);
        const int q = q4_K_quant(x->qs, e) | (((x->qh[e % 32] >> (e / 32)) & 1) << 4);
        add_lane(b, e, sc * q * y->qs[e]);
    }
    k4_mins(x->scales, y, b);
    b->dx = fp16_to_fp32(x->d);
    b->mx = fp16_to_fp32(x->dmin);
    b->dy = y->d;
}

static void ints_q6_K(const void *w, const void *act, int64_t i, block_ints *b) {
    const block_q6_K *x = (const block_q6_K *)w + i;
    const block_q8_K *y = (const block_q8_K *)act + i;
    for (int e = 0; e < QK_K; e++) add_lane(b, e, x->scales[e / 16] * q6_K_quant(x, e) * y->qs[e]);
    for (int l = 0; l < 8; l++)          /* the bias 32, through the bsums: lane l, groups 2l, 2l+1 */
        b->lane[l] -= 32 * (x->scales[2 * l] * y->bsums[2 * l] + x->scales[2 * l + 1] * y->bsums[2 * l + 1]);
    /* (Q6_K is never repacked on x86: part[] stays without the bias) */
    b->dx = fp16_to_fp32(x->d);
    b->dy = y->d;
}

/* ---------------------------------------------------------------- the float orders */

/* how each vec_dot kernel turns the lanes into floats (ggml_order.c draws them) */
typedef enum { FORM_Q0, FORM_Q1, FORM_IQ4_NL, FORM_Q2_K, FORM_K16, FORM_Q4_K, FORM_Q5_K } vec_dot_form;

typedef struct {
    int type;
    int block_size;
    block_ints_fn block;
    vec_dot_form form;
    int has_min;         /* a min term apart from the lanes (Q2_K, Q4_K, Q5_K) */
    int gemm_steps;      /* GEMM chain steps per block: Q4_K 4 (of 64), Q2_K 2 (of 128) */
} quant_ref;

static const quant_ref quant_refs[] = {
    {GGML_TYPE_Q4_0, 32, ints_q4_0, FORM_Q0, 0, 1},
    {GGML_TYPE_Q4_1, 32, ints_q4_1, FORM_Q1, 0, 1},
    {GGML_TYPE_Q5_0, 32, ints_q5_0, FORM_Q0, 0, 1},
    {GGML_TYPE_Q5_1, 32, ints_q5_1, FORM_Q1, 0, 1},
    {GGML_TYPE_Q8_0, 32, ints_q8_0, FORM_Q0, 0, 1},
    {GGML_TYPE_IQ4_NL, 32, ints_iq4_nl, FORM_IQ4_NL, 0, 1},
    {GGML_TYPE_Q2_K, QK_K, ints_q2_K, FORM_Q2_K, 1, 2},
    {GGML_TYPE_Q3_K, QK_K, ints_q3_K, FORM_K16, 0, 1},
    {GGML_TYPE_Q4_K, QK_K, ints_q4_K, FORM_Q4_K, 1, 4},
    {GGML_TYPE_Q5_K, QK_K, ints_q5_K, FORM_Q5_K, 1, 1},
    {GGML_TYPE_Q6_K, QK_K, ints_q6_K, FORM_K16, 0, 1},
};

/* _mm256 hsum of arch/x86/quants.c: halves added, then pairs, then the two */
static inline float hsum8(const float a[8]) {
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

static inline int32_t sum_lanes(const int32_t v[8]) {
    uint32_t s = 0;
    for (int l = 0; l < 8; l++) s += (uint32_t)v[l];
    return (int32_t)s;
}

static float quant_product(const quant_ref *q, product_order order, int64_t k, const void *w,
                           const void *act) {
    const int64_t nb = k / q->block_size;
    vec_dot_form form = q->form;
    if (order == ORDER_TINYBLAS) form = FORM_Q0;          /* one accumulator, whatever the type */
    float acc[8] = {0}, acc2[8] = {0}, accm[4] = {0};
    float chain = 0.0f, chain_min = 0.0f, extra = 0.0f, tail_d = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        block_ints b;
        memset(&b, 0, sizeof b);
        q->block(w, act, i, &b);
        if (order == ORDER_GEMV || order == ORDER_GEMM) {   /* repack.cpp */
            const int steps = order == ORDER_GEMM ? q->gemm_steps : 1;
            for (int s = 0; s < steps; s++) {               /* step s: parts and min lanes of it */
                int32_t isum = 0, imin = 0;
                for (int p = 4 * s / steps; p < 4 * (s + 1) / steps; p++) isum += b.part[p];
                const int n_min = q->type == GGML_TYPE_Q2_K ? 8 : 4;
                for (int l = n_min * s / steps; l < n_min * (s + 1) / steps; l++) imin += b.min[l];
                if (steps == 1) isum = sum_lanes(b.lane);
                chain = fmaf((float)isum, b.dx * b.dy, chain);
                if (q->has_min) chain_min = fmaf((float)imin, b.mx * b.dy, chain_min);
            }
            continue;
        }
        if (order == ORDER_TILED) {                         /* tiled-kernel.cpp's microtile */
            float r = (float)sum_lanes(b.lane) * b.dx;
            if (q->has_min) r = fmaf(-b.mx, (float)sum_lanes(b.min), r);
            chain = fmaf(r, b.dy, chain);
            continue;
        }
        const float d = b.dy * b.dx, dmin = -b.dy * b.mx;
        switch (form) {
        case FORM_Q0:
        case FORM_K16:
            for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)b.lane[l], acc[l]);
            break;
        case FORM_Q1:                                       /* m s: exact, fp16 times fp16 */
            for (int l = 0; l < 8; l++) acc[l] = fmaf((float)b.lane[l], b.dx * b.dy, acc[l]);
            extra = fmaf(b.mx, b.sy, extra);
            break;
        case FORM_IQ4_NL:                                   /* blocks in pairs; an odd last alone */
            if (i % 2 == 0 && i + 1 == nb) {
                tail_d = d;
                extra = (float)sum_lanes(b.lane);
            } else
                for (int l = 0; l < 8; l++) {
                    float *a = i % 2 ? acc2 : acc;
                    a[l] = fmaf(d, (float)b.lane[l], a[l]);
                }
            break;
        case FORM_Q2_K:                                     /* the mins first */
            for (int l = 0; l < 8; l++) {
                acc[l] = fmaf(dmin, (float)b.min[l], acc[l]);
                acc[l] = fmaf(d, (float)b.lane[l], acc[l]);
            }
            break;
        case FORM_Q4_K:
            for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)b.lane[l], acc[l]);
            for (int p = 0; p < 4; p++) accm[p] = fmaf(dmin, (float)b.min[p], accm[p]);
            break;
        case FORM_Q5_K:
            for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)b.lane[l], acc[l]);
            extra = fmaf(dmin, (float)(b.min[0] + b.min[1] + b.min[2] + b.min[3]), extra);
            break;
        }
    }
    if (order == ORDER_GEMV || order == ORDER_GEMM) return q->has_min ? chain - chain_min : chain;
    if (order == ORDER_TILED) return chain;
    switch (form) {
    case FORM_Q1:
    case FORM_Q5_K: return hsum8(acc) + extra;
    case FORM_IQ4_NL: {
        float both[8];
        for (int l = 0; l < 8; l++) both[l] = acc[l] + acc2[l];
        return nb % 2 ? add_scalar_tail(hsum8(both), tail_d, extra) : hsum8(both);
    }
    case FORM_Q4_K: return hsum8(acc) + ((accm[0] + accm[2]) + (accm[1] + accm[3]));
    default: return hsum8(acc);
    }
}

static const quant_ref *quant_ref_of(int type) {
    for (size_t i = 0; i < sizeof quant_refs / sizeof quant_refs[0]; i++)
        if (quant_refs[i].type == type) return &quant_refs[i];
    return NULL;
}

typedef float (*float_dot_fn)(int64_t k, const void *w, const void *act);

static float_dot_fn float_dot_of(int type) {
    switch (type) {
    case GGML_TYPE_F32: return dot_f32;
    case GGML_TYPE_F16: return dot_f16;
    case GGML_TYPE_BF16: return dot_bf16;
    default: return NULL;
    }
}

float ref_dot(int type, product_order order, int64_t k, const void *w, const void *act) {
    const quant_ref *q = quant_ref_of(type);
    return q ? quant_product(q, order, k, w, act) : float_dot_of(type)(k, w, act);
}

/* ================================================================ the table */

static void ref_rows(int type, product_order order, int64_t k, const void *w, int64_t w_stride,
                     int n_rows, const void *act, int64_t act_stride, int n_act, float *out,
                     int64_t ldo) {
    for (int t = 0; t < n_act; t++)
        for (int j = 0; j < n_rows; j++)
            out[t * ldo + j] = ref_dot(type, order, k, (const char *)w + j * w_stride,
                                       (const char *)act + t * act_stride);
}

/* name##_<order>: product_fn of one type and order */
#define REF_PRODUCT(name, order, T, ORDER)                                                   \
    static void name##_##order(int64_t k, const void *w, int64_t ws, int nr, const void *a,  \
                               int64_t as, int na, float *o, int64_t ldo) {                 \
        ref_rows(T, ORDER, k, w, ws, nr, a, as, na, o, ldo);                                 \
    }
#define REF_PRODUCTS(name, T)                                                                \
    REF_PRODUCT(name, vec_dot, T, ORDER_VEC_DOT)                                             \
    REF_PRODUCT(name, tinyblas, T, ORDER_TINYBLAS)                                           \
    REF_PRODUCT(name, gemv, T, ORDER_GEMV)                                                   \
    REF_PRODUCT(name, gemm, T, ORDER_GEMM)                                                   \
    REF_PRODUCT(name, tiled, T, ORDER_TILED)
REF_PRODUCTS(f32, GGML_TYPE_F32)
REF_PRODUCTS(f16, GGML_TYPE_F16)
REF_PRODUCTS(bf16, GGML_TYPE_BF16)
REF_PRODUCTS(q4_0, GGML_TYPE_Q4_0)
REF_PRODUCTS(q4_1, GGML_TYPE_Q4_1)
REF_PRODUCTS(q5_0, GGML_TYPE_Q5_0)
REF_PRODUCTS(q5_1, GGML_TYPE_Q5_1)
REF_PRODUCTS(q8_0, GGML_TYPE_Q8_0)
REF_PRODUCTS(iq4_nl, GGML_TYPE_IQ4_NL)
REF_PRODUCTS(q2_K, GGML_TYPE_Q2_K)
REF_PRODUCTS(q3_K, GGML_TYPE_Q3_K)
REF_PRODUCTS(q4_K, GGML_TYPE_Q4_K)
REF_PRODUCTS(q5_K, GGML_TYPE_Q5_K)
REF_PRODUCTS(q6_K, GGML_TYPE_Q6_K)

#define ROW(T, bs, ts, act, name)                                                            \
    {GGML_TYPE_##T, bs, ts, act, dequant_##name,                                             \
     {name##_vec_dot, name##_tinyblas, name##_gemv, name##_gemm, name##_tiled}}
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
    {GGML_TYPE_Q8_1, QK8_1, 36, -1, NULL, {NULL}},
    {GGML_TYPE_Q8_K, QK_K, 292, -1, NULL, {NULL}},
};

const type_traits *ref_traits(int type) {
    for (size_t i = 0; i < sizeof ref_table / sizeof ref_table[0]; i++)
        if (ref_table[i].type == type) return &ref_table[i];
    return NULL;
}

/* quants_ref.c -- the scalar reference of every weight type, in ggml's `_ref` style.
 *
 * Per type, in one place: dequantize_row_<type>, block_lanes_<type> (the exact integers
 * of one block times its activation block) and vec_dot_<type>_<act>_ref (ggml's vec_dot
 * of that type: how those integers meet the float scales).  The other kernels llama.cpp
 * may run instead of vec_dot (tinyBLAS, repack's gemv and gemm, the tiled matmul) sum
 * the same integers in orders of their own, one function each, with the type's
 * block_lanes as a parameter: dot_8_lanes, dot_repack, dot_tiled.  Then the activation
 * quantizers and the type table.
 *
 * These functions define what the fast kernels (quants_avx2.c, panels_avx2.c)
 * compute, bit for bit.  They follow ggml's formulas in the order ggml and gguf-py
 * evaluate them, so that dequantization is bit-exact; the library is built with
 * -ffp-contract=off so that `d * q - m` is never fused into one rounding, and the
 * products call fmaf() wherever ggml's kernels fuse.  Block layouts are drawn in
 * ggml_blocks.h, the float orders in ggml_order.c.
 */
#include <math.h>

#include "cpu_internal.h"

const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                  1, 13, 25, 38, 53, 69, 89, 113};
/* the 16 E2M1 values (0 0.5 1 1.5 2 3 4 6 and negatives), doubled: ggml's kvalues_mxfp4 */
const int8_t kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* ================================================================ the float orders
 * of the kernels that take any type's lanes (ggml_order.c draws each) */

/* 8 float lanes, lanes = fma(d d_y, (float) lanes_b, lanes), then ggml's hsum: tinyBLAS
 * for every type it serves, and the vec_dot of Q4_0, Q5_0, Q8_0, Q3_K and Q6_K */
static float dot_8_lanes(int64_t k, int block_size, block_lanes_fn lanes_of, const void *w,
                         const void *act) {
    float acc[8] = {0};
    for (int64_t i = 0; i < k / block_size; i++) {
        const block_lanes b = lanes_of(w, act, i);
        const float d = b.d_y * b.d;
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)b.lane[l], acc[l]);
    }
    return hsum8(acc);
}

/* repack.cpp's gemv (steps = 1) and gemm (steps per block: 64 elements of Q4_K, 128 of
 * Q2_K, a whole block otherwise): one float chain per output, the min term in a second
 * chain subtracted at the end */
static float dot_repack(int64_t k, int block_size, block_lanes_fn lanes_of, int steps,
                        const void *w, const void *act) {
    float acc = 0.0f, acc_min = 0.0f;
    int has_min = 0;
    for (int64_t i = 0; i < k / block_size; i++) {
        const block_lanes b = lanes_of(w, act, i);
        has_min = b.n_min > 0;
        for (int s = 0; s < steps; s++) {          /* step s: its parts and its min lanes */
            int32_t isum = 0, imin = 0;
            for (int p = 4 * s / steps; p < 4 * (s + 1) / steps; p++) isum = wrapping_add(isum, b.part[p]);
            for (int l = b.n_min * s / steps; l < b.n_min * (s + 1) / steps; l++) imin = wrapping_add(imin, b.min[l]);
            acc = fmaf((float)isum, b.d * b.d_y, acc);
            if (has_min) acc_min = fmaf((float)imin, b.dmin * b.d_y, acc_min);
        }
    }
    return has_min ? acc - acc_min : acc;
}

/* tiled/tiled.cpp's microtile: one chain per output, acc = fma(isum d - dmin imin, d_y, acc) */
static float dot_tiled(int64_t k, int block_size, block_lanes_fn lanes_of, const void *w,
                       const void *act) {
    float acc = 0.0f;
    for (int64_t i = 0; i < k / block_size; i++) {
        const block_lanes b = lanes_of(w, act, i);
        float r = (float)sum_lanes(b.lane) * b.d;
        if (b.n_min) r = fmaf(-b.dmin, (float)sum_lanes(b.min), r);
        acc = fmaf(r, b.d_y, acc);
    }
    return acc;
}

/* ================================================================ F32, F16, BF16
 * Products with float32 activations, summed in double: not ggml's order (ggml converts
 * the activations to the weight type first, ggml_order.c). */

static inline float f32_at(const void *w, int64_t i) { return ((const float *)w)[i]; }
static inline float f16_at(const void *w, int64_t i) { return fp16_to_fp32(((const ggml_half *)w)[i]); }
static inline float bf16_at(const void *w, int64_t i) { return bf16_to_fp32(((const uint16_t *)w)[i]); }

static float dot_in_double(int64_t k, float (*weight_at)(const void *, int64_t), const void *w,
                           const float *y) {
    double sum = 0.0;
    for (int64_t i = 0; i < k; i++) sum += (double)weight_at(w, i) * y[i];
    return (float)sum;
}

static void dequantize_row_f32(const void *w, float *y, int64_t k) { memcpy(y, w, (size_t)k * 4); }
static void dequantize_row_f16(const void *w, float *y, int64_t k) {
    for (int64_t i = 0; i < k; i++) y[i] = f16_at(w, i);
}
static void dequantize_row_bf16(const void *w, float *y, int64_t k) {
    for (int64_t i = 0; i < k; i++) y[i] = bf16_at(w, i);
}

static float vec_dot_f32_f32_ref(int64_t k, const void *w, const void *act) { return dot_in_double(k, f32_at, w, act); }
static float vec_dot_f16_f32_ref(int64_t k, const void *w, const void *act) { return dot_in_double(k, f16_at, w, act); }
static float vec_dot_bf16_f32_ref(int64_t k, const void *w, const void *act) { return dot_in_double(k, bf16_at, w, act); }

/* ================================================================ 32-element blocks
 * Nibble order: qs[j] low nibble = element j, high nibble = element j + 16. */

static inline int q4_quant(const uint8_t *qs, int e) { return e < 16 ? qs[e] & 0x0F : qs[e - 16] >> 4; }

/* 5-bit quants: the nibble, and bit e of the little-endian u32 qh as the 5th bit */
static inline int q5_quant(const uint8_t *qs, const uint8_t *qh, int e) {
    uint32_t h;
    memcpy(&h, qh, 4);
    return q4_quant(qs, e) | (int)(((h >> e) & 1) << 4);
}

/* Q4_1 and Q5_1 (ggml_vec_dot_q4_1_q8_1, q5_1): lanes = fma(lanes_b, d d_y, lanes); the
 * min term m s_y summed apart (exact: fp16 times fp16); hsum(lanes) + it */
static float dot_8_lanes_plus_m(int64_t k, block_lanes_fn lanes_of, const void *w, const void *act) {
    float acc[8] = {0}, summs = 0.0f;
    for (int64_t i = 0; i < k / 32; i++) {
        const block_lanes b = lanes_of(w, act, i);
        for (int l = 0; l < 8; l++) acc[l] = fmaf((float)b.lane[l], b.d * b.d_y, acc[l]);
        summs = fmaf(b.m, b.s_y, summs);
    }
    return hsum8(acc) + summs;
}

/* ---------------------------------------------------------------- Q4_0: y = d * (q - 8) */

static void dequantize_row_q4_0(const void *w, float *y, int64_t k) {
    const block_q4_0 *x = w;
    for (int64_t i = 0; i < k / QK4_0; i++, y += QK4_0) {
        const float d = fp16_to_fp32(x[i].d);
        for (int e = 0; e < QK4_0; e++) y[e] = d * (q4_quant(x[i].qs, e) - 8);
    }
}

static block_lanes block_lanes_q4_0(const void *w, const void *act, int64_t i) {
    const block_q4_0 *x = (const block_q4_0 *)w + i;
    const block_q8_0 *y = (const block_q8_0 *)act + i;
    block_lanes b = {.d = fp16_to_fp32(x->d), .d_y = fp16_to_fp32(y->d)};
    for (int e = 0; e < QK4_0; e++) add_lane(&b, e, (q4_quant(x->qs, e) - 8) * y->qs[e]);
    return b;
}

static float vec_dot_q4_0_q8_0_ref(int64_t k, const void *w, const void *act) {
    return dot_8_lanes(k, QK4_0, block_lanes_q4_0, w, act);
}

/* ---------------------------------------------------------------- Q4_1: y = d * q + m */

static void dequantize_row_q4_1(const void *w, float *y, int64_t k) {
    const block_q4_1 *x = w;
    for (int64_t i = 0; i < k / QK4_1; i++, y += QK4_1) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        for (int e = 0; e < QK4_1; e++) y[e] = d * q4_quant(x[i].qs, e) + m;
    }
}

static block_lanes block_lanes_q4_1(const void *w, const void *act, int64_t i) {
    const block_q4_1 *x = (const block_q4_1 *)w + i;
    const block_q8_1 *y = (const block_q8_1 *)act + i;
    block_lanes b = {.d = fp16_to_fp32(x->d), .m = fp16_to_fp32(x->m),
                     .d_y = fp16_to_fp32(y->d), .s_y = fp16_to_fp32(y->s)};
    for (int e = 0; e < QK4_1; e++) add_lane(&b, e, q4_quant(x->qs, e) * y->qs[e]);
    return b;
}

static float vec_dot_q4_1_q8_1_ref(int64_t k, const void *w, const void *act) {
    return dot_8_lanes_plus_m(k, block_lanes_q4_1, w, act);
}

/* ---------------------------------------------------------------- Q5_0: y = d * (q - 16) */

static void dequantize_row_q5_0(const void *w, float *y, int64_t k) {
    const block_q5_0 *x = w;
    for (int64_t i = 0; i < k / QK5_0; i++, y += QK5_0) {
        const float d = fp16_to_fp32(x[i].d);
        for (int e = 0; e < QK5_0; e++) y[e] = d * (q5_quant(x[i].qs, x[i].qh, e) - 16);
    }
}

static block_lanes block_lanes_q5_0(const void *w, const void *act, int64_t i) {
    const block_q5_0 *x = (const block_q5_0 *)w + i;
    const block_q8_0 *y = (const block_q8_0 *)act + i;
    block_lanes b = {.d = fp16_to_fp32(x->d), .d_y = fp16_to_fp32(y->d)};
    for (int e = 0; e < QK5_0; e++) add_lane(&b, e, (q5_quant(x->qs, x->qh, e) - 16) * y->qs[e]);
    return b;
}

static float vec_dot_q5_0_q8_0_ref(int64_t k, const void *w, const void *act) {
    return dot_8_lanes(k, QK5_0, block_lanes_q5_0, w, act);
}

/* ---------------------------------------------------------------- Q5_1: y = d * q + m */

static void dequantize_row_q5_1(const void *w, float *y, int64_t k) {
    const block_q5_1 *x = w;
    for (int64_t i = 0; i < k / QK5_1; i++, y += QK5_1) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        for (int e = 0; e < QK5_1; e++) y[e] = d * q5_quant(x[i].qs, x[i].qh, e) + m;
    }
}

static block_lanes block_lanes_q5_1(const void *w, const void *act, int64_t i) {
    const block_q5_1 *x = (const block_q5_1 *)w + i;
    const block_q8_1 *y = (const block_q8_1 *)act + i;
    block_lanes b = {.d = fp16_to_fp32(x->d), .m = fp16_to_fp32(x->m),
                     .d_y = fp16_to_fp32(y->d), .s_y = fp16_to_fp32(y->s)};
    for (int e = 0; e < QK5_1; e++) add_lane(&b, e, q5_quant(x->qs, x->qh, e) * y->qs[e]);
    return b;
}

static float vec_dot_q5_1_q8_1_ref(int64_t k, const void *w, const void *act) {
    return dot_8_lanes_plus_m(k, block_lanes_q5_1, w, act);
}

/* ---------------------------------------------------------------- Q8_0: y = d * q */

static void dequantize_row_q8_0(const void *w, float *y, int64_t k) {
    const block_q8_0 *x = w;
    for (int64_t i = 0; i < k / QK8_0; i++, y += QK8_0) {
        const float d = fp16_to_fp32(x[i].d);
        for (int e = 0; e < QK8_0; e++) y[e] = x[i].qs[e] * d;
    }
}

static block_lanes block_lanes_q8_0(const void *w, const void *act, int64_t i) {
    const block_q8_0 *x = (const block_q8_0 *)w + i;
    const block_q8_0 *y = (const block_q8_0 *)act + i;
    block_lanes b = {.d = fp16_to_fp32(x->d), .d_y = fp16_to_fp32(y->d)};
    for (int e = 0; e < QK8_0; e++) add_lane(&b, e, x->qs[e] * y->qs[e]);
    return b;
}

static float vec_dot_q8_0_q8_0_ref(int64_t k, const void *w, const void *act) {
    return dot_8_lanes(k, QK8_0, block_lanes_q8_0, w, act);
}

/* ---------------------------------------------------------------- IQ4_NL: y = d * kvalues_iq4nl[q] */

static void dequantize_row_iq4_nl(const void *w, float *y, int64_t k) {
    const block_iq4_nl *x = w;
    for (int64_t i = 0; i < k / QK4_NL; i++, y += QK4_NL) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {        /* both nibbles of a byte: no branch, unrolled */
            y[j] = d * kvalues_iq4nl[x[i].qs[j] & 0x0F];
            y[j + QK4_NL / 2] = d * kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

static block_lanes block_lanes_iq4_nl(const void *w, const void *act, int64_t i) {
    const block_iq4_nl *x = (const block_iq4_nl *)w + i;
    const block_q8_0 *y = (const block_q8_0 *)act + i;
    block_lanes b = {.d = fp16_to_fp32(x->d), .d_y = fp16_to_fp32(y->d)};
    for (int e = 0; e < QK4_NL; e++) add_lane(&b, e, kvalues_iq4nl[q4_quant(x->qs, e)] * y->qs[e]);
    return b;
}

/* ggml_vec_dot_iq4_nl_q8_0 and _mxfp4_q8_0: even and odd blocks in two sets of lanes, hsum
 * of their sum; an odd last block alone, d (float) sum added after it, a scalar tail that
 * GCC fuses or not (add_scalar_tail) */
static float dot_paired(int64_t k, block_lanes_fn lanes_of, const void *w, const void *act) {
    const int64_t nb = k / 32;
    float acc[2][8] = {{0}};
    for (int64_t i = 0; i < nb - nb % 2; i++) {
        const block_lanes b = lanes_of(w, act, i);
        const float d = b.d_y * b.d;
        for (int l = 0; l < 8; l++) acc[i % 2][l] = fmaf(d, (float)b.lane[l], acc[i % 2][l]);
    }
    float both[8];
    for (int l = 0; l < 8; l++) both[l] = acc[0][l] + acc[1][l];
    if (nb % 2 == 0) return hsum8(both);
    const block_lanes last = lanes_of(w, act, nb - 1);
    return add_scalar_tail(hsum8(both), last.d_y * last.d, (float)sum_lanes(last.lane));
}

static float vec_dot_iq4_nl_q8_0_ref(int64_t k, const void *w, const void *act) {
    return dot_paired(k, block_lanes_iq4_nl, w, act);
}

/* ---------------------------------------------------------------- MXFP4: y = kvalues_mxfp4[q] * 2^(e - 128)
 * IQ4_NL's packing and products with another table and an E8M0 scale (e8m0_to_fp32_half) */

static void dequantize_row_mxfp4(const void *w, float *y, int64_t k) {
    const block_mxfp4 *x = w;
    for (int64_t i = 0; i < k / QK_MXFP4; i++, y += QK_MXFP4) {
        const float d = e8m0_to_fp32_half(x[i].e);
        for (int e = 0; e < QK_MXFP4; e++) y[e] = d * kvalues_mxfp4[q4_quant(x[i].qs, e)];
    }
}

static block_lanes block_lanes_mxfp4(const void *w, const void *act, int64_t i) {
    const block_mxfp4 *x = (const block_mxfp4 *)w + i;
    const block_q8_0 *y = (const block_q8_0 *)act + i;
    block_lanes b = {.d = e8m0_to_fp32_half(x->e), .d_y = fp16_to_fp32(y->d)};
    for (int e = 0; e < QK_MXFP4; e++) add_lane(&b, e, kvalues_mxfp4[q4_quant(x->qs, e)] * y->qs[e]);
    return b;
}

static float vec_dot_mxfp4_q8_0_ref(int64_t k, const void *w, const void *act) {
    return dot_paired(k, block_lanes_mxfp4, w, act);
}

/* ================================================================ K-quants, 256-element super-blocks
 * Element e of a super-block lives in half h = e / 128, slice j = (e % 128) / 32 and
 * lane l = e % 32; Q2_K and Q3_K keep its 2 low bits at bits 2j..2j+1 of qs[32h + l]. */

static inline int q2_bits(const uint8_t *qs, int e) {
    return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

/* ---------------------------------------------------------------- Q2_K
 * y = d * (sc & 15) * q - dmin * (sc >> 4), sc = scales[e / 16], q in 0..3 */

static void dequantize_row_q2_K(const void *w, float *y, int64_t k) {
    const block_q2_K *x = w;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
        for (int e = 0; e < QK_K; e++, y++) {
            const int sc = x[i].scales[e / 16];
            const float dl = d * (sc & 0x0F), ml = dmin * (sc >> 4);
            *y = dl * q2_bits(x[i].qs, e) - ml;
        }
    }
}

static block_lanes block_lanes_q2_K(const void *w, const void *act, int64_t i) {
    const block_q2_K *x = (const block_q2_K *)w + i;
    const block_q8_K *y = (const block_q8_K *)act + i;
    block_lanes b = {.n_min = 8, .d = fp16_to_fp32(x->d), .dmin = fp16_to_fp32(x->dmin), .d_y = y->d};
    for (int e = 0; e < QK_K; e++) add_lane(&b, e, (x->scales[e / 16] & 0x0F) * q2_bits(x->qs, e) * y->qs[e]);
    for (int l = 0; l < 8; l++)          /* mins times bsums, pairs of groups: _mm256_madd_epi16 */
        b.min[l] = (x->scales[2 * l] >> 4) * y->bsums[2 * l] + (x->scales[2 * l + 1] >> 4) * y->bsums[2 * l + 1];
    return b;
}

/* ggml_vec_dot_q2_K_q8_K: per block the min lanes first, lanes = fma(-d_y dmin, min_b,
 * lanes), then lanes = fma(d_y d, lanes_b, lanes); hsum */
static float vec_dot_q2_K_q8_K_ref(int64_t k, const void *w, const void *act) {
    float acc[8] = {0};
    for (int64_t i = 0; i < k / QK_K; i++) {
        const block_lanes b = block_lanes_q2_K(w, act, i);
        const float d = b.d_y * b.d, dmin = -b.d_y * b.dmin;
        for (int l = 0; l < 8; l++) {
            acc[l] = fmaf(dmin, (float)b.min[l], acc[l]);
            acc[l] = fmaf(d, (float)b.lane[l], acc[l]);
        }
    }
    return hsum8(acc);
}

/* ---------------------------------------------------------------- Q3_K
 * y = d * (S - 32) * (L - 4): S a 6-bit scale per 16 elements, L = 2 low bits | hmask bit << 2 */

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
    const int hb = (x->hmask[e % 32] >> (e / 32)) & 1;
    return q2_bits(x->qs, e) + 4 * hb - 4;
}

static void dequantize_row_q3_K(const void *w, float *y, int64_t k) {
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

/* the quant's bias of 4 stays in each lane: ggml subtracts 4 q8 where the high bit is clear */
static block_lanes block_lanes_q3_K(const void *w, const void *act, int64_t i) {
    const block_q3_K *x = (const block_q3_K *)w + i;
    const block_q8_K *y = (const block_q8_K *)act + i;
    block_lanes b = {.d = fp16_to_fp32(x->d), .d_y = y->d};
    int8_t s[16];
    q3_K_scales(x->scales, s);
    for (int e = 0; e < QK_K; e++) add_lane(&b, e, s[e / 16] * q3_K_quant(x, e) * y->qs[e]);
    return b;
}

/* ggml_vec_dot_q3_K_q8_K: lanes = fma(d_y d, lanes_b, lanes); hsum */
static float vec_dot_q3_K_q8_K_ref(int64_t k, const void *w, const void *act) {
    return dot_8_lanes(k, QK_K, block_lanes_q3_K, w, act);
}

/* ---------------------------------------------------------------- Q4_K and Q5_K
 * y = d * sc_j * q - dmin * m_j, j = e / 32 the sub-block; q in 0..15 (Q5_K: 0..31) */

/* 6-bit scale and min of sub-block j (ggml's get_scale_min_k4):
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

/* Q5_K: the same, with the 5th bit of element e at bit e / 32 of qh[e % 32] */
static inline int q5_K_quant(const uint8_t *qs, const uint8_t *qh, int e) {
    return q4_K_quant(qs, e) | (((qh[e % 32] >> (e / 32)) & 1) << 4);
}

/* y = d1 * q - m1 for each element of each sub-block; qh NULL for Q4_K */
static void dequantize_block_k4(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                              float d, float dmin, float *y) {
    for (int j = 0; j < QK_K / 32; j++) {
        int sc, m;
        scale_min_k4(j, scales, &sc, &m);
        const float d1 = d * sc, m1 = dmin * m;
        for (int e = 32 * j; e < 32 * j + 32; e++) *y++ = d1 * (qh ? q5_K_quant(qs, qh, e) : q4_K_quant(qs, e)) - m1;
    }
}

static void dequantize_row_q4_K(const void *w, float *y, int64_t k) {
    const block_q4_K *x = w;
    for (int64_t i = 0; i < k / QK_K; i++, y += QK_K)
        dequantize_block_k4(x[i].scales, x[i].qs, NULL, fp16_to_fp32(x[i].d), fp16_to_fp32(x[i].dmin), y);
}

static void dequantize_row_q5_K(const void *w, float *y, int64_t k) {
    const block_q5_K *x = w;
    for (int64_t i = 0; i < k / QK_K; i++, y += QK_K)
        dequantize_block_k4(x[i].scales, x[i].qs, x[i].qh, fp16_to_fp32(x[i].d), fp16_to_fp32(x[i].dmin), y);
}

/* the lanes of Q4_K (qh NULL) and Q5_K; the min term in 4 lanes, lane p = m_2p bsum32_2p
 * + m_2p+1 bsum32_2p+1 (bsum32_j = bsums[2j] + bsums[2j+1], the sum of sub-block j's
 * activation quants) */
static void lanes_k4(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, const block_q8_K *y,
                     block_lanes *b) {
    int sc[8], m[8];
    for (int j = 0; j < 8; j++) scale_min_k4(j, scales, &sc[j], &m[j]);
    for (int e = 0; e < QK_K; e++)
        add_lane(b, e, sc[e / 32] * (qh ? q5_K_quant(qs, qh, e) : q4_K_quant(qs, e)) * y->qs[e]);
    for (int p = 0; p < 4; p++)
        b->min[p] = m[2 * p] * (y->bsums[4 * p] + y->bsums[4 * p + 1])
                  + m[2 * p + 1] * (y->bsums[4 * p + 2] + y->bsums[4 * p + 3]);
    b->n_min = 4;
}

static block_lanes block_lanes_q4_K(const void *w, const void *act, int64_t i) {
    const block_q4_K *x = (const block_q4_K *)w + i;
    const block_q8_K *y = (const block_q8_K *)act + i;
    block_lanes b = {.d = fp16_to_fp32(x->d), .dmin = fp16_to_fp32(x->dmin), .d_y = y->d};
    lanes_k4(x->scales, x->qs, NULL, y, &b);
    return b;
}

static block_lanes block_lanes_q5_K(const void *w, const void *act, int64_t i) {
    const block_q5_K *x = (const block_q5_K *)w + i;
    const block_q8_K *y = (const block_q8_K *)act + i;
    block_lanes b = {.d = fp16_to_fp32(x->d), .dmin = fp16_to_fp32(x->dmin), .d_y = y->d};
    lanes_k4(x->scales, x->qs, x->qh, y, &b);
    return b;
}

/* ggml_vec_dot_q4_K_q8_K: lanes = fma(d_y d, lanes_b, lanes); the 4 min lanes in 4 float
 * lanes of their own, fma(-d_y dmin, min_b, .); hsum(lanes) + ((m0 + m2) + (m1 + m3)) */
static float vec_dot_q4_K_q8_K_ref(int64_t k, const void *w, const void *act) {
    float acc[8] = {0}, acc_m[4] = {0};
    for (int64_t i = 0; i < k / QK_K; i++) {
        const block_lanes b = block_lanes_q4_K(w, act, i);
        const float d = b.d_y * b.d, dmin = -b.d_y * b.dmin;
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)b.lane[l], acc[l]);
        for (int p = 0; p < 4; p++) acc_m[p] = fmaf(dmin, (float)b.min[p], acc_m[p]);
    }
    return hsum8(acc) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]));
}

/* ggml_vec_dot_q5_K_q8_K: lanes as Q4_K; the 4 min lanes summed as integers,
 * s = fma(-d_y dmin, (float) sum, s); hsum(lanes) + s */
static float vec_dot_q5_K_q8_K_ref(int64_t k, const void *w, const void *act) {
    float acc[8] = {0}, summs = 0.0f;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const block_lanes b = block_lanes_q5_K(w, act, i);
        const float d = b.d_y * b.d, dmin = -b.d_y * b.dmin;
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)b.lane[l], acc[l]);
        summs = fmaf(dmin, (float)(b.min[0] + b.min[1] + b.min[2] + b.min[3]), summs);
    }
    return hsum8(acc) + summs;
}

/* ---------------------------------------------------------------- Q6_K
 * y = d * scales[e / 16] * (q - 32), q in 0..63 */

/* element e: low 4 bits from ql[64h + l + 32*(j&1)] nibble j>>1, high 2 bits at bits 2j
 * of qh[32h + l] (h, j, l as for Q2_K) */
static inline int q6_K_quant(const block_q6_K *x, int e) {
    const int h = e / 128, j = (e % 128) / 32, l = e % 32;
    const int low4 = (x->ql[64 * h + l + 32 * (j & 1)] >> (4 * (j >> 1))) & 0x0F;
    const int hi2 = (x->qh[32 * h + l] >> (2 * j)) & 3;
    return low4 | (hi2 << 4);
}

static void dequantize_row_q6_K(const void *w, float *y, int64_t k) {
    const block_q6_K *x = w;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = fp16_to_fp32(x[i].d);
        for (int e = 0; e < QK_K; e++, y++) {
            const float dl = d * x[i].scales[e / 16];
            *y = dl * (q6_K_quant(&x[i], e) - 32);
        }
    }
}

/* the bias 32 comes off through the bsums: lane l, groups 2l and 2l+1 (64 elements: part l/2) */
static block_lanes block_lanes_q6_K(const void *w, const void *act, int64_t i) {
    const block_q6_K *x = (const block_q6_K *)w + i;
    const block_q8_K *y = (const block_q8_K *)act + i;
    block_lanes b = {.d = fp16_to_fp32(x->d), .d_y = y->d};
    for (int e = 0; e < QK_K; e++) add_lane(&b, e, x->scales[e / 16] * q6_K_quant(x, e) * y->qs[e]);
    for (int l = 0; l < 8; l++) {
        const int32_t bias = 32 * (x->scales[2 * l] * y->bsums[2 * l] + x->scales[2 * l + 1] * y->bsums[2 * l + 1]);
        b.lane[l] = wrapping_add(b.lane[l], -bias);
        b.part[l / 2] = wrapping_add(b.part[l / 2], -bias);
    }
    return b;
}

/* ggml_vec_dot_q6_K_q8_K: lanes = fma(d_y d, lanes_b, lanes); hsum */
static float vec_dot_q6_K_q8_K_ref(int64_t k, const void *w, const void *act) {
    return dot_8_lanes(k, QK_K, block_lanes_q6_K, w, act);
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
        int32_t sum = 0;                                       /* wraps like vpaddd */
        for (int j = 0; j < 32; j++) {
            const int32_t lane = cvtps_lane(rintf(x[j] * id));
            qs[j] = (int8_t)(lane < -128 ? -128 : lane);       /* packs saturate */
            sum = wrapping_add(sum, lane);
        }
        if (with_sum) {
            ((block_q8_1 *)vy)[i].d = fp32_to_fp16(d);
            ((block_q8_1 *)vy)[i].s = fp32_to_fp16(d * (float)sum);
        } else {
            ((block_q8_0 *)vy)[i].d = fp32_to_fp16(d);
        }
    }
}

void quantize_row_q8_0(const float *x, void *y, int64_t k) { quantize_row_q8_01(x, y, k, 0); }
void quantize_row_q8_1(const float *x, void *y, int64_t k) { quantize_row_q8_01(x, y, k, 1); }

/* ggml's quantize_row_q4_0_ref (a Q4_0 kv cache's rows): d = max / -8, max the number of
 * largest magnitude with its sign (the first of equals), q = MIN(15, (int8_t)(x / d + 8.5))
 * with x / d as x * (1 / d), rounded before the add (no FMA) */
void quantize_row_q4_0_ref(const float *x, void *vy, int64_t k) {
    block_q4_0 *y = vy;
    for (int64_t i = 0; i < k / QK4_0; i++, x += QK4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const int8_t q0 = (int8_t)(int32_t)(x[j] * id + 8.5f);
            const int8_t q1 = (int8_t)(int32_t)(x[QK4_0 / 2 + j] * id + 8.5f);
            y[i].qs[j] = (uint8_t)((q0 < 15 ? q0 : 15) | (q1 < 15 ? q1 : 15) << 4);
        }
    }
}

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

/* ================================================================ the type table */

static const type_traits ref_table[] = {
    /* type, block size, block bytes, activations, dequantize, vec_dot, block lanes, gemm steps */
    {GGML_TYPE_F32, 1, 4, GGML_TYPE_F32, dequantize_row_f32, vec_dot_f32_f32_ref, NULL, 0},
    {GGML_TYPE_F16, 1, 2, GGML_TYPE_F32, dequantize_row_f16, vec_dot_f16_f32_ref, NULL, 0},
    {GGML_TYPE_BF16, 1, 2, GGML_TYPE_F32, dequantize_row_bf16, vec_dot_bf16_f32_ref, NULL, 0},
    {GGML_TYPE_Q4_0, QK4_0, 18, GGML_TYPE_Q8_0, dequantize_row_q4_0, vec_dot_q4_0_q8_0_ref, block_lanes_q4_0, 1},
    {GGML_TYPE_Q4_1, QK4_1, 20, GGML_TYPE_Q8_1, dequantize_row_q4_1, vec_dot_q4_1_q8_1_ref, block_lanes_q4_1, 1},
    {GGML_TYPE_Q5_0, QK5_0, 22, GGML_TYPE_Q8_0, dequantize_row_q5_0, vec_dot_q5_0_q8_0_ref, block_lanes_q5_0, 1},
    {GGML_TYPE_Q5_1, QK5_1, 24, GGML_TYPE_Q8_1, dequantize_row_q5_1, vec_dot_q5_1_q8_1_ref, block_lanes_q5_1, 1},
    {GGML_TYPE_Q8_0, QK8_0, 34, GGML_TYPE_Q8_0, dequantize_row_q8_0, vec_dot_q8_0_q8_0_ref, block_lanes_q8_0, 1},
    {GGML_TYPE_IQ4_NL, QK4_NL, 18, GGML_TYPE_Q8_0, dequantize_row_iq4_nl, vec_dot_iq4_nl_q8_0_ref, block_lanes_iq4_nl, 1},
    {GGML_TYPE_Q2_K, QK_K, 84, GGML_TYPE_Q8_K, dequantize_row_q2_K, vec_dot_q2_K_q8_K_ref, block_lanes_q2_K, 2},
    {GGML_TYPE_Q3_K, QK_K, 110, GGML_TYPE_Q8_K, dequantize_row_q3_K, vec_dot_q3_K_q8_K_ref, block_lanes_q3_K, 1},
    {GGML_TYPE_Q4_K, QK_K, 144, GGML_TYPE_Q8_K, dequantize_row_q4_K, vec_dot_q4_K_q8_K_ref, block_lanes_q4_K, 4},
    {GGML_TYPE_Q5_K, QK_K, 176, GGML_TYPE_Q8_K, dequantize_row_q5_K, vec_dot_q5_K_q8_K_ref, block_lanes_q5_K, 1},
    {GGML_TYPE_Q6_K, QK_K, 210, GGML_TYPE_Q8_K, dequantize_row_q6_K, vec_dot_q6_K_q8_K_ref, block_lanes_q6_K, 1},
    /* codebook i-quants (quants_iq_grid_ref.c) */
    {GGML_TYPE_IQ2_XXS, QK_K, 66, GGML_TYPE_Q8_K, dequantize_row_iq2_xxs, vec_dot_iq2_xxs_q8_K_ref, block_lanes_iq2_xxs, 1},
    {GGML_TYPE_IQ2_XS, QK_K, 74, GGML_TYPE_Q8_K, dequantize_row_iq2_xs, vec_dot_iq2_xs_q8_K_ref, block_lanes_iq2_xs, 1},
    {GGML_TYPE_IQ2_S, QK_K, 82, GGML_TYPE_Q8_K, dequantize_row_iq2_s, vec_dot_iq2_s_q8_K_ref, block_lanes_iq2_s, 1},
    {GGML_TYPE_IQ1_S, QK_K, 50, GGML_TYPE_Q8_K, dequantize_row_iq1_s, vec_dot_iq1_s_q8_K_ref, block_lanes_iq1_s, 1},
    {GGML_TYPE_IQ1_M, QK_K, 56, GGML_TYPE_Q8_K, dequantize_row_iq1_m, vec_dot_iq1_m_q8_K_ref, block_lanes_iq1_m, 1},
    {GGML_TYPE_MXFP4, QK_MXFP4, 17, GGML_TYPE_Q8_0, dequantize_row_mxfp4, vec_dot_mxfp4_q8_0_ref, block_lanes_mxfp4, 1},
    /* ternary, NVFP4, Q1_0, Q2_0 (quants_lowbit_ref.c): llama.cpp runs their vec_dot for
     * every product, so no lanes for the other orders */
    {GGML_TYPE_TQ1_0, QK_K, 54, GGML_TYPE_Q8_K, dequantize_row_tq1_0, vec_dot_tq1_0_q8_K_ref, NULL, 0},
    {GGML_TYPE_TQ2_0, QK_K, 66, GGML_TYPE_Q8_K, dequantize_row_tq2_0, vec_dot_tq2_0_q8_K_ref, NULL, 0},
    {GGML_TYPE_NVFP4, QK_NVFP4, 36, GGML_TYPE_Q8_0, dequantize_row_nvfp4, vec_dot_nvfp4_q8_0_ref, NULL, 0},
    {GGML_TYPE_Q1_0, QK1_0, 18, GGML_TYPE_Q8_0, dequantize_row_q1_0, vec_dot_q1_0_q8_0_ref, NULL, 0},
    {GGML_TYPE_Q2_0, QK2_0, 18, GGML_TYPE_Q8_0, dequantize_row_q2_0, vec_dot_q2_0_q8_0_ref, NULL, 0},
    /* IQ3_XXS, IQ3_S, IQ4_XS (quants_iq3_ref.c) */
    {GGML_TYPE_IQ3_XXS, QK_K, 98, GGML_TYPE_Q8_K, dequantize_row_iq3_xxs, vec_dot_iq3_xxs_q8_K_ref, block_lanes_iq3_xxs, 1},
    {GGML_TYPE_IQ3_S, QK_K, 110, GGML_TYPE_Q8_K, dequantize_row_iq3_s, vec_dot_iq3_s_q8_K_ref, block_lanes_iq3_s, 1},
    {GGML_TYPE_IQ4_XS, QK_K, 136, GGML_TYPE_Q8_K, dequantize_row_iq4_xs, vec_dot_iq4_xs_q8_K_ref, block_lanes_iq4_xs, 1},
    /* activation-only types: sizes for pyggml_row_bytes, no kernels */
    {GGML_TYPE_Q8_1, QK8_1, 36, -1, NULL, NULL, NULL, 0},
    {GGML_TYPE_Q8_K, QK_K, 292, -1, NULL, NULL, NULL, 0},
};

const type_traits *ref_traits(int type) {
    for (size_t i = 0; i < sizeof ref_table / sizeof ref_table[0]; i++)
        if (ref_table[i].type == type) return &ref_table[i];
    return NULL;
}

float ref_dot(int type, product_order order, int64_t k, const void *w, const void *act) {
    const type_traits *t = ref_traits(type);
    if (!t->block_lanes) return t->vec_dot_ref(k, w, act);     /* float weights: one order */
    switch (order) {
    case ORDER_TINYBLAS: return dot_8_lanes(k, t->block_size, t->block_lanes, w, act);
    case ORDER_GEMV: return dot_repack(k, t->block_size, t->block_lanes, 1, w, act);
    case ORDER_GEMM: return dot_repack(k, t->block_size, t->block_lanes, t->gemm_steps, w, act);
    case ORDER_TILED: return dot_tiled(k, t->block_size, t->block_lanes, w, act);
    case ORDER_VEC_DOT:
    default: return t->vec_dot_ref(k, w, act);
    }
}

void ref_product(const product_args *p) {
    for (int64_t t = 0; t < p->n_act; t++)
        for (int j = 0; j < p->n_rows; j++)
            p->out[t * p->ldo + j] = ref_dot(p->type, p->order, p->k, (const char *)p->w + j * p->w_stride,
                                             (const char *)p->act + t * p->act_stride);
}

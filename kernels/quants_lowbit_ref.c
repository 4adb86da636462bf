/* quants_lowbit_ref.c -- the scalar reference of the ternary TQ1_0, TQ2_0, the 4-bit float
 * NVFP4 and the 1-2 bit Q1_0, Q2_0, in ggml's _ref style (MXFP4, IQ4_NL's sibling, is in
 * quants_ref.c).  Each block is decoded into its signed integers q first (decode_<type>;
 * the layouts are drawn in ggml_blocks.h and pyggml/quants/ternary.py, fp4.py, lowbit.py),
 * then:
 *
 *   dequantize_row_<type>   TQ: y = (t - 1) * d; NVFP4: y = q * d_s; Q1_0: y = bit ? d : -d;
 *                           Q2_0: y = (q - 1) * d (ggml-quants.c's dequantize_row_<type>)
 *   vec_dot_<type>_<act>_ref
 *                           ggml_vec_dot_<type>_<act> as llama.cpp's x86 build runs it, for
 *                           every product (no repack, tiled or tinyBLAS kernel takes them):
 *     TQ1_0, TQ2_0   lanes of t x minus lane l's bsums 2l, 2l + 1 (the -1 of each trit);
 *                    acc = acc + d_w d_y lanes (a multiply and an add, fused by GCC:
 *                    cpu_internal.h); hsum8
 *     NVFP4          per half block (one Q8_0 block): lanes 0-3 times d_2h d_y, lanes 4-7
 *                    times d_2h+1 d_y, acc = fma(., lanes, acc); hsum8
 *     Q1_0           per block, chain = d_y0 lanes_0, chain = fma(d_yt, lanes_t, chain) over
 *                    its 4 Q8_0 blocks; acc = fma(d, chain, acc); hsum8
 *     Q2_0           ggml's scalar loop: sumi = sumi + isum_t d_yt over its 2 Q8_0 blocks,
 *                    sumf = sumf + sumi d (add_scalar_tail)
 *   lanes: element e's product in lane (e % 32) / 4, as ggml's registers hold them.
 */
#include "cpu_internal.h"

/* ================================================================ decoding to integers */

/* trit n (0: the most significant) of a base-3 byte: ((b * 3^n) mod 256) * 3 >> 8 */
static int trit(uint8_t b, int n) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    return ((uint8_t)(b * pow3[n]) * 3) >> 8;
}

/* weight 32 n + m: trit n of qs[m]; 160 + 16 n + m: trit n of qs[32 + m]; 240 + 4 n + j:
 * trit n of qh[j]; q = t - 1 */
static float decode_tq1_0(const void *w, int q[QK_K]) {
    const block_tq1_0 *x = w;
    for (int n = 0; n < 5; n++) {
        for (int m = 0; m < 32; m++) q[32 * n + m] = trit(x->qs[m], n) - 1;
        for (int m = 0; m < 16; m++) q[160 + 16 * n + m] = trit(x->qs[32 + m], n) - 1;
    }
    for (int n = 0; n < 4; n++)
        for (int j = 0; j < 4; j++) q[240 + 4 * n + j] = trit(x->qh[j], n) - 1;
    return fp16_to_fp32(x->d);
}

/* weight 128 h + 32 k + l: bits 2k of qs[32 h + l]; q = t - 1 */
static float decode_tq2_0(const void *w, int q[QK_K]) {
    const block_tq2_0 *x = w;
    for (int e = 0; e < QK_K; e++) q[e] = ((x->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) - 1;
    return fp16_to_fp32(x->d);
}

/* element 16 s + j: nibble j / 8 of qs[8 s + j % 8]; q = kvalues_mxfp4 (doubled E2M1) */
static void decode_nvfp4(const block_nvfp4 *x, int q[QK_NVFP4]) {
    for (int e = 0; e < QK_NVFP4; e++)
        q[e] = kvalues_mxfp4[(x->qs[8 * (e / 16) + e % 8] >> (4 * ((e % 16) / 8))) & 15];
}

/* bit e % 8 of qs[e / 8]: +1 where set, -1 where clear */
static int sign_q1_0(const block_q1_0 *x, int e) { return (x->qs[e / 8] >> (e % 8)) & 1 ? 1 : -1; }

/* bits 2 (e % 4) of qs[e / 4]: q - 1 */
static int quant_q2_0(const block_q2_0 *x, int e) { return ((x->qs[e / 4] >> (2 * (e % 4))) & 3) - 1; }

/* ================================================================ ternary */

typedef float (*decode_tq_fn)(const void *w, int q[QK_K]);

static void dequantize_row_tq(decode_tq_fn decode, size_t type_size, const void *w, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_K; i++, y += QK_K) {
        int q[QK_K];
        const float d = decode((const char *)w + i * type_size, q);
        for (int e = 0; e < QK_K; e++) y[e] = (float)q[e] * d;
    }
}

/* t x = (q + 1) x: ggml multiplies the unsigned trits and subtracts the bsums per lane */
static float vec_dot_tq(decode_tq_fn decode, size_t type_size, int64_t k, const void *w, const void *act) {
    float acc[8] = {0};
    for (int64_t i = 0; i < k / QK_K; i++) {
        const block_q8_K *y = (const block_q8_K *)act + i;
        int q[QK_K];
        int32_t lane[8] = {0};
        const float d = decode((const char *)w + i * type_size, q);
        for (int e = 0; e < QK_K; e++) lane[(e % 32) / 4] += (q[e] + 1) * y->qs[e];
        for (int l = 0; l < 8; l++) {
            lane[l] -= y->bsums[2 * l] + y->bsums[2 * l + 1];
            acc[l] = fmaf(y->d * d, (float)lane[l], acc[l]);
        }
    }
    return hsum8(acc);
}

void dequantize_row_tq1_0(const void *w, float *y, int64_t k) { dequantize_row_tq(decode_tq1_0, sizeof(block_tq1_0), w, y, k); }
void dequantize_row_tq2_0(const void *w, float *y, int64_t k) { dequantize_row_tq(decode_tq2_0, sizeof(block_tq2_0), w, y, k); }
float vec_dot_tq1_0_q8_K_ref(int64_t k, const void *w, const void *act) {
    return vec_dot_tq(decode_tq1_0, sizeof(block_tq1_0), k, w, act);
}
float vec_dot_tq2_0_q8_K_ref(int64_t k, const void *w, const void *act) {
    return vec_dot_tq(decode_tq2_0, sizeof(block_tq2_0), k, w, act);
}

/* ================================================================ NVFP4 */

void dequantize_row_nvfp4(const void *w, float *y, int64_t k) {
    const block_nvfp4 *x = w;
    for (int64_t i = 0; i < k / QK_NVFP4; i++, y += QK_NVFP4) {
        int q[QK_NVFP4];
        decode_nvfp4(x + i, q);
        for (int e = 0; e < QK_NVFP4; e++) y[e] = (float)q[e] * ue4m3_to_fp32(x[i].d[e / 16]);
    }
}

float vec_dot_nvfp4_q8_0_ref(int64_t k, const void *w, const void *act) {
    float acc[8] = {0};
    for (int64_t i = 0; i < k / QK_NVFP4; i++) {
        const block_nvfp4 *x = (const block_nvfp4 *)w + i;
        int q[QK_NVFP4];
        decode_nvfp4(x, q);
        for (int h = 0; h < 2; h++) {
            const block_q8_0 *y = (const block_q8_0 *)act + 2 * i + h;
            const float d_y = fp16_to_fp32(y->d);
            int32_t lane[8] = {0};
            for (int e = 0; e < 32; e++) lane[e / 4] += q[32 * h + e] * y->qs[e];
            for (int l = 0; l < 8; l++) {
                const float s = ue4m3_to_fp32(x->d[2 * h + l / 4]) * d_y;
                acc[l] = fmaf(s, (float)lane[l], acc[l]);
            }
        }
    }
    return hsum8(acc);
}

/* ================================================================ Q1_0, Q2_0 */

void dequantize_row_q1_0(const void *w, float *y, int64_t k) {
    const block_q1_0 *x = w;
    for (int64_t i = 0; i < k / QK1_0; i++, y += QK1_0) {
        const float d = fp16_to_fp32(x[i].d);
        for (int e = 0; e < QK1_0; e++) y[e] = sign_q1_0(x + i, e) > 0 ? d : -d;
    }
}

/* the activations negated (int8, as ggml's sign flip) where a weight's bit is clear */
float vec_dot_q1_0_q8_0_ref(int64_t k, const void *w, const void *act) {
    float acc[8] = {0};
    for (int64_t i = 0; i < k / QK1_0; i++) {
        const block_q1_0 *x = (const block_q1_0 *)w + i;
        float chain[8] = {0};
        for (int t = 0; t < 4; t++) {
            const block_q8_0 *y = (const block_q8_0 *)act + 4 * i + t;
            const float d_y = fp16_to_fp32(y->d);
            int32_t lane[8] = {0};
            for (int e = 0; e < 32; e++)
                lane[e / 4] += sign_q1_0(x, 32 * t + e) > 0 ? y->qs[e] : (int8_t)-y->qs[e];
            for (int l = 0; l < 8; l++) chain[l] = t == 0 ? d_y * (float)lane[l] : fmaf(d_y, (float)lane[l], chain[l]);
        }
        const float d = fp16_to_fp32(x->d);
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, chain[l], acc[l]);
    }
    return hsum8(acc);
}

void dequantize_row_q2_0(const void *w, float *y, int64_t k) {
    const block_q2_0 *x = w;
    for (int64_t i = 0; i < k / QK2_0; i++, y += QK2_0) {
        const float d = fp16_to_fp32(x[i].d);
        for (int e = 0; e < QK2_0; e++) y[e] = (float)quant_q2_0(x + i, e) * d;
    }
}

float vec_dot_q2_0_q8_0_ref(int64_t k, const void *w, const void *act) {
    float sumf = 0.0f;
    for (int64_t i = 0; i < k / QK2_0; i++) {
        const block_q2_0 *x = (const block_q2_0 *)w + i;
        float sumi = 0.0f;
        for (int t = 0; t < 2; t++) {
            const block_q8_0 *y = (const block_q8_0 *)act + 2 * i + t;
            int32_t isum = 0;
            for (int e = 0; e < 32; e++) isum += quant_q2_0(x, 32 * t + e) * y->qs[e];
            sumi = add_scalar_tail(sumi, (float)isum, fp16_to_fp32(y->d));
        }
        sumf = add_scalar_tail(sumf, sumi, fp16_to_fp32(x->d));
    }
    return sumf;
}

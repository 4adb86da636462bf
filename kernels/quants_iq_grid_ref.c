/* quants_iq_grid_ref.c -- the scalar reference of the codebook i-quants (IQ2_XXS,
 * IQ2_XS, IQ2_S, IQ1_S, IQ1_M), in ggml's _ref style, as quants_ref.c has the others.
 *
 * A block is decoded whole into integers first -- per element its grid value q (IQ2: the
 * signed grid byte +-8, 25, 43; IQ1: -1, 0, +1), IQ1's delta sign s (+-1), and per 16
 * elements the scale ls -- by decode_<type> (the block layouts are drawn in ggml_blocks.h,
 * the grids in ggml_iq_grids.h).  Then, per type:
 *
 *   dequantize_row_<type>       IQ2: db = d * (0.5 + ls) * 0.25, y = db * q
 *                               IQ1: dl = d * (2 ls + 1), y = dl * (q + s / 8)
 *                               (dequantize_row_<type> of ggml-quants.c, float for float)
 *   block_lanes_<type>          the integers llama.cpp's tiled matmul sums: per element
 *                               (2 ls + 1) q x (IQ2) or (2 ls + 1)(8 q + s) x (IQ1, whose
 *                               tiled codes are 8 q + s), in ggml's 8 lanes; d = d_w / 8
 *                               (the tiled kernel's d: the grids are 8 times its units)
 *   vec_dot_<type>_q8_K_ref     ggml_vec_dot_<type>_q8_K (arch/x86/quants.c, its AVX2
 *                               code): the grid lanes (2 ls + 1) q x and the float order
 *                               ggml_order.c draws
 */
#include "cpu_internal.h"
#include "ggml_iq_grids.h"

#define IQ1S_DELTA 0.125f            /* ggml-common.h's; IQ1M_DELTA is the same */

/* the 8 coordinates of a grid point (byte j = coordinate j), with the sign bits of signs */
static void signed_point(uint64_t point, uint8_t signs, int q[8]) {
    for (int j = 0; j < 8; j++) {
        const int v = (int)((point >> (8 * j)) & 0xFF);
        q[j] = signs & kmask_iq2xs[j] ? -v : v;
    }
}

static inline uint32_t u32_at(const uint8_t *p) {
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ================================================================ IQ2_XXS, IQ2_XS, IQ2_S */

/* sub-block ib's 8 bytes: 4 grid indices, then a u32 of 4 x 7 sign bits and ls << 28 */
static void decode_iq2_xxs(const void *w, int q[QK_K], int ls[16]) {
    const uint8_t *qs = (const uint8_t *)((const block_iq2_xxs *)w)->qs;
    for (int ib = 0; ib < QK_K / 32; ib++, qs += 8) {
        const uint32_t aux = u32_at(qs + 4);
        for (int l = 0; l < 4; l++)
            signed_point(iq2xxs_grid[qs[l]], ksigns_iq2xs[(aux >> (7 * l)) & 127], q + 32 * ib + 8 * l);
        ls[2 * ib] = ls[2 * ib + 1] = (int)(aux >> 28);
    }
}

/* group m: qs[m] = 9-bit grid index | 7-bit sign index << 9 */
static void decode_iq2_xs(const void *w, int q[QK_K], int ls[16]) {
    const block_iq2_xs *x = w;
    for (int m = 0; m < QK_K / 8; m++)
        signed_point(iq2xs_grid[x->qs[m] & 511], ksigns_iq2xs[x->qs[m] >> 9], q + 8 * m);
    for (int ib = 0; ib < QK_K / 32; ib++) {
        ls[2 * ib] = x->scales[ib] & 0x0F;
        ls[2 * ib + 1] = x->scales[ib] >> 4;
    }
}

/* group m = 4 ib + l: index qs[m] | 2 bits of qh[ib] << 8, sign byte qs[32 + m] */
static void decode_iq2_s(const void *w, int q[QK_K], int ls[16]) {
    const block_iq2_s *x = w;
    const uint8_t *signs = x->qs + QK_K / 8;
    for (int m = 0; m < QK_K / 8; m++) {
        const int index = x->qs[m] | ((x->qh[m / 4] >> (2 * (m % 4))) & 3) << 8;
        signed_point(iq2s_grid[index], signs[m], q + 8 * m);
    }
    for (int ib = 0; ib < QK_K / 32; ib++) {
        ls[2 * ib] = x->scales[ib] & 0x0F;
        ls[2 * ib + 1] = x->scales[ib] >> 4;
    }
}

typedef void (*decode_iq2_fn)(const void *w, int q[QK_K], int ls[16]);

/* all three start with their fp16 d */
static void dequantize_row_iq2(decode_iq2_fn decode, size_t type_size, const void *w, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_K; i++, y += QK_K) {
        const void *x = (const char *)w + i * type_size;
        int q[QK_K], ls[16];
        decode(x, q, ls);
        const float d = fp16_to_fp32(*(const ggml_half *)x);
        for (int e = 0; e < QK_K; e++) {
            const float db = d * (0.5f + ls[e / 16]) * 0.25f;
            y[e] = db * q[e];
        }
    }
}

static block_lanes block_lanes_iq2(decode_iq2_fn decode, size_t type_size, const void *w, const void *act,
                                   int64_t i) {
    const void *x = (const char *)w + i * type_size;
    const block_q8_K *y = (const block_q8_K *)act + i;
    block_lanes b = {.d = fp16_to_fp32(*(const ggml_half *)x) * 0.125f, .d_y = y->d};
    int q[QK_K], ls[16];
    decode(x, q, ls);
    for (int e = 0; e < QK_K; e++) add_lane(&b, e, (2 * ls[e / 16] + 1) * q[e] * y->qs[e]);
    return b;
}

/* ggml_vec_dot_iq2_{xxs,xs,s}_q8_K: lanes = fma(d_w d_y, lanes_b, lanes); 0.125 hsum(lanes) */
static float vec_dot_iq2(decode_iq2_fn decode, size_t type_size, int64_t k, const void *w, const void *act) {
    float acc[8] = {0};
    for (int64_t i = 0; i < k / QK_K; i++) {
        const block_lanes b = block_lanes_iq2(decode, type_size, w, act, i);
        const float d = fp16_to_fp32(*(const ggml_half *)((const char *)w + i * type_size)) * b.d_y;
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)b.lane[l], acc[l]);
    }
    return 0.125f * hsum8(acc);
}

void dequantize_row_iq2_xxs(const void *w, float *y, int64_t k) {
    dequantize_row_iq2(decode_iq2_xxs, sizeof(block_iq2_xxs), w, y, k);
}
void dequantize_row_iq2_xs(const void *w, float *y, int64_t k) {
    dequantize_row_iq2(decode_iq2_xs, sizeof(block_iq2_xs), w, y, k);
}
void dequantize_row_iq2_s(const void *w, float *y, int64_t k) {
    dequantize_row_iq2(decode_iq2_s, sizeof(block_iq2_s), w, y, k);
}
block_lanes block_lanes_iq2_xxs(const void *w, const void *act, int64_t i) {
    return block_lanes_iq2(decode_iq2_xxs, sizeof(block_iq2_xxs), w, act, i);
}
block_lanes block_lanes_iq2_xs(const void *w, const void *act, int64_t i) {
    return block_lanes_iq2(decode_iq2_xs, sizeof(block_iq2_xs), w, act, i);
}
block_lanes block_lanes_iq2_s(const void *w, const void *act, int64_t i) {
    return block_lanes_iq2(decode_iq2_s, sizeof(block_iq2_s), w, act, i);
}
float vec_dot_iq2_xxs_q8_K_ref(int64_t k, const void *w, const void *act) {
    return vec_dot_iq2(decode_iq2_xxs, sizeof(block_iq2_xxs), k, w, act);
}
float vec_dot_iq2_xs_q8_K_ref(int64_t k, const void *w, const void *act) {
    return vec_dot_iq2(decode_iq2_xs, sizeof(block_iq2_xs), k, w, act);
}
float vec_dot_iq2_s_q8_K_ref(int64_t k, const void *w, const void *act) {
    return vec_dot_iq2(decode_iq2_s, sizeof(block_iq2_s), k, w, act);
}

/* ================================================================ IQ1_S, IQ1_M */

/* the 8 coordinates -1, 0, +1 of point `index` of iq1s_grid */
static void ternary_point(int index, int q[8]) {
    for (int j = 0; j < 8; j++) q[j] = (int8_t)((iq1s_grid[index] >> (8 * j)) & 0xFF);
}

/* sub-block ib: qh[ib] = 4 x 3 high index bits | ls << 12 | delta sign << 15 */
static float decode_iq1_s(const void *w, int q[QK_K], int s[QK_K], int ls[16]) {
    const block_iq1_s *x = w;
    for (int ib = 0; ib < QK_K / 32; ib++) {
        for (int l = 0; l < 4; l++) ternary_point(x->qs[4 * ib + l] | ((x->qh[ib] >> (3 * l)) & 7) << 8, q + 32 * ib + 8 * l);
        for (int e = 32 * ib; e < 32 * ib + 32; e++) s[e] = x->qh[ib] & 0x8000 ? -1 : 1;
        ls[2 * ib] = ls[2 * ib + 1] = (x->qh[ib] >> 12) & 7;
    }
    return fp16_to_fp32(x->d);
}

/* group m: qs[m] | nibble m % 2 of qh[m / 2] (3 high index bits, delta sign at bit 3);
 * the 4 scale words: 3-bit ls of 16 elements 4 m' + k at bits 3 k, d's nibbles at 12..15 */
static float decode_iq1_m(const void *w, int q[QK_K], int s[QK_K], int ls[16]) {
    const block_iq1_m *x = w;
    uint16_t sc[4];
    memcpy(sc, x->scales, 8);
    for (int m = 0; m < QK_K / 8; m++) {
        const int nibble = (x->qh[m / 2] >> (4 * (m % 2))) & 0x0F;
        ternary_point(x->qs[m] | (nibble & 7) << 8, q + 8 * m);
        for (int e = 8 * m; e < 8 * m + 8; e++) s[e] = nibble & 8 ? -1 : 1;
    }
    for (int j = 0; j < 16; j++) ls[j] = (sc[j / 4] >> (3 * (j % 4))) & 7;
    return fp16_to_fp32((ggml_half)((sc[0] >> 12) | (sc[1] >> 12) << 4 | (sc[2] >> 12) << 8 | (sc[3] >> 12) << 12));
}

typedef float (*decode_iq1_fn)(const void *w, int q[QK_K], int s[QK_K], int ls[16]);

static void dequantize_row_iq1(decode_iq1_fn decode, size_t type_size, const void *w, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_K; i++, y += QK_K) {
        int q[QK_K], s[QK_K], ls[16];
        const float d = decode((const char *)w + i * type_size, q, s, ls);
        for (int e = 0; e < QK_K; e++) {
            const float dl = d * (2 * ls[e / 16] + 1);
            y[e] = dl * (q[e] + (s[e] < 0 ? -IQ1S_DELTA : IQ1S_DELTA));
        }
    }
}

/* the block's grid lanes (2 ls + 1) q x and shift lanes (2 ls + 1) s x; returns d_w */
static float lanes_iq1(decode_iq1_fn decode, const void *x, const block_q8_K *y, int32_t grid[8],
                       int32_t shift[8]) {
    int q[QK_K], s[QK_K], ls[16];
    const float d = decode(x, q, s, ls);
    for (int l = 0; l < 8; l++) grid[l] = shift[l] = 0;
    for (int e = 0; e < QK_K; e++) {
        grid[(e % 32) / 4] += (2 * ls[e / 16] + 1) * q[e] * y->qs[e];
        shift[(e % 32) / 4] += (2 * ls[e / 16] + 1) * s[e] * y->qs[e];
    }
    return d;
}

static block_lanes block_lanes_iq1(decode_iq1_fn decode, size_t type_size, const void *w, const void *act,
                                   int64_t i) {
    const block_q8_K *y = (const block_q8_K *)act + i;
    int32_t grid[8], shift[8];
    const float d = lanes_iq1(decode, (const char *)w + i * type_size, y, grid, shift);
    block_lanes b = {.d = d * 0.125f, .d_y = y->d};
    for (int l = 0; l < 8; l++) b.lane[l] = 8 * grid[l] + shift[l];
    return b;
}

/* ggml_vec_dot_iq1_s_q8_K: lanes = fma(d, grid_b, lanes); s = s + d * (float) sum(shift_b),
 * a scalar chain that GCC fuses on every x86 (cpu_internal.h); hsum(lanes) + s / 8.
 * ggml_vec_dot_iq1_m_q8_K: the shift lanes in 8 float lanes of their own, fma(d, shift_b,
 * .); hsum(lanes) + hsum(shifts) / 8.  d = d_y d_w; dividing by 8 is exact. */
static float vec_dot_iq1(decode_iq1_fn decode, size_t type_size, int per_lane_shifts, int64_t k, const void *w,
                         const void *act) {
    float acc[8] = {0}, acc_shift[8] = {0}, shifts = 0.0f;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const block_q8_K *y = (const block_q8_K *)act + i;
        int32_t grid[8], shift[8];
        const float d = y->d * lanes_iq1(decode, (const char *)w + i * type_size, y, grid, shift);
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)grid[l], acc[l]);
        if (per_lane_shifts)
            for (int l = 0; l < 8; l++) acc_shift[l] = fmaf(d, (float)shift[l], acc_shift[l]);
        else
            shifts = fmaf(d, (float)sum_lanes(shift), shifts);
    }
    return hsum8(acc) + IQ1S_DELTA * (per_lane_shifts ? hsum8(acc_shift) : shifts);
}

void dequantize_row_iq1_s(const void *w, float *y, int64_t k) {
    dequantize_row_iq1(decode_iq1_s, sizeof(block_iq1_s), w, y, k);
}
void dequantize_row_iq1_m(const void *w, float *y, int64_t k) {
    dequantize_row_iq1(decode_iq1_m, sizeof(block_iq1_m), w, y, k);
}
block_lanes block_lanes_iq1_s(const void *w, const void *act, int64_t i) {
    return block_lanes_iq1(decode_iq1_s, sizeof(block_iq1_s), w, act, i);
}
block_lanes block_lanes_iq1_m(const void *w, const void *act, int64_t i) {
    return block_lanes_iq1(decode_iq1_m, sizeof(block_iq1_m), w, act, i);
}
float vec_dot_iq1_s_q8_K_ref(int64_t k, const void *w, const void *act) {
    return vec_dot_iq1(decode_iq1_s, sizeof(block_iq1_s), 0, k, w, act);
}
float vec_dot_iq1_m_q8_K_ref(int64_t k, const void *w, const void *act) {
    return vec_dot_iq1(decode_iq1_m, sizeof(block_iq1_m), 1, k, w, act);
}

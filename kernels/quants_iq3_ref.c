/* quants_iq3_ref.c -- the scalar reference of the i-quants IQ3_XXS, IQ3_S (codebooks of 4
 * elements) and IQ4_XS (IQ4_NL's table with 6-bit scales), in ggml's _ref style, as
 * quants_ref.c has the others.
 *
 * A block is decoded whole into integers first by decode_<type>: per element its signed
 * value q (IQ3: the grid byte of its group's point, negated where its sign bit is set;
 * IQ4_XS: kvalues_iq4nl of its index) and per 32 elements the integer scale sc (IQ3:
 * 2 ls + 1; IQ4_XS: ls - 32).  The layouts are drawn in ggml_blocks.h and in
 * pyggml/quants/iq3.py and iq.py, the grids in ggml_iq3_grids.h.  Then, per type:
 *
 *   dequantize_row_<type>   IQ3_XXS: db = d * (0.5 + ls) * 0.5; IQ3_S, IQ4_XS: db = d * sc;
 *                           y = db * q (dequantize_row_<type> of ggml-quants.c)
 *   block_lanes_<type>      sc q x in ggml's 8 lanes; d = d_w, IQ3_XXS d_w / 4 (its scale
 *                           (2 ls + 1) / 4 keeps the 1/4 for the end, as the tiled matmul
 *                           holds it)
 *   vec_dot_<type>_q8_K_ref ggml_vec_dot_<type>_q8_K (arch/x86/quants.c, AVX2):
 *                           lanes = fma(d_w d_y, lanes_b, lanes), hsum8, IQ3_XXS times 0.25
 */
#include "cpu_internal.h"
#include "ggml_iq_grids.h"
#include "ggml_iq3_grids.h"

static inline uint32_t u32_at(const uint8_t *p) {
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* the 4 coordinates of a grid point (byte j = coordinate j), negated where bit j of signs is set */
static void signed_point4(uint32_t point, unsigned signs, int q[4]) {
    for (int j = 0; j < 4; j++) {
        const int v = (int)((point >> (8 * j)) & 0xFF);
        q[j] = signs >> j & 1 ? -v : v;
    }
}

/* sub-block ib: grid indices qs[8 ib ..], and the u32 at byte 64 + 4 ib of qs: 4 x 7-bit
 * sign indices (ksigns_iq2xs: the 8th sign is their parity) and ls << 28 */
static float decode_iq3_xxs(const void *w, int q[QK_K], int sc[8]) {
    const block_iq3_xxs *x = w;
    for (int ib = 0; ib < QK_K / 32; ib++) {
        const uint32_t aux = u32_at(x->qs + QK_K / 4 + 4 * ib);
        for (int l = 0; l < 4; l++) {
            const unsigned signs = ksigns_iq2xs[(aux >> (7 * l)) & 127];
            signed_point4(iq3xxs_grid[x->qs[8 * ib + 2 * l]], signs, q + 32 * ib + 8 * l);
            signed_point4(iq3xxs_grid[x->qs[8 * ib + 2 * l + 1]], signs >> 4, q + 32 * ib + 8 * l + 4);
        }
        sc[ib] = 2 * (int)(aux >> 28) + 1;
    }
    return fp16_to_fp32(x->d);
}

/* group g: index qs[g] | bit g % 8 of qh[g / 8] << 8; sign of element e: bit e % 8 of signs[e / 8] */
static float decode_iq3_s(const void *w, int q[QK_K], int sc[8]) {
    const block_iq3_s *x = w;
    for (int g = 0; g < QK_K / 4; g++) {
        const int index = x->qs[g] | ((x->qh[g / 8] >> (g % 8)) & 1) << 8;
        signed_point4(iq3s_grid[index], x->signs[g / 2] >> (4 * (g % 2)), q + 4 * g);
    }
    for (int ib = 0; ib < QK_K / 32; ib++) sc[ib] = 2 * ((x->scales[ib / 2] >> (4 * (ib % 2))) & 15) + 1;
    return fp16_to_fp32(x->d);
}

/* sub-block ib: ls = nibble ib % 2 of scales_l[ib / 2] | bits 2 ib.. of scales_h << 4;
 * its 32 indices packed as IQ4_NL's (element j low nibble of qs[16 ib + j], j + 16 high) */
static float decode_iq4_xs(const void *w, int q[QK_K], int sc[8]) {
    const block_iq4_xs *x = w;
    for (int ib = 0; ib < QK_K / 32; ib++) {
        const int ls = ((x->scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | ((x->scales_h >> (2 * ib)) & 3) << 4;
        sc[ib] = ls - 32;
        for (int j = 0; j < 16; j++) {
            q[32 * ib + j] = kvalues_iq4nl[x->qs[16 * ib + j] & 15];
            q[32 * ib + j + 16] = kvalues_iq4nl[x->qs[16 * ib + j] >> 4];
        }
    }
    return fp16_to_fp32(x->d);
}

typedef float (*decode_fn)(const void *w, int q[QK_K], int sc[8]);

static void dequantize_row_iq(decode_fn decode, size_t type_size, int xxs, const void *w, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_K; i++, y += QK_K) {
        int q[QK_K], sc[8];
        const float d = decode((const char *)w + i * type_size, q, sc);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const float db = xxs ? d * (0.5f + (sc[ib] - 1) / 2) * 0.5f : d * sc[ib];
            for (int e = 32 * ib; e < 32 * ib + 32; e++) y[e] = db * q[e];
        }
    }
}

static block_lanes block_lanes_iq(decode_fn decode, size_t type_size, int xxs, const void *w, const void *act,
                                  int64_t i) {
    const block_q8_K *y = (const block_q8_K *)act + i;
    int q[QK_K], sc[8];
    const float d = decode((const char *)w + i * type_size, q, sc);
    block_lanes b = {.d = xxs ? d * 0.25f : d, .d_y = y->d};
    for (int e = 0; e < QK_K; e++) add_lane(&b, e, sc[e / 32] * q[e] * y->qs[e]);
    return b;
}

static float vec_dot_iq(decode_fn decode, size_t type_size, int xxs, int64_t k, const void *w, const void *act) {
    float acc[8] = {0};
    for (int64_t i = 0; i < k / QK_K; i++) {
        const block_lanes b = block_lanes_iq(decode, type_size, xxs, w, act, i);
        const float d = fp16_to_fp32(*(const ggml_half *)((const char *)w + i * type_size)) * b.d_y;
        for (int l = 0; l < 8; l++) acc[l] = fmaf(d, (float)b.lane[l], acc[l]);
    }
    return xxs ? 0.25f * hsum8(acc) : hsum8(acc);
}

void dequantize_row_iq3_xxs(const void *w, float *y, int64_t k) {
    dequantize_row_iq(decode_iq3_xxs, sizeof(block_iq3_xxs), 1, w, y, k);
}
void dequantize_row_iq3_s(const void *w, float *y, int64_t k) {
    dequantize_row_iq(decode_iq3_s, sizeof(block_iq3_s), 0, w, y, k);
}
void dequantize_row_iq4_xs(const void *w, float *y, int64_t k) {
    dequantize_row_iq(decode_iq4_xs, sizeof(block_iq4_xs), 0, w, y, k);
}
block_lanes block_lanes_iq3_xxs(const void *w, const void *act, int64_t i) {
    return block_lanes_iq(decode_iq3_xxs, sizeof(block_iq3_xxs), 1, w, act, i);
}
block_lanes block_lanes_iq3_s(const void *w, const void *act, int64_t i) {
    return block_lanes_iq(decode_iq3_s, sizeof(block_iq3_s), 0, w, act, i);
}
block_lanes block_lanes_iq4_xs(const void *w, const void *act, int64_t i) {
    return block_lanes_iq(decode_iq4_xs, sizeof(block_iq4_xs), 0, w, act, i);
}
float vec_dot_iq3_xxs_q8_K_ref(int64_t k, const void *w, const void *act) {
    return vec_dot_iq(decode_iq3_xxs, sizeof(block_iq3_xxs), 1, k, w, act);
}
float vec_dot_iq3_s_q8_K_ref(int64_t k, const void *w, const void *act) {
    return vec_dot_iq(decode_iq3_s, sizeof(block_iq3_s), 0, k, w, act);
}
float vec_dot_iq4_xs_q8_K_ref(int64_t k, const void *w, const void *act) {
    return vec_dot_iq(decode_iq4_xs, sizeof(block_iq4_xs), 0, k, w, act);
}

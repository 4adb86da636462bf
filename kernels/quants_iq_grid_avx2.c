/* quants_iq_grid_avx2.c -- AVX2 products of the codebook i-quants (IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ1_S, IQ1_M), bit-identical to their references (quants_iq_grid_ref.c).
 *
 * As ggml's AVX2 vec_dot kernels do (arch/x86/quants.c), 32 weights at a time:
 *   - the grid points of the 4 groups of 8 go into one register with _mm256_set_epi64x
 *     (4 table loads), the signs likewise (ksigns64, or IQ2_S's sign bytes spread to 32
 *     lanes); that is the unpacking, done once per weight block for all activation rows;
 *   - the signs go onto the activations (_mm256_sign_epi8), _mm256_maddubs_epi16 multiplies
 *     the unsigned grid bytes by them (exact: |q| <= 43, |x| <= 127), _mm256_madd_epi16
 *     applies the integer scales 2 ls + 1, one per 16 weights: ggml's 8 int32 lanes.
 * IQ1's grid values -1, 0, +1 are their own signs, its magnitudes 0 or 1; its delta terms,
 * sum (2 ls + 1) s x, come from the activations' bsums (IQ1_S: one delta per 32 weights)
 * or from lanes of their own (IQ1_M: one per 8).  Then the float order of ggml's vec_dot
 * or of the tiled matmul (ggml_order.c draws both), for R activation rows at once.
 *
 * Why these types run below the memory's speed: a 32-weight step of IQ2_XXS is 40
 * instructions, 14 of them loads (8 table loads and their inserts, the sign and scale
 * setup, then sign, maddubs, madd and add per activation row) for 8.25 bytes of weights:
 * ~8.6 cycles (llvm-mca); docs/performance.md has the figures.
 */
#include "cpu_internal.h"

#ifdef __AVX2__

#include "avx2_blocks.h"
#include "ggml_iq_grids.h"

/* ================================================================ a sub-block of 32 weights
 *   mag    the grid bytes (IQ2: 8, 25, 43; IQ1: |q|, 0 or 1)
 *   sign   what _mm256_sign_epi8 puts on the activations: +1 / -1 per weight (IQ1: q itself)
 *   scale  2 ls + 1 in 16 int16 lanes: lanes 0..7 weights 0..15, lanes 8..15 weights 16..31
 *   shift  IQ1_M: its delta signs, +1 / -1 per weight; IQ1_S: shift_scale, +-(2 ls + 1) */
typedef struct {
    __m256i mag, sign, scale, shift;
    int shift_scale;
} sub_block;

INLINE __m256i points4(const uint64_t *grid, int g0, int g1, int g2, int g3) {
    return _mm256_set_epi64x((long long)grid[g3], (long long)grid[g2], (long long)grid[g1], (long long)grid[g0]);
}

/* 0x00 / 0xff sign masks -> +1 / -1 */
INLINE __m256i plus_minus_one(__m256i masks) { return _mm256_or_si256(masks, _mm256_set1_epi8(1)); }

INLINE __m256i scales_2(int ls0, int ls1) {
    return _mm256_set_m128i(_mm_set1_epi16((short)(2 * ls1 + 1)), _mm_set1_epi16((short)(2 * ls0 + 1)));
}

INLINE sub_block sub_block_iq2_xxs(const block_iq2_xxs *x, int ib) {
    const uint8_t *q = (const uint8_t *)x->qs + 8 * ib;
    uint32_t aux;
    memcpy(&aux, q + 4, 4);
    sub_block s;
    s.mag = points4(iq2xxs_grid, q[0], q[1], q[2], q[3]);
    s.sign = plus_minus_one(points4(ksigns64, aux & 127, (aux >> 7) & 127, (aux >> 14) & 127, (aux >> 21) & 127));
    s.scale = scales_2(aux >> 28, aux >> 28);
    return s;
}

INLINE sub_block sub_block_iq2_xs(const block_iq2_xs *x, int ib) {
    const uint16_t *q = x->qs + 4 * ib;
    sub_block s;
    s.mag = points4(iq2xs_grid, q[0] & 511, q[1] & 511, q[2] & 511, q[3] & 511);
    s.sign = plus_minus_one(points4(ksigns64, q[0] >> 9, q[1] >> 9, q[2] >> 9, q[3] >> 9));
    s.scale = scales_2(x->scales[ib] & 0x0F, x->scales[ib] >> 4);
    return s;
}

INLINE sub_block sub_block_iq2_s(const block_iq2_s *x, int ib) {
    const uint8_t *q = x->qs + 4 * ib;
    const int h = x->qh[ib];
    uint32_t signs;
    memcpy(&signs, x->qs + QK_K / 8 + 4 * ib, 4);
    /* sign byte l to lanes 8l .. 8l+7, then each lane's bit: 0xff where set */
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)signs),
                                               _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                                 0x0101010101010101, 0));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    sub_block s;
    s.mag = points4(iq2s_grid, q[0] | (h << 8 & 0x300), q[1] | (h << 6 & 0x300), q[2] | (h << 4 & 0x300),
                    q[3] | (h << 2 & 0x300));
    s.sign = plus_minus_one(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit));
    s.scale = scales_2(x->scales[ib] & 0x0F, x->scales[ib] >> 4);
    return s;
}

INLINE sub_block sub_block_iq1_s(const block_iq1_s *x, int ib) {
    const uint8_t *q = x->qs + 4 * ib;
    const int h = x->qh[ib], ls = (h >> 12) & 7;
    sub_block s;
    s.sign = points4(iq1s_grid, q[0] | (h & 7) << 8, q[1] | (h >> 3 & 7) << 8, q[2] | (h >> 6 & 7) << 8,
                     q[3] | (h >> 9 & 7) << 8);
    s.mag = _mm256_abs_epi8(s.sign);
    s.scale = scales_2(ls, ls);
    s.shift = _mm256_setzero_si256();
    s.shift_scale = h & 0x8000 ? -(2 * ls + 1) : 2 * ls + 1;
    return s;
}

INLINE sub_block sub_block_iq1_m(const block_iq1_m *x, int ib) {
    const uint8_t *q = x->qs + 4 * ib, *h = x->qh + 2 * ib;
    uint16_t sc;
    memcpy(&sc, x->scales + 2 * (ib / 2), 2);
    const long long minus = -1, plus = 0x0101010101010101LL;
    sub_block s;
    s.sign = points4(iq1s_grid, q[0] | (h[0] & 7) << 8, q[1] | (h[0] >> 4 & 7) << 8, q[2] | (h[1] & 7) << 8,
                     q[3] | (h[1] >> 4 & 7) << 8);
    s.mag = _mm256_abs_epi8(s.sign);
    s.scale = scales_2((sc >> (6 * (ib % 2))) & 7, (sc >> (6 * (ib % 2) + 3)) & 7);
    s.shift = _mm256_set_epi64x(h[1] & 0x80 ? minus : plus, h[1] & 0x08 ? minus : plus,
                                h[0] & 0x80 ? minus : plus, h[0] & 0x08 ? minus : plus);
    s.shift_scale = 0;
    return s;
}

INLINE size_t block_bytes(const int type) {
    switch (type) {
    case GGML_TYPE_IQ2_XXS: return sizeof(block_iq2_xxs);
    case GGML_TYPE_IQ2_XS: return sizeof(block_iq2_xs);
    case GGML_TYPE_IQ2_S: return sizeof(block_iq2_s);
    case GGML_TYPE_IQ1_S: return sizeof(block_iq1_s);
    default: return sizeof(block_iq1_m);
    }
}

INLINE sub_block unpack(const int type, const void *x, int ib) {
    switch (type) {
    case GGML_TYPE_IQ2_XXS: return sub_block_iq2_xxs(x, ib);
    case GGML_TYPE_IQ2_XS: return sub_block_iq2_xs(x, ib);
    case GGML_TYPE_IQ2_S: return sub_block_iq2_s(x, ib);
    case GGML_TYPE_IQ1_S: return sub_block_iq1_s(x, ib);
    default: return sub_block_iq1_m(x, ib);
    }
}

/* the block's d: the fp16 in front of IQ2_* and IQ1_S; IQ1_M's from its scales' top nibbles */
INLINE float block_d(const int type, const void *x) {
    uint16_t h;
    if (type != GGML_TYPE_IQ1_M) {
        memcpy(&h, x, 2);
        return fp16_to_fp32(h);
    }
    uint16_t sc[4];
    memcpy(sc, ((const block_iq1_m *)x)->scales, 8);
    return fp16_to_fp32((ggml_half)((sc[0] >> 12) | (sc[1] >> 12) << 4 | (sc[2] >> 12) << 8 | (sc[3] >> 12) << 12));
}

/* ================================================================ one weight row, R activation rows
 * vec_dot (IQ2)    lanes = fma(d_w d_y, lanes_b, lanes); out = 0.125 hsum(lanes)
 * vec_dot (IQ1_S)  lanes as IQ2; s = fma(d_w d_y, (float) shifts_b, s) (cpu_internal.h);
 *                  out = hsum(lanes) + 0.125 s
 * vec_dot (IQ1_M)  lanes as IQ2, shift lanes alike; out = hsum(lanes) + 0.125 hsum(shifts)
 * tiled            r = isum_b (d_w / 8), IQ1's isum_b = 8 grid sum + shift sum;
 *                  acc = fma(r, d_y, acc) */
INLINE void iq_grid_rows(const int type, const product_order order, const int R, int64_t k, const void *w,
                         const void *act, int64_t act_stride, float *out, int64_t ldo) {
    const int iq1 = type == GGML_TYPE_IQ1_S || type == GGML_TYPE_IQ1_M;
    const __m256i ones = _mm256_set1_epi8(1);
    __m256 acc[MAX_ACT_ROWS], acc_shift[MAX_ACT_ROWS];
    float chain[MAX_ACT_ROWS], shifts[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) {
        acc[r] = acc_shift[r] = _mm256_setzero_ps();
        chain[r] = shifts[r] = 0.0f;
    }
    for (int64_t i = 0; i < k / QK_K; i++) {
        const void *x = (const char *)w + i * (int64_t)block_bytes(type);
        if (R == 1) prefetch_ahead(x, block_bytes(type));     /* decode: as the K-quants */
        __m256i lanes[MAX_ACT_ROWS], shift_lanes[MAX_ACT_ROWS];
        int32_t shift_sum[MAX_ACT_ROWS];
        UNROLL for (int r = 0; r < R; r++) {
            lanes[r] = shift_lanes[r] = _mm256_setzero_si256();
            shift_sum[r] = 0;
        }
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const sub_block s = unpack(type, x, ib);
            UNROLL for (int r = 0; r < R; r++) {
                const block_q8_K *y = ACT_ROW(block_q8_K, act, act_stride, r) + i;
                const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y->qs + 32 * ib));
                const __m256i dot = _mm256_maddubs_epi16(s.mag, _mm256_sign_epi8(q8, s.sign));
                lanes[r] = _mm256_add_epi32(lanes[r], _mm256_madd_epi16(dot, s.scale));
                if (type == GGML_TYPE_IQ1_M) {
                    const __m256i shifted = _mm256_maddubs_epi16(ones, _mm256_sign_epi8(q8, s.shift));
                    shift_lanes[r] = _mm256_add_epi32(shift_lanes[r], _mm256_madd_epi16(shifted, s.scale));
                }
                if (type == GGML_TYPE_IQ1_S)
                    shift_sum[r] += (y->bsums[2 * ib] + y->bsums[2 * ib + 1]) * s.shift_scale;
            }
        }
        const float d = block_d(type, x);
        UNROLL for (int r = 0; r < R; r++) {
            const float d_y = (ACT_ROW(block_q8_K, act, act_stride, r) + i)->d;
            if (type == GGML_TYPE_IQ1_M) shift_sum[r] = hsum_epi32(shift_lanes[r]);
            if (order == ORDER_TILED) {
                const int32_t isum = iq1 ? 8 * hsum_epi32(lanes[r]) + shift_sum[r] : hsum_epi32(lanes[r]);
                chain[r] = fmaf((float)isum * (d * 0.125f), d_y, chain[r]);
                continue;
            }
            const __m256 dd = _mm256_set1_ps(d * d_y);
            acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(lanes[r]), acc[r]);
            if (type == GGML_TYPE_IQ1_M)
                acc_shift[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(shift_lanes[r]), acc_shift[r]);
            if (type == GGML_TYPE_IQ1_S) shifts[r] = fmaf(d * d_y, (float)shift_sum[r], shifts[r]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        if (order == ORDER_TILED) out[r * ldo] = chain[r];
        else if (type == GGML_TYPE_IQ1_M) out[r * ldo] = hsum_float_8(acc[r]) + 0.125f * hsum_float_8(acc_shift[r]);
        else if (type == GGML_TYPE_IQ1_S) out[r * ldo] = hsum_float_8(acc[r]) + 0.125f * shifts[r];
        else out[r * ldo] = 0.125f * hsum_float_8(acc[r]);
    }
}

/* ================================================================ the kernel of each type and order */

static void vec_dot_iq2_xxs_q8_K_avx2(const product_args *p) { product_rows(iq_grid_rows, GGML_TYPE_IQ2_XXS, ORDER_VEC_DOT, p); }
static void vec_dot_iq2_xs_q8_K_avx2(const product_args *p) { product_rows(iq_grid_rows, GGML_TYPE_IQ2_XS, ORDER_VEC_DOT, p); }
static void vec_dot_iq2_s_q8_K_avx2(const product_args *p) { product_rows(iq_grid_rows, GGML_TYPE_IQ2_S, ORDER_VEC_DOT, p); }
static void vec_dot_iq1_s_q8_K_avx2(const product_args *p) { product_rows(iq_grid_rows, GGML_TYPE_IQ1_S, ORDER_VEC_DOT, p); }
static void vec_dot_iq1_m_q8_K_avx2(const product_args *p) { product_rows(iq_grid_rows, GGML_TYPE_IQ1_M, ORDER_VEC_DOT, p); }
static void tiled_iq2_xxs_q8_K_avx2(const product_args *p) { product_rows(iq_grid_rows, GGML_TYPE_IQ2_XXS, ORDER_TILED, p); }
static void tiled_iq2_xs_q8_K_avx2(const product_args *p) { product_rows(iq_grid_rows, GGML_TYPE_IQ2_XS, ORDER_TILED, p); }
static void tiled_iq2_s_q8_K_avx2(const product_args *p) { product_rows(iq_grid_rows, GGML_TYPE_IQ2_S, ORDER_TILED, p); }
static void tiled_iq1_s_q8_K_avx2(const product_args *p) { product_rows(iq_grid_rows, GGML_TYPE_IQ1_S, ORDER_TILED, p); }
static void tiled_iq1_m_q8_K_avx2(const product_args *p) { product_rows(iq_grid_rows, GGML_TYPE_IQ1_M, ORDER_TILED, p); }

product_fn fast_product_iq_grid(int type, product_order order) {
    const int tiled = order == ORDER_TILED;
    if (order != ORDER_VEC_DOT && !tiled) return NULL;
    switch (type) {
    case GGML_TYPE_IQ2_XXS: return tiled ? tiled_iq2_xxs_q8_K_avx2 : vec_dot_iq2_xxs_q8_K_avx2;
    case GGML_TYPE_IQ2_XS: return tiled ? tiled_iq2_xs_q8_K_avx2 : vec_dot_iq2_xs_q8_K_avx2;
    case GGML_TYPE_IQ2_S: return tiled ? tiled_iq2_s_q8_K_avx2 : vec_dot_iq2_s_q8_K_avx2;
    case GGML_TYPE_IQ1_S: return tiled ? tiled_iq1_s_q8_K_avx2 : vec_dot_iq1_s_q8_K_avx2;
    case GGML_TYPE_IQ1_M: return tiled ? tiled_iq1_m_q8_K_avx2 : vec_dot_iq1_m_q8_K_avx2;
    default: return NULL;
    }
}

#endif /* __AVX2__ */

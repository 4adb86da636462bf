/* quants_iq3_avx2.c -- AVX2 products of IQ3_XXS, IQ3_S and IQ4_XS, bit-identical to their
 * references (quants_iq3_ref.c).
 *
 * As ggml's AVX2 vec_dot kernels do (arch/x86/quants.c), 32 weights at a time:
 *   - the magnitudes go into one register: IQ3 the 8 grid points of the sub-block
 *     (_mm256_set_epi32, 8 table loads), IQ4_XS the 32 nibbles through a 16-byte table of
 *     |kvalues| (one _mm256_shuffle_epi8);
 *   - the signs as +1 / -1 bytes: IQ3_XXS ksigns64 of its 4 sign indices, IQ3_S its 32
 *     sign bits spread to bytes, IQ4_XS the signs of kvalues through a second shuffle;
 *   - they go onto the activations (_mm256_sign_epi8), _mm256_maddubs_epi16 multiplies the
 *     unsigned magnitudes by them (exact: 2 x 127 x 127 < 32767), _mm256_madd_epi16 applies
 *     the sub-block's integer scale: ggml's 8 int32 lanes.
 * Then the float order of ggml's vec_dot or of the tiled matmul (ggml_order.c draws both),
 * for R activation rows at once.
 *
 * The IQ3 grid points are gathered by their indices (_mm256_i32gather_epi32: 8 table
 * loads).  Instructions per 32 weights (decode, one activation row, counted in the source):
 * IQ4_XS ~12 (load, shift, and, 2 shuffles, abs, sign, scale, sign, maddubs, madd, add)
 * for 17 bytes of weights; IQ3_S ~20 (index assembly, a gather of 8, the sign spread,
 * scale) for 13.75 bytes; IQ3_XXS ~16 (a gather, 4 ksigns64 loads) for 12.25.
 */
#include "cpu_internal.h"

#ifdef __AVX2__

#include "avx2_blocks.h"
#include "ggml_iq_grids.h"
#include "ggml_iq3_grids.h"

/* a sub-block of 32 weights: mag (unsigned bytes), sign (+1 / -1 bytes), scale (16 x int16) */
typedef struct {
    __m256i mag, sign, scale;
} sub_block;

/* 0x00 / 0xff sign masks -> +1 / -1 */
INLINE __m256i plus_minus_one(__m256i masks) { return _mm256_or_si256(masks, _mm256_set1_epi8(1)); }

/* 32 sign bits (bit j: weight j) -> 0xff bytes where set */
INLINE __m256i sign_masks(uint32_t bits) {
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                               _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                                 0x0101010101010101, 0));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

/* the 8 grid indices of a sub-block, one per int32 lane: 8 bytes at q */
INLINE __m256i indices_8(const uint8_t *q) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)q)); }

INLINE sub_block sub_block_iq3_xxs(const block_iq3_xxs *x, int ib) {
    uint32_t aux;
    memcpy(&aux, x->qs + QK_K / 4 + 4 * ib, 4);
    sub_block s;
    s.mag = _mm256_i32gather_epi32((const int *)iq3xxs_grid, indices_8(x->qs + 8 * ib), 4);
    s.sign = plus_minus_one(_mm256_set_epi64x((long long)ksigns64[(aux >> 21) & 127], (long long)ksigns64[(aux >> 14) & 127],
                                              (long long)ksigns64[(aux >> 7) & 127], (long long)ksigns64[aux & 127]));
    s.scale = _mm256_set1_epi16((short)(2 * (aux >> 28) + 1));
    return s;
}

/* group 8 ib + l: index qs[8 ib + l] | bit l of qh[ib] << 8 */
INLINE sub_block sub_block_iq3_s(const block_iq3_s *x, int ib) {
    const __m256i high = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(x->qh[ib]), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                                          _mm256_set1_epi32(1));
    const __m256i index = _mm256_or_si256(indices_8(x->qs + 8 * ib), _mm256_slli_epi32(high, 8));
    uint32_t signs;
    memcpy(&signs, x->signs + 4 * ib, 4);
    sub_block s;
    s.mag = _mm256_i32gather_epi32((const int *)iq3s_grid, index, 4);
    s.sign = plus_minus_one(sign_masks(signs));
    s.scale = _mm256_set1_epi16((short)(2 * ((x->scales[ib / 2] >> (4 * (ib % 2))) & 15) + 1));
    return s;
}

INLINE sub_block sub_block_iq4_xs(const block_iq4_xs *x, int ib) {
    const __m128i packed = _mm_loadu_si128((const __m128i *)(x->qs + 16 * ib));
    const __m256i index = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(15));
    const __m256i values = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kvalues_iq4nl));
    const __m256i q = _mm256_shuffle_epi8(values, index);
    const int ls = ((x->scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | ((x->scales_h >> (2 * ib)) & 3) << 4;
    sub_block s;
    s.mag = _mm256_abs_epi8(q);
    s.sign = _mm256_sign_epi8(_mm256_set1_epi8(1), q);        /* kvalues has no 0 */
    s.scale = _mm256_set1_epi16((short)(ls - 32));
    return s;
}

INLINE size_t block_bytes(const int type) {
    switch (type) {
    case GGML_TYPE_IQ3_XXS: return sizeof(block_iq3_xxs);
    case GGML_TYPE_IQ3_S: return sizeof(block_iq3_s);
    default: return sizeof(block_iq4_xs);
    }
}

INLINE sub_block unpack(const int type, const void *x, int ib) {
    switch (type) {
    case GGML_TYPE_IQ3_XXS: return sub_block_iq3_xxs(x, ib);
    case GGML_TYPE_IQ3_S: return sub_block_iq3_s(x, ib);
    default: return sub_block_iq4_xs(x, ib);
    }
}

/* ================================================================ one weight row, R activation rows
 * vec_dot   lanes = fma(d_w d_y, lanes_b, lanes); out = hsum(lanes), IQ3_XXS times 0.25
 * tiled     r = isum_b d' (d' = d_w, IQ3_XXS d_w / 4); acc = fma(r, d_y, acc) */
INLINE void iq3_rows(const int type, const product_order order, const int R, int64_t k, const void *w,
                     const void *act, int64_t act_stride, float *out, int64_t ldo) {
    const int xxs = type == GGML_TYPE_IQ3_XXS;
    __m256 acc[MAX_ACT_ROWS];
    float chain[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) {
        acc[r] = _mm256_setzero_ps();
        chain[r] = 0.0f;
    }
    for (int64_t i = 0; i < k / QK_K; i++) {
        const void *x = (const char *)w + i * (int64_t)block_bytes(type);
        if (R == 1) prefetch_ahead(x, block_bytes(type));     /* decode: as the K-quants */
        __m256i lanes[MAX_ACT_ROWS];
        UNROLL for (int r = 0; r < R; r++) lanes[r] = _mm256_setzero_si256();
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const sub_block s = unpack(type, x, ib);
            UNROLL for (int r = 0; r < R; r++) {
                const block_q8_K *y = ACT_ROW(block_q8_K, act, act_stride, r) + i;
                const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y->qs + 32 * ib));
                const __m256i dot = _mm256_maddubs_epi16(s.mag, _mm256_sign_epi8(q8, s.sign));
                lanes[r] = _mm256_add_epi32(lanes[r], _mm256_madd_epi16(dot, s.scale));
            }
        }
        ggml_half h;
        memcpy(&h, x, 2);
        const float d = fp16_to_fp32(h);
        UNROLL for (int r = 0; r < R; r++) {
            const float d_y = (ACT_ROW(block_q8_K, act, act_stride, r) + i)->d;
            if (order == ORDER_TILED)
                chain[r] = fmaf((float)hsum_epi32(lanes[r]) * (xxs ? d * 0.25f : d), d_y, chain[r]);
            else
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * d_y), _mm256_cvtepi32_ps(lanes[r]), acc[r]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        if (order == ORDER_TILED) out[r * ldo] = chain[r];
        else out[r * ldo] = xxs ? 0.25f * hsum_float_8(acc[r]) : hsum_float_8(acc[r]);
    }
}

/* ================================================================ the kernel of each type and order */

static void vec_dot_iq3_xxs_q8_K_avx2(const product_args *p) { product_rows(iq3_rows, GGML_TYPE_IQ3_XXS, ORDER_VEC_DOT, p); }
static void vec_dot_iq3_s_q8_K_avx2(const product_args *p) { product_rows(iq3_rows, GGML_TYPE_IQ3_S, ORDER_VEC_DOT, p); }
static void vec_dot_iq4_xs_q8_K_avx2(const product_args *p) { product_rows(iq3_rows, GGML_TYPE_IQ4_XS, ORDER_VEC_DOT, p); }
static void tiled_iq3_xxs_q8_K_avx2(const product_args *p) { product_rows(iq3_rows, GGML_TYPE_IQ3_XXS, ORDER_TILED, p); }
static void tiled_iq3_s_q8_K_avx2(const product_args *p) { product_rows(iq3_rows, GGML_TYPE_IQ3_S, ORDER_TILED, p); }
static void tiled_iq4_xs_q8_K_avx2(const product_args *p) { product_rows(iq3_rows, GGML_TYPE_IQ4_XS, ORDER_TILED, p); }

product_fn fast_product_iq3(int type, product_order order) {
    const int tiled = order == ORDER_TILED;
    if (order != ORDER_VEC_DOT && !tiled) return NULL;
    switch (type) {
    case GGML_TYPE_IQ3_XXS: return tiled ? tiled_iq3_xxs_q8_K_avx2 : vec_dot_iq3_xxs_q8_K_avx2;
    case GGML_TYPE_IQ3_S: return tiled ? tiled_iq3_s_q8_K_avx2 : vec_dot_iq3_s_q8_K_avx2;
    case GGML_TYPE_IQ4_XS: return tiled ? tiled_iq4_xs_q8_K_avx2 : vec_dot_iq4_xs_q8_K_avx2;
    default: return NULL;
    }
}

#endif /* __AVX2__ */

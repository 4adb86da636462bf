/* quants_iq3_avx2.c -- AVX2 products of IQ3_XXS, IQ3_S and IQ4_XS, bit-identical to their
 * references (quants_iq3_ref.c).
 *
 * As ggml's AVX2 vec_dot kernels do (arch/x86/quants.c), 32 weights at a time:
 *   - the magnitudes go into one register: IQ3 the 8 grid points of the sub-block
 *     (_mm256_i32gather_epi32 by their indices: 8 table loads), IQ4_XS the 32 nibbles
 *     through the 16-byte table kvalues (one _mm256_shuffle_epi8) and _mm256_abs_epi8;
 *   - the signs (signs_32: a mask register with AVX512-BW, else bytes that are negative
 *     where the weight is): IQ3_XXS ksigns of its 4 sign indices, IQ3_S its 32 sign bits,
 *     IQ4_XS the kvalues themselves;
 *   - they go onto the activations (signed_act), _mm256_maddubs_epi16 multiplies the
 *     unsigned magnitudes by them (exact: 2 x 127 x 127 < 32767), and the sub-block's
 *     integer scale, taken once per super-block for all 8 sub-blocks (block_scales), is
 *     applied by vpmaddwd + vpaddd or AVX-VNNI's vpdpwssd: ggml's 8 int32 lanes, the same
 *     integers in any order.
 * Then the float order of ggml's vec_dot or of the tiled matmul (ggml_order.c draws both),
 * for R activation rows at once.
 *
 * Instructions per 32 weights (decode, one activation row, objdump of the built loop;
 * docs/performance.md has the measurements): IQ4_XS 10 (3 loads: the 16 packed bytes into
 * both halves, the activations, the scale; srlv, and, shuffle, abs, sign, maddubs,
 * vpdpwssd; with AVX512-BW compare, shuffle, masked sub for the middle three) for 17 bytes
 * of weights, plus 26 per super-block (scales, float tail, prefetch); IQ3_S 16, one of
 * them the gather of 8, for 13.75 bytes (AVX512-BW: 13); IQ3_XXS ~16 (a gather, 4 ksigns
 * loads) for 12.25.
 */
#include "cpu_internal.h"

#ifdef __AVX2__

#include "avx2_blocks.h"
#include "ggml_iq_grids.h"
#include "ggml_iq3_grids.h"

/* which of a sub-block's 32 weights are negative, to go onto the activations: with
 * AVX512-BW a mask register (bit j: weight j), then one masked 0 - y, and the mask comes
 * from the stored bits as they are (IQ3_S), 4 scalar table loads (IQ3_XXS) or one compare
 * (IQ4_XS), where AVX2 spreads them to bytes first; AVX2: bytes whose sign goes onto the
 * activations (vpsignb; none 0).  Either way y where the weight is positive, -y (wrapping,
 * as vpsignb) where negative. */
#ifdef HAVE_BYTE_MASKS
typedef __mmask32 signs_32;
INLINE __m256i signed_act(__m256i y, signs_32 negative) {
    return _mm256_mask_sub_epi8(y, negative, _mm256_setzero_si256(), y);
}
#else
typedef __m256i signs_32;
INLINE __m256i signed_act(__m256i y, signs_32 sign) { return _mm256_sign_epi8(y, sign); }
#endif

/* a sub-block of 32 weights: mag (unsigned bytes), sign, scale (16 x int16) */
typedef struct {
    __m256i mag, scale;
    signs_32 sign;
} sub_block;

/* lane ib = (bits >> (first + width ib)) & mask */
INLINE __m256i fields_8(uint32_t bits, int first, int width, int mask) {
    const __m256i shifts = _mm256_add_epi32(_mm256_set1_epi32(first),
                                            _mm256_setr_epi32(0, width, 2 * width, 3 * width, 4 * width, 5 * width, 6 * width, 7 * width));
    return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)bits), shifts), _mm256_set1_epi32(mask));
}

/* 2 ls + 1 from ls in int32 lanes */
INLINE __m256i odd_scales(__m256i ls) { return _mm256_add_epi32(_mm256_add_epi32(ls, ls), _mm256_set1_epi32(1)); }

#ifndef HAVE_BYTE_MASKS
/* 0x00 / 0xff sign masks -> +1 / -1 */
INLINE __m256i plus_minus_one(__m256i masks) { return _mm256_or_si256(masks, _mm256_set1_epi8(1)); }
#endif

/* 32 sign bits (bit j: weight j) -> signs_32: as they are, or bytes negative where set,
 * positive where not: byte j holds bit j alone (0 or b = 1 << j % 8), and 0 + 127 is
 * positive, b + 127 (128..255) negative */
INLINE signs_32 sign_bits(uint32_t bits) {
#ifdef HAVE_BYTE_MASKS
    return (__mmask32)bits;
#else
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                               _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                                 0x0101010101010101, 0));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_add_epi8(_mm256_and_si256(spread, bit), _mm256_set1_epi8(127));
#endif
}

/* the 8 grid indices of a sub-block, one per int32 lane: 8 bytes at q */
INLINE __m256i indices_8(const uint8_t *q) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)q)); }

INLINE sub_block sub_block_iq3_xxs(const block_iq3_xxs *x, int ib) {
    uint32_t aux;
    memcpy(&aux, x->qs + QK_K / 4 + 4 * ib, 4);
    sub_block s;
    s.mag = _mm256_i32gather_epi32((const int *)iq3xxs_grid, indices_8(x->qs + 8 * ib), 4);
#ifdef HAVE_BYTE_MASKS
    s.sign = sign_bits((uint32_t)ksigns_iq2xs[aux & 127] | (uint32_t)ksigns_iq2xs[(aux >> 7) & 127] << 8
                       | (uint32_t)ksigns_iq2xs[(aux >> 14) & 127] << 16 | (uint32_t)ksigns_iq2xs[(aux >> 21) & 127] << 24);
#else
    s.sign = plus_minus_one(_mm256_set_epi64x((long long)ksigns64[(aux >> 21) & 127], (long long)ksigns64[(aux >> 14) & 127],
                                              (long long)ksigns64[(aux >> 7) & 127], (long long)ksigns64[aux & 127]));
#endif
    return s;
}

/* ls of sub-block ib: the top 4 bits of its sign/scale word */
INLINE __m256i scales_iq3_xxs(const block_iq3_xxs *x) {
    const __m256i aux = _mm256_loadu_si256((const __m256i *)(x->qs + QK_K / 4));
    return int16_pairs(odd_scales(_mm256_srli_epi32(aux, 28)));
}

/* group 8 ib + l: index qs[8 ib + l] | bit l of qh[ib] << 8.  qh[ib] is broadcast as the
 * low byte of the 4 bytes there (a load, where a byte would go through a register and a
 * shuffle), and bit l moved to bit 8 by one variable shift */
INLINE sub_block sub_block_iq3_s(const block_iq3_s *x, int ib) {
    uint32_t qh;
    memcpy(&qh, x->qh + ib, 4);                 /* qh[ib] and the 3 bytes after it, in the block */
    const __m256i high = _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32((int)qh), _mm256_setr_epi32(8, 7, 6, 5, 4, 3, 2, 1)),
                                          _mm256_set1_epi32(256));
    const __m256i index = _mm256_or_si256(indices_8(x->qs + 8 * ib), high);
    uint32_t signs;
    memcpy(&signs, x->signs + 4 * ib, 4);
    sub_block s;
    s.mag = _mm256_i32gather_epi32((const int *)iq3s_grid, index, 4);
    s.sign = sign_bits(signs);
    return s;
}

/* ls of sub-block ib: nibble ib of the 4 scale bytes */
INLINE __m256i scales_iq3_s(const block_iq3_s *x) {
    uint32_t nibbles;
    memcpy(&nibbles, x->scales, 4);
    return int16_pairs(odd_scales(fields_8(nibbles, 0, 4, 15)));
}

/* kvalues looked up by the 32 nibbles: their absolute values the magnitudes, themselves the
 * signs (kvalues has no 0).  With masks: the magnitudes from a table of |kvalues| and the
 * signs by a compare (kvalues is sorted, its first 8 negative): a shuffle and a compare
 * on port 5 instead of vpabsb and vpsignb, which share ports 0 and 1 with the multiplies */
INLINE sub_block sub_block_iq4_xs(const block_iq4_xs *x, int ib) {
    const __m256i values = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kvalues_iq4nl));
    const __m256i nibbles = nibbles_32(x->qs + 16 * ib);
    sub_block s;
#ifdef HAVE_BYTE_MASKS
    s.mag = _mm256_shuffle_epi8(_mm256_abs_epi8(values), nibbles);        /* (the table: hoisted) */
    s.sign = _mm256_cmplt_epu8_mask(nibbles, _mm256_set1_epi8(8));
#else
    const __m256i q = _mm256_shuffle_epi8(values, nibbles);
    s.mag = _mm256_abs_epi8(q);
    s.sign = q;
#endif
    return s;
}

/* ls - 32 of sub-block ib: nibble ib of scales_l, and bits 2 ib, 2 ib + 1 of scales_h above
 * it, taken from the block's first 4 bytes (d, scales_h: a broadcast load, and one shift
 * puts them at bits 4, 5) */
INLINE __m256i scales_iq4_xs(const block_iq4_xs *x) {
    uint32_t low, d_high;
    memcpy(&low, x->scales_l, 4);
    memcpy(&d_high, x, 4);
    const __m256i ls = _mm256_or_si256(fields_8(low, 0, 4, 15), fields_8(d_high, 16 - 4, 2, 0x30));
    return _mm256_sub_epi16(int16_pairs(ls), _mm256_set1_epi16(32));
}

INLINE size_t block_bytes(const int type) {
    switch (type) {
    case GGML_TYPE_IQ3_XXS: return sizeof(block_iq3_xxs);
    case GGML_TYPE_IQ3_S: return sizeof(block_iq3_s);
    default: return sizeof(block_iq4_xs);
    }
}

INLINE void block_scales_of(const int type, const void *x, block_scales *sc) {
    __m256i pairs;
    switch (type) {
    case GGML_TYPE_IQ3_XXS: pairs = scales_iq3_xxs(x); break;
    case GGML_TYPE_IQ3_S: pairs = scales_iq3_s(x); break;
    default: pairs = scales_iq4_xs(x); break;
    }
    store_block_scales(sc, pairs);    /* (instead of the ~10 scalar instructions a 4-bit field costs) */
}

INLINE sub_block unpack(const int type, const void *x, const block_scales *sc, int ib) {
    sub_block s;
    switch (type) {
    case GGML_TYPE_IQ3_XXS: s = sub_block_iq3_xxs(x, ib); break;
    case GGML_TYPE_IQ3_S: s = sub_block_iq3_s(x, ib); break;
    default: s = sub_block_iq4_xs(x, ib); break;
    }
    s.scale = scale_of(sc, ib);
    return s;
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
        block_scales sc;
        block_scales_of(type, x, &sc);
        /* even and odd sub-blocks apart: two shorter dependency chains (vpdpwssd: 5 cycles) */
        __m256i lanes[MAX_ACT_ROWS][2];
        UNROLL for (int r = 0; r < R; r++) lanes[r][0] = lanes[r][1] = _mm256_setzero_si256();
        UNROLL for (int ib = 0; ib < QK_K / 32; ib++) {
            const sub_block s = unpack(type, x, &sc, ib);
            UNROLL for (int r = 0; r < R; r++) {
                const block_q8_K *y = ACT_ROW(block_q8_K, act, act_stride, r) + i;
                const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y->qs + 32 * ib));
                const __m256i dot = _mm256_maddubs_epi16(s.mag, signed_act(q8, s.sign));
                lanes[r][ib % 2] = dot_i16_acc(lanes[r][ib % 2], dot, s.scale);
            }
        }
        UNROLL for (int r = 0; r < R; r++) lanes[r][0] = _mm256_add_epi32(lanes[r][0], lanes[r][1]);
        ggml_half h;
        memcpy(&h, x, 2);
        const float d = fp16_to_fp32(h);
        UNROLL for (int r = 0; r < R; r++) {
            const float d_y = (ACT_ROW(block_q8_K, act, act_stride, r) + i)->d;
            if (order == ORDER_TILED)
                chain[r] = fmaf((float)hsum_epi32(lanes[r][0]) * (xxs ? d * 0.25f : d), d_y, chain[r]);
            else
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * d_y), _mm256_cvtepi32_ps(lanes[r][0]), acc[r]);
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

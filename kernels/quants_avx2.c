/* quants_avx2.c -- AVX2 products of weight rows with quantized activation rows, in each
 * of ggml's float orders (ggml_order.c), bit-identical to the reference (quants_ref.c),
 * and the activation quantizers.
 *
 * Four layers:
 *  1. lanes_32, lanes_k4, lanes_k16: block i of one weight row against R activation
 *     rows, the exact integer dot products in the 8 int32 lanes ggml's vec_dot kernels
 *     hold them in (lane l: elements e with (e % 32) / 4 == l, sub-block scales
 *     applied), plus the K-quants' min terms in ggml's lanes.  Integer products with
 *     _mm256_maddubs_epi16 (unsigned 8-bit x signed 8-bit, adjacent pairs summed to
 *     int16) then _mm256_madd_epi16 with the sub-block scales, or VNNI dot products;
 *     signed weights go through |w| * sign(y, w).  No int16 overflows: |q| <= 63 (or
 *     |w| <= 128 with |y| <= 127) x 127 x 2.
 *  2. the vec_dot (and tinyBLAS) kernels: one weight row, the lanes as 8 float
 *     accumulators, each type's float tail as ggml_order.c draws it (vec_dot_float,
 *     vec_dot_32, vec_dot_k).
 *  3. the chain kernels: one float chain per output across the blocks, as repack.cpp's
 *     gemv/gemm (chain_with_mins, chain_32) and the tiled microtile (chain_tiled) have
 *     it, each step's lanes first reduced to exact integers.
 *  4. the product_fn of each type and order, e.g. vec_dot_q4_K_q8_K_avx2: one line that
 *     names its kernel, and fast_product(), which picks them.
 *
 * Every kernel takes the weight type as a constant parameter (`const int type`) and is
 * always inlined into the product_fn of one type: the switches on the type fold away and
 * the compiler specialises each kernel per type, as a C++ template would.  Likewise R,
 * the number of activation rows (1..MAX_ACT_ROWS, product_rows): a weight block is loaded
 * and unpacked once and used R times.  For decode R = 1 and the loop is a plain streaming
 * matvec (memory bound); for prefill it turns the product compute bound.
 */
#include <math.h>
#include <stddef.h>

#include "cpu_internal.h"

#ifdef __AVX2__

#include "avx2_blocks.h"

/* ================================================================ blocks by type
 * What the kernels ask of a block of `type` (each folds to a constant or one load). */

INLINE size_t block_bytes(const int type) {
    switch (type) {
    case GGML_TYPE_Q4_0: return sizeof(block_q4_0);
    case GGML_TYPE_Q4_1: return sizeof(block_q4_1);
    case GGML_TYPE_Q5_0: return sizeof(block_q5_0);
    case GGML_TYPE_Q5_1: return sizeof(block_q5_1);
    case GGML_TYPE_Q8_0: return sizeof(block_q8_0);
    case GGML_TYPE_IQ4_NL: return sizeof(block_iq4_nl);
    case GGML_TYPE_MXFP4: return sizeof(block_mxfp4);
    case GGML_TYPE_Q2_K: return sizeof(block_q2_K);
    case GGML_TYPE_Q3_K: return sizeof(block_q3_K);
    case GGML_TYPE_Q4_K: return sizeof(block_q4_K);
    case GGML_TYPE_Q5_K: return sizeof(block_q5_K);
    default: return sizeof(block_q6_K);
    }
}

INLINE const void *block_at(const int type, const void *w, int64_t i) {
    return (const char *)w + i * (int64_t)block_bytes(type);
}

/* byte offset of the fp16 d in a block; dmin, where there is one, follows it */
INLINE size_t d_offset(const int type) {
    switch (type) {
    case GGML_TYPE_Q2_K: return offsetof(block_q2_K, d);
    case GGML_TYPE_Q3_K: return offsetof(block_q3_K, d);
    case GGML_TYPE_Q6_K: return offsetof(block_q6_K, d);
    default: return 0;                                  /* the other types start with d */
    }
}

INLINE int is_k_quant(const int type) { return type >= GGML_TYPE_Q2_K && type <= GGML_TYPE_Q6_K; }
INLINE int has_dmin(const int type) {
    return type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K;
}
/* Q4_1, Q5_1: unsigned quants and a min m, with Q8_1 activations (the other 32-element
 * types: signed quants, Q8_0) */
INLINE int has_m(const int type) { return type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1; }

INLINE float d_of(const int type, const void *block) {
    if (type == GGML_TYPE_MXFP4) return e8m0_to_fp32_half(((const block_mxfp4 *)block)->e);
    return fp16_at((const char *)block + d_offset(type));
}
INLINE float dmin_of(const int type, const void *block) { return fp16_at((const char *)block + d_offset(type) + 2); }
INLINE float m_of(const int type, const void *block) {
    return fp16_to_fp32(type == GGML_TYPE_Q5_1 ? ((const block_q5_1 *)block)->m : ((const block_q4_1 *)block)->m);
}

/* the d of block i of activation row r (Q8_K: a float; Q8_0, Q8_1: fp16), and Q8_1's s */
INLINE float act_d(const int type, const void *act, int64_t act_stride, int r, int64_t i) {
    if (is_k_quant(type)) return (ACT_ROW(block_q8_K, act, act_stride, r) + i)->d;
    if (has_m(type)) return fp16_to_fp32((ACT_ROW(block_q8_1, act, act_stride, r) + i)->d);
    return fp16_to_fp32((ACT_ROW(block_q8_0, act, act_stride, r) + i)->d);
}
INLINE float act_s(const void *act, int64_t act_stride, int r, int64_t i) {
    return fp16_to_fp32((ACT_ROW(block_q8_1, act, act_stride, r) + i)->s);
}

/* ================================================================ 1. lanes per block */

/* ---------------------------------------------------------------- 32-element blocks x Q8_0 / Q8_1
 * Per block: one 32-byte register of quants in element order, then per activation row
 * one integer dot (lane l = bytes 4l..4l+3). */

INLINE void lanes_32(const int type, const void *w, int64_t i, const void *act, int64_t act_stride,
                     const int R, __m256i lanes[]) {
    const __m256i q = quants_32(type, block_at(type, w, i));
    if (has_m(type)) {
        UNROLL for (int r = 0; r < R; r++) {
            const block_q8_1 *y = ACT_ROW(block_q8_1, act, act_stride, r) + i;
            lanes[r] = dot_u8s8(q, _mm256_loadu_si256((const __m256i *)y->qs));
        }
        return;
    }
    const __m256i q_abs = _mm256_sign_epi8(q, q);
    UNROLL for (int r = 0; r < R; r++) {
        const block_q8_0 *y = ACT_ROW(block_q8_0, act, act_stride, r) + i;
        lanes[r] = dot_u8s8(q_abs, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y->qs), q));
    }
}

/* ---------------------------------------------------------------- K-quants x Q8_K
 * Q4_K, Q5_K: 8 sub-blocks of 32, 6-bit scale sc_j and min m_j each.  A 32-byte load of
 * qs holds chunk c: sub-blocks 2c (low nibbles) and 2c+1 (high).  The min term in
 * ggml's vec_dot lanes: lane p = m_2p bsum32_2p + m_2p+1 bsum32_2p+1 (bsum32_j: sub-block
 * j's activation sum), p < 4; or, cheaper, one lane per sub-block (mins_by_sub_block):
 * lane j = m_j bsum32_j.  by_chunk: each chunk's lanes apart (Q4_K's GEMM steps), instead
 * of their sum in lanes[]. */
INLINE void lanes_k4(const int type, const void *w, int64_t i, const void *act, int64_t act_stride,
                     const int R, __m256i lanes[], __m256i mins[], const int mins_by_sub_block,
                     __m256i (*by_chunk)[4]) {
    const block_q4_K *q4 = block_at(type, w, i);
    const block_q5_K *q5 = block_at(type, w, i);
    const uint8_t *qs = type == GGML_TYPE_Q5_K ? q5->qs : q4->qs;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m128i sm = scale_min_k4(type == GGML_TYPE_Q5_K ? q5->scales : q4->scales);
    /* mins doubled, one per 16-element bsum: [m0 m0 m1 m1 ... m7 m7] as int16 */
    const __m256i m_doubled = _mm256_cvtepu8_epi16(
        _mm_shuffle_epi8(sm, _mm_set_epi8(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8)));
    const __m128i m16 = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(sm, sm));
    __m256i lanes_hi[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) {
        lanes[r] = lanes_hi[r] = _mm256_setzero_si256();
        const block_q8_K *y = ACT_ROW(block_q8_K, act, act_stride, r) + i;
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)y->bsums);
        mins[r] = mins_by_sub_block
                ? _mm256_madd_epi16(m_doubled, bsums)
                : _mm256_zextsi128_si256(_mm_madd_epi16(m16, _mm_hadd_epi16(_mm256_castsi256_si128(bsums),
                                                                            _mm256_extracti128_si256(bsums, 1))));
    }
#ifdef ZMM_LANES
    if (type == GGML_TYPE_Q4_K && !by_chunk) {
        /* chunk c in one zmm, [low nibbles | high nibbles] of its 32 bytes (a broadcast
         * load, nibbles_by_half), against the 64 contiguous activation bytes of
         * sub-blocks 2c and 2c+1; the two halves' lanes added at the end (exact integers) */
        const __m512i sm512 = _mm512_castsi128_si512(sm);
        __m512i acc[MAX_ACT_ROWS][2];       /* chunks 0, 2 and 1, 3 */
        UNROLL for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
        UNROLL for (int c = 0; c < 4; c++) {
            const __m512i qv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * c)));
            const __m512i q = nibbles_by_half(qv);
            /* int16 words: sc_2c in the lower half, sc_2c+1 in the upper (vpermb, the high
             * bytes zeroed) */
            const __m512i sub_blocks = _mm512_inserti64x4(_mm512_set1_epi8((char)(2 * c)), _mm256_set1_epi8((char)(2 * c + 1)), 1);
            const __m512i scales = _mm512_maskz_permutexvar_epi8(0x5555555555555555ULL, sub_blocks, sm512);
            UNROLL for (int r = 0; r < R; r++) {
                const int8_t *yq = (ACT_ROW(block_q8_K, act, act_stride, r) + i)->qs + 64 * c;
                const __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512((const void *)yq));
                acc[r][c % 2] = _mm512_dpwssd_epi32(acc[r][c % 2], p, scales);
            }
        }
        UNROLL for (int r = 0; r < R; r++) {
            const __m512i a = _mm512_add_epi32(acc[r][0], acc[r][1]);
            lanes[r] = _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
        }
        return;
    }
#endif
    block_scales sc;
    store_block_scales(&sc, int16_pairs(_mm256_cvtepu8_epi32(sm)));
    UNROLL for (int c = 0; c < 4; c++) {
        const __m256i qv = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i q_lo = _mm256_and_si256(qv, low4);
        __m256i q_hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), low4);
        if (type == GGML_TYPE_Q5_K) {
            q_lo = _mm256_or_si256(q_lo, fifth_bit(q5->qh, 2 * c));
            q_hi = _mm256_or_si256(q_hi, fifth_bit(q5->qh, 2 * c + 1));
        }
        UNROLL for (int r = 0; r < R; r++) {
            const int8_t *yq = (ACT_ROW(block_q8_K, act, act_stride, r) + i)->qs + 64 * c;
            const __m256i p_lo = _mm256_maddubs_epi16(q_lo, _mm256_loadu_si256((const __m256i *)yq));
            const __m256i p_hi = _mm256_maddubs_epi16(q_hi, _mm256_loadu_si256((const __m256i *)(yq + 32)));
            if (by_chunk) {
                by_chunk[r][c] = dot_i16_acc(_mm256_madd_epi16(p_lo, scale_of(&sc, 2 * c)), p_hi, scale_of(&sc, 2 * c + 1));
            } else {   /* low and high sub-blocks in two chains (vpdpwssd: 5 cycles), added at the end */
                lanes[r] = dot_i16_acc(lanes[r], p_lo, scale_of(&sc, 2 * c));
                lanes_hi[r] = dot_i16_acc(lanes_hi[r], p_hi, scale_of(&sc, 2 * c + 1));
            }
        }
    }
    if (!by_chunk) UNROLL for (int r = 0; r < R; r++) lanes[r] = _mm256_add_epi32(lanes[r], lanes_hi[r]);
}

/* Q2_K, Q3_K, Q6_K: 16 groups of 16 with one scale each.  Slice s = 4h + j (half h,
 * 32-element slice j) is one register of unsigned quants covering groups 2s and 2s+1.
 * The quants' bias, as ggml's vec_dot takes it out: Q3_K's 4 within each lane (pairs of
 * (q - 4) y, like its subtraction of 4 q8 where the high bit is clear), Q6_K's 32 through
 * the bsums, lane l = 32 (S_2l bsum_2l + S_2l+1 bsum_2l+1).  Q2_K's mins in the same
 * bsum lanes: min lane l = m_2l bsum_2l + m_2l+1 bsum_2l+1. */

/* the 16 group scales as int16 (Q2_K: the low nibbles of its scales, the mins above) */
INLINE __m256i scales_k16(const int type, const void *block) {
    switch (type) {
    case GGML_TYPE_Q2_K: {
        const __m128i packed = _mm_loadu_si128((const __m128i *)((const block_q2_K *)block)->scales);
        return _mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0x0F)));
    }
    case GGML_TYPE_Q3_K: return _mm256_cvtepi8_epi16(q3_K_scales(((const block_q3_K *)block)->scales));
    default: return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)((const block_q6_K *)block)->scales));
    }
}

INLINE __m256i slice_k16(const int type, const void *block, int s) {
    switch (type) {
    case GGML_TYPE_Q2_K: return slice_q2_K(block, s / 4, s % 4);
    case GGML_TYPE_Q3_K: return slice_q3_K(block, s / 4, s % 4);
    default: return slice_q6_K(block, s / 4, s % 4);
    }
}

/* by_half: the lanes of halves 0 and 1 apart (Q2_K's GEMM steps), instead of their sum in
 * lanes[]; mins[]: Q2_K's only */
INLINE void lanes_k16(const int type, const void *w, int64_t i, const void *act, int64_t act_stride,
                      const int R, __m256i lanes[], __m256i mins[], __m256i (*by_half)[4]) {
    const void *x = block_at(type, w, i);
    const __m256i scales16 = scales_k16(type, x);
#ifdef ZMM_LANES
    if (type == GGML_TYPE_Q6_K && !by_half) {
        /* slices 2p and 2p+1 of half h in one zmm (64 contiguous quants and activations):
         * their low nibbles are the 64 bytes of ql[64h..] (pair 0) or those bytes' high
         * nibbles (pair 1), their top two bits qh[32h..] >> 2j, moved to bits 4 and 5 */
        const block_q6_K *b = x;
        const __m512i scales_z = _mm512_castsi256_si512(scales16);
        __m512i acc[MAX_ACT_ROWS];
        UNROLL for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_si512();
        UNROLL for (int h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512((const void *)(b->ql + 64 * h));
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
            UNROLL for (int pair = 0; pair < 2; pair++) {
                const __m512i low = _mm512_and_si512(pair ? _mm512_srli_epi16(ql, 4) : ql, _mm512_set1_epi8(0x0F));
                /* slice j = 2 pair + half of the zmm: bits 2j, 2j+1 of qh to bits 4, 5 */
                const __m512i hi2 = pair
                    ? _mm512_srlv_epi16(qh, _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1))
                    : _mm512_sllv_epi16(qh, _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1));
                const __m512i q = _mm512_ternarylogic_epi32(low, hi2, _mm512_set1_epi8(0x30), 0xF8);  /* low | (hi2 & 0x30) */
                /* int16 words: the scales of groups 8h + 4 pair .. + 3, eight words each */
                const __m512i group_of_word = _mm512_srli_epi16(
                    _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,
                                     15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 3);
                const __m512i scales = _mm512_permutexvar_epi16(
                    _mm512_add_epi16(group_of_word, _mm512_set1_epi16((short)(8 * h + 4 * pair))), scales_z);
                UNROLL for (int r = 0; r < R; r++) {
                    const int8_t *yq = (ACT_ROW(block_q8_K, act, act_stride, r) + i)->qs + 128 * h + 64 * pair;
                    const __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512((const void *)yq));
                    acc[r] = _mm512_dpwssd_epi32(acc[r], p, scales);
                }
            }
        }
        UNROLL for (int r = 0; r < R; r++) {
            const __m256i bsums = _mm256_loadu_si256((const __m256i *)(ACT_ROW(block_q8_K, act, act_stride, r) + i)->bsums);
            lanes[r] = _mm256_add_epi32(_mm512_castsi512_si256(acc[r]), _mm512_extracti64x4_epi64(acc[r], 1));
            lanes[r] = _mm256_sub_epi32(lanes[r], _mm256_slli_epi32(_mm256_madd_epi16(scales16, bsums), 5));
        }
        return;
    }
#endif
    const __m256i halves[2] = {_mm256_permute4x64_epi64(scales16, 0x44), _mm256_permute4x64_epi64(scales16, 0xEE)};
    UNROLL for (int r = 0; r < R; r++) {
        lanes[r] = _mm256_setzero_si256();
        if (by_half) by_half[r][0] = by_half[r][1] = _mm256_setzero_si256();
    }
    UNROLL for (int s = 0; s < 8; s++) {
        const __m256i q = slice_k16(type, x, s);
        const __m256i sc = pair_scales(halves[s / 4], 2 * s);
        UNROLL for (int r = 0; r < R; r++) {
            const int8_t *yq = (ACT_ROW(block_q8_K, act, act_stride, r) + i)->qs + 32 * s;
            const __m256i y = _mm256_loadu_si256((const __m256i *)yq);
            __m256i p = _mm256_maddubs_epi16(q, y);
            if (type == GGML_TYPE_Q3_K) p = _mm256_sub_epi16(p, _mm256_maddubs_epi16(_mm256_set1_epi8(4), y));
            if (by_half) by_half[r][s / 4] = _mm256_add_epi32(by_half[r][s / 4], _mm256_madd_epi16(p, sc));
            else lanes[r] = _mm256_add_epi32(lanes[r], _mm256_madd_epi16(p, sc));
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)(ACT_ROW(block_q8_K, act, act_stride, r) + i)->bsums);
        if (type == GGML_TYPE_Q2_K) {             /* the mins: the high nibbles */
            const __m128i packed = _mm_loadu_si128((const __m128i *)((const block_q2_K *)x)->scales);
            const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F)));
            mins[r] = _mm256_madd_epi16(m16, bsums);
        }
        if (type == GGML_TYPE_Q6_K)
            lanes[r] = _mm256_sub_epi32(lanes[r], _mm256_slli_epi32(_mm256_madd_epi16(scales16, bsums), 5));
    }
}

/* any K-quant; by_step: the lanes of each GEMM step apart (Q4_K 4 of 64, Q2_K 2 of 128) */
INLINE void lanes_k(const int type, const void *w, int64_t i, const void *act, int64_t act_stride,
                    const int R, __m256i lanes[], __m256i mins[], const int mins_by_sub_block,
                    __m256i (*by_step)[4]) {
    if (type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K)
        lanes_k4(type, w, i, act, act_stride, R, lanes, mins, mins_by_sub_block, by_step);
    else
        lanes_k16(type, w, i, act, act_stride, R, lanes, mins, by_step);
}

/* ================================================================ 2. vec_dot and tinyBLAS
 * A row kernel: one weight row w against R activation rows, out[r * ldo] for row r. */

/* ---------------------------------------------------------------- float weights x f32 activations
 * (not ggml's order: ggml_order.c).  16 weights per step in two accumulators per row
 * (FMA latency), scalar tail. */

INLINE __m256 load8_float(const int type, const void *w, int64_t i) {
    switch (type) {
    case GGML_TYPE_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const ggml_half *)w + i)));
    case GGML_TYPE_BF16: {
        const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    }
    default: return _mm256_loadu_ps((const float *)w + i);
    }
}

INLINE float float_at(const int type, const void *w, int64_t i) {
    switch (type) {
    case GGML_TYPE_F16: return fp16_to_fp32(((const ggml_half *)w)[i]);
    case GGML_TYPE_BF16: return bf16_to_fp32(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

INLINE void vec_dot_float(const int type, const product_order order, const int R, int64_t k, const void *w,
                          const void *act, int64_t act_stride, float *out, int64_t ldo) {
    (void)order;
    __m256 acc0[MAX_ACT_ROWS], acc1[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) acc0[r] = acc1[r] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        const __m256 w0 = load8_float(type, w, i), w1 = load8_float(type, w, i + 8);
        UNROLL for (int r = 0; r < R; r++) {
            const float *y = ACT_ROW(float, act, act_stride, r) + i;
            acc0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(y), acc0[r]);
            acc1[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(y + 8), acc1[r]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        const float *y = ACT_ROW(float, act, act_stride, r);
        float sum = hsum_float_8(_mm256_add_ps(acc0[r], acc1[r]));
        for (int64_t j = i; j < k; j++) sum += float_at(type, w, j) * y[j];
        out[r * ldo] = sum;
    }
}

/* ---------------------------------------------------------------- 32-element blocks
 * Q4_0 Q5_0 Q8_0 (and every one of them in tinyBLAS): lanes = fma(d d_y, lanes_b, lanes);
 * hsum.  Q4_1 Q5_1: the same, and m s_y summed apart (exact: fp16 x fp16); hsum + that.
 * IQ4_NL's and MXFP4's vec_dot: even and odd blocks in two accumulators, an odd last block alone,
 * its d * (float) sum added after the horizontal sum (add_scalar_tail: fused or not, as
 * GCC compiles llama.cpp for this CPU). */
INLINE void vec_dot_32(const int type, const product_order order, const int R, int64_t k, const void *w,
                       const void *act, int64_t act_stride, float *out, int64_t ldo) {
    const int paired = (type == GGML_TYPE_IQ4_NL || type == GGML_TYPE_MXFP4) && order == ORDER_VEC_DOT;
    const int64_t nb = k / 32;
    __m256 acc[2][MAX_ACT_ROWS];
    float summs[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) {
        acc[0][r] = acc[1][r] = _mm256_setzero_ps();
        summs[r] = 0.0f;
    }
    for (int64_t i = 0; i < (paired ? nb - nb % 2 : nb); i++) {
        __m256i lanes[MAX_ACT_ROWS];
        const void *x = block_at(type, w, i);
        if (R == 1) prefetch_ahead(x, block_bytes(type));
        lanes_32(type, w, i, act, act_stride, R, lanes);
        const float d = d_of(type, x);
        UNROLL for (int r = 0; r < R; r++) {
            __m256 *a = &acc[paired ? i % 2 : 0][r];
            const float d_y = act_d(type, act, act_stride, r, i);
            *a = _mm256_fmadd_ps(_mm256_set1_ps(d * d_y), _mm256_cvtepi32_ps(lanes[r]), *a);
            if (has_m(type)) summs[r] = fmaf(m_of(type, x), act_s(act, act_stride, r, i), summs[r]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        const float sum = hsum_float_8(paired ? _mm256_add_ps(acc[0][r], acc[1][r]) : acc[0][r]);
        out[r * ldo] = has_m(type) ? sum + summs[r] : sum;
    }
    if (paired && nb % 2) {
        __m256i lanes[MAX_ACT_ROWS];
        lanes_32(type, w, nb - 1, act, act_stride, R, lanes);
        const float d = d_of(type, block_at(type, w, nb - 1));
        UNROLL for (int r = 0; r < R; r++)
            out[r * ldo] = add_scalar_tail(out[r * ldo], act_d(type, act, act_stride, r, nb - 1) * d,
                                           (float)hsum_epi32(lanes[r]));
    }
}

/* ---------------------------------------------------------------- K-quants
 * lanes = fma(d_y d, lanes_b, lanes); hsum; and each type's min term:
 *   Q2_K  its 8 min lanes first, lanes = fma(-d_y dmin, min_b, lanes)
 *   Q4_K  4 float min lanes, fma(-d_y dmin, min_b, .), added after the hsum as
 *         (m0 + m2) + (m1 + m3)
 *   Q5_K  the 4 min lanes summed as integers, s = fma(-d_y dmin, (float) sum, s),
 *         added after the hsum */
INLINE void vec_dot_k(const int type, const product_order order, const int R, int64_t k, const void *w,
                      const void *act, int64_t act_stride, float *out, int64_t ldo) {
    (void)order;
    __m256 acc[MAX_ACT_ROWS];
    __m128 acc_m[MAX_ACT_ROWS];
    float summs[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) {
        acc[r] = _mm256_setzero_ps();
        acc_m[r] = _mm_setzero_ps();
        summs[r] = 0.0f;
    }
    for (int64_t i = 0; i < k / QK_K; i++) {
        const void *x = block_at(type, w, i);
        if (R == 1) prefetch_ahead(x, block_bytes(type));
        __m256i lanes[MAX_ACT_ROWS], mins[MAX_ACT_ROWS];
        lanes_k(type, w, i, act, act_stride, R, lanes, mins, 0, NULL);
        const float d = d_of(type, x), dmin = has_dmin(type) ? dmin_of(type, x) : 0.0f;
        UNROLL for (int r = 0; r < R; r++) {
            const float d_y = act_d(type, act, act_stride, r, i);
            if (type == GGML_TYPE_Q2_K)
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(-d_y * dmin), _mm256_cvtepi32_ps(mins[r]), acc[r]);
            if (type == GGML_TYPE_Q4_K)
                acc_m[r] = _mm_fmadd_ps(_mm_set1_ps(-d_y * dmin), _mm_cvtepi32_ps(_mm256_castsi256_si128(mins[r])),
                                        acc_m[r]);
            if (type == GGML_TYPE_Q5_K)
                summs[r] = fmaf(-d_y * dmin, (float)hsum_epi32_4(_mm256_castsi256_si128(mins[r])), summs[r]);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d_y * d), _mm256_cvtepi32_ps(lanes[r]), acc[r]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) {
        if (type == GGML_TYPE_Q4_K) {
            const __m128 m = _mm_add_ps(acc_m[r], _mm_movehl_ps(acc_m[r], acc_m[r]));
            summs[r] = _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
        }
        const float sum = hsum_float_8(acc[r]);
        out[r * ldo] = type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K ? sum + summs[r] : sum;
    }
}

/* ================================================================ 3. GEMV, GEMM and TILED chains
 * One float chain per output, advancing by steps (a block; in GEMM 64 elements of Q4_K
 * or 128 of Q2_K):
 *   GEMV, GEMM  acc = fma(isum, d d_y, acc); acc_min = fma(imin, dmin d_y, acc_min);
 *               out = acc - acc_min
 *   TILED       r = isum d; r = fma(-dmin, imin, r); acc = fma(r, d_y, acc)
 * Each weight row is read as one stream, like the vec_dot kernels (a kernel that read 8
 * rows side by side, as ggml's repacked gemv does, would interleave 8 streams and lose
 * half the bandwidth on rows that are not interleaved in memory). */

/* the fp16 at byte `offset` of blocks i .. i+3 (block_bytes apart) -> 4 floats */
INLINE __m128 fp16_4(const void *w, size_t block_bytes, int64_t i, size_t offset) {
    const char *p = (const char *)w + i * (int64_t)block_bytes + offset;
    uint16_t h[4];
    for (int q = 0; q < 4; q++) memcpy(&h[q], p + q * block_bytes, 2);
    uint64_t u;
    memcpy(&u, h, 8);
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)u));
}

/* the d of block i of activation rows 0 .. R-1 (Q8_0 activations; 0 past R) */
INLINE __m128 act_d_rows_q8_0(const void *act, int64_t act_stride, int R, int64_t i) {
    uint16_t h[4] = {0};
    for (int r = 0; r < R; r++) h[r] = (ACT_ROW(block_q8_0, act, act_stride, r) + i)->d;
    uint64_t u;
    memcpy(&u, h, 8);
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)u));
}

/* [sum of a's lanes, sum of b's, the same two again] (exact, wrapping) */
INLINE __m128i sums_2(__m256i a, __m256i b) {
    const __m256i t = _mm256_hadd_epi32(a, b);
    const __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    return _mm_hadd_epi32(u, u);
}

/* [isum, imin] of four blocks q = 0..3 in lanes 2q, 2q+1: the sums of each lanes[q] and
 * mins[q] (exact, wrapping), in nine instructions instead of four per block */
INLINE __m256i sums_4x2(const __m256i lanes[4], const __m256i mins[4]) {
    const __m256i t01 = _mm256_hadd_epi32(_mm256_hadd_epi32(lanes[0], mins[0]), _mm256_hadd_epi32(lanes[1], mins[1]));
    const __m256i t23 = _mm256_hadd_epi32(_mm256_hadd_epi32(lanes[2], mins[2]), _mm256_hadd_epi32(lanes[3], mins[3]));
    /* each 128-bit half of t01: [isum0, imin0, isum1, imin1] over 4 of the 8 lanes */
    return _mm256_add_epi32(_mm256_permute2x128_si256(t01, t23, 0x20), _mm256_permute2x128_si256(t01, t23, 0x31));
}

/* Four items q = 0..3 of a GEMV with mins, item q being block i + q block_step of the row
 * at w + q row_stride (one row's blocks i .. i+3, or block i of four rows): their [isum,
 * imin] in lanes 2q, 2q+1 as floats (exact integers, reduced together by sums_4x2), and
 * their [d d_y, dmin d_y] in the same lanes */
INLINE void items_4(const int type, const void *w, int64_t row_stride, const int block_step, int64_t i,
                    const void *act, __m256 *isum_imin, __m256 *d_dmin) {
    __m256i lanes[4], mins[4];
    uint32_t pair[4];                   /* d, dmin as two fp16 */
    UNROLL for (int q = 0; q < 4; q++) {
        const void *row = (const char *)w + q * row_stride;
        lanes_k(type, row, i + q * block_step, act, 0, 1, &lanes[q], &mins[q], 1, NULL);
        memcpy(&pair[q], (const char *)block_at(type, row, i + q * block_step) + d_offset(type), 4);
    }
    *isum_imin = _mm256_cvtepi32_ps(sums_4x2(lanes, mins));
    const __m128i halves = _mm_set_epi64x((long long)((uint64_t)pair[3] << 32 | pair[2]),
                                          (long long)((uint64_t)pair[1] << 32 | pair[0]));
    const block_q8_K *y = (const block_q8_K *)act + i;
    *d_dmin = _mm256_mul_ps(_mm256_cvtph_ps(halves),
                            _mm256_setr_ps(y[0].d, y[0].d, y[block_step].d, y[block_step].d,
                                           y[2 * block_step].d, y[2 * block_step].d,
                                           y[3 * block_step].d, y[3 * block_step].d));
}

/* One row's GEMV four blocks at a time (chain_with_mins, R = 1): the four blocks' integers
 * reduced together, then the same four fmas in block order, so the same bits */
INLINE int64_t gemv_with_mins_4(const int type, int64_t nb, const void *w, const void *act, __m128 *acc) {
    int64_t i = 0;
    for (; i + 3 < nb; i += 4) {
        prefetch_ahead(block_at(type, w, i), 4 * block_bytes(type));
        __m256 f, sc;
        items_4(type, w, 0, 1, i, act, &f, &sc);
        const __m128 f01 = _mm256_castps256_ps128(f), f23 = _mm256_extractf128_ps(f, 1);
        const __m128 s01 = _mm256_castps256_ps128(sc), s23 = _mm256_extractf128_ps(sc, 1);
        *acc = _mm_fmadd_ps(f01, s01, *acc);                     /* lanes 0, 1: block i */
        *acc = _mm_fmadd_ps(_mm_movehl_ps(f01, f01), _mm_movehl_ps(s01, s01), *acc);
        *acc = _mm_fmadd_ps(f23, s23, *acc);
        *acc = _mm_fmadd_ps(_mm_movehl_ps(f23, f23), _mm_movehl_ps(s23, s23), *acc);
    }
    return i;                           /* the blocks done */
}

/* Four rows' GEMV side by side (one activation row): row q's [acc, acc_min] in lanes 2q,
 * 2q+1 of one register, one fma per block for all four.  Each lane's chain runs in block
 * order, so the bits are those of four one-row GEMVs, for a quarter of their float work
 * (the float tail was a third of a Q4_K block's instructions) and with no block left to
 * the one-block loop (a 1536-wide row has 6). */
INLINE void gemv_4_rows_with_mins(const int type, int64_t nb, const void *w, int64_t w_stride, const void *act,
                                  float *out) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        UNROLL for (int q = 0; q < 4; q++)
            prefetch_ahead(block_at(type, (const char *)w + q * w_stride, i), block_bytes(type));
        __m256 f, sc;
        items_4(type, w, w_stride, 0, i, act, &f, &sc);
        acc = _mm256_fmadd_ps(f, sc, acc);
    }
    float chains[8];
    _mm256_storeu_ps(chains, acc);
    for (int q = 0; q < 4; q++) out[q] = chains[2 * q] - chains[2 * q + 1];
}

/* GEMV and GEMM of Q2_K and Q4_K: isum and imin reduced together, [acc, acc_min] in one
 * register; a GEMM's steps from one unpacking of the block */
INLINE void chain_with_mins(const int type, const product_order order, const int R, int64_t k, const void *w,
                            const void *act, int64_t act_stride, float *out, int64_t ldo) {
    const int steps = order != ORDER_GEMM ? 1 : type == GGML_TYPE_Q4_K ? 4 : 2;
    __m128 acc[MAX_ACT_ROWS];                   /* lanes: acc, acc_min (, junk) */
    UNROLL for (int r = 0; r < R; r++) acc[r] = _mm_setzero_ps();
    int64_t first = 0;
    if (R == 1 && steps == 1) first = gemv_with_mins_4(type, k / QK_K, w, act, &acc[0]);
    for (int64_t i = first; i < k / QK_K; i++) {
        if (R == 1) prefetch_ahead(block_at(type, w, i), block_bytes(type));
        int32_t fp16_pair;
        memcpy(&fp16_pair, (const char *)block_at(type, w, i) + d_offset(type), 4);
        __m128 d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(fp16_pair));     /* d, dmin, 0, 0 */
        d_dmin = _mm_movelh_ps(d_dmin, d_dmin);                         /* d, dmin, d, dmin */
        __m256i lanes[MAX_ACT_ROWS], mins[MAX_ACT_ROWS], by_step[MAX_ACT_ROWS][4];
        lanes_k(type, w, i, act, act_stride, R, lanes, mins, 1, steps > 1 ? by_step : NULL);
        UNROLL for (int r = 0; r < R; r++) {
            const __m128 sc = _mm_mul_ps(d_dmin, _mm_set1_ps(act_d(type, act, act_stride, r, i)));
            if (steps == 1) {
                acc[r] = _mm_fmadd_ps(_mm_cvtepi32_ps(sums_2(lanes[r], mins[r])), sc, acc[r]);
                continue;
            }
            /* GEMM: [isum_s, imin_s] of each step s, the steps in order */
            __m128i im01, im23 = _mm_setzero_si128();
            if (steps == 4) {              /* Q4_K: mins one lane per sub-block */
                const __m256i a = _mm256_hadd_epi32(by_step[r][0], by_step[r][1]);
                const __m256i b = _mm256_hadd_epi32(by_step[r][2], by_step[r][3]);
                const __m256i c = _mm256_hadd_epi32(a, b);
                const __m128i is = _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
                const __m256i m = _mm256_hadd_epi32(mins[r], mins[r]);
                const __m128i ms = _mm_unpacklo_epi64(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
                im01 = _mm_unpacklo_epi32(is, ms);
                im23 = _mm_unpackhi_epi32(is, ms);
            } else {                       /* Q2_K: mins of groups 2l, 2l+1 in lane l */
                const __m256i a = _mm256_hadd_epi32(by_step[r][0], by_step[r][1]);
                const __m256i b = _mm256_hadd_epi32(_mm256_zextsi128_si256(_mm256_castsi256_si128(mins[r])),
                                                    _mm256_zextsi128_si256(_mm256_extracti128_si256(mins[r], 1)));
                const __m256i c = _mm256_hadd_epi32(a, b);
                const __m128i t = _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
                im01 = _mm_shuffle_epi32(t, 0xD8);      /* I0 M0 I1 M1 */
            }
            const __m128 f01 = _mm_cvtepi32_ps(im01);
            acc[r] = _mm_fmadd_ps(f01, sc, acc[r]);
            acc[r] = _mm_fmadd_ps(_mm_movehl_ps(f01, f01), sc, acc[r]);
            if (steps == 4) {
                const __m128 f23 = _mm_cvtepi32_ps(im23);
                acc[r] = _mm_fmadd_ps(f23, sc, acc[r]);
                acc[r] = _mm_fmadd_ps(_mm_movehl_ps(f23, f23), sc, acc[r]);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) out[r * ldo] = _mm_cvtss_f32(acc[r]) - _mm_cvtss_f32(_mm_movehdup_ps(acc[r]));
}

/* GEMV (and GEMM: a block is one step) of Q4_0, IQ4_NL and MXFP4: acc = fma(isum, d d_y, acc).
 * Several activation rows: their chains side by side in the lanes of one register; one
 * row: four blocks reduced together, then four chained fmas. */
INLINE void chain_32(const int type, const product_order order, const int R, int64_t k, const void *w,
                     const void *act, int64_t act_stride, float *out, int64_t ldo) {
    (void)order;
    const int64_t nb = k / 32;
    if (R > 1) {
        __m128 acc4 = _mm_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            __m256i lanes[MAX_ACT_ROWS];
            lanes_32(type, w, i, act, act_stride, R, lanes);
            UNROLL for (int r = R; r < MAX_ACT_ROWS; r++) lanes[r] = _mm256_setzero_si256();
            const __m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(lanes[0], lanes[1]),
                                                _mm256_hadd_epi32(lanes[2], lanes[3]));
            const __m128 t = _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1)));
            const __m128 sc = _mm_mul_ps(_mm_set1_ps(d_of(type, block_at(type, w, i))),
                                         act_d_rows_q8_0(act, act_stride, R, i));
            acc4 = _mm_fmadd_ps(t, sc, acc4);
        }
        float a[4];
        _mm_storeu_ps(a, acc4);
        UNROLL for (int r = 0; r < R; r++) out[r * ldo] = a[r];
        return;
    }
    float acc = 0.0f;
    int64_t i = 0;
    for (; i + 3 < nb; i += 4) {
        prefetch_ahead(block_at(type, w, i), 4 * block_bytes(type));
        __m256i lq[4];
        UNROLL for (int q = 0; q < 4; q++) lanes_32(type, w, i + q, act, act_stride, 1, &lq[q]);
        const __m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(lq[0], lq[1]), _mm256_hadd_epi32(lq[2], lq[3]));
        __m128 t = _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1)));
        const __m128 d4 = type == GGML_TYPE_MXFP4       /* E8M0 scales: one by one */
            ? _mm_set_ps(d_of(type, block_at(type, w, i + 3)), d_of(type, block_at(type, w, i + 2)),
                         d_of(type, block_at(type, w, i + 1)), d_of(type, block_at(type, w, i)))
            : fp16_4(w, block_bytes(type), i, d_offset(type));
        __m128 sc = _mm_mul_ps(d4, fp16_4(act, sizeof(block_q8_0), i, offsetof(block_q8_0, d)));
        __m128 a0 = _mm_set_ss(acc);
        UNROLL for (int q = 0; q < 4; q++) {                   /* block i + q: lane q */
            a0 = _mm_fmadd_ss(t, sc, a0);
            t = _mm_shuffle_ps(t, t, 0x39);
            sc = _mm_shuffle_ps(sc, sc, 0x39);
        }
        acc = _mm_cvtss_f32(a0);
    }
    for (; i < nb; i++) {
        __m256i lanes;
        lanes_32(type, w, i, act, act_stride, 1, &lanes);
        acc = fmaf((float)hsum_epi32(lanes), d_of(type, block_at(type, w, i)) * act_d(type, act, act_stride, 0, i), acc);
    }
    out[0] = acc;
}

/* TILED of the K-quants, one block at a time: r = isum d; r = fma(-dmin, imin, r) (types
 * with mins); acc = fma(r, d_y, acc) */
INLINE void chain_tiled(const int type, const product_order order, const int R, int64_t k, const void *w,
                        const void *act, int64_t act_stride, float *out, int64_t ldo) {
    (void)order;
    float acc[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) acc[r] = 0.0f;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const void *x = block_at(type, w, i);
        const float d = d_of(type, x), dmin = has_dmin(type) ? dmin_of(type, x) : 0.0f;
        __m256i lanes[MAX_ACT_ROWS], mins[MAX_ACT_ROWS];
        lanes_k(type, w, i, act, act_stride, R, lanes, mins, 1, NULL);
        UNROLL for (int r = 0; r < R; r++) {
            float p = (float)hsum_epi32(lanes[r]) * d;
            if (has_dmin(type)) p = fmaf(-dmin, (float)hsum_epi32(mins[r]), p);
            acc[r] = fmaf(p, act_d(type, act, act_stride, r, i), acc[r]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) out[r * ldo] = acc[r];
}

/* GEMV of Q2_K and Q4_K: with one activation row, short rows four at a time.  Long rows
 * stay one stream each: four 5 KB rows (Q4_K, 8960 wide) side by side read at 4/5 of the
 * rate of one after another from memory, where four 864-byte rows (1536 wide), one
 * 3.4 KB stretch, read as fast and compute a fifth faster. */
#define SHORT_ROW_BYTES 2048
INLINE void gemv_with_mins(const int type, const product_args *p) {
    product_args rest = *p;
    if (p->n_act == 1 && p->k / QK_K * (int64_t)block_bytes(type) <= SHORT_ROW_BYTES)
        for (; rest.n_rows >= 4; rest.n_rows -= 4) {
            gemv_4_rows_with_mins(type, p->k / QK_K, rest.w, p->w_stride, p->act, rest.out);
            rest.w = (const char *)rest.w + 4 * p->w_stride;
            rest.out += 4;
        }
    product_rows(chain_with_mins, type, ORDER_GEMV, &rest);
}

/* ================================================================ 4. the kernel of each type and order */

static void vec_dot_f32_f32_avx2(const product_args *p) { product_rows(vec_dot_float, GGML_TYPE_F32, ORDER_VEC_DOT, p); }
static void vec_dot_f16_f32_avx2(const product_args *p) { product_rows(vec_dot_float, GGML_TYPE_F16, ORDER_VEC_DOT, p); }
static void vec_dot_bf16_f32_avx2(const product_args *p) { product_rows(vec_dot_float, GGML_TYPE_BF16, ORDER_VEC_DOT, p); }
static void vec_dot_q4_0_q8_0_avx2(const product_args *p) { product_rows(vec_dot_32, GGML_TYPE_Q4_0, ORDER_VEC_DOT, p); }
static void vec_dot_q4_1_q8_1_avx2(const product_args *p) { product_rows(vec_dot_32, GGML_TYPE_Q4_1, ORDER_VEC_DOT, p); }
static void vec_dot_q5_0_q8_0_avx2(const product_args *p) { product_rows(vec_dot_32, GGML_TYPE_Q5_0, ORDER_VEC_DOT, p); }
static void vec_dot_q5_1_q8_1_avx2(const product_args *p) { product_rows(vec_dot_32, GGML_TYPE_Q5_1, ORDER_VEC_DOT, p); }
static void vec_dot_q8_0_q8_0_avx2(const product_args *p) { product_rows(vec_dot_32, GGML_TYPE_Q8_0, ORDER_VEC_DOT, p); }
static void vec_dot_iq4_nl_q8_0_avx2(const product_args *p) { product_rows(vec_dot_32, GGML_TYPE_IQ4_NL, ORDER_VEC_DOT, p); }
static void tinyblas_iq4_nl_q8_0_avx2(const product_args *p) { product_rows(vec_dot_32, GGML_TYPE_IQ4_NL, ORDER_TINYBLAS, p); }
static void vec_dot_mxfp4_q8_0_avx2(const product_args *p) { product_rows(vec_dot_32, GGML_TYPE_MXFP4, ORDER_VEC_DOT, p); }
static void vec_dot_q2_K_q8_K_avx2(const product_args *p) { product_rows(vec_dot_k, GGML_TYPE_Q2_K, ORDER_VEC_DOT, p); }
static void vec_dot_q3_K_q8_K_avx2(const product_args *p) { product_rows(vec_dot_k, GGML_TYPE_Q3_K, ORDER_VEC_DOT, p); }
static void vec_dot_q4_K_q8_K_avx2(const product_args *p) { product_rows(vec_dot_k, GGML_TYPE_Q4_K, ORDER_VEC_DOT, p); }
static void vec_dot_q5_K_q8_K_avx2(const product_args *p) { product_rows(vec_dot_k, GGML_TYPE_Q5_K, ORDER_VEC_DOT, p); }
static void vec_dot_q6_K_q8_K_avx2(const product_args *p) { product_rows(vec_dot_k, GGML_TYPE_Q6_K, ORDER_VEC_DOT, p); }
static void gemv_q4_0_q8_0_avx2(const product_args *p) { product_rows(chain_32, GGML_TYPE_Q4_0, ORDER_GEMV, p); }
static void gemv_iq4_nl_q8_0_avx2(const product_args *p) { product_rows(chain_32, GGML_TYPE_IQ4_NL, ORDER_GEMV, p); }
static void gemv_mxfp4_q8_0_avx2(const product_args *p) { product_rows(chain_32, GGML_TYPE_MXFP4, ORDER_GEMV, p); }
static void gemv_q2_K_q8_K_avx2(const product_args *p) { gemv_with_mins(GGML_TYPE_Q2_K, p); }
static void gemm_q2_K_q8_K_avx2(const product_args *p) { product_rows(chain_with_mins, GGML_TYPE_Q2_K, ORDER_GEMM, p); }
static void gemv_q4_K_q8_K_avx2(const product_args *p) { gemv_with_mins(GGML_TYPE_Q4_K, p); }
static void gemm_q4_K_q8_K_avx2(const product_args *p) { product_rows(chain_with_mins, GGML_TYPE_Q4_K, ORDER_GEMM, p); }
static void tiled_q2_K_q8_K_avx2(const product_args *p) { product_rows(chain_tiled, GGML_TYPE_Q2_K, ORDER_TILED, p); }
static void tiled_q3_K_q8_K_avx2(const product_args *p) { product_rows(chain_tiled, GGML_TYPE_Q3_K, ORDER_TILED, p); }
static void tiled_q4_K_q8_K_avx2(const product_args *p) { product_rows(chain_tiled, GGML_TYPE_Q4_K, ORDER_TILED, p); }
static void tiled_q5_K_q8_K_avx2(const product_args *p) { product_rows(chain_tiled, GGML_TYPE_Q5_K, ORDER_TILED, p); }
static void tiled_q6_K_q8_K_avx2(const product_args *p) { product_rows(chain_tiled, GGML_TYPE_Q6_K, ORDER_TILED, p); }

/* ggml's vec_dot of each type */
static product_fn vec_dot_avx2(int type) {
    switch (type) {
    case GGML_TYPE_F32: return vec_dot_f32_f32_avx2;
    case GGML_TYPE_F16: return vec_dot_f16_f32_avx2;
    case GGML_TYPE_BF16: return vec_dot_bf16_f32_avx2;
    case GGML_TYPE_Q4_0: return vec_dot_q4_0_q8_0_avx2;
    case GGML_TYPE_Q4_1: return vec_dot_q4_1_q8_1_avx2;
    case GGML_TYPE_Q5_0: return vec_dot_q5_0_q8_0_avx2;
    case GGML_TYPE_Q5_1: return vec_dot_q5_1_q8_1_avx2;
    case GGML_TYPE_Q8_0: return vec_dot_q8_0_q8_0_avx2;
    case GGML_TYPE_IQ4_NL: return vec_dot_iq4_nl_q8_0_avx2;
    case GGML_TYPE_MXFP4: return vec_dot_mxfp4_q8_0_avx2;
    case GGML_TYPE_Q2_K: return vec_dot_q2_K_q8_K_avx2;
    case GGML_TYPE_Q3_K: return vec_dot_q3_K_q8_K_avx2;
    case GGML_TYPE_Q4_K: return vec_dot_q4_K_q8_K_avx2;
    case GGML_TYPE_Q5_K: return vec_dot_q5_K_q8_K_avx2;
    case GGML_TYPE_Q6_K: return vec_dot_q6_K_q8_K_avx2;
    default: return NULL;
    }
}

product_fn fast_product(int type, product_order order) {
    const product_fn codebook = fast_product_iq_grid(type, order);      /* quants_iq_grid_avx2.c */
    if (codebook) return codebook;
    const product_fn iq3 = fast_product_iq3(type, order);               /* quants_iq3_avx2.c */
    if (iq3) return iq3;
    const product_fn lowbit = fast_product_lowbit(type, order);         /* quants_lowbit_avx2.c */
    if (lowbit) return lowbit;
    switch (order) {
    case ORDER_VEC_DOT: return vec_dot_avx2(type);
    case ORDER_TINYBLAS:                /* Q4_0, Q5_0 and Q8_0 sum as in their vec_dot */
        if (type == GGML_TYPE_IQ4_NL) return tinyblas_iq4_nl_q8_0_avx2;
        return type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q8_0 ? vec_dot_avx2(type) : NULL;
    case ORDER_GEMV:
    case ORDER_GEMM:                    /* a block of Q4_0 or IQ4_NL is one gemm step: as gemv */
        switch (type) {
        case GGML_TYPE_Q4_0: return gemv_q4_0_q8_0_avx2;
        case GGML_TYPE_IQ4_NL: return gemv_iq4_nl_q8_0_avx2;
        case GGML_TYPE_MXFP4: return gemv_mxfp4_q8_0_avx2;
        case GGML_TYPE_Q2_K: return order == ORDER_GEMM ? gemm_q2_K_q8_K_avx2 : gemv_q2_K_q8_K_avx2;
        case GGML_TYPE_Q4_K: return order == ORDER_GEMM ? gemm_q4_K_q8_K_avx2 : gemv_q4_K_q8_K_avx2;
        default: return NULL;
        }
    case ORDER_TILED:
        switch (type) {
        case GGML_TYPE_Q2_K: return tiled_q2_K_q8_K_avx2;
        case GGML_TYPE_Q3_K: return tiled_q3_K_q8_K_avx2;
        case GGML_TYPE_Q4_K: return tiled_q4_K_q8_K_avx2;
        case GGML_TYPE_Q5_K: return tiled_q5_K_q8_K_avx2;
        case GGML_TYPE_Q6_K: return tiled_q6_K_q8_K_avx2;
        default: return NULL;
        }
    default: return NULL;
    }
}

/* ================================================================ activation quantization
 * Same arithmetic as the references, eight lanes at a time, so the bytes are identical. */

INLINE __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

INLINE float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* 32 int32 in four registers -> 32 int8 in element order (saturating, as ggml's packs) */
INLINE __m256i pack_32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    /* lanes now hold 4-element groups in the order a0 b0 c0 d0 a1 b1 c1 d1 */
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void quantize_row_q8_K_avx2(const float *x, void *vy, int64_t k) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        __m256 vmax = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8)      /* max(new, old): a NaN is skipped, like the reference */
            vmax = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + j)), vmax);
        const float amax = hmax_ps(vmax);
        if (amax == 0.0f) {                      /* also NaN-free all-zero: as the reference */
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        int first = 0;                           /* the reference keeps the first largest |x| */
        while (first < QK_K - 1 && __builtin_fabsf(x[first]) != amax) first++;
        const float iscale = -127.0f / x[first];
        const __m256 vs = _mm256_set1_ps(iscale);
        const __m256i top = _mm256_set1_epi32(127);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i v[4];
            for (int u = 0; u < 4; u++)            /* cvtps rounds half to even, as nearest_int */
                v[u] = _mm256_min_epi32(top, _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(x + j + 8 * u))));
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), pack_32(v[0], v[1], v[2], v[3]));
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[i].qs[16 * g + j];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* Q8_0 and Q8_1 blocks with ggml-cpu's x86 instructions (quantize_row_q8_0 / q8_1, the
 * run-time activation quantizers; the scalar version in quants_ref.c says what they do
 * with extreme blocks); with_sum adds Q8_1's s = fp16(d * sum(lanes)) */
INLINE void quantize_row_q8_01(const float *x, void *vy, int64_t k, const int with_sum) {
    for (int64_t i = 0; i < k / 32; i++, x += 32) {
        __m256 v[4];
        __m256 vmax = _mm256_setzero_ps();
        for (int u = 0; u < 4; u++) {
            v[u] = _mm256_loadu_ps(x + 8 * u);
            vmax = _mm256_max_ps(abs_ps(v[u]), vmax);
        }
        const float amax = hmax_ps(vmax);
        const float d = amax / 127;
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        __m256i q[4];
        for (int u = 0; u < 4; u++) {
            const __m256 r = _mm256_round_ps(_mm256_mul_ps(v[u], id),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            q[u] = _mm256_cvtps_epi32(r);                /* inf, NaN -> INT32_MIN */
        }
        const __m256i packed = pack_32(q[0], q[1], q[2], q[3]);
        if (with_sum) {
            block_q8_1 *y = (block_q8_1 *)vy + i;
            const __m256i s4 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            y->d = fp32_to_fp16(d);
            y->s = fp32_to_fp16(d * (float)hsum_epi32(s4));
            _mm256_storeu_si256((__m256i *)y->qs, packed);
        } else {
            block_q8_0 *y = (block_q8_0 *)vy + i;
            y->d = fp32_to_fp16(d);
            _mm256_storeu_si256((__m256i *)y->qs, packed);
        }
    }
}

static void quantize_row_q8_0_avx2(const float *x, void *y, int64_t k) { quantize_row_q8_01(x, y, k, 0); }
static void quantize_row_q8_1_avx2(const float *x, void *y, int64_t k) { quantize_row_q8_01(x, y, k, 1); }

quantize_row_fn fast_quantize_row(int act_type) {
    switch (act_type) {
    case GGML_TYPE_Q8_0: return quantize_row_q8_0_avx2;
    case GGML_TYPE_Q8_1: return quantize_row_q8_1_avx2;
    case GGML_TYPE_Q8_K: return quantize_row_q8_K_avx2;
    default: return NULL;
    }
}

#else /* no AVX2: the references serve */

product_fn fast_product(int type, product_order order) { (void)type; (void)order; return NULL; }
quantize_row_fn fast_quantize_row(int act_type) { (void)act_type; return NULL; }

#endif

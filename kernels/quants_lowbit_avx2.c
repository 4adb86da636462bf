/* quants_lowbit_avx2.c -- AVX2 products of TQ1_0, TQ2_0, NVFP4, Q1_0 and Q2_0 (vec_dot:
 * llama.cpp runs nothing else for them), bit-identical to their references
 * (quants_lowbit_ref.c, which states each float order).
 *
 * A weight block is decoded once into int8 quants (the trits t = 0..2 of the ternary
 * types, NVFP4's doubled E2M1 values, Q2_0's q - 1; Q1_0 keeps its bits as +1 / -1 signs),
 * for all R activation rows; then per 32 elements one integer dot in ggml's 8 lanes
 * (maddubs, or _mm256_sign_epi8 for the signed ones, then madd) and the type's float order.
 * The decoding is scalar for TQ1_0 (its base-3 bytes: a multiply and shift per trit), so
 * these types are compute-bound at about 3 instructions per weight there, and ~1 for the
 * others.
 */
#include "cpu_internal.h"

#ifdef __AVX2__

#include "avx2_blocks.h"

/* x (int8 activations) times int8 quants q: ggml's sign trick, exact for |q| <= 127 */
INLINE __m256i dot_i8(__m256i q, __m256i x) { return dot_u8s8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q)); }

/* ================================================================ ternary x Q8_K */

static int trit(uint8_t b, int n) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    return ((uint8_t)(b * pow3[n]) * 3) >> 8;
}

/* the 256 trits of a block in element order (pyggml/quants/ternary.py draws both layouts) */
INLINE void trits(const int type, const void *block, uint8_t t[QK_K]) {
    if (type == GGML_TYPE_TQ2_0) {
        const block_tq2_0 *x = block;
        for (int h = 0; h < 2; h++) {
            const __m256i qs = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
            for (int k = 0; k < 4; k++)
                _mm256_storeu_si256((__m256i *)(t + 128 * h + 32 * k),
                                    _mm256_and_si256(_mm256_srli_epi16(qs, 2 * k), _mm256_set1_epi8(3)));
        }
        return;
    }
    const block_tq1_0 *x = block;
    for (int n = 0; n < 5; n++) {
        for (int m = 0; m < 32; m++) t[32 * n + m] = (uint8_t)trit(x->qs[m], n);
        for (int m = 0; m < 16; m++) t[160 + 16 * n + m] = (uint8_t)trit(x->qs[32 + m], n);
    }
    for (int n = 0; n < 4; n++)
        for (int j = 0; j < 4; j++) t[240 + 4 * n + j] = (uint8_t)trit(x->qh[j], n);
}

/* lanes of t x minus lane l's bsums 2l, 2l + 1; acc = acc + d_w d_y lanes; hsum */
INLINE void tq_rows(const int type, const product_order order, const int R, int64_t k, const void *w,
                    const void *act, int64_t act_stride, float *out, int64_t ldo) {
    (void)order;
    const size_t type_size = type == GGML_TYPE_TQ1_0 ? sizeof(block_tq1_0) : sizeof(block_tq2_0);
    __m256 acc[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < k / QK_K; i++) {
        const void *x = (const char *)w + i * (int64_t)type_size;
        uint8_t t[QK_K];
        trits(type, x, t);
        const float d = fp16_to_fp32(type == GGML_TYPE_TQ1_0 ? ((const block_tq1_0 *)x)->d : ((const block_tq2_0 *)x)->d);
        UNROLL for (int r = 0; r < R; r++) {
            const block_q8_K *y = ACT_ROW(block_q8_K, act, act_stride, r) + i;
            __m256i lanes = _mm256_setzero_si256();
            for (int s = 0; s < QK_K / 32; s++)
                lanes = _mm256_add_epi32(lanes, dot_u8s8(_mm256_loadu_si256((const __m256i *)(t + 32 * s)),
                                                         _mm256_loadu_si256((const __m256i *)(y->qs + 32 * s))));
            const __m256i bsums = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), _mm256_set1_epi16(1));
            lanes = _mm256_sub_epi32(lanes, bsums);
            /* ggml's mul then add: fused by GCC on every x86 (cpu_internal.h, add_scalar_tail) */
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_set1_ps(y->d * d), acc[r]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) out[r * ldo] = hsum_float_8(acc[r]);
}

/* ================================================================ x Q8_0: NVFP4, Q1_0, Q2_0 */

/* NVFP4: per half block (one Q8_0 block), lanes 0-3 times d_2h d_y, lanes 4-7 d_2h+1 d_y */
INLINE void nvfp4_rows(const int type, const product_order order, const int R, int64_t k, const void *w,
                       const void *act, int64_t act_stride, float *out, int64_t ldo) {
    (void)type, (void)order;
    const __m128i values = _mm_loadu_si128((const __m128i *)kvalues_mxfp4);
    __m256 acc[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < k / QK_NVFP4; i++) {
        const block_nvfp4 *x = (const block_nvfp4 *)w + i;
        for (int h = 0; h < 2; h++) {
            /* sub-block j = 2h + s: element i of it is nibble i / 8 of qs[8 j + i % 8] */
            const __m128i packed = _mm_loadu_si128((const __m128i *)(x->qs + 16 * h));
            const __m128i lo = _mm_and_si128(packed, _mm_set1_epi8(15));
            const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(15));
            const __m256i index = _mm256_set_m128i(_mm_unpackhi_epi64(lo, hi), _mm_unpacklo_epi64(lo, hi));
            const __m256i q = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(values), index);
            const float d0 = ue4m3_to_fp32(x->d[2 * h]), d1 = ue4m3_to_fp32(x->d[2 * h + 1]);
            UNROLL for (int r = 0; r < R; r++) {
                const block_q8_0 *y = ACT_ROW(block_q8_0, act, act_stride, r) + 2 * i + h;
                const float d_y = fp16_to_fp32(y->d);
                const __m256i lanes = dot_i8(q, _mm256_loadu_si256((const __m256i *)y->qs));
                const __m256 s = _mm256_set_m128(_mm_set1_ps(d1 * d_y), _mm_set1_ps(d0 * d_y));
                acc[r] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(lanes), acc[r]);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) out[r * ldo] = hsum_float_8(acc[r]);
}

/* Q1_0: per Q8_0 block t of a weight block, the activations negated where a bit is clear,
 * lanes by 4; chain = d_y0 lanes_0, fma(d_yt, lanes_t, chain); acc = fma(d, chain, acc) */
INLINE void q1_0_rows(const int type, const product_order order, const int R, int64_t k, const void *w,
                      const void *act, int64_t act_stride, float *out, int64_t ldo) {
    (void)type, (void)order;
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256 acc[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < k / QK1_0; i++) {
        const block_q1_0 *x = (const block_q1_0 *)w + i;
        __m256i sign[4];
        for (int t = 0; t < 4; t++) {
            uint32_t bits;
            memcpy(&bits, x->qs + 4 * t, 4);
            const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread), bit), bit);
            sign[t] = _mm256_or_si256(_mm256_andnot_si256(set, _mm256_set1_epi8(-1)), _mm256_set1_epi8(1));
        }
        const __m256 d = _mm256_set1_ps(fp16_to_fp32(x->d));
        UNROLL for (int r = 0; r < R; r++) {
            __m256 chain = _mm256_setzero_ps();
            for (int t = 0; t < 4; t++) {
                const block_q8_0 *y = ACT_ROW(block_q8_0, act, act_stride, r) + 4 * i + t;
                const __m256i v = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y->qs), sign[t]);
                const __m256 lanes = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v),
                                                                          _mm256_set1_epi16(1)));
                const __m256 d_y = _mm256_set1_ps(fp16_to_fp32(y->d));
                chain = t == 0 ? _mm256_mul_ps(d_y, lanes) : _mm256_fmadd_ps(d_y, lanes, chain);
            }
            acc[r] = _mm256_fmadd_ps(d, chain, acc[r]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) out[r * ldo] = hsum_float_8(acc[r]);
}

/* Q2_0: ggml's scalar loop, sumi = sumi + isum_t d_yt, sumf = sumf + sumi d (add_scalar_tail) */
INLINE void q2_0_rows(const int type, const product_order order, const int R, int64_t k, const void *w,
                      const void *act, int64_t act_stride, float *out, int64_t ldo) {
    (void)type, (void)order;
    float sumf[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) sumf[r] = 0.0f;
    for (int64_t i = 0; i < k / QK2_0; i++) {
        const block_q2_0 *x = (const block_q2_0 *)w + i;
        int8_t q[QK2_0];
        for (int e = 0; e < QK2_0; e++) q[e] = (int8_t)(((x->qs[e / 4] >> (2 * (e % 4))) & 3) - 1);
        const float d = fp16_to_fp32(x->d);
        UNROLL for (int r = 0; r < R; r++) {
            float sumi = 0.0f;
            for (int t = 0; t < 2; t++) {
                const block_q8_0 *y = ACT_ROW(block_q8_0, act, act_stride, r) + 2 * i + t;
                const __m256i lanes = dot_i8(_mm256_loadu_si256((const __m256i *)(q + 32 * t)),
                                             _mm256_loadu_si256((const __m256i *)y->qs));
                sumi = add_scalar_tail(sumi, (float)hsum_epi32(lanes), fp16_to_fp32(y->d));
            }
            sumf[r] = add_scalar_tail(sumf[r], sumi, d);
        }
    }
    UNROLL for (int r = 0; r < R; r++) out[r * ldo] = sumf[r];
}

/* ================================================================ the kernel of each type */

static void vec_dot_tq1_0_q8_K_avx2(const product_args *p) { product_rows(tq_rows, GGML_TYPE_TQ1_0, ORDER_VEC_DOT, p); }
static void vec_dot_tq2_0_q8_K_avx2(const product_args *p) { product_rows(tq_rows, GGML_TYPE_TQ2_0, ORDER_VEC_DOT, p); }
static void vec_dot_nvfp4_q8_0_avx2(const product_args *p) { product_rows(nvfp4_rows, GGML_TYPE_NVFP4, ORDER_VEC_DOT, p); }
static void vec_dot_q1_0_q8_0_avx2(const product_args *p) { product_rows(q1_0_rows, GGML_TYPE_Q1_0, ORDER_VEC_DOT, p); }
static void vec_dot_q2_0_q8_0_avx2(const product_args *p) { product_rows(q2_0_rows, GGML_TYPE_Q2_0, ORDER_VEC_DOT, p); }

product_fn fast_product_lowbit(int type, product_order order) {
    if (order != ORDER_VEC_DOT) return NULL;
    switch (type) {
    case GGML_TYPE_TQ1_0: return vec_dot_tq1_0_q8_K_avx2;
    case GGML_TYPE_TQ2_0: return vec_dot_tq2_0_q8_K_avx2;
    case GGML_TYPE_NVFP4: return vec_dot_nvfp4_q8_0_avx2;
    case GGML_TYPE_Q1_0: return vec_dot_q1_0_q8_0_avx2;
    case GGML_TYPE_Q2_0: return vec_dot_q2_0_q8_0_avx2;
    default: return NULL;
    }
}

#endif /* __AVX2__ */

/* quants_avx2.c -- AVX2 dot products of weight rows with quantized activation rows.
 *
 * Each kernel computes what its scalar reference in quants_ref.c computes --
 * the same exact integer dot per block, scaled and summed in float -- only the
 * order of the float additions differs.  The tests hold every kernel to its
 * reference.
 *
 * Two ideas carry all kernels:
 *  1. Integer products with _mm256_maddubs_epi16 (unsigned 8-bit x signed
 *     8-bit, adjacent pairs summed to int16), then _mm256_madd_epi16 with the
 *     sub-block scale (pairs summed to int32).  Signed weights go through
 *     |w| * sign(y, w); K-quants store unsigned quants with a bias or a min,
 *     whose contribution comes from the activation block sums (bsums) instead.
 *     No int16 overflows: |q| <= 63 (or |w| <= 128 with |y| <= 127) x 127 x 2.
 *  2. One weight row against up to MAX_ACT_ROWS activation rows (n_act): the
 *     weight block is loaded and unpacked once and used n_act times.  For decode
 *     n_act = 1 and the loop is a plain streaming matvec (memory bound); for
 *     prefill it turns the product compute bound.  Each kernel is one
 *     always-inline function of R, instantiated for R = 1..4 by DOT_ROWS.
 */
#include "cpu_internal.h"

#ifdef __AVX2__

#include "avx2_blocks.h"

/* The dispatcher of one kernel: n_act known only at run time, R a constant inside. */
#define DOT_ROWS(name)                                                                       \
    static void name##_rows(int64_t k, const void *w, const void *act, int64_t act_stride,    \
                            int n_act, float *out, int64_t ldo) {                           \
        switch (n_act) {                                                                     \
        case 1: name(k, w, act, act_stride, out, ldo, 1); break;                             \
        case 2: name(k, w, act, act_stride, out, ldo, 2); break;                             \
        case 3: name(k, w, act, act_stride, out, ldo, 3); break;                             \
        default: name(k, w, act, act_stride, out, ldo, 4); break;                            \
        }                                                                                    \
    }

/* ---------------------------------------------------------------- float weights x f32 activations */

INLINE __m256 load8_f32(const float *x) { return _mm256_loadu_ps(x); }
INLINE __m256 load8_f16(const ggml_half *x) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x)); }
INLINE __m256 load8_bf16(const uint16_t *x) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)x));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* 16 weights per step in two accumulators per row (FMA latency), scalar tail */
#define FLOAT_KERNEL(name, wtype, load8, to_f32)                                             \
    INLINE void name(int64_t k, const void *w, const void *act, int64_t act_stride,          \
                     float *out, int64_t ldo, const int R) {                                 \
        const wtype *x = w;                                                                  \
        __m256 acc0[MAX_ACT_ROWS], acc1[MAX_ACT_ROWS];                                       \
        UNROLL for (int r = 0; r < R; r++) acc0[r] = acc1[r] = _mm256_setzero_ps();          \
        int64_t i = 0;                                                                       \
        for (; i + 16 <= k; i += 16) {                                                       \
            const __m256 w0 = load8(x + i), w1 = load8(x + i + 8);                          \
            UNROLL for (int r = 0; r < R; r++) {                                             \
                const float *y = ACT_ROW(float, act, act_stride, r) + i;                     \
                acc0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(y), acc0[r]);                  \
                acc1[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(y + 8), acc1[r]);              \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int r = 0; r < R; r++) {                                                 \
            const float *y = ACT_ROW(float, act, act_stride, r);                             \
            float sum = hsum_ps(_mm256_add_ps(acc0[r], acc1[r]));                            \
            for (int64_t j = i; j < k; j++) sum += to_f32(x[j]) * y[j];                      \
            out[r * ldo] = sum;                                                              \
        }                                                                                    \
    }

INLINE float f32_id(float v) { return v; }
FLOAT_KERNEL(dot_f32, float, load8_f32, f32_id)
FLOAT_KERNEL(dot_f16, ggml_half, load8_f16, fp16_to_fp32)
FLOAT_KERNEL(dot_bf16, uint16_t, load8_bf16, bf16_to_fp32)

/* ---------------------------------------------------------------- 32-element blocks x Q8_0 / Q8_1
 * Per block: one 32-byte register of quants in element order, then per
 * activation row one integer dot and one fma with the product of the scales. */

/* quants of block i as signed bytes (Q4_0, Q5_0, Q8_0, IQ4_NL) or unsigned (Q4_1, Q5_1) */
INLINE __m256i quants_q4_0(const block_q4_0 *b) {
    return _mm256_sub_epi8(nibbles_32(b->qs), _mm256_set1_epi8(8));
}
INLINE __m256i quants_q4_1(const block_q4_1 *b) { return nibbles_32(b->qs); }
/* q - 16: a clear 5th bit gives nibble - 16, i.e. the nibble with 0xF0 or'ed in */
INLINE __m256i quants_q5_0(const block_q5_0 *b) {
    return _mm256_or_si256(nibbles_32(b->qs), _mm256_andnot_si256(bits_32(b->qh), _mm256_set1_epi8((char)0xF0)));
}
INLINE __m256i quants_q5_1(const block_q5_1 *b) {
    return _mm256_or_si256(nibbles_32(b->qs), _mm256_and_si256(bits_32(b->qh), _mm256_set1_epi8(0x10)));
}
INLINE __m256i quants_q8_0(const block_q8_0 *b) { return _mm256_loadu_si256((const __m256i *)b->qs); }
INLINE __m256i quants_iq4_nl(const block_iq4_nl *b) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kvalues_iq4nl));
    return _mm256_shuffle_epi8(table, nibbles_32(b->qs));
}

/* weights with a signed quant and no min, against Q8_0 */
#define SIGNED_32_KERNEL(name, btype)                                                        \
    INLINE void dot_##name(int64_t k, const void *w, const void *act, int64_t act_stride,    \
                           float *out, int64_t ldo, const int R) {                           \
        const btype *x = w;                                                                  \
        __m256 acc[MAX_ACT_ROWS];                                                            \
        UNROLL for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();                     \
        for (int64_t i = 0; i < k / 32; i++) {                                               \
            const __m256i q = quants_##name(&x[i]);                                          \
            const __m256i q_abs = _mm256_sign_epi8(q, q);                                    \
            const float dx = fp16_to_fp32(x[i].d);                                           \
            UNROLL for (int r = 0; r < R; r++) {                                             \
                const block_q8_0 *y = ACT_ROW(block_q8_0, act, act_stride, r) + i;           \
                const __m256i yq = _mm256_loadu_si256((const __m256i *)y->qs);               \
                const __m256i p = dot_u8s8(q_abs, _mm256_sign_epi8(yq, q));                  \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dx * fp16_to_fp32(y->d)),            \
                                         _mm256_cvtepi32_ps(p), acc[r]);                     \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int r = 0; r < R; r++) out[r * ldo] = hsum_ps(acc[r]);                   \
    }

SIGNED_32_KERNEL(q4_0, block_q4_0)
SIGNED_32_KERNEL(q5_0, block_q5_0)
SIGNED_32_KERNEL(q8_0, block_q8_0)
SIGNED_32_KERNEL(iq4_nl, block_iq4_nl)

/* weights with an unsigned quant and a min m, against Q8_1: d dy sum(q q8) + m s */
#define MIN_32_KERNEL(name, btype)                                                           \
    INLINE void dot_##name(int64_t k, const void *w, const void *act, int64_t act_stride,    \
                           float *out, int64_t ldo, const int R) {                           \
        const btype *x = w;                                                                  \
        __m256 acc[MAX_ACT_ROWS];                                                            \
        float summ[MAX_ACT_ROWS];                                                            \
        UNROLL for (int r = 0; r < R; r++) { acc[r] = _mm256_setzero_ps(); summ[r] = 0.0f; } \
        for (int64_t i = 0; i < k / 32; i++) {                                               \
            const __m256i q = quants_##name(&x[i]);                                          \
            const float dx = fp16_to_fp32(x[i].d), mx = fp16_to_fp32(x[i].m);                \
            UNROLL for (int r = 0; r < R; r++) {                                             \
                const block_q8_1 *y = ACT_ROW(block_q8_1, act, act_stride, r) + i;           \
                const __m256i p = dot_u8s8(q, _mm256_loadu_si256((const __m256i *)y->qs));   \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dx * fp16_to_fp32(y->d)),            \
                                         _mm256_cvtepi32_ps(p), acc[r]);                     \
                summ[r] += mx * fp16_to_fp32(y->s);                                          \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int r = 0; r < R; r++) out[r * ldo] = hsum_ps(acc[r]) + summ[r];         \
    }

MIN_32_KERNEL(q4_1, block_q4_1)
MIN_32_KERNEL(q5_1, block_q5_1)

/* ---------------------------------------------------------------- K-quants x Q8_K
 * Q4_K, Q5_K: 8 sub-blocks of 32, 6-bit scale sc_j and min m_j each.
 * A 32-byte load of qs holds sub-blocks 2c (low nibbles) and 2c+1 (high). */

/* Q4_K and Q5_K differ only in how a 32-byte slice of quants is formed */
#define K4_KERNEL(name, btype, HIGH_BITS)                                                    \
    INLINE void dot_##name(int64_t k, const void *w, const void *act, int64_t act_stride,    \
                           float *out, int64_t ldo, const int R) {                           \
        const btype *x = w;                                                                  \
        const __m256i low4 = _mm256_set1_epi8(0x0F);                                         \
        __m256 acc[MAX_ACT_ROWS];                                                            \
        UNROLL for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();                     \
        for (int64_t i = 0; i < k / QK_K; i++) {                                             \
            const __m128i sm = scales_mins_k4(x[i].scales);                                  \
            const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));         \
            /* mins doubled, one per 16-element bsum: [m0 m0 m1 m1 ... m7 m7] as int16 */    \
            const __m256i mins = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm,                   \
                _mm_set_epi8(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8)));   \
            __m256i isum[MAX_ACT_ROWS];                                                      \
            UNROLL for (int r = 0; r < R; r++) isum[r] = _mm256_setzero_si256();             \
            UNROLL for (int c = 0; c < 4; c++) {                                             \
                const __m256i qv = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * c)); \
                __m256i q_lo = _mm256_and_si256(qv, low4);                                  \
                __m256i q_hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), low4);            \
                HIGH_BITS                                                                    \
                const __m256i sc_lo = broadcast_scale(sc16, 2 * c);                          \
                const __m256i sc_hi = broadcast_scale(sc16, 2 * c + 1);                      \
                UNROLL for (int r = 0; r < R; r++) {                                         \
                    const int8_t *yq = (ACT_ROW(block_q8_K, act, act_stride, r) + i)->qs;    \
                    const __m256i p_lo = _mm256_maddubs_epi16(q_lo,                          \
                        _mm256_loadu_si256((const __m256i *)(yq + 64 * c)));                 \
                    const __m256i p_hi = _mm256_maddubs_epi16(q_hi,                          \
                        _mm256_loadu_si256((const __m256i *)(yq + 64 * c + 32)));            \
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_add_epi32(                   \
                        _mm256_madd_epi16(p_lo, sc_lo), _mm256_madd_epi16(p_hi, sc_hi)));    \
                }                                                                            \
            }                                                                                \
            const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);            \
            UNROLL for (int r = 0; r < R; r++) {                                             \
                const block_q8_K *y = ACT_ROW(block_q8_K, act, act_stride, r) + i;           \
                const __m256i msum = _mm256_madd_epi16(mins,                                 \
                    _mm256_loadu_si256((const __m256i *)y->bsums));                          \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * y->d), _mm256_cvtepi32_ps(isum[r]), acc[r]); \
                acc[r] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * y->d), _mm256_cvtepi32_ps(msum), acc[r]); \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int r = 0; r < R; r++) out[r * ldo] = hsum_ps(acc[r]);                   \
    }

#define Q5_K_HIGH_BITS                                                                       \
    q_lo = _mm256_or_si256(q_lo, fifth_bit(x[i].qh, 2 * c));                                \
    q_hi = _mm256_or_si256(q_hi, fifth_bit(x[i].qh, 2 * c + 1));
#define Q4_K_HIGH_BITS

K4_KERNEL(q4_K, block_q4_K, Q4_K_HIGH_BITS)
K4_KERNEL(q5_K, block_q5_K, Q5_K_HIGH_BITS)

/* Q2_K, Q3_K, Q6_K: 16 groups of 16 with one scale each.  Slice s = 4h + j
 * (half h, 32-element slice j) is one register of unsigned quants covering
 * groups 2s and 2s+1.  The quants' bias (Q3_K: 4, Q6_K: 32) is taken out with
 * the bsums: sum_g S_g sum (q - b) y = sum_g S_g sum q y - b sum_g S_g bsum_g. */

/* SCALES: __m128i of the 16 scales (int8 if SIGNED, else uint8); BIAS_SHIFT: log2 of
 * the quants' bias (0: none).  MIN_TERM: Q2_K alone has mins, subtracted with dmin
 * like Q4_K's (code run per activation row with y and bsums in scope). */
#define K16_KERNEL(name, btype, SCALES, SIGNED, BIAS_SHIFT, MIN_TERM)                         \
    INLINE void dot_##name(int64_t k, const void *w, const void *act, int64_t act_stride,    \
                           float *out, int64_t ldo, const int R) {                           \
        const btype *x = w;                                                                  \
        __m256 acc[MAX_ACT_ROWS];                                                            \
        UNROLL for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();                     \
        for (int64_t i = 0; i < k / QK_K; i++) {                                             \
            const __m128i s8 = SCALES;                                                       \
            const __m256i scales16 = SIGNED ? _mm256_cvtepi8_epi16(s8) : _mm256_cvtepu8_epi16(s8); \
            const __m256i halves[2] = {_mm256_permute4x64_epi64(scales16, 0x44),             \
                                       _mm256_permute4x64_epi64(scales16, 0xEE)};            \
            __m256i isum[MAX_ACT_ROWS];                                                      \
            UNROLL for (int r = 0; r < R; r++) isum[r] = _mm256_setzero_si256();             \
            UNROLL for (int s = 0; s < 8; s++) {                                             \
                const __m256i q = slice_##name(&x[i], s / 4, s % 4);                         \
                const __m256i sc = pair_scales(halves[s / 4], 2 * s);                        \
                UNROLL for (int r = 0; r < R; r++) {                                         \
                    const int8_t *yq = (ACT_ROW(block_q8_K, act, act_stride, r) + i)->qs;    \
                    const __m256i p = _mm256_maddubs_epi16(q,                                \
                        _mm256_loadu_si256((const __m256i *)(yq + 32 * s)));                 \
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(p, sc));           \
                }                                                                            \
            }                                                                                \
            const float d = fp16_to_fp32(x[i].d);                                            \
            UNROLL for (int r = 0; r < R; r++) {                                             \
                const block_q8_K *y = ACT_ROW(block_q8_K, act, act_stride, r) + i;           \
                const __m256i bsums = _mm256_loadu_si256((const __m256i *)y->bsums);         \
                if (BIAS_SHIFT)                                                              \
                    isum[r] = _mm256_sub_epi32(isum[r], _mm256_slli_epi32(                   \
                        _mm256_madd_epi16(scales16, bsums), BIAS_SHIFT));                    \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * y->d), _mm256_cvtepi32_ps(isum[r]), acc[r]); \
                MIN_TERM                                                                     \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int r = 0; r < R; r++) out[r * ldo] = hsum_ps(acc[r]);                   \
    }

/* Q2_K: scale in the low nibble, min in the high nibble of each scales byte */
#define Q2_K_SCALES _mm_and_si128(_mm_loadu_si128((const __m128i *)x[i].scales), _mm_set1_epi8(0x0F))
#define Q2_K_MIN_TERM                                                                        \
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(                                 \
        _mm_srli_epi16(_mm_loadu_si128((const __m128i *)x[i].scales), 4), _mm_set1_epi8(0x0F))); \
    acc[r] = _mm256_fnmadd_ps(_mm256_set1_ps(fp16_to_fp32(x[i].dmin) * y->d),                \
                              _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bsums)), acc[r]);
#define NO_MIN_TERM

K16_KERNEL(q2_K, block_q2_K, Q2_K_SCALES, 0, 0, Q2_K_MIN_TERM)
K16_KERNEL(q3_K, block_q3_K, scales_q3_K(x[i].scales), 1, 2, NO_MIN_TERM)
K16_KERNEL(q6_K, block_q6_K, _mm_loadu_si128((const __m128i *)x[i].scales), 1, 5, NO_MIN_TERM)

DOT_ROWS(dot_f32)
DOT_ROWS(dot_f16)
DOT_ROWS(dot_bf16)
DOT_ROWS(dot_q4_0)
DOT_ROWS(dot_q4_1)
DOT_ROWS(dot_q5_0)
DOT_ROWS(dot_q5_1)
DOT_ROWS(dot_q8_0)
DOT_ROWS(dot_iq4_nl)
DOT_ROWS(dot_q2_K)
DOT_ROWS(dot_q3_K)
DOT_ROWS(dot_q4_K)
DOT_ROWS(dot_q5_K)
DOT_ROWS(dot_q6_K)

dot_rows_fn fast_dot_rows(int type) {
    switch (type) {
    case GGML_TYPE_F32: return dot_f32_rows;
    case GGML_TYPE_F16: return dot_f16_rows;
    case GGML_TYPE_BF16: return dot_bf16_rows;
    case GGML_TYPE_Q4_0: return dot_q4_0_rows;
    case GGML_TYPE_Q4_1: return dot_q4_1_rows;
    case GGML_TYPE_Q5_0: return dot_q5_0_rows;
    case GGML_TYPE_Q5_1: return dot_q5_1_rows;
    case GGML_TYPE_Q8_0: return dot_q8_0_rows;
    case GGML_TYPE_IQ4_NL: return dot_iq4_nl_rows;
    case GGML_TYPE_Q2_K: return dot_q2_K_rows;
    case GGML_TYPE_Q3_K: return dot_q3_K_rows;
    case GGML_TYPE_Q4_K: return dot_q4_K_rows;
    case GGML_TYPE_Q5_K: return dot_q5_K_rows;
    case GGML_TYPE_Q6_K: return dot_q6_K_rows;
    default: return NULL;
    }
}

/* ---------------------------------------------------------------- activation quantization
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
            __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
            s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
            s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
            y->d = fp32_to_fp16(d);
            y->s = fp32_to_fp16(d * (float)_mm_cvtsi128_si32(s));
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

dot_rows_fn fast_dot_rows(int type) { (void)type; return NULL; }
quantize_row_fn fast_quantize_row(int act_type) { (void)act_type; return NULL; }

#endif

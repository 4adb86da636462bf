/* quants_avx2.c -- AVX2 products of weight rows with quantized activation rows, in each
 * of ggml's float orders (ggml_order.c), bit-identical to the reference (quants_ref.c).
 *
 * Three layers:
 *  1. lanes_<type>: block i of one weight row against R activation rows, the exact
 *     integer dot products in the 8 int32 lanes ggml's vec_dot kernels hold them in
 *     (lane l: elements e with (e % 32) / 4 == l, sub-block scales applied), plus the
 *     K-quants' min terms in ggml's lanes.  Integer products with _mm256_maddubs_epi16
 *     (unsigned 8-bit x signed 8-bit, adjacent pairs summed to int16) then
 *     _mm256_madd_epi16 with the sub-block scales, or VNNI dot products; signed weights
 *     go through |w| * sign(y, w).  No int16 overflows: |q| <= 63 (or |w| <= 128 with
 *     |y| <= 127) x 127 x 2.
 *  2. the VEC_DOT (and TINYBLAS) kernels: one weight row, the lanes as 8 float
 *     accumulators, each type's float tail as ggml_order.c draws it.
 *  3. the chain kernels (GEMV, GEMM, TILED): one float chain per output across the
 *     blocks, as repack.cpp's gemv/gemm and the tiled microtile have it, each step's
 *     lanes first reduced to exact integers.
 * Every kernel takes up to MAX_ACT_ROWS activation rows (n_act): a weight block is
 * loaded and unpacked once and used n_act times.  For decode n_act = 1 and the loop is a
 * plain streaming matvec (memory bound); for prefill it turns the product compute
 * bound.  Each kernel is one always-inline function of R, instantiated for R = 1..4.
 */
#include <math.h>

#include "cpu_internal.h"

#ifdef __AVX2__

#include "avx2_blocks.h"

/* ================================================================ 1. lanes per block */

/* ---------------------------------------------------------------- 32-element blocks x Q8_0 / Q8_1
 * Per block: one 32-byte register of quants in element order, then per activation row
 * one integer dot (lane l = bytes 4l..4l+3). */

/* quants of a block as signed bytes (Q4_0, Q5_0, Q8_0, IQ4_NL) or unsigned (Q4_1, Q5_1) */
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

/* lanes_<name>(w, i, act, act_stride, R, lanes): lanes[r] for activation row r */
#define LANES_SIGNED_32(name, btype)                                                          \
    INLINE void lanes_##name(const void *w, int64_t i, const void *act, int64_t act_stride,   \
                             const int R, __m256i lanes[]) {                                  \
        const __m256i q = quants_##name((const btype *)w + i);                               \
        const __m256i q_abs = _mm256_sign_epi8(q, q);                                        \
        UNROLL for (int r = 0; r < R; r++) {                                                 \
            const block_q8_0 *y = ACT_ROW(block_q8_0, act, act_stride, r) + i;               \
            lanes[r] = dot_u8s8(q_abs, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y->qs), q)); \
        }                                                                                    \
    }
LANES_SIGNED_32(q4_0, block_q4_0)
LANES_SIGNED_32(q5_0, block_q5_0)
LANES_SIGNED_32(q8_0, block_q8_0)
LANES_SIGNED_32(iq4_nl, block_iq4_nl)

#define LANES_UNSIGNED_32(name, btype)                                                        \
    INLINE void lanes_##name(const void *w, int64_t i, const void *act, int64_t act_stride,   \
                             const int R, __m256i lanes[]) {                                  \
        const __m256i q = quants_##name((const btype *)w + i);                               \
        UNROLL for (int r = 0; r < R; r++) {                                                 \
            const block_q8_1 *y = ACT_ROW(block_q8_1, act, act_stride, r) + i;               \
            lanes[r] = dot_u8s8(q, _mm256_loadu_si256((const __m256i *)y->qs));              \
        }                                                                                    \
    }
LANES_UNSIGNED_32(q4_1, block_q4_1)
LANES_UNSIGNED_32(q5_1, block_q5_1)

/* ---------------------------------------------------------------- K-quants x Q8_K
 * Q4_K, Q5_K: 8 sub-blocks of 32, 6-bit scale sc_j and min m_j each.  A 32-byte load of
 * qs holds sub-blocks 2c (low nibbles) and 2c+1 (high); c0 <= c < c1 of them (all 4, or
 * one GEMM step).  The min term in ggml's vec_dot lanes: lane p = m_2p bsum32_2p +
 * m_2p+1 bsum32_2p+1 (bsum32_j: sub-block j's activation sum), p < 4; or, cheaper, one
 * lane per sub-block (mins_by_sub_block): lane j = m_j bsum32_j.  by_chunk: each
 * chunk's lanes apart (Q4_K's GEMM steps), instead of their sum in lanes[]. */
#define LANES_K4(name, btype, HIGH_BITS)                                                      \
    INLINE void lanes_##name(const void *w, int64_t i, const void *act, int64_t act_stride,   \
                             const int R, __m256i lanes[], __m256i mins[], const int c0,      \
                             const int c1, const int mins_by_sub_block,                       \
                             __m256i (*by_chunk)[4]) {                                        \
        const btype *x = (const btype *)w + i;                                               \
        const __m256i low4 = _mm256_set1_epi8(0x0F);                                         \
        const __m128i sm = scales_mins_k4(x->scales);                                        \
        const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));             \
        /* mins doubled, one per 16-element bsum: [m0 m0 m1 m1 ... m7 m7] as int16 */        \
        const __m256i m_doubled = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm,                  \
            _mm_set_epi8(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8)));       \
        const __m128i m16 = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(sm, sm));                   \
        UNROLL for (int r = 0; r < R; r++) {                                                 \
            lanes[r] = _mm256_setzero_si256();                                               \
            const block_q8_K *y = ACT_ROW(block_q8_K, act, act_stride, r) + i;               \
            const __m256i bsums = _mm256_loadu_si256((const __m256i *)y->bsums);             \
            mins[r] = mins_by_sub_block ? _mm256_madd_epi16(m_doubled, bsums)                 \
                    : _mm256_zextsi128_si256(_mm_madd_epi16(m16, _mm_hadd_epi16(             \
                          _mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1)))); \
        }                                                                                    \
        UNROLL for (int c = c0; c < c1; c++) {                                               \
            const __m256i qv = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * c));       \
            __m256i q_lo = _mm256_and_si256(qv, low4);                                      \
            __m256i q_hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), low4);                \
            HIGH_BITS                                                                        \
            const __m256i sc_lo = broadcast_scale(sc16, 2 * c);                              \
            const __m256i sc_hi = broadcast_scale(sc16, 2 * c + 1);                          \
            UNROLL for (int r = 0; r < R; r++) {                                             \
                const int8_t *yq = (ACT_ROW(block_q8_K, act, act_stride, r) + i)->qs;        \
                const __m256i p_lo = _mm256_maddubs_epi16(q_lo, _mm256_loadu_si256((const __m256i *)(yq + 64 * c))); \
                const __m256i p_hi = _mm256_maddubs_epi16(q_hi, _mm256_loadu_si256((const __m256i *)(yq + 64 * c + 32))); \
                const __m256i both = _mm256_add_epi32(_mm256_madd_epi16(p_lo, sc_lo),        \
                                                      _mm256_madd_epi16(p_hi, sc_hi));        \
                if (by_chunk) by_chunk[r][c] = both;                                         \
                else lanes[r] = _mm256_add_epi32(lanes[r], both);                            \
            }                                                                                \
        }                                                                                    \
    }
#define Q5_K_HIGH_BITS                                                                       \
    q_lo = _mm256_or_si256(q_lo, fifth_bit(x->qh, 2 * c));                                  \
    q_hi = _mm256_or_si256(q_hi, fifth_bit(x->qh, 2 * c + 1));
#define Q4_K_HIGH_BITS
LANES_K4(q4_K, block_q4_K, Q4_K_HIGH_BITS)
LANES_K4(q5_K, block_q5_K, Q5_K_HIGH_BITS)

/* Q2_K, Q3_K, Q6_K: 16 groups of 16 with one scale each.  Slice s = 4h + j (half h,
 * 32-element slice j) is one register of unsigned quants covering groups 2s and 2s+1.
 * The quants' bias, as ggml's vec_dot takes it out: Q3_K's 4 within each lane (pairs of
 * (q - 4) y, like its subtraction of 4 q8 where the high bit is clear), Q6_K's 32 through
 * the bsums, lane l = 32 (S_2l bsum_2l + S_2l+1 bsum_2l+1).  Q2_K's mins in the same
 * bsum lanes: min lane l = m_2l bsum_2l + m_2l+1 bsum_2l+1. */

/* SCALES: __m128i of the 16 scales (int8 if SIGNED, else uint8); PAIR_BIAS: Q3_K's 4;
 * BSUM_TERM: Q6_K's bias or Q2_K's mins; slices s0 <= s < s1; by_half: the lanes of
 * halves 0 and 1 apart (Q2_K's GEMM steps), instead of their sum in lanes[] */
#define LANES_K16(name, btype, SCALES, SIGNED, PAIR_BIAS, BSUM_TERM)                          \
    INLINE void lanes_##name(const void *w, int64_t i, const void *act, int64_t act_stride,   \
                             const int R, __m256i lanes[], __m256i mins[], const int s0,      \
                             const int s1, __m256i (*by_half)[4]) {                           \
        const btype *x = (const btype *)w + i;                                               \
        const __m128i s8 = SCALES;                                                           \
        const __m256i scales16 = SIGNED ? _mm256_cvtepi8_epi16(s8) : _mm256_cvtepu8_epi16(s8); \
        const __m256i halves[2] = {_mm256_permute4x64_epi64(scales16, 0x44),                 \
                                   _mm256_permute4x64_epi64(scales16, 0xEE)};                \
        UNROLL for (int r = 0; r < R; r++) {                                                 \
            lanes[r] = _mm256_setzero_si256();                                               \
            if (by_half) by_half[r][0] = by_half[r][1] = _mm256_setzero_si256();             \
        }                                                                                    \
        UNROLL for (int s = s0; s < s1; s++) {                                               \
            const __m256i q = slice_##name(x, s / 4, s % 4);                                 \
            const __m256i sc = pair_scales(halves[s / 4], 2 * s);                            \
            UNROLL for (int r = 0; r < R; r++) {                                             \
                const __m256i yq = _mm256_loadu_si256((const __m256i *)((ACT_ROW(block_q8_K, act, act_stride, r) + i)->qs + 32 * s)); \
                __m256i p = _mm256_maddubs_epi16(q, yq);                                     \
                if (PAIR_BIAS) p = _mm256_sub_epi16(p, _mm256_maddubs_epi16(_mm256_set1_epi8(PAIR_BIAS), yq)); \
                if (by_half) by_half[r][s / 4] = _mm256_add_epi32(by_half[r][s / 4], _mm256_madd_epi16(p, sc)); \
                else lanes[r] = _mm256_add_epi32(lanes[r], _mm256_madd_epi16(p, sc));        \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int r = 0; r < R; r++) {                                                 \
            const block_q8_K *y = ACT_ROW(block_q8_K, act, act_stride, r) + i;               \
            const __m256i bsums = _mm256_loadu_si256((const __m256i *)y->bsums);             \
            (void)bsums;                                                                     \
            BSUM_TERM                                                                        \
        }                                                                                    \
    }
/* Q2_K: scale in the low nibble, min in the high nibble of each scales byte */
#define Q2_K_SCALES _mm_and_si128(_mm_loadu_si128((const __m128i *)x->scales), _mm_set1_epi8(0x0F))
#define Q2_K_MINS                                                                            \
    mins[r] = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_and_si128(                          \
        _mm_srli_epi16(_mm_loadu_si128((const __m128i *)x->scales), 4), _mm_set1_epi8(0x0F))), bsums);
#define Q6_K_BIAS lanes[r] = _mm256_sub_epi32(lanes[r], _mm256_slli_epi32(_mm256_madd_epi16(scales16, bsums), 5)); (void)mins;
#define NO_BSUM_TERM (void)mins;
LANES_K16(q2_K, block_q2_K, Q2_K_SCALES, 0, 0, Q2_K_MINS)
LANES_K16(q3_K, block_q3_K, scales_q3_K(x->scales), 1, 4, NO_BSUM_TERM)
LANES_K16(q6_K, block_q6_K, _mm_loadu_si128((const __m128i *)x->scales), 1, 0, Q6_K_BIAS)

/* ================================================================ 2. VEC_DOT and TINYBLAS */

/* ggml's hsum_float_8 (arch/x86/quants.c) and our hsum_ps pair the lanes alike */
#define hsum_float_8 hsum_ps

/* A one-row kernel, name(k, w, act, act_stride, out, ldo, R), run over the rows of a
 * group: the product_fn of the type and order, n_act known only at run time. */
#define ROWS_OF(name)                                                                        \
    static void name##_rows(int64_t k, const void *w, int64_t w_stride, int n_rows,          \
                            const void *act, int64_t act_stride, int n_act, float *out,      \
                            int64_t ldo) {                                                   \
        for (int j = 0; j < n_rows; j++) {                                                   \
            const void *wj = (const char *)w + j * w_stride;                                 \
            switch (n_act) {                                                                 \
            case 1: name(k, wj, act, act_stride, out + j, ldo, 1); break;                    \
            case 2: name(k, wj, act, act_stride, out + j, ldo, 2); break;                    \
            case 3: name(k, wj, act, act_stride, out + j, ldo, 3); break;                    \
            default: name(k, wj, act, act_stride, out + j, ldo, 4); break;                   \
            }                                                                                \
        }                                                                                    \
    }

/* ---------------------------------------------------------------- float weights x f32 activations
 * (not ggml's order: ggml_order.c) */

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

/* ---------------------------------------------------------------- 32-element blocks
 * Q4_0 Q5_0 Q8_0 (and every one of them in tinyBLAS): lanes = fma(dx dy, lanes_b, lanes).
 * IQ4_NL's vec_dot: even and odd blocks in two accumulators, an odd last block alone,
 * its d * (float) sum added after the horizontal sum (add_scalar_tail: fused or not, as
 * GCC compiles llama.cpp for this CPU). */
#define Q0_KERNEL(name, btype, PAIRED)                                                       \
    INLINE void name##_q0_##PAIRED(int64_t k, const void *w, const void *act,                \
                                   int64_t act_stride, float *out, int64_t ldo, const int R) { \
        const btype *x = w;                                                                  \
        const int64_t nb = k / 32;                                                           \
        __m256 acc[2][MAX_ACT_ROWS];                                                         \
        UNROLL for (int r = 0; r < R; r++) acc[0][r] = acc[1][r] = _mm256_setzero_ps();      \
        const int64_t n_pairs = PAIRED ? nb - nb % 2 : nb;                                   \
        for (int64_t i = 0; i < n_pairs; i++) {                                              \
            __m256i lanes[MAX_ACT_ROWS];                                                     \
            lanes_##name(w, i, act, act_stride, R, lanes);                                   \
            const float dx = fp16_to_fp32(x[i].d);                                           \
            UNROLL for (int r = 0; r < R; r++) {                                             \
                const float dy = fp16_to_fp32((ACT_ROW(block_q8_0, act, act_stride, r) + i)->d); \
                __m256 *a = &acc[PAIRED ? i % 2 : 0][r];                                     \
                *a = _mm256_fmadd_ps(_mm256_set1_ps(PAIRED ? dy * dx : dx * dy), _mm256_cvtepi32_ps(lanes[r]), *a); \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int r = 0; r < R; r++) {                                                 \
            out[r * ldo] = hsum_float_8(PAIRED ? _mm256_add_ps(acc[0][r], acc[1][r]) : acc[0][r]); \
        }                                                                                    \
        if (PAIRED && nb % 2) {                                                              \
            __m256i lanes[MAX_ACT_ROWS];                                                     \
            lanes_##name(w, nb - 1, act, act_stride, R, lanes);                              \
            UNROLL for (int r = 0; r < R; r++) {                                             \
                const float d = fp16_to_fp32((ACT_ROW(block_q8_0, act, act_stride, r) + nb - 1)->d) \
                              * fp16_to_fp32(x[nb - 1].d);                                   \
                out[r * ldo] = add_scalar_tail(out[r * ldo], d, (float)hsum_epi32(lanes[r])); \
            }                                                                                \
        }                                                                                    \
    }
Q0_KERNEL(q4_0, block_q4_0, 0)
Q0_KERNEL(q5_0, block_q5_0, 0)
Q0_KERNEL(q8_0, block_q8_0, 0)
Q0_KERNEL(iq4_nl, block_iq4_nl, 0)
Q0_KERNEL(iq4_nl, block_iq4_nl, 1)

/* Q4_1 Q5_1: lanes = fma(lanes_b, dx dy, lanes); m s summed apart (exact: fp16 x fp16) */
#define Q1_KERNEL(name, btype)                                                               \
    INLINE void name##_q1(int64_t k, const void *w, const void *act, int64_t act_stride,     \
                          float *out, int64_t ldo, const int R) {                            \
        const btype *x = w;                                                                  \
        __m256 acc[MAX_ACT_ROWS];                                                            \
        float summs[MAX_ACT_ROWS];                                                           \
        UNROLL for (int r = 0; r < R; r++) { acc[r] = _mm256_setzero_ps(); summs[r] = 0.0f; } \
        for (int64_t i = 0; i < k / 32; i++) {                                               \
            __m256i lanes[MAX_ACT_ROWS];                                                     \
            lanes_##name(w, i, act, act_stride, R, lanes);                                   \
            const float dx = fp16_to_fp32(x[i].d), mx = fp16_to_fp32(x[i].m);                \
            UNROLL for (int r = 0; r < R; r++) {                                             \
                const block_q8_1 *y = ACT_ROW(block_q8_1, act, act_stride, r) + i;           \
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes[r]), _mm256_set1_ps(dx * fp16_to_fp32(y->d)), acc[r]); \
                summs[r] = fmaf(mx, fp16_to_fp32(y->s), summs[r]);                          \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int r = 0; r < R; r++) out[r * ldo] = hsum_float_8(acc[r]) + summs[r];   \
    }
Q1_KERNEL(q4_1, block_q4_1)
Q1_KERNEL(q5_1, block_q5_1)

/* ---------------------------------------------------------------- K-quants */

/* Q2_K, Q3_K, Q6_K: lanes = fma(dy dx, lanes_b, lanes), Q2_K's mins first (MINS: a
 * statement run per activation row r with dy, x, i, mins and acc in scope) */
#define Q2_K_MINS(r)                                                                         \
    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(-dy * fp16_to_fp32(x[i].dmin)),                  \
                             _mm256_cvtepi32_ps(mins[r]), acc[r]);
#define NO_MINS(r)                       /* Q3_K, Q6_K: no mins (and no dmin field) */
#define K16_KERNEL(name, btype, MINS)                                                        \
    INLINE void name##_vec_dot(int64_t k, const void *w, const void *act, int64_t act_stride, \
                               float *out, int64_t ldo, const int R) {                       \
        const btype *x = w;                                                                  \
        __m256 acc[MAX_ACT_ROWS];                                                            \
        UNROLL for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();                     \
        for (int64_t i = 0; i < k / QK_K; i++) {                                             \
            __m256i lanes[MAX_ACT_ROWS], mins[MAX_ACT_ROWS];                                 \
            lanes_##name(w, i, act, act_stride, R, lanes, mins, 0, 8, NULL);                 \
            const float dx = fp16_to_fp32(x[i].d);                                           \
            UNROLL for (int r = 0; r < R; r++) {                                             \
                const float dy = (ACT_ROW(block_q8_K, act, act_stride, r) + i)->d;           \
                MINS(r)                                                                      \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dy * dx), _mm256_cvtepi32_ps(lanes[r]), acc[r]); \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int r = 0; r < R; r++) out[r * ldo] = hsum_float_8(acc[r]);              \
    }
K16_KERNEL(q2_K, block_q2_K, Q2_K_MINS)
K16_KERNEL(q3_K, block_q3_K, NO_MINS)
K16_KERNEL(q6_K, block_q6_K, NO_MINS)

/* Q4_K: 4 min lanes, fma(-dy dmin, .), added after hsum as (m0 + m2) + (m1 + m3);
 * Q5_K: the 4 min lanes summed as integers, s = fma(-dy dmin, (float) sum, s) */
#define K4_KERNEL(name, btype, MIN_IN_LANES)                                                 \
    INLINE void name##_vec_dot(int64_t k, const void *w, const void *act, int64_t act_stride, \
                               float *out, int64_t ldo, const int R) {                       \
        const btype *x = w;                                                                  \
        __m256 acc[MAX_ACT_ROWS];                                                            \
        __m128 acc_m[MAX_ACT_ROWS];                                                          \
        float summs[MAX_ACT_ROWS];                                                           \
        UNROLL for (int r = 0; r < R; r++) {                                                 \
            acc[r] = _mm256_setzero_ps();                                                    \
            acc_m[r] = _mm_setzero_ps();                                                     \
            summs[r] = 0.0f;                                                                 \
        }                                                                                    \
        for (int64_t i = 0; i < k / QK_K; i++) {                                             \
            __m256i lanes[MAX_ACT_ROWS], mins[MAX_ACT_ROWS];                                 \
            lanes_##name(w, i, act, act_stride, R, lanes, mins, 0, 4, 0, NULL);              \
            const float dx = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);           \
            UNROLL for (int r = 0; r < R; r++) {                                             \
                const float dy = (ACT_ROW(block_q8_K, act, act_stride, r) + i)->d;           \
                if (MIN_IN_LANES)                                                            \
                    acc_m[r] = _mm_fmadd_ps(_mm_set1_ps(-dy * dmin),                         \
                                            _mm_cvtepi32_ps(_mm256_castsi256_si128(mins[r])), acc_m[r]); \
                else                                                                         \
                    summs[r] = fmaf(-dy * dmin, (float)hsum_epi32_4(_mm256_castsi256_si128(mins[r])), summs[r]); \
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dy * dx), _mm256_cvtepi32_ps(lanes[r]), acc[r]); \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int r = 0; r < R; r++) {                                                 \
            if (MIN_IN_LANES) {                                                              \
                __m128 m = _mm_add_ps(acc_m[r], _mm_movehl_ps(acc_m[r], acc_m[r]));          \
                m = _mm_add_ss(m, _mm_movehdup_ps(m));                                       \
                summs[r] = _mm_cvtss_f32(m);                                                 \
            }                                                                                \
            out[r * ldo] = hsum_float_8(acc[r]) + summs[r];                                  \
        }                                                                                    \
    }
K4_KERNEL(q4_K, block_q4_K, 1)
K4_KERNEL(q5_K, block_q5_K, 0)

ROWS_OF(dot_f32)
ROWS_OF(dot_f16)
ROWS_OF(dot_bf16)
ROWS_OF(q4_0_q0_0)
ROWS_OF(q5_0_q0_0)
ROWS_OF(q8_0_q0_0)
ROWS_OF(iq4_nl_q0_0)
ROWS_OF(iq4_nl_q0_1)
ROWS_OF(q4_1_q1)
ROWS_OF(q5_1_q1)
ROWS_OF(q2_K_vec_dot)
ROWS_OF(q3_K_vec_dot)
ROWS_OF(q4_K_vec_dot)
ROWS_OF(q5_K_vec_dot)
ROWS_OF(q6_K_vec_dot)

/* ================================================================ 3. GEMV, GEMM and TILED chains
 * One float chain per output, advancing by steps (a block; in GEMM 64 elements of Q4_K
 * or 128 of Q2_K):
 *   GEMV, GEMM  acc = fma(isum, dx dy, acc); acc_min = fma(imin, dmin dy, acc_min);
 *               out = acc - acc_min
 *   TILED       r = isum dx; r = fma(-dmin, imin, r); acc = fma(r, dy, acc)
 * Each weight row is read as one stream, like the vec_dot kernels (a kernel that read 8
 * rows side by side, as ggml's repacked gemv does, would interleave 8 streams and lose
 * half the bandwidth on rows that are not interleaved in memory). */

/* lanes lo <= l < hi of v, the others zero */
INLINE __m256i lane_range(__m256i v, int lo, int hi) {
    const __m256i l = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(v, _mm256_and_si256(_mm256_cmpgt_epi32(l, _mm256_set1_epi32(lo - 1)),
                                                _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), l)));
}

/* the fp16 at byte `offset` of blocks i .. i+3 (block_bytes apart) -> 4 floats */
INLINE __m128 fp16_4(const void *w, size_t block_bytes, int64_t i, size_t offset) {
    const char *p = (const char *)w + i * (int64_t)block_bytes + offset;
    uint16_t h[4];
    for (int q = 0; q < 4; q++) memcpy(&h[q], p + q * block_bytes, 2);
    uint64_t u;
    memcpy(&u, h, 8);
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)u));
}

/* the activation scale of block i of row r, as a float */
INLINE float act_d_q8_0(const void *act, int64_t act_stride, int r, int64_t i) {
    return fp16_to_fp32((ACT_ROW(block_q8_0, act, act_stride, r) + i)->d);
}
INLINE float act_d_q8_K(const void *act, int64_t act_stride, int r, int64_t i) {
    return (ACT_ROW(block_q8_K, act, act_stride, r) + i)->d;
}
/* the same of block i of rows 0 .. R-1 (Q8_0 activations; 0 past R) */
INLINE __m128 act_d_rows_q8_0(const void *act, int64_t act_stride, int R, int64_t i) {
    uint16_t h[4] = {0};
    for (int r = 0; r < R; r++) h[r] = (ACT_ROW(block_q8_0, act, act_stride, r) + i)->d;
    uint64_t u;
    memcpy(&u, h, 8);
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)u));
}
/* the same of blocks i .. i+3 of one row (Q8_0 activations) */
INLINE __m128 act_d4_q8_0(const void *act, int64_t act_stride, int r, int64_t i) {
    return fp16_4(ACT_ROW(block_q8_0, act, act_stride, r), sizeof(block_q8_0), i, 0);
}

/* [sum of a's lanes, sum of b's, the same two again] (exact, wrapping) */
INLINE __m128i sums_2(__m256i a, __m256i b) {
    const __m256i t = _mm256_hadd_epi32(a, b);
    const __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    return _mm_hadd_epi32(u, u);
}

/* One weight row.  LANES: lanes[] and mins[] (__m256i, N_MIN of the min lanes used) of
 * block i of row w over chunks c0..c1-1 of N_CHUNKS; D_OFF, M_OFF: byte offsets of d and
 * dmin in a block (M_OFF < 0: no min term; else M_OFF = D_OFF + 2).  Three forms, each
 * doing the float arithmetic of the orders exactly, fast where it matters (decode):
 *   GEMV/GEMM with mins: isum and imin reduced together, [acc, acc_min] in one register,
 *   a GEMM's steps from one unpacking of the block;
 *   GEMV of 32-element blocks: four blocks reduced together, then four chained fmas;
 *   or, with several activation rows, their chains side by side;
 *   otherwise (TILED): one block at a time, scalar. */
#define CHAIN_KERNEL(name, btype, bsize, LANES, N_CHUNKS, N_MIN, D_OFF, M_OFF, ACT_D, ACT_D4)  \
    INLINE void name##_chain(int64_t k, const void *w, const void *act, int64_t act_stride,   \
                             float *out, int64_t ldo, const int R, const int steps,           \
                             const int tiled) {                                               \
        const int64_t nb = k / bsize;                                                        \
        if (!tiled && M_OFF >= 0) {                                                          \
            __m128 acc[MAX_ACT_ROWS];                   /* lanes: acc, acc_min (, junk) */   \
            UNROLL for (int r = 0; r < R; r++) acc[r] = _mm_setzero_ps();                    \
            for (int64_t i = 0; i < nb; i++) {                                               \
                int32_t d_dmin;                                                              \
                memcpy(&d_dmin, (const char *)w + i * (int64_t)sizeof(btype) + D_OFF, 4);    \
                __m128 dxm = _mm_cvtph_ps(_mm_cvtsi32_si128(d_dmin));     /* dx, dmin, 0, 0 */ \
                dxm = _mm_movelh_ps(dxm, dxm);                            /* dx, dmin, dx, dmin */ \
                __m256i lanes[MAX_ACT_ROWS], mins[MAX_ACT_ROWS], steps_of[MAX_ACT_ROWS][4];  \
                __m256i (*by_step)[4] = steps > 1 ? steps_of : NULL;                         \
                const int c0 = 0, c1 = N_CHUNKS;                                             \
                LANES                                                                        \
                UNROLL for (int r = 0; r < R; r++) {                                         \
                    const __m128 sc = _mm_mul_ps(dxm, _mm_set1_ps(ACT_D(act, act_stride, r, i))); \
                    if (steps == 1) {                                                        \
                        acc[r] = _mm_fmadd_ps(_mm_cvtepi32_ps(sums_2(lanes[r], mins[r])), sc, acc[r]); \
                        continue;                                                            \
                    }                                                                        \
                    /* GEMM: [isum_s, imin_s] of each step s, the steps in order */         \
                    __m128i im01, im23 = _mm_setzero_si128();                                \
                    if (steps == 4) {              /* Q4_K: mins one lane per sub-block */   \
                        const __m256i a = _mm256_hadd_epi32(steps_of[r][0], steps_of[r][1]); \
                        const __m256i b = _mm256_hadd_epi32(steps_of[r][2], steps_of[r][3]); \
                        const __m256i c = _mm256_hadd_epi32(a, b);                           \
                        const __m128i is = _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1)); \
                        const __m256i m = _mm256_hadd_epi32(mins[r], mins[r]);               \
                        const __m128i ms = _mm_unpacklo_epi64(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1)); \
                        im01 = _mm_unpacklo_epi32(is, ms);                                   \
                        im23 = _mm_unpackhi_epi32(is, ms);                                   \
                    } else {                       /* Q2_K: mins of groups 2l, 2l+1 in lane l */ \
                        const __m256i a = _mm256_hadd_epi32(steps_of[r][0], steps_of[r][1]); \
                        const __m256i b = _mm256_hadd_epi32(_mm256_zextsi128_si256(_mm256_castsi256_si128(mins[r])), \
                                                            _mm256_zextsi128_si256(_mm256_extracti128_si256(mins[r], 1))); \
                        const __m256i c = _mm256_hadd_epi32(a, b);                           \
                        const __m128i t = _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1)); \
                        im01 = _mm_shuffle_epi32(t, 0xD8);      /* I0 M0 I1 M1 */            \
                    }                                                                        \
                    const __m128 f01 = _mm_cvtepi32_ps(im01);                                \
                    acc[r] = _mm_fmadd_ps(f01, sc, acc[r]);                                  \
                    acc[r] = _mm_fmadd_ps(_mm_movehl_ps(f01, f01), sc, acc[r]);              \
                    if (steps == 4) {                                                        \
                        const __m128 f23 = _mm_cvtepi32_ps(im23);                            \
                        acc[r] = _mm_fmadd_ps(f23, sc, acc[r]);                              \
                        acc[r] = _mm_fmadd_ps(_mm_movehl_ps(f23, f23), sc, acc[r]);          \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
            UNROLL for (int r = 0; r < R; r++)                                               \
                out[r * ldo] = _mm_cvtss_f32(acc[r]) - _mm_cvtss_f32(_mm_movehdup_ps(acc[r])); \
            return;                                                                          \
        }                                                                                    \
        float acc[MAX_ACT_ROWS];                                                             \
        UNROLL for (int r = 0; r < R; r++) acc[r] = 0.0f;                                    \
        int64_t i = 0;                                                                       \
        if (!tiled && bsize == 32 && R > 1) {   /* the R rows' chains side by side */        \
            __m128 acc4 = _mm_setzero_ps();                                                  \
            for (; i < nb; i++) {                                                            \
                __m256i lanes[MAX_ACT_ROWS], mins[MAX_ACT_ROWS];                             \
                __m256i (*by_step)[4] = NULL;                                                \
                const int c0 = 0, c1 = 0;                                                    \
                LANES                                                                        \
                (void)mins;                                                                  \
                UNROLL for (int r = R; r < 4; r++) lanes[r] = _mm256_setzero_si256();        \
                const __m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(lanes[0], lanes[1]),   \
                                                    _mm256_hadd_epi32(lanes[2], lanes[3]));  \
                const __m128 t = _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(c),    \
                                                               _mm256_extracti128_si256(c, 1))); \
                ggml_half h;                                                                 \
                memcpy(&h, (const char *)w + i * (int64_t)sizeof(btype) + D_OFF, 2);         \
                const __m128 sc = _mm_mul_ps(_mm_set1_ps(fp16_to_fp32(h)),                   \
                                             act_d_rows_q8_0(act, act_stride, R, i));        \
                acc4 = _mm_fmadd_ps(t, sc, acc4);                                            \
            }                                                                                \
            float a[4];                                                                      \
            _mm_storeu_ps(a, acc4);                                                          \
            UNROLL for (int r = 0; r < R; r++) out[r * ldo] = a[r];                          \
            return;                                                                          \
        }                                                                                    \
        if (!tiled && bsize == 32) {                          /* four blocks at a time */    \
            for (; i + 3 < nb; i += 4) {                                                     \
                __m256i lq[4][MAX_ACT_ROWS], mins[MAX_ACT_ROWS];                             \
                __m256i (*by_step)[4] = NULL;                                                \
                const int c0 = 0, c1 = 0;                                                    \
                const int64_t i_first = i;                                                   \
                UNROLL for (int q = 0; q < 4; q++) {                                         \
                    __m256i *lanes = lq[q];                                                  \
                    const int64_t i = i_first + q;                                           \
                    LANES                                                                    \
                }                                                                            \
                (void)mins;                                                                  \
                const __m128 dx = fp16_4(w, sizeof(btype), i, D_OFF);                         \
                UNROLL for (int r = 0; r < R; r++) {                                         \
                    const __m256i a = _mm256_hadd_epi32(lq[0][r], lq[1][r]);                 \
                    const __m256i b = _mm256_hadd_epi32(lq[2][r], lq[3][r]);                 \
                    const __m256i c = _mm256_hadd_epi32(a, b);                               \
                    __m128 t = _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(c),      \
                                                             _mm256_extracti128_si256(c, 1))); \
                    __m128 sc = _mm_mul_ps(dx, ACT_D4(act, act_stride, r, i));               \
                    __m128 a0 = _mm_set_ss(acc[r]);                                          \
                    UNROLL for (int q = 0; q < 4; q++) {      /* block i + q: lane q */      \
                        a0 = _mm_fmadd_ss(t, sc, a0);                                        \
                        t = _mm_shuffle_ps(t, t, 0x39);                                      \
                        sc = _mm_shuffle_ps(sc, sc, 0x39);                                   \
                    }                                                                        \
                    acc[r] = _mm_cvtss_f32(a0);                                              \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        for (; i < nb; i++) {                                                                \
            const char *block = (const char *)w + i * (int64_t)sizeof(btype);                \
            ggml_half h;                                                                     \
            memcpy(&h, block + D_OFF, 2);                                                    \
            const float dx = fp16_to_fp32(h);                                                \
            float dmin = 0.0f;                                                               \
            if (M_OFF >= 0) {                                                                \
                memcpy(&h, block + (M_OFF >= 0 ? M_OFF : 0), 2);                             \
                dmin = fp16_to_fp32(h);                                                      \
            }                                                                                \
            UNROLL for (int step = 0; step < steps; step++) {                                \
                const int c0 = N_CHUNKS * step / steps, c1 = N_CHUNKS * (step + 1) / steps;  \
                __m256i lanes[MAX_ACT_ROWS], mins[MAX_ACT_ROWS];                             \
                __m256i (*by_step)[4] = NULL;                                                \
                LANES                                                                        \
                UNROLL for (int r = 0; r < R; r++) {                                         \
                    const float dy = ACT_D(act, act_stride, r, i);                           \
                    const float is = (float)hsum_epi32(lanes[r]);                            \
                    if (tiled) {                                                             \
                        float p = is * dx;                                                   \
                        if (M_OFF >= 0)                                                      \
                            p = fmaf(-dmin, (float)hsum_epi32(mins[r]), p);                  \
                        acc[r] = fmaf(p, dy, acc[r]);                                        \
                    } else {                                                                 \
                        acc[r] = fmaf(is, dx * dy, acc[r]);                                  \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int r = 0; r < R; r++) out[r * ldo] = acc[r];                            \
    }

#define LANES_32(name) lanes_##name(w, i, act, act_stride, R, lanes); (void)mins; (void)c0; (void)c1; (void)by_step;
#define LANES_MIN8(name) lanes_##name(w, i, act, act_stride, R, lanes, mins, c0, c1, by_step);
#define LANES_K4_MINS(name) lanes_##name(w, i, act, act_stride, R, lanes, mins, c0, c1, 1, by_step);
#define LANES_NO_MIN(name)                                                                   \
    {                                                                                        \
        __m256i unused[MAX_ACT_ROWS];                                                        \
        lanes_##name(w, i, act, act_stride, R, lanes, unused, c0, c1, by_step);              \
        (void)mins;                                                                          \
    }

CHAIN_KERNEL(q4_0, block_q4_0, 32, LANES_32(q4_0), 1, 0, 0, -1, act_d_q8_0, act_d4_q8_0)
CHAIN_KERNEL(iq4_nl, block_iq4_nl, 32, LANES_32(iq4_nl), 1, 0, 0, -1, act_d_q8_0, act_d4_q8_0)
CHAIN_KERNEL(q2_K, block_q2_K, QK_K, LANES_MIN8(q2_K), 8, 8, 80, 82, act_d_q8_K, act_d4_q8_0)
CHAIN_KERNEL(q3_K, block_q3_K, QK_K, LANES_NO_MIN(q3_K), 8, 0, 108, -1, act_d_q8_K, act_d4_q8_0)
CHAIN_KERNEL(q4_K, block_q4_K, QK_K, LANES_K4_MINS(q4_K), 4, 8, 0, 2, act_d_q8_K, act_d4_q8_0)
CHAIN_KERNEL(q5_K, block_q5_K, QK_K, LANES_K4_MINS(q5_K), 4, 8, 0, 2, act_d_q8_K, act_d4_q8_0)
CHAIN_KERNEL(q6_K, block_q6_K, QK_K, LANES_NO_MIN(q6_K), 8, 0, 208, -1, act_d_q8_K, act_d4_q8_0)

/* the product_fn name##_<ORDER_NAME>: STEPS chain steps per block, TILED or not */
#define CHAIN_ROWS(name, ORDER_NAME, STEPS, TILED)                                           \
    static void name##_##ORDER_NAME(int64_t k, const void *w, int64_t w_stride, int n_rows,  \
                                    const void *act, int64_t act_stride, int n_act,          \
                                    float *out, int64_t ldo) {                               \
        for (int j = 0; j < n_rows; j++) {                                                   \
            const void *wj = (const char *)w + j * w_stride;                                 \
            switch (n_act) {                                                                 \
            case 1: name##_chain(k, wj, act, act_stride, out + j, ldo, 1, STEPS, TILED); break; \
            case 2: name##_chain(k, wj, act, act_stride, out + j, ldo, 2, STEPS, TILED); break; \
            case 3: name##_chain(k, wj, act, act_stride, out + j, ldo, 3, STEPS, TILED); break; \
            default: name##_chain(k, wj, act, act_stride, out + j, ldo, 4, STEPS, TILED); break; \
            }                                                                                \
        }                                                                                    \
    }
CHAIN_ROWS(q4_0, gemv, 1, 0)
CHAIN_ROWS(iq4_nl, gemv, 1, 0)
CHAIN_ROWS(q2_K, gemv, 1, 0)
CHAIN_ROWS(q4_K, gemv, 1, 0)
CHAIN_ROWS(q2_K, gemm, 2, 0)
CHAIN_ROWS(q4_K, gemm, 4, 0)
CHAIN_ROWS(q2_K, tiled, 1, 1)
CHAIN_ROWS(q3_K, tiled, 1, 1)
CHAIN_ROWS(q4_K, tiled, 1, 1)
CHAIN_ROWS(q5_K, tiled, 1, 1)
CHAIN_ROWS(q6_K, tiled, 1, 1)

product_fn fast_product(int type, product_order order) {
    switch (type) {
    case GGML_TYPE_F32: return dot_f32_rows;
    case GGML_TYPE_F16: return dot_f16_rows;
    case GGML_TYPE_BF16: return dot_bf16_rows;
    case GGML_TYPE_Q4_0: return order == ORDER_GEMV || order == ORDER_GEMM ? q4_0_gemv : q4_0_q0_0_rows;
    case GGML_TYPE_Q5_0: return q5_0_q0_0_rows;
    case GGML_TYPE_Q8_0: return q8_0_q0_0_rows;
    case GGML_TYPE_IQ4_NL:
        return order == ORDER_GEMV || order == ORDER_GEMM ? iq4_nl_gemv
             : order == ORDER_VEC_DOT ? iq4_nl_q0_1_rows : iq4_nl_q0_0_rows;
    case GGML_TYPE_Q4_1: return q4_1_q1_rows;
    case GGML_TYPE_Q5_1: return q5_1_q1_rows;
    case GGML_TYPE_Q2_K:
        return order == ORDER_GEMV ? q2_K_gemv : order == ORDER_GEMM ? q2_K_gemm
             : order == ORDER_TILED ? q2_K_tiled : q2_K_vec_dot_rows;
    case GGML_TYPE_Q3_K: return order == ORDER_TILED ? q3_K_tiled : q3_K_vec_dot_rows;
    case GGML_TYPE_Q4_K:
        return order == ORDER_GEMV ? q4_K_gemv : order == ORDER_GEMM ? q4_K_gemm
             : order == ORDER_TILED ? q4_K_tiled : q4_K_vec_dot_rows;
    case GGML_TYPE_Q5_K: return order == ORDER_TILED ? q5_K_tiled : q5_K_vec_dot_rows;
    case GGML_TYPE_Q6_K: return order == ORDER_TILED ? q6_K_tiled : q6_K_vec_dot_rows;
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

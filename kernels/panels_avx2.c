/* panels_avx2.c -- prefill products of K-quants and of the 32-element types (Q4_0 Q5_0
 * Q8_0 IQ4_NL): 8 weight rows unpacked once into an integer panel, then multiplied with
 * every activation row by VNNI dot products.  (The 32-element panel is at the end.)
 *
 * Why: the row kernels (quants_avx2.c) unpack each weight block again for every group
 * of 4 activation rows and apply sub-block scales with _mm256_madd_epi16, about 6
 * products per instruction.  A panel lays 4 consecutive quants of 8 rows (16 with
 * AVX-512: K_PANEL_ROWS, below) side by side in one register,
 *
 *     panel register k4 of a super-block:  | row 0: q[4k4 .. 4k4+3] | row 1 | ... | row 7 |
 *
 * so that one _mm256_dpbusd with 4 activation bytes broadcast makes 32 products for
 * 8 rows, and a group's integer scale is applied once per 16 elements and 8 rows
 * (one _mm256_mullo_epi32).  Packing costs about as much as 3 activation rows; the
 * panel then serves all of them.
 *
 * One super-block of a panel (2880 bytes):
 *   q[64][8][4]  unsigned quants: Q2_K 0..3, Q3_K 0..7, Q4_K 0..15, Q5_K 0..31, Q6_K 0..63
 *   sc[16][8]    int32 scale of each 16-element group g, per row
 *   m[8][8][2]   int16 m of groups 2p, 2p+1 per row, what multiplies the activation bsums:
 *                the mins (Q2_K, Q4_K, Q5_K) or the bias times the scale (Q3_K 4 S, Q6_K 32 S)
 *   d[8], dmin[8] per row: d, and dmin (mins) or d (biased quants: msum is in units of d)
 *
 * Per super-block and row the exact integers isum = sum_g sc_g sum_{e in g} q_e y_e and
 * msum = sum_g m_g bsum_g, the 8 rows in the 8 lanes of a register, whose float chains
 * then advance side by side in ggml's orders (ggml_order.c):
 *   GEMV, GEMM (Q2_K, Q4_K)  acc = fma(isum, d d_y, acc); acc_min = fma(msum, dmin d_y, acc_min)
 *                        per super-block (GEMV) or per 64 (Q4_K) or 128 (Q2_K) elements
 *                        (GEMM); out = acc - acc_min
 *   TILED, mins          r = isum d; r = fma(-dmin, msum, r); acc = fma(r, d_y, acc)
 *   TILED, biased        r = (isum - msum) d; acc = fma(r, d_y, acc)
 *
 * unpack_<type> unpacks one row's super-block; panel_product, the panel_fn of every
 * K-quant and order, packs 8 rows and runs panel_dot, specialised for the order and the
 * number of activation rows, over them.  Needs VNNI (AVX-VNNI, or AVX512-VNNI with VL);
 * without it fast_panel() is NULL and the row kernels serve prefill too.
 */
#include <stdlib.h>

#include "cpu_internal.h"

#if defined(__AVX2__) && (defined(__AVXVNNI__) || (defined(__AVX512VNNI__) && defined(__AVX512VL__)))

#include "avx2_blocks.h"

/* ---------------------------------------------------------------- a K-quant panel's lanes
 * One lane per weight row.  With AVX-512 (VNNI, BW) a panel holds 16 rows and every
 * step below is one zmm instruction doing the work of two ymm ones (dpbusd and mullo,
 * the bulk of a prefill, then run ~1.3x faster per element on Sapphire Rapids); else 8.
 * The lanes' integer sums and float chains are per row either way: same bits. */
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
enum { K_PANEL_ROWS = 16 };
typedef __m512i rows_i32;
typedef __m512 rows_f32;
INLINE rows_i32 rows_zero(void) { return _mm512_setzero_si512(); }
INLINE rows_i32 rows_load(const void *p) { return _mm512_loadu_si512(p); }
INLINE rows_i32 rows_set1(int32_t x) { return _mm512_set1_epi32(x); }
INLINE rows_i32 rows_dpbusd(rows_i32 acc, rows_i32 u, rows_i32 s) { return _mm512_dpbusd_epi32(acc, u, s); }
INLINE rows_i32 rows_add(rows_i32 a, rows_i32 b) { return _mm512_add_epi32(a, b); }
INLINE rows_i32 rows_sub(rows_i32 a, rows_i32 b) { return _mm512_sub_epi32(a, b); }
INLINE rows_i32 rows_mullo(rows_i32 a, rows_i32 b) { return _mm512_mullo_epi32(a, b); }
INLINE rows_i32 rows_madd16(rows_i32 a, rows_i32 b) { return _mm512_madd_epi16(a, b); }
INLINE rows_f32 rows_float(rows_i32 a) { return _mm512_cvtepi32_ps(a); }
INLINE rows_f32 rows_zero_f(void) { return _mm512_setzero_ps(); }
INLINE rows_f32 rows_load_f(const float *p) { return _mm512_loadu_ps(p); }
INLINE rows_f32 rows_set1_f(float x) { return _mm512_set1_ps(x); }
INLINE rows_f32 rows_mul_f(rows_f32 a, rows_f32 b) { return _mm512_mul_ps(a, b); }
INLINE rows_f32 rows_sub_f(rows_f32 a, rows_f32 b) { return _mm512_sub_ps(a, b); }
INLINE rows_f32 rows_fmadd(rows_f32 a, rows_f32 b, rows_f32 c) { return _mm512_fmadd_ps(a, b, c); }
INLINE rows_f32 rows_fnmadd(rows_f32 a, rows_f32 b, rows_f32 c) { return _mm512_fnmadd_ps(a, b, c); }
INLINE void rows_store_f(float *p, rows_f32 a) { _mm512_storeu_ps(p, a); }
/* the low 16 bits of lo's and hi's lanes, as the two halves of each lane */
INLINE rows_i32 rows_pair16(rows_i32 lo, rows_i32 hi) {
    return _mm512_mask_blend_epi16(0xAAAAAAAA, lo, _mm512_slli_epi32(hi, 16));
}
#else
enum { K_PANEL_ROWS = 8 };
typedef __m256i rows_i32;
typedef __m256 rows_f32;
INLINE rows_i32 rows_zero(void) { return _mm256_setzero_si256(); }
INLINE rows_i32 rows_load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
INLINE rows_i32 rows_set1(int32_t x) { return _mm256_set1_epi32(x); }
INLINE rows_i32 rows_dpbusd(rows_i32 acc, rows_i32 u, rows_i32 s) { return vnni_dpbusd(acc, u, s); }
INLINE rows_i32 rows_add(rows_i32 a, rows_i32 b) { return _mm256_add_epi32(a, b); }
INLINE rows_i32 rows_sub(rows_i32 a, rows_i32 b) { return _mm256_sub_epi32(a, b); }
INLINE rows_i32 rows_mullo(rows_i32 a, rows_i32 b) { return _mm256_mullo_epi32(a, b); }
INLINE rows_i32 rows_madd16(rows_i32 a, rows_i32 b) { return _mm256_madd_epi16(a, b); }
INLINE rows_f32 rows_float(rows_i32 a) { return _mm256_cvtepi32_ps(a); }
INLINE rows_f32 rows_zero_f(void) { return _mm256_setzero_ps(); }
INLINE rows_f32 rows_load_f(const float *p) { return _mm256_loadu_ps(p); }
INLINE rows_f32 rows_set1_f(float x) { return _mm256_set1_ps(x); }
INLINE rows_f32 rows_mul_f(rows_f32 a, rows_f32 b) { return _mm256_mul_ps(a, b); }
INLINE rows_f32 rows_sub_f(rows_f32 a, rows_f32 b) { return _mm256_sub_ps(a, b); }
INLINE rows_f32 rows_fmadd(rows_f32 a, rows_f32 b, rows_f32 c) { return _mm256_fmadd_ps(a, b, c); }
INLINE rows_f32 rows_fnmadd(rows_f32 a, rows_f32 b, rows_f32 c) { return _mm256_fnmadd_ps(a, b, c); }
INLINE void rows_store_f(float *p, rows_f32 a) { _mm256_storeu_ps(p, a); }
INLINE rows_i32 rows_pair16(rows_i32 lo, rows_i32 hi) { return _mm256_blend_epi16(lo, _mm256_slli_epi32(hi, 16), 0xAA); }
#endif

typedef struct {
    uint8_t q[QK_K / 4][K_PANEL_ROWS][4];
    int32_t sc[QK_K / 16][K_PANEL_ROWS];
    int16_t sc2[QK_K / 32][K_PANEL_ROWS][2];   /* sc of groups 2p, 2p + 1: see panel_dot's narrow */
    int16_t m[QK_K / 32][K_PANEL_ROWS][2];
    float d[K_PANEL_ROWS], dmin[K_PANEL_ROWS];
} panel_block;

/* ---------------------------------------------------------------- one row's super-block, unpacked
 * vals: 256 quants in element order; sc, m: per 16-element group; d, dmin as above */
typedef void (*unpack_fn)(const void *block, uint8_t vals[QK_K], int32_t sc[16], int16_t m[16],
                          float *d, float *dmin);

INLINE void store32(void *p, __m256i v) { _mm256_storeu_si256((__m256i *)p, v); }

/* Q4_K and Q5_K (qh: its 5th bits; NULL for Q4_K): sub-blocks 2c and 2c+1 are the low and
 * high nibbles of 32 bytes of qs; one scale and min per sub-block, so per two groups */
INLINE void unpack_k4(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales, uint8_t vals[QK_K],
                      int32_t sc[16], int16_t m[16]) {
    for (int c = 0; c < 4; c++) {
        const __m256i qv = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i q_lo = _mm256_and_si256(qv, _mm256_set1_epi8(0x0F));
        __m256i q_hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), _mm256_set1_epi8(0x0F));
        if (qh) {
            q_lo = _mm256_or_si256(q_lo, fifth_bit(qh, 2 * c));
            q_hi = _mm256_or_si256(q_hi, fifth_bit(qh, 2 * c + 1));
        }
        store32(vals + 64 * c, q_lo);
        store32(vals + 64 * c + 32, q_hi);
    }
    uint8_t sm[16];
    _mm_storeu_si128((__m128i *)sm, scale_min_k4(scales));
    for (int g = 0; g < 16; g++) {
        sc[g] = sm[g / 2];
        m[g] = sm[8 + g / 2];
    }
}

static void unpack_q4_K(const void *block, uint8_t vals[QK_K], int32_t sc[16], int16_t m[16],
                        float *d, float *dmin) {
    const block_q4_K *b = block;
    unpack_k4(b->qs, NULL, b->scales, vals, sc, m);
    *d = fp16_to_fp32(b->d);
    *dmin = fp16_to_fp32(b->dmin);
}

static void unpack_q5_K(const void *block, uint8_t vals[QK_K], int32_t sc[16], int16_t m[16],
                        float *d, float *dmin) {
    const block_q5_K *b = block;
    unpack_k4(b->qs, b->qh, b->scales, vals, sc, m);
    *d = fp16_to_fp32(b->d);
    *dmin = fp16_to_fp32(b->dmin);
}

static void unpack_q6_K(const void *block, uint8_t vals[QK_K], int32_t sc[16], int16_t m[16],
                        float *d, float *dmin) {
    const block_q6_K *b = block;
    for (int s = 0; s < 8; s++) store32(vals + 32 * s, slice_q6_K(b, s / 4, s % 4));
    for (int g = 0; g < 16; g++) {
        sc[g] = b->scales[g];
        m[g] = (int16_t)(32 * b->scales[g]);
    }
    *d = *dmin = fp16_to_fp32(b->d);
}

static void unpack_q3_K(const void *block, uint8_t vals[QK_K], int32_t sc[16], int16_t m[16],
                        float *d, float *dmin) {
    const block_q3_K *b = block;
    for (int s = 0; s < 8; s++) store32(vals + 32 * s, slice_q3_K(b, s / 4, s % 4));
    int8_t S[16];
    _mm_storeu_si128((__m128i *)S, q3_K_scales(b->scales));
    for (int g = 0; g < 16; g++) {
        sc[g] = S[g];
        m[g] = (int16_t)(4 * S[g]);
    }
    *d = *dmin = fp16_to_fp32(b->d);
}

static void unpack_q2_K(const void *block, uint8_t vals[QK_K], int32_t sc[16], int16_t m[16],
                        float *d, float *dmin) {
    const block_q2_K *b = block;
    for (int s = 0; s < 8; s++) store32(vals + 32 * s, slice_q2_K(b, s / 4, s % 4));
    for (int g = 0; g < 16; g++) {
        sc[g] = b->scales[g] & 0x0F;
        m[g] = b->scales[g] >> 4;
    }
    *d = fp16_to_fp32(b->d);
    *dmin = fp16_to_fp32(b->dmin);
}

/* ---------------------------------------------------------------- packing */

/* 8 rows of 8 u32 -> 8 columns of 8 u32 (row r, column c -> register c, lane r) */
INLINE void transpose_8x8_u32(__m256i v[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i + 0] = _mm256_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int c = 0; c < 4; c++) {
        v[c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x20);
        v[c + 4] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x31);
    }
}

/* super-block i of rows 0..n_rows-1 (the rest zero: they add nothing) into one panel block */
static void pack_block(unpack_fn unpack, const char *w, int64_t w_stride, size_t block_bytes,
                       int n_rows, int64_t i, panel_block *p) {
    uint8_t vals[K_PANEL_ROWS][QK_K];
    int32_t sc[K_PANEL_ROWS][16];
    int16_t m[K_PANEL_ROWS][16];
    for (int r = 0; r < K_PANEL_ROWS; r++) {
        if (r < n_rows) {
            unpack(w + r * w_stride + i * (int64_t)block_bytes, vals[r], sc[r], m[r], &p->d[r], &p->dmin[r]);
        } else {
            memset(vals[r], 0, sizeof vals[r]);
            memset(sc[r], 0, sizeof sc[r]);
            memset(m[r], 0, sizeof m[r]);
            p->d[r] = p->dmin[r] = 0.0f;
        }
    }
    for (int r0 = 0; r0 < K_PANEL_ROWS; r0 += 8)             /* 8 rows at a time */
        for (int k8 = 0; k8 < QK_K / 32; k8++) {            /* 8 groups of 4 quants at a time */
            __m256i v[8];
            for (int r = 0; r < 8; r++) v[r] = _mm256_loadu_si256((const __m256i *)(vals[r0 + r] + 32 * k8));
            transpose_8x8_u32(v);
            for (int c = 0; c < 8; c++) store32(p->q[8 * k8 + c][r0], v[c]);
        }
    for (int g = 0; g < 16; g++)
        for (int r = 0; r < K_PANEL_ROWS; r++) {
            p->sc[g][r] = sc[r][g];
            p->sc2[g / 2][r][g % 2] = (int16_t)sc[r][g];
            p->m[g / 2][r][g % 2] = m[r][g];
        }
}

/* ---------------------------------------------------------------- the product */

/* out[r * ldo + j] = dot(panel row j, activation row r), j < K_PANEL_ROWS, r < R, in the
 * order TILED (tiled = 1) or GEMV/GEMM in `steps` chain steps per super-block; biased:
 * Q3_K and Q6_K (msum is the bias, not a min).  narrow: a group's sum of 16 q y fits in
 * 16 bits (Q2_K, Q3_K, Q4_K: |q| <= 15, |y| <= 128, 16 x 15 x 128 < 2^15), so the sums
 * of two groups share a lane's halves and one madd applies both scales; Q5_K and Q6_K
 * take a mullo per group (twice the instructions of a madd). */
INLINE void panel_dot(const panel_block *p, int64_t nb, const void *act, int64_t act_stride,
                      float *out, int64_t ldo, const int R, const int steps, const int tiled,
                      const int biased, const int narrow) {
    rows_f32 acc[MAX_ACT_ROWS], acc_min[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) acc[r] = acc_min[r] = rows_zero_f();
    for (int64_t i = 0; i < nb; i++) {
        const panel_block *pb = p + i;
        const rows_f32 d = rows_load_f(pb->d), dmin = rows_load_f(pb->dmin);
        for (int step = 0; step < steps; step++) {  /* groups g_begin .. g_end - 1 */
            const int g_begin = 16 * step / steps, g_end = 16 * (step + 1) / steps;
            rows_i32 isum[MAX_ACT_ROWS];
            UNROLL for (int r = 0; r < R; r++) isum[r] = rows_zero();
            for (int g0 = g_begin; g0 < g_end; g0 += 2) {   /* two groups at once: 2R independent sums */
                rows_i32 gsum[2][MAX_ACT_ROWS];
                UNROLL for (int h = 0; h < 2; h++)
                    UNROLL for (int r = 0; r < R; r++) gsum[h][r] = rows_zero();
                UNROLL for (int s = 0; s < 4; s++) {
                    UNROLL for (int h = 0; h < 2; h++) {
                        const int g = g0 + h;
                        const rows_i32 wq = rows_load(pb->q[4 * g + s]);
                        UNROLL for (int r = 0; r < R; r++) {
                            int32_t y4;
                            memcpy(&y4, (ACT_ROW(block_q8_K, act, act_stride, r) + i)->qs + 16 * g + 4 * s, 4);
                            gsum[h][r] = rows_dpbusd(gsum[h][r], wq, rows_set1(y4));
                        }
                    }
                }
                if (narrow) {
                    const rows_i32 scales = rows_load(pb->sc2[g0 / 2]);
                    UNROLL for (int r = 0; r < R; r++)
                        isum[r] = rows_add(isum[r], rows_madd16(rows_pair16(gsum[0][r], gsum[1][r]), scales));
                } else {
                    UNROLL for (int h = 0; h < 2; h++) {
                        const rows_i32 scale = rows_load(pb->sc[g0 + h]);
                        UNROLL for (int r = 0; r < R; r++)
                            isum[r] = rows_add(isum[r], rows_mullo(gsum[h][r], scale));
                    }
                }
            }
            UNROLL for (int r = 0; r < R; r++) {
                const block_q8_K *y = ACT_ROW(block_q8_K, act, act_stride, r) + i;
                rows_i32 msum = rows_zero();
                for (int pair = g_begin / 2; pair < g_end / 2; pair++) {
                    int32_t b2;                              /* bsums 2 pair, 2 pair + 1 */
                    memcpy(&b2, y->bsums + 2 * pair, 4);
                    msum = rows_add(msum, rows_madd16(rows_load(pb->m[pair]), rows_set1(b2)));
                }
                const rows_f32 d_y = rows_set1_f(y->d);
                if (tiled && biased) {
                    const rows_f32 rr = rows_mul_f(rows_float(rows_sub(isum[r], msum)), d);
                    acc[r] = rows_fmadd(rr, d_y, acc[r]);
                } else if (tiled) {
                    rows_f32 rr = rows_mul_f(rows_float(isum[r]), d);
                    rr = rows_fnmadd(dmin, rows_float(msum), rr);
                    acc[r] = rows_fmadd(rr, d_y, acc[r]);
                } else {
                    acc[r] = rows_fmadd(rows_float(isum[r]), rows_mul_f(d, d_y), acc[r]);
                    acc_min[r] = rows_fmadd(rows_float(msum), rows_mul_f(dmin, d_y), acc_min[r]);
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++)
        rows_store_f(out + r * ldo, tiled ? acc[r] : rows_sub_f(acc[r], acc_min[r]));
}

/* panel_dot in the order of the type: steps per super-block (GEMM: Q4_K 4, Q2_K 2),
 * tiled, biased (Q3_K, Q6_K: msum is the bias) -- each call a specialisation */
INLINE void panel_dot_in_order(int type, product_order order, const panel_block *p, int64_t nb, const void *act,
                               int64_t act_stride, float *out, int64_t ldo, const int R) {
    const int biased = type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q6_K;
    const int narrow = type != GGML_TYPE_Q5_K && type != GGML_TYPE_Q6_K;
    if (order == ORDER_TILED && biased && narrow) panel_dot(p, nb, act, act_stride, out, ldo, R, 1, 1, 1, 1);
    else if (order == ORDER_TILED && biased) panel_dot(p, nb, act, act_stride, out, ldo, R, 1, 1, 1, 0);
    else if (order == ORDER_TILED && narrow) panel_dot(p, nb, act, act_stride, out, ldo, R, 1, 1, 0, 1);
    else if (order == ORDER_TILED) panel_dot(p, nb, act, act_stride, out, ldo, R, 1, 1, 0, 0);
    /* GEMV and GEMM: Q2_K and Q4_K, both narrow */
    else if (order == ORDER_GEMM && type == GGML_TYPE_Q4_K) panel_dot(p, nb, act, act_stride, out, ldo, R, 4, 0, 0, 1);
    else if (order == ORDER_GEMM) panel_dot(p, nb, act, act_stride, out, ldo, R, 2, 0, 0, 1);
    else panel_dot(p, nb, act, act_stride, out, ldo, R, 1, 0, 0, 1);
}

/* the same for R = n_act activation rows (1..MAX_ACT_ROWS) */
static void panel_dot_rows(int type, product_order order, const panel_block *p, int64_t nb, const void *act,
                           int64_t act_stride, int n_act, float *out, int64_t ldo) {
    switch (n_act) {
    case 1: panel_dot_in_order(type, order, p, nb, act, act_stride, out, ldo, 1); break;
    case 2: panel_dot_in_order(type, order, p, nb, act, act_stride, out, ldo, 2); break;
    case 3: panel_dot_in_order(type, order, p, nb, act, act_stride, out, ldo, 3); break;
    default: panel_dot_in_order(type, order, p, nb, act, act_stride, out, ldo, 4); break;
    }
}

static unpack_fn unpack_of(int type) {
    switch (type) {
    case GGML_TYPE_Q2_K: return unpack_q2_K;
    case GGML_TYPE_Q3_K: return unpack_q3_K;
    case GGML_TYPE_Q4_K: return unpack_q4_K;
    case GGML_TYPE_Q5_K: return unpack_q5_K;
    case GGML_TYPE_Q6_K: return unpack_q6_K;
    default: return NULL;
    }
}

/* the panel_fn of every K-quant and order: pack the rows, then every activation row
 * against the panel; 0 if out of memory */
static int panel_product(const product_args *a) {
    const int64_t nb = a->k / QK_K;
    const size_t block_bytes = (size_t)ref_traits(a->type)->type_size;
    panel_block *panel = malloc((size_t)nb * sizeof *panel);
    if (!panel) return 0;
    for (int64_t i = 0; i < nb; i++)
        pack_block(unpack_of(a->type), a->w, a->w_stride, block_bytes, a->n_rows, i, &panel[i]);
    float part[MAX_ACT_ROWS][K_PANEL_ROWS];
    for (int64_t t0 = 0; t0 < a->n_act; t0 += MAX_ACT_ROWS) {
        const int R = (int)(a->n_act - t0 < MAX_ACT_ROWS ? a->n_act - t0 : MAX_ACT_ROWS);
        const char *act = (const char *)a->act + t0 * a->act_stride;
        if (a->n_rows == K_PANEL_ROWS) {
            panel_dot_rows(a->type, a->order, panel, nb, act, a->act_stride, R, a->out + t0 * a->ldo, a->ldo);
        } else {                                             /* the last rows of a matrix */
            panel_dot_rows(a->type, a->order, panel, nb, act, a->act_stride, R, part[0], K_PANEL_ROWS);
            for (int r = 0; r < R; r++)
                for (int j = 0; j < a->n_rows; j++) a->out[(t0 + r) * a->ldo + j] = part[r][j];
        }
    }
    free(panel);
    return 1;
}

/* ---------------------------------------------------------------- 32-element blocks
 * Q4_0, Q5_0, Q8_0 and IQ4_NL against Q8_0, in tinyBLAS's order (and vec_dot's, the same
 * for Q4_0 Q5_0 Q8_0): per output and block 8 integer lanes, lane l the exact dot of bytes
 * 4l..4l+3, then lanes = fma(d_w d_y, (float) lanes, lanes); out = hsum(lanes).
 *
 * The row kernels make a lane as |w| . sign(y, w), two sign operations per pair of rows.
 * Here the 8 rows' blocks are unpacked once into unsigned w + 128, and since
 *
 *     lane(w, y) = lane(w + 128, y) - 128 lane(1, y)      exactly, as integers
 *
 * one dpbusd per pair, started from -128 lane(1, y) (made once per activation block for
 * the 8 rows), gives the same integers.  (dpbusd does not saturate; maddubs would, so this
 * is VNNI only.)  d_w d_y is one multiply of the 8 rows' d by d_y, each product then
 * read back by a broadcast load: the same float product as ggml's scalar one. */
enum { PANEL_32_ROWS = 8 };

typedef struct {
    uint8_t q[PANEL_32_ROWS][32];     /* w + 128, element order */
    float d[PANEL_32_ROWS];
} panel_block_32;

/* sums[j] = the dot of panel row j with the activation row y, in tinyBLAS's order */
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
/* Two rows per zmm: row 2p in the low 8 lanes, row 2p + 1 in the high 8 (adjacent in
 * the panel), the activation block in both halves: each lane's integers and float chain
 * are those of the ymm version, with half the instructions. */
static void dot_panel_32(const panel_block_32 *panel, int64_t nb, const block_q8_0 *y, float sums[PANEL_32_ROWS]) {
    enum { PAIRS = PANEL_32_ROWS / 2 };
    const __m512i offset = _mm512_set1_epi8((char)0x80);
    __m512 acc[PAIRS];
    UNROLL for (int p = 0; p < PAIRS; p++) acc[p] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m512i yq = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)y[i].qs));
        const __m512i start = _mm512_sub_epi32(_mm512_setzero_si512(),
                                               _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, yq));
        /* d_w d_y of the 8 rows, then each pair's two broadcast into the halves */
        const __m512 dd = _mm512_castps256_ps512(
            _mm256_mul_ps(_mm256_loadu_ps(panel[i].d), _mm256_set1_ps(fp16_to_fp32(y[i].d))));
        UNROLL for (int p = 0; p < PAIRS; p++) {
            const __m512i halves = _mm512_inserti64x4(_mm512_set1_epi32(2 * p), _mm256_set1_epi32(2 * p + 1), 1);
            const __m512i lanes = _mm512_dpbusd_epi32(start, _mm512_loadu_si512(panel[i].q[2 * p]), yq);
            acc[p] = _mm512_fmadd_ps(_mm512_permutexvar_ps(halves, dd), _mm512_cvtepi32_ps(lanes), acc[p]);
        }
    }
    UNROLL for (int p = 0; p < PAIRS; p++) {
        sums[2 * p] = hsum_float_8(_mm512_castps512_ps256(acc[p]));
        sums[2 * p + 1] = hsum_float_8(_mm512_extractf32x8_ps(acc[p], 1));
    }
}
#else
static void dot_panel_32(const panel_block_32 *panel, int64_t nb, const block_q8_0 *y, float sums[PANEL_32_ROWS]) {
    const __m256i offset = _mm256_set1_epi8((char)0x80);
    __m256 acc[PANEL_32_ROWS];
    UNROLL for (int j = 0; j < PANEL_32_ROWS; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i yq = _mm256_loadu_si256((const __m256i *)y[i].qs);
        const __m256i start = _mm256_sub_epi32(_mm256_setzero_si256(),
                                               vnni_dpbusd(_mm256_setzero_si256(), offset, yq));
        float dd[PANEL_32_ROWS];
        _mm256_storeu_ps(dd, _mm256_mul_ps(_mm256_loadu_ps(panel[i].d), _mm256_set1_ps(fp16_to_fp32(y[i].d))));
        UNROLL for (int j = 0; j < PANEL_32_ROWS; j++) {
            const __m256i lanes = vnni_dpbusd(start, _mm256_loadu_si256((const __m256i *)panel[i].q[j]), yq);
            acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dd[j]), _mm256_cvtepi32_ps(lanes), acc[j]);
        }
    }
    UNROLL for (int j = 0; j < PANEL_32_ROWS; j++) sums[j] = hsum_float_8(acc[j]);
}
#endif

static int panel_product_32(const product_args *a) {
    const int64_t nb = a->k / 32;
    const size_t block_bytes = (size_t)ref_traits(a->type)->type_size;
    panel_block_32 *panel = malloc((size_t)nb * sizeof *panel);
    if (!panel) return 0;
    const __m256i offset = _mm256_set1_epi8((char)0x80);
    for (int64_t i = 0; i < nb; i++)
        for (int j = 0; j < PANEL_32_ROWS; j++) {
            const char *block = (const char *)a->w + j * a->w_stride + i * (int64_t)block_bytes;
            const int here = j < a->n_rows;     /* rows past the matrix: zeros, not stored */
            store32(panel[i].q[j], here ? _mm256_xor_si256(quants_32(a->type, block), offset) : offset);
            panel[i].d[j] = here ? fp16_at(block) : 0.0f;
        }
    for (int64_t t = 0; t < a->n_act; t++) {
        float sums[PANEL_32_ROWS];
        dot_panel_32(panel, nb, ACT_ROW(block_q8_0, a->act, a->act_stride, t), sums);
        for (int j = 0; j < a->n_rows; j++) a->out[t * a->ldo + j] = sums[j];
    }
    free(panel);
    return 1;
}

int panel_rows(int type) { return unpack_of(type) ? K_PANEL_ROWS : PANEL_32_ROWS; }

/* repack's gemv and gemm of Q2_K and Q4_K, the tiled matmul of every K-quant; tinyBLAS
 * and vec_dot of the 32-element types */
panel_fn fast_panel(int type, product_order order) {
    const int repacked = type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q4_K;
    const int q0 = type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q8_0;
    switch (order) {
    case ORDER_GEMV:
    case ORDER_GEMM: return repacked ? panel_product : NULL;
    case ORDER_TILED: return unpack_of(type) ? panel_product : NULL;
    case ORDER_TINYBLAS: return q0 || type == GGML_TYPE_IQ4_NL ? panel_product_32 : NULL;
    case ORDER_VEC_DOT: return q0 ? panel_product_32 : NULL;   /* (IQ4_NL's pairs blocks) */
    default: return NULL;
    }
}

#else /* no VNNI */

panel_fn fast_panel(int type, product_order order) { (void)type; (void)order; return NULL; }
int panel_rows(int type) { (void)type; return 0; }

#endif

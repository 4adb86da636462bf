/* panels_avx2.c -- prefill products of K-quants: 8 weight rows unpacked once into an
 * integer panel, then multiplied with every activation row by VNNI dot products.
 *
 * Why: the row kernels (quants_avx2.c) unpack each weight block again for every group
 * of 4 activation rows and apply sub-block scales with _mm256_madd_epi16, about 6
 * products per instruction.  A panel lays 4 consecutive quants of 8 rows side by side
 * in one register,
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
 *   d[8], dm[8]  per row: d, and dmin (mins) or d (biased quants)
 *
 * Per super-block and row the exact integers isum = sum_g sc_g sum_{e in g} q_e y_e and
 * msum = sum_g m_g bsum_g, the 8 rows in the 8 lanes of a register, whose float chains
 * then advance side by side in ggml's orders (ggml_order.c):
 *   GEMV, GEMM (Q2_K, Q4_K)  acc = fma(isum, d dy, acc); acc_min = fma(msum, dmin dy, acc_min)
 *                        per super-block (GEMV) or per 64 (Q4_K) or 128 (Q2_K) elements
 *                        (GEMM); out = acc - acc_min
 *   TILED, mins          r = isum d; r = fma(-dmin, msum, r); acc = fma(r, dy, acc)
 *   TILED, biased        r = (isum - msum) d; acc = fma(r, dy, acc)
 *
 * Needs VNNI (AVX-VNNI, or AVX512-VNNI with VL); without it fast_panel() is NULL and
 * the row kernels serve prefill too.
 */
#include <stdlib.h>

#include "cpu_internal.h"

#if defined(__AVX2__) && (defined(__AVXVNNI__) || (defined(__AVX512VNNI__) && defined(__AVX512VL__)))

#include "avx2_blocks.h"

typedef struct {
    uint8_t q[QK_K / 4][PANEL_ROWS][4];
    int32_t sc[QK_K / 16][PANEL_ROWS];
    int16_t m[QK_K / 32][PANEL_ROWS][2];
    float d[PANEL_ROWS], dm[PANEL_ROWS];
} panel_block;

/* acc + 8 lanes of 4 products (u unsigned bytes, s signed bytes) */
INLINE __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
#ifdef __AVXVNNI__
    return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
    return _mm256_dpbusd_epi32(acc, u, s);
#endif
}

/* ---------------------------------------------------------------- one row's super-block, unpacked
 * vals: 256 quants in element order; sc, m: per 16-element group; d, dm as above */
typedef void (*unpack_fn)(const void *block, uint8_t vals[QK_K], int32_t sc[16], int16_t m[16],
                          float *d, float *dm);

#define STORE32(p, v) _mm256_storeu_si256((__m256i *)(p), (v))

static void unpack_q4_K(const void *block, uint8_t vals[QK_K], int32_t sc[16], int16_t m[16],
                        float *d, float *dm) {
    const block_q4_K *b = block;
    for (int c = 0; c < 4; c++) {
        const __m256i qv = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * c));
        STORE32(vals + 64 * c, _mm256_and_si256(qv, _mm256_set1_epi8(0x0F)));
        STORE32(vals + 64 * c + 32, _mm256_and_si256(_mm256_srli_epi16(qv, 4), _mm256_set1_epi8(0x0F)));
    }
    uint8_t sm[16];
    _mm_storeu_si128((__m128i *)sm, scales_mins_k4(b->scales));
    for (int g = 0; g < 16; g++) {
        sc[g] = sm[g / 2];
        m[g] = sm[8 + g / 2];
    }
    *d = fp16_to_fp32(b->d);
    *dm = fp16_to_fp32(b->dmin);
}

static void unpack_q5_K(const void *block, uint8_t vals[QK_K], int32_t sc[16], int16_t m[16],
                        float *d, float *dm) {
    const block_q5_K *b = block;
    for (int c = 0; c < 4; c++) {
        const __m256i qv = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * c));
        STORE32(vals + 64 * c, _mm256_or_si256(_mm256_and_si256(qv, _mm256_set1_epi8(0x0F)),
                                               fifth_bit(b->qh, 2 * c)));
        STORE32(vals + 64 * c + 32, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qv, 4),
                                                                     _mm256_set1_epi8(0x0F)),
                                                    fifth_bit(b->qh, 2 * c + 1)));
    }
    uint8_t sm[16];
    _mm_storeu_si128((__m128i *)sm, scales_mins_k4(b->scales));
    for (int g = 0; g < 16; g++) {
        sc[g] = sm[g / 2];
        m[g] = sm[8 + g / 2];
    }
    *d = fp16_to_fp32(b->d);
    *dm = fp16_to_fp32(b->dmin);
}

static void unpack_q6_K(const void *block, uint8_t vals[QK_K], int32_t sc[16], int16_t m[16],
                        float *d, float *dm) {
    const block_q6_K *b = block;
    for (int s = 0; s < 8; s++) STORE32(vals + 32 * s, slice_q6_K(b, s / 4, s % 4));
    for (int g = 0; g < 16; g++) {
        sc[g] = b->scales[g];
        m[g] = (int16_t)(32 * b->scales[g]);
    }
    *d = *dm = fp16_to_fp32(b->d);
}

static void unpack_q3_K(const void *block, uint8_t vals[QK_K], int32_t sc[16], int16_t m[16],
                        float *d, float *dm) {
    const block_q3_K *b = block;
    for (int s = 0; s < 8; s++) STORE32(vals + 32 * s, slice_q3_K(b, s / 4, s % 4));
    int8_t S[16];
    _mm_storeu_si128((__m128i *)S, scales_q3_K(b->scales));
    for (int g = 0; g < 16; g++) {
        sc[g] = S[g];
        m[g] = (int16_t)(4 * S[g]);
    }
    *d = *dm = fp16_to_fp32(b->d);
}

static void unpack_q2_K(const void *block, uint8_t vals[QK_K], int32_t sc[16], int16_t m[16],
                        float *d, float *dm) {
    const block_q2_K *b = block;
    for (int s = 0; s < 8; s++) STORE32(vals + 32 * s, slice_q2_K(b, s / 4, s % 4));
    for (int g = 0; g < 16; g++) {
        sc[g] = b->scales[g] & 0x0F;
        m[g] = b->scales[g] >> 4;
    }
    *d = fp16_to_fp32(b->d);
    *dm = fp16_to_fp32(b->dmin);
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
    uint8_t vals[PANEL_ROWS][QK_K];
    int32_t sc[PANEL_ROWS][16];
    int16_t m[PANEL_ROWS][16];
    for (int r = 0; r < PANEL_ROWS; r++) {
        if (r < n_rows) {
            unpack(w + r * w_stride + i * (int64_t)block_bytes, vals[r], sc[r], m[r], &p->d[r], &p->dm[r]);
        } else {
            memset(vals[r], 0, sizeof vals[r]);
            memset(sc[r], 0, sizeof sc[r]);
            memset(m[r], 0, sizeof m[r]);
            p->d[r] = p->dm[r] = 0.0f;
        }
    }
    for (int k8 = 0; k8 < QK_K / 32; k8++) {                /* 8 groups of 4 quants at a time */
        __m256i v[PANEL_ROWS];
        for (int r = 0; r < PANEL_ROWS; r++) v[r] = _mm256_loadu_si256((const __m256i *)(vals[r] + 32 * k8));
        transpose_8x8_u32(v);
        for (int c = 0; c < 8; c++) STORE32(p->q[8 * k8 + c], v[c]);
    }
    for (int g = 0; g < 16; g++)
        for (int r = 0; r < PANEL_ROWS; r++) {
            p->sc[g][r] = sc[r][g];
            p->m[g / 2][r][g % 2] = m[r][g];
        }
}

/* ---------------------------------------------------------------- the product */

/* out[r * ldo + j] = dot(panel row j, activation row r), j < 8, r < R, in the order
 * TILED (tiled = 1) or GEMV/GEMM in `steps` chain steps per super-block; biased: Q3_K
 * and Q6_K (msum is the bias, not a min) */
INLINE void panel_dot(const panel_block *p, int64_t nb, const void *act, int64_t act_stride,
                      float *out, int64_t ldo, const int R, const int steps, const int tiled,
                      const int biased) {
    __m256 acc[MAX_ACT_ROWS], acc_min[MAX_ACT_ROWS];
    UNROLL for (int r = 0; r < R; r++) acc[r] = acc_min[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const panel_block *pb = p + i;
        const __m256 d = _mm256_loadu_ps(pb->d), dm = _mm256_loadu_ps(pb->dm);
        for (int step = 0; step < steps; step++) {  /* groups g_begin .. g_end - 1 */
            const int g_begin = 16 * step / steps, g_end = 16 * (step + 1) / steps;
            __m256i isum[MAX_ACT_ROWS];
            UNROLL for (int r = 0; r < R; r++) isum[r] = _mm256_setzero_si256();
            for (int g0 = g_begin; g0 < g_end; g0 += 2) {   /* two groups at once: 2R independent sums */
                __m256i gsum[2][MAX_ACT_ROWS];
                UNROLL for (int h = 0; h < 2; h++)
                    UNROLL for (int r = 0; r < R; r++) gsum[h][r] = _mm256_setzero_si256();
                UNROLL for (int s = 0; s < 4; s++) {
                    UNROLL for (int h = 0; h < 2; h++) {
                        const int g = g0 + h;
                        const __m256i wq = _mm256_loadu_si256((const __m256i *)pb->q[4 * g + s]);
                        UNROLL for (int r = 0; r < R; r++) {
                            int32_t y4;
                            memcpy(&y4, (ACT_ROW(block_q8_K, act, act_stride, r) + i)->qs + 16 * g + 4 * s, 4);
                            gsum[h][r] = dpbusd(gsum[h][r], wq, _mm256_set1_epi32(y4));
                        }
                    }
                }
                UNROLL for (int h = 0; h < 2; h++) {
                    const __m256i scale = _mm256_loadu_si256((const __m256i *)pb->sc[g0 + h]);
                    UNROLL for (int r = 0; r < R; r++)
                        isum[r] = _mm256_add_epi32(isum[r], _mm256_mullo_epi32(gsum[h][r], scale));
                }
            }
            UNROLL for (int r = 0; r < R; r++) {
                const block_q8_K *y = ACT_ROW(block_q8_K, act, act_stride, r) + i;
                __m256i msum = _mm256_setzero_si256();
                for (int pair = g_begin / 2; pair < g_end / 2; pair++) {
                    int32_t b2;                              /* bsums 2 pair, 2 pair + 1 */
                    memcpy(&b2, y->bsums + 2 * pair, 4);
                    msum = _mm256_add_epi32(msum, _mm256_madd_epi16(
                        _mm256_loadu_si256((const __m256i *)pb->m[pair]), _mm256_set1_epi32(b2)));
                }
                const __m256 dy = _mm256_set1_ps(y->d);
                if (tiled && biased) {
                    const __m256 rr = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(isum[r], msum)), d);
                    acc[r] = _mm256_fmadd_ps(rr, dy, acc[r]);
                } else if (tiled) {
                    __m256 rr = _mm256_mul_ps(_mm256_cvtepi32_ps(isum[r]), d);
                    rr = _mm256_fnmadd_ps(dm, _mm256_cvtepi32_ps(msum), rr);
                    acc[r] = _mm256_fmadd_ps(rr, dy, acc[r]);
                } else {
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_mul_ps(d, dy), acc[r]);
                    acc_min[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(dm, dy), acc_min[r]);
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++)
        _mm256_storeu_ps(out + r * ldo, tiled ? acc[r] : _mm256_sub_ps(acc[r], acc_min[r]));
}

/* the orders a panel computes: chain steps per super-block, tiled, biased (Q3_K, Q6_K) */
#define PANEL_ORDER(name, STEPS, TILED, BIASED)                                              \
    static void name(const panel_block *p, int64_t nb, const void *act, int64_t act_stride,  \
                     int n_act, float *out, int64_t ldo) {                                   \
        switch (n_act) {                                                                     \
        case 1: panel_dot(p, nb, act, act_stride, out, ldo, 1, STEPS, TILED, BIASED); break; \
        case 2: panel_dot(p, nb, act, act_stride, out, ldo, 2, STEPS, TILED, BIASED); break; \
        case 3: panel_dot(p, nb, act, act_stride, out, ldo, 3, STEPS, TILED, BIASED); break; \
        default: panel_dot(p, nb, act, act_stride, out, ldo, 4, STEPS, TILED, BIASED); break; \
        }                                                                                    \
    }
PANEL_ORDER(panel_gemv, 1, 0, 0)
PANEL_ORDER(panel_gemm_q2_K, 2, 0, 0)
PANEL_ORDER(panel_gemm_q4_K, 4, 0, 0)
PANEL_ORDER(panel_tiled_min, 1, 1, 0)
PANEL_ORDER(panel_tiled_biased, 1, 1, 1)

typedef void (*panel_dot_fn)(const panel_block *p, int64_t nb, const void *act, int64_t act_stride,
                             int n_act, float *out, int64_t ldo);

/* Pack the rows, then every activation row against the panel; false if out of memory */
static int panel_product(unpack_fn unpack, panel_dot_fn panel_dot_rows, size_t block_bytes, int64_t k,
                         const void *w, int64_t w_stride, int n_rows, const void *act,
                         int64_t act_stride, int64_t n_act, float *out, int64_t ldo) {
    const int64_t nb = k / QK_K;
    panel_block *panel = malloc((size_t)nb * sizeof *panel);
    if (!panel) return 0;
    for (int64_t i = 0; i < nb; i++) pack_block(unpack, w, w_stride, block_bytes, n_rows, i, &panel[i]);
    float part[MAX_ACT_ROWS][PANEL_ROWS];
    for (int64_t t0 = 0; t0 < n_act; t0 += MAX_ACT_ROWS) {
        const int R = (int)(n_act - t0 < MAX_ACT_ROWS ? n_act - t0 : MAX_ACT_ROWS);
        const char *a = (const char *)act + t0 * act_stride;
        if (n_rows == PANEL_ROWS) {
            panel_dot_rows(panel, nb, a, act_stride, R, out + t0 * ldo, ldo);
        } else {                                             /* the last rows of a matrix */
            panel_dot_rows(panel, nb, a, act_stride, R, part[0], PANEL_ROWS);
            for (int r = 0; r < R; r++)
                for (int j = 0; j < n_rows; j++) out[(t0 + r) * ldo + j] = part[r][j];
        }
    }
    free(panel);
    return 1;
}

#define PANEL_TYPE(name, ORDER_NAME, DOT)                                                    \
    static int panel_##name##_##ORDER_NAME(int64_t k, const void *w, int64_t w_stride,       \
                                           int n_rows, const void *act, int64_t act_stride,  \
                                           int64_t n_act, float *out, int64_t ldo) {         \
        return panel_product(unpack_##name, DOT, sizeof(block_##name), k, w, w_stride, n_rows, \
                             act, act_stride, n_act, out, ldo);                              \
    }
PANEL_TYPE(q2_K, gemv, panel_gemv)
PANEL_TYPE(q4_K, gemv, panel_gemv)
PANEL_TYPE(q2_K, gemm, panel_gemm_q2_K)
PANEL_TYPE(q4_K, gemm, panel_gemm_q4_K)
PANEL_TYPE(q2_K, tiled, panel_tiled_min)
PANEL_TYPE(q3_K, tiled, panel_tiled_biased)
PANEL_TYPE(q4_K, tiled, panel_tiled_min)
PANEL_TYPE(q5_K, tiled, panel_tiled_min)
PANEL_TYPE(q6_K, tiled, panel_tiled_biased)

panel_fn fast_panel(int type, product_order order) {
    switch (order) {
    case ORDER_GEMV: return type == GGML_TYPE_Q2_K ? panel_q2_K_gemv : type == GGML_TYPE_Q4_K ? panel_q4_K_gemv : NULL;
    case ORDER_GEMM: return type == GGML_TYPE_Q2_K ? panel_q2_K_gemm : type == GGML_TYPE_Q4_K ? panel_q4_K_gemm : NULL;
    case ORDER_TILED:
        switch (type) {
        case GGML_TYPE_Q2_K: return panel_q2_K_tiled;
        case GGML_TYPE_Q3_K: return panel_q3_K_tiled;
        case GGML_TYPE_Q4_K: return panel_q4_K_tiled;
        case GGML_TYPE_Q5_K: return panel_q5_K_tiled;
        case GGML_TYPE_Q6_K: return panel_q6_K_tiled;
        default: return NULL;
        }
    default: return NULL;
    }
}

#else /* no VNNI */

panel_fn fast_panel(int type, product_order order) { (void)type; (void)order; return NULL; }

#endif

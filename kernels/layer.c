/* layer.c -- one transformer block in one call: the CPU fast path of pyggml.model.forward.
 *
 * The numpy code in pyggml/model/forward.py is the readable definition; this file does
 * the same steps on the same buffers without returning to Python between them, which
 * is what a small model's decode speed depends on (SmolLM2-135M: 30 layers x 15 steps
 * per token; each Python round trip costs microseconds, the arithmetic of a step often
 * less).
 *
 *   h      = rms_norm(x) * attn_norm
 *   q,k,v  = Wq h [+ bq], Wk h [+ bk], Wv h [+ bv]   one quantization of h, one pool job
 *   q,k    = rms_norm(q) * q_norm, ... per head      [q_norm, k_norm]
 *   q,k    = rope(q), rope(k)                        cos/sin tables from Python
 *   q     *= q_scale                                 [q_scale != 1]
 *   q,k    = H q, H k;  v = H v                      Walsh-Hadamard rotations where K / V
 *                                                    are quantized [type_k, type_v]
 *   K,V[pos0 .. pos0+T) = fp16(k), fp16(v)           or Q8_0 / Q4_0 blocks [type_k, type_v]
 *   att    = attention(q, K, V)                      causal, grouped-query, per head,
 *                                                    scores scaled by attn_scale, keys
 *                                                    within the window [window]; flash
 *                                                    attention where V is quantized
 *   att    = H att                                   [type_v quantized]
 *   x     += rms_norm(Wo att) * attn_post_norm, or Wo att        [attn_post_norm]
 *   h      = rms_norm(x) * ffn_norm
 *   g,u    = Wgate h, Wup h                          one quantization of h
 *   x     += rms_norm(Wdown act(g) * u) * ffn_post_norm, or ...  [ffn_post_norm]
 *            act: silu, or GELU by ggml's fp16 table             [gelu_table]
 *
 * Several sequences can share a call (the server's batched decode step): each brings its
 * own handle of the layer (pyggml_seq: the same weights, its own kv cache) and one token;
 * the products then read every weight once for all of them, multiplying each row as a
 * product of that row alone would (pyggml_matmul_rows_alone), and the attention runs per
 * (sequence, head) over that sequence's cache, so each sequence gets the bits of its own
 * one-token call.
 *
 * What varies between architectures is a field of the pyggml_layer struct (pyggml_cpu.h),
 * filled from the layer's BlockSpec: this file never asks which family it runs.
 *
 * Numerics follow forward.py and numerics.py, which follow llama.cpp's CPU code bit for
 * bit: rope's rotation with the FMAs GCC makes of ggml's expression, Q rounded to fp16
 * before the scores, the attention dots in ggml's orders (dot_key, weighted_values, as
 * a decode step splits them: decode_scores, decode_values; a prompt's: dot_tile),
 * scores scaled after the dot, softmax through ggml's exp (softmax_row, ops.c),
 * probabilities rounded to fp16.  A quantized cache follows llama.cpp's arithmetic for
 * it (forward.py: rotate, store_kv, _key_scores, flash_attention): key_scores, flash_values.
 */
#include <math.h>

#include "cpu_internal.h"
#include "pyggml_cpu.h"

static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* the caches of a layer whose kv cache is fp16 (the paths that take only those) */
static inline const ggml_half *k_f16(const pyggml_layer *L) { return L->k_cache; }
static inline const ggml_half *v_f16(const pyggml_layer *L) { return L->v_cache; }

/* whether the kv cache is quantized (Q8_0 / Q4_0 K or V): then every call's attention
 * is attention_head's (llama.cpp's arithmetic for those types is key after key) */
static inline int quantized_cache(const pyggml_layer *L) {
    return L->type_k != GGML_TYPE_F16 || L->type_v != GGML_TYPE_F16;
}

static int64_t attention_floats(const pyggml_layer *L, int64_t T, int64_t n_seqs, int64_t n_ctx);

/* the float scratch a block needs for T rows of n_seqs sequences, in floats */
static int64_t scratch_floats(const pyggml_layer *L, int64_t T, int64_t n_seqs, int64_t n_ctx) {
    const int64_t n_gqa = L->n_head_kv * L->head_dim, n_q = L->n_head * L->head_dim;
    const int64_t k_max = max64(L->n_ff, max64(L->n_embd, n_q));
    return T * (L->n_embd          /* h, then the product before the residual add */
                + n_q              /* q */
                + 2 * n_gqa        /* k, v */
                + n_q              /* att */
                + 2 * L->n_ff      /* gate, up */
                + 2 * k_max)       /* quantized activations (<= 1.14 bytes per element) */
           + attention_floats(L, T, n_seqs, n_ctx);
}

int64_t pyggml_layer_scratch_bytes(const pyggml_layer *L, int64_t n_tokens, int n_seqs,
                                   int64_t n_ctx) {
    return (int64_t)sizeof(float) * scratch_floats(L, n_tokens, n_seqs, n_ctx);
}

/* rotate n_heads heads of d values at x (T rows, row stride ld) by cos/sin (T, d/2) */
static void rope(float *x, int64_t ld, int64_t T, int64_t n_heads, int64_t d, int neox,
                 const float *cos_t, const float *sin_t) {
    const int64_t half = d / 2;
    for (int64_t t = 0; t < T; t++) {
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        for (int64_t h = 0; h < n_heads; h++) {
            float *v = x + t * ld + h * d;
            for (int64_t i = 0; i < half; i++) {
                float *a = neox ? v + i : v + 2 * i;
                float *b = neox ? v + i + half : v + 2 * i + 1;
                const float x0 = *a, x1 = *b;          /* as GCC contracts ggml's rope */
                *a = fmaf(x0, c[i], -(x1 * s[i]));
                *b = fmaf(x0, s[i], x1 * c[i]);
            }
        }
    }
}

/* The attention products, in the order ggml sums them (pyggml/model/numerics.py, dot).
 *   one token (ggml_vec_dot_f16, AVX-512): four accumulators of 16 lanes take 64
 *     elements per step, then (acc0 + acc2) + (acc1 + acc3), then the 16 lanes are
 *     summed as _mm512_reduce_add_ps pairs them (GCC: halves, then quarters, then
 *     pairs); elements past the last whole 64 are added one by one in double;
 *   a prompt (llamafile's tinyBLAS): one FMA chain per lane over every 16th element,
 *     then the same sum of the 16 lanes.
 * fp16 x fp16 products are exact in float, so an FMA only rounds the sums.  An element's
 * accumulator is (i / 16) % n_acc with n_acc = 4 (one token) or 1 (a prompt).
 *
 * lanes16 holds ggml's 16 lanes: one AVX-512 register, two AVX registers, or an array
 * where the build has no AVX2.  Every operation on it is lane by lane, and lanes16_sum
 * adds the same pairs in every form, so all forms give the same bits. */
#if defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
#define ATTENTION_AVX2 1
#else
#define ATTENTION_AVX2 0
#endif

#if ATTENTION_AVX2 && defined(__AVX512F__)
#define ATTENTION_AVX512 1
typedef __m512 lanes16;

static inline lanes16 lanes16_zero(void) { return _mm512_setzero_ps(); }
static inline lanes16 lanes16_load(const float *x) { return _mm512_loadu_ps(x); }
static inline lanes16 lanes16_load_fp16(const ggml_half *h) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h));
}
/* a + h * x lane by lane, one rounding each */
static inline lanes16 lanes16_fma(lanes16 h, lanes16 x, lanes16 a) { return _mm512_fmadd_ps(h, x, a); }
static inline lanes16 lanes16_add(lanes16 a, lanes16 b) { return _mm512_add_ps(a, b); }
static inline lanes16 lanes16_set1(float x) { return _mm512_set1_ps(x); }
static inline void lanes16_store(float *x, lanes16 a) { _mm512_storeu_ps(x, a); }

/* lane l + lane l+8, then + lane +4, then (0 + 2) + (1 + 3) */
static inline float lanes16_sum(lanes16 a) {
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a), hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s4, _mm_movehdup_ps(s4)));
}
#elif ATTENTION_AVX2
#define ATTENTION_AVX512 0
typedef struct { __m256 lo, hi; } lanes16;          /* lanes 0..7, 8..15 */

static inline lanes16 lanes16_zero(void) { return (lanes16){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
static inline lanes16 lanes16_load(const float *x) {
    return (lanes16){_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)};
}
static inline lanes16 lanes16_load_fp16(const ggml_half *h) {
    return (lanes16){_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)),
                     _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + 8)))};
}
static inline lanes16 lanes16_fma(lanes16 h, lanes16 x, lanes16 a) {
    return (lanes16){_mm256_fmadd_ps(h.lo, x.lo, a.lo), _mm256_fmadd_ps(h.hi, x.hi, a.hi)};
}
static inline lanes16 lanes16_add(lanes16 a, lanes16 b) {
    return (lanes16){_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)};
}
static inline lanes16 lanes16_set1(float x) { return (lanes16){_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
static inline void lanes16_store(float *x, lanes16 a) {
    _mm256_storeu_ps(x, a.lo);
    _mm256_storeu_ps(x + 8, a.hi);
}

static inline float lanes16_sum(lanes16 a) {
    const __m256 s8 = _mm256_add_ps(a.lo, a.hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s4, _mm_movehdup_ps(s4)));
}
#else
#define ATTENTION_AVX512 0
typedef struct { float v[16]; } lanes16;

static inline lanes16 lanes16_zero(void) { return (lanes16){{0}}; }
static inline lanes16 lanes16_load(const float *x) {
    lanes16 a;
    for (int l = 0; l < 16; l++) a.v[l] = x[l];
    return a;
}
static inline lanes16 lanes16_load_fp16(const ggml_half *h) {
    lanes16 a;
    for (int l = 0; l < 16; l++) a.v[l] = fp16_to_fp32(h[l]);
    return a;
}
static inline lanes16 lanes16_fma(lanes16 h, lanes16 x, lanes16 a) {
    for (int l = 0; l < 16; l++) a.v[l] = fmaf(h.v[l], x.v[l], a.v[l]);
    return a;
}

static inline lanes16 lanes16_add(lanes16 a, lanes16 b) {
    for (int l = 0; l < 16; l++) a.v[l] += b.v[l];
    return a;
}
static inline lanes16 lanes16_set1(float x) {
    lanes16 a;
    for (int l = 0; l < 16; l++) a.v[l] = x;
    return a;
}
static inline void lanes16_store(float *x, lanes16 a) {
    for (int l = 0; l < 16; l++) x[l] = a.v[l];
}

static inline float lanes16_sum(lanes16 a) {
    float s8[8], s4[4];
    for (int l = 0; l < 8; l++) s8[l] = a.v[l] + a.v[l + 8];
    for (int l = 0; l < 4; l++) s4[l] = s8[l] + s8[l + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}
#endif

/* a[i] = fma(fp16 h[i], p, a[i]) for i < n: one value row into a lane's accumulators */
static void axpy_fp16(float *a, const ggml_half *h, float p, int64_t n) {
    int64_t i = 0;
#if ATTENTION_AVX2
    const __m256 vp = _mm256_set1_ps(p);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(a + i, _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))),
                                                vp, _mm256_loadu_ps(a + i)));
#endif
    for (; i < n; i++) a[i] = fmaf(fp16_to_fp32(h[i]), p, a[i]);
}

/* x[i] = fp16(x[i]) as a float, for i < n: Q and the probabilities are fp16 in ggml */
static void round_to_fp16(float *x, int64_t n) {
    int64_t i = 0;
#if ATTENTION_AVX2
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
#endif
    for (; i < n; i++) x[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
}

/* q16 <- Q rounded to fp16, as ggml converts Q for its fp16 K.q (one head's d numbers) */
static void rounded_query(float *q16, const float *q, int64_t d) {
    memcpy(q16, q, (size_t)d * sizeof(float));
    round_to_fp16(q16, d);
}

/* the 16 lanes of K.q over elements [0, n_simd) (whole 64s) before their sum: four
 * accumulators, each over every fourth 16, then (acc0 + acc2) + (acc1 + acc3) */
static inline lanes16 key_lanes(const ggml_half *key, const float *q16, int64_t n_simd) {
    lanes16 a0 = lanes16_zero(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i0 = 0; i0 < n_simd; i0 += 64) {
        a0 = lanes16_fma(lanes16_load_fp16(key + i0), lanes16_load(q16 + i0), a0);
        a1 = lanes16_fma(lanes16_load_fp16(key + i0 + 16), lanes16_load(q16 + i0 + 16), a1);
        a2 = lanes16_fma(lanes16_load_fp16(key + i0 + 32), lanes16_load(q16 + i0 + 32), a2);
        a3 = lanes16_fma(lanes16_load_fp16(key + i0 + 48), lanes16_load(q16 + i0 + 48), a3);
    }
    return lanes16_add(lanes16_add(a0, a2), lanes16_add(a1, a3));
}

/* K.q: the score of one key row (d fp16 values) against q16 (d floats), one token's order
 * (or a prompt's where d % 16 != 0: tinyBLAS declines those lengths) */
static float dot_key(const ggml_half *key, const float *q16, int64_t d) {
    const int64_t n_simd = d - d % 64;
    double sum = lanes16_sum(key_lanes(key, q16, n_simd));
    for (int64_t i = n_simd; i < d; i++) sum += (double)(fp16_to_fp32(key[i]) * q16[i]);
    return (float)sum;
}

/* V.p: out[i] = sum over j < n_kv of p[j] * V[j][i], for the d values of one head.  The
 * sum runs over kv positions (llama.cpp's padded kv length: no tail), so position j goes
 * to lane j % 16 of accumulator (j / 16) % n_acc, i.e. to accumulator lane j % (16 n_acc)
 * (a prompt whose head_dim tinyBLAS declines for K.q still takes it here: n_acc = 1;
 * other prompts go through attention_block).  Each lane is one FMA chain
 * over its positions, in order; acc holds the chain of lane L for every i at acc + L * d
 * (a whole value row per step, so the step vectorizes), and its lanes are then summed as
 * dot_key sums them, for every i at once. */
static void weighted_values(const ggml_half *v, int64_t v_stride, const float *p, int64_t j0,
                            int64_t n_kv, int64_t d, int prompt, float *acc /* 64 * d */,
                            float *out) {
    const int64_t n_lanes = prompt ? 16 : 64;
    for (int64_t lane = 0; lane < n_lanes; lane++) {
        float *a = acc + lane * d;
        for (int64_t i = 0; i < d; i++) a[i] = 0.0f;
        /* positions before j0 (outside a window) have p = +0: an FMA chain that starts at
         * +0 is unchanged by them (+0 + +-0 is +0), so they are skipped */
        const int64_t first =
            j0 <= lane ? lane : lane + (j0 - lane + n_lanes - 1) / n_lanes * n_lanes;
        for (int64_t j = first; j < n_kv; j += n_lanes) axpy_fp16(a, v + j * v_stride, p[j], d);
    }
    /* row l of acc, l < 16: lane l of (acc0 + acc2) + (acc1 + acc3); then lanes16_sum's
     * pairs: l + (l + 8), then + 4, then (0 + 2) + (1 + 3) */
    if (!prompt)
        for (int64_t l = 0; l < 16; l++) {
            float *a = acc + l * d;
            const float *a1 = acc + (l + 16) * d, *a2 = acc + (l + 32) * d, *a3 = acc + (l + 48) * d;
            for (int64_t i = 0; i < d; i++) a[i] = (a[i] + a2[i]) + (a1[i] + a3[i]);
        }
    for (int64_t half = 8; half >= 4; half /= 2)
        for (int64_t l = 0; l < half; l++) {
            float *a = acc + l * d;
            const float *b = acc + (l + half) * d;
            for (int64_t i = 0; i < d; i++) a[i] += b[i];
        }
    for (int64_t i = 0; i < d; i++) out[i] = (acc[i] + acc[2 * d + i]) + (acc[d + i] + acc[3 * d + i]);
}

/* ---------------------------------------------------------------- a prompt's attention
 * tinyBLAS multiplies K by Q, and V (stored transposed: a row per value dimension, over kv
 * positions) by the probabilities, each output one chain per lane over its 16th elements.
 * Both are the same product of fp16 rows ("keys": K rows, or V^T rows) and float rows
 * ("queries": Q rows, or probability rows), done here a tile of TILE_KEYS x TILE_QUERIES
 * outputs at a time: each fp16 row converted once per tile, every output its own chain.
 * The tile fits the registers (AVX-512: 16 of 32; AVX2: 6 pairs of 16). */
#if ATTENTION_AVX512
enum { TILE_KEYS = 4, TILE_QUERIES = 4 };
#else
enum { TILE_KEYS = 3, TILE_QUERIES = 2 };
#endif
/* queries per chunk: each K and V^T row is read once from cache per block of them */
enum { QUERY_BLOCK = 8, ATTENTION_SLOTS = 16 };

/* out[q * ld + k] = lanes16_sum(acc[q][k]) * scale for the tile */
static inline void tile_sums(lanes16 acc[TILE_QUERIES][TILE_KEYS], float scale, float *out,
                             int64_t ld) {
#if ATTENTION_AVX512
    /* all 16 at once: each step adds lanes16_sum's pairs of lanes for 2, 4, 8, then 16
     * outputs in a register.  Taking output m = 4 key + query, the steps leave its sum
     * in lane 4 query + key: a query's 4 scores in one 128-bit block. */
    __m512 c[8], e[4], f[2];
    #pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {          /* l + (l + 8): outputs 2i, 2i+1, 8 lanes each */
        const __m512 a = acc[(2 * i) % 4][(2 * i) / 4], b = acc[(2 * i + 1) % 4][(2 * i + 1) / 4];
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    }
    #pragma GCC unroll 16
    for (int i = 0; i < 4; i++)            /* + 4: outputs 4i .. 4i+3, one 128-bit block each */
        e[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0xDD));
    #pragma GCC unroll 16
    for (int i = 0; i < 2; i++)            /* (0 + 2), (1 + 3) */
        f[i] = _mm512_add_ps(_mm512_shuffle_ps(e[2 * i], e[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(e[2 * i], e[2 * i + 1], 0xEE));
    const __m512 sums = _mm512_mul_ps(_mm512_add_ps(_mm512_shuffle_ps(f[0], f[1], 0x88),
                                                    _mm512_shuffle_ps(f[0], f[1], 0xDD)),
                                      _mm512_set1_ps(scale));
    _mm_storeu_ps(out, _mm512_castps512_ps128(sums));
    _mm_storeu_ps(out + ld, _mm512_extractf32x4_ps(sums, 1));
    _mm_storeu_ps(out + 2 * ld, _mm512_extractf32x4_ps(sums, 2));
    _mm_storeu_ps(out + 3 * ld, _mm512_extractf32x4_ps(sums, 3));
#else
    #pragma GCC unroll 16
    for (int q = 0; q < TILE_QUERIES; q++)
        #pragma GCC unroll 16
        for (int k = 0; k < TILE_KEYS; k++) out[q * ld + k] = lanes16_sum(acc[q][k]) * scale;
#endif
}

/* out[q * ld + k] = scale * (keys[k] . queries[q]) over elements [i0, i1) (whole 16s), in
 * tinyBLAS's order.  The loops over the tile are unrolled whole (the pragmas) so that its
 * accumulators stay in registers: GCC otherwise keeps the array in memory. */
static void dot_tile(const ggml_half *const keys[TILE_KEYS], const float *const queries[TILE_QUERIES],
                     int64_t i0, int64_t i1, float scale, float *out, int64_t ld) {
    lanes16 acc[TILE_QUERIES][TILE_KEYS];
    #pragma GCC unroll 16
    for (int q = 0; q < TILE_QUERIES; q++)
        #pragma GCC unroll 16
        for (int k = 0; k < TILE_KEYS; k++) acc[q][k] = lanes16_zero();
    for (int64_t i = i0; i < i1; i += 16) {
        lanes16 key[TILE_KEYS];
        #pragma GCC unroll 16
        for (int k = 0; k < TILE_KEYS; k++) key[k] = lanes16_load_fp16(keys[k] + i);
        #pragma GCC unroll 16
        for (int q = 0; q < TILE_QUERIES; q++) {
            const lanes16 query = lanes16_load(queries[q] + i);
            #pragma GCC unroll 16
            for (int k = 0; k < TILE_KEYS; k++) acc[q][k] = lanes16_fma(key[k], query, acc[q][k]);
        }
    }
    tile_sums(acc, scale, out, ld);
}

static inline int64_t round_up16(int64_t n) { return (n + 15) / 16 * 16; }

/* the length of a probability row of a prompt's chunk: room for a tile past n_ctx */
static inline int64_t prompt_row_floats(int64_t n_ctx) { return round_up16(n_ctx) + 16; }

/* whether a call's attention takes the prompt path: T > 1 rows of one sequence, an fp16
 * cache, and tinyBLAS takes K.q (it declines d % 16 != 0) */
static inline int prompt_path(const pyggml_layer *L, int64_t T, int64_t n_seqs) {
    return n_seqs == 1 && T > 1 && L->head_dim % 16 == 0 && !quantized_cache(L);
}

typedef struct {
    const pyggml_seq *seqs;
    const int64_t *row0;     /* each sequence's first row in q and att */
    const float *q;          /* (T, n_head * head_dim) after rope */
    float *att;              /* (T, n_head * head_dim) */
    int64_t n_ctx;
    /* not the prompt path: a row of scores per (sequence, head); chunks of (sequence, head,
     * HEAD_ROWS rows) (attention_head), each in a slot of that scratch, or the three steps
     * of a decode step (decode_scores ...), a chunk's scratch its (sequence, head)'s */
    float *scores;           /* a row of n_ctx per (sequence, head) */
    float *acc;              /* 4 * 16 * head_dim per (sequence, head): V.p's accumulators */
    int64_t n_row_blocks;    /* attention_head: blocks of HEAD_ROWS rows per (sequence, head) */
    int n_slots;             /* attention_head: slots of scores and acc, <= 64 */
    int64_t n_key_blocks;    /* decode_scores' blocks of KEY_BLOCK keys per kv head */
    /* a prompt: a chunk per (head, block of QUERY_BLOCK queries) */
    ggml_half *v_t;          /* V^T: n_head_kv * d rows of v_t_len positions (a multiple of 16) */
    int64_t v_t_len, v_t_first, n_blocks;
    float *slots;            /* ATTENTION_SLOTS of QUERY_BLOCK probability rows, then q16 rows */
    uint64_t busy;           /* atomic: slots in use */
} attention_job;

/* a free one of the job's n_slots (<= 64) scratch slots: the caller runs at most n_slots
 * chunks at once (attention_block: ATTENTION_SLOTS; attention_head: job->n_slots) */
static int claim_slot(attention_job *job, int n_slots) {
    for (;;)
        for (int s = 0; s < n_slots; s++) {
            const uint64_t bit = (uint64_t)1 << s;
            if (!(__atomic_fetch_or(&job->busy, bit, __ATOMIC_ACQUIRE) & bit)) return s;
        }
}

static void release_slot(attention_job *job, int slot) {
    __atomic_fetch_and(&job->busy, ~((uint64_t)1 << slot), __ATOMIC_RELEASE);
}

/* the first key a query sees at n_kv keys (keys 0..n_kv-1 causally): a window hides the
 * keys at p' <= p - window (-inf scores, as llama.cpp's mask) */
static inline int64_t first_key(const pyggml_layer *L, int64_t n_kv) {
    return L->window > 0 ? max64(0, n_kv - L->window) : 0;
}

/* scores[j] = (K row j . q) * attn_scale for the keys [j0, n_kv) of kv head g, each
 * product as ggml takes it: fp16 K by Q rounded to fp16 (dot_key); Q8_0 or Q4_0 K by Q
 * quantized to Q8_0 (ggml converts Q to the K type's vec_dot_type with ggml-cpu's
 * quantize_row_q8_0), the types' vec_dot (tinyBLAS sums them in the same order) */
static void key_scores(const pyggml_layer *L, int64_t g, const float *q, int64_t j0,
                       int64_t n_kv, float *scores) {
    const int64_t d = L->head_dim;
    if (L->type_k == GGML_TYPE_F16) {
        const int64_t kv_stride = L->n_head_kv * d;
        float q16[1024];                                   /* head_dim <= 1024 (checked) */
        rounded_query(q16, q, d);
        for (int64_t j = j0; j < n_kv; j++)
            scores[j] = dot_key(k_f16(L) + j * kv_stride + g * d, q16, d) * L->attn_scale;
        return;
    }
    block_q8_0 q8[1024 / QK8_0];
    quantize_row_for(GGML_TYPE_Q8_0)(q, q8, d);
    const int64_t head_bytes = pyggml_row_bytes(L->type_k, d);
    const product_fn product = product_for(ref_traits(L->type_k), ORDER_VEC_DOT);
    for (int64_t j = j0; j < n_kv; j += ROW_GROUP) {
        const product_args keys = {
            .type = L->type_k, .order = ORDER_VEC_DOT, .k = d,
            .w = (const char *)L->k_cache + (j * L->n_head_kv + g) * head_bytes,
            .w_stride = L->n_head_kv * head_bytes,
            .n_rows = (int)min64(n_kv - j, ROW_GROUP),
            .act = q8, .act_stride = 0, .n_act = 1, .out = scores + j, .ldo = ROW_GROUP};
        product(&keys);
    }
    for (int64_t j = j0; j < n_kv; j++) scores[j] *= L->attn_scale;
}

/* out[i] = fma(v[i], vs, out[i]) over the d numbers of one V row of Q8_0 or Q4_0 blocks, v[i]
 * as ggml's to_float gives it (d q, or d (q - 8)): an fp16 times an integer of at most 8 bits
 * is exact in float, so each number is made in a register instead of a dequantized row */
static void axpy_blocks(float *out, const void *row, int type, float vs, int64_t d) {
    const int q8 = type == GGML_TYPE_Q8_0;
    for (int64_t b = 0; b < d / 32; b++, out += 32) {
        const block_q8_0 *block8 = (const block_q8_0 *)row + b;
        const block_q4_0 *block4 = (const block_q4_0 *)row + b;
        const float scale = fp16_to_fp32(q8 ? block8->d : block4->d);
#if ATTENTION_AVX2
        __m128i q[2];                                   /* the 32 quants, int8 */
        if (q8) {
            q[0] = _mm_loadu_si128((const __m128i *)block8->qs);
            q[1] = _mm_loadu_si128((const __m128i *)(block8->qs + 16));
        } else {                                        /* nibbles: numbers e and e + 16 */
            const __m128i bytes = _mm_loadu_si128((const __m128i *)block4->qs);
            const __m128i nibble = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
            q[0] = _mm_sub_epi8(_mm_and_si128(bytes, nibble), eight);
            q[1] = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), nibble), eight);
        }
        const __m256 v_scale = _mm256_set1_ps(scale), v_vs = _mm256_set1_ps(vs);
        for (int k = 0; k < 4; k++) {
            const __m128i eight_quants = k % 2 ? _mm_srli_si128(q[k / 2], 8) : q[k / 2];
            const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(eight_quants)),
                                           v_scale);
            _mm256_storeu_ps(out + 8 * k, _mm256_fmadd_ps(v, v_vs, _mm256_loadu_ps(out + 8 * k)));
        }
#else
        for (int e = 0; e < 32; e++) {
            const int q = q8 ? block8->qs[e]
                             : (e < 16 ? block4->qs[e] & 15 : block4->qs[e - 16] >> 4) - 8;
            out[e] = fmaf((float)q * scale, vs, out[e]);
        }
#endif
    }
}

/* out = V.p of kv head g over the keys [j0, n_kv) with their scores, V quantized: llama.cpp's
 * CPU flash attention (ggml_compute_forward_flash_attn_ext_f16_one_chunk, which it requires
 * for a quantized V), one key after another with an online softmax:
 *     if s > M:  ms = expf(M - s), M = s, out *= ms      (vs = 1)
 *     else:      vs = expf(s - M)                        (ms = 1)
 *     out = fma(v, vs, out)  (v dequantized: axpy_blocks),  S = fma(S, ms, vs)
 * then out *= 1 / S (0 where S is 0); expf is the C library's, as ggml calls it. */
static void flash_values(const pyggml_layer *L, int64_t g, const float *scores, int64_t j0,
                         int64_t n_kv, float *out) {
    const int64_t d = L->head_dim, head_bytes = pyggml_row_bytes(L->type_v, d);
    float M = -INFINITY, S = 0.0f;
    for (int64_t i = 0; i < d; i++) out[i] = 0.0f;
    for (int64_t j = j0; j < n_kv; j++) {
        const float s = scores[j];
        float ms = 1.0f, vs = 1.0f;
        if (s > M) {
            ms = expf(M - s);
            M = s;
            for (int64_t i = 0; i < d; i++) out[i] *= ms;
        } else {
            vs = expf(s - M);
        }
        axpy_blocks(out, (const char *)L->v_cache + (j * L->n_head_kv + g) * head_bytes,
                    L->type_v, vs, d);
        S = fmaf(S, ms, vs);
    }
    const float inverse = S == 0.0f ? 0.0f : 1.0f / S;
    for (int64_t i = 0; i < d; i++) out[i] *= inverse;
}

/* rows of a prompt per attention_head chunk: a prompt's rows in blocks, so that heads
 * fewer than the threads, or not a multiple of them, still keep every thread busy */
enum { HEAD_ROWS = 16 };

/* one query head of one sequence over a block of its rows: chunk = (sequence * n_head +
 * head) * n_row_blocks + block (one token per sequence, a prompt whose head_dim tinyBLAS
 * declines, or a quantized cache).  Each row's arithmetic is its own: the blocks change
 * only who computes it. */
static void attention_head(void *ctx, int64_t chunk) {
    attention_job *job = ctx;
    const int64_t head_of_seq = chunk / job->n_row_blocks, block = chunk % job->n_row_blocks;
    const pyggml_seq *seq = &job->seqs[head_of_seq / job->seqs[0].layer->n_head];
    const pyggml_layer *L = seq->layer;
    const int64_t h = head_of_seq % L->n_head, d = L->head_dim, g = h / (L->n_head / L->n_head_kv);
    const int64_t kv_stride = L->n_head_kv * d, n_q = L->n_head * d;
    const int64_t row0 = job->row0[seq - job->seqs];
    const int prompt = seq->n_tokens > 1;        /* ggml's prompt path: tinyBLAS for V.p */
    const int slot = claim_slot(job, job->n_slots);
    float *scores = job->scores + slot * job->n_ctx, *acc = job->acc + slot * 64 * d;
    const int64_t t_end = min64(seq->n_tokens, (block + 1) * HEAD_ROWS);
    for (int64_t t = block * HEAD_ROWS; t < t_end; t++) {
        const int64_t n_kv = seq->pos0 + t + 1;            /* causal: keys 0..pos0+t */
        const int64_t j0 = first_key(L, n_kv);
        float *out = job->att + (row0 + t) * n_q + h * d;
        key_scores(L, g, job->q + (row0 + t) * n_q + h * d, j0, n_kv, scores);
        if (L->type_v != GGML_TYPE_F16) {
            flash_values(L, g, scores, j0, n_kv, out);
            continue;
        }
        for (int64_t j = 0; j < j0; j++) scores[j] = -INFINITY;
        softmax_row(scores, n_kv);
        round_to_fp16(scores, n_kv);
        weighted_values(v_f16(L) + g * d, kv_stride, scores, j0, n_kv, d, prompt, acc, out);
    }
    release_slot(job, slot);
}

/* ---------------------------------------------------------------- a decode step
 * attention_head works per query head: each converts its kv head's K and V rows again
 * for every query head of the group, sums 16 lanes per key alone, and 9 heads split
 * unevenly over 2 threads.  A decode step (one token per sequence) whose head_dim is a
 * multiple of 64 (dot_key without its tail) does the same arithmetic in three steps
 * instead, each over many chunks:
 *   decode_scores    (sequence, kv head, KEY_BLOCK keys): the scores of every query
 *                    head of the group, each K row converted once per tile of them and
 *                    16 sums at once (tile_sums);
 *   decode_softmax   (sequence, head): softmax, then the probabilities rounded to fp16;
 *   decode_values    (sequence, kv head, 16 value dimensions): V.p for every query head
 *                    of the group, the positions in order, each V row converted once per
 *                    VALUE_HEADS of them, the lanes' chains in L1.
 * Each score and each output keeps the bits of dot_key and weighted_values: only the
 * assignment of work changes.  On one thread it is also 2x faster at 128 to 4,096
 * positions (docs/performance.md), so short contexts take it too. */
enum { KEY_BLOCK = 256 };
#define VALUE_HEADS 8                 /* query heads per pass over V (acc: 32 KB at most) */
#ifndef VALUE_PREFETCH
#define VALUE_PREFETCH 32
#endif

/* out[y * TILE_KEYS + k] = scale * dot_key(keys[k], queries[y], d) for a tile, d % 64 == 0,
 * y < n_queries: dot_key's lanes, summed a tile at a time.  Inlined with a constant d where
 * it can be (decode_scores), its loops unroll and each K row is converted once for the tile. */
static inline __attribute__((always_inline)) void score_tile(
    const ggml_half *const keys[TILE_KEYS], const float *const queries[TILE_QUERIES],
    int64_t n_queries, const int64_t d, float scale, float out[TILE_QUERIES * TILE_KEYS]) {
    lanes16 acc[TILE_QUERIES][TILE_KEYS];
    #pragma GCC unroll 16
    for (int y = 0; y < TILE_QUERIES; y++)
        #pragma GCC unroll 16
        for (int k = 0; k < TILE_KEYS; k++)
            acc[y][k] = y < n_queries ? key_lanes(keys[k], queries[y], d) : lanes16_zero();
    tile_sums(acc, scale, out, TILE_KEYS);
}

/* scores of the query heads of kv head g for keys [j_begin, j_end) of block
 * chunk = (sequence * n_head_kv + g) * n_key_blocks + block, in tiles of TILE_KEYS keys
 * by TILE_QUERIES heads (a partial tile repeats its last key, not written) */
static void decode_scores(void *ctx, int64_t chunk) {
    const attention_job *job = ctx;
    const int64_t n_head_kv = job->seqs[0].layer->n_head_kv;
    const int64_t s = chunk / job->n_key_blocks / n_head_kv, block = chunk % job->n_key_blocks;
    const pyggml_seq *seq = &job->seqs[s];
    const pyggml_layer *L = seq->layer;
    const int64_t g = chunk / job->n_key_blocks % n_head_kv, d = L->head_dim;
    const int64_t n_rep = L->n_head / n_head_kv, kv_stride = n_head_kv * d, n_q = L->n_head * d;
    const int64_t n_kv = seq->pos0 + 1;
    const int64_t j_begin = max64(first_key(L, n_kv), block * KEY_BLOCK);
    const int64_t j_end = min64(n_kv, (block + 1) * KEY_BLOCK);
    if (j_begin >= j_end) return;
    float q16[TILE_QUERIES * 1024];                        /* head_dim <= 1024 (checked) */
    const float *queries[TILE_QUERIES] = {NULL};
    for (int64_t h0 = 0; h0 < n_rep; h0 += TILE_QUERIES) {
        const int64_t n_heads = min64(n_rep - h0, TILE_QUERIES);
        for (int64_t y = 0; y < n_heads; y++) {
            const int64_t h = g * n_rep + h0 + y;
            rounded_query(q16 + y * d, job->q + job->row0[s] * n_q + h * d, d);
            queries[y] = q16 + y * d;
        }
        float *rows = job->scores + (s * L->n_head + g * n_rep + h0) * job->n_ctx;
        for (int64_t j = j_begin; j < j_end; j += TILE_KEYS) {
            const ggml_half *keys[TILE_KEYS];
            for (int k = 0; k < TILE_KEYS; k++)
                keys[k] = k_f16(L) + (j + k < j_end ? j + k : j_end - 1) * kv_stride + g * d;
            float out[TILE_QUERIES * TILE_KEYS];
            switch (d) {                       /* the common head sizes, as constants */
            case 64: score_tile(keys, queries, n_heads, 64, L->attn_scale, out); break;
            case 128: score_tile(keys, queries, n_heads, 128, L->attn_scale, out); break;
            default: score_tile(keys, queries, n_heads, d, L->attn_scale, out); break;
            }
            for (int64_t y = 0; y < n_heads; y++)
                for (int64_t k = 0; k < TILE_KEYS && j + k < j_end; k++)
                    rows[y * job->n_ctx + j + k] = out[y * TILE_KEYS + k];
        }
    }
}

/* the probabilities of one (sequence, head): chunk = sequence * n_head + head.  The row
 * starts at the 64 before its first key, where decode_values starts: its groups of 16 are
 * those of the row from 0, and the groups before are all masked (their exps add 0) */
static void decode_softmax(void *ctx, int64_t chunk) {
    const attention_job *job = ctx;
    const pyggml_seq *seq = &job->seqs[chunk / job->seqs[0].layer->n_head];
    const int64_t n_kv = seq->pos0 + 1, j0 = first_key(seq->layer, n_kv), j_first = j0 / 64 * 64;
    float *row = job->scores + chunk * job->n_ctx;
    for (int64_t j = j_first; j < j0; j++) row[j] = -INFINITY;
    softmax_row(row + j_first, n_kv - j_first);
    round_to_fp16(row + j_first, n_kv - j_first);
}

/* out[y][0..16) = V.p over positions [j_first, n_kv) (j_first a multiple of 64) for
 * n_heads probability rows p[y], 16 value dimensions at v: the chains of weighted_values
 * (position j in lane j % 64, over its positions in order) and its sum of them.  The
 * positions are taken in order, each V row converted once for all n_heads, and the 64
 * chains of every head wait in acc (64 n_heads x 16 floats: in L1), so that V is read as
 * one stream; a chain's positions before the first key have p = +0 and leave it at +0.
 * (The chains in registers, a pass over every 64th position per lane, read V across the
 * whole cache 16 times over: 1.2x slower at 4,096 positions.)  n_heads is a constant
 * where this is inlined (decode_values). */
static inline __attribute__((always_inline)) void values_slice(
    const ggml_half *v, int64_t v_stride, const float *const p[VALUE_HEADS], const int64_t n_heads,
    int64_t j_first, int64_t n_kv, float *const out[VALUE_HEADS]) {
    lanes16 acc[64 * VALUE_HEADS];                         /* chain c of head y: c * n_heads + y */
    for (int64_t i = 0; i < 64 * n_heads; i++) acc[i] = lanes16_zero();
    for (int64_t j = j_first; j < n_kv; j++) {
        /* the rows are v_stride apart, a few per 4 KiB page: the hardware prefetchers stop
         * at each page, so ask for the row VALUE_PREFETCH positions ahead */
        __builtin_prefetch(v + (j + VALUE_PREFETCH) * v_stride);
        const lanes16 x = lanes16_load_fp16(v + j * v_stride);
        lanes16 *a = acc + (j % 64) * n_heads;
        for (int64_t y = 0; y < n_heads; y++) a[y] = lanes16_fma(x, lanes16_set1(p[y][j]), a[y]);
    }
    /* row l of each head: chains (l + l+32) + (l+16 + l+48); then lanes16_sum's pairs:
     * l + (l + 8), then + 4, then (0 + 2) + (1 + 3) */
    for (int64_t y = 0; y < n_heads; y++) {
        lanes16 r[16];
        for (int l = 0; l < 16; l++)
            r[l] = lanes16_add(lanes16_add(acc[l * n_heads + y], acc[(l + 32) * n_heads + y]),
                               lanes16_add(acc[(l + 16) * n_heads + y], acc[(l + 48) * n_heads + y]));
        for (int half = 8; half >= 4; half /= 2)
            for (int l = 0; l < half; l++) r[l] = lanes16_add(r[l], r[l + half]);
        lanes16_store(out[y], lanes16_add(lanes16_add(r[0], r[2]), lanes16_add(r[1], r[3])));
    }
}

/* V.p of the query heads of kv head g over value dimensions [16 slice, 16 slice + 16):
 * chunk = (sequence * n_head_kv + g) * (head_dim / 16) + slice */
static void decode_values(void *ctx, int64_t chunk) {
    const attention_job *job = ctx;
    const pyggml_layer *L0 = job->seqs[0].layer;
    const int64_t n_slices = L0->head_dim / 16, n_head_kv = L0->n_head_kv;
    const int64_t s = chunk / n_slices / n_head_kv, g = chunk / n_slices % n_head_kv;
    const pyggml_seq *seq = &job->seqs[s];
    const pyggml_layer *L = seq->layer;
    const int64_t d = L->head_dim, n_rep = L->n_head / n_head_kv, n_q = L->n_head * d;
    const int64_t n_kv = seq->pos0 + 1, j_first = first_key(L, n_kv) / 64 * 64;
    const int64_t i0 = chunk % n_slices * 16;
    const ggml_half *v = v_f16(L) + g * d + i0;
    for (int64_t h0 = 0; h0 < n_rep; h0 += VALUE_HEADS) {
        const int64_t n_heads = min64(n_rep - h0, VALUE_HEADS);
        const float *p[VALUE_HEADS];
        float *out[VALUE_HEADS];
        for (int64_t y = 0; y < n_heads; y++) {
            const int64_t h = g * n_rep + h0 + y;
            p[y] = job->scores + (s * L->n_head + h) * job->n_ctx;
            out[y] = job->att + job->row0[s] * n_q + h * d + i0;
        }
        switch (n_heads) {                     /* as constants: the loop over heads unrolls */
        case 1: values_slice(v, n_head_kv * d, p, 1, j_first, n_kv, out); break;
        case 2: values_slice(v, n_head_kv * d, p, 2, j_first, n_kv, out); break;
        case 4: values_slice(v, n_head_kv * d, p, 4, j_first, n_kv, out); break;
        case 6: values_slice(v, n_head_kv * d, p, 6, j_first, n_kv, out); break;
        case 8: values_slice(v, n_head_kv * d, p, 8, j_first, n_kv, out); break;
        default: values_slice(v, n_head_kv * d, p, n_heads, j_first, n_kv, out); break;
        }
    }
}

enum { TRANSPOSE_POSITIONS = 256 };

/* V^T of a prompt's sequence, positions [v_t_first, v_t_len) of one kv head, 256 at a
 * time: chunk = head * blocks + block; positions past the cache's are zero */
static void transpose_values(void *ctx, int64_t chunk) {
    const attention_job *job = ctx;
    const pyggml_seq *seq = job->seqs;
    const pyggml_layer *L = seq->layer;
    const int64_t d = L->head_dim, kv_stride = L->n_head_kv * d, n_kv = seq->pos0 + seq->n_tokens;
    const int64_t n_per_head = (job->v_t_len - job->v_t_first + TRANSPOSE_POSITIONS - 1) / TRANSPOSE_POSITIONS;
    const int64_t g = chunk / n_per_head;
    const int64_t j_begin = job->v_t_first + chunk % n_per_head * TRANSPOSE_POSITIONS;
    const int64_t j_end = min64(j_begin + TRANSPOSE_POSITIONS, job->v_t_len);
    const int64_t j_cached = min64(j_end, n_kv);
    for (int64_t i = 0; i < d; i++) {
        ggml_half *row = job->v_t + (g * d + i) * job->v_t_len;
        const ggml_half *v = v_f16(L) + g * d + i;
        int64_t j = j_begin;
        for (; j < j_cached; j++) row[j] = v[j * kv_stride];
        for (; j < j_end; j++) row[j] = 0;
    }
}

/* one query head over QUERY_BLOCK rows of a prompt: chunk = head * n_blocks + block.
 * The scores and probabilities of the block's queries go to one slot's rows, over the
 * keys [k_first, k_end) that any of them sees (16-aligned: tinyBLAS's lanes); each
 * query's row holds -inf before its window and 0 past its causal end, as the mask
 * gives them in llama.cpp: the chain of a lane that starts at +0 is unchanged by such
 * +0 products, so every output has the bits of the whole masked row. */
static void attention_block(void *ctx, int64_t chunk) {
    attention_job *job = ctx;
    const pyggml_seq *seq = job->seqs;
    const pyggml_layer *L = seq->layer;
    const int64_t h = chunk / job->n_blocks, t0 = chunk % job->n_blocks * QUERY_BLOCK;
    const int64_t d = L->head_dim, g = h / (L->n_head / L->n_head_kv);
    const int64_t kv_stride = L->n_head_kv * d, n_q = L->n_head * d;
    const int64_t n_rows = min64(seq->n_tokens - t0, QUERY_BLOCK);
    const int64_t row_len = prompt_row_floats(job->n_ctx);
    const int slot = claim_slot(job, ATTENTION_SLOTS);
    float *p = job->slots + slot * QUERY_BLOCK * (row_len + d), *q16 = p + QUERY_BLOCK * row_len;

    int64_t n_kv[QUERY_BLOCK], j0[QUERY_BLOCK];
    const float *q_rows[QUERY_BLOCK], *p_rows[QUERY_BLOCK];
    for (int64_t r = 0; r < QUERY_BLOCK; r++) {
        const int64_t t = t0 + (r < n_rows ? r : n_rows - 1);   /* a partial block repeats its last row */
        n_kv[r] = seq->pos0 + t + 1;
        j0[r] = first_key(L, n_kv[r]);
        rounded_query(q16 + r * d, job->q + t * n_q + h * d, d);
        q_rows[r] = q16 + r * d;
        p_rows[r] = p + r * row_len;
    }
    const int64_t j_begin = j0[0], j_end = n_kv[n_rows - 1];
    const int64_t k_first = j_begin / 16 * 16, k_end = round_up16(j_end);

    /* scores: tiles of keys (the last repeats key j_end - 1) by tiles of queries */
    for (int64_t j = j_begin; j < j_end; j += TILE_KEYS) {
        const ggml_half *keys[TILE_KEYS];
        for (int k = 0; k < TILE_KEYS; k++)
            keys[k] = k_f16(L) + (j + k < j_end ? j + k : j_end - 1) * kv_stride + g * d;
        for (int64_t r = 0; r < n_rows; r += TILE_QUERIES)
            dot_tile(keys, q_rows + r, 0, d, L->attn_scale, p + r * row_len + j, row_len);
    }
    for (int64_t r = 0; r < n_rows; r++) {
        float *row = p + r * row_len;
        for (int64_t j = k_first; j < j0[r]; j++) row[j] = -INFINITY;
        /* from k_first, a multiple of 16: softmax_row's groups of 16 are those of the row
         * from 0, and the groups before are all masked (their exps add 0) */
        softmax_row(row + k_first, n_kv[r] - k_first);
        round_to_fp16(row + k_first, n_kv[r] - k_first);
        for (int64_t j = n_kv[r]; j < k_end; j++) row[j] = 0.0f;
    }

    /* V.p: tiles of value dimensions by tiles of queries */
    const ggml_half *v_t = job->v_t + g * d * job->v_t_len;
    for (int64_t i = 0; i < d; i += TILE_KEYS) {
        const ggml_half *dims[TILE_KEYS];
        for (int k = 0; k < TILE_KEYS; k++) dims[k] = v_t + (i + k < d ? i + k : d - 1) * job->v_t_len;
        for (int64_t r = 0; r < n_rows; r += TILE_QUERIES) {
            float out[TILE_QUERIES * TILE_KEYS];
            dot_tile(dims, p_rows + r, k_first, k_end, 1.0f, out, TILE_KEYS);
            for (int64_t y = 0; y < TILE_QUERIES && r + y < n_rows; y++)
                for (int64_t k = 0; k < TILE_KEYS && i + k < d; k++)
                    job->att[(t0 + r + y) * n_q + h * d + i + k] = out[y * TILE_KEYS + k];
        }
    }
    release_slot(job, slot);
}

/* the attention scratch of a call, in floats: a row of scores and V.p's accumulators per
 * (sequence, head), or for a prompt the slots and V^T */
static int64_t attention_floats(const pyggml_layer *L, int64_t T, int64_t n_seqs, int64_t n_ctx) {
    const int64_t d = L->head_dim;
    if (!prompt_path(L, T, n_seqs)) return n_seqs * L->n_head * (n_ctx + 64 * d);
    return ATTENTION_SLOTS * QUERY_BLOCK * (prompt_row_floats(n_ctx) + d)
           + (L->n_head_kv * d * round_up16(n_ctx) + 1) / 2;
}

/* The Walsh-Hadamard rotations llama.cpp applies around a quantized cache (attn_rot_k,
 * attn_rot_v: pyggml.model.forward.rotation_sizes), as their sizes (0: none): q and k in
 * runs of the largest power of two >= 64 dividing head_dim where K is quantized, v (and the
 * attention's output, back) in runs of 64 where V is; only where head_dim % 64 == 0. */
static int64_t k_rotation(const pyggml_layer *L) {
    if (L->type_k == GGML_TYPE_F16 || L->head_dim % 64) return 0;
    int64_t n = 64;
    while (L->head_dim % (2 * n) == 0) n *= 2;
    return n;
}

static int64_t v_rotation(const pyggml_layer *L) {
    return L->type_v != GGML_TYPE_F16 && L->head_dim % 64 == 0 ? 64 : 0;
}

/* each run of n numbers of x (count a multiple of n) times the n x n Walsh-Hadamard matrix
 * / sqrt(n), as ggml_compute_forward_fwht: scaled first, then the butterflies
 * (u, v) -> (u + v, u - v) at distances 1, 2, 4, ... n / 2 */
static void rotate(float *x, int64_t count, int64_t n) {
    const float scale = 1.0f / sqrtf((float)n);
    for (int64_t i = 0; i < count; i++) x[i] *= scale;
    for (int64_t run = 0; run < count; run += n)
        for (int64_t dist = 1; dist < n; dist *= 2)
            for (int64_t b = run; b < run + n; b += 2 * dist)
                for (int64_t i = b; i < b + dist; i++) {
                    const float u = x[i], v = x[i + dist];
                    x[i] = u + v;
                    x[i + dist] = u - v;
                }
}

/* n numbers of x into a cache of `type` at dst, as llama.cpp's set_rows writes them (the
 * type's from_float): fp16 (nearest even), ggml-cpu's quantize_row_q8_0 (the activations'
 * quantizer), quantize_row_q4_0_ref */
static void store_rows(int type, const float *x, void *dst, int64_t n) {
    if (type == GGML_TYPE_Q8_0) {
        quantize_row_for(GGML_TYPE_Q8_0)(x, dst, n);
    } else if (type == GGML_TYPE_Q4_0) {
        quantize_row_q4_0_ref(x, dst, n);
    } else {
        ggml_half *h = dst;
        for (int64_t i = 0; i < n; i++) h[i] = fp32_to_fp16(x[i]);
    }
}

/* the attention of a call: att = softmax(scale K.q) V per (sequence, head, query) */
static void attention(const pyggml_seq *seqs, int n_seqs, const int64_t *row0, const float *q,
                      float *att, int64_t n_ctx, float *scratch, int64_t work, int n_threads) {
    const pyggml_layer *L = seqs[0].layer;
    const int64_t T = row0[n_seqs - 1] + seqs[n_seqs - 1].n_tokens, d = L->head_dim;
    if (n_threads <= 0) n_threads = default_threads();
    if (work * L->n_head * d <= (1 << 16)) n_threads = 1;
    attention_job job = {.seqs = seqs, .row0 = row0, .q = q, .att = att, .n_ctx = n_ctx};
    if (!prompt_path(L, T, n_seqs)) {
        job.scores = scratch;
        job.acc = scratch + n_seqs * L->n_head * n_ctx;
        /* a decode step with an fp16 cache: in three steps */
        if (T == n_seqs && d % 64 == 0 && !quantized_cache(L)) {
            int64_t n_kv_max = 0;
            for (int s = 0; s < n_seqs; s++) n_kv_max = max64(n_kv_max, seqs[s].pos0 + 1);
            job.n_key_blocks = (n_kv_max + KEY_BLOCK - 1) / KEY_BLOCK;
            run_chunks(n_threads, n_seqs * L->n_head_kv * job.n_key_blocks, decode_scores, &job);
            run_chunks(n_threads, n_seqs * L->n_head, decode_softmax, &job);
            run_chunks(n_threads, n_seqs * L->n_head_kv * (d / 16), decode_values, &job);
        } else {
            int64_t n_rows_max = 0;
            for (int s = 0; s < n_seqs; s++) n_rows_max = max64(n_rows_max, seqs[s].n_tokens);
            job.n_row_blocks = (n_rows_max + HEAD_ROWS - 1) / HEAD_ROWS;
            job.n_slots = (int)min64(n_seqs * L->n_head, 64);
            run_chunks((int)min64(n_threads, job.n_slots),
                       n_seqs * L->n_head * job.n_row_blocks, attention_head, &job);
        }
        return;
    }
    /* V^T from the first position the first query sees */
    const int64_t first_n_kv = seqs[0].pos0 + 1;
    job.v_t_first = first_key(L, first_n_kv) / 16 * 16;
    job.v_t_len = round_up16(seqs[0].pos0 + T);
    job.slots = scratch;
    job.v_t = (ggml_half *)(scratch + ATTENTION_SLOTS * QUERY_BLOCK * (prompt_row_floats(n_ctx) + d));
    job.n_blocks = (T + QUERY_BLOCK - 1) / QUERY_BLOCK;
    const int64_t per_head = (job.v_t_len - job.v_t_first + TRANSPOSE_POSITIONS - 1) / TRANSPOSE_POSITIONS;
    run_chunks(n_threads, L->n_head_kv * per_head, transpose_values, &job);
    run_chunks((int)min64(n_threads, ATTENTION_SLOTS), L->n_head * job.n_blocks,
               attention_block, &job);
}

/* how the products of a call multiply its rows: as one batch, or each row as alone (the
 * rows of several sequences' decode steps) */
typedef int (*matmul_fn)(const pyggml_matmul_job *, int, const float *, int64_t, void *, int64_t,
                         int64_t, int);

static int product(matmul_fn matmul, const pyggml_weight *w, const float *x, int64_t T, int64_t k,
                   float *out, void *act, int n_threads) {
    const pyggml_matmul_job job = {w->type, w->n_rows, w->w, w->w_stride, out, w->n_rows};
    return matmul(&job, 1, x, k, act, T, k, n_threads);
}

/* products of several weights sharing the input x; one quantization per activation type */
static int products(matmul_fn matmul, const pyggml_weight *const *w, float *const *out, int n,
                    const float *x, int64_t T, int64_t k, void *act, int n_threads) {
    int done[4] = {0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        pyggml_matmul_job jobs[4];
        int n_jobs = 0;
        for (int j = i; j < n; j++) {
            if (done[j] || pyggml_act_type(w[j]->type) != pyggml_act_type(w[i]->type)) continue;
            jobs[n_jobs++] = (pyggml_matmul_job){w[j]->type, w[j]->n_rows, w[j]->w,
                                                 w[j]->w_stride, out[j], w[j]->n_rows};
            done[j] = 1;
        }
        const int rc = matmul(jobs, n_jobs, x, k, act, T, k, n_threads);
        if (rc != PYGGML_OK) return rc;
    }
    return PYGGML_OK;
}

static void add_rows(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* x (T, n_embd) += rms_norm(y) * post_norm, or y where post_norm is NULL; y is scratch */
static int add_residual(float *x, float *y, const float *post_norm, int64_t T, int64_t n_embd,
                        float eps) {
    if (post_norm) {
        const int rc = pyggml_rms_norm(y, n_embd, post_norm, y, n_embd, T, n_embd, eps);
        if (rc) return rc;
    }
    add_rows(x, y, T * n_embd);
    return PYGGML_OK;
}

/* x (T rows of n) += bias on every row; no bias (NULL): nothing */
static void add_bias(float *x, const float *bias, int64_t T, int64_t n) {
    if (bias)
        for (int64_t t = 0; t < T; t++) add_rows(x + t * n, bias, n);
}

/* whether b is another handle of a's layer: the same shapes, the same weights */
static int same_layer(const pyggml_layer *a, const pyggml_layer *b) {
    const pyggml_weight *wa[7] = {&a->wq, &a->wk, &a->wv, &a->wo, &a->w_gate, &a->w_up, &a->w_down};
    const pyggml_weight *wb[7] = {&b->wq, &b->wk, &b->wv, &b->wo, &b->w_gate, &b->w_up, &b->w_down};
    for (int i = 0; i < 7; i++)
        if (wa[i]->w != wb[i]->w || wa[i]->type != wb[i]->type || wa[i]->n_rows != wb[i]->n_rows)
            return 0;
    return a->n_embd == b->n_embd && a->n_head == b->n_head && a->n_head_kv == b->n_head_kv
        && a->head_dim == b->head_dim && a->n_ff == b->n_ff && a->type_k == b->type_k
        && a->type_v == b->type_v;
}

int pyggml_layer_forward(const pyggml_seq *seqs, int n_seqs, float *x,
                         const float *rope_cos, const float *rope_sin, void *scratch,
                         int64_t scratch_bytes, int n_threads) {
    if (!seqs || !x || !rope_cos || !rope_sin || !scratch) return PYGGML_ERR_ARG;
    if (n_seqs < 1 || n_seqs > PYGGML_MAX_SEQS) return PYGGML_ERR_SHAPE;
    const pyggml_layer *L = seqs[0].layer;        /* the weights: every sequence's are these */
    if (!L || L->head_dim < 2 || L->head_dim > 1024 || L->head_dim % 2 || L->n_head_kv < 1 ||
        L->n_head % L->n_head_kv || L->window < 0)
        return PYGGML_ERR_SHAPE;
    for (int c = 0; c < 2; c++) {                 /* the cache types: f16, q8_0, q4_0 */
        const int type = c ? L->type_v : L->type_k;
        if (type != GGML_TYPE_F16 && type != GGML_TYPE_Q8_0 && type != GGML_TYPE_Q4_0)
            return PYGGML_ERR_TYPE;
        if (type != GGML_TYPE_F16 && L->head_dim % QK8_0) return PYGGML_ERR_SHAPE;
    }
    int64_t row0[PYGGML_MAX_SEQS], T = 0, n_ctx = 0, attention_work = 0;
    for (int s = 0; s < n_seqs; s++) {
        const pyggml_seq *seq = &seqs[s];
        if (!seq->layer || !seq->layer->k_cache || !seq->layer->v_cache) return PYGGML_ERR_ARG;
        if (seq->layer != L && !same_layer(L, seq->layer)) return PYGGML_ERR_ARG;
        if (seq->n_tokens < 1 || (n_seqs > 1 && seq->n_tokens != 1) || seq->pos0 < 0 ||
            seq->pos0 + seq->n_tokens > seq->layer->n_ctx)
            return PYGGML_ERR_SHAPE;
        row0[s] = T;
        T += seq->n_tokens;
        n_ctx = max64(n_ctx, seq->layer->n_ctx);
        attention_work += seq->n_tokens * (seq->pos0 + seq->n_tokens);
    }
    if (scratch_bytes < pyggml_layer_scratch_bytes(L, T, n_seqs, n_ctx)) return PYGGML_ERR_ARG;
    const matmul_fn matmul = n_seqs > 1 ? pyggml_matmul_rows_alone : pyggml_matmul;

    const int64_t n_embd = L->n_embd, n_ff = L->n_ff, d = L->head_dim;
    const int64_t n_gqa = L->n_head_kv * d, n_q = L->n_head * d;
    float *h = scratch, *q = h + T * n_embd, *k = q + T * n_q, *v = k + T * n_gqa;
    float *att = v + T * n_gqa, *gate = att + T * n_q, *up = gate + T * n_ff;
    float *attention_scratch = up + T * n_ff;
    void *act = attention_scratch + attention_floats(L, T, n_seqs, n_ctx);
    int rc;

    /* attention */
    if ((rc = pyggml_rms_norm(x, n_embd, L->attn_norm, h, n_embd, T, n_embd, L->rms_eps)))
        return rc;
    const pyggml_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    float *qkv_out[3] = {q, k, v};
    if ((rc = products(matmul, qkv, qkv_out, 3, h, T, n_embd, act, n_threads))) return rc;
    add_bias(q, L->bq, T, n_q);
    add_bias(k, L->bk, T, n_gqa);
    add_bias(v, L->bv, T, n_gqa);
    if (L->q_norm && (rc = pyggml_rms_norm(q, d, L->q_norm, q, d, T * L->n_head, d, L->rms_eps)))
        return rc;
    if (L->k_norm && (rc = pyggml_rms_norm(k, d, L->k_norm, k, d, T * L->n_head_kv, d, L->rms_eps)))
        return rc;
    rope(q, n_q, T, L->n_head, d, L->rope_neox, rope_cos, rope_sin);
    rope(k, n_gqa, T, L->n_head_kv, d, L->rope_neox, rope_cos, rope_sin);
    if (L->q_scale != 1.0f)                     /* before Q is rounded to fp16 for K.q */
        for (int64_t i = 0; i < T * n_q; i++) q[i] *= L->q_scale;
    const int64_t n_rot_k = k_rotation(L), n_rot_v = v_rotation(L);
    if (n_rot_k) {                              /* a quantized cache: rotated first */
        rotate(q, T * n_q, n_rot_k);
        rotate(k, T * n_gqa, n_rot_k);
    }
    if (n_rot_v) rotate(v, T * n_gqa, n_rot_v);
    for (int s = 0; s < n_seqs; s++) {          /* each sequence's K and V into its cache */
        const pyggml_layer *Ls = seqs[s].layer;
        const int64_t n = seqs[s].n_tokens * n_gqa;
        store_rows(Ls->type_k, k + row0[s] * n_gqa,
                   (char *)Ls->k_cache + seqs[s].pos0 * pyggml_row_bytes(Ls->type_k, n_gqa), n);
        store_rows(Ls->type_v, v + row0[s] * n_gqa,
                   (char *)Ls->v_cache + seqs[s].pos0 * pyggml_row_bytes(Ls->type_v, n_gqa), n);
    }
    attention(seqs, n_seqs, row0, q, att, n_ctx, attention_scratch, attention_work, n_threads);
    if (n_rot_v) rotate(att, T * n_q, n_rot_v);
    if ((rc = product(matmul, &L->wo, att, T, n_q, h, act, n_threads))) return rc;
    if ((rc = add_residual(x, h, L->attn_post_norm, T, n_embd, L->rms_eps))) return rc;

    /* feed-forward */
    if ((rc = pyggml_rms_norm(x, n_embd, L->ffn_norm, h, n_embd, T, n_embd, L->rms_eps)))
        return rc;
    const pyggml_weight *gu[2] = {&L->w_gate, &L->w_up};
    float *gu_out[2] = {gate, up};
    if ((rc = products(matmul, gu, gu_out, 2, h, T, n_embd, act, n_threads))) return rc;
    if ((rc = L->gelu_table ? pyggml_gelu_mul(gate, up, gate, T * n_ff, L->gelu_table)
                            : pyggml_silu_mul(gate, up, gate, T, n_ff)))
        return rc;
    if ((rc = product(matmul, &L->w_down, gate, T, n_ff, h, act, n_threads))) return rc;
    return add_residual(x, h, L->ffn_post_norm, T, n_embd, L->rms_eps);
}

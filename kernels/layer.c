/* layer.c -- one transformer block in one call: the CPU fast path of pyggml.model.forward.
 *
 * The numpy code in pyggml/model/forward.py is the readable definition; this file does
 * the same steps on the same buffers without returning to Python between them, which
 * is what a small model's decode speed depends on (SmolLM2-135M: 30 layers x 15 steps
 * per token; each Python round trip costs microseconds, the arithmetic of a step often
 * less).
 *
 *   h      = rms_norm(x) * attn_norm
 *   q,k,v  = Wq h + bq, Wk h + bk, Wv h + bv         one quantization of h, one pool job
 *   q,k    = rope(q), rope(k)                        cos/sin tables from Python
 *   K,V[pos0 .. pos0+T) = fp16(k), fp16(v)
 *   att    = attention(q, K, V)                      causal, grouped-query, per head
 *   x     += Wo att
 *   h      = rms_norm(x) * ffn_norm
 *   g,u    = Wgate h, Wup h                          one quantization of h
 *   x     += Wdown (silu(g) * u)
 *
 * Numerics follow forward.py and numerics.py, which follow llama.cpp's CPU code bit for
 * bit: rope's rotation with the FMAs GCC makes of ggml's expression, Q rounded to fp16
 * before the scores, the attention dots in ggml's orders (dot_key, weighted_values),
 * scores scaled after the dot, softmax
 * through ggml's exp (softmax_row, ops.c), probabilities rounded to fp16.
 */
#include <math.h>

#include "cpu_internal.h"
#include "pyggml_cpu.h"

/* the float scratch a block needs for T tokens, in floats */
static int64_t scratch_floats(const pyggml_layer *L, int64_t T) {
    const int64_t n_gqa = L->n_head_kv * L->head_dim;
    const int64_t k_max = L->n_ff > L->n_embd ? L->n_ff : L->n_embd;
    return T * (L->n_embd          /* h, then the product before the residual add */
                + L->n_embd        /* q */
                + 2 * n_gqa        /* k, v */
                + L->n_embd        /* att */
                + 2 * L->n_ff      /* gate, up */
                + 2 * k_max)       /* quantized activations (<= 1.14 bytes per element) */
           + L->n_head * L->n_ctx   /* attention scores, one row per head */
           + L->n_head * 64 * L->head_dim;   /* V.p's lane accumulators, per head */
}

int64_t pyggml_layer_scratch_bytes(const pyggml_layer *L, int64_t n_tokens) {
    return (int64_t)sizeof(float) * scratch_floats(L, n_tokens);
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

/* _mm512_reduce_add_ps's pairing of 16 lanes, as GCC implements it: halves, then
 * quarters, then pairs (float addition is commutative, the pairing is what matters) */
static float reduce16(const float *lane) {
    float s8[8], s4[4];
    for (int l = 0; l < 8; l++) s8[l] = lane[l] + lane[l + 8];
    for (int l = 0; l < 4; l++) s4[l] = s8[l] + s8[l + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/* The attention products, in the order ggml sums them (pyggml/model/numerics.py, dot).
 *   one token (ggml_vec_dot_f16, AVX-512): four accumulators of 16 lanes take 64
 *     elements per step, then (acc0 + acc2) + (acc1 + acc3), then reduce16; elements
 *     past the last whole 64 are added one by one in double;
 *   a prompt (llamafile's tinyBLAS): one FMA chain per lane over every 16th element,
 *     then reduce16.
 * fp16 x fp16 products are exact in float, so fmaf only rounds the sums.  An element's
 * accumulator is (i / 16) % n_acc with n_acc = 4 (one token) or 1 (a prompt). */

/* K.q: the score of one key row (d fp16 values) against q16 (d floats) */
static float dot_key(const ggml_half *key, const float *q16, int64_t d, int prompt) {
    prompt = prompt && d % 16 == 0;             /* tinyBLAS declines other lengths */
    const int64_t n_acc = prompt ? 1 : 4, n_simd = prompt ? d : d - d % 64;
    float acc[4][16] = {{0}};
    for (int64_t i0 = 0; i0 < n_simd; i0 += 16) {
        float *lane = acc[(i0 / 16) % n_acc];
        for (int l = 0; l < 16; l++) lane[l] = fmaf(fp16_to_fp32(key[i0 + l]), q16[i0 + l], lane[l]);
    }
    float lanes[16];
    for (int l = 0; l < 16; l++)
        lanes[l] = prompt ? acc[0][l] : (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    double sum = reduce16(lanes);
    for (int64_t i = n_simd; i < d; i++) sum += (double)(fp16_to_fp32(key[i]) * q16[i]);
    return (float)sum;
}

/* V.p: out[i] = sum over j < n_kv of p[j] * V[j][i], for the d values of one head.  The
 * sum runs over kv positions (llama.cpp's padded kv length: no tail), so position j goes
 * to lane j % 16 of accumulator (j / 16) % n_acc; acc holds those lanes for every i
 * (i innermost, so the loop over a value row vectorizes). */
static void weighted_values(const ggml_half *v, int64_t v_stride, const float *p, int64_t n_kv,
                            int64_t d, int prompt, float *acc /* 4 * 16 * d */, float *out) {
    const int64_t n_acc = prompt ? 1 : 4;
    for (int64_t k = 0; k < n_acc * 16 * d; k++) acc[k] = 0.0f;
    for (int64_t j = 0; j < n_kv; j++) {
        float *lane = acc + (((j / 16) % n_acc) * 16 + j % 16) * d;
        const ggml_half *row = v + j * v_stride;
        for (int64_t i = 0; i < d; i++) lane[i] = fmaf(fp16_to_fp32(row[i]), p[j], lane[i]);
    }
    for (int64_t i = 0; i < d; i++) {
        float lanes[16];
        for (int l = 0; l < 16; l++) {
            const float *a = acc + l * d + i;
            lanes[l] = prompt ? a[0] : (a[0] + a[2 * 16 * d]) + (a[16 * d] + a[3 * 16 * d]);
        }
        out[i] = reduce16(lanes);
    }
}

typedef struct {
    const pyggml_layer *L;
    const float *q;          /* (T, n_embd) after rope */
    float *att;              /* (T, n_embd) */
    float *scores;           /* n_head rows of n_ctx */
    float *acc;              /* n_head blocks of 4 * 16 * head_dim: V.p's accumulators */
    int64_t T, pos0;
} attention_job;

/* one query head over all T tokens: chunk = head */
static void attention_head(void *ctx, int64_t h) {
    const attention_job *job = ctx;
    const pyggml_layer *L = job->L;
    const int64_t d = L->head_dim, g = h / (L->n_head / L->n_head_kv);
    const int64_t kv_stride = L->n_head_kv * d;
    const float scale = 1.0f / sqrtf((float)d);
    const int prompt = job->T > 1;              /* ggml's prompt path: tinyBLAS */
    float *scores = job->scores + h * L->n_ctx;
    float q16[1024];                                       /* head_dim <= 1024 (checked) */
    for (int64_t t = 0; t < job->T; t++) {
        const int64_t n_kv = job->pos0 + t + 1;            /* causal: keys 0..pos0+t */
        const float *q = job->q + t * L->n_embd + h * d;
        for (int64_t i = 0; i < d; i++) q16[i] = fp16_to_fp32(fp32_to_fp16(q[i]));
        for (int64_t j = 0; j < n_kv; j++)
            scores[j] = dot_key(L->k_cache + j * kv_stride + g * d, q16, d, prompt) * scale;
        softmax_row(scores, n_kv);
        for (int64_t j = 0; j < n_kv; j++) scores[j] = fp16_to_fp32(fp32_to_fp16(scores[j]));
        weighted_values(L->v_cache + g * d, kv_stride, scores, n_kv, d, prompt, job->acc + h * 64 * d,
                        job->att + t * L->n_embd + h * d);
    }
}

static int product(const pyggml_weight *w, const float *x, int64_t T, int64_t k, float *out,
                   void *act, int n_threads) {
    const pyggml_matmul_job job = {w->type, w->n_rows, w->w, w->w_stride, out, w->n_rows};
    return pyggml_matmul(&job, 1, x, k, act, T, k, n_threads);
}

/* products of several weights sharing the input x; one quantization per activation type */
static int products(const pyggml_weight *const *w, float *const *out, int n, const float *x,
                    int64_t T, int64_t k, void *act, int n_threads) {
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
        const int rc = pyggml_matmul(jobs, n_jobs, x, k, act, T, k, n_threads);
        if (rc != PYGGML_OK) return rc;
    }
    return PYGGML_OK;
}

static void add_rows(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

int pyggml_layer_forward(const pyggml_layer *L, float *x, int64_t T, int64_t pos0,
                         const float *rope_cos, const float *rope_sin, void *scratch,
                         int64_t scratch_bytes, int n_threads) {
    if (!L || !x || !rope_cos || !rope_sin || !scratch || !L->k_cache || !L->v_cache)
        return PYGGML_ERR_ARG;
    if (T < 1 || pos0 < 0 || pos0 + T > L->n_ctx || L->head_dim < 2 || L->head_dim > 1024 ||
        L->head_dim % 2 || L->n_head_kv < 1 || L->n_head % L->n_head_kv ||
        L->n_head * L->head_dim != L->n_embd)
        return PYGGML_ERR_SHAPE;
    if (scratch_bytes < pyggml_layer_scratch_bytes(L, T)) return PYGGML_ERR_ARG;

    const int64_t n_embd = L->n_embd, n_ff = L->n_ff, d = L->head_dim;
    const int64_t n_gqa = L->n_head_kv * d;
    float *h = scratch, *q = h + T * n_embd, *k = q + T * n_embd, *v = k + T * n_gqa;
    float *att = v + T * n_gqa, *gate = att + T * n_embd, *up = gate + T * n_ff;
    float *scores = up + T * n_ff, *acc = scores + L->n_head * L->n_ctx;
    void *act = acc + L->n_head * 64 * d;
    int rc;

    /* attention */
    if ((rc = pyggml_rms_norm(x, n_embd, L->attn_norm, h, n_embd, T, n_embd, L->rms_eps)))
        return rc;
    const pyggml_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    float *qkv_out[3] = {q, k, v};
    if ((rc = products(qkv, qkv_out, 3, h, T, n_embd, act, n_threads))) return rc;
    if (L->bq)
        for (int64_t t = 0; t < T; t++) {
            add_rows(q + t * n_embd, L->bq, n_embd);
            add_rows(k + t * n_gqa, L->bk, n_gqa);
            add_rows(v + t * n_gqa, L->bv, n_gqa);
        }
    rope(q, n_embd, T, L->n_head, d, L->rope_neox, rope_cos, rope_sin);
    rope(k, n_gqa, T, L->n_head_kv, d, L->rope_neox, rope_cos, rope_sin);
    for (int64_t i = 0; i < T * n_gqa; i++) {
        L->k_cache[pos0 * n_gqa + i] = fp32_to_fp16(k[i]);
        L->v_cache[pos0 * n_gqa + i] = fp32_to_fp16(v[i]);
    }
    attention_job job = {L, q, att, scores, acc, T, pos0};
    run_chunks(T * (pos0 + T) * n_embd > (1 << 16) ? n_threads : 1, L->n_head, attention_head, &job);
    if ((rc = product(&L->wo, att, T, n_embd, h, act, n_threads))) return rc;
    add_rows(x, h, T * n_embd);

    /* feed-forward */
    if ((rc = pyggml_rms_norm(x, n_embd, L->ffn_norm, h, n_embd, T, n_embd, L->rms_eps)))
        return rc;
    const pyggml_weight *gu[2] = {&L->w_gate, &L->w_up};
    float *gu_out[2] = {gate, up};
    if ((rc = products(gu, gu_out, 2, h, T, n_embd, act, n_threads))) return rc;
    if ((rc = pyggml_silu_mul(gate, up, gate, T, n_ff))) return rc;
    if ((rc = product(&L->w_down, gate, T, n_ff, h, act, n_threads))) return rc;
    add_rows(x, h, T * n_embd);
    return PYGGML_OK;
}

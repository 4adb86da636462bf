/* pyggml_cpu.h -- the C ABI of libpyggml_cpu, pyggml's CPU kernels.
 *
 * pyggml reads the part between the cdef markers with cffi (ABI mode, see
 * pyggml/backends/cpu_c.py), so that part holds only plain declarations:
 * no macros, no preprocessor lines.
 *
 * Conventions
 *   - Types are ggml type ids (enum ggml_type in ggml.h; ggml_blocks.h).
 *   - A weight matrix W is N rows of K elements; row n starts at
 *     w + n * w_stride bytes and holds K / block_size blocks of its type.
 *   - Activations are T rows of K floats, or the same rows quantized to the
 *     weight type's "activation type" (ggml's vec_dot_type), each row
 *     pyggml_row_bytes(act_type, K) bytes, rows back to back:
 *         Q2_K..Q6_K        -> Q8_K (292 B per 256)
 *         Q4_0 Q5_0 Q8_0 IQ4_NL -> Q8_0 (34 B per 32)
 *         Q4_1 Q5_1         -> Q8_1 (36 B per 32)
 *         F32 F16 BF16      -> F32  (the float rows themselves)
 *   - Products: out[t * ldo + n] = dot(W row n, activation row t), with the
 *     float32 bits llama.cpp's x86 CPU backend gives it: exact integer dots per
 *     block, then the float order of the kernel ggml runs for that type, row
 *     count N and number of activation rows T (kernels/ggml_order.c).
 *   - Every function returns PYGGML_OK (0) or a negative PYGGML_ERR_* code;
 *     a failing call writes nothing.  Callers (cpu_c.py) validate shapes
 *     first; the codes are a second line of defence, never a substitute.
 *   - n_threads <= 0 means one thread per online CPU; small products run on the
 *     calling thread whatever n_threads says, because handing out work costs
 *     more than they do.  Threads come from a pool started on first use.
 */
#ifndef PYGGML_CPU_H
#define PYGGML_CPU_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; what is declared here is its ABI. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* What pyggml_cpu_abi_version() returns, bumped on any incompatible change; equal to
 * ABI_VERSION in pyggml/backends/cpu_c.py.  4: pyggml_layer.attn_scale.  5: the optional
 * steps of a BlockSpec (q/k norms, post-norms, GeGLU, q_scale, window, n_embd_q).
 * 6: pyggml_layer_forward takes sequences (pyggml_seq), pyggml_matmul_rows_alone.
 * 7: pyggml_layer.type_k / type_v (a quantized kv cache), the caches as void *. */
#define PYGGML_CPU_ABI_VERSION 7

/* cdef: begin */
enum pyggml_status {
    PYGGML_OK = 0,
    PYGGML_ERR_TYPE = -1,      /* type not supported by this call */
    PYGGML_ERR_SHAPE = -2,     /* K not a multiple of the block size, negative count, ... */
    PYGGML_ERR_ARG = -3,       /* NULL pointer, stride too small, mixed activation types */
    PYGGML_ERR_INDEX = -4      /* a row index outside the matrix */
};

/* ABI version (bumped on any incompatible change) and the build's features,
 * e.g. "C99 AVX2 FMA F16C AVXVNNI THREADS"; pyggml_cpu_max_threads() is the
 * thread count that n_threads <= 0 stands for. */
int pyggml_cpu_abi_version(void);
const char *pyggml_cpu_features(void);
int pyggml_cpu_max_threads(void);

/* Activation type id paired with weight type w_type, or -1 if unsupported. */
int pyggml_act_type(int w_type);

/* Bytes of one row of k elements of `type`; -1 if the type is unknown to
 * these kernels or k is not a multiple of its block size. */
int64_t pyggml_row_bytes(int type, int64_t k);

/* Quantize n_rows rows of k floats (row t at x + t * ldx floats) into
 * act_type blocks at y, rows back to back; exactly what llama.cpp's x86 CPU
 * backend does to activations: ggml-cpu's quantize_row_q8_K (= _ref),
 * quantize_row_q8_0 and quantize_row_q8_1 (run time: q = rint(x * 127 / max),
 * unlike the _ref functions that write Q8_0 weights).  act_type: Q8_K, Q8_0, Q8_1. */
int pyggml_quantize_act(int act_type, const float *x, int64_t ldx, int64_t n_rows, int64_t k,
                        void *y);

/* out[i * ldo + e] = element e of row rows[i] of W (rows == NULL: row i),
 * for i < n_rows, e < k; W has n_w_rows rows, and every index is checked
 * against it before anything is written.  Exactly ggml's dequantize_row_<type>
 * (and gguf-py's numpy), for every weight type listed above. */
int pyggml_dequantize_rows(int type, const void *w, int64_t w_stride, int64_t n_w_rows,
                           const int64_t *rows, int64_t n_rows, int64_t k, float *out, int64_t ldo);

/* One product of a group: N = n_rows rows of W times the group's activations. */
typedef struct {
    int32_t type;              /* weight type id */
    int64_t n_rows;            /* N */
    const void *w;             /* row n at w + n * w_stride bytes */
    int64_t w_stride;          /* bytes between rows, >= pyggml_row_bytes(type, k) */
    float *out;                /* out[t * ldo + n] */
    int64_t ldo;               /* floats between output rows, >= n_rows when n_act > 1 */
} pyggml_matmul_job;

/* Run n_jobs (1..16) products that share one activation matrix of n_act rows
 * of k (q/k/v, gate/up): one parallel region, one activation quantization.
 * All jobs must pair with the same activation type.
 *   x != NULL: x holds n_act float rows (stride ldx floats); they are first
 *              quantized into `act` (scratch of n_act * row_bytes(act_type, k)
 *              bytes; unused and may be NULL when the activation type is F32).
 *   x == NULL: `act` already holds the quantized rows (or float rows for F32). */
int pyggml_matmul(const pyggml_matmul_job *jobs, int n_jobs, const float *x, int64_t ldx,
                  void *act, int64_t n_act, int64_t k, int n_threads);

/* pyggml_matmul with every activation row multiplied by the kernel, and in the order, that
 * a product of that row alone would use (ggml picks kernels by the number of rows: see
 * kernels/ggml_order.c): the rows of independent sequences decoding together, each output
 * row bit-identical to its own one-token product, the weights read once for all rows. */
int pyggml_matmul_rows_alone(const pyggml_matmul_job *jobs, int n_jobs, const float *x,
                             int64_t ldx, void *act, int64_t n_act, int64_t k, int n_threads);

/* The scalar reference of one dot product in the order of ggml's vec_dot
 * (what a product of one token with a matrix not repacked computes):
 * *out = vec_dot(w_row, act_row) over k elements. */
int pyggml_vec_dot_ref(int w_type, const void *w_row, const void *act_row, int64_t k,
                       float *out);

/* RMS norm like ggml_rms_norm then ggml_mul: for each of n_rows rows of n,
 * y = (x * (1 / sqrtf(mean(x^2) + eps))) * weight, with the sum of squares in
 * double; weight may be NULL (no multiply).  y may equal x. */
int pyggml_rms_norm(const float *x, int64_t ldx, const float *weight, float *y, int64_t ldy,
                    int64_t n_rows, int64_t n, float eps);

/* out = silu(gate) * up = gate / (1 + exp(-gate)) * up on n_rows contiguous rows of n,
 * with ggml's float32 bits (ggml_vec_swiglu_f32): exp is ggml_v_expf's AVX-512 form,
 * except for the last n % 16 elements of each row, where ggml (and this) calls expf.
 * out may equal gate or up. */
int pyggml_silu_mul(const float *gate, const float *up, float *out, int64_t n_rows, int64_t n);

/* out = gelu(gate) * up on n contiguous values as ggml_vec_geglu_f32 computes it with
 * GGML_GELU_FP16: 0 where gate <= -10, gate * up where gate >= 10, else
 * table[fp16(gate)] * up, table being ggml_table_gelu_f16 (65536 fp16 values; pyggml
 * makes it in pyggml.model.numerics.gelu_table).  out may equal gate or up. */
int pyggml_gelu_mul(const float *gate, const float *up, float *out, int64_t n,
                    const uint16_t *table);

/* One weight matrix of a layer: N = n_rows rows, row n at w + n * w_stride bytes. */
typedef struct {
    int32_t type;
    int64_t n_rows;
    const void *w;
    int64_t w_stride;
} pyggml_weight;

/* One transformer block, as pyggml.model.forward.layer_forward describes it; filled once
 * per layer from its BlockSpec (pyggml/model/arch.py) by pyggml/backends/c_layer.py.  No
 * field names an architecture: what differs between families is a field (the rope mode,
 * the bias and norm pointers, the attention scale, ...), and a new variant of a step is a
 * new field.  An optional step is off where its pointer is NULL or its number neutral.
 * Q and the attention's output have n_head * head_dim columns, which need not be n_embd.
 * The kv cache is (n_ctx, n_head_kv, head_dim) numbers, rows back to back, of type_k and
 * type_v: fp16 (llama.cpp's default), or Q8_0 / Q4_0 blocks of 32 numbers of a head
 * (--cache-type-k/-v; head_dim a multiple of 32), as pyggml.model.forward.kv_cache. */
typedef struct {
    int64_t n_embd, n_head, n_head_kv, head_dim, n_ff, n_ctx;
    int32_t rope_neox;         /* 1: NEOX (x[i], x[i + d/2]); 0: NORM (x[2i], x[2i + 1]) */
    float rms_eps;
    float attn_scale;          /* scores = (q . k) * attn_scale */
    float q_scale;             /* q *= q_scale after rope, before K.q (1: no step) */
    int64_t window;            /* a query at p sees keys p - window < p' <= p; 0: all <= p */
    const float *attn_norm, *ffn_norm;
    const float *bq, *bk, *bv; /* added to q, k, v; NULL: no bias */
    const float *q_norm, *k_norm;     /* (head_dim,): each head of q, k RMS-normed; NULL: no */
    const float *attn_post_norm, *ffn_post_norm;  /* (n_embd,): the attention's and the FFN's
                                  outputs RMS-normed before the residual adds; NULL: no */
    const uint16_t *gelu_table;       /* NULL: silu(gate) * up; else GeGLU with this table of
                                  fp16 GELU values of every fp16 (ggml_table_gelu_f16) */
    pyggml_weight wq, wk, wv, wo, w_gate, w_up, w_down;
    int32_t type_k, type_v;    /* ggml type ids: F16 (1), Q8_0 (8) or Q4_0 (2) */
    void *k_cache, *v_cache;
} pyggml_layer;

/* One sequence's rows of a block's input: its handle of the layer (the same weights as
 * every other sequence's, its own kv cache), the position of its first row, its rows. */
typedef struct {
    const pyggml_layer *layer;
    int64_t pos0;
    int64_t n_tokens;
} pyggml_seq;

#define PYGGML_MAX_SEQS 256

/* Bytes of scratch pyggml_layer_forward needs for n_tokens rows of n_seqs sequences (of
 * this layer's shapes, caches of at most n_ctx positions). */
int64_t pyggml_layer_scratch_bytes(const pyggml_layer *layer, int64_t n_tokens, int n_seqs,
                                   int64_t n_ctx);

/* x (n_tokens, n_embd) floats, the rows of n_seqs sequences one after another -> the
 * block's output, in place.  Sequence s's rows are its tokens at positions pos0 ..
 * pos0 + n_tokens - 1: their K and V go into its layer's cache and each attends causally
 * over that cache's positions 0 .. pos0 + t.  Either one sequence (a prompt, or one
 * decode step), or up to PYGGML_MAX_SEQS sequences of one token each (a batched decode
 * step: every product multiplies each row as alone, pyggml_matmul_rows_alone, so each
 * sequence's output is bit-identical to its own one-sequence call).  rope_cos / rope_sin:
 * (n_tokens, head_dim / 2) cosines and sines of each row's angles
 * (pyggml.model.forward.rope_cache).  See kernels/layer.c. */
int pyggml_layer_forward(const pyggml_seq *seqs, int n_seqs, float *x,
                         const float *rope_cos, const float *rope_sin, void *scratch,
                         int64_t scratch_bytes, int n_threads);
/* cdef: end */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* PYGGML_CPU_H */

/* pyggml_cuda.h -- the C ABI of libpyggml_cuda: one transformer layer on an NVIDIA GPU.
 *
 * pyggml reads the part between the cdef markers with cffi (ABI mode, see
 * pyggml/backends/cuda.py), so that part holds only plain C declarations: no
 * macros, no preprocessor lines, no CUDA runtime types.  The library links the
 * CUDA runtime statically; only the driver (libcuda.so.1) is needed at run time,
 * and without one every call fails cleanly with PYGGML_CUDA_ERR_CUDA.
 *
 * Conventions
 *   - Pointers named w, x, y, out, bias, weight, *_cache, *_t are DEVICE pointers
 *     (from pyggml_cuda_malloc); everything else is host memory.
 *   - Types are ggml type ids (ggml_blocks.h).  A weight matrix W is n_rows rows
 *     of k elements; row n starts at w + n * w_stride bytes and holds k / block
 *     blocks of its type.  k must be a multiple of 32 for every type.
 *   - Float activations are row-major: row t of x at x + t * ldx floats, with
 *     ldx a multiple of 4 and x 16-byte aligned (pyggml_cuda_malloc gives 256).
 *   - Products dequantize weights on the fly and accumulate in float32 against
 *     float32 activations (no activation quantization): out = W x is the exact
 *     f32 dequantization of W times x, up to float summation order.
 *   - Every function returns PYGGML_CUDA_OK (0) or a negative code and never
 *     aborts.  After PYGGML_CUDA_ERR_CUDA, pyggml_cuda_last_error() names the
 *     failing runtime call and CUDA's own error name and text.  Kernel
 *     launches are asynchronous: a fault inside a kernel surfaces at the next
 *     call that synchronizes (download, free).
 *   - All work goes to the default stream, in call order.
 */
#ifndef PYGGML_CUDA_H
#define PYGGML_CUDA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; what is declared here is its ABI. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* cdef: begin */
enum pyggml_cuda_status {
    PYGGML_CUDA_OK = 0,
    PYGGML_CUDA_ERR_CUDA = -1,     /* the CUDA runtime failed: see pyggml_cuda_last_error() */
    PYGGML_CUDA_ERR_TYPE = -2,     /* ggml type not supported by these kernels */
    PYGGML_CUDA_ERR_SHAPE = -3,    /* k not a multiple of 32, head_dim too large, ... */
    PYGGML_CUDA_ERR_ARG = -4       /* NULL or misaligned pointer, negative count, bad mode */
};

/* ABI version (bumped on any incompatible change). */
int pyggml_cuda_abi_version(void);
/* What the last failing call of this thread said (empty if none failed). */
const char *pyggml_cuda_last_error(void);

/* ---- devices and memory */
int pyggml_cuda_device_count(int *count);
/* Make `device` current and create its context; name (name_size bytes, NUL-terminated),
 * compute capability and multiprocessor count describe it. */
int pyggml_cuda_set_device(int device, char *name, int name_size, int *cc_major, int *cc_minor,
                           int *n_sm);
/* cudaMemGetInfo of the current device: free and total bytes, all processes counted. */
int pyggml_cuda_mem_info(uint64_t *free_bytes, uint64_t *total_bytes);
int pyggml_cuda_malloc(void **ptr, uint64_t nbytes);
int pyggml_cuda_free(void *ptr);
int pyggml_cuda_memset(void *ptr, int value, uint64_t nbytes);
int pyggml_cuda_upload(void *dst, const void *src, uint64_t nbytes);     /* host -> device */
int pyggml_cuda_download(void *dst, const void *src, uint64_t nbytes);   /* device -> host */

/* ---- weights
 * Bytes of one row of k elements of `type`, or -1 if the type is unknown here or k
 * is not a multiple of 32 (and of the type's block size). */
int64_t pyggml_cuda_row_bytes(int type, int64_t k);

/* out[t * ldo + n] = (accumulate ? out[t * ldo + n] : 0) + (bias ? bias[n] : 0)
 *                    + sum_e W[n, e] * x[t * ldx + e]
 * for n < n_rows, t < n_tok: y = W x with the bias add or the residual add fused in. */
int pyggml_cuda_matmul(int type, const void *w, int64_t w_stride, int64_t n_rows, int64_t k,
                       const float *x, int64_t ldx, int64_t n_tok, const float *bias,
                       float *out, int64_t ldo, int accumulate);

/* out[i * ldo + e] = W[rows[i], e] for i < n_rows, e < k: the embedding lookup.
 * rows is a HOST array; every row id must be in 0..n_w_rows-1.  Bit-exact with the
 * C reference (ggml's dequantize_row_<type>). */
int pyggml_cuda_get_rows(int type, const void *w, int64_t w_stride, int64_t n_w_rows,
                         const int64_t *rows, int64_t n_rows, int64_t k, float *out, int64_t ldo);

/* ---- the other steps of a layer; x, y are n_rows x n (or n_tok x width) row-major, packed */

/* y = x * (1 / sqrtf(mean(x^2) + eps)) * weight per row (sum of squares in double, like
 * ggml).  weight may be NULL; y may equal x. */
int pyggml_cuda_rms_norm(const float *x, const float *weight, float *y, int64_t n_rows,
                         int64_t n, float eps);

/* Rotate x (n_tok, n_heads, head_dim) in place: pair i of every head of token t by the
 * angle whose cosine and sine are cos_t[t * head_dim/2 + i], sin_t[...] (device tables of
 * n_tok rows, pyggml.model.forward.rope_cache: the positions, base and any scaling are
 * the caller's), as fma(x0, c, -(x1 * s)), fma(x0, s, x1 * c) like the CPU.
 * mode 2 (NEOX) pairs (x[i], x[i + head_dim/2]); mode 0 (NORM) pairs (x[2i], x[2i+1]). */
int pyggml_cuda_rope(float *x, int64_t n_tok, int n_heads, int head_dim, const float *cos_t,
                     const float *sin_t, int mode);

/* k_cache[pos0 + t, :] = fp16(k[t, :]), v_cache likewise, for t < n_tok; each cache
 * row holds width = n_head_kv * head_dim halves. */
int pyggml_cuda_store_kv(const float *k, const float *v, uint16_t *k_cache, uint16_t *v_cache,
                         int64_t pos0, int64_t n_tok, int64_t width);

/* Causal grouped-query attention of n_tok queries at positions pos0.. over the fp16
 * caches (positions 0..pos0+n_tok-1 filled):
 *   out[t, h*d:(h+1)*d] = softmax(scale * q[t,h] . K[j0:pos0+t+1, g]) V[j0:pos0+t+1, g],
 *   g = h / (n_head / n_head_kv), j0 = max(0, pos0 + t + 1 - window) with a sliding
 *   window (window > 0), else 0.
 * head_dim must be a multiple of 32, at most 256. */
int pyggml_cuda_attention(const float *q, const uint16_t *k_cache, const uint16_t *v_cache,
                          float *out, int64_t pos0, int64_t n_tok, int n_head, int n_head_kv,
                          int head_dim, float scale, int64_t window);

/* out[i] = gate[i] / (1 + expf(-gate[i])) * up[i]; out may equal gate or up. */
int pyggml_cuda_silu_mul(const float *gate, const float *up, float *out, int64_t n);

/* out[i] = gelu(gate[i]) * up[i] as ggml's GeGLU with its fp16 table: 0 where gate <= -10,
 * gate * up where gate >= 10, else table[fp16 bits of gate] * up; table is a DEVICE array
 * of 65536 fp16 values (pyggml.model.numerics.gelu_table).  out may equal gate or up. */
int pyggml_cuda_gelu_mul(const float *gate, const float *up, float *out, int64_t n,
                         const uint16_t *table);

/* x[i] *= s for i < n (Q's pre-scale). */
int pyggml_cuda_scale(float *x, int64_t n, float s);

/* x[i] += y[i] for i < n (a residual add after a post-norm). */
int pyggml_cuda_add(float *x, const float *y, int64_t n);

/* x[i] = tanhf(x[i] * (1 / cap)) * cap for i < n (the head's final logit soft-cap). */
int pyggml_cuda_softcap(float *x, int64_t n, float cap);
/* cdef: end */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* PYGGML_CUDA_H */

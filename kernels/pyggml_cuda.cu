/* pyggml_cuda.cu -- one transformer layer on an NVIDIA GPU, behind the C ABI of pyggml_cuda.h.
 *
 * What runs here, per offloaded layer and token batch (pyggml/backends/cuda.py
 * calls these in the order of pyggml.model.forward.layer_forward, as the layer's
 * BlockSpec says: biases or none, rope mode, attention scale):
 *
 *     x (T, n_embd) -- stays on the GPU between layers --------------------------+
 *     h = rms_norm(x) * attn_norm                       rms_norm_kernel          |
 *     q, k, v = Wq h [+ bq], Wk h [+ bk], Wv h [+ bv]   matmul_kernel<type> x3   |
 *     [q, k = rms_norm(q) * q_norm, ... per head]       rms_norm_kernel x2       |
 *     q, k = rope(q), rope(k)   (host cos/sin tables)   rope_kernel x2           |
 *     [q *= q_scale]                                    scale_kernel             |
 *     K, V cache [pos0 : pos0+T] = fp16(k), fp16(v)     store_kv_kernel          |
 *     a = softmax(q K^T * scale) V   (causal, GQA,      attention_kernel         |
 *                                     [a window])                                |
 *     x += Wo a                                         matmul_kernel (accumulate)
 *       [or x += rms_norm(Wo a) * attn_post_norm]       matmul, rms_norm, add    |
 *     h = rms_norm(x) * ffn_norm                        rms_norm_kernel          |
 *     x += Wdown (silu(Wgate h) * (Wup h))              matmul x2, silu_mul, matmul (accumulate)
 *       [gelu by ggml's fp16 table; a post-norm]        gelu_mul_kernel, ...     |
 *   and the head: logits = Wout rms_norm(x) * output_norm [then a soft-cap: softcap_kernel]
 *
 * Products: DEQUANTIZE ON THE FLY, ACCUMULATE IN FLOAT32.  ggml-cuda instead
 * quantizes the activations to Q8_1 and multiplies integers (mmvq).  We do not:
 * decoding a weight block into 32 floats is the same few lines as the reference
 * dequantizer (so each type reads like its C reference, quants_ref.c), a
 * matrix-vector product is bound by reading the weights either way, and the
 * result is the exact float product of the dequantized weights -- which the
 * tests can check tightly against numpy, type by type.  Compared with the CPU
 * path (which quantizes activations to Q8_K/Q8_0/Q8_1 like ggml) logits differ
 * by that activation rounding, about 1e-3 relative.
 *
 *     one warp per weight row, one 32-element chunk per lane and step:
 *
 *     row n:  | chunk 0 | chunk 1 | ... | chunk 31 | chunk 32 | ...      (k / 32 chunks)
 *               lane 0    lane 1          lane 31    lane 0
 *     a lane decodes its chunk once into w[32] and dots it with up to MAX_TOK
 *     activation rows; a warp sum gives out[t, n].  A 256-element K-quant
 *     super-block is 8 chunks ("sub-blocks"), read by 8 neighbouring lanes.
 *
 * Numerics kept equal to the CPU reference where it is cheap: dequantization is
 * bit-exact (`d * q + m` is two roundings: __fadd_rn/__fsub_rn are never fused
 * into an FMA, as the C side builds with -ffp-contract=off); RMS norm sums in
 * double; rope rotates by the same cos/sin tables as the CPU (computed on the host,
 * pyggml.model.forward.rope_cache) with the CPU's FMAs; K and V are stored as fp16
 * (round to nearest even).  Build WITHOUT --use_fast_math: it would flush denormals
 * and approximate the divisions and square roots of rms_norm and the softmax.
 */
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "ggml_blocks.h"
#include "pyggml_cuda.h"

#define PYGGML_CUDA_ABI_VERSION 3       /* 2: rope takes cos/sin tables; 3: the optional
                                           steps (gelu_mul, scale, add, softcap, window) */

/* `#pragma unroll` in device code; the host compiler, which also sees the __host__ __device__
 * helpers, does not know the pragma */
#ifdef __CUDA_ARCH__
#define UNROLL _Pragma("unroll")
#else
#define UNROLL
#endif

constexpr int WARP = 32;
constexpr int CHUNK = 32;            /* elements a lane decodes at once */
constexpr int MAX_TOK = 8;           /* activation rows per matmul launch */
constexpr int MATMUL_WARPS = 4;      /* output rows per matmul block */
constexpr int ATTN_WARPS = 4;        /* warps splitting the positions of one (token, head) */
constexpr int MAX_HEAD_DIM = 256;

/* ================================================================ errors */

static thread_local char last_error[512];

static int fail(int code, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, args);
    va_end(args);
    return code;
}

static int fail_cuda(const char *what, cudaError_t err) {
    return fail(PYGGML_CUDA_ERR_CUDA, "%s: %s (%s)", what, cudaGetErrorString(err),
                cudaGetErrorName(err));
}

#define CUDA_TRY(what, call)                                   \
    do {                                                       \
        const cudaError_t err_ = (call);                       \
        if (err_ != cudaSuccess) return fail_cuda(what, err_); \
    } while (0)

/* after a kernel launch: catches bad launch configurations at once */
#define LAUNCH_CHECK(what) CUDA_TRY(what, cudaGetLastError())

/* ================================================================ small device helpers */

/* The decoding helpers below are __host__ __device__ so that tests can run them on the CPU
 * (tests/test_cuda.py compiles a host program around them); __CUDA_ARCH__ picks the device
 * intrinsics in device code. */

__host__ __device__ __forceinline__ float fp16_to_fp32(const ggml_half h) {
    return __half2float(__ushort_as_half(h));
}

__host__ __device__ __forceinline__ float bf16_to_fp32(const uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
#ifdef __CUDA_ARCH__
    return __uint_as_float(bits);
#else
    float f;
    memcpy(&f, &bits, 4);
    return f;
#endif
}

/* little-endian u32 from 4 bytes at any alignment (Q5_0/Q5_1 qh sits at offset 2 or 4) */
__host__ __device__ __forceinline__ uint32_t load_u32(const uint8_t *p) {
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* a * b + c and a * b - c with two roundings, like the C reference (never an FMA; host
 * builds of these helpers use -ffp-contract=off) */
__host__ __device__ __forceinline__ float mul_add(float a, float b, float c) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a * b, c);
#else
    return a * b + c;
#endif
}
__host__ __device__ __forceinline__ float mul_sub(float a, float b, float c) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a * b, c);
#else
    return a * b - c;
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
UNROLL
    for (int offset = WARP / 2; offset > 0; offset >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

#define KVALUES_IQ4NL {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
__device__ const int8_t kvalues_iq4nl_device[16] = KVALUES_IQ4NL;
[[maybe_unused]] static const int8_t kvalues_iq4nl_host[16] = KVALUES_IQ4NL;     /* host tests */

__host__ __device__ __forceinline__ int kvalue_iq4nl(int q) {
#ifdef __CUDA_ARCH__
    return kvalues_iq4nl_device[q];
#else
    return kvalues_iq4nl_host[q];
#endif
}

/* ================================================================ decoding, one function per type
 *
 * dequantize_<type>(block, sub, y) writes the 32 floats of sub-block `sub` (0 for
 * 32-element blocks, 0..7 for 256-element super-blocks) into y[0..31], in the order and
 * with the arithmetic of the C reference's dequantize_row_<type> (quants_ref.c); the
 * names and fields are ggml's (d, dmin, scales, qs, qh, hmask, ql).  Float types are read
 * as blocks of 32 elements so that every type is chunked alike.  Within a sub-block,
 * element l (0..31) of K-quant sub-block s is element e = 32 s + l of the super-block. */

__host__ __device__ __forceinline__ void dequantize_f32(const uint8_t *b, int, float *y) {
    const float4 *x = reinterpret_cast<const float4 *>(b);          /* rows are 16-byte aligned */
UNROLL
    for (int i = 0; i < 8; i++) {
        const float4 v = x[i];
        y[4 * i] = v.x, y[4 * i + 1] = v.y, y[4 * i + 2] = v.z, y[4 * i + 3] = v.w;
    }
}

__host__ __device__ __forceinline__ void dequantize_f16(const uint8_t *b, int, float *y) {
    const ggml_half *x = reinterpret_cast<const ggml_half *>(b);
UNROLL
    for (int i = 0; i < 32; i++) y[i] = fp16_to_fp32(x[i]);
}

__host__ __device__ __forceinline__ void dequantize_bf16(const uint8_t *b, int, float *y) {
    const uint16_t *x = reinterpret_cast<const uint16_t *>(b);
UNROLL
    for (int i = 0; i < 32; i++) y[i] = bf16_to_fp32(x[i]);
}

/* y = d * (q - 8) */
__host__ __device__ __forceinline__ void dequantize_q4_0(const uint8_t *b, int, float *y) {
    const block_q4_0 *x = reinterpret_cast<const block_q4_0 *>(b);
    const float d = fp16_to_fp32(x->d);
UNROLL
    for (int j = 0; j < 16; j++) {
        y[j] = d * ((x->qs[j] & 0x0F) - 8);
        y[j + 16] = d * ((x->qs[j] >> 4) - 8);
    }
}

/* y = d * q + m */
__host__ __device__ __forceinline__ void dequantize_q4_1(const uint8_t *b, int, float *y) {
    const block_q4_1 *x = reinterpret_cast<const block_q4_1 *>(b);
    const float d = fp16_to_fp32(x->d), m = fp16_to_fp32(x->m);
UNROLL
    for (int j = 0; j < 16; j++) {
        y[j] = mul_add(d, x->qs[j] & 0x0F, m);
        y[j + 16] = mul_add(d, x->qs[j] >> 4, m);
    }
}

/* 5-bit quant j (0..31) of a Q5_0/Q5_1 block: nibble of qs, 5th bit j of qh */
__host__ __device__ __forceinline__ int q5_quant(const uint8_t *qs, uint32_t qh, int j) {
    const int nibble = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
    return nibble | (int)(((qh >> j) & 1) << 4);
}

/* y = d * (q - 16) */
__host__ __device__ __forceinline__ void dequantize_q5_0(const uint8_t *b, int, float *y) {
    const block_q5_0 *x = reinterpret_cast<const block_q5_0 *>(b);
    const float d = fp16_to_fp32(x->d);
    const uint32_t qh = load_u32(x->qh);
UNROLL
    for (int j = 0; j < 32; j++) y[j] = d * (q5_quant(x->qs, qh, j) - 16);
}

/* y = d * q + m */
__host__ __device__ __forceinline__ void dequantize_q5_1(const uint8_t *b, int, float *y) {
    const block_q5_1 *x = reinterpret_cast<const block_q5_1 *>(b);
    const float d = fp16_to_fp32(x->d), m = fp16_to_fp32(x->m);
    const uint32_t qh = load_u32(x->qh);
UNROLL
    for (int j = 0; j < 32; j++) y[j] = mul_add(d, q5_quant(x->qs, qh, j), m);
}

/* y = q * d */
__host__ __device__ __forceinline__ void dequantize_q8_0(const uint8_t *b, int, float *y) {
    const block_q8_0 *x = reinterpret_cast<const block_q8_0 *>(b);
    const float d = fp16_to_fp32(x->d);
UNROLL
    for (int j = 0; j < 32; j++) y[j] = x->qs[j] * d;
}

/* y = d * kvalues_iq4nl[q] */
__host__ __device__ __forceinline__ void dequantize_iq4_nl(const uint8_t *b, int, float *y) {
    const block_iq4_nl *x = reinterpret_cast<const block_iq4_nl *>(b);
    const float d = fp16_to_fp32(x->d);
UNROLL
    for (int j = 0; j < 16; j++) {
        y[j] = d * kvalue_iq4nl(x->qs[j] & 0x0F);
        y[j + 16] = d * kvalue_iq4nl(x->qs[j] >> 4);
    }
}

/* K-quants: sub-block s holds elements 32 s .. 32 s + 31, i.e. half h = s / 4 and
 * slice j = s % 4 of the super-block; Q2_K/Q3_K keep element l's 2 low bits at
 * bits 2j..2j+1 of qs[32 h + l]. */

/* y = d * (sc & 15) * q - dmin * (sc >> 4) */
__host__ __device__ __forceinline__ void dequantize_q2_K(const uint8_t *b, int s, float *y) {
    const block_q2_K *x = reinterpret_cast<const block_q2_K *>(b);
    const float d = fp16_to_fp32(x->d), dmin = fp16_to_fp32(x->dmin);
    const uint8_t *qs = x->qs + 32 * (s / 4);
    const int shift = 2 * (s % 4);
UNROLL
    for (int half = 0; half < 2; half++) {                       /* 16 elements per scale */
        const int sc = x->scales[2 * s + half];
        const float dl = d * (sc & 0x0F), ml = dmin * (sc >> 4);
UNROLL
        for (int l = 16 * half; l < 16 * half + 16; l++)
            y[l] = mul_sub(dl, (qs[l] >> shift) & 3, ml);
    }
}

/* Scale g (0..15) of Q3_K's sixteen packed 6-bit scales (quants_ref.c's q3_K_scales
 * unpacks all of them): low 4 bits in scales[g % 8] (low nibble if g < 8), 2 high bits at
 * bits 2 (g / 4) of scales[8 + g % 4]; stored +32.  One at a time: an array indexed by
 * the run-time sub-block would leave the registers. */
__host__ __device__ __forceinline__ int q3_K_scale(const uint8_t *scales, int g) {
    const int low4 = g < 8 ? (scales[g] & 0x0F) : (scales[g - 8] >> 4);
    const int hi2 = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
    return (low4 | (hi2 << 4)) - 32;
}

/* y = d * S * (L - 4), S 6-bit signed, L = 2 low bits | hmask bit << 2 */
__host__ __device__ __forceinline__ void dequantize_q3_K(const uint8_t *b, int s, float *y) {
    const block_q3_K *x = reinterpret_cast<const block_q3_K *>(b);
    const float d = fp16_to_fp32(x->d);
    const uint8_t *qs = x->qs + 32 * (s / 4);
    const int shift = 2 * (s % 4);
UNROLL
    for (int half = 0; half < 2; half++) {
        const float dl = d * q3_K_scale(x->scales, 2 * s + half);
UNROLL
        for (int l = 16 * half; l < 16 * half + 16; l++) {
            const int low = (qs[l] >> shift) & 3, hb = (x->hmask[l] >> s) & 1;
            y[l] = dl * (low + 4 * hb - 4);
        }
    }
}

/* Q4_K/Q5_K: 6-bit scale and min of sub-block j (ggml's get_scale_min_k4) */
__host__ __device__ __forceinline__ void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* y = d * sc * q - dmin * m */
__host__ __device__ __forceinline__ void dequantize_q4_K(const uint8_t *b, int s, float *y) {
    const block_q4_K *x = reinterpret_cast<const block_q4_K *>(b);
    int sc, m;
    scale_min_k4(s, x->scales, &sc, &m);
    const float d1 = fp16_to_fp32(x->d) * sc, m1 = fp16_to_fp32(x->dmin) * m;
    const uint8_t *qs = x->qs + 32 * (s / 2);                      /* low nibbles: even s */
    const int shift = 4 * (s % 2);
UNROLL
    for (int l = 0; l < 32; l++) y[l] = mul_sub(d1, (qs[l] >> shift) & 0x0F, m1);
}

/* as Q4_K with bit s of qh[l] as 5th bit */
__host__ __device__ __forceinline__ void dequantize_q5_K(const uint8_t *b, int s, float *y) {
    const block_q5_K *x = reinterpret_cast<const block_q5_K *>(b);
    int sc, m;
    scale_min_k4(s, x->scales, &sc, &m);
    const float d1 = fp16_to_fp32(x->d) * sc, m1 = fp16_to_fp32(x->dmin) * m;
    const uint8_t *qs = x->qs + 32 * (s / 2);
    const int shift = 4 * (s % 2);
UNROLL
    for (int l = 0; l < 32; l++) {
        const int q = ((qs[l] >> shift) & 0x0F) | (((x->qh[l] >> s) & 1) << 4);
        y[l] = mul_sub(d1, q, m1);
    }
}

/* y = d * scales[e / 16] * (q - 32), q = 4 bits of ql | 2 bits of qh << 4 */
__host__ __device__ __forceinline__ void dequantize_q6_K(const uint8_t *b, int s, float *y) {
    const block_q6_K *x = reinterpret_cast<const block_q6_K *>(b);
    const float d = fp16_to_fp32(x->d);
    const int h = s / 4, j = s % 4;
    const uint8_t *ql = x->ql + 64 * h + 32 * (j & 1), *qh = x->qh + 32 * h;
UNROLL
    for (int half = 0; half < 2; half++) {
        const float dl = d * x->scales[2 * s + half];
UNROLL
        for (int l = 16 * half; l < 16 * half + 16; l++) {
            const int q = ((ql[l] >> (4 * (j >> 1))) & 0x0F) | (((qh[l] >> (2 * j)) & 3) << 4);
            y[l] = dl * (q - 32);
        }
    }
}

/* Codebook i-quants (quants_iq_grid_ref.c): sub-block s is elements 32 s .. 32 s + 31, four
 * groups of 8 whose grid points come from the tables of ggml_iq_grids.h, here in device
 * memory and, for the host tests, on the host (IQ_TABLE picks the copy). */
#define IQ_GRID_TABLE(type, name, size) __device__ const type name##_device[size]
#include "ggml_iq_grids.h"
#undef IQ_GRID_TABLE
#define IQ_GRID_TABLE(type, name, size) [[maybe_unused]] static const type name##_host[size]
#include "ggml_iq_grids.h"
#undef IQ_GRID_TABLE
#ifdef __CUDA_ARCH__
#define IQ_TABLE(name) name##_device
#else
#define IQ_TABLE(name) name##_host
#endif

/* y[0..7] = db * q for the signed coordinates q of a 2-bit grid point (bit j of signs: minus) */
__host__ __device__ __forceinline__ void signed_point(uint64_t point, int signs, float db, float *y) {
UNROLL
    for (int j = 0; j < 8; j++) {
        const int v = (int)(point >> (8 * j) & 0xFF);
        y[j] = db * (signs >> j & 1 ? -v : v);
    }
}

/* y = d * (0.5 + ls) * 0.25 * q; 4 grid indices, then a u32 of 4 x 7 sign bits | ls << 28 */
__host__ __device__ __forceinline__ void dequantize_iq2_xxs(const uint8_t *b, int s, float *y) {
    const block_iq2_xxs *x = reinterpret_cast<const block_iq2_xxs *>(b);
    const uint8_t *q = reinterpret_cast<const uint8_t *>(x->qs) + 8 * s;
    const uint32_t aux = load_u32(q + 4);
    const float db = fp16_to_fp32(x->d) * (0.5f + (aux >> 28)) * 0.25f;
UNROLL
    for (int l = 0; l < 4; l++)
        signed_point(IQ_TABLE(iq2xxs_grid)[q[l]], IQ_TABLE(ksigns_iq2xs)[(aux >> (7 * l)) & 127], db, y + 8 * l);
}

/* as IQ2_XXS; qs[m] = 9-bit grid index | 7-bit sign index << 9, a scale ls per 16 */
__host__ __device__ __forceinline__ void dequantize_iq2_xs(const uint8_t *b, int s, float *y) {
    const block_iq2_xs *x = reinterpret_cast<const block_iq2_xs *>(b);
    const float d = fp16_to_fp32(x->d);
UNROLL
    for (int l = 0; l < 4; l++) {
        const int q = x->qs[4 * s + l];
        const float db = d * (0.5f + ((x->scales[s] >> (4 * (l / 2))) & 0x0F)) * 0.25f;
        signed_point(IQ_TABLE(iq2xs_grid)[q & 511], IQ_TABLE(ksigns_iq2xs)[q >> 9], db, y + 8 * l);
    }
}

/* as IQ2_XS; index qs[m] | 2 bits of qh[s] << 8 into iq2s_grid, all 8 sign bits in qs[32 + m] */
__host__ __device__ __forceinline__ void dequantize_iq2_s(const uint8_t *b, int s, float *y) {
    const block_iq2_s *x = reinterpret_cast<const block_iq2_s *>(b);
    const float d = fp16_to_fp32(x->d);
UNROLL
    for (int l = 0; l < 4; l++) {
        const int m = 4 * s + l, index = x->qs[m] | ((x->qh[s] >> (2 * l)) & 3) << 8;
        const float db = d * (0.5f + ((x->scales[s] >> (4 * (l / 2))) & 0x0F)) * 0.25f;
        signed_point(IQ_TABLE(iq2s_grid)[index], x->qs[QK_K / 8 + m], db, y + 8 * l);
    }
}

/* y[0..7] = dl * (q + delta) for the coordinates q (-1, 0, +1) of point `index` of iq1s_grid */
__host__ __device__ __forceinline__ void shifted_point(int index, float delta, float dl, float *y) {
    const uint64_t point = IQ_TABLE(iq1s_grid)[index];
UNROLL
    for (int j = 0; j < 8; j++) y[j] = dl * ((int8_t)(point >> (8 * j) & 0xFF) + delta);
}

/* y = d * (2 ls + 1) * (q + delta); qh[s] = 4 x 3 high index bits | ls << 12 | delta sign << 15 */
__host__ __device__ __forceinline__ void dequantize_iq1_s(const uint8_t *b, int s, float *y) {
    const block_iq1_s *x = reinterpret_cast<const block_iq1_s *>(b);
    const int h = x->qh[s];
    const float dl = fp16_to_fp32(x->d) * (2 * ((h >> 12) & 7) + 1);
    const float delta = h & 0x8000 ? -0.125f : 0.125f;
UNROLL
    for (int l = 0; l < 4; l++) shifted_point(x->qs[4 * s + l] | ((h >> (3 * l)) & 7) << 8, delta, dl, y + 8 * l);
}

/* as IQ1_S with a delta per 8 (bit 3 of each group's nibble of qh) and a scale per 16; d is
 * the fp16 in the top nibbles of the four scale words */
__host__ __device__ __forceinline__ void dequantize_iq1_m(const uint8_t *b, int s, float *y) {
    const block_iq1_m *x = reinterpret_cast<const block_iq1_m *>(b);
    const uint8_t *sc = x->scales;            /* 4 little-endian uint16: the top nibbles of bytes 1, 3, 5, 7 */
    const float d = fp16_to_fp32((ggml_half)(sc[1] >> 4 | (sc[3] >> 4) << 4 | (sc[5] >> 4) << 8 | (sc[7] >> 4) << 12));
    const int word = sc[2 * (s / 2)] | sc[2 * (s / 2) + 1] << 8;
UNROLL
    for (int l = 0; l < 4; l++) {
        const int nibble = (x->qh[2 * s + l / 2] >> (4 * (l % 2))) & 0x0F;
        const float dl = d * (2 * ((word >> (6 * (s % 2) + 3 * (l / 2))) & 7) + 1);
        shifted_point(x->qs[4 * s + l] | (nibble & 7) << 8, nibble & 8 ? -0.125f : 0.125f, dl, y + 8 * l);
    }
}

/* IQ3_XXS, IQ3_S (quants_iq3_ref.c): groups of 4 elements, grid points from
 * ggml_iq3_grids.h (device and host copies, as above); IQ4_XS: IQ4_NL's table, 6-bit scales */
#define IQ_GRID_TABLE(type, name, size) __device__ const type name##_device[size]
#include "ggml_iq3_grids.h"
#undef IQ_GRID_TABLE
#define IQ_GRID_TABLE(type, name, size) [[maybe_unused]] static const type name##_host[size]
#include "ggml_iq3_grids.h"
#undef IQ_GRID_TABLE

/* y[0..3] = db * q for the coordinates q of a 3-bit grid point (bit j of signs: minus) */
__host__ __device__ __forceinline__ void signed_point4(uint32_t point, int signs, float db, float *y) {
UNROLL
    for (int j = 0; j < 4; j++) {
        const int v = (int)(point >> (8 * j) & 0xFF);
        y[j] = db * (signs >> j & 1 ? -v : v);
    }
}

/* y = d * (0.5 + ls) * 0.5 * q; grid indices qs[8 s ..], then at byte 64 + 4 s of qs a u32
 * of 4 x 7 sign indices (8 elements each) | ls << 28 */
__host__ __device__ __forceinline__ void dequantize_iq3_xxs(const uint8_t *b, int s, float *y) {
    const block_iq3_xxs *x = reinterpret_cast<const block_iq3_xxs *>(b);
    const uint8_t *q = x->qs + 8 * s;
    const uint32_t aux = load_u32(x->qs + QK_K / 4 + 4 * s);
    const float db = fp16_to_fp32(x->d) * (0.5f + (aux >> 28)) * 0.5f;
UNROLL
    for (int l = 0; l < 4; l++) {
        const int signs = IQ_TABLE(ksigns_iq2xs)[(aux >> (7 * l)) & 127];
        signed_point4(IQ_TABLE(iq3xxs_grid)[q[2 * l]], signs, db, y + 8 * l);
        signed_point4(IQ_TABLE(iq3xxs_grid)[q[2 * l + 1]], signs >> 4, db, y + 8 * l + 4);
    }
}

/* y = d * (1 + 2 ls) * q; group g: index qs[g] | bit g % 8 of qh[g / 8] << 8, the sign of
 * element e bit e % 8 of signs[e / 8] */
__host__ __device__ __forceinline__ void dequantize_iq3_s(const uint8_t *b, int s, float *y) {
    const block_iq3_s *x = reinterpret_cast<const block_iq3_s *>(b);
    const float db = fp16_to_fp32(x->d) * (1 + 2 * ((x->scales[s / 2] >> (4 * (s % 2))) & 15));
UNROLL
    for (int l = 0; l < 8; l++) {
        const int g = 8 * s + l;
        const int index = x->qs[g] | ((x->qh[s] >> l) & 1) << 8;
        signed_point4(IQ_TABLE(iq3s_grid)[index], x->signs[4 * s + l / 2] >> (4 * (l % 2)), db, y + 4 * l);
    }
}

/* y = d * (ls - 32) * kvalues_iq4nl[q]; sub-block s packed as IQ4_NL's qs */
__host__ __device__ __forceinline__ void dequantize_iq4_xs(const uint8_t *b, int s, float *y) {
    const block_iq4_xs *x = reinterpret_cast<const block_iq4_xs *>(b);
    const int ls = ((x->scales_l[s / 2] >> (4 * (s % 2))) & 15) | ((x->scales_h >> (2 * s)) & 3) << 4;
    const float dl = fp16_to_fp32(x->d) * (ls - 32);
    const uint8_t *qs = x->qs + 16 * s;
UNROLL
    for (int j = 0; j < 16; j++) {
        y[j] = dl * kvalue_iq4nl(qs[j] & 0x0F);
        y[j + 16] = dl * kvalue_iq4nl(qs[j] >> 4);
    }
}

/* Ternary, 4-bit floats, 1-2 bits (quants_lowbit_ref.c; MXFP4 in quants_ref.c) */
#define KVALUES_MXFP4 {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}
__device__ const int8_t kvalues_mxfp4_device[16] = KVALUES_MXFP4;
[[maybe_unused]] static const int8_t kvalues_mxfp4_host[16] = KVALUES_MXFP4;

__host__ __device__ __forceinline__ int kvalue_mxfp4(int q) {
#ifdef __CUDA_ARCH__
    return kvalues_mxfp4_device[q];
#else
    return kvalues_mxfp4_host[q];
#endif
}

__host__ __device__ __forceinline__ float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* trit n (0: the most significant) of a base-3 byte: ((b * 3^n) mod 256) * 3 >> 8 */
__host__ __device__ __forceinline__ int trit(int b, int n) {
    const int pow3 = n == 0 ? 1 : n == 1 ? 3 : n == 2 ? 9 : n == 3 ? 27 : 81;
    return (((b * pow3) & 0xFF) * 3) >> 8;
}

/* y = (t - 1) * d; sub-block s: elements 32 s .. 32 s + 31 (ternary.py draws the trits) */
__host__ __device__ __forceinline__ void dequantize_tq1_0(const uint8_t *b, int s, float *y) {
    const block_tq1_0 *x = reinterpret_cast<const block_tq1_0 *>(b);
    const float d = fp16_to_fp32(x->d);
UNROLL
    for (int j = 0; j < 32; j++) {
        const int e = 32 * s + j;
        const int t = e < 160 ? trit(x->qs[e % 32], e / 32)
                    : e < 240 ? trit(x->qs[32 + (e - 160) % 16], (e - 160) / 16)
                              : trit(x->qh[(e - 240) % 4], (e - 240) / 4);
        y[j] = (float)(t - 1) * d;
    }
}

/* element 128 h + 32 k + l: bits 2 k of qs[32 h + l] */
__host__ __device__ __forceinline__ void dequantize_tq2_0(const uint8_t *b, int s, float *y) {
    const block_tq2_0 *x = reinterpret_cast<const block_tq2_0 *>(b);
    const float d = fp16_to_fp32(x->d);
    const uint8_t *qs = x->qs + 32 * (s / 4);
UNROLL
    for (int l = 0; l < 32; l++) y[l] = (float)(((qs[l] >> (2 * (s % 4))) & 3) - 1) * d;
}

/* y = d * kvalues_mxfp4[q], d = 2^(e - 128) (ggml's bits: e = 0, 1 subnormal) */
__host__ __device__ __forceinline__ void dequantize_mxfp4(const uint8_t *b, int, float *y) {
    const block_mxfp4 *x = reinterpret_cast<const block_mxfp4 *>(b);
    const float d = f32_from_bits(x->e < 2 ? 0x00200000u << x->e : (uint32_t)(x->e - 1) << 23);
UNROLL
    for (int j = 0; j < 16; j++) {
        y[j] = d * kvalue_mxfp4(x->qs[j] & 0x0F);
        y[j + 16] = d * kvalue_mxfp4(x->qs[j] >> 4);
    }
}

/* UE4M3 halved: exponent bits 3..6 (bias 7), mantissa 0..2, exponent 0 subnormal; 0x00 and
 * 0x7F read as 0 */
__host__ __device__ __forceinline__ float ue4m3_to_fp32(int u) {
    if (u == 0 || u == 0x7F) return 0.0f;
    const int e = (u >> 3) & 15, m = u & 7;
    const float raw = e == 0 ? ldexpf((float)m, -9) : ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return raw * 0.5f;
}

/* y = kvalues_mxfp4[q] * d_j, a UE4M3 d_j per 16: element 16 j + i is nibble i / 8 of qs[8 j + i % 8] */
__host__ __device__ __forceinline__ void dequantize_nvfp4(const uint8_t *b, int s, float *y) {
    const block_nvfp4 *x = reinterpret_cast<const block_nvfp4 *>(b);
UNROLL
    for (int h = 0; h < 2; h++) {
        const int j = 2 * s + h;
        const float d = ue4m3_to_fp32(x->d[j]);
UNROLL
        for (int i = 0; i < 8; i++) {
            y[16 * h + i] = (float)kvalue_mxfp4(x->qs[8 * j + i] & 0x0F) * d;
            y[16 * h + i + 8] = (float)kvalue_mxfp4(x->qs[8 * j + i] >> 4) * d;
        }
    }
}

/* y = bit ? d : -d, bit e % 8 of qs[e / 8] */
__host__ __device__ __forceinline__ void dequantize_q1_0(const uint8_t *b, int s, float *y) {
    const block_q1_0 *x = reinterpret_cast<const block_q1_0 *>(b);
    const float d = fp16_to_fp32(x->d);
UNROLL
    for (int j = 0; j < 32; j++) y[j] = (x->qs[4 * s + j / 8] >> (j % 8)) & 1 ? d : -d;
}

/* y = (q - 1) * d, q bits 2 (e % 4) of qs[e / 4] */
__host__ __device__ __forceinline__ void dequantize_q2_0(const uint8_t *b, int s, float *y) {
    const block_q2_0 *x = reinterpret_cast<const block_q2_0 *>(b);
    const float d = fp16_to_fp32(x->d);
UNROLL
    for (int j = 0; j < 32; j++) y[j] = (float)(((x->qs[8 * s + j / 4] >> (2 * (j % 4))) & 3) - 1) * d;
}

/* ================================================================ the types, in one place
 *
 * Type<GGML_TYPE_x> is ggml's block geometry of type x with its decoder; every kernel
 * below is a template over it, and TYPES (further down) is the one table of type ids. */

typedef void (*dequantize_fn)(const uint8_t *block, int sub, float *y);

template <int BLOCK_SIZE, int TYPE_SIZE, dequantize_fn DEQUANTIZE>
struct QuantType {
    static constexpr int block_size = BLOCK_SIZE, type_size = TYPE_SIZE;

    /* chunk c of a row: sub-block c % (block_size / 32) of block c / (block_size / 32) */
    __host__ __device__ static void dequantize_chunk(const uint8_t *row, int64_t c, float *y) {
        constexpr int subs = BLOCK_SIZE / CHUNK;
        DEQUANTIZE(row + (c / subs) * TYPE_SIZE, (int)(c % subs), y);
    }
};

template <int TYPE> struct Type;
template <> struct Type<GGML_TYPE_F32> : QuantType<32, 32 * 4, dequantize_f32> {};
template <> struct Type<GGML_TYPE_F16> : QuantType<32, 32 * 2, dequantize_f16> {};
template <> struct Type<GGML_TYPE_BF16> : QuantType<32, 32 * 2, dequantize_bf16> {};
template <> struct Type<GGML_TYPE_Q4_0> : QuantType<QK4_0, sizeof(block_q4_0), dequantize_q4_0> {};
template <> struct Type<GGML_TYPE_Q4_1> : QuantType<QK4_1, sizeof(block_q4_1), dequantize_q4_1> {};
template <> struct Type<GGML_TYPE_Q5_0> : QuantType<QK5_0, sizeof(block_q5_0), dequantize_q5_0> {};
template <> struct Type<GGML_TYPE_Q5_1> : QuantType<QK5_1, sizeof(block_q5_1), dequantize_q5_1> {};
template <> struct Type<GGML_TYPE_Q8_0> : QuantType<QK8_0, sizeof(block_q8_0), dequantize_q8_0> {};
template <> struct Type<GGML_TYPE_IQ4_NL> : QuantType<QK4_NL, sizeof(block_iq4_nl), dequantize_iq4_nl> {};
template <> struct Type<GGML_TYPE_Q2_K> : QuantType<QK_K, sizeof(block_q2_K), dequantize_q2_K> {};
template <> struct Type<GGML_TYPE_Q3_K> : QuantType<QK_K, sizeof(block_q3_K), dequantize_q3_K> {};
template <> struct Type<GGML_TYPE_Q4_K> : QuantType<QK_K, sizeof(block_q4_K), dequantize_q4_K> {};
template <> struct Type<GGML_TYPE_Q5_K> : QuantType<QK_K, sizeof(block_q5_K), dequantize_q5_K> {};
template <> struct Type<GGML_TYPE_Q6_K> : QuantType<QK_K, sizeof(block_q6_K), dequantize_q6_K> {};
template <> struct Type<GGML_TYPE_IQ2_XXS> : QuantType<QK_K, sizeof(block_iq2_xxs), dequantize_iq2_xxs> {};
template <> struct Type<GGML_TYPE_IQ2_XS> : QuantType<QK_K, sizeof(block_iq2_xs), dequantize_iq2_xs> {};
template <> struct Type<GGML_TYPE_IQ2_S> : QuantType<QK_K, sizeof(block_iq2_s), dequantize_iq2_s> {};
template <> struct Type<GGML_TYPE_IQ1_S> : QuantType<QK_K, sizeof(block_iq1_s), dequantize_iq1_s> {};
template <> struct Type<GGML_TYPE_IQ1_M> : QuantType<QK_K, sizeof(block_iq1_m), dequantize_iq1_m> {};
template <> struct Type<GGML_TYPE_IQ3_XXS> : QuantType<QK_K, sizeof(block_iq3_xxs), dequantize_iq3_xxs> {};
template <> struct Type<GGML_TYPE_IQ3_S> : QuantType<QK_K, sizeof(block_iq3_s), dequantize_iq3_s> {};
template <> struct Type<GGML_TYPE_IQ4_XS> : QuantType<QK_K, sizeof(block_iq4_xs), dequantize_iq4_xs> {};
template <> struct Type<GGML_TYPE_TQ1_0> : QuantType<QK_K, sizeof(block_tq1_0), dequantize_tq1_0> {};
template <> struct Type<GGML_TYPE_TQ2_0> : QuantType<QK_K, sizeof(block_tq2_0), dequantize_tq2_0> {};
template <> struct Type<GGML_TYPE_MXFP4> : QuantType<QK_MXFP4, sizeof(block_mxfp4), dequantize_mxfp4> {};
template <> struct Type<GGML_TYPE_NVFP4> : QuantType<QK_NVFP4, sizeof(block_nvfp4), dequantize_nvfp4> {};
template <> struct Type<GGML_TYPE_Q1_0> : QuantType<QK1_0, sizeof(block_q1_0), dequantize_q1_0> {};
template <> struct Type<GGML_TYPE_Q2_0> : QuantType<QK2_0, sizeof(block_q2_0), dequantize_q2_0> {};

/* ================================================================ products and row fetches */

/* sum_e w[e] * x[e] over one chunk; x 16-byte aligned */
__device__ __forceinline__ float dot_chunk(const float *w, const float *x) {
    const float4 *x4 = reinterpret_cast<const float4 *>(x);
    float s = 0.0f;
UNROLL
    for (int i = 0; i < CHUNK / 4; i++) {
        const float4 v = __ldg(x4 + i);
        s = fmaf(w[4 * i], v.x, s);
        s = fmaf(w[4 * i + 1], v.y, s);
        s = fmaf(w[4 * i + 2], v.z, s);
        s = fmaf(w[4 * i + 3], v.w, s);
    }
    return s;
}

/* grid (ceil(n_rows / MATMUL_WARPS)), block (32, MATMUL_WARPS): warp y owns row n */
template <int TYPE>
__global__ void matmul_kernel(const uint8_t *__restrict__ w, int64_t w_stride, int64_t n_rows,
                              int64_t n_chunks, const float *__restrict__ x, int64_t ldx,
                              int n_tok, const float *__restrict__ bias, float *out, int64_t ldo,
                              int accumulate) {
    const int lane = threadIdx.x;
    const int64_t n = (int64_t)blockIdx.x * MATMUL_WARPS + threadIdx.y;
    if (n >= n_rows) return;                                    /* the whole warp leaves */
    const uint8_t *row = w + n * w_stride;
    float acc[MAX_TOK] = {};
    for (int64_t c = lane; c < n_chunks; c += WARP) {
        float wc[CHUNK];
        Type<TYPE>::dequantize_chunk(row, c, wc);
UNROLL
        for (int t = 0; t < MAX_TOK; t++)
            if (t < n_tok) acc[t] += dot_chunk(wc, x + t * ldx + c * CHUNK);
    }
UNROLL
    for (int t = 0; t < MAX_TOK; t++) {
        if (t >= n_tok) break;                                  /* uniform across the warp */
        const float sum = warp_sum(acc[t]);
        if (lane == 0) {
            float *o = out + t * ldo + n;
            *o = (accumulate ? *o : 0.0f) + (bias ? bias[n] : 0.0f) + sum;
        }
    }
}

/* grid (n_rows), block 128: thread i decodes chunks i, i + 128, ... of row rows[blockIdx.x] */
template <int TYPE>
__global__ void get_rows_kernel(const uint8_t *__restrict__ w, int64_t w_stride,
                                const int64_t *__restrict__ rows, int64_t n_chunks,
                                float *__restrict__ out, int64_t ldo) {
    const uint8_t *row = w + rows[blockIdx.x] * w_stride;
    float *o = out + blockIdx.x * ldo;
    for (int64_t c = threadIdx.x; c < n_chunks; c += blockDim.x) {
        float wc[CHUNK];
        Type<TYPE>::dequantize_chunk(row, c, wc);
UNROLL
        for (int e = 0; e < CHUNK; e++) o[c * CHUNK + e] = wc[e];
    }
}

template <int TYPE>
static void launch_matmul(const void *w, int64_t w_stride, int64_t n_rows, int64_t k,
                          const float *x, int64_t ldx, int n_tok, const float *bias, float *out,
                          int64_t ldo, int accumulate) {
    const dim3 block(WARP, MATMUL_WARPS);
    const unsigned grid = (unsigned)((n_rows + MATMUL_WARPS - 1) / MATMUL_WARPS);
    matmul_kernel<TYPE><<<grid, block>>>((const uint8_t *)w, w_stride, n_rows, k / CHUNK, x, ldx,
                                         n_tok, bias, out, ldo, accumulate);
}

template <int TYPE>
static void launch_get_rows(const void *w, int64_t w_stride, const int64_t *rows, int64_t n_rows,
                            int64_t k, float *out, int64_t ldo) {
    get_rows_kernel<TYPE><<<(unsigned)n_rows, 128>>>((const uint8_t *)w, w_stride, rows, k / CHUNK,
                                                      out, ldo);
}

/* The one place that dispatches on type ids. */
struct TypeEntry {
    int type, block_size, type_size;
    decltype(&launch_matmul<GGML_TYPE_F32>) matmul;
    decltype(&launch_get_rows<GGML_TYPE_F32>) get_rows;
};

template <int TYPE>
static constexpr TypeEntry entry() {
    return {TYPE, Type<TYPE>::block_size, Type<TYPE>::type_size, launch_matmul<TYPE>,
            launch_get_rows<TYPE>};
}

static const TypeEntry TYPES[] = {
    entry<GGML_TYPE_F32>(),  entry<GGML_TYPE_F16>(),  entry<GGML_TYPE_BF16>(),
    entry<GGML_TYPE_Q4_0>(), entry<GGML_TYPE_Q4_1>(), entry<GGML_TYPE_Q5_0>(),
    entry<GGML_TYPE_Q5_1>(), entry<GGML_TYPE_Q8_0>(), entry<GGML_TYPE_IQ4_NL>(),
    entry<GGML_TYPE_Q2_K>(), entry<GGML_TYPE_Q3_K>(), entry<GGML_TYPE_Q4_K>(),
    entry<GGML_TYPE_Q5_K>(), entry<GGML_TYPE_Q6_K>(),
    entry<GGML_TYPE_IQ2_XXS>(), entry<GGML_TYPE_IQ2_XS>(), entry<GGML_TYPE_IQ2_S>(),
    entry<GGML_TYPE_IQ1_S>(), entry<GGML_TYPE_IQ1_M>(),
    entry<GGML_TYPE_IQ3_XXS>(), entry<GGML_TYPE_IQ3_S>(), entry<GGML_TYPE_IQ4_XS>(),
    entry<GGML_TYPE_TQ1_0>(), entry<GGML_TYPE_TQ2_0>(), entry<GGML_TYPE_MXFP4>(),
    entry<GGML_TYPE_NVFP4>(), entry<GGML_TYPE_Q1_0>(), entry<GGML_TYPE_Q2_0>(),
};

static const TypeEntry *find_type(int type) {
    for (const TypeEntry &entry : TYPES)
        if (entry.type == type) return &entry;
    return nullptr;
}

/* ================================================================ the other layer steps */

/* grid (n_rows), block 256: y = x * (1 / sqrt(mean(x^2) + eps)) * weight */
__global__ void rms_norm_kernel(const float *x, const float *weight, float *y, int64_t n,
                                float eps) {
    __shared__ double partial[256 / WARP];
    const float *xr = x + blockIdx.x * n;
    float *yr = y + blockIdx.x * n;
    double sum = 0.0;                                  /* squares in float, summed in double */
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += (double)(xr[i] * xr[i]);
UNROLL
    for (int offset = WARP / 2; offset > 0; offset >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    if (threadIdx.x % WARP == 0) partial[threadIdx.x / WARP] = sum;
    __syncthreads();
    double total = 0.0;
    for (int i = 0; i < (int)(blockDim.x / WARP); i++) total += partial[i];
    const float mean = (float)(total / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        yr[i] = weight ? (xr[i] * scale) * weight[i] : xr[i] * scale;
}

/* grid (n_tok * n_heads), block head_dim / 2: thread i rotates pair i of one head by
 * row t of the tables, with the FMAs of the CPU's rope (layer.c, numerics.rope_pairs) */
__global__ void rope_kernel(float *x, int n_heads, int head_dim, const float *cos_t,
                            const float *sin_t, int neox) {
    const int64_t t = blockIdx.x / n_heads;
    float *v = x + blockIdx.x * (int64_t)head_dim;
    const int i = threadIdx.x, half = head_dim / 2;
    const float c = cos_t[t * half + i], s = sin_t[t * half + i];
    const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
    const float x0 = v[i0], x1 = v[i1];
    v[i0] = fmaf(x0, c, -__fmul_rn(x1, s));
    v[i1] = fmaf(x0, s, __fmul_rn(x1, c));
}

/* grid-stride over n_tok * width elements */
__global__ void store_kv_kernel(const float *k, const float *v, __half *k_cache, __half *v_cache,
                                int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
        k_cache[i] = __float2half_rn(k[i]);
        v_cache[i] = __float2half_rn(v[i]);
    }
}

/* grid (n_head, n_tok), block (32, ATTN_WARPS).
 * Each warp walks every ATTN_WARPS-th cached position with an online softmax
 * (running max m, normalizer l, weighted value sum o), lanes splitting the head's
 * dims; the warps' partial results are then merged:
 *     m = max_w m_w,  l = sum_w l_w e^(m_w - m),  out = sum_w o_w e^(m_w - m) / l      */
__global__ void attention_kernel(const float *q, const __half *k_cache, const __half *v_cache,
                                 float *out, int64_t pos0, int n_head, int n_head_kv, int head_dim,
                                 float scale, int64_t window) {
    constexpr int MAX_DPL = MAX_HEAD_DIM / WARP;       /* dims per lane */
    __shared__ float warp_m[ATTN_WARPS], warp_l[ATTN_WARPS];
    __shared__ float warp_o[ATTN_WARPS][MAX_HEAD_DIM];
    const int h = blockIdx.x, lane = threadIdx.x, warp = threadIdx.y;
    const int64_t t = blockIdx.y;
    const int g = h / (n_head / n_head_kv);
    const int dpl = head_dim / WARP;
    const int64_t n_kv = pos0 + t + 1;                 /* causal: positions 0 .. pos0 + t */
    const int64_t j0 = window > 0 && n_kv > window ? n_kv - window : 0;   /* the window's first */
    const int64_t kv_stride = (int64_t)n_head_kv * head_dim;
    const float *qh = q + (t * n_head + h) * head_dim;

    float qv[MAX_DPL], o[MAX_DPL];
UNROLL
    for (int i = 0; i < MAX_DPL; i++) {
        qv[i] = i < dpl ? qh[lane + WARP * i] : 0.0f;
        o[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int64_t j = j0 + warp; j < n_kv; j += ATTN_WARPS) {
        const __half *kj = k_cache + j * kv_stride + g * head_dim;
        const __half *vj = v_cache + j * kv_stride + g * head_dim;
        float dot = 0.0f;
UNROLL
        for (int i = 0; i < MAX_DPL; i++)
            if (i < dpl) dot = fmaf(qv[i], __half2float(kj[lane + WARP * i]), dot);
        const float score = warp_sum(dot) * scale;
        const float m_new = fmaxf(m, score);
        const float correction = expf(m - m_new), p = expf(score - m_new);
        l = l * correction + p;
UNROLL
        for (int i = 0; i < MAX_DPL; i++)
            if (i < dpl) o[i] = o[i] * correction + p * __half2float(vj[lane + WARP * i]);
        m = m_new;
    }
    if (lane == 0) {
        warp_m[warp] = m;
        warp_l[warp] = l;
    }
UNROLL
    for (int i = 0; i < MAX_DPL; i++)
        if (i < dpl) warp_o[warp][lane + WARP * i] = o[i];
    __syncthreads();

    float m_all = -INFINITY;
    for (int w = 0; w < ATTN_WARPS; w++) m_all = fmaxf(m_all, warp_m[w]);
    float l_all = 0.0f, weight[ATTN_WARPS];
UNROLL
    for (int w = 0; w < ATTN_WARPS; w++) {
        weight[w] = expf(warp_m[w] - m_all);           /* 0 for a warp that saw no position */
        l_all += warp_l[w] * weight[w];
    }
    float *oh = out + (t * n_head + h) * head_dim;
    for (int dim = warp * WARP + lane; dim < head_dim; dim += ATTN_WARPS * WARP) {
        float sum = 0.0f;
UNROLL
        for (int w = 0; w < ATTN_WARPS; w++) sum += warp_o[w][dim] * weight[w];
        oh[dim] = sum / l_all;
    }
}

__global__ void silu_mul_kernel(const float *gate, const float *up, float *out, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* GeGLU as ggml_vec_geglu_f32 with GGML_GELU_FP16: the table holds the fp16 GELU of every
 * fp16 value (made on the host: pyggml.model.numerics.gelu_table), indexed by fp16(gate) */
__global__ void gelu_mul_kernel(const float *gate, const float *up, float *out, int64_t n,
                                const __half *table) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = gate[i];
        const float gelu = g >= 10.0f ? g : __half2float(table[__half_as_ushort(__float2half_rn(g))]);
        out[i] = g <= -10.0f ? 0.0f : __fmul_rn(gelu, up[i]);
    }
}

__global__ void scale_kernel(float *x, int64_t n, float s) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
        x[i] = __fmul_rn(x[i], s);
}

__global__ void add_kernel(float *x, const float *y, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
        x[i] = __fadd_rn(x[i], y[i]);
}

/* x = cap * tanh(x / cap) as llama.cpp's graph: scale by 1/cap, tanh, scale by cap */
__global__ void softcap_kernel(float *x, int64_t n, float inv_cap, float cap) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
        x[i] = __fmul_rn(tanhf(__fmul_rn(x[i], inv_cap)), cap);
}

/* blocks for a grid-stride loop over n elements */
static unsigned grid_for(int64_t n, int threads) {
    const int64_t blocks = (n + threads - 1) / threads;
    return (unsigned)(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* ================================================================ the C ABI */

extern "C" {

int pyggml_cuda_abi_version(void) { return PYGGML_CUDA_ABI_VERSION; }

const char *pyggml_cuda_last_error(void) { return last_error; }

int pyggml_cuda_device_count(int *count) {
    if (!count) return fail(PYGGML_CUDA_ERR_ARG, "device_count: count is NULL");
    *count = 0;
    CUDA_TRY("cudaGetDeviceCount", cudaGetDeviceCount(count));
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_set_device(int device, char *name, int name_size, int *cc_major, int *cc_minor,
                           int *n_sm) {
    if (!name || name_size <= 0 || !cc_major || !cc_minor || !n_sm)
        return fail(PYGGML_CUDA_ERR_ARG, "set_device: NULL output argument");
    char what[64];
    snprintf(what, sizeof what, "cudaSetDevice(%d)", device);
    CUDA_TRY(what, cudaSetDevice(device));
    CUDA_TRY("creating the CUDA context (cudaFree(0))", cudaFree(0));
    cudaDeviceProp prop;
    CUDA_TRY("cudaGetDeviceProperties", cudaGetDeviceProperties(&prop, device));
    snprintf(name, (size_t)name_size, "%s", prop.name);
    *cc_major = prop.major;
    *cc_minor = prop.minor;
    *n_sm = prop.multiProcessorCount;
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_mem_info(uint64_t *free_bytes, uint64_t *total_bytes) {
    if (!free_bytes || !total_bytes) return fail(PYGGML_CUDA_ERR_ARG, "mem_info: NULL argument");
    size_t free_b = 0, total_b = 0;
    CUDA_TRY("cudaMemGetInfo", cudaMemGetInfo(&free_b, &total_b));
    *free_bytes = free_b;
    *total_bytes = total_b;
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_malloc(void **ptr, uint64_t nbytes) {
    if (!ptr) return fail(PYGGML_CUDA_ERR_ARG, "malloc: ptr is NULL");
    *ptr = nullptr;
    const cudaError_t err = cudaMalloc(ptr, nbytes ? nbytes : 1);
    if (err != cudaSuccess) {
        cudaGetLastError();                            /* an out-of-memory error is not sticky */
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        char what[160];
        snprintf(what, sizeof what, "cudaMalloc of %llu bytes (%llu bytes free of %llu)",
                 (unsigned long long)nbytes, (unsigned long long)free_b,
                 (unsigned long long)total_b);
        return fail_cuda(what, err);
    }
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_free(void *ptr) {
    CUDA_TRY("cudaFree", cudaFree(ptr));
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_memset(void *ptr, int value, uint64_t nbytes) {
    CUDA_TRY("cudaMemset", cudaMemset(ptr, value, nbytes));
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_upload(void *dst, const void *src, uint64_t nbytes) {
    if ((!dst || !src) && nbytes) return fail(PYGGML_CUDA_ERR_ARG, "upload: NULL pointer");
    CUDA_TRY("cudaMemcpy host to device", cudaMemcpy(dst, src, nbytes, cudaMemcpyHostToDevice));
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_download(void *dst, const void *src, uint64_t nbytes) {
    if ((!dst || !src) && nbytes) return fail(PYGGML_CUDA_ERR_ARG, "download: NULL pointer");
    CUDA_TRY("cudaMemcpy device to host", cudaMemcpy(dst, src, nbytes, cudaMemcpyDeviceToHost));
    return PYGGML_CUDA_OK;
}

int64_t pyggml_cuda_row_bytes(int type, int64_t k) {
    const TypeEntry *entry = find_type(type);
    if (!entry || k < 0 || k % CHUNK || k % entry->block_size) return -1;
    return k / entry->block_size * entry->type_size;
}

/* checks shared by matmul and get_rows: type known, k a whole number of chunks, rows fit */
static int check_weights(const char *fn, int type, const void *w, int64_t w_stride, int64_t k,
                         const TypeEntry **entry) {
    *entry = find_type(type);
    if (!*entry)
        return fail(PYGGML_CUDA_ERR_TYPE, "%s: ggml type %d is not supported by the CUDA kernels",
                    fn, type);
    const int64_t row_bytes = pyggml_cuda_row_bytes(type, k);
    if (row_bytes < 0)
        return fail(PYGGML_CUDA_ERR_SHAPE, "%s: k = %lld is not a multiple of 32 and of the "
                    "block size %d", fn, (long long)k, (*entry)->block_size);
    if (!w) return fail(PYGGML_CUDA_ERR_ARG, "%s: w is NULL", fn);
    if (w_stride < row_bytes)
        return fail(PYGGML_CUDA_ERR_ARG, "%s: w_stride %lld < row bytes %lld", fn,
                    (long long)w_stride, (long long)row_bytes);
    if (((uintptr_t)w | (uintptr_t)w_stride) & 1)     /* blocks hold fp16 fields: 2-aligned */
        return fail(PYGGML_CUDA_ERR_ARG, "%s: w and w_stride must be even", fn);
    if (type == GGML_TYPE_F32 && (!aligned16(w) || w_stride % 16))
        return fail(PYGGML_CUDA_ERR_ARG, "%s: F32 weights need 16-byte aligned rows", fn);
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_matmul(int type, const void *w, int64_t w_stride, int64_t n_rows, int64_t k,
                       const float *x, int64_t ldx, int64_t n_tok, const float *bias, float *out,
                       int64_t ldo, int accumulate) {
    const TypeEntry *entry;
    const int rc = check_weights("matmul", type, w, w_stride, k, &entry);
    if (rc) return rc;
    if (n_rows < 0 || n_tok < 0)
        return fail(PYGGML_CUDA_ERR_SHAPE, "matmul: negative n_rows or n_tok");
    if (!x || !out) return fail(PYGGML_CUDA_ERR_ARG, "matmul: x or out is NULL");
    if (!aligned16(x) || ldx % 4 || ldx < k || (n_tok > 1 && ldo < n_rows))
        return fail(PYGGML_CUDA_ERR_ARG, "matmul: x must be 16-byte aligned, ldx >= k a "
                    "multiple of 4, ldo >= n_rows");
    if (n_rows == 0) return PYGGML_CUDA_OK;
    for (int64_t t0 = 0; t0 < n_tok; t0 += MAX_TOK) {
        const int tile = (int)(n_tok - t0 < MAX_TOK ? n_tok - t0 : MAX_TOK);
        entry->matmul(w, w_stride, n_rows, k, x + t0 * ldx, ldx, tile, bias, out + t0 * ldo,
                      ldo, accumulate);
        LAUNCH_CHECK("matmul kernel launch");
    }
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_get_rows(int type, const void *w, int64_t w_stride, int64_t n_w_rows,
                         const int64_t *rows, int64_t n_rows, int64_t k, float *out, int64_t ldo) {
    const TypeEntry *entry;
    const int rc = check_weights("get_rows", type, w, w_stride, k, &entry);
    if (rc) return rc;
    if (n_rows < 0 || n_rows > 0x7fffffff)
        return fail(PYGGML_CUDA_ERR_SHAPE, "get_rows: n_rows = %lld out of range",
                    (long long)n_rows);
    if (!out || (n_rows && !rows) || ldo < k)
        return fail(PYGGML_CUDA_ERR_ARG, "get_rows: NULL pointer or ldo < k");
    for (int64_t i = 0; i < n_rows; i++)
        if (rows[i] < 0 || rows[i] >= n_w_rows)
            return fail(PYGGML_CUDA_ERR_ARG, "get_rows: row id %lld is outside 0..%lld",
                        (long long)rows[i], (long long)n_w_rows - 1);
    if (n_rows == 0) return PYGGML_CUDA_OK;
    int64_t *rows_dev = nullptr;
    CUDA_TRY("cudaMalloc for row ids", cudaMalloc(&rows_dev, n_rows * sizeof(int64_t)));
    cudaError_t err = cudaMemcpy(rows_dev, rows, n_rows * sizeof(int64_t), cudaMemcpyHostToDevice);
    if (err == cudaSuccess) {
        entry->get_rows(w, w_stride, rows_dev, n_rows, k, out, ldo);
        err = cudaGetLastError();
    }
    const cudaError_t free_err = cudaFree(rows_dev);      /* waits for the kernel */
    if (err != cudaSuccess) return fail_cuda("get_rows", err);
    CUDA_TRY("get_rows kernel", free_err);
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_rms_norm(const float *x, const float *weight, float *y, int64_t n_rows, int64_t n,
                         float eps) {
    if (!x || !y) return fail(PYGGML_CUDA_ERR_ARG, "rms_norm: x or y is NULL");
    if (n_rows < 0 || n <= 0 || n_rows > 0x7fffffff)
        return fail(PYGGML_CUDA_ERR_SHAPE, "rms_norm: bad shape (%lld, %lld)", (long long)n_rows,
                    (long long)n);
    if (n_rows == 0) return PYGGML_CUDA_OK;
    rms_norm_kernel<<<(unsigned)n_rows, 256>>>(x, weight, y, n, eps);
    LAUNCH_CHECK("rms_norm kernel launch");
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_rope(float *x, int64_t n_tok, int n_heads, int head_dim, const float *cos_t,
                     const float *sin_t, int mode) {
    if (!x || !cos_t || !sin_t) return fail(PYGGML_CUDA_ERR_ARG, "rope: NULL pointer");
    if (mode != 0 && mode != 2)
        return fail(PYGGML_CUDA_ERR_ARG, "rope: mode %d is neither 0 (NORM) nor 2 (NEOX)", mode);
    if (n_tok < 0 || n_heads <= 0 || head_dim <= 0 || head_dim % 2 || head_dim > 2048 ||
        n_tok * n_heads > 0x7fffffff)
        return fail(PYGGML_CUDA_ERR_SHAPE, "rope: bad shape (n_tok %lld, n_heads %d, head_dim %d)",
                    (long long)n_tok, n_heads, head_dim);
    if (n_tok == 0) return PYGGML_CUDA_OK;
    rope_kernel<<<(unsigned)(n_tok * n_heads), head_dim / 2>>>(x, n_heads, head_dim, cos_t, sin_t,
                                                                mode == 2);
    LAUNCH_CHECK("rope kernel launch");
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_store_kv(const float *k, const float *v, uint16_t *k_cache, uint16_t *v_cache,
                         int64_t pos0, int64_t n_tok, int64_t width) {
    if (!k || !v || !k_cache || !v_cache)
        return fail(PYGGML_CUDA_ERR_ARG, "store_kv: NULL pointer");
    if (pos0 < 0 || n_tok < 0 || width <= 0)
        return fail(PYGGML_CUDA_ERR_SHAPE, "store_kv: bad shape");
    const int64_t n = n_tok * width;
    if (n == 0) return PYGGML_CUDA_OK;
    __half *kc = reinterpret_cast<__half *>(k_cache) + pos0 * width;
    __half *vc = reinterpret_cast<__half *>(v_cache) + pos0 * width;
    store_kv_kernel<<<grid_for(n, 256), 256>>>(k, v, kc, vc, n);
    LAUNCH_CHECK("store_kv kernel launch");
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_attention(const float *q, const uint16_t *k_cache, const uint16_t *v_cache,
                          float *out, int64_t pos0, int64_t n_tok, int n_head, int n_head_kv,
                          int head_dim, float scale, int64_t window) {
    if (!q || !k_cache || !v_cache || !out)
        return fail(PYGGML_CUDA_ERR_ARG, "attention: NULL pointer");
    if (head_dim <= 0 || head_dim % WARP || head_dim > MAX_HEAD_DIM)
        return fail(PYGGML_CUDA_ERR_SHAPE, "attention: head_dim %d is not a multiple of 32 up to "
                    "%d", head_dim, MAX_HEAD_DIM);
    if (n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv || n_tok < 0 || n_tok > 65535 ||
        pos0 < 0 || window < 0)
        return fail(PYGGML_CUDA_ERR_SHAPE, "attention: bad shape (n_head %d, n_head_kv %d, "
                    "n_tok %lld, pos0 %lld, window %lld)", n_head, n_head_kv, (long long)n_tok,
                    (long long)pos0, (long long)window);
    if (n_tok == 0) return PYGGML_CUDA_OK;
    const __half *kc = reinterpret_cast<const __half *>(k_cache);
    const __half *vc = reinterpret_cast<const __half *>(v_cache);
    attention_kernel<<<dim3((unsigned)n_head, (unsigned)n_tok), dim3(WARP, ATTN_WARPS)>>>(
        q, kc, vc, out, pos0, n_head, n_head_kv, head_dim, scale, window);
    LAUNCH_CHECK("attention kernel launch");
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_silu_mul(const float *gate, const float *up, float *out, int64_t n) {
    if (!gate || !up || !out) return fail(PYGGML_CUDA_ERR_ARG, "silu_mul: NULL pointer");
    if (n < 0) return fail(PYGGML_CUDA_ERR_SHAPE, "silu_mul: negative n");
    if (n == 0) return PYGGML_CUDA_OK;
    silu_mul_kernel<<<grid_for(n, 256), 256>>>(gate, up, out, n);
    LAUNCH_CHECK("silu_mul kernel launch");
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_gelu_mul(const float *gate, const float *up, float *out, int64_t n,
                         const uint16_t *table) {
    if (!gate || !up || !out || !table) return fail(PYGGML_CUDA_ERR_ARG, "gelu_mul: NULL pointer");
    if (n < 0) return fail(PYGGML_CUDA_ERR_SHAPE, "gelu_mul: negative n");
    if (n == 0) return PYGGML_CUDA_OK;
    gelu_mul_kernel<<<grid_for(n, 256), 256>>>(gate, up, out, n,
                                               reinterpret_cast<const __half *>(table));
    LAUNCH_CHECK("gelu_mul kernel launch");
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_scale(float *x, int64_t n, float s) {
    if (!x) return fail(PYGGML_CUDA_ERR_ARG, "scale: x is NULL");
    if (n < 0) return fail(PYGGML_CUDA_ERR_SHAPE, "scale: negative n");
    if (n == 0) return PYGGML_CUDA_OK;
    scale_kernel<<<grid_for(n, 256), 256>>>(x, n, s);
    LAUNCH_CHECK("scale kernel launch");
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_add(float *x, const float *y, int64_t n) {
    if (!x || !y) return fail(PYGGML_CUDA_ERR_ARG, "add: NULL pointer");
    if (n < 0) return fail(PYGGML_CUDA_ERR_SHAPE, "add: negative n");
    if (n == 0) return PYGGML_CUDA_OK;
    add_kernel<<<grid_for(n, 256), 256>>>(x, y, n);
    LAUNCH_CHECK("add kernel launch");
    return PYGGML_CUDA_OK;
}

int pyggml_cuda_softcap(float *x, int64_t n, float cap) {
    if (!x) return fail(PYGGML_CUDA_ERR_ARG, "softcap: x is NULL");
    if (n < 0 || !(cap > 0.0f))
        return fail(PYGGML_CUDA_ERR_SHAPE, "softcap: negative n or a cap that is not positive");
    if (n == 0) return PYGGML_CUDA_OK;
    softcap_kernel<<<grid_for(n, 256), 256>>>(x, n, 1.0f / cap, cap);
    LAUNCH_CHECK("softcap kernel launch");
    return PYGGML_CUDA_OK;
}

}  /* extern "C" */

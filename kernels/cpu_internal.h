/* cpu_internal.h -- what the C files of libpyggml_cpu share and the ABI does not show.
 *
 *   quants_ref.c   the scalar reference of every type, in ggml's _ref style, and the type table
 *   quants_avx2.c  AVX2 products and activation quantizers, bit-identical to the reference
 *   panels_avx2.c  prefill of K-quants: 8 rows unpacked once into a panel for VNNI dot products
 *   avx2_blocks.h  the AVX2 unpacking of blocks both use
 *   ggml_order.c   which of llama.cpp's kernels (so which float order) a product follows
 *   pyggml_cpu.c   the ABI: argument checks, the choice of kernel, loop blocking
 *   threads.c      the thread pool that shares a job's chunks
 *   ops.c          per-layer helpers: RMS norm, SiLU * up, softmax
 *   layer.c        a whole transformer block in one call (the fast path of model/forward.py)
 */
#ifndef PYGGML_CPU_INTERNAL_H
#define PYGGML_CPU_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ggml_blocks.h"

#ifndef PYGGML_THREADS
#define PYGGML_THREADS 0             /* CMake defines it to 1 when pthreads are there */
#endif

#if defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------- a scalar tail, as compiled
 * llama.cpp adds the odd last block of IQ4_NL's vec_dot in a scalar loop, `sumf += d * sum`.
 * GCC (-march=native, -ffp-contract=fast) makes that one FMA, except where its tuning avoids
 * FMA chains in loops: AMD Zen (x86-tune.def, avoid_fma_chains).  pyggml is built with
 * -ffp-contract=off, so it chooses here, the same way for the CPU it runs on. */
static inline int ggml_fuses_scalar_tail(void) {
#if defined(__x86_64__) || defined(__i386__)
    return !__builtin_cpu_is("amd");
#else
    return 1;
#endif
}
static inline float add_scalar_tail(float sum, float d, float s) {
    return ggml_fuses_scalar_tail() ? fmaf(d, s, sum) : sum + d * s;
}

/* ---------------------------------------------------------------- fp16 <-> fp32 */

static inline float bits_to_fp32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t fp32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

#ifdef __F16C__
static inline float fp16_to_fp32(ggml_half h) { return _cvtsh_ss(h); }
static inline ggml_half fp32_to_fp16(float f) { return (ggml_half)_cvtss_sh(f, 0); /* 0: nearest even */ }
#else
/* IEEE binary16 -> binary32, exact for every input (subnormals, inf, NaN). */
static inline float fp16_to_fp32(ggml_half h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    if (exp == 0x1F) return bits_to_fp32(sign | 0x7F800000 | (mant << 13));   /* inf, NaN */
    if (exp == 0) return (sign ? -1.0f : 1.0f) * (float)mant * 5.9604644775390625e-8f;  /* m * 2^-24 */
    return bits_to_fp32(sign | ((exp + 112) << 23) | (mant << 13));
}
/* binary32 -> binary16, round to nearest even (as F16C and ggml do). */
static inline ggml_half fp32_to_fp16(float f) {
    uint32_t x = fp32_to_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000;
    x &= 0x7FFFFFFF;
    if (x >= 0x47800000u)                                  /* >= 65536, inf, NaN */
        return (ggml_half)(sign | (x > 0x7F800000u ? 0x7E00 : 0x7C00));
    if (x < 0x38800000u) {                                 /* < 2^-14: subnormal half or 0 */
        /* adding 0.5 puts the 2^-24 unit in the mantissa's last place; the FPU rounds */
        return (ggml_half)(sign | (fp32_to_bits(bits_to_fp32(x) + 0.5f) - 0x3F000000u));
    }
    x += 0xC8000FFFu + ((x >> 13) & 1);                    /* rebias exponent, round half even */
    return (ggml_half)(sign | (x >> 13));
}
#endif

static inline float bf16_to_fp32(uint16_t h) { return bits_to_fp32((uint32_t)h << 16); }

/* ---------------------------------------------------------------- kernels by type */

extern const int8_t kvalues_iq4nl[16];

/* dequantize one row of k elements */
typedef void (*dequantize_row_fn)(const void *w, float *y, int64_t k);
/* quantize one row of k floats into activation blocks */
typedef void (*quantize_row_fn)(const float *x, void *y, int64_t k);
/* the dot product of one weight row and one activation row of k elements */
typedef float (*vec_dot_fn)(int64_t k, const void *w, const void *act);

/* The float order of a product: which of llama.cpp's CPU kernels it reproduces, bit for
 * bit (ggml_order.c says which one ggml takes when, and what each sums in which order). */
typedef enum {
    ORDER_VEC_DOT,     /* ggml_vec_dot_<type>_<act> of arch/x86/quants.c (its AVX2 code) */
    ORDER_TINYBLAS,    /* llamafile's tinyBLAS_Q0_AVX (prompts of Q4_0 Q5_0 Q8_0 IQ4_NL) */
    ORDER_GEMV,        /* repack.cpp's gemv on 8 interleaved rows (CPU_REPACK buffer) */
    ORDER_GEMM,        /* repack.cpp's gemm: the same matrices, activation rows 4 at a time */
    ORDER_TILED,       /* tiled/tiled.cpp: K-quant prompts of 8 tokens or more */
    N_ORDERS
} product_order;

/* One call of a product kernel, all in one order:
 *     out[t * ldo + j] = dot(W row j, activation row t),  j < n_rows, t < n_act
 * W row j at w + j * w_stride bytes, activation row t at act + t * act_stride bytes.
 * A product_fn takes n_rows <= ROW_GROUP and n_act <= MAX_ACT_ROWS, and unpacks each
 * weight block once for all n_act activation rows (prefill); a panel_fn takes any n_act.
 * Every output depends only on its two rows: how they are grouped never changes a bit. */
typedef struct {
    int type;                  /* of the weights; the activations are its act_type */
    product_order order;
    int64_t k;
    const void *w;
    int64_t w_stride;
    int n_rows;
    const void *act;
    int64_t act_stride, n_act;
    float *out;
    int64_t ldo;
} product_args;

typedef void (*product_fn)(const product_args *p);

#define MAX_ACT_ROWS 4
#define ROW_GROUP 8

/* the integer lanes of one weight block times its activation block (quants_ref.c) */
struct block_lanes;
typedef struct block_lanes (*block_lanes_fn)(const void *w, const void *act, int64_t i);

typedef struct {
    int type;
    int block_size;
    int type_size;
    int act_type;                       /* -1: not a weight type (Q8_1, Q8_K) */
    dequantize_row_fn dequantize_row;
    vec_dot_fn vec_dot_ref;             /* the reference of ggml's vec_dot (ORDER_VEC_DOT) */
    block_lanes_fn block_lanes;         /* quantized types: what the other orders sum */
    int gemm_steps;                     /* repack's gemm: chain steps per block (Q4_K 4, Q2_K 2) */
} type_traits;

/* quants_ref.c */
/* activations as llama.cpp's x86 CPU backend quantizes them: ggml-cpu's quantize_row_q8_0
 * and q8_1 (run time, not the _ref functions of files) and quantize_row_q8_K_ref */
void quantize_row_q8_0(const float *x, void *y, int64_t k);
void quantize_row_q8_1(const float *x, void *y, int64_t k);
void quantize_row_q8_K_ref(const float *x, void *y, int64_t k);
const type_traits *ref_traits(int type);      /* NULL if unknown */
/* one output in the given order (the float types have one order: their vec_dot) */
float ref_dot(int type, product_order order, int64_t k, const void *w, const void *act);
/* the product_fn of every type and order, ref_dot output by output */
void ref_product(const product_args *p);

/* ggml_order.c: the order llama.cpp's CPU backend gives activation row t of a product
 * of n_act rows with a weight matrix of n_rows rows of `type`, on an x86 machine with
 * AVX-512 (as llama-cpp-python builds it there) */
product_order ggml_product_order(int type, int64_t n_rows, int64_t n_act, int64_t t);

/* ops.c: softmax of a row of n scores in place, with ggml's bits for the row as llama.cpp
 * has it, padded with masked entries to a multiple of 16: every entry through ggml's exp */
void softmax_row(float *x, int64_t n);

/* threads.c: fn(ctx, c) for every c < n_chunks, on the calling thread and up to
 * n_threads - 1 workers; returns when all are done.  PYGGML_THREADS=0: calling thread only. */
typedef void (*chunk_fn)(void *ctx, int64_t chunk);
void run_chunks(int n_threads, int64_t n_chunks, chunk_fn fn, void *ctx);
int default_threads(void);      /* online CPUs */

/* quants_avx2.c (NULL when the build has no AVX2, or no kernel serves the type and
 * order): the fast kernel of a type and order, bit-identical to the reference; the
 * activation quantizers */
product_fn fast_product(int type, product_order order);
quantize_row_fn fast_quantize_row(int act_type);

/* panels_avx2.c (NULL without VNNI, or for other types and orders): the products of
 * n_rows <= PANEL_ROWS weight rows of a K-quant, in the GEMV, GEMM or TILED order, with
 * any number of activation rows; the rows are unpacked once into a panel that serves all
 * activation rows (prefill).  Returns 0 if out of memory. */
#define PANEL_ROWS 8
typedef int (*panel_fn)(const product_args *p);
panel_fn fast_panel(int type, product_order order);

#endif /* PYGGML_CPU_INTERNAL_H */

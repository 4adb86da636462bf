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
 * llama.cpp adds the odd last block of IQ4_NL's vec_dot in a scalar loop, `sumf += d * sum`
 * (and Q2_0's generic vec_dot its blocks).  GCC (-march=native, -ffp-contract=fast) makes
 * that one FMA, except where its tuning avoids FMA chains in loops: AMD Zen (x86-tune.def,
 * avoid_fma_chains), and only in a loop of one basic block.  A chain in a loop that holds
 * other loops (IQ1_S's shift sum, TQ1_0's and TQ2_0's lanes) GCC 12 fuses on Zen too: those
 * kernels write fmaf / _mm256_fmadd_ps on every CPU (measured on a Zen 5: their products
 * equal llama.cpp's only so).  pyggml is built with -ffp-contract=off, so it chooses here,
 * the same way for the CPU it runs on. */
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
extern const int8_t kvalues_mxfp4[16];

/* MXFP4's E8M0 scale halved (the values are doubled): 2^(e - 128), as ggml builds the bits
 * (e = 0, 1 subnormal; 255 stays 2^127) */
static inline float e8m0_to_fp32_half(uint8_t e) {
    return bits_to_fp32(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

/* NVFP4's UE4M3 scale halved (ggml_ue4m3_to_fp32): exponent bits 3..6 (bias 7), mantissa
 * 0..2; exponent 0 subnormal, m 2^-9; 0x00 and 0x7F (E4M3's NaN) read as 0 */
static inline float ue4m3_to_fp32(uint8_t u) {
    if (u == 0 || u == 0x7F) return 0.0f;
    const int e = (u >> 3) & 15, m = u & 7;
    const float raw = e == 0 ? ldexpf((float)m, -9) : ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return raw * 0.5f;
}

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

/* ---------------------------------------------------------------- the integers of a block
 * Every kernel of ggml first forms exact integer dot products per block; what differs
 * between them is how those integers are grouped before they meet the float scales.
 * block_lanes_<type> (quants_ref.c, quants_iq_grid_ref.c) computes them as ggml's x86
 * vec_dot kernels hold them -- 8 int32 lanes, lane l getting the products of the
 * elements e with (e % 32) / 4 == l (each 32-byte register of activation quants feeds 8
 * lanes of 4 bytes), sub-block scales applied -- and, for repack's gemm, the same
 * products by 64 elements.  The sums fit int32 (|lane| < 2^27); ggml's instructions
 * would wrap, and so do these (uint32). */
struct block_lanes {
    int32_t lane[8];     /* ggml's 8 integer lanes of the block's dot product */
    int32_t part[4];     /* the same products summed by 64 elements (repack's gemm steps) */
    int32_t min[8];      /* the min term in ggml's lanes: n_min of them, the rest 0 */
    int n_min;           /* Q2_K 8 (groups 2l, 2l+1), Q4_K and Q5_K 4 (sub-blocks 2p, 2p+1) */
    float d, dmin, m;    /* weight block: d; dmin (K-quants) or m (Q4_1, Q5_1) */
    float d_y, s_y;      /* activation block: d, and Q8_1's s */
};
typedef struct block_lanes block_lanes;
typedef struct block_lanes (*block_lanes_fn)(const void *w, const void *act, int64_t i);

static inline int32_t wrapping_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

/* the product v of element e with its activation, into its lane and its part */
static inline void add_lane(block_lanes *b, int e, int32_t v) {
    b->lane[(e % 32) / 4] = wrapping_add(b->lane[(e % 32) / 4], v);
    b->part[e / 64 % 4] = wrapping_add(b->part[e / 64 % 4], v);
}

static inline int32_t sum_lanes(const int32_t v[8]) {
    int32_t s = 0;
    for (int l = 0; l < 8; l++) s = wrapping_add(s, v[l]);
    return s;
}

/* _mm256 hsum of arch/x86/quants.c: halves added, then pairs, then the two */
static inline float hsum8(const float a[8]) {
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

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
/* quantize_row_q4_0_ref: what llama.cpp writes into a Q4_0 kv cache (ggml-cpu's from_float
 * of Q4_0 is the _ref function) */
void quantize_row_q4_0_ref(const float *x, void *y, int64_t k);
const type_traits *ref_traits(int type);      /* NULL if unknown */
/* one output in the given order (the float types have one order: their vec_dot) */
float ref_dot(int type, product_order order, int64_t k, const void *w, const void *act);
/* the product_fn of every type and order, ref_dot output by output */
void ref_product(const product_args *p);

/* quants_iq_grid_ref.c: the codebook i-quants' references, in quants_ref.c's ref_table */
void dequantize_row_iq2_xxs(const void *w, float *y, int64_t k);
void dequantize_row_iq2_xs(const void *w, float *y, int64_t k);
void dequantize_row_iq2_s(const void *w, float *y, int64_t k);
void dequantize_row_iq1_s(const void *w, float *y, int64_t k);
void dequantize_row_iq1_m(const void *w, float *y, int64_t k);
block_lanes block_lanes_iq2_xxs(const void *w, const void *act, int64_t i);
block_lanes block_lanes_iq2_xs(const void *w, const void *act, int64_t i);
block_lanes block_lanes_iq2_s(const void *w, const void *act, int64_t i);
block_lanes block_lanes_iq1_s(const void *w, const void *act, int64_t i);
block_lanes block_lanes_iq1_m(const void *w, const void *act, int64_t i);
float vec_dot_iq2_xxs_q8_K_ref(int64_t k, const void *w, const void *act);
float vec_dot_iq2_xs_q8_K_ref(int64_t k, const void *w, const void *act);
float vec_dot_iq2_s_q8_K_ref(int64_t k, const void *w, const void *act);
float vec_dot_iq1_s_q8_K_ref(int64_t k, const void *w, const void *act);
float vec_dot_iq1_m_q8_K_ref(int64_t k, const void *w, const void *act);

/* quants_lowbit_ref.c: TQ1_0, TQ2_0, NVFP4, Q1_0 and Q2_0, in quants_ref.c's ref_table */
void dequantize_row_tq1_0(const void *w, float *y, int64_t k);
void dequantize_row_tq2_0(const void *w, float *y, int64_t k);
void dequantize_row_nvfp4(const void *w, float *y, int64_t k);
void dequantize_row_q1_0(const void *w, float *y, int64_t k);
void dequantize_row_q2_0(const void *w, float *y, int64_t k);
float vec_dot_tq1_0_q8_K_ref(int64_t k, const void *w, const void *act);
float vec_dot_tq2_0_q8_K_ref(int64_t k, const void *w, const void *act);
float vec_dot_nvfp4_q8_0_ref(int64_t k, const void *w, const void *act);
float vec_dot_q1_0_q8_0_ref(int64_t k, const void *w, const void *act);
float vec_dot_q2_0_q8_0_ref(int64_t k, const void *w, const void *act);

/* quants_iq3_ref.c: IQ3_XXS, IQ3_S and IQ4_XS, in quants_ref.c's ref_table */
void dequantize_row_iq3_xxs(const void *w, float *y, int64_t k);
void dequantize_row_iq3_s(const void *w, float *y, int64_t k);
void dequantize_row_iq4_xs(const void *w, float *y, int64_t k);
block_lanes block_lanes_iq3_xxs(const void *w, const void *act, int64_t i);
block_lanes block_lanes_iq3_s(const void *w, const void *act, int64_t i);
block_lanes block_lanes_iq4_xs(const void *w, const void *act, int64_t i);
float vec_dot_iq3_xxs_q8_K_ref(int64_t k, const void *w, const void *act);
float vec_dot_iq3_s_q8_K_ref(int64_t k, const void *w, const void *act);
float vec_dot_iq4_xs_q8_K_ref(int64_t k, const void *w, const void *act);

/* pyggml_cpu.c: the kernel of a type and order (the fast one where there is one, else the
 * reference), and the quantizer of an activation type (NULL if none) */
product_fn product_for(const type_traits *t, product_order order);
quantize_row_fn quantize_row_for(int act_type);
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
/* quants_iq_grid_avx2.c (AVX2 builds): the same for the codebook i-quants, NULL for others */
product_fn fast_product_iq_grid(int type, product_order order);
/* quants_iq3_avx2.c (AVX2 builds): the same for IQ3_XXS, IQ3_S and IQ4_XS, NULL for others */
product_fn fast_product_iq3(int type, product_order order);
/* quants_lowbit_avx2.c (AVX2 builds): the same for TQ1_0, TQ2_0, NVFP4, Q1_0, Q2_0 */
product_fn fast_product_lowbit(int type, product_order order);
quantize_row_fn fast_quantize_row(int act_type);

/* panels_avx2.c (NULL without VNNI, or for other types and orders): the products of
 * n_rows <= panel_rows(type) weight rows of a K-quant, in the GEMV, GEMM or TILED order,
 * or of a 32-element type, with any number of activation rows; the rows are unpacked
 * once into a panel that serves all activation rows (prefill).  Returns 0 if out of
 * memory. */
typedef int (*panel_fn)(const product_args *p);
panel_fn fast_panel(int type, product_order order);
int panel_rows(int type);

#endif /* PYGGML_CPU_INTERNAL_H */

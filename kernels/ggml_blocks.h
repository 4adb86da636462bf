/* ggml_blocks.h -- ggml's quantization blocks, byte for byte (ggml/src/ggml-common.h).
 *
 * Shared by the C kernels and the CUDA kernels: plain structs of fixed-size
 * fields, no functions.  Every struct has the exact size ggml gives it (checked
 * below), so a weight row in a GGUF file is simply an array of these blocks.
 *
 * Notation (ggml's): d = scale, m = the minimum (Q4_1, Q5_1), dmin = the scale of
 * the sub-block minimums (K-quants), qs = packed quants, qh/hmask = high bits,
 * scales = packed sub-block scales (Q4_K/Q5_K: scale_min_k4; Q3_K: q3_K_scales),
 * bsums = sums of 16 activation quants.  fp16 fields are IEEE binary16 stored as
 * uint16_t.
 */
#ifndef PYGGML_GGML_BLOCKS_H
#define PYGGML_GGML_BLOCKS_H

#include <stdint.h>

typedef uint16_t ggml_half;

/* ggml type ids (enum ggml_type) of the types these kernels know. */
enum ggml_type_id {
    GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3, GGML_TYPE_Q5_0 = 6, GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8, GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10, GGML_TYPE_Q3_K = 11, GGML_TYPE_Q4_K = 12, GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14, GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16, GGML_TYPE_IQ2_XS = 17, GGML_TYPE_IQ3_XXS = 18, GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20, GGML_TYPE_IQ3_S = 21, GGML_TYPE_IQ2_S = 22, GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_IQ1_M = 29, GGML_TYPE_BF16 = 30, GGML_TYPE_TQ1_0 = 34, GGML_TYPE_TQ2_0 = 35,
    GGML_TYPE_MXFP4 = 39, GGML_TYPE_NVFP4 = 40, GGML_TYPE_Q1_0 = 41, GGML_TYPE_Q2_0 = 42
};

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK4_NL 32
#define QK_K 256
#define K_SCALE_SIZE 12

/* ---------------------------------------------------------------- 32-element blocks
 * Nibble order in every 4-bit type: qs[j] low nibble = element j, high nibble
 * = element j+16 (the two halves of the block are not interleaved).        */

typedef struct {            /* |d fp16|16 x (lo: e, hi: e+16)|                        18 B */
    ggml_half d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;               /* y = d * (q - 8) */

typedef struct {            /* |d fp16|m fp16|16 x nibble pairs|                       20 B */
    ggml_half d;
    ggml_half m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;               /* y = d * q + m */

typedef struct {            /* |d fp16|qh u32: bit j = 5th bit of e j|16 x nibbles|   22 B */
    ggml_half d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;               /* y = d * (q - 16) */

typedef struct {            /* |d fp16|m fp16|qh u32|16 x nibbles|                    24 B */
    ggml_half d;
    ggml_half m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;               /* y = d * q + m */

typedef struct {            /* |d fp16|32 x int8|                                      34 B */
    ggml_half d;
    int8_t qs[QK8_0];
} block_q8_0;               /* y = d * q ; also the activation block for Q4_0/Q5_0/Q8_0/IQ4_NL */

typedef struct {            /* |d fp16|s fp16 = d * sum(qs)|32 x int8|                 36 B */
    ggml_half d;
    ggml_half s;
    int8_t qs[QK8_1];
} block_q8_1;               /* activation block for Q4_1/Q5_1 */

typedef struct {            /* |d fp16|16 x nibble pairs, index into kvalues_iq4nl|    18 B */
    ggml_half d;
    uint8_t qs[QK4_NL / 2];
} block_iq4_nl;             /* y = d * kvalues_iq4nl[q] */

/* ---------------------------------------------------------------- 256-element super-blocks */

typedef struct {            /* |16 x (lo: scale, hi: min)|64 x 4 crumbs|d fp16|dmin fp16|  84 B */
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    ggml_half d;
    ggml_half dmin;
} block_q2_K;               /* y = d * (sc & 15) * q - dmin * (sc >> 4), q in 0..3 */

typedef struct {            /* |hmask 32|qs 64 (2 bits)|12 B of 6-bit scales|d fp16| 110 B */
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    ggml_half d;
} block_q3_K;               /* y = d * (S - 32) * (L - 4), L = 2 low bits | hmask bit << 2 */

typedef struct {            /* |d fp16|dmin fp16|12 B of 6-bit scales and mins|128 x nibbles| 144 B */
    ggml_half d;
    ggml_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;               /* y = d * sc_j * q - dmin * m_j, j = sub-block of 32 */

typedef struct {            /* |d|dmin|12 B scales|qh 32|qs 128|                       176 B */
    ggml_half d;
    ggml_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;               /* as Q4_K with a 5th bit from qh, q in 0..31 */

typedef struct {            /* |ql 128 (low 4 bits)|qh 64 (high 2 bits)|16 x int8 scales|d fp16| 210 B */
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    ggml_half d;
} block_q6_K;               /* y = d * scales[e/16] * (q - 32), q in 0..63 */

/* ---------------------------------------------------------------- codebook i-quants, 256 elements
 * A group of 8 elements is the index of a point of a grid (ggml_iq_grids.h: what the
 * points are) with its signs or shift; per 16 or 32 elements a small scale ls. */

typedef struct {            /* |d fp16|8 x (4 grid indices, u32: 4 x 7 sign bits | ls << 28)| 66 B */
    ggml_half d;
    uint16_t qs[QK_K / 8];
} block_iq2_xxs;            /* y = d * (0.5 + ls) / 4 * iq2xxs_grid[g][j] * sign */

typedef struct {            /* |d fp16|32 x u16: 9-bit index | 7 sign bits << 9|8 x 2 ls|  74 B */
    ggml_half d;
    uint16_t qs[QK_K / 8];
    uint8_t scales[QK_K / 32];
} block_iq2_xs;             /* as IQ2_XXS, iq2xs_grid */

typedef struct {            /* |d fp16|32 B low index bits|32 B signs|qh 8 B|8 x 2 ls|  82 B */
    ggml_half d;
    uint8_t qs[QK_K / 4];
    uint8_t qh[QK_K / 32];
    uint8_t scales[QK_K / 32];
} block_iq2_s;              /* as IQ2_XS, iq2s_grid (10-bit index), all 8 sign bits stored */

typedef struct {            /* |d fp16|32 B low index bits|8 x u16: 4 x 3 high index bits, |  50 B
                             *  ls << 12, delta sign << 15| */
    ggml_half d;
    uint8_t qs[QK_K / 8];
    uint16_t qh[QK_K / 32];
} block_iq1_s;              /* y = d * (2 ls + 1) * (iq1s_grid[g][j] + delta), delta = +-1/8 */

typedef struct {            /* |32 B low index bits|16 B: a nibble per group: 3 high   |  56 B
                             *  index bits, delta sign << 3|4 x u16: 4 x 3-bit ls, the
                             *  fp16 d in their top nibbles| */
    uint8_t qs[QK_K / 8];
    uint8_t qh[QK_K / 16];
    uint8_t scales[QK_K / 32];
} block_iq1_m;              /* as IQ1_S, a delta per 8 elements and a scale per 16 */

/* ---------------------------------------------------------------- IQ3_XXS, IQ3_S, IQ4_XS, 256 elements
 * IQ3: a group of 4 elements is the index of a point of a grid (ggml_iq3_grids.h), with
 * its signs; per 32 elements a 4-bit ls.  IQ4_XS: IQ4_NL's table, a 6-bit ls per 32. */

typedef struct {            /* |d fp16|qs 64 grid indices|8 x u32: 4 x 7 sign bits | ls << 28|  98 B */
    ggml_half d;
    uint8_t qs[3 * QK_K / 8];
} block_iq3_xxs;            /* y = d * (0.5 + ls) / 2 * iq3xxs_grid[g][j] * sign */

typedef struct {            /* |d fp16|qs 64 low index bits|qh 8: 9th bits|signs 32|scales 4|  110 B */
    ggml_half d;
    uint8_t qs[QK_K / 4];
    uint8_t qh[QK_K / 32];
    uint8_t signs[QK_K / 8];
    uint8_t scales[QK_K / 64];
} block_iq3_s;              /* y = d * (1 + 2 ls) * iq3s_grid[g][j] * sign */

typedef struct {            /* |d fp16|scales_h u16: 2 high bits of ls|scales_l 4|qs 128|  136 B */
    ggml_half d;
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
} block_iq4_xs;             /* y = d * (ls - 32) * kvalues_iq4nl[q] */

/* ---------------------------------------------------------------- ternary, 4-bit floats, 1-2 bits
 * (pyggml/quants/ternary.py, fp4.py, lowbit.py draw them bit by bit) */

typedef struct {            /* |qs 48: 5 trits per byte, base 3|qh 4: 4 trits|d fp16|  54 B */
    uint8_t qs[(QK_K - 4 * QK_K / 64) / 5];
    uint8_t qh[QK_K / 64];
    ggml_half d;
} block_tq1_0;              /* y = d * (t - 1), t in 0..2 */

typedef struct {            /* |qs 64: 2 bits per trit, Q2_K's order|d fp16|  66 B */
    uint8_t qs[QK_K / 4];
    ggml_half d;
} block_tq2_0;

#define QK_MXFP4 32
typedef struct {            /* |e E8M0|qs 16: element j low nibble, j + 16 high|  17 B */
    uint8_t e;
    uint8_t qs[QK_MXFP4 / 2];
} block_mxfp4;              /* y = kvalues_mxfp4[q] * 2^(e - 128) */

#define QK_NVFP4 64
typedef struct {            /* |d 4 UE4M3, one per 16|qs 32: 8 bytes per 16 elements|  36 B */
    uint8_t d[QK_NVFP4 / 16];
    uint8_t qs[QK_NVFP4 / 2];
} block_nvfp4;              /* y = kvalues_mxfp4[q] * ue4m3(d[s]) / 2 */

#define QK1_0 128
typedef struct {            /* |d fp16|qs 16: bit j % 8 of byte j / 8|  18 B */
    ggml_half d;
    uint8_t qs[QK1_0 / 8];
} block_q1_0;               /* y = bit ? d : -d */

#define QK2_0 64
typedef struct {            /* |d fp16|qs 16: bits 2 (j % 4) of byte j / 4|  18 B */
    ggml_half d;
    uint8_t qs[QK2_0 / 4];
} block_q2_0;               /* y = d * (q - 1) */

typedef struct {            /* |d f32|256 x int8|16 x int16 sums of 16 qs|             292 B */
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;               /* activation block for every K-quant; d may be negative */

/* Sizes must be ggml's; a negative array size stops the build otherwise (C99 has no static_assert). */
#define PYGGML_CHECK_SIZE(type, bytes) typedef char pyggml_size_check_##type[(sizeof(type) == (bytes)) ? 1 : -1]
PYGGML_CHECK_SIZE(block_q4_0, 18);
PYGGML_CHECK_SIZE(block_q4_1, 20);
PYGGML_CHECK_SIZE(block_q5_0, 22);
PYGGML_CHECK_SIZE(block_q5_1, 24);
PYGGML_CHECK_SIZE(block_q8_0, 34);
PYGGML_CHECK_SIZE(block_q8_1, 36);
PYGGML_CHECK_SIZE(block_iq4_nl, 18);
PYGGML_CHECK_SIZE(block_q2_K, 84);
PYGGML_CHECK_SIZE(block_q3_K, 110);
PYGGML_CHECK_SIZE(block_q4_K, 144);
PYGGML_CHECK_SIZE(block_q5_K, 176);
PYGGML_CHECK_SIZE(block_q6_K, 210);
PYGGML_CHECK_SIZE(block_iq2_xxs, 66);
PYGGML_CHECK_SIZE(block_iq2_xs, 74);
PYGGML_CHECK_SIZE(block_iq2_s, 82);
PYGGML_CHECK_SIZE(block_iq1_s, 50);
PYGGML_CHECK_SIZE(block_iq1_m, 56);
PYGGML_CHECK_SIZE(block_iq3_xxs, 98);
PYGGML_CHECK_SIZE(block_iq3_s, 110);
PYGGML_CHECK_SIZE(block_iq4_xs, 136);
PYGGML_CHECK_SIZE(block_tq1_0, 54);
PYGGML_CHECK_SIZE(block_tq2_0, 66);
PYGGML_CHECK_SIZE(block_mxfp4, 17);
PYGGML_CHECK_SIZE(block_nvfp4, 36);
PYGGML_CHECK_SIZE(block_q1_0, 18);
PYGGML_CHECK_SIZE(block_q2_0, 18);
PYGGML_CHECK_SIZE(block_q8_K, 292);

#endif /* PYGGML_GGML_BLOCKS_H */

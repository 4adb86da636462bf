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
    GGML_TYPE_IQ4_NL = 20, GGML_TYPE_BF16 = 30
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
PYGGML_CHECK_SIZE(block_q8_K, 292);

#endif /* PYGGML_GGML_BLOCKS_H */

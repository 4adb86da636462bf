/* ggml_order.c -- which of llama.cpp's CPU kernels multiplies a quantized matrix, and
 * in which order each sums its floats: what libpyggml_cpu reproduces bit for bit.
 *
 * Why it matters: every product quantizes its input to 8 bits, so a 1-ulp difference
 * in one output can flip a rounding in the next product and grow.  The integer dot
 * products inside a block are exact in any order; only WHICH integer sums meet the
 * float scales, and in which float order, decides the bits.
 *
 * The machine: llama-cpp-python 0.3.36 built for an x86 CPU with AVX-512 (AVX2,
 * AVX512F/BW/DQ/VL/VNNI, AVX-VNNI; llama.cpp's system info there: AVX2 AVX512
 * AVX512_VNNI AVX_VNNI LLAMAFILE REPACK OPENMP), default settings.  The orders below
 * are that build's, whatever CPU runs pyggml: the AVX2 kernels and the scalar
 * reference (quants_ref.c) compute the same bits.
 *
 * Which kernel, for W (N rows of K) times T activation rows (ggml-cpu.c,
 * ggml_compute_forward_mul_mat, and the buffer a weight was loaded into):
 *
 *   1. CPU_REPACK (repack.cpp): at load, llama.cpp interleaves the rows of Q4_0,
 *      IQ4_NL, Q4_K (AVX2) and Q2_K (AVX-512) matrices 8 at a time, when N % 8 == 0;
 *      not token_embd (get_rows reads it), so not a tied output head.  A product of
 *      such a matrix takes the first T - T % 4 activation rows 4 at a time (gemm) and
 *      the rest one by one (gemv), each output a float chain of its own:
 *
 *          acc = 0;  acc_min = 0
 *          for each step s (gemv: a block of 32 or 256; gemm: a block of 32, or 64
 *                           elements of Q4_K, or 128 of Q2_K):
 *              acc     = fma((float) isum_s, d_w * d_y, acc)
 *              acc_min = fma((float) imin_s, dmin_w * d_y, acc_min)   (Q4_K, Q2_K)
 *          out = acc - acc_min
 *
 *      isum_s: the step's exact integer dot, sub-block scales applied; imin_s:
 *      sum_j m_j * (sum of the activation quants of sub-block j) over its sub-blocks.
 *      The gemm quantizes its activations 4 rows at a time: ggml_quantize_mat_q8_0_4x8
 *      equals quantize_row_q8_0; ggml_quantize_mat_q8_K_4x8 differs from
 *      quantize_row_q8_K_ref only in the sign it gives d and q when +max and -max both
 *      occur in a block, which cancels exactly in every product.
 *
 *   2. Tiled (tiled/tiled.cpp): K-quants not repacked (Q2_K..Q6_K) and the i-quants of
 *      256 (IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S IQ1_M IQ4_XS) with T >= 8 take the
 *      tiled matmul; its AVX-512 VNNI microtile forms, per output and block,
 *
 *          s1 = sum_s sc_s * (raw_s - bias * bsum_s)     exact int, bias: Q3_K 4, Q6_K 32,
 *                                                         the i-quants 128
 *          s2 = sum_s m_s * bsum_s                        exact int (Q2_K, Q4_K, Q5_K)
 *          r  = (float) s1 * d_w;  r = fma(-dmin_w, (float) s2, r)
 *          acc = fma(r, d_y, acc)                         blocks in order, acc from 0
 *
 *      The i-quants' codes are their values + 128: IQ2_* the signed grid bytes with
 *      sc_s = 2 ls + 1 and d_w = d / 8; IQ1_* 8 q + s (q the grid's -1, 0, +1, s the
 *      delta's sign) with d_w = d / 8, so s1 = 8 (grid sum) + (delta sum).
 *
 *   3. tinyBLAS (llamafile/sgemm.cpp, tinyBLAS_Q0_AVX): Q8_0, Q4_0, Q5_0 and IQ4_NL
 *      not repacked, T >= 2.  Per output 8 float lanes, lane l holding the exact dot
 *      of bytes 4l..4l+3 of each block (one _mm256_dpbusd_epi32):
 *
 *          lanes = fma(d_w * d_y, (float) dot_lanes_b, lanes)   for each block b
 *          out = hsum(lanes) = ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7))
 *
 *   4. vec_dot (arch/x86/quants.c, ggml_vec_dot_<type>_<act>, AVX2 code): everything
 *      else -- one token of a matrix not repacked, K-quants with T < 8, Q4_1 and Q5_1
 *      always.  The same 8 integer lanes per block (lane l: elements e of the block
 *      with (e % 32) / 4 == l, the sub-block scales applied by _mm256_madd_epi16),
 *      each type with its own float tail:
 *
 *          Q4_0 Q5_0 Q8_0  lanes = fma(d_w d_y, lanes_b, lanes); hsum      (as tinyBLAS)
 *          Q4_1 Q5_1       lanes = fma(lanes_b, d_w d_y, lanes); s += m_w s_y; hsum + s
 *          IQ4_NL          two lane sets, even and odd blocks; hsum of their sum;
 *                          an odd last block + d (float) its sum, a scalar tail that
 *                          GCC fuses except on AMD Zen (add_scalar_tail)
 *          Q3_K Q6_K       lanes = fma(d_y d_w, lanes_b, lanes); hsum   (the bias of
 *                          Q3_K per element, Q6_K's 32 through 8 lanes of bsums)
 *          Q2_K            lanes = fma(-d_y dmin_w, min_lanes_b, lanes) first, then
 *                          lanes = fma(d_y d_w, lanes_b, lanes); hsum
 *          Q4_K            lanes as Q3_K; 4 min lanes (m_2p bsum32_2p + m_2p+1
 *                          bsum32_2p+1) = fma(-d_y dmin_w, ., .); hsum(lanes) +
 *                          ((m0 + m2) + (m1 + m3))
 *          Q5_K            lanes as Q3_K; s = fma(-d_y dmin_w, (float) sum of the 4
 *                          min lanes, s); hsum(lanes) + s
 *          IQ2_XXS IQ2_XS  lanes of (2 ls + 1) q x = fma(d_w d_y, lanes_b, lanes);
 *          IQ2_S           0.125 hsum(lanes)
 *          IQ1_S           grid lanes as IQ2; the delta term sum (2 ls + 1) s x (from
 *                          bsums) in a scalar s = s + d_w d_y sum, fused (also on AMD
 *                          Zen: cpu_internal.h); hsum(lanes) + 0.125 s
 *          IQ1_M           grid lanes as IQ2; the delta terms in 8 lanes of their own,
 *                          fma(d_w d_y, ., .); hsum(lanes) + 0.125 hsum(delta lanes)
 *
 * None of these depends on how ggml splits the work between threads: each output is
 * computed by one kernel call from its own weight row and activation row.  Checked
 * against ggml_mul_mat on llama-cpp-python's CPU backend (tests/ggml_oracle.py).
 *
 * Where pyggml writes each order: the reference (quants_ref.c) has vec_dot_<type>_<act>_ref
 * per type and dot_repack (1), dot_tiled (2), dot_8_lanes (3) for all types; the AVX2
 * kernels (quants_avx2.c) chain_with_mins and chain_32 (1), chain_tiled (2), vec_dot_32
 * and vec_dot_k (3, 4), and for prefill panels_avx2.c's panel_product (1, 2).
 *
 * F32, F16 and BF16 weights are not covered: pyggml multiplies them with float32
 * activations (ggml converts the activations to the weight type first).
 */
#include "cpu_internal.h"

/* 2. the types tiled.cpp takes (ggml_tiled_supported) */
static int tiled_type(int type) {
    switch (type) {
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
    case GGML_TYPE_IQ2_XXS: case GGML_TYPE_IQ2_XS: case GGML_TYPE_IQ2_S: case GGML_TYPE_IQ3_XXS:
    case GGML_TYPE_IQ3_S: case GGML_TYPE_IQ1_S: case GGML_TYPE_IQ1_M: case GGML_TYPE_IQ4_XS: return 1;
    default: return 0;
    }
}

/* 1. in a CPU_REPACK buffer: interleaved 8 rows at a time at load */
static int repacked(int type, int64_t n_rows) {
    const int repack_type = type == GGML_TYPE_Q4_0 || type == GGML_TYPE_IQ4_NL || type == GGML_TYPE_Q4_K
                         || type == GGML_TYPE_Q2_K || type == GGML_TYPE_MXFP4;
    return repack_type && n_rows % 8 == 0;
}

/* 3. the types llamafile's tinyBLAS_Q0_AVX multiplies */
static int tinyblas_type(int type) {
    return type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q8_0 || type == GGML_TYPE_IQ4_NL;
}

product_order ggml_product_order(int type, int64_t n_rows, int64_t n_act, int64_t t) {
    if (repacked(type, n_rows)) return t < n_act - n_act % 4 ? ORDER_GEMM : ORDER_GEMV;     /* 1. */
    if (tiled_type(type) && n_act >= 8) return ORDER_TILED;                                /* 2. */
    if (tinyblas_type(type) && n_act >= 2) return ORDER_TINYBLAS;                          /* 3. */
    return ORDER_VEC_DOT;                                                                  /* 4. */
}

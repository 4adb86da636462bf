"""Fast layer of the K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.

Reference and layouts: ``k.py``.  Per type, in the same order:

    dequant_<type>(W, rows, out)   out[i] = row rows[i] of W decoded, float for float
                                   identical to the reference (same float32 operations)
    dot_<type>(w, x, xd, bs)       weight row w (bytes) times one Q8_K activation row
                                   (x: qs widened to int16, xd: d, bs: bsums), float32

``matmul_q8_K`` runs out[t, n] = W[n] . X[t] from activations in ggml's block_q8_K
layout.  Per super-block, as ggml_vec_dot_<type>_q8_K:

    isum  = sum_j sc_j * sum_{i in j} q_i * q8_i       exact, int32
    summs = sum_j m_j * bsums_j                        (affine types only)
    sumf += (d_w * d_x) * isum - (dmin_w * d_x) * summs

with float32 accumulation over super-blocks in order (ggml's C fallback keeps eight float
lanes instead, and its SIMD kernels use FMA, so llama.cpp agrees to rounding only).  The
bias of the symmetric types is taken out of the inner loop with the bsums:
sum_i (L_i - 32) q8_i = sum_i L_i q8_i - 32 * bsum (Q6_K; Q3_K likewise with 4).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..format.constants import GGMLType
from .jit import ROWS_PER_TASK, f16

Q2_K, Q3_K, Q4_K, Q5_K, Q6_K = (int(GGMLType.Q2_K), int(GGMLType.Q3_K), int(GGMLType.Q4_K),
                                int(GGMLType.Q5_K), int(GGMLType.Q6_K))


@njit(inline="always")
def scale_min_k4(w, s, j):
    """(sc, m) of sub-block j from the 12 scale bytes at w[s:s+12] (get_scale_min_k4)."""
    if j < 4:
        return np.int32(w[s + j] & 63), np.int32(w[s + j + 4] & 63)
    return (np.int32((w[s + j + 4] & 0xF) | ((w[s + j - 4] >> 6) << 4)),
            np.int32((w[s + j + 4] >> 4) | ((w[s + j] >> 6) << 4)))


@njit(inline="always")
def scale_q3_K(w, s, g):
    """Signed 6-bit scale S_g (-32..31) of sub-block g from the 12 bytes at w[s:s+12]."""
    low = np.int32(w[s + g] & 0xF) if g < 8 else np.int32(w[s + g - 8] >> 4)
    high = np.int32(w[s + 8 + g % 4] >> (2 * (g // 4))) & 3
    return np.int32((low | (high << 4)) - 32)


@njit(inline="always")
def bias8(bs, g, a0, b0, a1, b1, a2, b2, a3, b3):
    """sum of scale * bsum over the 8 sub-blocks g..g+7 of a 128-weight half, in the order
    (k, first/second 16) that the scales a_k, b_k are named in the dot products."""
    return np.int32(np.int32(a0) * bs[g] + np.int32(b0) * bs[g + 1] + np.int32(a1) * bs[g + 2]
                    + np.int32(b1) * bs[g + 3] + np.int32(a2) * bs[g + 4] + np.int32(b2) * bs[g + 5]
                    + np.int32(a3) * bs[g + 6] + np.int32(b3) * bs[g + 7])


# ---------------------------------------------------------------------- dequantization

@njit(parallel=True, cache=True)
def dequant_q2_K(W, rows, out):
    for i in prange(rows.size):
        w = W[rows[i]]
        for b in range(out.shape[1] // 256):
            o = 84 * b
            d = f16(w, o + 80)
            dmin = f16(w, o + 82)
            for h in range(2):
                for k in range(4):
                    g = o + 8 * h + 2 * k              # scale bytes of weights l < 16, l >= 16
                    dla, mla = d * np.float32(w[g] & 15), dmin * np.float32(w[g] >> 4)
                    dlb, mlb = d * np.float32(w[g + 1] & 15), dmin * np.float32(w[g + 1] >> 4)
                    for l in range(32):
                        q = np.float32(np.int32((w[o + 16 + 32 * h + l] >> (2 * k)) & 3))
                        out[i, 256 * b + 128 * h + 32 * k + l] = \
                            (dla * q - mla) if l < 16 else (dlb * q - mlb)


@njit(parallel=True, cache=True)
def dequant_q3_K(W, rows, out):
    for i in prange(rows.size):
        w = W[rows[i]]
        for b in range(out.shape[1] // 256):
            o = 110 * b
            d = f16(w, o + 108)
            for h in range(2):
                for k in range(4):
                    dla = d * np.float32(scale_q3_K(w, o + 96, 8 * h + 2 * k))
                    dlb = d * np.float32(scale_q3_K(w, o + 96, 8 * h + 2 * k + 1))
                    for l in range(32):
                        low = np.int32((w[o + 32 + 32 * h + l] >> (2 * k)) & 3)
                        high = np.int32((w[o + l] >> (4 * h + k)) & 1)
                        q = np.float32(low - 4 + 4 * high)
                        out[i, 256 * b + 128 * h + 32 * k + l] = (dla if l < 16 else dlb) * q


@njit(parallel=True, cache=True)
def dequant_q4_K(W, rows, out):
    for i in prange(rows.size):
        w = W[rows[i]]
        for b in range(out.shape[1] // 256):
            o = 144 * b
            d = f16(w, o)
            dmin = f16(w, o + 2)
            for c in range(4):
                sc0, m0 = scale_min_k4(w, o + 4, 2 * c)
                sc1, m1 = scale_min_k4(w, o + 4, 2 * c + 1)
                d0, min0 = d * np.float32(sc0), dmin * np.float32(m0)
                d1, min1 = d * np.float32(sc1), dmin * np.float32(m1)
                for l in range(32):
                    a = w[o + 16 + 32 * c + l]
                    out[i, 256 * b + 64 * c + l] = d0 * np.float32(a & 15) - min0
                    out[i, 256 * b + 64 * c + 32 + l] = d1 * np.float32(a >> 4) - min1


@njit(parallel=True, cache=True)
def dequant_q5_K(W, rows, out):
    for i in prange(rows.size):
        w = W[rows[i]]
        for b in range(out.shape[1] // 256):
            o = 176 * b
            d = f16(w, o)
            dmin = f16(w, o + 2)
            for c in range(4):
                sc0, m0 = scale_min_k4(w, o + 4, 2 * c)
                sc1, m1 = scale_min_k4(w, o + 4, 2 * c + 1)
                d0, min0 = d * np.float32(sc0), dmin * np.float32(m0)
                d1, min1 = d * np.float32(sc1), dmin * np.float32(m1)
                for l in range(32):
                    a = w[o + 48 + 32 * c + l]
                    h = w[o + 16 + l]
                    q0 = (a & 15) | (((h >> (2 * c)) & 1) << 4)
                    q1 = (a >> 4) | (((h >> (2 * c + 1)) & 1) << 4)
                    out[i, 256 * b + 64 * c + l] = d0 * np.float32(q0) - min0
                    out[i, 256 * b + 64 * c + 32 + l] = d1 * np.float32(q1) - min1


@njit(parallel=True, cache=True)
def dequant_q6_K(W, rows, out):
    for i in prange(rows.size):
        w = W[rows[i]]
        for b in range(out.shape[1] // 256):
            o = 210 * b
            d = f16(w, o + 208)
            for h in range(2):
                for k in range(4):
                    g = o + 192 + 8 * h + 2 * k
                    dla, dlb = d * np.float32(np.int8(w[g])), d * np.float32(np.int8(w[g + 1]))
                    for l in range(32):
                        low = (w[o + 64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15
                        high = (w[o + 128 + 32 * h + l] >> (2 * k)) & 3
                        q = np.float32(np.int32(low | (high << 4)) - np.int32(32))
                        out[i, 256 * b + 128 * h + 32 * k + l] = (dla if l < 16 else dlb) * q


# ---------------------------------------------------------------------- row dot products
# x: one activation row, qs widened to int16; xd: its d per super-block; bs: its bsums.

@njit(inline="always")
def dot_q2_K(w, x, xd, bs):
    sumf = np.float32(0)
    for b in range(xd.size):
        o = 84 * b
        summs = np.int32(0)
        for g in range(16):
            summs = np.int32(summs + np.int32(bs[16 * b + g]) * np.int32(w[o + g] >> 4))
        acc = np.int32(0)
        for h in range(2):
            # sub-block scales of this 128-weight half: sc_k_first (l < 16), sc_k_second
            s = o + 8 * h
            a0, b0 = np.int16(w[s] & 15), np.int16(w[s + 1] & 15)
            a1, b1 = np.int16(w[s + 2] & 15), np.int16(w[s + 3] & 15)
            a2, b2 = np.int16(w[s + 4] & 15), np.int16(w[s + 5] & 15)
            a3, b3 = np.int16(w[s + 6] & 15), np.int16(w[s + 7] & 15)
            xo = 256 * b + 128 * h
            for l in range(32):
                first = l < 16
                q = w[o + 16 + 32 * h + l]
                acc = np.int32(acc + np.int32(np.int16((q & 3) * (a0 if first else b0))) * np.int32(x[xo + l])
                               + np.int32(np.int16(((q >> 2) & 3) * (a1 if first else b1))) * np.int32(x[xo + 32 + l])
                               + np.int32(np.int16(((q >> 4) & 3) * (a2 if first else b2))) * np.int32(x[xo + 64 + l])
                               + np.int32(np.int16((q >> 6) * (a3 if first else b3))) * np.int32(x[xo + 96 + l]))
        sumf += (f16(w, o + 80) * xd[b]) * np.float32(acc) - (f16(w, o + 82) * xd[b]) * np.float32(summs)
    return sumf


@njit(inline="always")
def q3_term(low, high, scale, xv):
    """(low + 4 * high) * scale * xv as two 16-bit products.  One product of the 3-bit
    value would do; two keep the loop body large enough that LLVM vectorizes the loop
    in 32-bit lanes instead of unrolling it into 64-bit ones (1.2-1.5x faster)."""
    v = np.int32(xv)
    return np.int32(np.int32(np.int16(low * scale)) * v + np.int32(np.int16(high * 4 * scale)) * v)


@njit(inline="always")
def dot_q3_K(w, x, xd, bs):
    sumf = np.float32(0)
    for b in range(xd.size):
        o = 110 * b
        s = o + 96
        # scales S_g, g = 8h + 2k + (l >= 16): a_hk for weights l < 16, b_hk for l >= 16
        a00, b00 = np.int16(scale_q3_K(w, s, 0)), np.int16(scale_q3_K(w, s, 1))
        a01, b01 = np.int16(scale_q3_K(w, s, 2)), np.int16(scale_q3_K(w, s, 3))
        a02, b02 = np.int16(scale_q3_K(w, s, 4)), np.int16(scale_q3_K(w, s, 5))
        a03, b03 = np.int16(scale_q3_K(w, s, 6)), np.int16(scale_q3_K(w, s, 7))
        a10, b10 = np.int16(scale_q3_K(w, s, 8)), np.int16(scale_q3_K(w, s, 9))
        a11, b11 = np.int16(scale_q3_K(w, s, 10)), np.int16(scale_q3_K(w, s, 11))
        a12, b12 = np.int16(scale_q3_K(w, s, 12)), np.int16(scale_q3_K(w, s, 13))
        a13, b13 = np.int16(scale_q3_K(w, s, 14)), np.int16(scale_q3_K(w, s, 15))
        # q = L - 4 with L = low2 | high << 2 in 0..7: the -4 goes through the bsums
        acc = np.int32(-4 * (bias8(bs, 16 * b, a00, b00, a01, b01, a02, b02, a03, b03)
                             + bias8(bs, 16 * b + 8, a10, b10, a11, b11, a12, b12, a13, b13)))
        xo = 256 * b
        for l in range(32):                    # weight l of each of the 8 planes (h, k)
            first = l < 16
            q0 = w[o + 32 + l]                 # low 2 bits, h = 0: plane k at bits 2k
            q1 = w[o + 64 + l]                 # low 2 bits, h = 1
            m = w[o + l]                       # high bits: plane (h, k) at bit 4h + k
            acc = np.int32(
                acc
                + q3_term(q0 & 3, m & 1, a00 if first else b00, x[xo + l])
                + q3_term((q0 >> 2) & 3, (m >> 1) & 1, a01 if first else b01, x[xo + 32 + l])
                + q3_term((q0 >> 4) & 3, (m >> 2) & 1, a02 if first else b02, x[xo + 64 + l])
                + q3_term(q0 >> 6, (m >> 3) & 1, a03 if first else b03, x[xo + 96 + l])
                + q3_term(q1 & 3, (m >> 4) & 1, a10 if first else b10, x[xo + 128 + l])
                + q3_term((q1 >> 2) & 3, (m >> 5) & 1, a11 if first else b11, x[xo + 160 + l])
                + q3_term((q1 >> 4) & 3, (m >> 6) & 1, a12 if first else b12, x[xo + 192 + l])
                + q3_term(q1 >> 6, m >> 7, a13 if first else b13, x[xo + 224 + l]))
        sumf += (f16(w, o + 108) * xd[b]) * np.float32(acc)
    return sumf


@njit(inline="always")
def dot_q4_K(w, x, xd, bs):
    sumf = np.float32(0)
    for b in range(xd.size):
        o = 144 * b
        isum = np.int32(0)
        summs = np.int32(0)
        for c in range(4):
            s0 = np.int32(0)
            s1 = np.int32(0)
            for l in range(32):
                a = w[o + 16 + 32 * c + l]
                s0 = np.int32(s0 + np.int32(np.int16(a & 15) * x[256 * b + 64 * c + l]))
                s1 = np.int32(s1 + np.int32(np.int16(a >> 4) * x[256 * b + 64 * c + 32 + l]))
            sc0, m0 = scale_min_k4(w, o + 4, 2 * c)
            sc1, m1 = scale_min_k4(w, o + 4, 2 * c + 1)
            isum = np.int32(isum + sc0 * s0 + sc1 * s1)
            summs = np.int32(summs + m0 * np.int32(bs[16 * b + 4 * c] + bs[16 * b + 4 * c + 1])
                             + m1 * np.int32(bs[16 * b + 4 * c + 2] + bs[16 * b + 4 * c + 3]))
        sumf += (f16(w, o) * xd[b]) * np.float32(isum) - (f16(w, o + 2) * xd[b]) * np.float32(summs)
    return sumf


@njit(inline="always")
def dot_q5_K(w, x, xd, bs):
    sumf = np.float32(0)
    for b in range(xd.size):
        o = 176 * b
        isum = np.int32(0)
        summs = np.int32(0)
        for c in range(4):
            s0 = np.int32(0)
            s1 = np.int32(0)
            for l in range(32):
                a = w[o + 48 + 32 * c + l]
                h = w[o + 16 + l]
                q0 = (a & 15) | (((h >> (2 * c)) & 1) << 4)
                q1 = (a >> 4) | (((h >> (2 * c + 1)) & 1) << 4)
                s0 = np.int32(s0 + np.int32(np.int16(q0) * x[256 * b + 64 * c + l]))
                s1 = np.int32(s1 + np.int32(np.int16(q1) * x[256 * b + 64 * c + 32 + l]))
            sc0, m0 = scale_min_k4(w, o + 4, 2 * c)
            sc1, m1 = scale_min_k4(w, o + 4, 2 * c + 1)
            isum = np.int32(isum + sc0 * s0 + sc1 * s1)
            summs = np.int32(summs + m0 * np.int32(bs[16 * b + 4 * c] + bs[16 * b + 4 * c + 1])
                             + m1 * np.int32(bs[16 * b + 4 * c + 2] + bs[16 * b + 4 * c + 3]))
        sumf += (f16(w, o) * xd[b]) * np.float32(isum) - (f16(w, o + 2) * xd[b]) * np.float32(summs)
    return sumf


@njit(inline="always")
def dot_q6_K(w, x, xd, bs):
    sumf = np.float32(0)
    for b in range(xd.size):
        o = 210 * b
        s = o + 192
        # int8 scales of sub-block g = 8h + 2k + (l >= 16): a_hk for l < 16, b_hk for l >= 16
        a00, b00 = np.int16(np.int8(w[s])), np.int16(np.int8(w[s + 1]))
        a01, b01 = np.int16(np.int8(w[s + 2])), np.int16(np.int8(w[s + 3]))
        a02, b02 = np.int16(np.int8(w[s + 4])), np.int16(np.int8(w[s + 5]))
        a03, b03 = np.int16(np.int8(w[s + 6])), np.int16(np.int8(w[s + 7]))
        a10, b10 = np.int16(np.int8(w[s + 8])), np.int16(np.int8(w[s + 9]))
        a11, b11 = np.int16(np.int8(w[s + 10])), np.int16(np.int8(w[s + 11]))
        a12, b12 = np.int16(np.int8(w[s + 12])), np.int16(np.int8(w[s + 13]))
        a13, b13 = np.int16(np.int8(w[s + 14])), np.int16(np.int8(w[s + 15]))
        # q = L - 32 with L = low4 | high2 << 4 in 0..63: the -32 goes through the bsums
        acc = np.int32(-32 * (bias8(bs, 16 * b, a00, b00, a01, b01, a02, b02, a03, b03)
                              + bias8(bs, 16 * b + 8, a10, b10, a11, b11, a12, b12, a13, b13)))
        xo = 256 * b
        for l in range(32):                    # weight l of each of the 8 planes (h, k)
            first = l < 16
            l0 = w[o + l]                      # h = 0: k = 0 (low nibble), k = 2 (high)
            l1 = w[o + 32 + l]                 # h = 0: k = 1, k = 3
            h0 = w[o + 128 + l]                # h = 0: high 2 bits of k at bits 2k
            l2 = w[o + 64 + l]                 # h = 1, likewise
            l3 = w[o + 96 + l]
            h1 = w[o + 160 + l]
            acc = np.int32(
                acc
                + np.int32(np.int16(((l0 & 15) | ((h0 & 3) << 4)) * (a00 if first else b00))) * np.int32(x[xo + l])
                + np.int32(np.int16(((l1 & 15) | ((h0 & 12) << 2)) * (a01 if first else b01))) * np.int32(x[xo + 32 + l])
                + np.int32(np.int16(((l0 >> 4) | (h0 & 48)) * (a02 if first else b02))) * np.int32(x[xo + 64 + l])
                + np.int32(np.int16(((l1 >> 4) | ((h0 >> 2) & 48)) * (a03 if first else b03))) * np.int32(x[xo + 96 + l])
                + np.int32(np.int16(((l2 & 15) | ((h1 & 3) << 4)) * (a10 if first else b10))) * np.int32(x[xo + 128 + l])
                + np.int32(np.int16(((l3 & 15) | ((h1 & 12) << 2)) * (a11 if first else b11))) * np.int32(x[xo + 160 + l])
                + np.int32(np.int16(((l2 >> 4) | (h1 & 48)) * (a12 if first else b12))) * np.int32(x[xo + 192 + l])
                + np.int32(np.int16(((l3 >> 4) | ((h1 >> 2) & 48)) * (a13 if first else b13))) * np.int32(x[xo + 224 + l]))
        sumf += (f16(w, o + 208) * xd[b]) * np.float32(acc)
    return sumf


@njit(inline="always")
def dot_row(kind, w, x, xd, bs):
    if kind == Q4_K:
        return dot_q4_K(w, x, xd, bs)
    if kind == Q6_K:
        return dot_q6_K(w, x, xd, bs)
    if kind == Q3_K:
        return dot_q3_K(w, x, xd, bs)
    if kind == Q5_K:
        return dot_q5_K(w, x, xd, bs)
    return dot_q2_K(w, x, xd, bs)


@njit(parallel=True, cache=True)
def matmul_q8_K(kind, W, xq_f32, xq_i8, xq_i16, out):
    """out (T, N) = products of weight rows W (N, row_bytes) with block_q8_K rows.

    xq_f32/xq_i8/xq_i16 are views of the same activation bytes (T, n_blocks * 292); they
    are unpacked once: qs widened to int16, d, and the bsums.
    """
    N = W.shape[0]
    T = xq_i8.shape[0]
    nb = xq_i8.shape[1] // 292
    x16 = np.empty((T, nb * 256), dtype=np.int16)
    xd = np.empty((T, nb), dtype=np.float32)
    bs = np.empty((T, nb * 16), dtype=np.int32)
    for t in range(T):
        for b in range(nb):
            xd[t, b] = xq_f32[t, 73 * b]
            for j in range(256):
                x16[t, 256 * b + j] = xq_i8[t, 292 * b + 4 + j]
            for g in range(16):
                bs[t, 16 * b + g] = xq_i16[t, 146 * b + 130 + g]
    n_tasks = (N + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(n_tasks):
        for t in range(T):
            for n in range(task * ROWS_PER_TASK, min(N, (task + 1) * ROWS_PER_TASK)):
                out[t, n] = dot_row(kind, W[n], x16[t], xd[t], bs[t])

"""Fast layer of the K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.

Reference and layouts: ``k.py``.  Per type, in the same order:

    dequant_<type>(W, rows, out)   out[i] = row rows[i] of W decoded, float for float
                                   identical to the reference (same float32 operations)
    ints_<type>(w, b, x, bs, ...)  super-block b of weight row w (bytes) times one Q8_K
                                   activation row (x: qs widened to int16, bs: bsums):
                                   the exact integer products in ggml's lanes

``matmul_q8_K`` runs out[t, n] = W[n] . X[t] from activations in ggml's block_q8_K
layout, with the float32 bits of llama.cpp's CPU backend: per super-block the exact
integer products, kept in the 8 lanes of ggml's AVX2 kernels (``ints_<type>``), then
combined in the order of the kernel llama.cpp runs for that product (``dot_row``: the
vec_dot's lanes, repack.cpp's gemv/gemm chains or the tiled matmul's; the C kernels and
kernels/ggml_order.c say more).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..format.constants import GGMLType
from .jit import GEMM, GEMV, ROWS_PER_TASK, TILED, f16, fma32, hsum8, order

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


# ---------------------------------------------------------------------- block integers
# ints_<type>(w, b, x, bs, pos, mins, parts): super-block b of weight row w (bytes) times
# one Q8_K activation row (x: qs widened to int16, bs: bsums), the exact integer products:
#   pos[l]    the scaled products of position l (0..31) of the 8 slices of 32 weights,
#             summed over the slices -- folded 4 by 4 into the 8 int32 lanes ggml's AVX2
#             vec_dot holds (lanes()); accumulating by position keeps LLVM's vectorizer
#             at work, as a per-lane accumulation would not
#   parts[c]  the same products summed by 64 weights (the gemm steps of Q4_K and Q2_K)
#   mins[l]   the min term in ggml's lanes: Q2_K m_2l bsum_2l + m_2l+1 bsum_2l+1 (l < 8);
#             Q4_K, Q5_K m_2p bsum32_2p + m_2p+1 bsum32_2p+1 (p < 4; bsum32: two bsums)
# The quants' bias (Q3_K 4, Q6_K 32) leaves each lane as ggml takes it out: Q3_K per
# weight, Q6_K through the bsums (lane l: 32 (S_2l bsum_2l + S_2l+1 bsum_2l+1), in pos).

@njit(inline="always")
def ints_q2_K(w, b, x, bs, pos, mins, parts):
    o = 84 * b
    # scales of the 8 planes (h, k): a for weights l < 16, b for l >= 16
    a00, b00 = np.int16(w[o] & 15), np.int16(w[o + 1] & 15)
    a01, b01 = np.int16(w[o + 2] & 15), np.int16(w[o + 3] & 15)
    a02, b02 = np.int16(w[o + 4] & 15), np.int16(w[o + 5] & 15)
    a03, b03 = np.int16(w[o + 6] & 15), np.int16(w[o + 7] & 15)
    a10, b10 = np.int16(w[o + 8] & 15), np.int16(w[o + 9] & 15)
    a11, b11 = np.int16(w[o + 10] & 15), np.int16(w[o + 11] & 15)
    a12, b12 = np.int16(w[o + 12] & 15), np.int16(w[o + 13] & 15)
    a13, b13 = np.int16(w[o + 14] & 15), np.int16(w[o + 15] & 15)
    p0 = p1 = p2 = p3 = np.int32(0)
    xo = 256 * b
    for l in range(32):                        # weight l of each of the 8 planes
        first = l < 16
        q0 = w[o + 16 + l]
        q1 = w[o + 48 + l]
        v0 = np.int32(np.int32(np.int16((q0 & 3) * (a00 if first else b00))) * np.int32(x[xo + l])
                      + np.int32(np.int16(((q0 >> 2) & 3) * (a01 if first else b01))) * np.int32(x[xo + 32 + l]))
        v1 = np.int32(np.int32(np.int16(((q0 >> 4) & 3) * (a02 if first else b02))) * np.int32(x[xo + 64 + l])
                      + np.int32(np.int16((q0 >> 6) * (a03 if first else b03))) * np.int32(x[xo + 96 + l]))
        v2 = np.int32(np.int32(np.int16((q1 & 3) * (a10 if first else b10))) * np.int32(x[xo + 128 + l])
                      + np.int32(np.int16(((q1 >> 2) & 3) * (a11 if first else b11))) * np.int32(x[xo + 160 + l]))
        v3 = np.int32(np.int32(np.int16(((q1 >> 4) & 3) * (a12 if first else b12))) * np.int32(x[xo + 192 + l])
                      + np.int32(np.int16((q1 >> 6) * (a13 if first else b13))) * np.int32(x[xo + 224 + l]))
        pos[l] = np.int32(pos[l] + v0 + v1 + v2 + v3)
        p0, p1, p2, p3 = np.int32(p0 + v0), np.int32(p1 + v1), np.int32(p2 + v2), np.int32(p3 + v3)
    parts[0], parts[1], parts[2], parts[3] = p0, p1, p2, p3
    for l in range(8):
        mins[l] = (np.int32(w[o + 2 * l] >> 4) * np.int32(bs[16 * b + 2 * l])
                   + np.int32(w[o + 2 * l + 1] >> 4) * np.int32(bs[16 * b + 2 * l + 1]))


@njit(inline="always")
def q3_term(low, high, scale, xv):
    """(low + 4 * high - 4) * scale * xv as two 16-bit products.  One product of the
    3-bit value would do; two keep the loop body large enough that LLVM vectorizes the
    loop in 32-bit lanes instead of unrolling it into 64-bit ones (1.2-1.5x faster)."""
    v = np.int32(xv)
    return np.int32(np.int32(np.int16(low * scale)) * v + np.int32(np.int16((high * 4 - 4) * scale)) * v)


@njit(inline="always")
def ints_q3_K(w, b, x, bs, pos, mins, parts):
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
    xo = 256 * b
    for l in range(32):                        # weight l of each of the 8 planes (h, k)
        first = l < 16
        q0 = w[o + 32 + l]                     # low 2 bits, h = 0: plane k at bits 2k
        q1 = w[o + 64 + l]                     # low 2 bits, h = 1
        m = w[o + l]                           # high bits: plane (h, k) at bit 4h + k
        pos[l] = np.int32(
            pos[l]
            + q3_term(q0 & 3, m & 1, a00 if first else b00, x[xo + l])
            + q3_term((q0 >> 2) & 3, (m >> 1) & 1, a01 if first else b01, x[xo + 32 + l])
            + q3_term((q0 >> 4) & 3, (m >> 2) & 1, a02 if first else b02, x[xo + 64 + l])
            + q3_term(q0 >> 6, (m >> 3) & 1, a03 if first else b03, x[xo + 96 + l])
            + q3_term(q1 & 3, (m >> 4) & 1, a10 if first else b10, x[xo + 128 + l])
            + q3_term((q1 >> 2) & 3, (m >> 5) & 1, a11 if first else b11, x[xo + 160 + l])
            + q3_term((q1 >> 4) & 3, (m >> 6) & 1, a12 if first else b12, x[xo + 192 + l])
            + q3_term(q1 >> 6, m >> 7, a13 if first else b13, x[xo + 224 + l]))


@njit(inline="always")
def k4_mins(w, s, bs, b, mins):
    for p in range(4):
        _, m0 = scale_min_k4(w, s, 2 * p)
        _, m1 = scale_min_k4(w, s, 2 * p + 1)
        mins[p] = (m0 * np.int32(bs[16 * b + 4 * p] + bs[16 * b + 4 * p + 1])
                   + m1 * np.int32(bs[16 * b + 4 * p + 2] + bs[16 * b + 4 * p + 3]))


@njit(inline="always")
def ints_q4_K(w, b, x, bs, pos, mins, parts):
    o = 144 * b
    for c in range(4):
        sc0, _ = scale_min_k4(w, o + 4, 2 * c)
        sc1, _ = scale_min_k4(w, o + 4, 2 * c + 1)
        part = np.int32(0)
        for l in range(32):
            a = w[o + 16 + 32 * c + l]
            v = np.int32(sc0 * np.int32(np.int16(a & 15) * x[256 * b + 64 * c + l])
                         + sc1 * np.int32(np.int16(a >> 4) * x[256 * b + 64 * c + 32 + l]))
            pos[l] = np.int32(pos[l] + v)
            part = np.int32(part + v)
        parts[c] = part
    k4_mins(w, o + 4, bs, b, mins)


@njit(inline="always")
def ints_q5_K(w, b, x, bs, pos, mins, parts):
    o = 176 * b
    for c in range(4):
        sc0, _ = scale_min_k4(w, o + 4, 2 * c)
        sc1, _ = scale_min_k4(w, o + 4, 2 * c + 1)
        for l in range(32):
            a = w[o + 48 + 32 * c + l]
            h = w[o + 16 + l]
            q0 = (a & 15) | (((h >> (2 * c)) & 1) << 4)
            q1 = (a >> 4) | (((h >> (2 * c + 1)) & 1) << 4)
            pos[l] = np.int32(pos[l] + sc0 * np.int32(np.int16(q0) * x[256 * b + 64 * c + l])
                              + sc1 * np.int32(np.int16(q1) * x[256 * b + 64 * c + 32 + l]))
    k4_mins(w, o + 4, bs, b, mins)


@njit(inline="always")
def ints_q6_K(w, b, x, bs, pos, mins, parts):
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
    xo = 256 * b
    for l in range(32):                        # weight l of each of the 8 planes (h, k)
        first = l < 16
        l0 = w[o + l]                          # h = 0: k = 0 (low nibble), k = 2 (high)
        l1 = w[o + 32 + l]                     # h = 0: k = 1, k = 3
        h0 = w[o + 128 + l]                    # h = 0: high 2 bits of k at bits 2k
        l2 = w[o + 64 + l]                     # h = 1, likewise
        l3 = w[o + 96 + l]
        h1 = w[o + 160 + l]
        pos[l] = np.int32(
            pos[l]
            + np.int32(np.int16(((l0 & 15) | ((h0 & 3) << 4)) * (a00 if first else b00))) * np.int32(x[xo + l])
            + np.int32(np.int16(((l1 & 15) | ((h0 & 12) << 2)) * (a01 if first else b01))) * np.int32(x[xo + 32 + l])
            + np.int32(np.int16(((l0 >> 4) | (h0 & 48)) * (a02 if first else b02))) * np.int32(x[xo + 64 + l])
            + np.int32(np.int16(((l1 >> 4) | ((h0 >> 2) & 48)) * (a03 if first else b03))) * np.int32(x[xo + 96 + l])
            + np.int32(np.int16(((l2 & 15) | ((h1 & 3) << 4)) * (a10 if first else b10))) * np.int32(x[xo + 128 + l])
            + np.int32(np.int16(((l3 & 15) | ((h1 & 12) << 2)) * (a11 if first else b11))) * np.int32(x[xo + 160 + l])
            + np.int32(np.int16(((l2 >> 4) | (h1 & 48)) * (a12 if first else b12))) * np.int32(x[xo + 192 + l])
            + np.int32(np.int16(((l3 >> 4) | ((h1 >> 2) & 48)) * (a13 if first else b13))) * np.int32(x[xo + 224 + l]))
    for l in range(8):          # the bias: lane l gets -32 (S_2l bsum_2l + S_2l+1 bsum_2l+1)
        pos[4 * l] -= 32 * (np.int32(np.int8(w[s + 2 * l])) * np.int32(bs[16 * b + 2 * l])
                            + np.int32(np.int8(w[s + 2 * l + 1])) * np.int32(bs[16 * b + 2 * l + 1]))


@njit(inline="always")
def block_ints(kind, w, b, x, bs, pos, mins, parts):
    pos[:] = 0
    mins[:] = 0
    if kind == Q4_K:
        ints_q4_K(w, b, x, bs, pos, mins, parts)
    elif kind == Q6_K:
        ints_q6_K(w, b, x, bs, pos, mins, parts)
    elif kind == Q3_K:
        ints_q3_K(w, b, x, bs, pos, mins, parts)
    elif kind == Q5_K:
        ints_q5_K(w, b, x, bs, pos, mins, parts)
    else:
        ints_q2_K(w, b, x, bs, pos, mins, parts)


@njit(inline="always")
def lanes(pos, out):
    """out[l] = pos[4l] + .. + pos[4l + 3]: the 8 lanes of ggml's registers"""
    for l in range(8):
        out[l] = np.int32(pos[4 * l] + pos[4 * l + 1] + pos[4 * l + 2] + pos[4 * l + 3])


# ---------------------------------------------------------------------- the float orders

@njit(inline="always")
def dot_row(kind, how, w, x, xd, bs, pos, lane, mins, parts, acc):
    """Weight row w times one activation row (x: qs as int16, xd: d per super-block, bs:
    bsums) in the float order `how` (jit.py; kernels/ggml_order.c draws each).  Scratch:
    pos int32 (32), lane, mins, parts int32 (8), acc float32 (12)."""
    size = 84 if kind == Q2_K else 110 if kind == Q3_K else 144 if kind == Q4_K else 176 if kind == Q5_K else 210
    d_off = 80 if kind == Q2_K else 108 if kind == Q3_K else 208 if kind == Q6_K else 0
    with_min = kind == Q2_K or kind == Q4_K or kind == Q5_K
    acc[:] = 0
    chain = chain_min = extra = np.float32(0)
    for b in range(xd.size):
        block_ints(kind, w, b, x, bs, pos, mins, parts)
        lanes(pos, lane)
        dx = f16(w, size * b + d_off)
        dmin = f16(w, size * b + d_off + 2) if with_min else np.float32(0)
        dy = xd[b]
        if how == GEMV or how == GEMM:                  # repack.cpp: a chain by steps
            steps = 1 if how == GEMV else 4 if kind == Q4_K else 2
            for s in range(steps):
                if steps == 1:
                    isum, imin = np.int32(lane.sum()), np.int32(mins.sum())
                elif steps == 4:                        # 64 weights: sub-blocks 2s, 2s + 1
                    isum, imin = parts[s], mins[s]
                else:                                   # 128 weights: groups 8s .. 8s + 7
                    isum = np.int32(parts[2 * s] + parts[2 * s + 1])
                    imin = np.int32(mins[4 * s] + mins[4 * s + 1] + mins[4 * s + 2] + mins[4 * s + 3])
                chain = fma32(np.float32(isum), dx * dy, chain)
                if with_min:
                    chain_min = fma32(np.float32(imin), dmin * dy, chain_min)
        elif how == TILED:                              # the tiled microtile
            r = np.float32(np.int32(lane.sum())) * dx
            if with_min:
                r = fma32(-dmin, np.float32(np.int32(mins.sum())), r)
            chain = fma32(r, dy, chain)
        else:                                           # vec_dot: 8 float lanes
            d, nd = dy * dx, -dy * dmin
            if kind == Q2_K:                            # its mins first, in the same lanes
                for l in range(8):
                    acc[l] = fma32(nd, np.float32(mins[l]), acc[l])
            for l in range(8):
                acc[l] = fma32(d, np.float32(lane[l]), acc[l])
            if kind == Q4_K:                            # 4 lanes of their own
                for p in range(4):
                    acc[8 + p] = fma32(nd, np.float32(mins[p]), acc[8 + p])
            elif kind == Q5_K:                          # one float
                extra = fma32(nd, np.float32(np.int32(mins[0] + mins[1] + mins[2] + mins[3])), extra)
    if how == GEMV or how == GEMM:
        return chain - chain_min if with_min else chain
    if how == TILED:
        return chain
    if kind == Q4_K:
        extra = (acc[8] + acc[10]) + (acc[9] + acc[11])
    return hsum8(acc) + extra


@njit(parallel=True, cache=True)
def matmul_q8_K(kind, W, xq_f32, xq_i8, xq_i16, out):
    """out (T, N) = products of weight rows W (N, row_bytes) with block_q8_K rows, each in
    the order llama.cpp's CPU backend gives it (jit.order).

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
        pos = np.empty(32, np.int32)
        lane = np.empty(8, np.int32)
        mins = np.empty(8, np.int32)
        parts = np.empty(8, np.int32)
        acc = np.empty(12, np.float32)
        for t in range(T):
            how = order(kind, N, T, t)
            for n in range(task * ROWS_PER_TASK, min(N, (task + 1) * ROWS_PER_TASK)):
                out[t, n] = dot_row(kind, how, W[n], x16[t], xd[t], bs[t], pos, lane, mins, parts, acc)

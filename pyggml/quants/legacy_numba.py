"""Fast layer of the 32-weight block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and IQ4_NL.

Reference and layouts: ``legacy.py`` and ``iq.py``.  Per type:

    pair_<type>(w, o, j)           the integer quants of weights j and j+16 of a block
    dequant_<type>(W, rows, out)   out[i] = row rows[i] of W decoded, float for float
                                   identical to the reference (same float32 operations)

and ``matmul_q8_0`` runs the products (out[t, n] = W[n] . X[t]) for all of them from the
activations in ggml's block_q8_0 / block_q8_1 layout.  Per block, like ggml's
ggml_vec_dot_<type>_q8_0 / _q8_1:

    isum  = sum_i q_i * q8_i                          exact, int32
    sumf += (d_w * d_x) * isum                        Q4_0, Q5_0, Q8_0, IQ4_NL
    sumf += (d_w * d_x) * isum + m_w * s_x            Q4_1, Q5_1 (s_x = d_x * sum q8)

with float32 accumulation over the blocks in order.  The offsets of the symmetric types
are folded out of the inner loop: sum (q - 8) q8 = sum q q8 - 8 sum q8.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..format.constants import GGMLType
from .jit import ROWS_PER_TASK, f16, u32

KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10,
                          1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int8)
# IQ4_NL's table for a whole byte: kvalues[b & 15] in the low 16 bits, kvalues[b >> 4] in
# the high 16: one lookup per two weights (1.5-2x faster products than two lookups)
_both = np.arange(256)
KVALUE_PAIRS = ((KVALUES_IQ4NL[_both & 15].astype(np.int32) & 0xFFFF)
                | (KVALUES_IQ4NL[_both >> 4].astype(np.int32) << 16)).astype(np.int32)

Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL = (int(GGMLType.Q4_0), int(GGMLType.Q4_1), int(GGMLType.Q5_0),
                                        int(GGMLType.Q5_1), int(GGMLType.Q8_0), int(GGMLType.IQ4_NL))


# ---------------------------------------------------------------------- block decoding
# pair_<type>(w, o, j): the integer quants of weights j and j+16 of the block at byte o,
# as stored (offsets left in: Q4_0 gives 0..15, not -8..7).  Shared by the dequantization
# and the products.

@njit(inline="always")
def pair_q4_0(w, o, j):
    a = w[o + 2 + j]
    return np.int16(a & 15), np.int16(a >> 4)


@njit(inline="always")
def pair_q4_1(w, o, j):
    a = w[o + 4 + j]
    return np.int16(a & 15), np.int16(a >> 4)


@njit(inline="always")
def pair_q5_0(w, o, j):
    a = w[o + 6 + j]
    qh = u32(w, o + 2)
    return (np.int16((a & 15) | (((qh >> j) & 1) << 4)),
            np.int16((a >> 4) | (((qh >> (j + 16)) & 1) << 4)))


@njit(inline="always")
def pair_q5_1(w, o, j):
    a = w[o + 8 + j]
    qh = u32(w, o + 4)
    return (np.int16((a & 15) | (((qh >> j) & 1) << 4)),
            np.int16((a >> 4) | (((qh >> (j + 16)) & 1) << 4)))


@njit(inline="always")
def pair_q8_0(w, o, j):
    return np.int16(np.int8(w[o + 2 + j])), np.int16(np.int8(w[o + 18 + j]))


@njit(inline="always")
def pair_iq4_nl(w, o, j):
    both = KVALUE_PAIRS[w[o + 2 + j]]
    return np.int16(both & 0xFFFF), np.int16(both >> 16)



# ---------------------------------------------------------------------- dequantization

@njit(inline="always")
def dequant_row(pair, size, offset, affine, w, y):
    """Decode one row w (bytes) into y (float32), per weight as gguf-py computes it:
        y = d * float(q - offset)          symmetric types
        y = d * float(q) + m               affine types (m: the fp16 at byte 2 of the block)
    """
    for b in range(y.size // 32):
        d = f16(w, size * b)
        m = f16(w, size * b + 2) if affine else np.float32(0)
        for j in range(16):
            lo, hi = pair(w, size * b, j)
            if affine:
                y[32 * b + j] = d * np.float32(np.int32(lo)) + m
                y[32 * b + 16 + j] = d * np.float32(np.int32(hi)) + m
            else:
                y[32 * b + j] = d * np.float32(np.int32(lo) - np.int32(offset))
                y[32 * b + 16 + j] = d * np.float32(np.int32(hi) - np.int32(offset))


@njit(parallel=True, cache=True)
def dequant_q4_0(W, rows, out):
    for i in prange(rows.size):
        dequant_row(pair_q4_0, 18, 8, False, W[rows[i]], out[i])


@njit(parallel=True, cache=True)
def dequant_q4_1(W, rows, out):
    for i in prange(rows.size):
        dequant_row(pair_q4_1, 20, 0, True, W[rows[i]], out[i])


@njit(parallel=True, cache=True)
def dequant_q5_0(W, rows, out):
    for i in prange(rows.size):
        dequant_row(pair_q5_0, 22, 16, False, W[rows[i]], out[i])


@njit(parallel=True, cache=True)
def dequant_q5_1(W, rows, out):
    for i in prange(rows.size):
        dequant_row(pair_q5_1, 24, 0, True, W[rows[i]], out[i])


@njit(parallel=True, cache=True)
def dequant_q8_0(W, rows, out):
    for i in prange(rows.size):
        dequant_row(pair_q8_0, 34, 0, False, W[rows[i]], out[i])


@njit(parallel=True, cache=True)
def dequant_iq4_nl(W, rows, out):
    for i in prange(rows.size):
        dequant_row(pair_iq4_nl, 18, 0, False, W[rows[i]], out[i])


# ---------------------------------------------------------------------- products
# ``dot4`` multiplies FOUR weight rows by one activation row at once: the activations are loaded once for four
# rows, and the loop body is big enough that LLVM's loop vectorizer (not the weaker SLP
# pass that handles fully unrolled small loops) turns it into packed multiply-adds.

@njit(inline="always")
def dot4(pair, size, offset, affine, w0, w1, w2, w3, x, xd, xs, xsum):
    """Rows w0..w3 times activation row x: four float32 sums, each block added as

        isum = sum_j q_j * x_j - offset * xsum[b]          (q from pair(), exact int32)
        sumf += (d_w * d_x) * isum  [+ m_w * s_x if affine]
    """
    f0 = np.float32(0)
    f1 = np.float32(0)
    f2 = np.float32(0)
    f3 = np.float32(0)
    for b in range(xd.size):
        o = size * b
        s0 = s1 = s2 = s3 = np.int32(0)
        for j in range(16):
            xa = x[32 * b + j]
            xb = x[32 * b + 16 + j]
            qa, qb = pair(w0, o, j)
            s0 = np.int32(s0 + np.int32(qa * xa) + np.int32(qb * xb))
            qa, qb = pair(w1, o, j)
            s1 = np.int32(s1 + np.int32(qa * xa) + np.int32(qb * xb))
            qa, qb = pair(w2, o, j)
            s2 = np.int32(s2 + np.int32(qa * xa) + np.int32(qb * xb))
            qa, qb = pair(w3, o, j)
            s3 = np.int32(s3 + np.int32(qa * xa) + np.int32(qb * xb))
        if offset:
            s0 = np.int32(s0 - offset * xsum[b])
            s1 = np.int32(s1 - offset * xsum[b])
            s2 = np.int32(s2 - offset * xsum[b])
            s3 = np.int32(s3 - offset * xsum[b])
        if affine:
            f0 += (f16(w0, o) * xd[b]) * np.float32(s0) + f16(w0, o + 2) * xs[b]
            f1 += (f16(w1, o) * xd[b]) * np.float32(s1) + f16(w1, o + 2) * xs[b]
            f2 += (f16(w2, o) * xd[b]) * np.float32(s2) + f16(w2, o + 2) * xs[b]
            f3 += (f16(w3, o) * xd[b]) * np.float32(s3) + f16(w3, o + 2) * xs[b]
        else:
            f0 += (f16(w0, o) * xd[b]) * np.float32(s0)
            f1 += (f16(w1, o) * xd[b]) * np.float32(s1)
            f2 += (f16(w2, o) * xd[b]) * np.float32(s2)
            f3 += (f16(w3, o) * xd[b]) * np.float32(s3)
    return f0, f1, f2, f3


@njit(inline="always")
def dot_rows(kind, w0, w1, w2, w3, x, xd, xs, xsum):
    if kind == Q4_0:
        return dot4(pair_q4_0, 18, 8, False, w0, w1, w2, w3, x, xd, xs, xsum)
    if kind == Q5_0:
        return dot4(pair_q5_0, 22, 16, False, w0, w1, w2, w3, x, xd, xs, xsum)
    if kind == Q8_0:
        return dot4(pair_q8_0, 34, 0, False, w0, w1, w2, w3, x, xd, xs, xsum)
    if kind == IQ4_NL:
        return dot4(pair_iq4_nl, 18, 0, False, w0, w1, w2, w3, x, xd, xs, xsum)
    if kind == Q4_1:
        return dot4(pair_q4_1, 20, 0, True, w0, w1, w2, w3, x, xd, xs, xsum)
    return dot4(pair_q5_1, 24, 0, True, w0, w1, w2, w3, x, xd, xs, xsum)


@njit(parallel=True, cache=True)
def matmul_q8_0(kind, W, xq, out):
    """out (T, N) = products of weight rows W (N, row_bytes) with Q8_0/Q8_1 rows xq (T, ...).

    Q4_1 and Q5_1 take block_q8_1 (36 bytes: d, s, qs[32]), the others block_q8_0 (34
    bytes: d, qs[32]).  The activations are unpacked once: qs widened to int16, d and s
    to float32, and the sum of each block's qs for the offsets.
    """
    N = W.shape[0]
    T = xq.shape[0]
    q8_1 = kind == Q4_1 or kind == Q5_1
    act_size = 36 if q8_1 else 34
    nb = xq.shape[1] // act_size
    x16 = np.empty((T, nb * 32), dtype=np.int16)
    xd = np.empty((T, nb), dtype=np.float32)
    xs = np.zeros((T, nb), dtype=np.float32)
    xsum = np.empty((T, nb), dtype=np.int32)
    for t in range(T):
        for b in range(nb):
            o = act_size * b
            xd[t, b] = f16(xq[t], o)
            if q8_1:
                xs[t, b] = f16(xq[t], o + 2)
            total = 0
            for j in range(32):
                v = np.int16(np.int8(xq[t, o + act_size - 32 + j]))
                x16[t, 32 * b + j] = v
                total += v
            xsum[t, b] = total
    n_tasks = (N + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(n_tasks):
        for t in range(T):
            for n in range(task * ROWS_PER_TASK, min(N, (task + 1) * ROWS_PER_TASK), 4):
                last = N - 1                      # a short last group repeats the last row
                r = dot_rows(kind, W[n], W[min(n + 1, last)], W[min(n + 2, last)],
                             W[min(n + 3, last)], x16[t], xd[t], xs[t], xsum[t])
                for i in range(min(4, N - n)):
                    out[t, n + i] = r[i]

"""Fast layer of the 32-weight block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and IQ4_NL.

Reference and layouts: ``legacy.py`` and ``iq.py``.  Per type:

    pair_<type>(w, o, j)           the integer quants of weights j and j+16 of a block
    dequant_<type>(W, rows, out)   out[i] = row rows[i] of W decoded, float for float
                                   identical to the reference (same float32 operations)

and ``matmul_q8_0`` runs the products (out[t, n] = W[n] . X[t]) for all of them from the
activations in ggml's block_q8_0 / block_q8_1 layout, with the float32 bits of
llama.cpp's CPU backend: per block the exact integer products in the 8 lanes of ggml's
AVX2 registers, then the float order of the kernel llama.cpp runs for that product
(vec_dot, tinyBLAS or repack.cpp's gemv/gemm; kernels/ggml_order.c draws each):

    vec_dot, tinyBLAS  lanes = fma(d_w * d_x, lanes_b, lanes), hsum  [+ sum of m_w * s_x]
                       (IQ4_NL's vec_dot: even and odd blocks apart, an odd last one alone)
    gemv, gemm         acc = fma(isum_b, d_w * d_x, acc)       (Q4_0, IQ4_NL, repacked)
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..format.constants import GGMLType
from .jit import GEMM, GEMV, ROWS_PER_TASK, VEC_DOT, f16, fma32, hsum8, order, u32

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
# Per block, the 32 products q_e * x_e (offsets taken out: Q4_0's q - 8, Q5_0's q - 16),
# summed 4 by 4 into the 8 int32 lanes of ggml's AVX2 registers (lane l: weights 4l..4l+3);
# then the float order of the kernel llama.cpp runs for the product (jit.order).

@njit(inline="always")
def block_lanes(pair, size, offset, w0, w1, w2, w3, b, x, prod, lane):
    """lane[r, l] = sum of (q_e - offset) * x_e over weights e = 4l .. 4l+3 of block b of
    row w_r (four rows at once: the activations are loaded once, and the loop is big
    enough for LLVM's loop vectorizer)."""
    o = size * b
    for j in range(16):
        xa = x[32 * b + j]
        xb = x[32 * b + 16 + j]
        lo, hi = pair(w0, o, j)
        prod[0, j], prod[0, 16 + j] = np.int32(np.int16(lo - offset) * xa), np.int32(np.int16(hi - offset) * xb)
        lo, hi = pair(w1, o, j)
        prod[1, j], prod[1, 16 + j] = np.int32(np.int16(lo - offset) * xa), np.int32(np.int16(hi - offset) * xb)
        lo, hi = pair(w2, o, j)
        prod[2, j], prod[2, 16 + j] = np.int32(np.int16(lo - offset) * xa), np.int32(np.int16(hi - offset) * xb)
        lo, hi = pair(w3, o, j)
        prod[3, j], prod[3, 16 + j] = np.int32(np.int16(lo - offset) * xa), np.int32(np.int16(hi - offset) * xb)
    for r in range(4):
        for l in range(8):
            lane[r, l] = np.int32(prod[r, 4 * l] + prod[r, 4 * l + 1] + prod[r, 4 * l + 2] + prod[r, 4 * l + 3])


@njit(inline="always")
def add_block(r, dx, dy, ms, affine, paired, how, b, nb, lane, acc, chain):
    """Block b of row r into its float state: chain[r] (gemv, gemm), or acc[r] (lanes 0..7;
    IQ4_NL's odd blocks 8..15; 16: the m s sum or IQ4_NL's odd last block)."""
    if how == GEMV or how == GEMM:                      # repack.cpp: one chain
        chain[r] = fma32(np.float32(np.int32(lane[r].sum())), dx * dy, chain[r])
    elif how == VEC_DOT and paired:
        if b % 2 == 0 and b + 1 == nb:                  # the odd last block: not fused
            acc[r, 16] = (dy * dx) * np.float32(np.int32(lane[r].sum()))
        else:
            h = 8 * (b % 2)
            for l in range(8):
                acc[r, h + l] = fma32(dy * dx, np.float32(lane[r, l]), acc[r, h + l])
    else:                                               # vec_dot and tinyBLAS: 8 lanes
        d = dx * dy
        for l in range(8):
            acc[r, l] = fma32(d, np.float32(lane[r, l]), acc[r, l])
        if affine:                  # + m s (exact: fp16 times fp16), as ggml's fused m * s + acc
            acc[r, 16] = acc[r, 16] + ms


@njit(inline="always")
def dot4(pair, size, offset, affine, paired, how, w0, w1, w2, w3, x, xd, xs, prod, lane, acc, out):
    """Weight rows w0..w3 times one activation row (x: qs as int16, xd: d, xs: Q8_1's s)
    in the float order `how`, into out[0..3]; paired: IQ4_NL's vec_dot (even and odd
    blocks in two lane sets, an odd last block added alone).  Scratch: prod int32 (4, 32),
    lane int32 (4, 8), acc float32 (4, 17)."""
    acc[:] = 0
    out[:] = 0
    nb = xd.size
    for b in range(nb):
        block_lanes(pair, size, offset, w0, w1, w2, w3, b, x, prod, lane)
        o = size * b
        add_block(0, f16(w0, o), xd[b], f16(w0, o + 2) * xs[b] if affine else np.float32(0), affine, paired, how, b, nb, lane, acc, out)
        add_block(1, f16(w1, o), xd[b], f16(w1, o + 2) * xs[b] if affine else np.float32(0), affine, paired, how, b, nb, lane, acc, out)
        add_block(2, f16(w2, o), xd[b], f16(w2, o + 2) * xs[b] if affine else np.float32(0), affine, paired, how, b, nb, lane, acc, out)
        add_block(3, f16(w3, o), xd[b], f16(w3, o + 2) * xs[b] if affine else np.float32(0), affine, paired, how, b, nb, lane, acc, out)
    if how == GEMV or how == GEMM:
        return
    for r in range(4):
        extra = acc[r, 16] if affine or (paired and how == VEC_DOT and nb % 2) else np.float32(0)
        if paired and how == VEC_DOT:
            for l in range(8):
                acc[r, l] = acc[r, l] + acc[r, 8 + l]
        out[r] = hsum8(acc[r]) + extra


@njit(inline="always")
def dot_kind(kind, how, w0, w1, w2, w3, x, xd, xs, prod, lane, acc, out):
    if kind == Q4_0:
        dot4(pair_q4_0, 18, 8, False, False, how, w0, w1, w2, w3, x, xd, xs, prod, lane, acc, out)
    elif kind == Q5_0:
        dot4(pair_q5_0, 22, 16, False, False, how, w0, w1, w2, w3, x, xd, xs, prod, lane, acc, out)
    elif kind == Q8_0:
        dot4(pair_q8_0, 34, 0, False, False, how, w0, w1, w2, w3, x, xd, xs, prod, lane, acc, out)
    elif kind == IQ4_NL:
        dot4(pair_iq4_nl, 18, 0, False, True, how, w0, w1, w2, w3, x, xd, xs, prod, lane, acc, out)
    elif kind == Q4_1:
        dot4(pair_q4_1, 20, 0, True, False, how, w0, w1, w2, w3, x, xd, xs, prod, lane, acc, out)
    else:
        dot4(pair_q5_1, 24, 0, True, False, how, w0, w1, w2, w3, x, xd, xs, prod, lane, acc, out)


@njit(parallel=True, cache=True)
def matmul_q8_0(kind, W, xq, out):
    """out (T, N) = products of weight rows W (N, row_bytes) with Q8_0/Q8_1 rows xq (T, ...),
    each in the order llama.cpp's CPU backend gives it (jit.order).

    Q4_1 and Q5_1 take block_q8_1 (36 bytes: d, s, qs[32]), the others block_q8_0 (34
    bytes: d, qs[32]).  The activations are unpacked once: qs widened to int16, d and s
    to float32.
    """
    N = W.shape[0]
    T = xq.shape[0]
    q8_1 = kind == Q4_1 or kind == Q5_1
    act_size = 36 if q8_1 else 34
    nb = xq.shape[1] // act_size
    x16 = np.empty((T, nb * 32), dtype=np.int16)
    xd = np.empty((T, nb), dtype=np.float32)
    xs = np.zeros((T, nb), dtype=np.float32)
    for t in range(T):
        for b in range(nb):
            o = act_size * b
            xd[t, b] = f16(xq[t], o)
            if q8_1:
                xs[t, b] = f16(xq[t], o + 2)
            for j in range(32):
                x16[t, 32 * b + j] = np.int16(np.int8(xq[t, o + act_size - 32 + j]))
    n_tasks = (N + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(n_tasks):
        prod = np.empty((4, 32), np.int32)
        lane = np.empty((4, 8), np.int32)
        acc = np.empty((4, 17), np.float32)
        r = np.empty(4, np.float32)
        for t in range(T):
            how = order(kind, N, T, t)
            for n in range(task * ROWS_PER_TASK, min(N, (task + 1) * ROWS_PER_TASK), 4):
                last = N - 1                      # a short last group repeats the last row
                dot_kind(kind, how, W[n], W[min(n + 1, last)], W[min(n + 2, last)],
                         W[min(n + 3, last)], x16[t], xd[t], xs[t], prod, lane, acc, r)
                for i in range(min(4, N - n)):
                    out[t, n + i] = r[i]

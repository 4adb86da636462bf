"""Fast layer of the types with Q8_0 (or Q8_1) activations: the 32-weight block types Q4_0,
Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL and MXFP4, and the dispatch of Q1_0, Q2_0 and NVFP4, whose
blocks span several activation blocks (their kernels: ``lowbit_numba.py``).

Reference and layouts: ``legacy.py``, ``iq.py``, ``fp4.py`` and ``lowbit.py``.  ``kind`` is
the ggml type id.

    quants_<type>(w, o)        the 32 integer quants of the block at byte o, in weight
                               order, as one vector: uint8 as stored (offsets left in:
                               Q4_0 gives 0..15, not -8..7), int8 for Q8_0, IQ4_NL, MXFP4
    dequantize_row(quants, scale, type_size, offset, affine, w, y)
                               one row decoded, float for float identical to the
                               reference (scale: how the block's d is stored, f16 or
                               MXFP4's e8m0_half); dequantize_rows(kind, W, rows, out)
                               runs it over rows with the type's block format
    vec_dot_row(quants, scale, type_size, ..., how, w, x, ...)
                               a weight row times an activation row in the float order
                               ``how``; vec_dot(kind, how, ...) gives it the type's
                               block format, matmul_q8_0(kind, W, xq, out) runs the
                               products out[t, n] = W[n] . X[t] from activations in
                               ggml's block_q8_0 / block_q8_1 layout

The products have the float32 bits of llama.cpp's CPU backend: per block the exact
integer products in the 8 lanes of ggml's AVX2 registers (lane l: weights 4l .. 4l+3),
then the float order of the kernel llama.cpp runs for that product (vec_dot, tinyBLAS or
repack.cpp's gemv/gemm; kernels/ggml_order.c draws each):

    vec_dot, tinyBLAS  lanes = fma(d_w * d_x, lanes_b, lanes), hsum  [+ sum of m_w * s_x]
                       (IQ4_NL's and MXFP4's vec_dot: even and odd blocks apart, an odd
                       last one alone)
    gemv, gemm         acc = fma(isum_b, d_w * d_x, acc)       (Q4_0, IQ4_NL, MXFP4, repacked)

The lanes: unsigned quants times the activation bytes with maddubs and madd (jit.py's
vectors, ggml's instructions), the offset taken out as offset * (the activations' sums by
4, computed once per product); the signed quants of Q8_0 and IQ4_NL widened to int16
first, so that every product is exact (ggml's sign trick would saturate on -128 * -128);
MXFP4's signed E2M1 values likewise.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..ggml import GGMLType
from .jit import (GEMM, GEMV, GGML_FUSES_SCALAR_TAIL, ROWS_PER_TASK, VEC_DOT, bitcast, concat,
                  convert, f16, fma32, hsum, hsum8, lookup16, madd, maddubs, nonzero, order, part, repeat,
                  splat, vfma, vload, vstore)
from .lowbit_numba import (BIT_OF_LANE, KVALUES_FP4, NVFP4, Q1_0, Q2_0, dequantize_row_nvfp4, dequantize_row_q1_0,
                           dequantize_row_q2_0, e8m0_half, signed_lanes, vec_dot_nvfp4_q8_0,
                           vec_dot_q1_0_q8_0, vec_dot_q2_0_q8_0)

KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10,
                          1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int8)

Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, MXFP4 = (int(GGMLType.Q4_0), int(GGMLType.Q4_1), int(GGMLType.Q5_0),
                                               int(GGMLType.Q5_1), int(GGMLType.Q8_0), int(GGMLType.IQ4_NL),
                                               int(GGMLType.MXFP4))


# ---------------------------------------------------------------------- block decoding
# Shared by the dequantization and the products.

@njit(inline="always")
def nibbles(w, o):
    """16 bytes at w[o:] -> their 32 nibbles in weight order: the low nibbles are weights
    0..15, the high nibbles 16..31."""
    a = vload(w, o, 16)
    return concat(a & np.uint8(15), a >> np.uint8(4))


@njit(inline="always")
def fifth_bits(w, o):
    """The uint32 qh at w[o:] as 32 lanes of 0 or 16: bit j of qh is weight j's fifth bit."""
    return nonzero(repeat(vload(w, o, 4), 8) & vload(BIT_OF_LANE, 0, 32)) << np.uint8(4)


@njit(inline="always")
def quants_q4_0(w, o):
    return nibbles(w, o + 2)


@njit(inline="always")
def quants_q4_1(w, o):
    return nibbles(w, o + 4)


@njit(inline="always")
def quants_q5_0(w, o):
    return nibbles(w, o + 6) | fifth_bits(w, o + 2)


@njit(inline="always")
def quants_q5_1(w, o):
    return nibbles(w, o + 8) | fifth_bits(w, o + 4)


@njit(inline="always")
def quants_q8_0(w, o):
    return bitcast(vload(w, o + 2, 32), np.int8)


@njit(inline="always")
def quants_iq4_nl(w, o):
    return lookup16(vload(KVALUES_IQ4NL, 0, 16), nibbles(w, o + 2))


@njit(inline="always")
def quants_mxfp4(w, o):
    return lookup16(vload(KVALUES_FP4, 0, 16), nibbles(w, o + 1))


# ---------------------------------------------------------------------- dequantization

@njit(inline="always")
def dequantize_row(quants, scale, type_size, offset, affine, w, y):
    """Decode one row w (bytes) into y (float32), per weight as gguf-py computes it:
        y = d * float(q - offset)          symmetric types
        y = d * float(q) + m               affine types (m: the fp16 at byte 2 of the block)
    d = scale(w, o), the block's scale; sixteen weights per step."""
    for b in range(y.size // 32):
        o = type_size * b
        d = splat(scale(w, o), 16)
        m = splat(f16(w, o + 2) if affine else np.float32(0), 16)
        q = convert(quants(w, o), np.int32) - np.int32(offset)
        for e, v in ((0, part(q, 0, 16)), (16, part(q, 16, 16))):
            v = d * convert(v, np.float32)
            vstore(y, 32 * b + e, v + m if affine else v)


@njit(parallel=True, cache=True)
def dequantize_rows(kind, W, rows, out):
    """out[i] = row rows[i] of W (uint8 (n_rows, row_bytes) of type kind), decoded."""
    for i in prange(rows.size):
        w, y = W[rows[i]], out[i]
        if kind == Q4_0:
            dequantize_row(quants_q4_0, f16, 18, 8, False, w, y)
        elif kind == Q4_1:
            dequantize_row(quants_q4_1, f16, 20, 0, True, w, y)
        elif kind == Q5_0:
            dequantize_row(quants_q5_0, f16, 22, 16, False, w, y)
        elif kind == Q5_1:
            dequantize_row(quants_q5_1, f16, 24, 0, True, w, y)
        elif kind == Q8_0:
            dequantize_row(quants_q8_0, f16, 34, 0, False, w, y)
        elif kind == MXFP4:
            dequantize_row(quants_mxfp4, e8m0_half, 17, 0, False, w, y)
        elif kind == IQ4_NL:
            dequantize_row(quants_iq4_nl, f16, 18, 0, False, w, y)
        elif kind == Q1_0:
            dequantize_row_q1_0(w, y)
        elif kind == Q2_0:
            dequantize_row_q2_0(w, y)
        else:
            dequantize_row_nvfp4(w, y)


# ---------------------------------------------------------------------- products

@njit(inline="always")
def block_lanes(quants, signed, offset, w, o, x, xo, sums4, so):
    """sum of (q_e - offset) * x_e over weights e = 4l .. 4l+3, for l = 0..7 (int32):
    the block at byte o of row w times the activation quants x[xo:xo + 32] (int8);
    sums4[so:so + 8]: the activations' sums by 4 (for the offset)."""
    q = quants(w, o)
    xs = vload(x, xo, 32)
    if signed:                              # int8 x int8: widened, every product exact
        return signed_lanes(q, xs)
    lanes = madd(maddubs(q, xs), splat(np.int16(1), 16))
    return lanes - vload(sums4, so, 8) * np.int32(offset) if offset else lanes


@njit(inline="always")
def vec_dot_row(quants, scale, type_size, signed, offset, affine, paired, how, w, x, act_size, xd, xs,
                sums4):
    """Weight row w times one activation row (x: its bytes as int8, act_size: 34 or 36
    bytes per block, xd: d, xs: Q8_1's s, sums4: sums by 4) in the float order `how`.
    The block format: quants = quants_<type>, scale reads its d, type_size its bytes,
    signed: int8 quants, offset: the one its quants carry (Q4_0's 8, Q5_0's 16), affine:
    an fp16 offset m at byte 2 (the _1 types), paired: IQ4_NL's and MXFP4's vec_dot (even
    and odd blocks in two lane sets, an odd last block added alone)."""
    nb = xd.size
    acc = splat(np.float32(0), 8)
    odd = splat(np.float32(0), 8)
    chain = extra = tail_d = np.float32(0)
    for b in range(nb):
        lanes = block_lanes(quants, signed, offset, w, type_size * b, x, act_size * (b + 1) - 32,
                            sums4, 8 * b)
        dx, dy = scale(w, type_size * b), xd[b]
        if how == GEMV or how == GEMM:                  # repack.cpp: one chain
            chain = fma32(np.float32(hsum(lanes)), dx * dy, chain)
        elif paired and how == VEC_DOT:
            if b % 2 == 0 and b + 1 == nb:              # the odd last block: added alone
                tail_d, extra = dy * dx, np.float32(hsum(lanes))
            elif b % 2 == 0:
                acc = vfma(splat(dy * dx, 8), convert(lanes, np.float32), acc)
            else:
                odd = vfma(splat(dy * dx, 8), convert(lanes, np.float32), odd)
        else:                                           # vec_dot and tinyBLAS: 8 lanes
            acc = vfma(splat(dx * dy, 8), convert(lanes, np.float32), acc)
            if affine:              # + m s (exact: fp16 times fp16), as ggml's fused m * s + acc
                extra = extra + f16(w, type_size * b + 2) * xs[b]
    if how == GEMV or how == GEMM:
        return chain
    if paired and how == VEC_DOT:
        total = hsum8(acc + odd)
        if nb % 2 == 0:
            return total
        return fma32(tail_d, extra, total) if GGML_FUSES_SCALAR_TAIL else total + tail_d * extra
    return hsum8(acc) + extra


@njit(inline="always")
def vec_dot(kind, how, w, x, act_size, xd, xs, sums4):
    """vec_dot_row with the block format of the type `kind`."""
    if kind == Q4_0:
        return vec_dot_row(quants_q4_0, f16, 18, False, 8, False, False, how, w, x, act_size, xd, xs, sums4)
    if kind == Q5_0:
        return vec_dot_row(quants_q5_0, f16, 22, False, 16, False, False, how, w, x, act_size, xd, xs, sums4)
    if kind == Q8_0:
        return vec_dot_row(quants_q8_0, f16, 34, True, 0, False, False, how, w, x, act_size, xd, xs, sums4)
    if kind == IQ4_NL:
        return vec_dot_row(quants_iq4_nl, f16, 18, True, 0, False, True, how, w, x, act_size, xd, xs, sums4)
    if kind == MXFP4:
        return vec_dot_row(quants_mxfp4, e8m0_half, 17, True, 0, False, True, how, w, x, act_size, xd, xs,
                           sums4)
    if kind == Q4_1:
        return vec_dot_row(quants_q4_1, f16, 20, False, 0, True, False, how, w, x, act_size, xd, xs, sums4)
    if kind == Q5_1:
        return vec_dot_row(quants_q5_1, f16, 24, False, 0, True, False, how, w, x, act_size, xd, xs, sums4)
    if kind == Q1_0:                        # the blocks over several activation blocks
        return vec_dot_q1_0_q8_0(w, x, xd)
    if kind == Q2_0:
        return vec_dot_q2_0_q8_0(w, x, xd, sums4)
    return vec_dot_nvfp4_q8_0(w, x, xd)


@njit(parallel=True, cache=True)
def matmul_q8_0(kind, W, xq, out):
    """out (T, N) = products of weight rows W (N, row_bytes) with Q8_0/Q8_1 rows xq (T, ...),
    each in the order llama.cpp's CPU backend gives it (jit.order).

    Q4_1 and Q5_1 take block_q8_1 (36 bytes: d, s, qs[32]), the others block_q8_0 (34
    bytes: d, qs[32]).  The kernels read the quants in place; d, s and the sums by 4 are
    gathered once per product.
    """
    N = W.shape[0]
    T = xq.shape[0]
    act_size = 36 if kind == Q4_1 or kind == Q5_1 else 34
    nb = xq.shape[1] // act_size
    x8 = xq.view(np.int8)
    xd = np.empty((T, nb), dtype=np.float32)
    xs = np.zeros((T, nb), dtype=np.float32)
    sums4 = np.empty((T, nb * 8), dtype=np.int32)
    ones = splat(np.uint8(1), 32)
    for t in range(T):
        for b in range(nb):
            xd[t, b] = f16(xq[t], act_size * b)
            if act_size == 36:
                xs[t, b] = f16(xq[t], act_size * b + 2)
            quads = madd(maddubs(ones, vload(x8[t], act_size * (b + 1) - 32, 32)), splat(np.int16(1), 16))
            vstore(sums4[t], 8 * b, quads)
    n_tasks = (N + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(n_tasks):
        for n in range(task * ROWS_PER_TASK, min(N, (task + 1) * ROWS_PER_TASK)):
            w = W[n]
            for t in range(T):
                out[t, n] = vec_dot(kind, order(kind, N, T, t), w, x8[t], act_size, xd[t], xs[t], sums4[t])

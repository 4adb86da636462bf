"""Fast layer of the K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.

Reference and layouts: ``k.py``.  ``kind`` is the ggml type id; ``k4`` names what Q4_K and
Q5_K share (their 12 packed scale bytes: ggml's get_scale_min_k4), ``symmetric`` what Q3_K
and Q6_K share (16 signed scales, no mins).

    scale_min_k4(w, s), q3_K_scales(w, s)
                                   the packed sub-block scales (and mins) as int16 vectors
    dequantize_row_<type>(w, y)    (Q2_K, Q3_K, Q6_K; dequantize_row_k4 for Q4_K, Q5_K)
                                   one row decoded, float for float identical to the
                                   reference (same float32 operations)
    dequantize_rows(kind, W, rows, out)
                                   out[i] = row rows[i] of W decoded, parallel over rows
    block_lanes_<type>(w, o, x, xo, ...)
                                   (block_lanes_q2_K, _q3_K, _k4, _q6_K) the super-block at
                                   byte o of weight row w times the Q8_K activation block
                                   at byte xo of x (int8): the exact integer products in
                                   the 8 int32 lanes of ggml's AVX2 vec_dot (lane l: the
                                   weights e with (e % 32) // 4 == l)
    vec_dot_q2_K_q8_K, vec_dot_k4_q8_K, vec_dot_symmetric_q8_K (how, w, ...)
                                   a weight row times an activation row: the lanes of
                                   each block combined in the float order ``how``
                                   (vec_dot's lanes, repack.cpp's gemv/gemm chains or the
                                   tiled matmul's; kernels/ggml_order.c draws each)
    matmul_q8_K(kind, W, ...)      out[t, n] = W[n] . X[t] from activations in ggml's
                                   block_q8_K layout, each product in the order
                                   llama.cpp's CPU backend gives it (jit.order)

The kernels are written with jit.py's vectors, 32 weights per instruction as in ggml's
AVX2 code: the quants of a 32-weight slice are unpacked into one uint8 vector, multiplied
by the activation bytes and summed in pairs (maddubs: 16 int16), then multiplied by the
sub-block scales and summed in pairs again (madd: 8 int32) -- which is exactly ggml's
lanes, 4 neighbouring weights each.  The operands stay below maddubs' saturation: the
unsigned quants are at most 63, the biases (Q3_K's 4, Q6_K's 32) are taken out after.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..ggml import GGMLType
from .jit import (GEMM, GEMV, ROWS_PER_TASK, TILED, bitcast, concat, convert, f16, fma32,
                  from_tuple, hsum, hsum8, madd, maddubs, order, part, repeat, splat, u32, vfma,
                  vload, vstore)

Q2_K, Q3_K, Q4_K, Q5_K, Q6_K = (int(GGMLType.Q2_K), int(GGMLType.Q3_K), int(GGMLType.Q4_K),
                                int(GGMLType.Q5_K), int(GGMLType.Q6_K))


# ---------------------------------------------------------------------- scales

@njit(inline="always")
def scale_min_k4(w, s):
    """The 8 scales and 8 mins of Q4_K/Q5_K (12 bytes at w[s:]) as two int16 vectors,
    unpacked 4 at a time in 32-bit words as ggml does (get_scale_min_k4 for j = 0..7):

        scales 0..3 = bytes 0..3 & 63      scales 4..7 = bytes 8..11 & 15 | (bytes 0..3 >> 6) << 4
        mins   0..3 = bytes 4..7 & 63      mins   4..7 = bytes 8..11 >> 4 | (bytes 4..7 >> 6) << 4
    """
    u0, u1, u2 = u32(w, s), u32(w, s + 4), u32(w, s + 8)
    six, low, high = np.uint32(0x3F3F3F3F), np.uint32(0x0F0F0F0F), np.uint32(0x03030303)
    scales = from_tuple((np.uint32(u0 & six), np.uint32((u2 & low) | (((u0 >> 6) & high) << 4))))
    mins = from_tuple((np.uint32(u1 & six), np.uint32(((u2 >> 4) & low) | (((u1 >> 6) & high) << 4))))
    return convert(bitcast(scales, np.uint8), np.int16), convert(bitcast(mins, np.uint8), np.int16)


@njit(inline="always")
def q3_K_scales(w, s):
    """The 16 signed scales of Q3_K (12 bytes at w[s:]; 6 bits each, biased by 32) as an
    int16 vector: the low 4 bits from bytes 0..7 (low nibbles for scales 0..7, high
    nibbles for 8..15), the high 2 bits from bytes 8..11 (2 bits per scale, by fours).
    Unpacked in four 32-bit lanes at once, as ggml does with its 32-bit words:

        lane i = (a_(i % 2) >> 4 (i // 2)) & 0x0F0F0F0F | ((a_2 >> 2 i) & 0x03030303) << 4
    """
    words = bitcast(vload(w, s - 4, 16), np.uint32)     # [4 bytes before, a_0, a_1, a_2]
    low = concat(part(words, 1, 2), part(words, 1, 2)) >> from_tuple(
        (np.uint32(0), np.uint32(0), np.uint32(4), np.uint32(4)))
    high = repeat(part(words, 3, 1), 4) >> from_tuple((np.uint32(0), np.uint32(2), np.uint32(4), np.uint32(6)))
    packed = (low & np.uint32(0x0F0F0F0F)) | ((high & np.uint32(0x03030303)) << np.uint32(4))
    return convert(bitcast(packed, np.uint8), np.int16) - np.int16(32)


@njit(inline="always")
def scale_pair(scales, g):
    """The int16 scales of one 32-weight slice made of sub-blocks g and g + 1 (16 weights
    each), as madd wants them: 8 copies of scales[g], then 8 of scales[g + 1]."""
    return concat(splat(scales[g], 8), splat(scales[g + 1], 8))


# ---------------------------------------------------------------------- dequantization
# A 32-weight slice at a time: its quants unpacked into one vector as for the products,
# then widened to float32 sixteen at a time and put through the reference's float
# operations (no FMA: LLVM does not fuse a separate multiply and subtract).

@njit(inline="always")
def store_slice(y, yo, q, offset, dl_a, dl_b, ml_a, ml_b, with_min):
    """y[yo:yo + 32] = dl * float(q - offset) (- ml if with_min) for the 32 quants q
    (uint8 vector); dl_a, ml_a for the first 16 weights, dl_b, ml_b for the last 16."""
    v = convert(q, np.int32) - np.int32(offset)
    first = splat(dl_a, 16) * convert(part(v, 0, 16), np.float32)
    second = splat(dl_b, 16) * convert(part(v, 16, 16), np.float32)
    if with_min:
        first = first - splat(ml_a, 16)
        second = second - splat(ml_b, 16)
    vstore(y, yo, first)
    vstore(y, yo + 16, second)


@njit(inline="always")
def dequantize_row_q2_K(w, y):
    """Q2_K row w into y: y = (d sc) q - (dmin m), 4-bit sc and m."""
    for b in range(y.size // 256):
        o = 84 * b
        d, dmin = f16(w, o + 80), f16(w, o + 82)
        for h in range(2):
            q = vload(w, o + 16 + 32 * h, 32)
            for k in range(4):
                g = o + 8 * h + 2 * k                           # scale bytes of l < 16, l >= 16
                store_slice(y, 256 * b + 128 * h + 32 * k, (q >> np.uint8(2 * k)) & np.uint8(3), 0,
                            d * np.float32(w[g] & 15), d * np.float32(w[g + 1] & 15),
                            dmin * np.float32(w[g] >> 4), dmin * np.float32(w[g + 1] >> 4), True)


@njit(inline="always")
def dequantize_row_q3_K(w, y):
    """Q3_K row w into y: y = (d S) (q - 4), q = low 2 bits + 4 * the hmask bit."""
    for b in range(y.size // 256):
        o = 110 * b
        d = f16(w, o + 108)
        scales = q3_K_scales(w, o + 96)
        hmask = vload(w, o, 32)
        for h in range(2):
            q = vload(w, o + 32 + 32 * h, 32)
            for k in range(4):
                g = 8 * h + 2 * k
                low = (q >> np.uint8(2 * k)) & np.uint8(3)
                high = (hmask >> np.uint8(4 * h + k)) & np.uint8(1)
                store_slice(y, 256 * b + 128 * h + 32 * k, low | (high << np.uint8(2)), 4,
                            d * np.float32(scales[g]), d * np.float32(scales[g + 1]),
                            np.float32(0), np.float32(0), False)


@njit(inline="always")
def dequantize_row_k4(w, y, type_size, qh_at, qs_at):
    """Q4_K (qh_at < 0) or Q5_K row w into y: y = (d sc) q - (dmin m)."""
    for b in range(y.size // 256):
        o = type_size * b
        d, dmin = f16(w, o), f16(w, o + 2)
        scales, mins = scale_min_k4(w, o + 4)
        qh = vload(w, o + max(qh_at, 0), 32)
        for c in range(4):
            q = vload(w, o + qs_at + 32 * c, 32)
            for nib in range(2):                                # sub-block j = 2c + nib
                j = 2 * c + nib
                v = (q >> np.uint8(4 * nib)) & np.uint8(15)
                if qh_at >= 0:
                    v = v | (((qh >> np.uint8(j)) & np.uint8(1)) << np.uint8(4))
                dl, ml = d * np.float32(scales[j]), dmin * np.float32(mins[j])
                store_slice(y, 256 * b + 32 * j, v, 0, dl, dl, ml, ml, True)


@njit(inline="always")
def dequantize_row_q6_K(w, y):
    """Q6_K row w into y: y = (d scales_j) (q - 32), q = 4 bits of ql + 2 of qh."""
    for b in range(y.size // 256):
        o = 210 * b
        d = f16(w, o + 208)
        for h in range(2):
            ql0, ql1, qh = vload(w, o + 64 * h, 32), vload(w, o + 64 * h + 32, 32), vload(w, o + 128 + 32 * h, 32)
            for k in range(4):
                low = ((ql0 if k % 2 == 0 else ql1) >> np.uint8(4 * (k // 2))) & np.uint8(15)
                high = (qh >> np.uint8(2 * k)) & np.uint8(3)
                g = o + 192 + 8 * h + 2 * k
                store_slice(y, 256 * b + 128 * h + 32 * k, low | (high << np.uint8(4)), 32,
                            d * np.float32(np.int8(w[g])), d * np.float32(np.int8(w[g + 1])),
                            np.float32(0), np.float32(0), False)


@njit(parallel=True, cache=True)
def dequantize_rows(kind, W, rows, out):
    """out[i] = row rows[i] of W (uint8 (n_rows, row_bytes) of type kind), decoded."""
    for i in prange(rows.size):
        w, y = W[rows[i]], out[i]
        if kind == Q2_K:
            dequantize_row_q2_K(w, y)
        elif kind == Q3_K:
            dequantize_row_q3_K(w, y)
        elif kind == Q4_K:
            dequantize_row_k4(w, y, 144, -1, 16)
        elif kind == Q5_K:
            dequantize_row_k4(w, y, 176, 16, 48)
        else:
            dequantize_row_q6_K(w, y)


# ---------------------------------------------------------------------- block lanes
# block_lanes_<type>(w, o, x, xo, ...): the super-block at byte o of weight row w times the
# activation quants x[xo:xo + 256] (int8), in ggml's 8 int32 lanes.  Weight 128h + 32k + l
# of the 2-bit, 3-bit and 6-bit types sits in plane (h, k) at byte l of its half; the
# 4- and 5-bit types store 64 weights per 32 bytes (low nibbles, then high nibbles).
# Two 32-weight slices go through each multiply-add (64 lanes: one AVX-512 instruction,
# or two AVX2 ones), and their lanes are added at the end (fold).

@njit(inline="always")
def pair_dot(q, x, xo, scales):
    """64 unsigned quants q (two 32-weight slices) times x[xo:xo + 64], scaled by
    sub-block (scales: int16, one per pair of quants): the 8 lanes of each slice."""
    return madd(maddubs(q, vload(x, xo, 64)), scales)


@njit(inline="always")
def fold(lanes):
    """The lanes of two slices (16 int32) added into ggml's 8."""
    return part(lanes, 0, 8) + part(lanes, 8, 8)


@njit(inline="always")
def scale_quad(scales, g):
    """The scales of two slices of 16-weight sub-blocks g .. g + 3, as pair_dot wants
    them: 8 copies of each."""
    return concat(scale_pair(scales, g), scale_pair(scales, g + 2))


@njit(inline="always")
def block_lanes_q2_K(w, o, x, xo, bs, bo):
    """-> (lanes of weights 0..127, lanes of 128..255, min lanes): min lane l is
    m_2l bsum_2l + m_2l+1 bsum_2l+1 (bsums: the 16 int16 sums of the activation block)."""
    packed = vload(w, o, 16)
    scales = convert(packed & np.uint8(15), np.int16)
    mins = madd(convert(packed >> np.uint8(4), np.int16), vload(bs, bo, 16))
    three = np.uint8(3)
    q = vload(w, o + 16, 32)
    half0 = (pair_dot(concat(q, q >> np.uint8(2)) & three, x, xo, scale_quad(scales, 0))
             + pair_dot(concat(q >> np.uint8(4), q >> np.uint8(6)) & three, x, xo + 64, scale_quad(scales, 4)))
    q = vload(w, o + 48, 32)
    half1 = (pair_dot(concat(q, q >> np.uint8(2)) & three, x, xo + 128, scale_quad(scales, 8))
             + pair_dot(concat(q >> np.uint8(4), q >> np.uint8(6)) & three, x, xo + 192, scale_quad(scales, 12)))
    return fold(half0), fold(half1), mins


@njit(inline="always")
def q3_K_planes(q2, unset, h, kk, x, xo, scales):
    """Planes k = 2kk, 2kk + 1 of half h: the value low + 4 * high - 4 as ggml forms it,
    maddubs of the low 2 bits minus maddubs of 4 where the high bit is clear (both
    exact, far from saturation).  q2: the half's low bits, and the same shifted by 2
    plane; unset: hmask inverted, and the same shifted by one plane."""
    low = (q2 >> np.uint8(4 * kk)) & np.uint8(3)
    minus4 = ((unset >> np.uint8(4 * h + 2 * kk)) & np.uint8(1)) << np.uint8(2)
    xs = vload(x, xo + 128 * h + 64 * kk, 64)
    return madd(maddubs(low, xs) - maddubs(minus4, xs), scale_quad(scales, 8 * h + 4 * kk))


@njit(inline="always")
def block_lanes_q3_K(w, o, x, xo):
    scales = q3_K_scales(w, o + 96)
    hmask = vload(w, o, 32)
    unset = concat(hmask, hmask >> np.uint8(1)) ^ np.uint8(255)
    q = vload(w, o + 32, 32)
    q2 = concat(q, q >> np.uint8(2))
    half0 = q3_K_planes(q2, unset, 0, 0, x, xo, scales) + q3_K_planes(q2, unset, 0, 1, x, xo, scales)
    q = vload(w, o + 64, 32)
    q2 = concat(q, q >> np.uint8(2))
    half1 = q3_K_planes(q2, unset, 1, 0, x, xo, scales) + q3_K_planes(q2, unset, 1, 1, x, xo, scales)
    return fold(half0 + half1)


@njit(inline="always")
def k4_chunk(w, o, c, qh, with_qh, x, xo, scales):
    """The 64 weights of chunk c (32 bytes: sub-block 2c in the low nibbles, 2c + 1 in
    the high ones; Q5_K's fifth bits at bits 2c and 2c + 1 of qh) times x: 16 lanes."""
    q = vload(w, o + 32 * c, 32)
    v = concat(q, q >> np.uint8(4)) & np.uint8(15)
    if with_qh:
        v = v | ((concat(qh >> np.uint8(2 * c), qh >> np.uint8(2 * c + 1)) & np.uint8(1)) << np.uint8(4))
    return pair_dot(v, x, xo + 64 * c, concat(splat(scales[2 * c], 16), splat(scales[2 * c + 1], 16)))


@njit(inline="always")
def block_lanes_k4(w, o, x, xo, bs32, bo, qh_at, qs_at):
    """Q4_K (qh_at < 0) or Q5_K -> (lanes of the two slices of chunk c = 0..3, 16 each;
    min lanes): min lane p is m_2p bsum32_2p + m_2p+1 bsum32_2p+1 (bsum32: the activation
    sums by 32), the 4 lanes ggml's Q4_K vec_dot keeps its mins in."""
    scales, mins = scale_min_k4(w, o + 4)
    with_qh = qh_at >= 0
    qh = vload(w, o + max(qh_at, 0), 32)
    return (k4_chunk(w, o + qs_at, 0, qh, with_qh, x, xo, scales),
            k4_chunk(w, o + qs_at, 1, qh, with_qh, x, xo, scales),
            k4_chunk(w, o + qs_at, 2, qh, with_qh, x, xo, scales),
            k4_chunk(w, o + qs_at, 3, qh, with_qh, x, xo, scales),
            madd(mins, vload(bs32, bo, 8)))


@njit(inline="always")
def block_lanes_q6_K(w, o, x, xo, bs, bo):
    """Q6_K's quants 0..63 (low 4 bits in ql, high 2 in qh); the bias 32 comes out of
    each lane as 32 (S_2l bsum_2l + S_2l+1 bsum_2l+1), ggml's q8sclsub."""
    scales = convert(bitcast(vload(w, o + 192, 16), np.int8), np.int16)
    fifteen = np.uint8(15)
    lanes = splat(np.int32(0), 16)
    for h in range(2):
        ql, qh = vload(w, o + 64 * h, 64), vload(w, o + 128 + 32 * h, 32)   # ql: planes 0, 1
        q01 = (ql & fifteen) | concat((qh & np.uint8(3)) << np.uint8(4), (qh & np.uint8(12)) << np.uint8(2))
        q23 = (ql >> np.uint8(4)) | concat(qh & np.uint8(48), (qh >> np.uint8(2)) & np.uint8(48))
        lanes = lanes + (pair_dot(q01, x, xo + 128 * h, scale_quad(scales, 8 * h))
                         + pair_dot(q23, x, xo + 128 * h + 64, scale_quad(scales, 8 * h + 4)))
    return fold(lanes) - (madd(vload(bs, bo, 16), scales) << np.int32(5))


# ---------------------------------------------------------------------- the float orders

@njit(inline="always")
def vec_dot_symmetric_q8_K(kind, how, w, x, bs, xd):
    """Q3_K or Q6_K weight row w times one activation row (x: its bytes as int8, bs: as
    int16, xd: d per block): the vec_dot's 8 float lanes, or the tiled chain."""
    type_size, d_at = (110, 108) if kind == Q3_K else (210, 208)
    acc = splat(np.float32(0), 8)
    chain = np.float32(0)
    for b in range(xd.size):
        if kind == Q3_K:
            lanes = block_lanes_q3_K(w, type_size * b, x, 292 * b + 4)
        else:
            lanes = block_lanes_q6_K(w, type_size * b, x, 292 * b + 4, bs, 146 * b + 130)
        dx, dy = f16(w, type_size * b + d_at), xd[b]
        if how == TILED:
            chain = fma32(np.float32(hsum(lanes)) * dx, dy, chain)
        else:
            acc = vfma(splat(dy * dx, 8), convert(lanes, np.float32), acc)
    return chain if how == TILED else hsum8(acc)


@njit(inline="always")
def vec_dot_k4_q8_K(kind, how, w, x, bs32, xd):
    """Q4_K or Q5_K weight row w times one activation row (bs32: the activation sums by
    32, 8 per block) in the order `how`."""
    type_size, qh_at, qs_at = (144, -1, 16) if kind == Q4_K else (176, 16, 48)
    acc = splat(np.float32(0), 8)
    acc_min = splat(np.float32(0), 4)
    chain = chain_min = extra = np.float32(0)
    for b in range(xd.size):
        p0, p1, p2, p3, mins = block_lanes_k4(w, type_size * b, x, 292 * b + 4, bs32, 8 * b, qh_at, qs_at)
        dx, dmin, dy = f16(w, type_size * b), f16(w, type_size * b + 2), xd[b]
        if how == GEMV or how == GEMM:                  # repack.cpp's chains (Q4_K only)
            if how == GEMV:
                chain = fma32(np.float32(hsum((p0 + p1) + (p2 + p3))), dx * dy, chain)
                chain_min = fma32(np.float32(hsum(mins)), dmin * dy, chain_min)
            else:                                       # by 64 weights
                chain = fma32(np.float32(hsum(p0)), dx * dy, chain)
                chain_min = fma32(np.float32(mins[0]), dmin * dy, chain_min)
                chain = fma32(np.float32(hsum(p1)), dx * dy, chain)
                chain_min = fma32(np.float32(mins[1]), dmin * dy, chain_min)
                chain = fma32(np.float32(hsum(p2)), dx * dy, chain)
                chain_min = fma32(np.float32(mins[2]), dmin * dy, chain_min)
                chain = fma32(np.float32(hsum(p3)), dx * dy, chain)
                chain_min = fma32(np.float32(mins[3]), dmin * dy, chain_min)
        elif how == TILED:
            r = fma32(-dmin, np.float32(hsum(mins)), np.float32(hsum((p0 + p1) + (p2 + p3))) * dx)
            chain = fma32(r, dy, chain)
        else:                                           # vec_dot
            acc = vfma(splat(dy * dx, 8), convert(fold((p0 + p1) + (p2 + p3)), np.float32), acc)
            if kind == Q4_K:                            # the mins in 4 lanes of their own
                acc_min = vfma(splat(-dy * dmin, 4), convert(mins, np.float32), acc_min)
            else:                                       # Q5_K: in one float
                extra = fma32(-dy * dmin, np.float32(hsum(mins)), extra)
    if how == GEMV or how == GEMM:
        return chain - chain_min
    if how == TILED:
        return chain
    if kind == Q4_K:
        extra = (acc_min[0] + acc_min[2]) + (acc_min[1] + acc_min[3])
    return hsum8(acc) + extra


@njit(inline="always")
def vec_dot_q2_K_q8_K(how, w, x, bs, xd):
    """Q2_K weight row w times one activation row (bs: its bytes as int16, for the bsums)
    in the order `how`."""
    acc = splat(np.float32(0), 8)
    chain = chain_min = np.float32(0)
    for b in range(xd.size):
        half0, half1, mins = block_lanes_q2_K(w, 84 * b, x, 292 * b + 4, bs, 146 * b + 130)
        dx, dmin, dy = f16(w, 84 * b + 80), f16(w, 84 * b + 82), xd[b]
        if how == GEMV:
            chain = fma32(np.float32(hsum(half0 + half1)), dx * dy, chain)
            chain_min = fma32(np.float32(hsum(mins)), dmin * dy, chain_min)
        elif how == GEMM:                               # by 128 weights
            chain = fma32(np.float32(hsum(half0)), dx * dy, chain)
            chain_min = fma32(np.float32(hsum(part(mins, 0, 4))), dmin * dy, chain_min)
            chain = fma32(np.float32(hsum(half1)), dx * dy, chain)
            chain_min = fma32(np.float32(hsum(part(mins, 4, 4))), dmin * dy, chain_min)
        elif how == TILED:
            r = fma32(-dmin, np.float32(hsum(mins)), np.float32(hsum(half0 + half1)) * dx)
            chain = fma32(r, dy, chain)
        else:                                           # vec_dot: its mins first, same lanes
            acc = vfma(splat(-dy * dmin, 8), convert(mins, np.float32), acc)
            acc = vfma(splat(dy * dx, 8), convert(half0 + half1, np.float32), acc)
    if how == GEMV or how == GEMM:
        return chain - chain_min
    return chain if how == TILED else hsum8(acc)


@njit(inline="always")
def vec_dot(kind, how, w, x, bs, bs32, xd):
    """Weight row w times one activation row in the float order `how` (jit.py): x is the
    block_q8_K row as int8, bs the same bytes as int16 (bsums), bs32 the activation
    sums by 32, xd the d of each block."""
    if kind == Q4_K or kind == Q5_K:
        return vec_dot_k4_q8_K(kind, how, w, x, bs32, xd)
    if kind == Q2_K:
        return vec_dot_q2_K_q8_K(how, w, x, bs, xd)
    return vec_dot_symmetric_q8_K(kind, how, w, x, bs, xd)


@njit(parallel=True, cache=True)
def matmul_q8_K(kind, W, xq_f32, xq_i8, xq_i16, out):
    """out (T, N) = products of weight rows W (N, row_bytes) with block_q8_K rows, each in
    the order llama.cpp's CPU backend gives it (jit.order).

    xq_f32/xq_i8/xq_i16 are views of the same activation bytes (T, n_blocks * 292); the
    kernels read the quants and bsums in place.  Per block, d and the sums by 32 (two
    bsums, for Q4_K and Q5_K's mins) are gathered once per product.
    """
    N = W.shape[0]
    T = xq_i8.shape[0]
    nb = xq_i8.shape[1] // 292
    xd = np.empty((T, nb), dtype=np.float32)
    bs32 = np.empty((T, nb * 8), dtype=np.int16)
    for t in range(T):
        for b in range(nb):
            xd[t, b] = xq_f32[t, 73 * b]
            for j in range(8):
                bs32[t, 8 * b + j] = xq_i16[t, 146 * b + 130 + 2 * j] + xq_i16[t, 146 * b + 131 + 2 * j]
    n_tasks = (N + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(n_tasks):
        for n in range(task * ROWS_PER_TASK, min(N, (task + 1) * ROWS_PER_TASK)):
            w = W[n]
            for t in range(T):
                out[t, n] = vec_dot(kind, order(kind, N, T, t), w, xq_i8[t], xq_i16[t], bs32[t], xd[t])

"""Fast layer of the codebook i-quants: IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M.

Reference, layouts and formulas: ``iq_grid.py``; the grids: ``iq_grid_points.py``.
``kind`` is the ggml type id.

    group_<type>(w, o, m)          group m (8 weights) of the block at byte o: its grid
                                   index and the bits that go with it (signs, or the
                                   shift), as the block stores them
    sub_block_<type>(w, o, ib)     the 32 weights of sub-block ib as two uint8 vectors:
                                   the grid bytes (magnitudes; IQ1: |q|, 0 or 1) and the
                                   signs as 0x00 / 0xff masks, ggml's ksigns64
    dequantize_row_<type>(w, y)    one row decoded, float for float identical to the
                                   reference; dequantize_rows(kind, W, rows, out) in
                                   parallel over rows
    block_lanes_<type>(w, o, x, xo, ...)
                                   the block times its Q8_K activations x[xo:xo + 256]:
                                   the exact integer products in the 8 int32 lanes of
                                   ggml's AVX2 vec_dot (lane l: the weights e with
                                   (e % 32) // 4 == l), scales applied
    vec_dot_iq2_q8_K, vec_dot_iq1_q8_K (kind, how, w, ...)
                                   a weight row times an activation row in the float
                                   order ``how``: ggml_vec_dot_<type>_q8_K's (one token,
                                   prompts below 8 rows) or the tiled matmul's (8 rows
                                   and more; kernels/ggml_order.c draws both)
    matmul_q8_K(kind, W, ...)      out[t, n] = W[n] . X[t], each product in the order
                                   llama.cpp's CPU backend gives it (jit.order)

The grids are looked up 8 bytes (one point) at a time, as ggml's AVX2 code builds its
registers with _mm256_set_epi64x.  The signs go onto the activations, not the weights
(ggml's _mm256_sign_epi8): x ^ mask - mask negates the activation bytes of negative
weights, and maddubs multiplies the unsigned grid bytes by them -- exact, since the
grid bytes are at most 43 and the activations at most 127 in magnitude (2 x 43 x 127 <
32767).  IQ1's -1, 0, +1 go the same way: |q| (0 or 1) times the signed activations.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..ggml import GGMLType
from .iq_grid_points import iq1s_grid, iq2s_grid, iq2xs_grid, iq2xxs_grid, kmask_iq2xs, ksigns64
from .jit import (ROWS_PER_TASK, TILED, bitcast, concat, convert, f16,
                  f16_to_f32, f32_to_f16, fma32, from_tuple, hsum, hsum8, madd, maddubs, nonzero, order,
                  nearest_int, part, repeat, splat, u16, u32, vfma, vload, vstore)
from .q8 import q8_K_scales

IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M = (int(GGMLType.IQ2_XXS), int(GGMLType.IQ2_XS), int(GGMLType.IQ2_S),
                                        int(GGMLType.IQ1_S), int(GGMLType.IQ1_M))

# the tables, flat: point g is bytes 8g .. 8g + 7 (numba keeps global arrays as constants)
IQ2XXS_GRID, IQ2XS_GRID, IQ2S_GRID = iq2xxs_grid.reshape(-1), iq2xs_grid.reshape(-1), iq2s_grid.reshape(-1)
IQ1S_GRID = iq1s_grid.reshape(-1)
IQ1S_MAGNITUDE = np.abs(iq1s_grid).astype(np.uint8).reshape(-1)             # |q|: 0 or 1
IQ1S_NEGATIVE = np.where(iq1s_grid < 0, 0xFF, 0).astype(np.uint8).reshape(-1)
KSIGNS64 = ksigns64.reshape(-1)
SIGN_BITS = np.tile(kmask_iq2xs, 4)                  # lane i tests bit i % 8 of its group's byte
IQ1S_DELTA = np.float32(0.125)


# ---------------------------------------------------------------------- the groups of a block

@njit(inline="always")
def group_iq2_xxs(w, o, m):
    """(grid index, 7-bit sign index) of group m: byte m % 4 of sub-block m // 4's 8 bytes,
    and bits 7 (m % 4) .. of its u32 at byte 4."""
    ib, l = m // 4, m % 4
    return np.int64(w[o + 2 + 8 * ib + l]), np.int64((u32(w, o + 6 + 8 * ib) >> np.uint32(7 * l)) & np.uint32(127))


@njit(inline="always")
def group_iq2_xs(w, o, m):
    """(grid index, 7-bit sign index) of group m: the uint16 qs[m], 9 + 7 bits."""
    v = u16(w, o + 2 + 2 * m)
    return np.int64(v & np.uint16(511)), np.int64(v >> np.uint16(9))


@njit(inline="always")
def group_iq2_s(w, o, m):
    """grid index of group m: qs[m] | 2 bits of qh[m // 4] << 8 (its sign byte is signs[m])."""
    return np.int64(w[o + 2 + m]) | ((np.int64(w[o + 66 + m // 4]) >> (2 * (m % 4))) & 3) << 8


@njit(inline="always")
def group_iq1_s(w, o, m):
    """(grid index, delta negative) of group m: qs[m] | 3 bits of qh[m // 4] << 8; the
    sub-block's bit 15."""
    qh = np.int64(u16(w, o + 34 + 2 * (m // 4)))
    return np.int64(w[o + 2 + m]) | ((qh >> (3 * (m % 4))) & 7) << 8, (qh >> 15) & 1


@njit(inline="always")
def group_iq1_m(w, o, m):
    """(grid index, delta negative) of group m: qs[m] | nibble m % 2 of qh[m // 2]: its low
    3 bits << 8, and bit 3."""
    nibble = (np.int64(w[o + 32 + m // 2]) >> (4 * (m % 2))) & 15
    return np.int64(w[o + m]) | (nibble & 7) << 8, nibble >> 3


@njit(inline="always")
def points4(grid, g0, g1, g2, g3):
    """The points g0 .. g3 of a flat grid table: 32 bytes in weight order."""
    return concat(concat(vload(grid, 8 * g0, 8), vload(grid, 8 * g1, 8)),
                  concat(vload(grid, 8 * g2, 8), vload(grid, 8 * g3, 8)))


@njit(inline="always")
def sub_block_iq2_xxs(w, o, ib):
    g0, s0 = group_iq2_xxs(w, o, 4 * ib)
    g1, s1 = group_iq2_xxs(w, o, 4 * ib + 1)
    g2, s2 = group_iq2_xxs(w, o, 4 * ib + 2)
    g3, s3 = group_iq2_xxs(w, o, 4 * ib + 3)
    return points4(IQ2XXS_GRID, g0, g1, g2, g3), points4(KSIGNS64, s0, s1, s2, s3)


@njit(inline="always")
def sub_block_iq2_xs(w, o, ib):
    g0, s0 = group_iq2_xs(w, o, 4 * ib)
    g1, s1 = group_iq2_xs(w, o, 4 * ib + 1)
    g2, s2 = group_iq2_xs(w, o, 4 * ib + 2)
    g3, s3 = group_iq2_xs(w, o, 4 * ib + 3)
    return points4(IQ2XS_GRID, g0, g1, g2, g3), points4(KSIGNS64, s0, s1, s2, s3)


@njit(inline="always")
def sub_block_iq2_s(w, o, ib):
    """the sign bytes signs[4 ib .. 4 ib + 3], each spread over its 8 lanes and tested"""
    signs = nonzero(repeat(vload(w, o + 34 + 4 * ib, 4), 8) & vload(SIGN_BITS, 0, 32))
    return (points4(IQ2S_GRID, group_iq2_s(w, o, 4 * ib), group_iq2_s(w, o, 4 * ib + 1),
                    group_iq2_s(w, o, 4 * ib + 2), group_iq2_s(w, o, 4 * ib + 3)),
            splat(np.uint8(0), 32) - signs)


@njit(inline="always")
def sub_block_iq1(group, w, o, ib):
    """IQ1_S or IQ1_M (group = group_iq1_s / group_iq1_m): (|q|, q < 0 masks, the four
    groups' delta bits: bit l for group 4 ib + l)."""
    g0, n0 = group(w, o, 4 * ib)
    g1, n1 = group(w, o, 4 * ib + 1)
    g2, n2 = group(w, o, 4 * ib + 2)
    g3, n3 = group(w, o, 4 * ib + 3)
    return (points4(IQ1S_MAGNITUDE, g0, g1, g2, g3), points4(IQ1S_NEGATIVE, g0, g1, g2, g3),
            n0 | n1 << 1 | n2 << 2 | n3 << 3)


@njit(inline="always")
def ls_iq2(w, at, ib, per_16):
    """The two 4-bit scales of sub-block ib: the top nibble of IQ2_XXS's u32 (at byte
    at + 8 ib; per_16 False: both halves alike), or the byte scales[ib] of IQ2_XS and
    IQ2_S (at byte at + ib)."""
    if per_16:
        return np.int64(w[at + ib] & 15), np.int64(w[at + ib] >> 4)
    ls = np.int64(u32(w, at + 8 * ib) >> np.uint32(28))
    return ls, ls


@njit(inline="always")
def ls_iq1(kind, w, o, ib):
    """The two 3-bit scales (of its two halves) of sub-block ib."""
    if kind == IQ1_S:
        ls = (np.int64(u16(w, o + 34 + 2 * ib)) >> 12) & 7
        return ls, ls
    sc = np.int64(u16(w, o + 48 + 2 * (ib // 2)))
    return (sc >> (6 * (ib % 2))) & 7, (sc >> (6 * (ib % 2) + 3)) & 7


@njit(inline="always")
def iq1_d(kind, w, o):
    """The fp16 d of an IQ1_S block; IQ1_M's from the top nibbles of its scale words."""
    if kind == IQ1_S:
        return f16(w, o)
    bits = np.uint16(0)
    for k in range(4):
        bits |= (u16(w, o + 48 + 2 * k) >> np.uint16(12)) << np.uint16(4 * k)
    return f16_to_f32(bits)


# ---------------------------------------------------------------------- dequantization

@njit(inline="always")
def signed(magnitudes, masks):
    """magnitudes (uint8) with the lanes of masks 0xff negated, as int8."""
    m = bitcast(masks, np.int8)
    return (bitcast(magnitudes, np.int8) ^ m) - m


@njit(inline="always")
def store_half(y, yo, scale, values):
    """y[yo:yo + 16] = scale * values (16 float32)."""
    vstore(y, yo, splat(scale, 16) * values)


@njit(inline="always")
def dequantize_row_iq2(kind, w, y):
    """IQ2_XXS, IQ2_XS or IQ2_S row w into y: db = d * (0.5 + ls) * 0.25, y = db * q."""
    type_size = 66 if kind == IQ2_XXS else 74 if kind == IQ2_XS else 82
    for b in range(y.size // 256):
        o = type_size * b
        d = f16(w, o)
        for ib in range(8):
            if kind == IQ2_XXS:
                mag, masks = sub_block_iq2_xxs(w, o, ib)
                ls0, ls1 = ls_iq2(w, o + 6, ib, False)
            elif kind == IQ2_XS:
                mag, masks = sub_block_iq2_xs(w, o, ib)
                ls0, ls1 = ls_iq2(w, o + 66, ib, True)
            else:
                mag, masks = sub_block_iq2_s(w, o, ib)
                ls0, ls1 = ls_iq2(w, o + 74, ib, True)
            q = convert(signed(mag, masks), np.float32)
            store_half(y, 256 * b + 32 * ib, d * (np.float32(0.5) + np.float32(ls0)) * np.float32(0.25),
                       part(q, 0, 16))
            store_half(y, 256 * b + 32 * ib + 16, d * (np.float32(0.5) + np.float32(ls1)) * np.float32(0.25),
                       part(q, 16, 16))


@njit(inline="always")
def dequantize_row_iq1(kind, w, y):
    """IQ1_S or IQ1_M row w into y: dl = d * (2 ls + 1), y = dl * (q + delta), a group of
    8 weights at a time."""
    type_size = 50 if kind == IQ1_S else 56
    for b in range(y.size // 256):
        o = type_size * b
        d = iq1_d(kind, w, o)
        for m in range(32):
            if kind == IQ1_S:
                g, negative = group_iq1_s(w, o, m)
            else:
                g, negative = group_iq1_m(w, o, m)
            ls0, ls1 = ls_iq1(kind, w, o, m // 4)
            dl = d * np.float32(2 * (ls1 if m % 4 >= 2 else ls0) + 1)
            q = convert(vload(IQ1S_GRID, 8 * g, 8), np.float32)
            delta = -IQ1S_DELTA if negative else IQ1S_DELTA
            vstore(y, 256 * b + 8 * m, splat(dl, 8) * (q + splat(delta, 8)))


@njit(parallel=True, cache=True)
def dequantize_rows(kind, W, rows, out):
    """out[i] = row rows[i] of W (uint8 (n_rows, row_bytes) of type kind), decoded."""
    for i in prange(rows.size):
        if kind == IQ1_S or kind == IQ1_M:
            dequantize_row_iq1(kind, W[rows[i]], out[i])
        else:
            dequantize_row_iq2(kind, W[rows[i]], out[i])


# ---------------------------------------------------------------------- block lanes
# Two sub-blocks (64 weights) per multiply-add, as k_numba does: one AVX-512 instruction
# or two AVX2 ones; their lanes are added at the end (fold).

@njit(inline="always")
def pair_dot(mag, masks, x, xo, scales):
    """64 grid bytes mag times the activations x[xo:xo + 64] with the signs of masks on
    them, scaled (scales: int16, one per pair of products): 16 int32 lanes."""
    m = bitcast(masks, np.int8)
    return madd(maddubs(mag, (vload(x, xo, 64) ^ m) - m), scales)


@njit(inline="always")
def fold(lanes):
    return part(lanes, 0, 8) + part(lanes, 8, 8)


@njit(inline="always")
def scales_64(a, b, c, d):
    """int16 scales of 64 weights, one per 16 weights (8 copies each, as madd wants them)."""
    return concat(concat(splat(np.int16(a), 8), splat(np.int16(b), 8)),
                  concat(splat(np.int16(c), 8), splat(np.int16(d), 8)))


@njit(inline="always")
def block_lanes_iq2(kind, w, o, x, xo):
    """IQ2_XXS, IQ2_XS or IQ2_S: the lanes of sum_e (2 ls + 1) q_e x_e (q: the signed grid
    bytes; 2 ls + 1 is ggml's integer scale)."""
    lanes = splat(np.int32(0), 16)
    for p in range(4):
        if kind == IQ2_XXS:
            mag0, masks0 = sub_block_iq2_xxs(w, o, 2 * p)
            mag1, masks1 = sub_block_iq2_xxs(w, o, 2 * p + 1)
            a, b = ls_iq2(w, o + 6, 2 * p, False)
            c, d = ls_iq2(w, o + 6, 2 * p + 1, False)
        elif kind == IQ2_XS:
            mag0, masks0 = sub_block_iq2_xs(w, o, 2 * p)
            mag1, masks1 = sub_block_iq2_xs(w, o, 2 * p + 1)
            a, b = ls_iq2(w, o + 66, 2 * p, True)
            c, d = ls_iq2(w, o + 66, 2 * p + 1, True)
        else:
            mag0, masks0 = sub_block_iq2_s(w, o, 2 * p)
            mag1, masks1 = sub_block_iq2_s(w, o, 2 * p + 1)
            a, b = ls_iq2(w, o + 74, 2 * p, True)
            c, d = ls_iq2(w, o + 74, 2 * p + 1, True)
        lanes = lanes + pair_dot(concat(mag0, mag1), concat(masks0, masks1), x, xo + 64 * p,
                                 scales_64(2 * a + 1, 2 * b + 1, 2 * c + 1, 2 * d + 1))
    return fold(lanes)


@njit(inline="always")
def block_lanes_iq1(kind, w, o, x, xo, bs, bo):
    """IQ1_S or IQ1_M -> (the lanes of sum_e (2 ls + 1) q_e x_e, the lanes of sum_e
    (2 ls + 1) s_e x_e where s_e = -1 or +1 is the sign of e's delta).  The delta lanes
    of IQ1_S (one delta per 32 weights) are only ever summed: in one lane each, from the
    activation sums by 16 bs[bo:bo + 16]."""
    lanes = splat(np.int32(0), 16)
    shift_lanes = splat(np.int32(0), 16)
    shift_sum = 0
    ones = splat(np.uint8(1), 64)
    for p in range(4):
        if kind == IQ1_S:
            mag0, neg0, n0 = sub_block_iq1(group_iq1_s, w, o, 2 * p)
            mag1, neg1, n1 = sub_block_iq1(group_iq1_s, w, o, 2 * p + 1)
        else:
            mag0, neg0, n0 = sub_block_iq1(group_iq1_m, w, o, 2 * p)
            mag1, neg1, n1 = sub_block_iq1(group_iq1_m, w, o, 2 * p + 1)
        a, b = ls_iq1(kind, w, o, 2 * p)
        c, d = ls_iq1(kind, w, o, 2 * p + 1)
        scales = scales_64(2 * a + 1, 2 * b + 1, 2 * c + 1, 2 * d + 1)
        lanes = lanes + pair_dot(concat(mag0, mag1), concat(neg0, neg1), x, xo + 64 * p, scales)
        if kind == IQ1_S:
            shift_sum += iq1_s_shifts(bs, bo, 2 * p, a, n0 & 1) + iq1_s_shifts(bs, bo, 2 * p + 1, c, n1 & 1)
        else:
            shift_masks = concat(shift_mask4(n0), shift_mask4(n1))
            shift_lanes = shift_lanes + pair_dot(ones, shift_masks, x, xo + 64 * p, scales)
    if kind == IQ1_S:
        zero = np.int32(0)
        return fold(lanes), from_tuple((np.int32(shift_sum), zero, zero, zero, zero, zero, zero, zero))
    return fold(lanes), fold(shift_lanes)


@njit(inline="always")
def shift_mask4(bits):
    """The delta bits of 4 groups (bit l: group l) as 32 lanes of 0x00 / 0xff, 8 per group."""
    return concat(concat(splat(np.uint8(255 * (bits & 1)), 8), splat(np.uint8(255 * (bits >> 1 & 1)), 8)),
                  concat(splat(np.uint8(255 * (bits >> 2 & 1)), 8), splat(np.uint8(255 * (bits >> 3)), 8)))


@njit(inline="always")
def iq1_s_shifts(bs, bo, ib, ls, negative):
    """sum_e (2 ls + 1) s_e x_e over IQ1_S's sub-block ib, whose weights share one delta
    sign: the two activation sums by 16 (bsums 2 ib, 2 ib + 1) times the signed scale."""
    scale = -(2 * ls + 1) if negative else 2 * ls + 1
    return (np.int64(bs[bo + 2 * ib]) + np.int64(bs[bo + 2 * ib + 1])) * scale


# ---------------------------------------------------------------------- the float orders

@njit(inline="always")
def vec_dot_iq2_q8_K(kind, how, w, x, xd):
    """IQ2_XXS, IQ2_XS or IQ2_S weight row w times one activation row (x: its bytes as
    int8, xd: d per block).  vec_dot: lanes = fma(d_w d_x, lanes_b, lanes); out =
    0.125 hsum(lanes).  Tiled: r = isum_b (d_w / 8); acc = fma(r, d_x, acc)."""
    type_size = 66 if kind == IQ2_XXS else 74 if kind == IQ2_XS else 82
    acc = splat(np.float32(0), 8)
    chain = np.float32(0)
    for b in range(xd.size):
        lanes = block_lanes_iq2(kind, w, type_size * b, x, 292 * b + 4)
        d = f16(w, type_size * b)
        if how == TILED:
            chain = fma32(np.float32(hsum(lanes)) * (d * np.float32(0.125)), xd[b], chain)
        else:
            acc = vfma(splat(d * xd[b], 8), convert(lanes, np.float32), acc)
    return chain if how == TILED else np.float32(0.125) * hsum8(acc)


@njit(inline="always")
def vec_dot_iq1_q8_K(kind, how, w, x, bs, xd):
    """IQ1_S or IQ1_M weight row w times one activation row (bs: its bytes as int16, for
    the bsums).  With d = d_x d_w per block:
        IQ1_S vec_dot  lanes = fma(d, lanes_b, lanes); s = s + d * (float) sum(shifts_b)
                       (fused on every x86, as GCC compiles ggml's loop);
                       out = hsum(lanes) + s / 8
        IQ1_M vec_dot  lanes = fma(d, lanes_b, lanes); shifts = fma(d, shift_lanes_b,
                       shifts); out = hsum(lanes) + hsum(shifts) / 8
        tiled          r = (8 sum(lanes_b) + sum(shifts_b)) (d_w / 8); acc = fma(r, d_x, acc)
    (a division by 8 is exact: fused or not, the last additions round once)."""
    type_size = 50 if kind == IQ1_S else 56
    acc = splat(np.float32(0), 8)
    acc_shift = splat(np.float32(0), 8)
    chain = shift_sum = np.float32(0)
    for b in range(xd.size):
        o = type_size * b
        lanes, shifts = block_lanes_iq1(kind, w, o, x, 292 * b + 4, bs, 146 * b + 130)
        dw = iq1_d(kind, w, o)
        if how == TILED:
            s1 = np.int32(np.int32(8) * hsum(lanes) + hsum(shifts))
            chain = fma32(np.float32(s1) * (dw * np.float32(0.125)), xd[b], chain)
            continue
        d = xd[b] * dw
        acc = vfma(splat(d, 8), convert(lanes, np.float32), acc)
        if kind == IQ1_M:
            acc_shift = vfma(splat(d, 8), convert(shifts, np.float32), acc_shift)
        else:
            shift_sum = fma32(d, np.float32(hsum(shifts)), shift_sum)
    if how == TILED:
        return chain
    if kind == IQ1_M:
        shift_sum = hsum8(acc_shift)
    return hsum8(acc) + IQ1S_DELTA * shift_sum


@njit(parallel=True, cache=True)
def matmul_q8_K(kind, W, xq_f32, xq_i8, xq_i16, out):
    """out (T, N) = products of weight rows W (N, row_bytes) with block_q8_K rows, each in
    the order llama.cpp's CPU backend gives it (jit.order).  xq_f32/xq_i8/xq_i16 are views
    of the same activation bytes (T, n_blocks * 292), read in place."""
    N = W.shape[0]
    T = xq_i8.shape[0]
    nb = xq_i8.shape[1] // 292
    xd = q8_K_scales(xq_f32, T, nb)
    n_tasks = (N + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(n_tasks):
        for n in range(task * ROWS_PER_TASK, min(N, (task + 1) * ROWS_PER_TASK)):
            for t in range(T):
                how = order(kind, N, T, t)
                if kind == IQ1_S or kind == IQ1_M:
                    out[t, n] = vec_dot_iq1_q8_K(kind, how, W[n], xq_i8[t], xq_i16[t], xd[t])
                else:
                    out[t, n] = vec_dot_iq2_q8_K(kind, how, W[n], xq_i8[t], xd[t])


# ---------------------------------------------------------------------- quantizers
# ggml's quantize_row_<type>_impl (ggml-quants.c) transcribed for numba, one block at a
# time and every float32 operation in ggml's order; iq_grid.py has the numpy reference
# (vectorized over sub-blocks) and says what each step does.  The grid tables come from
# iq_grid.grid_maps: pos (points, 8) int8 the coordinates 2 l + 1, kmap and kneighbors.

F32 = np.float32
FLT_MAX = np.float32(3.4028234663852886e+38)


@njit
def make_qp_quants(n, nmax, x, L, weight):
    """ggml's make_qp_quants: the scale of levels 0..nmax for x[:n], L a uint8 scratch."""
    max_x = F32(0)
    for i in range(n):
        max_x = max_x if max_x > x[i] else x[i]
    if max_x < F32(1e-15):
        return F32(0)
    iscale = F32(nmax) / max_x
    for i in range(n):
        L[i] = np.uint8(nearest_int(iscale * x[i]) & 255)
    scale = F32(1) / iscale
    best_mse = F32(0)
    for i in range(n):
        diff = x[i] - scale * F32(L[i])
        best_mse += weight[i] * diff * diff
    for step in range(-4, 5):
        if step == 0:
            continue
        iscale_is = (F32(0.1) * F32(step) + F32(nmax)) / max_x
        scale_is = F32(1) / iscale_is
        mse = F32(0)
        for i in range(n):
            diff = x[i] - scale_is * F32(min(nmax, nearest_int(iscale_is * x[i])))
            mse += weight[i] * diff * diff
        if mse < best_mse:
            best_mse = mse
            iscale = iscale_is
    sumlx = suml2 = F32(0)
    for i in range(n):
        level = min(nmax, nearest_int(iscale * x[i]))
        L[i] = np.uint8(level & 255)
        sumlx += weight[i] * x[i] * F32(level)
        suml2 += weight[i] * F32(level) * F32(level)
    for _ in range(5):
        changed = 0
        for i in range(n):
            w, level = weight[i], F32(L[i])
            slx = sumlx - w * x[i] * level
            sl2 = suml2 - w * level * level
            if slx > 0 and sl2 > 0:
                new_l = min(nmax, nearest_int(x[i] * sl2 / slx))
                if new_l != np.int32(L[i]):
                    slx += w * x[i] * F32(new_l)
                    sl2 += w * F32(new_l) * F32(new_l)
                    if slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = np.uint8(new_l & 255)
                        sumlx, suml2 = slx, sl2
                        changed += 1
        if changed == 0:
            break
    return sumlx / suml2 if suml2 > 0 else F32(0)


@njit(inline="always")
def code_of(L, o):
    """the 16-bit point of the levels L[o:o + 8]"""
    u = 0
    for i in range(8):
        u |= np.int64(L[o + i]) << (2 * i)
    return u


@njit
def find_best_neighbour(kneighbors, row, pos, xval, weight, o, scale, values, L):
    """ggml's iq2_find_best_neighbour (values None: q = pos) and iq1_find_best_neighbour2
    (q = values[level]): of the neighbours in kneighbors[row], the point of least sum_i
    weight_i (scale q_i - xval_i)^2 over the group at o; its levels into L[o:o + 8]."""
    best_d2 = FLT_MAX
    index = -1
    for j in range(kneighbors.shape[1]):
        p = kneighbors[row, j]
        if p < 0:
            break
        d2 = F32(0)
        for i in range(8):
            q = F32(pos[p, i]) if values is None else values[(pos[p, i] - 1) // 2]
            diff = scale * q - xval[o + i]
            d2 += weight[o + i] * diff * diff
        if d2 < best_d2:
            best_d2 = d2
            index = p
    for i in range(8):
        L[o + i] = (pos[index, i] - 1) // 2
    return index


@njit
def quantize_block_iq2(kind, x, qw, has_qw, y, pos, kmap, kneighbors, scratch_f, scratch_i):
    """quantize_row_iq2_{xxs,xs,s}_impl on one block x[:256] (qw: its importance) -> y."""
    sub = 32 if kind == IQ2_XXS else 16
    y[:] = 0
    sumx2 = F32(0)
    for i in range(256):
        sumx2 += x[i] * x[i]
    sigma2 = (F32(2) * sumx2 if kind == IQ2_S else sumx2) / F32(256)
    weight, waux, xval = scratch_f[0], scratch_f[1], scratch_f[2]
    scales = scratch_f[3]
    L, Laux, Lqp = scratch_i[0], scratch_i[1], scratch_i[2]
    signs = np.zeros(4, dtype=np.int64)
    on_grid = np.ones(4, dtype=np.bool_)
    trial_on_grid = np.ones(4, dtype=np.bool_)
    max_scale = F32(0)
    for ib in range(256 // sub):
        o = sub * ib
        for i in range(sub):
            xi = x[o + i]
            weight[i] = qw[o + i] * np.sqrt(sigma2 + xi * xi) if has_qw else F32(0.25) * sigma2 + xi * xi
            waux[i] = np.sqrt(weight[i])
        for k in range(sub // 8):
            n_flip = 0
            s = 0
            for i in range(8):
                xi = x[o + 8 * k + i]
                if xi >= 0:
                    xval[8 * k + i] = xi
                else:
                    xval[8 * k + i] = -xi
                    n_flip += 1
                    s |= 1 << i
            if kind != IQ2_S and n_flip % 2:                # the parity rule
                imin = 0
                least = weight[8 * k] * x[o + 8 * k] * x[o + 8 * k]
                for i in range(1, 8):
                    ax = weight[8 * k + i] * x[o + 8 * k + i] * x[o + 8 * k + i]
                    if ax < least:
                        least = ax
                        imin = i
                xval[8 * k + imin] = -xval[8 * k + imin]
                s ^= 1 << imin
            signs[k] = s & 127 if kind != IQ2_S else s
        max_x = xval[0]
        for i in range(1, sub):
            max_x = max_x if max_x > xval[i] else xval[i]
        for i in range(sub):
            L[i] = 0
        if max_x < (F32(1e-8) if kind == IQ2_S else F32(1e-15)):
            scales[ib] = 0
            continue
        if kind == IQ2_XXS:
            scale = make_qp_quants(32, 4, xval, Lqp, weight)
            span = scale * F32(3)
            if span <= 0:
                scales[ib] = 0
                continue
            first, last = -6, 6
        else:
            scale = max_x / F32(5)
            span = max_x
            first, last = -9, 9
        best = F32(0)
        for k in range(4):
            on_grid[k] = True
        for step in range(first, last + 1):
            id_scale = (F32(5) + F32(step) * F32(0.1)) / span
            this_scale = F32(1) / id_scale
            for k in range(sub // 8):
                for i in range(8):
                    level = nearest_int(F32(0.5) * (id_scale * xval[8 * k + i] - F32(1)))
                    Laux[8 * k + i] = max(0, min(2, level))
                u = code_of(Laux, 8 * k)
                trial_on_grid[k] = kmap[u] >= 0
                if kmap[u] < 0:
                    find_best_neighbour(kneighbors, -1 - kmap[u], pos, xval, waux, 8 * k, this_scale, None, Laux)
            sumqx = sumq2 = F32(0)
            for i in range(sub):
                q = F32(2 * Laux[i] + 1)
                sumqx += weight[i] * xval[i] * q
                sumq2 += weight[i] * q * q
            if sumq2 > 0 and sumqx * sumqx > best * sumq2:
                scale = sumqx / sumq2
                best = scale * sumqx
                for i in range(sub):
                    L[i] = Laux[i]
                for k in range(sub // 8):
                    on_grid[k] = trial_on_grid[k]
        n_off = 0
        for k in range(sub // 8):
            if not on_grid[k]:
                n_off += 1
        if (n_off > 0 or kind == IQ2_XXS) and scale > 0:          # round again at the best scale
            id_scale = F32(1) / scale
            for k in range(sub // 8):
                if on_grid[k] and kind != IQ2_XXS:
                    continue
                for i in range(8):
                    level = nearest_int(F32(0.5) * (id_scale * xval[8 * k + i] - F32(1)))
                    L[8 * k + i] = max(0, min(2, level))
                u = code_of(L, 8 * k)
                if kmap[u] < 0:
                    find_best_neighbour(kneighbors, -1 - kmap[u], pos, xval, waux, 8 * k, scale, None, L)
            sumqx = sumq2 = F32(0)
            for i in range(sub):
                q = F32(2 * L[i] + 1)
                sumqx += weight[i] * xval[i] * q
                sumq2 += weight[i] * q * q
            if sumq2 > 0:
                scale = sumqx / sumq2
        if scale < 0:
            scale = -scale
            for k in range(sub // 8):
                signs[k] = ~signs[k] & (255 if kind == IQ2_S else 127)
        for k in range(sub // 8):
            index = kmap[code_of(L, 8 * k)]
            m = sub // 8 * ib + k                                   # the group in the block
            if kind == IQ2_XXS:
                y[2 + 8 * ib + k] = index
                aux = np.uint32(signs[k]) << np.uint32(7 * k)
                for b in range(4):
                    y[6 + 8 * ib + b] |= np.uint8((aux >> np.uint32(8 * b)) & np.uint32(255))
            elif kind == IQ2_XS:
                v = index | signs[k] << 9
                y[2 + 2 * m] = v & 255
                y[3 + 2 * m] = v >> 8
            else:
                y[2 + m] = index & 255
                y[66 + m // 4] |= (index >> 8) << (2 * (m % 4))
                y[34 + m] = signs[k]
        scales[ib] = scale
        max_scale = max_scale if max_scale > scale else scale
    if max_scale == 0:
        y[:] = 0
        return
    d = max_scale / F32(31)
    bits = f32_to_f16(d * F32(0.9875) if kind == IQ2_S else d)
    y[0], y[1] = bits & 255, bits >> 8
    id_d = F32(1) / d
    for ib in range(256 // sub):
        level = max(0, min(15, nearest_int(F32(0.5) * (id_d * scales[ib] - F32(1)))))
        if kind == IQ2_XXS:
            y[9 + 8 * ib] |= np.uint8(level << 4)
        else:
            y[(66 if kind == IQ2_XS else 74) + ib // 2] |= np.uint8(level << (4 * (ib % 2)))


@njit
def quantize_block_iq1(kind, x, qw, has_qw, y, pos, kmap, kneighbors, scratch_f, scratch_i):
    """quantize_row_iq1_{s,m}_impl on one block x[:256] (qw: its importance) -> y."""
    sub = 32 if kind == IQ1_S else 16
    y[:] = 0
    sumx2 = F32(0)
    for i in range(256):
        sumx2 += x[i] * x[i]
    sigma2 = F32(2) * sumx2 / F32(256)
    weight, scales = scratch_f[0], scratch_f[3]
    sumx, sumw = scratch_f[1], scratch_f[2]                    # prefix sums, 33 used
    L, shifts, index = scratch_i[0], scratch_i[1], scratch_i[2]
    x_p = np.array([F32(-1) + IQ1S_DELTA, IQ1S_DELTA, F32(1) + IQ1S_DELTA], dtype=np.float32)
    x_m = np.array([F32(-1) - IQ1S_DELTA, -IQ1S_DELTA, F32(1) - IQ1S_DELTA], dtype=np.float32)
    px = np.zeros((2, 17), dtype=np.float32)
    pw = np.zeros((2, 17), dtype=np.float32)
    max_scale = F32(0)
    for ib in range(256 // sub):
        o = sub * ib
        xb = x[o:o + sub]
        for i in range(sub):
            weight[i] = qw[o + i] * np.sqrt(sigma2 + xb[i] * xb[i]) if has_qw else xb[i] * xb[i]
        max_x = abs(xb[0])
        for i in range(1, sub):
            max_x = max_x if max_x > abs(xb[i]) else abs(xb[i])
        if max_x < (F32(1e-12) if kind == IQ1_S else F32(1e-7)):
            scales[ib] = 0
            shifts[ib] = 1 if kind == IQ1_S else 0
            continue
        order = np.argsort(xb, kind="mergesort")               # stable, as glibc's qsort here
        best = -FLT_MAX
        scale = max_x
        best_i1 = best_i2 = best_shift = -1
        if kind == IQ1_S:
            sumx[0] = sumw[0] = 0
            for j in range(sub):
                i = order[j]
                sumx[j + 1] = sumx[j] + weight[i] * xb[i]
                sumw[j + 1] = sumw[j] + weight[i]
            for i1 in range(sub + 1):
                for i2 in range(i1, sub + 1):
                    for c in range(2):
                        v = x_p if c == 0 else x_m
                        sumqx = ((sumx[i1] - sumx[0]) * v[0] + (sumx[i2] - sumx[i1]) * v[1]
                                 + (sumx[sub] - sumx[i2]) * v[2])
                        sumq2 = ((sumw[i1] - sumw[0]) * v[0] * v[0] + (sumw[i2] - sumw[i1]) * v[1] * v[1]
                                 + (sumw[sub] - sumw[i2]) * v[2] * v[2])
                        if sumq2 > 0 and sumqx * sumqx > best * sumq2:
                            scale = sumqx / sumq2
                            best = scale * sumqx
                            best_i1, best_i2, best_shift = i1, i2, 1 if c == 0 else -1
        else:
            for h in range(2):
                px[h, 0] = pw[h, 0] = 0
            for j in range(sub):
                i = order[j]
                h = 0 if i < sub // 2 else 1
                px[h, j + 1] = px[h, j] + weight[i] * xb[i]
                px[1 - h, j + 1] = px[1 - h, j]
                pw[h, j + 1] = pw[h, j] + weight[i]
                pw[1 - h, j + 1] = pw[1 - h, j]
            cp1, cp2 = x_p[0] * x_p[0] - x_p[1] * x_p[1], x_p[1] * x_p[1] - x_p[2] * x_p[2]
            cm1, cm2 = x_m[0] * x_m[0] - x_m[1] * x_m[1], x_m[1] * x_m[1] - x_m[2] * x_m[2]
            for i1 in range(sub + 1):
                for i2 in range(i1, sub + 1):
                    sx0, sx1 = px[0, i1] + px[0, i2], px[1, i1] + px[1, i2]
                    qx_p0, qx_m0 = px[0, sub] * x_p[2] - sx0, px[0, sub] * x_m[2] - sx0
                    qx_p1, qx_m1 = px[1, sub] * x_p[2] - sx1, px[1, sub] * x_m[2] - sx1
                    q2_p0 = pw[0, sub] * x_p[2] * x_p[2] + pw[0, i1] * cp1 + pw[0, i2] * cp2
                    q2_m0 = pw[0, sub] * x_m[2] * x_m[2] + pw[0, i1] * cm1 + pw[0, i2] * cm2
                    q2_p1 = pw[1, sub] * x_p[2] * x_p[2] + pw[1, i1] * cp1 + pw[1, i2] * cp2
                    q2_m1 = pw[1, sub] * x_m[2] * x_m[2] + pw[1, i1] * cm1 + pw[1, i2] * cm2
                    for c in range(4):
                        sumqx = (qx_m0 if c >> 1 else qx_p0) + (qx_m1 if c & 1 else qx_p1)
                        sumq2 = (q2_m0 if c >> 1 else q2_p0) + (q2_m1 if c & 1 else q2_p1)
                        if sumq2 > 0 and sumqx * sumqx > best * sumq2:
                            scale = sumqx / sumq2
                            best = scale * sumqx
                            best_i1, best_i2, best_shift = i1, i2, c
        if best_i1 < 0:
            scales[ib] = 0
            shifts[ib] = 1 if kind == IQ1_S else 0
            continue
        for j in range(sub):
            L[order[j]] = 0 if j < best_i1 else 1 if j < best_i2 else 2
        if scale < 0:
            for j in range(sub):
                L[j] = 2 - L[j]
            scale = -scale
            best_shift = -best_shift if kind == IQ1_S else 3 - best_shift
        all_on_grid = True
        for k in range(sub // 8):
            if kind == IQ1_S:
                xx = x_p if best_shift == 1 else x_m
            else:
                xx = x_m if (best_shift >> (1 - k)) & 1 else x_p
            u = code_of(L, 8 * k)
            index[k] = kmap[u]
            if kmap[u] < 0:
                all_on_grid = False
                index[k] = find_best_neighbour(kneighbors, -1 - kmap[u], pos, xb, weight, 8 * k, scale, xx, L)
        if not all_on_grid:
            sumqx = sumq2 = F32(0)
            for k in range(sub // 8):
                if kind == IQ1_S:
                    xx = x_p if best_shift == 1 else x_m
                else:
                    xx = x_m if (best_shift >> (1 - k)) & 1 else x_p
                for j in range(8):
                    q = xx[(pos[index[k], j] - 1) // 2]
                    sumqx += weight[8 * k + j] * q * xb[8 * k + j]
                    sumq2 += weight[8 * k + j] * q * q
            if sumqx > 0 and sumq2 > 0:
                scale = sumqx / sumq2
        if kind == IQ1_S:
            h = 0
            for k in range(4):
                y[2 + 4 * ib + k] = index[k] & 255
                h |= (index[k] >> 8) << (3 * k)
            y[34 + 2 * ib], y[35 + 2 * ib] = h & 255, h >> 8
        else:
            y[2 * ib], y[2 * ib + 1] = index[0] & 255, index[1] & 255
            y[32 + ib] = (index[0] >> 8) | ((index[1] >> 8) << 4)
        scales[ib] = scale
        shifts[ib] = best_shift
        max_scale = max_scale if max_scale > scale else scale
    if max_scale == 0:
        y[:] = 0
        return
    d = max_scale / F32(15)
    id_d = F32(1) / d
    if kind == IQ1_S:
        bits = f32_to_f16(d * F32(1.125))
        y[0], y[1] = bits & 255, bits >> 8
        for ib in range(8):
            level = max(0, min(7, nearest_int(F32(0.5) * (id_d * scales[ib] - F32(1)))))
            if shifts[ib] == -1:
                level |= 8
            y[35 + 2 * ib] |= np.uint8(level << 4)
        return
    sumqx = sumq2 = F32(0)                                      # IQ1_M: refit d over the block
    for ib in range(16):
        level = max(0, min(7, nearest_int(F32(0.5) * (id_d * scales[ib] - F32(1)))))
        sc = 48 + 2 * (ib // 4)
        word = (y[sc] | np.int64(y[sc + 1]) << 8) | level << (3 * (ib % 4))
        y[sc], y[sc + 1] = word & 255, word >> 8
        y[32 + ib] |= (0x80 if shifts[ib] & 1 else 0) | (0x08 if shifts[ib] & 2 else 0)
        o = 16 * ib
        for k in range(2):
            xx = x_m if (shifts[ib] >> (1 - k)) & 1 else x_p
            p = np.int64(y[2 * ib + k]) + ((np.int64(y[32 + ib]) << (8 - 4 * k)) & 0x700)
            for j in range(8):
                xi = x[o + 8 * k + j]
                w = qw[o + 8 * k + j] * np.sqrt(sigma2 + xi * xi) if has_qw else xi * xi
                q = xx[(pos[p, j] - 1) // 2] * F32(2 * level + 1)
                sumqx += w * q * xi
                sumq2 += w * q * q
    if sumq2 > 0:
        d = sumqx / sumq2
    bits = np.int64(f32_to_f16(d * F32(1.1125)))
    for k in range(4):
        y[49 + 2 * k] |= np.uint8(((bits >> (4 * k)) & 15) << 4)


@njit(parallel=True, cache=True)
def quantize_rows(kind, X, imatrix, has_imatrix, Y, pos, kmap, kneighbors):
    """Y[r] = row X[r] quantized to kind (IQ2_XXS .. IQ1_M) with the importance imatrix
    (K,) float32 (has_imatrix False: none), in parallel over rows."""
    n_rows, k = X.shape
    type_size = Y.shape[1] // (k // 256)
    iq1 = kind == IQ1_S or kind == IQ1_M
    for r in prange(n_rows):
        scratch_f = np.zeros((4, 33), dtype=np.float32)
        scratch_i = np.zeros((3, 32), dtype=np.int64)
        for b in range(k // 256):
            x, y = X[r, 256 * b:256 * b + 256], Y[r, type_size * b:type_size * (b + 1)]
            qw = imatrix[256 * b:256 * b + 256]
            if iq1:
                quantize_block_iq1(kind, x, qw, has_imatrix, y, pos, kmap, kneighbors, scratch_f, scratch_i)
            else:
                quantize_block_iq2(kind, x, qw, has_imatrix, y, pos, kmap, kneighbors, scratch_f, scratch_i)

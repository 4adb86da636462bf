"""Fast layer of the i-quants IQ3_XXS, IQ3_S (iq3.py) and IQ4_XS (iq.py): 256 weights per
block, Q8_K activations, no mins.  ``kind`` is the ggml type id.

    sub_block_<type>(w, o, j)       sub-block j (32 weights) of the block at byte o: its
                                    magnitudes (uint8: grid coordinates, or |kvalues|) and
                                    its minus signs (0xFF lanes), in weight order
    dequantize_row_<type>(w, y)     one row decoded, float for float the reference's
                                    arithmetic; dequantize_rows(kind, W, rows, out)
    block_lanes_<type>(w, o, x, xo) the block times its activation quants x[xo:xo + 256]:
                                    ggml's 8 int32 lanes (lane l: weights e with
                                    (e % 32) / 4 == l), sub-block scales applied
    vec_dot_iq_q8_K(kind, how, w, x, xd)
                                    a weight row times an activation row in the float
                                    order `how` (jit.order: vec_dot, or from 8 activation
                                    rows the tiled matmul)
    matmul_q8_K(kind, W, ...)       out[t, n] = W[n] . X[t] from block_q8_K rows
    quantize_rows(kind, x, qw, tables, out)
                                    ggml's quantizers, rows in parallel (IQ3's grid tables,
                                    from iq3_grids.quantizer_grid, passed in)

The lanes are ggml's instructions: the magnitudes (grid bytes up to 62, or |kvalues| up
to 127) times the activations with the weights' signs applied (negated where a weight is
negative: (x ^ m) - m), summed in pairs by maddubs, then multiplied by the sub-block
scale and summed in pairs by madd; two sub-blocks per instruction (64 lanes).  Exact:
Q8_K activations lie in -127..127, so no pair reaches maddubs' saturation.  The float
orders (arch/x86/quants.c; tiled/tiled.cpp):

    vec_dot   acc = fma(d * d_y, lanes_b, acc) per block; hsum8(acc), times 0.25 for
              IQ3_XXS (its scale (2 ls + 1) / 4 keeps the 1/4 for the end)
    tiled     acc = fma(isum_b * d', d_y, acc), d' = d (IQ3_XXS: d / 4, as the tile holds it)
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..ggml import GGMLType
from .iq3_grids import iq3s_grid, iq3xxs_grid, quantizer_grid
from .iq_grid_points import ksigns_iq2xs
from .jit import (ROWS_PER_TASK, TILED, bitcast, concat, convert, f16, fma32, from_tuple, hsum, hsum8,
                  lookup16, madd, maddubs, nearest_int, nonzero, order, part, repeat, splat, u16, u32,
                  vfma, vload, vstore)
from .legacy_numba import KVALUES_IQ4NL, nibbles
from .lowbit_numba import BIT_OF_LANE, put_fp16
from .q8 import q8_K_scales
from .quantize_numba import best_index_iq4_nl, fit_iq4_nl

IQ3_XXS, IQ3_S, IQ4_XS = int(GGMLType.IQ3_XXS), int(GGMLType.IQ3_S), int(GGMLType.IQ4_XS)
KVALUES_ABS = np.abs(KVALUES_IQ4NL.astype(np.int16)).astype(np.uint8)
KVALUES_MINUS = np.where(KVALUES_IQ4NL < 0, 0xFF, 0).astype(np.uint8)
F32_MAX = np.float32(3.4028235e38)
# the grids as flat byte tables (point g at bytes 4g .. 4g + 3), and the sign bytes of the
# 7-bit sign indices: numba reads them as constants
IQ3XXS_GRID = np.ascontiguousarray(iq3xxs_grid).reshape(-1)
IQ3S_GRID = np.ascontiguousarray(iq3s_grid).reshape(-1)
KSIGNS = ksigns_iq2xs
# IQ4_XS has no grid: quantize_rows takes empty tables of the IQ3 tables' types
NO_GRID = tuple(np.empty((0,) * a.ndim, a.dtype) for a in quantizer_grid(256))


# ---------------------------------------------------------------------- the sub-blocks

@njit(inline="always")
def grid8(grid, g0, g1, g2, g3, g4, g5, g6, g7):
    """8 grid points (4 bytes each, flat table) -> 32 bytes in weight order."""
    return concat(concat(concat(vload(grid, 4 * g0, 4), vload(grid, 4 * g1, 4)),
                         concat(vload(grid, 4 * g2, 4), vload(grid, 4 * g3, 4))),
                  concat(concat(vload(grid, 4 * g4, 4), vload(grid, 4 * g5, 4)),
                         concat(vload(grid, 4 * g6, 4), vload(grid, 4 * g7, 4))))


@njit(inline="always")
def minus_lanes(sign_bytes):
    """4 sign bytes (bit j of byte l: weight 8l + j is negative) -> 32 lanes, 0xFF where
    negative."""
    return nonzero(repeat(sign_bytes, 8) & vload(BIT_OF_LANE, 0, 32)) * np.uint8(255)


@njit(inline="always")
def sub_block_iq3_xxs(grid, w, o, j):
    """Grid index of group k: qs[8j + k]; signs: the 7-bit indices in the u32 at byte
    66 + 4j, bits 7m.., of the sign bytes (ksigns_iq2xs) of weights 8m .. 8m + 7."""
    q, aux = o + 2 + 8 * j, u32(w, o + 66 + 4 * j)
    points = grid8(grid, w[q], w[q + 1], w[q + 2], w[q + 3], w[q + 4], w[q + 5], w[q + 6], w[q + 7])
    signs = from_tuple((KSIGNS[aux & np.uint32(127)], KSIGNS[(aux >> np.uint32(7)) & np.uint32(127)],
                        KSIGNS[(aux >> np.uint32(14)) & np.uint32(127)], KSIGNS[(aux >> np.uint32(21)) & np.uint32(127)]))
    return points, minus_lanes(signs)


@njit(inline="always")
def index_iq3_s(w, o, g):
    """Grid index of group g: qs[g] | bit g % 8 of qh[g / 8] << 8."""
    return np.int64(w[o + 2 + g]) | ((np.int64(w[o + 66 + g // 8]) >> (g % 8)) & 1) << 8


@njit(inline="always")
def sub_block_iq3_s(grid, w, o, j):
    """Groups 8j .. 8j + 7 (index_iq3_s); signs[4j .. 4j + 3] hold the weights' sign bits."""
    g = 8 * j
    points = grid8(grid, index_iq3_s(w, o, g), index_iq3_s(w, o, g + 1), index_iq3_s(w, o, g + 2),
                   index_iq3_s(w, o, g + 3), index_iq3_s(w, o, g + 4), index_iq3_s(w, o, g + 5),
                   index_iq3_s(w, o, g + 6), index_iq3_s(w, o, g + 7))
    return points, minus_lanes(vload(w, o + 74 + 4 * j, 4))


@njit(inline="always")
def sub_block_iq4_xs(w, o, j):
    """The |kvalues| of the 32 indices of sub-block j (qs[16j ..], IQ4_NL's packing), and
    0xFF where the value is negative."""
    index = nibbles(w, o + 8 + 16 * j)
    return lookup16(vload(KVALUES_ABS, 0, 16), index), lookup16(vload(KVALUES_MINUS, 0, 16), index)


@njit(inline="always")
def sub_block_scale(kind, w, o, j):
    """The integer scale of sub-block j: IQ3_XXS 2 ls + 1 (ls: the top 4 bits of its u32),
    IQ3_S 2 ls + 1 (nibble j % 2 of scales[j / 2]), IQ4_XS ls - 32 (6 bits, scales_l and
    scales_h)."""
    if kind == IQ3_XXS:
        return np.int16(2 * (u32(w, o + 66 + 4 * j) >> np.uint32(28)) + 1)
    if kind == IQ3_S:
        return np.int16(2 * ((w[o + 106 + j // 2] >> (4 * (j % 2))) & 15) + 1)
    low = (w[o + 4 + j // 2] >> (4 * (j % 2))) & 15
    high = (u16(w, o + 2) >> np.uint16(2 * j)) & np.uint16(3)
    return np.int16((np.int32(low) | (np.int32(high) << 4)) - 32)


@njit(inline="always")
def sub_block(kind, w, o, j):
    if kind == IQ3_XXS:
        return sub_block_iq3_xxs(IQ3XXS_GRID, w, o, j)
    if kind == IQ3_S:
        return sub_block_iq3_s(IQ3S_GRID, w, o, j)
    return sub_block_iq4_xs(w, o, j)


# ---------------------------------------------------------------------- dequantization

@njit(inline="always")
def dequantize_row_iq(kind, type_size, w, y):
    """y = db_j * float(+-magnitude), db_j the float scale of sub-block j: IQ3_XXS
    d * (0.5 + ls) * 0.5, IQ3_S d * (1 + 2 ls), IQ4_XS d * (ls - 32)."""
    for b in range(y.size // 256):
        o = type_size * b
        d = f16(w, o)
        for j in range(8):
            magnitude, minus = sub_block(kind, w, o, j)
            m = convert(bitcast(minus, np.int8), np.int32)                 # 0 or -1
            v = convert((convert(magnitude, np.int32) ^ m) - m, np.float32)
            sc = sub_block_scale(kind, w, o, j)
            if kind == IQ3_XXS:
                db = d * (np.float32(0.5) + np.float32((sc - 1) // 2)) * np.float32(0.5)
            else:
                db = d * np.float32(sc)
            vstore(y, 256 * b + 32 * j, splat(db, 16) * part(v, 0, 16))
            vstore(y, 256 * b + 32 * j + 16, splat(db, 16) * part(v, 16, 16))


@njit(parallel=True, cache=True)
def dequantize_rows(kind, W, rows, out):
    """out[i] = row rows[i] of W (uint8 (n_rows, row_bytes) of type kind), decoded."""
    type_size = 98 if kind == IQ3_XXS else 110 if kind == IQ3_S else 136
    for i in prange(rows.size):
        dequantize_row_iq(kind, type_size, W[rows[i]], out[i])


# ---------------------------------------------------------------------- products

@njit(inline="always")
def signed_activations(x, xo, minus):
    """x[xo:xo + 32] (int8) negated where minus is 0xFF: ggml's _mm256_sign_epi8."""
    m = bitcast(minus, np.int8)
    return (vload(x, xo, 32) ^ m) - m


@njit(inline="always")
def block_lanes_iq(kind, type_size, w, o, x, xo):
    """ggml's 8 int32 lanes of the block at byte o times x[xo:xo + 256]: two sub-blocks per
    maddubs (their magnitudes against the sign-flipped activations), madd with their
    scales (16 copies of each), the two halves of the 16 lanes added at the end."""
    lanes = splat(np.int32(0), 16)
    for j in range(0, 8, 2):
        mag0, minus0 = sub_block(kind, w, o, j)
        mag1, minus1 = sub_block(kind, w, o, j + 1)
        xs = concat(signed_activations(x, xo + 32 * j, minus0), signed_activations(x, xo + 32 * j + 32, minus1))
        scales = concat(splat(sub_block_scale(kind, w, o, j), 16), splat(sub_block_scale(kind, w, o, j + 1), 16))
        lanes = lanes + madd(maddubs(concat(mag0, mag1), xs), scales)
    return part(lanes, 0, 8) + part(lanes, 8, 8)


@njit(inline="always")
def vec_dot_iq_q8_K(kind, how, w, x, xd):
    """A weight row w times one activation row (x: its bytes as int8, xd: its d per block)."""
    type_size = 98 if kind == IQ3_XXS else 110 if kind == IQ3_S else 136
    acc = splat(np.float32(0), 8)
    chain = np.float32(0)
    for b in range(xd.size):
        lanes = block_lanes_iq(kind, type_size, w, type_size * b, x, 292 * b + 4)
        d = f16(w, type_size * b)
        if how == TILED:
            tile_d = d * np.float32(0.25) if kind == IQ3_XXS else d
            chain = fma32(np.float32(hsum(lanes)) * tile_d, xd[b], chain)
        else:
            acc = vfma(splat(d * xd[b], 8), convert(lanes, np.float32), acc)
    if how == TILED:
        return chain
    return np.float32(0.25) * hsum8(acc) if kind == IQ3_XXS else hsum8(acc)


@njit(parallel=True, cache=True)
def matmul_q8_K(kind, W, xq_f32, xq_i8, out):
    """out (T, N) = products of weight rows W (N, row_bytes) with block_q8_K rows (views of
    the same bytes as float32 and int8: d and the quants read in place), each in the order
    llama.cpp's CPU backend gives it (jit.order)."""
    N = W.shape[0]
    T = xq_i8.shape[0]
    nb = xq_i8.shape[1] // 292
    xd = q8_K_scales(xq_f32, T, nb)
    n_tasks = (N + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(n_tasks):
        for n in range(task * ROWS_PER_TASK, min(N, (task + 1) * ROWS_PER_TASK)):
            for t in range(T):
                out[t, n] = vec_dot_iq_q8_K(kind, order(kind, N, T, t), W[n], xq_i8[t], xd[t])


# ---------------------------------------------------------------------- quantizers

@njit(inline="always")
def quantize_row_iq4_xs(x, qw, y):
    """quantize_iq4_xs: the 8 sub-blocks of a super-block fitted side by side (one per lane:
    quantize_numba.fit_iq4_nl), then d = -(the scale of largest |scale|) / 32, the 6-bit
    scales and each weight's index for x / (d * (ls - 32))."""
    G = 8
    X = np.empty(32 * G, np.float32)
    Wt = np.empty(32 * G, np.float32)
    for b in range(x.size // 256):
        o = 136 * b
        sigma2 = np.float32(0)
        for i in range(256):
            sigma2 += x[256 * b + i] * x[256 * b + i]
        sigma2 *= np.float32(2.0 / 256)
        for g in range(G):
            for i in range(32):
                v = x[256 * b + 32 * g + i]
                X[i * G + g] = v
                Wt[i * G + g] = qw[256 * b + 32 * g + i] * np.sqrt(sigma2 + v * v) if qw.size else v * v
        scales = fit_iq4_nl(X, Wt, 32, G, 7)
        amax = max_scale = np.float32(0)
        for g in range(G):
            if abs(scales[g]) > amax:
                amax, max_scale = abs(scales[g]), scales[g]
        d = -max_scale / np.float32(32)
        put_fp16(y, o, d)
        inv = np.float32(1) / d if d != 0 else np.float32(0)
        idl = np.empty(G, np.float32)
        scales_h = 0
        for g in range(G):
            sc = min(31, max(-32, nearest_int(inv * scales[g])))
            dl = d * np.float32(sc)
            idl[g] = np.float32(1) / dl if dl != 0 else np.float32(0)
            scales_h |= ((sc + 32) >> 4) << (2 * g)
            if g % 2 == 0:
                y[o + 4 + g // 2] = (sc + 32) & 15
            else:
                y[o + 4 + g // 2] |= ((sc + 32) & 15) << 4
        y[o + 2] = scales_h & 0xFF
        y[o + 3] = scales_h >> 8
        iscale = vload(idl, 0, G)
        for i in range(16):
            low = best_index_iq4_nl(iscale * vload(X, i * G, G), G)[0]
            high = best_index_iq4_nl(iscale * vload(X, (i + 16) * G, G), G)[0]
            for g in range(G):
                y[o + 8 + 16 * g + i] = low[g] | (high[g] << 4)


@njit(inline="always")
def best_neighbour(points, neighbours, code, xval, waux, k, scale, L):
    """ggml's iq3_find_best_neighbour for group k (weights 4k .. 4k + 3) whose code is not
    in the grid: the neighbour with the least sum waux (scale * point - xval)^2 (the first
    on ties); its levels go to L[4k ..]; returns its index."""
    best_d2 = F32_MAX
    best = -1
    for m in range(neighbours.shape[1]):
        p = neighbours[code, m]
        if p < 0:
            break
        d2 = np.float32(0)
        for i in range(4):
            diff = scale * np.float32(points[p, i]) - xval[4 * k + i]
            d2 += waux[4 * k + i] * diff * diff
        if d2 < best_d2:
            best_d2, best = d2, p
    for i in range(4):
        L[4 * k + i] = (points[best, i] - 1) // 2
    return best


@njit(inline="always")
def group_code(L, k):
    return L[4 * k] | (L[4 * k + 1] << 3) | (L[4 * k + 2] << 6) | (L[4 * k + 3] << 9)


@njit(inline="always")
def weighted_sums(weight, xval, L):
    sumqx = sumq2 = np.float32(0)
    for i in range(32):
        q = np.float32(2 * L[i] + 1)
        sumqx += weight[i] * xval[i] * q
        sumq2 += weight[i] * q * q
    return sumqx, sumq2


@njit(inline="always")
def quantize_row_iq3(xxs, x, qw, points, kmap, neighbours, y):
    """quantize_row_iq3_xxs_impl (xxs) or quantize_row_iq3_s_impl, one row, line by line
    (iq3.search_sub_blocks says what the search does)."""
    type_size = 98 if xxs else 110
    weight, waux, xval = np.empty(32, np.float32), np.empty(32, np.float32), np.empty(32, np.float32)
    L, Laux = np.zeros(32, np.int64), np.zeros(32, np.int64)
    on_grid, on_grid_aux = np.empty(8, np.bool_), np.empty(8, np.bool_)
    block_signs = np.empty(4, np.int64)
    scales = np.empty(8, np.float32)
    for b in range(x.size // 256):
        o = type_size * b
        y[o:o + type_size] = 0
        xbl = x[256 * b:256 * b + 256]
        sumx2 = np.float32(0)
        for i in range(256):
            sumx2 += xbl[i] * xbl[i]
        sigma2 = np.float32(2) * sumx2 / np.float32(256)
        max_scale = np.float32(0)
        written = 0                          # IQ3_S: where ggml's qs and signs pointers stand
        for ib in range(8):
            xb = xbl[32 * ib:32 * ib + 32]
            for i in range(32):
                if qw.size:
                    weight[i] = qw[256 * b + 32 * ib + i] * np.sqrt(sigma2 + xb[i] * xb[i])
                else:
                    weight[i] = xb[i] * xb[i]
                waux[i] = np.sqrt(weight[i])
            for k in range(4):
                s, n_flip = 0, 0
                for i in range(8):
                    if xb[8 * k + i] >= 0:
                        xval[8 * k + i] = xb[8 * k + i]
                    else:
                        xval[8 * k + i] = -xb[8 * k + i]
                        n_flip += 1
                        s |= 1 << i
                if xxs and n_flip % 2:               # the least important weight changes sign
                    imin = 0
                    least = weight[8 * k] * xb[8 * k] * xb[8 * k]
                    for i in range(1, 8):
                        v = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i]
                        if v < least:
                            least, imin = v, i
                    xval[8 * k + imin] = -xval[8 * k + imin]
                    s ^= 1 << imin
                block_signs[k] = s & 127 if xxs else s
            amax = xval[0]
            for i in range(1, 32):
                amax = amax if amax > xval[i] else xval[i]
            L[:] = 0
            if (xxs and amax < np.float32(1e-8)) or (not xxs and amax == 0):
                scales[ib] = 0
                continue
            best = np.float32(0)
            scale = amax / np.float32(15)
            on_grid[:] = xxs
            for trial in range(-15, 16) if xxs else range(-9, 10):
                inv = (np.float32(15) + np.float32(trial) * np.float32(0.2)) / amax
                this_scale = np.float32(1) / inv
                for k in range(8):
                    for i in range(4):
                        level = nearest_int(np.float32(0.5) * (inv * xval[4 * k + i] - np.float32(1)))
                        Laux[4 * k + i] = max(0, min(7, level))
                    code = group_code(Laux, k)
                    on_grid_aux[k] = kmap[code] >= 0
                    if not on_grid_aux[k]:
                        best_neighbour(points, neighbours, code, xval, waux, k, this_scale, Laux)
                sumqx, sumq2 = weighted_sums(weight, xval, Laux)
                if sumq2 > 0 and sumqx * sumqx > best * sumq2:
                    scale = sumqx / sumq2
                    best = scale * sumqx
                    L[:] = Laux
                    on_grid[:] = on_grid_aux
            if not on_grid.all() and scale > 0:
                # the least-squares scale can be 2^-20 of amax (big weights of importance 0),
                # so inv * xval may pass 2^22: nearest_int must then be ggml's, bit for bit
                inv = np.float32(1) / scale
                for k in range(8):
                    if xxs and on_grid[k]:
                        continue
                    for i in range(4):
                        level = nearest_int(np.float32(0.5) * (inv * xval[4 * k + i] - np.float32(1)))
                        L[4 * k + i] = max(0, min(7, level))
                    code = group_code(L, k)
                    if kmap[code] < 0:
                        best_neighbour(points, neighbours, code, xval, waux, k, scale, L)
                sumqx, sumq2 = weighted_sums(weight, xval, L)
                if sumq2 > 0:
                    scale = sumqx / sumq2
            if scale < 0:
                scale = -scale
                for k in range(4):
                    block_signs[k] = ~block_signs[k] & (127 if xxs else 255)
            for k in range(8):
                index = kmap[group_code(L, k)]
                if xxs:
                    y[o + 2 + 8 * ib + k] = index
                else:
                    y[o + 2 + 8 * written + k] = index & 255
                    y[o + 66 + ib] |= (index >> 8) << k
            if xxs:
                aux = block_signs[0] | (block_signs[1] << 7) | (block_signs[2] << 14) | (block_signs[3] << 21)
                for i in range(4):
                    y[o + 66 + 4 * ib + i] = (aux >> (8 * i)) & 0xFF
            else:
                for k in range(4):
                    y[o + 74 + 4 * written + k] = block_signs[k]
                written += 1
            scales[ib] = scale
            max_scale = max_scale if max_scale > scale else scale
        if max_scale == 0:
            if xxs:
                y[o:o + type_size] = 0
            continue
        d = max_scale / np.float32(31)
        put_fp16(y, o, d * (np.float32(1.0125) if xxs else np.float32(1.033)))
        inv = np.float32(1) / d
        for ib in range(8):
            ls = max(0, min(15, nearest_int(np.float32(0.5) * (inv * scales[ib] - np.float32(1)))))
            if xxs:
                y[o + 66 + 4 * ib + 3] |= ls << 4
            elif ib % 2 == 0:
                y[o + 106 + ib // 2] = ls
            else:
                y[o + 106 + ib // 2] |= ls << 4


@njit(parallel=True, cache=True)
def quantize_rows(kind, x, qw, tables, out):
    """out[r] = row r of x quantized to `kind` with the importance qw (size 0: none), as
    ggml's quantize_<type> writes it; tables: iq3_grids.quantizer_grid(n) (points, kmap,
    neighbours) for IQ3 (empty arrays for IQ4_XS)."""
    points, kmap, neighbours = tables
    for r in prange(x.shape[0]):
        if kind == IQ4_XS:
            quantize_row_iq4_xs(x[r], qw, out[r])
        else:
            quantize_row_iq3(kind == IQ3_XXS, x[r], qw, points, kmap, neighbours, out[r])

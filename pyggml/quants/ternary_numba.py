"""Fast layer of the ternary types TQ1_0 and TQ2_0 (reference and layouts: ``ternary.py``).

    trits_tq1_0(w, o, s), trits_tq2_0(w, o, s)
                                the 32 trits (0..2, uint8) of slice s (weights 32s ..
                                32s + 31) of the block at byte o
    dequantize_rows(kind, W, rows, out)
                                out[i] = row rows[i] decoded: y = float(t - 1) * d
    block_lanes_tq(kind, w, o, x, xo, bs, bo)
                                the block times its Q8_K activation block: ggml's 8 int32
                                lanes (lane l: weights e with (e % 32) / 4 == l) of
                                t * x, minus lane l's two bsums (the -1 of every trit)
    vec_dot_tq_q8_K(kind, w, x, bs, xd)
                                a weight row times an activation row in the float order
                                of ggml_vec_dot_tq1_0_q8_K / tq2_0 (AVX2)
    matmul_q8_K(kind, W, ...)   out[t, n] = W[n] . X[t] (llama.cpp has no other kernel for
                                these types: vec_dot for every product)
    quantize_rows(kind, x, out) quantize_row_tq1_0_ref / tq2_0_ref, rows in parallel

ggml's vec_dot sums each trit's maddubs pairs in int16 lanes over the 8 slices of a block,
subtracts the 16 bsums from those 16 lanes (bsum g belongs to weights 16g .. 16g + 15, not
to the lane's weights: only the total is exact per weight, but the lanes are what meet the
floats), then pairs them into 8 int32 lanes.  No int16 sum can overflow (8 slices of pairs
of 2 * 127 * 2, minus 16 * 127), so the same lanes summed in int32 are the same numbers.
Then, per block, acc = acc + lanes * (d_y * d): ggml writes a multiply and an add, which
GCC fuses into one FMA on every x86: its avoid-FMA-chains tuning for AMD Zen (see
jit.GGML_FUSES_SCALAR_TAIL) leaves chains in loops that hold other loops alone.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..ggml import GGMLType
from .jit import (ROWS_PER_TASK, concat, convert, f16, f32_to_f16, hsum8, madd,
                  maddubs, part, round_away, splat, vfma, vload, vstore)
from .q8 import q8_K_scales

TQ1_0, TQ2_0 = int(GGMLType.TQ1_0), int(GGMLType.TQ2_0)
# the powers of 3 a qh byte is multiplied by: its trits 0..3 for the weights 240 + 4n + j
QH_POWERS = np.array([1] * 4 + [3] * 4 + [9] * 4 + [27] * 4, dtype=np.uint8)


# ---------------------------------------------------------------------- trits

@njit(inline="always")
def trit(packed, power):
    """Trit n of base-3 bytes (a vector), power = 3^n: ((byte * 3^n) mod 256) * 3 >> 8."""
    return convert((convert(packed * power, np.uint16) * np.uint16(3)) >> np.uint16(8), np.uint8)


@njit(inline="always")
def trits_tq1_0(w, o, s):
    """Slice s: 0..4 are trit s of qs[0..31]; 5 and 6 trits 0, 1 and 2, 3 of qs[32..47];
    7 trit 4 of qs[32..47], then the 16 trits of qh (weights 240 + 4n + j: trit n of qh[j])."""
    if s < 5:
        return trit(vload(w, o, 32), np.uint8(3 ** s))
    tail = vload(w, o + 32, 16)
    if s < 7:
        return concat(trit(tail, np.uint8(9 ** (s - 5))), trit(tail, np.uint8(3 * 9 ** (s - 5))))
    qh = concat(concat(vload(w, o + 48, 4), vload(w, o + 48, 4)), concat(vload(w, o + 48, 4), vload(w, o + 48, 4)))
    return concat(trit(tail, np.uint8(81)), trit(qh, vload(QH_POWERS, 0, 16)))


@njit(inline="always")
def trits_tq2_0(w, o, s):
    """Slice s = 4h + k: bits 2k .. 2k + 1 of qs[32h .. 32h + 31]."""
    return (vload(w, o + 32 * (s // 4), 32) >> np.uint8(2 * (s % 4))) & np.uint8(3)


@njit(inline="always")
def trits_of(kind, w, o, s):
    return trits_tq1_0(w, o, s) if kind == TQ1_0 else trits_tq2_0(w, o, s)


# ---------------------------------------------------------------------- dequantization

@njit(parallel=True, cache=True)
def dequantize_rows(kind, W, rows, out):
    """out[i] = row rows[i] of W decoded: y = float(t - 1) * d, 16 weights per step."""
    type_size, d_at = (54, 52) if kind == TQ1_0 else (66, 64)
    for i in prange(rows.size):
        w, y = W[rows[i]], out[i]
        for b in range(y.size // 256):
            d = splat(f16(w, type_size * b + d_at), 16)
            for s in range(8):
                q = convert(trits_of(kind, w, type_size * b, s), np.int32) - np.int32(1)
                vstore(y, 256 * b + 32 * s, convert(part(q, 0, 16), np.float32) * d)
                vstore(y, 256 * b + 32 * s + 16, convert(part(q, 16, 16), np.float32) * d)


# ---------------------------------------------------------------------- products

@njit(inline="always")
def block_lanes_tq(kind, w, o, x, xo, bs, bo):
    """ggml's 8 int32 lanes of the block at byte o times the activation quants x[xo:xo + 256]
    (int8), bs[bo:bo + 16] its bsums: lane l = sum of t x over the weights of lane l, minus
    bsums 2l and 2l + 1.  Two slices per maddubs (64 lanes)."""
    ones = splat(np.int16(1), 32)
    lanes = splat(np.int32(0), 16)
    for s in range(0, 8, 2):
        t = concat(trits_of(kind, w, o, s), trits_of(kind, w, o, s + 1))
        lanes = lanes + madd(maddubs(t, vload(x, xo + 32 * s, 64)), ones)
    return (part(lanes, 0, 8) + part(lanes, 8, 8)) - madd(vload(bs, bo, 16), splat(np.int16(1), 16))


@njit(inline="always")
def vec_dot_tq_q8_K(kind, w, x, bs, xd):
    """acc = acc + lanes * (d_y * d) per block (fused, as GCC compiles ggml's
    _mm256_add_ps(_mm256_mul_ps(...), acc) on every x86), then hsum8."""
    type_size, d_at = (54, 52) if kind == TQ1_0 else (66, 64)
    acc = splat(np.float32(0), 8)
    for b in range(xd.size):
        lanes = convert(block_lanes_tq(kind, w, type_size * b, x, 292 * b + 4, bs, 146 * b + 130), np.float32)
        d = splat(xd[b] * f16(w, type_size * b + d_at), 8)
        acc = vfma(lanes, d, acc)
    return hsum8(acc)


@njit(parallel=True, cache=True)
def matmul_q8_K(kind, W, xq_f32, xq_i8, xq_i16, out):
    """out (T, N) = products of weight rows W (N, row_bytes) with block_q8_K rows (views of
    the same bytes as float32, int8 and int16: d, the quants and the bsums read in place)."""
    N = W.shape[0]
    T = xq_i8.shape[0]
    nb = xq_i8.shape[1] // 292
    xd = q8_K_scales(xq_f32, T, nb)
    n_tasks = (N + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(n_tasks):
        for n in range(task * ROWS_PER_TASK, min(N, (task + 1) * ROWS_PER_TASK)):
            for t in range(T):
                out[t, n] = vec_dot_tq_q8_K(kind, W[n], xq_i8[t], xq_i16[t], xd[t])


# ---------------------------------------------------------------------- quantizers

@njit(inline="always")
def trit_of_weight(v, inv):
    """lroundf(v * (1/d)) + 1: 0, 1 or 2."""
    return np.uint16(int(round_away(v * inv)) + 1)


@njit(inline="always")
def base3_byte(value):
    """ceil(256 * value / 243), value < 243: the fixed-point byte of 5 trits."""
    return np.uint8((np.uint16(value) * np.uint16(256) + np.uint16(242)) // np.uint16(243))


@njit(parallel=True, cache=True)
def quantize_rows(kind, x, out):
    """out[r] = row r of x as quantize_row_tq1_0_ref / quantize_row_tq2_0_ref write it."""
    type_size = 54 if kind == TQ1_0 else 66
    for r in prange(x.shape[0]):
        for b in range(x.shape[1] // 256):
            v, y, o = x[r, 256 * b:256 * b + 256], out[r], type_size * b
            amax = np.float32(0)
            for j in range(256):
                amax = max(amax, abs(v[j]))
            inv = np.float32(1) / amax if amax != 0 else np.float32(0)
            h = f32_to_f16(amax)
            y[o + type_size - 2] = h & 0xFF
            y[o + type_size - 1] = h >> 8
            if kind == TQ2_0:
                for j in range(64):
                    byte = 0
                    for k in range(4):
                        byte |= trit_of_weight(v[128 * (j // 32) + 32 * k + j % 32], inv) << (2 * k)
                    y[o + j] = byte
                continue
            for m in range(32):                       # qs[0..31]: weights 32 n + m
                value = np.uint16(0)
                for n in range(5):
                    value = value * np.uint16(3) + trit_of_weight(v[32 * n + m], inv)
                y[o + m] = base3_byte(value)
            for m in range(16):                       # qs[32..47]: weights 160 + 16 n + m
                value = np.uint16(0)
                for n in range(5):
                    value = value * np.uint16(3) + trit_of_weight(v[160 + 16 * n + m], inv)
                y[o + 32 + m] = base3_byte(value)
            for j in range(4):                        # qh: weights 240 + 4 n + j, a 0 trit below
                value = np.uint16(0)
                for n in range(4):
                    value = value * np.uint16(3) + trit_of_weight(v[240 + 4 * n + j], inv)
                y[o + 48 + j] = base3_byte(value * np.uint16(3))

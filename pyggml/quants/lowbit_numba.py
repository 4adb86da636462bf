"""Fast layer of Q1_0, Q2_0 (lowbit.py) and NVFP4 (fp4.py): the blocks that span several
Q8_0 activation blocks; the 4-bit float tables; the quantizers of Q1_0, Q2_0, MXFP4, NVFP4.

``legacy_numba.py`` runs these kernels: its ``dequantize_rows`` and ``matmul_q8_0`` (the
driver of every product with Q8_0 activations) call, per type,

    dequantize_row_q1_0, _q2_0, _nvfp4 (w, y)     one row decoded, float for float the
                                                  reference's (and ggml's) arithmetic
    vec_dot_q1_0_q8_0, _q2_0_, _nvfp4_ (w, x, xd, sums4)
                                                  a weight row times an activation row
                                                  (x: its bytes as int8, xd: the d of each
                                                  activation block, sums4: its sums by 4)
                                                  in the float order of llama.cpp's x86 build

and ``quantize_rows(kind, x, out)`` quantizes rows of Q1_0, Q2_0, MXFP4 or NVFP4 as the
_ref functions of ggml-quants.c do (parallel over rows).

The float orders (arch/x86/quants.c; ggml_order.c draws them all).  Each 32-weight slice
first becomes ggml's 8 exact int32 lanes (lane l: weights 4l .. 4l+3) against its
activation block t, whose scale is d_y[t]:

    Q1_0   per 128-weight block: s = d_y[0] * lanes_0, then s = fma(d_y[t], lanes_t, s)
           for t = 1, 2, 3; acc = fma(d, s, acc) (8 float lanes); hsum8(acc)
    NVFP4  per 64-weight block, per half h: lanes 0-3 are sub-block 2h, 4-7 sub-block
           2h + 1: acc = fma([s_2h x4, s_2h+1 x4], lanes_h, acc), s_j = d_j * d_y[h];
           hsum8(acc)
    Q2_0   ggml's scalar loop (x86 has no kernel of its own): per block, sumi = d_y[0] *
           isum_0 + d_y[1] * isum_1, then sumf += d * sumi, each a multiply-add that GCC
           fuses on this CPU as it fuses IQ4_NL's scalar tail (jit.GGML_FUSES_SCALAR_TAIL)

Q1_0's lanes are ggml's instructions exactly: the activations negated where a weight's
bit is clear (int8, so -(-128) stays -128, as in ggml), summed in pairs by maddubs.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..ggml import GGMLType
from .jit import (GGML_FUSES_SCALAR_TAIL, add_pairs, bitcast, bits_to_f32, concat, convert, f16,
                  f32_to_f16, fma32, hsum, hsum8, lookup16, madd, maddubs, nonzero, part, repeat,
                  round_away, splat, vfma, vload, vstore)

Q1_0, Q2_0, MXFP4, NVFP4 = (int(GGMLType.Q1_0), int(GGMLType.Q2_0), int(GGMLType.MXFP4),
                            int(GGMLType.NVFP4))


# ---------------------------------------------------------------------- 4-bit floats

def e2m1_doubled() -> np.ndarray:
    """The 16 values of a 4-bit E2M1 float (sign, 2 exponent bits, 1 mantissa bit), doubled
    so that they are integers, as ggml stores them (kvalues_mxfp4): code s e1 e0 m is
    (-1)^s * (e == 0 ? m / 2 : (1 + m / 2) * 2^(e - 1)), i.e. 0 0.5 1 1.5 2 3 4 6, times 2."""
    codes = np.arange(16)
    s, e, m = codes >> 3, (codes >> 1) & 3, codes & 1
    doubled = np.where(e == 0, m, (2 + m) << np.maximum(e - 1, 0))
    return np.where(s == 1, -doubled, doubled).astype(np.int8)


def e8m0_to_fp32_half(e: np.ndarray) -> np.ndarray:
    """MXFP4's scale byte: E8M0 (8 exponent bits, no sign, no mantissa: 2^(e - 127)), halved
    to pay for the doubled E2M1 values (ggml_e8m0_to_fp32_half): 2^(e - 128), as the bits
    ggml builds (e = 0, 1 are subnormal; 255, the spec's NaN, stays 2^127 in ggml)."""
    e = np.asarray(e).astype(np.uint32)
    bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - np.uint32(1)) << np.uint32(23))
    return bits.astype(np.uint32).view(np.float32)


def ue4m3_to_fp32(x: np.ndarray) -> np.ndarray:
    """NVFP4's scale byte: unsigned E4M3 (4 exponent bits, bias 7, 3 mantissa bits; the top
    bit is ignored), halved like MXFP4's (ggml_ue4m3_to_fp32): exponent 0 is subnormal,
    m * 2^-9; otherwise (1 + m/8) * 2^(e - 7).  0x00 and 0x7F (E4M3's NaN) read as 0."""
    x = np.asarray(x).astype(np.int64)
    e, m = (x >> 3) & 0xF, (x & 7).astype(np.float32)
    raw = np.where(e == 0, np.ldexp(m, -9), np.ldexp(np.float32(1) + m / np.float32(8), e - 7))
    return np.where((x == 0) | (x == 0x7F), np.float32(0), raw.astype(np.float32) * np.float32(0.5))


KVALUES_FP4 = e2m1_doubled()                    # kvalues_mxfp4 (ggml-common.h)
UE4M3 = ue4m3_to_fp32(np.arange(256))           # ggml_table_f32_ue4m3
# lane j of a 32-weight slice tests bit j % 8 of its byte (Q1_0's signs, Q5_0's fifth
# bits), or shifts its crumb down by 2 (j % 4) (Q2_0)
BIT_OF_LANE = np.array([1 << (j % 8) for j in range(32)], dtype=np.uint8)
CRUMB_SHIFT = np.array([2 * (j % 4) for j in range(32)], dtype=np.uint8)


@njit(inline="always")
def e8m0_half(w, o):
    """MXFP4's d: the E8M0 byte at w[o] as 2^(e - 128) (see e8m0_to_fp32_half)."""
    e = np.uint32(w[o])
    return bits_to_f32(np.uint32(0x00200000) << e if e < 2 else (e - np.uint32(1)) << np.uint32(23))


@njit(inline="always")
def f32_bits(x):
    """The bits of a float32 scalar, as uint32."""
    return bitcast(splat(x, 1), np.uint32)[0]


# ---------------------------------------------------------------------- block decoding

@njit(inline="always")
def bits_q1_0(w, o):
    """The 32 sign bits at w[o:o + 4] as lanes of 1 (set: +d) or 0 (clear: -d)."""
    return nonzero(repeat(vload(w, o, 4), 8) & vload(BIT_OF_LANE, 0, 32))


@njit(inline="always")
def crumbs_q2_0(w, o):
    """The 32 quants 0..3 packed in the 8 bytes at w[o:]: weight j is bits 2 (j % 4) of
    byte j / 4."""
    return (repeat(vload(w, o, 8), 4) >> vload(CRUMB_SHIFT, 0, 32)) & np.uint8(3)


@njit(inline="always")
def quants_nvfp4(w, o):
    """The E2M1 values (doubled, int8) of the 32 weights of sub-blocks 2h, 2h + 1 packed in
    the 16 bytes at w[o:]: 8 bytes per sub-block, weight j in the low nibble of byte j and
    weight j + 8 in its high nibble."""
    packed = vload(w, o, 16)
    low, high = packed & np.uint8(15), packed >> np.uint8(4)
    index = concat(concat(part(low, 0, 8), part(high, 0, 8)), concat(part(low, 8, 8), part(high, 8, 8)))
    return lookup16(vload(KVALUES_FP4, 0, 16), index)


@njit(inline="always")
def signed_lanes(q, xs):
    """The 8 exact int32 lanes of 32 int8 quants q times 32 int8 activations xs, widened
    to int16 first (ggml's sign trick would saturate on -128 * -128)."""
    low = madd(convert(part(q, 0, 16), np.int16), convert(part(xs, 0, 16), np.int16))
    high = madd(convert(part(q, 16, 16), np.int16), convert(part(xs, 16, 16), np.int16))
    return add_pairs(concat(low, high))


# ---------------------------------------------------------------------- dequantization

@njit(inline="always")
def dequantize_row_q1_0(w, y):
    """y = bit ? d : -d, as ggml writes it: d's sign bit flipped where the bit is clear
    (also for d = 0, which gives -0)."""
    for b in range(y.size // 128):
        d_bits = bitcast(splat(f16(w, 18 * b), 16), np.uint32)
        for t in range(4):
            clear = bits_q1_0(w, 18 * b + 2 + 4 * t) ^ np.uint8(1)
            flip = convert(clear, np.uint32) << np.uint32(31)
            vstore(y, 128 * b + 32 * t, bitcast(d_bits ^ part(flip, 0, 16), np.float32))
            vstore(y, 128 * b + 32 * t + 16, bitcast(d_bits ^ part(flip, 16, 16), np.float32))


@njit(inline="always")
def dequantize_row_q2_0(w, y):
    """y = float(q - 1) * d."""
    for b in range(y.size // 64):
        d = splat(f16(w, 18 * b), 16)
        for t in range(2):
            q = convert(crumbs_q2_0(w, 18 * b + 2 + 8 * t), np.int32) - np.int32(1)
            vstore(y, 64 * b + 32 * t, convert(part(q, 0, 16), np.float32) * d)
            vstore(y, 64 * b + 32 * t + 16, convert(part(q, 16, 16), np.float32) * d)


@njit(inline="always")
def dequantize_row_nvfp4(w, y):
    """y = float(value) * d_s, d_s the UE4M3 scale of the weight's 16-weight sub-block."""
    for b in range(y.size // 64):
        o = 36 * b
        for h in range(2):
            v = convert(quants_nvfp4(w, o + 4 + 16 * h), np.float32)
            d0 = splat(np.float32(UE4M3[w[o + 2 * h]]), 16)
            d1 = splat(np.float32(UE4M3[w[o + 2 * h + 1]]), 16)
            vstore(y, 64 * b + 32 * h, part(v, 0, 16) * d0)
            vstore(y, 64 * b + 32 * h + 16, part(v, 16, 16) * d1)


# ---------------------------------------------------------------------- products

@njit(inline="always")
def vec_dot_q1_0_q8_0(w, x, xd):
    """ggml_vec_dot_q1_0_q8_0 (AVX2): the activations' signs flipped where a weight's bit
    is clear, summed by 4 (maddubs with ones, madd with ones); per block a float chain over
    its 4 activation blocks, then acc = fma(d, chain, acc)."""
    acc = splat(np.float32(0), 8)
    for b in range(xd.size // 4):
        chain = splat(xd[4 * b], 8) * lanes_q1_0(w, b, 0, x)
        for t in range(1, 4):
            chain = vfma(splat(xd[4 * b + t], 8), lanes_q1_0(w, b, t, x), chain)
        acc = vfma(splat(f16(w, 18 * b), 8), chain, acc)
    return hsum8(acc)


@njit(inline="always")
def lanes_q1_0(w, b, t, x):
    """Slice t of block b times its activation block 4b + t, as ggml forms it: the
    activations negated (int8) where the weight's bit is clear, summed by 4 (maddubs and
    madd with ones), as floats."""
    clear = bitcast(bits_q1_0(w, 18 * b + 2 + 4 * t) - np.uint8(1), np.int8)      # 0 or -1
    xs = vload(x, 34 * (4 * b + t) + 2, 32)
    lanes = madd(maddubs(splat(np.uint8(1), 32), (xs ^ clear) - clear), splat(np.int16(1), 16))
    return convert(lanes, np.float32)


@njit(inline="always")
def vec_dot_q2_0_q8_0(w, x, xd, sums4):
    """ggml_vec_dot_q2_0_q8_0 (the generic C loop): per block, isum_t = sum (q - 1) y over
    activation block t, sumi = d_y[t] * isum_t summed from 0, sumf += d * sumi."""
    ones16 = splat(np.int16(1), 16)
    sumf = np.float32(0)
    for b in range(xd.size // 2):
        sumi = np.float32(0)
        for t in range(2):
            a = 2 * b + t
            lanes = madd(maddubs(crumbs_q2_0(w, 18 * b + 2 + 8 * t), vload(x, 34 * a + 2, 32)), ones16)
            isum = np.float32(hsum(lanes - vload(sums4, 8 * a, 8)))
            sumi = fma32(isum, xd[a], sumi) if GGML_FUSES_SCALAR_TAIL else sumi + isum * xd[a]
        d = f16(w, 18 * b)
        sumf = fma32(sumi, d, sumf) if GGML_FUSES_SCALAR_TAIL else sumf + sumi * d
    return sumf


@njit(inline="always")
def vec_dot_nvfp4_q8_0(w, x, xd):
    """ggml_vec_dot_nvfp4_q8_0 (AVX2): per half block, the sub-block scales times the
    activation block's d in the lanes of each sub-block."""
    acc = splat(np.float32(0), 8)
    for b in range(xd.size // 2):
        o = 36 * b
        for h in range(2):
            a = 2 * b + h
            lanes = signed_lanes(quants_nvfp4(w, o + 4 + 16 * h), vload(x, 34 * a + 2, 32))
            s0 = np.float32(UE4M3[w[o + 2 * h]]) * xd[a]
            s1 = np.float32(UE4M3[w[o + 2 * h + 1]]) * xd[a]
            acc = vfma(concat(splat(s0, 4), splat(s1, 4)), convert(lanes, np.float32), acc)
    return hsum8(acc)


# ---------------------------------------------------------------------- quantizers

@njit(inline="always")
def put_fp16(y, o, value):
    h = f32_to_f16(value)
    y[o] = h & 0xFF
    y[o + 1] = h >> 8


@njit(inline="always")
def best_index_fp4(x, d):
    """ggml's best_index_mxfp4: the first E2M1 code whose value times d is nearest x."""
    best = 0
    best_err = abs(np.float32(KVALUES_FP4[0]) * d - x)
    for i in range(1, 16):
        err = abs(np.float32(KVALUES_FP4[i]) * d - x)
        if err < best_err:
            best, best_err = i, err
    return best


@njit(inline="always")
def fp32_to_ue4m3(x):
    """ggml_fp32_to_ue4m3: round x (float32) to the nearest UE4M3 code by its bits
    (mantissa rounded half up on the first dropped bit), saturating at 0x7E (448)."""
    if not x > 0:
        return 0
    x = min(x, np.float32(448))
    bits = f32_bits(x)
    exp = np.int32((bits >> 23) & 0xFF) - 127 + 7
    if exp <= 0:                                      # subnormal: man * 2^-9
        man = np.int32(x * np.float32(512) + np.float32(0.5))
        return 0 if man < 1 else min(man, 7)
    if exp >= 15:
        return 0x7E
    man = np.int32((bits >> 20) & 7) + np.int32((bits >> 19) & 1)
    if man > 7:
        man = 0
        exp += 1
        if exp >= 15:
            return 0x7E
    return (exp << 3) | man


@njit(inline="always")
def quantize_row_q1_0(x, y):
    for b in range(x.size // 128):
        v = x[128 * b:128 * b + 128]
        sum_abs = np.float32(0)
        for j in range(128):
            sum_abs += abs(v[j])
        put_fp16(y, 18 * b, sum_abs / np.float32(128))
        for j in range(16):
            byte = 0
            for i in range(8):
                if v[8 * j + i] >= 0:
                    byte |= 1 << i
            y[18 * b + 2 + j] = byte


@njit(inline="always")
def quantize_row_q2_0(x, y):
    for b in range(x.size // 64):
        v = x[64 * b:64 * b + 64]
        amax = np.float32(0)
        for j in range(64):
            amax = max(amax, abs(v[j]))
        inv = np.float32(1) / amax if amax > 0 else np.float32(0)
        put_fp16(y, 18 * b, amax)
        for j in range(16):
            byte = 0
            for i in range(4):
                q = min(3, max(0, int(round_away(v[4 * j + i] * inv)) + 1))
                byte |= q << (2 * i)
            y[18 * b + 2 + j] = byte


@njit(inline="always")
def quantize_row_mxfp4(x, y):
    """quantize_row_mxfp4_ref: e = floor(log2(max |x|)) - 2 + 127 (the largest weight lands
    on the values 4..6 times 2^(e-127)), then each weight's nearest E2M1 value."""
    for b in range(x.size // 32):
        v = x[32 * b:32 * b + 32]
        amax = np.float32(0)
        for j in range(32):
            amax = max(amax, abs(v[j]))
        e = 0
        if amax > 0:       # log2f correctly rounded: the float64 log2 rounded to float32
            e = np.int32(math.floor(np.float32(math.log2(np.float64(amax))))) - 2 + 127
        y[17 * b] = e & 0xFF                          # (uint8_t) of ggml's float
        d = e8m0_half(y, 17 * b)
        for j in range(16):
            y[17 * b + 1 + j] = best_index_fp4(v[j], d) | (best_index_fp4(v[j + 16], d) << 4)


@njit(inline="always")
def quantize_row_nvfp4(x, y):
    """quantize_row_nvfp4_ref: per 16 weights the UE4M3 scale nearest max |x| / 6 (the
    largest E2M1 value), then each weight's nearest E2M1 value for that scale."""
    for b in range(x.size // 64):
        for s in range(4):
            v = x[64 * b + 16 * s:64 * b + 16 * s + 16]
            amax = np.float32(0)
            for j in range(16):
                amax = max(amax, abs(v[j]))
            code = fp32_to_ue4m3(amax / np.float32(6))
            y[36 * b + s] = code
            d = np.float32(UE4M3[code])
            for j in range(8):
                y[36 * b + 4 + 8 * s + j] = best_index_fp4(v[j], d) | (best_index_fp4(v[j + 8], d) << 4)


@njit(parallel=True, cache=True)
def quantize_rows(kind, x, out):
    """out[r] = row r of x quantized to `kind` (Q1_0, Q2_0, MXFP4, NVFP4), as ggml's
    quantize_row_<type>_ref writes it."""
    for r in prange(x.shape[0]):
        if kind == Q1_0:
            quantize_row_q1_0(x[r], out[r])
        elif kind == Q2_0:
            quantize_row_q2_0(x[r], out[r])
        elif kind == MXFP4:
            quantize_row_mxfp4(x[r], out[r])
        else:
            quantize_row_nvfp4(x[r], out[r])

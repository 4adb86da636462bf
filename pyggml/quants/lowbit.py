"""Q1_0 and Q2_0: 1 and 2 bits per weight, one fp16 scale per block (ggml's newest types).

The simplest formats ggml has: no offsets, no sub-blocks, the bits packed in weight
order (bit j % 8 of byte j / 8 for Q1_0, bits 2 (j % 4) of byte j / 4 for Q2_0 -- unlike
the 4-bit types, nothing is interleaved):

    Q1_0   y = d * (+1 or -1)          128 weights in 18 bytes   1.125 bits per weight
    Q2_0   y = d * (q - 1), q 0..3     64 weights in 18 bytes    2.25 bits per weight

Products use Q8_0 activations: a block spans 4 (Q1_0) or 2 (Q2_0) activation blocks, each
with its own fp16 scale, so the float order differs from the 32-weight types (see
``lowbit_numba.py``).  The quantizers ignore an importance matrix (ggml's quantize_q1_0
and quantize_q2_0 call the reference row by row when given one).

Fast kernels: ``lowbit_numba.py`` (row decoders, products, quantizers), run by
``legacy_numba.py``'s drivers of every type with Q8_0 activations.
"""
from __future__ import annotations

import numpy as np

from ..ggml import GGMLType
from .base import QuantType, f32, fp16_bytes, fp16_field, roundf, seq_sum
from . import legacy_numba, lowbit_numba


class LowbitType(QuantType):
    """What Q1_0, Q2_0 and the 4-bit floats (fp4.py) share: Q8_0 activations (legacy_numba's
    drivers run their kernels) and quantizers in lowbit_numba, which ignore an imatrix as
    ggml's do."""
    vec_dot_type = GGMLType.Q8_0
    imatrix = "ignored"
    dequant_kernel = legacy_numba.dequantize_rows
    matmul_kernel = legacy_numba.matmul_q8_0
    quantize_kernel = lowbit_numba.quantize_rows

    @classmethod
    def matmul_fast(cls, W, xq, out):
        legacy_numba.matmul_q8_0(int(cls.ggml_type), W, xq, out)

    @classmethod
    def quantize_fast(cls, x):
        out = np.empty((x.shape[0], x.shape[1] // cls.block_size * cls.type_size), np.uint8)
        lowbit_numba.quantize_rows(int(cls.ggml_type), x, out)
        return out


def unpack_bits(qs: np.ndarray, bits: int) -> np.ndarray:
    """qs uint8 (n, m) -> (n, m * 8 / bits): field j (`bits` wide) is at bits
    bits * (j % (8 / bits)) of byte j // (8 / bits)."""
    per_byte = 8 // bits
    shifts = (bits * np.arange(per_byte, dtype=np.uint8)).reshape(1, 1, per_byte)
    return ((qs[:, :, None] >> shifts) & ((1 << bits) - 1)).reshape(qs.shape[0], -1)


def pack_bits(q: np.ndarray, bits: int) -> np.ndarray:
    """The inverse of unpack_bits: (n, k) values below 2^bits -> uint8 (n, k * bits / 8)."""
    per_byte = 8 // bits
    shifts = (bits * np.arange(per_byte, dtype=np.uint8)).reshape(1, 1, per_byte)
    fields = q.astype(np.uint8).reshape(q.shape[0], -1, per_byte) << shifts
    return np.bitwise_or.reduce(fields, axis=2)


class Q1_0(LowbitType, ggml_type=GGMLType.Q1_0):
    """1 bit per weight, its sign: y = d * (+1 if the bit is set, else -1).

        byte 0      2                                                      18
             +------+------------------------------------------------------+
             |  d   | qs[16]: weight j is bit j % 8 of qs[j / 8]           |
             | fp16 |         (1: y = +d, 0: y = -d)                       |
             +------+------------------------------------------------------+

    Quantizer (quantize_row_q1_0_ref): d = the mean of |x| (summed left to right in
    float32), bit j = (x_j >= 0): the scale that keeps the block's L1 norm.
    """
    layout = (("d", 0, 2, "fp16 scale"), ("qs", 2, 16, "128 sign bits"))

    @classmethod
    def fields(cls, blocks):
        bit = unpack_bits(blocks[:, 2:18], 1)
        return dict(d=fp16_field(blocks, 0), q=bit.astype(np.int8) * np.int8(2) - np.int8(1))

    @classmethod
    def dequantize_blocks(cls, blocks):
        f = cls.fields(blocks)
        return np.where(f["q"] > 0, f["d"], -f["d"])          # ggml: bit ? d : -d

    @classmethod
    def quantize_blocks(cls, x):
        d = seq_sum(np.abs(x)) / np.float32(128)
        return np.concatenate([fp16_bytes(d), pack_bits(x >= 0, 1)], axis=1)


class Q2_0(LowbitType, ggml_type=GGMLType.Q2_0):
    """2 bits per weight: y = d * (q - 1), q in 0..3 (the levels -d, 0, d, 2d).

        byte 0      2                                                      18
             +------+------------------------------------------------------+
             |  d   | qs[16]: weight j is bits 2 (j % 4) .. +1 of qs[j / 4] |
             | fp16 |                                                       |
             +------+------------------------------------------------------+

    Quantizer (quantize_row_q2_0_ref): d = max |x|, q = clamp(roundf(x * (1/d)) + 1, 0, 3)
    (halves away from zero): the largest weight of either sign lands on +-d, and 2d is
    never used by the reference quantizer.
    """
    layout = (("d", 0, 2, "fp16 scale"), ("qs", 2, 16, "64 2-bit quants"))

    @classmethod
    def fields(cls, blocks):
        return dict(d=fp16_field(blocks, 0), q=unpack_bits(blocks[:, 2:18], 2).astype(np.int8) - np.int8(1))

    @classmethod
    def dequantize_blocks(cls, blocks):
        f = cls.fields(blocks)
        return f32(f["q"]) * f["d"]

    @classmethod
    def quantize_blocks(cls, x):
        d = np.abs(x).max(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            inv = np.where(d > 0, np.float32(1) / d, np.float32(0))
        q = np.clip(roundf(x * inv) + 1, 0, 3)
        return np.concatenate([fp16_bytes(d), pack_bits(q, 2)], axis=1)

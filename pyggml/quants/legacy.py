"""Legacy quants: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (ggml's first formats, 32 weights per block).

One scale ``d`` per block of 32 (and, for the "_1" types, an offset ``m``):

    _0 types (symmetric):   y = d * (q - 2^(bits-1))        Q4_0, Q5_0;  Q8_0: y = d * q
    _1 types (affine):      y = d * q + m                   Q4_1, Q5_1

4-bit quants are packed two per byte, and not interleaved: byte j holds weight j in its
low nibble and weight j+16 in its high nibble.  The 5-bit types keep the fifth bit of all
32 weights in one little-endian uint32 ``qh`` (bit j belongs to weight j).

These types survive inside modern "K" files: when a row length is not a multiple of 256
(Qwen2.5-0.5B's 896), llama.cpp falls back from Q4_K to Q5_0, from Q5_K to Q5_1 and from
Q6_K to Q8_0.  For a product their activations are quantized to Q8_0 (Q8_1 for the _1
types, whose offset needs the sum of the activations); see ``q8.py``.

Fast kernels: ``legacy_numba.py`` (``quants_<type>`` unpacks a block; ``dequantize_rows``
and ``matmul_q8_0`` take the type as a parameter).
"""
from __future__ import annotations

import numpy as np

from ..ggml import GGMLType
from .base import QuantType, absmax_signed, f32, fp16_bytes, fp16_field
from . import legacy_numba as fast, quantize_numba
from .q8 import q8_round_ref, quantize_rows_q8_0_q8_1, quantize_rows_q8_0_ref

QK = 32                                                # weights per block


class LegacyType(QuantType):
    """What the 32-weight types (and IQ4_NL) share: the formula over fields(), and
    products with Q8_0/Q8_1 activations.

    ``fields(blocks)`` decodes every field: d (and m) (n, 1) float32, q (n, 32) the
    integer quants with their offset removed (Q4_0: q - 8).  Per weight (gguf-py's order):

        y = d * q            or, with an offset field m,    y = d * q + m
    """
    dequant_kernel = fast.dequantize_rows
    matmul_kernel = fast.matmul_q8_0
    quantize_kernel = quantize_numba.quantize_rows
    imatrix = "fast"

    @classmethod
    def dequantize_blocks(cls, blocks):
        f = cls.fields(blocks)
        y = f["d"] * f32(f["q"])
        return y + f["m"] if "m" in f else y

    @classmethod
    def quantize_fast(cls, x, imatrix=None):
        return quantize_numba.quantize(cls, x, imatrix)

    @classmethod
    def matmul_fast(cls, W, xq, out):
        fast.matmul_q8_0(int(cls.ggml_type), W, xq, out)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """qs uint8 (n, 16) -> (n, 32): low nibbles are weights 0..15, high nibbles 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """(n, 32) values 0..15 -> uint8 (n, 16), weight j low, weight j+16 high."""
    q = q.astype(np.uint8)
    return (q[:, :16] & 0x0F) | (q[:, 16:] << 4)


def _high_bits(qh: np.ndarray) -> np.ndarray:
    """qh uint8 (n, 4) read as a little-endian uint32 -> (n, 32) bits, bit j = weight j."""
    return np.unpackbits(qh, axis=1, bitorder="little")


def _pack_high_bits(q: np.ndarray) -> np.ndarray:
    """(n, 32) 5-bit values -> qh uint8 (n, 4) with bit j = bit 4 of weight j."""
    return np.packbits((q >> 4) & 1, axis=1, bitorder="little")


def _c_trunc(v: np.ndarray) -> np.ndarray:
    """C's float -> integer conversion (truncation toward zero), as int64."""
    return np.trunc(v).astype(np.int64)


class Q4_0(LegacyType, ggml_type=GGMLType.Q4_0):
    """4-bit symmetric: y = d * (q - 8), q in 0..15.

        byte 0      2                                          18
             +------+------------------------------------------+
             |  d   | qs[16]:  qs[j] = q[j+16] << 4 | q[j]      |
             | fp16 |                                           |
             +------+------------------------------------------+

    Quantizer (quantize_row_q4_0_ref): max = the weight of largest |w| (with its sign),
    d = max / -8, q = min(15, trunc(w / d + 8.5)): the extreme weight lands on q = 0.
    """
    vec_dot_type = GGMLType.Q8_0
    layout = (("d", 0, 2, "fp16 scale"), ("qs", 2, 16, "32 4-bit quants"))

    @classmethod
    def fields(cls, blocks):
        return dict(d=fp16_field(blocks, 0), q=_nibbles(blocks[:, 2:18]).astype(np.int8) - np.int8(8))

    @classmethod
    def quantize_blocks(cls, x):
        d, q = _symmetric_quants(x, 8)
        return np.concatenate([fp16_bytes(d), _pack_nibbles(q)], axis=1)


class Q4_1(LegacyType, ggml_type=GGMLType.Q4_1):
    """4-bit affine: y = d * q + m, q in 0..15.

        byte 0      2      4                                    20
             +------+------+------------------------------------+
             |  d   |  m   | qs[16]: qs[j] = q[j+16] << 4 | q[j] |
             | fp16 | fp16 |                                     |
             +------+------+------------------------------------+

    Quantizer (quantize_row_q4_1_ref): m = min(w), d = (max(w) - m) / 15,
    q = min(15, trunc((w - m) / d + 0.5)).
    """
    vec_dot_type = GGMLType.Q8_1
    layout = (("d", 0, 2, "fp16 scale"), ("m", 2, 2, "fp16 minimum"),
              ("qs", 4, 16, "32 4-bit quants"))

    @classmethod
    def fields(cls, blocks):
        return dict(d=fp16_field(blocks, 0), m=fp16_field(blocks, 2), q=_nibbles(blocks[:, 4:20]))

    @classmethod
    def quantize_blocks(cls, x):
        lo, d, inv = _min_and_step(x, 15)
        q = np.minimum(15, _c_trunc((x - lo) * inv + np.float32(0.5)))
        return np.concatenate([fp16_bytes(d), fp16_bytes(lo), _pack_nibbles(q)], axis=1)


class Q5_0(LegacyType, ggml_type=GGMLType.Q5_0):
    """5-bit symmetric: y = d * (q - 16), q in 0..31; bit 4 of q[j] is bit j of qh.

        byte 0      2           6                                22
             +------+-----------+--------------------------------+
             |  d   |  qh[4]    | qs[16]: low 4 bits, packed as  |
             | fp16 | u32 LE    |         in Q4_0                |
             +------+-----------+--------------------------------+

    Quantizer (quantize_row_q5_0_ref): d = max / -16, q = min(31, trunc(w / d + 16.5)).
    """
    vec_dot_type = GGMLType.Q8_0
    layout = (("d", 0, 2, "fp16 scale"), ("qh", 2, 4, "5th bits, uint32 LE"),
              ("qs", 6, 16, "low 4 bits"))

    @classmethod
    def fields(cls, blocks):
        q = _nibbles(blocks[:, 6:22]) | (_high_bits(blocks[:, 2:6]) << 4)
        return dict(d=fp16_field(blocks, 0), q=q.astype(np.int8) - np.int8(16))

    @classmethod
    def quantize_blocks(cls, x):
        d, q = _symmetric_quants(x, 16)
        return np.concatenate([fp16_bytes(d), _pack_high_bits(q), _pack_nibbles(q & 15)], axis=1)


class Q5_1(LegacyType, ggml_type=GGMLType.Q5_1):
    """5-bit affine: y = d * q + m, q in 0..31; bit 4 of q[j] is bit j of qh.

        byte 0      2      4           8                           24
             +------+------+-----------+---------------------------+
             |  d   |  m   |  qh[4]    | qs[16]: low 4 bits        |
             | fp16 | fp16 | u32 LE    |                           |
             +------+------+-----------+---------------------------+

    Quantizer (quantize_row_q5_1_ref): m = min(w), d = (max(w) - m) / 31,
    q = trunc((w - m) / d + 0.5)  (no clamp in ggml; the value cannot exceed 31).
    """
    vec_dot_type = GGMLType.Q8_1
    layout = (("d", 0, 2, "fp16 scale"), ("m", 2, 2, "fp16 minimum"),
              ("qh", 4, 4, "5th bits, uint32 LE"), ("qs", 8, 16, "low 4 bits"))

    @classmethod
    def fields(cls, blocks):
        q = _nibbles(blocks[:, 8:24]) | (_high_bits(blocks[:, 4:8]) << 4)
        return dict(d=fp16_field(blocks, 0), m=fp16_field(blocks, 2), q=q)

    @classmethod
    def quantize_blocks(cls, x):
        lo, d, inv = _min_and_step(x, 31)
        q = _c_trunc((x - lo) * inv + np.float32(0.5)) & 0xFF     # C stores it in a uint8
        return np.concatenate([fp16_bytes(d), fp16_bytes(lo), _pack_high_bits(q),
                               _pack_nibbles(q & 15)], axis=1)


class Q8_0(LegacyType, ggml_type=GGMLType.Q8_0):
    """8-bit symmetric: y = d * q, q in -127..127.  Also the activation format of the
    Q4_0, Q5_0, Q8_0 and IQ4_NL products.

        byte 0      2                                           34
             +------+-------------------------------------------+
             |  d   | qs[32]: int8                              |
             | fp16 |                                           |
             +------+-------------------------------------------+

    Quantizer (quantize_row_q8_0_ref): d = max|w| / 127, q = roundf(w / d) (halves away
    from zero), computed as w * (1/d).  Activations use ggml-cpu's run-time quantize_row_q8_0
    instead (q = rint(x * 127/max)): q8.py explains the difference.
    """
    vec_dot_type = GGMLType.Q8_0
    layout = (("d", 0, 2, "fp16 scale"), ("qs", 2, 32, "32 int8 quants"))
    quantize_kernel = quantize_rows_q8_0_q8_1
    imatrix = "ignored"                 # quantize_q8_0 takes quant_weights and ignores them

    @classmethod
    def fields(cls, blocks):
        return dict(d=fp16_field(blocks, 0), q=blocks[:, 2:34].view(np.int8))

    @classmethod
    def quantize_blocks(cls, x):
        d, q = q8_round_ref(x)
        return np.concatenate([fp16_bytes(d), q.view(np.uint8)], axis=1)

    @classmethod
    def quantize_fast(cls, x, imatrix=None):
        return quantize_rows_q8_0_ref(x)    # activations round otherwise: see q8.py


def _symmetric_quants(x: np.ndarray, offset: int):
    """(d, q) of the _0 quantizers, offset 8 (Q4_0) or 16 (Q5_0): d = max / -offset (max:
    the weight of largest |w|, its sign kept), q = min(2 offset - 1, trunc(w / d + offset
    + 0.5)), computed as w * (1/d)."""
    d = absmax_signed(x) / np.float32(-offset)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0))
    return d, np.minimum(2 * offset - 1, _c_trunc(x * inv + np.float32(offset + 0.5)))


def _min_and_step(x: np.ndarray, levels: int):
    """(min, d, 1/d) of the _1 quantizers: min and max found by a first-wins scan."""
    lo = np.take_along_axis(x, x.argmin(axis=1)[:, None], axis=1)
    hi = np.take_along_axis(x, x.argmax(axis=1)[:, None], axis=1)
    d = (hi - lo) / np.float32(levels)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0))
    return lo, d, inv

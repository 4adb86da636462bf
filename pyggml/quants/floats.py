"""Float types F32, F16, BF16: a "block" is one number.

    F32   4 bytes   |s|eeeeeeee|mmmmmmmmmmmmmmmmmmmmmmm|   IEEE binary32
    F16   2 bytes   |s|eeeee|mmmmmmmmmm|                  IEEE binary16
    BF16  2 bytes   |s|eeeeeeee|mmmmmmm|                  bfloat16: the top half of a float32

    F16:  y = (-1)^s * 2^(e-15) * 1.m      (e = 0: 2^-14 * 0.m; e = 31: inf/nan)
    BF16: y = the float32 whose bits are (bits << 16)

They appear in GGUF files as embeddings, output heads and whole F16/BF16 models.  For a
product ggml converts the activations to the weight's own format (vec_dot_type F32, F16
or BF16) and accumulates in float32; pyggml.quants does the same, so
``quantize_activations`` and ``matmul_q8`` treat these types like the quantized ones.
(The C kernels, the default backend, keep float32 activations instead: see "F32, F16,
BF16 products" in docs/quant-formats.md.)

Fast kernels: ``floats_numba.py`` (``dequantize_rows``, ``matmul_float``).
"""
from __future__ import annotations

import numpy as np
from ..ggml import GGMLType
from .base import QuantType
from . import floats_numba as fast


class FloatType(QuantType):
    """What the float types share: the stored numbers read and written by numpy's casts
    (``storage``: a little-endian numpy dtype), and the fast layer, where numba sees
    float32 (F32) or uint16 bit patterns (F16, BF16: ``view_dtype``)."""
    storage = "<f4"
    view_dtype = np.float32
    dequant_kernel = fast.dequantize_rows
    matmul_kernel = fast.matmul_float
    imatrix = "ignored"                 # ggml converts floats without one

    @classmethod
    def dequantize_blocks(cls, blocks):
        return blocks.view(cls.storage).astype(np.float32)

    @classmethod
    def quantize_blocks(cls, x):
        return np.ascontiguousarray(x, dtype=np.float32).astype(cls.storage).view(np.uint8)

    @classmethod
    def dequantize_rows_fast(cls, W, rows, out):
        fast.dequantize_rows(int(cls.ggml_type), W.view(cls.view_dtype), rows, out)

    @classmethod
    def matmul_fast(cls, W, xq, out):
        fast.matmul_float(int(cls.ggml_type), W.view(cls.view_dtype), xq.view(cls.view_dtype), out)

    @classmethod
    def quantize_fast(cls, x, imatrix=None):
        return cls.quantize_blocks(x)


class F32(FloatType, ggml_type=GGMLType.F32):
    """IEEE binary32, little-endian."""
    vec_dot_type = GGMLType.F32
    layout = (("value", 0, 4, "float32"),)


class F16(FloatType, ggml_type=GGMLType.F16):
    """IEEE binary16; float32 -> F16 rounds to nearest even (ggml's GGML_FP32_TO_FP16)."""
    vec_dot_type = GGMLType.F16
    storage = "<f2"
    view_dtype = np.uint16
    layout = (("value", 0, 2, "fp16"),)


class BF16(FloatType, ggml_type=GGMLType.BF16):
    """bfloat16.  float32 -> BF16 is ggml_compute_fp32_to_bf16: a NaN stays a quiet NaN,
    everything else rounds to nearest even on the 16 bits that are dropped."""
    vec_dot_type = GGMLType.BF16
    view_dtype = np.uint16
    layout = (("value", 0, 2, "bfloat16"),)

    @classmethod
    def dequantize_blocks(cls, blocks):
        bits = blocks.view("<u2").astype(np.uint32) << np.uint32(16)
        return bits.view(np.float32)

    @classmethod
    def quantize_blocks(cls, x):
        u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
        nan = (u & 0x7FFFFFFF) > 0x7F800000
        rounded = (u + (0x7FFF + ((u >> 16) & 1))) >> 16
        return np.where(nan, (u >> 16) | 64, rounded).astype("<u2").view(np.uint8)

"""Plain numbers: I8, I16, I32, I64 (signed integers) and F64 -- ggml's non-float tensor
types, which GGUF files may hold (token ids, positions, masks; F64 rarely).

    I8   1 byte    I16  2 bytes    I32  4 bytes    I64  8 bytes      little-endian, two's complement
    F64  8 bytes   |s|eeeeeeeeeee|mmmm...52 bits|                    IEEE binary64

A "block" is one number.  pyggml reads them (``fields``: the numbers exactly) and
dequantizes them to float32 like any tensor: each number rounded to the nearest float32,
as C's conversion does (integers beyond 2^24 and most F64 values lose precision; the
exact numbers are in ``fields``).  ggml has no product and no quantizer for these types:
``matmul`` and ``quantize`` refuse them.

Fast kernels: ``floats_numba.py`` (``dequantize_rows``, which converts whatever numbers it
is given).
"""
from __future__ import annotations

from ..ggml import GGMLType
from .floats import FloatType


class PlainType(FloatType):
    """The stored numbers (``storage``, a little-endian numpy dtype, which the fast layer
    views them as too) converted to float32; no product, no quantizer."""
    vec_dot_type = None
    matmul_kernel = None
    quantize_blocks = None

    @classmethod
    def fields(cls, blocks):
        return dict(value=blocks.view(cls.storage))

    @classmethod
    def describe(cls, fields) -> list[str]:
        return [f"value = {fields['value'][0, 0].item()!r}"]


class I8(PlainType, ggml_type=GGMLType.I8):
    """int8."""
    storage = view_dtype = "<i1"
    layout = (("value", 0, 1, "int8"),)


class I16(PlainType, ggml_type=GGMLType.I16):
    """int16, little-endian."""
    storage = view_dtype = "<i2"
    layout = (("value", 0, 2, "int16"),)


class I32(PlainType, ggml_type=GGMLType.I32):
    """int32, little-endian."""
    storage = view_dtype = "<i4"
    layout = (("value", 0, 4, "int32"),)


class I64(PlainType, ggml_type=GGMLType.I64):
    """int64, little-endian."""
    storage = view_dtype = "<i8"
    layout = (("value", 0, 8, "int64"),)


class F64(PlainType, ggml_type=GGMLType.F64):
    """IEEE binary64, little-endian."""
    storage = view_dtype = "<f8"
    layout = (("value", 0, 8, "float64"),)

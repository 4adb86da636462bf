"""What every ggml tensor type is, and the numpy helpers the reference code shares.

A type stores ``block_size`` numbers in ``type_size`` bytes; a row of K numbers is
K / block_size blocks back to back, and a block never spans two rows.  Each type is
one subclass of ``QuantType`` written in two layers:

    reference   numpy, one block per row of a (n_blocks, type_size) uint8 array:
                the struct as a ``layout`` table and a byte map in the docstring,
                ``fields()`` decoding every field by ggml's name, the formula
                (``dequantize_blocks``) and llama.cpp's quantizer (``quantize_blocks``)
    fast        numba kernels in the family's ``*_numba`` module, wired to the class
                by ``dequant_kernel`` and ``matmul_kernel`` (each family's kernels take
                the ggml type id as their first argument); tested against the reference

Float32 arithmetic in the reference code follows ggml's operation order exactly
(numpy never fuses a*b+c), because the quantizers must reproduce llama.cpp's bytes.
"""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedTypeError, UsageError
from ..ggml import TYPE_TRAITS, GGMLType


class QuantType:
    """One ggml tensor type.  Subclasses are never instantiated: the class is the type."""

    ggml_type: GGMLType
    name: str
    block_size: int                 # numbers per block
    type_size: int                  # bytes per block
    vec_dot_type: GGMLType          # format the activations are converted to for a product
    # the block struct: (ggml field name, byte offset, byte count, what it holds); the
    # fields holding an fp16 say "fp16" first.  fp16_offsets is derived from it.
    layout: tuple[tuple[str, int, int, str], ...] = ()
    fp16_offsets: tuple[int, ...] = ()

    # fast layer, set by each concrete type (numba dispatchers)
    dequant_kernel = None           # (ggml_type, W uint8 (n_rows, row_bytes), rows int64, out f32)
    matmul_kernel = None            # family driver: (ggml_type, W, activation views..., out)
    quantize_kernel = None          # numba quantizer, where quantize_fast has one
    # What llama.cpp's quantizer of the type does with an importance matrix (its
    # quant_weights: one float per column of a row): "weights" (it weighs the search for
    # scales and quants: quantize_blocks(x, quant_weights) does the same), "ignored" (the
    # type's quantizer has no use for one: the bytes do not change), "fast" (it weighs, but
    # only the fast layer, quantize_fast, has ggml's weighted quantizer: the numpy
    # reference refuses quant_weights), or None (pyggml does not implement ggml's weighted
    # quantizer of the type: quantize() refuses one).
    imatrix: str | None = None

    def __init_subclass__(cls, ggml_type: GGMLType | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if ggml_type is not None:
            cls.ggml_type = ggml_type
            cls.name = ggml_type.name
            cls.block_size, cls.type_size = TYPE_TRAITS[ggml_type]
        if "layout" in cls.__dict__:
            cls.fp16_offsets = tuple(o for _, o, _, what in cls.layout if what.startswith("fp16"))

    # ------------------------------------------------------------------ reference layer

    @classmethod
    def dequantize_ref(cls, blocks: np.ndarray) -> np.ndarray:
        """uint8 (n_blocks, type_size) -> float32 (n_blocks, block_size), in numpy."""
        blocks = np.asarray(blocks)
        if blocks.dtype != np.uint8 or blocks.ndim != 2 or blocks.shape[1] != cls.type_size:
            raise UsageError(f"{cls.name}.dequantize_ref wants uint8 blocks of shape "
                             f"(n_blocks, {cls.type_size}), got {blocks.dtype} {blocks.shape}")
        return cls.dequantize_blocks(blocks)

    @classmethod
    def quantize_ref(cls, x: np.ndarray, quant_weights: np.ndarray | None = None) -> np.ndarray:
        """float32 (n_blocks, block_size) -> uint8 (n_blocks, type_size), like ggml's *_ref;
        with quant_weights (n_blocks, block_size), the importance of each weight (the
        imatrix entries of its column), like ggml's quantize_<type> given an imatrix."""
        if cls.quantize_blocks is None:
            raise UnsupportedTypeError(f"pyggml has no quantizer for {cls.name}")
        x = np.asarray(x)
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != cls.block_size:
            raise UsageError(f"{cls.name}.quantize_ref wants float32 of shape "
                             f"(n_blocks, {cls.block_size}), got {x.dtype} {x.shape}")
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x.ravel()))[0])
            raise UsageError(f"cannot quantize to {cls.name}: element {bad} is {x.ravel()[bad]}")
        if quant_weights is None or cls.imatrix == "ignored":
            return cls.quantize_blocks(x)
        if cls.imatrix != "weights":
            where = " in its numpy reference (quantize() has one)" if cls.imatrix == "fast" else ""
            raise UnsupportedTypeError(f"pyggml has no importance-matrix quantizer for {cls.name}{where}")
        quant_weights = np.asarray(quant_weights, dtype=np.float32)
        if quant_weights.shape != x.shape:
            raise UsageError(f"{cls.name}.quantize_ref: quant_weights must have x's shape "
                             f"{x.shape}, got {quant_weights.shape}")
        return cls.quantize_blocks(x, quant_weights)

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    quantize_blocks = None          # classmethod on the types that have a quantizer

    @classmethod
    def has_quantizer(cls) -> bool:
        return cls.quantize_blocks is not None

    # ------------------------------------------------------------------ fast layer

    @classmethod
    def dequantize_rows_fast(cls, W: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
        """out[i] = row rows[i] of W, decoded (numba, parallel over rows)."""
        cls.dequant_kernel(int(cls.ggml_type), W, rows, out)

    @classmethod
    def quantize_fast(cls, x: np.ndarray, imatrix: np.ndarray | None = None) -> np.ndarray:
        """float32 (n_rows, K) -> uint8 (n_rows, row_bytes), with an optional imatrix
        float32 (K,); the reference unless a type has more."""
        n_rows, k = x.shape
        weights = None if imatrix is None else np.broadcast_to(imatrix, x.shape).reshape(-1, cls.block_size)
        blocks = cls.quantize_ref(x.reshape(-1, cls.block_size), weights)
        return blocks.reshape(n_rows, k // cls.block_size * cls.type_size)


# ---------------------------------------------------------------------- numpy helpers

def fp16_field(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The fp16 at byte ``offset`` of every block, as float32 (n_blocks, 1)."""
    return blocks[:, offset:offset + 2].view("<f2").astype(np.float32)


def fp16_bytes(values: np.ndarray) -> np.ndarray:
    """float32 (n,) or (n, 1) -> uint8 (n, 2): IEEE half, round to nearest even (GGML_FP32_TO_FP16);
    beyond the fp16 range that is +-inf, as in ggml."""
    with np.errstate(over="ignore"):
        half = np.ascontiguousarray(values, dtype=np.float32).reshape(-1).astype("<f2")
    return half.view(np.uint8).reshape(-1, 2)


def fp16_round(values: np.ndarray) -> np.ndarray:
    """float32 -> the float32 value of its fp16 encoding (what a block stores, read back)."""
    with np.errstate(over="ignore"):
        return values.astype("<f2").astype(np.float32)


def nearest_int(x: np.ndarray) -> np.ndarray:
    """ggml's nearest_int, bit for bit: the low 23 bits of the float32 x + 1.5 * 2^23,
    less 2^22, as int32.  For |x| <= 2^22 that is x rounded half to even; beyond, it is
    no rounding of x at all (ggml's range assert is compiled out of release builds) but
    what ggml's quantizers then use, and they do get there: IQ3's refit multiplies by
    1 / the least-squares scale, which an importance matrix of mostly zeros can make 2^-20
    of the largest weight (np.rint would give a level 7 where ggml clamps garbage to 0)."""
    magic = np.asarray(x, np.float32) + np.float32(12582912)
    return (magic.view(np.int32) & np.int32(0x7FFFFF)) - np.int32(0x400000)


def roundf(x: np.ndarray) -> np.ndarray:
    """C's roundf / lroundf of float32 values: halves away from zero (np.rint rounds them
    to even), as int64; exact in float64, where x + 0.5 cannot round."""
    v = np.asarray(x).astype(np.float64)
    return (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int64)


def seq_sum(a: np.ndarray) -> np.ndarray:
    """Sum along the last axis strictly left to right in float32, like a C loop (keepdims)."""
    total = np.zeros(a.shape[:-1] + (1,), dtype=np.float32)
    for i in range(a.shape[-1]):
        total += a[..., i:i + 1]
    return total


def absmax_signed(x: np.ndarray) -> np.ndarray:
    """The element of largest |x| along the last axis, keeping its sign; the first one on ties.

    This is ggml's ``if (ax > amax) { amax = ax; max = x[i]; }`` scan (keepdims), which
    starts from max = +0.0: an all-zero block gives +0.0 even if it holds -0.0.
    """
    found = np.take_along_axis(x, np.abs(x).argmax(axis=-1)[..., None], axis=-1)
    return np.where(found == 0, np.float32(0), found)


def f32(values) -> np.ndarray:
    """An integer array as float32 (a bare int * float32 would make float64)."""
    return np.asarray(values).astype(np.float32)

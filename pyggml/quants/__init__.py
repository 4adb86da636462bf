"""pyggml.quants: ggml's tensor types, readable in numpy and fast in numba.

It takes byte arrays and shapes and knows nothing of files.  Types and where they live:

    floats.py    F32 F16 BF16
    legacy.py    Q4_0 Q4_1 Q5_0 Q5_1 Q8_0          (fast kernels: legacy_numba.py)
    k.py         Q2_K Q3_K Q4_K Q5_K Q6_K          (fast kernels: k_numba.py)
    iq.py        IQ4_NL IQ4_XS                     (fast kernels: legacy_numba.py, iq_numba.py)
    iq3.py       IQ3_XXS IQ3_S                     (fast kernels: iq_numba.py)
    ternary.py   TQ1_0 TQ2_0                       (fast kernels: ternary_numba.py)
    fp4.py       MXFP4 NVFP4                       (fast kernels: legacy_numba.py, lowbit_numba.py)
    lowbit.py    Q1_0 Q2_0                         (fast kernels: lowbit_numba.py)
    ints.py      I8 I16 I32 I64 F64                (read and dequantized; no product, no quantizer)
    iq_grid.py   IQ2_XXS IQ2_XS IQ2_S IQ1_S IQ1_M  (fast kernels: iq_grid_numba.py; grids:
                                                    iq_grid_points.py)
    q8.py        Q8_K Q8_1 (and Q8_0's numba quantizers): the activation formats

Public API (docs/quant-formats.md explains the formats):

    get(ggml_type) -> QuantType                       the registry: the only place that
                                                      dispatches on type ids
    dequantize(ggml_type, raw, shape) -> float32 ndarray of `shape`           (numba)
    dequantize_rows(ggml_type, W, rows, n_per_row) -> float32 (len(rows), K)  (numba)
    quantize(ggml_type, x (..., K)) -> uint8 (..., row_bytes)    bytes identical to llama.cpp
    quantize_stored(ggml_type, src_type, W (N, row_bytes)) -> uint8   the same, from rows as
                                                      a file stores them (one pass from floats)
    vec_dot_type(ggml_type) -> GGMLType               Q8_K / Q8_0 / Q8_1 / F32 / F16 / BF16
    quantize_activations(x (T, K), vec_dot_type) -> uint8 (T, act_row_bytes)
    matmul_q8(ggml_type, W (N, row_bytes), xq, out (T, N))    out[t, n] = vec_dot(W[n], xq[t])
    matmul(ggml_type, W, X (T, K)) -> float32 (T, N)          quantize_activations + matmul_q8
    matmul_exact(ggml_type, W, X) -> float32 (T, N)           float64 product of the exactly
                                                              dequantized weights with X
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedTypeError, UsageError
from ..ggml import GGMLType, type_name
from .base import QuantType
from .floats import BF16, F16, F32
from .fp4 import MXFP4, NVFP4
from .ints import F64, I8, I16, I32, I64
from .iq import IQ4_NL, IQ4_XS
from .iq3 import IQ3_S, IQ3_XXS
from .iq_grid import IQ1_M, IQ1_S, IQ2_S, IQ2_XS, IQ2_XXS
from .jit import announce_compile
from .k import Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
from .legacy import Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
from .lowbit import Q1_0, Q2_0
from .q8 import Q8_1, Q8_K, quantize_activations_q8_0
from .ternary import TQ1_0, TQ2_0

__all__ = ["QuantType", "TYPES", "get", "dequantize", "dequantize_rows", "quantize", "quantize_stored",
           "vec_dot_type", "quantize_activations", "matmul_q8", "matmul", "matmul_exact",
           "supported_types"]

# Weight types: what a GGUF tensor may use.  Activation formats are listed apart: they
# have reference code (and Q8_0 is both), but no product of their own.
TYPES: dict[GGMLType, type[QuantType]] = {
    cls.ggml_type: cls for cls in (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
                                   Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,
                                   IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M,
                                   IQ4_XS, IQ3_XXS, IQ3_S, TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0, Q2_0,
                                   I8, I16, I32, I64, F64)}
ACTIVATION_TYPES: dict[GGMLType, type[QuantType]] = {
    cls.ggml_type: cls for cls in (Q8_K, Q8_0, Q8_1, F32, F16, BF16)}


def supported_types() -> list[str]:
    return [t.name for t in TYPES]


def get(ggml_type: int) -> type[QuantType]:
    """The QuantType of a ggml type id; UnsupportedTypeError naming it if pyggml has none."""
    cls = TYPES.get(ggml_type) or ACTIVATION_TYPES.get(ggml_type)
    if cls is None:
        raise UnsupportedTypeError(
            f"ggml type {type_name(int(ggml_type))} (id {int(ggml_type)}) is not supported by "
            f"pyggml.quants; supported: {', '.join(supported_types())}")
    return cls


def _weight_type(ggml_type: int) -> type[QuantType]:
    cls = get(ggml_type)
    if cls.ggml_type not in TYPES:
        raise UnsupportedTypeError(f"{cls.name} is an activation format, not a weight type")
    return cls


def _row_length(cls, n_per_row: int, what: str) -> None:
    if n_per_row <= 0 or n_per_row % cls.block_size:
        raise UsageError(f"{what}: a {cls.name} row must be a positive multiple of "
                         f"{cls.block_size} numbers, got {n_per_row}")


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view.  numba compiles a kernel separately for read-only and writable
    arrays; weights usually come read-only from a file's map, so every input is passed
    read-only and each kernel is compiled (and cached) once."""
    view = a.view()
    view.flags.writeable = False
    return view


def _byte_rows(cls, W: np.ndarray, what: str) -> int:
    """Check W is uint8 (N, row_bytes) with whole blocks; return K, the numbers per row."""
    if not isinstance(W, np.ndarray) or W.dtype != np.uint8 or W.ndim != 2:
        raise UsageError(f"{what}: weights must be a uint8 array (n_rows, row_bytes), got "
                         f"{getattr(W, 'dtype', type(W))} {getattr(W, 'shape', '')}")
    if W.shape[1] == 0 or W.shape[1] % cls.type_size:
        raise UsageError(f"{what}: {W.shape[1]} bytes per row is not a whole number of "
                         f"{cls.type_size}-byte {cls.name} blocks")
    return W.shape[1] // cls.type_size * cls.block_size


# ---------------------------------------------------------------------- decoding

def dequantize(ggml_type: int, raw: np.ndarray, shape) -> np.ndarray:
    """The float32 values of a tensor: raw uint8 bytes (any shape, contiguous) -> `shape`."""
    cls = get(ggml_type)
    shape = tuple(int(s) for s in shape)
    n = math.prod(shape)
    raw = np.ascontiguousarray(raw).reshape(-1)
    if raw.dtype != np.uint8:
        raise UsageError(f"dequantize: raw data must be uint8 bytes, got {raw.dtype}")
    if not shape or shape[-1] % cls.block_size or min(shape) < 0:
        raise UsageError(f"dequantize: shape {shape} does not fit {cls.name}, whose rows are "
                         f"multiples of {cls.block_size} numbers")
    n_blocks = n // cls.block_size
    if raw.size != n_blocks * cls.type_size:
        raise UsageError(f"dequantize: {cls.name} tensor of shape {shape} needs "
                         f"{n_blocks * cls.type_size} bytes, got {raw.size}")
    if n == 0:
        return np.zeros(shape, dtype=np.float32)
    if cls.dequant_kernel is None:                  # activation formats: reference only
        return cls.dequantize_ref(raw.reshape(n_blocks, cls.type_size)).reshape(shape)
    # Rows as the tensor has them, unless there are too few to share among threads:
    # then one block per row (blocks are independent).
    k = shape[-1] if n // shape[-1] >= 16 else cls.block_size
    out = np.empty((n // k, k), dtype=np.float32)
    W = _readonly(raw.reshape(n // k, k // cls.block_size * cls.type_size))
    announce_compile(cls.dequant_kernel, f"{cls.name} dequantization")
    cls.dequantize_rows_fast(W, _readonly(np.arange(n // k, dtype=np.int64)), out)
    return out.reshape(shape)


def dequantize_rows(ggml_type: int, W: np.ndarray, rows, n_per_row: int) -> np.ndarray:
    """Rows `rows` of a matrix W uint8 (N, row_bytes), decoded: float32 (len(rows), n_per_row).

    The embedding lookup: only the rows asked for are read.
    """
    cls = _weight_type(ggml_type)
    _row_length(cls, n_per_row, "dequantize_rows")
    k = _byte_rows(cls, W, "dequantize_rows")
    if k != n_per_row:
        raise UsageError(f"dequantize_rows: W rows hold {k} {cls.name} numbers, not {n_per_row}")
    rows = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= W.shape[0]):
        bad = rows[(rows < 0) | (rows >= W.shape[0])][0]
        raise UsageError(f"dequantize_rows: row {bad} is out of range for {W.shape[0]} rows")
    out = np.empty((rows.size, n_per_row), dtype=np.float32)
    if rows.size:
        announce_compile(cls.dequant_kernel, f"{cls.name} dequantization")
        cls.dequantize_rows_fast(_readonly(W), _readonly(rows), out)
    return out


# ---------------------------------------------------------------------- encoding

def quantize(ggml_type: int, x: np.ndarray, imatrix: np.ndarray | None = None) -> np.ndarray:
    """float32 (..., K) -> uint8 (..., row_bytes), byte for byte what llama.cpp's quantizer
    (ggml_quantize_chunk) writes: without an imatrix its reference quantizer
    (quantize_row_<type>_ref, or quantize_iq4_nl); with imatrix, float32 (K,) the importance
    of each column (llama.cpp's quant_weights, read from an imatrix file), ggml's weighted
    quantizer of the type (types whose quantizer ignores it give the same bytes; types for
    which pyggml has no weighted quantizer refuse it)."""
    cls = _weight_type(ggml_type)
    if not cls.has_quantizer():
        raise UnsupportedTypeError(f"pyggml has no quantizer for {cls.name}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 0:
        raise UsageError("quantize: x must have at least one dimension")
    _row_length(cls, x.shape[-1], "quantize")
    if not np.isfinite(x).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise UsageError(f"quantize: cannot quantize to {cls.name}: x{list(bad)} is {x[bad]}")
    if imatrix is not None:
        imatrix = np.ascontiguousarray(imatrix, dtype=np.float32).reshape(-1)
        if imatrix.size != x.shape[-1] or not np.isfinite(imatrix).all():
            raise UsageError(f"quantize: imatrix must hold {x.shape[-1]} finite numbers (one per "
                             f"column), got {imatrix.size}")
        if cls.imatrix is None:
            raise UnsupportedTypeError(f"pyggml has no importance-matrix quantizer for {cls.name}")
        if cls.imatrix == "ignored":
            imatrix = None
    rows = x.reshape(-1, x.shape[-1])
    if not rows.size:
        out = np.empty((0, 0), np.uint8)
    elif imatrix is None:
        out = cls.quantize_fast(_readonly(rows))
    else:
        out = cls.quantize_fast(_readonly(rows), _readonly(imatrix))
    return out.reshape(x.shape[:-1] + (x.shape[-1] // cls.block_size * cls.type_size,))


def quantize_stored(ggml_type: int, src_type: int, W: np.ndarray,
                    imatrix: np.ndarray | None = None) -> np.ndarray:
    """Rows as a file stores them, W uint8 (N, row_bytes) of src_type, quantized to
    ggml_type: ``quantize(ggml_type, dequantize_rows(src_type, W, ...), imatrix)``, the
    same bytes.  From F32, F16 or BF16 to a type of quantize_numba.py's (the K-quants,
    the legacy types, IQ4_NL) in one pass, each row decoded just before it is quantized
    (no float32 copy of W); otherwise through float32 rows."""
    from . import quantize_numba
    src, cls = _weight_type(src_type), _weight_type(ggml_type)
    k = _byte_rows(src, W, "quantize_stored")
    fused = (cls.quantize_kernel is quantize_numba.quantize_rows and src in (F32, F16, BF16)
             and (imatrix is None or cls.imatrix is not None))
    if not fused or not W.shape[0]:
        return quantize(ggml_type, dequantize_rows(src_type, W, np.arange(W.shape[0]), k), imatrix)
    _row_length(cls, k, "quantize_stored")
    if imatrix is not None:
        imatrix = np.ascontiguousarray(imatrix, dtype=np.float32).reshape(-1)
        if imatrix.size != k or not np.isfinite(imatrix).all():
            raise UsageError(f"quantize_stored: imatrix must hold {k} finite numbers (one per "
                             f"column), got {imatrix.size}")
    out, bad = quantize_numba.quantize_stored(cls, src, _readonly(W), imatrix)
    if bad >= 0:
        x = dequantize_rows(src_type, W, np.array([bad]), k)[0]
        column = int(np.flatnonzero(~np.isfinite(x))[0])
        raise UsageError(f"quantize_stored: cannot quantize to {cls.name}: row {bad}, column "
                         f"{column} is {x[column]}")
    return out


# ---------------------------------------------------------------------- products

def vec_dot_type(ggml_type: int) -> GGMLType:
    """The activation format ggml quantizes the input to, for weights of this type."""
    return _weight_type(ggml_type).vec_dot_type


def quantize_activations(x: np.ndarray, vec_dot_type: int) -> np.ndarray:
    """float32 (T, K) -> uint8 (T, act_row_bytes) in ggml's block layout for vec_dot_type,
    as llama.cpp's x86 CPU backend quantizes activations: quantize_row_q8_K (= _ref),
    quantize_row_q8_0 and quantize_row_q8_1 of ggml-cpu, which round unlike the _ref
    functions that write Q8_0 weights (see q8.py); F32/F16/BF16: the numbers converted."""
    fmt = ACTIVATION_TYPES.get(vec_dot_type)
    if fmt is None:
        raise UsageError(f"quantize_activations: {type_name(int(vec_dot_type))} is not an "
                         f"activation format (one of {', '.join(t.name for t in ACTIVATION_TYPES)})")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise UsageError(f"quantize_activations: x must be (T, K), got shape {x.shape}")
    _row_length(fmt, x.shape[1], "quantize_activations")
    announce_compile(fmt.quantize_kernel, f"{fmt.name} activation")
    if fmt is Q8_0:                 # a weight type too, whose quantize_fast is the _ref one
        return quantize_activations_q8_0(_readonly(x))
    return fmt.quantize_fast(_readonly(x))


def matmul_q8(ggml_type: int, W: np.ndarray, xq: np.ndarray, out: np.ndarray) -> None:
    """out[t, n] = dot(W row n, activation row t), as ggml's vec_dot_<type>_<vec_dot_type>:
    integer dot products per block, scaled and accumulated in float32 (see the kernels)."""
    cls = _weight_type(ggml_type)
    k = _byte_rows(cls, W, f"matmul_q8({cls.name})")
    fmt = ACTIVATION_TYPES[cls.vec_dot_type]
    act_bytes = k // fmt.block_size * fmt.type_size
    if xq.dtype != np.uint8 or xq.ndim != 2 or xq.shape[1] != act_bytes:
        raise UsageError(f"matmul_q8({cls.name}): activations must be uint8 (T, {act_bytes}) "
                         f"({fmt.name} rows of {k}), got {xq.dtype} {xq.shape}")
    if (out.dtype != np.float32 or out.shape != (xq.shape[0], W.shape[0])
            or not out.flags.c_contiguous):
        raise UsageError(f"matmul_q8({cls.name}): out must be C-contiguous float32 "
                         f"{(xq.shape[0], W.shape[0])}, got {out.dtype} {out.shape}")
    announce_compile(cls.matmul_kernel, f"{cls.name} product")
    cls.matmul_fast(_readonly(W), _readonly(np.ascontiguousarray(xq)), out)


def matmul(ggml_type: int, W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """X (T, K) float32 times W (N, K) stored as ggml_type -> (T, N), the way ggml does it."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    xq = quantize_activations(X, vec_dot_type(ggml_type))
    out = np.empty((X.shape[0], W.shape[0]), dtype=np.float32)
    matmul_q8(ggml_type, W, xq, out)
    return out


def matmul_exact(ggml_type: int, W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """X (T, K) times the exactly dequantized W (N, K), in float64, rounded to float32 once.

    No activation quantization: the reference the fast products are measured against, and
    the path to use when studying a format's own error.
    """
    cls = _weight_type(ggml_type)
    k = _byte_rows(cls, W, "matmul_exact")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != k:
        raise UsageError(f"matmul_exact: X must be (T, {k}), got {X.shape}")
    out = np.empty((X.shape[0], W.shape[0]), dtype=np.float32)
    x64 = X.astype(np.float64)
    step = max(1, (1 << 22) // k)                  # dequantize ~16 MB of weights at a time
    for start in range(0, W.shape[0], step):
        rows = np.arange(start, min(W.shape[0], start + step))
        w = dequantize_rows(cls.ggml_type, W, rows, k).astype(np.float64)
        out[:, start:start + rows.size] = x64 @ w.T
    return out

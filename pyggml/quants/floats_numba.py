"""Fast layer of the float types F32, F16, BF16 (reference and layouts: ``floats.py``), and
the dequantization of the plain numbers of ``ints.py`` (I8 .. I64, F64).

numba sees the stored numbers as float32 (F32) or as uint16 bit patterns (F16, BF16);
``kind`` is the ggml type id:

    dequantize_rows(kind, W, rows, out)   out[i] = row rows[i] of W as float32, 16
                                          numbers per step (vcvtph2ps for F16; BF16 is
                                          the top half of a float32's bits)
    matmul_float(kind, W, X, out)         out (T, N) = X (T, K) @ W (N, K).T, float32
                                          sums; X holds activations already converted to
                                          the weight's type, as ggml converts them
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ..ggml import GGMLType
from .jit import (ROWS_PER_TASK, Vector, bitcast, bits_to_f32, convert, f16_to_f32, halves_to_f32,
                  vload, vstore)

BF16 = int(GGMLType.BF16)


def decode(bf16, v):
    """Stored numbers -> float32: v is a float32 (F32) or uint16 bits (F16, or BF16 if
    bf16), a scalar or a Vector of them; or a plain number of ints.py (float64, signed
    integers), rounded to the nearest float32 as C converts it."""


@overload(decode, inline="always")
def _decode(bf16, v):
    dtype = v.dtype if isinstance(v, Vector) else v
    if dtype == types.float32:
        return lambda bf16, v: v
    if isinstance(dtype, types.Float) or (isinstance(dtype, types.Integer) and dtype.signed):
        if isinstance(v, Vector):
            return lambda bf16, v: convert(v, np.float32)
        return lambda bf16, v: np.float32(v)
    if isinstance(v, Vector):
        def from_bits(bf16, v):
            if bf16:
                return bitcast(convert(v, np.uint32) << np.uint32(16), np.float32)
            return halves_to_f32(v)
        return from_bits

    def from_bits(bf16, v):
        if bf16:
            return bits_to_f32(np.uint32(v) << np.uint32(16))
        return f16_to_f32(v)
    return from_bits


@njit(parallel=True, cache=True)
def dequantize_rows(kind, W, rows, out):
    """out[i] = W[rows[i]] as float32.  W (n_rows, K): float32, or uint16 bits."""
    bf16 = kind == BF16
    for i in prange(rows.size):
        w, y = W[rows[i]], out[i]
        whole = y.size - y.size % 16
        for k in range(0, whole, 16):
            vstore(y, k, decode(bf16, vload(w, k, 16)))
        for k in range(whole, y.size):
            y[k] = decode(bf16, w[k])


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def matmul_float(kind, W, X, out):
    """out (T, N) = X (T, K) @ W (N, K).T with float32 accumulation; W and X hold numbers of
    the same float type.  The summation order is left to LLVM (SIMD lanes): ggml's
    products of these types are not reproduced bit for bit."""
    bf16 = kind == BF16
    N = W.shape[0]
    T, K = X.shape
    x32 = np.empty((T, K), dtype=np.float32)
    for t in range(T):
        for k in range(K):
            x32[t, k] = decode(bf16, X[t, k])
    n_tasks = (N + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(n_tasks):
        for t in range(T):
            x = x32[t]
            for n in range(task * ROWS_PER_TASK, min(N, (task + 1) * ROWS_PER_TASK)):
                w = W[n]
                acc = np.float32(0)
                for k in range(K):
                    acc += decode(bf16, w[k]) * x[k]
                out[t, n] = acc

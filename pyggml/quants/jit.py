"""Numba building blocks shared by every fast kernel in pyggml.quants.

Kernels take byte arrays (``uint8``) exactly as they lie in a GGUF file and read the
block fields themselves, so that nothing is copied or converted before a product.
The helpers here are the few things plain numba cannot say directly:

    fma32(a, b, c)     a * b + c in float32 with one rounding (LLVM ``llvm.fma``), as
                       ggml's kernels do with _mm256_fmadd_ps
    f16_to_f32(bits)   IEEE half -> float32 (LLVM ``fpext half``: one vcvtph2ps on x86)
    f32_to_f16(x)      float32 -> IEEE half bits, round to nearest even (``fptrunc``)
    bits_to_f32(u)     uint32 bits -> float32 (a bfloat16 is the top half of these bits)
    u16(w, o)          little-endian uint16 at byte offset o of a uint8 array
    u32(w, o)          little-endian uint32 at byte offset o
    nearest_int(x)     ggml's nearest_int: round half to even, as int32
    round_away(x)      C's roundf: halves away from zero (np.rint rounds them to even)

Compilation: every kernel is ``@njit(cache=True)``, compiled lazily on first use and
then loaded from numba's on-disk cache.  ``announce_compile`` prints a one-line notice
the first time a kernel has to be compiled on this machine, so that a pause of a few
seconds on a first run is explained.

Integer arithmetic note: numba widens int32 arithmetic to int64.  Kernels wrap sums in
``np.int32(...)`` so that LLVM keeps 32-bit lanes, which is what lets it emit packed
multiply-adds (vpmaddwd) instead of 64-bit multiplies.
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import types
from numba.extending import intrinsic


@intrinsic
def fma32(typingctx, a, b, c):
    """float32 a * b + c rounded once (a fused multiply-add on any CPU: LLVM falls back
    to libm's fmaf where there is no FMA instruction)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fma = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32] * 3))
        return builder.call(fma, args)
    return sig, codegen


@intrinsic
def f16_to_f32(typingctx, bits):
    """IEEE binary16 bits (uint16) -> float32, exactly (every half is a float32)."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        half = builder.bitcast(args[0], ir.HalfType())
        return builder.fpext(half, ir.FloatType())
    return sig, codegen


@intrinsic
def f32_to_f16(typingctx, value):
    """float32 -> IEEE binary16 bits (uint16), rounded to nearest even like ggml's fp32_to_fp16."""
    sig = types.uint16(types.float32)

    def codegen(context, builder, signature, args):
        half = builder.fptrunc(args[0], ir.HalfType())
        return builder.bitcast(half, ir.IntType(16))
    return sig, codegen


@intrinsic
def bits_to_f32(typingctx, bits):
    """Reinterpret uint32 bits as a float32 (C: memcpy)."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return sig, codegen


@njit(inline="always")
def u16(w, o):
    """Little-endian uint16 at byte offset o of the uint8 array w."""
    return np.uint16(w[o]) | (np.uint16(w[o + 1]) << np.uint16(8))


@njit(inline="always")
def u32(w, o):
    """Little-endian uint32 at byte offset o of the uint8 array w."""
    return (np.uint32(w[o]) | (np.uint32(w[o + 1]) << np.uint32(8))
            | (np.uint32(w[o + 2]) << np.uint32(16)) | (np.uint32(w[o + 3]) << np.uint32(24)))


@njit(inline="always")
def f16(w, o):
    """The fp16 field at byte offset o of w, as float32."""
    return f16_to_f32(u16(w, o))


@njit(inline="always")
def nearest_int(x):
    """ggml's nearest_int (the 1.5*2^23 magic-number trick): round half to even."""
    return np.int32(np.rint(x))


@njit(inline="always")
def round_away(x):
    """C roundf(x) for a float32 x: exact in float64, where x + 0.5 cannot round."""
    v = np.float64(x)
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


@njit(inline="always")
def hsum8(a):
    """The float32 sum of a[0..7] as ggml's hsum_float_8 pairs them (arch/x86/quants.c):
    the two halves added, then pairs, then the last two."""
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))


# The float orders of llama.cpp's CPU kernels (kernels/ggml_order.c explains each and says
# which one ggml takes when; order() picks it as llama.cpp's AVX-512 x86 build does)
VEC_DOT, TINYBLAS, GEMV, GEMM, TILED = range(5)
_REPACKED = (2, 20, 12, 10)            # Q4_0, IQ4_NL, Q4_K, Q2_K: interleaved at load
_K_QUANTS = (10, 11, 12, 13, 14)       # Q2_K .. Q6_K
_Q0_TYPES = (2, 6, 8, 20)              # Q4_0, Q5_0, Q8_0, IQ4_NL: tinyBLAS for prompts


@njit(inline="always")
def order(kind, n_rows, n_act, t):
    """The order of activation row t of a product of n_act rows with a matrix of n_rows
    rows of ggml type `kind`: repacked matrices (rows % 8 == 0) take rows 4 at a time
    (GEMM) and the last n_act % 4 alone (GEMV); other K-quants the tiled matmul from 8
    rows; other Q4_0 Q5_0 Q8_0 IQ4_NL tinyBLAS from 2; everything else vec_dot."""
    if kind in _REPACKED and n_rows % 8 == 0:
        return GEMM if t < n_act - n_act % 4 else GEMV
    if kind in _K_QUANTS and n_act >= 8:
        return TILED
    if kind in _Q0_TYPES and n_act >= 2:
        return TINYBLAS
    return VEC_DOT


# Rows of the weight matrix handled by one parallel work item in the products: enough
# to amortize the scheduling, few enough that a 2-thread machine still splits small
# matrices (a 128-row K/V projection is 8 work items).
ROWS_PER_TASK = 16


_announced: set[str] = set()


def announce_compile(kernel, label: str) -> None:
    """Print a notice before ``kernel`` is compiled for the first time on this machine.

    numba keeps compiled kernels on disk (``cache=True``); only when no cache index
    exists yet is the compilation (seconds per kernel family) about to happen.
    """
    if label in _announced:
        return
    _announced.add(label)
    try:
        index = kernel._cache._cache_file._index_path      # numba internals; best effort
    except AttributeError:
        return
    if not os.path.exists(index):
        print(f"pyggml: compiling the {label} kernels with numba "
              "(first run on this machine only; cached afterwards)", file=sys.stderr)

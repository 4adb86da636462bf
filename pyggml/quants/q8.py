"""Activation formats: Q8_K, Q8_0, Q8_1 -- what ggml turns the input of a product into.

On the CPU ggml never multiplies quantized weights by float activations.  Each row of the
activations is first quantized to 8 bits in the weight type's ``vec_dot_type``:

    weights                                   activations
    Q2_K Q3_K Q4_K Q5_K Q6_K                  Q8_K   (256 per block, float32 scale)
    Q4_0 Q5_0 Q8_0 IQ4_NL                     Q8_0   (32 per block, fp16 scale)
    Q4_1 Q5_1                                 Q8_1   (Q8_0 plus s = d * sum(qs))

and the dot product of a block is an integer sum, scaled once per block.  pyggml does the
same (``quantize_activations`` then ``matmul_q8``), so one quantized input serves every
matrix that reads it (q/k/v, gate/up), and results stay close to llama.cpp's.

Two quantizers of Q8_0: files and run time
------------------------------------------
ggml has two functions for each of Q8_0 and Q8_1, and they round differently:

    quantize_row_q8_0_ref   (ggml-base; files)   d = max|x| / 127,  id = 1 / d
                                                 q = roundf(x * id)       halves away from 0
    quantize_row_q8_0       (ggml-cpu x86; run   d = max|x| / 127,  id = 127 / max|x|
                             time activations)   q = rint(x * id)         halves to even

``llama_model_quantize`` writes Q8_0 WEIGHTS with the _ref function, so
``quants.quantize(Q8_0, ...)`` (legacy.Q8_0) is the _ref arithmetic.  But when llama.cpp
runs a model, the activations go through ggml-cpu's ``from_float``, which on x86 is the
AVX code of quantize_row_q8_0 / q8_1 (ggml-cpu/arch/x86/quants.c); its 127/max and
round-half-to-even differ from the _ref bytes in about one element in a thousand, and a
model is chaotic enough that such a difference changes later tokens.  So pyggml's
ACTIVATIONS (``quantize_activations``, the C library's ``pyggml_quantize_act``) follow the
run-time function, bit for bit, including what its instructions do with extreme blocks:

    - 127 / max overflows to inf when max < ~3.7e-37: every lane is then +-inf or NaN,
      which cvtps_epi32 turns into INT32_MIN and the saturating packs into -128 (d is 0);
    - inf in a block gives d = inf (fp16 inf), NaN lanes for the infs (-> -128), 0 elsewhere;
    - Q8_1's s = fp16(d * (float)sum), d the float32 before its fp16 rounding, sum the
      int32 sum of the lanes with wrap-around (INT32_MIN lanes included).
    NaN inputs are not covered (ggml's result then depends on its max's lane order).

Q8_K has one function: on x86, quantize_row_q8_K is quantize_row_q8_K_ref.

block_q8_K (292 bytes):                         y = d * qs
    byte 0        4                                  260                  292
         +--------+----------------------------------+--------------------+
         |   d    |  qs[256]  int8                    |  bsums[16] int16   |
         |  f32   |                                   |  sum of qs[16g..]  |
         +--------+----------------------------------+--------------------+
    quantize_row_q8_K_ref: max = the value of largest |x| (signed), iscale = -127/max,
    qs = min(127, nearest_int(iscale * x)), d = 1/iscale (d may be negative).

block_q8_0 (34 bytes): see legacy.Q8_0 (fp16 d, then qs[32]).

block_q8_1 (36 bytes):                          y = d * qs
    byte 0      2      4                                            36
         +------+------+--------------------------------------------+
         |  d   |  s   |  qs[32]  int8                              |
         | fp16 | fp16 |  s = fp16(d * sum(qs)), for the _1 offsets  |
         +------+------+--------------------------------------------+
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..ggml import GGMLType
from .base import QuantType, absmax_signed, f32, fp16_bytes, fp16_field, nearest_int
from .jit import f32_to_f16, nearest_int as nearest_int_jit, round_away

INT32_MIN = -2**31            # what cvtps_epi32 makes of inf, NaN and out-of-range lanes


class ActivationType(QuantType):
    """What the activation-only formats share: y = d * q per block."""

    @classmethod
    def dequantize_blocks(cls, blocks):
        f = cls.fields(blocks)
        return f["d"] * f32(f["q"])


class Q8_K(ActivationType, ggml_type=GGMLType.Q8_K):
    """Activations of the K-quant products (never stored in files)."""
    vec_dot_type = GGMLType.Q8_K
    layout = (("d", 0, 4, "float32 scale"), ("qs", 4, 256, "int8 quants"),
              ("bsums", 260, 32, "16 int16 sums of 16 qs"))

    @classmethod
    def fields(cls, blocks):
        return dict(d=blocks[:, 0:4].view("<f4").astype(np.float32), q=blocks[:, 4:260].view(np.int8),
                    bsums=blocks[:, 260:292].view("<i2"))

    @classmethod
    def quantize_blocks(cls, x):
        max_x = absmax_signed(x)                    # largest |x|, its sign kept
        with np.errstate(divide="ignore", invalid="ignore"):
            iscale = np.float32(-127) / max_x
            qs = np.minimum(127, nearest_int(np.where(max_x != 0, iscale * x, 0)))
            d = np.where(max_x != 0, np.float32(1) / iscale, np.float32(0))
        bsums = qs.reshape(-1, 16, 16).sum(axis=2)
        return np.concatenate([d.astype("<f4").view(np.uint8), qs.astype(np.int8).view(np.uint8),
                               bsums.astype("<i2").view(np.uint8)], axis=1)

    @classmethod
    def quantize_fast(cls, x):
        return quantize_activations_q8_K(x)


class Q8_1(ActivationType, ggml_type=GGMLType.Q8_1):
    """Activations of the Q4_1/Q5_1 products (never stored in files): ggml-cpu's run-time
    quantize_row_q8_1 (see the module docstring), not quantize_row_q8_1_ref."""
    vec_dot_type = GGMLType.Q8_1
    layout = (("d", 0, 2, "fp16 scale"), ("s", 2, 2, "fp16 d * sum(qs)"), ("qs", 4, 32, "int8 quants"))

    @classmethod
    def fields(cls, blocks):
        return dict(d=fp16_field(blocks, 0), s=fp16_field(blocks, 2), q=blocks[:, 4:36].view(np.int8))

    @classmethod
    def quantize_blocks(cls, x):
        return q8_blocks_run_time(x, with_sum=True)

    @classmethod
    def quantize_fast(cls, x):
        return quantize_activations_q8_1(x)


def q8_round_ref(x: np.ndarray):
    """quantize_row_q8_0_ref's arithmetic on (n, 32) blocks (Q8_0 weights): d = amax / 127
    and q = roundf(x * (1/d)) as int8 (halves away from zero; exact when done in float64)."""
    d = np.abs(x).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0))
    v = (x * inv).astype(np.float64)
    return d, (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)


def q8_blocks_run_time(x: np.ndarray, with_sum: bool) -> np.ndarray:
    """ggml-cpu's x86 quantize_row_q8_0 (with_sum: q8_1) on (n, 32) float32 blocks -> uint8
    (n, 34 or 36), instruction by instruction: the reference of the activation kernels."""
    amax = np.abs(x).max(axis=1, keepdims=True)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        inv = np.where(amax != 0, np.float32(127) / amax, np.float32(0))     # inf if amax tiny
        r = np.rint(x * inv)                                                 # _mm256_round_ps
        lanes = np.where(np.abs(r) <= 127, r, INT32_MIN).astype(np.int64)    # _mm256_cvtps_epi32
    fields = [fp16_bytes(d)]
    if with_sum:                          # int32 lanes summed with wrap-around, then d * float
        total = lanes.sum(axis=1, keepdims=True).astype(np.uint32).view(np.int32)
        with np.errstate(invalid="ignore", over="ignore"):
            fields.append(fp16_bytes(d * total.astype(np.float32)))
    fields.append(np.maximum(lanes, -128).astype(np.int8).view(np.uint8))    # saturating packs
    return np.concatenate(fields, axis=1)


# ---------------------------------------------------------------------- fast layer (numba)
# Each kernel writes ggml's structs byte for byte into views of one uint8 buffer
# (T, n_blocks * block_bytes): d and bsums through float32/uint16/int16 views of it.
# They run on one thread: for a decode step (T = 1) the work is a few microseconds, less
# than waking a second thread, and a prefill's products dwarf it.

@njit(cache=True)
def quantize_rows_q8_K(x, out_f32, out_i8, out_i16):
    """x (T, K) float32 -> block_q8_K rows, exactly quantize_row_q8_K_ref."""
    T, K = x.shape
    for t in range(T):
        for b in range(K // 256):
            v = x[t, 256 * b:256 * b + 256]
            amax = np.float32(0)
            max_x = np.float32(0)                   # the v[j] of largest |v[j]|, its sign kept
            for j in range(256):
                if abs(v[j]) > amax:
                    amax = abs(v[j])
                    max_x = v[j]
            qs = 292 * b + 4
            if amax == 0:
                out_f32[t, 73 * b] = 0
                for j in range(256):
                    out_i8[t, qs + j] = 0
                for g in range(16):
                    out_i16[t, 146 * b + 130 + g] = 0
                continue
            iscale = np.float32(-127.0) / max_x
            for g in range(16):
                total = 0
                for j in range(16 * g, 16 * g + 16):
                    q = min(127, nearest_int_jit(iscale * v[j]))
                    out_i8[t, qs + j] = q
                    total += q
                out_i16[t, 146 * b + 130 + g] = total
            out_f32[t, 73 * b] = np.float32(1.0) / iscale


@njit(cache=True)
def quantize_rows_q8_0_q8_1(x, out_u16, out_i8, with_sum, run_time):
    """x (T, K) float32 -> block_q8_0 rows (block_q8_1 if with_sum).

    run_time: ggml-cpu's x86 quantize_row_q8_0 / q8_1 (activations; see the module
    docstring); otherwise the _ref arithmetic (quantize_row_q8_0_ref: Q8_0 weights)."""
    T, K = x.shape
    size = 36 if with_sum else 34
    for t in range(T):
        for b in range(K // 32):
            v = x[t, 32 * b:32 * b + 32]
            amax = np.float32(0)
            for j in range(32):
                amax = max(amax, abs(v[j]))
            d = amax / np.float32(127)
            qs = size * b + size - 32
            total = 0
            if run_time:
                inv = np.float32(127) / amax if amax != 0 else np.float32(0)
                for j in range(32):
                    r = np.rint(v[j] * inv)
                    lane = np.int32(r) if abs(r) <= 127 else np.int32(INT32_MIN)
                    out_i8[t, qs + j] = max(lane, -128)
                    total += lane
            else:
                inv = np.float32(1) / d if d != 0 else np.float32(0)
                for j in range(32):
                    q = np.int8(round_away(v[j] * inv))
                    out_i8[t, qs + j] = q
                    total += q
            out_u16[t, size // 2 * b] = f32_to_f16(d)
            if with_sum:
                out_u16[t, size // 2 * b + 1] = f32_to_f16(np.float32(np.int32(total)) * d)


def quantize_activations_q8_K(x: np.ndarray) -> np.ndarray:
    out = np.empty((x.shape[0], x.shape[1] // 256 * 292), dtype=np.uint8)
    quantize_rows_q8_K(x, out.view(np.float32), out.view(np.int8), out.view(np.int16))
    return out


def _quantize_rows_q8_0_q8_1(x: np.ndarray, with_sum: bool, run_time: bool) -> np.ndarray:
    out = np.empty((x.shape[0], x.shape[1] // 32 * (36 if with_sum else 34)), dtype=np.uint8)
    quantize_rows_q8_0_q8_1(x, out.view(np.uint16), out.view(np.int8), with_sum, run_time)
    return out


def quantize_rows_q8_0_ref(x: np.ndarray) -> np.ndarray:
    """Q8_0 weights, as llama_model_quantize writes them (quantize_row_q8_0_ref)."""
    return _quantize_rows_q8_0_q8_1(x, False, False)


def quantize_activations_q8_0(x: np.ndarray) -> np.ndarray:
    """Q8_0 activations, as llama.cpp's x86 CPU backend makes them (quantize_row_q8_0)."""
    return _quantize_rows_q8_0_q8_1(x, False, True)


def quantize_activations_q8_1(x: np.ndarray) -> np.ndarray:
    """Q8_1 activations, as llama.cpp's x86 CPU backend makes them (quantize_row_q8_1)."""
    return _quantize_rows_q8_0_q8_1(x, True, True)


Q8_K.quantize_kernel = quantize_rows_q8_K
Q8_1.quantize_kernel = quantize_rows_q8_0_q8_1


@njit(cache=True)
def q8_K_scales(xq_f32, T, nb):
    """The float d of each block_q8_K of T activation rows of nb blocks, viewed as float32
    (d is the first of a block's 73 floats): what a product gathers once before its rows."""
    xd = np.empty((T, nb), dtype=np.float32)
    for t in range(T):
        for b in range(nb):
            xd[t, b] = xq_f32[t, 73 * b]
    return xd

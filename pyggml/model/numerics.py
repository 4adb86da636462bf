"""The elementwise maths where pyggml follows llama.cpp's CPU code bit for bit, and why.

A quantized model is chaotic at the last bit: every product quantizes its input to
8 bits, so a value that differs by one float32 ulp can round to a neighbouring integer,
and that small step grows through the layers (measured on SmolLM2-135M: a 1-ulp
perturbation of the activations moves single logits by >1.5).  To land on the same
tokens as llama.cpp, the functions whose results feed those roundings must give the
same float32 bits as ggml's, not merely accurate ones:

- ``expf``: ggml's SIMD exponential (``ggml_v_expf`` in ggml-cpu/vec.h, "adapted from
  ARM's optimized routines"), used by softmax and SiLU.  It differs from numpy's float32
  exp in about 60% of inputs (by an ulp).  We follow its AVX-512 form, the one a native
  build uses on this project's machines (AVX-512F/DQ); the AVX2 form differs in the last
  step (k + k*j instead of scalef(1 + j)).
  ggml's loops take 16 elements at a time; the last n % 16 of a row go to the C
  library's expf, which ``libm_expf`` calls (glibc's expf is not correctly rounded: it
  differs from float32(exp(double)) for 170648 of the 2^32 inputs).
- ``cos_sin``: rope's angles go through libm's cosf/sinf; computing in double and
  rounding once gives the correctly rounded value those return.

FMA is emulated in float64: a*b is exact in double, so float32(a*b + c) rounds once
except in vanishingly rare double-rounding cases (none for expf: it equals ggml's
AVX-512 code on all 2^32 float32 inputs, checked exhaustively).
"""
from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

_f = np.float32
# the constants of ggml_v_expf: round-to-int shifter, log2(e), ln(2) split hi/lo, and a
# degree-5 polynomial for exp(b) on |b| <= ln(2)/2
_SHIFT = _f(float.fromhex("0x1.8p23"))
_LOG2E = _f(float.fromhex("0x1.715476p+0"))
_LN2_HI = _f(float.fromhex("0x1.62e4p-1"))
_LN2_LO = _f(float.fromhex("0x1.7f7d1cp-20"))
_C5, _C4, _C3, _C2, _C1 = (_f(float.fromhex(h)) for h in (
    "0x1.0e4020p-7", "0x1.573e2ep-5", "0x1.555e66p-3", "0x1.fffdb6p-2", "0x1.ffffecp-1"))


SIMD_WIDTH = 16          # ggml's AVX-512 loops; what is left of a row goes through expf
_libm = ctypes.CDLL(ctypes.util.find_library("m"))
_libm.expf.restype, _libm.expf.argtypes = ctypes.c_float, [ctypes.c_float]


def _fma(a, b, c) -> np.ndarray:
    return (np.asarray(a, np.float64) * b + np.asarray(c, np.float64)).astype(np.float32)


def expf(x: np.ndarray) -> np.ndarray:
    """e**x with ggml_v_expf's float32 results (AVX-512 form).

        n = round(x / ln2)              via the 1.5*2^23 shifter
        b = x - n*ln2                   in two FMAs (ln2 split hi + lo)
        exp(b) ~ 1 + c1 b + c2 b^2 + ... c5 b^5   (Horner-like in b and u = b^2)
        result = scalef(poly, n)        = poly * 2^n, one rounding; 0 / inf when |n| > 192
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):    # -inf gives NaN in b: masked below
        z = _fma(x, _LOG2E, _SHIFT)
        n = z - _SHIFT
        b = _fma(-n, _LN2_LO, _fma(-n, _LN2_HI, x))
        u = b * b
        poly = _fma(_fma(_fma(_C5, b, _C4), u, _fma(_C3, b, _C2)), u, _fma(_C1, b, _f(1.0)))
        scaled = np.ldexp(poly.astype(np.float64), np.nan_to_num(n).astype(np.int32))
        out = scaled.astype(np.float32)
    beyond = np.abs(n) > 192                         # also -inf inputs (n = -inf)
    if beyond.any():
        out[beyond] = np.where(n[beyond] <= 0, _f(0.0), _f(np.inf))
    return out


def libm_expf(x: np.ndarray) -> np.ndarray:
    """The C library's expf, element by element: what ggml computes the tail of a row with."""
    x = np.asarray(x, dtype=np.float32)
    return np.array([_libm.expf(v) for v in x.ravel().tolist()], np.float32).reshape(x.shape)


def _row_exp(x: np.ndarray, n_simd: int) -> np.ndarray:
    """exp of each row (last axis) as ggml's vector loops: expf on the first n_simd, then libm."""
    if n_simd == x.shape[-1]:
        return expf(x)
    return np.concatenate([expf(x[..., :n_simd]), libm_expf(x[..., n_simd:])], axis=-1)


def silu_mul(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """silu(gate) * up as ggml's swiglu on each row (last axis): gate / (1 + exp(-gate)) * up
    in float32, exp = expf on the first n - n % 16 elements, the C library's on the rest."""
    n = gate.shape[-1]
    with np.errstate(over="ignore"):                 # inf where ggml's is inf too
        return gate / (_f(1.0) + _row_exp(-gate, n - n % SIMD_WIDTH)) * up


def softmax(scores: np.ndarray, n_kv: int | None = None) -> np.ndarray:
    """Softmax over the last axis (-inf entries give 0), with the bits of
    ggml_compute_forward_soft_max on a row of n_kv >= n entries whose last n_kv - n are
    masked: llama.cpp pads its kv positions so, to a multiple of 256.  The default, n
    rounded up to a multiple of 16, is that case: every entry goes through expf.

        e = exp(x - max)      expf on the first n_kv - n_kv % 16 entries, libm after them
        sum                   each 16 summed in float (_mm512_reduce_add_ps's tree), those
                              sums and then each libm value added in double, in order
        p = e * float(1 / sum)
    """
    n = scores.shape[-1]
    n_kv = -(-n // SIMD_WIDTH) * SIMD_WIDTH if n_kv is None else n_kv
    if n_kv < n:
        raise ValueError(f"softmax: n_kv = {n_kv} < {n} scores per row")
    n_simd = min(n, n_kv - n_kv % SIMD_WIDTH)
    e = _row_exp(scores - scores.max(axis=-1, keepdims=True), n_simd)
    lanes = np.zeros(e.shape[:-1] + (-(-n_simd // SIMD_WIDTH), SIMD_WIDTH), np.float32)
    lanes.reshape(e.shape[:-1] + (-1,))[..., :n_simd] = e[..., :n_simd]
    while lanes.shape[-1] > 1:                       # halves, quarters, ...: 8, 4, 2, 1
        half = lanes.shape[-1] // 2
        lanes = lanes[..., half:] + lanes[..., :half]
    terms = np.concatenate([lanes[..., 0], e[..., n_simd:]], axis=-1).astype(np.float64)
    total = np.cumsum(terms, axis=-1)[..., -1:]      # one double accumulator, left to right
    return e * (1.0 / total).astype(np.float32)


def cos_sin(theta: np.ndarray):
    """cosf(theta), sinf(theta) correctly rounded to float32 (theta float32)."""
    t = theta.astype(np.float64)
    return np.cos(t).astype(np.float32), np.sin(t).astype(np.float32)

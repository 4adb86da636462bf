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
- ``cos_sin``: rope's angles go through the C library's cosf/sinf, which (glibc) are not
  correctly rounded either: 23 of the 1280 angles of a 40-token SmolLM2 prompt differ
  from float32(cos(double)), so we call them.
- ``rope_pairs``: ggml-cpu is C++ compiled with GCC's default -ffp-contract=fast, so its
  ``x0*cos - x1*sin`` is fma(x0, cos, -(x1*sin)) and ``x0*sin + x1*cos`` is
  fma(x0, sin, x1*cos): one rounding fewer than numpy's, and a different last bit.
- ``logf``, ``tanhf``: the C library's, where ggml calls them (yarn's correction dims and
  magnitude, the final logit soft-cap's ggml_tanh, the GELU table).
- ``gelu_mul``: ggml's GELU is not computed but looked up: ggml_cpu_init fills a table of
  the tanh-approximated GELU of every fp16 value (GGML_GELU_FP16), rounded to fp16, and
  ggml_vec_geglu_f32 rounds its input to fp16 to index it.  ``gelu_table`` makes the same
  table (ggml-cpu.c is C compiled as GNU C, so ``1.0f + GELU_COEF_A*x*x`` is an FMA).
- ``dot``: the attention products (K.q and V.p, fp16 operands) take one of two paths in
  ggml's mul_mat.  A single token (decode) goes to ggml_vec_dot_f16: with AVX-512, four
  accumulators of 16 lanes take 64 elements per step, then (acc0 + acc2) + (acc1 + acc3),
  then _mm512_reduce_add_ps's pairing of the lanes.  Two or more tokens (a prompt) go to
  llamafile's tinyBLAS, which llama.cpp enables "only for prompt processing": each of 16
  lanes is one FMA chain over every 16th element, then the same pairing.  V.p runs over
  llama.cpp's padded kv length (a multiple of 256): zero padding adds nothing either way.

FMA is emulated in float64: a*b is exact in double, so float32(a*b + c) rounds once
except in vanishingly rare double-rounding cases (none for expf: it equals ggml's
AVX-512 code on all 2^32 float32 inputs, checked exhaustively).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math

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
for _name in ("expf", "cosf", "sinf", "logf"):
    getattr(_libm, _name).restype = ctypes.c_float
    getattr(_libm, _name).argtypes = [ctypes.c_float]


def fma(a, b, c) -> np.ndarray:
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
        z = fma(x, _LOG2E, _SHIFT)
        n = z - _SHIFT
        b = fma(-n, _LN2_LO, fma(-n, _LN2_HI, x))
        u = b * b
        poly = fma(fma(fma(_C5, b, _C4), u, fma(_C3, b, _C2)), u, fma(_C1, b, _f(1.0)))
        scaled = np.ldexp(poly.astype(np.float64), np.nan_to_num(n).astype(np.int32))
        out = scaled.astype(np.float32)
    beyond = np.abs(n) > 192                         # also -inf inputs (n = -inf)
    if beyond.any():
        out[beyond] = np.where(n[beyond] <= 0, _f(0.0), _f(np.inf))
    return out


def _libm_map(function, x: np.ndarray) -> np.ndarray:
    """A float32 function of the C library, element by element (one ctypes call each: slow,
    so used only where ggml itself calls libm)."""
    x = np.asarray(x, dtype=np.float32)
    return np.array(list(map(function, x.ravel().tolist())), np.float32).reshape(x.shape)


def libm_expf(x: np.ndarray) -> np.ndarray:
    """The C library's expf: what ggml computes the tail of a row with."""
    return _libm_map(_libm.expf, x)


def _row_exp(x: np.ndarray, n_simd: int) -> np.ndarray:
    """exp of each row (last axis) as ggml's vector loops: expf on the first n_simd, then libm."""
    if n_simd == x.shape[-1]:
        return expf(x)
    return np.concatenate([expf(x[..., :n_simd]), libm_expf(x[..., n_simd:])], axis=-1)


def logf(x) -> np.float32:
    """The C library's logf of one float32."""
    return _f(_libm.logf(float(_f(x))))


@functools.cache
def _tanhf_kernel():
    import numba

    @numba.njit(cache=True)
    def kernel(x, out):
        for i in range(x.size):
            out[i] = math.tanh(x[i])             # float32: numba calls the C library's tanhf
    return kernel


def tanhf(x: np.ndarray) -> np.ndarray:
    """The C library's tanhf of every element (ggml_vec_tanh_f32's loop); compiled, since
    the soft-cap takes it over every logit of a 262,144-token vocabulary."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    _tanhf_kernel()(x.reshape(-1), out.reshape(-1))
    return out


GELU_COEF_A = _f(0.044715)
SQRT_2_OVER_PI = _f(0.79788456080286535587989211986876)


@functools.cache
def gelu_table() -> np.ndarray:
    """ggml_table_gelu_f16: for every fp16 bit pattern x, fp16(ggml_gelu_f32(x)) with
    ggml_gelu_f32(x) = 0.5f*x*(1.0f + tanhf(SQRT_2_OVER_PI*x*(1.0f + GELU_COEF_A*x*x)))."""
    x = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    with np.errstate(all="ignore"):                  # inf and NaN patterns: never looked up
        inner = SQRT_2_OVER_PI * x * fma(GELU_COEF_A * x, x, _f(1.0))
        return ((_f(0.5) * x) * (_f(1.0) + tanhf(inner))).astype(np.float16)


def gelu_mul(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """gelu(gate) * up as ggml's geglu on each row (ggml_vec_geglu_f32, GGML_GELU_FP16):
    0 where gate <= -10, gate * up where gate >= 10, else table[fp16(gate)] * up."""
    with np.errstate(over="ignore"):                 # |gate| >= 65520 -> inf: not looked up
        index = gate.astype(np.float16).view(np.uint16)
    gelu = np.where(gate >= _f(10.0), gate, gelu_table()[index].astype(np.float32))
    return np.where(gate <= _f(-10.0), _f(0.0), gelu * up)


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
    terms = np.concatenate([reduce_lanes(lanes), e[..., n_simd:]], axis=-1).astype(np.float64)
    total = np.cumsum(terms, axis=-1)[..., -1:]      # one double accumulator, left to right
    return e * (1.0 / total).astype(np.float32)


def cos_sin(theta: np.ndarray):
    """The C library's cosf(theta), sinf(theta), as ggml's rope cache calls them."""
    return _libm_map(_libm.cosf, theta), _libm_map(_libm.sinf, theta)


def reduce_lanes(lanes: np.ndarray) -> np.ndarray:
    """Sum the 16 lanes of the last axis as _mm512_reduce_add_ps does (GCC): lane l + l+8,
    then + l+4, then + l+2, then the last pair."""
    while lanes.shape[-1] > 1:
        half = lanes.shape[-1] // 2
        lanes = lanes[..., half:] + lanes[..., :half]
    return lanes[..., 0]


def dot(a: np.ndarray, b: np.ndarray, *, prompt: bool, padded: bool = False) -> np.ndarray:
    """Dot products over the last axis (a and b broadcast), in the order ggml sums them.

    prompt=False (one token, ggml_vec_dot_f16): the first n - n % 64 elements go through

        acc[k][l] += a[i] * b[i]   for i = 64 s + 16 k + l      (FMA; k < 4, l < 16)
        sum = reduce_lanes((acc[0] + acc[2]) + (acc[1] + acc[3]))

    and the last n % 64 are added to the sum one by one in double.
    prompt=True (several tokens, tinyBLAS; n a multiple of 16):

        lane[l] += a[i] * b[i]     for i = 16 s + l              (FMA)
        sum = reduce_lanes(lane)

    padded=True treats the operands as zero-padded to a multiple of 64 (V.p: llama.cpp's
    padded kv length puts every real element in the lanes).
    """
    n = a.shape[-1]
    step = SIMD_WIDTH if prompt else 64
    if padded and n % step:
        pad = [(0, 0)] * (a.ndim - 1) + [(0, step - n % step)]
        a, b = np.pad(a, pad), np.pad(b, [(0, 0)] * (b.ndim - 1) + pad[-1:])
        n = a.shape[-1]
    n_simd = n - n % step
    if prompt and n_simd != n:
        raise ValueError(f"tinyBLAS dot products take a multiple of 16 elements, got {n}")
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    acc = np.zeros((step // SIMD_WIDTH,) + shape + (SIMD_WIDTH,), np.float32)
    for start in range(0, n_simd, SIMD_WIDTH):
        k = (start // SIMD_WIDTH) % len(acc)
        lanes = slice(start, start + SIMD_WIDTH)
        acc[k] = fma(a[..., lanes], b[..., lanes], acc[k])
    total = reduce_lanes(acc[0] if prompt else (acc[0] + acc[2]) + (acc[1] + acc[3]))
    if n_simd == n:
        return total
    tail = (a[..., n_simd:] * b[..., n_simd:]).astype(np.float32).astype(np.float64)
    return np.cumsum(np.concatenate([total[..., None].astype(np.float64), tail], axis=-1),
                     axis=-1)[..., -1].astype(np.float32)


def rope_pairs(x0: np.ndarray, x1: np.ndarray, cos: np.ndarray, sin: np.ndarray):
    """The rotated pair (x0 cos - x1 sin, x0 sin + x1 cos) as ggml's contracted code rounds it."""
    return fma(x0, cos, -(x1 * sin)), fma(x0, sin, x1 * cos)

"""pyggml.quants products: activation quantization and matmul_q8.

What is asserted, and why:
- quantize_activations writes exactly the bytes llama.cpp's x86 CPU backend makes of
  activations -- ggml-cpu's quantize_row_q8_0 / q8_1 (run time, rint(x * 127/max)) and
  quantize_row_q8_K (= _ref), called through ctypes -- and of our numpy reference, on
  ordinary rows and on blocks built to be hard: exact ties (x * 127/max = k + 0.5),
  zeros, tiny blocks where 127/max overflows, huge ones where d overflows fp16, infs.
  They differ from the _ref functions (which write Q8_0 weights) on ties and roundings.
- matmul_q8 equals, bit for bit, what llama.cpp's CPU backend computes: ggml_mul_mat on
  its CPU backend (the matrix repacked where llama.cpp repacks it), for decode and for
  prompt sizes that take each of ggml's kernels (vec_dot, tinyBLAS, repacked gemv/gemm,
  tiled; kernels/ggml_order.c), and for one token ggml_vec_dot_<type>_<act> itself.  The
  integer sums are order-free; the kernels keep ggml's float order.
- matmul (float activations) is within a computed bound of the float64 product of the
  exactly dequantized weights: the bound is what 8-bit activation rounding can cost,
  sum_k |w_k| * step_k / 2 (step = the activation block's scale), plus float rounding.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import pyggml.quants as quants
from pyggml.ggml import GGMLType

from ggml_oracle import cpu_has_avx512, mul_mat, quantize_row_ref, quantize_row_run_time, vec_dot
from pyggml.quants.q8 import q8_blocks_run_time
from test_quants_reference import patch_scales

QUANTIZED = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
FLOATS = ["F32", "F16", "BF16"]


def random_weights(name: str, n_rows: int, k: int, rng) -> np.ndarray:
    """Random blocks (every bit pattern of the quants) with realistic fp16 scales."""
    cls = quants.get(GGMLType[name])
    n_blocks = n_rows * k // cls.block_size
    blocks = rng.integers(0, 256, (n_blocks, cls.type_size), dtype=np.uint8)
    scales = rng.uniform(-0.02, 0.02, (n_blocks, len(cls.fp16_offsets))).astype(np.float32)
    return patch_scales(cls, blocks, scales).reshape(n_rows, -1)


def activations(rng, t: int, k: int) -> np.ndarray:
    x = rng.standard_normal((t, k)) * rng.choice([1, 0.01, 30], (t, 1))
    x[:, : k // 8] *= rng.random(k // 8) < 0.5                     # zero runs
    return x.astype(np.float32)


def ggml_activations(fmt: GGMLType, x: np.ndarray) -> np.ndarray:
    """What llama.cpp's x86 CPU backend makes of activation rows x (T, K) for fmt."""
    row_bytes = x.shape[1] // quants.get(fmt).block_size * quants.get(fmt).type_size
    if fmt == GGMLType.Q8_K:
        return quantize_row_ref("q8_K", x, row_bytes)       # quantize_row_q8_K is the _ref
    return quantize_row_run_time(fmt.name.lower(), x, row_bytes)


def reference_activations(fmt: GGMLType, x: np.ndarray) -> np.ndarray:
    """pyggml's numpy reference of the activation quantizer of fmt, on rows x (T, K)."""
    cls = quants.get(fmt)
    blocks = x.reshape(-1, cls.block_size)
    with np.errstate(all="ignore"):
        out = (q8_blocks_run_time(blocks, with_sum=False) if fmt == GGMLType.Q8_0
               else cls.quantize_blocks(blocks))
    return out.reshape(x.shape[0], -1)


BLOCK_KINDS = ["normal", "ties", "zeros", "tiny", "huge", "inf", "equal"]


def hard_blocks(kinds: list[str], seed: int) -> np.ndarray:
    """float32 (len(kinds), 32) blocks, one per kind:
    normal  Gaussian at a scale from 1e-30 to 1e30
    ties    max = 127 * 2^e and half-integer multiples of 2^e: x * (127/max) = k + 0.5 exactly
    zeros   all zero (d = 0, id = 0)
    tiny    max below 127 / FLT_MAX (~3.7e-37, subnormals too): 127/max overflows to inf
    huge    up to FLT_MAX: d and Q8_1's s overflow fp16
    inf     a Gaussian block with a +-inf in it (d = inf, NaN lanes)
    equal   one value repeated, +-"""
    rng = np.random.default_rng(seed)
    out = np.zeros((len(kinds), 32), np.float32)
    for i, kind in enumerate(kinds):
        if kind == "normal":
            out[i] = rng.standard_normal(32) * 10.0 ** rng.uniform(-30, 30)
        elif kind == "ties":
            e = float(rng.integers(-20, 20))
            out[i] = (rng.integers(-127, 127, 32) + 0.5) * 2.0**e
            out[i, rng.integers(32)] = 127 * 2.0**e * rng.choice([-1, 1])
        elif kind == "tiny":
            out[i] = rng.standard_normal(32) * 10.0 ** rng.uniform(-44, -37)
        elif kind == "huge":
            huge = rng.standard_normal(32) * 10.0 ** rng.uniform(34, 38.5)
            out[i] = np.clip(huge, -3.4e38, 3.4e38)
        elif kind == "inf":
            out[i] = rng.standard_normal(32)
            out[i, rng.integers(32, size=rng.integers(1, 4))] = rng.choice([-np.inf, np.inf])
        elif kind == "equal":
            out[i] = np.float32(rng.standard_normal()) * rng.choice([-1, 1], 32)
    return out


@pytest.mark.oracle
@settings(max_examples=30, deadline=None)
@given(fmt=st.sampled_from([GGMLType.Q8_K, GGMLType.Q8_0, GGMLType.Q8_1]),
       seed=st.integers(0, 2**32 - 1), t=st.integers(1, 5), blocks=st.integers(1, 4))
def test_quantize_activations_equals_ggml(fmt, seed, t, blocks):
    cls = quants.get(fmt)
    k = blocks * cls.block_size
    x = activations(np.random.default_rng(seed), t, k)
    x[0, :cls.block_size] = 0                                     # an all-zero block
    got = quants.quantize_activations(x, fmt)
    assert np.array_equal(got, ggml_activations(fmt, x))
    assert np.array_equal(got, reference_activations(fmt, x))


@pytest.mark.oracle
@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from([GGMLType.Q8_0, GGMLType.Q8_1]),
       kinds=st.lists(st.sampled_from(BLOCK_KINDS), min_size=1, max_size=12),
       seed=st.integers(0, 2**32 - 1))
def test_q8_0_and_q8_1_activations_equal_ggml_on_hard_blocks(fmt, kinds, seed):
    x = hard_blocks(kinds, seed).reshape(1, -1)
    got = quants.quantize_activations(x, fmt)
    assert np.array_equal(got, ggml_activations(fmt, x))
    assert np.array_equal(got, reference_activations(fmt, x))


def test_activations_round_half_to_even_weights_half_away():
    """Hand-checked: max 127 -> d = 1, id = 1: 2.5 and -3.5 are ties.  Activations (rint):
    2, -4; Q8_0 weights (quantize_row_q8_0_ref, roundf): 3, -4."""
    x = np.zeros((1, 32), np.float32)
    x[0, :4] = [127, 2.5, -3.5, 0.5]
    act = quants.quantize_activations(x, GGMLType.Q8_0)
    assert act[0, :2].view(np.float16)[0] == 1.0
    assert list(act[0, 2:6].view(np.int8)) == [127, 2, -4, 0]
    assert list(quants.quantize(GGMLType.Q8_0, x)[0, 2:6].view(np.int8)) == [127, 3, -4, 1]
    assert quants.quantize_activations(x, GGMLType.Q8_1)[0, 2:4].view(np.float16)[0] == 125.0


@pytest.mark.oracle
@pytest.mark.parametrize("name", QUANTIZED)
@pytest.mark.parametrize("t", [1, 3, 6, 9])
def test_matmul_q8_bit_identical_to_llama_cpp(name, t):
    """37 rows (llama.cpp repacks none) and 40 (Q4_0, IQ4_NL, Q4_K and Q2_K repacked);
    t: one token (vec_dot, gemv), 3 (tinyBLAS), 6 (gemm and gemv), 9 (tiled K-quants)."""
    if not cpu_has_avx512():
        pytest.skip("llama-cpp-python here is not the AVX-512 build whose kernels pyggml reproduces")
    rng = np.random.default_rng(hash(name) % 2**32 + t)
    k = 512 if name != "IQ4_NL" else 32 * 15        # an odd number of IQ4_NL blocks
    x = activations(rng, t, k)
    xq = quants.quantize_activations(x, quants.vec_dot_type(GGMLType[name]))
    for n in (37, 40):
        W = random_weights(name, n, k, rng)
        out = np.empty((t, n), dtype=np.float32)
        quants.matmul_q8(GGMLType[name], W, xq, out)
        expected = mul_mat(int(GGMLType[name]), W, x)
        assert np.array_equal(out.view(np.uint32), expected.view(np.uint32)), n
        if t == 1 and n == 37:
            ggml = np.array([vec_dot(name, W[j], xq[0], k) for j in range(n)], np.float32)
            assert np.array_equal(out[0].view(np.uint32), ggml.view(np.uint32))


def activation_steps(x: np.ndarray, fmt: GGMLType) -> np.ndarray:
    """Per element, the quantization step of its activation block (|d| of block_q8_*)."""
    block = quants.get(fmt).block_size
    amax = np.abs(x.reshape(x.shape[0], -1, block)).max(axis=-1, keepdims=True)
    return np.broadcast_to(amax / 127, x.shape[:1] + (x.shape[1] // block, block)).reshape(x.shape)


@pytest.mark.parametrize("name", QUANTIZED + FLOATS)
def test_matmul_is_close_to_the_float64_product(name):
    rng = np.random.default_rng(3)
    t, n, k = 4, 21, 768
    if name in FLOATS:
        W = quants.quantize(GGMLType[name], rng.standard_normal((n, k)).astype(np.float32))
    else:
        W = random_weights(name, n, k, rng)
    x = activations(rng, t, k)
    got = quants.matmul(GGMLType[name], W, x)
    exact = quants.matmul_exact(GGMLType[name], W, x).astype(np.float64)
    w = np.abs(quants.dequantize(GGMLType[name], W, (n, k)).astype(np.float64))
    fmt = quants.vec_dot_type(GGMLType[name])
    if name in FLOATS:       # activations rounded to the weight's format: relative step
        rel = {"F32": 2.0**-24, "F16": 2.0**-11, "BF16": 2.0**-8}[name]
        step = np.abs(x).astype(np.float64) * 2 * rel
    else:
        step = activation_steps(x, fmt).astype(np.float64)
    bound = (step / 2) @ w.T + 1e-5 * (np.abs(x).astype(np.float64) @ w.T)
    assert np.all(np.abs(got - exact) <= bound), np.max(np.abs(got - exact) / bound)


def test_product_shapes_and_reuse():
    """One quantized input serves several matrices; T = 0 gives an empty result."""
    rng = np.random.default_rng(5)
    x = activations(rng, 2, 512)
    q4k, q6k = GGMLType.Q4_K, GGMLType.Q6_K
    xq = quants.quantize_activations(x, quants.vec_dot_type(q4k))
    for t, n in ((q4k, 7), (q6k, 9)):
        W = random_weights(t.name, n, 512, rng)
        out = np.empty((2, n), dtype=np.float32)
        quants.matmul_q8(t, W, xq, out)
        assert np.array_equal(out, quants.matmul(t, W, x))
    assert quants.matmul(q4k, random_weights("Q4_K", 3, 512, rng), x[:0]).shape == (0, 3)

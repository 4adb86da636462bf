"""pyggml.model.numerics against ggml's own code (llama-cpp-python's libggml, through ctypes).

What is asserted, and why (a quantized model is chaotic at the last bit, so "close" is
not enough: every comparison is of float32 bits):
- expf is ggml_v_expf: on every float32 of the ranges where its branches meet (result
  near 1, overflow to inf, subnormal results, |n| = 192), on random bit patterns and on
  hypothesis arrays of any float32.  The oracle is ggml_vec_soft_max_f32 with max = 0,
  whose output is ggml_v_expf(x) itself on rows of a multiple of 16.  The form followed
  is AVX-512's, so the oracle must be an AVX-512 build of libggml-cpu (asserted first).
- libm_expf is the expf ggml calls for the last n % 16 elements of a row.
- silu_mul equals llama.cpp's FFN activation (a ggml_swiglu_split graph), rows of any
  length, values from -100 to 100 and the edges of exp.
- softmax equals ggml_soft_max_ext(x, mask, scale) with -inf masks: on rows of their own
  length (n_kv = n), on rows padded with masked entries as llama.cpp pads its kv positions
  (n_kv > n), and by default on rows padded to a multiple of 16.
- gelu_mul equals llama.cpp's GeGLU (a ggml_geglu_split graph) on every fp16 value, the
  table's whole domain, and beyond it; tanhf equals ggml_tanh (the final soft-cap).
- forward.rope_cache equals the cos/sin of ggml_rope_ext's cache (a rope graph on unit
  pairs), for plain, linear, yarn, frequency-factor (llama3, LongRoPE) and attention-factor
  ropes, at small and large positions.
tests/test_kernels_c.py holds the C kernels to the same oracles.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from pyggml.model import numerics
from pyggml.model.arch import ROPE_NEOX, Rope
from pyggml.model.forward import rope_cache

from ggml_oracle import cpu_has_avx512, geglu, rope_tables, soft_max, swiglu, tanh, vec_soft_max

# numerics follows ggml_v_expf's AVX-512 form, the one llama.cpp builds on machines like this
# project's; an AVX2-only build of libggml-cpu computes 2^n otherwise and differs in the
# last bit, so there these comparisons say nothing about pyggml.
pytestmark = [pytest.mark.oracle,
              pytest.mark.skipif(not cpu_has_avx512(), reason="llama-cpp-python's libggml-cpu "
                                 "is not an AVX-512 build, whose bits numerics.py follows")]


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def ggml_exp(x: np.ndarray) -> np.ndarray:
    """ggml_v_expf of each element of x (1-D), through ggml_vec_soft_max_f32 with max = 0."""
    pad = -x.size % 16
    y, _ = vec_soft_max(np.concatenate([x, np.zeros(pad, np.float32)]), 0.0)
    return y[:x.size]


def float_range(lo: float, hi: float, step: int = 1) -> np.ndarray:
    """Every step-th float32 from lo to hi (0 <= lo < hi or lo < hi <= -0 by magnitude)."""
    a, b = np.sort(np.abs(np.array([lo, hi], np.float32)).view(np.int32))
    values = np.arange(a, b + 1, step, dtype=np.int32).view(np.float32)
    return -values if lo < 0 or hi < 0 else values


# edge values of exp: 0, -0, inputs whose n is +-192 or just beyond, the overflow and
# subnormal thresholds, infinities, the largest floats
EDGES = np.array([0.0, -0.0, 133.0, 133.1, 133.5, -133.0, -133.1, -133.5, 88.72, 88.73,
                  -87.33, -103.97, -104.0, 1e-30, -1e-30, 3e38, -3e38, np.inf, -np.inf],
                 np.float32)


def gate_up(rng, rows: int, n: int):
    """gate (rows, n) from -100 to 100 at all magnitudes, with EDGES mixed in; up Gaussian."""
    gate = rng.uniform(-1, 1, (rows, n)) * 10.0 ** rng.uniform(-6, 2, (rows, n))
    edges = rng.random((rows, n)) < 0.1
    gate[edges] = rng.choice(EDGES[np.isfinite(EDGES)], edges.sum())
    return gate.astype(np.float32), rng.standard_normal((rows, n)).astype(np.float32)


def scores_and_mask(rng, rows: int, n: int, pad: int = 0):
    """(x (rows, n + pad), mask (rows, n + pad) of 0 and -inf with a finite entry per row
    among the first n and the last pad masked (llama.cpp's padding of kv positions), scale)."""
    x = rng.standard_normal((rows, n + pad)) * rng.choice([1, 10, 100], (rows, 1))
    mask = np.where(rng.random((rows, n + pad)) < 0.3, -np.inf, 0).astype(np.float32)
    mask[np.arange(rows), rng.integers(0, n, rows)] = 0
    mask[:, n:] = -np.inf
    return x.astype(np.float32), mask, float(rng.choice([0.125, 1 / np.sqrt(96), 1.0]))


@pytest.mark.parametrize("lo, hi, step", [
    (0.0, 0.01, 97), (-0.0, -0.01, 97), (88.0, 89.0, 1), (-88.0, -104.5, 1),
    (132.5, 134.0, 1), (-132.5, -134.0, 1), (0.5, 1.0, 7)],
    ids=["near+0", "near-0", "overflow", "subnormal", "n=192", "n=-192", "mid"])
def test_expf_equals_ggml_on_the_floats_of_a_range(lo, hi, step):
    x = float_range(lo, hi, step)
    np.testing.assert_array_equal(bits(numerics.expf(x)), bits(ggml_exp(x)))


def test_expf_equals_ggml_on_random_bit_patterns_and_edges():
    x = np.random.default_rng(0).integers(0, 2**32, 2**20, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([x.view(np.float32), EDGES])
    x = x[~np.isnan(x)]
    np.testing.assert_array_equal(bits(numerics.expf(x)), bits(ggml_exp(x)))


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.integers(1, 200), elements=st.floats(width=32, allow_nan=False)))
def test_expf_equals_ggml_on_any_floats(x):
    np.testing.assert_array_equal(bits(numerics.expf(x)), bits(ggml_exp(x)))


def test_libm_expf_is_ggml_tail():
    """Rows of fewer than 16 elements are all tail: ggml calls the C library's expf."""
    x = np.random.default_rng(1).uniform(-104, 89, 15 * 40).astype(np.float32)
    tails = np.concatenate([vec_soft_max(row, 0.0)[0] for row in x.reshape(40, 15)])
    np.testing.assert_array_equal(bits(numerics.libm_expf(x)), bits(tails))
    assert (bits(numerics.expf(x)) != bits(tails)).any()      # the two exps do differ


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 3), n=st.integers(1, 80), seed=st.integers(0, 2**32 - 1))
def test_silu_mul_equals_ggml_swiglu(rows, n, seed):
    gate, up = gate_up(np.random.default_rng(seed), rows, n)
    np.testing.assert_array_equal(bits(numerics.silu_mul(gate, up)), bits(swiglu(gate, up)))


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 4), n=st.integers(1, 100), pad=st.sampled_from([0, 1, 16, 27]),
       seed=st.integers(0, 2**32 - 1))
def test_softmax_equals_ggml_soft_max_ext(rows, n, pad, seed):
    """ggml on rows of n + pad whose last pad entries are masked; numerics on the n scores."""
    x, mask, scale = scores_and_mask(np.random.default_rng(seed), rows, n, pad)
    expected = soft_max(x, mask, scale)[:, :n]
    scores = (x * np.float32(scale) + mask)[:, :n]
    np.testing.assert_array_equal(bits(numerics.softmax(scores, n_kv=n + pad)), bits(expected))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 100), seed=st.integers(0, 2**32 - 1))
def test_softmax_default_is_a_row_padded_to_16(n, seed):
    """The default n_kv (n rounded up to 16) is llama.cpp's case: its n_kv is a multiple of 256."""
    x, mask, scale = scores_and_mask(np.random.default_rng(seed), 2, n)
    scores = x * np.float32(scale) + mask
    padded = np.full((2, -(-n // 16) * 16), -np.inf, np.float32)
    padded[:, :n] = scores
    expected = soft_max(padded, None, 1.0)[:, :n]
    np.testing.assert_array_equal(bits(numerics.softmax(scores)), bits(expected))
    np.testing.assert_array_equal(bits(numerics.softmax(scores[None])), bits(expected[None]))


def test_softmax_refuses_a_shorter_n_kv():
    with pytest.raises(ValueError, match="n_kv"):
        numerics.softmax(np.zeros((1, 20), np.float32), n_kv=19)


def test_gelu_mul_equals_ggml_geglu_on_every_fp16_value():
    """ggml looks GELU up in a table of fp16 results indexed by fp16(x) for -10 < x < 10:
    every fp16 value there, its neighbours in float32 (which round onto them), the edges
    and beyond, times random ups."""
    table_domain = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    table_domain = table_domain[np.abs(table_domain) < 10]
    between = np.nextafter(table_domain, np.float32(np.inf))
    gate = np.concatenate([table_domain, between, [-10.0, 10.0, -10.5, 10.5, -1e4, 1e4]])
    gate = gate.astype(np.float32)[None, :]
    up = np.random.default_rng(7).standard_normal(gate.shape).astype(np.float32)
    np.testing.assert_array_equal(bits(numerics.gelu_mul(gate, up)), bits(geglu(gate, up)))


def test_tanhf_equals_ggml_tanh():
    x = np.random.default_rng(8).standard_normal((4, 5000)).astype(np.float32) * 10.0 ** (
        np.random.default_rng(9).uniform(-4, 2, (4, 5000))).astype(np.float32)
    np.testing.assert_array_equal(bits(numerics.tanhf(x)), bits(tanh(x)))
    assert (bits(np.tanh(x)) != bits(tanh(x))).any()         # numpy's own tanh does differ


FACTORS = tuple(np.random.default_rng(10).uniform(1, 40, 32).astype(np.float32).tolist())


@pytest.mark.parametrize("rope", [
    Rope(ROPE_NEOX, 64, 1e6),
    Rope(ROPE_NEOX, 128, 500000.0, freq_factors=FACTORS + FACTORS),           # llama3-like
    Rope(ROPE_NEOX, 64, 10000.0, freq_scale=0.125),                           # linear x8
    Rope(ROPE_NEOX, 64, 1e6, freq_scale=0.25, ext_factor=1.0, attn_factor=0.9,
         n_ctx_orig=1024),                                                    # yarn x4
    Rope(ROPE_NEOX, 96, 10000.0, freq_scale=0.5, ext_factor=1.0, n_ctx_orig=4096,
         beta_fast=16.0, beta_slow=2.0),
    Rope(ROPE_NEOX, 64, 10000.0, attn_factor=1.19, freq_factors=FACTORS),     # LongRoPE
], ids=["plain", "freq-factors", "linear", "yarn", "yarn-betas", "longrope"])
def test_rope_tables_equal_ggml_rope_ext(rope):
    """Position by position (large ones need the real cosf/sinf), and as one batch."""
    def ggml_tables(positions):
        return rope_tables(positions, rope.n_rot, freq_base=rope.base,
                           freq_scale=rope.freq_scale, ext_factor=rope.ext_factor,
                           attn_factor=rope.attn_factor, n_ctx_orig=rope.n_ctx_orig,
                           beta_fast=rope.beta_fast, beta_slow=rope.beta_slow,
                           freq_factors=rope.freq_factors)
    positions = np.concatenate([np.arange(40), [511, 1000, 4095, 32767, 131071]])
    one_by_one = [rope_cache(rope, int(p), 1) for p in positions]
    for ours, expected in zip(map(np.concatenate, zip(*one_by_one)), ggml_tables(positions)):
        np.testing.assert_array_equal(bits(ours), bits(expected))
    for ours, expected in zip(rope_cache(rope, 100, 20), ggml_tables(np.arange(100, 120))):
        np.testing.assert_array_equal(bits(ours), bits(expected))

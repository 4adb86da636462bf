"""pyggml.quants.quantize writes llama.cpp's bytes: against ggml_quantize_chunk (what
llama_model_quantize calls) on adversarial arrays, and tensor by tensor against files
that llama.cpp quantized from F32 sources."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import pyggml
import pyggml.quants as quants
from pyggml.errors import UsageError
from pyggml.ggml import GGMLType

from ggml_oracle import quantize_chunk

QUANTIZED = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
             "IQ4_NL", "F16", "BF16"]


def hard_rows(rng, kind: str, shape) -> np.ndarray:
    """Float32 rows that exercise the quantizers' corners."""
    n = int(np.prod(shape))
    if kind == "normal":
        x = rng.standard_normal(n) * np.exp(rng.uniform(-8, 4))
    elif kind == "heavy":                           # a few huge outliers per block
        x = rng.standard_cauchy(n)
    elif kind == "sparse":                          # mostly zero: all-zero sub-blocks
        x = rng.standard_normal(n) * (rng.random(n) < 0.03)
    elif kind == "levels":                          # exact ties for the rounding
        x = rng.integers(-8, 8, n) * 0.5
    elif kind == "constant":                        # max == min in every group
        x = np.full(n, rng.uniform(-3, 3))
    elif kind == "positive":                        # min > 0: the affine types' clamp
        x = rng.random(n) + 0.5
    elif kind == "tiny":                            # subnormal scales
        x = rng.standard_normal(n) * 1e-8
    else:                                           # "wide": exponents over 40 octaves
        x = rng.standard_normal(n) * np.exp2(rng.uniform(-30, 10, n))
    return x.astype(np.float32).reshape(shape)


@pytest.mark.oracle
@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(QUANTIZED), seed=st.integers(0, 2**32 - 1),
       kind=st.sampled_from(["normal", "heavy", "sparse", "levels", "constant", "positive", "tiny",
                             "wide"]),
       n_rows=st.integers(1, 6), blocks_per_row=st.integers(1, 3))
def test_quantize_equals_ggml_quantize_chunk(name, seed, kind, n_rows, blocks_per_row):
    t = GGMLType[name]
    cls = quants.get(t)
    k = blocks_per_row * max(cls.block_size, 32)
    x = hard_rows(np.random.default_rng(seed), kind, (n_rows, k))
    expected = quantize_chunk(t, x, k // cls.block_size * cls.type_size)
    got = quants.quantize(t, x)
    assert np.array_equal(got, expected), np.argwhere(got != expected)[:5]


def importance(rng, kind: str, n: int) -> np.ndarray:
    """An imatrix row (one importance per column) as llama.cpp's imatrix files hold them:
    positive, spread over decades, with columns that were never activated (0)."""
    if kind == "uniform":
        w = rng.random(n) + 0.1
    elif kind == "heavy":                               # a few columns dominate
        w = np.exp(rng.normal(0, 3, n))
    elif kind == "sparse":                              # mostly unused columns
        w = rng.random(n) * (rng.random(n) < 0.2)
    else:                                               # "zero": nothing ever activated
        w = np.zeros(n)
    return w.astype(np.float32)


@pytest.mark.oracle
@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(QUANTIZED), seed=st.integers(0, 2**32 - 1),
       kind=st.sampled_from(["normal", "heavy", "sparse", "levels", "constant", "positive", "tiny",
                             "wide"]),
       weights=st.sampled_from(["uniform", "heavy", "sparse", "zero"]),
       n_rows=st.integers(1, 4), n_groups=st.integers(1, 11))
def test_quantize_with_imatrix_equals_ggml_quantize_chunk(name, seed, kind, weights, n_rows, n_groups):
    """With an importance matrix ggml runs other quantizers (quantize_row_<type>_impl: the
    importance weighs every error, and for the 32-weight types the row's mean square);
    row lengths of 1 to 11 blocks (or super-blocks), so that the fast quantizers' sets of
    8 blocks end part-full."""
    t = GGMLType[name]
    cls = quants.get(t)
    k = n_groups * max(cls.block_size, 32)
    rng = np.random.default_rng(seed)
    x = hard_rows(rng, kind, (n_rows, k))
    imatrix = importance(rng, weights, k)
    expected = quantize_chunk(t, x, k // cls.block_size * cls.type_size, imatrix)
    got = quants.quantize(t, x, imatrix)
    assert np.array_equal(got, expected), np.argwhere(got != expected)[:5]


@pytest.mark.oracle
@pytest.mark.parametrize("name", QUANTIZED)
def test_reference_quantizer_equals_ggml_quantize_chunk(name):
    """The numpy reference layer on its own (the class's quantize_ref, block by block),
    against llama.cpp on every kind of hard row.  quantize() above goes through the fast
    layer where a type has one (Q8_0's numba quantizer), so both layers meet the oracle."""
    t = GGMLType[name]
    cls = quants.get(t)
    rng = np.random.default_rng(1)
    for kind in ["normal", "heavy", "sparse", "levels", "constant", "positive", "tiny", "wide"]:
        x = hard_rows(rng, kind, (8, 512))
        expected = quantize_chunk(t, x, 512 // cls.block_size * cls.type_size)
        blocks = cls.quantize_ref(x.reshape(-1, cls.block_size))
        assert np.array_equal(blocks.reshape(8, -1), expected), kind


# (quantized fixture, its F32 source): every quantized tensor is re-made from the source
FILES = [("qwen2-tiny-q4_k_m", "qwen2-tiny-f32"), ("qwen2-tiny-q3_k_m", "qwen2-tiny-f32"),
         ("qwen2-tiny-q8_0", "qwen2-tiny-f32"), ("qwen2-896-q4_k_m", "qwen2-896-f32"),
         ("qwen2-896-q3_k_m", "qwen2-896-f32"), ("qwen2-896-iq4_nl", "qwen2-896-f32")]


@pytest.mark.oracle
@pytest.mark.parametrize("fixture, source", FILES)
def test_quantize_reproduces_llama_cpp_files(model_path, fixture, source):
    """Tensor by tensor, byte for byte: quantize(type, f32 rows) == the file's rows.  A
    sample of rows per tensor (first, last, random) keeps the numpy reference quick."""
    rng = np.random.default_rng(0)
    types = set()
    with pyggml.open(model_path(source)) as src, pyggml.open(model_path(fixture)) as dst:
        for name, info in dst.tensors.items():
            x = src.dequantize(name)
            raw = dst.raw(name)
            if x.ndim == 1:
                x, raw = x[None, :], raw[None, :]
            raw = raw.reshape(x.shape[0], -1)
            rows = np.unique(np.r_[0:min(8, len(x)), len(x) - 1, rng.integers(0, len(x), 8)])
            got = quants.quantize(info.type, x[rows])
            assert np.array_equal(got, raw[rows]), f"{fixture}: {name} ({info.type_name})"
            types.add(info.type_name)
    assert len(types) >= 2, types


def stored(x: np.ndarray, src: str) -> np.ndarray:
    """float32 rows as a file of type src stores them (uint8 rows): F32 as is, F16
    rounded to nearest even, BF16 the top half of the bits (exact for these rows)."""
    if src == "F16":
        return x.astype(np.float16).view(np.uint8)
    if src == "BF16":
        return (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    return x.view(np.uint8)


@pytest.mark.oracle
@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(QUANTIZED + ["IQ4_XS"]), src=st.sampled_from(["F32", "F16", "BF16"]),
       seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["normal", "heavy", "sparse", "wide"]),
       weighted=st.booleans(), n_rows=st.integers(1, 40))
def test_quantize_stored_equals_ggml_quantize_chunk(name, src, seed, kind, weighted, n_rows):
    """quantize_stored (what ``pyggml quantize`` runs: rows decoded from the file's bytes
    just before they are quantized, in tasks of 16 rows) against llama.cpp given the
    float32 values of the same stored rows."""
    t = GGMLType[name]
    cls = quants.get(t)
    rng = np.random.default_rng(seed)
    x = hard_rows(rng, kind, (n_rows, 512))
    if src == "BF16":
        x = (x.view(np.uint32) & 0xFFFF0000).view(np.float32)
    elif src == "F16":                              # (F16 holds at most 65504)
        x = np.clip(x, -6e4, 6e4)
    raw = stored(x, src)
    values = quants.dequantize_rows(GGMLType[src], raw, np.arange(n_rows), 512)
    imatrix = importance(rng, "heavy", 512) if weighted else None
    expected = quantize_chunk(t, values, 512 // cls.block_size * cls.type_size, imatrix)
    got = quants.quantize_stored(t, GGMLType[src], raw, imatrix)
    assert np.array_equal(got, expected), np.argwhere(got != expected)[:5]


@pytest.mark.parametrize("src", ["F32", "F16", "BF16"])
def test_quantize_stored_refuses_what_is_not_finite(src):
    x = np.random.default_rng(0).standard_normal((40, 256)).astype(np.float32)
    x[33, 17] = np.nan
    with pytest.raises(UsageError, match="cannot quantize to Q4_K: row 33, column 17 is nan"):
        quants.quantize_stored(GGMLType.Q4_K, GGMLType[src], stored(x, src))

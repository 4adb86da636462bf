"""pyggml.quants decoding: the numpy reference and the numba kernels, bit for bit against
gguf-py's dequantize, on random blocks and on every tensor of llama.cpp-made files; plus
the registry's errors."""
from __future__ import annotations

import gguf
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import pyggml
import pyggml.quants as quants
from pyggml.errors import UnsupportedTypeError, UsageError
from pyggml.ggml import GGMLType

TYPES = quants.supported_types()
# gguf-py 0.19 decodes all but these (test_quants_more_types.py checks them against ggml's
# to_float and gguf-py's reader)
GGUF_PY_TYPES = [t for t in TYPES if t not in ("Q1_0", "Q2_0", "I8", "I16", "I32", "I64", "F64")]


def patch_scales(cls, blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Write finite fp16 values into every fp16 field of the blocks (random bytes would
    make NaN and infinite scales, which no quantizer writes)."""
    blocks = blocks.copy()
    for i, offset in enumerate(cls.fp16_offsets):
        blocks[:, offset:offset + 2] = scales[:, i:i + 1].astype("<f2").view(np.uint8)
    return blocks


def gguf_dequantize(name: str, blocks: np.ndarray) -> np.ndarray:
    out = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[name])
    return np.asarray(out, dtype=np.float32).reshape(blocks.shape[0], -1)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@st.composite
def random_blocks(draw, name):
    """(n_blocks, type_size) random bytes with finite fp16 fields (subnormals, zeros and
    extremes included)."""
    cls = quants.get(GGMLType[name])
    n = draw(st.integers(1, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    blocks = rng.integers(0, 256, (n, cls.type_size), dtype=np.uint8)
    scales = draw(st.lists(st.floats(width=16, allow_nan=False, allow_infinity=False),
                           min_size=len(cls.fp16_offsets), max_size=len(cls.fp16_offsets)))
    fields = np.array(scales, dtype=np.float32)[None, :] * rng.choice([1, -1, 0.5, 2**-10], (n, 1))
    return patch_scales(cls, blocks, fields.astype(np.float32))


@pytest.mark.oracle
@settings(max_examples=40, deadline=None)
@given(data=st.data(), name=st.sampled_from(GGUF_PY_TYPES))
def test_dequantize_matches_gguf_py_on_random_blocks(data, name):
    """Reference, fast whole-tensor and fast row-gather decoding all equal gguf-py's bits."""
    blocks = data.draw(random_blocks(name))
    cls = quants.get(GGMLType[name])
    expected = gguf_dequantize(name, blocks)
    assert same_bits(cls.dequantize_ref(blocks), expected)
    n = blocks.shape[0]
    assert same_bits(quants.dequantize(cls.ggml_type, blocks, (n, cls.block_size)), expected)
    rows = data.draw(st.lists(st.integers(0, n - 1), max_size=8))
    got = quants.dequantize_rows(cls.ggml_type, blocks, rows, cls.block_size)
    assert same_bits(got, expected[rows].reshape(len(rows), cls.block_size))


FILES = ["qwen2-tiny-q4_k_m", "qwen2-tiny-q3_k_m", "qwen2-896-q4_k_m", "qwen2-896-q3_k_m",
         "qwen2-896-iq4_nl"]


@pytest.mark.oracle
@pytest.mark.parametrize("fixture", FILES)
def test_every_tensor_of_llama_cpp_files_matches_gguf_py(model_path, fixture):
    """pyggml.open(...).dequantize (the numba kernels) on every tensor, and the numpy
    reference on a sample of each tensor's blocks, equal gguf-py bit for bit."""
    rng = np.random.default_rng(0)
    seen = set()
    with pyggml.open(model_path(fixture)) as f:
        for name, info in f.tensors.items():
            seen.add(info.type_name)
            raw = f.raw(name)
            expected = gguf_dequantize(info.type_name, raw.reshape(1, -1)).reshape(info.shape)
            assert same_bits(f.dequantize(name), expected), name
            cls = quants.get(info.type)
            blocks = raw.reshape(-1, cls.type_size)
            sample = np.unique(np.r_[0:min(64, len(blocks)), rng.integers(0, len(blocks), 64)])
            want = expected.reshape(-1, cls.block_size)[sample]
            assert same_bits(cls.dequantize_ref(blocks[sample]), want), name
    assert "F32" in seen and len(seen) >= 3, seen          # the file really mixes types


def test_every_supported_type_is_in_the_registry():
    """Every live weight type of ggml (its activation-only Q8_1 and Q8_K apart), with ggml's
    block geometry: gguf-py's, and ggml's own (ggml_blck_size, ggml_type_size) for Q2_0,
    which gguf-py does not know."""
    from ggml_oracle import type_traits
    assert sorted(TYPES) == sorted(t.name for t in GGMLType if t not in (GGMLType.Q8_1, GGMLType.Q8_K))
    for name in TYPES:
        cls = quants.get(GGMLType[name])
        assert (cls.name, cls.block_size, cls.type_size) == (name, *type_traits(cls.ggml_type))
        if name in gguf.GGMLQuantizationType.__members__:
            assert (cls.block_size, cls.type_size) == gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]]


@pytest.mark.parametrize("type_id, shown", [(4, "type4"), (36, "type36"), (99, "type99")])
def test_unsupported_types_raise_naming_the_type(type_id, shown):
    for call in (lambda: quants.get(type_id),
                 lambda: quants.dequantize(type_id, np.zeros(66, np.uint8), (256,)),
                 lambda: quants.vec_dot_type(type_id)):
        with pytest.raises(UnsupportedTypeError, match=shown):
            call()


def test_bad_arguments_raise_usage_errors():
    q4k = GGMLType.Q4_K
    with pytest.raises(UsageError, match="needs 288 bytes, got 144"):
        quants.dequantize(q4k, np.zeros(144, np.uint8), (2, 256))
    with pytest.raises(UsageError, match="multiples of 256"):
        quants.dequantize(q4k, np.zeros(144, np.uint8), (128, 2))
    W = np.zeros((3, 144), np.uint8)
    with pytest.raises(UsageError, match="row 3 is out of range for 3 rows"):
        quants.dequantize_rows(q4k, W, [0, 3], 256)
    with pytest.raises(UsageError, match=r"x\[0, 5\] is nan"):
        x = np.zeros((2, 256), np.float32)
        x[0, 5] = np.nan
        quants.quantize(q4k, x)
    with pytest.raises(UsageError, match="multiple of 256"):
        quants.quantize(q4k, np.zeros((2, 100), np.float32))
    with pytest.raises(UnsupportedTypeError, match="activation format"):
        quants.quantize(GGMLType.Q8_K, np.zeros((1, 256), np.float32))
    with pytest.raises(UsageError, match=r"activations must be uint8 \(T, 292\)"):
        quants.matmul_q8(q4k, W, np.zeros((1, 34), np.uint8), np.zeros((1, 3), np.float32))
    with pytest.raises(UsageError, match="out must be"):
        quants.matmul_q8(q4k, W, np.zeros((1, 292), np.uint8), np.zeros((3, 1), np.float32))


def test_empty_tensor_dequantizes_to_empty():
    assert quants.dequantize(GGMLType.Q4_K, np.zeros(0, np.uint8), (0, 256)).shape == (0, 256)

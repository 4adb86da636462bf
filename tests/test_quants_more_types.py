"""The i-quants IQ4_XS, IQ3_XXS, IQ3_S, the ternary TQ1_0, TQ2_0, the 4-bit floats MXFP4,
NVFP4, the 1-2 bit Q1_0, Q2_0 and the plain I8..I64, F64, against llama.cpp:

- decoding (numpy reference, numba whole-tensor and row-gather) bit for bit equal to
  ggml's own to_float (libggml-base through ctypes) and to gguf-py's dequantize (which
  has no Q1_0/Q2_0), on random blocks with finite scales and on every tensor of files
  llama_model_quantize made;
- products (matmul_q8) bit for bit equal to ggml_mul_mat on llama.cpp's CPU backend and,
  for one token, to the vec_dot the backend's type traits name;
- quantizers (the fast layer through quantize(), and the numpy reference) byte for byte
  equal to ggml_quantize_chunk, with and without an importance matrix, and to the files;
- the C library (AVX2 and portable builds): decoding equal to ggml's to_float, products
  equal to ggml_mul_mat for decode and prompt sizes that take each of ggml's kernels;
- the plain types: what gguf-py's reader reads of a file pyggml wrote, converted to float32;
- `pyggml inspect FILE TENSOR --block N` prints a block of each type field by field, and
  the floats ggml decodes from it.
"""
from __future__ import annotations

import gguf
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import pyggml
import pyggml.quants as quants
from pyggml.backends import cpu_c
from pyggml.cli import main
from pyggml.format.writer import write_gguf
from pyggml.ggml import GGMLType
from pyggml.quants.base import nearest_int
from pyggml.quants.jit import nearest_int as nearest_int_scalar

from ggml_oracle import cpu_has_avx512, mul_mat, quantize_chunk, to_float, vec_dot_traits
from test_kernels_c import ORDER_ROWS, build, needs_reference_build  # noqa: F401 (a fixture)
from test_quants_cli import printed_floats
from test_quants_products import activations, random_weights
from test_quants_quantizers import hard_rows, importance
from test_quants_reference import gguf_dequantize, random_blocks, same_bits

QUANTIZED = ["IQ4_XS", "IQ3_XXS", "IQ3_S", "TQ1_0", "TQ2_0", "MXFP4", "NVFP4", "Q1_0", "Q2_0"]
NOT_IN_GGUF_PY = {"Q1_0", "Q2_0"}
PLAIN = ["I8", "I16", "I32", "I64", "F64"]
ROW_KINDS = ["normal", "heavy", "sparse", "levels", "constant", "positive", "tiny", "wide"]


def ggml_to_float(name: str, blocks: np.ndarray) -> np.ndarray:
    cls = quants.get(GGMLType[name])
    return to_float(cls.ggml_type, blocks, blocks.shape[0] * cls.block_size).reshape(blocks.shape[0], -1)


@pytest.mark.oracle
@settings(max_examples=60, deadline=None)
@given(data=st.data(), name=st.sampled_from(QUANTIZED))
def test_dequantize_matches_ggml_and_gguf_py_on_random_blocks(data, name):
    blocks = data.draw(random_blocks(name))
    cls = quants.get(GGMLType[name])
    expected = ggml_to_float(name, blocks)
    if name not in NOT_IN_GGUF_PY:
        assert same_bits(gguf_dequantize(name, blocks), expected)
    assert same_bits(cls.dequantize_ref(blocks), expected)
    n = blocks.shape[0]
    assert same_bits(quants.dequantize(cls.ggml_type, blocks, (n, cls.block_size)), expected)
    rows = data.draw(st.lists(st.integers(0, n - 1), max_size=8))
    got = quants.dequantize_rows(cls.ggml_type, blocks, rows, cls.block_size)
    assert same_bits(got, expected[rows].reshape(len(rows), cls.block_size))


def test_fp4_scales_decode_every_code_as_ggml():
    """Every E8M0 byte of MXFP4 (0 and 1: subnormal scales; 255: 2^127 times the values)
    and every UE4M3 byte of NVFP4 (0x7F and 0xFF, E4M3's NaN), with every E2M1 code."""
    mx = np.zeros((256, 17), np.uint8)
    mx[:, 0] = np.arange(256)
    mx[:, 1:17] = np.arange(16) | (np.arange(16)[::-1] << 4)          # every code, twice
    nv = np.zeros((64, 36), np.uint8)
    nv[:, :4] = np.arange(256).reshape(64, 4)
    nv[:, 4:36] = np.tile(mx[0, 1:17], 2)
    for name, blocks in (("MXFP4", mx), ("NVFP4", nv)):
        expected = ggml_to_float(name, blocks)
        assert same_bits(quants.get(GGMLType[name]).dequantize_ref(blocks), expected), name
        assert same_bits(quants.dequantize(GGMLType[name], blocks, expected.shape), expected), name


FILES = ["qwen2-tiny-iq4_xs", "qwen2-tiny-iq3_s", "qwen2-tiny-tq1_0", "qwen2-tiny-tq2_0",
         "qwen2-tiny-q1_0", "qwen2-tiny-q2_0"]


@pytest.mark.oracle
@pytest.mark.parametrize("fixture", FILES)
def test_llama_cpp_files_decode_and_requantize_exactly(model_path, fixture):
    """Every tensor of a file llama_model_quantize wrote from qwen2-tiny-f32: decoded as
    ggml decodes it (and gguf-py where it can), and re-made byte for byte by quantize()
    from the F32 source."""
    types = set()
    with pyggml.open(model_path("qwen2-tiny-f32")) as src, pyggml.open(model_path(fixture)) as f:
        for name, info in f.tensors.items():
            types.add(info.type_name)
            raw = f.raw(name)
            cls = quants.get(info.type)
            got = f.dequantize(name)
            if info.type_name in QUANTIZED:
                expected = ggml_to_float(info.type_name, raw.reshape(-1, cls.type_size))
                assert same_bits(got, expected.reshape(info.shape)), name
            if info.type_name not in NOT_IN_GGUF_PY:
                expected = gguf_dequantize(info.type_name, raw.reshape(1, -1))
                assert same_bits(got, expected.reshape(info.shape)), name
            x = src.dequantize(name)
            got = quants.quantize(info.type, x)
            assert np.array_equal(got.reshape(-1), raw.reshape(-1)), name
    assert fixture.split("-")[-1].upper() in types, types


@pytest.mark.oracle
@pytest.mark.parametrize("name", QUANTIZED)
@pytest.mark.parametrize("t", [1, 3, 6, 9])
def test_matmul_q8_bit_identical_to_llama_cpp(name, t):
    """37 and 40 rows (MXFP4 is repacked in 8-row groups, like IQ4_NL), a decode token and
    prompt sizes that take ggml's other kernels."""
    if not cpu_has_avx512():
        pytest.skip("llama-cpp-python here is not the AVX-512 build whose kernels pyggml reproduces")
    rng = np.random.default_rng(sum(map(ord, name)) + t)
    k = 768 if name != "MXFP4" else 32 * 15         # an odd number of MXFP4 blocks
    x = activations(rng, t, k)
    xq = quants.quantize_activations(x, quants.vec_dot_type(GGMLType[name]))
    for n in (37, 40):
        W = random_weights(name, n, k, rng)
        if name == "MXFP4":                         # E8M0 scales of real weights: 2^-17 .. 2^2
            W.reshape(-1, 17)[:, 0] = rng.integers(110, 130, n * k // 32)
        elif name == "NVFP4":                       # UE4M3 scales, no NaN code
            W.reshape(-1, 36)[:, :4] = rng.integers(0, 0x7F, (n * k // 64, 4))
        out = np.empty((t, n), dtype=np.float32)
        quants.matmul_q8(GGMLType[name], W, xq, out)
        expected = mul_mat(int(GGMLType[name]), W, x)
        assert np.array_equal(out.view(np.uint32), expected.view(np.uint32)), n
        if t == 1 and n == 37:
            ggml = np.array([vec_dot_traits(GGMLType[name], W[j], xq[0], k) for j in range(n)], np.float32)
            assert np.array_equal(out[0].view(np.uint32), ggml.view(np.uint32))


@pytest.mark.oracle
@pytest.mark.parametrize("name", QUANTIZED)
def test_c_kernels_equal_llama_cpp(build, name):  # noqa: F811 (the fixture)
    """40 rows (MXFP4 repacked: gemv, gemm) and 36; ORDER_ROWS activation rows: vec_dot,
    tiled (the i-quants), gemm and gemv as llama.cpp picks them."""
    t = GGMLType[name]
    rng = np.random.default_rng(400 + int(t))
    k = 768 if name != "MXFP4" else 32 * 23
    W = random_weights(name, 40, k, rng)
    if name == "MXFP4":                             # E8M0 scales of real weights
        W.reshape(-1, 17)[:, 0] = rng.integers(110, 130, 40 * k // 32)
    expected = to_float(t, W, W.shape[0] * k).reshape(-1, k)
    got = cpu_c.dequantize_rows(t, W, np.arange(W.shape[0]), k)
    assert same_bits(got, expected)
    needs_reference_build()
    for n in (40, 36):
        for T in ORDER_ROWS:
            x = (rng.standard_normal((T, k)) * rng.uniform(0.1, 10, (T, 1))).astype(np.float32)
            got = cpu_c.matmul(t, W[:n], x)
            assert same_bits(got, mul_mat(int(t), W[:n], x)), (n, T)


@pytest.mark.oracle
@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(QUANTIZED), seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(ROW_KINDS),
       weights=st.sampled_from([None, "uniform", "heavy", "sparse", "zero"]),
       n_rows=st.integers(1, 4), n_blocks=st.integers(1, 3))
def test_quantize_equals_ggml_quantize_chunk(name, seed, kind, weights, n_rows, n_blocks):
    """The fast quantizers, with and without an importance matrix (the ternary, FP4 and
    Q1_0/Q2_0 quantizers ignore one, as ggml's do)."""
    t = GGMLType[name]
    cls = quants.get(t)
    k = n_blocks * cls.block_size
    rng = np.random.default_rng(seed)
    x = hard_rows(rng, kind, (n_rows, k))
    imatrix = None if weights is None else importance(rng, weights, k)
    expected = quantize_chunk(t, x, k // cls.block_size * cls.type_size, imatrix)
    got = quants.quantize(t, x, imatrix)
    assert np.array_equal(got, expected), np.argwhere(got != expected)[:5]


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["IQ3_XXS", "IQ3_S"])
def test_iq3_wide_rows_with_a_sparse_imatrix_equal_ggml(name):
    """Rows whose magnitudes span 40 octaves with an importance matrix of mostly zeros:
    the least-squares scale of a sub-block can be 2^-20 of its largest weight, so the
    refit's 1 / scale * x leaves nearest_int's range and ggml keeps what its magic-number
    trick gives there (about 1 row in 10 once differed).  30 rows, the numpy reference and
    the fast quantizer."""
    t = GGMLType[name]
    cls = quants.get(t)
    k = 2 * cls.block_size
    for seed in range(30):
        rng = np.random.default_rng(seed)
        x = hard_rows(rng, "wide", (2, k))
        imatrix = importance(rng, "sparse", k)
        expected = quantize_chunk(t, x, k // cls.block_size * cls.type_size, imatrix)
        assert np.array_equal(quants.quantize(t, x, imatrix), expected), seed
        qw = np.broadcast_to(imatrix, x.shape).reshape(-1, cls.block_size)
        reference = cls.quantize_ref(x.reshape(-1, cls.block_size), qw).reshape(2, -1)
        assert np.array_equal(reference, expected), seed


def test_nearest_int_is_ggmls_also_beyond_its_range():
    """ggml's nearest_int: the low 23 bits of float32(x + 1.5 * 2^23) less 2^22.  Within
    |x| <= 2^22, x rounded half to even; beyond, hand-computed from that formula (2^31:
    the sum is exact, mantissa (2^31 + 1.5 * 2^23 - 2^31) / 256 = 49152; 2^23: 2^21;
    4194303.5: the sum rounds to 2^24, mantissa 0), numpy and numba alike."""
    x = np.array([2.5, 3.5, -2.5, 2.0 ** 31, 2.0 ** 23, -2.0 ** 23, 4194303.5], np.float32)
    expected = [2, 4, -2, 49152 - 2 ** 22, 2 ** 21 - 2 ** 22, -2 ** 22, -2 ** 22]
    assert nearest_int(x).tolist() == expected
    assert [int(nearest_int_scalar(v)) for v in x] == expected


@pytest.mark.oracle
@pytest.mark.parametrize("name", QUANTIZED)
def test_reference_quantizer_equals_ggml_quantize_chunk(name):
    """The numpy reference on its own (quantize_ref, block by block), with an importance
    matrix where the type's quantizer weighs by one."""
    t = GGMLType[name]
    cls = quants.get(t)
    rng = np.random.default_rng(2)
    for kind in ROW_KINDS:
        x = hard_rows(rng, kind, (3, 512))
        row_bytes = 512 // cls.block_size * cls.type_size
        blocks = cls.quantize_ref(x.reshape(-1, cls.block_size))
        assert np.array_equal(blocks.reshape(3, -1), quantize_chunk(t, x, row_bytes)), kind
        if cls.imatrix == "weights":
            imatrix = importance(rng, "heavy", 512)
            qw = np.broadcast_to(imatrix, x.shape).reshape(-1, cls.block_size)
            blocks = cls.quantize_ref(x.reshape(-1, cls.block_size), qw)
            assert np.array_equal(blocks.reshape(3, -1), quantize_chunk(t, x, row_bytes, imatrix)), kind


def test_plain_types_read_as_gguf_py_reads_them(tmp_path):
    """A file with I8 .. I64 and F64 tensors (extremes included) opens; each dequantizes to
    gguf-py's reading of the numbers, converted to float32 as C converts them."""
    rng = np.random.default_rng(4)
    tensors = {}
    for name in PLAIN:
        dtype = np.dtype(quants.get(GGMLType[name]).storage)
        if dtype.kind == "i":
            info = np.iinfo(dtype)
            v = rng.integers(info.min, info.max, (3, 8), dtype=dtype, endpoint=True)
            v[0, :2] = info.min, info.max
        else:
            v = rng.standard_normal((3, 8)) * 10.0 ** rng.integers(-300, 300, (3, 8))
        tensors[name.lower()] = v
    path = write_gguf(tmp_path / "plain.gguf", {"general.architecture": "test"}, tensors)
    reader = gguf.GGUFReader(path)
    with pyggml.open(path) as f:
        for t in reader.tensors:
            assert f.tensors[t.name].type_name == t.tensor_type.name
            expected = np.asarray(t.data).reshape(3, 8).astype(np.float32)
            assert same_bits(f.dequantize(t.name), expected), t.name
            cls = quants.get(f.tensors[t.name].type)
            assert np.array_equal(cls.fields(f.raw(t.name).reshape(-1, cls.type_size))["value"].reshape(3, 8),
                                  np.asarray(t.data).reshape(3, 8)), t.name


@pytest.mark.oracle
@pytest.mark.parametrize("fixture, name, fields", [
    ("qwen2-tiny-iq4_xs", "blk.0.ffn_down.weight", ["scales_h", "scales_l", "sub-blocks of 32"]),
    ("qwen2-tiny-iq3_s", "blk.0.ffn_down.weight", ["qh", "signs", "grid index -> point"]),
    ("qwen2-tiny-tq1_0", "blk.0.ffn_down.weight", ["5 trits per byte", "quants q"]),
    ("qwen2-tiny-tq2_0", "blk.0.ffn_down.weight", ["2-bit trits", "quants q"]),
    ("qwen2-tiny-q1_0", "blk.0.ffn_down.weight", ["128 sign bits", "quants q"]),
    ("qwen2-tiny-q2_0", "blk.0.ffn_down.weight", ["64 2-bit quants", "quants q"])])
def test_inspect_decodes_a_block_field_by_field(model_path, capsys, fixture, name, fields):
    """The last block of a tensor of a llama.cpp-made file: its fields, and the floats
    ggml's to_float makes of its bytes."""
    path = model_path(fixture)
    with pyggml.open(path) as f:
        info = f.tensors[name]
        raw = f.raw(name)
    cls = quants.get(info.type)
    index = raw.size // cls.type_size - 1
    expected = to_float(info.type, raw[index * cls.type_size:], cls.block_size)
    assert main(["inspect", str(path), name, "--block", str(index)]) == 0
    out = capsys.readouterr().out
    assert f"{name}  {cls.name}" in out
    for field in fields:
        assert field in out, field
    np.testing.assert_allclose(printed_floats(out), expected, rtol=1e-5, atol=1e-12)

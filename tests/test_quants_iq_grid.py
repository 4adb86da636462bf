"""The codebook i-quants IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M in every layer, against ggml.

- the tables: kernels/ggml_iq_grids.h is what tools/make_iq_grids.py writes, and every
  point of every grid and every sign byte is what ggml's own dequantize_row_<type>
  (libggml-base's to_float, through ctypes) decodes;
- decoding: the numpy reference, the numba kernels and the C kernels (the AVX2 build and
  the portable scalar one) bit for bit equal to gguf-py and to ggml's to_float, on random
  blocks with finite scales and on every tensor of files llama.cpp quantized itself;
- products: numba and C (both builds) bit for bit equal to ggml_mul_mat on llama.cpp's CPU
  backend for decode and prompt sizes (vec_dot below 8 rows, the tiled matmul from 8), and
  C's scalar vec_dot equal to ggml's vec_dot;
- quantizers: the numpy reference and the numba quantizer byte for byte equal to
  ggml_quantize_chunk with an importance matrix and, where ggml allows, without one, on
  random rows and on every tensor of the llama.cpp-made files;
- ``pyggml inspect --block``: the grid indices, points and signs it prints are ggml's.
"""
from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import given, strategies as st

import pyggml
from pyggml import quants
from pyggml.backends import cpu_c
from pyggml.errors import UsageError
from pyggml.ggml import TYPE_TRAITS, GGMLType as G
from pyggml.quants import iq_grid_points as points

from ggml_oracle import _base, cpu_has_avx512, mul_mat, quantize_chunk, to_float, vec_dot_traits
from test_kernels_c import EXAMPLES, build  # noqa: F401  (build: the native and portable C library)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import make_iq_grids  # noqa: E402

TYPES = [G.IQ2_XXS, G.IQ2_XS, G.IQ2_S, G.IQ1_S, G.IQ1_M]
IQ2 = TYPES[:3]
# the llama-quantize file type whose tensors are mostly of each type (llama-quant.cpp:
# IQ2_S files are IQ2_XS, IQ2_M files IQ2_S)
FTYPES = {G.IQ2_XXS: "IQ2_XXS", G.IQ2_XS: "IQ2_XS", G.IQ2_S: "IQ2_M", G.IQ1_S: "IQ1_S",
          G.IQ1_M: "IQ1_M"}
_base.ggml_quantize_requires_imatrix.restype = __import__("ctypes").c_bool


def same_bits(a, b) -> bool:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def ggml_decode(t: G, W: np.ndarray, k: int) -> np.ndarray:
    """ggml's dequantize_row_<type> of each row of W (n, row_bytes) -> (n, k)."""
    return np.stack([to_float(int(t), row, k) for row in W])


def set_d(t: G, blocks: np.ndarray, d: np.ndarray) -> np.ndarray:
    """blocks (n, type_size) with their fp16 scale d (n,) written where the type keeps it:
    bytes 0..1, or (IQ1_M) the top nibbles of its four scale words."""
    blocks = blocks.copy()
    bits = np.asarray(d, np.float32).astype("<f2").view("<u2").astype(np.uint16)
    if t != G.IQ1_M:
        blocks[:, 0:2] = bits.view(np.uint8).reshape(-1, 2)
        return blocks
    sc = np.ascontiguousarray(blocks[:, 48:56]).view("<u2")
    for j in range(4):
        sc[:, j] = (sc[:, j] & 0x0FFF) | (((bits >> (4 * j)) & 15) << 12)
    blocks[:, 48:56] = sc.view(np.uint8)
    return blocks


def random_rows(t: G, n_rows: int, k: int, rng, scale: float = 2.0) -> np.ndarray:
    """W uint8 (n_rows, row_bytes): random blocks with finite random fp16 scales."""
    type_size = TYPE_TRAITS[t][1]
    blocks = rng.integers(0, 256, (n_rows * (k // 256), type_size), dtype=np.uint8)
    blocks = set_d(t, blocks, rng.uniform(-scale, scale, len(blocks)))
    return blocks.reshape(n_rows, -1)


# ----------------------------------------------------------------------------- the tables

def test_header_is_what_make_iq_grids_writes():
    assert make_iq_grids.HEADER.read_text() == make_iq_grids.header_text()


def blocks_selecting(t: G, index: np.ndarray) -> np.ndarray:
    """Blocks of d = 1, every scale ls = 0, positive signs or delta, whose groups of 8
    select the grid points `index` (a multiple of 32 of them), in order."""
    cls = quants.get(t)
    n = len(index) // 32
    index = index.reshape(n, 32)
    zeros = np.zeros((n, 256 // cls.scale_block), np.int64)
    if t in IQ2:
        blocks = cls.pack(np.ones(n, np.float32), zeros, index, np.zeros((n, 32), np.int64))
    else:               # shift: IQ1_S +1 per sub-block (delta +1/8), IQ1_M 0 (both groups +)
        shift = np.full(zeros.shape, 1 if t == G.IQ1_S else 0)
        blocks = cls.pack(np.ones(n, np.float32), zeros, index, shift)
    return set_d(t, blocks, np.ones(n))


@pytest.mark.oracle
@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_every_grid_point_is_what_ggml_decodes(t):
    """Decode blocks that select each point of the grid once with ggml: with d = 1 and
    ls = 0 a weight is grid / 8 (IQ2: d (0.5 + 0) / 4 times the byte 8, 25 or 43) or
    grid + 1/8 (IQ1), so ggml's floats give the table back exactly."""
    cls = quants.get(t)
    grid = cls.grid
    y = ggml_decode(t, blocks_selecting(t, np.arange(len(grid))), 256).reshape(len(grid), 8)
    decoded = y * 8 if t in IQ2 else y - np.float32(0.125)
    np.testing.assert_array_equal(decoded, grid.astype(np.float32))
    assert len(grid) == {G.IQ2_XXS: 256, G.IQ2_XS: 512, G.IQ2_S: 1024}.get(t, 2048)


@pytest.mark.oracle
@pytest.mark.parametrize("t", [G.IQ2_XXS, G.IQ2_XS], ids=lambda t: t.name)
def test_every_sign_index_is_what_ggml_decodes(t):
    """The 128 7-bit sign indices: ggml's weight j is negative iff bit j of
    ksigns_iq2xs[s], whose bit 7 makes the number of minus signs even."""
    cls = quants.get(t)
    signs = np.arange(128).repeat(2).reshape(8, 32)               # 8 blocks, each s twice
    blocks = set_d(t, cls.pack(np.ones(8, np.float32), np.zeros((8, 256 // cls.scale_block), np.int64),
                               np.zeros((8, 32), np.int64), signs), np.ones(8))
    negative = ggml_decode(t, blocks, 256).reshape(-1, 8) < 0
    bits = (negative << np.arange(8)).sum(axis=1)
    np.testing.assert_array_equal(bits, points.ksigns_iq2xs[signs.reshape(-1)])
    assert (np.unpackbits(points.ksigns_iq2xs).reshape(128, 8).sum(axis=1) % 2 == 0).all()
    np.testing.assert_array_equal(points.ksigns64.reshape(128, 8) != 0,
                                  (points.ksigns_iq2xs[:, None] & points.kmask_iq2xs) != 0)


# ----------------------------------------------------------------------------- decoding

@pytest.mark.oracle
@EXAMPLES
@given(t=st.sampled_from(TYPES), seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6),
       scale=st.sampled_from([2.0, 1e-6, 60000.0]))
def test_dequantize_random_blocks_exactly_as_gguf_and_ggml(build, t, seed, n, scale):
    """Reference, numba (whole rows and gathered rows) and C: gguf-py's and ggml's bits."""
    rng = np.random.default_rng(seed)
    k = 256 * n
    W = random_rows(t, 5, k, rng, scale)
    expected = gguf.quants.dequantize(W, gguf.GGMLQuantizationType(int(t))).reshape(5, k)
    assert same_bits(ggml_decode(t, W, k), expected)
    cls = quants.get(t)
    assert same_bits(cls.dequantize_ref(W.reshape(-1, cls.type_size)).reshape(5, k), expected)
    assert same_bits(quants.dequantize(t, W, (5, k)), expected)
    rows = np.array([4, 0, 2, 2])
    assert same_bits(quants.dequantize_rows(t, W, rows, k), expected[rows])
    assert same_bits(cpu_c.dequantize_rows(t, W, None), expected)
    assert same_bits(cpu_c.dequantize_rows(t, W, rows, k), expected[rows])


# ----------------------------------------------------------------------------- files llama.cpp made

@pytest.fixture(scope="module")
def llama_files(tmp_path_factory):
    """A small random F32 model (hidden 256, ffn 512, 512 tokens), an importance matrix of
    random positive values (a few zeros) for each matrix, and llama.cpp's llama_model_quantize
    of the model to each file type of FTYPES with it: {type: path}, source, imatrix."""
    import llama_quantize
    import make_model
    tmp = tmp_path_factory.mktemp("iq_grid")
    source = tmp / "f32.gguf"
    make_model.write_model(source, make_model.ModelSpec(n_vocab=512, n_layer=1))
    rng = np.random.default_rng(7)
    imatrix = {}
    with pyggml.open(source) as f:
        for info in f.tensors.values():
            if len(info.ne) == 2:
                values = rng.uniform(0.05, 4.0, info.ne[0]).astype(np.float32)
                values[rng.integers(0, info.ne[0], 3)] = 0
                imatrix[info.name] = values
    files = {}
    for t, ftype in FTYPES.items():
        files[t] = tmp / f"{ftype}.gguf"
        llama_quantize.llama_quantize(source, files[t], ftype, imatrix=imatrix,
                                      imatrix_file=("random.imatrix", None, 0))
    return files, source, imatrix


def tensors_of(path, wanted):
    with pyggml.open(path) as f:
        for info in f.tensors.values():
            if info.type in wanted:
                k, n = info.ne
                yield info, f.raw(info.name).reshape(n, -1).copy(), k


@pytest.mark.oracle
def test_every_tensor_of_llama_cpp_files(build, llama_files):
    """Each tensor of the five types in llama.cpp's files: every decoder gives gguf-py's and
    ggml's bits, and pyggml's quantizers, given the file's F32 source and the same
    importance matrix, write the file's bytes."""
    files, source, imatrix = llama_files
    seen = set()
    with pyggml.open(source) as src:
        for t, path in files.items():
            for info, W, k in tensors_of(path, TYPES):
                kind = G(info.type)
                expected = gguf.quants.dequantize(W, gguf.GGMLQuantizationType(int(kind))).reshape(len(W), k)
                assert same_bits(ggml_decode(kind, W, k), expected), info.name
                cls = quants.get(kind)
                assert same_bits(cls.dequantize_ref(W.reshape(-1, cls.type_size)).reshape(len(W), k), expected)
                assert same_bits(quants.dequantize(kind, W, (len(W), k)), expected), info.name
                assert same_bits(cpu_c.dequantize_rows(kind, W, None), expected), info.name
                x = src.raw(info.name).view(np.float32).reshape(len(W), k)
                assert np.array_equal(quants.quantize(kind, x, imatrix[info.name]), W), info.name
                seen.add(kind)
    assert seen == set(TYPES), seen


@pytest.mark.oracle
def test_products_of_llama_cpp_tensors_bit_identical(build, llama_files):
    if not cpu_has_avx512():
        pytest.skip("llama-cpp-python here is not the AVX-512 build whose kernels pyggml reproduces")
    rng = np.random.default_rng(3)
    for path in llama_files[0].values():
        for info, W, k in tensors_of(path, TYPES):
            for T in (1, 5, 12):
                x = rng.standard_normal((T, k)).astype(np.float32)
                expected = mul_mat(info.type, W, x)
                assert same_bits(cpu_c.matmul(info.type, W, x), expected), (info.name, T)
                assert same_bits(quants.matmul(info.type, W, x), expected), (info.name, T)


# ----------------------------------------------------------------------------- products

@pytest.mark.oracle
@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_products_bit_identical_to_llama_cpp(build, t):
    """Every output of C and numba equal to ggml_mul_mat, for 1..13 activation rows (vec_dot
    below 8, the tiled matmul from 8: kernels/ggml_order.c); C's scalar vec_dot equal to
    ggml's vec_dot of one row."""
    if not cpu_has_avx512():
        pytest.skip("llama-cpp-python here is not the AVX-512 build whose kernels pyggml reproduces")
    rng = np.random.default_rng(300 + int(t))
    k = 768
    W = random_rows(t, 36, k, rng, 0.05)
    lib, ffi = cpu_c.load(), cpu_c._state["ffi"]
    for T in (1, 2, 3, 4, 7, 8, 9, 13):
        x = (rng.standard_normal((T, k)) * rng.uniform(0.1, 10, (T, 1))).astype(np.float32)
        expected = mul_mat(int(t), W, x)
        assert same_bits(cpu_c.matmul(t, W, x), expected), T
        xq = cpu_c.quantize_activations(x, G.Q8_K)
        out = np.empty((T, 36), np.float32)
        quants.matmul_q8(t, W, xq, out)
        assert same_bits(out, expected), T
    ref = ffi.new("float *")
    for n in (0, 17, 35):
        assert lib.pyggml_vec_dot_ref(int(t), ffi.from_buffer(W[n]), ffi.from_buffer(xq[0]), k, ref) == 0
        assert np.float32(ref[0]).tobytes() == np.float32(vec_dot_traits(int(t), W[n], xq[0], k)).tobytes()


# ----------------------------------------------------------------------------- quantizers

@pytest.mark.oracle
@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_needs_an_importance_matrix_where_ggml_does(t):
    cls = quants.get(t)
    assert cls.needs_imatrix == _base.ggml_quantize_requires_imatrix(int(t))
    x = np.ones((1, 256), np.float32)
    if cls.needs_imatrix:
        with pytest.raises(UsageError, match="importance matrix"):
            quants.quantize(t, x)
        with pytest.raises(UsageError, match="importance matrix"):
            cls.quantize_ref(x)


def weight_rows(rng, n_rows: int, k: int) -> np.ndarray:
    """Rows of the kinds that decide the quantizers' branches: normal weights at scales
    from tiny to large, heavy tails, an all-zero block, a block with a few non-zeros,
    constant and one-signed blocks."""
    x = rng.standard_normal((n_rows, k)) * np.exp(rng.uniform(-12, 3, (n_rows, 1)))
    x[0] = rng.standard_t(2, k)
    x[1, :256] = 0
    x[2, 256:] = 0
    x[2, rng.integers(256, k, 3)] = rng.standard_normal(3)
    x[3, :256] = 0.75
    x[4] = np.abs(x[4])
    return x.astype(np.float32)


@pytest.mark.oracle
@pytest.mark.parametrize("t, with_imatrix", [(t, True) for t in TYPES] + [
    (t, False) for t in TYPES if not quants.get(t).needs_imatrix],
    ids=lambda v: v.name if isinstance(v, G) else "imatrix" if v else "none")
def test_quantizers_equal_ggml_quantize_chunk(t, with_imatrix):
    """The numba quantizer (quantize()) and the numpy reference write ggml_quantize_chunk's
    bytes, with an importance matrix (with zeros, spanning 8 orders of magnitude) and,
    for the types ggml can quantize without one, without."""
    cls = quants.get(t)
    rng = np.random.default_rng(40 + int(t) + 100 * with_imatrix)
    k = 512
    x = weight_rows(rng, 8, k)
    imatrix = None
    if with_imatrix:
        imatrix = np.exp(rng.uniform(-9, 9, k)).astype(np.float32)
        imatrix[rng.integers(0, k, 9)] = 0
    expected = quantize_chunk(int(t), x, k // 256 * cls.type_size, imatrix)
    got = quants.quantize(t, x, imatrix)
    assert np.array_equal(got, expected), np.flatnonzero((got != expected).any(axis=1))
    weights = None if imatrix is None else np.broadcast_to(imatrix, x.shape).reshape(-1, 256)
    reference = cls.quantize_ref(x.reshape(-1, 256), weights).reshape(x.shape[0], -1)
    assert np.array_equal(reference, expected), np.flatnonzero((reference != expected).any(axis=1))


# ----------------------------------------------------------------------------- inspect

@pytest.mark.oracle
@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_inspect_block_shows_ggmls_grid_points_and_signs(llama_files, t, capsys):
    """`pyggml inspect FILE TENSOR --block N`: per group of 8, the grid index read from the
    block's bytes, the lattice point it selects and its signs (IQ2) or shift (IQ1) are
    those of ggml's decoding of the block."""
    from pyggml.cli import main
    path = llama_files[0][t]
    info, W, k = next(tensors_of(path, [t]))
    cls = quants.get(t)
    index = 1 if W.shape[1] > cls.type_size else 0
    block = W.reshape(-1, cls.type_size)[index:index + 1]
    assert main(["inspect", str(path), info.name, "--block", str(index)]) == 0
    text = capsys.readouterr().out
    y = ggml_decode(t, block, 256).reshape(32, 8)
    groups = [line for line in text.splitlines() if "-> [" in line]
    assert len(groups) == 32, text
    for g, line in enumerate(groups):
        head, rest = line.split("-> [")
        grid_index = int(head.split(":")[1])
        point = np.array(rest.split("]")[0].split(), dtype=np.int64)
        np.testing.assert_array_equal(point, cls.grid[grid_index])
        if t in IQ2:
            signs = rest.split("]")[1].split()[0]
            np.testing.assert_array_equal(np.array([c == "-" for c in signs]), y[g] < 0)
            scale = np.abs(y[g]) / point                      # one d (0.5 + ls) / 4 per group
            assert np.ptp(scale) <= 1e-6 * scale.max(), (g, line)
        else:
            delta = -0.125 if "delta -1/8" in rest else 0.125
            d_ls = y[g] / (point + delta)
            assert np.allclose(d_ls, d_ls[0], rtol=1e-6, atol=0), (g, line)

"""libpyggml_cpu (kernels/) through pyggml.backends.cpu_c, against oracles.

Every test runs twice: on the installed library (-march=native: AVX2 kernels, the thread
pool) and on a portable build made here by setup.py's hook (-march=x86-64, no
threads: the scalar reference kernels, scalar fp16 conversion), so both code paths
of each kernel are held to the same oracles:

- dequantization: bit-exact with gguf-py (gguf.quants.dequantize) and with
  pyggml.quants' numpy reference layer, on random blocks and on every tensor of real
  llama.cpp-quantized fixture files;
- activation quantization: byte-identical to a numpy transcription of what llama.cpp
  runs on x86 (quantize_row_q8_K_ref; ggml-cpu's run-time quantize_row_q8_0 / q8_1), to
  those functions themselves in libggml-cpu (also on hard blocks: ties, tiny, huge, inf)
  and to pyggml.quants.quantize_activations (numba), plus hand-checked rounding cases;
- products: bit-identical to ggml_mul_mat as llama.cpp's CPU backend runs it
  (ggml_oracle.mul_mat: matrices repacked where llama.cpp repacks them), for every
  quantized type, for decode and prompt sizes that take each of ggml's kernels (vec_dot,
  tinyBLAS, repacked gemv/gemm, tiled), on random blocks and on each kind of matrix of
  real files; within a stated tolerance of the float64 product of the dequantized weights
  and the DEquantized activations, within the activation-rounding bound of the float64
  product with the original activations, equal to the scalar reference's vec_dot and to
  pyggml.quants.matmul_q8 (numba) up to float summation order, and independent (bit for
  bit) of the thread count and of how a matrix's rows are cut into chunks.
"""
from __future__ import annotations

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import pyggml
from pyggml import quants
from pyggml.backends import cpu_c
from pyggml.quants import jit
from pyggml.errors import BackendError, UnsupportedTypeError, UsageError
from pyggml.ggml import TYPE_TRAITS, GGMLType as G

from ggml_oracle import cpu_has_avx512, mul_mat as ggml_mul_mat
from test_quants_products import BLOCK_KINDS, ggml_activations, hard_blocks

FLOATS = [G.F32, G.F16, G.BF16]
QUANTS = [G.Q4_0, G.Q4_1, G.Q5_0, G.Q5_1, G.Q8_0, G.IQ4_NL, G.Q2_K, G.Q3_K, G.Q4_K, G.Q5_K, G.Q6_K]
WEIGHT_TYPES = FLOATS + QUANTS
# byte offsets of the fp16 scale fields in each block (random bytes there could be inf/NaN)
FP16_FIELDS = {G.Q4_0: [0], G.Q4_1: [0, 2], G.Q5_0: [0], G.Q5_1: [0, 2], G.Q8_0: [0],
               G.IQ4_NL: [0], G.Q2_K: [80, 82], G.Q3_K: [108], G.Q4_K: [0, 2], G.Q5_K: [0, 2],
               G.Q6_K: [208]}
# hypothesis with the `build` fixture: it is set up once per test, which is what we want
EXAMPLES = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
FIXTURES = ["qwen2-tiny-q4_k_m", "qwen2-tiny-q3_k_m", "qwen2-896-q4_k_m", "qwen2-896-iq4_nl"]


# ----------------------------------------------------------------------------- the two builds

@pytest.fixture(params=["native", "portable"])
def build(request, monkeypatch):
    """cpu_c bound to one of the two builds; yields its feature list."""
    if request.param == "portable":
        monkeypatch.setenv("PYGGML_CPU_LIB", str(request.getfixturevalue("portable_lib")))
        monkeypatch.setattr(cpu_c, "_state", {})
    try:
        cpu_c.load()
    except BackendError as exc:
        pytest.fail(f"the C kernels must be built for these tests (pip install -e .): {exc}")
    features = cpu_c._state["features"]
    assert ("AVX2" in features) == (request.param == "native")
    return features


# ----------------------------------------------------------------------------- data

def random_rows(t: G, n_rows: int, k: int, rng) -> np.ndarray:
    """W uint8 (n_rows, row_bytes): random blocks, with finite random fp16 scales."""
    if t in FLOATS:
        values = rng.standard_normal((n_rows, k)).astype(np.float32)
        if t == G.F16:
            return values.astype(np.float16).view(np.uint8)
        if t == G.BF16:
            return (values.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
        return values.view(np.uint8)
    block_size, type_size = TYPE_TRAITS[t]
    blocks = rng.integers(0, 256, (n_rows, k // block_size, type_size), dtype=np.uint8)
    for offset in FP16_FIELDS[t]:
        scale = rng.uniform(-2.0, 2.0, (n_rows, k // block_size, 1)).astype(np.float16)
        blocks[:, :, offset:offset + 2] = scale.view(np.uint8)
    return blocks.reshape(n_rows, -1)


def gguf_dequantize(t: G, W: np.ndarray, k: int) -> np.ndarray:
    return gguf.quants.dequantize(W, gguf.GGMLQuantizationType(int(t))).reshape(W.shape[0], k)


def fp16(raw: np.ndarray, offset: int, type_size: int) -> np.ndarray:
    """The fp16 field at `offset` of each block of rows of raw bytes, as float64 (rows, blocks)."""
    blocks = raw.reshape(raw.shape[0], -1, type_size)
    return np.ascontiguousarray(blocks[:, :, offset:offset + 2]).view(np.float16)[..., 0].astype(np.float64)


# ----------------------------------------------------------------------------- ggml's activation quantizers in numpy

def q8_0_run_time(x: np.ndarray, with_sum: bool) -> np.ndarray:
    """ggml-cpu's x86 quantize_row_q8_0 (with_sum: q8_1) of finite x float32 (T, K) -> uint8
    (T, row_bytes): d = amax / 127, q = rint(x * (127 / amax)), s = fp16(d * sum(q))."""
    blocks = x.reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax == 0, np.float32(0), np.float32(127) / amax).astype(np.float32)
    qs = np.rint((blocks * inv).astype(np.float32)).astype(np.int8)
    fields = [d.astype(np.float16).view(np.uint8)]
    if with_sum:                     # (s overflows fp16 to inf for huge blocks, in ggml too)
        s = (qs.astype(np.int32).sum(axis=1, keepdims=True).astype(np.float32) * d).astype(np.float32)
        with np.errstate(over="ignore"):
            fields.append(s.astype(np.float16).view(np.uint8))
    fields.append(qs.view(np.uint8))
    return np.concatenate(fields, axis=1).reshape(x.shape[0], -1)


def q8_K_ref(x: np.ndarray) -> np.ndarray:
    """quantize_row_q8_K_ref: max = the first largest |x| with its sign, iscale = -127/max,
    q = min(127, round-half-even(iscale * x)), d = 1/iscale; an all-zero block is all zero."""
    blocks = x.reshape(-1, 256).astype(np.float32)
    first = np.abs(blocks).argmax(axis=1)
    signed_max = blocks[np.arange(len(blocks)), first][:, None]
    zero = signed_max == 0
    with np.errstate(divide="ignore"):
        iscale = np.where(zero, np.float32(0), np.float32(-127) / signed_max).astype(np.float32)
        d = np.where(zero, np.float32(0), np.float32(1) / iscale).astype(np.float32)
    qs = np.minimum(127, np.rint((iscale * blocks).astype(np.float32))).astype(np.int8)
    bsums = qs.reshape(-1, 16, 16).astype(np.int16).sum(axis=2, dtype=np.int16)
    out = np.concatenate([d.view(np.uint8), qs.view(np.uint8), bsums.view(np.uint8)], axis=1)
    return out.reshape(x.shape[0], -1)


def dequantize_activations(fmt: G, xq: np.ndarray) -> np.ndarray:
    """xq rows -> float64 values d * q (the 's' of Q8_1 is not a value: see min_term)."""
    if fmt == G.F32:
        return xq.view(np.float32).astype(np.float64)
    if fmt == G.Q8_K:
        blocks = xq.reshape(xq.shape[0], -1, 292)
        d = np.ascontiguousarray(blocks[:, :, :4]).view(np.float32).astype(np.float64)
        return (d * blocks[:, :, 4:260].view(np.int8)).reshape(xq.shape[0], -1)
    head = 2 if fmt == G.Q8_0 else 4
    blocks = xq.reshape(xq.shape[0], -1, head + 32)
    d = fp16(xq, 0, head + 32)[..., None]
    return (d * blocks[:, :, head:].view(np.int8)).reshape(xq.shape[0], -1)


def act_scale(fmt: G, xq: np.ndarray) -> np.ndarray:
    """|d| of the activation block of each element (T, K): the rounding step."""
    if fmt == G.Q8_K:
        d = np.abs(np.ascontiguousarray(xq.reshape(xq.shape[0], -1, 292)[:, :, :4]).view(np.float32))
        return np.repeat(d[..., 0].astype(np.float64), 256, axis=1)
    return np.repeat(np.abs(fp16(xq, 0, 34 if fmt == G.Q8_0 else 36)), 32, axis=1)


def min_term(t: G, W: np.ndarray, xq: np.ndarray):
    """For Q4_1/Q5_1 x Q8_1, ggml adds m * s per block (s = fp16(d * sum q), as stored) where an
    exact product would add m * d * sum q: returns (sum_b m_b s_b  (T, N), sum_b |m_b s_b|)."""
    if t not in (G.Q4_1, G.Q5_1):
        return 0.0, 0.0
    m = fp16(W, 2, TYPE_TRAITS[t][1])                    # (N, blocks)
    s = fp16(xq, 2, 36)                                  # (T, blocks)
    return s @ m.T, np.abs(s) @ np.abs(m).T


# ----------------------------------------------------------------------------- dequantization

@pytest.mark.oracle
@pytest.mark.parametrize("t", WEIGHT_TYPES, ids=lambda t: t.name)
def test_dequantize_random_blocks_exactly_as_gguf(build, t):
    rng = np.random.default_rng(int(t))
    W = random_rows(t, 9, 768, rng)
    expected = gguf_dequantize(t, W, 768)
    got = cpu_c.dequantize_rows(t, W, None)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    reference = quants.get(t).dequantize_ref(W.reshape(-1, TYPE_TRAITS[t][1])).reshape(9, 768)
    np.testing.assert_array_equal(got.view(np.uint32), reference.view(np.uint32))
    rows = np.array([8, 0, 3, 3, 7])                     # any order, repeats allowed
    np.testing.assert_array_equal(cpu_c.dequantize_rows(t, W, rows, 768), expected[rows])


@pytest.mark.oracle
@pytest.mark.parametrize("name", FIXTURES)
def test_dequantize_every_tensor_of_real_files_exactly_as_gguf(build, model_path, name):
    """Every matrix of the file; of the token embedding (151,936 rows) 3,000 random rows."""
    rng = np.random.default_rng(10)
    with pyggml.open(model_path(name)) as f:
        seen = set()
        for info in f.tensors.values():
            if len(info.ne) != 2 or info.type not in cpu_c._state["types"]:
                continue
            k, n = info.ne
            W = f.raw(info.name).reshape(n, -1)
            rows = np.sort(rng.choice(n, 3000, replace=False)) if n > 3000 else np.arange(n)
            expected = gguf_dequantize(G(info.type), np.ascontiguousarray(W[rows]), k)
            got = cpu_c.dequantize_rows(info.type, W, rows)
            assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), info.name
            seen.add(G(info.type).name)
    assert len(seen & {"Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "Q5_0", "Q8_0"}) >= 2, seen


# ----------------------------------------------------------------------------- activations

def activation_rows(rng) -> np.ndarray:
    """(6, 512) float32 rows with the cases that decide rounding and sign, in a wider array
    so that rows are strided (ldx > K)."""
    x = np.zeros((6, 600), np.float32)
    x[:, :512] = rng.standard_normal((6, 512)) * rng.uniform(0.01, 100, (6, 1))
    x[1, :256] = 0                                       # an all-zero Q8_K (and Q8_0) block
    x[2, :32] = np.arange(32) - 15.5                     # amax at the end of the block
    x[2, 256:512] *= 1e-3 / np.abs(x[2, 256:512]).max()
    x[2, 256 + 7] = -9.0                                 # the first largest |x| is negative...
    x[2, 256 + 99] = 9.0                                 # ...and a later one positive
    x[3, :256] *= 1e-30                                  # tiny but normal scales
    x[4, 256:] = np.float32(3e4)                         # large, equal values
    return x[:, :512]


@pytest.mark.parametrize("fmt", [G.Q8_0, G.Q8_1, G.Q8_K], ids=lambda t: t.name)
def test_quantize_activations_byte_identical_to_numpy_transcription(build, fmt):
    x = activation_rows(np.random.default_rng(1))
    expected = q8_K_ref(x) if fmt == G.Q8_K else q8_0_run_time(x, with_sum=fmt == G.Q8_1)
    got = cpu_c.quantize_activations(x, fmt)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, quants.quantize_activations(x, fmt))


@pytest.mark.oracle
@EXAMPLES
@given(fmt=st.sampled_from([G.Q8_0, G.Q8_1]),
       kinds=st.lists(st.sampled_from(BLOCK_KINDS), min_size=1, max_size=12),
       seed=st.integers(0, 2**32 - 1))
def test_q8_0_and_q8_1_activations_equal_ggml_cpu(build, fmt, kinds, seed):
    """libggml-cpu's own quantize_row_q8_0 / q8_1 on blocks built to be hard (see hard_blocks)."""
    x = hard_blocks(kinds, seed).reshape(1, -1)
    got = cpu_c.quantize_activations(x, fmt)
    np.testing.assert_array_equal(got, ggml_activations(fmt, x))
    np.testing.assert_array_equal(got, quants.quantize_activations(x, fmt))


def test_activation_rounding_hand_checked(build):
    # Q8_0: amax 127 -> d = 1, id = 127/127 = 1: 2.5 and -3.5 round half to even (rint)
    x = np.zeros((1, 256), np.float32)
    x[0, :4] = [127, 2.5, -3.5, 0.49]
    q8_0 = cpu_c.quantize_activations(x, G.Q8_0)
    assert q8_0[0, :2].view(np.float16)[0] == 1.0
    assert list(q8_0[0, 2:6].view(np.int8)) == [127, 2, -4, 0]
    # Q8_1 of the same: s = d * sum(q) = 125
    assert cpu_c.quantize_activations(x, G.Q8_1)[0, 2:4].view(np.float16)[0] == 125.0
    # Q8_K: max = +127 -> iscale = -1, d = -1; 2.5 -> -2.5 -> -2 (half to even), -3.5 -> 4
    q8_K = cpu_c.quantize_activations(x, G.Q8_K)
    assert q8_K[0, :4].view(np.float32)[0] == -1.0
    assert list(q8_K[0, 4:8].view(np.int8)) == [-127, -2, 4, 0]
    assert q8_K[0, 260:262].view(np.int16)[0] == -125              # bsums[0]
    # a block whose max is below 127 / FLT_MAX: 127/max is inf, every lane INT32_MIN -> -128
    x[0, 32:64] = 1e-38
    q8_0 = cpu_c.quantize_activations(x, G.Q8_0)
    assert q8_0[0, 34:36].view(np.float16)[0] == 0.0
    assert (q8_0[0, 36:68].view(np.int8) == -128).all()


# ----------------------------------------------------------------------------- products

def product_reference(t: G, W: np.ndarray, x: np.ndarray, k: int):
    """(xq, exact product with the dequantized activations, its scale, bound vs original x)."""
    fmt = cpu_c.vec_dot_type(t)
    xq = cpu_c.quantize_activations(x, fmt)
    w64 = gguf_dequantize(t, W, k).astype(np.float64)
    a64 = dequantize_activations(fmt, xq)
    exact_m, scale_m = min_term(t, W, xq)
    if t in (G.Q4_1, G.Q5_1):                            # ggml's m * s replaces m * d * sum(q)
        m = np.repeat(fp16(W, 2, TYPE_TRAITS[t][1]), 32, axis=1)
        exact = a64 @ (w64 - m).T + exact_m
    else:
        exact = a64 @ w64.T
    scale = np.abs(a64) @ np.abs(w64).T + scale_m
    if fmt == G.F32:
        rounding = np.zeros_like(exact)
    else:       # |x - d q| <= d/2 + |q| |d - fp16(d)| <= 0.57 |d|; Q8_1's s is fp16-rounded too
        rounding = 0.57 * act_scale(fmt, xq) @ np.abs(w64).T + scale_m * 2.0 ** -10
    return xq, exact, scale, rounding


@pytest.mark.parametrize("t", WEIGHT_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("n_act", [1, 2, 3, 4, 7, 13])     # 13: K-quants' prefill panels
def test_products_match_float64_of_dequantized_operands(build, t, n_act):
    rng = np.random.default_rng(100 * int(t) + n_act)
    k = 768 if t not in FLOATS else 771                  # float rows: a tail after 16-wide steps
    W = random_rows(t, 37, k, rng)
    x = rng.standard_normal((n_act, k)).astype(np.float32)
    xq, exact, scale, rounding = product_reference(t, W, x, k)

    out = np.full((n_act, 37), np.nan, np.float32)
    cpu_c.matmul_q8(t, W, xq, out)
    assert np.all(np.abs(out - exact) <= 1e-5 * scale + 1e-30)          # summation order only
    # against the original activations: within the activation rounding bound
    x64 = x.astype(np.float64) @ gguf_dequantize(t, W, k).astype(np.float64).T
    assert np.all(np.abs(out - x64) <= rounding + 1e-5 * scale + 1e-30)
    # quantize + product in one call gives the same bits
    np.testing.assert_array_equal(cpu_c.matmul(t, W, x), out)
    # the numba kernels of pyggml.quants follow the same llama.cpp orders: the same bits
    # (F16/BF16 weights: numba converts the activations to the weight's type like ggml,
    # the C kernels keep them float32, so only the quantized types compare)
    if t in QUANTS:
        numba_out = np.empty_like(out)
        quants.matmul_q8(t, W, xq, numba_out)
        np.testing.assert_array_equal(numba_out.view(np.uint32), out.view(np.uint32))
    # the scalar reference computes ggml's vec_dot order: the same bits where the product
    # takes that order (jit.order: one token, K-quants below 8 rows, Q4_1 and Q5_1), the
    # same value up to summation order where it takes another (and for the float types,
    # which the reference sums in double)
    lib, ffi = cpu_c.load(), cpu_c._state["ffi"]
    ref = ffi.new("float *")
    for ti in range(n_act):
        vec_dot_order = t in QUANTS and jit.order(int(t), W.shape[0], n_act, ti) == jit.VEC_DOT
        for ni in (0, 17, 36):
            assert lib.pyggml_vec_dot_ref(int(t), ffi.from_buffer(W[ni]), ffi.from_buffer(xq[ti]),
                                          k, ref) == 0
            if vec_dot_order:
                assert np.float32(ref[0]).tobytes() == out[ti, ni].tobytes(), (ti, ni)
            else:
                assert abs(ref[0] - out[ti, ni]) <= 1e-5 * scale[ti, ni] + 1e-30


# ----------------------------------------------------------------------------- products: llama.cpp's bits

# activation rows that take each of ggml's kernels (kernels/ggml_order.c): 1 decode (vec_dot,
# repacked gemv); 2, 3 (vec_dot, tinyBLAS, gemv); 4, 6 (repacked gemm, then gemv for the
# rest); 8, 9, 13 (tiled K-quants, gemm; our panels)
ORDER_ROWS = [1, 2, 3, 4, 6, 8, 9, 13]


def needs_reference_build():
    """The oracle must be llama.cpp's AVX-512 build: the kernels pyggml reproduces."""
    if not cpu_has_avx512():
        pytest.skip("llama-cpp-python here is not the AVX-512 build whose kernels pyggml reproduces")


@pytest.mark.oracle
@pytest.mark.parametrize("t", QUANTS, ids=lambda t: t.name)
def test_products_bit_identical_to_llama_cpp(build, t):
    """Every output equal, bit for bit, to ggml_mul_mat on llama.cpp's CPU backend.  40 rows:
    Q4_0, IQ4_NL, Q4_K and Q2_K are repacked (rows % 8 == 0); 36: not.  IQ4_NL with an odd
    number of blocks: its vec_dot adds the last one apart.  Activations quantized in the
    call, or beforehand: the same bits."""
    needs_reference_build()
    rng = np.random.default_rng(200 + int(t))
    k = 32 * 23 if t == G.IQ4_NL else 768
    for n in (40, 36):
        W = random_rows(t, n, k, rng)
        for T in ORDER_ROWS:
            x = (rng.standard_normal((T, k)) * rng.uniform(0.1, 10, (T, 1))).astype(np.float32)
            expected = ggml_mul_mat(int(t), W, x)
            got = cpu_c.matmul(t, W, x)
            assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (n, T)
            xq = cpu_c.quantize_activations(x, cpu_c.vec_dot_type(t))
            again = cpu_c.matmul_q8(t, W, xq, np.empty_like(got))
            assert np.array_equal(again.view(np.uint32), got.view(np.uint32)), (n, T)


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["qwen2-tiny-q4_k_m", "qwen2-tiny-q3_k_m", "qwen2-896-q3_k_m",
                                  "qwen2-896-iq4_nl", "smollm2-q4_k_m"])
def test_products_of_real_tensors_bit_identical_to_llama_cpp(build, model_path, name):
    """One matrix of each kind (type and shape) of a file, for decode and prompts: exactly
    what llama.cpp's products of that model compute (the token embedding, 151,936 rows of
    the output head, is left to the forward-pass tests)."""
    needs_reference_build()
    rng = np.random.default_rng(3)
    seen = set()
    with pyggml.open(model_path(name)) as f:
        for info in f.tensors.values():
            k, n = info.ne if len(info.ne) == 2 else (0, 0)
            if not n or info.name == "token_embd.weight" or (info.type, k, n) in seen:
                continue
            seen.add((info.type, k, n))
            W, t = f.raw(info.name).reshape(n, -1), G(info.type)
            for T in (1, 5, 12):
                x = rng.standard_normal((T, k)).astype(np.float32)
                expected = ggml_mul_mat(int(t), W, x)
                got = cpu_c.matmul(t, W, x)
                assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (info.name, T)
    assert len({t for t, _, _ in seen}) >= 2, seen


@pytest.mark.parametrize("t", [G.Q4_K, G.Q6_K, G.Q3_K, G.Q8_0, G.Q4_1, G.IQ4_NL, G.F16],
                         ids=lambda t: t.name)
def test_products_do_not_depend_on_threads_or_chunks(build, t):
    """Large enough to run in parallel chunks (1104 rows: repacked Q4_K and IQ4_NL in
    llama.cpp).  For each number of activation rows, which picks ggml's kernel: the same
    bits from 1 and 2 threads, and from the matrix's first 552 rows alone (each output
    depends on its own weight and activation rows only)."""
    rng = np.random.default_rng(4)
    W = random_rows(t, 1104, 1024, rng)
    x = rng.standard_normal((16, 1024)).astype(np.float32)
    xq = cpu_c.quantize_activations(x, cpu_c.vec_dot_type(t))
    for T in (1, 3, 7, 13, 16):
        def product(W, n_threads):
            return cpu_c.matmul_q8(t, W, xq[:T], np.empty((T, W.shape[0]), np.float32),
                                   n_threads=n_threads)
        one = product(W, 1)
        np.testing.assert_array_equal(product(W, 2), one)
        np.testing.assert_array_equal(product(W[:552], 2), one[:, :552])


def test_products_of_row_strided_views(build):
    """A view of W whose rows are spaced wider than they are long multiplies like a copy."""
    rng = np.random.default_rng(5)
    big = random_rows(G.Q3_K, 40, 1024, rng)
    Wv = big[:, :220]                                    # 40 rows of 512 (2 blocks), stride 440
    x = rng.standard_normal((6, 512)).astype(np.float32)
    np.testing.assert_array_equal(cpu_c.matmul(G.Q3_K, Wv, x),
                                  cpu_c.matmul(G.Q3_K, np.ascontiguousarray(Wv), x))


# ----------------------------------------------------------------------------- refusals

def test_bad_arguments_raise_typed_errors(build):
    rng = np.random.default_rng(8)
    W = random_rows(G.Q4_K, 4, 256, rng)
    x = rng.standard_normal((2, 256)).astype(np.float32)
    xq = cpu_c.quantize_activations(x, G.Q8_K)
    out = np.empty((2, 4), np.float32)
    with pytest.raises(UnsupportedTypeError):
        cpu_c.matmul_q8(G.Q8_K, W, xq, out)              # an activation type is no weight type
    with pytest.raises(UnsupportedTypeError):
        cpu_c.matmul_q8(G.I32, W, xq, out)                # plain numbers: no product
    with pytest.raises(UsageError, match="uint8"):
        cpu_c.matmul_q8(G.Q4_K, W.view(np.int8), xq, out)
    with pytest.raises(UsageError, match="multiple of 144"):
        cpu_c.matmul_q8(G.Q4_K, W[:, :100], xq, out)
    with pytest.raises(UsageError, match="xq"):
        cpu_c.matmul_q8(G.Q4_K, W, xq[:, :-1], out)
    with pytest.raises(UsageError, match="shape"):
        cpu_c.matmul_q8(G.Q4_K, W, xq, np.empty((2, 5), np.float32))
    with pytest.raises(UsageError, match="contiguous"):
        cpu_c.matmul_q8(G.Q4_K, W, xq, np.empty((4, 2), np.float32).T)
    with pytest.raises(UsageError, match="read-only"):
        ro = np.empty((2, 4), np.float32)
        ro.flags.writeable = False
        cpu_c.matmul_q8(G.Q4_K, W, xq, ro)
    with pytest.raises(UsageError, match="columns"):
        cpu_c.matmul(G.Q4_K, W, x[:, :128])
    with pytest.raises(UsageError, match="outside"):
        cpu_c.dequantize_rows(G.Q4_K, W, [0, 4])
    with pytest.raises(UsageError, match="multiple"):
        cpu_c.quantize_activations(x[:, :100], G.Q8_0)


def test_c_entry_points_refuse_bad_arguments_without_writing(build):
    """The C checks behind the Python ones: error codes, and nothing written."""
    lib, ffi = cpu_c.load(), cpu_c._state["ffi"]
    W = random_rows(G.Q4_K, 4, 256, np.random.default_rng(9))
    out = np.zeros((2, 256), np.float32)
    o = ffi.from_buffer("float[]", out)
    rows = ffi.new("int64_t[]", [0, 4])
    assert lib.pyggml_dequantize_rows(int(G.Q4_K), ffi.from_buffer(W), 144, 4, rows, 2, 256, o, 256) \
        == lib.PYGGML_ERR_INDEX
    assert lib.pyggml_dequantize_rows(int(G.Q4_K), ffi.from_buffer(W), 144, 4, ffi.NULL, 2, 200, o, 256) \
        == lib.PYGGML_ERR_SHAPE
    assert lib.pyggml_dequantize_rows(int(G.I32), ffi.from_buffer(W), 144, 4, ffi.NULL, 2, 256, o, 256) \
        == lib.PYGGML_ERR_TYPE
    assert not out.any()
    act = ffi.new("char[]", 2 * 292)
    jobs = ffi.new("pyggml_matmul_job[]", [(int(G.Q4_K), 4, ffi.from_buffer(W), 144, o, 4),
                                           (int(G.Q8_0), 4, ffi.from_buffer(W), 144, o, 4)])
    assert lib.pyggml_matmul(jobs, 2, ffi.NULL, 0, act, 1, 256, 1) == lib.PYGGML_ERR_ARG  # mixed
    assert lib.pyggml_matmul(jobs, 1, ffi.NULL, 0, act, 1, 250, 1) == lib.PYGGML_ERR_SHAPE
    assert lib.pyggml_matmul(jobs, 1, ffi.NULL, 0, ffi.NULL, 1, 256, 1) == lib.PYGGML_ERR_ARG
    assert lib.pyggml_matmul(jobs, 17, ffi.NULL, 0, act, 1, 256, 1) == lib.PYGGML_ERR_ARG
    jobs[0].w_stride = 100                               # rows would overlap
    assert lib.pyggml_matmul(jobs, 1, ffi.NULL, 0, act, 1, 256, 1) == lib.PYGGML_ERR_ARG
    assert not out.any()
    scores = ffi.from_buffer("float[]", np.ones((2, 256), np.float32))
    assert lib.pyggml_silu_mul(scores, scores, o, -1, 256) == lib.PYGGML_ERR_SHAPE
    assert not out.any()


def test_missing_library_is_a_backend_error_said_once(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PYGGML_CPU_LIB", str(tmp_path / "libpyggml_cpu.so"))
    monkeypatch.setattr(cpu_c, "_state", {})
    assert cpu_c.available() is False
    assert cpu_c.available() is False
    assert capsys.readouterr().err.count("using the numba kernels") == 1
    with pytest.raises(BackendError, match="not built"):
        cpu_c.matmul_q8(G.Q4_K, np.zeros((1, 144), np.uint8), np.zeros((1, 292), np.uint8),
                        np.zeros((1, 1), np.float32))


def test_failed_build_warns_and_returns(tmp_path, monkeypatch, capsys, project_setup):
    """setup.py's hook never fails an install: a broken compiler or no cmake is a warning."""
    setup = project_setup
    monkeypatch.setenv("PYGGML_CMAKE_ARGS", "-DCMAKE_C_COMPILER=/nonexistent/cc")
    assert setup.build_kernels(tmp_path / "build", tmp_path / "lib") is False
    monkeypatch.setenv("PATH", str(tmp_path))            # no cmake on PATH
    assert setup.build_kernels(tmp_path / "build2", tmp_path / "lib") is False
    err = capsys.readouterr().err
    assert "configuring the C kernels failed" in err and "cmake not found" in err
    assert not (tmp_path / "lib" / "libpyggml_cpu.so").exists()


# ----------------------------------------------------------------------------- the thread pool

def test_pool_under_concurrent_callers_and_many_jobs(build):
    """Python threads calling at once (the GIL is released in C), and jobs of changing size
    back to back: every result equals the single-threaded one."""
    import threading
    rng = np.random.default_rng(11)
    mats = [(t, random_rows(t, n, 1024, rng)) for t, n in
            [(G.Q4_K, 700), (G.Q6_K, 1500), (G.Q8_0, 900), (G.Q3_K, 2000)]]
    x = rng.standard_normal((3, 1024)).astype(np.float32)
    expected = [cpu_c.matmul(t, W, x, n_threads=1) for t, W in mats]
    failures = []

    def worker(seed):
        order = np.random.default_rng(seed).integers(0, len(mats), 60)
        for i in order:
            t, W = mats[i]
            if not np.array_equal(cpu_c.matmul(t, W, x, n_threads=2), expected[i]):
                failures.append((seed, i))
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not failures


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_pool_after_fork(build):
    """A child forked after the pool ran still computes (alone, or with new workers)."""
    import os
    import time
    rng = np.random.default_rng(12)
    W = random_rows(G.Q4_K, 2000, 1024, rng)
    x = rng.standard_normal((2, 1024)).astype(np.float32)
    expected = cpu_c.matmul(G.Q4_K, W, x, n_threads=2)
    pid = os.fork()
    if pid == 0:                                          # the child: exit code is the verdict
        ok = all(np.array_equal(cpu_c.matmul(G.Q4_K, W, x, n_threads=2), expected) for _ in range(20))
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung in a product")


# ----------------------------------------------------------------------------- backend choice

def test_cpu_kernels_choose_c_or_numba(monkeypatch, tmp_path, capsys):
    from pyggml.backends.cpu import cpu_kernels
    rng = np.random.default_rng(13)
    W = random_rows(G.Q4_K, 40, 512, rng)
    x = rng.standard_normal((2, 512)).astype(np.float32)
    c, numba_kernels = cpu_kernels("c", 1), cpu_kernels("numba")
    assert (c.name, numba_kernels.name) == ("c", "numba") and cpu_kernels().name == "c"
    fmt = c.vec_dot_type(G.Q4_K)
    assert fmt == numba_kernels.vec_dot_type(G.Q4_K) == G.Q8_K
    xq = c.quantize_activations(x, fmt)
    outs = [np.empty((2, 40), np.float32) for _ in range(2)]
    c.matmul_q8(G.Q4_K, W, xq, outs[0])
    numba_kernels.matmul_q8(G.Q4_K, W, xq, outs[1])
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5 * np.abs(outs[1]).max())
    np.testing.assert_array_equal(c.dequantize_rows(G.Q4_K, W, [3, 1], 512),
                                  numba_kernels.dequantize_rows(G.Q4_K, W, [3, 1], 512))
    with pytest.raises(UsageError, match="unknown CPU backend"):
        cpu_kernels("fortran")
    with pytest.raises(UsageError, match="positive"):
        cpu_kernels("c", 0)
    # without the library: the default falls back to numba and says so once; "c" refuses
    monkeypatch.setenv("PYGGML_CPU_LIB", str(tmp_path / "missing.so"))
    monkeypatch.setattr(cpu_c, "_state", {})
    assert cpu_kernels().name == "numba" and cpu_kernels().name == "numba"
    assert capsys.readouterr().err.count("using the numba kernels") == 1
    with pytest.raises(BackendError):
        cpu_kernels("c")

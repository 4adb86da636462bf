"""A quantized kv cache (llama.cpp's --cache-type-k/-v, llama-cpp-python's type_k/type_v)
against llama.cpp with the same cache types.

llama.cpp's arithmetic with a quantized cache, which pyggml follows (model/forward.py):
  - K and V rows quantized as they are written (ggml_set_rows: quantize_row_q8_0 of
    ggml-cpu, quantize_row_q4_0 = its _ref), after a Walsh-Hadamard rotation of q, k (K
    quantized) and of v (V quantized, the attention's output rotated back) where
    head_dim % 64 == 0 (llama.cpp's attn_rot_k / attn_rot_v);
  - K quantized, V f16: flash attention off (llama-cpp-python's default), q . k through
    the Q8_0 integer products;
  - V quantized: flash attention, which llama.cpp requires (its CPU kernel's online
    softmax, one key after another).
On an AVX-512 build of llama.cpp (this project's machines) the logits are equal, on both
CPU backends: the numpy block (model/forward.py, the numba products) and the C block
(kernels/layer.c), which the default backend takes with a quantized cache too.
"""
import numpy as np
import pytest

import pyggml
from llama_oracle import TEXT, assert_logits_match
from pyggml.errors import UsageError
from pyggml.model.forward import rotate
from pyggml.runtime import kv_cache_type

pytestmark = pytest.mark.oracle

N_CTX = 256
GGML_ID = {"f16": 1, "q8_0": 8, "q4_0": 2}

# (file, type_k, type_v, tokens of the prompt): every combination on the qwen2 fixture
# (head_dim 64; f16/f16 is test_model's); gemma3 (head_dim 128, so K's rotation is 128 wide; 5 of 6 layers in a
# 32-position window; Q pre-scaled) with a prompt longer than the window; qwen3 with heads
# of 96 (no rotation)
CASES = [("qwen2-tiny-q4_k_m", k, v, 48)
         for k, v in [("q8_0", "f16"), ("q4_0", "f16"), ("q8_0", "q8_0"), ("q4_0", "q4_0"),
                      ("f16", "q8_0"), ("q8_0", "q4_0"), ("f16", "q4_0"), ("q4_0", "q8_0")]]
CASES += [("gemma3-q4_k_m", "q8_0", "q8_0", 80), ("gemma3-q4_k_m", "q4_0", "f16", 80),
          ("qwen3-hd96-q4_k_m", "q8_0", "q4_0", 48), ("qwen3-hd96-q4_k_m", "q4_0", "f16", 48)]


def llama_logits(path, type_k, type_v, ids, n_decode, n_ctx=N_CTX):
    """llama.cpp's logits over ids (in batches of 512, as pyggml's), then over n_decode
    greedy tokens fed one at a time."""
    import llama_cpp

    import make_model
    make_model._quiet_llama()
    llm = llama_cpp.Llama(model_path=str(path), logits_all=True, n_ctx=n_ctx,
                          n_batch=min(n_ctx, 512), n_threads=2, verbose=False, seed=0,
                          type_k=GGML_ID[type_k], type_v=GGML_ID[type_v],
                          flash_attn=type_v != "f16")
    try:
        llm.eval(ids)
        rows = [np.array(llm.scores[:len(ids)], np.float32)]
        decoded = []
        for _ in range(n_decode):
            decoded.append(int(np.argmax(rows[-1][-1])))
            llm.eval(decoded[-1:])
            rows.append(np.array(llm.scores[llm.n_tokens - 1:llm.n_tokens], np.float32))
        return np.concatenate(rows), decoded
    finally:
        llm.close()


_LLAMA_LOGITS = {}          # both backends' cases compare with one run of llama.cpp


@pytest.mark.parametrize("backend", ["c", "numba"])
@pytest.mark.parametrize("name,type_k,type_v,n_prompt", CASES)
def test_logits_equal_llama_cpp_with_the_same_cache_types(name, type_k, type_v, n_prompt,
                                                          backend, model_path, capfd):
    path = model_path(name)
    # the default backend is the C block, which runs every cache type
    with pyggml.load(path, n_ctx=N_CTX, type_k=type_k, type_v=type_v,
                     backend=None if backend == "c" else backend) as model:
        assert "numba" not in capfd.readouterr().err
        assert model.kernels.name == backend
        ids = model.tokenize(TEXT)[:n_prompt]
        assert len(ids) == n_prompt
        key = (name, type_k, type_v, n_prompt)
        if key not in _LLAMA_LOGITS:
            _LLAMA_LOGITS[key] = llama_logits(path, type_k, type_v, ids, n_decode=4)
        ref, decoded = _LLAMA_LOGITS[key]
        ours = [model.logits(ids)]
        ours += [model.eval([token])[None] for token in decoded]
        ours = np.concatenate(ours)
    print(f"{name} K {type_k} V {type_v} ({backend}): max |d| {np.abs(ours - ref).max()}")
    assert_logits_match(ours, ref)


@pytest.mark.parametrize("name,type_k,type_v", [("smollm2-q4_k_m", "q8_0", "q4_0"),
                                                ("gemma3-q4_k_m", "q4_0", "f16")])
def test_decode_steps_after_a_long_prompt_equal_llama_cpp(name, type_k, type_v, model_path):
    """A prompt of 600 positions (two batches, 512 + 88, in llama.cpp as in pyggml), then
    decode steps at 600 to 603 cached positions, on the C block: its attention with a
    quantized cache over many keys (K.q in groups of 8 keys, the flash loop over 600 keys;
    gemma3's window of 32, whose first key is past the first 512 positions)."""
    path = model_path(name)
    with pyggml.load(path, n_ctx=1024, backend="c", type_k=type_k, type_v=type_v) as model:
        ids = (model.tokenize(TEXT) * 8)[:600]
        assert len(ids) == 600
        ref, decoded = llama_logits(path, type_k, type_v, ids, n_decode=4, n_ctx=1024)
        ours = [model.logits(ids)]
        ours += [model.eval([token])[None] for token in decoded]
    assert_logits_match(np.concatenate(ours), ref)


@pytest.mark.parametrize("name,type_k,type_v", [("qwen2-tiny-q4_k_m", "q8_0", "q4_0"),
                                                ("gemma3-q4_k_m", "q4_0", "q8_0")])
def test_decode_together_with_a_quantized_cache_equals_each_sequence_alone(name, type_k,
                                                                           type_v):
    """Several sequences in one C call (runtime.decode_together), each with its own quantized
    cache: every sequence's logits those of its own step (which the tests above hold equal
    to llama.cpp's), lengths past gemma3's window of 32 included."""
    import make_model
    from pyggml.format.shards import GGUFFile
    from pyggml.runtime import Model, decode_together
    f = GGUFFile(make_model.model_path(name))
    together, alone = ([Model(f, n_ctx=128, backend="c", type_k=type_k, type_v=type_v)
                        for _ in range(3)] for _ in range(2))
    rng = np.random.default_rng(5)
    n_vocab = together[0].hparams.n_vocab
    for a, b, n in zip(together, alone, (1, 20, 45)):
        prompt = list(rng.integers(0, n_vocab, n))
        a.eval(prompt)
        b.eval(prompt)
    tokens = list(rng.integers(0, n_vocab, 3))
    for step in range(4):
        got = decode_together(together, tokens)
        want = np.stack([b.eval([t]) for b, t in zip(alone, tokens)])
        assert np.array_equal(got, want), f"step {step}"
        tokens = [int(np.argmax(row)) for row in want]


def test_the_quantized_cache_changes_the_logits(model_path):
    """The cache types are not ignored: q4_0 moves the logits away from the f16 cache's."""
    path = model_path("qwen2-tiny-q4_k_m")
    logits = {}
    for types in (("f16", "f16"), ("q4_0", "q4_0")):
        with pyggml.load(path, n_ctx=64, backend="numba", type_k=types[0],
                         type_v=types[1]) as model:
            logits[types] = model.logits(model.tokenize(TEXT)[:16])
    assert np.abs(logits["f16", "f16"] - logits["q4_0", "q4_0"]).max() > 0.01


@pytest.mark.parametrize("argument,value", [("type_k", "q5_1"), ("type_v", "bf16"),
                                            ("type_k", 3), ("type_v", True), ("type_k", None)])
def test_unsupported_cache_types_are_refused_naming_the_argument(argument, value, model_path):
    with pytest.raises(UsageError, match=f"{argument} / --cache-type-{argument[-1]}: "
                                         f"unsupported kv cache type") as err:
        pyggml.load(model_path("qwen2-tiny-q4_k_m"), n_ctx=64, **{argument: value})
    assert err.value.argument == argument


@pytest.mark.parametrize("head_dim,type_k,type_v,sizes", [
    (64, "q8_0", "q8_0", (64, 64)), (128, "q4_0", "f16", (128, 0)), (192, "q8_0", "q8_0", (64, 64)),
    (256, "q8_0", "f16", (256, 0)), (96, "q8_0", "q8_0", (0, 0)), (128, "f16", "q8_0", (0, 64)),
    (64, "f16", "f16", (0, 0))])
def test_rotation_sizes_follow_llama_cpps_attn_rot(head_dim, type_k, type_v, sizes):
    """llama-kv-cache.cpp: K rotated (K quantized, head_dim % 64 == 0) in the largest power
    of two >= 64 dividing head_dim, V (V quantized, head_dim % 64 == 0) in 64."""
    from pyggml.model.arch import BlockSpec, Rope
    from pyggml.model.forward import rotation_sizes
    block = BlockSpec(n_embd=256, n_head=4, n_head_kv=2, head_dim=head_dim, n_ff=512,
                      rms_eps=1e-6, rope=Rope(0, head_dim, 1e4), qkv_bias=False, attn_scale=1.0,
                      type_k=type_k, type_v=type_v)
    assert rotation_sizes(block) == sizes


def test_cache_type_names_and_llama_cpp_ids():
    assert [kv_cache_type(v, "type_k", 64) for v in ("f16", "Q8_0", "q4_0", 1, 8, 2)] == \
        ["f16", "q8_0", "q4_0", "f16", "q8_0", "q4_0"]
    # llama.cpp refuses a quantized cache whose heads are not whole blocks of 32
    with pytest.raises(UsageError, match="type_v / --cache-type-v q8_0: .* 80 numbers"):
        kv_cache_type("q8_0", "type_v", 80)
    assert kv_cache_type("f16", "type_v", 80) == "f16"


@pytest.mark.parametrize("type_k,type_v,expected", [
    # n_ctx * n_layer * n_embd_gqa numbers each for K and V; the tiny qwen2 has 2 layers
    # and 2 kv heads of 64: 256 * 2 * 128 = 65,536 numbers per cache
    ("f16", "f16", 65536 * 2 * 2),                    # 2 bytes a number
    ("q8_0", "q8_0", 65536 // 32 * 34 * 2),           # 34 bytes a block of 32
    ("q4_0", "q4_0", 65536 // 32 * 18 * 2),           # 18 bytes a block of 32
    ("q8_0", "f16", 65536 // 32 * 34 + 65536 * 2),
])
def test_kv_memory_in_the_stats_block(type_k, type_v, expected, model_path):
    with pyggml.load(model_path("qwen2-tiny-q4_k_m"), n_ctx=N_CTX, backend="numba",
                     type_k=type_k, type_v=type_v) as model:
        assert model.kv_bytes == expected
        caches = [c for _, layer in model.layers for c in (layer.k_cache, layer.v_cache)]
        assert sum(c.nbytes for c in caches) == expected
        row = model.stats.report(model.device_report()).splitlines()[-1]
    assert row.split(":", 1)[1].strip() == (f"{expected / 2**20:,.2f} MiB (K {type_k}, "
                                            f"V {type_v}, {N_CTX} positions)")


def test_rotate_is_the_orthonormal_walsh_hadamard_product():
    """rotate(x, n) against the n x n matrix llama.cpp builds (ggml_gen_hadamard:
    Sylvester's recursion from 1/sqrt(n)), and its own inverse."""
    rng = np.random.default_rng(0)
    for n in (64, 128):
        h = np.array([[1.0]])
        while len(h) < n:
            h = np.block([[h, h], [h, -h]])
        h /= np.sqrt(n)
        x = rng.standard_normal((3, 2 * n)).astype(np.float32)
        y = rotate(x, n)
        expected = (x.astype(np.float64).reshape(-1, n) @ h.T).reshape(x.shape)
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(rotate(y, n), x, rtol=0, atol=1e-5)
        e0 = np.zeros((1, n), np.float32)
        e0[0, 0] = 1
        assert np.all(rotate(e0, n) == np.float32(1) / np.sqrt(np.float32(n)))


@pytest.mark.parametrize("type_k,type_v", [("q4_0", "q8_0"), ("q8_0", "q4_0")])
def test_portable_c_build_gives_the_native_logits_with_a_quantized_cache(type_k, type_v,
                                                                          model_path,
                                                                          portable_lib,
                                                                          monkeypatch):
    """The C library built without AVX2 or threads (the scalar products of the K rows, the
    scalar flash loop, quantize_row_q8_0's reference) computes what the native build
    computes, which the tests above hold equal to llama.cpp."""
    from pyggml.backends import cpu_c
    path = model_path("qwen2-tiny-q4_k_m")

    def prompt_and_steps():
        with pyggml.load(path, n_ctx=N_CTX, backend="c", type_k=type_k, type_v=type_v) as model:
            ids = model.tokenize(TEXT)[:40]
            rows = [model.logits(ids)] + [model.eval([token])[None] for token in ids[:3]]
            return np.concatenate(rows), cpu_c._state["features"]
    native, _ = prompt_and_steps()
    monkeypatch.setenv("PYGGML_CPU_LIB", str(portable_lib))
    monkeypatch.setattr(cpu_c, "_state", {})
    portable, features = prompt_and_steps()
    assert "AVX2" not in features
    np.testing.assert_array_equal(portable, native)

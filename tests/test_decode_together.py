"""Several sequences decoding in one step (runtime.decode_together, the server's batched
step): each sequence's logits bit-identical to its own one-token step.

ggml picks a product's kernel by the number of activation rows (kernels/ggml_order.c:
K-quants go to the tiled kernel from 8 rows, Q8_0/Q4_0/Q5_0 to tinyBLAS from 2, the
repacked Q4_K to gemm for rows 4 at a time), and each kernel sums in its own order.  So
n sequences' rows multiplied as one batch of n would not give each sequence the bits of
its own step; pyggml_matmul_rows_alone multiplies each row in the order of a product of
that row alone while reading the weights once for all.  The oracle is pyggml's own
one-sequence step, which the architecture tests hold bit-identical to llama.cpp.
"""
import numpy as np
import pytest

import make_model
from pyggml.backends import cpu_c
from pyggml.backends.cpu import CBlockDevice
from pyggml.errors import UsageError
from pyggml.format.shards import GGUFFile
from pyggml.runtime import Model, decode_together

N_SEQS = 9              # past 8: K-quant batches of 8 rows or more take ggml's tiled kernel


def matrices(names):
    """One weight matrix (a QMatrix) of each type in these fixture files' layers and heads."""
    found = {}
    for name in names:
        w = models_of_one_file(name, 1)[0].weights
        for layer in w.layers:
            for m in (layer.wq, layer.wk, layer.wv, layer.wo, layer.w_gate, layer.w_up,
                      layer.w_down, w.output):
                found.setdefault(m.ggml_type, m)
    return found


def test_rows_alone_products_equal_one_row_products():
    rng = np.random.default_rng(3)
    differs = []
    for ggml_type, m in matrices(["qwen2-896-q4_k_m", "qwen2-tiny-q8_0",
                                  "qwen2-tiny-iq4_xs"]).items():
        x = rng.standard_normal((N_SEQS, m.n_in), dtype=np.float32)
        xq = cpu_c.quantize_activations(x, cpu_c.vec_dot_type(ggml_type))

        def product(rows, rows_alone=False):
            out = np.empty((len(rows), m.n_out), np.float32)
            return cpu_c.matmul_q8(ggml_type, m.data, rows, out, rows_alone=rows_alone)
        alone = np.concatenate([product(xq[t:t + 1]) for t in range(N_SEQS)])
        assert np.array_equal(product(xq, rows_alone=True), alone), f"{m.name} ({ggml_type})"
        differs.append(not np.array_equal(product(xq), alone))
    assert len(differs) >= 5 and any(differs)   # batch kernels sum otherwise: this can fail


def models_of_one_file(name, n, n_ctx=128):
    f = GGUFFile(make_model.model_path(name))
    return [Model(f, n_ctx=n_ctx, backend="c") for _ in range(n)]


@pytest.mark.parametrize("name", ["qwen2-tiny-q4_k_m", "qwen2-896-q4_k_m", "qwen2-tiny-q8_0",
                                  "gemma3-q4_k_m", "phi3-q4_k_m"])
def test_decode_together_equals_each_sequence_alone(name, monkeypatch):
    together = models_of_one_file(name, N_SEQS)
    alone = models_of_one_file(name, N_SEQS)     # another mapping: they step on their own
    rng = np.random.default_rng(7)
    n_vocab = together[0].hparams.n_vocab
    # different lengths, some past gemma3's 32-position window
    prompts = [list(rng.integers(0, n_vocab, 1 + 5 * i)) for i in range(N_SEQS)]
    for a, b, prompt in zip(together, alone, prompts):
        a.eval(prompt)
        b.eval(prompt)
    batched_layers = []
    forward_rows = CBlockDevice.layer_forward_rows
    monkeypatch.setattr(CBlockDevice, "layer_forward_rows",
                        lambda self, layers, x, positions: batched_layers.append(len(layers))
                        or forward_rows(self, layers, x, positions))
    tokens = list(rng.integers(0, n_vocab, N_SEQS))
    for step in range(6):
        got = decode_together(together, tokens)
        want = np.stack([b.eval([t]) for b, t in zip(alone, tokens)])
        assert np.array_equal(got, want), f"step {step}"
        assert [m.tokens for m in together] == [m.tokens for m in alone]
        tokens = [int(np.argmax(row)) for row in want]
    n_layer = together[0].hparams.n_layer
    assert batched_layers == [N_SEQS] * (6 * n_layer)     # one call per layer, every sequence


def test_a_sequence_that_does_not_fit_is_refused_before_any_runs():
    models = models_of_one_file("qwen2-tiny-q4_k_m", 3, n_ctx=16)
    for m, n in zip(models, (4, 16, 7)):
        m.eval(list(range(1, n + 1)))
    before = [list(m.tokens) for m in models]
    with pytest.raises(UsageError, match="17 tokens do not fit in the context of 16"):
        decode_together(models, [5, 5, 5])
    assert [m.tokens for m in models] == before

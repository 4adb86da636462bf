"""The CPU as a place where layers run, and the contract every device follows.

A device owns, for each layer placed on it, the layer's weights (in its own memory),
the layer's kv cache, and the arithmetic of one transformer block.  The model moves
only the hidden state x (T, n_embd) float32 between devices:

    x = embed(tokens)                               CPU
    for each layer:  x = device.to_device(x) if it is elsewhere
                     x = device.layer_forward(layer, x, pos0)
    logits = head_device.head_forward(head, x, all_logits)   CPU or GPU

``HostDevice`` runs blocks with the CPU kernels: the numba backend through the numpy
code of pyggml.model.forward, the C backend in one call per block (kernels/layer.c);
its weights are the file's mmap views, so "uploading" copies nothing.  pyggml.backends.cuda.CudaDevice keeps the same methods on a GPU, and
pyggml.backends.simulated.SimulatedDevice stands in for it in tests.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..model.forward import project, rms_norm, rope_cache
from ..model.hparams import HParams
from ..model.weights import LayerWeights, QMatrix


@dataclasses.dataclass
class HostLayer:
    weights: LayerWeights
    k_cache: np.ndarray          # (n_ctx, n_head_kv, head_dim) fp16
    v_cache: np.ndarray
    native: object = None        # the C backend's description of this layer, made on first use


@dataclasses.dataclass
class HostHead:
    output_norm: np.ndarray      # (n_embd,)
    output: QMatrix              # (n_vocab, n_embd)


class HostDevice:
    name = "cpu"

    def __init__(self, kernels, hp: HParams):
        self.kernels = kernels
        self.hp = hp
        self._rope_key = None
        self._rope = None

    # -- placement: called once per layer at load time
    def upload_layer(self, weights: LayerWeights, n_ctx: int) -> HostLayer:
        shape = (n_ctx, self.hp.n_head_kv, self.hp.head_dim)
        return HostLayer(weights, np.zeros(shape, np.float16), np.zeros(shape, np.float16))

    def upload_head(self, output_norm: np.ndarray, output: QMatrix) -> HostHead:
        return HostHead(output_norm, output)

    # -- the hidden state crossing devices
    def to_device(self, x: np.ndarray):
        return x

    def to_host(self, x) -> np.ndarray:
        return x

    # -- arithmetic
    def _rope_for(self, pos0: int, n_tokens: int):
        """cos/sin of positions pos0..pos0+T-1, computed once per forward, shared by layers."""
        if self._rope_key != (pos0, n_tokens):
            self._rope = rope_cache(self.hp.n_rot, self.hp.rope_base,
                                    np.arange(pos0, pos0 + n_tokens))
            self._rope_key = (pos0, n_tokens)
        return self._rope

    def layer_forward(self, layer: HostLayer, x: np.ndarray, pos0: int) -> np.ndarray:
        cos, sin = self._rope_for(pos0, x.shape[0])
        return self.kernels.block_forward(self.hp, layer, x, pos0, cos, sin)

    def head_forward(self, head: HostHead, x: np.ndarray, all_logits: bool) -> np.ndarray:
        """logits (T, n_vocab) of the hidden states x (T, n_embd), or (1, n_vocab) of the last."""
        if not all_logits:
            x = x[-1:]
        x = rms_norm(x, head.output_norm, self.hp.rms_eps)
        return project(self.kernels, x, head.output)[0]

    def memory_report(self) -> dict[str, str]:
        return {}

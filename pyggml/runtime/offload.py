"""Which layers run where: llama.cpp's ``--n-gpu-layers`` semantics, as a plan you can print.

    n_gpu_layers = N   ->  the LAST N transformer layers go to the GPU
    N > n_layer or -1  ->  all layers, and the output head (norm + output matrix) too
    always             ->  the token embedding stays on the CPU (a row lookup per token)

Why the last layers: the embedding lookup is on the CPU anyway, so the hidden state
crosses the bus once on the way in and once on the way out, wherever the split is.
A tied output matrix (the same bytes as token_embd) is copied to the GPU with the head.

    layer:   0   1   2 ... n-N-1 | n-N ... n-1 | head
    device:  cpu cpu cpu     cpu | gpu     gpu | gpu if N > n_layer
"""
from __future__ import annotations

import dataclasses

from ..errors import UsageError
from ..model.hparams import HParams
from ..model.weights import ModelWeights


@dataclasses.dataclass(frozen=True)
class OffloadPlan:
    n_layer: int
    first_gpu_layer: int         # layers first_gpu_layer..n_layer-1 run on the GPU
    output_on_gpu: bool
    gpu_weight_bytes: int        # quantized weights uploaded (norms and biases included)
    gpu_kv_bytes: int            # kv cache of the GPU layers
    cpu_weight_bytes: int        # weights read from the file's map on the CPU
    cpu_kv_bytes: int

    @property
    def n_gpu_layers(self) -> int:
        return self.n_layer - self.first_gpu_layer

    def on_gpu(self, layer: int) -> bool:
        return layer >= self.first_gpu_layer

    @property
    def gpu_bytes(self) -> int:
        return self.gpu_weight_bytes + self.gpu_kv_bytes

    def describe(self) -> str:
        if not self.n_gpu_layers and not self.output_on_gpu:
            return "all layers on the CPU"
        mib = 1 << 20
        where = (f"layers {self.first_gpu_layer}..{self.n_layer - 1}" if self.n_gpu_layers
                 else "no layers") + (" + output" if self.output_on_gpu else "")
        return (f"{where} on the GPU ({self.gpu_weight_bytes / mib:,.0f} MiB weights + "
                f"{self.gpu_kv_bytes / mib:,.0f} MiB kv cache)")


def layer_weight_bytes(weights: ModelWeights, i: int) -> int:
    return sum(t.nbytes for t in weights.layers[i].tensors())


def gpu_split(n_layer: int, n_gpu_layers: int) -> tuple[int, bool]:
    """(the first layer on the GPU, whether the output head is there too)."""
    if n_gpu_layers < -1:
        raise UsageError(f"--n-gpu-layers must be -1 (all) or >= 0, got {n_gpu_layers}")
    n = n_layer + 1 if n_gpu_layers == -1 else min(n_gpu_layers, n_layer + 1)
    return max(n_layer - n, 0), n > n_layer


def host_tensors(names, n_layer: int, n_gpu_layers: int) -> list[str]:
    """Of a file's tensor names, those the CPU reads: all but the GPU layers' and head's."""
    first_gpu, output_on_gpu = gpu_split(n_layer, n_gpu_layers)
    gpu_prefixes = tuple(f"blk.{i}." for i in range(first_gpu, n_layer))
    return [name for name in names
            if not (gpu_prefixes and name.startswith(gpu_prefixes))
            and not (output_on_gpu and name.startswith("output"))]


def plan_offload(hp: HParams, weights: ModelWeights, n_gpu_layers: int, n_ctx: int,
                 kv_per_layer: int | None = None) -> OffloadPlan:
    """kv_per_layer: bytes of one layer's K and V caches (None: fp16, llama.cpp's default)."""
    first_gpu, output_on_gpu = gpu_split(hp.n_layer, n_gpu_layers)
    if kv_per_layer is None:
        kv_per_layer = 2 * n_ctx * hp.n_embd_gqa * 2       # K and V, fp16
    layer_bytes = [layer_weight_bytes(weights, i) for i in range(hp.n_layer)]
    head_bytes = weights.output.nbytes + weights.output_norm.nbytes
    gpu_weights = sum(layer_bytes[first_gpu:]) + (head_bytes if output_on_gpu else 0)
    cpu_head_bytes = 0 if output_on_gpu else head_bytes - (weights.output.nbytes if weights.tied else 0)
    cpu_weights = sum(layer_bytes[:first_gpu]) + weights.token_embd.nbytes + cpu_head_bytes
    return OffloadPlan(n_layer=hp.n_layer, first_gpu_layer=first_gpu, output_on_gpu=output_on_gpu,
                       gpu_weight_bytes=gpu_weights, gpu_kv_bytes=(hp.n_layer - first_gpu) * kv_per_layer,
                       cpu_weight_bytes=cpu_weights, cpu_kv_bytes=first_gpu * kv_per_layer)

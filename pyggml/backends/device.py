"""The Device interface: a place where layers of a model live and run.

A device owns, for each layer placed on it, the layer's weights (in its own memory),
the layer's kv cache, and the arithmetic of one transformer block, which it reads from
the layer's BlockSpec (pyggml/model/arch.py); a device that has not implemented one of
the block's optional steps yet refuses the layer at upload time, naming the field
(``check_steps``), and the head likewise (HeadSpec).  The model moves only the hidden
state x (T, n_embd) float32 between devices:

    x = host.embed(token_embd, tokens)                          the CPU
    for each layer:  x = device.to_device(host x) if the layer is elsewhere
                     x = device.layer_forward(layer, x, pos0)
    logits = head_device.head_forward(head, x, all_logits)      the CPU or the GPU

Implementations:
    CpuDevice       the CPU: model/forward.py's numpy block, products by a kernels
                    object (numba; or the GPU's arithmetic, for reference)   cpu.py
    CBlockDevice    the CPU with libpyggml_cpu: a block is one call of kernels/layer.c
                                                                             cpu.py
    CudaDevice      an NVIDIA GPU (libpyggml_cuda)                          cuda.py
    SimulatedDevice a GPU stand-in on the CPU, for tests                    simulated.py

What is shared by more than one device lives here too: the rope tables of a forward
(``RopeTables``), the bus counters (``Traffic``), the refusal of unported steps and the
out-of-memory error.
"""
from __future__ import annotations

import abc
import dataclasses

import numpy as np

from ..errors import BackendError
from ..model.arch import BlockSpec, HeadSpec, Rope
from ..model.forward import rope_cache, rope_cache_at
from ..model.weights import LayerWeights, QMatrix

MIB = 1 << 20


class Device(abc.ABC):
    """What the model asks of each device; ``layer`` and ``head`` are the device's own
    handles (returned by upload_layer / upload_head), and x a hidden state in the
    device's memory (to_device / to_host move it)."""
    name: str

    def embed(self, token_embd: QMatrix, tokens: np.ndarray):
        """The embedding rows of tokens (T,) int64 as a hidden state x (T, n_embd) on this
        device: exactly ggml's dequantize_row_<type> of each row.  The placement keeps the
        embedding on the CPU (llama.cpp's), so only CPU devices implement it."""
        raise BackendError(f"{self.name} does not hold the token embedding (it stays on the CPU)")

    def reserve(self, nbytes: int) -> None:
        """Refuse early, naming the bytes needed and free, when nbytes of weights and kv
        cache would not fit (called before any upload); the CPU checks nothing here."""

    @abc.abstractmethod
    def upload_layer(self, weights: LayerWeights, block: BlockSpec, n_ctx: int):
        """Place one layer here, once, at load time: its weights in this device's memory
        and an empty fp16 kv cache of n_ctx positions.  -> this device's handle of it."""

    @abc.abstractmethod
    def upload_head(self, output_norm: np.ndarray, output: QMatrix, head: HeadSpec):
        """Place the output head here (its norm and matrix).  -> this device's handle."""

    @abc.abstractmethod
    def layer_forward(self, layer, x, pos0: int):
        """One block over a batch: x (T, n_embd) at positions pos0 .. pos0 + T - 1 -> the
        block's output (T, n_embd), with K and V of those positions written into the layer's
        cache and attention over positions 0 .. pos0 + t.  x may be updated in place."""

    @abc.abstractmethod
    def head_forward(self, head, x, all_logits: bool) -> np.ndarray:
        """Logits on the host, float32: (T, n_vocab) of every row of x, or (1, n_vocab) of
        the last when not all_logits."""

    @abc.abstractmethod
    def to_device(self, x: np.ndarray):
        """A host hidden state (T, n_embd) float32 -> the same on this device."""

    @abc.abstractmethod
    def to_host(self, x) -> np.ndarray:
        """A hidden state of this device -> a host float32 array."""

    def memory_report(self) -> dict[str, str]:
        """Rows for the stats block (e.g. GPU memory after load and at peak)."""
        return {}


class RopeTables:
    """cos, sin of the positions of one forward (forward.rope_cache), computed once per
    rope and shared by the layers of that rope (gemma3's local and global layers alternate
    two: each is computed once, not at every switch); ``convert(cos, sin)`` makes the
    device's copy of the tables (an upload into one buffer), again when the rope changes
    from one layer to the next.  Called as tables(rope, pos0, n_tokens) for a run of
    positions, or tables.at(rope, positions) for rows at positions of their own (one token
    of each of several sequences)."""

    def __init__(self, convert=lambda cos, sin: (cos, sin)):
        self.convert = convert
        self._positions = None       # what the host tables in _host are of
        self._host = {}              # rope -> (cos, sin) on the host
        self._key = None
        self._tables = None

    def __call__(self, rope: Rope, pos0: int, n_tokens: int):
        return self._get(rope, ("run", pos0, n_tokens), lambda: rope_cache(rope, pos0, n_tokens))

    def at(self, rope: Rope, positions: tuple[int, ...]):
        return self._get(rope, ("rows", positions),
                         lambda: rope_cache_at(rope, np.asarray(positions)))

    def _get(self, rope: Rope, positions: tuple, compute):
        key = (rope, positions)
        if self._key != key:
            if self._positions != positions:
                self._positions, self._host = positions, {}
            if rope not in self._host:
                self._host[rope] = compute()
            self._tables = self.convert(*self._host[rope])
            self._key = key
        return self._tables


@dataclasses.dataclass
class Traffic:
    """Bytes that crossed between the CPU and a device, counted by the device."""
    to_device: int = 0           # hidden states in
    to_host: int = 0             # hidden states out
    logits: int = 0              # logits out, when the head runs on the device
    rope: int = 0                # rope tables in (cos and sin of a forward's positions)
    uploaded: int = 0            # weights at load time

    def reset(self) -> None:
        self.to_device = self.to_host = self.logits = self.rope = 0


def check_steps(device: str, block: BlockSpec, implemented: frozenset[str]) -> None:
    """Refuse a layer that takes an optional step this device has not implemented yet,
    naming the BlockSpec fields (rather than run a different model)."""
    missing = [step for name, step in block.steps().items() if name not in implemented]
    if missing:
        raise BackendError(f"{device} does not implement {', '.join(missing)} yet, which "
                           "this model's layers need; the numba backend runs every step "
                           "(backend='numba', --backend numba)")


def not_enough_memory(device: str, what: str, needed: int, free: int) -> BackendError:
    """The error for a device that cannot hold what the placement asks."""
    return BackendError(
        f"not enough memory on {device} for {what}: {needed:,} bytes needed "
        f"({needed / MIB:,.1f} MiB), {free:,} bytes free ({free / MIB:,.1f} MiB); "
        f"offload fewer layers (a smaller n_gpu_layers / --n-gpu-layers)")

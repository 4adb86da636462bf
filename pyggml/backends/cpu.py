"""The CPU as a device, and the kernels it multiplies with.

Kernels objects do products and element-wise ops, nothing else; running a block is the
device's job:

    CKernels        libpyggml_cpu's products (cpu_c.py), the thread count bound
    NumbaKernels    pyggml.quants' numba products (numba's own thread pool)
        both: .name ("c" / "numba"), .description (one line for stats), .n_threads, and
        vec_dot_type, quantize_activations, matmul_q8, matmul, dequantize_rows with
        pyggml.quants' signatures

    CpuDevice       runs a block as model/forward.py's numpy steps around the kernels'
                    products (the numba backend; with simulated.GPUArithmetic, the GPU's
                    arithmetic for reference)
    CBlockDevice    runs a block in one C call (kernels/layer.c, described by c_layer.py):
                    the default, where the library is built

The weights stay the file's mmap views, so "uploading" a layer copies nothing; each
layer gets its kv cache (n_ctx, n_head_kv, head_dim), fp16 or the quantized cache types
(forward.kv_cache), in host memory.

    cpu_device(backend=None, n_threads=None, blocks=()) -> the CPU device of a model:
        backend "c", "numba", or None for the fastest that works for these layers (C, else
        numba, saying in one line why not C)
"""
from __future__ import annotations

import dataclasses
import sys

import numpy as np

from ..errors import UsageError
from ..model.arch import ALL_STEPS, KV_CACHE_STEPS, BlockSpec, HeadSpec
from ..model.forward import head_forward, kv_cache, layer_forward
from ..model.weights import LayerWeights, QMatrix
from .device import Device, RopeTables, check_steps

BACKENDS = ("c", "numba")


# ----------------------------------------------------------------------------- kernels

class CKernels:
    """libpyggml_cpu's products, with the thread count bound."""
    name = "c"

    def __init__(self, n_threads: int | None):
        from . import cpu_c
        if n_threads is not None and n_threads < 1:
            raise UsageError(f"n_threads must be positive, got {n_threads}")
        cpu_c.load()                                  # BackendError if the library is unusable
        self._c = cpu_c
        self.n_threads = n_threads
        self.description = cpu_c.description()
        self.vec_dot_type = cpu_c.vec_dot_type
        self.quantize_activations = cpu_c.quantize_activations
        self.dequantize_rows = cpu_c.dequantize_rows

    def matmul_q8(self, ggml_type, W, xq, out, rows_alone: bool = False):
        return self._c.matmul_q8(ggml_type, W, xq, out, n_threads=self.n_threads,
                                 rows_alone=rows_alone)

    def matmul(self, ggml_type, W, X):
        return self._c.matmul(ggml_type, W, X, n_threads=self.n_threads)


class NumbaKernels:
    """pyggml.quants' numba products (numba's own thread pool, set to n_threads)."""
    name = "numba"

    def __init__(self, n_threads: int | None):
        import numba

        from .. import quants
        if n_threads is not None:
            if not 1 <= n_threads <= numba.config.NUMBA_NUM_THREADS:
                raise UsageError(f"n_threads must be 1..{numba.config.NUMBA_NUM_THREADS}, "
                                 f"got {n_threads}")
            numba.set_num_threads(n_threads)
        self.n_threads = numba.get_num_threads()
        self.description = f"numba (pyggml.quants), {self.n_threads} threads"
        self.vec_dot_type = quants.vec_dot_type
        self.quantize_activations = quants.quantize_activations
        self.matmul = quants.matmul
        self.dequantize_rows = quants.dequantize_rows


    @staticmethod
    def matmul_q8(ggml_type, W, xq, out, rows_alone: bool = False):
        from .. import quants
        if not rows_alone:
            return quants.matmul_q8(ggml_type, W, xq, out)
        for t in range(xq.shape[0]):                # ggml's kernel depends on T: one at a time
            quants.matmul_q8(ggml_type, W, xq[t:t + 1], out[t:t + 1])


def cpu_kernels(backend: str | None = None, n_threads: int | None = None):
    """The CPU kernels to run a model with: "c", "numba", or None for the fastest available."""
    if backend is None:
        from . import cpu_c
        backend = "c" if cpu_c.available() else "numba"   # available() tells once why not
    if backend == "c":
        return CKernels(n_threads)
    if backend == "numba":
        return NumbaKernels(n_threads)
    raise UsageError(f"unknown CPU backend {backend!r}; choose one of {', '.join(BACKENDS)}")


# ----------------------------------------------------------------------------- devices

@dataclasses.dataclass
class CpuLayer:
    weights: LayerWeights
    block: BlockSpec
    k_cache: np.ndarray          # (n_ctx, n_head_kv, head_dim) fp16, or blocks (forward.kv_cache)
    v_cache: np.ndarray
    native: object = None        # CBlockDevice: the layer's C description (c_layer.CBlock)


@dataclasses.dataclass
class CpuHead:
    output_norm: np.ndarray      # (n_embd,)
    output: QMatrix              # (n_vocab, n_embd)
    spec: HeadSpec


class CpuDevice(Device):
    """The CPU running model/forward.py's numpy block around a kernels object's products."""
    name = "cpu"
    steps = ALL_STEPS | frozenset(KV_CACHE_STEPS)    # the optional steps of a BlockSpec it
                                                     # runs: all of them

    def __init__(self, kernels):
        self.kernels = kernels
        self.rope = RopeTables()

    def embed(self, token_embd: QMatrix, tokens: np.ndarray) -> np.ndarray:
        return self.kernels.dequantize_rows(token_embd.ggml_type, token_embd.data, tokens,
                                            token_embd.n_in)

    # -- placement: called once per layer at load time
    def upload_layer(self, weights: LayerWeights, block: BlockSpec, n_ctx: int) -> CpuLayer:
        return self.prepare(CpuLayer(weights, block, *kv_cache(block, n_ctx)))

    def prepare(self, layer: CpuLayer) -> CpuLayer:
        """Make a layer (weights and kv cache in place) ready to run here."""
        return layer

    def upload_head(self, output_norm: np.ndarray, output: QMatrix, head: HeadSpec) -> CpuHead:
        return CpuHead(output_norm, output, head)

    # -- the hidden state crossing devices: it is already here
    def to_device(self, x: np.ndarray) -> np.ndarray:
        return x

    def to_host(self, x: np.ndarray) -> np.ndarray:
        return x

    # -- arithmetic
    def layer_forward(self, layer: CpuLayer, x: np.ndarray, pos0: int) -> np.ndarray:
        cos, sin = self.rope(layer.block.rope, pos0, x.shape[0])
        return self.block_forward(layer, x, pos0, cos, sin)

    def block_forward(self, layer: CpuLayer, x: np.ndarray, pos0: int, cos: np.ndarray,
                      sin: np.ndarray) -> np.ndarray:
        """layer_forward with the rope tables of its positions given."""
        return layer_forward(self.kernels, layer.block, layer.weights, x, pos0, layer.k_cache,
                             layer.v_cache, cos, sin)

    def head_forward(self, head: CpuHead, x: np.ndarray, all_logits: bool) -> np.ndarray:
        if not all_logits:
            x = x[-1:]
        return head_forward(self.kernels, head.spec, head.output_norm, head.output, x)


class CBlockDevice(CpuDevice):
    """The CPU with libpyggml_cpu: a block is one call of kernels/layer.c, which does the
    steps of model/forward.py without returning to Python between them.  The head is
    CpuDevice's (numpy around the C products)."""
    name = "the C block (kernels/layer.c)"
    steps = ALL_STEPS | frozenset(KV_CACHE_STEPS)    # every optional step: fields of
                                                     # pyggml_layer (c_layer.py)

    def __init__(self, kernels: CKernels):
        from .c_layer import Scratch
        super().__init__(kernels)
        self._scratch = Scratch()

    def prepare(self, layer: CpuLayer) -> CpuLayer:
        from .c_layer import CBlock
        check_steps(self.name, layer.block, self.steps)
        layer.native = CBlock(layer.block, layer.weights, layer.k_cache, layer.v_cache)
        return layer

    def block_forward(self, layer: CpuLayer, x: np.ndarray, pos0: int, cos: np.ndarray,
                      sin: np.ndarray) -> np.ndarray:
        return layer.native(x, pos0, cos, sin, self._scratch, self.kernels.n_threads)

    # -- several sequences, one token each (runtime.decode_together)
    def layer_forward_rows(self, layers: list[CpuLayer], x: np.ndarray,
                           positions: tuple[int, ...]) -> np.ndarray:
        """One layer over row i of x (n, n_embd) at positions[i] of the sequence whose kv
        cache is layers[i]'s (handles of one layer); each row's bits as layer_forward of
        that row alone, the weights read once for all."""
        from .c_layer import run_blocks
        cos, sin = self.rope.at(layers[0].block.rope, positions)
        return run_blocks([layer.native for layer in layers], list(positions), x, cos, sin,
                          self._scratch, self.kernels.n_threads)

    def head_forward_rows(self, head: CpuHead, x: np.ndarray) -> np.ndarray:
        """Logits (n, n_vocab) of each row as head_forward of that row alone."""
        return head_forward(self.kernels, head.spec, head.output_norm, head.output, x,
                            rows_alone=True)


def c_block_lacks(blocks: list[BlockSpec]) -> list[str]:
    """The optional steps of these layers that the C block does not implement yet."""
    return sorted({step for block in blocks for name, step in block.steps().items()
                   if name not in CBlockDevice.steps})


def cpu_device(backend: str | None = None, n_threads: int | None = None,
               blocks: list[BlockSpec] = ()) -> CpuDevice:
    """The CPU device of a model whose layers are blocks (see cpu_kernels for backend).
    By default the C block runs them where it implements their steps; where it does not
    yet, the numba backend does, and one line on stderr says why."""
    if backend is None:
        unported = c_block_lacks(blocks)
        if unported:
            print(f"pyggml: {CBlockDevice.name} does not implement {', '.join(unported)} yet; "
                  "using the numba backend", file=sys.stderr)
            backend = "numba"
    kernels = cpu_kernels(backend, n_threads)
    return CBlockDevice(kernels) if kernels.name == "c" else CpuDevice(kernels)

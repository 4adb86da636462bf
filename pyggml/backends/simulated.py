"""A GPU stand-in on the CPU, so that the offload logic is tested where there is no GPU.

``SimulatedDevice`` keeps CudaDevice's contract and its bookkeeping, with numpy
arrays as "device memory", and leaves the arithmetic to a CPU device it wraps:

    reserve(bytes)          refuses, naming bytes needed and free, like CudaDevice
    upload_layer / _head    COPIES weights into device memory of a fixed capacity; the
                            layer's kv cache is allocated there too; a layer with BlockSpec
                            steps the wrapped CPU device does not run is refused first
    to_device / to_host     wrap / unwrap the hidden state, counting the bytes that cross
                            (and the rope tables of each forward, as CudaDevice uploads them)
    layer_forward           refuses a hidden state or a layer that is not on this device,
                            then runs the block on the wrapped CPU device

Wrapping the model's own kind of CPU device (cpu.cpu_device()), a model split across
the CPU and this device gives bit-identical logits to the all-CPU model: any difference
is a bug in the boundary logic (a layer run twice or skipped, a kv cache in the wrong
place, a hidden state not handed over), which is what tests of the split path look for.

Wrapping ``CpuDevice(GPUArithmetic())`` instead, the device computes what the CUDA
kernels compute (no 8-bit activation rounding, float products of the exactly
dequantized weights), so it predicts a CudaDevice's logits to float32 rounding: the
reference the GPU checks compare against.  (Against the all-CPU model a GPU differs by
the CPU's activation rounding, a few percent of the logits' range on a 12-layer model:
each 8-bit rounding that flips compounds through the layers.)
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import BackendError
from ..ggml import GGMLType
from ..model.arch import BlockSpec, HeadSpec
from ..model.forward import kv_cache
from ..model.weights import LayerWeights, QMatrix
from .cpu import CpuDevice, CpuHead, CpuLayer
from .device import Device, RopeTables, Traffic, check_steps, not_enough_memory


class GPUArithmetic:
    """Kernels (forward.project's protocol) doing the CUDA kernels' arithmetic on the CPU:
    activations stay float32, weights are dequantized exactly, products are summed in
    float64 (pyggml.quants.matmul_exact) -- slow, for reference only."""
    description = "float64 products of exactly dequantized weights (the CUDA arithmetic)"

    def vec_dot_type(self, ggml_type) -> GGMLType:
        return GGMLType.F32

    def quantize_activations(self, x: np.ndarray, vec_dot_type) -> np.ndarray:
        return x

    def matmul_q8(self, ggml_type, W: np.ndarray, x: np.ndarray, out: np.ndarray,
                  rows_alone: bool = False) -> None:
        """(Every row is computed alone here: one kernel whatever T, so rows_alone changes
        nothing.)"""
        from .. import quants
        out[...] = quants.matmul_exact(ggml_type, W, x)


@dataclasses.dataclass
class SimulatedArray:
    """A hidden state that lives on a SimulatedDevice."""
    device: SimulatedDevice
    data: np.ndarray

    @property
    def shape(self) -> tuple:
        return self.data.shape


@dataclasses.dataclass
class SimulatedLayer(CpuLayer):
    device: SimulatedDevice | None = None


class SimulatedDevice(Device):
    name = "simulated GPU"

    def __init__(self, cpu: CpuDevice, capacity: int):
        self.cpu = cpu                       # does the arithmetic
        self.capacity = capacity             # bytes of "device memory"
        self.used = 0
        self.traffic = Traffic()
        self.rope = RopeTables(self._upload_tables)

    # ------------------------------------------------------------------ memory
    def reserve(self, nbytes: int) -> None:
        free = self.capacity - self.used
        if nbytes > free:
            raise not_enough_memory(self.name, "the offloaded layers", nbytes, free)

    def _allocate(self, a: np.ndarray) -> np.ndarray:
        """A device-memory copy of a (a fresh array, never a view of the file's map)."""
        if a.nbytes > self.capacity - self.used:
            raise not_enough_memory(self.name, "an upload", a.nbytes, self.capacity - self.used)
        self.used += a.nbytes
        return np.array(a, copy=True)

    def _upload(self, a: np.ndarray) -> np.ndarray:
        copy = self._allocate(a)
        self.traffic.uploaded += copy.nbytes
        return copy

    def _upload_matrix(self, m: QMatrix) -> QMatrix:
        return dataclasses.replace(m, data=self._upload(m.data))

    def _upload_tables(self, cos: np.ndarray, sin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.traffic.rope += cos.nbytes + sin.nbytes      # scratch, like CudaDevice's workspace
        return cos.copy(), sin.copy()

    # ------------------------------------------------------------------ placement
    def upload_layer(self, weights: LayerWeights, block: BlockSpec, n_ctx: int) -> SimulatedLayer:
        check_steps(self.cpu.name, block, self.cpu.steps)      # before anything is uploaded
        fields = {}
        for f in dataclasses.fields(weights):
            value = getattr(weights, f.name)
            fields[f.name] = (self._upload_matrix(value) if isinstance(value, QMatrix)
                              else None if value is None else self._upload(value))
        k_cache, v_cache = (self._allocate(cache) for cache in kv_cache(block, n_ctx))
        return self.cpu.prepare(SimulatedLayer(LayerWeights(**fields), block, k_cache, v_cache,
                                               device=self))

    def upload_head(self, output_norm: np.ndarray, output: QMatrix, head: HeadSpec) -> CpuHead:
        return CpuHead(self._upload(output_norm), self._upload_matrix(output), head)

    # ------------------------------------------------------------------ the bus
    def to_device(self, x: np.ndarray) -> SimulatedArray:
        if not isinstance(x, np.ndarray):
            raise BackendError(f"to_device expects a host array, got {type(x).__name__}")
        self.traffic.to_device += x.nbytes
        return SimulatedArray(self, np.array(x, dtype=np.float32, copy=True))

    def _own(self, x) -> np.ndarray:
        if not isinstance(x, SimulatedArray) or x.device is not self:
            raise BackendError(f"{self.name} was handed {type(x).__name__}, not a hidden state "
                               "on this device: a missing to_device()")
        return x.data

    def to_host(self, x: SimulatedArray) -> np.ndarray:
        data = self._own(x)
        self.traffic.to_host += data.nbytes
        return data.copy()

    # ------------------------------------------------------------------ arithmetic: the CPU's
    def layer_forward(self, layer: SimulatedLayer, x: SimulatedArray, pos0: int) -> SimulatedArray:
        if getattr(layer, "device", None) is not self:
            raise BackendError(f"{self.name} was asked to run a layer it does not hold")
        data = self._own(x)
        cos, sin = self.rope(layer.block.rope, pos0, data.shape[0])
        x.data = self.cpu.block_forward(layer, data, pos0, cos, sin)
        return x

    def head_forward(self, head: CpuHead, x: SimulatedArray, all_logits: bool) -> np.ndarray:
        logits = self.cpu.head_forward(head, self._own(x), all_logits)
        self.traffic.logits += logits.nbytes
        return logits

    def memory_report(self) -> dict[str, str]:
        return {"simulated GPU memory": f"{self.used:,} of {self.capacity:,} bytes used"}

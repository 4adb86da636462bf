"""Layers on an NVIDIA GPU: libpyggml_cuda (kernels/pyggml_cuda.cu) through cffi, ABI mode.

``CudaDevice`` is a Device (pyggml/backends/device.py).  At load time each offloaded
layer's weights are copied to the GPU once, in their quantized encoding, and the layer
gets an fp16 kv cache in GPU memory.  Per forward, only the hidden state crosses the bus,
and the rope tables of its positions (cos and sin, n_rot floats per token):

         CPU                                  GPU
    x = embed(tokens) ---- to_device ---->  x (T, n_embd) in the workspace
    rope tables       -------------------> cos, sin (T, n_rot/2)
                                            layer n-N ... layer n-1    (in place: x += ...)
    head on the CPU   <---- to_host ------  x                 (or the head runs here and
                                                               only the logits come back)

Every step of a block is one kernel of pyggml_cuda.cu, called in the order of
pyggml.model.forward.layer_forward and chosen by the layer's BlockSpec (biases, q/k
norms, rope mode, Q's pre-scale, attention scale and window, post-norms, SiLU or GeGLU:
no test of an architecture's name), and the head's soft-cap by its HeadSpec; the
products dequantize on the fly and accumulate in float32 (see the top of pyggml_cuda.cu
for why).  GeGLU looks GELU up in ggml's fp16 table, made once on the host
(numerics.gelu_table, the CPU's own) and uploaded once per device.

Without the library, the driver or a device, constructing CudaDevice raises
BackendError saying which is missing; a failing CUDA call raises BackendError
with CUDA's own error text.  GPU memory: reserve(bytes) refuses early, naming the
bytes needed and free; memory_report() gives the used and peak figures of
cudaMemGetInfo for the stats block.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .. import paths
from ..errors import BackendError, UnsupportedTypeError, UsageError
from ..ggml import type_name
from ..model.arch import ALL_STEPS, FFN_GELU, BlockSpec, HeadSpec
from ..model.hparams import HParams
from ..model.numerics import gelu_table
from ..model.weights import LayerWeights, QMatrix
from . import native
from .device import MIB, Device, RopeTables, Traffic, check_steps, not_enough_memory

ABI_VERSION = 3        # kernels/pyggml_cuda.cu's PYGGML_CUDA_ABI_VERSION
HEADER_NAME = "pyggml_cuda.h"

_state: dict = {}            # "ffi", "lib", "path"  or  "error"


# ----------------------------------------------------------------------------- the library

def library_path() -> Path:
    """$PYGGML_CUDA_LIB, else pyggml/lib/libpyggml_cuda.so."""
    return paths.library_path("pyggml_cuda", "PYGGML_CUDA_LIB")


def load():
    """(ffi, lib) of libpyggml_cuda; raises BackendError (remembered) if it cannot be loaded."""
    state = native.load_once(_state, _load)
    return state["ffi"], state["lib"]


def _load() -> None:
    path = library_path()
    ffi, lib = native.open_library(path, HEADER_NAME, "pyggml_cuda_abi_version", ABI_VERSION,
                                   "the CUDA kernels are not built (pip install -e . builds "
                                   "libpyggml_cuda when CMake finds a CUDA toolkit, i.e. nvcc)")
    _state.update(ffi=ffi, lib=lib, path=path)


# ----------------------------------------------------------------------------- device memory

class DeviceArray:
    """An array in GPU memory: a device pointer, a shape and a dtype.

    Owning arrays free their memory when garbage-collected; ``rows(a, b)`` gives a view
    of rows a..b-1 that keeps its owner alive.
    """

    def __init__(self, ptr, shape: tuple, dtype, owner: DeviceArray | None = None):
        self.ptr = ptr
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.owner = owner

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def rows(self, start: int, stop: int) -> DeviceArray:
        row_bytes = self.nbytes // self.shape[0]
        ffi = _state["ffi"]
        ptr = ffi.cast("char *", self.ptr) + start * row_bytes
        return DeviceArray(ptr, (stop - start, *self.shape[1:]), self.dtype, self.owner or self)


@dataclasses.dataclass
class CudaMatrix:
    """A quantized weight matrix resident on the GPU, rows in the file's encoding."""
    name: str
    ggml_type: int
    n_out: int
    n_in: int
    row_bytes: int
    data: DeviceArray            # uint8 (n_out, row_bytes)


@dataclasses.dataclass
class CudaLayer:
    weights: LayerWeights        # the same fields, holding CudaMatrix / DeviceArray
    block: BlockSpec
    k_cache: DeviceArray         # fp16 (n_ctx, n_head_kv * head_dim)
    v_cache: DeviceArray
    n_ctx: int


@dataclasses.dataclass
class CudaHead:
    output_norm: DeviceArray     # (n_embd,)
    output: CudaMatrix           # (n_vocab, n_embd)
    spec: HeadSpec


@dataclasses.dataclass
class Workspace:
    """Activations of one batch of up to n_tok tokens (reused by every layer)."""
    n_tok: int
    x: DeviceArray               # (T, n_embd)   the hidden state, updated in place
    h: DeviceArray               # (T, n_embd)   normed input of a product
    q: DeviceArray               # (T, n_embd_q)
    k: DeviceArray               # (T, n_embd_gqa)
    v: DeviceArray               # (T, n_embd_gqa)
    att: DeviceArray             # (T, n_embd_q)
    gate: DeviceArray            # (T, n_ff)
    up: DeviceArray              # (T, n_ff)
    cos: DeviceArray             # (T, n_rot / 2)  the rope tables of the batch's positions
    sin: DeviceArray             # (T, n_rot / 2)


def workspace_widths(hp: HParams) -> dict[str, int]:
    """Floats per token of each workspace buffer."""
    return dict(x=hp.n_embd, h=hp.n_embd, q=hp.n_embd_q, k=hp.n_embd_gqa, v=hp.n_embd_gqa,
                att=hp.n_embd_q, gate=hp.n_ff, up=hp.n_ff, cos=hp.n_rot // 2, sin=hp.n_rot // 2)


def workspace_bytes(hp: HParams, n_tok: int) -> int:
    return 4 * n_tok * sum(workspace_widths(hp).values())


# ----------------------------------------------------------------------------- the device

class CudaDevice(Device):
    """One CUDA GPU holding the last layers of a model; hp sizes the activations of one
    batch of up to max_batch tokens (the workspace)."""
    steps = ALL_STEPS            # every optional step of a BlockSpec

    def __init__(self, hp: HParams, max_batch: int, device: int = 0):
        self.hp = hp
        self.max_batch = max_batch
        try:
            self.ffi, self.lib = load()
        except BackendError as exc:
            raise BackendError(f"GPU layers were asked for, but {exc}; "
                               f"run with n_gpu_layers=0 to stay on the CPU") from None
        count = self.ffi.new("int *")
        if self.lib.pyggml_cuda_device_count(count) != 0:
            raise BackendError(f"GPU layers were asked for, but there is no usable CUDA device: "
                               f"{self._last_error()} (is the NVIDIA driver installed?); "
                               f"run with n_gpu_layers=0 to stay on the CPU")
        if not 0 <= device < count[0]:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            env = f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
            raise BackendError(f"GPU layers were asked for, but CUDA device {device} does not "
                               f"exist ({count[0]} visible{env}); run with n_gpu_layers=0 to "
                               f"stay on the CPU")
        name = self.ffi.new("char[256]")
        major, minor, n_sm = self.ffi.new("int *"), self.ffi.new("int *"), self.ffi.new("int *")
        self._check(self.lib.pyggml_cuda_set_device(device, name, 256, major, minor, n_sm),
                    f"opening CUDA device {device}")
        self.name = f"cuda:{device} {self.ffi.string(name).decode(errors='replace')}"
        self.compute_capability = (major[0], minor[0])
        self.n_sm = n_sm[0]
        self.traffic = Traffic()
        self.allocated = 0                    # bytes of live pyggml buffers
        self.peak_allocated = 0
        self.used_after_load = self.allocated_after_load = 0
        self.peak_used = 0
        self._workspace: Workspace | None = None
        self._logits: DeviceArray | None = None
        self._gelu_table: DeviceArray | None = None      # gelu_table(): with a GeGLU layer
        self.rope = RopeTables(self._upload_rope)
        self._note_memory()

    @staticmethod
    def _unsupported_shape(block: BlockSpec) -> str | None:
        if block.head_dim % 32 or block.head_dim > 256:
            return f"head_dim {block.head_dim} is not a multiple of 32 up to 256"
        if block.rope.n_rot != block.head_dim:
            return f"n_rot {block.rope.n_rot} is not head_dim {block.head_dim}"
        for name, n in (("n_embd", block.n_embd), ("n_ff", block.n_ff)):
            if n % 32:
                return f"{name} = {n} is not a multiple of 32"
        return None

    # ------------------------------------------------------------------ errors and memory
    def _last_error(self) -> str:
        return self.ffi.string(self.lib.pyggml_cuda_last_error()).decode(errors="replace")

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            where = getattr(self, "name", "CUDA")
            raise BackendError(f"{where}: {what} failed: {self._last_error()}")

    def _call(self, op: str, *args) -> None:
        """lib.pyggml_cuda_<op>(*args) with device arrays passed as pointers, None as NULL."""
        args = [a.ptr if isinstance(a, DeviceArray) else self.ffi.NULL if a is None else a
                for a in args]
        self._check(getattr(self.lib, "pyggml_cuda_" + op)(*args), op)

    def mem_info(self) -> tuple[int, int]:
        """(free, total) bytes of the device, from cudaMemGetInfo."""
        free, total = self.ffi.new("uint64_t *"), self.ffi.new("uint64_t *")
        self._check(self.lib.pyggml_cuda_mem_info(free, total), "cudaMemGetInfo")
        return free[0], total[0]

    def _note_memory(self) -> None:
        free, total = self.mem_info()
        self.peak_used = max(self.peak_used, total - free)
        self.peak_allocated = max(self.peak_allocated, self.allocated)

    def reserve(self, nbytes: int) -> None:
        """Refuse early if weights + kv cache (nbytes) + the activations of one batch of
        max_batch tokens cannot fit in free memory."""
        scratch = workspace_bytes(self.hp, self.max_batch)
        free, _ = self.mem_info()
        if nbytes + scratch > free:
            raise not_enough_memory(self.name, f"{nbytes:,} bytes of weights and kv cache and "
                                    f"{scratch:,} bytes of activations", nbytes + scratch, free)

    def empty(self, shape: tuple, dtype, what: str) -> DeviceArray:
        """A new uninitialized device array (freed with the object)."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        out = self.ffi.new("void **")
        if self.lib.pyggml_cuda_malloc(out, nbytes) != 0:
            raise BackendError(f"{self.name}: out of GPU memory for {what}: {self._last_error()}; "
                               f"offload fewer layers (a smaller n_gpu_layers / --n-gpu-layers)")
        self.allocated += nbytes
        self._note_memory()
        ptr = self.ffi.gc(out[0], lambda p: self._free(p, nbytes))
        return DeviceArray(ptr, shape, dtype)

    def _free(self, ptr, nbytes: int) -> None:
        self.lib.pyggml_cuda_free(ptr)       # at interpreter exit the context may be gone: ignore
        self.allocated -= nbytes

    def upload(self, a: np.ndarray, what: str) -> DeviceArray:
        """A device copy of a numpy array."""
        a = np.ascontiguousarray(a)
        dev = self.empty(a.shape, a.dtype, what)
        self._check(self.lib.pyggml_cuda_upload(dev.ptr, self.ffi.from_buffer(a), a.nbytes),
                    f"uploading {what}")
        return dev

    def download(self, dev: DeviceArray) -> np.ndarray:
        out = np.empty(dev.shape, dev.dtype)
        self._check(self.lib.pyggml_cuda_download(self.ffi.from_buffer(out, require_writable=True),
                                                  dev.ptr, out.nbytes), "downloading")
        return out

    # ------------------------------------------------------------------ placement (load time)
    def upload_matrix(self, m: QMatrix) -> CudaMatrix:
        row_bytes = self.lib.pyggml_cuda_row_bytes(m.ggml_type, m.n_in)
        if row_bytes < 0:
            raise UnsupportedTypeError(f"{m.name}: the CUDA kernels cannot multiply ggml type "
                                       f"{type_name(m.ggml_type)} rows of {m.n_in}")
        if m.data.shape != (m.n_out, row_bytes):
            raise BackendError(f"{m.name}: data shape {m.data.shape} is not "
                               f"({m.n_out}, {row_bytes})")
        data = self.upload(m.data, m.name)
        self.traffic.uploaded += data.nbytes
        return CudaMatrix(m.name, m.ggml_type, m.n_out, m.n_in, row_bytes, data)

    def _upload_vector(self, v: np.ndarray | None, what: str) -> DeviceArray | None:
        if v is None:
            return None
        dev = self.upload(np.asarray(v, dtype=np.float32), what)
        self.traffic.uploaded += dev.nbytes
        return dev

    def _loaded(self) -> None:
        """Called after each upload: the last one leaves the after-load figures."""
        free, total = self.mem_info()
        self.used_after_load, self.allocated_after_load = total - free, self.allocated

    def upload_layer(self, weights: LayerWeights, block: BlockSpec, n_ctx: int) -> CudaLayer:
        check_steps(self.name, block, self.steps)
        problem = self._unsupported_shape(block)
        if problem:
            raise BackendError(f"{self.name}: the CUDA kernels cannot run this model: {problem}")
        fields = {}
        for f in dataclasses.fields(weights):
            value = getattr(weights, f.name)
            fields[f.name] = (self.upload_matrix(value) if isinstance(value, QMatrix)
                              else self._upload_vector(value, f.name))
        if block.ffn_act == FFN_GELU:
            self.gelu_table()                           # uploaded at load time, once
        cache_shape = (n_ctx, block.n_embd_gqa)
        k_cache = self.empty(cache_shape, np.float16, "the K cache")
        v_cache = self.empty(cache_shape, np.float16, "the V cache")
        for cache in (k_cache, v_cache):
            self._check(self.lib.pyggml_cuda_memset(cache.ptr, 0, cache.nbytes),
                        "clearing the kv cache")
        self._loaded()
        return CudaLayer(LayerWeights(**fields), block, k_cache, v_cache, n_ctx)

    def upload_head(self, output_norm: np.ndarray, output: QMatrix, head: HeadSpec) -> CudaHead:
        handle = CudaHead(self._upload_vector(output_norm, "output_norm"),
                          self.upload_matrix(output), head)
        self._loaded()
        return handle

    # ------------------------------------------------------------------ the hidden state
    def _workspace_for(self, n_tok: int) -> Workspace:
        ws = self._workspace
        if ws is None or ws.n_tok < n_tok:
            self._workspace = None                      # free the old one first
            ws = Workspace(n_tok, **{name: self.empty((n_tok, width), np.float32,
                                                      f"activations ({name})")
                                     for name, width in workspace_widths(self.hp).items()})
            self._workspace = ws
        return ws

    def to_device(self, x: np.ndarray) -> DeviceArray:
        """x (T, n_embd) float32 -> the workspace's hidden state on the GPU."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        dev = self._workspace_for(x.shape[0]).x.rows(0, x.shape[0])
        self._check(self.lib.pyggml_cuda_upload(dev.ptr, self.ffi.from_buffer(x), x.nbytes),
                    "uploading the hidden state")
        self.traffic.to_device += x.nbytes
        return dev

    def to_host(self, x: DeviceArray) -> np.ndarray:
        out = self.download(x)
        self.traffic.to_host += out.nbytes
        return out

    def _upload_rope(self, cos: np.ndarray, sin: np.ndarray) -> tuple[DeviceArray, DeviceArray]:
        """The rope tables of a forward (T, n_rot/2) -> the workspace's copies."""
        ws = self._workspace_for(cos.shape[0])
        tables = []
        for table, dev in ((cos, ws.cos), (sin, ws.sin)):
            dev = dev.rows(0, table.shape[0])
            self._check(self.lib.pyggml_cuda_upload(dev.ptr, self.ffi.from_buffer(table),
                                                    table.nbytes), "uploading the rope tables")
            self.traffic.rope += table.nbytes
            tables.append(dev)
        return tuple(tables)

    # ------------------------------------------------------------------ one step each
    def matmul(self, w: CudaMatrix, x: DeviceArray, out: DeviceArray,
               bias: DeviceArray | None = None, accumulate: bool = False) -> None:
        """out (T, n_out) = [out +] W x (T, n_in) [+ bias]"""
        self._call("matmul", w.ggml_type, w.data, w.row_bytes, w.n_out, w.n_in, x, w.n_in,
                   x.shape[0], bias, out, w.n_out, int(accumulate))

    def rms_norm(self, x: DeviceArray, weight: DeviceArray | None, out: DeviceArray,
                 eps: float) -> None:
        self._call("rms_norm", x, weight, out, x.shape[0], x.shape[1], eps)

    def rope_rotate(self, x: DeviceArray, n_heads: int, head_dim: int, cos: DeviceArray,
                    sin: DeviceArray, mode: int) -> None:
        """Rotate x (T, n_heads * head_dim) in place by the tables cos, sin (T, head_dim/2),
        as forward.rope."""
        self._call("rope", x, x.shape[0], n_heads, head_dim, cos, sin, mode)

    def store_kv(self, layer: CudaLayer, k: DeviceArray, v: DeviceArray, pos0: int) -> None:
        self._call("store_kv", k, v, layer.k_cache, layer.v_cache, pos0, k.shape[0], k.shape[1])

    def attention(self, layer: CudaLayer, q: DeviceArray, out: DeviceArray, pos0: int) -> None:
        block = layer.block
        self._call("attention", q, layer.k_cache, layer.v_cache, out, pos0, q.shape[0],
                   block.n_head, block.n_head_kv, block.head_dim, block.attn_scale, block.window)

    def silu_mul(self, gate: DeviceArray, up: DeviceArray, out: DeviceArray) -> None:
        self._call("silu_mul", gate, up, out, gate.shape[0] * gate.shape[1])

    def gelu_table(self) -> DeviceArray:
        """ggml's fp16 GELU table on this device (numerics.gelu_table, uploaded once)."""
        if self._gelu_table is None:
            self._gelu_table = self.upload(gelu_table().view(np.uint16), "the GELU table")
        return self._gelu_table

    def gelu_mul(self, gate: DeviceArray, up: DeviceArray, out: DeviceArray) -> None:
        self._call("gelu_mul", gate, up, out, gate.shape[0] * gate.shape[1], self.gelu_table())

    def softcap(self, x: DeviceArray, cap: float) -> None:
        self._call("softcap", x, x.shape[0] * x.shape[1], cap)

    def scale(self, x: DeviceArray, s: float) -> None:
        self._call("scale", x, x.shape[0] * x.shape[1], s)

    def add(self, x: DeviceArray, y: DeviceArray) -> None:
        self._call("add", x, y, x.shape[0] * x.shape[1])

    def add_residual(self, x: DeviceArray, y: DeviceArray, post_norm: DeviceArray | None,
                     eps: float) -> None:
        """x += rms_norm(y) * post_norm (y normed in place), or y where there is none."""
        if post_norm is not None:
            self.rms_norm(y, post_norm, y, eps)
        self.add(x, y)

    def get_rows(self, w: CudaMatrix, rows: np.ndarray) -> np.ndarray:
        """Dequantized rows of a resident matrix -> float32 (len(rows), n_in) on the host."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        out = self.empty((len(rows), w.n_in), np.float32, "fetched rows")
        self._call("get_rows", w.ggml_type, w.data, w.row_bytes, w.n_out,
                   self.ffi.from_buffer("int64_t[]", rows), len(rows), w.n_in, out, w.n_in)
        return self.download(out)

    # ------------------------------------------------------------------ a block, as in forward.py
    def layer_forward(self, layer: CudaLayer, x: DeviceArray, pos0: int) -> DeviceArray:
        """One transformer block on the hidden state x (T, n_embd), in place. -> x"""
        n_tok = x.shape[0]
        if pos0 < 0 or pos0 + n_tok > layer.n_ctx:
            raise UsageError(f"positions {pos0}..{pos0 + n_tok - 1} do not fit in the kv cache "
                             f"of {layer.n_ctx}")
        cos, sin = self.rope(layer.block.rope, pos0, n_tok)
        ws = self._workspace_for(n_tok)
        self._attention_block(layer, x, pos0, cos, sin, ws)
        self._feed_forward_block(layer, x, ws)
        return x

    def _attention_block(self, layer: CudaLayer, x: DeviceArray, pos0: int, cos: DeviceArray,
                         sin: DeviceArray, ws: Workspace) -> None:
        """x += [post-norm] Wo attention(q, k, v), q = rope([norm] Wq h [+ bq]) [* q_scale],
        k = rope([norm] Wk h [+ bk]), v = Wv h [+ bv], h = rms_norm(x) * attn_norm"""
        w, block, n_tok = layer.weights, layer.block, x.shape[0]
        h, q, k, v, att = (a.rows(0, n_tok) for a in (ws.h, ws.q, ws.k, ws.v, ws.att))
        eps, d = block.rms_eps, block.head_dim
        self.rms_norm(x, w.attn_norm, h, eps)
        bq, bk, bv = (w.bq, w.bk, w.bv) if block.qkv_bias else (None, None, None)
        self.matmul(w.wq, h, q, bias=bq)
        self.matmul(w.wk, h, k, bias=bk)
        self.matmul(w.wv, h, v, bias=bv)
        if block.qk_norm:                               # each head a row of head_dim
            self._call("rms_norm", q, w.q_norm, q, n_tok * block.n_head, d, eps)
            self._call("rms_norm", k, w.k_norm, k, n_tok * block.n_head_kv, d, eps)
        self.rope_rotate(q, block.n_head, d, cos, sin, block.rope.mode)
        self.rope_rotate(k, block.n_head_kv, d, cos, sin, block.rope.mode)
        if block.q_scale != 1.0:
            self.scale(q, block.q_scale)
        self.store_kv(layer, k, v, pos0)                # the cache now holds 0 .. pos0 + T - 1
        self.attention(layer, q, att, pos0)
        if block.post_norms:
            self.matmul(w.wo, att, h)
            self.add_residual(x, h, w.attn_post_norm, eps)
        else:
            self.matmul(w.wo, att, x, accumulate=True)  # residual add fused into the product

    def _feed_forward_block(self, layer: CudaLayer, x: DeviceArray, ws: Workspace) -> None:
        """x += [post-norm] Wdown (act(Wgate h) * (Wup h)), h = rms_norm(x) * ffn_norm"""
        w, block, n_tok = layer.weights, layer.block, x.shape[0]
        h, gate, up = (a.rows(0, n_tok) for a in (ws.h, ws.gate, ws.up))
        self.rms_norm(x, w.ffn_norm, h, block.rms_eps)
        self.matmul(w.w_gate, h, gate)
        self.matmul(w.w_up, h, up)
        if block.ffn_act == FFN_GELU:
            self.gelu_mul(gate, up, gate)
        else:
            self.silu_mul(gate, up, gate)
        if block.post_norms:
            self.matmul(w.w_down, gate, h)
            self.add_residual(x, h, w.ffn_post_norm, block.rms_eps)
        else:
            self.matmul(w.w_down, gate, x, accumulate=True)

    def head_forward(self, head: CudaHead, x: DeviceArray, all_logits: bool) -> np.ndarray:
        """logits (T, n_vocab) of the hidden states x, or (1, n_vocab) of the last; to the host."""
        if not all_logits:
            x = x.rows(x.shape[0] - 1, x.shape[0])
        n_tok, n_vocab = x.shape[0], head.output.n_out
        if self._logits is None or self._logits.shape[0] < n_tok:
            self._logits = None
            self._logits = self.empty((n_tok, n_vocab), np.float32, "the logits")
        h = self._workspace_for(n_tok).h.rows(0, n_tok)
        logits = self._logits.rows(0, n_tok)
        self.rms_norm(x, head.output_norm, h, head.spec.rms_eps)
        self.matmul(head.output, h, logits)
        if head.spec.logit_softcap:
            self.softcap(logits, head.spec.logit_softcap)
        out = self.download(logits)
        self.traffic.logits += out.nbytes
        return out

    # ------------------------------------------------------------------ the stats block
    def memory_report(self) -> dict[str, str]:
        """GPU memory after load and at peak: device-wide (cudaMemGetInfo) and pyggml's buffers."""
        self._note_memory()
        _, total = self.mem_info()
        major, minor = self.compute_capability
        return {
            "GPU": f"{self.name} (compute {major}.{minor}, {total / MIB:,.0f} MiB)",
            "GPU memory after load": f"{self.used_after_load / MIB:,.0f} MiB used on the device, "
                                     f"{self.allocated_after_load / MIB:,.0f} MiB of it pyggml's",
            "GPU memory peak": f"{self.peak_used / MIB:,.0f} MiB used on the device, "
                               f"{self.peak_allocated / MIB:,.0f} MiB of it pyggml's",
        }

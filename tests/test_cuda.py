"""The CUDA backend: its sources and ABI (checked anywhere nvcc exists), its kernels and
whole models (checked on a machine with a CUDA device; skipped, saying why, elsewhere).

On a GPU, every kernel is compared with the CPU reference it stands for:
    get_rows       == pyggml.quants.dequantize, bit for bit, for every type
    matmul         float64 product of the dequantized weights, within float32 summation error
    rms_norm, rope, silu_mul, store_kv, attention (also windowed), scale, add, softcap
                   == pyggml.model.forward's numpy code
    gelu_mul       == numerics.gelu_mul, bit for bit (the same fp16 table)
and models split at n_gpu_layers 8 / -1 match the same split with the GPU's arithmetic done
on the CPU in float64 (tools/gpu_check.py explains the bounds; it also measures speed).
"""
import dataclasses
import gc
import os
import re
import shutil
import subprocess
from pathlib import Path

import gpu_check
import numpy as np
import pytest

from pyggml.backends import cuda, native
from pyggml.errors import BackendError
from pyggml.ggml import TYPE_TRAITS, GGMLType
from pyggml.model import forward, numerics
from pyggml.model.arch import ROPE_NEOX, ROPE_NORM, Rope
from pyggml.model.hparams import HParams
from pyggml.model.weights import QMatrix

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "kernels" / "pyggml_cuda.cu"
HEADER = ROOT / "kernels" / cuda.HEADER_NAME


def abi_functions() -> set[str]:
    return set(re.findall(r"\b(pyggml_cuda_\w+)\s*\(", native.read_cdef(HEADER)))


def find_nvcc() -> str | None:
    return shutil.which("nvcc") or next(
        (str(p) for p in (Path("/usr/local/cuda/bin/nvcc"),) if p.exists()), None)


# ----------------------------------------------------------------------------- without a GPU

def test_header_cdef_is_plain_c_that_cffi_reads():
    import cffi
    text = native.read_cdef(HEADER)
    assert "#" not in text and "cuda_runtime" not in text
    cffi.FFI().cdef(text)
    assert len(abi_functions()) >= 18


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """kernels/pyggml_cuda.cu built for sm_90 (H100/H200) into a shared library as CMake
    builds it (hidden visibility, static cudart), with ptxas's report."""
    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA sources cannot be compiled here")
    obj = tmp_path_factory.mktemp("cuda") / "libpyggml_cuda.so"
    cmd = [nvcc, "-arch=sm_90", "-O3", "-std=c++17", "-Werror", "all-warnings", "-Xptxas", "-v",
           "-Xcompiler", "-Wall,-Wextra,-fPIC,-fvisibility=hidden", "-cudart", "static", "-shared",
           "-I", str(SOURCE.parent), str(SOURCE), "-o", str(obj)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}{result.stderr}"
    return obj, result.stderr


def test_sources_compile_for_sm90_without_warnings(compiled):
    """The build (-Werror all-warnings: a warning of nvcc or of the host compiler fails it)
    made a shared object, ptxas compiled every __global__ function of the source for
    sm_90, and its report warns of nothing."""
    obj, report = compiled
    assert obj.read_bytes()[:4] == b"\x7fELF"
    entries = re.findall(r"Compiling entry function '(\w+)' for '(sm_\d+)'", report)
    assert {arch for _, arch in entries} == {"sm_90"}
    kernels = set(re.findall(r"__global__\s+void\s+(\w+)", SOURCE.read_text()))
    assert kernels and all(any(entry.startswith(f"_Z{len(name)}{name}") for entry, _ in entries)
                           for name in kernels), (kernels, entries)
    assert "warning" not in report.lower()


def test_object_exports_exactly_the_abi(compiled):
    """Every function of the header is defined with C linkage, and nothing else is exported."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) not found")
    obj, _ = compiled
    out = subprocess.run([nm, "-D", "--defined-only", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if " T " in line}
    assert exported == abi_functions()


def test_product_kernels_keep_decoded_blocks_in_registers(compiled):
    """A decoded chunk indexed at run time would go to local memory (a stack frame): slow."""
    _, report = compiled
    frames = re.findall(
        r"Function properties for (_Z\d+matmul_kernel\w+)\n\s*(\d+) bytes stack frame", report)
    assert len(frames) == len(TYPES)               # one instance per supported type
    assert all(int(size) == 0 for _, size in frames), frames


# fp16 fields (byte offsets in a block) that random bytes must not fill with inf/NaN
FP16_FIELDS = {GGMLType.Q4_0: [0], GGMLType.Q4_1: [0, 2], GGMLType.Q5_0: [0],
               GGMLType.Q5_1: [0, 2], GGMLType.Q8_0: [0], GGMLType.IQ4_NL: [0],
               GGMLType.Q2_K: [80, 82], GGMLType.Q3_K: [108], GGMLType.Q4_K: [0, 2],
               GGMLType.Q5_K: [0, 2], GGMLType.Q6_K: [208], GGMLType.IQ2_XXS: [0],
               GGMLType.IQ2_XS: [0], GGMLType.IQ2_S: [0], GGMLType.IQ1_S: [0],
               GGMLType.IQ1_M: [],     # IQ1_M: d is in the scales' top nibbles (random_rows)
               GGMLType.IQ3_XXS: [0], GGMLType.IQ3_S: [0], GGMLType.IQ4_XS: [0],
               GGMLType.TQ1_0: [52], GGMLType.TQ2_0: [64], GGMLType.Q1_0: [0], GGMLType.Q2_0: [0],
               GGMLType.MXFP4: [], GGMLType.NVFP4: []}   # their E8M0 / UE4M3 scales: any byte
TYPES = [GGMLType.F32, GGMLType.F16, GGMLType.BF16, *FP16_FIELDS]


def random_rows(ggml_type: GGMLType, n_rows: int, k: int, seed: int) -> np.ndarray:
    """uint8 (n_rows, row_bytes): random quants, scales of a sane size (every bit pattern of
    the packed fields is a valid block)."""
    rng = np.random.default_rng(seed)
    if ggml_type == GGMLType.F32:
        return rng.standard_normal((n_rows, k), dtype=np.float32).view(np.uint8)
    if ggml_type == GGMLType.F16:
        return rng.standard_normal((n_rows, k)).astype(np.float16).view(np.uint8)
    if ggml_type == GGMLType.BF16:
        f32 = rng.standard_normal((n_rows, k), dtype=np.float32)
        return (f32.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    block_size, type_size = TYPE_TRAITS[ggml_type]
    blocks = rng.integers(0, 256, (n_rows, k // block_size, type_size), dtype=np.uint8)
    for offset in FP16_FIELDS[ggml_type]:
        scale = rng.uniform(-0.02, 0.02, blocks.shape[:2]).astype(np.float16)
        blocks[:, :, offset:offset + 2] = scale.view(np.uint8).reshape(*blocks.shape[:2], 2)
    if ggml_type == GGMLType.IQ1_M:          # d's exponent below 31 (finite): its bit 14
        blocks[:, :, 55] &= 0xBF
    return blocks.reshape(n_rows, -1)


def dequantized(ggml_type, rows: np.ndarray, k: int) -> np.ndarray:
    from pyggml import quants
    return quants.dequantize(int(ggml_type), rows, (rows.shape[0], k))


# The decoders (dequantize_<type>) are __host__ __device__: this program runs them on the CPU.
HOST_DECODER = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "pyggml_cuda.cu"

template <int TYPE>
static void decode_row(const uint8_t *row, int64_t k, float *out) {
    for (int64_t c = 0; c < k / CHUNK; c++) Type<TYPE>::dequantize_chunk(row, c, out + c * CHUNK);
}

#define CASE(T) case T: decode_row<T>(row, k, out.data()); break;

/* decode TYPE K N_ROWS: N_ROWS rows of TYPE on stdin -> N_ROWS x K float32 on stdout */
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    const int type = atoi(argv[1]);
    const int64_t k = atoll(argv[2]), n_rows = atoll(argv[3]);
    const int64_t row_bytes = pyggml_cuda_row_bytes(type, k);
    if (row_bytes < 0) return 3;
    std::vector<uint8_t> rows(n_rows * row_bytes);
    std::vector<float> out(k);
    if (fread(rows.data(), 1, rows.size(), stdin) != rows.size()) return 4;
    for (int64_t r = 0; r < n_rows; r++) {
        const uint8_t *row = rows.data() + r * row_bytes;
        switch (type) {
            CASE(GGML_TYPE_F32) CASE(GGML_TYPE_F16) CASE(GGML_TYPE_BF16) CASE(GGML_TYPE_Q4_0)
            CASE(GGML_TYPE_Q4_1) CASE(GGML_TYPE_Q5_0) CASE(GGML_TYPE_Q5_1) CASE(GGML_TYPE_Q8_0)
            CASE(GGML_TYPE_IQ4_NL) CASE(GGML_TYPE_Q2_K) CASE(GGML_TYPE_Q3_K) CASE(GGML_TYPE_Q4_K)
            CASE(GGML_TYPE_Q5_K) CASE(GGML_TYPE_Q6_K) CASE(GGML_TYPE_IQ2_XXS)
            CASE(GGML_TYPE_IQ2_XS) CASE(GGML_TYPE_IQ2_S) CASE(GGML_TYPE_IQ1_S) CASE(GGML_TYPE_IQ1_M)
            CASE(GGML_TYPE_IQ3_XXS) CASE(GGML_TYPE_IQ3_S) CASE(GGML_TYPE_IQ4_XS)
            CASE(GGML_TYPE_TQ1_0) CASE(GGML_TYPE_TQ2_0) CASE(GGML_TYPE_MXFP4) CASE(GGML_TYPE_NVFP4)
            CASE(GGML_TYPE_Q1_0) CASE(GGML_TYPE_Q2_0)
            default: return 5;
        }
        fwrite(out.data(), sizeof(float), k, stdout);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def host_decoder(tmp_path_factory):
    """The CUDA decoders compiled into a CPU program (no GPU needed)."""
    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA sources cannot be compiled here")
    folder = tmp_path_factory.mktemp("decoder")
    (folder / "decode.cu").write_text(HOST_DECODER)
    cmd = [nvcc, "-arch=sm_90", "-std=c++17", "-Werror", "all-warnings", "-Xcompiler",
           "-ffp-contract=off,-Wall,-Wextra,-Werror", "-I",
           str(SOURCE.parent), str(folder / "decode.cu"), "-o", str(folder / "decode")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}{result.stderr}"
    return folder / "decode"



@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
def test_cuda_decoders_equal_the_cpu_dequantization_exactly(host_decoder, ggml_type):
    """Every type's dequantize_<type>, run on the CPU, is bit-exact with pyggml.quants."""
    k, n_rows = 256 * 3, 9
    raw = random_rows(ggml_type, n_rows, k, seed=100 + int(ggml_type))
    result = subprocess.run([str(host_decoder), str(int(ggml_type)), str(k), str(n_rows)],
                            input=raw.tobytes(), capture_output=True, check=True)
    decoded = np.frombuffer(result.stdout, np.float32).reshape(n_rows, k)
    np.testing.assert_array_equal(decoded, dequantized(ggml_type, raw, k))
# ----------------------------------------------------------------------------- CudaDevice, no GPU

class NumpyCudaLib:
    """libpyggml_cuda's ABI (kernels/pyggml_cuda.h) in numpy, on host memory.

    It implements the header's contract with pyggml's CPU reference code, in the order
    of pyggml.model.forward, so CudaDevice running on it must reproduce a SimulatedDevice
    with GPUArithmetic bit for bit: this checks the Python side (which buffers, strides,
    positions, flags and scales it passes) where there is no GPU.  Fresh allocations are
    filled with 0xFF bytes (NaN floats), so reading memory nobody wrote shows up."""

    def __init__(self, ffi, total_bytes: int):
        self.ffi, self.total, self.used = ffi, total_bytes, 0
        self.buffers = {}                 # address -> (the cdata keeping it alive, nbytes)
        self.error = ffi.new("char[]", b"")

    def _fail(self, message: str) -> int:
        self.error = self.ffi.new("char[]", message.encode())
        return -1

    def _view(self, ptr, rows: int, cols: int, dtype, stride: int | None = None) -> np.ndarray:
        """(rows, cols) of dtype at device address ptr, `stride` elements between rows."""
        dtype, stride = np.dtype(dtype), cols if stride is None else stride
        span = ((rows - 1) * stride + cols) * dtype.itemsize if rows else 0
        flat = np.frombuffer(self.ffi.buffer(self.ffi.cast("char *", ptr), span), dtype)
        return np.lib.stride_tricks.as_strided(flat, (rows, cols),
                                               (stride * dtype.itemsize, dtype.itemsize))

    def pyggml_cuda_abi_version(self):
        return cuda.ABI_VERSION

    def pyggml_cuda_last_error(self):
        return self.error

    def pyggml_cuda_device_count(self, count):
        count[0] = 1
        return 0

    def pyggml_cuda_set_device(self, device, name, name_size, major, minor, n_sm):
        self.ffi.memmove(name, b"numpy stand-in\0", 15)
        major[0], minor[0], n_sm[0] = 9, 0, 1
        return 0

    def pyggml_cuda_mem_info(self, free, total):
        free[0], total[0] = self.total - self.used, self.total
        return 0

    def pyggml_cuda_malloc(self, out, nbytes):
        if self.used + nbytes > self.total:
            return self._fail(f"cudaMalloc of {nbytes} bytes ({self.total - self.used} bytes free "
                              f"of {self.total}): out of memory (cudaErrorMemoryAllocation)")
        buf = self.ffi.new("char[]", max(nbytes, 1))
        self.ffi.memmove(buf, b"\xff" * nbytes, nbytes)
        out[0] = self.ffi.cast("void *", buf)
        self.buffers[int(self.ffi.cast("uintptr_t", out[0]))] = (buf, nbytes)
        self.used += nbytes
        return 0

    def pyggml_cuda_free(self, ptr):
        self.used -= self.buffers.pop(int(self.ffi.cast("uintptr_t", ptr)))[1]
        return 0

    def pyggml_cuda_memset(self, ptr, value, nbytes):
        self.ffi.memmove(ptr, bytes([value]) * nbytes, nbytes)
        return 0

    def pyggml_cuda_upload(self, dst, src, nbytes):
        self.ffi.memmove(dst, src, nbytes)
        return 0

    pyggml_cuda_download = pyggml_cuda_upload

    def pyggml_cuda_row_bytes(self, ggml_type, k):
        if ggml_type not in {int(t) for t in TYPES} or k % 32:
            return -1
        block_size, type_size = TYPE_TRAITS[GGMLType(ggml_type)]
        return k // block_size * type_size

    def pyggml_cuda_matmul(self, ggml_type, w, w_stride, n_rows, k, x, ldx, n_tok, bias, out, ldo,
                           accumulate):
        from pyggml import quants
        row_bytes = self.pyggml_cuda_row_bytes(ggml_type, k)
        W = np.ascontiguousarray(self._view(w, n_rows, row_bytes, np.uint8, w_stride))
        result = quants.matmul_exact(ggml_type, W, self._view(x, n_tok, k, np.float32, ldx))
        if bias != self.ffi.NULL:
            result += self._view(bias, 1, n_rows, np.float32)
        o = self._view(out, n_tok, n_rows, np.float32, ldo)
        o[...] = o + result if accumulate else result
        return 0

    def pyggml_cuda_get_rows(self, ggml_type, w, w_stride, n_w_rows, rows, n_rows, k, out, ldo):
        from pyggml import quants
        ids = np.frombuffer(self.ffi.buffer(rows, 8 * n_rows), np.int64)
        row_bytes = self.pyggml_cuda_row_bytes(ggml_type, k)
        W = np.ascontiguousarray(self._view(w, n_w_rows, row_bytes, np.uint8, w_stride))
        self._view(out, n_rows, k, np.float32, ldo)[...] = quants.dequantize_rows(
            ggml_type, W, ids, k)
        return 0

    def pyggml_cuda_rms_norm(self, x, weight, y, n_rows, n, eps):
        w = np.float32(1) if weight == self.ffi.NULL else self._view(weight, 1, n, np.float32)[0]
        self._view(y, n_rows, n, np.float32)[...] = forward.rms_norm(
            self._view(x, n_rows, n, np.float32).copy(), w, eps)
        return 0

    def pyggml_cuda_rope(self, x, n_tok, n_heads, head_dim, cos, sin, mode):
        v = self._view(x, n_tok, n_heads * head_dim, np.float32)
        cos, sin = (self._view(t, n_tok, head_dim // 2, np.float32) for t in (cos, sin))
        v[...] = forward.rope(v.reshape(n_tok, n_heads, head_dim).copy(), cos, sin,
                              mode).reshape(n_tok, -1)
        return 0

    def pyggml_cuda_store_kv(self, k, v, k_cache, v_cache, pos0, n_tok, width):
        for src, cache in ((k, k_cache), (v, v_cache)):
            rows = self._view(cache, pos0 + n_tok, width, np.float16)[pos0:]
            rows[...] = self._view(src, n_tok, width, np.float32)
        return 0

    def pyggml_cuda_attention(self, q, k_cache, v_cache, out, pos0, n_tok, n_head, n_head_kv,
                              head_dim, scale, window):
        n_kv, shape = pos0 + n_tok, (pos0 + n_tok, n_head_kv, head_dim)
        keys = self._view(k_cache, n_kv, n_head_kv * head_dim, np.float16).reshape(shape)
        values = self._view(v_cache, n_kv, n_head_kv * head_dim, np.float16).reshape(shape)
        queries = self._view(q, n_tok, n_head * head_dim, np.float32).reshape(
            n_tok, n_head, head_dim)
        self._view(out, n_tok, n_head * head_dim, np.float32)[...] = forward.attention(
            queries, keys, values, pos0, scale, window)
        return 0

    def pyggml_cuda_silu_mul(self, gate, up, out, n):
        g, u = self._view(gate, 1, n, np.float32).copy(), self._view(up, 1, n, np.float32)
        self._view(out, 1, n, np.float32)[...] = forward.silu_mul(g, u)
        return 0

    def pyggml_cuda_gelu_mul(self, gate, up, out, n, table):
        # the device table must be numerics' (the CPU's): uploaded by CudaDevice, read here
        np.testing.assert_array_equal(self._view(table, 1, 1 << 16, np.uint16)[0],
                                      numerics.gelu_table().view(np.uint16))
        g, u = self._view(gate, 1, n, np.float32).copy(), self._view(up, 1, n, np.float32)
        self._view(out, 1, n, np.float32)[...] = numerics.gelu_mul(g, u)
        return 0

    def pyggml_cuda_scale(self, x, n, s):
        v = self._view(x, 1, n, np.float32)
        v *= np.float32(s)
        return 0

    def pyggml_cuda_add(self, x, y, n):
        v = self._view(x, 1, n, np.float32)
        v += self._view(y, 1, n, np.float32)
        return 0

    def pyggml_cuda_softcap(self, x, n, cap):
        v = self._view(x, 1, n, np.float32)
        v[...] = forward.softcap(v.copy(), cap)
        return 0


@pytest.fixture
def numpy_cuda(monkeypatch):
    """Make pyggml.backends.cuda load the numpy stand-in (1 GiB of 'device memory')."""
    import cffi
    ffi = cffi.FFI()
    ffi.cdef(native.read_cdef(HEADER))
    lib = NumpyCudaLib(ffi, 1 << 30)
    monkeypatch.setattr(cuda, "_state", {"ffi": ffi, "lib": lib, "path": Path("numpy stand-in")})
    return lib


def float_reference(path, n_gpu_layers):
    """The same placement, the offloaded part done by a SimulatedDevice with GPUArithmetic."""
    return gpu_check.load(path, n_gpu_layers, "simulated")


# NEOX + biases, NORM; and every optional step of a BlockSpec: q/k norms and n_embd_q
# (qwen3), post-norms, GeGLU, Q's pre-scale, a sliding window and local rope (gemma3),
# a soft-capped head (gemma3-softcap), fused tensors' row views and LongRoPE (phi3)
@pytest.mark.parametrize("name", ["qwen2-tiny-q4_k_m", "smollm2-q4_1", "qwen3-q4_k_m",
                                  "gemma3-q4_k_m", "gemma3-softcap-q4_k_m", "phi3-q4_k_m"])
def test_cuda_device_on_a_numpy_stand_in_reproduces_the_float_reference(numpy_cuda, model_path,
                                                                          name):
    path = model_path(name)
    ids = None
    for n_gpu_layers in (1, -1):
        model = gpu_check.load(path, n_gpu_layers, "cuda")
        assert isinstance(model.gpu, cuda.CudaDevice)
        ids = ids or model.tokenize(gpu_check.PROMPT * 2)[:40]    # past gemma3's window of 32
        reference = float_reference(path, n_gpu_layers)
        np.testing.assert_array_equal(model.logits(ids), reference.logits(ids))
        for token in ids[:2]:                                          # decode steps after it
            np.testing.assert_array_equal(model.eval([token]), reference.eval([token]))
        hp, device = model.hparams, model.gpu
        assert device.traffic.uploaded == model.plan.gpu_weight_bytes
        device.traffic.reset()
        model.eval([ids[2]])
        hidden = hp.n_embd * 4
        assert device.traffic.to_device == hidden
        assert (device.traffic.to_host, device.traffic.logits) == (
            (0, hp.n_vocab * 4) if n_gpu_layers == -1 else (hidden, 0))
        assert device.allocated_after_load >= model.plan.gpu_bytes
        assert device.peak_allocated >= device.allocated_after_load
        on_device, in_file = model.layers[-1][1].weights.w_down, model.weights.layers[-1].w_down
        rows = np.array([3, 0, 3])
        expected = dequantized(in_file.ggml_type, in_file.data, in_file.n_in)[rows]
        np.testing.assert_array_equal(device.get_rows(on_device, rows), expected)
        report = device.memory_report()
        assert report["GPU"].startswith("cuda:0 numpy stand-in (compute 9.0")
        del model, device, reference, on_device
        gc.collect()
    assert numpy_cuda.used == 0                                         # every buffer freed


def test_cuda_device_reserve_and_allocation_failures_name_bytes(numpy_cuda, model_path):
    import pyggml
    from pyggml.runtime import Model
    path = model_path("qwen2-tiny-q4_k_m")
    numpy_cuda.total = 1 << 20                                          # 1 MiB "GPU"
    with pytest.raises(BackendError) as err:
        Model(pyggml.open(path), n_ctx=gpu_check.N_CTX, n_gpu_layers=-1)
    message = str(err.value)
    assert re.search(r"not enough memory on cuda:0 numpy stand-in for .*: ([\d,]+) bytes needed "
                     r"\(.*\), ([\d,]+) bytes free", message), message
    assert "n_gpu_layers" in message
    hp = HParams.from_metadata(pyggml.open(path).metadata)
    device = cuda.CudaDevice(hp, max_batch=512)
    with pytest.raises(BackendError, match=r"out of GPU memory for too much: cudaMalloc of "
                                           r"2097152 bytes \(\d+ bytes free of 1048576\)"):
        device.empty((1 << 21,), np.uint8, "too much")


def test_cuda_device_refuses_a_step_it_lacks_by_name(numpy_cuda, model_path, monkeypatch):
    """CudaDevice runs every optional step; were one missing (qk_norm taken away here), a
    layer that takes it is refused at upload, naming the field, before anything is
    allocated."""
    import pyggml
    from pyggml.runtime import Model
    monkeypatch.setattr(cuda.CudaDevice, "steps", cuda.CudaDevice.steps - {"qk_norm"})
    with pytest.raises(BackendError, match=re.escape("qk_norm=True")):
        Model(pyggml.open(model_path("qwen3-q4_k_m")), n_ctx=gpu_check.N_CTX, n_gpu_layers=1)
    assert numpy_cuda.used == 0


# ----------------------------------------------------------------------------- on a GPU

HP = HParams(arch="qwen2", n_vocab=512, n_ctx_train=512, n_embd=256, n_layer=2, n_head=8,
             n_head_kv=2, n_ff=512, head_dim=32, n_rot=32, rope_base=10000.0, rms_eps=1e-6)
BLOCK = HP.block(0, qkv_bias=True)


@pytest.fixture(scope="module")
def gpu():
    """A CudaDevice; skips without one, unless PYGGML_REQUIRE_GPU=1 (tools/gpu_check.sh) makes
    a missing device a failure."""
    try:
        return cuda.CudaDevice(HP, max_batch=512)
    except BackendError as exc:
        if os.environ.get("PYGGML_REQUIRE_GPU") == "1":
            pytest.fail(f"PYGGML_REQUIRE_GPU=1 but: {exc}")
        pytest.skip(f"no CUDA device: {exc}")


@pytest.mark.gpu
@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
def test_get_rows_equals_the_cpu_dequantization_exactly(gpu, ggml_type):
    k = 256 * 17
    raw = random_rows(ggml_type, 37, k, seed=int(ggml_type))
    m = gpu.upload_matrix(QMatrix("w", int(ggml_type), 37, k, raw))
    rows = np.array([36, 0, 5, 5, 17])
    np.testing.assert_array_equal(gpu.get_rows(m, rows), dequantized(ggml_type, raw, k)[rows])


@pytest.mark.gpu
@pytest.mark.parametrize("n_tok", [1, 5, 11])                     # MAX_TOK = 8: one and two tiles
@pytest.mark.parametrize("k", [256 * 3, 256 * 17])         # fewer and more chunks than lanes
@pytest.mark.parametrize("ggml_type", TYPES, ids=lambda t: t.name)
def test_matmul_equals_the_float_product_of_the_dequantized_weights(gpu, ggml_type, k, n_tok):
    n_out = 67                                                     # not a multiple of 4 warps
    raw = random_rows(ggml_type, n_out, k, seed=k + int(ggml_type))
    w = dequantized(ggml_type, raw, k).astype(np.float64)
    x = np.random.default_rng(n_tok).standard_normal((n_tok, k), dtype=np.float32)
    m = gpu.upload_matrix(QMatrix("w", int(ggml_type), n_out, k, raw))
    out = gpu.empty((n_tok, n_out), np.float32, "out")
    gpu.matmul(m, gpu.upload(x, "x"), out)
    expected = x.astype(np.float64) @ w.T
    # float32 accumulation: error << k * 2^-24 * sum |w x|; random signs make it ~sqrt(k)
    bound = 2e-6 * np.sqrt(k) * (np.abs(x).astype(np.float64) @ np.abs(w).T)
    assert (np.abs(gpu.download(out) - expected) <= bound).all()


@pytest.mark.gpu
def test_matmul_fuses_bias_and_residual_adds(gpu):
    k, n_out, n_tok = 512, 40, 3
    raw = random_rows(GGMLType.Q4_K, n_out, k, seed=1)
    w = dequantized(GGMLType.Q4_K, raw, k).astype(np.float64)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n_tok, k), dtype=np.float32)
    bias = rng.standard_normal(n_out, dtype=np.float32)
    residual = rng.standard_normal((n_tok, n_out), dtype=np.float32)
    m = gpu.upload_matrix(QMatrix("w", int(GGMLType.Q4_K), n_out, k, raw))
    out = gpu.upload(residual, "residual")
    gpu.matmul(m, gpu.upload(x, "x"), out, bias=gpu.upload(bias, "bias"), accumulate=True)
    np.testing.assert_allclose(gpu.download(out), residual + bias + x @ w.T, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_rms_norm_matches_ggml_numerics(gpu):
    x = np.random.default_rng(3).standard_normal((5, 896), dtype=np.float32) * 3
    weight = np.random.default_rng(4).standard_normal(896, dtype=np.float32)
    out = gpu.empty(x.shape, np.float32, "out")
    gpu.rms_norm(gpu.upload(x, "x"), gpu.upload(weight, "weight"), out, HP.rms_eps)
    np.testing.assert_allclose(gpu.download(out), forward.rms_norm(x, weight, HP.rms_eps),
                               rtol=5e-7, atol=0)                  # a few ulp at most


@pytest.mark.gpu
@pytest.mark.parametrize("mode", [ROPE_NEOX, ROPE_NORM], ids=["neox", "norm"])
@pytest.mark.parametrize("pos0", [0, 3000])                # large angles need real sinf/cosf
def test_rope_equals_the_cpu_rotation_by_the_same_tables(gpu, mode, pos0):
    n_tok, n_heads, d = 3, 4, HP.head_dim
    x = np.random.default_rng(5).standard_normal((n_tok, n_heads, d), dtype=np.float32)
    dev = gpu.upload(x.reshape(n_tok, n_heads * d), "x")
    cos, sin = forward.rope_cache(Rope(mode, d, HP.rope_base), pos0, n_tok)   # llama: NORM
    gpu.rope_rotate(dev, n_heads, d, gpu.upload(cos, "cos"), gpu.upload(sin, "sin"), mode)
    expected = forward.rope(x.copy(), cos, sin, mode)
    np.testing.assert_array_equal(gpu.download(dev).reshape(x.shape), expected)


@pytest.mark.gpu
def test_silu_mul_matches_numpy(gpu):
    rng = np.random.default_rng(6)
    gate, up = rng.standard_normal((2, 3, 512), dtype=np.float32) * 4
    out = gpu.empty(gate.shape, np.float32, "out")
    gpu.silu_mul(gpu.upload(gate, "gate"), gpu.upload(up, "up"), out)
    np.testing.assert_allclose(gpu.download(out), forward.silu_mul(gate, up), rtol=1e-6, atol=1e-7)


@pytest.mark.gpu
def test_gelu_mul_equals_ggml_geglu_exactly(gpu):
    """The table is the CPU's (numerics.gelu_table), looked up by the same fp16 rounding."""
    rng = np.random.default_rng(7)
    gate, up = rng.standard_normal((2, 3, 512), dtype=np.float32) * 6      # both sides of +-10
    out = gpu.empty(gate.shape, np.float32, "out")
    gpu.gelu_mul(gpu.upload(gate, "gate"), gpu.upload(up, "up"), out)
    np.testing.assert_array_equal(gpu.download(out), numerics.gelu_mul(gate, up))


@pytest.mark.gpu
def test_scale_add_and_softcap(gpu):
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((2, 5, 300), dtype=np.float32) * 20
    dev = gpu.upload(x, "x")
    gpu.scale(dev, 0.0625)
    np.testing.assert_array_equal(gpu.download(dev), x * np.float32(0.0625))
    gpu.add(dev, gpu.upload(y, "y"))
    np.testing.assert_array_equal(gpu.download(dev), x * np.float32(0.0625) + y)
    logits = gpu.upload(x, "logits")
    gpu.softcap(logits, 5.0)                        # CUDA's tanhf: within 2 ulp of glibc's
    np.testing.assert_allclose(gpu.download(logits), forward.softcap(x, 5.0), rtol=1e-6, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("pos0, n_tok", [(0, 1), (0, 7), (20, 1), (20, 6), (600, 3)])
def test_kv_store_and_causal_gqa_attention(gpu, pos0, n_tok):
    hp, n_ctx = HP, 640
    rng = np.random.default_rng(pos0 + n_tok)
    k_cache = np.zeros((n_ctx, hp.n_head_kv, hp.head_dim), np.float16)
    v_cache = np.zeros_like(k_cache)
    k_cache[:pos0] = rng.standard_normal(k_cache[:pos0].shape) * 2     # earlier tokens
    v_cache[:pos0] = rng.standard_normal(v_cache[:pos0].shape)
    layer = cuda.CudaLayer(None, BLOCK, gpu.upload(k_cache.reshape(n_ctx, -1), "K"),
                           gpu.upload(v_cache.reshape(n_ctx, -1), "V"), n_ctx)
    q = rng.standard_normal((n_tok, hp.n_head, hp.head_dim), dtype=np.float32)
    k = rng.standard_normal((n_tok, hp.n_embd_gqa), dtype=np.float32) * 2
    v = rng.standard_normal((n_tok, hp.n_embd_gqa), dtype=np.float32)
    gpu.store_kv(layer, gpu.upload(k, "k"), gpu.upload(v, "v"), pos0)
    out = gpu.empty((n_tok, hp.n_embd), np.float32, "out")
    gpu.attention(layer, gpu.upload(q.reshape(n_tok, -1), "q"), out, pos0)

    k_cache[pos0:pos0 + n_tok] = k.reshape(n_tok, hp.n_head_kv, hp.head_dim)
    v_cache[pos0:pos0 + n_tok] = v.reshape(n_tok, hp.n_head_kv, hp.head_dim)
    np.testing.assert_array_equal(gpu.download(layer.k_cache).reshape(k_cache.shape), k_cache)
    np.testing.assert_array_equal(gpu.download(layer.v_cache).reshape(v_cache.shape), v_cache)
    expected = forward.attention(q, k_cache, v_cache, pos0, BLOCK.attn_scale)
    np.testing.assert_allclose(gpu.download(out), expected, rtol=1e-5, atol=1e-5)
    windowed = dataclasses.replace(layer, block=dataclasses.replace(BLOCK, window=5))
    gpu.attention(windowed, gpu.upload(q.reshape(n_tok, -1), "q"), out, pos0)
    expected = forward.attention(q, k_cache, v_cache, pos0, BLOCK.attn_scale, window=5)
    np.testing.assert_allclose(gpu.download(out), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_reserve_names_bytes_needed_and_free(gpu):
    free, total = gpu.mem_info()
    with pytest.raises(BackendError, match=r"bytes needed .* bytes free"):
        gpu.reserve(total)
    gpu.reserve(1 << 20)


@pytest.mark.gpu
def test_allocation_failure_is_an_error_not_a_crash(gpu):
    _, total = gpu.mem_info()
    with pytest.raises(BackendError, match=r"out of GPU memory .*cudaMalloc of [\d]+ bytes"):
        gpu.empty((2 * total,), np.uint8, "too much")
    still_usable = gpu.download(gpu.upload(np.arange(8, dtype=np.float32), "after"))
    assert still_usable.sum() == 28


# ----------------------------------------------------------------------------- models, on a GPU

GPU_FIXTURE = "qwen2-512x12-q4_k_m"      # 12 layers: n_gpu_layers 8 is a real split


@pytest.fixture(scope="module")
def gpu_model_file(gpu, model_path):
    return model_path(GPU_FIXTURE)


@pytest.mark.gpu
@pytest.mark.parametrize("n_gpu_layers", [8, -1])
def test_offloaded_model_matches_its_float_reference(gpu_model_file, n_gpu_layers):
    """Logits of a model split between the CPU and the GPU against (a) the same split with the
    GPU's part done on the CPU in float64 (tight: MATCH_BOUND of the logits' range), (b) the
    all-CPU model, whose 8-bit activations put it a few percent away (ROUNDING_FLOOR)."""
    model = gpu_check.load(gpu_model_file, n_gpu_layers, "cuda")
    ids = model.tokenize(gpu_check.PROMPT)
    got = model.logits(ids)
    reference = gpu_check.compare(got, float_reference(gpu_model_file, n_gpu_layers).logits(ids))
    assert reference["max_diff"] <= gpu_check.MATCH_BOUND, reference
    assert reference["top1_clear"] == 1.0 and reference["top1"] >= 0.9, reference
    cpu = gpu_check.compare(got, gpu_check.load(gpu_model_file, 0, "cpu").logits(ids))
    assert cpu["max_diff"] <= gpu_check.ROUNDING_FLOOR, cpu


@pytest.mark.gpu
@pytest.mark.parametrize("n_gpu_layers", [8, -1])
def test_only_the_hidden_state_crosses_the_bus_per_token(gpu_model_file, n_gpu_layers):
    model = gpu_check.load(gpu_model_file, n_gpu_layers, "cuda")
    ids = model.tokenize(gpu_check.PROMPT)
    model.eval(ids)
    device, hp = model.gpu, model.hparams
    assert device.traffic.uploaded == model.plan.gpu_weight_bytes      # weights went up once
    device.traffic.reset()
    model.eval([ids[0]])                                               # one decode step
    hidden = hp.n_embd * 4
    assert device.traffic.to_device == hidden
    assert (device.traffic.to_host, device.traffic.logits) == (
        (0, hp.n_vocab * 4) if n_gpu_layers == -1 else (hidden, 0))
    assert device.traffic.uploaded == model.plan.gpu_weight_bytes
    assert device.allocated_after_load >= model.plan.gpu_bytes
    report = device.memory_report()
    for row in ("GPU memory after load", "GPU memory peak"):
        assert re.fullmatch(r"[\d,]+ MiB used on the device, [\d,]+ MiB of it pyggml's",
                            report[row])
    del model, device
    gc.collect()

"""Where the arithmetic runs: the only part of pyggml that touches cffi or CUDA.

    cpu_c       libpyggml_cpu (kernels/*.c) through cffi: the quantized products of
                pyggml.quants with the same names and semantics, plus Products (several
                matrices sharing one input, one call), rms_norm and silu_mul
    host        the CPU as a device: runs blocks with pyggml.model.forward and the CPU
                kernels (numba, from pyggml.quants, or C)
    cuda        libpyggml_cuda (kernels/*.cu) through cffi: layers resident on a GPU
    simulated   a GPU stand-in on the CPU, for testing the offload path without a GPU

The native libraries are built by CMakeLists.txt during `pip install` (setup.py) into
pyggml/lib/; without them pyggml runs on its numba kernels.

    cpu_kernels(backend=None, n_threads=None) -> kernels for the CPU side of a model:
        .name ("c" or "numba"), .description (one line for stats), and
        vec_dot_type, quantize_activations, matmul_q8, matmul, dequantize_rows with
        pyggml.quants' signatures (n_threads bound).  backend None picks the fastest
        that works: C, else numba (saying once why C is not used).
"""
from __future__ import annotations

from ..errors import UsageError

BACKENDS = ("c", "numba")


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
        self._scratch = None

    def matmul_q8(self, ggml_type, W, xq, out):
        return self._c.matmul_q8(ggml_type, W, xq, out, n_threads=self.n_threads)

    def block_forward(self, hp, layer, x, pos0, cos, sin):
        """One transformer block in one C call (kernels/layer.c); the layer's C description
        is made on first use and kept on it."""
        from .c_layer import CBlock, Scratch
        if layer.native is None:
            layer.native = CBlock(hp, layer.weights, layer.k_cache, layer.v_cache)
        if self._scratch is None:
            self._scratch = Scratch()
        return layer.native(x, pos0, cos, sin, self._scratch, self.n_threads)

    def matmul(self, ggml_type, W, X):
        return self._c.matmul(ggml_type, W, X, n_threads=self.n_threads)


class NumpyBlocks:
    """block_forward for kernels whose blocks run as forward.layer_forward's numpy steps
    around the kernels' own products (numba, and the GPU-arithmetic reference)."""

    def block_forward(self, hp, layer, x, pos0, cos, sin):
        from ..model.forward import layer_forward
        return layer_forward(self, hp, layer.weights, x, pos0, layer.k_cache, layer.v_cache,
                             cos, sin)


class NumbaKernels(NumpyBlocks):
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
        self.matmul_q8 = quants.matmul_q8
        self.matmul = quants.matmul
        self.dequantize_rows = quants.dequantize_rows


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

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
"""

"""Where the arithmetic runs: the devices, and the only part of pyggml that touches cffi
or CUDA.

    device.py     the Device interface every device follows (embed, upload a layer, run
                  a layer over a batch with its kv cache, run the head, move the hidden
                  state), and what devices share: rope tables, bus counters
    cpu.py        the CPU: CpuDevice (model/forward.py's numpy block around numba
                  products), CBlockDevice (a block per call of kernels/layer.c), and the
                  kernels objects (products and element-wise ops only)
    cpu_c.py      libpyggml_cpu (kernels/*.c) through cffi: the quantized products of
                  pyggml.quants with the same names and semantics
    c_layer.py    a layer described to kernels/layer.c (the pyggml_layer struct)
    cuda.py       libpyggml_cuda (kernels/pyggml_cuda.cu) through cffi: layers resident
                  on a GPU
    simulated.py  a GPU stand-in on the CPU, for testing the offload path without a GPU
    native.py     opening the native libraries with cffi (ABI mode)

The native libraries are built by CMakeLists.txt during `pip install` (setup.py) into
pyggml/lib/; without them pyggml runs on its numba kernels.  Devices read a model's
definition (pyggml.model: BlockSpec, weight views, the numpy block) and nothing above it:
the max batch a GPU workspace must hold is passed in by the runtime.
"""

"""Shared fixtures: named test models from tools/make_model.py, made once and cached, and a
portable build of the C kernels."""
import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import make_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# How the README's test command builds llama-cpp-python (the oracle): -march=native, but no
# AMX.  On a CPU with AMX (Intel Sapphire Rapids and later) llama.cpp multiplies through its
# AMX buffer type, which crashes in ggml_backend_amx_mul_mat on these machines
# (ggml-org/llama.cpp#20824) and would anyway follow another summation order than the
# AVX-512 kernels that pyggml reproduces bit for bit.
NO_AMX_CMAKE_ARGS = ("-DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' "
                     "-DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'")


def pytest_configure(config):
    """Stop at once, saying how to fix it, where llama.cpp was built with AMX on a CPU that
    has it (a wheel built before the README's command said so, from pip's cache)."""
    import ctypes
    import importlib.util
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None:
        return
    lib = Path(spec.origin).parent / "lib" / "libggml-cpu.so"
    cpu_has_amx = "amx_int8" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    if cpu_has_amx and lib.exists() and ctypes.CDLL(str(lib)).ggml_cpu_has_amx_int8():
        pytest.exit("llama-cpp-python was built with AMX, which crashes on this CPU "
                    "(ggml-org/llama.cpp#20824); rebuild it without: .venv/bin/pip cache "
                    "remove llama_cpp_python && CMAKE_ARGS=\"" + NO_AMX_CMAKE_ARGS + "\" "
                    ".venv/bin/pip install --no-deps --force-reinstall llama-cpp-python==0.3.36",
                    returncode=1)


@pytest.fixture(scope="session")
def model_path():
    """model_path("qwen2-tiny-q4_k_m") -> Path of that fixture model (see make_model.FIXTURES)."""
    return make_model.model_path


@pytest.fixture(scope="session")
def project_setup():
    """The project's setup.py as a module (its build_kernels hook; setup() runs only as
    __main__)."""
    spec = importlib.util.spec_from_file_location("pyggml_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def portable_lib(tmp_path_factory, project_setup):
    """Path of a libpyggml_cpu built for any x86-64 (no AVX2, no threads: the scalar
    paths of every kernel), made with setup.py's own hook."""
    from pyggml import paths
    tmp = tmp_path_factory.mktemp("portable")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYGGML_CMAKE_ARGS",
              "-DPYGGML_ARCH_FLAGS=-march=x86-64 -DPYGGML_THREADS=OFF -DPYGGML_CUDA=OFF")
    try:
        assert project_setup.build_kernels(tmp / "build", tmp / "lib"), "portable build failed"
    finally:
        mp.undo()
    return tmp / "lib" / paths.library_file("pyggml_cpu")

"""Shared fixtures: named test models from tools/make_model.py, made once and cached, and a
portable build of the C kernels."""
import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import make_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


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
    from pyggml.backends import native
    tmp = tmp_path_factory.mktemp("portable")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYGGML_CMAKE_ARGS",
              "-DPYGGML_ARCH_FLAGS=-march=x86-64 -DPYGGML_THREADS=OFF -DPYGGML_CUDA=OFF")
    try:
        assert project_setup.build_kernels(tmp / "build", tmp / "lib"), "portable build failed"
    finally:
        mp.undo()
    return tmp / "lib" / native.library_file("pyggml_cpu")

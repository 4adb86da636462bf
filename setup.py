"""setuptools hook: build the native kernels (CMakeLists.txt) while pip installs pyggml.

Everything else about the package is in pyproject.toml.  The hook runs CMake as part
of build_py and puts the libraries where pyggml.backends looks for them:

    pip install -e .     ->  pyggml/lib/ in this checkout (git-ignored)
    pip install .        ->  pyggml/lib/ inside the wheel (tagged for this platform)

The kernels are an accelerator, not a requirement: without CMake or a C compiler, or
if the build fails, the install still succeeds (with one warning here), and pyggml
runs on its numba kernels, saying so once when it starts.

PYGGML_CMAKE_ARGS adds CMake arguments, e.g. '-DPYGGML_NATIVE=OFF' for a wheel that
must run on other x86-64 machines than this one (the default is -march=native).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


NUMBA_FALLBACK = "pyggml will use its numba kernels"


def warn(message: str, consequence: str = NUMBA_FALLBACK) -> None:
    print(f"pyggml setup: WARNING: {message}; {consequence}", file=sys.stderr)


def _run(step: list[str], what: str, consequence: str = NUMBA_FALLBACK) -> bool:
    try:
        result = subprocess.run(step, capture_output=True, text=True)
    except OSError as exc:
        warn(f"{what}: {step[0]} could not run ({exc})", consequence)
        return False
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-2000:]
        warn(f"{what} ({' '.join(step)}):\n{output}\n", consequence)
    return result.returncode == 0


def build_kernels(build_dir: Path, lib_dir: Path) -> bool:
    """Configure CMakeLists.txt in build_dir and build the libraries into lib_dir:
    libpyggml_mapguard and libpyggml_cpu first, each on its own so that a failure of one
    (or of CUDA) costs no other, then the rest (libpyggml_cuda, when CMake found CUDA).

    Returns whether libpyggml_cpu was built; never raises (a failure is one warning)."""
    cmake = shutil.which("cmake")
    if cmake is None:
        warn("cmake not found, C kernels not built")
        return False
    configure = [cmake, "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={lib_dir}",
                 *shlex.split(os.environ.get("PYGGML_CMAKE_ARGS", ""))]
    build = [cmake, "--build", str(build_dir), "--parallel", str(os.cpu_count() or 2)]
    if not _run(configure, "configuring the C kernels failed"):
        return False
    if os.name == "posix":          # CMakeLists.txt builds it on UNIX only (POSIX signals)
        _run(build + ["--target", "pyggml_mapguard"], "building the SIGBUS guard failed",
             "a model file truncated while pyggml reads it ends the process with a Python "
             "traceback instead of one line naming the file")
    if not _run(build + ["--target", "pyggml_cpu"], "building the C kernels failed"):
        return False
    _run(build, "building the other native kernels (CUDA) failed",
         "pyggml works, without GPU offload")
    return True


class BuildPyWithKernels(build_py):
    """build_py, then the native kernels into the package's lib/ folder."""

    def run(self):
        super().run()
        build_temp = Path(self.get_finalized_command("build").build_temp)
        if self.editable_mode:                 # the checkout is the installed package
            lib_dir = ROOT / "pyggml" / "lib"
        else:
            lib_dir = Path(self.build_lib).resolve() / "pyggml" / "lib"
        build_kernels(build_temp.resolve() / "pyggml-kernels", lib_dir)


class BinaryDistribution(Distribution):
    """The wheel carries a native library: tag it for this platform, not py3-none-any."""

    def has_ext_modules(self):
        return True


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPyWithKernels}, distclass=BinaryDistribution)

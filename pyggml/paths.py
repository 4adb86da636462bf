"""Where pyggml's own files are: the native libraries and the kernel sources.

    PACKAGE_LIB_DIR   pyggml/lib: the libraries (and their ABI headers) that setup.py
                      builds with CMake
    SOURCE_DIR        kernels/ of a source checkout (headers are read from there when
                      they are not next to a library)

Used by pyggml.format.mapguard (libpyggml_mapguard, through ctypes) and pyggml.backends
(libpyggml_cpu and libpyggml_cuda, through cffi), so it sits below both.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_LIB_DIR = Path(__file__).resolve().parent / "lib"        # pyggml/lib, filled by setup.py
SOURCE_DIR = Path(__file__).resolve().parents[1] / "kernels"     # a source checkout


def library_file(stem: str) -> str:
    """libpyggml_cpu.so / .dylib / pyggml_cpu.dll for stem "pyggml_cpu"."""
    return {"darwin": f"lib{stem}.dylib", "win32": f"{stem}.dll"}.get(sys.platform, f"lib{stem}.so")


def library_path(stem: str, env_var: str) -> Path:
    """$env_var if set, else pyggml/lib/<library file>."""
    explicit = os.environ.get(env_var)
    return Path(explicit) if explicit else PACKAGE_LIB_DIR / library_file(stem)

"""Opening pyggml's native libraries (libpyggml_cpu, libpyggml_cuda) with cffi (where they
are: pyggml.paths).

Both are loaded in ABI mode: no compiler at run time, the declarations come from the
library's own header (the part between ``/* cdef: begin */`` and ``/* cdef: end */``),
and the library reports an ABI version that must match the Python side's, so a stale
build is refused with a message instead of crashing on a changed struct.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import BackendError
from ..paths import SOURCE_DIR


def read_cdef(header: Path) -> str:
    """The declarations between the cdef markers of a header (no preprocessor lines)."""
    text = header.read_text()
    try:
        return text.split("/* cdef: begin */", 1)[1].split("/* cdef: end */", 1)[0]
    except IndexError:
        raise BackendError(f"{header}: no '/* cdef: begin */ ... /* cdef: end */' section") from None


def open_library(path: Path, header_name: str, abi_symbol: str, abi_version: int,
                 not_built: str):
    """(ffi, lib) of the library at path, declared by header_name (next to the library, or
    in kernels/ of a source checkout); BackendError when it is missing, unloadable or of
    another ABI version.  not_built says how to build it."""
    try:
        import cffi
    except ImportError:
        raise BackendError("the native kernels need the cffi package (pip install cffi)") from None
    if not path.exists():
        raise BackendError(f"no {path}: {not_built}")
    header = path.parent / header_name
    if not header.exists():
        header = SOURCE_DIR / header_name
    if not header.exists():
        raise BackendError(f"no {header_name} next to {path} or in {SOURCE_DIR}")
    ffi = cffi.FFI()
    ffi.cdef(read_cdef(header))
    try:
        lib = ffi.dlopen(str(path))
    except OSError as exc:
        raise BackendError(f"cannot load {path}: {exc}") from None
    version = getattr(lib, abi_symbol)()
    if version != abi_version:
        raise BackendError(f"{path} has ABI version {version}, pyggml needs {abi_version}: "
                           f"rebuild it (pip install -e .)")
    return ffi, lib


def load_once(state: dict, load) -> dict:
    """Run load() (which fills state with "ffi", "lib", ...) the first time only; a failure
    is remembered in state["error"] and raised again as the same BackendError."""
    if "lib" in state:
        return state
    if "error" in state:
        raise BackendError(state["error"])
    try:
        load()
    except BackendError as exc:
        state["error"] = str(exc)
        raise
    return state

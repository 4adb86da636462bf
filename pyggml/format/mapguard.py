"""The last resort when a mapped file shrinks under a read: one line naming the file, not a
bare "Bus error".

pyggml maps GGUF files and hands out numpy views of their bytes.  When another process
truncates such a file, or rewrites it in place, the pages past the file's new end are
gone, and reading one raises SIGBUS in the reading thread, whoever reads: numpy, numba,
libpyggml_cpu's threads, the CUDA driver uploading weights (it copies them from the map
with the CPU, through a staging buffer).  By default that
kills the process with a bare "Bus error" (exit status 135).  Python cannot catch it: a
Python signal handler only runs later, between bytecodes, so the faulting read would
run again and fault again, forever.  So there are two layers:

  1. ``GGUFFile.check_unchanged()``, called by ``raw()``, ``dequantize()`` and every
     batch of a model: an fstat of each mapped file; a new size or modification time
     raises ``GGUFChangedError``, an ordinary Python error (reader.MappedFile).
  2. This module: libpyggml_mapguard (kernels/mapguard.c) handles SIGBUS in C.  Each
     map is registered with its file's path (``guard``); a fault inside one writes

         pyggml: error: model.gguf changed while it was mapped (truncated or rewritten
         in place by another process): reading byte offset N failed (SIGBUS); run
         again once the file is complete                            (one line)

     to stderr and ends the process with status 2, pyggml's status for every error.
     A SIGBUS anywhere else goes to the action installed before, so a real bug still
     crashes as it did.

The guarantee, and its limit: a change that happens before a check is a
GGUFChangedError.  A change in the window between the check and the read, or under a
view taken earlier (a loaded model's weights in the middle of a batch), cannot become
an exception; a read of a page that is gone then ends the process with the line above
and status 2 -- never silently, and the same for all of those readers.  A
file rewritten in place to the same size does not fault at all: its views just see the
new bytes, and only the modification time that check_unchanged compares tells (to a
tick of the file system's clock).  A SIGBUS handler installed or restored after the
first ``pyggml.open`` (``faulthandler.enable()`` or ``.disable()``, say) replaces this
one: then the fault ends the process as that handler decides.

Without the library (no C compiler at install, Windows, or $PYGGML_MAPGUARD_LIB naming
a file that does not load), or for a map beyond its table of 256, the fallback is
``faulthandler.enable()``: the process still dies of SIGBUS, but first prints "Fatal
Python error: Bus error" and the Python traceback of every thread, which at least says
where.  ``why_unguarded()`` says which of the two is in force.

ctypes, not cffi (as pyggml.backends use): numpy has imported ctypes already, so it
costs nothing, where importing cffi and parsing a cdef would add milliseconds to the
first ``pyggml.open``.
"""
from __future__ import annotations

import ctypes
import faulthandler
import mmap
import os
import sys
import weakref

import numpy as np

ABI_VERSION = 1        # kernels/mapguard.c's MAPGUARD_ABI_VERSION

_loaded: tuple[ctypes.CDLL | None, str | None] | None = None    # (library, why not), once tried


def _load() -> tuple[ctypes.CDLL | None, str | None]:
    """(libpyggml_mapguard with its handler installed, None), or (None, why not) with the
    faulthandler fallback on; tried once per process."""
    global _loaded
    if _loaded is None:
        _loaded = _load_library()
        if _loaded[0] is None:
            _enable_faulthandler()
    return _loaded


def _load_library() -> tuple[ctypes.CDLL | None, str | None]:
    from ..paths import library_path
    path = library_path("pyggml_mapguard", "PYGGML_MAPGUARD_LIB")
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        return None, f"cannot load {path}: {exc}"
    version = lib.pyggml_mapguard_abi_version()
    if version != ABI_VERSION:
        return None, (f"{path} has ABI version {version}, pyggml needs {ABI_VERSION}: "
                      "rebuild it (pip install -e .)")
    status = lib.pyggml_mapguard_install()
    if status != 0:
        return None, f"installing the SIGBUS handler failed: {os.strerror(-status)}"
    lib.pyggml_mapguard_add.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    lib.pyggml_mapguard_remove.argtypes = (ctypes.c_int,)
    lib.pyggml_mapguard_remove.restype = None
    return lib, None


def _enable_faulthandler() -> None:
    """The fallback: a Python traceback before the bare "Bus error" (on the real stderr,
    which outlives any redirection of sys.stderr)."""
    if not faulthandler.is_enabled() and sys.__stderr__ is not None:
        faulthandler.enable(sys.__stderr__)


def why_unguarded() -> str | None:
    """None when libpyggml_mapguard's handler is installed (loading it if need be); else
    why not, and the faulthandler fallback is on."""
    return _load()[1]


def guard(data: mmap.mmap, path) -> weakref.finalize | None:
    """Name ``path`` in the fatal message when a read of the map ``data`` faults, until the
    map is unmapped.

    Returns the finalizer that unregisters the map: it runs when ``data`` is freed (a map
    that numpy views still use is unmapped only then); call it at once when
    ``data.close()`` succeeds.  None when the map is not guarded (see the module doc)."""
    lib = _load()[0]
    if lib is None:
        return None
    # the map's address; the array exports data's buffer only for this line
    start = np.frombuffer(data, dtype=np.uint8, count=1).__array_interface__["data"][0]
    slot = lib.pyggml_mapguard_add(start, len(data), os.fsencode(path))
    if slot < 0:                                   # the table is full
        _enable_faulthandler()
        return None
    unguard = weakref.finalize(data, lib.pyggml_mapguard_remove, slot)
    unguard.atexit = False      # maps still alive at exit stay mapped, so keep them guarded
    return unguard

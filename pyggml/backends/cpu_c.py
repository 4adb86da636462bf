"""The C kernels of kernels/ (libpyggml_cpu) through cffi, in ABI mode.

The same products as the numba layer of pyggml.quants, with the same names:

    vec_dot_type(ggml_type) -> GGMLType          Q8_K / Q8_0 / Q8_1, F32 for float weights
    quantize_activations(x (T, K) f32, vec_dot_type) -> uint8 (T, act_row_bytes)
    matmul_q8(ggml_type, W uint8 (N, row_bytes), xq uint8 (T, act_row_bytes), out f32 (T, N))
    matmul(ggml_type, W, x (T, K) f32) -> f32 (T, N)           quantize + products, one call
    dequantize_rows(ggml_type, W, rows, n_per_row) -> f32 (len(rows), K)   the embedding lookup

A whole block in one call (kernels/layer.c) is c_layer.py's.

Everything is checked here before it reaches C (dtype, shape, contiguity, row
indices): a wrong argument raises UsageError or UnsupportedTypeError, never a
crash.  A missing, stale or foreign library raises BackendError from ``load()``;
``available()`` says whether the library can be used (and, the first time it
cannot, says why once on stderr, so that callers can fall back to numba).

Weights may be read-only views of a memory-mapped file: nothing is copied.  The
library releases the GIL for the duration of each call (cffi does).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..errors import BackendError, UnsupportedTypeError, UsageError
from ..ggml import TYPE_TRAITS, GGMLType
from .. import paths
from . import native

ABI_VERSION = 7        # kernels/pyggml_cpu.h's PYGGML_CPU_ABI_VERSION
HEADER_NAME = "pyggml_cpu.h"

STATUS_NAMES = {-1: "PYGGML_ERR_TYPE", -2: "PYGGML_ERR_SHAPE", -3: "PYGGML_ERR_ARG",
                -4: "PYGGML_ERR_INDEX"}
# library feature -> /proc/cpuinfo flag: the build may use any of them (-march=native)
CPU_FLAGS = {"AVX2": "avx2", "FMA": "fma", "F16C": "f16c", "AVXVNNI": "avx_vnni",
             "AVX512F": "avx512f", "AVX512BW": "avx512bw", "AVX512VL": "avx512vl"}

# activation formats: ggml type id -> (block size, bytes per block); plain ints, for speed
ACT_BLOCKS = {int(t): TYPE_TRAITS[t] for t in (GGMLType.Q8_0, GGMLType.Q8_1, GGMLType.Q8_K)}
F32_ID = int(GGMLType.F32)

_state: dict = {}       # "ffi", "lib", "features", "types"  or  "error"


# ----------------------------------------------------------------------------- loading

def library_path() -> Path:
    """$PYGGML_CPU_LIB, else pyggml/lib/libpyggml_cpu.so."""
    return paths.library_path("pyggml_cpu", "PYGGML_CPU_LIB")


def _check_cpu(features: list[str], path: Path) -> None:
    """Refuse a library built for instructions this CPU lacks (a wheel from another machine)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:
        return                                       # not Linux: trust the build
    if flags is None:
        return
    missing = [feat for feat in features if feat in CPU_FLAGS and CPU_FLAGS[feat] not in flags]
    if missing:
        raise BackendError(f"{path} was built for {', '.join(missing)}, which this CPU lacks; "
                           f"rebuild it here (pip install -e .) or build with PYGGML_CMAKE_ARGS="
                           f"'-DPYGGML_NATIVE=OFF'")


def load():
    """The cffi library object; raises BackendError (cached) if it cannot be used."""
    return native.load_once(_state, _load)["lib"]


def _load() -> None:
    path = library_path()
    ffi, lib = native.open_library(path, HEADER_NAME, "pyggml_cpu_abi_version", ABI_VERSION,
                                   "the C kernels are not built (pip install -e . builds them "
                                   "with CMake and a C compiler)")
    features = ffi.string(lib.pyggml_cpu_features()).decode().split()
    _check_cpu(features, path)
    types = {}
    for t in GGMLType:
        act = lib.pyggml_act_type(int(t))
        if act >= 0:
            block_size, type_size = TYPE_TRAITS[t]
            types[int(t)] = (block_size, type_size, GGMLType(act), *TYPE_TRAITS[GGMLType(act)])
    _state.update(ffi=ffi, lib=lib, features=features, types=types, path=path,
                  ctypes={"float[]": ffi.typeof("float[]"), "char[]": ffi.typeof("char[]"),
                          "job": ffi.typeof("pyggml_matmul_job *")})


def available() -> bool:
    """True if the C kernels can be used; the first time they cannot, say why once on stderr."""
    try:
        load()
        return True
    except BackendError as exc:
        if not _state.get("told"):
            _state["told"] = True
            print(f"pyggml: {exc}; using the numba kernels", file=sys.stderr)
        return False


def description() -> str:
    """One line for stats blocks: library, features, threads."""
    lib = load()
    return (f"C ({' '.join(_state['features'])}, "
            f"{lib.pyggml_cpu_max_threads()} threads max) {_state['path']}")


# ----------------------------------------------------------------------------- checks

def _type(ggml_type) -> tuple:
    """(block_size, type_size, act_type, act_block_size, act_type_size) of a weight type."""
    try:
        return _state["types"][ggml_type]       # GGMLType members hash and compare as ints
    except (KeyError, TypeError):
        load()
    try:
        return _state["types"][int(ggml_type)]
    except (KeyError, TypeError, ValueError):
        raise UnsupportedTypeError(f"the C kernels have no product for ggml type {ggml_type!r}; "
                                   f"they support {sorted(GGMLType(t).name for t in _state['types'])}"
                                   ) from None


def _call(name: str, rc: int) -> None:
    if rc != 0:     # the checks here should make this unreachable: a bug, not a user error
        raise BackendError(f"libpyggml_cpu: {name} returned {STATUS_NAMES.get(rc, rc)}")


check = _call       # for modules that build their own calls (c_layer.py)


def ffi():
    """The cffi FFI object of the loaded library (load() first)."""
    load()
    return _state["ffi"]


U8, F32 = np.dtype(np.uint8), np.dtype(np.float32)


def _array(arg: str, a, dtype: np.dtype, ndim: int) -> np.ndarray:
    # (these checks run on every product: `is` before `==`, since dtype equality is slow)
    if type(a) is not np.ndarray and not isinstance(a, np.ndarray):
        raise UsageError(f"{arg} must be a numpy array, got {type(a).__name__}")
    if a.dtype is not dtype and a.dtype != dtype:
        raise UsageError(f"{arg} must be {dtype.name}, got {a.dtype}")
    if a.ndim != ndim:
        raise UsageError(f"{arg} must be {ndim}-D, got shape {a.shape}")
    return a


def _rows_view(arg: str, a: np.ndarray, writable: bool = False):
    """(pointer, row stride in elements) of a 2-D uint8 or float32 array with contiguous rows."""
    flags = a.flags
    if writable and not flags.writeable:
        raise UsageError(f"{arg} is read-only")
    ctype = "float[]" if a.dtype is F32 or a.dtype == F32 else "char[]"
    if flags.c_contiguous:
        return (_state["ffi"].from_buffer(_state["ctypes"][ctype], a, require_writable=writable),
                a.shape[1])
    item = a.itemsize
    if a.shape[0] > 1 and a.shape[1] > 0 and (a.strides[1] != item or a.strides[0] % item
                                              or a.strides[0] < a.shape[1] * item):
        raise UsageError(f"{arg} rows must be contiguous and must not overlap "
                         f"(shape {a.shape}, strides {a.strides})")
    return _state["ffi"].cast(ctype[:-2] + " *", a.ctypes.data), a.strides[0] // item


def _weights(ggml_type, W: np.ndarray) -> tuple:
    """(cdata, row stride bytes, N, K, traits) of a weight matrix W uint8 (N, row_bytes)."""
    tr = _type(ggml_type)
    block_size, type_size = tr[0], tr[1]
    if type(W) is np.ndarray and W.dtype is U8 and W.ndim == 2 and W.flags.c_contiguous \
            and W.shape[1] and W.shape[1] % type_size == 0:          # the usual case, quickly
        return (_state["ffi"].from_buffer(_state["ctypes"]["char[]"], W), W.shape[1], W.shape[0],
                W.shape[1] // type_size * block_size, tr)
    _array("W", W, U8, 2)
    if W.shape[1] == 0 or W.shape[1] % type_size:
        raise UsageError(f"W rows of {GGMLType(int(ggml_type)).name} must be a positive multiple "
                         f"of {type_size} bytes, got {W.shape[1]}")
    ptr, stride = _rows_view("W", W)
    return ptr, stride, W.shape[0], W.shape[1] // type_size * block_size, tr


def _act_row_bytes(tr: tuple, k: int) -> int:
    return k // tr[3] * tr[4]


def _out_view(out: np.ndarray, shape: tuple):
    if type(out) is np.ndarray and out.dtype is F32 and out.shape == shape:
        flags = out.flags
        if flags.c_contiguous and flags.writeable:
            return _state["ffi"].from_buffer(_state["ctypes"]["float[]"], out, True), shape[1]
    _array("out", out, F32, 2)
    if out.shape != shape:
        raise UsageError(f"out must have shape {shape}, got {out.shape}")
    return _rows_view("out", out, writable=True)


# ----------------------------------------------------------------------------- activations

def vec_dot_type(ggml_type) -> GGMLType:
    """The activation format paired with a weight type (ggml's vec_dot_type; F32 for floats)."""
    return _type(ggml_type)[2]


def quantize_activations(x: np.ndarray, vec_dot_type, out: np.ndarray | None = None) -> np.ndarray:
    """x float32 (T, K) -> uint8 (T, act_row_bytes): ggml's block_q8_K / q8_0 / q8_1 rows,
    byte for byte as llama.cpp's x86 CPU backend makes them (quantize_row_q8_K_ref, and
    ggml-cpu's run-time quantize_row_q8_0 / q8_1: see pyggml/quants/q8.py); for F32 the
    float rows' bytes."""
    lib, ffi = load(), _state["ffi"]
    _array("x", x, F32, 2)
    if vec_dot_type == F32_ID:
        return np.ascontiguousarray(x).view(np.uint8)
    try:
        block_size, type_size = ACT_BLOCKS[vec_dot_type]
    except (KeyError, TypeError):
        raise UnsupportedTypeError(f"activations quantize to Q8_0, Q8_1, Q8_K or F32, "
                                   f"not {vec_dot_type!r}") from None
    n, k = x.shape
    if k % block_size:
        raise UsageError(f"x rows of {k} elements are not a multiple of "
                         f"{GGMLType(vec_dot_type).name}'s block of {block_size}")
    shape = (n, k // block_size * type_size)
    if out is None:
        out = np.empty(shape, np.uint8)
    elif (_array("out", out, U8, 2).shape != shape or not out.flags.c_contiguous
          or not out.flags.writeable):
        raise UsageError(f"out must be a writable C-contiguous uint8 array of shape {shape}")
    xp, ldx = _rows_view("x", x)
    _call("pyggml_quantize_act", lib.pyggml_quantize_act(
        int(vec_dot_type), xp, ldx, n, k, ffi.from_buffer(out, require_writable=True)))
    return out


# ----------------------------------------------------------------------------- products

def matmul_q8(ggml_type, W: np.ndarray, xq: np.ndarray, out: np.ndarray,
              n_threads: int | None = None, rows_alone: bool = False) -> np.ndarray:
    """out[t, n] = vec_dot(W row n, xq row t), as ggml's vec_dot_<type>_<vec_dot_type>.

    W uint8 (N, row_bytes) (rows contiguous, e.g. a view of a file), xq uint8
    (T, act_row_bytes) from quantize_activations(x, vec_dot_type(ggml_type)),
    out float32 (T, N) (rows contiguous).  ``rows_alone``: each row multiplied as a
    product of that row alone is (the rows of several sequences' decode steps; ggml's
    kernel depends on T).  Returns out."""
    wp, w_stride, n, k, tr = _weights(ggml_type, W)
    if not (type(xq) is np.ndarray and xq.dtype is U8 and xq.ndim == 2
            and xq.shape[1] == k // tr[3] * tr[4] and xq.flags.c_contiguous):
        _array("xq", xq, U8, 2)
        raise UsageError(f"xq must be C-contiguous uint8 (T, {_act_row_bytes(tr, k)}) for "
                         f"{tr[2].name} rows of {k}, got shape {xq.shape}")
    n_act = xq.shape[0]
    op, ldo = _out_view(out, (n_act, n))
    if n_act and n:
        ffi = _state["ffi"]
        job = ffi.new(_state["ctypes"]["job"], (ggml_type, n, wp, w_stride, op, ldo))
        matmul = _state["lib"].pyggml_matmul_rows_alone if rows_alone else _state["lib"].pyggml_matmul
        rc = matmul(job, 1, ffi.NULL, 0, ffi.from_buffer(xq), n_act, k, n_threads or 0)
        if rc:
            _call("pyggml_matmul", rc)
    return out


def matmul(ggml_type, W: np.ndarray, x: np.ndarray, out: np.ndarray | None = None,
           n_threads: int | None = None) -> np.ndarray:
    """W (N, K as bytes) @ x (T, K) float32 -> float32 (T, N): the activations quantized
    like ggml, then the products, in one call (one parallel region)."""
    wp, w_stride, n, k, tr = _weights(ggml_type, W)
    _array("x", x, F32, 2)
    if x.shape[1] != k:
        raise UsageError(f"x must have {k} columns to match W, got shape {x.shape}")
    if out is None:
        out = np.empty((x.shape[0], n), np.float32)
    op, ldo = _out_view(out, (x.shape[0], n))
    if x.shape[0] and n:
        ffi = _state["ffi"]
        job = ffi.new(_state["ctypes"]["job"], (int(ggml_type), n, wp, w_stride, op, ldo))
        xp, ldx = _rows_view("x", x)
        act = ffi.new("char[]", x.shape[0] * _act_row_bytes(tr, k)) if tr[2] != GGMLType.F32 \
            else ffi.NULL
        _call("pyggml_matmul", _state["lib"].pyggml_matmul(job, 1, xp, ldx, act, x.shape[0], k,
                                                           n_threads or 0))
    return out


# ----------------------------------------------------------------------------- dequantization

def dequantize_rows(ggml_type, W: np.ndarray, rows, n_per_row: int | None = None,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Rows `rows` of W uint8 (N, row_bytes) as float32 (len(rows), K), exactly as ggml's
    dequantize_row_<type> (the embedding lookup).  rows=None: every row."""
    lib, ffi = load(), _state["ffi"]
    wp, w_stride, n, k, _ = _weights(ggml_type, W)
    if n_per_row is not None and n_per_row != k:
        raise UsageError(f"n_per_row={n_per_row} but W rows hold {k} elements of "
                         f"{GGMLType(int(ggml_type)).name}")
    if rows is None:
        idx, n_sel = ffi.NULL, n
    else:
        rows = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
        n_sel = rows.shape[0]
        if n_sel and (rows.min() < 0 or rows.max() >= n):
            bad = rows[(rows < 0) | (rows >= n)][0]
            raise UsageError(f"row {bad} is outside W's {n} rows")
        idx = ffi.from_buffer("int64_t[]", rows)
    if out is None:
        out = np.empty((n_sel, k), np.float32)
    op, ldo = _out_view(out, (n_sel, k))
    _call("pyggml_dequantize_rows", lib.pyggml_dequantize_rows(
        int(ggml_type), wp, w_stride, n, idx, n_sel, k, op, ldo))
    return out

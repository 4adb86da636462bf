"""The C kernels of kernels/ (libpyggml_cpu) through cffi, in ABI mode.

The same products as the numba layer of pyggml.quants, with the same names:

    vec_dot_type(ggml_type) -> GGMLType          Q8_K / Q8_0 / Q8_1, F32 for float weights
    quantize_activations(x (T, K) f32, vec_dot_type) -> uint8 (T, act_row_bytes)
    matmul_q8(ggml_type, W uint8 (N, row_bytes), xq uint8 (T, act_row_bytes), out f32 (T, N))
    matmul(ggml_type, W, x (T, K) f32) -> f32 (T, N)           quantize + products, one call
    dequantize_rows(ggml_type, W, rows, n_per_row) -> f32 (len(rows), K)
    dequantize(ggml_type, raw, shape) -> f32 `shape`

and what a layer's CPU fast path wants on top:

    Products([(ggml_type, W), ...], max_rows)   products sharing one input (q/k/v, gate/up),
                                                prepared once; products(x) -> (f32 (T, N_i), ...)
    rms_norm(x, weight, eps, out=None)          ggml's numerics (sum of squares in double)
    silu_mul(gate, up, out=None)                silu(gate) * up, ggml's float32 bits
    softmax(scores, n_kv=None, out=None)        ggml_soft_max's float32 bits, row by row

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
from ..format.constants import TYPE_TRAITS, GGMLType
from . import native

ABI_VERSION = 3
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
    return native.library_path("pyggml_cpu", "PYGGML_CPU_LIB")


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
              n_threads: int | None = None) -> np.ndarray:
    """out[t, n] = vec_dot(W row n, xq row t), as ggml's vec_dot_<type>_<vec_dot_type>.

    W uint8 (N, row_bytes) (rows contiguous, e.g. a view of a file), xq uint8
    (T, act_row_bytes) from quantize_activations(x, vec_dot_type(ggml_type)),
    out float32 (T, N) (rows contiguous).  Returns out."""
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
        rc = _state["lib"].pyggml_matmul(job, 1, ffi.NULL, 0, ffi.from_buffer(xq), n_act, k,
                                         n_threads or 0)
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


class Products:
    """Products of several matrices with one input (q/k/v, gate/up), prepared once.

        p = Products([(ggml_type_q, Wq), (ggml_type_k, Wk), (ggml_type_v, Wv)], max_rows=512)
        q, k, v = p(x)          # x float32 (T, K), T <= max_rows -> views (T, N_i) of p's buffers

    All matrices must share K and the activation format.  The outputs are p's own
    buffers (max_rows x N_i floats each: for the output head, ask for the rows you need),
    overwritten by the next call.  One C call quantizes x once and runs every product
    as one job of the thread pool.
    """

    def __init__(self, weights, max_rows: int):
        self._lib = load()
        ffi = self._ffi = _state["ffi"]
        self._float_array = _state["ctypes"]["float[]"]
        weights = list(weights)
        if not 1 <= len(weights) <= 16:
            raise UsageError(f"Products takes 1 to 16 matrices, got {len(weights)}")
        if max_rows < 1:
            raise UsageError(f"max_rows must be positive, got {max_rows}")
        self.n_jobs = len(weights)
        self.max_rows = int(max_rows)
        self._jobs = ffi.new("pyggml_matmul_job[]", self.n_jobs)
        self._keep = []                     # what the jobs point into stays alive with them
        self.outs = []
        self.k = fmt = tr = None
        for j, (ggml_type, W) in enumerate(weights):
            wp, w_stride, n, k, tr = _weights(ggml_type, W)
            if self.k is not None and (k != self.k or tr[2] != fmt):
                raise UsageError(f"matrix {j} has K={k} and activations {tr[2].name}; "
                                 f"matrix 0 has K={self.k} and {fmt.name}")
            self.k, fmt = k, tr[2]
            out = np.empty((self.max_rows, n), np.float32)
            op = ffi.from_buffer("float[]", out, require_writable=True)
            self._jobs[j] = (int(ggml_type), n, wp, w_stride, op, n)
            self._keep += [W, wp, op]
            self.outs.append(out)
        self.vec_dot_type = fmt
        self._views = {}                    # n_act -> the outputs' first n_act rows
        self._act = (ffi.new("char[]", self.max_rows * _act_row_bytes(tr, self.k))
                     if fmt != GGMLType.F32 else ffi.NULL)

    def __call__(self, x: np.ndarray, n_threads: int | None = None) -> tuple[np.ndarray, ...]:
        # the per-token path: the common case (contiguous float32 rows) checked inline
        if (type(x) is np.ndarray and x.dtype is F32 and x.ndim == 2 and x.shape[1] == self.k
                and x.shape[0] <= self.max_rows and x.flags.c_contiguous):
            n_act, xp, ldx = x.shape[0], self._ffi.from_buffer(self._float_array, x), self.k
        else:
            _array("x", x, F32, 2)
            n_act = x.shape[0]
            if x.shape[1] != self.k or n_act > self.max_rows:
                raise UsageError(f"x must have shape (T <= {self.max_rows}, {self.k}), got {x.shape}")
            xp, ldx = _rows_view("x", x)
        if n_act:
            rc = self._lib.pyggml_matmul(self._jobs, self.n_jobs, xp, ldx, self._act, n_act, self.k,
                                         n_threads or 0)
            if rc:
                _call("pyggml_matmul", rc)
        views = self._views.get(n_act)
        if views is None:
            views = self._views[n_act] = tuple(o[:n_act] for o in self.outs)
        return views


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


def dequantize(ggml_type, raw: np.ndarray, shape) -> np.ndarray:
    """A whole tensor: raw uint8 (contiguous, row_bytes * n_rows bytes) -> float32 `shape`."""
    shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 0:
        raise UsageError(f"shape must be a non-empty tuple of sizes, got {shape}")
    block_size, type_size = _type(ggml_type)[:2]
    k = shape[-1]
    if k % block_size:
        raise UsageError(f"rows of {k} elements are not a multiple of "
                         f"{GGMLType(int(ggml_type)).name}'s block of {block_size}")
    n_rows = int(np.prod(shape[:-1], dtype=np.int64))
    row_bytes = k // block_size * type_size
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8:
        raise UsageError("raw must be a uint8 numpy array")
    if raw.nbytes != n_rows * row_bytes or not raw.flags.c_contiguous:
        raise UsageError(f"raw must be C-contiguous with {n_rows * row_bytes} bytes for shape "
                         f"{shape}, got {raw.nbytes} bytes")
    if n_rows * k == 0:
        return np.empty(shape, np.float32)
    out = dequantize_rows(ggml_type, raw.reshape(n_rows, row_bytes), None)
    return out.reshape(shape)


# ----------------------------------------------------------------------------- layer helpers

def _float_rows(arg: str, a: np.ndarray) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim not in (1, 2):
        raise UsageError(f"{arg} must be a float32 array of 1 or 2 dimensions")
    return a


def rms_norm(x: np.ndarray, weight: np.ndarray | None, eps: float,
             out: np.ndarray | None = None) -> np.ndarray:
    """x (T, n) or (n,) -> (x / sqrt(mean(x^2) + eps)) * weight, like ggml_rms_norm + ggml_mul."""
    lib, ffi = load(), _state["ffi"]
    x2 = _float_rows("x", x).reshape(1, -1) if x.ndim == 1 else x
    n = x2.shape[1]
    wp = ffi.NULL
    if weight is not None:
        if _float_rows("weight", weight).shape != (n,) or not weight.flags.c_contiguous:
            raise UsageError(f"weight must be contiguous float32 ({n},), got {weight.shape}")
        wp = ffi.from_buffer("float[]", weight)
    if out is None:
        out = np.empty(x.shape, np.float32)
    elif _float_rows("out", out).shape != x.shape:
        raise UsageError(f"out must have shape {x.shape}, got {out.shape}")
    out2 = out.reshape(1, -1) if out.ndim == 1 else out
    xp, ldx = _rows_view("x", x2)
    op, ldy = _rows_view("out", out2, writable=True)
    _call("pyggml_rms_norm", lib.pyggml_rms_norm(xp, ldx, wp, op, ldy, x2.shape[0], n,
                                                 float(eps)))
    return out


def silu_mul(gate: np.ndarray, up: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """silu(gate) * up = gate / (1 + exp(-gate)) * up, elementwise on same-shape C-contiguous
    float32 arrays, with ggml_vec_swiglu_f32's bits on each row (the last axis): ggml's
    exp, and the C library's expf for the last (row length % 16) elements of a row."""
    lib, ffi = load(), _state["ffi"]
    for arg, a in (("gate", gate), ("up", up)):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous:
            raise UsageError(f"{arg} must be a C-contiguous float32 array")
    if up.shape != gate.shape:
        raise UsageError(f"gate and up must have the same shape, got {gate.shape} and {up.shape}")
    if out is None:
        out = np.empty(gate.shape, np.float32)
    elif (not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != gate.shape
          or not out.flags.c_contiguous or not out.flags.writeable):
        raise UsageError(f"out must be a writable C-contiguous float32 array of shape {gate.shape}")
    n = gate.shape[-1] if gate.ndim else 1
    _call("pyggml_silu_mul", lib.pyggml_silu_mul(ffi.from_buffer("float[]", gate),
                                                 ffi.from_buffer("float[]", up),
                                                 ffi.from_buffer("float[]", out, require_writable=True),
                                                 gate.size // n if n else 0, n))
    return out


def softmax(scores: np.ndarray, n_kv: int | None = None,
            out: np.ndarray | None = None) -> np.ndarray:
    """Softmax over the last axis of float32 scores (..., n), already scaled and masked
    (-inf entries give 0), with the bits of ggml_soft_max on rows of n_kv >= n entries whose
    last n_kv - n are masked, as llama.cpp pads its kv positions: ggml's exp for the first
    n_kv - n_kv % 16 entries, the C library's expf after them.  The default n_kv, n rounded
    up to a multiple of 16, is llama.cpp's case (its n_kv is a multiple of 256), and
    pyggml.model.numerics.softmax's."""
    lib = load()
    if not isinstance(scores, np.ndarray) or scores.dtype != np.float32 or scores.ndim < 1:
        raise UsageError("scores must be a float32 array of at least one dimension")
    n = scores.shape[-1]
    n_kv = -(-n // 16) * 16 if n_kv is None else int(n_kv)
    if n < 1 or n_kv < n:
        raise UsageError(f"softmax: rows of {n} scores need n >= 1 and n_kv >= n, got n_kv={n_kv}")
    if out is None:
        out = np.empty(scores.shape, np.float32)
    elif (not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != scores.shape
          or not out.flags.c_contiguous):
        raise UsageError(f"out must be a C-contiguous float32 array of shape {scores.shape}")
    x2 = scores if scores.ndim == 2 else scores.reshape(-1, n)      # a view when contiguous
    xp, ldx = _rows_view("scores", x2)
    op, ldy = _rows_view("out", out.reshape(-1, n), writable=True)
    _call("pyggml_softmax", lib.pyggml_softmax(xp, ldx, op, ldy, x2.shape[0], n, n_kv))
    return out

"""ggml's own C functions as test oracles, through ctypes on llama-cpp-python's libraries.

llama-cpp-python ships libggml-base (the reference quantizers: ggml_quantize_chunk, what
llama_model_quantize calls; quantize_row_q8_*_ref; the graph API) and libggml-cpu (what
llama.cpp runs: the vec_dot kernels, the run-time activation quantizers quantize_row_q8_0 /
q8_1, the vector functions and the graph executor).  Calling them directly lets property
tests feed any array, not just the tensors of a model file:

    quantize_chunk(type, x, row_bytes, imatrix=None)  llama_model_quantize's bytes (weights)
    quantize_row_ref(name, x, row_bytes)      quantize_row_<name>_ref (files)
    quantize_row_run_time(name, x, row_bytes) ggml-cpu's quantize_row_<name> (activations)
    vec_dot(type, w_row, xq_row, k)           ggml_vec_dot_<type>_<vec_dot_type>
    to_float(type, raw, n)                    ggml's to_float of the type (its
                                              dequantize_row_<type>), ggml_get_type_traits
    vec_dot_traits(type, w_row, xq_row, k)    the vec_dot of ggml_get_type_traits_cpu(type)
    type_traits(type) -> (blck_size, type_size)  ggml's block geometry of a type
    mul_mat(type, W, x)                       ggml_mul_mat as llama.cpp runs it: the CPU
                                              backend, W repacked where llama.cpp would
    vec_soft_max(x, max) -> (y, sum)          ggml_vec_soft_max_f32: y = exp(x - max), sum
    swiglu(gate, up)                          a one-node graph: ggml_swiglu_split
    geglu(gate, up)                           a one-node graph: ggml_geglu_split
    tanh(x)                                   a one-node graph: ggml_tanh
    soft_max(x, mask, scale)                  a one-node graph: ggml_soft_max_ext
    rope_tables(positions, n_dims, ...)       a one-node graph: ggml_rope_ext's cos, sin
    cpu_has_avx512()                          whether libggml-cpu was built for AVX-512
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

import llama_cpp

LIB_DIR = Path(llama_cpp.__file__).parent / "lib"
_base = ctypes.CDLL(str(LIB_DIR / "libggml-base.so"))
_cpu = ctypes.CDLL(str(LIB_DIR / "libggml-cpu.so"))
_cpu.ggml_cpu_init()                     # fills the fp16 tables the vec_dot kernels read

_base.ggml_quantize_chunk.restype = ctypes.c_size_t
_base.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                      ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
_base.ggml_quantize_init.argtypes = [ctypes.c_int]
for _name in ("quantize_row_q8_K_ref", "quantize_row_q8_0_ref", "quantize_row_q8_1_ref"):
    getattr(_base, _name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
for _name in ("quantize_row_q8_0", "quantize_row_q8_1"):
    getattr(_cpu, _name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]

# weight type -> (vec_dot function name, activation block bytes)
VEC_DOT = {
    "Q4_0": "ggml_vec_dot_q4_0_q8_0", "Q4_1": "ggml_vec_dot_q4_1_q8_1",
    "Q5_0": "ggml_vec_dot_q5_0_q8_0", "Q5_1": "ggml_vec_dot_q5_1_q8_1",
    "Q8_0": "ggml_vec_dot_q8_0_q8_0", "IQ4_NL": "ggml_vec_dot_iq4_nl_q8_0",
    "Q2_K": "ggml_vec_dot_q2_K_q8_K", "Q3_K": "ggml_vec_dot_q3_K_q8_K",
    "Q4_K": "ggml_vec_dot_q4_K_q8_K", "Q5_K": "ggml_vec_dot_q5_K_q8_K",
    "Q6_K": "ggml_vec_dot_q6_K_q8_K",
}


def quantize_chunk(ggml_type: int, x: np.ndarray, row_bytes: int,
                   imatrix: np.ndarray | None = None) -> np.ndarray:
    """llama.cpp's quantization of float32 rows x (n, K) -> uint8 (n, row_bytes), with the
    importance imatrix (K,) float32 of each column (its quant_weights) or none."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros((x.shape[0], row_bytes), dtype=np.uint8)
    if imatrix is not None:
        imatrix = np.ascontiguousarray(imatrix, dtype=np.float32)
        assert imatrix.shape == (x.shape[1],)
    _base.ggml_quantize_init(int(ggml_type))
    _base.ggml_quantize_chunk(int(ggml_type), x.ctypes.data, out.ctypes.data, 0, x.shape[0],
                              x.shape[1], None if imatrix is None else imatrix.ctypes.data)
    return out


def _rows(fn, x: np.ndarray, row_bytes: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros((x.shape[0], row_bytes), dtype=np.uint8)
    for i in range(x.shape[0]):
        fn(x[i].ctypes.data, out[i].ctypes.data, x.shape[1])
    return out


def quantize_row_ref(name: str, x: np.ndarray, row_bytes: int) -> np.ndarray:
    """quantize_row_<name>_ref (name: q8_K, q8_0, q8_1) applied to each row of x (n, K)."""
    return _rows(getattr(_base, f"quantize_row_{name}_ref"), x, row_bytes)


def quantize_row_run_time(name: str, x: np.ndarray, row_bytes: int) -> np.ndarray:
    """ggml-cpu's quantize_row_<name> (q8_0, q8_1), what llama.cpp runs on activations on
    x86 (the AVX code of arch/x86/quants.c), applied to each row of x (n, K)."""
    return _rows(getattr(_cpu, f"quantize_row_{name}"), x, row_bytes)


def vec_dot(type_name: str, w_row: np.ndarray, xq_row: np.ndarray, k: int) -> float:
    """ggml_vec_dot_<type>_<vec_dot_type>(k, ...) as llama.cpp's CPU backend calls it."""
    fn = getattr(_cpu, VEC_DOT[type_name])
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.c_void_p,
                   ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    result = ctypes.c_float()
    w_row = np.ascontiguousarray(w_row)
    xq_row = np.ascontiguousarray(xq_row)
    fn(k, ctypes.byref(result), 0, w_row.ctypes.data, 0, xq_row.ctypes.data, 0, 1)
    return result.value


class _TypeTraits(ctypes.Structure):                 # ggml.h's struct ggml_type_traits
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


class _TypeTraitsCpu(ctypes.Structure):              # ggml-cpu.h's struct ggml_type_traits_cpu
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]


_base.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
_cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(_TypeTraitsCpu)
_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                            ctypes.c_int)


def type_traits(ggml_type: int) -> tuple[int, int]:
    """ggml's (blck_size, type_size) of a type."""
    traits = _base.ggml_get_type_traits(int(ggml_type)).contents
    return traits.blck_size, traits.type_size


def to_float(ggml_type: int, raw: np.ndarray, n: int) -> np.ndarray:
    """ggml's own decoding of n numbers stored as ggml_type (raw: their bytes) -> float32 (n,):
    the to_float of the type's traits (dequantize_row_<type>, ggml_fp16_to_fp32_row, ...)."""
    fn = _base.ggml_get_type_traits(int(ggml_type)).contents.to_float
    assert fn, f"ggml has no to_float for type {ggml_type}"
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    out = np.empty(n, np.float32)
    _TO_FLOAT(fn)(raw.ctypes.data, out.ctypes.data, n)
    return out


def vec_dot_traits(ggml_type: int, w_row: np.ndarray, xq_row: np.ndarray, k: int) -> float:
    """The vec_dot llama.cpp's CPU backend runs for ggml_type (ggml_get_type_traits_cpu), on
    one weight row and one activation row of its vec_dot_type."""
    fn = _cpu.ggml_get_type_traits_cpu(int(ggml_type)).contents.vec_dot
    result = ctypes.c_float()
    w_row, xq_row = np.ascontiguousarray(w_row), np.ascontiguousarray(xq_row)
    _VEC_DOT(fn)(k, ctypes.byref(result), 0, w_row.ctypes.data, 0, xq_row.ctypes.data, 0, 1)
    return result.value


# ------------------------------------------------------------------ exp-based vector ops

_cpu.ggml_vec_soft_max_f32.restype = ctypes.c_double
_cpu.ggml_vec_soft_max_f32.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.c_float]
_cpu.ggml_cpu_has_avx512.restype = ctypes.c_int


def cpu_has_avx512() -> bool:
    """Whether libggml-cpu was compiled for AVX-512 (then its exp is ggml_v_expf's AVX-512 form)."""
    return bool(_cpu.ggml_cpu_has_avx512())


def vec_soft_max(x: np.ndarray, max_value: float) -> tuple[np.ndarray, float]:
    """ggml_vec_soft_max_f32 on a 1-D row: (y = exp(x - max) float32, sum of y in double).
    With max_value = 0 and len(x) % 16 == 0, y is ggml_v_expf(x) itself."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty_like(x)
    total = _cpu.ggml_vec_soft_max_f32(x.size, y.ctypes.data, x.ctypes.data, max_value)
    return y, total


# ------------------------------------------------------------------ one-node ggml graphs

class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p),
                ("no_alloc", ctypes.c_bool)]


GGML_TYPE_F32, GGML_TYPE_I32 = 0, 26
_p = ctypes.c_void_p
_f = ctypes.c_float
for _fn, _res, _args in (
        (_base.ggml_init, _p, [_InitParams]), (_base.ggml_free, None, [_p]),
        (_base.ggml_new_tensor_2d, _p, [_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]),
        (_base.ggml_new_tensor, _p, [_p, ctypes.c_int, ctypes.c_int,
                                     ctypes.POINTER(ctypes.c_int64)]),
        (_base.ggml_get_data, _p, [_p]),
        (_base.ggml_swiglu_split, _p, [_p, _p, _p]),
        (_base.ggml_geglu_split, _p, [_p, _p, _p]),
        (_base.ggml_tanh, _p, [_p, _p]),
        (_base.ggml_rope_ext, _p, [_p, _p, _p, _p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                   _f, _f, _f, _f, _f, _f]),
        (_base.ggml_soft_max_ext, _p, [_p, _p, _p, ctypes.c_float, ctypes.c_float]),
        (_base.ggml_new_graph, _p, [_p]), (_base.ggml_build_forward_expand, None, [_p, _p]),
        (_cpu.ggml_graph_compute_with_ctx, ctypes.c_int, [_p, _p, ctypes.c_int])):
    _fn.restype, _fn.argtypes = _res, _args


def _run_graph(build, *inputs: np.ndarray) -> np.ndarray:
    """Put float32 or int32 inputs (numpy order, up to 4 dims) into a fresh ggml context,
    build(ctx, *tensors) -> the result tensor, compute the graph on one thread and return
    the result, float32 of the first input's shape."""
    inputs = [np.ascontiguousarray(a, dtype=np.int32 if a.dtype == np.int32 else np.float32)
              for a in inputs]
    size = 64 * 2**20 + 4 * sum(a.nbytes for a in inputs)       # tensors, graph, work buffer
    ctx = _base.ggml_init(_InitParams(size, None, False))
    assert ctx, "ggml_init failed"
    try:
        tensors = []
        for a in inputs:
            ne = (ctypes.c_int64 * a.ndim)(*reversed(a.shape))     # ggml's ne: innermost first
            t = _base.ggml_new_tensor(ctx, GGML_TYPE_I32 if a.dtype == np.int32 else GGML_TYPE_F32,
                                      a.ndim, ne)
            ctypes.memmove(_base.ggml_get_data(t), a.ctypes.data, a.nbytes)
            tensors.append(t)
        result = build(ctx, *tensors)
        graph = _base.ggml_new_graph(ctx)
        _base.ggml_build_forward_expand(graph, result)
        assert _cpu.ggml_graph_compute_with_ctx(ctx, graph, 1) == 0, "ggml graph failed"
        out = np.empty(inputs[0].shape, np.float32)
        ctypes.memmove(out.ctypes.data, _base.ggml_get_data(result), out.nbytes)
        return out
    finally:
        _base.ggml_free(ctx)


def swiglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """silu(gate) * up for (rows, n) float32, as llama.cpp's FFN computes it
    (ggml_swiglu_split: ggml_vec_swiglu_f32 on each row)."""
    return _run_graph(lambda ctx, g, u: _base.ggml_swiglu_split(ctx, g, u), gate, up)


def geglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """gelu(gate) * up for (rows, n) float32, as llama.cpp's gemma3 FFN computes it
    (ggml_geglu_split: ggml_vec_geglu_f32, the fp16 GELU table, on each row)."""
    return _run_graph(lambda ctx, g, u: _base.ggml_geglu_split(ctx, g, u), gate, up)


def tanh(x: np.ndarray) -> np.ndarray:
    """ggml_tanh of (rows, n) float32: what the final logit soft-cap computes."""
    return _run_graph(lambda ctx, a: _base.ggml_tanh(ctx, a), x)


def rope_tables(positions, n_dims: int, *, freq_base: float, freq_scale: float = 1.0,
                ext_factor: float = 0.0, attn_factor: float = 1.0, n_ctx_orig: int = 0,
                beta_fast: float = 32.0, beta_slow: float = 1.0, freq_factors=None):
    """(cos, sin) (T, n_dims/2) of ggml_rope_ext's cache at the positions: NEOX rope of one
    head whose pairs are (1, 0), which rotate to exactly (cos, sin)."""
    positions = np.asarray(positions, np.int32)
    half = n_dims // 2
    x = np.zeros((len(positions), 1, n_dims), np.float32)
    x[..., :half] = 1.0
    inputs = [x, positions]
    if freq_factors is not None:
        inputs.append(np.asarray(freq_factors, np.float32))
    out = _run_graph(lambda ctx, a, pos, *factors: _base.ggml_rope_ext(
        ctx, a, pos, factors[0] if factors else None, n_dims, 2, n_ctx_orig, freq_base,
        freq_scale, ext_factor, attn_factor, beta_fast, beta_slow), *inputs)
    return out[:, 0, :half], out[:, 0, half:]


def soft_max(x: np.ndarray, mask: np.ndarray | None, scale: float) -> np.ndarray:
    """softmax(x * scale + mask) over each row of (rows, n) float32, as llama.cpp's attention
    computes it without flash attention (ggml_soft_max_ext with an F32 mask, no ALiBi)."""
    if mask is None:
        return _run_graph(lambda ctx, a: _base.ggml_soft_max_ext(ctx, a, None, scale, 0.0), x)
    return _run_graph(lambda ctx, a, m: _base.ggml_soft_max_ext(ctx, a, m, scale, 0.0), x, mask)


# ------------------------------------------------------------------ products as llama.cpp runs them

_P = ctypes.c_void_p
for _lib, _fn, _res, _args in (
        (_base, "ggml_mul_mat", _P, [_P, _P, _P]),
        (_base, "ggml_backend_alloc_ctx_tensors_from_buft", _P, [_P, _P]),
        (_base, "ggml_backend_tensor_set", None, [_P, _P, ctypes.c_size_t, ctypes.c_size_t]),
        (_base, "ggml_backend_tensor_get", None, [_P, _P, ctypes.c_size_t, ctypes.c_size_t]),
        (_base, "ggml_backend_graph_compute", ctypes.c_int, [_P, _P]),
        (_base, "ggml_backend_buffer_free", None, [_P]),
        (_base, "ggml_backend_get_device", _P, [_P]),
        (_base, "ggml_backend_dev_supports_op", ctypes.c_bool, [_P, _P]),
        (_cpu, "ggml_backend_cpu_init", _P, []),
        (_cpu, "ggml_backend_cpu_set_n_threads", None, [_P, ctypes.c_int]),
        (_cpu, "ggml_backend_cpu_buffer_type", _P, []),
        (_cpu, "_Z35ggml_backend_cpu_repack_buffer_typev", _P, [])):   # C++: no C name
    getattr(_lib, _fn).restype, getattr(_lib, _fn).argtypes = _res, _args
_backend = []
# ggml logs each repacked tensor ("repack: repack tensor ..."): a callback that drops it
_LOG = llama_cpp.llama_log_callback(lambda level, text, user_data: None)


def mul_mat(ggml_type: int, W: np.ndarray, x: np.ndarray, n_threads: int = 2) -> np.ndarray:
    """x (T, K) float32 times the quantized rows W uint8 (N, row_bytes) -> (T, N), exactly as
    llama.cpp computes a model's product: one ggml_mul_mat on the CPU backend, with W in the
    CPU_REPACK buffer when the backend takes it there (what llama.cpp's loader asks, through
    the device's supports_op) and in a plain CPU buffer otherwise.  The backend then picks
    its kernel as in a model: repacked gemv/gemm, the tiled K-quant matmul, llamafile's
    tinyBLAS or the vec_dot kernels, by type and number of rows."""
    if not _backend:
        llama_cpp.llama_log_set(_LOG, ctypes.c_void_p(0))
        _backend.append(_cpu.ggml_backend_cpu_init())
    backend = _backend[0]
    _cpu.ggml_backend_cpu_set_n_threads(backend, n_threads)
    W = np.ascontiguousarray(W)
    x = np.ascontiguousarray(x, dtype=np.float32)
    (n, _), (t, k) = W.shape, x.shape
    ctx_w = _base.ggml_init(_InitParams(1 << 20, None, True))
    ctx_x = _base.ggml_init(_InitParams(1 << 20, None, True))
    buffers = []
    try:
        w = _base.ggml_new_tensor_2d(ctx_w, int(ggml_type), k, n)
        xt = _base.ggml_new_tensor_2d(ctx_x, GGML_TYPE_F32, k, t)
        out = _base.ggml_mul_mat(ctx_x, w, xt)
        buffers.append(_base.ggml_backend_alloc_ctx_tensors_from_buft(
            ctx_w, _cpu._Z35ggml_backend_cpu_repack_buffer_typev()))
        if not _base.ggml_backend_dev_supports_op(_base.ggml_backend_get_device(backend), out):
            _base.ggml_backend_buffer_free(buffers.pop())       # not repacked: a plain buffer
            ctx_w2 = _base.ggml_init(_InitParams(1 << 20, None, True))
            _base.ggml_free(ctx_w)
            ctx_w = ctx_w2
            w = _base.ggml_new_tensor_2d(ctx_w, int(ggml_type), k, n)
            out = _base.ggml_mul_mat(ctx_x, w, xt)
            buffers.append(_base.ggml_backend_alloc_ctx_tensors_from_buft(
                ctx_w, _cpu.ggml_backend_cpu_buffer_type()))
        graph = _base.ggml_new_graph(ctx_x)
        _base.ggml_build_forward_expand(graph, out)
        buffers.append(_base.ggml_backend_alloc_ctx_tensors_from_buft(
            ctx_x, _cpu.ggml_backend_cpu_buffer_type()))
        _base.ggml_backend_tensor_set(w, W.ctypes.data, 0, W.nbytes)      # repacks, if so
        _base.ggml_backend_tensor_set(xt, x.ctypes.data, 0, x.nbytes)
        assert _base.ggml_backend_graph_compute(backend, graph) == 0, "ggml graph failed"
        result = np.empty((t, n), np.float32)
        _base.ggml_backend_tensor_get(out, result.ctypes.data, 0, result.nbytes)
        return result
    finally:
        for b in buffers:
            _base.ggml_backend_buffer_free(b)
        _base.ggml_free(ctx_w)
        _base.ggml_free(ctx_x)

"""ggml's own C functions as test oracles, through ctypes on llama-cpp-python's libraries.

llama-cpp-python ships libggml-base (the reference quantizers: ggml_quantize_chunk, what
llama_model_quantize calls; quantize_row_q8_*_ref) and libggml-cpu (the vec_dot kernels
llama.cpp multiplies with).  Calling them directly lets property tests feed any array,
not just the tensors of a model file.
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

# weight type -> (vec_dot function name, activation block bytes)
VEC_DOT = {
    "Q4_0": "ggml_vec_dot_q4_0_q8_0", "Q4_1": "ggml_vec_dot_q4_1_q8_1",
    "Q5_0": "ggml_vec_dot_q5_0_q8_0", "Q5_1": "ggml_vec_dot_q5_1_q8_1",
    "Q8_0": "ggml_vec_dot_q8_0_q8_0", "IQ4_NL": "ggml_vec_dot_iq4_nl_q8_0",
    "Q2_K": "ggml_vec_dot_q2_K_q8_K", "Q3_K": "ggml_vec_dot_q3_K_q8_K",
    "Q4_K": "ggml_vec_dot_q4_K_q8_K", "Q5_K": "ggml_vec_dot_q5_K_q8_K",
    "Q6_K": "ggml_vec_dot_q6_K_q8_K",
}


def quantize_chunk(ggml_type: int, x: np.ndarray, row_bytes: int) -> np.ndarray:
    """llama.cpp's quantization of float32 rows x (n, K), no imatrix -> uint8 (n, row_bytes)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros((x.shape[0], row_bytes), dtype=np.uint8)
    _base.ggml_quantize_init(int(ggml_type))
    _base.ggml_quantize_chunk(int(ggml_type), x.ctypes.data, out.ctypes.data, 0, x.shape[0],
                              x.shape[1], None)
    return out


def quantize_row_ref(name: str, x: np.ndarray, row_bytes: int) -> np.ndarray:
    """quantize_row_<name>_ref (name: q8_K, q8_0, q8_1) applied to each row of x (n, K)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros((x.shape[0], row_bytes), dtype=np.uint8)
    fn = getattr(_base, f"quantize_row_{name}_ref")
    for i in range(x.shape[0]):
        fn(x[i].ctypes.data, out[i].ctypes.data, x.shape[1])
    return out


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

"""pyggml.quants.jit: the vector operations the fast kernels are written in.

What is asserted, and why:
- each vector operation computes what its docstring says, lane by lane, against numpy
  on hypothesis-drawn lanes (full ranges: maddubs' saturation at +-32767, madd's and
  hsum's int32 wrap-around, zero- versus sign-extension), plus hand-checked values: the
  kernels' exactness rests on these being the instructions ggml uses;
- the kernels give the same bits whichever instructions LLVM is allowed: compiled for a
  CPU without AVX2 (jit's generic LLVM IR, what an ARM or an old x86 machine runs) and
  for an AVX2 CPU without AVX-512 (each 64-lane multiply-add as two 32-byte
  instructions), the dequantization and the products (vec_dot, tinyBLAS, repacked and
  tiled orders) of every quantized type equal this machine's build, bit for bit.  Those
  builds run in subprocesses with NUMBA_CPU_NAME / NUMBA_CPU_FEATURES and a numba cache
  of their own (about 30 s of compilation each).
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numba import njit

from pyggml.quants import jit
from pyggml.quants.jit import (add_pairs, bitcast, concat, convert, hsum, lookup16, madd, maddubs,
                               nonzero, part, repeat, splat, vload, vstore)


def lanes(dtype, n):
    info = np.iinfo(dtype)
    return st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n).map(
        lambda v: np.array(v, dtype=dtype))


@njit
def _maddubs32(a, b, out):
    vstore(out, 0, maddubs(vload(a, 0, 32), vload(b, 0, 32)))


@njit
def _maddubs64(a, b, out):
    vstore(out, 0, maddubs(vload(a, 0, 64), vload(b, 0, 64)))


@njit
def _madd(a, b, out):
    vstore(out, 0, madd(vload(a, 0, 16), vload(b, 0, 16)))
    vstore(out, 8, madd(vload(a, 16, 32), vload(b, 16, 32)))


def pair_sums(a, b):
    prod = a.astype(np.int64) * b.astype(np.int64)
    return prod[0::2] + prod[1::2]


@settings(max_examples=50, deadline=None)
@given(a=lanes(np.uint8, 64), b=lanes(np.int8, 64))
def test_maddubs_is_vpmaddubsw(a, b):
    expected = np.clip(pair_sums(a, b), -32768, 32767).astype(np.int16)
    out32, out64 = np.empty(16, np.int16), np.empty(32, np.int16)
    _maddubs32(a, b, out32)
    _maddubs64(a, b, out64)
    assert np.array_equal(out32, expected[:16])
    assert np.array_equal(out64, expected)


def test_maddubs_saturates_hand_checked():
    a = np.zeros(32, np.uint8)
    b = np.zeros(32, np.int8)
    a[:4], b[:4] = [255, 255, 63, 2], [127, 127, -128, 3]       # 64770 -> 32767; -8064 + 6
    out = np.empty(16, np.int16)
    _maddubs32(a, b, out)
    assert list(out[:2]) == [32767, -8058]


@settings(max_examples=50, deadline=None)
@given(a=lanes(np.int16, 48), b=lanes(np.int16, 48))
def test_madd_is_vpmaddwd(a, b):
    out = np.empty(24, np.int32)
    _madd(a, b, out)
    # exact, except -32768 * -32768 twice, which wraps to INT32_MIN as the instruction does
    assert np.array_equal(out, pair_sums(a, b).astype(np.uint32).view(np.int32))


@njit
def _shapes(a, out_i32, out_u8):
    v = vload(a, 0, 32)                                   # uint8
    vstore(out_i32, 0, convert(part(v, 0, 8), np.int32))  # zero-extended
    vstore(out_i32, 8, convert(part(bitcast(v, np.int8), 8, 8), np.int32))   # sign-extended
    vstore(out_i32, 16, add_pairs(convert(part(v, 16, 16), np.int32)))
    vstore(out_u8, 0, concat(part(v, 24, 8), repeat(part(v, 0, 2), 4)))
    vstore(out_u8, 16, nonzero(part(v, 0, 16)) | (part(v, 16, 16) >> np.uint8(7)) << np.uint8(1))
    return hsum(convert(v, np.int32) << np.int32(24))


@settings(max_examples=50, deadline=None)
@given(a=lanes(np.uint8, 32))
def test_lane_shuffles_conversions_and_sums(a):
    out_i32, out_u8 = np.empty(24, np.int32), np.empty(32, np.uint8)
    total = _shapes(a, out_i32, out_u8)
    assert np.array_equal(out_i32[:8], a[:8].astype(np.int32))
    assert np.array_equal(out_i32[8:16], a[8:16].view(np.int8).astype(np.int32))
    assert np.array_equal(out_i32[16:], a[16:32:2].astype(np.int32) + a[17:32:2])
    assert np.array_equal(out_u8[:16], np.concatenate([a[24:], np.repeat(a[:2], 4)]))
    assert np.array_equal(out_u8[16:], (a[:16] != 0) | ((a[16:] >> 7) << 1))
    assert total == np.int32((a.astype(np.int64) << 24).sum() & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


@njit
def _lookup(table, index, out):
    vstore(out, 0, lookup16(vload(table, 0, 16), vload(index, 0, 32)))


@settings(max_examples=30, deadline=None)
@given(table=lanes(np.int8, 16), index=st.lists(st.integers(0, 15), min_size=32, max_size=32))
def test_lookup16_is_a_table_lookup(table, index):
    index = np.array(index, np.uint8)
    out = np.empty(32, np.int8)
    _lookup(table, index, out)
    assert np.array_equal(out, table[index])


@njit
def _scalar_ops(x, out):
    v = splat(x, 8)
    vstore(out, 0, v * np.float32(2) - splat(np.float32(1), 8))
    return v[3]


def test_splat_arithmetic_and_lane_access():
    out = np.empty(8, np.float32)
    assert _scalar_ops(np.float32(1.5), out) == np.float32(1.5)
    assert np.array_equal(out, np.full(8, 2.0, np.float32))


# ---------------------------------------------------------------------- other CPUs

PORTABLE_RUN = textwrap.dedent('''
    import sys
    import numpy as np
    import pyggml.quants as quants
    from pyggml.ggml import GGMLType
    from pyggml.quants import jit
    rng = np.random.default_rng(7)
    out = {"instructions": np.array([jit.HAS_AVX2, jit.HAS_AVX512BW])}
    for name in sys.argv[2:]:
        cls = quants.get(GGMLType[name])
        k = 480 if name == "IQ4_NL" else 512            # IQ4_NL: an odd number of blocks
        blocks = rng.integers(0, 256, (40 * k // cls.block_size, cls.type_size), dtype=np.uint8)
        for offset in cls.fp16_offsets:
            scale = rng.uniform(-0.02, 0.02, blocks.shape[0]).astype(np.float16)
            blocks[:, offset:offset + 2] = scale.view(np.uint8).reshape(-1, 2)
        W = blocks.reshape(40, -1)
        x = rng.standard_normal((9, k)).astype(np.float32)
        out["dequant " + name] = quants.dequantize(cls.ggml_type, W, (40, k))
        for t in (1, 3, 6, 9):                  # vec_dot/gemv, tinyBLAS, gemm + gemv, tiled
            out[f"matmul {name} T={t}"] = quants.matmul(cls.ggml_type, W, x[:t])
    np.savez(sys.argv[1], **out)
''')

QUANTIZED = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# F16C (fp16 conversions) is the one extension the kernels need on x86
# cpu: (NUMBA_CPU_NAME, NUMBA_CPU_FEATURES, (jit.HAS_AVX2, jit.HAS_AVX512BW) expected there)
CPUS = {
    "no AVX2 (generic LLVM IR)": ("x86-64", "+64bit,+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+avx,+f16c",
                                  (False, False)),
    "AVX2 without AVX-512": ("haswell", "+64bit,+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+avx,"
                                        "+avx2,+f16c,+fma,+bmi,+bmi2,+lzcnt,+movbe", (True, False)),
}


def run_kernels(path, env_extra):
    env = dict(os.environ, **env_extra)
    subprocess.run([sys.executable, "-c", PORTABLE_RUN, str(path)] + QUANTIZED, env=env, check=True,
                   capture_output=True, text=True)
    return np.load(path)


@pytest.mark.parametrize("cpu", list(CPUS))
def test_kernels_give_the_same_bits_on_other_cpus(cpu, tmp_path):
    cpu_name, features, instructions = CPUS[cpu]
    if platform.machine() not in ("x86_64", "AMD64") or not {"avx2", "f16c"} <= jit._target_features():
        pytest.skip("compiling for these x86 CPUs needs an x86 host with AVX2 and F16C")
    here = run_kernels(tmp_path / "here.npz", {})
    there = run_kernels(tmp_path / "there.npz", {"NUMBA_CPU_NAME": cpu_name, "NUMBA_CPU_FEATURES": features,
                                                 "NUMBA_CACHE_DIR": str(tmp_path / "cache")})
    assert tuple(there["instructions"]) == instructions         # the path meant to be tested
    assert sorted(here) == sorted(there)
    different = [key for key in here if key != "instructions"
                 and not np.array_equal(here[key].view(np.uint32), there[key].view(np.uint32))]
    assert not different

"""``pyggml quantize`` against llama.cpp's llama-quantize --pure, and ``pyggml inspect``
against hand decoding and gguf-py."""
from __future__ import annotations

import ctypes
import re

import gguf
import numpy as np
import pytest

import pyggml
from pyggml.cli import main

import make_model


def llama_cpp_pure(src, dst, ftype: str):
    """llama.cpp's quantization with --pure: one type for every weight matrix."""
    import llama_cpp
    make_model._quiet_llama()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.pure = True
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                          ctypes.byref(params)) == 0


@pytest.mark.oracle
@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q3_K_M"])
def test_quantize_pure_writes_llama_cpp_bytes(model_path, tmp_path, capsys, ftype):
    """Hidden size 896 exercises the shape fallbacks (Q4_K -> Q5_0, Q3_K -> Q4_0)."""
    src = model_path("qwen2-896-f32")
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    assert main(["quantize", str(src), str(ours), ftype, "--pure"]) == 0
    llama_cpp_pure(src, theirs, ftype)
    with pyggml.open(ours) as a, pyggml.open(theirs) as b:
        assert set(a.tensors) == set(b.tensors)
        for name, info in b.tensors.items():
            assert a.tensors[name].type == info.type, name
            assert np.array_equal(a.raw(name), b.raw(name)), name
        for key in ("general.file_type", "general.quantization_version", "tokenizer.ggml.tokens"):
            assert a.metadata[key] == b.metadata[key], key
        assert len({i.type_name for i in a.tensors.values()}) == 3      # F32, TYPE, fallback
    reader = gguf.GGUFReader(ours)                                       # gguf-py reads it too
    assert len(reader.tensors) == len(b.tensors)


@pytest.mark.parametrize("name, why", [
    ("Q4_0_4_4", "no longer written to files (llama.cpp repacks Q4_0 when it loads: use Q4_0)"),
    ("Q7_K", "not a llama-quantize file type; one of Q1_0, Q2_0, Q4_0, "),
])
def test_quantize_says_why_it_cannot_make_a_type(tmp_path, capsys, name, why):
    """The TYPE is checked before the input is opened (here it does not exist)."""
    assert main(["quantize", str(tmp_path / "in.gguf"), str(tmp_path / "out.gguf"), name]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pyggml quantize: error: TYPE {name!r}: {why}") and err.count("\n") == 1


def get_scale_min_k4(j: int, q: bytes) -> tuple[int, int]:
    """ggml-quants.c's get_scale_min_k4, transcribed (an independent decoding)."""
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def printed_floats(text: str) -> np.ndarray:
    tail = text.split("floats y")[1].splitlines()[1:]
    return np.array([float(v) for line in tail for v in line.split(":")[1].split()], np.float32)


@pytest.mark.oracle
def test_inspect_q4_k_block_field_by_field(model_path, capsys):
    path = model_path("qwen2-tiny-q4_k_m")
    name, index = "blk.0.ffn_gate.weight", 5                  # Q4_K, rows of 256
    assert main(["inspect", str(path), name, "--block", str(index)]) == 0
    out = capsys.readouterr().out
    with pyggml.open(path) as f:
        info = f.tensors[name]
        block = bytes(f.raw(name)[144 * index:144 * index + 144])
    assert info.type_name == "Q4_K"
    assert f"block {index} of {info.n_elements // 256}: row 5, columns 0..255" in out
    assert f"byte offset {info.offset + 144 * index}," in out
    d = float(np.frombuffer(block[0:2], "<f2")[0])
    dmin = float(np.frombuffer(block[2:4], "<f2")[0])
    assert re.search(rf"d\s+@0\s+2 B .* = {d:.8g}\n\s+{block[0]:02x} {block[1]:02x}\n", out)
    for j in range(8):
        sc, m = get_scale_min_k4(j, block[4:16])
        assert re.search(rf"\n\s+{j}: sc\s+{sc} -> \+?{d * sc:.6g}\s+m\s+{m} -> {dmin * m:.6g}\n", out)
    expected = gguf.quants.dequantize(np.frombuffer(block, np.uint8).reshape(1, -1),
                                      gguf.GGMLQuantizationType.Q4_K).reshape(-1)
    np.testing.assert_allclose(printed_floats(out), expected, rtol=1e-5, atol=1e-12)
    quants = [int(v) for line in out.split("quants q")[1].split("floats y")[0].splitlines()[1:]
              if ":" in line for v in line.split(":")[1].split()]
    assert quants[:32] == [b & 15 for b in block[16:48]]          # sub-block 0: low nibbles
    assert quants[32:64] == [b >> 4 for b in block[16:48]]        # sub-block 1: high nibbles


@pytest.mark.oracle
@pytest.mark.parametrize("fixture, name, type_name",
                         [("qwen2-896-iq4_nl", "blk.0.attn_q.weight", "IQ4_NL"),
                          ("qwen2-tiny-q4_k_m", "output.weight", "Q6_K"),
                          ("qwen2-tiny-q3_k_m", "blk.0.ffn_up.weight", "Q3_K"),
                          ("qwen2-896-q4_k_m", "blk.0.attn_q.weight", "Q5_0")])
def test_inspect_shows_the_floats_gguf_py_decodes(model_path, capsys, fixture, name, type_name):
    """The last block of a tensor, as gguf-py reads it from the file and decodes it."""
    path = model_path(fixture)
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    if name not in tensors:                            # tied embeddings: no output.weight
        name = "token_embd.weight"
    qtype = gguf.GGMLQuantizationType[type_name]
    assert tensors[name].tensor_type == qtype
    raw = np.asarray(tensors[name].data).reshape(-1)
    type_size = gguf.GGML_QUANT_SIZES[qtype][1]
    index = raw.size // type_size - 1
    expected = gguf.quants.dequantize(raw[index * type_size:].reshape(1, -1), qtype).reshape(-1)
    assert main(["inspect", str(path), name, "--block", str(index)]) == 0
    out = capsys.readouterr().out
    assert f"{name}  {type_name}" in out
    np.testing.assert_allclose(printed_floats(out), expected, rtol=1e-5, atol=1e-12)


def test_inspect_names_the_valid_block_range(model_path, capsys):
    path = model_path("qwen2-tiny-q4_k_m")
    assert main(["inspect", str(path), "blk.0.ffn_down.weight", "--block", "512"]) == 2
    assert "has blocks 0..511" in capsys.readouterr().err
    assert main(["inspect", str(path), "no.such.tensor"]) == 2
    assert "no tensor named 'no.such.tensor'" in capsys.readouterr().err

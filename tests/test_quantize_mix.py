"""``pyggml quantize`` against llama.cpp's own llama_model_quantize (llama-cpp-python), whole
files byte for byte: every file type pyggml can write, llama-quantize's per-tensor rules
(pyggml.quants.mix) on models of different shapes, importance matrices in llama.cpp's GGUF
and legacy .dat forms, the type options, --pure, a split input and a split output."""
from __future__ import annotations

import struct

import numpy as np
import pytest

import pyggml
from pyggml.cli import main
from pyggml.format.writer import split_gguf
from pyggml.ggml import GGMLType

import make_model
from llama_quantize import llama_quantize, write_imatrix_dat, write_imatrix_gguf, write_moe_model

# llama-quantize's file types of the K-quants, the legacy types and the floats
WRITABLE = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
            "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "F16", "BF16", "F32"]
# and those of the i-quants, ternary, 1- and 2-bit and FP4 types: byte for byte where the
# registry can quantize every type the mix needs, refused by name (and tested so) where not
LOW_BIT = ["IQ4_XS", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M",
           "IQ1_S", "IQ1_M", "TQ1_0", "TQ2_0", "Q2_K_S", "Q1_0", "Q2_0", "MXFP4_MOE"]
# (llama.cpp refuses these without an importance matrix: some tensor's type needs one)
NEED_IMATRIX = ("IQ3_XXS", "IQ3_XS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M",
                "Q2_K_S")


@pytest.fixture(scope="session")
def deep_model(tmp_path_factory):
    """16 llama layers (use_more_bits picks among them), no grouped attention (n_gqa 1),
    an output head of its own, n_ff 768 (ffn_down in K-quants), a small vocabulary."""
    path = tmp_path_factory.mktemp("deep") / "llama-16x256-f32.gguf"
    make_model.write_model(path, make_model.ModelSpec(
        arch="llama", n_embd=256, n_ff=768, n_layer=16, n_head=4, n_head_kv=4, tied=False,
        vocab="qwen2.5", n_vocab=1024, seed=3))
    return path


@pytest.fixture(scope="session")
def low_bit_model(tmp_path_factory):
    """The deep model's shape at a third of its weights, for the slow low-bit quantizers
    (of both sides): 8 layers (the rules' first and last eighth are one layer each)."""
    path = tmp_path_factory.mktemp("low-bit") / "llama-8x256-f32.gguf"
    make_model.write_model(path, make_model.ModelSpec(
        arch="llama", n_embd=256, n_ff=512, n_layer=8, n_head=4, n_head_kv=4, tied=False,
        vocab="qwen2.5", n_vocab=512, seed=4))
    return path


def assert_same_file(ours, theirs):
    """Byte for byte; on a difference, name the first tensor or key that differs."""
    a, b = ours.read_bytes(), theirs.read_bytes()
    if a == b:
        return
    with pyggml.open(ours) as x, pyggml.open(theirs) as y:
        assert list(x.fields) == list(y.fields), "metadata keys differ"
        assert list(x.tensors) == list(y.tensors), "tensor order differs"
        for name, info in y.tensors.items():
            assert x.tensors[name].type_name == info.type_name, f"{name}: type"
            assert np.array_equal(x.raw(name), y.raw(name)), f"{name} ({info.type_name}): bytes"
        for key in y.fields:
            assert x.metadata[key] == y.metadata[key], key
    raise AssertionError(f"files differ ({len(a)} and {len(b)} bytes)")


def quantize_both(tmp_path, src, ftype, args=(), **llama_options):
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    assert main(["quantize", str(src), str(ours), ftype, "--threads", "2", *args]) == 0
    llama_quantize(src, theirs, ftype, **llama_options)
    assert_same_file(ours, theirs)
    return ours


def tensor_types(path) -> dict[str, str]:
    with pyggml.open(path) as f:
        return {name: info.type_name for name, info in f.tensors.items()}


# ---------------------------------------------------------------------- the mixes

@pytest.mark.oracle
@pytest.mark.parametrize("ftype", WRITABLE)
def test_file_type_is_llama_quantize_byte_for_byte(deep_model, tmp_path, ftype):
    ours = quantize_both(tmp_path, deep_model, ftype)
    if ftype == "Q4_K_M":           # the mix is a mix: attn_v and ffn_down by use_more_bits
        types = tensor_types(ours)
        assert types["blk.0.attn_v.weight"] == types["blk.15.ffn_down.weight"] == "Q6_K"
        assert types["blk.3.attn_v.weight"] == types["blk.3.ffn_down.weight"] == "Q4_K"
        assert types["blk.4.attn_v.weight"] == "Q6_K" and types["output.weight"] == "Q6_K"


@pytest.mark.oracle
@pytest.mark.parametrize("ftype", ["Q2_K", "Q3_K_M", "Q4_K_M", "Q6_K", "Q4_0", "IQ4_NL", "IQ4_XS",
                                   "IQ2_XXS", "TQ1_0"])
def test_fallbacks_for_rows_of_896(model_path, tmp_path, capsys, ftype):
    """Hidden size 896 (Qwen2.5-0.5B's): most rows are no whole K-quant super-blocks, the
    embedding is the output head (tied) and 7 query heads share a kv head (n_gqa 7).
    (IQ2_XXS: ffn_down's rows of 4864 are whole super-blocks, and need the imatrix.)"""
    src = model_path("qwen2-896-f32")
    args, options = (), {}
    if ftype in NEED_IMATRIX:
        path = tmp_path / "imatrix.gguf"
        expected = write_imatrix_gguf(path, importance(src, seed=5), 2, "calibration", 1)
        args = ("--imatrix", str(path))
        options = dict(imatrix=expected, imatrix_file=(str(path), "calibration", 1))
    ours = quantize_or_refused(tmp_path, src, ftype, capsys, args, **options)
    fallback = {"Q2_K": "Q4_0", "Q3_K_M": "Q4_0", "Q4_K_M": "Q5_0", "Q6_K": "Q8_0",
                "Q4_0": "Q4_0", "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_NL", "IQ2_XXS": "IQ4_NL",
                "TQ1_0": "Q4_0"}[ftype]
    if ours is not None:
        assert tensor_types(ours)["blk.0.attn_q.weight"] == fallback


@pytest.mark.oracle
@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q3_K_L"])
def test_fused_attention_takes_the_attn_v_rules(model_path, tmp_path, ftype):
    """Phi-3's attn_qkv counts as attn_v in llama.cpp (its own attn_qkv rules never run)."""
    ours = quantize_both(tmp_path, model_path("phi3-f32"), ftype)
    types = tensor_types(ours)          # 2 layers: use_more_bits picks the last
    expected = {"Q4_K_M": ("Q4_K", "Q6_K"), "Q3_K_L": ("Q5_K", "Q5_K")}[ftype]
    assert (types["blk.0.attn_qkv.weight"], types["blk.1.attn_qkv.weight"]) == expected


def missing_quantizers(path, ftype: str, has_imatrix: bool) -> list[str]:
    """The ggml types the file type gives some tensor of the model that the registry
    cannot quantize (yet)."""
    from pyggml import quants
    from pyggml.cli.quant import model_shape
    from pyggml.quants import mix
    with pyggml.open(path) as f:
        names = mix.llama_order(f.tensors)
        plan = mix.Mix(ftype, model_shape(f), names, has_imatrix=has_imatrix)
        wanted = {plan.tensor_type(name, f.tensors[name].shape, GGMLType(f.tensors[name].type))
                  for name in names}
    return sorted(t.name for t in wanted
                  if quants.TYPES.get(t) is None or not quants.TYPES[t].has_quantizer())


def quantize_or_refused(tmp_path, src, ftype, capsys, args=(), **llama_options):
    """Byte for byte with llama.cpp if pyggml can quantize every type the mix needs;
    else the typed refusal that names the type, and no file."""
    missing = missing_quantizers(src, ftype, "--imatrix" in args)
    if not missing:
        return quantize_both(tmp_path, src, ftype, args, **llama_options)
    out = tmp_path / "ours.gguf"
    assert main(["quantize", str(src), str(out), ftype, *args]) == 2
    err = capsys.readouterr().err
    assert f"TYPE {ftype}: " in err and "which pyggml cannot quantize yet" in err, err
    assert any(f"would be {name}," in err for name in missing), err
    assert not out.exists()
    return None


@pytest.mark.oracle
@pytest.mark.parametrize("ftype", LOW_BIT)
def test_low_bit_file_type_is_llama_quantize_byte_for_byte(low_bit_model, tmp_path, capsys, ftype):
    """With an importance matrix where llama.cpp needs one (GGUF form)."""
    args, options = (), {}
    if ftype in NEED_IMATRIX:
        path = tmp_path / "imatrix.gguf"
        expected = write_imatrix_gguf(path, importance(low_bit_model, seed=2), 10, "calibration", 5)
        args = ("--imatrix", str(path))
        options = dict(imatrix=expected, imatrix_file=(str(path), "calibration", 5))
    ours = quantize_or_refused(tmp_path, low_bit_model, ftype, capsys, args, **options)
    if ours is not None and ftype == "IQ2_M":     # 8 layers: IQ3_S for the first ffn_down
        types = tensor_types(ours)
        assert types["blk.0.ffn_down.weight"] == "IQ3_S" and types["blk.1.ffn_down.weight"] == "IQ2_S"
        assert types["output.weight"] == "Q5_K"
    if ours is not None and ftype == "IQ3_XS":    # IQ3_XXS for ffn_gate in layers 1 to 6
        types = tensor_types(ours)
        assert types["blk.0.ffn_gate.weight"] == types["blk.7.ffn_gate.weight"] == "IQ3_S"
        assert types["blk.1.ffn_gate.weight"] == types["blk.6.ffn_gate.weight"] == "IQ3_XXS"


@pytest.mark.oracle
@pytest.mark.parametrize("ftype", ["MXFP4_MOE", "Q4_K_M", "IQ3_M", "IQ2_XS"])
def test_expert_model(tmp_path, capsys, ftype):
    """A Qwen3-MoE of 8 experts: MXFP4 for the expert tensors, llama.cpp's 8-expert rules
    (attn_v, attn_k Q8_0, ...), each expert's rows quantized with its own importance."""
    src = write_moe_model(tmp_path / "moe-f32.gguf")
    args, options = (), {}
    if ftype in NEED_IMATRIX or ftype == "IQ3_M":
        rng = np.random.default_rng(4)
        entries = {}
        with pyggml.open(src) as f:
            for name, info in f.tensors.items():
                if name.endswith(".weight") and len(info.shape) >= 2 and "token_embd" not in name:
                    n = info.shape[-1] * (info.shape[0] if len(info.shape) == 3 else 1)
                    entries[name] = np.exp(rng.normal(0, 2, n)).astype(np.float32)
        path = tmp_path / "imatrix.gguf"
        expected = write_imatrix_gguf(path, entries, 4, "moe", 3)
        args = ("--imatrix", str(path))
        options = dict(imatrix=expected, imatrix_file=(str(path), "moe", 3))
    ours = quantize_or_refused(tmp_path, src, ftype, capsys, args, **options)
    if ours is not None and ftype == "MXFP4_MOE":
        types = tensor_types(ours)
        assert types["blk.0.ffn_down_exps.weight"] == "MXFP4"
        assert types["blk.0.attn_q.weight"] == types["output.weight"] == "Q8_0"
        assert types["blk.0.ffn_gate_inp.weight"] == "F32"


# ---------------------------------------------------------------------- options

@pytest.mark.oracle
@pytest.mark.parametrize("args, options", [
    (["--pure"], dict(pure=True)),
    (["--output-tensor-type", "q8_0", "--token-embedding-type", "Q4_0"],
     dict(output_tensor_type=int(GGMLType.Q8_0), token_embedding_type=int(GGMLType.Q4_0))),
    (["--leave-output-tensor"], dict(quantize_output_tensor=False)),
])
def test_type_options(deep_model, tmp_path, args, options):
    quantize_both(tmp_path, deep_model, "Q4_K_M", args, **options)


@pytest.mark.oracle
def test_output_type_of_tied_embeddings(model_path, tmp_path):
    """Without output.weight the embedding is the head: --output-tensor-type types it."""
    ours = quantize_both(tmp_path, model_path("qwen2-896-f32"), "Q4_K_M",
                         ["--output-tensor-type", "f16"], output_tensor_type=int(GGMLType.F16))
    assert tensor_types(ours)["token_embd.weight"] == "F16"


@pytest.mark.oracle
def test_requantize_only_when_allowed(model_path, tmp_path, capsys):
    src = model_path("qwen2-896-q4_k_m")
    assert main(["quantize", str(src), str(tmp_path / "no.gguf"), "Q4_0"]) == 2
    # (token_embd stays Q8_0: the first tensor to convert is blk.0's attn_k, Q4_K's fallback)
    assert "blk.0.attn_k.weight is already Q5_0; requantizing loses precision (use " \
           "--allow-requantize)" in capsys.readouterr().err
    assert not (tmp_path / "no.gguf").exists()
    quantize_both(tmp_path, src, "Q4_0", ["--allow-requantize"], allow_requantize=True)


# ---------------------------------------------------------------------- importance matrices

def importance(path, seed: int = 0) -> dict[str, np.ndarray]:
    """An importance per column of every weight matrix llama-imatrix would see: positive,
    over several decades, with some columns never reached (0)."""
    rng = np.random.default_rng(seed)
    entries = {}
    with pyggml.open(path) as f:
        for name, info in f.tensors.items():
            if len(info.shape) == 2 and name != "token_embd.weight":
                values = np.exp(rng.normal(0, 2, info.shape[-1])) * (rng.random(info.shape[-1]) > 0.05)
                entries[name] = values.astype(np.float32)
    return entries


@pytest.mark.oracle
@pytest.mark.parametrize("form, ftype", [("gguf", "Q4_K_M"), ("gguf", "Q2_K_S"), ("gguf", "Q4_0"),
                                         ("gguf", "IQ4_NL"), ("gguf", "Q3_K_S"), ("gguf", "Q5_1"),
                                         ("gguf", "Q6_K"), ("dat", "Q5_K_M"), ("dat", "Q5_0")])
def test_imatrix(deep_model, tmp_path, form, ftype):
    """Both imatrix forms, as llama-quantize reads them and passes them on; Q2_K_S needs
    one, Q4_0 spends more bits on the first ffn_down with one, IQ4_NL fewer."""
    entries = importance(deep_model)
    path = tmp_path / f"imatrix.{form}"
    write = write_imatrix_gguf if form == "gguf" else write_imatrix_dat
    expected = write(path, entries, 137, "wiki.train.raw", 42)
    ours = quantize_both(tmp_path, deep_model, ftype, ["--imatrix", str(path)], imatrix=expected,
                         imatrix_file=(str(path), "wiki.train.raw", 42))
    with pyggml.open(ours) as f:
        assert f.metadata["quantize.imatrix.entries_count"] == len(entries)
        if ftype == "Q4_0":
            assert f.tensors["blk.0.ffn_down.weight"].type_name == "Q4_1"


@pytest.mark.oracle
def test_imatrix_on_rows_that_fall_back(model_path, tmp_path):
    """The 896 model: fallback types (Q5_0, Q8_0) quantized with the importance too."""
    src = model_path("qwen2-896-f32")
    entries = importance(src, seed=1)
    path = tmp_path / "imatrix.gguf"
    expected = write_imatrix_gguf(path, entries, 3.0, "calibration", 7)
    quantize_both(tmp_path, src, "Q4_K_M", ["--imatrix", str(path)], imatrix=expected,
                  imatrix_file=(str(path), "calibration", 7))


def test_imatrix_required_and_checked(deep_model, tmp_path, capsys):
    out = tmp_path / "out.gguf"
    assert main(["quantize", str(deep_model), str(out), "Q2_K_S"]) == 2
    assert "blk.0.attn_k.weight would be Q2_K, which needs an importance matrix (--imatrix FILE)" \
        in capsys.readouterr().err
    entries = importance(deep_model)
    entries["blk.0.attn_q.weight"] = entries["blk.0.attn_q.weight"][:100]
    path = tmp_path / "short.dat"
    write_imatrix_dat(path, entries, 1, "x", 1)
    assert main(["quantize", str(deep_model), str(out), "Q4_K_M", "--imatrix", str(path)]) == 2
    assert f"{path}: 100 importances for blk.0.attn_q.weight, whose rows of 256 x 1 experts need 256" \
        in capsys.readouterr().err
    path.write_bytes(struct.pack("<i", 3) + b"\x05\0\0\0attn")
    assert main(["quantize", str(deep_model), str(out), "Q4_K_M", "--imatrix", str(path)]) == 2
    assert "offset 8: entry 0 name: needs 5 bytes, 4 left" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------- shards

@pytest.mark.oracle
def test_any_shard_in_split_size_out(model_path, tmp_path):
    """A split input (gguf-py's shards; pyggml reads them from shard 2, llama.cpp from shard
    1) and --split-max-size: the shards are llama.cpp's file split as gguf-split splits."""
    shards = make_model.split_with_gguf_py("qwen2-896-f32", tmp_path, max_tensors=8)
    ours = tmp_path / "ours.gguf"
    assert main(["quantize", str(shards[1]), str(ours), "Q4_K_M", "--split-max-size", "5M"]) == 0
    theirs = tmp_path / "theirs.gguf"
    llama_quantize(shards[0], theirs, "Q4_K_M")
    expected = split_gguf(theirs, tmp_path / "expected", max_bytes=5_000_000)
    ours_shards = sorted(tmp_path.glob("ours-*-of-*.gguf"))
    assert len(ours_shards) == len(expected) > 1
    for a, b in zip(ours_shards, expected):
        assert_same_file(a, b)


# ---------------------------------------------------------------------- refusals

def test_a_type_without_quantizer_is_refused_by_name(deep_model, tmp_path, capsys, monkeypatch):
    """Types plug in by the registry: one that has no quantizer (as Q6_K here) stops the
    file type that needs it, naming the first tensor, before anything is written."""
    from pyggml import quants
    monkeypatch.delitem(quants.TYPES, GGMLType.Q6_K)
    assert main(["quantize", str(deep_model), str(tmp_path / "out.gguf"), "Q4_K_M"]) == 2
    assert capsys.readouterr().err == ("pyggml quantize: error: TYPE Q4_K_M: output.weight would be "
                                       "Q6_K, which pyggml cannot quantize yet\n")
    assert not (tmp_path / "out.gguf").exists()


def test_weights_that_are_not_finite_are_refused(deep_model, tmp_path, capsys):
    """An inf in the input (ggml would quantize it to garbage): the tensor and row named,
    nothing written."""
    src = tmp_path / "inf.gguf"
    data = bytearray(deep_model.read_bytes())
    with pyggml.open(deep_model) as f:
        offset = f.tensors["blk.2.ffn_up.weight"].offset        # (in the file)
    data[offset + 4 * (5 * 256 + 9):offset + 4 * (5 * 256 + 10)] = struct.pack("<f", float("inf"))
    src.write_bytes(bytes(data))
    out = tmp_path / "out.gguf"
    assert main(["quantize", str(src), str(out), "Q4_K_M"]) == 2
    assert "blk.2.ffn_up.weight, rows 0 on: quantize_stored: cannot quantize to Q4_K: row 5, " \
           "column 9 is inf" in capsys.readouterr().err
    assert not out.exists()

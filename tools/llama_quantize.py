"""llama.cpp's quantization as llama-quantize runs it, and its importance-matrix files, for
the tests and benchmarks of ``pyggml quantize`` (test tooling: it imports llama-cpp-python
and gguf-py, the oracles).

    llama_quantize(src, dst, "Q4_K_M", pure=True, imatrix=..., imatrix_file=...)
    write_imatrix_gguf(path, entries, count, dataset, chunk_count)   llama-imatrix's GGUF form
    write_imatrix_dat(path, entries, ncall, dataset, chunk_count)    its legacy .dat form
    write_moe_model(path, n_expert=8)       a small Qwen3-MoE (3-D expert tensors) to quantize

llama-cpp-python ships libllama (llama_model_quantize) but not the llama-quantize program;
``llama_quantize`` gives the function what the program gives it (tools/quantize/quantize.cpp):
the parameters, the imatrix read and normalized, and the metadata it writes about the
imatrix file as key overrides.
"""
from __future__ import annotations

import ctypes
import struct

import numpy as np

import make_model


def llama_quantize(src, dst, ftype, *, imatrix=None, imatrix_file=None, nthread=2, **options):
    """llama.cpp's llama_model_quantize, given what llama-quantize would give it: params
    (pure, allow_requantize, quantize_output_tensor, output_tensor_type, ...), the imatrix
    as name -> float32 values, and the metadata llama-quantize adds about the imatrix file
    (imatrix_file: (path, dataset or None, chunk_count))."""
    import llama_cpp
    make_model._quiet_llama()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_ALL_F32" if ftype == "F32"
                           else f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.nthread = nthread
    for key, value in options.items():
        setattr(params, key, value)
    keep = []
    if imatrix is not None:
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, values) in enumerate(imatrix.items()):
            values = np.ascontiguousarray(values, dtype=np.float32)
            keep.append(values)
            entries[i].name = name.encode()
            entries[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = values.size
        params.imatrix = entries
        path, dataset, chunk_count = imatrix_file
        overrides = [("quantize.imatrix.file", llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR, path)]
        if dataset is not None:
            overrides.append(("quantize.imatrix.dataset", llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR, dataset))
        overrides.append(("quantize.imatrix.entries_count", llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT,
                          len(imatrix)))
        if chunk_count > 0:
            overrides.append(("quantize.imatrix.chunks_count", llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT,
                              chunk_count))
        kv = (llama_cpp.llama_model_kv_override * (len(overrides) + 1))()
        for i, (key, tag, value) in enumerate(overrides):
            kv[i].key, kv[i].tag = key.encode(), tag
            if tag == llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR:
                kv[i].value.val_str = str(value).encode()[:127]
            else:
                kv[i].value.val_i64 = value
        params.kv_overrides = kv
        keep += [entries, kv]
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize {ftype} failed"


def write_imatrix_gguf(path, entries, count: float, dataset: str, chunk_count: int) -> dict:
    """llama-imatrix's GGUF form (written with gguf-py): in_sum2 = importance * count.
    Returns what llama-quantize makes of it: in_sum2 / count."""
    import gguf
    writer = gguf.GGUFWriter(path, "imatrix")
    writer.add_array("imatrix.datasets", [dataset])
    writer.add_uint32("imatrix.chunk_count", chunk_count)
    writer.add_uint32("imatrix.chunk_size", 512)
    expected = {}
    for name, values in entries.items():
        sums = (values * np.float32(count)).astype(np.float32)
        writer.add_tensor(f"{name}.in_sum2", sums)
        writer.add_tensor(f"{name}.counts", np.array([count], np.float32))
        expected[name] = sums / np.float32(count)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


def write_imatrix_dat(path, entries, ncall: int, dataset: str, chunk_count: int) -> dict:
    """The legacy .dat form: running means times ncall.  Returns values / ncall."""
    out = [struct.pack("<i", len(entries))]
    expected = {}
    for name, values in entries.items():
        stored = (values * np.float32(ncall)).astype(np.float32)
        out += [struct.pack("<i", len(name)), name.encode(), struct.pack("<ii", ncall, values.size),
                stored.tobytes()]
        expected[name] = stored / np.float32(ncall)
    out += [struct.pack("<ii", chunk_count, len(dataset)), dataset.encode()]
    path.write_bytes(b"".join(out))
    return expected


def write_moe_model(path, *, n_expert: int = 8, n_layer: int = 4, n_embd: int = 256,
                    n_ff_exp: int = 128, n_vocab: int = 512, seed: int = 5):
    """A random-weight Qwen3-MoE in F32 with what llama_model_quantize reads: the
    hyperparameters, expert tensors of (n_expert, rows, ne0), a router
    (ffn_gate_inp, never quantized) and an output head of its own.  The expert FFN's
    ne0 of n_ff_exp (128) is no whole K-quant super-block: ffn_down_exps falls back."""
    import gguf
    rng = np.random.default_rng(seed)
    n_head, n_head_kv, head_dim = 4, 2, 64
    writer = gguf.GGUFWriter(path, "qwen3moe")
    writer.add_name("pyggml-test-qwen3moe")
    writer.add_context_length(256)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(4 * n_embd)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_expert_count(n_expert)
    writer.add_expert_used_count(2)
    writer.add_expert_feed_forward_length(n_ff_exp)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    def matrix(*shape):
        return rng.standard_normal(shape, dtype=np.float32) / np.float32(shape[-1] ** 0.5)
    tensors = {"token_embd.weight": matrix(n_vocab, n_embd)}
    for i in range(n_layer):
        p = f"blk.{i}."
        tensors.update({
            p + "attn_norm.weight": np.ones(n_embd, np.float32),
            p + "attn_q.weight": matrix(n_head * head_dim, n_embd),
            p + "attn_k.weight": matrix(n_head_kv * head_dim, n_embd),
            p + "attn_v.weight": matrix(n_head_kv * head_dim, n_embd),
            p + "attn_q_norm.weight": np.ones(head_dim, np.float32),
            p + "attn_k_norm.weight": np.ones(head_dim, np.float32),
            p + "attn_output.weight": matrix(n_embd, n_head * head_dim),
            p + "ffn_norm.weight": np.ones(n_embd, np.float32),
            p + "ffn_gate_inp.weight": matrix(n_expert, n_embd),
            p + "ffn_gate_exps.weight": matrix(n_expert, n_ff_exp, n_embd),
            p + "ffn_up_exps.weight": matrix(n_expert, n_ff_exp, n_embd),
            p + "ffn_down_exps.weight": matrix(n_expert, n_embd, n_ff_exp),
        })
    tensors["output_norm.weight"] = np.ones(n_embd, np.float32)
    tensors["output.weight"] = matrix(n_vocab, n_embd)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path

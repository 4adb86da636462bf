"""A whole transformer block in one C call: pyggml_layer_forward (kernels/layer.c).

forward.layer_forward is the readable definition of a block: 15 numpy and kernel steps.
For a small model those steps' Python overhead is most of a decode step's time
(SmolLM2-135M: 30 layers x 15 steps per token), so the C backend runs the same steps
inside one call.  This module only describes a layer to C: a ``pyggml_layer`` struct
filled once per layer from its BlockSpec (shapes, rope mode, attention and Q scales,
window, the kv cache's types; a bias or norm pointer is NULL where the block does not take
that step, the GELU table pointer NULL for SiLU) with pointers to the weights (the file's
mmap views, not copies; a fused tensor's row views), norms and the layer's kv cache (fp16,
or Q8_0 / Q4_0 blocks: forward.kv_cache), kept alive by references held here.  Every
optional step of a BlockSpec (arch.STEPS) has its field, so the C block runs every
architecture the numpy block does.

    c_block = CBlock(block_spec, layer_weights, k_cache, v_cache)
    x = c_block(x, pos0, cos, sin, scratch, n_threads)     # x (T, n_embd) float32, in place
    x = run_blocks([c_block_of_seq_0, ...], [pos_0, ...], x, cos, sin, scratch, n_threads)
                                              # one token of each sequence (x (n_seqs, n_embd))
"""
from __future__ import annotations

import numpy as np

from ..errors import BackendError
from ..model.arch import FFN_GELU, FFN_SILU, KV_CACHE_TYPES, ROPE_NEOX, BlockSpec
from ..model.forward import kv_cache
from ..model.numerics import gelu_table
from ..model.weights import LayerWeights, QMatrix
from . import cpu_c


class Scratch:
    """One growable work buffer shared by the blocks of a model (they run one at a time)."""

    def __init__(self):
        self.buffer = np.empty(0, np.uint8)

    def get(self, nbytes: int) -> np.ndarray:
        if self.buffer.nbytes < nbytes:
            self.buffer = np.empty(nbytes, np.uint8)
        return self.buffer


class CBlock:
    def __init__(self, block: BlockSpec, w: LayerWeights, k_cache: np.ndarray,
                 v_cache: np.ndarray):
        lib, ffi = cpu_c.load(), cpu_c.ffi()
        for name, cache, cache_type in (("k_cache", k_cache, block.type_k),
                                        ("v_cache", v_cache, block.type_v)):
            expected = kv_cache(block, 1)[name == "v_cache"]        # its dtype and row shape
            if (cache.dtype != expected.dtype or not cache.flags.c_contiguous
                    or cache.shape[1:] != expected.shape[1:]):
                raise BackendError(f"{name} must be C-contiguous {cache_type} (n_ctx, "
                                   f"{', '.join(map(str, expected.shape[1:]))}) "
                                   f"{expected.dtype} (forward.kv_cache)")
        if block.rope.n_rot != block.head_dim:
            raise BackendError(f"the C block rotates whole heads: n_rot {block.rope.n_rot} "
                               f"!= head_dim {block.head_dim}")
        if block.ffn_act not in (FFN_SILU, FFN_GELU):
            raise BackendError(f"the C block has no FFN activation {block.ffn_act!r}")
        self.lib, self.ffi = lib, ffi
        self.keep = [k_cache, v_cache]              # what the struct points into
        L = self.layer = ffi.new("pyggml_layer *")
        L.n_embd, L.n_head, L.n_head_kv = block.n_embd, block.n_head, block.n_head_kv
        L.head_dim, L.n_ff, L.n_ctx = block.head_dim, block.n_ff, k_cache.shape[0]
        L.rope_neox = int(block.rope.mode == ROPE_NEOX)
        L.rms_eps, L.attn_scale = block.rms_eps, block.attn_scale
        L.q_scale, L.window = block.q_scale, block.window
        n_embd, n_q, n_gqa, d = block.n_embd, block.n_embd_q, block.n_embd_gqa, block.head_dim
        L.attn_norm = self._floats(w.attn_norm, n_embd)
        L.ffn_norm = self._floats(w.ffn_norm, n_embd)
        L.bq, L.bk, L.bv = ((self._floats(w.bq, n_q), self._floats(w.bk, n_gqa),
                             self._floats(w.bv, n_gqa)) if block.qkv_bias else (ffi.NULL,) * 3)
        L.q_norm, L.k_norm = ((self._floats(w.q_norm, d), self._floats(w.k_norm, d))
                              if block.qk_norm else (ffi.NULL,) * 2)
        L.attn_post_norm, L.ffn_post_norm = (
            (self._floats(w.attn_post_norm, n_embd), self._floats(w.ffn_post_norm, n_embd))
            if block.post_norms else (ffi.NULL,) * 2)
        if block.ffn_act == FFN_GELU:
            table = gelu_table().view(np.uint16)      # one table, numerics' (the numpy block's)
            self.keep.append(table)
            L.gelu_table = ffi.cast("uint16_t *", ffi.from_buffer(table))
        else:
            L.gelu_table = ffi.NULL
        for field, matrix in (("wq", w.wq), ("wk", w.wk), ("wv", w.wv), ("wo", w.wo),
                              ("w_gate", w.w_gate), ("w_up", w.w_up), ("w_down", w.w_down)):
            self._weight(getattr(L, field), matrix)
        L.type_k, L.type_v = KV_CACHE_TYPES[block.type_k][0], KV_CACHE_TYPES[block.type_v][0]
        L.k_cache, L.v_cache = ffi.from_buffer(k_cache), ffi.from_buffer(v_cache)
        self.scratch_bytes = {}                     # T -> bytes, asked of C once per T

    def _floats(self, a: np.ndarray | None, n: int):
        """A pointer C reads n floats at (a vector of the layer: a norm, a bias)."""
        if a is None or np.size(a) != n:
            raise BackendError(f"the C block needs a vector of {n} floats, got "
                               f"{None if a is None else np.shape(a)}")
        a = np.ascontiguousarray(a, dtype=np.float32).reshape(n)
        self.keep.append(a)
        return self.ffi.cast("float *", self.ffi.from_buffer(a))

    def _weight(self, slot, m: QMatrix) -> None:
        if m.data.strides[1] != 1:
            raise BackendError(f"{m.name}: rows must be contiguous bytes")
        self.keep.append(m.data)
        slot.type, slot.n_rows, slot.w_stride = m.ggml_type, m.n_out, m.data.strides[0]
        slot.w = self.ffi.from_buffer(m.data)

    def __call__(self, x: np.ndarray, pos0: int, cos: np.ndarray, sin: np.ndarray,
                 scratch: Scratch, n_threads: int | None) -> np.ndarray:
        """x (T, n_embd) float32 -> the block's output, computed in place in x."""
        return run_blocks([self], [pos0], x, cos, sin, scratch, n_threads)


def run_blocks(blocks: list[CBlock], positions: list[int], x: np.ndarray, cos: np.ndarray,
               sin: np.ndarray, scratch: Scratch, n_threads: int | None) -> np.ndarray:
    """One layer over sequences, in place in x (T, n_embd) float32: blocks[i] is sequence
    i's handle of the layer (its kv cache), positions[i] the position of its first row.
    One block takes every row of x; several take one row each (a batched decode step, each
    row bit-identical to its own call: pyggml_layer_forward)."""
    first = blocks[0]
    lib, ffi = first.lib, first.ffi
    T = x.shape[0]
    n_seqs = len(blocks)
    x = np.require(x, np.float32, ["C_CONTIGUOUS", "WRITEABLE", "OWNDATA"])
    n_ctx = max(block.layer.n_ctx for block in blocks)
    key = (T, n_seqs, n_ctx)
    nbytes = first.scratch_bytes.get(key)
    if nbytes is None:
        nbytes = first.scratch_bytes[key] = lib.pyggml_layer_scratch_bytes(first.layer, T,
                                                                           n_seqs, n_ctx)
    buf = scratch.get(nbytes)
    seqs = ffi.new("pyggml_seq[]", n_seqs)
    for seq, block, pos0 in zip(seqs, blocks, positions):
        seq.layer, seq.pos0, seq.n_tokens = block.layer, pos0, T if n_seqs == 1 else 1
    cpu_c.check("pyggml_layer_forward", lib.pyggml_layer_forward(
        seqs, n_seqs, ffi.cast("float *", ffi.from_buffer(x)),
        ffi.cast("float *", ffi.from_buffer(np.ascontiguousarray(cos))),
        ffi.cast("float *", ffi.from_buffer(np.ascontiguousarray(sin))),
        ffi.from_buffer(buf), buf.nbytes, n_threads or 0))
    return x

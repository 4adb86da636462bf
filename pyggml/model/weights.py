"""The model's tensors as the forward pass sees them: quantized matrices stay quantized.

A ``QMatrix`` is a zero-copy view of a weight matrix's rows in the file's own
encoding (e.g. Q4_K blocks), with its ggml type; the kernels multiply straight from
those bytes.  Only 1-D tensors (norm weights, biases, rope factors: a few KB each)
become float32.

    W (n_out, n_in) in ggml terms ne = [n_in, n_out]:  rows are contiguous along n_in,
    so a product  y = W @ x  walks each row's blocks once.

Fused tensors become row views of the fused matrix, so that every device sees the same
separate matrices (a row's product does not depend on the rows around it):

    attn_qkv  (n_embd_q + 2 n_embd_gqa, n_embd)  ->  wq = rows [0, n_embd_q), wk, wv after it
    ffn_up    (2 n_ff, n_embd), phi3             ->  w_gate = rows [0, n_ff), w_up the rest

Never wrong in silence: the loader takes the tensors the family's block uses, and a file
with any other tensor (a bias pyggml does not add, an expert router, a tensor of a newer
variant) is refused, naming the tensor, as llama.cpp refuses tensors it does not load.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ModelError
from ..ggml import TYPE_TRAITS, GGMLType, type_name
from .hparams import HParams

LLAMA_CTX_PAD = 256            # llama_context pads n_ctx to a multiple of this


@dataclasses.dataclass(frozen=True)
class QMatrix:
    name: str
    ggml_type: int
    n_out: int                   # rows (output features)
    n_in: int                    # elements per row (input features)
    data: np.ndarray             # uint8 (n_out, row_bytes): on the file's map, or a copy

    @property
    def type_name(self) -> str:
        return type_name(self.ggml_type)

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def rows(self, start: int, stop: int) -> QMatrix:
        """Rows start..stop-1: a view, no copy."""
        return QMatrix(f"{self.name}[{start}:{stop}]", self.ggml_type, stop - start, self.n_in,
                       self.data[start:stop])


@dataclasses.dataclass
class LayerWeights:
    attn_norm: np.ndarray        # (n_embd,)
    wq: QMatrix                  # (n_embd_q, n_embd)      n_embd_q = n_head * head_dim
    wk: QMatrix                  # (n_embd_gqa, n_embd)
    wv: QMatrix                  # (n_embd_gqa, n_embd)
    bq: np.ndarray | None        # (n_embd_q,)    all three or none (Architecture.qkv_bias)
    bk: np.ndarray | None        # (n_embd_gqa,)
    bv: np.ndarray | None        # (n_embd_gqa,)
    wo: QMatrix                  # (n_embd, n_embd_q)
    ffn_norm: np.ndarray         # (n_embd,)
    w_gate: QMatrix              # (n_ff, n_embd)
    w_up: QMatrix                # (n_ff, n_embd)
    w_down: QMatrix              # (n_embd, n_ff)
    q_norm: np.ndarray | None = None          # (head_dim,)   Architecture.qk_norm
    k_norm: np.ndarray | None = None          # (head_dim,)
    attn_post_norm: np.ndarray | None = None  # (n_embd,)     Architecture.post_norms
    ffn_post_norm: np.ndarray | None = None   # (n_embd,)

    def tensors(self) -> list[QMatrix | np.ndarray]:
        """Every tensor the layer has (absent optional ones left out), matrices and vectors."""
        return [t for t in (getattr(self, f.name) for f in dataclasses.fields(self))
                if t is not None]


@dataclasses.dataclass
class ModelWeights:
    token_embd: QMatrix          # (n_vocab, n_embd)
    layers: list[LayerWeights]
    output_norm: np.ndarray      # (n_embd,)
    output: QMatrix              # (n_vocab, n_embd); the same bytes as token_embd when tied
    rope_freqs: np.ndarray | None = None           # (n_rot/2,) llama3's frequency divisors
    rope_factors_long: np.ndarray | None = None    # (n_rot/2,) LongRoPE, beyond the trained
    rope_factors_short: np.ndarray | None = None   #            context, and within it

    @property
    def tied(self) -> bool:
        return self.output is self.token_embd

    def rope_freq_factors(self, n_ctx: int, n_ctx_orig: int) -> np.ndarray | None:
        """What rope divides its angles by, as llama.cpp's get_rope_factors chooses:
        rope_freqs where the file has it, else LongRoPE's long factors when the context
        (padded as llama_context pads it) exceeds the trained n_ctx_orig, else the short."""
        if self.rope_freqs is not None or self.rope_factors_long is None:
            return self.rope_freqs
        n_ctx_seq = -(-n_ctx // LLAMA_CTX_PAD) * LLAMA_CTX_PAD
        return self.rope_factors_long if n_ctx_seq > n_ctx_orig else self.rope_factors_short


class _Tensors:
    """The file's tensors, handed out by name and shape; remembers which were taken."""

    def __init__(self, gguf):
        self.gguf = gguf
        self.taken: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.gguf.tensors

    def info(self, name: str):
        tensor = self.gguf.tensors.get(name)
        if tensor is None:
            raise ModelError(f"{self.gguf.path}: tensor {name} is missing")
        self.taken.add(name)
        return tensor

    def matrix(self, name: str, n_out: int, n_in: int) -> QMatrix:
        tensor = self.info(name)
        if tuple(tensor.shape) != (n_out, n_in):
            raise ModelError(f"{self.gguf.path}: tensor {name} has shape {tensor.shape}, "
                             f"expected {(n_out, n_in)}")
        if not tensor.supported:
            raise ModelError(f"{self.gguf.path}: tensor {name} has ggml type {tensor.type_name}, "
                             "which pyggml cannot multiply")
        block_size, type_size = TYPE_TRAITS[GGMLType(tensor.type)]
        row_bytes = n_in // block_size * type_size
        data = self.gguf.raw(name).reshape(n_out, row_bytes)
        return QMatrix(name, tensor.type, n_out, n_in, data)

    def vector(self, name: str, n: int) -> np.ndarray:
        tensor = self.info(name)
        if tuple(tensor.shape) != (n,):
            raise ModelError(f"{self.gguf.path}: tensor {name} has shape {tensor.shape}, "
                             f"expected ({n},)")
        return np.ascontiguousarray(self.gguf.dequantize(name), dtype=np.float32)

    def optional_vector(self, name: str, n: int) -> np.ndarray | None:
        return self.vector(name, n) if self.has(name) else None

    def refuse_the_rest(self, arch: str) -> None:
        unused = [name for name in self.gguf.tensors if name not in self.taken]
        if unused:
            more = f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""
            raise ModelError(f"{self.gguf.path}: tensor {unused[0]}{more} is not part of the "
                             f"{arch} block that pyggml runs; a tensor it did not use would "
                             "change what the model computes, so the file is refused")


def load_weights(gguf, hp: HParams) -> ModelWeights:
    """Build the weight views from an open GGUF file, checking every name, type and shape,
    and refusing tensors that the family's block does not use."""
    arch = hp.architecture
    t = _Tensors(gguf)
    n_embd, n_q, n_gqa, n_ff = hp.n_embd, hp.n_embd_q, hp.n_embd_gqa, hp.n_ff
    head_dim = hp.head_dim

    def qkv(p):
        """wq, wk, wv, and bq, bk, bv (all three or None): separate or fused (attn_qkv)"""
        if t.has(p + "attn_qkv.weight"):
            fused = t.matrix(p + "attn_qkv.weight", n_q + 2 * n_gqa, n_embd)
            matrices = (fused.rows(0, n_q), fused.rows(n_q, n_q + n_gqa),
                        fused.rows(n_q + n_gqa, n_q + 2 * n_gqa))
        else:
            matrices = (t.matrix(p + "attn_q.weight", n_q, n_embd),
                        t.matrix(p + "attn_k.weight", n_gqa, n_embd),
                        t.matrix(p + "attn_v.weight", n_gqa, n_embd))
        if t.has(p + "attn_qkv.bias"):
            fused = t.vector(p + "attn_qkv.bias", n_q + 2 * n_gqa)
            biases = fused[:n_q], fused[n_q:n_q + n_gqa], fused[n_q + n_gqa:]
        elif arch.qkv_bias or t.has(p + "attn_q.bias"):
            biases = (t.vector(p + "attn_q.bias", n_q), t.vector(p + "attn_k.bias", n_gqa),
                      t.vector(p + "attn_v.bias", n_gqa))
        else:
            biases = None, None, None
        return matrices, biases

    def gate_up(p):
        if arch.fused_gate_up:
            fused = t.matrix(p + "ffn_up.weight", 2 * n_ff, n_embd)
            return fused.rows(0, n_ff), fused.rows(n_ff, 2 * n_ff)
        return (t.matrix(p + "ffn_gate.weight", n_ff, n_embd),
                t.matrix(p + "ffn_up.weight", n_ff, n_embd))

    def norms(p, names, n, wanted):
        return [t.vector(p + name, n) if wanted else None for name in names]

    layers = []
    for i in range(hp.n_layer):
        p = f"blk.{i}."
        (wq, wk, wv), (bq, bk, bv) = qkv(p)
        w_gate, w_up = gate_up(p)
        q_norm, k_norm = norms(p, ("attn_q_norm.weight", "attn_k_norm.weight"), head_dim,
                               arch.qk_norm)
        attn_post_norm, ffn_post_norm = norms(
            p, ("post_attention_norm.weight", "post_ffw_norm.weight"), n_embd, arch.post_norms)
        layers.append(LayerWeights(
            attn_norm=t.vector(p + "attn_norm.weight", n_embd),
            wq=wq, wk=wk, wv=wv, bq=bq, bk=bk, bv=bv,
            wo=t.matrix(p + "attn_output.weight", n_embd, n_q),
            ffn_norm=t.vector(p + "ffn_norm.weight", n_embd),
            w_gate=w_gate, w_up=w_up,
            w_down=t.matrix(p + "ffn_down.weight", n_embd, n_ff),
            q_norm=q_norm, k_norm=k_norm, attn_post_norm=attn_post_norm,
            ffn_post_norm=ffn_post_norm))

    n_pairs = hp.n_rot // 2
    factors = {}
    if arch.rope_factors == "rope_freqs":
        factors["rope_freqs"] = t.optional_vector("rope_freqs.weight", n_pairs)
    elif arch.rope_factors == "longrope" and (t.has("rope_factors_long.weight")
                                               or t.has("rope_factors_short.weight")):
        factors["rope_factors_long"] = t.vector("rope_factors_long.weight", n_pairs)
        factors["rope_factors_short"] = t.vector("rope_factors_short.weight", n_pairs)
    token_embd = t.matrix("token_embd.weight", hp.n_vocab, n_embd)
    output = (t.matrix("output.weight", hp.n_vocab, n_embd) if t.has("output.weight")
              else token_embd)                               # tied embeddings
    weights = ModelWeights(token_embd=token_embd, layers=layers,
                           output_norm=t.vector("output_norm.weight", n_embd), output=output,
                           **factors)
    t.refuse_the_rest(hp.arch)
    return weights

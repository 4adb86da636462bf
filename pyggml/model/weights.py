"""The model's tensors as the forward pass sees them: quantized matrices stay quantized.

A ``QMatrix`` is a zero-copy view of a weight matrix's rows in the file's own
encoding (e.g. Q4_K blocks), with its ggml type; the kernels multiply straight from
those bytes.  Only 1-D tensors (norm weights, biases: a few KB each) become float32.

    W (n_out, n_in) in ggml terms ne = [n_in, n_out]:  rows are contiguous along n_in,
    so a product  y = W @ x  walks each row's blocks once.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ModelError
from ..ggml import TYPE_TRAITS, GGMLType, type_name
from .hparams import HParams


@dataclasses.dataclass(frozen=True)
class QMatrix:
    name: str
    ggml_type: int
    n_out: int                   # rows (output features)
    n_in: int                    # elements per row (input features)
    data: np.ndarray             # uint8 (n_out, row_bytes), a view on the file's map

    @property
    def type_name(self) -> str:
        return type_name(self.ggml_type)

    @property
    def nbytes(self) -> int:
        return self.data.nbytes


@dataclasses.dataclass
class LayerWeights:
    attn_norm: np.ndarray        # (n_embd,)
    wq: QMatrix                  # (n_embd, n_embd)
    wk: QMatrix                  # (n_embd_gqa, n_embd)
    wv: QMatrix                  # (n_embd_gqa, n_embd)
    bq: np.ndarray | None        # (n_embd,)      all three or none (Architecture.qkv_bias)
    bk: np.ndarray | None        # (n_embd_gqa,)
    bv: np.ndarray | None        # (n_embd_gqa,)
    wo: QMatrix                  # (n_embd, n_embd)
    ffn_norm: np.ndarray         # (n_embd,)
    w_gate: QMatrix              # (n_ff, n_embd)
    w_up: QMatrix                # (n_ff, n_embd)
    w_down: QMatrix              # (n_embd, n_ff)

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

    @property
    def tied(self) -> bool:
        return self.output is self.token_embd


def load_weights(gguf, hp: HParams) -> ModelWeights:
    """Build the weight views from an open GGUF file, checking every name, type and shape."""
    path = gguf.path

    def info(name):
        tensor = gguf.tensors.get(name)
        if tensor is None:
            raise ModelError(f"{path}: tensor {name} is missing")
        return tensor

    def matrix(name, n_out, n_in) -> QMatrix:
        tensor = info(name)
        if tuple(tensor.shape) != (n_out, n_in):
            raise ModelError(f"{path}: tensor {name} has shape {tensor.shape}, "
                             f"expected {(n_out, n_in)}")
        if not tensor.supported:
            raise ModelError(f"{path}: tensor {name} has ggml type {tensor.type_name}, "
                             "which pyggml cannot multiply")
        block_size, type_size = TYPE_TRAITS[GGMLType(tensor.type)]
        row_bytes = n_in // block_size * type_size
        data = gguf.raw(name).reshape(n_out, row_bytes)
        return QMatrix(name, tensor.type, n_out, n_in, data)

    def vector(name, n):
        tensor = info(name)
        if tuple(tensor.shape) != (n,):
            raise ModelError(f"{path}: tensor {name} has shape {tensor.shape}, expected ({n},)")
        return np.ascontiguousarray(gguf.dequantize(name), dtype=np.float32)

    def biases(p):
        """bq, bk, bv: required by some families, read when present by others"""
        if not hp.architecture.qkv_bias and p + "attn_q.bias" not in gguf.tensors:
            return None, None, None
        return (vector(p + "attn_q.bias", n_embd), vector(p + "attn_k.bias", n_gqa),
                vector(p + "attn_v.bias", n_gqa))

    n_embd, n_gqa, n_ff = hp.n_embd, hp.n_embd_gqa, hp.n_ff
    layers = []
    for i in range(hp.n_layer):
        p = f"blk.{i}."
        bq, bk, bv = biases(p)
        layers.append(LayerWeights(
            attn_norm=vector(p + "attn_norm.weight", n_embd),
            wq=matrix(p + "attn_q.weight", n_embd, n_embd),
            wk=matrix(p + "attn_k.weight", n_gqa, n_embd),
            wv=matrix(p + "attn_v.weight", n_gqa, n_embd),
            bq=bq, bk=bk, bv=bv,
            wo=matrix(p + "attn_output.weight", n_embd, n_embd),
            ffn_norm=vector(p + "ffn_norm.weight", n_embd),
            w_gate=matrix(p + "ffn_gate.weight", n_ff, n_embd),
            w_up=matrix(p + "ffn_up.weight", n_ff, n_embd),
            w_down=matrix(p + "ffn_down.weight", n_embd, n_ff)))
    token_embd = matrix("token_embd.weight", hp.n_vocab, n_embd)
    output = (matrix("output.weight", hp.n_vocab, n_embd) if "output.weight" in gguf.tensors
              else token_embd)                               # tied embeddings
    return ModelWeights(token_embd=token_embd, layers=layers,
                        output_norm=vector("output_norm.weight", n_embd), output=output)

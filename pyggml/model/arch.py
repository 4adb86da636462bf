"""What distinguishes one family of decoder-only transformers from another, as data.

Every family pyggml runs shares one decoder block (pyggml/model/forward.py):

    h = rms_norm(x) * attn_norm
    q, k, v = Wq h [+ bq], Wk h [+ bk], Wv h [+ bv]         biases: qkv_bias
    q, k = rope(q), rope(k)                                 pairs or halves: rope_mode
    x += Wo softmax(q K^T * attn_scale) V                   causal, grouped-query
    h = rms_norm(x) * ffn_norm
    x += Wdown (silu(Wgate h) * (Wup h))

An ``Architecture`` is one family's choices for the optional and variant steps, keyed by
``general.architecture``.  A ``BlockSpec`` is what a device needs to run one layer: its
shapes (from the file's hyperparameters) and the family's choices, resolved for that
layer.  The devices (numpy, the C block, CUDA) read only BlockSpec fields: none of them
tests an architecture's name, so a family that needs no new step is one more entry in
ARCHITECTURES, and one that does adds a field here and the step, behind that field, to
each device (docs/adding-an-architecture.md).

    arch    rope  q/k/v biases
    qwen2   NEOX  required       rotate halves (x[i], x[i + n_rot/2])
    llama   NORM  when present   rotate pairs (x[2i], x[2i+1]); SmolLM2, Llama 2/3 files
"""
from __future__ import annotations

import dataclasses

import numpy as np

ROPE_NORM, ROPE_NEOX = 0, 2            # ggml's rope modes (GGML_ROPE_TYPE_NEOX = 2)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One family's decoder block, as llama.cpp's llm_build_<arch> and its tensor loader
    define it."""
    name: str                  # general.architecture, and the prefix of its metadata keys
    rope_mode: int             # ROPE_NORM: pairs (x[2i], x[2i+1]); ROPE_NEOX: halves
    qkv_bias: bool             # q/k/v biases required (qwen2); False: used when the file has
                               # them, as llama.cpp's llama loader does


ARCHITECTURES = {arch.name: arch for arch in (
    Architecture("qwen2", rope_mode=ROPE_NEOX, qkv_bias=True),
    Architecture("llama", rope_mode=ROPE_NORM, qkv_bias=False),
)}


@dataclasses.dataclass(frozen=True)
class Rope:
    """Rotary position embedding of one layer: the angle of pair i at position p is
    p * base^(-2i / n_rot) (forward.rope_cache turns positions into cos/sin tables, which
    every device takes as they are)."""
    mode: int                  # ROPE_NORM or ROPE_NEOX
    n_rot: int                 # rotated dimensions per head (== head_dim for the families here)
    base: float                # rope.freq_base


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One transformer layer as the devices run it (kernels/pyggml_cpu.h's pyggml_layer is
    filled from it, pyggml/backends/cuda.py launches its kernels by it)."""
    n_embd: int
    n_head: int
    n_head_kv: int             # grouped-query attention: query head h reads kv head h // group
    head_dim: int
    n_ff: int
    rms_eps: float
    rope: Rope
    qkv_bias: bool             # this layer's q, k, v products add biases (bq, bk, bv)
    attn_scale: float          # scores = (q . k) * attn_scale

    @property
    def n_embd_gqa(self) -> int:
        """Width of K and V: head_dim * n_head_kv."""
        return self.head_dim * self.n_head_kv


def default_attn_scale(head_dim: int) -> float:
    """1 / sqrt(head_dim) in float32 operations, as llama.cpp computes its kq_scale
    (1.0f / sqrtf(n_embd_head)): float32(1 / sqrt(d)) in double differs for d = 96, 112, ..."""
    return float(np.float32(1.0) / np.sqrt(np.float32(head_dim)))

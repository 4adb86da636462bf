"""What distinguishes one family of decoder-only transformers from another, as data.

Every family pyggml runs shares one decoder block (pyggml/model/forward.py):

    h = rms_norm(x) * attn_norm
    q, k, v = Wq h [+ bq], Wk h [+ bk], Wv h [+ bv]         biases: qkv_bias
    q, k = rms_norm(q) * q_norm, rms_norm(k) * k_norm       per head: qk_norm
    q, k = rope(q), rope(k)                                 pairs or halves, tables: rope
    q = q * q_scale                                         q_scale (1: none)
    a = Wo softmax(q K^T * attn_scale + mask) V             causal, grouped-query; the mask
                                                            also hides keys >= window back
    x += rms_norm(a) * attn_post_norm  (post_norms)  or  a
    h = rms_norm(x) * ffn_norm
    f = Wdown (act(Wgate h) * (Wup h))                      act: ffn_act, silu or gelu
    x += rms_norm(f) * ffn_post_norm   (post_norms)  or  f

and, outside the blocks, ``x = token_embd[tokens] * embd_scale`` on the CPU (HParams) and
``logits = cap * tanh(Wout rms_norm(x) / cap)`` where the head has a soft-cap (HeadSpec).

An ``Architecture`` is one family's choices for the optional and variant steps, keyed by
``general.architecture``.  A ``BlockSpec`` is what a device needs to run one layer: its
shapes (from the file's hyperparameters) and the family's choices, resolved for that
layer (a gemma3 layer is local or global: its window and its rope differ).  The devices
(numpy, the C block, CUDA) read only BlockSpec fields: none of them tests an
architecture's name, so a family that needs no new step is one more entry in
ARCHITECTURES, and one that does adds a field here and the step, behind that field, to
each device (docs/adding-an-architecture.md).  A device that does not implement a step
yet refuses a layer that takes it, naming the field (``BlockSpec.steps``).

    arch    rope  q/k/v biases   what else (llama.cpp's src/models/<arch>.cpp)
    qwen2   NEOX  required
    llama   NORM  when present   rope_freqs.weight: llama3's frequency factors
    qwen3   NEOX  when present   q/k norms; head_dim from attention.key_length
    gemma3  NEOX  when present   embeddings * sqrt(n_embd); q/k norms; post-norms; GeGLU;
                                 Q pre-scaled; every sixth layer global, the others in
                                 a sliding window with their own rope base; the final
                                 logit soft-cap where the file has one
    phi3    NEOX  when present   fused gate+up (ffn_up); Q pre-scaled; LongRoPE factors
                                 (rope_factors_long/short); its sliding window ignored

Any family may store Q, K and V fused in one attn_qkv matrix (llama.cpp's
create_tensor_qkv accepts it everywhere): the loader cuts it into row views.
"""
from __future__ import annotations

import dataclasses

import numpy as np

ROPE_NORM, ROPE_NEOX = 0, 2            # ggml's rope modes (GGML_ROPE_TYPE_NEOX = 2)
FFN_SILU, FFN_GELU = "silu", "gelu"    # the gated FFN's activation (SwiGLU, GeGLU)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One family's decoder block, as llama.cpp's llm_build_<arch> and its tensor loader
    define it."""
    name: str                  # general.architecture, and the prefix of its metadata keys
    rope_mode: int             # ROPE_NORM: pairs (x[2i], x[2i+1]); ROPE_NEOX: halves
    qkv_bias: bool = False     # q/k/v biases required (qwen2); False: used when the file has
                               # them, as llama.cpp's create_tensor_qkv does
    qk_norm: bool = False      # attn_q_norm, attn_k_norm (head_dim,): Q and K RMS-normed per
                               # head before rope
    post_norms: bool = False   # post_attention_norm, post_ffw_norm: the attention's and the
                               # FFN's outputs RMS-normed before their residual adds
    ffn_act: str = FFN_SILU    # FFN_GELU: GeGLU with ggml's tanh-approximated GELU
    fused_gate_up: bool = False    # no ffn_gate: ffn_up has 2 n_ff rows, gate then up
    embd_scale: bool = False   # input embeddings times sqrt(n_embd)
    q_prescale: bool = False   # the attention scale multiplies Q after rope (ggml_scale), and
                               # the scores are scaled by 1: llama.cpp rounds Q to fp16 for
                               # K.Q, so this is not the same as scaling the scores
    embd_head_scale_layers: tuple[int, ...] = ()   # layer counts whose attention scale is
                               # 1/sqrt(n_embd / n_head), not 1/sqrt(head_dim): gemma3 27B
                               # (llama.cpp keys on the count, gemma_pytorch's
                               # query_pre_attn_scalar)
    swa_period: int = 0        # with attention.sliding_window, layer il is local (windowed)
                               # when il % period < period - 1 (llama.cpp's set_swa_pattern);
                               # 0: the family has no sliding window and llama.cpp ignores
                               # the key (then so do we, saying so where it could matter)
    rope_factors: str = ""     # "rope_freqs": rope_freqs.weight, llama3's per-pair frequency
                               # divisors; "longrope": rope_factors_long/short, chosen by
                               # the context length; "": none
    logit_softcap: bool = False    # reads final_logit_softcapping


ARCHITECTURES = {arch.name: arch for arch in (
    Architecture("qwen2", rope_mode=ROPE_NEOX, qkv_bias=True),
    Architecture("llama", rope_mode=ROPE_NORM, rope_factors="rope_freqs"),
    Architecture("qwen3", rope_mode=ROPE_NEOX, qk_norm=True),
    Architecture("gemma3", rope_mode=ROPE_NEOX, qk_norm=True, post_norms=True, ffn_act=FFN_GELU,
                 embd_scale=True, q_prescale=True, embd_head_scale_layers=(62,), swa_period=6,
                 logit_softcap=True),
    Architecture("phi3", rope_mode=ROPE_NEOX, fused_gate_up=True, q_prescale=True,
                 rope_factors="longrope"),
)}


@dataclasses.dataclass(frozen=True)
class Rope:
    """Rotary position embedding of one layer: ggml_rope_ext's parameters, from which
    forward.rope_cache makes the cos/sin tables that every device takes as they are.

    The angle of pair i at position p, as ggml's rope cache computes it:

        theta  = p * base^(-2i / n_rot) / freq_factors[i]        (extrapolated)
        interp = freq_scale * theta                             (linear scaling)
        angle  = interp, or with yarn (ext_factor 1) a ramp from theta (low i) to interp
                 (high i) between the correction dims of n_ctx_orig, beta_fast, beta_slow
        cos, sin = cos(angle) * mscale, sin(angle) * mscale      mscale = attn_factor
                                                                 (* yarn's own factor)
    """
    mode: int                  # ROPE_NORM or ROPE_NEOX
    n_rot: int                 # rotated dimensions per head (== head_dim for the families here)
    base: float                # rope.freq_base (rope.freq_base_swa on local layers)
    freq_scale: float = 1.0    # 1 / rope.scaling.factor (linear and yarn scaling)
    ext_factor: float = 0.0    # yarn's extrapolation mix: 1.0 with yarn scaling, else 0
    attn_factor: float = 1.0   # magnitude of cos/sin (llama.cpp's yarn_attn_factor)
    n_ctx_orig: int = 0        # yarn: the trained context the correction dims are made for
    beta_fast: float = 32.0    # yarn: llama.cpp's defaults
    beta_slow: float = 1.0
    freq_factors: tuple[float, ...] | None = None    # n_rot/2 divisors of the angles


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One transformer layer as the devices run it (kernels/pyggml_cpu.h's pyggml_layer is
    filled from it, pyggml/backends/cuda.py launches its kernels by it)."""
    n_embd: int
    n_head: int
    n_head_kv: int             # grouped-query attention: query head h reads kv head h // group
    head_dim: int              # Q has n_head * head_dim rows, which need not be n_embd (qwen3)
    n_ff: int
    rms_eps: float
    rope: Rope
    qkv_bias: bool             # this layer's q, k, v products add biases (bq, bk, bv)
    attn_scale: float          # scores = (q . k) * attn_scale
    # the optional steps (STEPS): each default means "not taken"
    qk_norm: bool = False      # q, k = rms_norm(q) * q_norm, rms_norm(k) * k_norm per head
    post_norms: bool = False   # attention and FFN outputs RMS-normed (attn_post_norm,
                               # ffn_post_norm) before the residual adds
    ffn_act: str = FFN_SILU    # FFN_GELU: gelu(gate) * up with ggml's fp16 GELU table
    q_scale: float = 1.0       # q *= q_scale after rope, before Q is rounded to fp16 for K.Q
    window: int = 0            # sliding window: a query at p sees keys p - window < p' <= p
                               # (llama.cpp's is_masked_swa); 0: every key up to p
    # the kv cache's types (KV_CACHE_TYPES, llama.cpp's --cache-type-k/-v): how K and V are
    # stored, and so the attention's arithmetic (forward.attention: flash attention where V
    # is quantized, as llama.cpp requires; llama-cpp-python's flash_attn=False otherwise)
    type_k: str = "f16"
    type_v: str = "f16"

    @property
    def n_embd_q(self) -> int:
        """Width of Q and of the attention's output: head_dim * n_head."""
        return self.head_dim * self.n_head

    @property
    def n_embd_gqa(self) -> int:
        """Width of K and V: head_dim * n_head_kv."""
        return self.head_dim * self.n_head_kv

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """Bytes of this layer's K and V caches of n_ctx positions."""
        return sum(n_ctx * self.n_embd_gqa // KV_CACHE_TYPES[t][1] * KV_CACHE_TYPES[t][2]
                   for t in (self.type_k, self.type_v))

    def steps(self) -> dict[str, str]:
        """The optional steps this layer takes, name -> "name=value": what a device that has
        not implemented them must refuse (device.check_steps).  Besides the fields of STEPS
        and KV_CACHE_STEPS, "n_embd_q" is taken where Q is wider or narrower than the
        hidden state."""
        taken = {name: f"{name}={getattr(self, name)!r}" for name in STEPS + KV_CACHE_STEPS
                 if getattr(self, name) != _PLAIN[name]}
        if self.n_embd_q != self.n_embd:
            taken["n_embd_q"] = f"n_embd_q={self.n_embd_q} (n_head * head_dim != n_embd)"
        return taken


STEPS = ("qk_norm", "post_norms", "ffn_act", "q_scale", "window")
ALL_STEPS = frozenset(STEPS) | {"n_embd_q"}       # every step of the block's arithmetic
# a quantized kv cache: the CPU's blocks (numpy and C) run it; it is not among ALL_STEPS,
# which the GPU claims
KV_CACHE_STEPS = ("type_k", "type_v")
_PLAIN = {f.name: f.default for f in dataclasses.fields(BlockSpec)
          if f.name in STEPS + KV_CACHE_STEPS}

# the kv cache types llama.cpp's --cache-type-k/-v take that pyggml runs:
# name -> (ggml type id, numbers per block, bytes per block)
KV_CACHE_TYPES = {"f16": (1, 1, 2), "q8_0": (8, 32, 34), "q4_0": (2, 32, 18)}


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """The output head as its device runs it: logits = Wout (rms_norm(x) * output_norm),
    then, where logit_softcap > 0, cap * tanh(logits / cap) (gemma's final soft-capping)."""
    rms_eps: float
    logit_softcap: float = 0.0


def default_attn_scale(head_dim: int) -> float:
    """1 / sqrt(head_dim) in float32 operations, as llama.cpp computes its kq_scale
    (1.0f / sqrtf(n_embd_head)): float32(1 / sqrt(d)) in double differs for d = 96, 112, ..."""
    return float(np.float32(1.0) / np.sqrt(np.float32(head_dim)))

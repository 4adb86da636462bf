"""Hyperparameters of a decoder-only transformer, read from GGUF metadata.

Keys are ``<arch>.<name>`` (e.g. ``qwen2.embedding_length``); which architectures pyggml
runs, and how they differ, is arch.py's table.  ``HParams.block`` combines the two into
what the devices run: one layer's BlockSpec; ``HParams.head`` the output head's HeadSpec.

Never wrong in silence: every ``<arch>.*`` key of a file is one that pyggml reads, or one
that changes nothing (checked by value where it could: ``attention.scale`` must be the
scale llama.cpp uses anyway), or the file is refused with a ModelError naming the key.
Rope scaling follows llama.cpp's llama_context: ``rope.scaling.type`` linear (the default
when the key is absent), yarn, longrope or none, and its factor, original context and
attention factor, resolved into each layer's Rope (arch.Rope).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping

import numpy as np

from ..errors import ModelError, PyggmlWarning, TokenizerError
from .arch import (ARCHITECTURES, FFN_GELU, ROPE_NEOX, Architecture, BlockSpec, HeadSpec, Rope,
                   default_attn_scale)
from .numerics import fma, logf

_f = np.float32

# <arch>.* keys that pyggml reads (from_metadata, rope_scaling), and rope.scaling.finetuned,
# a note of the converter's that changes nothing; the sliding-window keys are read only by
# the families that have one (swa_period)
READ_KEYS = {
    "context_length", "embedding_length", "block_count", "feed_forward_length", "vocab_size",
    "attention.head_count", "attention.head_count_kv", "attention.key_length",
    "attention.value_length", "attention.layer_norm_rms_epsilon", "attention.scale",
    "rope.dimension_count", "rope.freq_base", "rope.scaling.type", "rope.scaling.factor",
    "rope.scale_linear", "rope.scaling.original_context_length", "rope.scaling.attn_factor",
    "rope.scaling.finetuned", "rope.scaling.yarn_attn_factor", "rope.scaling.yarn_ext_factor",
    "attention.sliding_window",
}
SWA_KEYS = {"attention.sliding_window_pattern", "rope.freq_base_swa"}
# keys llama.cpp does not read for these families: accepted where their value is the one
# llama.cpp computes with anyway (its defaults), refused otherwise
NEUTRAL_VALUES = {
    "expert_count": 0, "expert_used_count": 0, "attention.causal": True,
    "rope.scaling.yarn_beta_fast": 32.0, "rope.scaling.yarn_beta_slow": 1.0,
    "rope.scaling.yarn_log_multiplier": 0.0,
}
ROPE_SCALINGS = ("none", "linear", "yarn", "longrope")     # llama.cpp's LLAMA_ROPE_SCALING_TYPES


@dataclasses.dataclass(frozen=True)
class HParams:
    arch: str
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    head_dim: int          # attention.key_length (== value_length == n_rot), else n_embd / n_head
    n_rot: int
    rope_base: float
    rms_eps: float
    # rope scaling of the global layers (llama.cpp's cparams), the defaults: none
    rope_freq_scale: float = 1.0     # 1 / rope.scaling.factor (linear, yarn, longrope)
    rope_ext_factor: float = 0.0     # 1.0 with yarn
    rope_attn_factor: float = 1.0    # yarn's magnitude correction * rope.scaling.attn_factor
    n_ctx_orig: int = 0              # rope.scaling.original_context_length, else n_ctx_train
    # sliding window: the local layers see the last `window` positions, with their own base
    window: int = 0
    swa_layers: tuple[bool, ...] = ()
    rope_base_swa: float = 10000.0   # rope.freq_base_swa (llama.cpp's default)
    ignored_window: int = 0          # a sliding window llama.cpp ignores (phi3): Model warns
    attn_scale: float = 0.0          # 0: 1/sqrt(head_dim) (llama.cpp's f_attention_scale)
    embd_scale: float = 1.0          # input embeddings times this (gemma3: sqrtf(n_embd))
    logit_softcap: float = 0.0       # final_logit_softcapping; 0: none

    def __post_init__(self):
        if not self.n_ctx_orig:
            object.__setattr__(self, "n_ctx_orig", self.n_ctx_train)

    @property
    def n_embd_gqa(self) -> int:
        """Width of K and V: head_dim * n_head_kv (grouped-query attention)."""
        return self.head_dim * self.n_head_kv

    @property
    def n_embd_q(self) -> int:
        """Width of Q: head_dim * n_head (qwen3 and gemma3 need not have it == n_embd)."""
        return self.head_dim * self.n_head

    @property
    def architecture(self) -> Architecture:
        return ARCHITECTURES[self.arch]

    def is_local(self, layer: int) -> bool:
        """Whether the layer attends within the sliding window (llama.cpp's is_swa)."""
        return bool(self.window) and self.swa_layers[layer]

    def rope(self, layer: int, freq_factors: np.ndarray | None = None) -> Rope:
        """The layer's rope: a local layer has its own base and no frequency scaling
        (llama.cpp's get_rope_freq_base/scale), the yarn and attention factors are the
        context's for every layer."""
        base, freq_scale = ((self.rope_base_swa, 1.0) if self.is_local(layer)
                            else (self.rope_base, self.rope_freq_scale))
        return Rope(self.architecture.rope_mode, self.n_rot, base, freq_scale=freq_scale,
                    ext_factor=self.rope_ext_factor, attn_factor=self.rope_attn_factor,
                    n_ctx_orig=self.n_ctx_orig,
                    freq_factors=None if freq_factors is None
                    else tuple(float(f) for f in freq_factors))

    def block(self, layer: int, *, qkv_bias: bool, freq_factors: np.ndarray | None = None
              ) -> BlockSpec:
        """Layer `layer` as the devices run it; qkv_bias: whether its weights have q/k/v
        biases; freq_factors: the rope's (ModelWeights.rope_freq_factors)."""
        arch = self.architecture
        scale = self.attn_scale or default_attn_scale(self.head_dim)
        return BlockSpec(n_embd=self.n_embd, n_head=self.n_head, n_head_kv=self.n_head_kv,
                         head_dim=self.head_dim, n_ff=self.n_ff, rms_eps=self.rms_eps,
                         rope=self.rope(layer, freq_factors), qkv_bias=qkv_bias,
                         attn_scale=1.0 if arch.q_prescale else scale,
                         qk_norm=arch.qk_norm, post_norms=arch.post_norms, ffn_act=arch.ffn_act,
                         q_scale=scale if arch.q_prescale else 1.0,
                         window=self.window if self.is_local(layer) else 0)

    def head(self) -> HeadSpec:
        return HeadSpec(rms_eps=self.rms_eps, logit_softcap=self.logit_softcap)

    def features(self, tensor_names) -> list[str]:
        """What the model computes, in words, for ``pyggml info``: the family's steps and
        what this file chose (tensor_names: the file's tensors)."""
        arch, names = self.architecture, set(tensor_names)
        out = [f"rope {'NEOX (halves)' if arch.rope_mode == ROPE_NEOX else 'NORM (pairs)'} "
               f"base {self.rope_base:.9g}"]
        if self.rope_ext_factor:
            out.append(f"yarn rope scaling x{1 / self.rope_freq_scale:g} (trained context "
                       f"{self.n_ctx_orig})")
        elif self.rope_freq_scale != 1.0:
            out.append(f"linear rope scaling x{1 / self.rope_freq_scale:g}")
        if "rope_freqs.weight" in names:
            out.append("rope frequency factors (llama3)")
        if "rope_factors_long.weight" in names:
            out.append(f"LongRoPE factors (long beyond {self.n_ctx_orig})")
        if self.n_head_kv != self.n_head:
            out.append(f"grouped-query attention {self.n_head}:{self.n_head_kv}")
        if self.n_embd_q != self.n_embd:
            out.append(f"head_dim {self.head_dim} (Q {self.n_embd_q} wide)")
        if "blk.0.attn_q.bias" in names or "blk.0.attn_qkv.bias" in names:
            out.append("q/k/v biases")
        if "blk.0.attn_qkv.weight" in names:
            out.append("fused qkv")
        if arch.qk_norm:
            out.append("q/k norm")
        if arch.post_norms:
            out.append("post norms")
        out.append(("GeGLU (tanh GELU)" if arch.ffn_act == FFN_GELU else "SwiGLU")
                   + (", fused gate+up" if arch.fused_gate_up else ""))
        if arch.embd_scale:
            out.append("embeddings x sqrt(n_embd)")
        if self.window:
            n_global = sum(not local for local in self.swa_layers)
            period = len(self.swa_layers) // n_global if n_global else 0
            every = (f"every {_ordinal(period)} global" if n_global and all(
                     local == (i % period < period - 1) for i, local in enumerate(self.swa_layers))
                     else f"{n_global} of {self.n_layer} layers global")
            out.append(f"sliding window {self.window} {every} (local rope base "
                       f"{self.rope_base_swa:.9g})")
        if self.ignored_window:
            out.append(f"sliding window {self.ignored_window} ignored (as llama.cpp)")
        if self.logit_softcap:
            out.append(f"final logit softcap {self.logit_softcap:g}")
        out.append("tied output" if "output.weight" not in names else "untied output")
        return out

    def warn_ignored(self, n_ctx: int) -> None:
        """Say where a key that llama.cpp ignores could make a difference."""
        if self.ignored_window and n_ctx > self.ignored_window:
            warnings.warn(f"{self.arch}.attention.sliding_window = {self.ignored_window} is "
                          f"ignored, as llama.cpp ignores it for {self.arch}: with a context "
                          f"of {n_ctx} the attention differs from the trained model's beyond "
                          f"{self.ignored_window} tokens", PyggmlWarning, stacklevel=3)

    @classmethod
    def from_metadata(cls, metadata: Mapping, *, path="model") -> HParams:
        arch_name = metadata.get("general.architecture")
        if arch_name is None:
            raise ModelError(f"{path}: no general.architecture key: not a model file")
        if arch_name not in ARCHITECTURES:
            raise ModelError(f"{path}: architecture {arch_name!r} is not supported "
                             f"(pyggml runs: {', '.join(sorted(ARCHITECTURES))})")
        arch = ARCHITECTURES[arch_name]
        check_keys(metadata, arch, path)

        def get(name, default=None, *, kind=int):
            key = f"{arch_name}.{name}"
            value = metadata.get(key, default)
            if value is None:
                raise ModelError(f"{path}: required key {key} is missing")
            if isinstance(value, (list, tuple)):           # per-layer arrays: we need them equal
                if len(set(value)) != 1:
                    raise ModelError(f"{path}: {key} varies per layer ({value[:4]}...), "
                                     "which pyggml does not support")
                value = value[0]
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise ModelError(f"{path}: {key} = {value!r} is not a {kind.__name__}") from None

        n_embd = get("embedding_length")
        n_layer = get("block_count")
        n_head = get("attention.head_count")
        n_head_kv = get("attention.head_count_kv", n_head)
        key_length = metadata.get(f"{arch_name}.attention.key_length")
        if (n_head <= 0 or n_head_kv <= 0 or n_head % n_head_kv
                or key_length is None and n_embd % n_head):
            raise ModelError(f"{path}: n_embd={n_embd}, n_head={n_head}, n_head_kv={n_head_kv} "
                             "do not divide evenly")
        head_dim = get("attention.key_length", n_embd // n_head)
        if get("attention.value_length", head_dim) != head_dim:
            raise ModelError(f"{path}: different key and value head sizes are not supported")
        n_rot = get("rope.dimension_count", head_dim)
        if n_rot != head_dim:
            raise ModelError(f"{path}: partial rotary embeddings ({arch_name}.rope.dimension_count "
                             f"= {n_rot}, head_dim = {head_dim}) are not supported")
        n_ctx_train = get("context_length")

        # the attention scale: llama.cpp's f_attention_scale, set by these families only
        # for gemma3 27B; a file's attention.scale is read by none of them
        attn_scale = 0.0
        if n_layer in arch.embd_head_scale_layers:
            attn_scale = default_attn_scale(n_embd // n_head)
        scale_key = f"{arch_name}.attention.scale"
        if scale_key in metadata and _f(metadata[scale_key]) != _f(
                attn_scale or default_attn_scale(head_dim)):
            raise ModelError(f"{path}: {scale_key} = {metadata[scale_key]!r} differs from the "
                             f"scale llama.cpp uses for {arch_name} (it ignores the key), and "
                             "pyggml does not guess which one the model needs")

        window, swa_layers, ignored_window = 0, (), 0
        n_swa = get("attention.sliding_window", 0)
        if n_swa > 0 and arch.swa_period:
            window = n_swa
            swa_layers = swa_pattern(metadata.get(f"{arch_name}.attention.sliding_window_pattern",
                                                  arch.swa_period), n_layer, path)
        elif n_swa > 0:
            ignored_window = n_swa

        tokens = metadata.get("tokenizer.ggml.tokens")
        if tokens is None and f"{arch_name}.vocab_size" not in metadata:
            raise TokenizerError(f"{path}: the file has no vocabulary (tokenizer.ggml.tokens), "
                                 "so pyggml can neither tokenize nor size the output")
        n_vocab = get("vocab_size", len(tokens) if tokens is not None else None)
        return cls(arch=arch_name, n_vocab=n_vocab, n_ctx_train=n_ctx_train,
                   n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_head_kv=n_head_kv,
                   n_ff=get("feed_forward_length"), head_dim=head_dim, n_rot=n_rot,
                   rope_base=get("rope.freq_base", 10000.0, kind=float),
                   rms_eps=get("attention.layer_norm_rms_epsilon", kind=float),
                   **rope_scaling(metadata, arch_name, n_ctx_train, path),
                   window=window, swa_layers=swa_layers,
                   rope_base_swa=get("rope.freq_base_swa", 10000.0, kind=float),
                   ignored_window=ignored_window, attn_scale=attn_scale,
                   embd_scale=float(np.sqrt(_f(n_embd))) if arch.embd_scale else 1.0,
                   logit_softcap=get("final_logit_softcapping", 0.0, kind=float))


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 < 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def check_keys(metadata: Mapping, arch: Architecture, path) -> None:
    """Refuse a file with an <arch>.* key that would change the computation and that pyggml
    does not implement, naming it."""
    known = READ_KEYS | (SWA_KEYS if arch.swa_period else set())
    if arch.logit_softcap:
        known = known | {"final_logit_softcapping"}
    prefix = arch.name + "."
    for key, value in metadata.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name in known:
            continue
        if name in NEUTRAL_VALUES and value == NEUTRAL_VALUES[name]:
            continue
        raise ModelError(f"{path}: {key} = {value!r} changes how the model computes, and "
                         f"pyggml does not implement it for {arch.name}")


def swa_pattern(pattern, n_layer: int, path) -> tuple[bool, ...]:
    """Which layers are local: llama.cpp's load_swa_pattern, from a per-layer array of flags,
    or a period n (layer il local when il % n < n - 1; n = 0: all of them)."""
    if isinstance(pattern, (list, tuple)):
        if len(pattern) != n_layer:
            raise ModelError(f"{path}: attention.sliding_window_pattern has {len(pattern)} "
                             f"entries for {n_layer} layers")
        return tuple(bool(flag) for flag in pattern)
    n = int(pattern)
    return tuple(n == 0 or il % n < n - 1 for il in range(n_layer))


def rope_scaling(metadata: Mapping, arch: str, n_ctx_train: int, path) -> dict:
    """The global layers' rope scaling as llama.cpp's llama_context resolves it (with
    llama-cpp-python's defaults, which are llama.cpp's): HParams fields rope_freq_scale,
    rope_ext_factor, rope_attn_factor, n_ctx_orig."""
    def key(name):
        return f"{arch}.rope.scaling.{name}"
    kind = metadata.get(key("type"), "linear")
    if kind not in ROPE_SCALINGS:
        raise ModelError(f"{path}: {key('type')} = {kind!r} is not one of llama.cpp's "
                         f"({', '.join(ROPE_SCALINGS)})")
    factor = metadata.get(key("factor"), metadata.get(f"{arch}.rope.scale_linear", 0.0))
    freq_scale = _f(1.0) if kind == "none" or not factor else _f(1.0) / _f(factor)
    ext_factor = _f(1.0) if kind == "yarn" else _f(0.0)
    given = metadata.get(key("yarn_ext_factor"))
    if given is not None and _f(given) != ext_factor:
        raise ModelError(f"{path}: {key('yarn_ext_factor')} = {given!r}, but llama.cpp uses "
                         f"{float(ext_factor)!r} for rope scaling {kind!r} (it ignores the key)")
    attn_factor = _f(1.0)
    if ext_factor:
        # yarn's magnitude correction get_mscale(factor, 1) = 0.1 ln(factor) + 1, and the
        # same divided out again, because ggml's rope multiplies it in a second time
        # (llama_context's constructor; C++, so a*b + c is one FMA)
        factor = _f(1.0) / freq_scale
        log_factor = logf(factor)
        mscale = fma(_f(0.1), log_factor, _f(1.0)) if factor > 1 else _f(1.0)
        attn_factor = mscale * (_f(1.0) / fma(_f(0.1), log_factor, _f(1.0)))
        given = metadata.get(key("yarn_attn_factor"))
        if given is not None and not math.isclose(given, mscale, rel_tol=1e-6):
            raise ModelError(f"{path}: {key('yarn_attn_factor')} = {given!r} is not yarn's "
                             f"0.1 ln(factor) + 1 = {float(mscale)!r}, which llama.cpp uses for "
                             f"{arch} (it ignores the key)")
    attn_factor = attn_factor * _f(metadata.get(key("attn_factor"), 1.0))
    return dict(rope_freq_scale=float(freq_scale), rope_ext_factor=float(ext_factor),
                rope_attn_factor=float(attn_factor),
                n_ctx_orig=int(metadata.get(key("original_context_length"), n_ctx_train)))

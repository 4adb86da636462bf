"""Hyperparameters of a decoder-only transformer, read from GGUF metadata.

Keys are ``<arch>.<name>`` (e.g. ``qwen2.embedding_length``); which architectures pyggml
runs, and how they differ, is arch.py's table.  ``HParams.block`` combines the two into
what the devices run: one layer's BlockSpec.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ..errors import ModelError, TokenizerError
from .arch import ARCHITECTURES, Architecture, BlockSpec, Rope, default_attn_scale


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
    head_dim: int          # n_embd_head_k == n_embd_head_v == n_rot for the archs we run
    n_rot: int
    rope_base: float
    rms_eps: float

    @property
    def n_embd_gqa(self) -> int:
        """Width of K and V: head_dim * n_head_kv (grouped-query attention)."""
        return self.head_dim * self.n_head_kv

    @property
    def architecture(self) -> Architecture:
        return ARCHITECTURES[self.arch]

    def block(self, *, qkv_bias: bool) -> BlockSpec:
        """A layer as the devices run it (every layer has the same shapes in the families
        here); qkv_bias: whether its weights have q/k/v biases."""
        return BlockSpec(n_embd=self.n_embd, n_head=self.n_head, n_head_kv=self.n_head_kv,
                         head_dim=self.head_dim, n_ff=self.n_ff, rms_eps=self.rms_eps,
                         rope=Rope(self.architecture.rope_mode, self.n_rot, self.rope_base),
                         qkv_bias=qkv_bias, attn_scale=default_attn_scale(self.head_dim))

    @classmethod
    def from_metadata(cls, metadata: Mapping, *, path="model") -> HParams:
        arch = metadata.get("general.architecture")
        if arch is None:
            raise ModelError(f"{path}: no general.architecture key: not a model file")
        if arch not in ARCHITECTURES:
            raise ModelError(f"{path}: architecture {arch!r} is not supported "
                             f"(pyggml runs: {', '.join(sorted(ARCHITECTURES))})")

        def get(name, default=None, *, kind=int):
            key = f"{arch}.{name}"
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
        n_head = get("attention.head_count")
        n_head_kv = get("attention.head_count_kv", n_head)
        if n_head <= 0 or n_embd % n_head or n_head_kv <= 0 or n_head % n_head_kv:
            raise ModelError(f"{path}: n_embd={n_embd}, n_head={n_head}, n_head_kv={n_head_kv} "
                             "do not divide evenly")
        head_dim = get("attention.key_length", n_embd // n_head)
        if get("attention.value_length", head_dim) != head_dim:
            raise ModelError(f"{path}: different key and value head sizes are not supported")
        n_rot = get("rope.dimension_count", head_dim)
        if n_rot != head_dim:
            raise ModelError(f"{path}: partial rotary embeddings (n_rot={n_rot}, "
                             f"head_dim={head_dim}) are not supported")
        scaling = metadata.get(f"{arch}.rope.scaling.type", "none")
        if scaling not in ("none", "linear") or (
                scaling == "linear" and float(metadata.get(f"{arch}.rope.scaling.factor", 1.0)) != 1.0):
            raise ModelError(f"{path}: rope scaling {scaling!r} is not supported")
        tokens = metadata.get("tokenizer.ggml.tokens")
        if tokens is None and f"{arch}.vocab_size" not in metadata:
            raise TokenizerError(f"{path}: the file has no vocabulary (tokenizer.ggml.tokens), "
                                 "so pyggml can neither tokenize nor size the output")
        n_vocab = get("vocab_size", len(tokens) if tokens is not None else None)
        return cls(arch=arch, n_vocab=n_vocab, n_ctx_train=get("context_length"),
                   n_embd=n_embd, n_layer=get("block_count"), n_head=n_head, n_head_kv=n_head_kv,
                   n_ff=get("feed_forward_length"), head_dim=head_dim, n_rot=n_rot,
                   rope_base=get("rope.freq_base", 10000.0, kind=float),
                   rms_eps=get("attention.layer_norm_rms_epsilon", kind=float))

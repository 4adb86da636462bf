"""The transformer forward pass: the one decoder block every architecture shares.

Read top to bottom, this is llama.cpp's ``llm_build_<arch>`` (qwen2, llama, qwen3, gemma3,
phi3) in numpy, with the big products done by quantized kernels; what varies between
families is a field of the layer's BlockSpec (pyggml/model/arch.py), in brackets:

    x = token_embd[tokens] * embd_scale                      (T, n_embd), on the host
    for each layer:
        h   = rms_norm(x) * attn_norm
        q,k,v = Wq h [+ bq], Wk h [+ bk], Wv h [+ bv]         one activation quantization
        q,k = rms_norm(q) * q_norm, rms_norm(k) * k_norm      per head      [qk_norm]
        q,k = rope(q, pos), rope(k, pos)                      pairs or halves: block.rope
        q  *= q_scale                                                       [q_scale]
        kv cache <- k, v   (fp16, like llama.cpp's default cache type; the device owns it)
        a   = Wo attention(q, K[:pos], V[:pos])               causal, grouped-query,
                                                              within a window [window]
        x  += rms_norm(a) * attn_post_norm, or a                            [post_norms]
        h   = rms_norm(x) * ffn_norm
        f   = Wdown (act(Wgate h) * (Wup h))                  silu or gelu  [ffn_act]
        x  += rms_norm(f) * ffn_post_norm, or f                             [post_norms]
    logits = Wout (rms_norm(x) * output_norm)                 then cap * tanh(logits / cap)
                                                              where the head has a soft-cap

Shapes are written (rows, cols) in numpy order; T is the number of tokens in the
batch, ``pos0`` the position of the first of them.  A kernels object provides the
products (``project``: the numba kernels of pyggml.quants, or the GPU arithmetic of
pyggml.backends.simulated); everything else here is plain numpy and follows ggml's
arithmetic where it matters for matching llama.cpp (rms_norm's sum in double, rope's
float32 angle recurrence, fp16 K/V, the fp16 GELU table: numerics.py).  kernels/layer.c
runs the same block in C, every step included (CBlockDevice.steps).
"""
from __future__ import annotations

import numpy as np

from .arch import FFN_GELU, ROPE_NEOX, BlockSpec, HeadSpec, Rope
from .numerics import cos_sin, dot, fma, gelu_mul, logf, rope_pairs, silu_mul, softmax, tanhf
from .weights import LayerWeights, QMatrix


# ----------------------------------------------------------------------------- small ops

def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x (..., n) -> x / sqrt(mean(x^2) + eps) * weight, over the last axis (a token's
    hidden state, or one head of q or k).  ggml sums the float squares in double, left to
    right (cumsum keeps that order; sum() would pair them)."""
    total = np.cumsum(np.square(x), axis=-1, dtype=np.float64)[..., -1]
    mean = (total / x.shape[-1]).astype(np.float32)
    scale = np.float32(1.0) / np.sqrt(mean + np.float32(eps))
    return (x * scale[..., None]) * weight


def rope_cache(rope: Rope, pos0: int, n_tokens: int):
    """cos, sin (T, n_rot/2) float32 of the positions pos0 .. pos0 + T - 1: the tables every
    device rotates q and k by (rope_cache_at)."""
    return rope_cache_at(rope, np.arange(pos0, pos0 + n_tokens))


def rope_cache_at(rope: Rope, positions: np.ndarray):
    """cos, sin (T, n_rot/2) float32 of the rows at these positions (T,), e.g. one token of
    each of several sequences.  ggml_rope_cache_init and rope_yarn, step by step:

        theta   = p * theta_scale^i           by repeated float32 multiplication (theta *=
                                              theta_scale), not pow(): within an ulp of ggml
        extrap  = theta / freq_factors[i]
        interp  = freq_scale * extrap
        angle   = interp                      or, with yarn, interp (1 - mix) + extrap mix,
                                              mix = ramp(i) * ext_factor (one FMA: C++)
        cos, sin = cosf(angle) * mscale, sinf(angle) * mscale
    """
    half = rope.n_rot // 2
    theta_scale = np.float32(rope.base) ** (np.float32(-2.0) / np.float32(rope.n_rot))   # powf
    factors = np.full((len(positions), half), theta_scale, dtype=np.float32)
    factors[:, 0] = positions
    theta = np.cumprod(factors, axis=1, dtype=np.float32)              # (T, n_rot/2)
    if rope.freq_factors is not None:
        theta = theta / np.asarray(rope.freq_factors, np.float32)
    interp = np.float32(rope.freq_scale) * theta
    mscale = np.float32(rope.attn_factor)
    if rope.ext_factor:
        mix = yarn_ramp(rope) * np.float32(rope.ext_factor)           # (n_rot/2,)
        interp = fma(interp, np.float32(1.0) - mix, theta * mix)
        mscale = mscale * fma(np.float32(0.1), logf(np.float32(1.0) / np.float32(rope.freq_scale)),
                              np.float32(1.0))
    cos, sin = cos_sin(interp)
    return cos * mscale, sin * mscale


def yarn_ramp(rope: Rope) -> np.ndarray:
    """rope_yarn_ramp of each pair i: 1 below yarn's first correction dim, falling linearly
    to 0 at the last (ggml_rope_yarn_corr_dims: where a pair's wavelength fits beta_fast and
    beta_slow times into the trained context n_ctx_orig)."""
    f = np.float32

    def corr_dim(beta):                           # ggml_rope_yarn_corr_dim, in float32
        turns = f(rope.n_ctx_orig) / (f(beta) * f(2) * f(np.pi))
        return f(rope.n_rot) * logf(turns) / (f(2) * logf(f(rope.base)))
    low = max(f(0), np.floor(corr_dim(rope.beta_fast)))
    high = min(f(rope.n_rot - 1), np.ceil(corr_dim(rope.beta_slow)))
    y = (np.arange(rope.n_rot // 2, dtype=np.float32) - low) / max(f(0.001), high - low)
    return f(1) - np.minimum(f(1), np.maximum(f(0), y))


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, mode: int) -> np.ndarray:
    """Rotate x (T, n_heads, head_dim) in place by the angles cos/sin (T, head_dim/2).

    NEOX (qwen2) rotates the pairs (x[i], x[i + d/2]); NORM (llama) rotates (x[2i], x[2i+1]).
    """
    half = x.shape[-1] // 2
    c, s = cos[:, None, :], sin[:, None, :]
    if mode == ROPE_NEOX:
        x[..., :half], x[..., half:] = rope_pairs(x[..., :half], x[..., half:], c, s)
    else:
        x[..., 0::2], x[..., 1::2] = rope_pairs(x[..., 0::2], x[..., 1::2], c, s)
    return x


# ----------------------------------------------------------------------------- products

def project(kernels, x: np.ndarray, *weights: QMatrix, rows_alone: bool = False) -> list[np.ndarray]:
    """y_i = W_i @ x for several matrices sharing one input x (T, n_in) -> [(T, n_out_i)].

    Like ggml, the activations are quantized (Q8_K, Q8_0 or Q8_1, by weight type) before
    the integer dot products; done once per distinct format, not once per matrix.
    ``rows_alone``: each row of x multiplied as a product of that row alone is (rows of
    several sequences; which kernel ggml uses, and so the bits, depends on T).
    """
    quantized = {}
    outputs = []
    for w in weights:
        fmt = kernels.vec_dot_type(w.ggml_type)
        if fmt not in quantized:
            quantized[fmt] = kernels.quantize_activations(x, fmt)
        out = np.empty((x.shape[0], w.n_out), dtype=np.float32)
        kernels.matmul_q8(w.ggml_type, w.data, quantized[fmt], out, rows_alone=rows_alone)
        outputs.append(out)
    return outputs


# ----------------------------------------------------------------------------- one layer

def attention(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, pos0: int,
              scale: float, window: int = 0) -> np.ndarray:
    """Causal grouped-query attention for T new tokens at positions pos0..pos0+T-1.

    q (T, n_head, d); k_cache, v_cache (n_ctx, n_head_kv, d) fp16 holding 0..pos0+T-1.
    Query head h reads key/value head h // (n_head / n_head_kv); scores are (q . k) * scale.
    The query at p sees the keys at p' <= p, and with a window only p - p' < window
    (llama.cpp's is_masked_swa): the others are -inf in its softmax, as in llama.cpp's mask.
    -> (T, n_head * d)
    """
    T, n_head, d = q.shape
    n_kv = pos0 + T
    n_head_kv = k_cache.shape[1]
    group = n_head // n_head_kv
    keys = k_cache[:n_kv].astype(np.float32).transpose(1, 0, 2)        # (n_head_kv, n_kv, d)
    values = v_cache[:n_kv].astype(np.float32).transpose(1, 2, 0)      # (n_head_kv, d, n_kv)
    # (n_head_kv, group*T, d): the query heads that share a kv head, stacked; llama.cpp
    # multiplies fp16 K by Q converted to fp16, and fp16 V by the probabilities in fp16
    qg = q.reshape(T, n_head_kv, group, d).transpose(1, 2, 0, 3).reshape(n_head_kv, group * T, d)
    qg = qg.astype(np.float16).astype(np.float32)
    prompt = T > 1                              # which of ggml's two product paths (numerics.dot)
    query_pos = pos0 + np.tile(np.arange(T), group)
    key_pos = np.arange(n_kv)
    out = np.empty((n_head_kv, group * T, d), np.float32)
    for rows in _chunks(group * T, 32):         # bounds dot()'s lane buffers on long contexts
        qc = qg[:, rows, None, :]                                      # (n_head_kv, r, 1, d)
        scores = dot(qc, keys[:, None, :, :], prompt=prompt and d % 16 == 0)
        scores *= np.float32(scale)                                    # (n_head_kv, r, n_kv)
        behind = query_pos[rows, None] - key_pos[None, :]              # (r, n_kv)
        masked = (behind < 0) | (behind >= window) if window else behind < 0
        scores[:, masked] = -np.inf
        probs = softmax(scores).astype(np.float16).astype(np.float32)
        out[:, rows] = dot(probs[:, :, None, :], values[:, None, :, :], prompt=prompt, padded=True)
    return out.reshape(n_head_kv, group, T, d).transpose(2, 0, 1, 3).reshape(T, n_head * d)


def _chunks(n: int, size: int):
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def layer_forward(kernels, block: BlockSpec, w: LayerWeights, x: np.ndarray, pos0: int,
                  k_cache: np.ndarray, v_cache: np.ndarray, cos, sin) -> np.ndarray:
    """One transformer block on x (T, n_embd), updating the layer's kv cache; cos, sin are
    rope_cache(block.rope, pos0, T). -> (T, n_embd)"""
    T, eps = x.shape[0], block.rms_eps
    h = rms_norm(x, w.attn_norm, eps)
    q, k, v = project(kernels, h, w.wq, w.wk, w.wv)       # (T, n_embd_q), (T, n_gqa), (T, n_gqa)
    if block.qkv_bias:
        q += w.bq
        k += w.bk
        v += w.bv
    q = q.reshape(T, block.n_head, block.head_dim)
    k = k.reshape(T, block.n_head_kv, block.head_dim)
    if block.qk_norm:                                     # each head's row of head_dim
        q = rms_norm(q, w.q_norm, eps)
        k = rms_norm(k, w.k_norm, eps)
    q = rope(q, cos, sin, block.rope.mode)
    k = rope(k, cos, sin, block.rope.mode)
    if block.q_scale != 1.0:                              # before Q is rounded to fp16
        q *= np.float32(block.q_scale)
    k_cache[pos0:pos0 + T] = k
    v_cache[pos0:pos0 + T] = v.reshape(T, block.n_head_kv, block.head_dim)
    att = attention(q, k_cache, v_cache, pos0, block.attn_scale, block.window)   # (T, n_embd_q)
    out = project(kernels, att, w.wo)[0]                  # (T, n_embd)
    if block.post_norms:
        out = rms_norm(out, w.attn_post_norm, eps)
    x = x + out
    h = rms_norm(x, w.ffn_norm, eps)
    gate, up = project(kernels, h, w.w_gate, w.w_up)      # (T, n_ff) each
    activation = gelu_mul if block.ffn_act == FFN_GELU else silu_mul
    out = project(kernels, activation(gate, up), w.w_down)[0]
    if block.post_norms:
        out = rms_norm(out, w.ffn_post_norm, eps)
    return x + out


# ----------------------------------------------------------------------------- the head

def head_forward(kernels, head: HeadSpec, output_norm: np.ndarray, output: QMatrix,
                 x: np.ndarray, rows_alone: bool = False) -> np.ndarray:
    """Logits (T, n_vocab) of the hidden states x (T, n_embd) (rows_alone: see project)."""
    logits = project(kernels, rms_norm(x, output_norm, head.rms_eps), output,
                     rows_alone=rows_alone)[0]
    if head.logit_softcap:
        logits = softcap(logits, head.logit_softcap)
    return logits


def softcap(logits: np.ndarray, cap: float) -> np.ndarray:
    """cap * tanh(logits / cap) as llama.cpp's graph computes it: ggml_scale by 1.0f / cap,
    ggml_tanh (the C library's tanhf), ggml_scale by cap."""
    cap = np.float32(cap)
    return tanhf(logits * (np.float32(1.0) / cap)) * cap

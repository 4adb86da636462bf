"""The transformer forward pass: the one decoder block every architecture shares.

Read top to bottom, this is llama.cpp's ``llm_build_qwen2`` / ``llm_build_llama``
in numpy, with the big products done by quantized kernels; what varies between
families is a field of the layer's BlockSpec (pyggml/model/arch.py):

    x = token_embd[tokens]                                   (T, n_embd)
    for each layer:
        h   = rms_norm(x) * attn_norm
        q,k,v = Wq h [+ bq], Wk h [+ bk], Wv h [+ bv]         one activation quantization
        q,k = rope(q, pos), rope(k, pos)                      pairs or halves: block.rope
        kv cache <- k, v   (fp16, like llama.cpp's default cache type; the device owns it)
        x  += Wo attention(q, K[:pos], V[:pos])               causal, grouped-query
        h   = rms_norm(x) * ffn_norm
        x  += Wdown (silu(Wgate h) * (Wup h))                one activation quantization
    logits = Wout (rms_norm(x) * output_norm)

Shapes are written (rows, cols) in numpy order; T is the number of tokens in the
batch, ``pos0`` the position of the first of them.  A kernels object provides the
products (``project``: the numba kernels of pyggml.quants, or the GPU arithmetic of
pyggml.backends.simulated); everything else here is plain numpy and follows ggml's
arithmetic where it matters for matching llama.cpp (rms_norm's sum in double, rope's
float32 angle recurrence, fp16 K/V).  kernels/layer.c runs the same block in C.
"""
from __future__ import annotations

import numpy as np

from .arch import ROPE_NEOX, BlockSpec, Rope
from .numerics import cos_sin, dot, rope_pairs, silu_mul, softmax
from .weights import LayerWeights, QMatrix


# ----------------------------------------------------------------------------- small ops

def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x (T, n) -> x / sqrt(mean(x^2) + eps) * weight.  ggml sums the float squares in
    double, left to right (cumsum keeps that order; sum() would pair them)."""
    total = np.cumsum(np.square(x), axis=-1, dtype=np.float64)[:, -1]
    mean = (total / x.shape[-1]).astype(np.float32)
    scale = np.float32(1.0) / np.sqrt(mean + np.float32(eps))
    return (x * scale[:, None]) * weight


def rope_cache(rope: Rope, pos0: int, n_tokens: int):
    """cos, sin (T, n_rot/2) float32 of the angles pos * base^(-2i/n_rot) for the positions
    pos0 .. pos0 + T - 1: the tables every device rotates q and k by.

    ggml builds the angles by repeated float32 multiplication (theta *= theta_scale),
    not with pow(); doing the same keeps us within an ulp of llama.cpp.
    """
    theta_scale = np.float32(rope.base) ** np.float32(-2.0 / rope.n_rot)
    factors = np.full((n_tokens, rope.n_rot // 2), theta_scale, dtype=np.float32)
    factors[:, 0] = np.arange(pos0, pos0 + n_tokens, dtype=np.float32)
    theta = np.cumprod(factors, axis=1, dtype=np.float32)
    return cos_sin(theta)


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

def project(kernels, x: np.ndarray, *weights: QMatrix) -> list[np.ndarray]:
    """y_i = W_i @ x for several matrices sharing one input x (T, n_in) -> [(T, n_out_i)].

    Like ggml, the activations are quantized (Q8_K, Q8_0 or Q8_1, by weight type) before
    the integer dot products; done once per distinct format, not once per matrix.
    """
    quantized = {}
    outputs = []
    for w in weights:
        fmt = kernels.vec_dot_type(w.ggml_type)
        if fmt not in quantized:
            quantized[fmt] = kernels.quantize_activations(x, fmt)
        out = np.empty((x.shape[0], w.n_out), dtype=np.float32)
        kernels.matmul_q8(w.ggml_type, w.data, quantized[fmt], out)
        outputs.append(out)
    return outputs


# ----------------------------------------------------------------------------- one layer

def attention(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, pos0: int,
              scale: float) -> np.ndarray:
    """Causal grouped-query attention for T new tokens at positions pos0..pos0+T-1.

    q (T, n_head, d); k_cache, v_cache (n_ctx, n_head_kv, d) fp16 holding 0..pos0+T-1.
    Query head h reads key/value head h // (n_head / n_head_kv); scores are (q . k) * scale.
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
    out = np.empty((n_head_kv, group * T, d), np.float32)
    for rows in _chunks(group * T, 32):         # bounds dot()'s lane buffers on long contexts
        qc = qg[:, rows, None, :]                                      # (n_head_kv, r, 1, d)
        scores = dot(qc, keys[:, None, :, :], prompt=prompt and d % 16 == 0)
        scores *= np.float32(scale)                                    # (n_head_kv, r, n_kv)
        scores[:, np.arange(n_kv)[None, :] > query_pos[rows, None]] = -np.inf    # causal
        probs = softmax(scores).astype(np.float16).astype(np.float32)
        out[:, rows] = dot(probs[:, :, None, :], values[:, None, :, :], prompt=prompt, padded=True)
    return out.reshape(n_head_kv, group, T, d).transpose(2, 0, 1, 3).reshape(T, n_head * d)


def _chunks(n: int, size: int):
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def layer_forward(kernels, block: BlockSpec, w: LayerWeights, x: np.ndarray, pos0: int,
                  k_cache: np.ndarray, v_cache: np.ndarray, cos, sin) -> np.ndarray:
    """One transformer block on x (T, n_embd), updating the layer's kv cache; cos, sin are
    rope_cache(block.rope, pos0, T). -> (T, n_embd)"""
    T = x.shape[0]
    h = rms_norm(x, w.attn_norm, block.rms_eps)
    q, k, v = project(kernels, h, w.wq, w.wk, w.wv)       # (T, n_embd), (T, n_gqa), (T, n_gqa)
    if block.qkv_bias:
        q += w.bq
        k += w.bk
        v += w.bv
    q = rope(q.reshape(T, block.n_head, block.head_dim), cos, sin, block.rope.mode)
    k = rope(k.reshape(T, block.n_head_kv, block.head_dim), cos, sin, block.rope.mode)
    k_cache[pos0:pos0 + T] = k
    v_cache[pos0:pos0 + T] = v.reshape(T, block.n_head_kv, block.head_dim)
    att = attention(q, k_cache, v_cache, pos0, block.attn_scale)       # (T, n_embd)
    x = x + project(kernels, att, w.wo)[0]
    h = rms_norm(x, w.ffn_norm, block.rms_eps)
    gate, up = project(kernels, h, w.w_gate, w.w_up)      # (T, n_ff) each
    return x + project(kernels, silu_mul(gate, up), w.w_down)[0]

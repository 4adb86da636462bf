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
        kv cache <- k, v   fp16 (llama.cpp's default) or Q8_0/Q4_0 blocks     [type_k, type_v]
        a   = Wo attention(q, K[:pos], V[:pos])               causal, grouped-query,
                                                              within a window [window];
                                                              flash attention where V is
                                                              quantized
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
runs the same block in C, every step included (CBlockDevice.steps), a quantized kv cache
(KV_CACHE_STEPS) too.
"""
from __future__ import annotations

import numpy as np

from .arch import FFN_GELU, KV_CACHE_TYPES, ROPE_NEOX, BlockSpec, HeadSpec, Rope
from .numerics import (cos_sin, dot, fma, gelu_mul, libm_expf, logf, rope_pairs, silu_mul, softmax,
                       tanhf)
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


# ----------------------------------------------------------------------------- the kv cache
#
# A layer's K and V caches hold one row (n_head_kv, head_dim) per position, stored as the
# block's type_k / type_v: float16, or the blocks of Q8_0 / Q4_0 (one block per 32 numbers
# of a head; llama.cpp requires head_dim to be a multiple of 32), as uint8 rows of bytes.

def kv_cache(block: BlockSpec, n_ctx: int) -> tuple[np.ndarray, np.ndarray]:
    """An empty K and V cache of n_ctx positions in the block's cache types."""
    def empty(cache_type: str) -> np.ndarray:
        if cache_type == "f16":
            return np.zeros((n_ctx, block.n_head_kv, block.head_dim), np.float16)
        _, numbers, nbytes = KV_CACHE_TYPES[cache_type]
        return np.zeros((n_ctx, block.n_head_kv, block.head_dim // numbers * nbytes), np.uint8)
    return empty(block.type_k), empty(block.type_v)


def store_kv(cache: np.ndarray, cache_type: str, pos0: int, rows: np.ndarray) -> None:
    """Write rows (T, n_head_kv, head_dim) float32 at positions pos0.. as llama.cpp's
    ggml_set_rows does: each row through the CPU type's from_float, which rounds to fp16
    (nearest even), or quantizes with quantize_row_q8_0 (ggml-cpu's, rounding as the
    activations of a product do: quants.quantize_activations) or quantize_row_q4_0
    (= quantize_row_q4_0_ref: quants.quantize)."""
    from .. import quants
    T, n_head_kv, d = rows.shape
    if cache_type == "f16":
        cache[pos0:pos0 + T] = rows
        return
    type_id = KV_CACHE_TYPES[cache_type][0]
    flat = np.ascontiguousarray(rows, np.float32).reshape(T * n_head_kv, d)
    blocks = (quants.quantize_activations(flat, type_id) if cache_type == "q8_0"
              else quants.quantize(type_id, flat))
    cache[pos0:pos0 + T] = blocks.reshape(T, n_head_kv, -1)


def rotation_sizes(block: BlockSpec) -> tuple[int, int]:
    """The Walsh-Hadamard rotations llama.cpp applies around a quantized cache (its
    attn_rot_k / attn_rot_v, llama-kv-cache.cpp), as their sizes (0: none).  Rotating each
    head's numbers by an orthonormal H spreads outliers across a block before quantizing:

        K quantized, head_dim % 64 == 0:  q, k <- rotate(q), rotate(k) in chunks of the
                                          largest power of two >= 64 dividing head_dim
                                          (q . k is unchanged: H H^T = I)
        V quantized, head_dim % 64 == 0:  v <- rotate(v) in chunks of 64, and the
                                          attention's output rotated back (H H = I)

    (LLAMA_ATTN_ROT_DISABLE=1 turns them off in llama.cpp; pyggml always follows them.)"""
    d = block.head_dim
    n_k = 0
    if block.type_k != "f16" and d % 64 == 0:
        n_k = 64
        while d % (2 * n_k) == 0:
            n_k *= 2
    n_v = 64 if block.type_v != "f16" and d % 64 == 0 else 0
    return n_k, n_v


def rotate(x: np.ndarray, n: int) -> np.ndarray:
    """Each run of n numbers of x (the last axis, a multiple of n) times the n x n
    Walsh-Hadamard matrix / sqrt(n) (Sylvester's order), as ggml-cpu computes that product
    (ggml_compute_forward_fwht): scaled by 1/sqrtf(n) first, then the butterflies
    (u, v) -> (u + v, u - v) at distances 1, 2, 4, ... n/2, in float32."""
    y = x.reshape(-1, n) * (np.float32(1.0) / np.sqrt(np.float32(n)))
    length = 1
    while length < n:
        pairs = y.reshape(-1, n // (2 * length), 2, length)
        u, v = pairs[:, :, 0], pairs[:, :, 1]
        y = np.stack([u + v, u - v], axis=2)
        length *= 2
    return y.reshape(x.shape)


def _as_q8_0(blocks: np.ndarray, cache_type: str) -> np.ndarray:
    """K rows of Q8_0 or Q4_0 blocks -> the same numbers as Q8_0 blocks.  A Q4_0 block
    (d, quants 0..15 meaning q - 8) is a Q8_0 block with small quants: ggml's
    vec_dot_q4_0_q8_0 and vec_dot_q8_0_q8_0 sum the same integer lanes in the same float
    order, so the product is unchanged, and quants.matmul_q8's Q8_0 product follows it
    (its Q4_0 product follows the repacked order of Q4_0 weight matrices instead, which a
    kv cache is not)."""
    if cache_type == "q8_0":
        return blocks
    blocks = blocks.reshape(blocks.shape[:-1] + (-1, 18))
    nibbles = blocks[..., 2:]
    q = np.concatenate([nibbles & 15, nibbles >> 4], axis=-1).astype(np.int8) - np.int8(8)
    widened = np.concatenate([blocks[..., :2], q.view(np.uint8)], axis=-1)
    return widened.reshape(widened.shape[:-2] + (-1,))


def _key_scores(qg: np.ndarray, k_cache: np.ndarray, n_kv: int, type_k: str) -> np.ndarray:
    """q . k of each query row with each key, quantized K: qg (n_head_kv, R, d) ->
    (n_head_kv, R, n_kv).  ggml converts Q to the K type's vec_dot_type (Q8_0, as
    quantize_row_q8_0 of ggml-cpu) and takes each product as vec_dot (or tinyBLAS, the
    same order for these types)."""
    from .. import quants
    from ..ggml import GGMLType
    n_head_kv, R, d = qg.shape
    scores = np.empty((n_head_kv, R, n_kv), np.float32)
    for h in range(n_head_kv):
        keys = np.ascontiguousarray(_as_q8_0(k_cache[:n_kv, h], type_k))
        qq = quants.quantize_activations(qg[h], GGMLType.Q8_0)
        quants.matmul_q8(GGMLType.Q8_0, keys, qq, scores[h])
    return scores


# ----------------------------------------------------------------------------- attention

def attention(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, pos0: int,
              scale: float, window: int = 0, type_k: str = "f16",
              type_v: str = "f16") -> np.ndarray:
    """Causal grouped-query attention for T new tokens at positions pos0..pos0+T-1.

    q (T, n_head, d); k_cache, v_cache (n_ctx, n_head_kv, ...) of types type_k, type_v
    (kv_cache) holding 0..pos0+T-1.  Query head h reads key/value head h // (n_head /
    n_head_kv); scores are (q . k) * scale.  The query at p sees the keys at p' <= p, and
    with a window only p - p' < window (llama.cpp's is_masked_swa): the others are -inf
    in its softmax, as in llama.cpp's mask.  With a quantized V, llama.cpp's flash
    attention (flash_attention); otherwise its mul_mat, soft_max, mul_mat.
    -> (T, n_head * d)
    """
    T, n_head, d = q.shape
    n_kv = pos0 + T
    n_head_kv = k_cache.shape[1]
    group = n_head // n_head_kv
    # (n_head_kv, group*T, d): the query heads that share a kv head, stacked
    qg = q.reshape(T, n_head_kv, group, d).transpose(1, 2, 0, 3).reshape(n_head_kv, group * T, d)
    query_pos = pos0 + np.tile(np.arange(T), group)
    behind = query_pos[:, None] - np.arange(n_kv)[None, :]            # (group*T, n_kv)
    masked = (behind < 0) | (behind >= window) if window else behind < 0
    if type_v != "f16":
        out = flash_attention(qg, k_cache, v_cache, n_kv, masked, scale, type_k, type_v)
        return out.reshape(n_head_kv, group, T, d).transpose(2, 0, 1, 3).reshape(T, n_head * d)
    if type_k != "f16":
        quantized_scores = _key_scores(qg, k_cache, n_kv, type_k)
    else:
        keys = k_cache[:n_kv].astype(np.float32).transpose(1, 0, 2)    # (n_head_kv, n_kv, d)
        # llama.cpp multiplies fp16 K by Q converted to fp16
        qg = qg.astype(np.float16).astype(np.float32)
    values = v_cache[:n_kv].astype(np.float32).transpose(1, 2, 0)      # (n_head_kv, d, n_kv)
    prompt = T > 1                              # which of ggml's two product paths (numerics.dot)
    out = np.empty((n_head_kv, group * T, d), np.float32)
    for rows in _chunks(group * T, 32):         # bounds dot()'s lane buffers on long contexts
        if type_k != "f16":
            scores = quantized_scores[:, rows]
        else:
            qc = qg[:, rows, None, :]                                  # (n_head_kv, r, 1, d)
            scores = dot(qc, keys[:, None, :, :], prompt=prompt and d % 16 == 0)
        scores *= np.float32(scale)                                    # (n_head_kv, r, n_kv)
        scores[:, masked[rows]] = -np.inf
        # fp16 V times the probabilities converted to fp16
        probs = softmax(scores).astype(np.float16).astype(np.float32)
        out[:, rows] = dot(probs[:, :, None, :], values[:, None, :, :], prompt=prompt, padded=True)
    return out.reshape(n_head_kv, group, T, d).transpose(2, 0, 1, 3).reshape(T, n_head * d)


def flash_attention(qg: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, n_kv: int,
                    masked: np.ndarray, scale: float, type_k: str, type_v: str) -> np.ndarray:
    """ggml_compute_forward_flash_attn_ext_f16_one_chunk (the CPU's path for a quantized
    V), each query row qg (n_head_kv, R, d) over the keys 0..n_kv-1 in order, masked
    (R, n_kv) skipped, with an online softmax in float32:

        s = (q . k) * scale             q converted to the K type's vec_dot_type first
        if s > M:  ms = expf(M - s), M = s, acc *= ms          (vs = 1)
        else:      vs = expf(s - M)                            (ms = 1)
        acc = fma(v, vs, acc)           v dequantized (ggml's to_float)
        S = fma(S, ms, vs)              (C++ contracted)
        out = acc * (1 / S)

    expf is the C library's (a scalar call in ggml's loop).  -> (n_head_kv, R, d)
    """
    from .. import quants
    n_head_kv, R, d = qg.shape
    if type_k == "f16":                 # ggml_vec_dot_f16 on Q rounded to fp16
        keys = k_cache[:n_kv].astype(np.float32).transpose(1, 0, 2)
        scores = dot(qg.astype(np.float16).astype(np.float32)[:, :, None, :],
                     keys[:, None, :, :], prompt=False)
    else:
        scores = _key_scores(qg, k_cache, n_kv, type_k)
    scores *= np.float32(scale)
    type_id = KV_CACHE_TYPES[type_v][0]
    values = quants.dequantize(type_id, np.ascontiguousarray(v_cache[:n_kv]),
                               (n_kv, n_head_kv, d)).transpose(1, 0, 2)   # (n_head_kv, n_kv, d)
    one = np.float32(1.0)
    M = np.full((n_head_kv, R), -np.inf, np.float32)
    S = np.zeros((n_head_kv, R), np.float32)
    acc = np.zeros((n_head_kv, R, d), np.float32)
    for ic in range(n_kv):
        live = ~masked[:, ic]                                         # (R,)
        if not live.any():
            continue
        s = scores[:, live, ic]                                       # (n_head_kv, r)
        m_old = M[:, live]
        higher = s > m_old
        with np.errstate(invalid="ignore"):                           # -inf - -inf: unused
            e = libm_expf(np.where(higher, m_old - s, s - m_old))
        ms = np.where(higher, e, one)
        vs = np.where(higher, one, e)
        a = acc[:, live] * ms[..., None]
        acc[:, live] = fma(values[:, ic, None, :], vs[..., None], a)
        S[:, live] = fma(S[:, live], ms, vs)
        M[:, live] = np.maximum(m_old, s)
    with np.errstate(divide="ignore"):
        inverse = np.where(S == 0, np.float32(0), one / S)
    return acc * inverse[..., None]


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
    v = v.reshape(T, block.n_head_kv, block.head_dim)
    n_rot_k, n_rot_v = rotation_sizes(block)              # a quantized cache: rotated first
    if n_rot_k:
        q, k = rotate(q, n_rot_k), rotate(k, n_rot_k)
    if n_rot_v:
        v = rotate(v, n_rot_v)
    store_kv(k_cache, block.type_k, pos0, k)
    store_kv(v_cache, block.type_v, pos0, v)
    att = attention(q, k_cache, v_cache, pos0, block.attn_scale, block.window,   # (T, n_embd_q)
                    block.type_k, block.type_v)
    if n_rot_v:
        att = rotate(att, n_rot_v)
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

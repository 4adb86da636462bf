"""IQ4_NL and IQ4_XS: 4-bit "non-linear" quants (32 weights per block; super-blocks of 256).

Like Q4_0 (one fp16 scale, two 4-bit indices per byte, weight j in the low nibble and
j+16 in the high one), but the 16 levels are not evenly spaced: each index selects a
value from a fixed table that is denser near zero, where most weights are:

    kvalues = -127 -104 -83 -65 -49 -35 -22 -10  1 13 25 38 53 69 89 113

        byte 0      2                                          18
             +------+------------------------------------------+
             |  d   | qs[16]: qs[j] = i[j+16] << 4 | i[j]      |
             | fp16 |                                          |
             +------+------------------------------------------+

    y[j] = d * kvalues[i[j]]

Why it matters: llama.cpp builds from Feb 2024 to at least late 2025 fall back to IQ4_NL
for Q2_K/Q3_K tensors whose rows are not a multiple of 256 (Qwen2.5-0.5B's attn_q/k and
ffn_gate/up in a Q3_K_M file).  Products use Q8_0 activations, like Q4_0.

IQ4_XS puts 8 such blocks in a super-block of 256 that shares one fp16 d, each block
keeping a 6-bit scale of its own (4.25 bits per weight instead of 4.5): y = d * (ls - 32)
* kvalues[i]; its products take Q8_K activations, like the K-quants.

Fast kernels: ``legacy_numba.py`` for IQ4_NL (``quants_iq4_nl``: the table lookup, one
vpshufb), whose dequantization and Q8_0 products it shares with the other 32-weight
types; ``iq_numba.py`` for IQ4_XS.
"""
from __future__ import annotations

import numpy as np

from ..ggml import GGMLType
from .base import QuantType, absmax_signed, f32, fp16_bytes, fp16_field, nearest_int, seq_sum
from .legacy import LegacyType, _nibbles, _pack_nibbles
from . import iq_numba, legacy_numba as fast

KVALUES = fast.KVALUES_IQ4NL                          # kvalues_iq4nl (ggml-common.h)
GROUP_MAX_EPS = np.float32(1e-15)
QK_K = 256


class IQ4_NL(LegacyType, ggml_type=GGMLType.IQ4_NL):
    """4-bit indices into a non-linear table: y = d * kvalues[i].

    Quantizer (quantize_iq4_nl, no importance weights: quantize_row_iq4_nl_impl with
    ntry = 7): weights w = x^2; start from d = max/127, then try the 15 scales
    (itry - 127)/max for itry = -7..7; each maps x to the nearest table value, and the
    least-squares d of the best one is kept.  The stored indices are those of x * (1/d).
    """
    vec_dot_type = GGMLType.Q8_0
    layout = (("d", 0, 2, "fp16 scale"), ("qs", 2, 16, "32 4-bit indices into kvalues"))

    @classmethod
    def fields(cls, blocks):
        index = _nibbles(blocks[:, 2:18])
        return dict(d=fp16_field(blocks, 0), index=index, q=KVALUES[index])

    @classmethod
    def quantize_blocks(cls, x):
        d = fit_iq4_nl(x, x * x)
        with np.errstate(divide="ignore"):
            inv = np.where(d != 0, np.float32(1) / d, np.float32(0))
        return np.concatenate([fp16_bytes(d), _pack_nibbles(best_index(f32(KVALUES), inv * x))], axis=1)


class IQ4_XS(QuantType, ggml_type=GGMLType.IQ4_XS):
    """IQ4_NL's table in super-blocks of 256 with 6-bit sub-block scales:
    y = d * (ls_j - 32) * kvalues[i], 8 sub-blocks j of 32 weights.

        byte 0      2          4             8                                      136
             +------+----------+-------------+---------------------------------------+
             |  d   | scales_h | scales_l[4] | qs[128]: 8 sub-blocks of 16 bytes,    |
             | fp16 | u16 LE:  | low 4 bits  | each packed as IQ4_NL's qs (weight j  |
             |      | bits 2j  | of ls_j in  | in the low nibble, j + 16 in the high |
             |      | ..2j+1 = | the nibble  | one)                                  |
             |      | ls_j >> 4| j % 2 of    |                                       |
             |      |          | byte j / 2  |                                       |
             +------+----------+-------------+---------------------------------------+

    ls_j = ((scales_l[j / 2] >> 4 (j % 2)) & 15) | ((scales_h >> 2j) & 3) << 4, sc_j = ls_j - 32.
    Products use Q8_K activations (one scale per 256, like the K-quants).
    Quantizer (quantize_iq4_xs: quantize_row_iq4_nl_impl with super-blocks of 256): each
    sub-block's scale is fitted as IQ4_NL's block scale (fit_iq4_nl), weights x^2 or,
    with an importance matrix, qw * sqrt(sigma2 + x^2), sigma2 = 2 sum x^2 / 256; then
    d = -(the scale of largest |scale|) / 32, sc_j = nearest_int(scale_j / d) in -32..31,
    and each weight's index is recomputed for x / (d sc_j).
    """
    vec_dot_type = GGMLType.Q8_K
    dequant_kernel = iq_numba.dequantize_rows
    matmul_kernel = iq_numba.matmul_q8_K
    quantize_kernel = iq_numba.quantize_rows
    imatrix = "weights"
    sub_block = 32
    layout = (("d", 0, 2, "fp16 scale"), ("scales_h", 2, 2, "high 2 bits of 8 6-bit scales"),
              ("scales_l", 4, 4, "low 4 bits of 8 6-bit scales"), ("qs", 8, 128, "256 4-bit indices"))

    @classmethod
    def fields(cls, blocks):
        n = blocks.shape[0]
        low = np.stack([blocks[:, 4:8] & 15, blocks[:, 4:8] >> 4], axis=2).reshape(n, 8)
        high = (np.ascontiguousarray(blocks[:, 2:4]).view("<u2") >> (2 * np.arange(8, dtype=np.uint16))) & 3
        index = _nibbles(blocks[:, 8:136].reshape(n * 8, 16)).reshape(n, QK_K)
        return dict(d=fp16_field(blocks, 0), sc=(low | (high << 4)).astype(np.int32) - 32, index=index,
                    q=KVALUES[index])

    @classmethod
    def dequantize_blocks(cls, blocks):
        f = cls.fields(blocks)
        n = blocks.shape[0]
        dl = (f["d"] * f32(f["sc"]))[:, :, None]
        return (dl * f32(f["q"]).reshape(n, 8, 32)).reshape(n, QK_K)

    @classmethod
    def quantize_blocks(cls, x, quant_weights=None):
        n = x.shape[0]
        xb = x.reshape(n * 8, 32)
        if quant_weights is None:
            w = xb * xb
        else:
            sigma2 = seq_sum(x * x) * np.float32(2 / QK_K)
            w = quant_weights.reshape(n * 8, 32) * np.sqrt(np.repeat(sigma2, 8, axis=0) + xb * xb)
        scales = fit_iq4_nl(xb, w).reshape(n, 8)
        d = -absmax_signed(scales) / np.float32(32)                 # (n, 1); -0.0 if all zero
        with np.errstate(divide="ignore"):
            inv = np.where(d != 0, np.float32(1) / d, np.float32(0))
            sc = np.clip(nearest_int(inv * scales), -32, 31)
            dl = d * f32(sc)
            inv_dl = np.where(dl != 0, np.float32(1) / dl, np.float32(0))
        index = best_index(f32(KVALUES), inv_dl.reshape(n * 8, 1) * xb)
        ls = sc + 32
        scales_h = ((ls >> 4) << (2 * np.arange(8))).sum(axis=1).astype("<u2")
        scales_l = (ls[:, 0::2] & 15) | ((ls[:, 1::2] & 15) << 4)
        return np.concatenate([fp16_bytes(d), scales_h.view(np.uint8).reshape(n, 2),
                               scales_l.astype(np.uint8), _pack_nibbles(index).reshape(n, 128)], axis=1)

    @classmethod
    def matmul_fast(cls, W, xq, out):
        iq_numba.matmul_q8_K(int(cls.ggml_type), W, xq.view(np.float32), xq.view(np.int8), out)

    @classmethod
    def quantize_fast(cls, x, imatrix=None):
        out = np.empty((x.shape[0], x.shape[1] // QK_K * cls.type_size), np.uint8)
        qw = np.empty(0, np.float32) if imatrix is None else imatrix
        iq_numba.quantize_rows(int(cls.ggml_type), x, qw, iq_numba.NO_GRID, out)
        return out


def fit_iq4_nl(x: np.ndarray, w: np.ndarray, ntry: int = 7) -> np.ndarray:
    """The scale of each block of x (m, 32) with importance w (m, 32), as ggml's
    quantize_row_iq4_nl_impl fits it: start from d = max / -127 (the extreme weight on the
    extreme value -127, ntry > 0), then try the 15 scales (itry - 127) / max for
    itry = -ntry..ntry; each maps x to the nearest table values q, and the least-squares
    d = sum w q x / sum w q^2 of the best fit is kept.  0 for a block whose largest |x| is
    below GROUP_MAX_EPS.  -> (m, 1) float32."""
    values = f32(KVALUES)
    max_x = absmax_signed(x)                    # (m, 1): largest |x|, its sign kept
    zero = np.abs(max_x) < GROUP_MAX_EPS

    def fit(inv):
        q = values[best_index(values, inv * x)]
        sumqx = np.zeros_like(max_x)
        sumq2 = np.zeros_like(max_x)
        for j in range(32):
            sumqx = sumqx + w[:, j:j + 1] * q[:, j:j + 1] * x[:, j:j + 1]
            sumq2 = sumq2 + w[:, j:j + 1] * q[:, j:j + 1] * q[:, j:j + 1]
        return sumqx, sumq2

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d0 = -max_x / values[0]
        sumqx, sumq2 = fit(np.float32(1) / d0)
        d = np.where(sumq2 > 0, sumqx / sumq2, np.float32(0))
        best = d * sumqx
        for itry in range(-ntry, ntry + 1):
            sumqx, sumq2 = fit(np.float32(itry + int(KVALUES[0])) / max_x)
            better = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
            d = np.where(better, sumqx / sumq2, d)
            best = np.where(better, d * sumqx, best)
    return np.where(zero, np.float32(0), d)


def best_index(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the table value nearest to x (ggml's best_index_int8; ties go up).

    values: the sorted table as float32; x: float32 of any shape.
    """
    above = np.clip(np.searchsorted(values, x, side="right"), 1, len(values) - 1)
    lower = values[above - 1]
    upper = values[above]
    index = np.where(x - lower < upper - x, above - 1, above)
    index = np.where(x <= values[0], 0, index)
    return np.where(x >= values[-1], len(values) - 1, index)

"""IQ4_NL: 4-bit "non-linear" quants, 32 weights per block.

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

Fast kernels: ``legacy_numba.py`` (``quants_iq4_nl``: the table lookup, one vpshufb), whose
dequantization and Q8_0 products it shares with the other 32-weight types.
"""
from __future__ import annotations

import numpy as np

from ..ggml import GGMLType
from .base import absmax_signed, f32, fp16_bytes, fp16_field
from .legacy import LegacyType, _nibbles, _pack_nibbles
from . import legacy_numba as fast

KVALUES = fast.KVALUES_IQ4NL                          # kvalues_iq4nl (ggml-common.h)
GROUP_MAX_EPS = np.float32(1e-15)


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
        ntry = 7
        values = f32(KVALUES)
        max_x = absmax_signed(x)                    # (n, 1): largest |x|, its sign kept
        zero = np.abs(max_x) < GROUP_MAX_EPS
        w = x * x

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
            d = np.where(zero, np.float32(0), d)
            inv = np.where(d != 0, np.float32(1) / d, np.float32(0))
        return np.concatenate([fp16_bytes(d), _pack_nibbles(best_index(values, inv * x))], axis=1)


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

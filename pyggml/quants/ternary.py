"""The ternary types TQ1_0 and TQ2_0: weights of -1, 0 or +1 times one fp16 scale per 256
(BitNet b1.58 and the TriLMs are trained that way).

    y = d * (t - 1),  t in 0, 1, 2  (a trit)

TQ2_0 spends 2 bits per trit (2.06 bits per weight); TQ1_0 packs 5 trits into a byte
(3^5 = 243 <= 256: 1.69 bits per weight) in base 3, as a fixed-point fraction so that no
division is needed to decode:

    byte = ceil(256 * (t0 t1 t2 t3 t4)_3 / 243)          t0 the most significant trit
    trit n = ((byte * 3^n) mod 256) * 3 >> 8             multiply by 3^n drops trits 0..n-1
                                                         (the integer part, beyond 8 bits);
                                                         times 3, the next trit is on top

The 4 trits of each qh byte are packed the same way with a fifth trit of 0 below them
(the value times 3 before the division).  Products use Q8_K activations: the trits are
unsigned, so each 32-weight slice is one maddubs of t against the activations, and the
-1 comes out of the activation sums (bsums), as ggml's vec_dot does (``ternary_numba.py``).
The quantizers ignore an importance matrix, as ggml's do.
"""
from __future__ import annotations

import numpy as np

from ..ggml import GGMLType
from .base import QuantType, f32, fp16_bytes, fp16_field, roundf
from .k import _crumbs, _pack_crumbs
from . import ternary_numba as fast

QK_K = 256
POW3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)


class TernaryType(QuantType):
    """What TQ1_0 and TQ2_0 share: fields() gives d (n, 1) and each weight's trit t (n, 256)
    and q = t - 1; y = float(q) * d; the absmax quantizer t = lroundf(x / d) + 1, d = max |x|."""
    vec_dot_type = GGMLType.Q8_K
    imatrix = "ignored"
    dequant_kernel = fast.dequantize_rows
    matmul_kernel = fast.matmul_q8_K
    quantize_kernel = fast.quantize_rows

    @classmethod
    def dequantize_blocks(cls, blocks):
        f = cls.fields(blocks)
        return f32(f["q"]) * f["d"]

    @classmethod
    def matmul_fast(cls, W, xq, out):
        fast.matmul_q8_K(int(cls.ggml_type), W, xq.view(np.float32), xq.view(np.int8),
                         xq.view(np.int16), out)

    @classmethod
    def quantize_fast(cls, x):
        out = np.empty((x.shape[0], x.shape[1] // QK_K * cls.type_size), np.uint8)
        fast.quantize_rows(int(cls.ggml_type), x, out)
        return out


def absmax_trits(x: np.ndarray):
    """(d, trits) of ggml's ternary quantizers: d = max |x|, t = lroundf(x * (1/d)) + 1."""
    d = np.abs(x).max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0))
    return d, (roundf(x * inv) + 1).astype(np.uint8)


def unpack_trits(packed: np.ndarray, n_trits: int) -> np.ndarray:
    """uint8 (n, m) -> trits (n, n_trits, m): trit i of every byte, most significant first."""
    shifted = packed[:, None, :] * POW3[:n_trits, None]             # uint8: mod 256
    return ((shifted.astype(np.uint16) * 3) >> 8).astype(np.uint8)


def pack_trits(trits: np.ndarray) -> np.ndarray:
    """trits (n, 5, m), most significant first -> uint8 (n, m) = ceil(256 * value / 243)."""
    value = (trits.astype(np.uint16) * POW3[::-1, None].astype(np.uint16)).sum(axis=1)
    return ((value * 256 + 242) // 243).astype(np.uint8)


class TQ1_0(TernaryType, ggml_type=GGMLType.TQ1_0):
    """Trits packed 5 per byte in base 3 (4 in the qh bytes): y = d * (t - 1).

        byte 0                          32               48        52     54
             +--------------------------+----------------+---------+------+
             | qs[0..31]: 5 trits each  | qs[32..47]:    | qh[4]:  |  d   |
             | weight 32 n + m is trit  | weight 160 +   | 4 trits,| fp16 |
             | n of qs[m]               | 16 n + m: trit | 240 +   |      |
             |                          | n of qs[32+m]  | 4 n + j |      |
             +--------------------------+----------------+---------+------+

    (trit n of a byte: n = 0 the most significant; see the module docstring.)
    Quantizer (quantize_row_tq1_0_ref): d = max |x|, t = lroundf(x / d) + 1.
    """
    layout = (("qs", 0, 48, "5 trits per byte, base 3"), ("qh", 48, 4, "4 trits per byte"),
              ("d", 52, 2, "fp16 scale"))

    @classmethod
    def fields(cls, blocks):
        n = blocks.shape[0]
        trits = np.concatenate([unpack_trits(blocks[:, 0:32], 5).reshape(n, 160),
                                unpack_trits(blocks[:, 32:48], 5).reshape(n, 80),
                                unpack_trits(blocks[:, 48:52], 4).reshape(n, 16)], axis=1)
        return dict(d=fp16_field(blocks, 52), trits=trits, q=trits.astype(np.int8) - np.int8(1))

    @classmethod
    def quantize_blocks(cls, x):
        n = x.shape[0]
        d, t = absmax_trits(x)
        qh_trits = np.concatenate([t[:, 240:].reshape(n, 4, 4), np.zeros((n, 1, 4), np.uint8)], axis=1)
        return np.concatenate([pack_trits(t[:, :160].reshape(n, 5, 32)),
                               pack_trits(t[:, 160:240].reshape(n, 5, 16)),
                               pack_trits(qh_trits), fp16_bytes(d)], axis=1)


class TQ2_0(TernaryType, ggml_type=GGMLType.TQ2_0):
    """Trits in 2 bits each: y = d * (t - 1), t in 0..2.

        byte 0                                                       64     66
             +-------------------------------------------------------+------+
             | qs[64]: weight 128 h + 32 k + l is bits 2k .. 2k+1 of  |  d   |
             |         qs[32 h + l]  (Q2_K's layout of its quants)    | fp16 |
             +-------------------------------------------------------+------+

    Quantizer (quantize_row_tq2_0_ref): d = max |x|, t = lroundf(x / d) + 1.
    """
    layout = (("qs", 0, 64, "2-bit trits"), ("d", 64, 2, "fp16 scale"))

    @classmethod
    def fields(cls, blocks):
        trits = _crumbs(blocks[:, 0:64])
        return dict(d=fp16_field(blocks, 64), trits=trits, q=trits.astype(np.int8) - np.int8(1))

    @classmethod
    def quantize_blocks(cls, x):
        d, t = absmax_trits(x)
        return np.concatenate([_pack_crumbs(t & 3), fp16_bytes(d)], axis=1)

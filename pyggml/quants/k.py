"""K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (256 weights per super-block).

A super-block of 256 weights is cut into sub-blocks (16 of 16 weights, or 8 of 32), and
every sub-block has its own small integer scale (and, for Q2_K/Q4_K/Q5_K, a minimum),
themselves scaled by the fp16 super-block values ``d`` (and ``dmin``):

    Q2_K, Q4_K, Q5_K (affine):   y = d * sc_j * q - dmin * m_j        q >= 0
    Q3_K, Q6_K (symmetric):      y = d * sc_j * q                     q signed

so the per-weight cost of the scales is small (K-quants are 2.6 to 6.6 bits per weight).
The quantizers search, per sub-block, for the scale (and min) that minimise a weighted
error, then quantize those scales to 4 or 6 bits (ggml's make_qkx2_quants,
make_q3_quants, make_qx_quants, reproduced at the bottom of this file).

For a product the activations are quantized to Q8_K (see ``q8.py``), whose per-16
``bsums`` let the minimum term be computed without touching the weights:
sum_i (d sc q_i - dmin m) x_i = d * sum_j sc_j sum_{i in j} q_i x_i - dmin * sum_j m_j bsums_j.

Fast kernels: ``k_numba.py`` (``dequantize_row_<type>``, ``block_lanes_<type>`` and the
``vec_dot_*_q8_K`` float orders, under the same names as the packed scales here:
``scale_min_k4``, ``q3_K_scales``).
"""
from __future__ import annotations

import numpy as np

from ..ggml import GGMLType
from .base import (QuantType, absmax_signed, f32, fp16_bytes, fp16_field, fp16_round, nearest_int,
                   seq_sum)
from . import k_numba as fast, quantize_numba

QK_K = 256
GROUP_MAX_EPS = np.float32(1e-15)


class KType(QuantType):
    """What the K-quants share: the formula over fields(), and products with Q8_K.

    ``fields(blocks)`` decodes every field: d, dmin (n, 1) float32; sc, m (n, n_sub) the
    sub-block scales and mins as integers; q (n, 256) the integer quants, signed where the
    format is symmetric.  Then, per weight i of sub-block j (gguf-py's float32 order):

        y = (d * sc_j) * q_i - (dmin * m_j)      or, without mins,   y = (d * sc_j) * q_i
    """
    vec_dot_type = GGMLType.Q8_K
    dequant_kernel = fast.dequantize_rows
    matmul_kernel = fast.matmul_q8_K
    quantize_kernel = quantize_numba.quantize_rows
    imatrix = "fast"
    sub_block: int                      # weights per sub-block (16 or 32)

    @classmethod
    def dequantize_blocks(cls, blocks):
        f = cls.fields(blocks)
        n = blocks.shape[0]
        n_sub = QK_K // cls.sub_block
        y = (f["d"] * f32(f["sc"])).reshape(n, n_sub, 1) * f32(f["q"]).reshape(n, n_sub, cls.sub_block)
        if "m" in f:
            y = y - (f["dmin"] * f32(f["m"])).reshape(n, n_sub, 1)
        return y.reshape(n, QK_K)

    @classmethod
    def quantize_fast(cls, x, imatrix=None):
        return quantize_numba.quantize(cls, x, imatrix)

    @classmethod
    def matmul_fast(cls, W, xq, out):
        fast.matmul_q8_K(int(cls.ggml_type), W, xq.view(np.float32), xq.view(np.int8),
                         xq.view(np.int16), out)


def _crumbs(qs: np.ndarray) -> np.ndarray:
    """qs uint8 (n, 64) -> 2-bit values (n, 256) in weight order.

    Byte l of each 32-byte half h holds weights 128h + l + 32k in bits 2k..2k+1.
    """
    n = qs.shape[0]
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    return ((qs.reshape(n, 2, 1, 32) >> shifts) & 3).reshape(n, QK_K)


def _pack_crumbs(L: np.ndarray) -> np.ndarray:
    """(n, 256) values 0..3 -> qs uint8 (n, 64): the inverse of _crumbs."""
    L = L.astype(np.uint8).reshape(-1, 2, 4, 32)
    return (L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4) | (L[:, :, 3] << 6)).reshape(-1, 64)


def _bits(mask: np.ndarray) -> np.ndarray:
    """hmask/qh uint8 (n, 32) -> (n, 256): weight e's bit is bit e//32 of byte e%32."""
    n = mask.shape[0]
    return ((mask.reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1) \
        .reshape(n, QK_K)


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    """(n, 256) bits -> (n, 32) bytes: the inverse of _bits."""
    b = bits.astype(np.uint8).reshape(-1, 8, 32) << np.arange(8, dtype=np.uint8).reshape(1, 8, 1)
    return np.bitwise_or.reduce(b, axis=1)


def _nibbles_k(qs: np.ndarray) -> np.ndarray:
    """qs uint8 (n, 128) -> (n, 256): 32-byte chunk c gives weights 64c..64c+31 (low
    nibbles) and 64c+32..64c+63 (high nibbles)."""
    n = qs.shape[0]
    return np.stack([qs.reshape(n, 4, 32) & 0x0F, qs.reshape(n, 4, 32) >> 4], axis=2).reshape(n, QK_K)


def _pack_nibbles_k(L: np.ndarray) -> np.ndarray:
    L = L.astype(np.uint8).reshape(-1, 4, 2, 32)
    return (L[:, :, 0] | (L[:, :, 1] << 4)).reshape(-1, 128)


class Q2_K(KType, ggml_type=GGMLType.Q2_K):
    """2-bit affine, 16 sub-blocks of 16: y = d * (sc & 15) * q - dmin * (sc >> 4), q in 0..3.

        byte 0                  16                           80     82     84
             +------------------+----------------------------+------+------+
             | scales[16]       | qs[64]: 4 weights per byte | d    | dmin |
             | sc = low nibble, | (layout of _crumbs)        | fp16 | fp16 |
             | m  = high nibble |                            |      |      |
             +------------------+----------------------------+------+------+

    Weight e: q = (qs[32*(e//128) + e%32] >> 2*((e%128)//32)) & 3, sub-block e//16.
    Quantizer: quantize_row_q2_K_ref (make_qkx2_quants with |x| weights, then 4-bit
    scales and mins relative to the largest of each).
    """
    layout = (("scales", 0, 16, "4-bit scale | 4-bit min << 4"), ("qs", 16, 64, "2-bit quants"),
              ("d", 80, 2, "fp16 scale of the scales"), ("dmin", 82, 2, "fp16 scale of the mins"))
    sub_block = 16

    @classmethod
    def fields(cls, blocks):
        scales = blocks[:, 0:16]
        return dict(d=fp16_field(blocks, 80), dmin=fp16_field(blocks, 82),
                    sc=scales & 0x0F, m=scales >> 4, q=_crumbs(blocks[:, 16:80]))

    @classmethod
    def quantize_blocks(cls, x):
        n = x.shape[0]
        groups = x.reshape(n * 16, 16)
        scales, mins, L = make_qkx2_quants(groups, np.abs(groups), 3, -0.5, 0.1, 15, use_mad=True)
        scales, mins, L = scales.reshape(n, 16), mins.reshape(n, 16), L.reshape(n, 16, 16)
        q4scale = np.float32(15)
        max_scale = np.maximum(scales.max(axis=1, keepdims=True), 0)
        max_min = np.maximum(mins.max(axis=1, keepdims=True), 0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ls = np.where(max_scale > 0, nearest_int((q4scale / max_scale) * scales), 0)
            lm = np.where(max_min > 0, nearest_int((q4scale / max_min) * mins), 0)
        sc_bytes = ((ls & 0xFF) | (lm << 4)) & 0xFF
        d = np.where(max_scale > 0, max_scale / q4scale, np.float32(0))
        dmin = np.where(max_min > 0, max_min / q4scale, np.float32(0))
        dq = fp16_round(d) * f32(sc_bytes & 0xF)                       # (n, 16)
        dm = fp16_round(dmin) * f32(sc_bytes >> 4)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            requant = np.clip(nearest_int((x.reshape(n, 16, 16) + dm[..., None]) / dq[..., None]), 0, 3)
        L = np.where((dq != 0)[..., None], requant, L).reshape(n, QK_K)
        return np.concatenate([sc_bytes.astype(np.uint8), _pack_crumbs(L), fp16_bytes(d),
                               fp16_bytes(dmin)], axis=1)


class Q3_K(KType, ggml_type=GGMLType.Q3_K):
    """3-bit symmetric, 16 sub-blocks of 16: y = d * S_j * q, q in -4..3, S_j in -32..31.

        byte 0             32                     96           108    110
             +-------------+----------------------+------------+------+
             | hmask[32]   | qs[64]: low 2 bits   | scales[12] |  d   |
             | high bits   | (layout of _crumbs)  | 16 x 6 bit | fp16 |
             +-------------+----------------------+------------+------+

    Weight e: low = 2-bit value as in Q2_K, hb = (hmask[e%32] >> e//32) & 1,
    q = low - 4 + 4*hb (the stored 3-bit value is biased by 4, and the high bit is SET
    for the upper half).  Scales, 6 bits each, biased by 32 (gguf-py's map):
         0: IIIIAAAA  ...  7: PPPPHHHH       low nibbles: A-H = S0..7, I-P = S8..15
         8: MMIIEEAA  ... 11: PPLLHHDD       2-bit pairs: the high bits, 4 per byte
    Quantizer: quantize_row_q3_K_ref (make_q3_quants per sub-block, 6-bit scales).
    """
    layout = (("hmask", 0, 32, "high bits"), ("qs", 32, 64, "low 2 bits"),
              ("scales", 96, 12, "16 6-bit scales"), ("d", 108, 2, "fp16 scale of the scales"))
    sub_block = 16

    @classmethod
    def fields(cls, blocks):
        low = _crumbs(blocks[:, 32:96]).astype(np.int8)
        high = _bits(blocks[:, 0:32]).astype(np.int8)
        return dict(d=fp16_field(blocks, 108), sc=q3_K_scales(blocks[:, 96:108]),
                    q=low - 4 * (1 - high))

    @classmethod
    def quantize_blocks(cls, x):
        n = x.shape[0]
        scales, L, max_scale = _symmetric_sub_blocks(x, make_q3_quants, 4)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            iscale = np.float32(-32) / max_scale
            ls = np.where(max_scale != 0, np.clip(nearest_int(iscale * scales), -32, 31), 0) + 32
            d = np.where(max_scale != 0, np.float32(1) / iscale, np.float32(0))
        sc_bytes = pack_q3_K_scales(np.where(max_scale != 0, ls, 0))
        dq = fp16_round(d) * f32(q3_K_scales(sc_bytes))          # (n, 16)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            requant = np.clip(nearest_int(x.reshape(n, 16, 16) / dq[..., None]), -4, 3) + 4
        L = np.where((dq != 0)[..., None], requant, L).reshape(n, QK_K)
        hmask = _pack_bits(L > 3)
        return np.concatenate([hmask, _pack_crumbs(np.where(L > 3, L - 4, L)), sc_bytes,
                               fp16_bytes(d)], axis=1)


class Q4_K(KType, ggml_type=GGMLType.Q4_K):
    """4-bit affine, 8 sub-blocks of 32: y = d * sc_j * q - dmin * m_j, q in 0..15.

        byte 0      2      4                16                                     144
             +------+------+----------------+--------------------------------------+
             |  d   | dmin | scales[12]     | qs[128]: 4 chunks of 32 bytes; chunk |
             | fp16 | fp16 | 8 x 6-bit sc,  | c: low nibbles = sub-block 2c,       |
             |      |      | 8 x 6-bit m    |    high nibbles = sub-block 2c+1     |
             +------+------+----------------+--------------------------------------+

    The 12 scale bytes (gguf-py's map; sc: A-H, m: a-h, capitals = high bits):
         0 EEAAAAAA   1 FFBBBBBB   2 GGCCCCCC   3 HHDDDDDD      sc0..3 + high bits of sc4..7
         4 eeaaaaaa   5 ffbbbbbb   6 ggcccccc   7 hhdddddd      m0..3  + high bits of m4..7
         8 eeeeEEEE   9 ffffFFFF  10 ggggGGGG  11 hhhhHHHH      low 4 bits of m4..7 | sc4..7
    (ggml's get_scale_min_k4.)  Quantizer: quantize_row_q4_K_ref (make_qkx2_quants with
    weights av_x + |x|, then 6-bit scales and mins relative to the largest of each).
    """
    layout = (("d", 0, 2, "fp16 scale of the scales"), ("dmin", 2, 2, "fp16 scale of the mins"),
              ("scales", 4, 12, "8 6-bit scales, 8 6-bit mins"), ("qs", 16, 128, "4-bit quants"))
    sub_block = 32
    nmax, rmin, rdelta, nstep = 15, -1.0, 0.1, 20           # make_qkx2_quants arguments

    @classmethod
    def fields(cls, blocks):
        sc, m = scale_min_k4(blocks[:, 4:16])
        return dict(d=fp16_field(blocks, 0), dmin=fp16_field(blocks, 2), sc=sc, m=m,
                    q=_nibbles_k(blocks[:, 16:144]))

    @classmethod
    def quantize_blocks(cls, x):
        header, L = quantize_scale_min_k4(x, cls.nmax, cls.rmin, cls.rdelta, cls.nstep)
        return np.concatenate([header, _pack_nibbles_k(L)], axis=1)


class Q5_K(KType, ggml_type=GGMLType.Q5_K):
    """5-bit affine, 8 sub-blocks of 32: y = d * sc_j * q - dmin * m_j, q in 0..31.

        byte 0      2      4             16            48                          176
             +------+------+-------------+-------------+---------------------------+
             |  d   | dmin | scales[12]  | qh[32]      | qs[128]: low 4 bits,      |
             | fp16 | fp16 | as Q4_K     | 5th bits    | as Q4_K                   |
             +------+------+-------------+-------------+---------------------------+

    Weight e: q = nibble (as Q4_K) + 16 * ((qh[e%32] >> e//32) & 1).
    Quantizer: quantize_row_q5_K_ref (as Q4_K with 31 levels).
    """
    layout = (("d", 0, 2, "fp16 scale of the scales"), ("dmin", 2, 2, "fp16 scale of the mins"),
              ("scales", 4, 12, "8 6-bit scales, 8 6-bit mins"), ("qh", 16, 32, "5th bits"),
              ("qs", 48, 128, "low 4 bits"))
    sub_block = 32
    nmax, rmin, rdelta, nstep = 31, -0.5, 0.1, 15

    @classmethod
    def fields(cls, blocks):
        sc, m = scale_min_k4(blocks[:, 4:16])
        return dict(d=fp16_field(blocks, 0), dmin=fp16_field(blocks, 2), sc=sc, m=m,
                    q=_nibbles_k(blocks[:, 48:176]) | (_bits(blocks[:, 16:48]) << 4))

    @classmethod
    def quantize_blocks(cls, x):
        header, L = quantize_scale_min_k4(x, cls.nmax, cls.rmin, cls.rdelta, cls.nstep)
        return np.concatenate([header, _pack_bits(L > 15), _pack_nibbles_k(L & 15)], axis=1)


class Q6_K(KType, ggml_type=GGMLType.Q6_K):
    """6-bit symmetric, 16 sub-blocks of 16: y = d * scales[j] * q, q in -32..31.

        byte 0                    128               192            208    210
             +--------------------+-----------------+--------------+------+
             | ql[128]: low 4 bits| qh[64]: high 2  | scales[16]   |  d   |
             |                    | bits            | int8         | fp16 |
             +--------------------+-----------------+--------------+------+

    Weight e, with h = e//128, k = (e%128)//32, l = e%32:
        low4 = (ql[64h + l + 32*(k&1)] >> 4*(k>>1)) & 15
        hi2  = (qh[32h + l] >> 2k) & 3
        q    = (low4 | hi2 << 4) - 32
    Quantizer: quantize_row_q6_K_ref (make_qx_quants per sub-block, int8 scales).
    """
    layout = (("ql", 0, 128, "low 4 bits"), ("qh", 128, 64, "high 2 bits"),
              ("scales", 192, 16, "16 int8 scales"), ("d", 208, 2, "fp16 scale of the scales"))
    sub_block = 16

    @classmethod
    def fields(cls, blocks):
        q = _q6_values(blocks[:, 0:128], blocks[:, 128:192]).astype(np.int8) - np.int8(32)
        return dict(d=fp16_field(blocks, 208), sc=blocks[:, 192:208].view(np.int8), q=q)

    @classmethod
    def quantize_blocks(cls, x):
        n = x.shape[0]
        scales, L, max_scale = _symmetric_sub_blocks(x, make_qx_quants, 32)
        zero = np.abs(max_scale) < GROUP_MAX_EPS                           # (n, 1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            iscale = np.float32(-128) / max_scale
            sc = np.minimum(127, nearest_int(iscale * scales)).astype(np.int8)
            d = np.float32(1) / iscale
            dq = fp16_round(d) * f32(sc)
            requant = np.clip(nearest_int(x.reshape(n, 16, 16) / dq[..., None]), -32, 31) + 32
        L = np.where((dq != 0)[..., None], requant, L).reshape(n, QK_K).astype(np.uint8)
        Lh = L.reshape(n, 2, 4, 32)                                        # (half, k, l)
        ql = np.concatenate([(Lh[:, :, 0] & 15) | ((Lh[:, :, 2] & 15) << 4),
                             (Lh[:, :, 1] & 15) | ((Lh[:, :, 3] & 15) << 4)], axis=2)
        qh = (Lh[:, :, 0] >> 4) | ((Lh[:, :, 1] >> 4) << 2) | ((Lh[:, :, 2] >> 4) << 4) \
            | ((Lh[:, :, 3] >> 4) << 6)
        out = np.concatenate([ql.reshape(n, 128), qh.reshape(n, 64), sc.view(np.uint8),
                              fp16_bytes(d)], axis=1)
        out[zero[:, 0]] = 0                                               # all-zero block
        return out


def _symmetric_sub_blocks(x: np.ndarray, make_quants, nmax: int):
    """What Q3_K's and Q6_K's quantizers start with: make_quants (make_q3_quants or
    make_qx_quants) on each 16-weight sub-block of x (n, 256) -> scales (n, 16), levels
    L (n, 16, 16), and max_scale (n, 1): the scale of largest |scale|, its sign kept
    (ggml's scan, which starts from +0)."""
    n = x.shape[0]
    scales, L = make_quants(x.reshape(n * 16, 16), nmax)
    scales = scales.reshape(n, 16)
    return scales, L.reshape(n, 16, 16), absmax_signed(scales)


def _q6_values(ql: np.ndarray, qh: np.ndarray) -> np.ndarray:
    """ql (n, 128), qh (n, 64) -> the unsigned 6-bit values (n, 256) in weight order."""
    n = ql.shape[0]
    low = ql.reshape(n, 2, 1, 64) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    low = (low & 0x0F).reshape(n, 2, 4, 32)                  # k = 0..3 from (nibble, half of 64)
    high = (qh.reshape(n, 2, 1, 32) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)) & 3
    return (low | (high << 4)).reshape(n, QK_K)


# ---------------------------------------------------------------------- packed scales

def scale_min_k4(scales: np.ndarray):
    """scales uint8 (n, 12) of Q4_K/Q5_K -> (sc, m), each (n, 8) in 0..63 (get_scale_min_k4)."""
    s = scales.reshape(-1, 3, 4)
    low_sc, low_m, high = s[:, 0], s[:, 1], s[:, 2]          # bytes 0..3, 4..7, 8..11
    sc = np.concatenate([low_sc & 0x3F, (high & 0x0F) | ((low_sc >> 6) << 4)], axis=1)
    m = np.concatenate([low_m & 0x3F, (high >> 4) | ((low_m >> 6) << 4)], axis=1)
    return sc, m


def pack_scale_min_k4(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(sc, m), each (n, 8) in 0..63 -> the 12 packed bytes (inverse of scale_min_k4)."""
    ls, lm = ls.astype(np.uint8), lm.astype(np.uint8)
    first = ls[:, :4] | ((ls[:, 4:] >> 4) << 6)
    second = lm[:, :4] | ((lm[:, 4:] >> 4) << 6)
    third = (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4)
    return np.concatenate([first, second, third], axis=1)


def q3_K_scales(scales: np.ndarray) -> np.ndarray:
    """scales uint8 (n, 12) of Q3_K -> (n, 16) signed scales S_j in -32..31."""
    low = np.concatenate([scales[:, 0:8] & 0x0F, scales[:, 0:8] >> 4], axis=1)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 4, 1)
    high = ((scales[:, 8:12].reshape(-1, 1, 4) >> shifts) & 3).reshape(-1, 16)
    return (low | (high << 4)).astype(np.int8) - np.int8(32)


def pack_q3_K_scales(biased: np.ndarray) -> np.ndarray:
    """(n, 16) scales + 32 (0..63) -> the 12 packed bytes (inverse of q3_K_scales)."""
    b = biased.astype(np.uint8)
    low = (b[:, 0:8] & 0x0F) | ((b[:, 8:16] & 0x0F) << 4)
    high = (b >> 4).reshape(-1, 4, 4) << np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 4, 1)
    return np.concatenate([low, np.bitwise_or.reduce(high, axis=1)], axis=1)


# ---------------------------------------------------------------------- ggml's quantizer searches
# Vectorized over groups (one group per row); every float32 operation is ggml's, in
# ggml's order, so that the chosen scales -- and hence the bytes -- are identical.

def quantize_scale_min_k4(x: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int):
    """The part Q4_K and Q5_K share: (d, dmin, scales) header bytes (n, 16) and L (n, 256)."""
    n = x.shape[0]
    sub = x.reshape(n * 8, 32)
    av_x = np.sqrt(seq_sum(sub * sub) / np.float32(32))
    scales, mins, L = make_qkx2_quants(sub, av_x + np.abs(sub), nmax, rmin, rdelta, nstep,
                                       use_mad=False)
    scales, mins, L = scales.reshape(n, 8), mins.reshape(n, 8), L.reshape(n, 8, 32)
    max_scale = np.maximum(scales.max(axis=1, keepdims=True), 0)
    max_min = np.maximum(mins.max(axis=1, keepdims=True), 0)
    with np.errstate(divide="ignore"):
        inv_scale = np.where(max_scale > 0, np.float32(63) / max_scale, np.float32(0))
        inv_min = np.where(max_min > 0, np.float32(63) / max_min, np.float32(0))
    ls = np.minimum(63, nearest_int(inv_scale * scales) & 0xFF)     # stored in a uint8 first
    lm = np.minimum(63, nearest_int(inv_min * mins) & 0xFF)
    d, dmin = max_scale / np.float32(63), max_min / np.float32(63)
    dq = fp16_round(d) * f32(ls)
    dm = fp16_round(dmin) * f32(lm)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        requant = np.clip(nearest_int((x.reshape(n, 8, 32) + dm[..., None]) / dq[..., None]), 0, nmax)
    L = np.where((dq != 0)[..., None], requant, L).reshape(n, QK_K)
    header = np.concatenate([fp16_bytes(d), fp16_bytes(dmin), pack_scale_min_k4(ls, lm)], axis=1)
    return header, L


def make_qkx2_quants(x, weights, nmax, rmin, rdelta, nstep, use_mad):
    """Best affine (scale, min) for each row of x (G, n): ggml's make_qkx2_quants.

    Starts from scale = (max - min) / nmax with min = min(x, 0), then tries nstep+1 scales
    (rmin + rdelta*is + nmax) / (max - min); for each, the weighted least-squares (scale,
    min) given the rounded levels, kept if its weighted error (|diff| or diff^2) is lower.
    Returns (scale (G,), the_min = -min (G,), L (G, n) levels in 0..nmax).
    """
    G, n = x.shape
    w = weights
    min_x = x[:, 0].copy()
    max_x = x[:, 0].copy()
    sum_w = w[:, 0].copy()
    sum_x = sum_w * x[:, 0]
    for i in range(1, n):
        min_x = np.where(x[:, i] < min_x, x[:, i], min_x)
        max_x = np.where(x[:, i] > max_x, x[:, i], max_x)
        sum_w = sum_w + w[:, i]
        sum_x = sum_x + w[:, i] * x[:, i]
    min_x = np.where(min_x > 0, np.float32(0), min_x)
    flat = max_x == min_x
    fnmax = np.float32(nmax)

    def error(scale, minimum, levels):
        total = np.zeros(G, dtype=np.float32)
        for i in range(n):
            diff = scale * f32(levels[:, i]) + minimum - x[:, i]
            total = total + w[:, i] * (np.abs(diff) if use_mad else diff * diff)
        return total

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = fnmax / (max_x - min_x)
        scale = np.float32(1) / iscale
        L = np.clip(nearest_int(iscale[:, None] * (x - min_x[:, None])), 0, nmax)
        best_error = error(scale, min_x, L)
        for step in range(nstep + 1):
            iscale = (np.float32(rmin) + np.float32(rdelta) * np.float32(step) + fnmax) / (max_x - min_x)
            laux = np.clip(nearest_int(iscale[:, None] * (x - min_x[:, None])), 0, nmax)
            sum_l = np.zeros(G, dtype=np.float32)
            sum_l2 = np.zeros(G, dtype=np.float32)
            sum_xl = np.zeros(G, dtype=np.float32)
            for i in range(n):
                wl = w[:, i] * f32(laux[:, i])
                sum_l = sum_l + wl
                sum_l2 = sum_l2 + wl * f32(laux[:, i])
                sum_xl = sum_xl + wl * x[:, i]
            D = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            positive = this_min > 0
            this_scale = np.where(positive, sum_xl / sum_l2, this_scale)
            this_min = np.where(positive, np.float32(0), this_min)
            cur_error = error(this_scale, this_min, laux)
            better = (D > 0) & (cur_error < best_error)
            L = np.where(better[:, None], laux, L)
            best_error = np.where(better, cur_error, best_error)
            scale = np.where(better, this_scale, scale)
            min_x = np.where(better, this_min, min_x)
    L = np.where(flat[:, None], 0, L)
    scale = np.where(flat, np.float32(0), scale)
    return scale, -min_x, L


def _symmetric_levels(x, w, iscale, nmax):
    """Levels l = clamp(nearest_int(iscale * x), -nmax, nmax - 1) of each row of x (G, n),
    and the weighted sums sumlx = sum w x l, suml2 = sum w l^2 (G,), in ggml's order."""
    l = np.clip(nearest_int(iscale[:, None] * x), -nmax, nmax - 1)
    sumlx = np.zeros(x.shape[0], dtype=np.float32)
    suml2 = np.zeros(x.shape[0], dtype=np.float32)
    for i in range(x.shape[1]):
        li = f32(l[:, i])
        sumlx = sumlx + w[:, i] * x[:, i] * li
        suml2 = suml2 + w[:, i] * li * li
    return l, sumlx, suml2


def make_qx_quants(x, nmax):
    """Best symmetric scale for each row of x (G, n), rmse_type 1 (weights x^2), no qw:
    ggml's make_qx_quants as Q6_K calls it.  Tries iscale = -(nmax + 0.1*is)/max for
    is = -9..9 and keeps the one with the largest sumlx^2/suml2.
    Returns (scale (G,), L (G, n) levels + nmax in 0..2*nmax-1)."""
    max_x = absmax_signed(x)[:, 0]                 # largest |x|, its sign kept
    zero = np.abs(max_x) < GROUP_MAX_EPS
    fnmax = np.float32(nmax)
    w = x * x
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        l, sumlx, suml2 = _symmetric_levels(x, w, -fnmax / max_x, nmax)
        L = l + nmax
        scale = np.where(suml2 != 0, sumlx / suml2, np.float32(0))
        best = scale * sumlx
        for step in range(-9, 10):
            if step == 0:
                continue
            l, sumlx, suml2 = _symmetric_levels(x, w, -(fnmax + np.float32(0.1) * np.float32(step)) / max_x,
                                                nmax)
            better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            L = np.where(better[:, None], l + nmax, L)
            scale = np.where(better, sumlx / suml2, scale)
            best = np.where(better, scale * sumlx, best)
    return np.where(zero, np.float32(0), scale), np.where(zero[:, None], 0, L)


def make_q3_quants(x, nmax):
    """Best symmetric levels for each row of x (G, n) with weights x^2: ggml's
    make_q3_quants(do_rmse=true).  Rounds with iscale = -nmax/max, then up to 5 passes of
    coordinate descent: each weight in turn moves to the level that is best for the
    others' current fit, if that raises sumlx^2/suml2.  (A pass that changes nothing
    would change nothing if repeated, so running all 5 for every group is equivalent to
    ggml's early exit.)  Returns (scale (G,), L (G, n) levels + nmax in 0..2*nmax-1)."""
    n = x.shape[1]
    max_x = absmax_signed(x)[:, 0]                 # largest |x|, its sign kept
    zero = np.abs(max_x) < GROUP_MAX_EPS
    w = x * x
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        L, sumlx, suml2 = _symmetric_levels(x, w, -np.float32(nmax) / max_x, nmax)
        for _ in range(5):
            for i in range(n):
                li = f32(L[:, i])
                slx = sumlx - w[:, i] * x[:, i] * li
                sl2 = suml2 - w[:, i] * li * li
                new_l = np.clip(nearest_int(x[:, i] * sl2 / slx), -nmax, nmax - 1)
                nl = f32(new_l)
                slx = slx + w[:, i] * x[:, i] * nl
                sl2 = sl2 + w[:, i] * nl * nl
                take = ((sumlx - w[:, i] * x[:, i] * li > 0) & (new_l != L[:, i]) & (sl2 > 0)
                        & (slx * slx * suml2 > sumlx * sumlx * sl2))
                L[:, i] = np.where(take, new_l, L[:, i])
                sumlx = np.where(take, slx, sumlx)
                suml2 = np.where(take, sl2, suml2)
        scale = np.where(suml2 > 0, sumlx / suml2, np.float32(0))
    return np.where(zero, np.float32(0), scale), np.where(zero[:, None], 0, L + nmax)

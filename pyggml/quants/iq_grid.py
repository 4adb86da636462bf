"""The codebook i-quants: IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M (256 weights per block).

Instead of one small integer per weight, these types store, for each group of 8 weights,
the index of a point of a fixed codebook (the "grid", iq_grid_points.py explains what a
point is and where the grids come from), the signs of the 8 weights, and per 16 or 32
weights a small scale:

    IQ2_XXS, IQ2_XS, IQ2_S:  y = d * (0.5 + ls) / 4 * grid[g][j] * sign_j     grid bytes 8, 25, 43
    IQ1_S, IQ1_M:            y = d * (2 ls + 1) * (grid[g][j] + delta)       grid -1, 0, +1;
                                                                            delta = +-1/8

so 8 weights cost 8 to 11 bits of index (+ 7 or 8 bits of signs for the 2-bit types):
2.06 (IQ2_XXS) down to 1.56 (IQ1_S) bits per weight with the scales.  d * (0.5 + ls) / 4
is d * (2 ls + 1) / 8, and grid / 8 is 1, 3.125, 5.375: both families scale odd integers.

    type     bytes  scale per    ls bits  index bits  signs             delta
    IQ2_XXS    66   32 weights      4        8        7 + parity        -
    IQ2_XS     74   16 weights      4        9        7 + parity        -
    IQ2_S      82   16 weights      4       10        8                 -
    IQ1_S      50   32 weights      3       11        -                 one per 32 weights
    IQ1_M      56   16 weights      3       11        -                 one per 8 weights

Products quantize the activations to Q8_K, as for the K-quants; the grids' bytes times
the activation bytes are exact integer sums (iq_grid_numba.py).  The quantizers
(quantize_row_<type>_impl in ggml-quants.c, below) search, per group, for the scale and
the grid point that fit the weights best under an importance weighting: they need an
importance matrix (imatrix: per column of the matrix, how much its inputs matter) for
IQ2_XXS, IQ2_XS and IQ1_S, and can do without one for IQ2_S and IQ1_M.

Fast kernels: ``iq_grid_numba.py`` (``dequantize_row_<type>``, ``block_lanes_<type>``,
``vec_dot_<type>_q8_K`` and the fast quantizers, under the same names as here).
"""
from __future__ import annotations

import functools

import numpy as np

from ..ggml import GGMLType
from ..errors import UsageError
from .base import QuantType, f32, fp16_bytes, fp16_field, nearest_int, seq_sum
from .iq_grid_points import (iq1s_grid, iq2s_grid, iq2xs_grid, iq2xxs_grid, kmask_iq2xs,
                             ksigns_iq2xs)
from . import iq_grid_numba as fast
from . import iq_grid_points as points

QK_K = 256
IQ1S_DELTA = np.float32(0.125)          # ggml-common.h: IQ1S_DELTA (= IQ1M_DELTA)
# below these, a group is all zero to the quantizers (ggml-quants.c)
GROUP_MAX_EPS = np.float32(1e-15)
GROUP_MAX_EPS_IQ2_S = np.float32(1e-8)
GROUP_MAX_EPS_IQ1_M = np.float32(1e-7)
GROUP_MAX_EPS_IQ1_S = np.float32(1e-12)
F = np.float32


class GridType(QuantType):
    """What the codebook i-quants share: Q8_K products, and fields() that decode every
    block into d (n, 1), the sub-block scales ls (n, n_scales), the grid index of each
    group of 8 weights, grid (n, 32), and the integers q (n, 256) the formula scales: the
    signed grid bytes (IQ2_*) or the grid's -1, 0, +1 (IQ1_*, with delta (n, 32) the sign
    of each group's shift).  ``points`` (n, 32, 8) are the grid entries they select."""
    vec_dot_type = GGMLType.Q8_K
    dequant_kernel = fast.dequantize_rows
    matmul_kernel = fast.matmul_q8_K
    grid: np.ndarray                    # the type's codebook, (n_points, 8)
    scale_block: int                    # weights per scale ls
    imatrix = "weights"                 # ggml's quantizers weigh their fits with it
    quantize_kernel = fast.quantize_rows
    needs_imatrix = False               # IQ2_XXS, IQ2_XS, IQ1_S: ggml refuses to go without

    @classmethod
    def quantize_fast(cls, x, imatrix=None):
        """float32 (n_rows, K) -> uint8 (n_rows, row_bytes) with the numba quantizer (the
        same bytes as quantize_blocks), imatrix float32 (K,) or None."""
        cls.check_weights(imatrix)
        n_rows, k = x.shape
        out = np.empty((n_rows, k // QK_K * cls.type_size), dtype=np.uint8)
        kmap, kneighbors = grid_maps(cls.kgrid_name, cls.nwant)
        pos = points.grid_points(getattr(points, cls.kgrid_name), np.array([1, 3, 5], np.int8))
        has_imatrix = imatrix is not None
        # read-only views in both cases: numba compiles one quantizer per array type
        x, weights = (np.ascontiguousarray(a, dtype=np.float32).view() for a in
                      (x, imatrix if has_imatrix else np.zeros(k, np.float32)))
        x.flags.writeable = weights.flags.writeable = False
        fast.quantize_rows(int(cls.ggml_type), x, weights, has_imatrix, out, pos, kmap, kneighbors)
        return out

    @classmethod
    def check_weights(cls, quant_weights):
        if quant_weights is None and cls.needs_imatrix:
            raise UsageError(f"{cls.name} needs an importance matrix to quantize (imatrix=...: "
                             f"one float32 per column), as llama.cpp does")

    @classmethod
    def matmul_fast(cls, W, xq, out):
        fast.matmul_q8_K(int(cls.ggml_type), W, xq.view(np.float32), xq.view(np.int8),
                         xq.view(np.int16), out)

    @classmethod
    def describe(cls, fields) -> list[str]:
        """`pyggml inspect`'s lines for one block (fields of a single block): per group of
        8 weights its grid index, the lattice point it selects and its signs or shift."""
        d, ls = float(fields["d"][0, 0]), fields["ls"][0]
        lines = [f"d = {d:.8g}   (y = {cls.formula})", "", f"scales of {cls.scale_block} weights: ls"]
        for j, value in enumerate(ls):
            lines.append(f"  {j:2d}: ls {int(value):2d} -> {cls.sub_scale(d, int(value)):+.6g}")
        lines += ["", "groups of 8 weights: grid index -> point, " + cls.group_extra]
        for g in range(QK_K // 8):
            point = " ".join(f"{int(v):3d}" for v in fields["points"][0, g])
            lines.append(f"  {8 * g:3d}: {int(fields['grid'][0, g]):5d} -> [{point}]  "
                         + cls.group_detail(fields, g))
        return lines


class IQ2Type(GridType):
    """IQ2_XXS, IQ2_XS, IQ2_S: y = (d * (0.5 + ls) * 0.25) * q, q = +-grid byte, in ggml's
    (and gguf-py's) float32 order: db = d * (0.5 + ls) * 0.25, y = db * q."""
    formula = "d * (0.5 + ls) / 4 * grid * sign"
    group_extra = "signs (- for a negative weight)"

    @classmethod
    def dequantize_blocks(cls, blocks):
        f = cls.fields(blocks)
        n = blocks.shape[0]
        db = f["d"] * (np.float32(0.5) + f32(f["ls"])) * np.float32(0.25)       # (n, n_scales)
        return (db[:, :, None] * f32(f["q"]).reshape(n, db.shape[1], -1)).reshape(n, QK_K)

    @staticmethod
    def sub_scale(d: float, ls: int) -> float:
        return float(np.float32(d) * (np.float32(0.5) + np.float32(ls)) * np.float32(0.25))

    @classmethod
    def quantize_blocks(cls, x, quant_weights=None):
        cls.check_weights(quant_weights)
        return cls.pack(*quantize_iq2(cls, x, quant_weights))

    @staticmethod
    def group_detail(fields, g) -> str:
        return "".join("-" if s < 0 else "+" for s in fields["q"][0, 8 * g:8 * g + 8])

    @classmethod
    def signed(cls, grid_index, sign_bits):
        """The points of grid_index (n, 32) with sign_bits (n, 32) (bit j: weight j is
        negative) applied: (points (n, 32, 8), q int8 (n, 256))."""
        points = cls.grid[grid_index]
        negative = (sign_bits[..., None] & kmask_iq2xs) != 0
        q = np.where(negative, -points.astype(np.int8), points.astype(np.int8))
        return points, q.reshape(len(grid_index), QK_K)


class IQ1Type(GridType):
    """IQ1_S, IQ1_M: y = (d * (2 ls + 1)) * (q + delta), q in -1, 0, +1, delta = +-1/8:
    ggml's order, dl = d * (2 ls + 1), y = dl * (q + delta)."""
    grid = iq1s_grid
    kgrid_name, nwant = "kgrid_1bit_2048", 3
    formula = "d * (2 ls + 1) * (grid + delta), delta = +-1/8"
    group_extra = "shift delta"

    @classmethod
    def quantize_blocks(cls, x, quant_weights=None):
        cls.check_weights(quant_weights)
        return cls.pack(*quantize_iq1(cls, x, quant_weights))

    @classmethod
    def dequantize_blocks(cls, blocks):
        f = cls.fields(blocks)
        n = blocks.shape[0]
        dl = f["d"] * f32(2 * f["ls"].astype(np.int32) + 1)                   # (n, n_scales)
        shifted = f32(f["q"]).reshape(n, 32, 8) + (f["delta"] * IQ1S_DELTA)[:, :, None]
        return (dl[:, :, None] * shifted.reshape(n, dl.shape[1], -1)).reshape(n, QK_K)

    @staticmethod
    def sub_scale(d: float, ls: int) -> float:
        return float(np.float32(d) * np.float32(2 * ls + 1))

    @staticmethod
    def group_detail(fields, g) -> str:
        return f"delta {'-' if fields['delta'][0, g] < 0 else '+'}1/8"


def _u16(blocks: np.ndarray, start: int, count: int) -> np.ndarray:
    """count little-endian uint16 from byte `start` of every block: (n, count)."""
    return np.ascontiguousarray(blocks[:, start:start + 2 * count]).view("<u2")


class IQ2_XXS(IQ2Type, ggml_type=GGMLType.IQ2_XXS):
    """2.0625 bits per weight: 8-bit indices into 256 E8 points, 7 sign bits per 8 weights.

        byte 0      2          10         18                         66
             +------+----------+----------+----------- ... ----------+
             |  d   | qs: 32 weights (sub-block ib) in 8 bytes each:  |
             | fp16 |   ib = 0   |   ib = 1 |      ib = 2 .. 7         |
             +------+----------+----------+----------- ... ----------+

        the 8 bytes of sub-block ib (ggml: qs is 32 uint16, read as 2 uint32 per ib)
             byte 0    1    2    3    4 ........................... 7
                 +----+----+----+----+---------------------------------+
                 | g0 | g1 | g2 | g3 | u32: s0 | s1 << 7 | s2 << 14 |  |
                 |    |    |    |    |      s3 << 21 | ls << 28       |
                 +----+----+----+----+---------------------------------+

        y[32 ib + 8 l + j] = d * (0.5 + ls) / 4 * iq2xxs_grid[g_l][j]
                             * (-1 if ksigns_iq2xs[s_l] & kmask_iq2xs[j] else +1)

    Quantizer: quantize_row_iq2_xxs_impl (an importance matrix is required).
    """
    layout = (("d", 0, 2, "fp16 scale"),
              ("qs", 2, 64, "per 32 weights: 4 grid indices, then u32 of 4 x 7 sign bits | ls << 28"))
    grid = iq2xxs_grid
    scale_block = 32
    kgrid_name, nwant, parity, sign_mask = "kgrid_2bit_256", 2, True, 127
    group_max_eps, sigma2_factor, needs_imatrix = GROUP_MAX_EPS, 1, True

    @classmethod
    def pack(cls, d, ls, index, signs):
        n = d.shape[0]
        aux = (signs.reshape(n, 8, 4).astype(np.uint32) << (7 * np.arange(4, dtype=np.uint32))).sum(axis=2)
        aux = (aux | ls.astype(np.uint32) << 28).astype("<u4")
        groups = np.concatenate([index.reshape(n, 8, 4).astype(np.uint8), aux[:, :, None].view(np.uint8)], axis=2)
        return np.concatenate([fp16_bytes(d), groups.reshape(n, 64)], axis=1)

    @classmethod
    def fields(cls, blocks):
        n = blocks.shape[0]
        groups = np.ascontiguousarray(blocks[:, 2:66]).reshape(n, 8, 8)
        aux = groups[:, :, 4:8].copy().view("<u4")[..., 0]                     # (n, 8)
        grid_index = groups[:, :, 0:4].reshape(n, 32).astype(np.int64)
        sign_index = ((aux[:, :, None] >> (7 * np.arange(4, dtype=np.uint32))) & 127).reshape(n, 32)
        points, q = cls.signed(grid_index, ksigns_iq2xs[sign_index])
        return dict(d=fp16_field(blocks, 0), ls=(aux >> 28).astype(np.uint8), grid=grid_index,
                    points=points, q=q)


class IQ2_XS(IQ2Type, ggml_type=GGMLType.IQ2_XS):
    """2.3125 bits per weight: 9-bit indices into 512 E8 points, a scale per 16 weights.

        byte 0      2                                          66           74
             +------+------------------------------------------+------------+
             |  d   | qs[32]: a uint16 per group of 8 weights:  | scales[8]  |
             | fp16 |   bits 0..8  g: index into iq2xs_grid     | per 32: ls |
             |      |   bits 9..15 s: index into ksigns_iq2xs   | of the 1st |
             |      |                                           | 16 low, 2nd|
             |      |                                           | 16 high    |
             +------+------------------------------------------+------------+

        y[8 m + j] = d * (0.5 + ls_(m/2)) / 4 * iq2xs_grid[g_m][j]
                     * (-1 if ksigns_iq2xs[s_m] & kmask_iq2xs[j] else +1)

    Quantizer: quantize_row_iq2_xs_impl (an importance matrix is required).
    """
    layout = (("d", 0, 2, "fp16 scale"),
              ("qs", 2, 64, "32 uint16: 9-bit grid index | 7-bit sign index << 9"),
              ("scales", 66, 8, "16 4-bit scales ls, per 16 weights"))
    grid = iq2xs_grid
    scale_block = 16
    kgrid_name, nwant, parity, sign_mask = "kgrid_2bit_512", 2, True, 127
    group_max_eps, sigma2_factor, needs_imatrix = GROUP_MAX_EPS, 1, True

    @classmethod
    def pack(cls, d, ls, index, signs):
        qs = (index | signs << 9).astype("<u2").view(np.uint8)
        return np.concatenate([fp16_bytes(d), qs, pack_nibble_pairs(ls)], axis=1)

    @classmethod
    def fields(cls, blocks):
        qs = _u16(blocks, 2, 32)
        scales = blocks[:, 66:74]
        points, q = cls.signed((qs & 511).astype(np.int64), ksigns_iq2xs[qs >> 9])
        ls = np.stack([scales & 15, scales >> 4], axis=2).reshape(-1, 16)
        return dict(d=fp16_field(blocks, 0), ls=ls, grid=(qs & 511).astype(np.int64), points=points, q=q)


class IQ2_S(IQ2Type, ggml_type=GGMLType.IQ2_S):
    """2.5625 bits per weight: 10-bit indices into 1024 points, all 8 sign bits stored.

        byte 0      2            34              66       74         82
             +------+------------+---------------+--------+----------+
             |  d   | qs[32]:    | signs[32]:    | qh[8]: | scales[8]|
             | fp16 | index bits | a sign byte   | per 32 | as IQ2_XS|
             |      | 0..7 per   | per group     | weights|          |
             |      | group of 8 | (bit j: -)    | 2 bits |          |
             |      |            |               | x 4    |          |
             +------+------------+---------------+--------+----------+
        (ggml's qs[64] holds both the index bytes and the sign bytes)

        group m = 4 ib + l:  g_m = qs[m] | ((qh[ib] >> 2 l) & 3) << 8      (index into iq2s_grid)
        y[8 m + j] = d * (0.5 + ls_(m/2)) / 4 * iq2s_grid[g_m][j] * (-1 if signs[m] & kmask_iq2xs[j] else +1)

    Quantizer: quantize_row_iq2_s_impl (with an importance matrix or without one).
    """
    layout = (("d", 0, 2, "fp16 scale"), ("qs", 2, 32, "low 8 bits of 32 grid indices"),
              ("signs", 34, 32, "the 8 sign bits of each group (ggml: qs[32..63])"),
              ("qh", 66, 8, "high 2 bits of the grid indices, 4 per byte"),
              ("scales", 74, 8, "16 4-bit scales ls, per 16 weights"))
    grid = iq2s_grid
    scale_block = 16
    kgrid_name, nwant, parity, sign_mask = "kgrid_2bit_1024", 1, False, 255
    group_max_eps, sigma2_factor = GROUP_MAX_EPS_IQ2_S, 2

    @classmethod
    def pack(cls, d, ls, index, signs):
        n = d.shape[0]
        qh = ((index.reshape(n, 8, 4) >> 8) << (2 * np.arange(4))).sum(axis=2)
        return np.concatenate([fp16_bytes(d * F(0.9875)), (index & 255).astype(np.uint8),
                               signs.astype(np.uint8), qh.astype(np.uint8), pack_nibble_pairs(ls)], axis=1)

    @classmethod
    def fields(cls, blocks):
        qh = blocks[:, 66:74]
        high = ((qh[:, :, None] >> (2 * np.arange(4, dtype=np.uint8))) & 3).reshape(-1, 32)
        grid_index = blocks[:, 2:34].astype(np.int64) | high.astype(np.int64) << 8
        points, q = cls.signed(grid_index, blocks[:, 34:66])
        scales = blocks[:, 74:82]
        ls = np.stack([scales & 15, scales >> 4], axis=2).reshape(-1, 16)
        return dict(d=fp16_field(blocks, 0), ls=ls, grid=grid_index, points=points, q=q)


class IQ1_S(IQ1Type, ggml_type=GGMLType.IQ1_S):
    """1.5625 bits per weight: 11-bit indices into 2048 ternary points, one shift per 32.

        byte 0      2                   34                          50
             +------+-------------------+---------------------------+
             |  d   | qs[32]: bits 0..7 | qh[8]: a uint16 per 32     |
             | fp16 | of the index of   | weights (sub-block ib):    |
             |      | each group of 8   |  bits 3l..3l+2: index bits |
             |      |                   |    8..10 of group 4 ib + l |
             |      |                   |  bits 12..14: ls           |
             |      |                   |  bit 15: delta negative    |
             +------+-------------------+---------------------------+

        y[32 ib + 8 l + j] = d * (2 ls + 1) * (iq1s_grid[g][j] + delta),  delta = -1/8 if bit 15 else +1/8

    Quantizer: quantize_row_iq1_s_impl (an importance matrix is required).
    """
    layout = (("d", 0, 2, "fp16 scale"), ("qs", 2, 32, "low 8 bits of 32 grid indices"),
              ("qh", 34, 16, "8 uint16: 4 x 3 high index bits | ls << 12 | delta sign << 15"))
    scale_block = 32
    group_max_eps, needs_imatrix = GROUP_MAX_EPS_IQ1_S, True

    @classmethod
    def pack(cls, d, ls, index, shift):
        n = d.shape[0]
        high = ((index.reshape(n, 8, 4) >> 8) << (3 * np.arange(4))).sum(axis=2)
        qh = (high | (ls | np.where(shift < 0, 8, 0)) << 12).astype("<u2")
        return np.concatenate([fp16_bytes(d * F(1.125)), (index & 255).astype(np.uint8), qh.view(np.uint8)],
                              axis=1)

    @classmethod
    def fields(cls, blocks):
        qh = _u16(blocks, 34, 8)                                                # (n, 8)
        high = ((qh[:, :, None] >> (3 * np.arange(4, dtype=np.uint16))) & 7).reshape(-1, 32)
        grid_index = blocks[:, 2:34].astype(np.int64) | high.astype(np.int64) << 8
        delta = np.repeat(np.where(qh & 0x8000, np.float32(-1), np.float32(1)), 4, axis=1)
        return dict(d=fp16_field(blocks, 0), ls=((qh >> 12) & 7).astype(np.uint8), grid=grid_index,
                    points=iq1s_grid[grid_index], q=iq1s_grid[grid_index].reshape(-1, QK_K),
                    delta=delta)


class IQ1_M(IQ1Type, ggml_type=GGMLType.IQ1_M):
    """1.75 bits per weight: IQ1_S's grid, a shift per 8 weights, a 3-bit scale per 16,
    and no field for d: its 16 bits are the top nibbles of the four scale words.

        byte 0                   32                       48                    56
             +-------------------+------------------------+---------------------+
             | qs[32]: bits 0..7 | qh[16]: a nibble per   | scales: 4 uint16    |
             | of the index of   | group of 8 (low nibble:| sc[0..3]; sc[m]     |
             | each group of 8   | even group): bits 0..2 | bits 3k..3k+2: ls of|
             |                   | index bits 8..10,      | the 16 weights 4m+k;|
             |                   | bit 3 delta negative   | bits 12..15: d      |
             +-------------------+------------------------+---------------------+

        d = fp16 (sc[0] >> 12 | (sc[1] >> 12) << 4 | (sc[2] >> 12) << 8 | (sc[3] >> 12) << 12)
        group m:  g = qs[m] | ((qh[m / 2] >> 4 (m % 2)) & 7) << 8,  delta = -1/8 if bit 3 + 4 (m % 2) else +1/8
        y[8 m + j] = d * (2 ls_(m/2) + 1) * (iq1s_grid[g][j] + delta)

    Quantizer: quantize_row_iq1_m_impl (with an importance matrix or without one).
    """
    layout = (("qs", 0, 32, "low 8 bits of 32 grid indices"),
              ("qh", 32, 16, "per group of 8: 3 high index bits | delta sign << 3, a nibble each"),
              ("scales", 48, 8, "4 uint16: 4 x 3-bit scales ls, the fp16 d in the top nibbles"))
    scale_block = 16
    group_max_eps = GROUP_MAX_EPS_IQ1_M

    @classmethod
    def pack(cls, d, ls, index, shift):
        n = d.shape[0]
        # a nibble per group: 3 high index bits, delta sign at bit 3 (shift bit 1: the first
        # group of the 16, bit 0: the second)
        minus = np.stack([shift >> 1 & 1, shift & 1], axis=2).reshape(n, 32)
        nibbles = (index >> 8) | minus << 3
        d_bits = fp16_bytes(d * F(1.1125)).view("<u2").astype(np.int64)          # (n, 1)
        sc = (ls.reshape(n, 4, 4) << (3 * np.arange(4))).sum(axis=2) | (d_bits >> (4 * np.arange(4)) & 15) << 12
        return np.concatenate([(index & 255).astype(np.uint8),
                               (nibbles[:, 0::2] | nibbles[:, 1::2] << 4).astype(np.uint8),
                               sc.astype("<u2").view(np.uint8)], axis=1)

    @classmethod
    def fields(cls, blocks):
        qh = blocks[:, 32:48]
        nibbles = np.stack([qh & 15, qh >> 4], axis=2).reshape(-1, 32)
        grid_index = blocks[:, 0:32].astype(np.int64) | (nibbles & 7).astype(np.int64) << 8
        sc = _u16(blocks, 48, 4)
        ls = ((sc[:, :, None] >> (3 * np.arange(4, dtype=np.uint16))) & 7).reshape(-1, 16)
        return dict(d=iq1m_scale(sc), ls=ls.astype(np.uint8), grid=grid_index,
                    points=iq1s_grid[grid_index], q=iq1s_grid[grid_index].reshape(-1, QK_K),
                    delta=np.where(nibbles & 8, np.float32(-1), np.float32(1)))


def pack_nibble_pairs(ls: np.ndarray) -> np.ndarray:
    """(n, 16) 4-bit scales -> (n, 8) bytes, scale 2i in the low nibble of byte i."""
    return (ls[:, 0::2] | ls[:, 1::2] << 4).astype(np.uint8)


def iq1m_scale(sc: np.ndarray) -> np.ndarray:
    """IQ1_M's d from its 4 scale words sc (n, 4) uint16: the fp16 whose nibble k is the
    top nibble of sc[k] (ggml's iq1m_scale_t), as float32 (n, 1)."""
    bits = np.bitwise_or.reduce((sc >> 12) << (4 * np.arange(4, dtype=np.uint16)), axis=1)
    return bits.astype(np.uint16).view("<f2").astype(np.float32).reshape(-1, 1)


# ---------------------------------------------------------------------- the quantizers' grid maps
# ggml's iq2xs_init_impl: the quantizers round each group of 8 to levels 0..2 (u: 2 bits per
# weight, 16 bits), then look the point up: kmap_q2xs[u] is its grid index if the grid has
# it, and otherwise the grid's points nearest to it are searched (its "neighbours").

KMAP_SIZE = 43692                          # every 16-bit u with levels 0..2: u <= 0xaaaa


@functools.lru_cache(maxsize=None)
def grid_maps(kgrid_name: str, nwant: int):
    """(kmap_q2xs, kneighbors_q2xs) for the grid listed as iq_grid_points.<kgrid_name>,
    encoded as ggml encodes them:

    kmap_q2xs (KMAP_SIZE,) int32: the grid index of point u if the grid has it, else
    -(r + 1): row r of kneighbors_q2xs holds u's neighbours;
    kneighbors_q2xs (n_off_grid, k) int32: the grid points whose squared distance to u is
    one of the nwant smallest, in ggml's order (by distance, then index), padded with -1.

    nwant: IQ2_XXS and IQ2_XS 2, IQ2_S 1, IQ1_S and IQ1_M 3.  ggml lists neighbours for
    every u off the grid; the quantizers only ever look up u of levels 0..2, and only those
    are listed here."""
    kgrid = getattr(points, kgrid_name)
    kmap = np.full(KMAP_SIZE, np.iinfo(np.int32).min, dtype=np.int32)     # (a level 3: unused)
    kmap[kgrid] = np.arange(len(kgrid), dtype=np.int32)
    codes = np.arange(KMAP_SIZE)
    levels = (codes[:, None] >> (2 * np.arange(8))) & 3
    off_grid = np.flatnonzero((kmap < 0) & (levels < 3).all(axis=1))
    grid_levels = points.grid_points(kgrid, np.arange(3))
    d2 = np.zeros((len(off_grid), len(kgrid)), dtype=np.int16)     # ggml's d2 / 4: same order
    for j in range(8):
        d2 += (levels[off_grid, j:j + 1] - grid_levels[None, :, j]) ** 2
    order = np.argsort(d2, axis=1, kind="stable")                   # by distance, then index
    shell = np.cumsum(np.diff(np.take_along_axis(d2, order, axis=1), axis=1, prepend=-1) != 0, axis=1)
    keep = shell <= nwant
    width = int(keep.sum(axis=1).max())
    kmap[off_grid] = -1 - np.arange(len(off_grid), dtype=np.int32)
    return kmap, np.where(keep, order, -1)[:, :width].astype(np.int32)


# ---------------------------------------------------------------------- ggml's quantizers
# Vectorized over the sub-blocks (the groups that share a scale ls), every float32
# operation ggml's, in ggml's order (numpy never fuses a*b+c; ggml-base is built without
# FMA), so that the chosen points and scales -- hence the bytes -- are llama.cpp's.



def importance(x, quant_weights, sigma2_factor: int):
    """The weights of the quantizers' fits, (n, 256) for blocks x (n, 256): qw * sqrt(sigma2
    + x^2) with sigma2 = sigma2_factor * sum(x^2) / 256 (summed in order), and sigma2 for
    the types that can do without quant_weights."""
    sigma2 = seq_sum(x * x) * F(sigma2_factor) / F(QK_K) if sigma2_factor > 1 else seq_sum(x * x) / F(QK_K)
    if quant_weights is None:
        return None, sigma2
    return quant_weights * np.sqrt(sigma2 + x * x), sigma2


def weighted_sum(*factors):
    """sum_i of the product of factors[.][:, i], in C's order: ((f0 * f1) * f2 ...) per
    term, the terms added left to right; (G, n) arrays -> (G,)."""
    total = np.zeros(factors[0].shape[0], dtype=np.float32)
    for i in range(factors[0].shape[1]):
        term = factors[0][:, i]
        for f in factors[1:]:
            term = term * f[:, i]
        total = total + term
    return total


def codes_of(L):
    """levels L (G, 8 m) in 0..2 -> the 16-bit u of each group of 8, (G, m)."""
    groups = L.reshape(L.shape[0], -1, 8).astype(np.int64)
    return (groups << (2 * np.arange(8))).sum(axis=2)


def nearest_points(kgrid, kmap, kneighbors, u, value_of, xval, weight, scale):
    """ggml's iq2_find_best_neighbour / iq1_find_best_neighbour2 for groups off the grid:
    of u's neighbours (rows of kneighbors), the point of least sum_i weight_i (scale q_i -
    xval_i)^2, the first one on ties.  u (M,), xval and weight (M, 8), scale (M,);
    value_of(levels) gives q.  Returns the grid indices (M,)."""
    candidates = kneighbors[-1 - kmap[u]]                                    # (M, k), -1 padded
    levels = points.grid_points(kgrid[np.where(candidates < 0, 0, candidates)], np.arange(3))
    d2 = np.zeros(candidates.shape, dtype=np.float32)
    for i in range(8):
        diff = scale[:, None] * value_of(levels[:, :, i]) - xval[:, None, i]
        d2 = d2 + weight[:, None, i] * diff * diff
    d2 = np.where(candidates < 0, np.inf, d2)
    return np.take_along_axis(candidates, d2.argmin(axis=1)[:, None], axis=1)[:, 0]


def make_qp_quants(x, weight, nmax: int):
    """ggml's make_qp_quants(n, nmax, x, L, quant_weights) for each row of x (G, n): the
    scale of the best non-negative levels 0..nmax; IQ2_XXS uses only the scale.  The levels
    are kept in a uint8 as ggml keeps them (a negative x wraps), which its error sums see."""
    max_x = np.maximum(x.max(axis=1), 0)
    zero = max_x < GROUP_MAX_EPS
    fnmax = F(nmax)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = fnmax / max_x
        L = (nearest_int(iscale[:, None] * x) & 255).astype(np.float32)
        scale = F(1) / iscale
        diff = x - scale[:, None] * L
        best_mse = weighted_sum(weight, diff, diff)
        for step in (-4, -3, -2, -1, 1, 2, 3, 4):
            iscale_is = (F(0.1) * F(step) + fnmax) / max_x
            scale_is = F(1) / iscale_is
            diff = x - scale_is[:, None] * f32(np.minimum(nmax, nearest_int(iscale_is[:, None] * x)))
            mse = weighted_sum(weight, diff, diff)
            iscale = np.where(mse < best_mse, iscale_is, iscale)
            best_mse = np.where(mse < best_mse, mse, best_mse)
        levels = f32(np.minimum(nmax, nearest_int(iscale[:, None] * x)))
        L = f32(levels.astype(np.int32) & 255)
        sumlx = weighted_sum(weight, x, levels)
        suml2 = weighted_sum(weight, levels, levels)
        for _ in range(5):                 # (ggml stops after a pass without change: the same)
            for i in range(x.shape[1]):
                w, xi = weight[:, i], x[:, i]
                slx = sumlx - w * xi * L[:, i]
                sl2 = suml2 - w * L[:, i] * L[:, i]
                new_l = f32(np.minimum(nmax, nearest_int(xi * sl2 / slx)))
                slx2 = slx + w * xi * new_l
                sl22 = sl2 + w * new_l * new_l
                take = (slx > 0) & (sl2 > 0) & (new_l != L[:, i]) & (slx2 * slx2 * suml2 > sumlx * sumlx * sl22)
                L[:, i] = np.where(take, f32(new_l.astype(np.int32) & 255), L[:, i])
                sumlx = np.where(take, slx2, sumlx)
                suml2 = np.where(take, sl22, suml2)
        scale = np.where(suml2 > 0, sumlx / suml2, F(0))
    return np.where(zero, F(0), scale)


def quantize_iq2(cls, x, quant_weights):
    """quantize_row_iq2_{xxs,xs,s}_impl on blocks x (n, 256) -> (d (n,) as stored, before
    fp16: 0 for an all-zero block; ls (n, 256 / sub) 4-bit scales; grid indices (n, 32);
    sign bits (n, 32): 7 (with the parity rule) or 8 per group).

    Per sub-block of cls.sub weights (IQ2_XXS 32, else 16), with weights w (importance):
      1. signs: xval = |x|, and where a group of 8 has an odd number of negative weights
         (IQ2_XXS, IQ2_XS: only an even number can be stored) the one of least w x^2 is
         taken as if of the other sign (xval < 0 there);
      2. try scales 1 / id: round each xval to levels l = nearest(0.5 (id xval - 1)) in
         0..2 (values q = 2 l + 1), look the group's point up, off the grid take the best
         neighbour, and keep the trial of largest sumqx^2 / sumq2 (scale = sumqx / sumq2);
      3. round again with the best scale (IQ2_XXS: all groups; the others: the groups
         that were off the grid) and refit the scale;
      4. per block d = max scale / 31 (IQ2_S stores d * 0.9875), ls = nearest(0.5 (scale /
         d - 1)) in 0..15."""
    n = x.shape[0]
    sub = cls.scale_block
    kgrid = getattr(points, cls.kgrid_name)
    kmap, kneighbors = grid_maps(cls.kgrid_name, cls.nwant)
    weights, sigma2 = importance(x, quant_weights, cls.sigma2_factor)
    if weights is None:                                     # IQ2_S without an imatrix
        weights = F(0.25) * sigma2 + x * x
    xb = x.reshape(-1, sub)
    w = weights.reshape(-1, sub)
    waux = np.sqrt(w)
    G = xb.shape[0]
    negative = (xb < 0).reshape(G, -1, 8)
    xval = np.abs(xb)
    if cls.parity:                                          # flip the least important one
        odd = negative.sum(axis=2) % 2 == 1
        least = (w * xb * xb).reshape(G, -1, 8).argmin(axis=2)
        flip = odd[:, :, None] & (np.arange(8) == least[:, :, None])
        negative = negative ^ flip
        xval = np.where(flip.reshape(G, sub), -xval, xval)
    signs = (negative << np.arange(8)).sum(axis=2)
    max_x = xval.max(axis=1)
    skip = max_x < cls.group_max_eps
    value = lambda levels: f32(2 * levels + 1)              # noqa: E731

    def round_to_grid(id_scale, scale, groups_mask):
        """levels of xval at 1/id_scale, the groups off the grid (where groups_mask) moved to
        their best neighbour at `scale`; (levels (G, sub), on the grid (G, sub // 8))."""
        with np.errstate(over="ignore", invalid="ignore"):
            levels = np.clip(nearest_int(F(0.5) * (id_scale[:, None] * xval - F(1))), 0, 2)
        u = codes_of(levels)
        on_grid = kmap[u] >= 0
        todo = np.argwhere(~on_grid & groups_mask)
        if len(todo):
            g, k = todo[:, 0], todo[:, 1]
            span = 8 * k[:, None] + np.arange(8)
            index = nearest_points(kgrid, kmap, kneighbors, u[g, k], value, xval[g[:, None], span],
                                   waux[g[:, None], span], scale[g])
            levels[g[:, None], span] = points.grid_points(kgrid[index], np.arange(3))
        return levels, on_grid

    every = np.ones((G, sub // 8), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if cls.ggml_type == GGMLType.IQ2_XXS:
            scale = make_qp_quants(xval, w, 4)
            eff_max = scale * F(3)
            skip |= eff_max <= 0
            trials, span_max = range(-6, 7), eff_max
        else:
            scale = max_x / F(5)
            trials, span_max = range(-9, 10), max_x
        best = np.zeros(G, dtype=np.float32)
        L = np.zeros((G, sub), dtype=np.int64)
        on_grid = every.copy()
        for step in trials:
            id_scale = (F(5) + F(step) * F(0.1)) / span_max
            levels, trial_on_grid = round_to_grid(id_scale, F(1) / id_scale, every)
            q = value(levels)
            sumqx = weighted_sum(w, xval, q)
            sumq2 = weighted_sum(w, q, q)
            better = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
            scale = np.where(better, sumqx / sumq2, scale)
            best = np.where(better, scale * sumqx, best)
            L = np.where(better[:, None], levels, L)
            on_grid = np.where(better[:, None], trial_on_grid, on_grid)
        refit = every if cls.ggml_type == GGMLType.IQ2_XXS else ~on_grid
        again = (scale > 0) & refit.any(axis=1)
        levels, _ = round_to_grid(F(1) / scale, scale, refit & again[:, None])
        L = np.where((refit & again[:, None]).repeat(8, axis=1), levels, L)
        q = value(L)
        sumqx = weighted_sum(w, xval, q)
        sumq2 = weighted_sum(w, q, q)
        scale = np.where(again & (sumq2 > 0), sumqx / sumq2, scale)
    signs = np.where((scale < 0)[:, None], ~signs & cls.sign_mask, signs) & cls.sign_mask
    scale = np.where(skip, F(0), np.abs(scale))
    index = kmap[codes_of(L)]
    index = np.where(skip[:, None], 0, index)
    signs = np.where(skip[:, None], 0, signs)
    scales = scale.reshape(n, -1)
    max_scale = scales.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = max_scale / F(31)
        ls = np.clip(nearest_int(F(0.5) * ((F(1) / d)[:, None] * scales - F(1))), 0, 15)
    zero = max_scale == 0
    return (np.where(zero, F(0), d), np.where(zero[:, None], 0, ls),
            np.where(zero[:, None], 0, index.reshape(n, -1)), np.where(zero[:, None], 0, signs.reshape(n, -1)))


def best_splits(sumx, sumw, values, candidates):
    """The exhaustive search of quantize_row_iq1_{s,m}_impl: for every split of the sorted
    weights into three runs (i1 <= i2), each candidate c of candidates (its own values for
    the three levels) scores sumqx^2 / sumq2; ggml scans the splits in order, i1 outer, and
    keeps a candidate when sumq2 > 0 and sumqx^2 > best * sumq2 (best = scale * sumqx).

    sumx, sumw: (G, n + 1) prefix sums of w x and w in sorted order (per half for IQ1_M:
    (2, G, n + 1)); values: per candidate the (sumqx, sumq2) function of (i1, i2).
    Returns (scale, i1, i2, candidate) per group (G,), i1 = -1 when none was kept."""
    G = sumx.shape[-2]
    n = sumx.shape[-1] - 1
    best = np.full(G, -np.finfo(np.float32).max, dtype=np.float32)
    scale = np.zeros(G, dtype=np.float32)
    best_i1 = np.full(G, -1)
    best_i2 = np.full(G, -1)
    best_c = np.full(G, -1)
    for i1 in range(n + 1):
        for i2 in range(i1, n + 1):
            for c in range(candidates):
                sumqx, sumq2 = values(c, i1, i2)
                keep = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
                scale = np.where(keep, sumqx / sumq2, scale)
                best = np.where(keep, scale * sumqx, best)
                best_i1 = np.where(keep, i1, best_i1)
                best_i2 = np.where(keep, i2, best_i2)
                best_c = np.where(keep, c, best_c)
    return scale, best_i1, best_i2, best_c


def quantize_iq1(cls, x, quant_weights):
    """quantize_row_iq1_{s,m}_impl on blocks x (n, 256) -> (d (n,): the block's fp16 scale
    before rounding, 0 for an all-zero block; ls (n, 256 / sub) 3-bit scales; grid indices
    (n, 32); shifts: IQ1_S per 32 weights 1 or -1, IQ1_M per 16 the candidate 0..3 (bit 0:
    second group's delta negative, bit 1: first group's)).

    Per sub-block of cls.scale_block weights (IQ1_S 32, IQ1_M 16), with weights w:
      1. with three levels -1, 0, +1 (each shifted by the delta, +-1/8), the best
         assignment of weights to levels keeps their order: sort x, and try every split
         into three runs and each delta (IQ1_S: +- for the sub-block; IQ1_M: +- for each
         group of 8), keeping the best least-squares fit;
      2. look each group's levels up; off the grid, take the neighbour nearest to
         scale * (level + delta), and refit the scale;
      3. per block d = max scale / 15, ls = nearest(0.5 (scale / d - 1)) in 0..7; IQ1_S
         stores d * 1.125; IQ1_M refits d over the whole block and stores it * 1.1125."""
    n = x.shape[0]
    sub = cls.scale_block
    kgrid = getattr(points, cls.kgrid_name)
    kmap, kneighbors = grid_maps(cls.kgrid_name, cls.nwant)
    weights, _ = importance(x, quant_weights, 2)
    if weights is None:                                     # IQ1_M without an imatrix
        weights = x * x
    xb = x.reshape(-1, sub)
    w = weights.reshape(-1, sub)
    G = xb.shape[0]
    x_p = np.array([-1 + IQ1S_DELTA, IQ1S_DELTA, 1 + IQ1S_DELTA], dtype=np.float32)
    x_m = np.array([-1 - IQ1S_DELTA, -IQ1S_DELTA, 1 - IQ1S_DELTA], dtype=np.float32)
    skip = np.abs(xb).max(axis=1) < cls.group_max_eps
    order = np.argsort(xb, axis=1, kind="stable")          # glibc's qsort here is a merge sort
    wx = np.take_along_axis(w * xb, order, axis=1)
    ws = np.take_along_axis(w, order, axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if cls.ggml_type == GGMLType.IQ1_S:
            sumx = np.concatenate([np.zeros((G, 1), np.float32), np.cumsum(wx, axis=1, dtype=np.float32)], axis=1)
            sumw = np.concatenate([np.zeros((G, 1), np.float32), np.cumsum(ws, axis=1, dtype=np.float32)], axis=1)

            def values(c, i1, i2):
                v = x_p if c == 0 else x_m
                a, b, e = sumx[:, i1] - sumx[:, 0], sumx[:, i2] - sumx[:, i1], sumx[:, sub] - sumx[:, i2]
                sumqx = a * v[0] + b * v[1] + e * v[2]
                a, b, e = sumw[:, i1] - sumw[:, 0], sumw[:, i2] - sumw[:, i1], sumw[:, sub] - sumw[:, i2]
                return sumqx, a * v[0] * v[0] + b * v[1] * v[1] + e * v[2] * v[2]
            scale, i1, i2, c = best_splits(sumx, sumw, values, 2)
            shift = np.where(c == 0, 1, -1)                 # +1: x_p, -1: x_m
        else:
            half = np.take_along_axis(np.broadcast_to(np.arange(sub) >= sub // 2, (G, sub)), order, axis=1)
            px = np.zeros((2, G, sub + 1), np.float32)
            pw = np.zeros((2, G, sub + 1), np.float32)
            for j in range(sub):
                for h in range(2):
                    mine = half[:, j] == h
                    px[h, :, j + 1] = np.where(mine, px[h, :, j] + wx[:, j], px[h, :, j])
                    pw[h, :, j + 1] = np.where(mine, pw[h, :, j] + ws[:, j], pw[h, :, j])
            cp1, cp2 = x_p[0] * x_p[0] - x_p[1] * x_p[1], x_p[1] * x_p[1] - x_p[2] * x_p[2]
            cm1, cm2 = x_m[0] * x_m[0] - x_m[1] * x_m[1], x_m[1] * x_m[1] - x_m[2] * x_m[2]

            def half_sums(h, i1, i2):
                """(qx_p, qx_m, q2_p, q2_m) of half h: ggml's collapsed 3-run sums"""
                sx = px[h, :, i1] + px[h, :, i2]
                return (px[h, :, sub] * x_p[2] - sx, px[h, :, sub] * x_m[2] - sx,
                        pw[h, :, sub] * x_p[2] * x_p[2] + pw[h, :, i1] * cp1 + pw[h, :, i2] * cp2,
                        pw[h, :, sub] * x_m[2] * x_m[2] + pw[h, :, i1] * cm1 + pw[h, :, i2] * cm2)

            def values(c, i1, i2):
                first, second = half_sums(0, i1, i2), half_sums(1, i1, i2)
                a, b = c >> 1, c & 1                        # 0: x_p, 1: x_m, first half and second
                return first[a] + second[b], first[2 + a] + second[2 + b]
            scale, i1, i2, c = best_splits(px, pw, values, 4)
            shift = c
        skip |= i1 < 0
        shift = np.where(skip, 1 if cls.ggml_type == GGMLType.IQ1_S else 0, shift)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(sub)[None, :].repeat(G, axis=0), axis=1)
        L = np.where(rank < i1[:, None], 0, np.where(rank < i2[:, None], 1, 2))
        flip = scale < 0
        L = np.where(flip[:, None], 2 - L, L)
        scale = np.where(flip, -scale, scale)
        shift = np.where(flip, -shift if cls.ggml_type == GGMLType.IQ1_S else 3 - shift, shift)
        # each group's delta sign: IQ1_S one per sub-block; IQ1_M candidate bit 1 (first
        # group), bit 0 (second)
        if cls.ggml_type == GGMLType.IQ1_S:
            minus = np.repeat((shift < 0)[:, None], sub // 8, axis=1)
        else:
            minus = np.stack([shift >> 1 & 1, shift & 1], axis=1).astype(bool)
        xx = np.where(minus[:, :, None], x_m, x_p)                                  # (G, groups, 3)
        u = codes_of(L)
        index = kmap[u]
        todo = np.argwhere(index < 0)
        if len(todo):
            g, k = todo[:, 0], todo[:, 1]
            span = 8 * k[:, None] + np.arange(8)
            rows = xx[g, k]
            index[g, k] = nearest_points(kgrid, kmap, kneighbors, u[g, k],
                                         lambda levels: np.take_along_axis(rows, levels, axis=1),
                                         xb[g[:, None], span], w[g[:, None], span], scale[g])
        off = (kmap[u] < 0).any(axis=1)
        q = np.take_along_axis(xx, points.grid_points(kgrid[index], np.arange(3)), axis=2).reshape(G, sub)
        sumqx = weighted_sum(w, q, xb)
        sumq2 = weighted_sum(w, q, q)
        scale = np.where(off & (sumqx > 0) & (sumq2 > 0), sumqx / sumq2, scale)
    scale = np.where(skip, F(0), scale)
    index = np.where(skip[:, None], 0, index)
    xx = np.where(skip[:, None, None], x_p, xx)
    scales = scale.reshape(n, -1)
    max_scale = scales.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = max_scale / F(15)
        ls = np.clip(nearest_int(F(0.5) * ((F(1) / d)[:, None] * scales - F(1))), 0, 7)
        if cls.ggml_type == GGMLType.IQ1_M:             # d refit over the whole block, ls applied
            q = np.take_along_axis(xx, points.grid_points(kgrid[index], np.arange(3)), axis=2).reshape(n, QK_K)
            q = q * f32(np.repeat(2 * ls + 1, sub, axis=1))
            sumqx, sumq2 = weighted_sum(weights, q, x), weighted_sum(weights, q, q)
            d = np.where(sumq2 > 0, sumqx / sumq2, d)
    zero = max_scale == 0
    return (np.where(zero, F(0), d), np.where(zero[:, None], 0, ls),
            np.where(zero[:, None], 0, index.reshape(n, -1)),
            np.where(zero[:, None], 1 if cls.ggml_type == GGMLType.IQ1_S else 0, shift.reshape(n, -1)))

"""IQ3_XXS and IQ3_S: 3-bit codebook i-quants (256 weights per block).

What a grid entry is
    These types store no weights one by one.  Each group of 4 consecutive weights is the
    index of a point of a fixed codebook (the "grid"), plus the signs of the 4 weights:
    a point is 4 magnitudes, each one of 8 levels, so a point is 4 coordinates of 3 bits,
    12 bits in all (coordinate i = (code >> 3i) & 7).  Of the 8^4 = 4096 such points,
    ggml's author kept those that quantizing real models used most: 256 for IQ3_XXS
    (8-bit indices), 512 for IQ3_S (9 bits).  That choice is data, so it is listed (in
    iq3_grids.py) as ggml's quantizer lists it (iq3xs_init_impl's kgrid_256 and kgrid_512
    in ggml-quants.c), code for code; every other table is computed from it:

        level l (0..7)        quantizer's magnitude   IQ3_XXS decoder byte   IQ3_S decoder byte
        0 1 2 3 4 5 6 7       1 3 5 7 9 11 13 15      4 12 20 28 36 44 52 62   1 3 5 ... 15

    The quantizer fits the odd magnitudes 2l + 1; IQ3_S decodes them as they are, IQ3_XXS
    as 4 (2l + 1) (its scale carries a factor 1/4), except the top level, 62 instead of
    60: the decoders read ggml-common.h's iq3xxs_grid, whose last level sits a little
    wider (as the 2-bit grids' outer levels do).  iq3xxs_grid and iq3s_grid (iq3_grids.py) hold
    those bytes, one point per row; tests/test_quants_iq3.py checks them against
    gguf-py's grids and against ggml's own decoder on blocks that select every index.

Signs
    The grid holds magnitudes.  IQ3_S stores all 32 sign bits of a 32-weight sub-block
    (bit j of signs[4 ib + l] for weight 8 l + j).  IQ3_XXS stores 7 bits per 8 weights:
    its quantizer makes the number of minus signs of every 8 weights even (when it is odd
    it flips the weight that matters least), so the 8th sign is the parity of the other
    7: ksigns_iq2xs[s] (iq_grid_points.py, shared with IQ2_XXS) is the whole sign byte of
    the 7-bit index s.

Scales
    Per 32 weights a 4-bit ls, and per block an fp16 d:

        IQ3_XXS   y = d * (0.5 + ls) / 2 * iq3xxs_grid[g][i] * sign     (= d (2 ls + 1)/4 ...)
        IQ3_S     y = d * (1 + 2 ls) * iq3s_grid[g][i] * sign

Products quantize the activations to Q8_K; the grid bytes times the sign-flipped
activation bytes are exact integer sums (``iq_numba.py``).  The quantizers search, per
32 weights, 31 (IQ3_XXS) or 19 (IQ3_S) scales, rounding each group of 4 to the nearest
lattice point and, when that point is not in the grid, taking the grid point among its
neighbours (the points at the 2 (IQ3_XXS) or 3 (IQ3_S) smallest distances) that fits
best; an importance matrix, when given, weights the fit (quantize_row_iq3_xxs_impl and
quantize_row_iq3_s_impl).

Fast kernels: ``iq_numba.py`` (``dequantize_row_<type>``, ``block_lanes_<type>``, the float
orders and the fast quantizers).
"""
from __future__ import annotations

import numpy as np

from ..ggml import GGMLType
from .base import QuantType, f32, fp16_bytes, fp16_field, nearest_int, seq_sum
from .iq3_grids import iq3s_grid, iq3xxs_grid, quantizer_grid
from .iq_grid_points import kmask_iq2xs, ksigns_iq2xs
from . import iq_numba as fast

QK_K = 256
GROUP_MAX_EPS_IQ3_XXS = np.float32(1e-8)   # below, an IQ3_XXS sub-block is all zero


class IQ3Type(QuantType):
    """What IQ3_XXS and IQ3_S share: Q8_K products, and fields() that decode every block
    into d (n, 1), the sub-block scales ls (n, 8), the grid index of each group of 4
    weights, grid (n, 64), the points it selects, points (n, 64, 4), the signs (n, 256)
    (+1 or -1) and q = sign * point coordinate (n, 256), the integers the formula scales:
    y = db_j * q with db_j the scale of sub-block j (see each type)."""
    vec_dot_type = GGMLType.Q8_K
    dequant_kernel = fast.dequantize_rows
    matmul_kernel = fast.matmul_q8_K
    quantize_kernel = fast.quantize_rows
    imatrix = "weights"
    grid: np.ndarray                    # the decoder's points, (n_points, 4)

    @classmethod
    def dequantize_blocks(cls, blocks):
        f = cls.fields(blocks)
        n = blocks.shape[0]
        db = cls.sub_block_scales(f["d"], f["ls"])                     # (n, 8)
        return (db[:, :, None] * f32(f["q"]).reshape(n, 8, 32)).reshape(n, QK_K)

    @classmethod
    def signed_points(cls, grid_index, negative):
        """grid indices (n, 64) and minus signs (n, 256) -> (points (n, 64, 4), q (n, 256))."""
        points = cls.grid[grid_index]
        signed = np.where(negative.reshape(points.shape), -points.astype(np.int16), points)
        return points, signed.reshape(-1, QK_K)

    @classmethod
    def describe(cls, fields) -> list[str]:
        """`pyggml inspect`'s lines for one block: the scales, then per group of 4 weights
        its grid index, the point it selects and the signs."""
        d, ls = fields["d"][:1], fields["ls"][:1]
        db = cls.sub_block_scales(d, ls)[0]
        lines = [f"d = {float(d[0, 0]):.8g}   (y = {cls.formula})", "", "sub-blocks of 32 weights: ls"]
        lines += [f"  {j:2d}: ls {int(v):2d} -> {float(db[j]):+.6g}" for j, v in enumerate(ls[0])]
        lines += ["", "groups of 4 weights: grid index -> point, signs (- for a negative weight)"]
        for g in range(QK_K // 4):
            point = " ".join(f"{int(v):2d}" for v in fields["points"][0, g])
            signs = "".join("-" if v < 0 else "+" for v in fields["signs"][0, 4 * g:4 * g + 4])
            lines.append(f"  {4 * g:3d}: {int(fields['grid'][0, g]):3d} -> [{point}]  {signs}")
        return lines

    @classmethod
    def matmul_fast(cls, W, xq, out):
        fast.matmul_q8_K(int(cls.ggml_type), W, xq.view(np.float32), xq.view(np.int8), out)

    @classmethod
    def quantize_fast(cls, x, imatrix=None):
        out = np.empty((x.shape[0], x.shape[1] // QK_K * cls.type_size), np.uint8)
        qw = np.empty(0, np.float32) if imatrix is None else imatrix
        fast.quantize_rows(int(cls.ggml_type), x, qw, quantizer_grid(cls.grid.shape[0]), out)
        return out


class IQ3_XXS(IQ3Type, ggml_type=GGMLType.IQ3_XXS):
    """3-bit codebook, 256 points: y = d * (0.5 + ls) / 2 * iq3xxs_grid[g][i] * sign.

        byte 0      2                          66                                   98
             +------+--------------------------+------------------------------------+
             |  d   | qs[64]: grid index g of  | scales_and_signs: 8 x uint32 LE,   |
             | fp16 | each group of 4 weights  | one per 32 weights: bits 7k..7k+6  |
             |      | (8 bits, iq3xxs_grid)    | the sign index of its weights      |
             |      |                          | 8k..8k+7 (ksigns_iq2xs), bits      |
             |      |                          | 28..31 the scale ls                |
             +------+--------------------------+------------------------------------+

    Weight e: group g = e / 4 (coordinate e % 4), sub-block j = e / 32; its sign is bit
    e % 8 of ksigns_iq2xs[(aux_j >> 7 ((e % 32) / 8)) & 127].
    Quantizer: quantize_row_iq3_xxs_impl (256-point grid, 2 neighbour distances,
    31 trial scales, d stored times 1.0125).
    """
    grid = iq3xxs_grid
    formula = "d * (0.5 + ls) / 2 * grid * sign"
    layout = (("d", 0, 2, "fp16 scale"), ("qs", 2, 64, "64 grid indices"),
              ("scales_and_signs", 66, 32, "8 x (4 x 7 sign bits | ls << 28)"))

    @classmethod
    def fields(cls, blocks):
        aux = np.ascontiguousarray(blocks[:, 66:98]).view("<u4")                  # (n, 8)
        sign_index = (aux[:, :, None] >> (7 * np.arange(4, dtype=np.uint32))) & 127
        negative = (ksigns_iq2xs[sign_index][..., None] & kmask_iq2xs) != 0      # (n, 8, 4, 8)
        points, q = cls.signed_points(blocks[:, 2:66], negative)
        return dict(d=fp16_field(blocks, 0), ls=(aux >> 28).astype(np.int32), grid=blocks[:, 2:66],
                    points=points, signs=np.where(negative, -1, 1).reshape(-1, QK_K).astype(np.int8), q=q)

    @staticmethod
    def sub_block_scales(d, ls):
        return d * (np.float32(0.5) + f32(ls)) * np.float32(0.5)

    @classmethod
    def quantize_blocks(cls, x, quant_weights=None):
        n = x.shape[0]
        scales, L, negative, skipped = search_sub_blocks(x, quant_weights, 256)
        d, ls = block_scales(scales, np.float32(1.0125))
        _, kmap, _ = quantizer_grid(256)
        grid_index = kmap[grid_codes(L)].reshape(n, 64)
        negative = negative & ~skipped[:, :, None]        # ggml writes no signs there
        sign_bits = (negative.reshape(n, 8, 4, 8)[..., :7] << np.arange(7)).sum(axis=3)   # (n, 8, 4)
        aux = (sign_bits << (7 * np.arange(4))).sum(axis=2) | (ls << 28)
        out = np.concatenate([fp16_bytes(d), grid_index.astype(np.uint8),
                              aux.astype("<u4").view(np.uint8).reshape(n, 32)], axis=1)
        out[scales.max(axis=1) == 0] = 0                  # no scale at all: the block is zero
        return out


class IQ3_S(IQ3Type, ggml_type=GGMLType.IQ3_S):
    """3-bit codebook, 512 points: y = d * (1 + 2 ls) * iq3s_grid[g][i] * sign.

        byte 0      2                66          74                     106        110
             +------+----------------+-----------+----------------------+----------+
             |  d   | qs[64]: low 8  | qh[8]: 9th| signs[32]: one bit   | scales[4]|
             | fp16 | bits of each   | bit of    | per weight, weight e | ls of 32 |
             |      | group's index  | index g:  | is bit e % 8 of      | weights: |
             |      |                | bit g % 8 | signs[e / 8]         | 2 x 4 bit|
             |      |                | of qh[g/8]|                      |          |
             +------+----------------+-----------+----------------------+----------+

    Weight e: group g = e / 4, index qs[g] | ((qh[g / 8] >> g % 8) & 1) << 8, sub-block
    j = e / 32 with ls_j = (scales[j / 2] >> 4 (j % 2)) & 15.
    Quantizer: quantize_row_iq3_s_impl (512-point grid, 3 neighbour distances, 19 trial
    scales, d stored times 1.033).  ggml's quantizer writes each sub-block's indices and
    signs at the next free place, so a sub-block of zeros (skipped) moves the following
    ones down: the bytes reproduce that.
    """
    grid = iq3s_grid
    formula = "d * (1 + 2 ls) * grid * sign"
    layout = (("d", 0, 2, "fp16 scale"), ("qs", 2, 64, "low 8 bits of 64 grid indices"),
              ("qh", 66, 8, "9th bits of the grid indices"), ("signs", 74, 32, "256 sign bits"),
              ("scales", 106, 4, "8 4-bit scales ls"))

    @classmethod
    def fields(cls, blocks):
        n = blocks.shape[0]
        high = (blocks[:, 66:74, None] >> np.arange(8, dtype=np.uint8)) & 1
        grid = blocks[:, 2:66].astype(np.int64) | (high.reshape(n, 64).astype(np.int64) << 8)
        negative = np.unpackbits(blocks[:, 74:106], axis=1, bitorder="little").astype(bool)
        ls = np.stack([blocks[:, 106:110] & 15, blocks[:, 106:110] >> 4], axis=2).reshape(n, 8)
        points, q = cls.signed_points(grid, negative)
        return dict(d=fp16_field(blocks, 0), ls=ls.astype(np.int32), grid=grid, points=points,
                    signs=np.where(negative, -1, 1).astype(np.int8), q=q)

    @staticmethod
    def sub_block_scales(d, ls):
        return d * f32(1 + 2 * ls)

    @classmethod
    def quantize_blocks(cls, x, quant_weights=None):
        n = x.shape[0]
        scales, L, negative, skipped = search_sub_blocks(x, quant_weights, 512)
        d, ls = block_scales(scales, np.float32(1.033))
        _, kmap, _ = quantizer_grid(512)
        grid_index = kmap[grid_codes(L)].reshape(n, 8, 8)
        qs = np.zeros((n, 8, 8), np.uint8)
        signs = np.zeros((n, 8, 4), np.uint8)
        sign_bytes = np.packbits(negative.reshape(n, 8, 32), axis=2, bitorder="little")
        written = np.cumsum(~skipped, axis=1) - 1          # where ggml's pointers stand
        for b, j in zip(*np.nonzero(~skipped)):
            qs[b, written[b, j]] = grid_index[b, j] & 255
            signs[b, written[b, j]] = sign_bytes[b, j]
        qh = ((grid_index >> 8) << np.arange(8)).sum(axis=2).astype(np.uint8)   # (n, 8): absolute
        packed_ls = (ls[:, 0::2] | (ls[:, 1::2] << 4)).astype(np.uint8)
        empty = scales.max(axis=1) == 0                    # ggml leaves d and the scales at 0
        return np.concatenate([np.where(empty[:, None], 0, fp16_bytes(d)), qs.reshape(n, 64), qh,
                               signs.reshape(n, 32), np.where(empty[:, None], 0, packed_ls)], axis=1)


# ---------------------------------------------------------------------- the quantizers

def grid_codes(L: np.ndarray) -> np.ndarray:
    """Levels (..., 32) of a sub-block -> the 12-bit codes of its 8 groups of 4 (..., 8)."""
    groups = L.reshape(L.shape[:-1] + (8, 4)).astype(np.int64)
    return (groups << (3 * np.arange(4))).sum(axis=-1)


def best_neighbours(codes, xval, waux, scale, grid_size):
    """ggml's iq3_find_best_neighbour for groups not in the grid: codes (G,), xval and
    waux (G, 4), scale (G,) -> the levels (G, 4) of the neighbour with the least
    sum waux * (scale * point - xval)^2 (the first on ties)."""
    points, _, neighbours = quantizer_grid(grid_size)
    candidates = neighbours[codes]                                      # (G, m)
    pts = points[np.maximum(candidates, 0)].astype(np.float32)          # (G, m, 4)
    d2 = np.zeros(candidates.shape, np.float32)
    for i in range(4):
        diff = scale[:, None] * pts[:, :, i] - xval[:, None, i]
        d2 = d2 + waux[:, None, i] * diff * diff
    d2 = np.where(candidates >= 0, d2, np.inf)
    best = candidates[np.arange(len(codes)), d2.argmin(axis=1)]
    return (points[best].astype(np.int64) - 1) // 2


def snap_to_grid(L, xval, waux, scale, grid_size, groups):
    """Levels L (B, 32) -> the same with every group of 4 in `groups` (B, 8) that is not a
    grid point replaced by its best neighbour for `scale` (B,); and which groups of L
    were on the grid (B, 8)."""
    _, kmap, _ = quantizer_grid(grid_size)
    codes = grid_codes(L)
    on_grid = kmap[codes] >= 0
    b, k = np.nonzero(groups & ~on_grid)
    L = L.copy().reshape(-1, 8, 4)
    x4, w4 = xval.reshape(-1, 8, 4), waux.reshape(-1, 8, 4)
    if len(b):
        L[b, k] = best_neighbours(codes[b, k], x4[b, k], w4[b, k], scale[b], grid_size)
    return L.reshape(-1, 32), on_grid


def weighted_sums(weight, xval, L):
    """sum w x q and sum w q^2 over a sub-block, q = 2 L + 1, left to right (B,)."""
    q = f32(2 * L + 1)
    return seq_sum(weight * xval * q)[:, 0], seq_sum(weight * q * q)[:, 0]


def search_sub_blocks(x, quant_weights, grid_size):
    """The per-32-weights search of quantize_row_iq3_xxs_impl (grid_size 256) and
    quantize_row_iq3_s_impl (512), over all sub-blocks of x (n, 256) at once.

    Weights: x^2, or with an imatrix qw * sqrt(sigma2 + x^2), sigma2 = 2 sum x^2 / 256 of
    the block.  Signs apart (xval = |x|; IQ3_XXS flips the least important weight of a
    group of 8 with an odd number of minus signs).  Then for each trial scale max / (15 +
    0.2 is) the levels nearest xval, each group of 4 snapped to the grid (best neighbour),
    keeping the least-squares scale of the best trial; groups that ended off the grid are
    re-snapped with that scale (IQ3_S: all groups) and the scale refitted.

    Returns (scales (n, 8) float32, levels (n, 8, 32), minus signs (n, 8, 32), skipped
    sub-blocks (n, 8): those ggml leaves at zero).
    """
    xxs = grid_size == 256
    n = x.shape[0]
    xb = x.reshape(n * 8, 32)
    if quant_weights is None:
        weight = xb * xb
    else:
        sigma2 = np.float32(2) * seq_sum(x * x) / np.float32(QK_K)
        weight = quant_weights.reshape(n * 8, 32) * np.sqrt(np.repeat(sigma2, 8, axis=0) + xb * xb)
    waux = np.sqrt(weight)
    negative = ~(xb >= 0)
    xval = np.where(negative, -xb, xb)
    if xxs:                                   # an even number of minus signs per 8 weights
        odd = negative.reshape(-1, 4, 8).sum(axis=2) % 2 == 1
        least = (weight * xb * xb).reshape(-1, 4, 8).argmin(axis=2)
        flip = (odd[:, :, None] & (np.arange(8) == least[:, :, None])).reshape(-1, 32)
        xval = np.where(flip, -xval, xval)
        negative = negative ^ flip
    amax = xval.max(axis=1)
    skipped = amax < GROUP_MAX_EPS_IQ3_XXS if xxs else amax == 0
    amax = np.where(skipped, np.float32(1), amax)[:, None]
    every_group = np.ones((n * 8, 8), bool)
    best = np.zeros(n * 8, np.float32)
    scale = amax[:, 0] / np.float32(15)
    L = np.zeros((n * 8, 32), np.int64)
    on_grid = np.full((n * 8, 8), xxs)
    for trial in range(-15, 16) if xxs else range(-9, 10):
        inv = (np.float32(15) + np.float32(trial) * np.float32(0.2)) / amax
        levels = np.clip(nearest_int(np.float32(0.5) * (inv * xval - np.float32(1))), 0, 7)
        levels, trial_on_grid = snap_to_grid(levels, xval, waux, np.float32(1) / inv[:, 0], grid_size,
                                             every_group)
        sumqx, sumq2 = weighted_sums(weight, xval, levels)
        better = ~skipped & (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(better, sumqx / sumq2, scale)
        best = np.where(better, scale * sumqx, best)
        L = np.where(better[:, None], levels, L)
        on_grid = np.where(better[:, None], trial_on_grid, on_grid)
    refit = ~skipped & ~on_grid.all(axis=1) & (scale > 0)
    if refit.any():
        # the least-squares scale can be 2^-20 of amax (big weights of importance 0), so
        # inv * xval may pass 2^22: nearest_int must then be ggml's, bit for bit
        with np.errstate(divide="ignore"):
            inv = (np.float32(1) / np.where(refit, scale, np.float32(1)))[:, None]
        levels = np.clip(nearest_int(np.float32(0.5) * (inv * xval - np.float32(1))), 0, 7)
        redo = refit[:, None] & (~on_grid if xxs else every_group)
        levels, _ = snap_to_grid(levels, xval, waux, scale, grid_size, redo)
        L = np.where(np.repeat(redo, 4, axis=1), levels, L)
        sumqx, sumq2 = weighted_sums(weight, xval, L)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(refit & (sumq2 > 0), sumqx / sumq2, scale)
    flipped = scale < 0                       # "should never happen" (ggml): sign and scale flip
    negative = negative ^ flipped[:, None]
    scale = np.where(skipped, np.float32(0), np.abs(scale))
    return (scale.reshape(n, 8), L.reshape(n, 8, 32), negative.reshape(n, 8, 32),
            skipped.reshape(n, 8))


def block_scales(scales, fudge):
    """The fp16 d of each block (d = max scale / 31, stored times ggml's fudge factor) and
    the 4-bit ls (n, 8) of its sub-blocks: nearest_int((scale / d - 1) / 2), in 0..15."""
    max_scale = np.maximum(scales.max(axis=1, keepdims=True), np.float32(0))
    d = max_scale / np.float32(31)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.float32(1) / d
        ls = np.clip(nearest_int(np.float32(0.5) * (inv * scales - np.float32(1))), 0, 15)
    return d * fudge, np.where(max_scale > 0, ls, 0).astype(np.int64)

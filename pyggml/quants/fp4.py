"""The 4-bit floats: MXFP4 (OCP microscaling, what gpt-oss ships) and NVFP4.

Every weight is a tiny float, E2M1: 1 sign bit, 2 exponent bits, 1 mantissa bit,

    code  s e1 e0 m      value = (-1)^s * (e == 0 ? m/2 : (1 + m/2) * 2^(e-1))
          0 00 0  0      0 0.5 1 1.5 2 3 4 6   (and their negatives, codes 8..15)

and a block shares a scale that is itself a small float.  ggml doubles the E2M1 values so
that they are integers (kvalues_mxfp4 = 0 1 2 3 4 6 8 12 0 -1 -2 -3 -4 -6 -8 -12, built
by lowbit_numba.e2m1_doubled) and halves the scales to match:

    MXFP4  32 weights, one E8M0 scale e (a bare exponent: 2^(e-127))
           y = kvalues_mxfp4[i] * 2^(e - 128)                       4.25 bits per weight
    NVFP4  64 weights, a UE4M3 scale per 16 (unsigned E4M3: 4 exponent bits with bias 7,
           3 mantissa bits, subnormals; 0x7F, E4M3's NaN, reads as 0)
           y = kvalues_mxfp4[i] * ue4m3(d_s) / 2                     4.5 bits per weight

E8M0 can only scale by powers of two, so MXFP4's grid is coarse; NVFP4 pays half a bit
per weight for a finer scale, every 16 weights.  Products use Q8_0 activations: MXFP4's
are IQ4_NL's with another table and scale (``legacy_numba.py``, repacked 8 rows at a time
like Q4_0 when llama.cpp repacks it), NVFP4's (64 weights over two activation blocks) are
in ``lowbit_numba.py``.  The quantizers ignore an importance matrix, as ggml's do.
"""
from __future__ import annotations

import numpy as np

from ..ggml import GGMLType
from .lowbit import LowbitType
from .lowbit_numba import KVALUES_FP4, e8m0_to_fp32_half, ue4m3_to_fp32


class FP4Type(LowbitType):
    """What MXFP4 and NVFP4 share: fields() gives d (n, number of scales), the E2M1 code of
    each weight, index (n, block_size), and its value, q = kvalues_mxfp4[index] (doubled);
    then y = float(q) * d, each weight with the d of its block or sub-block."""

    @classmethod
    def describe(cls, fields) -> list[str]:
        """`pyggml inspect`'s lines for one block: each scale, then each weight's E2M1 code
        and its doubled value."""
        d = fields["d"][0]
        per = cls.block_size // d.size
        lines = [f"scales (y = kvalues_mxfp4[i] * d; kvalues_mxfp4 = E2M1 values doubled: "
                 f"{' '.join(str(int(v)) for v in KVALUES_FP4)})"]
        lines += [f"  weights {per * s:2d}..{per * s + per - 1:2d}: d = {float(v):.8g}" for s, v in enumerate(d)]
        for title, values in (("E2M1 code i", fields["index"][0]), ("kvalues_mxfp4[i]", fields["q"][0])):
            lines += ["", f"{title}, weights i.. i+15 per line"]
            lines += [f"  {i:3d}: " + " ".join(f"{int(v):3d}" for v in values[i:i + 16])
                      for i in range(0, cls.block_size, 16)]
        return lines

    @classmethod
    def dequantize_blocks(cls, blocks):
        f = cls.fields(blocks)
        n, n_scales = f["d"].shape
        q = f["q"].astype(np.float32).reshape(n, n_scales, -1)
        return (q * f["d"][:, :, None]).reshape(n, cls.block_size)


def best_index_fp4(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """ggml's best_index_mxfp4 for every weight: the first E2M1 code whose value times d
    (the weight's scale, broadcast against x) is nearest to x, in float32."""
    values = KVALUES_FP4.astype(np.float32)
    errors = np.abs(values * np.asarray(d, np.float32)[..., None] - x[..., None])
    return errors.argmin(axis=-1).astype(np.uint8)


class MXFP4(FP4Type, ggml_type=GGMLType.MXFP4):
    """4-bit E2M1 floats with a power-of-two scale: y = kvalues_mxfp4[i] * 2^(e - 128).

        byte 0   1                                              17
             +---+----------------------------------------------+
             | e | qs[16]: qs[j] = i[j+16] << 4 | i[j]           |
             |E8M0                                              |
             +---+----------------------------------------------+

    The nibbles are not interleaved (as in Q4_0).  E8M0 0 and 1 give subnormal float32
    scales; 255 (the specification's NaN) stays 2^127, as in ggml.
    Quantizer (quantize_row_mxfp4_ref): e = floor(log2(max |x|)) - 2 + 127, which puts the
    largest weight between 4 and 8 times 2^(e - 127), i.e. on E2M1's top values 4 and 6;
    then each weight's nearest value (the first code on ties).
    """
    layout = (("e", 0, 1, "E8M0 scale: 2^(e - 127)"), ("qs", 1, 16, "32 E2M1 codes"))

    @classmethod
    def fields(cls, blocks):
        index = np.concatenate([blocks[:, 1:17] & 0x0F, blocks[:, 1:17] >> 4], axis=1)
        return dict(e=blocks[:, 0:1].astype(np.int32), d=e8m0_to_fp32_half(blocks[:, 0:1]),
                    index=index, q=KVALUES_FP4[index])

    @classmethod
    def quantize_blocks(cls, x):
        amax = np.abs(x).max(axis=1, keepdims=True)
        # log2f, correctly rounded: log2 in float64 rounded to float32 (near a power of two
        # the rounding decides the floor, and only the exact value rounds as glibc does)
        log2 = np.float32(np.log2(np.where(amax > 0, amax, 1).astype(np.float64)))
        e = np.where(amax > 0, (np.floor(log2).astype(np.int64) - 2 + 127) & 0xFF, 0)  # (uint8_t)
        index = best_index_fp4(x, e8m0_to_fp32_half(e))
        return np.concatenate([e.astype(np.uint8), index[:, :16] | (index[:, 16:] << 4)], axis=1)


def fp32_to_ue4m3(x: np.ndarray) -> np.ndarray:
    """ggml_fp32_to_ue4m3 of float32 x >= 0: the code nearest x by its bits (the mantissa's
    top 3 bits, rounded up when the 4th is set), saturating at 0x7E (448); below 2^-6 the
    subnormal codes (int)(x * 512 + 0.5), of which 0 stays 0."""
    x = np.minimum(np.asarray(x, np.float32), np.float32(448))
    bits = x.view(np.uint32).astype(np.int64)
    exp = ((bits >> 23) & 0xFF) - 127 + 7
    man = ((bits >> 20) & 7) + ((bits >> 19) & 1)
    carry = man > 7
    exp_r, man_r = exp + carry, np.where(carry, 0, man)
    normal = np.where(exp_r >= 15, 0x7E, (exp_r << 3) | man_r)
    subnormal = np.clip((x * np.float32(512) + np.float32(0.5)).astype(np.int64), 0, 7)
    code = np.where(exp <= 0, subnormal, np.where(exp >= 15, 0x7E, normal))
    return np.where(x > 0, code, 0).astype(np.uint8)


class NVFP4(FP4Type, ggml_type=GGMLType.NVFP4):
    """4-bit E2M1 floats with a UE4M3 scale per 16 weights: y = kvalues_mxfp4[i] * d_s.

    d_s = ue4m3_to_fp32(d[s]), the scale halved (ggml stores the values doubled).

        byte 0             4                                                   36
             +-------------+---------------------------------------------------+
             | d[4]        | qs[32]: sub-block s (weights 16s .. 16s + 15) in   |
             | UE4M3 per16 | qs[8s .. 8s + 7], qs[8s + j] = i[j+8] << 4 | i[j]   |
             +-------------+---------------------------------------------------+

    Quantizer (quantize_row_nvfp4_ref): per sub-block d = the UE4M3 code nearest max |x| / 6
    (6: E2M1's largest value), then each weight's nearest value for that scale.
    """
    layout = (("d", 0, 4, "4 UE4M3 scales, one per 16 weights"), ("qs", 4, 32, "64 E2M1 codes"))

    @classmethod
    def fields(cls, blocks):
        n = blocks.shape[0]
        qs = blocks[:, 4:36].reshape(n, 4, 8)
        index = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(n, 64)
        return dict(scales=blocks[:, 0:4], d=ue4m3_to_fp32(blocks[:, 0:4]), index=index,
                    q=KVALUES_FP4[index])

    @classmethod
    def quantize_blocks(cls, x):
        n = x.shape[0]
        sub = x.reshape(n, 4, 16)
        codes = fp32_to_ue4m3(np.abs(sub).max(axis=2) / np.float32(6))          # (n, 4)
        index = best_index_fp4(sub, ue4m3_to_fp32(codes)[:, :, None])           # (n, 4, 16)
        return np.concatenate([codes, (index[:, :, :8] | (index[:, :, 8:] << 4)).reshape(n, 32)], axis=1)

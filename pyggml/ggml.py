"""ggml's tensor types: the ids of ``enum ggml_type`` and each type's block geometry.

Source of truth: ggml/include/ggml.h (``enum ggml_type``) and ggml.c's ``type_traits``
(``blck_size``, ``type_size``).  Every layer needs these: the GGUF reader (a tensor's size
in bytes), the quant types (pyggml.quants), the model's weight views and the kernels.
They live here, below all of them, so that none of those layers imports another for them.
"""
from __future__ import annotations

import enum


class GGMLType(enum.IntEnum):
    """Tensor element types (``enum ggml_type``).  Gaps are ids removed from ggml
    (4, 5: Q4_2, Q4_3; 31-33: Q4_0_4_4, Q4_0_4_8, Q4_0_8_8; 36-38: IQ4_NL_4_4,
    IQ4_NL_4_8, IQ4_NL_8_8: repacked at run time now)."""
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41
    Q2_0 = 42


# (elements per block, bytes per block) -- ggml's blck_size and type_size.
# Q8_1 is 36 bytes in C (gguf-py 0.19 says 40); it only exists at run time anyway.
TYPE_TRAITS: dict[GGMLType, tuple[int, int]] = {
    GGMLType.F32: (1, 4), GGMLType.F16: (1, 2), GGMLType.BF16: (1, 2), GGMLType.F64: (1, 8),
    GGMLType.I8: (1, 1), GGMLType.I16: (1, 2), GGMLType.I32: (1, 4), GGMLType.I64: (1, 8),
    GGMLType.Q4_0: (32, 18), GGMLType.Q4_1: (32, 20), GGMLType.Q5_0: (32, 22),
    GGMLType.Q5_1: (32, 24), GGMLType.Q8_0: (32, 34), GGMLType.Q8_1: (32, 36),
    GGMLType.Q2_K: (256, 84), GGMLType.Q3_K: (256, 110), GGMLType.Q4_K: (256, 144),
    GGMLType.Q5_K: (256, 176), GGMLType.Q6_K: (256, 210), GGMLType.Q8_K: (256, 292),
    GGMLType.IQ2_XXS: (256, 66), GGMLType.IQ2_XS: (256, 74), GGMLType.IQ3_XXS: (256, 98),
    GGMLType.IQ1_S: (256, 50), GGMLType.IQ4_NL: (32, 18), GGMLType.IQ3_S: (256, 110),
    GGMLType.IQ2_S: (256, 82), GGMLType.IQ4_XS: (256, 136), GGMLType.IQ1_M: (256, 56),
    GGMLType.TQ1_0: (256, 54), GGMLType.TQ2_0: (256, 66), GGMLType.MXFP4: (32, 17),
    GGMLType.NVFP4: (64, 36), GGMLType.Q1_0: (128, 18), GGMLType.Q2_0: (64, 18),
}


def type_name(type_id: int) -> str:
    """ggml's name for a type id; unknown ids read ``type<N>`` so they can still be shown."""
    try:
        return GGMLType(type_id).name
    except ValueError:
        return f"type{type_id}"

"""The grids of IQ3_XXS and IQ3_S (pyggml/quants/iq3_grids.py), checked at test time
against ggml's and gguf-py's, and their C/CUDA copy against the tool that writes it.

- every grid point, decoded by ggml's own dequantize_row_<type> (libggml-base, through
  ctypes) from blocks that select every index, with d and the scales set so that
  y = the grid byte times its sign: the floats give iq3xxs_grid / iq3s_grid back exactly;
  the same against gguf-py's decoder tables;
- kernels/ggml_iq3_grids.h is what tools/make_iq3_grids.py writes.
"""
from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from pyggml.ggml import GGMLType as G
from pyggml.quants import iq3_grids

from ggml_oracle import to_float

ROOT = Path(__file__).resolve().parents[1]


def grid_blocks(name: str) -> np.ndarray:
    """Blocks whose groups of 4 select every grid index in turn, all signs +, and scales
    that make y = the grid byte: IQ3_XXS d = 4/3 with ls = 1 ((0.5 + 1) / 2 = 3/4),
    IQ3_S d = 1 with ls = 0."""
    n_points = 256 if name == "IQ3_XXS" else 512
    indices = np.arange(n_points).reshape(-1, 64)              # 64 groups per block
    n = indices.shape[0]
    if name == "IQ3_XXS":
        blocks = np.zeros((n, 98), np.uint8)
        blocks[:, 0:2] = np.full((n, 1), 4 / 3, np.float16).view(np.uint8)
        blocks[:, 2:66] = indices
        blocks[:, 66:98] = np.tile(np.array([1 << 28], "<u4").view(np.uint8), 8)     # ls = 1
    else:
        blocks = np.zeros((n, 110), np.uint8)
        blocks[:, 0:2] = np.ones((n, 1), np.float16).view(np.uint8)
        blocks[:, 2:66] = indices & 255
        high = (indices >> 8).reshape(n, 8, 8)
        blocks[:, 66:74] = (high << np.arange(8)).sum(axis=2)
    return blocks


@pytest.mark.oracle
@pytest.mark.parametrize("name, grid", [("IQ3_XXS", iq3_grids.iq3xxs_grid), ("IQ3_S", iq3_grids.iq3s_grid)])
def test_grids_are_ggml_and_gguf_py_grids(name, grid):
    blocks = grid_blocks(name)
    decoded = to_float(G[name], blocks, blocks.shape[0] * 256).reshape(-1, 4)
    # IQ3_XXS: db = fp16(4/3) * (0.5 + 1) * 0.5 (not exactly 1: fp16), y = db * grid
    db = np.float32(np.float16(4 / 3)) * np.float32(1.5) * np.float32(0.5) if name == "IQ3_XXS" else np.float32(1)
    assert np.array_equal(decoded, db * grid.astype(np.float32))
    cls = getattr(gguf.quants, name)
    cls.init_grid()
    assert np.array_equal(np.asarray(cls.grid).reshape(-1, 4), grid)


def test_c_header_is_what_the_tool_writes():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_iq3_grids
    finally:
        sys.path.pop(0)
    assert (ROOT / "kernels" / "ggml_iq3_grids.h").read_text() == make_iq3_grids.header_text()

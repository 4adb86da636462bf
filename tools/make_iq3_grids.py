"""Write kernels/ggml_iq3_grids.h, the C and CUDA copy of IQ3_XXS's and IQ3_S's grids.

    .venv/bin/python tools/make_iq3_grids.py        # rewrites kernels/ggml_iq3_grids.h

The tables are pyggml/quants/iq3_grids.py's (ggml's 12-bit grid codes, decoded to the
decoders' bytes), written as ggml-common.h declares them: one uint32 per grid point,
byte j = coordinate j.  tests/test_quants_iq3.py checks that the header is what this
writes.  The table writer is tools/make_iq_grids.py's (the other codebook grids).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
from make_iq_grids import table  # noqa: E402
from pyggml.quants import iq3_grids  # noqa: E402

HEADER = ROOT / "kernels" / "ggml_iq3_grids.h"

PREAMBLE = """\
/* ggml_iq3_grids.h -- the grids of IQ3_XXS and IQ3_S: ggml-common.h's iq3xxs_grid (256
 * points) and iq3s_grid (512), entry for entry, one point of 4 magnitudes per uint32,
 * byte j = coordinate j (IQ3_XXS: 4 12 20 28 36 44 52 62; IQ3_S: 1 3 5 .. 15).
 *
 * Written by tools/make_iq3_grids.py from pyggml/quants/iq3_grids.py, which says where the
 * points come from; tests/test_quants_iq3.py checks that this file is what the tool
 * writes.  Do not edit by hand.  The signs are ggml_iq_grids.h's ksigns_iq2xs.
 *
 * No include guard, as ggml_iq_grids.h: IQ_GRID_TABLE(type, name, size) declares each
 * table (by default a static const array that a file may leave unused).
 */
#ifndef IQ_GRID_TABLE
#define IQ_GRID_TABLE(type, name, size) static const type name[size] __attribute__((unused))
#endif
"""


def uint32_rows(grid: np.ndarray) -> np.ndarray:
    """(n, 4) bytes -> n little-endian uint32."""
    return np.ascontiguousarray(grid).view("<u4").reshape(-1)


def header_text() -> str:
    hex32 = lambda v: f"0x{int(v):08x}"      # noqa: E731
    return "\n".join([PREAMBLE,
                      table("uint32_t", "iq3xxs_grid", uint32_rows(iq3_grids.iq3xxs_grid), 8, hex32),
                      table("uint32_t", "iq3s_grid", uint32_rows(iq3_grids.iq3s_grid), 8, hex32)])


if __name__ == "__main__":
    HEADER.write_text(header_text())
    print(f"wrote {HEADER}")

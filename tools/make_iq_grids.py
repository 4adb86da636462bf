"""Write kernels/ggml_iq_grids.h, the C and CUDA copy of the codebook i-quants' tables.

    .venv/bin/python tools/make_iq_grids.py         # rewrites kernels/ggml_iq_grids.h

The tables are pyggml/quants/iq_grid_points.py's (ggml's grid points, and the signs
derived from their parity), written as ggml-common.h declares them: one uint64 per grid
point, byte j = coordinate j.  tests/test_quants_iq_grid.py checks that the header is
what this writes.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pyggml.quants import iq_grid_points as points  # noqa: E402

HEADER = ROOT / "kernels" / "ggml_iq_grids.h"

PREAMBLE = """\
/* ggml_iq_grids.h -- the tables of the codebook i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S,
 * IQ1_M): ggml-common.h's kmask_iq2xs, ksigns_iq2xs, ksigns64, iq2xxs_grid, iq2xs_grid,
 * iq2s_grid and iq1s_grid, entry for entry.
 *
 * Written by tools/make_iq_grids.py from pyggml/quants/iq_grid_points.py, which says what
 * a grid point is and where the points come from; tests/test_quants_iq_grid.py checks that
 * this file is what the tool writes.  Do not edit by hand.
 *
 *   iq2xxs_grid, iq2xs_grid, iq2s_grid  one point of 8 magnitudes per uint64, byte j =
 *                                       coordinate j: 8, 25 or 43 (the levels 1, 3, 5)
 *   iq1s_grid                           the same with int8 bytes -1, 0, +1
 *   ksigns_iq2xs[s]                     the sign byte of the 7-bit index s: s, and as bit 7
 *                                       its parity (an even number of minus signs)
 *   kmask_iq2xs[j]                      1 << j: weight j's bit of a sign byte
 *   ksigns64[s]                         ksigns_iq2xs[s] as 8 bytes 0x00 / 0xff
 *
 * No include guard: kernels/pyggml_cuda.cu includes it twice, for device memory and for
 * the host.  IQ_GRID_TABLE(type, name, size) declares each table; by default a static
 * const array that a file may leave unused.
 */
#ifndef IQ_GRID_TABLE
#define IQ_GRID_TABLE(type, name, size) static const type name[size] __attribute__((unused))
#endif
"""


def table(c_type: str, name: str, values, per_line: int, fmt) -> str:
    values = list(values)
    lines = [f"IQ_GRID_TABLE({c_type}, {name}, {len(values)}) = {{"]
    for start in range(0, len(values), per_line):
        lines.append("    " + " ".join(fmt(v) + "," for v in values[start:start + per_line]))
    return "\n".join(lines) + "\n};\n"


def uint64_rows(grid: np.ndarray) -> np.ndarray:
    """(n, 8) bytes -> n little-endian uint64."""
    return np.ascontiguousarray(grid).view(np.uint8).view("<u8").reshape(-1)


def header_text() -> str:
    hex64 = lambda v: f"0x{int(v):016x}"      # noqa: E731
    parts = [PREAMBLE,
             table("uint8_t", "kmask_iq2xs", points.kmask_iq2xs, 8, str),
             table("uint8_t", "ksigns_iq2xs", points.ksigns_iq2xs, 16, lambda v: f"{int(v):3d}"),
             table("uint64_t", "ksigns64", uint64_rows(points.ksigns64), 4, hex64)]
    for name in ("iq2xxs_grid", "iq2xs_grid", "iq2s_grid", "iq1s_grid"):
        parts.append(table("uint64_t", name, uint64_rows(getattr(points, name)), 4, hex64))
    return "\n".join(parts)


if __name__ == "__main__":
    HEADER.write_text(header_text())
    print(f"wrote {HEADER}")

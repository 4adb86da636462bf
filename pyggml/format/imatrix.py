"""llama.cpp's importance-matrix files (``llama-imatrix``'s output), read as llama-quantize
reads them (common/imatrix-loader.cpp and tools/quantize/quantize.cpp's load_imatrix).

An imatrix holds, for each weight matrix a model multiplies, one number per input
column: the mean square of the activations that column met while llama-imatrix ran a
text through the model.  llama-quantize hands them to ggml's quantizers, which weigh
every weight's rounding error by its column's importance.  Two file forms:

GGUF (current llama.cpp): a GGUF file whose tensors come in pairs, F32 both,

    <name>.in_sum2   sums of squared activations, ne0 per expert (ne0 * n_expert)
    <name>.counts    how many activations were summed, one count per expert

    and metadata imatrix.datasets (strings), imatrix.chunk_count, imatrix.chunk_size.
    The importance is in_sum2 / count per expert; an expert never reached (count 0)
    gets 1 for every column.  Counts are rounded to integers first (std::lround).

legacy .dat (llama.cpp before mid 2025): little-endian, no magic,

    int32 n_entries
    n_entries times:  int32 len | name (len bytes) | int32 ncall | int32 nval | float32[nval]
    optional:         int32 chunk_count | int32 len | dataset name (len bytes)

    The importance is value / ncall (the file holds the running means times ncall);
    ncall 0 leaves the values as they are.  A later entry of the same name wins.

``read_imatrix(path)`` returns an ``Imatrix``: name -> float32 importance, and what
llama-quantize writes about it into the quantized file's metadata.  A GGUF imatrix
without the three imatrix.* keys is refused, as llama-quantize refuses it.
"""
from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import GGUFError, GGUFTruncatedError
from ..ggml import GGMLType
from .constants import GGUF_MAGIC

METADATA_KEYS = ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size")


class Imatrix(NamedTuple):
    """An importance matrix as llama-quantize uses it.

    entries      tensor name -> float32 importance (ne0 per expert, experts back to back)
    datasets     the text(s) it was computed on, as the file names them
    chunk_count  chunks of text it was computed on (0: not recorded)
    """
    entries: dict[str, np.ndarray]
    datasets: list[str]
    chunk_count: int


def read_imatrix(path) -> Imatrix:
    """Read an imatrix file in either form (a GGUF magic says which); GGUFError naming
    the file, offset and field for a malformed one."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except OSError as err:
        raise GGUFError(f"cannot read the imatrix: {err.strerror or err}", path=path) from None
    return _read_gguf(path) if magic == GGUF_MAGIC else _read_legacy(path)


def _read_gguf(path: Path) -> Imatrix:
    from .shards import GGUFFile
    with GGUFFile(path) as f:
        missing = [key for key in METADATA_KEYS if key not in f.metadata]
        if missing:
            raise GGUFError(f"not an imatrix: no {', '.join(missing)} (llama-quantize refuses "
                            "an imatrix without its metadata)", path=path)
        pairs: dict[str, dict[str, str]] = {}
        for name in f.tensors:
            for suffix in (".in_sum2", ".counts"):
                if name.endswith(suffix):
                    pairs.setdefault(name[:-len(suffix)], {})[suffix] = name
        if not pairs:
            raise GGUFError("no <name>.in_sum2 / <name>.counts tensors: no importance data", path=path)
        entries = {}
        for name, pair in sorted(pairs.items()):
            if len(pair) != 2:
                raise GGUFError(f"{name}: has {next(iter(pair.values()))} but not its "
                                f"{'counts' if '.in_sum2' in pair else 'in_sum2'}", path=path)
            sums, counts = (f.tensors[pair[suffix]] for suffix in (".in_sum2", ".counts"))
            for info in (sums, counts):
                if info.type != GGMLType.F32:
                    raise GGUFError(f"{info.name} is {info.type_name}; imatrix tensors are F32",
                                    path=path)
            if counts.n_elements == 0 or sums.n_elements % counts.n_elements:
                raise GGUFError(f"{name}: {sums.n_elements} sums do not split into "
                                f"{counts.n_elements} experts", path=path)
            entries[name] = _mean_squares(np.frombuffer(f.raw(sums.name), "<f4"),
                                          np.frombuffer(f.raw(counts.name), "<f4"))
        datasets = f.metadata["imatrix.datasets"]
        if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
            datasets = []                 # llama.cpp reads the key only as an array of strings
        chunk_count = f.metadata["imatrix.chunk_count"]
        if not isinstance(chunk_count, int) or isinstance(chunk_count, bool):
            raise GGUFError(f"imatrix.chunk_count is {chunk_count!r}, not a count", path=path)
        return Imatrix(entries, list(datasets), chunk_count)


def _mean_squares(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """in_sum2 / count per expert (count rounded like std::lround); 1 where count is 0."""
    per_expert = sums.reshape(counts.size, -1)
    rounded = np.array([_lround(c) for c in counts], dtype=np.float32).reshape(-1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rounded > 0, per_expert / rounded, np.float32(1)).astype(np.float32).reshape(-1)


def _lround(value: float) -> int:
    """C's lround: nearest integer, halves away from zero (non-finite counts count 0)."""
    if not math.isfinite(value):
        return 0
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


class _Cursor:
    """Reads little-endian fields from a legacy imatrix, every length checked first."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data, self.offset = path, data, 0

    def take(self, n: int, field: str) -> bytes:
        if n < 0 or self.offset + n > len(self.data):
            raise GGUFTruncatedError(f"needs {n} bytes, {len(self.data) - self.offset} left",
                                     path=self.path, offset=self.offset, field=field)
        chunk = self.data[self.offset:self.offset + n]
        self.offset += n
        return chunk

    def int32(self, field: str) -> int:
        return struct.unpack("<i", self.take(4, field))[0]

    def at_end(self) -> bool:
        return self.offset == len(self.data)


def _read_legacy(path: Path) -> Imatrix:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise GGUFError(f"cannot read the imatrix: {err.strerror or err}", path=path) from None
    cursor = _Cursor(path, data)
    n_entries = cursor.int32("n_entries")
    if n_entries < 1:
        raise GGUFError(f"{n_entries} entries: no importance data (not a GGUF file, so read "
                        "as a legacy .dat imatrix)", path=path, offset=0, field="n_entries")
    entries = {}
    for i in range(n_entries):
        start = cursor.offset
        name = cursor.take(cursor.int32(f"entry {i} name length"), f"entry {i} name")
        ncall = cursor.int32(f"entry {i} ncall")
        nval = cursor.int32(f"entry {i} nval")
        if nval < 1:
            raise GGUFError(f"{nval} values", path=path, offset=start, field=f"entry {i}")
        values = np.frombuffer(cursor.take(4 * nval, f"entry {i} values"), "<f4")
        # C++ reads the name as a C string: it ends at its first NUL byte
        text = name.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        entries[text] = (values / np.float32(ncall) if ncall > 0 else values).astype(np.float32)
    chunk_count, datasets = 0, []
    if not cursor.at_end():                  # the optional trailer, read as far as it goes
        if len(data) - cursor.offset >= 4:
            chunk_count = cursor.int32("chunk_count")
            if len(data) - cursor.offset >= 4:
                length = cursor.int32("dataset name length")
                if 0 < length <= len(data) - cursor.offset:
                    dataset = cursor.take(length, "dataset name").split(b"\0", 1)[0]
                    datasets.append(dataset.decode("utf-8", "surrogateescape"))
    return Imatrix(entries, datasets, chunk_count)

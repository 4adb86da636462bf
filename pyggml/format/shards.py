"""A GGUF model as one object, whether it is one file or a split set opened from any shard.

    pyggml.open("model-00002-of-00003.gguf")  ->  GGUFFile over all three shards

A split set (llama.cpp's gguf-split, ``llama-quantize --keep-split``, gguf-py's
writer, pyggml's own ``split``) is a row of complete GGUF files:

    model-00001-of-00003.gguf   all metadata + split.no=0  split.count=3  split.tensors.count=N
    model-00002-of-00003.gguf   split.no=1  split.count=3  split.tensors.count=N   (only these)
    model-00003-of-00003.gguf   split.no=2  split.count=3  split.tensors.count=N
                                each with its own alignment, data section and tensor offsets

A file whose ``split.count`` is missing, 0 (a merged file keeps the keys) or 1 is a
single model.  Otherwise the siblings are found by llama.cpp's naming convention
from the shard's own ``split.no``, and all of these must hold, or GGUFSplitError
names the file at fault and no model is returned:

    - every shard exists and parses
    - shard i has split.no == i and the same split.count
    - the tensors of all shards add up to split.tensors.count (from shard 1)
    - no tensor name appears twice, in one shard or across shards
    - each tensor lies inside its own shard (checked by the reader)

Metadata comes from shard 1 only (shard 1 may hold no tensors at all, as written by
``gguf-split --no-tensor-first-split`` or gguf-py's ``small_first_shard``).
"""
from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import (GGUFChangedError, GGUFSplitError, TensorNotFoundError,
                      UnsupportedTypeError, UsageError)
from ..ggml import GGMLType
from .constants import GGUFValueType
from .reader import MetadataField, ParsedFile, TensorInfo, close_map, read_file

# ggml float types numpy reads exactly (F32, F16): their little-endian storage
_NUMPY_FLOATS = {GGMLType.F32: "<f4", GGMLType.F16: "<f2"}
MADV_POPULATE_READ = 22     # Linux's value; Python's mmap module does not name it

SPLIT_NO, SPLIT_COUNT, SPLIT_TENSORS_COUNT = "split.no", "split.count", "split.tensors.count"
SPLIT_KEYS = (SPLIT_NO, SPLIT_COUNT, SPLIT_TENSORS_COUNT)
_INTEGER_TYPES = {GGUFValueType.UINT8, GGUFValueType.INT8, GGUFValueType.UINT16,
                  GGUFValueType.INT16, GGUFValueType.UINT32, GGUFValueType.INT32,
                  GGUFValueType.UINT64, GGUFValueType.INT64}


def shard_path(prefix, index: int, count: int) -> Path:
    """llama.cpp's ``llama_split_path``: prefix-%05d-of-%05d.gguf, index counted from 0."""
    return Path(f"{prefix}-{index + 1:05d}-of-{count:05d}.gguf")


def split_prefix(path, index: int, count: int) -> str | None:
    """The prefix of ``path`` if it is named as shard ``index`` of ``count``, else None
    (llama.cpp's ``llama_split_prefix``)."""
    text = str(path)
    suffix = f"-{index + 1:05d}-of-{count:05d}.gguf"
    if text.endswith(suffix) and len(text) > len(suffix):
        return text[:-len(suffix)]
    return None


class Shard(NamedTuple):
    """One file of a model: a single file is a model of one shard with index 0."""
    path: Path
    index: int
    version: int
    alignment: int
    data_offset: int
    file_size: int
    n_tensors: int


class GGUFFile:
    """A GGUF model: shard 1's metadata and the tensors of every shard, zero-copy.

        .path       the path given          .shards     list[Shard], in split.no order
        .metadata   key -> Python value     .fields     key -> MetadataField (exact types)
        .tensors    name -> TensorInfo, in shard order, then in each file's order
        .raw(name)  read-only uint8 view of the tensor's bytes on the mmap (nothing copied)
        .read_into_memory(names)  those tensors copied into memory: raw() returns the copies
        .dequantize(name) -> float32 array of the tensor's shape
        .check_unchanged()  GGUFChangedError if a shard was truncated or rewritten since

    The shards stay open while the GGUFFile is: another process that truncates one or
    rewrites it in place changes the bytes under every view.  ``raw`` and ``dequantize``
    check first (one fstat), a model checks before each batch, and a read that faults
    all the same ends the process with one line naming the file (reader.MappedFile,
    mapguard.py).  A shard replaced by rename is no change: the old file stays mapped.

    Usable as a context manager; ``close()`` closes and unmaps the files (views already
    handed out stay valid and keep their file mapped until they are gone).
    """

    def __init__(self, path):
        self.path = Path(path)
        parsed = _read_split_set(self.path)
        self._files = [p.map for p in parsed]
        self.shards = [Shard(p.path, i, p.version, p.alignment, p.data_offset, p.file_size,
                             len(p.tensors)) for i, p in enumerate(parsed)]
        self.fields: dict[str, MetadataField] = parsed[0].fields
        self.metadata = {key: field.to_python() for key, field in self.fields.items()}
        self.tensors: dict[str, TensorInfo] = {}
        self._in_memory: dict[str, np.ndarray] = {}      # read_into_memory's copies
        for i, p in enumerate(parsed):
            for info in p.tensors:
                self.tensors[info.name] = info._replace(shard=i) if i else info

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes: a read-only uint8 view of exactly ``nbytes`` on the mmap, or
        of its copy in memory after read_into_memory."""
        info = self._supported(name)
        mapped = self._files[info.shard]
        if mapped is None:
            raise UsageError(f"{self.path}: file is closed")
        if name in self._in_memory:
            return self._in_memory[name]
        mapped.check_unchanged()
        return np.frombuffer(mapped.data, dtype=np.uint8, count=info.nbytes, offset=info.offset)

    def dequantize(self, name: str) -> np.ndarray:
        """The tensor as float32 in its numpy shape (pyggml.quants does the decoding;
        F32 and F16, a model's norm and bias vectors, by numpy's exact casts, so that
        loading a model for the C kernels imports no numba); raw() checks the file first."""
        info = self._supported(name)
        storage = _NUMPY_FLOATS.get(info.type)
        if storage is not None:
            return self.raw(name).view(storage).astype(np.float32).reshape(info.shape)
        from ..quants import dequantize
        return dequantize(info.type, self.raw(name), info.shape)

    def check_unchanged(self) -> None:
        """Raise GGUFChangedError, naming the shard, if one was truncated or rewritten in
        place since it was opened (its size or modification time differs; one fstat each).
        After close() there is nothing left to check: views still in use stay covered by
        the SIGBUS guard alone."""
        for mapped in self._files:
            if mapped is not None:
                mapped.check_unchanged()

    def populate(self, names) -> None:
        """Map the pages of these tensors into the process now, as llama.cpp's mmap with
        MAP_POPULATE does at load.  Otherwise the first batch takes a page fault every
        64 KiB of weights it reads (~12,000 for a 1.5B Q3_K_M file, tens of milliseconds
        inside the first prompt); one madvise per tensor maps them for less.  Best effort:
        where the kernel lacks MADV_POPULATE_READ (Linux < 5.14) pages fault in as before,
        and a shard truncated since it was opened is left to check_unchanged to name."""
        for name in names:
            info = self.tensors[name]
            mapped = self._files[info.shard]
            if not info.supported or mapped is None or not hasattr(mapped.data, "madvise"):
                continue
            start = info.offset - info.offset % mmap.PAGESIZE
            try:
                mapped.data.madvise(MADV_POPULATE_READ, start, info.offset + info.nbytes - start)
            except OSError:
                return

    def _supported(self, name: str) -> TensorInfo:
        info = self.tensors.get(name)
        if info is None:
            raise TensorNotFoundError(f"no tensor named {name!r}", path=self.path)
        if not info.supported:
            raise UnsupportedTypeError(f"{self.shards[info.shard].path}: tensor {name!r} has "
                                       f"ggml type {info.type} ({info.type_name}), which pyggml "
                                       "does not know")
        return info

    def read_into_memory(self, names) -> int:
        """Read these tensors' bytes into anonymous memory, after which raw() hands out the
        copies (llama.cpp's --no-mmap); returns the bytes read.  Why: a mapped file is
        read through 4 KiB pages of the page cache, where one thread streams at about 2/3
        of the rate it reads anonymous memory with transparent huge pages, which the copy
        asks for (MADV_HUGEPAGE, 2 MiB-aligned; the kernel may decline).  The file's pages
        are read with pread, not mapped, so the process holds the copies alone.  A shard
        that ends before a tensor does (truncated since it was opened) raises
        GGUFChangedError naming it, and nothing is kept."""
        names = [name for name in dict.fromkeys(names) if name not in self._in_memory]
        infos = [self._supported(name) for name in names]
        starts, total = [], 0
        for info in infos:                       # each tensor 64-byte aligned, as in a file
            starts.append(total)
            total += -(-info.nbytes // 64) * 64
        if not total:
            return 0
        huge = 2 << 20
        buffer = mmap.mmap(-1, total + huge, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            buffer.madvise(mmap.MADV_HUGEPAGE)
        whole = np.frombuffer(buffer, np.uint8)
        base = -whole.ctypes.data % huge
        for shard in {info.shard for info in infos}:    # as raw() checks before a view
            if self._files[shard] is None:
                raise UsageError(f"{self.path}: file is closed")
            self._files[shard].check_unchanged()
        copies = {}
        for name, info, start in zip(names, infos, starts):
            mapped = self._files[info.shard]
            copy = whole[base + start:base + start + info.nbytes]
            _read_exactly(mapped, copy, info.offset)
            copy.flags.writeable = False
            copies[name] = copy
        self._in_memory.update(copies)
        return sum(info.nbytes for info in infos)

    def close(self) -> None:
        for mapped in self._files:
            close_map(mapped)
        self._files = [None] * len(self._files)

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        shards = f", {len(self.shards)} shards" if len(self.shards) > 1 else ""
        return f"<GGUFFile {str(self.path)!r}{shards}, {len(self.metadata)} keys, " \
               f"{len(self.tensors)} tensors>"


def _read_exactly(mapped, out: np.ndarray, offset: int) -> None:
    """out <- the file's bytes at offset, by pread (a read may return less than asked: a
    read is capped near 2 GiB); a file that ends first has changed since it was parsed."""
    view = memoryview(out)
    done = 0
    while done < len(view):
        n = os.preadv(mapped.fd, [view[done:done + (1 << 30)]], offset + done)
        if n == 0:
            mapped.check_unchanged()             # names the file and how it changed
            raise GGUFChangedError(f"ends at byte {offset + done}, inside a tensor that "
                                   f"ends at {offset + len(view)}: reopen it once it is "
                                   "complete", path=mapped.path)
        done += n


def _split_int(parsed: ParsedFile, key: str) -> int | None:
    """An integer split.* key of one shard, or None when absent."""
    field = parsed.fields.get(key)
    if field is None:
        return None
    if field.type not in _INTEGER_TYPES or field.value < 0:
        raise GGUFSplitError(f"must be a non-negative integer, not {field.type.name} "
                             f"{field.value!r}", path=parsed.path, offset=field.offset, field=key)
    return field.value


def _read_split_set(path: Path) -> list[ParsedFile]:
    """Parse ``path`` and, if it is a shard, all its siblings; check the set (see module doc)."""
    given = read_file(path)
    parsed = [given]
    try:
        count = _split_int(given, SPLIT_COUNT) or 0
        if count <= 1:
            return parsed
        index = _split_int(given, SPLIT_NO)
        if index is None or index >= count:
            raise GGUFSplitError(f"split.count is {count} but split.no is {index}", path=path,
                                 field=SPLIT_NO)
        prefix = split_prefix(path, index, count)
        if prefix is None:
            raise GGUFSplitError(f"shard {index + 1} of {count}, but its name does not end in "
                                 f"'-{index + 1:05d}-of-{count:05d}.gguf', so the other shards "
                                 "cannot be found", path=path)
        paths = [shard_path(prefix, i, count) for i in range(count)]
        missing = [str(p) for p in paths if p != path and not p.is_file()]
        if missing:
            raise GGUFSplitError(f"{len(missing)} of {count} shards missing: "
                                 f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}",
                                 path=path)
        parsed = [given if i == index else read_file(p) for i, p in enumerate(paths)]
        _check_split_set(parsed, count)
        return parsed
    except BaseException:
        for p in parsed:
            close_map(p.map)
        raise


def _check_split_set(parsed: list[ParsedFile], count: int) -> None:
    expected = _split_int(parsed[0], SPLIT_TENSORS_COUNT)
    if expected is None:
        raise GGUFSplitError(f"shard 1 of {count} lacks {SPLIT_TENSORS_COUNT}",
                             path=parsed[0].path, field=SPLIT_TENSORS_COUNT)
    owner: dict[str, Path] = {}
    for i, p in enumerate(parsed):
        for key, want in ((SPLIT_NO, i), (SPLIT_COUNT, count), (SPLIT_TENSORS_COUNT, expected)):
            got = _split_int(p, key)
            if got != want:
                field = p.fields.get(key)
                found = "missing" if got is None else f"is {got}"
                raise GGUFSplitError(f"{found} in this shard, expected {want}", path=p.path,
                                     offset=None if field is None else field.offset, field=key)
        for info in p.tensors:
            if info.name in owner:
                raise GGUFSplitError(f"tensor {info.name!r} also appears in {owner[info.name]}",
                                     path=p.path)
            owner[info.name] = p.path
    if len(owner) != expected:
        raise GGUFSplitError(f"{len(owner)} tensors in {count} shards, but split.tensors.count "
                             f"is {expected}", path=parsed[0].path, field=SPLIT_TENSORS_COUNT)


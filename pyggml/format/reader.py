"""Read one GGUF file: header, metadata and tensor index.  Tensor bytes stay on disk.

A GGUF file (version 2 or 3, little-endian), as this reader walks it:

    offset 0
    +--------+-------------+----------------+------------+
    | "GGUF" | version u32 | n_tensors u64  | n_kv u64   |                 24 bytes
    +--------+-------------+----------------+------------+
    | kv[0]:  key (string) | value_type i32 | value      |  \\
    | kv[1]:  ...                                       |   } n_kv pairs
    +----------------------------------------------------+  /
    | info[0]: name (string) | n_dims u32 | ne[n_dims] i64 |  \\
    |          type i32 (ggml_type) | offset u64         |   } n_tensors infos
    | info[1]: ...                                       |  /
    +----------------------------------------------------+
    | zero padding to a multiple of ALIGN                |  ALIGN = general.alignment or 32
    +----------------------------------------------------+  data_offset
    | tensor bytes | pad | tensor bytes | pad | ...      |  info.offset is relative to here
    +----------------------------------------------------+  end of file

    string := length u64 | length bytes of UTF-8 (no NUL)
    value  := u8 | i8 | u16 | i16 | u32 | i32 | f32 | bool (1 byte) | u64 | i64 | f64
            | string
            | array := item_type i32 | count u64 | count values of item_type

Nothing in the file is trusted: every length, count and offset is checked against
the bytes that remain before anything is sized from it, so a forged file gets a
GGUFError subclass naming the file, the byte offset and the field -- never a
hang, a huge allocation or a bare struct/Index/Unicode error.  Strings are UTF-8
decoded with ``surrogateescape``: bytes that are not UTF-8 survive as lone
surrogates and the writer restores them exactly.

The file is mapped read-only; the header is parsed from the map and copied into
Python values (large arrays into the lazy sequences of ``arrays``), so metadata
outlives the map.  Tensor bytes are never read here.  Only a regular file is opened:
a device, directory, FIFO or socket is refused by name (a FIFO would block open(),
/dev/zero would read as an empty file).  The file stays open while it is mapped, so
that ``MappedFile.check_unchanged`` can tell when another process truncates or
rewrites it (see also mapguard.py).
"""
from __future__ import annotations

import mmap
import os
import stat
import struct
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import (GGUFChangedError, GGUFError, GGUFMagicError, GGUFMetadataError,
                      GGUFTensorError, GGUFTruncatedError, GGUFVersionError)
from . import mapguard
from .arrays import LAZY_MIN_ITEMS, NumberArray, StringArray, StringChainError, find_string_bounds
from ..ggml import TYPE_TRAITS, GGMLType, type_name
from .constants import (GGML_MAX_DIMS, GGML_MAX_NAME, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC,
                        GGUF_SUPPORTED_VERSIONS, VALUE_DTYPES, GGUFValueType)

MAX_STRING_LENGTH = 1 << 30      # llama.cpp's GGUF_MAX_STRING_LENGTH
MAX_ARRAY_ITEMS = 1 << 30        # llama.cpp's GGUF_MAX_ARRAY_ELEMENTS
MAX_ARRAY_DEPTH = 4              # arrays of arrays of ...: llama.cpp allows none, gguf-py any
MAX_NESTED_ITEMS = 1 << 16       # items of one array of arrays (each becomes a Python object)
REMOVED_TYPES = frozenset({4, 5, 31, 32, 33, 36, 37, 38})   # ids ggml dropped (block size 0)

# Smallest encodings, used to refuse counts the remaining bytes cannot hold.
_MIN_KV_BYTES = 8 + 1 + 4 + 1               # key length, 1-byte key, value type, 1-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 4 + 8  # name length, 1-byte name, n_dims, type, offset
_MIN_ITEM_BYTES = {GGUFValueType.STRING: 8, GGUFValueType.ARRAY: 4 + 8,
                   **{vtype: np.dtype(dtype).itemsize for vtype, dtype in VALUE_DTYPES.items()}}

_SCALARS = {vtype: struct.Struct(fmt) for vtype, fmt in {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<B", GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d"}.items()}
_U32, _I32, _U64 = struct.Struct("<I"), struct.Struct("<i"), struct.Struct("<Q")

# O_NONBLOCK: a path swapped for a FIFO after the check opens at once instead of waiting
# for a writer (no effect on a regular file).  Neither flag exists on Windows.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_NOT_FILES = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
              (stat.S_ISSOCK, "a socket"))


class MetadataField(NamedTuple):
    """One metadata value with its exact GGUF type, so that it can be written back as it was.

    type        the value's type tag
    value       the Python value: int, float, bool, str, or for an ARRAY a list (or a
                lazy StringArray / NumberArray for 1024 items or more); for an array of
                arrays, a list of MetadataField (each inner array keeps its own item type)
    item_type   for an ARRAY, the type of its items; None otherwise
    offset      absolute byte offset of the key/value pair in its file (None if made in memory)
    """
    type: GGUFValueType
    value: Any
    item_type: GGUFValueType | None = None
    offset: int | None = None

    def to_python(self):
        """The value as plain Python: arrays of arrays become lists of lists."""
        if self.item_type == GGUFValueType.ARRAY:
            return [inner.to_python() for inner in self.value]
        return self.value


class TensorInfo(NamedTuple):
    """Where a tensor is and what it holds.

    ne          ggml order (ne[0] = elements per row), as stored
    shape       numpy order, ne reversed: (n_rows, ne[0]) for a matrix
    nbytes      None when the type is unknown to pyggml (then ``supported`` is False)
    shard       index of the file in its split set (0 for a single file)
    offset      absolute byte offset of the data in that file
    """
    name: str
    type: int
    ne: tuple[int, ...]
    n_elements: int
    nbytes: int | None
    shard: int
    offset: int

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.ne[::-1]

    @property
    def supported(self) -> bool:
        return self.nbytes is not None


class MappedFile:
    """One file held open and mapped read-only: ``data`` is the mmap that tensor views
    come from.

    The descriptor stays open so that check_unchanged() can fstat the very file that is
    mapped, whatever its path names by now.  A file replaced by rename (how downloads and
    pyggml's own writer finish a file) leaves this one mapped and whole: no change.  A
    file truncated or rewritten in place changes the bytes under every view, and reading
    a page past its new end raises SIGBUS (which mapguard turns into one line naming the
    file, and exit status 2).
    """

    def __init__(self, path: Path, fd: int, data: mmap.mmap, opened: os.stat_result):
        self.path = path
        self.fd: int | None = fd
        self.data = data
        self.size = opened.st_size
        self.mtime_ns = opened.st_mtime_ns
        self._unguard = mapguard.guard(data, path)

    @classmethod
    def open(cls, path: Path) -> MappedFile:
        """Open the regular file at ``path`` and map it read-only (GGUFError otherwise)."""
        try:
            # refused before it is opened: opening a device can do things (rewind a tape),
            # and a socket cannot be opened at all
            _refuse_non_regular(path, os.stat(path).st_mode)
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as err:
            raise _cannot_read(path, err) from None
        try:
            opened = os.fstat(fd)
            _refuse_non_regular(path, opened.st_mode)     # the path may name another file now
            if opened.st_size < len(GGUF_MAGIC):
                raise GGUFMagicError(f"not a GGUF file: only {opened.st_size} bytes", path=path,
                                     offset=0)
            data = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            _ask_for_huge_pages(data)
        except OSError as err:
            os.close(fd)
            raise _cannot_read(path, err) from None
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, data, opened)

    def check_unchanged(self) -> None:
        """GGUFChangedError when the file's size or modification time is not what it was
        when it was mapped."""
        now = os.fstat(self.fd)
        if now.st_size != self.size:
            raise GGUFChangedError(
                f"changed size since it was opened: was {self.size} bytes, now "
                f"{now.st_size}; another process truncated or rewrote it: reopen it "
                "(pyggml.open or pyggml.load again) once it is complete", path=self.path)
        if now.st_mtime_ns != self.mtime_ns:
            raise GGUFChangedError(
                f"was modified since it was opened (mtime {_timestamp(self.mtime_ns)}, now "
                f"{_timestamp(now.st_mtime_ns)}; same size, {self.size} bytes): another "
                "process rewrote it in place, so its tensor bytes may have changed: reopen it "
                "(pyggml.open or pyggml.load again)",
                path=self.path)

    def close(self) -> None:
        """Close the file, and unmap it unless numpy views still use the map: then the last
        view unmaps it (and its SIGBUS guard goes with it)."""
        if self.fd is None:
            return
        os.close(self.fd)
        self.fd = None
        try:
            self.data.close()
        except BufferError:
            return
        # unmapped now, though the mmap object may live on (in a ParsedFile someone keeps):
        # its addresses may be mapped again for another file, not to be reported as this one
        if self._unguard is not None:
            self._unguard()


def _timestamp(ns: int) -> str:
    """Local time to the nanosecond: two rewrites within a second differ only there."""
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(ns // 10**9))}.{ns % 10**9:09d}"


class ParsedFile(NamedTuple):
    """One GGUF file, parsed.  ``map`` holds the file open and mapped (see close_map)."""
    path: Path
    version: int
    alignment: int
    data_offset: int
    file_size: int
    fields: dict[str, MetadataField]
    tensors: list[TensorInfo]
    map: MappedFile


def read_file(path) -> ParsedFile:
    """Parse the GGUF file at ``path``: header, metadata and tensor index.

    Raises a GGUFError subclass for anything malformed, and GGUFError for a file
    that cannot be opened or is not a regular file.  On success the caller owns ``map``
    (see close_map).
    """
    path = Path(path)
    mapped = MappedFile.open(path)
    try:
        parsed = _Parser(mapped).parse()
    except BaseException:
        mapped.close()
        raise
    _forget_pages(mapped.data, min(parsed.data_offset, parsed.file_size))
    return parsed


def _cannot_read(path: Path, err: OSError) -> GGUFError:
    return GGUFError(f"cannot read: {err.strerror or err}", path=path)


def _refuse_non_regular(path: Path, mode: int) -> None:
    """GGUFError saying what the path is, unless it is a regular file."""
    if stat.S_ISREG(mode):
        return
    for is_kind, kind in _NOT_FILES:
        if is_kind(mode):
            raise GGUFError(f"cannot read: is {kind}, not a file", path=path)
    raise GGUFError("cannot read: not a regular file", path=path)


def _ask_for_huge_pages(data: mmap.mmap) -> None:
    """Mark the map MADV_HUGEPAGE, best effort.  Where the filesystem keeps large folios in
    the page cache (ext4 from Linux 6.16, XFS, tmpfs with huge pages), the pages this map
    reads from disk then come in 2 MiB folios, each mapped by one page-table entry: one
    thread streams them about a fifth faster than 4 KiB pages (fewer TLB misses and page
    walks; docs/performance.md).  A file already cached in small folios stays as it is.
    Before any read, since the header's and the weights' first touches read ahead."""
    if hasattr(data, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            data.madvise(mmap.MADV_HUGEPAGE)
        except OSError:                 # a kernel without transparent huge pages
            pass


def _forget_pages(data: mmap.mmap, length: int) -> None:
    """Drop the header's pages from this process's memory: everything in them has been
    copied into Python values.  (The pages stay in the OS page cache; reading them
    again would just map them again, so this is safe on a read-only shared map.)"""
    if hasattr(data, "madvise") and hasattr(mmap, "MADV_DONTNEED") and length > 0:
        data.madvise(mmap.MADV_DONTNEED, 0, length)


def close_map(mapped: MappedFile | None) -> None:
    """Close a parsed file's ``map`` (see MappedFile.close); None is nothing to close."""
    if mapped is not None:
        mapped.close()


class _Parser:
    """A cursor over one mapped file.  Each read checks that its bytes exist."""

    def __init__(self, mapped: MappedFile):
        self.mapped = mapped
        self.path = mapped.path
        self.data = mapped.data
        self.size = len(mapped.data)
        self.pos = 0

    # ----------------------------------------------------------------- errors and raw reads

    def fail(self, error: type[GGUFError], message: str, field: str, offset: int | None = None):
        raise error(message, path=self.path, offset=self.pos if offset is None else offset,
                    field=field)

    def need(self, n: int, field: str) -> int:
        """Claim the next n bytes; returns their offset."""
        if n > self.size - self.pos:
            self.fail(GGUFTruncatedError, f"{n} bytes needed, but only {self.size - self.pos} "
                      "bytes remain in the file", field)
        at = self.pos
        self.pos += n
        return at

    def unpack(self, fmt: struct.Struct, field: str):
        return fmt.unpack_from(self.data, self.need(fmt.size, field))[0]

    def string(self, field: str, max_length: int = MAX_STRING_LENGTH,
               too_long: type[GGUFError] = GGUFMetadataError) -> str:
        at = self.pos
        length = self.unpack(_U64, field)
        if length > self.size - self.pos:
            self.fail(GGUFTruncatedError, f"string of {length} bytes, but only "
                      f"{self.size - self.pos} bytes remain in the file", field, at)
        if length > max_length:
            self.fail(too_long, f"string of {length} bytes, longer than the limit of "
                      f"{max_length}", field, at)
        start = self.need(length, field)
        return self.data[start:start + length].decode("utf-8", "surrogateescape")

    def count(self, field: str, item_bytes: int, what: str) -> int:
        """A u64 count of things at least item_bytes long each, checked against the file."""
        at = self.pos
        n = self.unpack(_U64, field)
        if n * item_bytes > self.size - self.pos:
            self.fail(GGUFTruncatedError, f"{n} {what} need at least {n * item_bytes} bytes, "
                      f"but only {self.size - self.pos} bytes remain in the file", field, at)
        return n

    # ----------------------------------------------------------------- the file, top down

    def parse(self) -> ParsedFile:
        magic = bytes(self.data[:4])
        if magic != GGUF_MAGIC:
            self.fail(GGUFMagicError, f"not a GGUF file: starts with {magic!r}, expected "
                      f"{GGUF_MAGIC!r}", "magic", 0)
        self.pos = 4
        version = self.unpack(_U32, "version")
        self.check_version(version)
        n_tensors = self.count("n_tensors", _MIN_TENSOR_INFO_BYTES, "tensor infos")
        n_kv = self.count("n_kv", _MIN_KV_BYTES, "key/value pairs")
        fields = {}
        for i in range(n_kv):
            at = self.pos
            key = self.string(f"kv[{i}].key")
            if not key:
                self.fail(GGUFMetadataError, "empty key", f"kv[{i}].key", at)
            if key in fields:
                self.fail(GGUFMetadataError, f"duplicate key {key!r} (first at offset "
                          f"{fields[key].offset})", f"kv[{i}].key", at)
            fields[key] = self.value(f"kv[{i}] {key!r}", at)
        alignment = self.alignment(fields)
        if n_tensors * _MIN_TENSOR_INFO_BYTES > self.size - self.pos:
            self.fail(GGUFTruncatedError, f"{n_tensors} tensor infos need at least "
                      f"{n_tensors * _MIN_TENSOR_INFO_BYTES} bytes, but only "
                      f"{self.size - self.pos} remain", "n_tensors", 8)
        raw_infos = [self.tensor_info(i) for i in range(n_tensors)]
        data_offset = -(-self.pos // alignment) * alignment
        tensors = self.place_tensors(raw_infos, data_offset, alignment) if raw_infos else []
        return ParsedFile(self.path, version, alignment, data_offset, self.size, fields,
                          tensors, self.mapped)

    def check_version(self, version: int) -> None:
        if version in GGUF_SUPPORTED_VERSIONS:
            return
        if version & 0xFFFF == 0 and version != 0:
            self.fail(GGUFVersionError, f"big-endian GGUF (the version reads as {version:#010x}, "
                      f"i.e. {int.from_bytes(version.to_bytes(4, 'little'), 'big')} byte-swapped): "
                      "pyggml reads little-endian files only", "version", 4)
        if version == 1:
            self.fail(GGUFVersionError, "GGUF version 1 (32-bit counts) is no longer supported; "
                      "re-convert the model", "version", 4)
        self.fail(GGUFVersionError, f"unsupported GGUF version {version} (pyggml reads "
                  f"{' and '.join(map(str, GGUF_SUPPORTED_VERSIONS))})", "version", 4)

    def alignment(self, fields: dict[str, MetadataField]) -> int:
        """general.alignment: a u32 power of two, like llama.cpp and gguf-py insist."""
        field = fields.get("general.alignment")
        if field is None:
            return GGUF_DEFAULT_ALIGNMENT
        if field.type != GGUFValueType.UINT32:
            self.fail(GGUFMetadataError, f"must be UINT32, not {field.type.name}",
                      "general.alignment", field.offset)
        if field.value == 0 or field.value & (field.value - 1):
            self.fail(GGUFMetadataError, f"{field.value} is not a power of two",
                      "general.alignment", field.offset)
        return field.value

    # ----------------------------------------------------------------- metadata values

    def value_type(self, field: str) -> GGUFValueType:
        at = self.pos
        raw = self.unpack(_I32, field)
        try:
            return GGUFValueType(raw)
        except ValueError:
            self.fail(GGUFMetadataError, f"unknown value type {raw}", field, at)

    def value(self, field: str, at: int, depth: int = 0) -> MetadataField:
        """The value type and value of one key/value pair (at = offset of its key)."""
        vtype = self.value_type(field + ".type")
        if vtype == GGUFValueType.ARRAY:
            value, item_type = self.array(field, depth)
            return MetadataField(vtype, value, item_type, at)
        return MetadataField(vtype, self.scalar(vtype, field), None, at)

    def scalar(self, vtype: GGUFValueType, field: str):
        if vtype == GGUFValueType.STRING:
            return self.string(field)
        value = self.unpack(_SCALARS[vtype], field)
        return value != 0 if vtype == GGUFValueType.BOOL else value

    def array(self, field: str, depth: int):
        """(value, item_type) of an array: list, lazy sequence, or list of MetadataField."""
        item_type = self.value_type(field + ".item_type")
        n = self.count(field + ".count", _MIN_ITEM_BYTES[item_type], f"{item_type.name} items")
        if n > MAX_ARRAY_ITEMS:
            self.fail(GGUFMetadataError, f"array of {n} items, more than the limit of "
                      f"{MAX_ARRAY_ITEMS}", field + ".count", self.pos - 8)
        if item_type == GGUFValueType.STRING:
            return self.string_array(field, n), item_type
        if item_type == GGUFValueType.ARRAY:
            if depth + 1 >= MAX_ARRAY_DEPTH:
                self.fail(GGUFMetadataError, f"arrays nested more than {MAX_ARRAY_DEPTH} deep",
                          field + ".item_type", self.pos - 12)
            if n > MAX_NESTED_ITEMS:
                self.fail(GGUFMetadataError, f"array of {n} arrays, more than the limit of "
                          f"{MAX_NESTED_ITEMS}", field + ".count", self.pos - 8)
            inner = []
            for i in range(n):
                at = self.pos
                value, inner_type = self.array(f"{field}[{i}]", depth + 1)
                inner.append(MetadataField(GGUFValueType.ARRAY, value, inner_type, at))
            return inner, item_type
        dtype = np.dtype(VALUE_DTYPES[item_type])
        start = self.need(n * dtype.itemsize, field)
        values = np.frombuffer(self.data, dtype=dtype, count=n, offset=start)
        if item_type == GGUFValueType.BOOL:
            values = values != 0
        if n >= LAZY_MIN_ITEMS:
            return NumberArray(values), item_type
        return values.tolist(), item_type

    def string_array(self, field: str, n: int):
        """n strings: a list when few, else a StringArray found in bulk (see arrays.py)."""
        if n < LAZY_MIN_ITEMS:
            return [self.string(f"{field}[{i}]") for i in range(n)]
        start = self.pos
        try:
            bounds = find_string_bounds(np.frombuffer(self.data, dtype=np.uint8), start, n,
                                        MAX_STRING_LENGTH)
        except StringChainError as bad:
            what = (f"string of {bad.length} bytes, longer than the limit or than the "
                    f"{self.size - bad.offset - 8} bytes that remain" if bad.length >= 0 else
                    "string length field runs past the end of the file")
            raise GGUFTruncatedError(what, path=self.path, offset=bad.offset,
                                     field=f"{field}[{bad.index}]") from None
        end = int(bounds[-1])
        self.pos = end
        offsets = bounds - start                  # into the copied bytes: u32 suffices, mostly
        return StringArray(self.data[start:end],
                           offsets.astype(np.uint32) if end - start < 1 << 32 else offsets)

    # ----------------------------------------------------------------- tensor infos

    def tensor_info(self, i: int):
        """One tensor info as stored: (offset of the info, name, ne, type, relative offset)."""
        at = self.pos
        name = self.string(f"tensor[{i}].name", GGML_MAX_NAME - 1, GGUFTensorError)
        field = f"tensor[{i}] {name!r}"
        n_dims = self.unpack(_U32, field + ".n_dims")
        if n_dims > GGML_MAX_DIMS:
            self.fail(GGUFTensorError, f"{n_dims} dimensions, more than {GGML_MAX_DIMS}",
                      field + ".n_dims", self.pos - 4)
        ne_at = self.need(8 * n_dims, field + ".ne")
        ne = struct.unpack_from(f"<{n_dims}q", self.data, ne_at)
        for j, n in enumerate(ne):
            if n < 0:
                self.fail(GGUFTensorError, f"negative dimension {n}", f"{field}.ne[{j}]",
                          ne_at + 8 * j)
        ggml_type = self.unpack(_I32, field + ".type")
        rel_offset = self.unpack(_U64, field + ".offset")
        return at, name, ne, ggml_type, rel_offset

    def place_tensors(self, raw_infos, data_offset: int, alignment: int) -> list[TensorInfo]:
        """Check each tensor's type, size and place in the data section; build TensorInfo."""
        tensors, seen, extents = [], {}, []
        for i, (at, name, ne, ggml_type, rel_offset) in enumerate(raw_infos):
            field = f"tensor[{i}] {name!r}"
            if name in seen:
                self.fail(GGUFTensorError, f"duplicate tensor name (first at offset {seen[name]})",
                          field + ".name", at)
            seen[name] = at
            n_elements = 1
            for n in ne:
                n_elements *= n
            if n_elements >= 1 << 63:
                self.fail(GGUFTensorError, f"{n_elements} elements overflow int64", field + ".ne", at)
            nbytes = self.tensor_nbytes(ggml_type, ne, n_elements, field, at)
            if rel_offset % alignment:
                self.fail(GGUFTensorError, f"data offset {rel_offset} is not a multiple of the "
                          f"alignment {alignment}", field + ".offset", at)
            start = data_offset + rel_offset
            end = start + (nbytes or 0)
            if end > self.size or (nbytes is None and start > self.size):
                self.fail(GGUFTruncatedError, f"data [{start}, {end}) lies beyond the end of the "
                          f"file ({self.size} bytes): truncated?", field + ".offset", at)
            extents.append((start, end, i, at))
            tensors.append(TensorInfo(name, ggml_type, ne, n_elements, nbytes, 0, start))
        extents.sort()
        for (_, prev_end, prev, _), (start, _, i, at) in zip(extents, extents[1:]):
            if start < prev_end:
                self.fail(GGUFTensorError, f"data starts at {start}, inside tensor "
                          f"{raw_infos[prev][1]!r} which ends at {prev_end}",
                          f"tensor[{i}] {raw_infos[i][1]!r}.offset", at)
        return tensors

    def tensor_nbytes(self, ggml_type: int, ne, n_elements: int, field: str, at: int):
        """Bytes of the tensor's data, or None for a type id pyggml does not know."""
        if ggml_type < 0 or ggml_type in REMOVED_TYPES:
            self.fail(GGUFTensorError, f"invalid tensor type {ggml_type}"
                      f"{' (removed from ggml)' if ggml_type >= 0 else ''}", field + ".type", at)
        try:
            block_size, type_size = TYPE_TRAITS[GGMLType(ggml_type)]
        except (ValueError, KeyError):
            return None
        if ne and ne[0] % block_size:
            self.fail(GGUFTensorError, f"rows of {ne[0]} elements are not a whole number of "
                      f"{type_name(ggml_type)} blocks ({block_size} each)", field + ".ne[0]", at)
        nbytes = n_elements // block_size * type_size
        if nbytes >= 1 << 63:
            self.fail(GGUFTensorError, f"{nbytes} bytes of data overflow int64", field + ".ne", at)
        return nbytes

"""Write GGUF v3 files; split a model into shards; merge shards into one file.

    write_gguf(path, metadata, tensors)                      one file, written whole or not at all
    split_gguf(source, prefix, max_tensors=N | max_bytes=B)  shards named like llama.cpp's
    merge_gguf(any_shard, path)                              one file from a split set
    write_split(prefix, metadata, tensors, max_bytes=B)      metadata and tensors as shards

Outputs appear whole or not at all.  Each is written beside itself under a hidden
temporary name, ``.NAME.pyggml-PID-RANDOM.tmp`` (PID: the writing process; RANDOM:
8 hex digits), and renamed to NAME once complete; a split renames its shards only
when all of them are complete, so a set never appears in part.  On any exception,
Ctrl-C included (and SIGTERM/SIGHUP under the ``pyggml`` command, which turns them
into one), the temporaries and the files this call already renamed are removed.
A process killed outright (SIGKILL, a crash, power loss) leaves its temporaries;
the next write of the same NAME removes those whose PID no longer runs.

What ``write_gguf`` writes, in this order (the reader's docstring draws the layout):

    header        "GGUF" | version 3 | n_tensors u64 | n_kv u64
    metadata      in the order given, each value with its exact GGUF type
    tensor infos  in the order given; offset[i] = sum over k < i of PAD(nbytes[k])
    padding       zeros up to a multiple of ALIGN (general.alignment if given, else 32)
    data          each tensor's bytes, then zeros up to a multiple of ALIGN

Metadata values are either ``MetadataField`` (exact types: pass ``GGUFFile.fields``
to copy a file's metadata unchanged) or plain Python values, typed as gguf-py
types them: bool -> BOOL, int -> INT32 (INT64 or UINT64 if it does not fit),
float -> FLOAT32, str -> STRING, numpy scalars and 1-D arrays -> their dtype,
lists -> ARRAY with the item type inferred from the items (all items one kind).

Tensors are numpy arrays of a ggml dtype (float32 -> F32, float16 -> F16,
float64 -> F64, int8/16/32/64 -> I8/I16/I32/I64), or ``RawTensor(type, shape,
data)`` for any ggml type, quantized ones included, whose bytes are written as given.
``data`` may also be a function of no arguments that returns the bytes: it is called
when the tensor's turn to be written comes (``pyggml quantize`` makes each tensor
then, so that only one is in memory), and what it returns is checked like the rest.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import GGUFError, GGUFMetadataError, GGUFTensorError, UnsupportedTypeError, UsageError
from .arrays import NumberArray, StringArray
from ..ggml import TYPE_TRAITS, GGMLType, type_name
from .constants import (GGML_MAX_DIMS, GGML_MAX_NAME, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC,
                        VALUE_DTYPES, GGUFValueType)
from .reader import MetadataField
from .shards import SPLIT_COUNT, SPLIT_KEYS, SPLIT_NO, SPLIT_TENSORS_COUNT, GGUFFile, shard_path

GGUF_WRITE_VERSION = 3
COPY_CHUNK = 16 << 20                     # bytes per write call, so progress moves smoothly

V = GGUFValueType
_SCALAR_CODES = {V.UINT8: "B", V.INT8: "b", V.UINT16: "H", V.INT16: "h", V.UINT32: "I",
                 V.INT32: "i", V.FLOAT32: "f", V.BOOL: "?", V.UINT64: "Q", V.INT64: "q",
                 V.FLOAT64: "d"}
_DTYPE_VALUE_TYPES = {np.dtype(np.bool_): V.BOOL, **{np.dtype(dtype): vtype for vtype, dtype
                                                     in VALUE_DTYPES.items() if vtype != V.BOOL}}
_DTYPE_TENSOR_TYPES = {np.dtype(np.float32): GGMLType.F32, np.dtype(np.float16): GGMLType.F16,
                       np.dtype(np.float64): GGMLType.F64, np.dtype(np.int8): GGMLType.I8,
                       np.dtype(np.int16): GGMLType.I16, np.dtype(np.int32): GGMLType.I32,
                       np.dtype(np.int64): GGMLType.I64}
_U32, _I32, _U64 = struct.Struct("<I"), struct.Struct("<i"), struct.Struct("<Q")

Progress = Callable[[int], None]          # called with the number of bytes just written


class RawTensor(NamedTuple):
    """A tensor given as ggml bytes: type id, numpy-order shape, and exactly nbytes of data
    (anything with the buffer protocol: bytes, a uint8 array, a GGUFFile.raw() view), or
    a function of no arguments returning them, called when the tensor is written."""
    type: int
    shape: tuple[int, ...]
    data: Any


class _Tensor(NamedTuple):
    name: bytes
    type: int
    ne: tuple[int, ...]
    nbytes: int
    data: np.ndarray | Callable[[], Any]  # uint8, 1-D, exactly nbytes; or what makes it


def pad(n: int, alignment: int) -> int:
    """n rounded up to a multiple of alignment (ggml's GGML_PAD)."""
    return -(-n // alignment) * alignment


# ----------------------------------------------------------------------------- one file

def write_gguf(path, metadata: Mapping[str, Any], tensors: Mapping[str, Any], *,
               overwrite: bool = False, progress: Progress | None = None) -> Path:
    """Write a GGUF v3 file; returns its path.

    Everything is validated before the first byte is written; the file appears
    under ``path`` only when complete (see the module docstring), so an error or an
    interrupt never leaves half a model behind.  An existing file is replaced only
    with ``overwrite=True``.
    """
    path = Path(path)
    _refuse_existing([path], overwrite)
    return _write_all([_prepare(path, metadata, tensors)], progress)[0]


class _Prepared(NamedTuple):
    """A file checked and laid out, ready to write: its header bytes, then its tensors."""
    path: Path
    header: bytes
    entries: list[_Tensor]
    alignment: int


def _prepare(path: Path, metadata: Mapping[str, Any], tensors: Mapping[str, Any]) -> _Prepared:
    return _lay_out(path, metadata, [_tensor_entry(name, value, path)
                                     for name, value in tensors.items()])


def _lay_out(path: Path, metadata: Mapping[str, Any], entries: list[_Tensor]) -> _Prepared:
    fields = {_check_key(key, path): as_field(value, key, path) for key, value in metadata.items()}
    alignment = _alignment(fields, path)
    return _Prepared(path, _header(fields, entries, alignment, path), entries, alignment)


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    if not overwrite:
        for path in paths:
            if path.exists():
                raise UsageError(f"{path} already exists (use --force / overwrite=True to "
                                 "replace it)")


def _write_all(files: list[_Prepared], progress: Progress | None) -> list[Path]:
    """Write every file under its temporary name, then rename them all: the files appear
    together and complete, or (on any exception) not at all.  An OSError becomes a
    GGUFError naming the file."""
    temporaries: list[Path] = []
    n_renaming = 0                        # files[:n_renaming] have begun their rename
    current = files[0].path
    try:
        for file in files:
            current = file.path
            _remove_stale_temporaries(file.path)
            # listed before it exists, so that an interrupt inside open() is cleaned up too
            temporaries.append(_temporary_path(file.path))
            _write_file(temporaries[-1], file, progress)
        for file, temporary in zip(files, temporaries):
            current = file.path
            n_renaming += 1
            os.replace(temporary, file.path)
    except BaseException as err:
        for i, (file, temporary) in enumerate(zip(files, temporaries)):
            try:
                os.unlink(temporary)
            except FileNotFoundError:     # never created, or renamed (os.replace is atomic)
                if i < n_renaming:
                    _remove(file.path)
            except OSError:
                pass
        if isinstance(err, OSError):
            raise GGUFError(f"cannot write: {err.strerror or err}", path=current) from None
        raise
    return [file.path for file in files]


def _write_file(path: Path, file: _Prepared, progress: Progress | None) -> None:
    with open(path, "xb") as out:
        out.write(file.header)
        for entry in file.entries:
            _copy(out, _tensor_bytes(entry, path), progress)
            out.write(bytes(pad(entry.nbytes, file.alignment) - entry.nbytes))


def _copy(out, data: np.ndarray, progress: Progress | None) -> None:
    view = memoryview(data)
    for start in range(0, len(view), COPY_CHUNK):
        chunk = view[start:start + COPY_CHUNK]
        out.write(chunk)
        if progress:
            progress(len(chunk))


def _remove(path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


# ----------------------------------------------------------------------------- temporaries

def _temporary_path(path: Path) -> Path:
    """Where this process writes ``path`` until it is complete (see the module docstring)."""
    return path.with_name(f".{path.name}.pyggml-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of ``path`` whose writer no longer runs.

    Those of a live process are kept, even when its pid was reused by another program
    since: a leftover costs disk space, a wrong removal would cost a writer its output.
    """
    own = re.compile(rf"\.{re.escape(path.name)}\.pyggml-([1-9][0-9]*)-[0-9a-f]+\.tmp")
    try:
        names = os.listdir(path.parent)
    except OSError:                       # the folder cannot be listed: writing will say why
        return
    for name in names:
        match = own.fullmatch(name)
        if match and not _process_exists(int(match.group(1))):
            _remove(path.parent / name)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)                   # signal 0 sends nothing: it only asks
    except (ProcessLookupError, OverflowError):   # OverflowError: beyond any pid
        return False
    except PermissionError:               # it runs, as another user
        pass
    return True


def _header(fields: dict[str, MetadataField], entries: list[_Tensor], alignment: int,
            path: Path) -> bytes:
    out = [GGUF_MAGIC, _U32.pack(GGUF_WRITE_VERSION), _U64.pack(len(entries)),
           _U64.pack(len(fields))]
    for key, field in fields.items():
        _put_string(out, key, f"key {key!r}", path)
        out.append(_I32.pack(field.type))
        _put_value(out, field, f"metadata {key!r}", path)
    offset = 0
    for entry in entries:
        out += [_U64.pack(len(entry.name)), entry.name, _U32.pack(len(entry.ne)),
                struct.pack(f"<{len(entry.ne)}q", *entry.ne), _I32.pack(entry.type),
                _U64.pack(offset)]
        offset += pad(entry.nbytes, alignment)
    header = b"".join(out)
    return header + bytes(pad(len(header), alignment) - len(header))


# ----------------------------------------------------------------------------- metadata

def as_field(value, key: str = "value", path=None) -> MetadataField:
    """``value`` with its GGUF type: a MetadataField as is, a Python value typed as the
    module docstring says.  Raises GGUFMetadataError for values GGUF cannot hold."""
    if isinstance(value, MetadataField):
        return value
    vtype = _scalar_type(value)
    if vtype is not None:
        return MetadataField(vtype, value)
    if isinstance(value, StringArray):
        return MetadataField(V.ARRAY, value, V.STRING)
    if isinstance(value, (NumberArray, np.ndarray)):
        array = np.asarray(value)
        if array.ndim != 1 or array.dtype not in _DTYPE_VALUE_TYPES:
            raise GGUFMetadataError(f"cannot store a {array.ndim}-D {array.dtype} array",
                                    path=path, field=key)
        return MetadataField(V.ARRAY, array, _DTYPE_VALUE_TYPES[array.dtype])
    if isinstance(value, (list, tuple)):
        return MetadataField(V.ARRAY, value, _item_type(value, key, path))
    raise GGUFMetadataError(f"cannot store a {type(value).__name__} in GGUF", path=path, field=key)


def _scalar_type(value) -> GGUFValueType | None:
    if isinstance(value, (bool, np.bool_)):
        return V.BOOL
    if isinstance(value, np.generic):
        return _DTYPE_VALUE_TYPES.get(value.dtype)
    if isinstance(value, int):
        return _int_type([value])
    if isinstance(value, float):
        return V.FLOAT32
    if isinstance(value, str):
        return V.STRING
    return None


def _int_type(values) -> GGUFValueType | None:
    low, high = min(values), max(values)
    for vtype, lo, hi in ((V.INT32, -1 << 31, 1 << 31), (V.INT64, -1 << 63, 1 << 63),
                          (V.UINT64, 0, 1 << 64)):
        if lo <= low and high < hi:
            return vtype
    return None


def _item_type(items, key: str, path) -> GGUFValueType:
    """The one item type of a Python list (ints widen to INT64, ints with floats are FLOAT32)."""
    if not items:
        raise GGUFMetadataError("cannot infer the item type of an empty list; pass "
                                "MetadataField(GGUFValueType.ARRAY, [], item_type)", path=path,
                                field=key)
    kinds = set()
    for item in items:
        if isinstance(item, (list, tuple, np.ndarray, StringArray, NumberArray, MetadataField)):
            kinds.add(V.ARRAY)
        else:
            vtype = _scalar_type(item)
            if vtype is None:
                raise GGUFMetadataError(f"cannot store a {type(item).__name__} in an array",
                                        path=path, field=key)
            kinds.add(vtype)
    if len(kinds) == 1 and V.INT32 not in kinds and V.INT64 not in kinds:
        return kinds.pop()
    if kinds <= {V.INT32, V.INT64, V.UINT64}:
        vtype = _int_type(items)
        if vtype is not None:
            return vtype
    elif kinds <= {V.INT32, V.INT64, V.FLOAT32}:
        return V.FLOAT32
    raise GGUFMetadataError(f"items of different kinds ({', '.join(sorted(k.name for k in kinds))})"
                            " in one array", path=path, field=key)


def _check_key(key, path) -> str:
    if not isinstance(key, str) or not key:
        raise GGUFMetadataError(f"keys must be non-empty strings, not {key!r}", path=path)
    _utf8(key, GGUFMetadataError, path, f"key {key!r}")
    return key


def _utf8(text: str, error: type, path, where: str) -> bytes:
    """text as GGUF stores it; lone surrogates other than surrogateescape's cannot be."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as err:
        raise error(f"not encodable as UTF-8: {err.reason} at {err.start}", path=path,
                    field=where) from None


def _alignment(fields: dict[str, MetadataField], path) -> int:
    field = fields.get("general.alignment")
    if field is None:
        return GGUF_DEFAULT_ALIGNMENT
    value = field.value
    if field.type != V.UINT32 or not isinstance(value, (int, np.integer)) or value <= 0 \
            or value & (value - 1) or value >= 1 << 32:
        raise GGUFMetadataError(f"must be a UINT32 power of two, not {field.type.name} {value!r}",
                                path=path, field="general.alignment")
    return int(value)


def _put_string(out: list, text: str, where: str, path) -> None:
    data = _utf8(text, GGUFMetadataError, path, where)
    out += [_U64.pack(len(data)), data]


def _put_value(out: list, field: MetadataField, where: str, path) -> None:
    vtype, value = field.type, field.value
    try:
        if vtype == V.ARRAY:
            _put_array(out, field, where, path)
        elif vtype == V.STRING:
            _put_string(out, value, where, path)
        else:
            out.append(struct.pack("<" + _SCALAR_CODES[vtype], value))
    except (struct.error, OverflowError, TypeError, AttributeError, KeyError, ValueError) as err:
        raise GGUFMetadataError(f"cannot store {_short(value)} as {getattr(vtype, 'name', vtype)}: "
                                f"{err}", path=path, field=where) from None


def _put_array(out: list, field: MetadataField, where: str, path) -> None:
    items, item_type = field.value, GGUFValueType(field.item_type)
    out += [_I32.pack(item_type), _U64.pack(len(items))]
    if item_type == V.STRING:
        if isinstance(items, StringArray):
            out.append(items.encoded())
        else:
            for i, text in enumerate(items):
                _put_string(out, text, f"{where}[{i}]", path)
    elif item_type == V.ARRAY:
        for i, inner in enumerate(items):
            inner = as_field(inner, f"{where}[{i}]", path)
            if inner.type != V.ARRAY:
                raise GGUFMetadataError(f"item is {inner.type.name}, not an ARRAY", path=path,
                                        field=f"{where}[{i}]")
            _put_array(out, inner, f"{where}[{i}]", path)
    else:
        dtype = np.dtype(VALUE_DTYPES[item_type])
        if isinstance(items, (NumberArray, np.ndarray)) and np.asarray(items).dtype == \
                (np.dtype(np.bool_) if item_type == V.BOOL else dtype):
            out.append(np.ascontiguousarray(items).view(dtype).tobytes())
        else:
            out.append(struct.pack(f"<{len(items)}{_SCALAR_CODES[item_type]}", *items))


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


# ----------------------------------------------------------------------------- tensors

def _tensor_entry(name, value, path) -> _Tensor:
    """(name, type, ne, bytes) of one tensor, every property checked against ggml's rules."""
    if not isinstance(name, str):
        raise GGUFTensorError(f"tensor names must be strings, not {name!r}", path=path)
    encoded = _utf8(name, GGUFTensorError, path, f"tensor {name!r}")
    if not encoded or len(encoded) >= GGML_MAX_NAME:
        raise GGUFTensorError(f"name must be 1 to {GGML_MAX_NAME - 1} bytes, not {len(encoded)}",
                              path=path, field=f"tensor {name!r}")
    if isinstance(value, RawTensor):
        ggml_type, shape = int(value.type), tuple(int(n) for n in value.shape)
        data = value.data if callable(value.data) else _as_bytes(value.data)
    elif isinstance(value, (np.ndarray, np.generic)):
        value = np.asarray(value)
        dtype = value.dtype.newbyteorder("=") if value.dtype.byteorder == ">" else value.dtype
        if dtype not in _DTYPE_TENSOR_TYPES:
            raise GGUFTensorError(f"no ggml type for numpy dtype {value.dtype}; give a RawTensor",
                                  path=path, field=f"tensor {name!r}")
        ggml_type, shape = _DTYPE_TENSOR_TYPES[dtype], value.shape
        data = np.ascontiguousarray(value, dtype=dtype.newbyteorder("<")).reshape(-1).view(np.uint8)
    else:
        raise GGUFTensorError(f"expected a numpy array or RawTensor, not {type(value).__name__}",
                              path=path, field=f"tensor {name!r}")
    ne = shape[::-1]
    try:
        block_size, type_size = TYPE_TRAITS[GGMLType(ggml_type)]
    except (ValueError, KeyError):
        raise UnsupportedTypeError(f"{path}: tensor {name!r}: ggml type {ggml_type} "
                                   f"({type_name(ggml_type)}) has no known size") from None
    n_elements = 1
    for n in ne:
        n_elements *= n
    nbytes = n_elements // block_size * type_size
    problem = (f"{len(ne)} dimensions, more than {GGML_MAX_DIMS}" if len(ne) > GGML_MAX_DIMS else
               f"negative dimension in {shape}" if any(n < 0 for n in ne) else
               f"rows of {ne[0]} are not whole {type_name(ggml_type)} blocks of {block_size}"
               if ne and ne[0] % block_size else None)
    if problem is None and not callable(data):
        problem = _size_problem(data, nbytes)
    if problem:
        raise GGUFTensorError(problem, path=path, field=f"tensor {name!r}")
    return _Tensor(encoded, int(ggml_type), ne, nbytes, data)


def _as_bytes(data) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        data = np.frombuffer(data, dtype=np.uint8)
    return np.ascontiguousarray(data).reshape(-1).view(np.uint8)


def _size_problem(data: np.ndarray, nbytes: int) -> str | None:
    return None if data.size == nbytes else f"{data.size} bytes of data, expected {nbytes}"


def _tensor_bytes(entry: _Tensor, path: Path) -> np.ndarray:
    """A tensor's bytes; made now if they were given as a function, and checked."""
    if not callable(entry.data):
        return entry.data
    data = _as_bytes(entry.data())
    problem = _size_problem(data, entry.nbytes)
    if problem:
        raise GGUFTensorError(problem, path=path, field=f"tensor {entry.name.decode(errors='replace')!r}")
    return data


def _require_sizes(model: GGUFFile) -> None:
    """Tensors of unknown types have no known size, so they cannot be copied."""
    for info in model.tensors.values():
        if not info.supported:
            raise UnsupportedTypeError(f"{model.shards[info.shard].path}: tensor {info.name!r} "
                                       f"has ggml type {info.type}, whose size pyggml does not "
                                       "know, so it cannot be copied")


def _raw_tensors(model: GGUFFile, names) -> dict[str, RawTensor]:
    """Zero-copy RawTensors of a model's tensors (unknown types cannot be copied: no size)."""
    return {name: RawTensor(model.tensors[name].type, model.tensors[name].shape, model.raw(name))
            for name in names}


# ----------------------------------------------------------------------------- split and merge

@contextlib.contextmanager
def _opened(source):
    """A GGUFFile for ``source``: used as given, or opened (and closed) here from a path."""
    if isinstance(source, GGUFFile):
        yield source
    else:
        with GGUFFile(source) as model:
            yield model


def plan_split(nbytes: list[int], *, max_tensors: int = 0, max_bytes: int = 0,
               metadata_only_first: bool = False) -> list[list[int]]:
    """Group tensor indices into shards with llama.cpp gguf-split's rules.

    A shard is closed before tensor i when it already holds tensors and either
    holds max_tensors of them or curr + PAD(nbytes[i], 32) > max_bytes, where curr
    counts the padded bytes already in the shard (so a tensor larger than
    max_bytes gets a shard of its own).  ``metadata_only_first`` puts no tensors
    in shard 1 (gguf-split --no-tensor-first-split).
    """
    if (max_tensors > 0) == (max_bytes > 0):
        raise UsageError("split by exactly one of max_tensors or max_bytes (a positive number)")
    groups: list[list[int]] = [[]]
    if metadata_only_first and nbytes:
        groups.append([])
    size = 0
    for i, n in enumerate(nbytes):
        padded = pad(n, GGUF_DEFAULT_ALIGNMENT)
        group = groups[-1]
        if group and ((max_tensors and len(group) >= max_tensors) or
                      (max_bytes and size + padded > max_bytes)):
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += padded
    return groups


def split_gguf(source, prefix, *, max_tensors: int = 0, max_bytes: int = 0,
               metadata_only_first: bool = False, overwrite: bool = False,
               progress: Progress | None = None) -> list[Path]:
    """Split a model (path or GGUFFile; itself a file or split set) into shards
    ``prefix-00001-of-0000N.gguf`` ... (a trailing ".gguf" on prefix is dropped):
    write_split of its metadata and tensors."""
    with _opened(source) as model:
        _require_sizes(model)
        return write_split(prefix, model.fields, _raw_tensors(model, model.tensors),
                           max_tensors=max_tensors, max_bytes=max_bytes,
                           metadata_only_first=metadata_only_first, overwrite=overwrite,
                           progress=progress)


def write_split(prefix, metadata: Mapping[str, Any], tensors: Mapping[str, Any], *,
                max_tensors: int = 0, max_bytes: int = 0, metadata_only_first: bool = False,
                overwrite: bool = False, progress: Progress | None = None) -> list[Path]:
    """Write metadata and tensors (as write_gguf takes them) as shards
    ``prefix-00001-of-0000N.gguf`` ... (a trailing ".gguf" on prefix is dropped), grouped
    by plan_split, as llama.cpp's gguf-split does.

    Shard 1 gets all metadata (split.* keys given are dropped); every shard gets split.no
    (u16), split.count (u16) and split.tensors.count (i32).  Returns the shard paths.
    Every shard is checked before the first byte is written, and the set appears whole
    or not at all (see the module docstring).
    """
    prefix = str(prefix)[:-5] if str(prefix).endswith(".gguf") else str(prefix)
    entries = [_tensor_entry(name, value, prefix) for name, value in tensors.items()]
    groups = plan_split([entry.nbytes for entry in entries], max_tensors=max_tensors,
                        max_bytes=max_bytes, metadata_only_first=metadata_only_first)
    count = len(groups)
    if count > 0xFFFF:
        raise UsageError(f"{count} shards, more than split.count (u16) can hold")
    paths = [shard_path(prefix, i, count) for i in range(count)]
    _refuse_existing(paths, overwrite)
    base = {key: field for key, field in metadata.items() if key not in SPLIT_KEYS}
    shards = []
    for i, group in enumerate(groups):
        split_keys = {SPLIT_NO: MetadataField(V.UINT16, i),
                      SPLIT_COUNT: MetadataField(V.UINT16, count),
                      SPLIT_TENSORS_COUNT: MetadataField(V.INT32, len(entries))}
        shards.append(_lay_out(paths[i], {**base, **split_keys} if i == 0 else split_keys,
                               [entries[j] for j in group]))
    return _write_all(shards, progress)


def merge_gguf(source, path, *, overwrite: bool = False, progress: Progress | None = None) -> Path:
    """Write a model given by any shard (or a GGUFFile) as one file: shard 1's metadata
    without the split.* keys, then every tensor in shard order."""
    with _opened(source) as model:
        _require_sizes(model)
        metadata = {key: field for key, field in model.fields.items() if key not in SPLIT_KEYS}
        return write_gguf(path, metadata, _raw_tensors(model, model.tensors),
                          overwrite=overwrite, progress=progress)

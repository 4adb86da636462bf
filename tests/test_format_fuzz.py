"""Property tests for pyggml.format (hypothesis).

1. Round trip: random valid metadata (every value type, arrays, nested arrays, large
   lazy arrays, custom alignment) and random tensor sets (float and quantized types,
   raw bytes) written by pyggml read back identically with pyggml AND with gguf-py.
2. Hostile input: random byte flips, truncations and hostile values written over
   the length/count fields of valid files (single files and one shard of a split
   set) raise only GGUFError -- no other exception, no hang, no huge allocation --
   and whatever still opens can be read in full.

The default run makes PYGGML_FUZZ_EXAMPLES = 2000 hostile examples (a few tens of
seconds) and a tenth as many round trips.  For a long local run:

    PYGGML_FUZZ_EXAMPLES=100000 .venv/bin/python -m pytest tests/test_format_fuzz.py -q
"""
from __future__ import annotations

import os
import struct

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyggml
from format_bytes import length_field_offsets
from pyggml.errors import GGUFError, UnsupportedTypeError
from pyggml.format.arrays import NumberArray, StringArray
from pyggml.format.constants import GGUFValueType as V
from pyggml.format.reader import MetadataField
from pyggml.format.writer import RawTensor, split_gguf, write_gguf
from pyggml.ggml import TYPE_TRAITS, GGMLType

FUZZ_EXAMPLES = int(os.environ.get("PYGGML_FUZZ_EXAMPLES", "2000"))
ROUND_TRIPS = max(100, FUZZ_EXAMPLES // 10)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])

# ----------------------------------------------------------------------------- strategies

INT_RANGES = {V.UINT8: (0, 2**8 - 1), V.INT8: (-2**7, 2**7 - 1), V.UINT16: (0, 2**16 - 1),
              V.INT16: (-2**15, 2**15 - 1), V.UINT32: (0, 2**32 - 1), V.INT32: (-2**31, 2**31 - 1),
              V.UINT64: (0, 2**64 - 1), V.INT64: (-2**63, 2**63 - 1)}
SCALARS = {**{t: st.integers(lo, hi) for t, (lo, hi) in INT_RANGES.items()},
           V.FLOAT32: st.floats(width=32, allow_nan=False), V.FLOAT64: st.floats(allow_nan=False),
           V.BOOL: st.booleans(), V.STRING: st.text(max_size=12)}
NUMPY = {V.UINT8: np.uint8, V.INT8: np.int8, V.UINT16: np.uint16, V.INT16: np.int16,
         V.UINT32: np.uint32, V.INT32: np.int32, V.UINT64: np.uint64, V.INT64: np.int64,
         V.FLOAT32: np.float32, V.FLOAT64: np.float64, V.BOOL: np.bool_}


def scalar_field(vtype):
    return SCALARS[vtype].map(lambda v: MetadataField(vtype, v))


def small_array_field(item_type):
    return st.lists(SCALARS[item_type], max_size=6).map(lambda v: MetadataField(V.ARRAY, v, item_type))


@st.composite
def large_array_field(draw):
    """>= 1024 items, so that the reader takes its bulk (lazy) path."""
    n = draw(st.integers(1024, 1300))
    item_type = draw(st.sampled_from([V.STRING, V.STRING, V.INT32, V.FLOAT32, V.UINT8, V.BOOL]))
    if item_type == V.STRING:
        pool = draw(st.lists(st.text(max_size=6), min_size=1, max_size=8))
        return MetadataField(V.ARRAY, [pool[i % len(pool)] for i in range(n)], item_type)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    raw = rng.integers(0, 256, size=n * np.dtype(NUMPY[item_type]).itemsize, dtype=np.uint8)
    values = raw.view(NUMPY[item_type]) if item_type != V.BOOL else raw % 2 == 1
    if item_type == V.FLOAT32:
        values = np.where(np.isnan(values), np.float32(0.5), values)
    return MetadataField(V.ARRAY, values.tolist(), item_type)


any_item_type = st.sampled_from(list(SCALARS))
flat_field = st.one_of(any_item_type.flatmap(scalar_field), any_item_type.flatmap(small_array_field))
nested_field = st.lists(any_item_type.flatmap(small_array_field), max_size=3).map(
    lambda inner: MetadataField(V.ARRAY, inner, V.ARRAY))
field_value = st.one_of(flat_field, flat_field, nested_field, large_array_field())
keys = st.text(min_size=1, max_size=16).filter(lambda k: k != "general.alignment"
                                               and not k.startswith("split."))

TENSOR_TYPES = [GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.I8, GGMLType.I32,
                GGMLType.F64, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_K, GGMLType.Q6_K]


@st.composite
def tensor_set(draw):
    names = draw(st.lists(st.text(min_size=1, max_size=15), unique=True, max_size=6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    tensors = {}
    for name in names:
        ggml_type = draw(st.sampled_from(TENSOR_TYPES))
        block_size, type_size = TYPE_TRAITS[ggml_type]
        shape = draw(st.lists(st.integers(0, 3), min_size=0, max_size=3))
        shape = tuple(shape) + (block_size * draw(st.integers(0, 3)),)
        n_bytes = int(np.prod(shape)) // block_size * type_size
        tensors[name] = RawTensor(ggml_type, shape, rng.integers(0, 256, n_bytes, dtype=np.uint8))
    return tensors


# ----------------------------------------------------------------------------- round trip

def gguf_py_value(field: gguf.ReaderField):
    if field.types[0] == gguf.GGUFValueType.ARRAY and field.types[-1] != gguf.GGUFValueType.STRING:
        return [field.contents(i) for i in range(len(field.data))]
    return field.contents()


@settings(max_examples=ROUND_TRIPS, **SETTINGS)
@given(metadata=st.dictionaries(keys, field_value, max_size=8), tensors=tensor_set(),
       alignment=st.sampled_from([None, 1, 8, 64, 256]))
def test_round_trip_through_pyggml_and_gguf_py(tmp_path_factory, metadata, tensors, alignment):
    if alignment is not None:
        metadata["general.alignment"] = MetadataField(V.UINT32, alignment)
    path = write_gguf(tmp_path_factory.getbasetemp() / "round_trip.gguf", metadata, tensors,
                      overwrite=True)
    with pyggml.open(path) as f:
        assert list(f.fields) == list(metadata)
        for key, field in metadata.items():
            got = f.fields[key]
            assert (got.type, got.item_type) == (field.type, field.item_type), key
            assert got.to_python() == field.to_python(), key
            if field.item_type == V.ARRAY:
                assert [i.item_type for i in got.value] == [i.item_type for i in field.value]
            if len(field.to_python() if field.type == V.ARRAY else ()) >= 1024:
                assert isinstance(got.value, (StringArray, NumberArray))
        assert list(f.tensors) == list(tensors)
        reader = gguf.GGUFReader(path)
        for key, field in metadata.items():
            theirs = reader.fields[key]
            assert theirs.types[0] == field.type, key
            if field.item_type != V.ARRAY:
                assert gguf_py_value(theirs) == field.to_python(), key
        assert [t.name for t in reader.tensors] == list(tensors)
        for theirs in reader.tensors:
            info, given_tensor = f.tensors[theirs.name], tensors[theirs.name]
            assert info.type == int(theirs.tensor_type) == given_tensor.type
            assert info.shape == tuple(given_tensor.shape)
            assert info.ne == tuple(int(n) for n in theirs.shape)
            assert info.offset == theirs.data_offset
            assert np.array_equal(f.raw(theirs.name), given_tensor.data)
            assert np.array_equal(np.asarray(theirs.data).reshape(-1).view(np.uint8), given_tensor.data)
        del reader


# ----------------------------------------------------------------------------- hostile input

SCALARS_EXAMPLE = {V.UINT8: 200, V.INT8: -5, V.UINT16: 60000, V.INT16: -2, V.UINT32: 7,
                   V.INT32: -7, V.FLOAT32: 0.5, V.BOOL: True, V.STRING: "héllo",
                   V.UINT64: 2**63, V.INT64: -1, V.FLOAT64: 0.25}


def _rich_file() -> bytes:
    fields = {f"s.{t.name}": MetadataField(t, SCALARS_EXAMPLE[t]) for t in SCALARS_EXAMPLE}
    fields.update({f"a.{t.name}": MetadataField(V.ARRAY, [SCALARS_EXAMPLE[t]] * 3, t)
                   for t in SCALARS_EXAMPLE})
    fields["nested"] = MetadataField(V.ARRAY, [MetadataField(V.ARRAY, [1, 2], V.INT16),
                                               MetadataField(V.ARRAY, ["x"], V.STRING)], V.ARRAY)
    fields["general.alignment"] = MetadataField(V.UINT32, 64)
    tensors = {"f32": np.arange(12, dtype=np.float32).reshape(3, 4),
               "q4k": RawTensor(GGMLType.Q4_K, (2, 256), np.arange(288, dtype=np.uint8)),
               "future": np.zeros(8, np.float32)}
    return _write_bytes(fields, tensors, patch_type={"future": 77})


def _lazy_file() -> bytes:
    fields = {"tokens": [f"t{i}" for i in range(1100)], "types": np.arange(1100, dtype=np.int32),
              "merges": [f"a{i} b" for i in range(1030)]}
    return _write_bytes(fields, {"w": np.ones((2, 32), np.float16), "b": np.zeros(3, np.float32)})


def _gguf_py_file() -> bytes:
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/g.gguf"
        writer = gguf.GGUFWriter(path, "llama")
        writer.add_block_count(2)
        writer.add_token_list(["<s>", "a", "b"])
        writer.add_token_scores([0.0, -1.0, -2.0])
        writer.add_tensor("w", np.ones((4, 32), np.float32))
        writer.add_tensor("q", np.zeros((2, 34), np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return open(path, "rb").read()


def _write_bytes(fields, tensors, patch_type=None) -> bytes:
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        path = write_gguf(f"{folder}/x.gguf", fields, tensors)
        data = bytearray(path.read_bytes())
    for name, type_id in (patch_type or {}).items():       # forge an unknown tensor type id
        at = data.index(struct.pack("<Q", len(name)) + name.encode())
        n_dims = struct.unpack_from("<I", data, at + 8 + len(name))[0]
        struct.pack_into("<i", data, at + 8 + len(name) + 4 + 8 * n_dims, type_id)
    return bytes(data)


BASES = {"rich": _rich_file(), "lazy": _lazy_file(), "gguf-py": _gguf_py_file()}
LENGTH_FIELDS = {name: length_field_offsets(data) for name, data in BASES.items()}
HOSTILE_U64 = [0, 1, 7, 8, 9, 0xFF, 0x100, 0xFFFF, 0x10000, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
               2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1]


@st.composite
def mutation(draw):
    """(base name, mutated bytes) by one of: byte flips, truncation, a hostile length."""
    name = draw(st.sampled_from(sorted(BASES)))
    data = bytearray(BASES[name])
    kind = draw(st.sampled_from(["flip", "truncate", "length", "length"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "truncate":
        del data[draw(st.integers(0, len(data) - 1)):]
    else:
        at = draw(st.sampled_from(LENGTH_FIELDS[name]))
        old = struct.unpack_from("<Q", data, at)[0]
        new = draw(st.one_of(st.sampled_from(HOSTILE_U64), st.integers(0, 2**64 - 1),
                             st.integers(-16, 16).map(lambda d: (old + d) % 2**64),
                             st.just(len(data))))
        struct.pack_into("<Q", data, at, new)
    return name, bytes(data)


def read_everything(path) -> None:
    """Open and touch every value and tensor: only GGUFError may come out."""
    try:
        with pyggml.open(path) as f:
            for field in f.fields.values():
                value = field.to_python()
                if isinstance(value, (StringArray, NumberArray)):
                    value.tolist()
                    value[len(value) - 1]
            for name, info in f.tensors.items():
                if info.supported:
                    assert f.raw(name).size == info.nbytes
                else:
                    with pytest.raises(UnsupportedTypeError):
                        f.raw(name)
    except GGUFError:
        pass


@settings(max_examples=FUZZ_EXAMPLES, **SETTINGS)
@given(case=mutation())
def test_hostile_bytes_raise_only_gguf_errors(tmp_path_factory, case):
    path = tmp_path_factory.getbasetemp() / "hostile.gguf"
    path.write_bytes(case[1])
    read_everything(path)


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_shards")
    src = folder / "src.gguf"
    src.write_bytes(BASES["lazy"])
    paths = split_gguf(src, folder / "set", max_tensors=1, metadata_only_first=True)
    return {p: p.read_bytes() for p in paths}


@settings(max_examples=max(100, FUZZ_EXAMPLES // 10), **SETTINGS)
@given(data=st.data())
def test_hostile_shard_raises_only_gguf_errors(shard_set, data):
    paths = sorted(shard_set)
    for path, original in shard_set.items():
        path.write_bytes(original)
    victim = data.draw(st.sampled_from(paths))
    original = bytearray(shard_set[victim])
    if data.draw(st.booleans()):
        del original[data.draw(st.integers(0, len(original) - 1)):]
    else:
        at = data.draw(st.sampled_from(length_field_offsets(bytes(original))))
        struct.pack_into("<Q", original, at, data.draw(st.sampled_from(HOSTILE_U64)))
    victim.write_bytes(bytes(original))
    read_everything(data.draw(st.sampled_from(paths)))

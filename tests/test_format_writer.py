"""pyggml.format.writer: exact value types, tensors as floats or raw blocks, gguf-py
reading what we write, split plans by gguf-split's rules, refusals before any byte
is written, and no half-written file ever under the final name."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

import pyggml
from pyggml.errors import GGUFMetadataError, GGUFTensorError, UnsupportedTypeError, UsageError
from pyggml.format.arrays import NumberArray, StringArray
from pyggml.format.constants import GGUFValueType as V
from pyggml.format.reader import MetadataField
from pyggml.format.writer import RawTensor, as_field, plan_split, write_gguf
from pyggml.ggml import GGMLType


def gguf_py_value(field: gguf.ReaderField):
    if field.types[0] == gguf.GGUFValueType.ARRAY and field.types[-1] != gguf.GGUFValueType.STRING:
        return [field.contents(i) for i in range(len(field.data))]
    return field.contents()


def test_exact_types_round_trip_and_gguf_py_agrees(tmp_path):
    fields = {
        "u8": MetadataField(V.UINT8, 255), "i8": MetadataField(V.INT8, -1),
        "u16": MetadataField(V.UINT16, 7), "i16": MetadataField(V.INT16, -300),
        "u32": MetadataField(V.UINT32, 2**32 - 1), "i32": MetadataField(V.INT32, 5),
        "f32": MetadataField(V.FLOAT32, 0.1), "bool": MetadataField(V.BOOL, True),
        "str": MetadataField(V.STRING, "héllo"), "u64": MetadataField(V.UINT64, 2**64 - 1),
        "i64": MetadataField(V.INT64, -2**63), "f64": MetadataField(V.FLOAT64, 0.1),
        "a_u16": MetadataField(V.ARRAY, [1, 2, 3], V.UINT16),
        "a_str": MetadataField(V.ARRAY, ["x", "", "ÿ"], V.STRING),
        "a_bool": MetadataField(V.ARRAY, [True, False], V.BOOL),
        "a_f64": MetadataField(V.ARRAY, [1.5, -2.25], V.FLOAT64),
        "a_empty": MetadataField(V.ARRAY, [], V.INT8),
    }
    path = write_gguf(tmp_path / "t.gguf", fields, {})
    with pyggml.open(path) as f:
        for key, field in fields.items():
            got = f.fields[key]
            assert (got.type, got.item_type) == (field.type, field.item_type), key
        assert f.metadata["f32"] == float(np.float32(0.1)) and f.metadata["f64"] == 0.1
        assert f.metadata["u64"] == 2**64 - 1 and f.metadata["a_str"] == ["x", "", "ÿ"]
    reader = gguf.GGUFReader(path)
    for key, field in fields.items():
        assert int(reader.fields[key].types[0]) == field.type, key
        expected = float(np.float32(0.1)) if key == "f32" else field.value
        assert gguf_py_value(reader.fields[key]) == expected, key


def test_python_values_are_typed_like_gguf_py(tmp_path):
    metadata = {"int": 3, "big": 2**40, "huge": 2**63, "neg": -2**40, "float": 0.5, "flag": False,
                "text": "t", "ints": [1, 2], "wide": [1, 2**33], "mixed": [1, 2.5],
                "strs": ["a", "b"], "nested": [[1, 2], ["x"]], "np_u16": np.uint16(9),
                "np_array": np.arange(3, dtype=np.int16), "np_f64": np.float64(0.25)}
    expected = {"int": (V.INT32, None), "big": (V.INT64, None), "huge": (V.UINT64, None),
                "neg": (V.INT64, None), "float": (V.FLOAT32, None), "flag": (V.BOOL, None),
                "text": (V.STRING, None), "ints": (V.ARRAY, V.INT32), "wide": (V.ARRAY, V.INT64),
                "mixed": (V.ARRAY, V.FLOAT32), "strs": (V.ARRAY, V.STRING),
                "nested": (V.ARRAY, V.ARRAY), "np_u16": (V.UINT16, None),
                "np_array": (V.ARRAY, V.INT16), "np_f64": (V.FLOAT64, None)}
    with pyggml.open(write_gguf(tmp_path / "t.gguf", metadata, {})) as f:
        for key, (vtype, item_type) in expected.items():
            assert (f.fields[key].type, f.fields[key].item_type) == (vtype, item_type), key
        assert f.metadata["nested"] == [[1, 2], ["x"]]
        assert [inner.item_type for inner in f.fields["nested"].value] == [V.INT32, V.STRING]
        assert f.metadata["np_array"] == [0, 1, 2] and f.metadata["mixed"] == [1.0, 2.5]


def test_lazy_arrays_are_written_back_exactly(tmp_path):
    strings = [f"t{i}\udcff" for i in range(2000)]               # with a non-UTF-8 byte each
    metadata = {"s": StringArray.from_strings(strings),
                "n": NumberArray(np.arange(2000, dtype=np.uint32)),
                "b": MetadataField(V.ARRAY, NumberArray(np.arange(1500) % 3 == 0), V.BOOL)}
    first = write_gguf(tmp_path / "a.gguf", metadata, {})
    with pyggml.open(first) as f:
        assert f.metadata["s"] == strings and f.fields["n"].item_type == V.UINT32
        assert f.metadata["b"] == [i % 3 == 0 for i in range(1500)]
        second = write_gguf(tmp_path / "b.gguf", f.fields, {})
    assert first.read_bytes() == second.read_bytes()


def test_tensors_from_floats_and_raw_blocks(tmp_path):
    rng = np.random.default_rng(0)
    w32 = rng.standard_normal((3, 64), dtype=np.float32)
    w16 = rng.standard_normal((2, 32)).astype(np.float16)
    big_endian = np.arange(4, dtype=">i4")
    q4k = rng.integers(0, 256, size=(2, 144), dtype=np.uint8)      # 2 rows of one Q4_K block
    tensors = {"w32": w32, "w16": w16, "be": big_endian, "scalar": np.array(7.0, np.float32),
               "q4k": RawTensor(GGMLType.Q4_K, (2, 256), q4k),
               "bytes": RawTensor(GGMLType.Q8_0, (32,), bytes(34))}
    path = write_gguf(tmp_path / "t.gguf", {"general.alignment": MetadataField(V.UINT32, 64)}, tensors)
    reader = gguf.GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    with pyggml.open(path) as f:
        assert list(f.tensors) == list(tensors)
        assert f.shards[0].alignment == 64 and all(t.offset % 64 == 0 for t in f.tensors.values())
        assert np.array_equal(f.raw("w32").view(np.float32).reshape(3, 64), w32)
        assert np.array_equal(f.raw("w16").view(np.float16).reshape(2, 32), w16)
        assert f.raw("be").view("<i4").tolist() == [0, 1, 2, 3]
        assert f.tensors["scalar"].shape == () and f.raw("scalar").view(np.float32)[0] == 7
        assert f.tensors["q4k"].shape == (2, 256) and np.array_equal(f.raw("q4k"), q4k.reshape(-1))
        for name, info in f.tensors.items():
            theirs = by_name[name]
            assert int(theirs.tensor_type) == info.type and theirs.data_offset == info.offset
            assert tuple(int(n) for n in theirs.shape) == info.ne
            assert np.array_equal(np.asarray(theirs.data).reshape(-1).view(np.uint8), f.raw(name))


@pytest.mark.parametrize("metadata, match", [
    ({"k": MetadataField(V.UINT8, 300)}, "cannot store 300 as UINT8"),
    ({"k": MetadataField(V.INT32, 1.5)}, "as INT32"),
    ({"k": MetadataField(V.FLOAT32, 1e300)}, "as FLOAT32"),
    ({"k": MetadataField(V.STRING, 5)}, "as STRING"),
    ({"k": MetadataField(V.ARRAY, [1, 256], V.UINT8)}, "as ARRAY"),
    ({"k": MetadataField(V.ARRAY, [1], None)}, "as ARRAY"),
    ({"k": []}, "empty list"),
    ({"k": [1, "a"]}, "different kinds"),
    ({"k": {"a": 1}}, "cannot store a dict"),
    ({"k": np.zeros((2, 2))}, "2-D"),
    ({"": 1}, "non-empty"),
    ({"general.alignment": 64}, "UINT32 power of two"),
    ({"general.alignment": MetadataField(V.UINT32, 48)}, "UINT32 power of two"),
])
def test_bad_metadata_is_refused_before_writing(tmp_path, metadata, match):
    with pytest.raises(GGUFMetadataError, match=match):
        write_gguf(tmp_path / "t.gguf", metadata, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tensors, error, match", [
    ({"t": np.zeros(3, np.complex64)}, GGUFTensorError, "no ggml type"),
    ({"t": [1.0]}, GGUFTensorError, "numpy array or RawTensor"),
    ({"n" * 64: np.zeros(1, np.float32)}, GGUFTensorError, "1 to 63 bytes"),
    ({"": np.zeros(1, np.float32)}, GGUFTensorError, "1 to 63 bytes"),
    ({"t": np.zeros((1, 1, 1, 1, 1), np.float32)}, GGUFTensorError, "5 dimensions"),
    ({"t": RawTensor(GGMLType.Q4_0, (2, 48), bytes(54))}, GGUFTensorError, "not whole Q4_0 blocks"),
    ({"t": RawTensor(GGMLType.Q4_0, (2, 64), bytes(71))}, GGUFTensorError, "71 bytes of data, expected 72"),
    ({"t": RawTensor(99, (4,), bytes(4))}, UnsupportedTypeError, "type 99"),
])
def test_bad_tensors_are_refused_before_writing(tmp_path, tensors, error, match):
    with pytest.raises(error, match=match):
        write_gguf(tmp_path / "t.gguf", {}, tensors)
    assert list(tmp_path.iterdir()) == []


def test_text_that_utf8_cannot_encode_is_refused(tmp_path):
    with pytest.raises(GGUFMetadataError, match="UTF-8"):
        write_gguf(tmp_path / "t.gguf", {"k": "\ud800"}, {})
    with pytest.raises(GGUFMetadataError, match="UTF-8"):
        write_gguf(tmp_path / "t.gguf", {"\ud800": 1}, {})
    with pytest.raises(GGUFTensorError, match="UTF-8"):
        write_gguf(tmp_path / "t.gguf", {}, {"\ud800": np.zeros(1, np.float32)})
    assert list(tmp_path.iterdir()) == []


def test_no_silent_overwrite_and_no_partial_file(tmp_path):
    path = tmp_path / "t.gguf"
    write_gguf(path, {"a": 1}, {})
    with pytest.raises(UsageError, match="already exists"):
        write_gguf(path, {"a": 2}, {})
    with pyggml.open(path) as f:
        assert f.metadata == {"a": 1}

    def interrupt(n):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        write_gguf(path, {"a": 3}, {"t": np.zeros(1000, np.float32)}, overwrite=True,
                   progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.gguf"]      # no temp file left
    with pyggml.open(path) as f:
        assert f.metadata == {"a": 1}                                     # the old file intact
    write_gguf(path, {"a": 4}, {}, overwrite=True)
    with pyggml.open(path) as f:
        assert f.metadata == {"a": 4}


def test_split_plans_follow_gguf_split():
    # PAD32 sizes: 32, 64, 32, 32 -- by hand: [0] | 32+64 > 64 -> [1] | 64+32 > 64 -> [2, 3]
    assert plan_split([10, 40, 30, 5], max_bytes=64) == [[0], [1], [2, 3]]
    assert plan_split([10, 40, 30, 5], max_bytes=10**9) == [[0, 1, 2, 3]]
    assert plan_split([100, 1, 1], max_bytes=64) == [[0], [1, 2]]       # oversize: a shard of its own
    assert plan_split([1] * 5, max_tensors=2) == [[0, 1], [2, 3], [4]]
    assert plan_split([1] * 5, max_tensors=2, metadata_only_first=True) == [[], [0, 1], [2, 3], [4]]
    assert plan_split([], max_tensors=2, metadata_only_first=True) == [[]]
    for bad in ({}, {"max_tensors": 1, "max_bytes": 1}, {"max_tensors": -1}):
        with pytest.raises(UsageError):
            plan_split([1], **bad)


def test_as_field_passes_fields_through():
    field = MetadataField(V.UINT16, 3)
    assert as_field(field) is field
    assert as_field(True) == MetadataField(V.BOOL, True)

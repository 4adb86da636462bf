"""pyggml.format.reader on hand-made files: every value type, alignment, and every
malformed input of field-notes.md section 4 and gguf-format.md section 1.4, each of
which must raise its GGUFError subclass naming the file, the byte offset and the field."""
from __future__ import annotations

import struct

import numpy as np
import pytest

import pyggml
from format_bytes import (ARRAY, BOOL, F16, F32, FLOAT32, FLOAT64, INT8, INT16, INT32, INT64,
                          Q4_0, STRING, UINT8, UINT16, UINT32, UINT64, array_payload, gguf,
                          gstr, i32, info, kv, kv_array, kv_scalar, kv_str, kv_u32, u32, u64)
from pyggml.errors import (GGUFError, GGUFMagicError, GGUFMetadataError, GGUFTensorError,
                           GGUFTruncatedError, GGUFVersionError, TensorNotFoundError,
                           UnsupportedTypeError, UsageError)
from pyggml.format.arrays import NumberArray, StringArray
from pyggml.format.constants import GGUFValueType


def write(tmp_path, data: bytes, name: str = "model.gguf"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def expect_error(tmp_path, data: bytes, error: type, offset: int | None, field: str | None,
                 match: str = ""):
    """Open the bytes; the error must be exactly ``error`` and name file, offset, field."""
    path = write(tmp_path, data)
    with pytest.raises(GGUFError) as caught:
        pyggml.open(path)
    err = caught.value
    assert type(err) is error, f"{type(err).__name__}: {err}"
    assert err.path == str(path) and str(err).startswith(str(path))
    assert err.offset == offset, str(err)
    if field is not None:
        assert err.field == field, str(err)
    assert match in err.reason, str(err)
    return err


# ----------------------------------------------------------------------------- valid files

SCALARS = [("u8", UINT8, 255), ("i8", INT8, -128), ("u16", UINT16, 65535), ("i16", INT16, -32768),
           ("u32", UINT32, 2**32 - 1), ("i32", INT32, -2**31), ("f32", FLOAT32, 1.5),
           ("u64", UINT64, 2**64 - 1), ("i64", INT64, -2**63), ("f64", FLOAT64, -0.1)]


def test_every_value_type_reads_with_its_type(tmp_path):
    kvs = [kv_scalar(key, vtype, value) for key, vtype, value in SCALARS]
    kvs += [kv("bool_true", BOOL, b"\x01"), kv("bool_two", BOOL, b"\x02"),
            kv("bool_false", BOOL, b"\x00"), kv_str("text", "héllo wörld ✓")]
    kvs += [kv_array(f"arr_{key}", vtype, [value, 0]) for key, vtype, value in SCALARS]
    kvs += [kv_array("arr_str", STRING, ["a", "", "ü"]), kv_array("arr_bool", BOOL, [1, 0, 1]),
            kv_array("empty", INT32, [])]
    nested = array_payload(ARRAY, [array_payload(UINT8, [1, 2]), array_payload(STRING, ["x"]),
                                   array_payload(ARRAY, [array_payload(FLOAT64, [0.5])])])
    kvs.append(kv("nested", ARRAY, nested))
    with pyggml.open(write(tmp_path, gguf(kvs))) as f:
        for key, vtype, value in SCALARS:
            assert f.fields[key].type == vtype and f.metadata[key] == value
            assert type(f.metadata[key]) is type(value)
            assert f.fields[f"arr_{key}"].item_type == vtype
            assert f.metadata[f"arr_{key}"] == [value, 0]
        assert f.metadata["bool_true"] is True and f.metadata["bool_two"] is True
        assert f.metadata["bool_false"] is False
        assert f.metadata["text"] == "héllo wörld ✓"
        assert f.metadata["arr_str"] == ["a", "", "ü"]
        assert f.metadata["arr_bool"] == [True, False, True]
        assert f.metadata["empty"] == [] and f.fields["empty"].item_type == GGUFValueType.INT32
        assert f.metadata["nested"] == [[1, 2], ["x"], [[0.5]]]
        inner = f.fields["nested"].value
        assert [i.item_type for i in inner] == [UINT8, STRING, ARRAY]
        assert inner[2].value[0].item_type == FLOAT64
        assert f.fields["u8"].offset == 24                  # the first key/value pair
        assert f.tensors == {} and f.shards[0].n_tensors == 0


def test_v2_reads_like_v3(tmp_path):
    kvs = [kv_u32("a", 7), kv_array("s", STRING, ["x", "yz"])]
    infos = [info("t", (4, 2), F32, 0)]
    data = np.arange(8, dtype=np.float32).tobytes()
    with pyggml.open(write(tmp_path, gguf(kvs, infos, data, version=2), "v2.gguf")) as v2, \
            pyggml.open(write(tmp_path, gguf(kvs, infos, data, version=3), "v3.gguf")) as v3:
        assert v2.shards[0].version == 2 and v3.shards[0].version == 3
        assert v2.metadata == v3.metadata and v2.tensors == v3.tensors
        assert np.array_equal(v2.raw("t"), v3.raw("t"))


def test_tensor_views_are_zero_copy_read_only_and_in_numpy_order(tmp_path):
    values = np.arange(24, dtype=np.float32).reshape(2, 3, 4)        # numpy order
    infos = [info("a", (4, 3, 2), F32, 0), info("b", (2,), F16, 96)]
    half = np.array([1.0, -2.0], dtype=np.float16)
    data = values.tobytes() + half.tobytes()
    path = write(tmp_path, gguf([], infos, data))
    with pyggml.open(path) as f:
        a = f.tensors["a"]
        assert a.ne == (4, 3, 2) and a.shape == (2, 3, 4) and a.n_elements == 24
        assert a.nbytes == 96 and a.type_name == "F32" and a.supported and a.shard == 0
        header_end = 24 + len(infos[0]) + len(infos[1])
        assert f.shards[0].data_offset == -(-header_end // 32) * 32 == a.offset
        raw = f.raw("a")
        assert raw.dtype == np.uint8 and raw.shape == (96,) and not raw.flags.writeable
        assert not raw.flags.owndata                    # a view on the file's map
        assert np.array_equal(raw.view(np.float32).reshape(a.shape), values)
        assert np.array_equal(f.raw("b").view(np.float16), half)
        with pytest.raises(ValueError):
            raw[0] = 1
    assert np.array_equal(raw.view(np.float32).reshape(2, 3, 4), values)   # still valid after close
    with pytest.raises(UsageError, match="closed"):
        f.raw("a")


def test_general_alignment_sets_the_data_offset(tmp_path):
    kvs = [kv_u32("general.alignment", 64)]
    infos = [info("a", (3,), F32, 0), info("b", (3,), F32, 64)]
    data = np.array([1, 2, 3], np.float32).tobytes().ljust(64, b"\0") + \
        np.array([4, 5, 6], np.float32).tobytes()
    with pyggml.open(write(tmp_path, gguf(kvs, infos, data, alignment=64))) as f:
        start = f.shards[0].data_offset
        assert f.shards[0].alignment == 64 and start % 64 == 0
        assert start == -(-(24 + len(kvs[0]) + len(infos[0]) + len(infos[1])) // 64) * 64
        assert f.tensors["b"].offset == start + 64
        assert f.raw("b").view(np.float32).tolist() == [4, 5, 6]


def test_metadata_only_file_may_end_after_its_header(tmp_path):
    data = gguf([kv_u32("a", 1)])
    with pyggml.open(write(tmp_path, data[:24 + len(kv_u32("a", 1))])) as f:
        assert f.metadata == {"a": 1} and f.tensors == {}


def test_zero_sized_tensor(tmp_path):
    with pyggml.open(write(tmp_path, gguf([], [info("empty", (0, 4), F32, 0)]))) as f:
        assert f.tensors["empty"].nbytes == 0 and f.raw("empty").size == 0


def test_large_arrays_are_lazy_and_exact(tmp_path):
    strings = [f"tok{i}" for i in range(1500)]
    strings[3], strings[4], strings[5] = "", "ünïcødé 漢字 🙂", "nul\0inside"
    strings[6] = "x" * 70000                                     # longer than a u16 length
    numbers = list(range(-600, 900))
    kvs = [kv_array("s", STRING, strings), kv_array("n", INT32, numbers),
           kv_array("f", FLOAT32, [0.25] * 2000), kv_array("b", BOOL, [1, 0] * 600)]
    path = write(tmp_path, gguf(kvs))
    with pyggml.open(path) as f:
        s, n = f.metadata["s"], f.metadata["n"]
    assert isinstance(s, StringArray) and isinstance(n, NumberArray)
    assert len(s) == 1500 and s == strings and s.tolist() == strings and list(s) == strings
    assert s[5] == "nul\0inside" and s[-1] == "tok1499" and s[10:13] == strings[10:13]
    assert s[::500] == strings[::500]
    with pytest.raises(IndexError):
        s[1500]
    assert n == numbers and n[0] == -600 and type(n[0]) is int and n[-2:] == numbers[-2:]
    array = np.asarray(n)
    assert array.dtype == np.int32 and not array.flags.writeable
    assert f.metadata["f"] == [0.25] * 2000 and f.metadata["b"] == [True, False] * 600


def test_invalid_utf8_survives_as_surrogates(tmp_path):
    bad = b"ok\xff\xfe"
    kvs = [kv("k", STRING, gstr(bad)), kv_array("many", STRING, [bad] * 1100)]
    with pyggml.open(write(tmp_path, gguf(kvs))) as f:
        assert f.metadata["k"] == "ok\udcff\udcfe"
        assert f.metadata["k"].encode("utf-8", "surrogateescape") == bad
        assert f.metadata["many"][7] == "ok\udcff\udcfe" and set(f.metadata["many"]) == {"ok\udcff\udcfe"}


def test_unknown_tensor_type_keeps_the_file_readable(tmp_path):
    infos = [info("future", (32,), 99, 0), info("known", (4,), F32, 64)]
    data = bytes(64) + np.array([1, 2, 3, 4], np.float32).tobytes()
    with pyggml.open(write(tmp_path, gguf([kv_u32("a", 1)], infos, data))) as f:
        future = f.tensors["future"]
        assert not future.supported and future.nbytes is None and future.type_name == "type99"
        assert f.raw("known").view(np.float32).tolist() == [1, 2, 3, 4]
        for use in (f.raw, f.dequantize):
            with pytest.raises(UnsupportedTypeError, match="type 99"):
                use("future")


def test_missing_tensor_is_a_key_error(tmp_path):
    with pyggml.open(write(tmp_path, gguf([kv_u32("a", 1)]))) as f:
        with pytest.raises(TensorNotFoundError, match="nope") as caught:
            f.raw("nope")
        assert isinstance(caught.value, KeyError)


def test_unreadable_paths_are_gguf_errors(tmp_path):
    for path in (tmp_path / "missing.gguf", tmp_path):
        with pytest.raises(GGUFError, match="cannot read") as caught:
            pyggml.open(path)
        assert caught.value.path == str(path)


# ----------------------------------------------------------------------------- header

def test_not_gguf(tmp_path):
    expect_error(tmp_path, gguf(magic=b"GGML"), GGUFMagicError, 0, "magic", "not a GGUF file")
    expect_error(tmp_path, b"GG", GGUFMagicError, 0, None, "only 2 bytes")
    expect_error(tmp_path, b"", GGUFMagicError, 0, None, "only 0 bytes")


@pytest.mark.parametrize("version, match", [(0, "unsupported GGUF version 0"),
                                            (1, "version 1"), (4, "unsupported GGUF version 4"),
                                            (0x03000000, "big-endian"),
                                            (0x02000000, "big-endian")])
def test_bad_versions(tmp_path, version, match):
    expect_error(tmp_path, gguf(version=version), GGUFVersionError, 4, "version", match)


def test_big_endian_file_is_refused_clearly(tmp_path):
    swapped = b"GGUF" + struct.pack(">I", 3) + struct.pack(">QQ", 0, 0)
    err = expect_error(tmp_path, swapped, GGUFVersionError, 4, "version", "big-endian")
    assert "little-endian" in str(err)


def test_truncated_header(tmp_path):
    expect_error(tmp_path, b"GGUF" + u32(3) + b"\0" * 4, GGUFTruncatedError, 8, "n_tensors")
    expect_error(tmp_path, b"GGUF" + u32(3), GGUFTruncatedError, 8, "n_tensors")


def test_counts_larger_than_the_file_could_hold(tmp_path):
    expect_error(tmp_path, gguf(n_tensors=2**63), GGUFTruncatedError, 8, "n_tensors",
                 "tensor infos need")
    expect_error(tmp_path, gguf(n_kv=2**64 - 1), GGUFTruncatedError, 16, "n_kv",
                 "key/value pairs need")
    # plausible counts, but the kvs use up the bytes the tensor infos would need
    expect_error(tmp_path, gguf([kv_u32("a", 1)], n_tensors=1), GGUFTruncatedError, 8,
                 "n_tensors", "1 tensor infos need at least 25 bytes, but only 23 remain")


# ----------------------------------------------------------------------------- key/value pairs

def test_string_longer_than_the_file(tmp_path):
    expect_error(tmp_path, gguf([u64(1000) + b"abc"], n_kv=1), GGUFTruncatedError, 24,
                 "kv[0].key", "string of 1000 bytes")


def test_string_longer_than_one_gib(tmp_path):
    path = tmp_path / "huge.gguf"               # sparse: the bytes after the header are holes
    with open(path, "wb") as f:
        f.write(gguf([u64((1 << 30) + 1)], n_kv=1))
        f.truncate((1 << 30) + 4096)
    with pytest.raises(GGUFMetadataError, match="longer than the limit") as caught:
        pyggml.open(path)
    assert caught.value.offset == 24 and caught.value.field == "kv[0].key"


def test_empty_and_duplicate_keys(tmp_path):
    expect_error(tmp_path, gguf([kv_u32("", 1)]), GGUFMetadataError, 24, "kv[0].key", "empty key")
    first = kv_u32("a", 1)
    expect_error(tmp_path, gguf([first, kv_u32("a", 2)]), GGUFMetadataError, 24 + len(first),
                 "kv[1].key", "duplicate key 'a' (first at offset 24)")


@pytest.mark.parametrize("vtype", [13, 255, -1])
def test_unknown_value_type(tmp_path, vtype):
    expect_error(tmp_path, gguf([kv("k", vtype, b"\0" * 8)]), GGUFMetadataError, 24 + 9,
                 "kv[0] 'k'.type", f"unknown value type {vtype}")


def test_array_count_larger_than_the_file(tmp_path):
    count_at = 24 + 9 + 4 + 4                      # key "a", value type, item type
    expect_error(tmp_path, gguf([kv_array("a", UINT32, [], count=1000)]), GGUFTruncatedError,
                 count_at, "kv[0] 'a'.count", "1000 UINT32 items need at least 4000 bytes")
    expect_error(tmp_path, gguf([kv_array("a", STRING, [], count=2**62)]), GGUFTruncatedError,
                 count_at, "kv[0] 'a'.count")
    expect_error(tmp_path, gguf([kv_array("a", ARRAY, [], count=2**64 - 1)]), GGUFTruncatedError,
                 count_at, "kv[0] 'a'.count")


def test_array_count_over_the_limit(tmp_path):
    path = tmp_path / "huge.gguf"
    with open(path, "wb") as f:
        f.write(gguf([kv_array("a", UINT8, [], count=(1 << 30) + 1)]))
        f.truncate((1 << 30) + 4096)
    with pytest.raises(GGUFMetadataError, match="more than the limit") as caught:
        pyggml.open(path)
    assert caught.value.offset == 24 + 9 + 8 and caught.value.field == "kv[0] 'a'.count"


def test_array_of_unknown_item_type(tmp_path):
    expect_error(tmp_path, gguf([kv("a", ARRAY, i32(42) + u64(0))]), GGUFMetadataError,
                 24 + 9 + 4, "kv[0] 'a'.item_type", "unknown value type 42")


def test_nesting_depth_is_bounded(tmp_path):
    payload = array_payload(UINT8, [7])
    for _ in range(3):
        payload = array_payload(ARRAY, [payload])
    with pyggml.open(write(tmp_path, gguf([kv("ok", ARRAY, payload)]), "ok.gguf")) as f:
        assert f.metadata["ok"] == [[[[7]]]]                # 4 levels: allowed
    too_deep = array_payload(ARRAY, [payload])
    expect_error(tmp_path, gguf([kv("deep", ARRAY, too_deep)]), GGUFMetadataError,
                 24 + 12 + 4 + 3 * 12, "kv[0] 'deep'[0][0][0].item_type", "nested more than 4")


def test_arrays_of_arrays_are_bounded(tmp_path):
    empty = array_payload(UINT8, [])
    expect_error(tmp_path, gguf([kv("a", ARRAY, array_payload(ARRAY, [empty] * 65537))]),
                 GGUFMetadataError, 24 + 9 + 8, "kv[0] 'a'.count", "65537 arrays")


def test_string_in_a_small_array_runs_past_the_end(tmp_path):
    payload = i32(STRING) + u64(2) + gstr("x") + u64(100) + b"y"
    second_at = 24 + 9 + 4 + 12 + 9
    expect_error(tmp_path, gguf([kv("a", ARRAY, payload)]), GGUFTruncatedError, second_at,
                 "kv[0] 'a'[1]", "string of 100 bytes")


@pytest.mark.parametrize("bad_length", [2**40, 60000, 2**64 - 1])
def test_string_in_a_large_array_runs_past_the_end(tmp_path, bad_length):
    strings = [b"ab"] * 1100
    encoded = [gstr(s) for s in strings]
    encoded[700] = u64(bad_length) + b"ab"
    payload = i32(STRING) + u64(1100) + b"".join(encoded)
    bad_at = 24 + 9 + 4 + 12 + 700 * 10
    expect_error(tmp_path, gguf([kv("a", ARRAY, payload)]), GGUFTruncatedError, bad_at,
                 "kv[0] 'a'[700]")


def test_large_string_array_cut_short(tmp_path):
    payload = array_payload(STRING, ["abc"] * 1100)
    data = gguf([kv("a", ARRAY, payload)])
    end = 24 + 9 + 4 + len(payload)
    expect_error(tmp_path, data[:end - 5], GGUFTruncatedError, end - 11, "kv[0] 'a'[1099]")
    expect_error(tmp_path, data[:end - 13], GGUFTruncatedError, end - 22, "kv[0] 'a'[1098]")


@pytest.mark.parametrize("value, match", [(kv_scalar("general.alignment", UINT64, 32), "UINT32"),
                                          (kv_u32("general.alignment", 0), "not a power of two"),
                                          (kv_u32("general.alignment", 48), "not a power of two")])
def test_bad_alignment(tmp_path, value, match):
    expect_error(tmp_path, gguf([value]), GGUFMetadataError, 24, "general.alignment", match)


# ----------------------------------------------------------------------------- tensor infos

def infos_at(kvs=()):
    return 24 + sum(map(len, kvs))


def test_tensor_name_length(tmp_path):
    with pyggml.open(write(tmp_path, gguf([], [info("n" * 63, (1,), F32, 0)], bytes(4)), "ok.gguf")):
        pass
    expect_error(tmp_path, gguf([], [info("n" * 64, (1,), F32, 0)], bytes(4)), GGUFTensorError,
                 infos_at(), "tensor[0].name", "string of 64 bytes")


def test_duplicate_tensor_name(tmp_path):
    first = info("t", (8,), F32, 0)
    expect_error(tmp_path, gguf([], [first, info("t", (8,), F32, 32)], bytes(64)),
                 GGUFTensorError, infos_at() + len(first), "tensor[1] 't'.name",
                 f"duplicate tensor name (first at offset {infos_at()})")


def test_too_many_dims(tmp_path):
    expect_error(tmp_path, gguf([], [info("t", (1, 1, 1, 1, 1), F32, 0)], bytes(4)),
                 GGUFTensorError, infos_at() + 9, "tensor[0] 't'.n_dims", "5 dimensions")


def test_negative_dim(tmp_path):
    expect_error(tmp_path, gguf([], [info("t", (4, -2), F32, 0)], bytes(64)), GGUFTensorError,
                 infos_at() + 9 + 4 + 8, "tensor[0] 't'.ne[1]", "negative dimension -2")


def test_element_count_overflow(tmp_path):
    expect_error(tmp_path, gguf([], [info("t", (2**32, 2**31), F32, 0)]), GGUFTensorError,
                 infos_at(), "tensor[0] 't'.ne", "overflow int64")


def test_byte_size_overflow(tmp_path):
    expect_error(tmp_path, gguf([], [info("t", (2**61,), 28, 0)]), GGUFTensorError,   # F64
                 infos_at(), "tensor[0] 't'.ne", "overflow int64")


@pytest.mark.parametrize("ggml_type", [4, 5, 31, 36, 38, -1])
def test_removed_or_negative_type(tmp_path, ggml_type):
    expect_error(tmp_path, gguf([], [info("t", (32,), ggml_type, 0)], bytes(64)),
                 GGUFTensorError, infos_at(), "tensor[0] 't'.type", f"invalid tensor type {ggml_type}")


def test_rows_not_whole_blocks(tmp_path):
    expect_error(tmp_path, gguf([], [info("t", (33, 2), Q4_0, 0)], bytes(64)), GGUFTensorError,
                 infos_at(), "tensor[0] 't'.ne[0]", "not a whole number of Q4_0 blocks (32 each)")


def test_tensor_data_beyond_the_file(tmp_path):
    expect_error(tmp_path, gguf([], [info("t", (8,), F32, 0)], bytes(31)), GGUFTruncatedError,
                 infos_at(), "tensor[0] 't'.offset", "beyond the end of the file")
    expect_error(tmp_path, gguf([], [info("t", (8,), F32, 2**63)], bytes(32)), GGUFTruncatedError,
                 infos_at(), "tensor[0] 't'.offset")
    expect_error(tmp_path, gguf([], [info("t", (8,), 99, 4096)], bytes(32)), GGUFTruncatedError,
                 infos_at(), "tensor[0] 't'.offset")


def test_misaligned_tensor(tmp_path):
    expect_error(tmp_path, gguf([], [info("t", (4,), F32, 4)], bytes(32)), GGUFTensorError,
                 infos_at(), "tensor[0] 't'.offset", "not a multiple of the alignment 32")


def test_overlapping_tensors(tmp_path):
    first = info("a", (16,), F32, 0)
    expect_error(tmp_path, gguf([], [first, info("b", (8,), F32, 32)], bytes(96)),
                 GGUFTensorError, infos_at() + len(first), "tensor[1] 'b'.offset",
                 "inside tensor 'a'")

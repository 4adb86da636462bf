"""Split sets: opened from any shard, every inconsistency refused with the file named,
never half a model; split_gguf / merge_gguf on small hand-checked models."""
from __future__ import annotations

import numpy as np
import pytest

import pyggml
from pyggml.errors import (GGUFChangedError, GGUFError, GGUFSplitError, GGUFTruncatedError,
                           UsageError)
from pyggml.format.constants import GGUFValueType as V
from pyggml.format.reader import MetadataField
from pyggml.format.shards import shard_path, split_prefix
from pyggml.format.writer import merge_gguf, split_gguf, write_gguf

META = {"general.architecture": "llama", "llama.block_count": 2, "tokenizer.ggml.tokens": ["a", "b"]}


def tensor(i: int, n: int = 8) -> np.ndarray:
    return np.arange(n, dtype=np.float32) + 100 * i


def split_keys(no: int, count: int, total: int) -> dict:
    return {"split.no": MetadataField(V.UINT16, no), "split.count": MetadataField(V.UINT16, count),
            "split.tensors.count": MetadataField(V.INT32, total)}


def make_set(tmp_path, groups: list[list[int]], *, prefix="model", first_meta=META, fix=None):
    """Shards by hand: shard k holds tensors t<i> for i in groups[k]; fix(k, keys) may forge."""
    count, total = len(groups), sum(map(len, groups))
    paths = []
    for k, group in enumerate(groups):
        keys = split_keys(k, count, total)
        if fix:
            fix(k, keys)
        metadata = {**first_meta, **keys} if k == 0 else keys
        path = shard_path(tmp_path / prefix, k, count)
        write_gguf(path, metadata, {f"t{i}": tensor(i) for i in group})
        paths.append(path)
    return paths


def test_naming_helpers():
    assert str(shard_path("/m/x", 1, 4)) == "/m/x-00002-of-00004.gguf"
    assert split_prefix("/m/x-00002-of-00004.gguf", 1, 4) == "/m/x"
    assert split_prefix("/m/x-00002-of-00004.gguf", 0, 4) is None
    assert split_prefix("-00001-of-00001.gguf", 0, 1) is None            # empty prefix


def test_any_shard_opens_the_whole_set(tmp_path):
    paths = make_set(tmp_path, [[0, 1], [2], [3, 4, 5]])
    for given in paths:
        with pyggml.open(given) as f:
            assert f.path == given
            assert [s.path for s in f.shards] == paths and [s.index for s in f.shards] == [0, 1, 2]
            assert [s.n_tensors for s in f.shards] == [2, 1, 3]
            assert f.metadata["general.architecture"] == "llama"    # shard 1's metadata
            assert f.metadata["split.no"] == 0
            assert list(f.tensors) == [f"t{i}" for i in range(6)]
            assert [t.shard for t in f.tensors.values()] == [0, 0, 1, 2, 2, 2]
            for i in range(6):
                assert np.array_equal(f.raw(f"t{i}").view(np.float32), tensor(i))


def test_metadata_only_first_shard(tmp_path):
    paths = make_set(tmp_path, [[], [0, 1], [2]])
    with pyggml.open(paths[2]) as f:
        assert f.shards[0].n_tensors == 0 and list(f.tensors) == ["t0", "t1", "t2"]
        assert f.metadata["llama.block_count"] == 2


def test_merged_file_with_split_count_zero_is_single(tmp_path):
    path = tmp_path / "model-00001-of-00003.gguf"      # even with a shard-like name
    write_gguf(path, {**META, **split_keys(0, 0, 1)}, {"t0": tensor(0)})
    with pyggml.open(path) as f:
        assert len(f.shards) == 1 and list(f.tensors) == ["t0"]


def test_missing_shard(tmp_path):
    paths = make_set(tmp_path, [[0], [1], [2]])
    paths[1].unlink()
    for given in (paths[0], paths[2]):
        with pytest.raises(GGUFSplitError, match="1 of 3 shards missing") as caught:
            pyggml.open(given)
        assert str(paths[1]) in str(caught.value) and caught.value.path == str(given)


def test_wrong_split_no(tmp_path):
    def fix(k, keys):
        if k == 1:
            keys["split.no"] = MetadataField(V.UINT16, 2)
    paths = make_set(tmp_path, [[0], [1], [2]], fix=fix)
    with pytest.raises(GGUFSplitError, match="is 2 in this shard, expected 1") as caught:
        pyggml.open(paths[0])
    assert caught.value.path == str(paths[1]) and caught.value.field == "split.no"
    assert caught.value.offset is not None


def test_disagreeing_split_count(tmp_path):
    def fix(k, keys):
        if k == 2:
            keys["split.count"] = MetadataField(V.UINT16, 4)
    paths = make_set(tmp_path, [[0], [1], [2]], fix=fix)
    with pytest.raises(GGUFSplitError, match="is 4 in this shard, expected 3") as caught:
        pyggml.open(paths[1])
    assert caught.value.path == str(paths[2]) and caught.value.field == "split.count"


def test_tensor_count_mismatch(tmp_path):
    def fix(k, keys):
        keys["split.tensors.count"] = MetadataField(V.INT32, 4)
    paths = make_set(tmp_path, [[0], [1], [2]], fix=fix)
    with pytest.raises(GGUFSplitError, match="3 tensors in 3 shards, but split.tensors.count is 4") as caught:
        pyggml.open(paths[2])
    assert caught.value.path == str(paths[0])


def test_tensor_count_missing_in_first_shard(tmp_path):
    def fix(k, keys):
        if k == 0:
            del keys["split.tensors.count"]
    paths = make_set(tmp_path, [[0], [1]], fix=fix)
    with pytest.raises(GGUFSplitError, match="lacks split.tensors.count"):
        pyggml.open(paths[1])


def test_duplicate_tensor_across_shards(tmp_path):
    paths = make_set(tmp_path, [[0, 1], [1]])
    with pytest.raises(GGUFSplitError, match="tensor 't1' also appears in") as caught:
        pyggml.open(paths[0])
    assert caught.value.path == str(paths[1]) and str(paths[0]) in str(caught.value)


def test_shard_named_without_the_convention(tmp_path):
    path = tmp_path / "renamed.gguf"
    write_gguf(path, {**META, **split_keys(0, 2, 1)}, {"t0": tensor(0)})
    with pytest.raises(GGUFSplitError, match="does not end in '-00001-of-00002.gguf'"):
        pyggml.open(path)


@pytest.mark.parametrize("keys, match", [
    ({"split.count": MetadataField(V.UINT16, 3)}, "split.no is None"),
    ({"split.count": MetadataField(V.UINT16, 3), "split.no": MetadataField(V.UINT16, 3)}, "split.no is 3"),
    ({"split.count": MetadataField(V.STRING, "3")}, "non-negative integer, not STRING"),
    ({"split.count": MetadataField(V.INT32, -2)}, "non-negative integer"),
])
def test_bad_split_keys(tmp_path, keys, match):
    path = shard_path(tmp_path / "model", 0, 3)
    write_gguf(path, {**META, **keys}, {})
    with pytest.raises(GGUFSplitError, match=match):
        pyggml.open(path)


def test_broken_shard_is_named(tmp_path):
    paths = make_set(tmp_path, [[0], [1], [2]])
    paths[2].write_bytes(paths[2].read_bytes()[:-8])
    with pytest.raises(GGUFTruncatedError) as caught:
        pyggml.open(paths[0])
    assert caught.value.path == str(paths[2])


# ----------------------------------------------------------------------------- split and merge

def small_model(tmp_path):
    tensors = {f"t{i}": tensor(i, 8 * (i + 1)) for i in range(5)}         # 32, 64, ... 160 bytes
    return write_gguf(tmp_path / "src.gguf", {**META, "general.alignment": MetadataField(V.UINT32, 64)},
                      tensors)


def test_split_and_merge_round_trip_exactly(tmp_path):
    src = small_model(tmp_path)
    paths = split_gguf(src, tmp_path / "out", max_bytes=200)
    # padded sizes 32, 64, 96, 128, 160: [t0, t1, t2] = 192 | [t3] (192 + 128 > 200) | [t4]
    assert [p.name for p in paths] == [f"out-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    with pyggml.open(paths[1]) as f, pyggml.open(src) as g:
        assert [s.n_tensors for s in f.shards] == [3, 1, 1]
        assert [s.alignment for s in f.shards] == [64, 32, 32]     # shard 1 keeps general.alignment
        assert {k: v for k, v in f.metadata.items() if not k.startswith("split.")} == g.metadata
        assert (f.metadata["split.count"], f.metadata["split.tensors.count"]) == (3, 5)
        assert (f.fields["split.no"].type, f.fields["split.count"].type,
                f.fields["split.tensors.count"].type) == (V.UINT16, V.UINT16, V.INT32)
        for name in g.tensors:
            assert np.array_equal(f.raw(name), g.raw(name))
    with pyggml.open(paths[2]) as shard3_alone:
        assert shard3_alone.metadata["split.no"] == 0          # the set's metadata, from shard 1
    merged = merge_gguf(paths[2], tmp_path / "merged.gguf")
    assert merged.read_bytes() == src.read_bytes()


def test_split_by_tensor_count_with_metadata_only_first(tmp_path):
    src = small_model(tmp_path)
    paths = split_gguf(src, tmp_path / "m.gguf", max_tensors=2, metadata_only_first=True)
    assert [p.name for p in paths] == [f"m-0000{i}-of-00004.gguf" for i in (1, 2, 3, 4)]
    with pyggml.open(paths[0]) as f:
        assert [s.n_tensors for s in f.shards] == [0, 2, 2, 1]
        with pyggml.open(paths[0]) as again:
            assert again.tensors == f.tensors


def test_split_refuses_to_overwrite_and_cleans_up_after_failure(tmp_path):
    src = small_model(tmp_path)
    paths = split_gguf(src, tmp_path / "m", max_tensors=2)
    before = {p: p.read_bytes() for p in paths}
    with pytest.raises(UsageError, match="already exists"):
        split_gguf(src, tmp_path / "m", max_tensors=2)
    assert {p: p.read_bytes() for p in paths} == before
    calls = []

    def fail_in_third_shard(n):
        calls.append(n)
        if len(calls) == 5:                                   # t4, the only tensor of shard 3
            raise OSError(28, "No space left on device")
    with pytest.raises(GGUFError, match="cannot write: No space left"):
        split_gguf(src, tmp_path / "n", max_tensors=2, progress=fail_in_third_shard)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("n")) == []
    with pytest.raises(UsageError, match="already exists"):
        merge_gguf(paths[0], src)


def test_populate_maps_the_pages_of_the_tensors_given(tmp_path):
    """After populate([name]) reading that tensor takes no page faults; reading another,
    not populated, takes several (how many depends on the kernel's fault-around and the
    page cache's folio sizes: ~36 for 32 MiB on Linux 6.18, up to 512 on older ones)."""
    import resource

    def faults_reading(f, name):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f.raw(name).sum(dtype=np.uint64)          # numpy's reduction itself allocates nothing
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    n_bytes = 32 << 20
    path = write_gguf(tmp_path / "big.gguf", META,
                      {name: np.ones(n_bytes // 4, np.float32) for name in ("a", "b")})
    with pyggml.open(path) as f:
        f.populate(["a"])
        populated, not_populated = faults_reading(f, "a"), faults_reading(f, "b")
        assert populated <= 2 and not_populated >= 16, (populated, not_populated)


def test_read_into_memory_copies_the_bytes_off_the_map(tmp_path):
    """read_into_memory: raw() of the names given returns copies (the same bytes, not on the
    file's map, read-only, 64-byte aligned) from every shard; the other names stay views."""
    paths = make_set(tmp_path, [[0, 1], [2], [3, 4, 5]])
    with pyggml.open(paths[1]) as f, pyggml.open(paths[0]) as reference:
        views = {name: f.raw(name) for name in f.tensors}
        assert f.read_into_memory(["t1", "t2", "t5", "t2"]) == 3 * tensor(0).nbytes
        for name in f.tensors:
            raw = f.raw(name)
            assert np.array_equal(raw, reference.raw(name)), name
            assert np.shares_memory(raw, views[name]) == (name not in ("t1", "t2", "t5")), name
        for name in ("t1", "t2", "t5"):
            assert not f.raw(name).flags.writeable and f.raw(name).ctypes.data % 64 == 0
        assert f.read_into_memory(["t1"]) == 0                  # copied already


def test_read_into_memory_of_a_truncated_shard_names_it_and_keeps_nothing(tmp_path):
    paths = make_set(tmp_path, [[0], [1, 2]])
    with pyggml.open(paths[0]) as f:
        info = f.tensors["t2"]
        with open(paths[1], "r+b") as shard:
            shard.truncate(info.offset + 4)                     # inside t2
        with pytest.raises(GGUFChangedError, match="changed size") as err:
            f.read_into_memory(["t0", "t2"])
        assert err.value.path == str(paths[1])
        assert np.array_equal(f.raw("t0").view(np.float32), tensor(0))   # still the map's
        with pytest.raises(GGUFChangedError):
            f.raw("t2")


def test_read_into_memory_of_a_shard_rewritten_in_place_names_it(tmp_path):
    """Same size, new bytes and mtime: refused before any byte is copied, as raw() would."""
    import os
    paths = make_set(tmp_path, [[0], [1, 2]])
    with pyggml.open(paths[0]) as f:
        stat = os.stat(paths[1])
        with open(paths[1], "r+b") as shard:
            shard.seek(f.tensors["t2"].offset)
            shard.write(np.full(8, 7, np.float32).tobytes())
        os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        with pytest.raises(GGUFChangedError, match="modified since it was opened") as err:
            f.read_into_memory(["t2"])
        assert err.value.path == str(paths[1])

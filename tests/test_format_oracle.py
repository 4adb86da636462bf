"""pyggml.format against the oracles.

gguf-py (GGUFReader) must agree with pyggml on metadata, tensor names, types, shapes,
offsets and bytes for every file the tests make: the fixtures (written by gguf-py,
quantized by llama.cpp, and a real SmolLM2 file), split sets written by gguf-py's
writer, and split sets written by pyggml.  llama-cpp-python must load pyggml's
split output and compute the same logits as from the unsplit file.
"""
from __future__ import annotations

import functools

import gguf
import numpy as np
import pytest

import make_model
import pyggml
from pyggml.format.reader import close_map, read_file
from pyggml.format.writer import merge_gguf, split_gguf

pytestmark = pytest.mark.oracle

SINGLE_FIXTURES = ["qwen2-tiny-f32", "qwen2-tiny-q4_k_m", "qwen2-tiny-q3_k_m", "smollm2-q4_1"]
SPLIT_KEYS = {"split.no", "split.count", "split.tensors.count"}


@functools.lru_cache(maxsize=None)
def gguf_py(path: str) -> gguf.GGUFReader:
    """gguf-py takes seconds to open a file with a 152k vocabulary: once per file."""
    return gguf.GGUFReader(path)


def gguf_py_value(field: gguf.ReaderField):
    if field.types[0] == gguf.GGUFValueType.ARRAY and field.types[-1] != gguf.GGUFValueType.STRING:
        return [field.contents(i) for i in range(len(field.data))]
    return field.contents()


def check_file(path, model=None, shard: int = 0) -> None:
    """One file, as gguf-py sees it, against pyggml's reader (and, if given, the GGUFFile
    that holds it as shard number ``shard``)."""
    reader = gguf_py(str(path))
    parsed = read_file(path)
    try:
        assert parsed.version == reader.fields["GGUF.version"].contents()
        assert parsed.alignment == reader.alignment and parsed.data_offset == reader.data_offset
        assert list(parsed.fields) == [k for k in reader.fields if not k.startswith("GGUF.")]
        for key, field in parsed.fields.items():
            theirs = reader.fields[key]
            assert field.type == theirs.types[0], key
            if field.item_type is not None:
                assert field.item_type == theirs.types[1], key
            assert field.to_python() == gguf_py_value(theirs), key
        assert len(parsed.tensors) == len(reader.tensors)
        for info, theirs in zip(parsed.tensors, reader.tensors):
            assert info.name == theirs.name
            assert info.type == int(theirs.tensor_type)
            assert info.ne == tuple(int(n) for n in theirs.shape)
            assert info.n_elements == theirs.n_elements and info.nbytes == theirs.n_bytes
            assert info.offset == theirs.data_offset
            theirs_bytes = np.asarray(theirs.data).reshape(-1).view(np.uint8)
            if model is not None:
                ours = model.tensors[info.name]
                assert ours == info._replace(shard=shard)
                assert np.array_equal(model.raw(info.name), theirs_bytes), info.name
    finally:
        close_map(parsed.map)


def check_model(model) -> None:
    """Every shard of an opened model against gguf-py; metadata from shard 1."""
    assert sum(s.n_tensors for s in model.shards) == len(model.tensors)
    for shard in model.shards:
        check_file(shard.path, model, shard.index)
    first = gguf_py(str(model.shards[0].path))
    assert model.metadata == {k: gguf_py_value(f) for k, f in first.fields.items()
                              if not k.startswith("GGUF.")}


@pytest.mark.parametrize("name", SINGLE_FIXTURES)
def test_fixtures_agree_with_gguf_py(model_path, name):
    with pyggml.open(model_path(name)) as model:
        assert len(model.shards) == 1
        check_model(model)


@pytest.fixture(scope="module")
def gguf_py_splits(tmp_path_factory, model_path):
    """qwen2-tiny-f32 rewritten as shards by gguf-py: 8 tensors each, and with an empty first shard."""
    model_path("qwen2-tiny-f32")                       # the reference, made first
    out = {}
    for small_first in (False, True):
        folder = tmp_path_factory.mktemp(f"gguf_py_split_{small_first}")
        out[small_first] = make_model.split_with_gguf_py("qwen2-tiny-f32", folder, 8,
                                                         small_first_shard=small_first)
    return out


@pytest.mark.parametrize("small_first", [False, True])
def test_gguf_py_split_sets(gguf_py_splits, model_path, small_first):
    paths = gguf_py_splits[small_first]
    assert len(paths) == 4 + small_first
    with pyggml.open(model_path("qwen2-tiny-f32")) as single:
        for given in (paths[0], paths[-1], paths[2]):
            with pyggml.open(given) as model:
                assert [s.path for s in model.shards] == paths
                assert model.shards[0].n_tensors == (0 if small_first else 8)
                check_model(model)
                # the same model as the single file (same seed): tensors and metadata
                assert list(model.tensors) == list(single.tensors)
                for name, info in single.tensors.items():
                    assert model.tensors[name].ne == info.ne
                    assert np.array_equal(model.raw(name), single.raw(name)), name
                assert {k: v for k, v in model.metadata.items() if k not in SPLIT_KEYS} == \
                    single.metadata


@pytest.mark.parametrize("name, how", [("qwen2-tiny-q4_k_m", {"max_bytes": 4_000_000}),
                                       ("qwen2-tiny-q3_k_m", {"max_tensors": 7,
                                                              "metadata_only_first": True}),
                                       ("smollm2-q4_1", {"max_bytes": 30_000_000})])
def test_pyggml_split_sets(tmp_path, model_path, name, how):
    src = model_path(name)
    paths = split_gguf(src, tmp_path / name, **how)
    assert len(paths) >= 3
    with pyggml.open(paths[1]) as model:
        check_model(model)
        assert model.metadata["split.count"] == len(paths)
    merged = merge_gguf(paths[-1], tmp_path / "merged.gguf")
    assert merged.read_bytes() == src.read_bytes()


def llama_logits(path, tokens: list[int]) -> np.ndarray:
    import llama_cpp
    llm = llama_cpp.Llama(model_path=str(path), logits_all=True, n_ctx=64, n_threads=2,
                          verbose=False)
    try:
        llm.eval(tokens)
        return np.array(llm.scores[:len(tokens)], dtype=np.float32)
    finally:
        llm.close()


@pytest.mark.parametrize("how", [{"max_bytes": 4_000_000}, {"max_tensors": 9, "metadata_only_first": True}])
def test_llama_cpp_loads_pyggml_splits(tmp_path, model_path, how):
    src = model_path("qwen2-tiny-q4_k_m")
    paths = split_gguf(src, tmp_path / "m", **how)
    assert len(paths) >= 3
    tokens = [9707, 11, 1879, 0, 151643, 17, 42]
    whole, split = llama_logits(src, tokens), llama_logits(paths[0], tokens)
    assert whole.shape == (len(tokens), 151936) and np.ptp(whole[-1]) > 1
    assert np.array_equal(whole, split)


def test_dequantize_matches_gguf_py(model_path):
    path = model_path("qwen2-tiny-q4_k_m")
    reader = gguf_py(str(path))
    with pyggml.open(path) as model:
        for theirs in reader.tensors:
            expected = gguf.quants.dequantize(np.asarray(theirs.data), theirs.tensor_type)
            ours = model.dequantize(theirs.name)
            assert ours.dtype == np.float32 and ours.shape == model.tensors[theirs.name].shape
            assert np.array_equal(ours, expected.reshape(ours.shape)), theirs.name

"""pyggml.locate on the layouts users keep models in, built in a temporary folder: the
Hugging Face cache (snapshots linking into blobs, split sets), the Ollama store
(manifests and blobs), Modelfiles.  Offline, as locate is."""
import hashlib
import json
import os

import pytest

import pyggml
from pyggml.errors import UsageError
from pyggml.locate import locate

TINY = "qwen2-tiny-q4_k_m"


def _blob(folder, data: bytes) -> tuple[str, os.PathLike]:
    digest = hashlib.sha256(data).hexdigest()
    path = folder / f"sha256-{digest}"
    path.write_bytes(data)
    return f"sha256:{digest}", path


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, model_path):
    """A Hugging Face cache with org/repo at commit abc: one real model (a link into blobs,
    as huggingface_hub stores it), a Q8_0 split in two shards, and another quantization."""
    hub = tmp_path / "hub"
    repo = hub / "models--org--repo"
    snapshot = repo / "snapshots" / "abc"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc")
    (repo / "blobs").mkdir()
    (snapshot / "sub").mkdir(parents=True)
    blob = repo / "blobs" / "1234"
    blob.write_bytes(model_path(TINY).read_bytes())
    (snapshot / "tiny-Q4_K_M.gguf").symlink_to(blob)
    for i in (1, 2):
        (snapshot / f"tiny-Q8_0-0000{i}-of-00002.gguf").write_bytes(b"GGUF")
    (snapshot / "sub" / "tiny-Q3_K_M.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.delenv("HF_HOME", raising=False)
    return snapshot


def test_hf_cache_by_file_and_by_quantization(hf_cache, model_path):
    assert locate("org/repo:tiny-Q4_K_M.gguf").path == hf_cache / "tiny-Q4_K_M.gguf"
    found = locate("org/repo:q4_k_m")               # case does not matter
    assert found.path == hf_cache / "tiny-Q4_K_M.gguf"
    # the link resolves to the real file
    with pyggml.load(found.path, n_ctx=64) as model, pyggml.open(model_path(TINY)) as ref:
        assert model.file.metadata == ref.metadata
    assert locate("hf.co/org/repo:Q4_K_M").path == found.path
    assert locate("org/repo:sub/tiny-Q3_K_M.gguf").path == hf_cache / "sub" / "tiny-Q3_K_M.gguf"
    assert locate("org/repo:Q3_K_M").path == hf_cache / "sub" / "tiny-Q3_K_M.gguf"


def test_hf_cache_split_set_resolves_to_first_shard_and_needs_every_shard(hf_cache):
    first = hf_cache / "tiny-Q8_0-00001-of-00002.gguf"
    assert locate("org/repo:Q8_0").path == first
    assert locate("org/repo:tiny-Q8_0-00002-of-00002.gguf").path == first
    (hf_cache / "tiny-Q8_0-00002-of-00002.gguf").unlink()
    with pytest.raises(UsageError, match="tiny-Q8_0-00002-of-00002.gguf"):
        locate("org/repo:Q8_0")


def test_hf_cache_misses_say_what_is_there(hf_cache):
    with pytest.raises(UsageError, match="tiny-Q4_K_M.gguf") as err:
        locate("org/repo:Q5_K_M")
    assert err.value.argument == "model"
    with pytest.raises(UsageError, match="not in the Hugging Face cache"):
        locate("org/other:Q4_K_M")
    with pytest.raises(UsageError, match="no file nope.gguf"):
        locate("org/repo:nope.gguf")
    (hf_cache / "sub" / "tiny-Q4_K_M.gguf").write_bytes(b"GGUF")
    with pytest.raises(UsageError, match="more than one"):
        locate("org/repo:Q4_K_M")


@pytest.fixture
def ollama_store(tmp_path, monkeypatch, model_path):
    """An Ollama store holding qwen2.5:0.5b (model, params, template, system layers) and
    me/mine (model layer only, tag latest)."""
    store = tmp_path / "ollama"
    blobs = store / "blobs"
    blobs.mkdir(parents=True)
    model_digest, model_blob = _blob(blobs, model_path(TINY).read_bytes())
    params_digest, _ = _blob(blobs, json.dumps({"temperature": 0.2, "stop": ["<|im_end|>"],
                                                "num_predict": 7}).encode())
    template_digest, _ = _blob(blobs, b"{{ .Prompt }}")
    system_digest, _ = _blob(blobs, b"You are terse.")

    def manifest(path, layers):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"schemaVersion": 2, "layers": [
            {"mediaType": f"application/vnd.ollama.image.{kind}", "digest": digest, "size": 1}
            for kind, digest in layers]}))
    manifests = store / "manifests" / "registry.ollama.ai"
    manifest(manifests / "library" / "qwen2.5" / "0.5b",
             [("model", model_digest), ("params", params_digest),
              ("template", template_digest), ("system", system_digest)])
    manifest(manifests / "me" / "mine" / "latest", [("model", model_digest)])
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    return model_blob


def test_ollama_store_model_params_and_system(ollama_store):
    found = locate("ollama:qwen2.5:0.5b")
    assert found.path == ollama_store
    assert found.params == {"temperature": 0.2, "stop": ["<|im_end|>"], "num_predict": 7}
    assert found.system == "You are terse."
    assert found.name == "qwen2.5:0.5b"
    mine = locate("ollama:me/mine")
    assert (mine.path, mine.params, mine.system, mine.name) == \
        (ollama_store, {}, None, "me/mine:latest")


def test_ollama_store_misses(ollama_store):
    with pytest.raises(UsageError, match="ollama pull"):
        locate("ollama:qwen2.5:7b")
    ollama_store.unlink()
    with pytest.raises(UsageError, match="model layer .* is missing"):
        locate("ollama:qwen2.5:0.5b")


def test_modelfile_from_parameter_system(tmp_path, ollama_store, model_path):
    (tmp_path / "m.gguf").symlink_to(model_path(TINY))
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text('# a comment\nFROM ./m.gguf\nPARAMETER temperature 0.3\n'
                         'PARAMETER stop "<|im_end|>"\nPARAMETER stop "END"\n'
                         'SYSTEM """Line one.\nLine two."""\nLICENSE MIT\n')
    found = locate(str(modelfile))
    assert found.path == tmp_path / "m.gguf"
    assert found.params == {"temperature": 0.3, "stop": ["<|im_end|>", "END"]}
    assert found.system == "Line one.\nLine two."
    assert locate(str(tmp_path)).path == found.path         # a folder with a Modelfile
    # FROM an Ollama model: its params and system are the base, the Modelfile's win
    other = tmp_path / "other.Modelfile"
    other.write_text("FROM qwen2.5:0.5b\nPARAMETER temperature 0.9\n")
    found = locate(str(other))
    assert found.path == ollama_store
    assert found.params == {"temperature": 0.9, "stop": ["<|im_end|>"], "num_predict": 7}
    assert found.system == "You are terse."


def test_modelfile_template_and_unknown_commands_are_refused_by_name(tmp_path, model_path):
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {model_path(TINY)}\nTEMPLATE \"\"\"{{{{ .Prompt }}}}\"\"\"\n")
    with pytest.raises(UsageError, match="TEMPLATE is a Go template.*GGUF's own chat template"):
        locate(str(modelfile))
    modelfile.write_text(f"FROM {model_path(TINY)}\nADAPTER ./lora.gguf\n")
    with pytest.raises(UsageError, match="ADAPTER"):
        locate(str(modelfile))
    modelfile.write_text("PARAMETER temperature 0\n")
    with pytest.raises(UsageError, match="needs a FROM"):
        locate(str(modelfile))


def test_a_path_and_any_shard(model_path, tmp_path):
    from pyggml.format.writer import split_gguf
    path = model_path(TINY)
    assert locate(str(path)).path == path
    with pyggml.open(path) as f:
        per_shard = -(-len(f.tensors) // 2)
    shards = split_gguf(path, tmp_path / "split", max_tensors=per_shard)
    with pyggml.load(locate(str(shards[-1])).path, n_ctx=64) as model:   # any shard opens the set
        assert len(model.file.shards) == len(shards) > 1
    with pytest.raises(UsageError, match="no such model"):
        locate(str(tmp_path / "missing.gguf"))

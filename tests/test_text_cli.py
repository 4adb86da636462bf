"""``pyggml tokenize`` and ``pyggml.load_tokenizer`` against llama.cpp on its own
vocabulary files: the ids, the BOS rule and the printed pieces of llama-tokenize."""
from __future__ import annotations

import subprocess
import sys

import pytest
from vocab_oracle import VOCAB_DIR, vocab_of

import pyggml
from pyggml.cli import main

pytestmark = pytest.mark.oracle

TEXT = "Hello world, héllo <|im_start|> <s>\n\n  12345 日本"
NAMES = ["llama-spm", "phi-3", "qwen2", "bert-bge", "gemma-4"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("flags", [[], ["--no-bos"], ["--parse-special"]], ids=" ".join)
def test_tokenize_ids_are_llama_cpps(capsysbinary, name, flags):
    v = vocab_of(name)
    assert main(["tokenize", str(VOCAB_DIR / f"ggml-vocab-{name}.gguf"), TEXT, "--ids",
                 *flags]) == 0
    out = capsysbinary.readouterr().out.decode()
    add_bos = v.tokenizer.add_bos and "--no-bos" not in flags
    want = v.oracle_encode(TEXT, add_bos, "--parse-special" in flags)
    assert out == f"[{', '.join(map(str, want))}]\n"


@pytest.mark.parametrize("name", NAMES)
def test_tokenize_prints_llama_tokenizes_lines(capsysbinary, name):
    """'%6d -> '<piece>'' per token, the piece with its special text (llama-tokenize)."""
    v = vocab_of(name)
    assert main(["tokenize", str(VOCAB_DIR / f"ggml-vocab-{name}.gguf"), TEXT,
                 "--show-count"]) == 0
    ids = v.oracle_encode(TEXT, v.tokenizer.add_bos, False)
    want = b"".join(f"{i:6d} -> '".encode() + v.oracle_piece(i, True) + b"'\n" for i in ids)
    assert capsysbinary.readouterr().out == want + f"Total number of tokens: {len(ids)}\n".encode()


def test_tokenize_reads_stdin_and_bytes_that_are_not_utf8():
    path = VOCAB_DIR / "ggml-vocab-llama-spm.gguf"
    data = b"caf\xe9 \xff\xfe ok"                  # latin-1 bytes: SPM keeps them as byte tokens
    result = subprocess.run([sys.executable, "-m", "pyggml", "tokenize", str(path), "--stdin",
                             "--ids"], input=data, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    want = vocab_of("llama-spm").oracle_encode(data, True, False)
    assert result.stdout.decode() == f"[{', '.join(map(str, want))}]\n"


def test_load_tokenizer_reads_vocabulary_only_files():
    tok = pyggml.load_tokenizer(VOCAB_DIR / "ggml-vocab-phi-3.gguf")
    v = vocab_of("phi-3")
    assert tok.encode("Hello <|user|> world") == v.oracle_encode("Hello <|user|> world", True, False)
    assert tok.decode(tok.encode("Hello world", add_special=False)) == "Hello world"


def test_tokenize_without_text_is_one_line(capsys):
    assert main(["tokenize", str(VOCAB_DIR / "ggml-vocab-qwen2.gguf")]) == 2
    assert capsys.readouterr().err.count("\n") == 1

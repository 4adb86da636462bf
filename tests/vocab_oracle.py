"""Helpers of the tokenizer tests: llama.cpp's vocabulary files and the oracle.

Oracle: ``llama_cpp.Llama(model_path, vocab_only=True)`` (llama-cpp-python 0.3.36) on the
same GGUF file; our tokenizer gets ``pyggml.open(path).metadata``, as in production.

The vocabulary files are llama.cpp's ``models/ggml-vocab-*.gguf`` (with ``.inp``/``.out``
test files for 15 of them), vendored in the llama-cpp-python 0.3.36 source distribution (tools/make_model.vocab_dir()
takes them from it once).
"""
from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import gguf
import llama_cpp

import make_model
import pyggml
from pyggml.text.tokenizer import Tokenizer

VOCAB_DIR = make_model.vocab_dir()
CORPUS = Path(__file__).resolve().parent / "data" / "corpus"
VOCABS = sorted(p.name.removeprefix("ggml-vocab-").removesuffix(".gguf")
                for p in VOCAB_DIR.glob("ggml-vocab-*.gguf"))
TESTED_VOCABS = [name for name in VOCABS if (VOCAB_DIR / f"ggml-vocab-{name}.gguf.inp").exists()]
REFUSED = {"nomic-bert-moe": "'t5'"}              # vocabularies pyggml refuses, by name
READ_VOCABS = [name for name in VOCABS if name not in REFUSED]
CORPUS_FILES = sorted(p.name for p in CORPUS.glob("*.txt"))


assert len(VOCABS) == 19 and len(TESTED_VOCABS) == 15 and CORPUS_FILES, \
    f"llama.cpp's 19 vocabulary files (15 with tests) expected in {VOCAB_DIR}"


_LOG_CALLBACK = None


def quiet_llama() -> None:
    """Silence llama.cpp's log chatter (keep the callback alive: ctypes does not)."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


def file_metadata(path) -> dict:
    """The metadata our tokenizer gets in production: pyggml.open(path).metadata."""
    with pyggml.open(path) as f:
        return f.metadata


@dataclasses.dataclass
class Vocab:
    name: str
    tokenizer: Tokenizer
    llm: object                       # llama_cpp.Llama(vocab_only=True)

    @property
    def vocab(self):
        return llama_cpp.llama_model_get_vocab(self.llm.model)

    def oracle_encode(self, text: str | bytes, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        return self.llm.tokenize(data, add_bos=add_special, special=parse_special)

    def oracle_piece(self, token_id: int, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(1024)
        n = llama_cpp.llama_token_to_piece(self.vocab, token_id, buf, len(buf), 0, special)
        assert 0 <= n <= len(buf)
        return buf.raw[:n]

    def oracle_decode(self, ids: list[int], special: bool) -> str:
        """llama_detokenize(remove_special=False, unparse_special=special), which
        llama-cpp-python's Llama.detokenize is not: that one joins token_to_piece's
        results (in a 32-byte buffer) and drops a space after BOS, without llama.cpp's
        add_space_prefix and clean_spaces handling."""
        array = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
        size = 8 * len(ids) + 64
        while True:                    # a negative result is the size it needs
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_detokenize(self.vocab, array, len(ids), buf, size, False, special)
            if n >= 0:
                return buf.raw[:n].decode("utf-8", "replace")
            size = -n


def load_vocab(name: str, path: Path) -> Vocab:
    quiet_llama()
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    return Vocab(name, Tokenizer.from_metadata(file_metadata(path)), llm)


_LOADED: dict[str, Vocab] = {}


def vocab_of(name: str) -> Vocab:
    """Vocab of llama.cpp's ggml-vocab-{name}.gguf, loaded once per test session."""
    if name not in _LOADED:
        _LOADED[name] = load_vocab(name, VOCAB_DIR / f"ggml-vocab-{name}.gguf")
    return _LOADED[name]


def write_vocab_gguf(path, metadata: dict, **changes) -> None:
    """A vocabulary-only GGUF (no tensors) with metadata's tokenizer keys, changed by
    changes: {"tokenizer.ggml.pre": "tekken", ...}; a value of None drops the key.  Written
    with pyggml's writer (20x faster than gguf-py's on a 150k-token vocabulary); lists get
    the types llama.cpp reads (int32 token types, float32 scores, uint32 ids)."""
    from pyggml.format.constants import GGUFValueType as V
    from pyggml.format.reader import MetadataField
    from pyggml.format.writer import write_gguf
    keys = {k: v for k, v in metadata.items() if k.startswith("tokenizer.ggml.")}
    keys.update(changes)
    dtypes = {"tokenizer.ggml.token_type": np.int32, "tokenizer.ggml.scores": np.float32}
    fields = {"general.architecture": "llama"}
    for name, value in (("block_count", 1), ("context_length", 256), ("embedding_length", 64),
                        ("feed_forward_length", 128), ("attention.head_count", 2),
                        ("attention.head_count_kv", 1)):
        fields[f"llama.{name}"] = MetadataField(V.UINT32, value)
    fields["llama.attention.layer_norm_rms_epsilon"] = MetadataField(V.FLOAT32, 1e-6)
    for key, value in keys.items():
        if value is None:
            continue
        if key in dtypes:
            value = np.asarray(value, dtype=dtypes[key])
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = MetadataField(V.UINT32, int(value))
        elif isinstance(value, (list, tuple)):
            value = [str(v) for v in value]
        fields[key] = value
    write_gguf(path, fields, {}, overwrite=True)


def code_points(everything: bool) -> list[int]:
    """Code points to try one by one: all of the BMP (bar surrogates) and every 7th above;
    or, where a sample will do, the code points on both sides of every change of
    llama.cpp's category or white space, and every 61st."""
    if everything:
        return [c for c in range(0x10000) if not 0xD800 <= c < 0xE000] + list(
            range(0x10000, 0x110000, 7))
    from pyggml.text import pretokenize
    white_space = set(re.findall(f"[{pretokenize.WHITESPACE}]", "".join(map(chr, range(0x3001)))))
    keep, previous = set(range(0, 0x110000, 61)), None
    for c in range(0x110000):
        kind = (pretokenize.llama_category(c), chr(c) in white_space)
        if kind != previous:
            keep.update((c - 1, c))
            previous = kind
    return sorted(c for c in keep if c >= 0 and not 0xD800 <= c < 0xE000)


def assert_code_points_in_context_match(v: Vocab, code_points: list[int],
                                        chunk: int = 4096) -> None:
    """Each code point between letters, digits, spaces, apostrophes and newlines."""
    for start in range(0, len(code_points), chunk):
        text = "".join(f"{c}a{c}1 {c}'{c}s\t{c}\n{c}{c}1234é"
                       for c in map(chr, code_points[start:start + chunk]))
        ours = v.tokenizer.encode(text, add_special=False)
        theirs = v.oracle_encode(text, False, False)
        assert ours == theirs, (f"{v.name}: code points {hex(code_points[start])}..: "
                                f"{first_difference(ours, theirs)}")


def corpus_bytes(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def first_difference(a, b) -> str:
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"index {i}: ours {a[i:i + 8]} llama.cpp {b[i:i + 8]}"


def assert_same_encoding(v: Vocab, text: str | bytes) -> None:
    for add_special in (False, True):
        for parse_special in (False, True):
            ours = v.tokenizer.encode(text, add_special=add_special, parse_special=parse_special)
            theirs = v.oracle_encode(text, add_special, parse_special)
            assert ours == theirs, (f"{v.name}: {text[:80]!r} add_special={add_special} "
                                    f"parse_special={parse_special}\n"
                                    f"first difference at {first_difference(ours, theirs)}")


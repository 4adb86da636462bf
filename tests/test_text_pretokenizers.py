"""Every tokenizer.ggml.pre name llama.cpp 0.3.36 knows, against llama.cpp, and the
Unicode tables the pre-tokenizers and WordPiece read.

Few names come with a vocabulary file of their own, so each name is written into a copy
of one: Qwen2.5's byte-level vocabulary for byte-level names, Gemma 4's for the names
that run BPE over raw UTF-8 (tokenizer.ggml.model "gpt2" with pre "gemma4", ...).  The
copies lack bos/eos ids and add_bos, so llama.cpp's defaults for each name show too.
"""
from __future__ import annotations

import ctypes
import os
import re
import unicodedata

import numpy as np
import pytest
from vocab_oracle import (vocab_of, VOCAB_DIR, assert_code_points_in_context_match, assert_same_encoding,
                      code_points, corpus_bytes, file_metadata, llama_cpp, load_vocab,
                      write_vocab_gguf)
from hypothesis import given, settings
from hypothesis import strategies as st
from test_text_vocab_files import ATOMS

from pyggml.errors import TokenizerError
from pyggml.text import pretokenize
from pyggml.text.tokenizer import _PRE, Tokenizer

pytestmark = pytest.mark.oracle

RAW_UTF8 = sorted(name for name, (_, settings) in _PRE.items() if "raw_utf8" in settings)
BYTE_LEVEL = sorted(name for name in _PRE if name not in RAW_UTF8)
# one name per pre-tokenizer kind and settings, for the longer tests; these run in a long
# run only (PYGGML_LONG_TESTS=1), to keep the suite's time: the categories of every code
# point and real vocabularies in context are checked in every run
ONE_PER_KIND = sorted({_PRE[name]: name for name in sorted(_PRE, reverse=True)}.values())
LONG = os.environ.get("PYGGML_LONG_TESTS") == "1"


@pytest.fixture(scope="session")
def pre_vocab(tmp_path_factory):
    """pre_vocab(name) -> Vocab: a copy of a real vocabulary with tokenizer.ggml.pre = name
    (one at a time: a vocabulary and its oracle hold some 100 MB)."""
    folder = tmp_path_factory.mktemp("pre")
    last = {}

    def get(name: str):
        if name not in last:
            last.clear()
            raw = name in RAW_UTF8
            source = file_metadata(VOCAB_DIR / f"ggml-vocab-{'gemma-4' if raw else 'qwen2'}.gguf")
            path = folder / f"{name}.gguf"
            write_vocab_gguf(path, source, **{
                "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": name,
                "tokenizer.ggml.add_bos_token": None, "tokenizer.ggml.add_space_prefix": None,
                **({} if raw else {"tokenizer.ggml.bos_token_id": None,
                                   "tokenizer.ggml.eos_token_id": None})})
            last[name] = load_vocab(name, path)
            path.unlink()
        return last[name]

    return get


@pytest.mark.parametrize("name", sorted(_PRE))
def test_pre_tokenizer_matches_llama_cpp(pre_vocab, name):
    """The corpus and the flags for every name; for one name of each kind and settings
    also random texts and a sample of code points in context (the pre-tokenizers see a
    code point only through its category, which
    test_categories_match_llama_cpp_for_every_code_point checks for all of them)."""
    v = pre_vocab(name)
    tok, vocab = v.tokenizer, v.vocab
    assert tok.bos_id == (llama_cpp.llama_vocab_bos(vocab) if llama_cpp.llama_vocab_bos(vocab) >= 0
                          else None)
    assert tok.add_bos == llama_cpp.llama_vocab_get_add_bos(vocab)
    text = b"".join(corpus_bytes(f) for f in ("english.txt", "code.txt", "digits.txt",
                                              "mixed_scripts.txt", "special_tokens.txt",
                                              "tricky.txt", "whitespace.txt", "chinese.txt"))
    assert_same_encoding(v, text)
    ids = tok.encode(text, parse_special=True)
    for special in (False, True):
        assert tok.decode(ids, special) == v.oracle_decode(ids, special)
    if name not in ONE_PER_KIND or not LONG:
        return

    @settings(max_examples=150, deadline=None, database=None)
    @given(st.lists(st.sampled_from(ATOMS), max_size=40).map("".join))
    def check(text):
        assert_same_encoding(v, text)

    check()
    assert_code_points_in_context_match(v, code_points(False))


def test_every_llama_cpp_pre_tokenizer_has_its_regexes():
    """Each kind compiles, and EQUIVALENTS stands in only for what llama.cpp's own
    scanners (or a fold) do; translate() refuses what it cannot translate."""
    for kind in pretokenize.PRE_TOKENIZERS:
        assert pretokenize.PreTokenizer(kind).steps
    with pytest.raises(ValueError, match=r"\\b"):
        pretokenize.translate("\\d+\\b")


@pytest.mark.parametrize("changes, message", [
    ({"tokenizer.ggml.pre": "gpt2"}, "'gpt2' is not supported"),
    ({"tokenizer.ggml.pre": "whitespace"}, "'whitespace' goes with tokenizer.ggml.model"),
    ({"tokenizer.ggml.merges": None}, "tokenizer.ggml.merges"),
    ({"tokenizer.ggml.model": "t5"}, "'t5'"),
    ({"tokenizer.ggml.model": "rwkv"}, "'rwkv'"),
])
def test_unusable_metadata_is_a_tokenizer_error(changes, message):
    metadata = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen2",
                "tokenizer.ggml.tokens": ["a", "b", "ab"], "tokenizer.ggml.merges": ["a b"]}
    metadata.update(changes)
    with pytest.raises(TokenizerError, match=message):
        Tokenizer.from_metadata({k: v for k, v in metadata.items() if v is not None})


# ----------------------------------------------------------------------------- Unicode tables

def _llama_cpp_function(name: str, restype):
    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libllama.so"))
    function = getattr(lib, name)
    function.argtypes = [ctypes.c_uint32]
    function.restype = restype
    return function


# llama.cpp's category flag bits (unicode.h) -> our category letters
_CATEGORY_OF_FLAG = {0x01: "U", 0x02: "N", 0x04: "L", 0x08: "Z", 0x10: "M", 0x20: "P",
                     0x40: "S", 0x80: "C"}


def test_categories_match_llama_cpp_for_every_code_point():
    """llama_category() and the regex classes, code point by code point, U+0000..U+10FFFF,
    against llama.cpp's own unicode_cpt_flags_from_cpt (a struct of uint16 bit fields
    that comes back in a register like a uint16_t)."""
    flags = _llama_cpp_function("_Z26unicode_cpt_flags_from_cptj", ctypes.c_uint16)
    n = 0x110000
    theirs = np.array([flags(c) for c in range(n)], dtype=np.uint16)
    ours = [pretokenize.llama_category(c) for c in range(n)]
    wrong = [c for c in range(n) if ours[c] != _CATEGORY_OF_FLAG[theirs[c] & 0xFF]]
    assert not wrong, (f"{len(wrong)} code points differ from llama.cpp, e.g. "
                       f"{[hex(c) for c in wrong[:10]]} (Python's unicodedata is Unicode "
                       f"{unicodedata.unidata_version})")
    # the text our regexes see: code points above U+FFFF replaced by their BMP stand-ins
    everything = "".join(map(chr, range(0x10000))) + pretokenize.collapse_astral(
        "".join(map(chr, range(0x10000, n))))
    for name, body, bit in [("letter", pretokenize.char_class("L"), 0x0004),
                            ("number", pretokenize.char_class("N"), 0x0002),
                            ("punctuation", pretokenize.char_class("P"), 0x0020),
                            ("mark", pretokenize.char_class("M"), 0x0010),
                            ("symbol", pretokenize.char_class("S"), 0x0040),
                            ("white space", pretokenize.WHITESPACE, 0x0100)]:
        matches = np.zeros(n, dtype=bool)
        matches[[m.start() for m in re.finditer(f"[{body}]", everything)]] = True
        wrong = np.flatnonzero(matches != ((theirs & bit) != 0))
        assert wrong.size == 0, f"{name}: e.g. {[hex(c) for c in wrong[:10]]}"


def test_han_stand_ins_keep_kimi_k2s_han_class():
    is_han = re.compile(f"[{pretokenize.HAN}]")
    for first, last in pretokenize.HAN_RANGES:
        for code in (first, last, (first + last) // 2):
            assert is_han.match(pretokenize.collapse_astral(chr(code)))
            assert pretokenize.llama_category(code) == pretokenize.llama_category(
                ord(pretokenize.collapse_astral(chr(code))))


def test_lower_case_matches_llama_cpp_for_every_code_point():
    """WordPiece's lowercasing (str.lower()'s first code point) against unicode_tolower."""
    lower = _llama_cpp_function("_Z15unicode_tolowerj", ctypes.c_uint32)
    wrong = [c for c in range(0x110000)
             if not 0xD800 <= c < 0xE000 and ord(chr(c).lower()[0]) != lower(c)]
    assert not wrong, [hex(c) for c in wrong[:10]]

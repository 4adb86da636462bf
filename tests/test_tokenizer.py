"""The byte-level BPE tokenizer, token for token against llama.cpp (llama-cpp-python).

Oracle: ``llama_cpp.Llama(model_path, vocab_only=True)`` on the same GGUF file; our
tokenizer gets ``pyggml.open(path).metadata`` (lazy string arrays), as in production.
Vocabularies (one per pre-tokenizer we support):

    qwen2      fixture qwen2-tiny-f32: the real Qwen2.5 vocabulary, pre "qwen2"
    smollm     fixture smollm2-q4_1: the real SmolLM2-135M file, pre "smollm"
    llama-bpe  the Qwen2.5 vocabulary re-written with pre "llama-bpe" and no add_bos key
               (llama.cpp then adds BOS by default and tries whole words before merging)
    gpt-2      the SmolLM2 vocabulary with pre "gpt-2", add_bos and add_eos both true
    default    the Qwen2.5 vocabulary with no pre key (llama.cpp's four "default" regexes)
    damaged-*  a hand-made vocabulary with everything a file can get wrong (DAMAGED below),
               with pre "qwen2" and "llama-bpe"

The corpus in tests/data/corpus/ is tokenized whole and line by line, with and without
parse_special and add_special.
"""
from __future__ import annotations

import ctypes
import dataclasses
import os
import random
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import make_model
import pyggml
from pyggml.errors import TokenizerError, UsageError
from pyggml.text import pretokenize
from pyggml.text.tokenizer import BYTE_TO_CHAR, StreamDecoder, Tokenizer

llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

pytestmark = pytest.mark.oracle

CORPUS = Path(__file__).parent / "data" / "corpus"
CORPUS_FILES = sorted(p.name for p in CORPUS.glob("*.txt"))
VARIANTS = ["qwen2", "smollm", "llama-bpe", "gpt-2", "default",
            "damaged-qwen2", "damaged-llama-bpe"]

# A vocabulary that breaks the usual rules: merges whose result is not a token ("c d"), a
# merge of such a non-token ("cd e"), two merges making the same token, a repeated merge,
# merges llama.cpp cannot split (" x", "x "), a token only reachable whole ("bcab" under
# llama3's ignore_merges), an empty token, tokens of every type, overlapping special
# tokens ("<|a|>", "|>b", "<|"), a control token named "unused"; with llama-bpe, also the
# SentencePiece flag add_space_prefix (BPE ignores it, except that detokenizing drops the
# first token's leading space).
DAMAGED_TOKENS = [  # (text, token type) after the 256 byte-level characters
    ("ab", 1), ("bc", 1), ("abc", 1), ("cde", 1), ("Ġa", 1), ("ĠĠ", 1), ("aa", 1), ("aaa", 1),
    ("bcab", 1), ("<s>", 3), ("</s>", 3), ("<|a|>", 3), ("|>b", 3), ("<|", 4), ("[PAD0]", 5),
    ("zz", 0), ("", 1), ("<0x41>", 6), ("xunusedx", 3)]
DAMAGED_MERGES = ["b c", "a b", "ab c", "a bc", "c d", "cd e", "a b", " x", "x ", "Ġ a", "Ġ Ġ",
                  "a a", "aa a", "bc ab", "z z"]


# ----------------------------------------------------------------------------- oracle side

def file_metadata(path) -> dict:
    """The metadata our tokenizer gets in production: pyggml.open(path).metadata."""
    with pyggml.open(path) as f:
        return f.metadata


def write_vocab_gguf(path, metadata: dict, *, pre: str | None, add_bos: bool | None = None,
                     add_eos: bool | None = None, add_space_prefix: bool | None = None) -> None:
    """A vocabulary-only GGUF (no tensors) with metadata's vocabulary and the given flags."""
    writer = gguf.GGUFWriter(path, "qwen2")
    writer.add_block_count(1)
    writer.add_context_length(256)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("gpt2")
    if pre is not None:
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(list(metadata["tokenizer.ggml.tokens"]))
    writer.add_token_types(list(metadata["tokenizer.ggml.token_type"]))
    writer.add_token_merges(list(metadata["tokenizer.ggml.merges"]))
    writer.add_bos_token_id(metadata["tokenizer.ggml.bos_token_id"])
    writer.add_eos_token_id(metadata["tokenizer.ggml.eos_token_id"])
    if add_bos is not None:
        writer.add_add_bos_token(add_bos)
    if add_eos is not None:
        writer.add_add_eos_token(add_eos)
    if add_space_prefix is not None:
        writer.add_add_space_prefix(add_space_prefix)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@dataclasses.dataclass
class Vocab:
    name: str
    tokenizer: Tokenizer
    llm: object                       # llama_cpp.Llama(vocab_only=True)

    @property
    def vocab(self):
        return llama_cpp.llama_model_get_vocab(self.llm.model)

    def oracle_encode(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)

    def oracle_piece(self, token_id: int, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(1024)
        n = llama_cpp.llama_token_to_piece(self.vocab, token_id, buf, len(buf), 0, special)
        assert 0 <= n <= len(buf)
        return buf.raw[:n]

    def oracle_decode(self, ids: list[int], special: bool) -> str:
        array = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
        size = 8 * len(ids) + 64
        while True:                    # a negative result is the size it needs
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_detokenize(self.vocab, array, len(ids), buf, size, False, special)
            if n >= 0:
                return buf.raw[:n].decode("utf-8", "replace")
            size = -n


@pytest.fixture(scope="session")
def vocabs(model_path, tmp_path_factory):
    """vocabs(name) -> Vocab, made on first use (see the module docstring)."""
    made = {}

    def get(name: str) -> Vocab:
        if name not in made:
            make_model._quiet_llama()
            if name in ("qwen2", "smollm"):
                path = model_path("qwen2-tiny-f32" if name == "qwen2" else "smollm2-q4_1")
            elif name.startswith("damaged-"):
                tokens = BYTE_TO_CHAR + [text for text, _ in DAMAGED_TOKENS]
                path = tmp_path_factory.mktemp("vocab") / f"{name}.gguf"
                write_vocab_gguf(path, {
                    "tokenizer.ggml.tokens": tokens,
                    "tokenizer.ggml.token_type": [1] * 256 + [t for _, t in DAMAGED_TOKENS],
                    "tokenizer.ggml.merges": DAMAGED_MERGES,
                    "tokenizer.ggml.bos_token_id": tokens.index("<s>"),
                    "tokenizer.ggml.eos_token_id": tokens.index("</s>")},
                    pre=name.removeprefix("damaged-"), add_space_prefix=name == "damaged-llama-bpe")
            else:
                fixture, pre, add_bos, add_eos = {
                    "llama-bpe": ("qwen2-tiny-f32", "llama-bpe", None, None),
                    "gpt-2": ("smollm2-q4_1", "gpt-2", True, True),
                    "default": ("qwen2-tiny-f32", None, None, None)}[name]
                path = tmp_path_factory.mktemp("vocab") / f"{name}.gguf"
                write_vocab_gguf(path, file_metadata(model_path(fixture)), pre=pre,
                                 add_bos=add_bos, add_eos=add_eos)
            llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
            made[name] = Vocab(name, Tokenizer.from_metadata(file_metadata(path)), llm)
        return made[name]

    return get


def corpus_text(name: str) -> str:
    return (CORPUS / name).read_bytes().decode("utf-8")


def assert_same_encoding(v: Vocab, text: str) -> None:
    for add_special in (False, True):
        for parse_special in (False, True):
            ours = v.tokenizer.encode(text, add_special=add_special, parse_special=parse_special)
            theirs = v.oracle_encode(text, add_special, parse_special)
            assert ours == theirs, (f"{v.name}: {text[:80]!r} add_special={add_special} "
                                    f"parse_special={parse_special}\n"
                                    f"first difference at {_first_difference(ours, theirs)}")


def _first_difference(a, b) -> str:
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"index {i}: ours {a[i:i + 8]} llama.cpp {b[i:i + 8]}"


# ----------------------------------------------------------------------------- Unicode classes

def llama_cpp_codepoint_flags():
    """llama.cpp's own unicode_cpt_flags_from_cpt(cpt) -> uint16 flags (unicode.h), via ctypes.

    The function is a C++ symbol of libllama; its result, a struct of uint16 bit
    fields, comes back in a register like a uint16_t.
    """
    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libllama.so"))
    flags = lib._Z26unicode_cpt_flags_from_cptj
    flags.argtypes = [ctypes.c_uint32]
    flags.restype = ctypes.c_uint16
    return flags


def test_unicode_classes_match_llama_cpp_for_every_code_point():
    """Letters, numbers, punctuation and white space, code point by code point, U+0000..U+10FFFF."""
    flags = llama_cpp_codepoint_flags()
    n = 0x110000
    theirs = np.array([flags(c) for c in range(n)], dtype=np.uint16)
    assert theirs[ord("A")] & 0x0004 and theirs[ord("7")] & 0x0002 and theirs[0x3000] & 0x0100
    # the text our regexes see: code points above U+FFFF replaced by their BMP stand-ins
    everything = "".join(map(chr, range(0x10000))) + pretokenize.collapse_astral(
        "".join(map(chr, range(0x10000, n))))
    for name, body, bit in [("letter", pretokenize.char_class("L"), 0x0004),
                            ("number", pretokenize.char_class("N"), 0x0002),
                            ("punctuation", pretokenize.char_class("P"), 0x0020),
                            ("white space", pretokenize.WHITESPACE, 0x0100)]:
        ours = np.zeros(n, dtype=bool)
        ours[[m.start() for m in re.finditer(f"[{body}]", everything)]] = True
        wrong = np.flatnonzero(ours != ((theirs & bit) != 0))
        assert wrong.size == 0, (f"{name}: {wrong.size} code points differ from llama.cpp, "
                                 f"e.g. {[hex(c) for c in wrong[:10]]} (Python's unicodedata "
                                 f"is Unicode {unicodedata.unidata_version})")


# ----------------------------------------------------------------------------- encoding

@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("filename", CORPUS_FILES)
def test_corpus_file_matches_llama_cpp(vocabs, name, filename):
    assert_same_encoding(vocabs(name), corpus_text(filename))


@pytest.mark.parametrize("name", VARIANTS)
def test_corpus_lines_match_llama_cpp(vocabs, name):
    v = vocabs(name)
    for filename in CORPUS_FILES:
        for line in corpus_text(filename).splitlines(keepends=True):
            assert_same_encoding(v, line)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_bmp_code_point_in_context_matches_llama_cpp(vocabs, name):
    """Each code point between letters, digits, spaces, apostrophes and newlines.

    All of the BMP (bar surrogates) and every 7th code point above it, in chunks.
    """
    v = vocabs(name)
    code_points = [c for c in range(0x10000) if not 0xD800 <= c < 0xE000]
    code_points += range(0x10000, 0x110000, 7)
    chunk = 1024
    for start in range(0, len(code_points), chunk):
        text = "".join(f"{c}a{c}1 {c}'{c}s\t{c}\n"
                       for c in map(chr, code_points[start:start + chunk]))
        ours = v.tokenizer.encode(text, add_special=False)
        theirs = v.oracle_encode(text, False, False)
        assert ours == theirs, (f"{name}: code points {hex(code_points[start])}.."
                                f"{hex(code_points[min(start + chunk, len(code_points)) - 1])}: "
                                f"{_first_difference(ours, theirs)}")


# pieces that stress the pre-tokenizers where they differ: contractions in both cases,
# runs of white space of every kind before letters, digits and line ends, special tokens
ATOMS = (list("aZé中ね1٣²Ⅻ'’\"!?.,-_ \t\n\r\v\f#$+<=>^~|`") +
         ["'s", "'S", "'re", "'VE", "'ll", "'d", "'m", "'t", "  ", "   ", "\r\n", "\n\n",
          "\u00a0", "\u2028", "\u3000", "\u0085", "\u200d", "\u0301", "e\u0301", "😀", "👍🏽",
          "🏳️‍🌈", "12345", "3.14", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>",
          "<|im_start", "|>", "<filename>", "[PAD151700]", "hello", " world", "IT'S", "𑼄", "𮯰",
          # for the damaged vocabulary
          "abc", "cde", "bcab", "zz", "aaa", "<|a|>", "|>b", "<|", "<s>", "</s>", "xunusedx",
          "[PAD0]"])


@pytest.mark.parametrize("name", VARIANTS)
def test_random_texts_match_llama_cpp(vocabs, name):
    v = vocabs(name)

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.lists(st.sampled_from(ATOMS), max_size=40).map("".join))
    def check(text):
        assert_same_encoding(v, text)

    check()


# ----------------------------------------------------------------------------- vocabulary facts

@pytest.mark.parametrize("name", VARIANTS)
def test_special_ids_and_flags_match_llama_cpp(vocabs, name):
    v = vocabs(name)
    tok, vocab = v.tokenizer, v.vocab
    assert tok.n_vocab == llama_cpp.llama_vocab_n_tokens(vocab)
    assert tok.bos_id == llama_cpp.llama_vocab_bos(vocab)
    assert tok.eos_id == llama_cpp.llama_vocab_eos(vocab)
    assert tok.add_bos == llama_cpp.llama_vocab_get_add_bos(vocab)
    assert tok.add_eos == llama_cpp.llama_vocab_get_add_eos(vocab)
    eog = {i for i in range(tok.n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)}
    assert tok.eog_ids == eog


def test_expected_flags_of_the_test_vocabularies(vocabs):
    """The variants really exercise what they are meant to (hand-checked facts)."""
    qwen, llama_bpe, gpt2 = vocabs("qwen2"), vocabs("llama-bpe"), vocabs("gpt-2")
    assert qwen.tokenizer.texts[qwen.tokenizer.eos_id] == "<|im_end|>"
    eog_texts = {qwen.tokenizer.texts[i] for i in qwen.tokenizer.eog_ids}
    assert {"<|im_end|>", "<|endoftext|>"} <= eog_texts
    assert not qwen.tokenizer.add_bos and llama_bpe.tokenizer.add_bos     # llama3 default
    assert gpt2.tokenizer.add_bos and gpt2.tokenizer.add_eos
    ids = gpt2.tokenizer.encode("hi")
    assert ids[0] == gpt2.tokenizer.bos_id and ids[-1] == gpt2.tokenizer.eos_id


@pytest.mark.parametrize("name", ["qwen2", "smollm", "damaged-qwen2"])
def test_every_token_piece_matches_llama_cpp(vocabs, name):
    v = vocabs(name)
    for special in (False, True):
        wrong = [i for i in range(v.tokenizer.n_vocab)
                 if v.tokenizer.token_to_piece(i, special) != v.oracle_piece(i, special)]
        assert not wrong, f"special={special}: ids {wrong[:10]}"


# ----------------------------------------------------------------------------- decoding

@pytest.mark.parametrize("name", VARIANTS)
def test_decode_matches_llama_detokenize(vocabs, name):
    """Corpus ids, random ids and apostrophe/space mixes (clean_spaces) decode like llama.cpp."""
    v = vocabs(name)
    tok = v.tokenizer
    rng = random.Random(0)
    sequences = [tok.encode(corpus_text(f), parse_special=True) for f in CORPUS_FILES]
    sequences += [[rng.randrange(tok.n_vocab) for _ in range(rng.randrange(1, 30))]
                  for _ in range(200)]
    spaced = tok.encode(" ' 's 'm 're 've 'll 'd 't ' ' ' x ?! . , '' ' 'S", add_special=False)
    sequences += [[rng.choice(spaced) for _ in range(12)] for _ in range(200)]
    for ids in sequences:
        for special in (False, True):
            assert tok.decode(ids, special) == v.oracle_decode(ids, special), (ids, special)


@pytest.mark.parametrize("name", ["qwen2", "smollm"])
@pytest.mark.parametrize("filename", CORPUS_FILES)
def test_decode_inverts_encode(vocabs, name, filename):
    v = vocabs(name)
    text = corpus_text(filename)
    for special in (False, True):
        ids = v.tokenizer.encode(text, add_special=False, parse_special=special)
        assert v.oracle_decode(ids, special) == text          # llama.cpp round-trips it too
        assert v.tokenizer.decode(ids, special) == text


def test_stream_decoder_holds_back_unfinished_characters(vocabs):
    tok = vocabs("qwen2").tokenizer
    first, second = (tok.token_to_id[BYTE_TO_CHAR[b]] for b in "é".encode())   # C3 A9
    stream = StreamDecoder(tok)
    assert stream.add(first) == ""
    assert stream.add(second) == "é"
    assert stream.add(first) == ""
    assert stream.flush() == "\ufffd"          # an unfinished character at the end


@pytest.mark.parametrize("name", ["qwen2", "smollm"])
def test_stream_decoder_prints_every_character_once(vocabs, name):
    tok = vocabs(name).tokenizer
    text = corpus_text("chinese.txt") + corpus_text("emoji.txt") + corpus_text("mixed_scripts.txt")
    ids = tok.encode(text, add_special=False)
    split = [i for i in ids if _is_incomplete_utf8(tok.token_to_piece(i))]
    assert split, "no token splits a character: this test would not test anything"
    stream = StreamDecoder(tok)
    pieces = [stream.add(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def _is_incomplete_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


# ----------------------------------------------------------------------------- bad input

def _tiny_metadata(**changes) -> dict:
    tokens = ["a", "b", "ab", "Ġ", "Ġa", "<|special|>"] + [f"x{i}" for i in range(10)]
    metadata = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen2",
                "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": ["a b", "Ġ a"],
                "tokenizer.ggml.token_type": [1] * 5 + [3] + [1] * 10}
    metadata.update(changes)
    return {k: v for k, v in metadata.items() if v is not None}


def test_tiny_vocabulary_by_hand():
    """A vocabulary small enough to check by hand: merges, byte fallback, special tokens."""
    tok = Tokenizer.from_metadata(_tiny_metadata())
    assert tok.encode("ab a", add_special=False) == [2, 4]                # "ab", "Ġa"
    assert tok.encode("ba", add_special=False) == [1, 0]                  # no "b a" merge
    assert tok.encode("<|special|>", parse_special=True) == [5]
    assert tok.decode([2, 4, 5]) == "ab a" and tok.decode([5], special=True) == "<|special|>"
    assert tok.bos_id == tok.eos_id == 11 and tok.eog_ids == {11}        # llama.cpp's BPE default


@pytest.mark.parametrize("changes, message", [
    ({"tokenizer.ggml.model": None}, "no tokenizer"),
    ({"tokenizer.ggml.model": "t5"}, "'t5'"),
    ({"tokenizer.ggml.tokens": None}, "tokenizer.ggml.tokens"),
    ({"tokenizer.ggml.merges": None}, "tokenizer.ggml.merges"),
    ({"tokenizer.ggml.tokens": []}, "empty"),
    ({"tokenizer.ggml.pre": "gpt2"}, "'gpt2' is not supported"),
    ({"tokenizer.ggml.token_type": [1, 1]}, "one integer per token"),
    ({"tokenizer.ggml.tokens": ["a", "b", "a"]}, "appears twice"),
    ({"tokenizer.ggml.tokens": ["a", 7]}, "array of strings"),
    ({"tokenizer.ggml.add_eos_token": True, "tokenizer.ggml.tokens": ["a", "b"],
      "tokenizer.ggml.token_type": [1, 1]}, "no EOS token"),
])
def test_unusable_metadata_is_a_tokenizer_error(changes, message):
    with pytest.raises(TokenizerError, match=message.replace("|", r"\|")):
        Tokenizer.from_metadata(_tiny_metadata(**changes))


def test_bad_arguments_are_usage_errors():
    tok = Tokenizer.from_metadata(_tiny_metadata())
    with pytest.raises(UsageError, match="str or bytes"):
        tok.encode(12345)
    with pytest.raises(UsageError, match="token id 16"):
        tok.token_to_piece(16)
    with pytest.raises(UsageError, match="token id -1"):
        tok.decode([-1])

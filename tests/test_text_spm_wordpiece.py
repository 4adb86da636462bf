"""SentencePiece and WordPiece on small vocabularies made to test one rule each, against
llama.cpp where it has an answer, and by hand where it has none (it crashes)."""
from __future__ import annotations

import pytest
from vocab_oracle import assert_same_encoding, load_vocab, vocab_of, write_vocab_gguf

from pyggml.errors import TokenizerError, UsageError
from pyggml.text.spm import SpmTokenizer
from pyggml.text.tokenizer import StreamDecoder, Tokenizer

pytestmark = pytest.mark.oracle

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6
BYTES = [(f"<0x{b:02X}>", 0.0, BYTE) for b in range(256)]

# (text, score, type): equal scores for "ab" and "bc" (the leftmost pair wins), a token
# across a word boundary ("x▁y", so no cut before that '▁'), merges whose results are
# control and user-defined tokens, a '▁▁' token
SPM_TOKENS = [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL), *BYTES,
              ("▁", -1.0, NORMAL), ("a", -1.0, NORMAL), ("b", -1.0, NORMAL), ("c", -1.0, NORMAL),
              ("x", -1.0, NORMAL), ("y", -1.0, NORMAL), ("ab", -2.0, NORMAL), ("bc", -2.0, NORMAL),
              ("▁a", -3.0, NORMAL), ("▁ab", -1.5, NORMAL), ("abc", -4.0, NORMAL),
              ("x▁", -5.0, NORMAL), ("x▁y", -0.5, NORMAL), ("▁▁", -2.5, NORMAL),
              ("cc", -6.0, CONTROL), ("<u>", 0.0, USER_DEFINED), ("é", -1.0, NORMAL),
              ("▁é", -2.0, NORMAL)]
SPM_TEXTS = ["abc", "a b c", "ab bc", "bcab", "x y", "x  y", " x y ", "x▁y", "é!", "ééé",
             "ccc", "a<u>b", "<s>ab</s>", "", " ", "   a", "€", "ab\nbc", "\xe9\u0301"]


def _spm_metadata(tokens, **keys) -> dict:
    return {"tokenizer.ggml.model": "llama",
            "tokenizer.ggml.tokens": [t for t, _, _ in tokens],
            "tokenizer.ggml.scores": [s for _, s, _ in tokens],
            "tokenizer.ggml.token_type": [k for _, _, k in tokens], **keys}


@pytest.fixture(scope="module")
def spm_vocabs(tmp_path_factory):
    made = {}

    def get(**keys):
        name = ",".join(f"{k}={v}" for k, v in sorted(keys.items()))
        if name not in made:
            path = tmp_path_factory.mktemp("spm") / "vocab.gguf"
            write_vocab_gguf(path, _spm_metadata(SPM_TOKENS, **keys))
            made[name] = load_vocab(f"spm[{name}]", path)
        return made[name]

    return get


@pytest.mark.parametrize("keys", [{}, {"tokenizer.ggml.add_space_prefix": False},
                                  {"tokenizer.ggml.add_eos_token": True}])
def test_small_sentencepiece_vocabulary_matches_llama_cpp(spm_vocabs, keys):
    v = spm_vocabs(**keys)
    for text in SPM_TEXTS:
        assert_same_encoding(v, text)
        ids = v.tokenizer.encode(text, parse_special=True)
        for special in (False, True):
            assert v.tokenizer.decode(ids, special) == v.oracle_decode(ids, special)


def test_sentencepiece_by_hand(spm_vocabs):
    tok = spm_vocabs().tokenizer
    ids = tok.token_to_id
    # "▁abc": ▁a, ab, bc are all pairs; ab and bc tie at -2 but "▁ab" (-1.5) is not a pair
    # yet; ▁a (-3) loses to ab (leftmost of the tie), then ▁+ab -> ▁ab, then ▁ab+c is no token
    assert tok.encode("abc", add_special=False) == [ids["▁ab"], ids["c"]]
    # a token across the word boundary is found: no cut before that '▁'
    assert tok.encode("x y", add_special=False) == [ids["▁"], ids["x▁y"]]
    # '€' (E2 82 AC) is no token: its bytes
    assert tok.encode("€", add_special=False) == [ids["▁"], ids["<0xE2>"], ids["<0x82>"],
                                                  ids["<0xAC>"]]
    assert tok.decode([ids["<s>"], ids["▁ab"], ids["▁"], ids["<0xE2>"], ids["<0x82>"],
                       ids["<0xAC>"]]) == " ab €"     # only the first token loses its space


def test_sentencepiece_keeps_bytes_that_are_not_utf8(spm_vocabs):
    v = spm_vocabs()
    for text in [b"a\xffb", b"\xc3", b"\xe2\x96 ab", b"\xf0a b c",
                 "a\udcff".encode("utf-8", "surrogatepass")]:
        assert_same_encoding(v, text)
    assert v.tokenizer.encode("a\udcff", add_special=False) == v.tokenizer.encode(
        "a\udcff".encode("utf-8", "surrogatepass"), add_special=False)


def test_bytes_without_tokens_become_unknown():
    """llama.cpp throws std::out_of_range (and the process ends) for a byte with neither
    a <0xXX> token nor a one-byte token; pyggml gives the unknown token (llama.cpp's
    default: id 0)."""
    tokens = [("▁", -1.0, NORMAL), ("a", -1.0, NORMAL), ("<unk>", 0.0, UNKNOWN)]
    tok = Tokenizer.from_metadata(_spm_metadata(tokens, **{"tokenizer.ggml.unknown_token_id": 2}))
    assert tok.encode("a€", add_special=False) == [0, 1, 2, 2, 2]
    tok = Tokenizer.from_metadata(_spm_metadata(tokens))
    assert tok.encode("a€", add_special=False) == [0, 1, 0, 0, 0]


def test_sentencepiece_defaults_and_bad_metadata():
    tok = Tokenizer.from_metadata(_spm_metadata(SPM_TOKENS))
    assert isinstance(tok, SpmTokenizer)
    assert (tok.bos_id, tok.eos_id, tok.special_ids["unk"]) == (1, 2, 0)   # llama.cpp's defaults
    assert tok.add_bos and not tok.add_eos and tok.add_space_prefix
    with pytest.raises(TokenizerError, match="one number per token"):
        Tokenizer.from_metadata({**_spm_metadata(SPM_TOKENS), "tokenizer.ggml.scores": [1.0]})
    with pytest.raises(UsageError, match="str or bytes"):
        tok.encode(12345)


def test_stream_decoder_joins_byte_tokens_into_characters(spm_vocabs):
    tok = spm_vocabs().tokenizer
    ids = tok.encode("€é€", add_special=False)
    stream = StreamDecoder(tok, detokenize=True)
    emitted = [stream.add(i) for i in ids] + [stream.flush()]
    assert [e for e in emitted if e] == ["€", "é", "€"] and "".join(emitted) == "€é€"


# ----------------------------------------------------------------------------- WordPiece

WPM_TOKENS = [("[PAD]", CONTROL), ("[UNK]", UNKNOWN), ("[CLS]", CONTROL), ("[SEP]", CONTROL),
              ("[MASK]", CONTROL), ("▁hello", NORMAL), ("▁he", NORMAL), ("llo", NORMAL),
              ("▁world", NORMAL), ("▁!", NORMAL), ("▁,", NORMAL), ("▁cafe", NORMAL),
              ("▁中", NORMAL), ("▁$", NORMAL), ("▁a", NORMAL), ("b", NORMAL), ("▁ab", NORMAL),
              ("▁i", NORMAL), ("▁é", NORMAL), ("▁ᾳ", NORMAL), ("▁α", NORMAL)]
WPM_TEXTS = ["hello world", "Héllo, WORLD!", "hello", "helloworld", "café", "CAFÉ", "中中",
             "a$b", "abab", "ab ab", "İ", "x", "  \t ", "a\x00b\u200bc\ufffd", "ᾼ", "[MASK] hello",
             "é", "\u0301", "ab  \u3000 ab"]


def _wpm_metadata(**keys) -> dict:
    return {"tokenizer.ggml.model": "bert",
            "tokenizer.ggml.tokens": [t for t, _ in WPM_TOKENS],
            "tokenizer.ggml.token_type": [k for _, k in WPM_TOKENS],
            "tokenizer.ggml.bos_token_id": 2, "tokenizer.ggml.seperator_token_id": 3,
            "tokenizer.ggml.unknown_token_id": 1, **keys}


@pytest.mark.parametrize("keys", [{}, {"tokenizer.ggml.normalizer.lowercase": False},
                                  {"tokenizer.ggml.normalizer.strip_accents": False}])
def test_small_wordpiece_vocabulary_matches_llama_cpp(tmp_path, keys):
    path = tmp_path / "vocab.gguf"
    write_vocab_gguf(path, _wpm_metadata(**keys))
    v = load_vocab("wpm", path)
    for text in WPM_TEXTS:
        assert_same_encoding(v, text)
        ids = v.tokenizer.encode(text, parse_special=True)
        for special in (False, True):
            assert v.tokenizer.decode(ids, special) == v.oracle_decode(ids, special)


def test_wordpiece_by_hand():
    tok = Tokenizer.from_metadata(_wpm_metadata())
    ids = tok.token_to_id
    # lower case, accents stripped, punctuation a word of its own, [CLS] ... [SEP]
    assert tok.encode("Héllo, WORLD!") == [2, ids["▁hello"], ids["▁,"], ids["▁world"], ids["▁!"], 3]
    # the longest piece first ("▁hello"), then no token starts at "world": the whole
    # word is [UNK]; so is "b", for want of "▁b"
    assert tok.encode("helloworld", add_special=False) == [1]
    assert tok.encode("ab b", add_special=False) == [ids["▁ab"], 1]
    assert tok.decode(tok.encode("Hello, world!")) == " hello, world!"     # clean_spaces


# ----------------------------------------------------------------------------- real vocabularies

@pytest.fixture(scope="module")
def gemma_spm(tmp_path_factory):
    """Gemma 4's 262,144 tokens and scores read as SentencePiece, the way Gemma 1-3 files
    are written (tokenizer.ggml.model "llama", add_space_prefix false)."""
    from vocab_oracle import VOCAB_DIR, file_metadata
    path = tmp_path_factory.mktemp("gemma-spm") / "vocab.gguf"
    write_vocab_gguf(path, file_metadata(VOCAB_DIR / "ggml-vocab-gemma-4.gguf"),
                     **{"tokenizer.ggml.model": "llama", "tokenizer.ggml.merges": None})
    return load_vocab("gemma-spm", path)


def test_gemma_shaped_sentencepiece_matches_llama_cpp(gemma_spm):
    from vocab_oracle import CORPUS_FILES, corpus_bytes
    assert not gemma_spm.tokenizer.add_space_prefix
    for filename in CORPUS_FILES:
        assert_same_encoding(gemma_spm, corpus_bytes(filename))
        ids = gemma_spm.tokenizer.encode(corpus_bytes(filename), parse_special=True)
        assert gemma_spm.tokenizer.decode(ids, True) == gemma_spm.oracle_decode(ids, True)


@pytest.mark.parametrize("name", ["llama-spm", "bert-bge", "gemma-4", "qwen2"])
def test_literal_mark_keeps_special_texts_plain(name):
    """chat.py's protection: a control token's text with the mark in it is encoded as
    the plain text, for every kind of tokenizer."""
    tok = vocab_of(name).tokenizer
    control = next(text for text in tok.literal_texts() if len(text) > 2)
    mark = "\ufdd0"
    marked = f"say {control[0]}{mark}{control[1:]} now"
    assert tok.encode(marked, parse_special=True, literal_mark=mark) == tok.encode(
        f"say {control} now", parse_special=False)
    assert tok.encode(f"say {control} now", parse_special=True) != tok.encode(
        f"say {control} now", parse_special=False)

"""Every vocabulary file llama.cpp ships, token for token against llama.cpp.

    test_vendored_tests_pass            llama.cpp's own .inp/.out tests (15 files)
    test_corpus_*                       the corpus whole and line by line, add_special and
                                        parse_special on and off (18 files; t5 is refused)
    test_decode_*, test_every_token_*   decoding, token by token and whole
    test_stream_decoder_*               whole characters only, adding up to decode()
"""
from __future__ import annotations

import random

import pytest
from vocab_oracle import (vocab_of, CORPUS_FILES, READ_VOCABS, REFUSED, TESTED_VOCABS, VOCAB_DIR,
                      assert_code_points_in_context_match, assert_same_encoding, code_points,
                      corpus_bytes, file_metadata, llama_cpp)
from hypothesis import given, settings
from hypothesis import strategies as st

from pyggml.errors import TokenizerError
from pyggml.text.bpe import MergeTable
from pyggml.text.spm import SpmTokenizer
from pyggml.text.tokenizer import BpeTokenizer, StreamDecoder, Tokenizer
from pyggml.text.wordpiece import WordPieceTokenizer

pytestmark = pytest.mark.oracle

SEPARATOR = "\n__ggml_vocab_test__\n"
KIND = {"llama": SpmTokenizer, "bert": WordPieceTokenizer, "gpt2": BpeTokenizer,
        "gemma4": BpeTokenizer}


def vendored_tests(name: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's tests/test-tokenizer-0 cases: (input, expected ids without BOS)."""
    path = VOCAB_DIR / f"ggml-vocab-{name}.gguf"
    inputs = (path.parent / (path.name + ".inp")).read_bytes().decode("utf-8").split(SEPARATOR)
    if inputs[-1] == "":                          # the file ends with a separator
        inputs.pop()
    outputs = (path.parent / (path.name + ".out")).read_text().splitlines()
    assert len(inputs) == len(outputs)
    return [(text, [int(i) for i in ids.split()]) for text, ids in zip(inputs, outputs)]


@pytest.mark.parametrize("name", TESTED_VOCABS)
def test_vendored_tests_pass(name):
    tok = vocab_of(name).tokenizer
    cases = vendored_tests(name)
    assert len(cases) >= 46
    wrong = [(text, tok.encode(text, add_special=False), ids) for text, ids in cases
             if tok.encode(text, add_special=False) != ids]
    assert not wrong, f"{len(wrong)} of {len(cases)} differ, e.g. {wrong[:2]}"


@pytest.mark.parametrize("name", READ_VOCABS)
def test_each_model_gets_its_tokenizer(name):
    tok = vocab_of(name).tokenizer
    assert type(tok) is KIND[file_metadata(VOCAB_DIR / f"ggml-vocab-{name}.gguf")[
        "tokenizer.ggml.model"]]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unread_models_are_refused_by_name(name):
    with pytest.raises(TokenizerError, match=REFUSED[name]):
        Tokenizer.from_metadata(file_metadata(VOCAB_DIR / f"ggml-vocab-{name}.gguf"))


# ----------------------------------------------------------------------------- encoding

@pytest.mark.parametrize("name", READ_VOCABS)
@pytest.mark.parametrize("filename", CORPUS_FILES)
def test_corpus_file_matches_llama_cpp(name, filename):
    assert_same_encoding(vocab_of(name), corpus_bytes(filename))


@pytest.mark.parametrize("name", READ_VOCABS)
def test_corpus_lines_match_llama_cpp(name):
    v = vocab_of(name)
    for filename in CORPUS_FILES:
        for line in corpus_bytes(filename).splitlines(keepends=True):
            assert_same_encoding(v, line)


# the vocabularies whose tokenizers differ: one per kind and pre-tokenizer
DISTINCT = ["baichuan", "bert-bge", "command-r", "deepseek-coder", "deepseek-llm", "falcon",
            "gemma-4", "gpt-2", "llama-bpe", "llama-spm", "phi-3", "qwen2", "qwen35", "aquila"]
EVERY_CODE_POINT = {"llama-spm", "bert-bge", "gemma-4", "qwen2"}


@pytest.mark.parametrize("name", DISTINCT)
def test_code_points_in_context_match_llama_cpp(name):
    """Every code point for one vocabulary of each kind (WordPiece lower-cases and
    decomposes each one on its own, SentencePiece falls back to its bytes), a sample
    for the others, whose pre-tokenizers see a code point only through its category."""
    assert_code_points_in_context_match(vocab_of(name), code_points(name in EVERY_CODE_POINT))


# pieces that stress the tokenizers where they differ: contractions in both cases, runs
# of white space of every kind, marks, special tokens of several vocabularies
ATOMS = (list("aZé中ね1٣²Ⅻ'’\"!?.,-_ \t\n\r\v\f#$+<=>^~|`") +
         ["'s", "'S", "'re", "'VE", "'ll", "'d", "'m", "'t", "  ", "   ", "\r\n", "\n\n",
          "\u00a0", "\u2028", "\u3000", "\u0085", "\u200d", "\u0301", "e\u0301", "😀", "👍🏽",
          "🏳️‍🌈", "12345", "3.14", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>",
          "<unk>", "<|assistant|>", "<|end|>", "[CLS]", "[SEP]", "[MASK]", "<start_of_turn>",
          "<eos>", "hello", " world", "IT'S", "𑼄", "𮯰", "▁", "▁▁", "Ça", "ǅ", "İ", "ß", "ﬁ",
          "Ⅷ", "\x00", "\ufffd", "ｆｕｌｌ", "한국어", "ไทย", "हिन्दी"])


@pytest.mark.parametrize("name", DISTINCT)
def test_random_texts_match_llama_cpp(name):
    v = vocab_of(name)

    @settings(max_examples=200, deadline=None, database=None)
    @given(st.lists(st.sampled_from(ATOMS), max_size=40).map("".join))
    def check(text):
        assert_same_encoding(v, text)

    check()


@pytest.mark.parametrize("name", ["llama-spm", "gemma-4", "bert-bge", "qwen2"])
def test_bytes_that_are_not_utf8_match_llama_cpp(name):
    """A prompt's bytes as the user typed them: SentencePiece keeps invalid bytes as byte
    tokens, the others read them as llama.cpp's decoder does."""
    v = vocab_of(name)
    for text in [b"\xff", b"a\xc3", b"\xc3(", b"\xe2\x96 x", b"\xe2 \xe2\x96\x81b",
                 b"\xf0a \xed\xa0\x80", b"caf\xe9 \x80\xbf ok", b"\xc3\xa9\xe9\xa9 <s>\xff</s>",
                 b" \xf4\x8f\xbf\xbf\xc0\xaf"]:
        assert_same_encoding(v, text)


# ----------------------------------------------------------------------------- vocabulary facts

@pytest.mark.parametrize("name", READ_VOCABS)
def test_special_ids_and_attributes_match_llama_cpp(name):
    v = vocab_of(name)
    tok, vocab = v.tokenizer, v.vocab
    assert tok.n_vocab == llama_cpp.llama_vocab_n_tokens(vocab)
    assert tok.bos_id == (llama_cpp.llama_vocab_bos(vocab) if llama_cpp.llama_vocab_bos(vocab) >= 0
                          else None)
    assert tok.eos_id == (llama_cpp.llama_vocab_eos(vocab) if llama_cpp.llama_vocab_eos(vocab) >= 0
                          else None)
    assert tok.add_bos == llama_cpp.llama_vocab_get_add_bos(vocab)
    assert tok.add_eos == llama_cpp.llama_vocab_get_add_eos(vocab)
    eog = {i for i in range(tok.n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)}
    assert tok.eog_ids == eog
    wrong = [i for i in range(tok.n_vocab)
             if tok.attrs[i] != llama_cpp.llama_vocab_get_attr(vocab, i)]
    assert not wrong, f"attributes differ for ids {wrong[:10]}"


def test_phi3_special_tokens_eat_the_spaces_after_them():
    """Phi-3 (by its general.name) is llama.cpp's RSTRIP case: the check above compares
    the attribute bits; here their effect, hand-checked."""
    tok = vocab_of("phi-3").tokenizer
    assistant = tok.token_to_id["<|assistant|>"]
    assert tok.encode("<|assistant|>  \n hi", add_special=False, parse_special=True) == \
        [assistant] + tok.encode("hi", add_special=False)


@pytest.mark.parametrize("name", READ_VOCABS)
def test_every_token_piece_matches_llama_cpp(name):
    v = vocab_of(name)
    for special in (False, True):
        wrong = [i for i in range(v.tokenizer.n_vocab)
                 if v.tokenizer.token_to_piece(i, special) != v.oracle_piece(i, special)]
        assert not wrong, f"special={special}: ids {wrong[:10]}"


# ----------------------------------------------------------------------------- decoding

def _sequences(tok, rng) -> list[list[int]]:
    """Corpus ids, random ids, and mixes of the tokens clean_spaces looks at."""
    sequences = [tok.encode(corpus_bytes(f), parse_special=True) for f in CORPUS_FILES]
    sequences += [[rng.randrange(tok.n_vocab) for _ in range(rng.randrange(1, 30))]
                  for _ in range(200)]
    spaced = tok.encode(" ' 's 'm 're 've 'll 'd 't ' ' ' x ?! . , '' ' 'S", add_special=False)
    sequences += [[rng.choice(spaced) for _ in range(12)] for _ in range(200)]
    return sequences


@pytest.mark.parametrize("name", READ_VOCABS)
def test_decode_matches_llama_detokenize(name):
    v = vocab_of(name)
    tok = v.tokenizer
    for ids in _sequences(tok, random.Random(0)):
        for special in (False, True):
            assert tok.decode(ids, special) == v.oracle_decode(ids, special), (ids, special)


@pytest.mark.parametrize("name", READ_VOCABS)
def test_stream_decoder_emits_whole_characters_that_add_up(name):
    """Both ways of streaming: what decode() gives (detokenize=True), and the pieces one
    after another (a generation); every emitted string is whole characters."""
    tok = vocab_of(name).tokenizer
    for ids in _sequences(tok, random.Random(1)):
        for special in (False, True):
            pieces = b"".join(tok.token_to_piece(i, special) for i in ids)
            for detokenize, whole in ((True, tok.decode(ids, special)),
                                      (False, pieces.decode("utf-8", "replace"))):
                stream = StreamDecoder(tok, special, detokenize=detokenize)
                emitted = [stream.add(i) for i in ids] + [stream.flush()]
                assert "".join(emitted) == whole, (ids, special, detokenize)
                if "\ufffd" not in whole:
                    assert not any("\ufffd" in e for e in emitted)


@pytest.mark.parametrize("name", ["llama-spm", "gemma-4", "qwen2"])
def test_stream_decoder_holds_back_characters_split_across_tokens(name):
    tok = vocab_of(name).tokenizer
    text = (corpus_bytes("chinese.txt") + corpus_bytes("emoji.txt")
            + corpus_bytes("mixed_scripts.txt")).decode()
    ids = tok.encode(text, add_special=False)
    split = [i for i in ids if _is_incomplete_utf8(tok.token_to_piece(i))]
    assert split, "no token splits a character: this test would not test anything"
    stream = StreamDecoder(tok, detokenize=True)
    pieces = [stream.add(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == tok.decode(ids)
    assert not any("\ufffd" in p for p in pieces)


def _is_incomplete_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def test_gemma4_words_go_to_the_compiled_bpe(monkeypatch):
    """The raw-UTF-8 BPE of gemma4 uses bpe.py's batch path (not only the Python heap)."""
    from pyggml.text import bpe_numba, tokenizer
    tok = vocab_of("gemma-4").tokenizer
    assert isinstance(tok._merge_table, MergeTable)
    words = ["▁Hello▁world", "▁tokenizer▁test"]
    calls, compiled = [], bpe_numba.merge_words
    monkeypatch.setattr(tokenizer, "_COMPILED_BPE_MIN_BYTES", 0)     # batches this small too
    monkeypatch.setattr(bpe_numba, "merge_words", lambda *a: calls.append(a) or compiled(*a))
    assert tok._encode_words(words) == {w: tok._encode_word(w) for w in words}
    assert calls

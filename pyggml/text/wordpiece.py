"""WordPiece (``tokenizer.ggml.model = "bert"``), token for token like llama.cpp's
llm_tokenizer_wpm: BERT and the embedding models built on it (bge, ...).

    raw fragment ──each code point normalized (below)──> words
    word ──'▁' + word, the longest token first, from the left──> ids, or the unknown
           token for the whole word where some position starts no token

Normalization, code point by code point, as llama.cpp's preprocess() (its tables, which
pretokenize.py follows):

    strip_accents     the code point becomes the first of its NFD decomposition ('é' -> 'e')
    white space       ends a word
    NUL, U+FFFD, controls (Cc Cf Co Cs), and marks (M*) when strip_accents: dropped
    lowercase         the simple lower-case mapping (not str.lower()'s 'İ' -> 'i̇')
    punctuation, ASCII symbols, CJK ideographs: a word of their own

tokenizer.ggml.normalizer.lowercase is true by default, strip_accents follows it.  The
GGUF converter writes BERT's "##ing" as "ing" and a word-initial "hello" as "▁hello",
hence the '▁'.  encode(add_special=True) frames the ids with the BOS token ([CLS]) and
[SEP] whatever add_bos says, as llama.cpp does.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping

from ..errors import TokenizerError
from .pretokenize import WHITESPACE, llama_category
from .tokenizer import SPACE_MARK, Tokenizer

# llama.cpp's defaults for a WordPiece vocabulary (llama_vocab::impl::load)
DEFAULT_IDS = {"bos": 101, "unk": 100, "sep": 102, "pad": 0, "mask": 103}

# the code points llama.cpp's WordPiece calls Chinese (is_chinese_char)
_CHINESE = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
            (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]
_WHITE_SPACE = re.compile(f"[{WHITESPACE}]")

# what becomes of a code point: (what, text)
_SPACE, _DROP, _ALONE, _PART = "space", "drop", "alone", "part"


@functools.lru_cache(maxsize=1 << 16)
def _normalized(char: str, lowercase: bool, strip_accents: bool) -> tuple[str, str]:
    """One code point of a fragment as llama.cpp's WordPiece preprocess() treats it:
    (_SPACE, ""), (_DROP, ""), (_ALONE, text) or (_PART, text)."""
    if strip_accents:        # llama.cpp's NFD table keeps the first code point of each
        char = unicodedata.normalize("NFD", char)[0]
    code = ord(char)
    category = llama_category(code)
    if _WHITE_SPACE.match(char):
        return _SPACE, ""
    if code in (0, 0xFFFD) or category == "C" or (strip_accents and category == "M"):
        return _DROP, ""
    # the simple lower-case mapping: str.lower() differs only for 'İ' ('i' + U+0307)
    text = char.lower()[0] if lowercase else char
    if (category == "P" or (code < 0x7F and category == "S")
            or any(first <= code <= last for first, last in _CHINESE)):
        return _ALONE, text
    return _PART, text


class WordPieceTokenizer(Tokenizer):
    """A WordPiece vocabulary; see the module docstring.

    lowercase, strip_accents    the normalizer's options
    sep_id, unk_id              the ids that end an encoded text and stand for unknown words
    """

    def __init__(self, metadata: Mapping):
        super().__init__(metadata, default_ids=DEFAULT_IDS, add_bos=True, clean_spaces=True)
        self.lowercase = bool(metadata.get("tokenizer.ggml.normalizer.lowercase", True))
        self.strip_accents = bool(metadata.get("tokenizer.ggml.normalizer.strip_accents",
                                               self.lowercase))
        self.sep_id, self.unk_id = self.special_ids["sep"], self.special_ids["unk"]
        self._longest = max(map(len, self.texts))       # in characters

    def _add_special(self, ids: list[int]) -> list[int]:
        if self.bos_id is None or self.sep_id is None:
            raise TokenizerError("a WordPiece text starts with the BOS token ([CLS]) and ends "
                                 "with [SEP], but the vocabulary lacks "
                                 + ("tokenizer.ggml.bos_token_id" if self.bos_id is None
                                    else "tokenizer.ggml.seperator_token_id"))
        return [self.bos_id, *ids, self.sep_id]

    def _words(self, fragment: str, after_special: bool) -> list[str]:
        words, word = [], []
        for char in fragment:
            what, text = _normalized(char, self.lowercase, self.strip_accents)
            if what == _PART:
                word.append(text)
            elif what != _DROP:                 # white space or a word of its own ends a word
                if word:
                    words.append("".join(word))
                    word = []
                if what == _ALONE:
                    words.append(text)
        if word:
            words.append("".join(word))
        return words

    def _encode_words(self, words) -> dict[str, tuple[int, ...]]:
        return {word: self._encode_word(word) for word in words}

    def _encode_word(self, word: str) -> tuple[int, ...]:
        """'▁' + word as the longest tokens from the left, or the unknown token."""
        text = SPACE_MARK + word
        token_to_id = self.token_to_id
        ids, start = [], 0
        while start < len(text):
            for end in range(min(len(text), start + self._longest), start, -1):
                token_id = token_to_id.get(text[start:end])
                if token_id is not None:
                    ids.append(token_id)
                    start = end
                    break
            else:
                if self.unk_id is None:
                    raise TokenizerError(f"the word {word!r} has no tokens, and the vocabulary "
                                         f"has no unknown token")
                return (self.unk_id,)
        return tuple(ids)

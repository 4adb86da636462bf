"""Pre-tokenization: cut text into the words that BPE then encodes one by one.

A byte-level BPE tokenizer never merges across the words its pre-tokenizer makes,
so these cuts decide half of the result.  llama.cpp picks them per
``tokenizer.ggml.pre`` (src/llama-vocab.cpp, ``llm_tokenizer_bpe``) as one or more
regexes over Unicode categories, and runs them in src/unicode.cpp in two ways:

    qwen2, and every \\p{..} regex     std::regex over a "collapsed" text: each code point
                                       >= 128 replaced by one byte naming its class
    gpt2 and llama3 regexes            hand-written scanners (same rules, table flags)

Either way a code point only matters through one of four classes, taken from
llama.cpp's tables (generated from UnicodeData.txt 15.1 and White_Space):

    W  white space: \\t \\n \\v \\f \\r, space and the 19 Unicode White_Space code points >= 128
    L  letter       (general category L*)
    N  number       (general category N*: Nd, Nl, No)
    P  punctuation  (general category P*; only the "default" pre-tokenizer looks at it)
    .  anything else (marks, symbols, controls, unassigned, ...)

Python's ``re`` has no \\p{L}, so the classes are spelled out as character ranges
built once from ``unicodedata`` (tens of ms) and the regexes run in C.  Only the BMP
goes into the classes: ``re`` tests a character against a class's ranges above
U+FFFF one by one (some 150 of them for letters), which made every class test an
order of magnitude slower (docs/performance.md).  Code points above U+FFFF (emoji,
rare scripts) are instead replaced, before matching, by a BMP stand-in of the same
class, one code point for one, so the matches' positions still cut the original text
(llama.cpp's "collapsed" text, too, is one byte per code point).

Python 3.11's unicodedata is Unicode 14.0 while llama.cpp's tables are Unicode 15.1:
the code points assigned in between are patched in below (checked code point by code
point against llama.cpp's own table in tests/test_tokenizer.py).  A Python whose
unicodedata is newer than 15.1 classifies the later additions itself, where
llama.cpp sees unassigned code points; that test would then say which.

Several regexes apply in sequence: each one cuts every piece the previous ones left,
and text between two matches becomes a piece of its own (std::regex_iterator's gaps).
"""
from __future__ import annotations

import functools
import re
import unicodedata
from itertools import accumulate

# Unicode White_Space (PropList.txt), as llama.cpp's unicode_set_whitespace
WHITESPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

# the categories llama.cpp's Unicode 15.1 tables give to code points that Python 3.11's
# Unicode 14.0 leaves unassigned (Kawi, Nag Mundari, Kaktovik numerals, CJK Ext. H/I, ...)
UNICODE_15_1_ADDITIONS = {
    "L": "1123F-11240 11F02 11F04-11F10 11F12-11F33 1342F 13441-13446 1B132 1B155 "
         "1DF25-1DF2A 1E030-1E06D 1E4D0-1E4EB 2B739 2EBF0-2EE5D 31350-323AF",
    "N": "11F50-11F59 1D2C0-1D2D3 1E4F0-1E4F9",
    "P": "11B00-11B09 11F43-11F4F",
}
_LAST_CLASSIFIED = 0x323AF      # no letter, number or punctuation above this in Unicode 15.1


@functools.lru_cache(maxsize=None)
def _categories() -> bytearray:
    """Major category letter (b'L', b'N', b'P', ...) of every code point up to _LAST_CLASSIFIED."""
    category = unicodedata.category
    table = bytearray("".join([category(chr(c))[0] for c in range(_LAST_CLASSIFIED + 1)]), "ascii")
    for major, ranges in UNICODE_15_1_ADDITIONS.items():
        for item in ranges.split():
            first, _, last = item.partition("-")
            first = int(first, 16)
            last = int(last or item, 16)
            table[first:last + 1] = major.encode() * (last + 1 - first)
    return table


@functools.lru_cache(maxsize=None)
def char_class(major: str) -> str:
    """Body of a regex character class: the BMP code points of major category 'L', 'N' or 'P'."""
    table = _categories()[:0x10000]
    code = ord(major)
    parts = []
    start = table.find(code)
    while start >= 0:
        end = start + 1
        while end < len(table) and table[end] == code:
            end += 1
        first, last = chr(start), chr(end - 1)
        parts.append(re.escape(first) if start == end - 1
                     else f"{re.escape(first)}-{re.escape(last)}")
        start = table.find(code, end)
    return "".join(parts)


# BMP code points standing in for astral ones of the same class: no regex here names them
STAND_IN = {"L": "\u00aa", "N": "\u00b2", "P": "\u00a1"}      # ª ² ¡
OTHER_STAND_IN = "\u00a9"                                        # © (a symbol)
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@functools.lru_cache(maxsize=4096)
def _stand_in(char: str) -> str:
    code = ord(char)
    major = chr(_categories()[code]) if code <= _LAST_CLASSIFIED else ""
    return STAND_IN.get(major, OTHER_STAND_IN)


def collapse_astral(text: str) -> str:
    """text with every code point above U+FFFF replaced by its BMP stand-in."""
    return _ASTRAL.sub(lambda match: _stand_in(match.group()), text)


# ------------------------------------------------------------------------------- regexes
# llama.cpp's regex strings with \p{L}, \p{N}, \p{P} and \s spelled as the classes above
# ({L}, {N}, {P}, {W} are filled in by _compile).  Each alternation tries its branches in
# order and takes the first that matches, in std::regex (ECMAScript) as in Python's re.

# GPT-2 (llama.cpp's custom splitter adds the final \s+, the regex itself lacks it)
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{W}{L}{N}]+|[{W}]+(?![^{W}])|[{W}]+"
# Llama 3: numbers in groups of up to three digits, case-insensitive contractions
LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n{L}{N}]?[{L}]+"
          r"|[{N}]{{1,3}}| ?[^{W}{L}{N}]+[\r\n]*|[{W}]*[\r\n]+|[{W}]+(?![^{W}])|[{W}]+")
# Qwen2: Llama 3 with every digit a word of its own
QWEN2 = LLAMA3.replace("[{N}]{{1,3}}", "[{N}]")
# SmolLM: llama.cpp cuts every digit off first (\p{N}), then runs GPT-2 on the pieces left.
# Folded into one regex: a digit is a word; no other branch can take one in, since none
# matches \p{N} any more (" ?\p{N}+" is gone); and white space before a digit ends its
# piece, where \s+(?!\S) takes all of it, hence (?![^{W}{N}]).
SMOLLM = r"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+|[{N}]| ?[^{W}{L}{N}]+|[{W}]+(?![^{W}{N}])|[{W}]+"

PRE_TOKENIZERS = {
    #  name             regexes applied in order
    "gpt2":    (GPT2,),
    "llama3":  (LLAMA3,),
    "qwen2":   (QWEN2,),
    "smollm":  (SMOLLM,),
    "default": (r"[{P}$+<=>^~|]+", GPT2, r"[{N}]+", r"[0-9][0-9][0-9]"),
}


def _compile(regex: str) -> re.Pattern:
    return re.compile(regex.format(L=char_class("L"), N=char_class("N"),
                                   P=char_class("P"), W=WHITESPACE))


class PreTokenizer:
    """Cuts a text into pre-token words, exactly as llama.cpp's ``unicode_regex_split``."""

    def __init__(self, kind: str):
        self.kind = kind
        self.regexes = [_compile(regex) for regex in PRE_TOKENIZERS[kind]]

    def split(self, text: str) -> list[str]:
        matched = collapse_astral(text) if _ASTRAL.search(text) else text
        if len(self.regexes) == 1:
            # the branches of each single-regex pre-tokenizer together match any character,
            # so there are no gaps and findall gives the words directly: one C call
            words = self.regexes[0].findall(matched)
            if matched is text:
                return words
            ends = list(accumulate(map(len, words)))
            return [text[end - len(word):end] for word, end in zip(words, ends)]
        spans = [(0, len(text))]
        for regex in self.regexes:
            cut = []
            for start, end in spans:
                # endpos makes the span's end the end of the string, as each std::regex
                # search over one piece sees it (for lookaheads like (?!\S))
                for match in regex.finditer(matched, start, end):
                    if match.start() > start:
                        cut.append((start, match.start()))      # the gap before this match
                    start = match.end()
                    cut.append(match.span())
                if start < end:
                    cut.append((start, end))
            spans = cut
        return [text[start:end] for start, end in spans]

"""Pre-tokenization: cut text into the words that BPE then encodes one by one.

A byte-level BPE tokenizer never merges across the words its pre-tokenizer makes,
so these cuts decide half of the result.  llama.cpp picks them per
``tokenizer.ggml.pre`` (src/llama-vocab.cpp, ``llm_tokenizer_bpe``) as one or more
regexes over Unicode categories, and runs them in src/unicode.cpp in three ways:

    a few common regexes               hand-written scanners (same rules, table flags)
    every other \\p{..} regex           std::regex over a "collapsed" text: each code point
                                       >= 128 replaced by one byte naming its class
    regexes without \\p{..}             std::wregex over the code points, each non-ASCII
                                       white space replaced by \\v ("wide" below)

PRE_TOKENIZERS keeps llama.cpp's regexes verbatim (C string literals read the same in
Python).  Each one runs here as a Python regex: EQUIVALENTS spells out the scanners'
rules (and folds two regexes into one where that is faster), ``translate`` rewrites
the others.  Wide regexes name their characters themselves and read the text as it is;
in the collapsed text a code point only matters through its class, taken from
llama.cpp's tables (generated from UnicodeData.txt 15.1 and White_Space):

    W  white space: \\t \\n \\v \\f \\r, space and the 19 Unicode White_Space code points >= 128
    L  letter       (general category L*; \\p{Lu}, \\p{Ll}, ... all mean L to llama.cpp)
    N  number       (general category N*: Nd, Nl, No)
    P  punctuation  (general category P*)
    M  mark         (general category M*)
    S  symbol       (general category S*)
    .  anything else (controls, format, private use, unassigned, ...)

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
point against llama.cpp's own table in tests/test_text_pretokenizers.py).  A Python whose
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
ASCII_WHITESPACE = "\t\n\v\f\r "       # what std::regex's \s matches (C locale)

# the categories llama.cpp's Unicode 15.1 tables give to code points that Python 3.11's
# Unicode 14.0 leaves unassigned (Kawi, Nag Mundari, Kaktovik numerals, CJK Ext. H/I, ...)
UNICODE_15_1_ADDITIONS = {
    "L": "1123F-11240 11F02 11F04-11F10 11F12-11F33 1342F 13441-13446 1B132 1B155 "
         "1DF25-1DF2A 1E030-1E06D 1E4D0-1E4EB 2B739 2EBF0-2EE5D 31350-323AF",
    "N": "11F50-11F59 1D2C0-1D2D3 1E4F0-1E4F9",
    "P": "11B00-11B09 11F43-11F4F",
    "M": "CF3 ECE 10EFD-10EFF 11241 11F00-11F01 11F03 11F34-11F3A 11F3E-11F42 13440 "
         "13447-13455 1E08F 1E4EC-1E4EF",
    "S": "2FFC-2FFF 31EF 1F6DC 1F774-1F776 1F77B-1F77F 1F7D9 1FA75-1FA77 1FA87-1FA88 "
         "1FAAD-1FAAF 1FABB-1FABD 1FABF 1FACE-1FACF 1FADA-1FADB 1FAE8 1FAF7-1FAF8",
    "C": "13439-1343F",
}
_LAST_CLASSIFIED = 0x323AF      # no code point above this was assigned after Unicode 14.0


_BMP_END = 0x10000


def _classify(first: int, end: int) -> bytearray:
    """llama.cpp's category letter of the code points first..end-1 (see _categories)."""
    category = unicodedata.category
    table = bytearray("".join([category(chr(c))[0] for c in range(first, end)]), "ascii")
    at = table.find(b"C")
    while at >= 0:                            # Cc Cf Co Cs are controls, Cn is unassigned
        if category(chr(first + at)) == "Cn":
            table[at] = ord("U")
        at = table.find(b"C", at + 1)
    for major, ranges in UNICODE_15_1_ADDITIONS.items():
        for item in ranges.split():
            low, _, high = item.partition("-")
            low = max(int(low, 16), first)
            high = min(int(high or item, 16), end - 1)
            if low <= high:
                table[low - first:high + 1 - first] = major.encode() * (high + 1 - low)
    return table


@functools.lru_cache(maxsize=None)
def _bmp_categories() -> bytearray:
    """_categories() of the BMP alone: all that the regex classes need, a third of the
    work (a tokenizer is built at every start of a model)."""
    return _classify(0, _BMP_END)


@functools.lru_cache(maxsize=None)
def _categories() -> bytearray:
    """llama.cpp's category letter of every code point up to _LAST_CLASSIFIED: the major
    general category (b'L', b'N', b'P', b'M', b'S', b'Z', b'C'), b'U' for unassigned."""
    return _bmp_categories() + _classify(_BMP_END, _LAST_CLASSIFIED + 1)


def llama_category(code: int) -> str:
    """llama.cpp's category of a code point: 'L' 'N' 'P' 'M' 'S' 'Z' 'C', or 'U' (unassigned)."""
    if code < _BMP_END:
        return chr(_bmp_categories()[code])
    if code <= _LAST_CLASSIFIED:
        return chr(_categories()[code])
    category = unicodedata.category(chr(code))
    return "U" if category == "Cn" else category[0]


@functools.lru_cache(maxsize=None)
def char_class(major: str) -> str:
    """Body of a regex character class: the BMP code points of category 'L', 'N', 'P',
    'M' or 'S'."""
    table = _bmp_categories()
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


# Han code points, as llama.cpp's unicode_cpt_is_han lists them (Kimi-K2 keeps them apart)
HAN_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0x2CEB0, 0x2EBEF), (0xF900, 0xFAFF),
              (0x2F800, 0x2FA1F)]
HAN = "".join(f"{chr(first)}-{chr(last)}" for first, last in HAN_RANGES if last < 0x10000)

# BMP code points standing in for astral ones of the same class: no regex here names them
STAND_IN = {"L": "\u00aa", "N": "\u00b2", "P": "\u00a1", "M": "\u0300", "S": "\u00a9"}
OTHER_STAND_IN = "\ue000"                                        # (private use)
HAN_STAND_IN = {True: "\u4e00", False: "\ufa6e"}    # a Han letter, an unassigned Han code point
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@functools.lru_cache(maxsize=4096)
def _stand_in(char: str) -> str:
    code = ord(char)
    major = llama_category(code)
    if any(first <= code <= last for first, last in HAN_RANGES):
        return HAN_STAND_IN[major == "L"]
    return STAND_IN.get(major, OTHER_STAND_IN)


def collapse_astral(text: str) -> str:
    """text with every code point above U+FFFF replaced by its BMP stand-in."""
    return _ASTRAL.sub(lambda match: _stand_in(match.group()), text)


_WIDE_SPACE = re.compile(f"[{WHITESPACE.removeprefix(ASCII_WHITESPACE)}]")


def wide_spaces_as_vt(text: str) -> str:
    """text as std::wregex sees it in llama.cpp: non-ASCII white space replaced by \\v."""
    return _WIDE_SPACE.sub("\v", text)


# ------------------------------------------------------------------------------- regexes
# llama.cpp's regex strings for each pre-tokenizer, as llm_tokenizer_bpe lists them
_GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
_LLAMA3 = ("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
           "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
_QWEN2 = _LLAMA3.replace("\\p{N}{1,3}", "\\p{N}")
_QWEN35 = ("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?"
           "[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
           "|\\s+(?!\\S)|\\s+")
_NEWLINES = "[^\\n]+|[\\n]+"
_GROUPS_OF_3 = "\\d{1,3}(?=(?:\\d{3})*\\b)"
_CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
# what follows the words and digits of GPT-4o-like regexes
_TAIL = "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
_UNICODE_CASES = ("[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]", "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]")
_ASCII_CASES = ("((?=[\\p{L}])([^a-z]))", "((?=[\\p{L}])([^A-Z]))")


def _cased_words(upper: str, lower: str, contractions: str) -> str:
    """GPT-4o-like words: upper-case letters then lower-case ones, or the other way."""
    lead = "[^\\r\\n\\p{L}\\p{N}]?"
    return f"{lead}{upper}*{lower}+{contractions}|{lead}{upper}+{lower}*{contractions}"


_CJK_KANA = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
_CJK_HANGUL = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
_DEEPSEEK3 = ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
              "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")
_PORO = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"

PRE_TOKENIZERS = {
    #  kind (llama.cpp's pre-tokenizer type)  regexes applied in order
    "default": ("[\\p{P}\\$\\+<=>\\^~\\|]+", _GPT2, "\\p{N}+", "[0-9][0-9][0-9]"),
    "gpt2": (_GPT2,),
    "llama3": (_LLAMA3,),
    "qwen2": (_QWEN2,),
    "qwen35": (_QWEN35,),
    "smollm": ("\\p{N}", _GPT2),
    "falcon": ("[\\p{P}\\$\\+<=>\\^~\\|`]+", _GPT2, "[0-9][0-9][0-9]"),
    "jais2": (_LLAMA3.replace("\\s+(?!\\S)|\\s+", "|".join(
        [f"\\s{{{n}}}(?!\\S)" for n in (512, 256, 128, 64, 32, 16, 8, 4)]
        + ["\\s{1,2}(?!\\S)", "\\s{1}"])),),
    "deepseek-llm": (
        "[\r\n]",
        "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-"
        "\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-"
        "\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5"
        "\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-"
        "\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-"
        "\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-"
        "\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-"
        "\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149"
        "\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d"
        "\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-"
        "\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-"
        "\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-"
        "\U0001e943]+",
        "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
        "\\s+$",
        _CJK_HANGUL,
        "\\p{N}+"),
    "deepseek-coder": ("[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", _CJK_HANGUL, "\\p{N}"),
    "deepseek3-llm": ("\\p{N}{1,3}", _CJK_KANA, _DEEPSEEK3),
    "spark2.5": ("\\p{N}{1,3}", _CJK_KANA,
                 _DEEPSEEK3.replace("+[\r\n]*|\\s*[\r\n]+|", "+|[\r\n]|"), "\\p{N}"),
    "youtu": ("[\uac00-\ud7a3\u3131-\u318e]+|[\uff01\u2026\u201c\u201d\u2018\u2019\u2014\uff1a"
              "\uff1b\uff0c\u3001-\u303f\ufe30-\ufe4f]+|[\u3105-\u312f]+|" + _CJK_KANA,
              _cased_words(*_UNICODE_CASES, _CONTRACTIONS + "?") + "|\\p{N}" + _TAIL),
    "poro": (_PORO,),
    "viking": (_PORO, "\\p{N}"),
    "tekken": (_cased_words(*_ASCII_CASES, "") + "|\\p{N}" + _TAIL,),
    "chameleon": ("<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )",
                  "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]", _GPT2),
    "gpt4o": (_cased_words(*_ASCII_CASES, _CONTRACTIONS + "?") + "|\\p{N}{1,3}" + _TAIL,),
    "granite-emb-multi": (_cased_words("((?=[\\p{L}\\p{M}])([^a-z]))",
                                       "((?=[\\p{L}\\p{M}])([^A-Z]))", _CONTRACTIONS + "?")
                          + "|\\p{N}{1,3}" + _TAIL,),
    "tiny-aya": (_GROUPS_OF_3,
                 _cased_words(*_UNICODE_CASES, _CONTRACTIONS + "?") + "|\\p{N}{1,3}" + _TAIL),
    "kimi-k2": ("\\p{Han}+",),
    "superbpe": ("\\p{N}+", "(?=(\\d{3})+(?!\\d))"),
    "bailingmoe": ("'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                   "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",),
    "seed-coder": (_QWEN2.replace("\\p{N}|", "\\p{N}{1}|").replace(
        " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*", " ?[^\\s\\p{L}\\p{N}\\r\\n]+"),),
    "ufakzeka": (_QWEN2.removeprefix(_CONTRACTIONS + "|"),),
    "afmoe": ("\\p{AFMoE_digits}",
              "[\u4e00-\u9fff\u3400-\u4dbf\u8c48-\ufaff\u3040-\u309f\u30a0-\u30ff\uff65-\uff9f"
              "\u2f00-\u2fdf\u0e40-\u0e7f\u0e80-\u0eff\u1780-\u17ff\u1000-\u109f\uaa60-\uaa7f"
              "\ua9e0-\ua9ff\uac00-\ud7af\u1100-\u11ff]+",
              _DEEPSEEK3),           # the same as llama.cpp's, which spells \r\n as escapes
    "laguna": (_NEWLINES, _QWEN2),
    "exaone-moe": (_CONTRACTIONS + "|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+"
                   "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",),
    "gemma4": (_NEWLINES,),
    "minicpm5": ("\\p{N}{1,3}", _QWEN2.replace("\\p{N}|", "\\p{N}+|")),
}

# AFMoE's digit scanner (tiny_aya's regex runs it too): a run of digits in groups of
# three from the right; the text before a run goes with its first group, as the scanner
# emits it (the last branch takes the text after the last run, in one match)
_DIGITS_IN_THREES = r"[^{N}]*[{N}]{{1,3}}(?=(?:[{N}]{{3}})*(?![{N}]))|[^{N}]+"

# Python regexes doing what llama.cpp does for a regex (or a run of regexes) with
# hand-written code in unicode.cpp (unicode_regex_split_custom_*), or faster than
# translate() would; {L}, {N}, {M}, {W}, {H} are filled in by _compile.  Each
# alternation tries its branches in order and takes the first that matches, in
# std::regex (ECMAScript) as in Python's re.
EQUIVALENTS = {
    # GPT-2 (llama.cpp's custom splitter adds the final \s+, the regex itself lacks it)
    (_GPT2,): r"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{W}{L}{N}]+|[{W}]+(?![^{W}])|[{W}]+",
    # Llama 3: numbers in groups of up to three digits, case-insensitive contractions
    (_LLAMA3,): (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n{L}{N}]?[{L}]+"
                 r"|[{N}]{{1,3}}| ?[^{W}{L}{N}]+[\r\n]*|[{W}]*[\r\n]+|[{W}]+(?![^{W}])|[{W}]+"),
    # Qwen2: Llama 3 with every digit a word of its own
    (_QWEN2,): (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n{L}{N}]?[{L}]+"
                r"|[{N}]| ?[^{W}{L}{N}]+[\r\n]*|[{W}]*[\r\n]+|[{W}]+(?![^{W}])|[{W}]+"),
    # Qwen3.5: Qwen2 whose letter runs take marks (\p{M}) in too
    (_QWEN35,): (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n{L}{N}]?"
                 r"[{L}{M}]+|[{N}]| ?[^{W}{L}{M}{N}]+[\r\n]*|[{W}]*[\r\n]+|[{W}]+(?![^{W}])"
                 r"|[{W}]+"),
    # SmolLM: llama.cpp cuts every digit off first (\p{N}), then runs GPT-2 on the pieces
    # left.  Folded into one regex: a digit is a word; no other branch can take one in,
    # since none matches \p{N} any more (" ?\p{N}+" is gone); and white space before a
    # digit ends its piece, where \s+(?!\S) takes all of it, hence (?![^{W}{N}]).
    ("\\p{N}", _GPT2): (r"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+|[{N}]| ?[^{W}{L}{N}]+"
                        r"|[{W}]+(?![^{W}{N}])|[{W}]+"),
    # Kimi-K2's scanner: Han runs, then Llama 3's rules with letters other than Han
    # (and a contraction may end a word)
    ("\\p{Han}+",): (r"[{H}]+|[^\r\n{L}{N}]?(?:(?![{H}])[{L}])+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|"
                     r"'[mM]|'[lL][lL]|'[dD])?|[{N}]{{1,3}}| ?[^{W}{L}{N}]+[\r\n]*|[{W}]*[\r\n]+"
                     r"|[{W}]+(?![^{W}])|[{W}]+"),
    ("\\p{AFMoE_digits}",): _DIGITS_IN_THREES,
    (_GROUPS_OF_3,): _DIGITS_IN_THREES,
    # runs of newlines and runs of anything else
    (_NEWLINES,): r"[^\n]+|\n+",
}

# \p{..} names llama.cpp collapses, and the class each one becomes
_LLAMA_CLASSES = {"\\p{N}": "N", "\\p{L}": "L", "\\p{P}": "P", "\\p{M}": "M", "\\p{S}": "S",
                  "\\p{Lu}": "L", "\\p{Ll}": "L", "\\p{Lt}": "L", "\\p{Lm}": "L", "\\p{Lo}": "L"}


def translate(regex: str) -> tuple[str, bool]:
    """A llama.cpp regex (ECMAScript, run by std::regex) as a Python regex that matches
    the same spans, and whether it reads the collapsed text (it names a \\p{..} class).

    \\p{X} becomes the class's code points; \\s, \\S and \\d what std::regex matches with
    them (ASCII only, which is why non-ASCII white space is \\v in either text); groups
    do not capture (llama.cpp compiles with nosubs); $ is the end of the piece.
    """
    collapsed = any(name in regex for name in _LLAMA_CLASSES)
    space = WHITESPACE if collapsed else ASCII_WHITESPACE
    out, inside, i = [], False, 0
    while i < len(regex):
        char = regex[i]
        if char == "\\" and regex.startswith("\\p{", i):
            end = regex.index("}", i) + 1
            body = char_class(_LLAMA_CLASSES[regex[i:end]])
            out.append(body if inside else f"[{body}]")
            i = end
            continue
        if char == "\\":
            escape = regex[i + 1]
            if escape in "sd":
                body = space if escape == "s" else "0-9"
                out.append(body if inside else f"[{body}]")
            elif escape == "S" and not inside:
                out.append(f"[^{space}]")
            elif escape.isalpha() and escape not in "rnt":
                raise ValueError(f"llama.cpp regex {regex!r}: \\{escape} is not translated")
            else:
                out.append(regex[i:i + 2])
            i += 2
            continue
        if collapsed and ord(char) >= 0x80:
            raise ValueError(f"llama.cpp regex {regex!r} names a class and non-ASCII text")
        if inside:
            inside = char != "]"
        elif char == "[":
            inside = True
        elif char == "(" and not regex.startswith("(?", i):
            char = "(?:"
        elif char == "$":
            char = r"\Z"
        out.append(char)
        i += 1
    return "".join(out), collapsed


def _compile(regexes: tuple[str, ...]) -> list[tuple[re.Pattern, bool]]:
    """llama.cpp's regexes -> [(Python regex, reads the collapsed text)], in order."""
    if regexes in EQUIVALENTS:
        return [(re.compile(EQUIVALENTS[regexes].format(
            L=char_class("L"), N=char_class("N"), M=char_class("M"), W=WHITESPACE, H=HAN)),
            True)]
    steps = []
    for regex in regexes:
        if (regex,) in EQUIVALENTS:
            steps += _compile((regex,))
        else:
            pattern, collapsed = translate(regex)
            steps.append((re.compile(pattern), collapsed))
    return steps


class PreTokenizer:
    """Cuts a text into pre-token words, exactly as llama.cpp's ``unicode_regex_split``."""

    def __init__(self, kind: str):
        self.kind = kind
        self.steps = _compile(PRE_TOKENIZERS[kind])

    def split(self, text: str) -> list[str]:
        collapsed = collapse_astral(text) if _ASTRAL.search(text) else text
        wide = None
        if len(self.steps) == 1:
            # most single-regex pre-tokenizers have branches that together match any
            # character, so there are no gaps and findall gives the words: one C call
            regex, reads_collapsed = self.steps[0]
            matched = collapsed if reads_collapsed else wide_spaces_as_vt(text)
            words = regex.findall(matched)
            ends = list(accumulate(map(len, words)))
            if (ends[-1] if ends else 0) == len(text):
                if matched is text:
                    return words
                return [text[end - len(word):end] for word, end in zip(words, ends)]
        spans = [(0, len(text))]
        for regex, reads_collapsed in self.steps:
            if reads_collapsed:
                matched = collapsed
            else:
                wide = matched = wide_spaces_as_vt(text) if wide is None else wide
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

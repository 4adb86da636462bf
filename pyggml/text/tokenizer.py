"""Tokenizers of GGUF vocabularies, token for token like llama.cpp (src/llama-vocab.cpp).

    tokenizer.ggml.model   class                what becomes of a raw fragment of text
    gpt2                   BpeTokenizer         pre-tokenizer words (pretokenize.py), each
                                                in GPT-2's byte alphabet, BPE merges
    gemma4                 BpeTokenizer         ' ' -> '\u2581', lines, BPE merges over the
                                                characters themselves, <0xXX> byte tokens
    llama                  SpmTokenizer         SentencePiece (spm.py): ' ' -> '\u2581', merges
                                                by score, <0xXX> byte tokens
    bert                   WordPieceTokenizer   WordPiece (wordpiece.py): normalized words,
                                                longest pieces first

``Tokenizer.from_metadata`` picks the class.  What every kind shares is class
``Tokenizer`` here: the vocabulary, its special tokens, BOS/EOS, decoding:

    text ──special-token partition──> raw fragments and special token ids
    raw fragment ──the kind's own cuts──> words ──the kind's own algorithm──> ids
    (words are cached: a word's ids never depend on its neighbours)

Byte-level BPE:

    raw fragment ──pre-tokenizer──> words
    word ──UTF-8, each byte as one printable code point──> "Ġhello"
    "Ġhello" ──BPE merges, lowest rank first──> ["Ġhel", "lo"] ──vocab──> ids

Byte-level alphabet (GPT-2's ``bytes_to_unicode``): the 188 printable bytes stand for
themselves (0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF); the other 68 (controls, space, 0x7F-0xA0,
0xAD) become U+0100 + n in byte order, so the space 0x20 is 'Ġ' (U+0120) and '\\n' is 'Ċ'.

Special tokens (llama.cpp ``tokenizer_st_partition``): every token of type CONTROL,
USER_DEFINED or UNKNOWN is searched for in the text, longest first, each one cutting all
raw fragments left by the longer ones.  With ``parse_special=False`` CONTROL and UNKNOWN
tokens are left to the tokenizer but USER_DEFINED ones are still matched (as Hugging Face
does).  A few models' special tokens eat the white space beside them (LSTRIP/RSTRIP,
set by model name as llama.cpp does: Phi-3, jina-v2, nomic-bert-moe, modern-bert).

Decoding maps each token to its bytes (``token_to_piece``); CONTROL and UNKNOWN tokens
print their text only when ``special`` is asked for, USER_DEFINED ones always.

What llama.cpp leaves unspecified is fixed here: special tokens of equal length are tried
in id order (llama.cpp's std::sort is not stable), and where several tokens could serve
as the FIM / EOT token by text, the lowest id wins (llama.cpp takes a hash-map order).
"""
from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from heapq import heapify, heappop, heappush

import numpy as np

from ..errors import TokenizerError, UsageError
from .bpe import MergeTable
from .pretokenize import PreTokenizer

# ----------------------------------------------------------------------------- byte level

def _byte_level_alphabet() -> list[str]:
    """byte value -> the code point that stands for it in byte-level BPE token texts."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    alphabet = [""] * 256
    for b in printable:
        alphabet[b] = chr(b)
    for n, b in enumerate(others):
        alphabet[b] = chr(0x100 + n)
    return alphabet


BYTE_TO_CHAR = _byte_level_alphabet()
CHAR_TO_BYTE = {char: byte for byte, char in enumerate(BYTE_TO_CHAR)}
_LATIN1_TO_BYTE_LEVEL = str.maketrans({chr(b): c for b, c in enumerate(BYTE_TO_CHAR)})

SPACE_MARK = "\u2581"            # '▁': a space in SentencePiece-style token texts
_SPACE_MARK_UTF8 = SPACE_MARK.encode()

# ----------------------------------------------------------------------------- bytes in

def decode_utf8(data: bytes) -> str:
    """Text of a prompt given as bytes, read as llama.cpp reads one (unicode_cpts_from_utf8).

    Valid UTF-8 is simply decoded.  llama.cpp's decoder is laxer than Python's: it takes
    any lead byte with the right number of continuation bytes (so overlong forms and
    surrogates decode to their code points), and turns each byte it cannot read into
    one U+FFFD.  Bytes that are not UTF-8 are thus never lost or re-encoded as Python's
    surrogate escapes (six bytes for two).  One case cannot follow llama.cpp: a 4-byte
    form above U+10FFFF (lead bytes F4 90.. to F7) is no Python character; it becomes
    one U+FFFD here, where llama.cpp's tokenizer fails.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "pyggml-llama-utf8")


def _llama_utf8_error(err: UnicodeDecodeError) -> tuple[str, int]:
    """Python's decoder met bytes it refuses at err.start: decode them as llama.cpp would."""
    data, at = err.object, err.start
    lead = data[at]
    length = 2 if lead & 0xE0 == 0xC0 else 3 if lead & 0xF0 == 0xE0 else 4 if lead & 0xF8 == 0xF0 else 0
    tail = data[at + 1:at + length]
    if not length or len(tail) != length - 1 or any(b & 0xC0 != 0x80 for b in tail):
        return "\ufffd", at + 1                  # a byte llama.cpp cannot read: one U+FFFD
    code = lead & (0x7F >> length)
    for b in tail:
        code = code << 6 | b & 0x3F
    return (chr(code) if code <= 0x10FFFF else "\ufffd"), at + length


codecs.register_error("pyggml-llama-utf8", _llama_utf8_error)

# ----------------------------------------------------------------------------- token kinds
# llama.cpp's token attribute bits (llama.h llama_token_attr)
ATTR_UNDEFINED, ATTR_UNKNOWN, ATTR_UNUSED, ATTR_NORMAL = 0, 1 << 0, 1 << 1, 1 << 2
ATTR_CONTROL, ATTR_USER_DEFINED, ATTR_BYTE = 1 << 3, 1 << 4, 1 << 5
ATTR_LSTRIP, ATTR_RSTRIP = 1 << 7, 1 << 8      # white space before / after it is dropped
# attribute of each tokenizer.ggml.token_type value (other values: UNDEFINED)
#                          0 UNDEFINED     1 NORMAL     2 UNKNOWN     3 CONTROL
_ATTR_OF_TYPE = np.array([ATTR_UNDEFINED, ATTR_NORMAL, ATTR_UNKNOWN, ATTR_CONTROL,
                          ATTR_USER_DEFINED, ATTR_UNUSED, ATTR_BYTE], dtype=np.int64)
#                          4 USER_DEFINED     5 UNUSED     6 BYTE
_ATTR_SPECIAL = ATTR_CONTROL | ATTR_UNKNOWN            # printed only when special=True
_C_SPACES = " \t\n\v\f\r"                               # what C's isspace() strips

# ----------------------------------------------------------------------------- pre-tokenizers
# tokenizer.ggml.pre -> (pre-tokenizer in pretokenize.py, settings) as llama.cpp's
# llama_vocab::impl::load and llm_tokenizer_bpe set them; names not listed are refused.
#   keep_spaces  decode() leaves spaces before punctuation alone (clean_spaces false)
#   whole_words  a word that is a token stays whole (ignore_merges)
#   add_bos      BOS added by default (the file's add_bos_token key decides where present)
#   no_bos       no BOS token by default (the file's bos_token_id names one where present)
#   mark_spaces  ' ' becomes '▁' before the pre-tokenizer (escape_whitespaces), and back
#   raw_utf8     BPE over the words' own characters, <0xXX> tokens for bytes (byte_encode false)
#   gemma4       Gemma 4's rules: BOS always added, a run of newlines that is a token stays whole
_PRE = {}
for _names, _kind, _settings in [
    ("default", "default", ""),
    ("gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert "
     "exaone4 mpt olmo jais jina-v1-en jina-v2-code roberta-bpe", "gpt2", ""),
    ("trillion granite-docling", "gpt2", "keep_spaces"),
    ("llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano", "llama3",
     "whole_words add_bos"),
    ("dbrx smaug-bpe", "llama3", ""),
    ("chatglm-bpe", "llama3", "no_bos"),
    ("glm4 glm5", "llama3", "no_bos whole_words"),
    ("jais-2", "jais2", ""),
    ("qwen2 deepseek-r1-qwen kormo f2llmv2 hunyuan grok-2 solar-open", "qwen2", "keep_spaces"),
    ("stablelm2 megrez", "qwen2", ""),
    ("qwen35", "qwen35", "keep_spaces"),
    ("smollm command-r", "smollm", "keep_spaces"),
    ("starcoder refact codeshell exaone minerva-7b mellum2", "smollm", ""),
    ("falcon", "falcon", ""),
    ("deepseek-llm", "deepseek-llm", "keep_spaces"),
    ("deepseek-coder", "deepseek-coder", "keep_spaces"),
    ("deepseek-v3 hunyuan-dense joyai-llm hy_v4", "deepseek3-llm", "keep_spaces"),
    ("spark2_5", "spark2.5", "keep_spaces"),
    ("youtu", "youtu", "keep_spaces whole_words"),
    ("poro-chat", "poro", "keep_spaces"),
    ("bloom gpt3-finnish", "poro", ""),
    ("viking", "viking", "keep_spaces"),
    ("tekken", "tekken", "keep_spaces whole_words add_bos"),
    ("chameleon", "chameleon", "keep_spaces add_bos"),
    ("gpt-4o llama4 kanana2 talkie minimax-m2", "gpt4o", "keep_spaces"),
    ("granite-embed-multi-97m", "granite-emb-multi", "keep_spaces whole_words"),
    ("tiny_aya cohere2moe", "tiny-aya", "keep_spaces"),
    ("kimi-k2", "kimi-k2", "keep_spaces"),
    ("superbpe", "superbpe", "keep_spaces"),
    ("bailingmoe bailingmoe2 llada-moe", "bailingmoe", "keep_spaces"),
    ("seed-coder", "seed-coder", "keep_spaces"),
    ("ufakzeka", "ufakzeka", "keep_spaces"),
    ("afmoe", "afmoe", "keep_spaces"),
    ("laguna", "laguna", "keep_spaces"),
    ("exaone-moe", "exaone-moe", ""),
    ("minicpm5", "minicpm5", "whole_words"),
    ("gemma4 granite-embed-multi-311m", "gemma4", "mark_spaces raw_utf8 gemma4"),
    ("sarvam-moe", "gemma4", "keep_spaces mark_spaces raw_utf8"),
]:
    for _name in _names.split():
        _PRE[_name] = (_kind, frozenset(_settings.split()))

# token texts that end generation (llama.cpp's special_eog_ids heuristics, by text)
EOG_TEXTS = frozenset([
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
])
# tokens found by text when the file names no id; each becomes CONTROL (llama.cpp does the same)
_BY_TEXT = {
    "eot": ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
            "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
            "<end_of_utterance>"],
    "eom": ["<|eom_id|>"],
    "fim_pre": ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
                "▁<PRE>", "<|code_prefix|>", "<|prefix|>"],
    "fim_suf": ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
                "▁<SUF>", "<|code_suffix|>", "<|suffix|>"],
    "fim_mid": ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
                "▁<MID>", "<|code_middle|>", "<|middle|>"],
    "fim_pad": ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    "fim_rep": ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
    "fim_sep": ["<|file_sep|>"],
}
# gpt-oss's tokens that llama.cpp always prints (it makes them USER_DEFINED)
_ALWAYS_PRINTED = ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]
# special token ids: (name, metadata key suffix); later keys override earlier ones
_SPECIAL_KEYS = [
    ("bos", "bos_token_id"), ("eos", "eos_token_id"), ("eot", "eot_token_id"),
    ("eom", "eom_token_id"), ("unk", "unknown_token_id"), ("sep", "seperator_token_id"),
    ("pad", "padding_token_id"), ("mask", "mask_token_id"),
    ("fim_pre", "fim_pre_token_id"), ("fim_suf", "fim_suf_token_id"),
    ("fim_mid", "fim_mid_token_id"), ("fim_pad", "fim_pad_token_id"),
    ("fim_rep", "fim_rep_token_id"), ("fim_sep", "fim_sep_token_id"),
    ("fim_pre", "prefix_token_id"), ("fim_suf", "suffix_token_id"), ("fim_mid", "middle_token_id"),
]

_WORD_CACHE_LIMIT = 1 << 16     # words remembered per tokenizer before the cache starts over
_SHORT_WORD = 64                # words of up to this many UTF-8 bytes go to the compiled BPE
# ... when the batch holds at least this many bytes: below it the Python heap takes less
# time than the first batch's numba import and cache load (a short prompt, e.g. `pyggml
# generate --demo "Hello"`, then starts without numba).  Both give the same ids.
_COMPILED_BPE_MIN_BYTES = 2048


class Tokenizer:
    """A GGUF file's vocabulary and what all kinds of tokenizer do with it; see the module
    docstring.  ``Tokenizer.from_metadata`` returns the subclass the file's model needs.

    n_vocab, bos_id, eos_id     (None where the vocabulary has no such token)
    add_bos, add_eos            whether encode(add_special=True) adds them (llama_vocab_get_add_*)
    add_space_prefix            SentencePiece's ' ' before the text, dropped again by decode()
    clean_spaces                decode() drops spaces before . , ! ? and some apostrophes
    eog_ids                     frozenset of the ids that end generation
    special_ids                 name -> id or None: bos eos eot eom unk sep pad mask fim_*
    texts, token_to_id, attrs   id -> token text, text -> id, id -> llama.cpp attribute bits

    A subclass cuts a raw fragment into words (``_words``) and encodes words
    (``_encode_words``); it may read prompt bytes (``_read``), frame the ids
    (``_add_special``) and print normal tokens (``_normal_piece``) its own way.
    """

    def __init__(self, metadata: Mapping, *, default_ids: Mapping[str, int],
                 add_bos: bool, clean_spaces: bool, add_space_prefix: bool = False,
                 bos_always: bool = False):
        """default_ids, add_bos, clean_spaces, add_space_prefix: llama.cpp's defaults for this
        kind of vocabulary (the file's keys override ids and add_* flags); bos_always: add
        BOS whatever the file says (llama.cpp's Gemma 4 workaround)."""
        tokens = metadata.get("tokenizer.ggml.tokens")
        if tokens is None:
            raise TokenizerError("the file's vocabulary lacks tokenizer.ggml.tokens")
        texts = list(tokens)
        n_vocab = len(texts)
        if n_vocab == 0:
            raise TokenizerError("tokenizer.ggml.tokens is empty")

        # id <-> text.  Token texts are the file's strings (invalid UTF-8 as surrogate escapes).
        if set(map(type, texts)) != {str}:
            raise TokenizerError("tokenizer.ggml.tokens must be an array of strings")
        token_to_id = dict(zip(texts, range(n_vocab)))
        if "" in token_to_id:
            for i in (i for i, t in enumerate(texts) if not t):
                texts[i] = f"[EMPTY_{i}]"            # what llama.cpp names an empty token
            token_to_id = dict(zip(texts, range(n_vocab)))
        if len(token_to_id) != n_vocab:
            seen = {}
            for i, t in enumerate(texts):
                if t in seen:
                    raise TokenizerError(f"tokenizer.ggml.tokens: token {t!r} appears twice, "
                                         f"as ids {seen[t]} and {i}")
                seen[t] = i
        self.texts, self.token_to_id = texts, token_to_id

        token_types = metadata.get("tokenizer.ggml.token_type")
        if token_types is None:
            attrs = np.full(n_vocab, ATTR_NORMAL, dtype=np.int64)
        else:
            types = np.asarray(token_types)
            if (types.ndim != 1 or len(types) < n_vocab
                    or not np.issubdtype(types.dtype, np.integer)):
                got = len(types) if types.ndim == 1 else types.shape
                raise TokenizerError(f"tokenizer.ggml.token_type must hold one integer per token "
                                     f"({n_vocab}), got {got}")
            types = types[:n_vocab].astype(np.int64)
            attrs = np.where((types >= 0) & (types < len(_ATTR_OF_TYPE)),
                             _ATTR_OF_TYPE[np.clip(types, 0, len(_ATTR_OF_TYPE) - 1)],
                             ATTR_UNDEFINED)
        special_ids = {name: metadata[f"tokenizer.ggml.{key}"] for name, key in _SPECIAL_KEYS
                       if metadata.get(f"tokenizer.ggml.{key}") is not None}
        self._find_special_tokens(attrs, default_ids, special_ids)
        self.attrs = attrs.tolist()

        self.add_bos = bos_always or bool(metadata.get("tokenizer.ggml.add_bos_token", add_bos))
        self.add_eos = bool(metadata.get("tokenizer.ggml.add_eos_token", False))
        self.add_space_prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix",
                                                  add_space_prefix))
        self.clean_spaces = clean_spaces
        for flag, name in ((self.add_bos, "bos"), (self.add_eos, "eos")):
            if flag and getattr(self, f"{name}_id") is None:
                raise TokenizerError(f"tokenizer.ggml.add_{name}_token is true (or the default "
                                     f"for this vocabulary), but the vocabulary has no "
                                     f"{name.upper()} token")

        # tokens the partition step looks for: longest text (in UTF-8 bytes) first
        specials = np.flatnonzero(attrs & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))
        specials = specials.tolist()
        specials.sort(key=lambda i: -len(_token_bytes(texts[i])))
        self._specials = [(texts[i], i) for i in specials]
        self._user_defined = [(t, i) for t, i in self._specials
                              if not self.attrs[i] & _ATTR_SPECIAL]
        self._strip_white_space_by_name(metadata)
        self._word_ids: dict[str, tuple[int, ...]] = {}
        self._pieces: dict[int, bytes] = {}

    @classmethod
    def from_metadata(cls, metadata: Mapping) -> Tokenizer:
        """The tokenizer of a GGUF file, from its metadata key/values: a BpeTokenizer,
        SpmTokenizer or WordPieceTokenizer, as tokenizer.ggml.model says."""
        model = metadata.get("tokenizer.ggml.model")
        if model is None:
            raise TokenizerError("the file has no tokenizer (no tokenizer.ggml.model key)")
        if model in ("gpt2", "gemma4"):
            return BpeTokenizer(metadata)
        if model == "llama":
            from .spm import SpmTokenizer
            return SpmTokenizer(metadata)
        if model == "bert":
            from .wordpiece import WordPieceTokenizer
            return WordPieceTokenizer(metadata)
        raise TokenizerError(f"tokenizer.ggml.model is {model!r}, which pyggml does not read; "
                             f"it reads 'gpt2' and 'gemma4' (BPE), 'llama' (SentencePiece) "
                             f"and 'bert' (WordPiece) vocabularies")

    def _find_special_tokens(self, attrs: np.ndarray, defaults: Mapping[str, int],
                             given: Mapping[str, int]) -> None:
        """bos/eos/eot/... ids and the end-of-generation set, as llama.cpp's load() settles them.

        Tokens that end generation or serve as EOT/FIM tokens by their text become CONTROL.
        """
        n_vocab = len(self.texts)
        ids = {name: None for name, _ in _SPECIAL_KEYS}
        ids.update({name: i for name, i in defaults.items() if i < n_vocab})  # else: none
        for name, value in given.items():
            if isinstance(value, (int, np.integer)) and 0 <= value < n_vocab:
                ids[name] = int(value)                                    # else: keep the default
        for name, candidates in _BY_TEXT.items():
            if ids[name] is None:
                found = [self.token_to_id[t] for t in candidates if t in self.token_to_id]
                if found:
                    ids[name] = min(found)
                    attrs[ids[name]] |= ATTR_CONTROL
        eog = {ids[name] for name in ("fim_pad", "fim_rep", "fim_sep") if ids[name] is not None}
        for text in EOG_TEXTS:
            i = self.token_to_id.get(text)
            if i is not None:
                eog.add(i)
                attrs[i] |= ATTR_CONTROL
        for text in _ALWAYS_PRINTED:
            if text in self.token_to_id:
                attrs[self.token_to_id[text]] = ATTR_USER_DEFINED
        eog.update(ids[name] for name in ("eos", "eot", "eom") if ids[name] is not None)
        # two end-of-generation sets in which another token ends a turn, not <|end|>
        # (o200k_harmony and solar-open), and two in which </s> is an ordinary token
        eog_texts = {self.texts[i]: i for i in eog}
        if "<|end|>" in eog_texts and ("<|call|>" in eog_texts or "<|calls|>" in eog_texts) and (
                "<|return|>" in eog_texts or "<|flush|>" in eog_texts):
            eog.discard(eog_texts["<|end|>"])
            attrs[eog_texts["<|end|>"]] = ATTR_USER_DEFINED
        if "</s>" in eog_texts and (
                "<|tool_response>" in eog_texts or "<|plamo:eos|>" in eog_texts):
            eog.discard(eog_texts["</s>"])
            attrs[eog_texts["</s>"]] = ATTR_NORMAL
        self.special_ids = ids
        self.bos_id, self.eos_id = ids["bos"], ids["eos"]
        self.eog_ids = frozenset(eog)

    def _strip_white_space_by_name(self, metadata: Mapping) -> None:
        """Special tokens that eat the white space beside them, which llama.cpp's load()
        decides by the model's name, architecture or pre-tokenizer."""
        name = str(metadata.get("general.name", "")).lower()
        architecture = str(metadata.get("general.architecture", ""))
        pre = str(metadata.get("tokenizer.ggml.pre", ""))

        def mark(text: str, bit: int, on: bool = True, *, required: bool) -> None:
            i = self.token_to_id.get(text)
            if i is None:
                if required:                          # llama.cpp's load() fails the same way
                    raise TokenizerError(f"the vocabulary of {name!r} (a Phi-3 by its name) "
                                         f"lacks the token {text!r}")
                return
            self.attrs[i] = self.attrs[i] | bit if on else self.attrs[i] & ~bit

        if (any(p in pre for p in ("jina-v2-de", "jina-v2-es", "jina-v2-code"))
                or any(a in architecture for a in ("nomic-bert-moe", "jina-bert-v3"))):
            mark("<mask>", ATTR_LSTRIP, required=False)
        elif "phi-3" in name or "phi3" in name:
            for _, i in self._specials:
                self.attrs[i] |= ATTR_RSTRIP
            mark("</s>", ATTR_RSTRIP, required=True)
            for text in ("<unk>", "<s>", "<|endoftext|>"):
                mark(text, ATTR_RSTRIP, False, required=True)
        elif "modern-bert" in name:
            mark("[MASK]", ATTR_LSTRIP, required=False)

    @property
    def n_vocab(self) -> int:
        return len(self.texts)

    # ------------------------------------------------------------------------- encode
    def encode(self, text: str | bytes, add_special: bool = True, parse_special: bool = False,
               *, literal_mark: str | None = None) -> list[int]:
        """Token ids of text, as llama_tokenize(text, add_special, parse_special).

        ``text`` may be bytes (a prompt as the user typed it): they are read as llama.cpp
        reads a prompt (see ``decode_utf8``; SentencePiece keeps them as bytes), never
        re-encoded.  ``literal_mark`` is a character placed inside special-token texts
        that must stay plain text (a chat message's content, see chat.py): the mark stops
        those texts from matching and is then dropped, so they are encoded as ordinary
        text.
        """
        fragments = self._partition(self._read(text), parse_special)
        if literal_mark:
            fragments = [f if type(f) is int else f.replace(literal_mark, "") for f in fragments]
        pieces = []                                   # words and special token ids, in order
        after_special = True                          # the text starts as after a special token
        for fragment in fragments:
            if type(fragment) is int:
                pieces.append(fragment)
            else:
                pieces += self._words(fragment, after_special)
            after_special = type(fragment) is int
        ids = self._word_ids_of({p for p in pieces if type(p) is str})
        out = []
        for piece in pieces:
            if type(piece) is int:
                out.append(piece)
            else:
                out += ids[piece]
        return self._add_special(out) if add_special else out

    def _read(self, text: str | bytes) -> str:
        """The text of a prompt given as str or bytes (see ``decode_utf8``)."""
        if isinstance(text, (bytes, bytearray)):
            return decode_utf8(bytes(text))
        if not isinstance(text, str):
            raise UsageError(f"encode() takes a str or bytes, got {type(text).__name__}")
        return text

    def _add_special(self, ids: list[int]) -> list[int]:
        """ids framed as encode(add_special=True) frames them."""
        head = [self.bos_id] if self.add_bos else []
        tail = [self.eos_id] if self.add_eos else []
        return head + ids + tail

    def _words(self, fragment: str, after_special: bool) -> list[str]:
        """A raw fragment cut into words whose ids do not depend on each other."""
        raise NotImplementedError

    def _encode_words(self, words: list[str]) -> dict[str, tuple[int, ...]]:
        """Words (from _words) -> their ids."""
        raise NotImplementedError

    def _word_ids_of(self, words: set[str]) -> dict[str, tuple[int, ...]]:
        """ids of each word, from the word cache or freshly encoded (then cached).  The
        result is this call's own dict, so another thread restarting the cache is harmless."""
        cache = self._word_ids
        found = {word: cache.get(word) for word in words}
        fresh = self._encode_words([word for word, ids in found.items() if ids is None])
        if fresh:
            if len(cache) + len(fresh) > _WORD_CACHE_LIMIT:      # start over with this text's words
                cache.clear()
            found.update(fresh)
            cache.update(found)
        return found

    def literal_texts(self) -> list[str]:
        """Texts that become special tokens only with parse_special (CONTROL, UNKNOWN):
        what a chat message must not be able to write (see chat.py)."""
        return [text for text, i in self._specials if self.attrs[i] & _ATTR_SPECIAL]

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        """text -> raw text fragments and special token ids, in order (tokenizer_st_partition)."""
        fragments: list[str | int] = [text] if text else []
        for special, token_id in (self._specials if parse_special else self._user_defined):
            if special not in text:
                continue
            attr = self.attrs[token_id]
            cut: list[str | int] = []
            for fragment in fragments:
                if type(fragment) is int or special not in fragment:
                    cut.append(fragment)
                    continue
                parts = fragment.split(special)
                for n, part in enumerate(parts):
                    if n:
                        cut.append(token_id)
                        if attr & ATTR_RSTRIP:
                            part = part.lstrip(_C_SPACES)
                    if n < len(parts) - 1 and attr & ATTR_LSTRIP:
                        part = part.rstrip(_C_SPACES)
                    if part:
                        cut.append(part)
            fragments = cut
        return fragments

    # ------------------------------------------------------------------------- decode
    def token_to_piece(self, token_id: int, special: bool = False) -> bytes:
        """The bytes token_id stands for (llama_token_to_piece with lstrip 0)."""
        if not 0 <= token_id < len(self.texts):
            raise UsageError(f"token id {token_id} is outside the vocabulary "
                             f"(0..{len(self.texts) - 1})")
        attr = self.attrs[token_id]
        if attr & _ATTR_SPECIAL and not special:
            return b""
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = self._pieces[token_id] = self._piece(token_id, attr)
        return piece

    def _piece(self, token_id: int, attr: int) -> bytes:
        text = self.texts[token_id]
        if attr & (_ATTR_SPECIAL | ATTR_USER_DEFINED):
            return _token_bytes(text)
        if attr & ATTR_NORMAL:
            return self._normal_piece(text)
        if attr & ATTR_BYTE:                          # "<0xAB>": strtol of its hex digits
            digits = re.match(r"[0-9a-fA-F]*", text[3:5]).group()
            return bytes([int(digits, 16) if digits else 0])
        return b""                                    # UNUSED and UNDEFINED tokens print nothing

    def _normal_piece(self, text: str) -> bytes:
        """The bytes of a NORMAL token: its text with '▁' read as a space (SentencePiece
        and WordPiece vocabularies)."""
        return _token_bytes(text).replace(_SPACE_MARK_UTF8, b" ")

    def decode(self, ids, special: bool = False) -> str:
        """Text of ids, as llama_detokenize(remove_special=False, unparse_special=special)."""
        pieces = [self.token_to_piece(int(i), special) for i in ids]
        if self.add_space_prefix and pieces and pieces[0][:1] == b" ":
            pieces[0] = pieces[0][1:]
        data = b"".join(pieces)
        if self.clean_spaces:
            data = _clean_spaces(data)
        return data.decode("utf-8", "replace")


class BpeTokenizer(Tokenizer):
    """A BPE vocabulary (tokenizer.ggml.model "gpt2", or "gemma4"); see the module docstring.

    pre, pretokenizer           tokenizer.ggml.pre and the PreTokenizer it names
    ignore_merges               a word that is a token stays whole (llama3 and others)
    raw_utf8, mark_spaces       Gemma 4's kind: BPE over characters, ' ' written '▁'
    """

    def __init__(self, metadata: Mapping):
        gemma4_model = metadata.get("tokenizer.ggml.model") == "gemma4"
        pre = "gemma4" if gemma4_model else metadata.get("tokenizer.ggml.pre") or "default"
        if pre == "whitespace":
            raise TokenizerError("tokenizer.ggml.pre 'whitespace' goes with tokenizer.ggml.model "
                                 "'whitespace' (jina-embeddings-v2-base-zh), which pyggml does "
                                 "not read; under 'gpt2' llama.cpp's BPE aborts on two white-space "
                                 "characters in a row")
        if pre not in _PRE:
            raise TokenizerError(f"tokenizer.ggml.pre {pre!r} is not supported; supported: "
                                 f"{', '.join(sorted(_PRE))}")
        kind, settings = _PRE[pre]
        merges = metadata.get("tokenizer.ggml.merges")
        if merges is None and pre != "kimi-k2":          # Kimi-K2 may go without (llama.cpp)
            raise TokenizerError("the file's BPE tokenizer lacks tokenizer.ggml.merges")
        default_ids = {} if gemma4_model else {"eos": 11} if "no_bos" in settings else \
            {"bos": 11, "eos": 11}
        super().__init__(metadata, default_ids=default_ids, add_bos="add_bos" in settings,
                         clean_spaces="keep_spaces" not in settings,
                         bos_always="gemma4" in settings)
        self.pre = pre
        self.pretokenizer = PreTokenizer(kind)
        self.ignore_merges = "whole_words" in settings
        self.raw_utf8 = "raw_utf8" in settings
        self.mark_spaces = "mark_spaces" in settings
        self.newlines_whole = "gemma4" in settings

        # merge "left right" -> rank (its index; the first of two equal merges counts).
        # Symbols never contain a space (it is 'Ġ' at byte level, '▁' in Gemma 4's texts),
        # so the merge string itself is the key: looking up left + " " + right finds what
        # llama.cpp's split at the first space (from position 1) finds.
        merges = list(merges or [])
        if merges and set(map(type, merges)) != {str}:
            raise TokenizerError("tokenizer.ggml.merges must be an array of strings")
        self.merge_rank = dict(zip(reversed(merges), range(len(merges) - 1, -1, -1)))
        self._merge_table = MergeTable.build(merges, self.token_to_id,
                                             None if self.raw_utf8 else BYTE_TO_CHAR)

    def _words(self, fragment: str, after_special: bool) -> list[str]:
        if self.mark_spaces:
            fragment = fragment.replace(" ", SPACE_MARK)
        return self.pretokenizer.split(fragment)

    def _stays_whole(self, word: str) -> bool:
        """Whether llama.cpp takes word whole when it is a token, before any merge."""
        return self.ignore_merges or (self.newlines_whole and not word.strip("\n"))

    def _encode_words(self, words) -> dict[str, tuple[int, ...]]:
        """Pre-token words -> ids; short words in one compiled batch (bpe.py) when the
        vocabulary allows it, the others one by one through _encode_word."""
        table = self._merge_table
        result, batch, batch_ids = {}, [], []
        if table is not None and sum(map(len, words)) < _COMPILED_BPE_MIN_BYTES:
            table = None                                 # (characters: a lower bound of bytes)
        for word in words:
            data = word.encode("utf-8", "surrogatepass")
            if table is None or len(data) > _SHORT_WORD or self._stays_whole(word):
                result[word] = self._encode_word(word)
            elif not self.raw_utf8:
                batch.append(word)
                batch_ids.append(data)
            else:                                      # each character must be a token
                ids = list(map(self.token_to_id.get, word))
                if None in ids:
                    result[word] = self._encode_word(word)
                else:
                    batch.append(word)
                    batch_ids.append(ids)
        if batch:
            encoded = (table.merge_words(batch_ids) if self.raw_utf8
                       else table.encode_words(batch_ids))
            result.update(zip(batch, encoded))
        return result

    def _encode_word(self, word: str) -> tuple[int, ...]:
        """One pre-token word -> ids: byte-level text, BPE merges, vocabulary lookup."""
        if self.raw_utf8:
            text = word
        else:   # UTF-8 bytes as latin-1 code points, then each mapped to its byte-level stand-in
            text = word.encode("utf-8", "surrogatepass").decode("latin-1").translate(
                _LATIN1_TO_BYTE_LEVEL)
        token_to_id = self.token_to_id
        if text in token_to_id and self._stays_whole(word):
            return (token_to_id[text],)
        symbols = self._bpe(text)
        ids = list(map(token_to_id.get, symbols))
        if None in ids:                   # a symbol that is not a token: its bytes one by one
            ids = [found for symbol, token_id in zip(symbols, ids)
                   for found in ([token_id] if token_id is not None else self._bytes_of(symbol))]
        return tuple(ids)

    def _bytes_of(self, symbol: str) -> list[int]:
        """The tokens llama.cpp finds for the bytes of a symbol that is no token: <0xXX>
        tokens over raw UTF-8; at byte level, each byte of the symbol's UTF-8 text taken
        as a one-byte token text.  Bytes without a token are dropped."""
        token_to_id = self.token_to_id
        if self.raw_utf8:
            texts = [f"<0x{byte:02X}>" for byte in symbol.encode("utf-8", "surrogatepass")]
        else:
            texts = [_one_byte_text(byte) for byte in symbol.encode("utf-8")]
        return [token_to_id[t] for t in texts if t in token_to_id]

    def _bpe(self, text: str) -> list[str]:
        """Merge adjacent symbols, lowest merge rank first and leftmost first on ties.

        Symbols form a linked list (prev/next indices); candidate pairs wait in a heap
        keyed (rank, left index) with the two symbols they were made of.  A popped pair
        whose symbols have changed since is stale and skipped, as in llama.cpp's
        llm_tokenizer_bpe_session (a symbol only changes by growing or being merged away,
        so "the same string object" means "the same text" here).
        """
        symbols = list(text)                  # one character each (at byte level: one byte)
        rank = self.merge_rank.get
        ranks = list(map(rank, map(" ".join, zip(text, text[1:]))))
        heap = [(r, i, i + 1, symbols[i], symbols[i + 1])
                for i, r in enumerate(ranks) if r is not None]
        if not heap:
            return symbols
        n = len(symbols)
        heapify(heap)
        prev = list(range(-1, n - 1))
        next_ = list(range(1, n + 1))
        next_[-1] = -1
        while heap:
            _, left, right, a, b = heappop(heap)
            if symbols[left] is not a or symbols[right] is not b:
                continue                                          # stale
            merged = symbols[left] = a + b
            symbols[right] = ""
            before, after = prev[left], next_[right]
            next_[left] = after
            if after != -1:
                prev[after] = left
                r = rank(merged + " " + symbols[after])
                if r is not None:
                    heappush(heap, (r, left, after, merged, symbols[after]))
            if before != -1:
                r = rank(symbols[before] + " " + merged)
                if r is not None:
                    heappush(heap, (r, before, left, symbols[before], merged))
        return [s for s in symbols if s]

    def _normal_piece(self, text: str) -> bytes:
        if self.mark_spaces:
            return super()._normal_piece(text)
        try:
            return bytes(CHAR_TO_BYTE[c] for c in text)
        except KeyError:
            return _decode_byte_level_with_unknowns(text)


def _token_bytes(text: str) -> bytes:
    """A token text's bytes in the file (the reader keeps invalid UTF-8 as surrogateescape)."""
    return text.encode("utf-8", "surrogateescape")


def _one_byte_text(byte: int) -> str:
    """The token text (as the reader gives it) of a token made of one byte."""
    return bytes([byte]).decode("utf-8", "surrogateescape")


def _decode_byte_level_with_unknowns(text: str) -> bytes:
    """llama_decode_text for a text holding code points outside the byte-level alphabet."""
    out = bytearray()
    for c in text:
        byte = CHAR_TO_BYTE.get(c)
        if byte is not None:
            out.append(byte)
        else:                          # an invalid byte in the file reads as U+FFFD in llama.cpp
            bad = "\udc80" <= c <= "\udcff"
            utf8 = "\ufffd".encode() if bad else c.encode("utf-8", "surrogatepass")
            out += b"[UNK_BYTE_0x" + utf8.hex().encode() + _token_bytes(text) + b"]"
    return bytes(out)


def _clean_spaces(data: bytes) -> bytes:
    """llama.cpp's detokenizer clean-up for vocabularies with clean_spaces (not qwen2/smollm)."""
    data = re.sub(rb" (?=[?!.,])", b"", data)              # " ?" " !" " ." " ,"  -> "?" ...
    # " ' " -> "'": an apostrophe between two spaces loses both (the space after it is then
    # gone, so it cannot serve as the space before a following apostrophe)
    out = bytearray(data[:1])
    i, eaten = 1, -1
    while i < len(data):
        if (data[i] == 0x27 and i + 1 < len(data) and data[i + 1] == 0x20
                and data[i - 1] == 0x20 and i - 1 != eaten):
            out[-1:] = b"'"
            eaten = i + 1
            i += 2
            continue
        out.append(data[i])
        i += 1
    return re.sub(rb" (?='[sm]|'re|'ve)", b"", bytes(out))  # " 's" " 'm" " 're" " 've"


class StreamDecoder:
    """Turns token ids into text as they come, holding back bytes of an unfinished character.

    A multi-byte UTF-8 character often spans two tokens; printing each token's bytes
    on its own would show replacement characters.  add() returns only complete
    characters; flush() returns whatever is left (an incomplete tail as U+FFFD).

    By default the text is the tokens' pieces one after another, as llama.cpp prints a
    generation.  With ``detokenize=True`` it is what decode() gives for all ids so far:
    the first token's leading space dropped where add_space_prefix put it there, and
    clean_spaces' tidying, for which a space or apostrophe among the last two bytes
    waits until the next token shows what follows it.
    """

    def __init__(self, tokenizer: Tokenizer, special: bool = False, *, detokenize: bool = False):
        self.tokenizer = tokenizer
        self.special = special
        self.detokenize = detokenize
        self._started = False
        self._pending = b""

    def add(self, token_id: int) -> str:
        piece = self.tokenizer.token_to_piece(token_id, self.special)
        if self.detokenize and not self._started and self.tokenizer.add_space_prefix:
            piece = piece.removeprefix(b" ")
        self._started = True
        data = self._pending + piece
        cut = len(data)
        for back in range(1, min(3, len(data)) + 1):         # an unfinished character's lead byte?
            byte = data[-back]
            if byte & 0xC0 == 0x80:
                continue                                     # continuation byte: look further back
            if 0xC0 <= byte < 0xF8 and back < (2 if byte < 0xE0 else 3 if byte < 0xF0 else 4):
                cut = len(data) - back
            break
        if self.detokenize and self.tokenizer.clean_spaces:
            # the clean-up looks at most one byte back from a space or apostrophe and
            # three ahead of it: text before two other bytes is cleaned the same whatever
            # comes next (the bytes of an unfinished character are such bytes)
            while cut >= 2 and (data[cut - 1] in b" '" or data[cut - 2] in b" '"):
                cut -= 1
            if cut < 2:
                cut = 0
        self._pending = data[cut:]
        return self._text(data[:cut])

    def _text(self, data: bytes) -> str:
        if self.detokenize and self.tokenizer.clean_spaces:
            data = _clean_spaces(data)
        return data.decode("utf-8", "replace")

    def flush(self) -> str:
        data, self._pending = self._pending, b""
        return self._text(data)

"""Byte-level BPE tokenizer (``tokenizer.ggml.model = "gpt2"``), token for token like llama.cpp.

    text ──special-token partition──> raw fragments and special token ids
    raw fragment ──pre-tokenizer (pretokenize.py)──> words
    word ──UTF-8, each byte as one printable code point──> "Ġhello"
    "Ġhello" ──BPE merges, lowest rank first──> ["Ġhel", "lo"] ──vocab──> ids

Byte-level alphabet (GPT-2's ``bytes_to_unicode``): the 188 printable bytes stand for
themselves (0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF); the other 68 (controls, space, 0x7F-0xA0,
0xAD) become U+0100 + n in byte order, so the space 0x20 is 'Ġ' (U+0120) and '\\n' is 'Ċ'.

Special tokens (llama.cpp ``tokenizer_st_partition``): every token of type CONTROL,
USER_DEFINED or UNKNOWN is searched for in the text, longest first, each one cutting all
raw fragments left by the longer ones.  With ``parse_special=False`` CONTROL and UNKNOWN
tokens are left to BPE but USER_DEFINED ones are still matched (as Hugging Face does).

Decoding reverses the byte mapping per token (``token_to_piece``); CONTROL and UNKNOWN
tokens print their text only when ``special`` is asked for, USER_DEFINED ones always.

What llama.cpp leaves unspecified is fixed here: special tokens of equal length are tried
in id order (llama.cpp's std::sort is not stable), and where several tokens could serve
as the FIM / EOT token by text, the lowest id wins (llama.cpp takes a hash-map order).
"""
from __future__ import annotations

import codecs
import re
from collections.abc import Mapping, Sequence
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
# attribute of each tokenizer.ggml.token_type value (other values: UNDEFINED)
#                          0 UNDEFINED     1 NORMAL     2 UNKNOWN     3 CONTROL
_ATTR_OF_TYPE = np.array([ATTR_UNDEFINED, ATTR_NORMAL, ATTR_UNKNOWN, ATTR_CONTROL,
                          ATTR_USER_DEFINED, ATTR_UNUSED, ATTR_BYTE], dtype=np.int64)
#                          4 USER_DEFINED     5 UNUSED     6 BYTE
_ATTR_SPECIAL = ATTR_CONTROL | ATTR_UNKNOWN            # printed only when special=True

# ----------------------------------------------------------------------------- pre-tokenizers
# tokenizer.ggml.pre -> (regexes in pretokenize.py, clean_spaces, ignore_merges, add_bos default)
# as llama.cpp's llama_vocab::impl::load sets them; names not listed are refused.
_PRE = {}
for _names, _setting in [
    (["default"], ("default", True, False, False)),
    (["gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "a.x-4.0", "mellum", "exaone4", "mpt",
      "olmo"], ("gpt2", True, False, False)),
    (["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"],
     ("llama3", True, True, True)),
    (["dbrx", "smaug-bpe"], ("llama3", True, False, False)),
    (["qwen2", "deepseek-r1-qwen", "kormo", "hunyuan", "grok-2"], ("qwen2", False, False, False)),
    (["stablelm2", "megrez"], ("qwen2", True, False, False)),
    (["smollm", "command-r"], ("smollm", False, False, False)),
    (["starcoder", "refact", "codeshell", "exaone", "minerva-7b"], ("smollm", True, False, False)),
]:
    for _name in _names:
        _PRE[_name] = _setting

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


class Tokenizer:
    """A GGUF file's byte-level BPE vocabulary; see the module docstring.

    n_vocab, bos_id, eos_id     (None where the vocabulary has no such token)
    add_bos, add_eos            whether encode(add_special=True) adds them
    eog_ids                     frozenset of the ids that end generation
    special_ids                 name -> id or None: bos eos eot eom unk sep pad mask fim_*
    texts, token_to_id, attrs   id -> token text, text -> id, id -> llama.cpp attribute bits
    """

    def __init__(self, tokens: Sequence[str], merges: Sequence[str], token_types=None, *,
                 pre: str = "default", special_ids: Mapping[str, int] | None = None,
                 add_bos: bool | None = None, add_eos: bool = False,
                 add_space_prefix: bool = False):
        n_vocab = len(tokens)
        if n_vocab == 0:
            raise TokenizerError("tokenizer.ggml.tokens is empty")
        if pre not in _PRE:
            raise TokenizerError(f"tokenizer.ggml.pre {pre!r} is not supported; supported: "
                                 f"{', '.join(sorted(_PRE))}")
        kind, self.clean_spaces, self.ignore_merges, default_add_bos = _PRE[pre]
        self.pre = pre
        self.pretokenizer = PreTokenizer(kind)

        # id <-> text.  Token texts are byte-level strings, except special tokens' plain text.
        texts = list(tokens)
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

        # merge "left right" -> rank (its index; the first of two equal merges counts).
        # Symbols never contain a space (it is 'Ġ' at byte level), so the merge string itself
        # is the key: looking up left + " " + right finds what llama.cpp's split at the first
        # space (from position 1) finds.
        merges = list(merges)
        if merges and set(map(type, merges)) != {str}:
            raise TokenizerError("tokenizer.ggml.merges must be an array of strings")
        self.merge_rank = dict(zip(reversed(merges), range(len(merges) - 1, -1, -1)))
        self._merge_table = MergeTable.build(merges, token_to_id, BYTE_TO_CHAR)

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
        self._find_special_tokens(attrs, dict(special_ids or {}))
        self.attrs = attrs.tolist()

        self.add_bos = default_add_bos if add_bos is None else bool(add_bos)
        self.add_eos = bool(add_eos)
        self.add_space_prefix = bool(add_space_prefix)   # BPE ignores it, but decode() drops
                                                         # the first token's leading space
        for flag, name in ((self.add_bos, "bos"), (self.add_eos, "eos")):
            if flag and getattr(self, f"{name}_id") is None:
                raise TokenizerError(f"tokenizer.ggml.add_{name}_token is true, but the "
                                     f"vocabulary has no {name.upper()} token")

        # tokens the partition step looks for: longest text (in UTF-8 bytes) first
        specials = np.flatnonzero(attrs & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))
        specials = specials.tolist()
        specials.sort(key=lambda i: -len(_token_bytes(texts[i])))
        self._specials = [(texts[i], i) for i in specials]
        self._user_defined = [(t, i) for t, i in self._specials
                              if not self.attrs[i] & _ATTR_SPECIAL]
        self._word_ids: dict[str, tuple[int, ...]] = {}
        self._pieces: dict[int, bytes] = {}

    @classmethod
    def from_metadata(cls, metadata: Mapping) -> Tokenizer:
        """The tokenizer of a GGUF file, from its metadata key/values."""
        model = metadata.get("tokenizer.ggml.model")
        if model is None:
            raise TokenizerError("the file has no tokenizer (no tokenizer.ggml.model key)")
        if model != "gpt2":
            raise TokenizerError(f"tokenizer.ggml.model is {model!r}; pyggml reads only "
                                 f"byte-level BPE vocabularies ('gpt2')")
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
            if key not in metadata:
                raise TokenizerError(f"the file's BPE tokenizer lacks {key}")
        special_ids = {}
        for name, key in _SPECIAL_KEYS:
            value = metadata.get(f"tokenizer.ggml.{key}")
            if value is not None:
                special_ids[name] = value
        return cls(metadata["tokenizer.ggml.tokens"], metadata["tokenizer.ggml.merges"],
                   metadata.get("tokenizer.ggml.token_type"),
                   pre=metadata.get("tokenizer.ggml.pre") or "default",
                   special_ids=special_ids,
                   add_bos=metadata.get("tokenizer.ggml.add_bos_token"),
                   add_eos=metadata.get("tokenizer.ggml.add_eos_token", False),
                   add_space_prefix=metadata.get("tokenizer.ggml.add_space_prefix", False))

    def _find_special_tokens(self, attrs: np.ndarray, given: dict[str, int]) -> None:
        """bos/eos/eot/... ids and the end-of-generation set, as llama.cpp's load() settles them.

        Tokens that end generation or serve as EOT/FIM tokens by their text become CONTROL.
        """
        n_vocab = len(self.texts)
        ids = {name: None for name, _ in _SPECIAL_KEYS}
        ids["bos"] = ids["eos"] = 11 if n_vocab > 11 else None          # BPE defaults
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
        eog.update(ids[name] for name in ("eos", "eot", "eom") if ids[name] is not None)
        self.special_ids = ids
        self.bos_id, self.eos_id = ids["bos"], ids["eos"]
        self.eog_ids = frozenset(eog)

    @property
    def n_vocab(self) -> int:
        return len(self.texts)

    # ------------------------------------------------------------------------- encode
    def encode(self, text: str | bytes, add_special: bool = True, parse_special: bool = False,
               *, literal_mark: str | None = None) -> list[int]:
        """Token ids of text, as llama_tokenize(text, add_special, parse_special).

        ``text`` may be bytes (a prompt as the user typed it): they are read as llama.cpp
        reads a prompt (see ``decode_utf8``), never re-encoded.  ``literal_mark`` is a
        character placed inside special-token texts that must stay plain text (a chat
        message's content, see chat.py): the mark stops those texts from matching and
        is then dropped, so they are encoded as ordinary text.
        """
        if isinstance(text, (bytes, bytearray)):
            text = decode_utf8(bytes(text))
        if not isinstance(text, str):
            raise UsageError(f"encode() takes a str or bytes, got {type(text).__name__}")
        out = [self.bos_id] if add_special and self.add_bos else []
        pieces = []                                   # words and special token ids, in order
        for fragment in self._partition(text, parse_special):
            if type(fragment) is int:
                pieces.append(fragment)
            else:
                if literal_mark:
                    fragment = fragment.replace(literal_mark, "")
                pieces += self.pretokenizer.split(fragment)
        words = {p for p in pieces if type(p) is str}
        ids = self._word_ids_of(words)
        for piece in pieces:
            if type(piece) is int:
                out.append(piece)
            else:
                out += ids[piece]
        if add_special and self.add_eos:
            out.append(self.eos_id)
        return out

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
            cut: list[str | int] = []
            for fragment in fragments:
                if type(fragment) is int or special not in fragment:
                    cut.append(fragment)
                    continue
                for n, part in enumerate(fragment.split(special)):
                    if n:
                        cut.append(token_id)
                    if part:
                        cut.append(part)
            fragments = cut
        return fragments

    def _encode_words(self, words) -> dict[str, tuple[int, ...]]:
        """Pre-token words -> ids; short words in one compiled batch (bpe.py) when the
        vocabulary allows it, the others one by one through _encode_word."""
        table = self._merge_table
        result, batch = {}, []
        for word in words:
            data = word.encode("utf-8", "surrogatepass")
            if table is None or len(data) > _SHORT_WORD or self.ignore_merges:
                result[word] = self._encode_word(word)
            else:
                batch.append((word, data))
        if batch:
            encoded = table.encode_words([data for _, data in batch])
            result.update(zip((word for word, _ in batch), encoded))
        return result

    def _encode_word(self, word: str) -> tuple[int, ...]:
        """One pre-token word -> ids: byte-level text, BPE merges, vocabulary lookup."""
        # UTF-8 bytes as latin-1 code points, then each mapped to its byte-level stand-in
        data = word.encode("utf-8", "surrogatepass")
        text = data.decode("latin-1").translate(_LATIN1_TO_BYTE_LEVEL)
        token_to_id = self.token_to_id
        if self.ignore_merges and text in token_to_id:        # llama3: a token stays whole
            return (token_to_id[text],)
        symbols = self._bpe(text)
        ids = list(map(token_to_id.get, symbols))
        if None not in ids:
            return tuple(ids)
        # a symbol that is not a token: llama.cpp looks up each of its UTF-8 bytes on its own
        found = []
        for symbol, token_id in zip(symbols, ids):
            if token_id is None:
                found += [token_to_id[chr(byte)] for byte in symbol.encode("utf-8")
                          if byte < 0x80 and chr(byte) in token_to_id]
            else:
                found.append(token_id)
        return tuple(found)

    def _bpe(self, text: str) -> list[str]:
        """Merge adjacent symbols, lowest merge rank first and leftmost first on ties.

        Symbols form a linked list (prev/next indices); candidate pairs wait in a heap
        keyed (rank, left index) with the two symbols they were made of.  A popped pair
        whose symbols have changed since is stale and skipped, as in llama.cpp's
        llm_tokenizer_bpe_session (a symbol only changes by growing or being merged away,
        so "the same string object" means "the same text" here).
        """
        symbols = list(text)                  # one byte-level character per byte
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
            try:
                return bytes(CHAR_TO_BYTE[c] for c in text)
            except KeyError:
                return _decode_byte_level_with_unknowns(text)
        if attr & ATTR_BYTE:                          # "<0xAB>": strtol of its hex digits
            digits = re.match(r"[0-9a-fA-F]*", text[3:5]).group()
            return bytes([int(digits, 16) if digits else 0])
        return b""                                    # UNUSED and UNDEFINED tokens print nothing

    def decode(self, ids, special: bool = False) -> str:
        """Text of ids, as llama_detokenize(remove_special=False, unparse_special=special)."""
        pieces = [self.token_to_piece(int(i), special) for i in ids]
        if self.add_space_prefix and pieces and pieces[0][:1] == b" ":
            pieces[0] = pieces[0][1:]
        data = b"".join(pieces)
        if self.clean_spaces:
            data = _clean_spaces(data)
        return data.decode("utf-8", "replace")


def _token_bytes(text: str) -> bytes:
    """A token text's bytes in the file (the reader keeps invalid UTF-8 as surrogateescape)."""
    return text.encode("utf-8", "surrogateescape")


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
    """

    def __init__(self, tokenizer: Tokenizer, special: bool = False):
        self.tokenizer = tokenizer
        self.special = special
        self._pending = b""

    def add(self, token_id: int) -> str:
        data = self._pending + self.tokenizer.token_to_piece(token_id, self.special)
        cut = len(data)
        for back in range(1, min(3, len(data)) + 1):         # an unfinished character's lead byte?
            byte = data[-back]
            if byte & 0xC0 == 0x80:
                continue                                     # continuation byte: look further back
            if 0xC0 <= byte < 0xF8 and back < (2 if byte < 0xE0 else 3 if byte < 0xF0 else 4):
                cut = len(data) - back
            break
        self._pending = data[cut:]
        return data[:cut].decode("utf-8", "replace")

    def flush(self) -> str:
        data, self._pending = self._pending, b""
        return data.decode("utf-8", "replace")

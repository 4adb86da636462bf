"""SentencePiece (``tokenizer.ggml.model = "llama"``), token for token like llama.cpp's
llm_tokenizer_spm: Llama 1/2, Mistral 7B, Mixtral, TinyLlama, Phi-3, Gemma 1-3.

    raw fragment ──' ' before it, if it starts the text or follows a special token
                   (add_space_prefix: true by default, Gemma files say false)──>
    ' ' -> '▁' ──> "▁Hello▁world" ──its UTF-8 characters as symbols──> ▁ H e l l o ▁ w o r l d
    ──merge the adjacent pair whose concatenation is the token of highest score
      (tokenizer.ggml.scores), the leftmost on ties, again and again──> ▁Hello ▁world
    ──each symbol's token, or its bytes as <0xXX> tokens──> ids

A character is what its lead byte says (llama.cpp's unicode_len_utf8), so the bytes of a
prompt that are not UTF-8 stay bytes and come out as byte tokens: SentencePiece never
decodes the prompt, and neither does this tokenizer (see ``_read``).

Merges are the same whether a text is merged whole, as llama.cpp does, or cut into
words merged one by one, wherever no token can span a cut: every symbol a merge makes
is a token, a substring of the text.  The cuts are before each '▁' that follows a
character no token has right before a '▁' (in Llama 2's vocabulary: any but '▁'), so
that words can be cached like BPE's.

llama.cpp's resegment() would take a symbol that is no token apart again through the
merges that made it; that never happens (a merge is queued only when its text is a
token, and a symbol of one character cannot have a merge's text), so a symbol is its
token or its bytes.  A byte token is "<0xXX>", else the byte itself as a token; a byte
with neither is llama.cpp's crash (std::out_of_range) and the unknown token here.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from heapq import heapify, heappop, heappush

import numpy as np

from ..errors import TokenizerError
from .tokenizer import SPACE_MARK, Tokenizer, _one_byte_text

# llama.cpp's defaults for a SentencePiece vocabulary (llama_vocab::impl::load)
DEFAULT_IDS = {"bos": 1, "eos": 2, "unk": 0}
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")        # a byte of the prompt that is not UTF-8


class SpmTokenizer(Tokenizer):
    """A SentencePiece vocabulary; see the module docstring.

    scores      id -> the token's score (tokenizer.ggml.scores; 0 without the key)
    """

    def __init__(self, metadata: Mapping):
        super().__init__(metadata, default_ids=DEFAULT_IDS, add_bos=True, clean_spaces=False,
                         add_space_prefix=True)
        n_vocab = self.n_vocab
        scores = metadata.get("tokenizer.ggml.scores")
        if scores is None:
            scores = np.zeros(n_vocab, np.float32)
        scores = np.asarray(scores)
        if (scores.ndim != 1 or len(scores) < n_vocab
                or not np.issubdtype(scores.dtype, np.number)):
            got = len(scores) if scores.ndim == 1 else scores.shape
            raise TokenizerError(f"tokenizer.ggml.scores must hold one number per token "
                                 f"({n_vocab}), got {got}")
        self.scores = scores[:n_vocab].astype(np.float32).tolist()   # llama.cpp's float scores

        # byte -> the token llama.cpp falls back to (the unknown token is always there:
        # id 0 unless the file names another)
        get, unk = self.token_to_id.get, self.special_ids["unk"]
        self._byte_ids = [get(f"<0x{byte:02X}>", get(_one_byte_text(byte), unk))
                          for byte in range(256)]

        # cut before '▁' where no token can span the cut (see the module docstring)
        joiners = {SPACE_MARK}
        for text in self.texts:
            at = text.find(SPACE_MARK, 1)
            while at > 0:
                joiners.add(text[at - 1])
                at = text.find(SPACE_MARK, at + 1)
        self._cuts = re.compile(f"(?<=[^{re.escape(''.join(sorted(joiners)))}])(?={SPACE_MARK})")

    def _read(self, text: str | bytes) -> str:
        """The prompt as llama.cpp's SentencePiece sees it, its bytes: a str is taken as its
        UTF-8 (lone surrogates included), bytes as they are; bytes that are not UTF-8 are
        kept as surrogate escapes (the form token texts take too)."""
        if isinstance(text, str):
            text = text.encode("utf-8", "surrogatepass")
        if isinstance(text, (bytes, bytearray)):
            return bytes(text).decode("utf-8", "surrogateescape")
        return super()._read(text)

    def _words(self, fragment: str, after_special: bool) -> list[str]:
        if self.add_space_prefix and after_special:
            fragment = " " + fragment
        text = fragment.replace(" ", SPACE_MARK)
        if _ESCAPED_BYTE.search(text):        # a lead byte may take a '▁' in: no cuts
            return [text]
        return self._cuts.split(text)

    def _encode_words(self, words) -> dict[str, tuple[int, ...]]:
        return {word: self._encode_word(word) for word in words}

    def _encode_word(self, word: str) -> tuple[int, ...]:
        """One word -> ids: llama.cpp's llm_tokenizer_spm_session on it.

        Symbols form a linked list (prev/next indices); candidate pairs wait in a heap
        keyed (-score, left index) with the two symbols they were made of.  A popped pair
        whose symbols have changed since is stale and skipped (llama.cpp compares their
        lengths; a symbol only changes by growing or being merged away, so "the same
        string object" means the same here).
        """
        symbols = _characters(word)
        token_to_id, scores = self.token_to_id, self.scores
        heap = []
        for i in range(len(symbols) - 1):
            token_id = token_to_id.get(symbols[i] + symbols[i + 1])
            if token_id is not None:
                heap.append((-scores[token_id], i, i + 1, symbols[i], symbols[i + 1]))
        heapify(heap)
        n = len(symbols)
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
                token_id = token_to_id.get(merged + symbols[after])
                if token_id is not None:
                    heappush(heap, (-scores[token_id], left, after, merged, symbols[after]))
            if before != -1:
                token_id = token_to_id.get(symbols[before] + merged)
                if token_id is not None:
                    heappush(heap, (-scores[token_id], before, left, symbols[before], merged))
        ids = []
        for symbol in filter(None, symbols):
            token_id = token_to_id.get(symbol)
            if token_id is not None:
                ids.append(token_id)
            else:
                ids += self._bytes_of(symbol)
        return tuple(ids)

    def _bytes_of(self, symbol: str) -> list[int]:
        return [self._byte_ids[byte] for byte in symbol.encode("utf-8", "surrogateescape")]


def _characters(text: str) -> list[str]:
    """text's characters as llama.cpp cuts its UTF-8: the length its lead byte says
    (1 for a continuation byte), whatever follows."""
    if not _ESCAPED_BYTE.search(text):
        return list(text)
    data = text.encode("utf-8", "surrogateescape")
    characters, at = [], 0
    while at < len(data):
        length = (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4)[data[at] >> 4]
        characters.append(data[at:at + length].decode("utf-8", "surrogateescape"))
        at += length
    return characters

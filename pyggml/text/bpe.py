"""BPE merges on token ids, compiled: the tokenizer's inner loop.

tokenizer.py says what BPE does (lowest merge rank first, leftmost on ties, as
llama.cpp's llm_tokenizer_bpe_session); this module does it fast for the words most
texts are made of.  In Python each merge costs two lookups in a 150k-entry dict, each a
cache miss on a big table, which capped tokenization below llama.cpp's speed
(docs/performance.md; tools/bench_tokenize.py measures this module).

The merges become one sorted table of int64 pairs, searched by bisection:

    key   = left id << 20 | right id
    value = rank << 20 | merged id          (a rank names one merge, hence one merged id)

so that min() over the values of a word's adjacent pairs finds the lowest rank, and
the merged id comes with it.  Each word is a short array of ids; finding the leftmost
lowest pair is a scan, O(n^2) per word, which beats a heap for the short words this
path takes (long words keep tokenizer.py's heap).  The compiled loop lives in
bpe_numba.py, imported on the first batch that needs it.
"""
from __future__ import annotations

from itertools import chain, repeat
from operator import itemgetter

import numpy as np

ID_BITS = 20
ID_MASK = (1 << ID_BITS) - 1


class MergeTable:
    """The merges of a vocabulary as an id-pair hash table, and the byte -> id table."""

    def __init__(self, keys, values, byte_ids):
        self.keys, self.values = keys, values    # sorted pair keys and their merges
        self.byte_ids = byte_ids                 # uint8 byte -> id of its byte-level token
                                                 # (None: BPE over characters, no bytes)
        self.drops_bytes = byte_ids is not None and bool((byte_ids < 0).any())

    @classmethod
    def build(cls, merges: list[str], token_to_id: dict[str, int],
              byte_level_alphabet: list[str] | None) -> MergeTable | None:
        """None when this vocabulary needs the general path: a merge whose parts or result
        are not tokens, a merge starting with a space (llama.cpp splits at the first space
        after position 0), or more than 2^20 tokens.  Without a byte-level alphabet (BPE
        over the characters themselves) words come as ids, to merge_words."""
        if len(token_to_id) > ID_MASK or not merges:
            return None
        # a byte that is not a token (SmolLM2 lacks some) gets id -1: no merge takes it in
        # (every pair key is >= 0), and llama.cpp drops such a symbol at the end
        byte_ids = (None if byte_level_alphabet is None else
                    np.array([token_to_id.get(c, -1) for c in byte_level_alphabet], np.int32))
        parts = list(map(str.partition, merges, repeat(" ")))
        lefts, rights = list(map(itemgetter(0), parts)), list(map(itemgetter(2), parts))
        if "" in lefts or not all(map(itemgetter(1), parts)):
            return None
        n, get = len(merges), token_to_id.get
        a = np.fromiter(map(get, lefts, repeat(-1)), np.int64, n)
        b = np.fromiter(map(get, rights, repeat(-1)), np.int64, n)
        c = np.fromiter(map(get, map(str.__add__, lefts, rights), repeat(-1)), np.int64, n)
        if (a < 0).any() or (b < 0).any() or (c < 0).any():
            return None
        keys, first = np.unique(a << ID_BITS | b, return_index=True)    # the first merge counts
        return cls(keys, first << ID_BITS | c[first], byte_ids)

    def encode_words(self, words: list[bytes]) -> list[tuple[int, ...]]:
        """The ids of each word (given as UTF-8 bytes), all in one compiled call."""
        lengths = np.fromiter(map(len, words), np.int64, len(words))
        return self._merge(self.byte_ids[np.frombuffer(b"".join(words), np.uint8)], lengths)

    def merge_words(self, words: list[list[int]]) -> list[tuple[int, ...]]:
        """The ids of each word, given as the ids of its characters, all in one compiled call."""
        lengths = np.fromiter(map(len, words), np.int64, len(words))
        return self._merge(np.fromiter(chain.from_iterable(words), np.int32, int(lengths.sum())),
                           lengths)

    def _merge(self, ids: np.ndarray, lengths: np.ndarray) -> list[tuple[int, ...]]:
        starts = np.zeros(len(lengths), np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        from ..quants.jit import announce_compile
        from .bpe_numba import merge_words
        announce_compile(merge_words, "tokenizer's BPE")
        merge_words(ids, starts, lengths, self.keys, self.values)
        flat = ids.tolist()
        words_ids = [flat[s:s + n] for s, n in zip(starts.tolist(), lengths.tolist())]
        if self.drops_bytes:
            return [tuple(i for i in word if i >= 0) for word in words_ids]
        return list(map(tuple, words_ids))

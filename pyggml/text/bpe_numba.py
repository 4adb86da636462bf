"""The compiled half of bpe.py: BPE merges of many short words in one numba call.

Apart from bpe.py so that building a MergeTable, and tokenizing a short prompt (which
tokenizer.py does in Python), imports no numba: a process that generates from a short
prompt with the C kernels starts without numba (see docs/performance.md, cold start).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .bpe import ID_BITS, ID_MASK

NO_MERGE = np.int64(1) << 62


@njit(cache=True)
def _lookup(keys, values, key):
    """values[i] where keys[i] == key (keys sorted), else NO_MERGE: a binary search."""
    i = np.searchsorted(keys, key)
    if i < len(keys) and keys[i] == key:
        return values[i]
    return NO_MERGE


@njit(cache=True)
def merge_words(ids, starts, lengths, keys, values):
    """BPE each word ids[starts[w] : starts[w] + lengths[w]] in place; lengths shrink."""
    pairs = np.empty(ids.shape[0], np.int64)
    for w in range(len(starts)):
        s, n = starts[w], lengths[w]
        for i in range(n - 1):
            pairs[s + i] = _lookup(keys, values,
                                   (np.int64(ids[s + i]) << ID_BITS) | ids[s + i + 1])
        while n > 1:
            best, at = NO_MERGE, -1
            for i in range(n - 1):                      # leftmost lowest: strict <
                if pairs[s + i] < best:
                    best, at = pairs[s + i], i
            if at < 0:
                break
            merged = best & ID_MASK
            ids[s + at] = merged
            for i in range(at + 1, n - 1):              # close the gap
                ids[s + i] = ids[s + i + 1]
                pairs[s + i] = pairs[s + i + 1]
            n -= 1
            if at > 0:
                pairs[s + at - 1] = _lookup(keys, values,
                                            (np.int64(ids[s + at - 1]) << ID_BITS) | merged)
            if at < n - 1:
                pairs[s + at] = _lookup(keys, values,
                                        (np.int64(merged) << ID_BITS) | ids[s + at + 1])
        lengths[w] = n

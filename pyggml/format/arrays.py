"""Large metadata arrays: located in bulk at open, decoded only when asked.

A Qwen2 vocabulary is two arrays of ~150,000 strings each.  Decoding them one by
one in a Python loop costs a tenth of a second and tens of MB of ``str`` objects
(docs/performance.md measures it), most of which nobody reads.  So for arrays of
``LAZY_MIN_ITEMS`` or more items the reader keeps the raw bytes and an index, and these
sequences decode on access:

    StringArray   behaves like list[str]; indexing decodes one string, tolist()
                  and iteration decode all of them in one bulk pass
    NumberArray   behaves like list[int | float | bool]; np.asarray() of it is a
                  zero-copy read-only view

Both own private copies of their bytes (not views of the file's mmap), so metadata
stays valid after the file is closed and cannot change if the file does.

Finding where each string starts, without a Python loop
-------------------------------------------------------
A string array on disk is a chain:

    pos -> | len0 (u64) | bytes0 ... | len1 (u64) | bytes1 ... | len2 ...
           ^ start0                  ^ start1 = start0 + 8 + len0

Real lengths are short, so the top 6 bytes of every length field are zero.  Each
run of six or more zero bytes [a, b) therefore marks one candidate start, b - 8:
the last offset whose bytes +2..+7 lie in the run.  (A length under 256 has seven
zero bytes, so the offset just before it would qualify too; taking the last one
skips it.)  Three numpy passes find the runs.  The chain is then VERIFIED: where
start[i] + 8 + len[i] == start[i+1] holds for a run of candidates, the whole run
is accepted in one step.  Where it fails (a string >= 64 KiB, zero bytes inside
strings), strings are read one by one until the chain meets a candidate again.
Every step consumes at least one string and each window of bytes (at most 1 MiB)
is scanned once, so hostile input costs linear time, never more.
"""
from __future__ import annotations

import operator
import struct
from collections.abc import Sequence

import numpy as np

# arrays with at least this many items become lazy sequences; smaller ones are lists
LAZY_MIN_ITEMS = 1024
WINDOW_BYTES = 1 << 20                  # bytes scanned per numpy pass when finding strings

_U64 = struct.Struct("<Q")


class StringArray(Sequence):
    """``count`` strings as GGUF stores them, decoded on access (UTF-8, surrogateescape).

    ``blob`` is the array's on-disk bytes (u64 length + bytes, per string);
    ``bounds`` holds count + 1 offsets into blob: string i's length field is at
    bounds[i], its text at bounds[i] + 8 .. bounds[i + 1].
    """

    __slots__ = ("_blob", "_bounds")

    def __init__(self, blob: bytes, bounds: np.ndarray):
        self._blob = blob
        self._bounds = bounds

    @classmethod
    def from_strings(cls, strings) -> StringArray:
        """Encode Python strings the way GGUF stores them (used by tests and the writer)."""
        parts, bounds, pos = [], [0], 0
        for text in strings:
            data = text.encode("utf-8", "surrogateescape")
            parts += (_U64.pack(len(data)), data)
            pos += 8 + len(data)
            bounds.append(pos)
        return cls(b"".join(parts), np.array(bounds, dtype=np.int64))

    def __len__(self) -> int:
        return len(self._bounds) - 1

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return self._decode(start, max(start, stop))
            return [self[i] for i in range(start, stop, step)]
        i = operator.index(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"string array index {index} out of range (length {len(self)})")
        begin, end = int(self._bounds[i]) + 8, int(self._bounds[i + 1])
        return self._blob[begin:end].decode("utf-8", "surrogateescape")

    def __iter__(self):
        return iter(self.tolist())

    def tolist(self) -> list[str]:
        """All strings, decoded in one pass (a fresh list on every call)."""
        return self._decode(0, len(self))

    def encoded(self) -> bytes:
        """The array's items exactly as GGUF stores them (lengths and bytes, back to back)."""
        return self._blob

    def __eq__(self, other):
        if isinstance(other, StringArray):
            return self._blob == other._blob
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and self.tolist() == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        head = ", ".join(repr(s) for s in self[:3])
        return f"StringArray([{head}{', ...' if len(self) > 3 else ''}], len={len(self)})"

    def _decode(self, start: int, stop: int) -> list[str]:
        """Strings start..stop-1: drop the length fields, put one NUL between strings,
        decode once, split once.  A string that itself holds a NUL byte would split
        wrongly, so then (rare) decode one by one."""
        count = stop - start
        if count == 0:
            return []
        bounds = self._bounds[start:stop + 1]
        first = int(bounds[0])
        chunk = np.frombuffer(self._blob, dtype=np.uint8, count=int(bounds[-1]) - first, offset=first)
        heads = bounds[:-1] - first                          # (count,) offsets of length fields
        keep = np.ones(chunk.size, dtype=bool)
        for k in range(1, 8):                                # keep byte 0 of each length field
            keep[heads + k] = False
        joined = chunk[keep]                                 # separator slot + text, per string
        joined[heads - 7 * np.arange(count)] = 0
        if np.count_nonzero(joined == 0) != count:           # some string contains a NUL
            return [self[i] for i in range(start, stop)]
        return joined.tobytes().decode("utf-8", "surrogateescape").split("\x00")[1:]


class NumberArray(Sequence):
    """A read-only numpy array that behaves like a list of Python numbers (or bools).

    ``np.asarray(numbers)`` returns the array itself, so numeric code pays nothing.
    """

    __slots__ = ("_values",)

    def __init__(self, values: np.ndarray):
        values = np.array(values)                            # a private copy
        values.flags.writeable = False
        self._values = values

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._values[index].tolist()
        return self._values[operator.index(index)].item()

    def __iter__(self):
        return iter(self._values.tolist())

    def tolist(self) -> list:
        return self._values.tolist()

    def __array__(self, dtype=None, copy=None):
        if copy:
            return self._values.astype(dtype or self._values.dtype, copy=True)
        return self._values if dtype is None else self._values.astype(dtype, copy=False)

    @property
    def dtype(self) -> np.dtype:
        return self._values.dtype

    def __eq__(self, other):
        if isinstance(other, NumberArray):
            return np.array_equal(self._values, other._values)
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and self.tolist() == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        head = ", ".join(repr(v) for v in self[:3])
        return f"NumberArray([{head}{', ...' if len(self) > 3 else ''}], len={len(self)}, dtype={self.dtype})"


class StringChainError(Exception):
    """Raised by ``find_string_bounds`` at the first string that does not fit;
    the reader turns it into a GGUFError that names the file."""

    def __init__(self, index: int, offset: int, length: int):
        super().__init__(index, offset, length)
        self.index, self.offset, self.length = index, offset, length


def find_string_bounds(data: np.ndarray, pos: int, count: int, max_length: int) -> np.ndarray:
    """Offsets of ``count`` GGUF strings stored back to back from ``pos`` in ``data``.

    ``data`` is the whole file as uint8.  Returns count + 1 absolute offsets: the
    length field of string i is at bounds[i], and bounds[count] is the end of the
    array.  Raises StringChainError at the first string whose length exceeds
    ``max_length`` or whose bytes run past the end of ``data``.  Linear in the
    bytes spanned plus the number of strings, whatever the input.
    """
    limit = data.size
    pieces: list[np.ndarray] = []           # runs of string starts, in order
    done = 0
    while done < count:
        # ~17 bytes per vocabulary string; windows of at most 1 MiB keep the scratch arrays
        # small (large short-lived arrays leave the C heap bloated after they are freed)
        begin = pos
        window_end = min(limit, pos + min(WINDOW_BYTES, 24 * (count - done) + 64))
        cands, nexts, run_ends = _candidates(data, begin, window_end, max_length)
        is_cand = None                      # bytes, 1 at candidates: built on the first slow step
        while done < count and pos + 8 <= window_end:
            k = int(np.searchsorted(cands, pos))
            if k < cands.size and cands[k] == pos:           # a verified run: cands[k..last]
                last = min(int(run_ends[np.searchsorted(run_ends, k)]), k + count - done - 1)
                pieces.append(cands[k:last + 1])
                done += last + 1 - k
                pos = int(nexts[last])
                if pos > limit:
                    raise StringChainError(done - 1, int(cands[last]), pos - int(cands[last]) - 8)
                continue
            if is_cand is None:
                mask = np.zeros(window_end - begin, dtype=np.uint8)
                mask[cands - begin] = 1
                is_cand = mask.tobytes()
            walked = []                     # the slow way, until the chain meets a candidate
            while True:
                (length,) = _U64.unpack_from(data, pos)
                if length > max_length or length > limit - pos - 8:
                    raise StringChainError(done, pos, length)
                walked.append(pos)
                done += 1
                pos += 8 + length
                if done == count or pos + 8 > window_end or is_cand[pos - begin]:
                    break
            pieces.append(np.array(walked, dtype=np.int64))
        if done < count and pos + 8 > limit:
            raise StringChainError(done, pos, -1)
    pieces.append(np.array([pos], dtype=np.int64))
    return np.concatenate(pieces)


def _candidates(data: np.ndarray, begin: int, end: int, max_length: int):
    """Likely string starts in data[begin:end], where each one's chain link leads,
    and the indices where a verified run of links ends.

    cands     (n,) absolute offsets whose u64 has its top 6 bytes zero, the last such
              offset in each run of zero bytes (lengths over max_length are left out:
              they take the slow path, which reports them)
    nexts     (n,) cands + 8 + length (the 16-bit length those offsets would hold)
    run_ends  sorted indices j with nexts[j] != cands[j + 1] (always includes n - 1)
    """
    window = data[begin:end]
    zero = window == 0
    edges = np.flatnonzero(zero[1:] != zero[:-1]) + 1      # where zero-ness changes
    if zero.size and zero[0]:
        edges = np.concatenate(([0], edges))
    if zero.size and zero[-1]:
        edges = np.append(edges, zero.size)
    run_starts, run_stops = edges[0::2], edges[1::2]       # runs of zero bytes [start, stop)
    offs = run_stops[run_stops - run_starts >= 6] - 8       # bytes offs+2 .. offs+7 are zero
    offs = offs[offs >= 0]
    lengths = window[offs].astype(np.int64) | (window[offs + 1].astype(np.int64) << 8)
    if max_length < 0xFFFF:
        offs, lengths = offs[lengths <= max_length], lengths[lengths <= max_length]
    cands = offs + begin
    nexts = cands + 8 + lengths
    run_ends = np.flatnonzero(np.append(nexts[:-1] != cands[1:], True)) if offs.size else offs
    return cands, nexts, run_ends

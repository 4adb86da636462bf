"""pyggml.format.arrays: the bulk string-boundary finder against a plain sequential
walk, and the lazy sequences against the Python lists they stand for."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyggml.format.arrays import NumberArray, StringArray, StringChainError, find_string_bounds

MAX = 1 << 30


def encode(strings: list[bytes]) -> bytes:
    return b"".join(struct.pack("<Q", len(s)) + s for s in strings)


def walk(data: bytes, pos: int, count: int) -> list[int]:
    """The obvious sequential walk: the reference for find_string_bounds."""
    bounds = [pos]
    for _ in range(count):
        pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        bounds.append(pos)
    return bounds


# strings that defeat the fast path: empty, zero bytes (fake length fields), >= 64 KiB
tricky_string = st.one_of(
    st.binary(max_size=12),
    st.just(b""),
    st.builds(lambda n: b"\0" * n, st.integers(1, 20)),
    st.builds(lambda n: b"\x01" + b"\0" * n, st.integers(5, 9)),
    st.builds(lambda n: b"y" * n, st.integers(250, 70000)),
    st.text(max_size=6).map(lambda s: s.encode()),
)


@settings(max_examples=400, deadline=None)
@given(strings=st.lists(tricky_string, max_size=40), prefix=st.binary(max_size=9),
       suffix=st.binary(max_size=40), repeat=st.integers(1, 40))
def test_bounds_match_a_sequential_walk(strings, prefix, suffix, repeat):
    strings = strings * repeat
    data = prefix + encode(strings) + suffix
    bounds = find_string_bounds(np.frombuffer(data, np.uint8), len(prefix), len(strings), MAX)
    assert bounds.tolist() == walk(data, len(prefix), len(strings))
    decoded = StringArray(data[len(prefix):bounds[-1]], bounds - len(prefix))
    expected = [s.decode("utf-8", "surrogateescape") for s in strings]
    assert decoded.tolist() == expected
    assert [decoded[i] for i in range(len(strings))] == expected


@settings(max_examples=200, deadline=None)
@given(strings=st.lists(tricky_string, min_size=1, max_size=30), data=st.data())
def test_truncated_chains_stop_at_the_first_string_that_does_not_fit(strings, data):
    encoded = encode(strings)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    bounds = walk(encoded, 0, len(strings))
    first_bad = next(i for i in range(len(strings)) if bounds[i + 1] > cut)
    with pytest.raises(StringChainError) as caught:
        find_string_bounds(np.frombuffer(encoded[:cut], np.uint8), 0, len(strings), MAX)
    assert caught.value.index == first_bad and caught.value.offset == bounds[first_bad]


def test_length_limit():
    data = encode([b"abc", b"defgh"])
    with pytest.raises(StringChainError) as caught:
        find_string_bounds(np.frombuffer(data, np.uint8), 0, 2, 4)
    assert (caught.value.index, caught.value.offset, caught.value.length) == (1, 11, 5)


def test_a_million_empty_strings_walk_correctly():
    n = 1_000_000                     # all zero bytes: every offset looks like a string start
    bounds = find_string_bounds(np.zeros(8 * n + 3, np.uint8), 0, n, MAX)
    assert np.array_equal(bounds, np.arange(n + 1) * 8)


def test_string_array_behaves_like_a_list():
    strings = ["a", "", "ü漢", "nul\0", "z"]
    array = StringArray.from_strings(strings)
    assert len(array) == 5 and array == strings and strings == array and array != strings[:4]
    assert array[2] == "ü漢" and array[-1] == "z" and array[1:4] == strings[1:4]
    assert array[::-2] == strings[::-2] and array[4:1] == []
    assert "z" in array and array.index("z") == 4 and list(reversed(array)) == strings[::-1]
    assert array == StringArray.from_strings(strings) and array != StringArray.from_strings(["a"])
    assert array.encoded() == encode([s.encode() for s in strings])
    assert repr(array).startswith("StringArray(['a', '', 'ü漢', ...], len=5")
    with pytest.raises(IndexError):
        array[-6]
    with pytest.raises(TypeError):
        hash(array)


def test_number_array_behaves_like_a_list():
    values = np.array([3, -1, 2**40], dtype=np.int64)
    array = NumberArray(values)
    values[0] = 99                                  # the array keeps its own copy
    assert array == [3, -1, 2**40] and array.tolist() == [3, -1, 2**40]
    assert array[0] == 3 and type(array[0]) is int and array[1:] == [-1, 2**40]
    assert list(array) == [3, -1, 2**40] and array.dtype == np.int64
    view = np.asarray(array)
    assert view.dtype == np.int64 and not view.flags.writeable
    assert np.asarray(array, dtype=np.float64).tolist() == [3.0, -1.0, 2.0**40]
    assert NumberArray(np.array([1.5], np.float32)) == [1.5]
    assert NumberArray(np.array([True, False])) == [True, False]

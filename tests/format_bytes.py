"""Hand-made GGUF bytes for the format tests: every field spelled out, nothing validated.

Written independently of pyggml's writer so that reader tests do not test the
writer against itself, and so that tests can forge any malformed file.

    gguf(kvs=[kv_u32("a", 1)], infos=[info("t", (4,), F32, 0)], data=bytes(16))
"""
from __future__ import annotations

import struct

# value type ids (gguf.h enum gguf_type), spelled out rather than imported
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = \
    range(13)
SCALAR_FORMATS = {UINT8: "B", INT8: "b", UINT16: "H", INT16: "h", UINT32: "I", INT32: "i",
                  FLOAT32: "f", BOOL: "B", UINT64: "Q", INT64: "q", FLOAT64: "d"}
F32, F16, Q4_0, Q8_0, Q4_K = 0, 1, 2, 8, 12


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def i32(v: int) -> bytes:
    return struct.pack("<i", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def gstr(text) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return u64(len(data)) + data


def kv(key, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + i32(vtype) + payload


def kv_scalar(key, vtype: int, value) -> bytes:
    return kv(key, vtype, struct.pack("<" + SCALAR_FORMATS[vtype], value))


def kv_u32(key, value: int) -> bytes:
    return kv_scalar(key, UINT32, value)


def kv_str(key, text) -> bytes:
    return kv(key, STRING, gstr(text))


def array_payload(item_type: int, items: list, count: int | None = None) -> bytes:
    """item_type i32 | count u64 | items (strings, nested payloads or scalars)."""
    if item_type == STRING:
        body = b"".join(gstr(s) for s in items)
    elif item_type == ARRAY:
        body = b"".join(items)                       # items are array_payload()s already
    else:
        body = struct.pack(f"<{len(items)}{SCALAR_FORMATS[item_type]}", *items)
    return i32(item_type) + u64(len(items) if count is None else count) + body


def kv_array(key, item_type: int, items: list, count: int | None = None) -> bytes:
    return kv(key, ARRAY, array_payload(item_type, items, count))


def info(name, ne, ggml_type: int, offset: int, n_dims: int | None = None) -> bytes:
    """A tensor info: name | n_dims u32 | ne i64 each | type i32 | offset u64."""
    ne = tuple(ne)
    return (gstr(name) + u32(len(ne) if n_dims is None else n_dims)
            + struct.pack(f"<{len(ne)}q", *ne) + i32(ggml_type) + u64(offset))


def gguf(kvs=(), infos=(), data: bytes = b"", *, version: int = 3, n_kv: int | None = None,
         n_tensors: int | None = None, alignment: int = 32, magic: bytes = b"GGUF") -> bytes:
    """A whole file: header, kvs, infos, zero padding to alignment, then data."""
    head = (magic + u32(version) + u64(len(infos) if n_tensors is None else n_tensors)
            + u64(len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(infos))
    return head + bytes(-len(head) % alignment) + data


def header_size(kvs=(), infos=()) -> int:
    """Where the first kv (or, with kvs given, the first info) starts, and so on."""
    return 24 + sum(map(len, kvs)) + sum(map(len, infos))


def length_field_offsets(data: bytes) -> list[int]:
    """Offsets of every u64 length or count in a VALID file (n_tensors, n_kv, string
    lengths, array counts, tensor dims and offsets): targets for mutation tests."""
    out = [8, 16]
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos = 24

    def string(pos):
        out.append(pos)
        return pos + 8 + struct.unpack_from("<Q", data, pos)[0]

    def value(pos, vtype):
        if vtype == STRING:
            return string(pos)
        if vtype == ARRAY:
            item_type = struct.unpack_from("<i", data, pos)[0]
            out.append(pos + 4)
            count = struct.unpack_from("<Q", data, pos + 4)[0]
            pos += 12
            for _ in range(count):
                pos = value(pos, item_type)
            return pos
        return pos + struct.calcsize("<" + SCALAR_FORMATS[vtype])

    for _ in range(n_kv):
        pos = string(pos)
        vtype = struct.unpack_from("<i", data, pos)[0]
        pos = value(pos + 4, vtype)
    for _ in range(n_tensors):
        pos = string(pos)
        n_dims = struct.unpack_from("<I", data, pos)[0]
        out += [pos + 4 + 8 * j for j in range(n_dims)]
        pos += 4 + 8 * n_dims + 4
        out.append(pos)
        pos += 8
    return out

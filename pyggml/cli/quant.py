"""``pyggml quantize`` and ``pyggml inspect``: make a quantized model; read one block by hand.

    pyggml quantize model-f32.gguf model-q4_k.gguf Q4_K     every weight matrix as Q4_K
    pyggml inspect model.gguf blk.0.ffn_down.weight          block 0, field by field
    pyggml inspect model.gguf blk.0.ffn_down.weight --block 7

``quantize`` does what llama.cpp's llama-quantize does with --pure: every 2-D tensor
whose name ends in "weight" (norms excepted) becomes TYPE, falling back like llama.cpp
when a row is not a whole number of blocks (Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K ->
Q5_1, Q6_K -> Q8_0, then F16); the bytes are those llama.cpp's reference quantizers
write.  Everything else (norms, biases, metadata) is copied.  The mixes of Q4_K_M and
friends (Q6_K for some layers) are not reproduced.  OUT appears complete or not at
all: an error, Ctrl-C, SIGTERM or SIGHUP leaves nothing behind.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from ..errors import UnsupportedTypeError, UsageError
from ..format.constants import GGUFValueType, LlamaFileType
from ..ggml import TYPE_TRAITS, GGMLType
from .progress import ProgressBar, add_progress_option, format_bytes

# llama-quantize's shape fallbacks (llama-quant.cpp tensor_type_fallback, 2026 builds)
FALLBACK = {GGMLType.Q2_K: GGMLType.Q4_0, GGMLType.Q3_K: GGMLType.Q4_0,
            GGMLType.Q4_K: GGMLType.Q5_0, GGMLType.Q5_K: GGMLType.Q5_1, GGMLType.Q6_K: GGMLType.Q8_0}
# general.file_type written for each target (the ftype whose default type it is)
FILE_TYPE = {GGMLType.F32: LlamaFileType.ALL_F32, GGMLType.F16: LlamaFileType.MOSTLY_F16,
             GGMLType.BF16: LlamaFileType.MOSTLY_BF16, GGMLType.Q4_0: LlamaFileType.MOSTLY_Q4_0,
             GGMLType.Q4_1: LlamaFileType.MOSTLY_Q4_1, GGMLType.Q5_0: LlamaFileType.MOSTLY_Q5_0,
             GGMLType.Q5_1: LlamaFileType.MOSTLY_Q5_1, GGMLType.Q8_0: LlamaFileType.MOSTLY_Q8_0,
             GGMLType.Q2_K: LlamaFileType.MOSTLY_Q2_K, GGMLType.Q3_K: LlamaFileType.MOSTLY_Q3_K_M,
             GGMLType.Q4_K: LlamaFileType.MOSTLY_Q4_K_M, GGMLType.Q5_K: LlamaFileType.MOSTLY_Q5_K_M,
             GGMLType.Q6_K: LlamaFileType.MOSTLY_Q6_K, GGMLType.IQ4_NL: LlamaFileType.MOSTLY_IQ4_NL}
FLOATS = (GGMLType.F32, GGMLType.F16, GGMLType.BF16)
# llama-quantize's TYPE names (llama.h llama_ftype) that are mixes, not one ggml type: some
# tensors get another type by role and layer.  pyggml does not make them yet; the value is
# the type the mix is built on, where pyggml writes it (llama-quantize --pure of that type).
MIXES = {"Q2_K_S": GGMLType.Q2_K, "Q3_K_S": GGMLType.Q3_K, "Q3_K_M": GGMLType.Q3_K,
         "Q3_K_L": GGMLType.Q3_K, "Q4_K_S": GGMLType.Q4_K, "Q4_K_M": GGMLType.Q4_K,
         "Q5_K_S": GGMLType.Q5_K, "Q5_K_M": GGMLType.Q5_K, "IQ2_M": None, "IQ3_M": None,
         "MXFP4_MOE": None}
# Q4_0 interleaved for SIMD, llama_ftype 33-35: gone from files, llama.cpp repacks Q4_0 at load
REPACKED_Q4_0 = ("Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("quantize", help="quantize a GGUF model to one ggml type",
                              description=__doc__.split("\n\n")[2])
    p.add_argument("input", metavar="IN", help="GGUF file (or any shard), F32/F16/BF16 weights")
    p.add_argument("output", metavar="OUT", help="the quantized GGUF file")
    p.add_argument("type", metavar="TYPE", help=f"one of {', '.join(t.name for t in FILE_TYPE)}")
    p.add_argument("--allow-requantize", action="store_true",
                   help="also requantize tensors that are already quantized (loses precision)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    add_progress_option(p)
    p.set_defaults(run=run_quantize)

    p = subparsers.add_parser("inspect", help="decode one block of a tensor, field by field",
                              description="Print one block of a tensor as its bytes, its "
                                          "fields (scales, mins, quants) and the floats they make.")
    p.add_argument("file", metavar="FILE", help="GGUF file or any shard")
    p.add_argument("tensor", metavar="TENSOR", help="tensor name (see pyggml info --tensors)")
    p.add_argument("--block", type=int, default=0, metavar="N", help="block index (default 0)")
    p.set_defaults(run=run_inspect)


# ---------------------------------------------------------------------- quantize

def target_type(name: str, shape: tuple[int, ...], target: GGMLType) -> GGMLType | None:
    """The type llama-quantize --pure gives this tensor, or None to copy it unchanged."""
    if len(shape) < 2 or not name.endswith("weight") or "_norm.weight" in name:
        return None
    n_cols = shape[-1]
    if n_cols % TYPE_TRAITS[target][0]:
        target = FALLBACK.get(target, target)
        if n_cols % TYPE_TRAITS[target][0]:
            target = GGMLType.F16
    return target


def parse_type(text: str) -> GGMLType:
    """TYPE as a ggml type pyggml writes; a UsageError that says why anything else is not."""
    name = text.upper()
    target = GGMLType.__members__.get(name)
    if target in FILE_TYPE:
        return target
    if name in MIXES:
        why = "a llama-quantize mix (some tensors get other types), not supported yet"
        if MIXES[name] is not None:
            base = MIXES[name].name
            why += f"; {base} makes every weight {base} (llama-quantize --pure)"
    elif name in REPACKED_Q4_0:
        why = "no longer written to files (llama.cpp repacks Q4_0 when it loads: use Q4_0)"
    elif target is not None:
        why = "no quantizer for it yet"
    else:
        why = "not a ggml type"
    raise UsageError(f"TYPE {text!r}: {why}; pyggml can quantize to "
                     f"{', '.join(t.name for t in FILE_TYPE)}")


def run_quantize(args) -> int:
    import pyggml
    from .. import quants
    from ..format.reader import MetadataField
    from ..format.shards import SPLIT_KEYS
    from ..format.writer import RawTensor, write_gguf
    target = parse_type(args.type)
    started = time.monotonic()
    with pyggml.open(args.input) as model:
        plan = {name: target_type(name, info.shape, target) for name, info in model.tensors.items()}
        for name, new_type in plan.items():
            info = model.tensors[name]
            if new_type is not None and info.type != new_type and info.type not in FLOATS \
                    and not args.allow_requantize:
                raise UsageError(f"{args.input}: {name} is already {info.type_name}; "
                                 "requantizing loses precision (use --allow-requantize)")
        # bytes to convert (a tensor of unknown type has no size; raw() refuses it below)
        work = sum(info.nbytes or 0 for name, info in model.tensors.items()
                   if plan[name] not in (None, info.type))
        bar = ProgressBar(work, "quantize", enabled=args.progress)
        tensors = {}
        try:
            for name, info in model.tensors.items():
                new_type = plan[name]
                if new_type is None or new_type == info.type:
                    tensors[name] = RawTensor(info.type, info.shape, model.raw(name))
                    continue
                data = quants.quantize(new_type, model.dequantize(name))
                tensors[name] = RawTensor(new_type, info.shape, data)
                bar(info.nbytes)
        finally:
            bar.close()
        metadata = {key: field for key, field in model.fields.items() if key not in SPLIT_KEYS}
        metadata["general.file_type"] = MetadataField(GGUFValueType.UINT32, int(FILE_TYPE[target]))
        metadata["general.quantization_version"] = MetadataField(GGUFValueType.UINT32, 2)
        path = write_gguf(args.output, metadata, tensors, overwrite=args.force)
    counts: dict[str, int] = {}
    for name, t in tensors.items():
        counts[GGMLType(t.type).name] = counts.get(GGMLType(t.type).name, 0) + 1
    size = sum(np.asarray(t.data).nbytes for t in tensors.values())
    print(path)
    print(f"quantized to {target.name} in {time.monotonic() - started:.1f} s: "
          f"{', '.join(f'{n} {c}' for n, c in counts.items())} tensors, {format_bytes(size)}",
          file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- inspect

def run_inspect(args) -> int:
    import pyggml
    with pyggml.open(args.file) as model:
        info = model.tensors.get(args.tensor)
        if info is None:
            raise UsageError(f"{args.file}: no tensor named {args.tensor!r}")
        sys.stdout.write(describe_block(model, info, args.block))
    return 0


def describe_block(model, info, index: int) -> str:
    """The text of ``pyggml inspect``: one block's bytes, fields and floats."""
    from .. import quants
    cls = quants.get(info.type)
    if cls.ggml_type not in quants.TYPES:
        raise UnsupportedTypeError(f"{info.name}: {info.type_name} is not a weight type")
    n_blocks = info.n_elements // cls.block_size
    if not 0 <= index < n_blocks:
        raise UsageError(f"--block {index}: {info.name} has blocks 0..{n_blocks - 1}")
    raw = model.raw(info.name)
    block = raw[index * cls.type_size:(index + 1) * cls.type_size].reshape(1, -1)
    per_row = info.shape[-1] // cls.block_size
    row, first = divmod(index, per_row)
    shard = model.shards[info.shard]
    lines = [f"{info.name}  {cls.name}  shape {info.shape}  block {index} of {n_blocks}: "
             f"row {row}, columns {first * cls.block_size}..{(first + 1) * cls.block_size - 1}",
             f"{shard.path}: byte offset {info.offset + index * cls.type_size}, "
             f"{cls.type_size} bytes for {cls.block_size} weights "
             f"({8 * cls.type_size / cls.block_size:g} bits per weight)",
             f"format: {(cls.__doc__ or '').strip().splitlines()[0]}", "", "bytes"]
    for field, offset, size, what in cls.layout:
        data = block[0, offset:offset + size]
        value = ""
        if what.startswith("fp16"):
            value = f" = {float(data.view('<f2')[0]):.8g}"
        lines.append(f"  {field:<7s} @{offset:<4d} {size:3d} B  {what}{value}")
        for start in range(0, size, 32):
            lines.append("      " + " ".join(f"{b:02x}" for b in data[start:start + 32]))
    if cls.ggml_type in FLOATS:
        lines += ["", f"value = {float(cls.dequantize_ref(block)[0, 0]):.8g}", ""]
        return "\n".join(lines)
    fields = cls.fields(block)
    y = cls.dequantize_ref(block)[0]
    lines.append("")
    width = getattr(cls, "sub_block", 16)
    if "sc" in fields:                                 # K-quants: the sub-block table
        d = float(fields["d"][0, 0])
        head = f"sub-blocks of {width}: scale d*sc"
        if "m" in fields:
            dmin = float(fields["dmin"][0, 0])
            head += " and min dmin*m  (y = d*sc*q - dmin*m)"
        lines.append(head)
        for j, sc in enumerate(fields["sc"][0]):
            row_text = f"  {j:2d}: sc {int(sc):4d} -> {d * int(sc):+.6g}"
            if "m" in fields:
                m = int(fields["m"][0, j])
                row_text += f"   m {m:3d} -> {dmin * m:.6g}"
            lines.append(row_text)
    else:
        scalars = "  ".join(f"{k} = {float(v[0, 0]):.8g}" for k, v in fields.items() if k in ("d", "m"))
        lines.append(f"{scalars}   (y = {'d*q + m' if 'm' in fields else 'd*q'})")
    grids = [("index (into kvalues)", fields["index"][0], width)] if "index" in fields else []
    grids += [("quants q", fields["q"][0], width), ("floats y", y, 8)]
    for title, values, per_line in grids:
        lines += ["", f"{title}, weights i.. i+{per_line - 1} per line"]
        for start in range(0, cls.block_size, per_line):
            chunk = values[start:start + per_line]
            text = " ".join(f"{v:+12.6g}" if values.dtype.kind == "f" else f"{int(v):3d}" for v in chunk)
            lines.append(f"  {start:3d}: {text}")
    return "\n".join(lines) + "\n"

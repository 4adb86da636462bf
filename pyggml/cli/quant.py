"""``pyggml quantize`` and ``pyggml inspect``: make a quantized model; read one block by hand.

    pyggml quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M    llama-quantize's Q4_K_M
    pyggml quantize model-f16.gguf out.gguf IQ4_NL --imatrix imatrix.gguf
    pyggml quantize model-f16.gguf out.gguf Q4_K --pure         every weight matrix Q4_K
    pyggml inspect model.gguf blk.0.ffn_down.weight             block 0, field by field
    pyggml inspect model.gguf blk.0.ffn_down.weight --block 7

``quantize`` writes the file llama.cpp's llama-quantize writes, byte for byte: its file
types (Q4_K_M, Q3_K_S, IQ4_NL, F16, ...; Q3_K, Q4_K and Q5_K mean the _M mixes, as
there) and its per-tensor rules (pyggml.quants.mix: more bits for the output head,
attn_v and some ffn_down layers, fallbacks where rows are not whole blocks), its options
--pure, --output-tensor-type, --token-embedding-type, --leave-output-tensor, --imatrix
(llama.cpp's importance matrix, GGUF or legacy .dat), --allow-requantize, and its
metadata.  IN may be any shard of a split set; --split-max-size writes OUT as shards
the way gguf-split does.  A file type that needs a type pyggml cannot quantize yet is
refused up front, naming the tensor and the type.  OUT appears complete or not at all:
an error, Ctrl-C, SIGTERM or SIGHUP leaves nothing behind.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from ..errors import GGUFError, ModelError, UnsupportedTypeError, UsageError
from ..format.constants import GGUFValueType, LlamaFileType
from ..ggml import TYPE_TRAITS, GGMLType
from .progress import ProgressBar, add_progress_option, format_bytes

# Q4_0 interleaved for SIMD, llama_ftype 33-35: gone from files, llama.cpp repacks Q4_0 at load
REPACKED_Q4_0 = ("Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8")
GGML_QNT_VERSION = 2                   # general.quantization_version llama.cpp writes
# weights quantized at a time (whole rows; one row if a row is longer): 4 MB as float32,
# which stays in cache where a quantizer decodes to float32 first
SLAB_WEIGHTS = 1 << 20


def add_parser(subparsers) -> None:
    from .split_merge import SIZE_HELP
    p = subparsers.add_parser("quantize", help="quantize a GGUF model as llama-quantize does",
                              description=__doc__.split("\n\n")[2])
    p.add_argument("input", metavar="IN", help="GGUF file (or any shard)")
    p.add_argument("output", metavar="OUT", help="the quantized GGUF file")
    p.add_argument("type", metavar="TYPE", help="a llama-quantize file type: Q4_K_M, Q8_0, "
                                                "IQ4_NL, F16, ...")
    p.add_argument("--pure", action="store_true",
                   help="every weight matrix of TYPE's default type (no mix; fallbacks apply)")
    p.add_argument("--output-tensor-type", metavar="GGML_TYPE",
                   help="the ggml type of output.weight (q8_0, f16, ...)")
    p.add_argument("--token-embedding-type", metavar="GGML_TYPE",
                   help="the ggml type of token_embd.weight")
    p.add_argument("--leave-output-tensor", action="store_true",
                   help="leave output.weight as it is")
    p.add_argument("--imatrix", metavar="FILE",
                   help="llama.cpp importance matrix (llama-imatrix's GGUF, or a legacy .dat)")
    p.add_argument("--allow-requantize", action="store_true",
                   help="also requantize tensors that are already quantized (loses precision)")
    p.add_argument("--split-max-size", metavar="SIZE",
                   help="write OUT as shards of at most SIZE bytes of tensors (" + SIZE_HELP + ")")
    p.add_argument("-t", "--threads", type=int, default=None, metavar="N",
                   help="threads (default, or 0 or less: all cores)")
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

def parse_file_type(text: str) -> str:
    """TYPE as a llama-quantize file type; a UsageError that says why anything else is not."""
    from ..quants import mix
    if text.upper() in REPACKED_Q4_0:
        raise UsageError(f"TYPE {text!r}: no longer written to files (llama.cpp repacks Q4_0 "
                         "when it loads: use Q4_0)")
    return mix.parse_file_type(text)


def parse_ggml_type(text: str | None, option: str) -> GGMLType | None:
    """A ggml type named as ggml names it, in any case (q4_K, F16, iq4_nl)."""
    if text is None:
        return None
    ggml_type = GGMLType.__members__.get(text.upper())
    if ggml_type is None:
        raise UsageError(f"{option} {text!r}: not a ggml type; one of "
                         f"{', '.join(t.name for t in GGMLType)}")
    return ggml_type


def model_shape(model):
    """The hyperparameters llama-quantize's rules read, from the file's metadata."""
    from ..quants.mix import ModelShape
    metadata = model.metadata
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise ModelError(f"{model.path}: no general.architecture: llama-quantize needs it")

    def number(key, default=None):
        value = metadata.get(f"{arch}.{key}", default)
        if isinstance(value, list):                 # per layer: layer 0's, as llama.cpp's n_gqa()
            value = value[0] if value else None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ModelError(f"{model.path}: {arch}.{key} is {value!r}, not a count")
        return value
    n_head = number("attention.head_count", 0)
    return ModelShape(arch, n_layer=number("block_count"), n_head=n_head,
                      n_head_kv=number("attention.head_count_kv", n_head),
                      n_expert=number("expert_count", 0))


def file_type_id(ftype: str) -> int:
    """general.file_type of a llama-quantize file type (llama.h's llama_ftype)."""
    return LlamaFileType.ALL_F32 if ftype == "F32" else LlamaFileType[f"MOSTLY_{ftype}"]


def imatrix_metadata(path: str, imatrix) -> dict:
    """What llama-quantize writes about its --imatrix: the file as given and its first
    dataset (each cut to 127 bytes, its strncpy), the entries, the chunks (if known)."""
    from ..format.reader import MetadataField

    def c_string(text: str) -> str:
        return text.encode("utf-8", "surrogateescape")[:127].decode("utf-8", "surrogateescape")
    fields = {"quantize.imatrix.file": MetadataField(GGUFValueType.STRING, c_string(path))}
    if imatrix.datasets:
        fields["quantize.imatrix.dataset"] = MetadataField(GGUFValueType.STRING,
                                                           c_string(imatrix.datasets[0]))
    fields["quantize.imatrix.entries_count"] = MetadataField(GGUFValueType.UINT32,
                                                             len(imatrix.entries))
    if imatrix.chunk_count > 0:
        fields["quantize.imatrix.chunks_count"] = MetadataField(GGUFValueType.UINT32,
                                                                imatrix.chunk_count)
    return fields


def set_threads(n_threads: int | None) -> None:
    """The quantizers' threads: all cores unless told (llama-quantize's default too)."""
    import numba
    available = numba.config.NUMBA_NUM_THREADS
    if n_threads is None or n_threads <= 0:
        n_threads = available
    if n_threads > available:
        raise UsageError(f"--threads {n_threads}: this machine runs at most {available}")
    numba.set_num_threads(n_threads)


def run_quantize(args) -> int:
    import pyggml
    from ..format.imatrix import read_imatrix
    from ..format.reader import MetadataField
    from ..format.shards import SPLIT_KEYS
    from ..format.writer import RawTensor, write_gguf, write_split
    from ..quants import mix
    from .split_merge import parse_size
    ftype = parse_file_type(args.type)
    output_type = parse_ggml_type(args.output_tensor_type, "--output-tensor-type")
    embedding_type = parse_ggml_type(args.token_embedding_type, "--token-embedding-type")
    max_bytes = parse_size(args.split_max_size, "--split-max-size") if args.split_max_size else 0
    set_threads(args.threads)
    imatrix = read_imatrix(args.imatrix) if args.imatrix else None
    if imatrix is not None:
        for name, values in imatrix.entries.items():
            if not np.isfinite(values).all():
                raise GGUFError(f"the importance of {name} is not finite everywhere "
                                f"({values[~np.isfinite(values)][0]})", path=args.imatrix)
    started = time.monotonic()
    with pyggml.open(args.input) as model:
        names = mix.llama_order(model.tensors)
        plan = mix.Mix(ftype, model_shape(model), names, pure=args.pure,
                       output_tensor_type=output_type, token_embedding_type=embedding_type,
                       has_imatrix=imatrix is not None,
                       quantize_output=not args.leave_output_tensor)
        jobs = {}                             # name -> (new type, its imatrix) to convert
        for name in names:
            info = model.tensors[name]
            if not info.supported:
                raise UnsupportedTypeError(f"{args.input}: {name} has ggml type {info.type_name}, "
                                           "which pyggml does not know, so it cannot copy it")
            new_type = plan.tensor_type(name, info.shape, GGMLType(info.type))
            if new_type != info.type:
                jobs[name] = (new_type, tensor_imatrix(args, ftype, info, new_type, imatrix))
        check_conversions(args, ftype, model, jobs)
        work = sum(model.tensors[name].nbytes for name in jobs)
        bar = ProgressBar(work, "quantize", enabled=args.progress)

        def convert(name, new_type, importance):
            def make():
                bar.label = f"quantize [{names.index(name) + 1:4d}/{len(names)}] {name[:32]:<32s}"
                return convert_tensor(model, name, new_type, importance, bar)
            return make

        tensors = {}
        for name in names:
            info = model.tensors[name]
            shape = info.shape[len(info.shape) - mix.n_dims(info.shape):]   # as ggml_n_dims
            if name in jobs:
                tensors[name] = RawTensor(jobs[name][0], shape, convert(name, *jobs[name]))
            else:
                tensors[name] = RawTensor(info.type, shape, model.raw(name))
        # llama.cpp: the input's metadata, the quantization version and file type set anew
        # (last), the split keys dropped, then what llama-quantize adds about the imatrix
        drop = {"general.quantization_version", "general.file_type", *SPLIT_KEYS}
        metadata = {key: field for key, field in model.fields.items() if key not in drop}
        metadata["general.quantization_version"] = MetadataField(GGUFValueType.UINT32,
                                                                 GGML_QNT_VERSION)
        metadata["general.file_type"] = MetadataField(GGUFValueType.UINT32, int(file_type_id(ftype)))
        if imatrix is not None:
            metadata.update(imatrix_metadata(args.imatrix, imatrix))
        try:
            if max_bytes:
                paths = write_split(args.output, metadata, tensors, max_bytes=max_bytes,
                                    overwrite=args.force)
            else:
                paths = [write_gguf(args.output, metadata, tensors, overwrite=args.force)]
        finally:
            bar.close()
    report(ftype, tensors, plan.fallbacks, paths, time.monotonic() - started)
    return 0


def convert_tensor(model, name: str, new_type: GGMLType, importance, bar) -> np.ndarray:
    """A tensor's rows in new_type (uint8 (rows, row bytes)), SLAB_WEIGHTS at a time
    (the progress bar moves; a quantizer that decodes to float32 first keeps them in
    cache).  With an importance, each expert's rows (ne1 of them) are quantized with that
    expert's part of it, as llama.cpp quantizes expert by expert."""
    from .. import quants
    info = model.tensors[name]
    n_cols = info.shape[-1]
    n_rows = info.n_elements // n_cols
    raw = model.raw(name).reshape(n_rows, -1)
    block_size, type_size = TYPE_TRAITS[new_type]
    out = np.empty((n_rows, n_cols // block_size * type_size), np.uint8)
    n_experts = 1 if importance is None else importance.size // n_cols
    rows_per_expert = n_rows // n_experts
    step = max(1, SLAB_WEIGHTS // n_cols)
    for expert in range(n_experts):
        part = None if importance is None else importance[expert * n_cols:(expert + 1) * n_cols]
        end = (expert + 1) * rows_per_expert
        for start in range(expert * rows_per_expert, end, step):
            stop = min(start + step, end)
            try:
                out[start:stop] = quants.quantize_stored(new_type, info.type, raw[start:stop], part)
            except UsageError as err:                 # rows with an inf or a NaN
                raise UsageError(f"{model.path}: {name}, rows {start} on: {err}") from None
            bar((stop - start) * raw.shape[1])
    return out


def tensor_imatrix(args, ftype: str, info, new_type: GGMLType, imatrix) -> np.ndarray | None:
    """The importance llama-quantize gives a tensor it converts (its imatrix entry, if
    its size is ne0 * experts), or the error it stops with."""
    from ..quants import mix
    importance = None
    if imatrix is not None and info.name in imatrix.entries:
        values = imatrix.entries[info.name]
        n_experts = info.shape[-3] if len(info.shape) >= 3 else 1
        if values.size == info.shape[-1] * n_experts:
            importance = values
        elif mix.category(info.name) != "token_embd":     # (a known mismatch, ignored)
            raise UsageError(f"{args.imatrix}: {values.size} importances for {info.name}, whose "
                             f"rows of {info.shape[-1]} x {n_experts} experts need "
                             f"{info.shape[-1] * n_experts}")
    if importance is None and mix.requires_imatrix(info.name, new_type, ftype):
        raise UsageError(f"{info.name} would be {new_type.name}, which needs an importance matrix "
                         + ("(--imatrix FILE)" if imatrix is None else f"(none in {args.imatrix})"))
    return importance


def check_conversions(args, ftype: str, model, jobs: dict) -> None:
    """Refuse, before anything is written, what pyggml or llama-quantize would refuse."""
    from .. import quants
    from ..quants.mix import FLOATS
    for name, (new_type, _) in jobs.items():
        info = model.tensors[name]
        if info.type not in FLOATS and not args.allow_requantize:
            raise UsageError(f"{args.input}: {name} is already {info.type_name}; requantizing "
                             "loses precision (use --allow-requantize)")
        target = quants.TYPES.get(new_type)
        if target is None or not target.has_quantizer():
            raise UnsupportedTypeError(f"TYPE {ftype}: {name} would be {new_type.name}, which "
                                       "pyggml cannot quantize yet")
        if info.type not in quants.TYPES:
            raise UnsupportedTypeError(f"{args.input}: {name} is {info.type_name}, which pyggml "
                                       "cannot decode to requantize")


def report(ftype: str, tensors: dict, fallbacks: list, paths: list, seconds: float) -> None:
    counts: dict[str, int] = {}
    size = 0
    for t in tensors.values():
        counts[GGMLType(t.type).name] = counts.get(GGMLType(t.type).name, 0) + 1
        block_size, type_size = TYPE_TRAITS[GGMLType(t.type)]
        size += int(np.prod(t.shape)) // block_size * type_size
    for path in paths:
        print(path)
    fell_back = f"; {len(fallbacks)} fell back to another type (rows not whole blocks)"
    print(f"quantized to {ftype} in {seconds:.1f} s: "
          f"{', '.join(f'{n} {c}' for n, c in counts.items())} tensors, {format_bytes(size)}"
          f"{fell_back if fallbacks else ''}", file=sys.stderr)


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
    from ..quants.mix import FLOATS
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
    if hasattr(cls, "describe"):                       # a type's own field-by-field lines
        lines += cls.describe(fields) + ["", "floats y, weights i.. i+7 per line"]
        lines += [f"  {i:3d}: " + " ".join(f"{v:+12.6g}" for v in y[i:i + 8])
                  for i in range(0, cls.block_size, 8)]
        return "\n".join(lines) + "\n"
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

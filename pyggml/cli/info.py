"""``pyggml info FILE``: what a GGUF model is, without reading its weights.

    pyggml info model.gguf                 architecture, hyperparameters, tokenizer,
                                           bytes and bits per weight by type, shards
    pyggml info model-00002-of-00003.gguf  any shard describes the whole split set
    pyggml info model.gguf --tensors       ... and every tensor: type, shape, bytes, place
    pyggml info model.gguf --json          the same as one JSON object, for scripts
"""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from ..format.constants import GGUFValueType, LlamaFileType
from .progress import format_bytes

_TOKENIZER_COUNTS = {"tokenizer.ggml.tokens": "n_tokens", "tokenizer.ggml.merges": "n_merges"}
_SPLIT_PREFIX = "split."


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="describe a GGUF file or split set",
                              description="Describe a GGUF model (any file or shard) without "
                                          "reading its weights.")
    p.add_argument("file", metavar="FILE", help="a GGUF file, or any shard of a split model")
    p.add_argument("--tensors", action="store_true", help="list every tensor")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run_info)


def run_info(args) -> int:
    import pyggml
    with pyggml.open(args.file) as model:
        report = describe(model, tensors=args.tensors)
    sys.stdout.reconfigure(errors="backslashreplace")     # strings may hold non-UTF-8 bytes
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(report))
    return 0


def describe(model, tensors: bool = False) -> dict:
    """Everything ``info`` shows, as JSON-ready Python values."""
    meta = model.metadata
    arch = meta.get("general.architecture")
    arch_prefix = f"{arch}." if isinstance(arch, str) else None
    by_type: dict[str, dict] = {}
    for info in model.tensors.values():
        row = by_type.setdefault(info.type_name, {"n_tensors": 0, "n_elements": 0, "bytes": 0})
        row["n_tensors"] += 1
        row["n_elements"] += info.n_elements
        row["bytes"] = None if info.nbytes is None or row["bytes"] is None else row["bytes"] + info.nbytes
    known = [i for i in model.tensors.values() if i.supported]
    n_bytes = sum(i.nbytes for i in known)
    n_elements = sum(i.n_elements for i in known)
    file_type = meta.get("general.file_type")
    report = {
        "path": str(model.path),
        "architecture": arch,
        "name": meta.get("general.name"),
        "file_type": _enum_name(LlamaFileType, file_type),
        "features": _features(model),
        "hyperparameters": {key[len(arch_prefix):]: _summary(model.fields[key])
                            for key in meta if arch_prefix and key.startswith(arch_prefix)},
        "tokenizer": _tokenizer(model),
        "metadata": {key: _summary(field) for key, field in model.fields.items()
                     if not (arch_prefix and key.startswith(arch_prefix))
                     and not key.startswith("tokenizer.")},
        "n_tensors": len(model.tensors),
        "n_parameters": sum(i.n_elements for i in model.tensors.values()),
        "tensor_bytes": n_bytes,
        "bits_per_weight": round(8 * n_bytes / n_elements, 4) if n_elements else None,
        "types": {name: dict(row, bits_per_weight=None if row["bytes"] is None or not row["n_elements"]
                             else round(8 * row["bytes"] / row["n_elements"], 4))
                  for name, row in sorted(by_type.items(), key=lambda kv: -(kv[1]["bytes"] or 0))},
        "shards": [{"path": str(s.path), "index": s.index, "version": s.version,
                    "alignment": s.alignment, "data_offset": s.data_offset,
                    "file_size": s.file_size, "n_tensors": s.n_tensors} for s in model.shards],
    }
    if tensors:
        report["tensors"] = [{"name": i.name, "type": i.type_name, "shape": list(i.shape),
                              "nbytes": i.nbytes, "shard": i.shard, "offset": i.offset}
                             for i in model.tensors.values()]
    return report


def _features(model) -> dict:
    """What pyggml computes for this file, in words ({"features": [...]}), or why it does
    not run it ({"not_run": the error})."""
    from ..errors import PyggmlError
    from ..model.hparams import HParams
    try:
        hp = HParams.from_metadata(model.metadata, path=model.path)
    except PyggmlError as err:
        return {"not_run": str(err)}
    return {"features": hp.features(model.tensors)}


def _enum_name(enum, value):
    try:
        return enum(value).name
    except (ValueError, TypeError):
        return value


def _summary(field):
    """A metadata value for the report: scalars as they are, arrays as type and length."""
    if field.type != GGUFValueType.ARRAY:
        return field.value
    return {"array": field.item_type.name, "length": len(field.value)}


def _tokenizer(model) -> dict:
    out = {}
    for key, field in model.fields.items():
        if not key.startswith("tokenizer."):
            continue
        short = key.removeprefix("tokenizer.ggml.").removeprefix("tokenizer.")
        if key in _TOKENIZER_COUNTS:
            out[_TOKENIZER_COUNTS[key]] = len(field.value)
        elif key == "tokenizer.chat_template" and isinstance(field.value, str):
            out["chat_template_chars"] = len(field.value)
        else:
            out[short] = _summary(field)
    return out


# ----------------------------------------------------------------------------- text

def render(report: dict) -> str:
    lines = []
    add = lines.append
    shards = report["shards"]
    total_size = sum(s["file_size"] for s in shards)
    versions = sorted({s["version"] for s in shards})
    add(f"{report['path']}: GGUF v{'/'.join(map(str, versions))}, "
        f"{len(shards)} file{'s' if len(shards) > 1 else ''}, {format_bytes(total_size)}")
    model = " ".join(str(x) for x in (report["architecture"], repr(report["name"]) if report["name"]
                                      else None) if x)
    if report["file_type"] is not None:
        model += f", file type {report['file_type']}"
    add(f"model        {model or '(no general.architecture)'}")
    features = report["features"]
    if "features" in features:
        first, *rest = features["features"]
        phrases = [f"{report['architecture']}: {first}", *rest]
        add("runs as      " + _wrap([p + "," for p in phrases[:-1]] + phrases[-1:], separator=" "))
    else:
        add(f"not run      {features['not_run']}")
    if report["hyperparameters"]:
        add("hparams      " + _wrap([f"{k} {_text(v)}" for k, v in report["hyperparameters"].items()]))
    if report["tokenizer"]:
        add("tokenizer    " + _wrap([f"{k} {_text(v)}" for k, v in report["tokenizer"].items()]))
    other = {k: v for k, v in report["metadata"].items()
             if k not in ("general.architecture", "general.name", "general.file_type")}
    if other:
        add("metadata     " + _wrap([f"{k} {_text(v)}" for k, v in other.items()]))
    bpw = report["bits_per_weight"]
    add(f"weights      {_count(report['n_parameters'])} parameters in {report['n_tensors']} "
        f"tensors, {format_bytes(report['tensor_bytes'])}"
        + (f", {bpw:.2f} bits per weight" if bpw is not None else ""))
    add(f"  {'type':<8} {'tensors':>7} {'parameters':>13} {'bytes':>11} {'bpw':>7}")
    for name, row in report["types"].items():
        size = format_bytes(row["bytes"]) if row["bytes"] is not None else "?"
        bits = f"{row['bits_per_weight']:.3f}" if row["bits_per_weight"] is not None else "?"
        add(f"  {name:<8} {row['n_tensors']:>7} {row['n_elements']:>13,} {size:>11} {bits:>7}")
    add(f"shards       {len(shards)}")
    add(f"  {'#':>5} {'tensors':>7} {'data at':>10} {'align':>5} {'size':>11}  file")
    for s in shards:
        add(f"  {s['index'] + 1:>5} {s['n_tensors']:>7} {s['data_offset']:>10} {s['alignment']:>5} "
            f"{format_bytes(s['file_size']):>11}  {s['path']}")
    if "tensors" in report:
        add("tensors")
        add(f"  {'#':>5} {'name':<40} {'type':<8} {'shape':<20} {'bytes':>11} {'shard':>5} "
            f"{'offset':>12}")
        for i, t in enumerate(report["tensors"]):
            size = format_bytes(t["nbytes"]) if t["nbytes"] is not None else "?"
            shape = "x".join(map(str, t["shape"])) or "scalar"
            add(f"  {i:>5} {t['name']:<40} {t['type']:<8} {shape:<20} {size:>11} "
                f"{t['shard'] + 1:>5} {t['offset']:>12}")
    return "\n".join(lines) + "\n"


def _count(n: int) -> str:
    """135_200_000 -> '135.2 M'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return str(n)


def _text(value) -> str:
    if isinstance(value, dict) and "array" in value:
        return f"[{value['length']} x {value['array']}]"
    if isinstance(value, str):
        text = value.replace("\n", "\\n")
        return repr(text if len(text) <= 60 else text[:57] + "...")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Sequence):
        return repr(list(value))
    return str(value)


def _wrap(items: list[str], indent: int = 13, width: int = 100, separator: str = " · ") -> str:
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(separator) + len(item) > width - indent:
            lines.append(line)
            line = item
        else:
            line = f"{line}{separator}{item}" if line else item
    lines.append(line)
    return ("\n" + " " * indent).join(lines)

"""``pyggml split`` and ``pyggml merge``: gguf-split without the C++ build.

    pyggml split IN.gguf OUT --max-tensors 128     OUT-00001-of-0000N.gguf, ...
    pyggml split IN.gguf OUT --max-size 2G         decimal units, like gguf-split (2G = 2e9 bytes)
    pyggml merge ANY_SHARD.gguf OUT.gguf           one file again, without the split.* keys

Existing outputs are replaced only with --force.  Outputs appear complete or not
at all, a split set all its shards together: each file is written under a hidden
temporary name and renamed when complete (pyggml.format.writer says how), and an
error, Ctrl-C, SIGTERM or SIGHUP removes what was written.
"""
from __future__ import annotations

import re
import sys

from ..errors import UsageError
from .progress import ProgressBar, add_progress_option, format_bytes

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


SIZE_HELP = "500M, 2G: decimal"


def parse_size(text: str, option: str = "--max-size") -> int:
    """'2G' -> 2_000_000_000, '500M' -> 500_000_000, '4096' -> 4096 (decimal, as gguf-split)."""
    match = _SIZE.match(text)
    if not match or float(match.group(1)) * _UNITS[match.group(2).upper()] < 1:
        raise UsageError(f"{option} {text!r}: expected a positive size like 500M or 2G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("split", help="split a GGUF model into shards",
                              description="Split a GGUF model (a file or any shard of a split "
                                          "set) into OUT-00001-of-0000N.gguf, ... with "
                                          "llama.cpp's naming and split.* keys.")
    p.add_argument("input", metavar="IN", help="GGUF file or any shard")
    p.add_argument("output", metavar="OUT", help="output prefix (a trailing .gguf is dropped)")
    limit = p.add_mutually_exclusive_group(required=True)
    limit.add_argument("--max-tensors", type=int, metavar="N", help="at most N tensors per shard")
    limit.add_argument("--max-size", metavar="SIZE",
                       help=f"at most SIZE bytes of tensor data per shard ({SIZE_HELP})")
    p.add_argument("--no-tensor-first-split", action="store_true",
                   help="put only metadata in the first shard")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    add_progress_option(p)
    p.set_defaults(run=run_split)

    p = subparsers.add_parser("merge", help="merge a split GGUF model into one file",
                              description="Merge a split set, given by any of its shards, "
                                          "into one GGUF file.")
    p.add_argument("input", metavar="ANY_SHARD", help="any shard of the split set")
    p.add_argument("output", metavar="OUT", help="the merged GGUF file")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    add_progress_option(p)
    p.set_defaults(run=run_merge)


def run_split(args) -> int:
    import pyggml
    from ..format.writer import split_gguf
    if args.max_tensors is not None and args.max_tensors < 1:
        raise UsageError(f"--max-tensors {args.max_tensors}: must be at least 1")
    max_bytes = parse_size(args.max_size) if args.max_size is not None else 0
    with pyggml.open(args.input) as model:
        bar = ProgressBar(_data_bytes(model), "split", enabled=args.progress)
        try:
            paths = split_gguf(model, args.output, max_tensors=args.max_tensors or 0,
                               max_bytes=max_bytes,
                               metadata_only_first=args.no_tensor_first_split,
                               overwrite=args.force, progress=bar)
        finally:
            bar.close()
    for path in paths:
        print(path)
    print(f"split {args.input} into {len(paths)} shards", file=sys.stderr)
    return 0


def run_merge(args) -> int:
    import pyggml
    from ..format.writer import merge_gguf
    with pyggml.open(args.input) as model:
        bar = ProgressBar(_data_bytes(model), "merge", enabled=args.progress)
        try:
            path = merge_gguf(model, args.output, overwrite=args.force, progress=bar)
        finally:
            bar.close()
    print(path)
    print(f"merged {len(model.shards)} shards, {len(model.tensors)} tensors, "
          f"{format_bytes(_data_bytes(model))} of data", file=sys.stderr)
    return 0


def _data_bytes(model) -> int:
    return sum(info.nbytes or 0 for info in model.tensors.values())

"""The ``pyggml`` command.  Each subcommand lives in its own module with ``add_parser``.

Errors pyggml raises on purpose (``PyggmlError``) print as one line and exit with
status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import PyggmlError

# modules under pyggml.cli, each with add_parser(subparsers) setting args.run
COMMAND_MODULES: list[str] = ["info", "split_merge", "quant", "generate"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pyggml", description="Load, run and study GGUF models.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except PyggmlError as err:
        print(f"pyggml {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:              # `pyggml info --tensors | head`
        return 0

"""The ``pyggml`` command.  Each subcommand lives in its own module with ``add_parser``.

How the command ends, whatever happens:

    success                                   exit 0
    a PyggmlError (bad file, bad argument)    one line "pyggml CMD: error: ..."      exit 2
    a bad command line (argparse)             one line, pointing at --help           exit 2
    out of memory                             one line                               exit 2
    SIGINT (Ctrl-C), SIGTERM, SIGHUP          one line "pyggml CMD: stopped by ..."  exit 128 + signal

SIGTERM and SIGHUP (``timeout``, ``kill``, a closed terminal) are turned into an
exception, like Ctrl-C already is, so that every ``finally`` and cleanup runs: an
interrupted split, merge or quantize removes its temporary files.  Anything else
is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import warnings

from ..errors import PyggmlError

# modules under pyggml.cli, each with add_parser(subparsers) setting args.run
COMMAND_MODULES: list[str] = ["info", "split_merge", "quant", "generate", "tokens", "serve"]

# signals that stop a command the way Ctrl-C does (cleanup runs, then exit 128 + signal)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """A stop signal arrived.  A BaseException like KeyboardInterrupt, so that only
    cleanup code (finally, ``except BaseException: remove; raise``) sees it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where to read more, no usage dump."""

    def error(self, message: str):
        if message.endswith("expected one argument"):   # "--max-size -5M" reads as two options
            option = message.split()[1].rstrip(":").split("/")[-1]
            message += f" (a value that starts with '-' is written {option}=VALUE)"
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings from pyggml (e.g. a context beyond the trained one) as one line each."""
    print(f"pyggml: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def _stop_signals_raise():
    """While a command runs: SIGINT, SIGTERM and SIGHUP raise Stopped (main thread only),
    except where they were ignored when we started (``nohup`` ignores SIGHUP)."""
    def stop(signum, frame):
        raise Stopped(signum)
    previous = {}
    try:
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:    # nohup, background jobs
                previous[signum] = signal.signal(signum, stop)
    except ValueError:                    # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyggml", description="Load, run and study GGUF models.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:          # a bad command line (already reported), or --help
        return exit_.code
    with warnings.catch_warnings(), _stop_signals_raise():
        warnings.showwarning = _show_warning
        try:
            return args.run(args) or 0
        except PyggmlError as err:
            print(f"pyggml {args.command}: error: {err}", file=sys.stderr)
            return 2
        except MemoryError:
            print(f"pyggml {args.command}: error: out of memory", file=sys.stderr)
            return 2
        except (KeyboardInterrupt, Stopped) as stop:
            signum = getattr(stop, "signum", signal.SIGINT)
            print(f"\npyggml {args.command}: stopped by {signal.Signals(signum).name}",
                  file=sys.stderr)
            return 128 + signum
        except BrokenPipeError:              # `pyggml info --tensors | head`
            return 0

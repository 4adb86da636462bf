"""A one-line progress bar for long work, drawn on stderr.

    bar = ProgressBar(total_bytes, "merge")
    write_gguf(..., progress=bar)        # the writer calls bar(n) after each chunk
    bar.close()

    bar = ProgressBar(n_tokens, "prompt", unit="tok", delay=2)   # counts, only if slow

It draws only when stderr is a terminal (logs and pipes stay clean) unless told
otherwise (``enabled``; ``--no-progress`` turns it off), at most ten times a
second, so it costs nothing next to the work itself, and with ``delay`` only once
the work has run that many seconds, so that quick work draws nothing at all.
"""
from __future__ import annotations

import sys
import time


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"


def format_count(n: float, unit: str) -> str:
    """812 -> '812 tok'; a rate below 10 keeps one decimal: 2.46 -> '2.5 tok'."""
    return f"{n:.1f} {unit}" if n < 10 and n != int(n) else f"{n:.0f} {unit}"


def add_progress_option(parser) -> None:
    """--no-progress; ``ProgressBar(..., enabled=args.progress)`` obeys it."""
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="draw no progress bar (one is drawn only when stderr is a terminal)")


class ProgressBar:
    """``total`` units of work, counted by calling the bar with each step's amount.

    unit: "B" shows bytes in binary units (KiB, MiB, ...); any other unit a plain
    count, e.g. "tok".  The rate is shown in the same unit per second.
    delay: seconds of work before the first drawing (close() draws nothing if the
    work ended sooner).  enabled: None draws when the stream is a terminal.
    """

    def __init__(self, total: int, label: str, stream=None, width: int = 30, *,
                 unit: str = "B", delay: float = 0.0, enabled: bool | None = None):
        self.total, self.label, self.width, self.unit = max(total, 1), label, width, unit
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.delay = delay
        self.done = 0
        self.started = self.last_draw = time.monotonic()

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self._shown(now) and (now - self.last_draw >= 0.1 or self.done >= self.total):
            self.last_draw = now
            self._draw(now)

    def _shown(self, now: float) -> bool:
        return self.enabled and now - self.started >= self.delay

    def _format(self, n: float) -> str:
        return format_bytes(n) if self.unit == "B" else format_count(n, self.unit)

    def _draw(self, now: float) -> None:
        fraction = min(self.done / self.total, 1.0)
        filled = int(fraction * self.width)
        rate = self.done / max(now - self.started, 1e-9)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{fraction:4.0%} {self._format(self.done)} / {self._format(self.total)}"
                          f"  {self._format(rate)}/s ")
        self.stream.flush()

    def close(self) -> None:
        now = time.monotonic()
        if self._shown(now):
            self._draw(now)
            self.stream.write("\n")
            self.stream.flush()

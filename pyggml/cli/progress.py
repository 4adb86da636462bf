"""A one-line progress bar for long byte copies, drawn on stderr.

    bar = ProgressBar(total_bytes, "merge")
    write_gguf(..., progress=bar)        # the writer calls bar(n) after each chunk
    bar.close()

It draws only when stderr is a terminal (logs and pipes stay clean) and at most
ten times a second, so it costs nothing next to the copy itself.
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


class ProgressBar:
    def __init__(self, total: int, label: str, stream=None, width: int = 30):
        self.total, self.label, self.width = max(total, 1), label, width
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.done = 0
        self.started = self.last_draw = time.monotonic()

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self.last_draw >= 0.1 or self.done >= self.total):
            self.last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = min(self.done / self.total, 1.0)
        filled = int(fraction * self.width)
        rate = self.done / max(now - self.started, 1e-9)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{fraction:4.0%} {format_bytes(self.done)} / {format_bytes(self.total)}"
                          f"  {format_bytes(rate)}/s ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

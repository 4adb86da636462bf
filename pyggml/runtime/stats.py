"""What a generate call measured: load time, memory, prompt and generation speed."""
from __future__ import annotations

import dataclasses
import resource


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far: VmHWM (Linux), else ru_maxrss (KiB),
    which on Linux also counts a parent's memory inherited through fork."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclasses.dataclass
class Stats:
    load_s: float = 0.0
    rss_after_load: int = 0
    prompt_tokens: int = 0
    prompt_s: float = 0.0
    generated_tokens: int = 0
    decoded_tokens: int = 0      # forward passes of single generated tokens
    decode_s: float = 0.0
    hit_eog: bool = False
    context_full: bool = False

    def prompt(self, n_tokens: int, seconds: float) -> None:
        self.prompt_tokens, self.prompt_s = n_tokens, seconds

    def generated(self, n_tokens: int, n_decoded: int, seconds: float) -> None:
        self.generated_tokens, self.decoded_tokens, self.decode_s = n_tokens, n_decoded, seconds

    def report(self, extra: dict[str, str] | None = None) -> str:
        """The stats block `pyggml generate` prints to stderr."""
        mib = 1 << 20
        rate = lambda n, s: f"{n / s:.2f} tok/s" if s > 0 and n else "-"     # noqa: E731
        rows = {
            "load time": f"{self.load_s:.2f} s",
            "CPU RSS after load": f"{self.rss_after_load / mib:,.0f} MiB",
            "CPU RSS peak": f"{peak_rss_bytes() / mib:,.0f} MiB",
            "prompt": f"{self.prompt_tokens} tokens, {rate(self.prompt_tokens, self.prompt_s)}",
            "generated": f"{self.generated_tokens} tokens, "
                         f"{rate(self.decoded_tokens, self.decode_s)}",
        }
        rows.update(extra or {})
        width = max(map(len, rows))
        return "\n".join(f"{name:>{width}}: {value}" for name, value in rows.items())

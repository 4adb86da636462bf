"""Benchmark: how long opening a GGUF model takes, and how much memory it costs,
pyggml.open vs gguf-py's GGUFReader, on a Qwen2-shaped 1.5B Q4_K_M file with the real
Qwen2.5 vocabulary (151,936 tokens, 151,387 merges), as one file and split in 3.

    .venv/bin/python tools/bench_open.py [--runs 7] [--gguf-py-runs 3] [--model NAME]

Each measurement is a fresh Python process (so RSS figures are clean and nothing is
cached in-process) that imports its library, reads its RSS, opens the model, and
reads its RSS again.  Printed: the median open time and the median RSS growth of
each side, and their ratios.  The page cache is warmed once before timing, so the
figures are for a file the OS already holds (what a second run of a program sees).

gguf-py cannot read split sets; for the split rows it opens the three shard files
one by one, which is the closest thing it can do.  The split set is written by
pyggml's own splitter into a temporary folder (3 shards by tensor count).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

# Runs in the child process: argv = side, paths...  Prints one JSON line.
CHILD = r"""
import json, sys, time
def rss_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
side, paths = sys.argv[1], sys.argv[2:]
if side == "pyggml":
    import pyggml, pyggml.format.shards
    open_model = lambda: pyggml.open(paths[0])
else:
    import gguf
    open_model = lambda: [gguf.GGUFReader(p) for p in paths]
before, peak_before = rss_kib("VmRSS"), rss_kib("VmHWM")
start = time.perf_counter()
model = open_model()
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rss_mib": (rss_kib("VmRSS") - before) / 1024,
                  "peak_mib": (rss_kib("VmHWM") - peak_before) / 1024}))
"""


def measure(side: str, paths: list[Path], runs: int) -> dict:
    """Median open time (ms) and RSS growth (MiB) over ``runs`` fresh processes."""
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", CHILD, side, *map(str, paths)], cwd=ROOT,
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"ms": statistics.median(r["seconds"] for r in results) * 1e3,
            "rss_mib": statistics.median(r["rss_mib"] for r in results),
            "peak_mib": statistics.median(r["peak_mib"] for r in results),
            "runs": runs}


def warm(paths: list[Path]) -> None:
    """Read each file once so that every timed run sees the same (warm) page cache."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(64 << 20):
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2-1.5b-q4_k_m", help="make_model fixture name")
    parser.add_argument("--runs", type=int, default=7, help="fresh processes for pyggml")
    parser.add_argument("--gguf-py-runs", type=int, default=3,
                        help="fresh processes for gguf-py (about 14 s each here)")
    args = parser.parse_args()

    import make_model
    import pyggml
    from pyggml.format.writer import split_gguf

    path = make_model.model_path(args.model)
    with pyggml.open(path) as model:
        n_tokens = len(model.metadata.get("tokenizer.ggml.tokens", ()))
        n_merges = len(model.metadata.get("tokenizer.ggml.merges", ()))
        n_tensors = len(model.tensors)
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        shards = split_gguf(path, Path(folder) / "split", max_tensors=math.ceil(n_tensors / 3))
        cases = {"single file": [path], f"split ({len(shards)} shards)": shards}
        warm([path, *shards])
        rows = {}
        for label, paths in cases.items():
            ours = measure("pyggml", paths[:1], args.runs)          # pyggml finds the siblings
            theirs = measure("gguf-py", paths, args.gguf_py_runs)   # gguf-py: each file itself
            rows[label] = (ours, theirs)

    size = path.stat().st_size / 2**20
    print(f"bench_open: {path.name} ({size:.1f} MiB, {n_tensors} tensors, {n_tokens:,} tokens, "
          f"{n_merges:,} merges)")
    print(f"median of {args.runs} (pyggml) / {args.gguf_py_runs} (gguf-py) fresh processes, "
          "warm page cache")
    print(f"{'':22}{'open time (ms)':>30}   {'RSS growth after open (MiB)':>36}")
    print(f"{'':22}{'pyggml':>10}{'gguf-py':>11}{'ratio':>9}   {'pyggml':>10}{'gguf-py':>11}"
          f"{'ratio':>9}{'  peak: pyggml / gguf-py':>26}")
    for label, (ours, theirs) in rows.items():
        print(f"{label:22}{ours['ms']:10.1f}{theirs['ms']:11.1f}{theirs['ms'] / ours['ms']:8.0f}x   "
              f"{ours['rss_mib']:10.1f}{theirs['rss_mib']:11.1f}"
              f"{theirs['rss_mib'] / max(ours['rss_mib'], 0.1):8.0f}x"
              f"{ours['peak_mib']:>14.1f} / {theirs['peak_mib']:.1f}")


if __name__ == "__main__":
    main()

"""Benchmark: tokenization speed, pyggml vs llama-cpp-python, on the test corpus.

    .venv/bin/python tools/bench_tokenize.py [--repeats 7] [--models qwen2-tiny-f32 smollm2-q4_1]

For each vocabulary (the real Qwen2.5 and SmolLM2 ones: fixtures of tools/make_model.py),
in one run, medians of --repeats:

    build        Tokenizer.from_metadata(pyggml.open(path).metadata): the load-path cost
    first pass   encode() of the whole corpus by a fresh tokenizer (empty word cache)
    again        encode() of the same text once more (every word now cached)
    lines        the corpus line by line, fresh tokenizer
    llama.cpp    Llama.tokenize() of the same text (llama-cpp-python, vocab_only); it
                 keeps no cache, so first pass and again are the same for it

MB/s count the corpus's UTF-8 bytes (tests/data/corpus/*.txt, all files joined).
The ratios are pyggml / llama.cpp.  Both sides run on one thread, and both results are
checked equal before anything is timed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
import make_model  # noqa: E402
import pyggml  # noqa: E402
from pyggml.text.tokenizer import Tokenizer  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "corpus"


def median_seconds(run, repeats: int, setup=lambda: None) -> float:
    """Median wall time of run(setup()) over repeats; setup is not timed."""
    times = []
    for _ in range(repeats):
        state = setup()
        started = time.perf_counter()
        run(state)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench(name: str, text: str, repeats: int) -> dict:
    import llama_cpp
    path = make_model.model_path(name)
    make_model._quiet_llama()
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    with pyggml.open(path) as f:
        metadata = f.metadata
    data = text.encode("utf-8")
    lines = text.splitlines(keepends=True)
    fresh = lambda: Tokenizer.from_metadata(metadata)          # noqa: E731

    ours = fresh().encode(text)
    theirs = llm.tokenize(data, add_bos=True, special=False)
    if ours != theirs:
        raise SystemExit(f"{name}: pyggml and llama.cpp disagree on the corpus; run the tests")

    def warm():
        tok = fresh()
        tok.encode(text)
        return tok

    seconds = {
        "build": median_seconds(lambda _: fresh(), repeats),
        "first": median_seconds(lambda tok: tok.encode(text), repeats, fresh),
        "again": median_seconds(lambda tok: tok.encode(text), repeats, warm),
        "lines": median_seconds(lambda tok: [tok.encode(line) for line in lines], repeats, fresh),
        "llama": median_seconds(lambda _: llm.tokenize(data, add_bos=True, special=False), repeats),
    }
    return {"name": name, "n_vocab": fresh().n_vocab, "tokens": len(ours), "bytes": len(data),
            **seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--models", nargs="+", default=["qwen2-tiny-f32", "smollm2-q4_1"],
                        help="make_model fixtures whose vocabularies to use")
    args = parser.parse_args()
    text = "".join((CORPUS / f).read_bytes().decode("utf-8")
                    for f in sorted(p.name for p in CORPUS.glob("*.txt")))

    print(f"corpus: {len(text.encode()):,} bytes, {len(text):,} characters, "
          f"{len(list(CORPUS.glob('*.txt')))} files; medians of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    header = (f"{'vocabulary':<16} {'n_vocab':>8} {'tokens':>7} {'build ms':>9} "
              f"{'first MB/s':>11} {'again MB/s':>11} {'lines MB/s':>11} {'llama.cpp MB/s':>15} "
              f"{'first/llama':>12} {'again/llama':>12}")
    print(header)
    print("-" * len(header))
    for name in args.models:
        r = bench(name, text, args.repeats)
        mbps = {k: r["bytes"] / r[k] / 1e6 for k in ("first", "again", "lines", "llama")}
        print(f"{name:<16} {r['n_vocab']:>8,} {r['tokens']:>7,} {r['build'] * 1e3:>9.1f} "
              f"{mbps['first']:>11.2f} {mbps['again']:>11.2f} {mbps['lines']:>11.2f} "
              f"{mbps['llama']:>15.2f} {mbps['first'] / mbps['llama']:>12.3f} "
              f"{mbps['again'] / mbps['llama']:>12.3f}")


if __name__ == "__main__":
    main()

"""How pyggml and llama.cpp scale with threads: prefill and decode at 1, 2, 4, 8, 16 threads.

    .venv/bin/python tools/bench_threads.py                          # the default models
    .venv/bin/python tools/bench_threads.py --models smollm2-q4_k_m --threads 1 2 --rounds 3

For each model and each thread count (the counts above the machine's os.cpu_count() are
left out, so that the same command runs unchanged on a 2-core and a 16-core machine),
tools/bench_generate.py's measurement: each engine (pyggml, llama-cpp-python) in its own
fresh process, alternating, --rounds times; each process evaluates the same real-text
prompt (prefill) and decodes --decode tokens, --runs times; the medians are reported with
the pyggml/llama.cpp ratio.  Then decode as a share of the read bandwidth at that thread
count (bytes of weights per token x tokens/s), against the median of its samples (three
at the start, one after each model).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_generate  # noqa: E402  (its child processes, prompt and ceiling: one copy)

THREAD_COUNTS = [1, 2, 4, 8, 16]
MODELS = ["smollm2-q4_k_m", "qwen2-1.5b-q4_k_m"]


def thread_counts(wanted: list[int]) -> list[int]:
    """The counts this machine can run: at most os.cpu_count()."""
    cpus = os.cpu_count() or 1
    return [n for n in wanted if n <= cpus] or [cpus]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--threads", nargs="+", type=int, default=THREAD_COUNTS,
                        help="thread counts (those above os.cpu_count() are skipped)")
    bench_generate.add_measure_options(parser)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    counts = thread_counts(args.threads)
    where = bench_generate.workdir()
    bandwidth = bench_generate.Bandwidth(counts)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"n_ctx {args.ctx}, {args.prompt}-token prompt (pydoc_data.topics), "
          f"{args.decode} decoded tokens; median of {args.rounds} alternating fresh processes "
          f"per engine, each the median of {args.runs} runs\n")
    header = (f"{'model':22} {'threads':>7} | {'prefill tok/s':>21} {'ratio':>6} | "
              f"{'decode tok/s':>19} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    rows = []
    for name in args.models:
        model = bench_generate.Prepared(name, args, where)
        for n in counts:
            args.threads = n
            ours, ref = model.measure(args)
            rows.append(dict(model=name, threads=n, pyggml=ours, llama_cpp=ref,
                             bytes_per_token=model.bytes_per_token))
            print(f"{name:22} {n:7d} | {ours['prefill']:9.1f} vs {ref['prefill']:9.1f} "
                  f"{ours['prefill'] / ref['prefill']:5.2f}x | {ours['decode']:8.1f} vs "
                  f"{ref['decode']:8.1f} {ours['decode'] / ref['decode']:5.2f}x", flush=True)
        bandwidth.sample()
        huge = bench_generate.huge_page_share(model.shards)       # once the model's runs are done
        for row in rows[-len(counts):]:
            row["huge_page_share"] = huge
    print("\nread bandwidth: " + "; ".join(bandwidth.describe(n) for n in counts))
    print("decode as a share of it (weight bytes per token x decode tok/s); the share of the "
          "file its page cache holds in 2 MiB folios (bench_kernels.huge_page_share):")
    for row in rows:
        n = row["threads"]
        share = bandwidth.add_shares(row, n)
        print(f"{row['model']:22} {n:7d} | pyggml {share['pyggml']:4.0%}  llama.cpp "
              f"{share['llama.cpp']:4.0%} | file in 2 MiB folios {row['huge_page_share']:4.0%}")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(dict(rows=rows), indent=1))


if __name__ == "__main__":
    main()

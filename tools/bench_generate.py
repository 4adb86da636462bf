"""Generation speed and memory: pyggml vs llama.cpp (llama-cpp-python) on the same files.

    .venv/bin/python tools/bench_generate.py                   # all models below
    .venv/bin/python tools/bench_generate.py --models smollm2-q4_1 --runs 5
    .venv/bin/python tools/bench_generate.py --models gemma3-270m qwen3-q4_k_m --threads 2

Models are tools/make_model.py fixtures by name (random weights in real shapes:
qwen3-q4_k_m is its Qwen3 fixture), '<fixture>-split3', and gemma3-270m: Google's Gemma 3
270M Q4_K_M, real weights, fetched by pyggml.cache.gemma3_demo_model.
For each model, --rounds times, each engine in turn (pyggml, llama.cpp, pyggml, ...) runs
in a fresh process that loads the file, then (each repeated --runs times on a reset
context) evaluates a 128-token prompt in one batch (prefill) and generates --decode
tokens one at a time, greedily (decode).  Both engines use the same number of threads
and the same context size.  Reported: medians over the rounds of each process's median,
the pyggml/llama.cpp ratio, the largest peak RSS of the processes against pyggml's memory
budget (file size + kv cache + 300 MB), and load time.  A last row measures a cold start:
a new process that imports pyggml, loads the tiny test model and produces its first
token (numba/C kernels already compiled and cached).

Absolute numbers on a shared 2-core machine are noisy; the ratios, measured in one run
on the same machine, are what the README quotes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

MODELS = ["qwen2-1.5b-q4_k_m", "qwen2-1.5b-q3_k_m", "qwen2-1.5b-q4_k_m-split3",
          "smollm2-q4_1", "smollm2-q4_k_m", "gemma3-270m", "qwen3-q4_k_m"]
GEMMA3_270M = "gemma3-270m"          # the real file, not a fixture
PROMPT = ("The history of the printing press begins in the fifteenth century, when Johannes "
          "Gutenberg combined movable metal type, oil-based ink and a wooden press adapted from "
          "those used to make wine. ") * 8
MIB = 1 << 20


def model_files(name: str, workdir: Path) -> tuple[Path, Path]:
    """(the path pyggml opens, the path llama.cpp opens) of a fixture.  '<name>-split3' is
    that model split into 3 shards by pyggml: pyggml opens shard 2 (any shard works),
    llama.cpp needs shard 1."""
    import make_model
    if name == GEMMA3_270M:
        from pyggml.cache import gemma3_demo_model
        path = gemma3_demo_model()
        return path, path
    if not name.endswith("-split3"):
        path = make_model.model_path(name)
        return path, path
    source = make_model.model_path(name[:-len("-split3")])
    prefix = workdir / f"{source.stem}-split3"
    shards = sorted(workdir.glob(f"{prefix.name}-*-of-00003.gguf"))
    if len(shards) != 3:
        import pyggml
        from pyggml.format.writer import split_gguf
        with pyggml.open(source) as f:
            per_shard = -(-len(f.tensors) // 3)
        shards = split_gguf(source, prefix, max_tensors=per_shard, overwrite=True)
    return Path(shards[1]), Path(shards[0])


# ----------------------------------------------------------------------------- one process

def run_engine(engine: str, path: str, n_ctx: int, n_prompt: int, n_decode: int, runs: int,
               threads: int) -> dict:
    """Measure one engine on one file in this process; returns a dict of figures."""
    import numpy as np

    from pyggml.runtime.stats import peak_rss_bytes, rss_bytes
    started = time.perf_counter()
    if engine == "pyggml":
        import pyggml
        model = pyggml.load(path, n_ctx=n_ctx, n_threads=threads)
        ids = model.tokenize(PROMPT)[:n_prompt]

        def prefill():
            model.reset()
            return model.eval(ids)

        def step(token):
            return model.eval([token])
        kv_bytes = model.plan.cpu_kv_bytes + model.plan.gpu_kv_bytes
    else:
        import llama_cpp
        import make_model
        make_model._quiet_llama()
        llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=512, n_ubatch=512,
                              n_threads=threads, n_threads_batch=threads, verbose=False)
        ids = llm.tokenize(PROMPT.encode(), add_bos=False)[:n_prompt]

        def prefill():
            llm.reset()
            llm.eval(ids)
            return np.asarray(llm.scores[llm.n_tokens - 1])

        def step(token):
            llm.eval([token])
            return np.asarray(llm.scores[llm.n_tokens - 1])
        kv_bytes = 0
    load_s = time.perf_counter() - started
    rss_after_load = rss_bytes()
    prefill_rates, decode_rates = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        logits = prefill()
        prefill_rates.append(len(ids) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(n_decode):
            logits = step(int(np.argmax(logits)))
        decode_rates.append(n_decode / (time.perf_counter() - t0))
    return dict(engine=engine, load_s=load_s, prompt_tokens=len(ids),
                prefill=statistics.median(prefill_rates), decode=statistics.median(decode_rates),
                prefill_all=prefill_rates, decode_all=decode_rates, kv_bytes=kv_bytes,
                rss_after_load=rss_after_load, peak_rss=peak_rss_bytes())




def cold_start() -> dict:
    """Seconds from a new interpreter to the first generated token of the tiny model."""
    import make_model
    path = make_model.model_path("qwen2-tiny-q4_k_m")
    code = ("import time; t=time.perf_counter(); import pyggml; "
            f"m=pyggml.load({str(path)!r}, n_ctx=256); "
            "next(iter(m.generate_tokens('Hello', 1, temperature=0))); "
            "print(time.perf_counter()-t)")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        times.append((float(out.stdout.strip().splitlines()[-1]), time.perf_counter() - t0))
    return dict(in_process=statistics.median(t for t, _ in times),
                wall=statistics.median(w for _, w in times))


# ----------------------------------------------------------------------------- driver

def measure(engine, path, args) -> dict:
    """One fresh process of one engine on one file."""
    cmd = [sys.executable, __file__, "--child", engine, str(path), "--ctx", str(args.ctx),
           "--prompt", str(args.prompt), "--decode", str(args.decode), "--runs", str(args.runs),
           "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{engine} on {path} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_rounds(path, llama_path, args) -> tuple[dict, dict]:
    """Both engines, alternating, each round a fresh process of each: (pyggml, llama.cpp),
    each the median over the rounds of the figures, the largest peak RSS, the runs kept.
    Alternating spreads the load of a shared machine over both engines alike."""
    rounds = {"pyggml": [], "llama.cpp": []}
    for _ in range(args.rounds):
        for engine, where in (("pyggml", path), ("llama.cpp", llama_path)):
            rounds[engine].append(measure(engine, where, args))
    summary = []
    for engine, results in rounds.items():
        combined = dict(results[0])
        for key in ("load_s", "prefill", "decode"):
            combined[key] = statistics.median(r[key] for r in results)
        for key in ("prefill_all", "decode_all"):
            combined[key] = [r[key.split("_")[0]] for r in results]
        combined["peak_rss"] = max(r["peak_rss"] for r in results)
        summary.append(combined)
    return summary[0], summary[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--runs", type=int, default=3, help="runs per process (median)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="fresh processes per engine, alternating (median of theirs)")
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens (prefill)")
    parser.add_argument("--decode", type=int, default=32, help="tokens generated per run")
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_engine(args.child[0], args.child[1], args.ctx, args.prompt, args.decode,
                            args.runs, args.threads)
        print(json.dumps(result))
        return

    import tempfile
    workdir = Path(tempfile.gettempdir()) / "pyggml-bench"
    workdir.mkdir(exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"{args.threads} threads, n_ctx {args.ctx}, {args.prompt}-token prompt, "
          f"{args.decode} decoded tokens, median of {args.rounds} alternating fresh processes "
          f"per engine, each the median of {args.runs} runs\n")
    header = (f"{'model':28} {'file MiB':>9} | {'prefill tok/s':>21} {'ratio':>6} | "
              f"{'decode tok/s':>19} {'ratio':>6} | {'peak RSS MiB':>17} {'budget':>7} | "
              f"{'load s':>11}")
    print(header)
    print("-" * len(header))
    rows = []
    for name in args.models:
        path, llama_path = model_files(name, workdir)
        size = sum(p.stat().st_size for p in _shards_of(path))
        ours, ref = measure_rounds(path, llama_path, args)
        budget = size + ours["kv_bytes"] + 300 * MIB
        rows.append(dict(model=name, file_bytes=size, pyggml=ours, llama_cpp=ref,
                         budget_bytes=budget))
        print(f"{name:28} {size / MIB:9.0f} | {ours['prefill']:9.1f} vs {ref['prefill']:9.1f} "
              f"{ours['prefill'] / ref['prefill']:5.2f}x | {ours['decode']:8.1f} vs "
              f"{ref['decode']:8.1f} {ours['decode'] / ref['decode']:5.2f}x | "
              f"{ours['peak_rss'] / MIB:7.0f} vs {ref['peak_rss'] / MIB:6.0f} "
              f"{'ok' if ours['peak_rss'] <= budget else 'OVER':>7} | "
              f"{ours['load_s']:4.2f} vs {ref['load_s']:4.2f}", flush=True)
    cold = cold_start()
    print(f"\ncold start (new process, kernels cached): first token of qwen2-tiny-q4_k_m after "
          f"{cold['in_process']:.2f} s in-process, {cold['wall']:.2f} s wall (target 2 s)")
    print(f"\nbudget: pyggml's peak RSS <= file size + kv cache + 300 MB; load average at the "
          f"end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(dict(rows=rows, cold_start=cold), indent=1))


def _shards_of(path: Path) -> list[Path]:
    import pyggml
    with pyggml.open(path) as f:
        return [Path(s.path) for s in f.shards]


if __name__ == "__main__":
    main()

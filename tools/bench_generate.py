"""Generation speed and memory: pyggml vs llama.cpp (llama-cpp-python) on the same files.

    .venv/bin/python tools/bench_generate.py                   # all models below
    .venv/bin/python tools/bench_generate.py --models smollm2-q4_1 --runs 5
    .venv/bin/python tools/bench_generate.py --models gemma3-270m qwen3-q4_k_m --threads 2
    .venv/bin/python tools/bench_generate.py --models smollm2-q4_k_m --prompt-tokens 4096 -c 8192
    .venv/bin/python tools/bench_generate.py --models qwen2-1.5b-q4_k_m -ctk q8_0 -ctv q8_0
    .venv/bin/python tools/bench_generate.py --cold-start-only

Models are tools/make_model.py fixtures by name (random weights in real shapes:
qwen3-q4_k_m is its Qwen3 fixture), '<fixture>-split3', and gemma3-270m: Google's Gemma 3
270M Q4_K_M, real weights, fetched by pyggml.cache.gemma3_demo_model.
For each model, --rounds times, each engine in turn (pyggml, llama.cpp, pyggml, ...) runs
in a fresh process that loads the file, then (each repeated --runs times on a reset
context) evaluates the prompt in one call (prefill) and generates --decode tokens one at
a time, greedily (decode).  The prompt is real English text: Python's own documentation
(pydoc_data.topics, its topics joined in sorted key order), cut to exactly
--prompt-tokens tokens by the model's tokenizer; both engines evaluate the same ids.
Both engines use the same number of threads, the same context size and the same kv cache
types (--cache-type-k/-v, f16 by default; llama.cpp with flash attention where V is
quantized, as it requires, and without it otherwise, as pyggml's arithmetic follows).

Reported: medians over the rounds of each process's median, the pyggml/llama.cpp ratio,
each engine's largest peak RSS against pyggml's memory budget (file size + kv cache +
300 MB), and load time.  Then decode against the ceiling: the bytes of weights one token
reads (every layer tensor, the output norm and matrix, one embedding row) x decode
tokens/s, as a share of the read bandwidth measured in the same run at the same thread
count (the faster of tools/bench_kernels.py's numpy sums and tools/bench_quants.py's numba
streaming sum over anonymous memory, sampled three times at the start and once after each
model, the median of the samples taken), and of the rate at which numpy sums read the
model's own file through a mapping, as both engines read their weights (the page cache's
folios: 4 KiB ones read at about 2/3 of the anonymous-memory rate on one thread of the
Sapphire Rapids machine; the share of the file in 2 MiB folios is printed beside; --evict
starts each model from disk).  A last row measures a cold start: a new
process running `pyggml generate --demo "Hello" -n 1`, the time until the CLI prints its
first token (kernels compiled and cached, bytecode cached, median of 3).

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
MIB = 1 << 20
MEMORY_SLACK = 300 * MIB          # pyggml's budget: file + kv cache + this
COLD_START_COMMAND = ["generate", "--demo", "Hello", "-n", "1", "--temp", "0", "--no-stats"]


# ----------------------------------------------------------------------------- the prompt

def prompt_text() -> str:
    """Real English text, the same on every machine: Python's offline documentation."""
    from pydoc_data.topics import topics
    return "\n\n".join(topics[key] for key in sorted(topics))


def prompt_ids(path: Path, n_tokens: int) -> list[int]:
    """The first n_tokens ids of prompt_text() as the file's tokenizer reads it (with
    the BOS token the file asks for), cut from an encoding that runs past them so that
    the last ones are not a word cut short."""
    import pyggml
    tokenizer = pyggml.load_tokenizer(path)
    text = prompt_text()
    chars = 8 * n_tokens + 256
    while True:
        ids = tokenizer.encode(text[:chars])
        if len(ids) >= n_tokens + 16 or chars >= len(text):
            break
        chars *= 2
    if len(ids) < n_tokens:
        raise SystemExit(f"the prompt text holds only {len(ids)} tokens of {path}")
    return ids[:n_tokens]


# ----------------------------------------------------------------------------- the ceiling

def weight_bytes_per_token(path: Path) -> int:
    """Bytes of weights one decoded token reads: every tensor of every layer, the output
    norm and matrix (the embedding matrix when the output is tied to it), and one row of
    the embedding matrix."""
    import pyggml
    with pyggml.open(path) as f:
        tensors = f.tensors
        embedding = tensors["token_embd.weight"]
        total = sum(t.nbytes for name, t in tensors.items() if name.startswith("blk."))
        total += tensors["output_norm.weight"].nbytes
        total += tensors.get("output.weight", embedding).nbytes
        return total + embedding.nbytes // embedding.shape[0]


def huge_page_share(shards: list[Path]) -> float:
    """The share of a model's files (every shard) mapped in 2 MiB pages: how its page
    cache holds it (bench_kernels.huge_page_share), the same for both engines."""
    import bench_kernels
    return (sum(bench_kernels.huge_page_share(p) * p.stat().st_size for p in shards)
            / sum(p.stat().st_size for p in shards))


def read_bandwidth(n_threads: int, path: Path | None = None) -> float:
    """GB/s of the machine's memory reads at n_threads, or of reading the file at path
    through its mapping (tools/bench_kernels.py)."""
    import bench_kernels
    return bench_kernels.read_bandwidth(n_threads, repeats=5, path=path)


class Bandwidth:
    """The read bandwidth at each thread count, sampled three times at the start and once
    after each model: on a quiet machine the samples have moved by a quarter within minutes
    (and a lone one by 1.6x, the host's other tenants), so a share of the bandwidth is taken
    against the median of the run's samples, and their spread is printed with it."""

    def __init__(self, counts: list[int]):
        self.samples = {n: [] for n in counts}
        for _ in range(3):              # a median of at least four, also for one model
            self.sample()

    def sample(self) -> None:
        import bench_quants                 # its numba streaming sum: up to 1/4 above numpy's
        for n, samples in self.samples.items():
            samples.append(max(read_bandwidth(n), bench_quants.read_bandwidth(n, 5)))

    def reference(self, n_threads: int) -> float:
        return statistics.median(self.samples[n_threads])

    def describe(self, n_threads: int) -> str:
        s = self.samples[n_threads]
        return (f"{self.reference(n_threads):.1f} GB/s at {n_threads} thread{'s' if n_threads > 1 else ''} "
                f"(median of {len(s)} samples, {min(s):.1f}-{max(s):.1f})")

    def add_shares(self, row: dict, n_threads: int) -> dict:
        """row's decode as a share of the bandwidth for each engine (bytes of weights per
        token x tok/s), stored in the row with the bandwidth; returns the shares"""
        row["bandwidth_gbs"] = self.reference(n_threads)
        row["share_of_bandwidth"] = {
            engine: row["bytes_per_token"] * r["decode"] / (row["bandwidth_gbs"] * 1e9)
            for engine, r in (("pyggml", row["pyggml"]), ("llama.cpp", row["llama_cpp"]))}
        return row["share_of_bandwidth"]


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

def run_engine(engine: str, path: str, n_ctx: int, ids: list[int], n_decode: int, runs: int,
               threads: int, type_k: str = "f16", type_v: str = "f16",
               use_mmap: bool = True) -> dict:
    """Measure one engine on one file in this process; returns a dict of figures."""
    import numpy as np

    from pyggml.runtime.stats import peak_rss_bytes, rss_bytes
    started = time.perf_counter()
    if engine == "pyggml":
        import pyggml
        model = pyggml.load(path, n_ctx=n_ctx, n_threads=threads, type_k=type_k, type_v=type_v,
                            use_mmap=use_mmap)

        def prefill():
            model.reset()
            return model.eval(ids)

        def step(token):
            return model.eval([token])
        kv_bytes = model.plan.cpu_kv_bytes + model.plan.gpu_kv_bytes
    else:
        import llama_cpp
        import make_model
        from pyggml.model.arch import KV_CACHE_TYPES
        make_model._quiet_llama()
        llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=512, n_ubatch=512,
                              n_threads=threads, n_threads_batch=threads, verbose=False,
                              type_k=KV_CACHE_TYPES[type_k][0], type_v=KV_CACHE_TYPES[type_v][0],
                              flash_attn=type_v != "f16", use_mmap=use_mmap)

        n_vocab = llm.n_vocab()

        def last_logits():        # llm.scores is left unfilled without logits_all
            row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            return np.ctypeslib.as_array(row, shape=(n_vocab,)).copy()

        def prefill():
            llm.reset()
            llm.eval(ids)
            return last_logits()

        def step(token):
            llm.eval([token])
            return last_logits()
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




def cold_start(runs: int = 3) -> dict:
    """Seconds from starting `pyggml generate --demo "Hello" -n 1` in a new process to the
    first byte of its first token on stdout; the median of `runs`.  A first run, not
    timed, fetches the demo model, compiles what is compiled once and writes Python's
    bytecode cache (as installing a package does, even where PYTHONDONTWRITEBYTECODE is
    set); it also reports whether the command imported numba at all."""
    cli = [sys.executable, "-m", "pyggml", *COLD_START_COMMAND]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    probe = ("import sys; from pyggml.cli import main; main(sys.argv[1:]); "
             "print(sorted({'numba', 'jinja2', 'llguidance', 'starlette', 'uvicorn', "
             "'pyggml.server', 'pyggml.quants'} & set(sys.modules)), file=sys.stderr)")
    first = subprocess.run([sys.executable, "-c", probe, *COLD_START_COMMAND], env=env,
                           capture_output=True, text=True, check=True)
    heavy = first.stderr.strip().splitlines()[-1]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as child:
            child.stdout.read(1)
            times.append(time.perf_counter() - t0)
            child.stdout.read()
        if child.returncode:
            raise SystemExit(f"{' '.join(cli)} failed with exit status {child.returncode}")
    return dict(first_token_s=statistics.median(times), all_s=times, heavy_imports=heavy,
                command="pyggml " + " ".join(COLD_START_COMMAND))


# ----------------------------------------------------------------------------- driver

def measure(engine, path, args) -> dict:
    """One fresh process of one engine on one file."""
    cmd = [sys.executable, __file__, "--child", engine, str(path), "--ctx", str(args.ctx),
           "--prompt-ids", str(args.prompt_ids), "--decode", str(args.decode),
           "--runs", str(args.runs), "--threads", str(args.threads),
           "--cache-type-k", args.cache_type_k, "--cache-type-v", args.cache_type_v]
    cmd += [] if args.use_mmap else ["--no-mmap"]
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


def add_measure_options(parser: argparse.ArgumentParser, rounds: int = 3) -> None:
    """The options of one measurement (shared with tools/bench_threads.py)."""
    parser.add_argument("--runs", type=int, default=3, help="runs per process (median)")
    parser.add_argument("--rounds", type=int, default=rounds,
                        help="fresh processes per engine, alternating (median of theirs)")
    parser.add_argument("--prompt", "--prompt-tokens", dest="prompt", type=int, default=128,
                        help="prompt tokens (prefill), real text (default 128)")
    parser.add_argument("--decode", type=int, default=32, help="tokens generated per run")
    parser.add_argument("-c", "--ctx", type=int, default=1024, help="context size (default 1024)")
    for which in ("k", "v"):
        parser.add_argument(f"-ct{which}", f"--cache-type-{which}", default="f16",
                            choices=("f16", "q8_0", "q4_0"),
                            help=f"the kv cache's {which.upper()} type, both engines (default f16)")
    parser.add_argument("--no-mmap", dest="use_mmap", action="store_false",
                        help="both engines copy the weights into memory (use_mmap=False)")
    parser.add_argument("--evict", action="store_true",
                        help="evict each model's files from the page cache before measuring it, "
                             "so that the first run reads them from disk as a first load does "
                             "(how the cache holds a file, 2 MiB or 4 KiB folios, moves decode "
                             "at one thread by a tenth; the tables print it)")


class Prepared:
    """A model ready to measure: the paths each engine opens, the file size, the prompt
    ids (written where the child processes read them) and the bytes a token reads."""

    def __init__(self, name: str, args, workdir: Path):
        self.name = name
        self.path, self.llama_path = model_files(name, workdir)
        self.shards = _shards_of(self.path)
        self.size = sum(p.stat().st_size for p in self.shards)
        if args.prompt + args.decode > args.ctx:
            raise SystemExit(f"--prompt-tokens {args.prompt} + --decode {args.decode} do not fit "
                             f"in -c {args.ctx}")
        ids = prompt_ids(self.path, args.prompt)
        self.ids_file = workdir / f"{name}-prompt-{args.prompt}.json"
        self.ids_file.write_text(json.dumps(ids))
        self.bytes_per_token = weight_bytes_per_token(self.path)
        if args.evict:
            for path in {*self.shards, *_shards_of(self.llama_path)}:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)

    def measure(self, args) -> tuple[dict, dict]:
        """(pyggml, llama.cpp) figures at args.threads: see measure_rounds."""
        args.prompt_ids = self.ids_file
        return measure_rounds(self.path, self.llama_path, args)


def workdir() -> Path:
    import tempfile
    where = Path(tempfile.gettempdir()) / "pyggml-bench"
    where.mkdir(exist_ok=True)
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    add_measure_options(parser)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--cold-start-only", action="store_true",
                        help="only the cold start of `pyggml generate --demo`")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--prompt-ids", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        ids = json.loads(args.prompt_ids.read_text())
        result = run_engine(args.child[0], args.child[1], args.ctx, ids, args.decode,
                            args.runs, args.threads, args.cache_type_k, args.cache_type_v,
                            args.use_mmap)
        print(json.dumps(result))
        return

    rows = []
    if not args.cold_start_only:
        rows = measure_models(args)
    cold = cold_start()
    print(f"\ncold start: `{cold['command']}` in a new process prints its first token after "
          f"{cold['first_token_s']:.2f} s (median of {len(cold['all_s'])}: "
          f"{', '.join(f'{t:.2f}' for t in cold['all_s'])}; target 1.0 s); heavy modules "
          f"imported: {cold['heavy_imports']}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(dict(rows=rows, cold_start=cold), indent=1, default=str))


def measure_models(args) -> list[dict]:
    where = workdir()
    bandwidth = Bandwidth([args.threads])
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, read "
          f"bandwidth {bandwidth.describe(args.threads)}; {args.threads} threads, "
          f"n_ctx {args.ctx}, kv cache K {args.cache_type_k} V {args.cache_type_v}, "
          f"{args.prompt}-token prompt (pydoc_data.topics), {args.decode} decoded tokens, "
          f"median of {args.rounds} alternating fresh processes per engine, each the median "
          f"of {args.runs} runs{'' if args.use_mmap else ', weights copied (--no-mmap)'}\n")
    header = (f"{'model':28} {'file MiB':>9} | {'prefill tok/s':>21} {'ratio':>6} | "
              f"{'decode tok/s':>19} {'ratio':>6} | {'peak RSS MiB':>17} {'budget':>6} "
              f"{'pyggml':>6} {'llama':>5} | {'load s':>12}")
    print(header)
    print("-" * len(header))
    rows = []
    for name in args.models:
        model = Prepared(name, args, where)
        ours, ref = model.measure(args)
        budget = model.size + ours["kv_bytes"] + MEMORY_SLACK
        bandwidth.sample()
        mapped = read_bandwidth(args.threads, model.path)
        rows.append(dict(model=name, file_bytes=model.size, pyggml=ours, llama_cpp=ref,
                         budget_bytes=budget, bytes_per_token=model.bytes_per_token,
                         mapped_file_gbs=mapped, huge_page_share=huge_page_share(model.shards)))
        print(f"{name:28} {model.size / MIB:9.0f} | {ours['prefill']:9.1f} vs "
              f"{ref['prefill']:9.1f} {ours['prefill'] / ref['prefill']:5.2f}x | "
              f"{ours['decode']:8.1f} vs {ref['decode']:8.1f} "
              f"{ours['decode'] / ref['decode']:5.2f}x | {ours['peak_rss'] / MIB:7.0f} vs "
              f"{ref['peak_rss'] / MIB:6.0f} {budget / MIB:6.0f} "
              f"{'ok' if ours['peak_rss'] <= budget else 'OVER':>6} "
              f"{'ok' if ref['peak_rss'] <= budget else 'OVER':>5} | "
              f"{ours['load_s']:4.2f} vs {ref['load_s']:4.2f}", flush=True)
    print(f"\nbudget: peak RSS <= file size + kv cache + {MEMORY_SLACK // MIB} MiB")
    print(f"\ndecode at the ceiling: weight bytes per token x decode tok/s, against the read "
          f"bandwidth {bandwidth.describe(args.threads)}")
    print("and against reading the model's own file through its mapping (how both engines read "
          "their weights, unless --no-mmap), measured after each model; '2 MiB': the share of the "
          "file the page cache holds in 2 MiB folios, which a mapping reads faster than 4 KiB pages")
    print(f"{'model':28} {'MB/token':>9} | {'pyggml GB/s':>11} {'share':>6} | "
          f"{'llama.cpp GB/s':>14} {'share':>6} | {'mapped file GB/s':>16} "
          f"{'pyggml':>6} {'llama':>6} | {'2 MiB':>5}")
    for row in rows:
        per_token = row["bytes_per_token"]
        ours, ref = row["pyggml"]["decode"], row["llama_cpp"]["decode"]
        share, mapped = bandwidth.add_shares(row, args.threads), row["mapped_file_gbs"]
        print(f"{row['model']:28} {per_token / 1e6:9.1f} | {per_token * ours / 1e9:11.2f} "
              f"{share['pyggml']:6.0%} | {per_token * ref / 1e9:14.2f} {share['llama.cpp']:6.0%} | "
              f"{mapped:16.1f} {per_token * ours / 1e9 / mapped:6.0%} "
              f"{per_token * ref / 1e9 / mapped:6.0%} | {row['huge_page_share']:5.0%}")
    return rows


def _shards_of(path: Path) -> list[Path]:
    import pyggml
    with pyggml.open(path) as f:
        return [Path(s.path) for s in f.shards]


if __name__ == "__main__":
    main()

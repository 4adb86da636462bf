"""Benchmark: quantizing a model, ``pyggml quantize`` vs llama.cpp's llama-quantize, on the
Qwen2-shaped 1.5B F16 model (random weights) to Q4_K_M by default.

    .venv/bin/python tools/bench_quantize.py [--runs 3] [--threads 2] [--type Q4_K_M]
                                             [--model qwen2-1.5b-f16] [--imatrix]

Each run is a fresh process that quantizes the whole file and writes the output (wall
time from start to exit, process start and imports included): ``pyggml quantize`` on
one side, and on the other llama.cpp's llama_model_quantize, the function llama-quantize
calls, through llama-cpp-python (which ships the library, not the llama-quantize
program), with the same number of threads.  The two sides alternate, so that a busy
machine slows both alike; printed are the median of each and their ratio, the speed of
pyggml in llama-quantize's time units (above 1: pyggml is faster), for the wall time and
for the CPU time of each process (user + system, every thread: what a busy machine
cannot inflate, and what threads that wait for the disk do not use).  The page cache is
warmed before timing, and the two outputs are compared byte for byte at the end.

--imatrix quantizes with an importance matrix (random, in llama.cpp's GGUF form), which
both sides read from the same file.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

# llama-quantize in a child process: argv = input, output, file type, threads[, imatrix]
LLAMA_QUANTIZE = r"""
import sys
sys.path.insert(0, "tools")
import numpy as np
from llama_quantize import llama_quantize
src, dst, ftype, threads = sys.argv[1:5]
options = {}
if len(sys.argv) > 5:
    from pyggml.format.imatrix import read_imatrix     # reads as llama-quantize does
    imatrix = read_imatrix(sys.argv[5])
    options = dict(imatrix=imatrix.entries,
                   imatrix_file=(sys.argv[5], imatrix.datasets[0], imatrix.chunk_count))
llama_quantize(src, dst, ftype, nthread=int(threads), **options)
"""


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all its threads) of one fresh process.
    On a machine others share, wall time measures the machine as much as the program;
    the CPU time is the work done, whatever the load."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def make_imatrix(model: Path, path: Path) -> None:
    """Random importances for every weight matrix, in llama-imatrix's GGUF form."""
    import numpy as np
    import pyggml
    from llama_quantize import write_imatrix_gguf
    rng = np.random.default_rng(0)
    with pyggml.open(model) as f:
        entries = {name: np.exp(rng.normal(0, 2, info.shape[-1])).astype(np.float32)
                   for name, info in f.tensors.items() if len(info.shape) == 2}
    write_imatrix_gguf(path, entries, 100.0, "random", 10)


def main() -> None:
    import make_model
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2-1.5b-f16", help="make_model fixture name")
    parser.add_argument("--type", default="Q4_K_M", help="llama-quantize file type")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--imatrix", action="store_true", help="with a (random) importance matrix")
    args = parser.parse_args()
    src = make_model.model_path(args.model)
    with tempfile.TemporaryDirectory(dir=src.parent) as tmp:
        tmp = Path(tmp)
        ours, theirs = tmp / "pyggml.gguf", tmp / "llama.gguf"
        extra = []
        if args.imatrix:
            make_imatrix(src, tmp / "imatrix.gguf")
            extra = [str(tmp / "imatrix.gguf")]
        pyggml_cmd = [str(ROOT / ".venv/bin/pyggml"), "quantize", str(src), str(ours), args.type,
                      "--threads", str(args.threads), "--force", "--no-progress"]
        pyggml_cmd += ["--imatrix", extra[0]] if extra else []
        llama_cmd = [sys.executable, "-c", LLAMA_QUANTIZE, str(src), str(theirs), args.type,
                     str(args.threads), *extra]
        warm(src)
        run(pyggml_cmd)                     # numba's kernels compiled and cached, if not yet
        times: dict[str, list[tuple[float, float]]] = {"pyggml": [], "llama.cpp": []}
        for i in range(args.runs):
            times["llama.cpp"].append(run(llama_cmd))
            times["pyggml"].append(run(pyggml_cmd))
            print(f"run {i + 1}: llama.cpp {times['llama.cpp'][-1][0]:.1f} s "
                  f"({times['llama.cpp'][-1][1]:.1f} s CPU), pyggml {times['pyggml'][-1][0]:.1f} s "
                  f"({times['pyggml'][-1][1]:.1f} s CPU)", flush=True)
        identical = ours.read_bytes() == theirs.read_bytes()
    (llama_s, llama_cpu), (pyggml_s, pyggml_cpu) = (
        (statistics.median(t[0] for t in times[k]), statistics.median(t[1] for t in times[k]))
        for k in ("llama.cpp", "pyggml"))
    print(f"\n{args.model} -> {args.type}{' with imatrix' if args.imatrix else ''}, "
          f"{args.threads} threads, median of {args.runs} (load average {os.getloadavg()[0]:.1f}):")
    print("                                         wall      CPU")
    print(f"  llama-quantize (llama_model_quantize) {llama_s:7.1f} s {llama_cpu:7.1f} s")
    print(f"  pyggml quantize                       {pyggml_s:7.1f} s {pyggml_cpu:7.1f} s")
    print(f"  pyggml speed / llama-quantize speed   {llama_s / pyggml_s:7.2f}x "
          f"{llama_cpu / pyggml_cpu:7.2f}x  (target >= 1.0x)")
    print(f"  outputs byte-identical: {'yes' if identical else 'NO'}")
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()

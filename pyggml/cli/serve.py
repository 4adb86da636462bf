"""``pyggml serve``: the model behind an OpenAI- and Ollama-compatible HTTP API.

    pyggml serve MODEL [--host 127.0.0.1] [--port 8080] [--parallel N] [-c N]
                       [--api-key KEY] [--n-gpu-layers N] [--alias NAME]
    pyggml serve --demo

MODEL is anything pyggml.locate finds: a path (any shard), a Modelfile, org/repo:FILE or
org/repo:QUANT from the Hugging Face cache, ollama:NAME[:TAG].  -c is the server's whole
context, split evenly between the --parallel slots as llama-server splits it (-c 8192
-np 4: 2048 tokens each; 0: the model's trained length, split); without -c each slot
holds min(4096, the model's).  The weights are mapped once.  Binds to localhost unless
--host says otherwise.
"""
from __future__ import annotations

import sys

from ..errors import UsageError
from .generate import add_memory_options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve a model over the OpenAI and Ollama APIs",
                              description="Serve a GGUF model over HTTP: OpenAI "
                                          "/v1/chat/completions, /v1/completions, Ollama "
                                          "/api/chat, /api/generate, ...")
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="model: a path, a Modelfile, org/repo:FILE|QUANT (Hugging Face "
                        "cache), ollama:NAME[:TAG]")
    p.add_argument("--demo", action="store_true",
                   help="serve the built-in demo model (SmolLM2-135M-Instruct, fetched once)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("-np", "--parallel", type=int, default=1, metavar="N",
                   help="requests decoded at once, each in its own context (default 1)")
    p.add_argument("-c", "--ctx-size", type=int, default=None, metavar="N",
                   help="the server's context, split between the slots as llama-server "
                        "does (0: the model's; default: min(4096, the model's) per slot)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on every route but /health")
    p.add_argument("-ngl", "--n-gpu-layers", type=int, default=0, metavar="N",
                   help="put the last N layers on the GPU; -1 puts all there")
    p.add_argument("-t", "--threads", type=int, default=None, metavar="N",
                   help="CPU threads (default, or 0 or less: all cores)")
    p.add_argument("--backend", choices=["numba", "c"], default=None,
                   help="CPU kernels (default: the fastest available)")
    add_memory_options(p)
    p.add_argument("--alias", default=None, metavar="NAME",
                   help="the model's name in the API (default: from MODEL)")
    p.set_defaults(run=run_serve)


def run_serve(args) -> int:
    import uvicorn

    from ..server import Service, create_app
    if args.demo == bool(args.model):
        raise UsageError("give a MODEL, or --demo for the built-in model (not both)")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: expected 1..65535", argument="port")
    spec = args.model
    if args.demo:
        from ..cache import demo_model
        spec = str(demo_model())
    n_threads = None if args.threads is None or args.threads <= 0 else args.threads
    service = Service(spec, parallel=args.parallel, n_ctx_total=args.ctx_size,
                      n_gpu_layers=args.n_gpu_layers, backend=args.backend,
                      n_threads=n_threads, alias=args.alias, type_k=args.cache_type_k,
                      type_v=args.cache_type_v, use_mmap=args.use_mmap)
    try:
        print(f"pyggml serve: {service.name} ({service.located.path}), {args.parallel} "
              f"slot(s) of {service.model.n_ctx} tokens, on http://{args.host}:{args.port}",
              file=sys.stderr)
        uvicorn.run(create_app(service, api_key=args.api_key), host=args.host, port=args.port,
                    log_level="warning")
    finally:
        service.close()
    return 0

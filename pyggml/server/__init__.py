"""``pyggml serve``: an OpenAI- and Ollama-compatible HTTP server on Starlette + uvicorn.

    service.py     the loaded model: its slots (one Model each, sharing the file's mapped
                   weights), its names, its defaults (a Modelfile's PARAMETERs)
    scheduler.py   up to --parallel requests at once, the prompt cache, and where the
                   batched forward pass will go
    errors.py      request bodies read and checked; OpenAI-style 4xx error bodies
    openai.py      /v1/chat/completions, /v1/completions, /v1/models, /health and
                   llama-server's /tokenize, /detokenize, /apply-template
    ollama.py      /api/chat, /api/generate, /api/tags, /api/show
    app.py         the Starlette application: routes, --api-key, startup and shutdown

The OpenAI dicts themselves come from pyggml.runtime.api, as ``Model.create_*`` returns
them.  Streams are server-sent events (``data: {...}\\n\\n`` ... ``data: [DONE]``) on the
OpenAI routes and newline-delimited JSON on Ollama's.
"""
from .app import create_app
from .service import Service

__all__ = ["Service", "create_app"]

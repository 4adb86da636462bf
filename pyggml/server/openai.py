"""The OpenAI routes and llama-server's extras.

    POST /v1/chat/completions   messages in the file's chat template; stream as SSE
    POST /v1/completions        a prompt (text or token ids)
    GET  /v1/models             the one model served, under its name
    GET  /health                {"status": "ok"} (no API key needed, as llama-server)
    POST /tokenize              {"content", "add_special", "with_pieces"} -> {"tokens"}
    POST /detokenize            {"tokens"} -> {"content"}
    POST /apply-template        {"messages", "tools"} -> {"prompt"}: the chat template's text

Chat requests may offer ``tools`` (with ``tool_choice``, ``parallel_tool_calls``); the
calls the model writes come back as ``message.tool_calls`` (runtime/tools.py).

Fields a route does not know are ignored, as llama-server ignores them; a known field of
the wrong type or value is a 400 naming it (the checks are runtime.api's, shared with
``Model.create_*``).
"""
from __future__ import annotations

import asyncio
import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from ..errors import UsageError
from ..runtime import api
from ..runtime.tools import tool_use
from .errors import error_of, field, json_body
from .scheduler import Job

# the sampling fields both completion routes pass to runtime.api
SAMPLING_FIELDS = ("max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                   "repeat_last_n", "presence_penalty", "frequency_penalty", "seed", "stop",
                   "logprobs", "top_logprobs")


def _sampling(service, body: dict) -> dict:
    params = dict(service.defaults)
    params.update({k: body[k] for k in SAMPLING_FIELDS if body.get(k) is not None})
    if body.get("max_completion_tokens") is not None and body.get("max_tokens") is None:
        params["max_tokens"] = body["max_completion_tokens"]
    api.refuse_unsupported({k: body[k] for k in ("n",) if body.get(k) is not None})
    params["response_format"] = body.get("response_format")
    return params


def submit(service, request: api.Request) -> Job:
    job = Job(request, asyncio.get_running_loop())
    service.scheduler.submit(job)
    return job


async def collect(service, job: Job, http: Request) -> list[api.Step] | None:
    """All of a job's Steps; None (and the job cancelled) if the client went away first."""
    async def disconnected():
        while (await http.receive())["type"] != "http.disconnect":
            pass

    async def steps():
        return [step async for step in job.steps()]
    watch = asyncio.ensure_future(disconnected())
    work = asyncio.ensure_future(steps())
    try:
        await asyncio.wait({watch, work}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not work.done():
        work.cancel()
        service.scheduler.cancel(job)
        return None
    return work.result()


async def sse(service, job: Job, fmt, first: dict | None = None):
    """A job's chunks as server-sent events; an error mid-stream as an error event.  When
    the client goes away this generator is cancelled, and so is the job."""
    try:
        if first is not None:
            yield f"data: {json.dumps(first, ensure_ascii=False)}\n\n"
        async for step in job.steps():
            fmt.cached_tokens = job.cached_tokens       # known once the job has a slot
            for chunk in fmt.chunks(step):
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
    except Exception as err:            # noqa: BLE001 - reported to this client only
        yield f"data: {json.dumps(error_of(err)[1])}\n\n"
    finally:
        service.scheduler.cancel(job)


async def _complete(service, http: Request, request: api.Request, fmt, stream: bool,
                    first: dict | None = None):
    job = submit(service, request)
    if stream:
        return StreamingResponse(sse(service, job, fmt, first), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    steps = await collect(service, job, http)
    if steps is None:                   # nobody is listening
        return JSONResponse({}, status_code=499)
    fmt.cached_tokens = job.cached_tokens
    return JSONResponse(fmt.response(steps))


async def chat_completions(service, http: Request):
    body = await json_body(http)
    service.check_model(field(body, "model", "a string"))
    stream = field(body, "stream", "a boolean", False)
    messages = field(body, "messages", "an array")
    if messages is None:
        raise UsageError("messages: required", argument="messages")
    params = _sampling(service, body)
    params.update({k: body[k] for k in ("tools", "tool_choice", "parallel_tool_calls")
                   if body.get(k) is not None})
    # off the event loop: a long prompt's tokens, a schema's compilation take a while
    request = await run_in_threadpool(api.chat_request, service.model,
                                      service.with_system(messages), **params)
    fmt = api.ChatFormat(service.model, service.name, request)
    return await _complete(service, http, request, fmt, stream,
                           fmt.first_chunk() if stream else None)


async def completions(service, http: Request):
    body = await json_body(http)
    service.check_model(field(body, "model", "a string"))
    stream = field(body, "stream", "a boolean", False)
    if "prompt" not in body:
        raise UsageError("prompt: required", argument="prompt")
    params = _sampling(service, body)
    request = await run_in_threadpool(api.completion_request, service.model, body["prompt"],
                                      **params)
    fmt = api.TextFormat(service.model, service.name, request)
    return await _complete(service, http, request, fmt, stream)


async def models(service, http: Request):
    return JSONResponse({"object": "list", "data": [
        {"id": service.name, "object": "model", "created": service.created,
         "owned_by": "pyggml", "meta": {"n_ctx": service.model.n_ctx,
                                        "n_vocab": service.model.hparams.n_vocab}}]})


async def health(service, http: Request):
    return JSONResponse({"status": "ok"})


async def tokenize(service, http: Request):
    body = await json_body(http)
    content = field(body, "content", "a string", "")
    add_special = field(body, "add_special", "a boolean", False)
    parse_special = field(body, "parse_special", "a boolean", True)
    with_pieces = field(body, "with_pieces", "a boolean", False)
    tokens = service.model.tokenizer.encode(content, add_special=add_special,
                                            parse_special=parse_special)
    if not with_pieces:
        return JSONResponse({"tokens": tokens})
    pieces = []
    for t in tokens:
        piece = service.model.tokenizer.token_to_piece(t, True)
        try:
            pieces.append({"id": t, "piece": piece.decode("utf-8")})
        except UnicodeDecodeError:      # llama-server: a piece that is not UTF-8 as its bytes
            pieces.append({"id": t, "piece": list(piece)})
    return JSONResponse({"tokens": pieces})


async def detokenize(service, http: Request):
    body = await json_body(http)
    tokens = field(body, "tokens", "an array", [])
    n_vocab = service.model.hparams.n_vocab
    if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < n_vocab
               for t in tokens):
        raise UsageError(f"tokens: expected token ids in 0..{n_vocab - 1}", argument="tokens")
    return JSONResponse({"content": service.model.detokenize(tokens)})


async def apply_template(service, http: Request):
    body = await json_body(http)
    messages = api.chat_messages(service.with_system(field(body, "messages", "an array")))
    use = tool_use(service.model.tokenizer, service.model.chat_template.source,
                   field(body, "tools", "an array"), body.get("tool_choice"),
                   body.get("parallel_tool_calls"), compile_grammar=False)
    tools = None
    if use is not None:
        messages, tools = use.format.messages(messages, use.tools), use.template_tools()
    return JSONResponse({"prompt": service.model.chat_template.render(
        messages, add_generation_prompt=True, tools=tools)})


ROUTES = [("/v1/chat/completions", chat_completions, ["POST"]),
          ("/chat/completions", chat_completions, ["POST"]),
          ("/v1/completions", completions, ["POST"]),
          ("/completions", completions, ["POST"]),
          ("/v1/models", models, ["GET"]),
          ("/models", models, ["GET"]),
          ("/health", health, ["GET"]),
          ("/v1/health", health, ["GET"]),
          ("/tokenize", tokenize, ["POST"]),
          ("/detokenize", detokenize, ["POST"]),
          ("/apply-template", apply_template, ["POST"])]

"""Ollama's API (docs/api.md of ollama/ollama), for clients that speak it.

    POST /api/chat       {model, messages, tools, stream=true, options} -> NDJSON message
                         chunks; tool calls in message.tool_calls (arguments as objects)
    POST /api/generate   {model, prompt, system, raw, stream=true, options} -> NDJSON
                         response chunks (the prompt goes through the chat template as a
                         user message unless raw)
    GET  /api/tags       the model served
    POST /api/show       {model} -> its details, parameters, template, model_info
    GET  /api/version    {"version"}

Streams are one JSON object per line; the last has ``done: true``, ``done_reason`` and
the counts and durations (nanoseconds) Ollama reports.  Options use Ollama's names
(num_predict, temperature, top_k, ...) with Ollama's defaults; load-time options
(num_ctx, num_gpu, ...) are ignored, the server having been started with its own.
Errors are Ollama's ``{"error": "..."}`` with the same status as the OpenAI routes.
"""
from __future__ import annotations

import datetime
import json
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from .. import __version__
from ..errors import UsageError
from ..format.constants import LlamaFileType
from ..runtime import api
from .errors import error_of, field, json_body
from ..runtime.tools import GenericFormat, ToolStream, tool_format
from .openai import collect, submit
from .service import sampling_options

# Ollama's defaults (api/types.go DefaultOptions)
OLLAMA_DEFAULTS = dict(max_tokens=-1, temperature=0.8, top_k=40, top_p=0.9, min_p=0.0,
                       repeat_penalty=1.1, repeat_last_n=64)


def ollama_error(err: BaseException) -> JSONResponse:
    status, body = error_of(err)
    return JSONResponse({"error": body["error"]["message"]}, status_code=status)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _params(service, body: dict) -> dict:
    if body.get("images"):
        raise UsageError("images: this server runs text models only", argument="images")
    return {**OLLAMA_DEFAULTS, **service.defaults,
            **sampling_options(field(body, "options", "an object", {}), field="options"),
            "response_format": _response_format(body.get("format"))}


def _response_format(fmt) -> dict | None:
    """Ollama's ``format``, "json" (a JSON object) or a JSON schema, as an OpenAI
    response_format."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    raise UsageError(f"format: expected \"json\" or a JSON schema object, got {fmt!r}",
                     argument="format")


def _stats(job, request: api.Request, n_generated: int) -> dict:
    ns = 1_000_000_000
    end = job.finished or time.perf_counter()
    prompt_done = job.prompt_done or end
    return {"total_duration": int((end - job.created) * ns), "load_duration": 0,
            "prompt_eval_count": len(request.ids) - job.cached_tokens,
            "prompt_eval_duration": int((prompt_done - job.created) * ns),
            "eval_count": n_generated, "eval_duration": int((end - prompt_done) * ns)}


async def _respond(service, http: Request, request: api.Request, stream: bool, shape):
    """shape(text, calls) -> the part of a line that carries text and tool calls
    ({"message": ...} or {"response": ...})."""
    job = submit(service, request)
    head = {"model": service.name}
    if not stream:
        steps = await collect(service, job, http)
        if steps is None:
            return JSONResponse({}, status_code=499)
        n = sum(s.token >= 0 for s in steps)
        text, calls = "".join(s.text for s in steps), []
        if request.tools is not None:
            text, calls = request.tools.format.parse(text)
        return JSONResponse({**head, "created_at": _now(), **shape(text, calls), "done": True,
                             "done_reason": steps[-1].finish_reason,
                             **_stats(job, request, n)})

    async def lines():
        n = 0
        held = ToolStream(request.tools.format) if request.tools is not None else None
        try:
            async for step in job.steps():
                n += step.token >= 0
                text, calls = step.text, []
                if held is not None:      # what may be a tool call waits for the end
                    text = held.add(text)
                    if step.finish_reason is not None:
                        rest, calls = held.finish()
                        text += rest
                if text or calls:
                    yield json.dumps({**head, "created_at": _now(), **shape(text, calls),
                                      "done": False}, ensure_ascii=False) + "\n"
                if step.finish_reason is not None:
                    yield json.dumps({**head, "created_at": _now(), **shape("", []),
                                      "done": True,
                                      "done_reason": step.finish_reason,
                                      **_stats(job, request, n)}) + "\n"
        except Exception as err:           # noqa: BLE001 - reported to this client only
            yield json.dumps({"error": error_of(err)[1]["error"]["message"]}) + "\n"
        finally:
            service.scheduler.cancel(job)
    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def chat(service, http: Request):
    body = await json_body(http)
    service.check_model(field(body, "model", "a string"))
    stream = field(body, "stream", "a boolean", True)
    messages = field(body, "messages", "an array")
    if messages is None:
        raise UsageError("messages: required", argument="messages")
    request = await run_in_threadpool(api.chat_request, service.model,
                                      service.with_system(messages), **_params(service, body),
                                      tools=field(body, "tools", "an array"))

    def shape(text, calls):
        message = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = [call.ollama() for call in calls]
        return {"message": message}
    return await _respond(service, http, request, stream, shape)


async def generate(service, http: Request):
    body = await json_body(http)
    service.check_model(field(body, "model", "a string"))
    stream = field(body, "stream", "a boolean", True)
    prompt = field(body, "prompt", "a string", "")
    system = field(body, "system", "a string")
    params = _params(service, body)
    if field(body, "raw", "a boolean", False):
        request = await run_in_threadpool(api.completion_request, service.model, prompt,
                                          **params)
    else:
        messages = [{"role": "user", "content": prompt}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        request = await run_in_threadpool(api.chat_request, service.model,
                                          service.with_system(messages), **params)
    return await _respond(service, http, request, stream,
                          lambda text, calls: {"response": text})


def _details(service) -> dict:
    meta = service.file.metadata
    arch = meta.get("general.architecture", "")
    n_params = sum(info.n_elements for info in service.file.tensors.values())
    size = (f"{n_params / 1e9:.1f}B" if n_params >= 1e9 else f"{n_params / 1e6:.0f}M")
    try:
        level = LlamaFileType(meta.get("general.file_type")).name.removeprefix("MOSTLY_")
    except ValueError:
        level = "unknown"
    return {"parent_model": "", "format": "gguf", "family": arch, "families": [arch],
            "parameter_size": size, "quantization_level": level}


async def tags(service, http: Request):
    path = service.located.path
    stat = path.stat()
    modified = datetime.datetime.fromtimestamp(stat.st_mtime, datetime.timezone.utc)
    digest = path.name.removeprefix("sha256-") if path.name.startswith("sha256-") else ""
    model = {"name": service.name, "model": service.name, "modified_at": modified.isoformat(),
             "size": sum(s.file_size for s in service.file.shards), "digest": digest,
             "details": _details(service)}
    return JSONResponse({"models": [model]})


async def show(service, http: Request):
    body = await json_body(http)
    service.check_model(field(body, "model", "a string") or field(body, "name", "a string"))
    params = service.located.params
    info = {k: v for k, v in service.file.metadata.items()
            if not k.startswith("tokenizer.") and isinstance(v, (str, int, float, bool))}
    lines = [f"FROM {service.located.path}"]
    lines += [f"PARAMETER {k} {json.dumps(v) if isinstance(v, str) else v}"
              for k, values in params.items()
              for v in (values if isinstance(values, list) else [values])]
    if service.system is not None:
        lines.append(f'SYSTEM """{service.system}"""')
    return JSONResponse({"modelfile": "\n".join(lines) + "\n",
                         "parameters": "\n".join(line.removeprefix("PARAMETER ")
                                                 for line in lines[1:]
                                                 if line.startswith("PARAMETER")),
                         "template": service.model.chat_template.source,
                         "details": _details(service), "model_info": info,
                         "capabilities": ["completion", *(["tools"] if not isinstance(
                             tool_format(service.model.chat_template.source), GenericFormat)
                             else [])],
                         "modified_at": _now()})


async def version(service, http: Request):
    return JSONResponse({"version": __version__})


ROUTES = [("/api/chat", chat, ["POST"]),
          ("/api/generate", generate, ["POST"]),
          ("/api/tags", tags, ["GET"]),
          ("/api/show", show, ["POST"]),
          ("/api/version", version, ["GET"])]

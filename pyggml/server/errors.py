"""Request bodies read and checked, and every failure as an OpenAI-style 4xx body:

    {"error": {"message": "...", "type": "invalid_request_error", "param": "temperature",
               "code": null}}

A bad request is a 400 naming its field (401 without the API key, 404 for an unknown
model); a request that fails on its own after it started streaming gets the same body
as its last event.  Only a bug in pyggml is a 500, and it ends that request alone.
"""
from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import PyggmlError, UsageError
from .service import ModelNotFound


def error_body(message: str, *, param: str | None = None, kind: str = "invalid_request_error",
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_of(err: BaseException) -> tuple[int, dict]:
    """(HTTP status, OpenAI error body) of an exception."""
    if isinstance(err, ModelNotFound):
        return 404, error_body(str(err), param="model", code="model_not_found")
    if isinstance(err, UsageError):
        return 400, error_body(str(err), param=err.argument)
    if isinstance(err, PyggmlError):
        return 400, error_body(str(err))
    return 500, error_body(f"internal error: {type(err).__name__}: {err}", kind="server_error")


def error_response(err: BaseException) -> JSONResponse:
    status, body = error_of(err)
    return JSONResponse(body, status_code=status)


async def json_body(request: Request) -> dict:
    """The request's JSON object, or a UsageError saying what is wrong with it."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"the request body is not valid JSON: {err}", argument="body") from None
    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object", argument="body")
    return body


# JSON types by name, for the fields the routes read themselves
_TYPES = {"a string": str, "a boolean": bool, "an object": dict, "an array": list}


def field(body: dict, name: str, kind: str, default=None):
    """body[name] if it has the JSON type kind ("a string", ...), or default if it is
    absent or null."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, _TYPES[kind]):
        raise UsageError(f"{name}: expected {kind}, got {json.dumps(value)[:60]}",
                         argument=name)
    return value

"""The Starlette application: routes, the API key, the scheduler's life."""
from __future__ import annotations

import contextlib
import hmac
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import ollama, openai
from .errors import error_body, error_response

log = logging.getLogger("pyggml.server")

# reachable without the API key, as llama-server leaves them
OPEN_PATHS = {"/health", "/v1/health"}


def _route(service, path: str, handler, methods: list[str], on_error) -> Route:
    async def endpoint(request: Request):
        try:
            return await handler(service, request)
        except Exception as err:          # noqa: BLE001 - a 4xx (a bug: 500), never a dead server
            response = on_error(err)
            if response.status_code >= 500:
                log.exception("%s %s failed", request.method, path)
            return response
    return Route(path, endpoint, methods=methods)


def create_app(service, *, api_key: str | None = None) -> Starlette:
    """The ASGI app serving service (a Service); its scheduler runs while the app does."""
    routes = [_route(service, path, handler, methods, error_response)
              for path, handler, methods in openai.ROUTES]
    routes += [_route(service, path, handler, methods, ollama.ollama_error)
               for path, handler, methods in ollama.ROUTES]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.start()
        try:
            yield
        finally:
            service.scheduler.stop()

    middleware = [Middleware(RequireKey, api_key=api_key)] if api_key is not None else []
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                     exception_handlers={HTTPException: _http_error})


async def _http_error(request: Request, err: HTTPException) -> JSONResponse:
    """An unknown path (404) or method (405), in the same error body as the rest."""
    return JSONResponse(error_body(f"{request.method} {request.url.path}: {err.detail}"),
                        status_code=err.status_code, headers=err.headers)


class RequireKey:
    """ASGI middleware: every path but OPEN_PATHS needs ``Authorization: Bearer KEY``."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse(error_body(
                    "invalid or missing API key (send Authorization: Bearer KEY)",
                    kind="authentication_error", code="invalid_api_key"), status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

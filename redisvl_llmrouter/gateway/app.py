"""The OpenAI-compatible HTTP server (FastAPI), started by ``llmrouter serve``.

* ``POST /v1/chat/completions``: OpenAI chat completions. ``model``: ``auto`` or ``router/<name>``
  routes, a concrete model passes through. Extra body fields (``extra_body`` in the ``openai``
  client): ``priority``, ``strategy``, ``constraints``, ``cache``, ``timeout``; or the headers
  ``x-llmrouter-priority``, ``-strategy``, ``-cache: bypass``, ``-max-cost``, ``-min-quality``,
  ``-max-latency-ms``, ``-capabilities``. Answers carry ``x-llmrouter-*`` headers: request id,
  route, model, strategy, confidence, cost, saving, cache, fallbacks.
* ``POST /v1/route``: the decision only, for ``{"messages": [...]}`` or ``{"text": "..."}`` (the rest of a
  chat body, such as ``tools`` or ``max_tokens``, shapes it as it would the chat's).
* ``POST /v1/feedback``: ``{"request_id", "quality", "model"?, "cost"?, "latency_ms"?}``.
* ``GET /v1/models``: ``auto``, ``router/<name>`` and every model of the catalog and routes.
* ``GET /health``: liveness and Redis reachability. ``GET /stats``: per-model requests, successes,
  failures, latency, in-flight calls, queue, breaker; cache hits. ``GET /metrics``: Prometheus.
  Every ``GET`` endpoint answers ``HEAD`` too (load balancers' health checks use it).
* ``GET /dashboard``: one live page (figures, charts, models, recent decisions), refreshed from
  ``GET /dashboard/data?since=15m``. With API keys set, open it as ``/dashboard#key=<key>``.

Errors are OpenAI-style JSON, ``{"error": {"message", "type", "param", "code"}}``, with the right
status (docs/gateway.md has each case): 400 malformed request, 401 missing or wrong API key, 403 a
browser's cross-origin request or a host not allowed, 404 unknown model or request id, 413 a body over
``max_body_mb``, 415 a compressed body, 429 queue full (with ``Retry-After``), 502 every model failed,
503 open breakers, a Redis that cannot serve (down, read-only, refusing the gateway's password), a router
with no routes or recreated with other vectors, or the shutdown, 500 anything unexpected (never a
traceback).
API keys (``Authorization: Bearer ...``) are required when the config or ``LLMROUTER_API_KEYS``
defines any.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import ipaddress
import json
import logging
import math
import os
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from redisvl_llmrouter import shared_clock
from redisvl_llmrouter.connection import translate
from redisvl_llmrouter.errors import (
    AuthenticationError,
    ConflictError,
    CrossOriginError,
    GatewayError,
    HostNotAllowedError,
    InvalidRequestError,
    LLMRouterError,
    RedisCommandError,
    RedisCredentialsError,
    RedisPermissionError,
    RedisPoolTimeoutError,
    RedisUnavailableError,
    RequestTooLargeError,
    RouterEmptyError,
    RouterStateLostError,
    UnknownRequestError,
    UnsupportedEncodingError,
    VectorizerMismatchError,
)
from redisvl_llmrouter.gateway.config import GatewayConfig
from redisvl_llmrouter.gateway.outcome import Completion, StreamedCompletion
from redisvl_llmrouter.gateway.redis_faults import loggable, transient_redis_error
from redisvl_llmrouter.gateway.service import Gateway, request_error_code, tenant_of
from redisvl_llmrouter.observability.report import Report, parse_since

__all__ = ["CONFIG_ENV", "create_app"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Environment variable through which ``llmrouter serve`` hands the config to its workers.
CONFIG_ENV = "LLMROUTER_GATEWAY_CONFIG"
#: The pid of ``llmrouter serve`` for its workers, which stop when it is gone.
SUPERVISOR_ENV = "LLMROUTER_SUPERVISOR_PID"
_GATEWAY_FIELDS = ("priority", "strategy", "constraints", "cache", "timeout")
#: Keyword names of ``Gateway.complete`` that a body field must not shadow.
_RESERVED_FIELDS = {"tenant"}
#: What ``POST /v1/route`` reads itself, or leaves out of a decision (the rest of a chat body is its params).
_ROUTE_FIELDS = frozenset({"messages", "text", "model", "stream", *_GATEWAY_FIELDS})
#: What ``POST /v1/feedback`` reads (anything else is refused, never dropped).
FEEDBACK_FIELDS = frozenset({"request_id", "quality", "model", "cost", "latency_ms"})
#: The longest error message an answer carries.
MAX_ERROR_CHARS = 2000


#: ``created`` of every model object (OpenAI's schema requires one): when this gateway was imported.
_CREATED = int(time.time())


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "llmrouter"}


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _same_origin(request: Request) -> bool:
    """Whether a request is not a browser's cross-origin one. Browsers say where a request comes from
    (``Sec-Fetch-Site``, else ``Origin``); clients that are not browsers send neither."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")  # "none": the user's own navigation
    origin = request.headers.get("origin")
    if origin is None:
        return True
    try:
        return urlsplit(origin).netloc == request.headers.get("host")
    except ValueError:  # no URL at all ("http://[::1"): no origin this server has
        return False


def _cut(message: str) -> str:
    """An error message of at most ``MAX_ERROR_CHARS``: one quoting a client's 10 MB value need not send it back."""
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 1] + "…"


def _error(
    status: int,
    message: str,
    kind: str,
    code: str | None,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    body = {"error": {"message": _cut(message), "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _gateway_error(exc: GatewayError) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after is not None else {}
    return _error(exc.status, str(exc), exc.kind, exc.code, {**headers, **_request_id_header(exc)}, exc.param)


def _request_id_header(exc: BaseException) -> dict[str, str]:
    """The id of the request an error ended, as its answer would carry it: the log entry can be found."""
    request_id = getattr(exc, "request_id", None)
    return {"x-llmrouter-request-id": request_id, "x-request-id": request_id} if request_id else {}


async def _client_left(request: Request) -> None:
    """Return when the client has gone (its body was read: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None when the client left first: then ``work`` is cancelled, so a request
    nobody waits for any more neither keeps its queue slot nor reaches (and is billed by) a provider."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_client_left(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this handler was cancelled itself: the work goes with it
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():  # the client left first: nobody is left to answer
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # how it ended is logged; nobody to tell
            left = await task
            # The work ended anyway (a dependency swallowed the cancellation): a stream nobody will read
            # is closed, so that its call ends, its slot is freed and it is logged.
            if isinstance(left, StreamedCompletion):
                await left.aclose()
        return None
    return task.result()


#: The values ``x-llmrouter-cache`` takes: whether the request may use the semantic cache.
_CACHE_HEADER = {
    "bypass": False,
    "off": False,
    "false": False,
    "0": False,
    "no": False,
    "on": True,
    "true": True,
    "1": True,
    "yes": True,
}
#: Constraints given as ``x-llmrouter-*`` headers holding a number.
_NUMBER_HEADERS = {
    "x-llmrouter-max-cost": "max_cost",
    "x-llmrouter-min-quality": "min_quality",
    "x-llmrouter-max-latency-ms": "max_latency_ms",
}


def _headers_options(request: Request) -> dict[str, Any]:
    """Gateway options given as ``x-llmrouter-*`` headers (extra body fields win over them)."""
    h = request.headers
    out: dict[str, Any] = {}
    if h.get("x-llmrouter-priority"):
        out["priority"] = h["x-llmrouter-priority"]
    if h.get("x-llmrouter-strategy"):
        out["strategy"] = h["x-llmrouter-strategy"]
    if h.get("x-llmrouter-cache"):
        value = h["x-llmrouter-cache"].strip().lower()
        if value not in _CACHE_HEADER:  # ignored, a misspelt "bypass" would have served cached answers
            raise InvalidRequestError(
                f"x-llmrouter-cache must be one of {', '.join(_CACHE_HEADER)}, got {h['x-llmrouter-cache']!r}",
                param="x-llmrouter-cache",
            )
        out["cache"] = _CACHE_HEADER[value]
    constraints: dict[str, Any] = {}
    for header, field in _NUMBER_HEADERS.items():
        if h.get(header):
            try:
                constraints[field] = float(h[header])
            except ValueError:
                raise InvalidRequestError(f"{header} must be a number, got {h[header]!r}", param=header) from None
    if h.get("x-llmrouter-capabilities"):
        constraints["capabilities"] = [c.strip() for c in h["x-llmrouter-capabilities"].split(",") if c.strip()]
    if constraints:
        out["constraints"] = constraints
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: a number JSON allows but no float holds (and no provider reads back)
        raise ValueError(f"{text[:40]} is too large a number")
    return value


async def _json_body(request: Request) -> dict[str, Any]:
    limit = int(request.app.state.gateway.config.max_body_mb * 1_000_000)
    refusal = f"The request body is larger than this gateway's limit of {limit:,} bytes (max_body_mb)."
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedEncodingError(
            f"Content-Encoding {encoding!r} is not supported: send the JSON body uncompressed."
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(refusal)
    chunks, size = [], 0
    async for chunk in request.stream():  # a body sent without a length is counted as it arrives
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(refusal)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(
            raw or b"null", parse_constant=_no_constant, parse_float=_finite
        )  # NaN and Infinity are not JSON
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequestError("The request body is nested too deeply.") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return body


def _host_name(host: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:8000``: ``::1``; ``Example.COM.``: ``example.com``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return (name if colon and port.isdigit() else host).rstrip(".")


def _is_loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):  # browsers resolve these to loopback themselves
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class _LocalHostsOnly:
    """Without API keys, a request that reached the gateway on a loopback address is served only when it
    is addressed to this machine (or to ``allowed_hosts``). A web page can point a name of its own at
    127.0.0.1 (DNS rebinding): to the browser its requests are then same-origin, their answers readable,
    and a key-less gateway would spend the user's provider keys for it. The ``Host`` header is the one
    thing such a request cannot set to a loopback name."""

    def __init__(self, app: Any, allowed: Sequence[str]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.allowed = frozenset(_host_name(h) for h in allowed)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self.any:
            local = (scope.get("server") or (None,))[0]  # where the connection arrived; None on a unix socket
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
            if local is not None and host is not None and _is_loopback(str(local)):
                name = _host_name(host)
                if not _is_loopback(name) and name not in self.allowed:
                    exc = HostNotAllowedError(
                        f"Host {host!r} is not this machine: a gateway without API keys answers requests that reach "
                        "it on a loopback address only when they are addressed to localhost (a web page could "
                        "otherwise reach it by DNS rebinding). List the name in the config's allowed_hosts, or set "
                        "API keys."
                    )
                    return await _gateway_error(exc)(scope, receive, send)
        return await self.app(scope, receive, send)


class _AnswerWhenCutOff:
    """A request the server cancels (the shutdown's ``shutdown_timeout_s`` ran out while it was in flight)
    still ends as OpenAI's clients expect, instead of a bare-text 500 (or a cut chunked body) and a
    traceback in the server's log: a 503 saying so if its answer had not started, else, for a stream,
    an error event and ``[DONE]``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, stream = False, False

        async def watch(message: Any) -> None:
            nonlocal started, stream
            if message["type"] == "http.response.start":
                started = True
                stream = any(
                    k.lower() == b"content-type" and v.startswith(b"text/event-stream")
                    for k, v in message.get("headers", ())
                )
            await send(message)

        message = "The gateway shut down while this request was in flight; retry it."
        try:
            await self.app(scope, receive, watch)
        except asyncio.CancelledError:
            if not started:
                logger.warning("a request in flight was cut off by the shutdown: answered 503")
                response = _error(503, message, "api_error", "shutting_down", {"Retry-After": "1"})
                await response(scope, receive, send)
            elif stream:
                logger.warning("a stream in flight was cut off by the shutdown: ended with an error event")
                error = {"error": {"message": message, "type": "api_error", "param": None, "code": "shutting_down"}}
                end = b"data: " + json.dumps(error).encode() + b"\n\ndata: [DONE]\n\n"
                with contextlib.suppress(Exception):  # the connection may be gone already
                    await send({"type": "http.response.body", "body": end, "more_body": False})
            else:  # a whole answer being sent: nothing can be added to it
                logger.warning("an answer being sent was cut off by the shutdown")
        return None


def _mark_shutdown(gateway: Gateway) -> Callable[[], None]:
    """Note in ``gateway`` when the server is told to stop (SIGTERM, SIGINT), ahead of uvicorn's own
    handler, so requests the shutdown cuts off are logged as ``shutting_down``, not as clients that
    left. Returns what puts the previous handlers back (nothing to do off the main thread, where
    uvicorn installs none)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(sig: int, frame: Any) -> None:
        gateway.shutting_down = True
        before = previous[signal.Signals(sig)]
        if callable(before):
            before(sig, frame)

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, before in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, before)

    return restore


async def _exit_with_supervisor(every_s: float = 1.0) -> None:
    """A worker of ``serve --workers N`` stops when the serve process is gone (killed with -9, say):
    orphaned, it would hold the port and answer 503 once the embedded Redis its parent kept is gone."""
    supervisor = int(os.environ[SUPERVISOR_ENV])
    while os.getppid() == supervisor:
        await asyncio.sleep(every_s)
    logger.warning("llmrouter serve (pid %d) is gone: this worker stops", supervisor)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's own graceful shutdown


def create_app(config: GatewayConfig | dict[str, Any] | None = None, gateway: Gateway | None = None) -> FastAPI:
    """The app; with neither argument, the config comes from ``LLMROUTER_GATEWAY_CONFIG`` (JSON)."""
    if config is None and gateway is None and os.environ.get(CONFIG_ENV):
        config = json.loads(os.environ[CONFIG_ENV])
    settings = gateway.config if gateway is not None else GatewayConfig.parse(config or {})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = gateway or await Gateway.create(settings)
        watch = asyncio.ensure_future(_exit_with_supervisor()) if os.environ.get(SUPERVISOR_ENV) else None
        restore_signals = _mark_shutdown(app.state.gateway)
        try:
            yield
        finally:
            restore_signals()
            if watch is not None:
                watch.cancel()
            if gateway is None:
                await app.state.gateway.aclose()

    # No OpenAPI page (it answered without a key) and no trailing-slash redirects (their Location was
    # built from the client's Host header).
    app = FastAPI(
        title="redisvl-llmrouter gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
    )
    app.add_middleware(_AnswerWhenCutOff)
    # Keys are held and looked up as SHA-256 digests: a lookup's timing depends on the digest of what a
    # client sent, never on how many leading characters of a real key it guessed.
    key_digests = {_digest(k) for k in settings.server_keys()}
    if not key_digests:  # with keys, a rebound page has none to send
        app.add_middleware(_LocalHostsOnly, allowed=settings.allowed_hosts)

    def authorise(request: Request) -> str:
        """The caller's tenant (a hash of its key); raises when keys are required and missing or wrong,
        and for a browser's cross-origin request that would change something."""
        if request.method not in ("GET", "HEAD") and not _same_origin(request):
            raise CrossOriginError(
                "Requests from web pages of another origin are refused (this gateway sends no CORS headers); "
                "call it from a server, or from pages it serves."
            )
        if not key_digests:
            return ""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or _digest(token) not in key_digests:
            raise AuthenticationError("Missing or invalid API key: send Authorization: Bearer <key>.")
        return tenant_of(token)

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return _gateway_error(exc)

    @app.exception_handler(UnknownRequestError)
    async def unknown_request(request: Request, exc: UnknownRequestError) -> JSONResponse:
        return _error(404, str(exc), "invalid_request_error", "unknown_request")

    @app.exception_handler(RedisPoolTimeoutError)
    async def redis_busy(request: Request, exc: RedisPoolTimeoutError) -> JSONResponse:
        return _error(503, "The gateway's Redis connections are all busy (Redis saturated, or not answering); "
                      "retry shortly.", "api_error", "redis_busy",
                      {"Retry-After": "1", **_request_id_header(exc)})  # fmt: skip

    @app.exception_handler(RedisUnavailableError)
    async def redis_down(request: Request, exc: RedisUnavailableError) -> JSONResponse:
        return _error(503, "The gateway cannot reach its Redis; retry shortly.", "api_error", "redis_unavailable",
                      {"Retry-After": "1", **_request_id_header(exc)})  # fmt: skip

    @app.exception_handler(RedisError)
    async def raw_redis_error(request: Request, exc: RedisError) -> JSONResponse:
        """A redis-py error from a command outside the router's operations (statistics, the dashboard):
        typed as a router's would be, then answered the same way."""
        typed = translate(exc, gw(request).router._client)
        if isinstance(typed, RedisPoolTimeoutError):
            return await redis_busy(request, typed)
        if isinstance(typed, RedisUnavailableError):
            return await redis_down(request, typed)
        return await router_error(request, typed)

    @app.exception_handler(LLMRouterError)
    async def router_error(request: Request, exc: LLMRouterError) -> JSONResponse:
        if isinstance(exc, RedisCredentialsError):  # a rotated password, a disabled user: no request can be served
            logger.error("gateway Redis refuses its credentials: %s", loggable(exc))
            return _error(503, "The gateway's Redis refuses its credentials (a rotated password?); see the server log.",
                          "api_error", "redis_credentials", _request_id_header(exc))  # fmt: skip
        if isinstance(exc, (RedisCommandError, RedisPermissionError, RouterStateLostError, ConflictError)):
            # The server's own trouble, not the request's; the details (Redis host, command) go to the log only.
            logger.error("gateway Redis error: %s", loggable(exc))
            if transient_redis_error(exc):  # read-only after a failover, or full: passes, so worth a retry
                return _error(503, "The gateway's Redis refuses writes for now; retry shortly.", "api_error",
                              "redis_read_only", {"Retry-After": "1", **_request_id_header(exc)})  # fmt: skip
            return _error(500, "The gateway's Redis refused an operation; see the server log.", "api_error",
                          "redis_error", _request_id_header(exc))  # fmt: skip
        if isinstance(exc, RouterEmptyError):  # cleared while serving: the router's state, retried once it has routes
            return _error(503, str(exc), "api_error", "router_empty", {"Retry-After": "1", **_request_id_header(exc)})
        if isinstance(exc, VectorizerMismatchError):  # RouterRecreatedError: /health fails too, so it is restarted
            return _error(503, str(exc), "api_error", "router_recreated", _request_id_header(exc))
        return _error(400, str(exc), "invalid_request_error", request_error_code(exc), _request_id_header(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, f"Invalid request: {exc.errors()[:3]}", "invalid_request_error", "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "api_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, str(exc.detail), kind, code, dict(exc.headers or {}) or None)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # It left while sending its body: not a request yet (nothing is logged), nobody reads the reply.
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected gateway error")
        return _error(500, f"Internal error ({type(exc).__name__}).", "api_error", "internal_error")

    def gw(request: Request) -> Gateway:
        return request.app.state.gateway  # type: ignore[no-any-return]

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        tenant = authorise(request)
        body = await _json_body(request)
        if "messages" not in body:
            raise InvalidRequestError("'messages' is required.", param="messages")
        options = {**_headers_options(request), **{k: body.pop(k) for k in _GATEWAY_FIELDS if k in body}}
        model = body.pop("model", None)
        if model is None:
            raise InvalidRequestError("'model' is required: 'auto', 'router/<name>' or a model name.")
        messages = body.pop("messages")
        stream = body.pop("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            raise InvalidRequestError(f"'stream' must be true or false, got {stream!r}")
        taken = sorted(set(body) & _RESERVED_FIELDS)
        if taken:
            raise InvalidRequestError(f"Unknown field(s) {taken}: the gateway reserves these names.")
        work = gw(request).complete(messages, model=model, stream=stream, tenant=tenant, **options, **body)
        # An answer, or a stream's first chunk, is waited for only while its client is there (a queued
        # request whose client left is never sent); once a stream has started, its relay ends when the client leaves.
        result = await _unless_client_leaves(request, work)
        if result is None:
            return Response(status_code=499)  # nobody reads it (nginx's "client closed request")
        headers = result.outcome.headers()
        if isinstance(result, Completion):
            return Response(json.dumps(result.body), media_type="application/json", headers=headers)

        async def events() -> AsyncIterator[bytes]:
            try:
                async for chunk in result:
                    yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            except GatewayError as exc:  # the stream had started: report in-band, as OpenAI does
                error = {"error": {"message": _cut(str(exc)), "type": exc.kind, "param": exc.param, "code": exc.code}}
                yield b"data: " + json.dumps(error).encode() + b"\n\n"
            finally:  # a client that left: the provider's call, the queue slot and the log entry end here
                await result.aclose()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @app.post("/v1/route")
    async def route(request: Request) -> JSONResponse:
        tenant = authorise(request)
        body = await _json_body(request)
        messages = body.get("messages")
        if messages is not None and "text" in body:
            raise InvalidRequestError("Give 'messages' or 'text', not both.")
        if messages is None and "text" in body:
            if not isinstance(body["text"], str):
                raise InvalidRequestError(f"'text' must be a string, got {type(body['text']).__name__}.")
            messages = [{"role": "user", "content": body["text"]}]
        if messages is None:
            raise InvalidRequestError("Give 'messages' or 'text'.")
        options = {**_headers_options(request), **{k: body[k] for k in _GATEWAY_FIELDS if k in body}}
        # The rest of a chat body (tools, response_format, max_tokens...) shapes the decision as it would the chat's.
        params = {k: v for k, v in body.items() if k not in _ROUTE_FIELDS}
        taken = sorted(set(params) & _RESERVED_FIELDS)
        if taken:
            raise InvalidRequestError(f"Unknown field(s) {taken}: the gateway reserves these names.")
        model = body.get("model", "auto")
        match = await gw(request).route(messages, tenant=tenant, model=model, **options, **params)
        return JSONResponse(json.loads(match.model_dump_json()))

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> JSONResponse:
        tenant = authorise(request)
        body = await _json_body(request)
        # A misspelt field would be dropped and its number never learned: refused by name instead (first:
        # a body with "statement" instead of "request_id" is told about the field it sent).
        unknown = sorted(set(body) - FEEDBACK_FIELDS)
        if unknown:
            raise InvalidRequestError(
                f"Unknown feedback field(s) {', '.join(map(repr, unknown))}; "
                f"feedback takes {', '.join(sorted(FEEDBACK_FIELDS))}."
            )
        if not isinstance(body.get("request_id"), str) or "quality" not in body:
            raise InvalidRequestError("Feedback needs 'request_id' (a string) and 'quality' (0 to 1).")
        result = await gw(request).feedback(
            body["request_id"],
            body["quality"],
            body.get("model"),
            body.get("cost"),
            tenant=tenant,
            latency_ms=body.get("latency_ms"),
        )
        return JSONResponse(result)

    async def model_ids(request: Request) -> list[str]:
        gateway_ = gw(request)
        return ["auto", f"router/{gateway_.router.name}", *await gateway_.current_models()]

    @app.api_route("/v1/models", methods=["GET", "HEAD"])
    async def models(request: Request) -> JSONResponse:
        authorise(request)
        return JSONResponse({"object": "list", "data": [_model_object(i) for i in await model_ids(request)]})

    @app.api_route("/v1/models/{model_id:path}", methods=["GET", "HEAD"])
    async def model(request: Request, model_id: str) -> JSONResponse:
        authorise(request)
        if model_id not in await model_ids(request):
            return _error(404, f"The model {model_id!r} does not exist.", "invalid_request_error", "model_not_found")
        return JSONResponse(_model_object(model_id))

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health(request: Request) -> JSONResponse:
        gateway_ = gw(request)
        client = gateway_.router._client
        # One write tells all three apart: a Redis that answers may still refuse writes (full, or a
        # replica after a failover), and says so in an error reply.
        try:
            await client.set(f"llmrouter:health:{{{gateway_.router.name}}}", "1", px=HEALTH_KEY_TTL_MS)
            redis_state = "ok"
        except ResponseError as exc:  # full (maxmemory reached) or read-only (a replica): writes wait either way
            redis_state = "full" if isinstance(exc, OutOfMemoryError) else "read_only"
        except RedisAuthenticationError:  # up, but no longer takes this gateway's password (rotated)
            redis_state = "credentials_refused"
        except Exception:  # the health check reports, it does not raise
            redis_state = "unreachable"
        # Full or read-only still answers (bookkeeping is what waits): reported, not taken out of rotation.
        status = 503 if redis_state in ("unreachable", "credentials_refused") else 200
        state = "ok" if redis_state == "ok" else "degraded"
        body = {"status": state, "router": gateway_.router.name, "redis": redis_state}
        if gateway_.router_recreated is not None:  # recreated again as it can route on it meanwhile?
            await gateway_._refresh_router()  # at most once a second
        if gateway_.router_recreated is not None:  # it cannot route until restarted: fail the check that restarts it
            status, body["status"], body["router_state"] = 503, "degraded", "recreated"
        return JSONResponse(body, status_code=status)

    @app.api_route("/stats", methods=["GET", "HEAD"])
    async def stats(request: Request) -> JSONResponse:
        authorise(request)
        return JSONResponse(await gw(request).stats())

    @app.api_route("/metrics", methods=["GET", "HEAD"])
    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        gateway_ = gw(request)
        try:
            await gateway_.stats()  # refreshes the gauges read from Redis (breakers) and the queues
        except (LLMRouterError, RedisError):  # this process's own counters still tell what it did
            logger.warning("/metrics: Redis unavailable, breaker gauges not refreshed")
        return Response(gateway_.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.api_route("/dashboard", methods=["GET", "HEAD"])
    async def dashboard() -> Response:
        return Response(
            dashboard_asset("dashboard.html"), media_type="text/html; charset=utf-8", headers=dashboard_headers()
        )

    @app.api_route("/dashboard/assets/{name}", methods=["GET", "HEAD"])
    async def dashboard_assets(name: str) -> Response:
        if name not in DASHBOARD_ASSETS:
            raise StarletteHTTPException(404, f"No dashboard asset {name!r}")
        headers = {"cache-control": "max-age=86400", "x-content-type-options": "nosniff"}
        return Response(dashboard_asset(name), media_type=DASHBOARD_ASSETS[name], headers=headers)

    # The dashboard's report, one at a time and shared for a moment: each takes a CPU for a while (0.6 s
    # on 20,000 entries, in a thread that still holds the GIL), so many tabs polling at once would
    # starve every other request of this process.
    report_turn = asyncio.Lock()
    reports: dict[str, tuple[float, int, Report]] = {}  # window -> (made at, its end in ms, the report)

    async def dashboard_report(gateway_: Gateway, since: str) -> tuple[int, Report]:
        async with report_turn:
            kept = reports.get(since)
            if kept is not None and time.monotonic() - kept[0] < DASHBOARD_REPORT_REUSE_S:
                return kept[1], kept[2]
            # One clock reading for both ends: a window that came out a millisecond longer than it says
            # tipped the chart into the next bucket width on some refreshes.
            now_ms = shared_clock.now_ms()  # the log's times are on Redis's clock
            since_ms = parse_since(since, now_s=now_ms / 1000, option="since")
            summary = await gateway_.report(since_ms, limit=DASHBOARD_MAX_ENTRIES, until_ms=now_ms)
            if len(reports) >= 8:  # windows are the client's to choose: a few are kept
                reports.clear()
            reports[since] = (time.monotonic(), now_ms, summary)
            return now_ms, summary

    @app.api_route("/dashboard/data", methods=["GET", "HEAD"])
    async def dashboard_data(request: Request, since: str = "15m") -> JSONResponse:
        """What the dashboard shows: live stats, the log's report over the window, the newest decisions
        (with API keys, the caller's own: other clients' prompts and request ids are theirs)."""
        tenant = authorise(request)
        try:
            parse_since(since, option="since")
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
        gateway_ = gw(request)
        stats, (now_ms, summary), recent = await asyncio.gather(
            gateway_.stats(),
            dashboard_report(gateway_, since),
            gateway_.recent_decisions(50, tenant=tenant),
        )
        return JSONResponse(
            {
                "now_ms": now_ms,
                "since": since,
                "stats": stats,
                "report": summary.model_dump(),
                "recent": recent,
            }
        )

    return app


#: How long the key ``/health`` writes to check that Redis takes writes lives.
HEALTH_KEY_TTL_MS = 10_000
#: The newest log entries a dashboard refresh summarises (a refresh every 2 s must stay cheap).
DASHBOARD_MAX_ENTRIES = 20_000
#: How long one dashboard report serves every refresh of the same window (seconds).
DASHBOARD_REPORT_REUSE_S = 1.0
DASHBOARD_ASSETS = {
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
}


@functools.cache
def dashboard_headers() -> dict[str, str]:
    """The page's own scripts and styles and this server, nothing else: no other site may frame it
    (clickjacking), and a script injected into the page would not run (only the page's inline script,
    by its hash, and the bundled uPlot)."""
    html = dashboard_asset("dashboard.html").decode()
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    )
    policy = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    return {
        "content-security-policy": policy,
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
    }


@functools.cache
def dashboard_asset(name: str) -> bytes:
    """A file of the dashboard, shipped in the package (no build step, no CDN)."""
    return (resources.files("redisvl_llmrouter.observability") / "static" / name).read_bytes()

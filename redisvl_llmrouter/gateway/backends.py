"""Provider calls behind one small protocol: the official ``openai`` client, LiteLLM, or your own.

A :class:`Backend` turns a :class:`Call` (a model, messages and OpenAI parameters) into a
``chat.completion`` body, or into a stream of ``chat.completion.chunk`` bodies. It raises
:class:`~redisvl_llmrouter.errors.UpstreamError` with ``retryable`` set for timeouts, connection
errors, 429 and 5xx answers, and unset for the rest; the gateway retries and falls back on that.

* :class:`OpenAIBackend` calls any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, Groq,
  OpenRouter, a LiteLLM proxy, Anthropic's compatible endpoint, the local test upstream): a plain
  JSON POST on aiohttp for a completion, ``openai.AsyncOpenAI`` for a stream. No retries of its
  own: the gateway owns retrying.
* :class:`LiteLLMBackend` uses ``litellm.acompletion`` for every other provider (the ``litellm``
  extra); it is imported on first use with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` so it never
  fetches its price map.

Keys come from the upstream's config or environment and never appear in errors or reprs.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import json
import math
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from redisvl_llmrouter.errors import UpstreamError, error_chain
from redisvl_llmrouter.gateway.config import Upstream

__all__ = [
    "Backend",
    "Call",
    "LiteLLMBackend",
    "OpenAIBackend",
    "litellm_error",
    "provider_message",
    "status_error",
    "upstream_error",
]


@dataclass
class Call:
    """One provider call: the model as routed, the messages and the OpenAI parameters to pass on."""

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 60.0


@runtime_checkable
class Backend(Protocol):
    """What the gateway needs from a provider client."""

    async def complete(self, call: Call) -> dict[str, Any]:
        """The ``chat.completion`` body."""
        ...

    def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        """``chat.completion.chunk`` bodies; the last one carries ``usage`` when the provider sends it."""
        ...

    async def aclose(self) -> None: ...


def _retry_after(headers: Any) -> float | None:
    """A ``Retry-After`` header's wait in seconds: a number, or an HTTP date (RFC 9110 allows both)."""
    value = headers.get("retry-after") if headers is not None else None
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(str(value)).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


#: How much of a provider's error message is passed on (a JSON schema's complaint runs to hundreds of characters).
MAX_PROVIDER_MESSAGE_CHARS = 1000

#: Answers that may succeed if the same call is tried again.
RETRYABLE_STATUSES = frozenset({408, 409, 429})
#: The provider refusing the gateway's own credentials: the gateway's problem, never the client's.
CREDENTIAL_STATUSES = frozenset({401, 403, 407})


def refused(status: int | None) -> bool:
    """Whether a provider's answer refuses the request itself (a 4xx neither retryable nor about our
    credentials): the client's error, which says nothing about the model's health."""
    return (
        isinstance(status, int)
        and 400 <= status < 500
        and status not in RETRYABLE_STATUSES
        and status not in CREDENTIAL_STATUSES
    )


def without_secret(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (the upstream's key, as a provider's error may echo it) shown as ``***``.
    A key of under 8 characters is no real secret (``none``, a local server's placeholder): left as is."""
    return text.replace(secret, "***") if secret and len(secret) >= 8 else text


def status_error(
    model: str,
    status: int,
    message: str,
    headers: Any = None,
    secret: str | None = None,
    error: Any = None,
) -> UpstreamError:
    """A provider's HTTP error answer: retryable for 408, 409, 429 and 5xx. ``secret``: the key the
    call was made with, masked wherever the provider's message repeats it; ``error``: the body's
    ``error`` object, whose ``code`` and ``param`` (strings) are kept for the client."""
    message = without_secret(message, secret)
    retryable = status >= 500 or status in RETRYABLE_STATUSES
    reason = (
        "rate_limit"
        if status == 429
        else "server"
        if status >= 500
        else "credentials"  # the gateway's own key was refused: its operator's problem, not the client's
        if status in CREDENTIAL_STATUSES
        else "client"
    )
    fields = error if isinstance(error, dict) else {}
    code, param = fields.get("code"), fields.get("param")
    return UpstreamError(
        f"{model}: the provider answered {status}: {message}"[:MAX_PROVIDER_MESSAGE_CHARS],
        retryable=retryable,
        upstream_status=status,
        reason=reason,
        retry_after=_retry_after(headers),
        provider_code=without_secret(code, secret)[:100] if isinstance(code, str) and code else None,
        provider_param=without_secret(param, secret)[:200] if isinstance(param, str) and param else None,
    )


def _error_object(content: bytes) -> Any:
    """The ``error`` object of an OpenAI-style error body, or None."""
    try:
        body = json.loads(content)
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def _error_message(content: bytes, secret: str | None = None) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body's text; ``secret`` masked
    before it is cut short (a key cut at the edge would no longer match, and its head would show)."""
    text = content.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return without_secret(text, secret)[:MAX_PROVIDER_MESSAGE_CHARS]
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return without_secret(str(message) if message else text, secret)[:MAX_PROVIDER_MESSAGE_CHARS]


#: Words in the type of an error event a stream reports that mark a failure that passes (OpenAI's
#: ``server_error``, Anthropic's ``overloaded_error`` and ``api_error``, a ``rate_limit`` or ``timeout``).
TRANSIENT_ERROR_TYPES = ("server", "overloaded", "api_error", "rate_limit", "timeout", "unavailable")


def upstream_error(exc: BaseException, model: str, secret: str | None = None) -> UpstreamError:
    """An ``openai`` (or LiteLLM, whose errors derive from them) or ``aiohttp`` exception as an ``UpstreamError``.

    The message names the model and the provider's status, never the key (``secret``) the call was
    made with, even where the provider's own message repeats it.
    """
    import httpx
    import openai

    if isinstance(exc, UpstreamError):
        return exc
    # Before the connection errors: aiohttp's read timeout is both a TimeoutError and a connection error.
    # But the SDK's aiohttp transport reports a refused connection as a connect *timeout*: look at the cause.
    if isinstance(exc, openai.APITimeoutError) and _refused_connection(exc):
        return UpstreamError(f"{model}: cannot connect to the provider", retryable=True, reason="connection")
    # The SDK wraps transport errors of a call, not those raised while a stream is read: httpx's come as they are.
    if isinstance(exc, (openai.APITimeoutError, TimeoutError, httpx.TimeoutException)):
        return UpstreamError(f"{model}: the provider did not answer in time", retryable=True, reason="timeout")
    if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)) or _is_aiohttp_connection_error(exc):
        return UpstreamError(f"{model}: cannot connect to the provider", retryable=True, reason="connection")
    if isinstance(exc, openai.APIStatusError):
        # The provider's own ``error.message`` (as a completion reports it), not the SDK's repr of the body.
        error = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else None
        message = (
            (error.get("message") if isinstance(error, dict) else None) or getattr(exc, "message", None) or str(exc)
        )
        return status_error(model, exc.status_code, message, getattr(exc.response, "headers", None), secret, error)
    if isinstance(exc, openai.APIError) and getattr(exc, "message", None):  # an error event inside a stream
        # Its type says whether it passes: a server error or an overload, sent as the stream's first event
        # (how providers answer a 5xx over SSE), is retried as a 5xx is; anything else is not.
        kind = exc.body.get("type") or exc.body.get("code") if isinstance(exc.body, dict) else None
        return UpstreamError(
            f"{model}: the provider reported an error: {without_secret(exc.message, secret)}"[:500],
            retryable=isinstance(kind, str) and any(word in kind.lower() for word in TRANSIENT_ERROR_TYPES),
            reason="server",
        )
    return UpstreamError(f"{model}: the call failed ({type(exc).__name__})", retryable=False, reason="error")


def _refused_connection(exc: BaseException) -> bool:
    """Whether a connection refused or reset (not a timeout) is behind ``exc``, however it was wrapped."""
    return any(isinstance(e, (ConnectionRefusedError, ConnectionResetError)) for e in error_chain(exc, implicit=True))


def _is_aiohttp_connection_error(exc: BaseException) -> bool:
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - the gateway extra installs it
        return False
    # A connection refused, reset or closed mid-answer (ClientPayloadError: a truncated body).
    return isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError))


class OpenAIBackend:
    """One OpenAI-compatible endpoint: completions as plain JSON over aiohttp, streams through ``openai``.

    A completion needs no SDK: the body is already OpenAI's JSON and the answer goes back as the
    provider sent it. A POST on aiohttp takes 0.3 ms against the local upstream where the SDK's
    generic POST (request options, httpx over aiohttp, its response object) takes 0.7 ms. Streams
    keep the SDK for its server-sent-events parsing. Both use the SDK's base URL and headers
    (``api_base``, else ``OPENAI_BASE_URL``, else OpenAI's own; the key; ``OPENAI_ORG_ID``...).
    """

    def __init__(self, upstream: Upstream) -> None:
        import openai

        self.upstream = upstream
        self._client = openai.AsyncOpenAI(
            base_url=upstream.api_base,
            api_key=upstream.key() or "none",  # local servers take any key; the SDK insists on one
            max_retries=0,
            timeout=upstream.timeout_s,
            http_client=_http_client(upstream.timeout_s),
        )
        self._client.chat.completions  # noqa: B018 - the SDK imports its resources lazily: now, not mid-request
        self._url = str(self._client.base_url).rstrip("/") + "/chat/completions"
        # The SDK's own headers (organization and project from the environment) and its key: the key
        # is not among ``default_headers`` but in ``auth_headers``, which the SDK adds per request.
        sdk_headers = {**self._client.default_headers, **self._client.auth_headers}
        self._headers = {k: v for k, v in sdk_headers.items() if isinstance(v, str)}
        self._session: Any = None  # an aiohttp session, opened on the event loop of the first call

    def __repr__(self) -> str:
        return f"OpenAIBackend(upstream={self.upstream.name!r}, api_base={self.upstream.api_base!r})"

    def _kwargs(self, call: Call) -> dict[str, Any]:
        return {
            "model": self.upstream.upstream_model(call.model),
            "messages": call.messages,
            "timeout": min(call.timeout_s, self.upstream.timeout_s),
            **call.params,
        }

    def _open_session(self) -> Any:
        import aiohttp

        # As many connections as the SDK's aiohttp transport keeps (100); more requests wait for one.
        connector = aiohttp.TCPConnector(limit=100)
        self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return self._session

    async def complete(self, call: Call) -> dict[str, Any]:
        import aiohttp

        kwargs = self._kwargs(call)
        timeout = aiohttp.ClientTimeout(total=kwargs.pop("timeout"))
        try:
            session = self._session or self._open_session()
            async with session.post(self._url, json=kwargs, timeout=timeout) as response:
                content = await response.read()
                if response.status >= 400:
                    key = self.upstream.key()
                    message = _error_message(content, key)
                    error = _error_object(content)
                    raise status_error(call.model, response.status, message, response.headers, key, error)
            try:
                body = json.loads(content)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                # A broken answer (cut off, empty, not an object) is the provider's failure, as an answer
                # without choices is: retried, then the next model.
                raise UpstreamError(
                    f"{call.model}: the provider answered {response.status} with no JSON object",
                    retryable=True,
                    reason="server",
                )
            return body
        except Exception as exc:
            raise upstream_error(exc, call.model, self.upstream.key()) from None

    def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        kwargs = _streaming(self._kwargs(call))
        timeout = kwargs.pop("timeout")
        # Parameters the SDK has no argument for (a provider's top_k, say) go in the body as given,
        # as a completion's plain POST sends them, instead of failing the SDK's call. So do body
        # fields named like the SDK's transport options (extra_headers...): a client's body never
        # sets the gateway's headers or query.
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in body_arguments()}
        if extra:
            kwargs["extra_body"] = extra
        created = self._client.chat.completions.create(**kwargs, timeout=timeout)
        return _chunks(created, call.model, as_sent=True, secret=self.upstream.key())

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._client.close()


class LiteLLMBackend:
    """``litellm.acompletion``: any provider LiteLLM supports, with model names as in the routes."""

    def __init__(self, upstream: Upstream) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map
        try:
            import litellm
        except ImportError as exc:
            raise UpstreamError(
                "This upstream uses LiteLLM, which is not installed: pip install 'redisvl-llmrouter[litellm]'",
                retryable=False,
                reason="config",
            ) from exc
        litellm.suppress_debug_info = True  # else it prints a provider list on stdout for every failed call
        self.upstream = upstream
        self._litellm = litellm

    def knows(self, model: str) -> bool:
        """Whether LiteLLM can tell which provider serves ``model``: else every call fails before it is sent."""
        try:
            self._litellm.get_llm_provider(model=model, api_base=self.upstream.api_base)
        except Exception:  # LiteLLM's BadRequestError ("LLM Provider NOT provided")
            return False
        return True

    def __repr__(self) -> str:
        return f"LiteLLMBackend(upstream={self.upstream.name!r}, api_base={self.upstream.api_base!r})"

    def _kwargs(self, call: Call) -> dict[str, Any]:
        # A client's OpenAI parameters are LiteLLM keywords; anything else goes in the body as given.
        # LiteLLM also reads its own settings from keywords (api_base, api_key, extra_headers,
        # mock_response...), which a client's body must never set: its api_base would receive the
        # provider key.
        params = {
            k: v
            for k, v in call.params.items()
            if (k in body_arguments() or k in LITELLM_SAMPLING) and k not in LITELLM_OWN
        }
        extra = {k: v for k, v in call.params.items() if k not in params}
        kwargs: dict[str, Any] = {
            **params,
            "model": call.model,
            "messages": call.messages,
            "timeout": min(call.timeout_s, self.upstream.timeout_s),
            "num_retries": 0,
        }
        if extra:
            kwargs["extra_body"] = extra
        if self.upstream.api_base:
            kwargs["api_base"] = self.upstream.api_base
        key = self.upstream.key()
        if key:
            kwargs["api_key"] = key
        return kwargs

    def _check(self, call: Call) -> None:
        """LiteLLM's own check of the messages, run before the call: a content part it cannot translate
        is the client's 400. (Inside the call LiteLLM raises it as a *connection* error, which nothing
        tells apart from its failures to read a provider's answer.)"""
        from litellm.utils import validate_chat_completion_user_messages

        try:
            validate_chat_completion_user_messages(call.messages)  # type: ignore[arg-type]
        except Exception as exc:
            raise _unsendable(call.model, provider_message(str(exc))[0]) from None

    async def complete(self, call: Call) -> dict[str, Any]:
        try:
            self._check(call)
            response = await self._litellm.acompletion(**self._kwargs(call))
            return response.model_dump()  # type: ignore[no-any-return]
        except Exception as exc:
            raise litellm_error(exc, call.model, self.upstream.key()) from None

    def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        async def created() -> Any:  # checked when the stream is opened, as a provider's refusal would be
            self._check(call)
            return await self._litellm.acompletion(**_streaming(self._kwargs(call)))

        return _chunks(created(), call.model, secret=self.upstream.key(), translate=litellm_error)

    async def warm(self, model: str) -> None:
        """One mocked call and one mocked stream (no request leaves): LiteLLM imports and builds what a
        call needs on its first one (0.19 s here, against 0.01 s afterwards), which would otherwise land
        on a client's request and in the latency every process routes by. Skipped when LiteLLM has
        callbacks (an operator's Langfuse, say), which would log the mocked calls."""
        litellm = self._litellm
        if any(getattr(litellm, name, None) for name in ("callbacks", "success_callback", "input_callback")):
            return
        kwargs = {"model": model, "messages": [{"role": "user", "content": "warm-up"}], "mock_response": "ok"}
        await litellm.acompletion(**kwargs)
        async for _ in await litellm.acompletion(**_streaming(kwargs)):
            pass

    async def aclose(self) -> None:
        return None


#: LiteLLM's prefixes on a provider's message: its class names ("litellm.BadRequestError: ",
#: "ContextWindowExceededError: ") and the provider's ("AnthropicException - ", "AnthropicException
#: BadGatewayError - ").
_LITELLM_PREFIX = re.compile(r"^(?:(?:litellm\.)?\w*(?:Error|Exception|Timeout): |\w*(?:Error|Exception)(?: \w+)? - )")
#: ... and its suffix ("Handle with `litellm.ServiceUnavailableError`.").
_LITELLM_SUFFIX = re.compile(r"\.? ?Handle with `litellm\.\w+`\.?$")
#: Where LiteLLM appends a traceback to a message: never for a client to read (it names server paths).
_TRACEBACK = "\nTraceback (most recent call last):"


def provider_message(text: str) -> tuple[str, dict[str, Any] | None]:
    """The provider's own message inside a LiteLLM error message, and its ``error`` object when the
    provider's body is quoted there (Anthropic's JSON, as text or as a bytes repr on a stream). Pure."""
    text = text.split(_TRACEBACK, 1)[0]
    while match := _LITELLM_PREFIX.match(text):
        text = text[match.end() :]
    text = _LITELLM_SUFFIX.sub("", text.strip()).strip()
    if text[:2] in ("b'", 'b"'):
        with contextlib.suppress(ValueError, SyntaxError):
            quoted = ast.literal_eval(text)
            if isinstance(quoted, bytes):
                text = quoted.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        return text, None
    error = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return text, None
    message = error.get("message")
    return (message if isinstance(message, str) and message else text), error


def litellm_error(exc: BaseException, model: str, secret: str | None = None) -> UpstreamError:
    """A LiteLLM exception as an ``UpstreamError``, as the same failure through :class:`OpenAIBackend`.

    LiteLLM's classes derive from ``openai``'s but say less than they seem to: a refused connection
    arrives as a 500, a read timeout in a stream as a 500 or 408 ``MidStreamFallbackError`` around
    the real error, a parameter the model does not take as a 400 with no body, a status it has no
    class for (403, 520, 529...) as an ``APIError`` that is no status error, its failure to read a
    provider's answer as a *connection* error, and the provider's message wrapped in LiteLLM's class
    names. Told apart here by what caused them, so that a request's own fault is the client's 400
    (never retried, never counted against the model) and the provider's or the network's is retried.
    """
    import openai
    from litellm import exceptions as litellm

    while isinstance(exc, litellm.MidStreamFallbackError) and exc.original_exception is not None:
        exc = exc.original_exception
    if isinstance(exc, UpstreamError):
        return exc
    causes = list(error_chain(exc, implicit=True))[1:]
    said = without_secret(getattr(exc, "message", None) or str(exc), secret)
    if isinstance(exc, litellm.UnsupportedParamsError):  # raised before anything is sent
        # Without its advice to set ``litellm.drop_params``: the gateway's setting, not the client's.
        return _unsendable(model, provider_message(said)[0].split(" To drop unsupported", 1)[0])
    if any(isinstance(c, StopAsyncIteration) for c in causes):  # the provider's stream just ended
        return UpstreamError(
            f"{model}: the provider's stream ended before the answer finished", retryable=True, reason="server"
        )
    transport = next((c for c in causes if _is_transport_error(c)), None)
    if isinstance(exc, openai.APITimeoutError) or _is_timeout(transport):
        return UpstreamError(f"{model}: the provider did not answer in time", retryable=True, reason="timeout")
    if transport is not None:  # LiteLLM calls a refused connection a 500
        return UpstreamError(f"{model}: cannot connect to the provider", retryable=True, reason="connection")
    provider = next((c for c in causes if type(c) is openai.APIError), None)
    if provider is not None:  # an error event inside a stream: the provider's own words
        return upstream_error(provider, model, secret)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.APIStatusError) or (isinstance(exc, litellm.APIError) and isinstance(status, int)):
        message, error = provider_message(said)
        # The provider's error object, where LiteLLM kept it (its own exception, or the openai SDK's below it).
        bodies = (getattr(c, "body", None) for c in [exc, *causes])
        kept = next((b.get("error", b) for b in bodies if isinstance(b, dict)), None)
        if isinstance(kept, dict):
            error = kept
            message = kept["message"] if isinstance(kept.get("message"), str) and kept["message"] else message
        if isinstance(exc, litellm.ContextWindowExceededError) and not (error or {}).get("code"):
            error = {**(error or {}), "code": "context_length_exceeded"}
        # The provider's headers (Retry-After): LiteLLM keeps them apart; its ``response`` has none of them.
        headers = getattr(exc, "litellm_response_headers", None) or getattr(
            getattr(exc, "response", None), "headers", None
        )
        return status_error(model, int(status), message, headers, secret, error)  # type: ignore[arg-type]
    if isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError):
        # No network error below it: LiteLLM failed on the provider's answer (a field missing, say), as
        # an answer that is no JSON object fails through the openai client: the provider's failure.
        return UpstreamError(
            f"{model}: the provider's answer could not be read: {provider_message(said)[0]}"[
                :MAX_PROVIDER_MESSAGE_CHARS
            ],
            retryable=True,
            reason="server",
        )
    return upstream_error(exc, model, secret)


def _unsendable(model: str, message: str) -> UpstreamError:
    """A request LiteLLM refuses to send: the client's 400, never retried nor counted against the model."""
    return UpstreamError(
        f"{model}: LiteLLM cannot send this request: {message}"[:MAX_PROVIDER_MESSAGE_CHARS],
        retryable=False,
        upstream_status=400,
        reason="client",
    )


def _is_timeout(exc: BaseException | None) -> bool:
    import httpx

    return isinstance(exc, (TimeoutError, httpx.TimeoutException))


def _is_transport_error(exc: BaseException) -> bool:
    """A timeout or a failed connection under a LiteLLM exception (``httpx``'s, ``aiohttp``'s, the OS's)."""
    import httpx

    return isinstance(exc, (TimeoutError, ConnectionError, httpx.TransportError)) or _is_aiohttp_connection_error(exc)


def _http_client(timeout_s: float) -> Any:
    """The SDK's aiohttp transport when installed (``openai[aiohttp]``), else httpx.

    Measured here with 1,000 calls at once against the local upstream: 318 calls/s on aiohttp,
    76 on httpx, whose connection pool scans every connection on each request.
    """
    import openai

    try:
        return openai.DefaultAioHttpClient(timeout=timeout_s)
    except RuntimeError:  # httpx-aiohttp is not installed
        import httpx

        limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
        return httpx.AsyncClient(limits=limits, timeout=timeout_s)


#: Provider sampling parameters outside OpenAI's API that LiteLLM translates when given as keywords.
LITELLM_SAMPLING = frozenset({"top_k", "min_p", "repetition_penalty", "thinking"})
#: OpenAI body fields that LiteLLM takes as its own keywords (``metadata``: its logging callbacks'),
#: so that they would never reach the provider: sent in the body instead.
LITELLM_OWN = frozenset({"metadata"})
#: ``chat.completions.create`` keywords that are the SDK's transport options, not body fields.
SDK_OPTIONS = frozenset({"self", "extra_headers", "extra_query", "extra_body", "timeout"})


@functools.cache
def body_arguments() -> frozenset[str]:
    """The body parameters among the ``openai`` SDK's ``chat.completions.create`` keywords."""
    from openai.resources.chat.completions import AsyncCompletions

    return frozenset(inspect.signature(AsyncCompletions.create).parameters) - SDK_OPTIONS


def _streaming(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Call arguments asking for a stream that ends with the usage (for the cost)."""
    kwargs["stream"] = True
    kwargs["stream_options"] = {**(kwargs.get("stream_options") or {}), "include_usage": True}
    return kwargs


async def _chunks(
    create: Awaitable[Any],
    model: str,
    as_sent: bool = False,
    secret: str | None = None,
    translate: Callable[[BaseException, str, str | None], UpstreamError] = upstream_error,
) -> AsyncIterator[dict[str, Any]]:
    """A provider's stream as plain chunk dicts, its errors as ``UpstreamError``.

    ``as_sent``: the ``openai`` SDK parsed each chunk from the provider's JSON, so its fields that were
    set are exactly those the provider sent, nulls included (``"finish_reason": null``, which strict
    clients expect, as OpenAI sends it). LiteLLM builds its chunks itself: their null fields are dropped.

    A stream that ends before every choice it sent has a ``finish_reason`` was cut (a provider or a
    proxy closed it mid-answer, without ``[DONE]``: the SDK just stops): a failed call, not a whole
    answer to cache and count a success. (A provider that ignores ``n`` and finishes the one choice
    it sent has answered whole.) LiteLLM passes on the ``finish_reason`` of the first choice only
    (and raises itself when a stream breaks): one of its streams is whole when a choice finished.

    ``translate``: the backend's reading of its client's exceptions.

    LiteLLM also makes a whole-looking stream (one empty chunk that says "stop") out of a 200 that was
    no stream at all: one of its streams with neither an answer's part nor the usage it was asked for
    is no answer.
    """
    seen: set[Any] = set()
    finished: set[Any] = set()
    carried = False  # any of an answer's parts, or the usage the call asked for
    try:
        async for chunk in await create:
            body = chunk.model_dump(exclude_unset=True) if as_sent else chunk.model_dump(exclude_none=True)
            carried = carried or bool(body.get("usage"))
            for choice in body.get("choices") or ():
                if isinstance(choice, dict):
                    seen.add(choice.get("index", 0))
                    carried = carried or any(v not in (None, "", []) for v in (choice.get("delta") or {}).values())
                    if choice.get("finish_reason"):
                        finished.add(choice.get("index", 0))
            if not as_sent and not carried and finished:
                # LiteLLM makes a stream of one empty "stop" chunk out of a 200 that was no stream at all
                # (HTML, an empty body, JSON without choices): no answer, to fail over from, never to cache.
                raise UpstreamError(
                    f"{model}: the provider's stream carried no answer", retryable=True, reason="server"
                )
            yield body
    except Exception as exc:  # an UpstreamError (the gateway's own) comes back as it is
        raise translate(exc, model, secret) from None
    if not finished or (as_sent and not seen <= finished):
        raise UpstreamError(
            f"{model}: the provider's stream ended before the answer finished", retryable=True, reason="server"
        )

"""Typed errors: every failure a user can cause or meet has its own class and a readable message.

Each also derives from what RedisVL's router raises in the same situation, so ``except`` clauses
written for RedisVL keep working: ``ValueError`` for bad input and definitions, ``TypeError`` for
an argument of the wrong kind, ``redis.exceptions.ConnectionError`` for an unreachable Redis,
``redisvl.exceptions.RedisModuleVersionError`` for a Redis without the search module,
``redis.exceptions.AuthenticationError`` (a ``ConnectionError``) for credentials Redis refuses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from redis.exceptions import AuthenticationError as _RedisAuthenticationError
from redis.exceptions import ConnectionError as _RedisConnectionError
from redisvl.exceptions import RedisModuleVersionError as _RedisVLModuleError

__all__ = [
    "error_chain",
    "AllModelsFailedError",
    "AuthenticationError",
    "CircuitOpenError",
    "ConfigError",
    "ConfigFileError",
    "ConfigFileExistsError",
    "ConfigFileNotFoundError",
    "ConflictError",
    "DataDirLockedError",
    "EmbeddedRedisError",
    "GatewayClosedError",
    "GatewayError",
    "GatewayLoopError",
    "InvalidQueryError",
    "InvalidRequestError",
    "RequestTooLargeError",
    "UnsupportedEncodingError",
    "CrossOriginError",
    "HostNotAllowedError",
    "InvalidFeedbackError",
    "InvalidVectorizerError",
    "LLMRouterError",
    "ModelNotFoundError",
    "NoEligibleModelError",
    "QueueFullError",
    "RedisCommandError",
    "RedisCredentialsError",
    "RedisModuleMissingError",
    "RedisPermissionError",
    "RedisPoolTimeoutError",
    "RedisUnavailableError",
    "RouteExistsError",
    "RouteNotFoundError",
    "RouterEmptyError",
    "RouterRecreatedError",
    "RouterExistsError",
    "RouterLoopError",
    "RouterNotFoundError",
    "RouterStateLostError",
    "UnknownModelError",
    "UnknownRequestError",
    "UpstreamError",
    "VectorDimensionError",
    "VectorizerMismatchError",
    "redact",
]

# ``scheme://[user]:password@``: the password is whatever follows the first colon of the userinfo,
# up to the last ``@`` of the same word (passwords may themselves contain ``@``, ``:`` or ``/``; masking
# too much is harmless). ``scheme//`` too: a URL missing its colon is still someone's secret.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*:?//[^:/@\s]*:)(?P<password>\S*)@")


# ``?password=...`` / ``&password=...``: redis-py also reads a password from the query string.
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd|api_key|key|token)=)[^&#\s'\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    Use it wherever a URL the user gave may be shown (errors, logs, the CLI): a Redis or upstream
    URL such as ``redis://alice:PW@host`` (or ``redis://host?password=PW``) carries its secret inline.
    """
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}***@", text)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}***", text)


def redact_url(url: str) -> str:
    """One URL the user gave, safe to show however malformed: its userinfo (everything between the
    scheme and the last ``@``) keeps only a user name before a colon."""
    url = _QUERY_PASSWORD.sub(lambda m: f"{m['head']}***", url)
    head, at, host = url.rpartition("@")
    if not at:
        return url
    scheme, slashes, userinfo = head.partition("//")
    if not slashes:
        scheme, userinfo = "", head
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{slashes}{user}{colon}***@{host}" if colon else f"{scheme}{slashes}***@{host}"


class LLMRouterError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidQueryError(LLMRouterError, ValueError):
    """The statement or vector given to the router cannot be routed (empty, too long, wrong type)."""


class VectorDimensionError(InvalidQueryError):
    """A vector's length differs from the router's embedding dimensions."""


class RouteNotFoundError(LLMRouterError, KeyError, ValueError):
    """A route name that the router does not have."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


class RouteExistsError(LLMRouterError, ValueError):
    """Adding a route under a name the router already has."""


class ConfigError(LLMRouterError, ValueError):
    """A router definition or config file is malformed or inconsistent."""


class RouterNotFoundError(ConfigError):
    """No router of that name is stored in this Redis (``from_existing``, the gateway, ``llmrouter learn``)."""


class RouterEmptyError(ConfigError):
    """The router has no routes to route on (cleared, or made without any): a state of the router,
    not of the request; the gateway answers it with 503 until a route is added."""


class ConfigFileError(ConfigError, OSError):
    """A router or config file that cannot be read or written (a directory, no permission); an ``OSError``
    too, as Python's own error for it is."""


class ConfigFileNotFoundError(ConfigFileError, FileNotFoundError):
    """No file at the path given; a ``FileNotFoundError`` too, as RedisVL's ``from_yaml`` raises."""


class ConfigFileExistsError(ConfigFileError, FileExistsError):
    """``to_yaml(..., overwrite=False)`` on an existing file; a ``FileExistsError`` too, as in RedisVL."""


class InvalidVectorizerError(ConfigError, TypeError):
    """The vectorizer argument is not a RedisVL vectorizer (RedisVL raises ``TypeError`` here)."""


class RouterExistsError(ConfigError):
    """A different router already lives under this name in Redis; pass ``overwrite=True`` to replace it."""


class VectorizerMismatchError(ConfigError):
    """Stored vectors were made by another embedding model, or have other dimensions."""


class RouterRecreatedError(VectorizerMismatchError):
    """The router a gateway serves was recreated elsewhere with vectors its vectorizer does not make
    (another model, dtype or dimensions): it cannot route on it until it is restarted, and says so
    (HTTP 503 ``router_recreated``, ``/health`` 503) instead of failing every routed request."""


class RedisUnavailableError(LLMRouterError, _RedisConnectionError, ConnectionError):
    """No Redis could be reached, or it went away mid-call."""


class RedisPoolTimeoutError(LLMRouterError, _RedisConnectionError, TimeoutError):
    """Every connection of the pool stayed busy longer than the pool's timeout (Redis is up, but saturated).

    A ``redis.exceptions.ConnectionError`` too: what redis-py's blocking pool raises in that case.
    """


class RedisPermissionError(LLMRouterError, PermissionError):
    """Redis refused a command for the connected user (an ACL denial); names the command and what to grant."""


class RedisCredentialsError(RedisPermissionError, _RedisAuthenticationError):
    """Redis refused the client's user name or password (wrong password, unknown or disabled user).

    A :class:`RedisPermissionError`, and also what redis-py (hence RedisVL) raises in that case:
    ``redis.exceptions.AuthenticationError``, a ``redis.exceptions.ConnectionError``, so
    ``except redis.exceptions.ConnectionError`` written for RedisVL still catches it. An ACL denial of
    one command (``NOPERM``) stays a plain :class:`RedisPermissionError`: the connection itself is fine.
    """

    def __init__(self, *args: object) -> None:
        # PermissionError's __init__ comes first in the MRO and does not chain to redis-py's, which sets
        # the attributes redis-py reads (error_type, status_code: its repr fails without them).
        _RedisAuthenticationError.__init__(self, *args)


class RedisCommandError(LLMRouterError, RuntimeError):
    """Redis answered a command with an error this package has no more specific type for."""


class RouterStateLostError(LLMRouterError, RuntimeError):
    """The router's index or stored config vanished from Redis (restarted without persistence, flushed,
    failed over) and was not rebuilt: call ``router.recover()``, or keep ``auto_recover`` on."""


class RouterDeletedError(LLMRouterError, RuntimeError):
    """The router object was used after its ``delete()``: it does not rebuild what was deleted on purpose."""


class RouterLoopError(LLMRouterError, RuntimeError):
    """An ``AsyncSemanticRouter`` used on an event loop its Redis connections do not belong to: a client
    you passed (``redis_client=``) on a later loop, or any call while another loop is using it."""


class ConflictError(LLMRouterError, RuntimeError):
    """Another writer kept changing the router's stored config while this one tried to save its change."""


class RedisModuleMissingError(LLMRouterError, _RedisVLModuleError, RuntimeError):
    """The Redis reached lacks the search (RediSearch) or JSON module."""


class EmbeddedRedisError(RedisUnavailableError):
    """The embedded Redis could not be started."""


class DataDirLockedError(EmbeddedRedisError):
    """Another process's embedded Redis holds this data directory; ``pid`` and ``port`` say whose."""

    def __init__(self, message: str, *, pid: int | None = None, port: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.port = port


class UnknownModelError(LLMRouterError, KeyError, ValueError):
    """A model the router's catalog and routes do not know."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownRequestError(LLMRouterError, KeyError):
    """Feedback for a request id the router never issued, or whose feedback window has passed."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidFeedbackError(LLMRouterError, ValueError):
    """An outcome that cannot be recorded: a quality outside [0, 1], a negative cost, no text or vector."""


class NoEligibleModelError(LLMRouterError, ValueError):
    """No model satisfies the request's constraints; ``excluded`` says why for each model, and ``route``
    names the route the request matched (its models were all excluded), if any."""

    def __init__(self, message: str, excluded: list[Any] | None = None, route: str | None = None) -> None:
        super().__init__(message)
        self.excluded = list(excluded or [])
        self.route = route


class GatewayError(LLMRouterError):
    """A request the gateway could not complete. ``status`` is the HTTP status the server answers with."""

    status: int = 500
    kind: str = "api_error"
    code: str | None = None
    #: The request field the error is about, when one is (OpenAI's ``error.param``).
    param: str | None = None

    def __init__(
        self, message: str, *, retry_after: float | None = None, detail: Any = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.detail = detail
        if param is not None:
            self.param = param
        #: The gateway request this error ended (its decisions-log entry), when there was one.
        self.request_id: str | None = None


class GatewayClosedError(GatewayError, RuntimeError):
    """A call on a gateway after its ``close()``."""

    code = "gateway_closed"


class GatewayLoopError(GatewayError, RuntimeError):
    """A call on an async ``Gateway`` from an event loop other than the one it was created on (its
    connections belong to that loop): create one per loop, or use ``SyncGateway`` from any thread.
    Also a ``SyncGateway`` used in a process forked after it was created (its loop's thread stayed in the parent)."""

    code = "wrong_event_loop"


class InvalidRequestError(GatewayError, ValueError):
    """A malformed request: missing messages, an unknown parameter value, bad JSON."""

    status, kind, code = 400, "invalid_request_error", "invalid_request"


class RequestTooLargeError(InvalidRequestError):
    """A request body over the gateway's ``max_body_mb``: refused before it is read into memory."""

    status, code = 413, "request_too_large"


class UnsupportedEncodingError(InvalidRequestError):
    """A request body sent compressed (``Content-Encoding: gzip``, say): the gateway reads plain JSON."""

    status, code = 415, "unsupported_encoding"


class CrossOriginError(GatewayError, PermissionError):
    """A browser's request sent by a page of another origin: refused, so no web page can spend through a
    gateway it reaches (one on localhost without API keys, say)."""

    status, kind, code = 403, "invalid_request_error", "cross_origin"


class HostNotAllowedError(GatewayError, PermissionError):
    """A request to a gateway without API keys, reached on a loopback address but addressed (its ``Host``)
    to a name that is not this machine's: what a web page does through DNS rebinding."""

    status, kind, code = 403, "invalid_request_error", "host_not_allowed"


class AuthenticationError(GatewayError, PermissionError):
    """A missing or wrong API key (the server's own keys, never a provider's)."""

    status, kind, code = 401, "authentication_error", "invalid_api_key"


class ModelNotFoundError(GatewayError, KeyError):
    """A model (or ``router/<name>``) the gateway does not serve."""

    status, kind, code = 404, "invalid_request_error", "model_not_found"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class QueueFullError(GatewayError):
    """Every candidate model's queue is full (or this request was shed for a higher-priority one): retry later."""

    status, kind, code = 429, "rate_limit_error", "queue_full"


class UpstreamError(GatewayError):
    """A provider call failed. ``retryable`` says whether the same call may succeed if tried again."""

    status, kind, code = 502, "api_error", "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        upstream_status: int | None = None,
        reason: str = "error",
        retry_after: float | None = None,
        provider_code: str | None = None,
        provider_param: str | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retryable = retryable
        self.upstream_status = upstream_status
        self.reason = reason
        #: The provider's own ``error.code`` and ``error.param`` (``context_length_exceeded``, ``messages``).
        self.provider_code = provider_code
        self.provider_param = provider_param


class CircuitOpenError(GatewayError):
    """The model's circuit breaker is open (it kept failing); retry after ``retry_after`` seconds."""

    status, kind, code = 503, "api_error", "circuit_open"


class AllModelsFailedError(GatewayError):
    """Every model of the decision failed or was unavailable; ``attempts`` lists what happened to each."""

    status, kind, code = 502, "api_error", "all_models_failed"

    def __init__(self, message: str, attempts: list[dict[str, Any]]) -> None:
        super().__init__(message, detail=attempts)
        self.attempts = attempts


def error_chain(exc: BaseException, *, implicit: bool = False) -> Iterator[BaseException]:
    """``exc`` and what caused it (``raise ... from``; with ``implicit``, also what it was raised while
    handling), each once: a chain may loop (an error raised from itself)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        yield cause
        seen.add(id(cause))
        cause = cause.__cause__ or (cause.__context__ if implicit else None)

"""Which Redis a router talks to.

Resolution order, the same for every entry point (sync, async, CLI):

1. an explicit client or URL passed by the caller;
2. the ``REDIS_URL`` environment variable;
3. the embedded Redis this package starts itself (see :mod:`redisvl_llmrouter.embedded`).
"""

from __future__ import annotations

import math
import numbers
import os
import re
import ssl
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from redisvl_llmrouter.errors import (
    ConfigError,
    LLMRouterError,
    RedisCommandError,
    RedisCredentialsError,
    RedisPermissionError,
    RedisPoolTimeoutError,
    RedisUnavailableError,
    error_chain,
    redact,
    redact_url,
)

__all__ = [
    "POOL_SIZE",
    "POOL_TIMEOUT_S",
    "async_client",
    "describe",
    "is_pool_timeout",
    "pool_size",
    "pool_timeout",
    "resolve_url",
    "sync_client",
    "translate",
    "unavailable",
]

#: Connections a client the router creates keeps to Redis, unless ``LLMROUTER_REDIS_POOL_SIZE`` or
#: ``connection_kwargs={"max_connections": n}`` says otherwise. Beyond it, callers wait for a free one (up
#: to the pool timeout) instead of failing: 1,000 concurrent requests share 64 connections.
POOL_SIZE = 64
#: Seconds a caller waits for a free connection before ``RedisPoolTimeoutError``, unless
#: ``LLMROUTER_REDIS_POOL_TIMEOUT`` or ``connection_kwargs={"timeout": s}`` says otherwise.
POOL_TIMEOUT_S = 10.0


def pool_size() -> int:
    """``LLMROUTER_REDIS_POOL_SIZE`` (a whole number, at least 1), else :data:`POOL_SIZE`.

    Read each time a client is created, not at import: a process may set it after importing the
    package, and a bad value fails as a ``ConfigError`` naming the variable where a pool is built.
    """
    return int(
        _env_number("LLMROUTER_REDIS_POOL_SIZE", POOL_SIZE, int, lambda v: v >= 1,
                    "a whole number of connections, at least 1")
    )  # fmt: skip


def pool_timeout() -> float:
    """``LLMROUTER_REDIS_POOL_TIMEOUT`` (seconds, a finite number, 0 or more), else :data:`POOL_TIMEOUT_S`.

    Read each time a client is created, as :func:`pool_size`.
    """
    return _env_number("LLMROUTER_REDIS_POOL_TIMEOUT", POOL_TIMEOUT_S, float, lambda v: math.isfinite(v) and v >= 0,
                       "the seconds a caller may wait for a free connection, a number of 0 or more")  # fmt: skip


def _env_number(
    name: str, default: float, parse: Callable[[str], float], valid: Callable[[float], bool], expected: str
) -> float:
    """The number in environment variable ``name`` (``default`` when unset or blank); a ConfigError naming it."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = parse(text)
    except ValueError:
        value = math.nan
    if not valid(value):
        raise ConfigError(f"{name}={text!r}: expected {expected} (default {default:g}); fix or unset the variable")
    return value


def resolve_url(redis_url: str | None = None) -> str:
    """The URL to connect to: the argument, else ``REDIS_URL``, else the embedded server's."""
    if redis_url is not None and not isinstance(redis_url, str):  # a port number alone, say
        raise ConfigError(
            f"redis_url must be a URL string such as 'redis://localhost:6379', got {type(redis_url).__name__} "
            f"{redact(repr(redis_url))}"
        )
    if redis_url:
        return redis_url
    env = os.environ.get("REDIS_URL")
    if env:
        return env
    from redisvl_llmrouter.embedded import get_embedded_redis

    return get_embedded_redis().url


def _kwargs(connection_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    if connection_kwargs is not None and (
        not isinstance(connection_kwargs, Mapping) or not all(isinstance(k, str) for k in connection_kwargs)
    ):
        raise ConfigError(
            "connection_kwargs must be a mapping of redis-py connection settings, e.g. "
            f"{{'max_connections': 8, 'timeout': 2.0}}; got {type(connection_kwargs).__name__}"
        )
    # Short connect timeout: an unreachable Redis should fail in a second, with our message,
    # not hang the caller. RESP2 keeps replies in one shape (the parsers accept RESP3 too).
    return {"socket_connect_timeout": 2.0, "protocol": 2, **(connection_kwargs or {})}


def _pool_kwargs(connection_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    kwargs = _kwargs(connection_kwargs)
    if "max_connections" not in kwargs:
        kwargs["max_connections"] = pool_size()
    if "timeout" not in kwargs:
        kwargs["timeout"] = pool_timeout()
    # Checked here: redis-py reads the pool's timeout only when a caller waits (a TypeError mid-request),
    # and its refusal of max_connections would be reported as a bad URL.
    size, wait = kwargs["max_connections"], kwargs["timeout"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"connection_kwargs max_connections must be a whole number, at least 1, got {size!r}")
    if wait is not None and (
        isinstance(wait, bool) or not isinstance(wait, numbers.Real) or not math.isfinite(wait) or wait < 0
    ):
        raise ConfigError(
            f"connection_kwargs timeout must be the seconds a caller may wait for a free connection, a number "
            f"of 0 or more (None: wait without limit), got {wait!r}"
        )
    return kwargs


def sync_client(
    redis_client: redis.Redis | None = None,
    redis_url: str | None = None,
    connection_kwargs: dict[str, Any] | None = None,
) -> redis.Redis:
    """The caller's client, or a new one on a blocking pool (callers wait for a free connection)."""
    if redis_client is not None:
        return _on_database_0(redis_client)
    kwargs = _pool_kwargs(connection_kwargs)  # a bad setting fails before an embedded Redis is started
    pool = _pool(redis.BlockingConnectionPool, resolve_url(redis_url), kwargs)
    return _on_database_0(redis.Redis(connection_pool=pool))


def async_client(
    redis_client: aredis.Redis | None = None,
    redis_url: str | None = None,
    connection_kwargs: dict[str, Any] | None = None,
) -> aredis.Redis:
    """As :func:`sync_client`, for asyncio (whose default pool raises instead of waiting when full)."""
    if redis_client is not None:
        return _on_database_0(redis_client)
    kwargs = _pool_kwargs(connection_kwargs)
    # redis-py's sync client retries a command on a broken connection (3 times, with backoff) by
    # default, its asyncio client does not: after a Redis restart every pooled connection is
    # stale, so without this each one would fail once before reconnecting.
    # Only a broken connection is retried, not a read timeout: a Redis that stopped answering (hung,
    # or cut off by a network partition) would otherwise hold each command for four socket timeouts
    # (20 s), and a timed-out write may have been applied already.
    kwargs.setdefault(
        "retry", AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), 3, supported_errors=(redis.ConnectionError,))
    )
    pool = _pool(aredis.BlockingConnectionPool, resolve_url(redis_url), kwargs)
    return _on_database_0(aredis.Redis(connection_pool=pool))


RedisClient = TypeVar("RedisClient", redis.Redis, aredis.Redis)


def _on_database_0(client: RedisClient) -> RedisClient:
    """Refuse a client on another database than 0: Redis's search module refuses to create an index
    there, and a search there reads the index of database 0, keys included (another router's data)."""
    pool = getattr(client, "connection_pool", None)
    db = getattr(pool, "connection_kwargs", {}).get("db", 0) if pool is not None else 0
    if str(db) not in ("0", ""):
        raise ConfigError(
            f"Redis database {db} was selected; routers live in database 0 (the search module indexes "
            "only that one). Drop the /DB from the URL (or db= from the client); routers of different "
            "names share a database safely."
        )
    return client


def rebuilt_async_client(client: aredis.Redis) -> aredis.Redis:
    """A new asyncio client with ``client``'s pool settings, for a new event loop; ``client``'s sockets are closed.

    The old connections belong to a loop that may be closed, so their sockets are closed directly
    (nothing is awaited, nothing is sent) and the pool is emptied.
    """
    pool = client.connection_pool
    for conn in [*getattr(pool, "_available_connections", []), *getattr(pool, "_in_use_connections", [])]:
        writer = getattr(conn, "_writer", None)
        sock = writer.get_extra_info("socket") if writer is not None else None
        if sock is not None:  # asyncio hands out a TransportSocket view; the socket is behind it
            getattr(sock, "_sock", sock).close()
        conn._reader = conn._writer = None
    pool.reset()
    kwargs = dict(pool.connection_kwargs)
    if isinstance(pool, aredis.BlockingConnectionPool):
        kwargs["timeout"] = pool.timeout
    new_pool = type(pool)(connection_class=pool.connection_class, max_connections=pool.max_connections, **kwargs)
    return aredis.Redis(connection_pool=new_pool)


def _pool(cls: Any, url: str, kwargs: dict[str, Any]) -> Any:
    """``cls.from_url``, a malformed URL or setting refused as a ``ConfigError`` (the URL's password masked)."""
    parse_url = aredis.connection.parse_url if issubclass(cls, aredis.ConnectionPool) else redis.connection.parse_url
    try:
        if _password_cut_short(url):
            raise ValueError("an @ after the host: a password's / # or ? ends the host early (a query's @ is %40)")
        parse_url(url)  # on its own first, so that a bad URL and a bad setting are told apart
    except ValueError as exc:
        # redis-py quotes the part it could not read, which may be a piece of the password.
        userinfo = url.rpartition("@")[0]
        detail = re.sub(r"'([^']*)'", lambda m: "'***'" if m[1] and m[1] in userinfo else m[0], str(exc))
        raise ConfigError(
            f"Invalid Redis URL {redact_url(url)!r}: {redact(detail)} "
            "(expected redis://host:port/db, with user:password@ before the host if needed; "
            "percent-encode / # ? in a password)"
        ) from None
    try:
        pool = cls.from_url(url, **kwargs)
        # redis-py builds connections only when a command needs one: a misspelt setting would surface
        # as a bare TypeError mid-request. Building one (which does not connect) refuses it here.
        pool.connection_class(**pool.connection_kwargs)
        return pool
    except (TypeError, ValueError) as exc:
        where = "connection_kwargs or the URL's query string" if "?" in url else "connection_kwargs"
        raise ConfigError(f"Invalid Redis connection setting in {where}: {redact(str(exc))}") from None


def _password_cut_short(url: str) -> bool:
    """Whether a password holding ``/``, ``#`` or ``?`` (not percent-encoded) ends the URL's authority
    early: ``redis://user:12/pw@host:6379`` reads as host ``user``, port ``12``, and messages about that
    "host" would print the password's first characters. Told by an ``@`` outside the authority followed
    by what looks like one (a host, a port, a database)."""
    from urllib.parse import urlsplit

    if "@" not in url or "@" in urlsplit(url).netloc:
        return False
    return re.fullmatch(r"[^/?#@\s]+(:\d+)?(/\d*)?([?#].*)?", url.rpartition("@")[2]) is not None


def is_pool_timeout(exc: BaseException) -> bool:
    """Whether a redis-py error means "no free connection in time" (not "Redis is down")."""
    text = str(exc)
    # "No connection available": a blocking pool's wait ran out; "Too many connections": a
    # caller-supplied client on redis-py's plain pool, which raises at once instead of waiting.
    return "No connection available" in text or "Too many connections" in text


_BLOCKING_POOLS = (redis.BlockingConnectionPool, aredis.BlockingConnectionPool)


def unavailable(exc: BaseException, client: redis.Redis | aredis.Redis) -> RedisUnavailableError:
    """The error for a Redis that cannot be reached, saying what to do about it."""
    return RedisUnavailableError(f"Cannot reach Redis at {describe(client)} ({exc}). {_advice(client, exc)}")


def _uses_tls(client: redis.Redis | aredis.Redis) -> bool:
    cls = client.connection_pool.connection_class
    return isinstance(cls, type) and issubclass(cls, (redis.SSLConnection, aredis.SSLConnection))


def _tls_advice(exc: BaseException, client: redis.Redis | aredis.Redis) -> str | None:
    """What a TLS mismatch needs (managed Redis speaks TLS), where "start Redis there" would mislead."""
    causes = list(error_chain(exc, implicit=True))  # redis-py raises its own error while handling the socket's
    kw = client.connection_pool.connection_kwargs
    if not _uses_tls(client):
        # A TLS server hangs up on a plain client's first command, before any reply.
        if "Connection closed by server" in str(exc):  # this attempt's own error, not an earlier one's
            return (
                "The server closed the connection without a reply, which is what a Redis that expects TLS "
                "does to a plain client: if it does, use a rediss:// URL."
            )
        return None
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in causes):
        return (
            "The server's TLS certificate is not one this client trusts. Name the CA that signed it in the URL "
            "(rediss://HOST:PORT?ssl_ca_certs=/path/to/ca.pem); a certificate made out to another host name "
            "needs that name in the URL."
        )
    if kw.get("ssl_ca_certs") and any(isinstance(e, FileNotFoundError) for e in causes):
        return f"The CA file the URL names (ssl_ca_certs={kw['ssl_ca_certs']}) does not exist."
    connecting = "Timeout connecting" in str(exc)  # not a slow reply on a connection made earlier
    if connecting or any(isinstance(e, ssl.SSLError) for e in causes):
        return (
            "The TLS handshake (rediss://) did not complete: if this port serves plain Redis, use redis://; "
            "else check that the server is up and reachable."
        )
    return None


def _advice(client: redis.Redis | aredis.Redis, exc: BaseException | None = None) -> str:
    """What helps: for this process's embedded Redis, what starts it again; for a TLS mismatch, what
    the URL needs; else where to point."""
    from redisvl_llmrouter.embedded import served_by_embedded

    kw = client.connection_pool.connection_kwargs
    state = None if "path" in kw else served_by_embedded(kw.get("host"), kw.get("port"))
    # The embedded Redis speaks plain Redis only: a TLS client's failure there is still the URL's.
    if exc is not None and (state is None or _uses_tls(client)) and (tls := _tls_advice(exc, client)) is not None:
        return tls
    if state == "current":
        kept = (
            "the new server reloads the files of LLMROUTER_DATA_DIR"
            if os.environ.get("LLMROUTER_DATA_DIR")
            else "the new server starts empty, as nothing was persisted (set LLMROUTER_DATA_DIR to keep data)"
        )
        return (
            "This is the embedded Redis of this process, and it has stopped (killed, crashed, or the process "
            "that owned it exited). Creating a router, or calling redisvl_llmrouter.embedded.get_embedded_redis(), "
            "starts it again on the same port (`llmrouter serve` does so by itself within a second); this router "
            f"then reconnects at its next call and, with auto_recover on (the default), rebuilds its routes; {kept}."
        )
    if state == "stopped":
        return (
            "This was the embedded Redis of this process, stopped by stop_embedded_redis(); a new one takes another "
            "port, so make a new router (it starts one), or point REDIS_URL or redis_url at a running Redis."
        )
    return (
        "Start Redis there, point REDIS_URL or redis_url at a running one, or set neither to let "
        "redisvl-llmrouter start its embedded Redis."
    )


def translate(exc: BaseException, client: redis.Redis | aredis.Redis) -> LLMRouterError:
    """The typed error for a redis-py error that reached a router's caller (both drivers use it).

    A full pool is not an unreachable Redis: it gets its own type and a message about load, with
    the pool's actual size and wait, so nobody restarts a healthy Redis because of it.
    """
    if isinstance(exc, LLMRouterError):
        return exc
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)) and is_pool_timeout(exc):
        pool = client.connection_pool
        size = getattr(pool, "max_connections", POOL_SIZE)
        wait = getattr(pool, "timeout", None) if isinstance(pool, _BLOCKING_POOLS) else None
        busy = (
            f"stayed busy for {wait:g} s"
            if isinstance(wait, (int, float))
            else "were busy, and this client's pool does not wait for one (use a BlockingConnectionPool)"
        )
        return RedisPoolTimeoutError(
            f"Redis at {describe(client)} is up, but all {size} connections of this router's pool {busy}. "
            "Lower the concurrency, or raise the pool size or wait (LLMROUTER_REDIS_POOL_SIZE / "
            "LLMROUTER_REDIS_POOL_TIMEOUT, or connection_kwargs max_connections / timeout)."
        )
    if isinstance(exc, RedisAuthenticationError):  # up and answering, but not to these credentials
        return RedisCredentialsError(
            f"Redis at {describe(client)} refused this client's credentials ({type(exc).__name__}). Check the "
            "user name and password in the Redis URL (REDIS_URL or --redis-url)."
        )
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return unavailable(exc, client)
    if isinstance(exc, NoPermissionError):
        return RedisPermissionError(
            f"Redis at {describe(client)} refused a command for this user ({exc}). Grant the user the "
            "search (FT.*), JSON (JSON.*), hash, string, stream and scripting commands on the router's keys: "
            "~NAME* and ~llmrouter:* (an index's own name counts as a key, so ~NAME:* is not enough; "
            "ACL LOG names the command and key refused)."
        )
    return RedisCommandError(f"Redis at {describe(client)} answered with an error: {exc}")


def describe(client: redis.Redis | aredis.Redis) -> str:
    """``host:port`` of a client, for error messages (never the password)."""
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix:{kw['path']}"
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}"

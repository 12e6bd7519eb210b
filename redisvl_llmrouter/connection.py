"""Which Redis a router talks to.

Resolution order, the same for every entry point (sync, async, CLI):

1. an explicit client or URL passed by the caller;
2. the ``REDIS_URL`` environment variable;
3. the embedded Redis this package starts itself (see :mod:`redisvl_llmrouter.embedded`).
"""

from __future__ import annotations

import os
from typing import Any

import redis
import redis.asyncio as aredis

__all__ = ["POOL_SIZE", "POOL_TIMEOUT_S", "async_client", "describe", "is_pool_timeout", "resolve_url", "sync_client"]

#: Connections a client the router creates keeps to Redis. Beyond it, callers wait for a free one
#: (up to ``POOL_TIMEOUT_S``) instead of failing: 1,000 concurrent requests share 64 connections.
POOL_SIZE = int(os.environ.get("LLMROUTER_REDIS_POOL_SIZE", "64"))
#: Seconds a caller waits for a free connection before ``RedisPoolTimeoutError``.
POOL_TIMEOUT_S = float(os.environ.get("LLMROUTER_REDIS_POOL_TIMEOUT", "10"))


def resolve_url(redis_url: str | None = None) -> str:
    """The URL to connect to: the argument, else ``REDIS_URL``, else the embedded server's."""
    if redis_url:
        return redis_url
    env = os.environ.get("REDIS_URL")
    if env:
        return env
    from redisvl_llmrouter.embedded import get_embedded_redis

    return get_embedded_redis().url


def _kwargs(connection_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    # Short connect timeout: an unreachable Redis should fail in a second, with our message,
    # not hang the caller. RESP2 keeps replies in one shape (the parsers accept RESP3 too).
    return {"socket_connect_timeout": 2.0, "protocol": 2, **(connection_kwargs or {})}


def _pool_kwargs(connection_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    kwargs = _kwargs(connection_kwargs)
    kwargs.setdefault("max_connections", POOL_SIZE)
    kwargs.setdefault("timeout", POOL_TIMEOUT_S)
    return kwargs


def sync_client(
    redis_client: redis.Redis | None = None,
    redis_url: str | None = None,
    connection_kwargs: dict[str, Any] | None = None,
) -> redis.Redis:
    """The caller's client, or a new one on a blocking pool (callers wait for a free connection)."""
    if redis_client is not None:
        return redis_client
    pool = redis.BlockingConnectionPool.from_url(resolve_url(redis_url), **_pool_kwargs(connection_kwargs))
    return redis.Redis(connection_pool=pool)


def async_client(
    redis_client: aredis.Redis | None = None,
    redis_url: str | None = None,
    connection_kwargs: dict[str, Any] | None = None,
) -> aredis.Redis:
    """As :func:`sync_client`, for asyncio (whose default pool raises instead of waiting when full)."""
    if redis_client is not None:
        return redis_client
    pool = aredis.BlockingConnectionPool.from_url(resolve_url(redis_url), **_pool_kwargs(connection_kwargs))
    return aredis.Redis(connection_pool=pool)


def is_pool_timeout(exc: BaseException) -> bool:
    """Whether a redis-py error means "no free connection in time" (not "Redis is down")."""
    return "No connection available" in str(exc)


def describe(client: redis.Redis | aredis.Redis) -> str:
    """``host:port`` of a client, for error messages (never the password)."""
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix:{kw['path']}"
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}"

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

__all__ = ["async_client", "describe", "resolve_url", "sync_client"]


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


def sync_client(
    redis_client: redis.Redis | None = None,
    redis_url: str | None = None,
    connection_kwargs: dict[str, Any] | None = None,
) -> redis.Redis:
    if redis_client is not None:
        return redis_client
    return redis.Redis.from_url(resolve_url(redis_url), **_kwargs(connection_kwargs))


def async_client(
    redis_client: aredis.Redis | None = None,
    redis_url: str | None = None,
    connection_kwargs: dict[str, Any] | None = None,
) -> aredis.Redis:
    if redis_client is not None:
        return redis_client
    return aredis.Redis.from_url(resolve_url(redis_url), **_kwargs(connection_kwargs))


def describe(client: redis.Redis | aredis.Redis) -> str:
    """``host:port`` of a client, for error messages (never the password)."""
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix:{kw['path']}"
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}"

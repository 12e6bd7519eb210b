"""How the gateway tells a Redis error that passes (a restart, a failover, a full memory) from one
that lasts, whether a write that got no answer may still run, and how an error goes into the log."""

from __future__ import annotations

from redisvl_llmrouter.errors import RedisPoolTimeoutError, RedisUnavailableError, error_chain

__all__ = ["loggable", "may_have_landed", "transient_redis_error"]


def transient_redis_error(exc: BaseException) -> bool:
    """A Redis error that passes (restart, failover, memory freed): worth retrying, not a bug.

    Read-only replicas, a full memory, a loading dataset: redis-py's own classes for those replies,
    found where this package's typed error keeps the original (its ``__cause__``)."""
    from redis import exceptions as r

    passing = (
        RedisUnavailableError,
        RedisPoolTimeoutError,
        r.ReadOnlyError,
        r.OutOfMemoryError,
        r.BusyLoadingError,
        r.MasterDownError,
        r.TryAgainError,
        r.ClusterDownError,
    )
    return any(isinstance(e, passing) for e in error_chain(exc))


def may_have_landed(exc: BaseException) -> bool:
    """A command sent whose reply did not come in time: Redis may still run it (a read timeout). Not a
    connect timeout, nor a wait for a free pooled connection: those were never sent."""
    from redis import exceptions as r

    from redisvl_llmrouter.connection import is_pool_timeout

    return any(
        isinstance(e, r.TimeoutError) and not is_pool_timeout(e) and "connecting" not in str(e).lower()
        for e in error_chain(exc)
    )


def loggable(exc: BaseException) -> str:
    """An error for the log: printable and short (a failed command's message can hold vector bytes)."""
    text = "".join(c if c.isprintable() else "?" for c in str(exc))
    return f"{type(exc).__name__}: {text[:300]}"

"""Live statistics per model, shared by every process through Redis: the layout, commands and parsing.

The strategies ``latency``, ``least_loaded`` and ``balanced`` and the ``max_latency_ms``
constraint read them; the gateway (or any caller) writes them when calls start and end. Keys,
per model ``M`` (the hash tag ``{M}`` keeps one model's keys in one cluster slot):

* ``llmrouter:model:{M}:stats`` — a hash: ``latency_ms`` (exponentially weighted moving average
  of successful calls' latency), ``success`` (EWMA of 1 for a success, 0 for a failure),
  ``requests``, ``successes``, ``failures`` (counters) and ``updated_ms``. It expires
  ``STATS_TTL_S`` after the last update, so a model nobody calls any more drops back to its
  catalog figures.
* ``llmrouter:model:{M}:inflight`` — a sorted set of the request ids in flight, scored by when
  each is considered abandoned. The load is the count of unexpired entries, so a process that dies
  mid-call stops counting once its entries expire. A caller gives each entry its timeout; the
  gateway gives each a short lease (:data:`CALL_LEASE_MS`) that it renews while the call runs, so
  the calls of a gateway killed mid-call stop counting within the lease.
* ``llmrouter:rr:{ROUTER}:<route>`` — the round-robin position of a route (a counter).

The EWMA weight of a new observation is ``ALPHA`` (0.2): the average follows a change within
about ten calls without jumping on one slow call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redisvl_llmrouter.search import as_text

__all__ = [
    "ALPHA",
    "CALL_LEASE_MS",
    "FINISH_SCRIPT",
    "SERVED_MAX",
    "SERVED_RENEW_S",
    "STATS_TTL_S",
    "ModelStats",
    "finish_args",
    "inflight_key",
    "parse_model_stats",
    "read_commands",
    "release_commands",
    "round_robin_key",
    "served_commands",
    "served_key",
    "start_commands",
    "stats_key",
]

ALPHA = 0.2
STATS_TTL_S = 7 * 24 * 3600
_FIELDS = ("latency_ms", "success", "requests", "successes", "failures")


def stats_key(model: str) -> str:
    return f"llmrouter:model:{{{model}}}:stats"


def inflight_key(model: str) -> str:
    return f"llmrouter:model:{{{model}}}:inflight"


def round_robin_key(router: str, route: str) -> str:
    return f"llmrouter:rr:{{{router}}}:{route}"


def served_key(router: str) -> str:
    """A router's gateway: the models it served beyond the router's own (passthrough), by last use."""
    return f"llmrouter:served:{{{router}}}"


#: How many passthrough models ``served_key`` remembers (the most recently used), and how often
#: (seconds) one process renews a model's place there.
SERVED_MAX = 100
SERVED_RENEW_S = 60.0


def served_commands(router: str, model: str, now_ms: int) -> list[tuple[Any, ...]]:
    """Note a passthrough model as served now; the set keeps the ``SERVED_MAX`` latest and expires with the stats."""
    key = served_key(router)
    return [
        ("ZADD", key, str(now_ms), model),
        ("ZREMRANGEBYRANK", key, "0", str(-SERVED_MAX - 1)),
        ("PEXPIRE", key, str(STATS_TTL_S * 1000)),
    ]


@dataclass(frozen=True)
class ModelStats:
    """What the processes sharing a Redis have measured of one model."""

    latency_ms: float | None = None
    success_rate: float | None = None
    inflight: int = 0
    requests: int = 0
    successes: int = 0
    failures: int = 0


def read_commands(model: str, now_ms: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The two commands that read a model's statistics and its in-flight count."""
    return (("HMGET", stats_key(model), *_FIELDS), ("ZCOUNT", inflight_key(model), str(now_ms), "+inf"))


def parse_model_stats(hmget: Sequence[Any] | None, inflight: Any) -> ModelStats:
    values = [None if v is None else float(as_text(v)) for v in (hmget or [None] * len(_FIELDS))]
    latency, success, requests, successes, failures = values
    return ModelStats(
        latency_ms=latency,
        success_rate=success,
        inflight=int(inflight or 0),
        requests=int(requests or 0),
        successes=int(successes or 0),
        failures=int(failures or 0),
    )


def start_commands(model: str, request_id: str, now_ms: int, timeout_ms: int) -> list[tuple[Any, ...]]:
    """Mark a call in flight until ``now_ms + timeout_ms`` (the finish script drops abandoned entries)."""
    key = inflight_key(model)
    return [("ZADD", key, str(now_ms + timeout_ms), request_id), *_extend_expiry(key, timeout_ms + 60_000)]


def _extend_expiry(key: str, ttl_ms: int) -> list[tuple[Any, ...]]:
    """Set the key's expiry, never shortening it: a short call must not expire the longer calls it
    shares the key with (NX gives a new key its first expiry; GT counts a key without one as infinite)."""
    return [("PEXPIRE", key, str(ttl_ms), "NX"), ("PEXPIRE", key, str(ttl_ms), "GT")]


#: How long a gateway's call stays counted in flight without a renewal (renewed a few times per lease).
CALL_LEASE_MS = 15_000


def renew_commands(model: str, request_id: str, now_ms: int, lease_ms: int) -> list[tuple[Any, ...]]:
    """Keep a call in flight until ``now_ms + lease_ms``; a call that has finished meanwhile is not added back."""
    key = inflight_key(model)
    return [("ZADD", key, "XX", str(now_ms + lease_ms), request_id), *_extend_expiry(key, lease_ms + 60_000)]


def release_commands(model: str, request_id: str) -> list[tuple[Any, ...]]:
    """End a call in flight without counting it (a request the provider refused as malformed)."""
    return [("ZREM", inflight_key(model), request_id)]


#: KEYS: stats, inflight. ARGV: request id ('' if not tracked), latency ms ('' if unknown),
#: success (1/0), alpha, ttl seconds, now ms. Updates the EWMAs and counters atomically.
FINISH_SCRIPT = r"""
local stats, inflight = KEYS[1], KEYS[2]
local rid, latency, ok = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local alpha, ttl, now = tonumber(ARGV[4]), ARGV[5], ARGV[6]
if rid ~= '' then redis.call('ZREM', inflight, rid) end
redis.call('ZREMRANGEBYSCORE', inflight, '-inf', '(' .. now)  -- calls abandoned by a process that died
local cur = redis.call('HMGET', stats, 'latency_ms', 'success')
if ok == 1 and latency then
  local old = tonumber(cur[1])
  local new = old and (alpha * latency + (1 - alpha) * old) or latency
  redis.call('HSET', stats, 'latency_ms', tostring(new))
end
local olds = tonumber(cur[2])
local news = olds and (alpha * ok + (1 - alpha) * olds) or ok
redis.call('HSET', stats, 'success', tostring(news), 'updated_ms', now)
redis.call('HINCRBY', stats, 'requests', 1)
redis.call('HINCRBY', stats, ok == 1 and 'successes' or 'failures', 1)
redis.call('EXPIRE', stats, ttl)
return 1
"""


def finish_args(
    model: str, *, success: bool, latency_ms: float | None, request_id: str = "", now_ms: int
) -> tuple[Any, ...]:
    """``EVALSHA`` arguments (after the sha) for :data:`FINISH_SCRIPT`."""
    return (
        2,
        stats_key(model),
        inflight_key(model),
        request_id,
        "" if latency_ms is None else repr(float(latency_ms)),
        "1" if success else "0",
        repr(ALPHA),
        str(STATS_TTL_S),
        str(now_ms),
    )


def parse_many(models: Sequence[str], replies: Sequence[Any]) -> dict[str, ModelStats]:
    """Stats of ``models`` from the replies of their :func:`read_commands`, in order."""
    return {m: parse_model_stats(replies[2 * i], replies[2 * i + 1]) for i, m in enumerate(models)}


def as_mapping(stats: Mapping[str, ModelStats | Mapping[str, Any]] | None) -> dict[str, ModelStats]:
    """Caller-given statistics (objects or dicts with the same fields) as ``ModelStats``."""
    out: dict[str, ModelStats] = {}
    for model, value in (stats or {}).items():
        out[model] = value if isinstance(value, ModelStats) else ModelStats(**dict(value))
    return out

"""Circuit breakers per model, shared by every gateway process through Redis.

States: **closed** (calls go through; consecutive failures are counted), **open** (no calls until
``cooldown_s`` has passed since it opened), **half-open** (at most ``successes`` calls at once go
through, across every process: the probes; ``successes`` consecutive successes close it, one
failure opens it again).

The transition rule is written once as a pure function (:func:`transition`, unit-tested) and
mirrored by a Lua script (:data:`RECORD_SCRIPT`) that applies it atomically in Redis, so two
processes recording outcomes at the same moment never lose one. Layout, per model ``M``:
``llmrouter:breaker:{M}`` — a hash with ``state``, ``failures``, ``successes``, ``opened_ms`` and
``trips`` (how many times it has opened, for reports); it expires after a week without a recorded call.
An open breaker turns half-open by itself once its cooldown has passed: :func:`state_at` reads it
that way, and the next recorded outcome stores it.

Probes are counted by the model's in-flight set (``llmrouter:model:{M}:inflight``, see
:mod:`redisvl_llmrouter.policy.stats`): :func:`admits` is the rule, :data:`PROBE_SCRIPT` applies it
and enters the call in that set in one step, so two processes never both take the last probe. Without
the limit, every request arriving after the cooldown would go to a model that may still be down, and
each would wait for its failure (a timeout, perhaps) before its fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redisvl_llmrouter.policy.stats import inflight_key
from redisvl_llmrouter.search import as_text

__all__ = [
    "PROBE_SCRIPT",
    "RECORD_SCRIPT",
    "BreakerState",
    "admits",
    "key",
    "parse",
    "probe_args",
    "read_commands",
    "record_args",
    "state_at",
    "transition",
]

State = Literal["closed", "open", "half_open"]


def key(model: str) -> str:
    return f"llmrouter:breaker:{{{model}}}"


@dataclass(frozen=True)
class BreakerState:
    state: State = "closed"
    failures: int = 0
    successes: int = 0
    opened_ms: int = 0
    trips: int = 0


def state_at(state: BreakerState, now_ms: int, cooldown_ms: int) -> BreakerState:
    """The state as of ``now_ms``: an open breaker whose cooldown has passed is half-open."""
    if state.state == "open" and now_ms - state.opened_ms >= cooldown_ms:
        return BreakerState("half_open", state.failures, 0, state.opened_ms, state.trips)
    return state


def admits(state: BreakerState, now_ms: int, cooldown_ms: int, in_flight: int, probes: int) -> bool:
    """Whether a new call may start: always when closed, never when open, and when half-open while
    fewer than ``probes`` calls to the model are in flight (the rule :data:`PROBE_SCRIPT` applies)."""
    current = state_at(state, now_ms, cooldown_ms).state
    return current == "closed" or (current == "half_open" and in_flight < probes)


def transition(
    state: BreakerState, success: bool, now_ms: int, failures: int, successes: int, cooldown_ms: int
) -> BreakerState:
    """The state after one call's outcome (the rule :data:`RECORD_SCRIPT` applies in Redis)."""
    current = state_at(state, now_ms, cooldown_ms)
    if current.state == "open":  # a call that started before the breaker opened: counts for nothing
        return current
    if success:
        if current.state == "half_open":
            done = current.successes + 1
            if done >= successes:
                return BreakerState("closed", 0, 0, current.opened_ms, current.trips)
            return BreakerState("half_open", 0, done, current.opened_ms, current.trips)
        return BreakerState("closed", 0, 0, current.opened_ms, current.trips)
    if current.state == "half_open":
        return BreakerState("open", current.failures + 1, 0, now_ms, current.trips + 1)
    count = current.failures + 1
    if count >= failures:
        return BreakerState("open", count, 0, now_ms, current.trips + 1)
    return BreakerState("closed", count, 0, current.opened_ms, current.trips)


#: KEYS: breaker hash. ARGV: success (1/0), now ms, failures to open, successes to close, cooldown ms.
#: Returns the new state.
RECORD_SCRIPT = r"""
local k = KEYS[1]
local ok, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local need_f, need_s, cool = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local v = redis.call('HMGET', k, 'state', 'failures', 'successes', 'opened_ms')
local state = v[1] or 'closed'
local f, s, opened = tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0
if state == 'open' and now - opened >= cool then state = 'half_open'; s = 0 end
if state == 'open' then return state end
if ok == 1 then
  if state == 'half_open' then
    s = s + 1
    if s >= need_s then state = 'closed'; f = 0; s = 0 else f = 0 end
  else
    f = 0; s = 0
  end
else
  if state == 'half_open' then
    state = 'open'; f = f + 1; s = 0; opened = now
    redis.call('HINCRBY', k, 'trips', 1)
  else
    f = f + 1
    if f >= need_f then
      state = 'open'; s = 0; opened = now
      redis.call('HINCRBY', k, 'trips', 1)
    end
  end
end
-- The cooldown is kept with the state so readers without the gateway's config (the report) can tell
-- an open breaker from a half-open one.
redis.call('HSET', k, 'state', state, 'failures', f, 'successes', s, 'opened_ms', opened, 'cooldown_ms', cool)
-- A breaker no call has touched for a week goes (a model name sent once leaves nothing behind).
redis.call('PEXPIRE', k, math.max(604800000, 10 * cool))
return state
"""


#: KEYS: breaker hash, the model's in-flight set. ARGV: now ms, cooldown ms, probes allowed at once,
#: request id, lease end ms. Returns 0 if :func:`admits` refuses the call, 1 if the breaker is closed, and
#: 2 for a trial call of a half-open breaker (entered in flight at once).
PROBE_SCRIPT = r"""
local k, inflight = KEYS[1], KEYS[2]
local now, cool, probes = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', k, 'state', 'opened_ms')
local state, opened = v[1] or 'closed', tonumber(v[2]) or 0
if state == 'open' and now - opened >= cool then state = 'half_open' end
if state == 'closed' then return 1 end
if state == 'open' then return 0 end
if redis.call('ZCOUNT', inflight, now, '+inf') >= probes then return 0 end
redis.call('ZADD', inflight, ARGV[5], ARGV[4])
redis.call('PEXPIRE', inflight, math.max(redis.call('PTTL', inflight), tonumber(ARGV[5]) - now + 60000))
return 2
"""


def probe_args(
    model: str, request_id: str, now_ms: int, cooldown_ms: int, probes: int, lease_ms: int
) -> tuple[Any, ...]:
    """``EVALSHA`` arguments (after the sha) for :data:`PROBE_SCRIPT`."""
    return (
        2,
        key(model),
        inflight_key(model),
        str(now_ms),
        str(cooldown_ms),
        str(probes),
        request_id,
        str(now_ms + lease_ms),
    )


def record_args(
    model: str, success: bool, now_ms: int, failures: int, successes: int, cooldown_ms: int
) -> tuple[Any, ...]:
    """``EVALSHA`` arguments (after the sha) for :data:`RECORD_SCRIPT`."""
    return (1, key(model), "1" if success else "0", str(now_ms), str(failures), str(successes), str(cooldown_ms))


def read_commands(models: Sequence[str]) -> list[tuple[Any, ...]]:
    return [("HMGET", key(m), "state", "failures", "successes", "opened_ms", "trips", "cooldown_ms") for m in models]


def stored_cooldown_ms(reply: Sequence[Any] | None) -> int | None:
    """The cooldown the last writer used (from a :func:`read_commands` reply), if stored."""
    values = list(reply or [])
    value = values[5] if len(values) > 5 else None
    return None if value is None else int(as_text(value))


def parse(reply: Sequence[Any] | None) -> BreakerState:
    values = [None if v is None else as_text(v) for v in (reply or [])]
    state, failures, successes, opened, trips = [*values, None, None, None, None, None][:5]
    return BreakerState(
        state=state if state in ("closed", "open", "half_open") else "closed",  # type: ignore[arg-type]
        failures=int(failures or 0),
        successes=int(successes or 0),
        opened_ms=int(opened or 0),
        trips=int(trips or 0),
    )

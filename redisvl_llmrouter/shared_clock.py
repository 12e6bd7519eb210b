"""One clock for every process on a Redis: Redis's own, read through its ``TIME`` command.

Breakers, in-flight leases, live statistics, the decisions log and the outcome memory's eviction
order are timed in wall-clock milliseconds that one process writes and another reads: a breaker
opened by one gateway is half-open for another once ``now - opened_ms`` passes the cooldown. With
each process on its own clock, a host whose clock ran a minute ahead saw every breaker past its
cooldown the moment it opened, sent its trial calls to the failing model, and closed the breaker
for everyone. So every process reads time as Redis does: it measures the offset between its clock
and Redis's from ``TIME`` replies (as NTP does, from the reply with the shortest round trip in the
last :attr:`SharedClock.window_s`, to within half that round trip) and adds it to its own clock.

Where ``TIME`` is refused (a managed Redis whose ACL user lacks it, a proxy without it) or never
read, the offset is 0: the process's own clock, as before; a refusal is asked again after
:attr:`SharedClock.retry_refused_s` (ACLs change). The offset is kept per process (one Redis per
process is the norm; a process on two Redis servers with different clocks uses the last one read).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoPermissionError, ResponseError

from redisvl_llmrouter import fork_safety
from redisvl_llmrouter.ops import Command, Op, Pipeline

__all__ = ["CLOCK", "SharedClock", "is_refusal", "now_ms", "read_timed", "refresh", "sync"]


def is_refusal(exc: ResponseError) -> bool:
    """Whether Redis refuses ``TIME`` for good (an ACL, a proxy that lacks it), not for a moment
    (``BUSY`` with a script, ``MASTERDOWN`` in a failover; a loading Redis is a connection error)."""
    return isinstance(exc, NoPermissionError) or "unknown command" in str(exc).lower()


class SharedClock:
    """Milliseconds since the epoch as the shared Redis reads them, estimated from ``TIME`` replies."""

    #: Samples older than this are dropped: the offset follows a local clock that was stepped.
    window_s: float = 10.0
    #: How long a refusal of ``TIME`` stands before it is asked again.
    retry_refused_s: float = 60.0
    _MAX_SAMPLES = 64

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=self._MAX_SAMPLES)  # (at, rtt, offset)
        self._offset_ms = 0.0
        self._refused_until = 0.0  # monotonic
        self._lock = fork_safety.lock()

    @property
    def offset_ms(self) -> float:
        """Redis's clock minus this process's, in milliseconds (0 until a reply was read)."""
        return self._offset_ms

    @property
    def refused(self) -> bool:
        """Whether Redis refused ``TIME`` lately (the process then keeps its own clock)."""
        return time.monotonic() < self._refused_until

    def now_ms(self) -> int:
        return int(time.time() * 1000 + self._offset_ms)

    def fresh(self) -> bool:
        """Whether a reply was read within the last :attr:`window_s`, or ``TIME`` was refused lately."""
        with self._lock:
            last = self._samples[-1][0] if self._samples else None
        return self.refused or (last is not None and time.monotonic() - last <= self.window_s)

    def refuse(self) -> None:
        """Redis refused ``TIME``: the process's own clock, until :attr:`retry_refused_s` has passed."""
        with self._lock:
            self._samples.clear()
            self._offset_ms = 0.0
            self._refused_until = time.monotonic() + self.retry_refused_s

    def observe(self, reply: Sequence[Any], sent_s: float, received_s: float, round_trip_s: float) -> None:
        """Take in one ``TIME`` reply, sent at wall time ``sent_s`` and received at ``received_s`` after
        ``round_trip_s`` (measured on the monotonic clock, which no clock step can make negative)."""
        try:
            redis_ms = int(reply[0]) * 1000 + int(reply[1]) / 1000
        except (TypeError, ValueError, IndexError):
            return  # not a TIME reply (a proxy's idea of one): the estimate stays as it was
        offset = redis_ms - (sent_s + received_s) * 500  # Redis read its clock about midway
        at = time.monotonic()
        with self._lock:
            while self._samples and at - self._samples[0][0] > self.window_s:
                self._samples.popleft()
            self._samples.append((at, max(round_trip_s, 0.0), offset))
            self._offset_ms = min(self._samples, key=lambda s: s[1])[2]
            self._refused_until = 0.0


#: The process's clock: every timestamp shared through Redis is read from it.
CLOCK = SharedClock()


def now_ms() -> int:
    """Milliseconds since the epoch on the shared clock (Redis's, once a ``TIME`` reply was read)."""
    return CLOCK.now_ms()


def sync(clock: SharedClock = CLOCK) -> Op[None]:
    """Read Redis's clock once. A refusal leaves the process on its own clock; a passing error
    (``BUSY``, ``MASTERDOWN``) leaves the estimate as it was, to be asked again on the next :func:`refresh`."""
    sent, started = time.time(), time.monotonic()
    try:
        reply = yield Command(("TIME",))
    except ResponseError as exc:
        if is_refusal(exc):
            clock.refuse()
        return
    clock.observe(reply, sent, time.time(), time.monotonic() - started)


def refresh(clock: SharedClock = CLOCK) -> Op[None]:
    """:func:`sync` unless a reply was read lately: a long-lived process follows its own clock's steps."""
    if not clock.fresh():
        yield from sync(clock)


def read_timed(commands: Sequence[tuple[Any, ...]], clock: SharedClock = CLOCK) -> Op[list[Any]]:
    """The replies to ``commands`` in one round trip, with Redis's clock read in it too (unless
    refused). A refusal found here (an ACL changed while the process ran) costs one more round
    trip, never the commands' replies."""
    if not clock.refused:
        sent, started = time.time(), time.monotonic()
        try:
            *replies, now = yield Pipeline((*commands, ("TIME",)))
        except ResponseError as exc:
            if not is_refusal(exc):
                raise
            clock.refuse()
        else:
            clock.observe(now, sent, time.time(), time.monotonic() - started)
            return replies
    return list((yield Pipeline(tuple(commands))))

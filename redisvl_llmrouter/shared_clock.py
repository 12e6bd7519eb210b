"""One clock for every process on a Redis: Redis's own, read through its ``TIME`` command.

Breakers, in-flight leases, live statistics, the decisions log and the outcome memory's eviction
order are timed in wall-clock milliseconds that one process writes and another reads: a breaker
opened by one gateway is half-open for another once ``now - opened_ms`` passes the cooldown. With
each process on its own clock, a host whose clock ran a minute ahead saw every breaker past its
cooldown the moment it opened, sent its trial calls to the failing model, and closed the breaker
for everyone. So every process reads time as Redis does: it measures the offset between its clock
and Redis's from ``TIME`` replies (as NTP does, from the reply with the shortest round trip in the
last :attr:`SharedClock.window_s`, to within half that round trip) and adds it to its own clock.

Where ``TIME`` is refused (a managed Redis whose ACL user lacks it) or never read, the offset is 0:
the process's own clock, as before. The offset is kept per process (one Redis per process is the
norm; a process on two Redis servers with different clocks uses the last one read).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from redisvl_llmrouter.ops import Command, Op

__all__ = ["CLOCK", "SharedClock", "now_ms", "refresh", "sync"]


class SharedClock:
    """Milliseconds since the epoch as the shared Redis reads them, estimated from ``TIME`` replies."""

    #: Samples older than this are dropped: the offset follows a local clock that was stepped.
    window_s: float = 10.0
    _MAX_SAMPLES = 64

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=self._MAX_SAMPLES)  # (at, rtt, offset)
        self._offset_ms = 0.0
        self._lock = threading.Lock()
        self.refused = False
        """Whether Redis refused ``TIME`` (the process then keeps its own clock)."""

    @property
    def offset_ms(self) -> float:
        """Redis's clock minus this process's, in milliseconds (0 until a reply was read)."""
        return self._offset_ms

    def now_ms(self) -> int:
        return int(time.time() * 1000 + self._offset_ms)

    def fresh(self) -> bool:
        """Whether a reply was read within the last :attr:`window_s` (or Redis refuses ``TIME``)."""
        return self.refused or bool(self._samples and time.monotonic() - self._samples[-1][0] <= self.window_s)

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


#: The process's clock: every timestamp shared through Redis is read from it.
CLOCK = SharedClock()


def now_ms() -> int:
    """Milliseconds since the epoch on the shared clock (Redis's, once a ``TIME`` reply was read)."""
    return CLOCK.now_ms()


def sync(clock: SharedClock = CLOCK) -> Op[None]:
    """Read Redis's clock once; a Redis that refuses ``TIME`` leaves the process on its own clock."""
    sent, started = time.time(), time.monotonic()
    try:
        reply = yield Command(("TIME",))
    except ResponseError:  # NOPERM on a managed Redis, or a proxy without TIME
        clock.refused = True
        return
    clock.refused = False
    clock.observe(reply, sent, time.time(), time.monotonic() - started)


def refresh(clock: SharedClock = CLOCK) -> Op[None]:
    """:func:`sync` unless a reply was read lately: a long-lived process follows its own clock's steps."""
    if not clock.fresh():
        yield from sync(clock)

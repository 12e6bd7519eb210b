"""The shared clock: each process reads time as Redis does, measured from ``TIME`` replies."""

from __future__ import annotations

import time

import pytest
from redis.exceptions import ResponseError

from redisvl_llmrouter.ops import Command
from redisvl_llmrouter.shared_clock import SharedClock, refresh, sync


def time_reply(ms: float) -> list[bytes]:
    """What redis-py returns for TIME: seconds and microseconds."""
    return [str(int(ms // 1000)).encode(), str(int(ms % 1000 * 1000)).encode()]


def test_a_clock_that_never_read_redis_is_the_process_clock():
    clock = SharedClock()
    assert clock.offset_ms == 0
    assert abs(clock.now_ms() - time.time() * 1000) < 50


def test_the_offset_is_redis_time_minus_the_midpoint_of_the_round_trip():
    clock = SharedClock()
    clock.observe(time_reply(1_000_060_000), sent_s=1_000_000.0, received_s=1_000_000.002, round_trip_s=0.002)
    assert clock.offset_ms == pytest.approx(59_999, abs=1)  # Redis read its clock 1 ms after the send
    assert abs(clock.now_ms() - (time.time() * 1000 + 59_999)) < 50


def test_the_reply_with_the_shortest_round_trip_decides():
    clock = SharedClock()
    clock.observe(time_reply(5_000), sent_s=0.0, received_s=0.0002, round_trip_s=0.0002)
    # A reply that sat in a queue for 800 ms says little about when Redis read its clock.
    clock.observe(time_reply(5_000), sent_s=0.0, received_s=0.8, round_trip_s=0.8)
    assert clock.offset_ms == pytest.approx(4_999.9, abs=0.1)


def test_old_replies_give_way_so_a_stepped_local_clock_is_followed():
    clock = SharedClock()
    clock.window_s = -1.0  # every earlier reply is out of the window
    clock.observe(time_reply(5_000), sent_s=0.0, received_s=0.0, round_trip_s=0.0001)
    clock.observe(time_reply(9_000), sent_s=0.0, received_s=0.0, round_trip_s=0.5)
    assert clock.offset_ms == 9_000


def test_a_reply_that_is_not_a_time_leaves_the_estimate_alone():
    clock = SharedClock()
    clock.observe(time_reply(5_000), sent_s=0.0, received_s=0.0, round_trip_s=0.001)
    clock.observe([b"OK"], sent_s=0.0, received_s=0.0, round_trip_s=0.0)
    clock.observe(None, sent_s=0.0, received_s=0.0, round_trip_s=0.0)  # type: ignore[arg-type]
    assert clock.offset_ms == 5_000


def test_sync_asks_for_time_and_a_refusal_keeps_the_process_clock():
    clock = SharedClock()
    op = sync(clock)
    assert next(op) == Command(("TIME",))
    with pytest.raises(StopIteration):
        op.throw(ResponseError("NOPERM this user has no permissions to run the 'time' command"))
    assert clock.refused and clock.offset_ms == 0

    op = sync(clock)
    next(op)
    with pytest.raises(StopIteration):
        op.send(time_reply(time.time() * 1000 + 30_000))
    assert not clock.refused and clock.offset_ms == pytest.approx(30_000, abs=50)


def test_refresh_reads_time_only_when_no_reply_came_lately():
    clock = SharedClock()
    op = refresh(clock)
    assert next(op) == Command(("TIME",))  # never read
    with pytest.raises(StopIteration):
        op.send(time_reply(time.time() * 1000))
    assert clock.fresh()
    assert list(refresh(clock)) == []  # read just now: no round trip
    clock.window_s = -1.0
    assert not clock.fresh() and next(refresh(clock)) == Command(("TIME",))


def test_refresh_never_asks_a_redis_that_refused_time():
    clock = SharedClock()
    op = sync(clock)
    next(op)
    with pytest.raises(StopIteration):
        op.throw(ResponseError("NOPERM"))
    assert list(refresh(clock)) == []

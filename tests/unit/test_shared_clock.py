"""The shared clock: each process reads time as Redis does, measured from ``TIME`` replies."""

from __future__ import annotations

import time

import pytest
from redis.exceptions import NoPermissionError, ResponseError

from redisvl_llmrouter.ops import Command, Pipeline
from redisvl_llmrouter.shared_clock import SharedClock, read_timed, refresh, sync


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


def test_sync_asks_for_time_and_a_refusal_puts_the_process_back_on_its_own_clock():
    clock = SharedClock()
    op = sync(clock)
    assert next(op) == Command(("TIME",))
    with pytest.raises(StopIteration):
        op.send(time_reply(time.time() * 1000 + 30_000))
    assert not clock.refused and clock.offset_ms == pytest.approx(30_000, abs=50)

    op = sync(clock)
    next(op)
    with pytest.raises(StopIteration):
        op.throw(NoPermissionError("this user has no permissions to run the 'time' command"))
    assert clock.refused and clock.offset_ms == 0


def test_a_passing_error_is_no_refusal_and_the_estimate_stands():
    clock = SharedClock()
    clock.observe(time_reply(5_000), sent_s=0.0, received_s=0.0, round_trip_s=0.001)
    for error in (ResponseError("BUSY Redis is busy running a script"), ResponseError("MASTERDOWN Link is down")):
        op = sync(clock)
        next(op)
        with pytest.raises(StopIteration):
            op.throw(error)
    assert not clock.refused and clock.offset_ms == 5_000


def test_a_proxy_without_time_is_a_refusal():
    clock = SharedClock()
    op = sync(clock)
    next(op)
    with pytest.raises(StopIteration):
        op.throw(ResponseError("ERR unknown command 'TIME', with args beginning with: "))
    assert clock.refused


def test_a_refusal_is_asked_again_after_a_while():
    clock = SharedClock()
    clock.retry_refused_s = -1.0  # already over
    clock.refuse()
    assert not clock.refused and next(refresh(clock)) == Command(("TIME",))


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
    clock.refuse()
    assert list(refresh(clock)) == []


def test_read_timed_reads_the_clock_in_the_same_round_trip():
    clock = SharedClock()
    op = read_timed([("HGETALL", "a"), ("GET", "b")], clock)
    assert next(op) == Pipeline((("HGETALL", "a"), ("GET", "b"), ("TIME",)))
    with pytest.raises(StopIteration) as done:
        op.send([{}, b"1", time_reply(time.time() * 1000 - 20_000)])
    assert done.value.value == [{}, b"1"]
    assert clock.offset_ms == pytest.approx(-20_000, abs=50)


def test_read_timed_answers_without_the_clock_when_time_is_refused_midway():
    """An ACL changed while the process runs costs a round trip, not the replies (nor the request)."""
    clock = SharedClock()
    op = read_timed([("GET", "b")], clock)
    next(op)
    assert op.throw(NoPermissionError("no permissions to run the 'time' command")) == Pipeline((("GET", "b"),))
    with pytest.raises(StopIteration) as done:
        op.send([b"1"])
    assert done.value.value == [b"1"] and clock.refused
    assert next(read_timed([("GET", "b")], clock)) == Pipeline((("GET", "b"),))  # not asked again for now


def test_read_timed_lets_any_other_error_through():
    clock = SharedClock()
    op = read_timed([("GET", "b")], clock)
    next(op)
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        op.throw(ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"))
    assert not clock.refused

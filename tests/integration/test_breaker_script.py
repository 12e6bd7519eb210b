"""The breaker's Lua script in Redis applies exactly the pure rule that the policy reads."""

from __future__ import annotations

import random
import uuid

import pytest
import redis

from redisvl_llmrouter.gateway import breaker


def test_the_script_and_the_pure_rule_agree_on_random_histories(redis_url):
    client = redis.Redis.from_url(redis_url)
    sha = client.script_load(breaker.RECORD_SCRIPT)
    rng = random.Random(7)
    rule = {"failures": 3, "successes": 2, "cooldown_ms": 500}
    for _ in range(20):
        model = f"test/{uuid.uuid4().hex[:8]}"
        expected, now = breaker.BreakerState(), 0
        for _ in range(60):
            now += rng.choice([0, 10, 100, 600])
            success = rng.random() < 0.5
            expected = breaker.transition(expected, success, now, **rule)
            returned = client.evalsha(
                sha, *breaker.record_args(model, success, now, rule["failures"], rule["successes"], rule["cooldown_ms"])
            )
            stored = breaker.parse(client.execute_command(*breaker.read_commands([model])[0]))
            assert returned.decode() == expected.state
            assert breaker.state_at(stored, now, rule["cooldown_ms"]) == expected
        client.delete(breaker.key(model))


def test_the_probe_script_admits_what_the_pure_rule_admits_and_enters_the_call_in_flight(redis_url):
    from redisvl_llmrouter.policy.stats import inflight_key

    client = redis.Redis.from_url(redis_url)
    rng = random.Random(11)
    cooldown, probes, lease = 500, 2, 10_000
    seen = set()  # (state, admitted): every case comes up
    for _ in range(20):
        model = f"test/{uuid.uuid4().hex[:8]}"
        state, now = breaker.BreakerState(), 0
        for step in range(40):
            now += rng.choice([0, 10, 100, 600])
            if rng.random() < 0.4:  # a call ends: its outcome moves the breaker, and it leaves the in-flight set
                state = breaker.transition(state, rng.random() < 0.5, now, 3, probes, cooldown)
                client.hset(breaker.key(model), mapping={"state": state.state, "opened_ms": state.opened_ms})
                client.zpopmin(inflight_key(model))
            in_flight = client.zcount(inflight_key(model), now, "+inf")
            expected = breaker.admits(state, now, cooldown, in_flight, probes)
            rid = f"r{step}"
            admitted = client.eval(breaker.PROBE_SCRIPT, *breaker.probe_args(model, rid, now, cooldown, probes, lease))
            assert bool(admitted) == expected
            assert admitted == (
                0 if not expected else 2 if breaker.state_at(state, now, cooldown).state == "half_open" else 1
            )
            seen.add((breaker.state_at(state, now, cooldown).state, expected))
            entered = client.zscore(inflight_key(model), rid) is not None
            # A half-open admission enters the call at once (no other process can take its place); a closed
            # breaker leaves that to the call's own start, and a refusal enters nothing.
            assert entered == (expected and breaker.state_at(state, now, cooldown).state == "half_open")
        client.delete(breaker.key(model), inflight_key(model))
    assert seen == {("closed", True), ("open", False), ("half_open", True), ("half_open", False)}


def test_a_breaker_expires_after_a_week_without_a_call(redis_url):
    """A model name sent once (any name passes through with an ``upstream_url``) leaves nothing for good."""
    client = redis.Redis.from_url(redis_url)
    model = f"test/{uuid.uuid4().hex[:8]}"
    client.eval(breaker.RECORD_SCRIPT, *breaker.record_args(model, False, 0, 5, 1, 30_000))
    assert 7 * 86_400_000 - 60_000 < client.pttl(breaker.key(model)) <= 7 * 86_400_000
    client.eval(breaker.RECORD_SCRIPT, *breaker.record_args(model, False, 0, 5, 1, 86_400_000))  # a day's cooldown
    assert client.pttl(breaker.key(model)) > 9 * 86_400_000  # outlives ten cooldowns
    client.delete(breaker.key(model))


def test_after_redis_forgets_its_scripts_the_batch_is_applied_once(redis_url):
    """A NOSCRIPT retry reruns the scripts, never the plain commands sent with them."""
    from redisvl_llmrouter.ops import run_scripts
    from redisvl_llmrouter.router import drive

    client = redis.Redis.from_url(redis_url)
    model, stream = f"test/{uuid.uuid4().hex[:8]}", f"test:{uuid.uuid4().hex[:8]}"
    client.script_flush()
    calls = [(breaker.RECORD_SCRIPT, breaker.record_args(model, False, 0, 1, 1, 1000))]
    replies = drive(run_scripts(calls, [("XADD", stream, "*", "d", "1"), ("INCR", f"{stream}:n")]), client)
    assert replies[0] == b"open" and replies[2] == 1
    assert client.xlen(stream) == 1 and client.get(f"{stream}:n") == b"1"
    assert breaker.parse(client.execute_command(*breaker.read_commands([model])[0])).trips == 1
    client.delete(stream, f"{stream}:n", breaker.key(model))


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_after_redis_forgets_one_script_of_a_batch_only_its_calls_run_again(redis_url, driver):
    """Redis restarted, and another process loaded one of the batch's scripts again before this batch
    came: the calls of the script Redis had ran at once, and ran a second time with the forgotten
    one's (a gateway call counted twice in the shared statistics)."""
    import asyncio

    import redis.asyncio as aredis

    from redisvl_llmrouter.aio import adrive
    from redisvl_llmrouter.errors import RedisCommandError
    from redisvl_llmrouter.ops import run_script, run_scripts
    from redisvl_llmrouter.router import drive

    tag = uuid.uuid4().hex[:8]
    count = f"-- {tag} count\nreturn redis.call('INCR', KEYS[1])"  # adds: run twice, it counts twice
    mark = f"-- {tag} mark\nreturn redis.call('SET', KEYS[1], ARGV[1])"
    keys = [f"test:{tag}:{k}" for k in ("count", "mark", "plain", "alone")]
    client = redis.Redis.from_url(redis_url)
    client.script_load(count)  # "mark" is not loaded: Redis has forgotten it

    def run(op):
        if driver == "sync":
            return drive(op, client)

        async def main():
            aclient = aredis.Redis.from_url(redis_url)
            try:
                return await adrive(op, aclient)
            finally:
                await aclient.aclose()

        return asyncio.run(main())

    calls = [(count, (1, keys[0])), (mark, (1, keys[1], "v")), (count, (1, keys[0]))]
    replies = run(run_scripts(calls, [("INCR", keys[2])]))
    assert replies == [1, b"OK", 2, 1]
    assert client.mget(keys[:3]) == [b"2", b"v", b"1"]
    client.script_flush()
    assert run(run_script(count, [(1, keys[3]), (1, keys[3])])) == [1, 2]  # one script, forgotten: loaded, run once
    with pytest.raises(RedisCommandError, match="not an integer"):  # any other refusal is raised
        run(
            run_scripts(
                [
                    (
                        mark,
                        (1, keys[0]),
                    )
                ],
                [("INCR", keys[1])],
            )
        )
    client.delete(*keys)


def test_the_report_shows_an_open_breaker_past_its_cooldown_as_half_open(redis_url):
    """The report has no gateway config: the cooldown stored with the state tells it what the gateways see."""
    import json
    import time

    from redisvl_llmrouter.observability import decisions, report
    from redisvl_llmrouter.router import drive

    client = redis.Redis.from_url(redis_url)
    router, model = f"rep-{uuid.uuid4().hex[:8]}", f"test/{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    client.xadd(decisions.stream_key(router), {"d": json.dumps({"type": "completion", "ts": now, "model": model})})
    sha = client.script_load(breaker.RECORD_SCRIPT)
    client.evalsha(sha, *breaker.record_args(model, False, now - 5_000, 1, 1, 1_000))  # opened 5 s ago, 1 s cooldown
    assert drive(report.load(router), client).breakers[model] == {"state": "half_open", "trips": 1}
    client.evalsha(sha, *breaker.record_args(model, False, now, 1, 1, 1_000))  # a failure half-open: open again
    assert drive(report.load(router), client).breakers[model] == {"state": "open", "trips": 2}
    client.delete(decisions.stream_key(router), breaker.key(model))


def test_the_report_lists_a_tripped_breaker_of_the_routers_models_though_the_log_never_named_it(redis_url):
    from redisvl_llmrouter import ModelCatalog, ModelSpec, Route, SemanticRouter
    from redisvl_llmrouter.observability import report
    from redisvl_llmrouter.router import drive

    tag = uuid.uuid4().hex[:8]
    quiet, tripped = f"test/{tag}-quiet", f"test/{tag}-tripped"
    router = SemanticRouter(
        name=f"rep-{tag}",
        routes=[Route(name="chat", models=[quiet, tripped], references=["hello"], distance_threshold=2.0)],
        catalog=ModelCatalog(models=[ModelSpec(name=quiet), ModelSpec(name=tripped)]),
        redis_url=redis_url,
    )
    client = redis.Redis.from_url(redis_url)
    client.evalsha(client.script_load(breaker.RECORD_SCRIPT), *breaker.record_args(tripped, False, 0, 1, 1, 1_000))
    breakers = drive(report.load(router.name), client).breakers
    assert breakers == {tripped: {"state": "half_open", "trips": 1}}  # the quiet model's closed breaker is noise
    router.delete()
    client.delete(breaker.key(tripped))


def test_the_report_reads_a_long_log_in_pages_and_misses_no_entry(redis_url):
    """One XRANGE of the whole log held Redis, and every gateway on it, for ~150 ms at 100,000 entries."""
    import json
    import time

    from redisvl_llmrouter.observability import decisions, report
    from redisvl_llmrouter.router import drive

    client = redis.Redis.from_url(redis_url)
    router, now = f"rep-{uuid.uuid4().hex[:8]}", int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for i in range(2 * report.READ_PAGE + 1):
        # The last entry of the first page is no decision: paging must go on from its id all the same.
        entry = "not json" if i == report.READ_PAGE - 1 else json.dumps({"type": "completion", "ts": now, "model": "m"})
        pipe.xadd(decisions.stream_key(router), {"d": entry})
    pipe.execute()
    calls = client.info("commandstats").get("cmdstat_xrange", {}).get("calls", 0)
    assert drive(report.load(router), client).total.requests == 2 * report.READ_PAGE
    assert client.info("commandstats")["cmdstat_xrange"]["calls"] - calls == 3
    client.delete(decisions.stream_key(router))

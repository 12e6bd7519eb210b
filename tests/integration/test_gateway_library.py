"""The gateway as a library (async and sync), a custom backend, LiteLLM as a backend, and several workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
import redis
from gateway_support import free_port, gateway, upstream

from redisvl_llmrouter import AsyncSemanticRouter, ModelCatalog, ModelSpec, SemanticRouter
from redisvl_llmrouter.errors import (
    AllModelsFailedError,
    ConfigError,
    GatewayClosedError,
    GatewayError,
    GatewayLoopError,
    InvalidFeedbackError,
    ModelNotFoundError,
    QueueFullError,
    UnknownModelError,
    UpstreamError,
)
from redisvl_llmrouter.gateway import Call, Gateway, SyncGateway
from redisvl_llmrouter.gateway.backends import OpenAIBackend
from redisvl_llmrouter.gateway.config import Upstream


@pytest.fixture(scope="module")
def local_upstream():
    with upstream() as up:
        yield up


class Scripted:
    """A custom backend: answers from a script, fails when told to (no network at all)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[Call] = []

    async def complete(self, call: Call) -> dict[str, Any]:
        self.calls.append(call)
        if self.fail:
            raise UpstreamError(
                f"{call.model}: scripted failure", retryable=False, upstream_status=500, reason="server"
            )
        content = f"scripted answer from {call.model}"
        return {
            "id": "x",
            "object": "chat.completion",
            "model": call.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
        }

    async def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {"content": "scripted"}}]}

    async def aclose(self) -> None:
        return None


class Held(Scripted):
    """A custom backend whose calls wait, once they have started, until the test releases them."""

    def __init__(self) -> None:
        super().__init__()
        self.called, self.release = asyncio.Event(), asyncio.Event()

    async def complete(self, call: Call) -> dict[str, Any]:
        self.called.set()
        await self.release.wait()
        return await super().complete(call)


def test_a_custom_backend_plugs_in_and_costs_come_from_the_catalog(redis_url):
    async def run() -> Any:
        name = f"lib-{uuid.uuid4().hex[:6]}"
        backend = Scripted()
        gw = await Gateway.create({"router_name": name}, redis_url=redis_url, backends={"*": backend})
        try:
            answer = await gw.complete([{"role": "user", "content": "explain garbage collection"}])
            return answer, backend.calls
        finally:
            await gw.router.delete()
            await gw.aclose()

    answer, calls = asyncio.run(run())
    assert answer.body["choices"][0]["message"]["content"] == "scripted answer from anthropic/claude-sonnet-4-5"
    assert [c.model for c in calls] == ["anthropic/claude-sonnet-4-5"]
    # 10 prompt and 20 completion tokens at sonnet's $3 / $15 per 1M tokens
    assert answer.outcome.cost == pytest.approx((10 * 3 + 20 * 15) / 1e6)
    assert answer.outcome.baseline_cost == pytest.approx((10 * 5 + 20 * 25) / 1e6)  # opus, the dearest


def test_a_routes_cost_ranks_its_model_but_never_bills_it_nor_makes_it_the_baseline(redis_url):
    """A route's ``cost`` is in any unit (only ratios rank): a model priced by nothing else got bills in
    USD from it, and as the dearest "priced" model became the baseline of every saving (7x inflated)."""
    from redisvl_llmrouter import Route

    async def run() -> tuple[Any, Any]:
        name = f"lib-{uuid.uuid4().hex[:6]}"
        router = await AsyncSemanticRouter.from_pretrained("default", name=name, redis_url=redis_url)
        await router.add_route(
            Route(name="own", model="selfhosted/x", cost=100.0, references=["a moon question"], distance_threshold=0.1)
        )
        await router.close()
        gw = await Gateway.create({"router_name": name}, redis_url=redis_url, backends={"*": Scripted()})
        ask = [{"role": "user", "content": "explain garbage collection"}]
        try:
            return (await gw.complete(ask, model="selfhosted/x")).outcome, (await gw.complete(ask)).outcome
        finally:
            await gw.router.delete()
            await gw.aclose()

    own, routed = asyncio.run(run())
    assert own.model == "selfhosted/x" and own.cost is None  # no catalog price: no bill, as documented
    assert own.baseline_cost == pytest.approx((10 * 5 + 20 * 25) / 1e6)  # opus, the dearest catalog model
    assert routed.model == "anthropic/claude-sonnet-4-5" and routed.cost == pytest.approx((10 * 3 + 20 * 15) / 1e6)
    assert routed.baseline_cost == pytest.approx((10 * 5 + 20 * 25) / 1e6)


def test_a_running_gateway_measures_savings_against_the_catalogs_baseline_as_it_is_now(redis_url):
    """Another process adds a dearer model: every gateway's baseline follows (it was fixed at start-up,
    so processes started before and after the change logged savings against different models)."""

    async def run() -> list[float | None]:
        name = f"lib-{uuid.uuid4().hex[:6]}"
        gw = await Gateway.create({"router_name": name}, redis_url=redis_url, backends={"*": Scripted()})
        ask = [{"role": "user", "content": "explain garbage collection"}]
        try:
            seen = [(await gw.complete(ask)).outcome.baseline_cost]
            other = await AsyncSemanticRouter.from_existing(name, redis_url=redis_url)
            dear = ModelSpec(name="lab/dearest", input_price=100.0, output_price=400.0, quality=0.5)
            await other.update_catalog(ModelCatalog(models=[*other.catalog, dear]))
            await other.close()
            deadline = time.monotonic() + 10
            while seen[-1] == seen[0] and time.monotonic() < deadline:  # picked up within ROUTER_REFRESH_S
                await asyncio.sleep(0.2)
                seen.append((await gw.complete(ask)).outcome.baseline_cost)
            return seen
        finally:
            await gw.router.delete()
            await gw.aclose()

    seen = asyncio.run(run())
    assert seen[0] == pytest.approx((10 * 5 + 20 * 25) / 1e6)  # opus, the dearest at start-up
    assert seen[-1] == pytest.approx((10 * 100 + 20 * 400) / 1e6)  # the model added since


def test_a_router_replaced_elsewhere_is_routed_on_at_once_not_answered_no_route(redis_url):
    """Replaced with ``overwrite=True``, the index held only references of routes a gateway did not
    know yet: until its next periodic check (1 s) every routed request went to the default route,
    or was a 404 "no route matched" on a router without one."""
    from redisvl_llmrouter import Route
    from redisvl_llmrouter.gateway.service import UNMATCHED_REFRESH_S

    async def run() -> Any:
        name = f"lib-{uuid.uuid4().hex[:6]}"
        gw = await Gateway.create({"router_name": name}, redis_url=redis_url, backends={"*": Scripted()})
        try:
            only = Route(name="only", model="openai/gpt-4.1-nano", references=["hello there"], distance_threshold=0.9)
            other = await AsyncSemanticRouter.create(name, routes=[only], redis_url=redis_url, overwrite=True)
            await other.close()
            await asyncio.sleep(UNMATCHED_REFRESH_S)  # since the gateway read its router, at start-up (ms ago)
            return (await gw.complete([{"role": "user", "content": "hello there"}])).outcome
        finally:
            await gw.router.delete()
            await gw.aclose()

    outcome = asyncio.run(run())
    assert (outcome.route, outcome.model) == ("only", "openai/gpt-4.1-nano")


def test_a_request_that_misses_just_after_a_check_waits_for_one_that_sees_what_its_search_saw(redis_url):
    """A request that matched nothing within 50 ms of the last check for changes failed at once as
    unmatched, although the router had changed after that check read it (2 of 27,156 requests while a
    router was overwritten 160 times under traffic)."""
    from redisvl_llmrouter import Route
    from redisvl_llmrouter.gateway.service import ROUTER_REFRESH_S

    text = "explain quantum chromodynamics"

    async def run() -> Any:
        name = f"lib-{uuid.uuid4().hex[:6]}"
        only = Route(name="only", model="openai/gpt-4.1-nano", references=["hello there"], distance_threshold=0.5)
        other = await AsyncSemanticRouter.create(name, routes=[only], redis_url=redis_url)
        gw = await Gateway.create({"router": name}, redis_url=redis_url, backends={"*": Scripted()})
        try:
            with pytest.raises(ModelNotFoundError):  # matches nothing (and both now hold the text's vector)
                await gw.complete([{"role": "user", "content": text}])
            await other(text)
            await asyncio.sleep(ROUTER_REFRESH_S)
            await gw.current_models()  # a check for changes reads the router now...
            physics = Route(name="physics", model="acme/physics", references=[text], distance_threshold=0.5)
            await other.add_route(physics)  # ...and it changes right after
            return (await gw.complete([{"role": "user", "content": text}])).outcome
        finally:
            await other.delete()
            await other.close()
            await gw.aclose()

    outcome = asyncio.run(run())
    assert (outcome.route, outcome.model) == ("physics", "acme/physics")


def test_requests_that_match_nothing_one_after_another_are_not_held_back_between_checks(redis_url):
    """Each request that matched nothing waited until 50 ms after the previous check for changes began
    before its own check, so back-to-back 404s on a router without a default route took about 50 ms
    each, however fast the search. Now each costs its route and a small read: measured against the
    same number of requests that match, the extra per miss stays well under that spacing."""
    from redisvl_llmrouter import Route
    from redisvl_llmrouter.gateway.service import UNMATCHED_REFRESH_S

    count = 12

    async def run() -> tuple[float, float]:
        name = f"lib-{uuid.uuid4().hex[:6]}"
        only = Route(name="only", model="openai/gpt-4.1-nano", references=["hello there"], distance_threshold=0.5)
        router = await AsyncSemanticRouter.create(name, routes=[only], redis_url=redis_url)
        gw = await Gateway.create({"router": name}, redis_url=redis_url, backends={"*": Scripted()})
        try:
            for text in ("hello there", "explain quantum chromodynamics"):  # warm: embeddings, connections
                with contextlib.suppress(ModelNotFoundError):
                    await gw.complete([{"role": "user", "content": text}])
            started = time.perf_counter()
            for _ in range(count):
                await gw.complete([{"role": "user", "content": "hello there"}])
            matched = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(count):
                with pytest.raises(ModelNotFoundError):
                    await gw.complete([{"role": "user", "content": "explain quantum chromodynamics"}])
            return matched, time.perf_counter() - started
        finally:
            await router.delete()
            await router.close()
            await gw.aclose()

    matched, missed = asyncio.run(run())
    assert (missed - matched) / count < UNMATCHED_REFRESH_S / 2, (matched, missed)


def test_a_router_config_beside_a_stored_router_name_is_read_not_ignored(redis_url, tmp_path, caplog, monkeypatch):
    """With ``router_name`` stored in Redis the gateway attached to it and never read ``router``: an
    edited config file, a missing one, or ``--router`` naming another stored router were all ignored
    without a word. An invalid ``router_name`` was blamed on ``router``."""
    from redisvl_llmrouter import Route

    name, other = f"lib-{uuid.uuid4().hex[:6]}", f"lib-{uuid.uuid4().hex[:6]}"
    first = Route(name="only", model="openai/gpt-4.1-nano", references=["hello there"], distance_threshold=0.5)
    edited = first.model_copy(update={"distance_threshold": 0.6})
    stored = SemanticRouter(name=name, routes=[first], redis_url=redis_url)
    elsewhere = SemanticRouter(name=other, routes=[first], redis_url=redis_url)
    config_file = tmp_path / "router.json"
    with SemanticRouter(name=f"{name}-file", routes=[edited], redis_url=redis_url) as exported:
        exported.export_with_embeddings(config_file)
        exported.delete()

    async def start(config: dict[str, Any]) -> str:
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": Scripted()})
        served = gw.router.name
        await gw.aclose()
        return served

    try:
        with caplog.at_level(logging.WARNING, logger="redisvl_llmrouter"):
            assert asyncio.run(start({"router": str(config_file), "router_name": name})) == name
        assert f"serving router {name!r} as stored in Redis, which differs from the config" in caplog.text
        assert "distance_threshold: stored 0.5, given 0.6" in caplog.text
        with pytest.raises(ConfigError, match="Cannot load the gateway's router"):
            asyncio.run(start({"router": str(tmp_path / "gone.json"), "router_name": name}))
        with pytest.raises(ConfigError, match=f"{other!r} is a router stored in Redis, not a config to load"):
            asyncio.run(start({"router": other, "router_name": name}))
        assert asyncio.run(start({"router": name, "router_name": name})) == name  # the same name twice: attached
        monkeypatch.chdir(tmp_path)  # ...unless a config file goes by that name: then it is read
        (tmp_path / f"{name}.json").write_bytes(config_file.read_bytes())
        with SemanticRouter(name=f"{name}.json", routes=[first], redis_url=redis_url) as dotted:
            try:
                caplog.clear()
                with caplog.at_level(logging.WARNING, logger="redisvl_llmrouter"):
                    assert (
                        asyncio.run(start({"router": f"{name}.json", "router_name": f"{name}.json"})) == f"{name}.json"
                    )
                assert "differs from the config" in caplog.text
            finally:
                dotted.delete()
        with pytest.raises(ConfigError, match="Invalid router name 'my router'"):
            asyncio.run(start({"router": "default", "router_name": "my router"}))
        with SemanticRouter(name=f"{name}-file", routes=[first], redis_url=redis_url) as clash:
            try:  # the config under its own name, where another router is stored: the gateway's remedies
                with pytest.raises(ConfigError, match="Serve the stored router by its name") as refused:
                    asyncio.run(start({"router": str(config_file)}))
                assert "overwrite=True" not in str(refused.value)  # the library's, which serve cannot take
            finally:
                clash.delete()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="redisvl_llmrouter"):
            assert asyncio.run(start({"router_name": name})) == name  # no config given: nothing to compare
        assert "differs from the config" not in caplog.text
    finally:
        for router in (stored, elsewhere):
            router.delete()
            router.close()


def test_keys_that_will_not_be_sent_are_warned_of_at_start(redis_url, caplog, monkeypatch):
    """An upstream's key variable holding only blanks is no key (stripped, calls went without one), yet
    only an unset one was warned of; a key for ``upstream_url`` given without it was sent nowhere, silently."""
    monkeypatch.setenv("BLANK_PROVIDER_KEY", "   ")
    monkeypatch.setenv("UNUSED_UPSTREAM_KEY", "sk-Zz9unused")
    config = {
        "router_name": f"lib-{uuid.uuid4().hex[:6]}",
        "upstreams": [{"name": "p", "api_base": "http://127.0.0.1:9/v1", "api_key_env": "BLANK_PROVIDER_KEY"}],
        "upstream_api_key_env": "UNUSED_UPSTREAM_KEY",
    }

    async def run() -> None:
        gw = await Gateway.create(config, redis_url=redis_url)
        await gw.router.delete()
        await gw.aclose()

    with caplog.at_level(logging.WARNING, logger="redisvl_llmrouter"):
        asyncio.run(run())
    assert "upstream 'p': $BLANK_PROVIDER_KEY is blank, so its calls go without an API key" in caplog.text
    assert "$UNUSED_UPSTREAM_KEY is not sent anywhere" in caplog.text
    assert "Zz9" not in caplog.text


def test_a_model_added_elsewhere_is_listed_and_takes_feedback_without_a_routed_request_first(redis_url):
    """``/v1/models``, ``/stats`` and feedback used the definition the gateway last routed on: a gateway
    that had not routed since another process added a model did not list it and refused its feedback."""
    from redisvl_llmrouter import Route

    async def run() -> tuple[list[str], dict[str, Any], dict[str, Any]]:
        name = f"lib-{uuid.uuid4().hex[:6]}"
        gw = await Gateway.create({"router_name": name}, redis_url=redis_url, backends={"*": Scripted()})
        try:
            answer = await gw.complete([{"role": "user", "content": "explain garbage collection"}])
            other = await AsyncSemanticRouter.from_existing(name, redis_url=redis_url)
            await other.add_route(Route(name="new", model="acme/new-model", references=["a new kind of request"]))
            await other.close()
            await asyncio.sleep(1.2)  # longer than the gateway's ROUTER_REFRESH_S, with no request routed
            listed = await gw.current_models()
            feedback = await gw.feedback(answer.outcome.request_id, 1.0, model="acme/new-model")
            return listed, await gw.stats(), feedback
        finally:
            await gw.router.delete()
            await gw.aclose()

    listed, stats, feedback = asyncio.run(run())
    assert "acme/new-model" in listed and "acme/new-model" in stats["models"]
    assert feedback["model"] == "acme/new-model"


class Stalling(Scripted):
    """A custom backend that ignores ``Call.timeout_s`` and stalls: before answering, or after a first chunk."""

    async def complete(self, call: Call) -> dict[str, Any]:
        self.calls.append(call)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {"content": "half"}}]}
        await asyncio.sleep(3600)


def test_the_gateway_holds_a_custom_backend_to_the_calls_timeout(redis_url):
    async def run() -> tuple[float, AllModelsFailedError, list[str], float]:
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "max_models": 1, "retry": {"attempts": 1}}
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": Stalling()})
        try:
            started = time.monotonic()
            with pytest.raises(AllModelsFailedError) as caught:
                await asyncio.wait_for(gw.complete([{"role": "user", "content": "hi"}], timeout=0.5), 30)
            waited = time.monotonic() - started
            stream = await gw.complete([{"role": "user", "content": "hi"}], stream=True, timeout=0.5)
            started, parts = time.monotonic(), []
            with pytest.raises(UpstreamError, match="did not answer in time"):  # the stream breaks, as documented
                async for chunk in stream:
                    parts.append(chunk["choices"][0]["delta"].get("content"))
            return waited, caught.value, parts, time.monotonic() - started
        finally:
            await gw.router.delete()
            await gw.aclose()

    waited, error, parts, streamed = asyncio.run(asyncio.wait_for(run(), 60))
    assert waited < 5 and "openai/gpt-4.1-nano: timeout" in str(error)
    assert parts == ["half"] and streamed < 5  # the stalled stream ended instead of hanging


def test_when_every_model_fails_the_error_lists_each_attempt(redis_url):
    async def run() -> AllModelsFailedError:
        gw = await Gateway.create(
            {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "max_models": 2, "breaker": {"failures": 1000}},
            redis_url=redis_url,
            backends={"*": Scripted(fail=True)},
        )
        try:
            with pytest.raises(AllModelsFailedError) as caught:
                await gw.complete([{"role": "user", "content": "hello there"}])
            return caught.value
        finally:
            await gw.router.delete()
            await gw.aclose()

    error = asyncio.run(run())
    assert [a["model"] for a in error.attempts] == ["openai/gpt-4.1-nano", "openai/gpt-4.1-mini"]
    assert "openai/gpt-4.1-nano: server (500)" in str(error)


class FailsOnceThenHeld(Held):
    """A custom backend whose first call fails as retryable (a 500) and whose retry waits until released."""

    async def complete(self, call: Call) -> dict[str, Any]:
        if not self.calls:
            self.calls.append(call)
            raise UpstreamError(f"{call.model}: overloaded", retryable=True, upstream_status=500, reason="server")
        return await super().complete(call)


@pytest.mark.parametrize("backoff", [{"initial_s": 0.01}, {"initial_s": 0, "max_s": 0, "jitter_s": 0}])
def test_a_retried_call_counts_in_flight_while_it_runs(redis_url, backoff):
    """The call was counted in flight once per model, before its retries: the failed first attempt's
    record ended the count, and the retry then ran uncounted (``/stats``, ``least_loaded`` and the
    half-open breaker's calls still running all read 0 for as long as it took). Counted per attempt
    under the request id, a retry at once still went uncounted: its start and the failed attempt's
    record went to Redis in one batch, the start first."""

    async def run() -> tuple[int, int]:
        backend = FailsOnceThenHeld()
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "retry": {"attempts": 2, **backoff}}
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": backend})
        try:
            call = asyncio.ensure_future(gw.complete([{"role": "user", "content": "hello, how are you?"}], model="a/m"))
            await asyncio.wait_for(backend.called.wait(), 10)  # the retry runs
            await gw._writes.flush()
            during = (await gw.stats())["models"]["a/m"]["in_flight"]
            backend.release.set()
            await call
            await gw._writes.flush()
            return during, (await gw.stats())["models"]["a/m"]["in_flight"]
        finally:
            await gw.router.delete()
            await gw.aclose()

    assert asyncio.run(run()) == (1, 0)


class Broken(Scripted):
    """A custom backend with a bug: the first model it is asked for raises a plain exception."""

    def __init__(self, broken: str) -> None:
        super().__init__()
        self.broken = broken
        self.closed = False

    async def complete(self, call: Call) -> dict[str, Any]:
        if call.model == self.broken:
            raise RuntimeError("bug in a custom backend")
        return await super().complete(call)

    async def aclose(self) -> None:
        self.closed = True


def test_a_custom_backend_raising_its_own_error_is_a_failed_call_the_fallback_answers(redis_url):
    async def run() -> tuple[Any, dict[str, Any], Broken]:
        backend = Broken("openai/gpt-4.1-nano")
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "retry": {"attempts": 1}}
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": backend})
        try:
            before = (await gw.stats())["models"]["openai/gpt-4.1-nano"]  # models' statistics are Redis-wide
            answer = await gw.complete([{"role": "user", "content": "hello, how are you?"}])
            await gw._writes.flush()
            after = (await gw.stats())["models"]["openai/gpt-4.1-nano"]
            return answer, {k: after[k] - before[k] for k in ("failures", "in_flight")}, backend
        finally:
            await gw.router.delete()
            await gw.aclose()

    answer, models, backend = asyncio.run(run())
    assert answer.outcome.model == "openai/gpt-4.1-mini" and answer.outcome.fallbacks_used == 1
    assert (models["failures"], models["in_flight"]) == (1, 0)  # recorded, and no longer counted in flight
    assert backend.closed  # the gateway closes the backends it was given


def test_feedback_right_after_the_answer_finds_it(redis_url):
    async def run() -> list[dict[str, Any]]:
        gw = await Gateway.create({"router_name": f"lib-{uuid.uuid4().hex[:6]}"}, redis_url=redis_url,
                                  backends={"*": Scripted()})  # fmt: skip
        try:
            results = []
            for i in range(10):  # the answer's record is written behind it: feedback must not outrun it
                answer = await gw.complete([{"role": "user", "content": f"hello number {i}"}])
                results.append(await gw.feedback(answer.outcome.request_id, quality=1.0))
            return results
        finally:
            await gw.router.delete()
            await gw.aclose()

    assert [r["model"] for r in asyncio.run(run())] == ["openai/gpt-4.1-nano"] * 10


def test_the_provider_key_goes_with_every_call_plain_and_streamed(redis_url, monkeypatch):
    monkeypatch.setenv("LOCAL_UPSTREAM_KEY", "sk-local-test\n")  # as a secret mounted from a file often ends
    with upstream(api_key="sk-local-test") as keyed:

        async def run(key_env: str) -> Any:
            config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "upstream_url": keyed.url,
                      "upstream_api_key_env": key_env, "max_models": 1, "retry": {"attempts": 1}}  # fmt: skip
            gw = await Gateway.create(config, redis_url=redis_url)
            try:
                plain = await gw.complete([{"role": "user", "content": "hi"}], model="k/plain")
                streamed = await gw.complete([{"role": "user", "content": "hi"}], model="k/streamed", stream=True)
                chunks = [chunk async for chunk in streamed]
                return plain, chunks
            finally:
                await gw.router.delete()
                await gw.aclose()

        plain, chunks = asyncio.run(run("LOCAL_UPSTREAM_KEY"))
        assert plain.body["choices"][0]["message"]["content"] == "[k/plain] hi" and chunks
        with pytest.raises(AllModelsFailedError, match="401"):  # the upstream checks: a missing key is refused
            asyncio.run(run("NO_SUCH_KEY_VARIABLE"))


def test_upstreams_that_differ_only_in_their_key_never_share_a_client(redis_url):
    with upstream(api_key="sk-team-a") as keyed:

        async def run() -> tuple[str, BaseException | None]:
            team = {"name": "team", "api_base": keyed.url, "strip_provider": False}
            config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "max_models": 1, "retry": {"attempts": 1},
                      "upstreams": [{**team, "models": ["a/*"], "api_key": "sk-team-a"},
                                    {**team, "models": ["b/*"], "api_key": "sk-team-b"}]}  # fmt: skip
            gw = await Gateway.create(config, redis_url=redis_url)
            try:
                answer = await gw.complete([{"role": "user", "content": "hi"}], model="a/m")
                try:
                    await gw.complete([{"role": "user", "content": "hi"}], model="b/m")
                except AllModelsFailedError as exc:
                    return answer.body["choices"][0]["message"]["content"], exc
                return answer.body["choices"][0]["message"]["content"], None
            finally:
                await gw.router.delete()
                await gw.aclose()

        content, refused = asyncio.run(run())
        assert content == "[a/m] hi"
        assert refused is not None and "401" in str(refused)  # team b's own key, which the upstream refuses


def test_a_call_without_its_own_timeout_waits_as_long_as_its_upstream_allows():
    from redisvl_llmrouter.gateway.service import _Request

    backend = OpenAIBackend(Upstream(api_base="http://127.0.0.1:9/v1", timeout_s=600))
    request = _Request([], "m", "m", {}, 0, None, False, "", None, "hi", 1)  # type: ignore[arg-type]
    assert Gateway._call(request, "m", backend).timeout_s == 600  # not the 60 s default of a custom backend
    assert Gateway._call(request, "m", Scripted()).timeout_s == 60
    request.timeout_s = 5.0
    assert Gateway._call(request, "m", backend).timeout_s == 5.0


def test_an_async_gateway_refuses_calls_from_another_loop_and_after_aclose(redis_url):
    ask = [{"role": "user", "content": "hi"}]
    home = asyncio.new_event_loop()
    try:
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}"}
        gw = home.run_until_complete(Gateway.create(config, redis_url=redis_url, backends={"*": Scripted()}))
        with pytest.raises(GatewayLoopError, match="another event loop"):
            asyncio.run(gw.complete(ask))
        assert home.run_until_complete(gw.complete(ask)).outcome.model  # still fine on its own loop
        home.run_until_complete(gw.router.delete())
        home.run_until_complete(gw.aclose())
        for call in (gw.complete(ask), gw.route(ask), gw.stats()):
            with pytest.raises(GatewayClosedError, match="closed"):
                home.run_until_complete(call)
        home.run_until_complete(gw.aclose())  # a second close does nothing
    finally:
        home.close()


def test_upstream_url_sends_every_model_even_beside_configured_upstreams(redis_url, local_upstream, caplog):
    async def run() -> str:
        nowhere = {"name": "nowhere", "models": ["*"], "api_base": "http://127.0.0.1:9/v1"}
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "upstream_url": local_upstream.url,
                  "upstreams": [nowhere], "retry": {"attempts": 1}}  # fmt: skip
        gw = await Gateway.create(config, redis_url=redis_url)
        try:
            answer = await gw.complete([{"role": "user", "content": "hi"}], model="u/m")
            return answer.body["choices"][0]["message"]["content"]
        finally:
            await gw.router.delete()
            await gw.aclose()

    assert asyncio.run(run()) == "[u/m] hi"
    assert "the 1 configured upstreams are not used" in caplog.text


def test_a_stored_router_that_cannot_be_read_is_reported_as_such_not_as_a_missing_config(redis_url):
    import redis

    from redisvl_llmrouter.search import config_key

    name = f"lib-{uuid.uuid4().hex[:6]}"
    SemanticRouter.from_pretrained("default", name=name, redis_url=redis_url).close()
    redis.Redis.from_url(redis_url).execute_command("JSON.SET", config_key(name), "$.routing_config.cost_weight", "5")
    try:
        with pytest.raises(ConfigError, match="Invalid router definition") as refused:
            asyncio.run(Gateway.create({"router": name}, redis_url=redis_url))
        assert "pretrained" not in str(refused.value)
    finally:  # readable again, then gone with everything it has
        redis.Redis.from_url(redis_url).execute_command(
            "JSON.SET", config_key(name), "$.routing_config.cost_weight", "0.3"
        )
        SemanticRouter.from_existing(name, redis_url=redis_url).delete()


def test_router_name_names_a_loaded_config_and_a_stored_router_is_not_one(redis_url):
    stored = SemanticRouter.from_pretrained("default", name=f"lib-{uuid.uuid4().hex[:6]}", redis_url=redis_url)
    try:
        config = {"router": stored.name, "router_name": f"lib-{uuid.uuid4().hex[:6]}"}
        with pytest.raises(ConfigError, match="is a router stored in Redis, not a config"):
            asyncio.run(Gateway.create(config, redis_url=redis_url, backends={"*": Scripted()}))
    finally:
        stored.delete()


def test_a_custom_backend_without_the_whole_protocol_is_refused_when_the_gateway_is_made(redis_url):
    class NoStream:
        async def complete(self, call: Call) -> dict[str, Any]:
            return {}

        async def aclose(self) -> None:
            return None

    with pytest.raises(ConfigError, match=r"\(NoStream\) has no stream"):
        asyncio.run(Gateway.create({"router_name": "never-made"}, redis_url=redis_url, backends={"*": NoStream()}))


def test_a_stream_left_unread_frees_its_queue_slot_when_closed(redis_url):
    async def run() -> list[int]:
        gw = await Gateway.create({"router_name": f"lib-{uuid.uuid4().hex[:6]}"}, redis_url=redis_url,
                                  backends={"*": Scripted()})  # fmt: skip
        model = "openai/gpt-4.1-nano"
        try:
            active = []
            stream = await gw.complete([{"role": "user", "content": "hi"}], model=model, stream=True)
            active.append(gw.queues.snapshot()[model]["active"])  # held while the stream is open
            await stream.aclose()  # never read a chunk
            active.append(gw.queues.snapshot()[model]["active"])
            async with await gw.complete([{"role": "user", "content": "hi"}], model=model, stream=True) as s:
                active.append(len([chunk async for chunk in s]))
            active.append(gw.queues.snapshot()[model]["active"])
            return active
        finally:
            await gw.router.delete()
            await gw.aclose()

    assert asyncio.run(run()) == [1, 0, 1, 0]


async def aenumerate(items: AsyncIterator[Any]) -> AsyncIterator[tuple[int, Any]]:
    i = 0
    async for item in items:
        yield i, item
        i += 1


class Streams(Scripted):
    """A custom backend whose streams are empty for ``empty`` models and long otherwise; it notes
    which streams were closed before their end."""

    def __init__(self, empty: str) -> None:
        super().__init__()
        self.empty = empty
        self.closed_early: list[str] = []

    async def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        if call.model == self.empty:
            return
        finished = False
        try:
            for i in range(1000):
                yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {"content": f"{i} "}}]}
            finished = True
        finally:
            if not finished:
                self.closed_early.append(call.model)


def test_a_stream_that_ends_before_its_first_chunk_is_a_failed_call_and_frees_its_slot(redis_url):
    async def run() -> tuple[Any, list[str], int]:
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "retry": {"attempts": 1}}
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": Streams(empty="openai/gpt-4.1-nano")})
        try:
            stream = await gw.complete([{"role": "user", "content": "hello, how are you?"}], stream=True)
            async with stream:
                text = "".join([c["choices"][0]["delta"]["content"] async for c in stream][:3])
            return stream.outcome, text, gw.queues.snapshot()["openai/gpt-4.1-nano"]["active"]
        finally:
            await gw.router.delete()
            await gw.aclose()

    outcome, text, active = asyncio.run(run())
    assert outcome.attempts[0] == {**outcome.attempts[0], "model": "openai/gpt-4.1-nano", "error": "server"}
    assert outcome.model == "openai/gpt-4.1-mini" and text == "0 1 2 "  # the fallback answered
    assert active == 0


class Blurts(Scripted):
    """A custom backend whose stream fails with an error quoting its key, after two chunks."""

    async def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        for i in range(2):
            yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {"content": f"{i} "}}]}
        raise RuntimeError(f"401: invalid api key {SECRET}")


SECRET = "sk-HUNT-SECRET-123456"


def test_a_custom_backends_error_mid_stream_is_logged_without_its_message(redis_url, caplog):
    async def run() -> None:
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "retry": {"attempts": 1}}
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": Blurts()})
        try:
            stream = await gw.complete([{"role": "user", "content": "hello"}], stream=True)
            with pytest.raises(UpstreamError) as failed:
                async with stream:
                    async for _ in stream:
                        pass
            assert SECRET not in str(failed.value)
        finally:
            await gw.router.delete()
            await gw.aclose()

    caplog.set_level(logging.WARNING)
    asyncio.run(run())
    assert "raised RuntimeError mid-stream" in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize("read", [0, 3], ids=["unread", "partly-read"])
def test_a_stream_left_early_closes_the_providers_call_and_is_logged(redis_url, read):
    async def run() -> tuple[list[str], list[dict[str, Any]], int]:
        backend = Streams(empty="none")
        gw = await Gateway.create({"router_name": f"lib-{uuid.uuid4().hex[:6]}"}, redis_url=redis_url,
                                  backends={"*": backend})  # fmt: skip
        model = "openai/gpt-4.1-nano"
        try:
            stream = await gw.complete([{"role": "user", "content": "hi"}], model=model, stream=True)
            if read:
                async for i, _ in aenumerate(stream):
                    if i + 1 == read:
                        break
            await stream.aclose()
            await asyncio.sleep(0.05)  # the provider's stream is closed off the caller's task
            await gw._writes.flush()
            return backend.closed_early, await gw.recent_decisions(5), gw.queues.snapshot()[model]["active"]
        finally:
            await gw.router.delete()
            await gw.aclose()

    closed, entries, active = asyncio.run(run())
    assert closed == ["openai/gpt-4.1-nano"] and active == 0
    assert [(e["status"], e["error"]) for e in entries] == [("error", "client_closed")]


def test_a_client_leaving_while_its_call_is_made_is_logged_under_the_model_with_the_call(redis_url):
    # It was logged with no model and no attempt: a "(none)" row in the report for a call that may be billed.
    async def run() -> list[dict[str, Any]]:
        backend = Held()
        gw = await Gateway.create({"router_name": f"lib-{uuid.uuid4().hex[:6]}"}, redis_url=redis_url,
                                  backends={"*": backend})  # fmt: skip
        try:
            asking = asyncio.ensure_future(gw.complete([{"role": "user", "content": "hi"}], model="p/slow"))
            await backend.called.wait()
            asking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asking
            await gw._writes.flush()
            return await gw.recent_decisions(5)
        finally:
            await gw.router.delete()
            await gw.aclose()

    (entry,) = asyncio.run(run())
    assert (entry["model"], entry["attempts"], entry["error"]) == ("p/slow", 1, "client_closed")


class Recorded(Scripted):
    """Scripted, with its streamed calls recorded too."""

    async def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(call)
        async for chunk in super().stream(call):
            yield chunk


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_a_request_whose_cancellation_was_swallowed_on_the_way_never_calls_its_provider(redis_url, stream):
    """redis-py's asyncio pool can return a read although its task was cancelled meanwhile (a client
    that left): the request went on to call, and be billed by, its provider with nobody to answer,
    and a stream nobody closed kept its call counted in flight for ever."""

    async def run() -> tuple[list[Call], list[dict[str, Any]], dict[Any, Any]]:
        backend = Recorded()
        gw = await Gateway.create({"router_name": f"lib-{uuid.uuid4().hex[:6]}"}, redis_url=redis_url,
                                  backends={"*": backend})  # fmt: skip

        async def left_but_swallowed() -> Any:
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            with contextlib.suppress(asyncio.CancelledError):  # as that pool may: the task is still cancelled
                await asyncio.sleep(0)
            return await gw.complete([{"role": "user", "content": "hi"}], model="openai/gpt-4.1-nano", stream=stream)

        try:
            with pytest.raises(asyncio.CancelledError):
                await asyncio.ensure_future(left_but_swallowed())
            await gw._writes.flush()
            return backend.calls, await gw.recent_decisions(5), dict(gw._calls)
        finally:
            await gw.router.delete()
            await gw.aclose()

    calls, entries, in_flight = asyncio.run(run())
    assert calls == [] and in_flight == {}
    assert [(e["status"], e["error"]) for e in entries] == [("error", "client_closed")]


def test_every_refusal_by_a_full_queue_is_counted_alike_in_stats_and_metrics(redis_url):
    """Streamed or not, shed for being last or for waiting too long: /stats and /metrics agree."""

    async def run() -> tuple[int, float]:
        config = {
            "router_name": f"lib-{uuid.uuid4().hex[:6]}",
            "queue": {"concurrency": 1, "depth": 1, "wait_timeout_s": 0.1},
        }
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": Streams(empty="none")})
        model, ask = "openai/gpt-4.1-nano", [{"role": "user", "content": "hi"}]
        try:
            held = await gw.complete(ask, model=model, stream=True)  # holds the only slot
            for stream in (False, True, False, True):  # each waits 0.1 s, then is refused
                with pytest.raises(QueueFullError):
                    await gw.complete(ask, model=model, stream=stream)
            await held.aclose()
            shed = gw.queues.snapshot()[model]["shed"]
            line = next(
                x for x in gw.metrics.render().decode().splitlines() if x.startswith("llmrouter_queue_shed_total{")
            )
            return shed, float(line.rsplit(" ", 1)[1])
        finally:
            await gw.router.delete()
            await gw.aclose()

    assert asyncio.run(run()) == (4, 4.0)


def test_a_critical_request_is_routed_before_the_low_ones_waiting_to_be_routed(redis_url):
    """Routing (embedding and search) takes a few requests at a time; first come, first served, a critical
    request waited behind every low one that arrived before it, whatever the model queues then did."""

    async def run() -> int:
        gw = await Gateway.create(
            {"router_name": f"lib-{uuid.uuid4().hex[:6]}"}, redis_url=redis_url, backends={"*": Scripted()}
        )
        done: list[str] = []

        async def ask(label: str, priority: str) -> None:
            await gw.complete([{"role": "user", "content": f"question {label}: {uuid.uuid4().hex}"}], priority=priority)
            done.append(label)

        try:
            lows = [asyncio.ensure_future(ask(f"low {i}", "low")) for i in range(120)]
            await asyncio.sleep(0.02)  # every low one is waiting to be routed, a few are being routed
            await asyncio.gather(ask("critical", "critical"), *lows)
            return done.index("critical")
        finally:
            await gw.router.delete()
            await gw.aclose()

    assert asyncio.run(run()) < 40  # behind those already being routed; it was 120th (or so)


def test_a_catalog_change_of_max_concurrency_reaches_the_queues_of_a_running_gateway(redis_url):
    async def run() -> tuple[int, int]:
        name, model = f"lib-{uuid.uuid4().hex[:6]}", "openai/gpt-4.1-mini"
        gw = await Gateway.create({"router_name": name}, redis_url=redis_url, backends={"*": Scripted()})
        ask = [{"role": "user", "content": "hi"}]
        try:
            await gw.complete(ask, model=model)
            before = gw.queues.snapshot()[model]["concurrency"]
            other = await AsyncSemanticRouter.from_existing(name, redis_url=redis_url)
            specs = [m.model_copy(update={"max_concurrency": 1}) if m.name == model else m for m in other.catalog]
            await other.update_catalog(ModelCatalog(models=specs))
            await other.close()
            await asyncio.sleep(1.1)  # a gateway checks for changes at most once a second
            await gw.complete(ask, model=model)
            return before, gw.queues.snapshot()[model]["concurrency"]
        finally:
            await gw.router.delete()
            await gw.aclose()

    assert asyncio.run(run()) == (128, 1)


def test_a_stream_left_early_is_closed_at_the_provider_before_its_slot_goes_to_the_next_request(redis_url):
    class Closing(Scripted):
        def __init__(self) -> None:
            super().__init__()
            self.events: list[str] = []

        async def complete(self, call: Call) -> dict[str, Any]:
            self.events.append("call")
            return await super().complete(call)

        async def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
            self.events.append("stream")
            try:
                for i in range(1000):
                    yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {"content": f"{i} "}}]}
            finally:
                await asyncio.sleep(0.05)  # a provider's connection takes a moment to close
                self.events.append("closed")

    async def run() -> list[str]:
        backend = Closing()
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "queue": {"concurrency": 1}}
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": backend})
        ask, model = [{"role": "user", "content": "hi"}], "openai/gpt-4.1-nano"
        try:
            stream = await gw.complete(ask, model=model, stream=True)
            async for _ in stream:
                break
            queued = asyncio.ensure_future(gw.complete(ask, model=model))  # waits for the one slot
            await asyncio.sleep(0.01)
            await stream.aclose()
            await queued
            return backend.events
        finally:
            await gw.router.delete()
            await gw.aclose()

    assert asyncio.run(run()) == ["stream", "closed", "call"]  # never two calls at once with a limit of one


class Flaky(Scripted):
    """A custom backend whose ``failing`` models fail; it counts every call per model."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()
        self.count: dict[str, int] = {}

    async def complete(self, call: Call) -> dict[str, Any]:
        self.count[call.model] = self.count.get(call.model, 0) + 1
        if call.model in self.failing:
            raise UpstreamError(f"{call.model}: down", retryable=True, upstream_status=503, reason="server")
        return await super().complete(call)


async def tripped(redis_url: str, **settings: Any) -> tuple[Gateway, Flaky, str]:
    """A gateway whose model ``m/flaky`` has just had its breaker opened (one failure opens it)."""
    backend, model = Flaky(), f"m/flaky-{uuid.uuid4().hex[:6]}"
    config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "breaker": {"failures": 1, "cooldown_s": 0.2}}
    gw = await Gateway.create(config | settings, redis_url=redis_url, backends={"*": backend})
    backend.failing.add(model)
    with contextlib.suppress(AllModelsFailedError):
        await gw.complete([{"role": "user", "content": "hi"}], model=model)
    await gw._writes.flush()
    return gw, backend, model


def test_a_trial_call_of_a_half_open_breaker_is_made_once_not_retried(redis_url):
    """A failed trial opens the breaker again; its retries were calls beside the next trial, counted by nobody."""

    async def run() -> int:
        gw, backend, model = await tripped(redis_url, retry={"attempts": 3, "initial_s": 0, "jitter_s": 0})
        try:
            calls = backend.count[model]
            await asyncio.sleep(0.3)  # half-open
            with pytest.raises(AllModelsFailedError):
                await gw.complete([{"role": "user", "content": "hi"}], model=model)
            return backend.count[model] - calls
        finally:
            await gw.router.delete()
            await gw.aclose()

    assert asyncio.run(run()) == 1


def test_the_request_right_after_a_successful_trial_is_served(redis_url):
    """The trial's outcome went out with the next batch of bookkeeping: the next request counted it still in flight."""

    async def run() -> list[str]:
        gw, backend, model = await tripped(redis_url, retry={"attempts": 1})
        answered = []
        try:
            for _ in range(5):
                await asyncio.sleep(0.3)  # half-open
                backend.failing.discard(model)
                for _ in range(2):  # the trial closes it; the next one goes straight through
                    answered.append((await gw.complete([{"role": "user", "content": "hi"}], model=model)).outcome.model)
                backend.failing.add(model)  # and open it again
                with contextlib.suppress(AllModelsFailedError):
                    await gw.complete([{"role": "user", "content": "hi"}], model=model)
                await gw._writes.flush()
            return answered
        finally:
            await gw.router.delete()
            await gw.aclose()

    answered = asyncio.run(run())
    assert len(answered) == 10 and len(set(answered)) == 1


def test_a_half_open_model_is_still_called_while_redis_refuses_writes():
    """The trial check writes: on a read-only Redis it failed, and with it every request the model could answer."""
    from redisvl_llmrouter.embedded import EmbeddedRedis, _free_port

    server = EmbeddedRedis().start()  # its own: it turns into a read-only replica
    store = redis.Redis.from_url(server.url)

    async def run() -> str | None:
        gw, backend, model = await tripped(server.url, retry={"attempts": 1})
        try:
            await asyncio.sleep(0.3)  # half-open
            backend.failing.discard(model)
            store.execute_command("REPLICAOF", "127.0.0.1", str(_free_port()))
            answer = await gw.complete([{"role": "user", "content": "hi"}], model=model)
            store.execute_command("REPLICAOF", "NO", "ONE")
            return answer.outcome.model
        finally:
            store.execute_command("REPLICAOF", "NO", "ONE")
            await gw.aclose()

    try:
        assert asyncio.run(run()) is not None
    finally:
        server.stop()


def test_a_cached_answer_expires_ttl_after_it_was_stored_however_often_it_is_hit(redis_url):
    async def run() -> list[str | None]:
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "cache": {"enabled": True, "ttl_s": 1}}
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": Scripted()})
        ask = [{"role": "user", "content": f"what is the capital of france? {uuid.uuid4().hex}"}]
        states = []
        try:
            for pause in (0.0, 0.2, 0.5, 0.6):  # stored at 0; hit at 0.2 and 0.7 s (never renewing its TTL); 1.3 s
                await asyncio.sleep(pause)
                states.append((await gw.complete(ask, temperature=0)).outcome.cache)
                await asyncio.sleep(0.05)  # the store happens behind the answer
            return states
        finally:
            await gw.cache.clear()
            await gw.router.delete()
            await gw.aclose()

    assert asyncio.run(run()) == ["miss", "hit", "hit", "miss"]


def test_feedback_on_a_cached_answer_is_logged_but_never_learned_as_the_models_outcome(redis_url):
    """A semantic hit serves an answer generated for another prompt: its rating is the cache's, not the model's."""

    async def run() -> tuple[dict[str, Any], dict[str, Any], int, int]:
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "cache": {"enabled": True}}
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": Scripted()})
        ask = [{"role": "user", "content": f"what is the capital of france? {uuid.uuid4().hex}"}]
        try:
            generated = await gw.complete(ask, temperature=0)
            await asyncio.sleep(0.2)  # the store happens behind the answer
            hit = await gw.complete(ask, temperature=0)
            assert (generated.outcome.cache, hit.outcome.cache) == ("miss", "hit")
            rows = (await gw.router.memory_info()).rows
            await asyncio.sleep(0.2)  # the hit's record (answered from the cache) is written behind it
            for model, error in ((123, InvalidFeedbackError), ("nobody/none", UnknownModelError)):
                with pytest.raises(error):  # checked as on any answer, though not learned
                    await gw.feedback(hit.outcome.request_id, 0.5, model=model)
            on_hit = await gw.feedback(hit.outcome.request_id, 0.0)
            # The library's feedback on the same request follows the same rule.
            direct = await gw.router.feedback(hit.outcome.request_id, quality=0.0)
            assert (direct.learned, direct.row_id, direct.created) == (False, None, False)
            after_hit = (await gw.router.memory_info()).rows
            on_answer = await gw.feedback(generated.outcome.request_id, 1.0)
            return on_hit, on_answer, after_hit - rows, (await gw.router.memory_info()).rows - rows
        finally:
            await gw.cache.clear()
            await gw.router.delete()
            await gw.aclose()

    on_hit, on_answer, learned_from_hit, learned_in_all = asyncio.run(run())
    assert (on_hit["learned"], on_hit["row_id"], learned_from_hit) == (False, None, 0)
    assert on_answer["learned"] and learned_in_all == 1  # the generated answer's own feedback is learned


def test_a_redis_user_that_may_not_run_scripts_is_refused_at_start(redis_url):
    """Breakers and statistics are Lua scripts: without them the gateway served, said it was healthy, and
    a failing model's breaker never opened."""
    import redis

    admin = redis.Redis.from_url(redis_url)
    name, user, secret = f"lib-{uuid.uuid4().hex[:6]}", f"u{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    admin.acl_setuser(user, enabled=True, passwords=[f"+{secret}"], keys=["*"], commands=["+@all", "-@scripting"])
    limited = f"redis://{user}:{secret}@{redis_url.split('://', 1)[1]}"

    async def run() -> None:
        gw = await Gateway.create({"router_name": name}, redis_url=redis_url, backends={"*": Scripted()})
        try:
            with pytest.raises(ConfigError, match="scripting") as caught:
                await Gateway.create({"router": name}, redis_url=limited, backends={"*": Scripted()})
            assert secret not in str(caught.value)
        finally:
            await gw.router.delete()
            await gw.aclose()

    try:
        asyncio.run(run())
    finally:
        admin.acl_deluser(user)


def test_a_gateway_warns_of_an_evicting_redis_and_writes_back_the_references_it_lost(redis_url, caplog):
    """allkeys-lru takes the reference hashes first (nothing reads them by key): routing went wrong silently."""
    import logging

    import redis

    admin = redis.Redis.from_url(redis_url)
    name = f"lib-{uuid.uuid4().hex[:6]}"

    async def run() -> tuple[int, int]:
        first = await Gateway.create({"router_name": name}, redis_url=redis_url, backends={"*": Scripted()})
        kept = len(admin.keys(f"{name}:simple:*"))
        admin.delete(*admin.keys(f"{name}:simple:*"))  # as an eviction would
        with caplog.at_level(logging.WARNING):
            second = await Gateway.create({"router": name}, redis_url=redis_url, backends={"*": Scripted()})
        try:
            return kept, len(admin.keys(f"{name}:simple:*"))
        finally:
            await second.aclose()
            await first.router.delete()
            await first.aclose()

    policy = admin.config_get("maxmemory-policy")["maxmemory-policy"]
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        kept, back = asyncio.run(run())
    finally:
        admin.config_set("maxmemory-policy", policy)
    assert kept > 0 and back == kept
    assert "maxmemory-policy is allkeys-lru" in caplog.text and "references were gone" in caplog.text


def test_feedback_below_forget_below_removes_the_cached_answer_it_rates(redis_url):
    """A bad rating on an answer the cache holds (given where it was generated or where it was served)
    removes it: the next such request goes to a model again. A good one, or one about another model, keeps it."""

    async def run() -> list[Any]:
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "cache": {"enabled": True}}
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": Scripted()})
        seen: list[Any] = []

        async def ask(prompt: list[dict[str, str]]) -> Any:
            done = await gw.complete(prompt, temperature=0)
            seen.append(done.outcome.cache)
            await asyncio.sleep(0.2)  # the store and the request's record happen behind the answer
            return done.outcome

        try:
            served = [{"role": "user", "content": f"what is the capital of france? {uuid.uuid4().hex}"}]
            generated = await ask(served)
            hit = await ask(served)
            other = next(m for m in gw.models() if m != hit.model)
            seen.append((await gw.feedback(generated.request_id, 0.9))["cache_forgotten"])
            seen.append((await gw.feedback(hit.request_id, 0.0, model=other))["cache_forgotten"])
            await ask(served)
            seen.append((await gw.feedback(hit.request_id, 0.2))["cache_forgotten"])
            await ask(served)
            at_source = [{"role": "user", "content": f"what is the capital of spain? {uuid.uuid4().hex}"}]
            generated = await ask(at_source)
            seen.append((await gw.feedback(generated.request_id, 0.0))["cache_forgotten"])
            await ask(at_source)
            return seen
        finally:
            await gw.cache.clear()
            await gw.router.delete()
            await gw.aclose()

    assert asyncio.run(run()) == ["miss", "hit", False, False, "hit", True, "miss", "miss", True, "miss"]


def test_feedback_on_a_passthrough_model_the_router_does_not_know_still_forgets_its_cached_answer(redis_url):
    """The answer of a model outside the catalog (passed through by name) took no feedback at all: a 400
    ``unknown_model`` although the client named no model, so a bad cached answer could not be removed."""

    async def run() -> tuple[dict[str, Any], str]:
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "cache": {"enabled": True}}
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": Scripted()})
        prompt = [{"role": "user", "content": f"what is the capital of peru? {uuid.uuid4().hex}"}]
        try:
            generated = await gw.complete(prompt, model="selfhosted/unlisted", temperature=0)
            await asyncio.sleep(0.2)  # the store and the request's record happen behind the answer
            result = await gw.feedback(generated.outcome.request_id, 0.1)
            with pytest.raises(UnknownModelError):  # naming a model the router does not know is still refused
                await gw.feedback(generated.outcome.request_id, 0.1, model="selfhosted/other")
            again = await gw.complete(prompt, model="selfhosted/unlisted", temperature=0)
            return result, again.outcome.cache
        finally:
            await gw.cache.clear()
            await gw.router.delete()
            await gw.aclose()

    result, cache = asyncio.run(run())
    assert (result["learned"], result["cache_forgotten"], result["model"]) == (False, True, "selfhosted/unlisted")
    assert cache == "miss"


class UsageLast(Scripted):
    """Streams a whole answer, then its usage a moment later, as providers end a stream."""

    async def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(call)
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {"content": "Paris"}}]}
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await asyncio.sleep(0.3)
        yield {"id": "x", "model": call.model, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 20}}


class FiltersFirst(Scripted):
    """Streams as Azure does: a first chunk without choices that carries the prompt's content filter results."""

    async def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        yield {"id": "", "model": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0}]}
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {"content": "Paris"}}]}
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        usage = {"prompt_tokens": 10, "completion_tokens": 20}
        yield {"id": "x", "model": call.model, "choices": [], "usage": usage, "provider": "OpenAI"}  # as OpenRouter


def test_a_chunk_without_choices_is_relayed_unless_it_carries_usage_nobody_asked_for(redis_url):
    """Every chunk without choices was held back unless the client asked for usage: Azure's content filter
    results too, which its clients read. The usage chunk stays held back, whatever else a provider adds
    to every chunk (OpenRouter's "provider")."""

    async def run() -> list[dict[str, Any]]:
        gw = await Gateway.create(
            {"router_name": f"lib-{uuid.uuid4().hex[:6]}"}, redis_url=redis_url, backends={"*": FiltersFirst()}
        )
        try:
            streamed = await gw.complete([{"role": "user", "content": "hi"}], model="azure/gpt-4.1", stream=True)
            return [chunk async for chunk in streamed]
        finally:
            await gw.router.delete()
            await gw.aclose()

    chunks = asyncio.run(run())
    assert chunks[0]["prompt_filter_results"] == [{"prompt_index": 0}]
    assert [c["choices"] for c in chunks[1:]] == [
        [{"index": 0, "delta": {"content": "Paris"}}],
        [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    ]  # and the usage chunk nobody asked for is not relayed


class FailsAfterFinish(Scripted):
    """Streams a whole answer, then fails instead of sending its usage."""

    async def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(call)
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {"content": "Paris"}}]}
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        raise ConnectionResetError("the provider hung up")


def test_a_provider_failing_after_the_whole_answer_leaves_the_answer_standing(redis_url):
    """The client has the answer: no error event after it, an answered request, a success for the model."""

    async def run() -> tuple[list[dict[str, Any]], Any, Any]:
        name = f"lib-{uuid.uuid4().hex[:6]}"
        gw = await Gateway.create({"router_name": name}, redis_url=redis_url, backends={"*": FailsAfterFinish()})
        try:
            model = f"fa{uuid.uuid4().hex[:6]}/own"  # its own live statistics: other tests' calls are not in them
            ask = [{"role": "user", "content": "explain garbage collection"}]
            stream = await gw.complete(ask, model=model, stream=True)
            chunks = [chunk async for chunk in stream]
            await gw._writes.flush()
            return chunks, stream.outcome, (await gw.router.live_stats([model]))[model]
        finally:
            await gw.router.delete()
            await gw.aclose()

    chunks, outcome, live = asyncio.run(run())
    assert [c["choices"][0].get("finish_reason") for c in chunks] == [None, "stop"]
    assert outcome.cost is None  # its usage never came
    assert (live.successes, live.failures, live.inflight) == (1, 0, 0)


def test_a_stream_closed_at_its_finish_reason_is_an_answer_billed_at_its_usage(redis_url):
    async def run() -> tuple[str, Any]:
        name = f"lib-{uuid.uuid4().hex[:6]}"
        gw = await Gateway.create({"router_name": name}, redis_url=redis_url, backends={"*": UsageLast()})
        try:
            stream = await gw.complete([{"role": "user", "content": "explain garbage collection"}], stream=True)
            text = ""
            async for chunk in stream:
                text += chunk["choices"][0]["delta"].get("content") or ""
                if chunk["choices"][0].get("finish_reason"):
                    break
            await stream.aclose()
            return text, stream.outcome
        finally:
            await gw.router.delete()
            await gw.aclose()

    text, outcome = asyncio.run(run())
    assert text == "Paris" and outcome.model == "anthropic/claude-sonnet-4-5"
    assert outcome.cost == pytest.approx((10 * 3 + 20 * 15) / 1e6)  # sonnet's prices, the provider's usage


class CutShort(Scripted):
    """Streams an answer cut at its token limit, as a provider reports it."""

    async def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(call)
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {"content": "Par"}}]}
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}


def test_a_streamed_answer_is_cached_with_the_providers_finish_reason(redis_url):
    async def run() -> tuple[dict[str, Any], list[str | None], int]:
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "cache": {"enabled": True}}
        backend = CutShort()
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": backend})
        ask = [{"role": "user", "content": f"what is the capital of france? {uuid.uuid4().hex}"}]
        try:
            async for _ in await gw.complete(ask, stream=True, temperature=0, max_tokens=1):
                pass
            await asyncio.sleep(0.2)  # the store happens behind the answer
            hit = await gw.complete(ask, temperature=0, max_tokens=1)
            assert hit.outcome.cache == "hit"
            replayed = [
                c["choices"][0].get("finish_reason")
                async for c in await gw.complete(ask, stream=True, temperature=0, max_tokens=1)
                if c.get("choices")
            ]
            return hit.body, replayed, len(backend.calls)
        finally:
            await gw.cache.clear()
            await gw.router.delete()
            await gw.aclose()

    body, replayed, calls = asyncio.run(run())
    assert body["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "Par", "refusal": None},  # OpenAI's shape, nulls included
        "logprobs": None,
        "finish_reason": "length",
    }
    assert replayed == [None, "length"] and calls == 1  # a cut answer is never passed off as complete


class PartsContent(Scripted):
    """Streams its content as a list of parts (as some reasoning models do), and a null choice."""

    async def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(call)
        thinking = [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}]
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {"content": thinking}}]}
        yield {"id": "x", "model": call.model, "choices": [None]}
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {"content": "Paris"}}]}
        yield {"id": "x", "model": call.model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield {"id": "x", "model": call.model, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 20}}


def test_a_stream_of_content_parts_is_relayed_whole_accounted_and_not_cached(redis_url):
    """Content as a list of parts crashed the relay after the last chunk: no [DONE], nothing logged."""

    async def run() -> tuple[list[dict[str, Any]], Any, str | None, int]:
        config = {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "cache": {"enabled": True}}
        backend = PartsContent()
        gw = await Gateway.create(config, redis_url=redis_url, backends={"*": backend})
        ask = [{"role": "user", "content": f"what is the capital of france? {uuid.uuid4().hex}"}]
        try:
            stream = await gw.complete(ask, stream=True, temperature=0)
            chunks = [chunk async for chunk in stream]
            await asyncio.sleep(0.2)  # a store would happen behind the answer
            again = await gw.complete(ask, stream=True, temperature=0)
            async for _ in again:
                pass
            return chunks, stream.outcome, again.outcome.cache, len(backend.calls)
        finally:
            await gw.cache.clear()
            await gw.router.delete()
            await gw.aclose()

    chunks, outcome, cache, calls = asyncio.run(run())
    assert len(chunks) == 4 and chunks[1]["choices"] == [None]  # every chunk passed on as it came
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (10, 20) and outcome.cost  # billed
    assert (cache, calls) == ("miss", 2)  # an answer the cache cannot replay as it came is not stored


def test_routers_with_other_vectors_share_the_redis_and_each_has_its_own_cache(redis_url):
    """One cache index for every router fixed the vector's size and type: a gateway of a float16 router
    could not start on a Redis where a default router's gateway had cached answers."""
    from redisvl_llmrouter import Route
    from redisvl_llmrouter.vectorizers import MiniLMVectorizer

    half = SemanticRouter(
        f"f16-{uuid.uuid4().hex[:6]}",
        routes=[Route(name="any", references=["hello there"], model="openai/gpt-4.1-nano", distance_threshold=1.5)],
        vectorizer=MiniLMVectorizer(dtype="float16"),
        redis_url=redis_url,
    )

    async def run() -> tuple[list[str | None], list[str]]:
        states, names = [], []
        for router in ("default", half.name):
            config = {"router": router, "router_name": f"lib-{uuid.uuid4().hex[:6]}" if router == "default" else None}
            gw = await Gateway.create(
                {**config, "cache": {"enabled": True}}, redis_url=redis_url, backends={"*": Scripted()}
            )
            ask = [{"role": "user", "content": f"hello there {uuid.uuid4().hex}"}]
            try:
                await gw.complete(ask, temperature=0)
                await asyncio.sleep(0.2)  # the store happens behind the answer
                states.append((await gw.complete(ask, temperature=0)).outcome.cache)
                names.append(gw.cache.name)
            finally:
                await gw.cache.clear()
                if router == "default":
                    await gw.router.delete()
                await gw.aclose()
        return states, names

    try:
        states, names = asyncio.run(run())
    finally:
        half.delete()
    assert states == ["hit", "hit"]
    assert names == ["llmrouter:cache", "llmrouter:answers:float16-384"]


def test_a_request_s_own_short_timeout_is_not_the_model_s_failure_but_the_upstream_s_is(redis_url, local_upstream):
    """Counted, a client sending timeout=0.000001 opened every model's breaker for every client on the Redis."""
    model = f"dl{uuid.uuid4().hex[:6]}/hangs"
    local_upstream.control(model=model, hang_s=2)
    upstreams = [{"api_base": local_upstream.url, "strip_provider": False, "timeout_s": 0.4}]
    config = {"upstreams": upstreams, "breaker": {"failures": 2, "cooldown_s": 60}, "retry": {"attempts": 1}}
    store = redis.Redis.from_url(redis_url)

    async def run() -> tuple[Any, Any, bytes | None, bytes | None]:
        gw = await Gateway.create({**config, "router_name": f"lib-{uuid.uuid4().hex[:6]}"}, redis_url=redis_url)
        breaker = f"llmrouter:breaker:{{{model}}}"
        try:
            for stream in (False, True, False, True):  # the request's own deadline, shorter than the upstream's
                with pytest.raises(AllModelsFailedError, match=": timeout"):
                    await gw.complete([{"role": "user", "content": "hi"}], model=model, stream=stream, timeout=0.1)
            # ... also between a stream's chunks: the first comes at once, the next after 1.5 s
            local_upstream.control(model=model, hang_s=0, chunk_delay_ms=1500)
            stream = await gw.complete([{"role": "user", "content": "a b c"}], model=model, stream=True, timeout=0.1)
            with pytest.raises(UpstreamError, match="in time"):
                async for _ in stream:
                    pass
            local_upstream.control(model=model, hang_s=2, chunk_delay_ms=0)
            await gw._writes.flush()
            own = (await gw.router.live_stats([model]))[model]
            closed = store.hget(breaker, "state")
            for _ in range(2):  # the upstream's own limit: the model did not answer in the time it is given
                with pytest.raises(AllModelsFailedError, match=": timeout"):
                    await gw.complete([{"role": "user", "content": "hi"}], model=model)
            await gw._writes.flush()
            return own, (await gw.router.live_stats([model]))[model], closed, store.hget(breaker, "state")
        finally:
            await gw.router.delete()
            await gw.aclose()

    own, upstreams_own, closed, opened = asyncio.run(run())
    assert (own.failures, own.inflight) == (0, 0) and closed in (None, b"closed")
    assert upstreams_own.failures == 2 and opened == b"open"


def test_an_operation_can_run_its_own_steps_off_the_event_loop(redis_url):
    """A report's parsing and summarising (0.6 s on a busy log) ran on the event loop: every request waited."""
    import threading

    from redisvl_llmrouter.aio import adrive
    from redisvl_llmrouter.connection import async_client
    from redisvl_llmrouter.core import Command

    def op():
        threads = [threading.get_ident()]
        pong = yield Command(("PING",))
        threads.append(threading.get_ident())
        return pong, threads

    async def run() -> tuple[Any, list[int], int]:
        client = async_client(redis_url=redis_url)
        try:
            pong, threads = await adrive(op(), client, offload=True)
            return pong, threads, threading.get_ident()
        finally:
            await client.aclose()

    pong, threads, loop_thread = asyncio.run(run())
    assert pong is True and loop_thread not in threads


def test_the_sync_wrapper(redis_url, local_upstream):
    name = f"lib-{uuid.uuid4().hex[:6]}"
    with SyncGateway({"router_name": name, "upstream_url": local_upstream.url}, redis_url=redis_url) as gw:
        answer = gw.complete([{"role": "user", "content": "hello, how are you?"}])
        assert answer.outcome.model == "openai/gpt-4.1-nano" and answer.outcome.request_id.startswith("req-")
        assert gw.route([{"role": "user", "content": "prove Fermat's last theorem"}]).name == "expert"
        assert gw.stats()["models"]["openai/gpt-4.1-nano"]["requests"] >= 1
        assert gw.feedback(answer.outcome.request_id, 0.8, latency_ms=120.0)["quality"] == 0.8
        deadline = time.monotonic() + 5  # the log is written behind the answers
        while len(newest := [d["request_id"] for d in gw.recent_decisions(2)]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert newest[1] == answer.outcome.request_id  # the route's decision, then the answer, as the async gateway has
        assert gw.report().total.requests == 1
    with pytest.raises(GatewayClosedError, match="closed"):
        gw.complete([{"role": "user", "content": "hello"}])
    SemanticRouter.from_existing(name, redis_url=redis_url).delete()


def test_closing_a_sync_gateway_lets_the_calls_under_way_end_and_cuts_off_those_that_outlast_its_timeout(
    redis_url, local_upstream
):
    """Threads inside ``complete()`` when another closes the gateway: a call that ends within
    ``shutdown_timeout_s`` is answered, one that outlasts it raises GatewayClosedError; none waits for
    ever on the stopped loop (they did: close() stopped the loop under them)."""
    quick, stuck = f"q{uuid.uuid4().hex[:6]}/m", f"s{uuid.uuid4().hex[:6]}/m"
    local_upstream.control(model=quick, latency_ms=500)
    local_upstream.control(model=stuck, hang_s=60)
    name = f"lib-{uuid.uuid4().hex[:6]}"
    config = {"router_name": name, "upstream_url": local_upstream.url, "shutdown_timeout_s": 2}
    gw = SyncGateway(config, redis_url=redis_url)
    results: dict[str, Any] = {}

    def call(model: str) -> None:
        try:
            results[model] = gw.complete([{"role": "user", "content": "hi"}], model=model).outcome.model
        except Exception as exc:
            results[model] = exc

    threads = [threading.Thread(target=call, args=(m,), daemon=True) for m in (quick, stuck)]
    for thread in threads:
        thread.start()
    while local_upstream.calls(quick) + local_upstream.calls(stuck) < 2:
        time.sleep(0.02)
    started = time.monotonic()
    gw.close()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert results[quick] == quick
    assert isinstance(results[stuck], GatewayClosedError) and "closed before the call ended" in str(results[stuck])
    assert 1.5 < time.monotonic() - started < 8
    SemanticRouter.from_existing(name, redis_url=redis_url).delete()


def test_a_sync_gateway_closed_from_two_threads_at_once_is_closed_when_either_returns(redis_url, local_upstream):
    """The second close() returned at once, while the first was still writing the last answers' bookkeeping."""
    name = f"lib-{uuid.uuid4().hex[:6]}"
    gw = SyncGateway({"router_name": name, "upstream_url": local_upstream.url}, redis_url=redis_url)
    gw.complete([{"role": "user", "content": "hi"}])
    both = threading.Barrier(2)
    closed: list[bool] = []

    def close() -> None:
        both.wait()
        gw.close()
        closed.append(gw._loop.is_closed())

    threads = [threading.Thread(target=close) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert closed == [True, True]
    SemanticRouter.from_existing(name, redis_url=redis_url).delete()


def test_closing_a_sync_gateway_on_its_own_loop_is_refused_at_once(redis_url, local_upstream):
    """From its loop (a custom backend, say) close() would wait for itself: it hung 10 s, then failed."""
    name = f"lib-{uuid.uuid4().hex[:6]}"
    gw = SyncGateway({"router_name": name, "upstream_url": local_upstream.url}, redis_url=redis_url)

    async def close_on_the_loop() -> BaseException | None:
        try:
            gw.close()
        except GatewayLoopError as exc:
            return exc
        return None

    started = time.monotonic()
    error = asyncio.run_coroutine_threadsafe(close_on_the_loop(), gw._loop).result(timeout=30)
    assert isinstance(error, GatewayLoopError) and time.monotonic() - started < 2
    assert gw.route([{"role": "user", "content": "hello"}]).name  # still open
    gw.close()
    SemanticRouter.from_existing(name, redis_url=redis_url).delete()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_sync_gateway_used_in_a_forked_child_says_so_instead_of_waiting_for_ever(redis_url, local_upstream):
    """The gunicorn --preload pattern: the parent's gateway in a forked child has no loop thread."""
    name = f"lib-{uuid.uuid4().hex[:6]}"
    with SyncGateway({"router_name": name, "upstream_url": local_upstream.url}, redis_url=redis_url) as gw:
        gw.route([{"role": "user", "content": "hello"}])
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report the error's type, or be killed by the alarm if the call hangs
            signal.alarm(20)
            try:
                gw.route([{"role": "user", "content": "hello"}])
                os.write(write, b"answered")
            except Exception as exc:
                os.write(write, type(exc).__name__.encode())
            os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        said = os.read(read, 100).decode()
        os.close(read)
        assert gw.route([{"role": "user", "content": "hello"}]).name  # the parent's is untouched
    assert os.WIFEXITED(status) and said == "GatewayLoopError", (status, said)
    SemanticRouter.from_existing(name, redis_url=redis_url).delete()


def test_a_program_that_never_closes_its_sync_gateway_still_writes_every_answers_bookkeeping(redis_url, local_upstream):
    model = f"nc{uuid.uuid4().hex[:6]}/m"
    script = (
        "import sys, uuid\n"
        "from redisvl_llmrouter.gateway import SyncGateway\n"
        "g = SyncGateway({'router_name': sys.argv[3], 'upstream_url': sys.argv[2]}, redis_url=sys.argv[1])\n"
        "for _ in range(5):\n"
        "    g.complete([{'role': 'user', 'content': 'hi'}], model=sys.argv[4])\n"
    )  # ends without close(): the last answers' statistics are still in the write-behind queue
    name = f"lib-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        [sys.executable, "-c", script, redis_url, local_upstream.url, name, model], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    with SemanticRouter.from_existing(name, redis_url=redis_url) as router:
        stats = router.live_stats([model])[model]
        router.delete()
    assert (stats.successes, stats.inflight) == (5, 0)


def litellm_config(api_base: str) -> dict[str, Any]:
    """A gateway whose ``openai/*`` models go through LiteLLM to ``api_base``."""
    upstream = {"name": "via-litellm", "backend": "litellm", "api_base": api_base, "api_key": "none"}
    return {"router_name": f"lib-{uuid.uuid4().hex[:6]}", "upstreams": [{**upstream, "models": ["openai/*"]}]}


def test_litellm_is_a_backend_too(redis_url, local_upstream):
    async def run() -> Any:
        gw = await Gateway.create(litellm_config(local_upstream.url), redis_url=redis_url)
        try:
            return await gw.complete([{"role": "user", "content": "hi"}], model="openai/litellm-check")
        finally:
            await gw.router.delete()
            await gw.aclose()

    answer = asyncio.run(run())
    # LiteLLM sends "openai/litellm-check" to an OpenAI-compatible base as "litellm-check".
    assert answer.body["choices"][0]["message"]["content"] == "[litellm-check] hi"
    assert local_upstream.calls("litellm-check") == 1


def test_a_name_no_upstream_serves_and_litellm_cannot_place_is_model_not_found(redis_url, capfd):
    async def run() -> BaseException:
        gw = await Gateway.create({"router_name": f"lib-{uuid.uuid4().hex[:6]}"}, redis_url=redis_url)
        try:
            with pytest.raises(ModelNotFoundError) as caught:
                await gw.complete([{"role": "user", "content": "hi"}], model="nonsense-model")
            return caught.value
        finally:
            await gw.router.delete()
            await gw.aclose()

    error = asyncio.run(run())
    assert error.status == 404 and "provider prefix" in str(error)  # not a 400 from LiteLLM's own refusal
    assert "Provider List" not in capfd.readouterr().out  # nor LiteLLM's notice on the server's stdout


def test_a_request_never_sets_litellms_own_settings(redis_url, local_upstream):
    """LiteLLM takes api_base, api_key, mock_response... as keywords: from a request they stay body fields,
    so a client can neither send the provider key to its own server nor fake an answer."""
    hijack = {"api_base": "http://127.0.0.1:9/v1", "api_key": "client-key", "mock_response": "faked"}

    async def run() -> Any:
        gw = await Gateway.create(litellm_config(local_upstream.url), redis_url=redis_url)
        try:
            return await gw.complete(
                [{"role": "user", "content": "hi"}], model="openai/litellm-own", seed=7, custom_field=1, **hijack
            )
        finally:
            await gw.router.delete()
            await gw.aclose()

    answer = asyncio.run(run())
    assert answer.body["choices"][0]["message"]["content"] == "[litellm-own] hi"  # from the configured upstream
    last = httpx.get(f"{local_upstream.root}/control", timeout=5).json()["last"]["litellm-own"]["body"]
    assert last["seed"] == 7 and last["custom_field"] == 1  # OpenAI's parameters, and the rest in the body
    assert {k: last.get(k) for k in hijack} == hijack


def test_two_workers_share_one_redis(redis_url, local_upstream, tmp_path):
    with gateway(redis_url, local_upstream.url, tmp_path, workers=2) as srv:
        with openai.OpenAI(base_url=srv.v1, api_key="none", max_retries=0) as c:
            models = {
                c.chat.completions.create(model="auto", messages=[{"role": "user", "content": f"hi {i}"}]).model
                for i in range(20)
            }
            c.chat.completions.create(model="extra/passed-through", messages=[{"role": "user", "content": "hi"}])
        assert models == {"openai/gpt-4.1-nano"}
        stats = srv.get("/stats").json()  # any worker: the counts live in Redis
        assert stats["models"]["openai/gpt-4.1-nano"]["requests"] >= 20
        # Whichever worker answers lists the passthrough model the other may have served (once the
        # write-behind has sent it, a few milliseconds after the answer).
        deadline = time.monotonic() + 5
        while srv.get("/stats").json()["models"].get("extra/passed-through", {}).get("successes") != 1:
            assert time.monotonic() < deadline, "the passthrough model never showed in /stats"
            time.sleep(0.05)
        for _ in range(6):
            assert srv.get("/stats").json()["models"]["extra/passed-through"]["successes"] == 1
        assert "llmrouter_requests_total" in srv.get("/metrics").text
        srv.proc.kill()  # kill -9 of `llmrouter serve`: its workers must not live on, holding the port
        srv.proc.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                srv.get("/health")
            except (
                httpx.ConnectError,
                httpx.ReadError,
                httpx.RemoteProtocolError,
            ):  # refused, or reset by a dying worker
                break
            time.sleep(0.2)
        else:
            pytest.fail("the workers still answer 20 s after their serve process was killed")


def test_metrics_gauges_count_live_workers_only(redis_url, tmp_path):
    """Calls in flight on workers that were killed stop counting once the supervisor replaces them."""
    import psutil

    model = "openai/gpt-4.1-nano"
    with upstream() as slow, gateway(redis_url, slow.url, tmp_path, workers=2) as srv:
        slow.control(model=model, latency_ms=8_000)  # long enough to kill the workers mid-call

        def active() -> float:
            lines = srv.get("/metrics").text.splitlines()
            return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("llmrouter_queue_active{"))

        def eventually(check: Any, what: str) -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if check():
                        return
                time.sleep(0.2)
            pytest.fail(what)

        body = {"model": model, "messages": [{"role": "user", "content": "slow"}]}
        with ThreadPoolExecutor(4) as pool:
            calls = [pool.submit(httpx.post, f"{srv.v1}/chat/completions", json=body, timeout=90) for _ in range(4)]
            eventually(lambda: active() == 4, "four calls never showed as in flight")
            workers = [
                p for p in psutil.Process(srv.proc.pid).children() if "resource_tracker" not in " ".join(p.cmdline())
            ]
            assert len(workers) == 2
            for worker in workers:
                worker.kill()
            for call in calls:  # every call was on a killed worker: each ends with a dropped connection
                with pytest.raises(httpx.HTTPError):
                    call.result(timeout=60)
        eventually(lambda: srv.get("/health").status_code == 200, "the supervisor did not replace its workers")
        eventually(lambda: active() == 0, f"the killed workers' calls still count as in flight: {active()}")


def test_bookkeeping_that_timed_out_on_a_frozen_redis_is_not_sent_twice():
    # Re-sent after the read timeout, the batch ran twice once Redis woke: one answer, two log entries,
    # two requests in the model's statistics (and a breaker's failures counted twice).
    import os
    import signal

    import redis

    from redisvl_llmrouter.embedded import EmbeddedRedis
    from redisvl_llmrouter.observability.decisions import parse_entries, stream_key
    from redisvl_llmrouter.policy.stats import stats_key

    server = EmbeddedRedis().start()
    url = f"{server.url}/0?socket_timeout=0.5"
    name, model = f"lib-{uuid.uuid4().hex[:6]}", f"frozen/{uuid.uuid4().hex[:6]}"

    async def run() -> str:
        backend = Held()
        gw = await Gateway.create({"router_name": name}, redis_url=url, backends={"*": backend})
        try:
            backend.release.set()
            await gw.complete([{"role": "user", "content": "hi"}], model=model)  # Redis knows the scripts now
            await gw._writes.flush()
            backend.called.clear()
            backend.release.clear()
            asking = asyncio.ensure_future(gw.complete([{"role": "user", "content": "hi"}], model=model))
            await backend.called.wait()
            os.kill(server.server_pid, signal.SIGSTOP)  # frozen while the provider answers
            try:
                backend.release.set()
                answer = await asking
                await asyncio.sleep(1.5)  # the bookkeeping is sent and times out
            finally:
                os.kill(server.server_pid, signal.SIGCONT)
            await asyncio.sleep(1.0)  # any resend would go now
            return answer.outcome.request_id
        finally:
            await gw.aclose()

    try:
        request_id = asyncio.run(run())
        client = redis.Redis.from_url(server.url, decode_responses=True)
        logged = [e for e in parse_entries(client.xrange(stream_key(name))) if e.get("request_id") == request_id]
        # Sent once: Redis may run it when it wakes, or not (the client closed the connection meanwhile),
        # never twice. Before the fix the resend made it 2 and 3.
        assert len(logged) <= 1
        assert int(client.hget(stats_key(model), "requests") or 0) <= 2  # the first request's, and this one's
    finally:
        server.stop()


def _backend_twins(api_base: str, dead_base: str) -> dict[str, Any]:
    """``openai/L-*`` through LiteLLM and ``O-*`` through the OpenAI backend, both to ``api_base`` (which sees
    ``L-...`` and ``O-...``); ``dead/*`` through each to a port nothing listens on."""
    litellm = {"backend": "litellm", "api_key": "none", "timeout_s": 1.0}
    return {
        "router_name": f"lib-{uuid.uuid4().hex[:6]}",
        "upstreams": [
            {**litellm, "name": "via-litellm", "api_base": api_base, "models": ["openai/L-*"]},
            {**litellm, "name": "dead-litellm", "api_base": dead_base, "models": ["openai/dead-*"]},
            {"name": "direct", "api_base": api_base, "models": ["O-*"], "strip_provider": False, "timeout_s": 1.0},
            {"name": "dead", "api_base": dead_base, "models": ["dead-*"], "strip_provider": False},
        ],
        "retry": {"attempts": 1},
        "breaker": {"failures": 50},
    }


#: Faults of the local upstream, each programmed for one model name (see ``llmrouter upstream``).
PROVIDER_FAULTS = {
    "refusal": {"fail": 1, "status": 400, "message": "This model's maximum context length is 8192 tokens",
                "code": "context_length_exceeded", "param": "messages"},
    "rate limit": {"fail": 1, "status": 429, "retry_after": 30},
    "server error": {"fail": 1, "status": 503},
    "a status LiteLLM has no class for": {"fail": 1, "status": 529, "message": "Overloaded"},
    "the provider refusing the key": {"fail": 1, "status": 403, "message": "key not allowed"},
    "no answer in time": {"hang_s": 3, "slow": 1},
    "an error event mid-stream": {"break_stream": 1},
}  # fmt: skip


@pytest.mark.parametrize("fault", [*PROVIDER_FAULTS, "refused connection"])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_provider_failure_through_litellm_is_told_as_through_the_openai_backend(
    redis_url, local_upstream, fault, stream
):
    """LiteLLM wraps the provider's words in its class names, calls a refused connection a 500, keeps
    Retry-After where the openai SDK does not, and wraps a stream's timeout in a 408 'fallback' error: the
    client, the retry and the breaker saw LiteLLM's story, not the provider's."""
    if fault == "an error event mid-stream" and not stream:
        pytest.skip("a stream's fault")
    tag = uuid.uuid4().hex[:6]
    if fault == "refused connection":
        names = {"litellm": f"openai/dead-{tag}", "openai": f"dead-{tag}"}
    else:
        names = {"litellm": f"openai/L-{tag}", "openai": f"O-{tag}"}
        for sent in (f"L-{tag}", f"O-{tag}"):
            local_upstream.control(model=sent, **PROVIDER_FAULTS[fault])

    async def told(gw: Gateway, model: str) -> dict[str, Any]:
        try:
            answer = await gw.complete([{"role": "user", "content": "a b c"}], model=model, stream=stream)
            if stream:
                async for _ in answer:
                    pass
        except GatewayError as exc:
            attempt = exc.attempts[-1] if isinstance(exc, AllModelsFailedError) else {}
            return {
                "error": type(exc).__name__,
                "status": exc.status,
                "code": exc.code,
                "param": exc.param,
                "retry_after": exc.retry_after,
                "reason": attempt.get("error", getattr(exc, "reason", None)),
                "upstream status": attempt.get("status", getattr(exc, "upstream_status", None)),
                "says": str(exc).split(": ")[-1].replace(model.removeprefix("openai/"), "MODEL"),
            }
        raise AssertionError(f"{model} answered")

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        gw = await Gateway.create(_backend_twins(local_upstream.url, f"http://127.0.0.1:{free_port()}/v1"),
                                  redis_url=redis_url)  # fmt: skip
        try:
            return await told(gw, names["litellm"]), await told(gw, names["openai"])
        finally:
            await gw.router.delete()
            await gw.aclose()

    through_litellm, through_openai = asyncio.run(run())
    assert through_litellm == through_openai
    assert "litellm" not in str(through_litellm).lower()


def test_what_litellm_refuses_to_send_is_the_client_s_400_never_the_model_s_failure(redis_url, local_upstream):
    """LiteLLM refuses some requests before sending anything: a parameter the model does not take (an
    UnsupportedParamsError, which it builds without the body the gateway read: AttributeError, 502) or a
    content part it cannot translate (raised as a *connection* error: retried, 502). Each opened the
    breaker of a model that was never called."""
    tag = uuid.uuid4().hex[:6]
    o3, plain = "openai/o3", f"openai/L-{tag}"  # LiteLLM knows o-series models by their exact names
    config = {**litellm_config(local_upstream.url), "breaker": {"failures": 2, "cooldown_s": 60}}
    requests = [
        (o3, [{"role": "user", "content": "hi"}], {"temperature": 0.5}, "temperature"),
        (plain, [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}], {}, "Invalid user message"),
    ]

    async def run() -> tuple[list[GatewayError], dict[str, Any], dict[str, Any]]:
        gw = await Gateway.create(config, redis_url=redis_url)
        errors = []
        try:
            before = await gw.router.live_stats([o3, plain])
            for model, messages, params, _ in requests:
                for stream in (False, True, False):
                    with pytest.raises(GatewayError) as caught:
                        await gw.complete(messages, model=model, stream=stream, **params)
                    errors.append(caught.value)
            await gw._writes.flush()
            return errors, before, await gw.router.live_stats([o3, plain])
        finally:
            await gw.router.delete()
            await gw.aclose()

    errors, before, after = asyncio.run(run())
    for (_, _, _, says), told in zip(requests, [errors[:3], errors[3:]], strict=True):
        for error in told:
            assert (error.status, error.kind) == (400, "invalid_request_error"), str(error)
            assert says in str(error) and "LiteLLM cannot send this request" in str(error)
            assert "drop_params" not in str(error)  # LiteLLM's advice to the gateway's operator
    assert [(s.failures, s.inflight) for s in after.values()] == [(s.failures, 0) for s in before.values()]
    assert local_upstream.calls("o3") == local_upstream.calls(f"L-{tag}") == 0


def test_a_litellm_stream_of_several_choices_is_whole_and_metadata_reaches_the_provider(redis_url, local_upstream):
    """LiteLLM passes on the first choice's finish_reason only: a stream with n=2 ended in 'the provider's
    stream ended before the answer finished', counted against the model. And it takes ``metadata`` as its
    own logging keyword: the provider never saw it."""
    tag = uuid.uuid4().hex[:6]
    model = f"openai/L-{tag}"

    async def run() -> tuple[list[dict[str, Any]], Any]:
        gw = await Gateway.create(litellm_config(local_upstream.url), redis_url=redis_url)
        try:
            stream = await gw.complete(
                [{"role": "user", "content": "one two"}], model=model, stream=True, n=2, metadata={"team": "a"}
            )
            chunks = [chunk async for chunk in stream]
            await gw._writes.flush()
            return chunks, (await gw.router.live_stats([model]))[model]
        finally:
            await gw.router.delete()
            await gw.aclose()

    chunks, stats = asyncio.run(run())
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.get("choices", []):
            texts[choice["index"]] = texts.get(choice["index"], "") + (choice.get("delta", {}).get("content") or "")
    assert texts == {0: f"[L-{tag}] one two", 1: f"[L-{tag}] one two"}
    assert (stats.successes, stats.failures) == (1, 0)
    last = httpx.get(f"{local_upstream.root}/control", timeout=5).json()["last"][f"L-{tag}"]["body"]
    assert last["metadata"] == {"team": "a"}


def test_a_routed_model_no_upstream_serves_is_a_failed_attempt_and_the_walk_goes_on(redis_url, local_upstream):
    """A fallback the route names but no upstream serves raised out of the walk: the models after it were
    never tried, the earlier attempts were dropped from the error, and nothing was logged."""
    from redisvl_llmrouter import Route

    tag = uuid.uuid4().hex[:6]
    failing, nowhere, serving = f"F-{tag}", f"nowhere-{tag}", f"S-{tag}"
    router = SemanticRouter(
        f"walk-{tag}",
        routes=[Route(name="any", references=["hello there"], models=[failing, nowhere, serving], distance_threshold=1.5)],
        redis_url=redis_url,
    )  # fmt: skip
    upstreams = [{"api_base": local_upstream.url, "models": ["F-*", "S-*"], "strip_provider": False}]
    local_upstream.control(model=failing, fail=5, status=500)

    async def run() -> Any:
        gw = await Gateway.create(
            {"router": router.name, "upstreams": upstreams, "retry": {"attempts": 1}}, redis_url=redis_url
        )
        try:
            answer = await gw.complete([{"role": "user", "content": "hello there"}])
            await gw._writes.flush()
            return answer, await gw.recent_decisions(1)
        finally:
            await gw.aclose()

    try:
        answer, (logged,) = asyncio.run(run())
    finally:
        router.delete()
    assert answer.outcome.model == serving
    assert [(a["model"], a.get("error")) for a in answer.outcome.attempts] == [
        (failing, "server"), (nowhere, "no_upstream"), (serving, None)
    ]  # fmt: skip
    assert "No upstream serves model" in answer.outcome.attempts[1]["message"]
    assert logged["model"] == serving and logged["attempts"] == 2  # provider calls: the one it skipped is none


def test_a_walk_of_rate_limits_and_models_no_upstream_serves_is_still_a_429(redis_url, local_upstream):
    from redisvl_llmrouter import Route

    tag = uuid.uuid4().hex[:6]
    limited, nowhere = f"F-{tag}", f"nowhere-{tag}"
    router = SemanticRouter(
        f"walk-{tag}",
        routes=[Route(name="any", references=["hello there"], models=[limited, nowhere], distance_threshold=1.5)],
        redis_url=redis_url,
    )
    upstreams = [{"api_base": local_upstream.url, "models": ["F-*"], "strip_provider": False}]
    local_upstream.control(model=limited, fail=5, status=429, retry_after=7)

    async def run() -> GatewayError:
        gw = await Gateway.create(
            {"router": router.name, "upstreams": upstreams, "retry": {"attempts": 1}}, redis_url=redis_url
        )
        try:
            with pytest.raises(GatewayError) as caught:
                await gw.complete([{"role": "user", "content": "hello there"}])
            return caught.value
        finally:
            await gw.aclose()

    try:
        error = asyncio.run(run())
    finally:
        router.delete()
    assert (error.status, error.code, error.retry_after) == (429, "rate_limited", 7.0)


def test_a_gateway_whose_providers_have_no_key_says_so_when_it_starts(redis_url, monkeypatch, caplog):
    """Started without --upstream and without provider keys, it started silently and every call was refused."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-placeholder-key")

    async def run() -> None:
        gw = await Gateway.create({"router_name": f"lib-{uuid.uuid4().hex[:6]}"}, redis_url=redis_url)
        await gw.router.delete()
        await gw.aclose()

    with caplog.at_level(logging.WARNING, logger="redisvl_llmrouter.gateway.service"):
        asyncio.run(run())
    warnings = [r.getMessage() for r in caplog.records if "is not set" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("$OPENAI_API_KEY is not set: calls to openai/")
    assert "anthropic/" not in warnings[0] and "placeholder" not in caplog.text


def test_a_litellm_stream_of_a_200_that_is_no_stream_is_a_failed_call_never_an_empty_answer(redis_url, local_upstream):
    """LiteLLM turns a 200 that is no event stream (a proxy's HTML, cut JSON) into one empty chunk saying
    "stop": relayed as a whole, empty answer, counted a success, and cached for the next client."""
    tag = uuid.uuid4().hex[:6]
    model = f"openai/L-{tag}"
    local_upstream.control(model=f"L-{tag}", cut_json=1)
    config = {**litellm_config(local_upstream.url), "retry": {"attempts": 1}, "cache": {"enabled": True}}

    async def run() -> tuple[BaseException, list[dict[str, Any]], Any]:
        gw = await Gateway.create(config, redis_url=redis_url)
        ask = [{"role": "user", "content": f"what is {tag}?"}]
        try:
            with pytest.raises(GatewayError) as caught:
                stream = await gw.complete(ask, model=model, stream=True, temperature=0)
                async for _ in stream:
                    pass
            await asyncio.sleep(0.2)  # a cache store happens behind the answer
            again = await gw.complete(ask, model=model, stream=True, temperature=0)
            chunks = [chunk async for chunk in again]
            await gw._writes.flush()
            return caught.value, chunks, (await gw.router.live_stats([model]))[model]
        finally:
            await gw.cache.clear()
            await gw.router.delete()
            await gw.aclose()

    error, chunks, stats = asyncio.run(run())
    assert isinstance(error, AllModelsFailedError) and "carried no answer" in error.attempts[0]["message"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == f"[L-{tag}] what is {tag}?"  # from the provider: nothing was cached from the failure
    assert (stats.failures, stats.successes) == (1, 1)

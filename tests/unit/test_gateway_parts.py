"""The gateway's pure parts: the breaker rule, priority admission, accounting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import httpx
import pytest

from redisvl_llmrouter.errors import InvalidRequestError, QueueFullError
from redisvl_llmrouter.gateway import breaker
from redisvl_llmrouter.gateway.accounting import Usage, baseline_model, cost_of, usage_of
from redisvl_llmrouter.gateway.backends import (
    _error_message,
    litellm_error,
    provider_message,
    status_error,
    upstream_error,
)
from redisvl_llmrouter.gateway.breaker import BreakerState, state_at, transition
from redisvl_llmrouter.gateway.cache import cacheable, scope_of
from redisvl_llmrouter.gateway.config import CacheConfig
from redisvl_llmrouter.gateway.queue import ModelQueue, priority_rank
from redisvl_llmrouter.policy.catalog import ModelCatalog, ModelSpec
from redisvl_llmrouter.request_text import routing_text

RULE = {"failures": 3, "successes": 2, "cooldown_ms": 1_000}


def run(state: BreakerState, outcomes: str, now_ms: int = 0) -> BreakerState:
    for mark in outcomes:
        state = transition(state, mark == "+", now_ms, **RULE)
    return state


class TestBreaker:
    def test_opens_after_n_consecutive_failures_and_counts_the_trip(self):
        assert run(BreakerState(), "--").state == "closed"
        opened = run(BreakerState(), "---", now_ms=50)
        assert (opened.state, opened.opened_ms, opened.trips) == ("open", 50, 1)

    def test_a_success_resets_the_failure_count(self):
        assert run(BreakerState(), "--+--").state == "closed"

    def test_open_turns_half_open_after_the_cooldown_only(self):
        opened = run(BreakerState(), "---", now_ms=0)
        assert state_at(opened, 999, RULE["cooldown_ms"]).state == "open"
        assert state_at(opened, 1_000, RULE["cooldown_ms"]).state == "half_open"

    def test_outcomes_while_open_count_for_nothing(self):
        opened = run(BreakerState(), "---", now_ms=0)
        assert run(opened, "+++", now_ms=10) == opened

    def test_half_open_closes_after_m_successes_and_reopens_on_one_failure(self):
        opened = run(BreakerState(), "---", now_ms=0)
        assert run(opened, "+", now_ms=2_000).state == "half_open"
        closed = run(opened, "++", now_ms=2_000)
        assert (closed.state, closed.trips) == ("closed", 1)
        reopened = run(opened, "+-", now_ms=2_000)
        assert (reopened.state, reopened.opened_ms, reopened.trips) == ("open", 2_000, 2)

    def test_half_open_admits_only_as_many_calls_at_once_as_successes_close_it(self):
        opened = run(BreakerState(), "---", now_ms=0)
        cooldown, probes = RULE["cooldown_ms"], RULE["successes"]
        assert not breaker.admits(opened, 999, cooldown, in_flight=0, probes=probes)  # open: nothing
        assert breaker.admits(opened, 1_000, cooldown, in_flight=1, probes=probes)  # half-open, a probe free
        assert not breaker.admits(opened, 1_000, cooldown, in_flight=2, probes=probes)  # both probes in flight
        assert breaker.admits(BreakerState(), 0, cooldown, in_flight=500, probes=probes)  # closed: no limit

    def test_parse_reads_a_missing_hash_as_closed(self):
        assert breaker.parse(None) == BreakerState()
        assert breaker.parse([b"open", b"3", b"0", b"5", b"2"]) == BreakerState("open", 3, 0, 5, 2)


class TestPriorityQueue:
    def test_a_raised_limit_admits_waiters_at_once_and_a_lowered_one_as_calls_end(self):
        async def run() -> list[int]:
            queue = ModelQueue("m", concurrency=1, depth=10, wait_timeout_s=None)
            await queue.acquire(2)
            waiting = [asyncio.ensure_future(queue.acquire(2)) for _ in range(3)]
            await asyncio.sleep(0.01)
            queue.resize(3)
            await asyncio.sleep(0.01)
            seen = [queue.active, sum(w.done() for w in waiting)]  # two more in, one still waiting
            queue.resize(1)
            queue.release()
            queue.release()
            await asyncio.sleep(0.01)
            seen += [queue.active, sum(w.done() for w in waiting)]  # down to the new limit, nobody let in
            queue.release()
            await asyncio.sleep(0.01)
            seen += [queue.active, sum(w.done() for w in waiting)]  # now the waiter takes the freed slot
            return seen

        assert asyncio.run(run()) == [3, 2, 1, 2, 1, 3]

    def test_waiting_counts_stay_exact_through_random_admissions_sheds_timeouts_and_cancellations(self):
        import random

        async def run() -> None:
            rng = random.Random(5)
            queue = ModelQueue("m", concurrency=3, depth=20, wait_timeout_s=0.05)
            tasks: list[asyncio.Task[None]] = []
            held = 0
            for _ in range(600):
                move = rng.random()
                if move < 0.5:
                    tasks.append(asyncio.ensure_future(queue.acquire(rng.randrange(4))))
                elif move < 0.65 and tasks:
                    rng.choice(tasks).cancel()
                elif held:
                    queue.release()
                    held -= 1
                await asyncio.sleep(rng.choice([0, 0, 0.001, 0.02]))
                for task in [t for t in tasks if t.done()]:
                    tasks.remove(task)
                    if not task.cancelled() and task.exception() is None:
                        held += 1  # admitted: this test now holds that slot
                live = sum(1 for w in queue._waiters if not w.future.done())
                assert queue.waiting == live and held <= queue.active <= 3
                assert len(queue._waiters) <= 2 * queue.waiting + 65  # waiters that left do not pile up
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for _ in range(queue.active):
                queue.release()
            assert (queue.active, queue.waiting) == (0, 0)

        asyncio.run(run())

    def test_priorities_are_named(self):
        assert priority_rank(None) == priority_rank("normal") > priority_rank("high") > priority_rank("critical")
        with pytest.raises(InvalidRequestError, match="priority must be one of"):
            priority_rank("urgent")

    @staticmethod
    def admission_order(
        arrivals: tuple[str, ...], leaving: tuple[int, ...] = (), late: tuple[str, ...] = ()
    ) -> list[str]:
        """The order in which waiters get the one slot of a queue when its running call ends: ``arrivals``
        queue in turn, those at the positions ``leaving`` give up (a client timeout), then ``late`` arrive."""

        async def scenario() -> list[str]:
            queue = ModelQueue("m", concurrency=1, depth=10, wait_timeout_s=5)
            order: list[str] = []
            await queue.acquire(priority_rank("normal"))  # the one running call

            async def wait(name: str) -> None:
                await queue.acquire(priority_rank(name))
                order.append(name)
                queue.release()

            waiters = []
            for name in arrivals:
                waiters.append(asyncio.create_task(wait(name)))
                await asyncio.sleep(0)
            for position in leaving:
                waiters[position].cancel()
            await asyncio.sleep(0)
            for name in late:
                waiters.append(asyncio.create_task(wait(name)))
                await asyncio.sleep(0)
            queue.release()
            await asyncio.gather(*waiters, return_exceptions=True)
            return order

        return asyncio.run(scenario())

    def test_a_critical_request_never_waits_behind_a_low_one(self):
        assert self.admission_order(("low", "normal", "critical", "high")) == ["critical", "high", "normal", "low"]

    def test_priority_order_holds_after_waiters_leave(self):
        # A critical and a low client give up; one more request arrives after they left.
        arrivals = ("high", "low", "critical", "low", "low", "critical")
        order = self.admission_order(arrivals, leaving=(2, 3), late=("high",))
        assert order == ["critical", "high", "high", "low", "low"]

    def test_when_full_the_lowest_priority_is_shed_first(self):
        async def scenario() -> tuple[str, str]:
            queue = ModelQueue("m", concurrency=1, depth=1, wait_timeout_s=5)
            await queue.acquire(priority_rank("normal"))
            low = asyncio.create_task(queue.acquire(priority_rank("low")))
            await asyncio.sleep(0)
            high = asyncio.create_task(queue.acquire(priority_rank("high")))
            await asyncio.sleep(0)
            with pytest.raises(QueueFullError) as shed:
                await low
            with pytest.raises(QueueFullError) as refused:  # a newcomer no better than the waiters is refused
                await queue.acquire(priority_rank("high"))
            queue.release()
            await high
            return str(shed.value), str(refused.value)

        shed, refused = asyncio.run(scenario())
        assert "Shed for a higher-priority request" in shed and "Too many requests waiting" in refused

    def test_a_waiter_not_admitted_in_time_gets_a_typed_error_with_retry_after(self):
        async def scenario() -> QueueFullError:
            queue = ModelQueue("m", concurrency=1, depth=5, wait_timeout_s=0.01)
            await queue.acquire(0)
            with pytest.raises(QueueFullError) as caught:
                await queue.acquire(0)
            assert queue.waiting == 0
            return caught.value

        assert asyncio.run(scenario()).retry_after == 1.0

    @pytest.mark.parametrize("when", ["while waiting", "just after the slot was handed over"])
    def test_a_waiter_cancelled_never_takes_a_slot_with_it(self, when):
        async def scenario() -> tuple[int, int]:
            queue = ModelQueue("m", concurrency=1, depth=5, wait_timeout_s=5)
            await queue.acquire(0)
            waiter = asyncio.create_task(queue.acquire(0))
            await asyncio.sleep(0)
            if when == "while waiting":
                waiter.cancel()
                await asyncio.sleep(0)
                queue.release()
            else:
                queue.release()  # hands the slot to the waiter, which is cancelled before it runs
                waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await asyncio.wait_for(queue.acquire(0), timeout=1)  # the slot is free for the next caller
            return queue.active, queue.waiting

        assert asyncio.run(scenario()) == (1, 0)


class TestAccounting:
    CATALOG = ModelCatalog(
        models=[
            ModelSpec(name="a/cheap", input_price=0.1, output_price=0.4),
            ModelSpec(name="a/dear", input_price=5, output_price=25),
            ModelSpec(name="a/unpriced"),
        ]
    )

    def test_cost_is_usage_at_catalog_prices(self):
        usage = usage_of({"usage": {"prompt_tokens": 1000, "completion_tokens": 500}})
        assert cost_of(self.CATALOG.get("a/cheap"), usage) == pytest.approx((1000 * 0.1 + 500 * 0.4) / 1e6)

    def test_unknown_usage_or_price_is_none_never_a_guess(self):
        assert usage_of({"usage": {"prompt_tokens": -1}}) == Usage(None, None)
        # A provider's garbage is no count: true was 1 token, 10**40 a bill of 1e35 dollars.
        assert usage_of({"usage": {"prompt_tokens": True, "completion_tokens": 10**40}}) == Usage(None, None)
        assert usage_of({"usage": ["not", "a", "mapping"]}) == Usage(None, None)
        assert cost_of(self.CATALOG.get("a/unpriced"), Usage(10, 10)) is None
        assert cost_of(self.CATALOG.get("a/cheap"), Usage(10, None)) is None

    def test_the_baseline_is_the_dearest_model_unless_configured(self):
        assert baseline_model(self.CATALOG, None) == "a/dear"
        assert baseline_model(self.CATALOG, "a/cheap") == "a/cheap"


# --------------------------------------------------------------------------- provider errors
@pytest.mark.parametrize(
    ("status", "retryable", "reason"),
    [(429, True, "rate_limit"), (500, True, "server"), (503, True, "server"), (408, True, "client"),
     (400, False, "client"), (401, False, "credentials"), (403, False, "credentials"), (404, False, "client")],
)  # fmt: skip
def test_a_providers_status_is_retried_only_when_it_may_pass(status: int, retryable: bool, reason: str) -> None:
    error = status_error("m", status, "nope", {"retry-after": "2"})
    assert (error.retryable, error.reason, error.upstream_status) == (retryable, reason, status)
    assert error.retry_after == 2.0 and "m: the provider answered" in str(error)


def test_a_retry_after_is_seconds_or_an_http_date() -> None:
    """RFC 9110 allows both; a date was ignored (the gateway retried at once and told the client 1 s)."""
    from email.utils import formatdate

    soon = status_error("m", 503, "busy", {"retry-after": formatdate(time.time() + 120, usegmt=True)})
    assert soon.retry_after is not None and 110 <= soon.retry_after <= 121
    assert status_error("m", 503, "busy", {"retry-after": formatdate(time.time() - 60, usegmt=True)}).retry_after == 0
    for nonsense in ("soon", "nan", "inf"):
        assert status_error("m", 503, "busy", {"retry-after": nonsense}).retry_after is None


def test_a_providers_error_code_and_param_are_kept_for_the_client() -> None:
    error = {"message": "too long", "code": "context_length_exceeded", "param": "messages"}
    refused = status_error("m", 400, "too long", None, None, error)
    assert (refused.provider_code, refused.provider_param) == ("context_length_exceeded", "messages")
    assert status_error("m", 400, "x", None, None, {"code": 400}).provider_code is None  # not a code: a status


def test_an_error_body_gives_its_message_else_its_text() -> None:
    assert _error_message(b'{"error": {"message": "quota exceeded", "type": "x"}}') == "quota exceeded"
    assert _error_message(b'{"error": "overloaded"}') == "overloaded"
    assert _error_message(b"<html>bad gateway</html>") == "<html>bad gateway</html>"
    # The key is masked before the message is cut short: cut first, a long key's head would show.
    key = "sk-proj-" + "k" * 160
    message = _error_message(f'{{"error": {{"message": "{"p" * 140} key {key}"}}}}'.encode(), key)
    assert message.endswith(" key ***") and "sk-proj" not in message


#: LiteLLM's error messages as this LiteLLM version words them (recorded from real calls: an OpenAI-compatible
#: server, Anthropic's Messages API answering a call and a stream, LiteLLM's own refusal).
LITELLM_MESSAGES = {
    "litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: OpenAIException"
    " - This model's maximum context length is 8192 tokens": ("This model's maximum context length is 8192 tokens", None),
    'litellm.BadRequestError: AnthropicException - {"type": "error", "error": {"type": "invalid_request_error",'
    ' "message": "temperature: range: 0..1"}}': ("temperature: range: 0..1", "invalid_request_error"),
    'litellm.RateLimitError: AnthropicException - b\'{"type": "error", "error": {"type": "rate_limit_error",'
    ' "message": "slow down"}}\'': ("slow down", "rate_limit_error"),
    'litellm.InternalServerError: AnthropicError - {"type": "error", "error": {"type": "overloaded_error",'
    ' "message": "Overloaded"}}': ("Overloaded", "overloaded_error"),
    "litellm.UnsupportedParamsError: O-series models don't support temperature=0.5.": (
        "O-series models don't support temperature=0.5.", None),
    "a provider's own words: with a colon": ("a provider's own words: with a colon", None),
    'litellm.ServiceUnavailableError: AnthropicException - {"type": "error", "error": {"type": "api_error",'
    ' "message": "unavailable"}}. Handle with `litellm.ServiceUnavailableError`.': ("unavailable", "api_error"),
    'litellm.BadGatewayError: AnthropicException BadGatewayError - b\'{"type": "error", "error": {"type":'
    ' "api_error", "message": "bad gateway"}}\'': ("bad gateway", "api_error"),
    "litellm.APIConnectionError: 'content'\nTraceback (most recent call last):\n  File \"/srv/venv/litellm/main.py\""
    ", line 1\nKeyError: 'content'": ("'content'", None),
}  # fmt: skip


@pytest.mark.parametrize("wrapped", LITELLM_MESSAGES)
def test_a_providers_own_message_is_read_out_of_litellms_wrapping(wrapped: str) -> None:
    message, error = provider_message(wrapped)
    assert (message, error and error.get("type")) == LITELLM_MESSAGES[wrapped]


@pytest.fixture
def litellm() -> Any:
    """LiteLLM's module, imported as the gateway imports it (no price map fetch)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return pytest.importorskip("litellm")


def test_a_litellm_error_keeps_the_providers_retry_after_from_where_litellm_keeps_it(litellm: Any) -> None:
    """LiteLLM's Anthropic errors carry an empty ``response``; the provider's headers are elsewhere."""
    said = 'litellm.RateLimitError: AnthropicException - {"type": "error", "error": {"message": "slow down"}}'
    response = httpx.Response(429, request=httpx.Request("POST", "http://provider/v1/messages"))
    error = litellm.RateLimitError(message=said, llm_provider="anthropic", model="claude", response=response)
    error.litellm_response_headers = httpx.Headers({"retry-after": "30"})  # as LiteLLM sets it
    told = litellm_error(error, "anthropic/claude")
    assert (told.retry_after, told.reason, told.retryable) == (30.0, "rate_limit", True)
    assert str(told) == "anthropic/claude: the provider answered 429: slow down"


def test_litellm_failing_on_a_providers_answer_is_the_providers_failure_and_shows_no_traceback(litellm: Any) -> None:
    """LiteLLM raises a *connection* error when a provider's answer lacks a field it reads (Anthropic's 200
    without ``content``), with its traceback in the message: taken for the client's 400 (never retried,
    no fallback), the message named the server's files."""
    said = "litellm.APIConnectionError: 'content'\nTraceback (most recent call last):\n  File \"/srv/x.py\""
    try:
        try:
            {}["content"]  # the provider's answer, read as LiteLLM reads it
        except KeyError:
            raise litellm.APIConnectionError(message=said, llm_provider="anthropic", model="claude") from None
    except litellm.APIConnectionError as exc:
        told = litellm_error(exc, "anthropic/claude")
    assert (told.reason, told.retryable, told.upstream_status) == ("server", True, None)
    assert "Traceback" not in str(told) and "/srv/" not in str(told)


def test_transport_failures_are_retryable_timeouts_or_connection_errors() -> None:
    aiohttp = pytest.importorskip("aiohttp")
    timeout = upstream_error(aiohttp.ServerTimeoutError("read timeout"), "m")
    assert (timeout.retryable, timeout.reason) == (True, "timeout")
    refused = upstream_error(aiohttp.ClientConnectionError("refused"), "m")
    assert (refused.retryable, refused.reason) == (True, "connection")
    other = upstream_error(ValueError("not JSON"), "m")
    assert (other.retryable, other.reason) == (False, "error")


def test_transport_failures_while_a_stream_is_read_keep_their_reason() -> None:
    """The SDK wraps a call's transport errors, not those raised while its stream is read: httpx's own."""
    stalled = upstream_error(httpx.ReadTimeout("timed out"), "m")
    assert (stalled.retryable, stalled.reason) == (True, "timeout")
    for dropped in (httpx.ReadError("connection reset"), httpx.RemoteProtocolError("peer closed connection")):
        assert upstream_error(dropped, "m").reason == "connection"


class TestCacheScope:
    """What must match exactly before a semantic hit may be served (``gateway.cache.scope_of``)."""

    @staticmethod
    def scope(content, policy=None, embedded=None, **params):
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]
        text = content if isinstance(content, str) else " ".join(p["text"] for p in content if p["type"] == "text")
        return scope_of("auto", "tenant", messages, params, policy, text if embedded is None else embedded)

    def test_the_last_user_text_is_left_to_the_semantic_match_when_it_is_all_embedded(self):
        assert self.scope("what is the capital of France?") == self.scope("What is the capital of France")

    def test_strategy_and_constraints_split_the_scope(self):
        assert self.scope("hi", ["cost", {}]) != self.scope("hi", ["quality", {}])
        assert self.scope("hi", [None, {}]) != self.scope("hi", [None, {"min_quality": 0.9}])

    def test_images_and_other_non_text_parts_must_match_exactly(self):
        def ask(url):
            return [{"type": "text", "text": "describe this"}, {"type": "image_url", "image_url": {"url": url}}]

        assert self.scope(ask("https://x/cat.png")) != self.scope(ask("https://x/dog.png"))
        assert self.scope(ask("https://x/cat.png")) == self.scope(ask("https://x/cat.png"))

    def test_a_text_longer_than_the_embedded_window_must_match_exactly(self):
        def long(middle):
            text = "head " * 60 + middle * 40 + " tail" * 150
            return text, routing_text(text)

        (one, window_one), (two, window_two) = long("ONE HUNDRED "), long("NINE THOUSAND ")
        assert window_one == window_two  # the embedding cannot tell them apart
        assert self.scope(one, embedded=window_one) != self.scope(two, embedded=window_two)

    def test_parameters_that_change_the_answer_split_it_and_neutral_ones_do_not(self):
        assert self.scope("hi", max_tokens=3) != self.scope("hi", max_tokens=4)
        assert self.scope("hi", stream=True, user="u1") == self.scope("hi")
        assert self.scope("hi", temperature=0) == self.scope("hi", temperature=0.0)
        assert self.scope("hi", temperature=0, seed=1) == self.scope("hi", temperature=0, seed=2)
        assert self.scope("hi", temperature=0.7, seed=1) != self.scope("hi", temperature=0.7, seed=2)
        assert scope_of("auto", "alice", [{"role": "user", "content": "hi"}], {}) != scope_of(
            "auto", "bob", [{"role": "user", "content": "hi"}], {}
        )

    def test_requests_openai_treats_as_one_share_it(self):
        """Defaults set explicitly, a negative zero, and text sent as one text part all missed each other."""
        assert self.scope("hi", temperature=0, n=1, logprobs=False, top_p=1) == self.scope("hi", temperature=0)
        assert self.scope("hi", presence_penalty=0, frequency_penalty=0.0) == self.scope("hi")
        assert self.scope("hi", temperature=-0.0) == self.scope("hi", temperature=0)
        assert self.scope([{"type": "text", "text": "hi"}]) == self.scope("hi")
        assert self.scope("hi", n=2) != self.scope("hi") and self.scope("hi", top_p=0.5) != self.scope("hi")
        assert self.scope("hi", logprobs=0) != self.scope("hi")  # not OpenAI's default, as sent: the provider's call

        def conversation(system):
            return scope_of("auto", "t", [{"role": "system", "content": system}, {"role": "user", "content": "hi"}], {})

        assert conversation([{"type": "text", "text": "be brief"}]) == conversation("be brief")
        assert conversation([{"type": "text", "text": "be brief"}]) != conversation("be long")

    def test_only_deterministic_single_answer_requests_without_tools_or_logprobs_are_cacheable_and_only_when_on(self):
        on = CacheConfig(enabled=True)
        assert cacheable({"temperature": 0}, on) and not cacheable({"temperature": 0}, CacheConfig())
        assert not cacheable({}, on) and not cacheable({"temperature": 0.7}, on)
        assert not cacheable({"temperature": 0, "n": 2}, on) and not cacheable({"temperature": 0, "tools": [{}]}, on)
        assert not cacheable({"temperature": 0, "logprobs": True}, on)  # the cache keeps text, not probabilities
        assert cacheable({"temperature": 0, "logprobs": False}, on)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"upstream_url": "not a url"}, "upstream_url"),
        ({"upstream_url": "http://u:Zz9/Secret@127.0.0.1:8001/v1"}, "upstream_url"),  # a / in the password
        ({"upstream_url": "http://u:Zz9Secret@127.0.0.1:8001/v1"}, "credentials in the URL"),
        ({"upstream_url": "http://127.0.0.1:99999/v1"}, "upstream_url"),
        ({"baseline_model": ""}, "baseline_model"),  # taken for "not given"
        ({"upstreams": [{"api_base": "http://127.0.0.1:8001/v1", "models": []}]}, "upstreams.0.models"),
        # Base URLs no call could ever reach: each started, then failed every request (a 502 or a 404).
        ({"upstream_url": "http://:8001/v1"}, "upstream_url: .*names no host"),
        ({"upstream_url": "http://127.0.0.1:0/v1"}, "upstream_url: .*port is not a number from 1"),
        ({"upstream_url": "http://127.0.0.1:8001/v1#frag"}, "upstream_url: .*no query"),
        ({"upstream_url": "http://127.0.0.1:8001/v1?apikey=sk-Zz9Secret"}, "upstream_url: .*no query"),
        (
            {"upstreams": [{"api_base": "https://h.example/v1?access_token=Zz9Secret"}]},
            "upstreams.0.api_base: .*no query",
        ),
        ({"upstreams": [{"api_base": "127.0.0.1:8001/v1"}]}, "upstreams.0.api_base"),
        ({"api_keys": ["sk-ok", " "]}, "api_keys"),
        ({"api_keys": ["sk-ok", "Secret-clé"]}, "printable ASCII"),  # no client could send it in a header
        ({"api_keys": ["Secret one"]}, "printable ASCII"),
        ({"upstreams": [{"api_base": "http://127.0.0.1:8001/v1", "api_key": ""}]}, "upstreams.0.api_key"),
        # Waits that could never end would hold the request, its queue slot and the server's shutdown.
        ({"retry": {"initial_s": float("inf")}}, "retry.initial_s"),
        ({"retry": {"max_s": float("nan")}}, "retry.max_s"),
        ({"retry": {"jitter_s": 1e9}}, "retry.jitter_s"),
        ({"retry": {"initial_s": 5, "max_s": 1}}, "max_s .* below initial_s"),
        ({"cache": {"ttl_s": 10**20}}, "cache.ttl_s"),  # Redis would refuse it on every store
        ({"cache": {"max_temperature": float("inf")}}, "cache.max_temperature"),
        # A key where its variable's name belongs (--upstream-key-env "$OPENAI_API_KEY") is not echoed.
        ({"upstream_api_key_env": "sk-Zz9Secret"}, "upstream_api_key_env: .*name of an environment variable"),
        ({"api_keys_env": "ck-Zz9Secret"}, "api_keys_env"),
        ({"upstreams": [{"api_base": "http://127.0.0.1:8001/v1", "api_key_env": "sk-Zz9Secret"}]}, "api_key_env"),
    ],
)
def test_a_config_that_could_only_fail_later_is_refused_by_field_and_without_its_secret(config, field) -> None:
    from pydantic import ValidationError

    from redisvl_llmrouter.errors import ConfigError
    from redisvl_llmrouter.gateway.config import GatewayConfig

    with pytest.raises(ConfigError, match=field) as caught:
        GatewayConfig.parse(config)
    assert "Zz9" not in str(caught.value) and "Secret" not in str(caught.value)
    with pytest.raises(ValidationError) as built:  # built in code: pydantic's own error quotes no input either
        GatewayConfig(**config)
    assert "Zz9" not in str(built.value) and "Secret" not in str(built.value)


def test_an_upstream_built_in_code_with_a_mistyped_key_does_not_quote_it() -> None:
    from pydantic import ValidationError

    from redisvl_llmrouter.gateway.config import Upstream

    for wrong in ({"api_key": ["sk-Zz9Secret"]}, {"apikey": "sk-Zz9Secret"}):
        with pytest.raises(ValidationError) as caught:
            Upstream(name="x", **wrong)
        assert "Zz9" not in str(caught.value)


def test_api_keys_env_named_but_empty_is_refused_rather_than_running_open(monkeypatch) -> None:
    from redisvl_llmrouter.errors import ConfigError
    from redisvl_llmrouter.gateway.config import GatewayConfig

    monkeypatch.delenv("LLMROUTER_API_KEYS", raising=False)
    assert GatewayConfig().server_keys() == set()  # the default name, unset: no authentication, as documented
    monkeypatch.setenv("MY_KEYS", " , ")
    with pytest.raises(ConfigError, match=r"\$MY_KEYS, which holds no key"):
        GatewayConfig.parse({"api_keys_env": "MY_KEYS"}).server_keys()
    with pytest.raises(ConfigError, match=r"\$LLMROUTER_API_KEYS, which holds no key"):  # the default, named
        GatewayConfig.parse({"api_keys_env": "LLMROUTER_API_KEYS"}).server_keys()
    monkeypatch.setenv("LLMROUTER_API_KEYS", " , ")  # the default, not named but set: a secret that came empty
    with pytest.raises(ConfigError, match=r"\$LLMROUTER_API_KEYS, which holds no key"):
        GatewayConfig().server_keys()
    monkeypatch.delenv("LLMROUTER_API_KEYS")
    monkeypatch.setenv("MY_KEYS", "k1, k2")
    assert GatewayConfig.parse({"api_keys_env": "MY_KEYS"}).server_keys() == {"k1", "k2"}
    monkeypatch.setenv("MY_KEYS", "k1, Secret-clé")
    with pytest.raises(ConfigError, match=r"\$MY_KEYS: .*printable ASCII") as caught:
        GatewayConfig.parse({"api_keys_env": "MY_KEYS"}).server_keys()
    assert "Secret" not in str(caught.value)


def test_a_baseline_model_must_be_priced_in_the_catalog() -> None:
    from redisvl_llmrouter.errors import ConfigError

    catalog = ModelCatalog(models=[ModelSpec(name="a/cheap", input_price=0.1, output_price=0.4)])
    assert baseline_model(catalog, "a/cheap") == "a/cheap"
    with pytest.raises(ConfigError, match="baseline_model 'a/typo' is not a priced model"):
        baseline_model(catalog, "a/typo")


def test_headers_carry_any_route_or_model_name_and_read_back_exactly():
    from urllib.parse import unquote

    from redisvl_llmrouter.gateway.outcome import Outcome

    names = {"route": '路由-🚀 tier "q" | pipe\nnewline', "model": "ünïcødé/模型-🚀", "strategy": "100%"}
    headers = Outcome(request_id="req-1", requested="auto", **names).headers()
    for name, value in names.items():
        sent = headers[f"x-llmrouter-{name}"]
        assert sent.isascii() and sent.isprintable() and unquote(sent) == value
    assert Outcome(request_id="req-1", requested="auto", route="standard").headers()["x-llmrouter-route"] == "standard"


def test_client_chosen_model_names_cannot_grow_the_metrics_or_the_queues_without_bound():
    import asyncio

    from redisvl_llmrouter.gateway.queue import MAX_IDLE_QUEUES, Queues
    from redisvl_llmrouter.observability.metrics import MAX_OTHER_MODELS, Metrics

    metrics = Metrics(known_models=lambda: ["router/model"])
    for i in range(MAX_OTHER_MODELS + 50):
        metrics.child(metrics.requests, model=f"vendor/m{i}", route="passthrough", status="ok").inc()
    metrics.child(metrics.requests, model="router/model", route="simple", status="ok").inc()  # always by name
    text = metrics.render().decode()
    labelled = {line.split('model="')[1].split('"')[0] for line in text.splitlines() if 'model="' in line}
    assert len(labelled) == MAX_OTHER_MODELS + 2 and {"other", "router/model", "vendor/m0"} <= labelled
    assert 'model="other",route="passthrough",status="ok"} 50.0' in text  # the rest counted, not lost

    async def pass_through(queues: Queues, count: int) -> int:
        for i in range(count):
            async with queues.slot(f"vendor/m{i}", 0):
                pass
        return len(queues.snapshot())

    assert asyncio.run(pass_through(Queues(4, 10, 5.0, {}), MAX_IDLE_QUEUES + 100)) <= MAX_IDLE_QUEUES + 1


# ---------------------------------------------------------------------------- write-behind
def test_a_refused_write_is_sent_again_with_the_expiries_redis_ran_on_its_key_and_no_others():
    from redis.exceptions import NoPermissionError, ResponseError

    from redisvl_llmrouter.gateway.write_behind import _with_their_expiries

    full = ResponseError("OOM command not allowed when used memory > 'maxmemory'.")
    commands = [
        ("HSET", "record", "f", "v"),  # refused: Redis is full
        ("EXPIRE", "record", "60"),  # ran on a key not yet made: goes with it
        ("ZADD", "inflight", "1", "r"),  # refused
        ("PEXPIRE", "inflight", "60000", "NX"),  # refused for good (an ACL): would be refused again
        ("PEXPIRE", "inflight", "60000", "GT"),  # ran: goes with the ZADD
        ("EXPIRE", "other", "60"),  # another key's, which landed: not sent twice
        ("HSET", "landed", "f", "v"),
    ]
    kept = [True, False, True, False, False, False, False]
    replies = [full, 0, full, NoPermissionError("NOPERM"), 0, 1, 1]
    assert _with_their_expiries(commands, kept, replies) == [True, True, True, False, True, False, False]


def test_a_stream_that_arrives_after_its_client_left_is_closed_not_dropped():
    """When the work ends although it was cancelled (a dependency swallowed the cancellation), its
    stream was dropped unclosed: its call was never ended, freed or logged."""
    from starlette.requests import Request

    from redisvl_llmrouter.gateway.app import _unless_client_leaves
    from redisvl_llmrouter.gateway.outcome import Outcome, StreamedCompletion

    released: list[bool] = []

    async def client_gone() -> dict[str, str]:
        return {"type": "http.disconnect"}

    async def chunks() -> Any:
        yield {}

    async def release() -> None:
        released.append(True)

    async def work() -> StreamedCompletion:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed, as a dependency may
            await asyncio.sleep(10)
        return StreamedCompletion(Outcome(request_id="req-1", requested="auto"), chunks(), release=release)

    async def run() -> Any:
        return await _unless_client_leaves(Request({"type": "http"}, client_gone), work())

    assert asyncio.run(run()) is None
    assert released == [True]

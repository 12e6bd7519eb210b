"""The gateway: route a chat request, call the chosen model, fall back, account, log. Async; :mod:`.sync` wraps it.

One request, in order:

1. **Validate** the messages and options (typed errors; the HTTP server turns them into
   OpenAI-style JSON with the right status).
2. **Cache**: a deterministic request (see :mod:`.cache`) that matches a stored one within the
   distance threshold, in the same scope, is answered from Redis.
3. **Decide**: ``model="auto"`` (or ``router/<name>``) routes on the last user message: tier,
   strategy, constraints, floors, the learned prediction, and the models whose circuit breaker is
   open left out. A concrete model passes through as it is.
4. **Call** the chosen model, then its fallbacks in order, at most ``max_models`` models. Each is
   admitted by its priority queue (and, while its breaker is half-open, only as one of its few
   trial calls), called through its backend, and retried on retryable errors
   (timeouts, connection errors, 429, 5xx) with exponential backoff and jitter (tenacity). Every
   provider call's outcome updates the model's breaker and live statistics in Redis.
5. **Account**: cost from the provider's usage and the catalog's prices, saving against the
   baseline model; the answer carries a request id that ``feedback`` accepts.
6. **Log** (after the answer is sent): the decisions stream, metrics, the cache entry.

Every request ends answered or with an error that says what happened to each model tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from redis.exceptions import RedisError

from redisvl_llmrouter import shared_clock
from redisvl_llmrouter.aio import AsyncSemanticRouter, adrive
from redisvl_llmrouter.core import (
    RouteOptions,
    RouterCore,
    is_request_id,
    live_now_ms,
    new_request_id,
)
from redisvl_llmrouter.errors import (
    AllModelsFailedError,
    CircuitOpenError,
    ConfigError,
    ConflictError,
    GatewayClosedError,
    GatewayError,
    GatewayLoopError,
    InvalidQueryError,
    InvalidRequestError,
    LLMRouterError,
    ModelNotFoundError,
    NoEligibleModelError,
    QueueFullError,
    RedisCommandError,
    RedisCredentialsError,
    RedisPermissionError,
    RedisPoolTimeoutError,
    RedisUnavailableError,
    RouterEmptyError,
    RouterRecreatedError,
    RouterStateLostError,
    UnknownRequestError,
    UpstreamError,
    VectorizerMismatchError,
    redact_url,
)
from redisvl_llmrouter.gateway import breaker
from redisvl_llmrouter.gateway.accounting import baseline_model, cost_of, usage_of
from redisvl_llmrouter.gateway.backends import (
    Backend,
    Call,
    LiteLLMBackend,
    OpenAIBackend,
    refused,
    upstream_error,
)
from redisvl_llmrouter.gateway.cache import CachedAnswer, ResponseCache, cacheable, scope_of
from redisvl_llmrouter.gateway.config import PROVIDERS, GatewayConfig, Upstream
from redisvl_llmrouter.gateway.outcome import Completion, Outcome, StreamedCompletion
from redisvl_llmrouter.gateway.queue import PRIORITIES, ModelQueue, Queues, priority_rank
from redisvl_llmrouter.gateway.redis_faults import loggable, transient_redis_error
from redisvl_llmrouter.gateway.startup import check_scripting, load_router, warn_if_evicting
from redisvl_llmrouter.gateway.write_behind import CLOSE_TIMEOUT_S, WriteBehind
from redisvl_llmrouter.observability import decisions, report
from redisvl_llmrouter.observability.metrics import BREAKER_VALUES, Metrics
from redisvl_llmrouter.observability.report import Report
from redisvl_llmrouter.ops import run_script
from redisvl_llmrouter.policy import stats as live
from redisvl_llmrouter.policy.catalog import MAX_TOKENS, estimate_tokens
from redisvl_llmrouter.policy.constraints import implied_capabilities
from redisvl_llmrouter.request_text import NO_TEXT, messages_text, prompt_text, routing_text
from redisvl_llmrouter.schema import MAX_STATEMENT_CHARS, RouteMatch, Strategy, text_problem
from redisvl_llmrouter.search import as_text

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: The longest per-request ``timeout`` accepted (a day): beyond it the event loop's clock overflows.
MAX_TIMEOUT_S = 86_400
PRIORITY_NAMES = {rank: name for name, rank in PRIORITIES.items()}
#: Parameters the gateway understands itself and does not pass to the provider.
OWN_PARAMS = {"priority", "strategy", "constraints", "cache", "timeout"}
#: Seconds a call to a custom backend may take unless the request gives its own ``timeout`` (an upstream has
#: its own ``timeout_s``, which caps the request's).
DEFAULT_TIMEOUT_S = 60.0
#: Routing decisions (embedding and search) one gateway process computes at once; the rest wait their
#: turn, by priority then arrival.
ROUTES_AT_ONCE = 8
#: How stale a process's view of the router's definition may be (another process may change it).
ROUTER_REFRESH_S = 1.0
#: Least time between two checks for changes started for requests the default route answered (a router
#: replaced elsewhere matches nothing this process knows): at most 20 small reads a second, however many.
UNMATCHED_REFRESH_S = 0.05
#: How often each gateway process checks that Redis still holds every reference of its router (one
#: ``FT.INFO``; an eviction takes them silently) and writes lost ones back.
REFERENCES_CHECK_S = 60.0
#: How stale a process's view of the shared breaker states may be.
BREAKER_REFRESH_S = 0.2
#: The Retry-After of a request refused because a half-open breaker's probes are all in flight.
PROBE_RETRY_AFTER_S = 1.0
#: A routed model the walk reached that no upstream serves (see ``_backend_or_attempt``).
NO_UPSTREAM = "no_upstream"
#: The errors of attempts the gateway refused itself, without calling the model.
NOT_CALLED = frozenset({"queue full", "circuit half-open", NO_UPSTREAM})
#: How often the leases of this process's calls in flight are renewed (a third of ``CALL_LEASE_MS``).
CALL_LEASE_RENEW_S = live.CALL_LEASE_MS / 3000
#: A relayed stream gives the event loop a turn every this many chunks (a fast provider's chunks arrive
#: buffered, and a long stream would otherwise hold every other request on this process).
YIELD_EVERY_CHUNKS = 8
_PASSTHROUGH = RouteOptions()
#: Models a process keeps per-model state for (resolved backends, breaker reads) before starting over:
#: a client may pass through any number of names.
MAX_CACHED_MODELS = 1000
#: The most choices (``n``) a routed request may ask for, as OpenAI allows.
MAX_CHOICES = 128
#: The longest model name a request may give (provider model ids are far shorter).
MAX_MODEL_NAME_CHARS = 256
#: Beyond a call's timeout, when the gateway gives up on a backend that does not time out on its own
#: (a custom one ignoring ``Call.timeout_s``); the built-in backends time out first.
TIMEOUT_GRACE_S = 1.0
#: Feedback on an id not (yet) recorded tries again after these pauses (None: give up): the record is
#: written just after the answer, maybe by another process, and a quick client can get there first.
FEEDBACK_WAITS_S: tuple[float | None, ...] = (0.0, 0.02, 0.05, 0.1, None)


@dataclass
class _Request:
    messages: list[dict[str, Any]]
    requested: str
    target: str | None  # None: routed; else the concrete model
    params: dict[str, Any]
    rank: int
    options: RouteOptions
    cache_allowed: bool
    tenant: str
    timeout_s: float | None  # None: each model's upstream says (its timeout_s)
    text: str
    prompt_tokens: int


class Gateway:
    """Route, call, fall back, account (see the module docstring). Build with ``await Gateway.create(...)``."""

    def __init__(
        self,
        config: GatewayConfig,
        router: AsyncSemanticRouter,
        redis_url: str,
        backends: Mapping[str, Backend] | None = None,
        cache: ResponseCache | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.router = router
        self.redis_url = redis_url
        self.cache = cache
        self.metrics = metrics or Metrics(known_models=lambda: self.router.models)
        self._custom_backends = dict(backends or {})
        self._backends: dict[str, Backend] = {}
        self.queues = Queues(
            config.queue.concurrency,
            config.queue.depth,
            config.queue.wait_timeout_s,
            _concurrency_limits(router.catalog),
            self._queue_changed,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cache_repair: asyncio.Future[Any] | None = None
        self.shutting_down = False
        """Set when the server hosting this gateway is told to stop: what it cuts off is no client's doing."""
        baseline_model(router._core.catalog, config.baseline_model)  # a configured one must be priced
        self._baseline: tuple[Any, Any] = (None, None)  # (catalog, its baseline's entry): see _baseline_spec
        self._writes = WriteBehind(router)
        self._breakers: dict[str, tuple[float, str]] = {}  # model: (read at, state then)
        self._resolved: dict[str, tuple[Backend, str]] = {}
        self._refreshed = time.monotonic()  # the router was just loaded
        self._check_started = self._refreshed  # when the last check for changes began
        self._adopted = 0  # how many changed definitions the checks took up: which one a route ran on
        self._references_checked = self._refreshed  # and its references checked (create)
        self._refreshing: asyncio.Future[bool] | None = None  # the check for changes under way, if any
        #: Why this process cannot route on its router any more (recreated elsewhere with other vectors), or None.
        self.router_recreated: str | None = None
        self._served: dict[str, float] = {}  # passthrough model -> when this process last noted it in Redis
        self._retry_template = self._retrying_template()
        self._calls: dict[tuple[str, str], None] = {}  # (model, request id) of the calls in flight here
        self._leases: asyncio.Future[None] | None = None  # renews their leases while there are any
        # Routes computed at once: more only contend for the CPU (embedding) and hold Redis connections
        # while they do, so that under a burst requests time out on the pool instead of waiting their turn.
        self._routing = ModelQueue("(routing)", ROUTES_AT_ONCE, depth=None, wait_timeout_s=None)
        self._loop: asyncio.AbstractEventLoop | None = None  # its clients' loop, set by its first use
        self._closed = False

    # ----------------------------------------------------------------- construction
    @classmethod
    async def create(
        cls,
        config: GatewayConfig | Mapping[str, Any] | None = None,
        *,
        router: AsyncSemanticRouter | None = None,
        redis_url: str | None = None,
        backends: Mapping[str, Backend] | None = None,
    ) -> Gateway:
        """A gateway on ``router`` (default: the config's router, loaded or attached in Redis).

        ``backends`` maps glob patterns over model names to your own :class:`Backend` objects;
        they take precedence over the configured upstreams.
        """
        from redisvl_llmrouter.connection import resolve_url

        config = GatewayConfig.parse(dict(config) if isinstance(config, Mapping) else config or {})
        for pattern, backend in (backends or {}).items():
            missing = [m for m in ("complete", "stream", "aclose") if not callable(getattr(backend, m, None))]
            if missing:  # found now, not as an AttributeError on the first request that needs it
                raise ConfigError(
                    f"The backend for {pattern!r} ({type(backend).__name__}) has no {', '.join(missing)}: a backend "
                    "needs async complete(call), stream(call) and aclose()."
                )
        config.check_backends()
        for upstream in config.upstreams:  # named on purpose, so most likely a key the provider needs
            if upstream.api_key is None and upstream.api_key_env and upstream.key() is None:  # unset, or blank
                logger.warning(
                    "upstream %r: $%s is %s, so its calls go without an API key",
                    upstream.name,
                    upstream.api_key_env,
                    "blank" if upstream.api_key_env in os.environ else "not set",
                )
        if config.upstream_api_key_env and not config.upstream_url:
            logger.warning(
                "upstream_api_key_env (--upstream-key-env) is the key of upstream_url (--upstream), which is not "
                "set: $%s is not sent anywhere (give each upstream its own api_key_env)",
                config.upstream_api_key_env,
            )
        if config.upstream_url and config.upstreams:
            logger.warning(
                "upstream_url (--upstream) sends every model to %s: the %d configured upstreams are not used",
                redact_url(config.upstream_url),
                len(config.upstreams),
            )
        url = redis_url or resolve_url(None)
        if router is None:
            router = await load_router(config, url)
        await check_scripting(router)
        await adrive(shared_clock.sync(), router._client)  # a router passed in may not have read it yet
        await router.recover()  # references lost while no gateway ran (evicted) are written back, with a warning
        await warn_if_evicting(router)
        cache = None
        if config.cache.enabled:
            # RedisVL checks and creates the cache index with a blocking client: keep the loop free.
            cache = await asyncio.to_thread(ResponseCache, config.cache, router.vectorizer, url)
        # The first forward pass of the embedding model is slow (lazy loading, allocation): pay it
        # here, not on the first request.
        await router.vectorizer.aembed("warm-up")
        gateway = cls(config, router, url, backends, cache)
        gateway._loop = asyncio.get_running_loop()
        warmed: set[int] = set()
        keyless: dict[str, list[str]] = {}
        for model in gateway.models():  # clients (and the openai / LiteLLM imports) now, not on a first request
            with contextlib.suppress(LLMRouterError):
                backend, _ = gateway._backend_for(model)
                upstream = getattr(backend, "upstream", None)
                if (  # a provider the routes name by prefix, whose key variable is unset: say so now
                    isinstance(upstream, Upstream)
                    and upstream not in config.upstreams  # a configured one was warned about above
                    and upstream.api_key_env
                    and upstream.key() is None
                ):
                    keyless.setdefault(upstream.api_key_env, []).append(model)
                if isinstance(backend, LiteLLMBackend) and id(backend) not in warmed:
                    warmed.add(id(backend))
                    try:
                        await backend.warm(model)
                    except Exception as exc:  # a warm-up saves time; a first request then pays it
                        logger.debug("gateway: LiteLLM's warm-up for %r failed: %s", model, loggable(exc))
        hint = "" if config.upstream_url else ", or send every model to one server (upstream_url, --upstream URL)"
        for env, models in keyless.items():
            logger.warning(
                "$%s is not set: calls to %s go without an API key, and a provider refuses them (set it%s)",
                env,
                ", ".join(models),
                hint,
            )
        return gateway

    # ----------------------------------------------------------------- public API
    async def complete(
        self,
        /,  # positional only: a request field named "self" is one of the params, passed on
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str = "auto",
        stream: bool = False,
        priority: str | None = None,
        strategy: str | None = None,
        constraints: Mapping[str, Any] | None = None,
        cache: bool | None = None,
        tenant: str = "",
        timeout: float | None = None,
        **params: Any,
    ) -> Completion | StreamedCompletion:
        """Answer a chat request (see the module docstring); ``params`` are OpenAI parameters passed on."""
        started = time.perf_counter()
        self._check_usable()
        if not stream and params.get("stream_options") is not None:  # refused by OpenAI as well
            raise InvalidRequestError("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
        request = self._request(messages, model, priority, strategy, constraints, cache, tenant, timeout, params)
        outcome = Outcome(
            request_id=new_request_id(),
            requested=request.requested,
            priority=PRIORITY_NAMES[request.rank],
            passthrough=request.target is not None,
            started=started,
            tenant=request.tenant,
            cache="bypass" if self.cache is not None else "off",  # a client's opt-out, or the gateway's
        )
        try:
            return await self._complete(request, outcome, stream)
        except asyncio.CancelledError:  # the client left before its answer: still a request, logged and counted
            if not outcome.ended:
                self._failed(request, outcome, self._left())
            raise
        except GatewayError as exc:
            exc.request_id = outcome.request_id  # the error's answer names the request the log keeps
            raise
        except LLMRouterError as exc:  # Redis unavailable, busy...: the server answers 503, and it counts
            if not outcome.ended:
                self._failed(request, outcome, request_error_code(exc))
            exc.request_id = outcome.request_id  # type: ignore[attr-defined]  # its answer names it too
            raise

    async def _complete(self, request: _Request, outcome: Outcome, stream: bool) -> Completion | StreamedCompletion:
        vector: list[float] | None = None
        scope = ""
        if request.cache_allowed and self.cache is not None:
            import numpy as np

            raw = await self._embedding(request.text, request.rank)
            vector = np.frombuffer(raw, dtype=self.router._core.dtype).tolist()
            if self.config.record_requests:  # kept with the request: feedback on a passthrough need not embed it
                outcome.query_vector = raw
            window = self._window(request.text)
            policy = [request.options.strategy, request.options.constraints.model_dump(exclude_none=True)]
            # The scope names the router, so routers never share answers: "auto" means this router's
            # choice, and a passed-through model name may go to another deployment behind another router.
            via = f"router/{self.router.name}"
            target = via if request.target is None else f"{request.target} via {via}"
            scope = scope_of(target, request.tenant, request.messages, request.params, policy, window)
            try:
                hit = await self.cache.lookup(window, vector, scope)
            except Exception as exc:  # the cache is an optimisation: without it the request goes on
                self._cache_failed(exc)
            else:
                outcome.cache = "hit" if hit is not None else "miss"
                self.metrics.child(self.metrics.cache, result=outcome.cache).inc()
                if hit is not None:
                    return self._cached(request, outcome, hit, stream)
        try:
            candidates = await self._decide(request, outcome)
        except GatewayError as exc:  # refused before any call (open breakers, no eligible model): still a request
            self._failed(request, outcome, exc.code)
            raise
        if _abandoned():  # neither queued nor called
            raise asyncio.CancelledError
        if stream:
            return await self._stream(request, outcome, candidates, vector, scope)
        body = await self._call_first(request, outcome, candidates)
        self._finish(request, outcome, body, vector, scope)
        return Completion(body, outcome)

    async def route(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        priority: str | None = None,
        strategy: str | None = None,
        constraints: Mapping[str, Any] | None = None,
        cache: bool | None = None,
        timeout: float | None = None,
        tenant: str = "",
        model: str = "auto",
        **params: Any,
    ) -> RouteMatch:
        """The decision for a request, without calling any model. ``params`` are the OpenAI parameters
        its completion would carry: the ones that shape a decision (``tools``, ``response_format``,
        ``max_tokens``, ``n``) shape this one alike. ``model`` is checked as a completion's would be:
        another router's is unknown here, and a model name is refused (its completion is not routed).
        ``priority`` orders the decision among others waiting to be routed; ``cache`` and ``timeout``
        are checked as a completion's are (a value its completion would refuse is refused here too)."""
        self._check_usable()
        request = self._request(messages, model, priority, strategy, constraints, cache, tenant, timeout, params)
        if request.target is not None:
            raise InvalidRequestError(
                f"A decision is made for model 'auto' or 'router/{self.router.name}'; {model!r} names a model, "
                "which a completion calls as it is, unrouted."
            )
        unavailable = await self._routing_inputs(request.text, request.rank)
        options = RouteOptions(**{**request.options.__dict__, "unavailable": unavailable, "record": False})
        try:
            match = await self._route(request.text, options, request.rank)
        except NoEligibleModelError as exc:
            self._raise_if_breakers_blocked(unavailable, exc.excluded)
            raise
        self._log(
            {
                "type": "route",
                # Its own id in the log (a decision's; feedback takes answered requests' ids only).
                "request_id": match.request_id or new_request_id(),
                "requested": "auto",
                **_decision_fields(match, self.router.name),
                **({"tenant": request.tenant} if request.tenant else {}),  # the caller's dashboard lists it
            },
            request.text,
        )
        return match

    async def feedback(
        self,
        request_id: str,
        quality: float,
        model: str | None = None,
        cost: float | None = None,
        tenant: str = "",
        latency_ms: float | None = None,
    ) -> dict[str, Any]:
        """Record how an answer went (quality in [0, 1]); ``model`` defaults to the model that answered.

        Feedback below the cache's ``forget_below`` on an answer the semantic cache holds removes it
        (``cache_forgotten`` in the result), whether the answer was learned from or served from the cache.

        With a ``tenant`` (the HTTP server passes the client's), only that tenant's requests take
        feedback: another client's request id is unknown to it, so no client can skew what the router
        learns from someone else's traffic.

        The answer's record is written just after the answer went out (off the request path), by this
        process or another: feedback that arrives first waits for it, briefly, before the id counts as
        unknown.
        """
        self._check_usable()
        # A bad value is refused as such, whatever the id; the numbers go on as floats.
        quality, cost, latency_ms = RouterCore._checked_outcome(quality, cost, latency_ms)
        await self._refresh_router()  # a model another process added is known here too
        for wait_s in FEEDBACK_WAITS_S:
            try:
                return await self._feedback(request_id, quality, model, cost, latency_ms, tenant)
            except UnknownRequestError:
                if wait_s is None:
                    raise
                await self._writes.flush()
                await asyncio.sleep(wait_s)
        raise AssertionError("unreachable")  # the last wait is None

    async def _feedback(
        self,
        request_id: str,
        quality: float,
        model: str | None,
        cost: float | None,
        latency_ms: float | None,
        tenant: str,
    ) -> dict[str, Any]:
        store = self.router._core.store
        record = await adrive(store.recorded(request_id), self.router._client) if is_request_id(request_id) else {}
        # Another tenant's request is as unknown to this caller as one never made.
        foreign = bool(tenant) and record.get("tenant") is not None and record["tenant"] != tenant
        if model is None and not foreign:
            model = record.get("model")
        if foreign or model is None:
            raise UnknownRequestError(
                f"Request {request_id!r} is unknown or its feedback window has passed; "
                "check the id (the x-llmrouter-request-id header of the answer)."
            )
        entry = {"type": "feedback", "request_id": request_id, "model": model, "quality": quality}
        # The answer was generated for another, similar prompt (a cache hit): how it served this one says how
        # the cache did, not how the model does on this prompt. Or it came from a passthrough model the router
        # does not know: nothing it could learn. Logged (the report counts it), not learned; a bad rating
        # still removes the answer the cache holds.
        unknown = model == record.get("model") and model not in self.router.models
        if "cached" in record or unknown:
            if model != record.get("model"):  # one the client named: checked as feedback on any answer is
                self.router._core._check_models([model])
            self._log(
                entry | ({"cache": True} if "cached" in record else {}) | ({"tenant": tenant} if tenant else {}), None
            )
            return {
                "request_id": request_id,
                "model": model,
                "quality": quality,
                "row_id": None,
                "learned": False,
                "cache_forgotten": await self._forget_cached(record, model, quality),
            }
        # By keyword: an id that is not one is refused, never taken for a statement to learn.
        result = await self.router.feedback(
            request_id=request_id, model=model, quality=quality, cost=cost, latency_ms=latency_ms
        )
        # Not learned if the cache mark landed after the read above (its own write, a moment after the record's).
        cached = {} if result.learned else {"cache": True}
        self._log(entry | cached | ({"tenant": tenant} if tenant else {}), None)
        return {
            "request_id": request_id,
            "model": model,
            "quality": quality,
            "row_id": result.row_id,
            "learned": result.learned,
            "cache_forgotten": await self._forget_cached(record, model, quality),
        }

    async def _forget_cached(self, record: Mapping[str, str], model: str, quality: float) -> bool:
        """Remove the cached answer feedback rated below ``forget_below``: served again, it would fail
        again. Only feedback on the model that gave it: another model's outcome says nothing of it."""
        entry_id = record.get("cache_entry")
        if entry_id is None or self.cache is None or model != record.get("model"):
            return False
        if not quality < self.config.cache.forget_below:
            return False
        try:
            await self.cache.forget(entry_id)
        except Exception as exc:  # the feedback is recorded; the entry expires with its TTL
            self._cache_failed(exc)
            return False
        return True

    async def stats(self) -> dict[str, Any]:
        """Per-model requests, successes, failures, latency, in-flight calls, queue and breaker state; cache hits.

        The models are the router's, then the passthrough models any of its gateways served lately.
        """
        self._check_usable()
        await self._refresh_router()  # another process's new route or model is listed here too
        served = await self.router._client.execute_command(
            "ZRANGE", live.served_key(self.router.name), "0", "-1", "REV"
        )
        models = list(dict.fromkeys([*self.models(), *(as_text(m) for m in served)]))
        live_stats = await self.router.live_stats(models)
        *replies, cache_hits = await self._read_timed(
            [*breaker.read_commands(models), ("HGETALL", "llmrouter:cache:stats")]
        )
        hits = {as_text(k): int(v) for k, v in _pairs(cache_hits)}
        queues = self.queues.snapshot()
        out = {}
        for model, reply in zip(models, replies, strict=True):
            s = live_stats[model]
            state = breaker.state_at(breaker.parse(reply), live_now_ms(), int(self.config.breaker.cooldown_s * 1000))
            q = queues.get(model, {})
            out[model] = {
                "requests": s.requests,
                "successes": s.successes,
                "failures": s.failures,
                "latency_ms": s.latency_ms,
                "success_rate": s.success_rate,
                "in_flight": s.inflight,
                "queue_depth": q.get("waiting", 0),
                "queue_active": q.get("active", 0),
                "shed": q.get("shed", 0),
                "breaker": state.state,
            }
            self.metrics.child(self.metrics.breaker, model=model).set(BREAKER_VALUES[state.state])
            self.metrics.child(self.metrics.queue_depth, model=model).set(q.get("waiting", 0))
            self.metrics.child(self.metrics.queue_active, model=model).set(q.get("active", 0))
        return {
            "router": self.router.name,
            "models": out,
            "cache": {"hits": hits.get("hit", 0), "misses": hits.get("miss", 0)},
        }

    async def report(
        self, since_ms: int | None = None, limit: int | None = None, until_ms: int | None = None
    ) -> Report:
        """The decisions log summarised (see :mod:`redisvl_llmrouter.observability.report`).

        Its parsing and summarising run in a worker thread: they take a while on a busy log (0.6 s for
        the dashboard's 20,000 entries), and on the event loop every other request would wait for them."""
        self._check_usable()
        op = report.load(self.router.name, since_ms, limit, until_ms)
        return await adrive(op, self.router._client, offload=True)

    async def recent_decisions(self, count: int = 50, tenant: str = "") -> list[dict[str, Any]]:
        """The newest ``count`` requests in the decisions log (completions and ``/v1/route`` decisions;
        feedback entries are skipped), newest first; with a ``tenant``, its own.

        Reads back page by page, but at most ``20 * count`` entries: a client rating every answer must
        not empty the list, and a refresh must stay cheap on a log of other tenants' traffic.
        """
        key, budget = decisions.stream_key(self.router.name), 20 * count
        found: list[dict[str, Any]] = []
        # A first page that usually suffices: another tenant's traffic is skipped as well as feedback.
        end, page = "+", (10 if tenant else 2) * count
        while len(found) < count and budget > 0:
            asked = min(page, budget)
            reply = await self.router._client.execute_command("XREVRANGE", key, end, "-", "COUNT", asked)
            budget -= len(reply or ())
            found += [
                e
                for e in decisions.parse_entries(reply)
                if e.get("type") != "feedback" and (not tenant or e.get("tenant") == tenant)
            ]
            if not reply or len(reply) < asked:  # the start of the log
                break
            oldest = reply[-1][0]
            # The next page starts just below the oldest entry read (an exclusive range: Redis >= 6.2).
            end = "(" + (oldest.decode() if isinstance(oldest, bytes) else str(oldest))
            page *= 2
        return found[:count]

    def models(self) -> list[str]:
        """Every model the gateway may call: the router's (routes and catalog)."""
        return self.router.models

    async def current_models(self) -> list[str]:
        """:meth:`models`, with the router checked for changes first (a model another process added)."""
        self._check_usable()
        await self._refresh_router()
        return self.models()

    def _check_usable(self) -> None:
        """Refuse a call after ``aclose()``, or from another event loop than the one its connections belong to."""
        if self._closed:
            raise GatewayClosedError("This Gateway is closed; create a new one.")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise GatewayLoopError(
                "This Gateway was created on another event loop, which its connections belong to: create one "
                "per event loop (per asyncio.run), or use SyncGateway, which any thread may call."
            )

    async def aclose(self) -> None:
        """Flush pending writes, then close backends and connections. A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._tasks:  # bounded: a Redis that never answers must not hold the shutdown for ever
            _, late = await asyncio.wait(set(self._tasks), timeout=CLOSE_TIMEOUT_S)
            for task in late:
                task.cancel()
        if self._leases is not None:
            self._leases.cancel()
        await self._writes.close()
        # Its own backends and the ones it was given (their protocol includes ``aclose``), each once.
        backends = {id(b): b for b in [*self._backends.values(), *self._custom_backends.values()]}
        for backend in backends.values():
            with contextlib.suppress(Exception):
                await backend.aclose()
        if self.cache is not None:
            with contextlib.suppress(Exception):
                await self.cache.aclose()
        await self.router.close()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----------------------------------------------------------------- request handling
    def _request(
        self,
        messages: Any,
        model: Any,
        priority: Any,
        strategy: Any,
        constraints: Any,
        cache: Any,
        tenant: str,
        timeout: Any,
        params: dict[str, Any],
    ) -> _Request:
        from redisvl_llmrouter.router import route_options

        if not isinstance(model, str) or not model.strip():
            raise InvalidRequestError(
                "model must be a non-empty string: 'auto', 'router/<name>' or a model name.", param="model"
            )
        if len(model) > MAX_MODEL_NAME_CHARS or not model.isprintable():
            # Each model name becomes Redis keys and metric labels: a client must not mint unbounded ones.
            raise InvalidRequestError(
                f"model must be a printable name of at most {MAX_MODEL_NAME_CHARS} characters ({len(model)} given).",
                param="model",
            )
        target = self._target(model)
        for name, value in (("messages", messages), *params.items()):
            bad_name = _not_utf8(name, "a field's name")
            if (where := bad_name or _not_utf8(value, name)) is not None:
                # JSON lets a client send a lone surrogate ("\ud800"); no provider can be sent it as UTF-8,
                # and the call failing on the way out was counted against the model (its breaker).
                raise InvalidRequestError(
                    f"{where} holds a lone surrogate (U+D800 to U+DFFF): not valid Unicode, so it cannot be sent.",
                    param=None if bad_name or len(name) > 200 else name,  # one that cannot be written back: unnamed
                )
        try:
            text = messages_text(messages)
        except InvalidQueryError as exc:
            if str(exc) != NO_TEXT:
                raise InvalidRequestError(str(exc), param="messages") from None
            if target is None:
                raise InvalidRequestError(
                    f"{exc} A request with none (images or audio only) names its model.", param="model"
                ) from None
            text = ""  # to a named model: nothing to route on, and nothing to cache it under
        if len(text) > MAX_STATEMENT_CHARS:
            # Only the head and tail of a long text are embedded (the routing window): keeping the first
            # and last half-million characters leaves that window as it was, within the router's limit.
            half = MAX_STATEMENT_CHARS // 2
            text = text[:half] + text[-half:]
        rank = priority_rank(priority)
        if timeout is not None and (
            not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= MAX_TIMEOUT_S
        ):
            raise InvalidRequestError(
                f"timeout must be a number of seconds in (0, {MAX_TIMEOUT_S}], got {timeout!r}", param="timeout"
            )
        if cache is not None and not isinstance(cache, bool):
            raise InvalidRequestError(f"cache must be true or false, got {cache!r}", param="cache")
        if params.get("stream_options") is not None and not isinstance(params["stream_options"], Mapping):
            raise InvalidRequestError(
                f"stream_options must be an object, got {params['stream_options']!r}", param="stream_options"
            )
        try:
            prompt_tokens = estimate_tokens(prompt_text(messages) or text)
        except InvalidQueryError as exc:  # a part of an earlier message that is not what it says
            raise InvalidRequestError(str(exc), param="messages") from None
        clean = {k: v for k, v in params.items() if k not in OWN_PARAMS and v is not None}
        if target is None or strategy is not None or constraints is not None:
            try:
                options = route_options(strategy, constraints, prompt_tokens, None, None, self.config.record_requests)
            except InvalidQueryError as exc:  # the strategy is checked first, then the constraints
                raise InvalidRequestError(str(exc), param=_options_field(strategy)) from None
            # Sizes the routing's cost estimate uses: a provider would refuse these too, but only after routing.
            sizes = {"max_tokens": MAX_TOKENS, "max_completion_tokens": MAX_TOKENS, "n": MAX_CHOICES}
            for field, most in sizes.items():
                if _whole(value := clean.get(field)) and not 1 <= value <= most:
                    raise InvalidRequestError(f"{field} must be from 1 to {most:,}, got {value!r}", param=field)
            max_tokens = next((v for f in ("max_tokens", "max_completion_tokens") if _whole(v := clean.get(f))), None)
            n = clean.get("n")
            # Each of the n answers is billed its output tokens (the cost estimate counts them all); the
            # context a model needs is one answer's.
            update: dict[str, Any] = {"choices": n} if _whole(n) else {}
            limits: dict[str, Any] = {}
            if options.constraints.output_tokens is None and _whole(max_tokens):
                limits["output_tokens"] = max_tokens
            if target is None:  # a model that cannot take the tools, image or JSON format would fail the call
                have = options.constraints.capabilities
                implied = implied_capabilities(messages, clean, self.router.catalog.offered)
                if missing := [cap for cap in implied if cap not in have]:
                    limits["capabilities"] = [*have, *missing]
            if limits:
                update["constraints"] = options.constraints.model_copy(update=limits)
            if update:
                options = replace(options, **update)
        else:  # a passthrough request: nothing to route, nothing to validate
            options = _PASSTHROUGH
        return _Request(
            messages=[dict(m) for m in messages],
            requested=model,
            target=target,
            params=clean,
            rank=rank,
            options=options,
            cache_allowed=bool(text)
            and cache is not False
            and self.cache is not None
            and cacheable(clean, self.config.cache),
            tenant=tenant,
            timeout_s=float(timeout) if timeout is not None else None,
            text=text,
            prompt_tokens=prompt_tokens,
        )

    def _target(self, model: str) -> str | None:
        """None for a routed request (``auto``, ``router/<this router>``), else the concrete model."""
        if model == "auto" or model == f"router/{self.router.name}":
            return None
        if model.startswith("router/"):
            raise ModelNotFoundError(f"This gateway serves router {self.router.name!r}, not {model[7:]!r}.")
        self._backend_for(model)  # refuse a model no upstream serves before anything else happens
        return model

    def _window(self, text: str) -> str:
        return routing_text(text, self.router.routing_config.text)

    async def _embedding(self, text: str, rank: int) -> bytes:
        """The routing text's vector (the router's bytes), through the router's LRU so that the route
        search and the request's record reuse it."""
        core = self.router._core
        async with self._routing.slot(rank):
            (raw,) = await adrive(core._embed([core._text(text)]), self.router._client, core.vectorizer)
        return raw  # type: ignore[no-any-return]

    async def _routing_inputs(self, text: str, rank: int) -> dict[str, str]:
        """The open breakers, with the router checked for changes, before routing ``text``. When either
        needs Redis, the reads go out while the text is embedded (the route's search then finds the
        vector in the router's LRU), so they add no round trip of their own to the request."""
        now = time.monotonic()
        if now - self._refreshed < ROUTER_REFRESH_S and not self._stale_breakers(self.models(), now):
            return await self._open_breakers()
        results = await asyncio.gather(
            self._open_breakers(), self._refresh_router(), self._embedding(text, rank), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results[0]  # type: ignore[return-value]

    def _stale_breakers(self, models: Sequence[str], now: float) -> list[str]:
        """The models whose breaker state this process read more than ``BREAKER_REFRESH_S`` ago, or never."""
        return [m for m in models if (c := self._breakers.get(m)) is None or now - c[0] >= BREAKER_REFRESH_S]

    async def _open_breakers(self, models: Sequence[str] | None = None) -> dict[str, str]:
        """The models (by default the router's) whose breaker is open; each state is reread from Redis
        at most every ``BREAKER_REFRESH_S`` per process."""
        now = time.monotonic()
        models = list(dict.fromkeys(self.models() if models is None else models))
        stale = self._stale_breakers(models, now)
        states = {m: self._breakers[m][1] for m in models if m not in stale}
        if stale:
            # Other requests may drop cached states while this read is in flight (a failure does):
            # the answer is built from what this read saw, not from the shared cache.
            replies = await self._read_timed(breaker.read_commands(stale))
            at, cooldown = live_now_ms(), int(self.config.breaker.cooldown_s * 1000)
            for model, reply in zip(stale, replies, strict=True):
                states[model] = breaker.state_at(breaker.parse(reply), at, cooldown).state
                if len(self._breakers) >= MAX_CACHED_MODELS:  # clients choose passthrough names: bounded
                    self._breakers.clear()
                self._breakers[model] = (now, states[model])
        return {m: "circuit open" for m, state in states.items() if state == "open"}

    async def _read_timed(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The replies to ``commands``, with Redis's clock read in the same round trip: a breaker's
        cooldown is timed on the clock its opener wrote ``opened_ms`` by (:mod:`~redisvl_llmrouter.shared_clock`)."""
        return await adrive(shared_clock.read_timed(commands), self.router._client)

    async def _probe(self, model: str, request_id: str) -> bool:
        """Whether the call about to start is a trial call of ``model``'s half-open breaker; raises
        :class:`CircuitOpenError` if the breaker's trial calls are all in flight (in any process).
        A round trip only while this process does not know the breaker closed (half-open, or its
        state dropped after a failure). A Redis that cannot run the check lets the call go: the
        breaker guards the model, and is no reason to fail a request Redis cannot help with."""
        cached = self._breakers.get(model)
        if cached is not None and cached[1] == "closed":
            return False
        cfg = self.config.breaker
        # This process's last outcomes (a trial that just ended, say) are in Redis before calls are counted.
        await self._writes.flush()
        args = breaker.probe_args(
            model, request_id, live_now_ms(), int(cfg.cooldown_s * 1000), cfg.successes, live.CALL_LEASE_MS
        )
        try:
            (admitted,) = await adrive(run_script(breaker.PROBE_SCRIPT, [args]), self.router._client)
        except asyncio.CancelledError:  # the script may have entered the call: it is not going to be made
            self._release(model, request_id)
            raise
        except (LLMRouterError, RedisError) as exc:  # read-only, full, unreachable
            logger.warning("gateway: could not check the breaker of %r, calling it: %s", model, loggable(exc))
            return False
        if not int(admitted):
            raise CircuitOpenError(
                f"The circuit breaker of {model!r} is half-open and its trial calls are in flight; retry in a moment.",
                retry_after=PROBE_RETRY_AFTER_S,
            )
        return int(admitted) == 2

    def _unless_abandoned(self, model: str, request_id: str) -> None:
        """Raise a cancellation the breaker's probe swallowed (see :func:`_abandoned`) before the call is made."""
        if _abandoned():
            self._release(model, request_id)  # the probe may have entered a trial call
            raise asyncio.CancelledError

    async def _route(self, text: str, options: RouteOptions, rank: int) -> RouteMatch:
        """The router's decision; nothing is written (the feedback record goes with the answer, in the
        write-behind: a Redis that refuses writes, full or a read-only replica, costs bookkeeping, not answers).

        A request that matched no route (none, or only the default) checks the router for changes
        sooner, and is routed again if it changed: replaced elsewhere (``overwrite=True``), the index
        holds only references of routes this process does not know yet, and until its next periodic
        check every request failed as unmatched or went to the default route."""
        options = replace(options, record=False)
        adopted = self._adopted
        try:
            match = await self._route_once(text, options, rank)
        except RouterEmptyError:  # cleared, perhaps being filled again elsewhere
            if not await self._changed_since(adopted, time.monotonic()):
                raise
            return await self._route_once(text, options, rank)
        if match.decision is None or match.decision.model is None:  # about to fail as unmatched: be sure
            changed = await self._changed_since(adopted, time.monotonic())
        elif match.fallback:  # the default route answers it: no waiting, a check at most every 50 ms
            changed = await self._changed_since(adopted, None)
        else:
            return match
        return (await self._route_once(text, options, rank)) if changed else match

    async def _changed_since(self, adopted: int, searched: float | None) -> bool:
        """Whether the definition changed since a route ran on the ``adopted``-th one (see ``_adopted``).

        With ``searched``, the monotonic time that route's search ended, it waits for a check for changes
        that began after that search, so the check sees whatever the search saw (one that had begun
        before could miss the change that made it miss: the request failed at once as unmatched, 2 of
        27,156 requests while a router was overwritten 160 times). One check runs at a time, shared by
        every request waiting, and the next starts as soon as it ends: a miss costs one or two small
        reads, not a wait (checks spaced 50 ms apart held every 404 back that long, one after another).
        Without ``searched``, a check starts unless one did in the last ``UNMATCHED_REFRESH_S``, and the
        answer is otherwise the last check's."""
        while searched is not None and self._check_started < searched:
            if self._refreshing is not None and not self._refreshing.done():
                await asyncio.shield(self._refreshing)
            else:
                self._start_check()
        idle = self._refreshing is None or self._refreshing.done()
        if searched is None and idle and time.monotonic() - self._check_started >= UNMATCHED_REFRESH_S:
            self._start_check()
        if self._refreshing is not None and not self._refreshing.done():
            await asyncio.shield(self._refreshing)
        return self._adopted != adopted

    async def _route_once(self, text: str, options: RouteOptions, rank: int) -> RouteMatch:
        if self.router_recreated is not None:
            raise RouterRecreatedError(self.router_recreated)
        core = self.router._core
        async with self._routing.slot(rank):
            try:
                return await adrive(core.route(text, None, None, options), self.router._client, core.vectorizer)
            except VectorizerMismatchError as exc:  # found while recovering a lost index: recreated elsewhere
                raise self._recreated(exc) from None

    async def _decide(self, request: _Request, outcome: Outcome) -> list[str]:
        """The models to try, in order; fills the outcome's decision fields."""
        if request.target is not None:  # a passthrough: its own breaker is all that matters
            outcome.model = request.target
            if time.monotonic() - self._refreshed >= ROUTER_REFRESH_S:  # its price and limit are the catalog's
                unavailable, _ = await asyncio.gather(self._open_breakers([request.target]), self._refresh_router())
            else:
                unavailable = await self._open_breakers([request.target])
            if request.target in unavailable:
                raise CircuitOpenError(
                    f"The circuit breaker of {request.target!r} is open after repeated failures; "
                    f"retry after its cooldown ({self.config.breaker.cooldown_s:g} s).",
                    retry_after=self.config.breaker.cooldown_s,
                )
            return [request.target]
        unavailable = await self._routing_inputs(request.text, request.rank)
        options = RouteOptions(**{**request.options.__dict__, "unavailable": unavailable})
        try:
            match = await self._route(request.text, options, request.rank)
        except NoEligibleModelError as exc:
            outcome.excluded = exc.excluded  # the log says why, as a decision's exclusions would
            outcome.route = exc.route  # the tier matched; the policy then excluded every model
            self._raise_if_breakers_blocked(unavailable, exc.excluded)
            error = InvalidRequestError(str(exc))
            error.code = "no_eligible_model"  # as /v1/route names it
            raise error from None
        decision = match.decision
        if decision is None or decision.model is None:
            raise ModelNotFoundError(
                f"Router {self.router.name!r} found no model for this request (no route matched and no default route)."
            )
        if self.config.record_requests:  # the embedding routing just made (the router's LRU): no second pass
            core = self.router._core
            (outcome.query_vector,) = await adrive(
                core._embed([core._text(request.text)]), self.router._client, core.vectorizer
            )
        outcome.decision, outcome.route, outcome.strategy = decision, match.name, decision.strategy.value
        outcome.confidence = match.confidence
        self.metrics.child(
            self.metrics.decisions,
            route=match.name or "unmatched",
            model=decision.model,
            strategy=decision.strategy.value,
        ).inc()
        return [decision.model, *decision.fallbacks][: self.config.max_models]

    # ----------------------------------------------------------------- calling models
    def _backend_for(self, model: str) -> tuple[Backend, str]:
        """The backend serving ``model`` and the key it is cached under (resolved once per model)."""
        found = self._resolved.get(model)
        if found is None:
            found = self._resolve_backend(model)
            if len(self._resolved) < MAX_CACHED_MODELS:  # clients choose passthrough names: bounded
                self._resolved[model] = found
        return found

    def _resolve_backend(self, model: str) -> tuple[Backend, str]:
        import fnmatch

        for pattern, backend in self._custom_backends.items():
            if fnmatch.fnmatchcase(model, pattern):
                return backend, f"custom:{pattern}"
        upstream = None
        if self.config.upstream_url:  # every model, as --upstream says; it wins over the configured upstreams
            upstream = Upstream(
                name="upstream",
                api_base=self.config.upstream_url,
                api_key_env=self.config.upstream_api_key_env,
                strip_provider=False,
            )
        if upstream is None:
            upstream = next((u for u in self.config.upstreams if u.serves(model)), None)
        if upstream is None and "/" in model and model.split("/", 1)[0] in PROVIDERS:
            base, env = PROVIDERS[model.split("/", 1)[0]]
            upstream = Upstream(name=model.split("/", 1)[0], api_base=base, api_key_env=env)
        if upstream is None and _litellm_installed():
            upstream = Upstream(name="litellm", backend="litellm")
        if upstream is None:
            raise ModelNotFoundError(
                f"No upstream serves model {model!r}: add one to the gateway config's upstreams, pass --upstream URL, "
                "or install LiteLLM (pip install 'redisvl-llmrouter[litellm]')."
            )
        key = _backend_key(upstream)
        backend = self._backends.get(key)
        if backend is None:
            backend = self._backends[key] = (
                LiteLLMBackend(upstream) if upstream.backend == "litellm" else OpenAIBackend(upstream)
            )
        if isinstance(backend, LiteLLMBackend) and not backend.knows(model):
            raise ModelNotFoundError(
                f"No upstream serves model {model!r}, and LiteLLM cannot tell its provider: name it with a provider "
                "prefix (openai/, anthropic/, ollama/...), or map it to an upstream in the gateway config."
            )
        return backend, key

    @staticmethod
    def _call(request: _Request, model: str, backend: Backend) -> Call:
        """One model's call: the request's own timeout, else its upstream's ``timeout_s``."""
        timeout_s = request.timeout_s if request.timeout_s is not None else _upstream_timeout(backend)
        return Call(model=model, messages=request.messages, params=request.params, timeout_s=timeout_s)

    @staticmethod
    def _own_deadline(request: _Request, backend: Backend) -> bool:
        """Whether the request gave itself less time than the model's upstream allows: its timeout is then
        the client's choice, not the model's failure. (Counted, a client sending ``timeout: 0.000001``
        opened every model's breaker for every client of every gateway on the Redis.)"""
        return request.timeout_s is not None and request.timeout_s < _upstream_timeout(backend)

    def _retrying_template(self) -> Any:
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

        retry = self.config.retry
        backoff = wait_exponential_jitter(initial=retry.initial_s, max=retry.max_s, jitter=retry.jitter_s)

        def wait(state: Any) -> float:
            # A provider's Retry-After is the least wait before the same model again.
            after = getattr(state.outcome.exception(), "retry_after", None) if state.outcome else None
            return max(float(backoff(state)), after or 0.0)

        def again(exc: BaseException) -> bool:
            # Asked to wait longer than the backoff ever would: the next model now beats this one later.
            after = getattr(exc, "retry_after", None)
            return isinstance(exc, UpstreamError) and exc.retryable and (after is None or after <= retry.max_s)

        return AsyncRetrying(
            stop=stop_after_attempt(retry.attempts), wait=wait, retry=retry_if_exception(again), reraise=True
        )

    def _retrying(self, trial: bool = False) -> Any:
        """A fresh retry controller (tenacity) for one model's calls. A half-open breaker's trial call is
        made once: a failure opens the breaker again, and retries would be calls nobody counts."""
        if trial:
            from tenacity import stop_after_attempt

            return self._retry_template.copy(stop=stop_after_attempt(1))
        return self._retry_template.copy()

    async def _call_first(self, request: _Request, outcome: Outcome, candidates: list[str]) -> dict[str, Any]:
        """Call the candidates in order until one answers."""
        refusals: list[GatewayError] = []
        for model in candidates:
            backend = self._backend_or_attempt(model, outcome)
            if backend is None:
                continue
            call = self._call(request, model, backend)
            try:
                async with self.queues.slot(model, request.rank):
                    trial = await self._probe(model, outcome.request_id)
                    self._unless_abandoned(model, outcome.request_id)
                    async for attempt in self._retrying(trial):
                        with attempt:
                            body = await self._attempt(
                                model,
                                outcome,
                                lambda c=call, b=backend, m=model: _answer(b.complete(c), m, c.timeout_s),
                                own_deadline=self._own_deadline(request, backend),
                            )
            except (QueueFullError, CircuitOpenError) as exc:
                self._refused(model, exc, outcome, refusals)
                continue
            except UpstreamError as exc:
                if _malformed(exc):
                    break  # the next model would be sent (and bill) the same malformed request
                continue
            outcome.model = model
            body["model"] = model
            return body
        raise self._failure(request, outcome, refusals)

    def _backend_or_attempt(self, model: str, outcome: Outcome) -> Backend | None:
        """The backend of a model the walk reached, or None (a failed attempt, logged: the walk goes on)
        when no upstream serves it: a routed fallback the catalog names but the config does not place."""
        try:
            return self._backend_for(model)[0]
        except LLMRouterError as exc:
            outcome.attempts.append({"model": model, "error": NO_UPSTREAM, "message": str(exc)[:1200]})
            return None

    def _refused(self, model: str, exc: GatewayError, outcome: Outcome, refusals: list[GatewayError]) -> None:
        """The gateway itself did not call ``model``: its queue refused the request (full, shed for a
        higher priority, or waited too long), or its half-open breaker had every probe in flight."""
        if isinstance(exc, QueueFullError):
            self.metrics.child(self.metrics.shed, model=model).inc()
            outcome.attempts.append({"model": model, "error": "queue full", "status": 429})
        else:
            outcome.attempts.append({"model": model, "error": "circuit half-open", "status": 503})
        refusals.append(exc)

    async def _attempt(
        self, model: str, outcome: Outcome, send: Any, stream: bool = False, own_deadline: bool = False
    ) -> Any:
        """One provider call: timed, recorded (breaker, live statistics, metrics), errors kept.
        ``own_deadline``: a timeout is the request's own (see :meth:`_own_deadline`), not counted.

        For a stream the call is its first chunk, and a first chunk is not yet a success: :meth:`_relay`
        records the call when the stream ends, so a model that always fails mid-stream trips its
        breaker and shows its failures in the live statistics.

        Each attempt counts in flight from here until it is recorded or released. The first attempt at a
        model is counted under the request id (a half-open breaker's probe admitted it under that id), each
        retry under a numbered one: its start and the failed attempt's record may go to Redis in one
        batch, plain commands before scripts, and under one id the record removed the retry's entry
        (counted once per model before, a retry ran uncounted, unseen by ``least_loaded`` and the
        half-open breaker)."""
        tried = sum(1 for a in outcome.attempts if a.get("model") == model)
        call_id = outcome.call_id = f"{outcome.request_id}.{tried}" if tried else outcome.request_id
        self._started(model, call_id)
        started = time.perf_counter()
        try:
            try:
                result = await send()
            except UpstreamError:
                raise
            except Exception as exc:  # a custom backend's own error: a failed call like any other
                _log_backend_error(model, exc)
                raise upstream_error(exc, model) from None
            except asyncio.CancelledError:  # the client left (or shutdown): the call ends, uncounted
                self._release(model, call_id)
                # Yet it was made (and may be billed): the log names the model and counts the attempt.
                latency = round((time.perf_counter() - started) * 1000, 3)
                outcome.attempts.append({"model": model, "error": self._left(), "latency_ms": latency})
                outcome.model = outcome.model or model
                raise
        except UpstreamError as exc:
            latency = (time.perf_counter() - started) * 1000
            outcome.attempts.append(
                {"model": model, "error": exc.reason, "status": exc.upstream_status, "message": str(exc)[:1200]}
                | ({"retry_after": exc.retry_after} if exc.retry_after is not None else {})
                | ({"code": exc.provider_code} if exc.provider_code else {})
                | ({"param": exc.provider_param} if exc.provider_param else {})
            )
            self.metrics.child(self.metrics.errors, model=model, reason=exc.reason).inc()
            if refused(exc.upstream_status) or (own_deadline and exc.reason == "timeout"):
                # The provider refused the request itself, or the request's own short deadline passed (the
                # client's doing): it says nothing about the model, so neither its breaker nor the live
                # statistics every process routes by count it.
                self._release(model, call_id)
            else:
                self._record_call(model, False, latency, call_id)
            raise
        latency = (time.perf_counter() - started) * 1000
        outcome.attempts.append({"model": model, "status": 200, "latency_ms": round(latency, 3)})
        if not stream:  # a stream's call succeeds (or not) at its end: see _stream_end
            self.metrics.child(self.metrics.upstream_latency, model=model).observe(latency / 1000)
            self._record_call(model, True, latency, call_id)
        return result

    def _failure(self, request: _Request, outcome: Outcome, refusals: list[GatewayError]) -> GatewayError:
        tried = [a for a in outcome.attempts if a.get("model")]
        if outcome.model is None and tried:  # logged and counted under the model chosen first
            outcome.model = tried[0]["model"]
        error: GatewayError
        if tried and refusals and all(a.get("error") in NOT_CALLED for a in tried):
            error = refusals[-1]  # no model was called: the client may come back
            self._failed(request, outcome, error.code)
            return error
        summary = "; ".join(
            f"{a['model']}: {a.get('error')}" + (f" ({a['status']})" if a.get("status") else "") for a in tried
        )
        error = AllModelsFailedError(f"No model could answer: {summary or 'every model is unavailable'}.", tried)
        # What the models that were there said (one no upstream serves has no status to weigh).
        called = [a for a in tried if a.get("error") != NO_UPSTREAM]
        statuses = [a.get("status") for a in called]
        waits = [a["retry_after"] for a in called if a.get("retry_after") is not None]
        last = called[-1] if called else {}
        if called and (all(refused(s) for s in statuses) or (refused(last.get("status")) and last["status"] != 404)):
            # Every model refused the request, or the walk ended at a refusal (never sent on to the next model,
            # unlike a 404), whatever failed before it: the client's error. The provider's own words, code
            # and param tell the client what to fix.
            failed = "; ".join(f"{a['model']}: {a.get('error')}" for a in tried if not refused(a.get("status")))
            error = AllModelsFailedError(
                "The request was refused: "
                + "; ".join(str(a.get("message") or a["model"]) for a in called if refused(a.get("status")))
                + (f" (before it: {failed})" if failed else ""),
                tried,
            )
            error.status, error.kind = int(last["status"]), "invalid_request_error"
            error.code, error.param = last.get("code") or "upstream_rejected", last.get("param")
        elif statuses and all(s == 429 for s in statuses):  # every model is rate-limited: the client may come back
            error.status, error.kind, error.code = 429, "rate_limit_error", "rate_limited"
            error.retry_after = max(waits) if waits else 1.0
        elif waits:  # a provider said when to come back (a 503 with Retry-After): so does the gateway
            error.retry_after = max(waits)
        # Logged under the gateway's own kind: a provider's code (any string) is the client's to read.
        self._failed(
            request, outcome, "upstream_rejected" if error.kind == "invalid_request_error" else str(error.code)
        )
        return error

    def _left(self) -> str:
        """Why a request was cancelled before its end: its client left, or the server's shutdown cut it off."""
        return "shutting_down" if self.shutting_down else "client_closed"

    def _failed(self, request: _Request, outcome: Outcome, code: str) -> None:
        """A request that ends in an error: one log entry and one count, whatever ended it."""
        outcome.ended = True
        outcome.latency_ms = (time.perf_counter() - outcome.started) * 1000  # how long the client waited
        entry = {"type": "completion", **self._entry(outcome), "status": "error", "error": code}
        self._log(entry, request.text)
        self.metrics.child(
            self.metrics.requests, model=outcome.model or "none", route=_route_label(outcome), status="error"
        ).inc()

    def _raise_if_breakers_blocked(self, unavailable: Mapping[str, str], excluded: Sequence[Any] = ()) -> None:
        """No model was eligible, and an open breaker is why: a 503 to retry after the cooldown, not a 400
        (the request is fine). So when every model's breaker is open, or when a model the request could
        use was ruled out by its open breaker alone."""
        blocked = any(unavailable.get(e.model) == e.reason for e in excluded)
        if unavailable and (blocked or set(self.models()) <= set(unavailable)):
            raise CircuitOpenError(
                "No model can answer this request while the circuit breakers of "
                f"{', '.join(sorted(unavailable))} are open after repeated failures; retry after the cooldown "
                f"({self.config.breaker.cooldown_s:g} s).",
                retry_after=self.config.breaker.cooldown_s,
            ) from None

    # ----------------------------------------------------------------- streaming
    async def _stream(
        self,
        request: _Request,
        outcome: Outcome,
        candidates: list[str],
        vector: list[float] | None,
        scope: str,
    ) -> StreamedCompletion:
        """Open the stream of the first candidate that produces a first chunk; then commit to it."""
        refusals: list[GatewayError] = []
        for model in candidates:
            backend = self._backend_or_attempt(model, outcome)
            if backend is None:
                continue
            call = self._call(request, model, backend)
            own_deadline = self._own_deadline(request, backend)
            stack = contextlib.AsyncExitStack()
            try:
                await stack.enter_async_context(self.queues.slot(model, request.rank))
                trial = await self._probe(model, outcome.request_id)
                self._unless_abandoned(model, outcome.request_id)
                async for attempt in self._retrying(trial):
                    with attempt:
                        chunks = backend.stream(call).__aiter__()
                        try:
                            first = await self._attempt(
                                model,
                                outcome,
                                lambda c=chunks, m=model, t=call.timeout_s: _first_chunk(c, m, t),
                                stream=True,
                                own_deadline=own_deadline,
                            )
                        except BaseException:
                            self._spawn(_close_chunks(chunks))  # the failed call's connection goes back
                            raise
            except (QueueFullError, CircuitOpenError) as exc:
                await stack.aclose()
                self._refused(model, exc, outcome, refusals)
                continue
            except UpstreamError as exc:
                await stack.aclose()
                if _malformed(exc):
                    break  # the next model would be sent (and bill) the same malformed request
                continue
            except BaseException:  # anything else (a cancellation, a bug): never keep the slot
                await stack.aclose()
                raise
            outcome.model = model
            request = replace(request, timeout_s=call.timeout_s)  # the relay waits for each chunk as long
            end = self._stream_end(request, outcome, chunks, stack)
            relay = self._relay(request, outcome, chunks, first, end, vector, scope, own_deadline)
            return StreamedCompletion(outcome, relay, release=end)
        raise self._failure(request, outcome, refusals)

    def _stream_end(
        self,
        request: _Request,
        outcome: Outcome,
        chunks: AsyncIterator[dict[str, Any]],
        stack: contextlib.AsyncExitStack,
    ) -> Callable[..., Awaitable[None]]:
        """What ends a stream, run once: by the relay when the stream ends, errs or is left, or by
        ``StreamedCompletion.aclose`` when it is closed before a chunk was read.

        ``ended`` is True at the provider's end, False when the provider failed mid-stream, None when
        the client left first. The call is recorded then (live statistics and breaker alike), with the
        latency of its first chunk; a client that goes away says nothing about the model's health."""
        model, call_id = str(outcome.model), outcome.call_id
        first_latency = float(outcome.attempts[-1].get("latency_ms") or 0.0)
        done = False

        async def end(
            ended: bool | None = None, after: Callable[..., Awaitable[None]] | None = None, blameless: bool = False
        ) -> None:
            """``after``: a whole answer whose client left (see :meth:`_relay`), settled by ``after(settle)``
            in a task. Claimed before the first wait: a leaving client's clean-up finds it done.
            ``blameless``: a failure that says nothing about the model (the request's own deadline)."""
            nonlocal done
            if done:
                return
            done = True
            if after is not None:
                await asyncio.shield(self._spawn(after(settle)))
            else:
                await settle(ended, blameless=blameless)

        async def settle(ended: bool | None, answered: bool = False, blameless: bool = False) -> None:
            # The provider's call may still be open: it is closed before its queue slot goes to the next
            # request (which would otherwise start beside it), in a task that a cancelled caller cannot stop.
            closing = self._spawn(_close_then_free(chunks, stack)) if ended is not True else None
            if ended is None and not answered:  # left before its end: one request, logged and counted, no call outcome
                self._failed(request, outcome, self._left())
                self._release(model, call_id)
            elif blameless:  # failed, logged as such by the relay, but not the model's doing
                self._release(model, call_id)
            else:  # the provider's end, its failure, or a whole answer the client left before the usage chunk
                success = bool(ended or answered)
                if success:
                    self.metrics.child(self.metrics.upstream_latency, model=model).observe(first_latency / 1000)
                self._record_call(model, success, first_latency, call_id)
            if closing is None:
                await stack.aclose()
            else:
                await asyncio.shield(closing)

        return end

    async def _relay(
        self,
        request: _Request,
        outcome: Outcome,
        chunks: AsyncIterator[dict[str, Any]],
        first: dict[str, Any],
        end: Callable[..., Awaitable[None]],
        vector: list[float] | None,
        scope: str,
        own_deadline: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        parts: list[str] = []
        refusals: list[str] = []
        # A delta the cache cannot keep (tool calls, audio, reasoning, another choice): the answer is not stored.
        unkept = False
        fingerprint: Any = None
        usage: Any = None
        finish_reason: str | None = None  # the provider's ("length" for a cut answer), kept for the cache
        # The gateway always asks for usage (accounting needs it); the client gets the usage-only
        # last chunk only if it asked for it too, as from OpenAI.
        wants_usage = _wants_usage(request)
        model = str(outcome.model)
        last_id = first.get("id")
        ended: bool | None = None
        relayed = 0
        n = request.params.get("n")
        answers = n if _whole(n) and n >= 1 else 1  # the choices asked for, and those the provider finished
        finished: set[int] = set()
        tail: asyncio.Future[dict[str, Any] | None] | None = None  # a read past the whole answer
        after = False  # the client left, or the provider failed, once it had every answer whole
        blameless = False  # a failure that is the request's own deadline passing, not the model's

        def answer(usage: Any) -> dict[str, Any]:
            message = {
                "role": "assistant",
                "content": "".join(parts) or (None if "".join(refusals) else ""),
                "refusal": "".join(refusals) or None,
            }
            return {
                "id": last_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": outcome.model,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason or "stop"}
                ],
                "usage": usage,
                **({"system_fingerprint": fingerprint} if fingerprint else {}),
            }

        try:
            chunk: dict[str, Any] | None = first
            while chunk is not None:
                relayed += 1
                if relayed % YIELD_EVERY_CHUNKS == 0:
                    # Chunks already buffered arrive without a pause: let other requests (and the
                    # server's check for a client that left) run between them.
                    await asyncio.sleep(0)
                chunk["model"] = outcome.model
                choices = chunk.get("choices") or []
                for choice in choices:
                    if not isinstance(choice, dict):  # relayed as it came; nothing to read in it
                        unkept = True
                        continue
                    delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                    content, refusal = delta.get("content"), delta.get("refusal")
                    parts.append(content if isinstance(content, str) else "")
                    refusals.append(refusal if isinstance(refusal, str) else "")
                    unkept = (
                        unkept
                        or choice.get("index", 0) != 0
                        # content as a list of parts (some reasoning models stream it so): relayed, not kept
                        or not isinstance(content, str | None)
                        or not isinstance(refusal, str | None)
                        or any(value is not None for key, value in delta.items() if key not in _KEPT_DELTA)
                    )
                    finish_reason = choice.get("finish_reason") or finish_reason
                    if choice.get("finish_reason"):
                        finished.add(choice.get("index", 0))
                usage = chunk.get("usage") or usage
                fingerprint = chunk.get("system_fingerprint") or fingerprint
                # The usage chunk the gateway asked for itself is held back (whatever else a provider adds to
                # every chunk: OpenRouter's "provider"); one with no choices and no usage that carries
                # something (Azure's prompt_filter_results) is the client's.
                if choices or wants_usage or (not chunk.get("usage") and set(chunk) - _USAGE_CHUNK_FIELDS):
                    if not wants_usage:
                        chunk.pop("usage", None)
                    yield chunk
                last_id = chunk.get("id")
                wait_s = request.timeout_s or DEFAULT_TIMEOUT_S
                if len(finished) >= answers:
                    # Past the whole answer: the usage chunk and the end remain. Read in a task that a
                    # leaving client does not cancel, so the usage still arrives (see the finally).
                    tail = asyncio.ensure_future(_next_chunk(chunks, model, wait_s))
                    chunk = await asyncio.shield(tail)
                else:
                    chunk = await _next_chunk(chunks, model, wait_s)
            ended = True
        except (asyncio.CancelledError, GeneratorExit):
            after = len(finished) >= answers
            raise
        except UpstreamError as exc:
            if len(finished) >= answers:  # past the whole answer: it stands, only its usage is lost
                after = True
                return
            ended = False
            blameless = own_deadline and exc.reason == "timeout"
            # The same call as the first chunk's attempt, now failed: noted, not counted as another call.
            outcome.attempts.append(
                {"model": model, "error": exc.reason, "message": str(exc)[:300], "mid_stream": True}
            )
            self.metrics.child(self.metrics.errors, model=model, reason=exc.reason).inc()
            self._failed(request, outcome, "stream_interrupted")
            raise
        finally:
            if after:
                # The client has every answer whole and left before the provider's last chunk, which
                # carries the usage (a client that stops at finish_reason), or the provider failed after
                # it: the provider bills the call, so the gateway reads on for its usage and accounts an
                # answered request, in a task that a cancelled caller cannot stop.
                await end(
                    None, after=lambda settle: self._account_left(request, outcome, chunks, tail, settle, answer, usage)
                )
            else:
                await end(ended, blameless=blameless)
        self._finish(request, outcome, answer(usage), None if unkept else vector, scope)

    async def _account_left(
        self,
        request: _Request,
        outcome: Outcome,
        chunks: AsyncIterator[dict[str, Any]],
        tail: asyncio.Future[dict[str, Any] | None] | None,
        settle: Callable[..., Awaitable[None]],
        answer: Callable[[Any], dict[str, Any]],
        usage: Any,
    ) -> None:
        """A whole answer whose client left early (see :meth:`_relay`): the rest of the provider's stream
        (from ``tail``, the read under way) is read for its usage, for ``TIMEOUT_GRACE_S`` at most, then
        the request is accounted as answered. Not cached: what the client kept of it is not known."""
        ended = None
        with contextlib.suppress(TimeoutError, UpstreamError):
            async with asyncio.timeout(TIMEOUT_GRACE_S):
                chunk = await tail if tail is not None else {}
                while chunk is not None:
                    usage = chunk.get("usage") or usage
                    chunk = await _next_chunk(chunks, str(outcome.model), TIMEOUT_GRACE_S)
                ended = True
        await settle(ended, answered=True)
        self._finish(request, outcome, answer(usage), None, "")

    def _cached(
        self, request: _Request, outcome: Outcome, hit: CachedAnswer, stream: bool
    ) -> Completion | StreamedCompletion:
        body = hit.body
        outcome.model = body.get("model")
        outcome.usage = usage_of(body)
        outcome.baseline_cost = cost_of(self._baseline_spec(), outcome.usage)
        outcome.cost = 0.0  # an answer from the cache costs nothing, whatever the model and its price
        outcome.latency_ms = (time.perf_counter() - outcome.started) * 1000
        extra: list[tuple[Any, ...]] = []
        if self.config.record_requests and outcome.model is not None:  # feedback on a cached answer works too
            store = self.router._core.store
            text = self._window(request.text)
            model = str(outcome.model)
            extra = store.record_request_commands(outcome.request_id, b"", text, model, request.prompt_tokens)
            extra += store.tenant_commands(outcome.request_id, outcome.tenant)
            extra += store.cached_commands(outcome.request_id)  # its feedback is logged, not learned
            extra += store.cache_entry_commands(outcome.request_id, hit.entry_id)
        self._log({"type": "completion", **self._entry(outcome), "status": "ok"}, request.text, extra)
        self._count_answer(outcome)
        # An answer of its own: the stored one's id and time belong to the request that was answered then.
        body = {**body, "id": "chatcmpl-" + outcome.request_id.removeprefix("req-"), "created": int(time.time())}
        if not stream:
            return Completion(body, outcome)
        wants_usage = _wants_usage(request)

        async def replay() -> AsyncIterator[dict[str, Any]]:
            choice = (body.get("choices") or [{}])[0]
            message = choice.get("message") or {}
            base = {
                "id": body["id"],
                "object": "chat.completion.chunk",
                "created": body["created"],
                "model": outcome.model,
                **({"system_fingerprint": body["system_fingerprint"]} if body.get("system_fingerprint") else {}),
            }
            # The whole message as one delta (a refusal, annotations... as a live stream carries them).
            delta = {"role": "assistant", "content": message.get("content")}
            delta.update({k: v for k, v in message.items() if k not in delta and v is not None})
            yield {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
            end = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason") or "stop"}
            yield {**base, "choices": [end]}
            if wants_usage:
                yield {**base, "choices": [], "usage": body.get("usage")}

        return StreamedCompletion(outcome, replay())

    # ----------------------------------------------------------------- accounting and logging
    def _baseline_spec(self) -> Any:
        """The baseline model's entry in the router's current catalog, so every process measures savings
        against the same model: worked out again when the catalog changes (a dearer model added, a price
        changed), never only at start-up. A model priced only by its route's cost never is the baseline."""
        catalog = self.router._core.catalog
        if self._baseline[0] is not catalog:
            try:
                name = baseline_model(catalog, self.config.baseline_model)
            except ConfigError as exc:  # the configured model lost its price since start-up: no saving
                logger.warning("gateway: %s; answers carry no saving until it has a price again", exc)
                name = None
            self._baseline = (catalog, catalog.get(name) if name else None)
        return self._baseline[1]

    def _finish(
        self,
        request: _Request,
        outcome: Outcome,
        body: dict[str, Any],
        vector: list[float] | None,
        scope: str,
    ) -> None:
        outcome.usage = usage_of(body)
        # The catalog's prices only: a route's cost prices a model for ranking, in any unit, never a bill.
        spec = self.router._core.catalog.get(str(outcome.model))
        outcome.cost = cost_of(spec, outcome.usage)
        outcome.baseline_cost = cost_of(self._baseline_spec(), outcome.usage)
        outcome.latency_ms = (time.perf_counter() - outcome.started) * 1000
        model = str(outcome.model)
        self._count_answer(outcome)
        m = self.metrics
        if outcome.usage.prompt_tokens is not None:
            m.child(m.tokens, model=model, kind="prompt").inc(outcome.usage.prompt_tokens)
        if outcome.usage.completion_tokens is not None:
            m.child(m.tokens, model=model, kind="completion").inc(outcome.usage.completion_tokens)
        if outcome.fallbacks_used:
            m.child(m.fallbacks, model=model).inc()
        extra: list[tuple[Any, ...]] = []
        window = self._window(request.text)  # what is embedded: kept for feedback, and the cache's key
        stored = outcome.cache == "miss" and self.cache is not None and vector is not None
        if self.config.record_requests and request.text:  # a request without text has nothing to learn from
            store = self.router._core.store
            # A passthrough request has no vector: its routing text (as the router keeps for its own
            # requests, not the whole prompt) is kept, embedded only if feedback comes.
            extra += store.record_request_commands(
                outcome.request_id, outcome.query_vector, window, model, request.prompt_tokens
            )
            extra += store.tenant_commands(outcome.request_id, outcome.tenant)
            if stored:
                assert self.cache is not None
                extra += store.cache_entry_commands(outcome.request_id, self.cache.entry_id(window, scope))
        self._log({"type": "completion", **self._entry(outcome), "status": "ok"}, request.text, extra)
        if stored:
            assert self.cache is not None and vector is not None
            self._spawn(self._cache_store(window, vector, scope, body))

    def _count_answer(self, outcome: Outcome) -> None:
        """The metrics every answered request moves, from a provider or from the cache alike (as the report counts)."""
        model, m = str(outcome.model), self.metrics
        m.child(m.requests, model=model, route=_route_label(outcome), status="ok").inc()
        m.child(m.latency, model=model).observe(outcome.latency_ms / 1000)
        if outcome.cost is not None:
            m.child(m.cost, model=model).inc(outcome.cost)
        if outcome.cost is not None and outcome.baseline_cost is not None:  # as the report counts a saving
            m.child(m.baseline, model=model).inc(outcome.baseline_cost)

    def _entry(self, outcome: Outcome) -> dict[str, Any]:
        decision = outcome.decision
        return {
            "request_id": outcome.request_id,
            "requested": outcome.requested,
            "priority": outcome.priority,
            "router": self.router.name,
            "route": outcome.route,
            "model": outcome.model,
            "strategy": outcome.strategy or ("passthrough" if outcome.passthrough else None),
            "confidence": outcome.confidence,
            "attempts": len([a for a in outcome.attempts if _provider_call(a)]),
            "fallbacks": outcome.fallbacks_used,
            "cache": outcome.cache == "hit",
            "cache_state": outcome.cache,
            "prompt_tokens": outcome.usage.prompt_tokens,
            "completion_tokens": outcome.usage.completion_tokens,
            "cost": outcome.cost,
            "baseline_cost": outcome.baseline_cost,
            "latency_ms": round(outcome.latency_ms, 3),
            "reasons": " | ".join(
                f"{e.model}: {e.reason}" for e in (decision.excluded if decision else outcome.excluded)
            ),
            **({"tenant": outcome.tenant} if outcome.tenant else {}),
        }

    def _log(self, entry: dict[str, Any], text: str | None, extra: Sequence[tuple[Any, ...]] = ()) -> None:
        """Append to the decisions stream (and run ``extra`` commands) after the answer, off the request path."""
        commands = list(extra)
        cache_state = entry.pop("cache_state", "bypass")
        if cache_state in ("hit", "miss"):
            commands.append(("HINCRBY", "llmrouter:cache:stats", cache_state, "1"))
        if self.config.log.enabled:
            fields = {"type": entry.pop("type"), "ts": live_now_ms(), **entry}
            if text is not None:
                fields.update(decisions.text_fields(text, self.config.log.store_text))
            commands.append(decisions.append_command(self.router.name, fields, self.config.log.max_entries))
        self._writes.add(commands=commands)

    def _started(self, model: str, call_id: str) -> None:
        """Count the call in flight (shared in Redis) until it finishes: on a lease this process renews
        while the call runs, so the calls of a process killed mid-call stop counting within the lease."""
        commands = live.start_commands(model, call_id, live_now_ms(), live.CALL_LEASE_MS)
        self._calls[(model, call_id)] = None
        if self._leases is None or self._leases.done():
            self._leases = asyncio.ensure_future(self._renew_leases())
        now = time.monotonic()
        if model not in self.router.models and now - self._served.get(model, -math.inf) >= live.SERVED_RENEW_S:
            if len(self._served) >= MAX_CACHED_MODELS:
                self._served.clear()
            self._served[model] = now  # so that every process's /stats lists it
            commands = [*commands, *live.served_commands(self.router.name, model, live_now_ms())]
        self._writes.add(commands=commands)

    async def _renew_leases(self) -> None:
        """While calls are in flight, renew their leases a few times per lease (one write for all of them)."""
        while self._calls:
            await asyncio.sleep(CALL_LEASE_RENEW_S)
            now = live_now_ms()
            commands = [
                c for model, rid in self._calls for c in live.renew_commands(model, rid, now, live.CALL_LEASE_MS)
            ]
            if commands:
                self._writes.add(commands=commands)

    def _release(self, model: str, call_id: str) -> None:
        """End a call in flight without counting it: the provider refused the request as malformed, or its
        client left; neither says anything about the model."""
        self._calls.pop((model, call_id), None)
        self._writes.add(commands=live.release_commands(model, call_id))

    def _record_call(
        self, model: str, success: bool, latency_ms: float, call_id: str, breaker_too: bool = True
    ) -> None:
        self._calls.pop((model, call_id), None)
        now = live_now_ms()
        finish = live.finish_args(model, success=success, latency_ms=latency_ms, request_id=call_id, now_ms=now)
        self._writes.add(scripts=[(live.FINISH_SCRIPT, finish)])
        if breaker_too:
            self._record_breaker(model, success, now)

    def _record_breaker(self, model: str, success: bool, now_ms: int) -> None:
        cfg = self.config.breaker
        record = breaker.record_args(model, success, now_ms, cfg.failures, cfg.successes, int(cfg.cooldown_s * 1000))
        self._writes.add(scripts=[(breaker.RECORD_SCRIPT, record)])
        if not success:
            self._breakers.pop(model, None)  # a failure may open the breaker: reread it next time

    async def _cache_store(self, text: str, vector: list[float], scope: str, body: Mapping[str, Any]) -> None:
        assert self.cache is not None
        try:
            await self.cache.store(text, vector, scope, body)
        except Exception as exc:
            self._cache_failed(exc)

    def _queue_changed(self, queue: ModelQueue) -> None:
        """Keep this process's queue gauges current (with several workers, /metrics sums every worker's)."""
        self.metrics.child(self.metrics.queue_depth, model=queue.model).set(queue.waiting)
        self.metrics.child(self.metrics.queue_active, model=queue.model).set(queue.active)

    def _cache_failed(self, exc: BaseException) -> None:
        """Log a failed cache lookup or store and, once at a time, create the index again if it is gone."""
        logger.warning("semantic cache unavailable, request served without it: %s", exc)
        if self.cache is not None and (self._cache_repair is None or self._cache_repair.done()):
            self._cache_repair = asyncio.ensure_future(self.cache.repair())
            self._spawn(self._cache_repair)

    async def _refresh_router(self) -> bool:
        """Pick up a change another process made to the router (a new route, thresholds, settings)
        before routing on it; True when the definition changed. Checked at most every
        ``ROUTER_REFRESH_S`` (one small read). Checked in the background, the first request after a
        quiet spell was routed on the old definition, in every process, however long ago the change
        was made; requests arriving while a check is under way wait for it (in a task of its own: a
        request that is cancelled does not stop it for the others)."""
        if self._refreshing is None or self._refreshing.done():
            if time.monotonic() - self._refreshed < ROUTER_REFRESH_S:
                return False
            return await asyncio.shield(self._start_check())
        return await asyncio.shield(self._refreshing)

    def _start_check(self) -> asyncio.Future[bool]:
        self._check_started = time.monotonic()
        self._refreshing = self._spawn(self._check_router())
        return self._refreshing

    async def _check_router(self) -> bool:
        if time.monotonic() - self._references_checked >= REFERENCES_CHECK_S:
            self._references_checked = time.monotonic()
            self._spawn(self._restore_references())
        try:
            changed = await self.router.refresh()
            self._adopted += changed
            self.router_recreated = None  # recreated again as this process can route on it: adopted
        except VectorizerMismatchError as exc:
            self._recreated(exc)
            changed = False
        except Exception as exc:  # routing goes on with the definition it has, and reports its own errors
            logger.warning("gateway: could not check router %r for changes: %s", self.router.name, loggable(exc))
            changed = False
        finally:
            self._refreshed = time.monotonic()
        self.queues.set_limits(_concurrency_limits(self.router.catalog))  # a catalog change reaches the queues
        return changed

    def _recreated(self, exc: VectorizerMismatchError) -> RouterRecreatedError:
        """Note that the router was recreated with vectors this process does not make (logged once).

        Its searches would fail on every request (500s) with /health ok: routed requests are refused
        with a 503 saying why, and /health fails, so an orchestrator restarts the process."""
        if self.router_recreated is None:
            logger.error(
                "gateway: router %r was recreated with vectors this process does not make; restart it to serve "
                "the router again (%s)", self.router.name, exc,
            )  # fmt: skip
        self.router_recreated = (
            f"Router {self.router.name!r} was recreated with vectors this gateway does not make ({exc}); the "
            "gateway must be restarted to route on it. Requests for a concrete model are still served."
        )
        return RouterRecreatedError(self.router_recreated)

    async def _restore_references(self) -> None:
        """Write back references Redis lost while the index stayed (see ``recover``), off the request path."""
        try:
            await self.router.recover()
        except VectorizerMismatchError as exc:  # recreated elsewhere: nothing of this process's is written
            self._recreated(exc)
        except Exception as exc:  # routing reports its own errors; this check tries again later
            logger.warning("gateway: could not check router %r's references: %s", self.router.name, loggable(exc))

    def _spawn(self, work: Awaitable[T]) -> asyncio.Future[T]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("gateway background write failed: %s", task.exception())


#: What a streamed answer's deltas may hold for the cache to keep it (with the role, whatever its value).
_KEPT_DELTA = frozenset({"role", "content", "refusal"})


def _abandoned() -> bool:
    """Whether this task was cancelled (its client left) although no ``CancelledError`` reached it.

    redis-py's asyncio pool can return a read whose task was cancelled meanwhile (a few percent of
    cancelled reads under pool contention): the request would go on to queue for and call, and be
    billed by, a provider for a client that has gone, and end with nobody to answer or log it.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


#: The fields of a stream's usage chunk: one with no choices and nothing else is not relayed unless asked for.
_USAGE_CHUNK_FIELDS = frozenset(
    {"id", "object", "created", "model", "choices", "usage", "system_fingerprint", "service_tier", "obfuscation"}
)


def _wants_usage(request: _Request) -> bool:
    """Whether the client asked for a stream's usage-only last chunk (the gateway always asks upstream)."""
    return bool((request.params.get("stream_options") or {}).get("include_usage"))


def _concurrency_limits(catalog: Iterable[Any]) -> dict[str, int]:
    """The per-model concurrency limits a catalog sets (``max_concurrency``)."""
    return {m.name: m.max_concurrency for m in catalog if m.max_concurrency}


def _whole(value: Any) -> bool:
    """Whether a request's ``value`` is a whole number (JSON's true is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _upstream_timeout(backend: Backend) -> float:
    """How long a call through ``backend`` may take unless the request gives its own timeout."""
    upstream = getattr(backend, "upstream", None)
    return upstream.timeout_s if isinstance(upstream, Upstream) else DEFAULT_TIMEOUT_S


def _not_utf8(value: Any, where: str) -> str | None:
    """Where in ``value`` (a request field's JSON value) a string cannot be encoded as UTF-8, or None."""
    if isinstance(value, str):
        return None if value.isascii() or text_problem(value) is None else where
    if isinstance(value, Mapping):
        for key, item in value.items():
            if (found := _not_utf8(key, f"{where} (a key)") or _not_utf8(item, f"{where}.{key}")) is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if (found := _not_utf8(item, f"{where}[{i}]")) is not None:
                return found
    return None


def _provider_call(attempt: Mapping[str, Any]) -> bool:
    """Whether an attempt entry is a provider call (not a queue's refusal, nor a stream's later failure)."""
    return bool(attempt.get("model")) and attempt.get("error") not in NOT_CALLED and not attempt.get("mid_stream")


def _malformed(exc: UpstreamError) -> bool:
    """A provider refused the request itself (a 4xx other than 404, which may only mean this model is
    missing there): no fallback model is tried, as LiteLLM's router does not fall back on a bad request."""
    return refused(exc.upstream_status) and exc.upstream_status != 404


async def _answer(call: Awaitable[Any], model: str, timeout_s: float) -> dict[str, Any]:
    """A provider's answer, refused (as a server error: retried, then the next model) without choices."""
    try:
        async with asyncio.timeout(timeout_s + TIMEOUT_GRACE_S):
            body = await call
    except TimeoutError as exc:
        raise upstream_error(exc, model) from None
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
        raise UpstreamError(f"{model}: the provider answered without choices", retryable=True, reason="server")
    return body


async def _first_chunk(chunks: AsyncIterator[dict[str, Any]], model: str, timeout_s: float) -> dict[str, Any]:
    """A stream's first chunk; a stream that ends before it is a failed call (retried, then the next model)."""
    chunk = await _next_chunk(chunks, model, timeout_s)
    if chunk is None:
        raise UpstreamError(f"{model}: the provider's stream ended without a chunk", retryable=True, reason="server")
    return chunk


async def _close_then_free(chunks: AsyncIterator[dict[str, Any]], stack: contextlib.AsyncExitStack) -> None:
    """Close a provider's stream left before its end, then free its queue slot (a provider that takes
    longer than ``TIMEOUT_GRACE_S`` to close keeps it no longer)."""
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TIMEOUT_GRACE_S):
                await _close_chunks(chunks)
    finally:
        await stack.aclose()


async def _close_chunks(chunks: AsyncIterator[dict[str, Any]]) -> None:
    """Close a provider's stream left before its end (its HTTP response goes back to the pool)."""
    closer = getattr(chunks, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()


async def _next_chunk(chunks: AsyncIterator[dict[str, Any]], model: str, timeout_s: float) -> dict[str, Any] | None:
    """The stream's next chunk, None at its end; a custom backend's own error, or a chunk that takes
    longer than the call's timeout, is a failed call."""
    try:
        async with asyncio.timeout(timeout_s + TIMEOUT_GRACE_S):
            return await anext(chunks, None)
    except UpstreamError:
        raise
    except TimeoutError as exc:
        raise upstream_error(exc, model) from None
    except Exception as exc:
        _log_backend_error(model, exc, " mid-stream")
        raise upstream_error(exc, model) from None


def _log_backend_error(model: str, exc: BaseException, when: str = "") -> None:
    """A custom backend's own error, logged by its type only: its message may quote a secret (the
    provider's key). The traceback goes to DEBUG, for whoever wrote the backend."""
    logger.warning("backend for %s raised %s%s", model, type(exc).__name__, when)
    logger.debug("backend for %s raised%s", model, when, exc_info=True)


def _route_label(outcome: Outcome) -> str:
    """The ``route`` label of a request's metrics, as the report names it: its route, else ``passthrough``
    (a concrete model was asked for), ``cache`` (a routed request answered from the cache) or ``unmatched``."""
    if outcome.route is not None:
        return str(outcome.route)
    if outcome.passthrough:
        return "passthrough"
    return "cache" if outcome.cache == "hit" else "unmatched"


def request_error_code(exc: LLMRouterError) -> str:
    """The ``code`` the server answers a router error with, and the log records: a Redis problem's
    (``app`` answers those with 503 or 500), else the error's class in snake case
    (``UnknownModelError``: ``unknown_model``)."""
    if isinstance(exc, RedisPoolTimeoutError):
        return "redis_busy"
    if isinstance(exc, RedisUnavailableError):
        return "redis_unavailable"
    if isinstance(exc, RedisCredentialsError):
        return "redis_credentials"
    if isinstance(exc, (RedisCommandError, RedisPermissionError, RouterStateLostError, ConflictError)):
        return "redis_read_only" if transient_redis_error(exc) else "redis_error"
    words = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
    return words.removesuffix("_error") or "error"


def _pairs(reply: Any) -> list[tuple[Any, Any]]:
    if isinstance(reply, Mapping):
        return list(reply.items())
    flat = list(reply or [])
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2)]


def _decision_fields(match: RouteMatch, router: str) -> dict[str, Any]:
    decision = match.decision
    return {
        "router": router,
        "route": match.name,
        "model": match.model,
        "strategy": decision.strategy.value if decision else None,
        "confidence": match.confidence,
        "reasons": " | ".join(f"{e.model}: {e.reason}" for e in decision.excluded) if decision else "",
    }


def _backend_key(upstream: Upstream) -> str:
    """What a backend client is shared under: every setting of its upstream (two upstreams that differ in
    key, name mapping or timeout never share a client), the key as a hash (the id may be logged)."""
    settings = upstream.model_dump(exclude={"models", "api_key"})
    secret = upstream.api_key.get_secret_value() if upstream.api_key is not None else ""
    settings["api_key"] = hashlib.sha256(secret.encode()).hexdigest()[:16] if secret else None
    return (
        f"{upstream.backend}:{upstream.name}:"
        + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    )


def _litellm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("litellm") is not None


def _options_field(strategy: Any) -> str:
    """The field a refused ``route_options`` names: its strategy when that is unknown, else its constraints."""
    try:
        Strategy(getattr(strategy, "value", strategy))
    except ValueError:
        return "strategy" if strategy is not None else "constraints"
    return "constraints"


def tenant_of(api_key: str | None) -> str:
    """A tenant label from a client's API key: its hash, never the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else ""

"""The asynchronous router: the same core operations as :class:`SemanticRouter`, driven with ``await``.

Nothing here decides anything about routing; each method hands a generator from
:mod:`redisvl_llmrouter.core` to :func:`adrive`, which awaits the Redis commands and embeddings
it asks for. Embedding never holds the event loop: a vectorizer without async code of its own
(a local model, a blocking HTTP client) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redisvl.index import AsyncSearchIndex
from redisvl.utils.vectorize import BaseVectorizer, CustomVectorizer

from redisvl_llmrouter import compat, connection, fork_safety
from redisvl_llmrouter.core import OPERATION, Acquire, Command, Embed, FeedbackResult, Op, Pipeline, RouterCore
from redisvl_llmrouter.errors import LLMRouterError, RouterLoopError
from redisvl_llmrouter.learning.calibration import Calibration
from redisvl_llmrouter.learning.prediction import Prediction
from redisvl_llmrouter.learning.records import checked_model_map
from redisvl_llmrouter.learning.store import MemoryInfo, WriteReport
from redisvl_llmrouter.policy.catalog import ModelCatalog, ModelSpec
from redisvl_llmrouter.policy.constraints import Constraints
from redisvl_llmrouter.policy.stats import ModelStats
from redisvl_llmrouter.ranking import RouteDistances
from redisvl_llmrouter.router import (
    BaseSemanticRouter,
    _resolve_vectorizer,
    checked_dtype,
    definition_kwargs,
    existing_kwargs,
    feedback_target,
    outcome_records,
    pretrained_kwargs,
    route_options,
)
from redisvl_llmrouter.schema import (
    DistanceAggregationMethod,
    LearningConfig,
    Route,
    RouteMatch,
    RoutingConfig,
    Strategy,
)
from redisvl_llmrouter.stored_definition import attach_definition

__all__ = ["AsyncSemanticRouter", "adrive"]

T = TypeVar("T")


async def _perform(
    request: Command | Pipeline | Embed | Acquire, client: aredis.Redis, vectorizer: BaseVectorizer | None
) -> Any:
    if isinstance(request, Acquire):
        acquired = request.lock.acquire()
        if inspect.isawaitable(acquired):  # an asyncio.Lock; a threading.Lock has already been taken
            await acquired
        return None
    if isinstance(request, Command):
        return await client.execute_command(*request.args)
    if isinstance(request, Pipeline):
        pipe = client.pipeline(transaction=False)
        for args in request.commands:
            pipe.execute_command(*args)
        return await pipe.execute(raise_on_error=not request.errors_as_replies)
    assert vectorizer is not None, "an operation without a vectorizer asked to embed"
    if _embeds_on_the_loop(vectorizer):
        return await asyncio.to_thread(_embed_in_turn, vectorizer, list(request.texts))
    return await vectorizer.aembed_many(list(request.texts), batch_size=64)


#: Sync-only vectorizers embed one call at a time, as they did on the event loop: a fast tokenizer used
#: from two threads at once can fail ("Already borrowed").
_SYNC_EMBEDDING = threading.Lock()


def _embed_in_turn(vectorizer: BaseVectorizer, texts: list[str]) -> Any:
    with _SYNC_EMBEDDING:
        return vectorizer.embed_many(texts, batch_size=64)


def _embeds_on_the_loop(vectorizer: BaseVectorizer) -> bool:
    """Whether the vectorizer's ``aembed_many`` would run its sync ``embed_many`` on the event loop.

    RedisVL falls back to that for a vectorizer with no async code of its own (``HFTextVectorizer``, Cohere,
    Bedrock, Vertex AI; a ``CustomVectorizer`` given no ``aembed_many``), logging a warning on every call:
    a local model's forward pass or a blocking HTTP call would then hold every other task of the loop.
    Not with an embeddings cache: the sync path would use the cache's sync client, which one built for
    async code lacks (RedisVL would then try ``localhost:6379``), so such a vectorizer stays as it was."""
    if getattr(vectorizer, "cache", None) is not None:
        return False
    if isinstance(vectorizer, CustomVectorizer):
        return getattr(vectorizer, "_aembed_func_many", None) is None
    return type(vectorizer)._aembed_many is BaseVectorizer._aembed_many


class _Returned(Exception):  # a StopIteration cannot cross a thread's future: this carries its value
    def __init__(self, value: Any) -> None:
        self.value = value


def _resume(method: Any, value: Any) -> Any:
    try:
        return method(value)
    except StopIteration as stop:
        raise _Returned(stop.value) from None


async def adrive(op: Op[T], client: aredis.Redis, vectorizer: BaseVectorizer | None = None, offload: bool = False) -> T:
    """Run a core operation to completion, awaiting each request.

    ``offload``: the operation's own steps run in a worker thread (a report parsing and summarising
    thousands of log entries), so the event loop serves other requests meanwhile.
    """
    try:
        request = await asyncio.to_thread(_resume, op.send, None) if offload else next(op)
        while True:
            try:
                result = await _perform(request, client, vectorizer)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise connection.translate(exc, client) from exc
            except Exception as exc:
                request = await asyncio.to_thread(_resume, op.throw, exc) if offload else op.throw(exc)
            else:
                request = await asyncio.to_thread(_resume, op.send, result) if offload else op.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except _Returned as stop:
        return stop.value  # type: ignore[no-any-return]
    except LLMRouterError:  # typed already (a credentials error is a redis-py ConnectionError too)
        raise
    except RedisError as exc:
        raise connection.translate(exc, client) from exc
    finally:
        # An operation left mid-way (a lost connection, a cancelled task) releases what it holds; one whose
        # step still runs in its thread (cancelled while offloaded) is closed when it is collected.
        with contextlib.suppress(ValueError):
            op.close()


class AsyncSemanticRouter(BaseSemanticRouter):
    """The asynchronous :class:`~redisvl_llmrouter.SemanticRouter`.

    Build it with ``await AsyncSemanticRouter.create(...)``; every method has the same name and
    arguments as the sync router's and is awaited.
    """

    _index_class = AsyncSearchIndex

    def __init__(
        self,
        core: RouterCore | None = None,
        client: aredis.Redis | None = None,
        owns_client: bool = False,
        **kwargs: Any,
    ) -> None:
        # Private: construction needs I/O, which __init__ cannot await. Use create().
        if kwargs or not isinstance(core, RouterCore) or client is None:
            raise TypeError(
                "AsyncSemanticRouter is built with `await AsyncSemanticRouter.create(name=..., routes=...)` "
                "(or `await AsyncSemanticRouter.from_pretrained(...)` / `.from_existing(...)`): building it "
                "talks to Redis, which __init__ cannot await."
            )
        self._core = core
        self._client = client
        self._owns_client = owns_client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_pid = os.getpid()  # a forked child has the parent's loop object, never running there
        self._loop_lock = fork_safety.lock()  # two threads' loops arriving at once: one moves the client

    @classmethod
    async def create(
        cls,
        name: str,
        routes: Sequence[Route] | None = None,
        vectorizer: BaseVectorizer | None = None,
        routing_config: RoutingConfig | None = None,
        redis_client: aredis.Redis | None = None,
        redis_url: str | None = None,
        overwrite: bool = False,
        connection_kwargs: dict[str, Any] | None = None,
        embedding_cache_size: int = 1024,
        catalog: ModelCatalog | Mapping[str, Any] | None = None,
        learning: LearningConfig | Mapping[str, Any] | None = None,
        *,
        create_index: bool = True,
        dtype: str | None = None,
        _precomputed: Mapping[tuple[str, str], bytes] | None = None,
        _outcomes: Sequence[Any] = (),
        _attach: bool = False,
    ) -> AsyncSemanticRouter:
        """Create (or attach to an identical) router; arguments as for :class:`SemanticRouter`."""
        compat.check_create_index(create_index, overwrite)
        core = RouterCore(
            name,
            routes or [],
            _resolve_vectorizer(compat.resolve_vectorizer(vectorizer, checked_dtype(dtype)), None),
            routing_config,
            embedding_cache_size,
            catalog,
            learning,
            manages_index=create_index,
        )
        core.write_lock = asyncio.Lock()  # writers on this object wait for each other without blocking the loop
        core.check_outcome_rows(_outcomes)
        client = connection.async_client(redis_client, redis_url, connection_kwargs)
        router = cls(core, client, owns_client=redis_client is None)
        await router._run(core.setup(overwrite, _precomputed, _attach))
        if _outcomes:
            await router._run(core.import_outcomes(_outcomes))
        return router

    @property
    def _index(self) -> Any:
        """RedisVL's ``AsyncSearchIndex``, on the client of the running loop (see ``_follow_loop``)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # outside a loop: nothing to follow yet
            return super()._index
        self._follow_loop()
        return super()._index

    async def _run(self, op: Op[T]) -> T:
        self._core.check_not_deleted()
        self._follow_loop()
        operation = object()
        running = OPERATION.set(operation)
        try:
            return await adrive(op, self._client, self._core.vectorizer)
        except BaseException:
            if operation in self._core.unsettled:  # its write stopped half-way: what it left unlisted goes
                with contextlib.suppress(Exception):
                    await adrive(self._core.settle(operation), self._client)
            raise
        finally:
            OPERATION.reset(running)

    def _follow_loop(self) -> None:
        """Rebind to the running event loop when it changed (``asyncio.run`` called again, a notebook cell).

        redis-py's asyncio connections, its pool's wait condition and our write lock belong to the loop
        they were first used on; on a later loop they fail with "Event loop is closed" or "attached to
        a different loop". A client this router opened is replaced by a new one with the same settings;
        a caller's own client is the caller's to rebuild, so that gets a clear error instead. In a
        forked child the parent's loop (which may look running) and connections are copies: moved too.
        """
        loop = asyncio.get_running_loop()
        with self._loop_lock:
            self._move_to(loop)

    def _move_to(self, loop: asyncio.AbstractEventLoop) -> None:
        forked = self._loop_pid != os.getpid()
        if self._loop is loop and not forked:
            return
        if self._loop is not None:
            # Two loops at once: moving the client would cut the other's calls.
            if self._loop.is_running() and not forked:
                raise RouterLoopError(
                    "This AsyncSemanticRouter is in use on another event loop (another thread's) right now; "
                    "its connections belong to that loop. Create one router per event loop, or use "
                    "SemanticRouter, which any thread may share."
                )
            if not self._owns_client:
                raise RouterLoopError(
                    "This AsyncSemanticRouter was used on another event loop, and its Redis client (yours, "
                    "passed as redis_client=) belongs to that loop. Build the router and its client inside "
                    "the loop that uses them, or let the router open its own client (redis_url=...)."
                )
            self._client = connection.rebuilt_async_client(self._client)
            self._search_index = None
            self._core.write_lock = asyncio.Lock()
        self._loop, self._loop_pid = loop, os.getpid()

    async def __call__(
        self,
        statement: str | None = None,
        vector: Sequence[float] | None = None,
        aggregation_method: DistanceAggregationMethod | None = None,
        distance_threshold: float | None = None,
        *,
        strategy: Strategy | str | None = None,
        constraints: Constraints | Mapping[str, Any] | None = None,
        prompt_tokens: int | None = None,
        unavailable: Mapping[str, str] | None = None,
        stats: Mapping[str, ModelStats | Mapping[str, Any]] | None = None,
        record: bool = False,
    ) -> RouteMatch:
        """Route a statement (or a ready vector); see :meth:`SemanticRouter.__call__`."""
        if distance_threshold is not None:
            compat.warn_deprecated("distance_threshold")
        options = route_options(strategy, constraints, prompt_tokens, unavailable, stats, record)
        return await self._run(self._core.route(statement, vector, aggregation_method, options))

    async def route_many(
        self,
        statement: str | None = None,
        vector: Sequence[float] | None = None,
        max_k: int | None = None,
        distance_threshold: float | None = None,
        aggregation_method: DistanceAggregationMethod | None = None,
    ) -> list[RouteMatch]:
        """Up to ``max_k`` passing routes, best first (``distance_threshold``: deprecated, ignored)."""
        if distance_threshold is not None:
            compat.warn_deprecated("distance_threshold")
        return await self._run(self._core.route_many(statement, vector, max_k, aggregation_method))

    async def route_batch(
        self,
        statements: Sequence[str] | None = None,
        vectors: Sequence[Sequence[float]] | None = None,
        aggregation_method: DistanceAggregationMethod | None = None,
        *,
        strategy: Strategy | str | None = None,
        constraints: Constraints | Mapping[str, Any] | None = None,
    ) -> list[RouteMatch]:
        """A match (and decision) for each of many queries; see :meth:`SemanticRouter.route_batch`."""
        options = route_options(strategy, constraints, None, None, None, False)
        return await self._run(self._core.route_batch(statements, vectors, aggregation_method, options))

    async def learn(
        self,
        rows: Any,
        *,
        model_map: Mapping[str, str] | None = None,
        vectors: Sequence[Sequence[float]] | None = None,
        batch_size: int = 256,
        progress: Any = None,
    ) -> WriteReport:
        """Bulk-load outcomes into the memory; see :meth:`SemanticRouter.learn`."""
        records = outcome_records(rows)
        return await self._run(self._core.learn(records, checked_model_map(model_map), vectors, batch_size, progress))

    async def feedback(
        self,
        request_id_or_statement: str | None = None,
        model: str | None = None,
        quality: float | None = None,
        cost: float | None = None,
        *,
        latency_ms: float | None = None,
        request_id: str | None = None,
        statement: str | None = None,
    ) -> FeedbackResult:
        """Record one observed outcome; see :meth:`SemanticRouter.feedback`."""
        rid, text = feedback_target(request_id_or_statement, request_id, statement)
        return await self._run(
            self._core.feedback(rid, text, model=model, quality=quality, cost=cost, latency_ms=latency_ms)  # type: ignore[arg-type]
        )

    async def predict(
        self, statements: Sequence[str] | None = None, vectors: Sequence[Sequence[float]] | None = None
    ) -> list[Prediction | None]:
        """Each model's expected quality and cost for each request, from the outcome memory.

        ``None`` for every request while the memory is empty. Nothing is routed or recorded.
        """
        return await self._run(self._core.predict(statements, vectors))

    async def calibrate(
        self,
        *,
        budget: float | None = None,
        strong_share: float | None = None,
        quality: float | None = None,
        sample: int = 2000,
        output_tokens: int | None = None,
        apply: bool = True,
    ) -> Calibration:
        """Set ``cost_weight`` for one goal, measured on the outcome memory's own requests.

        Give exactly one goal: ``budget`` (most mean USD per request), ``strong_share`` (most
        share of requests sent to the model with the best mean predicted quality) or ``quality``
        (least mean predicted quality, at the lowest cost). With ``apply`` the new weight is
        saved in the routing config; the result says what it achieves on those requests.
        """
        return await self._run(
            self._core.calibrate(
                budget=budget,
                strong_share=strong_share,
                quality=quality,
                sample=sample,
                output_tokens=output_tokens,
                apply=apply,
            )
        )

    async def call_started(self, model: str, request_id: str, timeout_ms: int = 120_000) -> None:
        """Count a call to ``model`` as in flight until :meth:`call_finished` (or the timeout); shared in Redis."""
        await self._run(self._core.call_started(model, request_id, timeout_ms))

    async def call_finished(
        self, model: str, *, success: bool, latency_ms: float | None = None, request_id: str = ""
    ) -> None:
        """Record a finished call: latency and success averages, counters, in-flight count (shared in Redis)."""
        await self._run(self._core.call_finished(model, success=success, latency_ms=latency_ms, request_id=request_id))

    async def live_stats(self, models: Sequence[str] | None = None) -> dict[str, ModelStats]:
        """Latency, success rate, in-flight calls and counters per model, as all processes measured them."""
        return await self._run(self._core.live_stats(models))

    async def round_robin_position(self, route_name: str) -> int:
        """The round-robin counter of a route in Redis (how many requests it has rotated so far)."""
        return await self._run(self._core.round_robin_position(route_name))

    async def memory_info(self) -> MemoryInfo:
        return await self._run(self._core.memory_info())

    async def clear_memory(self) -> int:
        return await self._run(self._core.clear_memory())

    async def revert_promotions(self) -> int:
        return await self._run(self._core.revert_promotions())

    async def update_catalog(self, catalog: ModelCatalog | Mapping[str, Any] | Sequence[Any]) -> None:
        await self._run(self._core.update_catalog(catalog))

    async def add_models(self, models: Sequence[ModelSpec | Mapping[str, Any] | str]) -> list[str]:
        return await self._run(self._core.add_models(models))

    async def update_learning(self, learning: LearningConfig | Mapping[str, Any]) -> None:
        await self._run(self._core.update_learning(learning))

    async def distances(
        self, statements: Sequence[str] | None = None, vectors: Sequence[Sequence[float]] | None = None
    ) -> list[list[RouteDistances]]:
        """The per-route distance rows behind each query's ranking (for analysis and evaluation)."""
        return await self._run(self._core.distances(statements, vectors))

    async def add_route(self, route: Route) -> str:
        return await self._run(self._core.add_route(route))

    async def _add_routes(self, routes: Sequence[Route]) -> None:
        """RedisVL's bulk add; see :meth:`SemanticRouter._add_routes`."""
        await self._run(self._core.add_routes(routes))

    async def remove_route(self, route_name: str) -> None:
        await self._run(self._core.remove_route(route_name))

    async def add_route_references(self, route_name: str, references: str | list[str]) -> list[str]:
        return await self._run(self._core.add_route_references(route_name, references))

    async def get_route_references(
        self, route_name: str = "", reference_ids: list[str] | None = None, keys: list[str] | None = None
    ) -> list[dict[str, Any]]:
        return await self._run(self._core.get_route_references(route_name, reference_ids, keys))

    async def delete_route_references(
        self, route_name: str = "", reference_ids: list[str] | None = None, keys: list[str] | None = None
    ) -> int:
        return await self._run(self._core.delete_route_references(route_name, reference_ids, keys))

    async def update_route_thresholds(self, route_thresholds: Mapping[str, float]) -> None:
        await self._run(self._core.update_route_thresholds(route_thresholds))

    async def update_routing_config(self, routing_config: RoutingConfig | Mapping[str, Any]) -> None:
        """Replace the routing config with a ``RoutingConfig``, or change the settings a dict names (persisted)."""
        await self._run(self._core.update_routing_config(routing_config))

    async def delete(self) -> None:
        await self._run(self._core.delete())

    async def recover(self) -> bool:
        """Rebuild the index, references and config if they vanished from Redis (see ``SemanticRouter.recover``)."""
        return await self._run(self._core.recover())

    async def refresh(self) -> bool:
        """Take up the definition another object stored since this one read it (see ``SemanticRouter.refresh``)."""
        return await self._run(self._core.refresh())

    async def clear(self) -> None:
        await self._run(self._core.clear())

    async def export_with_embeddings(
        self,
        path: str | Path,
        description: str = "",
        include_outcomes: bool = True,
        metrics: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write the router, its reference vectors, its outcome memory, ``description`` and ``metrics`` to a
        JSON file (no re-embedding)."""
        vectors = await self._run(self._core.reference_vectors())
        outcomes = await self._run(self._core.store.export_rows()) if include_outcomes else []
        return self._write_export(path, self.to_dict(), vectors, description, outcomes, metrics)

    async def close(self) -> None:
        """Close the Redis connection if the router opened it."""
        if self._owns_client:
            self._follow_loop()  # a client from a finished loop cannot be closed on this one
            await self._client.aclose(close_connection_pool=True)  # its pool is its own (connection.async_client)

    async def __aenter__(self) -> AsyncSemanticRouter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @classmethod
    async def from_dict(cls, data: Mapping[str, Any], **kwargs: Any) -> AsyncSemanticRouter:
        return await cls.create(**definition_kwargs(data, kwargs))

    @classmethod
    async def from_yaml(cls, file_path: str | Path, **kwargs: Any) -> AsyncSemanticRouter:
        return await cls.from_dict(cls._read_yaml(file_path).model_dump(), **kwargs)

    @classmethod
    async def from_pretrained(
        cls,
        name_or_path: str | Path = "default",
        *,
        name: str | None = None,
        vectorizer: BaseVectorizer | None = None,
        **kwargs: Any,
    ) -> AsyncSemanticRouter:
        """Load a shipped config or an exported file; see :meth:`SemanticRouter.from_pretrained`."""
        return await cls.create(**pretrained_kwargs(name_or_path, name, vectorizer, kwargs))

    @classmethod
    async def from_existing(
        cls,
        name: str,
        redis_client: aredis.Redis | None = None,
        redis_url: str | None = None,
        vectorizer: BaseVectorizer | None = None,
        **kwargs: Any,
    ) -> AsyncSemanticRouter:
        client = connection.async_client(redis_client, redis_url, kwargs.pop("connection_kwargs", None))
        data = await adrive(attach_definition(name), client)
        router = await cls.from_dict(data, redis_client=client, vectorizer=vectorizer, **existing_kwargs(kwargs))
        router._owns_client = redis_client is None
        return router

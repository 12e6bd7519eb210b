"""The synchronous router: a thin shell that runs :mod:`redisvl_llmrouter.core` operations with blocking I/O.

:class:`BaseSemanticRouter` holds what both routers share without I/O (properties, ``to_dict``,
``to_yaml``); :class:`SemanticRouter` adds one method per operation, each of which hands a core
generator to :func:`drive`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import redis
import yaml
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redisvl.index import SearchIndex
from redisvl.utils.vectorize import BaseVectorizer

from redisvl_llmrouter import compat, connection, pretrained
from redisvl_llmrouter.core import (
    OPERATION,
    Acquire,
    Command,
    Embed,
    FeedbackResult,
    Op,
    Pipeline,
    RouteOptions,
    RouterCore,
)
from redisvl_llmrouter.errors import (
    ConfigError,
    ConfigFileError,
    ConfigFileExistsError,
    ConfigFileNotFoundError,
    InvalidQueryError,
    InvalidVectorizerError,
    LLMRouterError,
    UnknownRequestError,
    VectorizerMismatchError,
)
from redisvl_llmrouter.learning.calibration import Calibration
from redisvl_llmrouter.learning.prediction import Prediction
from redisvl_llmrouter.learning.records import OutcomeRecord, checked_model_map, read_records
from redisvl_llmrouter.learning.store import MemoryInfo, WriteReport
from redisvl_llmrouter.policy.catalog import MAX_TOKENS, ModelCatalog, ModelSpec, finite_number, load_yaml
from redisvl_llmrouter.policy.constraints import Constraints
from redisvl_llmrouter.policy.stats import ModelStats
from redisvl_llmrouter.ranking import RouteDistances
from redisvl_llmrouter.schema import (
    DistanceAggregationMethod,
    LearningConfig,
    Route,
    RouteMatch,
    RouterDefinition,
    RoutingConfig,
    Strategy,
)
from redisvl_llmrouter.search import validate_router_name
from redisvl_llmrouter.stored_definition import attach_definition, parse_definition, vectorizer_difference
from redisvl_llmrouter.vectorizers import default_vectorizer, vectorizer_from_identity, vectorizer_identity

__all__ = ["BaseSemanticRouter", "SemanticRouter", "drive"]

T = TypeVar("T")


def _perform(
    request: Command | Pipeline | Embed | Acquire, client: redis.Redis, vectorizer: BaseVectorizer | None
) -> Any:
    if isinstance(request, Acquire):
        request.lock.acquire()
        return None
    if isinstance(request, Command):
        return client.execute_command(*request.args)
    if isinstance(request, Pipeline):
        pipe = client.pipeline(transaction=False)
        for args in request.commands:
            pipe.execute_command(*args)
        return pipe.execute(raise_on_error=not request.errors_as_replies)
    assert vectorizer is not None, "an operation without a vectorizer asked to embed"
    return vectorizer.embed_many(list(request.texts), batch_size=64)


def drive(op: Op[T], client: redis.Redis, vectorizer: BaseVectorizer | None = None) -> T:
    """Run a core operation to completion with blocking calls."""
    try:
        request = next(op)
        while True:
            try:
                result = _perform(request, client, vectorizer)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise connection.translate(exc, client) from exc
            except Exception as exc:  # let the core handle (or re-raise) what Redis answered
                request = op.throw(exc)
            else:
                request = op.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except LLMRouterError:  # typed already (a credentials error is a redis-py ConnectionError too)
        raise
    except RedisError as exc:  # what the core did not handle still reaches the caller typed
        raise connection.translate(exc, client) from exc
    finally:
        op.close()  # an operation left mid-way (a lost connection) releases what it holds now, not at GC


def prepare_pretrained(name_or_path: str | Path, name: str | None, vectorizer: BaseVectorizer | None) -> dict[str, Any]:
    """Read a pretrained config and return router keyword arguments, with its vectors precomputed.

    A given vectorizer must make the same vectors as the one the config was built with.
    """
    config = pretrained.read(name_or_path)
    definition = config.definition(name)
    if vectorizer is not None:
        difference = vectorizer_difference(config.vectorizer.model_dump(), vectorizer_identity(vectorizer))
        if difference:
            raise VectorizerMismatchError(
                f"The config {str(name_or_path)!r} was embedded with another vectorizer ({difference})."
            )
    return {
        "name": definition.name,
        "routes": definition.routes,
        "routing_config": definition.routing_config,
        "catalog": definition.catalog,
        "learning": definition.learning,
        "vectorizer": _resolve_vectorizer(vectorizer, definition),
        "_precomputed": config.vectors(),
        "_outcomes": config.outcome_rows(),
    }


#: Settings a caller may give ``from_dict``/``from_yaml``/``from_existing``/``from_pretrained`` in place
#: of the definition's own (None: keep the definition's).
DEFINITION_OVERRIDES = ("routing_config", "catalog", "learning")


def _overrides(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in DEFINITION_OVERRIDES if kwargs.get(k) is not None}


def existing_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``from_existing``'s keyword arguments for ``from_dict``: without definition overrides, whatever is
    stored when the object is built is taken up (another writer may have changed it since it was read)."""
    return {**kwargs, "_attach": not _overrides(kwargs)}


def definition_kwargs(data: Mapping[str, Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Router keyword arguments from a router dict; ``name``, ``vectorizer``, ``routing_config``,
    ``catalog`` and ``learning`` in ``kwargs`` take precedence."""
    if "routes" in kwargs:  # the definition's routes would silently win over the caller's
        raise ConfigError(
            "from_dict, from_yaml and from_existing take their routes from the router definition; change them "
            "there, add routes afterwards with add_route(), or build the router with SemanticRouter(routes=...)."
        )
    definition = parse_definition(data)
    return {
        **kwargs,
        "name": kwargs.get("name") or definition.name,
        "routes": definition.routes,
        "routing_config": definition.routing_config,
        "catalog": definition.catalog,
        "learning": definition.learning,
        **_overrides(kwargs),
        "vectorizer": _resolve_vectorizer(kwargs.get("vectorizer"), definition),
    }


def pretrained_kwargs(
    name_or_path: str | Path, name: str | None, vectorizer: BaseVectorizer | None, kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Router keyword arguments for ``from_pretrained``: the config's, with ``routing_config``, ``catalog``
    and ``learning`` in ``kwargs`` taking precedence (as for ``from_dict``) and the rest passed on."""
    if "routes" in kwargs:  # the config's routes and their precomputed vectors go together
        raise ConfigError(
            "from_pretrained takes its routes from the config; add routes afterwards with add_route(), "
            "or build the router with SemanticRouter(routes=...)."
        )
    return {**kwargs, **prepare_pretrained(name_or_path, name, vectorizer), **_overrides(kwargs)}


def route_options(
    strategy: Strategy | str | None,
    constraints: Constraints | Mapping[str, Any] | None,
    prompt_tokens: int | None,
    unavailable: Mapping[str, str] | None,
    stats: Mapping[str, ModelStats | Mapping[str, Any]] | None,
    record: bool,
) -> RouteOptions:
    """Per-request options from the shells' keyword arguments, validated into typed errors."""
    from pydantic import ValidationError

    try:
        chosen = None if strategy is None else Strategy(getattr(strategy, "value", strategy))
    except ValueError:
        raise InvalidQueryError(
            f"Unknown strategy {strategy!r}; choose one of {', '.join(s.value for s in Strategy)}."
        ) from None
    if constraints is not None and not isinstance(constraints, (Constraints, Mapping)):
        raise InvalidQueryError(f"constraints must be a mapping (or Constraints), got {type(constraints).__name__}")
    try:
        checked = (
            constraints if isinstance(constraints, Constraints) else Constraints.model_validate(dict(constraints or {}))
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
        raise InvalidQueryError(f"Invalid constraints: {problems}") from None
    if prompt_tokens is not None:
        # True is an int to Python, and numpy's integers are not: a count is a whole number, not a flag.
        if (
            isinstance(prompt_tokens, bool)
            or not isinstance(prompt_tokens, numbers.Integral)
            or not 1 <= prompt_tokens <= MAX_TOKENS
        ):
            raise InvalidQueryError(
                f"prompt_tokens must be a whole number from 1 to {MAX_TOKENS:,}, got {prompt_tokens!r}"
            )
        prompt_tokens = int(prompt_tokens)
    if not isinstance(record, bool):  # bool("no") is True: a word would record what the caller declined
        raise InvalidQueryError(f"record must be True or False, got {record!r}")
    return RouteOptions(
        strategy=chosen,
        constraints=checked,
        prompt_tokens=prompt_tokens,
        unavailable=_checked_unavailable(unavailable),
        stats=None if stats is None else _checked_stats(stats),
        record=record,
    )


def _checked_unavailable(unavailable: Any) -> dict[str, str]:
    """``unavailable`` as documented: model name to the reason it is not to be chosen (shown in the decision)."""
    if unavailable is None:
        return {}
    if not isinstance(unavailable, Mapping) or not all(
        isinstance(model, str) and isinstance(reason, str) for model, reason in unavailable.items()
    ):
        raise InvalidQueryError(
            "unavailable must map model names to the reason each is unavailable, e.g. "
            f"{{'openai/gpt-4.1': 'circuit open'}}; got {unavailable!r}"
        )
    return dict(unavailable)


def _checked_stats(stats: Any) -> dict[str, ModelStats]:
    """Caller-given live statistics: model name to a ``ModelStats`` or a mapping of its fields (numbers).

    Every figure is a finite number of 0 or more (a success rate at most 1): a negative latency or
    load would make the model look faster or idler than any real one, and win every request.
    """
    fields = {f.name for f in dataclasses.fields(ModelStats)}
    if not isinstance(stats, Mapping):
        raise InvalidQueryError(f"stats must map model names to statistics, got {type(stats).__name__}")
    out: dict[str, ModelStats] = {}
    for model, value in stats.items():
        if not isinstance(model, str):
            raise InvalidQueryError(f"stats must be keyed by model name, got {model!r}")
        if isinstance(value, ModelStats):
            given: Mapping[str, Any] = dataclasses.asdict(value)
        elif isinstance(value, Mapping):
            given = value
        else:
            raise InvalidQueryError(f"stats[{model!r}] must be a ModelStats or a mapping, got {type(value).__name__}")
        unknown = sorted(str(k) for k in given if k not in fields)
        if unknown:
            raise InvalidQueryError(f"stats[{model!r}] has unknown field(s) {unknown}; known: {sorted(fields)}")
        for key, number in given.items():
            if number is None:
                continue
            if not finite_number(number):
                raise InvalidQueryError(f"stats[{model!r}][{key!r}] must be a finite number, got {number!r}")
            if number < 0 or (key == "success_rate" and number > 1):
                bounds = "in [0, 1]" if key == "success_rate" else ">= 0"
                raise InvalidQueryError(f"stats[{model!r}][{key!r}] must be {bounds}, got {number!r}")
        out[model] = value if isinstance(value, ModelStats) else ModelStats(**dict(value))
    return out


def feedback_target(target: str | None, request_id: str | None, statement: str | None) -> tuple[str | None, str | None]:
    """``(request_id, statement)`` from ``feedback``'s first argument (a request id or a statement) or keywords.

    A first argument that starts with ``req-`` (in any case, around white space) is taken as a
    request id even when malformed, so a mistyped id is refused rather than learned as a prompt.
    """
    from redisvl_llmrouter.core import looks_like_request_id

    given = [x for x in (target, request_id, statement) if x is not None]
    if not given:  # feedback(match.request_id, ...) on a match routed without record=True
        raise UnknownRequestError(
            "No request id (None): the request was not recorded. Route with record=True to give feedback "
            "on it later, or pass the text as statement=... with model=..."
        )
    if len(given) != 1:
        raise InvalidQueryError("feedback() takes one request id or one statement.")
    if request_id is not None or statement is not None:
        return request_id, statement
    if looks_like_request_id(target):
        return target, None
    return None, target


def outcome_records(rows: Any) -> list[OutcomeRecord]:
    """Outcome records from a JSONL path (or several), records or mappings (see :mod:`learning.records`)."""
    return list(read_records(rows))


def checked_dtype(dtype: str | None) -> str | None:
    """RedisVL's deprecated ``dtype`` argument, one of the vector dtypes a router stores, or a ``ConfigError``.

    Checked before the default vectorizer is built, which would raise pydantic's error (or accept an
    integer dtype the router's index cannot hold).
    """
    if dtype is not None and (not isinstance(dtype, str) or dtype.lower() not in pretrained.DTYPES):
        raise ConfigError(f"Unsupported dtype {dtype!r}; use one of {', '.join(pretrained.DTYPES)}.")
    return dtype


def _resolve_vectorizer(vectorizer: BaseVectorizer | None, definition: RouterDefinition | None) -> BaseVectorizer:
    if vectorizer is not None:
        if not isinstance(vectorizer, BaseVectorizer):
            raise InvalidVectorizerError(f"vectorizer must be a RedisVL vectorizer, got {type(vectorizer).__name__}")
        return vectorizer
    if definition is not None and definition.vectorizer is not None:
        return vectorizer_from_identity(definition.vectorizer)
    return default_vectorizer()


class BaseSemanticRouter:
    """What the sync and async routers share that involves no I/O."""

    _core: RouterCore
    _client: Any
    _label: str | None = None
    _search_index: Any = None

    @property
    def name(self) -> str:
        """The router's name: what :meth:`to_dict`, :meth:`to_yaml` and exports call it.

        Settable, as on RedisVL's router, to export under another name. The router itself stays
        where it is in Redis, under :attr:`index_name`: renaming moves no keys (load the export,
        or ``from_dict(router.to_dict())``, to store a copy under the new name).
        """
        return self._label or self._core.name

    @name.setter
    def name(self, value: str) -> None:
        self._label = validate_router_name(value)

    @property
    def index_name(self) -> str:
        """The name the router is stored under in Redis: its index, key prefix and config key."""
        return self._core.name

    @property
    def routes(self) -> list[Route]:
        """Every route, tiers and floors, in the order stored (a copy: change routes through the methods)."""
        return list(self._core.routes)

    @property
    def routing_config(self) -> RoutingConfig:
        """The ranking and choice settings (aggregation, default route, strategy, cost weight), stored."""
        return self._core.routing_config

    @property
    def vectorizer(self) -> BaseVectorizer:
        """The vectorizer that embeds queries and references (its identity is stored with the router)."""
        return self._core.vectorizer

    @property
    def catalog(self) -> ModelCatalog:
        """The model catalog (prices, capabilities, quality priors), stored with the router."""
        return self._core.catalog

    @property
    def learning(self) -> LearningConfig:
        """The outcome memory's settings (neighbours, shrinkage, cap, promotion rule), stored."""
        return self._core.learning

    @property
    def models(self) -> list[str]:
        """Every model the router may choose: the routes' candidates, then the catalog's others."""
        return self._core.models

    @property
    def route_names(self) -> list[str]:
        """The routes' names, in the order stored."""
        return [route.name for route in self._core.routes]

    @property
    def tiers(self) -> list[Route]:
        """The tier routes (every route without a floor), cheapest first as configured."""
        return list(self._core.tiers.values())

    @property
    def floors(self) -> list[Route]:
        """The floor routes: they name no model and raise the minimum for requests they match."""
        return list(self._core.floor_routes.values())

    @property
    def route_thresholds(self) -> dict[str, float]:
        """Each route's distance threshold, by name."""
        return {route.name: route.distance_threshold for route in self._core.routes}

    @property
    def auto_recover(self) -> bool:
        """Whether the router rebuilds its index and config when they vanish from Redis (default True).

        When off, the first call after such a loss raises ``RouterStateLostError`` and
        :meth:`recover` rebuilds on request.
        """
        return self._core.auto_recover

    @auto_recover.setter
    def auto_recover(self, value: bool) -> None:
        self._core.auto_recover = bool(value)

    def get(self, route_name: str) -> Route | None:
        """The route called ``route_name``, or None."""
        return self._core.get(route_name)

    def to_dict(self) -> dict[str, Any]:
        """The router definition: name, routes (with model and cost), vectorizer identity, routing config,
        model catalog and learning settings."""
        return {**self._core.to_dict(), "name": self.name}

    @property
    def _index(self) -> Any:
        """RedisVL's handle on the router index (``SearchIndex``; async: ``AsyncSearchIndex``), on this router's client.

        Private in RedisVL too, but its users reach the client through it (``router._index.client``).
        """
        if self._search_index is None:
            schema = compat.index_schema(self._core.name, self._core.dims, self._core.dtype.name)
            self._search_index = self._index_class(schema=schema, redis_client=self._client)
        return self._search_index

    _index_class: Any = SearchIndex

    def to_yaml(self, file_path: str | Path, overwrite: bool = True) -> None:
        """Write :meth:`to_dict` as YAML; refuses to replace an existing file unless ``overwrite``.

        Errors are ``ConfigError``s that are also what RedisVL and Python raise: ``FileExistsError``
        for an existing file without ``overwrite``, an ``OSError`` for a directory or a denied write.
        """
        path = pretrained.file_path(file_path, "YAML path")
        if path.is_dir():
            raise ConfigFileError(f"{path} is a directory; pass the path of a file to write.")
        if path.exists() and not overwrite:
            raise ConfigFileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigFileError(f"Cannot write {path}: {exc.strerror or exc}") from exc

    @staticmethod
    def _read_yaml(file_path: str | Path) -> RouterDefinition:
        path = pretrained.file_path(file_path, "YAML path")
        if path.is_dir():
            raise ConfigFileError(f"{path} is a directory; pass the path of a router YAML file.")
        if not path.is_file():
            raise ConfigFileNotFoundError(f"No such router file: {path}")
        try:
            data = load_yaml(path.read_text(encoding="utf-8"))
        except OSError as exc:  # no permission to read it
            raise ConfigFileError(f"Cannot read {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8.") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        return parse_definition(data)

    @staticmethod
    def _write_export(
        path: str | Path,
        definition: dict[str, Any],
        vectors: Any,
        description: str,
        outcomes: Any = (),
        metrics: Mapping[str, Any] | None = None,
    ) -> Path:
        return pretrained.write(pretrained.build(definition, vectors, description, outcomes, metrics=metrics), path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, routes={self.route_names})"


class SemanticRouter(BaseSemanticRouter):
    """Route queries to the cheapest model able to answer them, with Redis as the vector index.

    Args:
        name: the router's name: its index name and the prefix of its Redis keys.
        routes: the routes, each with references, a distance threshold, a model and a cost.
        vectorizer: any RedisVL vectorizer; default: all-MiniLM-L6-v2 from the installed package.
        routing_config: ranking options (aggregation, cost optimisation, default route, ``max_k``).
        redis_client / redis_url: which Redis; default ``REDIS_URL``, else the embedded Redis.
        overwrite: replace a different router already stored under ``name``. Without it, an
            identical stored router is reused and a different one raises ``RouterExistsError``
            (``VectorizerMismatchError`` when it was built with another vectorizer, dims or dtype).
        connection_kwargs: extra arguments for the Redis client the router creates.
        embedding_cache_size: how many query embeddings to keep in memory (0 disables).
        catalog: the models to choose from (prices, context, capabilities, quality prior, latency);
            a ``ModelCatalog``, a mapping or a list of model dicts. Route models missing from it
            are priced from their route's ``cost``.
        learning: how the outcome memory predicts (``LearningConfig``); defaults suit most uses.
        create_index: as in RedisVL: False attaches to an index the caller manages; construction
            issues no command and writes nothing, and a missing index is never created or rebuilt
            (the call that needs it raises ``RouterStateLostError``; ``recover()`` rebuilds on
            request). ``delete()`` is then refused; ``clear()`` works.
        dtype: deprecated (RedisVL's): the default vectorizer's dtype, or a check on the given one.
    """

    def __init__(
        self,
        name: str,
        routes: Sequence[Route] | None = None,
        vectorizer: BaseVectorizer | None = None,
        routing_config: RoutingConfig | None = None,
        redis_client: redis.Redis | None = None,
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
    ) -> None:
        compat.check_create_index(create_index, overwrite)
        self._core = RouterCore(
            name,
            routes or [],
            _resolve_vectorizer(compat.resolve_vectorizer(vectorizer, checked_dtype(dtype)), None),
            routing_config,
            embedding_cache_size,
            catalog,
            learning,
            manages_index=create_index,
        )
        self._core.check_outcome_rows(_outcomes)
        self._owns_client = redis_client is None
        self._client = connection.sync_client(redis_client, redis_url, connection_kwargs)
        self._run(self._core.setup(overwrite, _precomputed, _attach))
        if _outcomes:
            self._run(self._core.import_outcomes(_outcomes))

    def _run(self, op: Op[T]) -> T:
        self._core.check_not_deleted()
        operation = object()
        running = OPERATION.set(operation)
        try:
            return drive(op, self._client, self._core.vectorizer)
        except BaseException:
            if operation in self._core.unsettled:  # its write stopped half-way: what it left unlisted goes
                with contextlib.suppress(Exception):
                    drive(self._core.settle(operation), self._client)
            raise
        finally:
            OPERATION.reset(running)

    # ----------------------------------------------------------------- routing
    def __call__(
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
        """Route a statement (or a ready vector): the route it matches and the model the policy chose.

        Args:
            distance_threshold: deprecated and ignored, as in RedisVL (thresholds are per route).
            strategy: override the routing config's strategy for this request.
            constraints: ``Constraints`` (or a dict): ``max_cost``, ``max_latency_ms``,
                ``min_quality``, ``capabilities``, ``min_context``, ``output_tokens``, ``best_effort``.
            prompt_tokens: the request's size (default: estimated from ``statement``).
            unavailable: models not to choose, with the reason (e.g. open circuit breakers).
            stats: live statistics per model to use instead of those in Redis.
            record: keep the request for ``feedback_ttl_s`` so ``feedback(match.request_id, ...)`` works.
        """
        if distance_threshold is not None:
            compat.warn_deprecated("distance_threshold")
        options = route_options(strategy, constraints, prompt_tokens, unavailable, stats, record)
        return self._run(self._core.route(statement, vector, aggregation_method, options))

    def route_many(
        self,
        statement: str | None = None,
        vector: Sequence[float] | None = None,
        max_k: int | None = None,
        distance_threshold: float | None = None,
        aggregation_method: DistanceAggregationMethod | None = None,
    ) -> list[RouteMatch]:
        """Up to ``max_k`` passing routes, best first, ranked exactly as :meth:`__call__` ranks them.

        ``distance_threshold`` is deprecated and ignored, as in RedisVL (in RedisVL's position).
        """
        if distance_threshold is not None:
            compat.warn_deprecated("distance_threshold")
        return self._run(self._core.route_many(statement, vector, max_k, aggregation_method))

    def route_batch(
        self,
        statements: Sequence[str] | None = None,
        vectors: Sequence[Sequence[float]] | None = None,
        aggregation_method: DistanceAggregationMethod | None = None,
        *,
        strategy: Strategy | str | None = None,
        constraints: Constraints | Mapping[str, Any] | None = None,
    ) -> list[RouteMatch]:
        """A match (and decision) for each of many queries: one embedding call, pipelined Redis round trips."""
        options = route_options(strategy, constraints, None, None, None, False)
        return self._run(self._core.route_batch(statements, vectors, aggregation_method, options))

    # ----------------------------------------------------------------- learning
    def learn(
        self,
        rows: Any,
        *,
        model_map: Mapping[str, str] | None = None,
        vectors: Sequence[Sequence[float]] | None = None,
        batch_size: int = 256,
        progress: Any = None,
    ) -> WriteReport:
        """Bulk-load outcomes into the memory: JSONL path(s) in the shared format, records or dicts.

        ``model_map`` renames models of the data to the router's (``{"gpt-4-1106-preview":
        "openai/gpt-4"}``); unknown models are refused before anything is written.
        """
        records = outcome_records(rows)
        return self._run(self._core.learn(records, checked_model_map(model_map), vectors, batch_size, progress))

    def feedback(
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
        """Record one observed outcome for a routed request (``match.request_id``) or a statement.

        ``model`` defaults to the model the request was routed to (a statement needs it).
        Idempotent per request (or statement) and model: sending it again replaces the value.
        A first argument starting ``req-`` is a request id: a mistyped one raises
        ``UnknownRequestError`` (pass ``statement=`` for a text that starts so).
        """
        rid, text = feedback_target(request_id_or_statement, request_id, statement)
        return self._run(
            self._core.feedback(rid, text, model=model, quality=quality, cost=cost, latency_ms=latency_ms)  # type: ignore[arg-type]
        )

    def predict(
        self, statements: Sequence[str] | None = None, vectors: Sequence[Sequence[float]] | None = None
    ) -> list[Prediction | None]:
        """Each model's expected quality and cost for each request, from the outcome memory.

        ``None`` for every request while the memory is empty. Nothing is routed or recorded.
        """
        return self._run(self._core.predict(statements, vectors))

    def calibrate(
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
        return self._run(
            self._core.calibrate(
                budget=budget,
                strong_share=strong_share,
                quality=quality,
                sample=sample,
                output_tokens=output_tokens,
                apply=apply,
            )
        )

    def call_started(self, model: str, request_id: str, timeout_ms: int = 120_000) -> None:
        """Count a call to ``model`` as in flight until :meth:`call_finished` (or the timeout); shared in Redis."""
        self._run(self._core.call_started(model, request_id, timeout_ms))

    def call_finished(
        self, model: str, *, success: bool, latency_ms: float | None = None, request_id: str = ""
    ) -> None:
        """Record a finished call: latency and success averages, counters, in-flight count (shared in Redis)."""
        self._run(self._core.call_finished(model, success=success, latency_ms=latency_ms, request_id=request_id))

    def live_stats(self, models: Sequence[str] | None = None) -> dict[str, ModelStats]:
        """Latency, success rate, in-flight calls and counters per model, as all processes measured them."""
        return self._run(self._core.live_stats(models))

    def round_robin_position(self, route_name: str) -> int:
        """The round-robin counter of a route in Redis (how many requests it has rotated so far)."""
        return self._run(self._core.round_robin_position(route_name))

    def memory_info(self) -> MemoryInfo:
        """Rows in the outcome memory and what it knows of each model."""
        return self._run(self._core.memory_info())

    def clear_memory(self) -> int:
        """Delete every learned outcome (keeping the routes); returns the rows deleted."""
        return self._run(self._core.clear_memory())

    def revert_promotions(self) -> int:
        """Undo every tier promotion made from feedback; returns the references removed."""
        return self._run(self._core.revert_promotions())

    def update_catalog(self, catalog: ModelCatalog | Mapping[str, Any] | Sequence[Any]) -> None:
        """Replace the model catalog (persisted)."""
        self._run(self._core.update_catalog(catalog))

    def add_models(self, models: Sequence[ModelSpec | Mapping[str, Any] | str]) -> list[str]:
        """Add the models the catalog lacks, merged with other writers' changes (persisted); returns the
        names added. A model already in the catalog stays as it is: ``update_catalog`` changes one."""
        return self._run(self._core.add_models(models))

    def update_learning(self, learning: LearningConfig | Mapping[str, Any]) -> None:
        """Replace the learning settings (a `LearningConfig`), or change those a mapping names (persisted)."""
        self._run(self._core.update_learning(learning))

    # ----------------------------------------------------------------- managing routes
    def distances(
        self, statements: Sequence[str] | None = None, vectors: Sequence[Sequence[float]] | None = None
    ) -> list[list[RouteDistances]]:
        """The per-route distance rows behind each query's ranking (for analysis and evaluation)."""
        return self._run(self._core.distances(statements, vectors))

    def add_route(self, route: Route) -> str:
        """Embed and index a new route's references and persist it; returns its name."""
        return self._run(self._core.add_route(route))

    def _add_routes(self, routes: Sequence[Route]) -> None:
        """RedisVL's bulk add, kept for its users: adds new routes, extends the references of known ones."""
        self._run(self._core.add_routes(routes))

    def remove_route(self, route_name: str) -> None:
        """Delete a route and its references (an unknown name logs a warning, as in RedisVL)."""
        self._run(self._core.remove_route(route_name))

    def add_route_references(self, route_name: str, references: str | list[str]) -> list[str]:
        """Add references to a route (existing ones are kept, not duplicated); returns their keys."""
        return self._run(self._core.add_route_references(route_name, references))

    def get_route_references(
        self, route_name: str = "", reference_ids: list[str] | None = None, keys: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The stored references of a route (or those with the given ids or keys), read from Redis."""
        return self._run(self._core.get_route_references(route_name, reference_ids, keys))

    def delete_route_references(
        self, route_name: str = "", reference_ids: list[str] | None = None, keys: list[str] | None = None
    ) -> int:
        """Delete references by route, id or key; returns how many were deleted."""
        return self._run(self._core.delete_route_references(route_name, reference_ids, keys))

    def update_route_thresholds(self, route_thresholds: Mapping[str, float]) -> None:
        """Change distance thresholds; persisted, so ``from_existing`` sees them."""
        self._run(self._core.update_route_thresholds(route_thresholds))

    def update_routing_config(self, routing_config: RoutingConfig | Mapping[str, Any]) -> None:
        """Replace the routing config with a ``RoutingConfig``, or change the settings a dict names (persisted)."""
        self._run(self._core.update_routing_config(routing_config))

    def delete(self) -> None:
        """Drop the index, references and stored config, and the router's outcome memory, requests awaiting
        feedback, round-robin positions and decisions log (only this router's own keys)."""
        self._run(self._core.delete())

    def recover(self) -> bool:
        """Rebuild the index, references and config if they vanished from Redis; True when it had to.

        From this object's definition and the vectors it wrote or loaded (others are embedded
        again). Routing does this by itself while ``auto_recover`` is on.
        """
        return self._run(self._core.recover())

    def refresh(self) -> bool:
        """Take up the definition another router object stored since this one last read it; True when it did.

        An object does not watch Redis: it keeps routing with the routes and settings it had after
        another object (another process) changed them. ``refresh()`` reads the stored config's
        version (one small round trip when nothing changed) and, when it moved, adopts the stored
        definition. A config Redis lost is not rebuilt here (False; routing recovers it); a router
        recreated with another vectorizer raises ``VectorizerMismatchError``.
        """
        return self._run(self._core.refresh())

    def clear(self) -> None:
        """Remove every route and reference, keeping the empty router."""
        self._run(self._core.clear())

    def export_with_embeddings(
        self,
        path: str | Path,
        description: str = "",
        include_outcomes: bool = True,
        metrics: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write the router, its reference vectors and (``include_outcomes``) its outcome memory to a JSON file.

        Nothing is re-embedded: the vectors come from Redis. ``from_pretrained(path)`` loads it
        back with identical routing and the same learned outcomes. ``description`` and ``metrics``
        (e.g. the measured accuracy of the config it was loaded from) are written with it.
        """
        vectors = self._run(self._core.reference_vectors())
        outcomes = self._run(self._core.store.export_rows()) if include_outcomes else []
        return self._write_export(path, self.to_dict(), vectors, description, outcomes, metrics)

    def close(self) -> None:
        """Close the Redis connection if the router opened it."""
        if self._owns_client:
            self._client.close()
            self._client.connection_pool.disconnect()  # its own pool (connection.sync_client): redis-py leaves it open

    def __enter__(self) -> SemanticRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **kwargs: Any) -> SemanticRouter:
        """Build a router from :meth:`to_dict` output (keeps model, cost and routing config); ``name=`` renames."""
        return cls(**definition_kwargs(data, kwargs))

    @classmethod
    def from_yaml(cls, file_path: str | Path, **kwargs: Any) -> SemanticRouter:
        """Build a router from a YAML file written by :meth:`to_yaml`."""
        return cls.from_dict(cls._read_yaml(file_path).model_dump(), **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = "default",
        *,
        name: str | None = None,
        vectorizer: BaseVectorizer | None = None,
        **kwargs: Any,
    ) -> SemanticRouter:
        """Load a shipped config by name (``"default"``) or a file written by :meth:`export_with_embeddings`.

        The stored vectors go straight into Redis. Loading the same config again reuses the index;
        a different router under the same name is refused unless ``overwrite=True``.

        Args:
            name_or_path: a shipped config's name, or a path to a config file.
            name: the router's name in Redis (default: the config's name).
            vectorizer: must match the config's model and dimensions (default: built from the config).
            **kwargs: as for :class:`SemanticRouter` (``redis_url``, ``overwrite``, ...);
                ``routing_config``, ``catalog`` and ``learning`` replace the config's.
        """
        return cls(**pretrained_kwargs(name_or_path, name, vectorizer, kwargs))

    @classmethod
    def from_existing(
        cls,
        name: str,
        redis_client: redis.Redis | None = None,
        redis_url: str | None = None,
        vectorizer: BaseVectorizer | None = None,
        **kwargs: Any,
    ) -> SemanticRouter:
        """Attach to a router already in Redis, from its stored config; nothing is re-embedded."""
        client = connection.sync_client(redis_client, redis_url, kwargs.pop("connection_kwargs", None))
        data = drive(attach_definition(name), client)
        router = cls.from_dict(data, redis_client=client, vectorizer=vectorizer, **existing_kwargs(kwargs))
        router._owns_client = redis_client is None
        return router

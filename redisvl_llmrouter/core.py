"""The router's logic, written once for the sync and the async router (and the gateway).

Every operation is a generator that *describes* its I/O instead of doing it: it yields a
:class:`~redisvl_llmrouter.ops.Command` (one Redis command), a
:class:`~redisvl_llmrouter.ops.Pipeline` (several, one round trip), an
:class:`~redisvl_llmrouter.ops.Embed` (texts to vectors) or an :class:`~redisvl_llmrouter.ops.Acquire`
(wait for the object's write lock) and receives the result. The sync router
drives these generators with blocking calls and the async router with ``await``; neither holds
any routing logic of its own. Redis errors are thrown back into the generator, so the handling
of, say, "Unknown index name" is written once too.

Routing one request is one round trip for its searches: the route search, and (when the strategy needs
them) the outcome memory's KNN search and the models' live statistics, pipelined. ``record=True`` adds
the record's write, ``round_robin`` an ``INCRBY``, and an old estimate of Redis's clock a ``TIME``. Then
pure steps decide:
:mod:`ranking` (which routes match), :mod:`learning.prediction` (each model's expected quality
and cost) and :mod:`policy.decision` (which model, under the strategy and the constraints).
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeVar

import numpy as np
from pydantic import ValidationError
from redis.exceptions import ResponseError
from redisvl.extensions.router.schema import Route as _RedisVLRoute
from redisvl.utils.vectorize import BaseVectorizer

from redisvl_llmrouter import fork_safety, ranking, shared_clock
from redisvl_llmrouter.errors import (
    ConfigError,
    ConflictError,
    InvalidFeedbackError,
    InvalidQueryError,
    NoEligibleModelError,
    RouteExistsError,
    RouteNotFoundError,
    RouterDeletedError,
    RouterEmptyError,
    RouterExistsError,
    RouterStateLostError,
    UnknownModelError,
    UnknownRequestError,
    VectorDimensionError,
    VectorizerMismatchError,
)
from redisvl_llmrouter.learning.calibration import Calibration, solve
from redisvl_llmrouter.learning.memory import Observation, row_id_for_text
from redisvl_llmrouter.learning.prediction import Prediction, predict
from redisvl_llmrouter.learning.records import MAX_COST_USD, MAX_LATENCY_MS, OutcomeRecord
from redisvl_llmrouter.learning.store import MemoryInfo, MemoryView, OutcomeStore, PendingRow, WriteReport
from redisvl_llmrouter.observability import decisions
from redisvl_llmrouter.ops import Acquire, Command, Embed, Op, Pipeline, run_script
from redisvl_llmrouter.policy import stats as live
from redisvl_llmrouter.policy.catalog import (
    MAX_EXACT_INT,
    MAX_TOKENS,
    ModelCatalog,
    ModelSpec,
    estimate_tokens,
    finite_number,
)
from redisvl_llmrouter.policy.constraints import Constraints
from redisvl_llmrouter.policy.decision import PolicyInput, decide, effective_catalog, learned_qualities, primary_tier
from redisvl_llmrouter.request_text import routing_text
from redisvl_llmrouter.schema import (
    MAX_STATEMENT_CHARS,
    Decision,
    DistanceAggregationMethod,
    LearningConfig,
    Route,
    RouteMatch,
    RoutingConfig,
    Strategy,
    text_problem,
)
from redisvl_llmrouter.search import (
    DELETE_OWN_VECTORS_SCRIPT,
    DELETE_UNLISTED_SCRIPT,
    MAX_REFERENCES,
    SAVE_CONFIG_SCRIPT,
    VECTOR_FIELD,
    as_text,
    check_modules,
    config_key,
    create_index_command,
    foreign_index,
    index_fits,
    indexed_documents,
    is_missing_index,
    is_wrong_type,
    parse_route_rows,
    reference_id,
    reference_key,
    route_command,
    search_total,
    validate_router_name,
    vector_dtype,
)
from redisvl_llmrouter.stored_definition import (
    config_stamp_command,
    definition_difference,
    definition_only,
    index_vector_field,
    normal_definition,
    parse_config_stamp,
    parse_definition,
    read_config,
    read_config_stamp,
    same_definition,
    stored_generation,
    stored_version,
    vectorizer_difference,
)
from redisvl_llmrouter.vectorizers import vectorizer_identity

__all__ = [
    "Acquire",
    "Command",
    "Embed",
    "FeedbackResult",
    "Op",
    "Pipeline",
    "RouteOptions",
    "RouterCore",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: Times a change is re-applied on top of another writer's newer config before ``ConflictError``.
MAX_SAVE_ATTEMPTS = 20
#: The most a stored vector's cosine distance to itself comes out as, by the bytes of one of its
#: numbers (RediSearch computes in the vectors' precision: measured up to 1e-4 for float16, 1e-3 for
#: bfloat16, 1e-7 for float32).
SELF_DISTANCE = {2: 1e-2, 4: 1e-5, 8: 1e-9}
#: The operation a shell's ``_run`` is running in this thread or task (a fresh object per call): the
#: references a write leaves ``unsettled`` belong to it, and only its failure cleans them up.
OPERATION: ContextVar[object | None] = ContextVar("llmrouter_operation", default=None)
#: What to do about a name another router holds.
SAME_ROUTER_HINT = "Pass overwrite=True to replace it, or use from_existing() to attach to it."
#: What to do about a router recreated (by another object) with another vectorizer.
RECREATED_HINT = (
    "It was recreated with another vectorizer; build a router object with that vectorizer "
    "(from_existing(name, vectorizer=...)) to use it."
)

#: Request ids the router issues: ``req-`` and 32 hex digits (match with ``fullmatch``: ``$`` would
#: also accept a trailing newline).
REQUEST_ID = re.compile(r"req-[0-9a-f]{32}")
#: What a request id starts with; a feedback target that starts so is meant as an id, not a statement.
REQUEST_ID_PREFIX = "req-"


def is_request_id(value: Any) -> bool:
    """Whether ``value`` is exactly a request id the router issues (not a statement)."""
    return isinstance(value, str) and REQUEST_ID.fullmatch(value) is not None


def looks_like_request_id(value: Any) -> bool:
    """Whether ``value`` was meant as a request id: it starts with ``req-`` in any case, around white space."""
    return isinstance(value, str) and value.strip().lower().startswith(REQUEST_ID_PREFIX)


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex}"


def live_now_ms() -> int:
    """Now on the clock every process on the Redis shares (see :mod:`redisvl_llmrouter.shared_clock`)."""
    return shared_clock.now_ms()


def _as_route(route: Any) -> Route:
    if isinstance(route, Route):
        return route
    if isinstance(route, _RedisVLRoute):  # accept RedisVL's own routes
        return Route.model_validate(route.model_dump())
    if isinstance(route, Mapping):
        try:
            return Route.model_validate(dict(route))
        except ValidationError as exc:
            raise ConfigError(f"Invalid route: {exc.errors()[0]['msg']} ({dict(route).get('name')!r})") from None
    raise ConfigError(f"Expected a Route, got {type(route).__name__}")


class _EmbeddingCache:
    """A small thread-safe LRU of query vectors (float32 bytes), keyed by the exact statement."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = fork_safety.lock()

    def get(self, text: str) -> bytes | None:
        if self.size <= 0:
            return None
        with self._lock:
            value = self._items.get(text)
            if value is not None:
                self._items.move_to_end(text)
            return value

    def put(self, text: str, value: bytes) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[text] = value
            self._items.move_to_end(text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass(frozen=True)
class RouteOptions:
    """Per-request choices of the policy step (all optional)."""

    strategy: Strategy | None = None
    """Override the routing config's strategy for this request."""
    constraints: Constraints = field(default_factory=Constraints)
    prompt_tokens: int | None = None
    """The request's prompt tokens (default: estimated from the statement)."""
    choices: int = 1
    """Answers asked for (OpenAI's ``n``): each is billed its output tokens, so the cost estimate counts
    them all, while the context a model needs is one answer's."""
    unavailable: Mapping[str, str] = field(default_factory=dict)
    """Models that must not be chosen, with the reason (open circuit breakers)."""
    stats: Mapping[str, live.ModelStats] | None = None
    """Live statistics given by the caller instead of reading them from Redis."""
    record: bool = False
    """Keep the request's vector (and text) for ``feedback_ttl_s`` so feedback can name its request id,
    with the routed model as the one feedback is about unless it names another. (The gateway records
    its requests itself, after the answer: with the model that answered.)"""


@dataclass(frozen=True)
class FeedbackResult:
    """What one feedback call recorded."""

    row_id: str | None
    """The memory row written (None when nothing was learned)."""
    created: bool
    """True when the feedback started a new memory row, False when it updated one."""
    promoted_to: str | None = None
    """The tier route the request's text was promoted to, if the promotion rule fired."""
    learned: bool = True
    """False for a request the gateway answered from its semantic cache: that answer was generated for
    another prompt, so its rating says how the cache did, not how the model does on this one."""


def _as_catalog(catalog: Any) -> ModelCatalog:
    if catalog is None:
        return ModelCatalog()
    if isinstance(catalog, ModelCatalog):
        return catalog
    return ModelCatalog.parse(catalog.model_dump() if hasattr(catalog, "model_dump") else catalog)


def _as_learning(learning: Any) -> LearningConfig:
    if learning is None:
        return LearningConfig()
    if isinstance(learning, LearningConfig):
        return learning
    try:
        return LearningConfig.model_validate(dict(learning))
    except (TypeError, ValueError, ValidationError) as exc:
        raise ConfigError(f"Invalid learning config: {exc}") from None


def _settings_update(
    value: Any, method: str, kind: str, merged: Callable[[Mapping[str, Any]], T], checked: Callable[[Any], T]
) -> Callable[[], T]:
    """What an ``update_*`` call saves, worked out at save time: a whole config (``checked``), or a
    mapping merged onto the settings as they are then (``merged``: onto what another writer may have
    saved meanwhile, so only the keys it names change). An invalid setting fails here, before anything
    is saved; None is refused (a mistake far more often than a wish to reset every setting)."""
    if value is None:
        raise ConfigError(
            f"{method}() needs a {kind} or a mapping of settings, got None; pass {kind}() to go back to the defaults."
        )
    if isinstance(value, Mapping):
        given = dict(value)
        merged(given)
        return lambda: merged(given)
    whole = checked(value)
    return lambda: checked(whole)


def _batch_list(items: Any, what: str) -> list[Any]:
    """A batch as a list: any ordered iterable (a list, a tuple, a generator). A set or a mapping is
    refused: the answers come back in the batch's order, and those have none to line them up with."""
    if isinstance(items, (Mapping, set, frozenset)) or not isinstance(items, Iterable):
        raise InvalidQueryError(f"Batch routing takes a list of {what}, got {type(items).__name__}.")
    return items if isinstance(items, list) else list(items)


def _needs_prediction(strategy: Strategy, constraints: Constraints, unpriced: bool) -> bool:
    """Whether the decision reads the outcome memory. Cost needs it too when a model has no price:
    what similar requests cost is then its estimate, under every strategy alike."""
    if strategy in (Strategy.learned, Strategy.quality, Strategy.balanced) or constraints.min_quality is not None:
        return True
    return unpriced and (strategy is Strategy.cost or constraints.max_cost is not None)


def _needs_stats(strategy: Strategy, constraints: Constraints) -> bool:
    return (
        strategy in (Strategy.latency, Strategy.least_loaded, Strategy.balanced)
        or constraints.max_latency_ms is not None
    )


class RouterCore:
    """State and logic of one router; I/O-free (see the module docstring)."""

    def __init__(
        self,
        name: str,
        routes: Iterable[Any],
        vectorizer: BaseVectorizer,
        routing_config: RoutingConfig | Mapping[str, Any] | None = None,
        embedding_cache_size: int = 1024,
        catalog: ModelCatalog | Mapping[str, Any] | None = None,
        learning: LearningConfig | Mapping[str, Any] | None = None,
        *,
        manages_index: bool = True,
    ) -> None:
        self.name = validate_router_name(name)
        #: False when the caller manages the index (RedisVL's ``create_index=False``): setup issues
        #: no command, and ``delete`` refuses to drop what this router does not own.
        self.manages_index = manages_index
        self.vectorizer = vectorizer
        if not vectorizer.dims:
            raise ConfigError(f"The vectorizer {vectorizer.model!r} does not report its dimensions.")
        self.dims = int(vectorizer.dims)
        self.dtype = vector_dtype(vectorizer.dtype)
        self.routes: list[Route] = []
        for route in routes:
            route = _as_route(route)
            if route.name in self._by_name:
                raise ConfigError(f"Duplicate route name {route.name!r}")
            self.routes.append(route)
        self._check_floors(self.routes)
        self._check_size(self.routes)
        self.routing_config = self._checked_config(routing_config)
        self.catalog = _as_catalog(catalog)
        self.learning = _as_learning(learning)
        self.store = OutcomeStore(self.name, self.dims, self.dtype, self.learning)
        if (
            isinstance(embedding_cache_size, bool)
            or not isinstance(embedding_cache_size, int)
            or embedding_cache_size < 0
        ):
            raise ConfigError(
                f"embedding_cache_size must be a whole number of embeddings, 0 or more (0 disables the cache), "
                f"got {embedding_cache_size!r}"
            )
        self._cache = _EmbeddingCache(embedding_cache_size)
        self._effective: ModelCatalog | None = None
        self._unpriced = False
        self.version = 0
        """The stored config's version this object's definition is based on (see :meth:`_commit`)."""
        self.generation = ""
        """The creation of the router this object follows (see :func:`stored_generation`)."""
        self.auto_recover = True
        """Rebuild the index and config when they vanish from Redis (see :meth:`recover`)."""
        # Reference vectors this object wrote or loaded: what recovery rewrites without re-embedding.
        self._vectors: dict[tuple[str, str], bytes] = {}
        self.deleted = False
        """Set by :meth:`delete`: the object then refuses to work (see :meth:`check_not_deleted`)."""
        self.created = False
        """Whether :meth:`setup` stored this router itself, rather than finding it stored (by another
        process a moment before, perhaps): only a creator may take it away again when its work fails."""
        self.unsettled: dict[object | None, set[tuple[str, str]]] = {}
        """References a write under way wrote (or is replacing) and no stored config may list yet, by the
        operation writing them (:data:`OPERATION`; see :meth:`settle`)."""
        #: Serialises this object's commits; the async router replaces it with an ``asyncio.Lock``.
        self.write_lock: Any = fork_safety.lock()

    # ----------------------------------------------------------------- state (no I/O)
    @property
    def _by_name(self) -> dict[str, Route]:
        return {route.name: route for route in self.routes}

    @property
    def tiers(self) -> dict[str, Route]:
        """The tier routes (every route without a floor), in order."""
        return {route.name: route for route in self.routes if not route.is_floor}

    @property
    def floor_routes(self) -> dict[str, Route]:
        return {route.name: route for route in self.routes if route.is_floor}

    @property
    def models(self) -> list[str]:
        """Every model the router may choose: the routes' candidates, then the catalog's other models."""
        names = [m for r in self.routes for m in r.models]
        return list(dict.fromkeys([*names, *self.catalog.names]))

    def effective_catalog(self) -> ModelCatalog:
        """The catalog plus the route models it lacks (cached until the definition changes)."""
        if self._effective is None:
            self._effective = effective_catalog(self.catalog, self.routes)
            self._unpriced = any(not (spec := self._effective.get(m)) or not spec.priced for m in self.models)
        return self._effective

    def unpriced(self) -> bool:
        """Whether a model of the router has no price (neither in the catalog nor from its route's cost);
        worked out with the effective catalog, once per definition, not on every route."""
        self.effective_catalog()
        return self._unpriced

    def get(self, route_name: str) -> Route | None:
        return self._by_name.get(route_name) if isinstance(route_name, str) else None  # a list: no route, no TypeError

    def require(self, route_name: str) -> Route:
        route = self.get(route_name)
        if route is None:
            raise RouteNotFoundError(
                f"Router {self.name!r} has no route {route_name!r}; its routes are {[r.name for r in self.routes]}"
            )
        return route

    @property
    def reference_count(self) -> int:
        return sum(len(route.references) for route in self.routes)

    def _check_size(self, routes: Sequence[Route]) -> None:
        total = sum(len(route.references) for route in routes)
        if total > MAX_REFERENCES:
            raise ConfigError(
                f"Router {self.name!r} would hold {total:,} references; the limit is {MAX_REFERENCES:,} "
                "(every search reads all references in range). Use fewer, more distinct references per route, "
                "or split the routes over several routers."
            )

    @staticmethod
    def _check_floors(routes: Sequence[Route]) -> None:
        tiers = {r.name for r in routes if not r.is_floor}
        for route in routes:
            if route.floor is not None and route.floor.min_route is not None and route.floor.min_route not in tiers:
                raise ConfigError(
                    f"Floor route {route.name!r} names min_route {route.floor.min_route!r}, "
                    f"which is not one of the tier routes {sorted(tiers)}"
                )

    def _checked_config(self, config: RoutingConfig | Mapping[str, Any] | None) -> RoutingConfig:
        if config is None:
            config = RoutingConfig()
        elif not isinstance(config, RoutingConfig):
            if hasattr(config, "model_dump"):  # RedisVL's own RoutingConfig
                data = config.model_dump()
            elif isinstance(config, Mapping):
                data = dict(config)
            else:
                raise ConfigError(
                    f"A routing config must be a RoutingConfig or a mapping of settings, got {type(config).__name__}"
                )
            try:
                config = RoutingConfig.model_validate(data)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                message = first["msg"] if not where or where in first["msg"] else f"{where}: {first['msg']}"
                raise ConfigError(f"Invalid routing config: {message}") from None
        if config.default_route is not None and config.default_route not in self.tiers:
            raise ConfigError(
                f"default_route {config.default_route!r} is not one of the tier routes {list(self.tiers)}"
            )
        return config

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "routes": [route.model_dump(mode="json") for route in self.routes],
            "vectorizer": vectorizer_identity(self.vectorizer),
            "routing_config": self.routing_config.to_dict(),
            "catalog": self.catalog.model_dump(mode="json"),
            "learning": self.learning.model_dump(mode="json"),
        }

    def _reference_hset(self, route: str, reference: str, vector: bytes) -> tuple[Any, ...]:
        return (
            "HSET", reference_key(self.name, route, reference),
            "reference_id", reference_id(reference), "route_name", route,
            "reference", reference, "vector", vector,
        )  # fmt: skip

    def _adopt(self, document: Mapping[str, Any]) -> None:
        """Take the stored definition (another writer's newer one) as this object's own."""
        definition = parse_definition(definition_only(document))
        self.routes = list(definition.routes)
        self.routing_config = definition.routing_config
        self.catalog = _as_catalog(definition.catalog)
        self.learning = _as_learning(definition.learning)
        self.store.config = self.learning
        self.version, self.generation = stored_version(document), stored_generation(document)
        self._effective = None

    def _try_save(self, replacing: str | None = None) -> Op[int]:
        """Compare-and-set the config at ``version + 1``; returns -1 when written, else the stored version.

        ``replacing``: the generation of the stored config this one replaces (an overwrite in place, which
        stores a generation of its own); by default this object's own."""
        try:
            document = json.dumps({**self.to_dict(), "version": self.version + 1, "generation": self.generation})
        except (TypeError, ValueError) as exc:  # e.g. a route's metadata changed in place to hold a non-JSON value
            raise ConfigError(f"Router {self.name!r} cannot be stored as JSON: {exc}") from None
        expected = self.generation if replacing is None else replacing
        args = (1, config_key(self.name), self.version, document, expected)
        try:
            (result,) = yield from run_script(SAVE_CONFIG_SCRIPT, [args])
        except ResponseError as exc:
            if is_wrong_type(exc):
                yield from read_config(self.name)  # raises the ConfigError naming the key
            raise
        if int(result) == -1:
            self.version += 1
            yield from self._hold_stored()
        return int(result)

    def _hold_stored(self) -> Op[None]:
        """After a save: read the config back and hold it, so that this object holds what Redis holds.

        RedisJSON does not keep a number's last digit (0.18292116580002582 is stored as
        0.18292116580002585), and there is no writing a float it keeps exactly: the loss is in its
        parser, not in our formatting. So rather than every object that reads the config holding
        one value and the writer another, the writer takes the stored value too (one read per
        save; saves are rare). Comparisons with a stored definition tolerate the difference
        (:func:`same_definition`) for definitions written before this, or by hand.
        """
        stored = yield from read_config(self.name)
        ours = (self.version, self.generation)
        if stored is not None and (stored_version(stored), stored_generation(stored)) == ours:
            self._adopt(stored)  # another writer's later save is left to refresh() and the next compare-and-set

    def _state(self) -> tuple[Any, ...]:
        """What a save may change locally: restored when it fails (see :meth:`_commit`)."""
        return (list(self.routes), self.routing_config, self.catalog, self.learning, self.version, self.generation)

    def _restore(self, state: tuple[Any, ...]) -> None:
        routes, self.routing_config, self.catalog, self.learning, self.version, self.generation = state
        self.routes = list(routes)
        self.store.config = self.learning
        self._effective = None

    def _commit(self, change: Callable[[], None], prepare: Callable[[], Op[None]] | None = None) -> Op[None]:
        """Apply ``change`` to the definition and store it, never overwriting another writer's change.

        The stored config carries a version. When another router object (in this process or
        another) saved since this one last read it, the save is refused; the stored definition is
        read, ``change`` applied to it again, and the save retried: concurrent ``add_route`` calls
        both land. ``change`` must therefore be written against the current state (it may raise,
        e.g. ``RouteExistsError`` when the other writer added the same route).

        Commits of one object take turns (``write_lock``): ``change`` edits this object's own
        definition before the save, so two interleaved commits would save each other's halves.
        When anything fails (``change``, the save, the connection) this object goes back to the
        definition it last had in step with Redis, so it never holds what Redis does not.

        ``prepare`` runs once the lock is held, before the first save (the references a change
        lists): a caller cancelled while it waits for the lock has written nothing.
        """
        yield Acquire(self.write_lock)
        try:
            if prepare is not None:
                yield from prepare()
            for _ in range(MAX_SAVE_ATTEMPTS):
                before = self._state()
                try:
                    change()
                    self._check_size(self.routes)
                    self._effective = None
                    found = yield from self._try_save()
                    if found == -1:
                        return
                    document = yield from read_config(self.name)
                    if document is None:  # the config vanished (Redis restarted empty, flushed): recovery
                        yield from self._state_lost("its stored config is gone")  # saves this definition too
                        return
                    # Recreated meanwhile with another vectorizer: adopting it would store this one's identity.
                    self._check_same_vectorizer(document, RECREATED_HINT)
                    self._adopt(document)
                except BaseException:
                    self._restore(before)
                    raise
        finally:
            self.write_lock.release()
        raise ConflictError(
            f"Router {self.name!r} was changed by other writers {MAX_SAVE_ATTEMPTS} times while this change was "
            "being saved; retry it."
        )

    # ----------------------------------------------------------------- input validation
    def _vector_bytes(self, vector: Any) -> bytes:
        if isinstance(vector, (bytes, bytearray)):
            raise InvalidQueryError("Pass the vector as a list or array of floats, not bytes.")
        try:
            array = np.asarray(vector, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an integer no float holds
            raise InvalidQueryError(f"The vector must be a list of finite numbers: {exc}") from None
        if array.ndim != 1 or array.size != self.dims:
            raise VectorDimensionError(
                f"The vector has {array.size if array.ndim == 1 else array.shape} values; "
                f"router {self.name!r} uses {self.dims}-dimensional vectors ({self.vectorizer.model})."
            )
        if not np.all(np.isfinite(array)):
            raise InvalidQueryError("The vector contains NaN or infinite values.")
        if not np.any(array):
            raise InvalidQueryError("The vector is all zeros; cosine distance is undefined for it.")
        with np.errstate(over="ignore", under="ignore"):
            stored = array.astype(self.dtype)
        if not np.all(np.isfinite(stored)) or not np.any(stored):
            info = np.finfo(self.dtype)
            raise InvalidQueryError(
                f"The vector's values do not fit {self.dtype.name} (magnitudes up to {info.max:.3g}, "
                f"smallest normal {info.tiny:.3g}); it would be stored as infinities or zeros. Normalise it first."
            )
        return stored.tobytes()

    @staticmethod
    def _checked_statement(statement: Any) -> str:
        if not isinstance(statement, str):
            raise InvalidQueryError(f"The statement must be a string, got {type(statement).__name__}.")
        if not statement.strip():
            raise InvalidQueryError("The statement is empty or only whitespace: there is no text to embed.")
        problem = text_problem(statement)
        if problem:
            raise InvalidQueryError(f"The statement {problem}.")
        if len(statement) > MAX_STATEMENT_CHARS:
            raise InvalidQueryError(
                f"The statement is {len(statement):,} characters; the limit is {MAX_STATEMENT_CHARS:,}. "
                "Route a summary or the part of the text that states the request."
            )
        return statement

    @staticmethod
    def _checked_references(references: str | Sequence[str]) -> list[str]:
        if not isinstance(references, Iterable):  # None, a number: list() would raise a bare TypeError
            raise InvalidQueryError(
                f"references must be a string or a list of strings, got {type(references).__name__}"
            )
        refs = [references] if isinstance(references, str) else list(references)
        if not refs:
            raise InvalidQueryError("No references given.")
        for ref in refs:
            if not isinstance(ref, str) or not ref.strip():
                raise InvalidQueryError("References must be non-empty strings.")
            problem = text_problem(ref)
            if problem:
                raise InvalidQueryError(f"The reference {ref[:40]!r} {problem}.")
        return list(dict.fromkeys(refs))

    # ----------------------------------------------------------------- embedding
    def _embed(self, texts: Sequence[str]) -> Op[list[bytes]]:
        """Vectors (as stored bytes) for texts, from the cache where possible, else one Embed for the rest."""
        out: list[bytes | None] = [self._cache.get(t) for t in texts]
        missing = list(dict.fromkeys(t for t, v in zip(texts, out, strict=True) if v is None))
        if missing:
            vectors = yield Embed(tuple(missing))
            fresh = {t: self._vector_bytes(v) for t, v in zip(missing, vectors, strict=True)}
            for text, value in fresh.items():
                self._cache.put(text, value)
            out = [v if v is not None else fresh[t] for t, v in zip(texts, out, strict=True)]
        return out  # type: ignore[return-value]

    def _embed_references(self, pairs: Sequence[tuple[str, str]]) -> Op[list[bytes]]:
        if not pairs:
            return []
        vectors = yield Embed(tuple(ref for _, ref in pairs))
        return [self._vector_bytes(v) for v in vectors]

    # ----------------------------------------------------------------- setup
    def setup(
        self,
        overwrite: bool = False,
        precomputed: Mapping[tuple[str, str], bytes] | None = None,
        attach: bool = False,
    ) -> Op[None]:
        """Create the index and write the routes, or attach to an identical existing router.

        An existing router under this name is reused when its stored definition equals ours
        (nothing is re-embedded); a different one is refused unless ``overwrite=True``. With
        ``attach`` (``from_existing``, which built this definition from what it read) whatever is
        stored now is taken up: another writer may have changed it since, which is no conflict.
        ``precomputed`` maps (route, reference) to stored vector bytes that need no embedding.
        Without ``manages_index`` nothing is checked or written: the caller vouches for the index.
        """
        if not self.manages_index:
            return
        yield Command(("PING",))
        yield from shared_clock.sync()  # breakers, leases and logs are timed on Redis's clock
        try:
            modules = yield Command(("MODULE", "LIST"))
        except ResponseError:
            modules = None  # MODULE LIST can be denied by ACLs on managed Redis; don't block on it
        if modules is not None:
            check_modules(modules, "the configured URL")
        existing = yield Command(("FT._LIST",))
        indexes = {as_text(n) for n in existing or []}
        index_exists = self.name in indexes
        stored = yield from read_config(self.name)
        if index_exists and stored is None and not overwrite:
            yield from self._check_not_foreign()
        self._vectors.update(precomputed or {})
        if stored is not None and not overwrite:
            if attach:
                self._check_same_vectorizer(stored, SAME_ROUTER_HINT)
            else:
                self._check_same_router(stored)
            if index_exists:
                yield from self._check_index_vectors(stored)
            self._adopt(stored)  # the same router, to the last digit RedisJSON kept (see _hold_stored)
            if not index_exists:  # the config survived, the index did not: rebuild it
                yield from self.recover()
            yield from self._ensure_store_index(indexes)
            return
        for _ in range(MAX_SAVE_ATTEMPTS):
            same_vectors = stored is not None and not vectorizer_difference(
                stored.get("vectorizer"), vectorizer_identity(self.vectorizer)
            )
            if overwrite and stored is not None and not same_vectors:
                # The learned rows were embedded by another model: unusable with this one.
                yield from self.store.delete()
                indexes.discard(self.store_index)
            # Replaced in place: routers serving it never find its index gone or half-filled. Not under
            # another vectorizer: an object serving the old one could write its vectors into keys both list.
            if overwrite and index_exists and same_vectors and (yield from self._index_fits()):
                if (yield from self._replace_in_place(stored)):
                    break
                stored = yield from read_config(self.name)  # another writer saved meanwhile: replace that
                continue
            if overwrite and (index_exists or stored is not None):
                yield from self._drop(stored)
                index_exists = False
            # A new router, or one another process is creating right now (index, no config yet):
            # every step is idempotent and the config, written last with a compare-and-set, commits it.
            if not index_exists:
                yield from self._create_index()
            yield from self._write_references(self._pairs(), precomputed or {})
            self.version, self.generation = 0, uuid.uuid4().hex  # a creation: a generation of its own
            if (yield from self._try_save()) == -1:
                self.created = True
                break
            # Another creator committed first: the same router is taken up, a different one refused,
            # unless this is an overwrite. Then the router being replaced came back meanwhile (an object
            # serving it found its index gone and rebuilt it from its own definition): replaced again.
            stored = yield from read_config(self.name)
            index_exists = True
            if stored is None:  # the winner's config went meanwhile: try again
                continue
            same = same_definition(stored, self.to_dict()) and not vectorizer_difference(
                stored.get("vectorizer"), vectorizer_identity(self.vectorizer)
            )  # the same routes over other vectors is another router too
            if overwrite and not same:
                continue
            if not same:  # refused just below: leave nothing of this one behind
                yield from self._drop_unlisted(self._pairs(), stored)
            self._check_same_router(stored)
            self._adopt(stored)
            break
        else:
            raise ConflictError(
                f"Router {self.name!r} could not be stored: other writers kept replacing it "
                f"({MAX_SAVE_ATTEMPTS} tries)."
            )
        self._settled()
        yield from self._ensure_store_index(indexes)

    def _index_fits(self) -> Op[bool]:
        """Whether the router's index is the one this object would create (same vectors, same schema)."""
        try:
            info = yield Command(("FT.INFO", self.name))
        except ResponseError:  # gone meanwhile, or FT.INFO denied by an ACL: drop and create it
            return False
        return index_fits(info, self.name, self.dims, self.dtype.name)

    def _replace_in_place(self, stored: Mapping[str, Any]) -> Op[bool]:
        """Replace the stored router ``stored`` with this definition without dropping its index.

        This definition's references are written first, then its config replaces the stored one with a
        compare-and-set (a new generation: a creation of its own), then the references and round-robin
        positions of the replaced definition that this one does not list are deleted. A search meanwhile
        finds every reference of the old definition or of the new one, never an empty or missing index
        (dropping it answered every request "no route" until the references were written again, and
        made each object serving the router rebuild its own). False when another writer saved first.
        """
        replaced = [r for r in stored.get("routes", []) if isinstance(r, Mapping)]  # read as _drop reads it
        names = [str(r.get("name", "")) for r in replaced]
        pairs = {(n, str(ref)) for n, r in zip(names, replaced, strict=True) for ref in r.get("references", [])}
        # Until it is done, whichever of these the stored config does not list are strays: settle() deletes them.
        self._unsettle(pairs | set(self._pairs()))
        yield from self._write_references(self._pairs(), self._vectors)  # (a retry embeds nothing again)
        self.version, self.generation = stored_version(stored), uuid.uuid4().hex
        if (yield from self._try_save(replacing=stored_generation(stored))) != -1:
            return False
        yield from self._delete_unlisted_by_stored(sorted(pairs - set(self._pairs())))
        # A new router starts its rotations afresh, as a created one does.
        positions = {live.round_robin_key(self.name, n) for n in [*names, *(r.name for r in self.routes)]}
        yield Command(("DEL", *sorted(positions)))
        # Another overwrite that committed just before this one may have deleted, as stale to it, a key this
        # definition lists that was written after its commit and before this one's: written again.
        yield from self._write_missing(self._pairs())
        return True

    def settle(self, operation: object) -> Op[None]:
        """Delete the references an interrupted overwrite left that the stored config does not list.

        Replacing in place writes the new references before the config that lists them, and deletes
        the replaced ones after: one that failed or was cancelled in between (Redis refused a key, the
        connection dropped, the caller gave up) left references the surviving router never listed in
        its index, where its searches found them. So did a change adding references (``add_route``)
        stopped between writing them and its commit. The shells run this when ``operation`` fails: only
        its own references, never those of another thread's or task's write under way on this object."""
        yield from self._delete_unlisted_by_stored(sorted(self.unsettled.pop(operation, ())))

    def _unsettle(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.unsettled.setdefault(OPERATION.get(), set()).update(pairs)

    def _settled(self, pairs: Iterable[tuple[str, str]] | None = None) -> None:
        """The running operation's ``pairs`` (default: all of them) are listed, or were cleaned up."""
        operation = OPERATION.get()
        left = self.unsettled.get(operation)
        if left is not None:
            left.difference_update(left if pairs is None else pairs)
            if not left:
                del self.unsettled[operation]

    def _delete_unlisted_by_stored(self, pairs: Sequence[tuple[str, str]]) -> Op[None]:
        """Delete the reference keys of ``pairs`` that the config stored as each batch runs does not list
        (atomically: another writer may list one again meanwhile)."""
        for start in range(0, len(pairs), 500):
            batch = pairs[start : start + 500]
            keys = [reference_key(self.name, *pair) for pair in batch]
            args = (1 + len(keys), config_key(self.name), *keys, *(x for pair in batch for x in pair))
            yield from run_script(DELETE_UNLISTED_SCRIPT, [args])

    def _check_not_foreign(self) -> Op[None]:
        """Refuse an index of this name that another application made (a router's own, half-made by a
        concurrent creator, is attached to). Attaching would answer every query with no match."""
        try:
            info = yield Command(("FT.INFO", self.name))
        except ResponseError:  # gone meanwhile, or FT.INFO denied by an ACL: nothing to check against
            return
        why = foreign_index(info, self.name)
        if why is not None:
            raise RouterExistsError(
                f"Redis has a search index named {self.name!r} that is not a router's ({why}). Choose another "
                "name, or pass overwrite=True to drop that index and create the router in its place."
            )

    def _pairs(self) -> list[tuple[str, str]]:
        return [(route.name, ref) for route in self.routes for ref in route.references]

    def _create_index(self) -> Op[None]:
        try:
            yield Command(create_index_command(self.name, self.dims, self.dtype.name))
        except ResponseError as exc:  # a concurrent creator (or recovery) was first
            if "already exists" not in str(exc).lower():
                raise

    def _ensure_store_index(self, indexes: Iterable[str]) -> Op[None]:
        try:
            yield from self.store.ensure_index(indexes)
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise

    @property
    def _memory_gone(self) -> str:
        return f"its outcome memory index {self.store_index!r} is gone"

    @property
    def store_index(self) -> str:
        from redisvl_llmrouter.learning.memory import index_name

        return index_name(self.name)

    def _check_same_vectorizer(self, stored: Mapping[str, Any], hint: str) -> None:
        """Raise ``VectorizerMismatchError`` when the stored router's vectors come from another vectorizer."""
        difference = vectorizer_difference(stored.get("vectorizer"), vectorizer_identity(self.vectorizer))
        if difference:
            raise VectorizerMismatchError(
                f"Router {self.name!r} in Redis was built with another vectorizer ({difference}). {hint}"
            )

    def _check_same_router(self, stored: Mapping[str, Any]) -> None:
        self._check_same_vectorizer(stored, SAME_ROUTER_HINT)
        if not same_definition(stored, self.to_dict()):
            detail = (
                definition_difference(normal_definition(stored), normal_definition(self.to_dict()))
                or "the definitions differ"
            )
            raise RouterExistsError(
                f"A different router named {self.name!r} is already in Redis ({detail}). {SAME_ROUTER_HINT}"
            )

    def _check_index_vectors(self, stored: Mapping[str, Any]) -> Op[None]:
        """Where the stored config does not say the vectors' dtype or dims (RedisVL's routers), the
        index's schema does: a vectorizer making other vectors is refused here, not by the first query."""
        identity = stored.get("vectorizer")
        if isinstance(identity, Mapping) and identity.get("dtype") is not None and identity.get("dims") is not None:
            return
        field = yield from index_vector_field(self.name)
        if field is None:
            return
        dtype, dims = field
        if (dtype, dims) != (self.dtype.name, self.dims):
            raise VectorizerMismatchError(
                f"The index of router {self.name!r} holds {dims}-dimensional {dtype} vectors; the vectorizer given "
                f"makes {self.dims}-dimensional {self.dtype.name} ones. Pass a vectorizer of the model the router was "
                f"built with that makes {dtype} vectors (RedisVL's vectorizers and MiniLMVectorizer take "
                f"dtype={dtype!r})."
            )

    def _write_references(
        self, pairs: Sequence[tuple[str, str]], precomputed: Mapping[tuple[str, str], bytes]
    ) -> Op[None]:
        todo = [p for p in pairs if p not in precomputed]
        fresh = yield from self._embed_references(todo)
        vectors = {**dict(zip(todo, fresh, strict=True)), **{p: precomputed[p] for p in pairs if p in precomputed}}
        self._vectors.update(vectors)
        for start in range(0, len(pairs), 1000):  # bounded round trips for large routers
            chunk = pairs[start : start + 1000]
            yield Pipeline(tuple(self._reference_hset(route, ref, vectors[(route, ref)]) for route, ref in chunk))

    def _commit_with_references(self, pairs: Sequence[tuple[str, str]], change: Callable[[], None]) -> Op[None]:
        """Write the references (once this object's write lock is held), then commit ``change``, which lists them.

        A caller cancelled while it waits for the lock has written nothing. References go first so a
        reader never sees a stored route whose references are missing from the index. When the commit
        is refused (another writer added the same route or removed this one, a floor no longer holds,
        too many conflicts), the keys written here that no route of the definition now held lists are
        deleted again: a refused change leaves nothing behind, and a key another writer's route shares
        stays. Until the commit they are ``unsettled``: a change that fails otherwise (a dropped
        connection, a cancelled caller) has the shell's :meth:`settle` delete those the stored config
        does not list (none, if the save landed). So after its commit a change writes back any of its
        keys that another writer's settle deleted meanwhile, unlisted then."""
        # A router recreated meanwhile with another vectorizer is refused before its keys are written over.
        yield from self.refresh()

        def prepare() -> Op[None]:
            self._unsettle(pairs)
            yield from self._write_references(pairs, {})

        try:
            yield from self._commit(change, prepare=prepare)
        except (RouteExistsError, RouteNotFoundError, ConfigError, ConflictError, RouterStateLostError):
            yield from self._delete_unlisted(pairs)
            self._settled(pairs)
            raise
        self._settled(pairs)
        yield from self._write_missing(pairs)

    def _write_missing(self, pairs: Sequence[tuple[str, str]]) -> Op[None]:
        """Write again the keys of ``pairs`` this definition lists that are gone: another writer's
        :meth:`settle` (or a concurrent overwrite) deleted them while they were not listed yet."""
        listed = set(self._pairs())
        lost = yield from self._missing_references([p for p in pairs if p in listed])
        if lost:
            yield from self._write_references(lost, self._vectors)

    def _delete_unlisted(self, pairs: Sequence[tuple[str, str]]) -> Op[None]:
        """Delete the reference keys of ``pairs`` that no route of this object's definition lists."""
        listed = {reference_key(self.name, *pair) for pair in self._pairs()}
        strays = sorted({reference_key(self.name, *pair) for pair in pairs} - listed)
        for start in range(0, len(strays), 1000):
            yield Command(("DEL", *strays[start : start + 1000]))

    def _drop(self, stored: Mapping[str, Any] | None = None) -> Op[None]:
        """Drop the index and this router's own keys: its references and its routes' round-robin
        positions (as this object and the stored config list them) and its config, never other keys
        that happen to share the ``NAME:`` prefix."""
        keys = {reference_key(self.name, *pair) for pair in self._pairs()}
        keys.update(live.round_robin_key(self.name, route.name) for route in self.routes)
        for route in (stored or {}).get("routes", []):
            if isinstance(route, Mapping):
                keys.update(reference_key(self.name, route.get("name", ""), ref) for ref in route.get("references", []))
                keys.add(live.round_robin_key(self.name, str(route.get("name", ""))))
        # The config first: an object serving the router that finds its index gone while this runs then
        # rebuilds its own definition, under a compare-and-set the replacement settles (see recover),
        # instead of taking up the definition being dropped and writing its references back.
        yield Command(("DEL", config_key(self.name)))
        try:
            yield Command(("FT.DROPINDEX", self.name))  # without DD: the index alone, not every hash it covers
        except ResponseError as exc:
            if not is_missing_index(exc):
                raise
        ordered = sorted(keys)
        for start in range(0, len(ordered), 1000):
            yield Command(("DEL", *ordered[start : start + 1000]))
        self.version = 0

    # ----------------------------------------------------------------- recovery
    def check_not_deleted(self) -> None:
        """Raise ``RouterDeletedError`` once :meth:`delete` ran: recovery must not bring the router back."""
        if self.deleted:
            raise RouterDeletedError(
                f"Router {self.name!r} was deleted with this object's delete(); it is not rebuilt. Create it "
                "again to use it, e.g. SemanticRouter.from_dict(router.to_dict())."
            )

    def _state_lost(self, reason: str) -> Op[None]:
        """React to the router's index or config having vanished: recover, or say so with a typed error."""
        self.check_not_deleted()
        if not self.manages_index:  # create_index=False: the index is its owner's to create, never rebuilt here
            raise RouterStateLostError(
                f"Router {self.name!r} was attached with create_index=False and {reason}: it is not rebuilt, as the "
                "index belongs to whoever manages it. Create the router there (or attach with create_index=True), "
                "or call router.recover() to rebuild it from this object's definition."
            )
        if not self.auto_recover:
            raise RouterStateLostError(
                f"Router {self.name!r} lost its state in Redis: {reason} (Redis restarted without persistence, "
                "was flushed or failed over). Call router.recover() to rebuild it from this object's definition, "
                "or leave auto_recover on."
            )
        logger.warning("Router %r: %s; rebuilding it from this object's definition.", self.name, reason)
        yield from self.recover()

    def recover(self) -> Op[bool]:
        """Rebuild what vanished from Redis (index, references, config) from what this object holds.

        The stored config wins where it survived (it may be newer); otherwise this object's
        definition is written back. Reference vectors come from what this object wrote or loaded
        (a pretrained file's vectors); any others are embedded again. Idempotent and safe to run
        from several processes at once. Returns whether anything had to be rebuilt.
        """
        self.check_not_deleted()
        existing = yield Command(("FT._LIST",))
        indexes = {as_text(n) for n in existing or []}
        document = yield from read_config(self.name)
        if document is not None:  # recreated elsewhere with other vectors: this object's must not go into it
            self._check_same_vectorizer(document, RECREATED_HINT)
        if self.name in indexes and document is not None and self.store_index in indexes:
            return (yield from self._restore_lost_references(document))
        if document is not None:
            self._adopt(document)
        if self.name not in indexes:
            yield from self._create_index()
        yield from self._write_references(self._pairs(), self._vectors)
        if document is None:
            self.version = 0
            if (yield from self._try_save()) != -1:  # another process stored it first: recovered, or replaced it
                document = yield from read_config(self.name)
                if document is not None:
                    yield from self._drop_unlisted(self._pairs(), document)
                    self._check_same_vectorizer(document, RECREATED_HINT)  # its vectors are not this object's
                    self._adopt(document)
        yield from self._ensure_store_index(indexes)
        return True

    def _drop_unlisted(self, pairs: Sequence[tuple[str, str]], document: Mapping[str, Any]) -> Op[None]:
        """Delete the references of ``pairs`` (this object wrote them) that ``document`` does not list:
        another writer's definition was stored first, and they would stay in its index for ever,
        searched and never matched (a recovery that lost to an ``overwrite=True``, say).

        When ``document`` embeds with another model, the keys both list that still hold this object's
        vectors go too: that router would search them for ever. Missing, they are what its recovery
        (the gateway's reference check, ``recover()``) writes back with its own vectors."""
        listed = set(_reference_pairs(document))
        stray = sorted(set(pairs) - listed)
        for start in range(0, len(stray), 1000):
            yield Command(("DEL", *(reference_key(self.name, *pair) for pair in stray[start : start + 1000])))
        if not vectorizer_difference(document.get("vectorizer"), vectorizer_identity(self.vectorizer)):
            return
        shared = sorted(p for p in set(pairs) & listed if p in self._vectors)
        for start in range(0, len(shared), 500):
            batch = shared[start : start + 500]
            args = (len(batch), *(reference_key(self.name, *p) for p in batch), VECTOR_FIELD)
            yield from run_script(DELETE_OWN_VECTORS_SCRIPT, [(*args, *(self._vectors[p] for p in batch))])

    def _restore_lost_references(self, document: Mapping[str, Any]) -> Op[bool]:
        """Write again the stored definition's references whose keys are gone while the index and the
        config stayed: evicted by a ``maxmemory-policy`` such as ``allkeys-lru`` (nothing reads them by
        key, so they go first), or deleted by hand. Routing would go on without them, wrongly and
        silently. One ``FT.INFO`` when none is missing; True when any was written again."""
        try:
            info = yield Command(("FT.INFO", self.name))
        except ResponseError:  # gone meanwhile, or denied by an ACL: the next search says which
            return False
        pairs = _reference_pairs(document)
        indexed = indexed_documents(info)
        if indexed is None or indexed >= len(pairs):
            return False
        lost = yield from self._missing_references(pairs)
        if not lost:
            return False
        logger.warning(
            "Router %r: %d of its %d references were gone from Redis (evicted? Redis's maxmemory-policy should "
            "be noeviction); writing them again.",
            self.name,
            len(lost),
            len(pairs),
        )
        self._adopt(document)
        yield from self._write_references(lost, self._vectors)
        # A reference deleted while this ran (its config saved first, then its key removed) must not come
        # back from the definition read before: what the stored one no longer lists goes again.
        current = yield from read_config(self.name)
        listed = set() if current is None else set(_reference_pairs(current))
        revived = [reference_key(self.name, r, ref) for r, ref in lost if (r, ref) not in listed]
        if revived:
            yield Command(("DEL", *revived))
        return True

    def _missing_references(self, pairs: Sequence[tuple[str, str]]) -> Op[list[tuple[str, str]]]:
        """The (route, reference) pairs whose keys are not in Redis."""
        present: list[Any] = []
        for start in range(0, len(pairs), 1000):  # bounded round trips for large routers
            chunk = pairs[start : start + 1000]
            present += yield Pipeline(tuple(("EXISTS", reference_key(self.name, r, ref)) for r, ref in chunk))
        return [pair for pair, here in zip(pairs, present, strict=True) if not here]

    def refresh(self) -> Op[bool]:
        """Take up the definition another writer stored since this object last read it; True when it did.

        An object reads the stored definition when it is built and when one of its own saves is
        refused; it does not watch Redis. Call this to pick up another object's change (a route
        added through another process) before the next write. When nothing changed it is one
        small round trip: the stored config's version and generation, compared with this
        object's. When they differ, the whole config is read and adopted under the object's write
        lock, so it never interleaves with this object's own save.

        A stored config that is gone (Redis lost it) is not rebuilt here: False, and routing's
        own recovery rebuilds it (``auto_recover``). A router recreated with another vectorizer
        raises ``VectorizerMismatchError``, as building an object on it would; a deleted object
        raises ``RouterDeletedError``.
        """
        self.check_not_deleted()
        stamp = yield from read_config_stamp(self.name)
        if stamp is None or stamp == (self.version, self.generation):
            return False
        yield Acquire(self.write_lock)
        try:
            document = yield from read_config(self.name)
            if document is None:
                return False
            if (stored_version(document), stored_generation(document)) == (self.version, self.generation):
                return False  # this object's own save landed meanwhile
            self._check_same_vectorizer(document, RECREATED_HINT)
            if self.manages_index:
                yield from self._check_index_vectors(document)
            self._adopt(document)
        finally:
            self.write_lock.release()
        return True

    # ----------------------------------------------------------------- routing
    def _radius(self) -> float:
        if not self.routes:
            raise RouterEmptyError(f"Router {self.name!r} has no routes; add one with add_route().")
        return max(route.distance_threshold for route in self.routes)

    def _text(self, statement: Any) -> str:
        """What is embedded of a statement (see :mod:`redisvl_llmrouter.request_text`)."""
        return routing_text(self._checked_statement(statement), self.routing_config.text)

    def _query(self, statement: Any, vector: Any) -> Op[tuple[bytes, str | None]]:
        """The query vector (embedded from the statement's routing text, or given) and that text."""
        if vector is not None:
            if statement is not None:
                raise InvalidQueryError("Give a statement or a vector, not both.")
            return self._vector_bytes(vector), None
        if statement is None:
            raise InvalidQueryError("Provide a statement or a vector to route.")
        text = self._text(statement)
        (value,) = yield from self._embed([text])
        return value, text

    def _rank(
        self, rows: Sequence[ranking.RouteDistances], aggregation_method: DistanceAggregationMethod | None
    ) -> tuple[list[ranking.Candidate], list[Route]]:
        """The tier routes that passed, best first, and the floor routes that matched."""
        config = self.routing_config
        ranked = ranking.rank(rows, self.tiers, config, aggregation_method)
        floors = ranking.floors(rows, self.floor_routes, config, aggregation_method)
        return ranked, floors

    def _route_command(self, query: bytes, radius: float) -> tuple[Any, ...]:
        return route_command(self.name, query, radius, self.reference_count)

    def _search(self, pipeline: Pipeline) -> Op[list[Any]]:
        """Run a pipeline that searches the router's indexes; if they vanished, recover and run it again."""
        try:
            return (yield pipeline)  # type: ignore[no-any-return]
        except ResponseError as exc:
            if not is_missing_index(exc):
                raise
        yield from self._state_lost(f"its search index {self.name!r} is gone")
        return (yield pipeline)  # type: ignore[no-any-return]

    def _recovering(self, operation: Callable[[], Op[T]], reason: str) -> Op[T]:
        """Run ``operation`` (a read of the router's indexes); if an index vanished, recover and run it again.

        What :meth:`_search` does for routing, for the reads that do not route (``predict``, ``calibrate``).
        """
        try:
            return (yield from operation())
        except ResponseError as exc:
            if not is_missing_index(exc):
                raise
        yield from self._state_lost(reason)
        return (yield from operation())

    def _lost_state(self) -> Op[str | None]:
        """Why the router's state in Redis is gone (its index or its config), or None while both are there.

        For reads of plain keys, which answer "nothing" rather than "no such index" after a loss.
        """
        existing, config = yield Pipeline((("FT._LIST",), ("EXISTS", config_key(self.name))))
        if self.name not in {as_text(n) for n in existing or []}:
            return f"its search index {self.name!r} is gone"
        if not int(config or 0):
            return "its stored config is gone"
        return None

    def _complete(self, reply: Any, query: bytes, radius: float) -> Op[Any]:
        """The full reply when more documents matched than the router has references (foreign hashes
        under its prefix, another writer's new route): no reference in range is ever cut off."""
        total = search_total(reply)
        if total > self.reference_count:
            reply = yield Command(route_command(self.name, query, radius, total))
        return reply

    @staticmethod
    def _checked_aggregation(method: Any) -> DistanceAggregationMethod | None:
        if method is None:
            return None
        try:
            return DistanceAggregationMethod(getattr(method, "value", method))
        except ValueError:
            choices = ", ".join(m.value for m in DistanceAggregationMethod)
            raise InvalidQueryError(f"Unknown aggregation_method {method!r}; choose one of {choices}.") from None

    def _policy_input(
        self,
        options: RouteOptions,
        strategy: Strategy,
        prompt_tokens: int,
        view: MemoryView | None,
        stats: Mapping[str, live.ModelStats],
        rr_position: int,
    ) -> PolicyInput:
        prediction: Prediction | None = None
        if view is not None:
            catalog_quality = {m.name: m.quality for m in self.catalog}
            prediction = predict(view.neighbours, view.columns, self.models, view.stats, self.learning, catalog_quality)
        return PolicyInput(
            routes=self.routes,
            catalog=self.effective_catalog(),
            config=self.routing_config,
            strategy=strategy,
            constraints=options.constraints,
            prompt_tokens=prompt_tokens,
            choices=options.choices,
            prediction=prediction,
            min_support=self.learning.min_support,
            stats=stats,
            rr_position=rr_position,
            unavailable=options.unavailable,
        )

    def _match(self, ranked: Sequence[ranking.Candidate], decision: Decision, request_id: str | None) -> RouteMatch:
        match = ranking.best_match(ranked, self.tiers, self.routing_config)
        if not match and decision.model is not None:  # only a floor matched: its tier answers
            match = RouteMatch(name=decision.route, fallback=True)
        return match.model_copy(update={"model": decision.model, "decision": decision, "request_id": request_id})

    def _round_robin(
        self, strategy: Strategy, ranked: Sequence[ranking.Candidate], floors: Sequence[Route], count: int = 1
    ) -> Op[int]:
        """Advance the leading route's round-robin position in Redis; returns the first position taken.

        The leading route is the one the policy takes its first candidates from (a floor's tier when
        only a floor matched), so the counter that turns is the one the rotation reads."""
        if strategy is not Strategy.round_robin:
            return 0
        route = primary_tier(ranked, floors, self.routes, self.routing_config)
        if route is None:
            return 0
        position = yield Command(("INCRBY", live.round_robin_key(self.name, route.name), str(count)))
        return int(position) - count

    def route(
        self,
        statement: Any = None,
        vector: Any = None,
        aggregation_method: DistanceAggregationMethod | None = None,
        options: RouteOptions | None = None,
    ) -> Op[RouteMatch]:
        """Route one request: one round trip for the searches (route, memory, live stats; see the module
        docstring for what may add one), then the pure steps."""
        match, _ = yield from self._route(statement, vector, aggregation_method, options)
        return match

    def _route(
        self,
        statement: Any,
        vector: Any,
        aggregation_method: DistanceAggregationMethod | None,
        options: RouteOptions | None,
    ) -> Op[tuple[RouteMatch, list[ranking.Candidate]]]:
        """:meth:`route`'s match, and the ranked tier routes it was chosen from (for :meth:`route_many`)."""
        options = options or RouteOptions()
        aggregation_method = self._checked_aggregation(aggregation_method)
        strategy = options.strategy or self.routing_config.strategy
        radius = self._radius()
        query, text = yield from self._query(statement, vector)
        commands: list[tuple[Any, ...]] = [self._route_command(query, radius)]
        memory_commands: list[tuple[Any, ...]] = []
        if _needs_prediction(strategy, options.constraints, self.unpriced()):
            memory_commands = self.store.read_commands(query, search=self.store.nonempty)
        commands += memory_commands
        stat_models = self.models if options.stats is None and _needs_stats(strategy, options.constraints) else []
        if stat_models:
            yield from shared_clock.refresh()
        now = live_now_ms()
        for model in stat_models:
            commands += live.read_commands(model, now)
        # An id only for a recorded request: one nothing was recorded under could never take feedback.
        request_id = new_request_id() if options.record else None
        if request_id is not None:  # the record applies the stored learning settings (store_text, TTL)
            commands.append(config_stamp_command(self.name))
        replies = yield from self._search(Pipeline(tuple(commands)))
        route_reply = yield from self._complete(replies[0], query, radius)
        ranked, floors = self._rank(parse_route_rows(route_reply), aggregation_method)
        view = None
        if memory_commands:
            view = self.store.parse_read(replies[1 : 1 + len(memory_commands)])
            if view is None and self.store.nonempty:  # rows arrived since the last request: search now
                view = yield from self.store.read(query)
        at = 1 + len(memory_commands)
        stats = (
            live.as_mapping(options.stats)
            if options.stats is not None
            else live.parse_many(stat_models, replies[at : at + 2 * len(stat_models)])
        )
        rr_position = yield from self._round_robin(strategy, ranked, floors)
        prompt_tokens = options.prompt_tokens or (estimate_tokens(statement) if isinstance(statement, str) else 1)
        decision = decide(
            ranked, floors, self._policy_input(options, strategy, prompt_tokens, view, stats, rr_position)
        )
        match = self._match(ranked, decision, request_id)
        if request_id is not None:
            yield from self._record(request_id, query, text or "", match.model, prompt_tokens, replies[-1])
        return match, ranked

    def _record(
        self, request_id: str, query: bytes, text: str, model: str | None, tokens: int, stamp_reply: Any
    ) -> Op[None]:
        """Keep a routed request for feedback, under the *stored* learning settings: an object opened
        before another's ``update_learning(store_text=False)`` must not keep the prompt's text (nor its
        TTL). The stamp came with the route's round trip; only a changed one costs a read (:meth:`refresh`)."""
        if parse_config_stamp(stamp_reply, self.name) not in (None, (self.version, self.generation)):
            yield from self.refresh()
        yield Pipeline(tuple(self.store.record_request_commands(request_id, query, text, model, tokens)))

    def route_many(
        self,
        statement: Any = None,
        vector: Any = None,
        max_k: int | None = None,
        aggregation_method: DistanceAggregationMethod | None = None,
    ) -> Op[list[RouteMatch]]:
        if max_k is not None and (not isinstance(max_k, int) or max_k < 1):
            raise InvalidQueryError(f"max_k must be a positive integer, got {max_k!r}")
        # The first match is __call__'s own, policy step included (floors, strategy, learning): RedisVL's
        # users read ``.model`` off it, and a ranking-only model would skip a floor. The others are the
        # remaining passing routes in the same rank order, each with its route's own model.
        best, ranked = yield from self._route(statement, vector, aggregation_method, RouteOptions())
        if not best:
            return []
        others = ranking.top_matches(ranked, self.tiers, self.routing_config, max_k or self.routing_config.max_k)
        return [best, *others[1:]]

    def distances(
        self, statements: Sequence[str] | None = None, vectors: Sequence[Any] | None = None
    ) -> Op[list[list[ranking.RouteDistances]]]:
        """The raw per-route distance rows the ranking works on, for each query (one pipelined round trip).

        For analysis and evaluation: ``ranking.rank`` turns them into the same matches the
        router returns, under any routing config, without touching Redis again.
        """
        queries, _ = yield from self._batch_queries(statements, vectors)
        return (yield from self._distances_of(queries))

    def _distances_of(self, queries: Sequence[bytes]) -> Op[list[list[ranking.RouteDistances]]]:
        if not queries:
            return []
        radius = self._radius()
        replies = yield from self._search(Pipeline(tuple(self._route_command(q, radius) for q in queries)))
        rows = []
        for query, reply in zip(queries, replies, strict=True):
            reply = yield from self._complete(reply, query, radius)
            rows.append(parse_route_rows(reply))
        return rows

    def _batch_queries(
        self, statements: Sequence[str] | None, vectors: Sequence[Any] | None
    ) -> Op[tuple[list[bytes], list[str] | None]]:
        if (statements is None) == (vectors is None):
            raise InvalidQueryError("Provide either statements or vectors (not both).")
        self._radius()  # fail before embedding anything when there is nothing to route to
        if statements is not None:
            if isinstance(statements, str):
                raise InvalidQueryError("Batch routing takes a list of statements; call the router for one.")
            texts = [self._text(s) for s in _batch_list(statements, "statements")]
            return (yield from self._embed(texts)), texts
        return [self._vector_bytes(v) for v in _batch_list(vectors, "vectors")], None

    def route_batch(
        self,
        statements: Sequence[str] | None = None,
        vectors: Sequence[Any] | None = None,
        aggregation_method: DistanceAggregationMethod | None = None,
        options: RouteOptions | None = None,
    ) -> Op[list[RouteMatch]]:
        """Route many requests: one embedding call, one pipelined round trip for the routes, one for the memory."""
        options = options or RouteOptions()
        aggregation_method = self._checked_aggregation(aggregation_method)
        strategy = options.strategy or self.routing_config.strategy
        if statements is not None and not isinstance(statements, str):
            statements = _batch_list(statements, "statements")  # read once: a generator is read here
        queries, _ = yield from self._batch_queries(statements, vectors)
        rows = yield from self._distances_of(queries)
        views: list[MemoryView | None] = [None] * len(queries)
        if queries and _needs_prediction(strategy, options.constraints, self.unpriced()):
            views = yield from self._recovering(lambda: self.store.read_many(queries), self._memory_gone)
        stats: Mapping[str, live.ModelStats] = live.as_mapping(options.stats)
        if options.stats is None and _needs_stats(strategy, options.constraints):
            yield from shared_clock.refresh()
            now = live_now_ms()
            replies = yield Pipeline(tuple(c for m in self.models for c in live.read_commands(m, now)))
            stats = live.parse_many(self.models, replies)
        matches = []
        for i, query_rows in enumerate(rows):
            ranked, floors = self._rank(query_rows, aggregation_method)
            rr_position = yield from self._round_robin(strategy, ranked, floors)
            tokens = options.prompt_tokens or (estimate_tokens(statements[i]) if statements is not None else 1)
            decision = decide(
                ranked, floors, self._policy_input(options, strategy, tokens, views[i], stats, rr_position)
            )
            # No id: a batch records no request, so an id could never receive feedback (as route_many).
            matches.append(self._match(ranked, decision, None))
        return matches

    # ----------------------------------------------------------------- learning
    def _check_models(self, models: Iterable[str]) -> None:
        known, given = set(self.models), list(models)
        for model in given:
            if not isinstance(model, str):
                raise InvalidFeedbackError(f"A model is named by a string, got {model!r}"[:300])
        unknown = sorted(set(given) - known)
        if unknown:
            raise UnknownModelError(
                f"Router {self.name!r} does not know the model(s) {unknown[:5]}"
                f"{f' and {len(unknown) - 5} more' if len(unknown) > 5 else ''}; it knows {sorted(known)[:12]}. "
                "Add them to the catalog (update_catalog); when learning data, model_map={'name in data': 'model'} "
                "maps its names instead."
            )

    def _check_models_stored(self, models: Sequence[str]) -> Op[None]:
        """:meth:`_check_models` against the stored definition when this object does not know a model:
        another object may have added it (``add_models``), and a write follows the stored config anyway."""
        known = set(self.models)
        if not all(isinstance(m, str) and m in known for m in models):
            yield from self.refresh()
        self._check_models(models)

    def _embed_texts(self, texts: Sequence[str]) -> Op[list[bytes]]:
        """Vectors for texts that are stored, not looked up again (the query cache is left alone)."""
        if not texts:
            return []
        vectors = yield Embed(tuple(texts))
        return [self._vector_bytes(v) for v in vectors]

    def learn(
        self,
        records: Sequence[OutcomeRecord],
        model_map: Mapping[str, str] | None = None,
        vectors: Sequence[Any] | None = None,
        batch_size: int = 256,
        progress: Callable[[int], None] | None = None,
    ) -> Op[WriteReport]:
        """Write outcome records into the memory: embedded in batches, each batch one pipelined round trip.

        A prompt's row is identified by its routing text, so learning the same prompt again
        updates that row instead of adding a second one: the outcomes of the models the record
        names are replaced, the other models' outcomes kept. Unknown models are refused before
        anything is written.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidFeedbackError(f"batch_size must be a whole number, 1 or more, got {batch_size!r}")
        if progress is not None and not callable(progress):  # found out after the first batch, else
            raise InvalidFeedbackError(f"progress must be a callable taking a row count, got {progress!r}")
        records = [r.renamed(model_map or {}) for r in records]
        yield from self._check_models_stored([m for r in records for m in r.outcomes])
        if vectors is not None and len(vectors) != len(records):
            raise InvalidFeedbackError(f"{len(vectors)} vectors for {len(records)} records; they must match.")
        created = updated = evicted = 0
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            texts = [self._text(r.prompt) for r in chunk]
            if vectors is None:
                chunk_vectors = yield from self._embed_texts(texts)
            else:
                chunk_vectors = [self._vector_bytes(v) for v in vectors[start : start + batch_size]]
            rows = [
                PendingRow(
                    row_id=row_id_for_text(text),
                    observations=[Observation(m, o.quality, o.cost, o.latency_ms) for m, o in r.outcomes.items()],
                    vector=vector,
                    text=text,
                    source="learn",
                    tokens=estimate_tokens(r.prompt),
                )
                for r, text, vector in zip(chunk, texts, chunk_vectors, strict=True)
            ]
            yield from self._follow_stored_learning()
            report = yield from self.store.write(rows)
            created, updated, evicted = created + report.created, updated + report.updated, evicted + report.evicted
            if progress is not None:
                progress(len(chunk))
        return WriteReport(created=created, updated=updated, evicted=evicted)

    @staticmethod
    def _checked_outcome(quality: Any, cost: Any, latency_ms: Any) -> tuple[float, float | None, float | None]:
        """Feedback's quality, cost and latency as floats, or ``InvalidFeedbackError``; the numbers ``learn`` takes.

        Any real number (numpy's ``float32`` a grader returns, ``Decimal``) is taken as its float;
        a bool is not a number here (``True`` is no quality). A cost is at most
        :data:`~redisvl_llmrouter.learning.records.MAX_COST_USD` and a latency at most
        :data:`~redisvl_llmrouter.learning.records.MAX_LATENCY_MS`, as for ``learn``: a larger one is a
        mistake, and one past float32's range could not be stored at all.
        """

        def number(value: Any, what: str, low: float, high: float = math.inf, unit: str = "") -> float:
            real = isinstance(value, (numbers.Real, Decimal)) and not isinstance(value, (bool, np.bool_))
            try:
                converted = float(value) if real else math.nan
            except (ValueError, OverflowError):  # a signalling NaN Decimal, a Fraction past float's range
                converted = math.nan
            if not math.isfinite(converted):
                raise InvalidFeedbackError(f"{what} must be a finite number{unit}, got {value!r}")
            if not low <= converted <= high:
                bounds = f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
                raise InvalidFeedbackError(f"{what} must be {bounds}{unit}, got {value!r}")
            return converted

        return (
            number(quality, "quality", 0.0, 1.0),
            None if cost is None else number(cost, "cost", 0.0, MAX_COST_USD, " (USD for one request)"),
            None if latency_ms is None else number(latency_ms, "latency_ms", 0.0, MAX_LATENCY_MS, " (milliseconds)"),
        )

    def feedback(
        self,
        request_id: str | None = None,
        statement: str | None = None,
        *,
        model: str | None,
        quality: float,
        cost: float | None = None,
        latency_ms: float | None = None,
    ) -> Op[FeedbackResult]:
        """Record one observed outcome: of a routed request (by its id) or of a statement.

        Idempotent: feedback for the same request (or the same statement) and model replaces the
        earlier value. A quality outside [0, 1] or a model the router does not know is refused.
        ``model`` defaults to the model the request was routed to (a statement needs it).
        """
        quality, cost, latency_ms = self._checked_outcome(quality, cost, latency_ms)
        if (request_id is None) == (statement is None):
            raise InvalidFeedbackError("Give a request id or a statement (one of them).")
        if request_id is not None and not is_request_id(request_id):
            raise self._malformed_request_id(request_id)
        if model is not None:
            yield from self._check_models_stored([model])
        loaded = None
        if request_id is not None:
            loaded = yield from self.store.load_request(request_id)
            if loaded is None:
                raise self._unknown_request(request_id)
            model = loaded.model if model is None else model
        if model is None:
            raise InvalidFeedbackError(
                "Say which model the feedback is about (model=...): a statement, or a request that was not "
                "recorded or whose feedback window has passed, has no model on record."
            )
        yield from self._check_models_stored([model])
        if loaded is not None and loaded.cached:
            return FeedbackResult(row_id=None, created=False, learned=False)
        if loaded is not None:
            vector, text, tokens = loaded.vector, loaded.text, loaded.tokens
            if not vector:  # recorded without a vector (a passthrough request): embed its text now
                if not text:
                    raise UnknownRequestError(
                        f"Request {request_id!r} was recorded without its text; give the statement."
                    )
                (vector,) = yield from self._embed_texts([text])
            row_id = "r-" + request_id[4:]
        else:
            text = self._text(statement)
            tokens = estimate_tokens(statement)
            (vector,) = yield from self._embed_texts([text])
            row_id = row_id_for_text(text)
        yield from self._follow_stored_learning()
        observation = Observation(model, quality, cost, latency_ms)
        report = yield from self.store.write([PendingRow(row_id, [observation], vector, text, "feedback", tokens)])
        promoted = None
        rule = self.learning.promote
        if rule is not None and quality < rule.fail_below and text:
            promoted = yield from self._promote(vector, text, model)
        return FeedbackResult(row_id=row_id, created=report.created == 1, promoted_to=promoted)

    @staticmethod
    def _malformed_request_id(request_id: Any) -> UnknownRequestError:
        hint = ""
        if isinstance(request_id, str) and is_request_id(request_id.strip().lower()):
            hint = f" (did you mean {request_id.strip().lower()!r}? it differs by white space or case)"
        return UnknownRequestError(
            f"{request_id!r} is not a request id of this router: ids are 'req-' and 32 lower-case hex digits, "
            f"exactly as match.request_id gives them{hint}. To give feedback on a text, pass statement=..."
        )

    def _unknown_request(self, request_id: str) -> UnknownRequestError:
        return UnknownRequestError(
            f"No request {request_id!r} awaits feedback in router {self.name!r}: it was not recorded "
            f"(route with record=True, or through the gateway) or its {self.learning.feedback_ttl_s} s "
            "feedback window has passed. Give the statement instead."
        )

    def _promote(self, vector: bytes, text: str, model: str) -> Op[str | None]:
        """Apply the promotion rule (:class:`~redisvl_llmrouter.schema.PromotionRule`) after a failure."""
        rule = self.learning.promote
        tiers = list(self.tiers.values())
        position = next((i for i, r in enumerate(tiers) if model in r.models), None)
        if rule is None or position is None or position + 1 >= len(tiers):
            return None
        tier, target = tiers[position], tiers[position + 1]
        view = yield from self.store.read(vector)
        if view is None:
            return None
        columns = [view.columns.index(m) for m in tier.models if m in view.columns]
        near = view.neighbours.distances <= rule.radius
        quality = view.neighbours.values[near][:, columns, 0]
        observed = ~np.isnan(quality)
        failures = int(((quality < rule.fail_below) & observed).sum())
        if failures < rule.min_failures or failures < rule.min_share * int(observed.sum()):
            return None
        if text not in target.references:
            yield from self.add_route_references(target.name, [text])

            def mark() -> None:
                current = self.require(target.name)
                promoted = list(dict.fromkeys([*_promoted(current), text]))
                self._replace_route(target.name, metadata={**current.metadata, "promoted": promoted})

            yield from self._commit(mark)
        return target.name

    def revert_promotions(self) -> Op[int]:
        """Remove every reference the promotion rule added; returns how many."""
        removed = 0
        for route in list(self.routes):
            promoted = [t for t in _promoted(route) if t in route.references]
            if promoted:
                removed += yield from self.delete_route_references(
                    route.name, reference_ids=[reference_id(t) for t in promoted]
                )

        def unmark() -> None:
            for route in list(self.routes):
                if _promoted(route):  # the rule's own marks only: another value under the key is the user's
                    metadata = {k: v for k, v in route.metadata.items() if k != "promoted"}
                    self._replace_route(route.name, metadata=metadata)

        yield from self._commit(unmark)
        return removed

    def check_outcome_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Refuse exported memory rows naming a model the router does not know: before the router is
        created from a file, so that such a file leaves no router behind (half made, without its rows)."""
        self._check_models(m for row in rows for m in row["outcomes"])

    def import_outcomes(self, rows: Sequence[Mapping[str, Any]]) -> Op[WriteReport]:
        """Write exported memory rows (``{id, text, vector, source, outcomes}``) back, vectors as given."""
        self.check_outcome_rows(rows)
        pending = [
            PendingRow(
                row_id=row["id"],
                observations=[
                    Observation(m, o["quality"], o.get("cost"), o.get("latency_ms")) for m, o in row["outcomes"].items()
                ],
                vector=self._vector_bytes(np.frombuffer(row["vector"], dtype=self.dtype)),
                text=row.get("text") or "",
                source=row.get("source") or "learn",
                tokens=row.get("tokens"),
            )
            for row in rows
        ]
        yield from self._follow_stored_learning()
        return (yield from self.store.write(pending))

    def _follow_stored_learning(self) -> Op[None]:
        """Before a write to the outcome memory: take up the stored definition if another object changed it.

        A write applies the *stored* learning settings, whichever object makes it: the size cap
        (``max_rows``, which the write script enforces with the number it is given), ``store_text``
        and the promotion rule. Another object's ``update_learning({"max_rows": 5})`` must not be
        ignored by an object opened before it. The script cannot read the cap itself: the config
        key lies in another hash slot than the memory's keys (a Redis Cluster refuses that). So it
        costs one small read (the config's version, :meth:`refresh`) per write, and a whole read
        only when the config changed.
        """
        yield from self.refresh()

    def predict(
        self, statements: Sequence[str] | None = None, vectors: Sequence[Any] | None = None
    ) -> Op[list[Prediction | None]]:
        """What the outcome memory expects of every model for each request (None while the memory is empty)."""
        queries, _ = yield from self._batch_queries(statements, vectors)
        views = yield from self._recovering(lambda: self.store.read_many(queries), self._memory_gone)
        catalog_quality = {m.name: m.quality for m in self.catalog}
        return [
            None
            if view is None
            else predict(view.neighbours, view.columns, self.models, view.stats, self.learning, catalog_quality)
            for view in views
        ]

    # ----------------------------------------------------------------- live statistics
    def call_started(self, model: str, request_id: str, timeout_ms: int = 120_000) -> Op[None]:
        """Count a call to ``model`` as in flight (shared by every process) until it finishes or times out."""
        if not isinstance(model, str) or not model:
            raise InvalidQueryError(f"model must be a non-empty model name, got {model!r}")
        if not isinstance(request_id, str) or not request_id:  # call_finished names it to end this call
            raise InvalidQueryError(f"request_id must be a non-empty string, got {request_id!r}")
        # A timeout of 0 or less would mark the call abandoned at once: it would never count as in flight.
        if (
            isinstance(timeout_ms, (bool, np.bool_))
            or not isinstance(timeout_ms, numbers.Integral)
            or not 1 <= timeout_ms <= MAX_EXACT_INT
        ):
            raise InvalidQueryError(
                f"timeout_ms must be a whole number of milliseconds from 1 to {MAX_EXACT_INT}, got {timeout_ms!r}"
            )
        yield from shared_clock.refresh()  # the lease is read by every process
        yield Pipeline(tuple(live.start_commands(model, request_id, live_now_ms(), int(timeout_ms))))

    def call_finished(
        self, model: str, *, success: bool, latency_ms: float | None = None, request_id: str = ""
    ) -> Op[None]:
        """Record a finished call: in-flight count, latency and success averages, counters (one atomic script)."""
        if not isinstance(model, str) or not model:
            raise InvalidFeedbackError(f"model must be a non-empty model name, got {model!r}")
        if not isinstance(success, (bool, np.bool_)):  # "no" is truthy: it would count as a success
            raise InvalidFeedbackError(f"success must be True or False, got {success!r}")
        if not isinstance(request_id, str):
            raise InvalidFeedbackError(f"request_id must be a string ('' for a call not started), got {request_id!r}")
        if latency_ms is not None and (not finite_number(latency_ms) or latency_ms < 0):
            raise InvalidFeedbackError(f"latency_ms must be a finite number >= 0, got {latency_ms!r}")
        yield from shared_clock.refresh()
        args = live.finish_args(
            model, success=success, latency_ms=latency_ms, request_id=request_id, now_ms=live_now_ms()
        )
        yield from run_script(live.FINISH_SCRIPT, [args])

    def live_stats(self, models: Sequence[str] | None = None) -> Op[dict[str, live.ModelStats]]:
        """What every process sharing this Redis has measured of ``models`` (default: all the router knows)."""
        if isinstance(models, str):  # a bare name would be read as its characters (as predict, route_batch)
            raise InvalidQueryError(f"live_stats takes a list of model names; pass [{models!r}] for one.")
        names = list(models) if models is not None else self.models
        if any(not isinstance(m, str) or not m for m in names):
            raise InvalidQueryError(f"Model names must be non-empty strings, got {names!r}")
        if not names:
            return {}
        yield from shared_clock.refresh()
        now = live_now_ms()
        replies = yield Pipeline(tuple(c for m in names for c in live.read_commands(m, now)))
        return live.parse_many(names, replies)

    def round_robin_position(self, route_name: str) -> Op[int]:
        """How many requests a route has rotated with ``round_robin`` (its counter in Redis), without taking one."""
        self.require(route_name)
        value = yield Command(("GET", live.round_robin_key(self.name, route_name)))
        return int(value or 0)

    # ----------------------------------------------------------------- calibration
    def calibrate(
        self,
        *,
        budget: float | None = None,
        strong_share: float | None = None,
        quality: float | None = None,
        sample: int = 2000,
        output_tokens: int | None = None,
        apply: bool = True,
    ) -> Op[Calibration]:
        """Set ``cost_weight`` for a goal from the memory's own rows (leave-one-out predictions).

        A sample of memory rows stands for the traffic: each is predicted from its neighbours
        other than itself, every model's cost estimated as the router would (catalog prices for
        the row's text and ``output_tokens``, else what similar requests cost), and the knob is
        set where the goal is met (:func:`redisvl_llmrouter.learning.calibration.solve`).
        """
        if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= MAX_EXACT_INT:
            raise ConfigError(f"sample must be a whole number of rows from 1 to {MAX_EXACT_INT}, got {sample!r}")
        if not isinstance(apply, bool):  # bool("no") is True: a word would save what the caller declined
            raise ConfigError(f"apply must be True or False, got {apply!r}")
        if output_tokens is not None and (
            isinstance(output_tokens, bool)
            or not isinstance(output_tokens, int)
            or not 1 <= output_tokens <= MAX_TOKENS
        ):
            raise ConfigError(f"output_tokens must be a whole number from 1 to {MAX_TOKENS:,}, got {output_tokens!r}")
        rows = yield from self.store.sample_rows(sample)
        if not rows:
            raise ConfigError(f"Router {self.name!r} has no outcomes to calibrate on; learn() some first.")
        views = yield from self._recovering(
            lambda: self.store.read_many([r["vector"] for r in rows], k=self.learning.neighbours + 1), self._memory_gone
        )
        # The tier routes each row matches: routing caps an unobserved model at the tier pick's quality.
        route_rows = yield from self._distances_of([r["vector"] for r in rows])
        models = self.models
        catalog = self.effective_catalog()
        catalog_quality = {m.name: m.quality for m in self.catalog}
        out_tokens = output_tokens or self.routing_config.expected_output_tokens
        quality_hat = np.full((len(rows), len(models)), np.nan)
        cost_hat = np.full((len(rows), len(models)), np.nan)
        # Rows without similar outcomes (support under min_support): routing takes the tier's pick there,
        # whatever the weight, so they are scored at it.
        fallback, supported = np.zeros(len(rows), dtype=np.int64), np.ones(len(rows), dtype=bool)
        for i, (row, view, distances) in enumerate(zip(rows, views, route_rows, strict=True)):
            if view is None:
                continue
            # Leave the row itself out: its own vector is its nearest match, at a distance the index
            # computes in the vectors' precision (up to ~1e-3 for bfloat16, not 0), and any exact twin.
            near = view.neighbours.distances
            keep = near > 1e-6
            if near.size and near[0] <= SELF_DISTANCE[self.dtype.itemsize]:
                keep[0] = False
            neighbours = type(view.neighbours)(view.neighbours.distances[keep], view.neighbours.values[keep])
            # ... of its priors too: the memory-wide sums still held its own outcomes.
            stats = view.stats.without(view.columns, view.neighbours.values[~keep]) if not keep.all() else view.stats
            prediction = predict(neighbours, view.columns, models, stats, self.learning, catalog_quality)
            ranked, floors = self._rank(distances, None)
            # As routing prices the request: its whole prompt (rows written before sizes were kept:
            # their routing text, or one token without it).
            tokens = row["tokens"] or (estimate_tokens(row["text"]) if row["text"] else 1)
            # Only the models routing may use on this row (a matched floor's exclusions, the context
            # window), each weighed as routing weighs it.
            weighed = learned_qualities(
                ranked,
                floors,
                PolicyInput(
                    self.routes,
                    catalog,
                    self.routing_config,
                    Strategy.learned,
                    constraints=Constraints(output_tokens=out_tokens),
                    prompt_tokens=tokens,
                    prediction=prediction,
                ),
            )
            for j, model in enumerate(models):
                if model not in weighed:  # never chosen here: no quality, and no part in the cost scale
                    continue
                estimate = prediction.models[model]
                spec = catalog.get(model)
                priced = spec.estimate_cost(tokens, out_tokens) if spec is not None else None
                quality_hat[i, j] = np.nan if weighed[model] is None else weighed[model]
                cost_hat[i, j] = priced if priced is not None else (np.nan if estimate.cost is None else estimate.cost)
            if prediction.support < self.learning.min_support:
                tier_input = PolicyInput(
                    self.routes, catalog, self.routing_config, Strategy.semantic,
                    constraints=Constraints(output_tokens=out_tokens), prompt_tokens=tokens,
                )  # fmt: skip
                try:
                    pick = decide(ranked, floors, tier_input).model
                except NoEligibleModelError:
                    pick = None
                if pick is None or pick not in weighed:  # routing would answer it with no model of these
                    quality_hat[i] = np.nan
                    continue
                j = models.index(pick)
                supported[i], fallback[i] = False, j
                if np.isnan(quality_hat[i, j]):  # the pick as the prediction has it, uncapped
                    known = prediction.models[pick].quality
                    known = catalog_quality.get(pick) if known is None else known  # a 0.0 is a quality too
                    quality_hat[i, j] = np.nan if known is None else known
        try:
            result = solve(
                quality_hat, cost_hat, models, budget=budget, strong_share=strong_share, quality_target=quality,
                fallback=fallback, supported=supported,
            )  # fmt: skip
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        # Of the rows solve() scored (those some model may answer), as Calibration.unsized says.
        answerable = np.any(~np.isnan(quality_hat), axis=1)
        unsized = sum(row["tokens"] is None for row, kept in zip(rows, answerable, strict=True) if kept)
        if unsized:
            result = replace(result, unsized=unsized)
            logger.warning(
                "calibrate: %d of %d rows of router %r were written without their prompt's size (by an older "
                "version) and are priced by their routing text, which may be too low for long prompts; "
                "learn them again to record it",
                unsized,
                result.requests,
                self.name,
            )
        if apply:
            yield from self.update_routing_config(  # the weight alone: other writers' settings stay
                {"cost_weight": result.cost_weight}
            )
            # The weight as stored (RedisJSON may change its last digit, see _hold_stored): the result,
            # this object and every other object then report the same number.
            result = replace(result, cost_weight=self.routing_config.cost_weight)
        return result

    def memory_info(self) -> Op[MemoryInfo]:
        return (yield from self.store.info())

    def clear_memory(self) -> Op[int]:
        return (yield from self.store.clear())

    def update_catalog(self, catalog: ModelCatalog | Mapping[str, Any] | Sequence[Any]) -> Op[None]:
        if catalog is None:  # as update_routing_config and update_learning refuse it: it emptied the catalog
            raise ConfigError(
                "update_catalog() needs a ModelCatalog, a mapping or a list of models, got None; pass "
                "ModelCatalog() to empty the catalog."
            )
        checked = _as_catalog(catalog)

        def change() -> None:
            self.catalog = checked

        yield from self._commit(change)

    def add_models(self, models: Sequence[Any]) -> Op[list[str]]:
        """Add the models the stored catalog lacks (names, mappings or ``ModelSpec``); one it has stays as
        it is. Applied to the catalog as stored when the change is saved, so two writers adding different
        models both land (replacing the whole catalog, the later writer dropped the earlier one's)."""
        if isinstance(models, (str, Mapping, ModelSpec)) or not isinstance(models, Iterable):
            raise ConfigError(f"add_models takes a list of models, got {type(models).__name__}")
        specs = _as_catalog([{"name": m} if isinstance(m, str) else m for m in models]).models
        added: list[str] = []

        def change() -> None:
            have = set(self.catalog.names)
            new = [spec for spec in specs if spec.name not in have]
            added[:] = [spec.name for spec in new]
            if new:
                self.catalog = self.catalog.with_models(new)

        yield from self._commit(change)
        return added

    def update_learning(self, learning: LearningConfig | Mapping[str, Any]) -> Op[None]:
        """Replace the learning config (a config object), or change the settings a mapping names.

        A mapping is merged into the current config, as :meth:`update_routing_config` merges one:
        ``{"max_rows": 50_000}`` changes the cap alone, and ``store_text``, the promotion rule and
        the rest keep their values.
        """
        settings = _settings_update(learning, "update_learning", "LearningConfig", self._merged_learning, _as_learning)

        def change() -> None:
            self.learning = self.store.config = settings()

        yield from self._commit(change)

    def _merged_learning(self, given: Mapping[str, Any]) -> LearningConfig:
        return _as_learning({**self.learning.model_dump(), **given})

    # ----------------------------------------------------------------- managing routes
    def add_route(self, route: Any) -> Op[str]:
        route = _as_route(route)

        def change() -> None:
            if route.name in self._by_name:
                raise RouteExistsError(
                    f"Router {self.name!r} already has a route {route.name!r}; use add_route_references() to extend it."
                )
            self._check_floors([*self.routes, route])
            self.routes.append(route)

        self._check_size([*self.routes, route])
        if route.name in self._by_name:
            change()  # raises before anything is written
        self._check_floors([*self.routes, route])
        yield from self._commit_with_references([(route.name, ref) for ref in route.references], change)
        return route.name

    def add_routes(self, routes: Iterable[Any]) -> Op[list[str]]:
        """Add routes, extending the references of those the router already has (RedisVL's ``_add_routes``)."""
        names = []
        for given in routes:
            route = _as_route(given)
            if route.name in self._by_name:
                yield from self.add_route_references(route.name, route.references)
            else:
                yield from self.add_route(route)
            names.append(route.name)
        return names

    def remove_route(self, route_name: str) -> Op[None]:
        route = self.get(route_name)
        if route is None:  # as RedisVL: nothing to remove is not an error, but say so
            logger.warning("Route %r is not found in router %r; nothing removed.", route_name, self.name)
            return
        if self.routing_config.default_route == route_name:
            raise ConfigError(
                f"{route_name!r} is the default route; change routing_config.default_route before removing it."
            )
        # A floor naming it would no longer hold (and the stored config could no longer be loaded).
        floors = [r.name for r in self.routes if r.floor is not None and r.floor.min_route == route_name]
        if floors:
            raise ConfigError(
                f"{route_name!r} is the min_route of floor route(s) {', '.join(map(repr, floors))}; "
                "remove those floors or change their min_route first."
            )
        keys = [reference_key(self.name, route.name, ref) for ref in route.references]
        yield Command(("DEL", *keys, live.round_robin_key(self.name, route.name)))
        dropped: list[tuple[str, str]] = []

        def change() -> None:
            # Run on the stored definition when another writer saved first: its references go too.
            dropped[:] = [(r.name, ref) for r in self.routes if r.name == route_name for ref in r.references]
            self.routes = [r for r in self.routes if r.name != route_name]

        yield from self._commit(change)
        yield from self._delete_unlisted(dropped)

    def _updated_route(self, route_name: str, **changes: Any) -> Route:
        """The route with ``changes``, validated; this object is not touched."""
        current = self.require(route_name)
        try:
            return Route.model_validate({**current.model_dump(), **changes})
        except ValidationError as exc:
            raise ConfigError(f"Invalid value for route {route_name!r}: {exc.errors()[0]['msg']}") from None

    def _replace_route(self, route_name: str, **changes: Any) -> None:
        updated = self._updated_route(route_name, **changes)
        self.routes = [updated if r.name == route_name else r for r in self.routes]

    def add_route_references(self, route_name: str, references: str | Sequence[str]) -> Op[list[str]]:
        route = self.require(route_name)
        refs = self._checked_references(references)
        new = [ref for ref in refs if ref not in set(route.references)]
        self._check_size([*self.routes, route.model_copy(update={"references": new})])

        def change() -> None:
            current = self.require(route_name).references
            self._replace_route(route_name, references=list(dict.fromkeys([*current, *new])))

        yield from self._commit_with_references([(route_name, ref) for ref in new], change)
        return [reference_key(self.name, route_name, ref) for ref in refs]

    def _targets(
        self, route_name: str | None, reference_ids: Sequence[str] | None, keys: Sequence[str] | None
    ) -> list[tuple[str, str]]:
        """(route, reference) pairs selected by route name, reference ids and/or keys."""
        routes = [self.require(route_name)] if route_name else list(self.routes)
        pairs = [(r.name, ref) for r in routes for ref in r.references]
        if reference_ids is not None:
            if any(not rid for rid in reference_ids):
                raise InvalidQueryError("Reference ids must be non-empty strings.")
            wanted = set(reference_ids)
            pairs = [p for p in pairs if reference_id(p[1]) in wanted]
        if keys is not None:
            wanted_keys = {as_text(k) for k in keys}
            pairs = [p for p in pairs if reference_key(self.name, *p) in wanted_keys]
        if not route_name and reference_ids is None and keys is None:
            raise InvalidQueryError("Give a route name, reference ids or keys.")
        return pairs

    def get_route_references(
        self, route_name: str = "", reference_ids: Sequence[str] | None = None, keys: Sequence[str] | None = None
    ) -> Op[list[dict[str, Any]]]:
        """The stored references (read back from Redis): id (the key), reference_id, route_name, reference."""
        pairs = self._targets(route_name or None, reference_ids, keys)
        if not pairs:
            return []
        fields = ("reference_id", "route_name", "reference")
        read = Pipeline(tuple(("HMGET", reference_key(self.name, *p), *fields) for p in pairs))
        replies = yield read
        if any(not reply or reply[0] is None for reply in replies):
            # References this object lists are missing: another writer removed them, or Redis lost the
            # router (then recover, as routing does, rather than answer "none" for what it holds).
            lost = yield from self._lost_state()
            if lost is not None:
                yield from self._state_lost(lost)
                replies = yield read
        return [
            {"id": reference_key(self.name, *pair), **{f: as_text(v) for f, v in zip(fields, reply, strict=True)}}
            for pair, reply in zip(pairs, replies, strict=True)
            if reply and reply[0] is not None
        ]

    def delete_route_references(
        self, route_name: str = "", reference_ids: Sequence[str] | None = None, keys: Sequence[str] | None = None
    ) -> Op[int]:
        pairs = self._targets(route_name or None, reference_ids, keys)
        if not pairs:
            raise RouteNotFoundError("No matching references to delete.")
        doomed = {(route, ref) for route, ref in pairs}
        for route in self.routes:
            if route.references and all((route.name, ref) in doomed for ref in route.references):
                raise ConfigError(
                    f"That would delete every reference of route {route.name!r}; use remove_route() instead."
                )
        keys = [reference_key(self.name, *p) for p in pairs]
        deleted = yield Command(("DEL", *keys))

        def change() -> None:
            for route in list(self.routes):
                keep = [ref for ref in route.references if (route.name, ref) not in doomed]
                if len(keep) != len(route.references):
                    self._replace_route(route.name, references=keep, metadata=_unmarked(route, keep))

        yield from self._commit(change)
        # Again: a gateway's restore of lost references, having read the config before this commit, may
        # have taken the keys deleted above for evicted and written them back (see recover()).
        yield Command(("DEL", *keys))
        return int(deleted)

    def update_route_thresholds(self, route_thresholds: Mapping[str, float]) -> Op[None]:
        for name in route_thresholds:
            self.require(name)
        for name, threshold in route_thresholds.items():
            if not finite_number(threshold):
                raise ConfigError(f"Threshold for {name!r} must be a number in (0, 2], got {threshold!r}")

        for name, threshold in route_thresholds.items():  # invalid thresholds fail before anything changes
            self._updated_route(name, distance_threshold=float(threshold))

        def change() -> None:
            for name, threshold in route_thresholds.items():
                self._replace_route(name, distance_threshold=float(threshold))

        yield from self._commit(change)

    def update_routing_config(self, routing_config: RoutingConfig | Mapping[str, Any]) -> Op[None]:
        """Replace the routing config (a config object), or change the settings a mapping names.

        A mapping is merged into the current config (top-level keys; the others keep their
        values), so ``{"cost_weight": 0.5}`` changes that weight alone.
        """
        settings = _settings_update(
            routing_config, "update_routing_config", "RoutingConfig", self._merged_config, self._checked_config
        )

        def change() -> None:
            self.routing_config = settings()

        yield from self._commit(change)

    def _merged_config(self, given: Mapping[str, Any]) -> RoutingConfig:
        return self._checked_config({**self.routing_config.model_dump(), **given})

    def delete(self) -> Op[None]:
        """Drop the routes, their index and config, the outcome memory with everything it holds, the
        routes' round-robin positions and the gateway's decisions log of this router.

        Only the router's own keys go: its references and config, not other applications'
        keys under the ``NAME:`` prefix (the index is dropped without its documents).
        """
        if not self.manages_index:
            raise ConfigError(
                f"Router {self.name!r} was attached with create_index=False, so its index is not its to drop; "
                "use clear() to remove the references and keep the index."
            )
        # Marked first: a write racing this delete must not rebuild what is going (recovery checks it);
        # unmarked if the delete fails, so that it can be retried.
        self.deleted = True
        try:
            stored = yield from read_config(self.name)
            yield from self._drop(stored)
            yield from self.store.delete()
            yield Command(("DEL", decisions.stream_key(self.name)))
        except BaseException:
            self.deleted = False
            raise
        self._cache.clear()

    def clear(self) -> Op[None]:
        """Delete every route and reference, keeping the (empty) index and a config saying so."""
        keys = [reference_key(self.name, r.name, ref) for r in self.routes for ref in r.references]
        if keys:
            yield Command(("DEL", *keys))
        dropped: list[tuple[str, str]] = []

        def change() -> None:
            dropped[:] = self._pairs()  # the stored definition's, when another writer saved first
            self.routes = []
            self.routing_config = self.routing_config.model_copy(update={"default_route": None})

        yield from self._commit(change)
        yield from self._delete_unlisted(dropped)

    # ----------------------------------------------------------------- export
    def reference_vectors(self) -> Op[dict[tuple[str, str], bytes]]:
        """The stored vector of every reference, read from Redis (nothing is re-embedded)."""
        pairs = [(r.name, ref) for r in self.routes for ref in r.references]
        if not pairs:
            return {}
        read = Pipeline(tuple(("HGET", reference_key(self.name, *p), "vector") for p in pairs))
        replies = yield read
        missing = [p for p, v in zip(pairs, replies, strict=True) if v is None]
        if missing:  # Redis lost the router (restarted empty, flushed): recover as routing does, then read again
            lost = yield from self._lost_state()
            if lost is not None:
                yield from self._state_lost(lost)
                replies = yield read
                missing = [p for p, v in zip(pairs, replies, strict=True) if v is None]
        if missing:
            raise ConfigError(
                f"Router {self.name!r} lists {len(missing)} reference(s) whose vectors are not in Redis, "
                f"e.g. {missing[0]}; the index is out of step with its config."
            )
        return {p: bytes(v) for p, v in zip(pairs, replies, strict=True)}


def _unmarked(route: Route, kept: Sequence[str]) -> dict[str, Any]:
    """``route``'s metadata with the promotion marks of deleted references dropped: the same text added
    again later is the user's own, which ``revert_promotions`` must leave."""
    marks = _promoted(route)
    if not marks:
        return dict(route.metadata)
    still = [t for t in marks if t in kept]
    rest = {k: v for k, v in route.metadata.items() if k != "promoted"}
    return {**rest, "promoted": still} if still else rest


def _promoted(route: Route) -> list[str]:
    """The texts the promotion rule added to ``route`` (its ``metadata["promoted"]``, a list of strings)."""
    marks = route.metadata.get("promoted")
    if isinstance(marks, list) and marks and all(isinstance(t, str) for t in marks):
        return marks
    return []


def _reference_pairs(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(route, reference) of every reference a stored config lists."""
    stored = parse_definition(definition_only(document))
    return [(route.name, ref) for route in stored.routes for ref in route.references]

"""The router's logic, written once for the sync and the async router.

Every operation is a generator that *describes* its I/O instead of doing it: it yields a
:class:`Command` (one Redis command), a :class:`Pipeline` (several, one round trip) or an
:class:`Embed` (texts to vectors) and receives the result. The sync router drives these
generators with blocking calls and the async router with ``await``; neither holds any routing
logic of its own. Redis errors are thrown back into the generator, so the handling of, say,
"Unknown index name" is written once too.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from pydantic import ValidationError
from redis.exceptions import ResponseError
from redisvl.extensions.router.schema import Route as _RedisVLRoute
from redisvl.utils.vectorize import BaseVectorizer

from redisvl_llmrouter import ranking
from redisvl_llmrouter.errors import (
    ConfigError,
    InvalidQueryError,
    RouteExistsError,
    RouteNotFoundError,
    RouterExistsError,
    VectorDimensionError,
    VectorizerMismatchError,
)
from redisvl_llmrouter.schema import (
    MAX_STATEMENT_CHARS,
    DistanceAggregationMethod,
    Route,
    RouteMatch,
    RouterDefinition,
    RoutingConfig,
)
from redisvl_llmrouter.search import (
    as_text,
    check_modules,
    config_key,
    create_index_command,
    parse_route_rows,
    reference_id,
    reference_key,
    route_command,
    validate_router_name,
)
from redisvl_llmrouter.vectorizers import is_default_model, vectorizer_identity

__all__ = ["Command", "Embed", "Op", "Pipeline", "RouterCore", "load_definition", "parse_definition"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Command:
    """Run one Redis command; the reply is sent back."""

    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Run several Redis commands in one round trip (no transaction); the list of replies is sent back."""

    commands: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True, slots=True)
class Embed:
    """Embed texts with the router's vectorizer; a list of float vectors is sent back."""

    texts: tuple[str, ...]


Op = Generator[Command | Pipeline | Embed, Any, T]


def parse_definition(data: Any) -> RouterDefinition:
    """Validate a router dict (``to_dict()``, YAML, stored config) into a definition, or raise ``ConfigError``."""
    if isinstance(data, RouterDefinition):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"A router definition must be a mapping, got {type(data).__name__}")
    try:
        definition = RouterDefinition.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"Invalid router definition: {problems}") from None
    return definition


def load_definition(name: str) -> Op[dict[str, Any]]:
    """Read the stored definition of router ``name`` from Redis."""
    validate_router_name(name)
    raw = yield Command(("JSON.GET", config_key(name)))
    if raw is None:
        raise ConfigError(f"No router named {name!r} in this Redis (no key {config_key(name)!r}).")
    try:
        data = json.loads(as_text(raw))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"The stored config of router {name!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"The stored config of router {name!r} is not a JSON object.")
    return data


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


def _canonical(definition: dict[str, Any]) -> str:
    routes = sorted(definition.get("routes", []), key=lambda r: r["name"])
    body = {**definition, "routes": routes, "vectorizer": _identity_key(definition.get("vectorizer"))}
    return json.dumps(body, sort_keys=True, default=str)


def _identity_key(identity: Any) -> dict[str, Any] | None:
    """The parts of a vectorizer identity that decide whether two vector sets are compatible."""
    if not isinstance(identity, Mapping):
        return None
    model = identity.get("model")
    return {
        "model": "default" if is_default_model(model) else model,
        "dims": identity.get("dims"),
        "dtype": str(identity.get("dtype", "float32")).lower(),
    }


def vectorizer_difference(stored: Any, ours: Mapping[str, Any]) -> str | None:
    """A readable description of how two vectorizer identities differ, or None when compatible."""
    a, b = _identity_key(stored), _identity_key(ours)
    if a is None or b is None:
        return None
    diffs = [
        f"{k}: stored {stored.get(k)!r}, given {ours.get(k)!r}"
        for k in ("model", "dims", "dtype")
        if a[k] is not None and b[k] is not None and a[k] != b[k]
    ]
    return "; ".join(diffs) or None


class _EmbeddingCache:
    """A small thread-safe LRU of query vectors (float32 bytes), keyed by the exact statement."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

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


class RouterCore:
    """State and logic of one router; I/O-free (see the module docstring)."""

    def __init__(
        self,
        name: str,
        routes: Iterable[Any],
        vectorizer: BaseVectorizer,
        routing_config: RoutingConfig | Mapping[str, Any] | None = None,
        embedding_cache_size: int = 1024,
    ) -> None:
        self.name = validate_router_name(name)
        self.vectorizer = vectorizer
        if not vectorizer.dims:
            raise ConfigError(f"The vectorizer {vectorizer.model!r} does not report its dimensions.")
        self.dims = int(vectorizer.dims)
        self.dtype = np.dtype(vectorizer.dtype.lower())
        self.routes: list[Route] = []
        for route in routes:
            route = _as_route(route)
            if route.name in self._by_name:
                raise ConfigError(f"Duplicate route name {route.name!r}")
            self.routes.append(route)
        self.routing_config = self._checked_config(routing_config)
        self._cache = _EmbeddingCache(embedding_cache_size)

    # ----------------------------------------------------------------- state (no I/O)
    @property
    def _by_name(self) -> dict[str, Route]:
        return {route.name: route for route in self.routes}

    def get(self, route_name: str) -> Route | None:
        return self._by_name.get(route_name)

    def require(self, route_name: str) -> Route:
        route = self.get(route_name)
        if route is None:
            raise RouteNotFoundError(
                f"Router {self.name!r} has no route {route_name!r}; its routes are {[r.name for r in self.routes]}"
            )
        return route

    def _checked_config(self, config: RoutingConfig | Mapping[str, Any] | None) -> RoutingConfig:
        if config is None:
            config = RoutingConfig()
        elif not isinstance(config, RoutingConfig):
            data = config.model_dump() if hasattr(config, "model_dump") else dict(config)
            try:
                config = RoutingConfig.model_validate(data)
            except ValidationError as exc:
                raise ConfigError(f"Invalid routing config: {exc.errors()[0]['msg']}") from None
        if config.default_route is not None and config.default_route not in self._by_name:
            raise ConfigError(
                f"default_route {config.default_route!r} is not one of the routes {[r.name for r in self.routes]}"
            )
        return config

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "routes": [route.model_dump(mode="json") for route in self.routes],
            "vectorizer": vectorizer_identity(self.vectorizer),
            "routing_config": self.routing_config.to_dict(),
        }

    def _reference_hset(self, route: str, reference: str, vector: bytes) -> tuple[Any, ...]:
        return (
            "HSET", reference_key(self.name, route, reference),
            "reference_id", reference_id(reference), "route_name", route,
            "reference", reference, "vector", vector,
        )  # fmt: skip

    def _save_config(self) -> Command:
        return Command(("JSON.SET", config_key(self.name), "$", json.dumps(self.to_dict())))

    # ----------------------------------------------------------------- input validation
    def _vector_bytes(self, vector: Any) -> bytes:
        if isinstance(vector, (bytes, bytearray)):
            raise InvalidQueryError("Pass the vector as a list or array of floats, not bytes.")
        try:
            array = np.asarray(vector, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidQueryError(f"The vector must be a list of numbers: {exc}") from None
        if array.ndim != 1 or array.size != self.dims:
            raise VectorDimensionError(
                f"The vector has {array.size if array.ndim == 1 else array.shape} values; "
                f"router {self.name!r} uses {self.dims}-dimensional vectors ({self.vectorizer.model})."
            )
        if not np.all(np.isfinite(array)):
            raise InvalidQueryError("The vector contains NaN or infinite values.")
        if not np.any(array):
            raise InvalidQueryError("The vector is all zeros; cosine distance is undefined for it.")
        return array.astype(self.dtype).tobytes()

    @staticmethod
    def _checked_statement(statement: Any) -> str:
        if not isinstance(statement, str):
            raise InvalidQueryError(f"The statement must be a string, got {type(statement).__name__}.")
        if not statement.strip():
            raise InvalidQueryError("The statement is empty; there is nothing to route.")
        if len(statement) > MAX_STATEMENT_CHARS:
            raise InvalidQueryError(
                f"The statement is {len(statement):,} characters; the limit is {MAX_STATEMENT_CHARS:,}. "
                "Route a summary or the first part of the text instead."
            )
        return statement

    @staticmethod
    def _checked_references(references: str | Sequence[str]) -> list[str]:
        refs = [references] if isinstance(references, str) else list(references)
        if not refs:
            raise InvalidQueryError("No references given.")
        for ref in refs:
            if not isinstance(ref, str) or not ref.strip():
                raise InvalidQueryError("References must be non-empty strings.")
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

    def _query_vector(self, statement: Any, vector: Any) -> Op[bytes]:
        if vector is not None:
            return self._vector_bytes(vector)
        if statement is None:
            raise InvalidQueryError("Provide a statement or a vector to route.")
        (value,) = yield from self._embed([self._checked_statement(statement)])
        return value

    # ----------------------------------------------------------------- setup
    def setup(self, overwrite: bool = False, precomputed: Mapping[tuple[str, str], bytes] | None = None) -> Op[None]:
        """Create the index and write the routes, or attach to an identical existing router.

        An existing router under this name is reused when its stored definition equals ours
        (nothing is re-embedded); a different one is refused unless ``overwrite=True``.
        ``precomputed`` maps (route, reference) to stored vector bytes that need no embedding.
        """
        yield Command(("PING",))
        try:
            modules = yield Command(("MODULE", "LIST"))
        except ResponseError:
            modules = None  # MODULE LIST can be denied by ACLs on managed Redis; don't block on it
        if modules is not None:
            check_modules(modules, "the configured URL")
        existing = yield Command(("FT._LIST",))
        index_exists = self.name in {as_text(n) for n in existing or []}
        stored_raw = yield Command(("JSON.GET", config_key(self.name)))
        if (index_exists or stored_raw is not None) and not overwrite:
            stored = json.loads(as_text(stored_raw)) if stored_raw is not None else None
            self._check_same_router(stored, index_exists)
            return
        if index_exists or stored_raw is not None:
            yield from self._drop()
        yield Command(create_index_command(self.name, self.dims, self.dtype.name))
        yield from self._write_references(
            [(route.name, ref) for route in self.routes for ref in route.references], precomputed or {}
        )
        yield self._save_config()

    def _check_same_router(self, stored: Any, index_exists: bool) -> None:
        hint = "Pass overwrite=True to replace it, or use from_existing() to attach to it."
        if stored is None or not index_exists:
            raise RouterExistsError(f"Redis already holds a partial router named {self.name!r}. {hint}")
        difference = vectorizer_difference(stored.get("vectorizer"), vectorizer_identity(self.vectorizer))
        if difference:
            raise VectorizerMismatchError(
                f"Router {self.name!r} in Redis was built with another vectorizer ({difference}). {hint}"
            )
        if _canonical(stored) != _canonical(self.to_dict()):
            theirs = {r.get("name") for r in stored.get("routes", [])}
            ours = set(self._by_name)
            detail = (
                f"stored routes {sorted(theirs)} vs given {sorted(ours)}"
                if theirs != ours
                else "same route names but different references, thresholds, models, costs or config"
            )
            raise RouterExistsError(f"A different router named {self.name!r} is already in Redis ({detail}). {hint}")

    def _write_references(
        self, pairs: Sequence[tuple[str, str]], precomputed: Mapping[tuple[str, str], bytes]
    ) -> Op[None]:
        todo = [p for p in pairs if p not in precomputed]
        fresh = yield from self._embed_references(todo)
        vectors = {**dict(zip(todo, fresh, strict=True)), **{p: precomputed[p] for p in pairs if p in precomputed}}
        if pairs:
            yield Pipeline(tuple(self._reference_hset(route, ref, vectors[(route, ref)]) for route, ref in pairs))

    def _drop(self) -> Op[None]:
        try:
            yield Command(("FT.DROPINDEX", self.name, "DD"))
        except ResponseError as exc:
            if "unknown index" not in str(exc).lower() and "no such index" not in str(exc).lower():
                raise
        yield Command(("DEL", config_key(self.name)))

    # ----------------------------------------------------------------- routing
    def _radius(self) -> float:
        if not self.routes:
            raise ConfigError(f"Router {self.name!r} has no routes; add one with add_route().")
        return max(route.distance_threshold for route in self.routes)

    def _ranked(
        self, statement: Any, vector: Any, aggregation_method: DistanceAggregationMethod | None
    ) -> Op[list[ranking.Candidate]]:
        """Embed (or take) the query, run the one search, rank every route that passed."""
        radius = self._radius()
        query = yield from self._query_vector(statement, vector)
        reply = yield Command(route_command(self.name, query, radius))
        return ranking.rank(parse_route_rows(reply), self._by_name, self.routing_config, aggregation_method)

    def route(
        self, statement: Any = None, vector: Any = None, aggregation_method: DistanceAggregationMethod | None = None
    ) -> Op[RouteMatch]:
        ranked = yield from self._ranked(statement, vector, aggregation_method)
        return ranking.best_match(ranked, self._by_name, self.routing_config)

    def route_many(
        self,
        statement: Any = None,
        vector: Any = None,
        max_k: int | None = None,
        aggregation_method: DistanceAggregationMethod | None = None,
    ) -> Op[list[RouteMatch]]:
        if max_k is not None and (not isinstance(max_k, int) or max_k < 1):
            raise InvalidQueryError(f"max_k must be a positive integer, got {max_k!r}")
        ranked = yield from self._ranked(statement, vector, aggregation_method)
        return ranking.top_matches(ranked, self._by_name, self.routing_config, max_k or self.routing_config.max_k)

    def distances(
        self, statements: Sequence[str] | None = None, vectors: Sequence[Any] | None = None
    ) -> Op[list[list[ranking.RouteDistances]]]:
        """The raw per-route distance rows the ranking works on, for each query (one pipelined round trip).

        For analysis and evaluation: ``ranking.rank`` turns them into the same matches the
        router returns, under any routing config, without touching Redis again.
        """
        queries = yield from self._batch_queries(statements, vectors)
        if not queries:
            return []
        radius = self._radius()
        replies = yield Pipeline(tuple(route_command(self.name, q, radius) for q in queries))
        return [parse_route_rows(reply) for reply in replies]

    def _batch_queries(self, statements: Sequence[str] | None, vectors: Sequence[Any] | None) -> Op[list[bytes]]:
        if (statements is None) == (vectors is None):
            raise InvalidQueryError("Provide either statements or vectors (not both).")
        self._radius()  # fail before embedding anything when there is nothing to route to
        if statements is not None:
            if isinstance(statements, str):
                raise InvalidQueryError("Batch routing takes a list of statements; call the router for one.")
            return (yield from self._embed([self._checked_statement(s) for s in statements]))
        return [self._vector_bytes(v) for v in vectors or []]

    def route_batch(
        self,
        statements: Sequence[str] | None = None,
        vectors: Sequence[Any] | None = None,
        aggregation_method: DistanceAggregationMethod | None = None,
    ) -> Op[list[RouteMatch]]:
        """Route many queries: one embedding call for all of them, one pipelined round trip to Redis."""
        rows = yield from self.distances(statements, vectors)
        routes, config = self._by_name, self.routing_config
        return [ranking.best_match(ranking.rank(r, routes, config, aggregation_method), routes, config) for r in rows]

    # ----------------------------------------------------------------- managing routes
    def add_route(self, route: Any) -> Op[str]:
        route = _as_route(route)
        if route.name in self._by_name:
            raise RouteExistsError(
                f"Router {self.name!r} already has a route {route.name!r}; use add_route_references() to extend it."
            )
        yield from self._write_references([(route.name, ref) for ref in route.references], {})
        self.routes.append(route)
        yield self._save_config()
        return route.name

    def remove_route(self, route_name: str) -> Op[None]:
        route = self.require(route_name)
        if self.routing_config.default_route == route_name:
            raise ConfigError(
                f"{route_name!r} is the default route; change routing_config.default_route before removing it."
            )
        keys = [reference_key(self.name, route.name, ref) for ref in route.references]
        yield Command(("DEL", *keys))
        self.routes = [r for r in self.routes if r.name != route_name]
        yield self._save_config()

    def _replace_route(self, route_name: str, **changes: Any) -> None:
        current = self.require(route_name)
        try:
            updated = Route.model_validate({**current.model_dump(), **changes})
        except ValidationError as exc:
            raise ConfigError(f"Invalid value for route {route_name!r}: {exc.errors()[0]['msg']}") from None
        self.routes = [updated if r.name == route_name else r for r in self.routes]

    def add_route_references(self, route_name: str, references: str | Sequence[str]) -> Op[list[str]]:
        route = self.require(route_name)
        refs = self._checked_references(references)
        new = [ref for ref in refs if ref not in set(route.references)]
        yield from self._write_references([(route_name, ref) for ref in new], {})
        self._replace_route(route_name, references=[*route.references, *new])
        yield self._save_config()
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
        replies = yield Pipeline(tuple(("HMGET", reference_key(self.name, *p), *fields) for p in pairs))
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
        deleted = yield Command(("DEL", *(reference_key(self.name, *p) for p in pairs)))
        for route in list(self.routes):
            keep = [ref for ref in route.references if (route.name, ref) not in doomed]
            if len(keep) != len(route.references):
                self._replace_route(route.name, references=keep)
        yield self._save_config()
        return int(deleted)

    def update_route_thresholds(self, route_thresholds: Mapping[str, float]) -> Op[None]:
        for name in route_thresholds:
            self.require(name)
        for name, threshold in route_thresholds.items():
            if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold):
                raise ConfigError(f"Threshold for {name!r} must be a number in (0, 2], got {threshold!r}")
            self._replace_route(name, distance_threshold=float(threshold))
        yield self._save_config()

    def update_routing_config(self, routing_config: RoutingConfig | Mapping[str, Any]) -> Op[None]:
        self.routing_config = self._checked_config(routing_config)
        yield self._save_config()

    def delete(self) -> Op[None]:
        yield from self._drop()
        self._cache.clear()

    def clear(self) -> Op[None]:
        """Delete every route and reference, keeping the (empty) index and a config saying so."""
        keys = [reference_key(self.name, r.name, ref) for r in self.routes for ref in r.references]
        if keys:
            yield Command(("DEL", *keys))
        self.routes = []
        self.routing_config = self.routing_config.model_copy(update={"default_route": None})
        yield self._save_config()

    # ----------------------------------------------------------------- export
    def reference_vectors(self) -> Op[dict[tuple[str, str], bytes]]:
        """The stored vector of every reference, read from Redis (nothing is re-embedded)."""
        pairs = [(r.name, ref) for r in self.routes for ref in r.references]
        if not pairs:
            return {}
        replies = yield Pipeline(tuple(("HGET", reference_key(self.name, *p), "vector") for p in pairs))
        missing = [p for p, v in zip(pairs, replies, strict=True) if v is None]
        if missing:
            raise ConfigError(
                f"Router {self.name!r} lists {len(missing)} reference(s) whose vectors are not in Redis, "
                f"e.g. {missing[0]}; the index is out of step with its config."
            )
        return {p: bytes(v) for p, v in zip(pairs, replies, strict=True)}

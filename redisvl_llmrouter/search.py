"""The router's Redis layout and its one search: command builders and reply parsers, no I/O.

Layout of a router called ``NAME``:

* ``NAME:route_config`` — a JSON document with the router definition (routes with model, cost,
  threshold, metadata and references; the vectorizer identity; the routing config). It is the
  source of truth for :meth:`SemanticRouter.from_existing` and is rewritten on every change.
* ``NAME:<route name>:<sha256 of reference>`` — one hash per reference: ``reference_id``,
  ``route_name``, ``reference`` and the ``vector`` (in the vectorizer's dtype, float32 by default).
* the search index ``NAME`` over those hashes (prefix ``NAME:``), a FLAT cosine vector index.

Routing is one ``FT.SEARCH``: a vector range query (radius = the largest route threshold)
returning the route name and distance of every reference in range. The ranking core groups and
aggregates them (min, avg, sum, mean of the k nearest), so every route in range is considered,
not only the top few by distance, and any aggregation is computed from one round trip.

Replies are parsed for both RESP2 and RESP3 and for clients with or without ``decode_responses``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from redisvl.redis.utils import hashify

from redisvl_llmrouter.errors import ConfigError, RedisModuleMissingError
from redisvl_llmrouter.ranking import RouteDistances

__all__ = [
    "check_modules",
    "config_key",
    "create_index_command",
    "foreign_index",
    "is_missing_index",
    "is_wrong_type",
    "parse_route_rows",
    "parse_vector_field",
    "reference_id",
    "reference_key",
    "route_command",
    "search_total",
    "validate_router_name",
    "vector_dtype",
]

VECTOR_FIELD = "vector"
_ROUTER_NAME = re.compile(r"^[^\s:*?\[\]{}\\'\"]+$")


#: The prefix of the keys this project shares between routers (``llmrouter:{NAME}:outcome:...``, breakers,
#: statistics): no router may be named so, or its index (over ``NAME:``) would take them all in.
RESERVED_PREFIX = "llmrouter"


def validate_router_name(name: str) -> str:
    """Router names are Redis key prefixes and index names: no spaces, colons, quotes or glob characters."""
    if not isinstance(name, str) or not _ROUTER_NAME.match(name):
        raise ConfigError(
            f"Invalid router name {name!r}: use letters, digits and '-', '_' or '.' "
            "(no spaces, colons, quotes or glob characters; it prefixes every Redis key)."
        )
    if name == RESERVED_PREFIX:
        raise ConfigError(
            f"Invalid router name {name!r}: it is reserved. The project's own keys (every router's outcome "
            f"memory, breakers, statistics) start with '{RESERVED_PREFIX}:', which a router of that name would "
            "index as its own."
        )
    return name


def vector_dtype(name: str) -> np.dtype:
    """The numpy dtype of stored vectors: Redis's FLOAT16/32/64 and BFLOAT16 (numpy learns it from ml_dtypes)."""
    lowered = str(name).lower()
    if lowered == "bfloat16":
        try:
            import ml_dtypes  # noqa: F401  registers bfloat16 with numpy, as RedisVL does
        except ImportError:
            raise ConfigError("bfloat16 vectors need the ml_dtypes package: pip install ml_dtypes") from None
    try:
        return np.dtype(lowered)
    except TypeError:
        raise ConfigError(f"Unsupported vector dtype {name!r}; use float16, bfloat16, float32 or float64.") from None


def config_key(router: str) -> str:
    return f"{router}:route_config"


def reference_id(reference: str) -> str:
    """RedisVL's reference id: the SHA-256 of the reference text."""
    return hashify(reference)


def reference_key(router: str, route: str, reference: str) -> str:
    return f"{router}:{route}:{reference_id(reference)}"


def create_index_command(router: str, dims: int, dtype: str) -> tuple[Any, ...]:
    # CASESENSITIVE keeps "Simple" and "simple" distinct routes and returns names as written.
    return (
        "FT.CREATE", router, "ON", "HASH", "PREFIX", "1", f"{router}:",
        "SCHEMA",
        "reference_id", "TAG",
        "route_name", "TAG", "CASESENSITIVE",
        "reference", "TEXT",
        VECTOR_FIELD, "VECTOR", "FLAT", "6",
        "TYPE", dtype.upper(), "DIM", str(dims), "DISTANCE_METRIC", "COSINE",
    )  # fmt: skip


#: Most references one router may hold (all routes together), refused at creation and on
#: ``add_route``/``add_route_references``. Every search asks for as many rows as the router has
#: references, so no reference in range is ever cut off; this bounds the reply (and stays well
#: under RediSearch's own cap on results, ``search-max-search-results``, 1,000,000 by default).
MAX_REFERENCES = 100_000


def route_command(router: str, vector: bytes, radius: float, limit: int) -> tuple[Any, ...]:
    """``FT.SEARCH`` returning route name and distance of (up to ``limit``) references within ``radius``.

    Callers pass the router's reference count as ``limit`` and compare it with
    :func:`search_total`: a reply holding fewer rows than matched is searched again in full.
    """
    return (
        "FT.SEARCH", router,
        f"@{VECTOR_FIELD}:[VECTOR_RANGE $radius $vector]=>{{$YIELD_DISTANCE_AS: distance}}",
        "PARAMS", "4", "vector", vector, "radius", repr(float(radius)),
        "RETURN", "2", "route_name", "distance",
        "LIMIT", "0", str(max(1, int(limit))),
        "DIALECT", "2",
    )  # fmt: skip


def search_total(reply: Any) -> int:
    """How many documents an FT.SEARCH matched (not how many it returned), RESP2 or RESP3."""
    if isinstance(reply, dict):
        return int(reply.get(b"total_results", reply.get("total_results", 0)))
    return int(reply[0]) if reply else 0


def is_missing_index(exc: BaseException) -> bool:
    """Whether a Redis error says the searched index does not exist (Redis restarted empty, flushed)."""
    text = str(exc).lower()
    return "unknown index" in text or "no such index" in text


def is_wrong_type(exc: BaseException) -> bool:
    """Whether a Redis error says a key holds another type (Redis: WRONGTYPE; RedisJSON: "wrong Redis type")."""
    text = str(exc).lower()
    return "wrongtype" in text or "wrong redis type" in text


#: Compare-and-set of the stored config. KEYS[1]: the config key; ARGV[1]: the version the
#: writer last saw (0: none); ARGV[2]: the new document, whose ``version`` is ARGV[1] + 1; ARGV[3]: the
#: generation (creation) the writer follows, which a stored document must match.
#: Returns -1 when written, else the stored version (0 when the key is gone), so concurrent
#: writers never overwrite each other's changes unknowingly.
SAVE_CONFIG_SCRIPT = """
local current = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local found = cjson.decode(redis.call('JSON.GET', KEYS[1], '$.version'))[1]
  if type(found) == 'number' then current = found end
  local generation = cjson.decode(redis.call('JSON.GET', KEYS[1], '$.generation'))[1]
  if type(generation) ~= 'string' then generation = '' end
  if generation ~= ARGV[3] then return current end
end
if current ~= tonumber(ARGV[1]) then return current end
redis.call('JSON.SET', KEYS[1], '$', ARGV[2])
return -1
"""


#: Delete reference keys that the stored config does not list. KEYS[1]: the config key; KEYS[2..]: the
#: reference keys; ARGV: the route name and reference text of each, in order. Atomic, so a key another
#: writer's definition lists again (committed after the caller read what it replaced) is kept. Only
#: hashes: a key of another type there is not a reference (another application's, which refused a write).
DELETE_UNLISTED_SCRIPT = """
local listed = {}
local raw = redis.call('EXISTS', KEYS[1]) == 1 and redis.call('JSON.GET', KEYS[1]) or nil
local routes = raw and cjson.decode(raw)['routes'] or {}
if type(routes) ~= 'table' then routes = {} end
for _, route in ipairs(routes) do
  if type(route) == 'table' and type(route['references']) == 'table' then
    for _, ref in ipairs(route['references']) do listed[tostring(route['name']) .. '\\0' .. tostring(ref)] = true end
  end
end
local deleted = 0
for i = 2, #KEYS do
  if not listed[ARGV[2 * i - 3] .. '\\0' .. ARGV[2 * i - 2]] and redis.call('TYPE', KEYS[i])['ok'] == 'hash' then
    deleted = deleted + redis.call('DEL', KEYS[i])
  end
end
return deleted
"""


#: Delete reference keys that still hold the given vectors. KEYS: the reference keys; ARGV[1]: the vector
#: field; ARGV[2..]: each key's vector bytes, in order. A writer refused because the stored router embeds
#: with another model takes back what it wrote into keys both definitions list, not what another wrote since.
DELETE_OWN_VECTORS_SCRIPT = """
local deleted = 0
for i = 1, #KEYS do
  if redis.call('TYPE', KEYS[i])['ok'] == 'hash' and redis.call('HGET', KEYS[i], ARGV[1]) == ARGV[i + 1] then
    deleted = deleted + redis.call('DEL', KEYS[i])
  end
end
return deleted
"""


def as_text(value: Any) -> str:
    """A Redis reply value as ``str`` (replies are bytes unless the client decodes them)."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    return {as_text(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


_DISTANCE = (b"distance", "distance")
_ROUTE_NAME = (b"route_name", "route_name")


def search_documents(reply: Any) -> Iterator[Sequence[Any]]:
    """Each document's flat ``[field, value, ...]`` list in an FT.SEARCH reply, RESP2 or RESP3."""
    if isinstance(reply, dict):  # RESP3: {"results": [{"id": ..., "extra_attributes": {...}}, ...]}
        for item in reply.get(b"results", reply.get("results", [])):
            attrs = item.get(b"extra_attributes", item.get("extra_attributes", {}))
            yield [x for pair in attrs.items() for x in pair]
    else:  # RESP2: [total, key, [field, value, ...], key, [...], ...]
        yield from (item for item in reply[2::2] if isinstance(item, (list, tuple)))


def parse_route_rows(reply: Any) -> list[RouteDistances]:
    """Group an FT.SEARCH reply from :func:`route_command` into one row per route, nearest first.

    On the hot path of every query, so it walks the flat field lists instead of building dicts.
    Documents missing a field (a reference deleted mid-search) are dropped rather than guessed.
    """
    by_route: dict[Any, list[float]] = {}
    for fields in search_documents(reply):
        route = distance = None
        for i in range(0, len(fields) - 1, 2):
            key = fields[i]
            if key in _DISTANCE:
                distance = fields[i + 1]
            elif key in _ROUTE_NAME:
                route = fields[i + 1]
        if route is None or distance is None:
            continue
        try:
            value = float(distance)
        except ValueError:
            continue
        by_route.setdefault(route, []).append(value)
    return [RouteDistances(as_text(route), tuple(sorted(ds))) for route, ds in by_route.items()]


def _mapping(value: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 flat ``[key, value, ...]`` list as a dict with text keys."""
    if isinstance(value, dict):
        return {as_text(k): v for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return _pairs(value)
    return {}


def parse_vector_field(info: Any) -> tuple[str, int] | None:
    """The lower-case dtype and the dims of the ``vector`` field in an ``FT.INFO`` reply (RESP2 or RESP3).

    None when the reply has no such field or does not say (an index this package did not create).
    """
    for attribute in _mapping(info).get("attributes") or []:
        fields = _mapping(attribute)
        if as_text(fields.get("attribute", fields.get("identifier", ""))) != VECTOR_FIELD:
            continue
        dtype, dims = fields.get("data_type"), fields.get("dim")
        if dtype is None or dims is None:
            return None
        try:
            return as_text(dtype).lower(), int(as_text(dims))
        except ValueError:
            return None
    return None


#: The options an ``FT.INFO`` attribute lists without a value (RESP2 gives them as bare items).
_FIELD_FLAGS = frozenset({"SORTABLE", "UNF", "NOSTEM", "NOINDEX", "CASESENSITIVE", "WITHSUFFIXTRIE", "INDEXEMPTY",
                          "INDEXMISSING"})  # fmt: skip


def _attribute(attribute: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """An ``FT.INFO`` attribute's fields and its sorted flags: Redis 8 answers RESP3 with a ``flags``
    list, RESP2 with the flags as bare items among the ``key, value`` pairs."""
    if isinstance(attribute, dict):
        fields = {as_text(k): v for k, v in attribute.items()}
        return fields, tuple(sorted(as_text(f).upper() for f in fields.get("flags") or []))
    fields, flags, items = {}, [], list(attribute or [])
    while items:
        key = as_text(items.pop(0))
        if key.upper() in _FIELD_FLAGS or not items:
            flags.append(key.upper())
        else:
            fields[key] = items.pop(0)
    return fields, tuple(sorted(flags + [as_text(f).upper() for f in fields.pop("flags", None) or []]))


def index_fits(info: Any, router: str, dims: int, dtype: str) -> bool:
    """Whether an ``FT.INFO`` reply describes exactly the index :func:`create_index_command` makes for
    ``router`` with these vectors: an overwrite may then keep it and swap the references in place."""
    info = _mapping(info)
    if [as_text(p) for p in _mapping(info.get("index_definition")).get("prefixes") or []] != [f"{router}:"]:
        return False
    found = {}
    for attribute in info.get("attributes") or []:
        fields, flags = _attribute(attribute)
        found[as_text(fields.get("attribute", ""))] = (
            as_text(fields.get("type", "")).upper(),
            flags,
            *(as_text(fields.get(k, "")).upper() for k in ("algorithm", "data_type", "dim", "distance_metric")),
        )
    return found == {
        "reference_id": ("TAG", (), "", "", "", ""),
        "route_name": ("TAG", ("CASESENSITIVE",), "", "", "", ""),
        "reference": ("TEXT", (), "", "", "", ""),
        VECTOR_FIELD: ("VECTOR", (), "FLAT", dtype.upper(), str(dims), "COSINE"),
    }


def indexed_documents(info: Any) -> int | None:
    """``num_docs`` of an ``FT.INFO`` reply (RESP2 or RESP3), None when it does not say."""
    try:
        return int(float(as_text(_mapping(info)["num_docs"])))
    except (KeyError, TypeError, ValueError):
        return None


def foreign_index(info: Any, router: str) -> str | None:
    """What shows an ``FT.INFO`` reply's index is not a router's (RESP2 or RESP3), or None.

    A router's index covers the keys ``ROUTER:`` and has a ``route_name`` and a vector field; an index
    another application made under the same name would answer every search with nothing.
    """
    info = _mapping(info)
    prefixes = [as_text(p) for p in _mapping(info.get("index_definition")).get("prefixes") or []]
    fields = {as_text(_mapping(a).get("attribute", "")) for a in info.get("attributes") or []}
    if prefixes not in ([f"{router}:"], [router]):  # RedisVL's routers give the prefix without the colon
        return f"it covers the keys {prefixes}, not {[f'{router}:']}"
    missing = sorted({"route_name", VECTOR_FIELD} - fields)
    if missing:
        return f"it has no {' or '.join(missing)} field"
    return None


def check_modules(module_list: Any, where: str) -> None:
    """Raise a readable error when ``MODULE LIST`` lacks the search or the JSON module."""
    names = set()
    for module in module_list or []:
        fields = module if isinstance(module, dict) else _pairs(module)
        fields = {as_text(k): v for k, v in fields.items()}
        names.add(as_text(fields.get("name", "")).lower())
    missing = [label for label, ok in (
        ("search (RediSearch)", "search" in names or "ft" in names),
        ("JSON (RedisJSON)", "rejson" in names or "json" in names or "redisjson" in names),
    ) if not ok]  # fmt: skip
    if missing:
        raise RedisModuleMissingError(
            f"The Redis at {where} lacks the {' and '.join(missing)} module(s) that routing needs. "
            "Use Redis 8 or Redis Stack, or unset REDIS_URL to let redisvl-llmrouter start its "
            "embedded Redis (pip install 'redisvl-llmrouter[embedded]')."
        )

"""The router's Redis layout and its one search: command builders and reply parsers, no I/O.

Layout of a router called ``NAME``:

* ``NAME:route_config`` — a JSON document with the router definition (routes with model, cost,
  threshold, metadata and references; the vectorizer identity; the routing config). It is the
  source of truth for :meth:`SemanticRouter.from_existing` and is rewritten on every change.
* ``NAME:<route name>:<sha256 of reference>`` — one hash per reference: ``reference_id``,
  ``route_name``, ``reference`` and the float32 ``vector``.
* the search index ``NAME`` over those hashes (prefix ``NAME:``), a FLAT cosine vector index.

Routing is one ``FT.AGGREGATE``: a vector range query (radius = the largest route threshold)
grouped by route, reducing each group to min, avg, sum and count of distances, so one round trip
returns a handful of rows whatever the aggregation method, and every route in range is
considered by the ranking core, not only the top few by distance.

Replies are parsed for both RESP2 and RESP3 and for clients with or without ``decode_responses``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from redisvl.redis.utils import hashify

from redisvl_llmrouter.errors import ConfigError, RedisModuleMissingError
from redisvl_llmrouter.ranking import RouteDistances

__all__ = [
    "check_modules",
    "config_key",
    "create_index_command",
    "parse_route_rows",
    "reference_id",
    "reference_key",
    "route_command",
    "validate_router_name",
]

VECTOR_FIELD = "vector"
_ROUTER_NAME = re.compile(r"^[^\s:*?\[\]{}\\'\"]+$")


def validate_router_name(name: str) -> str:
    """Router names are Redis key prefixes and index names: no spaces, colons, quotes or glob characters."""
    if not isinstance(name, str) or not _ROUTER_NAME.match(name):
        raise ConfigError(
            f"Invalid router name {name!r}: use letters, digits and '-', '_' or '.' "
            "(no spaces, colons, quotes or glob characters; it prefixes every Redis key)."
        )
    return name


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


def route_command(router: str, vector: bytes, radius: float) -> tuple[Any, ...]:
    """``FT.AGGREGATE`` returning, per route within ``radius``, min/avg/sum/count of distances."""
    return (
        "FT.AGGREGATE", router,
        f"@{VECTOR_FIELD}:[VECTOR_RANGE $radius $vector]=>{{$YIELD_DISTANCE_AS: distance}}",
        "PARAMS", "4", "vector", vector, "radius", repr(float(radius)),
        "GROUPBY", "1", "@route_name",
        "REDUCE", "MIN", "1", "@distance", "AS", "min",
        "REDUCE", "AVG", "1", "@distance", "AS", "avg",
        "REDUCE", "SUM", "1", "@distance", "AS", "sum",
        "REDUCE", "COUNT", "0", "AS", "count",
        "LIMIT", "0", "10000",
        "DIALECT", "2",
    )  # fmt: skip


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    return {_text(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def _rows(reply: Any) -> list[dict[str, Any]]:
    """The list of field maps in an FT.AGGREGATE reply, RESP2 or RESP3."""
    if isinstance(reply, dict):  # RESP3: {"results": [{"extra_attributes": {...}}, ...]}
        results = reply.get(b"results", reply.get("results", []))
        rows = []
        for item in results:
            attrs = item.get(b"extra_attributes", item.get("extra_attributes", {}))
            rows.append({_text(k): v for k, v in attrs.items()})
        return rows
    # RESP2: [total, [k, v, k, v, ...], ...]
    return [_pairs(row) for row in list(reply)[1:] if isinstance(row, (list, tuple))]


def parse_route_rows(reply: Any) -> list[RouteDistances]:
    """Turn an FT.AGGREGATE reply from :func:`route_command` into ranking rows.

    Rows missing a field (a reference deleted mid-search) are dropped rather than guessed.
    """
    rows = []
    for fields in _rows(reply):
        try:
            rows.append(
                RouteDistances(
                    route=_text(fields["route_name"]),
                    min=float(_text(fields["min"])),
                    avg=float(_text(fields["avg"])),
                    sum=float(_text(fields["sum"])),
                    count=int(float(_text(fields["count"]))),
                )
            )
        except (KeyError, ValueError):
            continue
    return rows


def check_modules(module_list: Any, where: str) -> None:
    """Raise a readable error when ``MODULE LIST`` lacks the search or the JSON module."""
    names = set()
    for module in module_list or []:
        fields = module if isinstance(module, dict) else _pairs(module)
        fields = {_text(k): v for k, v in fields.items()}
        names.add(_text(fields.get("name", "")).lower())
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

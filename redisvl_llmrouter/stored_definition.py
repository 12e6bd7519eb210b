"""A router's stored definition: read from its JSON config in Redis, and compared with a given one.

Reads are core operations (generators that yield their Redis commands, see :mod:`ops`), so the sync
and async routers, the CLI and the report share them. The comparisons are pure: whether two
definitions are the same router (numbers to RedisJSON's precision), and what differs, in words an
error message can carry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from redis.exceptions import ResponseError

from redisvl_llmrouter.errors import ConfigError, RouterNotFoundError
from redisvl_llmrouter.ops import Command, Op
from redisvl_llmrouter.schema import RouterDefinition
from redisvl_llmrouter.search import as_text, config_key, is_wrong_type, parse_vector_field, validate_router_name
from redisvl_llmrouter.vectorizers import is_default_model

__all__ = [
    "FLOAT_TOLERANCE",
    "attach_definition",
    "config_stamp_command",
    "definition_difference",
    "definition_only",
    "index_vector_field",
    "load_definition",
    "normal_definition",
    "parse_config_stamp",
    "parse_definition",
    "read_config",
    "read_config_stamp",
    "same_definition",
    "same_value",
    "stored_generation",
    "stored_version",
    "vectorizer_difference",
]


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


def read_config(name: str) -> Op[dict[str, Any] | None]:
    """The stored config document of router ``name`` (with its ``version``), or None when there is none."""
    key = config_key(validate_router_name(name))
    try:
        raw = yield Command(("JSON.GET", key))
    except ResponseError as exc:
        if not is_wrong_type(exc):
            raise
        raise ConfigError(
            f"The key {key!r} holds another Redis type than router {name!r}'s JSON config: another application "
            "uses that name. Choose another router name, or delete the key if it is stale."
        ) from None
    return None if raw is None else _json_object(raw, name)


def _json_object(raw: Any, name: str) -> dict[str, Any]:
    """A ``JSON.GET`` reply of router ``name``'s config as a dict, or the ConfigError saying what is wrong."""
    try:
        data = json.loads(as_text(raw))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"The stored config of router {name!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"The stored config of router {name!r} is not a JSON object.")
    return data


def read_config_stamp(name: str) -> Op[tuple[int, str] | None]:
    """The version and generation of router ``name``'s stored config, or None when there is none.

    One small read (``JSON.GET key $.version $.generation``), not the whole definition: what
    :meth:`RouterCore.refresh` asks on every call to learn whether anything changed. Read as
    :func:`stored_version` and :func:`stored_generation` read a whole document (0 and "" when absent).
    """
    try:
        raw = yield Command(config_stamp_command(name))
    except ResponseError as exc:
        if is_wrong_type(exc):
            yield from read_config(name)  # raises the ConfigError naming the key
        raise
    return parse_config_stamp(raw, name)


def config_stamp_command(name: str) -> tuple[Any, ...]:
    """The command :func:`read_config_stamp` sends, for a caller that pipelines it with others."""
    return ("JSON.GET", config_key(validate_router_name(name)), "$.version", "$.generation")


def parse_config_stamp(raw: Any, name: str) -> tuple[int, str] | None:
    """The reply to :func:`config_stamp_command` as (version, generation), or None without a config."""
    if raw is None:
        return None
    # Several paths: a JSON object mapping each path to the list of its matches (empty when absent),
    # the same under RESP2 and RESP3.
    reply = _json_object(raw, name)

    def first(path: str) -> Any:
        matches = reply.get(path)
        return matches[0] if isinstance(matches, list) and matches else None

    stamp = {"version": first("$.version"), "generation": first("$.generation")}
    return stored_version(stamp), stored_generation(stamp)


#: Keys of a stored config document that are about the stored copy, not the router's definition.
STORAGE_KEYS = frozenset({"version", "generation"})


def definition_only(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored config document without its storage keys (version, generation)."""
    return {k: v for k, v in document.items() if k not in STORAGE_KEYS}


def stored_version(document: Mapping[str, Any] | None) -> int:
    """The version of a stored config document (0: none, or written before configs were versioned)."""
    version = (document or {}).get("version", 0)
    if isinstance(version, float) and version.is_integer():  # 1.0, as a hand or another tool may write it
        version = int(version)  # (the compare-and-set's Lua reads it as 1 too)
    return version if isinstance(version, int) and not isinstance(version, bool) else 0


def stored_generation(document: Mapping[str, Any] | None) -> str:
    """Which creation of the router a stored config belongs to ("" before generations were stored).

    Versions count saves from 1 again whenever a router is created anew (``overwrite=True``, or
    deleted and created again); the generation, new at each creation, keeps an object that read an
    earlier creation from passing the compare-and-set by a coincidence of version numbers.
    """
    generation = (document or {}).get("generation", "")
    return generation if isinstance(generation, str) else ""


def load_definition(name: str) -> Op[dict[str, Any]]:
    """Read the stored definition of router ``name`` from Redis (without its version)."""
    data = yield from read_config(name)
    if data is None:
        raise RouterNotFoundError(f"No router named {name!r} in this Redis (no key {config_key(name)!r}).")
    return definition_only(data)


def index_vector_field(name: str) -> Op[tuple[str, int] | None]:
    """The dtype and dims the search index of router ``name`` declares for its vectors; None without an index."""
    try:
        info = yield Command(("FT.INFO", name))
    except ResponseError:  # no index, or FT.INFO denied by an ACL: nothing to learn, the stored config stands
        return None
    return parse_vector_field(info)


def attach_definition(name: str) -> Op[dict[str, Any]]:
    """The stored definition of router ``name``, for ``from_existing``: the vectorizer identity completed
    with the vector dtype and dims its index declares where the config lacks them (RedisVL stores only
    the vectorizer's type and model), so the vectorizer built from it makes vectors the index accepts."""
    data = yield from load_definition(name)
    identity = data.get("vectorizer")
    if isinstance(identity, Mapping) and (identity.get("dtype") is None or identity.get("dims") is None):
        field = yield from index_vector_field(name)
        if field is not None:
            dtype, dims = field
            completed = {**identity, "dtype": identity.get("dtype") or dtype, "dims": identity.get("dims") or dims}
            data = {**data, "vectorizer": completed}
    return data


#: Relative tolerance of the comparison of a stored and a given definition's numbers. RedisJSON parses
#: a number to within a few units in its last place (0.18292116580002582 is stored, and read back,
#: as 0.18292116580002585), so a definition read back from Redis differs from the one written by
#: ~1e-16 relative. 1e-12 is far above that noise and far below any change anyone means to make.
FLOAT_TOLERANCE = 1e-12


def same_value(stored: Any, given: Any) -> bool:
    """Whether two parts of a definition (JSON-like values) are equal, numbers to :data:`FLOAT_TOLERANCE`.

    Floats cannot be compared exactly across a save: RedisJSON does not keep their last digit.
    """
    if isinstance(stored, bool) or isinstance(given, bool):
        return stored == given and type(stored) is type(given)
    if isinstance(stored, (int, float)) and isinstance(given, (int, float)):
        if isinstance(stored, int) and isinstance(given, int):
            return stored == given
        return math.isclose(stored, given, rel_tol=FLOAT_TOLERANCE, abs_tol=0.0)
    if isinstance(stored, Mapping) and isinstance(given, Mapping):
        return stored.keys() == given.keys() and all(same_value(stored[k], given[k]) for k in stored)
    if isinstance(stored, (list, tuple)) and isinstance(given, (list, tuple)):
        return len(stored) == len(given) and all(same_value(a, b) for a, b in zip(stored, given, strict=True))
    return bool(stored == given)


def definition_difference(stored: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """What differs between two router definitions, in a few readable clauses (pure)."""

    def routes(d: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
        return {r.get("name"): r for r in d.get("routes", []) if isinstance(r, Mapping)}

    ours, theirs = routes(given), routes(stored)
    clauses = []
    if set(theirs) - set(ours):
        clauses.append(f"routes only in Redis: {sorted(set(theirs) - set(ours))}")
    if set(ours) - set(theirs):
        clauses.append(f"routes only in the given definition: {sorted(set(ours) - set(theirs))}")
    for name in sorted(set(ours) & set(theirs), key=str):
        a, b = dict(theirs[name]), dict(ours[name])
        refs_a, refs_b = set(a.pop("references", [])), set(b.pop("references", []))
        if refs_a != refs_b:
            clauses.append(
                f"route {name!r}: {len(refs_b - refs_a)} reference(s) given but not stored, "
                f"{len(refs_a - refs_b)} stored but not given"
            )
        fields = sorted(k for k in set(a) | set(b) if not same_value(a.get(k), b.get(k)))
        clauses += [_field_difference(f"route {name!r} {k}", a.get(k), b.get(k)) for k in fields]
    for part in ("routing_config", "catalog", "learning"):
        a, b = stored.get(part) or {}, given.get(part) or {}
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys = sorted(k for k in set(a) | set(b) if not same_value(a.get(k), b.get(k)))
            clauses += [_field_difference(f"{part}.{k}", a.get(k), b.get(k)) for k in keys[:5]]
    return "; ".join(clauses[:8]) + (f" (and {len(clauses) - 8} more)" if len(clauses) > 8 else "")


def _field_difference(what: str, stored: Any, given: Any, limit: int = 160) -> str:
    """One clause of :func:`definition_difference`: the two values, or for lists of named entries
    (a catalog's models) which names differ; never the whole of two long values (a one-line error)."""

    def named(value: Any) -> dict[str, Any] | None:
        if isinstance(value, list) and all(isinstance(v, Mapping) and "name" in v for v in value):
            return {str(v["name"]): v for v in value}
        return None

    a, b = named(stored), named(given)
    if a is not None and b is not None:
        parts = [f"only stored {sorted(set(a) - set(b))}" if set(a) - set(b) else "",
                 f"only given {sorted(set(b) - set(a))}" if set(b) - set(a) else "",
                 f"different {sorted(n for n in set(a) & set(b) if not same_value(a[n], b[n]))}"]  # fmt: skip
        text = f"{what}: " + ", ".join(p for p in parts if p and p != "different []")
    else:
        text = f"{what}: stored {stored!r}, given {given!r}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def normal_definition(definition: Mapping[str, Any]) -> dict[str, Any]:
    """A definition validated (so defaults added by newer versions match), without its stored version.

    The vectorizer is compared apart, by :func:`vectorizer_difference`, which tolerates identities
    without dims or dtype (RedisVL stores only type and model), so RedisVL's routers attach.
    """
    body = definition_only(definition)
    try:
        return parse_definition(body).model_dump(mode="json")
    except ConfigError:
        return body


def _comparable(definition: Mapping[str, Any]) -> dict[str, Any]:
    """A comparable form of a definition: validated, without version or vectorizer, routes sorted."""
    normal = normal_definition(definition)
    routes = sorted(normal.get("routes", []), key=lambda r: str(r.get("name")) if isinstance(r, Mapping) else "")
    body = {**normal, "routes": routes}
    body.pop("vectorizer", None)
    return body


def same_definition(stored: Mapping[str, Any], given: Mapping[str, Any]) -> bool:
    """Whether two router definitions are the same router (vectorizers aside: :func:`vectorizer_difference`),
    their numbers compared to :data:`FLOAT_TOLERANCE` (see :func:`same_value`)."""
    return same_value(_comparable(stored), _comparable(given))


def _identity_key(identity: Any) -> dict[str, Any] | None:
    """The parts of a vectorizer identity that decide whether two vector sets are compatible."""
    if not isinstance(identity, Mapping):
        return None
    model = identity.get("model")
    return {
        "model": "default" if is_default_model(model) else model,
        "dims": identity.get("dims"),
        # Unknown when absent (RedisVL stores only type and model): the index's schema says, see
        # ``index_vector_field``. Reading it as float32 refused RedisVL's own float16 routers.
        "dtype": None if identity.get("dtype") is None else str(identity["dtype"]).lower(),
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

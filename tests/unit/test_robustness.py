"""The pure parts of the robustness rules: what differs between definitions, which texts and
names are refused, how large a router may be, how search replies are checked for truncation, and
which redis-py errors become which typed errors. No Redis needed."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError
from redisvl.utils.vectorize import CustomVectorizer

from redisvl_llmrouter import (
    ConfigError,
    InvalidQueryError,
    LLMRouterError,
    RedisCommandError,
    RedisPermissionError,
    RedisPoolTimeoutError,
    RedisUnavailableError,
    Route,
)
from redisvl_llmrouter.connection import translate
from redisvl_llmrouter.core import RouterCore
from redisvl_llmrouter.schema import text_problem
from redisvl_llmrouter.search import MAX_REFERENCES, is_missing_index, is_wrong_type, route_command, search_total
from redisvl_llmrouter.stored_definition import definition_difference, same_definition, same_value, stored_version
from redisvl_llmrouter.vectorizers import vectorizer_from_identity


def table() -> CustomVectorizer:
    return CustomVectorizer(embed=lambda t: [1.0, 0.0, 0.0], embed_many=lambda ts, **_: [[1.0, 0.0, 0.0] for _ in ts])


def route(name: str, refs: list[str], **kw: object) -> dict[str, object]:
    return {"name": name, "model": "m", "cost": 1.0, "references": refs, "distance_threshold": 0.5, **kw}


# ----------------------------------------------------------------------------- what differs
def test_definition_difference_names_routes_references_fields_and_config():
    stored = {"routes": [route("a", ["x", "y"]), route("b", ["z"])], "routing_config": {"max_k": 1}}
    given = {
        "routes": [route("a", ["x", "w", "v"], distance_threshold=0.6), route("c", ["q"])],
        "routing_config": {"max_k": 2},
    }
    text = definition_difference(stored, given)
    assert "routes only in Redis: ['b']" in text
    assert "routes only in the given definition: ['c']" in text
    assert "route 'a': 2 reference(s) given but not stored, 1 stored but not given" in text
    assert "route 'a' distance_threshold: stored 0.5, given 0.6" in text
    assert "routing_config.max_k: stored 1, given 2" in text


def test_a_catalog_difference_names_the_models_that_differ_not_both_catalogs_whole():
    model = {"input_price": 1.0, "output_price": 2.0, "quality": 0.8, "context_window": 128_000}
    stored = {"routes": [], "catalog": {"models": [{"name": f"m{i}", **model} for i in range(40)]}}
    given = {"routes": [], "catalog": {"models": [{"name": f"m{i}", **model} for i in range(1, 41)]}}
    given["catalog"]["models"][0]["quality"] = 0.9  # m1
    text = definition_difference(stored, given)
    assert text == "catalog.models: only stored ['m0'], only given ['m40'], different ['m1']"
    long = {"routes": [], "routing_config": {"note": "x" * 1000}}
    assert len(definition_difference(long, {"routes": [], "routing_config": {"note": "y"}})) <= 160


def test_identical_definitions_have_no_difference():
    definition = {"routes": [route("a", ["x"])], "routing_config": {"max_k": 1}}
    assert definition_difference(definition, definition) == ""


def test_definitions_that_differ_only_by_the_last_digit_redisjson_keeps_are_the_same():
    # RedisJSON stores 0.18292116580002582 as 0.18292116580002585: the same router, read back.
    given = {"routes": [route("a", ["x"], distance_threshold=0.3812042376882124)],
             "routing_config": {"cost_weight": 0.18292116580002582}}  # fmt: skip
    stored = {"routes": [route("a", ["x"], distance_threshold=0.38120423768821243)],
              "routing_config": {"cost_weight": 0.18292116580002585}}  # fmt: skip
    assert definition_difference(stored, given) == ""
    assert same_definition(stored, given)
    # A change anyone means to make is still one, however small it looks.
    changed = {**given, "routing_config": {"cost_weight": 0.18292116580002582 * (1 + 1e-9)}}
    assert "routing_config.cost_weight: stored 0.18292116580002585" in definition_difference(stored, changed)
    assert not same_definition(stored, changed)
    assert not same_value(1, True) and not same_value([0.5], [0.5, 0.5]) and same_value({"a": 1}, {"a": 1.0})


def test_stored_versions_default_to_zero():
    assert stored_version(None) == 0
    assert stored_version({"name": "r"}) == 0  # written before configs were versioned
    assert stored_version({"version": 7}) == 7
    assert stored_version({"version": True}) == 0
    assert stored_version({"version": 3.0}) == 3  # as the compare-and-set's Lua reads it (else never passed)
    assert stored_version({"version": 3.5}) == 0


# ----------------------------------------------------------------------------- texts and names
def test_text_problem_finds_unpaired_surrogates_only():
    assert text_problem("caf\u00e9 \U0001f600 \x00 fine") is None
    assert "unpaired surrogate '\\ud800' at position 3" in (text_problem("abc\ud800") or "")


def test_route_names_with_nul_or_surrogates_and_such_references_are_refused():
    with pytest.raises(ValueError, match="NUL"):
        Route(**route("a\x00b", ["x"]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="surrogate"):
        Route(**route("a\udc80", ["x"]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="surrogate"):
        Route(**route("a", ["x\ud800"]))  # type: ignore[arg-type]


def test_a_statement_with_a_surrogate_is_an_invalid_query():
    with pytest.raises(InvalidQueryError, match="surrogate"):
        RouterCore._checked_statement("hello \udfff")


@pytest.mark.parametrize("vector", [[1e39, 0, 0], [-1e39, 1, 0], [1e-46, 0, 0]])
def test_vectors_that_do_not_fit_float32_are_refused(vector):
    core = RouterCore("r", [route("a", ["x"])], table())
    with pytest.raises(InvalidQueryError, match="do not fit float32"):
        core._vector_bytes(vector)


def test_an_unknown_aggregation_method_is_an_invalid_query():
    with pytest.raises(InvalidQueryError, match="Unknown aggregation_method 'bogus'"):
        RouterCore._checked_aggregation("bogus")
    assert RouterCore._checked_aggregation("topk").value == "topk"


# ----------------------------------------------------------------------------- size
def test_a_router_beyond_the_reference_bound_is_refused_at_creation():
    refs = [f"r{i}" for i in range(MAX_REFERENCES // 2 + 1)]
    with pytest.raises(ConfigError, match=f"would hold {MAX_REFERENCES + 2:,} references; the limit is"):
        RouterCore("r", [route("a", refs), route("b", refs)], table())


def test_the_search_asks_for_every_reference_and_its_total_reveals_truncation():
    args = route_command("r", b"v", 0.5, 10_001)
    assert args[args.index("LIMIT") : args.index("LIMIT") + 3] == ("LIMIT", "0", "10001")
    assert search_total([10_001, b"k", [b"route_name", b"a"]]) == 10_001  # RESP2
    assert search_total({b"total_results": 3, b"results": []}) == 3  # RESP3
    assert search_total([]) == 0


def test_redis_error_texts_are_classified():
    assert is_missing_index(ResponseError("idx: no such index"))
    assert is_missing_index(ResponseError("Unknown Index name"))
    assert not is_missing_index(ResponseError("syntax error"))
    assert is_wrong_type(ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"))
    assert is_wrong_type(ResponseError("Existing key has wrong Redis type"))


# ----------------------------------------------------------------------------- typed errors
def test_redis_py_errors_become_typed_errors_that_say_what_happened():
    client = redis.Redis(
        connection_pool=redis.BlockingConnectionPool(
            host="h", port=1, password="s3cret", max_connections=3, timeout=0.5
        )
    )
    full = translate(RedisConnectionError("No connection available."), client)
    assert isinstance(full, RedisPoolTimeoutError) and "Cannot reach" not in str(full)
    assert "h:1 is up, but all 3 connections" in str(full) and "0.5 s" in str(full)
    down = translate(RedisConnectionError("Connection refused"), client)
    assert isinstance(down, RedisUnavailableError) and "Cannot reach Redis at h:1" in str(down)
    denied = translate(NoPermissionError("this user has no permissions to run the 'ft.search' command"), client)
    assert isinstance(denied, RedisPermissionError) and isinstance(denied, PermissionError)
    other = translate(ResponseError("ERR something odd"), client)
    assert isinstance(other, RedisCommandError) and "something odd" in str(other)
    plain = redis.Redis(connection_pool=redis.ConnectionPool(host="h", port=1, max_connections=2))
    too_many = translate(RedisConnectionError("Too many connections"), plain)
    assert isinstance(too_many, RedisPoolTimeoutError) and "does not wait for one" in str(too_many)
    for error in (full, down, denied, other, too_many):
        assert isinstance(error, LLMRouterError) and "s3cret" not in str(error)


def test_a_config_naming_another_model_never_builds_it():
    with pytest.raises(ConfigError, match="pass it as vectorizer="):
        vectorizer_from_identity({"type": "hf", "model": "org/other", "dims": 384, "dtype": "float32"})
    with pytest.raises(ConfigError, match="pass it as vectorizer="):
        vectorizer_from_identity({"type": "openai", "model": "text-embedding-3-small"})


def test_building_the_async_router_like_the_sync_one_points_to_create():
    from redisvl_llmrouter import AsyncSemanticRouter

    with pytest.raises(TypeError, match=r"await AsyncSemanticRouter.create\(name=\.\.\., routes=\.\.\.\)"):
        AsyncSemanticRouter(name="x", routes=[])

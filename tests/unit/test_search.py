"""Reading Redis replies and checking modules, for every reply shape a client may produce."""

from __future__ import annotations

import pytest

from redisvl_llmrouter.errors import ConfigError, RedisModuleMissingError
from redisvl_llmrouter.ranking import RouteDistances
from redisvl_llmrouter.search import (
    check_modules,
    foreign_index,
    index_fits,
    parse_route_rows,
    reference_key,
    route_command,
    validate_router_name,
)

NAME = "simple 'x': é"
EXPECTED = [RouteDistances(NAME, (0.1, 0.3)), RouteDistances("b", (0.2,))]


def test_parses_resp2_bytes_grouped_by_route_nearest_first():
    reply = [
        3,
        b"r:1", [b"distance", b"0.3", b"route_name", NAME.encode()],
        b"r:2", [b"distance", b"0.2", b"route_name", b"b"],
        b"r:3", [b"route_name", NAME.encode(), b"distance", b"0.1"],
    ]  # fmt: skip
    assert parse_route_rows(reply) == EXPECTED


def test_parses_resp2_decoded():
    reply = [
        3,
        "r:1", ["distance", "0.3", "route_name", NAME],
        "r:2", ["distance", "0.2", "route_name", "b"],
        "r:3", ["distance", "0.1", "route_name", NAME],
    ]  # fmt: skip
    assert parse_route_rows(reply) == EXPECTED


def test_parses_resp3_maps():
    docs = [(NAME, b"0.3"), ("b", b"0.2"), (NAME, b"0.1")]
    reply = {
        b"total_results": 3,
        b"results": [
            {b"id": b"k", b"extra_attributes": {b"route_name": n.encode(), b"distance": d}, b"values": []}
            for n, d in docs
        ],
    }
    assert parse_route_rows(reply) == EXPECTED


def test_drops_incomplete_documents():
    assert parse_route_rows([2, b"k1", [b"route_name", b"a"], b"k2", [b"distance", b"nan?"]]) == []


def test_route_command_carries_vector_and_radius_as_parameters():
    args = route_command("r", b"\x00\x01", 0.7, 3)
    assert args[:2] == ("FT.SEARCH", "r")
    params = args[args.index("PARAMS") : args.index("PARAMS") + 6]
    assert params == ("PARAMS", "4", "vector", b"\x00\x01", "radius", "0.7")


def test_reference_keys_keep_route_names_verbatim():
    assert reference_key("r", "a:b c'", "hello").startswith("r:a:b c':")


@pytest.mark.parametrize("bad", ["", "has space", "a:b", "x*", "it's"])
def test_router_names_are_key_safe(bad):
    with pytest.raises(ConfigError):
        validate_router_name(bad)


def test_the_name_whose_index_would_take_in_every_routers_memory_is_reserved():
    # A router named "llmrouter" indexes the prefix "llmrouter:": every router's outcome rows, counted as its own.
    with pytest.raises(ConfigError, match="'llmrouter': it is reserved"):
        validate_router_name("llmrouter")
    assert validate_router_name("llmrouter-prod") == "llmrouter-prod"


def test_module_check_accepts_redis_8_and_stack():
    check_modules([{b"name": b"search", b"ver": 21005}, {b"name": b"ReJSON", b"ver": 20803}], "x")
    check_modules([[b"name", b"search", b"ver", 1], [b"name", b"ReJSON", b"ver", 1]], "x")


def test_module_check_names_what_is_missing():
    with pytest.raises(RedisModuleMissingError, match="search .RediSearch. and JSON"):
        check_modules([], "localhost:6379")
    with pytest.raises(RedisModuleMissingError, match="JSON"):
        check_modules([{"name": "search"}], "localhost:6379")


def test_an_index_without_the_routers_prefix_or_fields_is_foreign_in_resp2_and_resp3():
    ours2 = [b"index_definition", [b"key_type", b"HASH", b"prefixes", [b"r:"]],
             b"attributes", [[b"identifier", b"route_name", b"attribute", b"route_name"],
                             [b"identifier", b"vector", b"attribute", b"vector"]]]  # fmt: skip
    assert foreign_index(ours2, "r") is None
    theirs3 = {b"index_definition": {b"prefixes": [b"prod:"]}, b"attributes": [{b"attribute": b"title"}]}
    assert foreign_index(theirs3, "r") == "it covers the keys ['prod:'], not ['r:']"
    no_vector = {b"index_definition": {b"prefixes": [b"r"]}, b"attributes": [{b"attribute": b"route_name"}]}
    assert foreign_index(no_vector, "r") == "it has no vector field"


def router_index_info(
    prefix: str = "r:", dims: int = 384, route_flags: tuple[bytes, ...] = (b"CASESENSITIVE",)
) -> dict:
    """``FT.INFO`` of the index ``create_index_command("r", dims, "float32")`` makes, as Redis 8 answers it."""
    tag, text = {b"type": b"TAG", b"SEPARATOR": b","}, {b"type": b"TEXT", b"WEIGHT": 1.0}
    vector = {b"type": b"VECTOR", b"algorithm": b"FLAT", b"data_type": b"FLOAT32", b"dim": dims,
              b"distance_metric": b"COSINE", b"flags": []}  # fmt: skip
    return {
        b"index_definition": {b"key_type": b"HASH", b"prefixes": [prefix.encode()]},
        b"attributes": [
            {b"identifier": b"reference_id", b"attribute": b"reference_id", **tag, b"flags": []},
            {b"identifier": b"route_name", b"attribute": b"route_name", **tag, b"flags": list(route_flags)},
            {b"identifier": b"reference", b"attribute": b"reference", **text, b"flags": []},
            {b"identifier": b"vector", b"attribute": b"vector", **vector},
        ],
    }


def test_only_the_index_a_router_would_create_is_kept_by_an_overwrite():
    assert index_fits(router_index_info(), "r", 384, "float32")
    assert not index_fits(router_index_info(), "r", 384, "float16")  # other vectors
    assert not index_fits(router_index_info(dims=768), "r", 384, "float32")
    assert not index_fits(router_index_info(prefix="r"), "r", 384, "float32")  # RedisVL's router
    assert not index_fits(router_index_info(route_flags=()), "r", 384, "float32")  # route names folded
    assert not index_fits({}, "r", 384, "float32")


def test_a_resp2_index_description_with_bare_flags_is_read_as_the_same_index():
    info = [b"index_definition", [b"key_type", b"HASH", b"prefixes", [b"r:"], b"default_score", b"1"],
            b"attributes", [
                [b"identifier", b"reference_id", b"attribute", b"reference_id", b"type", b"TAG", b"SEPARATOR", b","],
                [b"identifier", b"route_name", b"attribute", b"route_name", b"type", b"TAG", b"SEPARATOR", b",",
                 b"CASESENSITIVE"],
                [b"identifier", b"reference", b"attribute", b"reference", b"type", b"TEXT", b"WEIGHT", b"1"],
                [b"identifier", b"vector", b"attribute", b"vector", b"type", b"VECTOR", b"algorithm", b"FLAT",
                 b"data_type", b"FLOAT32", b"dim", 3, b"distance_metric", b"COSINE"]]]  # fmt: skip
    assert index_fits(info, "r", 3, "float32")
    info[3][1] = info[3][1][:-1]  # route_name without CASESENSITIVE
    assert not index_fits(info, "r", 3, "float32")

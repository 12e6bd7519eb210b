"""The data models: validation that keeps bad routes and configs out of Redis."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from redisvl_llmrouter import Route, RouteMatch, RoutingConfig
from redisvl_llmrouter.errors import ConfigError
from redisvl_llmrouter.schema import BalanceWeights, Floor
from redisvl_llmrouter.stored_definition import parse_definition


def test_route_carries_model_and_cost():
    r = Route(name="a", references=["x"], model="m", cost=0.5)
    assert (r.model, r.cost) == ("m", 0.5)
    assert Route(name="b", references=["y"]).cost is None


@pytest.mark.parametrize(
    "bad",
    [
        {"cost": -1.0},
        {"cost": float("inf")},
        {"distance_threshold": 0},
        {"distance_threshold": 2.5},
        {"references": []},
        {"references": ["  "]},
        {"references": ["x", "x"]},
        {"name": " padded"},
        {"unknown_field": 1},
    ],
)
def test_invalid_routes_are_rejected(bad):
    with pytest.raises(ValidationError):
        Route(**{"name": "a", "references": ["x"], **bad})


@pytest.mark.parametrize("value", [object(), float("nan"), float("inf"), [object()], {"d": float("-inf")}])
def test_route_metadata_must_be_json_because_the_route_is_stored_as_json(value):
    with pytest.raises(ValidationError, match="metadata must hold JSON values"):
        Route(name="a", references=["x"], metadata={"key": value})


def test_route_metadata_that_pydantic_stores_as_json_is_accepted_as_before():
    import datetime

    route = Route(name="a", references=["x"], metadata={"created": datetime.date(2024, 5, 1), "tags": {"t"}})
    assert route.model_dump(mode="json")["metadata"] == {"created": "2024-05-01", "tags": ["t"]}  # as stored


def test_route_metadata_takes_any_json_value():
    metadata = {"s": "x", "n": 1, "f": 0.5, "b": True, "none": None, "list": [1, "two"], "dict": {"a": [None]}}
    assert Route(name="a", references=["x"], metadata=metadata).metadata == metadata


def test_cost_weight_is_bounded():
    with pytest.raises(ValidationError):
        RoutingConfig(cost_weight=1.5)
    with pytest.raises(ValidationError):
        RoutingConfig(cost_weight=-0.1)


def test_route_match_is_falsy_only_when_empty():
    assert not RouteMatch()
    assert RouteMatch(name="a", distance=0.1)
    assert RouteMatch(name="default", fallback=True)


def test_parse_definition_reports_every_problem_readably():
    with pytest.raises(ConfigError, match=r"routes\.0\.cost"):
        parse_definition({"name": "r", "routes": [{"name": "a", "references": ["x"], "cost": -2}]})
    with pytest.raises(ConfigError, match="mapping"):
        parse_definition(["not", "a", "dict"])
    with pytest.raises(ConfigError, match="bogus"):
        parse_definition({"name": "r", "bogus": True})


@pytest.mark.parametrize(
    "bad",
    [
        {"cost": True},  # would be stored as 1.0
        {"cost": "1"},  # would be stored as 1.0
        {"model": ""},
        {"model": "  "},
        {"model": " openai/gpt-4.1"},  # would be stored, and priced, as another model than the catalog's
    ],
)
def test_a_route_refuses_a_cost_or_model_it_would_store_as_something_else(bad):
    with pytest.raises(ValidationError):
        Route(name="a", references=["x"], **bad)


def test_stored_costs_load_as_numbers_and_text_is_refused_readably():
    import numpy as np

    routes = [
        {"name": "a", "references": ["x"], "model": "m/a", "cost": 1},
        {"name": "b", "references": ["y"], "model": "m/b", "cost": 0.25},
        {"name": "c", "references": ["z"]},  # RedisVL's routes have no model or cost
    ]
    assert [r.cost for r in parse_definition({"name": "r", "routes": routes}).routes] == [1.0, 0.25, None]
    assert Route(name="a", references=["x"], model="m", cost=np.float32(0.5)).cost == 0.5
    with pytest.raises(ConfigError, match=r"routes\.0\.cost"):
        parse_definition({"name": "r", "routes": [{"name": "a", "references": ["x"], "cost": "1"}]})


def test_costs_written_in_yaml_exponent_form_load_as_numbers():
    from redisvl_llmrouter.policy.catalog import load_yaml

    text = "name: r\nroutes:\n  - {name: a, references: [x], model: m/a, cost: 1e-3}\n  - {name: b, references: [y], cost: 2.5E+1}\n"
    assert [r.cost for r in parse_definition(load_yaml(text)).routes] == [0.001, 25.0]
    assert load_yaml("a: x1e3\nb: '1e-3'\nc: 3") == {"a": "x1e3", "b": "1e-3", "c": 3}  # text stays text


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".yaml", "retry: {attempts: 2}\nmax_models: 1\nmax_models: 2\n"),
        (".json", '{"max_models": 1, "max_models": 2}'),
    ],
)
def test_a_key_given_twice_in_a_config_file_is_refused_not_silently_overridden(tmp_path, suffix, text):
    from redisvl_llmrouter.policy.catalog import read_data_file

    path = tmp_path / f"gateway{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match="'max_models' is given twice"):
        read_data_file(path, "gateway config")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cost_weight", True),
        ("cost_weight", "0.5"),
        ("expected_output_tokens", True),
        ("expected_output_tokens", "256"),
        ("aggregation_k", True),
        ("balance.quality", "0.9"),
        ("balance.cost", True),
        ("balance.latency", b"0.2"),
        ("text.max_chars", "2000"),
        ("confidence.sharpness", True),
    ],
)
def test_a_routing_config_refuses_a_bool_or_text_where_a_number_goes_and_the_message_names_the_setting(field, value):
    setting, _, inner = field.partition(".")
    with pytest.raises(ValidationError) as caught:
        RoutingConfig(**{setting: {inner: value} if inner else value})
    # update_routing_config reports the first message alone: it must say which setting and what was given.
    assert caught.value.errors()[0]["msg"] == f"Value error, {field} must be a number, got {value!r}"


def test_a_routing_config_refuses_numpy_bools_as_it_refuses_python_ones():
    with pytest.raises(ValidationError, match=r"cost_weight must be a number, got (np\.True_|True)"):
        RoutingConfig(cost_weight=np.bool_(True))
    with pytest.raises(ValidationError, match=r"balance\.quality must be a number"):
        BalanceWeights(quality=np.bool_(False), cost=0.3)


def test_a_routing_config_stored_as_json_still_loads_with_whole_numbers_for_its_weights():
    import json

    # RedisJSON (and hand-written JSON) may give 1 for 1.0: an int is a number wherever a float goes.
    stored = json.loads(
        '{"cost_weight": 1, "balance": {"quality": 1, "cost": 0, "latency": 0}, "expected_output_tokens": 512}'
    )
    config = RoutingConfig.model_validate(stored)
    assert (config.cost_weight, config.expected_output_tokens) == (1.0, 512)
    assert (config.balance.quality, config.balance.cost, config.balance.latency) == (1.0, 0.0, 0.0)
    assert RoutingConfig(cost_weight=np.float32(0.5), aggregation_k=np.int64(2)).model_dump(
        include={"cost_weight", "aggregation_k"}
    ) == {"cost_weight": 0.5, "aggregation_k": 2}
    assert parse_definition({"name": "r", "routing_config": stored}).routing_config.cost_weight == 1.0


def test_a_stored_routing_config_with_a_bool_for_a_weight_is_refused_where_and_what():
    with pytest.raises(ConfigError, match=r"routing_config\.balance\.cost: .*must be a number, got True"):
        parse_definition({"name": "r", "routing_config": {"balance": {"cost": True}}})


@pytest.mark.parametrize("value", [True, False, "0.9", "1", np.bool_(True)])
def test_a_floor_refuses_a_quality_bar_that_is_not_a_number(value):
    with pytest.raises(ValidationError) as caught:
        Floor(min_quality=value)
    # A route's problems are reported by their message alone: it says which field and what was given.
    assert caught.value.errors()[0]["msg"] == f"Value error, floor.min_quality must be a number, got {value!r}"


def test_a_floor_takes_a_quality_bar_given_as_any_number():
    assert Floor(min_quality=1).min_quality == 1.0
    assert Floor(min_quality=np.float32(0.5)).min_quality == 0.5


def test_a_route_refuses_a_numpy_bool_for_its_cost_as_it_refuses_true():
    # Strict float validation alone reads np.True_ as 1.0.
    with pytest.raises(ValidationError, match=r"cost must be a number, got (np\.True_|True)"):
        Route(name="a", references=["x"], model="m", cost=np.bool_(True))
    assert Route(name="a", references=["x"], model="m", cost=np.int64(2)).cost == 2.0

"""Mapping routes to dataset models and replaying choices: pure parts of the evaluation run."""

from __future__ import annotations

import pytest

from redisvl_llmrouter import ConfigError, Route, RoutingConfig
from redisvl_llmrouter.evaluation_run import choices_for, route_model_map
from redisvl_llmrouter.ranking import RouteDistances

ROUTES = [
    Route(name="simple", model="a", cost=1, references=["x"], distance_threshold=0.5),
    Route(name="expert", model="openai/gpt-x", cost=10, references=["y"], distance_threshold=0.5),
]


def test_explicit_pairs_then_routes_whose_model_is_in_the_dataset():
    assert route_model_map(ROUTES, ["a", "b"], ["expert=b"]) == {"expert": "b", "simple": "a"}


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["nonsense"], "ROUTE=MODEL"),
        (["ghost=a"], "ROUTE=MODEL"),
        (["expert=zzz"], "not in the dataset"),
        ([], "expert"),
    ],
)
def test_bad_maps_are_clear_errors(pairs, message):
    with pytest.raises(ConfigError, match=message):
        route_model_map(ROUTES, ["a", "b"], pairs)


def test_choices_follow_the_ranking_and_fall_back_when_nothing_matches():
    by_name = {r.name: r for r in ROUTES}
    rows = [
        [RouteDistances("simple", (0.3,)), RouteDistances("expert", (0.1,))],
        [RouteDistances("simple", (0.9,))],
    ]
    assert choices_for(rows, by_name, RoutingConfig(), fallback="expert") == ["expert", "expert"]
    cheap_first = RoutingConfig(cost_optimization=True, cost_weight=1.0)
    assert choices_for(rows, by_name, cheap_first, fallback="expert") == ["simple", "expert"]

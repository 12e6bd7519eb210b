"""The ranking core, specified on hand-made search rows: no Redis, no model."""

from __future__ import annotations

import pytest

from redisvl_llmrouter.ranking import (
    RouteDistances,
    best_match,
    confidence,
    cost_penalties,
    rank,
    top_matches,
)
from redisvl_llmrouter.schema import DistanceAggregationMethod, Route, RoutingConfig


def route(name: str, cost: float | None, threshold: float = 0.5, model: str | None = None) -> Route:
    return Route(name=name, references=[name], distance_threshold=threshold, cost=cost, model=model or f"m/{name}")


def row(name: str, *distances: float) -> RouteDistances:
    return RouteDistances(route=name, distances=tuple(sorted(distances)))


ROUTES = {r.name: r for r in [route("nano", 0.1), route("sonnet", 3.0), route("opus", 5.0)]}
ROWS = [row("nano", 0.30), row("sonnet", 0.20), row("opus", 0.10)]


def names(candidates) -> list[str]:
    return [c.route.name for c in candidates]


class TestConfidence:
    def test_is_one_at_zero_and_zero_at_the_threshold(self):
        assert confidence(0.0, 0.5) == 1.0
        assert confidence(0.5, 0.5) == 0.0
        assert confidence(0.25, 0.5) == pytest.approx(0.5)

    def test_is_clipped_and_monotone(self):
        values = [confidence(d / 100, 0.5) for d in range(0, 80)]
        assert values == sorted(values, reverse=True)
        assert min(values) == 0.0 and max(values) == 1.0


class TestThresholds:
    def test_routes_at_or_beyond_their_threshold_are_dropped(self):
        routes = {"a": route("a", 1, threshold=0.3), "b": route("b", 1, threshold=0.2)}
        assert names(rank([row("a", 0.29), row("b", 0.2)], routes, RoutingConfig())) == ["a"]

    def test_unknown_routes_and_empty_groups_are_ignored(self):
        assert rank([row("ghost", 0.01), row("nano")], ROUTES, RoutingConfig()) == []


class TestAggregation:
    # a: 0.05, 0.3, 0.7, 0.75 -> min 0.05, avg 0.45, sum 1.8, top-2 mean 0.175, top-3 mean 0.35
    # b: 0.12, 0.15, 0.2       -> min 0.12, avg 0.1567, sum 0.47, top-2 mean 0.135, top-3 mean 0.1567
    ROWS = [row("a", 0.7, 0.05, 0.3, 0.75), row("b", 0.2, 0.12, 0.15)]
    WIDE = {"a": route("a", 1, threshold=2.0), "b": route("b", 1, threshold=2.0)}

    @pytest.mark.parametrize(
        ("method", "k", "expected", "distance"),
        [
            ("min", 3, ["a", "b"], 0.05),
            ("avg", 3, ["b", "a"], 0.47 / 3),
            ("sum", 3, ["b", "a"], 0.47),
            ("topk", 2, ["b", "a"], 0.135),
            ("topk", 1, ["a", "b"], 0.05),
            ("topk", 3, ["b", "a"], 0.47 / 3),
        ],
    )
    def test_reduces_each_routes_distances(self, method, k, expected, distance):
        config = RoutingConfig(aggregation_method=method, aggregation_k=k)
        ranked = rank(self.ROWS, self.WIDE, config)
        assert names(ranked) == expected
        assert ranked[0].distance == pytest.approx(distance)

    def test_topk_with_fewer_references_than_k_averages_what_there_is(self):
        config = RoutingConfig(aggregation_method="topk", aggregation_k=10)
        assert rank([row("a", 0.2, 0.4)], self.WIDE, config)[0].distance == pytest.approx(0.3)

    def test_accepts_redisvl_enum_members(self):
        from redisvl.extensions.router.schema import DistanceAggregationMethod as RedisVLMethod

        assert names(rank(self.ROWS, self.WIDE, RoutingConfig(), RedisVLMethod.min)) == ["a", "b"]
        assert RoutingConfig(aggregation_method=RedisVLMethod.sum).aggregation_method is DistanceAggregationMethod.sum


class TestCostPenalty:
    def test_is_each_cost_over_the_highest(self):
        assert cost_penalties([0.1, 3.0, 5.0]) == pytest.approx([0.02, 0.6, 1.0])

    def test_has_no_unit(self):
        assert cost_penalties([0.1, 3.0, 5.0]) == pytest.approx(cost_penalties([1.0, 30.0, 50.0]))

    def test_unknown_cost_counts_as_the_most_expensive(self):
        assert cost_penalties([1.0, None, 4.0]) == [0.25, 1.0, 1.0]

    def test_no_positive_cost_means_no_penalty(self):
        assert cost_penalties([0.0, None]) == [0.0, 0.0]

    def test_off_ranks_by_distance(self):
        assert names(rank(ROWS, ROUTES, RoutingConfig())) == ["opus", "sonnet", "nano"]

    def test_flips_the_winner_at_a_realistic_weight(self):
        # w=0.3: nano 0.7*0.3+0.3*0.02=0.216; sonnet 0.7*0.2+0.3*0.6=0.32; opus 0.7*0.1+0.3=0.37
        ranked = rank(ROWS, ROUTES, RoutingConfig(cost_optimization=True, cost_weight=0.3))
        assert names(ranked) == ["nano", "sonnet", "opus"]
        assert [c.score for c in ranked] == pytest.approx([0.216, 0.32, 0.37])

    def test_weight_zero_is_distance_and_weight_one_is_price(self):
        assert names(rank(ROWS, ROUTES, RoutingConfig(cost_optimization=True, cost_weight=0.0))) == [
            "opus",
            "sonnet",
            "nano",
        ]
        assert names(rank(ROWS, ROUTES, RoutingConfig(cost_optimization=True, cost_weight=1.0)))[0] == "nano"

    def test_scaling_every_cost_changes_nothing(self):
        scaled = {n: r.model_copy(update={"cost": r.cost * 10}) for n, r in ROUTES.items()}
        for w in (0.1, 0.3, 0.7):
            config = RoutingConfig(cost_optimization=True, cost_weight=w)
            a, b = rank(ROWS, ROUTES, config), rank(ROWS, scaled, config)
            assert names(a) == names(b)
            assert [c.score for c in a] == pytest.approx([c.score for c in b])

    def test_only_routes_that_passed_are_compared(self):
        # opus is out of range, so sonnet is the dearest compared: nano 0.1/3, sonnet 1.
        rows = [row("nano", 0.3), row("sonnet", 0.2), row("opus", 0.9)]
        ranked = rank(rows, ROUTES, RoutingConfig(cost_optimization=True, cost_weight=0.5))
        assert [c.score for c in ranked] == pytest.approx([0.5 * 0.3 + 0.5 * 0.1 / 3, 0.5 * 0.2 + 0.5])

    def test_ties_are_broken_by_distance_then_cost_then_name(self):
        routes = {"b": route("b", 1.0), "a": route("a", 1.0), "c": route("c", 0.5)}
        ranked = rank([row("b", 0.2), row("a", 0.2), row("c", 0.2)], routes, RoutingConfig())
        assert names(ranked) == ["c", "a", "b"]


class TestMatches:
    def test_best_match_carries_model_cost_confidence_and_alternatives(self):
        ranked = rank(ROWS, ROUTES, RoutingConfig())
        match = best_match(ranked, ROUTES, RoutingConfig())
        assert (match.name, match.model, match.cost) == ("opus", "m/opus", 5.0)
        assert match.distance == 0.10 and match.confidence == pytest.approx(0.8)
        assert [(a.name, a.model, a.cost, a.distance) for a in match.alternatives] == [
            ("sonnet", "m/sonnet", 3.0, 0.2),
            ("nano", "m/nano", 0.1, 0.3),
        ]

    def test_alternatives_are_filled_with_cost_optimisation_too(self):
        config = RoutingConfig(cost_optimization=True, cost_weight=0.3)
        match = best_match(rank(ROWS, ROUTES, config), ROUTES, config)
        assert match.name == "nano" and [a.name for a in match.alternatives] == ["sonnet", "opus"]

    def test_no_match_is_falsy_and_default_route_is_a_truthy_fallback(self):
        empty = best_match([], ROUTES, RoutingConfig())
        assert not empty and empty.name is None
        fallback = best_match([], ROUTES, RoutingConfig(default_route="sonnet"))
        assert fallback and fallback.fallback
        assert (fallback.name, fallback.model, fallback.distance, fallback.confidence) == (
            "sonnet",
            "m/sonnet",
            None,
            0,
        )

    def test_top_matches_cuts_at_max_k_and_agrees_with_best_match(self):
        config = RoutingConfig(cost_optimization=True, cost_weight=0.3)
        ranked = rank(ROWS, ROUTES, config)
        top = top_matches(ranked, ROUTES, config, max_k=2)
        assert [m.name for m in top] == ["nano", "sonnet"]
        assert top[0] == best_match(ranked, ROUTES, config)
        assert top_matches([], ROUTES, config, 3) == []
        assert [m.name for m in top_matches([], ROUTES, RoutingConfig(default_route="opus"), 3)] == ["opus"]

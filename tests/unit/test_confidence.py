"""The calibrated confidence, specified on hand-made distances: no Redis, no model."""

from __future__ import annotations

import math
import random

import pytest

from redisvl_llmrouter.confidence import (
    LabelledDistances,
    expected_calibration_error,
    fit_sharpness,
    log_loss,
    reliability,
    softmax,
)
from redisvl_llmrouter.ranking import RouteDistances, best_match, rank, top_matches
from redisvl_llmrouter.schema import ConfidenceCalibration, Route, RoutingConfig


def route(name: str, threshold: float, cost: float = 1.0) -> Route:
    return Route(name=name, references=[name], distance_threshold=threshold, cost=cost, model=f"m/{name}")


def row(name: str, *distances: float) -> RouteDistances:
    return RouteDistances(route=name, distances=tuple(sorted(distances)))


# Unequal thresholds: the uncalibrated 1 - d/t ranks "wide" above "tight" at a larger distance.
ROUTES = {r.name: r for r in [route("tight", 0.5, cost=1.0), route("wide", 1.0, cost=5.0), route("far", 0.6)]}
CALIBRATED = RoutingConfig(confidence=ConfidenceCalibration(sharpness=30.0), default_route="wide")


class TestSoftmax:
    def test_is_a_probability_distribution(self):
        shares = softmax([0.3, 0.35, 0.5], 30.0)
        assert all(0 <= p <= 1 for p in shares) and math.fsum(shares) == pytest.approx(1.0)

    def test_a_closer_route_is_always_more_likely(self):
        distances = [0.1 * i for i in range(10)]
        for sharpness in (0.5, 5.0, 50.0):
            shares = softmax(distances, sharpness)
            assert shares == sorted(shares, reverse=True)

    def test_winner_confidence_falls_as_the_runner_up_closes_in(self):
        winner = [softmax([0.3, 0.3 + gap], 30.0)[0] for gap in (0.3, 0.2, 0.1, 0.05, 0.0)]
        assert winner == sorted(winner, reverse=True) and winner[-1] == pytest.approx(0.5)

    def test_is_stable_for_large_sharpness(self):
        assert softmax([0.1, 0.9], 1000.0) == pytest.approx([1.0, 0.0])


class TestFit:
    def test_recovers_the_sharpness_that_generated_the_labels(self):
        rng = random.Random(7)
        truth, examples = 20.0, []
        for _ in range(3000):
            distances = {name: rng.uniform(0.2, 0.9) for name in ("a", "b", "c")}
            shares = softmax(list(distances.values()), truth)
            label = rng.choices(list(distances), weights=shares)[0]
            examples.append(LabelledDistances(distances, label))
        assert fit_sharpness(examples) == pytest.approx(truth, rel=0.1)

    def test_the_fit_minimises_the_log_loss(self):
        examples = [
            LabelledDistances({"a": 0.3, "b": 0.4}, "a"),
            LabelledDistances({"a": 0.5, "b": 0.45}, "a"),
            LabelledDistances({"a": 0.6, "b": 0.3}, "b"),
        ]
        best = fit_sharpness(examples)
        assert log_loss(examples, best) < min(log_loss(examples, best * 0.8), log_loss(examples, best * 1.25))

    def test_refuses_examples_that_never_choose(self):
        with pytest.raises(ValueError, match="nothing to fit"):
            fit_sharpness([LabelledDistances({"a": 0.3}, "a"), LabelledDistances({"a": 0.3, "b": 0.4}, "c")])


class TestCalibrationError:
    def test_is_zero_when_each_bin_is_right_as_often_as_it_claims(self):
        confidences = [0.25] * 4 + [0.75] * 4
        correct = [True, False, False, False, True, True, True, False]
        assert expected_calibration_error(confidences, correct) == pytest.approx(0.0)

    def test_weighs_each_bins_gap_by_its_share_of_answers(self):
        # 3 answers at 0.95, all right (gap 0.05); 1 at 0.55, wrong (gap 0.55).
        ece = expected_calibration_error([0.95, 0.95, 0.95, 0.55], [True, True, True, False])
        assert ece == pytest.approx(0.75 * 0.05 + 0.25 * 0.55)

    def test_bins_are_equal_width_with_the_last_one_closed(self):
        bins = reliability([0.0, 0.1, 0.99, 1.0], [True, False, True, True])
        assert [b.count for b in bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
        assert (bins[9].confidence, bins[9].accuracy) == (pytest.approx(0.995), 1.0)


class TestCalibratedRanking:
    def rows(self, tight: float, wide: float) -> list[RouteDistances]:
        return [row("tight", tight), row("wide", wide)]

    def test_confidence_is_the_softmax_share_of_the_routes_that_passed(self):
        match = best_match(rank(self.rows(0.40, 0.45), ROUTES, CALIBRATED), ROUTES, CALIBRATED)
        expected = softmax([0.40, 0.45], 30.0)
        assert match.name == "tight" and match.confidence == pytest.approx(expected[0])
        assert match.alternatives[0].confidence == pytest.approx(expected[1])
        assert match.confidence + match.alternatives[0].confidence == pytest.approx(1.0)

    def test_alternatives_never_outrank_the_winner(self):
        # Uncalibrated, "wide" would show 1 - 0.45/1.0 = 0.55 against "tight"'s 1 - 0.40/0.5 = 0.2.
        for config in (CALIBRATED, RoutingConfig()):
            match = best_match(rank(self.rows(0.40, 0.45), ROUTES, config), ROUTES, config)
            assert match.name == "tight"
            assert all(a.confidence <= match.confidence for a in match.alternatives)

    def test_with_the_cost_penalty_alternatives_are_capped_at_the_winner(self):
        config = CALIBRATED.model_copy(update={"cost_optimization": True, "cost_weight": 1.0})
        rows = [row("tight", 0.45), row("wide", 0.2)]  # "wide" is closer but five times dearer
        match = best_match(rank(rows, ROUTES, config), ROUTES, config)
        assert match.name == "tight" and match.confidence == pytest.approx(softmax([0.45, 0.2], 30.0)[0])
        assert match.alternatives[0].confidence == match.confidence

    def test_every_match_of_route_many_keeps_its_alternatives_below_it(self):
        rows = [row("tight", 0.40), row("wide", 0.45), row("far", 0.5)]
        for match in top_matches(rank(rows, ROUTES, CALIBRATED), ROUTES, CALIBRATED, max_k=3):
            assert all(a.confidence <= match.confidence for a in match.alternatives)

    def test_confidence_is_monotone_in_the_winners_distance_and_in_the_gap(self):
        by_distance = [
            best_match(rank(self.rows(d, 0.46), ROUTES, CALIBRATED), ROUTES, CALIBRATED).confidence
            for d in (0.30, 0.35, 0.40, 0.45)
        ]
        assert by_distance == sorted(by_distance, reverse=True)
        assert all(0 <= c <= 1 for c in by_distance)

    def test_a_lone_route_within_its_threshold_is_certain(self):
        match = best_match(rank([row("tight", 0.45), row("far", 0.9)], ROUTES, CALIBRATED), ROUTES, CALIBRATED)
        assert match.name == "tight" and match.confidence == pytest.approx(softmax([0.45], 30.0)[0]) == 1.0

    def test_fallback_confidence_is_the_default_routes_probability(self):
        # Nothing passes; routes without rows count at the search radius (the largest threshold, 1.0).
        config = CALIBRATED.model_copy(update={"default_route": "far"})
        rows = [row("tight", 0.7), row("far", 0.65)]
        match = best_match(rank(rows, ROUTES, config), ROUTES, config)
        assert match.fallback and match.name == "far"
        assert match.confidence == pytest.approx(softmax([0.7, 1.0, 0.65], 30.0)[2])

    def test_uncalibrated_fallback_reports_zero(self):
        config = RoutingConfig(default_route="far")
        match = best_match(rank([row("tight", 0.7)], ROUTES, config), ROUTES, config)
        assert match.fallback and match.confidence == 0.0

    def test_calibration_never_changes_the_order(self):
        rng = random.Random(3)
        for _ in range(200):
            rows = [row(name, rng.uniform(0.0, 1.1)) for name in ROUTES]
            for cost in (False, True):
                plain = RoutingConfig(cost_optimization=cost)
                calibrated = plain.model_copy(update={"confidence": ConfidenceCalibration(sharpness=30.0)})
                assert [c.route.name for c in rank(rows, ROUTES, plain)] == [
                    c.route.name for c in rank(rows, ROUTES, calibrated)
                ]


class TestCalibrationSettings:
    def test_round_trip_through_the_routing_config(self):
        config = CALIBRATED.model_copy(update={"confidence": ConfidenceCalibration(sharpness=34.05, fitted_on="dev")})
        assert RoutingConfig.model_validate(config.to_dict()) == config
        assert config.to_dict()["confidence"] == {"sharpness": 34.05, "fitted_on": "dev"}

    def test_a_config_without_it_loads_uncalibrated(self):
        data = RoutingConfig().to_dict()
        del data["confidence"]
        assert RoutingConfig.model_validate(data).confidence is None

    @pytest.mark.parametrize("sharpness", [0.0, -1.0, math.inf, math.nan])
    def test_sharpness_must_be_positive_and_finite(self, sharpness):
        with pytest.raises(ValueError):
            ConfidenceCalibration(sharpness=sharpness)

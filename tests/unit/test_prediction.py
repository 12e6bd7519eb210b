"""Prediction from neighbours, pinned on hand-made rows: rank weights, radius, shrinkage, priors, support."""

from __future__ import annotations

import math

import numpy as np
import pytest

from redisvl_llmrouter.learning.memory import MemoryStats, Neighbours
from redisvl_llmrouter.learning.prediction import estimate, leave_out_prior, predict, priors, rank_weights
from redisvl_llmrouter.schema import LearningConfig

NAN = math.nan


def rows(distances: list[float], values: list[list[tuple[float, float, float]]]) -> Neighbours:
    return Neighbours(np.array(distances), np.array(values, dtype=np.float32))


def stats(**means: tuple[int, float]) -> MemoryStats:
    return MemoryStats(
        n={m: n for m, (n, _) in means.items()},
        quality_sum={m: n * q for m, (n, q) in means.items()},
        n_cost={},
        cost_sum={},
    )


def test_rank_weights_fall_linearly_and_stop_at_the_radius():
    w = rank_weights(np.array([[0.1, 0.2, 0.3, 0.9]]), k=4, radius=0.5)
    assert w.tolist() == [[1.0, 0.75, 0.5, 0.0]]
    assert rank_weights(np.array([[0.1, np.inf]]), k=2, radius=2.0).tolist() == [[1.0, 0.0]]


def test_quality_is_the_weighted_mean_shrunk_toward_the_prior():
    config = LearningConfig(neighbours=2, shrinkage=1.0, radius=1.0)
    # weights 1 and 0.5; qualities 1 and 0; prior 0.5 with the weight of one observation
    est = estimate(
        np.array([[0.1, 0.2]]),
        np.array([[[[1.0, NAN, NAN]], [[0.0, NAN, NAN]]]]),
        np.array([0.5]),
        np.array([NAN]),
        config,
    )
    assert est.quality[0, 0] == pytest.approx((1.0 * 1 + 0.5 * 0 + 1.0 * 0.5) / (1.5 + 1.0))
    assert est.quality_support[0, 0] == pytest.approx(1.5)
    assert est.support[0] == pytest.approx(1.5)
    assert math.isnan(est.cost[0, 0])  # never observed anywhere: the catalog decides


def test_unobserved_models_get_their_prior_and_no_support():
    nb = rows([0.1], [[(1.0, 0.01, 120.0), (NAN, NAN, NAN)]])
    p = predict(nb, ["a", "b"], ["a", "b", "c"], stats(a=(10, 0.8), b=(4, 0.3)), LearningConfig(shrinkage=2.0),
                {"c": 0.9})  # fmt: skip
    # The memory means, shrunk toward the mean of the known means (0.55) by 2 pseudo-observations;
    # a's without the neighbour that weighs in its estimate already.
    prior_a, prior_b = (10 * 0.8 - 1.0 + 2 * 0.55) / 11, (4 * 0.3 + 2 * 0.55) / 6
    assert p.models["b"].quality == pytest.approx(prior_b) and p.models["b"].support == 0.0
    assert p.models["c"].quality == pytest.approx(0.9)  # not in memory: the catalog's prior
    assert p.models["a"].quality == pytest.approx((1.0 + 2.0 * prior_a) / 3.0)
    assert (p.models["a"].prior, p.models["a"].shrinkage) == (pytest.approx(prior_a), 2.0)
    assert p.models["a"].latency_ms == pytest.approx(120.0)


def test_rows_beyond_the_radius_leave_only_the_prior():
    nb = rows([0.9, 0.95], [[(0.0, NAN, NAN)], [(0.0, NAN, NAN)]])
    p = predict(nb, ["a"], ["a"], stats(a=(100, 0.7)), LearningConfig(radius=0.75, shrinkage=4.0))
    assert p.support == 0.0 and p.models["a"].quality == pytest.approx(0.7)


def test_priors_shrink_toward_the_catalog_else_the_memory_average():
    base, sums, counts, cost = priors(["a", "b", "c"], stats(a=(2, 1.0), b=(2, 0.5)), {"b": 0.1, "c": None})
    assert (base.tolist(), sums.tolist(), counts.tolist()) == ([0.75, 0.1, 0.75], [2.0, 1.0, 0.0], [2.0, 2.0, 0.0])
    assert np.isnan(cost).all()
    none = np.zeros((1, 0))
    assert leave_out_prior(none, np.zeros((1, 0, 3)), sums, counts, base, 0.0).tolist() == [[1.0, 0.5, 0.75]]


def test_a_model_rated_once_is_not_known_by_that_rating_everywhere():
    # One 1.0 rating elsewhere: the prior moves from the catalog's 0.9 by one observation in 17, not to 1.0.
    none = np.zeros((1, 0))
    q = leave_out_prior(none, np.zeros((1, 0, 2)), np.array([1.0, 400.0]), np.array([1.0, 1000.0]),
                        np.array([0.9, 0.9]), 16.0)[0]  # fmt: skip
    assert q[0] == pytest.approx((1.0 + 16 * 0.9) / 17)
    assert q[1] == pytest.approx((1000 * 0.4 + 16 * 0.9) / 1016)  # a thousand outcomes: the memory's mean


def test_a_row_counts_once_in_the_neighbours_not_again_in_the_prior():
    # The memory's one outcome of a is the neighbour itself: the prior stays the catalog's, and one
    # failure moves the prediction by one observation in shrinkage + 1 (it counted twice: 0.55 * (16/17)^2).
    nb = rows([0.1], [[(0.0, NAN, NAN)]])
    p = predict(nb, ["a"], ["a"], stats(a=(1, 0.0)), LearningConfig(shrinkage=16.0), {"a": 0.55})
    assert p.models["a"].prior == pytest.approx(0.55)
    assert p.models["a"].quality == pytest.approx(16 * 0.55 / 17)
    # A row beyond the radius weighs nothing nearby, so it is the prior's: one observation in 17.
    far = predict(rows([0.9], [[(0.0, NAN, NAN)]]), ["a"], ["a"], stats(a=(1, 0.0)),
                  LearningConfig(shrinkage=16.0, radius=0.75), {"a": 0.55})  # fmt: skip
    assert far.models["a"].quality == pytest.approx(16 * 0.55 / 17)


def test_zero_shrinkage_with_no_neighbours_keeps_the_prior():
    est = estimate(np.zeros((1, 0)), np.zeros((1, 0, 1, 3)), np.array([0.4]), np.array([NAN]),
                   LearningConfig(shrinkage=0.0))  # fmt: skip
    assert est.quality[0, 0] == pytest.approx(0.4)


def test_an_empty_memory_predicts_nothing_it_does_not_know():
    est = estimate(np.zeros((1, 0)), np.zeros((1, 0, 1, 3)), np.array([NAN]), np.array([NAN]), LearningConfig())
    assert np.isnan(est.quality[0, 0]) and est.support[0] == 0.0


def test_cost_is_learned_from_neighbours_like_quality():
    nb = rows([0.1, 0.2], [[(1.0, 0.002, NAN)], [(1.0, 0.004, NAN)]])
    s = MemoryStats(n={"a": 2}, quality_sum={"a": 2.0}, n_cost={"a": 2}, cost_sum={"a": 0.006})
    p = predict(nb, ["a"], ["a"], s, LearningConfig(neighbours=2, shrinkage=0.0))
    assert p.models["a"].cost == pytest.approx((0.002 * 1 + 0.004 * 0.5) / 1.5)

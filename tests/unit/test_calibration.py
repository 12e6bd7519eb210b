"""The learned knob: sweeps move monotonically from the best model to the cheapest, and goals pick a setting."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from redisvl_llmrouter.learning.calibration import KNOB_GRID, choices, solve, sweep

# Three requests, two models: "weak" is 10x cheaper; it is as good on the first request only.
QUALITY = np.array([[0.9, 0.9], [0.2, 0.9], [0.5, 0.8]])
COST = np.array([[0.1, 1.0], [0.1, 1.0], [0.1, 1.0]])


def test_w_zero_takes_the_best_and_w_one_the_cheapest_with_ties_to_the_cheaper():
    assert choices(QUALITY, COST, 0.0).tolist() == [0, 1, 1]
    assert choices(QUALITY, COST, 1.0).tolist() == [0, 0, 0]


def test_cost_never_rises_as_the_weight_on_cost_grows():
    points = sweep(QUALITY, COST)
    costs = [p.cost for p in points]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(costs))
    assert KNOB_GRID[0] == 0.0 and KNOB_GRID[-1] == 1.0


def test_fallback_applies_where_the_memory_has_no_support():
    picks = choices(QUALITY, COST, 0.0, fallback=np.array([0, 0, 0]), supported=np.array([True, False, True]))
    assert picks.tolist() == [0, 0, 1]


def test_solve_meets_each_goal():
    budget = solve(QUALITY, COST, ["weak", "strong"], budget=0.4)
    assert budget.cost <= 0.4 + 1e-12 and budget.quality == pytest.approx((0.9 + 0.9 + 0.5) / 3)
    share = solve(QUALITY, COST, ["weak", "strong"], strong_share=0.0)
    assert share.strong_share == 0.0 and share.strong_model == "strong"
    target = solve(QUALITY, COST, ["weak", "strong"], quality_target=0.85)
    assert target.quality >= 0.85 and target.cost == pytest.approx((0.1 + 1.0 + 1.0) / 3)


def test_a_model_no_request_may_use_is_never_chosen_nor_the_strong_model():
    # NaN: not a candidate (a floor keeps "nano" from every request), however well it would do.
    quality = np.array([[np.nan, 0.2], [np.nan, 0.4]])
    cost = np.array([[np.nan, 1.0], [np.nan, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no "mean of empty slice" on the way
        result = solve(quality, cost, ["nano", "big"], budget=10.0)
    assert (result.strong_model, result.strong_share) == ("big", 1.0)
    assert result.quality == pytest.approx(0.3) and result.cost == pytest.approx(1.0)


def test_a_request_no_model_may_answer_is_left_out_of_every_figure():
    # Argmax over no candidate "picked" the first column: its cost counted, and so did a call to the strong
    # model, so the settings that meet each goal on the requests routing can answer were refused.
    quality = np.array([[0.9, 0.5], [np.nan, np.nan], [0.8, 0.7]])
    cost = np.array([[1.0, 0.1]] * 3)
    share = solve(quality, cost, ["A", "B"], strong_share=0.5)
    assert (share.strong_model, share.strong_share, share.requests) == ("A", 0.5, 2)
    assert share.quality == pytest.approx(0.8)
    budget = solve(quality, cost, ["A", "B"], budget=0.55)
    assert budget.cost == pytest.approx(0.55) and budget.quality == pytest.approx(0.8)
    with pytest.raises(ValueError, match="no request has a model that may answer it"):
        solve(quality[[1]], cost[[1]], ["A", "B"], budget=1.0)


def test_the_strong_model_is_the_one_quality_first_routing_picks_most_not_one_scored_on_a_few_requests():
    # "rare" is a candidate on one request of four (say, where it is the tier pick at its capped prior),
    # with a high score there: its mean beats "big", but routing at w = 0 sends three requests of four to big.
    quality = np.array([[0.95, 0.9, 0.3], [np.nan, 0.9, 0.3], [np.nan, 0.8, 0.3], [np.nan, 0.85, 0.3]])
    cost = np.array([[5.0, 1.0, 0.1]] * 4)
    result = solve(quality, cost, ["rare", "big", "small"], strong_share=0.5)
    assert result.strong_model == "big" and result.strong_share <= 0.5


def test_a_model_without_quality_still_sets_the_cost_scale():
    # "dear" is never chosen (no quality), but utility divides cost by the dearest candidate's, as
    # routing does: with dear in the scale, mid's cost weighs a tenth of what it weighs without it.
    names = ["dear", "mid", "cheap"]
    quality = np.array([[np.nan, 0.9, 0.5]])
    cost = np.array([[10.0, 1.0, 0.1]])

    def pick(columns: list[int], w: float) -> str:
        return [names[c] for c in columns][int(choices(quality[:, columns], cost[:, columns], w)[0])]

    assert pick([0, 1, 2], 0.6) == "mid"  # 0.4 * 0.9 - 0.6 * 0.1 against 0.4 * 0.5 - 0.6 * 0.01
    assert pick([1, 2], 0.6) == "cheap"  # 0.4 * 0.9 - 0.6 * 1.0 against 0.4 * 0.5 - 0.6 * 0.1


def test_solve_refuses_unreachable_or_ambiguous_goals():
    with pytest.raises(ValueError, match="cheapest setting costs"):
        solve(QUALITY, COST, ["weak", "strong"], budget=0.01)
    with pytest.raises(ValueError, match="exactly one goal"):
        solve(QUALITY, COST, ["weak", "strong"], budget=1.0, quality_target=0.5)


@pytest.mark.parametrize(
    "goal",
    [{"budget": -1.0}, {"budget": "cheap"}, {"budget": float("inf")}, {"strong_share": 1.5}, {"quality_target": -0.1},
     {"quality_target": float("nan")}, {"strong_share": True}],
)  # fmt: skip
def test_solve_refuses_a_goal_out_of_its_range_by_name(goal):
    (name,) = goal
    with pytest.raises(ValueError, match=f"{name.removesuffix('_target')} must be a number"):
        solve(QUALITY, COST, ["weak", "strong"], **goal)

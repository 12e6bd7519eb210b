"""The strategies: how candidates that passed every constraint are put in order. Pure.

Each strategy scores the eligible candidates of one group (the models a route lists) and sorts
them, best first; a score is "higher is better". ``cost`` and ``latency`` are normalised by the
largest value among the candidates compared, so no score has a unit:

* ``semantic``: the route's listed order (score: minus the position).
* ``cost``: lowest estimated USD for this request (unknown prices last).
* ``latency``: lowest expected latency: live average, else the catalog's (unknown last).
* ``quality``: highest expected quality (learned where the memory has evidence, else the prior).
* ``balanced``: ``wq * quality - wc * cost / max_cost - wl * latency / max_latency`` with the
  routing config's :class:`~redisvl_llmrouter.schema.BalanceWeights` (defaults 0.5 / 0.3 / 0.2);
  an unknown cost or latency counts as the largest, an unknown quality as 0.
* ``round_robin``: the listed order rotated by a position kept in Redis (one counter per route).
* ``least_loaded``: fewest requests in flight (divided by ``max_concurrency`` when known), then
  the lower latency.
* ``learned``: the utility ``(1 - w) * quality - w * cost / max_cost`` with ``w`` the routing
  config's ``cost_weight``, over every eligible model at once: ``w = 0`` takes the model with the
  best predicted quality, ``w = 1`` the cheapest, and the values between trace the trade-off.

Ties go to the cheaper model, then to the listed order, so every order is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from redisvl_llmrouter.schema import BalanceWeights, ModelChoice, Strategy

__all__ = ["learned_utility", "order", "unit_free"]


def unit_free(values: Sequence[float | None]) -> list[float]:
    """Each value divided by the largest known one; unknown values count as the largest (1.0).

    When no value is known or the largest is 0 there is nothing to compare and every entry is 0.
    """
    known = [v for v in values if v is not None]
    top = max(known, default=0.0)
    if top <= 0:
        return [0.0 if v is not None else (1.0 if known else 0.0) for v in values]
    return [1.0 if v is None else v / top for v in values]


def learned_utility(quality: np.ndarray, cost: np.ndarray, cost_weight: float) -> np.ndarray:
    """``(1 - w) * quality - w * cost / max_cost`` row by row (arrays ``(n, m)``; NaN cost = the largest).

    Unknown quality (NaN) scores minus infinity, and so does a utility that is no number (a cost
    estimate that overflowed to inf: inf / inf). The one rule behind the ``learned`` strategy, the
    evaluation's sweep and the calibration, so all three choose alike.
    """
    quality = np.atleast_2d(np.asarray(quality, dtype=np.float64))
    cost = np.atleast_2d(np.asarray(cost, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        top = np.nanmax(np.where(np.isnan(cost), -np.inf, cost), axis=1, keepdims=True)
        normalised = np.where(np.isnan(cost), 1.0, cost / np.where(top > 0, top, 1.0))
        normalised = np.where(top > 0, normalised, np.where(np.isnan(cost), 1.0, 0.0))
    utility = (1.0 - cost_weight) * quality - cost_weight * normalised
    return np.where(np.isnan(quality) | np.isnan(utility), -np.inf, utility)


def _cost_key(choice: ModelChoice) -> float:
    return math.inf if choice.cost is None else choice.cost


def order(
    strategy: Strategy,
    choices: Sequence[ModelChoice],
    *,
    cost_weight: float = 0.3,
    balance: BalanceWeights | None = None,
    rr_position: int = 0,
) -> list[ModelChoice]:
    """``choices`` (in listed order) sorted best first under ``strategy``, each with its ``score`` set (in place)."""
    if not choices:
        return []
    n = len(choices)
    tiebreak = [0.0] * n
    if strategy in (Strategy.semantic, Strategy.round_robin):
        shift = rr_position % n if strategy is Strategy.round_robin else 0
        rotated = [*choices[shift:], *choices[:shift]]
        return [_scored(c, float(-i)) for i, c in enumerate(rotated)]
    if strategy is Strategy.learned:
        quality = np.array([[np.nan if c.quality is None else c.quality for c in choices]])
        cost = np.array([[np.nan if c.cost is None else c.cost for c in choices]])
        scores = learned_utility(quality, cost, cost_weight)[0].tolist()
    elif strategy is Strategy.cost:
        scores = [-_cost_key(c) for c in choices]
    elif strategy is Strategy.latency:
        scores = [-(math.inf if c.latency_ms is None else c.latency_ms) for c in choices]
    elif strategy is Strategy.quality:
        scores = [-math.inf if c.quality is None else c.quality for c in choices]
    elif strategy is Strategy.balanced:
        weights = balance or BalanceWeights()
        costs = unit_free([c.cost for c in choices])
        latencies = unit_free([c.latency_ms for c in choices])
        scores = [
            weights.quality * (c.quality or 0.0) - weights.cost * costs[i] - weights.latency * latencies[i]
            for i, c in enumerate(choices)
        ]
    elif strategy is Strategy.least_loaded:
        # Load first; latency only breaks ties (a key of its own: folded into the score, an unknown
        # latency outweighed a busy model's load).
        scores = [-(c.load or 0.0) for c in choices]
        tiebreak = [math.inf if c.latency_ms is None else c.latency_ms for c in choices]
    else:  # pragma: no cover - the enum is closed
        raise ValueError(f"unknown strategy {strategy!r}")
    # A score that is no number (an estimate that overflowed to inf: inf / inf) ranks last, never first:
    # sorting with NaN keys puts them anywhere.
    scores = [-math.inf if s != s else s for s in scores]
    ranked = sorted(range(n), key=lambda i: (-scores[i], tiebreak[i], _cost_key(choices[i]), i))
    return [_scored(choices[i], float(scores[i])) for i in ranked]


def _scored(choice: ModelChoice, score: float) -> ModelChoice:
    choice.score = score  # the choices are built for this one decision
    return choice

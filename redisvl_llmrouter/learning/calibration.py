"""The learned router's knob: sweeping it into a cost-quality curve, and setting it for a goal. Pure.

The ``learned`` strategy picks, per request, the model with the highest utility
``(1 - w) * q - w * cost / max_cost`` (:func:`~redisvl_llmrouter.policy.strategies.learned_utility`)
where ``w`` is the routing config's ``cost_weight``. Moving ``w`` from 0 to 1 walks from the best
predicted quality to the cheapest model. This module evaluates many values of ``w`` at once
(:func:`sweep`) and picks the one that meets a goal (:func:`solve`), the way RouteLLM calibrates
its threshold on training prompts:

* ``budget``: the largest quality whose mean estimated cost per request is at most the budget;
* ``strong_share``: at most this share of requests to the strongest model (the one quality-first
  routing, ``w = 0``, picks most often: a model scored on a handful of requests cannot be it);
* ``quality``: the cheapest setting whose mean predicted quality reaches the target.

Choices move monotonically with ``w`` (a larger weight on cost never picks a dearer model for the
same request), so each goal has a well-defined answer found on a fine grid of ``w``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from redisvl_llmrouter.policy.catalog import finite_number
from redisvl_llmrouter.policy.strategies import learned_utility

__all__ = ["KNOB_GRID", "Calibration", "choices", "solve", "sweep"]

#: Values of ``w`` for sweeps: 0, 1 and ``λ / (1 + λ)`` for ``λ`` log-spaced over 10^-4..10^4, dense
#: where the trade-off moves (a quality gap of a few points against cost ratios of 10-100).
KNOB_GRID: np.ndarray = np.unique(np.concatenate(([0.0, 1.0], (lam := np.logspace(-4, 4, 161)) / (1.0 + lam))))


def choices(
    quality: np.ndarray,
    cost: np.ndarray,
    cost_weight: float,
    fallback: np.ndarray | None = None,
    supported: np.ndarray | None = None,
) -> np.ndarray:
    """The chosen model column per request at one ``w``; ``fallback`` where not ``supported``.

    Ties go to the cheaper model (then the first column), as in the router.
    """
    utility = learned_utility(quality, cost, cost_weight)
    # Ties (e.g. at w = 0) go to the cheaper model: a nudge far below any real utility gap.
    nudged = utility + 1e-9 * learned_utility(np.zeros_like(utility), cost, 1.0)
    picked = np.argmax(nudged, axis=1)
    if fallback is not None and supported is not None:
        picked = np.where(supported, picked, fallback)
    return picked


@dataclass(frozen=True)
class SweepPoint:
    """One knob setting: mean quality and cost per request (real outcomes if given, else predicted)."""

    cost_weight: float
    quality: float
    cost: float
    picks: np.ndarray


def sweep(
    quality_hat: np.ndarray,
    cost_hat: np.ndarray,
    quality: np.ndarray | None = None,
    cost: np.ndarray | None = None,
    grid: np.ndarray = KNOB_GRID,
    fallback: np.ndarray | None = None,
    supported: np.ndarray | None = None,
) -> list[SweepPoint]:
    """The router's operating points over ``grid``: what the picks score on ``quality``/``cost``.

    Without real outcomes the picks are scored on the predictions themselves (for calibration).
    """
    realised_q = quality_hat if quality is None else quality
    realised_c = cost_hat if cost is None else cost
    rows = np.arange(quality_hat.shape[0])
    out = []
    for w in grid:
        picks = choices(quality_hat, cost_hat, float(w), fallback, supported)
        out.append(
            SweepPoint(
                cost_weight=float(w),
                quality=float(np.nanmean(realised_q[rows, picks])),
                cost=float(np.nanmean(realised_c[rows, picks])),
                picks=picks,
            )
        )
    return out


@dataclass(frozen=True)
class Calibration:
    """The knob a goal asks for, and what it achieves on the calibration requests (predicted)."""

    cost_weight: float
    goal: str
    quality: float
    cost: float
    strong_share: float
    strong_model: str | None
    requests: int
    unsized: int = 0
    """Of ``requests``, rows written before rows kept their prompt's size (by an older version): each
    is priced by its routing text, a long prompt's head and tail only, so ``cost`` may be too low.
    Learning those prompts again records their size."""


def solve(
    quality_hat: np.ndarray,
    cost_hat: np.ndarray,
    models: list[str],
    *,
    budget: float | None = None,
    strong_share: float | None = None,
    quality_target: float | None = None,
    grid: np.ndarray = KNOB_GRID,
    fallback: np.ndarray | None = None,
    supported: np.ndarray | None = None,
) -> Calibration:
    """The ``cost_weight`` meeting exactly one goal on these predictions (see the module docstring).

    ``quality_hat`` is NaN where a model is not a candidate for a request (a floor excludes it, or
    nothing is known of it): it is never chosen there. Its cost (where not NaN) still counts in the
    scale utility divides by. A request with no candidate at all (every model excluded there, or none
    weighed) is left out of every figure: ``requests`` counts the others. The strongest model is the one
    picked most at ``w = 0``. ``fallback`` and ``supported``: where a request has too little support
    (``supported`` False), routing takes the tier's pick (``fallback``'s column) at every weight.

    Raises ``ValueError`` when no goal or several are given, or when no setting meets it (the
    message gives the closest reachable figure).
    """
    goals = {"budget": budget, "strong_share": strong_share, "quality": quality_target}
    given = [k for k, v in goals.items() if v is not None]
    if len(given) != 1:
        raise ValueError("Give exactly one goal: budget, strong_share or quality.")
    goal = given[0]
    value = goals[goal]
    bounded = goal != "budget"  # a share and a quality are fractions; a budget is any USD amount
    if not finite_number(value) or value < 0 or (bounded and value > 1):
        expected = "a number from 0 to 1" if bounded else "a number of USD per request, 0 or more"
        raise ValueError(f"{goal} must be {expected}, got {value!r}")
    # Only requests some model may answer: argmax over no candidate would "pick" the first column,
    # counting its cost and, were it the strong model, a call to it.
    answerable = np.any(~np.isnan(quality_hat), axis=1)
    if not answerable.any():
        raise ValueError(f"No cost_weight meets {goal}={value}: no request has a model that may answer it.")
    quality_hat, cost_hat = quality_hat[answerable], cost_hat[answerable]
    if fallback is not None and supported is not None:
        fallback, supported = fallback[answerable], supported[answerable]
    with np.errstate(invalid="ignore"):
        top = np.nanmax(cost_hat) if np.any(~np.isnan(cost_hat)) else 0.0
    points = sweep(
        quality_hat, cost_hat, cost=np.where(np.isnan(cost_hat), top, cost_hat), grid=grid,
        fallback=fallback, supported=supported,
    )  # fmt: skip
    # The strong model: what routing picks most when cost does not count (w = 0). A mean over the
    # requests each model may answer would crown a model scored on a few of them (where it is the tier
    # pick, at its capped prior).
    quality_first = min(points, key=lambda p: p.cost_weight).picks
    strong = int(np.bincount(quality_first, minlength=len(models)).argmax())
    shares = [float(np.mean(p.picks == strong)) for p in points]
    if goal == "budget":
        ok = [i for i, p in enumerate(points) if p.cost <= budget + 1e-15]  # type: ignore[operator]
        best = max(ok, key=lambda i: (points[i].quality, -points[i].cost_weight), default=None)
        closest = f"the cheapest setting costs ${min(p.cost for p in points):.6g} per request"
    elif goal == "strong_share":
        ok = [i for i, s in enumerate(shares) if s <= strong_share + 1e-12]  # type: ignore[operator]
        best = max(ok, key=lambda i: (points[i].quality, -points[i].cost_weight), default=None)
        closest = f"the lowest share reachable is {min(shares):.3f}"
    else:
        ok = [i for i, p in enumerate(points) if p.quality >= quality_target - 1e-12]  # type: ignore[operator]
        best = min(ok, key=lambda i: (points[i].cost, -points[i].cost_weight), default=None)
        closest = f"the best reachable mean predicted quality is {max(p.quality for p in points):.4f}"
    if best is None:
        raise ValueError(f"No cost_weight meets {goal}={goals[goal]}: {closest}.")
    p = points[best]
    return Calibration(
        cost_weight=p.cost_weight,
        goal=f"{goal}={goals[goal]:g}",
        quality=p.quality,
        cost=p.cost,
        strong_share=shares[best],
        strong_model=models[strong] if models else None,
        requests=int(quality_hat.shape[0]),
    )

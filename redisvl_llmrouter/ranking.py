"""The ranking core: pure functions from search rows to ``RouteMatch`` objects.

Everything between "Redis returned these distances" and "this is the route" lives here, once, for
the sync router, the async router, the evaluation and the CLI alike. No I/O, no Redis, no model:
the functions are deterministic and unit-tested on hand-made rows.

The pipeline is: thresholds → aggregation → cost penalty → order → confidence → alternatives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from redisvl_llmrouter.schema import (
    DistanceAggregationMethod,
    Route,
    RouteAlternative,
    RouteMatch,
    RoutingConfig,
)

__all__ = [
    "Candidate",
    "RouteDistances",
    "aggregate",
    "best_match",
    "candidates",
    "confidence",
    "cost_penalties",
    "floors",
    "order",
    "rank",
    "top_matches",
]


@dataclass(frozen=True)
class RouteDistances:
    """The distances from a query to one route's references within the search radius, nearest first."""

    route: str
    distances: tuple[float, ...]


@dataclass(frozen=True)
class Candidate:
    """A route that passed its threshold, with its aggregated distance and ranking score."""

    route: Route
    distance: float
    score: float

    @property
    def confidence(self) -> float:
        return confidence(self.distance, self.route.distance_threshold)


def aggregate(row: RouteDistances, method: DistanceAggregationMethod, k: int = 3) -> float:
    """The route's distance: min, avg or sum (RedisVL's semantics) or the mean of the ``k`` nearest."""
    d = row.distances
    if method is DistanceAggregationMethod.min:
        return d[0]
    if method is DistanceAggregationMethod.sum:
        return math.fsum(d)
    if method is DistanceAggregationMethod.topk:
        return math.fsum(d[:k]) / len(d[:k])
    return math.fsum(d) / len(d)


def confidence(distance: float, threshold: float) -> float:
    """``1 - distance / threshold`` clipped to [0, 1]: 1 at distance 0, 0 at the threshold, monotone."""
    if threshold <= 0:
        return 0.0
    return min(1.0, max(0.0, 1.0 - distance / threshold))


def candidates(
    rows: Iterable[RouteDistances],
    routes: Mapping[str, Route],
    method: DistanceAggregationMethod,
    k: int = 3,
) -> list[tuple[Route, float]]:
    """The routes whose aggregated distance is strictly below their own threshold.

    Rows for names the router does not know (references left behind by another process) are
    ignored rather than returned as routes without a model.
    """
    passed = []
    for row in rows:
        route = routes.get(row.route)
        if route is None or not row.distances:
            continue
        distance = aggregate(row, method, k)
        if math.isfinite(distance) and distance < route.distance_threshold:
            passed.append((route, distance))
    return passed


def cost_penalties(costs: Sequence[float | None]) -> list[float]:
    """Unit-free cost penalties in [0, 1]: each cost divided by the highest cost compared.

    Scaling every cost by the same factor leaves the penalties unchanged. A route without a cost
    is treated as the most expensive one compared (no saving is claimed for it). When no route
    has a positive cost there is nothing to trade off and every penalty is 0.
    """
    known = [c for c in costs if c is not None]
    highest = max(known, default=0.0)
    if highest <= 0:
        return [0.0] * len(costs)
    return [1.0 if c is None else c / highest for c in costs]


def order(
    passed: Sequence[tuple[Route, float]],
    cost_optimization: bool,
    cost_weight: float,
) -> list[Candidate]:
    """Score and sort the passing routes, best first.

    Without cost optimisation the score is the distance. With it, the score is
    ``(1 - w) * distance + w * cost / max_cost``: ``w = 0`` ranks by distance alone and ``w = 1``
    picks the cheapest route that passed its threshold. Ties go to the smaller distance, then
    the cheaper route, then the name, so the order is deterministic.
    """
    if cost_optimization:
        penalties = cost_penalties([route.cost for route, _ in passed])
        scored = [
            Candidate(route, distance, (1.0 - cost_weight) * distance + cost_weight * penalty)
            for (route, distance), penalty in zip(passed, penalties, strict=True)
        ]
    else:
        scored = [Candidate(route, distance, distance) for route, distance in passed]
    return sorted(
        scored,
        key=lambda c: (
            c.score,
            c.distance,
            math.inf if c.route.cost is None else c.route.cost,
            c.route.name,
        ),
    )


def rank(
    rows: Iterable[RouteDistances],
    routes: Mapping[str, Route],
    config: RoutingConfig,
    aggregation_method: DistanceAggregationMethod | None = None,
) -> list[Candidate]:
    """All routes that pass their thresholds, best first, under ``config``.

    ``aggregation_method`` overrides the config's (RedisVL's enum members are accepted too).
    """
    method = (
        DistanceAggregationMethod(getattr(aggregation_method, "value", aggregation_method))
        if aggregation_method is not None
        else config.aggregation_method
    )
    passed = candidates(rows, routes, method, config.aggregation_k)
    return order(passed, config.cost_optimization, config.cost_weight)


def floors(
    rows: Iterable[RouteDistances],
    floor_routes: Mapping[str, Route],
    config: RoutingConfig,
    aggregation_method: DistanceAggregationMethod | None = None,
) -> list[Route]:
    """The floor routes a query matched (aggregated like the tier routes, below their own thresholds)."""
    if not floor_routes:
        return []
    method = (
        DistanceAggregationMethod(getattr(aggregation_method, "value", aggregation_method))
        if aggregation_method is not None
        else config.aggregation_method
    )
    return [route for route, _ in candidates(rows, floor_routes, method, config.aggregation_k)]


def _alternative(candidate: Candidate) -> RouteAlternative:
    return RouteAlternative(
        name=candidate.route.name,
        model=candidate.route.model,
        distance=candidate.distance,
        cost=candidate.route.cost,
        confidence=candidate.confidence,
    )


def _match(ranked: Sequence[Candidate], i: int) -> RouteMatch:
    chosen = ranked[i]
    return RouteMatch(
        name=chosen.route.name,
        distance=chosen.distance,
        model=chosen.route.model,
        cost=chosen.route.cost,
        confidence=chosen.confidence,
        score=chosen.score,
        alternatives=[_alternative(c) for j, c in enumerate(ranked) if j != i],
    )


def _fallback(routes: Mapping[str, Route], config: RoutingConfig) -> RouteMatch:
    if config.default_route is None:
        return RouteMatch()
    route = routes[config.default_route]
    return RouteMatch(name=route.name, model=route.model, cost=route.cost, confidence=0.0, fallback=True)


def best_match(ranked: Sequence[Candidate], routes: Mapping[str, Route], config: RoutingConfig) -> RouteMatch:
    """The winner with every other passing route as an alternative; else the default route; else an empty match."""
    return _match(ranked, 0) if ranked else _fallback(routes, config)


def top_matches(
    ranked: Sequence[Candidate],
    routes: Mapping[str, Route],
    config: RoutingConfig,
    max_k: int,
) -> list[RouteMatch]:
    """The best ``max_k`` routes (each listing the other passing routes as alternatives).

    When nothing passes: a one-element list holding the default route's match, or an empty list.
    """
    if not ranked:
        fallback = _fallback(routes, config)
        return [fallback] if fallback else []
    return [_match(ranked, i) for i in range(min(max_k, len(ranked)))]

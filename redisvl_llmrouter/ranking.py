"""The ranking core: pure functions from search rows to ``RouteMatch`` objects.

Everything between "Redis returned these distances" and "this is the route" lives here, once, for
the sync router, the async router, the evaluation and the CLI alike. No I/O, no Redis, no model:
the functions are deterministic and unit-tested on hand-made rows.

The pipeline is: thresholds → aggregation → cost penalty → order → confidence → alternatives.
Confidence is reported, never used to choose: the order is the same with or without calibration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from redisvl_llmrouter.confidence import softmax
from redisvl_llmrouter.schema import (
    ConfidenceCalibration,
    DistanceAggregationMethod,
    Route,
    RouteAlternative,
    RouteMatch,
    RoutingConfig,
)

__all__ = [
    "Candidate",
    "RouteDistances",
    "Ranking",
    "aggregate",
    "best_match",
    "candidates",
    "confidence",
    "confidences",
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
    """A route that passed its threshold, with its aggregated distance, ranking score and confidence.

    ``confidence`` is set by :func:`rank` (see :func:`confidences`); a candidate built by hand
    defaults to the uncalibrated ``1 - distance / threshold``.
    """

    route: Route
    distance: float
    score: float
    confidence: float = math.nan

    def __post_init__(self) -> None:
        if math.isnan(self.confidence):
            object.__setattr__(self, "confidence", confidence(self.distance, self.route.distance_threshold))


class Ranking(list[Candidate]):
    """The candidates, best first, and the confidence the default route gets when none passed.

    A plain list of :class:`Candidate` everywhere a list is expected; ``fallback_confidence``
    travels with it so the match built from an empty ranking can report it.
    """

    def __init__(self, candidates: Iterable[Candidate] = (), fallback_confidence: float = 0.0) -> None:
        super().__init__(candidates)
        self.fallback_confidence = fallback_confidence


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
    """The uncalibrated confidence: ``1 - distance / threshold`` clipped to [0, 1], monotone.

    1 at distance 0, 0 at the threshold. A relative signal, not a probability; what routers
    without a :class:`ConfidenceCalibration` report.
    """
    if threshold <= 0:
        return 0.0
    return min(1.0, max(0.0, 1.0 - distance / threshold))


def confidences(
    ordered: Sequence[Candidate],
    distances: Mapping[str, float],
    default_route: str | None,
    calibration: ConfidenceCalibration | None,
) -> Ranking:
    """Attach each candidate's confidence, and the default route's for when none passed.

    Calibrated: the probability that the route is right, a softmax of ``-sharpness * distance``
    over the candidates; when there are none, over every route's distance in ``distances``, read
    at the default route (see :mod:`redisvl_llmrouter.confidence`). Uncalibrated: each
    candidate's ``1 - distance / threshold`` and 0 for the default route.
    """
    if calibration is None:
        return Ranking(ordered)
    if ordered:
        shares = softmax([c.distance for c in ordered], calibration.sharpness)
        return Ranking(replace(c, confidence=p) for c, p in zip(ordered, shares, strict=True))
    if default_route is None or default_route not in distances:
        return Ranking()
    names = list(distances)
    shares = softmax([distances[n] for n in names], calibration.sharpness)
    return Ranking(fallback_confidence=shares[names.index(default_route)])


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
) -> Ranking:
    """All routes that pass their thresholds, best first, with their confidences, under ``config``.

    ``aggregation_method`` overrides the config's (RedisVL's enum members are accepted too).
    """
    method = _method(config, aggregation_method)
    rows = list(rows)
    ordered = order(
        candidates(rows, routes, method, config.aggregation_k), config.cost_optimization, config.cost_weight
    )
    if config.confidence is None or ordered:
        return confidences(ordered, {}, config.default_route, config.confidence)
    return confidences(
        ordered, route_distances(rows, routes, method, config.aggregation_k), config.default_route, config.confidence
    )


def route_distances(
    rows: Iterable[RouteDistances],
    routes: Mapping[str, Route],
    method: DistanceAggregationMethod,
    k: int = 3,
) -> dict[str, float]:
    """Every route's aggregated distance, whether or not it passed its threshold.

    A route with no reference within the search radius (the largest threshold) is at least that
    far away, and is counted at the radius.
    """
    radius = max((r.distance_threshold for r in routes.values()), default=0.0)
    found = {row.route: aggregate(row, method, k) for row in rows if row.route in routes and row.distances}
    return {name: min(found.get(name, radius), radius) for name in routes}


def _method(config: RoutingConfig, aggregation_method: DistanceAggregationMethod | None) -> DistanceAggregationMethod:
    """The aggregation to use: the override (RedisVL's enum members accepted) or the config's."""
    if aggregation_method is None:
        return config.aggregation_method
    return DistanceAggregationMethod(getattr(aggregation_method, "value", aggregation_method))


def floors(
    rows: Iterable[RouteDistances],
    floor_routes: Mapping[str, Route],
    config: RoutingConfig,
    aggregation_method: DistanceAggregationMethod | None = None,
) -> list[Route]:
    """The floor routes a query matched (aggregated like the tier routes, below their own thresholds)."""
    if not floor_routes:
        return []
    method = _method(config, aggregation_method)
    return [route for route, _ in candidates(rows, floor_routes, method, config.aggregation_k)]


def _alternative(candidate: Candidate, ceiling: float) -> RouteAlternative:
    # Capped at the chosen route's confidence so the list never outranks the answer. With routes
    # ranked by distance and a calibrated config the cap never binds (a closer route is always
    # likelier); it binds when something else put the chosen route first: the cost penalty, a
    # lower-ranked match of ``route_many``, or unequal thresholds in the uncalibrated measure.
    return RouteAlternative(
        name=candidate.route.name,
        model=candidate.route.model,
        distance=candidate.distance,
        cost=candidate.route.cost,
        confidence=min(candidate.confidence, ceiling),
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
        alternatives=[_alternative(c, chosen.confidence) for j, c in enumerate(ranked) if j != i],
    )


def _fallback(ranked: Sequence[Candidate], routes: Mapping[str, Route], config: RoutingConfig) -> RouteMatch:
    if config.default_route is None:
        return RouteMatch()
    route = routes[config.default_route]
    return RouteMatch(
        name=route.name,
        model=route.model,
        cost=route.cost,
        confidence=getattr(ranked, "fallback_confidence", 0.0),
        fallback=True,
    )


def best_match(ranked: Sequence[Candidate], routes: Mapping[str, Route], config: RoutingConfig) -> RouteMatch:
    """The winner with every other passing route as an alternative; else the default route; else an empty match."""
    return _match(ranked, 0) if ranked else _fallback(ranked, routes, config)


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
        fallback = _fallback(ranked, routes, config)
        return [fallback] if fallback else []
    return [_match(ranked, i) for i in range(min(max_k, len(ranked)))]

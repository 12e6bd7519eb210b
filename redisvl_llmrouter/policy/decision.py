"""The policy step: from the ranked routes to one model, its fallbacks and the reasons. Pure.

Input: the tier routes that passed their thresholds (best first, from :mod:`ranking`), the floor
routes that matched, the catalog, the request's constraints and prompt size, the learned
prediction (if the memory has one), live statistics, the round-robin position and the models
the caller reports unavailable (open circuit breakers). Output: a
:class:`~redisvl_llmrouter.schema.Decision`. No I/O: the router and the gateway gather the inputs
from Redis and call :func:`decide`; the tests call it on hand-made catalogs.

How the candidates are gathered (*groups*, in order):

1. the matched route's models (or the default route's, when nothing matched);
2. the models of the other routes that passed, best first;
3. the models of the remaining tier routes above the matched one (listed after it; cheapest
   route ``cost`` first, routes without a cost after them in the listed order), then below it
   (nearest first), so a constraint that rules out a tier escalates before it degrades.

A model belongs to the first group that lists it. Floors remove the groups below their
``min_route`` and the models whose catalog quality is under their ``min_quality``. Every model
is then checked against the breakers and the constraints; the strategy orders what is left
within each group (or, for ``learned``, all eligible models at once); the first is the choice and
the rest, in order, are the fallbacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from redisvl_llmrouter.errors import NoEligibleModelError
from redisvl_llmrouter.learning.prediction import ModelEstimate, Prediction
from redisvl_llmrouter.policy import strategies
from redisvl_llmrouter.policy.catalog import ModelCatalog, ModelSpec
from redisvl_llmrouter.policy.constraints import RELAXATION_ORDER, Constraints
from redisvl_llmrouter.policy.stats import ModelStats
from redisvl_llmrouter.ranking import Candidate
from redisvl_llmrouter.schema import Decision, Exclusion, ModelChoice, Route, RoutingConfig, Strategy

__all__ = ["PolicyInput", "decide", "effective_catalog", "learned_qualities", "primary_tier"]


def effective_catalog(catalog: ModelCatalog, routes: Sequence[Route]) -> ModelCatalog:
    """The catalog plus an entry for every route model it lacks.

    Such a model's price is its route's ``cost`` taken as USD per 1M tokens, in and out (the
    convention of ``Route.cost``); without a cost it has no price. A model several routes list takes
    the cost of the routes whose first model it is, else of all of them, and the highest of those:
    never a price that depends on the order of the routes, nor one a budget would admit too
    cheaply. It has no capabilities, no quality prior and no latency figure until the catalog gives them.
    """
    costs: dict[str, tuple[bool, float | None]] = {}  # model -> (first model of a route, highest cost)
    for route in routes:
        for position, model in enumerate(route.models):
            if model in catalog:
                continue
            first, cost = position == 0, route.cost
            known = costs.get(model)
            if known is not None and known[0] and not first:
                continue  # a route that merely lists it does not price it
            if known is not None and known[0] == first and known[1] is not None:
                cost = known[1] if cost is None else max(cost, known[1])
            costs[model] = (first, cost)
    missing = [ModelSpec(name=m, input_price=cost, output_price=cost) for m, (_, cost) in costs.items()]
    return catalog.with_models(missing) if missing else catalog


def _unknown(model: str) -> ModelSpec:
    return ModelSpec(name=model)


@dataclass(frozen=True)
class PolicyInput:
    """Everything :func:`decide` needs besides the ranking."""

    routes: Sequence[Route]
    catalog: ModelCatalog
    config: RoutingConfig
    strategy: Strategy
    constraints: Constraints = field(default_factory=Constraints)
    prompt_tokens: int = 1
    choices: int = 1
    """Answers asked for: the cost estimate bills each its output tokens (a learned cost, one answer's,
    counts n times); the context need is one answer's."""
    prediction: Prediction | None = None
    min_support: float = 1.0
    stats: Mapping[str, ModelStats] = field(default_factory=dict)
    rr_position: int = 0
    unavailable: Mapping[str, str] = field(default_factory=dict)


def primary_tier(
    ranked: Sequence[Candidate], floors: Sequence[Route], routes: Sequence[Route], config: RoutingConfig
) -> Route | None:
    """The route whose models come first: the best match, else the default route, else the highest
    tier a matched floor names (``None``: no route leads). The round-robin position is this route's."""
    if ranked:
        return ranked[0].route
    tiers = [r for r in routes if not r.is_floor]
    by_name = {r.name: r for r in tiers}
    if config.default_route in by_name:
        return by_name[config.default_route]
    names = [r.name for r in tiers]
    floor_tiers = [f.floor.min_route for f in floors if f.floor and f.floor.min_route in by_name]
    return by_name[max(floor_tiers, key=names.index)] if floor_tiers else None


def _groups(ranked: Sequence[Candidate], floors: Sequence[Route], inp: PolicyInput) -> list[Route]:
    tiers = [r for r in inp.routes if not r.is_floor]
    primary = primary_tier(ranked, floors, inp.routes, inp.config)
    if primary is None:
        # A quality floor fired on an unmatched request: every tier, cheapest first.
        return sorted(tiers, key=_tier_cost) if floors else []
    position = next(i for i, r in enumerate(tiers) if r.name == primary.name)
    order = [primary, *(c.route for c in ranked[1:])]
    order += sorted(tiers[position + 1 :], key=_tier_cost) + tiers[:position][::-1]
    return list({r.name: r for r in order}.values())


def _tier_cost(route: Route) -> tuple[bool, float]:
    """Sort key: cheapest route cost first; routes without a cost after, in their listed order (sorts are stable)."""
    return (route.cost is None, route.cost or 0.0)


def _tier_positions(tiers: Sequence[Route]) -> dict[str, int]:
    """Each model's position among the tier routes (its first tier): what a floor's ``min_route`` is checked against."""
    positions: dict[str, int] = {}
    for i, route in enumerate(tiers):
        for model in route.models:
            positions.setdefault(model, i)
    return positions


def _floor_limits(floors: Sequence[Route], tiers: Sequence[Route]) -> tuple[int | None, float | None, dict[str, str]]:
    """The highest tier position and quality any matched floor demands, and which floor demands each."""
    positions = {r.name: i for i, r in enumerate(tiers)}
    min_position: int | None = None
    min_quality: float | None = None
    source: dict[str, str] = {}
    for route in floors:
        floor = route.floor
        if floor is None:
            continue
        if floor.min_route in positions and (min_position is None or positions[floor.min_route] > min_position):
            min_position, source["route"] = positions[floor.min_route], route.name
        if floor.min_quality is not None and (min_quality is None or floor.min_quality > min_quality):
            min_quality, source["quality"] = floor.min_quality, route.name
    return min_position, min_quality, source


def _capped(estimate: ModelEstimate, cap: float | None) -> float | None:
    """A model's predicted quality, the part of it no outcome near this request backs (its prior) at
    most ``cap``: a catalog's opinion, or a mean over other requests (one rating of the model on an
    unrelated one, perhaps), says little about this request, and the tier router judged its pick enough.

    So a model the memory never observed near the request is predicted at most ``cap``; one observed
    there moves from that toward what it achieved as the evidence grows (``shrinkage``)."""
    quality, prior = estimate.quality, estimate.prior
    if cap is None or quality is None:
        return quality
    if not estimate.observed or prior is None or estimate.support + estimate.shrinkage <= 0:
        return min(quality, cap) if estimate.support <= 0 else quality
    if prior <= cap:
        return quality
    return quality - estimate.shrinkage * (prior - cap) / (estimate.support + estimate.shrinkage)


def _choice(
    model: str, route: str | None, inp: PolicyInput, evidence: bool, tier_quality: float | None = None
) -> ModelChoice:
    """One model's expected quality, cost, latency and load. Its quality is the learned prediction
    when the memory holds similar requests (``evidence``), whatever the strategy, else the catalog's.

    ``tier_quality`` (learned choices only): what the tier router's own pick is expected to reach. A
    model the memory has never observed near this request is expected to do no better than that: the
    tier router judged its pick enough for it, and only evidence (outcomes, feedback) says otherwise.
    """
    spec = inp.catalog.get(model) or _unknown(model)
    estimate = inp.prediction.models.get(model) if inp.prediction is not None else None
    quality = spec.quality
    support = 0.0
    if estimate is not None and (evidence or quality is None):
        quality, support = _capped(estimate, tier_quality), estimate.support if evidence else 0.0
    output_tokens = inp.constraints.output_tokens or inp.config.expected_output_tokens
    cost = spec.estimate_cost(inp.prompt_tokens, output_tokens * inp.choices)
    if cost is None and estimate is not None and estimate.cost is not None:
        # What similar requests cost, learned from outcomes: one answer's, so n answers cost at most n
        # times it (the prompt is billed once; what part of the cost it was is not known).
        cost = estimate.cost * inp.choices
    live = inp.stats.get(model)
    latency = live.latency_ms if live is not None and live.latency_ms is not None else spec.latency_ms
    load = None
    if live is not None:
        load = live.inflight / spec.max_concurrency if spec.max_concurrency else float(live.inflight)
    return ModelChoice(
        model=model, route=route, quality=quality, support=support, cost=cost, latency_ms=latency, load=load
    )


def _judged(made: ModelChoice, route: str | None, inp: PolicyInput, evidence: bool, cap: float | None) -> ModelChoice:
    """The choice the constraints judge: ``made`` itself, or without the cap when ``made`` has one and
    ``min_quality`` reads the quality. The cap on what an unobserved model is expected to reach orders the
    learned choice and must not refuse a request (min_quality above the tier pick's catalog quality
    excluded every model nobody observed, a catalog's 0.9 included)."""
    if cap is None or inp.constraints.min_quality is None:
        return made
    return _choice(made.model, route, inp, evidence)


def _reasons(
    choice: ModelChoice,
    tier: int | None,
    limits: tuple[int | None, float | None, dict[str, str]],
    c: Constraints,
    inp: PolicyInput,
) -> list[str]:
    spec = inp.catalog.get(choice.model) or _unknown(choice.model)
    min_position, floor_quality, source = limits
    reasons = []
    if choice.model in inp.unavailable:
        reasons.append(inp.unavailable[choice.model])
    if min_position is not None and (tier is None or tier < min_position):
        reasons.append(f"below the floor of route {source['route']!r}")
    if floor_quality is not None and (spec.quality is None or spec.quality < floor_quality):
        prior = "unknown" if spec.quality is None else f"{spec.quality:g}"
        reasons.append(f"catalog quality {prior} under the floor {floor_quality:g} of route {source['quality']!r}")
    missing = [cap.value for cap in c.capabilities if not spec.has(cap)]
    if missing:
        reasons.append(f"lacks {', '.join(missing)}")
    needed = c.min_context or inp.prompt_tokens + (c.output_tokens or inp.config.expected_output_tokens)
    if spec.context_window is not None and spec.context_window < needed:
        reasons.append(f"context window {spec.context_window:,} < {needed:,} tokens needed")
    if c.max_cost is not None:
        if choice.cost is None:
            reasons.append("price unknown, so max_cost cannot be guaranteed")
        elif choice.cost > c.max_cost:
            reasons.append(f"estimated ${choice.cost:.6g} > max_cost ${c.max_cost:g}")
    if c.max_latency_ms is not None and choice.latency_ms is not None and choice.latency_ms > c.max_latency_ms:
        reasons.append(f"expected latency {choice.latency_ms:.0f} ms > max_latency_ms {c.max_latency_ms:g}")
    if c.min_quality is not None and (choice.quality is None or choice.quality < c.min_quality):
        expected = "unknown" if choice.quality is None else f"{choice.quality:.3f}"
        reasons.append(f"expected quality {expected} < min_quality {c.min_quality:g}")
    return reasons


_DECISION_DEFAULTS = {
    name: field.get_default(call_default_factory=True) for name, field in Decision.model_fields.items()
}


def _decision(**values: object) -> Decision:
    """A ``Decision`` from values the policy built and typed itself (no validation on the hot path)."""
    return Decision.model_construct(**{**_DECISION_DEFAULTS, **values})


def _holds(pick_quality: float | None, cap: float | None) -> bool:
    """Whether the tier pick keeps its place ahead of the models the memory never observed near the
    request: nothing says it falls short there (its learned quality is at least its catalog quality,
    ``cap``). Such a model is expected to do no better than the pick, so it takes over only once the
    pick is known to fail; until then it ranks after the pick, however cheap (a good rating of the
    pick must not hand its requests to a model nobody has seen answer them)."""
    return cap is not None and pick_quality is not None and pick_quality >= cap


def _unobserved_after(ordered: Sequence[ModelChoice], pick: str) -> list[ModelChoice]:
    """``ordered`` with the models never observed near the request that came before ``pick`` moved
    to just after it (see :func:`_holds`); the rest keep their order."""
    at = next(i for i, c in enumerate(ordered) if c.model == pick)
    ahead = ordered[:at]
    return [
        *(c for c in ahead if c.support > 0),
        ordered[at],
        *(c for c in ahead if c.support <= 0),
        *ordered[at + 1 :],
    ]


def _tier_quality(groups: Sequence[Route], inp: PolicyInput) -> float | None:
    """The tier router's pick (the first group's first model) and its catalog quality: the most a
    model the memory has never observed is expected to reach on this request (see ``_choice``)."""
    if not groups or not groups[0].models:
        return None
    pick = inp.catalog.get(groups[0].models[0])
    return pick.quality if pick is not None else None


def learned_qualities(
    ranked: Sequence[Candidate], floors: Sequence[Route], inp: PolicyInput
) -> dict[str, float | None]:
    """Each predicted model routing may choose on this request, with its quality as the learned
    strategy weighs it: the prediction, capped at the tier pick's catalog quality for a model the
    memory never observed. None for a model routing ranks but never picks first here (nothing known
    of its quality, or never observed near the request while the tier pick holds, see :func:`_holds`):
    its cost still counts in the scale utility divides by, as it does when routing.

    Models routing would exclude are left out: under a matched floor (below its ``min_route``, or
    a catalog quality under its ``min_quality``), short of context, failing the request's
    constraints or behind an open breaker (:func:`_reasons`, as :func:`decide` applies them).

    Calibration scores its sample with these, so the knob it sets is tuned on the numbers and the
    models routing compares: an unobserved model's uncapped prior would otherwise count for more
    than it will, and a model a floor excludes would be credited with requests it never gets.
    """
    if inp.prediction is None:
        return {}
    tiers = [r for r in inp.routes if not r.is_floor]
    tier_of = _tier_positions(tiers)
    groups = _groups(ranked, floors, inp)
    if not groups or not groups[0].models:  # routing answers with no model here (see decide)
        return {}
    cap = _tier_quality(groups, inp)
    limits = _floor_limits(floors, tiers)

    def choice(model: str) -> ModelChoice | None:
        """The choice decide() builds for a learned decision, or None when routing excludes the model."""
        made = _choice(model, None, inp, True, cap)  # evidence: the prediction is what it weighs
        judged = _judged(made, None, inp, True, cap)  # as decide() judges it
        return None if _reasons(judged, tier_of.get(model), limits, inp.constraints, inp) else made

    pick = choice(groups[0].models[0]) if groups and groups[0].models else None
    holding = pick.model if pick is not None and _holds(pick.quality, cap) else None
    weighed = {}
    for model in inp.prediction.models:
        made = choice(model)
        if made is not None:
            # While the pick holds, an unobserved model never comes first, but stays in the cost scale
            # routing divides by: no quality.
            unseen = holding is not None and made.support <= 0 and model != holding
            weighed[model] = None if unseen else made.quality
    return weighed


def decide(ranked: Sequence[Candidate], floors: Sequence[Route], inp: PolicyInput) -> Decision:
    """Choose a model for one request (see the module docstring). Raises ``NoEligibleModelError``."""
    tiers = [r for r in inp.routes if not r.is_floor]
    tier_of = _tier_positions(tiers)
    groups = _groups(ranked, floors, inp)
    floor_names = [f.name for f in floors]
    if not groups or not groups[0].models:
        # Nothing matched, or the matched route names no model (a RedisVL-style intent route):
        # the route is the answer and there is no model to choose.
        route = groups[0].name if groups else None
        return _decision(
            model=None, strategy=inp.strategy, route=route, constraints=inp.constraints, floors=floor_names
        )
    evidence = inp.prediction is not None and inp.prediction.support >= inp.min_support
    learned = inp.strategy is Strategy.learned and evidence
    pool: dict[str, str | None] = {}
    for route in groups:
        for model in route.models:
            pool.setdefault(model, route.name)
    if learned:
        for spec in inp.catalog:
            pool.setdefault(spec.name, None)
    tier_quality = _tier_quality(groups, inp) if learned else None
    choices = {m: _choice(m, route, inp, evidence, tier_quality) for m, route in pool.items()}
    judged = {m: _judged(choices[m], r, inp, evidence, tier_quality) for m, r in pool.items()}
    limits = _floor_limits(floors, tiers)

    def assess(constraints: Constraints) -> tuple[dict[str, list[str]], list[str]]:
        reasons = {m: _reasons(judged[m], tier_of.get(m), limits, constraints, inp) for m in pool}
        return reasons, [m for m in pool if not reasons[m]]

    constraints, relaxed = inp.constraints, []
    while True:
        reasons, eligible = assess(constraints)
        if eligible or not constraints.best_effort:
            break
        droppable = [f for f in RELAXATION_ORDER if getattr(constraints, f) is not None]
        if not droppable:
            break
        constraints, relaxed = constraints.without(droppable[0]), [*relaxed, droppable[0]]
    # Dropped in order until a model qualified, but only the last drop may have been needed: a limit the
    # qualifying models meet anyway is kept (max_latency_ms dropped on the way to an unreachable max_cost
    # let the slowest model win).
    for limit in reversed(relaxed[:-1]) if eligible else ():  # the dearest to give up first: money before speed
        restored = constraints.model_copy(update={limit: getattr(inp.constraints, limit)})
        kept, still = assess(restored)
        if still:
            constraints, reasons, eligible = restored, kept, still
            relaxed = [f for f in relaxed if f != limit]
    excluded = [Exclusion(m, "; ".join(r)) for m, r in reasons.items() if r]
    if not eligible:
        detail = "; ".join(f"{e.model}: {e.reason}" for e in excluded)
        matched = groups[0].name if ranked or inp.config.default_route == groups[0].name else None
        raise NoEligibleModelError(f"No model satisfies this request ({detail}).", excluded, matched)

    if learned:
        ordered = strategies.order(Strategy.learned, [choices[m] for m in eligible], cost_weight=inp.config.cost_weight)
        pick = groups[0].models[0]
        if pick in eligible and _holds(choices[pick].quality, tier_quality):
            ordered = _unobserved_after(ordered, pick)
    else:
        strategy = Strategy.semantic if inp.strategy is Strategy.learned else inp.strategy
        ordered = []
        for route in groups:
            members = [choices[m] for m in eligible if pool[m] == route.name]
            ordered += strategies.order(
                strategy,
                members,
                cost_weight=inp.config.cost_weight,
                balance=inp.config.balance,
                rr_position=inp.rr_position,
            )
    chosen = ordered[0]
    return _decision(
        model=chosen.model,
        strategy=inp.strategy,
        route=chosen.route,
        constraints=inp.constraints,
        candidates=ordered,
        fallbacks=[c.model for c in ordered[1:]],
        excluded=excluded,
        floors=floor_names,
        relaxed=relaxed,
        estimated_cost=chosen.cost,
        prompt_tokens=inp.prompt_tokens,
        learned=learned,
        support=0.0 if inp.prediction is None else inp.prediction.support,
    )

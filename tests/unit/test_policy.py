"""The policy step, pinned on hand-made catalogs: each strategy, each constraint, floors and relaxation."""

from __future__ import annotations

import re

import pytest

from redisvl_llmrouter import NoEligibleModelError, Route, RoutingConfig
from redisvl_llmrouter.learning.prediction import ModelEstimate, Prediction
from redisvl_llmrouter.policy.catalog import Capability, ModelCatalog, ModelSpec
from redisvl_llmrouter.policy.constraints import Constraints, implied_capabilities
from redisvl_llmrouter.policy.decision import PolicyInput, decide, effective_catalog, learned_qualities
from redisvl_llmrouter.policy.stats import ModelStats
from redisvl_llmrouter.policy.strategies import learned_utility, order, unit_free
from redisvl_llmrouter.ranking import Candidate
from redisvl_llmrouter.schema import BalanceWeights, Floor, ModelChoice, Strategy

# Prices are USD per 1M tokens; a 1,000-token prompt with 1,000 tokens out costs (in + out) / 1000.
CATALOG = ModelCatalog(
    models=[
        ModelSpec(name="p/nano", input_price=0.1, output_price=0.4, context_window=8_000,
                  capabilities=["json"], quality=0.5, latency_ms=300, max_concurrency=10),
        ModelSpec(name="p/mini", input_price=0.4, output_price=1.6, context_window=128_000,
                  capabilities=["json", "tools", "vision"], quality=0.7, latency_ms=500),
        ModelSpec(name="p/big", input_price=3.0, output_price=15.0, context_window=200_000,
                  capabilities=["json", "tools", "vision", "code", "reasoning"], quality=0.9, latency_ms=2000),
        ModelSpec(name="p/top", input_price=5.0, output_price=25.0, context_window=200_000,
                  capabilities=["json", "tools", "vision", "code", "reasoning", "long_context"], quality=0.95,
                  latency_ms=4000),
    ]
)  # fmt: skip
SIMPLE = Route(name="simple", models=["p/nano", "p/mini"], references=["s"], distance_threshold=0.5)
EXPERT = Route(name="expert", models=["p/big", "p/top"], references=["e"], distance_threshold=0.5)
MEDICAL = Route(name="medical", references=["m"], distance_threshold=0.5, floor=Floor(min_route="expert"))
ROUTES = [SIMPLE, EXPERT, MEDICAL]


def inp(strategy: Strategy = Strategy.semantic, **kw) -> PolicyInput:
    kw.setdefault("constraints", Constraints(output_tokens=1000))
    kw.setdefault("prompt_tokens", 1000)
    return PolicyInput(routes=ROUTES, catalog=CATALOG, config=RoutingConfig(), strategy=strategy, **kw)


def matched(*routes: Route) -> list[Candidate]:
    return [Candidate(route, 0.1 * (i + 1), 0.1 * (i + 1)) for i, route in enumerate(routes)]


def test_semantic_takes_the_matched_routes_first_candidate_and_lists_the_rest_as_fallbacks():
    d = decide(matched(SIMPLE), [], inp())
    assert (d.model, d.route, d.strategy) == ("p/nano", "simple", Strategy.semantic)
    # Then the route's other candidate, then the tiers above (escalation before nothing).
    assert d.fallbacks == ["p/mini", "p/big", "p/top"]
    assert d.estimated_cost == pytest.approx((1000 * 0.1 + 1000 * 0.4) / 1e6)


def test_groups_escalate_upward_before_they_degrade():
    d = decide(matched(EXPERT), [], inp())
    assert [c.model for c in d.candidates] == ["p/big", "p/top", "p/nano", "p/mini"]


def test_cost_strategy_picks_the_cheapest_candidate_of_the_matched_route():
    d = decide(matched(EXPERT), [], inp(Strategy.cost))
    assert d.model == "p/big" and d.fallbacks[0] == "p/top"
    assert d.candidates[0].score == pytest.approx(-(3.0 + 15.0) / 1000)


def test_latency_strategy_prefers_live_statistics_over_the_catalog():
    live = {"p/big": ModelStats(latency_ms=9000.0), "p/top": ModelStats(latency_ms=800.0)}
    assert decide(matched(EXPERT), [], inp(Strategy.latency)).model == "p/big"  # catalog: 2000 < 4000
    assert decide(matched(EXPERT), [], inp(Strategy.latency, stats=live)).model == "p/top"


def test_quality_strategy_uses_the_prior_and_breaks_ties_toward_the_cheaper_model():
    assert decide(matched(EXPERT), [], inp(Strategy.quality)).model == "p/top"
    tied = [ModelChoice(model="a", quality=0.8, cost=2.0), ModelChoice(model="b", quality=0.8, cost=1.0)]
    assert [c.model for c in order(Strategy.quality, tied)] == ["b", "a"]


def test_balanced_score_is_the_documented_weighted_sum():
    choices = [
        ModelChoice(model="a", quality=0.9, cost=4.0, latency_ms=1000.0),
        ModelChoice(model="b", quality=0.6, cost=1.0, latency_ms=500.0),
    ]
    ranked = order(Strategy.balanced, choices, balance=BalanceWeights(quality=0.5, cost=0.3, latency=0.2))
    scores = {c.model: c.score for c in ranked}
    assert scores["a"] == pytest.approx(0.5 * 0.9 - 0.3 * 1.0 - 0.2 * 1.0)
    assert scores["b"] == pytest.approx(0.5 * 0.6 - 0.3 * 0.25 - 0.2 * 0.5)
    assert ranked[0].model == "b"


def test_round_robin_rotates_the_listed_order_by_the_shared_position():
    firsts = [decide(matched(SIMPLE), [], inp(Strategy.round_robin, rr_position=p)).model for p in range(4)]
    assert firsts == ["p/nano", "p/mini", "p/nano", "p/mini"]


def test_least_loaded_divides_in_flight_requests_by_max_concurrency():
    live = {"p/nano": ModelStats(inflight=5), "p/mini": ModelStats(inflight=1)}
    # nano: 5 / 10 = 0.5 load; mini has no max_concurrency: 1.0 load.
    assert decide(matched(SIMPLE), [], inp(Strategy.least_loaded, stats=live)).model == "p/nano"
    busy = {"p/nano": ModelStats(inflight=20), "p/mini": ModelStats(inflight=1)}
    assert decide(matched(SIMPLE), [], inp(Strategy.least_loaded, stats=busy)).model == "p/mini"


def test_least_loaded_takes_an_idle_model_of_unknown_latency_over_a_busy_one():
    # Latency only breaks ties: an unknown one used to count as a 0.1 load, more than 9 calls in 100.
    catalog = ModelCatalog(models=[ModelSpec(name="p/busy", latency_ms=200, max_concurrency=100),
                                   ModelSpec(name="p/idle", max_concurrency=100)])  # fmt: skip
    pair = Route(name="pair", models=["p/busy", "p/idle"], references=["x"], distance_threshold=0.5)
    policy = PolicyInput(routes=[pair], catalog=catalog, config=RoutingConfig(), strategy=Strategy.least_loaded,
                         stats={"p/busy": ModelStats(inflight=5)})  # fmt: skip
    assert decide(matched(pair), [], policy).model == "p/idle"
    even = PolicyInput(routes=[pair], catalog=catalog, config=RoutingConfig(), strategy=Strategy.least_loaded)
    assert decide(matched(pair), [], even).model == "p/busy"  # equal load: the known, lower latency


def test_max_cost_excludes_dear_and_unpriced_models_with_reasons():
    unpriced = ModelCatalog(models=[*CATALOG.models[:1], ModelSpec(name="p/mini")])
    d = decide(
        matched(SIMPLE),
        [],
        PolicyInput(
            routes=[SIMPLE],
            catalog=unpriced,
            config=RoutingConfig(),
            strategy=Strategy.semantic,
            prompt_tokens=1000,
            constraints=Constraints(max_cost=0.001, output_tokens=1000),
        ),
    )
    assert d.model == "p/nano"
    assert [(e.model, e.reason) for e in d.excluded] == [("p/mini", "price unknown, so max_cost cannot be guaranteed")]


def test_capabilities_escalate_to_a_tier_that_has_them():
    d = decide(matched(SIMPLE), [], inp(constraints=Constraints(capabilities=["code"], output_tokens=1000)))
    assert d.model == "p/big" and d.route == "expert"
    assert {e.model: e.reason for e in d.excluded} == {"p/nano": "lacks code", "p/mini": "lacks code"}


def test_context_window_is_checked_against_the_estimated_prompt_and_answer():
    d = decide(matched(SIMPLE), [], inp(constraints=Constraints(output_tokens=1000), prompt_tokens=10_000))
    assert d.model == "p/mini"
    assert "context window 8,000 < 11,000 tokens needed" in d.excluded[0].reason


def test_n_answers_are_each_billed_but_the_context_need_is_one_answers():
    d = decide(matched(SIMPLE), [], inp(constraints=Constraints(output_tokens=3000), prompt_tokens=4000, choices=3))
    assert d.model == "p/nano"  # 4,000 + 3,000 fit its 8,000: not 4,000 + 9,000
    assert d.estimated_cost == pytest.approx((4000 * 0.1 + 3 * 3000 * 0.4) / 1e6)  # the prompt once, three answers


def test_a_learned_cost_of_one_answer_counts_for_each_of_n_answers():
    """A model without prices costs what similar requests cost it: one answer's. With n=10 it stayed
    at one answer's cost: the cost strategy took it over a priced model ten answers had made dearer,
    and max_cost let it through."""
    catalog = ModelCatalog(models=[*CATALOG, ModelSpec(name="p/own")])
    own = Route(name="own", models=["p/own", "p/nano"], references=["o"], distance_threshold=0.5)
    pred = prediction({"p/own": 0.8, "p/nano": 0.8}, cost={"p/own": 0.001})

    def cost_pick(choices: int) -> tuple[str | None, float | None]:
        d = decide(matched(own), [], PolicyInput(routes=[own], catalog=catalog, config=RoutingConfig(),
                                                 strategy=Strategy.cost, prompt_tokens=1000, choices=choices,
                                                 constraints=Constraints(output_tokens=1000, max_cost=0.005),
                                                 prediction=pred))  # fmt: skip
        return d.model, {c.model: c.cost for c in d.candidates}.get("p/own")

    assert cost_pick(1) == ("p/nano", pytest.approx(0.001))  # nano: $0.0005 for one answer
    assert cost_pick(4) == ("p/nano", pytest.approx(0.004))  # nano: $0.0017
    with pytest.raises(NoEligibleModelError, match=r"p/own: estimated \$0\.02 > max_cost"):
        cost_pick(20)  # nano $0.0081 and own $0.02: neither fits
    # Outcomes without costs (quality only, the common case) leave its cost unknown, whatever n.
    unknown = prediction({"p/own": 0.8, "p/nano": 0.8})
    for choices in (1, 3):
        d = decide(matched(own), [], PolicyInput(routes=[own], catalog=catalog, config=RoutingConfig(),
                                                 strategy=Strategy.learned, prompt_tokens=1000, choices=choices,
                                                 prediction=unknown))  # fmt: skip
        assert {c.model: c.cost for c in d.candidates}["p/own"] is None


def test_min_quality_and_max_latency():
    d = decide(matched(SIMPLE), [], inp(constraints=Constraints(min_quality=0.8, max_latency_ms=3000, output_tokens=1)))
    assert d.model == "p/big"
    reasons = {e.model: e.reason for e in d.excluded}
    assert "expected quality 0.500 < min_quality 0.8" in reasons["p/nano"]
    assert "expected latency 4000 ms > max_latency_ms 3000" in reasons["p/top"]


def test_everything_excluded_names_each_model_and_why():
    with pytest.raises(NoEligibleModelError) as caught:
        decide(matched(SIMPLE), [], inp(constraints=Constraints(max_cost=0.0000001, output_tokens=1000)))
    error = caught.value
    assert {e.model for e in error.excluded} == {"p/nano", "p/mini", "p/big", "p/top"}
    assert "p/nano: estimated $0.0005 > max_cost $1e-07" in str(error)
    assert error.route == SIMPLE.name  # the request matched it; the policy then excluded every model


def test_best_effort_relaxes_latency_then_cost_then_quality_but_never_capabilities():
    strict = Constraints(max_latency_ms=100, max_cost=0.0000001, output_tokens=1000, best_effort=True)
    d = decide(matched(SIMPLE), [], inp(constraints=strict))
    assert d.relaxed == ["max_latency_ms", "max_cost"] and d.model == "p/nano"
    impossible = Constraints(capabilities=["long_context"], max_cost=0.0000001, best_effort=True, output_tokens=1000)
    d = decide(matched(SIMPLE), [], inp(constraints=impossible))
    assert d.model == "p/top" and d.relaxed == ["max_cost"]
    with pytest.raises(NoEligibleModelError):
        decide(matched(SIMPLE), [], inp(constraints=impossible, unavailable={"p/top": "circuit open"}))


def test_unknown_capability_is_refused_at_validation():
    with pytest.raises(ValueError, match="capabilities"):
        Constraints(capabilities=["telepathy"])


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
IMAGE_PART = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
EVERY_CAPABILITY = list(Capability)


@pytest.mark.parametrize(
    ("messages", "params", "needed"),
    [
        ([{"role": "user", "content": "hi"}], {}, []),
        ([{"role": "user", "content": "hi"}], {"tools": [TOOL]}, [Capability.tools]),
        ([{"role": "user", "content": "hi"}], {"tools": []}, []),  # an empty list asks for nothing
        ([{"role": "user", "content": "hi"}], {"functions": [TOOL["function"]]}, [Capability.tools]),
        (  # a conversation that already went through a tool call goes on with tools
            [
                {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function"}]},
                {"role": "tool", "tool_call_id": "1", "content": "18 C"},
            ],
            {},
            [Capability.tools],
        ),
        ([{"role": "user", "content": [{"type": "text", "text": "this?"}, IMAGE_PART]}], {}, [Capability.vision]),
        ([{"role": "user", "content": [{"type": "text", "text": "no image"}]}], {}, []),
        ([{"role": "user", "content": "hi"}], {"response_format": {"type": "json_object"}}, [Capability.json]),
        ([{"role": "user", "content": "hi"}], {"response_format": {"type": "json_schema"}}, [Capability.json]),
        ([{"role": "user", "content": "hi"}], {"response_format": {"type": "text"}}, []),
        (
            [{"role": "user", "content": [IMAGE_PART, {"type": "text", "text": "all three"}]}],
            {"tools": [TOOL], "response_format": {"type": "json_object"}},
            [Capability.tools, Capability.vision, Capability.json],
        ),
    ],
)
def test_a_chat_request_implies_the_capabilities_its_body_uses(messages, params, needed):
    assert implied_capabilities(messages, params, EVERY_CAPABILITY) == needed


def test_a_capability_no_catalog_model_lists_is_not_implied():
    """A catalog that never mentions tools says nothing about which models have them: excluding every
    model would refuse requests any of them may serve."""
    asked = [{"role": "user", "content": [{"type": "text", "text": "this?"}, IMAGE_PART]}]
    catalog = ModelCatalog(models=[ModelSpec(name="a/x", capabilities=["vision"]), ModelSpec(name="a/y")])
    assert catalog.offered == {Capability.vision}
    assert implied_capabilities(asked, {"tools": [TOOL]}, catalog.offered) == [Capability.vision]
    assert implied_capabilities(asked, {"tools": [TOOL]}, ModelCatalog().offered) == []


def test_an_implied_capability_moves_the_choice_to_a_model_that_lists_it():
    needs = Constraints(output_tokens=1000, capabilities=implied_capabilities([], {"tools": [TOOL]}, CATALOG.offered))
    assert decide(matched(SIMPLE), [], inp(constraints=needs)).model == "p/mini"  # nano lists json only


def test_open_breakers_exclude_a_model_and_the_fallback_answers():
    d = decide(matched(SIMPLE), [], inp(unavailable={"p/nano": "circuit open"}))
    assert d.model == "p/mini" and d.excluded[0].reason == "circuit open"


def test_a_floor_holds_whatever_the_tier_says():
    d = decide(matched(SIMPLE), [MEDICAL], inp())
    assert d.model == "p/big" and d.floors == ["medical"]
    assert {e.model for e in d.excluded} == {"p/nano", "p/mini"}
    assert "below the floor of route 'medical'" in d.excluded[0].reason


def test_a_floor_alone_answers_an_unmatched_request_with_its_tier():
    d = decide([], [MEDICAL], inp())
    assert (d.model, d.route) == ("p/big", "expert")


def test_a_quality_floor_uses_the_catalog_prior():
    careful = Route(name="legal", references=["l"], distance_threshold=0.5, floor=Floor(min_quality=0.92))
    d = decide(matched(SIMPLE), [careful], PolicyInput(
        routes=[SIMPLE, EXPERT, careful], catalog=CATALOG, config=RoutingConfig(), strategy=Strategy.cost,
        prompt_tokens=10,
    ))  # fmt: skip
    assert d.model == "p/top"


def test_nothing_matched_and_no_default_means_no_model():
    d = decide([], [], inp())
    assert d.model is None and d.candidates == []


def test_a_route_without_models_answers_with_its_name_only():
    intent = Route(name="smalltalk", references=["hi"], distance_threshold=0.5)
    d = decide(matched(intent), [], PolicyInput(routes=[intent], catalog=CATALOG, config=RoutingConfig(),
                                                strategy=Strategy.semantic))  # fmt: skip
    assert (d.model, d.route) == (None, "smalltalk")


def prediction(quality: dict[str, float], support: float = 5.0, cost: dict[str, float] | None = None) -> Prediction:
    return Prediction(
        support=support,
        models={m: ModelEstimate(q, support, (cost or {}).get(m), None) for m, q in quality.items()},
    )


def test_learned_picks_by_utility_over_every_model_once_the_memory_has_support():
    pred = prediction({"p/nano": 0.2, "p/mini": 0.9, "p/big": 0.92, "p/top": 0.93})
    config = RoutingConfig(cost_weight=0.3)
    d = decide(matched(SIMPLE), [], PolicyInput(routes=ROUTES, catalog=CATALOG, config=config,
                                                strategy=Strategy.learned, prompt_tokens=1000,
                                                constraints=Constraints(output_tokens=1000), prediction=pred))  # fmt: skip
    assert d.learned and d.model == "p/mini"
    # utility = 0.7 * q - 0.3 * cost / max_cost, over all four models
    costs = {c.model: c.cost for c in d.candidates}
    top = max(costs.values())
    for c in d.candidates:
        assert c.score == pytest.approx(0.7 * c.quality - 0.3 * costs[c.model] / top)
    assert [c.score for c in d.candidates] == sorted((c.score for c in d.candidates), reverse=True)


def test_a_model_the_memory_never_saw_is_expected_no_better_than_the_tier_routers_pick():
    def learned(nano: float) -> str:
        # Only nano has outcomes (one feedback, say); the others stand on their catalog quality alone.
        pred = Prediction(support=5.0, models={
            "p/nano": ModelEstimate(nano, 5.0, None, None),
            **{m: ModelEstimate(q, 0.0, None, None, observed=False)
               for m, q in (("p/mini", 0.7), ("p/big", 0.9), ("p/top", 0.95))},
        })  # fmt: skip
        return decide(matched(SIMPLE), [], inp(Strategy.learned, prediction=pred, min_support=1.0)).model

    assert learned(0.6) == "p/nano"  # nano does well here: no jump to a model rated higher on paper
    assert learned(0.0) == "p/mini"  # nano fails here: the cheapest model not known to fail takes over


def test_a_good_rating_of_the_tier_pick_keeps_it_ahead_of_models_nobody_observed_however_cheap():
    def learned(big: float) -> list[str]:
        # Only big (the expert tier's pick) was rated near this request; mini is far cheaper, and its
        # catalog quality (0.7) would win on utility against big's 0.9 at cost_weight 0.3.
        pred = Prediction(support=1.0, models={
            "p/big": ModelEstimate(big, 1.0, None, None),
            **{m: ModelEstimate(q, 0.0, None, None, observed=False)
               for m, q in (("p/nano", 0.5), ("p/mini", 0.7), ("p/top", 0.95))},
        })  # fmt: skip
        d = decide(matched(EXPERT), [], inp(Strategy.learned, prediction=pred, min_support=1.0))
        assert d.learned
        return [d.model, *d.fallbacks]

    # Rated well: the pick stays first; the models nobody saw answer here follow it, in utility order.
    assert learned(0.92) == ["p/big", "p/mini", "p/nano", "p/top"]
    # Rated badly: it falls short of its own catalog quality, and the cheapest good bet takes over.
    assert learned(0.3)[0] == "p/mini"
    # Utility alone (before the rule) would have put mini first even after the good rating.
    scores = {c.model: c.score for c in decide(matched(EXPERT), [], inp(Strategy.learned, min_support=1.0,
              prediction=Prediction(support=1.0, models={"p/big": ModelEstimate(0.92, 1.0, None, None)}))).candidates}  # fmt: skip
    assert scores["p/mini"] > scores["p/big"]


def test_learned_qualities_give_no_quality_to_unobserved_models_while_the_tier_pick_holds():
    pred = Prediction(support=1.0, models={
        "p/big": ModelEstimate(0.92, 1.0, None, None),
        "p/mini": ModelEstimate(0.7, 0.0, None, None, observed=False),
    })  # fmt: skip
    # mini is never picked first here, but routing still divides cost by a scale it is part of.
    assert learned_qualities(matched(EXPERT), [], inp(Strategy.learned, prediction=pred, min_support=1.0)) == {
        "p/big": 0.92,
        "p/mini": None,
    }
    failing = Prediction(support=1.0, models={**pred.models, "p/big": ModelEstimate(0.3, 1.0, None, None)})
    weighed = learned_qualities(matched(EXPERT), [], inp(Strategy.learned, prediction=failing, min_support=1.0))
    assert weighed == {"p/big": 0.3, "p/mini": 0.7}


def test_a_model_observed_only_far_from_the_request_is_capped_as_one_never_observed():
    # One excellent feedback for top on an unrelated request: its prior (mean in memory) is 1.0, but
    # nothing near this request says so, and nano did well enough here.
    pred = Prediction(support=5.0, models={
        "p/nano": ModelEstimate(0.6, 5.0, None, None),
        "p/top": ModelEstimate(1.0, 0.0, None, None),
        **{m: ModelEstimate(q, 0.0, None, None, observed=False) for m, q in (("p/mini", 0.7), ("p/big", 0.9))},
    })  # fmt: skip
    d = decide(matched(SIMPLE), [], inp(Strategy.learned, prediction=pred, min_support=1.0))
    assert d.model == "p/nano"
    assert {c.model: c.quality for c in d.candidates}["p/top"] == 0.5  # the tier pick's catalog quality


def test_one_good_rating_of_a_dear_model_does_not_hand_it_a_whole_region():
    # top was rated 1.0 once, on a request like this one: its catalog prior (0.95) is what mostly
    # stands behind its prediction, and that part is held to the tier pick's quality (nano: 0.5).
    prior = (1.0 + 16 * 0.95) / 17
    top = ModelEstimate((1.0 * 1.0 + 16 * prior) / 17, 1.0, None, None, prior=prior, shrinkage=16.0)
    pred = Prediction(support=1.0, models={
        "p/top": top,
        **{m: ModelEstimate(q, 0.0, None, None, observed=False)
           for m, q in (("p/nano", 0.5), ("p/mini", 0.7), ("p/big", 0.9))},
    })  # fmt: skip
    d = decide(matched(SIMPLE), [], inp(Strategy.learned, prediction=pred, min_support=1.0))
    quality = {c.model: c.quality for c in d.candidates}
    assert d.model == "p/nano"
    assert quality["p/top"] == pytest.approx((1.0 + 16 * 0.5) / 17)  # its one rating, and the capped prior
    # As ratings near the request accumulate, they take over: twenty 1.0s leave little of the prior.
    many = ModelEstimate((20.0 + 16 * prior) / 36, 20.0, None, None, prior=prior, shrinkage=16.0)
    pred = Prediction(support=20.0, models={**pred.models, "p/top": many})
    d = decide(matched(SIMPLE), [], inp(Strategy.learned, prediction=pred, min_support=1.0))
    assert {c.model: c.quality for c in d.candidates}["p/top"] == pytest.approx((20.0 + 16 * 0.5) / 36)


def test_learned_qualities_are_the_numbers_the_learned_choice_weighs():
    pred = Prediction(support=5.0, models={
        "p/nano": ModelEstimate(0.4, 5.0, None, None),
        "p/mini": ModelEstimate(0.7, 0.0, None, None, observed=False),
        "p/top": ModelEstimate(0.95, 0.0, None, None, observed=False),
    })  # fmt: skip
    weighed = learned_qualities(matched(SIMPLE), [], inp(Strategy.learned, prediction=pred, min_support=1.0))
    # Unobserved models are capped at the tier pick's catalog quality (nano: 0.5); the observed one is not.
    assert weighed == {"p/nano": 0.4, "p/mini": 0.5, "p/top": 0.5}
    d = decide(matched(SIMPLE), [], inp(Strategy.learned, prediction=pred, min_support=1.0))
    assert {c.model: c.quality for c in d.candidates if c.model in weighed} == weighed


def test_learned_qualities_leave_out_the_models_a_matched_floor_excludes():
    """Calibration scores with these: a model the floor keeps from the request must not be weighed for it."""
    pred = prediction({"p/nano": 1.0, "p/mini": 0.9, "p/big": 0.2, "p/top": 0.1})
    floored = inp(Strategy.learned, prediction=pred, min_support=1.0)
    weighed = learned_qualities(matched(SIMPLE), [MEDICAL], floored)
    assert weighed == {"p/big": 0.2, "p/top": 0.1}  # the medical floor's min_route is expert
    d = decide(matched(SIMPLE), [MEDICAL], floored)
    assert {c.model for c in d.candidates} == set(weighed) and d.model == "p/big"
    assert {e.model for e in d.excluded} == {"p/nano", "p/mini"}
    # A quality floor excludes by catalog quality, and a small context window by the request's size, as routing does.
    strict = Route(name="strict", references=["x"], distance_threshold=0.5, floor=Floor(min_quality=0.8))
    assert set(learned_qualities(matched(SIMPLE), [strict], floored)) == {"p/big", "p/top"}
    long_prompt = inp(Strategy.learned, prediction=pred, min_support=1.0, prompt_tokens=50_000)
    assert set(learned_qualities(matched(SIMPLE), [], long_prompt)) == {"p/mini", "p/big", "p/top"}


def test_learned_without_support_is_exactly_the_tier_decision():
    weak = prediction({"p/nano": 0.0, "p/mini": 1.0}, support=0.5)
    cold = decide(matched(SIMPLE), [], inp(Strategy.learned, prediction=weak, min_support=1.0))
    tier = decide(matched(SIMPLE), [], inp(Strategy.semantic))
    assert not cold.learned and cold.model == tier.model and cold.fallbacks == tier.fallbacks


@pytest.mark.parametrize("strategy", [Strategy.quality, Strategy.balanced])
def test_quality_strategies_and_min_quality_read_the_learned_prediction_where_it_has_support(strategy):
    # The catalog says mini (0.7) beats nano (0.5); the memory says the opposite on requests like this one.
    pred = prediction({"p/nano": 1.0, "p/mini": 0.0})
    assert decide(matched(SIMPLE), [], inp(strategy, prediction=pred, min_support=1.0)).model == "p/nano"
    d = decide(matched(SIMPLE), [], inp(Strategy.semantic, prediction=pred, min_support=1.0,
                                        constraints=Constraints(output_tokens=1000, min_quality=0.8)))  # fmt: skip
    assert d.model == "p/nano" and "p/mini" in {e.model for e in d.excluded}
    # Without enough support the catalog's priors stand.
    cold = decide(matched(SIMPLE), [], inp(strategy, prediction=pred, min_support=10.0))
    assert {c.model: c.quality for c in cold.candidates}["p/mini"] == 0.7


def test_the_knob_sweeps_from_best_quality_to_cheapest():
    pred = prediction({"p/nano": 0.2, "p/mini": 0.5, "p/big": 0.8, "p/top": 0.9})

    def pick(w: float) -> str:
        return decide(matched(SIMPLE), [], PolicyInput(routes=ROUTES, catalog=CATALOG, config=RoutingConfig(cost_weight=w),
                                                       strategy=Strategy.learned, prompt_tokens=1000,
                                                       prediction=pred)).model  # fmt: skip

    assert pick(0.0) == "p/top" and pick(1.0) == "p/nano"


def test_unit_free_normalisation_and_utility_with_unknown_costs():
    assert unit_free([1.0, 4.0, None]) == [0.25, 1.0, 1.0]
    assert unit_free([None, None]) == [0.0, 0.0]
    u = learned_utility([[0.5, 0.5]], [[1.0, float("nan")]], 0.5)
    assert u.tolist() == [[0.25 - 0.5, 0.25 - 0.5]]


def test_route_models_missing_from_the_catalog_are_priced_from_the_route_cost():
    legacy = Route(name="x", model="m/legacy", cost=2.0, references=["x"], distance_threshold=0.5)
    spec = effective_catalog(ModelCatalog(), [legacy]).get("m/legacy")
    assert (spec.input_price, spec.output_price, spec.capabilities) == (2.0, 2.0, [])


def test_a_model_several_routes_list_has_one_price_whatever_their_order():
    greeting = Route(name="greeting", models=["m/nano", "m/big"], cost=0.1, references=["hi"], distance_threshold=0.5)
    code = Route(name="code", model="m/big", cost=2.0, references=["x"], distance_threshold=0.5)
    chat = Route(name="chat", models=["m/nano"], cost=0.3, references=["y"], distance_threshold=0.5)
    for routes in ([greeting, code, chat], [chat, code, greeting]):
        catalog = effective_catalog(ModelCatalog(), routes)
        assert catalog.get("m/big").input_price == 2.0  # its own route's cost, not a route that merely lists it
        assert catalog.get("m/nano").input_price == 0.3  # first model of both: the higher cost


def test_capability_enum_lists_the_documented_capabilities():
    assert {c.value for c in Capability} == {"code", "vision", "tools", "json", "reasoning", "long_context"}


def test_the_tiers_above_are_tried_cheapest_route_cost_first_whatever_their_listed_order():
    # Listed costs 0.1, 1, 10, 5: a request that needs code escalates to the 5 tier, not the 10 one.
    costs = {"t1": 0.1, "t2": 1.0, "t3": 10.0, "t4": 5.0}
    models = {"t1": "p/nano", "t2": "p/mini", "t3": "p/top", "t4": "p/big"}
    tiers = [Route(name=n, model=models[n], cost=c, references=[n], distance_threshold=0.5) for n, c in costs.items()]
    policy = PolicyInput(routes=tiers, catalog=CATALOG, config=RoutingConfig(), strategy=Strategy.semantic,
                         constraints=Constraints(capabilities=["code"]), prompt_tokens=10)  # fmt: skip
    d = decide(matched(tiers[1]), [], policy)
    assert (d.model, d.fallbacks) == ("p/big", ["p/top"])
    # A quality floor on an unmatched request offers every tier, cheapest first too.
    careful = Route(name="legal", references=["l"], distance_threshold=0.5, floor=Floor(min_quality=0.85))
    anywhere = PolicyInput(routes=[*tiers, careful], catalog=CATALOG, config=RoutingConfig(), strategy=Strategy.semantic,
                           prompt_tokens=10)  # fmt: skip
    assert decide([], [careful], anywhere).model == "p/big"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input_price", True),
        ("output_price", "2"),
        ("context_window", True),
        ("context_window", "128000"),
        ("quality", True),
        ("quality", "0.9"),
        ("latency_ms", False),
        ("max_concurrency", True),
    ],
)
def test_a_model_spec_refuses_a_bool_or_text_for_a_number_naming_the_field_and_the_value(field, value):
    with pytest.raises(ValueError, match=rf"{field} must be a number, got {re.escape(repr(value))}"):
        ModelSpec(name="p/m", **{field: value})


def test_a_model_spec_refuses_a_numpy_bool_as_it_refuses_true():
    import numpy as np

    with pytest.raises(ValueError, match=r"input_price must be a number, got (np\.True_|True)"):
        ModelSpec(name="p/m", input_price=np.bool_(True))


def test_a_model_spec_takes_numbers_of_any_kind():
    import numpy as np

    spec = ModelSpec(name="p/m", input_price=1, output_price=np.float32(2.5), context_window=np.int64(8000),
                     quality=np.float64(0.5), latency_ms=300, max_concurrency=4)  # fmt: skip
    assert (spec.input_price, spec.output_price, spec.context_window, spec.quality) == (1.0, 2.5, 8000, 0.5)


def test_a_catalog_with_a_price_given_as_text_is_refused_with_where_and_what(tmp_path):
    from redisvl_llmrouter.errors import ConfigError

    with pytest.raises(ConfigError, match=r"models\.0\.input_price: .*must be a number, got True"):
        ModelCatalog.parse([{"name": "p/m", "input_price": True, "output_price": 1}])
    path = tmp_path / "catalog.yaml"
    path.write_text('models:\n  - {name: p/m, input_price: "0.10", output_price: 0.40}\n')
    with pytest.raises(ConfigError, match=r"models\.0\.input_price: .*must be a number, got '0\.10'"):
        ModelCatalog.from_file(path)


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".yaml", "models:\n  - {name: p/m, input_price: 1, output_price: 4e-1, context_window: 8000, quality: 1}\n"),
        (".json", '{"models": [{"name": "p/m", "input_price": 1, "output_price": 0.4, "context_window": 8000, '
                  '"quality": 1}]}'),
    ],
)  # fmt: skip
def test_catalog_files_with_whole_numbers_for_prices_still_load(tmp_path, suffix, text):
    path = tmp_path / f"catalog{suffix}"
    path.write_text(text)
    spec = ModelCatalog.from_file(path).get("p/m")
    assert (spec.input_price, spec.output_price, spec.context_window, spec.quality) == (1.0, 0.4, 8000, 1.0)


def test_the_shipped_catalogs_still_validate():
    from pathlib import Path

    from redisvl_llmrouter.policy.catalog import read_data_file
    from redisvl_llmrouter.pretrained import parse

    root = Path(__file__).resolve().parents[2] / "pretrained"
    assert len(ModelCatalog.parse(read_data_file(root / "default.source.yaml", "config")["catalog"])) > 0
    assert len(parse(read_data_file(root / "default.json", "config")).catalog) > 0


def test_a_constraint_refuses_a_numpy_bool_as_it_refuses_true():
    import numpy as np

    with pytest.raises(ValueError, match=r"must be a number, got (np\.True_|True)"):
        Constraints(max_cost=np.bool_(True))
    with pytest.raises(ValueError, match=r"must be a number, got np\.False_"):
        Constraints(min_context=np.bool_(False))
    assert Constraints(max_cost=np.float32(0.5), min_context=np.int64(10)).model_dump(
        include={"max_cost", "min_context"}
    ) == {"max_cost": 0.5, "min_context": 10}


def test_a_finite_number_is_a_real_non_bool_number_a_float_holds():
    from decimal import Decimal

    import numpy as np

    from redisvl_llmrouter.policy.catalog import finite_number

    for yes in (0, -3, 1.5, np.float32(0.5), np.int64(7), Decimal("0.25"), 10**300):
        assert finite_number(yes), yes
    for no in (True, np.True_, "1", None, float("nan"), float("inf"), 10**400, Decimal("sNaN"), Decimal("1e400")):
        assert not finite_number(no), no


def test_token_counts_are_bounded_so_costs_stay_finite_and_a_stored_config_exact():
    from pydantic import ValidationError

    from redisvl_llmrouter.policy.catalog import MAX_TOKENS

    assert Constraints(output_tokens=MAX_TOKENS).output_tokens == MAX_TOKENS
    for make in (
        lambda n: Constraints(output_tokens=n),
        lambda n: Constraints(min_context=n),
        lambda n: ModelSpec(name="m", context_window=n),
        lambda n: RoutingConfig(expected_output_tokens=n),
    ):
        with pytest.raises(ValidationError, match="less than or equal"):
            make(MAX_TOKENS + 1)


def test_min_quality_judges_a_model_nobody_observed_by_its_prediction_not_by_the_ranking_cap():
    # One good rating of nano near the request made a request every other strategy serves fail: each model
    # not observed nearby was held to nano's catalog quality (0.5), under min_quality 0.6, top's 0.95 too.
    pred = Prediction(support=1.0, models={
        "p/nano": ModelEstimate(0.55, 1.0, None, None),
        **{m: ModelEstimate(q, 0.0, None, None, observed=False)
           for m, q in (("p/mini", 0.7), ("p/big", 0.9), ("p/top", 0.95))},
    })  # fmt: skip
    strict = Constraints(output_tokens=1000, min_quality=0.6)
    d = decide(matched(SIMPLE), [], inp(Strategy.learned, prediction=pred, min_support=1.0, constraints=strict))
    assert d.model == "p/mini" and [e.model for e in d.excluded] == ["p/nano"]
    weighed = learned_qualities(matched(SIMPLE), [], inp(Strategy.learned, prediction=pred, min_support=1.0,
                                                          constraints=strict))  # fmt: skip
    assert set(weighed) == {"p/mini", "p/big", "p/top"}  # calibration weighs what routing may choose


@pytest.mark.parametrize("strategy", [Strategy.balanced, Strategy.learned])
def test_a_cost_estimate_that_overflows_ranks_its_model_last_not_first(strategy):
    # A price the catalog accepts times a huge prompt is inf: inf / inf scored NaN, and NaN sorted first.
    catalog = ModelCatalog(models=[
        ModelSpec(name="p/dear", input_price=1e300, output_price=1e300, quality=0.5, latency_ms=900),
        ModelSpec(name="p/cheap", input_price=1.0, output_price=1.0, quality=0.9, latency_ms=100),
    ])  # fmt: skip
    route = Route(name="r", models=["p/dear", "p/cheap"], references=["r"], distance_threshold=0.5)
    pred = prediction({"p/dear": 0.5, "p/cheap": 0.9})
    d = decide(matched(route), [], PolicyInput(routes=[route], catalog=catalog, config=RoutingConfig(),
                                               strategy=strategy, prompt_tokens=10**9, prediction=pred))  # fmt: skip
    assert d.model == "p/cheap"


def test_best_effort_keeps_a_limit_the_qualifying_models_meet_once_a_later_one_is_dropped():
    # max_latency_ms went first, on the way to dropping an unreachable max_cost, and the slowest model won.
    catalog = ModelCatalog(models=[
        ModelSpec(name="p/slow", input_price=1.0, output_price=1.0, quality=0.9, latency_ms=5000),
        ModelSpec(name="p/fast", input_price=2.0, output_price=2.0, quality=0.9, latency_ms=100),
    ])  # fmt: skip
    route = Route(name="r", models=["p/slow", "p/fast"], references=["r"], distance_threshold=0.5)
    limits = Constraints(max_latency_ms=500, max_cost=1e-12, output_tokens=100, best_effort=True)
    d = decide(matched(route), [], PolicyInput(routes=[route], catalog=catalog, config=RoutingConfig(),
                                               strategy=Strategy.cost, prompt_tokens=10, constraints=limits))  # fmt: skip
    assert d.model == "p/fast" and d.relaxed == ["max_cost"]
    assert [e.model for e in d.excluded] == ["p/slow"]
    # Several dropped: money is put back before speed, as speed is given up first (p/slow is cheap here).
    dear_fast = ModelCatalog(models=[
        ModelSpec(name="p/fast", input_price=100.0, output_price=100.0, quality=0.5, latency_ms=100),
        ModelSpec(name="p/slow", input_price=0.1, output_price=0.1, quality=0.5, latency_ms=5000),
    ])  # fmt: skip
    limits = Constraints(max_latency_ms=500, max_cost=0.001, min_quality=0.99, output_tokens=100, best_effort=True)
    d = decide(matched(route), [], PolicyInput(routes=[route], catalog=dear_fast, config=RoutingConfig(),
                                               strategy=Strategy.cost, prompt_tokens=10, constraints=limits))  # fmt: skip
    assert d.model == "p/slow" and d.relaxed == ["max_latency_ms", "min_quality"]


def test_learned_qualities_weigh_nothing_where_routing_answers_with_no_model():
    # No route matched and no default route: routing returns no model, and calibration must not score the
    # request (it weighed every predicted model there, uncapped).
    pred = prediction({"p/nano": 0.9, "p/top": 0.5})
    assert decide([], [], inp(Strategy.learned, prediction=pred, min_support=1.0)).model is None
    assert learned_qualities([], [], inp(Strategy.learned, prediction=pred, min_support=1.0)) == {}


def test_an_overflowing_cost_is_never_the_learned_choice_in_routing_sweeps_or_calibration():
    import numpy as np

    from redisvl_llmrouter.learning.calibration import choices
    from redisvl_llmrouter.policy.strategies import learned_utility

    quality, cost = np.array([[0.5, 0.9]]), np.array([[np.inf, 1e-3]])
    assert learned_utility(quality, cost, 0.3)[0, 0] == -np.inf
    assert choices(quality, cost, 0.3).tolist() == [1]

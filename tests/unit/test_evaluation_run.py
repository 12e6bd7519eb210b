"""Mapping routes to dataset models and replaying choices: pure parts of the evaluation run."""

from __future__ import annotations

import pytest

from redisvl_llmrouter import ConfigError, Route, RoutingConfig, evaluation
from redisvl_llmrouter.evaluation_run import (
    _print_summary,
    _warn_single_model_routes,
    choices_for,
    concat_outcomes,
    route_candidates,
    route_model_map,
)
from redisvl_llmrouter.ranking import RouteDistances

ROUTES = [
    Route(name="simple", model="a", cost=1, references=["x"], distance_threshold=0.5),
    Route(name="expert", model="openai/gpt-x", cost=10, references=["y"], distance_threshold=0.5),
]


def test_explicit_pairs_then_routes_whose_model_is_in_the_dataset():
    assert route_model_map(ROUTES, ["a", "b"], ["expert=b"]) == {"expert": "b", "simple": "a"}


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["nonsense"], "ROUTE=MODEL"),
        (["ghost=a"], "ROUTE=MODEL"),
        (["expert=zzz"], "not in the dataset"),
        ([], "expert"),
        # The last of two used to win silently; the learned mode already refused it.
        (["expert=a", "expert=b"], "gives route 'expert' twice"),
        # The tier router sends a route to one model: B used to be dropped without a word.
        (["expert=a,b"], "sends route 'expert' to one model"),
    ],
)
def test_bad_maps_are_clear_errors(pairs, message):
    with pytest.raises(ConfigError, match=message):
        route_model_map(ROUTES, ["a", "b"], pairs)


def test_a_map_naming_a_model_the_loader_left_out_says_so():
    # "not in the dataset" sent users looking for a model 24 of the file's 50 rows have.
    for build in (route_model_map, route_candidates):
        with pytest.raises(
            ConfigError, match=r"model\(s\) \['c'\] were left out of the dataset: most of its rows lack"
        ):
            build(ROUTES, ["a", "b"], ["expert=c"], dropped=["c"])


def test_choices_follow_the_ranking_and_fall_back_when_nothing_matches():
    by_name = {r.name: r for r in ROUTES}
    rows = [
        [RouteDistances("simple", (0.3,)), RouteDistances("expert", (0.1,))],
        [RouteDistances("simple", (0.9,))],
    ]
    assert choices_for(rows, by_name, RoutingConfig(), fallback="expert") == ["expert", "expert"]
    cheap_first = RoutingConfig(cost_optimization=True, cost_weight=1.0)
    assert choices_for(rows, by_name, cheap_first, fallback="expert") == ["simple", "expert"]


def test_the_learned_mode_takes_several_models_per_route_and_refuses_a_route_twice():
    assert route_candidates(ROUTES, ["a", "b"], ["expert=b,a"]) == {"expert": ["b", "a"], "simple": ["a"]}
    with pytest.raises(ConfigError, match="gives route 'expert' twice"):
        route_candidates(ROUTES, ["a", "b"], ["expert=a", "expert=b"])


WITHIN = "strategy cost can only choose within a route; with one model per route it equals the tier router"


def test_a_within_route_strategy_on_one_model_per_route_is_a_warning(capsys):
    _warn_single_model_routes(["semantic", "cost", "cost"], {"simple": ["a"], "expert": ["b"]})
    err = capsys.readouterr().err
    assert WITHIN in err and "--map ROUTE=A,B" in err and err.count("\n") == 1
    _warn_single_model_routes(["cost", "quality"], {"simple": ["a"], "expert": ["b"]})
    assert "strategy cost, quality can only choose within a route" in capsys.readouterr().err
    # Nothing to say when a route has a choice, or when only learned and semantic are compared.
    _warn_single_model_routes(["cost"], {"simple": ["a", "b"], "expert": ["b"]})
    _warn_single_model_routes(["learned", "semantic"], {"simple": ["a"], "expert": ["b"]})
    assert capsys.readouterr().err == ""


def two_model_set(name, skipped=0, skipped_for=None):
    return evaluation.OutcomeSet(
        ids=["1", "2"], prompts=["p", "q"], models=["a", "b"], quality=[[0, 1], [1, 1]], cost=[[1, 2], [1, 2]],
        name=name, skipped=skipped, skipped_for=skipped_for or {},
    )  # fmt: skip


def test_the_summary_rounds_cpt_and_says_what_was_skipped(capsys):
    data = two_model_set("s", skipped=2, skipped_for={"b": 2})
    # A sweep whose CPT80 is an unround float (0.67 + 2e-16 in the bug report).
    curve = [evaluation.routing_point(data, [0, 0], knob=0), evaluation.routing_point(data, [0, 1], knob=1)]
    r = evaluation.report(data, curve)
    _print_summary(r)
    out = capsys.readouterr().out
    assert f"CPT50 {r['cpt50']:.3f} CPT80 {r['cpt80']:.3f}" in out and "000000" not in out
    assert out.rstrip().endswith("; skipped 2 rows without outcomes for b")


def test_concatenated_sets_add_up_what_was_skipped():
    both = concat_outcomes([two_model_set("x", 1, {"b": 1}), two_model_set("y", 2, {"a": 1, "b": 1})], "x+y")
    assert both.skipped == 3 and dict(both.skipped_for) == {"a": 1, "b": 2}


def test_concatenated_sets_keep_their_ids_apart_even_when_their_names_are_the_same():
    assert concat_outcomes([two_model_set("x"), two_model_set("y")], "x+y").ids == ["x/1", "x/2", "y/1", "y/2"]
    # Two files named set.jsonl in two folders: "set/1" twice would be one prompt to the folds.
    same = concat_outcomes([two_model_set("set"), two_model_set("set")], "set+set")
    assert same.ids == ["0:set/1", "0:set/2", "1:set/1", "1:set/2"]


def test_the_strategy_table_prints_every_row_at_the_configured_setting(capsys):
    from redisvl_llmrouter.evaluation_run import _print_strategies

    data = two_model_set("s")
    sweep = [evaluation.routing_point(data, [0, 0], knob=0), evaluation.routing_point(data, [1, 1], knob=1)]
    at_config = evaluation.routing_point(data, [0, 0], knob=0.3)
    semantic = evaluation.report(data, sweep)  # its best point (q 1.0) is not where the router is set
    semantic["at_config"] = {"knob": 0.3, "quality": at_config.quality, "cost": at_config.cost, "shares": {}}
    cost = evaluation.report(data, [at_config])
    _print_strategies("s", {"semantic": semantic, "cost": cost})
    out = capsys.readouterr().out
    assert f"  semantic         0.5000   1.00e+00 {semantic['aiq']:>8.4f}" in out
    assert f"  cost             0.5000   1.00e+00 {cost['aiq']:>8.4f}" in out
    assert "at the router's configured settings" in out

"""The policy through the router on a real Redis: strategies, constraints, live statistics shared between
processes, round-robin position, and calibration of the learned knob."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis
from gateway_support import clock_shifted, needs_libfaketime

from redisvl_llmrouter import (
    ConfigError,
    Floor,
    InvalidQueryError,
    LearningConfig,
    ModelCatalog,
    ModelSpec,
    NoEligibleModelError,
    Route,
    RouterExistsError,
    RoutingConfig,
)


# Live statistics belong to models, shared by every router on the Redis, so each test names its own.
def catalog(p: str) -> ModelCatalog:
    return ModelCatalog(
        models=[
            ModelSpec(name=f"{p}/a", input_price=1.0, output_price=1.0, quality=0.6, latency_ms=100,
                      capabilities=["json"], max_concurrency=4),
            ModelSpec(name=f"{p}/b", input_price=4.0, output_price=4.0, quality=0.9, latency_ms=200,
                      capabilities=["json", "vision"]),
        ]
    )  # fmt: skip


def chat_route(p: str) -> list[Route]:
    return [Route(name="chat", models=[f"{p}/a", f"{p}/b"], references=["chat d=0.1"], distance_threshold=0.5)]


def test_models_added_by_two_writers_both_land_and_a_model_there_stays_as_it_is(api, name, table):
    # `learn --add-models` replaced the whole catalog: a second learn's catalog dropped the first's model.
    router = api.create(name=name, routes=chat_route(name), vectorizer=table, catalog=catalog(name))
    stale = api.from_existing(name, vectorizer=table)
    assert router.add_models([f"{name}/new-a"]) == [f"{name}/new-a"]
    assert stale.add_models([f"{name}/new-b", {"name": f"{name}/a", "input_price": 99.0}]) == [f"{name}/new-b"]
    stored = api.from_existing(name, vectorizer=table).catalog
    assert [m.name for m in stored.models] == [f"{name}/a", f"{name}/b", f"{name}/new-a", f"{name}/new-b"]
    assert stored.get(f"{name}/a").input_price == 1.0  # update_catalog changes a model; add_models never does
    with pytest.raises(ConfigError, match="add_models takes a list of models, got str"):
        router.add_models(f"{name}/c")


def test_an_object_opened_before_a_model_was_added_learns_and_takes_feedback_for_it(api, name, table):
    # learn() and feedback() refused the model as unknown until refresh(), though a write follows the stored config.
    router = api.create(name=name, routes=chat_route(name), vectorizer=table, catalog=catalog(name))
    stale = api.from_existing(name, vectorizer=table)
    router.add_models([f"{name}/new"])
    assert stale.learn([{"prompt": "chat d=0.2", "outcomes": {f"{name}/new": {"quality": 1.0}}}]).created == 1
    assert stale.feedback(statement="chat d=0.3", model=f"{name}/new", quality=0.5).created


def test_update_catalog_refuses_none_as_the_other_updates_do(api, name, table):
    router = api.create(name=name, routes=chat_route(name), vectorizer=table, catalog=catalog(name))
    with pytest.raises(ConfigError, match="update_catalog\\(\\) needs a ModelCatalog"):
        router.update_catalog(None)  # it emptied the stored catalog
    assert len(api.from_existing(name, vectorizer=table).catalog.models) == 2


def test_each_strategy_through_the_router(api, name, table):
    router = api.create(name=name, routes=chat_route(name), vectorizer=table, catalog=catalog(name))
    assert router("query", strategy="semantic").model == f"{name}/a"
    assert router("query", strategy="cost").model == f"{name}/a"
    assert router("query", strategy="quality").model == f"{name}/b"
    assert router("query", strategy="latency").model == f"{name}/a"
    # balanced: 0.5*q - 0.3*cost/max - 0.2*latency/max: a = 0.3 - 0.075 - 0.1, b = 0.45 - 0.3 - 0.2
    assert router("query", strategy="balanced").model == f"{name}/a"
    assert [router("query", strategy="round_robin").model for _ in range(3)] == [f"{name}/a", f"{name}/b", f"{name}/a"]
    with pytest.raises(InvalidQueryError, match="Unknown strategy 'fastest'"):
        router("query", strategy="fastest")


def test_round_robin_turns_the_floors_tier_when_only_a_floor_matched(api, name, table):
    # The position read was the floor's tier's, the one advanced none: every call went to its first model.
    routes = [
        Route(name="simple", model=f"{name}/nano", references=["easy d=0.9"], distance_threshold=0.5),
        Route(name="standard", models=[f"{name}/a", f"{name}/b"], references=["hard d=0.9"], distance_threshold=0.5),
        Route(name="medical", references=["doctor d=0.1"], distance_threshold=0.5, floor=Floor(min_route="standard")),
    ]
    router = api.create(name=name, routes=routes, vectorizer=table, catalog=catalog(name))
    picks = [router("query", strategy="round_robin") for _ in range(3)]
    assert [m.model for m in picks] == [f"{name}/a", f"{name}/b", f"{name}/a"]
    assert picks[0].decision.floors == ["medical"] and router.round_robin_position("standard") == 3


def test_prompt_tokens_is_a_whole_count_not_a_flag(api, name, table):
    import numpy as np

    router = api.create(name=name, routes=chat_route(name), vectorizer=table, catalog=catalog(name))
    with pytest.raises(
        InvalidQueryError, match="prompt_tokens must be a whole number from 1 to 1,000,000,000, got True"
    ):
        router("query", prompt_tokens=True)  # was taken as 1 token, and kept as True on the decision
    assert router("query", prompt_tokens=np.int64(1000)).decision.estimated_cost == pytest.approx(
        (1000 * 1.0 + 256 * 1.0) / 1e6
    )


def test_constraints_through_the_router(api, name, table):
    router = api.create(name=name, routes=chat_route(name), vectorizer=table, catalog=catalog(name))
    match = router("query", constraints={"capabilities": ["vision"]})
    assert match.model == f"{name}/b" and match.decision.excluded[0].reason == "lacks vision"
    with pytest.raises(NoEligibleModelError) as caught:
        router("query", constraints={"max_cost": 1e-9})
    assert {e.model for e in caught.value.excluded} == {f"{name}/a", f"{name}/b"}
    relaxed = router("query", constraints={"max_cost": 1e-9, "best_effort": True})
    assert relaxed.model == f"{name}/a" and relaxed.decision.relaxed == ["max_cost"]
    with pytest.raises(InvalidQueryError, match="capabilities"):
        router("query", constraints={"capabilities": ["telepathy"]})
    assert router("query", unavailable={f"{name}/a": "circuit open"}).model == f"{name}/b"


def test_live_statistics_steer_latency_and_load(api, name, table):
    router = api.create(name=name, routes=chat_route(name), vectorizer=table, catalog=catalog(name))
    for _ in range(3):
        router.call_finished(f"{name}/b", success=True, latency_ms=10.0)
    stats = router.live_stats()
    assert stats[f"{name}/b"].latency_ms == pytest.approx(10.0) and stats[f"{name}/b"].successes == 3
    assert router("query", strategy="latency").model == f"{name}/b"  # measured 10 ms beats m/a's catalog 100 ms
    for i in range(5):
        router.call_started(f"{name}/a", f"req-{i}")
    # m/a: 5 in flight / max_concurrency 4 = 1.25; m/b: 0
    assert router("query", strategy="least_loaded").model == f"{name}/b"
    for i in range(5):
        router.call_finished(f"{name}/a", success=False, request_id=f"req-{i}")
    after = router.live_stats([f"{name}/a"])[f"{name}/a"]
    assert (after.inflight, after.failures, after.success_rate) == (0, 5, 0.0)
    # Callers may pass their own statistics instead.
    assert router("query", strategy="latency", stats={f"{name}/a": {"latency_ms": 1.0}}).model == f"{name}/a"


@pytest.mark.parametrize("strategy", ["semantic", "cost", "latency", "learned", "quality", "balanced"])
def test_a_model_priced_only_by_its_outcomes_is_costed_alike_under_every_strategy(api, name, table, strategy):
    # The memory was read only for the quality strategies: max_cost refused the unpriced model under
    # the others and admitted it under these, and the cost strategy took a model 1,000 times dearer.
    unpriced, priced = f"{name}/unpriced", f"{name}/priced"
    router = api.create(
        name=name,
        routes=[Route(name="chat", models=[unpriced, priced], references=["chat d=0.1"], distance_threshold=0.5)],
        vectorizer=table,
        catalog=ModelCatalog(models=[ModelSpec(name=priced, input_price=50.0, output_price=50.0, quality=0.6)]),
        learning=LearningConfig(neighbours=4, radius=2.0, shrinkage=1.0),
    )
    router.learn([{"prompt": f"q{i} d=0.0{i}", "outcomes": {unpriced: {"quality": 0.9, "cost": 1e-5},
                                                                priced: {"quality": 0.6, "cost": 0.02}}}
                  for i in range(1, 6)])  # fmt: skip
    match = router("query", strategy=strategy, constraints={"max_cost": 0.01})
    assert match.model == unpriced and match.decision.estimated_cost == pytest.approx(1e-5)
    if strategy == "cost":
        assert router("query", strategy="cost").model == unpriced


def test_a_short_call_does_not_shorten_how_long_a_long_call_counts_in_flight(api, name, table, redis_url):
    # The in-flight key's expiry was set by the last call started: a 1 ms call cut a 10 min call's to 61 s.
    from redisvl_llmrouter.policy.stats import inflight_key

    router = api.create(name=name, routes=chat_route(name), vectorizer=table, catalog=catalog(name))
    router.call_started(f"{name}/a", "long", timeout_ms=600_000)
    router.call_started(f"{name}/a", "short", timeout_ms=1)
    assert redis.Redis.from_url(redis_url).pttl(inflight_key(f"{name}/a")) > 600_000


def test_two_routers_in_two_processes_share_latency_load_and_round_robin(redis_url, name, table):
    from redisvl_llmrouter import SemanticRouter

    router = SemanticRouter(
        name=name, routes=chat_route(name), vectorizer=table, catalog=catalog(name), redis_url=redis_url
    )
    for _ in range(3):
        router.call_finished(f"{name}/b", success=True, latency_ms=10.0)
    router.call_started(f"{name}/a", "req-held")
    assert router("query", strategy="round_robin").model == f"{name}/a"
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).resolve().parents[1])!r})
        from conftest import TableVectorizer
        from redisvl_llmrouter import SemanticRouter
        other = SemanticRouter.from_existing({name!r}, redis_url={redis_url!r}, vectorizer=TableVectorizer.make())
        stats = other.live_stats()
        print(json.dumps({{
            "latency_b": stats[f"{name}/b"].latency_ms,
            "inflight_a": stats[f"{name}/a"].inflight,
            "by_latency": other("query", strategy="latency").model,
            "by_load": other("query", strategy="least_loaded").model,
            "rotation": [other("query", strategy="round_robin").model for _ in range(2)],
        }}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {
        "latency_b": pytest.approx(10.0),
        "inflight_a": 1,
        "by_latency": f"{name}/b",
        "by_load": f"{name}/b",
        "rotation": [f"{name}/b", f"{name}/a"],  # continues where this process left off
    }
    assert router.round_robin_position("chat") == 3
    assert router("query", strategy="round_robin").model == f"{name}/b"
    router.delete()


@needs_libfaketime
def test_a_call_started_on_a_host_whose_clock_is_a_minute_behind_counts_in_flight_everywhere(redis_url, name, table):
    """Its 30 s lease ends 30 s from now on Redis's clock, not 30 s ago: else least_loaded sends more to a busy model."""
    from redisvl_llmrouter import SemanticRouter

    router = SemanticRouter(
        name=name, routes=chat_route(name), vectorizer=table, catalog=catalog(name), redis_url=redis_url
    )
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from conftest import TableVectorizer
        from redisvl_llmrouter import SemanticRouter
        assert time.time() < {time.time() - 50}, "the clock is not shifted"
        other = SemanticRouter.from_existing({name!r}, redis_url={redis_url!r}, vectorizer=TableVectorizer.make())
        other.call_started({f"{name}/a"!r}, "req-behind", timeout_ms=30_000)
        """
    )
    env = {**os.environ, **clock_shifted("-60s")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert router.live_stats([f"{name}/a"])[f"{name}/a"].inflight == 1
    assert router("query", strategy="least_loaded").model == f"{name}/b"
    router.delete()


def clustered_outcomes(name: str) -> list[dict]:
    rows = []
    for i in range(12):
        hard = i % 2 == 0
        rows.append(
            {
                "prompt": f"{'hard' if hard else 'easy'}{i} d=0.{2 if hard else 4}{i % 10}",
                "outcomes": {
                    f"{name}/a": {"quality": 0.0 if hard else 1.0, "cost": 0.001},
                    f"{name}/b": {"quality": 1.0, "cost": 0.004},
                },
            }
        )
    return rows


def test_calibration_sets_the_knob_for_each_goal_and_persists_it(api, name, table):
    router = api.create(
        name=name,
        routes=chat_route(name),
        vectorizer=table,
        catalog=ModelCatalog(models=[ModelSpec(name=f"{name}/a"), ModelSpec(name=f"{name}/b")]),
        learning=LearningConfig(neighbours=4, radius=2.0, shrinkage=1.0),
        routing_config=RoutingConfig(cost_weight=0.9),
    )
    router.learn(clustered_outcomes(name))
    cheapest = router.calibrate(strong_share=0.0)
    assert cheapest.strong_model == f"{name}/b" and cheapest.strong_share == 0.0
    assert api.from_existing(name, vectorizer=table).routing_config.cost_weight == pytest.approx(cheapest.cost_weight)
    generous = router.calibrate(budget=0.01)
    assert generous.cost <= 0.01 and generous.quality > cheapest.quality
    target = router.calibrate(quality=generous.quality, apply=False)
    assert target.cost <= generous.cost + 1e-12
    assert router.routing_config.cost_weight == pytest.approx(generous.cost_weight)  # apply=False left it
    with pytest.raises(ValueError, match="cheapest setting costs"):
        router.calibrate(budget=1e-9)
    for bad in ({"sample": -5}, {"sample": 0}, {"output_tokens": -1}, {"strong_share": 2}):
        with pytest.raises(ConfigError, match="must be"):
            router.calibrate(**({"budget": 0.01} | bad if "strong_share" not in bad else bad))


def test_calibration_leaves_each_row_out_of_its_own_prediction_whatever_the_vector_dtype(api, name):
    # A float16 index puts a vector ~1e-4 from itself, not 0: the row's own outcome stayed in as its
    # nearest neighbour, and float16 routers calibrated to another knob than float32 ones on the same data.
    from conftest import TableVectorizer
    from redisvl.utils.vectorize import CustomVectorizer

    rows = [{"prompt": f"r{i} d=0.{1 + i % 8}{i % 10}", "outcomes": {f"{name}/a": {"quality": float(i % 2), "cost": 0.001},
                                                                  f"{name}/b": {"quality": 0.7, "cost": 0.004}}}
            for i in range(40)]  # fmt: skip
    results = {}
    for dtype in ("float32", "float16"):
        vectorizer = CustomVectorizer(embed=TableVectorizer.vector, dtype=dtype,
                                      embed_many=lambda texts, **_: [TableVectorizer.vector(t) for t in texts])  # fmt: skip
        router = api.create(
            name=f"{name}-{dtype}",
            routes=chat_route(name),
            vectorizer=vectorizer,
            catalog=ModelCatalog(models=[ModelSpec(name=f"{name}/a"), ModelSpec(name=f"{name}/b")]),
            learning=LearningConfig(neighbours=4, radius=2.0, shrinkage=1.0),
        )
        router.learn(rows)
        results[dtype] = router.calibrate(strong_share=0.25, apply=False)
    assert results["float16"].cost_weight == pytest.approx(results["float32"].cost_weight)
    assert results["float16"].quality == pytest.approx(results["float32"].quality, abs=1e-3)


def test_calibration_leaves_each_row_out_of_its_priors_too(api, name, table):
    # A row left its neighbours but not the memory-wide sums its priors come from. Two rows (a 1.0, b 0.0),
    # each the other's only neighbour: b's prior for one of them is its catalog 0.9 (no other row), so b is
    # predicted (0 + 16 * 0.9) / 17 = 0.847 there; with the row in its own prior, (16 * 0.847) / 17 = 0.797.
    # (b is the tier's pick, so no cap holds its prior below 0.9.)
    a, b = f"{name}/a", f"{name}/b"
    route = Route(name="chat", models=[b, a], references=["chat d=0.1"], distance_threshold=1.9)  # every row
    router = api.create(name=name, routes=[route], vectorizer=table, catalog=catalog(name),
                        learning=LearningConfig(radius=2.0))  # fmt: skip
    router.learn([{"prompt": f"row{i} d=0.7", "outcomes": {a: {"quality": 1.0}, b: {"quality": 0.0}}} for i in (1, 2)])
    result = router.calibrate(quality=0.84, apply=False)
    assert result.quality == pytest.approx(16 * 0.9 / 17) and result.strong_model == b


def test_calibration_scores_a_request_without_similar_outcomes_at_the_tier_pick_as_routing_does(api, name, table):
    # Below min_support routing takes the tier's pick at every weight; calibration weighed those requests by
    # the prediction anyway, as if the knob moved them.
    a, b = f"{name}/a", f"{name}/b"
    route = Route(name="chat", models=[a, b], references=["chat d=0.7"], distance_threshold=1.9)  # all match
    router = api.create(name=name, routes=[route], vectorizer=table, catalog=catalog(name),
                        learning=LearningConfig(radius=0.0001))  # fmt: skip  # no row is another's neighbour
    router.learn(
        [{"prompt": f"row{i} d=0.5", "outcomes": {a: {"quality": 0.0}, b: {"quality": 1.0}}} for i in range(4)]
    )
    assert not router("row9 d=0.5").decision.learned and router("row9 d=0.5").model == a  # the tier's pick
    result = router.calibrate(budget=1.0, apply=False)
    assert (result.strong_model, result.strong_share) == (a, 1.0)  # routing sends them all to a, at any weight


def test_calibration_weighs_an_unobserved_model_as_routing_does(api, name, table):
    """A catalog model the memory never observed counts, in calibration as in routing, for no more
    than the tier pick's catalog quality; its higher prior on paper does not make it the strong model."""
    a, b, c = f"{name}/a", f"{name}/b", f"{name}/c"
    router = api.create(
        name=name,
        routes=chat_route(name),
        vectorizer=table,
        catalog=ModelCatalog(
            models=[
                ModelSpec(name=a, quality=0.6, input_price=1.0, output_price=1.0),
                ModelSpec(name=b, quality=0.9, input_price=8.0, output_price=8.0),
                ModelSpec(name=c, quality=0.99, input_price=4.0, output_price=4.0),  # never observed
            ]
        ),
        learning=LearningConfig(neighbours=4, radius=2.0, shrinkage=1.0),
        routing_config=RoutingConfig(strategy="learned"),
    )
    router.learn(
        [
            {"prompt": f"q{i} d=0.0{i}", "outcomes": {a: {"quality": float(i % 2)}, b: {"quality": 0.8}}}
            for i in range(1, 9)
        ]
    )
    result = router.calibrate(strong_share=1.0, apply=False)
    assert result.strong_model == b  # uncapped, c's 0.99 on paper would have made it the strong model
    best = router.calibrate(quality=result.quality, apply=True)
    assert router("q3 d=0.03").model != c
    assert best.strong_model == b


def test_calibration_scores_only_the_models_a_matched_floor_lets_routing_use(api, name, table):
    """A floor (medical, say) keeps the cheap tier from its requests. The cheap model's perfect record
    there must not make it calibration's strong model, nor count requests routing never sends it."""
    a, b = f"{name}/a", f"{name}/b"
    router = api.create(
        name=name,
        routes=[
            Route(name="simple", model=a, references=["simple d=0.1"], distance_threshold=0.5),
            Route(name="expert", model=b, references=["expert d=0.6"], distance_threshold=0.5),
            Route(name="medical", references=["medical d=0.05"], distance_threshold=0.5,
                  floor=Floor(min_route="expert")),
        ],
        vectorizer=table,
        catalog=ModelCatalog(models=[ModelSpec(name=a, quality=0.6, input_price=1.0, output_price=1.0),
                                     ModelSpec(name=b, quality=0.9, input_price=8.0, output_price=8.0)]),
        learning=LearningConfig(neighbours=4, radius=2.0, shrinkage=1.0),
        routing_config=RoutingConfig(strategy="learned"),
    )  # fmt: skip
    prompts = [f"dose{i} d=0.0{i}" for i in range(1, 9)]
    router.learn([{"prompt": p, "outcomes": {a: {"quality": 1.0}, b: {"quality": 0.0}}} for p in prompts])
    matches = router.route_batch(prompts)
    assert {m.model for m in matches} == {b} and all(m.decision.floors == ["medical"] for m in matches)
    result = router.calibrate(budget=1.0, apply=False)
    assert (result.strong_model, result.strong_share) == (b, 1.0)  # what routing does with these requests
    # b's predicted quality here, not a's 1.0: its 0.0 outcomes on the 4 neighbours (weights 1, .75, .5,
    # .25) shrunk by 1 toward its prior: its mean 0.0 over the memory's 3 other rows (neither the row
    # itself nor its neighbours, which count once), shrunk by 1 toward its catalog 0.9.
    assert result.quality == pytest.approx((0.0 + 1.0 * (3 * 0.0 + 0.9) / 4) / (2.5 + 1.0), abs=1e-6)
    with pytest.raises(ConfigError, match="lowest share reachable is 1.000"):
        router.calibrate(strong_share=0.5)  # no weight sends these requests below the floor


#: A weight RedisJSON does not store exactly: it keeps, and reads back, 0.18292116580002585.
WEIGHT = 0.18292116580002582


def stored_weight(redis_url: str, name: str) -> float:
    """The cost_weight in router ``name``'s stored config, as RedisJSON holds it."""
    raw = redis.Redis.from_url(redis_url).execute_command(
        "JSON.GET", f"{name}:route_config", "$.routing_config.cost_weight"
    )
    return float(json.loads(raw)[0])


def test_a_weight_is_held_as_stored_by_every_object_and_its_definition_attaches_again(api, name, table, tmp_path):
    router = api.create(name=name, routes=chat_route(name), vectorizer=table, catalog=catalog(name),
                        routing_config=RoutingConfig(cost_weight=WEIGHT))  # fmt: skip
    stored = stored_weight(api.redis_url, name)
    assert stored != WEIGHT  # the premise: RedisJSON changed the last digit
    assert router.routing_config.cost_weight == stored  # the creator holds what Redis holds
    assert api.from_existing(name, vectorizer=table).routing_config.cost_weight == stored
    # The router's own definition, its YAML, and the definition as first given all attach (no overwrite).
    assert api.from_dict(router.to_dict(), vectorizer=table).routing_config.cost_weight == stored
    router.to_yaml(tmp_path / "router.yaml")
    assert api.from_yaml(str(tmp_path / "router.yaml"), vectorizer=table).routing_config.cost_weight == stored
    given = router.to_dict()
    given["routing_config"]["cost_weight"] = WEIGHT
    assert api.from_dict(given, vectorizer=table).routing_config.cost_weight == stored
    # An update holds the stored value too.
    router.update_routing_config({"cost_weight": 0.5})
    router.update_routing_config({"cost_weight": WEIGHT})
    assert router.routing_config.cost_weight == stored_weight(api.redis_url, name) == stored
    assert api.from_dict(router.to_dict(), vectorizer=table).routing_config.cost_weight == stored
    # A change anyone means is still one: refused without overwrite.
    given["routing_config"]["cost_weight"] = 0.19
    with pytest.raises(RouterExistsError, match="routing_config.cost_weight: stored 0.1829211658000258"):
        api.from_dict(given, vectorizer=table)


def test_a_calibrated_weight_is_the_stored_one_in_the_result_this_object_and_every_other(api, name, table):
    a, b = f"{name}/a", f"{name}/b"
    router = api.create(
        name=name,
        routes=chat_route(name),
        vectorizer=table,
        catalog=ModelCatalog(models=[ModelSpec(name=a), ModelSpec(name=b)]),
        learning=LearningConfig(neighbours=4, radius=2.0, shrinkage=1.0),
    )
    router.learn(
        [
            {
                "prompt": f"{'hard' if i % 2 == 0 else 'easy'}{i} d=0.{2 if i % 2 == 0 else 4}{i}",
                "outcomes": {
                    a: {"quality": 0.5 if i % 2 == 0 else 1.0, "cost": 0.001},
                    b: {"quality": 1.0, "cost": 0.1},
                },
            }
            for i in range(12)
        ]
    )
    result = router.calibrate(quality=0.9)  # lands on the weight RedisJSON changes (WEIGHT)
    stored = stored_weight(api.redis_url, name)
    assert result.cost_weight == router.routing_config.cost_weight == stored == pytest.approx(WEIGHT)
    assert api.from_existing(name, vectorizer=table).routing_config.cost_weight == stored
    assert api.from_dict(router.to_dict(), vectorizer=table).routing_config.cost_weight == stored

"""Learned routing on a real Redis, for the sync and the async router: learn, feedback, memory, promotion.

Most cases use the ``table`` vectorizer (texts ending ``d=<x>`` lie at cosine distance x from
``query``), so which rows are neighbours is known exactly. The end-to-end case uses the packaged
MiniLM on the shipped config.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import redis

from redisvl_llmrouter import (
    ConfigError,
    InvalidFeedbackError,
    InvalidQueryError,
    LearningConfig,
    ModelCatalog,
    ModelSpec,
    PromotionRule,
    Route,
    RouteNotFoundError,
    RoutingConfig,
    UnknownModelError,
    UnknownRequestError,
)
from redisvl_llmrouter.learning import memory
from redisvl_llmrouter.learning.records import MAX_COST_USD, MAX_LATENCY_MS

CATALOG = ModelCatalog(
    models=[
        ModelSpec(name="m/cheap", input_price=0.1, output_price=0.1, quality=0.6),
        ModelSpec(name="m/pricey", input_price=10.0, output_price=10.0, quality=0.9),
    ]
)


def tiers() -> list[Route]:
    return [
        Route(name="cheap", model="m/cheap", references=["cheap d=0.2"], distance_threshold=0.5),
        Route(name="pricey", model="m/pricey", references=["pricey d=0.6"], distance_threshold=0.5),
    ]


def make(api, name, table, **kw):
    kw.setdefault("learning", LearningConfig(neighbours=8, shrinkage=1.0, radius=0.2))
    kw.setdefault("routing_config", RoutingConfig(cost_weight=0.1))
    return api.create(name=name, routes=tiers(), vectorizer=table, catalog=CATALOG, **kw)


def failing_cluster(n: int = 4) -> list[dict]:
    """Prompts near ``query`` where the cheap model failed and the pricey one succeeded."""
    return [
        {"prompt": f"near{i} d=0.0{i + 1}", "outcomes": {"m/cheap": {"quality": 0.0, "cost": 0.001},
                                                         "m/pricey": {"quality": 1.0, "cost": 0.1}}}
        for i in range(n)
    ]  # fmt: skip


def test_an_empty_memory_routes_exactly_like_the_tiers(api, name, table):
    router = make(api, name, table)
    learned, semantic = router("query"), router("query", strategy="semantic")
    assert learned.model == semantic.model == "m/cheap"
    assert not learned.decision.learned and learned.decision.fallbacks == semantic.decision.fallbacks


def test_learned_outcomes_change_the_choice_near_them_only(api, name, table):
    router = make(api, name, table)
    report = router.learn(failing_cluster())
    assert (report.created, report.updated) == (4, 0)
    match = router("query")
    assert match.decision.learned and match.model == "m/pricey"
    assert match.name == "cheap"  # the tier still says what the request asks
    predicted = {c.model: c.quality for c in match.decision.candidates}
    assert predicted["m/pricey"] > 0.9 > 0.2 > predicted["m/cheap"]
    # A request with no outcome within the radius (0.2; this one is at least 0.23 from each) stays with its tier.
    far = router("faraway d=0.45")
    assert not far.decision.learned and far.model == router("faraway d=0.45", strategy="semantic").model


def test_relearning_the_same_prompts_replaces_instead_of_adding(api, name, table):
    router = make(api, name, table)
    router.learn(failing_cluster())
    again = router.learn(failing_cluster())
    assert (again.created, again.updated) == (0, 4)
    info = router.memory_info()
    assert info.rows == 4 and info.observations == {"m/cheap": 4, "m/pricey": 4}
    assert info.mean_quality == {"m/cheap": 0.0, "m/pricey": 1.0}
    # A record naming one model replaces that model's outcome and keeps the other model's.
    router.learn([{"prompt": r["prompt"], "outcomes": {"m/cheap": {"quality": 1.0}}} for r in failing_cluster()])
    info = router.memory_info()
    assert info.rows == 4 and info.observations == {"m/cheap": 4, "m/pricey": 4}
    assert info.mean_quality == {"m/cheap": 1.0, "m/pricey": 1.0}


def test_unknown_models_are_refused_before_anything_is_written(api, name, table):
    router = make(api, name, table)
    with pytest.raises(UnknownModelError, match="gpt-9"):
        router.learn([{"prompt": "x d=0.1", "outcomes": {"gpt-9": {"quality": 1.0}}}])
    assert router.memory_info().rows == 0
    router.learn([{"prompt": "x d=0.1", "outcomes": {"gpt-9": {"quality": 1.0}}}], model_map={"gpt-9": "m/pricey"})
    assert router.memory_info().observations == {"m/pricey": 1}
    both = {"prompt": "y d=0.2", "outcomes": {"gpt-9": {"quality": 1.0}, "gpt-8": {"quality": 0.0}}}
    with pytest.raises(InvalidFeedbackError, match="same model 'm/pricey'"):  # one outcome would vanish
        router.learn([both], model_map={"gpt-9": "m/pricey", "gpt-8": "m/pricey"})
    assert router.memory_info().rows == 1


def test_learn_reads_the_shared_jsonl_format(api, name, table, tmp_path):
    path = tmp_path / "outcomes.jsonl"
    path.write_text("\n".join(json.dumps({"id": str(i), "task": "t", **r}) for i, r in enumerate(failing_cluster())))
    router = make(api, name, table)
    assert router.learn(str(path)).created == 4


def test_feedback_by_request_id_is_idempotent_and_counts_once(api, name, table):
    router = make(api, name, table)
    match = router("near d=0.05", record=True)
    first = router.feedback(match.request_id, "m/cheap", 0.0, cost=0.001)
    second = router.feedback(match.request_id, "m/cheap", 0.0, cost=0.001)
    assert first.created and not second.created and first.row_id == second.row_id
    router.feedback(match.request_id, model="m/cheap", quality=1.0)  # a correction replaces the value
    info = router.memory_info()
    assert info.rows == 1 and info.observations == {"m/cheap": 1} and info.mean_quality == {"m/cheap": 1.0}
    router.feedback(match.request_id, model="m/cheap", quality=0.9, cost=0.0004)
    first = router.memory_info()
    for _ in range(4):  # repeats leave the running sums exactly where they were: no float drift
        router.feedback(match.request_id, model="m/cheap", quality=0.9, cost=0.0004)
    again = router.memory_info()
    assert again.mean_quality == first.mean_quality == {"m/cheap": float(np.float32(0.9))}
    assert again.mean_cost == first.mean_cost and again.mean_cost["m/cheap"] == pytest.approx(0.0004, rel=1e-6)


def test_feedback_on_a_recorded_request_is_about_the_routed_model_unless_it_names_another(api, name, table):
    router = make(api, name, table)
    match = router("near d=0.05", record=True)
    assert match.model is not None
    result = router.feedback(match.request_id, quality=0.0)
    other = next(m for m in ("m/cheap", "m/pricey") if m != match.model)
    router.feedback(match.request_id, other, 1.0)
    info = router.memory_info()
    assert result.created and info.rows == 1
    assert info.observations == {match.model: 1, other: 1}
    assert info.mean_quality == {match.model: 0.0, other: 1.0}
    with pytest.raises(InvalidFeedbackError, match="model="):
        router.feedback("a statement has no routed model", quality=1.0)


def test_feedback_refuses_bad_values_unknown_models_and_unknown_requests(api, name, table):
    router = make(api, name, table)
    match = router("near d=0.05", record=True)
    for bad in (1.5, -0.1, float("nan"), True, "1"):
        with pytest.raises(InvalidFeedbackError):
            router.feedback(match.request_id, "m/cheap", bad)
    with pytest.raises(InvalidFeedbackError, match="cost"):
        router.feedback(match.request_id, "m/cheap", 1.0, cost=-1)
    with pytest.raises(UnknownModelError):
        router.feedback(match.request_id, "m/unknown", 1.0)
    unrecorded = router("near d=0.05")
    with pytest.raises(UnknownRequestError, match="not recorded"):
        router.feedback(unrecorded.request_id, "m/cheap", 1.0)
    with pytest.raises(UnknownRequestError):
        router.feedback(request_id="req-nonsense", model="m/cheap", quality=1.0)
    assert router.memory_info().rows == 0


def test_feedback_takes_any_real_number_learn_takes_such_as_a_numpy_float32(api, name, table):
    router = make(api, name, table)
    router.learn([{"prompt": "graded d=0.05", "outcomes": {"m/cheap": {"quality": np.float32(0.5)}}}])
    # What a grader returns (numpy), exact decimals and fractions: each taken as its float.
    first = router.feedback("graded d=0.05", "m/cheap", np.float32(0.5), cost=np.float32(0.25), latency_ms=np.int64(9))
    router.feedback(statement="graded d=0.05", model="m/pricey", quality=Decimal("0.25"), cost=Fraction(1, 8))
    info = router.memory_info()
    assert not first.created and info.rows == 1
    assert info.mean_quality == {"m/cheap": 0.5, "m/pricey": 0.25}
    assert info.mean_cost == {"m/cheap": 0.25, "m/pricey": 0.125}
    for bad in (np.True_, np.float32("nan"), Decimal("Infinity"), Decimal("sNaN"), "0.5"):
        with pytest.raises(InvalidFeedbackError, match="quality must be a finite number"):
            router.feedback("graded d=0.05", "m/cheap", bad)


@pytest.mark.parametrize(
    ("field", "bound", "said", "schema"),
    [
        ("cost", MAX_COST_USD, r"\[0, 1e\+06\] \(USD for one request\)", "1000000"),
        ("latency_ms", MAX_LATENCY_MS, r"\[0, 8.64e\+07\] \(milliseconds\)", "86400000"),
    ],
)
def test_an_absurd_cost_or_latency_is_refused_before_anything_is_written(api, name, table, tmp_path, field, bound,
                                                                         said, schema):  # fmt: skip
    """Costs are USD for one request, at most MAX_COST_USD, latencies at most a day: a larger one is a
    mistake. One past float32's range could not even be stored: Redis refused a cost's running sum (a
    500 at the gateway), and a latency was stored as infinity, after which no export could be read back."""
    router = make(api, name, table)
    match = router("near d=0.05", record=True)
    for absurd in (1e300, 1e39, bound * 2):
        with pytest.raises(InvalidFeedbackError, match=f"{field} must be {said}"):
            router.feedback(match.request_id, "m/cheap", 1.0, **{field: absurd})
        with pytest.raises(InvalidFeedbackError, match=f"{field}: Input should be less than or equal to {schema}"):
            router.learn([{"prompt": "near d=0.05", "outcomes": {"m/cheap": {"quality": 1.0, field: absurd}}}])
    assert router.memory_info().rows == 0
    router.feedback(match.request_id, "m/cheap", 1.0, **{field: bound})  # the bound itself is allowed
    if field == "cost":
        assert router.memory_info().mean_cost == {"m/cheap": MAX_COST_USD}
    path = tmp_path / "memory.json"
    router.export_with_embeddings(path)
    assert json.loads(path.read_text())["outcomes"]


def test_numbers_no_float_holds_and_names_that_are_not_strings_are_typed_errors_that_change_nothing(api, name, table):
    router = make(api, name, table)
    match = router("near d=0.05", record=True)
    huge = 10**400  # math.isfinite(huge) raises OverflowError; float arithmetic on it too
    with pytest.raises(InvalidQueryError, match="output_tokens"):
        router("near d=0.05", constraints={"output_tokens": huge})
    with pytest.raises(InvalidQueryError, match="prompt_tokens"):
        router("near d=0.05", prompt_tokens=huge)
    with pytest.raises(InvalidQueryError, match="latency_ms"):
        router("near d=0.05", stats={"m/cheap": {"latency_ms": huge}})
    with pytest.raises(ConfigError, match="Threshold"):
        router.update_route_thresholds({"cheap": huge})
    with pytest.raises(InvalidFeedbackError, match="named by a string"):
        router.feedback(match.request_id, quality=0.5, model=["m/cheap"])
    with pytest.raises(InvalidFeedbackError, match="model must be a model name"):
        router.learn([{"prompt": "near d=0.05", "model": ["m/cheap"], "quality": 1.0}])
    rows = [{"prompt": f"near{i} d=0.05", "outcomes": {"m/cheap": {"quality": 1.0}}} for i in range(3)]
    with pytest.raises(InvalidFeedbackError, match="progress"):  # before the first batch, not after it
        router.learn(rows, batch_size=1, progress=5)
    assert router.memory_info().rows == 0
    router.learn(rows)
    with pytest.raises(ConfigError, match="apply must be True or False"):  # "no" is truthy: it would save
        router.calibrate(budget=1.0, apply="no")
    with pytest.raises(ConfigError, match="budget"):
        router.calibrate(budget=huge)
    with pytest.raises(ConfigError, match="sample"):  # Redis answered "out of range"
        router.calibrate(budget=1.0, sample=2**63)
    with pytest.raises(InvalidQueryError, match="timeout_ms"):
        router.call_started("m/cheap", "req-1", timeout_ms=2**63)
    with pytest.raises(InvalidQueryError, match="finite numbers"):
        router(vector=[huge, 0.0, 0.0])
    with pytest.raises(RouteNotFoundError):  # a list is no route name (it was a TypeError)
        router.round_robin_position(["cheap"])
    with pytest.raises(ConfigError, match="max_rows must be a number"):  # True was read as 1: all but a row evicted
        router.update_learning({"max_rows": True})
    assert router.memory_info().rows == 3
    assert router.routing_config.cost_weight == 0.1


def test_settings_legal_before_numbers_were_bounded_still_load(api, name, table):
    """Bounded to what a stored config keeps exact, not tighter: a router stored with these must still open."""
    from redisvl_llmrouter import TextWindow

    make(
        api,
        name,
        table,
        routing_config=RoutingConfig(cost_weight=0.1, text=TextWindow(max_chars=2_000_000, head_chars=1_500_000)),
        learning=LearningConfig(max_rows=500_000_000, feedback_ttl_s=10 * 365 * 86_400 + 1),
    )
    again = api.from_existing(name, vectorizer=table)
    assert (again.routing_config.text.max_chars, again.learning.max_rows) == (2_000_000, 500_000_000)


@pytest.mark.parametrize("setting", [{"expected_output_tokens": 2**64}, {"aggregation_k": 2**64}, {"max_k": 2**64}])
def test_a_refused_config_update_leaves_the_stored_router_loadable_and_changeable(api, name, table, setting):
    """2**64 passed validation, was stored (as a float RedisJSON rounds it to) and then failed every load."""
    router = make(api, name, table)
    with pytest.raises(ConfigError):
        router.update_routing_config(setting)
    assert api.from_existing(name, vectorizer=table).routing_config == router.routing_config
    router.update_routing_config({"expected_output_tokens": 512})
    assert api.from_existing(name, vectorizer=table).routing_config.expected_output_tokens == 512


def test_a_mistyped_request_id_is_refused_not_learned_as_a_statement(api, name, table):
    router = make(api, name, table)
    rid = router("near d=0.05", record=True).request_id
    for mistyped in (rid.upper(), f" {rid}", f"{rid}\n", rid[:-1], "REQ-123", "req-"):
        for model in ("m/cheap", None):  # with the model named, or the routed one
            with pytest.raises(UnknownRequestError, match="is not a request id of this router"):
                router.feedback(mistyped, model, 1.0)
    with pytest.raises(UnknownRequestError, match="did you mean"):
        router.feedback(rid.upper(), quality=1.0)
    assert router.memory_info().rows == 0
    assert router.feedback(rid, quality=1.0).created  # the exact id still works
    assert router.feedback(statement="req-like text d=0.1", model="m/cheap", quality=1.0).created  # said so


def test_feedback_on_a_statement_teaches_the_router(api, name, table):
    router = make(api, name, table)
    for i in range(3):
        router.feedback(f"close{i} d=0.0{i + 1}", "m/cheap", 0.0)
        router.feedback(statement=f"close{i} d=0.0{i + 1}", model="m/pricey", quality=1.0)
    assert router.memory_info().rows == 3
    assert router("query").model == "m/pricey"


def test_the_memory_keeps_at_most_max_rows_evicting_the_oldest(api, name, table):
    router = make(api, name, table, learning=LearningConfig(max_rows=3))
    router.learn(failing_cluster(3))
    router.learn([{"prompt": "newest d=0.3", "outcomes": {"m/cheap": {"quality": 1.0}}}])
    info = router.memory_info()
    assert info.rows == 3 and info.observations == {"m/cheap": 3, "m/pricey": 2}
    client = redis.Redis.from_url(api.redis_url)
    assert not client.exists(memory.row_key(name, memory.row_id_for_text("near0 d=0.01")))


def test_every_writer_applies_the_stored_size_cap_not_the_one_it_opened_with(api, name, table):
    learner = make(api, name, table)  # opened with the default cap (10,000 rows)
    giver = api.from_existing(name, vectorizer=table)
    admin = api.from_existing(name, vectorizer=table)
    admin.update_learning(admin.learning.model_copy(update={"max_rows": 5}))
    report = learner.learn([{"prompt": f"row{i} d=0.{i + 10}", "outcomes": {"m/cheap": {"quality": 1.0}}}
                            for i in range(20)])  # fmt: skip
    assert (report.created, report.evicted) == (20, 15) and learner.memory_info().rows == 5
    assert learner.learning.max_rows == 5  # and the learner now holds the stored settings
    admin.update_learning(admin.learning.model_copy(update={"max_rows": 3}))
    for i in range(4):
        giver.feedback(f"said{i} d=0.0{i + 1}", "m/cheap", 1.0)
    assert giver.memory_info().rows == 3 and giver.learning.max_rows == 3


def test_update_learning_with_a_mapping_changes_only_the_settings_it_names(api, name, table):
    rule = PromotionRule(fail_below=0.5, min_failures=5, radius=0.5)
    kept = LearningConfig(store_text=False, feedback_ttl_s=600, promote=rule, shrinkage=4.0)
    router = make(api, name, table, learning=kept)
    other = api.from_existing(name, vectorizer=table)
    other.update_learning({"max_rows": 50})
    stored = api.from_existing(name, vectorizer=table).learning
    assert stored == kept.model_copy(update={"max_rows": 50})  # store_text=False above all: no text kept
    router.update_learning({"neighbours": 8})  # merged onto what the other object saved
    assert api.from_existing(name, vectorizer=table).learning == stored.model_copy(update={"neighbours": 8})
    with pytest.raises(ConfigError, match="max_rows"):
        router.update_learning({"max_rows": 0})
    with pytest.raises(ConfigError, match="LearningConfig"):
        router.update_learning(None)
    router.update_learning(LearningConfig())  # a whole config replaces every setting
    assert api.from_existing(name, vectorizer=table).learning == LearningConfig()


def test_a_recorded_route_keeps_the_stored_store_text_and_ttl_not_the_ones_its_object_opened_with(api, name, table):
    router = make(api, name, table)  # opened with store_text=True and a day's feedback TTL
    router("near d=0.05", record=True)
    api.from_existing(name, vectorizer=table).update_learning({"store_text": False, "feedback_ttl_s": 60})
    match = router("my account number is 12345, near d=0.04", record=True)
    client = redis.Redis.from_url(api.redis_url)
    key = memory.request_key(name, match.request_id)
    assert client.hget(key, "text") is None and 0 < client.ttl(key) <= 60
    assert client.hget(key, "model").decode() == match.model  # feedback still defaults to the routed model
    assert router.learning.store_text is False  # and the object now holds the stored settings
    router.feedback(match.request_id, quality=1.0)
    assert router.memory_info().rows == 1


def test_export_and_reload_keep_every_outcome(api, name, table, tmp_path):
    router = make(api, name, table)
    router.learn(failing_cluster())
    path = router.export_with_embeddings(tmp_path / "learned.json")
    data = json.loads(path.read_text())
    assert len(data["outcomes"]) == 4 and data["catalog"]["models"][0]["name"] == "m/cheap"
    router.delete()
    again = api.from_pretrained(str(path), vectorizer=table)
    assert again.memory_info().rows == 4 and again("query").model == "m/pricey"


@pytest.mark.parametrize("store_text", [True, False], ids=["text-kept", "text-not-kept"])
def test_calibration_prices_each_row_by_its_whole_prompt_as_routing_does(
    api, name, table, tmp_path, caplog, store_text
):
    """A row keeps its prompt's size: calibration priced only the routing window's tokens (one token
    with ``store_text`` off), so on long prompts a budget let through traffic many times dearer."""
    learning = LearningConfig(neighbours=8, shrinkage=1.0, radius=0.2, store_text=store_text)
    router = make(api, name, table, learning=learning)
    context = "pasted context " * 2_000  # 30,000 characters, far past the 1,000-character window
    prompts = [f"{context} ask{i} d=0.0{i + 1}" for i in range(4)]
    both = {"m/cheap": {"quality": 0.0}, "m/pricey": {"quality": 1.0}}
    router.learn([{"prompt": p, "outcomes": both} for p in prompts[:2]])  # from a dataset
    router.feedback(statement=prompts[2], model="m/pricey", quality=1.0)  # of a statement
    rid = router(prompts[3], record=True).request_id
    router.feedback(rid, "m/pricey", 1.0)  # of a routed request
    # What routing estimates the pricey model costs on these prompts, whole prompt and answer.
    routed = [next(c for c in router(p).decision.candidates if c.model == "m/pricey").cost for p in prompts]
    assert min(routed) > 0.07  # about 7,500 prompt tokens at $10 a million
    result = router.calibrate(strong_share=1.0, apply=False)
    assert result.strong_model == "m/pricey" and result.strong_share == 1.0
    assert result.cost == pytest.approx(sum(routed) / len(routed), rel=1e-6)
    # An export keeps the sizes too: the reloaded memory calibrates to the same cost.
    path = router.export_with_embeddings(tmp_path / "learned.json")
    assert json.loads(path.read_text())["schema_version"] == 3  # rows with sizes: older versions say to upgrade
    router.delete()
    again = api.from_pretrained(str(path), vectorizer=table)
    reloaded = again.calibrate(strong_share=1.0, apply=False)
    assert reloaded.cost == pytest.approx(result.cost, rel=1e-6) and result.unsized == reloaded.unsized == 0
    # Rows an older version wrote have no size: priced by their routing text, and counted, not hidden.
    client = redis.Redis.from_url(api.redis_url)
    for key in client.scan_iter(f"llmrouter:{{{name}}}:outcome:*"):
        client.hdel(key, "tokens")
    with caplog.at_level("WARNING", logger="redisvl_llmrouter"):
        old = again.calibrate(strong_share=1.0, apply=False)
    assert old.unsized == 4 and old.cost < result.cost / 2 and "4 of 4 rows" in caplog.text


def test_delete_removes_the_memory_and_only_it(api, name, table):
    router = make(api, name, table)
    router.learn(failing_cluster())
    router("near d=0.05", record=True)
    client = redis.Redis.from_url(api.redis_url)
    client.set("someone-else:key", "kept")
    router.delete()
    assert list(client.scan_iter(f"llmrouter:{{{name}}}*")) == []
    assert f"{name}:outcomes" not in {i.decode() for i in client.execute_command("FT._LIST")}
    assert client.get("someone-else:key") == b"kept"
    client.delete("someone-else:key")


def test_promotion_moves_a_failing_region_to_the_next_tier_and_reverts(api, name, table):
    rule = PromotionRule(fail_below=0.5, min_failures=3, radius=0.5)
    router = make(api, name, table, learning=LearningConfig(promote=rule))
    results = [router.feedback(f"sql{i} d=0.1{i}", "m/cheap", 0.0) for i in range(3)]
    assert [r.promoted_to for r in results] == [None, None, "pricey"]
    pricey = router.get("pricey")
    assert "sql2 d=0.12" in pricey.references and pricey.metadata["promoted"] == ["sql2 d=0.12"]
    assert router("query", strategy="semantic").name == "pricey"  # a nearby request now matches the next tier
    assert router.revert_promotions() == 1
    assert router.get("pricey").references == ["pricey d=0.6"] and "promoted" not in router.get("pricey").metadata
    assert router("query", strategy="semantic").name == "cheap"


def test_revert_promotions_leaves_a_users_own_promoted_metadata(api, name, table):
    router = make(api, name, table)
    router.add_route(
        Route(name="mine", references=["a d=0.8", "b d=0.8", "mine d=0.9"], metadata={"promoted": "a d=0.8"})
    )
    assert router.revert_promotions() == 0
    assert router.get("mine").references == ["a d=0.8", "b d=0.8", "mine d=0.9"]
    assert router.get("mine").metadata == {"promoted": "a d=0.8"}


def test_a_promoted_reference_deleted_and_added_again_by_the_user_is_theirs(api, name, table):
    """The promotion mark went on naming the text after the user deleted it: revert then removed the
    reference the user had added again."""
    rule = PromotionRule(fail_below=0.5, min_failures=3, radius=0.5)
    router = make(api, name, table, learning=LearningConfig(promote=rule))
    [router.feedback(f"sql{i} d=0.1{i}", "m/cheap", 0.0) for i in range(3)]
    promoted = "sql2 d=0.12"
    ids = [r["reference_id"] for r in router.get_route_references("pricey") if r["reference"] == promoted]
    router.delete_route_references("pricey", reference_ids=ids)
    assert "promoted" not in router.get("pricey").metadata  # the rule's mark goes with its reference
    router.add_route_references("pricey", [promoted])
    assert router.revert_promotions() == 0
    assert router.get("pricey").references == ["pricey d=0.6", promoted]


def test_promotion_is_off_by_default(api, name, table):
    router = make(api, name, table)
    assert [router.feedback(f"sql{i} d=0.1{i}", "m/cheap", 0.0).promoted_to for i in range(4)] == [None] * 4


def test_another_process_sees_every_outcome(redis_url, name, tmp_path):
    from redisvl_llmrouter import SemanticRouter

    router = SemanticRouter(
        name=name,
        routes=[Route(name="chat", model="m/cheap", references=["hello there"], distance_threshold=0.9)],
        catalog=CATALOG,
        redis_url=redis_url,
    )
    router.learn([{"prompt": "how do I index a SQL table?", "outcomes": {"m/cheap": {"quality": 0.0},
                                                                         "m/pricey": {"quality": 1.0}}}])  # fmt: skip
    code = textwrap.dedent(
        f"""
        import json
        from redisvl_llmrouter import SemanticRouter
        r = SemanticRouter.from_existing({name!r}, redis_url={redis_url!r})
        info = r.memory_info()
        print(json.dumps({{"rows": info.rows, "obs": info.observations, "catalog": r.catalog.names}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"rows": 1, "obs": {"m/cheap": 1, "m/pricey": 1}, "catalog": ["m/cheap", "m/pricey"]}
    router.delete()


def test_feedback_on_a_cluster_changes_nearby_choices_and_not_unrelated_ones(redis_url, name):
    """The done-when, with the real MiniLM: the cheap model keeps failing on unit conversions."""
    from redisvl_llmrouter import SemanticRouter

    router = SemanticRouter.from_pretrained("default", name=name, redis_url=redis_url)
    cheap = router.get("simple").model
    nearby, unrelated = "convert 12 inches to centimeters", "hello, how are you today?"
    before = {q: router(q).model for q in (nearby, unrelated)}
    assert before == {nearby: cheap, unrelated: cheap}
    for question in [
        "convert 5 miles to kilometers",
        "convert 100 pounds to kilograms",
        "convert 30 degrees celsius to fahrenheit",
        "how many ounces are in a liter?",
    ]:
        router.feedback(question, cheap, 0.0)
        for model in router.models:
            if model != cheap:
                router.feedback(question, model, 1.0)
    after = {q: router(q) for q in (nearby, unrelated)}
    assert after[nearby].decision.learned and after[nearby].model != cheap
    assert not after[unrelated].decision.learned and after[unrelated].model == cheap
    router.delete()

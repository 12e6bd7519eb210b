"""The router on a real Redis, specified once and run against both SemanticRouter and AsyncSemanticRouter.

Most cases use the ``table`` vectorizer, whose texts encode their exact cosine distance from the
text ``query`` (``"cheap d=0.2"`` lies at distance 0.2), so expected winners are computed by hand.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import yaml
from redisvl.utils.vectorize import BaseVectorizer

from redisvl_llmrouter import (
    ConfigError,
    DistanceAggregationMethod,
    Floor,
    InvalidFeedbackError,
    InvalidQueryError,
    LearningConfig,
    ModelCatalog,
    ModelSpec,
    Route,
    RouteExistsError,
    RouteNotFoundError,
    RouterDeletedError,
    RouterEmptyError,
    RouterExistsError,
    RouterNotFoundError,
    RouterStateLostError,
    RoutingConfig,
    SemanticRouter,
    VectorDimensionError,
    VectorizerMismatchError,
)
from redisvl_llmrouter.learning import memory
from redisvl_llmrouter.schema import ConfidenceCalibration
from redisvl_llmrouter.search import config_key, reference_key


def tiers() -> list[Route]:
    return [
        Route(name="cheap", model="m/cheap", cost=1.0, references=["cheap d=0.2"], distance_threshold=0.5),
        Route(name="pricey", model="m/pricey", cost=10.0, references=["pricey d=0.05"], distance_threshold=0.5),
    ]


def test_best_route_by_distance_with_model_cost_confidence_and_alternatives(api, name, table):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    match = router("query")
    assert match and not match.fallback
    assert (match.name, match.model, match.cost) == ("pricey", "m/pricey", 10.0)
    assert match.distance == pytest.approx(0.05, abs=1e-5)
    assert match.confidence == pytest.approx(1 - 0.05 / 0.5, abs=1e-4)
    assert [(a.name, a.model, a.cost) for a in match.alternatives] == [("cheap", "m/cheap", 1.0)]
    assert match.alternatives[0].distance == pytest.approx(0.2, abs=1e-5)


def test_cost_penalty_flips_the_winner_at_a_realistic_weight(api, name, table):
    # w=0.3: cheap 0.7*0.2 + 0.3*1/10 = 0.17 < pricey 0.7*0.05 + 0.3*10/10 = 0.335
    config = RoutingConfig(cost_optimization=True, cost_weight=0.3)
    router = api.create(name=name, routes=tiers(), vectorizer=table, routing_config=config)
    match = router("query")
    assert match.name == "cheap"
    assert match.score == pytest.approx(0.17, abs=1e-4)
    assert [a.name for a in match.alternatives] == ["pricey"]


def test_cost_penalty_has_no_unit(api, name, table):
    scaled = [r.model_copy(update={"cost": r.cost * 10}) for r in tiers()]
    config = RoutingConfig(cost_optimization=True, cost_weight=0.3)
    a = api.create(name=name, routes=tiers(), vectorizer=table, routing_config=config)("query")
    b = api.create(name=name + "x10", routes=scaled, vectorizer=table, routing_config=config)("query")
    assert (a.name, a.score) == (b.name, pytest.approx(b.score))


def test_call_and_route_many_rank_alike_even_for_a_route_far_down_by_distance(api, name, table):
    routes = [
        Route(name="a", model="A", cost=10, references=["a d=0.05"], distance_threshold=0.5),
        Route(name="b", model="B", cost=10, references=["b d=0.1"], distance_threshold=0.5),
        Route(name="c", model="C", cost=0.1, references=["c d=0.3"], distance_threshold=0.5),
    ]
    config = RoutingConfig(cost_optimization=True, cost_weight=0.5, max_k=1)
    router = api.create(name=name, routes=routes, vectorizer=table, routing_config=config)
    assert router("query").name == "c"
    assert [m.name for m in router.route_many("query")] == ["c"]
    assert [m.name for m in router.route_many("query", max_k=3)] == ["c", "a", "b"]
    assert [m.name for m in router.route_batch(["query"])] == ["c"]


def test_thresholds_filter_routes_and_nothing_matched_is_falsy(api, name, table):
    routes = [Route(name="far", model="F", references=["far d=0.6"], distance_threshold=0.5)]
    router = api.create(name=name, routes=routes, vectorizer=table)
    match = router("query")
    assert not match and match.name is None and match.model is None
    assert router.route_many("query") == []


def test_default_route_answers_when_nothing_matches(api, name, table):
    routes = [
        Route(name="near", model="N", references=["near d=0.6"], distance_threshold=0.5),
        Route(name="fallback", model="F", cost=3, references=["fallback d=0.9"], distance_threshold=0.1),
    ]
    router = api.create(
        name=name, routes=routes, vectorizer=table, routing_config=RoutingConfig(default_route="fallback")
    )
    match = router("query")
    assert match and match.fallback
    assert (match.name, match.model, match.cost, match.confidence, match.distance) == ("fallback", "F", 3, 0.0, None)
    assert [m.name for m in router.route_many("query")] == ["fallback"]


def test_default_route_must_be_a_route(api, name, table):
    with pytest.raises(ConfigError, match="default_route 'nope'"):
        api.create(name=name, routes=tiers(), vectorizer=table, routing_config=RoutingConfig(default_route="nope"))


@pytest.mark.parametrize(
    ("method", "expected"),
    [(DistanceAggregationMethod.min, "spread"), (DistanceAggregationMethod.avg, "tight")],
)
def test_aggregation_methods(api, name, table, method, expected):
    # spread: min 0.05, avg 0.225; tight: min 0.1, avg 0.1
    routes = [
        Route(name="spread", references=["s d=0.05", "s d=0.4"], distance_threshold=0.5),
        Route(name="tight", references=["t d=0.1", "t2 d=0.1"], distance_threshold=0.5),
    ]
    router = api.create(name=name, routes=routes, vectorizer=table)
    assert router("query", aggregation_method=method).name == expected
    router.update_routing_config(RoutingConfig(aggregation_method=method))
    assert router("query").name == expected


@pytest.mark.parametrize("route_name", ['it\'s "quoted"', "with spaces", "a:b:c", "Ünïcødé 路由 🚀", "Simple", "x,y"])
def test_awkward_route_names_route_and_round_trip(api, name, table, route_name):
    routes = [
        Route(name=route_name, model="M", cost=1, references=["r d=0.1", "r2 d=0.15"], distance_threshold=0.5),
        Route(name="simple", model="S", cost=2, references=["other d=0.3"], distance_threshold=0.5),
    ]
    router = api.create(name=name, routes=routes, vectorizer=table)
    assert router("query").name == route_name
    refs = router.get_route_references(route_name)
    assert sorted(r["reference"] for r in refs) == ["r d=0.1", "r2 d=0.15"]
    assert {r["route_name"] for r in refs} == {route_name}
    router.add_route_references(route_name, "r3 d=0.12")
    assert router.delete_route_references(route_name, reference_ids=[refs[0]["reference_id"]]) == 1
    again = api.from_existing(name, vectorizer=table)
    assert again.get(route_name).references == ["r2 d=0.15", "r3 d=0.12"]
    assert again("query").name == route_name
    router.remove_route(route_name)
    assert router("query").name == "simple"


def test_round_trips_keep_model_cost_and_config(api, name, table, tmp_path):
    config = RoutingConfig(cost_optimization=True, cost_weight=0.4, default_route="cheap", max_k=2)
    router = api.create(name=name, routes=tiers(), vectorizer=table, routing_config=config)
    data = router.to_dict()
    assert [(r["name"], r["model"], r["cost"]) for r in data["routes"]] == [
        ("cheap", "m/cheap", 1.0),
        ("pricey", "m/pricey", 10.0),
    ]
    assert data["routing_config"]["cost_weight"] == 0.4 and data["routing_config"]["default_route"] == "cheap"

    from_dict = api.from_dict({**data, "name": name + "-d"}, vectorizer=table)
    assert from_dict.to_dict() == {**data, "name": name + "-d"}
    renamed = api.from_dict(data, name=name + "-r", vectorizer=table)
    assert renamed.to_dict() == {**data, "name": name + "-r"}

    path = tmp_path / "router.yaml"
    router.to_yaml(path)
    assert yaml.safe_load(path.read_text())["routes"][0]["model"] == "m/cheap"
    with pytest.raises(FileExistsError):
        router.to_yaml(path, overwrite=False)
    from_yaml = api.from_yaml(path, vectorizer=table)  # same name, same definition: reused
    assert from_yaml.to_dict() == data
    assert api.from_yaml(path, name=name + "-y", vectorizer=table).name == name + "-y"

    existing = api.from_existing(name, vectorizer=table)
    assert existing.to_dict() == data
    assert existing("query").name == router("query").name == "cheap"


def test_updated_thresholds_are_persisted(api, name, table):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    router.update_route_thresholds({"pricey": 0.01})
    assert router("query").name == "cheap"
    other = api.from_existing(name, vectorizer=table)
    assert other.route_thresholds == {"cheap": 0.5, "pricey": 0.01}
    assert other("query").name == "cheap"
    with pytest.raises(RouteNotFoundError, match="no route 'ghost'"):
        router.update_route_thresholds({"ghost": 0.3})
    with pytest.raises(ConfigError):
        router.update_route_thresholds({"cheap": 3.0})


def test_add_and_remove_routes_are_persisted(api, name, table, caplog):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    router.add_route(Route(name="closest", model="C", cost=5, references=["closest d=0.01"], distance_threshold=0.3))
    assert router("query").name == "closest"
    with pytest.raises(RouteExistsError):
        router.add_route(Route(name="closest", references=["x d=0.5"]))
    assert api.from_existing(name, vectorizer=table).route_names == ["cheap", "pricey", "closest"]
    router.remove_route("closest")
    assert router("query").name == "pricey"
    assert api.from_existing(name, vectorizer=table).route_names == ["cheap", "pricey"]
    router.remove_route("closest")  # as RedisVL: removing an unknown route warns and changes nothing
    assert "'closest' is not found" in caplog.text
    assert api.from_existing(name, vectorizer=table).route_names == ["cheap", "pricey"]
    # A tier a floor names stays: without it the floor would not hold, nor the stored config load.
    router.add_route(Route(name="medical", references=["medical d=0.9"], floor={"min_route": "pricey"}))
    with pytest.raises(ConfigError, match="min_route of floor route.*'medical'"):
        router.remove_route("pricey")
    assert api.from_existing(name, vectorizer=table).route_names == ["cheap", "pricey", "medical"]
    router.remove_route("medical")
    router.remove_route("pricey")
    assert api.from_existing(name, vectorizer=table).route_names == ["cheap"]


def test_references_can_be_added_read_and_deleted_but_a_route_keeps_one(api, name, table):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    keys = router.add_route_references("cheap", ["cheap2 d=0.01", "cheap3 d=0.02"])
    assert len(keys) == 2
    assert router("query", aggregation_method=DistanceAggregationMethod.min).name == "cheap"
    assert len(router.get_route_references("cheap")) == 3
    assert router.get_route_references(keys=[keys[0]])[0]["reference"] == "cheap2 d=0.01"
    assert router.delete_route_references(keys=keys) == 2
    assert router.get("cheap").references == ["cheap d=0.2"]
    with pytest.raises(ConfigError, match="remove_route"):
        router.delete_route_references("cheap")
    with pytest.raises(RouteNotFoundError):
        router.add_route_references("ghost", ["x d=0.1"])


def at_once(api, router, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
    """Run ``(method, args)`` calls at the same time on ONE router object: threads for the sync
    router, tasks of one event loop for the async one. Returns each call's result or exception."""
    if api.flavour == "async":
        target = router.unwrapped

        async def gathered() -> list[Any]:
            return await asyncio.gather(*(getattr(target, m)(*a) for m, a in calls), return_exceptions=True)

        return api.run(gathered())
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(getattr(router, m), *a) for m, a in calls]
        return [f.exception() or f.result() for f in futures]


def extra(i: int) -> Route:
    return Route(name=f"extra{i}", model=f"m/extra{i}", references=[f"extra{i} d=0.{i + 10}"], distance_threshold=0.5)


def test_concurrent_writers_on_one_router_object_all_land(api, name, table, caplog):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    results = at_once(api, router, [("add_route", (extra(i),)) for i in range(20)])
    assert [r for r in results if isinstance(r, BaseException)] == []
    everything = {"cheap", "pricey", *(f"extra{i}" for i in range(20))}
    assert set(router.route_names) == everything
    assert set(api.from_existing(name, vectorizer=table).route_names) == everything
    # Removals, additions and settings at once: each lands, none is told its route is missing.
    calls = [("remove_route", (f"extra{i}",)) for i in range(10)]
    calls += [("add_route", (extra(i),)) for i in range(20, 25)]
    calls += [("update_route_thresholds", ({"cheap": 0.4},)), ("update_routing_config", ({"max_k": 2},))]
    with caplog.at_level(logging.WARNING):
        results = at_once(api, router, calls)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert "not found" not in caplog.text
    left = {"cheap", "pricey", *(f"extra{i}" for i in [*range(10, 20), *range(20, 25)])}
    stored = api.from_existing(name, vectorizer=table)
    for seen in (router, stored):
        assert set(seen.route_names) == left
        assert (seen.route_thresholds["cheap"], seen.routing_config.max_k) == (0.4, 2)


def test_a_partial_routing_config_changes_only_the_settings_it_names(api, name, table):
    config = RoutingConfig(
        aggregation_method=DistanceAggregationMethod.min,
        default_route="cheap",
        max_k=2,
        confidence=ConfidenceCalibration(sharpness=4.0, fitted_on="held-out queries"),
    )
    router = api.create(name=name, routes=tiers(), vectorizer=table, routing_config=config)
    router.update_routing_config({"cost_weight": 0.5})
    expected = config.model_copy(update={"cost_weight": 0.5})
    assert router.routing_config == expected
    assert api.from_existing(name, vectorizer=table).routing_config == expected
    for bad, named in (({"cost_wieght": 0.5}, "cost_wieght"), ({"cost_weight": 2.0}, "cost_weight"),
                       ({"balance": {"quality": -1}}, "balance.quality"), ({"default_route": "ghost"}, "ghost")):  # fmt: skip
        with pytest.raises(ConfigError, match=named):  # the setting at fault is named
            router.update_routing_config(bad)
    assert router.routing_config == expected
    router.update_routing_config(RoutingConfig(cost_weight=0.2))  # a whole config replaces every setting
    assert router.routing_config == RoutingConfig(cost_weight=0.2)
    assert api.from_existing(name, vectorizer=table).routing_config == RoutingConfig(cost_weight=0.2)


def test_a_refused_change_leaves_no_reference_of_its_own_behind(api, name, table, redis_url):
    client = redis.Redis.from_url(redis_url)
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    stale = api.from_existing(name, vectorizer=table)  # opened before the route below exists
    router.add_route(Route(name="x", model="m/cheap", references=["shared d=0.3"], distance_threshold=0.5))
    with pytest.raises(RouteExistsError):  # the other writer's route won; its shared reference stays
        stale.add_route(Route(name="x", references=["stray d=0.01", "shared d=0.3"], distance_threshold=0.5))
    assert len(list(client.scan_iter(f"{name}:x:*"))) == 1
    assert api.from_existing(name, vectorizer=table)("query").name == "pricey"  # not x, through the stray
    router.remove_route("x")
    with pytest.raises(RouteNotFoundError):  # stale still lists x: the route was removed under it
        stale.add_route_references("x", ["stray d=0.01"])
    assert list(client.scan_iter(f"{name}:x:*")) == []
    with pytest.raises(ConfigError, match="min_route"):
        router.add_route(Route(name="fl", references=["fl d=0.02"], floor={"min_route": "ghost"}))
    assert list(client.scan_iter(f"{name}:fl:*")) == []
    router.add_route(Route(name="x", model="m/cheap", references=["anew d=0.4"], distance_threshold=0.5))
    assert api.from_existing(name, vectorizer=table)("query").name == "pricey"  # a re-made x finds no stray
    client.close()


@pytest.mark.parametrize("how", ["remove_route", "clear"])
def test_removing_through_a_stale_object_deletes_the_other_writers_references_too(api, name, table, redis_url, how):
    # Only the references the stale object knew were deleted: the other writer's stayed in the index and
    # joined a route of the same name made later (a "weather" route matched through a greeting).
    client = redis.Redis.from_url(redis_url)
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    stale = api.from_existing(name, vectorizer=table)
    router.add_route_references("cheap", ["theirs d=0.01"])
    if how == "remove_route":
        router.update_routing_config({"default_route": None})
        stale.remove_route("cheap")
    else:
        stale.clear()
    assert list(client.scan_iter(f"{name}:cheap:*")) == []
    client.close()


def test_an_async_change_cancelled_while_it_waits_its_turn_writes_no_reference(name, table, redis_url):
    # The references were written before the change waited for the object's write lock: cancelled
    # there (a client's timeout), they stayed in the index for good, delete() included.
    from redisvl_llmrouter import AsyncSemanticRouter

    async def run() -> None:
        router = await AsyncSemanticRouter.create(name=name, routes=tiers(), vectorizer=table, redis_url=redis_url)
        lock = router._core.write_lock  # another write of this object under way
        await lock.acquire()
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(router.add_route_references("cheap", ["stray d=0.01"]), 0.1)
            with pytest.raises(TimeoutError):
                new = Route(name="x", model="m/x", references=["x d=0.3"], distance_threshold=0.5)
                await asyncio.wait_for(router.add_route(new), 0.1)
        finally:
            lock.release()
        await router.delete()
        await router.close()

    asyncio.run(run())
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(f"{name}:*")) == []
    client.close()


EMBEDDING_THREADS: set[int] = set()
EMBEDDED_TEXTS: list[str] = []


class SyncOnlyVectorizer(BaseVectorizer):
    """A vectorizer with no async code of its own, like RedisVL's ``HFTextVectorizer``: it notes the
    thread each embedding ran on (in ``EMBEDDING_THREADS``)."""

    def _embed(self, content: Any, **kwargs: Any) -> list[float]:
        from conftest import TableVectorizer

        EMBEDDING_THREADS.add(threading.get_ident())
        EMBEDDED_TEXTS.append(str(content))
        return TableVectorizer.vector(str(content))

    def _embed_many(self, contents: list[Any], batch_size: int = 10, **kwargs: Any) -> list[list[float]]:
        return [self._embed(c) for c in contents]


@pytest.mark.parametrize("kind", ["base", "custom"])
def test_the_async_router_embeds_off_the_event_loop_with_a_vectorizer_that_has_no_async_code(
    kind, name, redis_url, caplog
):
    # RedisVL's aembed_many falls back to the sync model *on the loop* (with a warning per call): a local
    # model's forward pass, or a blocking HTTP call, held every other task of the loop meanwhile.
    from redisvl.utils.vectorize import CustomVectorizer

    from redisvl_llmrouter import AsyncSemanticRouter

    sync_only = SyncOnlyVectorizer(model="sync-only", dims=3)
    vectorizer = (
        sync_only if kind == "base" else CustomVectorizer(embed=sync_only._embed, embed_many=sync_only._embed_many)
    )

    async def run() -> int:
        router = await AsyncSemanticRouter.create(name=name, routes=tiers(), vectorizer=vectorizer, redis_url=redis_url)
        EMBEDDING_THREADS.clear()
        try:
            assert (await router("query")).name == "pricey"
        finally:
            await router.delete()
            await router.close()
        return threading.get_ident()

    with caplog.at_level(logging.WARNING):
        loop_thread = asyncio.run(run())
    assert EMBEDDING_THREADS and loop_thread not in EMBEDDING_THREADS
    assert "Falling back to sync" not in caplog.text


def test_the_async_router_keeps_using_an_async_embeddings_cache_of_a_sync_only_vectorizer(name, redis_url, caplog):
    # Sent to a worker thread, the vectorizer used the cache's sync client, which one built for async code
    # lacks: every route warned, missed the cache (RedisVL tried localhost:6379) and embedded again.
    import redis.asyncio as aredis
    from redisvl.extensions.cache.embeddings import EmbeddingsCache

    from redisvl_llmrouter import AsyncSemanticRouter

    async def run() -> int:
        client = aredis.from_url(redis_url)
        cache = EmbeddingsCache(name=f"{name}-ec", async_redis_client=client)
        vectorizer = SyncOnlyVectorizer(model="sync-only", dims=3, cache=cache)
        router = await AsyncSemanticRouter.create(
            name=name, routes=tiers(), vectorizer=vectorizer, redis_url=redis_url, embedding_cache_size=0
        )
        try:
            EMBEDDED_TEXTS.clear()
            for _ in range(3):
                assert (await router("query")).name == "pricey"
            return len(await client.keys(f"{name}-ec:*"))
        finally:
            await router.delete()
            await router.close()
            await cache.aclear()
            await client.aclose()

    with caplog.at_level(logging.WARNING):
        cached = asyncio.run(run())
    assert EMBEDDED_TEXTS == ["query"] and cached >= 1
    assert "Error accessing embedding cache" not in caplog.text


def test_only_the_object_that_stored_a_router_counts_as_its_creator(api, name, table):
    # `llmrouter learn` deletes a router it created when its work fails: one another learn had stored a
    # moment before (identical, so taken up without a word) was deleted with that learn's rows.
    first = api.create(name=name, routes=tiers(), vectorizer=table)
    again = api.create(name=name, routes=tiers(), vectorizer=table)
    assert core_of(first).created and not core_of(again).created


def test_a_change_refused_because_the_config_is_lost_leaves_no_reference_behind(api, name, table, redis_url):
    client = redis.Redis.from_url(redis_url)
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    getattr(router, "unwrapped", router).auto_recover = False
    client.delete(config_key(name))
    with pytest.raises(RouterStateLostError):
        router.add_route_references("cheap", ["stray d=0.01"])
    assert len(list(client.scan_iter(f"{name}:cheap:*"))) == 1  # its own reference, not the stray
    client.close()


def test_a_stale_object_of_a_router_recreated_with_another_dtype_writes_nothing(api, name, table, redis_url):
    from conftest import TableVectorizer
    from redisvl.utils.vectorize import CustomVectorizer

    client = redis.Redis.from_url(redis_url)
    stale = api.create(name=name, routes=tiers(), vectorizer=table)  # float32
    half = CustomVectorizer(embed=TableVectorizer.vector, dtype="float16")
    api.create(name=name, routes=tiers(), vectorizer=half, overwrite=True)
    with pytest.raises(VectorizerMismatchError, match="recreated with another vectorizer"):
        stale.add_route(Route(name="x", model="m/x", references=["x d=0.3"], distance_threshold=0.5))
    assert list(client.scan_iter(f"{name}:x:*")) == []
    fresh = api.from_existing(name, vectorizer=half)  # the stored identity is still float16's
    assert fresh("query").name == "pricey"
    client.close()


def test_a_name_another_applications_search_index_holds_is_refused_not_attached_to(api, name, table, redis_url):
    # It was attached to: the router wrote its config and answered every query with no match.
    client = redis.Redis.from_url(redis_url)
    client.execute_command("FT.CREATE", name, "ON", "HASH", "PREFIX", "1", "prod:", "SCHEMA", "title", "TEXT")
    with pytest.raises(RouterExistsError, match=r"not a router's \(it covers the keys \['prod:'\]"):
        api.create(name=name, routes=tiers(), vectorizer=table)
    assert client.exists(config_key(name)) == 0
    assert api.create(name=name, routes=tiers(), vectorizer=table, overwrite=True)("query").name == "pricey"
    client.close()


def test_from_existing_attaches_while_another_writer_keeps_changing_the_router(name, table, redis_url):
    # It read the definition, then compared it with a second read: a change in between was "a different
    # router named ...; pass overwrite=True", advice that would have replaced the other writer's router.
    import threading

    from redisvl_llmrouter import SemanticRouter

    writer = SemanticRouter(name=name, routes=tiers(), vectorizer=table, redis_url=redis_url)
    done = threading.Event()

    def keep_changing() -> None:
        step = 0
        while not done.is_set():
            step += 1
            writer.update_route_thresholds({"cheap": 0.3 + (step % 2) * 0.01})

    thread = threading.Thread(target=keep_changing)
    thread.start()
    try:
        attached = [SemanticRouter.from_existing(name, vectorizer=table, redis_url=redis_url) for _ in range(80)]
    finally:
        done.set()
        thread.join()
    assert {r.route_thresholds["cheap"] for r in attached} <= {0.3, 0.31, 0.5}
    for router in attached:
        router.close()
    with pytest.raises(RouterExistsError):  # an override given is still compared, not silently dropped
        SemanticRouter.from_existing(
            name, vectorizer=table, redis_url=redis_url, routing_config=RoutingConfig(cost_weight=0.9)
        )
    writer.delete()


def test_update_routing_config_refuses_none_rather_than_resetting_every_setting(api, name, table):
    config = RoutingConfig(cost_optimization=True, cost_weight=0.3, max_k=2)
    router = api.create(name=name, routes=tiers(), vectorizer=table, routing_config=config)
    with pytest.raises(ConfigError, match="got None"):
        router.update_routing_config(None)
    assert api.from_existing(name, vectorizer=table).routing_config == config


def test_a_failed_save_leaves_the_object_as_redis_holds_it(api, name, table, redis_url):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    client = redis.Redis.from_url(redis_url)
    key = config_key(name)
    stored = client.execute_command("JSON.GET", key)
    client.delete(key)
    client.set(key, "another application's value")  # every save now fails, after the change was made locally
    try:
        with pytest.raises(ConfigError, match="another Redis type"):
            router.add_route(extra(1))
        with pytest.raises(ConfigError, match="another Redis type"):
            router.update_routing_config({"cost_weight": 0.9})
        with pytest.raises(ConfigError, match="another Redis type"):
            router.remove_route("cheap")
        assert router.route_names == ["cheap", "pricey"]
        assert router.routing_config == RoutingConfig()
    finally:
        client.delete(key)
        client.execute_command("JSON.SET", key, "$", stored)
        client.close()
    router.add_route(extra(2))  # the object is still in step with Redis: its next write lands
    assert api.from_existing(name, vectorizer=table).route_names == ["cheap", "pricey", "extra2"]
    changed_in_place = extra(3)
    changed_in_place.metadata["handle"] = object()  # past the validator, which refuses it at construction
    with pytest.raises(ConfigError, match="cannot be stored as JSON"):
        router.add_route(changed_in_place)
    assert router.route_names == ["cheap", "pricey", "extra2"]
    router.update_routing_config({"max_k": 2})
    assert api.from_existing(name, vectorizer=table).routing_config.max_k == 2
    thresholds = router.route_thresholds
    with pytest.raises(ConfigError):  # one valid and one invalid threshold: neither is applied
        router.update_route_thresholds({"cheap": 0.1, "pricey": 5.0})
    assert router.route_thresholds == thresholds


def test_a_deleted_router_object_refuses_to_work_instead_of_rebuilding_the_router(api, name, table, caplog):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    definition = router.to_dict()
    router.delete()
    calls = [
        lambda: router("query"),
        lambda: router.add_route(extra(1)),
        lambda: router.update_routing_config({"cost_weight": 0.5}),
        router.recover,
        router.delete,
    ]
    with caplog.at_level(logging.WARNING):
        for call in calls:
            with pytest.raises(RouterDeletedError, match=f"Router '{name}' was deleted"):
                call()
    assert "rebuilding" not in caplog.text
    with pytest.raises(ConfigError, match="No router named"):
        api.from_existing(name, vectorizer=table)
    assert api.from_dict(definition, vectorizer=table)("query").name == "pricey"  # created again on purpose


# ----------------------------------------------------------------- refresh: another object's change
def closest() -> Route:
    return Route(name="closest", model="m/closest", references=["closest d=0.01"], distance_threshold=0.5)


def core_of(router: Any) -> Any:
    return getattr(router, "unwrapped", router)._core


def recorded(op: Any, seen: list[Any]) -> Any:
    """A core operation that notes every request it makes into ``seen``."""
    request = next(op)
    try:
        while True:
            seen.append(request)
            request = op.send((yield request))
    except StopIteration as stop:
        return stop.value


def test_refresh_takes_up_another_objects_route_and_is_one_small_read_when_nothing_changed(api, name, table, redis_url):
    from redisvl_llmrouter.ops import Command
    from redisvl_llmrouter.router import drive

    first = api.create(name=name, routes=tiers(), vectorizer=table)
    second = api.from_existing(name, vectorizer=table)
    second.add_route(closest())
    assert first("query").name == "pricey"  # the new route is in the index, but first does not know it
    assert first.route_names == ["cheap", "pricey"]
    assert first.refresh() is True
    assert first.route_names == ["cheap", "pricey", "closest"]
    assert (first("query").name, first("query").model) == ("closest", "m/closest")
    assert first.refresh() is False
    assert second.refresh() is False  # its own save: nothing to take up
    seen: list[Any] = []
    with redis.Redis.from_url(redis_url) as client:
        assert drive(recorded(core_of(first).refresh(), seen), client) is False
    assert seen == [Command(("JSON.GET", config_key(name), "$.version", "$.generation"))]
    first.update_routing_config({"max_k": 2})  # first's own save: second takes it up, first has it
    assert first.refresh() is False
    assert second.routing_config.max_k == 1
    assert second.refresh() is True
    assert second.routing_config.max_k == 2


def test_refresh_adopts_a_router_recreated_with_overwrite(api, name, table):
    first = api.create(name=name, routes=tiers(), vectorizer=table)
    generation = core_of(first).generation
    api.create(name=name, routes=[closest(), tiers()[0]], vectorizer=table, overwrite=True)
    assert first("query").name == "cheap"  # its old definition: pricey's reference is gone, closest unknown
    assert first.refresh() is True
    assert core_of(first).generation not in ("", generation)
    assert first.route_names == ["closest", "cheap"]
    assert first("query").name == "closest"
    assert first.refresh() is False
    first.add_route(tiers()[1])  # in step with the new creation: its save lands
    assert api.from_existing(name, vectorizer=table).route_names == ["closest", "cheap", "pricey"]


def overwrite_while_routing(
    name: str, redis_url: str, definitions: list[tuple[list[Route], Any]], times: int = 20
) -> tuple[collections.Counter[Any], list[Exception]]:
    """Store the ``(routes, vectorizer)`` definitions in turn with ``overwrite=True``, ``times`` times in all,
    while an object made on the first routes ``"query"`` in a loop: the routes it answered, what it raised."""
    import threading

    SemanticRouter(name=name, routes=definitions[0][0], vectorizer=definitions[0][1], redis_url=redis_url)
    user = SemanticRouter.from_existing(name, vectorizer=definitions[0][1], redis_url=redis_url)
    stop, seen, errors = threading.Event(), collections.Counter(), []

    def serve() -> None:
        while not stop.is_set():
            try:
                seen[user("query").name] += 1
            except Exception as exc:
                errors.append(exc)

    serving = threading.Thread(target=serve)
    serving.start()
    try:
        for i in range(1, times + 1):
            routes, vectorizer = definitions[i % len(definitions)]
            SemanticRouter(name=name, routes=routes, vectorizer=vectorizer, redis_url=redis_url, overwrite=True)
    finally:
        stop.set()
        serving.join()
    return seen, errors


def test_overwrite_replaces_a_router_that_an_object_serving_it_rebuilt_meanwhile(name, table, redis_url):
    """An object routing on the router finds its index gone mid-overwrite (the new definition has other
    vectors: the index is dropped and made again) and rebuilds it from its own definition (auto-recovery):
    the overwrite's commit then lost to it, and ``overwrite=True`` was refused with "Pass overwrite=True to
    replace it" (9 of 20 overwrites), its references left behind."""
    from redisvl.utils.vectorize import CustomVectorizer

    wide = CustomVectorizer(embed=table.embed, embed_many=lambda texts, **_: [table.embed(t) for t in texts])
    wide.dtype = "float64"  # the same vectors, stored in another type: the index must be made again
    overwrite_while_routing(name, redis_url, [(tiers(), table), ([closest()], wide)])
    final = SemanticRouter.from_existing(name, vectorizer=table, redis_url=redis_url)
    assert final.route_names == ["cheap", "pricey"]  # the last overwrite's
    with redis.Redis.from_url(redis_url) as client:
        assert not list(client.scan_iter(f"{name}:closest:*"))  # no reference of the router it replaced
    final.delete()


def test_overwrite_swaps_the_definition_in_place_so_routing_meanwhile_always_matches(name, table, redis_url):
    """Dropping the index to overwrite left a router being served with no index, then with only part of
    its references: searches meanwhile failed ("no such index") or matched nothing. With the same vectors
    the index now stays and every search finds the old definition's references or the new one's."""
    second = [tiers()[0], Route(name="pricey", model="m/pricey", cost=12.0, references=["pricey2 d=0.05"])]
    seen, errors = overwrite_while_routing(name, redis_url, [(tiers(), table), (second, table)], times=60)
    assert errors == []
    assert set(seen) == {"pricey"} and seen["pricey"] > 0
    final = SemanticRouter.from_existing(name, vectorizer=table, redis_url=redis_url)
    assert final.to_dict()["routes"][1]["references"] == ["pricey d=0.05"]  # the last overwrite's
    with redis.Redis.from_url(redis_url) as client:
        assert not client.exists(reference_key(name, "pricey", "pricey2 d=0.05"))  # the replaced definition's
        assert client.ft(name).info()["num_docs"] in (2, "2")
    final.delete()


def test_refresh_refuses_a_router_recreated_with_another_vectorizer(api, name, table):
    from redisvl.utils.vectorize import CustomVectorizer

    first = api.create(name=name, routes=tiers(), vectorizer=table)
    wider = CustomVectorizer(
        embed=lambda t: [1.0, 0.0, 0.0, 0.0], embed_many=lambda ts, **_: [[1.0, 0, 0, 0] for _ in ts]
    )
    api.create(name=name, routes=tiers(), vectorizer=wider, overwrite=True)
    with pytest.raises(VectorizerMismatchError, match="dims: stored 4, given 3"):
        first.refresh()
    assert first.route_names == ["cheap", "pricey"]


def test_recovery_never_writes_its_vectors_into_a_router_recreated_with_another_vectorizer(api, name, table, redis_url):
    """An object whose router was recreated elsewhere with other vectors, recovering (the outcome memory's
    index not made yet, or references gone), took the new definition up and wrote its own vectors into
    it: the recreated router then held vectors of the wrong model or type."""
    from redisvl.utils.vectorize import CustomVectorizer

    first = api.create(name=name, routes=tiers(), vectorizer=table)
    wide = CustomVectorizer(embed=table.embed, embed_many=lambda texts, **_: [table.embed(t) for t in texts])
    wide.dtype = "float64"
    api.create(name=name, routes=[closest()], vectorizer=wide, overwrite=True)
    with redis.Redis.from_url(redis_url) as client:
        client.delete(reference_key(name, "closest", "closest d=0.01"))  # lost: recovery would write it again
        with pytest.raises(VectorizerMismatchError, match="dtype: stored 'float64', given 'float32'"):
            first.recover()
        assert not client.exists(reference_key(name, "closest", "closest d=0.01"))
        assert not client.exists(reference_key(name, "cheap", "cheap d=0.2"))


def test_an_overwrite_deletes_only_references_the_config_stored_then_does_not_list(name, redis_url):
    """The references an overwrite replaced are deleted by a script that reads the config as it runs: a
    key that another writer's definition, committed meanwhile, lists again stays (else it was gone while
    listed: 2 of 200 rounds of two concurrent overwrites)."""
    from redisvl_llmrouter.search import DELETE_UNLISTED_SCRIPT

    listed, unlisted = ("a", "x d=0.1"), ("b", "y d=0.2")
    keys = [reference_key(name, *listed), reference_key(name, *unlisted)]
    with redis.Redis.from_url(redis_url) as client:
        client.json().set(config_key(name), "$", {"routes": [{"name": "a", "references": ["x d=0.1"]}]})
        for key in keys:
            client.hset(key, "route_name", "z")
        deleted = client.eval(DELETE_UNLISTED_SCRIPT, 1 + len(keys), config_key(name), *keys, *listed, *unlisted)
        assert (deleted, client.exists(keys[0]), client.exists(keys[1])) == (1, 1, 0)
        client.delete(config_key(name), *keys)


def test_refresh_leaves_a_lost_config_to_recovery_and_a_deleted_object_refuses_it(api, name, table, redis_url):
    first = api.create(name=name, routes=tiers(), vectorizer=table)
    with redis.Redis.from_url(redis_url) as client:
        client.delete(config_key(name))
        assert first.refresh() is False
        assert not client.exists(config_key(name))  # not rebuilt by refresh
        client.set(config_key(name), "another application's value")
        with pytest.raises(ConfigError, match="another Redis type"):
            first.refresh()
        client.delete(config_key(name))
    assert first.recover() is True
    assert first.refresh() is False
    first.delete()
    with pytest.raises(RouterDeletedError, match=f"Router '{name}' was deleted"):
        first.refresh()


def test_clear_and_delete(api, name, table):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    router.clear()
    assert router.routes == []
    assert api.from_existing(name, vectorizer=table).routes == []
    with pytest.raises(RouterEmptyError, match="has no routes"):  # a ConfigError: the router's state
        router("query")
    router.delete()
    with pytest.raises(RouterNotFoundError, match="No router named"):  # a ConfigError too
        api.from_existing(name, vectorizer=table)


def test_a_batch_may_be_any_ordered_iterable_and_an_unordered_one_is_refused_before_any_work(api, name, table):
    # A generator failed after the embedding and the search ("not subscriptable"), a dict with KeyError.
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    assert [m.name for m in router.route_batch(t for t in ["query", "cheap d=0.2"])] == ["pricey", "cheap"]
    assert [m.name for m in router.route_batch(("query",), strategy="cost")] == ["pricey"]
    assert len(router.distances(t for t in ["query"])) == 1
    for unordered in ({"query"}, {"query": 1}, 7):
        with pytest.raises(InvalidQueryError, match="takes a list of statements, got"):
            router.route_batch(unordered)


def test_routing_by_vector_and_in_batches(api, name, table):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    assert router(vector=[1.0, 0.0, 0.0]).name == "pricey"
    matches = router.route_batch(vectors=[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    assert [m.name for m in matches] == ["pricey", None]
    batch = router.route_batch(["query", "query"])
    assert batch[1].name == "pricey"
    # What is not recorded carries no request id that feedback would refuse: batches, route_many, and
    # a single route without record=True.
    unrecorded = [*matches, *batch, *router.route_many("query"), router("query")]
    assert [m.request_id for m in unrecorded] == [None] * 6
    assert router("query", record=True).request_id.startswith("req-")


def test_an_identical_router_is_reused_and_a_different_one_is_refused(api, name, table):
    first = api.create(name=name, routes=tiers(), vectorizer=table)
    first.add_route_references("cheap", ["cheap2 d=0.3"])
    with pytest.raises(RouterExistsError, match="different router"):
        api.create(name=name, routes=tiers(), vectorizer=table)
    assert api.from_existing(name, vectorizer=table).get("cheap").references == ["cheap d=0.2", "cheap2 d=0.3"]
    replaced = api.create(name=name, routes=tiers(), vectorizer=table, overwrite=True)
    assert replaced.get("cheap").references == ["cheap d=0.2"]
    assert len(replaced.get_route_references("cheap")) == 1


def test_another_vectorizer_is_refused_with_what_differs(api, name, table):
    from redisvl.utils.vectorize import CustomVectorizer

    api.create(name=name, routes=tiers(), vectorizer=table)
    wider = CustomVectorizer(
        embed=lambda t: [1.0, 0.0, 0.0, 0.0], embed_many=lambda ts, **_: [[1.0, 0, 0, 0] for _ in ts]
    )
    with pytest.raises(VectorizerMismatchError, match="dims: stored 3, given 4"):
        api.create(name=name, routes=tiers(), vectorizer=wider)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"statement": ""}, InvalidQueryError, "empty"),
        ({"statement": "   "}, InvalidQueryError, "empty"),
        ({"statement": "x" * 1_000_001}, InvalidQueryError, "limit"),
        ({"statement": 42}, InvalidQueryError, "string"),
        ({}, InvalidQueryError, "statement or a vector"),
        ({"vector": [1.0, 0.0]}, VectorDimensionError, "3-dimensional"),
        ({"vector": [0.0, 0.0, 0.0]}, InvalidQueryError, "all zeros"),
        ({"vector": [math.nan, 0.0, 1.0]}, InvalidQueryError, "NaN"),
    ],
)
def test_bad_queries_raise_clear_errors(api, name, table, kwargs, error, message):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    with pytest.raises(error, match=message):
        router(**kwargs)
    with pytest.raises(error, match=message):
        router.route_many(**kwargs)


def test_bad_definitions_raise_clear_errors(api, name, table):
    with pytest.raises(ConfigError, match="Duplicate route name"):
        api.create(name=name, routes=[*tiers(), tiers()[0]], vectorizer=table)
    with pytest.raises(ConfigError, match="Invalid router name"):
        api.create(name="has space", routes=tiers(), vectorizer=table)
    with pytest.raises(ConfigError, match="cost"):
        api.from_dict(
            {"name": name, "routes": [{"name": "r", "references": ["r d=0.1"], "cost": -1}]}, vectorizer=table
        )
    with pytest.raises(ConfigError, match="routes"):
        api.from_dict({"name": name, "routes": "not a list"}, vectorizer=table)


# ----------------------------------------------------------------- route_many applies the policy, as __call__
def floored() -> list[Route]:
    """``cheap`` is nearest, but the query also matches a floor that lifts it to ``pricey``'s models."""
    return [
        Route(name="cheap", model="m/cheap", cost=1.0, references=["cheap d=0.05"], distance_threshold=0.5),
        Route(name="pricey", model="m/pricey", cost=10.0, references=["pricey d=0.2"], distance_threshold=0.5),
        Route(
            name="sensitive", references=["sensitive d=0.1"], distance_threshold=0.5, floor=Floor(min_route="pricey")
        ),
    ]


def test_route_many_leads_with_the_match_call_gives_floors_included(api, name, table):
    router = api.create(name=name, routes=floored(), vectorizer=table)
    single = router("query")
    assert (single.name, single.model) == ("cheap", "m/pricey")  # the floor holds
    first, second = router.route_many("query", max_k=3)
    assert (first.name, first.model, first.decision) == (single.name, single.model, single.decision)
    assert first.decision.floors == ["sensitive"]
    assert (second.name, second.model, second.decision) == ("pricey", "m/pricey", None)  # the next passing route
    assert [m.name for m in router.route_many("query")] == ["cheap"]  # max_k defaults to the config's 1


def test_route_many_orders_by_the_ranking_score_as_call_does_even_against_confidence(api, name, table):
    # With the cost penalty the cheaper, farther route ranks first (docs/api.md): its confidence is lower.
    config = RoutingConfig(cost_optimization=True, cost_weight=0.3)
    router = api.create(name=name, routes=tiers(), vectorizer=table, routing_config=config)
    matches = router.route_many("query", max_k=2)
    assert [m.name for m in matches] == ["cheap", "pricey"]
    assert (matches[0].name, matches[0].model) == (router("query").name, router("query").model)
    assert matches[0].score < matches[1].score
    assert matches[0].confidence < matches[1].confidence


# ----------------------------------------------------------------- reads recover a router Redis lost
def lose_state(redis_url: str, name: str) -> None:
    """What Redis restarting empty does to one router, without touching the other tests' keys:
    its index, outcome memory index and every key of its own are gone."""
    client = redis.Redis.from_url(redis_url)
    try:
        for index in (name, memory.index_name(name)):
            with contextlib.suppress(redis.ResponseError):  # not created yet
                client.execute_command("FT.DROPINDEX", index)
        for pattern in (f"{name}:*", f"llmrouter:{{{name}}}*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


def test_reads_after_redis_lost_the_router_rebuild_it_as_routing_does(api, name, table, redis_url, tmp_path, caplog):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    with caplog.at_level(logging.WARNING):
        lose_state(redis_url, name)
        assert router.predict(["cheap d=0.2"]) == [None]  # the memory index is back, empty
        lose_state(redis_url, name)
        refs = router.get_route_references("cheap")
        assert [r["reference"] for r in refs] == ["cheap d=0.2"]
        lose_state(redis_url, name)
        path = router.export_with_embeddings(tmp_path / "r.json")
        with redis.Redis.from_url(redis_url) as client:  # the outcome memory's index alone
            client.execute_command("FT.DROPINDEX", memory.index_name(name))
        assert [m.name for m in router.route_batch(["query"])] == ["pricey"]
    assert caplog.text.count("rebuilding it") == 4
    assert api.from_pretrained(str(path), name=f"{name}-copy", vectorizer=table)("query").name == "pricey"
    assert router("query").name == "pricey"


def test_reads_after_the_loss_raise_the_typed_error_with_auto_recover_off(api, name, table, redis_url, tmp_path):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    getattr(router, "unwrapped", router).auto_recover = False
    lose_state(redis_url, name)
    for call in (
        lambda: router.predict(["cheap d=0.2"]),
        lambda: router.get_route_references("cheap"),
        lambda: router.export_with_embeddings(tmp_path / "r.json"),
    ):
        with pytest.raises(RouterStateLostError, match="is gone"):
            call()
    assert router.recover() is True
    assert len(router.get_route_references("cheap")) == 1


# ----------------------------------------------------------------- arguments of the wrong shape: typed errors
def test_live_stats_refuses_a_bare_model_name_as_predict_and_route_batch_refuse_a_bare_statement(api, name, table):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    with pytest.raises(InvalidQueryError, match=r"\['m/cheap'\]"):
        router.live_stats("m/cheap")
    assert list(router.live_stats(["m/cheap"])) == ["m/cheap"]
    with pytest.raises(InvalidQueryError):
        router.route_batch("query")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"unavailable": ["m/cheap"]}, "map model names to the reason"),
        ({"unavailable": {"m/cheap": 1}}, "map model names to the reason"),
        ({"stats": {"m/cheap": {"bogus": 1}}}, "unknown field"),
        ({"stats": {"m/cheap": {"latency_ms": "fast"}}}, "must be a finite number"),
        ({"stats": {"m/cheap": 300.0}}, "ModelStats or a mapping"),
        ({"stats": ["m/cheap"]}, "stats must map"),
    ],
)
def test_route_options_of_the_wrong_shape_are_invalid_queries(api, name, table, kwargs, message):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    with pytest.raises(InvalidQueryError, match=message):
        router("query", **kwargs)
    match = router("query", unavailable={"m/pricey": "circuit open"}, stats={"m/cheap": {"latency_ms": 300.0}})
    assert (match.name, match.model) == ("pricey", "m/cheap")  # the route's own model is unavailable
    assert [(e.model, e.reason) for e in match.decision.excluded] == [("m/pricey", "circuit open")]


def test_settings_of_the_wrong_type_are_config_errors(api, name, table):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    with pytest.raises(ConfigError, match="mapping of settings, got int"):
        router.update_routing_config(42)
    with pytest.raises(ConfigError, match="mapping of settings, got str"):
        api.create(name=f"{name}-b", routes=tiers(), vectorizer=table, routing_config="fast")
    for size in ("x", -1, True, 1.5):
        with pytest.raises(ConfigError, match="embedding_cache_size"):
            api.create(name=f"{name}-c", routes=tiers(), vectorizer=table, embedding_cache_size=size)
    assert api.create(name=f"{name}-d", routes=tiers(), vectorizer=table, embedding_cache_size=0)("query")


def test_from_pretrained_and_from_dict_take_the_settings_they_are_given(api, name, table, tmp_path):
    source = api.create(name=name, routes=tiers(), vectorizer=table)
    path = source.export_with_embeddings(tmp_path / "r.json")
    config = RoutingConfig(default_route="cheap", max_k=2)
    learning = LearningConfig(neighbours=5)
    catalog = ModelCatalog(models=[ModelSpec(name="m/other", input_price=1.0, output_price=1.0)])
    given = {"routing_config": config, "learning": learning, "catalog": catalog}
    loaded = api.from_pretrained(str(path), name=f"{name}-p", vectorizer=table, **given)
    copied = api.from_dict(source.to_dict(), name=f"{name}-d", vectorizer=table, **given)
    for router in (loaded, copied):
        assert (router.routing_config, router.learning, router.catalog) == (config, learning, catalog)
    with pytest.raises(ConfigError, match="routes from the config"):
        api.from_pretrained(str(path), name=f"{name}-r", vectorizer=table, routes=tiers())


# ----------------------------------------------------------------- exports in every vector dtype
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_an_export_loads_back_bit_for_bit_in_every_vector_dtype(api, name, dtype, tmp_path):
    from conftest import TableVectorizer
    from redisvl.utils.vectorize import CustomVectorizer

    from redisvl_llmrouter import pretrained

    def vectorizer() -> CustomVectorizer:
        vector = TableVectorizer.vector
        return CustomVectorizer(embed=vector, embed_many=lambda texts, **_: [vector(t) for t in texts], dtype=dtype)

    router = api.create(name=name, routes=tiers(), vectorizer=vectorizer())
    router.learn([{"prompt": "asked d=0.1", "outcomes": {"m/cheap": {"quality": 1.0}}}])
    path = router.export_with_embeddings(tmp_path / "r.json")
    exported = pretrained.read(path)
    assert exported.vectorizer.dtype == dtype

    copy = api.from_pretrained(str(path), name=f"{name}-copy", vectorizer=vectorizer())
    again = pretrained.read(copy.export_with_embeddings(tmp_path / "again.json"))
    assert (again.routes, again.outcomes) == (exported.routes, exported.outcomes)  # the same vectors, to the bit
    assert copy("query").distance == router("query").distance
    assert copy.memory_info().rows == 1


# ----------------------------------------------------------------- routes come from the definition
def test_from_dict_from_yaml_and_from_existing_refuse_routes_as_from_pretrained_does(api, name, table, tmp_path):
    source = api.create(name=name, routes=tiers(), vectorizer=table)
    mine = [Route(name="mine", model="m/mine", references=["mine d=0.1"], distance_threshold=0.5)]
    source.to_yaml(tmp_path / "r.yaml")
    for load in (
        lambda: api.from_dict({**source.to_dict(), "name": f"{name}-d"}, vectorizer=table, routes=mine),
        lambda: api.from_yaml(tmp_path / "r.yaml", name=f"{name}-y", vectorizer=table, routes=mine),
        lambda: api.from_existing(name, vectorizer=table, routes=mine),
    ):
        with pytest.raises(ConfigError, match="routes from the router definition"):
            load()
    assert api.from_existing(name, vectorizer=table).route_names == ["cheap", "pricey"]


# ----------------------------------------------------------------- more arguments of the wrong kind: typed errors
def test_call_statistics_of_the_wrong_kind_are_refused_and_nothing_is_counted(api, name, table):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    model = f"{name}/model"  # live statistics are shared by model name: one of this test's own
    for success in ("no", None, 1):  # "no" would count as a success, None as a failure
        with pytest.raises(InvalidFeedbackError, match="success must be True or False"):
            router.call_finished(model, success=success, latency_ms=10.0)
    for latency in ("5", True, -5, math.inf):
        with pytest.raises(InvalidFeedbackError, match="latency_ms must be a finite number >= 0"):
            router.call_finished(model, success=True, latency_ms=latency)
    for timeout in (-1, 0, True, "5", 1.5):  # a timeout in the past would never count as in flight
        with pytest.raises(InvalidQueryError, match="timeout_ms must be a whole number"):
            router.call_started(model, "call-1", timeout_ms=timeout)
    with pytest.raises(InvalidQueryError, match="request_id must be a non-empty string"):
        router.call_started(model, None)
    stats = router.live_stats([model])[model]
    assert (stats.requests, stats.inflight) == (0, 0)
    router.call_started(model, "call-1", timeout_ms=60_000)
    router.call_finished(model, success=False, latency_ms=12, request_id="call-1")
    stats = router.live_stats([model])[model]
    assert (stats.requests, stats.failures, stats.inflight) == (1, 1, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"constraints": {"max_cost": True}}, "max_cost: Value error, must be a number, got True"),
        ({"constraints": {"min_context": "5"}}, "min_context: Value error, must be a number"),
        ({"constraints": {"best_effort": "yes"}}, "best_effort: Input should be a valid boolean"),
        ({"record": "no"}, "record must be True or False"),
        ({"strategy": "latency", "stats": {"m/cheap": {"latency_ms": -5}}}, r"\['latency_ms'\] must be >= 0"),
        ({"strategy": "least_loaded", "stats": {"m/cheap": {"inflight": -3}}}, r"\['inflight'\] must be >= 0"),
        ({"stats": {"m/cheap": {"success_rate": 1.5}}}, r"\['success_rate'\] must be in \[0, 1\]"),
    ],
)
def test_route_options_that_would_be_coerced_into_something_else_are_invalid_queries(api, name, table, kwargs, message):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    with pytest.raises(InvalidQueryError, match=message):
        router("query", **kwargs)


def test_add_route_references_needs_references_and_learn_a_model_map_that_maps(api, name, table):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    for references in (None, 5):
        with pytest.raises(InvalidQueryError, match="references must be a string or a list of strings"):
            router.add_route_references("cheap", references)
    with pytest.raises(InvalidFeedbackError, match="model_map must map model names"):
        router.learn([{"prompt": "x d=0.1", "outcomes": {"gpt-9": {"quality": 1.0}}}], model_map=["gpt-9"])
    assert router.get("cheap").references == ["cheap d=0.2"] and router.memory_info().rows == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"redis_url": 6379}, "redis_url must be a URL string"),
        ({"connection_kwargs": "max_connections=8"}, "connection_kwargs must be a mapping"),
        ({"connection_kwargs": {"timeout": "x"}}, "connection_kwargs timeout must be the seconds"),
        ({"connection_kwargs": {"max_connections": -1}}, "connection_kwargs max_connections must be a whole number"),
        ({"connection_kwargs": {"no_such_setting": 1}}, "Invalid Redis connection setting in connection_kwargs"),
        ({"dtype": "float33"}, "Unsupported dtype 'float33'"),
    ],
)
def test_connection_and_vector_settings_of_the_wrong_kind_are_config_errors_naming_them(
    api, name, table, kwargs, message
):
    with pytest.raises(ConfigError, match=message) as caught:
        api.create(name=name, routes=tiers(), **({"vectorizer": table} if "dtype" not in kwargs else {}), **kwargs)
    assert "Invalid Redis URL" not in str(caught.value)  # the URL is fine: the message blames the setting


def test_router_files_that_cannot_be_read_or_written_are_config_errors_and_what_python_raises(
    api, name, table, tmp_path
):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    path = tmp_path / "r.yaml"
    router.to_yaml(path)
    with pytest.raises(ConfigError, match="already exists") as exists:
        router.to_yaml(path, overwrite=False)
    with pytest.raises(ConfigError, match="No such router file") as missing:
        api.from_yaml(tmp_path / "missing.yaml", vectorizer=table)
    with pytest.raises(ConfigError, match="No pretrained config file") as no_config:
        api.from_pretrained(str(tmp_path / "missing.json"), vectorizer=table)
    assert isinstance(exists.value, FileExistsError)  # what RedisVL's to_yaml raises
    assert isinstance(missing.value, FileNotFoundError) and isinstance(no_config.value, FileNotFoundError)
    for call in (
        lambda: router.to_yaml(tmp_path),
        lambda: api.from_yaml(tmp_path, vectorizer=table),
        lambda: api.from_pretrained(str(tmp_path), vectorizer=table),
        lambda: router.export_with_embeddings(tmp_path),
    ):
        with pytest.raises(ConfigError, match="is a directory") as directory:
            call()
        assert isinstance(directory.value, OSError)
    with pytest.raises(ConfigError, match="must be a non-empty string or path, got 5"):
        api.from_pretrained(5)

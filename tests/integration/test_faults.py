"""Faults on a real Redis: concurrency, a Redis that restarts empty or with its data, routers at
scale, concurrent writers and creators, untrusted configs, and inputs that used to escape the
library's error types or give silently wrong answers.

Distances come from the ``table`` vectorizer (``"x d=0.2"`` lies at cosine distance 0.2 from the
query vector ``[1, 0, 0]``), so every expected answer is computed by hand.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
from gateway_support import gateway, upstream

from redisvl_llmrouter import (
    AsyncSemanticRouter,
    ConfigError,
    InvalidQueryError,
    LLMRouterError,
    RedisCommandError,
    RedisPermissionError,
    RedisPoolTimeoutError,
    Route,
    RouterExistsError,
    RouterStateLostError,
    SemanticRouter,
)
from redisvl_llmrouter.embedded import EmbeddedRedis
from redisvl_llmrouter.observability.decisions import parse_entries, stream_key

QUERY = [1.0, 0.0, 0.0]


def tiers() -> list[Route]:
    return [
        Route(name="near", model="m/near", cost=1.0, references=["near d=0.1", "near2 d=0.15"], distance_threshold=0.5),
        Route(name="far", model="m/far", cost=5.0, references=["far d=0.3"], distance_threshold=0.5),
    ]


# ----------------------------------------------------------------------------- concurrency
def test_a_thousand_concurrent_async_routes_on_one_router_all_succeed(redis_url, name, table):
    """1,000 requests share a pool of 4 connections: they wait for one instead of failing."""

    async def run() -> tuple[list[object], list[object]]:
        router = await AsyncSemanticRouter.create(
            name=name,
            routes=tiers(),
            vectorizer=table,
            redis_url=redis_url,
            connection_kwargs={"max_connections": 4},
            embedding_cache_size=0,
        )
        try:
            queries = [f"q{i} d={0.05 + (i % 40) / 100:.2f}" for i in range(1000)]
            sequential = [(await router(q)).name for q in queries]
            results = await asyncio.gather(*(router(q) for q in queries), return_exceptions=True)
            return sequential, results
        finally:
            await router.delete()
            await router.close()

    sequential, results = asyncio.run(run())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert [r.name for r in results] == sequential  # type: ignore[union-attr]
    assert {"near", "far"} <= set(sequential)


def test_eight_threads_on_one_sync_router_give_the_sequential_answers(redis_url, name, table):
    router = SemanticRouter(
        name=name, routes=tiers(), vectorizer=table, redis_url=redis_url, connection_kwargs={"max_connections": 2}
    )
    try:
        queries = [f"t{i} d={0.02 + (i % 50) / 100:.2f}" for i in range(400)]
        sequential = [router(q).name for q in queries]
        with ThreadPoolExecutor(max_workers=8) as pool:
            threaded = list(pool.map(lambda q: router(q).name, queries))
        assert threaded == sequential
        assert {"near", "far", None} >= set(sequential) and len(set(sequential)) >= 2
    finally:
        router.delete()
        router.close()


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_pool_timeout_is_its_own_error_not_an_unreachable_redis(flavour, redis_url, name, table):
    kwargs = {"max_connections": 1, "timeout": 0.2}
    if flavour == "sync":
        router = SemanticRouter(
            name=name, routes=tiers(), vectorizer=table, redis_url=redis_url, connection_kwargs=kwargs
        )
        held = router._client.connection_pool.get_connection()  # the pool's only connection, kept busy
        try:
            with pytest.raises(RedisPoolTimeoutError) as caught:
                router(vector=QUERY)
        finally:
            router._client.connection_pool.release(held)
        router.delete()
        message = str(caught.value)
    else:

        async def run() -> str:
            router = await AsyncSemanticRouter.create(
                name=name, routes=tiers(), vectorizer=table, redis_url=redis_url, connection_kwargs=kwargs
            )
            held = await router._client.connection_pool.get_connection()
            try:
                with pytest.raises(RedisPoolTimeoutError) as caught:
                    await router(vector=QUERY)
            finally:
                await router._client.connection_pool.release(held)
            await router.delete()
            return str(caught.value)

        message = asyncio.run(run())
    assert "Cannot reach" not in message
    assert "is up" in message and "all 1 connections" in message and "0.2 s" in message


# ----------------------------------------------------------------------------- recovery
@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own (no persistence), so it can be killed and restarted."""
    server = EmbeddedRedis().start()
    yield server
    server.stop()


def restart_empty(server: EmbeddedRedis) -> None:
    """Stop the server and start a new, empty one on the same port (it has no persistence)."""
    port = server.port
    server.stop()
    server.start()
    assert server.port == port and redis.Redis.from_url(server.url).dbsize() == 0


def test_routing_rebuilds_the_router_after_redis_restarts_empty(api, own_redis, table):
    name = f"t-{uuid.uuid4().hex[:10]}"
    router = api.create(name=name, routes=tiers(), vectorizer=table, redis_url=own_redis.url)
    router.add_route(Route(name="added", model="m/a", cost=2.0, references=["added d=0.05"], distance_threshold=0.5))
    before = router(vector=QUERY)
    restart_empty(own_redis)

    after = router(vector=QUERY)

    assert (
        (after.name, after.model, after.distance)
        == (before.name, before.model, before.distance)
        == (
            "added",
            "m/a",
            pytest.approx(0.05, abs=1e-6),
        )
    )
    again = api.from_existing(name, vectorizer=table, redis_url=own_redis.url)
    assert again.route_names == ["near", "far", "added"]
    assert again(vector=QUERY).name == "added"
    assert len(again.get_route_references("near")) == 2  # every reference is back in Redis


def test_recover_writes_back_references_redis_evicted_while_the_index_stayed(api, name, table, redis_url):
    """Under maxmemory-policy allkeys-lru the reference hashes go first (nothing reads them by key): the
    index and config stay, and routing silently went to whatever references were left."""
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(f"{name}:near:*"))  # as an eviction would
    assert router(vector=QUERY).name == "far"  # what the loss does to routing

    assert router.recover() is True
    assert router.recover() is False  # one FT.INFO: nothing left to rebuild
    assert router(vector=QUERY).name == "near" and len(client.keys(f"{name}:near:*")) == 2


def test_a_reference_deleted_while_lost_references_are_restored_stays_deleted(name, table, redis_url):
    """The gateway's periodic restore read the definition; another process then deleted a reference (its
    config saved, then its key removed): the restore took it for evicted and wrote it back for good."""
    from redisvl_llmrouter.router import drive
    from redisvl_llmrouter.stored_definition import read_config

    router = SemanticRouter(name=name, routes=tiers(), vectorizer=table, redis_url=redis_url)
    client = redis.Redis.from_url(redis_url)
    read_before = drive(read_config(name), client)  # where the restore had got to
    deleted = sorted(k.decode() for k in client.keys(f"{name}:near:*"))[0]
    other = SemanticRouter.from_existing(name, vectorizer=table, redis_url=redis_url)
    assert other.delete_route_references(keys=[deleted]) == 1

    assert router._run(router._core._restore_lost_references(read_before)) is True  # it looked lost

    assert not client.exists(deleted) and len(client.keys(f"{name}:near:*")) == 1
    assert len(other.get_route_references("near")) == 1
    for opened in (other, router, client):
        opened.close()


def test_a_restore_between_a_deletions_key_removal_and_its_commit_does_not_revive_the_reference(name, table, redis_url):
    """The deletion removes the key, then saves the config: a restore in between still reads the
    reference listed, finds its key gone, and writes it back."""
    from redisvl_llmrouter.ops import Command
    from redisvl_llmrouter.router import drive
    from redisvl_llmrouter.stored_definition import read_config

    router = SemanticRouter(name=name, routes=tiers(), vectorizer=table, redis_url=redis_url)
    client = redis.Redis.from_url(redis_url)
    deleted = sorted(k.decode() for k in client.keys(f"{name}:near:*"))[0]
    restorer = SemanticRouter.from_existing(name, vectorizer=table, redis_url=redis_url)
    restored: list[bool] = []

    def restore_after_the_first_del(op):  # drives the deletion, with the restore run after its first DEL
        request = next(op)
        while True:
            reply = yield request
            if isinstance(request, Command) and request.args[0] == "DEL" and not restored:
                document = drive(read_config(name), client)
                restored.append(restorer._run(restorer._core._restore_lost_references(document)))
            try:
                request = op.send(reply)
            except StopIteration as stop:
                return stop.value

    op = router._core.delete_route_references("", None, [deleted])
    assert router._run(restore_after_the_first_del(op)) == 1
    assert restored == [True]  # the restore did write it back meanwhile
    assert not client.exists(deleted) and len(client.keys(f"{name}:near:*")) == 1
    for opened in (restorer, router, client):
        opened.close()


def test_with_auto_recover_off_the_loss_is_a_typed_error_and_recover_rebuilds(api, own_redis, table):
    name = f"t-{uuid.uuid4().hex[:10]}"
    router = api.create(name=name, routes=tiers(), vectorizer=table, redis_url=own_redis.url)
    getattr(router, "unwrapped", router).auto_recover = False
    restart_empty(own_redis)

    with pytest.raises(RouterStateLostError, match="index .* is gone.*restarted without persistence.*recover()"):
        router(vector=QUERY)
    assert router.recover() is True
    assert router.recover() is False  # idempotent: nothing left to rebuild
    assert router(vector=QUERY).name == "near"


def test_a_pretrained_router_recovers_from_its_own_vectors_without_embedding(
    api, redis_url, own_redis, table, tmp_path
):
    name = f"t-{uuid.uuid4().hex[:10]}"
    source = api.create(name=name, routes=tiers(), vectorizer=table, redis_url=redis_url)
    path = source.export_with_embeddings(tmp_path / "r.json")
    embedded: list[str] = []

    def counting(text: str) -> list[float]:
        embedded.append(text)
        return table.embed(text)

    from redisvl.utils.vectorize import CustomVectorizer

    vectorizer = CustomVectorizer(embed=counting, embed_many=lambda texts, **_: [counting(t) for t in texts])
    router = api.from_pretrained(str(path), vectorizer=vectorizer, redis_url=own_redis.url)
    embedded.clear()  # the vectorizer's own probe at construction
    restart_empty(own_redis)
    assert router(vector=QUERY).name == "near"
    assert embedded == []  # the references came back from the file's vectors the router kept


def test_with_persistence_nothing_the_caller_gave_is_lost(api, tmp_path, table):
    name = f"t-{uuid.uuid4().hex[:10]}"
    server = EmbeddedRedis(data_dir=tmp_path / "data").start()
    try:
        router = api.create(name=name, routes=tiers(), vectorizer=table, redis_url=server.url)
        router.add_route(
            Route(name="added", model="m/a", cost=2.0, references=["added d=0.05"], distance_threshold=0.5)
        )
        router.update_route_thresholds({"far": 0.7})
        server.stop()  # SIGTERM: Redis flushes its append-only file
        server.start()  # the same directory and port

        assert router(vector=QUERY).name == "added"
        again = api.from_existing(name, vectorizer=table, redis_url=server.url)
        assert again.route_names == ["near", "far", "added"]
        assert again.route_thresholds["far"] == 0.7
        assert len(again.get_route_references("near")) == 2
    finally:
        server.stop()


# ----------------------------------------------------------------------------- correctness at scale
def test_a_route_with_ten_thousand_and_one_references_does_not_hide_a_closer_route(api, name, table):
    big = [f"big{i} d=0.99" for i in range(10_001)]
    routes = [
        Route(name="big", model="m/big", cost=1.0, references=big, distance_threshold=1.0),
        Route(name="target", model="m/t", cost=1.0, references=["target d=0.0"], distance_threshold=1.0),
    ]
    router = api.create(name=name, routes=routes, vectorizer=table)
    match = router(vector=QUERY, aggregation_method="min")
    assert (match.name, match.distance) == ("target", pytest.approx(0.0, abs=1e-6))


def test_two_router_objects_adding_routes_both_land(api, name, table):
    first = api.create(name=name, routes=tiers(), vectorizer=table)
    second = api.from_existing(name, vectorizer=table)
    first.add_route(Route(name="x", model="m/x", cost=1.0, references=["x d=0.01"], distance_threshold=0.5))
    second.add_route(Route(name="y", model="m/y", cost=1.0, references=["y d=0.02"], distance_threshold=0.5))

    stored = api.from_existing(name, vectorizer=table)
    assert sorted(stored.route_names) == ["far", "near", "x", "y"]
    assert sorted(second.route_names) == ["far", "near", "x", "y"]  # the later writer merged, not overwrote
    assert stored(vector=QUERY).name == "x"  # and x's references are reachable, not orphaned


@pytest.mark.parametrize("recreate", ["overwrite", "delete and create"])
def test_an_object_of_an_earlier_creation_never_overwrites_the_router_created_since(api, name, table, recreate):
    stale = api.create(name=name, routes=tiers(), vectorizer=table)
    other = [Route(name="other", model="m/o", cost=1.0, references=["other d=0.05"], distance_threshold=0.5)]
    if recreate == "delete and create":
        api.from_existing(name, vectorizer=table).delete()
    api.create(name=name, routes=other, vectorizer=table, overwrite=True)  # versions count from 1 again
    stale.add_route(Route(name="x", model="m/x", cost=1.0, references=["x d=0.01"], distance_threshold=0.5))

    stored = api.from_existing(name, vectorizer=table)
    assert sorted(stored.route_names) == ["other", "x"]  # the change merged into the new router
    assert sorted(stale.route_names) == ["other", "x"]


def test_concurrent_writers_on_the_same_route_keep_every_reference(redis_url, name, table):
    routers = [SemanticRouter(name=name, routes=tiers(), vectorizer=table, redis_url=redis_url) for _ in range(6)]
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda i: routers[i].add_route_references("far", [f"r{i} d=0.4"]), range(6)))
        stored = SemanticRouter.from_existing(name, redis_url=redis_url, vectorizer=table)
        assert sorted(stored.get("far").references) == sorted(["far d=0.3", *(f"r{i} d=0.4" for i in range(6))])
    finally:
        routers[0].delete()
        for router in routers:
            router.close()


def test_eight_threads_creating_the_same_new_router_all_succeed(redis_url, name, table):
    barrier = threading.Barrier(8)

    def create(_: int) -> SemanticRouter:
        barrier.wait()
        return SemanticRouter(name=name, routes=tiers(), vectorizer=table, redis_url=redis_url)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: _outcome(create, i), range(8)))
    errors = [r for r in results if isinstance(r, BaseException)]
    try:
        assert errors == []
        assert all(r(vector=QUERY).name == "near" for r in results)  # type: ignore[union-attr]
    finally:
        SemanticRouter.from_existing(name, redis_url=redis_url, vectorizer=table).delete()


def test_eight_concurrent_async_creators_all_succeed(redis_url, name, table):
    async def run() -> list[object]:
        return await asyncio.gather(
            *(
                AsyncSemanticRouter.create(name=name, routes=tiers(), vectorizer=table, redis_url=redis_url)
                for _ in range(8)
            ),
            return_exceptions=True,
        )

    results = asyncio.run(run())
    try:
        assert [r for r in results if isinstance(r, BaseException)] == []
    finally:
        SemanticRouter.from_existing(name, redis_url=redis_url, vectorizer=table).delete()


CREATE_IN_A_PROCESS = """
import sys, time
sys.path.insert(0, sys.argv[4])
from conftest import TableVectorizer
from redisvl_llmrouter import Route, SemanticRouter
routes = [Route(name="near", model="m/near", cost=1.0, references=[f"n{i} d=0.1" for i in range(200)], distance_threshold=0.5)]
while time.time() < float(sys.argv[3]):  # every process starts creating at the same moment
    time.sleep(0.001)
router = SemanticRouter(name=sys.argv[1], routes=routes, vectorizer=TableVectorizer.make(), redis_url=sys.argv[2])
print(router(vector=[1.0, 0.0, 0.0]).name)
"""


def test_four_processes_creating_the_same_new_router_all_succeed(redis_url, name, table):
    tests = str(Path(__file__).resolve().parents[1])
    start_at = str(time.time() + 8)  # after every interpreter has imported the library
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_IN_A_PROCESS, name, redis_url, start_at, tests],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    try:
        assert [p.returncode for p in procs] == [0, 0, 0, 0], [err[-500:] for _, err in outputs]
        assert [out.strip() for out, _ in outputs] == ["near"] * 4
        assert len(redis.Redis.from_url(redis_url).keys(f"{name}:near:*")) == 200
    finally:
        SemanticRouter.from_existing(name, redis_url=redis_url, vectorizer=table).delete()


def _outcome(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except Exception as exc:  # collected, so the test reports every failure
        return exc


def test_router_exists_error_says_what_differs(api, name, table):
    api.create(name=name, routes=tiers(), vectorizer=table)
    changed = tiers()
    changed[1] = changed[1].model_copy(update={"distance_threshold": 0.6, "references": ["far d=0.3", "far2 d=0.35"]})
    changed.append(Route(name="new", model="m/n", cost=1.0, references=["n d=0.2"], distance_threshold=0.5))
    with pytest.raises(RouterExistsError) as caught:
        api.create(name=name, routes=changed, vectorizer=table)
    message = str(caught.value)
    assert "routes only in the given definition: ['new']" in message
    assert "route 'far': 1 reference(s) given but not stored, 0 stored but not given" in message
    assert "route 'far' distance_threshold: stored 0.5, given 0.6" in message


# ----------------------------------------------------------------------------- trust boundary
def test_a_config_naming_another_vectorizer_fails_fast_without_the_network(api, name, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # nothing may rely on the hub being switched off
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    path = tmp_path / "router.yaml"
    path.write_text(
        json.dumps(
            {
                "name": name,
                "routes": [{"name": "a", "model": "m", "references": ["hi"], "distance_threshold": 0.5}],
                "vectorizer": {"type": "hf", "model": "someone/unknown-model", "dims": 384, "dtype": "float32"},
            }
        )
    )
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="someone/unknown-model.*pass it as vectorizer="):
        api.from_yaml(str(path))
    assert time.perf_counter() - started < 1.0


def test_delete_and_overwrite_touch_only_the_routers_own_keys(api, name, table, redis_url):
    client = redis.Redis.from_url(redis_url)
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    client.hset(f"{name}:session:1", mapping={"user": "alice"})
    client.hset(f"{name}:other", mapping={"vector": b"\0" * 12, "route_name": "near"})
    try:
        api.create(name=name, routes=tiers()[:1], vectorizer=table, overwrite=True).delete()
        assert client.hgetall(f"{name}:session:1") == {b"user": b"alice"}
        assert client.exists(f"{name}:other") == 1
        assert client.keys(f"{name}:near:*") == [] and client.exists(f"{name}:route_config") == 0
        router.delete()
        assert client.exists(f"{name}:session:1") == 1
    finally:
        client.delete(f"{name}:session:1", f"{name}:other")


def test_delete_leaves_nothing_of_the_router_behind(api, name, table, redis_url):
    from redisvl_llmrouter.observability import decisions

    client = redis.Redis.from_url(redis_url)
    first = api.create(name=name, routes=tiers(), vectorizer=table)
    first(vector=QUERY, strategy="round_robin")  # a rotation position in Redis, for route "near"
    # Created again without "near": its position goes with it, as do the rest on delete.
    router = api.create(name=name, routes=tiers()[1:], vectorizer=table, overwrite=True)
    router(vector=QUERY, strategy="round_robin")
    client.execute_command(*decisions.append_command(name, {"type": "completion"}, 100))  # a gateway's log
    assert client.keys(f"*{name}*")
    router.delete()
    assert client.keys(f"*{name}*") == []


# ----------------------------------------------------------------------------- errors that escaped
def test_a_lone_surrogate_is_an_invalid_query(api, name, table):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    with pytest.raises(InvalidQueryError, match="unpaired surrogate '\\\\ud800' at position 2"):
        router("hi\ud800 d=0.1")
    with pytest.raises(InvalidQueryError, match="surrogate"):
        router.add_route_references("near", ["x\udcff d=0.1"])


def test_an_unknown_aggregation_method_is_an_invalid_query(api, name, table):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    for call in (
        lambda: router(vector=QUERY, aggregation_method="bogus"),
        lambda: router.route_many(vector=QUERY, aggregation_method="bogus"),
        lambda: router.route_batch(vectors=[QUERY], aggregation_method="bogus"),
    ):
        with pytest.raises(InvalidQueryError, match="Unknown aggregation_method 'bogus'; choose one of avg, min"):
            call()


def test_an_acl_denial_is_a_permission_error_without_the_password(api, name, table, redis_url):
    admin = redis.Redis.from_url(redis_url)
    user, secret = f"u{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    api.create(name=name, routes=tiers(), vectorizer=table)
    admin.acl_setuser(user, enabled=True, passwords=[f"+{secret}"], keys=["*"], commands=["+@all", "-ft.search"])
    try:
        host_port = redis_url.split("://", 1)[1]
        limited = api.create(
            name=name, routes=tiers(), vectorizer=table, redis_url=f"redis://{user}:{secret}@{host_port}"
        )
        with pytest.raises(RedisPermissionError, match="refused a command for this user") as caught:
            limited(vector=QUERY)
        assert secret not in str(caught.value)
    finally:
        admin.acl_deluser(user)


def test_a_wrong_password_is_a_permission_error_not_an_unreachable_redis(api, name, table, redis_url):
    admin = redis.Redis.from_url(redis_url)
    user, secret = f"u{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    admin.acl_setuser(user, enabled=True, passwords=[f"+{secret}"], keys=["*"], commands=["+@all"])
    try:
        host_port = redis_url.split("://", 1)[1]
        with pytest.raises(RedisPermissionError, match="refused this client's credentials") as caught:
            api.create(
                name=name, routes=tiers(), vectorizer=table, redis_url=f"redis://{user}:wrong-{secret}@{host_port}"
            )
        assert secret not in str(caught.value)
    finally:
        admin.acl_deluser(user)


def test_a_pretrained_file_with_duplicate_references_is_a_config_error(api, name, table, tmp_path):
    path = api.create(name=name, routes=tiers(), vectorizer=table).export_with_embeddings(tmp_path / "r.json")
    data = json.loads(path.read_text())
    data["routes"][0]["references"].append(data["routes"][0]["references"][0])
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="Duplicate references"):
        api.from_pretrained(str(path), name=f"{name}-2", vectorizer=table)


def test_a_file_whose_outcome_rows_name_a_model_it_lacks_leaves_no_router_behind(api, name, table, tmp_path, redis_url):
    # The router was created, then its rows refused: a half-made router (no memory) stayed for the next
    # command to attach to.
    from redisvl_llmrouter import UnknownModelError

    source = api.create(name=name, routes=tiers(), vectorizer=table)
    source.learn([{"prompt": "learned d=0.2", "outcomes": {"m/near": {"quality": 1.0}}}])
    data = json.loads(source.export_with_embeddings(tmp_path / "r.json").read_text())
    data["outcomes"][0]["outcomes"] = {"zzz/not-in-catalog": data["outcomes"][0]["outcomes"]["m/near"]}
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(UnknownModelError, match="zzz/not-in-catalog"):
        api.from_pretrained(str(tmp_path / "r.json"), name=f"{name}-2", vectorizer=table)
    assert list(redis.Redis.from_url(redis_url).scan_iter(f"{name}-2*")) == []


def test_a_yaml_file_that_is_not_utf8_is_a_config_error(api, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        api.from_yaml(str(path))


def test_a_config_key_of_the_wrong_redis_type_is_a_config_error(api, name, table, redis_url):
    client = redis.Redis.from_url(redis_url)
    client.set(f"{name}:route_config", "someone else's string")
    try:
        with pytest.raises(ConfigError, match=f"'{name}:route_config' holds another Redis type"):
            api.create(name=name, routes=tiers(), vectorizer=table)
        with pytest.raises(ConfigError, match="holds another Redis type"):
            api.from_existing(name, vectorizer=table)
    finally:
        client.delete(f"{name}:route_config")


def test_every_redis_error_reaching_the_caller_is_typed(api, name, table, redis_url):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    redis.Redis.from_url(redis_url).delete(f"{name}:route_config")
    redis.Redis.from_url(redis_url).set(f"{name}:route_config", "clobbered")
    with pytest.raises(LLMRouterError):
        router.add_route(Route(name="z", model="m", cost=1.0, references=["z d=0.1"], distance_threshold=0.5))
    redis.Redis.from_url(redis_url).delete(f"{name}:route_config")


# ----------------------------------------------------------------------------- silent wrong answers
@pytest.mark.parametrize("vector", [[1e39, 0.0, 0.0], [1e-46, 0.0, 0.0], [3.5e38, 3.5e38, 0.0]])
def test_vectors_outside_float32_range_are_refused(api, name, table, vector):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    with pytest.raises(InvalidQueryError, match="do not fit float32"):
        router(vector=vector)


def test_a_route_name_with_nul_is_refused(api, name, table):
    bad = {"name": "a\x00b", "model": "m", "cost": 1.0, "references": ["a d=0.1"], "distance_threshold": 0.5}
    with pytest.raises(ConfigError, match="NUL"):
        api.create(name=name, routes=[bad], vectorizer=table)
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    with pytest.raises(ConfigError, match="NUL"):
        router.add_route(bad)


def test_an_all_zero_reference_vector_in_a_file_is_refused(api, name, table, tmp_path):
    path = api.create(name=name, routes=tiers(), vectorizer=table).export_with_embeddings(tmp_path / "r.json")
    data = json.loads(path.read_text())
    data["routes"][0]["references"][0]["vector"] = base64.b64encode(b"\0" * 12).decode()
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="all-zero vector"):
        api.from_pretrained(str(path), name=f"{name}-2", vectorizer=table)


def test_a_statement_and_a_vector_together_are_refused(api, name, table):
    router = api.create(name=name, routes=tiers(), vectorizer=table)
    for call in (lambda: router("far d=0.3", vector=QUERY), lambda: router.route_many("far d=0.3", vector=QUERY)):
        with pytest.raises(InvalidQueryError, match="not both"):
            call()


def write_behind_through_a_full_redis(
    url: str, commands: list[tuple[Any, ...]], while_full: Callable[[], None]
) -> None:
    """Give ``commands`` to a gateway's write-behind while Redis is full (``maxmemory`` 1: what grows
    it is refused), check ``while_full()``, then let Redis take writes again and flush."""
    from types import SimpleNamespace

    import redis.asyncio as aredis

    from redisvl_llmrouter.gateway.write_behind import WriteBehind

    client = redis.Redis.from_url(url)

    async def run() -> None:
        aclient = aredis.Redis.from_url(url)
        writes = WriteBehind(SimpleNamespace(_client=aclient))  # type: ignore[arg-type]
        try:
            client.config_set("maxmemory", 1)
            writes.add(commands)
            await writes.flush()
            while_full()
            client.config_set("maxmemory", 0)
            await writes.flush()
        finally:
            client.config_set("maxmemory", 0)
            await writes.close()
            await aclient.aclose()

    asyncio.run(run())


def test_a_flush_whose_caller_is_cancelled_still_lands_the_writes_it_took(own_redis):
    """A request whose client leaves while it flushes the write-behind (a half-open breaker's trial
    check does) cancelled the round trip, and the batch it had taken, other requests' writes, was lost."""
    from types import SimpleNamespace

    import redis.asyncio as aredis

    from redisvl_llmrouter.gateway.write_behind import WriteBehind

    client = redis.Redis.from_url(own_redis.url)

    async def run() -> None:
        aclient = aredis.Redis.from_url(own_redis.url)
        writes = WriteBehind(SimpleNamespace(_client=aclient))  # type: ignore[arg-type]
        try:
            client.client_pause(300, all=False)  # Redis holds writes: the round trip stays under way
            writes.add([("INCR", "landed")] * 3)
            leaving = asyncio.ensure_future(writes.flush())
            await asyncio.sleep(0.1)
            leaving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leaving
        finally:
            await writes.close()
            await aclient.aclose()

    asyncio.run(run())
    assert int(client.get("landed") or 0) == 3


def test_closing_the_write_behind_on_a_silent_redis_ends_within_its_timeout():
    """A flush left running by its caller (a request whose client left) holds its round trip: on a Redis
    that never answers (a network partition without a reset: the connection opens, no reply comes)
    closing waited for it for ever."""
    from types import SimpleNamespace

    import redis.asyncio as aredis

    from redisvl_llmrouter.gateway.write_behind import CLOSE_TIMEOUT_S, WriteBehind

    async def run() -> float:
        silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)  # takes bytes, never answers
        port = silent.sockets[0].getsockname()[1]
        aclient = aredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2.0)
        writes = WriteBehind(SimpleNamespace(_client=aclient))  # type: ignore[arg-type]
        try:
            writes.add([("INCR", "landed")])
            leaving = asyncio.ensure_future(writes.flush())
            await asyncio.sleep(0.1)
            leaving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leaving
            started = time.monotonic()
            await asyncio.wait_for(writes.close(), 4 * CLOSE_TIMEOUT_S)  # a TimeoutError here: it hung
            return time.monotonic() - started
        finally:
            silent.close()

    assert asyncio.run(run()) <= 2 * CLOSE_TIMEOUT_S + 1


def test_the_write_behind_sends_again_only_the_writes_a_full_redis_refused(own_redis):
    """Near its maxmemory Redis takes some commands of a batch (those that free memory) and refuses the
    rest: sending the whole batch again ran what had landed twice (log entries and counts doubled)."""
    client = redis.Redis.from_url(own_redis.url)
    client.rpush("queue", "a", "b", "c")

    def while_full() -> None:  # XADD (which grows it) was refused, LPOP was not
        assert (client.llen("queue"), client.xlen("log")) == (2, 0)

    write_behind_through_a_full_redis(own_redis.url, [("LPOP", "queue"), ("XADD", "log", "*", "f", "v")], while_full)
    assert (client.llen("queue"), client.xlen("log")) == (2, 1)  # each write landed once


def test_a_write_a_full_redis_refused_lands_later_with_the_expiry_sent_beside_it(own_redis):
    """A full Redis refuses ``HSET``/``ZADD`` but runs the ``EXPIRE`` beside them, on a key not yet
    made: sent again alone, the write made a key that never expired (request records and in-flight
    sets piled up after each time Redis had been full)."""
    from redisvl_llmrouter.policy import stats as live

    client = redis.Redis.from_url(own_redis.url)
    record = [("HSET", "request:1", "model", "m"), ("EXPIRE", "request:1", "3600")]  # as a request is kept
    inflight = live.start_commands("m", "1", now_ms=0, timeout_ms=15_000)

    def while_full() -> None:
        assert client.exists("request:1", live.inflight_key("m")) == 0

    write_behind_through_a_full_redis(own_redis.url, [*record, *inflight], while_full)
    assert 0 < client.ttl("request:1") <= 3600
    assert 0 < client.pttl(live.inflight_key("m")) <= 75_000


def test_the_gateway_keeps_serving_after_redis_restarts_empty(own_redis, tmp_path):
    """The gateway routes through the core, so the core's recovery keeps it answering: no 500s."""
    ask = [{"role": "user", "content": "explain garbage collection"}]
    with upstream() as up, gateway(own_redis.url, up.url, tmp_path) as server:
        with openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0) as client:
            before = client.chat.completions.create(model="auto", messages=ask).model
            restart_empty(own_redis)
            after = [client.chat.completions.create(model="auto", messages=ask).model for _ in range(3)]
    assert after == [before] * 3


def test_a_redis_that_stops_answering_costs_one_socket_timeout_then_503(own_redis, tmp_path):
    """A hung Redis (stopped, or cut off without a reset) is a 503 after redis-py's 5 s read timeout, not after
    four of them: a read timeout is not retried (a timed-out write may have been applied)."""
    import os
    import signal

    ask = [{"role": "user", "content": "explain garbage collection"}]
    with upstream() as up, gateway(own_redis.url, up.url, tmp_path) as server:
        with openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0, timeout=60) as client:
            client.chat.completions.create(model="auto", messages=ask)
            assert own_redis.server_pid is not None
            os.kill(own_redis.server_pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(openai.InternalServerError) as refused:
                    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hello"}])
                waited = time.monotonic() - started
            finally:
                os.kill(own_redis.server_pid, signal.SIGCONT)
            assert refused.value.status_code == 503 and waited < 12, waited
            assert client.chat.completions.create(model="auto", messages=ask).choices[0].message.content


def test_the_calls_of_a_gateway_killed_mid_call_stop_counting_in_flight_within_their_lease(redis_url, tmp_path):
    """A call in flight holds a lease its gateway renews: a long call stays counted (least_loaded routes by
    it), and the calls of a gateway killed with -9 stop counting within the lease, not after their timeout."""
    import signal

    from redisvl_llmrouter.policy.stats import CALL_LEASE_MS

    model = f"lease-{uuid.uuid4().hex[:6]}/m"
    with upstream() as up, gateway(redis_url, up.url, tmp_path) as srv:
        up.control(model=model, hang_s=25)  # longer than the first lease, over before the test ends
        body = {"model": model, "messages": [{"role": "user", "content": "a long answer, please"}]}
        caller = threading.Thread(target=_outcome, args=(lambda: srv.post("/v1/chat/completions", json=body),))
        caller.start()
        router = SemanticRouter.from_existing(srv.router, redis_url=redis_url)
        started = time.monotonic()
        while router.live_stats([model])[model].inflight != 1:
            assert time.monotonic() - started < 10, "the call never counted in flight"
            time.sleep(0.1)
        time.sleep(CALL_LEASE_MS / 1000 + 2)  # past the first lease: renewed
        assert router.live_stats([model])[model].inflight == 1
        srv.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while router.live_stats([model])[model].inflight != 0:
            assert time.monotonic() - killed < CALL_LEASE_MS / 1000 + 3, "a dead gateway's call still counts"
            time.sleep(0.2)
        caller.join(timeout=30)
        router.close()


def test_a_redis_that_stops_accepting_the_gateways_password_is_a_quick_error_not_a_hang(own_redis, tmp_path):
    """A rotated password: each request fails fast (a typed error, raised once, not from itself), and the
    gateway stays responsive."""
    admin = redis.Redis.from_url(own_redis.url)
    admin.config_set("requirepass", "old-S3cret")
    admin = redis.Redis.from_url(own_redis.url, password="old-S3cret")
    url = own_redis.url.replace("redis://", "redis://:old-S3cret@")
    try:
        with upstream() as up, gateway(url, up.url, tmp_path) as srv:
            ask = {"model": "auto", "messages": [{"role": "user", "content": "explain garbage collection"}]}
            assert srv.post("/v1/chat/completions", json=ask).status_code == 200
            admin.config_set("requirepass", "new-S3cret")
            admin = redis.Redis.from_url(own_redis.url, password="new-S3cret")
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal")
            refused = httpx.post(f"{srv.v1}/chat/completions", json=ask, timeout=15)
            assert refused.status_code >= 500 and "S3cret" not in refused.text
            assert httpx.get(f"{srv.base}/health", timeout=5).status_code == 503
    finally:
        admin.config_set("requirepass", "")


def test_with_redis_down_stats_and_the_dashboard_are_503_and_metrics_still_answer(own_redis, tmp_path):
    with upstream() as up, gateway(own_redis.url, up.url, tmp_path) as srv:
        assert srv.get("/stats").status_code == 200
        own_redis.stop()
        try:
            for path in ("/stats", "/dashboard/data"):
                down = srv.get(path)
                assert down.status_code == 503 and down.json()["error"]["code"] == "redis_unavailable", path
                assert down.headers["retry-after"] == "1"
            ask = {"model": "auto", "messages": [{"role": "user", "content": "explain garbage collection"}]}
            refused = srv.post("/v1/chat/completions", json=ask)  # a request, though it could not be routed
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "redis_unavailable"
            request_id = refused.headers["x-llmrouter-request-id"]
            metrics = srv.get("/metrics")  # this process's own counters still tell what it did, that one too
            assert metrics.status_code == 200 and 'status="error"' in metrics.text
        finally:
            own_redis.start()
        assert srv.get("/stats").status_code == 200
        store, deadline = redis.Redis.from_url(own_redis.url), time.monotonic() + 15
        while not (
            logged := [e for e in parse_entries(store.xrange(stream_key(srv.router))) if e["request_id"] == request_id]
        ):
            assert time.monotonic() < deadline, "the refused request never reached the log"
            time.sleep(0.2)
        assert logged[0]["status"] == "error" and logged[0]["error"] == "redis_unavailable"


def test_an_overwrite_that_fails_before_its_commit_leaves_none_of_its_references_behind(api, name, table, redis_url):
    """Replacing in place writes the new references before the config that lists them; one that
    failed in between (here Redis refuses one of its keys: another application's string sits there)
    left the others in the surviving router's index, where its searches found a reference it never
    listed: the route ``near`` answered at distance 0.05, from the failed definition."""
    from redisvl_llmrouter.search import reference_key

    router = api.create(name=name, routes=tiers(), vectorizer=table)
    client = redis.Redis.from_url(redis_url)
    foreign = reference_key(name, "near", "blocked d=0.2")
    client.set(foreign, "another application's value")
    replacement = [
        Route(
            name="near", model="m/near", cost=1.0, references=["near3 d=0.05", "blocked d=0.2"], distance_threshold=0.5
        )
    ]
    try:
        with pytest.raises(RedisCommandError, match="WRONGTYPE"):
            api.create(name=name, routes=replacement, vectorizer=table, overwrite=True)
        assert client.get(foreign) == b"another application's value"  # not this package's to delete
        assert not client.exists(reference_key(name, "near", "near3 d=0.05"))
        match = router(vector=QUERY, aggregation_method="min")
        assert (match.name, match.distance) == ("near", pytest.approx(0.1, abs=1e-6))
    finally:
        client.delete(foreign)
        client.close()


def test_a_creator_refused_for_another_model_takes_its_vectors_back_out_of_the_winners_router(name, table, redis_url):
    """Two creators of one router, with different embedding models of the same dims: the one whose
    compare-and-set lost wrote its vectors after the winner's into the keys both definitions list, and was
    refused, leaving the winner's router searching the other model's vectors for those references for
    ever. Now it deletes the keys that still hold its own vectors, and a recovery writes them back."""
    from conftest import TableVectorizer
    from redisvl.utils.vectorize import CustomVectorizer

    from redisvl_llmrouter import VectorizerMismatchError
    from redisvl_llmrouter.core import RouterCore
    from redisvl_llmrouter.ops import Pipeline
    from redisvl_llmrouter.router import drive

    def turned(text: str) -> list[float]:  # another model: the same dims, other vectors
        c, s1, s2 = TableVectorizer.vector(text)
        return [s1, c, s2]

    other = CustomVectorizer(embed=turned, embed_many=lambda texts, **_: [turned(t) for t in texts])
    other.model = "another-model"
    winner: list[SemanticRouter] = []

    def winner_created_before_the_first_write(op):  # the loser's setup, the winner's run before its first write
        request = next(op)
        while True:
            if isinstance(request, Pipeline) and not winner:
                winner.append(SemanticRouter(name=name, routes=tiers(), vectorizer=table, redis_url=redis_url))
            reply = yield request
            try:
                request = op.send(reply)
            except StopIteration as stop:
                return stop.value

    client = redis.Redis.from_url(redis_url)
    loser = RouterCore(name, tiers(), other)
    with pytest.raises(VectorizerMismatchError):
        drive(winner_created_before_the_first_write(loser.setup()), client, other)
    router = winner[0]
    try:
        router.recover()  # what the gateway's reference check (every 60 s) or a caller runs
        match = router(vector=QUERY, aggregation_method="min")
        assert (match.name, match.distance) == ("near", pytest.approx(0.1, abs=1e-6))
    finally:
        router.delete()
        client.close()


def _at_save(op: Any, before_save: Callable[[], None]) -> Any:
    """Drive ``op`` as it is, calling ``before_save`` just before its config save goes to Redis (the one
    moment between a change's references being written and the config that lists them being stored)."""
    from redisvl_llmrouter.ops import Pipeline, _sha
    from redisvl_llmrouter.search import SAVE_CONFIG_SCRIPT

    save = _sha(SAVE_CONFIG_SCRIPT)
    request = next(op)
    while True:
        if isinstance(request, Pipeline) and any(c[:2] == ("EVALSHA", save) for c in request.commands):
            before_save()
        reply = yield request
        try:
            request = op.send(reply)
        except StopIteration as stop:
            return stop.value


def _interrupted() -> None:
    raise KeyboardInterrupt


def test_a_change_interrupted_before_its_commit_leaves_none_of_its_references_behind(name, table, redis_url):
    """``add_route_references`` writes the references, then the config that lists them: one interrupted in
    between (Ctrl-C, a cancelled task, a dropped connection) left them in the index, where the router's
    searches found a reference it never listed (``near`` answered at 0.05)."""
    from redisvl_llmrouter.search import reference_key

    router = SemanticRouter(name=name, routes=tiers(), vectorizer=table, redis_url=redis_url)
    with pytest.raises(KeyboardInterrupt):
        router._run(_at_save(router._core.add_route_references("near", ["near3 d=0.05"]), _interrupted))
    with redis.Redis.from_url(redis_url) as client:
        assert not client.exists(reference_key(name, "near", "near3 d=0.05"))
    match = router(vector=QUERY, aggregation_method="min")
    assert (match.name, match.distance) == ("near", pytest.approx(0.1, abs=1e-6))
    router.close()


def test_a_reference_another_writers_clean_up_deleted_before_this_commit_is_written_again(name, table, redis_url):
    """Two objects add the same reference; one is interrupted before its commit and deletes it as unlisted,
    just before the other commits: the stored router then listed a reference whose key was gone."""
    from redisvl_llmrouter.search import reference_key

    first = SemanticRouter(name=name, routes=tiers(), vectorizer=table, redis_url=redis_url)
    second = SemanticRouter.from_existing(name, vectorizer=table, redis_url=redis_url)

    def first_interrupted() -> None:
        with pytest.raises(KeyboardInterrupt):
            first._run(_at_save(first._core.add_route_references("near", ["shared d=0.05"]), _interrupted))

    second._run(_at_save(second._core.add_route_references("near", ["shared d=0.05"]), first_interrupted))
    with redis.Redis.from_url(redis_url) as client:
        assert client.exists(reference_key(name, "near", "shared d=0.05"))
    match = SemanticRouter.from_existing(name, vectorizer=table, redis_url=redis_url)(
        vector=QUERY, aggregation_method="min"
    )
    assert (match.name, match.distance) == ("near", pytest.approx(0.05, abs=1e-6))
    for opened in (first, second):
        opened.close()


def test_another_operation_failing_meanwhile_never_cleans_up_a_write_under_way(name, table, redis_url):
    """What a write left unlisted was kept per router object: any other call on it that failed meanwhile
    (another thread's query of the wrong size, a cancelled routing task) deleted the references of a
    change about to be committed, and took its own clean-up away from it."""
    from redisvl_llmrouter.search import reference_key

    router = SemanticRouter(name=name, routes=tiers(), vectorizer=table, redis_url=redis_url)
    client = redis.Redis.from_url(redis_url)
    key = reference_key(name, "near", "near3 d=0.05")
    seen: list[int] = []

    def another_call_fails() -> None:
        with pytest.raises(InvalidQueryError):
            router(vector=[1.0, 0.0])  # two dimensions where the router has three
        seen.append(client.exists(key))

    router._run(_at_save(router._core.add_route_references("near", ["near3 d=0.05"]), another_call_fails))
    assert seen == [1]  # the write's reference stayed while it was still to be committed
    match = router(vector=QUERY, aggregation_method="min")
    assert (match.name, match.distance) == ("near", pytest.approx(0.05, abs=1e-6))
    router.close()
    client.close()

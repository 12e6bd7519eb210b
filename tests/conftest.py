"""Shared fixtures: a real Redis (``REDIS_URL`` or the embedded server), unique router names, and a
router factory that runs every integration test against both the sync and the async router."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis every integration test uses, resolved exactly as the library resolves it.

    ``REDIS_URL`` wins; else, with ``LLMROUTER_TEST_DOCKER=1`` on a machine with Docker, a
    Testcontainers ``redis:8`` (opt-in, ``pip install '.[docker]'``); else the embedded Redis.
    """
    from redisvl_llmrouter.connection import resolve_url

    if not os.environ.get("REDIS_URL") and os.environ.get("LLMROUTER_TEST_DOCKER") == "1":
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:8") as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            yield f"redis://{host}:{port}"
        return
    yield resolve_url()


@pytest.fixture
def name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


class Blocking:
    """Presents an async router (or coroutine-returning API) through the sync interface.

    Tests are written once against the sync API; under the ``async`` parameter every call goes
    through the real ``AsyncSemanticRouter`` and is awaited on the test's own event loop.
    """

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    def _wrap(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            value = self._loop.run_until_complete(value)
        from redisvl_llmrouter import AsyncSemanticRouter

        return Blocking(value, self._loop) if isinstance(value, AsyncSemanticRouter) else value

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._target, attr)
        if callable(value):
            return lambda *a, **k: self._wrap(value(*a, **k))
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrap(self._target(*args, **kwargs))

    @property
    def unwrapped(self) -> Any:
        return self._target


class RouterAPI:
    """The constructors of one router flavour (sync or async), returning sync-looking routers."""

    def __init__(self, flavour: str, redis_url: str) -> None:
        from redisvl_llmrouter import AsyncSemanticRouter, SemanticRouter

        self.flavour = flavour
        self.redis_url = redis_url
        self._loop = asyncio.new_event_loop() if flavour == "async" else None
        self._cls = AsyncSemanticRouter if flavour == "async" else SemanticRouter
        self.created: list[Any] = []

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("redis_url", self.redis_url)
        factory = self._cls if method == "__init__" else getattr(self._cls, method)
        value = factory(*args, **kwargs)
        if self._loop is not None:
            value = Blocking(None, self._loop)._wrap(value)
        self.created.append(value)
        return value

    def create(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("create" if self._loop else "__init__", *args, **kwargs)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        return lambda *args, **kwargs: self._call(method, *args, **kwargs)

    def run(self, coro_or_value: Any) -> Any:
        return Blocking(None, self._loop)._wrap(coro_or_value) if self._loop else coro_or_value

    def close(self) -> None:
        for router in self.created:
            with contextlib.suppress(Exception):
                router.delete()
            with contextlib.suppress(Exception):
                router.close()
        if self._loop is not None:
            self._loop.close()


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, redis_url: str) -> Iterator[RouterAPI]:
    """Runs the test once with ``SemanticRouter`` and once with ``AsyncSemanticRouter``."""
    routers = RouterAPI(request.param, redis_url)
    yield routers
    routers.close()


class TableVectorizer:
    """Builds a tiny deterministic vectorizer for integration tests (real Redis, known distances).

    A text ending in ``d=<x>`` embeds to a unit vector at cosine distance ``x`` from the text
    ``query`` (which embeds to ``[1, 0, 0]``); the angle around that axis comes from the text, so
    different references at the same distance are still different vectors.
    """

    @staticmethod
    def vector(text: str) -> list[float]:
        import hashlib
        import math

        if text == "query" or text.startswith("dimension test"):  # RedisVL probes with these
            return [1.0, 0.0, 0.0]
        if "d=" not in text:
            raise KeyError(f"TableVectorizer cannot embed {text!r}")
        d = float(text.rsplit("d=", 1)[1])
        c = 1.0 - d
        s = math.sqrt(max(0.0, 1.0 - c * c))
        phi = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF * 2 * math.pi
        return [c, s * math.cos(phi), s * math.sin(phi)]

    @classmethod
    def make(cls) -> Any:
        from redisvl.utils.vectorize import CustomVectorizer

        return CustomVectorizer(embed=cls.vector, embed_many=lambda texts, **_: [cls.vector(t) for t in texts])


@pytest.fixture
def table() -> Any:
    """A vectorizer with exactly known distances (see :class:`TableVectorizer`)."""
    return TableVectorizer.make()

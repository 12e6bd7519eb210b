"""The gateway for blocking code: the async :class:`~.service.Gateway` on an event loop in a background thread.

Every call is the async gateway's own, submitted to that loop with ``run_coroutine_threadsafe``:
one implementation, two ways in (as the routers share one core). What this module adds is the loop's
life: closing lets the calls under way end, a call on a closed gateway or in a forked child is
refused with a typed error, and a program that ends without ``close()`` still writes what is pending.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from redisvl_llmrouter import fork_safety
from redisvl_llmrouter.errors import GatewayClosedError, GatewayLoopError, InvalidRequestError
from redisvl_llmrouter.gateway.config import GatewayConfig
from redisvl_llmrouter.gateway.outcome import Completion
from redisvl_llmrouter.gateway.service import Gateway
from redisvl_llmrouter.gateway.write_behind import CLOSE_TIMEOUT_S
from redisvl_llmrouter.observability.report import Report
from redisvl_llmrouter.schema import RouteMatch

__all__ = ["SyncGateway"]

T = TypeVar("T")


class _CallsInFlight:
    """The calls a :class:`SyncGateway`'s loop runs for other threads. Closing refuses new ones, lets
    the running ones end (as the server's graceful shutdown does), then cancels what is left, so no
    caller waits on a loop that has stopped."""

    def __init__(self) -> None:
        self._lock = fork_safety.lock()  # a call is submitted before closing begins, or refused
        self._futures: set[concurrent.futures.Future[Any]] = set()
        self.closing = False

    def submit(self, coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> concurrent.futures.Future[T]:
        with self._lock:
            if self.closing or loop.is_closed():
                coro.close()  # never awaited: say so without a "never awaited" warning
                raise GatewayClosedError("This SyncGateway is closed; create a new one.")
            future = asyncio.run_coroutine_threadsafe(coro, loop)
            self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return future

    def close(self, timeout_s: float, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self.closing = True
            running = list(self._futures)
        concurrent.futures.wait(running, timeout=timeout_s)
        for future in running:  # still running: its caller gets GatewayClosedError, its task is cancelled
            try:
                # On the loop, after the result of a call that ended just now: that call is answered.
                loop.call_soon_threadsafe(future.cancel)
            except RuntimeError:  # the loop is closed: nothing will answer it
                future.cancel()


class SyncGateway:
    """The gateway for blocking code: the async gateway on an event loop in a background thread.

    Any thread may call it. ``close()`` lets the calls under way end (up to the config's
    ``shutdown_timeout_s``); those still running then raise :class:`GatewayClosedError`. Its loop
    thread does not survive a ``fork``: create one in each process (gunicorn: not in a preloaded app).
    """

    def __init__(self, config: GatewayConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self._pid = os.getpid()
        self._calls = _CallsInFlight()
        self._closing = fork_safety.lock()  # a second close() returns once the first has closed
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llmrouter-gateway", daemon=True)
        self._thread.start()
        try:
            self._gateway: Gateway = self._run(Gateway.create(config, **kwargs))
        except BaseException:  # no gateway: leave no loop thread behind either
            self._stop_loop()
            raise
        # The bookkeeping of the last answers is written behind them: a program that ends without
        # close() must not lose it (the loop runs on a daemon thread, which exit would just stop).
        self._at_exit = weakref.finalize(
            self, SyncGateway._close_loop, self._loop, self._thread, self._gateway, self._calls, self._pid
        )

    @staticmethod
    def _close_loop(
        loop: asyncio.AbstractEventLoop, thread: threading.Thread, gateway: Gateway, calls: _CallsInFlight, pid: int
    ) -> None:
        if loop.is_closed() or os.getpid() != pid:  # a forked child has the loop's object but not its thread
            return
        calls.close(0, loop)  # at exit nothing waits for them (close() has let them end)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(gateway.aclose(), loop).result(timeout=CLOSE_TIMEOUT_S * 2)
        SyncGateway._halt(loop, thread)

    @staticmethod
    def _halt(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        if loop.is_closed():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()

    def _stop_loop(self) -> None:
        self._halt(self._loop, self._thread)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if os.getpid() != self._pid:
            coro.close()
            raise GatewayLoopError(
                "This SyncGateway was created in another process, before a fork: its event loop's thread "
                "stayed there. Create one in each process (with gunicorn: after the fork, not in a preloaded app)."
            )
        future = self._calls.submit(coro, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._calls.closing:
                raise GatewayClosedError("This SyncGateway was closed before the call ended.") from None
            raise

    def complete(self, /, messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> Completion:
        """As :meth:`Gateway.complete` (streaming is async only)."""
        if kwargs.get("stream"):
            raise InvalidRequestError("Streaming needs the async Gateway.")
        return self._run(self._gateway.complete(messages, **kwargs))  # type: ignore[return-value]

    def route(self, messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> RouteMatch:
        """As :meth:`Gateway.route`: the decision only, nothing called."""
        return self._run(self._gateway.route(messages, **kwargs))

    def feedback(
        self,
        request_id: str,
        quality: float,
        model: str | None = None,
        cost: float | None = None,
        tenant: str = "",
        latency_ms: float | None = None,
    ) -> dict[str, Any]:
        """As :meth:`Gateway.feedback`."""
        return self._run(self._gateway.feedback(request_id, quality, model, cost, tenant, latency_ms))

    def stats(self) -> dict[str, Any]:
        """As :meth:`Gateway.stats`."""
        return self._run(self._gateway.stats())

    def report(self, since_ms: int | None = None, limit: int | None = None, until_ms: int | None = None) -> Report:
        """As :meth:`Gateway.report`."""
        return self._run(self._gateway.report(since_ms, limit, until_ms))

    def recent_decisions(self, count: int = 50, tenant: str = "") -> list[dict[str, Any]]:
        """As :meth:`Gateway.recent_decisions`."""
        return self._run(self._gateway.recent_decisions(count, tenant))

    def close(self) -> None:
        """Let the calls under way end (up to ``shutdown_timeout_s``), write what is pending and stop the
        loop thread. Done at exit too if never called, without waiting for calls still running then.
        Returns once closed, whichever thread closed it (a second caller waits for the first)."""
        if threading.current_thread() is self._thread:
            raise GatewayLoopError(
                "SyncGateway.close() was called on the gateway's own event loop (from a backend, say), which "
                "it would have to wait for; close it from another thread, or close the async Gateway there."
            )
        with self._closing:
            if self._at_exit.alive and os.getpid() == self._pid:
                self._calls.close(self._gateway.config.shutdown_timeout_s, self._loop)
            self._at_exit()

    def __enter__(self) -> SyncGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

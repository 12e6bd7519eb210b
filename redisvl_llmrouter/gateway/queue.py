"""Priority admission per model: a concurrency limit, a bounded wait queue, and shedding of the lowest priority.

Each gateway process admits at most ``concurrency`` calls to a model at once. Further requests
wait in a queue ordered by priority (``critical`` > ``high`` > ``normal`` > ``low``), then arrival,
so a critical request never waits behind a low one. The queue holds at most ``depth`` requests:
when it is full, a newcomer of higher priority than the lowest-priority waiter takes that waiter's
place (the waiter is shed with :class:`~redisvl_llmrouter.errors.QueueFullError`), and otherwise
the newcomer is refused with that error. A waiter that is not admitted within ``wait_timeout_s``
gets the same error. The HTTP server answers 429 with ``Retry-After``.

Limits are per process (so N processes admit N x ``concurrency``); the in-flight counts that the
``least_loaded`` strategy reads are shared through Redis.

The same admission, without a depth or a wait limit, orders the routing decisions a process
computes at once (embedding and search): a critical request is routed before the low ones waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from redisvl_llmrouter.errors import InvalidRequestError, QueueFullError

__all__ = ["PRIORITIES", "ModelQueue", "Queues", "priority_rank"]

PRIORITIES: dict[str, int] = {"critical": 0, "high": 1, "normal": 2, "low": 3}
#: Queues a process keeps for models with nothing running or waiting (passthrough names are the clients').
MAX_IDLE_QUEUES = 256
#: Seconds a refused client is told to wait before retrying.
RETRY_AFTER_S = 1.0


def priority_rank(priority: str | None) -> int:
    if priority is None:
        return PRIORITIES["normal"]
    try:
        return PRIORITIES[str(priority).lower()]
    except KeyError:
        raise InvalidRequestError(
            f"priority must be one of {', '.join(PRIORITIES)}; got {priority!r}", param="priority"
        ) from None


@dataclass(order=True)
class _Waiter:
    rank: int
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class ModelQueue:
    """Admission for one model in one process (see the module docstring)."""

    def __init__(
        self,
        model: str,
        concurrency: int,
        depth: int | None,
        wait_timeout_s: float | None,
        on_change: Callable[[ModelQueue], None] | None = None,
    ) -> None:
        """``depth`` None: no bound on waiters; ``wait_timeout_s`` None: they wait as long as it takes."""
        self.model = model
        self.on_change = on_change
        self.concurrency = concurrency
        self.depth = depth
        self.wait_timeout_s = wait_timeout_s
        self.active = 0
        self.shed = 0
        # A heap by priority, then arrival. A waiter that stops waiting (admitted, shed, timed out,
        # cancelled) has its future done and is dropped when it surfaces: each wait costs O(log n).
        self._waiters: list[_Waiter] = []
        self.waiting = 0  # the waiters whose future is not done
        self._seq = itertools.count()

    def _full(self, message: str) -> QueueFullError:
        return QueueFullError(f"{message} (model {self.model!r})", retry_after=RETRY_AFTER_S)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    async def acquire(self, rank: int) -> None:
        """Wait for a slot; raises ``QueueFullError`` when refused, shed or kept waiting too long."""
        try:
            await self._acquire(rank)
        finally:
            self._changed()

    async def _acquire(self, rank: int) -> None:
        if self.active < self.concurrency and not self.waiting:
            self.active += 1
            return
        if self.depth is not None and self.waiting >= self.depth:
            # Full (a scan of at most ``depth`` waiters, only then): lowest priority, then the newest.
            worst = max((w for w in self._waiters if not w.future.done()), default=None)
            if worst is None or worst.rank <= rank:
                self.shed += 1
                raise self._full("Too many requests waiting")
            worst.future.set_exception(self._full("Shed for a higher-priority request"))
            self.waiting -= 1
            self.shed += 1
        if len(self._waiters) > 2 * self.waiting + 64:  # mostly waiters that left: keep the heap small
            self._waiters = [w for w in self._waiters if not w.future.done()]
            heapq.heapify(self._waiters)
        waiter = _Waiter(rank, next(self._seq), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiters, waiter)
        self.waiting += 1
        self._changed()
        try:
            done, _ = await asyncio.wait({waiter.future}, timeout=self.wait_timeout_s)
        except asyncio.CancelledError:  # the caller gave up while waiting
            if not waiter.future.done():
                waiter.future.cancel()
                self.waiting -= 1
            elif not waiter.future.cancelled() and waiter.future.exception() is None:
                self.release()  # the slot had just been passed to it: pass it on, or it is lost for good
            raise
        if not done:
            waiter.future.cancel()  # release() skips it; the slot was never handed over
            self.waiting -= 1
            self.shed += 1
            raise self._full(f"Waited more than {self.wait_timeout_s:g} s for a free slot")
        waiter.future.result()  # raises if it was shed

    @contextlib.asynccontextmanager
    async def slot(self, rank: int) -> AsyncIterator[None]:
        """Hold a slot for the block (see :meth:`acquire`)."""
        await self.acquire(rank)
        try:
            yield
        finally:
            self.release()

    def release(self) -> None:
        """Free a slot: it passes straight to the best waiter, if any (unless the limit has come down)."""
        try:
            if self.active <= self.concurrency and self._admit_next():
                return  # the slot moved to the waiter: ``active`` is unchanged
            self.active -= 1
        finally:
            self._changed()

    def resize(self, concurrency: int) -> None:
        """Change the limit: more room admits waiters at once; less takes effect as calls end."""
        self.concurrency = concurrency
        while self.active < self.concurrency and self._admit_next():
            self.active += 1
        self._changed()

    def _admit_next(self) -> bool:
        """Hand a slot to the best waiter still waiting; False if there is none."""
        while self._waiters:
            waiter = heapq.heappop(self._waiters)
            if not waiter.future.done():
                waiter.future.set_result(None)
                self.waiting -= 1
                return True
        return False


class Queues:
    """The per-model queues of one gateway process."""

    def __init__(
        self,
        default_concurrency: int,
        depth: int,
        wait_timeout_s: float,
        limits: dict[str, int],
        on_change: Callable[[ModelQueue], None] | None = None,
    ) -> None:
        """``on_change`` is called with a queue whenever its active or waiting count may have changed."""
        self.on_change = on_change
        self.default_concurrency = default_concurrency
        self.depth = depth
        self.wait_timeout_s = wait_timeout_s
        self.limits = limits
        self._queues: dict[str, ModelQueue] = {}

    def set_limits(self, limits: dict[str, int]) -> None:
        """New per-model limits (the catalog's ``max_concurrency`` changed); queues in use follow at once."""
        if limits == self.limits:
            return
        self.limits = limits
        for model, queue in self._queues.items():
            queue.resize(limits.get(model) or self.default_concurrency)

    def __getitem__(self, model: str) -> ModelQueue:
        queue = self._queues.get(model)
        if queue is None:
            limit = self.limits.get(model) or self.default_concurrency
            queue = self._queues[model] = ModelQueue(model, limit, self.depth, self.wait_timeout_s, self.on_change)
        return queue

    @contextlib.asynccontextmanager
    async def slot(self, model: str, rank: int) -> AsyncIterator[None]:
        queue = self[model]
        try:
            async with queue.slot(rank):
                yield
        finally:
            if len(self._queues) > MAX_IDLE_QUEUES and queue.active == 0 and queue.waiting == 0:
                # Clients may pass through any number of model names: an idle queue goes (and its shed count).
                self._queues.pop(model, None)

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {
            m: {"active": q.active, "waiting": q.waiting, "concurrency": q.concurrency, "shed": q.shed}
            for m, q in self._queues.items()
        }

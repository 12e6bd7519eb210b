"""The gateway's write-behind: Redis writes that need not delay an answer (live statistics, breakers,
the decisions log), batched into one pipeline per round trip and kept while Redis passes through a
restart or failover, never sent twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from redisvl_llmrouter.aio import AsyncSemanticRouter, adrive
from redisvl_llmrouter.gateway.redis_faults import loggable, may_have_landed, transient_redis_error
from redisvl_llmrouter.ops import run_scripts

__all__ = ["CLOSE_TIMEOUT_S", "WriteBehind"]

logger = logging.getLogger(__name__)

#: How long the write-behind waits to gather writes into one pipeline.
WRITE_BEHIND_S = 0.002
#: Writes the write-behind keeps while Redis refuses them (restarting, failing over), and the longest
#: pause between its attempts.
WRITE_BEHIND_MAX_PENDING = 100_000
WRITE_BEHIND_MAX_BACKOFF_S = 5.0
#: How long closing waits for the write-behind's last round trip.
CLOSE_TIMEOUT_S = 5.0


_EXPIRIES = frozenset({"EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"})


def _with_their_expiries(
    commands: Sequence[tuple[Any, ...]], kept: Sequence[bool], replies: Sequence[Any]
) -> list[bool]:
    """``kept`` (the refused writes), with the expiries Redis ran on their keys later in the batch.

    A full Redis refuses a write that grows it (``HSET``, ``ZADD``) but runs the ``EXPIRE`` sent
    with it, on a key that write did not make: sent again alone, the write would make a key that
    never expires (a request record, an in-flight set). Its expiries go with it; they only set a TTL.
    (An expiry refused for good, a permission say, is not: it would be refused again.)
    """
    kept = list(kept)
    refused: set[Any] = set()
    for i, command in enumerate(commands):
        if str(command[0]).upper() in _EXPIRIES:
            kept[i] = kept[i] or (command[1] in refused and not isinstance(replies[i], Exception))
        elif kept[i] and len(command) > 1:
            refused.add(command[1])
    return kept


class WriteBehind:
    """Redis writes that need not delay an answer (statistics, breakers, the log), batched.

    Requests add commands and scripts; one background task sends everything pending in one
    pipeline, then waits for more. Under load many requests share a round trip; a lone request's
    writes go out right after its answer.
    """

    def __init__(self, router: AsyncSemanticRouter) -> None:
        self._router = router
        self._commands: list[tuple[Any, ...]] = []
        self._scripts: list[tuple[str, tuple[Any, ...]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._sending = asyncio.Lock()  # a flush waits for a round trip already under way
        self._flushes: set[asyncio.Future[None]] = set()  # flushes under way (their callers may have left)

    def add(
        self, commands: Sequence[tuple[Any, ...]] = (), scripts: Sequence[tuple[str, tuple[Any, ...]]] = ()
    ) -> None:
        self._commands.extend(commands)
        self._scripts.extend(scripts)
        if self._closing:
            return
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.ensure_future(self._run())
        assert self._wake is not None
        self._wake.set()

    async def _take_and_send(self) -> None:
        async with self._sending:
            commands, scripts = self._commands, self._scripts
            self._commands, self._scripts = [], []
            if not (commands or scripts):
                return
            try:
                replies = await adrive(run_scripts(scripts, commands, raise_refused=False), self._router._client)
                # Near its maxmemory Redis takes some commands of a batch and refuses others: only the
                # refused ones are kept (with their keys' expiries), so no write that landed is sent twice.
                kept = [isinstance(r, Exception) and transient_redis_error(r) for r in replies]
                passing = [r for r, keep in zip(replies, kept, strict=True) if keep]
                lasting = [r for r, keep in zip(replies, kept, strict=True) if isinstance(r, Exception) and not keep]
                if lasting:  # refused for good (a permission, a wrong type): never landing, not kept
                    logger.warning(
                        "gateway write-behind: Redis refused %d writes, not sent again: %s",
                        len(lasting),
                        loggable(lasting[0]),
                    )
                n = len(scripts)
                scripts = [s for s, keep in zip(scripts, kept[:n], strict=True) if keep]
                resent = _with_their_expiries(commands, kept[n:], replies[n:])
                commands = [c for c, keep in zip(commands, resent, strict=True) if keep]
                if passing:
                    raise passing[0]
            except Exception as exc:
                if not transient_redis_error(exc):
                    raise
                if may_have_landed(exc):
                    # Sent, and no answer in time (a frozen or overloaded Redis): it may run yet, so sending
                    # it again could count every request in it twice. Its bookkeeping is given up instead.
                    logger.warning(
                        "gateway write-behind: Redis did not answer in time; %d writes may or may not have "
                        "landed and are not sent again",
                        len(commands) + len(scripts),
                    )
                    raise
                # Redis restarting, failing over or full: keep the batch, ahead of newer writes, for the
                # next round trip (bounded: the oldest writes go first when Redis stays away long).
                self._commands[:0], self._scripts[:0] = commands, scripts
                excess = len(self._commands) + len(self._scripts) - WRITE_BEHIND_MAX_PENDING
                if excess > 0:
                    dropped_scripts = min(excess, len(self._scripts))
                    del self._scripts[:dropped_scripts]
                    del self._commands[: excess - dropped_scripts]
                    logger.warning("gateway write-behind: Redis still refuses writes; %d oldest dropped", excess)
                raise

    async def flush(self) -> None:
        """Return once every write added so far is in Redis (or failed and was logged).

        A caller cancelled meanwhile (a request whose client left) stops waiting, not the round trip:
        the batch it took holds other requests' writes, which would otherwise be lost with it.
        """
        flushing = asyncio.ensure_future(self._flush())
        self._flushes.add(flushing)
        flushing.add_done_callback(self._flushes.discard)
        await asyncio.shield(flushing)

    async def _flush(self) -> None:
        try:
            await self._take_and_send()
        except Exception as exc:
            logger.warning("gateway write-behind failed: %s", loggable(exc))
            if transient_redis_error(exc):  # the kept writes: the background task retries them, traffic or not
                self.add()

    async def _run(self) -> None:
        assert self._wake is not None
        backoff = 0.0
        while not self._closing:
            if backoff:  # writes kept after a failure: try again after a pause (new ones gather meanwhile)
                await asyncio.sleep(backoff)
            else:
                await self._wake.wait()
            self._wake.clear()
            if not self._closing:
                # Let the request that woke us send its answer first, and gather the writes of the
                # requests close behind it into the same round trip.
                await asyncio.sleep(WRITE_BEHIND_S)
            try:
                await self._take_and_send()
                backoff = 0.0
            except Exception as exc:  # bookkeeping must never take the gateway down
                retrying = transient_redis_error(exc) and bool(self._commands or self._scripts)
                backoff = min(WRITE_BEHIND_MAX_BACKOFF_S, max(0.2, 2 * backoff)) if retrying else 0.0
                logger.warning(
                    "gateway write-behind failed%s: %s",
                    f", retrying in {backoff:g} s" if retrying else "",
                    loggable(exc),
                )

    async def close(self) -> None:
        """Send what is pending and stop; no write added before ``close`` is lost, unless Redis does
        not answer: each step then waits at most ``CLOSE_TIMEOUT_S``, so a frozen Redis (a socket
        that never replies) cannot hold a shutdown for ever.

        The task is asked to stop rather than cancelled: a cancellation landing inside a Redis
        call can be turned into an ordinary error by the client and swallowed, leaving the task
        waiting for ever. Flushes whose callers left meanwhile finish their round trips alike.
        """
        self._closing = True
        if self._task is not None and not self._task.done():
            assert self._wake is not None
            self._wake.set()
        running = {t for t in (self._task, *self._flushes) if t is not None and not t.done()}
        if running:
            _, late = await asyncio.wait(running, timeout=CLOSE_TIMEOUT_S)
            for task in late:
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._take_and_send(), CLOSE_TIMEOUT_S)
        if self._commands or self._scripts:
            logger.warning(
                "gateway write-behind: Redis refused the last %d writes at shutdown; they are lost",
                len(self._commands) + len(self._scripts),
            )

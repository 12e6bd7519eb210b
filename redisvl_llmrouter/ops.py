"""The I/O a core operation can ask for: the vocabulary shared by the router core, the outcome
store and the shells that drive them.

An operation is a generator that *describes* its I/O instead of doing it: it yields a
:class:`Command` (one Redis command), a :class:`Pipeline` (several, one round trip) or an
:class:`Embed` (texts to vectors) and receives the result. The sync router drives it with
blocking calls, the async router and the gateway with ``await``; Redis errors are thrown back
into the generator, so their handling is written once too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import NoScriptError, ResponseError

__all__ = ["Acquire", "Command", "Embed", "Op", "Pipeline", "run_script", "run_scripts"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Command:
    """Run one Redis command; the reply is sent back."""

    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Run several Redis commands in one round trip (no transaction); the list of replies is sent back."""

    commands: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True, slots=True)
class Embed:
    """Embed texts with the router's vectorizer; a list of float vectors is sent back."""

    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Acquire:
    """Wait for ``lock`` (a ``threading.Lock``, or an ``asyncio.Lock`` under the async driver); None is sent back.

    Only the wait needs the driver: the operation releases the lock itself (``release()`` is
    synchronous for both kinds), in a ``finally`` so that closing the operation releases it too.
    """

    lock: Any


Op = Generator[Command | Pipeline | Embed | Acquire, Any, T]


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


def run_scripts(calls: Sequence[tuple[str, tuple[Any, ...]]], extra: Sequence[tuple[Any, ...]] = ()) -> Op[list[Any]]:
    """Run several Lua scripts (``(script, args)`` pairs) and plain ``extra`` commands in one round trip.

    The ``extra`` commands run first; the replies come back scripts first, then ``extra``.

    On NOSCRIPT (Redis restarted and forgot its script cache) the scripts are loaded and only the
    script calls run again: a pipeline runs every command even when one fails, so the ``extra``
    commands (an ``XADD``, an ``HINCRBY``) already ran once and must not be repeated. Their
    replies are then ``None``.
    """
    if not calls and not extra:
        return []
    scripts = tuple(("EVALSHA", _sha(script), *args) for script, args in calls)
    try:
        # The plain commands go first: a batch may hold a call's start (ZADD) and its finish (a script).
        replies = yield Pipeline(tuple(extra) + scripts)
        return [*replies[len(extra) :], *replies[: len(extra)]]
    except ResponseError as exc:
        if not isinstance(exc, NoScriptError) and "NOSCRIPT" not in str(exc):
            raise
    for script in dict.fromkeys(script for script, _ in calls):
        yield Command(("SCRIPT", "LOAD", script))
    replies = yield Pipeline(scripts)
    return [*replies, *([None] * len(extra))]


def run_script(script: str, calls: Sequence[tuple[Any, ...]]) -> Op[list[Any]]:
    """Run a Lua script once per argument tuple (``numkeys, *keys, *argv``), pipelined, by its SHA.

    Scripts are cached by Redis, not persisted: after a restart the first ``EVALSHA`` answers
    NOSCRIPT, and the script is loaded and the batch run again. The scripts this package runs
    this way are idempotent (they set values rather than add them), so running a batch twice is
    safe.
    """
    if not calls:
        return []
    sha = _sha(script)
    pipeline = Pipeline(tuple(("EVALSHA", sha, *args) for args in calls))
    try:
        return (yield pipeline)  # type: ignore[no-any-return]
    except ResponseError as exc:  # redis-py raises NoScriptError; other clients a plain NOSCRIPT reply
        if not isinstance(exc, NoScriptError) and "NOSCRIPT" not in str(exc):
            raise
    yield Command(("SCRIPT", "LOAD", script))
    return (yield pipeline)  # type: ignore[no-any-return]

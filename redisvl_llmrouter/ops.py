"""The I/O a core operation can ask for: the vocabulary shared by the router core, the outcome
store and the shells that drive them.

An operation is a generator that *describes* its I/O instead of doing it: it yields a
:class:`Command` (one Redis command), a :class:`Pipeline` (several, one round trip), an
:class:`Embed` (texts to vectors) or an :class:`Acquire` (wait for the object's write lock) and
receives the result. The sync router drives it with
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
    """Run several Redis commands in one round trip (no transaction); the list of replies is sent back.

    A command Redis refuses raises its error (the first one), after every command has run; with
    ``errors_as_replies`` each refusal is sent back in its place instead, as an exception object.
    """

    commands: tuple[tuple[Any, ...], ...]
    errors_as_replies: bool = False


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


def _forgotten(reply: Any) -> bool:
    """Whether a reply is Redis saying it does not have the script (redis-py's NoScriptError; other
    clients a plain NOSCRIPT error)."""
    return isinstance(reply, NoScriptError) or (isinstance(reply, ResponseError) and "NOSCRIPT" in str(reply))


def run_scripts(
    calls: Sequence[tuple[str, tuple[Any, ...]]],
    extra: Sequence[tuple[Any, ...]] = (),
    raise_refused: bool = True,
) -> Op[list[Any]]:
    """Run several Lua scripts (``(script, args)`` pairs) and plain ``extra`` commands in one round trip.

    The ``extra`` commands run first; the replies come back scripts first, then ``extra``.

    Scripts are cached by Redis, not persisted: after a restart ``EVALSHA`` answers NOSCRIPT. The
    calls so answered, and only they, run again once their scripts are loaded. A pipeline runs
    every command even when one fails, so the rest (the ``extra`` commands, calls of a script that
    another process had loaded again meanwhile) ran once already, and most of these writes add
    (``XADD``, ``HINCRBY``): run twice, they would count twice. Any other refusal is raised, or with
    ``raise_refused=False`` returned in its place (the caller then knows exactly what did not run:
    a Redis near its ``maxmemory`` refuses some commands of a batch and takes the others).
    """
    if not calls and not extra:
        return []
    scripts = [("EVALSHA", _sha(script), *args) for script, args in calls]
    # The plain commands go first: a batch may hold a call's start (ZADD) and its finish (a script).
    replies = list((yield Pipeline((*extra, *scripts), errors_as_replies=True)))
    replies = [*replies[len(extra) :], *replies[: len(extra)]]
    missing = [i for i, reply in enumerate(replies[: len(calls)]) if _forgotten(reply)]
    refused = next((r for r in replies if isinstance(r, Exception) and not _forgotten(r)), None)
    if refused is not None and raise_refused:
        raise refused
    if missing:
        for script in dict.fromkeys(calls[i][0] for i in missing):
            yield Command(("SCRIPT", "LOAD", script))
        again = yield Pipeline(tuple(scripts[i] for i in missing), errors_as_replies=not raise_refused)
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return replies


def run_script(script: str, calls: Sequence[tuple[Any, ...]]) -> Op[list[Any]]:
    """Run a Lua script once per argument tuple (``numkeys, *keys, *argv``), pipelined, by its SHA;
    after a restart, loaded and run again for the calls that found it missing (:func:`run_scripts`)."""
    return (yield from run_scripts([(script, args) for args in calls]))

"""Locks that a forked child finds released.

A child process inherits every lock in the state it was in at the ``fork``, but not the threads
that held them: a lock another thread of the parent held then (a write under way, a clock
refresh) would never be released in the child, and its next call would wait for ever. Servers
fork workers from a loaded app (gunicorn's ``--preload``), so the router's locks are made here
and reset in every child, as the standard library resets its own.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

__all__ = ["lock"]

_LOCKS: weakref.WeakSet[Any] = weakref.WeakSet()


def lock() -> threading.Lock:
    """A ``threading.Lock`` that is released in a forked child."""
    new = threading.Lock()
    _LOCKS.add(new)
    return new


def _release_in_child() -> None:
    for held in list(_LOCKS):
        held._at_fork_reinit()  # what threading and logging do to theirs


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_release_in_child)

"""Locks that a forked child finds released (redisvl_llmrouter.fork_safety)."""

from __future__ import annotations

import os

import pytest

from redisvl_llmrouter import fork_safety


def test_a_lock_is_an_ordinary_lock():
    lock = fork_safety.lock()
    with lock:
        assert lock.locked() and not lock.acquire(blocking=False)
    assert not lock.locked()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_lock_held_at_a_fork_is_free_in_the_child_and_still_held_in_the_parent():
    lock = fork_safety.lock()
    lock.acquire()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if lock.acquire(timeout=5) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert lock.locked()
    lock.release()

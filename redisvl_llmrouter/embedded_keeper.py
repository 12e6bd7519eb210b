"""The keeper: a tiny process that ties the embedded ``redis-server`` to the life of its starter.

:mod:`redisvl_llmrouter.embedded` runs this file as a script (``python -I embedded_keeper.py``, so it
imports only the standard library and starts in milliseconds) with the read end of a pipe as its
stdin; the starting Python process holds the only write end. The kernel closes that end however the
starter ends — a normal exit, SIGTERM, SIGKILL, a crash — so end-of-file on stdin means "your
owner is gone": the keeper then shuts Redis down cleanly (SIGTERM, which flushes the append-only
file) and removes a temporary working directory.

Why a process and not ``prctl(PR_SET_PDEATHSIG)`` on Redis itself: the death signal fires when the
*thread* that started the child exits, so a server started from a worker thread would die with that
thread. The keeper is single-threaded, so it does set the death signal on Redis, covering the one
case the pipe cannot: the keeper itself being killed.

Usage: ``embedded_keeper.py WORKDIR OWNS_WORKDIR(0|1) LOCK_FD(-1 for none) -- REDIS_ARGS...``.
The keeper prints Redis's pid on stdout, then nothing else. ``LOCK_FD`` (the data directory's lock,
inherited from the starter) is passed on to Redis so the lock is held until Redis has exited.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys

_PR_SET_PDEATHSIG = 1
_POLL_S = 0.2
_STOP_TIMEOUT_S = 10.0


def _die_with_keeper() -> None:
    """Runs in the Redis child before exec: SIGTERM it if the keeper dies (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the stdin pipe still covers the starter's death
        pass


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str]) -> int:
    """Start Redis, wait for the starter to go away (or Redis to exit), then clean up."""
    workdir, owns_workdir, lock_fd = argv[0], argv[1] == "1", int(argv[2])
    redis_args = argv[argv.index("--") + 1 :]
    # Ctrl-C in the user's terminal is for the user's program, whose exit then reaches us as EOF.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.umask(0o077)  # every file Redis writes (AOF, RDB, log) is private to the user
    process = subprocess.Popen(
        redis_args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(lock_fd,) if lock_fd >= 0 else (),
        preexec_fn=_die_with_keeper,  # safe: the keeper is single-threaded
    )
    if lock_fd >= 0:
        os.close(lock_fd)  # Redis holds the lock now; it is released when Redis exits
    try:
        print(process.pid, flush=True)
        while process.poll() is None:
            ready, _, _ = select.select([sys.stdin.fileno()], [], [], _POLL_S)
            if ready and not os.read(sys.stdin.fileno(), 64):
                break  # end-of-file: the starter stopped us or died
    finally:
        _stop(process)
        if owns_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

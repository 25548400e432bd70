"""Queue ids: unique per process and time-ordered, so logs sort the way mail arrived."""

from __future__ import annotations

import itertools
import os
import time

_counter = itertools.count()


def _pid_part() -> str:
    return f"{os.getpid() & 0xFFFFF:05X}"


#: The process's part of every id, computed once (getpid is a system call) and again in a
#: forked child, which is a different process.
_pid = _pid_part()


def _after_fork() -> None:
    global _pid  # noqa: PLW0603  (a per-process constant, refreshed only by a fork)
    _pid = _pid_part()


os.register_at_fork(after_in_child=_after_fork)


def new_queue_id() -> str:
    micros = time.time_ns() // 1000
    return f"{micros:X}{_pid}{next(_counter) & 0xFFFF:04X}"

"""The bench's child processes (the local server, the workers) end when the bench does.

They run in their own session (so a Ctrl-C reaches them only through the bench, which
reports first), which also keeps them out of reach of whatever ends the terminal's process
group. So each asks the kernel for a SIGTERM when the bench dies (Linux ``PR_SET_PDEATHSIG``):
a bench killed with SIGKILL or SIGTERM does not leave a server listening for good. Elsewhere
this is a no-op; the workers still stop at ``--max-seconds``.

The kernel sends it when the *thread* that started the child exits: the bench starts each
child from the thread that then waits for it (``local_server``, ``run_workers``), so that
thread outlives the child unless the whole process dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

#: prctl(2): ask for ``signal`` when the parent thread exits.
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # The process's own symbols (libc among them): no ``find_library``, which runs ldconfig.
        prctl: Callable[[int, int], int] = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _load_prctl()


def end_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that makes the child get SIGTERM when the
    caller's thread exits (with the process ``parent``, the caller's pid), or None where that
    is not available.

    Runs in the child between fork and exec, where another thread of the parent may have
    held a lock: so it takes none (no import, no logging, no allocation beyond small ints),
    only a foreign call loaded beforehand and two system calls. If the parent died before the
    request took effect, the child terminates itself at once.
    """
    prctl = _prctl
    if prctl is None:
        return None

    def request() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent is already gone: nobody would signal us
            os.kill(os.getpid(), signal.SIGTERM)

    return request

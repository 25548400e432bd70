"""Queue ids: unique per process and time-ordered, so logs sort the way mail arrived."""

from __future__ import annotations

import itertools
import os
import time

_counter = itertools.count()


def new_queue_id() -> str:
    micros = time.time_ns() // 1000
    return f"{micros:X}{os.getpid() & 0xFFFFF:05X}{next(_counter) & 0xFFFF:04X}"

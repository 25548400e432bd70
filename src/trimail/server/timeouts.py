"""Deadlines for reads, as pure arithmetic on ``trio.current_time()`` values.

Every read in a session has one absolute deadline: a command line gets ``command`` seconds
from our previous reply, however its bytes trickle in; in DATA each read waits at most
``data`` seconds, the body's average rate must stay above ``data_min_rate`` once ``data``
seconds have passed (Postfix smtpd_min_data_rate), and the whole phase ends by ``data_total``.
"""

from __future__ import annotations

import attrs

from ..config.model import Timeouts


@attrs.define
class DataClock:
    started: float
    received: int = 0

    def deadline(self, now: float, timeouts: Timeouts) -> float:
        next_bytes = now + timeouts.data
        whole_phase = self.started + timeouts.data_total
        deadline = min(next_bytes, whole_phase)
        if timeouts.data_min_rate > 0:
            # The moment the average rate would fall below the minimum, but never before
            # ``data`` seconds have passed.
            rate_floor = self.started + max(timeouts.data, self.received / timeouts.data_min_rate)
            deadline = min(deadline, rate_floor)
        return deadline

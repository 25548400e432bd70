"""DataClock's deadlines are exactly those of the formulas it precomputes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trimail.config.model import Timeouts
from trimail.server.timeouts import DataClock


def reference_deadline(started: float, received: int, now: float, timeouts: Timeouts) -> float:
    """The module docstring's rules, written as plainly as possible."""
    deadline = min(now + timeouts.data, started + timeouts.data_total)
    if timeouts.data_min_rate > 0:
        rate_floor = started + max(timeouts.data, received / timeouts.data_min_rate)
        deadline = min(deadline, rate_floor)
    return deadline


seconds = st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(
    started=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    elapsed=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    received=st.integers(min_value=0, max_value=10**12),
    data=seconds,
    data_total=seconds,
    rate=st.one_of(st.just(0.0), st.floats(min_value=0.001, max_value=1e9, allow_nan=False)),
)
def test_the_same_deadline_as_the_formulas_bit_for_bit(
    *,
    started: float,
    elapsed: float,
    received: int,
    data: float,
    data_total: float,
    rate: float,
) -> None:
    timeouts = Timeouts(data=data, data_total=data_total, data_min_rate=rate)
    clock = DataClock(started, timeouts)
    clock.received = received
    now = started + elapsed
    assert clock.deadline(now) == reference_deadline(started, received, now, timeouts)


def test_each_limit_decides_in_its_turn() -> None:
    # Defaults: data 180 s per read, 600 s for the whole phase, 500 octets/s from 180 s on.
    clock = DataClock(1000.0, Timeouts())
    assert clock.deadline(1000.0) == 1180.0  # nothing received: the rate's grace, 180 s
    clock.received = 150_000  # enough for 300 s at the minimum rate
    assert clock.deadline(1100.0) == 1280.0  # the next read's 180 s
    assert clock.deadline(1250.0) == 1300.0  # the rate: 150,000 octets at 500/s
    clock.received = 10**9
    assert clock.deadline(1500.0) == 1600.0  # the whole phase

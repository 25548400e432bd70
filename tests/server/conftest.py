"""Session tests over memory streams run under both ways a session keeps its deadlines."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import smtp_wire


@pytest.fixture(params=["watch", "scope"])
def deadline_mechanism(request: pytest.FixtureRequest) -> Iterator[str]:
    """``watch``: contexts from ``make_context`` share a DeadlineWatch task, as a server's
    sessions do; ``scope``: no watch, each session moves its scope's own Trio deadline. Use
    with ``pytestmark = pytest.mark.usefixtures(...)`` in a test module. Synchronous, so it is
    set before the test's Trio run starts (pytest-trio waits only for fixtures that are
    arguments of the test)."""
    mode: str = request.param
    smtp_wire.deadline_mode = mode
    try:
        yield mode
    finally:
        smtp_wire.deadline_mode = "scope"

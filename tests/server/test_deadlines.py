"""DeadlineWatch: a scope is cancelled when its deadline passes, at that moment, and only then."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator

import attrs
import pytest
import trio
import trio.testing

from tests.smtp_wire import make_context, session_over_memory
from trimail.delivery.memory import MemoryHandler
from trimail.server.deadlines import Deadline, DeadlineWatch, ScopeDeadline

#: Far beyond every deadline in these tests: reaching it means a cancel never came.
NEVER = 10_000.0


@contextlib.asynccontextmanager
async def watching(
    watch: DeadlineWatch | None = None,
) -> AsyncIterator[tuple[DeadlineWatch, trio.Nursery]]:
    """A watch running in a nursery for the block, cancelled with whatever else runs there."""
    watch = watch or DeadlineWatch()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.run)
        yield watch, nursery
        nursery.cancel_scope.cancel()


def watched(watch: DeadlineWatch) -> tuple[trio.CancelScope, Deadline]:
    """A fresh scope and its deadline, kept by ``watch``."""
    scope = trio.CancelScope()
    return scope, watch.watch(scope)


async def cancelled_at(deadline: Deadline | ScopeDeadline, scope: trio.CancelScope) -> float:
    """Wait inside ``scope``; when it was cancelled (``NEVER`` if it was not)."""
    with scope:
        await trio.sleep(NEVER)
    return trio.current_time() if scope.cancelled_caught else NEVER


async def test_a_scope_is_cancelled_when_its_deadline_passes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with watching() as (watch, _):
        scope, deadline = watched(watch)
        start = trio.current_time()
        deadline.arm(start + 30)
        assert await cancelled_at(deadline, scope) == start + 30


async def test_a_deadline_moved_later_postpones_the_cancel_without_a_word_to_the_watch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with watching() as (watch, nursery):
        scope, deadline = watched(watch)
        start = trio.current_time()
        deadline.arm(start + 10)

        async def postpone() -> None:
            await trio.sleep(5)
            deadline.arm(start + 50)

        nursery.start_soon(postpone)
        assert await cancelled_at(deadline, scope) == start + 50


async def test_a_deadline_earlier_than_the_next_wake_up_wakes_the_watch_sooner(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with watching() as (watch, _):
        (late_scope, late), (soon_scope, soon) = watched(watch), watched(watch)
        start = trio.current_time()
        late.arm(start + 300)
        await trio.sleep(1)  # the watch now sleeps until start + 300
        assert watch.next_wake == start + 300
        soon.arm(start + 20)
        assert await cancelled_at(soon, soon_scope) == start + 20
        assert not late_scope.cancel_called
        assert await cancelled_at(late, late_scope) == start + 300


async def test_a_lifted_or_closed_deadline_never_cancels(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with watching() as (watch, _):
        (lifted_scope, lifted), (closed_scope, closed) = watched(watch), watched(watch)
        start = trio.current_time()
        lifted.arm(start + 10)
        closed.arm(start + 10)
        lifted.lift()
        closed.close()
        with trio.move_on_after(1000):
            await trio.sleep_forever()
        assert not lifted_scope.cancel_called and not closed_scope.cancel_called
        assert watch.next_wake == math.inf  # nothing armed: the watch sleeps without a deadline


async def test_many_deadlines_each_fire_at_their_own_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watch = DeadlineWatch()
    offsets = [37.0, 5.0, 5.0, 120.0, 0.5, 64.0, 300.0, 1.0]
    fired: dict[int, float] = {}

    async def wait(index: int, at: float) -> None:
        scope, deadline = watched(watch)
        deadline.arm(at)
        fired[index] = await cancelled_at(deadline, scope)
        deadline.close()

    async with watching(watch):
        start = trio.current_time()
        async with trio.open_nursery() as waiters:
            for index, offset in enumerate(offsets):
                waiters.start_soon(wait, index, start + offset)
    assert fired == {index: start + offset for index, offset in enumerate(offsets)}


async def test_a_deadline_armed_before_the_watch_runs_is_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watch = DeadlineWatch()
    scope, deadline = watched(watch)
    start = trio.current_time()
    deadline.arm(start + 7)
    async with watching(watch):
        assert await cancelled_at(deadline, scope) == start + 7


@pytest.mark.parametrize("lift", [False, True])
async def test_a_scope_deadline_arms_and_lifts_the_scope_itself(
    autojump_clock: trio.testing.MockClock, lift: bool
) -> None:
    scope = trio.CancelScope()
    deadline = ScopeDeadline(scope)
    start = trio.current_time()
    deadline.arm(start + 15)
    if lift:
        deadline.lift()
        assert scope.deadline == math.inf
        assert await cancelled_at(deadline, scope) == NEVER
    else:
        assert await cancelled_at(deadline, scope) == start + 15


@pytest.mark.parametrize(
    "client_says",
    [
        b"EHLO c.test\r\nQUIT\r\n",  # a normal end
        b"",  # hangs up at once
        b"PROXY garbage\r\n",  # a bad PROXY header: ends before the conversation starts
    ],
)
async def test_the_watch_forgets_a_session_however_it_ends(
    autojump_clock: trio.testing.MockClock, client_says: bytes
) -> None:
    watch = DeadlineWatch()
    context = attrs.evolve(make_context(MemoryHandler()), deadlines=watch)
    proxied = client_says.startswith(b"PROXY")
    session, client = session_over_memory(context, proxied=proxied)
    assert watch.watched == 1
    async with watching(watch) as (_, nursery):
        nursery.start_soon(session.run)
        stream = client.stream
        assert isinstance(stream, trio.abc.HalfCloseableStream)
        if client_says:
            await stream.send_all(client_says)
        await stream.send_eof()
        with trio.fail_after(60):
            while await stream.receive_some(65536):
                pass
    assert watch.watched == 0

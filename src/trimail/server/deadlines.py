"""Session deadlines that cost a float assignment to set, checked by one watch task.

Every read and write of a session has a deadline, and a busy session sets a few per message.
A Trio cancel scope's deadline is exact but costly to move (a context manager and a heap entry
per move: ~9% of a session's instructions per message, at three moves). Here a session's
deadline is a plain attribute of its ``Deadline``: setting or lifting it is an assignment.
One ``DeadlineWatch`` task per server sleeps until the earliest deadline it knows, then cancels
the scope of every session whose deadline has passed and sleeps again until the earliest one
left. A deadline moved later needs no word to the watch (at worst it wakes, finds nothing due
and sleeps on); one moved earlier than the watch's next wake-up wakes it sooner, which under
load is rare (the watch already sleeps until the nearest deadline of all sessions).

A session arms its deadline before it awaits the client and lifts it after, and arms it with
the handler's limit while the handler's ``deliver`` runs; the watch never cuts short anything
else. One race remains, and the session must settle it: the watch may run after the session's
read (or send, or delivery) completed but before the session itself did, and a cancel cannot
be undone by lifting the deadline. So after lifting, a session whose scope is already
cancelled lets the cancel strike at once, before it acts on what it read (``Session._lift``)
or sends a delivery's reply (``Session._deliver``, ``_overran``): the expiry wins, as it would
have under a Trio deadline, rather than striking later, after a message was stored.
"""

from __future__ import annotations

import math

import trio


class Deadline:
    """One cancel scope's deadline, kept by a ``DeadlineWatch``."""

    __slots__ = ("_scope", "_watch", "at", "expired")

    def __init__(self, watch: DeadlineWatch, scope: trio.CancelScope) -> None:
        self._watch = watch
        self._scope = scope
        #: When the scope is cancelled (``trio.current_time()`` clock); ``inf``: never.
        self.at = math.inf
        #: The watch cancelled the scope since the deadline was last armed.
        self.expired = False

    def arm(self, at: float) -> None:
        """Cancel the scope at ``at`` unless armed again or lifted before."""
        self.at = at
        self.expired = False
        if at < self._watch.next_wake:
            self._watch.wake_by(at)

    def lift(self) -> bool:
        """No deadline until armed again; True if this one expired (the scope is cancelled)."""
        self.at = math.inf
        return self.expired

    def close(self) -> None:
        """The scope is done with: the watch forgets it."""
        self.at = math.inf
        self._watch.forget(self)

    def expire(self) -> None:
        self.at = math.inf
        self.expired = True
        self._scope.cancel()


class DeadlineWatch:
    """The task that cancels scopes whose ``Deadline`` has passed; ``run`` it in a nursery."""

    def __init__(self) -> None:
        self._deadlines: set[Deadline] = set()
        #: When the watch wakes next (``inf``: no deadline armed when it last looked).
        self.next_wake = math.inf
        self._sleep: trio.CancelScope | None = None

    @property
    def watched(self) -> int:
        """How many deadlines the watch holds (one per live session)."""
        return len(self._deadlines)

    def watch(self, scope: trio.CancelScope) -> Deadline:
        """A deadline for ``scope``, lifted until armed; ``close`` it when the scope is done."""
        deadline = Deadline(self, scope)
        self._deadlines.add(deadline)
        return deadline

    def forget(self, deadline: Deadline) -> None:
        self._deadlines.discard(deadline)

    def wake_by(self, at: float) -> None:
        """Wake no later than ``at`` (a deadline was armed earlier than the next wake-up)."""
        self.next_wake = at
        if self._sleep is not None:
            self._sleep.deadline = at

    async def run(self) -> None:
        """Never returns; cancel it once the sessions it watches have ended."""
        while True:
            now = trio.current_time()
            earliest = math.inf
            for deadline in self._deadlines:
                at = deadline.at
                if at <= now:
                    deadline.expire()
                elif at < earliest:
                    earliest = at
            self.next_wake = earliest
            with trio.CancelScope(deadline=earliest) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None


class ScopeDeadline:
    """The same interface on the scope's own Trio deadline: exact, no watch task needed, but a
    Trio deadline move per call. For a session run on its own, outside a server."""

    __slots__ = ("_scope",)

    def __init__(self, scope: trio.CancelScope) -> None:
        self._scope = scope

    def arm(self, at: float) -> None:
        self._scope.deadline = at

    def lift(self) -> bool:
        expired = self._scope.cancel_called
        if self._scope.deadline != math.inf:
            self._scope.deadline = math.inf
        return expired

    def close(self) -> None:
        self.lift()

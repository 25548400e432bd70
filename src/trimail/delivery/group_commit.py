"""Group commit: durable work for many concurrent deliveries, done a batch at a time.

Each delivery used to cost one worker-thread round trip and two fsyncs of its own. Under load
that is mostly overhead: a thread hand-off, GIL ping-pong between the worker and the event loop
for every system call, and one journal commit per directory fsync. Here jobs that arrive while
earlier batches are on disk wait for the next batch, and a batch runs in one worker thread, so
the store can share the expensive step (Maildir: one fsync of ``new/`` covering every rename in
the batch). There is no timer: a job on an idle system starts at once, as a batch of one, and
batches grow only as far as the disk is slower than the arrivals.

No job's outcome is known before its whole batch is done, so nothing is acknowledged early.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import trio

Job = TypeVar("Job")
Result = TypeVar("Result")


class _Entry(Generic[Job, Result]):
    __slots__ = ("done", "error", "job", "result", "taken", "wakeup")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.taken = False
        self.done = False
        self.result: Result | None = None
        self.error: Exception | None = None
        #: Set when this job's task should look again: its job is done, or it is the oldest
        #: queued job and a slot is free. One task is woken per event, never all of them.
        self.wakeup = trio.Event()

    async def wait(self) -> None:
        self.wakeup = trio.Event()
        await self.wakeup.wait()


class GroupCommit(Generic[Job, Result]):
    """Runs ``store(jobs)`` in worker threads, at most ``max_batches`` at once, each over at
    most ``max_batch_size`` jobs in arrival order.

    ``store`` answers every job of its batch, in order, with a result or an ``Exception``;
    ``submit`` returns the result or raises the error. The task of the oldest queued job runs the
    next batch itself (no background task, so the owner needs no nursery).
    """

    def __init__(
        self,
        store: Callable[[Sequence[Job]], Sequence[Result | Exception]],
        *,
        max_batches: int,
        max_batch_size: int,
    ) -> None:
        if max_batches < 1 or max_batch_size < 1:
            raise ValueError("max_batches and max_batch_size must be at least 1")
        self._store = store
        self._max_batches = max_batches
        self._max_batch_size = max_batch_size
        self._queue: deque[_Entry[Job, Result]] = deque()
        self._in_flight = 0
        # Our own limiter: a batch never waits for a thread that other to_thread users hold.
        self._threads = trio.CapacityLimiter(max_batches)
        #: Batches run and jobs stored so far (for tests and benchmarks).
        self.batches = 0
        self.jobs = 0

    @property
    def in_flight(self) -> int:
        """Batches in worker threads right now."""
        return self._in_flight

    async def submit(self, job: Job) -> Result:
        """Store ``job`` in a batch and return its result once the whole batch is done.

        Cancelled while still queued, the job is withdrawn and ``Cancelled`` raised. Once its
        batch has started it runs to the end and its outcome is returned (or raised) as if
        nothing happened, like ``trio.to_thread.run_sync``: the work is done, so the caller
        should know it; the cancellation strikes at the caller's next checkpoint.
        """
        entry: _Entry[Job, Result] = _Entry(job)
        self._queue.append(entry)
        try:
            while not entry.taken:
                # The oldest job's task leads: it is never busy leading another batch, so a
                # free slot is always taken up by someone.
                if self._queue[0] is entry and self._in_flight < self._max_batches:
                    await self._run_next_batch()
                else:
                    await entry.wait()
        except trio.Cancelled:
            if not entry.taken:
                self._queue.remove(entry)
                self._wake_oldest()  # a new oldest job may lead now
                raise
        if not entry.done:
            # Taken into another task's batch that is still running: wait for it, uncancellable
            # as the batch is. Reached only when this task was cancelled while its job was in
            # that batch (the cancel is held until the batch is done): otherwise a taken task is
            # woken only once its job is done, so the common path enters no cancel scope, whose
            # entry and exit cost a few percent of a message's CPU.
            with trio.CancelScope(shield=True):
                while not entry.done:
                    await entry.wait()
        if entry.error is not None:
            raise entry.error
        return entry.result  # type: ignore[return-value]  # done without error: a Result

    def _wake_oldest(self) -> None:
        """A slot or the head of the queue changed: the oldest queued job's task may lead."""
        if self._queue and self._in_flight < self._max_batches:
            self._queue[0].wakeup.set()

    async def _run_next_batch(self) -> None:
        batch = [self._queue.popleft() for _ in range(min(self._max_batch_size, len(self._queue)))]
        for entry in batch:
            entry.taken = True
        self._in_flight += 1
        self._wake_oldest()  # it may lead a batch of its own if another slot is free
        outcomes: list[Result | Exception] | Exception = RuntimeError("batch did not finish")
        try:
            # Shielded: the batch holds other tasks' jobs, and a worker-thread call cannot be
            # interrupted anyway; this only keeps its start from being cancelled.
            with trio.CancelScope(shield=True):
                answered = await trio.to_thread.run_sync(
                    self._store, [entry.job for entry in batch], limiter=self._threads
                )
            outcomes = _checked(answered, len(batch))
        except Exception as exc:  # a bug in store(): every job of the batch fails with it
            outcomes = exc
        finally:
            # Whatever happened, every job of the batch is answered and its slot freed:
            # nothing in here can raise, so no waiter is left behind.
            for index, entry in enumerate(batch):
                outcome = outcomes if isinstance(outcomes, Exception) else outcomes[index]
                if isinstance(outcome, Exception):
                    entry.error = outcome
                else:
                    entry.result = outcome
                entry.done = True
                entry.wakeup.set()
            self._in_flight -= 1
            self.batches += 1
            self.jobs += len(batch)
            self._wake_oldest()


def _checked(answered: object, jobs: int) -> list[Result | Exception]:
    """The store's answer as a list of one outcome per job; raises saying why it is not."""
    if not isinstance(answered, Sequence) or isinstance(answered, str | bytes):
        raise TypeError(f"store answered {type(answered).__name__}, not a sequence")
    if len(answered) != jobs:
        raise RuntimeError(f"store answered {len(answered)} of {jobs} jobs")
    return list(answered)

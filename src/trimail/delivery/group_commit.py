"""Group commit: durable work for many concurrent deliveries, done a batch at a time.

Each delivery used to cost one worker-thread round trip and two fsyncs of its own. Under load
that is mostly overhead: a thread hand-off, GIL ping-pong between the worker and the event loop
for every system call, and one journal commit per directory fsync. Here jobs that arrive while
earlier batches are on disk wait for the next batch, and a batch runs in one worker thread, so
the store can share the expensive step (Maildir: one fsync of ``new/`` covering every rename in
the batch). There is no timer: a job on an idle system starts at once, as a batch of one, and
batches grow only as far as the disk is slower than the arrivals.

The worker thread that finishes a batch takes the next one itself, straight from the queue. A
batch started from the event loop instead (a task woken to lead it, then a worker-thread call)
waited for that task's turn behind every other runnable session: measured at ~2 ms per batch
under 20 busy sessions, as long as the disk work of a batch of ten.

No job's outcome is known before its whole batch is done, so nothing is acknowledged early.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

import trio

if TYPE_CHECKING:
    import outcome

Job = TypeVar("Job")
Result = TypeVar("Result")


class _Entry(Generic[Job, Result]):
    __slots__ = ("error", "job", "result", "taken", "task", "token")

    def __init__(self, job: Job) -> None:
        self.job = job
        #: The task waiting for the outcome, and the run it lives in: the batch's thread
        #: hands the outcome back through the run's token, which reschedules the task.
        self.task = trio.lowlevel.current_task()
        self.token = trio.lowlevel.current_trio_token()
        self.taken = False  # by a worker thread, under the lock: it can no longer be withdrawn
        self.result: Result | None = None
        self.error: Exception | None = None


class GroupCommit(Generic[Job, Result]):
    """Runs ``store(jobs)`` in worker threads, at most ``max_batches`` at once, each over at
    most ``max_batch_size`` jobs in arrival order.

    ``store`` answers every job of its batch, in order, with a result or an ``Exception``;
    ``submit`` returns the result or raises the error. Worker threads come from Trio's thread
    cache: one runs batches while jobs are queued, then goes back to the cache, so the owner
    needs no nursery and no shutdown. ``store`` runs in a plain worker thread: to call into
    Trio it needs ``trio_token=``. Several Trio runs may share one GroupCommit; a batch can
    then hold jobs of each, and every job is answered in its own run.
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
        # Shared with the worker threads: the queue, the worker count and the counters change
        # only under the lock (the counters are read without it, as statistics). A job's
        # outcome is written by its batch's thread before that thread asks the job's run to
        # wake it.
        self._lock = threading.Lock()
        self._queue: deque[_Entry[Job, Result]] = deque()
        self._workers = 0
        self._in_flight = 0
        #: Batches run and jobs stored so far (for tests and benchmarks).
        self.batches = 0
        self.jobs = 0

    @property
    def in_flight(self) -> int:
        """Batches in worker threads right now."""
        return self._in_flight

    # KeyboardInterrupt only at the park, where ``abort`` withdraws the job (as trio's own
    # ParkingLot.park): anywhere else between queueing and parking it would leave a queued job
    # whose batch then reschedules a task that is not parked.
    @trio.lowlevel.enable_ki_protection
    async def submit(self, job: Job) -> Result:
        """Store ``job`` in a batch and return its result once the whole batch is done.

        Cancelled while still queued, the job is withdrawn and ``Cancelled`` raised. Once its
        batch has started it runs to the end and its outcome is returned (or raised) as if
        nothing happened, like ``trio.to_thread.run_sync``: the work is done, so the caller
        should know it; the cancellation strikes at the caller's next checkpoint.

        The task parks on Trio's low-level trap rather than a ``trio.Event``: an event per job
        (its parking lot, its wait and set) cost the event loop's thread ~6 µs per message
        under load, and the loop's CPU is on every message's path (benchmarks/RESULTS.md).
        """
        entry: _Entry[Job, Result] = _Entry(job)
        with self._lock:
            self._queue.append(entry)
            start_worker = self._workers < self._max_batches
            if start_worker:
                self._workers += 1
        if start_worker:
            try:
                self._start_worker()
            except BaseException:  # no thread: a job still queued goes with the error
                if self._withdraw(entry):
                    raise
                # A running worker took it: its batch answers it (uncancellable), and that
                # outcome is this job's. Raising the start failure instead would refuse a
                # message that was stored, and the client would send it again.
                await trio.lowlevel.wait_task_rescheduled(_cannot_abort)
                return self._outcome(entry)

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            # Queued: withdrawn, and the cancellation is raised. In a batch: the task waits
            # for the batch's answer, which reschedules it (see _wake).
            return (
                trio.lowlevel.Abort.SUCCEEDED
                if self._withdraw(entry)
                else trio.lowlevel.Abort.FAILED
            )

        await trio.lowlevel.wait_task_rescheduled(abort)
        return self._outcome(entry)

    @staticmethod
    def _outcome(entry: _Entry[Job, Result]) -> Result:
        if entry.error is not None:
            raise entry.error
        return entry.result  # type: ignore[return-value]  # done without error: a Result

    def _withdraw(self, entry: _Entry[Job, Result]) -> bool:
        """Take ``entry`` out of the queue unless a worker has taken it; whether it was."""
        with self._lock:
            if entry.taken:
                return False
            self._queue.remove(entry)
            return True

    def _start_worker(self) -> None:
        """Start a worker thread, already counted in ``_workers`` by the caller."""
        try:
            trio.lowlevel.start_thread_soon(self._work, _worker_ended)
        except BaseException:
            with self._lock:
                self._workers -= 1
            raise

    def _work(self) -> None:
        """A worker thread: run batches while jobs are queued, then end."""
        try:
            while self._run_one_batch():
                pass
        except BaseException:
            # Only a store that raised past Exception (SystemExit, a Cancelled from calling
            # into Trio) gets here: its batch is answered, and the jobs queued behind it get
            # another thread in this one's slot, so none of them waits forever.
            with self._lock:
                replace = bool(self._queue)
                if not replace:
                    self._workers -= 1
            if replace:
                self._start_worker()
            raise

    def _run_one_batch(self) -> bool:
        """Run the next batch; ``False`` (the worker is done) once the queue is empty."""
        with self._lock:
            if not self._queue:
                self._workers -= 1
                return False
            size = min(self._max_batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(size)]
            for entry in batch:
                entry.taken = True
            self._in_flight += 1
        outcomes: list[Result | Exception] | Exception = RuntimeError("batch did not finish")
        try:
            outcomes = _checked(self._store([entry.job for entry in batch]), len(batch))
        except Exception as exc:  # a bug in store(): every job of the batch fails with it
            outcomes = exc
        finally:
            # Whatever happened, every job of the batch is answered.
            with self._lock:
                self._in_flight -= 1
                self.batches += 1
                self.jobs += len(batch)
            _answer_in_their_runs(batch, outcomes)
        return True


def _answer_in_their_runs(
    batch: list[_Entry[Job, Result]], outcomes: list[Result | Exception] | Exception
) -> None:
    """Give every job of the batch its outcome, in the event loop's thread of its own run."""
    for index, entry in enumerate(batch):
        outcome = outcomes if isinstance(outcomes, Exception) else outcomes[index]
        if isinstance(outcome, Exception):
            entry.error = outcome
        else:
            entry.result = outcome
    tokens = {entry.token for entry in batch}  # one, unless runs share a store
    for token in tokens:
        own = [entry for entry in batch if entry.token is token]
        # A run that is over has nobody left waiting for these jobs.
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(_wake, own)


def _cannot_abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


def _wake(entries: list[_Entry[Job, Result]]) -> None:
    """In the run's own thread: every job's outcome is in place; its task goes on."""
    for entry in entries:
        trio.lowlevel.reschedule(entry.task)


def _worker_ended(result: outcome.Outcome[None]) -> None:
    """The end of a worker thread. ``_work`` answers the jobs of a batch whatever ``store``
    raised; an error that escaped it is raised again here, and Trio's thread cache prints it."""
    result.unwrap()


def _checked(answered: object, jobs: int) -> list[Result | Exception]:
    """The store's answer as a list of one outcome per job; raises saying why it is not."""
    if not isinstance(answered, Sequence) or isinstance(answered, str | bytes):
        raise TypeError(f"store answered {type(answered).__name__}, not a sequence")
    if len(answered) != jobs:
        raise RuntimeError(f"store answered {len(answered)} of {jobs} jobs")
    return list(answered)

"""GroupCommit: jobs that arrive while batches are on disk share the next batch; at most
max_batches run at once; each job gets its own outcome, never before its whole batch is done;
a cancelled job is withdrawn while queued, and once its batch has started it is waited for and
its outcome returned, like a worker-thread call.

The store function blocks on a gate the test opens, so every step is driven by events and
``wait_all_tasks_blocked``, never by sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
import trio
import trio.testing

from trimail.delivery.group_commit import GroupCommit

SAFETY_NET = 10.0


class GatedStore:
    """A store that records each batch, tells the test it started, and waits for the test to
    let it finish. Jobs are ints; a negative job fails with ValueError, others answer job*10."""

    def __init__(self) -> None:
        # The store runs in a plain worker thread, so it calls into Trio through the token.
        self._token = trio.lowlevel.current_trio_token()
        self.batches: list[list[int]] = []
        self.finished: list[list[int]] = []
        self._gate = threading.Semaphore(0)
        self._lock = threading.Lock()
        self.started_send, self.started = trio.open_memory_channel[list[int]](100)
        self.raise_next: Exception | None = None

    def __call__(self, jobs: Sequence[int]) -> list[int | Exception]:
        batch = list(jobs)
        with self._lock:
            self.batches.append(batch)
        trio.from_thread.run_sync(self.started_send.send_nowait, batch, trio_token=self._token)
        # The timeout is a safety net: a failed assertion must not leave threads parked forever.
        self._gate.acquire(timeout=SAFETY_NET)
        with self._lock:
            self.finished.append(batch)
        if self.raise_next is not None:
            error, self.raise_next = self.raise_next, None
            raise error
        return [ValueError(f"bad job {job}") if job < 0 else job * 10 for job in batch]

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self._gate.release()


class Submitter:
    """Submits jobs from tasks in one nursery, one after the other in a known order, and
    records each job's result or error."""

    def __init__(self, commit: GroupCommit[int, int], nursery: trio.Nursery) -> None:
        self.commit, self.nursery = commit, nursery
        self.results: dict[int, int | Exception] = {}

    async def submit(self, *jobs: int) -> None:
        for job in jobs:
            self.nursery.start_soon(self._one, job)
            await trio.testing.wait_all_tasks_blocked()  # queued (or running) before the next

    async def _one(self, job: int) -> None:
        try:
            self.results[job] = await self.commit.submit(job)
        except ValueError as exc:
            self.results[job] = exc


async def test_a_lone_job_runs_at_once_as_a_batch_of_one() -> None:
    store = GatedStore()
    commit = GroupCommit(store, max_batches=1, max_batch_size=10)
    store.release()
    with trio.fail_after(10):
        assert await commit.submit(4) == 40
    assert store.batches == [[4]]
    assert (commit.batches, commit.jobs) == (1, 1)


async def test_jobs_arriving_during_a_batch_share_the_next_one_and_wait_for_it() -> None:
    store = GatedStore()
    commit = GroupCommit(store, max_batches=1, max_batch_size=10)
    with trio.fail_after(SAFETY_NET * 2):
        async with trio.open_nursery() as nursery:
            jobs = Submitter(commit, nursery)
            await jobs.submit(1)
            assert await store.started.receive() == [1]
            await jobs.submit(2, 3, 4)
            # 2, 3 and 4 queue behind the batch in flight; nobody has an answer yet.
            assert (commit.in_flight, jobs.results) == (1, {})
            store.release()
            assert await store.started.receive() == [2, 3, 4]
            await trio.testing.wait_all_tasks_blocked()
            assert jobs.results == {1: 10}  # the second batch's jobs wait for all of it
            store.release()
    assert jobs.results == {1: 10, 2: 20, 3: 30, 4: 40}
    assert store.batches == [[1], [2, 3, 4]]
    assert (commit.batches, commit.jobs, commit.in_flight) == (2, 4, 0)


async def test_at_most_max_batches_run_at_once_each_at_most_max_batch_size() -> None:
    store = GatedStore()
    commit = GroupCommit(store, max_batches=2, max_batch_size=3)
    with trio.fail_after(SAFETY_NET * 2):
        async with trio.open_nursery() as nursery:
            jobs = Submitter(commit, nursery)
            await jobs.submit(1)
            assert await store.started.receive() == [1]
            await jobs.submit(2)  # a second thread: the first is busy
            assert await store.started.receive() == [2]
            await jobs.submit(*range(3, 10))
            assert commit.in_flight == 2  # 3..9 queue: no third thread
            assert store.started.statistics().current_buffer_used == 0
            store.release()  # [1] or [2] ends; the next batch takes the first three queued
            assert await store.started.receive() == [3, 4, 5]
            store.release(2)
            last_two = [await store.started.receive(), await store.started.receive()]
            assert sorted(last_two) == [[6, 7, 8], [9]]
            store.release(2)
    assert jobs.results == {job: job * 10 for job in range(1, 10)}


async def batch_of_three(store: GatedStore, first: int, second: int, third: int) -> Submitter:
    """Run [first] and then [second, third], one gate opening per batch."""
    commit = GroupCommit(store, max_batches=1, max_batch_size=10)
    with trio.fail_after(SAFETY_NET * 2):
        async with trio.open_nursery() as nursery:
            jobs = Submitter(commit, nursery)
            await jobs.submit(first)
            assert await store.started.receive() == [first]
            await jobs.submit(second, third)
            store.release()
            assert await store.started.receive() == [second, third]
            store.release()
        # The same GroupCommit keeps working after any failure.
        store.release()
        assert await commit.submit(7) == 70
    return jobs


async def test_each_job_gets_its_own_outcome() -> None:
    results = (await batch_of_three(GatedStore(), 1, -2, 3)).results
    assert results[1] == 10 and results[3] == 30
    assert isinstance(results[-2], ValueError)
    assert str(results[-2]) == "bad job -2"


async def test_a_failing_store_fails_its_whole_batch_only() -> None:
    store = GatedStore()
    store.raise_next = ValueError("disk on fire")
    results = (await batch_of_three(store, 1, 2, 3)).results
    assert str(results[1]) == "disk on fire"
    assert results[2] == 20 and results[3] == 30
    assert store.batches == [[1], [2, 3], [7]]


async def test_an_answer_of_the_wrong_length_fails_the_batch() -> None:
    commit: GroupCommit[int, int] = GroupCommit(lambda jobs: [1], max_batches=1, max_batch_size=10)
    with trio.fail_after(10):
        assert await commit.submit(5) == 1
    short: GroupCommit[int, int] = GroupCommit(lambda jobs: [], max_batches=1, max_batch_size=1)
    with pytest.raises(RuntimeError, match="store answered 0 of 1 jobs"):
        await short.submit(5)


class Cancellable:
    """Submits one job in its own cancel scope, which the test cancels when it chooses."""

    def __init__(self, commit: GroupCommit[int, int], job: int) -> None:
        self.commit, self.job = commit, job
        self.scope = trio.CancelScope()
        self.ended = trio.Event()
        self.result: int | None = None

    async def run(self) -> None:
        with self.scope:
            self.result = await self.commit.submit(self.job)
        self.ended.set()


async def queue_behind_a_running_batch(
    store: GatedStore,
    nursery: trio.Nursery,
    waiting: Cancellable,
    *first: int,
) -> Submitter:
    """Submit ``first[0]`` and wait until its batch starts and parks in the store, then the
    rest of ``first`` and ``waiting``'s job, which queue behind that batch."""
    jobs = Submitter(waiting.commit, nursery)
    await jobs.submit(first[0])
    assert await store.started.receive() == [first[0]]
    await jobs.submit(*first[1:])
    nursery.start_soon(waiting.run)
    await trio.testing.wait_all_tasks_blocked()
    return jobs


async def cancel_in_flight(store: GatedStore, waiting: Cancellable, batch: list[int]) -> None:
    """Let the running batch end so ``batch`` (holding ``waiting``'s job) starts, cancel
    ``waiting`` there, and check that it waits for its batch before it ends."""
    store.release()
    assert await store.started.receive() == batch
    waiting.scope.cancel()
    await trio.testing.wait_all_tasks_blocked()
    assert not waiting.ended.is_set()  # it waits for its batch to end
    store.release()
    await waiting.ended.wait()


async def test_a_job_cancelled_while_queued_is_withdrawn() -> None:
    store = GatedStore()
    commit = GroupCommit(store, max_batches=1, max_batch_size=10)
    second = Cancellable(commit, 2)
    with trio.fail_after(SAFETY_NET * 2):
        async with trio.open_nursery() as nursery:
            jobs = await queue_behind_a_running_batch(store, nursery, second, 1)
            second.scope.cancel()
            await second.ended.wait()
            assert second.scope.cancelled_caught
            store.release()
        store.release()
        assert await commit.submit(3) == 30
    assert store.batches == [[1], [3]]  # 2 never reached the store
    assert jobs.results == {1: 10}


async def test_a_job_cancelled_in_flight_is_finished_and_its_result_returned() -> None:
    store = GatedStore()
    commit = GroupCommit(store, max_batches=1, max_batch_size=10)
    second = Cancellable(commit, 2)
    with trio.fail_after(SAFETY_NET * 2):
        async with trio.open_nursery() as nursery:
            await queue_behind_a_running_batch(store, nursery, second, 1)
            await cancel_in_flight(store, second, [2])
    assert second.result == 20  # the work was done, so the caller is told
    assert store.finished == [[1], [2]]


async def test_a_job_cancelled_while_sharing_its_batch_is_finished_with_the_others() -> None:
    store = GatedStore()
    commit = GroupCommit(store, max_batches=1, max_batch_size=10)
    third = Cancellable(commit, 3)
    with trio.fail_after(SAFETY_NET * 2):
        async with trio.open_nursery() as nursery:
            jobs = await queue_behind_a_running_batch(store, nursery, third, 1, 2)
            await cancel_in_flight(store, third, [2, 3])
    assert third.result == 30
    assert jobs.results == {1: 10, 2: 20}


async def test_an_answer_that_is_not_a_sequence_fails_the_batch_and_frees_its_slot() -> None:
    answers: list[object] = [None, [70]]

    def store(jobs: Sequence[int]) -> list[int | Exception]:
        return answers.pop(0)  # type: ignore[return-value]  # the bug under test

    commit: GroupCommit[int, int] = GroupCommit(store, max_batches=1, max_batch_size=1)
    with trio.fail_after(SAFETY_NET):
        with pytest.raises(TypeError, match="store answered NoneType, not a sequence"):
            await commit.submit(5)
        assert commit.in_flight == 0
        assert await commit.submit(7) == 70


def test_bounds_must_be_positive() -> None:
    for batches, size in ((0, 1), (1, 0)):
        with pytest.raises(ValueError, match="at least 1"):
            GroupCommit(lambda jobs: [], max_batches=batches, max_batch_size=size)


class CountingStore:
    """A store that records each batch and the most batches it ever saw at once. Each call
    holds its slot briefly so that concurrent batches overlap; the assertions hold whether
    or not they do."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self._lock = threading.Lock()
        self._running = 0
        self.peak = 0

    def __call__(self, jobs: Sequence[int]) -> list[int | Exception]:
        with self._lock:
            self._running += 1
            self.peak = max(self.peak, self._running)
            self.batches.append(list(jobs))
        threading.Event().wait(0.001)
        with self._lock:
            self._running -= 1
        return [job * 10 for job in jobs]


async def submit_all(
    commit: GroupCommit[int, int], jobs: Sequence[int], arrived: list[int] | None = None
) -> dict[int, int]:
    """Submit every job from its own task, all in one scheduling tick (Trio picks the order:
    ``arrived`` records it)."""
    results: dict[int, int] = {}

    async def one(job: int) -> None:
        if arrived is not None:
            arrived.append(job)  # no checkpoint before submit queues it: the queue's order
        results[job] = await commit.submit(job)

    with trio.fail_after(SAFETY_NET):
        async with trio.open_nursery() as nursery:
            for job in jobs:
                nursery.start_soon(one, job)
    return results


async def test_a_burst_never_runs_more_than_max_batches_each_in_arrival_order() -> None:
    store = CountingStore()
    commit = GroupCommit(store, max_batches=2, max_batch_size=3)
    arrived: list[int] = []
    results = await submit_all(commit, range(50), arrived)
    assert results == {job: job * 10 for job in range(50)}
    assert store.peak <= 2
    assert all(1 <= len(batch) <= 3 for batch in store.batches)
    # Each batch is a run of consecutive arrivals, and together they hold every job once.
    for batch in store.batches:
        start = arrived.index(batch[0])
        assert arrived[start : start + len(batch)] == batch
    assert sorted(job for batch in store.batches for job in batch) == list(range(50))
    assert (commit.batches, commit.jobs, commit.in_flight) == (len(store.batches), 50, 0)


async def test_a_store_that_raises_past_exception_fails_its_batch_and_the_lane_goes_on() -> None:
    calls: list[list[int]] = []
    first_in_store, second_queued = threading.Event(), threading.Event()

    def store(jobs: Sequence[int]) -> list[int | Exception]:
        calls.append(list(jobs))
        if len(calls) == 1:
            first_in_store.set()
            second_queued.wait(SAFETY_NET)  # a safety net, never a wait
            raise SystemExit("a store bug")
        return [job * 10 for job in jobs]

    commit: GroupCommit[int, int] = GroupCommit(store, max_batches=1, max_batch_size=10)
    results: dict[int, int | Exception] = {}

    async def one(job: int) -> None:
        try:
            results[job] = await commit.submit(job)
        except RuntimeError as exc:
            results[job] = exc

    with trio.fail_after(SAFETY_NET * 2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, 1)
            assert await trio.to_thread.run_sync(first_in_store.wait, SAFETY_NET)
            nursery.start_soon(one, 2)
            await trio.testing.wait_all_tasks_blocked()
            second_queued.set()
        # 2 was queued behind the failed batch: another thread took it.
        assert await commit.submit(3) == 30  # and the lane's one worker slot was given back
    assert str(results[1]) == "batch did not finish"
    assert results[2] == 20
    assert calls == [[1], [2], [3]]
    assert commit.in_flight == 0


async def test_a_worker_thread_that_cannot_start_withdraws_the_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stored: list[list[int]] = []

    def store(jobs: Sequence[int]) -> list[int | Exception]:
        stored.append(list(jobs))
        return [job * 10 for job in jobs]

    def no_threads(*args: object, **kwargs: object) -> None:
        raise RuntimeError("can't start new thread")

    commit: GroupCommit[int, int] = GroupCommit(store, max_batches=1, max_batch_size=10)
    with monkeypatch.context() as patch:
        patch.setattr(trio.lowlevel, "start_thread_soon", no_threads)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            await commit.submit(1)
    with trio.fail_after(SAFETY_NET):
        assert await commit.submit(2) == 20
    assert stored == [[2]]  # 1 was withdrawn, and its worker slot given back


async def test_a_job_taken_by_a_running_worker_gets_its_outcome_despite_a_start_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two slots: job 1's worker is running when job 2 asks for a second thread, which fails;
    # by then the running worker has taken job 2, so its submit waits for that batch and
    # returns its outcome: the job was stored, and refusing it would have it sent again.
    store = GatedStore()
    commit: GroupCommit[int, int] = GroupCommit(store, max_batches=2, max_batch_size=10)
    outcome: list[object] = []

    def taken_then_no_thread(*args: object, **kwargs: object) -> None:
        store.release()  # batch [1] ends; its worker takes job 2 from the queue
        for _ in range(int(SAFETY_NET * 1000)):  # until that worker's store call has begun
            if len(store.batches) == 2:
                break
            threading.Event().wait(0.001)
        raise RuntimeError("can't start new thread")

    async def job_two() -> None:
        try:
            outcome.append(await commit.submit(2))
        except RuntimeError as exc:
            outcome.append(exc)

    with trio.fail_after(SAFETY_NET):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(commit.submit, 1)
            assert await store.started.receive() == [1]
            with monkeypatch.context() as patch:
                patch.setattr(trio.lowlevel, "start_thread_soon", taken_then_no_thread)
                nursery.start_soon(job_two)
                await trio.testing.wait_all_tasks_blocked()
            assert await store.started.receive() == [2]
            assert outcome == []  # still waiting for its batch
            store.release()
    assert outcome == [20]
    assert store.finished == [[1], [2]]
    assert commit.in_flight == 0


def test_runs_sharing_one_group_commit_each_get_their_own_answers() -> None:
    store = CountingStore()
    commit = GroupCommit(store, max_batches=1, max_batch_size=64)
    answers: dict[str, dict[int, int]] = {}

    def run(name: str, jobs: range) -> None:
        answers[name] = trio.run(submit_all, commit, jobs)

    threads = [
        threading.Thread(target=run, args=("first", range(0, 40))),
        threading.Thread(target=run, args=("second", range(100, 140))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY_NET * 2)
    assert answers == {
        "first": {job: job * 10 for job in range(0, 40)},
        "second": {job: job * 10 for job in range(100, 140)},
    }
    assert commit.jobs == 80

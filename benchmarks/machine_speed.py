"""How fast this machine is right now, measured at the start and the end of a benchmark run.

Ratios within one run are what the runner is for, but a cell also depends on the state of the
machine, which changes under the runner's feet: a VM's CPU slows when its host is busy, and on
ext4 without a journal (this VM's) every file created for a while after many were deleted (a
previous run's Maildirs, a test suite's temp files) is slower (``recently_deleted`` in perf
under ``openat``). The two
probes here put numbers on both, so a reader can compare the state of the machine between
runs. They record speed, not its cause: on this VM the disk figure moves by ±20% between
minutes, and runs read lower at their start than at their end even after idle minutes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

#: The CPU probe: this many iterations of a plain Python loop, timed as the best of a few runs.
PYTHON_LOOP_ITERATIONS = 100_000
PYTHON_LOOP_REPEATS = 7
#: The disk probe stops at whichever comes first.
DISK_PROBE_SECONDS = 1.0
DISK_PROBE_FILES = 2_000
#: One small message, as the 1 KiB scenarios deliver.
_PAYLOAD = b"x" * 1024


@dataclass(frozen=True)
class MachineSpeed:
    #: Best time of ``PYTHON_LOOP_ITERATIONS`` iterations of a plain loop (lower is faster).
    python_loop_ms: float
    #: Durable file creations per second from one thread (write, fsync, rename, directory
    #: fsync: a Maildir delivery without batching); higher is faster.
    durable_files_per_second: float

    def describe(self) -> str:
        return (
            f"Python loop {self.python_loop_ms:.2f} ms, "
            f"{self.durable_files_per_second:,.0f} durable files/s"
        )


def python_loop_ms(iterations: int = PYTHON_LOOP_ITERATIONS) -> float:
    """The best of a few timings of the same loop: the least disturbed one says how fast this
    CPU runs Python now (servers and the load generator spend their time much the same way)."""
    best = float("inf")
    for _ in range(PYTHON_LOOP_REPEATS):
        started = time.perf_counter()
        total = 0
        for i in range(iterations):
            total += i & 7
        best = min(best, time.perf_counter() - started)
    return best * 1e3


def durable_files_per_second(
    directory: Path, *, seconds: float = DISK_PROBE_SECONDS, limit: int = DISK_PROBE_FILES
) -> float:
    """Create durable files in ``directory`` (made here, left for the caller to remove) one
    after another for ``seconds`` or ``limit`` files, whichever comes first."""
    staging, final = directory / "tmp", directory / "new"
    staging.mkdir(parents=True)
    final.mkdir()
    final_fd = os.open(final, os.O_RDONLY | os.O_DIRECTORY)
    count = 0
    started = time.perf_counter()
    try:
        while count < limit:
            name = f"{count}"
            fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, _PAYLOAD)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(staging / name, final / name)
            os.fsync(final_fd)
            count += 1
            if time.perf_counter() - started >= seconds:
                break
    finally:
        os.close(final_fd)
    return count / (time.perf_counter() - started)


def measure(directory: Path) -> MachineSpeed:
    """Both probes; the disk one writes under ``directory``, which must not exist yet."""
    return MachineSpeed(
        python_loop_ms=python_loop_ms(),
        durable_files_per_second=durable_files_per_second(directory),
    )

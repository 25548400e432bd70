"""Durable Maildir delivery: tmp/ -> write -> fsync -> rename into new/ -> fsync new/.

Only after the directory fsync does ``deliver`` return, so a 250 means the message survives a
power cut. Concurrent deliveries are written in batches (see group_commit): one wake-up of the
event loop and one fsync of new/ per batch instead of per message, the writeback of every file
in the batch started before the first fsync waits (see writeback), and a bounded number of
worker threads, so a slow disk never blocks the event loop. A large message is copied from its
spool file. Where trimail was built with a C compiler, a batch of small messages runs as one
call that does not hold the GIL (_maildir_batch.c): the same steps, measured +19-22% msg/s under
20 sessions, since in Python the worker and the event loop trade the GIL at every system call.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import attrs
import trio

from .. import _extensions
from ..handler import BaseHandler, DeliveryError, Receipt
from ..protocol.envelope import Envelope
from ..protocol.replies import Reply
from .group_commit import GroupCommit
from .message import Message, write_all
from .writeback import start_writeback


class _BatchInC(Protocol):
    def __call__(
        self, jobs: list[tuple[str, str, bytes]], new_directory: str, /
    ) -> tuple[list[int], int, list[tuple[int, int]]]: ...


_store_batch_in_c: _BatchInC | None = None
if _extensions.ENABLED:
    with contextlib.suppress(ImportError):  # installed without a C compiler
        from ._maildir_batch import store_batch as _store_batch_in_c

#: Whether small batches run in the C module (built, and not switched off: trimail._extensions).
C_BATCHES = _store_batch_in_c is not None

SUBDIRECTORIES = ("tmp", "new", "cur")
#: Bytes per read when copying a spooled message into its Maildir file.
COPY_CHUNK = 1024 * 1024
#: Large messages per batch: enough to share a directory fsync, few enough that one batch
#: of copies does not take long.
LARGE_BATCH_SIZE = 4
_sequence = itertools.count()
#: This process's id for file names: getpid is a system call, so it is read once per process
#: (and again in a forked child, which is another process).
_pid = os.getpid()


def _after_fork() -> None:
    global _pid  # noqa: PLW0603  (a per-process constant, refreshed only by a fork)
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)
log = logging.getLogger("trimail")


def _safe_hostname() -> str:
    # Maildir reserves "/" and ":" in file names; escape them as the Maildir spec suggests.
    return socket.gethostname().replace("/", r"\057").replace(":", r"\072")


def _fsync_directory(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class UnixNewlines:
    """CRLF -> LF over a stream of chunks, even when a CRLF is split between two chunks.

    The DATA decoder has already refused bare CR and LF, so every CR here starts a CRLF.
    """

    def __init__(self) -> None:
        self._held_cr = False

    def __call__(self, chunk: bytes) -> bytes:
        if self._held_cr:
            chunk = b"\r" + chunk
        self._held_cr = chunk.endswith(b"\r")
        if self._held_cr:
            chunk = chunk[:-1]
        return chunk.replace(b"\r\n", b"\n")


def _identity(chunk: bytes) -> bytes:
    return chunk


@attrs.frozen
class _StoreJob:
    """One message to store: its Maildir name, the bytes known in memory (trace headers, and
    the content when it was small) and the spool file holding the rest when it was large."""

    name: str
    head: bytes
    source: Path | None
    convert: Callable[[bytes], bytes]


class MaildirHandler(BaseHandler):
    """Stores every accepted message as one file in ``root/new`` (the default handler).

    Messages go through one of two lanes of group commit. Small ones (content in memory) are
    written one batch at a time: on the disks measured, one thread with batches that grow
    under load beat several threads with small batches on both throughput and CPU. Large ones
    (copied from a spool file) have their own lane, ``large_threads`` batches of a few at once,
    so a 25 MiB copy never holds up the small messages queued behind it.
    """

    def __init__(
        self,
        root: Path,
        *,
        batch_size: int = 64,
        large_threads: int = 2,
        unix_newlines: bool = False,
    ) -> None:
        """``unix_newlines`` stores LF line endings instead of the CRLF received (lossy for
        signatures over the raw bytes, but what plain-text tools expect)."""
        self.root = root
        self.unix_newlines = unix_newlines
        self._tmp = os.path.join(root, "tmp", "")  # with the trailing separator
        self._new = os.path.join(root, "new", "")
        self._small = GroupCommit(self._store_batch, max_batches=1, max_batch_size=batch_size)
        self._large = GroupCommit(
            self._store_batch, max_batches=large_threads, max_batch_size=LARGE_BATCH_SIZE
        )
        self._hostname = _safe_hostname()

    @property
    def spool_directory(self) -> Path:
        """Where large messages are spooled while they arrive: tmp/, on the same disk."""
        return self.root / "tmp"

    @property
    def lanes(self) -> tuple[GroupCommit[_StoreJob, str], GroupCommit[_StoreJob, str]]:
        """The small- and large-message batchers (their counters show how writes group)."""
        return self._small, self._large

    async def prepare(self) -> None:
        await trio.to_thread.run_sync(self._make_directories)

    def _make_directories(self) -> None:
        for sub in SUBDIRECTORIES:
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    def unique_name(self, queue_id: str) -> str:
        """Maildir's time.MusecPpidQn.host, with our queue id making it unique per process."""
        now = time.time()
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        return f"{seconds}.M{micros}P{_pid}Q{next(_sequence)}_{queue_id}.{self._hostname}"

    async def deliver(self, envelope: Envelope, message: Message) -> Receipt | Reply:
        convert = UnixNewlines() if self.unix_newlines else _identity
        source = message.spooled_file
        if source is None:  # small: all in memory, read in one piece
            head = convert(message.trace_headers) + convert(await message.read())
        else:
            head = convert(message.trace_headers)
        job = _StoreJob(self.unique_name(message.queue_id), head, source, convert)
        lane = self._small if source is None else self._large
        try:
            return await lane.submit(job)
        except OSError as exc:
            raise DeliveryError(f"maildir write failed: {exc}") from exc

    def _store_batch(self, jobs: Sequence[_StoreJob]) -> list[str | Exception]:
        """Write every file into tmp/ and start its writeback, then fsync each, rename each
        into new/, and fsync new/ once: that one directory fsync makes every rename of the
        batch durable, and no job's outcome is returned before it.

        Small messages (all in memory) take the C module's version of these steps where it
        was built: the same system calls in the same order, in one stretch without the GIL
        (see _maildir_batch.c). Large ones are copied from their spool file in Python.
        """
        if _store_batch_in_c is None or any(job.source is not None for job in jobs):
            return self._store_batch_python(jobs)
        return self._store_batch_c(_store_batch_in_c, jobs)

    def _store_batch_c(self, store: _BatchInC, jobs: Sequence[_StoreJob]) -> list[str | Exception]:
        tmp, new = self._tmp, self._new
        errors, directory_error, stranded = store(
            [(tmp + job.name, new + job.name, job.head) for job in jobs], new
        )
        for index, unlink_error in stranded:
            log.error(
                "maildir: %s stays in new/ after 451: %s",
                new + jobs[index].name,
                OSError(unlink_error, os.strerror(unlink_error)),
            )
        outcomes: list[str | Exception] = []
        for job, error in zip(jobs, errors, strict=True):
            if error:
                outcomes.append(OSError(error, os.strerror(error), tmp + job.name))
            elif directory_error:
                outcomes.append(OSError(directory_error, os.strerror(directory_error), new))
            else:
                outcomes.append(job.name)
        return outcomes

    def _store_batch_python(self, jobs: Sequence[_StoreJob]) -> list[str | Exception]:
        """``_store_batch`` step by step in Python (large messages, or no C module)."""
        # Plain strings, not Paths: this runs in a worker thread holding the GIL between system
        # calls, so every microsecond of Python here is one the event loop waits for.
        tmp, new = self._tmp, self._new
        outcomes: list[str | Exception] = [job.name for job in jobs]
        open_files: dict[int, int] = {}  # job index -> fd, written and writeback started
        try:
            for index, job in enumerate(jobs):
                try:
                    open_files[index] = self._write(tmp + job.name, job)
                except OSError as exc:
                    outcomes[index] = exc
            for index, fd in list(open_files.items()):  # in order: oldest writeback first
                del open_files[index]
                try:
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                except OSError as exc:
                    outcomes[index] = exc
                    _remove(tmp + jobs[index].name)
        finally:
            for fd in open_files.values():  # only after an unexpected error
                os.close(fd)
        renamed: list[str] = []
        for index, job in enumerate(jobs):
            if isinstance(outcomes[index], Exception):
                continue
            try:
                os.rename(tmp + job.name, new + job.name)
            except OSError as exc:
                outcomes[index] = exc
                _remove(tmp + job.name)
            else:
                renamed.append(new + job.name)
        if renamed:
            try:
                _fsync_directory(new)
            except OSError as exc:
                # Not known to be durable, so none may stay visible after we answer 451.
                for path in renamed:
                    try:
                        os.unlink(path)
                    except OSError as unlink_error:
                        log.error("maildir: %s stays in new/ after 451: %s", path, unlink_error)
                outcomes = [exc if isinstance(outcome, str) else outcome for outcome in outcomes]
        return outcomes

    @staticmethod
    def _write(temporary: str, job: _StoreJob) -> int:
        """Create ``temporary``, write the job's bytes, start their writeback; the open fd."""
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            write_all(fd, job.head)
            if job.source is not None:
                with job.source.open("rb") as spooled:
                    while data := spooled.read(COPY_CHUNK):
                        write_all(fd, job.convert(data))
            start_writeback(fd)
        except BaseException:
            os.close(fd)
            _remove(temporary)
            raise
        return fd


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)

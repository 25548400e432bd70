"""Durable Maildir delivery: tmp/ -> write -> fsync -> rename into new/ -> fsync new/.

Only after the directory fsync does ``commit`` return, so a 250 means the message survives a
power cut. Small messages stay in memory until commit and cost one worker-thread round trip;
a large one spills to its tmp/ file as it arrives, so a session never holds more than
``spill_threshold`` bytes of it. Blocking calls run in worker threads bounded by a
CapacityLimiter, so one slow disk cannot stall every session.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import trio

from .backend import DeliveryError, IncomingMessage, MessageSpool

SUBDIRECTORIES = ("tmp", "new", "cur")
DEFAULT_SPILL_THRESHOLD = 1024 * 1024
_sequence = itertools.count()


def _safe_hostname() -> str:
    # Maildir reserves "/" and ":" in file names; escape them as the Maildir spec suggests.
    return socket.gethostname().replace("/", r"\057").replace(":", r"\072")


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, chunks: list[bytes]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]


class _UnixNewlines:
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


class _MaildirSpool:
    def __init__(self, backend: MaildirBackend, message: IncomingMessage) -> None:
        self._backend = backend
        self._name = backend.unique_name(message.queue_id)
        self._convert = _UnixNewlines() if backend.unix_newlines else None
        headers = self._convert(message.trace_headers) if self._convert else message.trace_headers
        self._buffered: list[bytes] = [headers]
        self._buffered_size = len(headers)
        self._fd: int | None = None
        self._finished = False

    @property
    def _tmp_path(self) -> Path:
        return self._backend.root / "tmp" / self._name

    async def write(self, data: bytes) -> None:
        if self._convert is not None:
            data = self._convert(data)
        self._buffered.append(data)
        self._buffered_size += len(data)
        if self._buffered_size >= self._backend.spill_threshold:
            await self._backend.run_in_thread(self._spill)

    def _spill(self) -> None:
        if self._fd is None:
            self._fd = os.open(
                self._tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
            )
        chunks, self._buffered, self._buffered_size = self._buffered, [], 0
        _write_all(self._fd, chunks)

    async def commit(self) -> str:
        try:
            await self._backend.run_in_thread(self._commit_sync)
        except OSError as exc:
            await self.abort()
            raise DeliveryError(f"maildir write failed: {exc}") from exc
        self._finished = True
        return self._name

    def _commit_sync(self) -> None:
        self._spill()
        assert self._fd is not None
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        new_dir = self._backend.root / "new"
        final = new_dir / self._name
        os.rename(self._tmp_path, final)
        try:
            _fsync_directory(new_dir)
        except OSError:
            # Not known to be durable, so it must not stay visible after we answer 451.
            with contextlib.suppress(OSError):
                os.unlink(final)
            raise

    async def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._buffered = []
        await self._backend.run_in_thread(self._remove_tmp)

    def _remove_tmp(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp_path)


class MaildirBackend:
    def __init__(
        self,
        root: Path,
        *,
        max_threads: int = 16,
        spill_threshold: int = DEFAULT_SPILL_THRESHOLD,
        unix_newlines: bool = False,
    ) -> None:
        """``unix_newlines`` stores LF line endings instead of the CRLF received (lossy for
        signatures over the raw bytes, but what plain-text tools expect)."""
        self.root = root
        self.spill_threshold = spill_threshold
        self.unix_newlines = unix_newlines
        self._limiter = trio.CapacityLimiter(max_threads)
        self._hostname = _safe_hostname()

    async def prepare(self) -> None:
        await self.run_in_thread(self._make_directories)

    def _make_directories(self) -> None:
        for sub in SUBDIRECTORIES:
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    def unique_name(self, queue_id: str) -> str:
        """Maildir's time.MusecPpidQn.host, with our queue id making it unique per process."""
        now = time.time()
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        return f"{seconds}.M{micros}P{os.getpid()}Q{next(_sequence)}_{queue_id}.{self._hostname}"

    async def run_in_thread(self, work: Callable[[], None]) -> None:
        await trio.to_thread.run_sync(work, limiter=self._limiter)

    def begin(self, message: IncomingMessage) -> MessageSpool:
        return _MaildirSpool(self, message)

"""Durable Maildir delivery: tmp/ -> write -> fsync -> rename into new/ -> fsync new/.

Only after the directory fsync does ``deliver`` return, so a 250 means the message survives a
power cut. A message is written in one worker-thread round trip (copied from its spool file when
it was large); blocking calls run in worker threads bounded by a CapacityLimiter, so one slow
disk cannot stall every session.
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

from ..handler import BaseHandler, DeliveryError, Receipt
from ..protocol.envelope import Envelope
from ..protocol.replies import Reply
from .message import Message

SUBDIRECTORIES = ("tmp", "new", "cur")
#: Bytes per read when copying a spooled message into its Maildir file.
COPY_CHUNK = 1024 * 1024
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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


class MaildirHandler(BaseHandler):
    """Stores every accepted message as one file in ``root/new`` (the default handler)."""

    def __init__(
        self,
        root: Path,
        *,
        max_threads: int = 16,
        unix_newlines: bool = False,
    ) -> None:
        """``unix_newlines`` stores LF line endings instead of the CRLF received (lossy for
        signatures over the raw bytes, but what plain-text tools expect)."""
        self.root = root
        self.unix_newlines = unix_newlines
        self._limiter = trio.CapacityLimiter(max_threads)
        self._hostname = _safe_hostname()

    @property
    def spool_directory(self) -> Path:
        """Where large messages are spooled while they arrive: tmp/, on the same disk."""
        return self.root / "tmp"

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

    async def deliver(self, envelope: Envelope, message: Message) -> Receipt | Reply:
        name = self.unique_name(message.queue_id)
        convert = UnixNewlines() if self.unix_newlines else _identity
        head = [convert(message.trace_headers)]
        source = message.spooled_file
        if source is None:
            head += [convert(chunk) async for chunk in message.chunks()]
        try:
            await self.run_in_thread(lambda: self._store(name, head, source, convert))
        except OSError as exc:
            raise DeliveryError(f"maildir write failed: {exc}") from exc
        return name

    def _store(
        self,
        name: str,
        head: list[bytes],
        source: Path | None,
        convert: Callable[[bytes], bytes],
    ) -> None:
        temporary = self.root / "tmp" / name
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                _write_all(fd, b"".join(head))
                if source is not None:
                    with source.open("rb") as spooled:
                        while data := spooled.read(COPY_CHUNK):
                            _write_all(fd, convert(data))
                os.fsync(fd)
            finally:
                os.close(fd)
            new_dir = self.root / "new"
            final = new_dir / name
            os.rename(temporary, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        try:
            _fsync_directory(new_dir)
        except OSError:
            # Not known to be durable, so it must not stay visible after we answer 451.
            with contextlib.suppress(OSError):
                os.unlink(final)
            raise

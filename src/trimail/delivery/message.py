"""A received message's content, spooled while DATA arrives and read by the handler after.

Small messages (the vast majority) stay in memory, so delivering one costs no file I/O beyond
the handler's own. Content arrives as the pieces the DATA decoder hands out, most of them whole
reads from the socket: those are kept as they are, not copied (a handler that never reads the
content, or reads it once, pays one join). Pieces smaller than ``_SMALL_PIECE`` are
gathered into one buffer instead (the decoder may produce thousands of tiny pieces, e.g. one
per line of ``..``; kept as separate objects they would cost far more than their content).
A message that grows past ``spill_threshold`` moves to a private temporary file, written from a
worker thread, so a 25 MiB message costs a session at most one threshold of memory (plus one
read's worth) and never blocks the event loop on the disk.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

from ..peer import Peer

DEFAULT_SPILL_THRESHOLD = 1024 * 1024
#: Pieces at least this long are kept by reference; shorter ones are copied into a buffer. The
#: worst case, tiny and kept pieces alternating, holds a buffer and a bytes object (~120
#: octets with their list slots) per piece kept: at most ~6% on top of the content.
_SMALL_PIECE = 2048
#: Bytes per read when a spooled file is handed to the handler.
READ_CHUNK = 256 * 1024


def write_all(fd: int, data: bytes | bytearray) -> None:
    """``os.write`` until all of ``data`` is written (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Message:
    """One message as received, after dot-unstuffing, byte for byte (CRLF line endings)."""

    def __init__(
        self,
        *,
        queue_id: str,
        peer: Peer,
        trace_headers: bytes | Callable[[], bytes],
        spool_directory: Path | None = None,
        spill_threshold: int = DEFAULT_SPILL_THRESHOLD,
    ) -> None:
        #: The id in the 250 reply, the Received header and the log.
        self.queue_id = queue_id
        self.peer = peer
        self._trace_headers = trace_headers
        #: Octets of content so far (the whole message once ``deliver`` is called).
        self.size = 0
        #: The content in memory, in order: immutable pieces kept as received, and buffers
        #: gathering small pieces (the last one may still grow).
        self._pieces: list[bytes | bytearray] = []
        self._in_memory = 0
        self._directory = spool_directory
        self._threshold = spill_threshold
        self._path: Path | None = None
        self._fd: int | None = None

    # -- for handlers -------------------------------------------------------------------------

    @property
    def trace_headers(self) -> bytes:
        """The Return-Path and Received lines trimail adds in front when storing the message.

        Given as a function, they are rendered on first use, once: a handler that stores
        nothing (discard) never pays for them."""
        headers = self._trace_headers
        if callable(headers):
            headers = self._trace_headers = headers()
        return headers

    @trace_headers.setter
    def trace_headers(self, headers: bytes) -> None:
        """A handler may add its own lines in front before passing the message on."""
        self._trace_headers = headers

    @property
    def spooled_file(self) -> Path | None:
        """The temporary file holding the content, when it was too large for memory."""
        return self._path

    async def chunks(self) -> AsyncIterator[bytes]:
        """The content in order, in pieces; from the file, reads run in a worker thread."""
        if self._path is None:
            if self._pieces:  # one piece, as a handler writing each chunk somewhere expects
                yield b"".join(self._pieces)
            return
        path = self._path
        with await trio.to_thread.run_sync(path.open, "rb") as file:
            while True:
                data = await trio.to_thread.run_sync(file.read, READ_CHUNK)
                if not data:
                    return
                yield data

    async def read(self) -> bytes:
        """The whole content as one bytes object: only for messages known to be small."""
        if self._path is None:
            return b"".join(self._pieces)
        return b"".join([chunk async for chunk in self.chunks()])

    # -- for the session ----------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Append content. The session awaits this only when ``write_in_memory`` declined (the
        write reaches the spool file)."""
        if self.write_in_memory(data):
            return
        self._keep(data)
        await self._flush()  # past the threshold: everything in memory goes to the file

    def write_in_memory(self, data: bytes) -> bool:
        """``write`` without a coroutine when ``data`` stays in memory (no checkpoint): True
        if it did; False if the write would reach the spool file, and then nothing was done
        and ``write`` must be awaited. The session's hot path: a body arrives in many reads."""
        if not data:
            return True
        if self._in_memory + len(data) >= self._threshold:
            return False
        self._keep(data)
        return True

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        self._in_memory += len(data)
        pieces = self._pieces
        if len(data) >= _SMALL_PIECE and isinstance(data, bytes):
            pieces.append(data)
        elif pieces and isinstance(pieces[-1], bytearray):
            pieces[-1] += data
        else:
            pieces.append(bytearray(data))

    async def discard(self) -> None:
        """Free the spool; safe to call twice and after a failed write."""
        self._pieces, self._in_memory = [], 0
        if self._path is not None or self._fd is not None:
            await trio.to_thread.run_sync(self._remove)

    async def seal(self) -> None:
        """The content is complete: write what is buffered to the spooled file, if any, so
        ``spooled_file`` holds the whole message before the handler sees it."""
        if self._path is not None:
            await self._flush()

    async def _flush(self) -> None:
        data = self._take_from_memory()
        if data:
            await trio.to_thread.run_sync(self._append, data)

    def _take_from_memory(self) -> bytes:
        """The content held in memory, in one piece, which memory then no longer holds."""
        data = b"".join(self._pieces)
        self._pieces, self._in_memory = [], 0
        return data

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            fd, name = tempfile.mkstemp(prefix="spool.", dir=self._directory)
            self._fd, self._path = fd, Path(name)
        write_all(self._fd, data)

    def _remove(self) -> None:
        fd, self._fd = self._fd, None
        path, self._path = self._path, None
        if fd is not None:
            os.close(fd)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

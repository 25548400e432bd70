"""The in-memory backend: keeps every committed message in a list (tests, embedding)."""

from __future__ import annotations

import attrs

from ..protocol.envelope import Envelope
from .backend import IncomingMessage, MessageSpool


@attrs.frozen(kw_only=True)
class StoredMessage:
    queue_id: str
    envelope: Envelope
    #: The Return-Path and Received lines trimail added.
    trace_headers: bytes
    #: The message exactly as received after dot-unstuffing.
    content: bytes

    @property
    def data(self) -> bytes:
        """What a Maildir file would hold: trace headers, then the content."""
        return self.trace_headers + self.content


class _MemorySpool:
    def __init__(self, backend: MemoryBackend, message: IncomingMessage) -> None:
        self._backend = backend
        self._message = message
        self._chunks: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self._chunks.append(data)

    async def commit(self) -> str:
        self._backend.messages.append(
            StoredMessage(
                queue_id=self._message.queue_id,
                envelope=self._message.envelope,
                trace_headers=self._message.trace_headers,
                content=b"".join(self._chunks),
            )
        )
        return self._message.queue_id

    async def abort(self) -> None:
        self._chunks.clear()


class MemoryBackend:
    def __init__(self) -> None:
        self.messages: list[StoredMessage] = []

    async def prepare(self) -> None:
        return None

    def begin(self, message: IncomingMessage) -> MessageSpool:
        return _MemorySpool(self, message)

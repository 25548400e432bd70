"""The discard backend: accepts and drops everything (benchmarks, smoke tests)."""

from __future__ import annotations

from .backend import IncomingMessage, MessageSpool


class _DiscardSpool:
    def __init__(self, queue_id: str) -> None:
        self._queue_id = queue_id

    async def write(self, data: bytes) -> None:
        return None

    async def commit(self) -> str:
        return self._queue_id

    async def abort(self) -> None:
        return None


class DiscardBackend:
    async def prepare(self) -> None:
        return None

    def begin(self, message: IncomingMessage) -> MessageSpool:
        return _DiscardSpool(message.queue_id)

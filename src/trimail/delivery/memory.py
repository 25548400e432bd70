"""The in-memory handler: keeps every delivered message in a list (tests, embedding).

``wait_for`` lets a test wait for mail without polling or sleeping: it wakes whenever a
message is delivered and checks the predicate against everything received so far.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
import trio

from ..handler import BaseHandler, Receipt
from ..peer import Peer
from ..protocol.envelope import Envelope
from ..protocol.replies import Reply
from .message import Message


@attrs.frozen(kw_only=True)
class StoredMessage:
    queue_id: str
    envelope: Envelope
    peer: Peer
    #: The Return-Path and Received lines trimail added.
    trace_headers: bytes
    #: The message exactly as received after dot-unstuffing.
    content: bytes

    @property
    def data(self) -> bytes:
        """What a Maildir file would hold: trace headers, then the content."""
        return self.trace_headers + self.content


class MemoryHandler(BaseHandler):
    def __init__(self) -> None:
        self.messages: list[StoredMessage] = []
        self._arrived = trio.Event()

    async def deliver(self, envelope: Envelope, message: Message) -> Receipt | Reply:
        self.messages.append(
            StoredMessage(
                queue_id=message.queue_id,
                envelope=envelope,
                peer=message.peer,
                trace_headers=message.trace_headers,
                content=await message.read(),
            )
        )
        self._arrived.set()
        self._arrived = trio.Event()
        return message.queue_id

    async def wait_for(
        self,
        predicate: Callable[[StoredMessage], bool] = lambda _message: True,
        *,
        timeout: float = math.inf,
    ) -> StoredMessage:
        """The first message (already here or yet to come) that satisfies ``predicate``;
        raises trio.TooSlowError after ``timeout`` seconds."""
        with trio.fail_after(timeout):
            seen = 0
            while True:
                for stored in self.messages[seen:]:
                    if predicate(stored):
                        return stored
                seen = len(self.messages)
                await self._arrived.wait()

"""The discard handler: accepts and drops everything (benchmarks, smoke tests)."""

from __future__ import annotations

from ..handler import BaseHandler, Receipt
from ..protocol.envelope import Envelope
from ..protocol.replies import Reply
from .message import Message


class DiscardHandler(BaseHandler):
    async def deliver(self, envelope: Envelope, message: Message) -> Receipt | Reply:
        return message.queue_id

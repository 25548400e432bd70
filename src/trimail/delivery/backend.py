"""The one small protocol every delivery backend implements.

A backend is asked for a spool when DATA starts, receives the content piece by piece as it
arrives (so a 25 MiB message never sits in one bytes object), and ``commit`` returns only when
the message is safe: the server says 250 after ``commit`` returns and never before.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from ..protocol.envelope import Envelope


class DeliveryError(Exception):
    """The message could not be stored; the client is told 451 4.3.0 and may retry."""


@attrs.frozen(kw_only=True)
class IncomingMessage:
    queue_id: str
    envelope: Envelope
    #: Return-Path and Received header lines, CRLF-terminated, to store before the content.
    trace_headers: bytes


class MessageSpool(Protocol):
    async def write(self, data: bytes) -> None:
        """Append unstuffed content, in order."""

    async def commit(self) -> str:
        """Store durably and return a receipt (e.g. the file name); raise DeliveryError."""

    async def abort(self) -> None:
        """Forget the message; nothing of it may remain visible. Safe to call twice."""


class DeliveryBackend(Protocol):
    async def prepare(self) -> None:
        """Get ready before the first session (create directories, check permissions)."""

    def begin(self, message: IncomingMessage) -> MessageSpool:
        """Start a spool for one message; called when DATA is accepted."""

"""Envelopes and spooled messages for delivery tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from trimail.delivery.message import Message
from trimail.peer import Peer
from trimail.protocol.addresses import Mailbox
from trimail.protocol.envelope import Envelope, TlsInfo
from trimail.protocol.esmtp_params import MailParams

ALICE = Mailbox("alice", "example.org")
BOB = Mailbox("bob", "example.com")
CAROL = Mailbox("carol", "example.com")

PEER = Peer("192.0.2.7", 50123)
QUEUE_ID = "4Fq2Zk9TQ1"

#: What a delivery test stores before the content: any CRLF-terminated header block will do.
TRACE = b"Return-Path: <alice@example.org>\r\nReceived: from client.test ([192.0.2.7])\r\n"

#: Small enough that a few KiB of content spill to a file, large enough that a few lines don't.
SPILL_THRESHOLD = 1024


def make_envelope(
    *,
    client_name: str = "client.test",
    extended: bool = True,
    sender: Mailbox | None = ALICE,
    recipients: tuple[Mailbox, ...] = (BOB,),
    smtputf8: bool = False,
    tls: TlsInfo | None = None,
) -> Envelope:
    return Envelope(
        client_name=client_name,
        extended=extended,
        sender=sender,
        recipients=recipients,
        params=MailParams(smtputf8=smtputf8),
        tls=tls,
    )


def large_chunks(lines: int = 50) -> list[bytes]:
    """``lines`` numbered 101-byte lines (about 5 KiB by default): well past SPILL_THRESHOLD."""
    return [b"%04d " % number + b"x" * 93 + b"\xff\r\n" for number in range(lines)]


class MessageFactory:
    """Builds Messages as the session does (write every chunk, then seal) and discards them all
    when the test ends, so no spool file or descriptor outlives its test."""

    def __init__(self, spool_directory: Path, spill_threshold: int = SPILL_THRESHOLD) -> None:
        self.spool_directory = spool_directory
        self.spill_threshold = spill_threshold
        self._made: list[Message] = []

    def new(self, queue_id: str = QUEUE_ID, *, trace: bytes = TRACE, peer: Peer = PEER) -> Message:
        """An empty message, content still to be written."""
        message = Message(
            queue_id=queue_id,
            peer=peer,
            trace_headers=trace,
            spool_directory=self.spool_directory,
            spill_threshold=self.spill_threshold,
        )
        self._made.append(message)
        return message

    async def build(
        self,
        chunks: Iterable[bytes] = (),
        *,
        queue_id: str = QUEUE_ID,
        trace: bytes = TRACE,
        peer: Peer = PEER,
    ) -> Message:
        """A complete message, as handed to ``deliver``."""
        message = self.new(queue_id, trace=trace, peer=peer)
        for chunk in chunks:
            await message.write(chunk)
        await message.seal()
        return message

    async def small(self, chunks: Iterable[bytes], *, queue_id: str = QUEUE_ID) -> Message:
        """A complete message that stayed in memory."""
        message = await self.build(chunks, queue_id=queue_id)
        assert message.spooled_file is None
        return message

    async def large(self, chunks: Iterable[bytes], *, queue_id: str = QUEUE_ID) -> Message:
        """A complete message that spilled to a spool file."""
        message = await self.build(chunks, queue_id=queue_id)
        assert message.spooled_file is not None
        return message

    async def discard_all(self) -> None:
        for message in self._made:
            await message.discard()

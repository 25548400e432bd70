"""Envelopes and incoming messages for delivery tests."""

from __future__ import annotations

from trimail.delivery.backend import IncomingMessage
from trimail.protocol.addresses import Mailbox
from trimail.protocol.envelope import Envelope, TlsInfo
from trimail.protocol.esmtp_params import MailParams

ALICE = Mailbox("alice", "example.org")
BOB = Mailbox("bob", "example.com")
CAROL = Mailbox("carol", "example.com")

#: What a delivery test stores before the content: any CRLF-terminated header block will do.
TRACE = b"Return-Path: <alice@example.org>\r\nReceived: from client.test ([192.0.2.7])\r\n"


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


def make_message(queue_id: str = "4Fq2Zk9TQ1", trace: bytes = TRACE) -> IncomingMessage:
    return IncomingMessage(queue_id=queue_id, envelope=make_envelope(), trace_headers=trace)

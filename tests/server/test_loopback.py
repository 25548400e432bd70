"""Real sockets on 127.0.0.1: Python's smtplib and a raw socket against a running server."""

from __future__ import annotations

import smtplib
from pathlib import Path

import trio

from tests.server.running import running_server
from tests.smtp_wire import WireClient
from trimail.config.model import ListenAddress, ServerConfig
from trimail.delivery.maildir import MaildirHandler
from trimail.delivery.memory import MemoryHandler
from trimail.server.serve import Server


def _send_with_smtplib(port: int, message: bytes, recipients: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        assert smtp.has_extn("pipelining")
        assert smtp.has_extn("smtputf8")
        assert smtp.has_extn("size")
        smtp.sendmail("alice@example.org", recipients, message)


async def test_smtplib_message_lands_in_maildir_byte_for_byte(tmp_path: Path) -> None:
    backend = MaildirHandler(tmp_path / "maildir")
    message = (
        b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: loopback\r\n\r\n"
        b"first line\r\n.starts with a dot\r\n..two dots\r\n.\r\n"
        + b"long line " * 500
        + b"\r\n8-bit \xc3\xa9\xff\x00 bytes\r\n"
    )
    async with running_server(backend) as (_, address):
        await trio.to_thread.run_sync(
            _send_with_smtplib, address.port, message, ["bob@example.com"]
        )
    [path] = list((tmp_path / "maildir" / "new").iterdir())
    stored = path.read_bytes()
    assert list((tmp_path / "maildir" / "tmp").iterdir()) == []
    header_end = stored.index(b"\r\n", stored.index(b"\tfor <bob@example.com>;")) + 2
    assert stored[:header_end].startswith(b"Return-Path: <alice@example.org>\r\nReceived: ")
    assert b" with ESMTP id " in stored[:header_end]
    # smtplib dot-stuffs on the wire; what is stored is the message exactly as given.
    assert stored[header_end:] == message


async def test_many_recipients_and_two_messages_in_one_session() -> None:
    backend = MemoryHandler()
    recipients = [f"user{n}@example.com" for n in range(100)]

    def two_messages(port: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail("a@example.org", recipients, b"Subject: one\r\n\r\n1\r\n")
            smtp.sendmail("", ["b@example.com"], b"Subject: two\r\n\r\n2\r\n")

    async with running_server(backend) as (_, address):
        await trio.to_thread.run_sync(two_messages, address.port)
    first, second = backend.messages
    assert len(first.envelope.recipients) == 100
    assert second.envelope.sender is None
    assert second.trace_headers.startswith(b"Return-Path: <>\r\n")


async def test_raw_socket_pipelining_and_smuggling_attempt() -> None:
    backend = MemoryHandler()
    async with running_server(backend) as (_, address):
        stream = await trio.open_tcp_stream("127.0.0.1", address.port)
        client = WireClient(stream)
        assert (await client.reply()).code == 220
        await client.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
        assert [(await client.reply()).code for _ in range(4)] == [250, 250, 250, 354]
        # A bare-LF terminator followed by a smuggled message, then the real terminator.
        await client.send(
            b"Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<evil@x.example>\r\n"
            b"RCPT TO:<victim@d.example>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n"
        )
        reply = await client.reply()
        assert (reply.code, reply.lines[0][:5]) == (550, "5.6.0")
        assert (await client.command("QUIT")).code == 221
        await stream.aclose()
    assert backend.messages == []


async def test_ipv6_loopback_listener() -> None:
    backend = MemoryHandler()
    config = ServerConfig(listen=(ListenAddress("::1", 0), ListenAddress("127.0.0.1", 0)))
    server = Server(config, backend, hostname="mx.test")
    async with trio.open_nursery() as nursery:
        addresses: list[ListenAddress] = await nursery.start(server.serve)
        assert [a.host for a in addresses] == ["::1", "127.0.0.1"]
        stream = await trio.open_tcp_stream("::1", addresses[0].port)
        client = WireClient(stream)
        assert (await client.reply()).code == 220
        assert (await client.command("QUIT")).code == 221
        await stream.aclose()
        server.stop()

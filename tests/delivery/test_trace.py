"""Trace headers (RFC 5321 §4.4): Return-Path and Received, well-formed and parseable."""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
from email.message import EmailMessage

import attrs
import pytest

from trimail.delivery.trace import protocol_name, trace_headers
from trimail.protocol.addresses import Mailbox
from trimail.protocol.envelope import Envelope, TlsInfo

from .messages import ALICE, BOB, CAROL, make_envelope

TIMESTAMP = 1_700_000_000.0
TLS = TlsInfo(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", bits=256)


def render(
    envelope: Envelope,
    *,
    client_ip: str = "192.0.2.7",
    queue_id: str = "18A2B3C4D5E6F0001",
) -> bytes:
    return trace_headers(
        envelope=envelope,
        queue_id=queue_id,
        server_hostname="mx.test",
        client_ip=client_ip,
        timestamp=TIMESTAMP,
    )


@attrs.frozen
class Parsed:
    """What Python's email package made of the trace headers followed by a tiny body."""

    keys: list[str]
    return_path: str
    received: str
    defects: int
    body: str


def parse(headers: bytes) -> Parsed:
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        headers + b"\r\nbody\r\n"
    )
    assert isinstance(message, EmailMessage)
    content = message.get_content()
    assert isinstance(content, str)
    return Parsed(
        keys=message.keys(),
        return_path=str(message["Return-Path"]),
        received=str(message["Received"]),
        defects=len(message.defects),
        body=content,
    )


def received_of(headers: bytes) -> str:
    return parse(headers).received


def test_exact_layout_for_one_recipient() -> None:
    headers = render(make_envelope())
    date = email.utils.formatdate(TIMESTAMP, localtime=True)
    assert headers == (
        b"Return-Path: <alice@example.org>\r\n"
        b"Received: from client.test ([192.0.2.7])\r\n"
        b"\tby mx.test (trimail) with ESMTP id 18A2B3C4D5E6F0001\r\n"
        b"\tfor <bob@example.com>; " + date.encode("ascii") + b"\r\n"
    )


@pytest.mark.parametrize(
    ("extended", "smtputf8", "tls", "expected"),
    [
        (True, False, False, "ESMTP"),
        (False, False, False, "SMTP"),
        (True, True, False, "UTF8SMTP"),
        (True, False, True, "ESMTPS"),
        (False, False, True, "SMTP"),  # no registered name for HELO over TLS
        (True, True, True, "UTF8SMTPS"),
    ],
)
def test_with_clause_names_the_protocol(
    extended: bool, smtputf8: bool, tls: bool, expected: str
) -> None:
    envelope = make_envelope(extended=extended, smtputf8=smtputf8, tls=TLS if tls else None)
    assert protocol_name(envelope) == expected
    assert f" with {expected} id " in received_of(render(envelope))


def test_tls_session_is_described_as_postfix_does() -> None:
    headers = render(make_envelope(tls=TLS))
    date = email.utils.formatdate(TIMESTAMP, localtime=True)
    assert headers == (
        b"Return-Path: <alice@example.org>\r\n"
        b"Received: from client.test ([192.0.2.7])\r\n"
        b"\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
        b"\tby mx.test (trimail) with ESMTPS id 18A2B3C4D5E6F0001\r\n"
        b"\tfor <bob@example.com>; " + date.encode("ascii") + b"\r\n"
    )
    assert parse(headers).defects == 0


def test_utf8_sender_and_recipient_are_stored_as_utf8() -> None:
    envelope = make_envelope(
        sender=Mailbox("josé", "exämple.org"),
        recipients=(Mailbox("用户", "例子.测试"),),
        smtputf8=True,
    )
    headers = render(envelope)
    assert headers.startswith("Return-Path: <josé@exämple.org>\r\n".encode())
    assert "for <用户@例子.测试>;".encode() in headers
    assert parse(headers).return_path == "<josé@exämple.org>"


def test_null_sender_gives_empty_return_path() -> None:
    headers = render(make_envelope(sender=None))
    assert headers.startswith(b"Return-Path: <>\r\nReceived: ")
    assert parse(headers).return_path == "<>"


def test_for_clause_names_a_single_recipient() -> None:
    assert "\tfor <bob@example.com>; " in received_of(render(make_envelope(recipients=(BOB,))))


@pytest.mark.parametrize("count", [2, 3])
def test_for_clause_is_absent_with_several_recipients(count: int) -> None:
    recipients = (BOB, CAROL, ALICE)[:count]
    headers = render(make_envelope(recipients=recipients))
    assert b" for " not in headers
    assert b"\tfor" not in headers
    for recipient in recipients:
        assert str(recipient).encode() not in headers.split(b"Received:")[1]


def test_postmaster_recipient_is_named_as_written() -> None:
    headers = render(make_envelope(recipients=(Mailbox("Postmaster", ""),)))
    assert b"\tfor <Postmaster>; " in headers


@pytest.mark.parametrize(
    ("client_ip", "literal"),
    [
        ("192.0.2.7", "[192.0.2.7]"),
        ("::1", "[IPv6:::1]"),
        ("2001:db8::25", "[IPv6:2001:db8::25]"),
        ("2001:DB8:0:0::25", "[IPv6:2001:db8::25]"),
    ],
)
def test_client_address_literal(client_ip: str, literal: str) -> None:
    received = received_of(render(make_envelope(), client_ip=client_ip))
    assert received.startswith(f"from client.test ({literal})")


@pytest.mark.parametrize("unsafe", ["(", ")", "<", ">", ";", '"', "\\", " ", "\t", "\r", "\n"])
def test_unsafe_characters_in_helo_name_are_replaced(unsafe: str) -> None:
    headers = render(make_envelope(client_name=f"evil{unsafe}name"))
    assert headers.startswith(b"Return-Path: <alice@example.org>\r\nReceived: from evil_name (")


def test_helo_name_cannot_inject_a_header_or_close_the_comment() -> None:
    name = 'x)\r\nX-Injected: yes\r\n\tby fake; "q" <a> \\'
    headers = render(make_envelope(client_name=name))
    parsed = parse(headers)
    assert parsed.keys == ["Return-Path", "Received"]
    received = parsed.received
    assert received.startswith("from x___X-Injected:_yes___by_fake___q___a___ ([192.0.2.7])")
    assert received.count("(") == received.count(")") == 2  # ([ip]) and (trimail)


def test_valid_helo_names_are_kept() -> None:
    for name in ("client.test", "[192.0.2.7]", "[IPv6:2001:db8::1]", "münchen.example"):
        headers = render(make_envelope(client_name=name))
        assert f"Received: from {name} ([192.0.2.7])\r\n".encode() in headers


@pytest.mark.parametrize(
    "envelope",
    [
        make_envelope(),
        make_envelope(sender=None, recipients=(BOB, CAROL)),
        make_envelope(extended=False, client_name="a b\tc"),
        make_envelope(smtputf8=True, recipients=(Mailbox("用户", "例子.测试"),)),
    ],
    ids=["one-recipient", "null-sender-two-recipients", "helo", "utf8"],
)
def test_lines_are_crlf_terminated_and_folded_with_a_tab(envelope: Envelope) -> None:
    headers = render(envelope, client_ip="2001:db8::25")
    assert headers.endswith(b"\r\n")
    assert headers.count(b"\n") == headers.count(b"\r\n") == headers.count(b"\r")
    lines = headers.split(b"\r\n")[:-1]
    assert lines[0].startswith(b"Return-Path: ")
    assert lines[1].startswith(b"Received: ")
    assert len(lines) in (3, 4)
    for continuation in lines[2:]:
        assert continuation.startswith(b"\t")
        assert continuation[1:2] not in (b" ", b"\t", b"")


@pytest.mark.parametrize("recipients", [(BOB,), (BOB, CAROL)], ids=["one", "two"])
def test_headers_parse_with_the_email_package(recipients: tuple[Mailbox, ...]) -> None:
    parsed = parse(render(make_envelope(recipients=recipients)))
    assert parsed.keys == ["Return-Path", "Received"]
    assert parsed.defects == 0
    assert parsed.return_path == "<alice@example.org>"
    received = parsed.received
    assert received.startswith("from client.test ([192.0.2.7])")
    assert "by mx.test (trimail) with ESMTP id 18A2B3C4D5E6F0001" in received
    assert parsed.body == "body\r\n"  # the header block ended where it should
    # The date after the last ";" is an RFC 5322 date for the given timestamp.
    date = received.rsplit(";", 1)[1].strip()
    assert email.utils.parsedate_to_datetime(date).timestamp() == TIMESTAMP

"""Trace headers (RFC 5321 §4.4): the Return-Path and Received lines stored before a message."""

from __future__ import annotations

import email.utils
import functools
import ipaddress
import re

from ..protocol.envelope import Envelope

#: Characters that would unbalance the Received comment or its clauses are replaced.
_UNSAFE_IN_NAME = re.compile(r'[()<>;"\\\s]')


@functools.lru_cache(maxsize=4096)
def _address_literal(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"[{ip}]"
    return f"[IPv6:{address}]" if address.version == 6 else f"[{address}]"


@functools.lru_cache(maxsize=2)
def _date(second: int) -> str:
    """RFC 5322 date of a whole second: formatting it once per second, not per message, is a
    measurable saving at thousands of messages a second."""
    return email.utils.formatdate(second, localtime=True)


def protocol_name(envelope: Envelope) -> str:
    """The ``with`` keyword from the IANA mail transmission types (RFC 3848, RFC 6531).

    HELO over TLS has no registered name ("SMTPS" is not one), so it is plain "SMTP"; the
    "(using TLS...)" comment in the Received header still records the encryption.
    """
    if not envelope.extended:
        return "SMTP"
    name = "UTF8SMTP" if envelope.smtputf8 else "ESMTP"
    return name + ("S" if envelope.tls is not None else "")


def trace_headers(
    *,
    envelope: Envelope,
    queue_id: str,
    server_hostname: str,
    client_ip: str,
    timestamp: float,
) -> bytes:
    client_name = _UNSAFE_IN_NAME.sub("_", envelope.client_name)
    clauses = [f"from {client_name} ({_address_literal(client_ip)})"]
    if envelope.tls is not None:
        # Postfix's wording, which log and header parsers already understand.
        tls = envelope.tls
        clauses.append(
            f"(using {tls.version} with cipher {tls.cipher} ({tls.bits}/{tls.bits} bits))"
        )
    clauses.append(f"by {server_hostname} (trimail) with {protocol_name(envelope)} id {queue_id}")
    if len(envelope.recipients) == 1:
        # Naming the recipient only when there is one avoids disclosing Bcc recipients.
        clauses.append(f"for <{envelope.recipients[0]}>")
    date = _date(int(timestamp))
    received = "\r\n\t".join(clauses) + f"; {date}"
    text = f"Return-Path: {envelope.reverse_path}\r\nReceived: {received}\r\n"
    return text.encode("utf-8")

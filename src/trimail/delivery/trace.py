"""Trace headers (RFC 5321 §4.4): the Return-Path and Received lines stored before a message."""

from __future__ import annotations

import email.utils
import functools
import ipaddress
import re

from ..protocol.envelope import Envelope, TlsInfo

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
    received = _received_up_to_id(
        envelope.client_name, client_ip, envelope.tls, server_hostname, protocol_name(envelope)
    )
    if len(envelope.recipients) == 1:
        # Naming the recipient only when there is one avoids disclosing Bcc recipients.
        received += f"{queue_id}\r\n\tfor <{envelope.recipients[0]}>"
    else:
        received += queue_id
    date = _date(int(timestamp))
    text = f"Return-Path: {envelope.reverse_path}\r\nReceived: {received}; {date}\r\n"
    return text.encode("utf-8")


@functools.lru_cache(maxsize=256)
def _received_up_to_id(
    client_name: str, client_ip: str, tls: TlsInfo | None, server_hostname: str, protocol: str
) -> str:
    """The Received header's text up to the queue id: the same for every message of a session
    (and of a busy client), so it is built once per client rather than per message."""
    clauses = [f"from {_UNSAFE_IN_NAME.sub('_', client_name)} ({_address_literal(client_ip)})"]
    if tls is not None:
        # Postfix's wording, which log and header parsers already understand.
        clauses.append(
            f"(using {tls.version} with cipher {tls.cipher} ({tls.bits}/{tls.bits} bits))"
        )
    clauses.append(f"by {server_hostname} (trimail) with {protocol} id ")
    return "\r\n\t".join(clauses)

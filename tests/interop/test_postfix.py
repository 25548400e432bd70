"""Postfix, a real MTA, relays a message to a real ``trimail serve`` process over STARTTLS.

This is the path mail takes in production: another MTA's SMTP client, mandatory TLS
(``smtp_tls_security_level = encrypt``), checking trimail's certificate chain against the
test CA. A private Postfix instance (tests/interop/postfix_instance.py) does the relaying,
so the system's Postfix and its configuration are never touched.

Skipped where Postfix is not installed or we are not root (Postfix's master must start as
root), except in CI (CI=true), where .ci/run installs Postfix and runs as root, and either
is a failure rather than a silent skip.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.interop.postfix_instance import PostfixInstance, find_postfix, postfix_relay
from tests.serve_process import ServeProcess, serve_process
from tests.tls_certs import issue

POSTFIX = find_postfix()
if os.environ.get("CI") != "true":
    if POSTFIX is None:
        pytest.skip("Postfix is not installed (apt-get install postfix)", allow_module_level=True)
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root", allow_module_level=True)

#: Upper bound for the relayed message to arrive; Postfix hands it on in well under a second.
DELIVERY_BOUND = 60.0

#: The lone dot and dot-led lines check dot-stuffing by Postfix's client and its undoing by
#: trimail (``sendmail -i`` keeps a lone dot as a line of the message).
BODY = "A line.\n.A line that starts with a dot.\n.\n..\nLast line.\n"
MESSAGE = (
    "From: alice@example.org\nTo: bob@example.com\nSubject: postfix relays over STARTTLS\n\n" + BODY
)


def _wait_for_delivery(server: ServeProcess, postfix: PostfixInstance) -> str:
    """Poll until Postfix logs the outcome of its delivery attempt and return its log; fail at
    once if it gave up or will retry (a retry would come long after the bound). Trimail
    stores the message before it replies 250, so "status=sent" means the file is in place;
    the file appearing alone would not mean Postfix has logged the reply yet."""
    deadline = time.monotonic() + DELIVERY_BOUND
    while "status=sent" not in (log := postfix.log):
        failed = re.search(r"status=(deferred|bounced)", log) or postfix.process.poll() is not None
        if failed or time.monotonic() > deadline:
            pytest.fail(
                f"no delivery to trimail\n--- postfix:\n{log}\n--- trimail:\n{server.stderr}"
            )
        time.sleep(0.05)
    return log


def test_postfix_relays_to_trimail_over_starttls(tmp_path: Path) -> None:
    """Both ends must agree: trimail's stored trace says ESMTPS with the negotiated cipher, and
    Postfix's log says it verified trimail's chain and got trimail's queue id back."""
    assert POSTFIX is not None, "Postfix must be installed in CI"
    assert os.geteuid() == 0, "the Postfix interop test must run as root in CI"
    certs = issue(tmp_path / "certs")
    tls_args = ("--tls-cert", str(certs.cert), "--tls-key", str(certs.key))
    with serve_process(tmp_path, *tls_args) as server:
        relayhost = f"[127.0.0.1]:{server.port}"
        with postfix_relay(POSTFIX, relayhost=relayhost, ca_file=certs.ca_file) as postfix:
            postfix.sendmail("alice@example.org", "bob@example.com", MESSAGE.encode())
            log = _wait_for_delivery(server, postfix)
        assert server.stop() == 0

    [stored] = list((server.maildir / "new").iterdir())
    content = stored.read_bytes().decode()
    header, _, body = content.partition("\r\n\r\n")
    received = re.match(
        r"Return-Path: <alice@example\.org>\r\n"
        r"Received: from relay\.test \(\[127\.0\.0\.1\]\)\r\n"
        r"\t\(using TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)\)\r\n"
        r"\tby mx\.test \(trimail\) with ESMTPS id (?P<id>\w+)\r\n"
        r"\tfor <bob@example\.com>; ",
        header,
    )
    assert received is not None, header
    assert "\r\nSubject: postfix relays over STARTTLS\r\n" in header
    assert "\r\nReceived: by relay.test (Postfix" in header
    assert body == BODY.replace("\n", "\r\n")
    assert "accepted" in server.stderr

    # Postfix's side: the chain verified against the test CA ("Trusted", not "Untrusted"),
    # and trimail's reply names the queue id its Received header carries.
    peer = re.escape(f"127.0.0.1[127.0.0.1]:{server.port}")
    assert re.search(
        rf"Trusted TLS connection established to {peer}: TLSv1\.[23] with cipher", log
    ), log
    assert re.search(
        rf"to=<bob@example\.com>, relay={peer}, .*status=sent "
        rf"\(250 2\.0\.0 OK: queued as {received['id']}\)",
        log,
    ), log

"""swaks, a real external SMTP client, against a real ``trimail serve`` process.

Skipped where swaks is not installed, except in CI (CI=true), where .ci/run installs it and a
missing swaks is a failure rather than a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.serve_process import free_port, serve_process
from tests.tls_certs import issue

SWAKS = shutil.which("swaks")
if SWAKS is None and os.environ.get("CI") != "true":
    pytest.skip("swaks is not installed (apt-get install swaks)", allow_module_level=True)

MESSAGE = (
    "From: alice@example.org\n"
    "To: bob@example.com\n"
    "Subject: swaks interop\n"
    "\n"
    "A line.\n"
    ".A line that starts with a dot.\n"
    "..\n"
    "Last line.\n"
)


def _swaks(port: int, data_file: Path, *extra: str) -> str:
    assert SWAKS is not None, "swaks must be installed in CI"
    result = subprocess.run(
        [
            SWAKS,
            "--server",
            f"127.0.0.1:{port}",
            "--from",
            "alice@example.org",
            "--to",
            "bob@example.com",
            "--data",
            str(data_file),
            "--helo",
            "swaks.test",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("extra", [(), ("--pipeline",)], ids=["plain", "pipelining"])
def test_swaks_message_arrives_intact(tmp_path: Path, extra: tuple[str, ...]) -> None:
    data_file = tmp_path / "message.eml"
    data_file.write_text(MESSAGE)
    with serve_process(tmp_path) as server:
        transcript = _swaks(server.port, data_file, *extra)
        assert server.stop() == 0
    assert "250 2.0.0 OK: queued as" in transcript
    [stored] = list((server.maildir / "new").iterdir())
    content = stored.read_bytes()
    headers, _, message = content.partition(b"\r\n\tfor <bob@example.com>; ")
    assert headers.startswith(b"Return-Path: <alice@example.org>\r\nReceived: from swaks.test")
    message = message.split(b"\r\n", 1)[1]
    # swaks always sends <CRLF>.<CRLF> after the data, so one empty line ends the message;
    # its transcript shows that line, and we keep what was sent byte for byte.
    assert message == MESSAGE.replace("\n", "\r\n").encode() + b"\r\n"
    assert "accepted" in server.stderr


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_swaks_over_tls_verifies_the_certificate_and_arrives_as_esmtps(
    tmp_path: Path, mode: str
) -> None:
    certs = issue(tmp_path / "certs")
    data_file = tmp_path / "message.eml"
    data_file.write_text(MESSAGE)
    tls_port = free_port()
    tls_args = ("--tls-cert", str(certs.cert), "--tls-key", str(certs.key))
    with serve_process(tmp_path, *tls_args, "--listen-tls", f"127.0.0.1:{tls_port}") as server:
        verify = ("--tls-verify", "--tls-ca-path", str(certs.ca_file))
        if mode == "starttls":
            transcript = _swaks(server.port, data_file, "--tls", *verify)
            assert "STARTTLS" in transcript
        else:
            transcript = _swaks(tls_port, data_file, "--tlsc", *verify)
        assert server.stop() == 0
    assert "TLS started with cipher TLSv1.3:" in transcript
    assert "250 2.0.0 OK: queued as" in transcript
    [stored] = list((server.maildir / "new").iterdir())
    content = stored.read_bytes()
    assert b"\r\n\t(using TLSv1.3 with cipher " in content
    assert b" with ESMTPS id " in content
    assert content.endswith(MESSAGE.replace("\n", "\r\n").encode() + b"\r\n")

"""Memory for one 25 MiB message: how much a server's peak RSS grows while it receives it.

The issue's bound: a 25 MiB message never costs a session more than a bounded buffer (trimail
spools anything past 1 MiB to a file). This starts each server fresh, sends one message of
``--size`` bytes (78-character lines, the default 25 MiB) with smtplib, and reports the growth
of the server's peak resident set (``VmHWM`` in ``/proc/PID/status``) from just before the
message to just after the 250: the most the message cost at any moment.

Run: ``python benchmarks/big_message.py [--size BYTES]`` with the dev venv (trimail
importable); aiosmtpd's rows need the peers venv that ``run.py`` creates.
"""

from __future__ import annotations

import argparse
import smtplib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from peers import ensure_peers
from servers import HOST, ServerError, ServerSpec, aiosmtpd_spec, running, trimail_spec

MIB = 1024 * 1024
LINE = b"x" * 76 + b"\r\n"
SEND_BOUND = 120.0


def peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise ServerError(f"no VmHWM for pid {pid}")


def measure(spec: ServerSpec, size: int) -> str:
    # Just under ``size``: trimail's default limit is exactly 25 MiB, and SIZE counts it all.
    body = b"Subject: big\r\n\r\n" + LINE * ((size - 1024) // len(LINE))
    with tempfile.TemporaryDirectory(prefix="big-message-") as workdir:
        try:
            with running(spec, Path(workdir)) as server:
                before = peak_kib(server.pid)
                with smtplib.SMTP(HOST, server.port, timeout=SEND_BOUND) as client:
                    client.sendmail("big@example.org", ["sink@example.com"], body)
                after = peak_kib(server.pid)
        except (ServerError, OSError, smtplib.SMTPException) as exc:
            return f"| {spec.label} | failed: {exc} | |"
    growth = after - before
    return f"| {spec.label} | {growth:,} KiB | {growth * 1024 / len(body):.2f} |"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=25 * MIB, help="message bytes (25 MiB)")
    args = parser.parse_args(argv)
    specs = [trimail_spec(durable=True), trimail_spec(durable=False)]
    peers = ensure_peers(install=False)
    if peers.python is not None and peers.has("aiosmtpd"):
        specs += [aiosmtpd_spec(peers.python, mailbox=True)]
    print(f"One {args.size / MIB:g} MiB message: growth of the server's peak RSS (VmHWM)\n")
    print("| server | peak RSS growth | x message size |")
    print("|---|---:|---:|")
    for spec in specs:
        print(measure(spec, args.size), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""aiosmtpd as a benchmark peer: its own ``Sink`` (discard) or ``Mailbox`` (Maildir) handler.

aiosmtpd is the asyncio SMTP server most Python projects would otherwise use, so it is the
reference trimail's numbers are read against. This launcher runs in the peers venv that
``run.py`` creates (``benchmarks/.venv-peers``), never in trimail's own environment.

The server is configured as a user of aiosmtpd would write it: ``SMTP(handler)`` with its
defaults (no PIPELINING is advertised, because aiosmtpd does not implement it; SMTPUTF8 off),
on 127.0.0.1 with a listen backlog large enough for the 1,000-connection idle test. The
``Mailbox`` handler parses each message with ``email`` and adds it to a ``mailbox.Maildir``,
which does not fsync: trimail's Maildir does, so that row compares durable with non-durable.

Run: ``python benchmarks/aiosmtpd_server.py --handler discard|mailbox [--maildir DIR]
[--port N]``. It prints ``listening on 127.0.0.1:PORT`` once it accepts connections and
serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiosmtpd.handlers import (  # type: ignore[import-not-found, import-untyped, unused-ignore]
    Mailbox,
    Sink,
)
from aiosmtpd.smtp import SMTP  # type: ignore[import-not-found, import-untyped, unused-ignore]

BACKLOG = 2048


def build_handler(kind: str, maildir: Path | None) -> object:
    """aiosmtpd's own handlers, unchanged, so the numbers are aiosmtpd's and not ours."""
    if kind == "discard":
        return Sink()
    if maildir is None:
        raise SystemExit("aiosmtpd_server.py: --maildir is required with --handler mailbox")
    # mailbox.Maildir creates tmp/, new/ and cur/ only when it creates the directory itself.
    return Mailbox(maildir)


async def serve(handler: object, port: int) -> None:
    """Listen on 127.0.0.1, announce the bound port, stop cleanly on SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench.test", loop=loop),
        host="127.0.0.1",
        port=port,
        backlog=BACKLOG,
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{bound}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="aiosmtpd with its Sink or Mailbox handler.")
    parser.add_argument("--handler", choices=("discard", "mailbox"), required=True)
    parser.add_argument("--maildir", type=Path, help="Maildir for --handler mailbox")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    args = parser.parse_args(argv)
    kind, maildir, port = args.handler, args.maildir, args.port
    assert isinstance(kind, str) and isinstance(port, int)
    assert maildir is None or isinstance(maildir, Path)
    asyncio.run(serve(build_handler(kind, maildir), port))
    return 0


if __name__ == "__main__":
    sys.exit(main())

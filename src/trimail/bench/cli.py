"""``trimail bench`` on the command line: the subparser and the command.

``trimail.cli`` wires it in with ``add_bench_parser(commands)`` and a ``case "bench"`` that
calls ``bench_command(args)``; ``python -m trimail.bench ARGS`` runs the same parser on its own
(the worker processes use it).

Numbers are taken as strings here and checked in ``options.build_options``, so every bad value
gives the same one-line error naming the flag, and exit status 2, like ``trimail serve``.
Exit status: 0 when every attempted message was delivered, 1 when some were not (the report
still prints: errors are results), 1 when the run could not start, 2 for a bad flag.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import NoReturn, TextIO, TypeVar

from .local_server import BenchError
from .options import OptionError, RawOptions, build_options
from .report import render_table, to_json
from .runner import run_bench

USAGE_ERROR = 2
RUN_FAILED = 1
#: Stopped by Ctrl-C after reporting what was measured (128 + SIGINT, as shells report it).
INTERRUPTED = 130

_Parser = TypeVar("_Parser", bound=argparse.ArgumentParser)


def add_bench_parser(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    """Add ``bench`` to the commands ``add_subparsers`` returned (their parser class is kept)."""
    bench = subparsers.add_parser(
        "bench",
        help="measure an SMTP server's throughput and latency",
        description=(
            "Drive N concurrent SMTP sessions against a server and report messages/s, MB/s, "
            "latency percentiles per phase and errors by reply code. Without --target, start "
            "a local trimail serve with a temporary Maildir and benchmark it."
        ),
    )
    add = bench.add_argument
    add("--target", metavar="HOST:PORT", help="server to load (default: a local trimail serve)")
    add("--sessions", metavar="N", help="concurrent sessions (default 10)")
    add("--messages", metavar="M", help="messages in total, across sessions (default 10000)")
    add("--duration", metavar="S", help="send for S seconds instead of a count")
    add("--max-seconds", metavar="S", help="hard cap on the whole run (default 600)")
    add("--size", metavar="BYTES", help="message size, headers included (default 1024)")
    add("--recipients", metavar="R", help="recipients per message (default 1)")
    add("--starttls", action="store_true", help="STARTTLS before the first message")
    add("--tls-ca", metavar="PEM", help="verify the server certificate (default: unverified)")
    add("--no-pipelining", action="store_true", help="one command per round trip")
    add("--rate", metavar="MSGS_PER_S", help="open loop: messages due per second (default: closed)")
    add("--from", dest="mail_from", metavar="ADDR", help="sender (default bench@example.org)")
    add("--to", dest="rcpt_to", metavar="ADDR", help="recipient (default sink@example.com)")
    add("--helo-name", metavar="NAME", help="EHLO name (default bench.trimail.test)")
    add("--timeout", metavar="S", help="bound on session setup and on each transaction (30)")
    add("--json", action="store_true", help="print one JSON object instead of the table")
    add("--workers", metavar="K", help="client processes, sessions split between them (1)")
    add(
        "--delivery",
        metavar="maildir|discard",
        help="local server only: store durably (default) or discard",
    )
    add(
        "--serve-arg",
        dest="serve_args",
        metavar="ARG",
        action="append",
        default=[],
        help="local server only: pass ARG to trimail serve (repeatable; --serve-arg=--flag=V)",
    )
    add("--worker", action="store_true", help=argparse.SUPPRESS)


def raw_options(args: argparse.Namespace) -> RawOptions:
    """The flags as parsed, unchecked (``build_options`` checks them)."""

    def text(name: str) -> str | None:
        value = getattr(args, name)
        assert value is None or isinstance(value, str)
        return value

    def flag(name: str) -> bool:
        value = getattr(args, name)
        assert isinstance(value, bool)
        return value

    serve_args = getattr(args, "serve_args")  # noqa: B009
    assert isinstance(serve_args, list)
    return RawOptions(
        target=text("target"),
        sessions=text("sessions"),
        messages=text("messages"),
        duration=text("duration"),
        max_seconds=text("max_seconds"),
        size=text("size"),
        recipients=text("recipients"),
        starttls=flag("starttls"),
        tls_ca=text("tls_ca"),
        no_pipelining=flag("no_pipelining"),
        rate=text("rate"),
        mail_from=text("mail_from"),
        rcpt_to=text("rcpt_to"),
        json=flag("json"),
        workers=text("workers"),
        timeout=text("timeout"),
        delivery=text("delivery"),
        serve_args=tuple(str(arg) for arg in serve_args),
        worker=flag("worker"),
        helo_name=text("helo_name"),
    )


def bench_command(
    args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        options = build_options(raw_options(args))
    except OptionError as exc:
        print(f"trimail bench: error: {exc}", file=err)
        return USAGE_ERROR
    progress = err if not options.worker and err.isatty() else None
    interruptible = threading.current_thread() is threading.main_thread()
    with sigint_deferred() if interruptible else contextlib.nullcontext():
        try:
            stats, target = run_bench(options, progress=progress, stop_on_interrupt=interruptible)
        except BenchError as exc:
            print(f"trimail bench: error: {exc}", file=err)
            return RUN_FAILED
        if options.worker:
            print(json.dumps(stats.to_json()), file=out)
            return 0
        if options.json:
            print(to_json(stats, options, target), file=out)
        else:
            out.write(render_table(stats, options, target))
        out.flush()
    if stats.interrupted:
        return INTERRUPTED
    complete = stats.messages == stats.attempted and not stats.capped and stats.errors == 0
    return 0 if complete else RUN_FAILED


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Ctrl-C is held back except while a run listens for it (``runner._stop_on_interrupt``,
    ``workers._forwarding``): one pressed while the local server starts stops the run as soon
    as it begins, and one pressed after the run (while the server stops, or the report or a
    worker's results are written) is dropped, so what was measured is always printed.

    SIGINT is blocked in this thread (children inherit that, so a press forwarded to a worker
    that is still starting waits for its run), and a handler that drops it is installed for
    the process: another thread (an embedding application's, Trio's idle worker threads) may
    take the signal, and Python runs the handler in the main thread whichever did.
    """
    previous_handler = signal.signal(signal.SIGINT, _drop)
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)  # a pending press: _drop
        signal.signal(
            signal.SIGINT, previous_handler if previous_handler is not None else signal.SIG_DFL
        )


def _drop(signum: int, frame: object) -> None:
    """A Ctrl-C outside a run: nothing to stop."""


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, exit 2, as ``trimail serve`` does (argparse would dump the usage too)."""
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """A ``trimail`` parser with only the bench command (for ``python -m trimail.bench``)."""
    parser = _OneLineParser(prog="trimail")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    add_bench_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(["bench", *arguments])
    return bench_command(args)

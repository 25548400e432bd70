"""``trimail serve``: flags and a TOML file become one ServerConfig; errors are one line, exit 2."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import NoReturn

import attrs
import trio

from .bench.cli import add_bench_parser, bench_command
from .config.loading import ConfigError, RawConfig, read_toml, set_path, structure_config
from .config.model import DeliveryKind, LineEndings, ListenAddress, ServerConfig
from .delivery.maildir import MaildirHandler
from .delivery.null import DiscardHandler
from .handler import Handler
from .log_format import configure_server_logging
from .server.serve import Server
from .server.tls import Certificates, TlsSetupError
from .server.workers import FORWARDED, Supervisor

log = logging.getLogger("trimail")

USAGE_ERROR = 2


@attrs.frozen
class _Flag:
    option: str
    path: str
    help: str
    #: ``bool`` makes a switch that sets the field to true.
    type: type[int] | type[float] | type[str] | type[bool] = str
    metavar: str | None = None
    repeat: bool = False


#: Each flag overrides one field of the TOML tree, so both are validated by the same code.
SERVE_FLAGS = (
    _Flag(
        "--listen",
        "listen",
        "HOST:PORT or [IPv6]:PORT to listen on (repeatable; default 127.0.0.1:2525)",
        metavar="HOST:PORT",
        repeat=True,
    ),
    _Flag(
        "--listen-tls",
        "listen_tls",
        "HOST:PORT for implicit TLS, e.g. 0.0.0.0:465 (repeatable; needs --tls-cert)",
        metavar="HOST:PORT",
        repeat=True,
    ),
    _Flag(
        "--tls-cert",
        "tls.cert",
        "PEM certificate chain: enables STARTTLS (reloaded on SIGHUP)",
        metavar="PEM",
    ),
    _Flag(
        "--tls-key",
        "tls.key",
        "PEM private key (default: read from the --tls-cert file)",
        metavar="PEM",
    ),
    _Flag(
        "--require-tls",
        "tls.require",
        "refuse MAIL with 530 5.7.0 until the client has done STARTTLS",
        bool,
    ),
    _Flag(
        "--hostname",
        "hostname",
        "name in the greeting and Received headers (default: this machine's FQDN)",
        metavar="NAME",
    ),
    _Flag(
        "--maildir",
        "delivery.maildir",
        "Maildir to deliver into (default ./maildir)",
        metavar="DIR",
    ),
    _Flag(
        "--delivery",
        "delivery.backend",
        "maildir (durable, default) or discard",
        metavar="maildir|discard",
    ),
    _Flag(
        "--line-endings",
        "delivery.line_endings",
        "crlf (as received, default) or lf (for tools that want Unix newlines)",
        metavar="crlf|lf",
    ),
    _Flag(
        "--max-message-size",
        "limits.max_message_size",
        "largest message in bytes, advertised in EHLO SIZE (default 26214400)",
        int,
        "BYTES",
    ),
    _Flag(
        "--max-recipients",
        "limits.max_recipients",
        "recipients per message (default 100)",
        int,
        "N",
    ),
    _Flag(
        "--max-errors",
        "limits.max_errors",
        "protocol errors before 421 and close (default 20)",
        int,
        "N",
    ),
    _Flag(
        "--soft-errors",
        "limits.soft_errors",
        "errors after which each error reply is delayed by --error-delay (default 10)",
        int,
        "N",
    ),
    _Flag(
        "--error-delay",
        "timeouts.error_delay",
        "seconds each error reply waits past --soft-errors (default 1)",
        float,
        "S",
    ),
    _Flag(
        "--accept-domain",
        "accept_domains",
        "a domain we receive mail for (repeatable); others get 550 5.7.1. Default: all",
        metavar="DOMAIN",
        repeat=True,
    ),
    _Flag(
        "--max-connections",
        "admission.max_connections",
        "sessions at once; beyond it 421 4.7.0 (default 1000)",
        int,
        "N",
    ),
    _Flag(
        "--max-connections-per-ip",
        "admission.max_connections_per_ip",
        "sessions at once per client address (IPv6: per /84) (default 20)",
        int,
        "N",
    ),
    _Flag(
        "--max-connection-rate-per-ip",
        "admission.max_connection_rate_per_ip",
        "new connections per client, e.g. 60/min (default unlimited)",
        metavar="N/MIN",
    ),
    _Flag(
        "--max-message-rate-per-ip",
        "admission.max_message_rate_per_ip",
        "MAIL commands per client, e.g. 100/min; over it 450 4.7.1 (default unlimited)",
        metavar="N/MIN",
    ),
    _Flag(
        "--limit-exempt",
        "admission.exempt",
        "CIDR the per-client limits skip (repeatable; default 127.0.0.0/8 and ::1/128)",
        metavar="CIDR",
        repeat=True,
    ),
    _Flag(
        "--greeting-delay",
        "timeouts.greeting_delay",
        "seconds to wait before the 220; a client talking first gets 554 5.5.0 (default 0)",
        float,
        "S",
    ),
    _Flag(
        "--proxy-protocol",
        "proxy.enabled",
        "expect a PROXY v1/v2 header from a load balancer on every connection",
        bool,
    ),
    _Flag(
        "--proxy-trusted",
        "proxy.trusted",
        "CIDR allowed to send PROXY headers (repeatable; required with --proxy-protocol)",
        metavar="CIDR",
        repeat=True,
    ),
    _Flag(
        "--command-timeout",
        "timeouts.command",
        "seconds for one complete command line (default 300)",
        float,
        "S",
    ),
    _Flag(
        "--data-timeout",
        "timeouts.data",
        "longest wait for more DATA bytes (default 180)",
        float,
        "S",
    ),
    _Flag(
        "--data-min-rate",
        "timeouts.data_min_rate",
        "minimum average DATA rate in bytes/s once --data-timeout has passed (default 500)",
        float,
        "BYTES_PER_S",
    ),
    _Flag(
        "--data-total-timeout",
        "timeouts.data_total",
        "longest whole DATA phase (default 600)",
        float,
        "S",
    ),
    _Flag(
        "--tls-handshake-timeout",
        "timeouts.tls_handshake",
        "seconds for a whole TLS handshake (default 30)",
        float,
        "S",
    ),
    _Flag(
        "--shutdown-grace",
        "timeouts.shutdown_grace",
        "seconds a message in DATA may take to finish on SIGTERM/SIGINT (default 10)",
        float,
        "S",
    ),
    _Flag(
        "--workers",
        "workers",
        "server processes sharing the listeners with SO_REUSEPORT, e.g. one per core; "
        "--max-connections is split between them (default 1)",
        int,
        "K",
    ),
)


_FLAG_FOR_FIELD = {flag.path: flag.option for flag in SERVE_FLAGS}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, exit 2: argparse's default also dumps the whole usage."""
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trimail", description="A hardened SMTP receiver on Trio.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = commands.add_parser(
        "serve",
        help="receive mail and store it durably",
        description="Receive mail over SMTP and store each accepted message in a Maildir.",
    )
    serve.add_argument("--config", type=Path, metavar="FILE.toml", help="TOML config file")
    for flag in SERVE_FLAGS:
        if flag.type is bool:
            serve.add_argument(
                flag.option, dest=flag.path, help=flag.help, action="store_true", default=None
            )
            continue
        serve.add_argument(
            flag.option,
            dest=flag.path,
            type=flag.type,
            metavar=flag.metavar,
            help=flag.help,
            action="append" if flag.repeat else "store",
        )
    add_bench_parser(commands)
    return parser


def load_config(args: argparse.Namespace) -> ServerConfig:
    """TOML first, then flags on top; a ConfigError names the flag when a flag was wrong."""
    raw: RawConfig = read_toml(args.config) if args.config else {}
    given = {}
    for flag in SERVE_FLAGS:
        value = getattr(args, flag.path)
        if value is not None:
            set_path(raw, flag.path, value)
            given[flag.path] = flag.option
    try:
        return structure_config(raw)
    except ConfigError as exc:
        field, _, message = str(exc).partition(": ")
        field_root = field.split("[")[0]
        if field_root in given:
            raise ConfigError(f"{given[field_root]}: {message}") from exc
        option = _FLAG_FOR_FIELD.get(field_root)
        if option is not None:
            # The field was not set by a flag but may be fixed with one, e.g. tls.cert.
            raise ConfigError(f"{field} ({option}): {message}") from exc
        raise


def make_handler(config: ServerConfig) -> Handler:
    match config.delivery.backend:
        case DeliveryKind.MAILDIR:
            return MaildirHandler(
                config.delivery.maildir,
                unix_newlines=config.delivery.line_endings is LineEndings.LF,
            )
        case DeliveryKind.DISCARD:
            return DiscardHandler()


async def _serve_until_signalled(
    server: Server,
    on_listening: Callable[[], object] | None = None,
    parent_sentinel: int | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (graceful stop), reloading TLS on SIGHUP. A worker also
    stops when its supervisor's ``parent_sentinel`` says the supervisor is gone."""
    with trio.open_signal_receiver(*FORWARDED) as signals:
        # A worker starts with these blocked (so an early signal cannot kill it); now that
        # they are handled, let them in, pending ones first. A no-op for a single process.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, signals, server)
            if parent_sentinel is not None:
                nursery.start_soon(_stop_when_readable, parent_sentinel, server)
            await nursery.start(_serve_then_stop_listening_for_signals, server, nursery)
            if on_listening is not None:
                on_listening()


async def _stop_when_readable(sentinel: int, server: Server) -> None:
    await trio.lowlevel.wait_readable(sentinel)
    log.error("the supervisor is gone; stopping")
    server.stop()


async def _serve_then_stop_listening_for_signals(
    server: Server,
    nursery: trio.Nursery,
    *,
    task_status: trio.TaskStatus[list[ListenAddress]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await server.serve(task_status=task_status)
    nursery.cancel_scope.cancel()


async def _stop_on_signal(signals: AsyncIterator[int], server: Server) -> None:
    async for signum in signals:
        log.info("received %s", signal.Signals(signum).name)
        if signum == signal.SIGHUP:
            server.reload_tls()
        else:
            server.stop()


def serve_command(args: argparse.Namespace) -> int:
    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"trimail serve: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    try:
        if config.workers > 1:
            # Each worker loads the certificate itself; a bad one fails here, once, first.
            if config.tls.cert is not None:
                Certificates(config.tls.cert, config.tls.key)
            server = None
        else:
            server = Server(config, make_handler(config))
    except TlsSetupError as exc:
        field = "--tls-cert" if args.__dict__.get("tls.cert") is not None else "tls.cert"
        print(f"trimail serve: error: {field}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    try:
        if server is None:
            return Supervisor(config, run_worker).run()
        trio.run(_serve_until_signalled, server)
    except OSError as exc:
        print(f"trimail serve: error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_worker(config: ServerConfig, index: int, ready: EventType) -> None:
    """One worker process of ``--workers`` (started by the Supervisor, in a fresh interpreter):
    a whole server on SO_REUSEPORT listeners; ``ready`` is set once it is listening."""
    _configure_logging(f"trimail[{index}]")
    log.info("worker %d started: pid %d", index, os.getpid())
    parent = multiprocessing.parent_process()
    try:
        server = Server(config, make_handler(config), reuse_port=True)
        sentinel = parent.sentinel if parent is not None else None
        trio.run(_serve_until_signalled, server, ready.set, sentinel)
    except (OSError, TlsSetupError) as exc:
        print(f"trimail serve: worker {index}: error: {exc}", file=sys.stderr)
        sys.exit(1)


def _configure_logging(name: str = "trimail") -> None:
    configure_server_logging(sys.stderr, name)


def main(argv: Sequence[str] | None = None) -> int:
    _configure_logging()
    args = build_parser().parse_args(argv)
    match args.command:
        case "serve":
            return serve_command(args)
        case "bench":
            return bench_command(args)
    return USAGE_ERROR

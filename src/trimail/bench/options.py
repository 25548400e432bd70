"""Options of ``trimail bench``: one frozen value, checked once, before any socket opens.

Why the checks live here rather than in argparse ``type=`` callables: every error must be one
line naming the flag (``--sessions: must be >= 1``), and the same checks serve the command
line, the worker processes (which get their options back as argv) and the tests.

Addresses go onto the wire verbatim inside ``MAIL FROM:<...>`` and ``RCPT TO:<...>``, so a CR
or LF in a flag would let whoever writes the command line inject SMTP commands: the client-side
twin of the smuggling bugs the server refuses. They are refused here, together with any other
control character and anything that is not an RFC 5321 path, by trimail's own address parser.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import attrs

from ..config.model import ListenAddress
from ..protocol.addresses import AddressError, parse_forward_path, parse_reverse_path
from .message import header_size

DEFAULT_MESSAGES = 10_000
DEFAULT_MAX_SECONDS = 600.0
#: Bounds that keep a typo from exhausting the machine, not protocol limits.
MAX_SESSIONS = 10_000
MAX_WORKERS = 64
MAX_RECIPIENTS = 1000
MAX_SIZE = 100 * 1024 * 1024
MAX_MESSAGES = 1_000_000_000


class OptionError(ValueError):
    """A bad option; ``str()`` is one line that starts with the flag's name."""


class Delivery(enum.Enum):
    """What the local ``trimail serve`` does with mail (only without ``--target``)."""

    MAILDIR = "maildir"
    DISCARD = "discard"


@attrs.frozen(kw_only=True)
class BenchOptions:
    """Everything one run needs; ``messages`` and ``duration`` are never both set."""

    #: ``None``: start a local ``trimail serve`` and benchmark it.
    target: ListenAddress | None = None
    sessions: int = 10
    #: Total transactions attempted across all sessions (and workers).
    messages: int | None = DEFAULT_MESSAGES
    #: Seconds to keep starting transactions (instead of a count).
    duration: float | None = None
    #: Hard cap on the whole run, whatever the mode.
    max_seconds: float = DEFAULT_MAX_SECONDS
    #: Message size in bytes (headers and body, before dot-stuffing).
    size: int = 1024
    recipients: int = 1
    starttls: bool = False
    #: Verify the server certificate against this CA file; ``None``: no verification.
    tls_ca: Path | None = None
    pipelining: bool = True
    #: Open-loop arrival rate in messages per second; ``None``: closed loop.
    rate: float | None = None
    #: The reverse path without angle brackets; ``""`` is the null sender ``<>``.
    mail_from: str = "bench@example.org"
    rcpt_to: str = "sink@example.com"
    json: bool = False
    workers: int = 1
    #: Seconds for connecting plus session setup, and for each whole transaction.
    timeout: float = 30.0
    delivery: Delivery = Delivery.MAILDIR
    serve_args: tuple[str, ...] = ()
    #: A worker process: print JSON with raw histograms, no progress line.
    worker: bool = False
    #: EHLO name.
    helo_name: str = "bench.trimail.test"

    @property
    def open_loop(self) -> bool:
        return self.rate is not None


_N = TypeVar("_N", int, float)


def _number(
    flag: str,
    text: str | None,
    default: _N,
    convert: Callable[[str], _N],
    *,
    minimum: _N,
    maximum: _N,
    strict_minimum: bool = False,
) -> _N:
    if text is None:
        return default
    try:
        value = convert(text.strip())
    except ValueError:
        kind = "an integer" if convert is int else "a number"
        raise OptionError(f"{flag}: must be {kind}: {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise OptionError(f"{flag}: must be a finite number: {text!r}")
    if strict_minimum and value <= minimum:
        raise OptionError(f"{flag}: must be > {minimum}: {text}")
    if not strict_minimum and value < minimum:
        raise OptionError(f"{flag}: must be >= {minimum}: {text}")
    if value > maximum:
        raise OptionError(f"{flag}: must be <= {maximum}: {text}")
    return value


def _reject_controls(flag: str, text: str) -> None:
    for char in text:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            name = {"\r": "CR", "\n": "LF"}.get(char, f"control character {ord(char):#04x}")
            raise OptionError(f"{flag}: must not contain {name}")


def _strip_brackets(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == "<" and text[-1] == ">" else text


def check_address(flag: str, text: str, *, sender: bool) -> str:
    """The address without brackets, or OptionError; only ASCII (bench never asks SMTPUTF8)."""
    _reject_controls(flag, text)
    address = _strip_brackets(text)
    if not address.isascii():
        raise OptionError(f"{flag}: must be ASCII (bench does not use SMTPUTF8): {text!r}")
    try:
        if sender:
            parse_reverse_path(f"<{address}>", utf8=False)
        else:
            parse_forward_path(f"<{address}>", utf8=False)
    except AddressError as exc:
        raise OptionError(f"{flag}: not a valid address ({exc}): {text!r}") from None
    return address


def check_helo_name(flag: str, text: str) -> str:
    _reject_controls(flag, text)
    if not text or not text.isascii() or " " in text or len(text) > 255:
        raise OptionError(f"{flag}: must be a host name or address literal: {text!r}")
    return text


def parse_target(flag: str, text: str) -> ListenAddress:
    _reject_controls(flag, text)
    try:
        target = ListenAddress.parse(text)
    except ValueError as exc:
        raise OptionError(f"{flag}: {exc}") from None
    if target.port == 0:
        raise OptionError(f"{flag}: port must be 1..65535: {text!r}")
    return target


@attrs.frozen(kw_only=True)
class RawOptions:
    """Flag values as argparse left them (strings or None), before any check."""

    target: str | None = None
    sessions: str | None = None
    messages: str | None = None
    duration: str | None = None
    max_seconds: str | None = None
    size: str | None = None
    recipients: str | None = None
    starttls: bool = False
    tls_ca: str | None = None
    no_pipelining: bool = False
    rate: str | None = None
    mail_from: str | None = None
    rcpt_to: str | None = None
    json: bool = False
    workers: str | None = None
    timeout: str | None = None
    delivery: str | None = None
    serve_args: tuple[str, ...] = ()
    worker: bool = False
    helo_name: str | None = None


def build_options(raw: RawOptions) -> BenchOptions:
    """Check every flag and their combinations; the first problem raises OptionError."""
    defaults = BenchOptions()
    target = parse_target("--target", raw.target) if raw.target is not None else None
    sessions = _number(
        "--sessions", raw.sessions, defaults.sessions, int, minimum=1, maximum=MAX_SESSIONS
    )
    max_seconds = _number(
        "--max-seconds",
        raw.max_seconds,
        defaults.max_seconds,
        float,
        minimum=0.0,
        maximum=7 * 24 * 3600.0,
        strict_minimum=True,
    )
    if raw.messages is not None and raw.duration is not None:
        raise OptionError("--duration: cannot be combined with --messages")
    duration: float | None = None
    messages: int | None = None
    if raw.duration is not None:
        duration = _number(
            "--duration", raw.duration, 0.0, float, minimum=0.0, maximum=max_seconds,
            strict_minimum=True,
        )  # fmt: skip
    else:
        messages = _number(
            "--messages", raw.messages, DEFAULT_MESSAGES, int, minimum=1, maximum=MAX_MESSAGES
        )
    recipients = _number(
        "--recipients",
        raw.recipients,
        defaults.recipients,
        int,
        minimum=1,
        maximum=MAX_RECIPIENTS,
    )
    rate = (
        _number(
            "--rate", raw.rate, 0.0, float, minimum=0.0, maximum=10_000_000.0, strict_minimum=True
        )
        if raw.rate is not None
        else None
    )
    workers = _number("--workers", raw.workers, 1, int, minimum=1, maximum=MAX_WORKERS)
    if workers > sessions:
        raise OptionError(f"--workers: must be <= --sessions ({sessions}): {workers}")
    if messages is not None and workers > messages:
        raise OptionError(f"--workers: must be <= --messages ({messages}): {workers}")
    timeout = _number(
        "--timeout",
        raw.timeout,
        defaults.timeout,
        float,
        minimum=0.0,
        maximum=3600.0,
        strict_minimum=True,
    )
    mail_from = (
        check_address("--from", raw.mail_from, sender=True)
        if raw.mail_from is not None
        else defaults.mail_from
    )
    rcpt_to = (
        check_address("--to", raw.rcpt_to, sender=False)
        if raw.rcpt_to is not None
        else defaults.rcpt_to
    )
    helo_name = (
        check_helo_name("--helo-name", raw.helo_name)
        if raw.helo_name is not None
        else defaults.helo_name
    )
    minimum_size = header_size(mail_from, rcpt_to)
    size = _number("--size", raw.size, defaults.size, int, minimum=minimum_size, maximum=MAX_SIZE)
    delivery = defaults.delivery
    if raw.delivery is not None:
        try:
            delivery = Delivery(raw.delivery)
        except ValueError:
            raise OptionError(f"--delivery: must be maildir or discard: {raw.delivery!r}") from None
    if target is not None and raw.delivery is not None:
        raise OptionError("--delivery: only without --target (it configures the local server)")
    if target is not None and raw.serve_args:
        raise OptionError("--serve-arg: only without --target (it configures the local server)")
    for arg in raw.serve_args:
        _reject_controls("--serve-arg", arg)
    tls_ca = None
    if raw.tls_ca is not None:
        _reject_controls("--tls-ca", raw.tls_ca)
        if not raw.starttls:
            raise OptionError("--tls-ca: only with --starttls")
        tls_ca = Path(raw.tls_ca)
        if not tls_ca.is_file():
            raise OptionError(f"--tls-ca: no such file: {raw.tls_ca}")
    if raw.starttls and target is None and not any("--tls-cert" in a for a in raw.serve_args):
        raise OptionError(
            "--starttls: needs --target, or --serve-arg=--tls-cert=PEM for the local server"
        )
    return BenchOptions(
        target=target,
        sessions=sessions,
        messages=messages,
        duration=duration,
        max_seconds=max_seconds,
        size=size,
        recipients=recipients,
        starttls=raw.starttls,
        tls_ca=tls_ca,
        pipelining=not raw.no_pipelining,
        rate=rate,
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        json=raw.json or raw.worker,
        workers=workers,
        timeout=timeout,
        delivery=delivery,
        serve_args=raw.serve_args,
        worker=raw.worker,
        helo_name=helo_name,
    )


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` integers differing by at most one (the first get the extra)."""
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def worker_argv(
    options: BenchOptions,
    target: ListenAddress,
    *,
    sessions: int,
    messages: int | None,
    rate: float | None,
) -> list[str]:
    """The flags of one worker process: the parent's options with its share of the load.

    Built from the checked options, so a worker re-checks exactly what the parent accepted.
    """
    argv = [
        "--worker",
        "--target",
        str(target),
        "--sessions",
        str(sessions),
        "--max-seconds",
        repr(options.max_seconds),
        "--size",
        str(options.size),
        "--recipients",
        str(options.recipients),
        # The ``=`` form: an address may start with "-", which argparse would take for a flag.
        f"--from=<{options.mail_from}>",
        f"--to={options.rcpt_to}",
        "--timeout",
        repr(options.timeout),
        f"--helo-name={options.helo_name}",
    ]
    if options.duration is not None:
        argv += ["--duration", repr(options.duration)]
    elif messages is not None:
        argv += ["--messages", str(messages)]
    if rate is not None:
        argv += ["--rate", repr(rate)]
    if options.starttls:
        argv.append("--starttls")
    if options.tls_ca is not None:
        argv += ["--tls-ca", str(options.tls_ca)]
    if not options.pipelining:
        argv.append("--no-pipelining")
    return argv

"""One SMTP client session of ``trimail bench``: connect, EHLO, STARTTLS, then transactions.

This is the load generator's hot path, so it trades generality for speed:

- every command and the message are bytes built once per run (``Script``); the message is
  dot-stuffed once and carries its ``CRLF.CRLF``, so sending it is one write;
- with PIPELINING (RFC 2920) advertised, MAIL, every RCPT and DATA go out in one write, and the
  body in one more write after the 354: DATA must end a command group (§3.1), because a server
  may refuse it and a body sent anyway would be read as commands;
- replies are read by ``ReplyReader`` (CRLF scan, 4th byte, no regex);
- time is an integer clock, ``perf_counter_ns`` by default and injectable, so tests can run a
  slow server under Trio's MockClock and check exact latencies.

Phases measured (nanoseconds): ``connect`` (TCP), ``greeting`` (connected to 220), ``ehlo``
(EHLO sent to its 250; again after TLS), ``tls`` (STARTTLS sent to handshake done), ``mail``
and ``rcpt`` (command written to its reply; pipelined commands share the batch's write time),
``data`` (DATA command written to the reply after the body: "DATA-to-250") and
``transaction`` (the transaction's start to that final reply, for delivered messages only).
In an open-loop run a transaction's start is its intended start, so queueing delay counts.
Per-command phases record every reply, success or error.

A session that breaks (a 421, a timeout, a reset, a reply that is not SMTP) is closed and
recorded; the runner decides whether to open a new one.
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Awaitable, Callable

import attrs
import trio

from .message import build_message, dot_stuff, recipient_addresses
from .options import BenchOptions
from .replies import ConnectionClosedError, ReplyError, ReplyReader
from .stats import RunStats

Clock = Callable[[], int]
Connector = Callable[[], Awaitable[trio.abc.Stream]]

#: QUIT at the end of a session is a courtesy; it never holds a run up for long.
QUIT_BOUND = 2.0
_SERVICE_CLOSING = 421

#: What a broken connection raises; anything else is a bug in bench and propagates.
NETWORK_ERRORS = (
    OSError,  # includes ssl.SSLError and ConnectionRefusedError
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    ConnectionClosedError,
    ReplyError,
)


@attrs.frozen(kw_only=True)
class Script:
    """What every session of a run sends, built once (``build_script``)."""

    ehlo: bytes
    mail: bytes
    rcpts: tuple[bytes, ...]
    #: MAIL, every RCPT and DATA: one write when the server offers PIPELINING.
    batch: bytes
    #: The message, dot-stuffed, with its terminator.
    message: bytes
    #: Bytes of the message before dot-stuffing (what MB/s counts).
    message_size: int
    pipelining: bool
    starttls: bool
    tls_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    #: Seconds for a session's setup, and for each whole transaction.
    timeout: float = 30.0


def client_tls_context(options: BenchOptions) -> ssl.SSLContext:
    """With ``--tls-ca``, verify the server; otherwise encrypt without verifying (a load test
    measures the handshake's cost, and a local server's certificate is usually self-signed)."""
    if options.tls_ca is not None:
        return ssl.create_default_context(cafile=str(options.tls_ca))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def build_script(options: BenchOptions, server_hostname: str | None = None) -> Script:
    message = build_message(options.size, options.mail_from, options.rcpt_to)
    mail = f"MAIL FROM:<{options.mail_from}>\r\n".encode("ascii")
    rcpts = tuple(
        f"RCPT TO:<{address}>\r\n".encode("ascii")
        for address in recipient_addresses(options.rcpt_to, options.recipients)
    )
    return Script(
        ehlo=f"EHLO {options.helo_name}\r\n".encode("ascii"),
        mail=mail,
        rcpts=rcpts,
        batch=mail + b"".join(rcpts) + b"DATA\r\n",
        message=dot_stuff(message),
        message_size=len(message),
        pipelining=options.pipelining,
        starttls=options.starttls,
        tls_context=client_tls_context(options) if options.starttls else None,
        server_hostname=server_hostname,
        timeout=options.timeout,
    )


class SessionFailure(Exception):
    """The session cannot go on: a reply ``code`` (e.g. 421, a refused greeting) or a ``kind``."""

    def __init__(self, *, code: int = 0, kind: str = "") -> None:
        super().__init__(code or kind)
        self.code = code
        self.kind = kind


def classify(exc: BaseException) -> str:
    """A short, stable name for how a connection failed (a key of ``connection_errors``)."""
    if isinstance(exc, trio.TooSlowError):
        return "timeout"
    if isinstance(exc, ConnectionClosedError):
        return "closed"
    if isinstance(exc, ReplyError):
        return "bad_reply"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            return "tls"
        return "reset"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, "os_error").lower()
    return "os_error"


class Session:
    """One client connection at a time; ``open`` again after a failure closed it."""

    def __init__(self, script: Script, connector: Connector, stats: RunStats, clock: Clock) -> None:
        self._script = script
        self._connector = connector
        self._stats = stats
        self._clock = clock
        self._stream: trio.abc.Stream | None = None
        self._reader: ReplyReader | None = None
        self._pipelining = False
        phases = stats.phases
        self._connect_times = phases["connect"]
        self._greeting_times = phases["greeting"]
        self._ehlo_times = phases["ehlo"]
        self._tls_times = phases["tls"]
        self._mail_times = phases["mail"]
        self._rcpt_times = phases["rcpt"]
        self._data_times = phases["data"]
        self._transaction_times = phases["transaction"]

    @property
    def connected(self) -> bool:
        return self._stream is not None

    @property
    def pipelining(self) -> bool:
        """The server offered PIPELINING and it was not turned off."""
        return self._pipelining

    # -- setup ---------------------------------------------------------------------------

    async def open(self) -> bool:
        """Connect and set up (EHLO, STARTTLS); False, recorded and closed, if that failed."""
        try:
            with trio.fail_after(self._script.timeout):
                await self._setup()
            return True
        except SessionFailure as failure:
            self._record(failure)
        except NETWORK_ERRORS as exc:
            self._stats.connection_error(classify(exc))
        await self.abort()
        return False

    async def _setup(self) -> None:
        clock = self._clock
        script = self._script
        begin = clock()
        stream = await self._connector()
        self._stream = stream
        connected = clock()
        self._connect_times.record(connected - begin)
        reader = self._reader = ReplyReader(stream, clock)
        code = await reader.reply()
        self._greeting_times.record(reader.received_at - connected)
        if code != 220:
            raise SessionFailure(code=code)
        extensions = await self._ehlo(stream, reader)
        if script.starttls:
            stream, reader = await self._starttls(stream, reader, extensions)
            extensions = await self._ehlo(stream, reader)
        self._pipelining = script.pipelining and b"PIPELINING" in extensions

    async def _ehlo(self, stream: trio.abc.Stream, reader: ReplyReader) -> set[bytes]:
        """EHLO; the keywords the server advertised, upper-cased."""
        begin = self._clock()
        await stream.send_all(self._script.ehlo)
        code, lines = await reader.reply_lines()
        self._ehlo_times.record(reader.received_at - begin)
        if code != 250:
            raise SessionFailure(code=code)
        return {line.split(b" ", 1)[0].upper() for line in lines[1:]}

    async def _starttls(
        self, stream: trio.abc.Stream, reader: ReplyReader, extensions: set[bytes]
    ) -> tuple[trio.abc.Stream, ReplyReader]:
        script = self._script
        assert script.tls_context is not None
        if b"STARTTLS" not in extensions:
            raise SessionFailure(kind="starttls_not_offered")
        begin = self._clock()
        await stream.send_all(b"STARTTLS\r\n")
        code = await reader.reply()
        if code != 220:
            raise SessionFailure(code=code)
        if reader.pending:
            # Bytes after the 220 but before the handshake: injected plaintext (CVE-2011-0411's
            # client side); never read them as replies of the encrypted session.
            raise SessionFailure(kind="bad_reply")
        tls = trio.SSLStream(stream, script.tls_context, server_hostname=script.server_hostname)
        self._stream = tls
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            raise SessionFailure(kind="tls") from exc
        self._tls_times.record(self._clock() - begin)
        reader = self._reader = ReplyReader(tls, self._clock)
        return tls, reader

    # -- transactions ----------------------------------------------------------------------

    async def transaction(self, started: int, limit: trio.CancelScope) -> None:
        """One message; ``started`` is when it began (closed loop) or was due (open loop).

        Only call while ``connected``, inside ``limit``: a scope around the connection's
        transactions whose deadline this moves to the script's timeout from now. Moving one
        scope's deadline costs a quarter of a ``fail_after`` per transaction (measured: 5.9
        against 22.5 µs here), and the generator's CPU is what a shared machine takes from
        the server under test. When ``limit`` expires, its owner calls ``timed_out``.
        Results go into the stats; a broken session is closed.
        """
        stats = self._stats
        stats.attempted += 1
        limit.deadline = trio.current_time() + self._script.timeout
        try:
            if self._pipelining:
                await self._pipelined(started)
            else:
                await self._lockstep(started)
            stats.finished_at = self._clock()
            return
        except SessionFailure as failure:
            self._record(failure)
        except NETWORK_ERRORS as exc:
            stats.connection_error(classify(exc))
        stats.finished_at = self._clock()
        await self.abort()

    async def _pipelined(self, started: int) -> None:
        stream, reader = self._stream, self._reader
        assert stream is not None and reader is not None
        script, clock, stats = self._script, self._clock, self._stats
        sent = clock()
        await stream.send_all(script.batch)
        code = await reader.reply()
        self._mail_times.record(reader.received_at - sent)
        mail_ok = code < 400
        first_error = 0 if mail_ok else _check_closing(code)
        accepted = 0
        rcpt_times = self._rcpt_times
        for _ in script.rcpts:
            code = await reader.reply()
            rcpt_times.record(reader.received_at - sent)
            if code < 400:
                accepted += 1
            elif not first_error:
                first_error = _check_closing(code)
        code = await reader.reply()
        if code == 354:
            delivering = mail_ok and accepted > 0
            # RFC 2920 §3.1: DATA accepted with no valid recipient still needs its end: ".".
            await stream.send_all(script.message if delivering else b".\r\n")
            code = await reader.reply()
            done = reader.received_at
            self._data_times.record(done - sent)
            if code < 400 and delivering:
                self._transaction_times.record(done - started)
                stats.messages += 1
                stats.bytes_delivered += script.message_size
            elif not first_error:
                first_error = _check_closing(code)
        else:
            _check_closing(code)
            first_error = first_error or code
            if mail_ok:
                await self._rset()
        if first_error:
            stats.reply_error(first_error)

    async def _lockstep(self, started: int) -> None:
        """No PIPELINING: every command waits for its reply (RFC 5321 §4.3)."""
        stream, reader = self._stream, self._reader
        assert stream is not None and reader is not None
        script, clock, stats = self._script, self._clock, self._stats
        sent = clock()
        await stream.send_all(script.mail)
        code = await reader.reply()
        self._mail_times.record(reader.received_at - sent)
        if code >= 400:
            stats.reply_error(_check_closing(code))
            return
        first_error = 0
        accepted = 0
        for rcpt in script.rcpts:
            sent = clock()
            await stream.send_all(rcpt)
            code = await reader.reply()
            self._rcpt_times.record(reader.received_at - sent)
            if code < 400:
                accepted += 1
            elif not first_error:
                first_error = _check_closing(code)
        if not accepted:
            stats.reply_error(first_error)
            await self._rset()
            return
        sent = clock()
        await stream.send_all(b"DATA\r\n")
        code = await reader.reply()
        if code != 354:
            stats.reply_error(first_error or _check_closing(code))
            await self._rset()
            return
        await stream.send_all(script.message)
        code = await reader.reply()
        done = reader.received_at
        self._data_times.record(done - sent)
        if code < 400:
            self._transaction_times.record(done - started)
            stats.messages += 1
            stats.bytes_delivered += script.message_size
        elif not first_error:
            first_error = _check_closing(code)
        if first_error:
            stats.reply_error(first_error)

    async def _rset(self) -> None:
        """End a transaction the server still holds open (MAIL accepted, no DATA)."""
        stream, reader = self._stream, self._reader
        assert stream is not None and reader is not None
        await stream.send_all(b"RSET\r\n")
        code = await reader.reply()
        if code != 250:
            raise SessionFailure(code=code)

    async def timed_out(self) -> None:
        """The transaction's ``limit`` expired: record it and close the session."""
        self._stats.connection_error("timeout")
        self._stats.finished_at = self._clock()
        await self.abort()

    # -- teardown --------------------------------------------------------------------------

    async def close(self) -> None:
        """QUIT (bounded, errors ignored: the measurements are done), then close."""
        stream, reader = self._stream, self._reader
        if stream is None or reader is None:
            return
        with trio.move_on_after(min(self._script.timeout, QUIT_BOUND)):
            try:
                await stream.send_all(b"QUIT\r\n")
                await reader.reply()
            except NETWORK_ERRORS:
                pass
        await self.abort()

    async def abort(self) -> None:
        stream = self._stream
        self._stream = self._reader = None
        self._pipelining = False
        if stream is not None:
            await trio.aclose_forcefully(stream)

    def _record(self, failure: SessionFailure) -> None:
        if failure.code:
            self._stats.reply_error(failure.code)
        else:
            self._stats.connection_error(failure.kind)


def _check_closing(code: int) -> int:
    """A 421 means the server is closing the session: stop reading replies that won't come."""
    if code == _SERVICE_CLOSING:
        raise SessionFailure(code=code)
    return code

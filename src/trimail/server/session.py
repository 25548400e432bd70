"""One task per connection: the only code that awaits the client's stream.

The session moves bytes between the stream and the sans-I/O ``ServerConnection``, puts a
deadline on every read and write, asks the handler about the client, senders and recipients,
spools message content as it arrives, and says 250 only after the handler's ``deliver``
returned. Every way out (QUIT, timeout, client gone, shutdown, a bug) discards an unfinished
spool and closes the stream.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import attrs
import trio

from ..config.model import Timeouts
from ..delivery.message import Message
from ..delivery.trace import trace_headers
from ..handler import DeliveryError, Handler, SessionInfo, overrides
from ..log_format import InfoLines
from ..peer import Peer
from ..protocol import replies
from ..protocol.addresses import Mailbox
from ..protocol.connection import ServerConnection
from ..protocol.envelope import Envelope, TlsInfo
from ..protocol.esmtp_params import MailParams
from ..protocol.events import (
    NEED_DATA,
    EndReason,
    MailFromRequest,
    MessageComplete,
    MessageData,
    MessageRejected,
    MessageStarted,
    NeedData,
    RcptToRequest,
    SessionEnded,
    TlsUpgradeRequested,
)
from ..protocol.limits import ProtocolLimits
from ..protocol.proxy_header import ProxyHeader, ProxyHeaderError, parse_proxy_header
from ..protocol.replies import Reply
from ..protocol.screening import ACCEPT, ASK, Verdict
from .admission import Ticket
from .deadlines import Deadline, DeadlineWatch, ScopeDeadline
from .policy import RecipientDomains
from .queue_id import new_queue_id
from .streams import PrependedStream
from .timeouts import DataClock
from .tls import Certificates, HandshakeFailed, describe, handshake

log = logging.getLogger("trimail")
#: ``log.info`` for the lines of every message and session (see ``InfoLines``).
info_line = InfoLines(log)

#: Bytes asked of the kernel per read between messages (commands are short).
READ_SIZE = 64 * 1024
#: Bytes asked per read in the DATA phase. A larger read takes a body in fewer turns of the
#: session loop (a 100 KiB message: one read where 64 KiB took two). ``socket.recv``
#: allocates the whole size first, and a buffer at or over glibc malloc's mmap threshold was
#: (unless the heap happened to have room) an mmap, then an mremap to the bytes received and a
#: munmap when dropped: three system calls and fresh zeroed pages per read, 0.7 of each per
#: 1 KiB message with 256 KiB reads (``strace -c``; tests/server/test_read_sizes.py). So it
#: stays under that threshold (M_MMAP_THRESHOLD: 128 KiB to start with, and it only rises)
#: with the bytes object's header and malloc's own: 130,048 + 33 + 8, rounded up to 16, is
#: 130,096 < 131,072. Do not round it up to 128 KiB.
#: What a larger read costs: bytes a client pipelines after the end of a message arrive in
#: the same read, so a session may hold up to this much of them while it answers, beside the
#: up to 1 MiB of a message kept in memory (``DEFAULT_SPILL_THRESHOLD`` in delivery.message).
DATA_READ_SIZE = 127 * 1024
#: How long a last word (421, or the 250 after a commit during shutdown) may take to send.
FAREWELL_TIMEOUT = 5.0


@attrs.frozen(kw_only=True)
class SessionContext:
    """What every session of one server shares."""

    hostname: str
    limits: ProtocolLimits
    timeouts: Timeouts
    handler: Handler
    #: Where messages too large for memory are spooled (None: the system's temp directory).
    spool_directory: Path | None = None
    #: None: no certificate, so STARTTLS is not offered and implicit TLS is impossible.
    certificates: Certificates | None = None
    #: Refuse MAIL until the session is encrypted (530 5.7.0).
    require_tls: bool = False
    #: ``accept_domains``: RCPT to other domains gets 550 5.7.1.
    recipients: RecipientDomains = attrs.Factory(lambda: RecipientDomains(()))
    #: The server's watch over the sessions' deadlines (reads, writes and the handler's limit
    #: on a delivery); None: each session uses its scope's own Trio deadline (exact, but
    #: slower to move).
    deadlines: DeadlineWatch | None = None
    #: Which policy hooks the handler really implements; BaseHandler's defaults are skipped.
    asks_on_connect: bool = attrs.field(
        default=attrs.Factory(lambda self: overrides(self.handler, "on_connect"), takes_self=True)
    )
    asks_on_mail: bool = attrs.field(
        default=attrs.Factory(lambda self: overrides(self.handler, "on_mail"), takes_self=True)
    )
    asks_on_rcpt: bool = attrs.field(
        default=attrs.Factory(lambda self: overrides(self.handler, "on_rcpt"), takes_self=True)
    )


class SilentClose(Exception):
    """End the session without a reply: the peer is not speaking SMTP yet (a load balancer
    that failed to send its PROXY header, a client refused before TLS)."""


class Session:
    def __init__(
        self,
        stream: trio.abc.Stream,
        peer: Peer,
        context: SessionContext,
        *,
        implicit_tls: bool = False,
        proxied: bool = False,
        ticket: Ticket | None = None,
    ) -> None:
        """``implicit_tls``: the client starts a TLS handshake at once (RFC 8314, port 465).
        ``proxied``: a trusted load balancer sends a PROXY header naming the real client.
        ``ticket``: the admission already granted; a proxied session still has to pass the
        per-client limits once it knows who the client is."""
        if implicit_tls and context.certificates is None:
            raise ValueError("implicit TLS needs certificates in the session context")
        self._stream = stream
        self._peer = peer
        self._context = context
        self._implicit_tls = implicit_tls
        self._proxied = proxied
        self._ticket = ticket
        self._errors_answered = 0
        self._handshaking = False
        self._conn = self._new_connection()
        self._command_deadline = math.inf
        self._data_clock: DataClock | None = None
        self._message: Message | None = None
        self._spool_failed = False
        self._sender: Mailbox | None = None
        self._stopping = False
        self._idle_scope: trio.CancelScope | None = None
        #: The scope of the conversation (a fresh one after a delivery overran its limit): its
        #: deadline (``_deadline``) is armed while the session awaits the client, and with the
        #: handler's limit while a delivery runs (the scope is shielded then); a graceful stop
        #: cancels it while the client is between commands.
        self._io = trio.CancelScope()
        self._deadline = self._deadline_of(self._io)
        #: The handler's time limit passed during a delivery, which cancelled ``_io``.
        self._overran = False
        self._awaiting_command = False
        #: Trio's clock, read a few times per message: ``trio.current_time`` until ``run``
        #: binds the run's clock itself. Every reading in the session goes through it.
        self._now: Callable[[], float] = trio.current_time
        self.messages_accepted = 0
        #: ``messages_accepted`` as of the last replies taken to be sent (see ``_flush``).
        self._acceptances_sent = 0
        self.end_reason = "unknown"

    def request_stop(self) -> None:
        """Graceful shutdown: an idle session ends now with 421 4.3.2; one in DATA may finish
        its message first (the server bounds that with its grace period)."""
        self._stopping = True
        if self._idle_scope is not None:
            self._idle_scope.cancel()
        elif self._awaiting_command:
            self._io.cancel()

    def _deadline_of(self, scope: trio.CancelScope) -> Deadline | ScopeDeadline:
        watch = self._context.deadlines
        return ScopeDeadline(scope) if watch is None else watch.watch(scope)

    def _new_connection(self, tls: TlsInfo | None = None) -> ServerConnection:
        context = self._context
        return ServerConnection(
            hostname=context.hostname,
            limits=context.limits,
            tls_available=context.certificates is not None,
            tls=tls,
            require_tls=context.require_tls,
            screen=self,
        )

    @property
    def peer(self) -> Peer:
        """The client: the socket's peer, or the one a trusted PROXY header named."""
        return self._peer

    async def run(self) -> None:
        # The run's clock, read directly: trio.current_time() looks it up on every call (three
        # Python calls), ~1.7% of a 1 KiB message's instructions at six reads per message.
        self._now = trio.lowlevel.current_clock().current_time
        started = time.monotonic()
        try:
            if self._proxied:
                await self._read_proxy_header()
                await self._admit_proxied_client()
            if self._implicit_tls:
                self._conn = self._new_connection(await self._upgrade())
            with self._io:
                await self._converse()
            while self._overran:
                # A delivery overran the handler's limit, which cancelled the conversation's
                # scope (see _run_handler); its reply is queued, and the conversation goes on
                # in a fresh scope.
                self._overran = False
                self._deadline.close()
                self._io = trio.CancelScope()
                self._deadline = self._deadline_of(self._io)
                with self._io:
                    await self._conversation()
            if self._io.cancelled_caught:
                # The shared I/O scope ends the conversation on a deadline or a graceful stop.
                if self._stopping:
                    await self._farewell(replies.SHUTTING_DOWN, "shutdown")
                else:
                    await self._farewell(replies.TIMEOUT, "timeout")
        except (HandshakeFailed, SilentClose) as exc:
            # Nothing can be said: the peer is mid-handshake or not speaking SMTP yet.
            self.end_reason = str(exc)
        except trio.TooSlowError:
            await self._farewell(replies.TIMEOUT, "timeout")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.end_reason = "connection lost"
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await self._farewell(replies.SHUTTING_DOWN, "shutdown")
            raise
        except Exception:
            # A bug: tell the client to retry later, then let the server log the traceback.
            with trio.CancelScope(shield=True):
                await self._farewell(replies.INTERNAL_ERROR, "internal error")
            raise
        finally:
            self._deadline.close()  # however the session ends, the watch forgets it
            # Shielded (and each step bounded) so a forced shutdown still cleans up and logs.
            with trio.CancelScope(shield=True):
                await self._discard_message()
                await self._close()
            info_line(
                "session %s helo=%s messages=%d ended: %s after %.1fs",
                self._peer,
                self._conn.client_name,
                self.messages_accepted,
                self.end_reason,
                time.monotonic() - started,
            )

    async def _converse(self) -> None:
        conn = self._conn
        early = None if self._stopping else await self._wait_before_greeting()
        refusal = None
        if not self._stopping and early is None and self._context.asks_on_connect:
            handler, peer = self._context.handler, self._peer
            refusal = await self._consult(
                "on_connect", lambda: handler.on_connect(peer), replies.INTERNAL_ERROR
            )
        if self._stopping:
            conn.end_session(replies.SHUTTING_DOWN)
        elif early is not None:
            conn.receive_data(early)  # the core refuses an early talker (554 5.5.0)
        elif refusal is not None:
            conn.end_session(refusal)
            self.end_reason = f"refused: {refusal.text}"
        else:
            conn.greet()
        await self._conversation()

    async def _conversation(self) -> None:
        conn = self._conn
        while True:
            event = conn.next_event()
            # The commonest by far, and tested by identity: as a case of the match below it
            # would compare every event with == (a Python call for an attrs event).
            if event is NEED_DATA:
                # Mid-body there is nothing to say: no _flush (a coroutine) on every read.
                if conn.has_data_to_send or conn.errors != self._errors_answered:
                    await self._flush()
                if self._stopping and conn.awaiting_command:
                    conn.end_session(replies.SHUTTING_DOWN)
                    self.end_reason = "shutdown"
                    continue
                data = await self._receive()
                if data is None:  # stopped while idle
                    conn.end_session(replies.SHUTTING_DOWN)
                    self.end_reason = "shutdown"
                    continue
                conn.receive_data(data)
                continue
            match event:  # the cases of every message first: each is an isinstance check
                case MessageStarted(envelope=envelope):
                    self._start_message(envelope)
                case MessageData(data=data):
                    message = self._message  # content kept in memory needs no coroutine
                    if message is None or self._spool_failed:
                        continue
                    if not message.write_in_memory(data):
                        await self._write(message, data)
                case MessageComplete(envelope=envelope):
                    await self._deliver(envelope)
                case MessageRejected(reply=reply):
                    self._data_clock = None
                    queue_id = self._queue_id
                    await self._discard_message()
                    log.info("message %s from %s rejected: %s", queue_id, self._peer, reply.text)
                case NeedData.NEED_SEND:
                    await self._flush()  # a client pipelining faster than it reads waits here
                case MailFromRequest(sender=sender):
                    await self._ask_on_mail(sender)
                case RcptToRequest(recipient=recipient):
                    await self._ask_on_rcpt(recipient)
                case TlsUpgradeRequested(discarded=discarded):
                    await self._flush()
                    if discarded:
                        log.warning(
                            "session %s: dropped %d bytes pipelined after STARTTLS",
                            self._peer,
                            discarded,
                        )
                    conn.tls_started(await self._upgrade())
                    # The handshake is not the client's next command: its time starts now.
                    self._command_deadline = self._now() + self._context.timeouts.command
                case SessionEnded(reason=reason):
                    await self._flush()
                    if reason is not EndReason.ENDED_BY_SERVER or self.end_reason == "unknown":
                        self.end_reason = reason.value
                    return

    # -- asking the handler -------------------------------------------------------------------

    def _session_info(self, sender: Mailbox | None = None) -> SessionInfo:
        conn = self._conn
        return SessionInfo(
            peer=self._peer, client_name=conn.client_name or "", tls=conn.tls, sender=sender
        )

    # The core's screen (protocol.screening): what is decided without awaiting is decided as
    # the command is parsed, with no event; only a handler hook makes the core ask (ASK), and
    # the session then awaits it in _ask_on_mail / _ask_on_rcpt.

    def screen_sender(self, sender: Mailbox | None, params: MailParams) -> Verdict:
        if self._ticket is not None and not self._ticket.allow_message(self._now()):
            return replies.MESSAGE_RATE_EXCEEDED
        if self._context.asks_on_mail:
            return ASK
        self._sender = sender
        return ACCEPT

    def screen_recipient(self, recipient: Mailbox) -> Verdict:
        if not self._context.recipients.accepts(recipient):
            return replies.RELAY_DENIED
        return ASK if self._context.asks_on_rcpt else ACCEPT

    async def _ask_on_mail(self, sender: Mailbox | None) -> None:
        handler, info = self._context.handler, self._session_info()
        refusal = await self._consult(
            "on_mail", lambda: handler.on_mail(info, sender), replies.LOCAL_ERROR
        )
        if refusal is not None:
            self._conn.refuse(refusal)
            return
        self._sender = sender
        self._conn.accept()

    async def _ask_on_rcpt(self, recipient: Mailbox) -> None:
        handler, info = self._context.handler, self._session_info(self._sender)
        refusal = await self._consult(
            "on_rcpt", lambda: handler.on_rcpt(info, recipient), replies.LOCAL_ERROR
        )
        if refusal is not None:
            self._conn.refuse(refusal)
        else:
            self._conn.accept()

    async def _consult(
        self, hook: str, call: Callable[[], Awaitable[Reply | None]], failure: Reply
    ) -> Reply | None:
        """Run a handler hook within ``timeouts.handler``; a hook that raises, hangs or
        answers something other than an error costs the client a temporary ``failure``."""
        limit = self._context.timeouts.handler
        try:
            with trio.fail_after(limit):
                reply = await call()
        except trio.TooSlowError:
            log.error("session %s: handler %s took longer than %gs", self._peer, hook, limit)
            return failure
        except Exception:
            log.exception("session %s: handler %s failed", self._peer, hook)
            return failure
        if reply is not None and not reply.is_error:
            log.error("session %s: handler %s answered non-error %s", self._peer, hook, reply)
            return failure
        return reply

    # -- before the greeting ------------------------------------------------------------------

    async def _read_proxy_header(self) -> None:
        """Read the PROXY v1/v2 header within its deadline; the client it names becomes the
        peer for logs, limits and the Received header."""
        buffer = b""
        header: ProxyHeader | None = None
        with self._interruptible(), trio.move_on_after(self._context.timeouts.proxy_header):
            while header is None:
                data = await self._receive_some()
                if not data:
                    raise SilentClose("closed before sending a PROXY header")
                buffer += data
                try:
                    header = parse_proxy_header(buffer)
                except ProxyHeaderError as exc:
                    raise SilentClose(f"bad PROXY header: {exc}") from None
        if self._stopping:
            raise SilentClose("shutdown")
        if header is None:
            timeout = self._context.timeouts.proxy_header
            raise SilentClose(f"no PROXY header within {timeout:g}s")
        rest = buffer[header.length :]
        if rest:
            self._stream = PrependedStream(self._stream, rest)
        if header.addresses is not None:
            proxy = self._peer
            self._peer = Peer(header.addresses.source_host, header.addresses.source_port)
            log.info("session %s: via PROXY v%d from %s", self._peer, header.version, proxy)

    async def _admit_proxied_client(self) -> None:
        if self._ticket is None:
            return
        refusal = self._ticket.admit_client(self._peer.host, self._now())
        if refusal is None:
            return
        if self._implicit_tls:
            raise SilentClose(f"refused: {refusal.text}")  # plaintext would be garbage to TLS
        self._conn.end_session(refusal)
        with trio.move_on_after(FAREWELL_TIMEOUT):
            await self._flush(FAREWELL_TIMEOUT)
        raise SilentClose(f"refused: {refusal.text}")

    async def _wait_before_greeting(self) -> bytes | None:
        """Sit out ``greeting_delay``: None if the client kept quiet, else what it sent (an
        early talker), or ``b""`` if it hung up."""
        delay = self._context.timeouts.greeting_delay
        if delay <= 0:
            return None
        with self._interruptible(), trio.move_on_after(delay):
            return await self._receive_some()
        return None

    # -- TLS ----------------------------------------------------------------------------------

    async def _upgrade(self) -> TlsInfo:
        """Run the handshake on the current stream and describe the session it negotiated."""
        certificates = self._context.certificates
        assert certificates is not None  # the core offers STARTTLS only with certificates
        self._handshaking = True
        # The context is read now, so a certificate reloaded on SIGHUP is used from here on.
        encrypted = await handshake(
            self._stream, certificates.context, self._context.timeouts.tls_handshake
        )
        self._stream = encrypted
        self._handshaking = False
        info = describe(encrypted)
        log.info("session %s: %s with cipher %s", self._peer, info.version, info.cipher)
        return info

    async def _close(self) -> None:
        """Close the stream; a TLS session first says close_notify, so the client can tell a
        clean end from a truncation attack."""
        try:
            if isinstance(self._stream, trio.SSLStream) and not self._handshaking:
                with trio.move_on_after(FAREWELL_TIMEOUT):
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await self._stream.aclose()
        finally:
            await trio.aclose_forcefully(self._stream)  # a no-op once closed

    # -- reading and writing ------------------------------------------------------------------

    async def _receive(self) -> bytes | None:
        """The next bytes (``b""`` at end of file), or None if a stop interrupted an idle read.

        When the phase's deadline passes, the scope ``_io`` is cancelled; ``run`` turns that into
        421 4.4.2.
        """
        # The session's one I/O scope carries the deadline and, between commands, a graceful
        # stop: this is the hot path. The deadline is armed for the read only and lifted after,
        # so nothing the session awaits next (hooks, spool writes, a delivery, a handshake,
        # each with a limit of its own) can be cut short by the client's.
        clock, deadline = self._data_clock, self._deadline
        if clock is not None:
            deadline.arm(clock.deadline(self._now()))
        elif self._stopping:
            return None
        else:
            deadline.arm(self._command_deadline)
            self._awaiting_command = True  # a graceful stop may end this wait
        try:  # _receive_some, inlined on this hot path
            data = bytes(
                await self._stream.receive_some(READ_SIZE if clock is None else DATA_READ_SIZE)
            )
        except trio.BrokenResourceError:
            data = b""
        finally:
            self._awaiting_command = False
        if self._lift(deadline):
            await trio.lowlevel.checkpoint()  # raises Cancelled: the deadline won
        if clock is not None:
            clock.received += len(data)
        return data

    def _lift(self, deadline: Deadline | ScopeDeadline) -> bool:
        """Lift the deadline of the read or send just done; True if it expired (or a stop
        came) while the session was waking up with the result. Then the caller lets the cancel
        strike at once: it cannot be undone, and had it struck at a later checkpoint, the
        session would first have acted on the bytes (perhaps stored a message, then answered
        421 instead of 250). Synchronous, as it runs on every read and send."""
        return deadline.lift() or (self._stopping and self._io.cancel_called)

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        """A wait that a graceful stop ends at once (reading a command, sitting out a delay):
        ``request_stop`` cancels it, and one that starts after the stop is cancelled already."""
        scope = self._idle_scope = trio.CancelScope()
        if self._stopping:
            scope.cancel()
        try:
            with scope:
                yield
        finally:
            self._idle_scope = None

    async def _receive_some(self) -> bytes:
        try:
            return bytes(await self._stream.receive_some(READ_SIZE))
        except trio.BrokenResourceError:
            return b""

    async def _flush(self, timeout: float | None = None) -> None:
        if self._conn.errors != self._errors_answered:  # the common case skips the call
            await self._tarpit()
        if self.messages_accepted != self._acceptances_sent:
            # A stored message's 250 is queued. A cancel pending now (a shutdown's, held back
            # by the delivery's shield, or one that came while a hook or the tarpit returned)
            # must strike before the replies are taken from the core: the send would raise it
            # with the 250 taken and lost, and the client would send the message again. The
            # farewell then sends it ahead of its 421. Once per message, not per send.
            await trio.lowlevel.checkpoint_if_cancelled()
            self._acceptances_sent = self.messages_accepted
        data = self._conn.data_to_send()
        if not data:
            return
        timeouts = self._context.timeouts
        if timeout is None:  # in the conversation: the shared scope carries the deadline
            # The reply's send gets the deadline of the read that follows it (after a 354 the
            # DATA phase's), and RFC 5321 §4.5.3.2.7's time for the next command counts from
            # the moment the reply is out.
            deadline = self._deadline
            deadline.arm(self._next_read_deadline(self._now()))
            await self._stream.send_all(data)
            if self._lift(deadline):
                await trio.lowlevel.checkpoint()  # raises Cancelled: the deadline won
            if self._data_clock is None:
                self._command_deadline = self._now() + timeouts.command
            return
        # A last word, after the conversation.
        with trio.CancelScope(deadline=self._now() + timeout) as scope:
            await self._stream.send_all(data)
        if scope.cancelled_caught:
            raise trio.TooSlowError
        self._command_deadline = self._now() + timeouts.command

    def _next_read_deadline(self, replied_at: float) -> float:
        """The deadline of the read that follows a reply sent at ``replied_at``: the next
        command's, or after a 354 the DATA phase's."""
        clock, timeouts = self._data_clock, self._context.timeouts
        if clock is None:
            return replied_at + timeouts.command
        return clock.deadline(replied_at)

    async def _tarpit(self) -> None:
        """Past the soft error limit, each new error reply costs this client ``error_delay``
        (Postfix smtpd_error_sleep_time); only this session sleeps."""
        conn = self._conn
        new_errors = conn.errors - max(self._errors_answered, conn.limits.soft_errors)
        self._errors_answered = conn.errors
        if new_errors > 0:  # only past the soft limit (conn.over_soft_error_limit)
            # Interruptible, so a shutdown does not wait for a tarpitted client.
            with self._interruptible():
                await trio.sleep(new_errors * self._context.timeouts.error_delay)

    async def _farewell(self, reply: Reply, reason: str) -> None:
        self.end_reason = reason
        await self._discard_message()
        if self._handshaking:
            return  # an SMTP reply in the middle of a TLS handshake would be garbage
        self._conn.end_session(reply)
        with trio.move_on_after(FAREWELL_TIMEOUT):
            with contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError
            ):
                await self._flush(FAREWELL_TIMEOUT)

    # -- the message --------------------------------------------------------------------------

    @property
    def _queue_id(self) -> str:
        return self._message.queue_id if self._message is not None else "-"

    def _start_message(self, envelope: Envelope) -> None:
        queue_id = new_queue_id()
        context = self._context
        self._data_clock = DataClock(self._now(), context.timeouts)
        self._spool_failed = False
        self._message = Message(
            queue_id=queue_id,
            peer=self._peer,
            trace_headers=functools.partial(
                trace_headers,
                envelope=envelope,
                queue_id=queue_id,
                server_hostname=context.hostname,
                client_ip=self._peer.host,
                timestamp=time.time(),  # the time the message started, whenever rendered
            ),
            spool_directory=context.spool_directory,
        )

    async def _write(self, message: Message, data: bytes) -> None:
        """Content that reaches the spool file (the caller skips a message whose spool
        already failed)."""
        try:
            await message.write(data)
        except OSError as exc:
            # Keep reading to the end of DATA (the client is still sending), then say 451.
            log.error("message %s: spool write failed: %s", self._queue_id, exc)
            self._spool_failed = True
            await message.discard()

    async def _deliver(self, envelope: Envelope) -> None:
        self._data_clock = None
        conn, message = self._conn, self._message
        assert message is not None  # MessageStarted came first
        outcome: str | Reply = replies.LOCAL_ERROR
        try:
            if not self._spool_failed:
                outcome = await self._run_handler(envelope, message)
        except BaseException:  # Cancelled, or a group of them from a handler's nursery
            if self._overran:  # the handler's limit cut it short: 451, and the session goes on
                log.error(
                    "message %s: delivery took longer than %gs",
                    message.queue_id,
                    self._context.timeouts.handler,
                )
                conn.refuse(replies.LOCAL_ERROR)
            raise
        finally:
            # Only a spool file needs awaiting (and so a shield); a message in memory is
            # dropped without a checkpoint.
            if message.spooled_file is None:
                await self._discard_message()
            else:
                with trio.CancelScope(shield=True):
                    await self._discard_message()
        if isinstance(outcome, str):
            conn.accept_message(message.queue_id)
            self.messages_accepted += 1
            info_line(
                "message %s from %s accepted: size=%d recipients=%d receipt=%s",
                message.queue_id,
                self._peer,
                message.size,
                len(envelope.recipients),
                outcome,
            )
        else:
            conn.refuse(outcome)
            log.info("message %s from %s refused: %s", message.queue_id, self._peer, outcome)
        if self._overran:
            # The handler's limit passed as it finished (stored is stored: its 250 stands, a
            # 451 would make the client send it again). The cancel strikes now, before anything
            # else is read or sent; run() goes on in a fresh scope and sends the reply first.
            await trio.lowlevel.checkpoint()

    async def _run_handler(self, envelope: Envelope, message: Message) -> str | Reply:
        """The handler's ``deliver``, within ``timeouts.handler`` and shielded from outside.

        Shielded: once the content is complete, a shutdown must not separate "stored" from
        "queued the 250" (an outside cancel strikes once the reply is queued: see ``_deliver``).
        Both the limit and the shield live on the conversation's own scope rather than on a
        scope per message, whose entry and exit were ~9% of a 1 KiB message's instructions (~7%
        net of the shield this toggles instead): the limit is
        the session's deadline, armed as for a read, and ``_io`` is shielded while the handler
        runs. What sharing costs: a limit that passes cancels ``_io``, which cannot be undone,
        so ``run`` carries the conversation on in a fresh scope (``_overran``).
        """
        io, deadline = self._io, self._deadline
        deadline.arm(self._now() + self._context.timeouts.handler)
        io.shield = True
        try:
            return await self._handed_over(envelope, message)
        finally:
            io.shield = False
            self._overran = deadline.lift()

    async def _handed_over(self, envelope: Envelope, message: Message) -> str | Reply:
        """The handler's receipt, or the reply to refuse with."""
        try:
            await message.seal()
            outcome = await self._context.handler.deliver(envelope, message)
        except DeliveryError as exc:
            log.error("message %s: %s", message.queue_id, exc)
            return replies.LOCAL_ERROR
        except Exception:
            log.exception("message %s: delivery failed", message.queue_id)
            return replies.LOCAL_ERROR
        if isinstance(outcome, Reply) and not outcome.is_error:
            log.error("message %s: handler answered non-error %s", message.queue_id, outcome)
            return replies.LOCAL_ERROR
        return outcome

    async def _discard_message(self) -> None:
        message, self._message = self._message, None
        if message is not None:
            await message.discard()

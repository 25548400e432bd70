"""The server: listeners, an accept loop per listener, a task per session, graceful drain.

Shutdown (``Server.stop``) closes every listener at once, ends idle sessions with 421 4.3.2,
lets sessions in DATA finish their message for up to ``timeouts.shutdown_grace`` seconds, and
then cancels what is left: each says 421 4.3.2, and a message already handed to the handler
is still delivered within ``timeouts.handler``, its 250 sent ahead of the 421.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import socket
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs
import trio

from ..config.model import ListenAddress, ServerConfig
from ..handler import Handler
from ..peer import Peer
from .admission import Admission, Ticket, address_in
from .deadlines import DeadlineWatch
from .listeners import bound_address, open_listeners
from .policy import RecipientDomains
from .session import Session, SessionContext
from .streams import LeanSocketStream
from .tls import Certificates

log = logging.getLogger("trimail")

#: accept() errors that mean "out of a resource right now": wait and retry, as trio does.
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
ACCEPT_BACKOFF = 0.1


@runtime_checkable
class _SpoolsNearby(Protocol):
    """A handler that wants large messages spooled on its own disk (Maildir: tmp/)."""

    @property
    def spool_directory(self) -> Path: ...


class Server:
    def __init__(
        self,
        config: ServerConfig,
        handler: Handler,
        *,
        hostname: str | None = None,
        reuse_port: bool = False,
    ) -> None:
        """``hostname`` (else ``config.hostname``, else the machine's FQDN, looked up once when
        serving starts) names the server in greetings and Received headers. ``reuse_port``
        opens the listeners with SO_REUSEPORT, for worker processes sharing one address.

        Raises TlsSetupError when the configured certificate or key cannot be loaded."""
        self.config = config
        self.handler = handler
        self._reuse_port = reuse_port
        #: Bound plain listeners, then bound implicit-TLS listeners (port 0 resolved).
        self.addresses: list[ListenAddress] = []
        self.tls_addresses: list[ListenAddress] = []
        self._hostname = hostname or config.hostname
        tls = config.tls
        self.certificates = Certificates(tls.cert, tls.key) if tls.cert is not None else None
        spool_directory = handler.spool_directory if isinstance(handler, _SpoolsNearby) else None
        self._deadlines = DeadlineWatch()
        self._context = SessionContext(
            hostname=self._hostname or "localhost",
            limits=config.limits,
            timeouts=config.timeouts,
            handler=handler,
            spool_directory=spool_directory,
            certificates=self.certificates,
            require_tls=tls.require,
            recipients=RecipientDomains(config.accept_domains),
            deadlines=self._deadlines,
        )
        self.admission = Admission(config.admission)
        self._refusals = _RefusalLog()
        self._proxy_trusted = config.proxy.trusted_networks if config.proxy.enabled else None
        self._sessions: set[Session] = set()
        self._stop_requested = trio.Event()

    def reload_tls(self) -> bool:
        """Re-read the certificate and key (SIGHUP); new sessions use them, open ones keep
        theirs. False (and the old certificate kept) when the new files are unusable."""
        return self.certificates.reload() if self.certificates is not None else False

    def stop(self) -> None:
        """Begin a graceful shutdown; ``serve`` returns when it is done."""
        self._stop_requested.set()

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    async def serve(
        self, *, task_status: trio.TaskStatus[list[ListenAddress]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if self._hostname is None:
            # A DNS lookup: once per server, in a thread, never per connection.
            self._hostname = await trio.to_thread.run_sync(socket.getfqdn)
            self._context = attrs.evolve(self._context, hostname=self._hostname)
        await self.handler.prepare()
        plain = await open_listeners(self.config.listen, reuse_port=self._reuse_port)
        try:
            implicit = await open_listeners(self.config.listen_tls, reuse_port=self._reuse_port)
        except BaseException:
            for listener in plain:
                await listener.aclose()
            raise
        listeners = plain + implicit
        try:
            self.addresses = [bound_address(listener.socket) for listener in plain]
            self.tls_addresses = [bound_address(listener.socket) for listener in implicit]
            for address in self.addresses:
                log.info("listening on %s", address)
            for address in self.tls_addresses:
                log.info("listening on %s (implicit TLS)", address)
            # The deadline watch outlives every session (it ends their reads and writes, and
            # deliveries that overrun the handler's limit), and is cancelled once they are all
            # done. Shielded: when serve itself is cancelled, the deliveries under way are
            # shielded too, and the watch is what still bounds them.
            watch = trio.CancelScope(shield=True)
            async with trio.open_nursery() as watching:
                watching.start_soon(self._watch_deadlines, watch)
                try:
                    await self._serve_sessions(plain, implicit, task_status)
                finally:
                    watch.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await listener.aclose()
        log.info("stopped")

    async def _watch_deadlines(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._deadlines.run()

    async def _serve_sessions(
        self,
        plain: list[trio.SocketListener],
        implicit: list[trio.SocketListener],
        task_status: trio.TaskStatus[list[ListenAddress]],
    ) -> None:
        async with trio.open_nursery() as sessions:
            async with trio.open_nursery() as acceptors:
                for listener in plain:
                    acceptors.start_soon(self._accept_loop, listener, sessions, False)
                for listener in implicit:
                    acceptors.start_soon(self._accept_loop, listener, sessions, True)
                task_status.started(self.addresses + self.tls_addresses)
                await self._stop_requested.wait()
                acceptors.cancel_scope.cancel()
            for listener in plain + implicit:
                await listener.aclose()
            grace = self.config.timeouts.shutdown_grace
            log.info("shutting down: %d open sessions, grace %.0fs", len(self._sessions), grace)
            for session in list(self._sessions):
                session.request_stop()
            sessions.cancel_scope.deadline = trio.current_time() + grace

    async def _accept_loop(
        self, listener: trio.SocketListener, sessions: trio.Nursery, implicit_tls: bool
    ) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRNOS:
                    raise
                log.error("accept failed (%s); retrying in %.1fs", exc, ACCEPT_BACKOFF)
                await trio.sleep(ACCEPT_BACKOFF)
                continue
            admitted = self._admit(stream, implicit_tls)
            if admitted is not None:
                peer, ticket = admitted
                sessions.start_soon(self._run_session, stream, peer, ticket, implicit_tls)

    def _admit(self, stream: trio.SocketStream, implicit_tls: bool) -> tuple[Peer, Ticket] | None:
        """Admission in the accept loop itself, so a flood never becomes a pile of tasks: a
        refused connection gets its 421 (plain listeners only) and is closed here."""
        try:
            host, port = stream.socket.getpeername()[:2]
        except OSError:  # the client is already gone
            stream.socket.close()
            return None
        peer = Peer(str(host), int(port))
        refusal = self.admission.admit_connection()
        if refusal is None:
            ticket = Ticket(self.admission)
            if self._proxy_trusted is None:
                refusal = ticket.admit_client(peer.host, trio.current_time())
            elif not address_in(peer.host, self._proxy_trusted):
                self._refusals.note(peer, "not a trusted PROXY source")
                ticket.release(trio.current_time())
                stream.socket.close()
                return None
            if refusal is None:
                return peer, ticket
            ticket.release(trio.current_time())
        self._refusals.note(peer, refusal.text)
        if not implicit_tls and self._proxy_trusted is None:
            _send_and_close(stream, refusal.to_bytes())
        else:
            stream.socket.close()
        return None

    async def _run_session(
        self, stream: trio.SocketStream, peer: Peer, ticket: Ticket, implicit_tls: bool
    ) -> None:
        transport: trio.abc.Stream = stream
        try:
            transport = LeanSocketStream(stream)
            session = Session(
                transport,
                peer,
                self._context,
                implicit_tls=implicit_tls,
                proxied=self._proxy_trusted is not None,
                ticket=ticket,
            )
        except BaseException as exc:
            ticket.release(trio.current_time())
            await trio.aclose_forcefully(transport)
            if not isinstance(exc, Exception):
                raise
            # One connection that cannot be set up (its socket failed as it was taken over,
            # or the session could not be made) must not take the server down with it.
            log.exception("session %s could not start", peer)
            return
        if self.stopping:
            session.request_stop()
        self._sessions.add(session)
        try:
            await session.run()
        except Exception:
            # A bug in one session must never take the server down; run() closed the stream.
            log.exception("session %s failed", session.peer)
        finally:
            self._sessions.discard(session)
            ticket.release(trio.current_time())


def _send_and_close(stream: trio.SocketStream, data: bytes) -> None:
    """Say a short refusal and close, without ever waiting: a fresh socket's send buffer is
    empty, so the reply fits at once (the socket is non-blocking, so a full buffer fails
    instead of stalling the accept loop). Bytes the client already sent are read away first,
    since closing with unread input would reset the connection and lose the reply."""
    sock = stream.socket
    with contextlib.suppress(OSError):
        os.write(sock.fileno(), data)
        for _ in range(4):  # bounded: a flood of input gets a reset, not our time
            if not os.read(sock.fileno(), 65536):
                break
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    sock.close()


class _RefusalLog:
    """One log line per second at most for refused connections, so a flood of them does not
    become a flood of log lines (the count says how many were folded in)."""

    INTERVAL = 1.0

    def __init__(self) -> None:
        self._since = -math.inf
        self._folded = 0

    def note(self, peer: Peer, reason: str) -> None:
        now = trio.current_time()
        if now - self._since < self.INTERVAL:
            self._folded += 1
            return
        more = f" (and {self._folded} more refused in the last {now - self._since:.0f}s)"
        log.info("connection from %s refused: %s%s", peer, reason, more if self._folded else "")
        self._since, self._folded = now, 0


async def serve(
    config: ServerConfig,
    handler: Handler,
    *,
    hostname: str | None = None,
    task_status: trio.TaskStatus[list[ListenAddress]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a trimail server in the caller's nursery until that nursery is cancelled.

    Start it with ``addresses = await nursery.start(trimail.serve, config, handler)``: it
    returns once every listener is bound, with the bound addresses (plain listeners first,
    then implicit-TLS ones; port 0 becomes the real port). Cancelling the nursery stops it
    gracefully, as SIGTERM does for ``trimail serve``: listeners close at once, idle sessions
    get 421 4.3.2, and a message already in DATA may finish within
    ``config.timeouts.shutdown_grace`` seconds (stored and 250, or 421 and nothing stored).
    """
    server = Server(config, handler, hostname=hostname)

    async def run_shielded(*, task_status: trio.TaskStatus[list[ListenAddress]]) -> None:
        # Shielded so the caller's cancellation becomes a graceful stop, which the server
        # bounds by its grace period, instead of cutting messages off mid-delivery.
        with trio.CancelScope(shield=True):
            await server.serve(task_status=task_status)

    async with trio.open_nursery() as nursery:
        addresses: list[ListenAddress] = await nursery.start(run_shielded)
        task_status.started(addresses)
        try:
            await trio.sleep_forever()
        finally:
            server.stop()

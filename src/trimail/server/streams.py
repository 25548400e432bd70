"""Stream wrappers the session needs between the socket and SMTP."""

from __future__ import annotations

import errno
import os
import socket
from typing import NoReturn

import trio


class PrependedStream(trio.abc.Stream):
    """Gives back bytes already read (after a PROXY header) before reading the transport.

    A load balancer may send the first bytes of a TLS ClientHello in the same segment as the
    PROXY header; they must reach the TLS layer, not be lost.
    """

    def __init__(self, transport: trio.abc.Stream, prefix: bytes) -> None:
        self.transport = transport
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self.transport.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.transport.aclose()


#: What ``receive_some`` reads when asked for no particular size (trio's own default).
DEFAULT_RECEIVE_SIZE = 64 * 1024
#: The socket is gone: using it raises these (trio's SocketStream answers them the same way).
_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})


def _stream_error(exc: OSError) -> trio.ClosedResourceError | trio.BrokenResourceError:
    if exc.errno in _CLOSED_ERRNOS:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


async def _raise_after_schedule_point(exc: OSError) -> NoReturn:
    """Raise ``exc`` as a stream error after a schedule point, as trio does when a socket call
    fails at its first try: a failing call still lets other tasks run."""
    error = _stream_error(exc)
    await trio.lowlevel.cancel_shielded_checkpoint()
    raise error from exc


class LeanSocketStream(trio.abc.HalfCloseableStream):
    """``trio.SocketStream``'s behaviour at about half its cost: the session's socket.

    trio's SocketStream runs ~27k more instructions per call than this class (a socketpair
    ping-pong under valgrind): two context managers (one a generator), the socket's async
    wrapper, its helper and its ``_try_sync`` protocol, each a layer of Python frames. A 1 KiB
    message takes four calls; under ``trimail bench`` the server's count fell from ~531k to
    ~429k instructions per message with this class (benchmarks/RESULTS.md). It makes the
    same system calls with the same Trio semantics in one frame: every call is a checkpoint (a
    cancel point before any byte moves, and a schedule point: an I/O wait, or a
    ``cancel_shielded_checkpoint`` once the call succeeded or failed at once); OS errors become
    ``BrokenResourceError``, or ``ClosedResourceError`` on a closed socket; concurrent
    calls in one direction raise ``BusyResourceError``. Trio's generic stream checks
    (``trio.testing.check_half_closeable_stream``) run against it in the tests.

    It takes the socket over from the ``trio.SocketStream`` a listener accepted (which keeps
    TCP_NODELAY and the other options trio set on it), so that stream must not be used again.
    """

    def __init__(self, accepted: trio.SocketStream) -> None:
        trio_socket = accepted.socket
        family, kind, proto = trio_socket.family, trio_socket.type, trio_socket.proto
        fd = trio_socket.detach()
        try:
            self.socket = socket.socket(family, kind, proto, fileno=fd)
        except BaseException:
            os.close(fd)
            raise
        try:
            self.socket.setblocking(False)
        except BaseException:
            self.socket.close()
            raise
        self._receiving = False
        self._sending = False
        self._sent_eof = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        elif max_bytes < 1:
            await trio.lowlevel.checkpoint()  # a checkpoint even when refused, as trio's is
            raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            sock = self.socket
            try:
                data = sock.recv(max_bytes)
            except BlockingIOError:
                pass
            except OSError as exc:
                await _raise_after_schedule_point(exc)
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data
            while True:
                await trio.lowlevel.wait_readable(sock)  # the schedule point: no second one
                try:
                    return sock.recv(max_bytes)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise _stream_error(exc) from exc
        finally:
            self._receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            if self._sent_eof:
                raise trio.ClosedResourceError("can't send data after sending EOF")
            await trio.lowlevel.checkpoint_if_cancelled()
            sock = self.socket
            sent = 0
            if data:
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    await _raise_after_schedule_point(exc)
            elif sock.fileno() == -1:
                raise trio.ClosedResourceError("socket was already closed")
            if sent == len(data):
                await trio.lowlevel.cancel_shielded_checkpoint()
                return
            with memoryview(data) as view:  # the rest, as the socket drains
                while sent < len(view):
                    await trio.lowlevel.wait_writable(sock)
                    try:
                        # Each slice released at once, as trio does: a caller's bytearray
                        # stays resizable however the send ends.
                        with view[sent:] as remaining:
                            sent += sock.send(remaining)
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        raise _stream_error(exc) from exc
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            if self.socket.fileno() == -1:
                raise trio.ClosedResourceError("socket was already closed")
            await trio.lowlevel.wait_writable(self.socket)
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            if self._sent_eof:
                return
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError as exc:
                raise _stream_error(exc) from exc
            self._sent_eof = True  # only once it worked, as trio's socket marks it
        finally:
            self._sending = False

    async def aclose(self) -> None:
        if self.socket.fileno() != -1:
            trio.lowlevel.notify_closing(self.socket)  # a task waiting on it gets Closed...
        self.socket.close()
        await trio.lowlevel.checkpoint()

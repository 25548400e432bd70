"""LeanSocketStream against trio's own generic stream checks, and the edges the session relies
on, over real loopback sockets."""

from __future__ import annotations

import socket
import struct

import pytest
import trio
import trio.testing

from trimail.server.streams import LeanSocketStream


async def accepted_pair() -> tuple[LeanSocketStream, LeanSocketStream]:
    """Two connected TCP streams over 127.0.0.1, each made the way the server makes its own:
    from the ``trio.SocketStream`` a listener accepted."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0]:
        port = listeners[0].socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listeners[0].accept()
    return LeanSocketStream(client), LeanSocketStream(server)


async def reset_by(client: LeanSocketStream) -> None:
    """Close ``client`` with SO_LINGER 0, which sends a RST instead of a FIN."""
    client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await client.aclose()


async def fill(stream: LeanSocketStream) -> None:
    """Send until the socket buffers are full (trio's own SocketStream test does the same)."""

    async def send_forever() -> None:
        while True:
            await stream.send_all(b"x" * 10000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_forever)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


async def clogged_pair() -> tuple[LeanSocketStream, LeanSocketStream]:
    """A pair whose sends block until the other side reads (trio's clogged_stream_maker)."""
    left, right = await accepted_pair()
    await fill(left)
    await fill(right)
    return left, right


#: Every test here is bounded: a stream that loses bytes or never wakes a waiter would
#: otherwise hang rather than fail.
BOUND = 10


async def test_passes_trios_generic_half_closeable_stream_checks() -> None:
    with trio.fail_after(BOUND):
        await trio.testing.check_half_closeable_stream(accepted_pair, clogged_pair)


async def test_keeps_the_options_trio_set_on_the_accepted_socket() -> None:
    with trio.fail_after(BOUND):
        client, server = await accepted_pair()
        async with client, server:
            assert server.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            if hasattr(socket, "TCP_NOTSENT_LOWAT"):  # trio sets it where the OS has it
                assert server.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
            assert server.socket.getblocking() is False


async def test_a_large_send_completes_as_the_peer_drains_it() -> None:
    client, server = await accepted_pair()
    payload = bytes(range(256)) * 32 * 1024  # 8 MiB: far more than the socket buffers
    received = bytearray()

    async def drain() -> None:
        while len(received) < len(payload):
            received.extend(await client.receive_some(65536))

    with trio.fail_after(BOUND):
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await server.send_all(payload)
    assert bytes(received) == payload


async def test_a_cancelled_receive_consumes_nothing() -> None:
    with trio.fail_after(BOUND):
        client, server = await accepted_pair()
        async with client, server:
            await client.send_all(b"MAIL FROM:<a@b.example>\r\n")
            with trio.CancelScope() as scope:
                scope.cancel()
                await server.receive_some()
            assert scope.cancelled_caught
            assert await server.receive_some() == b"MAIL FROM:<a@b.example>\r\n"


async def test_a_cancelled_send_sends_nothing() -> None:
    with trio.fail_after(BOUND):
        client, server = await accepted_pair()
        async with client, server:
            with trio.CancelScope() as scope:
                scope.cancel()
                await server.send_all(b"250 ok\r\n")
            assert scope.cancelled_caught
            await server.send_eof()
            assert await client.receive_some() == b""


async def test_closing_wakes_a_task_blocked_in_a_large_send() -> None:
    client, server = await accepted_pair()

    async def send_until_closed() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await server.send_all(b"y" * (32 * 1024 * 1024))  # blocks: nobody reads

    with trio.fail_after(BOUND):
        async with client, trio.open_nursery() as nursery:
            nursery.start_soon(send_until_closed)
            await trio.testing.wait_all_tasks_blocked()
            await server.aclose()
            await server.aclose()  # twice is fine


async def test_a_bytearray_stays_resizable_after_a_send_cut_short(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = await accepted_pair()
    buffer = bytearray(32 * 1024 * 1024)  # far more than the socket takes: the send waits
    async with client, server:
        try:
            with trio.fail_after(1):  # the mock clock jumps there once the send waits
                await server.send_all(buffer)
        except trio.TooSlowError:
            # Still handling it: the cut-short send's frame is alive in the exception's
            # context. A slice of the buffer still exported there would make this raise
            # BufferError.
            buffer.clear()
    assert len(buffer) == 0


async def test_after_a_reset_by_the_peer_every_call_is_broken() -> None:
    with trio.fail_after(BOUND):
        client, server = await accepted_pair()
        async with server:
            await reset_by(client)
            with pytest.raises(trio.BrokenResourceError):
                await server.receive_some()
            with pytest.raises(trio.BrokenResourceError):
                await server.send_all(b"421 bye\r\n")
            for _ in range(2):  # a failed shutdown does not count as an EOF sent
                with pytest.raises(trio.BrokenResourceError):
                    await server.send_eof()
            with pytest.raises(trio.BrokenResourceError):
                await server.send_all(b"x")


async def test_a_call_that_fails_at_once_still_lets_other_tasks_run() -> None:
    client, server = await accepted_pair()
    server.socket.close()  # behind the stream's back: every call now fails at its first try
    runs = 0

    async def busy_other_task() -> None:
        nonlocal runs
        while True:
            runs += 1
            await trio.lowlevel.checkpoint()

    with trio.fail_after(BOUND):
        async with client, trio.open_nursery() as nursery:
            nursery.start_soon(busy_other_task)
            before = runs  # it has not run yet: starting it was no schedule point
            # Trio runs the tasks of one batch in a random order, so one schedule point may
            # resume this task first; across 20 of them the other task runs (unless each
            # failing call skipped its schedule point).
            for _ in range(20):
                with pytest.raises(trio.ClosedResourceError):
                    await server.receive_some()
                with pytest.raises(trio.ClosedResourceError):
                    await server.send_all(b"x")
            assert runs > before
            nursery.cancel_scope.cancel()


async def test_a_refused_receive_size_is_still_a_checkpoint() -> None:
    with trio.fail_after(BOUND):
        client, server = await accepted_pair()
        async with client, server:
            with pytest.raises(ValueError, match="max_bytes must be >= 1"):
                await server.receive_some(0)
            with trio.CancelScope() as scope:
                scope.cancel()
                await server.receive_some(0)  # the cancel strikes before the refusal
            assert scope.cancelled_caught

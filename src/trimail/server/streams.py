"""Stream wrappers the session needs between the socket and SMTP."""

from __future__ import annotations

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

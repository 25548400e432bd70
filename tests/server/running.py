"""Start a real trimail Server on 127.0.0.1 port 0 for loopback tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from trimail.config.model import ListenAddress, ServerConfig, Timeouts
from trimail.handler import Handler
from trimail.server.serve import Server

LOOPBACK = ListenAddress("127.0.0.1", 0)


@asynccontextmanager
async def running_server(
    handler: Handler,
    *,
    timeouts: Timeouts | None = None,
    config: ServerConfig | None = None,
) -> AsyncIterator[tuple[Server, ListenAddress]]:
    """Yields the server and its first plain listener; ``config`` may add TLS listeners."""
    config = attrs.evolve(config or ServerConfig(), listen=(LOOPBACK,))
    if timeouts is not None:
        config = attrs.evolve(config, timeouts=timeouts)
    server = Server(config, handler, hostname="mx.test")
    async with trio.open_nursery() as nursery:
        addresses: list[ListenAddress] = await nursery.start(server.serve)
        yield server, addresses[0]
        server.stop()

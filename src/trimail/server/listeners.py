"""Open the listening sockets; port 0 works and the bound addresses are reported back."""

from __future__ import annotations

import trio

from ..config.model import ListenAddress


async def open_listeners(addresses: tuple[ListenAddress, ...]) -> list[trio.SocketListener]:
    listeners: list[trio.SocketListener] = []
    try:
        for address in addresses:
            listeners.extend(await trio.open_tcp_listeners(address.port, host=address.host))
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    return listeners


def bound_address(listener: trio.SocketListener) -> ListenAddress:
    sockname = listener.socket.getsockname()
    return ListenAddress(str(sockname[0]), int(sockname[1]))

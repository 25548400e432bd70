"""Open the listening sockets; port 0 works and the bound addresses are reported back.

With ``reuse_port`` every socket gets SO_REUSEPORT, so several worker processes can each listen
on the same address and the kernel spreads new connections between them (each process has its
own accept queue: no thundering herd, unlike one socket shared across processes).
"""

from __future__ import annotations

import socket

import trio

from ..config.model import ListenAddress

#: The kernel caps the listen backlog at net.core.somaxconn; ask for the most it allows.
BACKLOG = 65535


async def open_listeners(
    addresses: tuple[ListenAddress, ...], *, reuse_port: bool = False
) -> list[trio.SocketListener]:
    listeners: list[trio.SocketListener] = []
    try:
        for address in addresses:
            if reuse_port:
                listeners.extend(await _open_reuse_port(address))
            else:
                listeners.extend(await trio.open_tcp_listeners(address.port, host=address.host))
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    return listeners


async def _open_reuse_port(address: ListenAddress) -> list[trio.SocketListener]:
    """What trio.open_tcp_listeners does (one socket per resolved address, IPv6-only IPv6
    sockets, SO_REUSEADDR), plus SO_REUSEPORT."""
    socks = await trio.to_thread.run_sync(lambda: bind_reuse_port(address, reuse_address=True))
    listeners = []
    for sock in socks:
        sock.listen(BACKLOG)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
    return listeners


def bind_reuse_port(address: ListenAddress, *, reuse_address: bool) -> list[socket.socket]:
    """Bind one SO_REUSEPORT socket per address ``address`` resolves to (IPv6 ones IPv6-only),
    without listening; with port 0 the first gets a port from the kernel and the rest share
    it. Blocking (name resolution): call it from a thread in a Trio program."""
    infos = socket.getaddrinfo(
        address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    port = address.port
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _name, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            if reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((sockaddr[0], port, *sockaddr[2:]))
            port = int(sock.getsockname()[1])
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def bound_address(sock: socket.socket | trio.socket.SocketType) -> ListenAddress:
    """The numeric address and port ``sock`` is bound to."""
    sockname = sock.getsockname()
    return ListenAddress(str(sockname[0]), int(sockname[1]))

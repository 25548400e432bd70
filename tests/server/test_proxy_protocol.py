"""PROXY protocol listeners over real loopback sockets: trust, per-client limits, TLS after it."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import attrs
import trio

from tests.server.running import running_server
from tests.smtp_wire import WireClient, clients
from tests.tls_certs import SERVER_NAME, issue
from trimail.config.model import (
    AdmissionConfig,
    ListenAddress,
    ProxyConfig,
    Rate,
    ServerConfig,
    TlsConfig,
)
from trimail.delivery.memory import MemoryHandler

BOUND = 30.0
TRUSTED_LOOPBACK = ProxyConfig(enabled=True, trusted=("127.0.0.0/8",))
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(source: str, port: int = 40000) -> bytes:
    return f"PROXY TCP4 {source} 192.0.2.1 {port} 25\r\n".encode()


def v2(source: str, port: int = 40000) -> bytes:
    addresses = (
        socket.inet_aton(source) + socket.inet_aton("192.0.2.1") + struct.pack("!HH", port, 25)
    )
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


async def proxied(port: int, header: bytes, held: list[WireClient]) -> WireClient:
    client = WireClient(await trio.open_tcp_stream("127.0.0.1", port))
    held.append(client)
    await client.send(header)
    return client


async def test_the_client_named_by_the_header_is_used_for_the_received_header() -> None:
    backend = MemoryHandler()
    config = ServerConfig(proxy=TRUSTED_LOOPBACK)
    async with running_server(backend, config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            client = await proxied(address.port, v2("203.0.113.50"), held)
            assert (await client.reply()).code == 220
            for line in ("EHLO real.test", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.org>"):
                assert (await client.command(line)).code == 250
            assert (await client.command("DATA")).code == 354
            await client.send(b"Subject: via lb\r\n\r\nhi\r\n.\r\n")
            assert (await client.reply()).code == 250
    [stored] = backend.messages
    assert b"Received: from real.test ([203.0.113.50])" in stored.trace_headers


async def test_per_client_limits_count_the_proxied_client_not_the_balancer() -> None:
    config = ServerConfig(
        proxy=TRUSTED_LOOPBACK,
        admission=AdmissionConfig(max_connections_per_ip=1, exempt=()),
    )
    async with running_server(MemoryHandler(), config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            first = await proxied(address.port, v1("203.0.113.7"), held)
            assert (await first.reply()).code == 220
            again = await proxied(address.port, v1("203.0.113.7", 40001), held)
            reply = await again.reply()
            assert (reply.code, reply.lines[0][:5]) == (421, "4.7.0")
            assert await again.closed()
            other = await proxied(address.port, v1("203.0.113.8"), held)
            assert (await other.reply()).code == 220


def v2_local() -> bytes:
    """What a balancer's health check sends: LOCAL, no addresses."""
    return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)


async def test_exempting_the_balancer_frees_its_health_checks_but_not_the_clients_it_relays() -> (
    None
):
    # As README advises: one session and one connection a minute per client, the balancer
    # (here 127.0.0.1) exempt. Its LOCAL health checks keep its address, so they are free;
    # the clients it relays are counted by the address their header names.
    config = ServerConfig(
        proxy=TRUSTED_LOOPBACK,
        admission=AdmissionConfig(
            max_connections_per_ip=1,
            max_connection_rate_per_ip=Rate(1, 60),
            exempt=("127.0.0.1/32",),
        ),
    )
    async with running_server(MemoryHandler(), config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            for _ in range(3):  # held open at once, and more than one a minute
                check = await proxied(address.port, v2_local(), held)
                assert (await check.reply()).code == 220
                assert (await check.command("EHLO lb.test")).code == 250
            first = await proxied(address.port, v1("203.0.113.7"), held)
            assert (await first.reply()).code == 220
            again = await proxied(address.port, v1("203.0.113.7", 40001), held)
            assert (await again.reply()).code == 421


async def test_an_untrusted_peer_is_closed_without_a_word() -> None:
    config = ServerConfig(proxy=ProxyConfig(enabled=True, trusted=("10.0.0.0/8",)))
    async with running_server(MemoryHandler(), config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            client = await proxied(address.port, v1("203.0.113.7"), held)
            assert await client.closed()


async def test_a_client_without_a_header_is_closed_without_a_word() -> None:
    config = ServerConfig(proxy=TRUSTED_LOOPBACK)
    async with running_server(MemoryHandler(), config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            client = await proxied(address.port, b"EHLO direct.test\r\n", held)
            assert await client.closed()


async def test_implicit_tls_behind_the_balancer_with_hello_in_the_same_segment(
    tmp_path: Path,
) -> None:
    """The TLS ClientHello may share a segment with the header; its bytes must reach TLS."""
    certs = issue(tmp_path / "certs")
    config = ServerConfig(
        proxy=TRUSTED_LOOPBACK,
        listen_tls=(ListenAddress("127.0.0.1", 0),),
        tls=TlsConfig(cert=certs.cert, key=certs.key),
    )
    async with running_server(MemoryHandler(), config=config) as (server, _), clients() as held:
        [implicit] = server.tls_addresses
        with trio.fail_after(BOUND):
            stream = await trio.open_tcp_stream("127.0.0.1", implicit.port)
            held.append(WireClient(stream))
            glued = _HeaderFirst(stream, v2("203.0.113.9"))
            tls = trio.SSLStream(glued, certs.client_context(), server_hostname=SERVER_NAME)
            await tls.do_handshake()
            client = WireClient(tls)
            assert (await client.reply()).code == 220
            assert (await client.command("EHLO tls.test")).code == 250


@attrs.define
class _HeaderFirst(trio.abc.Stream):
    """Sends ``header`` glued to the first bytes written (the ClientHello), in one write."""

    transport: trio.abc.Stream
    header: bytes

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        header, self.header = self.header, b""
        await self.transport.send_all(header + bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return bytes(await self.transport.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self.transport.aclose()

"""STARTTLS and implicit TLS over real loopback sockets, with trustme certificates."""

from __future__ import annotations

import logging
import smtplib
import ssl
import warnings
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives import serialization

from tests.server.running import running_server
from tests.smtp_wire import WireClient
from tests.tls_certs import SERVER_NAME, CertFiles, issue
from trimail.config.model import ListenAddress, ServerConfig, TlsConfig
from trimail.delivery.maildir import MaildirHandler
from trimail.delivery.memory import MemoryHandler
from trimail.server.tls import Certificates, TlsSetupError

BOUND = 20.0
MESSAGE = b"From: alice@example.org\r\nSubject: over TLS\r\n\r\nsecret\r\n"


def tls_config(certs: CertFiles, *, require: bool = False) -> ServerConfig:
    return ServerConfig(
        listen_tls=(ListenAddress("127.0.0.1", 0),),
        tls=TlsConfig(cert=certs.cert, key=certs.key, require=require),
    )


@pytest.fixture
def certs(tmp_path: Path) -> CertFiles:
    return issue(tmp_path / "certs")


def stored_messages(maildir: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted((maildir / "new").iterdir())]


async def plain_client(port: int) -> WireClient:
    return WireClient(await trio.open_tcp_stream("127.0.0.1", port))


async def tls_client(
    port: int, context: ssl.SSLContext, server_name: str = SERVER_NAME
) -> WireClient:
    """An implicit-TLS client: handshake first, then the greeting."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    tls = trio.SSLStream(stream, context, server_hostname=server_name)
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return WireClient(tls)


async def upgrade(client: WireClient, certs: CertFiles) -> WireClient:
    """After the 220 to STARTTLS: the same TCP connection, now through TLS."""
    tls = trio.SSLStream(client.stream, certs.client_context(), server_hostname=SERVER_NAME)
    await tls.do_handshake()
    return WireClient(tls)


async def test_smtplib_starttls_stores_the_message_with_an_esmtps_header(
    tmp_path: Path, certs: CertFiles
) -> None:
    backend = MaildirHandler(tmp_path / "maildir")

    def send(port: int) -> tuple[bool, bool]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo("client.test")
            offered_before = smtp.has_extn("starttls")
            smtp.starttls(context=certs.client_context())
            smtp.ehlo("client.test")
            offered_after = smtp.has_extn("starttls")
            smtp.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)
        return offered_before, offered_after

    async with running_server(backend, config=tls_config(certs)) as (_, address):
        with trio.fail_after(BOUND):
            offered = await trio.to_thread.run_sync(send, address.port)
    assert offered == (True, False)
    [stored] = stored_messages(tmp_path / "maildir")
    headers, _, body = stored.partition(b"for <bob@example.com>;")
    assert b"\r\n\t(using TLSv1.3 with cipher TLS_" in headers
    assert b" with ESMTPS id " in headers
    assert body.split(b"\r\n", 1)[1] == MESSAGE


async def test_smtplib_smtp_ssl_implicit_tls(tmp_path: Path, certs: CertFiles) -> None:
    backend = MaildirHandler(tmp_path / "maildir")

    def send(port: int) -> bool:
        with smtplib.SMTP_SSL(
            "127.0.0.1", port, timeout=10, context=certs.client_context()
        ) as smtp:
            smtp.ehlo("client.test")
            offered = smtp.has_extn("starttls")
            smtp.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)
        return offered

    async with running_server(backend, config=tls_config(certs)) as (server, _):
        [implicit] = server.tls_addresses
        with trio.fail_after(BOUND):
            offered = await trio.to_thread.run_sync(send, implicit.port)
    assert offered is False
    [stored] = stored_messages(tmp_path / "maildir")
    assert b" with ESMTPS id " in stored
    assert stored.endswith(MESSAGE)


async def test_commands_injected_with_starttls_are_never_executed(certs: CertFiles) -> None:
    backend = MemoryHandler()
    async with running_server(backend, config=tls_config(certs)) as (_, address):
        with trio.fail_after(BOUND):
            plain = await plain_client(address.port)
            assert (await plain.reply()).code == 220
            assert (await plain.command("EHLO client.test")).code == 250
            # One packet: STARTTLS and, in plaintext behind it, a whole injected transaction.
            await plain.send(
                b"STARTTLS\r\nEHLO evil.test\r\nMAIL FROM:<evil@attacker.example>\r\n"
                b"RCPT TO:<victim@example.org>\r\nDATA\r\nSubject: injected\r\n\r\n.\r\n"
            )
            ready = await plain.reply()
            assert (ready.code, ready.lines) == (220, ("2.0.0 Ready to start TLS",))
            client = await upgrade(plain, certs)
            # Had the injected EHLO and MAIL been executed, RCPT would be accepted here and
            # replies for them would come first.
            reply = await client.command("RCPT TO:<bob@example.com>")
            assert (reply.code, reply.lines) == (503, ("5.5.1 Error: send HELO/EHLO first",))
            assert (await client.command("NOOP")).code == 250
            assert (await client.command("QUIT")).code == 221
            await client.stream.aclose()
    assert backend.messages == []


async def test_tls_1_1_is_refused_and_1_2_accepted(
    certs: CertFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trimail")
    async with running_server(MemoryHandler(), config=tls_config(certs)) as (server, _):
        [implicit] = server.tls_addresses
        old = certs.client_context()
        # Let the client offer only TLS 1.0/1.1 (its own defaults would refuse before sending).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        with trio.fail_after(BOUND), pytest.raises(trio.BrokenResourceError) as refused:
            await tls_client(implicit.port, old)
        assert isinstance(refused.value.__cause__, ssl.SSLError)
        with trio.fail_after(BOUND):
            while "ended: TLS handshake failed" not in caplog.text:
                await trio.sleep(0.01)
        assert "unsupported protocol" in caplog.text.lower()

        modern = certs.client_context()
        modern.maximum_version = ssl.TLSVersion.TLSv1_2
        with trio.fail_after(BOUND):
            async with await tls_client(implicit.port, modern) as client:
                assert (await client.reply()).code == 220
                assert isinstance(client.stream, trio.SSLStream)
                assert client.stream.version() == "TLSv1.2"


async def test_garbage_instead_of_client_hello_closes_only_that_connection(
    certs: CertFiles,
) -> None:
    async with running_server(MemoryHandler(), config=tls_config(certs)) as (server, address):
        with trio.fail_after(BOUND):
            async with await plain_client(address.port) as plain:
                assert (await plain.reply()).code == 220
                assert (await plain.command("STARTTLS")).code == 220
                await plain.send(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)) * 4)
                assert await plain.closed()

            [implicit] = server.tls_addresses
            async with await plain_client(implicit.port) as raw:
                await raw.send(b"EHLO not-tls.test\r\n")
                assert await raw.closed()

            # The server keeps serving everyone else, plain and TLS.
            async with await plain_client(address.port) as other:
                assert (await other.reply()).code == 220
                assert (await other.command("EHLO ok.test")).code == 250
            async with await tls_client(implicit.port, certs.client_context()) as secure:
                assert (await secure.reply()).code == 220


async def test_certificate_reload_serves_new_sessions_and_keeps_old_ones(
    tmp_path: Path,
) -> None:
    first = issue(tmp_path / "certs", "old.mx.test")
    config = tls_config(first)
    async with running_server(MemoryHandler(), config=config) as (server, _):
        [implicit] = server.tls_addresses
        with trio.fail_after(BOUND):
            before = await tls_client(implicit.port, first.client_context(), "old.mx.test")
            async with before:
                assert (await before.reply()).code == 220
                # A renewal writes a new certificate (another name, same CA) over the files.
                renewed = issue(tmp_path / "certs", "new.mx.test", ca=first.ca)
                assert server.reload_tls() is True
                # The handshake checks the name, so this is the new certificate.
                context = renewed.client_context()
                async with await tls_client(implicit.port, context, "new.mx.test") as after:
                    assert (await after.reply()).code == 220
                # The session opened before the reload is untouched.
                assert (await before.command("EHLO still.test")).code == 250
            with pytest.raises(trio.BrokenResourceError):
                await tls_client(implicit.port, first.client_context(), "old.mx.test")


async def test_broken_files_on_reload_keep_the_old_certificate(tmp_path: Path) -> None:
    certs = issue(tmp_path / "certs")
    certificates = Certificates(certs.cert, certs.key)
    old = certificates.context
    certs.cert.write_text("not a certificate\n")
    assert certificates.reload() is False
    assert certificates.context is old


def test_unusable_certificate_is_a_one_line_error(tmp_path: Path) -> None:
    certs = issue(tmp_path / "certs")
    with pytest.raises(TlsSetupError, match=r"^cannot read .*missing\.pem: no such file$"):
        Certificates(tmp_path / "missing.pem", None)
    with pytest.raises(TlsSetupError, match="is not a usable PEM certificate and key"):
        Certificates(certs.key, certs.cert)  # swapped


async def test_require_tls_refuses_plain_mail_and_accepts_it_after_starttls(
    certs: CertFiles,
) -> None:
    backend = MemoryHandler()
    config = tls_config(certs, require=True)
    async with running_server(backend, config=config) as (_, address):
        with trio.fail_after(BOUND):
            plain = await plain_client(address.port)
            assert (await plain.reply()).code == 220
            assert (await plain.command("EHLO client.test")).code == 250
            refused = await plain.command("MAIL FROM:<alice@example.org>")
            assert (refused.code, refused.lines[0][:5]) == (530, "5.7.0")
            assert (await plain.command("STARTTLS")).code == 220
            client = await upgrade(plain, certs)
            for line in ("EHLO client.test", "MAIL FROM:<alice@example.org>"):
                assert (await client.command(line)).code == 250
            assert (await client.command("RCPT TO:<bob@example.com>")).code == 250
            assert (await client.command("DATA")).code == 354
            await client.send(MESSAGE + b".\r\n")
            assert (await client.reply()).code == 250
            await client.stream.aclose()
    [stored] = backend.messages
    assert stored.envelope.tls is not None
    assert stored.envelope.tls.version == "TLSv1.3"


async def test_starttls_without_a_certificate_is_454() -> None:
    async with running_server(MemoryHandler()) as (_, address):
        with trio.fail_after(BOUND):
            client = await plain_client(address.port)
            assert (await client.reply()).code == 220
            ehlo = await client.command("EHLO client.test")
            assert "STARTTLS" not in ehlo.lines
            reply = await client.command("STARTTLS")
            assert (reply.code, reply.lines) == (454, ("4.7.0 TLS not available",))
            assert (await client.command("NOOP")).code == 250
            await client.stream.aclose()


def test_an_encrypted_key_is_refused_instead_of_prompting(tmp_path: Path) -> None:
    certs = issue(tmp_path / "certs")
    encrypted = tmp_path / "encrypted.pem"
    key = serialization.load_pem_private_key(certs.key.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(TlsSetupError, match="encrypted"):
        Certificates(certs.cert, encrypted)

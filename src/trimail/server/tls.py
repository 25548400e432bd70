"""TLS for sessions: a server context with modern defaults, reloadable certificates, handshakes.

The protocol core only decides *when* a connection turns into TLS (and drops whatever the
client pipelined after STARTTLS); this module does the turning. The context is built once per
(re)load and shared by every new session, so a SIGHUP reload swaps certificates for new
sessions while sessions already encrypted keep the one they negotiated with.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import trio

from ..protocol.envelope import TlsInfo

log = logging.getLogger("trimail")


class TlsSetupError(Exception):
    """The certificate or key cannot be used; ``str()`` is one line naming the file."""


class HandshakeFailed(Exception):
    """The client did not complete a TLS handshake (garbage, a refused version, or too slow)."""


def server_context(cert: Path, key: Path | None) -> ssl.SSLContext:
    """TLS 1.2 or newer with the ssl module's default ciphers; no client certificates.

    SNI is not used to pick a certificate (one name per server), so it is treated as opaque.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Renegotiation is a DoS vector and has no use in SMTP.
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert, key, password=_refuse_passphrase)
    except ssl.SSLError as exc:  # a subclass of OSError, so first
        files = f"{cert} / {key}" if key else str(cert)
        raise TlsSetupError(
            f"{files} is not a usable PEM certificate and key ({exc.reason or exc})"
        ) from exc
    except FileNotFoundError as exc:
        raise TlsSetupError(f"cannot read {exc.filename or cert}: no such file") from exc
    except OSError as exc:
        raise TlsSetupError(f"cannot read {exc.filename or cert}: {exc.strerror}") from exc
    return context


def _refuse_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal, blocking the event loop (and a
    # daemon forever) on a SIGHUP reload.
    raise TlsSetupError("the private key is encrypted; give trimail an unencrypted key file")


class Certificates:
    """The current server context; ``reload`` re-reads the files and keeps the old context if
    the new files are broken (a typo in a renewal must not take TLS down)."""

    def __init__(self, cert: Path, key: Path | None) -> None:
        self._cert = cert
        self._key = key
        self.context = server_context(cert, key)

    def reload(self) -> bool:
        try:
            self.context = server_context(self._cert, self._key)
        except TlsSetupError as exc:
            log.error("TLS certificate reload failed, keeping the old one: %s", exc)
            return False
        log.info("TLS certificate reloaded from %s", self._cert)
        return True


async def handshake(
    stream: trio.abc.Stream, context: ssl.SSLContext, timeout: float
) -> trio.SSLStream[trio.abc.Stream]:
    """Run the server side of a handshake within ``timeout`` seconds or raise HandshakeFailed."""
    tls_stream = trio.SSLStream(stream, context, server_side=True)
    try:
        with trio.fail_after(timeout):
            await tls_stream.do_handshake()
    except trio.TooSlowError:
        raise HandshakeFailed(f"no TLS handshake within {timeout:g}s") from None
    except trio.BrokenResourceError as exc:
        raise HandshakeFailed(f"TLS handshake failed: {_reason(exc)}") from None
    return tls_stream


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLError) and cause.reason:
        return cause.reason.replace("_", " ").lower()  # "UNSUPPORTED_PROTOCOL" for a log line
    return str(cause or exc) or type(exc).__name__


def describe(stream: trio.SSLStream[trio.abc.Stream]) -> TlsInfo:
    """What the Received header and the envelope record about the negotiated session."""
    cipher = stream.cipher()
    version = stream.version()
    assert cipher is not None and version is not None  # only called after the handshake
    name, _protocol, bits = cipher
    return TlsInfo(version=version, cipher=name, bits=bits)

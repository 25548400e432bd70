"""A test CA (trustme) and server certificates written to PEM files, plus client contexts."""

from __future__ import annotations

import ssl
from pathlib import Path

import attrs
import trustme

#: The name in every server certificate the tests issue (unless they ask for another); the
#: certificate also holds 127.0.0.1 for clients (smtplib) that check the address they dialled.
SERVER_NAME = "mx.test"


@attrs.frozen
class CertFiles:
    ca: trustme.CA
    cert: Path
    key: Path
    ca_file: Path

    def client_context(self, *, server_name_check: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.check_hostname = server_name_check
        return context


def issue(directory: Path, *names: str, ca: trustme.CA | None = None) -> CertFiles:
    """A server certificate for ``names`` (default mx.test) signed by ``ca`` (default: new)."""
    ca = ca or trustme.CA()
    directory.mkdir(parents=True, exist_ok=True)
    server = ca.issue_cert(*(names or (SERVER_NAME, "127.0.0.1")))
    cert, key, ca_file = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(cert), append=True)
    server.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return CertFiles(ca, cert, key, ca_file)

"""Helpers for the transport-security tests (imported by conftest.py and the tests): certificate
files issued by a test CA, validity windows for expired / not-yet-valid certificates, and the
outcome of one handshake."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from cloud.ca import CertificateAuthority, IssuedCert
from gascore.tls import generate_key_pem, make_csr_pem, write_private_pem, write_public_pem

GW = "gw-0001"


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path
    serial: str = ""


@dataclass
class Pki:
    """A CA in ``root/ca`` plus helpers that write certificate/key pairs next to it."""

    root: Path
    ca: CertificateAuthority
    _n: list[int] = field(default_factory=lambda: [0])

    def _paths(self, stem: str) -> tuple[Path, Path]:
        self._n[0] += 1
        return self.root / f"{stem}-{self._n[0]}.crt", self.root / f"{stem}-{self._n[0]}.key"

    def server(
        self,
        hostnames: tuple[str, ...] = ("localhost",),
        ips: tuple[str, ...] = ("127.0.0.1",),
        *,
        validity: tuple[datetime, datetime] | None = None,
    ) -> CertFiles:
        if validity is None:
            cert_pem, key_pem = self.ca.issue_server(hostnames, ips)
        else:
            cert_pem, key_pem = self.ca._issue_server(hostnames, ips, *validity)
        cert, key = self._paths("server")
        write_public_pem(cert, cert_pem)
        write_private_pem(key, key_pem)
        return CertFiles(cert, key)

    def client(self, gateway_id: str = GW, *, validity: tuple[datetime, datetime] | None = None) -> CertFiles:
        key_pem = generate_key_pem()
        csr = make_csr_pem(key_pem, gateway_id)
        issued: IssuedCert
        if validity is None:
            issued = self.ca.issue_client(csr, gateway_id)
        else:
            issued = self.ca._issue_client(csr, gateway_id, *validity)
        cert, key = self._paths(f"client-{gateway_id}")
        write_public_pem(cert, issued.cert_pem)
        write_private_pem(key, key_pem)
        return CertFiles(cert, key, issued.serial)


def expired() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(days=30), now - timedelta(days=1)


def not_yet_valid() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now + timedelta(days=1), now + timedelta(days=30)


@dataclass
class Outcome:
    """What each side of one connection saw.  ``server_error``/``client_error`` hold the exception
    of the side that failed; ``client_read`` is the line the server sent after its handshake."""

    server_error: BaseException | None = None
    client_error: BaseException | None = None
    server_version: str | None = None
    server_cipher: str | None = None
    client_cert: x509.Certificate | None = None
    client_read: bytes = b""

    @property
    def ok(self) -> bool:
        return self.server_error is None and self.client_error is None and self.client_read == b"hello\n"


# await handshake(server_ctx, client_ctx, server_hostname="localhost") -> Outcome (conftest fixture)
Handshake = Callable[..., Awaitable[Outcome]]


def error_text(err: BaseException | None) -> str:
    """The text to check of a refusal: OpenSSL's reason and, for verification, its verify message."""
    if err is None:
        return "<no error>"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"{err} [{err.verify_message}]"
    return str(err) or repr(err)

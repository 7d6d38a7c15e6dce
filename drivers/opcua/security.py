"""Certificates for OPC-UA security: the gateway's own application instance certificate, the
list of trusted server certificates, and picking the server endpoint that matches the channel.

Files are small and read once per connection attempt, in a worker thread so the event loop
never blocks on a slow disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from asyncua import ua
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key, generate_self_signed_app_certificate
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.opcua.config import OpcUaChannel
from drivers.opcua.errors import SecurityError, UntrustedServerError
from drivers.opcua.trust_dir import TrustDirectory, TrustDirError, sha256_hex

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
}
MODES: dict[str, ua.MessageSecurityMode] = {
    "None": ua.MessageSecurityMode.None_,
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}


def leaf_der(blob: bytes) -> bytes:
    """The first certificate of a DER blob that may hold a whole chain (servers may send one)."""
    if len(blob) < 2 or blob[0] != 0x30:
        raise SecurityError("server certificate is not DER-encoded")
    first = blob[1]
    if first < 0x80:
        return blob[: 2 + first]
    width = first & 0x7F
    length = int.from_bytes(blob[2 : 2 + width], "big")
    return blob[: 2 + width + length]


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, as colon-separated hex (how certificate tools show it)."""
    return hashlib.sha256(der).digest().hex(":").upper()


def load_der(path: Path) -> bytes:
    """A certificate file (PEM or DER, whatever the suffix says) as DER bytes."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SecurityError(f"cannot read certificate {path}: {err.strerror}") from err
    try:
        cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError as err:
        raise SecurityError(f"{path} is not a PEM or DER certificate") from err
    return cert.public_bytes(Encoding.DER)


class ServerTrust(Protocol):
    """Decides whether the server certificate offered with the chosen endpoint may be used."""

    def check(self, endpoint: str, server_der: bytes) -> None:
        """Raise UntrustedServerError to refuse the server."""


@dataclass(frozen=True, slots=True)
class TrustedList:
    """Exactly these certificates (``trusted_server_certificates``); empty accepts any server,
    which the channel config allows only with ``accept_any_server_certificate``."""

    ders: frozenset[bytes]

    def check(self, endpoint: str, server_der: bytes) -> None:
        if self.ders and server_der not in self.ders:
            raise UntrustedServerError(endpoint, fingerprint(server_der), "is not in trusted_server_certificates")


@dataclass(frozen=True, slots=True)
class TrustedDirectory:
    """A trust list directory; a refused certificate is kept in rejected/ for a technician to
    inspect and, after comparing fingerprints with the server's administrator, trust."""

    directory: TrustDirectory

    def check(self, endpoint: str, server_der: bytes) -> None:
        try:
            verdict = self.directory.verdict(server_der)
        except TrustDirError as err:
            raise SecurityError(f"trust_dir {self.directory.root}: {err}") from err
        if verdict.trusted:
            return
        with contextlib.suppress(OSError, TrustDirError):
            self.directory.reject(server_der)
        raise UntrustedServerError(
            endpoint,
            fingerprint(server_der),
            f"is not trusted ({verdict.reason}); to trust it: gasiot keys trust {self.directory.root} "
            f"{sha256_hex(server_der)[:16]}",
        )


async def load_trust(channel: OpcUaChannel) -> ServerTrust:
    """The server check the channel asks for, read now (a change counts at the next connection)."""
    if channel.trust_dir is not None:
        return TrustedDirectory(TrustDirectory(channel.trust_dir))
    paths = channel.trusted_server_certificates
    return TrustedList(frozenset(await asyncio.to_thread(lambda: [load_der(p) for p in paths])))


def application_uris(der: bytes) -> list[str]:
    """The URI subject-alternative-names of a certificate (where OPC-UA keeps the application URI)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


async def check_own_certificate(channel: OpcUaChannel) -> None:
    """The gateway certificate must be readable and carry ``application_uri``: servers reject a
    client whose certificate names another application (BadCertificateUriInvalid), and that
    error is much easier to read here."""
    assert channel.certificate is not None
    der = await asyncio.to_thread(load_der, channel.certificate)
    uris = application_uris(der)
    if channel.application_uri not in uris:
        raise SecurityError(
            f"certificate {channel.certificate} is for {', '.join(uris) or 'no application URI'}, "
            f"not application_uri {channel.application_uri!r}"
        )


def pick_endpoint(endpoints: Iterable[ua.EndpointDescription], channel: OpcUaChannel) -> ua.EndpointDescription:
    """The server endpoint offering the channel's policy and mode."""
    policy_uri = POLICIES[channel.security_policy].URI
    mode = MODES[channel.security_mode]
    offered = []
    for ep in endpoints:
        offered.append(f"{ep.SecurityPolicyUri.rpartition('#')[2]}/{ua.MessageSecurityMode(ep.SecurityMode).name}")
        if ep.SecurityPolicyUri == policy_uri and ep.SecurityMode == mode:
            return ep
    raise SecurityError(
        f"{channel.endpoint} offers no {channel.security_policy}/{channel.security_mode} endpoint "
        f"(offered: {', '.join(sorted(set(offered))) or 'none'})"
    )


@dataclass(frozen=True, slots=True)
class CertificatePair:
    certificate: Path  # DER
    private_key: Path  # PEM (PKCS#8)


def create_self_signed(
    certificate: Path,
    private_key: Path,
    application_uri: str,
    *,
    hostnames: Sequence[str] = (),
    server: bool = False,
    days: int = 365 * 5,
) -> CertificatePair:
    """Write a new RSA-2048 key (PEM) and a self-signed application instance certificate (DER)
    naming ``application_uri`` (the URI SAN servers check) and ``hostnames`` (DNS or IP SANs).

    For the gateway (``server=False``) and for simulators and test peers (``server=True``).
    Overwrites existing files.  Blocking: run it in a thread from async code.
    """
    names = list(hostnames) or [socket.gethostname()]
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    usage = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usage.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    key = generate_private_key()
    common_name = application_uri.rpartition(":")[2] or application_uri
    cert = generate_self_signed_app_certificate(key, common_name, {}, sans, extended=usage, days=days)
    private_key.parent.mkdir(parents=True, exist_ok=True)
    certificate.parent.mkdir(parents=True, exist_ok=True)
    private_key.write_bytes(dump_private_key_as_pem(key))
    private_key.chmod(0o600)
    certificate.write_bytes(cert.public_bytes(Encoding.DER))
    return CertificatePair(certificate, private_key)

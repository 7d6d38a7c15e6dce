"""An OPC-UA trust list on disk, managed with ``gasiot keys trust | trusted | distrust``.

Layout (the one UaExpert, Ignition and node-opcua use, so technicians recognise it)::

    <dir>/trusted/   certificates accepted: a peer's own certificate, or a CA certificate
                     (basicConstraints CA=true) whose directly issued certificates are accepted
    <dir>/rejected/  certificates of peers that were refused, kept so that a technician can
                     look at them and trust one with ``gasiot keys trust <dir> <fingerprint>``
    <dir>/revoked/   certificates explicitly distrusted: refused even when a trusted CA issued them
    <dir>/crl/       certificate revocation lists of the trusted CAs (PEM or DER)

The directory is read on every check (a handful of small files), so a change made with the CLI
takes effect at the next connection without restarting the gateway.  Files are named by the
certificate's SHA-256 fingerprint, so trusting the same certificate twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from gascore.crypto.keys import write_file_atomically

Status = Literal["trusted", "rejected", "revoked"]
STATUSES: tuple[Status, ...] = ("trusted", "rejected", "revoked")
_SUFFIXES = {".der", ".pem", ".crt", ".cer"}
# Enough to tell certificates apart in a listing and short enough to type.
_NAME_CHARS = 16


class TrustDirError(Exception):
    """A trust directory or certificate that cannot be used; the message says which file."""


@dataclass(frozen=True, slots=True)
class TrustEntry:
    status: Status
    path: Path
    fingerprint: str  # SHA-256 of the DER, lower-case hex without separators
    subject: str
    issuer: str
    application_uri: str | None
    not_after: dt.datetime
    is_ca: bool

    @property
    def days_left(self) -> float:
        return (self.not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400


@dataclass(frozen=True, slots=True)
class Verdict:
    trusted: bool
    reason: str  # why not, for logs and errors: "not in the trust list", "revoked", "expired", ...


def sha256_hex(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def parse_certificate(data: bytes, source: str) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as err:
        raise TrustDirError(f"{source} is not a PEM or DER certificate") from err


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _application_uri(cert: x509.Certificate) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


class TrustDirectory:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def create(self) -> None:
        for status in (*STATUSES, "crl"):
            (self.root / status).mkdir(parents=True, exist_ok=True)

    # -- reading ---------------------------------------------------------------------------

    def _files(self, status: str) -> Iterator[Path]:
        folder = self.root / status
        if not folder.is_dir():
            return
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in _SUFFIXES:
                yield path

    def _certificates(self, status: Status) -> Iterator[tuple[Path, x509.Certificate, bytes]]:
        for path in self._files(status):
            try:
                cert = parse_certificate(path.read_bytes(), str(path))
            except OSError as err:
                raise TrustDirError(f"cannot read {path}: {err.strerror}") from err
            yield path, cert, cert.public_bytes(Encoding.DER)

    def entries(self) -> list[TrustEntry]:
        out = []
        for status in STATUSES:
            for path, cert, der in self._certificates(status):
                out.append(
                    TrustEntry(
                        status=status,
                        path=path,
                        fingerprint=sha256_hex(der),
                        subject=cert.subject.rfc4514_string(),
                        issuer=cert.issuer.rfc4514_string(),
                        application_uri=_application_uri(cert),
                        not_after=cert.not_valid_after_utc,
                        is_ca=_is_ca(cert),
                    )
                )
        return out

    def _revoked_serials(self, issuer: x509.Certificate) -> set[int]:
        serials: set[int] = set()
        folder = self.root / "crl"
        if not folder.is_dir():
            return serials
        for path in sorted(folder.iterdir()):
            if not path.is_file():
                continue
            data = path.read_bytes()
            try:
                crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
            except ValueError as err:
                raise TrustDirError(f"{path} is not a PEM or DER certificate revocation list") from err
            if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                continue
            serials.update(r.serial_number for r in crl)
        return serials

    def verdict(self, der: bytes, *, now: dt.datetime | None = None) -> Verdict:
        """Whether a peer presenting this certificate (DER, leaf only) is trusted."""
        fingerprint = sha256_hex(der)
        if any(sha256_hex(d) == fingerprint for _, _, d in self._certificates("revoked")):
            return Verdict(False, "the certificate was distrusted (revoked/)")
        cert = parse_certificate(der, "the peer certificate")
        now = now or dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return Verdict(
                False,
                f"the certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
                f"to {cert.not_valid_after_utc:%Y-%m-%d})",
            )
        for _, trusted, trusted_der in self._certificates("trusted"):
            if trusted_der == der:
                return Verdict(True, "listed in trusted/")
            if _is_ca(trusted) and cert.issuer == trusted.subject:
                try:
                    cert.verify_directly_issued_by(trusted)
                except (ValueError, TypeError, InvalidSignature):
                    continue
                if cert.serial_number in self._revoked_serials(trusted):
                    return Verdict(False, f"revoked by the CRL of {trusted.subject.rfc4514_string()}")
                if not trusted.not_valid_before_utc <= now <= trusted.not_valid_after_utc:
                    return Verdict(False, "the issuing CA certificate is not valid now")
                return Verdict(True, f"issued by trusted CA {trusted.subject.rfc4514_string()}")
        return Verdict(False, "not in the trust list")

    def find(self, fingerprint_prefix: str) -> TrustEntry:
        """The one entry whose fingerprint starts with the prefix (colons and case ignored)."""
        prefix = fingerprint_prefix.replace(":", "").lower()
        if len(prefix) < 8:
            raise TrustDirError("give at least 8 hex digits of the fingerprint")
        matches = {e.fingerprint: e for e in self.entries() if e.fingerprint.startswith(prefix)}
        if not matches:
            raise TrustDirError(f"no certificate with fingerprint {fingerprint_prefix} in {self.root}")
        if len(matches) > 1:
            raise TrustDirError(f"fingerprint {fingerprint_prefix} is ambiguous: give more digits")
        # The same certificate may sit in two folders; prefer where it matters most.
        return next(iter(matches.values()))

    # -- changing --------------------------------------------------------------------------

    def _place(self, status: Status, der: bytes) -> Path:
        self.create()
        fingerprint = sha256_hex(der)
        for other in STATUSES:
            if other != status:
                for path, _, d in list(self._certificates(other)):
                    if sha256_hex(d) == fingerprint:
                        path.unlink()
        target = self.root / status / f"{fingerprint[:_NAME_CHARS]}.der"
        write_file_atomically(target, der, mode=0o644, overwrite=True, what="certificate")
        return target

    def trust(self, certificate: bytes | Path) -> TrustEntry:
        """Trust a certificate given as a file (PEM/DER) or DER bytes; it leaves rejected/ and revoked/."""
        data = certificate.read_bytes() if isinstance(certificate, Path) else certificate
        der = parse_certificate(data, str(certificate) if isinstance(certificate, Path) else "certificate")
        path = self._place("trusted", der.public_bytes(Encoding.DER))
        return self._entry(path)

    def trust_fingerprint(self, fingerprint_prefix: str) -> TrustEntry:
        """Trust a certificate already in the directory (typically a rejected peer)."""
        entry = self.find(fingerprint_prefix)
        return self.trust(entry.path.read_bytes())

    def distrust(self, fingerprint_prefix: str) -> TrustEntry:
        """Move a certificate to revoked/: refused from now on, even when a trusted CA issued it."""
        entry = self.find(fingerprint_prefix)
        der = parse_certificate(entry.path.read_bytes(), str(entry.path)).public_bytes(Encoding.DER)
        return self._entry(self._place("revoked", der))

    def reject(self, der: bytes) -> Path | None:
        """Keep a refused peer's certificate in rejected/ (unless it is already in revoked/)."""
        fingerprint = sha256_hex(der)
        if any(sha256_hex(d) == fingerprint for _, _, d in self._certificates("revoked")):
            return None
        target = self.root / "rejected" / f"{fingerprint[:_NAME_CHARS]}.der"
        if target.exists():
            return target
        (self.root / "rejected").mkdir(parents=True, exist_ok=True)
        write_file_atomically(target, der, mode=0o644, overwrite=True, what="certificate")
        return target

    def _entry(self, path: Path) -> TrustEntry:
        for entry in self.entries():
            if entry.path == path:
                return entry
        raise TrustDirError(f"{path} vanished while it was being written")

"""A small certificate authority per utility: it issues the gateways' client certificates and
the cloud's server certificate, revokes them, and publishes a CRL.

The CA signs with ECDSA P-256 (SHA-256).  SM2 certificates would be the national choice, but
Python's ``ssl`` has no SM suites, so TLS certificates are ECDSA/RSA; SM2 stays in the batch
signatures.

Directory layout (``init_ca`` creates it, mode 0700):

- ``ca.key``  the CA's private key, PEM, mode 0600, never overwritten; ``load_ca`` refuses it if
  group or other can read it.
- ``ca.crt``  the self-signed CA certificate (what gateways trust, and what the cloud verifies
  client certificates against).
- ``ca.db``   SQLite: every certificate issued (serial, kind, subject, validity) and revocations.
  Kinds: ``client`` (a gateway's TLS certificate, subject = gateway id), ``server`` (a TLS server,
  subject = its names) and ``opcua`` (an OPC-UA application instance certificate, subject = its
  application URI).
  Several processes (the cloud, ``gasiot keys``) can share it; each call opens its own connection.
- ``crl.pem`` the current CRL, rewritten atomically on every revocation and by ``crl_pem`` when it
  is close to its nextUpdate.

Serials are 128-bit random numbers, written as 32 lower-case hex digits.  A CRL's thisUpdate is
strictly increasing (one second apart at least): OpenSSL, given several CRLs of one issuer, uses the
one with the latest thisUpdate at one-second resolution, and ``gascore.tls.reload_crl`` depends on
it.  To keep that true during a burst of revocations without dating a CRL in the future, thisUpdate
starts five minutes in the past.

Errors: ``CaError`` (a ``CryptoError``) for a CA that cannot be created, loaded or used;
``CsrRefused`` for a CSR that is malformed, badly signed or has an unacceptable key (HTTP 400);
``CertificateRefused`` from ``client_identity`` (HTTP 403).  Unsafe key files raise
``KeyFileError``.  Every call here blocks briefly on file I/O and one signature.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gascore.crypto.errors import CryptoError, KeyFileError
from gascore.tls import generate_key_pem, read_private_pem, write_private_pem, write_public_pem

__all__ = [
    "CA_CERT_FILE",
    "CA_DB_FILE",
    "CA_KEY_FILE",
    "CRL_FILE",
    "GATEWAY_URN_PREFIX",
    "CaError",
    "CertificateAuthority",
    "CertificateRefused",
    "CsrRefused",
    "IssuedCert",
    "IssuedRecord",
    "check_csr",
    "format_serial",
    "gateway_id_of",
    "init_ca",
    "load_ca",
]

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
CA_DB_FILE = "ca.db"
CRL_FILE = "crl.pem"
GATEWAY_URN_PREFIX = "urn:gasiot:gateway:"
# The same rule as the cloud's registry (cloud.app.GATEWAY_ID_RE); kept here so the CA does not
# depend on the web layer.
_GATEWAY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MIN_RSA_BITS = 2048
_MAX_RSA_BITS = 8192
_BACKDATE = timedelta(minutes=5)  # notBefore of issued certs: tolerate clocks a little behind
CRL_VALIDITY = timedelta(days=4)
CRL_REFRESH_BEFORE = timedelta(days=2)  # crl_pem() re-signs when less than this is left
_CRL_BACKDATE = timedelta(minutes=5)
_REVOCABLE_REASONS = {
    f.value: f
    for f in x509.ReasonFlags
    if f not in (x509.ReasonFlags.remove_from_crl, x509.ReasonFlags.certificate_hold)
}

Kind = Literal["client", "server", "opcua"]


class CaError(CryptoError):
    """The CA cannot be created, loaded or used as asked; the message says why."""


class CsrRefused(CaError):
    """A certificate signing request was refused (malformed, bad signature, unacceptable key)."""


class CertificateRefused(CaError):
    """A peer certificate does not identify an active gateway of this CA."""


@dataclass(frozen=True, slots=True)
class IssuedCert:
    cert_pem: bytes
    serial: str  # 32 lower-case hex digits
    not_after: datetime  # UTC, aware


@dataclass(frozen=True, slots=True)
class IssuedRecord:
    """One row of the CA's register (for ``gasiot keys list``)."""

    serial: str
    kind: Kind
    subject: str  # gateway id, the server's names joined by ",", or an OPC-UA application URI
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    reason: str | None


def format_serial(serial: int) -> str:
    """A certificate serial as this CA writes it: 32 lower-case hex digits (more for foreign ones)."""
    return f"{serial:032x}"


def _normalise_serial(serial: str) -> str:
    try:
        value = int(serial.strip().removeprefix("0x").replace(":", ""), 16)
    except ValueError:
        raise CaError(f"serial {serial!r} is not hexadecimal") from None
    if not 0 < value < 1 << 160:
        raise CaError(f"serial {serial!r} is out of range")
    return format_serial(value)


def _random_serial() -> int:
    while True:
        serial = secrets.randbits(128)
        if serial:
            return serial


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _ts(when: datetime) -> int:
    return int(when.timestamp())


def _dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def gateway_id_of(cert: x509.Certificate) -> str | None:
    """The gateway id a client certificate is bound to (its ``urn:gasiot:gateway:<id>`` SAN URI),
    or None when it has none (a server certificate, or one from another CA)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(GATEWAY_URN_PREFIX):
            gateway_id = uri.removeprefix(GATEWAY_URN_PREFIX)
            if _GATEWAY_ID_RE.match(gateway_id):
                return gateway_id
    return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS issued (
    serial TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    revoked_at INTEGER,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS issued_subject ON issued (subject);
CREATE TABLE IF NOT EXISTS crl_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    number INTEGER NOT NULL,
    this_update INTEGER NOT NULL
);
"""


class CertificateAuthority:
    """A CA loaded from its directory (use ``init_ca`` / ``load_ca``)."""

    def __init__(self, directory: Path, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self.directory = directory
        self._key = key
        self.certificate = certificate
        self._ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

    # ---- files ---------------------------------------------------------------------------

    @property
    def cert_path(self) -> Path:
        return self.directory / CA_CERT_FILE

    @property
    def crl_path(self) -> Path:
        return self.directory / CRL_FILE

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate (the chain a gateway needs to trust the cloud and its own cert)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection in an IMMEDIATE transaction (one writer at a time across processes),
        committed when the block ends normally."""
        with closing(sqlite3.connect(self.directory / CA_DB_FILE, timeout=10.0, isolation_level=None)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ---- issuing -------------------------------------------------------------------------

    def issue_client(self, csr_pem: bytes, gateway_id: str, *, days: int = 90) -> IssuedCert:
        """Sign a gateway's CSR.  The certificate names ``gateway_id`` (subject CN and the SAN URI
        ``urn:gasiot:gateway:<id>``), whatever names the CSR asks for; EKU clientAuth only."""
        now = _now()
        return self._issue_client(csr_pem, gateway_id, now - _BACKDATE, now + timedelta(days=_positive(days)))

    def _issue_client(self, csr_pem: bytes, gateway_id: str, not_before: datetime, not_after: datetime) -> IssuedCert:
        # Test hook: explicit validity (expired and not-yet-valid certificates).
        if not _GATEWAY_ID_RE.match(gateway_id):
            raise CaError(f"gateway id {gateway_id!r}: 1-64 characters of A-Z a-z 0-9 _ . -, not starting with _ . -")
        public_key = _csr_public_key(csr_pem)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gateway_id)]))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(GATEWAY_URN_PREFIX + gateway_id)]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        return self._sign(builder, public_key, "client", gateway_id, not_before, not_after)

    def issue_server(self, hostnames: Sequence[str], ips: Sequence[str], *, days: int = 365) -> tuple[bytes, bytes]:
        """A new key and a server certificate for ``gasiot cloud serve --tls-cert/--tls-key``:
        returns ``(cert_pem, key_pem)``; store the key with ``gascore.tls.write_private_pem``."""
        now = _now()
        return self._issue_server(hostnames, ips, now - _BACKDATE, now + timedelta(days=_positive(days)))

    def _issue_server(
        self, hostnames: Sequence[str], ips: Sequence[str], not_before: datetime, not_after: datetime
    ) -> tuple[bytes, bytes]:
        # Test hook: explicit validity.
        if isinstance(hostnames, str) or isinstance(ips, str):
            raise CaError("issue_server: hostnames and ips are lists, not strings")
        names: list[x509.GeneralName] = []
        for host in hostnames:
            if not host:
                raise CaError("issue_server: empty host name")
            try:
                names.append(x509.DNSName(host.encode("idna").decode("ascii").lower()))
            except (UnicodeError, ValueError) as err:
                raise CaError(f"issue_server: {host!r} is not a valid host name") from err
        for ip in ips:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(ip)))
            except ValueError as err:
                raise CaError(f"issue_server: {ip!r} is not an IP address") from err
        if not names:
            raise CaError("issue_server: give at least one host name or IP address")
        subject = ",".join([*hostnames, *ips])
        key_pem = generate_key_pem()
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, [*hostnames, *ips][0])]))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        issued = self._sign(builder, key.public_key(), "server", subject, not_before, not_after)
        return issued.cert_pem, key_pem

    def issue_opcua(
        self, application_uri: str, hostnames: Sequence[str], *, server: bool, days: int = 365
    ) -> tuple[bytes, bytes]:
        """A new RSA-2048 key and an OPC-UA application instance certificate signed by this CA:
        returns ``(cert_pem, key_pem)`` (PKCS#8 key; store it with ``write_private_pem``).

        RSA because the OPC-UA security policies (Basic256Sha256) need it.  The SAN holds the URI
        ``application_uri`` (what OPC-UA peers check against the application description) and
        ``hostnames`` (DNS names; IP literals become IP SANs); keyUsage is digitalSignature,
        nonRepudiation, keyEncipherment and dataEncipherment (OPC-UA Part 6, 6.2.2); EKU is
        serverAuth + clientAuth for a server (``server=True``, servers also act as clients, e.g.
        for discovery registration), clientAuth for a client.  Recorded as kind ``opcua`` with the
        application URI as subject.  OPC-UA stacks usually want the certificate as DER:
        ``x509.load_pem_x509_certificate(cert_pem).public_bytes(Encoding.DER)``."""
        now = _now()
        return self._issue_opcua(
            application_uri, hostnames, server, now - _BACKDATE, now + timedelta(days=_positive(days))
        )

    def _issue_opcua(
        self,
        application_uri: str,
        hostnames: Sequence[str],
        server: bool,
        not_before: datetime,
        not_after: datetime,
    ) -> tuple[bytes, bytes]:
        # Test hook: explicit validity.
        if not application_uri or any(c.isspace() for c in application_uri) or ":" not in application_uri:
            raise CaError(f"issue_opcua: {application_uri!r} is not an application URI (e.g. urn:gasiot:edge)")
        if isinstance(hostnames, str):
            raise CaError("issue_opcua: hostnames is a list, not a string")
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
        for host in hostnames:
            names.append(_host_name(host, "issue_opcua"))
        key = rsa.generate_private_key(public_exponent=65537, key_size=_MIN_RSA_BITS)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        usages = (
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            if server
            else [ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        common_name = application_uri.rpartition(":")[2] or application_uri
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        issued = self._sign(
            builder, key.public_key(), "opcua", application_uri, not_before, not_after, key_usage=_OPCUA_KEY_USAGE
        )
        return issued.cert_pem, key_pem

    def _sign(
        self,
        builder: x509.CertificateBuilder,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        kind: Kind,
        subject: str,
        not_before: datetime,
        not_after: datetime,
        *,
        key_usage: x509.KeyUsage | None = None,
    ) -> IssuedCert:
        not_after = min(not_after, self.certificate.not_valid_after_utc)  # never outlive the CA
        if not_after <= not_before:
            raise CaError("certificate would be valid for no time (the CA expires too soon?)")
        serial = _random_serial()
        cert = (
            builder.issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage or _key_usage(digital_signature=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        with self._db() as db:
            db.execute(
                "INSERT INTO issued (serial, kind, subject, not_before, not_after, issued_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (format_serial(serial), kind, subject, _ts(not_before), _ts(not_after), _ts(_now())),
            )
        return IssuedCert(
            cert.public_bytes(serialization.Encoding.PEM), format_serial(serial), cert.not_valid_after_utc
        )

    # ---- revocation ----------------------------------------------------------------------

    def revoke(self, serial_hex: str, reason: str = "unspecified") -> bool:
        """Revoke a certificate this CA issued and rewrite ``crl.pem``.  Returns False if it was
        already revoked.  ``reason`` is an RFC 5280 reason name, e.g. ``keyCompromise``,
        ``superseded``, ``cessationOfOperation``."""
        serial = _normalise_serial(serial_hex)
        if reason not in _REVOCABLE_REASONS:
            raise CaError(f"revocation reason {reason!r}: expected one of {', '.join(sorted(_REVOCABLE_REASONS))}")
        with self._db() as db:
            row = db.execute("SELECT revoked_at FROM issued WHERE serial = ?", (serial,)).fetchone()
            if row is None:
                raise CaError(f"no certificate with serial {serial} was issued by this CA")
            if row[0] is not None:
                return False
            db.execute("UPDATE issued SET revoked_at = ?, reason = ? WHERE serial = ?", (_ts(_now()), reason, serial))
            self._write_crl(db)  # inside the transaction: CRLs are written in revocation order
        return True

    def revoke_gateway(self, gateway_id: str, reason: str = "cessationOfOperation") -> list[str]:
        """Revoke every unexpired client certificate of a gateway; returns their serials."""
        now = _ts(_now())
        with closing(sqlite3.connect(self.directory / CA_DB_FILE, timeout=10.0)) as conn:
            rows = conn.execute(
                "SELECT serial FROM issued WHERE kind = 'client' AND subject = ? AND revoked_at IS NULL "
                "AND not_after > ?",
                (gateway_id, now),
            ).fetchall()
        return [serial for (serial,) in rows if self.revoke(serial, reason)]

    def is_revoked(self, serial_hex: str) -> bool:
        """Current answer from the register (sees revocations made by other processes at once)."""
        serial = _normalise_serial(serial_hex)
        with closing(sqlite3.connect(self.directory / CA_DB_FILE, timeout=10.0)) as conn:
            row = conn.execute("SELECT revoked_at FROM issued WHERE serial = ?", (serial,)).fetchone()
        return row is not None and row[0] is not None

    def client_identity(self, cert: x509.Certificate | None) -> str:
        """The gateway id of a TLS client certificate, for a per-request check: raises
        CertificateRefused unless it was issued by this CA, is in its register, is not revoked and
        names a gateway.  (A TLS 1.2 session resumed after a revocation skips the handshake checks;
        this one does not.)"""
        if cert is None:
            raise CertificateRefused("no client certificate")
        try:
            cert.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature) as err:
            raise CertificateRefused("client certificate was not issued by this CA") from err
        gateway_id = gateway_id_of(cert)
        if gateway_id is None:
            raise CertificateRefused("client certificate names no gateway")
        serial = format_serial(cert.serial_number)
        with closing(sqlite3.connect(self.directory / CA_DB_FILE, timeout=10.0)) as conn:
            row = conn.execute("SELECT revoked_at FROM issued WHERE serial = ?", (serial,)).fetchone()
        if row is None:
            raise CertificateRefused(f"client certificate {serial} is not in this CA's register")
        if row[0] is not None:
            raise CertificateRefused(f"client certificate {serial} of gateway {gateway_id} is revoked")
        return gateway_id

    def issued(self, *, subject: str | None = None) -> list[IssuedRecord]:
        """The register, oldest first; ``subject`` filters by gateway id (or server names)."""
        query = "SELECT serial, kind, subject, not_before, not_after, revoked_at, reason FROM issued"
        args: tuple[str, ...] = ()
        if subject is not None:
            query, args = query + " WHERE subject = ?", (subject,)
        with closing(sqlite3.connect(self.directory / CA_DB_FILE, timeout=10.0)) as conn:
            rows = conn.execute(query + " ORDER BY issued_at, rowid", args).fetchall()
        return [
            IssuedRecord(s, k, sub, _dt(nb), _dt(na), None if ra is None else _dt(ra), r)
            for s, k, sub, nb, na, ra, r in rows
        ]

    def crl_pem(self) -> bytes:
        """The current CRL (PEM), re-signed first if it has less than two days left before its
        nextUpdate (call this daily and then ``gascore.tls.reload_crl``: an expired CRL makes
        every client-certificate handshake fail)."""
        try:
            pem = self.crl_path.read_bytes()
            next_update = x509.load_pem_x509_crl(pem).next_update_utc
        except (OSError, ValueError):
            next_update = None
        if next_update is not None and next_update - _now() >= CRL_REFRESH_BEFORE:
            return pem
        with self._db() as db:
            return self._write_crl(db)

    def _write_crl(self, db: sqlite3.Connection) -> bytes:
        now = _now()
        number, last = db.execute("SELECT number, this_update FROM crl_state WHERE id = 1").fetchone() or (0, 0)
        this_update = max(now - _CRL_BACKDATE, _dt(last) + timedelta(seconds=1))
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(this_update)
            .next_update(now + CRL_VALIDITY)
            .add_extension(x509.CRLNumber(number + 1), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski), critical=False)
        )
        # Expired certificates need no entry (RFC 5280 5.1.2.6 lets a CA drop them).
        rows = db.execute(
            "SELECT serial, revoked_at, reason FROM issued WHERE revoked_at IS NOT NULL AND not_after > ?",
            (_ts(now),),
        ).fetchall()
        for serial, revoked_at, reason in rows:
            entry = x509.RevokedCertificateBuilder().serial_number(int(serial, 16)).revocation_date(_dt(revoked_at))
            if reason != "unspecified":  # RFC 5280: omit the reason code rather than say unspecified
                entry = entry.add_extension(x509.CRLReason(_REVOCABLE_REASONS[reason]), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        pem = builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        write_public_pem(self.crl_path, pem)
        db.execute(
            "INSERT INTO crl_state (id, number, this_update) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET number = excluded.number, this_update = excluded.this_update",
            (number + 1, _ts(this_update)),
        )
        return pem


# ---- helpers ---------------------------------------------------------------------------------


def _positive(days: int) -> int:
    if not isinstance(days, int) or days < 1:
        raise CaError(f"days must be a positive integer, not {days!r}")
    return days


def _key_usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


# OPC-UA Part 6, 6.2.2: application instance certificates (RSA) sign and encrypt with their key.
_OPCUA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,
    key_encipherment=True,
    data_encipherment=True,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _host_name(host: str, who: str) -> x509.GeneralName:
    """An IP SAN for an IP literal, else a DNS SAN (IDNA-encoded, lower case)."""
    if not host:
        raise CaError(f"{who}: empty host name")
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return x509.DNSName(host.encode("idna").decode("ascii").lower())
    except (UnicodeError, ValueError) as err:
        raise CaError(f"{who}: {host!r} is not a valid host name") from err


def check_csr(csr_pem: bytes) -> None:
    """Raise CsrRefused unless ``issue_client`` would accept this CSR (call it before spending an
    enrollment token, so a bad CSR does not burn it)."""
    _csr_public_key(csr_pem)


def _csr_public_key(csr_pem: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as err:
        raise CsrRefused(f"not a PEM certificate signing request: {err}") from err
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError) as err:  # e.g. an algorithm cryptography cannot check
        raise CsrRefused(f"CSR signature cannot be checked: {err}") from err
    if not valid:
        raise CsrRefused("CSR signature does not verify (the CSR was altered, or not signed by its key)")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise CsrRefused(f"EC key on {key.curve.name}: only P-256 (secp256r1) is accepted")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if not _MIN_RSA_BITS <= key.key_size <= _MAX_RSA_BITS:
            raise CsrRefused(f"RSA key of {key.key_size} bits: {_MIN_RSA_BITS}-{_MAX_RSA_BITS} bits accepted")
        return key
    raise CsrRefused(f"{type(key).__name__.removeprefix('_')}: only EC P-256 or RSA >= 2048 keys are accepted")


def init_ca(directory: Path, *, name: str = "gasiot utility CA", days: int = 3650) -> CertificateAuthority:
    """Create a CA in ``directory`` (created mode 0700 if missing).  Refuses a directory that
    already holds a CA key: replacing it would orphan every certificate issued under it."""
    directory = Path(directory)
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise CaError(f"cannot create CA directory {directory}: {err.strerror or err}") from err
    if key_path.exists() or cert_path.exists():
        raise CaError(f"{directory} already holds a CA ({CA_KEY_FILE}/{CA_CERT_FILE}); refusing to overwrite it")
    key_pem = generate_key_pem()
    write_private_pem(key_path, key_pem)  # O_EXCL + link: exactly one init wins a race
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_random_serial())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=_positive(days)))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_public_pem(cert_path, cert.public_bytes(serialization.Encoding.PEM), overwrite=False)
    ca = CertificateAuthority(directory, key, cert)
    with closing(sqlite3.connect(directory / CA_DB_FILE)) as conn:
        conn.executescript(_SCHEMA)
    ca.crl_pem()  # an (empty) CRL from the start: a server checking CRLs needs one to accept anyone
    return ca


def load_ca(directory: Path) -> CertificateAuthority:
    """Open the CA in ``directory``.  Refuses a key readable by group/other (KeyFileError naming
    the path), and a key that does not belong to the certificate."""
    directory = Path(directory)
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    key_pem = read_private_pem(key_path)  # refuses a key readable by group/other
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as err:
        raise CaError(f"cannot read the CA in {directory}: {err.strerror or err}") from err
    except (ValueError, TypeError) as err:
        raise CaError(f"the CA in {directory} is malformed: {err}") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"key file {key_path} is not an EC private key")
    if key.public_key() != cert.public_key():
        raise CaError(f"{key_path} does not belong to {cert_path}")
    with closing(sqlite3.connect(directory / CA_DB_FILE)) as conn:
        conn.executescript(_SCHEMA)
    return CertificateAuthority(directory, key, cert)

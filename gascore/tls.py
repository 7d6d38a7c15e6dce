"""TLS for every gasiot link: contexts that are secure by default, and the files behind them.

Python's ``ssl`` (OpenSSL 3.0 here) has no SM2/SM4 cipher suites, so TLS uses ECDSA P-256 (or RSA)
certificates and standard TLS 1.2/1.3 suites; SM2/SM3/SM4 stay at the application layer (batch
signatures, optional payload encryption).

- ``server_context``/``client_context``: TLS 1.2 minimum, no compression, no renegotiation, only
  ECDHE with AES-GCM or ChaCha20-Poly1305 for TLS 1.2 (TLS 1.3 suites are all AEAD).  The client
  always verifies the server and its host name; the server verifies client certificates against
  ``client_ca`` when given, and checks the leaf against a CRL when ``crl_file`` is given.
- ``reload_crl``: adds a newer CRL to a live server context; OpenSSL then uses, of the CRLs it holds
  for an issuer, the one with the latest thisUpdate, so the next full handshake of a revoked client
  fails without a restart.  ``cloud.ca`` makes thisUpdate strictly increasing for this reason.
  Every reload keeps the older CRLs in memory (a few hundred bytes each) until the process restarts.
- A revoked client can still *resume* a TLS 1.2 session it established before the revocation
  (OpenSSL does not re-verify resumed sessions, and Python cannot switch the server's session cache
  off); TLS 1.3 tickets are disabled whenever client certificates are verified.  The handshake check
  is therefore the outer wall: the cloud must also check, per request, the peer certificate it gets
  from ``peer_certificate`` against the CA's revocation list (``cloud.ca.CertificateAuthority
  .client_identity``).  That check is what makes a revocation refuse the next batch at once, even
  on a connection that is already open.
- Private keys live in files of mode 0600 (``write_private_pem``, created with O_EXCL and moved
  into place atomically, never overwritten by accident); ``check_private_file`` refuses a key file
  readable by group or other, and every context builder runs it before loading a key.

Errors: ``TlsConfigError`` (a ``CryptoError``) for files that cannot make a context;
``KeyFileError`` for unsafe or unreadable private-key files.  Both are ``CryptoError``s.
"""

from __future__ import annotations

import os
import ssl
import stat
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gascore.crypto.errors import CryptoError, KeyFileError
from gascore.crypto.keys import KEY_FILE_MODE, write_file_atomically

if TYPE_CHECKING:
    from cryptography import x509

# The functions that make keys, CSRs and read certificates import `cryptography` themselves: the
# contexts (what a running gateway needs) are stdlib ssl, and `cryptography` costs ~10 MiB.

__all__ = [
    "PUBLIC_FILE_MODE",
    "TLS12_CIPHERS",
    "TlsConfigError",
    "cert_not_after",
    "check_private_file",
    "client_context",
    "generate_key_pem",
    "make_csr_pem",
    "peer_certificate",
    "read_private_pem",
    "reload_client_cert",
    "reload_crl",
    "server_context",
    "write_private_pem",
    "write_public_pem",
]

# ECDHE only (forward secrecy), AEAD only; aNULL/PSK excluded explicitly although none match today.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!PSK"
PUBLIC_FILE_MODE = 0o644
_MAX_KEY_FILE_BYTES = 64 * 1024
_NO_RESUMPTION_TICKETS = 0


class TlsConfigError(CryptoError):
    """A TLS context could not be built from the given files; the message names the file(s)."""


# ---- files ---------------------------------------------------------------------------------


def check_private_file(path: Path) -> None:
    """Refuse a private-key file that is missing, not a regular file, or readable/writable by group
    or other (startup check; the message names the path and the fix)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    _check_mode(path, st)


def read_private_pem(path: Path) -> bytes:
    """Read a private-key file after the same check as ``check_private_file``, made on the open
    descriptor (the file checked is the file read)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "rb") as f:
            _check_mode(path, os.fstat(f.fileno()))
            data = f.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file {path} is too large to be a key file")
    return data


def _check_mode(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"key file {path} has mode {stat.S_IMODE(st.st_mode):04o}, readable or writable by group/other; "
            f"run: chmod 600 {path}"
        )


def write_private_pem(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Store a private key (PEM) with mode 0600, atomically; refuses an existing file unless
    ``overwrite`` (the same discipline as ``gascore.crypto.write_key_file``)."""
    write_file_atomically(path, data, mode=KEY_FILE_MODE, overwrite=overwrite, what="key file")


def write_public_pem(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Store a certificate, chain or CRL (mode 0644), atomically: a reader sees the old file or the
    new one, never half of one.  Overwrites by default (renewal replaces a certificate)."""
    write_file_atomically(path, data, mode=PUBLIC_FILE_MODE, overwrite=overwrite, what="file")


def generate_key_pem() -> bytes:
    """A new ECDSA P-256 private key as unencrypted PKCS#8 PEM (store it with write_private_pem)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_csr_pem(key_pem: bytes, gateway_id: str) -> bytes:
    """A certificate signing request for ``gateway_id``, signed by the key in ``key_pem``.  The CA
    binds the certificate to the gateway id the enrollment token (or the renewing client
    certificate) names, whatever the CSR says; the CN here is only for people reading it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsConfigError("make_csr_pem expects an EC private key (from generate_key_pem)")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gateway_id)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def cert_not_after(cert: Path | bytes) -> datetime:
    """Expiry (UTC, aware) of the first certificate in a PEM file or PEM bytes."""
    from cryptography import x509

    try:
        pem = Path(cert).read_bytes() if isinstance(cert, Path) else cert
        return x509.load_pem_x509_certificate(pem).not_valid_after_utc
    except (OSError, ValueError) as exc:
        where = cert if isinstance(cert, Path) else "PEM data"
        raise TlsConfigError(f"cannot read a certificate from {where}: {exc}") from exc


# ---- contexts ------------------------------------------------------------------------------


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT


def _load_chain(ctx: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    check_private_file(key_file)
    try:
        ctx.load_cert_chain(certfile=cert_file, keyfile=key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(
            f"cannot load certificate {cert_file} with key {key_file} (missing, unreadable, or not a pair): {exc}"
        ) from exc


def _load_verify(ctx: ssl.SSLContext, path: Path, what: str) -> None:
    try:
        ctx.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load {what} {path}: {exc}") from exc


def server_context(
    cert_file: Path,
    key_file: Path,
    *,
    client_ca: Path | None = None,
    require_client_cert: bool = False,
    crl_file: Path | None = None,
) -> ssl.SSLContext:
    """The context for a TLS listener (``web.TCPSite(..., ssl_context=...)``).

    With ``client_ca``, client certificates are verified against it: required when
    ``require_client_cert``, else optional (a client without one is let in and must then
    authenticate otherwise, e.g. by API key).  With ``crl_file`` (PEM, needs ``client_ca``), a
    client whose certificate is revoked fails the handshake; refresh it with ``reload_crl``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    _load_chain(ctx, cert_file, key_file)
    if client_ca is None:
        if require_client_cert or crl_file is not None:
            raise TlsConfigError("require_client_cert and crl_file need client_ca (the CA that issues client certs)")
        return ctx
    _load_verify(ctx, client_ca, "client CA")
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    # A resumed session is not re-verified: no TLS 1.3 tickets (and no TLS 1.2 tickets) for clients
    # that authenticate by certificate, so a revocation reaches them at their next connection.
    ctx.num_tickets = _NO_RESUMPTION_TICKETS
    ctx.options |= ssl.OP_NO_TICKET
    if crl_file is not None:
        _load_verify(ctx, crl_file, "CRL")
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


def reload_crl(ctx: ssl.SSLContext, crl_file: Path) -> None:
    """Make a newer CRL effective for the next handshakes of a live server context, without a
    restart.  OpenSSL cannot remove the old CRL from the store; it keeps both and uses the one
    with the later thisUpdate (see the module docstring)."""
    if not ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF:
        raise TlsConfigError("reload_crl: this context does not check CRLs (build it with crl_file=...)")
    _load_verify(ctx, crl_file, "CRL")


def client_context(
    *,
    ca_file: Path | None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> ssl.SSLContext:
    """The context for connecting to a gasiot server (aiohttp: ``TCPConnector(ssl=ctx)``).

    Verifies the server's certificate and host name against ``ca_file`` (the utility CA), or the
    system store when ``ca_file`` is None.  Presents ``cert_file``/``key_file`` (both or neither)
    for mutual TLS."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    _harden(ctx)
    if ca_file is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        _load_verify(ctx, ca_file, "CA file")
    if (cert_file is None) != (key_file is None):
        raise TlsConfigError("client_context: give cert_file and key_file together, or neither")
    if cert_file is not None and key_file is not None:
        _load_chain(ctx, cert_file, key_file)
    return ctx


def reload_client_cert(ctx: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    """Present a renewed certificate on the next connections of a live client context (open
    connections keep the one they were made with)."""
    _load_chain(ctx, cert_file, key_file)


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> x509.Certificate | None:
    """The verified certificate the peer presented, or None (plain connection, or no certificate).
    In aiohttp: ``peer_certificate(request.transport.get_extra_info("ssl_object"))``."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509

    return x509.load_der_x509_certificate(der)

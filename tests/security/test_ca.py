"""The utility CA (cloud.ca) and the key/certificate files of gascore.tls, without sockets."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from security_pki import GW, Pki

from cloud.ca import (
    CA_KEY_FILE,
    CaError,
    CertificateRefused,
    CsrRefused,
    check_csr,
    gateway_id_of,
    init_ca,
    load_ca,
)
from gascore.crypto import CryptoError, KeyFileError
from gascore.tls import (
    cert_not_after,
    check_private_file,
    client_context,
    generate_key_pem,
    make_csr_pem,
    read_private_pem,
    server_context,
    write_private_pem,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, *, cn: str) -> bytes:
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("cloud.example.com"),
                    x509.UniformResourceIdentifier("urn:gasiot:gateway:gw-someone-else"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


# ---- the CA itself ------------------------------------------------------------------------


def test_init_creates_an_owner_only_key_and_a_proper_ca_certificate(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca", name="Example Gas Co CA")
    assert _mode(tmp_path / "ca" / CA_KEY_FILE) == 0o600
    assert _mode(tmp_path / "ca") == 0o700
    cert = ca.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Example Gas Co CA"
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign and not usage.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(cert)  # self-signed
    assert cert.not_valid_after_utc - datetime.now(UTC) > timedelta(days=3640)
    assert ca.crl_path.exists()  # an empty CRL from the start


def test_init_refuses_to_overwrite_an_existing_ca(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    key_before = (tmp_path / "ca" / CA_KEY_FILE).read_bytes()
    with pytest.raises(CaError, match="already holds a CA"):
        init_ca(tmp_path / "ca")
    assert (tmp_path / "ca" / CA_KEY_FILE).read_bytes() == key_before
    assert load_ca(tmp_path / "ca").certificate == ca.certificate


def test_load_refuses_a_key_readable_by_others(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    key = tmp_path / "ca" / CA_KEY_FILE
    for mode in (0o644, 0o640, 0o604, 0o660):
        key.chmod(mode)
        with pytest.raises(KeyFileError, match=rf"{key}.*mode {mode:04o}.*chmod 600"):
            load_ca(tmp_path / "ca")
    key.chmod(0o600)
    load_ca(tmp_path / "ca")


def test_load_refuses_a_key_that_is_not_the_certificates(tmp_path: Path) -> None:
    init_ca(tmp_path / "a")
    init_ca(tmp_path / "b")
    (tmp_path / "a" / CA_KEY_FILE).unlink()
    write_private_pem(tmp_path / "a" / CA_KEY_FILE, (tmp_path / "b" / CA_KEY_FILE).read_bytes())
    with pytest.raises(CaError, match="does not belong"):
        load_ca(tmp_path / "a")


# ---- client certificates --------------------------------------------------------------------


def test_a_csr_asking_for_foreign_names_yields_a_certificate_bound_to_the_gateway(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = pki.ca.issue_client(_csr(key, cn="cloud.example.com"), GW)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    cert.verify_directly_issued_by(pki.ca.certificate)
    assert cert.public_key() == key.public_key()
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GW)])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(f"urn:gasiot:gateway:{GW}")]
    assert gateway_id_of(cert) == GW
    # Nothing the CSR asked for: no CA bit, no server use.
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.key_encipherment
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = pki.ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    # Serial: random 128 bits, reported as 32 hex digits; expiry as asked (90 days by default).
    assert issued.serial == f"{cert.serial_number:032x}" and len(issued.serial) == 32
    assert issued.not_after == cert.not_valid_after_utc
    assert timedelta(days=89) < issued.not_after - datetime.now(UTC) <= timedelta(days=90)


def test_serials_are_random_and_distinct(pki: Pki) -> None:
    csr = make_csr_pem(generate_key_pem(), GW)
    serials = {pki.ca.issue_client(csr, GW).serial for _ in range(20)}
    assert len(serials) == 20
    assert {s[0] for s in serials} != {"0"}  # not a counter


@pytest.mark.parametrize(
    ("make_key", "message"),
    [
        (lambda: ec.generate_private_key(ec.SECP384R1()), "only P-256"),
        (lambda: rsa.generate_private_key(65537, 1024), "RSA key of 1024 bits"),
        (ed25519.Ed25519PrivateKey.generate, "only EC P-256 or RSA"),
    ],
    ids=["p384", "rsa1024", "ed25519"],
)
def test_unacceptable_keys_are_refused(pki: Pki, make_key: object, message: str) -> None:
    key = make_key()  # type: ignore[operator]
    with pytest.raises(CsrRefused, match=message):
        check_csr(_csr(key, cn=GW))  # before the enrollment token is spent
    with pytest.raises(CsrRefused, match=message):
        pki.ca.issue_client(_csr(key, cn=GW), GW)
    assert pki.ca.issued() == []


def test_rsa_2048_is_accepted(pki: Pki) -> None:
    issued = pki.ca.issue_client(_csr(rsa.generate_private_key(65537, 2048), cn=GW), GW)
    assert gateway_id_of(x509.load_pem_x509_certificate(issued.cert_pem)) == GW


def test_a_csr_with_a_bad_signature_is_refused(pki: Pki) -> None:
    der = bytearray(
        x509.load_pem_x509_csr(make_csr_pem(generate_key_pem(), GW)).public_bytes(serialization.Encoding.DER)
    )
    der[-5] ^= 0x01  # inside the signature's last integer
    pem = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrRefused, match="signature does not verify"):
        pki.ca.issue_client(pem, GW)
    with pytest.raises(CsrRefused, match="not a PEM certificate signing request"):
        pki.ca.issue_client(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", GW)


@pytest.mark.parametrize("bad", ["", "-gw", "gw/1", "gw 1", "x" * 65, "gw:1"])
def test_invalid_gateway_ids_are_refused(pki: Pki, bad: str) -> None:
    with pytest.raises(CaError, match="gateway id"):
        pki.ca.issue_client(make_csr_pem(generate_key_pem(), GW), bad)


def test_a_certificate_never_outlives_the_ca(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca", days=30)
    issued = ca.issue_client(make_csr_pem(generate_key_pem(), GW), GW, days=90)
    assert issued.not_after == ca.certificate.not_valid_after_utc


# ---- server certificates --------------------------------------------------------------------


def test_server_certificate_names_and_usage(pki: Pki) -> None:
    cert_pem, key_pem = pki.ca.issue_server(["cloud.example.com", "localhost"], ["127.0.0.1", "::1"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(pki.ca.certificate)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["cloud.example.com", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert gateway_id_of(cert) is None
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.public_key() == cert.public_key()
    assert timedelta(days=364) < cert.not_valid_after_utc - datetime.now(UTC) <= timedelta(days=365)


def test_server_certificate_needs_valid_names(pki: Pki) -> None:
    with pytest.raises(CaError, match="at least one"):
        pki.ca.issue_server([], [])
    with pytest.raises(CaError, match="not an IP address"):
        pki.ca.issue_server([], ["localhost"])
    with pytest.raises(CaError, match="empty host name"):
        pki.ca.issue_server([""], [])
    with pytest.raises(CaError, match="lists, not strings"):
        pki.ca.issue_server("localhost", [])


# ---- revocation ---------------------------------------------------------------------------


def _crl(pki: Pki) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(pki.ca.crl_path.read_bytes())


def test_revocation_is_recorded_and_published_in_a_signed_crl(pki: Pki) -> None:
    a, b = (pki.ca.issue_client(make_csr_pem(generate_key_pem(), GW), GW) for _ in range(2))
    before = _crl(pki)
    assert len(before) == 0
    assert pki.ca.revoke(a.serial, "keyCompromise")
    assert pki.ca.is_revoked(a.serial) and not pki.ca.is_revoked(b.serial)
    assert pki.ca.is_revoked(a.serial.upper()) and pki.ca.is_revoked("0x" + a.serial)
    crl = _crl(pki)
    assert crl.is_signature_valid(pki.ca.certificate.public_key())  # type: ignore[arg-type]
    assert crl.issuer == pki.ca.certificate.subject
    entry = crl.get_revoked_certificate_by_serial_number(int(a.serial, 16))
    assert entry is not None and crl.get_revoked_certificate_by_serial_number(int(b.serial, 16)) is None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    assert crl.next_update_utc is not None
    assert timedelta(days=3) < crl.next_update_utc - datetime.now(UTC) <= timedelta(days=4)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    # OpenSSL picks the CRL with the latest thisUpdate: each one is later, and none in the future.
    assert before.last_update_utc < crl.last_update_utc <= datetime.now(UTC)
    assert pki.ca.crl_pem() == pki.ca.crl_path.read_bytes()  # fresh enough: not re-signed


def test_a_burst_of_revocations_keeps_this_update_increasing_and_in_the_past(pki: Pki) -> None:
    issued = [pki.ca.issue_client(make_csr_pem(generate_key_pem(), GW), GW) for _ in range(5)]
    updates = []
    for cert in issued:
        pki.ca.revoke(cert.serial)
        updates.append(_crl(pki).last_update_utc)
    assert updates == sorted(set(updates))
    assert updates[-1] <= datetime.now(UTC)
    assert len(_crl(pki)) == 5
    assert pki.ca.revoke(issued[0].serial) is False  # already revoked: no change
    assert len(_crl(pki)) == 5


def test_revocation_errors(pki: Pki) -> None:
    issued = pki.ca.issue_client(make_csr_pem(generate_key_pem(), GW), GW)
    with pytest.raises(CaError, match="was issued by this CA"):
        pki.ca.revoke("0123456789abcdef0123456789abcdef")
    with pytest.raises(CaError, match="not hexadecimal"):
        pki.ca.revoke("not-a-serial")
    with pytest.raises(CaError, match="revocation reason 'removeFromCRL'"):
        pki.ca.revoke(issued.serial, "removeFromCRL")
    assert not pki.ca.is_revoked(issued.serial)


def test_another_process_sees_a_revocation_at_once(pki: Pki) -> None:
    issued = pki.ca.issue_client(make_csr_pem(generate_key_pem(), GW), GW)
    cloud_view = load_ca(pki.ca.directory)  # e.g. the running cloud; `gasiot keys revoke` is pki.ca
    assert not cloud_view.is_revoked(issued.serial)
    pki.ca.revoke(issued.serial)
    assert cloud_view.is_revoked(issued.serial)


def test_revoke_gateway_and_register(pki: Pki) -> None:
    csr = make_csr_pem(generate_key_pem(), GW)
    mine = [pki.ca.issue_client(csr, GW).serial for _ in range(2)]
    other = pki.ca.issue_client(csr, "gw-0002").serial
    assert sorted(pki.ca.revoke_gateway(GW)) == sorted(mine)
    records = {r.serial: r for r in pki.ca.issued()}
    assert all(records[s].revoked_at is not None and records[s].reason == "cessationOfOperation" for s in mine)
    assert records[other].revoked_at is None and records[other].kind == "client"
    assert [r.serial for r in pki.ca.issued(subject="gw-0002")] == [other]


def test_client_identity_is_the_per_request_check(pki: Pki, foreign_pki: Pki) -> None:
    csr = make_csr_pem(generate_key_pem(), GW)
    cert = x509.load_pem_x509_certificate(pki.ca.issue_client(csr, GW).cert_pem)
    assert pki.ca.client_identity(cert) == GW
    foreign = x509.load_pem_x509_certificate(foreign_pki.ca.issue_client(csr, GW).cert_pem)
    with pytest.raises(CertificateRefused, match="not issued by this CA"):
        pki.ca.client_identity(foreign)
    with pytest.raises(CertificateRefused, match="no client certificate"):
        pki.ca.client_identity(None)
    server = x509.load_pem_x509_certificate(pki.ca.issue_server(["localhost"], [])[0])
    with pytest.raises(CertificateRefused, match="names no gateway"):
        pki.ca.client_identity(server)
    pki.ca.revoke(f"{cert.serial_number:x}")
    with pytest.raises(CertificateRefused, match=f"of gateway {GW} is revoked"):
        pki.ca.client_identity(cert)


def test_crl_is_resigned_when_close_to_next_update(pki: Pki) -> None:
    old = _crl(pki)
    # A CRL that expires within a day, as if the cloud had not refreshed it for three days.
    stale = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(old.issuer)
        .last_update(old.last_update_utc)
        .next_update(datetime.now(UTC) + timedelta(hours=20))
        .sign(pki.ca._key, hashes.SHA256())
    )
    pki.ca.crl_path.write_bytes(stale.public_bytes(serialization.Encoding.PEM))
    fresh = x509.load_pem_x509_crl(pki.ca.crl_pem())
    assert fresh.next_update_utc is not None and fresh.next_update_utc - datetime.now(UTC) > timedelta(days=3)
    assert fresh.last_update_utc > old.last_update_utc
    assert pki.ca.crl_path.read_bytes() == pki.ca.crl_pem()


# ---- key files -------------------------------------------------------------------------------


def test_private_pem_is_0600_whatever_the_umask_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "gw.key"
    old = os.umask(0)
    try:
        write_private_pem(path, generate_key_pem())
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    first = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        write_private_pem(path, generate_key_pem())
    assert path.read_bytes() == first
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind
    write_private_pem(path, generate_key_pem(), overwrite=True)
    assert path.read_bytes() != first and _mode(path) == 0o600


def test_world_readable_key_files_are_refused_at_startup(pki: Pki, tmp_path: Path) -> None:
    server = pki.server()
    client = pki.client()
    check_private_file(server.key)
    server.key.chmod(0o644)
    client.key.chmod(0o640)
    with pytest.raises(KeyFileError, match=rf"key file {server.key} has mode 0644.*chmod 600 {server.key}"):
        check_private_file(server.key)
    with pytest.raises(KeyFileError, match=str(server.key)):
        server_context(server.cert, server.key)
    with pytest.raises(KeyFileError, match=str(client.key)):
        client_context(ca_file=pki.ca.cert_path, cert_file=client.cert, key_file=client.key)
    with pytest.raises(KeyFileError, match=str(client.key)):
        read_private_pem(client.key)
    with pytest.raises(KeyFileError, match="does not exist"):
        check_private_file(tmp_path / "missing.key")
    with pytest.raises(KeyFileError, match="not a regular file"):
        check_private_file(tmp_path)


def test_context_configuration_errors_name_the_files(pki: Pki, tmp_path: Path) -> None:
    server = pki.server()
    other = pki.server()
    with pytest.raises(CryptoError, match=rf"{server.cert} with key {other.key}"):
        server_context(server.cert, other.key)  # not a pair
    with pytest.raises(CryptoError, match="need client_ca"):
        server_context(server.cert, server.key, require_client_cert=True)
    with pytest.raises(CryptoError, match=f"client CA {tmp_path / 'nope.crt'}"):
        server_context(server.cert, server.key, client_ca=tmp_path / "nope.crt")
    with pytest.raises(CryptoError, match="together"):
        client_context(ca_file=None, cert_file=server.cert)


def test_cert_not_after_reads_the_expiry_for_renewal(pki: Pki, tmp_path: Path) -> None:
    client = pki.client()
    issued_after = x509.load_pem_x509_certificate(client.cert.read_bytes()).not_valid_after_utc
    assert cert_not_after(client.cert) == cert_not_after(client.cert.read_bytes()) == issued_after
    with pytest.raises(CryptoError, match=str(tmp_path / "missing.crt")):
        cert_not_after(tmp_path / "missing.crt")

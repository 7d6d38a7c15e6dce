"""OPC-UA application instance certificates issued by the utility CA (an ECDSA P-256 CA signing
RSA-2048 leaves): their contents, and a real Basic256Sha256/SignAndEncrypt session between our
OpcUaDriver and the simulated SCADA, each with a CA-issued certificate.  The driver trusts a
server by its exact certificate (``trusted_server_certificates``), not by its issuer: another
certificate from the same CA for the same application URI is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from security_pki import Pki

from cloud.ca import CaError, CertificateAuthority, format_serial
from drivers.opcua import OpcUaChannel, OpcUaDriver, OpcUaPoint, UntrustedServerError, fingerprint
from gascore.tls import write_private_pem, write_public_pem
from gasiot_sim.scada_opcua import APPLICATION_URI as SCADA_URI
from gasiot_sim.scada_opcua import ScadaSimServer

EDGE_URI = "urn:gasiot:edge"
FAST = {"timeout_s": 3.0, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}


def der_of(cert_pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(cert_pem).public_bytes(Encoding.DER)


def issue_scada_pki(ca: CertificateAuthority, pki_dir: Path) -> Path:
    """Put a CA-issued server certificate where the simulator looks for its own (it then uses it
    instead of making a self-signed one); returns the certificate path (DER)."""
    cert_pem, key_pem = ca.issue_opcua(SCADA_URI, ["localhost", "127.0.0.1"], server=True)
    pki_dir.mkdir(parents=True, exist_ok=True)
    write_public_pem(pki_dir / "scada-cert.der", der_of(cert_pem))
    write_private_pem(pki_dir / "scada-key.pem", key_pem)
    return pki_dir / "scada-cert.der"


@pytest.fixture
def edge_cert(pki: Pki) -> tuple[Path, Path]:
    """The gateway's CA-issued OPC-UA client certificate (PEM, as issued) and key."""
    cert_pem, key_pem = pki.ca.issue_opcua(EDGE_URI, ["localhost"], server=False)
    # asyncua picks the key's format by suffix: ".pem" is PEM, anything else is read as DER.
    cert, key = pki.root / "edge-opcua-cert.pem", pki.root / "edge-opcua-key.pem"
    write_public_pem(cert, cert_pem)
    write_private_pem(key, key_pem)
    return cert, key


@pytest.fixture
async def ca_sim(pki: Pki) -> AsyncIterator[ScadaSimServer]:
    pki_dir = pki.root / "scada-pki"
    issue_scada_pki(pki.ca, pki_dir)
    server = ScadaSimServer(seed=3, tick_s=None, security=True, pki_dir=pki_dir)
    await server.start()
    yield server
    await server.close()


def channel(sim: ScadaSimServer, cert: tuple[Path, Path], trusted: list[Path]) -> OpcUaChannel:
    return OpcUaChannel(
        endpoint=sim.endpoint,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        certificate=cert[0],
        private_key=cert[1],
        trusted_server_certificates=trusted,
        application_uri=EDGE_URI,
        **FAST,
    )


@pytest.mark.parametrize("server", [True, False])
def test_issue_opcua_certificate(pki: Pki, server: bool) -> None:
    cert_pem, key_pem = pki.ca.issue_opcua("urn:gasiot:edge:gw-1", ["gw-1.example", "10.0.0.7"], server=server)
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(pki.ca.certificate)
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:gasiot:edge:gw-1"]
    assert san.get_values_for_type(x509.DNSName) == ["gw-1.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    ku = usage.value
    assert ku.digital_signature and ku.content_commitment and ku.key_encipherment and ku.data_encipherment
    assert not ku.key_cert_sign and not ku.crl_sign and not ku.key_agreement
    eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    expected = (
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        if server
        else [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert eku == expected
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert b"PRIVATE KEY" in key_pem
    (record,) = pki.ca.issued(subject="urn:gasiot:edge:gw-1")
    assert (record.kind, record.serial) == ("opcua", format_serial(cert.serial_number))
    assert record.not_after == cert.not_valid_after_utc
    # Revocable like every other certificate of the register.
    assert pki.ca.revoke(record.serial, "keyCompromise")
    assert pki.ca.is_revoked(record.serial)


@pytest.mark.parametrize("uri", ["", "no-scheme", "urn:with space"])
def test_issue_opcua_refuses_a_bad_application_uri(pki: Pki, uri: str) -> None:
    with pytest.raises(CaError, match="is not an application URI"):
        pki.ca.issue_opcua(uri, ["localhost"], server=False)


def test_issue_opcua_refuses_a_string_for_hostnames(pki: Pki) -> None:
    with pytest.raises(CaError, match="hostnames is a list"):
        pki.ca.issue_opcua(EDGE_URI, "localhost", server=False)
    assert pki.ca.issued() == []


async def test_ca_issued_client_and_server_talk_basic256sha256(
    pki: Pki, ca_sim: ScadaSimServer, edge_cert: tuple[Path, Path]
) -> None:
    served = x509.load_der_x509_certificate(ca_sim.certificate_path.read_bytes())
    served.verify_directly_issued_by(pki.ca.certificate)  # the simulator kept the CA-issued one
    drv = OpcUaDriver(channel(ca_sim, edge_cert, [ca_sim.certificate_path]))
    try:
        await drv.connect()
        assert drv.session_security == "Basic256Sha256/SignAndEncrypt"
        flow = OpcUaPoint(node=ca_sim.node_id("Metering.Flow"))
        (sample,) = await drv.read(1, [("flow", flow)])
        assert sample.value == ca_sim.snapshot()["Metering.Flow"]
        await drv.write(1, OpcUaPoint(node=ca_sim.node_id("Outlet.PressureSetpoint")), 0.42)
        assert ca_sim.snapshot()["Outlet.PressureSetpoint"] == 0.42
    finally:
        await drv.close()
    assert drv.statistics.sessions == 1


async def test_a_ca_issued_server_not_in_the_trust_list_is_refused(
    pki: Pki, ca_sim: ScadaSimServer, edge_cert: tuple[Path, Path]
) -> None:
    # Same CA, same application URI, but not the certificate the server presents.
    other = issue_scada_pki(pki.ca, pki.root / "other-scada-pki")
    drv = OpcUaDriver(channel(ca_sim, edge_cert, [other]))
    served = fingerprint(ca_sim.certificate_path.read_bytes())
    try:
        with pytest.raises(UntrustedServerError, match="not in trusted_server_certificates") as err:
            await drv.connect()
    finally:
        await drv.close()
    assert err.value.fingerprint == served
    assert served in str(err.value)
    assert drv.statistics.sessions == 0

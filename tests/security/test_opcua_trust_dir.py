"""OPC-UA trust lists on disk (``trust_dir``), managed with ``gasiot keys trust | trusted | distrust``:
an unknown server is refused and its certificate kept in rejected/; trusting it from the CLI lets
the same running driver connect at its next attempt; distrusting it refuses it again; a trusted CA
admits the certificates it issued unless its CRL revokes them."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError
from security_pki import Pki

from cloud.ca import format_serial
from drivers.opcua import OpcUaChannel, OpcUaDriver, OpcUaPoint, UntrustedServerError
from drivers.opcua.trust_dir import TrustDirectory, TrustDirError, sha256_hex
from gascore.tls import write_private_pem, write_public_pem
from gasiot_sim.scada_opcua import APPLICATION_URI as SCADA_URI
from gasiot_sim.scada_opcua import ScadaSimServer

EDGE_URI = "urn:gasiot:edge"
FAST = {"timeout_s": 3.0, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}


def gasiot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gasiot", *args], capture_output=True, text=True, timeout=60)


def issue_server(pki: Pki, folder: Path) -> Path:
    cert_pem, key_pem = pki.ca.issue_opcua(SCADA_URI, ["localhost", "127.0.0.1"], server=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_public_pem(folder / "scada-cert.der", x509.load_pem_x509_certificate(cert_pem).public_bytes(Encoding.DER))
    write_private_pem(folder / "scada-key.pem", key_pem)
    return folder / "scada-cert.der"


@pytest.fixture
def edge_cert(pki: Pki) -> tuple[Path, Path]:
    cert_pem, key_pem = pki.ca.issue_opcua(EDGE_URI, ["localhost"], server=False)
    cert, key = pki.root / "edge-cert.pem", pki.root / "edge-key.pem"
    write_public_pem(cert, cert_pem)
    write_private_pem(key, key_pem)
    return cert, key


@pytest.fixture
async def scada(pki: Pki) -> AsyncIterator[ScadaSimServer]:
    pki_dir = pki.root / "scada-pki"
    issue_server(pki, pki_dir)
    server = ScadaSimServer(seed=3, tick_s=None, security=True, pki_dir=pki_dir)
    await server.start()
    yield server
    await server.close()


def channel(sim: ScadaSimServer, cert: tuple[Path, Path], trust_dir: Path) -> OpcUaChannel:
    return OpcUaChannel(
        endpoint=sim.endpoint,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        certificate=cert[0],
        private_key=cert[1],
        trust_dir=trust_dir,
        application_uri=EDGE_URI,
        **FAST,
    )


async def read_flow(drv: OpcUaDriver, sim: ScadaSimServer) -> object:
    (sample,) = await drv.read(1, [("flow", OpcUaPoint(node=sim.node_id("Metering.Flow")))])
    return sample.value


async def test_reject_then_trust_from_the_cli_then_distrust(
    pki: Pki, scada: ScadaSimServer, edge_cert: tuple[Path, Path]
) -> None:
    trust_dir = pki.root / "opcua-trust"
    served = sha256_hex(scada.certificate_path.read_bytes())
    drv = OpcUaDriver(channel(scada, edge_cert, trust_dir))
    try:
        with pytest.raises(UntrustedServerError, match="not in the trust list") as refused:
            await drv.connect()
        assert f"gasiot keys trust {trust_dir} {served[:16]}" in str(refused.value)
        # Kept for the technician, exactly the certificate the server presented.
        (rejected,) = (trust_dir / "rejected").iterdir()
        assert sha256_hex(rejected.read_bytes()) == served

        listing = gasiot("keys", "trusted", str(trust_dir), "--json")
        assert listing.returncode == 0, listing.stderr
        (row,) = json.loads(listing.stdout)
        assert (row["status"], row["fingerprint"], row["application_uri"]) == ("rejected", served, SCADA_URI)

        trusted = gasiot("keys", "trust", str(trust_dir), served[:12])
        assert trusted.returncode == 0, trusted.stderr
        assert served in trusted.stdout
        assert list((trust_dir / "rejected").iterdir()) == []

        # The same driver object, no restart: the next connection reads the directory again.
        assert await read_flow(drv, scada) == scada.snapshot()["Metering.Flow"]
        assert drv.session_security == "Basic256Sha256/SignAndEncrypt"
        await drv.close()

        distrusted = gasiot("keys", "distrust", str(trust_dir), served[:12])
        assert distrusted.returncode == 0, distrusted.stderr
        with pytest.raises(UntrustedServerError, match="distrusted"):
            await drv.connect()
        assert list((trust_dir / "rejected").iterdir()) == []  # a revoked one is not "rejected" again
        (row,) = json.loads(gasiot("keys", "trusted", str(trust_dir), "--json").stdout)
        assert row["status"] == "revoked"
    finally:
        await drv.close()


async def test_a_trusted_ca_admits_what_it_issued_until_its_crl_revokes_it(
    pki: Pki, scada: ScadaSimServer, edge_cert: tuple[Path, Path]
) -> None:
    trust_dir = pki.root / "opcua-trust"
    store = TrustDirectory(trust_dir)
    assert store.trust(pki.ca.cert_path).is_ca
    drv = OpcUaDriver(channel(scada, edge_cert, trust_dir))
    try:
        assert await read_flow(drv, scada) == scada.snapshot()["Metering.Flow"]
        await drv.close()

        served = x509.load_der_x509_certificate(scada.certificate_path.read_bytes())
        assert pki.ca.revoke(format_serial(served.serial_number), "keyCompromise")
        (trust_dir / "crl").mkdir(exist_ok=True)
        (trust_dir / "crl" / "utility.crl").write_bytes(pki.ca.crl_pem())
        with pytest.raises(UntrustedServerError, match="revoked by the CRL"):
            await drv.connect()
    finally:
        await drv.close()


def test_verdicts(pki: Pki, foreign_pki: Pki) -> None:
    store = TrustDirectory(pki.root / "trust")
    cert_pem, _ = pki.ca.issue_opcua(SCADA_URI, ["localhost"], server=True)
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(Encoding.DER)
    assert store.verdict(der).reason == "not in the trust list"

    store.trust(der)
    assert store.verdict(der).trusted
    now = dt.datetime.now(dt.UTC)
    assert "not valid now" in store.verdict(der, now=now + dt.timedelta(days=3650)).reason

    # Another CA with the same name does not stand in for ours.
    foreign_pem, _ = foreign_pki.ca.issue_opcua(SCADA_URI, ["localhost"], server=True)
    foreign_der = x509.load_pem_x509_certificate(foreign_pem).public_bytes(Encoding.DER)
    store.trust(pki.ca.cert_path)
    assert not store.verdict(foreign_der).trusted
    other_pem, _ = pki.ca.issue_opcua(SCADA_URI, ["localhost"], server=True)
    assert (
        "issued by trusted CA"
        in store.verdict(x509.load_pem_x509_certificate(other_pem).public_bytes(Encoding.DER)).reason
    )

    # Trusting twice keeps one file; distrust moves it.
    store.trust(der)
    assert len(list((store.root / "trusted").iterdir())) == 2
    store.distrust(sha256_hex(der)[:10])
    assert not store.verdict(der).trusted
    assert [e.status for e in store.entries() if e.fingerprint == sha256_hex(der)] == ["revoked"]


def test_find_needs_an_unambiguous_prefix(pki: Pki) -> None:
    store = TrustDirectory(pki.root / "trust")
    with pytest.raises(TrustDirError, match="at least 8 hex digits"):
        store.find("abc")
    with pytest.raises(TrustDirError, match="no certificate with fingerprint"):
        store.find("00000000")
    bad = pki.root / "trust" / "trusted" / "junk.der"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a certificate")
    with pytest.raises(TrustDirError, match=r"junk\.der is not a PEM or DER certificate"):
        store.entries()


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    result = gasiot("keys", "trust", str(tmp_path / "trust"), "deadbeefdeadbeef")
    assert result.returncode == 1
    assert "no certificate with fingerprint deadbeefdeadbeef" in result.stderr + result.stdout


def test_security_without_a_server_check_is_refused_at_load(tmp_path: Path) -> None:
    base = {
        "endpoint": "opc.tcp://127.0.0.1:4840",
        "security_policy": "Basic256Sha256",
        "security_mode": "SignAndEncrypt",
        "certificate": tmp_path / "c.der",
        "private_key": tmp_path / "k.pem",
    }
    with pytest.raises(ValidationError, match="needs `trust_dir` or `trusted_server_certificates`"):
        OpcUaChannel(**base)
    with pytest.raises(ValidationError, match="not both"):
        OpcUaChannel(**base, trust_dir=tmp_path, trusted_server_certificates=[tmp_path / "s.der"])
    assert OpcUaChannel(**base, accept_any_server_certificate=True).accept_any_server_certificate

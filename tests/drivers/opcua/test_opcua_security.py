"""Security against the simulated SCADA: Basic256Sha256 SignAndEncrypt with trusted certificates,
refusal of an untrusted server, certificate/URI mismatch, user/password login."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opcua_kit import EDGE_URI, Recorder, running

from drivers.base import Subscription
from drivers.opcua import (
    OpcUaChannel,
    OpcUaDriver,
    OpcUaPoint,
    SecurityError,
    UntrustedServerError,
    create_self_signed,
    fingerprint,
)
from gasiot_sim.scada_opcua import ScadaSimServer
from support.wait import eventually

FAST = {"timeout_s": 3.0, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}


@pytest.fixture
async def secure_sim(tmp_path: Path) -> AsyncIterator[ScadaSimServer]:
    server = ScadaSimServer(seed=3, tick_s=None, security=True, pki_dir=tmp_path / "scada-pki")
    await server.start()
    yield server
    await server.close()


def secure_channel(sim: ScadaSimServer, cert: tuple[Path, Path], trusted: list[Path], **kw: object) -> OpcUaChannel:
    return OpcUaChannel(
        endpoint=sim.endpoint,
        security_policy="Basic256Sha256",
        security_mode=kw.pop("mode", "SignAndEncrypt"),
        certificate=cert[0],
        private_key=cert[1],
        trusted_server_certificates=trusted,
        **{**FAST, **kw},
    )


@pytest.mark.parametrize("mode", ["SignAndEncrypt", "Sign"])
async def test_basic256sha256_with_a_trusted_server(
    secure_sim: ScadaSimServer, gateway_cert: tuple[Path, Path], recorder: Recorder, mode: str
) -> None:
    drv = OpcUaDriver(secure_channel(secure_sim, gateway_cert, [secure_sim.certificate_path], mode=mode))
    flow = OpcUaPoint(node=secure_sim.node_id("Metering.Flow"), sampling_interval_ms=100)
    async with running(drv, [Subscription("gs1", 1, (("flow", flow),))], recorder):
        await eventually(lambda: bool(recorder.samples["flow"]), timeout=10, what="a value over the secure channel")
        assert drv.session_security == f"Basic256Sha256/{mode}"
        await secure_sim.tick(60.0)
        value = secure_sim.snapshot()["Metering.Flow"]
        await eventually(lambda: recorder.has("flow", lambda s: s.value == value), timeout=5, what="a change")
        (sample,) = await drv.read(1, [("flow", flow)])
        assert sample.value == value
        await drv.write(1, OpcUaPoint(node=secure_sim.node_id("Outlet.PressureSetpoint")), 0.42)
        assert secure_sim.snapshot()["Outlet.PressureSetpoint"] == 0.42
    assert recorder.links == [(None, True, "connected")]


async def test_an_untrusted_server_is_refused(
    secure_sim: ScadaSimServer, gateway_cert: tuple[Path, Path], tmp_path: Path, recorder: Recorder
) -> None:
    impostor = create_self_signed(
        tmp_path / "other-cert.der",
        tmp_path / "other-key.pem",
        "urn:gasiot:sim:scada",
        hostnames=["127.0.0.1"],
        server=True,
    )
    drv = OpcUaDriver(secure_channel(secure_sim, gateway_cert, [impostor.certificate]))
    served = fingerprint(secure_sim.certificate_path.read_bytes())
    with pytest.raises(UntrustedServerError, match="not in trusted_server_certificates") as err:
        await drv.connect()
    assert err.value.fingerprint == served
    assert served in str(err.value)
    flow = OpcUaPoint(node=secure_sim.node_id("Metering.Flow"))
    async with running(drv, [Subscription("gs1", 1, (("flow", flow),))], recorder):
        # Every retry is refused again, but the link is reported down once.
        await eventually(lambda: drv.statistics.connect_failures >= 4, timeout=10, what="retries")
    assert drv.statistics.sessions == 0
    ((device, up, reason),) = recorder.links
    assert (device, up) == (None, False)
    assert "not in trusted_server_certificates" in reason and served in reason
    assert not recorder.samples


async def test_a_certificate_for_another_application_is_refused_before_connecting(
    secure_sim: ScadaSimServer, tmp_path: Path
) -> None:
    other = create_self_signed(tmp_path / "c.der", tmp_path / "k.pem", "urn:someone:else", hostnames=["127.0.0.1"])
    drv = OpcUaDriver(secure_channel(secure_sim, (other.certificate, other.private_key), [secure_sim.certificate_path]))
    with pytest.raises(SecurityError, match=f"is for urn:someone:else, not application_uri '{EDGE_URI}'"):
        await drv.connect()


async def test_no_matching_endpoint_is_a_clear_error(gateway_cert: tuple[Path, Path], sim: ScadaSimServer) -> None:
    # `sim` offers security None only.
    drv = OpcUaDriver(secure_channel(sim, gateway_cert, [], accept_any_server_certificate=True))
    with pytest.raises(SecurityError, match="offers no Basic256Sha256/SignAndEncrypt endpoint"):
        await drv.connect()


async def test_user_and_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sim = ScadaSimServer(seed=1, tick_s=None, users={"operator": "hunter2-secret"})
    await sim.start()
    inlet = OpcUaPoint(node=sim.node_id("Inlet.Pressure"))
    try:
        good = OpcUaDriver(OpcUaChannel(endpoint=sim.endpoint, username="operator", password="hunter2-secret", **FAST))
        (sample,) = await good.read(1, [("inlet", inlet)])
        assert sample.value == sim.snapshot()["Inlet.Pressure"]
        await good.close()
        bad = OpcUaDriver(OpcUaChannel(endpoint=sim.endpoint, username="operator", password="wrong-guess", **FAST))
        with pytest.raises(SecurityError, match="refused the session: Bad"):
            await bad.connect()
        anonymous = OpcUaDriver(OpcUaChannel(endpoint=sim.endpoint, **FAST))
        with pytest.raises(SecurityError, match="refused the session"):
            await anonymous.connect()
    finally:
        await sim.close()
    assert "hunter2-secret" not in caplog.text
    assert "wrong-guess" not in caplog.text

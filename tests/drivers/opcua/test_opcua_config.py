"""OPC-UA channel and point configuration: what is accepted, what is refused and why."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from drivers.opcua import OpcUaChannel, OpcUaPoint

SAMPLE = Path(__file__).parents[3] / "drivers" / "opcua" / "sample.yaml"
ENDPOINT = "opc.tcp://127.0.0.1:4840"
SECURE = {
    "security_policy": "Basic256Sha256",
    "security_mode": "SignAndEncrypt",
    "certificate": "cert.der",
    "private_key": "key.pem",
}


def test_sample_validates() -> None:
    doc = yaml.safe_load(SAMPLE.read_text())
    channel = OpcUaChannel.model_validate(doc["channel"])
    assert channel.secure
    points = {key: OpcUaPoint.model_validate(value) for key, value in doc["points"].items()}
    assert points["outlet_pressure"].server_deadband is not None
    assert points["volume"].mode == "poll"
    assert points["inlet_pressure"].node_id.Identifier == "Inlet.Pressure"


@pytest.mark.parametrize("node", ["ns=2;s=Inlet.Pressure", "ns=2;i=1001", "i=85", "ns=3;s=A/B C"])
def test_node_ids_that_parse(node: str) -> None:
    assert OpcUaPoint(node=node).node_id.to_string() == node


@pytest.mark.parametrize("node", ["Inlet.Pressure", "ns=x;i=1", "ns=2;i=abc", "ns=2;q=1"])
def test_bad_node_ids_are_refused_at_load(node: str) -> None:
    with pytest.raises(ValidationError, match="not an OPC-UA NodeId"):
        OpcUaPoint(node=node)


def test_point_defaults_and_limits() -> None:
    point = OpcUaPoint(node="ns=2;i=1")
    assert (point.mode, point.sampling_interval_ms, point.queue_size, point.timestamp) == (
        "subscribe",
        1000,
        1,
        "source",
    )
    with pytest.raises(ValidationError, match="percent deadband"):
        OpcUaPoint(node="ns=2;i=1", server_deadband={"type": "percent", "value": 150})
    with pytest.raises(ValidationError):
        OpcUaPoint(node="ns=2;i=1", queue_size=0)
    with pytest.raises(ValidationError):
        OpcUaPoint(node="ns=2;i=1", mode="push")
    with pytest.raises(ValidationError):
        OpcUaPoint(node="ns=2;i=1", deadband=1.0)  # the gateway's deadband belongs to the binding


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"security_mode": "Sign"}, "needs security_policy Basic256Sha256"),
        ({"security_policy": "Basic256Sha256"}, "needs security_mode Sign or SignAndEncrypt"),
        ({**SECURE, "certificate": None}, "needs `certificate` and `private_key`"),
        ({"trusted_server_certificates": ["s.der"]}, "trusted_server_certificates/trust_dir need"),
        ({"username": "op"}, "both `username` and `password`"),
        ({"reconnect_initial_s": 5, "reconnect_max_s": 1}, "reconnect_max_s"),
        ({"endpoint": "tcp://127.0.0.1:4840"}, "opc.tcp://host"),
        ({"endpoint": "opc.tcp://127.0.0.1:port"}, "bad port"),
    ],
)
def test_inconsistent_channels_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OpcUaChannel.model_validate({"endpoint": ENDPOINT, **fields})


def test_secure_channel_accepted() -> None:
    channel = OpcUaChannel(endpoint=ENDPOINT, **SECURE, trusted_server_certificates=["scada.der"])  # type: ignore[arg-type]
    assert channel.trusted_server_certificates == [Path("scada.der")]


def test_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    channel = OpcUaChannel(endpoint=ENDPOINT, username="operator", password="hunter2-secret")  # type: ignore[arg-type]
    logging.getLogger("test").warning("channel %s %r", channel, channel)
    for text in (repr(channel), str(channel), channel.model_dump_json(), caplog.text):
        assert "hunter2-secret" not in text
    assert channel.password is not None and channel.password.get_secret_value() == "hunter2-secret"


def test_credentials_in_the_endpoint_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValidationError) as err:
        OpcUaChannel(endpoint="opc.tcp://operator:hunter2-secret@127.0.0.1:4840")
    assert "username" in str(err.value)
    assert "hunter2-secret" not in str(err.value)

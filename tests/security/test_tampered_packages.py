"""A configuration or release whose bytes do not match the digest inside the cloud-signed command
is refused before anything is written or installed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edge import config_apply, upgrade
from edge.config import load_station
from support.station import station_dict, write_station


def test_a_configuration_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    path = write_station(
        tmp_path / "station.yaml",
        station_dict(cloud_url="http://127.0.0.1:9", data_dir=tmp_path / "edge", ports=[5020]),
    )
    station = load_station(path)
    original = path.read_bytes()
    text = path.read_text().replace("gw-test", "gw-evil")
    with pytest.raises(config_apply.ConfigRejected, match="does not match its SHA-256"):
        config_apply.stage(station, 2, hashlib.sha256(b"what the cloud signed").hexdigest(), text)
    assert path.read_bytes() == original and list(tmp_path.glob(".station.yaml.*")) == []


def test_a_release_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    package = b"PK\x03\x04 not the package the cloud signed"
    with pytest.raises(upgrade.UpgradeError, match="does not match the SHA-256"):
        upgrade.stage(tmp_path, "9.9.9", package, "0" * 64, "gasiot-9.9.9-py3-none-any.whl")
    assert not (tmp_path / "releases").exists()
    with pytest.raises(upgrade.UpgradeError, match="a gasiot wheel"):
        upgrade.stage(tmp_path, "9.9.9", package, hashlib.sha256(package).hexdigest(), "../../evil.whl")

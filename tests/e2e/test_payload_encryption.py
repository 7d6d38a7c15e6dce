"""Encrypted batch bodies (SM4-GCM under a per-gateway key agreed at enrollment) for links whose
TLS ends at a proxy: the cloud decrypts; the SM2 signature still covers the ciphertext."""

from __future__ import annotations

import secrets
from pathlib import Path

import aiohttp
import pytest

from drivers.backoff import Backoff
from edge.enroll import PAYLOAD_KEY_FILE, load_payload_key
from edge.store import SqliteStore
from edge.sync import SyncClient
from gascore.contract import GENESIS_DIGEST, ContractError, build_frame, decode_rows, parse_frame, payload_aad
from gascore.crypto import generate_signer, load_key_file
from gascore.records import Lane, Reading
from support.cloud import running_cloud
from support.gateway import enrolled_station
from support.station import station_dict


def rows(n: int) -> list[list[object]]:
    return [Reading("d", "p", 1_000 + i, float(i)).to_wire() for i in range(n)]


def test_encrypted_body_is_bound_to_key_and_place() -> None:
    key, signer = secrets.token_bytes(16), generate_signer("ed25519")
    frame = build_frame(
        signer=signer,
        gateway_id="gw",
        lane=Lane.TELEMETRY,
        seq=7,
        prev_digest=GENESIS_DIGEST,
        created_ms=1,
        rows=rows(5),
        codec="cbor+zstd+sm4gcm",
        payload_key=key,
    )
    parsed = parse_frame(frame.to_bytes())
    aad = payload_aad("gw", Lane.TELEMETRY, 7)
    assert decode_rows(parsed.body, parsed.header.codec, Lane.TELEMETRY, 5, payload_key=key, aad=aad) == rows(5)
    assert b'"p"' not in frame.body and b"\x61p" not in frame.body  # no cleartext point names
    for bad_key, bad_aad in (
        (secrets.token_bytes(16), aad),
        (key, payload_aad("gw", Lane.TELEMETRY, 8)),
        (key, payload_aad("other", Lane.TELEMETRY, 7)),
    ):
        with pytest.raises(ContractError, match="authenticate"):
            decode_rows(parsed.body, parsed.header.codec, Lane.TELEMETRY, 5, payload_key=bad_key, aad=bad_aad)
    with pytest.raises(ContractError, match="payload key"):
        decode_rows(parsed.body, parsed.header.codec, Lane.TELEMETRY, 5)


async def test_gateway_enrolled_with_encryption_syncs_and_the_cloud_decrypts(tmp_path: Path) -> None:
    async with running_cloud(tmp_path / "cloud.db") as cloud:
        data = station_dict(
            cloud_url=cloud.url,
            data_dir=tmp_path / "edge",
            ports=[9],
            gateway_id="gw-enc",
            sync={"codec": "cbor+zstd+sm4gcm"},
        )
        station = await enrolled_station(cloud, tmp_path / "station.yaml", data, payload_encryption=True)
        key_file = station.data_dir / PAYLOAD_KEY_FILE
        assert key_file.stat().st_mode & 0o077 == 0
        store = SqliteStore(station.data_dir / "gateway.db")
        store.append([Reading("dev0", "outlet_pressure", 1_000 + i, 3.0 + i / 100) for i in range(30)])
        sync = SyncClient(
            store=store,
            signer=load_key_file(station.key_file),
            gateway_id="gw-enc",
            cloud_url=cloud.url,
            codec="cbor+zstd+sm4gcm",
            max_batch_records=10,
            max_batch_age_s=0.01,
            timeout_s=5,
            backoff=Backoff(0.01, 0.02),
            payload_key=load_payload_key(key_file),
        )
        async with aiohttp.ClientSession() as http:
            await sync.drain(http)
        store.close()
        assert cloud.rows("SELECT count(*) FROM readings")[0][0] == 30
        # At rest the key is wrapped under the cloud's KEK: the database alone does not decrypt batches.
        (stored,) = cloud.rows("SELECT payload_key FROM gateways WHERE gateway_id='gw-enc'")[0]
        edge_key = load_payload_key(key_file)
        assert edge_key not in stored and len(stored) == 1 + 12 + 16 + 16
        assert cloud.ingestor.key_wrap.unwrap("gw-enc", stored) == edge_key

"""The ingest contract under attack: each bad batch is refused (or idempotent), stores nothing,
and the server keeps serving."""

from __future__ import annotations

import io
import struct

import aiohttp
import pytest

from gascore.contract import GENESIS_DIGEST, Frame, build_frame
from gascore.crypto import Signer, generate_signer
from gascore.records import Lane, Reading
from support.cloud import CloudHandle

GW = "gw-sec"  # the gateway the `enrolled` fixture (conftest.py) enrolls
UNAUTHENTICATED = {"error": "unauthenticated", "detail": "signature or gateway not recognised"}


async def token_for(http: aiohttp.ClientSession, cloud: CloudHandle, gateway_id: str = GW) -> str:
    async with http.post(
        f"{cloud.url}/v1/enrollment-tokens", json={"gateway_id": gateway_id}, headers=cloud.auth()
    ) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["token"])


async def enroll(
    http: aiohttp.ClientSession, cloud: CloudHandle, signer: Signer, token: str, gateway_id: str = GW
) -> aiohttp.ClientResponse:
    body = {
        "gateway_id": gateway_id,
        "token": token,
        "alg": signer.alg,
        "public_key": signer.public_key_bytes().hex(),
    }
    async with http.post(f"{cloud.url}/v1/enroll", json=body) as r:
        await r.read()
        return r


def readings(n: int, start_ts: int = 1_700_000_000_000) -> list[list[object]]:
    return [Reading("box", "outlet_pressure", start_ts + i, 3.0 + i / 100).to_wire() for i in range(n)]


def frame(
    signer: Signer,
    seq: int,
    prev: str,
    rows: list[list[object]],
    gateway_id: str = GW,
    lane: Lane = Lane.TELEMETRY,
) -> Frame:
    return build_frame(
        signer=signer,
        gateway_id=gateway_id,
        lane=lane,
        seq=seq,
        prev_digest=prev,
        created_ms=1_700_000_000_000,
        rows=rows,
        codec="cbor+zstd",
    )


async def post(http: aiohttp.ClientSession, cloud: CloudHandle, data: bytes) -> tuple[int, dict]:
    async with http.post(f"{cloud.url}/v1/batches", data=data) as r:
        return r.status, await r.json()


def stored(cloud: CloudHandle) -> int:
    return cloud.rows("SELECT count(*) FROM readings")[0][0]


async def test_valid_chain_is_stored_in_order(cloud, http, enrolled) -> None:
    f1 = frame(enrolled, 1, GENESIS_DIGEST, readings(5))
    status, body = await post(http, cloud, f1.to_bytes())
    assert (status, body["status"], body["seq"]) == (200, "stored", 1)
    assert body["digest"] == f1.header.digest()
    f2 = frame(enrolled, 2, f1.header.digest(), readings(3, 1_700_000_001_000))
    status, body = await post(http, cloud, f2.to_bytes())
    assert (status, body["status"]) == (200, "stored")
    assert stored(cloud) == 8


async def test_replayed_batch_is_acked_idempotently_and_not_stored_twice(cloud, http, enrolled) -> None:
    f1 = frame(enrolled, 1, GENESIS_DIGEST, readings(5))
    assert (await post(http, cloud, f1.to_bytes()))[0] == 200
    for _ in range(3):
        status, body = await post(http, cloud, f1.to_bytes())
        assert (status, body["status"], body["digest"]) == (200, "duplicate", f1.header.digest())
    assert stored(cloud) == 5


async def test_tampered_body_is_refused(cloud, http, enrolled) -> None:
    raw = bytearray(frame(enrolled, 1, GENESIS_DIGEST, readings(50)).to_bytes())
    raw[-5] ^= 0x01
    status, body = await post(http, cloud, bytes(raw))
    assert status == 400 and body["error"] == "malformed" and "digest" in body["detail"]
    assert stored(cloud) == 0


async def test_tampered_header_is_refused(cloud, http, enrolled) -> None:
    f = frame(enrolled, 1, GENESIS_DIGEST, readings(5))
    forged_header = f.header_bytes.replace(b'"count":5', b'"count":4')
    assert forged_header != f.header_bytes
    forged = Frame(f.header, forged_header, f.signature, f.body).to_bytes()
    status, body = await post(http, cloud, forged)
    assert (status, body) == (401, UNAUTHENTICATED)
    # a header re-signed by nobody: same header, signature bits flipped
    sig = bytearray(f.signature)
    sig[10] ^= 0xFF
    status, body = await post(http, cloud, Frame(f.header, f.header_bytes, bytes(sig), f.body).to_bytes())
    assert (status, body) == (401, UNAUTHENTICATED)
    assert stored(cloud) == 0
    assert cloud.ingestor.stats.refused == {"bad_signature": 2}


async def test_wrong_key_is_refused(cloud, http, enrolled) -> None:
    impostor = generate_signer(enrolled.alg)
    f = frame(impostor, 1, GENESIS_DIGEST, readings(5))
    status, body = await post(http, cloud, f.to_bytes())
    assert (status, body) == (401, UNAUTHENTICATED)

    class Forger:  # claims the enrolled key id, signs with another key
        alg = enrolled.alg
        key_id = enrolled.key_id

        def sign(self, message: bytes) -> bytes:
            return impostor.sign(message)

    forged = build_frame(
        signer=Forger(),
        gateway_id=GW,
        lane=Lane.TELEMETRY,
        seq=1,
        prev_digest=GENESIS_DIGEST,
        created_ms=1,
        rows=readings(5),
        codec="json",
    )
    status, body = await post(http, cloud, forged.to_bytes())
    assert (status, body) == (401, UNAUTHENTICATED)
    assert stored(cloud) == 0
    assert cloud.ingestor.stats.refused == {"bad_signature": 2}


async def test_unknown_gateway_gets_the_same_answer_as_a_bad_signature(cloud, http, enrolled, caplog) -> None:
    """An unauthenticated caller must not learn which gateway ids exist; the operator must."""
    unknown = await post(
        http, cloud, frame(enrolled, 1, GENESIS_DIGEST, readings(5), gateway_id="gw-nobody").to_bytes()
    )
    impostor = generate_signer(enrolled.alg)
    bad_sig = await post(http, cloud, frame(impostor, 1, GENESIS_DIGEST, readings(5)).to_bytes())
    assert unknown == bad_sig == (401, UNAUTHENTICATED)
    assert stored(cloud) == 0
    assert cloud.ingestor.stats.refused == {"unknown_gateway": 1, "bad_signature": 1}
    assert "'gw-nobody' is not enrolled" in caplog.text


async def test_gap_and_chain_breaks_are_refused_with_expected_seq(cloud, http, enrolled) -> None:
    f1 = frame(enrolled, 1, GENESIS_DIGEST, readings(2))
    await post(http, cloud, f1.to_bytes())
    status, body = await post(http, cloud, frame(enrolled, 3, f1.header.digest(), readings(2)).to_bytes())
    assert (status, body["error"], body["expected_seq"], body["last_digest"]) == (
        409,
        "gap",
        2,
        f1.header.digest(),
    )
    status, body = await post(http, cloud, frame(enrolled, 2, GENESIS_DIGEST, readings(2)).to_bytes())
    assert (status, body["error"], body["expected_seq"]) == (409, "chain", 2)
    other = frame(enrolled, 1, GENESIS_DIGEST, readings(3))
    status, body = await post(http, cloud, other.to_bytes())
    assert (status, body["error"], body["expected_seq"]) == (409, "conflict", 2)
    assert stored(cloud) == 2


async def test_malformed_and_oversized_bodies_get_json_errors(cloud, http, enrolled) -> None:
    for junk in (b"", b"hello", b"GSB1" + struct.pack(">I", 10**6), b"GSB1\x00\x00\x00\x02{}\x00\x00"):
        status, body = await post(http, cloud, junk)
        assert status == 400 and body["error"] == "malformed", junk
    async with http.post(f"{cloud.url}/v1/batches", data=io.BytesIO(b"x" * (9 * 1024 * 1024))) as r:
        assert r.status == 413
    # the server still works
    status, _ = await post(http, cloud, frame(enrolled, 1, GENESIS_DIGEST, readings(1)).to_bytes())
    assert status == 200


@pytest.mark.parametrize(
    "bad_row",
    [
        ["box", "p", "not-a-ts", 1.0, "good"],
        ["box", "p", 1, {"nested": [1, 2]}, "good"],
        ["box", "p", 1, "x" * 5000, "good"],
        ["box", "p", 1, 1.0, "excellent"],
        ["", "p", 1, 1.0, "good"],
        ["box", "p", 1, 1.0],
    ],
)
async def test_bad_rows_in_a_signed_batch_are_refused(cloud, http, enrolled, bad_row) -> None:
    status, body = await post(http, cloud, frame(enrolled, 1, GENESIS_DIGEST, [bad_row]).to_bytes())
    assert status == 400 and body["error"] == "malformed"
    assert stored(cloud) == 0
    # the lane did not move: the same seq with good rows is accepted
    status, _ = await post(http, cloud, frame(enrolled, 1, GENESIS_DIGEST, readings(1)).to_bytes())
    assert status == 200


async def test_enrollment_token_is_single_use_and_bound_to_gateway(cloud, http) -> None:
    token = await token_for(http, cloud, "gw-a")
    wrong_gw = await enroll(http, cloud, generate_signer(), token, gateway_id="gw-b")
    assert wrong_gw.status == 401
    first = await enroll(http, cloud, generate_signer(), token, gateway_id="gw-a")
    assert first.status == 201
    again = await enroll(http, cloud, generate_signer(), token, gateway_id="gw-a")
    assert again.status == 401
    junk = await enroll(http, cloud, generate_signer(), "get_not-a-real-token", gateway_id="gw-a")
    assert junk.status == 401


async def test_enroll_rejects_an_invalid_public_key(cloud, http) -> None:
    token = await token_for(http, cloud)
    body = {"gateway_id": GW, "token": token, "alg": "sm2-sm3", "public_key": "04" + "11" * 64}
    async with http.post(f"{cloud.url}/v1/enroll", json=body) as r:
        assert r.status == 400
    # the token was not burnt by the bad request
    assert (await enroll(http, cloud, generate_signer(), token)).status == 201


async def test_openapi_lists_every_route(cloud, http) -> None:
    from cloud.app import ROUTES

    async with http.get(f"{cloud.url}/openapi.json") as r:
        doc = await r.json()
    for route in ROUTES:
        assert route.method.lower() in doc["paths"][route.path]

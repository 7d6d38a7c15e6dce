"""Fixtures for the cloud tests: a real cloud on a free port, an HTTP client, an enrolled
gateway, and ``Batches``, which builds and posts signed frames for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gascore.contract import PROTOCOL_VERSION, BatchHeader, Codec, Frame, build_frame
from gascore.crypto import Signer, sm3_digest
from gascore.records import Lane
from support.cloud import CloudHandle, cloud_process, running_cloud

GW = "gw-sec"
T0 = 1_700_000_000_000


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[CloudHandle]:
    async with running_cloud(tmp_path / "cloud.db") as handle:
        yield handle


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def enroll_gateway(http: aiohttp.ClientSession, cloud: CloudHandle, signer: Signer, gateway_id: str) -> None:
    async with http.post(
        f"{cloud.url}/v1/enrollment-tokens", json={"gateway_id": gateway_id}, headers=cloud.auth()
    ) as r:
        assert r.status == 201, await r.text()
        token = (await r.json())["token"]
    body = {"gateway_id": gateway_id, "token": token, "alg": signer.alg, "public_key": signer.public_key_bytes().hex()}
    async with http.post(f"{cloud.url}/v1/enroll", json=body) as r:
        assert r.status == 201, await r.text()


@pytest.fixture
async def enrolled(cloud: CloudHandle, http: aiohttp.ClientSession, signer: Signer) -> Signer:
    await enroll_gateway(http, cloud, signer, GW)
    return signer


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    content_type: str


@dataclass
class Batches:
    """Signed frames from the enrolled gateway, posted to the cloud."""

    cloud: CloudHandle
    http: aiohttp.ClientSession
    signer: Signer
    gateway_id: str = GW

    def frame(
        self,
        seq: int,
        prev: str,
        rows: Sequence[list[Any]],
        *,
        lane: Lane = Lane.TELEMETRY,
        codec: Codec = "cbor+zstd",
        created_ms: int = T0,
    ) -> Frame:
        return build_frame(
            signer=self.signer,
            gateway_id=self.gateway_id,
            lane=lane,
            seq=seq,
            prev_digest=prev,
            created_ms=created_ms,
            rows=rows,
            codec=codec,
        )

    def raw_frame(self, seq: int, prev: str, body: bytes, count: int, *, lane: Lane, codec: Codec) -> Frame:
        """A correctly signed frame around any body: what a gateway with a bug (or a stolen key)
        could send."""
        header = BatchHeader(
            v=PROTOCOL_VERSION,
            gateway_id=self.gateway_id,
            lane=lane,
            seq=seq,
            prev_digest=prev,
            created_ms=T0,
            count=count,
            codec=codec,
            key_id=self.signer.key_id,
            sig_alg=self.signer.alg,
            body_digest=sm3_digest(body).hex(),
        )
        header_bytes = header.canonical()
        return Frame(header, header_bytes, self.signer.sign(header_bytes), body)

    async def post(self, frame: Frame | bytes) -> Reply:
        data = frame.to_bytes() if isinstance(frame, Frame) else frame
        async with self.http.post(f"{self.cloud.url}/v1/batches", data=data) as r:
            return Reply(r.status, await r.json(content_type=None), r.content_type)

    def count(self, table: str) -> int:
        return int(self.cloud.rows(f"SELECT count(*) FROM {table}")[0][0])

    async def get(self, path: str) -> Any:
        async with self.http.get(self.cloud.url + path, headers=self.cloud.auth()) as r:
            assert r.status == 200, await r.text()
            return await r.json()


@pytest.fixture
def batches(cloud: CloudHandle, http: aiohttp.ClientSession, enrolled: Signer) -> Batches:
    return Batches(cloud, http, enrolled)


@pytest.fixture
def cloud_url(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real `gasiot cloud serve` process on SQLite: (base URL, admin API key)."""
    with cloud_process(tmp_path) as (url, key, _):
        yield url, key

"""Two real `gasiot cloud serve` processes on one PostgreSQL database: gateways enrolled through
either, batches posted to both in turn and at once.  Every reading is stored exactly once, seqs
stay continuous, and two processes racing for the same seq end with one stored batch and the
contract's 409 conflict, decided by the database's lock on the lane row, not by process memory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from gascore.contract import GENESIS_DIGEST, Frame, build_frame
from gascore.crypto import Signer, generate_signer
from gascore.records import Lane
from support.cloud import cloud_process
from support.wait import eventually

pytestmark = pytest.mark.slow

T0 = 1_764_000_000_000  # 2025-11-24
GATEWAYS = 6
BATCHES = 10  # per gateway, besides the raced ones
ROWS = 100  # readings per batch
OVERLAP = 10  # readings of the previous batch each batch sends again (an edge restored from backup)
RACES = 4


@contextlib.contextmanager
def serve(db_url: str, tmp: Path, name: str) -> Iterator[str]:
    """One `gasiot cloud serve` process; yields its URL.  Both processes share the key files."""
    extra = ("--cloud-key-file", str(tmp / "cloud.key"), "--log-level", "WARNING")
    with cloud_process(tmp, db_url, name=name, extra=extra) as (url, _, _):
        yield url


async def enroll(http: aiohttp.ClientSession, token_from: str, enroll_at: str, key: str, gw: str, s: Signer) -> None:
    """The token is made by one process and spent at the other: one database behind both."""
    auth = {"Authorization": f"Bearer {key}"}
    async with http.post(f"{token_from}/v1/enrollment-tokens", json={"gateway_id": gw}, headers=auth) as r:
        assert r.status == 201, await r.text()
        token = (await r.json())["token"]
    body = {"gateway_id": gw, "token": token, "alg": s.alg, "public_key": s.public_key_bytes().hex()}
    async with http.post(f"{enroll_at}/v1/enroll", json=body) as r:
        assert r.status == 201, await r.text()
    async with http.post(f"{token_from}/v1/enroll", json=body) as r:  # the token was spent elsewhere
        assert r.status in (401, 403), await r.text()


def reading_rows(gw_index: int, batch: int, variant: int = 0) -> list[list[Any]]:
    """Readings (device, point, ts_ms, value, quality); batch n re-sends the last OVERLAP of n-1."""
    first = batch * ROWS - (OVERLAP if batch else 0)
    rows = []
    for i in range(first, (batch + 1) * ROWS):
        value: Any = [float(i) + variant / 10, i, i % 2 == 0, f"s{i}"][i % 4]
        rows.append([f"dev{i % 5}", f"p{gw_index}", T0 + i * 1000, value, "good"])
    return rows


def frame(s: Signer, gw: str, seq: int, prev: str, rows: list[list[Any]]) -> Frame:
    return build_frame(
        signer=s,
        gateway_id=gw,
        lane=Lane.TELEMETRY,
        seq=seq,
        prev_digest=prev,
        created_ms=T0,
        rows=rows,
        codec="cbor+zstd",
    )


async def post(http: aiohttp.ClientSession, url: str, f: Frame) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{url}/v1/batches", data=f.to_bytes()) as r:
        return r.status, await r.json(content_type=None)


async def test_two_cloud_processes_store_every_reading_once(pg_url: str, tmp_path: Path) -> None:
    with serve(pg_url, tmp_path, "a") as a, serve(pg_url, tmp_path, "b") as b:
        clouds = (a, b)
        key = (tmp_path / "admin.key").read_text().strip()
        signers = [generate_signer("sm2-sm3" if g % 2 else "ed25519") for g in range(GATEWAYS)]
        gws = [f"gw-mp-{g}" for g in range(GATEWAYS)]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            for g, (gw, s) in enumerate(zip(gws, signers, strict=True)):
                await enroll(http, clouds[g % 2], clouds[(g + 1) % 2], key, gw, s)

            async def run_gateway(g: int) -> str:
                """Post BATCHES batches in order, alternating between the processes; each batch
                is also re-sent to the other process, which must answer `duplicate`."""
                prev = GENESIS_DIGEST
                for n in range(BATCHES):
                    f = frame(signers[g], gws[g], n + 1, prev, reading_rows(g, n))
                    status, body = await post(http, clouds[(g + n) % 2], f)
                    assert (status, body["status"], body["ignored"]) == (200, "stored", OVERLAP if n else 0), body
                    status, body = await post(http, clouds[(g + n + 1) % 2], f)
                    assert (status, body["status"]) == (200, "duplicate"), body
                    prev = f.header.digest()
                return prev

            # All gateways at once, each through both processes.
            heads = await asyncio.gather(*(run_gateway(g) for g in range(GATEWAYS)))

            # Races: two different batches with the same next seq, one to each process at once.
            # A lock on the lane row, held here, makes both processes pass their own checks and
            # meet in the database: the loser is refused by the seq rule in its transaction.
            with psycopg.connect(pg_url, autocommit=True) as observer, psycopg.connect(pg_url) as holder:
                for race in range(RACES):
                    g = race % GATEWAYS
                    seq = BATCHES + 1 + race // GATEWAYS
                    rival = [frame(signers[g], gws[g], seq, heads[g], reading_rows(g, seq - 1, v)) for v in (0, 1)]
                    holder.execute("SELECT 1 FROM lanes WHERE gateway_id = %s FOR UPDATE", (gws[g],))

                    async def both_waiting(gw: str = gws[g]) -> bool:
                        row = observer.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND query LIKE '%%FROM lanes%%FOR UPDATE%%'",
                        ).fetchone()
                        return row is not None and row[0] == 2

                    posts = [asyncio.ensure_future(post(http, c, f)) for c, f in zip(clouds, rival, strict=True)]
                    await eventually(both_waiting, timeout=30, what="both processes waiting for the lane lock")
                    holder.commit()  # release the lane row
                    results = await asyncio.gather(*posts)
                    statuses = sorted(status for status, _ in results)
                    assert statuses == [200, 409], results
                    (refused,) = [body for status, body in results if status == 409]
                    assert refused["error"] == "conflict" and refused.get("retry") is True, refused
                    (won,) = [i for i, (status, _) in enumerate(results) if status == 200]
                    heads[g] = rival[won].header.digest()

            # What is stored: every reading once, every seq once, no gap.
            with psycopg.connect(pg_url) as db:
                for g, gw in enumerate(gws):
                    extra = len([r for r in range(RACES) if r % GATEWAYS == g])
                    last_seq = BATCHES + extra
                    seqs = [
                        r[0] for r in db.execute("SELECT seq FROM batches WHERE gateway_id = %s ORDER BY seq", (gw,))
                    ]
                    assert seqs == list(range(1, last_seq + 1))
                    lane = db.execute("SELECT last_seq, last_digest FROM lanes WHERE gateway_id = %s", (gw,)).fetchone()
                    assert lane == (last_seq, heads[g])
                    total, distinct, lo, hi = db.execute(
                        "SELECT count(*), count(DISTINCT (device, point, ts_ms)), min(ts_ms), max(ts_ms)"
                        " FROM readings WHERE gateway_id = %s",
                        (gw,),
                    ).fetchone() or (0, 0, 0, 0)
                    expected = (BATCHES + extra) * ROWS
                    assert (total, distinct) == (expected, expected)
                    assert (lo, hi) == (T0, T0 + (expected - 1) * 1000)  # no gap in the readings either

            # Both processes answer queries from the same data.
            auth = {"Authorization": f"Bearer {key}"}
            answers = []
            for c in clouds:
                async with http.get(f"{c}/v1/gateways/{gws[0]}/latest", headers=auth) as r:
                    assert r.status == 200, await r.text()
                    answers.append(await r.json())
            assert answers[0] == answers[1] and answers[0]

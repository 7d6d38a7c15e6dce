"""Cloud → edge commands: queued by an operator, fetched by the gateway's signed poll, verified
with the cloud key from enrollment, executed once, and the result seen in the cloud."""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
import pytest

from drivers.backoff import Backoff
from edge.downlink import CommandPoller, Outcome
from edge.enroll import CLOUD_KEY_FILE, load_cloud_verifier
from edge.store import SqliteStore
from edge.sync import SyncClient
from gascore.crypto import generate_signer, load_key_file
from gascore.downlink import Command, PollRequest, signed_command
from gascore.records import Lane
from support.cloud import CloudHandle, running_cloud
from support.gateway import enrolled_station
from support.http import serve_batches
from support.station import station_dict


async def queue(http: aiohttp.ClientSession, cloud: CloudHandle, gw: str, body: dict[str, object]) -> int:
    async with http.post(
        f"{cloud.url}/v1/gateways/{gw}/commands", json={"type": "alarm.ack", "body": body}, headers=cloud.auth()
    ) as r:
        assert r.status == 201, await r.text()
        return int((await r.json())["id"])


async def test_commands_round_trip_once_and_results_reach_the_cloud(tmp_path: Path) -> None:
    async with running_cloud(tmp_path / "cloud.db") as cloud:
        data = station_dict(cloud_url=cloud.url, data_dir=tmp_path / "edge", ports=[9], gateway_id="gw-dl")
        station = await enrolled_station(cloud, tmp_path / "station.yaml", data)
        assert (station.data_dir / CLOUD_KEY_FILE).exists()
        store = SqliteStore(station.data_dir / "gateway.db")
        seen: list[Command] = []

        async def ack(command: Command) -> Outcome:
            seen.append(command)
            return Outcome("done", f"acked {command.body['alarm_id']}")

        signer = load_key_file(station.key_file)
        poller = CommandPoller(
            store=store,
            signer=signer,
            cloud_key=load_cloud_verifier(station.data_dir / CLOUD_KEY_FILE),
            gateway_id="gw-dl",
            cloud_url=cloud.url,
            handlers={"alarm.ack": ack},
            emit=lambda e: None,
        )
        async with aiohttp.ClientSession() as http:
            ids = [await queue(http, cloud, "gw-dl", {"alarm_id": f"a{i}", "by": "张工"}) for i in range(3)]
            assert await poller.poll_once(http) == 3
            assert await poller.poll_once(http) == 0  # never twice
            assert [c.id for c in seen] == ids and seen[0].body["by"] == "张工"
            sync = SyncClient(
                store=store,
                signer=signer,
                gateway_id="gw-dl",
                cloud_url=cloud.url,
                codec="json",
                max_batch_records=100,
                max_batch_age_s=0.01,
                timeout_s=5,
                backoff=Backoff(0.01, 0.02),
            )
            await sync.drain(http)
            async with http.get(f"{cloud.url}/v1/gateways/gw-dl/commands", headers=cloud.auth()) as r:
                commands = (await r.json())["commands"]
        store.close()
        assert {c["status"] for c in commands} == {"done"}
        assert commands[0]["result"]["detail"].startswith("acked a")


async def test_tampered_or_forged_commands_are_refused(tmp_path: Path) -> None:
    async with running_cloud(tmp_path / "cloud.db") as cloud:
        data = station_dict(cloud_url=cloud.url, data_dir=tmp_path / "edge", ports=[9], gateway_id="gw-dl2")
        station = await enrolled_station(cloud, tmp_path / "station.yaml", data)
        store = SqliteStore(station.data_dir / "gateway.db")
        executed: list[Command] = []

        async def ack(command: Command) -> Outcome:
            executed.append(command)
            return Outcome("done")

        async def tampering(request: aiohttp.web.Request) -> aiohttp.web.Response:
            body = await request.read()
            async with (
                aiohttp.ClientSession() as s,
                s.post(f"{cloud.url}/v1/commands/poll", data=body, headers=dict(request.headers)) as r,
            ):
                reply = await r.json()
            reply["commands"][0]["command"]["body"]["by"] = "attacker"  # altered on the way
            cmd = Command(999, "gw-dl2", "alarm.ack", {"alarm_id": "x", "by": "evil"}, 1, "evil", 2**50, "n")
            reply["commands"].append(signed_command(cmd, generate_signer()))  # signed, but not by the cloud
            return aiohttp.web.json_response(reply)

        runner, proxy_url = await serve_batches(tampering, "/v1/commands/poll")
        async with aiohttp.ClientSession() as http:
            await queue(http, cloud, "gw-dl2", {"alarm_id": "a1", "by": "operator"})
            poller = CommandPoller(
                store=store,
                signer=load_key_file(station.key_file),
                cloud_key=load_cloud_verifier(station.data_dir / CLOUD_KEY_FILE),
                gateway_id="gw-dl2",
                cloud_url=proxy_url,
                handlers={"alarm.ack": ack},
                emit=lambda e: None,
            )
            assert await poller.poll_once(http) == 0
        await runner.cleanup()
        store.close()
        assert executed == [] and poller.refused == 2


async def test_polls_must_be_signed_by_the_gateway_and_fresh(tmp_path: Path) -> None:
    async with running_cloud(tmp_path / "cloud.db") as cloud:
        data = station_dict(cloud_url=cloud.url, data_dir=tmp_path / "edge", ports=[9], gateway_id="gw-dl3")
        station = await enrolled_station(cloud, tmp_path / "station.yaml", data)
        signer = load_key_file(station.key_file)

        async def poll(req: PollRequest, key: object) -> int:
            body = req.canonical()
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{cloud.url}/v1/commands/poll", data=body, headers={"Gasiot-Signature": key.sign(body).hex()}
                ) as r,
            ):  # type: ignore[attr-defined]
                return r.status

        now = time.time_ns() // 1_000_000
        assert await poll(PollRequest("gw-dl3", now, 0), signer) == 200
        assert await poll(PollRequest("gw-dl3", now, 0), generate_signer()) == 401
        assert await poll(PollRequest("gw-dl3", now - 10 * 60_000, 0), signer) == 401  # a replayed old poll
        assert await poll(PollRequest("gw-other", now, 0), signer) == 401


@pytest.mark.parametrize("body", [{"alarm_id": "a"}, {}])
async def test_commands_are_validated_when_queued(tmp_path: Path, body: dict[str, object]) -> None:
    async with running_cloud(tmp_path / "cloud.db") as cloud:
        data = station_dict(cloud_url=cloud.url, data_dir=tmp_path / "edge", ports=[9], gateway_id="gw-dl4")
        await enrolled_station(cloud, tmp_path / "station.yaml", data)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{cloud.url}/v1/gateways/gw-dl4/commands",
                json={"type": "alarm.ack", "body": body},
                headers=cloud.auth(),
            ) as r,
        ):
            assert r.status == 400 and "missing" in json.dumps(await r.json())


async def test_an_expired_command_is_refused_even_with_a_valid_signature(tmp_path: Path) -> None:
    from cloud.appkeys import CLOUD_SIGNER

    async with running_cloud(tmp_path / "cloud.db") as cloud:
        data = station_dict(cloud_url=cloud.url, data_dir=tmp_path / "edge", ports=[9], gateway_id="gw-dl4")
        station = await enrolled_station(cloud, tmp_path / "station.yaml", data)
        store = SqliteStore(station.data_dir / "gateway.db")
        executed: list[Command] = []

        async def ack(command: Command) -> Outcome:
            executed.append(command)
            return Outcome("done")

        async def held_back(request: aiohttp.web.Request) -> aiohttp.web.Response:
            # A command the cloud really signed, delivered after its expiry (held by a middlebox).
            stale = Command(5, "gw-dl4", "alarm.ack", {"alarm_id": "x", "by": "op"}, 1, "op", 1_000, "nonce-5")
            return aiohttp.web.json_response({"commands": [signed_command(stale, cloud.app[CLOUD_SIGNER])]})

        runner, proxy_url = await serve_batches(held_back, "/v1/commands/poll")
        async with aiohttp.ClientSession() as http:
            poller = CommandPoller(
                store=store,
                signer=load_key_file(station.key_file),
                cloud_key=load_cloud_verifier(station.data_dir / CLOUD_KEY_FILE),
                gateway_id="gw-dl4",
                cloud_url=proxy_url,
                handlers={"alarm.ack": ack},
                emit=lambda e: None,
            )
            assert await poller.poll_once(http) == 1
        await runner.cleanup()
        results = [e[4] for e in store.read_all(Lane.EVENTS) if e[1] == "command.result"]
        store.close()
        assert executed == []
        assert results[0]["status"] == "refused" and "expired" in results[0]["detail"]

"""The gateway's health surface: /metrics (Prometheus) and /healthz (JSON) served by a running
gateway, scraped over real HTTP on loopback and parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from drivers.backoff import Backoff
from edge.alarms.model import Alarm, AlarmState
from edge.config import load_station
from edge.device_status import DeviceStatus
from edge.health import LaneHealth
from edge.health_http import HealthContext, HealthServer, create_app
from edge.metrics import GatewayMetrics
from edge.runtime import Gateway
from edge.store import SqliteStore
from edge.sync import SyncClient
from gascore.crypto import generate_signer, write_key_file
from gascore.records import Event, EventLevel, Lane, Reading
from gasiot_sim.modbus_server import RegulatorSimServer
from support.cloud import running_cloud
from support.gateway import enrolled_station
from support.http import serve_batches
from support.station import station_dict, write_station
from support.wait import eventually

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def s_version(samples: Samples) -> str:
    (version,) = [dict(labels)["version"] for name, labels in samples if name == "gasiot_gateway_info"]
    return version


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(f"{url}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return parse(await r.text())


async def healthz(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{url}/healthz") as r:
        return r.status, await r.json()


# ---- a running gateway: real simulator, real cloud, real HTTP --------------------------------


async def test_endpoint_follows_polls_sync_and_a_cloud_outage(tmp_path: Path) -> None:
    sim = RegulatorSimServer(seed=3, tick_s=0.05)
    device_port = await sim.start()
    db = tmp_path / "cloud.db"
    data = station_dict(
        cloud_url="http://127.0.0.1:9",  # replaced below by the cloud's URL
        data_dir=tmp_path / "edge",
        ports=[device_port, 9],  # dev1: nothing listens
        poll_interval_s=0.05,
    )
    data["health"] = {"listen": "127.0.0.1:0", "max_sync_silence_s": 1.5}
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        async with aiohttp.ClientSession() as http:
            async with running_cloud(db) as cloud:
                cloud_port = cloud.port
                data["gateway"]["cloud_url"] = cloud.url
                station = await enrolled_station(cloud, tmp_path / "station.yaml", data)
                gateway = Gateway.build(station)
                store = gateway.store
                task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.5))
                await eventually(lambda: gateway.health_server is not None, what="the health endpoint")
                assert gateway.health_server is not None
                url = gateway.health_server.url
                assert url.startswith("http://127.0.0.1:")

                async def synced() -> bool:
                    status, body = await healthz(http, url)
                    return status == 200 and body["lanes"]["telemetry"]["last_ack_ms"] is not None

                await eventually(synced, what="/healthz ok with acknowledged telemetry")
                status, body = await healthz(http, url)
                assert (status, body["status"], body["reasons"], body["gateway"]) == (200, "ok", [], "gw-test")
                assert body["store"] == {"ok": True, "error": None}

                first = await scrape(http, url)
                polled = value(first, "gasiot_points_read_total", device="dev0")

                async def more_points() -> bool:
                    return value(await scrape(http, url), "gasiot_points_read_total", device="dev0") >= polled + 20

                await eventually(more_points, what="points read to grow with the polls")
                s = await scrape(http, url)
                assert value(s, "gasiot_gateway_info", gateway="gw-test", version=s_version(s)) == 1
                assert value(s, "gasiot_device_online", device="dev0") == 1
                assert value(s, "gasiot_device_online", device="dev1") == 0
                assert value(s, "gasiot_read_errors_total", device="dev1", kind="comm") >= 1
                assert value(s, "gasiot_read_errors_total", device="dev0", kind="comm") == 0
                assert value(s, "gasiot_points_read_total", device="dev1") == 0
                for lane in ("events", "telemetry"):
                    acked = value(s, "gasiot_sync_batches_total", lane=lane, result="acked")
                    assert acked >= 1
                    # every acknowledged upload is timed, and only those
                    assert value(s, "gasiot_sync_batch_seconds_count", lane=lane) == acked
                    assert value(s, "gasiot_sync_last_ack_timestamp_seconds", lane=lane) > 1e9
                assert value(s, "gasiot_records_acked_total", lane="telemetry") >= 1

            # ---- the cloud is gone: records wait, nothing is acknowledged
            async def degraded() -> bool:
                status, _ = await healthz(http, url)
                return status == 503

            await eventually(degraded, what="/healthz 503 once the cloud is silent past the threshold")
            _, body = await healthz(http, url)
            assert body["status"] == "degraded"
            assert any("max_sync_silence_s: 1.5" in r for r in body["reasons"]), body["reasons"]
            assert body["lanes"]["telemetry"]["buffered"] > 0 and body["lanes"]["telemetry"]["sync_lag_s"] > 1.5
            assert body["sync"]["error"] and body["sync"]["lag_s"] > 1.5
            assert body["devices"] == {"online": 1, "offline": 1, "unknown": 0, "offline_ids": ["dev1"]}
            # Nothing is acknowledged now, so the queue only grows: the scraped depth lies between
            # the row counts taken just before and just after the scrape.
            for lane in Lane:
                before = store.buffered(lane)
                s = await scrape(http, url)
                after = store.buffered(lane)
                assert before <= value(s, "gasiot_queue_depth", lane=lane.value) <= after
            assert value(s, "gasiot_sync_batches_total", lane="telemetry", result="failed") >= 1
            assert value(s, "gasiot_sync_lag_seconds", lane="telemetry") > 1.5
            assert value(s, "gasiot_queue_oldest_age_seconds", lane="telemetry") > 1.5

            # ---- back at the same address: synced again
            async with running_cloud(db, cloud_port):
                await eventually(synced, timeout=30, what="/healthz ok after the cloud came back")
                stop.set()
                await task
                task = None
            assert gateway.health_server is None
            with pytest.raises(aiohttp.ClientConnectionError):
                await healthz(http, url)
    finally:
        stop.set()
        if task is not None:
            await task
        await sim.stop()


# ---- the collector and /healthz on a store in a known state ----------------------------------


@dataclass
class FakeGateway:
    """What the health surface reads (edge.health.Observed), set by hand."""

    store: SqliteStore
    statuses: dict[str, DeviceStatus] = field(default_factory=dict)
    sync: Any = None
    local: Any = None
    started_ms: int = 1_000
    store_error: str | None = None
    store_failures: int = 0


def alarm(aid: str, priority: str, state: AlarmState) -> Alarm:
    return Alarm(aid, aid.split(".")[0], aid.split(".")[1], priority, "报警", "alarm", state=state, raised_ms=1)  # type: ignore[arg-type]


def frame(lane: Lane, seq: int, prev: str, rows: list[list[Any]]) -> tuple[bytes, str]:
    return f"{lane.value}-{seq}".encode(), f"{seq:064x}"


async def test_collector_reads_store_devices_rules_and_alarms(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gw.db", max_telemetry_rows=100)
    try:
        store.append(
            [Reading("d", "p", 1_000 + i, float(i)) for i in range(30)], [Event("d", "x", 1_000, EventLevel.INFO)]
        )
        batch = store.form_batch(Lane.TELEMETRY, 10, frame)
        assert batch is not None
        store.ack(Lane.TELEMETRY, batch.seq, now_ms=50_000)
        assert store.form_batch(Lane.TELEMETRY, 10, frame) is not None  # in flight while old rows are dropped
        store.append([Reading("d", "p", 2_000 + i, float(i)) for i in range(100)])  # past the bound: a gap
        assert store.counters()["telemetry_dropped_total"] > 0
        status = DeviceStatus("d", online=True, samples=42, failures=3, device_errors=2, errors=1, overruns=4)
        local = SimpleNamespace(
            rule_passes=7,
            rule_ticks=5,
            readings_evaluated=70,
            alarms=SimpleNamespace(
                alarms=lambda: [
                    alarm("d.hi", "high", AlarmState.ACTIVE_UNACKED),
                    alarm("d.lel", "critical", AlarmState.ACTIVE_ACKED),
                    alarm("d.lo", "high", AlarmState.CLEARED_UNACKED),  # condition gone: not active
                ]
            ),
        )
        gw = FakeGateway(store, {"d": status, "e": DeviceStatus("e")}, local=local, store_failures=2)
        metrics = GatewayMetrics("gw-a", gw, lambda: 60_000)
        other = GatewayMetrics("gw-b", FakeGateway(store), lambda: 60_000)  # a second registry: no collision

        server = HealthServer(create_app(HealthContext("gw-a", gw, metrics, 30.0, lambda: 60_000)), "127.0.0.1", 0)
        await server.start()
        try:
            async with aiohttp.ClientSession() as http:
                s = await scrape(http, server.url)
                for lane in Lane:  # exact, although telemetry has a gap and events are counted by ids
                    assert value(s, "gasiot_queue_depth", lane=lane.value) == store.buffered(lane)
                oldest = store.oldest_unsent_ms(Lane.TELEMETRY)
                assert oldest is not None and oldest > 1_000
                assert value(s, "gasiot_queue_oldest_age_seconds", lane="telemetry") == (60_000 - oldest) / 1000
                assert value(s, "gasiot_queue_oldest_age_seconds", lane="events") == 59.0
                assert value(s, "gasiot_sync_last_ack_timestamp_seconds", lane="telemetry") == 50.0
                assert ("gasiot_sync_last_ack_timestamp_seconds", (("lane", "events"),)) not in s
                assert value(s, "gasiot_sync_lag_seconds", lane="telemetry") == (60_000 - max(50_000, oldest)) / 1000
                assert value(s, "gasiot_sync_lag_seconds", lane="events") == 59.0  # since start (1 s), never acked
                assert value(s, "gasiot_points_read_total", device="d") == 42
                assert value(s, "gasiot_read_errors_total", device="d", kind="comm") == 3
                assert value(s, "gasiot_read_errors_total", device="d", kind="device") == 2
                assert value(s, "gasiot_read_errors_total", device="d", kind="internal") == 1
                assert value(s, "gasiot_poll_overruns_total", device="d") == 4
                assert value(s, "gasiot_device_online", device="d") == 1
                assert value(s, "gasiot_device_online", device="e") == 0
                assert value(s, "gasiot_rule_evaluations_total", trigger="readings") == 7
                assert value(s, "gasiot_rule_evaluations_total", trigger="timer") == 5
                assert value(s, "gasiot_rule_readings_total") == 70
                assert value(s, "gasiot_alarms_active", priority="critical") == 1
                assert value(s, "gasiot_alarms_active", priority="high") == 1
                assert value(s, "gasiot_alarms_active", priority="low") == 0
                assert value(s, "gasiot_store_write_errors_total") == 2
                c = store.counters()
                assert value(s, "gasiot_records_appended_total", lane="telemetry") == c["telemetry_appended_total"]
                assert value(s, "gasiot_records_acked_total", lane="telemetry") == 10
                assert value(s, "gasiot_telemetry_dropped_total") == c["telemetry_dropped_total"]
                assert value(s, "gasiot_sync_batches_total", lane="events", result="rejected") == 0

                status_code, body = await healthz(http, server.url)
                assert status_code == 503  # events have waited 59 s with no ack; the threshold is 30 s
                assert body["alarms"] == {"active": 2, "by_priority": {"low": 0, "medium": 0, "high": 1, "critical": 1}}
                assert [r.split(":")[0] for r in body["reasons"]] == ["sync"]
                assert body["devices"] == {"online": 1, "offline": 0, "unknown": 1, "offline_ids": []}

                gw.store_error = "OperationalError: disk I/O error"
                status_code, body = await healthz(http, server.url)
                assert status_code == 503 and "store: OperationalError: disk I/O error" in body["reasons"]
                assert body["store"] == {"ok": False, "error": "OperationalError: disk I/O error"}
        finally:
            await server.stop()
        second = parse(generate_latest(other.registry).decode())
        assert value(second, "gasiot_gateway_info", gateway="gw-b", version=s_version(second)) == 1
        assert not any(dict(labels).get("gateway") == "gw-a" for _, labels in second)
    finally:
        store.close()


def test_lane_lag_counts_from_the_latest_of_ack_start_and_arrival() -> None:
    assert LaneHealth(0, None, None).lag_s(10_000, 1_000) == 0.0  # nothing waits
    assert LaneHealth(5, 9_000, 2_000).lag_s(10_000, 1_000) == 1.0  # arrived after the last ack
    assert LaneHealth(5, 1_000, 8_000).lag_s(10_000, 1_000) == 2.0  # backlog, but acks flow
    assert LaneHealth(5, 500, None).lag_s(10_000, 4_000) == 6.0  # never acked: since start
    assert LaneHealth(5, 500, None).oldest_age_s(10_000) == 9.5


async def test_sync_reports_every_upload_attempt(tmp_path: Path) -> None:
    """The hook behind gasiot_sync_batches_total: rejected when the cloud refuses, failed when
    nothing answers."""
    store = SqliteStore(tmp_path / "gw.db")
    seen: list[tuple[Lane, str]] = []

    async def refuse(_: web.Request) -> web.Response:
        return web.json_response({"error": "nope"}, status=500)

    runner, url = await serve_batches(refuse)
    try:
        store.append([Reading("d", "p", 1, 1.0)])
        for cloud_url in (url, "http://127.0.0.1:9"):
            sync = SyncClient(
                store=store,
                signer=generate_signer("ed25519"),
                gateway_id="gw",
                cloud_url=cloud_url,
                codec="cbor+zstd",
                max_batch_records=10,
                max_batch_age_s=0.01,
                timeout_s=5,
                backoff=Backoff(0.01, 0.02),
                on_batch=lambda lane, result, seconds: seen.append((lane, result)) if seconds >= 0 else None,
            )
            async with aiohttp.ClientSession() as http:
                assert not await sync.sync_once(http, flush=True)
            assert sync.failing
    finally:
        await runner.cleanup()
        store.close()
    assert seen == [(Lane.TELEMETRY, "rejected"), (Lane.TELEMETRY, "failed")]


# ---- `gasiot edge run`: JSON logs, the endpoint, a clean stop ----------------------------------


def test_edge_run_logs_json_and_serves_health(tmp_path: Path) -> None:
    data = station_dict(cloud_url="http://127.0.0.1:9", data_dir=tmp_path / "edge", ports=[9])
    data["health"] = {"listen": "127.0.0.1:0"}
    station_file = write_station(tmp_path / "station.yaml", data)
    station = load_station(station_file)
    station.data_dir.mkdir(parents=True)
    write_key_file(generate_signer("ed25519"), station.key_file)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gasiot", "edge", "run", str(station_file), "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[dict[str, Any]] = []
    try:
        assert proc.stderr is not None
        url = None
        while url is None:
            line = proc.stderr.readline()  # blocks until the gateway logs; pytest-timeout bounds it
            assert line, f"gateway exited: {lines}"
            record = json.loads(line)  # every line is one JSON object
            lines.append(record)
            if record["msg"].startswith("health endpoint on "):
                url = record["msg"].split()[3]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as r:
            assert r.status == 200
            assert json.loads(r.read())["gateway"] == "gw-test"
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
            text = r.read().decode()
        assert 'gasiot_gateway_info{gateway="gw-test"' in text
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, rest
    lines += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert all(set(r) >= {"ts", "level", "logger", "msg"} and r["ts"].endswith("Z") for r in lines)
    assert any(r["logger"] == "edge.runtime" and "stopped" in r["msg"] for r in lines)

"""`gasiot demo`: simulated regulator boxes → one edge gateway → the cloud, all on this machine,
with a live table of what reaches the cloud and a loss summary at the end."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from rich.console import Console
from rich.live import Live
from rich.table import Table

from cloud.app import INGESTOR, create_app
from cloud.repository import SqliteRepository
from cloud.server import bound_port, create_api_key
from edge.config import load_station
from edge.enroll import enroll
from edge.runtime import Gateway
from gascore.records import Lane
from gasiot_sim.modbus_server import RegulatorSimServer

MODELS_DIR = Path(__file__).resolve().parents[1] / "configs" / "models"
RULES_DIR = Path(__file__).resolve().parents[1] / "configs" / "rules"
STATION_FILE = Path(__file__).resolve().parents[1] / "configs" / "stations" / "demo-station.yaml"
SCENARIOS = ("normal", "overpressure", "leak", "comm_loss")
SHOWN = ("inlet_pressure", "outlet_pressure", "flow", "box_methane", "slam_shut_closed", "door_open")


def station_yaml(cloud_url: str, ports: list[int], data_dir: Path) -> dict[str, Any]:
    """The demo station: the shipped example, pointed at this run's simulators and cloud."""
    template = yaml.safe_load(STATION_FILE.read_text(encoding="utf-8"))
    points = template["devices"][0]["points"]
    return {
        "gateway": {
            "id": "gw-demo-01",
            "name": "demo station",
            "cloud_url": cloud_url,
            "data_dir": str(data_dir),
        },
        "models": [str(MODELS_DIR)],
        "sync": {"max_batch_age_s": 0.5},
        "channels": [
            {
                "id": f"box{i + 1}-link",
                "driver": "modbus_tcp",
                "host": "127.0.0.1",
                "port": p,
                "timeout_s": 0.5,
            }
            for i, p in enumerate(ports)
        ],
        "devices": [
            {
                "id": f"rbox-{i + 1}",
                "model": "regulator_box",
                "channel": f"box{i + 1}-link",
                "unit_id": 1,
                "poll_interval_s": 0.5,
                "points": points,
            }
            for i in range(len(ports))
        ],
        "rules": {"packs": ["common", "regulator_box"], "pack_dirs": [str(RULES_DIR)]},
        "interlocks": [
            {
                "id": f"rbox-{i + 1}-gas-shutoff",
                "when": f"rbox-{i + 1}.box_methane.hihi",
                "action": {"device": f"rbox-{i + 1}", "point": "emergency_close", "value": True},
                "readback": {"point": "slam_shut_closed", "equals": True, "within_s": 10},
                "source": "demo: close the slam-shut at 50 %LEL",
            }
            for i in range(len(ports))
        ],
    }


def render(
    latest: list[dict[str, Any]], status: dict[str, Any], elapsed: float, alarms: list[dict[str, Any]] | None = None
) -> Table:
    table = Table(title=f"gasiot demo — values as stored in the cloud  (t={elapsed:.0f}s)")
    table.add_column("device")
    for point in SHOWN:
        table.add_column(point, justify="right")
    by_device: dict[str, dict[str, dict[str, Any]]] = {}
    for row in latest:
        by_device.setdefault(row["device"], {})[row["point"]] = row
    for device in sorted(by_device):
        cells = []
        for point in SHOWN:
            row = by_device[device].get(point)
            if row is None:
                cells.append("—")
            elif row["quality"] != "good":
                cells.append(f"[red]{row['quality']}[/red]")
            elif isinstance(row["value"], float):
                cells.append(f"{row['value']:.3f}")
            else:
                cells.append(str(row["value"]))
        table.add_row(device, *cells)
    lanes = status.get("lanes", {})
    table.caption = (
        f"telemetry seq {lanes.get('telemetry', {}).get('last_seq', 0)} · "
        f"events seq {lanes.get('events', {}).get('last_seq', 0)} · "
        f"readings stored {status.get('counts', {}).get('readings', 0)}"
        + "".join(
            f"\n[yellow]⚠ {a['device']}: {a['data'].get('message_zh', '')} / {a['data'].get('message_en', '')}[/yellow]"
            for a in (alarms or [])[-4:]
        )
    )
    return table


async def run_demo(*, seconds: float | None, boxes: int, workdir: Path | None) -> bool:
    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="gasiot-demo-")) if workdir is None else workdir
    tmp.mkdir(parents=True, exist_ok=True)
    repo = SqliteRepository(tmp / "cloud.db")
    admin_key = create_api_key(repo, "admin", "demo")
    app = create_app(repo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = bound_port(site)
    cloud_url = f"http://127.0.0.1:{port}"

    sims = [RegulatorSimServer(scenario=SCENARIOS[i % len(SCENARIOS)], seed=i + 1) for i in range(boxes)]
    ports = [await s.start() for s in sims]
    station_file = tmp / "station.yaml"
    station_file.write_text(yaml.safe_dump(station_yaml(cloud_url, ports, tmp / "edge"), allow_unicode=True))
    station = load_station(station_file)
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{cloud_url}/v1/enrollment-tokens", json={"gateway_id": "gw-demo-01"}) as r:
            token = (await r.json())["token"]
        await enroll(cloud_url=cloud_url, gateway_id="gw-demo-01", token=token, key_file=station.key_file)
        console.print(
            f"cloud {cloud_url} · {boxes} simulated regulator boxes · gateway enrolled (SM2) · files in {tmp}"
        )
        gateway = Gateway.build(station)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
        gw_task = asyncio.create_task(gateway.run(stop))
        started = loop.time()
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            while not stop.is_set():
                elapsed = loop.time() - started
                if seconds is not None and elapsed >= seconds:
                    stop.set()
                    break
                async with http.get(f"{cloud_url}/v1/gateways/gw-demo-01/latest") as r:
                    latest = (await r.json())["latest"]
                async with http.get(f"{cloud_url}/v1/gateways/gw-demo-01") as r:
                    status = await r.json()
                async with http.get(f"{cloud_url}/v1/gateways/gw-demo-01/events?from=0") as r:
                    alarms = [e for e in (await r.json())["events"] if e["kind"] == "alarm.raised"]
                live.update(render(latest, status, elapsed, alarms))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await stop.wait()
        await gw_task

    for sim in sims:
        await sim.stop()
    ok = summarize(console, tmp, repo, app)
    await runner.cleanup()
    if workdir is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return ok


def _count_events(db: Any, kind: str) -> int:
    return int(db.execute("SELECT count(*) FROM events WHERE kind=?", (kind,)).fetchone()[0])


def summarize(console: Console, tmp: Path, repo: SqliteRepository, app: web.Application) -> bool:
    from edge.store import SqliteStore

    store = SqliteStore(tmp / "edge" / "gateway.db")
    counters = store.counters()
    buffered = store.buffered(Lane.TELEMETRY)
    store.close()
    db = repo._db
    (stored,) = db.execute("SELECT count(*) FROM readings").fetchone()
    (distinct,) = db.execute("SELECT count(*) FROM (SELECT DISTINCT device, point, ts_ms FROM readings)").fetchone()
    sampled = counters.get("telemetry_appended_total", 0)
    dropped = counters.get("telemetry_dropped_total", 0)
    lost = sampled - dropped - distinct - buffered  # duplicates must not hide losses
    bad_sig = app[INGESTOR].stats.refused.get("bad_signature", 0)
    console.print()
    table = Table(title="summary")
    table.add_column("what")
    table.add_column("count", justify="right")
    for what, n in [
        ("readings sampled at the edge", sampled),
        ("readings stored in the cloud", stored),
        ("still buffered at the edge", buffered),
        ("dropped by the disk bound (reported)", dropped),
        ("lost", lost),
        ("duplicates", stored - distinct),
        ("signature failures", bad_sig),
        (
            "alarms raised (edge rules)",
            db.execute("SELECT count(*) FROM events WHERE kind='alarm.raised'").fetchone()[0],
        ),
        ("interlock actions", db.execute("SELECT count(*) FROM events WHERE kind='interlock.triggered'").fetchone()[0]),
    ]:
        table.add_row(what, str(n))
    console.print(table)
    return lost == 0 and stored == distinct and bad_sig == 0

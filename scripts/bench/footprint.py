"""Footprint: the gateway process's memory idle and at 5,000 points, and its start-up time to the
first reading, beside a bare pymodbus client (and the ThingsBoard IoT Gateway) doing the same in
the same run.

    python -m scripts.bench.footprint [--settle 20] [--trials 3] [--no-tb] [--json]

Each subject runs as its own process against the libmodbus fleet server (fleet_server.c):
- idle: one box, one register, polled every second;
- loaded: 100 boxes × 50 registers polled every second (5,000 points).
RSS (VmRSS) is read ``--settle`` seconds after the first data; peak is VmHWM.  Start-up is the
wall time from spawning the process to its first data — a reading committed to the edge store
(gasiot, `gasiot edge run` syncing to a `gasiot cloud serve` process), the first answered request
(bare client), the first telemetry message at the broker (ThingsBoard) — median of ``--trials``
starts of the idle configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

from scripts.bench import _common as common  # noqa: E402

LOADED = (100, 50)  # boxes × registers
IDLE = (1, 1)


async def first_data(probe: Callable[[], Awaitable[bool]], alive: Callable[[], bool], spawned: float) -> float:
    deadline = time.monotonic() + 90
    while not await probe():
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError("no data within 90 s of the start")
        await asyncio.sleep(0.01)  # polling an outside process for its first data
    return time.monotonic() - spawned


async def run_gasiot(
    tmp: Path, cloud: common.Cloud, server: common.FleetServer, shape: tuple[int, int], settle: float, name: str
) -> dict[str, Any]:
    boxes, regs = shape
    station = tmp / f"{name}.yaml"
    if not station.exists():
        common.write_station(
            station, gateway_id=name, cloud_url=cloud.url, ports=server.ports[:boxes], registers=regs, interval_s=1.0
        )
        cloud.enroll(station)
    db = common.edge_db(station)
    before = common.edge_readings(db)
    with (tmp / f"{name}.log").open("a") as log:
        spawned = time.monotonic()
        proc = common.spawn(common.gasiot_edge_command(station), cwd=REPO, stdout=log, stderr=log)
    try:

        async def stored() -> bool:
            return common.edge_readings(db) > before

        startup = await first_data(stored, lambda: proc.poll() is None, spawned)
        await asyncio.sleep(settle)
        rss, peak = common.memory_mb(proc.pid)
    finally:
        common.stop_process(proc, 30)
    return {"startup_s": startup, "rss_mb": rss, "peak_rss_mb": peak}


async def run_bare(server: common.FleetServer, shape: tuple[int, int], settle: float) -> dict[str, Any]:
    boxes, regs = shape
    command = [sys.executable, "-m", "scripts.bench.modbus_fleet", "--bare-child", "--interval", "1"]
    command += ["--registers", str(regs), "--seconds", str(settle + 120), *map(str, server.ports[:boxes])]
    server.requests()
    spawned = time.monotonic()
    proc = common.spawn(command, cwd=REPO)
    try:

        async def answered() -> bool:
            return server.requests() > 0

        startup = await first_data(answered, lambda: proc.poll() is None, spawned)
        await asyncio.sleep(settle)
        rss, peak = common.memory_mb(proc.pid)
    finally:
        common.stop_process(proc)
    return {"startup_s": startup, "rss_mb": rss, "peak_rss_mb": peak}


async def run_tb(
    tmp: Path, mqtt: int, server: common.FleetServer, shape: tuple[int, int], settle: float, name: str
) -> dict[str, Any]:
    boxes, regs = shape
    slaves = [common.tb_slave(f"box{i:03d}", p, regs, 1.0) for i, p in enumerate(server.ports[:boxes])]
    tb = common.TbGateway(tmp / name, mqtt, slaves)
    try:
        spawned = await tb.start()
        assert tb.proc is not None
        proc = tb.proc

        async def published() -> bool:
            return tb.counts.first_ts is not None

        startup = await first_data(published, lambda: proc.poll() is None, spawned)
        await asyncio.sleep(settle)
        rss, peak = common.memory_mb(proc.pid)
    finally:
        await tb.stop()
    return {"startup_s": startup, "rss_mb": rss, "peak_rss_mb": peak}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}
    tb_error = None
    if not args.no_tb:
        try:
            await asyncio.to_thread(common.tb_python)
        except common.TbUnavailable as err:
            tb_error, args.no_tb = str(err), True
    with (
        tempfile.TemporaryDirectory(prefix="gasiot-footprint-") as tmp_name,
        common.FleetServer(LOADED[0], LOADED[1]) as server,
    ):
        tmp = Path(tmp_name)
        with common.cloud_process(tmp) as cloud, common.mosquitto(tmp) as mqtt:
            subjects: dict[str, Callable[[tuple[int, int], str], Awaitable[dict[str, Any]]]] = {
                "bare": lambda shape, _name: run_bare(server, shape, args.settle),
                "gasiot": lambda shape, name: run_gasiot(tmp, cloud, server, shape, args.settle, name),
            }
            if not args.no_tb:
                subjects["thingsboard"] = lambda shape, name: run_tb(tmp, mqtt, server, shape, args.settle, name)
            for subject, run in subjects.items():
                idle = []  # several starts of the idle configuration: the start-up time is their median
                for t in range(max(1, args.trials)):
                    idle.append(await run(IDLE, f"{subject}-idle-{t}" if subject == "thingsboard" else "gw-idle"))
                loaded = await run(LOADED, f"{subject}-loaded" if subject == "thingsboard" else "gw-loaded")
                results[subject] = {
                    "idle_rss_mb": idle[0]["rss_mb"],
                    "idle_peak_rss_mb": idle[0]["peak_rss_mb"],
                    "startup_s": statistics.median(r["startup_s"] for r in idle),
                    "startup_trials_s": [r["startup_s"] for r in idle],
                    "loaded_rss_mb": loaded["rss_mb"],
                    "loaded_peak_rss_mb": loaded["peak_rss_mb"],
                }
    gas = results["gasiot"]
    ratios: dict[str, dict[str, float]] = {}
    for ref in ("bare", "thingsboard"):
        if ref in results:
            r = results[ref]
            ratios[f"vs_{ref}"] = {
                "idle_rss": gas["idle_rss_mb"] / r["idle_rss_mb"],
                "loaded_rss": gas["loaded_rss_mb"] / r["loaded_rss_mb"],
                "loaded_peak_rss": gas["loaded_peak_rss_mb"] / r["loaded_peak_rss_mb"],
                "startup": gas["startup_s"] / r["startup_s"],
            }
    return {
        "scenario": "footprint",
        "loaded_points": LOADED[0] * LOADED[1],
        "settle_s": args.settle,
        "trials": args.trials,
        "results": results,
        "ratios": ratios,
        "thingsboard_error": tb_error,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after the first data before RSS is read")
    parser.add_argument("--trials", type=int, default=3, help="starts of the idle configuration (start-up median)")
    parser.add_argument("--no-tb", action="store_true", help="leave out the ThingsBoard gateway")
    parser.add_argument("--quick", action="store_true", help="5 s settle, 1 trial")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if args.quick:
        args.settle, args.trials = 5.0, 1
    report = asyncio.run(main(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"idle: 1 box × 1 register; loaded: {report['loaded_points']:,} points at 1 s; RSS {args.settle:g} s after")
    print(f"{'subject':12} {'idle RSS MB':>11} {'loaded RSS MB':>13} {'loaded peak MB':>14} {'start-up s':>10}")
    for subject, r in report["results"].items():
        print(
            f"{subject:12} {r['idle_rss_mb']:11.1f} {r['loaded_rss_mb']:13.1f} {r['loaded_peak_rss_mb']:14.1f}"
            f" {r['startup_s']:10.2f}"
        )
    for ref, ratios in report["ratios"].items():
        print(f"gasiot {ref}: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    if report["thingsboard_error"]:
        print(f"ThingsBoard not run: {report['thingsboard_error']}")


if __name__ == "__main__":
    cli()

"""Modbus fleet polling, three ways on one libmodbus fleet server in the same run: a bare pymodbus
client loop, the gasiot gateway (`gasiot edge run`, syncing to a `gasiot cloud serve` process), and
the ThingsBoard IoT Gateway (its Modbus connector, publishing to a local mosquitto).

    python -m scripts.bench.modbus_fleet [--devices 100] [--registers 20] [--intervals 1,0.1]
        [--warmup 5] [--seconds 30] [--synchronous FULL|NORMAL] [--no-tb] [--profile DIR] [--json]

The fleet: ``--devices`` regulator-like boxes, one loopback port each, served by fleet_server.c
(libmodbus, ~7 µs per request, every request sees new register values).  Each subject runs alone
as its own process: started, given ``--warmup`` seconds after its first data, then measured over a
``--seconds`` window: requests the server answered (its own counter), CPU seconds of the subject's
process (/proc, all threads) and its peak RSS (VmHWM), and the points it delivered upstream in the
window — the cloud's new rows for gasiot, the data points mosquitto handed to our subscriber for
ThingsBoard (the bare client delivers nowhere: its points are the ones it read).

gasiot reads a box's 20 registers in one request; ThingsBoard's connector sends one request per
configured register (its design), so its request rate is compared as points, not requests.
Targets (issue #9): gasiot's request rate ≥ 0.8 of the bare client's; its CPU per point ≤ 1/10 of
ThingsBoard's and its peak RSS ≤ 1/2 of it on the same workload.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

from scripts.bench import _common as common  # noqa: E402


@dataclass
class Run:
    subject: str  # bare | gasiot | thingsboard
    interval_s: float
    window_s: float
    requests: int  # answered by the fleet server in the window
    points: int  # read in the window (requests × registers per request)
    delivered: int  # points that reached the subject's upstream in the window
    expected: int  # devices × registers × window / interval
    cpu_s: float
    rss_mb: float
    peak_rss_mb: float
    first_data_s: float  # spawn → first data (first answered request; first upstream point for TB)
    note: str = ""

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.window_s

    @property
    def points_per_s(self) -> float:
        return self.points / self.window_s

    @property
    def cpu_s_per_million(self) -> float:
        return self.cpu_s / self.points * 1e6 if self.points else float("inf")

    @property
    def delivered_share(self) -> float:
        return self.delivered / self.expected if self.expected else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "requests_per_s": self.requests_per_s,
            "points_per_s": self.points_per_s,
            "cpu_s_per_million_points": self.cpu_s_per_million,
            "delivered_share": self.delivered_share,
        }


async def measure(
    subject: str,
    *,
    server: common.FleetServer,
    pid: int,
    spawned: float,
    interval: float,
    registers_per_request: int,
    expected: int,
    delivered: Callable[[], int],
    alive: Callable[[], bool],
    first_data: Callable[[], Awaitable[bool]],
    warmup: float,
    window: float,
) -> Run:
    deadline = time.monotonic() + 90
    while not await first_data():
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{subject}: no data within 90 s of the start")
        await asyncio.sleep(0.05)  # polling an outside process for its first data
    first = time.monotonic() - spawned
    await asyncio.sleep(warmup)
    server.requests()  # reset the server's counter
    d0, c0, t0 = delivered(), common.cpu_s(pid), time.monotonic()
    await asyncio.sleep(window)
    requests, d1, c1, t1 = server.requests(), delivered(), common.cpu_s(pid), time.monotonic()
    rss, peak = common.memory_mb(pid)
    points = requests * registers_per_request
    return Run(subject, interval, t1 - t0, requests, points, d1 - d0, expected, c1 - c0, rss, peak, first)


async def run_interval(
    args: argparse.Namespace, interval: float, server: common.FleetServer, tmp: Path, cloud: common.Cloud, mqtt: int
) -> list[Run]:
    ports, regs = server.ports, args.registers
    expected = round(len(ports) * regs * args.seconds / interval)
    runs: list[Run] = []
    total = args.warmup + args.seconds + 30

    async def answered() -> bool:
        return server.requests() > 0

    # 1. the bare pymodbus client (one client per box, one request per box per interval)
    command = [sys.executable, "-m", "scripts.bench.modbus_fleet", "--bare-child", "--interval", str(interval)]
    command += ["--registers", str(regs), "--seconds", str(total), *map(str, ports)]
    server.requests()
    spawned = time.monotonic()
    proc = common.spawn(command, cwd=REPO)
    try:
        run = await measure(
            "bare",
            **dict(server=server, pid=proc.pid, spawned=spawned, interval=interval, registers_per_request=regs),
            expected=expected,
            delivered=lambda: 0,
            alive=lambda: proc.poll() is None,
            first_data=answered,
            warmup=args.warmup,
            window=args.seconds,
        )
        run.delivered = run.points
        runs.append(run)
    finally:
        common.stop_process(proc)

    # 2. gasiot: the real CLI, syncing to the cloud process
    gateway_id = f"gw-fleet-{round(interval * 1000)}ms"
    station = common.write_station(
        tmp / f"{gateway_id}.yaml",
        gateway_id=gateway_id,
        cloud_url=cloud.url,
        ports=ports,
        registers=regs,
        interval_s=interval,
        synchronous=args.synchronous,
        commit_window_ms=args.commit_window_ms,
    )
    cloud.enroll(station)
    db = common.edge_db(station)
    server.requests()
    spawned = time.monotonic()
    command = common.gasiot_edge_command(station)
    profile = args.profile / f"{gateway_id}.prof" if args.profile else None
    if profile is not None:  # the same command under cProfile (it writes the file when the gateway exits)
        command[1:1] = ["-m", "cProfile", "-o", str(profile)]
    with (tmp / f"{gateway_id}.log").open("w") as log:
        proc = common.spawn(command, cwd=REPO, stdout=log, stderr=log)
    try:
        edge0 = common.edge_readings(db)
        run = await measure(
            "gasiot",
            **dict(server=server, pid=proc.pid, spawned=spawned, interval=interval, registers_per_request=regs),
            expected=expected,
            delivered=cloud.readings,
            alive=lambda: proc.poll() is None,
            first_data=answered,
            warmup=args.warmup,
            window=args.seconds,
        )
        stored = common.edge_readings(db) - edge0
        run.note = f"{stored:,} readings committed at the edge since its start"
        runs.append(run)
    finally:
        common.stop_process(proc, 30)
    if profile is not None and profile.exists():
        out = io.StringIO()
        pstats.Stats(str(profile), stream=out).sort_stats("tottime").print_stats(25)
        print(f"gasiot at {interval:g}s, functions by own time (whole run):\n{out.getvalue()}", file=sys.stderr)

    # 3. ThingsBoard IoT Gateway
    if not args.no_tb:
        slaves = [common.tb_slave(f"box{i:03d}", p, regs, interval) for i, p in enumerate(ports)]
        tb = common.TbGateway(tmp / f"tb-{round(interval * 1000)}ms", mqtt, slaves)
        try:
            server.requests()
            spawned = await tb.start()
            assert tb.proc is not None
            tb_proc = tb.proc

            async def published() -> bool:
                return tb.counts.first_ts is not None

            run = await measure(
                "thingsboard",
                **dict(server=server, pid=tb_proc.pid, spawned=spawned, interval=interval, registers_per_request=1),
                expected=expected,
                delivered=lambda: tb.counts.datapoints,
                alive=lambda: tb_proc.poll() is None,
                first_data=published,
                warmup=args.warmup,
                window=args.seconds,
            )
            runs.append(run)
        except (common.TbUnavailable, RuntimeError, TimeoutError) as err:
            print(f"thingsboard at {interval}s: {err}\n{tb.log_tail()}", file=sys.stderr)
            runs.append(Run("thingsboard", interval, args.seconds, 0, 0, 0, expected, 0, 0, 0, 0, note=str(err)))
        finally:
            await tb.stop()
    return runs


def summarise(runs: list[Run]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for interval in sorted({r.interval_s for r in runs}, reverse=True):
        by = {r.subject: r for r in runs if r.interval_s == interval}
        bare, gas, tb = by.get("bare"), by.get("gasiot"), by.get("thingsboard")
        tb_ok = tb is not None and tb.points > 0
        out[f"{interval:g}s"] = {
            "rate_vs_bare": gas.requests_per_s / bare.requests_per_s if gas and bare and bare.requests else None,
            "cpu_per_point_vs_bare": (
                gas.cpu_s_per_million / bare.cpu_s_per_million if gas and bare and bare.points else None
            ),
            "cpu_per_point_vs_tb": gas.cpu_s_per_million / tb.cpu_s_per_million if gas and tb and tb_ok else None,
            "peak_rss_vs_tb": gas.peak_rss_mb / tb.peak_rss_mb if gas and tb and tb_ok else None,
            "gasiot_delivered_share": gas.delivered_share if gas else None,
            "tb_delivered_share": tb.delivered_share if tb and tb_ok else None,
        }
    return out


async def main(args: argparse.Namespace) -> dict[str, object]:
    intervals = [float(x) for x in args.intervals.split(",")]
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="gasiot-fleet-") as tmp_name,
        common.FleetServer(args.devices, args.registers) as server,
    ):
        tmp = Path(tmp_name)
        tb_error = None
        if not args.no_tb:
            try:
                await asyncio.to_thread(common.tb_python)
            except common.TbUnavailable as err:
                tb_error = str(err)
                args.no_tb = True
        with common.cloud_process(tmp) as cloud, common.mosquitto(tmp) as mqtt:
            for interval in intervals:
                runs += await run_interval(args, interval, server, tmp, cloud, mqtt)
    versions = common.library_versions("pymodbus", "aiohttp", "cryptography", "gmalglib")
    if not args.no_tb:
        tb_versions = common.library_versions("thingsboard-gateway", "pymodbus", python=str(common.tb_python()))
        versions.update({f"thingsboard venv: {k}": v for k, v in tb_versions.items()})
    return {
        "scenario": "modbus_fleet",
        "devices": args.devices,
        "registers": args.registers,
        "warmup_s": args.warmup,
        "window_s": args.seconds,
        "runs": [r.as_dict() for r in runs],
        "summary": summarise(runs),
        "thingsboard_error": tb_error,
        "versions": versions,
    }


def print_table(report: dict[str, object]) -> None:
    runs = report["runs"]
    assert isinstance(runs, list)
    print(
        f"{report['devices']} boxes × {report['registers']} registers; {report['warmup_s']} s warm-up, "
        f"{report['window_s']} s window each"
    )
    header = f"{'interval':>8} {'subject':12} {'req/s':>8} {'points/s':>9} {'delivered':>9} {'CPU s/1M pts':>12}"
    print(header + f" {'RSS MB':>7} {'peak MB':>7} {'first data s':>12}")
    for r in runs:
        print(
            f"{r['interval_s']:>7g}s {r['subject']:12} {r['requests_per_s']:8.0f} {r['points_per_s']:9.0f}"
            f" {r['delivered_share']:9.1%} {r['cpu_s_per_million_points']:12.1f} {r['rss_mb']:7.1f}"
            f" {r['peak_rss_mb']:7.1f} {r['first_data_s']:12.2f}"
        )
    for interval, s in dict(report["summary"]).items():  # type: ignore[call-overload]
        parts = [f"{k} {v:.2f}" for k, v in s.items() if v is not None]
        print(f"{interval}: " + ", ".join(parts))
    if report.get("thingsboard_error"):
        print(f"ThingsBoard not run: {report['thingsboard_error']}")


def bare_child(args: argparse.Namespace) -> None:
    from scripts.bench.modbus_poll import bare

    asyncio.run(bare([int(p) for p in args.ports], args.interval, args.seconds, registers=args.registers))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--registers", type=int, default=20)
    parser.add_argument("--intervals", default="1,0.1", help="poll intervals in seconds, comma-separated")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after the first data, not measured")
    parser.add_argument("--seconds", type=float, default=30.0, help="the measured window of each run")
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL", help="the gasiot edge store's")
    parser.add_argument(
        "--commit-window-ms", type=int, default=None, help="the gasiot edge store's (default: the product default)"
    )
    parser.add_argument("--no-tb", action="store_true", help="leave out the ThingsBoard gateway")
    parser.add_argument("--profile", metavar="DIR", help="run the gasiot gateway under cProfile; .prof files here")
    parser.add_argument("--quick", action="store_true", help="a short run: 3 s warm-up, 10 s windows")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--bare-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("ports", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_child:
        bare_child(args)
        return
    if args.quick:
        args.warmup, args.seconds = 3.0, 10.0
    if args.profile:
        args.profile = Path(args.profile).resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(main(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    cli()

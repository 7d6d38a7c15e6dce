"""Long soak (#8): the gateway polls ≥ 2,000 points/s from simulated regulator boxes while the
cloud flaps (killed and restarted every few minutes); the gateway's RSS and open file descriptors
are sampled and their trend (least-squares slope) reported.  At the end the cloud must hold
everything the edge committed, exactly once.

    .venv/bin/python scripts/chaos/soak.py                 # one hour, recorded in docs/soak.json
    .venv/bin/python scripts/chaos/soak.py --minutes 5 --flap-s 60 --record ''

The record is what scripts/chaos/reliability.py puts in docs/reliability.md's soak section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "firmware-sim")]

from gasiot_sim.modbus_server import RegulatorSimServer  # noqa: E402
from support.mosquitto import free_port  # noqa: E402
from support.station import station_dict, write_station  # noqa: E402


def rss_and_fds(pid: int) -> tuple[int, int]:
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return rss_kb * 1024, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def head_commit() -> str:
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return git.stdout.strip() or "?"


def slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope (units per hour)."""
    if len(samples) < 3:
        return 0.0
    xs, ys = [t / 3600 for t, _ in samples], [v for _, v in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


async def cloud(db: Path, port: int, key: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gasiot", "cloud", "serve", "--db", f"sqlite:///{db}", "--listen", f"127.0.0.1:{port}",
        "--admin-key-file", str(key), "--insecure-dev", "--log-level", "WARNING",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    await asyncio.wait_for(proc.stdout.readline(), 60)
    return proc


async def main(minutes: float, flap_s: float, boxes: int, record: Path | None) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="gasiot-soak-"))
    sims = [RegulatorSimServer(seed=i, tick_s=0.05) for i in range(boxes)]
    ports = [await s.start() for s in sims]
    port, db, key = free_port(), tmp / "cloud.db", tmp / "admin.key"
    server = await cloud(db, port, key)
    import aiohttp

    admin = {"Authorization": f"Bearer {key.read_text().strip()}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}/v1/enrollment-tokens", json={"gateway_id": "gw-soak"}, headers=admin) as r,
    ):
        token = (await r.json())["token"]
    data = station_dict(cloud_url=f"http://127.0.0.1:{port}", data_dir=tmp / "edge", ports=ports, gateway_id="gw-soak",
                        poll_interval_s=0.1, sync={"max_batch_records": 2000, "max_batch_age_s": 0.5})  # fmt: skip
    station = write_station(tmp / "station.yaml", data)
    enroll = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gasiot", "edge", "enroll", str(station), "--token", token, cwd=ROOT
    )
    assert await enroll.wait() == 0
    edge_log = (tmp / "edge.log").open("wb")
    edge = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gasiot", "edge", "run", str(station), "--log-level", "WARNING", cwd=ROOT,
        stderr=edge_log,
    )  # fmt: skip
    rss: list[tuple[float, float]] = []
    fds: list[tuple[float, float]] = []
    start, flaps, next_flap = time.monotonic(), 0, time.monotonic() + flap_s
    try:
        while (elapsed := time.monotonic() - start) < minutes * 60:
            await asyncio.sleep(10)  # the sampling period
            if edge.returncode is not None:
                tail = (tmp / "edge.log").read_text(errors="replace")[-3000:]
                raise SystemExit(f"the gateway exited with {edge.returncode}:\n{tail}")
            r, f = rss_and_fds(edge.pid)
            rss.append((elapsed, r / 2**20))
            fds.append((elapsed, f))
            print(f"{elapsed / 60:6.1f} min  RSS {r / 2**20:7.1f} MiB  fds {f:4d}  flaps {flaps}", flush=True)
            if time.monotonic() >= next_flap:
                server.send_signal(signal.SIGKILL)
                await server.wait()
                await asyncio.sleep(min(30.0, flap_s / 4))  # the outage itself
                server = await cloud(db, port, key)
                flaps += 1
                next_flap = time.monotonic() + flap_s
        ran_s = time.monotonic() - start
        edge.send_signal(signal.SIGTERM)
        await asyncio.wait_for(edge.wait(), 120)
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gasiot", "edge", "status", str(station), "--json", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await status.communicate()
        devices = json.loads(out)["devices"].values()
        polled = sum(d["samples"] for d in devices)
        poll_failures = sum(d["failures"] for d in devices)
    finally:
        with contextlib.suppress(ProcessLookupError):
            edge.kill()
        server.send_signal(signal.SIGTERM)
        await server.wait()
        for s in sims:
            await s.stop()
    with sqlite3.connect(tmp / "edge" / "gateway.db") as e, sqlite3.connect(db) as c:
        counters = dict(e.execute("SELECT name, value FROM counters").fetchall())
        (buffered,) = e.execute("SELECT count(*) FROM readings").fetchone()
        (stored,) = c.execute("SELECT count(*) FROM readings").fetchone()
        (distinct,) = c.execute("SELECT count(*) FROM (SELECT DISTINCT device, point, ts_ms FROM readings)").fetchone()
    appended = counters.get("telemetry_appended_total", 0)
    duration_s = ran_s
    half = [(t, v) for t, v in rss if t >= duration_s / 2]
    print(
        f"\n{polled} points polled ({polled / max(duration_s, 1):.0f}/s, {poll_failures} failed polls); "
        f"{appended} readings reported (report-by-exception) in {duration_s / 60:.1f} min "
        f"({appended / max(duration_s, 1):.0f}/s), "
        f"{flaps} cloud flaps\n"
        f"lost {appended - stored - buffered}, duplicates {stored - distinct}, still buffered {buffered}\n"
        f"RSS slope {slope(rss):+.2f} MiB/h (from {rss[0][1]:.1f} to {rss[-1][1]:.1f} MiB; "
        f"second half {slope(half):+.2f} MiB/h); "
        f"fd slope {slope(fds):+.2f}/h (from {fds[0][1]:.0f} to {fds[-1][1]:.0f})"
    )
    lost, duplicates = appended - stored - buffered, stored - distinct
    if record is not None:
        result = {
            "date": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "commit": head_commit(),
            "command": f"scripts/chaos/soak.py --minutes {minutes:g} --flap-s {flap_s:g} --boxes {boxes}",
            "minutes": round(duration_s / 60, 1),
            "points_polled": polled,
            "points_per_s": round(polled / max(duration_s, 1)),
            "failed_polls": poll_failures,
            "readings": appended,
            "readings_per_s": round(appended / max(duration_s, 1)),
            "cloud_flaps": flaps,
            "lost": lost,
            "duplicates": duplicates,
            "still_buffered": buffered,
            "rss_mib": [round(rss[0][1], 1), round(rss[-1][1], 1)],
            "rss_slope_mib_per_h": round(slope(rss), 2),
            "rss_slope_second_half_mib_per_h": round(slope(half), 2),
            "fds": [fds[0][1], fds[-1][1]],
            "fd_slope_per_h": round(slope(fds), 2),
            "samples": len(rss),
        }
        await asyncio.to_thread(record.write_text, json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"recorded in {record}")
    return 0 if lost == 0 and duplicates == 0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--flap-s", type=float, default=240.0, help="seconds between cloud kills")
    parser.add_argument("--boxes", type=int, default=20, help="regulator boxes (11 points each at 10 Hz)")
    parser.add_argument(
        "--record", default=str(ROOT / "docs" / "soak.json"), help="where to write the result ('' for nowhere)"
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.minutes, args.flap_s, args.boxes, Path(args.record) if args.record else None)))

"""Store-and-forward drain: a backlog of readings in the edge store (an outage's worth), the time
until the cloud holds all of it, beside a bare upload + insert of the same rows in the same run.

    python -m scripts.bench.store_forward [--backlog 1000000] [--timeout 300] [--profile] [--json]

gasiot: the real ``Gateway`` (this process) with its store filled before the clock starts
(100 boxes × 20 points, one commit per poll cycle, as polling leaves it), syncing to a
`gasiot cloud serve` process on SQLite (its own process, loopback): batches formed from the
store, SM2-signed, posted, stored by the cloud, acknowledged and deleted at the edge — timed from
``Gateway.run`` to the acknowledgement of the last reading.

Bare: the same rows encoded the same way (cbor+zstd, the station's default batch size of 1000),
posted one after another by aiohttp to a bare aiohttp server in its own process that decompresses,
decodes and ``executemany``-inserts them into a table like the cloud's (WAL, synchronous=FULL) —
no signature, no hash chain, no validation, no edge bookkeeping.

Target (issue #9): the 1,000,000-reading drain in ≤ 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import pstats
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

from scripts.bench import _common as common  # noqa: E402

DEVICES, POINTS = 100, 20
BATCH = 1000  # SyncSection.max_batch_records' default


def backlog_cycles(n: int, now_ms: int) -> list[list[Any]]:
    """The backlog as poll cycles (one device's points at one time), oldest first."""
    from gascore.records import Reading

    cycles: list[list[Any]] = []
    per_cycle = POINTS
    count = n // per_cycle
    first_ms = now_ms - (count // DEVICES + 1) * 1000
    for c in range(count):
        device, tick = c % DEVICES, c // DEVICES
        ts = first_ms + tick * 1000
        value = float(tick % 5000) * 0.1
        cycles.append([Reading(f"box{device:03d}", f"r{p:03d}", ts, value + p) for p in range(POINTS)])
    return cycles


async def drain_gasiot(tmp: Path, backlog: int, timeout_s: float, profile: bool) -> dict[str, Any]:
    from edge.config import load_station
    from edge.runtime import Gateway
    from edge.store import Lane

    logging.basicConfig(level=logging.ERROR)  # the refused box says so once; nothing else to see
    with common.cloud_process(tmp) as cloud, common.closed_port() as nowhere:
        # One box on a port that refuses: nothing is polled while the backlog drains.
        station = common.write_station(
            tmp / "drain.yaml",
            gateway_id="gw-drain",
            cloud_url=cloud.url,
            ports=[nowhere],
            registers=POINTS,
            interval_s=3600,
        )
        cloud.enroll(station)
        gateway = Gateway.build(load_station(station))
        t_fill = time.perf_counter()
        cycles = backlog_cycles(backlog, int(time.time() * 1000))
        for cycle in cycles:
            gateway.store.append(cycle)
        filled = sum(len(c) for c in cycles)
        fill_s = time.perf_counter() - t_fill
        del cycles
        before = cloud.readings()
        assert gateway.sync is not None
        sync = gateway.sync
        stop = asyncio.Event()
        profiler = cProfile.Profile() if profile else None
        cloud_cpu0, cpu0, t0 = common.cpu_s(cloud.proc.pid), time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=1.0))
        deadline = t0 + timeout_s
        # The gateway's own counter, polled: it has no completion event.
        while sync.stats.records_acked < filled and time.perf_counter() < deadline and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        if profiler is not None:
            profiler.disable()
        cpu, cloud_cpu = time.process_time() - cpu0, common.cpu_s(cloud.proc.pid) - cloud_cpu0
        left = gateway.store.buffered(Lane.TELEMETRY)
        stop.set()
        await task
        held = cloud.readings() - before
        top = ""
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
            top = out.getvalue()
        return {
            "readings": filled,
            "fill_s": fill_s,
            "drain_s": elapsed,
            "acked": sync.stats.records_acked,
            "cloud_held": held,
            "left_at_edge": left,
            "batches": sync.stats.batches_sent,
            "failures": sync.stats.failures,
            "gateway_cpu_s": cpu,
            "cloud_cpu_s": cloud_cpu,
            "complete": sync.stats.records_acked >= filled,
            "profile": top,
        }


# ---- the bare upload + insert --------------------------------------------------------------------


def bare_server(db_path: str) -> None:
    """An aiohttp server that stores what is posted: zstd → CBOR rows → executemany, one commit."""
    import cbor2
    import zstandard
    from aiohttp import web

    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE readings(gateway_id TEXT NOT NULL, device TEXT NOT NULL, point TEXT NOT NULL,"
        " ts_ms INTEGER NOT NULL, value, vt TEXT, quality TEXT NOT NULL, seq INTEGER)"
    )
    decompressor = zstandard.ZstdDecompressor()
    seq = 0

    async def post(request: web.Request) -> web.Response:
        nonlocal seq
        rows = cbor2.loads(decompressor.decompress(await request.read()))
        seq += 1
        db.execute("BEGIN")
        db.executemany("INSERT INTO readings VALUES ('gw-bare',?,?,?,?,NULL,?,?)", [(*r, seq) for r in rows])
        db.execute("COMMIT")
        return web.json_response({"stored": len(rows)})

    async def main() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/rows", post)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"listening {port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


async def drain_bare(tmp: Path, backlog: int, timeout_s: float) -> dict[str, Any]:
    import aiohttp

    from gascore.contract import encode_rows

    rows = [r.to_wire() for cycle in backlog_cycles(backlog, int(time.time() * 1000)) for r in cycle]
    bodies = [encode_rows(rows[i : i + BATCH], "cbor+zstd") for i in range(0, len(rows), BATCH)]
    command = [sys.executable, "-m", "scripts.bench.store_forward", "--bare-server", str(tmp / "bare.db")]
    proc = common.spawn(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        stored = 0
        server_cpu0, cpu0, t0 = common.cpu_s(proc.pid), time.process_time(), time.perf_counter()
        async with aiohttp.ClientSession() as http:
            for body in bodies:
                if time.perf_counter() - t0 > timeout_s:
                    break
                async with http.post(f"http://127.0.0.1:{port}/rows", data=body) as r:
                    stored += (await r.json())["stored"]
        elapsed = time.perf_counter() - t0
        cpu, server_cpu = time.process_time() - cpu0, common.cpu_s(proc.pid) - server_cpu0
    finally:
        common.stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()
    return {
        "readings": len(rows),
        "drain_s": elapsed,
        "stored": stored,
        "bytes": sum(map(len, bodies)),
        "client_cpu_s": cpu,
        "server_cpu_s": server_cpu,
        "complete": stored == len(rows),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gasiot-drain-") as tmp_name:
        tmp = Path(tmp_name)
        bare = await drain_bare(tmp, args.backlog, args.timeout)
        gasiot = await drain_gasiot(tmp, args.backlog, args.timeout, args.profile)
    return {
        "scenario": "store_forward",
        "backlog": args.backlog,
        "bare": bare,
        "gasiot": gasiot,
        "ratio_rate_vs_bare": bare["drain_s"] / gasiot["drain_s"] if gasiot["complete"] else None,
        "readings_per_s": gasiot["acked"] / gasiot["drain_s"],
        "bare_readings_per_s": bare["stored"] / bare["drain_s"],
        "target_s": 60.0 * args.backlog / 1_000_000,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=1_000_000, help="readings queued at the edge")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up a drain after this many seconds")
    parser.add_argument("--profile", action="store_true", help="cProfile the gateway side; print the top functions")
    parser.add_argument("--quick", action="store_true", help="a 200,000-reading backlog")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--bare-server", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        with contextlib.suppress(KeyboardInterrupt):
            bare_server(args.bare_server)
        return
    if args.quick:
        args.backlog = 200_000
    report = asyncio.run(main(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    g, b = report["gasiot"], report["bare"]
    print(f"backlog {report['backlog']:,} readings ({g['fill_s']:.1f} s to fill the edge store, not timed)")
    print(
        f"bare upload+insert : {b['drain_s']:6.1f} s  {report['bare_readings_per_s']:9,.0f} readings/s"
        f"  (client CPU {b['client_cpu_s']:.1f} s, server CPU {b['server_cpu_s']:.1f} s, {b['bytes']:,} bytes)"
    )
    print(
        f"gasiot drain       : {g['drain_s']:6.1f} s  {report['readings_per_s']:9,.0f} readings/s"
        f"  (gateway CPU {g['gateway_cpu_s']:.1f} s, cloud CPU {g['cloud_cpu_s']:.1f} s, {g['batches']} batches,"
        f" {g['failures']} failures; cloud holds {g['cloud_held']:,})"
    )
    ratio = report["ratio_rate_vs_bare"]
    print(
        f"ratio              : {ratio:.2f} of the bare rate" if ratio else "ratio: the drain did not complete",
        f"(target: {report['backlog']:,} in ≤ {report['target_s']:.0f} s)",
    )
    if g["profile"]:
        print(g["profile"])


if __name__ == "__main__":
    cli()

"""Cloud ingest benchmark (issue #6): readings/s stored through ``Ingestor.ingest`` — parse the
frame, verify its SM2 signature, decode the body, store — on SQLite and on PostgreSQL, each beside
the bare insert (SQLite ``executemany``) or COPY (PostgreSQL) of the same rows into the same table
in the same run; and SM2 verifications/s of the batch headers.

    python scripts/bench/cloud_ingest.py [--gateways 100] [--batches 3] [--rows 1000]
        [--processes 2] [--threads 2] [--http] [--pg-fsync on|off] [--seconds 60] [--json]

The workload: ``--gateways`` simulated gateways (SM2 keys), ``--batches`` batches each of
``--rows`` readings (20 devices x 10 points per gateway; floats, ints and bools), built and signed
before any timing.  PostgreSQL is a temporary server (initdb in a temporary directory, loopback,
a free port, fsync on unless --pg-fsync off), like tests/support/postgres.py.  With N processes
each takes every N-th gateway (a gateway's batches stay in order, as an edge sends them) and all
start together; the rate is all readings over the wall time from the common start to the last end.
PostgreSQL also runs with ``--threads`` threads per process (each its own gateways and pooled
connection), as the cloud calls the repository from worker threads.  Beside each rate: the CPU
time per 1000 readings of the Python processes and of their PostgreSQL backends — the profile
that says where the time goes when the machine is shared.
``--http`` also posts the frames to 2 ``gasiot cloud serve`` processes on PostgreSQL, each
gateway from its own loopback address (the per-gateway rate limit applies as in production).

Every measurement stops at its share of ``--seconds`` and reports what it stored by then.
Targets (issue #6): ingest >= 50 % of bare on both engines; >= 100,000 readings/s on PostgreSQL
with 2 processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing as mp
import os
import platform
import queue
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

from cloud.ingest import Ingestor  # noqa: E402
from cloud.repository import GatewayRecord, SqliteRepository  # noqa: E402
from cloud.repository_pg import PostgresRepository, _reading_row  # noqa: E402
from gascore.contract import (  # noqa: E402
    GENESIS_DIGEST,
    build_frame,
    decode_rows,
    parse_frame,
    rows_to_records,
    verify_frame,
)
from gascore.crypto import generate_signer, verifier_for  # noqa: E402
from gascore.crypto.base import SigAlg  # noqa: E402
from gascore.records import Lane, Reading  # noqa: E402

T0 = 1_764_000_000_000  # readings are stamped from here (2025-11-24) ...
NOW = T0 + 3_600_000  # ... and received an hour later


@dataclass
class Workload:
    gateways: list[tuple[str, SigAlg, bytes, str]]  # (id, alg, public key, key id)
    frames: list[list[bytes]]  # per gateway, in seq order
    rows: int

    def share(self, index: int, processes: int) -> list[bytes]:
        """Process ``index``'s frames: every ``processes``-th gateway, interleaved batch by batch."""
        mine = self.frames[index::processes]
        return [f for batch in zip(*mine, strict=True) for f in batch]


def build_workload(gateways: int, batches: int, rows: int) -> Workload:
    gws, frames = [], []
    for g in range(gateways):
        signer = generate_signer("sm2-sm3")
        gw = f"gw-bench-{g:03d}"
        gws.append((gw, signer.alg, signer.public_key_bytes(), signer.key_id))
        prev, mine = GENESIS_DIGEST, []
        for b in range(batches):
            body = []
            for i in range(rows):
                point = i % 200
                ts = T0 + (b * (rows // 200 + 1) + i // 200) * 1000
                kind = point % 10
                value: Any = float(i) * 0.25 if kind < 7 else (i if kind < 9 else i % 3 == 0)
                body.append([f"dev{point // 10:02d}", f"p{point % 10}", ts, value, "good"])
            frame = build_frame(
                signer=signer,
                gateway_id=gw,
                lane=Lane.TELEMETRY,
                seq=b + 1,
                prev_digest=prev,
                created_ms=NOW,
                rows=body,
                codec="cbor+zstd",
            )
            prev = frame.header.digest()
            mine.append(frame.to_bytes())
        frames.append(mine)
    return Workload(gws, frames, rows)


def bare_rows(frame: bytes) -> tuple[str, int, list[Reading]]:
    f = parse_frame(frame)
    rows = decode_rows(f.body, f.header.codec, f.header.lane, f.header.count)
    return f.header.gateway_id, f.header.seq, [Reading.from_wire(r) for r in rows]


# ---- the timed work (each in its own process) ------------------------------------------------


def _bare_sqlite(db: sqlite3.Connection, batch: tuple[str, int, list[Reading]]) -> int:
    """The same rows, laid out as the repository does, by executemany in one transaction."""
    gw, seq, readings = batch
    rows = [
        (gw, r.device, r.point, r.ts_ms, r.value, "b" if isinstance(r.value, bool) else None, r.quality.value, seq)
        for r in readings
    ]
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO readings VALUES (?,?,?,?,?,?,?,?)", rows)
    db.execute("COMMIT")
    return len(rows)


_BARE_COPY = (
    "COPY readings(gateway_id, device, point, ts_ms, value, text_value, vt, quality, seq) FROM STDIN (FORMAT BINARY)"
)
_BARE_TYPES = ["text", "text", "text", "int8", "float8", "text", "text", "text", "int8"]


def _bare_postgres(conn: Any, batch: tuple[str, int, list[Reading]]) -> int:
    """The same rows, laid out as the repository does, COPYed straight into ``readings``."""
    gw, seq, readings = batch
    with conn.transaction(), conn.cursor() as cur, cur.copy(_BARE_COPY) as copy:
        copy.set_types(_BARE_TYPES)
        for i, r in enumerate(readings):
            copy.write_row((gw, *_reading_row(i, r)[1:], seq))
    return len(readings)


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) another process — a PostgreSQL backend — has used so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker(kind: str, url: str, shares: list[list[bytes]], budget: float, start: Any, out: Any) -> None:
    """Set up (untimed), wait for the common start, work until done or out of time — one thread
    per share, each with its own connection — and report (start, end, batches, readings, own CPU
    s, PostgreSQL backends' CPU s)."""
    import psycopg

    backends: list[int] = []
    closers: list[Callable[[], None]] = []
    lanes: list[list[Callable[[], int]]] = []  # per thread, its steps
    if kind == "ingest":
        repo: SqliteRepository | PostgresRepository
        if url.startswith("sqlite:///"):
            repo = SqliteRepository(Path(url.removeprefix("sqlite:///")))
        else:
            repo = PostgresRepository(url, pool_size=len(shares))
            with contextlib.ExitStack() as held:  # open every connection now, outside the timing
                backends = [held.enter_context(repo._pool.connection()).info.backend_pid for _ in shares]
        closers.append(repo.close)
        rows = parse_frame(shares[0][0]).header.count if shares and shares[0] else 0
        for share in shares:
            ingestor = Ingestor(repo)  # one per thread: its statistics are not shared

            def ingest(data: bytes, ingestor: Ingestor = ingestor) -> int:
                return rows - ingestor.ingest(data, NOW).ignored

            lanes.append([functools.partial(ingest, f) for f in share])
    else:
        for share in shares:
            batches = [bare_rows(f) for f in share]  # decoded before the start: bare measures storage
            if kind == "bare-sqlite":
                db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA busy_timeout=10000")
                closers.append(db.close)
                lanes.append([functools.partial(_bare_sqlite, db, b) for b in batches])
            else:
                pg = psycopg.connect(url, autocommit=True)
                backends.append(pg.info.backend_pid)
                closers.append(pg.close)
                lanes.append([functools.partial(_bare_postgres, pg, b) for b in batches])
    totals = [0, 0]  # batches, readings
    lock = threading.Lock()

    def drive(steps: list[Callable[[], int]], deadline: float) -> None:
        for step in steps:
            if time.monotonic() > deadline:
                return
            stored = step()
            with lock:
                totals[0] += 1
                totals[1] += stored

    start.wait()
    t0, cpu0, pg0 = time.monotonic(), time.process_time(), sum(_cpu_s(b) for b in backends)
    threads = [threading.Thread(target=drive, args=(steps, t0 + budget)) for steps in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pg1 = sum(_cpu_s(b) for b in backends)
    out.put((t0, time.monotonic(), totals[0], totals[1], time.process_time() - cpu0, pg1 - pg0))
    for close in closers:
        close()


@dataclass
class Rate:
    name: str
    processes: int
    threads: int  # per process
    batches: int
    readings: int
    seconds: float
    client_cpu_s: float = 0.0  # the Python processes (ingest, or the bare loop)
    postgres_cpu_s: float = 0.0  # their PostgreSQL backends

    @property
    def per_s(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0

    def cpu_ms_per_1000(self, cpu_s: float) -> float:
        return cpu_s * 1e6 / self.readings if self.readings else 0.0


def run(kind: str, url: str, work: Workload, processes: int, threads: int, budget: float, name: str) -> Rate:
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(processes), ctx.Queue()
    n = processes * threads
    procs = [
        ctx.Process(
            target=_worker,
            args=(kind, url, [work.share(i * threads + t, n) for t in range(threads)], budget, start, out),
        )
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    results: list[tuple[float, float, int, int, float, float]] = []
    give_up = time.monotonic() + budget + 120
    while len(results) < processes:
        with contextlib.suppress(queue.Empty):
            results.append(out.get(timeout=0.5))
            continue
        if any(p.exitcode not in (None, 0) for p in procs) or time.monotonic() > give_up:
            for p in procs:
                p.kill()
            raise RuntimeError(f"{name}: a worker failed (see above)")
    for p in procs:
        p.join(timeout=30)
    t0, t1 = min(r[0] for r in results), max(r[1] for r in results)
    batches, readings = sum(r[2] for r in results), sum(r[3] for r in results)
    client_cpu, postgres_cpu = sum(r[4] for r in results), sum(r[5] for r in results)
    return Rate(name, processes, threads, batches, readings, t1 - t0, client_cpu, postgres_cpu)


def pre_store_profile(work: Workload, limit: int = 100) -> dict[str, float]:
    """Milliseconds per batch of each step of ``Ingestor.ingest`` before storage, one core."""
    frames = [f for gw in work.frames for f in gw][:limit]
    verifiers = {gw: verifier_for(alg, key) for gw, alg, key, _ in work.gateways}
    spent = dict.fromkeys(("parse", "verify", "decode", "validate"), 0.0)
    for data in frames:
        t0 = time.perf_counter()
        f = parse_frame(data)
        t1 = time.perf_counter()
        verify_frame(f, verifiers[f.header.gateway_id])
        t2 = time.perf_counter()
        rows = decode_rows(f.body, f.header.codec, f.header.lane, f.header.count)
        t3 = time.perf_counter()
        rows_to_records(f.header.lane, rows)
        t4 = time.perf_counter()
        for key, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            spent[key] += dt
    return {k: v * 1e3 / len(frames) for k, v in spent.items()}


# ---- databases ---------------------------------------------------------------------------------


def register(repo: SqliteRepository | PostgresRepository, work: Workload) -> None:
    for gw, alg, key, key_id in work.gateways:
        repo.register_gateway(GatewayRecord(gw, alg, key, key_id, "active", 0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: then run its tools as the `postgres` user."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextlib.contextmanager
def temporary_postgres(fsync: bool) -> Iterator[str]:
    """A PostgreSQL server for this run only; yields its admin URL."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise SystemExit("PostgreSQL server binaries (initdb) are not installed")
    bindir = found[-1].parent
    data = Path(tempfile.mkdtemp(prefix="gasiot-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'}"
    pg_ctl = str(bindir / "pg_ctl")
    subprocess.run(
        _as_postgres([pg_ctl, "-D", str(data), "-o", opts, "-w", "-l", str(data / "log"), "start"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True, timeout=120
        )
        shutil.rmtree(data, ignore_errors=True)


_dbs = [0]


def fresh_pg(admin_url: str, work: Workload) -> str:
    """A new database with the repository's schema, the gateways and this month's partition."""
    import psycopg

    _dbs[0] += 1
    name = f"bench{_dbs[0]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    repo = PostgresRepository(url)
    register(repo, work)
    repo._ensure_partitions(T0, T0, NOW)
    repo.close()
    return url


def fresh_sqlite(tmp: Path, work: Workload) -> str:
    _dbs[0] += 1
    path = tmp / f"bench{_dbs[0]}.db"
    repo = SqliteRepository(path)
    register(repo, work)
    repo.close()
    return f"sqlite:///{path}"


# ---- signatures --------------------------------------------------------------------------------


def verify_rate(work: Workload, seconds: float) -> float:
    """SM2 verifications/s of batch headers, one core, verifiers built once per gateway (as the
    ingestor caches them)."""
    frames = [parse_frame(f) for gw in work.frames for f in gw]
    verifiers = {gw: verifier_for(alg, key) for gw, alg, key, _ in work.gateways}
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for f in frames:
            verify_frame(f, verifiers[f.header.gateway_id])
        done += len(frames)
    return done / (time.perf_counter() - start)


# ---- through HTTP ------------------------------------------------------------------------------


def http_rate(admin_url: str, work: Workload, budget: float, tmp: Path) -> Rate:
    """2 `gasiot cloud serve` processes on one database; each gateway posts its batches in order,
    alternately to the two, from its own loopback address; all gateways at once."""
    import aiohttp

    url = fresh_pg(admin_url, work)
    procs, clouds = [], []
    try:
        for n in range(2):
            log = (tmp / f"serve{n}.log").open("w")
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gasiot", "cloud", "serve", "--db", url, "--listen", "127.0.0.1:0"),
                    *("--insecure-dev", "--cloud-key-file", str(tmp / "cloud.key"), "--log-level", "WARNING"),
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=REPO,
            )
            procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("gasiot cloud listening on "):
                raise RuntimeError(f"cloud serve did not start: {(tmp / f'serve{n}.log').read_text()}")
            clouds.append(line.split()[-1])

        async def main() -> tuple[int, int, float]:
            stored = batches = 0
            deadline = time.monotonic() + budget

            async def gateway(g: int, frames: list[bytes]) -> None:
                nonlocal stored, batches
                connector = aiohttp.TCPConnector(local_addr=(f"127.0.{1 + g // 250}.{1 + g % 250}", 0))
                async with aiohttp.ClientSession(connector=connector) as http:
                    for n, data in enumerate(frames):
                        if time.monotonic() > deadline:
                            return
                        while True:
                            async with http.post(f"{clouds[(g + n) % 2]}/v1/batches", data=data) as r:
                                body = await r.json(content_type=None)
                            if r.status != 429:  # the per-gateway rate limit: wait as a gateway would
                                break
                            await asyncio.sleep(float(body.get("retry_after_s", 0.1)))
                        if r.status != 200:
                            raise RuntimeError(f"batch refused: {r.status} {body}")
                        stored += work.rows - int(body.get("ignored", 0))
                        batches += 1

            t0 = time.monotonic()
            await asyncio.gather(*(gateway(g, frames) for g, frames in enumerate(work.frames)))
            return batches, stored, time.monotonic() - t0

        batches, stored, seconds = asyncio.run(main())
        return Rate("postgresql HTTP, 2 serve processes", 2, 1, batches, stored, seconds)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)


# ---- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateways", type=int, default=100)
    parser.add_argument("--batches", type=int, default=3, help="per gateway")
    parser.add_argument("--rows", type=int, default=1000, help="readings per batch")
    parser.add_argument("--processes", type=int, default=2, help="for PostgreSQL (SQLite has one writer)")
    parser.add_argument("--threads", type=int, default=2, help="per process, in a further PostgreSQL run")
    parser.add_argument("--http", action="store_true", help="also through HTTP with 2 serve processes")
    parser.add_argument("--pg-fsync", choices=("on", "off"), default="on")
    parser.add_argument("--seconds", type=float, default=60.0, help="overall budget")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    began = time.monotonic()
    layouts = sorted({(1, 1), (args.processes, 1), (args.processes, args.threads)})  # PostgreSQL
    phases = 2 + 2 * len(layouts) + (2 if args.http else 0)
    work = build_workload(args.gateways, args.batches, args.rows)
    built = time.monotonic() - began
    budget = max(1.0, (args.seconds - built - 8) / phases)  # each measurement's share
    rates: list[Rate] = []
    with tempfile.TemporaryDirectory(prefix="gasiot-bench-") as tmp_name:
        tmp = Path(tmp_name)
        rates.append(run("bare-sqlite", fresh_sqlite(tmp, work), work, 1, 1, budget, "sqlite bare executemany"))
        rates.append(run("ingest", fresh_sqlite(tmp, work), work, 1, 1, budget, "sqlite Ingestor.ingest"))
        with temporary_postgres(args.pg_fsync == "on") as admin:
            for n, t in layouts:
                rates.append(run("bare-postgres", fresh_pg(admin, work), work, n, t, budget, "postgresql bare COPY"))
                rates.append(run("ingest", fresh_pg(admin, work), work, n, t, budget, "postgresql Ingestor.ingest"))
            if args.http:
                rates.append(http_rate(admin, work, budget * 2, tmp))
    verifies = verify_rate(work, min(2.0, budget))
    steps = pre_store_profile(work)

    bare = {(r.name.split()[0], r.processes, r.threads): r.per_s for r in rates if "bare" in r.name}
    total_s = time.monotonic() - began
    load = os.getloadavg()
    if args.json:
        report = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": load},
            "rates": [{**asdict(r), "per_s": r.per_s} for r in rates],
            "sm2_verify_per_s": verifies,
            "pre_store_ms_per_batch": steps,
            "seconds": total_s,
        }
        print(json.dumps(report, indent=2))
        return
    print(f"{args.gateways} gateways x {args.batches} batches x {args.rows} readings; {os.cpu_count()} CPUs;")
    print(f"PostgreSQL fsync={args.pg_fsync}, SQLite synchronous=FULL; frames built in {built:.1f} s\n")
    print(
        f"{'path':36} {'procs x threads':>15} {'readings':>8} {'seconds':>7} {'readings/s':>10} {'of bare':>7}"
        f" {'CPU ms per 1000 readings: client':>33} {'postgres':>8}"
    )
    for r in rates:
        base = bare.get((r.name.split()[0], r.processes, r.threads))
        ratio = f"{r.per_s / base:.0%}" if base and "bare" not in r.name else ""
        client = f"{r.cpu_ms_per_1000(r.client_cpu_s):.2f}" if r.client_cpu_s else "-"
        server = f"{r.cpu_ms_per_1000(r.postgres_cpu_s):.2f}" if r.postgres_cpu_s else "-"
        layout = f"{r.processes} x {r.threads}"
        print(
            f"{r.name:36} {layout:>15} {r.readings:8d} {r.seconds:7.2f} {r.per_s:10,.0f} {ratio:>7}"
            f" {client:>33} {server:>8}"
        )
    print(f"\nSM2 verify (batch headers, 1 core): {verifies:,.0f}/s = {verifies * args.rows:,.0f} readings/s")
    print("Ingestor.ingest before storage, ms per batch: " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()))
    print(f"total run time {total_s:.1f} s; load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()

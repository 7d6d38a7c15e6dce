"""Time-series query benchmark (#7): one property over 30 days at 1 s resolution (~2.6 M rows),
downsampled to 1,000 buckets, through ``Repository.series_buckets`` on SQLite and on
PostgreSQL, beside a bare SQL aggregate of the same range on the same table in the same run.

    .venv/bin/python scripts/bench/timeseries_query.py            # 30 days, both engines
    .venv/bin/python scripts/bench/timeseries_query.py --days 3   # a quicker look
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from cloud.repository import GatewayRecord, Repository, SqliteRepository  # noqa: E402
from gascore.contract import GENESIS_DIGEST, PROTOCOL_VERSION, BatchHeader  # noqa: E402
from gascore.records import Lane, Reading  # noqa: E402

GW, DEVICE, POINT = "gw-bench", "gate", "flow"
T0 = 1_700_000_000_000
BUCKETS = 1000
CHUNK = 50_000


def fill(repo: Repository, rows: int) -> None:
    repo.register_gateway(GatewayRecord(GW, "ed25519", b"k" * 32, "00" * 8, "active", 1))
    prev = GENESIS_DIGEST
    for seq, start in enumerate(range(0, rows, CHUNK), start=1):
        span = range(start, min(rows, start + CHUNK))
        readings = [Reading(DEVICE, POINT, T0 + i * 1000, 1000.0 + (i % 600) / 10) for i in span]
        header = BatchHeader(
            v=PROTOCOL_VERSION, gateway_id=GW, lane=Lane.TELEMETRY, seq=seq, prev_digest=prev, created_ms=T0,
            count=len(readings), codec="json", key_id="00" * 8, sig_alg="ed25519", body_digest="0" * 64,
        )  # fmt: skip
        digest = f"{seq:064x}"
        repo.store_batch(header, digest, readings, T0)
        prev = digest


def timed(fn: Callable[[], object], runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def sqlite_case(rows: int, tmp: Path) -> tuple[float, float]:
    repo = SqliteRepository(tmp / "bench.db")
    fill(repo, rows)
    end, bucket = T0 + rows * 1000, rows * 1000 // BUCKETS
    ours = timed(lambda: repo.series_buckets(GW, DEVICE, POINT, T0, end, bucket))
    db = repo._db  # the same table, queried bare
    bare = timed(
        lambda: db.execute(
            "SELECT (ts_ms - ?) / ?, min(value), max(value), avg(value), count(value) FROM readings"
            " WHERE gateway_id=? AND device=? AND point=? AND ts_ms >= ? AND ts_ms < ? GROUP BY 1",
            (T0, bucket, GW, DEVICE, POINT, T0, end),
        ).fetchall()
    )
    repo.close()
    return ours, bare


def postgres_case(rows: int, tmp: Path) -> tuple[float, float] | None:
    try:
        from cloud.repository_pg import PostgresRepository
        from support.postgres import fresh_database, running_postgres
    except ImportError:
        return None
    with running_postgres(tmp) as pg:
        url = fresh_database(pg)
        repo = PostgresRepository(url)
        fill(repo, rows)
        end, bucket = T0 + rows * 1000, rows * 1000 // BUCKETS
        ours = timed(lambda: repo.series_buckets(GW, DEVICE, POINT, T0, end, bucket))
        import psycopg

        with psycopg.connect(url) as conn:
            bare = timed(
                lambda: conn.execute(
                    "SELECT (ts_ms - %s) / %s, min(value), max(value), avg(value), count(value) FROM readings"
                    " WHERE gateway_id=%s AND device=%s AND point=%s AND ts_ms >= %s AND ts_ms < %s GROUP BY 1",
                    (T0, bucket, GW, DEVICE, POINT, T0, end),
                ).fetchall()
            )
        repo.close()
    return ours, bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    rows = int(args.days * 86_400)
    print(f"{rows:,} readings ({args.days:g} days at 1 s) -> {BUCKETS} buckets; median of 5 runs")
    print(f"{'engine':<12}{'series_buckets s':>18}{'bare aggregate s':>18}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        ours, bare = sqlite_case(rows, Path(tmp))
        print(f"{'sqlite':<12}{ours:>18.3f}{bare:>18.3f}{ours / bare:>8.2f}")
        if not args.no_postgres:
            pg = postgres_case(rows, Path(tmp))
            if pg is None:
                print("postgresql: not available here")
            else:
                print(f"{'postgresql':<12}{pg[0]:>18.3f}{pg[1]:>18.3f}{pg[0] / pg[1]:>8.2f}")


if __name__ == "__main__":
    main()

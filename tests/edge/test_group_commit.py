"""Group commit (#9): plain-reading poll cycles of many devices share one transaction; anything
with an event commits at once, after what was held; nothing held is visible to the sync client
before it is committed; a failed group commit is reported, not raised into the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge.config import load_station
from edge.group_commit import GroupCommit
from edge.runtime import Gateway
from edge.store import Lane, SqliteStore
from gascore.crypto import generate_signer
from gascore.records import Event, EventLevel, Reading
from support.station import station_dict, write_station
from support.wait import eventually


def readings(device: str, n: int, start_ms: int = 1_000) -> list[Reading]:
    return [Reading(device, "p", start_ms + i, float(i), "good") for i in range(n)]


async def test_held_readings_commit_together_after_the_window(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gateway.db")
    group = GroupCommit(store, 0.05)
    for d in range(10):
        assert group.hold(readings(f"dev{d}", 5))
    # Held, not committed: the sync client (which reads SQLite) cannot see them.
    assert store.unbatched(Lane.TELEMETRY, 1000)[0] == 0
    assert group.held == 50
    await eventually(lambda: store.unbatched(Lane.TELEMETRY, 1000)[0] == 50, what="the group commit")
    assert group.commits == 1 and group.cycles_held == 10 and group.held == 0
    store.close()


async def test_a_cycle_with_events_commits_at_once_after_what_was_held(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gateway.db")
    group = GroupCommit(store, 10.0)  # a window long enough that only the event can flush it
    assert group.hold(readings("dev0", 3, 1_000))
    store.append([*group.take(), *readings("dev1", 2, 2_000)], [Event("dev1", "alarm", 2_000, EventLevel.MAJOR, {})])
    rows = store.read_all(Lane.TELEMETRY)
    assert [(r[0], r[2]) for r in rows] == [
        ("dev0", 1000),
        ("dev0", 1001),
        ("dev0", 1002),
        ("dev1", 2000),
        ("dev1", 2001),
    ]
    assert group.held == 0
    store.close()


def test_without_a_window_or_an_event_loop_nothing_is_held(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gateway.db")
    assert not GroupCommit(store, 0.0).hold(readings("dev0", 1))
    assert not GroupCommit(store, 0.05).hold(readings("dev0", 1))  # no running loop: commit yourself
    store.close()


async def test_a_full_group_commits_without_waiting(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gateway.db")
    group = GroupCommit(store, 10.0, max_held=100)
    for d in range(4):
        group.hold(readings(f"dev{d}", 30))
    assert store.unbatched(Lane.TELEMETRY, 1000)[0] == 120 and group.commits == 1
    store.close()


async def test_a_failed_group_commit_is_reported_not_raised(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gateway.db")
    failures: list[BaseException] = []
    group = GroupCommit(store, 0.01, on_failure=failures.append)
    store.close()  # every statement now fails
    group.hold(readings("dev0", 2))
    await eventually(lambda: bool(failures), what="the failure reported")
    assert isinstance(failures[0], sqlite3.Error)


@pytest.mark.parametrize("window_ms", [0, 50])
async def test_a_polling_gateway_commits_once_per_window_not_once_per_cycle(tmp_path: Path, window_ms: int) -> None:
    from gasiot_sim.modbus_server import RegulatorSimServer

    sims = [RegulatorSimServer(seed=i, tick_s=0.05) for i in range(6)]
    ports = [await s.start() for s in sims]
    try:
        data = station_dict(
            cloud_url="http://127.0.0.1:9",
            data_dir=tmp_path / "edge",
            ports=ports,
            poll_interval_s=0.05,
            store={"commit_window_ms": window_ms},
        )
        gateway = Gateway.build(load_station(write_station(tmp_path / "station.yaml", data)), signer=generate_signer())
        appends = accepted = 0
        store_append, gateway_accept = gateway.store.append, gateway.accept

        def counting_append(*args: Any, **kwargs: Any) -> None:
            nonlocal appends
            appends += 1
            store_append(*args, **kwargs)

        def counting_accept(readings: list[Reading], *args: Any, **kwargs: Any) -> None:
            nonlocal accepted
            accepted += len(readings)
            gateway_accept(readings, *args, **kwargs)

        gateway.store.append = counting_append  # type: ignore[method-assign]
        gateway.accept = counting_accept  # type: ignore[method-assign]
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))
        await eventually(lambda: gateway.commits >= 120, timeout=30, what="120 poll cycles")
        stop.set()
        await task
    finally:
        for s in sims:
            await s.stop()
    cycles = gateway.commits
    if window_ms == 0:
        # Every cycle with something to report is its own transaction (a cycle whose values all
        # stayed within their deadbands commits nothing).
        assert appends >= cycles * 0.8, (appends, cycles)
    else:
        assert appends <= cycles / 2, (appends, cycles)  # six devices share most commits
    # Nothing polled was lost by holding it: every reading accepted is in the store after the stop.
    store = SqliteStore(tmp_path / "edge" / "gateway.db")
    assert accepted > 0
    assert store.counters()["telemetry_appended_total"] == accepted == len(store.read_all(Lane.TELEMETRY))
    store.close()

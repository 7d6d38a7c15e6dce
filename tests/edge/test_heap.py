"""The daemon's garbage-collector settings (edge/heap.py): the long-lived heap is frozen out of
the collector's passes, and what a reload replaced is still collected — frozen objects are
never collected, so without the unfreeze each reload would leak the previous gateway."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import heap
from edge.config import load_station
from edge.runtime import Gateway, serve
from edge.store import SqliteStore
from gascore.crypto import generate_signer, write_key_file
from gasiot_sim.modbus_server import RegulatorSimServer
from support.station import station_dict, write_station
from support.wait import eventually


@pytest.fixture
def own_collector() -> Iterator[None]:
    """The test process's collector as it was, whatever the test did to it."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_settling_collects_what_an_earlier_settle_froze(own_collector: None) -> None:
    node = Node()
    ref = weakref.ref(node)
    heap.settle()
    assert gc.get_freeze_count() > 0
    del node
    gc.collect()  # a full pass does not look at frozen objects
    assert ref() is not None, "frozen garbage waits for the next settle"
    heap.settle()
    assert ref() is None


async def test_the_gateway_a_reload_replaced_is_collected(tmp_path: Path, own_collector: None) -> None:
    sim = RegulatorSimServer(seed=4, tick_s=0.1)
    port = await sim.start()
    try:
        data = station_dict(cloud_url="http://127.0.0.1:9", data_dir=tmp_path / "edge", ports=[port])
        station_file = write_station(tmp_path / "station.yaml", data)
        station = load_station(station_file)
        station.data_dir.mkdir(parents=True)
        write_key_file(generate_signer("sm2-sm3"), station.key_file)
        gateway = Gateway.build(station)
        first = weakref.ref(gateway)
        stop, reload = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            serve(gateway, stop=stop, reload=reload, load=lambda: load_station(station_file), manage_heap=True)
        )
        del gateway
        try:
            store_file = station.data_dir / "gateway.db"

            def committed() -> int:
                store = SqliteStore(store_file, inspect=True)
                try:
                    return store.counters().get("telemetry_appended_total", 0)
                finally:
                    store.close()

            await eventually(lambda: committed() > 0, what="first readings")
            assert gc.get_threshold() == heap.THRESHOLDS
            assert gc.get_freeze_count() > 0
            reload.set()
            await eventually(lambda: first() is None, timeout=20, what="the replaced gateway collected")
            before = committed()
            await eventually(lambda: committed() > before, what="the new gateway polling")
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 30) == 0
    finally:
        await sim.stop()

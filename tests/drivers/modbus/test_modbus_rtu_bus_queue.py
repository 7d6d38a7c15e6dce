"""BusQueue: one holder at a time, writes before queued polls, arrival order otherwise, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from drivers.modbus.bus import BusQueue, Priority


async def _hold(bus: BusQueue, priority: Priority, name: str, order: list[str], release: asyncio.Event) -> None:
    async with bus.turn(priority):
        order.append(name)
        await release.wait()


async def _run_behind_holder(bus: BusQueue, jobs: list[tuple[Priority, str]]) -> list[str]:
    """Start a holder, queue ``jobs`` behind it in that order, release it; the order served."""
    order: list[str] = []
    release = asyncio.Event()
    go = asyncio.Event()
    go.set()
    tasks = [asyncio.create_task(_hold(bus, Priority.POLL, "holder", order, release))]
    await asyncio.sleep(0)  # one scheduling step: the holder takes the line
    assert bus.busy
    for expected, (priority, name) in enumerate(jobs, start=1):
        tasks.append(asyncio.create_task(_hold(bus, priority, name, order, go)))
        await asyncio.sleep(0)
        assert bus.queued == expected
    release.set()
    await asyncio.gather(*tasks)
    assert not bus.busy
    assert bus.queued == 0
    return order


async def test_a_write_submitted_behind_polls_goes_next():
    jobs = [(Priority.POLL, "poll1"), (Priority.POLL, "poll2"), (Priority.WRITE, "write"), (Priority.POLL, "poll3")]
    assert await _run_behind_holder(BusQueue(), jobs) == ["holder", "write", "poll1", "poll2", "poll3"]


async def test_writes_keep_their_own_arrival_order():
    jobs = [(Priority.POLL, "poll"), (Priority.WRITE, "write1"), (Priority.WRITE, "write2")]
    assert await _run_behind_holder(BusQueue(), jobs) == ["holder", "write1", "write2", "poll"]


async def test_only_one_holder_at_a_time():
    bus = BusQueue()
    inside = peak = 0

    async def transaction() -> None:
        nonlocal inside, peak
        async with bus.turn(Priority.POLL):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(transaction() for _ in range(20)))
    assert peak == 1
    assert not bus.busy


async def test_a_cancelled_waiter_is_skipped_and_the_line_moves_on():
    bus, order = BusQueue(), []
    release = asyncio.Event()
    holder = asyncio.create_task(_hold(bus, Priority.POLL, "holder", order, release))
    await asyncio.sleep(0)
    go = asyncio.Event()
    go.set()
    doomed = asyncio.create_task(_hold(bus, Priority.WRITE, "doomed", order, go))
    survivor = asyncio.create_task(_hold(bus, Priority.POLL, "survivor", order, go))
    await asyncio.sleep(0)
    doomed.cancel()
    release.set()
    await asyncio.gather(holder, survivor)
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert order == ["holder", "survivor"]
    assert not bus.busy


async def test_an_exception_inside_a_turn_releases_the_line():
    bus = BusQueue()
    with pytest.raises(RuntimeError):
        async with bus.turn(Priority.POLL):
            raise RuntimeError("device fault")
    assert not bus.busy
    async with bus.turn(Priority.WRITE):
        assert bus.busy


async def test_the_line_stays_idle_for_the_gap_between_transactions():
    gap_s = 0.02
    bus = BusQueue(gap_s=gap_s)
    loop = asyncio.get_running_loop()
    async with bus.turn(Priority.POLL):
        pass
    released = loop.time()
    async with bus.turn(Priority.POLL):
        started = loop.time()
    assert started - released >= gap_s * 0.9  # loop clock granularity


async def test_a_waiter_cancelled_right_after_its_grant_passes_the_line_on():
    bus, order = BusQueue(), []
    go = asyncio.Event()
    go.set()
    async with bus.turn(Priority.POLL):
        granted_first = asyncio.create_task(_hold(bus, Priority.WRITE, "cancelled", order, go))
        second = asyncio.create_task(_hold(bus, Priority.POLL, "second", order, go))
        await asyncio.sleep(0)
        assert bus.queued == 2
    # Leaving the block granted the line to the write, which has not run yet: cancel it now.
    granted_first.cancel()
    await second
    with pytest.raises(asyncio.CancelledError):
        await granted_first
    assert order == ["second"]
    assert not bus.busy

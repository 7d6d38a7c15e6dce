"""Interlock engine with a scripted clock and a recording writer (the end-to-end test drives a
real simulated valve)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from drivers.base import CommError
from edge.interlocks.config import InterlockConfig
from edge.interlocks.engine import InterlockEngine
from edge.rules.types import ConditionChange, Message
from gascore.records import Event, Quality, Reading

CFG = {
    "id": "gas_shutoff",
    "when": "box.methane.hihi",
    "action": {"device": "box", "point": "emergency_close", "value": True},
    "readback": {"point": "slam_shut_closed", "equals": True, "within_s": 5},
    "rate_limit": {"max_actions": 2, "per_s": 60},
    "source": "test",
}


class Harness:
    def __init__(self, overrides: dict[str, Any] | None = None, fail: bool = False) -> None:
        self.now = 1_000_000
        self.writes: list[tuple[str, str, Any]] = []
        self.emitted: list[Event] = []
        self.fail = fail
        self.engine = InterlockEngine(
            [InterlockConfig.model_validate({**CFG, **(overrides or {})})],
            self.write,
            self.emitted.extend,
            lambda: self.now,
        )

    async def write(self, device: str, point: str, value: Any) -> None:
        if self.fail:
            raise CommError("no answer")
        self.writes.append((device, point, value))

    def change(self, active: bool = True, condition: str = "box.methane.hihi") -> list[Event]:
        return self.engine.on_changes(
            [
                ConditionChange(
                    condition, "box", "methane", active, self.now, "critical", Message("甲烷", "methane"), 55.0
                )
            ]
        )

    async def settle(self) -> None:
        await asyncio.gather(*self.engine._tasks)


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


async def test_trigger_write_and_confirm() -> None:
    h = Harness()
    assert kinds(h.change()) == ["interlock.triggered"]
    await h.settle()
    assert h.writes == [("box", "emergency_close", True)]
    h.now += 800
    assert h.engine.observe([Reading("box", "slam_shut_closed", h.now, False)]) == []
    done = h.engine.observe([Reading("box", "slam_shut_closed", h.now, True)])
    assert kinds(done) == ["interlock.done"] and done[0].data["confirmed"] is True
    assert h.engine.tick(h.now + 10_000) == []


async def test_valve_that_does_not_move_is_unconfirmed() -> None:
    h = Harness()
    h.change()
    await h.settle()
    h.engine.observe([Reading("box", "slam_shut_closed", h.now, True, Quality.BAD_COMM_FAILURE)])  # bad: no proof
    assert h.engine.tick(h.now + 4_999) == []
    assert kinds(h.engine.tick(h.now + 5_000)) == ["interlock.unconfirmed"]


async def test_write_failure_is_reported() -> None:
    h = Harness(fail=True)
    h.change()
    await h.settle()
    assert kinds(h.emitted) == ["interlock.failed"] and "no answer" in h.emitted[0].data["error"]


async def test_clearing_conditions_and_other_conditions_do_nothing() -> None:
    h = Harness()
    assert h.change(active=False) == [] and h.change(condition="box.methane.hi") == []
    await h.settle()
    assert h.writes == []


async def test_inhibit_simulate_and_rate_limit() -> None:
    h = Harness({"inhibit": True})
    assert kinds(h.change()) == ["interlock.inhibited"]
    h = Harness({"simulate": True})
    assert kinds(h.change()) == ["interlock.simulated"]
    await h.settle()
    assert h.writes == []
    h = Harness({"readback": None})
    for _ in range(2):
        assert kinds(h.change()) == ["interlock.triggered"]
        await h.settle()
        h.now += 1000
    assert kinds(h.change()) == ["interlock.rate_limited"]
    h.now += 61_000
    assert kinds(h.change()) == ["interlock.triggered"]


async def test_one_action_in_flight() -> None:
    h = Harness()
    h.change()
    assert h.change() == []  # waiting for the read-back of the first
    await h.settle()


@pytest.mark.parametrize(("value", "ok"), [(True, True), (1, False), (False, False)])
async def test_bool_readback_is_strict(value: Any, ok: bool) -> None:
    h = Harness()
    h.change()
    await h.settle()
    assert bool(h.engine.observe([Reading("box", "slam_shut_closed", h.now, value)])) is ok

"""Deterministic checks of the regulator box physics (no I/O)."""

from __future__ import annotations

import itertools

import pytest

from gasiot_sim.regulator import (
    RELIEF_OPEN_KPA,
    SLAM_SHUT_TRIP_KPA,
    RegulatorBox,
    RegulatorState,
)


def run(box: RegulatorBox, seconds: float, dt: float = 0.2) -> list[RegulatorState]:
    states = []
    for _ in range(round(seconds / dt)):
        box.step(dt)
        states.append(box.state())
    return states


def test_same_seed_same_run_different_seed_different_run():
    a = run(RegulatorBox(seed=1), 30)
    b = run(RegulatorBox(seed=1), 30)
    c = run(RegulatorBox(seed=2), 30)
    assert a == b
    assert a != c


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normal_run_stays_in_band(seed):
    states = run(RegulatorBox(seed=seed), 1200)  # two simulated "days" of flow
    for s in states:
        assert 2.7 <= s.outlet_pressure <= 3.1, s
        assert 0.2 <= s.inlet_pressure <= 0.4
        assert 0 <= s.flow <= 300
        assert 10 <= s.temperature <= 20
        assert 2 <= s.filter_dp <= 20
        assert s.box_methane < 3
        assert not s.slam_shut_closed and not s.relief_valve_open and not s.door_open
    flows = [s.flow for s in states]
    assert max(flows) - min(flows) > 100  # the demand cycle is visible
    assert states[-1].filter_dp > states[0].filter_dp  # the filter clogs


def test_outlet_droops_with_flow():
    states = run(RegulatorBox(seed=5), 1200)
    low = [s.outlet_pressure for s in states if s.flow < 80]
    high = [s.outlet_pressure for s in states if s.flow > 220]
    assert sum(low) / len(low) > sum(high) / len(high)


def test_overpressure_opens_relief_then_trips_and_latches_slam_shut():
    box = RegulatorBox(seed=0, scenario="overpressure", scenario_after_s=5)
    before = run(box, 5)
    assert all(not s.slam_shut_closed for s in before)
    states = run(box, 60, dt=0.1)  # one integration step per state: the trip instant is visible
    relief_at = next(i for i, s in enumerate(states) if s.relief_valve_open)
    trip_at = next(i for i, s in enumerate(states) if s.slam_shut_closed)
    assert relief_at < trip_at
    assert states[relief_at].outlet_pressure > RELIEF_OPEN_KPA
    assert states[trip_at].outlet_pressure > SLAM_SHUT_TRIP_KPA
    after = states[trip_at:]
    assert all(s.slam_shut_closed for s in after)  # latched
    assert all(s.flow == 0 for s in after[1:])  # no flow through a closed valve
    outlet = [s.outlet_pressure for s in after]
    assert all(b <= a for a, b in itertools.pairwise(outlet))  # decays
    assert outlet[-1] < 1.0
    assert not after[-1].relief_valve_open


def test_slam_shut_reset_only_below_trip_level():
    box = RegulatorBox(seed=0, scenario="overpressure", scenario_after_s=0)
    assert box.reset_slam_shut() is False  # nothing to reset
    while not box.state().slam_shut_closed:
        box.step(0.05)
    assert box.state().outlet_pressure >= SLAM_SHUT_TRIP_KPA
    assert box.reset_slam_shut() is False  # refused at trip level
    assert box.state().slam_shut_closed
    while box.state().outlet_pressure >= SLAM_SHUT_TRIP_KPA:
        box.step(0.05)
    assert box.reset_slam_shut() is True
    assert not box.state().slam_shut_closed


def test_leak_raises_methane():
    box = RegulatorBox(seed=4, scenario="leak", scenario_after_s=5)
    assert max(s.box_methane for s in run(box, 5)) < 3
    states = run(box, 120)
    assert states[-1].box_methane > 20
    assert max(s.box_methane for s in states) <= 60


def test_comm_loss_window():
    box = RegulatorBox(scenario="comm_loss", scenario_after_s=5, comm_loss_s=10)
    assert not box.comm_lost
    box.step(5.1)
    assert box.comm_lost
    box.step(9.8)
    assert box.comm_lost
    box.step(0.2)
    assert not box.comm_lost


def test_setpoint_moves_outlet_and_is_range_checked():
    box = RegulatorBox(seed=0)
    box.set_setpoint(2.0)
    states = run(box, 30)
    assert states[-1].outlet_pressure == pytest.approx(2.0, abs=0.2)
    with pytest.raises(ValueError):
        box.set_setpoint(9.0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        RegulatorBox(scenario="meteor")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RegulatorBox().step(-1)

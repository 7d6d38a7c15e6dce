"""Physics of a simulated regulator box (调压箱): no I/O, deterministic for a given seed.

The model is deliberately simple: enough dynamics for an edge gateway to see plausible trends,
alarms and interlocks (relief valve, latched slam-shut), not a fluid simulation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

Scenario = Literal["normal", "overpressure", "leak", "comm_loss"]
SCENARIOS: tuple[Scenario, ...] = ("normal", "overpressure", "leak", "comm_loss")

SLAM_SHUT_TRIP_KPA = 4.0
RELIEF_OPEN_KPA = 3.6
RELIEF_CLOSE_KPA = 3.5  # hysteresis, so the relief valve does not chatter around one level
SETPOINT_RANGE_KPA = (1.0, 5.0)
MAX_FLOW = 300.0  # Nm3/h
_SUBSTEP_S = 0.1  # integration step; step(dt) is split so results barely depend on the tick rate


@dataclass(frozen=True, slots=True)
class RegulatorState:
    """Physical values in engineering units."""

    time_s: float
    inlet_pressure: float  # MPa
    outlet_pressure: float  # kPa
    temperature: float  # °C
    filter_dp: float  # kPa
    box_methane: float  # %LEL
    flow: float  # Nm3/h
    setpoint: float  # kPa
    slam_shut_closed: bool
    relief_valve_open: bool
    door_open: bool


class RegulatorBox:
    """One regulator box.  ``step(dt_s)`` advances the simulated time."""

    def __init__(
        self,
        *,
        seed: int = 0,
        scenario: Scenario = "normal",
        scenario_after_s: float = 5.0,
        comm_loss_s: float = 10.0,
        setpoint_kpa: float = 3.0,
        flow_period_s: float = 600.0,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
        self.scenario: Scenario = scenario
        self.scenario_after_s = scenario_after_s
        self.comm_loss_s = comm_loss_s
        # A simulation, not cryptography: a seeded PRNG is what makes runs reproducible.
        self._rng = random.Random(seed)  # noqa: S311
        self._flow_period_s = flow_period_s
        self._flow_phase = self._rng.uniform(0.0, 2 * math.pi)
        self._t = 0.0
        self._setpoint = setpoint_kpa
        self._inlet = 0.35
        self._outlet = setpoint_kpa
        self._temperature = 15.0
        self._filter_dp = self._rng.uniform(2.0, 4.0)
        self._methane = 0.0
        self._flow = 0.0
        self._slam_closed = False
        self._relief_open = False
        self._door_open = False
        self._leak_target = self._rng.uniform(30.0, 55.0)
        self.valve_stuck = False  # fault injection: the slam-shut ignores close commands

    # ------------------------------------------------------------------ inputs

    @property
    def time_s(self) -> float:
        return self._t

    @property
    def comm_lost(self) -> bool:
        """True while the comm_loss scenario is cutting the link."""
        start = self.scenario_after_s
        return self.scenario == "comm_loss" and start <= self._t < start + self.comm_loss_s

    def _scenario_active(self, name: Scenario) -> bool:
        return self.scenario == name and self._t >= self.scenario_after_s

    def set_setpoint(self, kpa: float) -> None:
        low, high = SETPOINT_RANGE_KPA
        if not low <= kpa <= high:
            raise ValueError(f"setpoint {kpa} kPa is outside {low}..{high} kPa")
        self._setpoint = kpa

    def set_door(self, is_open: bool) -> None:
        self._door_open = is_open

    def emergency_close(self) -> bool:
        """Close the slam-shut on command (an interlock or an operator).  Latched like a trip;
        ignored when the valve is stuck (fault injection for the read-back check)."""
        if self.valve_stuck:
            return False
        self._slam_closed = True
        return True

    def reset_slam_shut(self) -> bool:
        """Re-open a tripped slam-shut.  Refused (False) while outlet pressure is at trip level."""
        if not self._slam_closed or self._outlet >= SLAM_SHUT_TRIP_KPA:
            return False
        self._slam_closed = False
        return True

    # ------------------------------------------------------------------ dynamics

    def step(self, dt_s: float) -> None:
        if dt_s < 0:
            raise ValueError("dt_s must be >= 0")
        remaining = dt_s
        while remaining > 1e-12:
            dt = min(_SUBSTEP_S, remaining)
            self._substep(dt)
            remaining -= dt

    def _substep(self, dt: float) -> None:
        rng = self._rng
        self._t += dt
        root = math.sqrt(dt)
        # Inlet: slow bounded random walk (upstream network), reflected at the bounds.
        self._inlet += rng.gauss(0.0, 0.002) * root
        self._inlet = min(max(self._inlet, 0.2), 0.4)
        self._temperature += (15.0 - self._temperature) * dt / 3600.0 + rng.gauss(0.0, 0.01) * root
        # Flow: demand follows a compressed day plus noise; nothing flows through a closed slam-shut.
        if self._slam_closed:
            self._flow = 0.0
        else:
            daily = math.sin(2 * math.pi * self._t / self._flow_period_s + self._flow_phase)
            self._flow = min(max(150.0 + 100.0 * daily + rng.gauss(0.0, 5.0), 0.0), MAX_FLOW)
        # The filter clogs slowly, faster at high flow.
        self._filter_dp = min(self._filter_dp + 0.002 * dt * (0.2 + self._flow / MAX_FLOW), 20.0)
        self._update_outlet(dt)
        self._update_methane(dt)

    def _update_outlet(self, dt: float) -> None:
        rng = self._rng
        if self._slam_closed:
            # Downstream consumers drain the isolated pipe.
            self._outlet *= math.exp(-dt / 8.0)
        elif self._scenario_active("overpressure"):
            # Regulator failed open: outlet climbs toward inlet pressure; the relief valve slows it.
            rise = 0.4 - (0.25 if self._relief_open else 0.0)
            self._outlet += rise * dt
        else:
            # Proportional regulator: droops a little with flow, first-order response, sensor noise.
            target = self._setpoint - 0.15 * self._flow / MAX_FLOW
            self._outlet += (target - self._outlet) * min(1.0, dt / 2.0) + rng.gauss(0.0, 0.01) * math.sqrt(dt)
        self._outlet = max(self._outlet, 0.0)
        if self._relief_open and self._outlet < RELIEF_CLOSE_KPA:
            self._relief_open = False
        elif not self._relief_open and self._outlet > RELIEF_OPEN_KPA:
            self._relief_open = True
        if self._outlet > SLAM_SHUT_TRIP_KPA:
            self._slam_closed = True  # latched: only reset_slam_shut() re-opens it

    def _update_methane(self, dt: float) -> None:
        target = self._leak_target if self._scenario_active("leak") else 0.0
        self._methane += (target - self._methane) * min(1.0, dt / 20.0)
        self._methane = min(max(self._methane + self._rng.gauss(0.0, 0.05) * math.sqrt(dt), 0.0), 100.0)

    # ------------------------------------------------------------------ output

    def state(self) -> RegulatorState:
        return RegulatorState(
            time_s=self._t,
            inlet_pressure=self._inlet,
            outlet_pressure=self._outlet,
            temperature=self._temperature,
            filter_dp=self._filter_dp,
            box_methane=self._methane,
            flow=self._flow,
            setpoint=self._setpoint,
            slam_shut_closed=self._slam_closed,
            relief_valve_open=self._relief_open,
            door_open=self._door_open,
        )

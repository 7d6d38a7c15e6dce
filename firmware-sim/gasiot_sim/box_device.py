"""One regulator box as a pymodbus device: its physics, its register image and the request hook.

Shared by the TCP server (one box per port, modbus_server.py) and the RTU bus (several boxes with
distinct unit ids on one line, rtu_bus.py).  pymodbus's datastore is refreshed from our register
image on every request through the device ``action`` hook, so a read always sees the latest tick
and a write reaches the physics before it is acknowledged.
"""

from __future__ import annotations

import logging

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from gasiot_sim import register_map as rm
from gasiot_sim.regulator import RegulatorBox
from gasiot_sim.test_pattern import pattern_registers

_log = logging.getLogger(__name__)

_READ_COILS, _READ_DISCRETE, _READ_HOLDING = 1, 2, 3
_WRITE_COIL, _WRITE_REGISTER, _WRITE_COILS, _WRITE_REGISTERS = 5, 6, 15, 16


class BoxDevice:
    """The Modbus face of one :class:`RegulatorBox` (register map in firmware-sim/README.md).

    ``deaf``: requests reach the datastore but change nothing in the box (a unit that has gone
    silent on a bus does not act on writes it never answers).
    """

    def __init__(self, box: RegulatorBox, *, unit_id: int = rm.UNIT_ID, name: str = "regulator simulator") -> None:
        self.box = box
        self.unit_id = unit_id
        self.name = name  # used in log lines; owners rename it once they know their port
        self.holding = rm.holding_registers(box.state())
        self.comm_lost = box.comm_lost
        self.deaf = False

    def snapshot(self) -> dict[str, rm.ServedValue]:
        """The holding-register values as currently served, in engineering units."""
        return rm.served_values(self.holding)

    def step(self, dt_s: float) -> None:
        """Advance the physics by ``dt_s`` and refresh the register image."""
        self.box.step(dt_s)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the register image from the physics (after a step or a direct change to ``box``)."""
        self.holding = rm.holding_registers(self.box.state())
        lost = self.box.comm_lost
        if lost != self.comm_lost:
            _log.warning("%s: link %s", self.name, "lost" if lost else "restored")
            self.comm_lost = lost

    def sim_device(self) -> SimDevice:
        """A fresh pymodbus device for a server (separate coil/discrete/holding/input tables)."""
        holding = [
            SimData(0, values=self.holding[: rm.SETPOINT_ADDRESS], datatype=DataType.REGISTERS, readonly=True),
            SimData(rm.SETPOINT_ADDRESS, values=self.holding[rm.SETPOINT_ADDRESS], datatype=DataType.REGISTERS),
        ]
        return SimDevice(
            id=self.unit_id,
            # Separate tables (coils, discrete inputs, holding, input), addressed per bit.
            simdata=(
                [SimData(rm.SLAM_RESET_COIL, values=[False] * 16, datatype=DataType.BITS)],
                [SimData(rm.DOOR_DISCRETE_INPUT, values=[False] * 16, datatype=DataType.BITS, readonly=True)],
                holding,
                [SimData(0, values=pattern_registers(), datatype=DataType.REGISTERS, readonly=True)],
            ),
            action=self._action,
        )

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus hook, called before every datastore access with the block's live registers."""
        if self.deaf:
            return None
        if set_values is not None:
            return self._write(function_code, address, set_values)
        if function_code == _READ_HOLDING:
            registers[start_address : start_address + len(self.holding)] = self.holding
        elif function_code == _READ_COILS:
            registers[0] = 0  # slam_shut_reset and emergency_close are commands: they read back 0
        elif function_code == _READ_DISCRETE:
            registers[0] = int(self.box.state().door_open) << rm.DOOR_DISCRETE_INPUT
        return None

    def _write(self, function_code: int, address: int, values: list[int] | list[bool]) -> ExcCodes | None:
        if function_code in (_WRITE_COIL, _WRITE_COILS):
            index = rm.SLAM_RESET_COIL - address
            # A reset is refused silently above the trip level; the status bit shows the valve still closed.
            if 0 <= index < len(values) and values[index] and self.box.reset_slam_shut():
                _log.info("%s: slam-shut reset", self.name)
            index = rm.EMERGENCY_CLOSE_COIL - address
            if 0 <= index < len(values) and values[index] and self.box.emergency_close():
                _log.info("%s: slam-shut closed on command", self.name)
            self.refresh()
            return None
        if function_code in (_WRITE_REGISTER, _WRITE_REGISTERS):
            index = rm.SETPOINT_ADDRESS - address
            if 0 <= index < len(values):
                try:
                    self.box.set_setpoint(int(values[index]) / 100)
                except ValueError:
                    return ExcCodes.ILLEGAL_VALUE
                self.refresh()
        return None

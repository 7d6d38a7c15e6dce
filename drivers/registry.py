"""The one place southbound drivers are plugged in: channel config type → driver factory."""

from __future__ import annotations

from typing import Any

from drivers.base import Driver
from drivers.modbus.config import ModbusTcpChannel
from drivers.modbus.driver import ModbusTcpDriver


def create_driver(channel: Any) -> Driver:
    if isinstance(channel, ModbusTcpChannel):
        return ModbusTcpDriver(channel)
    raise TypeError(f"no driver registered for channel type {type(channel).__name__}")

"""Configuration of Modbus channels (TCP, RTU on a serial line, RTU over TCP) and of the points read
from them (pydantic, validated at load)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RegisterTable = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32", "float64"]
Order = Literal["big", "little"]

# Registers occupied by each register data type ("bool" is one bit or one register bit).
TYPE_WIDTH: dict[DataType, int] = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "float64": 4,
}

BIT_TABLES: frozenset[RegisterTable] = frozenset({"coil", "discrete"})
WRITABLE_TABLES: frozenset[RegisterTable] = frozenset({"coil", "holding"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModbusPoint(_Strict):
    """Where one value lives on the device and how its registers are encoded.

    The driver returns the raw decoded value; scaling to engineering units is the binding's job.
    """

    table: RegisterTable
    address: int = Field(ge=0, le=65535, description="zero-based PDU address")
    type: DataType = "uint16"
    bit: int | None = Field(default=None, ge=0, le=15, description="read one bit (0 = LSB) of a holding/input register")
    byte_order: Order = Field(default="big", description="byte order inside each 16-bit register (big = AB)")
    word_order: Order = Field(
        default="big", description="register order of multi-register values (big = high word first)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModbusPoint:
        if self.table in BIT_TABLES:
            if self.type != "bool":
                raise ValueError(f"a {self.table} point is a single bit: type must be bool, not {self.type}")
            if self.bit is not None:
                raise ValueError(f"`bit` is only for holding/input registers, not {self.table}")
        elif self.type == "bool" and self.bit is None:
            raise ValueError("a bool point on a register table needs `bit` (0..15)")
        elif self.bit is not None and self.type != "bool":
            raise ValueError(f"a point with `bit` has type bool, not {self.type}")
        if self.address + self.width - 1 > 65535:
            raise ValueError(f"address {self.address} + width {self.width} runs past 65535")
        return self

    @property
    def width(self) -> int:
        """Registers (or bits, for coil/discrete) this point occupies."""
        return TYPE_WIDTH[self.type]


class ModbusTcpChannel(_Strict):
    """One Modbus TCP endpoint: one connection, shared by every unit id behind it."""

    driver: Literal["modbus_tcp"] = "modbus_tcp"
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    timeout_s: float = Field(default=1.0, gt=0, description="per request, including connect")
    max_registers: int = Field(default=125, ge=1, le=125, description="registers per read request")
    max_bits: int = Field(default=2000, ge=1, le=2000, description="bits per coil/discrete read")
    max_gap: int = Field(default=8, ge=0, le=100, description="read across at most this many unused registers/bits")


# Bits on the wire per character: start bit + data bits + parity bit (if any) + stop bits.
def _char_bits(bytesize: int, parity: str, stopbits: int) -> int:
    return 1 + bytesize + (parity != "N") + stopbits


class ModbusRtuChannel(_Strict):
    """One RS-485 line (a serial port): one transaction at a time, shared by every unit id on it."""

    driver: Literal["modbus_rtu"] = "modbus_rtu"
    port: str = Field(min_length=1, description="serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/…")
    baudrate: int = Field(default=9600, ge=300, le=921600)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    timeout_s: float = Field(
        default=0.5, gt=0, description="silence allowed after a request, on top of the frames' time on the wire"
    )
    inter_frame_ms: float | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="idle time between frames; None = 3.5 characters (1.75 ms above 19200 baud)",
    )
    max_registers: int = Field(default=125, ge=1, le=125, description="registers per read request")
    max_bits: int = Field(default=2000, ge=1, le=2000, description="bits per coil/discrete read")
    max_gap: int = Field(default=8, ge=0, le=100, description="read across at most this many unused registers/bits")

    @property
    def char_s(self) -> float:
        """Seconds one character takes on the wire at these port settings."""
        return _char_bits(self.bytesize, self.parity, self.stopbits) / self.baudrate

    @property
    def inter_frame_s(self) -> float:
        """The idle gap the driver keeps between the end of one frame and the start of the next."""
        if self.inter_frame_ms is not None:
            return self.inter_frame_ms / 1000
        # Modbus over serial line V1.02, 2.5.1.1: fixed 1.75 ms above 19200 baud.
        return 0.00175 if self.baudrate > 19200 else 3.5 * self.char_s


class ModbusRtuOverTcpChannel(_Strict):
    """RTU frames (unit id + PDU + CRC, no MBAP header) over a TCP socket to a serial device server.

    The serial server owns the line timing; several unit ids behind it share the one connection.
    """

    driver: Literal["modbus_rtu_tcp"] = "modbus_rtu_tcp"
    host: str = Field(min_length=1)
    port: int = Field(default=4001, ge=1, le=65535)
    timeout_s: float = Field(default=1.0, gt=0, description="per request, including connect")
    max_registers: int = Field(default=125, ge=1, le=125, description="registers per read request")
    max_bits: int = Field(default=2000, ge=1, le=2000, description="bits per coil/discrete read")
    max_gap: int = Field(default=8, ge=0, le=100, description="read across at most this many unused registers/bits")

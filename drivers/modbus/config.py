"""Configuration of a Modbus TCP channel and of the points read from it (pydantic, validated at load)."""

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

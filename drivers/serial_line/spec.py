"""Declarative frame specs: a new detector protocol is configuration, not code.

ASCII example (``$01,12.5,0*3A\\r\\n``)::

    kind: ascii
    start: "$"
    end: "\\r\\n"
    separator: ","
    fields: [addr, conc, status]
    checksum: {type: xor8, separator: "*"}      # hex after "*", over the bytes between start and "*"

Binary example (``AA 55 | len | addr | conc(u16 BE) | status | crc16-modbus LE``)::

    kind: binary
    header: "AA55"
    length: {offset: 2, size: 1}                # counts the bytes after the length field, before the checksum
    fields:
      - {name: addr, offset: 3, type: uint8}
      - {name: conc, offset: 4, type: uint16}
      - {name: status, offset: 6, type: uint8}
    checksum: {type: crc16-modbus, byte_order: little}   # over every byte before it
"""

from __future__ import annotations

import struct
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.serial_line.checksum import CHECKSUMS, ChecksumType

BinaryType = Literal["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32"]
STRUCT_CODES: dict[BinaryType, str] = {
    "uint8": "B",
    "int8": "b",
    "uint16": "H",
    "int16": "h",
    "uint32": "I",
    "int32": "i",
    "float32": "f",
}
MAX_FRAME = 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unescape(text: str) -> bytes:
    return text.encode("utf-8").decode("unicode_escape").encode("latin-1")


class AsciiChecksum(_Strict):
    type: ChecksumType
    separator: str = Field("*", min_length=1, description="Text between the fields and the hex checksum")


class AsciiSpec(_Strict):
    kind: Literal["ascii"]
    start: str | None = Field(None, description="Marker a frame starts with (bytes before it are garbage)")
    end: str = Field("\\r\\n", min_length=1, description="Delimiter a frame ends with (escapes allowed)")
    separator: str = Field(",", min_length=1)
    fields: list[str] = Field(min_length=1)
    checksum: AsciiChecksum | None = None
    max_length: int = Field(256, ge=8, le=MAX_FRAME)

    @property
    def start_bytes(self) -> bytes:
        return _unescape(self.start) if self.start else b""

    @property
    def end_bytes(self) -> bytes:
        return _unescape(self.end)


class LengthField(_Strict):
    offset: int = Field(ge=0, le=MAX_FRAME)
    size: Literal[1, 2] = 1
    byte_order: Literal["big", "little"] = "big"
    adjust: int = Field(0, description="Added to the value: some protocols count the header or checksum too")


class BinaryField(_Strict):
    name: str = Field(min_length=1)
    offset: int = Field(ge=0, le=MAX_FRAME)
    type: BinaryType = "uint8"
    byte_order: Literal["big", "little"] = "big"

    @property
    def size(self) -> int:
        return struct.calcsize(STRUCT_CODES[self.type])

    def decode(self, frame: bytes) -> int | float:
        fmt = (">" if self.byte_order == "big" else "<") + STRUCT_CODES[self.type]
        value: int | float = struct.unpack_from(fmt, frame, self.offset)[0]
        return value


class BinaryChecksum(_Strict):
    type: ChecksumType
    byte_order: Literal["big", "little"] = "big"
    start: int = Field(0, ge=0, description="First byte covered (0 = the first header byte)")


class BinarySpec(_Strict):
    kind: Literal["binary"]
    header: str = Field(min_length=2, description="Hex bytes every frame starts with")
    length: LengthField | None = None
    size: int | None = Field(None, ge=1, le=MAX_FRAME, description="Fixed frame size (instead of `length`)")
    fields: list[BinaryField] = Field(min_length=1)
    checksum: BinaryChecksum | None = None

    @field_validator("header")
    @classmethod
    def _hex(cls, text: str) -> str:
        try:
            bytes.fromhex(text)
        except ValueError as err:
            raise ValueError(f"header must be hex bytes, e.g. AA55: {err}") from None
        return text

    @model_validator(mode="after")
    def _shape(self) -> BinarySpec:
        if (self.length is None) == (self.size is None):
            raise ValueError("give exactly one of `length` (a length field) or `size` (fixed frames)")
        if self.length is not None and self.length.offset < len(self.header_bytes):
            raise ValueError("the length field must come after the header")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be unique")
        return self

    @property
    def header_bytes(self) -> bytes:
        return bytes.fromhex(self.header)

    @property
    def checksum_size(self) -> int:
        return CHECKSUMS[self.checksum.type][1] if self.checksum else 0


FrameSpec = Annotated[AsciiSpec | BinarySpec, Field(discriminator="kind")]

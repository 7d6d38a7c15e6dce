"""Line-protocol parsers: known frames, resynchronisation, and fuzzing (never an exception)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from drivers.serial_line.checksum import crc16_ccitt, crc16_modbus, sum8, xor8
from drivers.serial_line.parser import AsciiParser, BinaryParser, parser_for
from drivers.serial_line.spec import AsciiSpec, BinarySpec, FrameSpec
from gasiot_sim.detector_serial import ASCII_PROTOCOL, ascii_frame

SPEC = TypeAdapter(FrameSpec)
BINARY = {
    "kind": "binary",
    "header": "AA55",
    "length": {"offset": 2, "size": 1},
    "fields": [
        {"name": "addr", "offset": 3, "type": "uint8"},
        {"name": "conc", "offset": 4, "type": "uint16"},
        {"name": "status", "offset": 6, "type": "uint8"},
    ],
    "checksum": {"type": "crc16-modbus", "byte_order": "little"},
}


def binary_frame(addr: int, conc: int, status: int) -> bytes:
    body = b"\xaa\x55\x04" + struct.pack(">BHB", addr, conc, status)
    return body + struct.pack("<H", crc16_modbus(body))


def test_checksums_match_the_published_check_values() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37
    assert crc16_ccitt(b"123456789") == 0x29B1
    assert xor8(b"123456789") == 0x31
    assert sum8(b"123456789") == 0xDD


def test_ascii_frames_resync_after_garbage_split_and_bad_checksums() -> None:
    p = AsciiParser(AsciiSpec.model_validate(ASCII_PROTOCOL))
    good1, good2 = ascii_frame(1, 12.5, False, 1), ascii_frame(2, 0.4, False, 0)
    bad = ascii_frame(3, 9.9, False, 0, corrupt=True)
    stream = b"\x00\xffnoise" + good1[:5] + b"" + good1[5:] + bad + b"$$$" + good2
    frames = []
    for i in range(0, len(stream), 3):  # arrives in small pieces
        frames += p.feed(stream[i : i + 3])
    assert frames == [
        {"addr": "01", "conc": "12.5", "fault": "0", "alarm": "1"},
        {"addr": "02", "conc": "0.4", "fault": "0", "alarm": "0"},
    ]
    assert p.stats.frames == 2 and p.stats.checksum_errors == 1 and p.stats.garbage_bytes > 0


def test_binary_frames_resync_after_garbage_and_bad_crc() -> None:
    p = BinaryParser(BinarySpec.model_validate(BINARY))
    bad = bytearray(binary_frame(3, 999, 0))
    bad[-1] ^= 0xFF
    stream = b"\xaa\x00\x55" + binary_frame(1, 1234, 0) + bytes(bad) + b"\xaa" + binary_frame(2, 7, 1)
    frames = p.feed(stream[:10]) + p.feed(stream[10:])
    assert frames == [{"addr": 1, "conc": 1234, "status": 0}, {"addr": 2, "conc": 7, "status": 1}]
    assert p.stats.checksum_errors == 1


def test_fixed_size_binary_frames() -> None:
    spec = {**BINARY, "length": None, "size": 9}
    p = BinaryParser(BinarySpec.model_validate(spec))
    assert p.feed(binary_frame(5, 300, 2)) == [{"addr": 5, "conc": 300, "status": 2}]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({**BINARY, "size": 9}, "exactly one of"),
        ({**BINARY, "header": "ZZ"}, "hex"),
        ({**BINARY, "length": {"offset": 0}}, "after the header"),
        ({"kind": "ascii", "fields": []}, "at least 1"),
    ],
)
def test_bad_specs_are_refused(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SPEC.validate_python(spec)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.binary(max_size=40), st.sampled_from([ascii_frame(1, 1.0, False, 0), b"$", b"*", b"\r\n"])),
        max_size=30,
    )
)
def test_ascii_parser_never_raises_and_only_yields_whole_frames(chunks: list[bytes]) -> None:
    p = parser_for(AsciiSpec.model_validate(ASCII_PROTOCOL))
    frames = [f for c in chunks for f in p.feed(c)]
    assert all(set(f) == {"addr", "conc", "fault", "alarm"} for f in frames)
    assert p.stats.frames == len(frames)
    if b"".join(chunks) == ascii_frame(1, 1.0, False, 0):
        assert frames == [{"addr": "01", "conc": "1.0", "fault": "0", "alarm": "0"}]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), st.just(binary_frame(1, 2, 3)), st.just(b"\xaa\x55")), max_size=30))
def test_binary_parser_never_raises(chunks: list[bytes]) -> None:
    p = parser_for(BinarySpec.model_validate(BINARY))
    frames = [f for c in chunks for f in p.feed(c)]
    assert p.stats.frames == len(frames)
    assert all(set(f) == {"addr", "conc", "status"} for f in frames)
    # frames are never invented: each returned frame passed its CRC, so it is the one good frame we send
    assert all(f == {"addr": 1, "conc": 2, "status": 3} for f in frames) or any(len(c) > 8 for c in chunks)

"""The wire contract on its own: frames round-trip for every codec, no single corrupted byte is
ever accepted, the header has exactly one signed form, bodies stay within their limits, and the
cloud's replies parse back into the types the edge uses."""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, replace
from typing import Any

import cbor2
import pytest
import zstandard

from gascore.contract import (
    CODECS,
    ENCRYPTED,
    GENESIS_DIGEST,
    MAX_NESTING,
    Ack,
    BatchHeader,
    Codec,
    ContractError,
    Frame,
    Rewind,
    TooLarge,
    build_frame,
    canonical_json,
    decode_rows,
    encode_rows,
    parse_frame,
    rows_to_records,
    verify_frame,
)
from gascore.crypto import BadSignature, Signer, verifier_for
from gascore.records import Event, EventLevel, Lane, Quality, Reading

TELEMETRY = [
    Reading("box", "outlet_pressure", 1_700_000_000_000, 3.25),
    Reading("box", "slam_shut", 1_700_000_000_001, True),
    Reading("box", "door", 1_700_000_000_002, 7),
    Reading("box", "fw", 1_700_000_000_003, "v1.2 调压箱"),
    Reading("box", "inlet", 1_700_000_000_004, None, Quality.BAD_COMM_FAILURE),
]
EVENTS = [
    Event("box", "device_offline", 1_700_000_000_000, EventLevel.WARNING, {"reason": "timeout", "n": [1, 2.5]}),
    Event("box", "device_online", 1_700_000_000_001),
]


PLAIN_CODECS = tuple(c for c in CODECS if not c.endswith(ENCRYPTED))  # encrypted: test_payload_encryption.py


def make_frame(signer: Signer, rows: list[list[Any]], codec: Codec = "json", lane: Lane = Lane.TELEMETRY) -> Frame:
    return build_frame(
        signer=signer,
        gateway_id="gw-1",
        lane=lane,
        seq=3,
        prev_digest="ab" * 32,
        created_ms=1_700_000_000_000,
        rows=rows,
        codec=codec,
    )


def accepted(data: bytes, signer: Signer) -> bool:
    """Whether a receiver would accept ``data``: parsed, signed by ``signer``, body decodable."""
    try:
        frame = parse_frame(data)
        verify_frame(frame, verifier_for(signer.alg, signer.public_key_bytes()))
        rows_to_records(
            frame.header.lane, decode_rows(frame.body, frame.header.codec, frame.header.lane, frame.header.count)
        )
    except (ContractError, BadSignature):
        return False
    return True


def signed_header_frame(signer: Signer, header_bytes: bytes, body: bytes) -> bytes:
    return Frame(
        BatchHeader.from_dict(json.loads(header_bytes)), header_bytes, signer.sign(header_bytes), body
    ).to_bytes()


# ---- round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize("codec", PLAIN_CODECS)
@pytest.mark.parametrize(("lane", "records"), [(Lane.TELEMETRY, TELEMETRY), (Lane.EVENTS, EVENTS)])
def test_frame_round_trip(signer: Signer, codec: Codec, lane: Lane, records: list[Any]) -> None:
    sent = make_frame(signer, [r.to_wire() for r in records], codec, lane)
    frame = parse_frame(sent.to_bytes())
    verify_frame(frame, verifier_for(signer.alg, signer.public_key_bytes()))
    assert frame == sent
    assert frame.header.count == len(records) and frame.header.codec == codec
    h = frame.header
    assert rows_to_records(lane, decode_rows(frame.body, h.codec, h.lane, h.count)) == records


def test_cbor_keeps_int_float_and_bool_apart(signer: Signer) -> None:
    rows = [Reading("d", "p", 1, v).to_wire() for v in (1, 1.0, True)]
    f = make_frame(signer, rows, "cbor+zstd")
    values = [r.value for r in rows_to_records(Lane.TELEMETRY, decode_rows(f.body, "cbor+zstd", Lane.TELEMETRY, 3))]
    assert [type(v) for v in values] == [int, float, bool]


# ---- corruption ----------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0x01, 0x80])
def test_no_single_corrupted_byte_is_accepted(signer: Signer, mask: int) -> None:
    data = make_frame(signer, [r.to_wire() for r in TELEMETRY[:2]]).to_bytes()
    assert accepted(data, signer)
    for i in range(len(data)):
        corrupt = bytearray(data)
        corrupt[i] ^= mask
        assert not accepted(bytes(corrupt), signer), f"byte {i} ^ {mask:#x} was accepted"


def test_every_truncation_is_refused(signer: Signer) -> None:
    data = make_frame(signer, [r.to_wire() for r in TELEMETRY[:2]], "cbor+zstd").to_bytes()
    for n in range(len(data)):
        with pytest.raises(ContractError):
            parse_frame(data[:n])


def test_appended_bytes_are_refused(signer: Signer) -> None:
    data = make_frame(signer, [r.to_wire() for r in TELEMETRY[:2]], "cbor+zstd").to_bytes()
    with pytest.raises(ContractError, match="digest"):
        parse_frame(data + b"\x00")


# ---- header form ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reform",
    [
        lambda h: json.dumps(h, sort_keys=True).encode(),  # spaces
        lambda h: json.dumps(h, separators=(",", ":")).encode(),  # key order as built
        lambda h: json.dumps(dict(sorted(h.items(), reverse=True)), separators=(",", ":")).encode(),
        lambda h: canonical_json(h) + b" ",
        lambda h: canonical_json(h).replace(b'"seq":3', b'"seq":3.0'),
        lambda h: canonical_json(h).replace(b'"seq":3', b'"seq":03'),
        lambda h: canonical_json(h).replace(b'"lane":"telemetry"', b'"lane":"\\u0074elemetry"'),
        lambda h: canonical_json(h).replace(b'"prev_digest":"abab', b'"prev_digest":"ABab'),
    ],
    ids=["spaces", "unsorted", "reversed", "trailing-space", "float-seq", "leading-zero", "escaped", "upper-hex"],
)
def test_a_non_canonical_header_is_refused_even_when_signed(signer: Signer, reform: Any) -> None:
    f = make_frame(signer, [TELEMETRY[0].to_wire()])
    raw = reform(asdict(f.header) | {"lane": "telemetry"})
    assert raw != f.header_bytes
    data = Frame(f.header, raw, signer.sign(raw), f.body).to_bytes()
    with pytest.raises(ContractError):
        parse_frame(data)


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_a_header_with_a_missing_or_extra_field_is_refused(signer: Signer, change: str) -> None:
    f = make_frame(signer, [TELEMETRY[0].to_wire()])
    fields = asdict(f.header) | {"lane": "telemetry"}
    if change == "missing":
        del fields[name := "created_ms"]
    else:
        fields[name := "priority"] = 1
    raw = canonical_json(fields)
    data = Frame(f.header, raw, signer.sign(raw), f.body).to_bytes()
    with pytest.raises(ContractError, match=name):
        parse_frame(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("v", 2),
        ("seq", 0),
        ("seq", True),
        ("count", -1),
        ("count", 50_001),
        ("codec", "gzip"),
        ("lane", "alarms"),
        ("prev_digest", "0x" + "0" * 62),
        ("prev_digest", " " + "0" * 63),
        ("gateway_id", ""),
    ],
)
def test_a_header_field_out_of_contract_is_refused(signer: Signer, field: str, value: Any) -> None:
    f = make_frame(signer, [TELEMETRY[0].to_wire()])
    raw = canonical_json(asdict(f.header) | {"lane": "telemetry", field: value})
    with pytest.raises(ContractError):
        parse_frame(Frame(f.header, raw, signer.sign(raw), f.body).to_bytes())


def test_frame_length_fields_out_of_bounds_are_refused(signer: Signer) -> None:
    data = make_frame(signer, [TELEMETRY[0].to_wire()]).to_bytes()
    (hlen,) = struct.unpack_from(">I", data, 4)
    for bad in (
        b"GSB2" + data[4:],
        data[:4] + struct.pack(">I", 5000) + data[8:],
        data[:4] + struct.pack(">I", 2**32 - 1) + data[8:],
    ):
        with pytest.raises(ContractError):
            parse_frame(bad)
    sig_len_at = 8 + hlen
    with pytest.raises(ContractError):
        parse_frame(data[:sig_len_at] + struct.pack(">H", 600) + data[sig_len_at + 2 :])


# ---- body limits ---------------------------------------------------------------------------


def test_decompressed_size_is_bounded_by_the_row_count() -> None:
    rows = [Reading("d", "p", i, 1.0).to_wire() for i in range(1000)]
    body = encode_rows(rows, "cbor+zstd")
    assert len(decode_rows(body, "cbor+zstd", Lane.TELEMETRY, 1000)) == 1000
    with pytest.raises(ContractError):  # the same bytes claimed as one row: refused, not decoded
        decode_rows(body, "cbor+zstd", Lane.TELEMETRY, 1)


def test_the_largest_legitimate_rows_fit_their_allowance() -> None:
    """The limits must never refuse what a well-behaved edge sends, or its lane stalls."""
    name = "名" * 128
    worst_reading = Reading(name, name, -(2**63), "\U0001f525" * 1024).to_wire()
    worst_control = Reading(name, name, 2**63 - 1, "\x01" * 1024).to_wire()  # 6-byte JSON escapes
    floats = [1.0] * 3000  # CBOR spends 9 bytes on what JSON writes in 4
    worst_event = Event(name, name, 2**63 - 1, EventLevel.CRITICAL, {"f": floats, "s": "x" * 3000}).to_wire()
    for codec in PLAIN_CODECS:
        for lane, row in ((Lane.TELEMETRY, worst_reading), (Lane.TELEMETRY, worst_control), (Lane.EVENTS, worst_event)):
            for count in (1, 100):
                rows = decode_rows(encode_rows([row] * count, codec), codec, lane, count)
                assert len(rows_to_records(lane, rows)) == count, (codec, lane, count)


def test_a_frame_asking_for_a_huge_zstd_window_is_refused() -> None:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27, write_content_size=False)
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()  # size unknown: window kept
    body = cobj.compress(cbor2.dumps([Reading("d", "p", 1, 1.0).to_wire()])) + cobj.flush()
    assert zstandard.get_frame_parameters(body).window_size == 128 * 1024 * 1024
    with pytest.raises(ContractError, match="decompress"):
        decode_rows(body, "cbor+zstd", Lane.TELEMETRY, 1)


def test_nesting_and_items_are_bounded_before_decoding() -> None:
    too_deep = {"d": 0}
    for _ in range(MAX_NESTING):
        too_deep = {"d": too_deep}
    body = encode_rows([Event("d", "k", 1, EventLevel.INFO, too_deep).to_wire()], "cbor+zstd")
    with pytest.raises(ContractError, match="nested"):
        decode_rows(body, "cbor+zstd", Lane.EVENTS, 1)
    many = encode_rows([["d", "p", 1, 1.0, "good", *([0] * 5000)]], "cbor+zstd")
    with pytest.raises(TooLarge):
        decode_rows(many, "cbor+zstd", Lane.TELEMETRY, 1)
    many_json = encode_rows([["d", "p", 1, 1.0, "good", *([0] * 5000)]], "json")
    with pytest.raises(TooLarge):
        decode_rows(many_json, "json", Lane.TELEMETRY, 1)
    commas_in_strings = encode_rows([Reading("d", "p", 1, ",:[{" * 256).to_wire()], "json")
    assert decode_rows(commas_in_strings, "json", Lane.TELEMETRY, 1)  # strings do not count


# ---- replies -------------------------------------------------------------------------------


def test_ack_json_round_trip_and_field_names() -> None:
    ack = Ack(Lane.EVENTS, 7, "c" * 64, "stored", ignored=2)
    assert ack.to_json() == {"status": "stored", "lane": "events", "seq": 7, "digest": "c" * 64, "ignored": 2}
    assert Ack.from_json(json.loads(json.dumps(ack.to_json()))) == ack
    older_cloud = {"status": "duplicate", "lane": "telemetry", "seq": 1, "digest": "0" * 64}
    assert Ack.from_json(older_cloud) == Ack(Lane.TELEMETRY, 1, "0" * 64, "duplicate", 0)


def test_rewind_json_round_trip_and_field_names() -> None:
    rewind = Rewind(Lane.TELEMETRY, 4, GENESIS_DIGEST, "gap", "seq 6 leaves a gap")
    assert rewind.to_json() == {
        "error": "gap",
        "detail": "seq 6 leaves a gap",
        "lane": "telemetry",
        "expected_seq": 4,
        "last_digest": GENESIS_DIGEST,
    }
    assert Rewind.from_json(json.loads(json.dumps(rewind.to_json()))) == rewind


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"status": "stored"},
        {"status": "kept", "lane": "events", "seq": 1, "digest": "0" * 64},
        {"status": "stored", "lane": "events", "seq": "1", "digest": "0" * 64},
        {"status": "stored", "lane": "alarms", "seq": 1, "digest": "0" * 64},
        {"status": "stored", "lane": "events", "seq": 1, "digest": "xyz"},
        {"status": "stored", "lane": "events", "seq": 1, "digest": "0" * 64, "ignored": None},
    ],
)
def test_a_malformed_ack_is_refused(body: Any) -> None:
    with pytest.raises(ContractError):
        Ack.from_json(body)


@pytest.mark.parametrize(
    "change",
    [{"error": "unauthenticated"}, {"expected_seq": 0}, {"expected_seq": None}, {"last_digest": ""}, {"lane": 1}],
)
def test_a_malformed_rewind_is_refused(change: dict[str, Any]) -> None:
    body = Rewind(Lane.EVENTS, 2, GENESIS_DIGEST, "chain").to_json() | change
    with pytest.raises(ContractError):
        Rewind.from_json(body)


def test_header_digest_is_over_the_canonical_bytes(signer: Signer) -> None:
    f = make_frame(signer, [])
    assert replace(f.header, seq=4).digest() != f.header.digest()
    assert BatchHeader.from_dict(json.loads(f.header_bytes)).canonical() == f.header_bytes

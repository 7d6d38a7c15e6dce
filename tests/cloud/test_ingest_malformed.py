"""A correctly signed batch with content the cloud cannot store faithfully: a 4xx JSON error,
nothing stored, the lane unmoved (the same seq with good content is accepted), and never a 500,
a traceback or a server that runs out of memory."""

from __future__ import annotations

import json
import math
import struct
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

import cbor2
import pytest
import zstandard

from gascore.contract import GENESIS_DIGEST, Codec
from gascore.records import Event, Lane, Reading

GOOD = {
    Lane.TELEMETRY: [Reading("box", "p", 1, 1.0).to_wire()],
    Lane.EVENTS: [Event("box", "device_online", 1).to_wire()],
}


@dataclass(frozen=True)
class Case:
    id: str
    lane: Lane
    codec: Codec
    body: bytes
    count: int = 1
    status: int = 400
    expect: str = ""  # in the detail, where the case targets one particular check


def cbor(rows: list[Any]) -> bytes:
    return zstandard.ZstdCompressor().compress(cbor2.dumps(rows))


def js(text: str) -> bytes:
    return text.encode()


def reading(value: Any = 1.0, ts: Any = 1) -> list[Any]:
    return ["box", "p", ts, value, "good"]


def event(data: Any = None, ts: Any = 1, kind: Any = "k", level: Any = "info") -> list[Any]:
    return ["box", kind, ts, level, {} if data is None else data]


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


T, E = Lane.TELEMETRY, Lane.EVENTS
CASES = [
    # integers SQLite cannot hold (OverflowError in the database before)
    Case("value-2**70-json", T, "json", js(f'[["box","p",1,{2**70},"good"]]')),
    Case("value-2**70-cbor-bignum", T, "cbor+zstd", cbor([reading(2**70)]), expect="tags"),
    Case("value-2**63-cbor", T, "cbor+zstd", cbor([reading(2**63)]), expect="64-bit"),
    Case("value--2**63-1-cbor", T, "cbor+zstd", cbor([reading(-(2**63) - 1)])),
    Case("ts-2**70-json", T, "json", js(f'[["box","p",{2**70},1.0,"good"]]')),
    Case("ts-bool", T, "cbor+zstd", cbor([reading(ts=True)])),
    # non-finite floats: a device's NaN must arrive as quality bad with value null
    Case("value-nan-cbor", T, "cbor+zstd", cbor([reading(math.nan)])),
    Case("value-inf-json", T, "json+zstd", zstandard.ZstdCompressor().compress(b'[["box","p",1,Infinity,"good"]]')),
    Case("value-bytes-cbor", T, "cbor+zstd", cbor([reading(b"\x00")])),
    Case("value-lone-surrogate", T, "json", js('[["box","p",1,"\\ud800","good"]]'), expect="surrogate"),
    Case("point-lone-surrogate", T, "json", js('[["box","\\udfff",1,1.0,"good"]]'), expect="surrogate"),
    # NUL, which PostgreSQL text cannot hold (a 500 there before)
    Case("value-nul", T, "json", js('[["box","p",1,"a\\u0000b","good"]]'), expect="NUL"),
    Case("device-nul", T, "cbor+zstd", cbor([["bo\x00x", "p", 1, 1.0, "good"]]), expect="NUL"),
    Case("event-data-nul", E, "json", js(json.dumps([event({"s": "x\x00y"})])), expect="NUL"),
    Case("device-too-long", T, "cbor+zstd", cbor([["b" * 200, "p", 1, 1.0, "good"]])),
    # nesting the decoder recurses on (RecursionError before)
    # (count 50k, so that the size and item bounds leave room and the parser meets the depth)
    Case("deep-json", T, "json", js("[" * 100_000 + "]" * 100_000), count=50_000, expect="RecursionError"),
    Case("deep-cbor", T, "cbor+zstd", zstandard.ZstdCompressor().compress(b"\x81" * 5_000 + b"\x80"), expect="nested"),
    Case("value-nested", T, "cbor+zstd", cbor([reading(nested(3))])),
    # event rows, as strict as readings
    Case("event-data-bytes", E, "cbor+zstd", cbor([event({"raw": b"\x01\x02"})])),
    Case("event-data-nan", E, "cbor+zstd", cbor([event({"x": math.nan})])),
    Case("event-data-int-key", E, "cbor+zstd", cbor([event({1: "x"})])),
    Case("event-data-not-object", E, "json", js('[["box","k",1,"info",[1,2]]]')),
    Case("event-data-too-large", E, "json", js(json.dumps([event({"s": "x" * 20_000})])), expect="16384"),
    Case("event-data-too-deep", E, "json", js(json.dumps([event({"d": nested(20)})]))),
    Case("event-data-2**70", E, "json", js(json.dumps([event({"n": 2**70})]))),
    Case("event-ts-inf", E, "cbor+zstd", cbor([event(ts=math.inf)])),
    Case("event-ts-2**70", E, "json", js(json.dumps([event(ts=2**70)]))),
    Case("event-ts-string", E, "json", js(json.dumps([event(ts="1")]))),
    Case("event-kind-empty", E, "json", js(json.dumps([event(kind="")]))),
    Case("event-kind-int", E, "json", js(json.dumps([event(kind=7)]))),
    Case("event-level-unknown", E, "json", js(json.dumps([event(level="apocalyptic")]))),
    Case("event-short-row", E, "json", js('[["box","k",1,"info"]]')),
    # the body's shape
    Case("count-mismatch-cbor", T, "cbor+zstd", cbor([reading(), reading()]), count=1),
    Case("count-mismatch-json", T, "json", js(json.dumps([reading(), reading()])), count=3),
    Case(
        "cbor-indefinite-array",
        T,
        "cbor+zstd",
        zstandard.ZstdCompressor().compress(b"\x9f" + cbor2.dumps(reading()) + b"\xff"),
    ),
    Case(
        "cbor-shared-ref-tag", T, "cbor+zstd", zstandard.ZstdCompressor().compress(b"\x81\xd8\x1c\x80"), expect="tags"
    ),
    Case(
        "cbor-trailing-bytes", T, "cbor+zstd", zstandard.ZstdCompressor().compress(cbor2.dumps([reading()]) + b"\x00")
    ),
    Case("zstd-garbage", T, "cbor+zstd", b"\x28\xb5\x2f\xfd garbage"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_malformed_content_is_a_json_4xx_that_stores_nothing(batches, case: Case) -> None:
    frame = batches.raw_frame(1, GENESIS_DIGEST, case.body, case.count, lane=case.lane, codec=case.codec)
    reply = await batches.post(frame)
    assert (reply.status, reply.content_type) == (case.status, "application/json"), reply.body
    assert reply.body["error"] == ("malformed" if case.status == 400 else "too_large")
    assert "Traceback" not in reply.body["detail"] and case.expect in reply.body["detail"]
    for table in ("readings", "events", "batches", "lanes"):
        assert batches.count(table) == 0, table
    good = batches.frame(1, GENESIS_DIGEST, GOOD[case.lane], lane=case.lane)
    reply = await batches.post(good)
    assert (reply.status, reply.body["status"]) == (200, "stored")


def bomb_frames(batches) -> list[tuple[str, bytes]]:
    """Small signed frames that decode into hundreds of MB of Python objects if nothing stops them."""
    empties = b"\x80" * 8_000_000
    top_8m = b"\x9a" + struct.pack(">I", 8_000_000) + empties  # [[], [], ... 8M times]
    sized = zstandard.ZstdCompressor(write_content_size=True).compress(top_8m)
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(top_8m)
    # a valid top level of 1000 rows, the first of which holds 5M empty arrays
    rows = cbor2.dumps([reading()] * 999)
    inner = b"\x9a" + struct.pack(">I", 1000) + b"\x9a" + struct.pack(">I", 5_000_000) + empties[:5_000_000] + rows[3:]
    json_inner = b"[[" + b"[]," * 2_000_000 + b"[]]" + b',["box","p",1,1.0,"good"]' * 999 + b"]"
    return [
        ("8M-arrays-declared-size", batches.raw_frame(1, GENESIS_DIGEST, sized, 1, lane=T, codec="cbor+zstd")),
        ("8M-arrays-no-size", batches.raw_frame(1, GENESIS_DIGEST, unsized, 1, lane=T, codec="cbor+zstd")),
        ("8M-arrays-count-50k", batches.raw_frame(1, GENESIS_DIGEST, unsized, 50_000, lane=T, codec="cbor+zstd")),
        (
            "5M-arrays-in-one-row",
            batches.raw_frame(
                1, GENESIS_DIGEST, zstandard.ZstdCompressor().compress(inner), 1000, lane=T, codec="cbor+zstd"
            ),
        ),
        (
            "2M-arrays-json",
            batches.raw_frame(
                1, GENESIS_DIGEST, zstandard.ZstdCompressor().compress(json_inner), 1000, lane=T, codec="json+zstd"
            ),
        ),
    ]


async def test_decompression_bombs_are_refused_cheaply(batches) -> None:
    for name, frame in bomb_frames(batches):
        data = frame.to_bytes()
        assert len(data) < 64 * 1024, name  # tiny on the wire
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            reply = await batches.post(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        elapsed = time.perf_counter() - t0
        assert reply.status in (400, 413) and reply.body["error"] in ("malformed", "too_large"), (name, reply)
        assert peak < 50 * 1024 * 1024, f"{name}: {peak / 1e6:.0f} MB allocated"
        assert elapsed < 5, f"{name}: {elapsed:.1f} s"
    assert batches.count("readings") == 0
    reply = await batches.post(batches.frame(1, GENESIS_DIGEST, GOOD[T]))
    assert (reply.status, reply.body["status"]) == (200, "stored")

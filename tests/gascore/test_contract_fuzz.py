"""Fuzzing the batch decoder with what a compromised (authenticated) gateway could send (#8, bad
input): bodies holding CBOR or JSON of any shape — tags, big integers, nested maps, byte strings,
wrong row counts — and random bytes, compressed or not, decode to records or fail with a
ContractError (a clear 4xx at the cloud), never with another exception.  Replies the edge parses
(ack, rewind) likewise."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import cbor2
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from gascore.contract import Ack, ContractError, Rewind, decode_rows, rows_to_records
from gascore.records import Lane

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=20),
)
cbor_values = st.recursive(
    st.one_of(scalars, st.builds(cbor2.CBORTag, st.sampled_from([0, 1, 2, 3, 4, 5, 30, 258, 55799]), scalars)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=4)
    ),
    max_leaves=30,
)
row_like = st.lists(
    st.one_of(
        st.tuples(st.text(max_size=8), st.text(max_size=8), st.integers(), scalars, st.text(max_size=8)).map(list),
        cbor_values,
    ),
    max_size=8,
)


def decode_or_refuse(body: bytes, codec: Any, lane: Lane, count: int) -> None:
    try:
        rows = decode_rows(body, codec, lane, count)
    except ContractError:
        return
    assert isinstance(rows, list) and len(rows) == count
    try:
        records = rows_to_records(lane, rows)
    except ContractError:
        return
    assert len(records) == count


@settings(max_examples=400, deadline=None)
@given(rows=row_like, lane=st.sampled_from(list(Lane)), lie=st.integers(-2, 2))
def test_cbor_of_any_shape_decodes_or_is_refused(rows: list[Any], lane: Lane, lie: int) -> None:
    try:
        raw = cbor2.dumps(rows)
    except (ValueError, TypeError, OverflowError):
        return  # nothing cbor2 can encode, nothing a gateway can send
    body = zstandard.ZstdCompressor(level=1).compress(raw)
    decode_or_refuse(body, "cbor+zstd", lane, max(0, len(rows) + lie))


@settings(max_examples=300, deadline=None)
@given(rows=row_like, lane=st.sampled_from(list(Lane)))
def test_json_of_any_shape_decodes_or_is_refused(rows: list[Any], lane: Lane) -> None:
    try:
        body = json.dumps(rows, default=repr).encode()
    except (ValueError, TypeError):
        return
    decode_or_refuse(body, "json", lane, len(rows))
    decode_or_refuse(zstandard.ZstdCompressor().compress(body), "json+zstd", lane, len(rows))


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=600), codec=st.sampled_from(["cbor+zstd", "json+zstd", "json"]), count=st.integers(0, 5))
def test_random_bytes_are_refused(body: bytes, codec: Any, count: int) -> None:
    decode_or_refuse(body, codec, Lane.TELEMETRY, count)
    decode_or_refuse(zstandard.ZstdCompressor().compress(body), codec, Lane.EVENTS, count)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=16)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=6)),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"lane": st.sampled_from(["telemetry", "events", "x"]), "seq": st.integers(-5, 2**70)},
            optional={
                "digest": st.text(max_size=70),
                "status": st.text(max_size=10),
                "ignored": json_values,
                "expected_seq": json_values,
                "last_digest": json_values,
                "reason": json_values,
            },
        ),
    )
)
def test_cloud_replies_of_any_shape_parse_or_are_refused(value: Any) -> None:
    for kind in (Ack, Rewind):
        with contextlib.suppress(ContractError):  # refused is fine; anything else is not
            kind.from_json(value)

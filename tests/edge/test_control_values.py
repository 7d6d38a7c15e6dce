"""What a SCADA client (a method's input arguments, decoded by asyncua from any variant) or a
cloud command can hand the control path (#8, bad input): any Python value ends as either a value
of the property's type inside its range, or ControlRefused naming the property — never another
exception, never a value the model does not allow."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

from asyncua import ua
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.control import ControlRefused, check_value
from gascore.thingmodel import Name, Property

NAME = Name(zh="点", en="point")
PROPERTIES = [
    Property(id="setpoint", name=NAME, type="float", unit="kPa", range=(0.0, 400.0), access="rw"),
    Property(id="count", name=NAME, type="int", range=(-5.0, 5.0), access="rw"),
    Property(id="any_int", name=NAME, type="int", access="rw"),
    Property(id="mode", name=NAME, type="enum", values={0: "auto", 1: "manual", 7: "test"}, access="rw"),
    Property(id="valve", name=NAME, type="bool", access="rw"),
    Property(id="note", name=NAME, type="string", access="rw"),
]

anything = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(),
        st.text(max_size=20),
        st.binary(max_size=20),
        st.datetimes(timezones=st.just(UTC)),
        st.uuids(),
        st.builds(ua.NodeId, st.integers(0, 2**32 - 1), st.integers(0, 65535)),
        st.builds(ua.LocalizedText, st.text(max_size=10)),
        st.builds(lambda c: ua.StatusCode(ua.UInt32(c)), st.integers(0, 2**32 - 1)),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(PROPERTIES), anything)
def test_any_value_is_checked_or_refused(prop: Property, value: object) -> None:
    try:
        checked = check_value(prop, value, f"box.{prop.id}")
    except ControlRefused as err:
        assert f"box.{prop.id}" in str(err)
        return
    if prop.type == "bool":
        assert checked is value
    elif prop.type == "string":
        assert isinstance(checked, str) and checked == value
    elif prop.type in ("int", "enum"):
        assert type(checked) is int and checked == value
        if prop.values:
            assert checked in prop.values
    else:
        assert type(checked) is float and math.isfinite(checked)
    if prop.range is not None:
        assert prop.range[0] <= checked <= prop.range[1]


def test_the_values_a_method_call_can_carry_are_refused_with_the_reason() -> None:
    with_reason = {
        "setpoint": [(math.nan, "not a finite number"), (401.0, "outside 0.0–400.0 kPa"), ("3", "takes a number")],
        "mode": [(2, "not one of [0, 1, 7]"), (0.5, "whole number"), (True, "takes a number")],
        "valve": [(1, "true/false"), ("true", "true/false")],
        "note": [(b"x", "takes text"), (uuid.UUID(int=0), "takes text")],
        "any_int": [(datetime(2026, 1, 1, tzinfo=UTC), "takes a number"), ([1], "takes a number")],
    }
    by_id = {p.id: p for p in PROPERTIES}
    for pid, cases in with_reason.items():
        for value, reason in cases:
            try:
                check_value(by_id[pid], value, pid)
            except ControlRefused as err:
                assert reason in str(err), (pid, value, str(err))
            else:
                raise AssertionError(f"{pid} accepted {value!r}")

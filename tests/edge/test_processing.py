"""Scale/offset, range check and report-by-exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import Sample
from edge.processing import DeviceProcessor, PointSpec
from gascore.thingmodel import Name, Property

NAME = Name(zh="x", en="x")


def spec(key: str, type_: str = "float", rng: tuple[float, float] | None = None, **kw: float | None) -> PointSpec:
    return PointSpec(key, Property(id=key, name=NAME, type=type_, range=rng), **kw)  # type: ignore[arg-type]


def test_scale_offset_type_and_range() -> None:
    proc = DeviceProcessor(
        "d",
        [spec("t", rng=(-40, 80), scale=0.1, offset=-50.0), spec("n", "int", scale=0.5), spec("b", "bool")],
        60_000,
    )
    out = proc.process([Sample("t", 1534), Sample("n", 7), Sample("b", True)], 1)
    by = {r.point: r for r in out}
    assert by["t"].value == 103.4 - 0.0 - 0 or abs(by["t"].value - 103.4) < 1e-9  # type: ignore[operator]
    assert str(by["t"].quality) == "bad/out_of_range"  # value kept, quality says why
    assert by["n"].value == 4 and type(by["n"].value) is int
    assert by["b"].value is True and str(by["b"].quality) == "good"


def test_deadband_and_max_silent_interval() -> None:
    proc = DeviceProcessor("d", [spec("p", deadband=0.5)], max_silent_ms=10_000)
    assert len(proc.process([Sample("p", 10.0)], 0)) == 1
    assert proc.process([Sample("p", 10.4)], 1_000) == []  # inside deadband
    assert len(proc.process([Sample("p", 10.6)], 2_000)) == 1  # outside
    assert proc.process([Sample("p", 10.6)], 11_000) == []
    assert len(proc.process([Sample("p", 10.6)], 12_000)) == 1  # max silent interval reached


def test_no_deadband_reports_changes_only() -> None:
    proc = DeviceProcessor("d", [spec("b", "bool")], max_silent_ms=60_000)
    assert len(proc.process([Sample("b", False)], 0)) == 1
    assert proc.process([Sample("b", False)], 1) == []
    assert len(proc.process([Sample("b", True)], 2)) == 1


def test_comm_failure_is_reported_once_then_recovery_reports_again() -> None:
    proc = DeviceProcessor("d", [spec("p"), spec("q")], max_silent_ms=60_000)
    proc.process([Sample("p", 1.0), Sample("q", 2.0)], 0)
    first = proc.comm_failure(1)
    assert [str(r.quality) for r in first] == ["bad/comm_failure"] * 2 and all(r.value is None for r in first)
    assert proc.comm_failure(2) == []
    back = proc.process([Sample("p", 1.0), Sample("q", 2.0)], 3)
    assert len(back) == 2 and all(str(r.quality) == "good" for r in back)


def test_device_error_marks_only_that_point() -> None:
    proc = DeviceProcessor("d", [spec("p"), spec("q")], max_silent_ms=60_000)
    out = proc.process([Sample("p", None, "modbus_exception_2"), Sample("q", 2.0)], 0)
    assert [(r.point, str(r.quality)) for r in out] == [("p", "bad/device_error"), ("q", "good")]


def test_decimal_scales_divide_so_values_come_out_as_written() -> None:
    proc = DeviceProcessor("d", [spec("a", scale=0.1), spec("b", scale=0.01), spec("c", scale=0.25, offset=1.0)], 1)
    by = {r.point: r.value for r in proc.process([Sample("a", 117), Sample("b", 371), Sample("c", 3)], 0)}
    assert by == {"a": 11.7, "b": 3.71, "c": 1.75}


def test_nan_and_inf_become_sensor_fault_for_every_property_type() -> None:
    specs = [spec("f"), spec("i", "int"), spec("s", scale=0.1)]
    proc = DeviceProcessor("d", specs, 60_000)
    for bad in (float("nan"), float("inf"), float("-inf")):
        out = proc.process([Sample("f", bad), Sample("i", bad), Sample("s", bad)], 0)
        assert all(r.value is None and r.quality.value == "bad/sensor_fault" for r in out)
        proc = DeviceProcessor("d", specs, 60_000)


def test_enum_values_outside_the_model_are_out_of_range() -> None:
    prop = Property(id="e", name=NAME, type="enum", values={0: "ok", 1: "low", 2: "high"})
    proc = DeviceProcessor("d", [PointSpec("e", prop)], 60_000)
    (good,) = proc.process([Sample("e", 2)], 0)
    (bad,) = proc.process([Sample("e", 7)], 1)
    assert (good.value, good.quality.value) == (2, "good")
    assert (bad.value, bad.quality.value) == (7, "bad/out_of_range")


def test_nul_characters_are_dropped_from_text_values() -> None:
    from gascore.records import Reading

    proc = DeviceProcessor("d", [spec("fw", "string")], 60_000)
    (reading,) = proc.process([Sample("fw", "v1.\x002")], 0)
    assert reading.value == "v1.2"
    Reading.from_wire(reading.to_wire())  # the cloud accepts what the edge sends


@settings(max_examples=400, deadline=None)
@given(
    raw=st.one_of(
        st.integers(-(2**32), 2**32),
        st.floats(allow_nan=True, allow_infinity=True, width=64),
        st.booleans(),
        st.sampled_from(["12.5", "x", "nan"]),
    ),
    scale=st.sampled_from([1.0, 0.1, 0.01, 10.0, 1e300, 0.3]),
    offset=st.sampled_from([0.0, -50.0, 1e308]),
    rng=st.sampled_from([None, (-10.0, 10.0), (0.0, 1e9), (-1e308, -1.0)]),
)
def test_the_inline_float_path_is_exactly_the_general_one(
    raw: object, scale: float, offset: float, rng: tuple[float, float] | None
) -> None:
    """A float property, with or without a range, takes an inline path in ``process``; its
    value, type and quality are what the general conversion (``_convert``) gives, for every raw
    value."""
    from edge.processing import _convert

    proc = DeviceProcessor("d", [spec("p", rng=rng, scale=scale, offset=offset)], 60_000)
    point = proc._points["p"]
    assert point.inline_float
    expected = _convert(point, raw)  # type: ignore[arg-type]
    (reading,) = proc.process([Sample("p", raw)], 1)  # type: ignore[arg-type]
    got = (reading.value, reading.quality)
    assert type(got[0]) is type(expected[0]) and got[1] is expected[1]
    assert got[0] == expected[0] or (got[0] != got[0] and expected[0] != expected[0])

"""Every rule kind with a scripted time source: levels, hysteresis, on/off delays, quality,
stuck/stale/rate, comm loss, state, expressions across devices, computed points, aggregates."""

from __future__ import annotations

from typing import Any

import pytest
from rules_helpers import BAD, BOX, GOOD, UNCERTAIN, active, build, feed, flips, pack, rd

from edge.rules.config import StationRules
from edge.rules.engine import RuleEngine
from edge.rules.types import Message
from gascore.records import Quality

FOUR: dict[str, Any] = {
    "id": "p",
    "kind": "threshold",
    "property": "p",
    "levels": {"hihi": 90, "hi": 70, "lo": 30, "lolo": 10},
}

# ---- threshold --------------------------------------------------------------------------------


def test_threshold_every_level_raises_and_clears() -> None:
    eng = build([FOUR])
    assert sorted(cid for cid, _ in eng.conditions()) == ["d1.p.hi", "d1.p.hihi", "d1.p.lo", "d1.p.lolo"]
    assert flips(feed(eng, "p", 1_000, 50.0)) == []
    assert flips(feed(eng, "p", 2_000, 75.0)) == [("d1.p.hi", True, 2_000)]
    assert flips(feed(eng, "p", 3_000, 95.0)) == [("d1.p.hihi", True, 3_000)]
    assert flips(feed(eng, "p", 4_000, 50.0)) == [("d1.p.hi", False, 4_000), ("d1.p.hihi", False, 4_000)]
    assert flips(feed(eng, "p", 5_000, 25.0)) == [("d1.p.lo", True, 5_000)]
    assert flips(feed(eng, "p", 6_000, 5.0)) == [("d1.p.lolo", True, 6_000)]
    assert active(eng) == {"d1.p.lo", "d1.p.lolo"}
    assert flips(feed(eng, "p", 7_000, 50.0)) == [("d1.p.lo", False, 7_000), ("d1.p.lolo", False, 7_000)]
    assert flips(feed(eng, "p", 8_000, 0.0)) == [("d1.p.lo", True, 8_000), ("d1.p.lolo", True, 8_000)]


def test_threshold_limits_are_inclusive_and_ints_count() -> None:
    eng = build([FOUR])
    assert flips(feed(eng, "p", 1, 70)) == [("d1.p.hi", True, 1)]
    assert flips(feed(eng, "p", 2, 30)) == [("d1.p.hi", False, 2), ("d1.p.lo", True, 2)]


def test_threshold_default_priorities_messages_and_source() -> None:
    eng = build([FOUR])
    out = feed(eng, "p", 1, 95.0)
    by = {c.condition_id: c for c in out.changes}
    assert by["d1.p.hi"].priority == "medium" and by["d1.p.hihi"].priority == "high"
    assert by["d1.p.hi"].message == Message("压力超高限", "Pressure high")
    assert by["d1.p.hihi"].message == Message("压力超高高限", "Pressure high-high")
    assert (by["d1.p.hi"].device, by["d1.p.hi"].rule, by["d1.p.hi"].value) == ("d1", "p", 95.0)
    assert by["d1.p.hi"].source == "t: test"
    out = feed(eng, "p", 2, 5.0)
    by = {c.condition_id: c for c in out.changes if c.active}
    assert by["d1.p.lo"].priority == "medium" and by["d1.p.lolo"].priority == "high"
    assert by["d1.p.lolo"].message == Message("压力低于低低限", "Pressure low-low")


def test_level_spec_with_priority_message_and_event() -> None:
    rule = {
        "id": "p",
        "kind": "threshold",
        "property": "p",
        "priority": "low",
        "message": {"zh": "箱压", "en": "Box pressure"},
        "levels": {
            "hi": {"value": 50, "message": {"zh": "高", "en": "High!"}},
            "hihi": {"value": 80, "event": "tripped"},
            "lo": 10,
        },
    }
    eng = build([rule])
    by = {c.condition_id: c for c in feed(eng, "p", 1, 85.0).changes}
    assert (by["d1.p.hi"].message, by["d1.p.hi"].priority) == (Message("高", "High!"), "low")
    assert (by["d1.p.hihi"].message, by["d1.p.hihi"].priority) == (Message("切断", "Tripped"), "critical")
    (lo,) = feed(eng, "p", 2, 5.0).changes[2:]
    assert (lo.message, lo.priority) == (Message("箱压低于低限", "Box pressure low"), "low")


def test_threshold_hysteresis_clears_past_the_deadband() -> None:
    eng = build([{"id": "p", "kind": "threshold", "property": "p", "levels": {"hi": 70, "lo": 30}, "deadband": 5}])
    assert flips(feed(eng, "p", 1, 70.0)) == [("d1.p.hi", True, 1)]
    assert flips(feed(eng, "p", 2, 66.0)) == []  # inside the deadband: still high
    assert flips(feed(eng, "p", 3, 65.0)) == []  # exactly limit - deadband: still high
    assert flips(feed(eng, "p", 4, 64.9)) == [("d1.p.hi", False, 4)]
    assert flips(feed(eng, "p", 5, 69.0)) == []  # below the limit: not raised again
    assert flips(feed(eng, "p", 6, 30.0)) == [("d1.p.lo", True, 6)]
    assert flips(feed(eng, "p", 7, 34.0)) == []
    assert flips(feed(eng, "p", 8, 35.1)) == [("d1.p.lo", False, 8)]


def test_on_delay_raises_at_the_deadline_and_is_cancelled_by_a_dip() -> None:
    eng = build([{"id": "p", "kind": "threshold", "property": "p", "levels": {"hi": 70}, "for_s": 10}])
    assert flips(feed(eng, "p", 0, 75.0)) == []
    assert flips(eng.tick(9_999)) == []
    assert flips(feed(eng, "p", 5_000, 80.0)) == []  # still high: the delay keeps running from 0
    out = eng.tick(12_345)
    assert flips(out) == [("d1.p.hi", True, 10_000)]  # stamped when the delay expired
    assert out.changes[0].value == 80.0  # the latest value that held it
    # clear, then a dip before the delay expires cancels it
    assert flips(feed(eng, "p", 20_000, 10.0)) == [("d1.p.hi", False, 20_000)]
    feed(eng, "p", 21_000, 75.0)
    feed(eng, "p", 25_000, 60.0)
    assert flips(eng.tick(40_000)) == []
    feed(eng, "p", 41_000, 75.0)  # a fresh delay
    assert flips(eng.tick(50_999)) == []
    assert flips(eng.tick(51_000)) == [("d1.p.hi", True, 51_000)]


def test_expired_delays_fire_before_a_later_reading_is_applied() -> None:
    eng = build([{"id": "p", "kind": "threshold", "property": "p", "levels": {"hi": 70}, "for_s": 2}])
    feed(eng, "p", 0, 75.0)
    # no tick in between: the next observe first confirms the condition at 2 000, then clears it
    assert flips(feed(eng, "p", 3_000, 10.0)) == [("d1.p.hi", True, 2_000), ("d1.p.hi", False, 3_000)]


def test_off_delay() -> None:
    eng = build([{"id": "p", "kind": "threshold", "property": "p", "levels": {"hi": 70}, "off_delay_s": 5}])
    assert flips(feed(eng, "p", 0, 75.0)) == [("d1.p.hi", True, 0)]
    assert flips(feed(eng, "p", 1_000, 50.0)) == []
    assert flips(eng.tick(5_999)) == []
    assert flips(feed(eng, "p", 4_000, 72.0)) == []  # back before the off-delay expired: cancelled
    assert flips(eng.tick(20_000)) == []
    assert flips(feed(eng, "p", 21_000, 50.0)) == []
    assert flips(eng.tick(26_000)) == [("d1.p.hi", False, 26_000)]


def test_bad_quality_neither_raises_nor_clears_and_cancels_delays() -> None:
    eng = build([{"id": "p", "kind": "threshold", "property": "p", "levels": {"hi": 70}, "for_s": 5}])
    feed(eng, "p", 0, 75.0)
    assert flips(feed(eng, "p", 1_000, None, BAD)) == []  # comm failure: the pending raise is dropped
    assert flips(eng.tick(10_000)) == []
    assert flips(feed(eng, "p", 11_000, 99.0, Quality.BAD_SENSOR_FAULT)) == []  # a bad value is not high
    assert flips(eng.tick(30_000)) == []
    feed(eng, "p", 31_000, 75.0)
    assert flips(eng.tick(36_000)) == [("d1.p.hi", True, 36_000)]
    assert flips(feed(eng, "p", 37_000, 5.0, Quality.BAD_DEVICE_ERROR)) == []  # nor normal
    assert active(eng) == {"d1.p.hi"}


def test_uncertain_values_count() -> None:
    eng = build([FOUR])
    assert flips(feed(eng, "p", 1, 75.0, UNCERTAIN)) == [("d1.p.hi", True, 1)]


def test_out_of_range_beyond_a_level_raises_it_but_never_clears() -> None:
    # processing keeps the value of an out-of-range reading and marks it bad/out_of_range: a
    # saturated detector (or a shorted loop) must still raise the high levels (fail-safe).
    eng = build([FOUR])
    out = feed(eng, "p", 1, 120.0, Quality.BAD_OUT_OF_RANGE)
    assert flips(out) == [("d1.p.hi", True, 1), ("d1.p.hihi", True, 1)]
    assert flips(feed(eng, "p", 2, -5.0, Quality.BAD_OUT_OF_RANGE)) == [("d1.p.lo", True, 2), ("d1.p.lolo", True, 2)]
    assert active(eng) == {"d1.p.hi", "d1.p.hihi", "d1.p.lo", "d1.p.lolo"}  # nothing cleared by a bad value
    assert flips(feed(eng, "p", 3, 50.0)) == [
        ("d1.p.hi", False, 3),
        ("d1.p.hihi", False, 3),
        ("d1.p.lo", False, 3),
        ("d1.p.lolo", False, 3),
    ]


def test_non_numeric_values_are_unknown() -> None:
    eng = build([{"id": "p", "kind": "threshold", "property": "p", "levels": {"hi": 0.5}, "for_s": 1}])
    feed(eng, "p", 0, 1.0)
    feed(eng, "p", 500, True)  # a bool is not a number here
    assert flips(eng.tick(5_000)) == []


def test_readings_of_other_points_and_devices_are_ignored() -> None:
    eng = build([FOUR])
    out = eng.observe([rd("q", 1, 99.0), rd("p", 1, 99.0, device="other"), rd("zz", 1, 1.0)], 1)
    assert flips(out) == [] and out.computed == []


# ---- rate of change, stuck, stale -------------------------------------------------------------


def test_rate_of_change_over_the_window() -> None:
    eng = build([{"id": "r", "kind": "rate_of_change", "property": "p", "max_per_s": 1.0, "window_s": 10}])
    assert flips(feed(eng, "p", 0, 0.0)) == []
    assert flips(feed(eng, "p", 1_000, 0.5)) == []  # 0.5 /s
    out = feed(eng, "p", 2_000, 3.0)  # (3 - 0) / 2 s = 1.5 /s
    assert flips(out) == [("d1.r", True, 2_000)] and out.changes[0].value == 1.5
    assert flips(feed(eng, "p", 3_000, 3.0)) == [("d1.r", False, 3_000)]  # 3 / 3 s = 1.0, not above
    assert flips(feed(eng, "p", 4_000, -6.0)) == [("d1.r", True, 4_000)]  # both directions: -6 / 4 s
    assert flips(feed(eng, "p", 4_000, 100.0)) == []  # same timestamp again: ignored
    assert flips(feed(eng, "p", 3_500, 100.0)) == []  # out of order: ignored


def test_rate_of_change_window_forgets_old_samples() -> None:
    eng = build([{"id": "r", "kind": "rate_of_change", "property": "p", "max_per_s": 2.0, "window_s": 2}])
    for t in range(0, 4_000, 1_000):
        feed(eng, "p", t, 0.0)
    out = feed(eng, "p", 4_000, 5.0)  # against the sample at 2 000: 5 / 2 s = 2.5 /s
    assert flips(out) == [("d1.r", True, 4_000)] and out.changes[0].value == 2.5
    # a long gap: the previous sample is the reference even though it is older than the window
    assert flips(feed(eng, "p", 60_000, 5.0)) == [("d1.r", False, 60_000)]


@pytest.mark.parametrize(("direction", "rise", "fall"), [("rise", True, False), ("fall", False, True)])
def test_rate_of_change_direction(direction: str, rise: bool, fall: bool) -> None:
    rule = {"id": "r", "kind": "rate_of_change", "property": "p", "max_per_s": 1, "window_s": 5, "direction": direction}
    eng = build([rule])
    feed(eng, "p", 0, 50.0)
    assert bool(flips(feed(eng, "p", 1_000, 60.0))) is rise
    eng = build([rule])
    feed(eng, "p", 0, 50.0)
    assert bool(flips(feed(eng, "p", 1_000, 40.0))) is fall


def test_rate_of_change_bad_sample_cancels_the_delay() -> None:
    eng = build([{"id": "r", "kind": "rate_of_change", "property": "p", "max_per_s": 1, "window_s": 5, "for_s": 3}])
    feed(eng, "p", 0, 0.0)
    feed(eng, "p", 1_000, 10.0)
    feed(eng, "p", 2_000, None, BAD)
    assert flips(eng.tick(10_000)) == []


def test_stuck_after_n_unchanged_good_samples() -> None:
    eng = build([{"id": "s", "kind": "stuck", "property": "p", "samples": 3}])
    assert flips(feed(eng, "p", 1, 5.0)) == []
    assert flips(feed(eng, "p", 2, 5.0)) == []
    assert flips(feed(eng, "p", 3, 5.0)) == [("d1.s", True, 3)]
    assert flips(feed(eng, "p", 4, 5.0)) == []
    assert flips(feed(eng, "p", 5, 5.1)) == [("d1.s", False, 5)]
    # bad and uncertain samples neither count nor break a run
    feed(eng, "p", 6, 5.1)
    feed(eng, "p", 7, None, BAD)
    feed(eng, "p", 8, 9.0, UNCERTAIN)
    assert flips(feed(eng, "p", 9, 5.1)) == [("d1.s", True, 9)]


def test_stuck_with_tolerance_measures_from_the_run_start() -> None:
    eng = build([{"id": "s", "kind": "stuck", "property": "p", "samples": 3, "tolerance": 0.1}])
    feed(eng, "p", 1, 1.0)
    feed(eng, "p", 2, 1.05)
    assert flips(feed(eng, "p", 3, 1.09)) == [("d1.s", True, 3)]
    assert flips(feed(eng, "p", 4, 1.15)) == [("d1.s", False, 4)]  # drifted 0.15 from the run start


def test_stale_property() -> None:
    eng = build([{"id": "st", "kind": "stale", "property": "p", "after_s": 10}])
    assert flips(eng.tick(100_000)) == []  # the clock starts with the first call
    assert flips(eng.tick(109_999)) == []
    out = eng.tick(110_000)
    assert flips(out) == [("d1.st", True, 110_000)] and out.changes[0].value == 10.0
    assert flips(feed(eng, "p", 111_000, 1.0)) == [("d1.st", False, 111_000)]
    feed(eng, "p", 115_000, None, BAD)  # bad values do not count as fresh
    feed(eng, "p", 116_000, 1.0, UNCERTAIN)  # nor do uncertain ones
    feed(eng, "q", 117_000, 1.0)  # nor other properties
    assert flips(eng.tick(120_999)) == []
    assert flips(eng.tick(121_000)) == [("d1.st", True, 121_000)]
    assert (rd("p", 0, 0).device, eng.conditions()) == ("d1", [("d1.st", True)])


def test_stale_any_property_of_the_device() -> None:
    eng = build([{"id": "st", "kind": "stale", "after_s": 10, "for_s": 5}])
    feed(eng, "q", 0, 1.0)
    feed(eng, "label", 8_000, "x")
    assert flips(eng.tick(17_999)) == []
    eng.tick(18_000)  # stale from here, raised after for_s
    assert flips(eng.tick(22_999)) == []
    assert flips(eng.tick(23_000)) == [("d1.st", True, 23_000)]
    assert flips(feed(eng, "flag", 24_000, False)) == [("d1.st", False, 24_000)]


# ---- comm loss and state ----------------------------------------------------------------------


def test_comm_loss_with_delay() -> None:
    eng = build([{"id": "comm", "kind": "comm_loss", "for_s": 30, "off_delay_s": 0}])
    assert flips(eng.device_link("d1", False, 0)) == []
    assert flips(eng.device_link("d1", True, 10_000)) == []  # back within 30 s: nothing
    assert flips(eng.tick(40_000)) == []
    eng.device_link("d1", False, 50_000)
    eng.device_link("d1", False, 60_000)  # repeated reports do not restart the delay
    assert flips(eng.tick(80_000)) == [("d1.comm", True, 80_000)]
    out = eng.device_link("d1", True, 90_000)
    assert flips(out) == [("d1.comm", False, 90_000)]
    assert out.changes[0].message == Message("通讯中断", "Communication lost")
    assert flips(eng.device_link("unknown", False, 0)) == []


def test_state_equals_with_event_message_and_priority() -> None:
    eng = build([{"id": "trip", "kind": "state", "property": "flag", "equals": True, "event": "tripped"}])
    out = feed(eng, "flag", 1, True)
    assert flips(out) == [("d1.trip", True, 1)]
    assert (out.changes[0].message, out.changes[0].priority) == (Message("切断", "Tripped"), "critical")
    assert flips(feed(eng, "flag", 2, True)) == []
    assert flips(feed(eng, "flag", 3, None, BAD)) == []
    assert flips(feed(eng, "flag", 4, False)) == [("d1.trip", False, 4)]
    assert flips(feed(eng, "flag", 5, 1)) == []  # an int is not the bool true


@pytest.mark.parametrize(
    ("prop", "equals", "value", "message"),
    [
        ("flag", True, True, Message("阀门关闭", "Valve closed")),
        ("flag", False, False, Message("阀门关闭：否", "Valve closed: no")),
        ("mode", 2, 2, Message("模式：自动", "Mode: 自动")),
        ("label", "x", "x", Message("标签：x", "Label: x")),
    ],
)
def test_state_default_messages(prop: str, equals: object, value: object, message: Message) -> None:
    eng = build([{"id": "s", "kind": "state", "property": prop, "equals": equals, "priority": "low"}])
    out = feed(eng, prop, 1, value)  # type: ignore[arg-type]
    assert flips(out) == [("d1.s", True, 1)]
    assert (out.changes[0].message, out.changes[0].priority) == (message, "low")


# ---- expressions ------------------------------------------------------------------------------

MSG = {"zh": "偏差", "en": "Deviation"}


def test_expression_across_devices() -> None:
    station = {
        "rules": [
            {"device": "d1", "id": "diff", "kind": "expression", "message": MSG, "expr": 'p - dev("d-2", "p") > 1'},
            {"device": "d1", "id": "diff2", "kind": "expression", "message": MSG, "expr": "p < d3.p"},
        ]
    }
    eng = build(devices=("d1", "d-2", "d3"), station=station)
    assert flips(feed(eng, "p", 1, 5.0)) == []  # d-2.p and d3.p unknown: no result
    out = feed(eng, "p", 2, 3.0, device="d-2")
    assert flips(out) == [("d1.diff", True, 2)]
    assert out.changes[0].inputs == {"p": 5.0, "d-2.p": 3.0}
    assert out.changes[0].message == Message("偏差", "Deviation") and out.changes[0].source.startswith("station")
    assert flips(feed(eng, "p", 3, 4.5, device="d-2")) == [("d1.diff", False, 3)]
    assert flips(feed(eng, "p", 4, 6.0, device="d3")) == [("d1.diff2", True, 4)]


def test_expression_clear_expr_is_hysteresis() -> None:
    rule = {"id": "e", "kind": "expression", "message": MSG, "expr": "p > 10", "clear_expr": "p < 5"}
    eng = build([rule])
    assert flips(feed(eng, "p", 1, 11.0)) == [("d1.e", True, 1)]
    assert flips(feed(eng, "p", 2, 7.0)) == []
    assert flips(feed(eng, "p", 3, 4.0)) == [("d1.e", False, 3)]
    assert flips(feed(eng, "p", 4, 7.0)) == []


def test_expression_unknown_input_holds_state_and_cancels_delay() -> None:
    rule = {"id": "e", "kind": "expression", "message": MSG, "expr": "p > q", "for_s": 5}
    eng = build([rule])
    eng.observe([rd("p", 0, 2.0), rd("q", 0, 1.0)], 0)
    feed(eng, "q", 1_000, None, BAD)
    assert flips(eng.tick(10_000)) == []
    feed(eng, "q", 11_000, 1.0, UNCERTAIN)  # uncertain inputs are used
    assert flips(eng.tick(16_000)) == [("d1.e", True, 16_000)]
    assert flips(feed(eng, "p", 17_000, 0.0, BAD)) == []
    assert active(eng) == {"d1.e"}


def test_expression_relative_to_another_property() -> None:
    # The regulator form: outlet pressure above 1.1 × setpoint, clearing below 1.05 ×.
    rule = {"id": "over", "kind": "expression", "message": MSG, "expr": "p >= 1.1 * q", "clear_expr": "p < 1.05 * q"}
    eng = build([rule])
    assert flips(eng.observe([rd("p", 1, 3.0), rd("q", 1, 3.0)], 1)) == []
    assert flips(feed(eng, "p", 2, 3.31)) == [("d1.over", True, 2)]
    assert flips(feed(eng, "p", 3, 3.2)) == []
    assert flips(feed(eng, "q", 4, 3.1)) == [("d1.over", False, 4)]  # the setpoint moved


# ---- computed points --------------------------------------------------------------------------


def test_computed_expression_value_quality_and_timestamp() -> None:
    eng = build(computed=[{"id": "c", "name": {"zh": "和", "en": "Sum"}, "unit": "kPa", "expr": "p * 2 + q"}])
    assert eng.computed_points == {"d1": ["c"]}
    prop = eng.computed_properties["d1"]["c"]
    assert (prop.type, prop.unit, prop.name.en) == ("float", "kPa", "Sum")
    assert feed(eng, "p", 1_000, 1.0).computed == []  # q unknown: nothing to report
    assert feed(eng, "q", 2_000, 3.0).computed == [rd("c", 2_000, 5.0)]  # stamped with the newest input
    assert feed(eng, "q", 3_000, 4.0, UNCERTAIN).computed == [rd("c", 3_000, 6.0, UNCERTAIN)]
    assert feed(eng, "p", 4_000, None, BAD).computed == [rd("c", 4_000, None, BAD)]
    eng.observe([rd("p", 5_000, 1.0), rd("q", 5_000, 2.0)], 5_000)  # two inputs, one result
    assert eng.observe([rd("p", 6_000, 1.0), rd("q", 6_000, 2.0)], 6_000).computed == [rd("c", 6_000, 4.0)]


def test_computed_arithmetic_failure_is_bad() -> None:
    eng = build(computed=[{"id": "c", "name": {"zh": "比", "en": "Ratio"}, "expr": "p / q"}])
    out = eng.observe([rd("p", 1, 1.0), rd("q", 1, 0.0)], 1)
    assert out.computed == [rd("c", 1, None, Quality.BAD_OUT_OF_RANGE)]


def test_computed_chain_and_rules_on_computed_points() -> None:
    computed = [
        {"id": "c2", "name": {"zh": "二", "en": "Two"}, "expr": "c1 + 1"},  # listed before its input
        {"id": "c1", "name": {"zh": "一", "en": "One"}, "expr": "p * 2"},
        {"id": "on", "name": {"zh": "开", "en": "On"}, "expr": "c2 > 10"},
        {"id": "closed", "name": {"zh": "关", "en": "Closed"}, "expr": "flag"},
    ]
    rules = [{"id": "hi2", "kind": "threshold", "property": "c2", "levels": {"hi": 20}}]
    eng = build(rules, computed)
    assert eng.computed_properties["d1"]["on"].type == "bool"
    assert eng.computed_properties["d1"]["closed"].type == "bool"  # a bool passed through
    assert eng.computed_properties["d1"]["c1"].type == "float"
    assert feed(eng, "flag", 1, True).computed == [rd("closed", 1, True)]
    out = feed(eng, "p", 7, 10.0)
    assert out.computed == [rd("c1", 7, 20.0), rd("c2", 7, 21.0), rd("on", 7, True)]
    assert flips(out) == [("d1.hi2.hi", True, 7)]
    assert out.changes[0].message == Message("二超高限", "Two high")


def test_computed_across_devices_in_the_station() -> None:
    station = {
        "computed": [
            {"device": "d1", "id": "total", "name": {"zh": "总流量", "en": "Total flow"}, "expr": "q + dev('d-2', 'q')"}
        ]
    }
    eng = build(devices=("d1", "d-2"), station=station)
    feed(eng, "q", 1, 1.5)
    assert feed(eng, "q", 2, 2.5, device="d-2").computed == [rd("total", 2, 4.0)]
    assert eng.computed_points == {"d1": ["total"]}


# ---- aggregates -------------------------------------------------------------------------------


@pytest.mark.parametrize("window_s", [60, 900, 3600])
@pytest.mark.parametrize(("fn", "expected"), [("min", 1.0), ("max", 3.0), ("avg", 2.0), ("last", 2.0)])
def test_aggregate_each_function_and_window(fn: str, expected: float, window_s: int) -> None:
    w = window_s * 1000
    eng = build(
        computed=[
            {
                "id": "agg",
                "name": {"zh": "聚合", "en": "Agg"},
                "aggregate": {"fn": fn, "property": "p", "window_s": window_s},
            }
        ]
    )
    start = 1_700_000_400_000 // w * w  # an aligned window
    eng.tick(start)
    for i, value in enumerate([3.0, 1.0, 2.0]):
        ts = start + i * w // 3
        assert feed(eng, "p", ts, value).computed == []
    assert eng.tick(start + w - 1).computed == []
    out = eng.tick(start + w + 500)
    assert out.computed == [rd("agg", start + w, expected)]  # stamped with the window's end
    assert eng.tick(start + 2 * w + 1).computed == []  # an empty window reports nothing


def test_aggregate_quality_late_readings_and_bad_windows() -> None:
    spec = {"fn": "avg", "property": "p", "window_s": 60}
    eng = build(computed=[{"id": "avg", "name": {"zh": "均值", "en": "Avg"}, "aggregate": spec}])
    eng.observe([rd("p", 1_000, 1.0), rd("p", 2_000, 3.0, UNCERTAIN), rd("p", 3_000, 100.0, BAD)], 3_000)
    assert eng.tick(60_000).computed == [rd("avg", 60_000, 2.0, UNCERTAIN)]  # the bad sample is left out
    assert feed(eng, "p", 59_000, 5.0).computed == []  # late for a reported window: dropped
    feed(eng, "p", 61_000, None, BAD)
    assert eng.tick(120_000).computed == [rd("avg", 120_000, None, BAD)]  # only bad samples
    # readings far in the future of `now` are ignored, within a window ahead they wait their turn
    eng.observe([rd("p", 10_000_000, 1.0), rd("p", 150_000, 7.0)], 125_000)
    assert eng.tick(180_000).computed == [rd("avg", 180_000, 7.0)]
    assert eng.tick(20_000_000).computed == []


def test_aggregate_last_of_a_bool_and_rules_on_aggregates() -> None:
    computed = [
        {
            "id": "flag_last",
            "name": {"zh": "末值", "en": "Last"},
            "aggregate": {"fn": "last", "property": "flag", "window_s": 60},
        },
        {
            "id": "p_max",
            "name": {"zh": "最大", "en": "Max"},
            "aggregate": {"fn": "max", "property": "p", "window_s": 60},
        },
    ]
    rules = [{"id": "peak", "kind": "threshold", "property": "p_max", "levels": {"hi": 80}}]
    eng = build(rules, computed)
    assert eng.computed_properties["d1"]["flag_last"].type == "bool"
    eng.observe([rd("flag", 1_000, True), rd("flag", 2_000, False), rd("p", 3_000, 90.0), rd("p", 4_000, 10.0)], 4_000)
    out = eng.tick(60_000)
    assert out.computed == [rd("flag_last", 60_000, False), rd("p_max", 60_000, 90.0)]
    assert flips(out) == [("d1.peak.hi", True, 60_000)]


def test_aggregate_of_a_computed_point() -> None:
    computed = [
        {"id": "double", "name": {"zh": "二倍", "en": "Double"}, "expr": "p * 2"},
        {
            "id": "double_avg",
            "name": {"zh": "均值", "en": "Avg"},
            "aggregate": {"fn": "avg", "property": "double", "window_s": 10},
        },
    ]
    eng = build(computed=computed)
    feed(eng, "p", 1_000, 1.0)
    feed(eng, "p", 2_000, 2.0)
    assert eng.tick(10_000).computed == [rd("double_avg", 10_000, 3.0)]


# ---- station overrides and packs ----------------------------------------------------------------


def test_overrides_change_fields_merge_levels_and_disable() -> None:
    rules: list[dict[str, Any]] = [
        {
            "id": "p",
            "kind": "threshold",
            "property": "p",
            "levels": {"hi": {"value": 70, "priority": "critical"}, "lo": 30},
        },
        {"id": "trip", "kind": "state", "property": "flag", "equals": True},
    ]
    station = {
        "overrides": {
            "d2": {"p": {"levels": {"hi": 50, "lo": None}, "for_s": 2}, "trip": {"enabled": False}},
        }
    }
    eng = RuleEngine.build([("d1", BOX), ("d2", BOX)], [pack(rules)], StationRules.model_validate(station))
    assert [cid for cid, _ in eng.conditions()] == ["d1.p.hi", "d1.p.lo", "d1.trip", "d2.p.hi"]
    eng.observe([rd("p", 0, 60.0), rd("p", 0, 60.0, device="d2")], 0)
    out = eng.tick(2_000)
    assert flips(out) == [("d2.p.hi", True, 2_000)]
    assert out.changes[0].priority == "critical"  # kept from the pack: only the value changed
    assert "overridden" in out.changes[0].source
    assert flips(feed(eng, "flag", 3_000, True, device="d2")) == []


def test_packs_apply_to_models_that_extend_the_pack_model() -> None:
    child = BOX.model_copy(update={"id": "child", "lineage": ("box", "child")})
    eng = RuleEngine.build([("c1", child), ("b1", BOX)], [pack([FOUR])], None)
    assert {cid.split(".")[0] for cid, _ in eng.conditions()} == {"c1", "b1"}


def test_engine_without_rules() -> None:
    eng = RuleEngine.build([("d1", BOX)], [], None)
    assert eng.conditions() == [] and eng.computed_points == {}
    out = eng.observe([rd("p", 1, 1.0)], 1)
    assert (out.changes, out.computed) == ([], [])
    assert eng.tick(2).changes == []


def test_many_devices_observe_touches_only_affected_rules() -> None:
    devices = [f"m{i}" for i in range(300)]
    eng = build([FOUR, {"id": "st", "kind": "stale", "property": "p", "after_s": 60}], devices=devices)
    batch = [rd("q", 1, 1.0, device=d) for d in devices]  # q feeds no rule
    for t in range(50):
        assert eng.observe(batch, t).changes == []
    out = eng.observe([rd("p", 100, 95.0, device="m7")], 100)
    assert {c.condition_id for c in out.changes} == {"m7.p.hi", "m7.p.hihi"}
    assert GOOD is Quality.GOOD


def test_restore_active_after_a_restart() -> None:
    rules = [
        FOUR,
        {"id": "e", "kind": "expression", "message": MSG, "expr": "q > 10", "clear_expr": "q < 5"},
        {"id": "d", "kind": "threshold", "property": "q", "levels": {"hi": 50}, "deadband": 5, "off_delay_s": 3},
    ]
    eng = build(rules)
    assert eng.restore_active(["d1.p.hi", "d1.e", "d1.d.hi", "d1.gone"]) == ["d1.gone"]
    assert active(eng) == {"d1.p.hi", "d1.e", "d1.d.hi"}
    assert flips(feed(eng, "p", 1, 75.0)) == []  # still true: no second raise
    assert flips(feed(eng, "p", 2, 50.0)) == [("d1.p.hi", False, 2)]  # the clear a fresh engine would miss
    assert flips(feed(eng, "q", 3, 47.0)) == []  # inside both hysteresis bands: both stay active
    assert flips(feed(eng, "q", 4, 4.0)) == [("d1.e", False, 4)]  # d.hi starts its off-delay
    assert flips(eng.tick(3_003)) == []
    assert flips(eng.tick(3_004)) == [("d1.d.hi", False, 3_004)]

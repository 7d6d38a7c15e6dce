"""Every ISA-18.2 transition, its one event, and the operator actions' outcomes (scripted time)."""

from __future__ import annotations

import pytest
from alarmkit import DEVICE, change

from edge.alarms import AlarmManager, AlarmState, Outcome
from edge.rules.types import Priority
from gascore.records import Event, EventLevel

AID = f"{DEVICE}.hi"


def only(events: list[Event]) -> Event:
    assert len(events) == 1, events
    return events[0]


def state(m: AlarmManager, aid: str = AID) -> AlarmState:
    alarm = m.get(aid)
    assert alarm is not None
    return alarm.state


# ---- the state machine ----------------------------------------------------------------------


def test_ack_before_clear_normal_to_active_unacked_to_active_acked_to_normal() -> None:
    m = AlarmManager()
    raised = only(m.on_change(change(ts=1_000, value=0.42)))
    assert (raised.kind, raised.ts_ms, raised.device) == ("alarm.raised", 1_000, DEVICE)
    assert state(m) is AlarmState.ACTIVE_UNACKED

    acked = m.ack(AID, "li", 2_000)
    assert acked.ok and acked.event is not None
    assert (acked.event.kind, acked.event.ts_ms) == ("alarm.acked", 2_000)
    assert acked.event.data["by"] == "li" and acked.event.data["origin"] == "edge"
    assert state(m) is AlarmState.ACTIVE_ACKED

    normal = only(m.on_change(change(active=False, ts=3_000, value=0.1)))
    assert (normal.kind, normal.data["state"], normal.data["clear_value"]) == ("alarm.normal", "normal", 0.1)
    alarm = m.get(AID)
    assert alarm is not None
    assert alarm.state is AlarmState.NORMAL and alarm.acked_by == "li" and alarm.value == 0.42
    assert not alarm.problems()


def test_clear_before_ack_goes_through_cleared_unacked() -> None:
    m = AlarmManager()
    m.on_change(change(ts=1_000))
    cleared = only(m.on_change(change(active=False, ts=2_000)))
    assert (cleared.kind, cleared.data["state"]) == ("alarm.cleared", "cleared_unacked")
    alarm = m.get(AID)
    assert alarm is not None and alarm.cleared_ms == 2_000 and alarm.annunciated

    result = m.ack(AID, "wang", 3_000)
    assert result.ok and result.event is not None
    assert (result.event.kind, result.event.data["state"]) == ("alarm.acked", "normal")
    assert state(m) is AlarmState.NORMAL


def test_reactivation_from_cleared_unacked_is_a_new_activation() -> None:
    m = AlarmManager()
    m.on_change(change(ts=1_000, value=1))
    m.on_change(change(active=False, ts=2_000))
    again = only(m.on_change(change(ts=3_000, value=2)))
    assert (again.kind, again.data["state"], again.data["raised_ms"]) == ("alarm.raised", "active_unacked", 3_000)
    assert again.data["activations"] == 2 and again.data["value"] == 2
    alarm = m.get(AID)
    assert alarm is not None and alarm.cleared_ms is None and alarm.acked_ms is None


def test_reactivation_after_normal_resets_the_acknowledgement() -> None:
    m = AlarmManager()
    m.on_change(change(ts=1_000))
    m.ack(AID, "li", 1_500)
    m.on_change(change(active=False, ts=2_000))
    only(m.on_change(change(ts=3_000)))
    alarm = m.get(AID)
    assert alarm is not None
    assert (alarm.state, alarm.acked_ms, alarm.acked_by, alarm.activations) == (
        AlarmState.ACTIVE_UNACKED,
        None,
        None,
        2,
    )


def test_repeated_condition_changes_produce_nothing() -> None:
    m = AlarmManager()
    assert m.on_change(change(active=False, ts=500)) == []  # never active: no alarm at all
    assert m.get(AID) is None
    m.on_change(change(ts=1_000))
    assert m.on_change(change(ts=1_100)) == []
    m.ack(AID, "li", 1_200)
    assert m.on_change(change(ts=1_300)) == []
    m.on_change(change(active=False, ts=1_400))
    assert m.on_change(change(active=False, ts=1_500)) == []
    m.on_change(change(ts=2_000))
    m.on_change(change(active=False, ts=2_100))
    assert m.on_change(change(active=False, ts=2_200)) == []  # cleared_unacked stays
    assert state(m) is AlarmState.CLEARED_UNACKED


def test_a_new_activation_takes_the_rules_current_priority_and_message() -> None:
    m = AlarmManager()
    m.on_change(change(ts=1_000, priority="medium"))
    m.on_change(change(active=False, ts=2_000))
    event = only(m.on_change(change(ts=3_000, priority="critical")))
    assert event.level is EventLevel.CRITICAL and event.data["priority"] == "critical"


# ---- acknowledgement outcomes -----------------------------------------------------------------


def test_ack_outcomes_without_event() -> None:
    m = AlarmManager()
    missing = m.ack("nope.hi", "li", 1)
    assert (missing.outcome, missing.event, missing.alarm) == (Outcome.NOT_FOUND, None, None)
    assert missing.text.startswith("not_found: ")

    m.on_change(change(ts=1_000))
    assert m.ack(AID, "", 1_100).outcome is Outcome.INVALID
    assert m.ack(AID, "li", 1_200).ok
    twice = m.ack(AID, "zhao", 1_300)
    assert (twice.outcome, twice.event) == (Outcome.ALREADY_ACKED, None)
    assert "li" in twice.detail
    m.on_change(change(active=False, ts=1_400))
    assert m.ack(AID, "zhao", 1_500).outcome is Outcome.ALREADY_ACKED  # normal, acked before the clear
    alarm = m.get(AID)
    assert alarm is not None and alarm.acked_by == "li"


def test_cloud_ack_ends_in_the_same_state_as_an_edge_ack() -> None:
    edge, cloud = AlarmManager(), AlarmManager()
    for m in (edge, cloud):
        m.on_change(change(ts=1_000))
    by_edge = edge.ack(AID, "li", 2_000)
    by_cloud = cloud.ack(AID, "li", 2_000, origin="cloud", raised_ms=1_000)
    assert by_edge.alarm is not None and by_cloud.alarm is not None
    assert by_cloud.event is not None and by_cloud.event.data["origin"] == "cloud"
    assert by_cloud.alarm.state is by_edge.alarm.state is AlarmState.ACTIVE_ACKED
    # the echo of an ack already applied is a no-op, not an error state
    assert edge.ack(AID, "li", 2_100, origin="cloud", raised_ms=1_000).outcome is Outcome.ALREADY_ACKED


def test_cloud_ack_of_an_older_activation_does_not_ack_the_newer_one() -> None:
    m = AlarmManager()
    m.on_change(change(ts=1_000))
    m.on_change(change(active=False, ts=2_000))
    m.on_change(change(ts=3_000))  # re-activation while the cloud's ack of the first is in flight
    stale = m.ack(AID, "li", 3_500, origin="cloud", raised_ms=1_000)
    assert (stale.outcome, stale.event) == (Outcome.STALE, None)
    assert state(m) is AlarmState.ACTIVE_UNACKED
    assert m.ack(AID, "li", 3_600, origin="cloud", raised_ms=3_000).ok


def test_cloud_ack_arriving_after_the_edge_ack_and_a_new_activation_is_stale() -> None:
    m = AlarmManager()
    m.on_change(change(ts=1_000))
    m.ack(AID, "li", 1_100)
    m.on_change(change(active=False, ts=1_200))
    m.on_change(change(ts=1_300))
    assert m.ack(AID, "wang", 1_400, origin="cloud", raised_ms=1_000).outcome is Outcome.STALE
    assert state(m) is AlarmState.ACTIVE_UNACKED


# ---- event payloads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "level"),
    [
        ("low", EventLevel.INFO),
        ("medium", EventLevel.WARNING),
        ("high", EventLevel.MAJOR),
        ("critical", EventLevel.CRITICAL),
    ],
)
def test_every_event_level_follows_the_priority(priority: Priority, level: EventLevel) -> None:
    m = AlarmManager()
    events = m.on_change(change(ts=1_000, priority=priority))
    events += [e for e in [m.shelve(AID, 5_000, "li", "maintenance", 1_100).event] if e]
    events += [e for e in [m.unshelve(AID, "li", 1_200).event] if e]
    events += [e for e in [m.ack(AID, "li", 1_300).event] if e]
    events += m.on_change(change(active=False, ts=1_400, priority=priority))
    assert [e.kind for e in events] == [
        "alarm.raised",
        "alarm.shelved",
        "alarm.unshelved",
        "alarm.acked",
        "alarm.normal",
    ]
    assert {e.level for e in events} == {level}


def test_raised_event_payload_round_trips_the_wire() -> None:
    m = AlarmManager()
    event = only(m.on_change(change(ts=1_000, value=55.0)))
    assert event.data == {
        "alarm_id": AID,
        "rule": "hi",
        "state": "active_unacked",
        "priority": "high",
        "message_zh": "hi 报警",
        "message_en": "hi alarm",
        "value": 55.0,
        "raised_ms": 1_000,
        "activations": 1,
        "annunciated": True,
    }
    assert Event.from_wire(event.to_wire()) == event  # fits the wire's limits


def test_shelved_and_ack_payloads_name_who_and_why() -> None:
    m = AlarmManager()
    m.on_change(change(ts=1_000))
    shelved = m.shelve(AID, 9_000, "li", "sensor calibration", 2_000, origin="cloud").event
    assert shelved is not None
    assert {k: shelved.data[k] for k in ("by", "origin", "reason", "shelved_until_ms", "annunciated")} == {
        "by": "li",
        "origin": "cloud",
        "reason": "sensor calibration",
        "shelved_until_ms": 9_000,
        "annunciated": False,
    }
    acked = m.ack(AID, "wang", 3_000).event
    assert acked is not None
    assert (acked.data["by"], acked.data["origin"], acked.data["shelved_until_ms"]) == ("wang", "edge", 9_000)


# ---- shelving ---------------------------------------------------------------------------------


def test_shelving_hides_annunciation_and_expires_in_tick() -> None:
    m = AlarmManager()
    m.on_change(change(ts=1_000))
    assert m.shelve(AID, 10_000, "li", "maintenance", 2_000).ok
    assert m.next_expiry_ms() == 10_000
    alarm = m.get(AID)
    assert alarm is not None and not alarm.annunciated and alarm.state is AlarmState.ACTIVE_UNACKED

    # state is still tracked while shelved, and each transition still has its event
    cleared = only(m.on_change(change(active=False, ts=3_000)))
    assert (cleared.kind, cleared.data["annunciated"]) == ("alarm.cleared", False)
    again = only(m.on_change(change(ts=4_000)))
    assert (again.kind, again.data["annunciated"]) == ("alarm.raised", False)

    assert m.tick(9_999) == []
    expired = only(m.tick(10_000))
    assert (expired.kind, expired.data["cause"], expired.data["state"]) == (
        "alarm.unshelved",
        "expired",
        "active_unacked",
    )
    alarm = m.get(AID)
    assert alarm is not None and alarm.annunciated and not alarm.shelved
    assert m.tick(20_000) == [] and m.next_expiry_ms() is None


def test_shelve_outcomes() -> None:
    m = AlarmManager(max_shelve_ms=3_600_000)
    assert m.shelve("nope", 5_000, "li", "x", 1_000).outcome is Outcome.NOT_FOUND
    m.on_change(change(ts=1_000))
    assert m.shelve(AID, 1_000, "li", "x", 1_000).outcome is Outcome.INVALID  # not in the future
    assert m.shelve(AID, 1_000 + 3_600_001, "li", "x", 1_000).outcome is Outcome.INVALID  # too long
    assert m.shelve(AID, 5_000, "li", "", 1_000).outcome is Outcome.INVALID  # no reason
    assert m.shelve(AID, 5_000, "li", "x", 1_000).ok
    assert m.shelve(AID, 5_000, "li", "x", 1_100).outcome is Outcome.ALREADY_SHELVED
    extended = m.shelve(AID, 8_000, "li", "x", 1_200)
    assert extended.ok and extended.event is not None and extended.event.data["shelved_until_ms"] == 8_000
    assert m.unshelve(AID, "li", 1_300).ok
    assert m.unshelve(AID, "li", 1_400).outcome is Outcome.NOT_SHELVED


def test_a_normal_alarm_can_be_shelved_ahead_of_work() -> None:
    m = AlarmManager()
    m.on_change(change(ts=1_000))
    m.ack(AID, "li", 1_100)
    m.on_change(change(active=False, ts=1_200))
    assert m.shelve(AID, 50_000, "li", "valve replacement", 2_000).ok
    raised = only(m.on_change(change(ts=3_000)))
    assert raised.data["annunciated"] is False


# ---- suppression ------------------------------------------------------------------------------


def test_offline_device_activations_are_recorded_not_annunciated_until_recovery() -> None:
    m = AlarmManager(comm_rules={"comm_loss"})
    assert m.set_device_online(DEVICE, False, 1_000) == []
    comm = only(m.on_change(change("comm_loss", ts=1_000, priority="medium", value=None)))
    assert comm.kind == "alarm.raised"  # the comm-loss alarm itself is the one to see
    flood = m.on_changes([change(rule, ts=1_100) for rule in ("hi", "lo", "stale", "stuck")])
    assert [(e.kind, e.data["annunciated"]) for e in flood] == [("alarm.suppressed", False)] * 4
    other_device = only(m.on_change(change("hi", ts=1_150, device="rtu2")))
    assert other_device.kind == "alarm.raised"

    m.on_change(change("lo", active=False, ts=1_200))  # cleared while offline: nothing to acknowledge
    lo = m.get(f"{DEVICE}.lo")
    assert lo is not None and lo.state is AlarmState.NORMAL and not lo.suppressed
    assert m.ack(f"{DEVICE}.stuck", "li", 1_300).ok  # acknowledging shows it: no longer suppressed

    recovered = m.set_device_online(DEVICE, True, 2_000)
    assert [(e.kind, e.data["alarm_id"], e.data["cause"], e.data["raised_ms"]) for e in recovered] == [
        ("alarm.raised", f"{DEVICE}.hi", "device_recovered", 1_100),
        ("alarm.raised", f"{DEVICE}.stale", "device_recovered", 1_100),
    ]
    assert all(e.data["annunciated"] for e in recovered)
    assert m.set_device_online(DEVICE, True, 2_100) == []
    hi = m.get(f"{DEVICE}.hi")
    assert hi is not None and hi.annunciated and hi.state is AlarmState.ACTIVE_UNACKED


def test_suppressed_clear_event_and_standing_alarms_stay_shown() -> None:
    m = AlarmManager()
    m.on_change(change(ts=1_000))  # raised while online
    m.set_device_online(DEVICE, False, 1_500)
    alarm = m.get(AID)
    assert alarm is not None and alarm.annunciated  # going offline hides nothing already shown
    m.on_change(change(active=False, ts=2_000))
    again = only(m.on_change(change(ts=2_500)))  # cleared_unacked re-activating: already shown, stays shown
    assert again.kind == "alarm.raised"

    m.on_change(change("lo", ts=3_000))
    normal = only(m.on_change(change("lo", active=False, ts=3_100, value=None)))
    assert (normal.kind, normal.data["cause"]) == ("alarm.normal", "cleared_while_suppressed")
    assert "clear_value" not in normal.data
    assert m.set_device_online(DEVICE, True, 4_000) == []

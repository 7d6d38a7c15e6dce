"""Alarm notifications end to end: alarm events from a gateway reach the cloud's alarm view; a
rule routes them by scope and priority to e-mail (a real local SMTP server, aiosmtpd) and to an
SMS provider's webhook; the same activation is not sent twice; an unacknowledged alarm escalates
(by phone) once; an acknowledged one does not; every notification is recorded."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from cloud.appkeys import ALARMS, NOTIFIER, REGISTRY
from gascore.contract import GENESIS_DIGEST
from gascore.records import Event, EventLevel, Lane
from support.mosquitto import free_port
from support.wait import eventually


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def inbox() -> Any:
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


@pytest.fixture
async def provider() -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/send", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield received, f"http://127.0.0.1:{port}/send"
    await runner.cleanup()


def alarm(kind: str, state: str, ts: int, priority: str = "high", raised: int = 1000) -> Event:
    data = {
        "alarm_id": "box.box_methane.hi",
        "rule": "box_methane.hi",
        "state": state,
        "priority": priority,
        "message_zh": "箱内甲烷浓度高",
        "message_en": "Methane in box high",
        "value": 23.5,
        "raised_ms": raised,
        "annunciated": True,
    }
    if kind == "alarm.acked":
        data["by"] = "张工"
    return Event("box", kind, ts, EventLevel.MAJOR, data)


async def test_route_dedup_escalate(batches, inbox, provider) -> None:
    cloud = batches.cloud
    handler, smtp_port = inbox
    received, webhook = provider
    notifier = cloud.app[NOTIFIER]
    notifier.config.smtp_host, notifier.config.smtp_port = "127.0.0.1", smtp_port
    notifier.config.webhooks = {"sms": webhook, "phone": webhook}
    registry = cloud.app[REGISTRY]
    registry.add_org("north", "北区")
    registry.add_station("gs-01", "north", "1号站", "regulator_box")
    registry.provision_gateway("gw-sec", "gs-01")
    notifier.add_rule(
        {
            "name": "north, high+",
            "scopes": "org:north",
            "min_priority": "high",
            "recipients": [{"channel": "email", "to": "duty@example.cn"}, {"channel": "sms", "to": "+8613800000001"}],
            "escalate_after_s": 1,
            "escalate_to": [{"channel": "phone", "to": "+8613900000002"}],
        },
        "test",
    )
    notifier.add_rule(
        {"name": "south only", "scopes": "org:south", "recipients": [{"channel": "email", "to": "south@example.cn"}]},
        "test",
    )
    with pytest.raises(ValueError, match="recipients"):
        notifier.add_rule({"name": "nobody"}, "test")

    # raised: one e-mail and one SMS (the south rule does not match this station)
    first = batches.frame(
        1, GENESIS_DIGEST, [alarm("alarm.raised", "active_unacked", 1000).to_wire()], lane=Lane.EVENTS
    )
    assert (await batches.post(first)).status == 200
    await eventually(lambda: len(handler.messages) == 1 and len(received) == 1, what="email and SMS")
    mail = handler.messages[0]
    assert mail["To"] == "duty@example.cn" and "箱内甲烷浓度高" in mail["Subject"]
    assert received[0]["to"] == "+8613800000001" and received[0]["channel"] == "sms"
    assert cloud.app[ALARMS].active()[0]["state"] == "active_unacked"

    # the same activation again (a batch re-sent under a new seq after a rewind): not sent twice
    again = batches.frame(
        2, first.header.digest(), [alarm("alarm.raised", "active_unacked", 1000).to_wire()], lane=Lane.EVENTS
    )
    assert (await batches.post(again)).status == 200
    await eventually(lambda: any(r["status"] == "suppressed" for r in notifier.records()), what="duplicate noticed")
    assert len(handler.messages) == 1 and len(received) == 1

    # unacknowledged past the delay: escalated by phone, once
    assert await notifier.escalate() == 0  # not yet: the rule waits a second
    real_clock = notifier.clock
    notifier.clock = lambda: real_clock() + 5_000  # five seconds later
    assert await notifier.escalate() == 1
    assert await notifier.escalate() == 0
    assert [r["channel"] for r in received] == ["sms", "phone"] and received[1]["text"].startswith("【升级】")

    # acknowledged at the edge: the alarm view follows; a new activation of a low alarm is not routed
    second = batches.frame(
        3,
        again.header.digest(),
        [
            alarm("alarm.acked", "active_acked", 2000).to_wire(),
            alarm("alarm.cleared", "normal", 3000).to_wire(),
        ],
        lane=Lane.EVENTS,
    )
    assert (await batches.post(second)).status == 200
    await eventually(lambda: cloud.app[ALARMS].active() == [], what="back to normal")
    records = notifier.records()
    assert sorted((r["channel"], r["status"], r["tier"]) for r in records) == [
        ("email", "sent", 1),
        ("email", "suppressed", 1),
        ("phone", "sent", 2),
        ("sms", "sent", 1),
        ("sms", "suppressed", 1),
    ]


async def test_failures_and_limits_are_recorded(batches, inbox) -> None:
    cloud = batches.cloud
    handler, smtp_port = inbox
    notifier = cloud.app[NOTIFIER]
    notifier.config.smtp_host, notifier.config.smtp_port = "127.0.0.1", smtp_port
    notifier.config.max_per_recipient_per_hour = 2
    notifier.add_rule(
        {"recipients": [{"channel": "email", "to": "ops@example.cn"}, {"channel": "sms", "to": "+86100"}]}, "test"
    )
    prev = GENESIS_DIGEST
    for seq in range(1, 4):  # three activations of the alarm
        frame = batches.frame(
            seq,
            prev,
            [alarm("alarm.raised", "active_unacked", seq * 10_000, raised=seq * 10_000).to_wire()],
            lane=Lane.EVENTS,
        )
        assert (await batches.post(frame)).status == 200
        prev = frame.header.digest()
    await eventually(lambda: len(notifier.records()) == 6, what="six notification records")
    statuses = sorted((r["channel"], r["status"]) for r in notifier.records())
    assert statuses == [
        ("email", "sent"),
        ("email", "sent"),
        ("email", "suppressed"),  # the recipient's hourly limit
        ("sms", "failed"),  # no SMS provider configured
        ("sms", "failed"),
        ("sms", "failed"),
    ]
    assert len(handler.messages) == 2


async def test_calibration_reminders(batches, inbox) -> None:
    import time

    from cloud.appkeys import CALIBRATION

    cloud = batches.cloud
    handler, smtp_port = inbox
    notifier = cloud.app[NOTIFIER]
    notifier.config.smtp_host, notifier.config.smtp_port = "127.0.0.1", smtp_port
    notifier.add_rule(
        {"topics": ["calibration"], "recipients": [{"channel": "email", "to": "metrology@example.cn"}]}, "t"
    )
    notifier.add_rule({"recipients": [{"channel": "email", "to": "alarms-only@example.cn"}]}, "t")
    now = int(time.time() * 1000)
    calibration = cloud.app[CALIBRATION]
    calibration.plan("gw-sec", "gate-meter", 365, now - 400 * 86_400_000)  # overdue
    calibration.plan("gw-sec", "town-meter", 365, now - 350 * 86_400_000)  # due within 30 days
    calibration.plan("gw-sec", "new-meter", 365, now - 10 * 86_400_000)  # fine
    assert await notifier.remind_calibration() == 2
    assert await notifier.remind_calibration() == 0  # once per due date
    subjects = sorted(m["Subject"] for m in handler.messages)
    assert len(subjects) == 2 and all(m["To"] == "metrology@example.cn" for m in handler.messages)
    assert any("逾期" in s for s in subjects) and any("即将到期" in s for s in subjects)

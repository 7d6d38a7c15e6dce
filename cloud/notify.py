"""Alarm notifications (O-8.1.2 f): routing rules by scope, priority and time of day; e-mail over
SMTP, SMS and phone calls through webhook adapters of the provider; escalation when nobody
acknowledges; de-duplication (one message per alarm activation and recipient) and a
per-recipient rate limit.  Every notification — sent, failed or suppressed, and why — is
recorded.

Rules (``POST /v1/notification-rules``)::

    {"name": "north gate stations, high and up", "scopes": "org:north", "min_priority": "high",
     "hours": "0-24", "recipients": [{"channel": "email", "to": "duty@example.cn"}],
     "escalate_after_s": 900, "escalate_to": [{"channel": "phone", "to": "+8613800000000"}]}
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import smtplib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiohttp

from cloud.access import Principal, parse_scopes
from cloud.alarm_view import PRIORITY_RANK, AlarmView
from cloud.calibration import Calibration
from cloud.registry import Registry
from cloud.sqldb import Dialect, SqlDb
from gascore.records import Event

log = logging.getLogger(__name__)

CHANNELS = ("email", "sms", "phone")
DDL: dict[Dialect, str] = {
    "sqlite": """
        CREATE TABLE IF NOT EXISTS notification_rules(id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL,
            created_by TEXT NOT NULL, created_ms INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS notifications(id INTEGER PRIMARY KEY AUTOINCREMENT, rule_id INTEGER NOT NULL,
            tier INTEGER NOT NULL, gateway_id TEXT NOT NULL, alarm_id TEXT NOT NULL, raised_ms INTEGER,
            channel TEXT NOT NULL, recipient TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL,
            ts_ms INTEGER NOT NULL);
    """,
    "postgresql": """
        CREATE TABLE IF NOT EXISTS notification_rules(id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL,
            created_by TEXT NOT NULL, created_ms BIGINT NOT NULL);
        CREATE TABLE IF NOT EXISTS notifications(id BIGSERIAL PRIMARY KEY, rule_id BIGINT NOT NULL,
            tier INTEGER NOT NULL, gateway_id TEXT NOT NULL, alarm_id TEXT NOT NULL, raised_ms BIGINT,
            channel TEXT NOT NULL, recipient TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL,
            ts_ms BIGINT NOT NULL);
    """,
}


class RuleError(ValueError):
    pass


@dataclass(frozen=True)
class Recipient:
    channel: str
    to: str


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    scopes: frozenset[str]
    min_priority: str
    hours: tuple[int, int]  # local hours [from, to)
    recipients: tuple[Recipient, ...]
    escalate_after_s: int = 0
    escalate_to: tuple[Recipient, ...] = ()
    topics: frozenset[str] = frozenset({"alarms"})  # alarms, calibration

    @classmethod
    def parse(cls, rule_id: int, body: dict[str, Any]) -> Rule:
        def recipients(key: str) -> tuple[Recipient, ...]:
            items = body.get(key) or []
            if not isinstance(items, list):
                raise RuleError(f"{key}: a list of {{channel, to}}")
            out = []
            for i, item in enumerate(items):
                if (
                    not isinstance(item, dict)
                    or item.get("channel") not in CHANNELS
                    or not isinstance(item.get("to"), str)
                ):
                    raise RuleError(f"{key}[{i}]: {{channel: {'|'.join(CHANNELS)}, to: address}}")
                out.append(Recipient(item["channel"], item["to"]))
            return tuple(out)

        if body.get("min_priority", "low") not in PRIORITY_RANK:
            raise RuleError(f"min_priority: one of {', '.join(PRIORITY_RANK)}")
        start, _, end = str(body.get("hours", "0-24")).partition("-")
        if not (start.isdigit() and end.isdigit() and 0 <= int(start) < int(end) <= 24):
            raise RuleError("hours: FROM-TO in local hours, e.g. 8-18 or 0-24")
        escalate = body.get("escalate_after_s", 0)
        if not isinstance(escalate, int) or escalate < 0:
            raise RuleError("escalate_after_s: whole seconds, 0 for none")
        topics = body.get("topics", ["alarms"])
        if not isinstance(topics, list) or not topics or not set(topics) <= {"alarms", "calibration"}:
            raise RuleError("topics: a list of alarms, calibration")
        rule = cls(
            rule_id,
            str(body.get("name", f"rule {rule_id}")),
            parse_scopes(str(body.get("scopes", "*"))),
            str(body.get("min_priority", "low")),
            (int(start), int(end)),
            recipients("recipients"),
            escalate,
            recipients("escalate_to"),
            frozenset(topics),
        )
        if not rule.recipients:
            raise RuleError("recipients: at least one")
        if escalate and not rule.escalate_to:
            raise RuleError("escalate_after_s needs escalate_to")
        return rule


@dataclass
class NotifierConfig:
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "gasiot@localhost"
    webhooks: dict[str, str] = field(default_factory=dict)  # channel (sms, phone) → provider URL
    max_per_recipient_per_hour: int = 20
    utc_offset_h: float = 8.0
    escalation_check_s: float = 5.0


Sender = Callable[[Recipient, str, str], Awaitable[None]]


class Notifier:
    def __init__(
        self,
        db: SqlDb,
        alarms: AlarmView,
        registry: Registry,
        config: NotifierConfig,
        clock: Callable[[], int],
    ) -> None:
        self.db = db
        self.alarms = alarms
        self.registry = registry
        self.config = config
        self.clock = clock
        self.calibration: Calibration | None = None  # set by the app: calibration reminders
        db.script(DDL)
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=10_000)
        alarms.listeners.append(self._on_alarm)

    # ---- rules --------------------------------------------------------------------------------

    def add_rule(self, body: dict[str, Any], by: str) -> Rule:
        Rule.parse(0, body)  # refuse a bad rule before storing it
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO notification_rules(body, created_by, created_ms) VALUES (?,?,?)",
                (json.dumps(body, ensure_ascii=False), by, self.clock()),
            )
            row = tx.one("SELECT max(id) FROM notification_rules")
        assert row is not None
        return Rule.parse(int(row[0]), body)

    def rules(self) -> list[Rule]:
        return [Rule.parse(int(i), json.loads(b)) for i, b in self.db.query("SELECT id, body FROM notification_rules")]

    def records(self, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT rule_id, tier, gateway_id, alarm_id, raised_ms, channel, recipient, status, detail, ts_ms"
            " FROM notifications ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        keys = (
            "rule_id",
            "tier",
            "gateway_id",
            "alarm_id",
            "raised_ms",
            "channel",
            "recipient",
            "status",
            "detail",
            "ts_ms",
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # ---- routing ------------------------------------------------------------------------------

    def _on_alarm(self, gateway_id: str, alarm: dict[str, Any], event: Event) -> None:
        if event.kind == "alarm.raised" and alarm["annunciated"]:
            try:
                self._queue.put_nowait((gateway_id, alarm))
            except asyncio.QueueFull:
                log.error(  # noqa: TRY400 - a full queue, not an error with a useful traceback
                    "notification queue full: alarm %s of %s not notified", alarm["alarm_id"], gateway_id
                )

    def _matches(self, rule: Rule, gateway_id: str, alarm: dict[str, Any]) -> bool:
        if "alarms" not in rule.topics:
            return False
        if PRIORITY_RANK.get(alarm["priority"], 0) < PRIORITY_RANK[rule.min_priority]:
            return False
        hour = (
            dt.datetime.fromtimestamp(self.clock() / 1000, dt.UTC) + dt.timedelta(hours=self.config.utc_offset_h)
        ).hour
        if not rule.hours[0] <= hour < rule.hours[1]:
            return False
        placement = self.registry.placement(gateway_id)
        scope = Principal("rule", "viewer", rule.scopes)
        return scope.everywhere or (placement is not None and scope.sees(placement.station_id, placement.org_id))

    async def run(self) -> None:
        """Send what alarms ask for, and escalate what stays unacknowledged (until cancelled)."""
        escalation = asyncio.create_task(self._escalate_forever())
        try:
            while True:
                gateway_id, alarm = await self._queue.get()
                for rule in self.rules():
                    if self._matches(rule, gateway_id, alarm):
                        for recipient in rule.recipients:
                            await self._notify(rule, 1, recipient, gateway_id, alarm)
        finally:
            escalation.cancel()

    async def drain(self) -> None:
        """Process everything queued now (tests, shutdown)."""
        while not self._queue.empty():
            gateway_id, alarm = self._queue.get_nowait()
            for rule in self.rules():
                if self._matches(rule, gateway_id, alarm):
                    for recipient in rule.recipients:
                        await self._notify(rule, 1, recipient, gateway_id, alarm)

    async def _escalate_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.escalation_check_s)  # a check period, not synchronisation
            try:
                await self.escalate()
                await self.remind_calibration()
            except Exception:  # the escalation loop must survive one bad row
                log.exception("escalation pass failed")

    async def remind_calibration(self) -> int:
        """Instruments due within 30 days or overdue: one reminder per due date and recipient of
        the rules with the calibration topic (O-8.4d).  Returns how many went out."""
        if self.calibration is None:
            return 0
        rules = [r for r in self.rules() if "calibration" in r.topics]
        sent = 0
        for item in self.calibration.status():
            if item["status"] == "ok":
                continue
            reminder = {
                "alarm_id": f"calibration:{item['device_id']}",
                "raised_ms": item["due_ms"] or 0,
                "device": item["device_id"],
                "rule": "calibration",
                "priority": "high" if item["status"] == "overdue" else "medium",
                "message_zh": "仪表检定已逾期" if item["status"] == "overdue" else "仪表检定即将到期",
                "message_en": f"calibration {item['status'].replace('_', ' ')}",
                "value": item["due_ms"],
                "state": item["status"],
            }
            for rule in rules:
                placement = self.registry.placement(item["gateway_id"])
                scope = Principal("rule", "viewer", rule.scopes)
                if not (scope.everywhere or (placement and scope.sees(placement.station_id, placement.org_id))):
                    continue
                for recipient in rule.recipients:
                    sent += await self._notify(rule, 1, recipient, item["gateway_id"], reminder)
        return sent

    async def escalate(self) -> int:
        """Escalate first-tier notifications whose alarm is still unacknowledged after the rule's
        delay (once per activation); returns how many messages went out."""
        now, sent = self.clock(), 0
        rules = {r.id: r for r in self.rules()}
        rows = self.db.query(
            "SELECT DISTINCT rule_id, gateway_id, alarm_id, raised_ms, min(ts_ms) FROM notifications"
            " WHERE tier = 1 AND status = 'sent' GROUP BY rule_id, gateway_id, alarm_id, raised_ms"
        )
        for rule_id, gateway_id, alarm_id, raised_ms, first_ms in rows:
            rule = rules.get(int(rule_id))
            if rule is None or not rule.escalate_after_s or now - int(first_ms) < rule.escalate_after_s * 1000:
                continue
            alarm = self.alarms.get(gateway_id, alarm_id)
            if (
                alarm is None
                or alarm["raised_ms"] != raised_ms
                or alarm["state"] not in ("active_unacked", "cleared_unacked")
            ):
                continue
            done = self.db.one(
                "SELECT 1 FROM notifications WHERE tier = 2 AND rule_id = ? AND gateway_id = ? AND alarm_id = ?"
                " AND raised_ms = ?",
                (rule_id, gateway_id, alarm_id, raised_ms),
            )
            if done:
                continue
            for recipient in rule.escalate_to:
                sent += await self._notify(rule, 2, recipient, gateway_id, alarm)
        return sent

    async def _notify(self, rule: Rule, tier: int, recipient: Recipient, gateway_id: str, alarm: dict[str, Any]) -> int:
        now = self.clock()
        duplicate = self.db.one(
            "SELECT 1 FROM notifications WHERE gateway_id = ? AND alarm_id = ? AND raised_ms = ? AND channel = ?"
            " AND recipient = ? AND tier = ? AND status = 'sent'",
            (gateway_id, alarm["alarm_id"], alarm["raised_ms"], recipient.channel, recipient.to, tier),
        )
        if duplicate:
            self._record(rule, tier, recipient, gateway_id, alarm, "suppressed", "duplicate of a message already sent")
            return 0
        (recent,) = self.db.one(
            "SELECT count(*) FROM notifications WHERE recipient = ? AND status = 'sent' AND ts_ms >= ?",
            (recipient.to, now - 3600_000),
        ) or (0,)
        if int(recent) >= self.config.max_per_recipient_per_hour:
            self._record(rule, tier, recipient, gateway_id, alarm, "suppressed", "recipient's hourly limit reached")
            return 0
        subject, text = _message(gateway_id, alarm, tier)
        try:
            await self._send(recipient, subject, text)
        except (OSError, smtplib.SMTPException, aiohttp.ClientError, TimeoutError, RuntimeError) as err:
            self._record(rule, tier, recipient, gateway_id, alarm, "failed", str(err)[:500])
            log.warning("notification to %s (%s) failed: %s", recipient.to, recipient.channel, err)
            return 0
        self._record(rule, tier, recipient, gateway_id, alarm, "sent", subject)
        return 1

    def _record(
        self,
        rule: Rule,
        tier: int,
        recipient: Recipient,
        gateway_id: str,
        alarm: dict[str, Any],
        status: str,
        detail: str,
    ) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO notifications(rule_id, tier, gateway_id, alarm_id, raised_ms, channel, recipient, status,"
                " detail, ts_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    rule.id,
                    tier,
                    gateway_id,
                    alarm["alarm_id"],
                    alarm["raised_ms"],
                    recipient.channel,
                    recipient.to,
                    status,
                    detail,
                    self.clock(),
                ),
            )

    async def _send(self, recipient: Recipient, subject: str, text: str) -> None:
        if recipient.channel == "email":
            if self.config.smtp_host is None:
                raise RuntimeError("no SMTP server configured")
            await asyncio.to_thread(self._send_mail, recipient.to, subject, text)
            return
        url = self.config.webhooks.get(recipient.channel)
        if url is None:
            raise RuntimeError(f"no {recipient.channel} provider webhook configured")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url,
                json={"channel": recipient.channel, "to": recipient.to, "text": f"{subject}\n{text}"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as r,
        ):
            if r.status >= 300:
                raise RuntimeError(f"the {recipient.channel} provider answered HTTP {r.status}")

    def _send_mail(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.config.smtp_from, to, subject
        message.set_content(text)
        assert self.config.smtp_host is not None
        with smtplib.SMTP(self.config.smtp_host, self.config.smtp_port, timeout=10) as smtp:
            smtp.send_message(message)


def _message(gateway_id: str, alarm: dict[str, Any], tier: int) -> tuple[str, str]:
    prefix = "【升级】" if tier > 1 else ""
    subject = f"{prefix}[{alarm['priority']}] {alarm['device']} {alarm['message_zh'] or alarm['rule']}"
    when = dt.datetime.fromtimestamp((alarm["raised_ms"] or 0) / 1000, dt.UTC).isoformat(timespec="seconds")
    text = (
        f"{alarm['message_zh']}\n{alarm['message_en']}\n"
        f"gateway {gateway_id}, device {alarm['device']}, rule {alarm['rule']}, value {alarm['value']}\n"
        f"raised {when} UTC; state {alarm['state']}"
    )
    return subject, text

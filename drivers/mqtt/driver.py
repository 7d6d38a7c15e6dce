"""MQTT devices (smart meters, some detectors) that publish their own readings.

One broker connection per channel, a persistent session (``clean_session=False``) so that QoS 1
messages published while the gateway was away are delivered when it comes back, capped
exponential backoff with jitter between reconnects.  A payload that cannot be parsed, or a
selector that finds nothing, marks only the affected points.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from drivers.backoff import Backoff
from drivers.base import DeviceError, PushListener, Sample, ScalarValue, Subscription
from drivers.mqtt.config import MqttChannel, MqttPoint
from drivers.mqtt.selector import Missing, Selector, parse_selector
from gascore.tls import client_context

log = logging.getLogger(__name__)


@dataclass
class MqttStatistics:
    messages: int = 0
    unparsable: int = 0
    unknown_topic: int = 0
    connects: int = 0


@dataclass
class _Route:
    device: str
    keys: tuple[str, ...]
    selectors: tuple[Selector, ...] = field(default=())


class MqttDriver:
    """Implements PushDriver[MqttPoint]."""

    def __init__(self, channel: MqttChannel) -> None:
        self.channel = channel
        self.statistics = MqttStatistics()
        self._timestamp = parse_selector(channel.timestamp) if channel.timestamp else None

    def _tls_context(self) -> ssl.SSLContext | None:
        ch = self.channel
        if not ch.tls:
            return None
        return client_context(ca_file=ch.ca_file, cert_file=ch.cert_file, key_file=ch.key_file)

    def topic_of(self, device: str) -> str:
        return self.channel.topic.replace("{device}", device)

    async def run(self, subscriptions: Sequence[Subscription[Any]], listener: PushListener) -> None:
        routes = {
            self.topic_of(s.device): _Route(
                s.device, tuple(k for k, _ in s.points), tuple(parse_selector(p.path) for _, p in s.points)
            )
            for s in subscriptions
        }
        ch = self.channel
        backoff = Backoff(ch.reconnect_initial_s, ch.reconnect_max_s)
        up = False
        while True:
            try:
                async with aiomqtt.Client(
                    ch.host,
                    ch.port,
                    identifier=ch.client_id,
                    username=ch.username,
                    password=ch.password.get_secret_value() if ch.password else None,
                    keepalive=ch.keepalive_s,
                    clean_session=ch.clean_session,
                    timeout=ch.timeout_s,
                    tls_context=self._tls_context(),
                ) as client:
                    for topic in routes:
                        await client.subscribe(topic, qos=ch.qos)
                    self.statistics.connects += 1
                    backoff.reset()
                    if not up:
                        up = True
                        log.info("mqtt %s:%s connected, %d topics", ch.host, ch.port, len(routes))
                        listener.on_link(None, True, "connected")
                    async for message in client.messages:
                        self._deliver(routes, message.topic.value, message.payload, listener)
            except aiomqtt.MqttError as err:
                if up:
                    up = False
                    log.warning("mqtt %s:%s lost: %s", ch.host, ch.port, err)
                    listener.on_link(None, False, f"broker unreachable: {err}")
                elif backoff.failures == 0:
                    listener.on_link(None, False, f"broker unreachable: {err}")
                await asyncio.sleep(backoff.next_delay())

    def _deliver(self, routes: dict[str, _Route], topic: str, payload: Any, listener: PushListener) -> None:
        self.statistics.messages += 1
        route = routes.get(topic)
        if route is None:
            self.statistics.unknown_topic += 1
            return
        raw = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
        listener.on_samples(route.device, self.decode(route, raw))

    def decode(self, route: _Route, raw: bytes) -> list[Sample]:
        """Samples for every point of ``route`` from one payload."""
        if self.channel.payload == "raw":
            return [_sample(k, raw.decode("utf-8", "replace").strip()) for k in route.keys]
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.statistics.unparsable += 1
            return [Sample(k, None, "unparsable_payload") for k in route.keys]
        ts_ms = self._source_ts(doc)
        out = []
        for key, sel in zip(route.keys, route.selectors, strict=True):
            try:
                value = sel.pick(doc)
            except Missing:
                out.append(Sample(key, None, "missing_in_payload", ts_ms))
                continue
            out.append(_sample(key, value, ts_ms))
        return out

    def _source_ts(self, doc: Any) -> int | None:
        if self._timestamp is None:
            return None
        try:
            ts = self._timestamp.pick(doc)
        except Missing:
            return None
        if not isinstance(ts, int | float) or isinstance(ts, bool) or ts <= 0:
            return None
        return int(ts * 1000) if ts < 10**11 else int(ts)  # epoch seconds or milliseconds

    async def write(self, unit: int, point: MqttPoint, value: ScalarValue) -> None:
        raise DeviceError("MQTT points are read-only (commands to MQTT devices arrive with the downlink issue)")


def _sample(key: str, value: Any, ts_ms: int | None = None) -> Sample:
    if value is None:
        return Sample(key, None, "null_in_payload", ts_ms)
    if isinstance(value, bool | int | float | str):
        return Sample(key, value, None, ts_ms)
    return Sample(key, None, f"unsupported_type:{type(value).__name__}", ts_ms)

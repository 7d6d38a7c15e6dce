"""OPC-UA client driver: one session per endpoint, shared by polling (``Driver``) and
subscriptions (``PushDriver``).

``run`` owns the link: it connects, creates every subscription and monitored item, delivers
changes, and when the session is lost (socket closed, watchdog probe unanswered, server
restarted) reports the link down once, reconnects with capped exponential backoff and jitter,
re-creates everything on a fresh session and reports the link up again.  ``read``/``write``
use the same session and open one if there is none; a failure there marks the session lost,
which ``run`` then notices.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from asyncua import ua

from drivers.backoff import Backoff
from drivers.base import CommError, Driver, PushDriver, PushListener, Sample, ScalarValue, Subscription
from drivers.opcua.config import OpcUaChannel, OpcUaPoint
from drivers.opcua.errors import WriteValueError
from drivers.opcua.monitor import MonitoredItems, OpcUaStatistics, Wanted
from drivers.opcua.security import load_trust
from drivers.opcua.session import OpcUaSession, ServiceFault
from drivers.opcua.status import error_sample, sample_from

_log = logging.getLogger(__name__)


class OpcUaDriver:
    """:class:`drivers.base.Driver` and :class:`drivers.base.PushDriver` for :class:`OpcUaPoint`."""

    def __init__(self, channel: OpcUaChannel) -> None:
        self.channel = channel
        self.statistics = OpcUaStatistics()
        self._session: OpcUaSession | None = None
        self._lock = asyncio.Lock()  # one connect at a time
        self._types: dict[str, ua.VariantType] = {}  # node → variant type to write it with
        self._monitor: MonitoredItems | None = None
        self._up: bool | None = None  # last logged state, so only changes are logged

    # ------------------------------------------------------------------ session

    async def connect(self) -> None:
        """Open the session (no-op when it is open).  Raises CommError (SecurityError when the
        configuration or the server's certificate is the problem)."""
        await self._live_session()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _live_session(self) -> OpcUaSession:
        async with self._lock:
            session = self._session
            if session is not None and session.alive:
                return session
            self._session = None
            if session is not None:
                await session.close()
            try:
                # Read on every attempt: a certificate an administrator adds counts at the next one.
                trust = await load_trust(self.channel)
                session = await OpcUaSession.open(self.channel, trust)
            except CommError as err:
                self.statistics.connect_failures += 1
                self._set_up(False, str(err))
                raise
            self.statistics.sessions += 1
            self._session = session
            self._set_up(True, "session open")
            return session

    async def _drop(self, session: OpcUaSession) -> None:
        """Close a lost session now, so asyncua's publish loop stops retrying on a dead link."""
        if self._session is session:
            self._session = None
        await session.close()

    def _set_up(self, up: bool, why: str) -> None:
        if up != self._up:
            level = logging.INFO if up else logging.WARNING
            _log.log(level, "opcua %s %s: %s", self.channel.endpoint, "up" if up else "down", why)
        self._up = up

    # ------------------------------------------------------------------ Driver

    async def read(self, unit: int, points: Sequence[tuple[str, OpcUaPoint]]) -> list[Sample]:
        """One Sample per point, in order, from one Read request per ``max_nodes_per_read`` nodes.

        ``unit`` is ignored (OPC-UA addresses nodes, not units).  Raises CommError when the
        server is unreachable; a bad node or a refused request makes only those points bad.
        """
        if not points:
            return []
        session = await self._live_session()
        samples: list[Sample] = []
        size = self.channel.max_nodes_per_read
        for start in range(0, len(points), size):
            chunk = points[start : start + size]
            try:
                values = await session.read([point.node_id for _, point in chunk])
            except ServiceFault as fault:
                samples.extend(error_sample(key, fault.code) for key, _ in chunk)
                continue
            except CommError as err:
                self._set_up(False, str(err))
                raise
            samples.extend(
                sample_from(key, dv, point.timestamp) for (key, point), dv in zip(chunk, values, strict=True)
            )
        return samples

    async def write(self, unit: int, point: OpcUaPoint, value: ScalarValue) -> None:
        """Write the node's Value as the node's own DataType (read once, then cached).

        Raises WriteValueError (a ValueError) when ``value`` does not fit that type, DeviceError
        when the server refuses (status name as message), CommError on transport failure.
        """
        session = await self._live_session()
        vtype = self._types.get(point.node)
        if vtype is None:
            vtype = self._types[point.node] = await session.variant_type(point.node_id)
        await session.write(point.node_id, to_variant(value, vtype))

    # ------------------------------------------------------------------ PushDriver

    async def run(self, subscriptions: Sequence[Subscription[Any]], listener: PushListener) -> None:
        """Deliver every ``mode: subscribe`` point until cancelled (``mode: poll`` points are
        left to ``read``).  See the module docstring for the link policy."""
        wanted = [
            Wanted(sub.device, key, point)
            for sub in subscriptions
            for key, point in sub.points
            if isinstance(point, OpcUaPoint) and point.mode == "subscribe"
        ]
        if not wanted:
            await asyncio.Event().wait()  # nothing to subscribe: polling alone uses the session
        backoff = Backoff(self.channel.reconnect_initial_s, self.channel.reconnect_max_s)
        link: bool | None = None  # what the listener was last told
        ever_up = False
        try:
            while True:
                try:
                    session, monitor = await self._subscribe(wanted, listener)
                except CommError as err:
                    await self._drop_if_lost()
                    if link is not False:
                        listener.on_link(None, False, str(err))
                        link = False
                    await asyncio.sleep(backoff.next_delay())  # not synchronisation: the reconnect delay
                    continue
                listener.on_link(None, True, "reconnected" if ever_up else "connected")
                link = ever_up = True
                backoff.reset()
                reason = await self._deliver(session, monitor)
                self._set_up(False, reason)
                listener.on_link(None, False, reason)
                link = False
                await asyncio.sleep(backoff.next_delay())  # not synchronisation: the reconnect delay
        finally:
            await self.close()

    async def _subscribe(self, wanted: Sequence[Wanted], listener: PushListener) -> tuple[OpcUaSession, MonitoredItems]:
        """A live session with every subscription and monitored item created on it."""
        session = await self._live_session()
        monitor = MonitoredItems(
            session, wanted, listener, retry_s=self.channel.reconnect_max_s, statistics=self.statistics
        )
        try:
            await monitor.start()
        except BaseException:
            await monitor.close()
            raise
        return session, monitor

    async def _deliver(self, session: OpcUaSession, monitor: MonitoredItems) -> str:
        """Deliver until the session is lost; then close both.  Returns why it was lost."""
        self._monitor = monitor
        try:
            return await monitor.run()
        finally:
            self._monitor = None
            await monitor.close()
            await self._drop(session)

    async def _drop_if_lost(self) -> None:
        session = self._session
        if session is not None and not session.alive:
            await self._drop(session)

    @property
    def session_security(self) -> str | None:
        """Security of the open session (``Basic256Sha256/SignAndEncrypt``), None when closed."""
        session = self._session
        return session.security if session is not None and session.alive else None

    @property
    def monitored(self) -> MonitoredItems | None:
        """The monitored items of the current session while ``run`` has them (for status/tests)."""
        return self._monitor


_INT_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}


def to_variant(value: ScalarValue, vtype: ua.VariantType) -> ua.Variant:
    """``value`` as a Variant of ``vtype``; WriteValueError when it does not fit."""
    if vtype is ua.VariantType.Boolean:
        if isinstance(value, bool) or value in (0, 1):
            return ua.Variant(bool(value), vtype)
        raise WriteValueError(f"a Boolean node takes true/false, not {value!r}")
    if isinstance(value, bool):
        raise WriteValueError(f"a {vtype.name} node takes a number, not {value!r}")
    if vtype in _INT_RANGES:
        low, high = _INT_RANGES[vtype]
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise WriteValueError(f"a {vtype.name} node takes a whole number, not {value!r}")
        number = int(value)
        if not low <= number <= high:
            raise WriteValueError(f"{number} is out of range for {vtype.name} ({low}..{high})")
        return ua.Variant(number, vtype)
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        return ua.Variant(float(value), vtype)
    raise WriteValueError(f"cannot write a {vtype.name} node")


def is_polled(point: OpcUaPoint) -> bool:
    """``mode: poll`` points go through ``read``, the rest through ``run``."""
    return point.mode == "poll"


if TYPE_CHECKING:
    # Static proof, checked by mypy, that the class satisfies both protocols.
    def _is_a_driver(driver: OpcUaDriver) -> Driver[OpcUaPoint]:
        return driver

    def _is_a_push_driver(driver: OpcUaDriver) -> PushDriver[OpcUaPoint]:
        return driver

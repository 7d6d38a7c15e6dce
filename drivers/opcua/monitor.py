"""Subscriptions and monitored items of one session, kept equal to what is wanted.

Reconciliation, as asyncua's HA reconciliator does it: the wanted set (every subscribed point)
is compared with the actual set (monitored items the server accepted and still serves), and
whatever is missing is created — at start (everything), when the server drops a subscription
(all of its items), and every ``retry_s`` for items the server refused or later reported gone
(unknown node id: the node may come back after a SCADA reconfiguration).

One subscription per distinct publishing interval (the points' ``sampling_interval_ms``).
Notifications are read from asyncua's bounded queue by one task per subscription and handed to
the listener as one ``on_samples`` call per device per burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from asyncua import ua
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, StatusChangeEvent
from asyncua.common.subscription import Subscription as UaSubscription
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes

from drivers.base import CommError, DeviceError, PushListener, Sample
from drivers.opcua.config import OpcUaPoint
from drivers.opcua.session import OpcUaSession
from drivers.opcua.status import error_sample, sample_from, status, status_name

_log = logging.getLogger(__name__)
_S = StatusCodes

# Notifications asyncua may buffer per subscription before dropping the oldest: four full
# publish responses (we ask for at most MAX_NOTIFICATIONS each), far more than arrives between
# two turns of the consumer task.
MAX_NOTIFICATIONS = 10_000
QUEUE_SIZE = 4 * MAX_NOTIFICATIONS
KEEPALIVE_S = 10.0  # the server sends a keep-alive at least this often on a quiet subscription

# A monitored item reporting one of these no longer watches anything: re-create it later.
_ITEM_GONE: frozenset[str] = frozenset({"BadNodeIdUnknown", "BadNodeIdInvalid", "BadAttributeIdInvalid"})


@dataclass(frozen=True, slots=True)
class Wanted:
    """One subscribed point of one device."""

    device: str
    key: str
    point: OpcUaPoint


@dataclass(slots=True)
class OpcUaStatistics:
    """Counters since the driver was created (over every session)."""

    sessions: int = 0  # sessions opened
    connect_failures: int = 0  # connection attempts that failed (refused, timed out, untrusted …)
    subscriptions_created: int = 0
    items_created: int = 0  # monitored items the server accepted
    items_refused: int = 0  # monitored items the server refused (bad node id, filter …)
    notifications: int = 0  # data changes delivered


@dataclass(slots=True)
class _Sub:
    interval_ms: int
    ua_sub: UaSubscription
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class _Item:
    """A monitored item the server created for a wanted point."""

    sub: _Sub
    handle: int  # our client handle: routes notifications
    server_id: int  # the server's MonitoredItemId: to delete it


class MonitoredItems:
    """Creates and keeps the monitored items of ``wanted`` on one session; ``run`` delivers."""

    def __init__(
        self,
        session: OpcUaSession,
        wanted: Sequence[Wanted],
        listener: PushListener,
        *,
        retry_s: float,
        statistics: OpcUaStatistics,
    ) -> None:
        self._session = session
        self._listener = listener
        self._retry_s = retry_s
        self.statistics = statistics
        self._groups: dict[int, list[Wanted]] = defaultdict(list)
        for item in wanted:
            self._groups[item.point.sampling_interval_ms].append(item)
        self._subs: dict[int, _Sub] = {}  # publishing interval → live subscription
        self._dead: list[_Sub] = []  # subscriptions the server ended, to delete on our side
        self._actual: dict[Wanted, _Item] = {}  # what the server serves now
        self._routes: dict[int, Wanted] = {}  # client handle → wanted point, for actual items
        self._refused: dict[Wanted, str] = {}  # wanted but refused or gone → last error delivered
        self._gone: list[_Item] = []  # items whose node vanished: delete before re-creating
        self._next_handle = 1
        self._dirty = asyncio.Event()  # a subscription was lost: reconcile now
        self._pending: dict[str, list[Sample]] = defaultdict(list)
        self._flush_scheduled = False

    # ------------------------------------------------------------------ public

    @property
    def actual(self) -> dict[tuple[str, str], int]:
        """(device, key) → client handle of every monitored item the server currently serves."""
        return {(item.device, item.key): mon.handle for item, mon in self._actual.items()}

    @property
    def refused(self) -> dict[tuple[str, str], str]:
        """(device, key) → status name of every wanted item not currently served."""
        return {(item.device, item.key): error for item, error in self._refused.items()}

    async def start(self) -> None:
        """Create every subscription and monitored item.  CommError if the session fails."""
        await self.reconcile()

    async def run(self) -> str:
        """Deliver and keep reconciling until the session is lost; returns why it was lost."""
        lost = asyncio.ensure_future(self._session.wait_lost())
        try:
            while not lost.done():
                dirty = asyncio.ensure_future(self._dirty.wait())
                timeout = self._retry_s if self._refused else None
                try:
                    await asyncio.wait((lost, dirty), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    dirty.cancel()
                if lost.done():
                    break
                self._dirty.clear()
                try:
                    await self.reconcile()
                except CommError:
                    break  # the session is marked lost, with its own reason
            return await lost
        finally:
            lost.cancel()

    async def close(self) -> None:
        """Stop the consumer tasks (the session, and with it the subscriptions, is the caller's)."""
        tasks = [sub.task for sub in (*self._subs.values(), *self._dead) if sub.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._flush()

    # ------------------------------------------------------------------ reconciliation

    async def reconcile(self) -> None:
        """Make actual equal wanted: drop what the server ended, create what is missing."""
        await self._delete_dead()
        for interval_ms, items in self._groups.items():
            missing = [item for item in items if item not in self._actual]
            if not missing:
                continue
            sub = self._subs.get(interval_ms)
            if sub is None:
                try:
                    sub = await self._create_subscription(interval_ms)
                except DeviceError as err:  # refused (e.g. BadTooManySubscriptions): retry on the timer
                    self._refuse(missing, getattr(err, "code", _S.BadUnexpectedError))
                    continue
            await self._create_items(sub, missing)

    async def _delete_dead(self) -> None:
        dead, self._dead = self._dead, []
        for sub in dead:
            # Also stops asyncua's watchdog from reviving it; the server may have forgotten it.
            with contextlib.suppress(CommError, DeviceError):
                await self._session.call("delete subscription", sub.ua_sub.delete())
        gone, self._gone = self._gone, []
        by_sub: dict[int, tuple[_Sub, list[int]]] = {}
        for mon in gone:
            if self._subs.get(mon.sub.interval_ms) is mon.sub:
                by_sub.setdefault(id(mon.sub), (mon.sub, []))[1].append(mon.server_id)
        for sub, server_ids in by_sub.values():
            with contextlib.suppress(CommError, DeviceError):
                await self._session.call("delete monitored items", sub.ua_sub.unsubscribe(server_ids))

    async def _create_subscription(self, interval_ms: int) -> _Sub:
        keepalive = max(1, round(KEEPALIVE_S * 1000 / max(interval_ms, 1)))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=float(interval_ms),
            RequestedLifetimeCount=max(10_000, 3 * keepalive),
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=MAX_NOTIFICATIONS,
            PublishingEnabled=True,
            Priority=0,
        )
        ua_sub = await self._session.call(
            "create subscription",
            self._session.client.create_subscription(
                params, None, queue_maxsize=QUEUE_SIZE, overflow=OverflowPolicy.DROP_OLDEST
            ),
        )
        sub = _Sub(interval_ms, ua_sub)
        sub.task = asyncio.create_task(self._consume(sub), name=f"opcua-subscription-{interval_ms}ms")
        self._subs[interval_ms] = sub
        self.statistics.subscriptions_created += 1
        return sub

    async def _create_items(self, sub: _Sub, items: list[Wanted]) -> None:
        requests = [_request(item.point, self._new_handle()) for item in items]
        for item, request in zip(items, requests, strict=True):
            # Route before the answer: the server may send the first value before it.
            self._routes[request.RequestedParameters.ClientHandle] = item
        try:
            results = await self._session.call("create monitored items", sub.ua_sub.create_monitored_items(requests))
        except DeviceError as err:  # the whole request refused: so is every item in it
            results = [status(getattr(err, "code", _S.BadUnexpectedError))] * len(requests)
        except CommError:
            for request in requests:
                self._routes.pop(request.RequestedParameters.ClientHandle, None)
            raise
        refused: dict[int, list[Wanted]] = defaultdict(list)  # status code → items
        for item, request, result in zip(items, requests, results, strict=True):
            handle = request.RequestedParameters.ClientHandle
            if isinstance(result, ua.StatusCode):
                del self._routes[handle]
                refused[result.value].append(item)
            else:
                self._actual[item] = _Item(sub, handle, int(result))
                if self._refused.pop(item, None) is not None:
                    _log.info("%s: %s (%s) monitored again", item.device, item.key, item.point.node)
                self.statistics.items_created += 1
        for code, refused_items in refused.items():
            self._refuse(refused_items, code)

    def _refuse(self, items: list[Wanted], code: int) -> None:
        """Mark items refused; deliver an error Sample when the error is new for the item."""
        error = status_name(code)
        errors: dict[str, list[Sample]] = defaultdict(list)
        for item in items:
            self.statistics.items_refused += 1
            if self._refused.get(item) != error:
                _log.warning("%s: %s (%s) refused by the server: %s", item.device, item.key, item.point.node, error)
                errors[item.device].append(error_sample(item.key, code))
            self._refused[item] = error
        for device, samples in errors.items():
            self._listener.on_samples(device, samples)

    def _new_handle(self) -> int:
        handle = self._next_handle
        self._next_handle += 1
        return handle

    # ------------------------------------------------------------------ delivery

    async def _consume(self, sub: _Sub) -> None:
        async for event in sub.ua_sub:
            if isinstance(event, DataChangeEvent):
                self._on_data_change(event.data.monitored_item)
            elif isinstance(event, StatusChangeEvent) and not event.notification.Status.is_good():
                self._on_subscription_ended(sub, event.notification.Status)
                return

    def _on_data_change(self, notification: ua.MonitoredItemNotification) -> None:
        item = self._routes.get(notification.ClientHandle)
        if item is None or notification.Value is None:
            return
        sample = sample_from(item.key, notification.Value, item.point.timestamp)
        mon = self._actual.get(item)
        if sample.error in _ITEM_GONE and mon is not None and mon.handle == notification.ClientHandle:
            # The node vanished from the server (a SCADA reconfiguration): retry on the timer.
            _log.warning("%s: %s (%s) gone from the server: %s", item.device, item.key, item.point.node, sample.error)
            del self._actual[item]
            del self._routes[mon.handle]
            self._gone.append(mon)
            self._refused[item] = sample.error or ""
        self.statistics.notifications += 1
        self._pending[item.device].append(sample)
        if not self._flush_scheduled:
            # Runs when this task next waits for an event, i.e. after the whole burst.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, defaultdict(list)
        for device, samples in pending.items():
            self._listener.on_samples(device, samples)

    def _on_subscription_ended(self, sub: _Sub, status: ua.StatusCode) -> None:
        name = status_name(status.value)
        if status.value & 0xFFFF0000 == _S.BadShutdown or not self._session.alive:
            # asyncua's watchdog lost the connection and told every subscription.
            self._session.mark_lost(f"connection lost: {name}")
            return
        # The server ended this subscription (e.g. BadTimeout): re-create it and its items.
        _log.warning("subscription %s ms ended by the server: %s; re-creating it", sub.interval_ms, name)
        if self._subs.get(sub.interval_ms) is sub:
            del self._subs[sub.interval_ms]
        self._dead.append(sub)
        for item, mon in list(self._actual.items()):
            if mon.sub is sub:
                del self._actual[item]
                self._routes.pop(mon.handle, None)
        self._dirty.set()


def _request(point: OpcUaPoint, handle: int) -> ua.MonitoredItemCreateRequest:
    params = ua.MonitoringParameters(
        ClientHandle=handle,
        SamplingInterval=float(point.sampling_interval_ms),
        QueueSize=point.queue_size,
        DiscardOldest=True,
    )
    if point.server_deadband is not None:
        params.Filter = ua.DataChangeFilter(
            Trigger=ua.DataChangeTrigger.StatusValue,
            DeadbandType=ua.DeadbandType.Absolute
            if point.server_deadband.type == "absolute"
            else ua.DeadbandType.Percent,
            DeadbandValue=point.server_deadband.value,
        )
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=point.node_id, AttributeId=AttributeIds.Value),
        MonitoringMode=ua.MonitoringMode.Reporting,
        RequestedParameters=params,
    )

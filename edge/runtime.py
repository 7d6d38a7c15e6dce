"""The gateway runtime: wires a validated station into channels, pollers, the store and the sync
client, and supervises them in one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from drivers.backoff import Backoff
from drivers.base import DriverError, Subscription
from drivers.registry import DriverSpec, spec_for
from edge import config_apply, heap, upgrade
from edge.cert_renewal import keep_renewed
from edge.config import DeviceConfig, Station, split_listen
from edge.control import Control, ControlRefused
from edge.datalock import DataDirLock
from edge.device_status import DeviceStatus
from edge.downlink import SIGNATURE_HEADER, CommandPoller, Handler, Outcome
from edge.enroll import CLOUD_KEY_FILE, PAYLOAD_KEY_FILE, load_cloud_verifier, load_payload_key
from edge.group_commit import GroupCommit
from edge.interlocks.engine import InterlockEngine
from edge.launcher import ROOT_ENV
from edge.local_control import LocalControl
from edge.poller import DevicePoller, RunningChannel, now_ms
from edge.processing import DeviceProcessor, PointSpec
from edge.push import PushChannel, PushedDevice
from edge.secret_files import SecretFileError, require_private_secrets
from edge.store import IntegrityCheckFailed, SqliteStore, StoreError
from edge.sync import SyncClient
from edge.task_stop import cancel_and_wait
from edge.tls_files import gateway_ssl_context
from edge.tls_files import session as session_for
from gascore.contract import ENCRYPTED, ContractError, parse_frame
from gascore.crypto import Signer, load_key_file
from gascore.downlink import Command, FirmwareRequest
from gascore.records import Event, EventLevel, Lane, Reading
from gascore.yamldoc import ConfigError

if TYPE_CHECKING:
    # The OPC-UA server (asyncua: ~18 MB, ~0.4 s to import) loads only when the station serves one;
    # the health endpoint and metrics (aiohttp.web, prometheus_client: ~6 MiB) only with a `health:`
    # section.
    from edge.health_http import HealthServer
    from edge.metrics import GatewayMetrics
    from edge.northbound.history import HistoryTable
    from edge.northbound.server import NorthboundServer

log = logging.getLogger(__name__)

STORE_FILE = "gateway.db"


@dataclass
class Gateway:
    station: Station
    signer: Signer
    store: SqliteStore
    channels: dict[str, RunningChannel] = field(default_factory=dict)
    pollers: list[DevicePoller] = field(default_factory=list)
    push_channels: list[PushChannel] = field(default_factory=list)
    statuses: dict[str, DeviceStatus] = field(default_factory=dict)
    sync: SyncClient | None = None
    lock: DataDirLock | None = None
    local: LocalControl | None = None
    commands: CommandPoller | None = None
    drivers: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, DeviceConfig] = field(default_factory=dict)
    metrics: GatewayMetrics | None = None  # with a `health:` section
    health_server: HealthServer | None = None  # while run() serves /metrics and /healthz
    started_ms: int = 0
    store_failures: int = 0  # poll cycles the store failed to commit
    store_error: str | None = None  # the last failure, until a commit succeeds again
    control: Control | None = None  # writes and services from people (OPC-UA, cloud)
    history: HistoryTable | None = None  # local history for OPC-UA HistoryRead
    northbound: NorthboundServer | None = None  # the OPC-UA server (kept across config reloads)
    owns_northbound: bool = False  # started by run() itself (no reload loop around it)
    request_reload: Callable[[], None] | None = None  # set by serve(): reload the station file
    request_stop: Callable[[], None] | None = None  # set by serve(): stop (and exit with exit_code)
    exit_code: int = 0
    commits: int = 0  # poll cycles committed since this start (the release health check)
    group: GroupCommit = field(init=False)  # plain-reading cycles sharing a commit

    def __post_init__(self) -> None:
        self.group = GroupCommit(self.store, 0.0, on_failure=self._group_failed, on_commit=self._committed)

    def _group_failed(self, err: BaseException) -> None:
        self.store_failures += 1
        self.store_error = f"{type(err).__name__}: {err}"
        log.error("store: a group commit failed: %s", self.store_error)

    def _committed(self) -> None:
        if self.sync is not None:
            self.sync.notify()

    @classmethod
    def build(cls, station: Station, signer: Signer | None = None) -> Gateway:
        """Raises SecretFileError (a key others can read), KeyFileError (not enrolled), DataDirLocked
        (already running)."""
        cfg = station.config
        require_private_secrets(station)
        signer = signer or load_key_file(station.key_file)
        lock = DataDirLock(station.data_dir)
        store = SqliteStore(
            station.data_dir / STORE_FILE,
            max_telemetry_rows=cfg.store.max_telemetry_rows,
            synchronous=cfg.store.synchronous,
        )
        _retire_frames_of_other_keys(store, signer)
        gw = cls(station, signer, store, lock=lock)
        gw.group.window_s = cfg.store.commit_window_ms / 1000
        if cfg.health is not None:
            from edge.metrics import GatewayMetrics

            gw.metrics = GatewayMetrics(cfg.gateway.id, gw, now_ms)
        tls = gateway_ssl_context(station.data_dir, cfg.gateway.cloud_url, station.ca_file)
        gw.sync = SyncClient(
            store=store,
            signer=gw.signer,
            gateway_id=cfg.gateway.id,
            cloud_url=cfg.gateway.cloud_url,
            codec=cfg.sync.codec,
            max_batch_records=cfg.sync.max_batch_records,
            max_batch_age_s=cfg.sync.max_batch_age_s,
            timeout_s=cfg.sync.timeout_s,
            backoff=Backoff(cfg.sync.backoff_initial_s, cfg.sync.backoff_max_s),
            ssl_context=tls,
            payload_key=(
                load_payload_key(station.data_dir / PAYLOAD_KEY_FILE) if cfg.sync.codec.endswith(ENCRYPTED) else None
            ),
            on_batch=gw.metrics.on_batch if gw.metrics is not None else None,
        )
        pushed: dict[str, list[PushedDevice]] = {}
        drivers: dict[str, tuple[DriverSpec, Any]] = {}
        for ch in station.channels.values():
            spec = spec_for(ch.driver)
            drivers[ch.id] = (spec, spec.create(ch))
        for dev in cfg.devices:
            spec, driver = drivers[dev.channel]
            model = station.model_of(dev)
            bindings = station.bindings[dev.id]
            specs = [
                PointSpec(key, model.properties[key], b.scale, b.offset, b.deadband) for key, b in bindings.items()
            ]
            processor = DeviceProcessor(dev.id, specs, int(dev.max_silent_s * 1000))
            status = DeviceStatus(dev.id)
            gw.statuses[dev.id] = status
            polled = tuple((k, b) for k, b in bindings.items() if not spec.push or spec.is_polled(b))
            subscribed = tuple((k, b) for k, b in bindings.items() if spec.push and not spec.is_polled(b))
            if polled:
                if dev.channel not in gw.channels:
                    gw.channels[dev.channel] = RunningChannel(dev.channel, driver, Backoff(0.5, 30.0))
                gw.pollers.append(
                    DevicePoller(
                        device_id=dev.id,
                        unit=dev.unit_id,
                        interval_s=dev.poll_interval_s,
                        channel=gw.channels[dev.channel],
                        points=polled,
                        processor=processor,
                        sink=gw.accept_polled,
                        stats=status,
                    )
                )
            if subscribed:
                pushed.setdefault(dev.channel, []).append(
                    PushedDevice(Subscription(dev.id, dev.unit_id, subscribed), processor, status)
                )
        for channel_id, devices in pushed.items():
            gw.push_channels.append(PushChannel(channel_id, drivers[channel_id][1], devices, gw.accept_polled))
        gw.drivers = {cid: d for cid, (_, d) in drivers.items()}
        gw.devices = {d.id: d for d in cfg.devices}
        if station.rule_engine is not None:
            interlocks = InterlockEngine(cfg.interlocks, gw.write_point, gw.emit, now_ms) if cfg.interlocks else None
            gw.local = LocalControl.open(store, station.rule_engine, interlocks, now_ms)
            gw.local.group = gw.group
        gw.control = Control(station, gw.write_point, gw.emit, now_ms)
        if station.opcua_server is not None:
            from edge.northbound import link as northbound_link

            gw.history = northbound_link.install_history(gw)
        gw.commands = CommandPoller(
            store=store,
            signer=gw.signer,
            cloud_key=load_cloud_verifier(station.data_dir / CLOUD_KEY_FILE),
            gateway_id=cfg.gateway.id,
            cloud_url=cfg.gateway.cloud_url,
            handlers=gw.command_handlers(),
            emit=lambda events: gw.sync.notify() if gw.sync else None,
            interval_s=cfg.sync.command_poll_s,
        )
        return gw

    def command_handlers(self) -> dict[str, Handler]:
        async def alarm_ack(command: Command) -> Outcome:
            if self.local is None:
                return Outcome("refused", "this gateway has no rules or alarms")
            raised = command.body.get("raised_ms")
            status, detail = self.local.ack(
                str(command.body["alarm_id"]),
                f"{command.body['by']} (cloud)",
                raised if isinstance(raised, int) else None,
            )
            return Outcome("done" if status == "ok" else "refused", f"{status}: {detail}")

        async def alarm_shelve(command: Command) -> Outcome:
            if self.local is None:
                return Outcome("refused", "this gateway has no rules or alarms")
            until = command.body.get("until_ms")
            if not isinstance(until, int):
                return Outcome("refused", "until_ms: when the shelving ends (epoch ms)")
            status, detail = self.local.shelve(
                str(command.body["alarm_id"]),
                until,
                f"{command.body['by']} (cloud)",
                str(command.body.get("reason", "")),
            )
            return Outcome("done" if status == "ok" else "refused", f"{status}: {detail}")

        async def point_write(command: Command) -> Outcome:
            return await self._control_command(command, "write")

        async def service_call(command: Command) -> Outcome:
            return await self._control_command(command, "call")

        async def config_apply(command: Command) -> Outcome:
            return self._apply_config(command)

        async def firmware_apply(command: Command) -> Outcome:
            return await self._apply_firmware(command)

        async def device_read(command: Command) -> Outcome:
            return await self._reread(str(command.body.get("device", "")))

        return {
            "alarm.ack": alarm_ack,
            "alarm.shelve": alarm_shelve,
            "point.write": point_write,
            "service.call": service_call,
            "config.apply": config_apply,
            "firmware.apply": firmware_apply,
            "device.read": device_read,
        }

    async def _reread(self, device_id: str) -> Outcome:
        """Read a polled device now (a dispatcher doubting a value): the values go to the store as
        a normal poll cycle, and the result names what the device answered."""
        poller = next((p for p in self.pollers if p.device_id == device_id), None)
        if poller is None:
            return Outcome("refused", f"no polled device {device_id!r} on this gateway")
        try:
            samples = await poller.channel.read(poller.unit, poller.points)
        except DriverError as err:
            return Outcome("failed", f"{device_id}: {err}")
        await poller.poll_once()
        bindings = dict(poller.points)
        values = {
            s.key: _engineering(bindings.get(s.key), s.value) if s.error is None else f"error: {s.error}"
            for s in samples
        }
        return Outcome("done", json.dumps(values, ensure_ascii=False, default=str)[:4000])

    async def _apply_firmware(self, command: Command) -> Outcome:
        """Fetch, verify and install a release, put it on trial and exit so that gasiot-launch
        starts it (and rolls it back if it does not report healthy)."""
        body = command.body
        version, sha256, filename = body.get("version"), body.get("sha256"), body.get("filename")
        if not isinstance(version, str) or not isinstance(sha256, str) or not isinstance(filename, str):
            return Outcome("refused", "firmware.apply needs version, sha256 and filename")
        root = os.environ.get(ROOT_ENV)
        if root is None or self.request_stop is None:
            return Outcome("refused", "this gateway was not started by gasiot-launch: it cannot switch releases")
        try:
            package = await self._fetch_release(version)
            await asyncio.to_thread(upgrade.stage, Path(root), version, package, sha256, filename)
            upgrade.begin(Path(root), version, deadline_s=float(body.get("deadline_s", upgrade.TRIAL_DEADLINE_S)))
        except (upgrade.UpgradeError, OSError, aiohttp.ClientError, TimeoutError) as err:
            self.emit([_config_event("firmware.failed", EventLevel.MAJOR, version, reason=str(err))])
            return Outcome("failed", f"release {version}: {err}")
        self.emit([_config_event("firmware.switching", EventLevel.INFO, version, previous=upgrade.running_version())])
        self.exit_code = upgrade.EXIT_UPGRADE
        self.request_stop()
        return Outcome("done", f"release {version} installed; restarting into it (trial)")

    async def _fetch_release(self, version: str) -> bytes:
        assert self.sync is not None
        request = FirmwareRequest(self.station.config.gateway.id, now_ms(), version)
        body = request.canonical()
        url = self.station.config.gateway.cloud_url.rstrip("/") + "/v1/firmware/fetch"
        async with (
            asyncio.timeout(300),
            session_for(self.sync.ssl_context) as session,
            session.post(url, data=body, headers={SIGNATURE_HEADER: self.signer.sign(body).hex()}) as resp,
        ):
            if resp.status != 200:
                raise upgrade.UpgradeError(f"the cloud refused the download (HTTP {resp.status}): {await resp.text()}")
            return await resp.read()

    def _apply_config(self, command: Command) -> Outcome:
        body = command.body
        version, sha256, text = body.get("version"), body.get("sha256"), body.get("yaml")
        if not isinstance(version, int) or not isinstance(sha256, str) or not isinstance(text, str):
            return Outcome("refused", "config.apply needs version (int), sha256 and yaml (text)")
        if self.request_reload is None:
            return Outcome("refused", "this gateway runs without in-process reload (start it with `gasiot edge run`)")
        try:
            config_apply.stage(self.station, version, sha256, text)
        except config_apply.ConfigRejected as err:
            self.emit([_config_event("config.rejected", EventLevel.WARNING, version, reason=str(err))])
            return Outcome("refused", f"v{version}: {err}")
        self.request_reload()
        return Outcome("done", f"v{version} staged; the gateway reloads on it")

    async def _control_command(self, command: Command, kind: str) -> Outcome:
        """A write or service call from the cloud: the same path as from SCADA (model checks,
        audit events, read-back), with the signed command's author named in the audit."""
        if self.control is None:
            return Outcome("refused", "no control path")
        body = command.body
        by = f"{body.get('by', '?')} (cloud)"
        try:
            if kind == "write":
                result = await self.control.write(
                    str(body["device"]), str(body["point"]), body["value"], by=by, origin="cloud"
                )
            else:
                args = body.get("args") or {}
                if not isinstance(args, dict):
                    return Outcome("refused", "args must be an object")
                result = await self.control.call(str(body["device"]), str(body["service"]), args, by=by, origin="cloud")
        except ControlRefused as err:
            return Outcome("refused", str(err))
        except KeyError as err:
            return Outcome("refused", f"the command has no {err.args[0]!r}")
        return Outcome("done" if result.status == "done" else "failed", str(result))

    def accept_polled(
        self, readings: list[Reading], events: list[Event], observed: list[Reading] | None = None
    ) -> None:
        """A device's poll cycle or push delivery: like ``accept``, but plain readings may wait
        up to ``store.commit_window_ms`` to share a commit with other devices' (edge/group_commit.py)."""
        self.accept(readings, events, observed, may_wait=True)

    def accept(
        self,
        readings: list[Reading],
        events: list[Event],
        observed: list[Reading] | None = None,
        *,
        may_wait: bool = False,
    ) -> None:
        """One poll cycle: through the rules, alarms and interlocks, then committed to SQLite
        (in one transaction) before anything else sees it."""
        group = self.group
        try:
            if self.local is not None:
                committed = self.local.cycle(
                    readings, events, observed if observed is not None else readings, may_wait=may_wait
                )
            elif may_wait and not events and group.hold(readings):
                committed = False
            else:
                self.store.append([*group.take(), *readings], events)
                committed = True
        except (sqlite3.Error, StoreError) as err:
            self.store_failures += 1
            self.store_error = f"{type(err).__name__}: {err}"
            # Damage found by statements of our own on the store's file (alarm requests): the
            # store moves the file aside and goes on in a fresh one; this cycle is counted lost.
            if self.store.heal(err):
                self.store.count_unstored(readings, events)
            raise
        if self.store_error is not None:
            log.info("store commits succeed again")
            self.store_error = None
        self.commits += 1
        if self.control is not None:
            self.control.observe(observed if observed is not None else readings)
        if committed and self.sync is not None:
            self.sync.notify()

    def emit(self, events: list[Event]) -> None:
        """Events produced outside a poll cycle (interlock outcomes, command results)."""
        self.accept([], events, [])

    async def write_point(self, device_id: str, point: str, value: Any) -> None:
        """Write a property of a device in engineering units (interlocks, commands)."""
        device = self.devices[device_id]
        binding = self.station.bindings[device_id][point]
        raw = to_raw(binding, value)
        channel = self.channels.get(device.channel)
        if channel is not None:
            await channel.write(device.unit_id, binding, raw)
        else:
            await self.drivers[device.channel].write(device.unit_id, binding, raw)

    async def _housekeeping(self) -> None:
        ticks = 0
        releases = os.environ.get(ROOT_ENV)
        while True:
            await asyncio.sleep(1.0)  # rule timers, shelve expiry, read-back deadlines, CLI requests
            ticks += 1
            try:
                self._housekeeping_tick(ticks, releases)
            except (sqlite3.Error, StoreError) as err:  # a full or damaged store: the next tick tries again
                if not self.store.heal(err):
                    log.warning("housekeeping: %s: %s", type(err).__name__, err)

    async def _check_store(self) -> None:
        """Read the whole store file for damage now and then (in a worker thread, on a
        connection of its own); a damaged file is set aside and the gateway goes on in a fresh one."""
        interval = self.station.config.store.integrity_check_s
        if not interval:
            return
        while True:
            await asyncio.sleep(interval)  # the checking period, not synchronisation
            generation = self.store.set_aside_count
            problem = await asyncio.to_thread(self.store.integrity_problem)
            # (a file replaced meanwhile was the one checked: nothing to do with the fresh one)
            if problem is not None and self.store.set_aside_count == generation:
                self.store.heal(IntegrityCheckFailed(problem))
                if self.sync is not None:
                    self.sync.notify()

    def _housekeeping_tick(self, ticks: int, releases: str | None) -> None:
        if releases is not None and self.store_error is None:
            uptime_s = (now_ms() - self.started_ms) / 1000
            if upgrade.report_healthy_if_due(Path(releases), uptime_s, self.commits):
                self.emit([_config_event("firmware.committed", EventLevel.INFO, upgrade.running_version())])
        if ticks % 60 == 0 and self.history is not None:
            from edge.northbound import link as northbound_link

            northbound_link.prune_history(self)
        if self.local is not None:
            self.local.housekeeping()
            if self.sync is not None:
                self.sync.notify()

    async def run(self, stop: asyncio.Event | None = None, *, flush_timeout_s: float = 10.0) -> None:
        """Poll and sync until ``stop`` is set (or the task is cancelled); then stop polling and
        try, for at most ``flush_timeout_s``, to deliver what is buffered.  Whatever is not
        delivered stays in the store for the next start."""
        assert self.sync is not None
        stop = stop or asyncio.Event()
        self.started_ms = now_ms()
        log.info(
            "gateway %s starting: %d channels, %d devices, store %s",
            self.station.config.gateway.id,
            len(self.channels),
            len(self.pollers),
            self.store.path,
        )
        try:
            self._announce_devices()
            self._report_release()
            await self._start_health()
            await self._start_northbound()
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(p.run(), name=f"poll:{p.device_id}") for p in self.pollers]
                tasks += [tg.create_task(c.run(), name=f"push:{c.channel_id}") for c in self.push_channels]
                tasks.append(tg.create_task(self.sync.run(), name="sync"))
                tasks.append(tg.create_task(self._report_status(), name="status"))
                tasks.append(tg.create_task(self._housekeeping(), name="housekeeping"))
                tasks.append(tg.create_task(self._check_store(), name="store-check"))
                if self.commands is not None:
                    tasks.append(tg.create_task(self.commands.run(), name="commands"))
                if self.sync.ssl_context is not None:
                    tasks.append(
                        tg.create_task(
                            keep_renewed(
                                data_dir=self.station.data_dir,
                                cloud_url=self.station.config.gateway.cloud_url,
                                gateway_id=self.station.config.gateway.id,
                                ssl_context=self.sync.ssl_context,
                            ),
                            name="certificate",
                        )
                    )
                await stop.wait()
                await cancel_and_wait(tasks)
            self.group.flush()  # what the last poll cycles held, before the final drain
            self.save_status()
            await self.flush(flush_timeout_s)
            log.info(
                "gateway %s stopped; still buffered: %d telemetry, %d events (kept for the next start)",
                self.station.config.gateway.id,
                self.store.buffered(Lane.TELEMETRY),
                self.store.buffered(Lane.EVENTS),
            )
        finally:
            await self._stop_northbound()
            if self.health_server is not None:
                await self.health_server.stop()
                self.health_server = None
            for ch in self.channels.values():
                with contextlib.suppress(Exception):
                    await ch.close()
            self.close()

    def _report_release(self) -> None:
        """After gasiot-launch rolled a release back, the release running again says so."""
        root = os.environ.get(ROOT_ENV)
        outcome = upgrade.unreported_outcome(Path(root)) if root else None
        if outcome is not None:
            reason = f"{outcome.get('failures', 0)} failed starts or no health report before the deadline"
            self.emit([_config_event("firmware.rolled_back", EventLevel.MAJOR, outcome["to"], reason=reason)])

    def _announce_devices(self) -> None:
        """Tell the cloud's registry which devices this gateway serves (A-4.1.5-reg): each start,
        so a swapped device or a changed model reaches it."""
        now = now_ms()
        events = []
        for device in self.station.config.devices:
            model = self.station.model_of(device)
            data: dict[str, Any] = {"model": model.id, "model_version": model.version}
            if device.serial:
                data["serial"] = device.serial
            events.append(Event(device.id, "device.announce", now, EventLevel.INFO, data))
        self.emit(events)

    async def _start_northbound(self) -> None:
        """Serve OPC-UA if configured: the server handed in by the reload loop, or one of our own."""
        if self.station.opcua_server is None:
            return
        from edge.northbound import link as northbound_link
        from edge.northbound.server import NorthboundServer

        if self.northbound is None:
            self.northbound = NorthboundServer(self.station, self.store.path)
            self.owns_northbound = True
            await self.northbound.start()
        await northbound_link.attach(self, self.northbound)

    async def _stop_northbound(self) -> None:
        server = self.northbound
        if server is None:
            return
        from edge.northbound import link as northbound_link

        northbound_link.detach(self, server)
        if self.owns_northbound:
            await server.stop()
            self.northbound = None

    async def _start_health(self) -> None:
        """Serve /metrics and /healthz if configured.  The endpoint is secondary: if it cannot
        listen, the gateway says so once and keeps collecting."""
        health = self.station.config.health
        if health is None or self.metrics is None:
            return
        from edge.health_http import HealthContext, HealthServer, create_app

        host, port = split_listen(health.listen)
        context = HealthContext(self.station.config.gateway.id, self, self.metrics, health.max_sync_silence_s, now_ms)
        server = HealthServer(create_app(context), host, port)
        try:
            await server.start()
        except OSError as err:
            log.error(  # noqa: TRY400 - the cause is in the message; a traceback would add nothing
                "health.listen %s: cannot listen (%s); running without /metrics and /healthz",
                health.listen,
                err.strerror or err,
            )
            return
        self.health_server = server
        log.info("health endpoint on %s (/metrics, /healthz)", server.url)

    async def _report_status(self) -> None:
        interval = self.station.config.gateway.status_interval_s
        while True:
            await asyncio.sleep(interval)  # a reporting period, not synchronisation
            self.save_status()

    def save_status(self) -> None:
        try:
            self.store.save_status({d: s.snapshot() for d, s in self.statuses.items()}, now_ms())
        except (sqlite3.Error, StoreError) as err:  # a full disk: the next report tries again
            log.warning("device status not stored: %s: %s", type(err).__name__, err)
            return
        if self.sync is not None:
            self.sync.notify()

    def close(self) -> None:
        self.store.close()
        if self.lock is not None:
            self.lock.release()

    async def flush(self, timeout_s: float) -> None:
        assert self.sync is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), session_for(self.sync.ssl_context) as session:
                await self.sync.drain(session)


def _config_event(kind: str, level: EventLevel, version: Any, **data: Any) -> Event:
    return Event("_gateway", kind, now_ms(), level, {"version": version, **data})


def _engineering(binding: Any, raw: Any) -> Any:
    """A raw wire value in engineering units (the forward direction of ``to_raw``)."""
    if binding is None or isinstance(raw, bool) or not isinstance(raw, int | float):
        return raw
    value = raw * getattr(binding, "scale", 1.0) + getattr(binding, "offset", 0.0)
    return round(value, 9)


def to_raw(binding: Any, value: Any) -> Any:
    """Engineering units → what the driver writes: the inverse of scale/offset; whole numbers for
    integer registers."""
    if isinstance(value, bool) or (binding.scale == 1.0 and binding.offset == 0.0):
        raw = value
    else:
        raw = (float(value) - binding.offset) / binding.scale
    if isinstance(raw, float) and str(getattr(binding, "type", "")).startswith(("int", "uint")):
        return round(raw)
    return raw


def _retire_frames_of_other_keys(store: SqliteStore, signer: Signer) -> None:
    """An in-flight frame signed with a previous key (the gateway was re-enrolled) would be
    refused forever; its rows are batched again and signed with the current key."""
    for lane in Lane:
        pending = store.pending(lane)
        if pending is None:
            continue
        try:
            key_id = parse_frame(pending.frame).header.key_id
        except ContractError:
            key_id = ""
        if key_id != signer.key_id:
            log.warning(
                "lane %s: in-flight batch %d was signed by key %s; re-signing with %s",
                lane.value,
                pending.seq,
                key_id or "?",
                signer.key_id,
            )
            store.drop_pending(lane)


async def run_until_signalled(gateway: Gateway, load: Callable[[], Station] | None = None) -> int:
    """Run the gateway; SIGTERM/SIGINT stop it cleanly (polling stops, buffered data is flushed);
    SIGHUP (systemd's reload) re-reads the station file with ``load``."""
    loop = asyncio.get_running_loop()
    stop, reload = asyncio.Event(), asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if load is not None:
        loop.add_signal_handler(signal.SIGHUP, reload.set)
    return await serve(gateway, stop=stop, reload=reload, load=load, manage_heap=True)


async def serve(
    gateway: Gateway,
    *,
    stop: asyncio.Event,
    reload: asyncio.Event | None = None,
    load: Callable[[], Station] | None = None,
    manage_heap: bool = False,
) -> int:
    """Run ``gateway`` until ``stop``; each time ``reload`` is set, load the station again and, if
    it is valid, restart the gateway on it in this process.  A station that does not load is
    reported and the running gateway goes on untouched.  The OPC-UA server is not restarted: its
    address space and users follow the new station, and SCADA sessions stay connected.
    Returns the exit code the gateway asked for (75: a new release is in place for gasiot-launch).
    ``manage_heap``: this process is the gateway's own (the daemon): tune the garbage collector and
    settle the heap after each (re)build (edge/heap.py) — not in a process that hosts others."""
    reload = reload or asyncio.Event()
    northbound: NorthboundServer | None = None
    if manage_heap:
        heap.tune_collector()
    try:
        while True:
            if gateway.station.opcua_server is not None and northbound is None:
                from edge.northbound.server import NorthboundServer

                northbound = NorthboundServer(gateway.station, gateway.store.path)
                await northbound.start()
            # The long-lived heap (this gateway, the OPC-UA address space) out of the collector's
            # passes; a reload's old gateway is collected here (edge/heap.py).
            if manage_heap:
                heap.settle()
            gateway.northbound = northbound if gateway.station.opcua_server is not None else None
            gateway.request_reload = reload.set
            gateway.request_stop = stop.set
            applied = config_apply.mark_applied(gateway.station)
            if applied is not None:
                gateway.emit([_config_event("config.applied", EventLevel.INFO, applied["version"])])
            round_stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(round_stop), name="gateway")
            new_station = await _wait_for_stop_or_valid_reload(task, stop, reload, load)
            round_stop.set()
            await task
            if new_station is None:
                return gateway.exit_code
            old_station = gateway.station
            try:
                gateway = Gateway.build(new_station)
            except Exception as err:
                log.exception("reload: the gateway cannot start on the new station; going on with the old one")
                staged = config_apply.roll_back(new_station)
                gateway = Gateway.build(old_station)
                if staged is not None:
                    gateway.emit(
                        [_config_event("config.rolled_back", EventLevel.MAJOR, staged["version"], reason=str(err))]
                    )
                continue
            if northbound is not None:
                if new_station.opcua_server is None:
                    await northbound.stop()
                    northbound = None
                else:
                    await northbound.apply(new_station)
            log.info("reload: gateway restarted on %s", new_station.source)
    finally:
        if northbound is not None:
            await northbound.stop()


async def _wait_for_stop_or_valid_reload(
    task: asyncio.Task[None], stop: asyncio.Event, reload: asyncio.Event, load: Callable[[], Station] | None
) -> Station | None:
    """None when the gateway should stop; a freshly loaded, valid station on a reload."""
    while True:
        stopping = asyncio.create_task(stop.wait())
        reloading = asyncio.create_task(reload.wait())
        done, pending = await asyncio.wait({stopping, reloading, task}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending - {task}:
            waiter.cancel()
        if task in done or stop.is_set():
            return None
        reload.clear()
        if load is None:
            continue
        try:
            station = await asyncio.to_thread(load)
            require_private_secrets(station)
        except ConfigError as err:
            for problem in err.problems:
                log.error("reload refused: %s", problem)  # noqa: TRY400 - the problem is the message
            continue
        except SecretFileError as err:
            log.error("reload refused: %s", err)  # noqa: TRY400
            continue
        return station

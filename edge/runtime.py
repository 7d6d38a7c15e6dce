"""The gateway runtime: wires a validated station into channels, pollers, the store and the sync
client, and supervises them in one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

from drivers.backoff import Backoff
from drivers.base import Subscription
from drivers.registry import DriverSpec, spec_for
from edge.cert_renewal import keep_renewed
from edge.config import DeviceConfig, Station
from edge.datalock import DataDirLock
from edge.device_status import DeviceStatus
from edge.downlink import CommandPoller, Handler, Outcome
from edge.enroll import CLOUD_KEY_FILE, PAYLOAD_KEY_FILE, load_cloud_verifier, load_payload_key
from edge.interlocks.engine import InterlockEngine
from edge.local_control import LocalControl
from edge.poller import DevicePoller, RunningChannel, now_ms
from edge.processing import DeviceProcessor, PointSpec
from edge.push import PushChannel, PushedDevice
from edge.secret_files import require_private_secrets
from edge.store import SqliteStore
from edge.sync import SyncClient
from edge.tls_files import gateway_ssl_context
from edge.tls_files import session as session_for
from gascore.contract import ENCRYPTED, ContractError, parse_frame
from gascore.crypto import Signer, load_key_file
from gascore.downlink import Command
from gascore.records import Event, Lane, Reading

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
                        sink=gw.accept,
                        stats=status,
                    )
                )
            if subscribed:
                pushed.setdefault(dev.channel, []).append(
                    PushedDevice(Subscription(dev.id, dev.unit_id, subscribed), processor, status)
                )
        for channel_id, devices in pushed.items():
            gw.push_channels.append(PushChannel(channel_id, drivers[channel_id][1], devices, gw.accept))
        gw.drivers = {cid: d for cid, (_, d) in drivers.items()}
        gw.devices = {d.id: d for d in cfg.devices}
        if station.rule_engine is not None:
            interlocks = InterlockEngine(cfg.interlocks, gw.write_point, gw.emit, now_ms) if cfg.interlocks else None
            gw.local = LocalControl.open(store, station.rule_engine, interlocks, now_ms)
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

        return {"alarm.ack": alarm_ack}

    def accept(self, readings: list[Reading], events: list[Event], observed: list[Reading] | None = None) -> None:
        """One poll cycle: through the rules, alarms and interlocks, then committed to SQLite
        (in one transaction) before anything else sees it."""
        if self.local is not None:
            self.local.cycle(readings, events, observed if observed is not None else readings)
        else:
            self.store.append(readings, events)
        if self.sync is not None:
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
        while True:
            await asyncio.sleep(1.0)  # rule timers, shelve expiry, read-back deadlines, CLI requests
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
        log.info(
            "gateway %s starting: %d channels, %d devices, store %s",
            self.station.config.gateway.id,
            len(self.channels),
            len(self.pollers),
            self.store.path,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(p.run(), name=f"poll:{p.device_id}") for p in self.pollers]
                tasks += [tg.create_task(c.run(), name=f"push:{c.channel_id}") for c in self.push_channels]
                tasks.append(tg.create_task(self.sync.run(), name="sync"))
                tasks.append(tg.create_task(self._report_status(), name="status"))
                tasks.append(tg.create_task(self._housekeeping(), name="housekeeping"))
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
                for task in tasks:
                    task.cancel()
            self.save_status()
            await self.flush(flush_timeout_s)
            log.info(
                "gateway %s stopped; still buffered: %d telemetry, %d events (kept for the next start)",
                self.station.config.gateway.id,
                self.store.buffered(Lane.TELEMETRY),
                self.store.buffered(Lane.EVENTS),
            )
        finally:
            for ch in self.channels.values():
                with contextlib.suppress(Exception):
                    await ch.close()
            self.close()

    async def _report_status(self) -> None:
        interval = self.station.config.gateway.status_interval_s
        while True:
            await asyncio.sleep(interval)  # a reporting period, not synchronisation
            self.save_status()

    def save_status(self) -> None:
        self.store.save_status({d: s.snapshot() for d, s in self.statuses.items()}, now_ms())
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


async def run_until_signalled(gateway: Gateway) -> None:
    """Run the gateway; SIGTERM/SIGINT stop it cleanly (polling stops, buffered data is flushed)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gateway.run(stop)

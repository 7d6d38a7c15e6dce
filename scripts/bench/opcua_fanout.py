"""OPC-UA subscription fan-out: every variable of the northbound server changing at a fixed rate,
several SCADA clients subscribed to all of them: the gateway process's CPU share and the data-change
notifications delivered against those offered, beside a bare asyncua Server doing the same in the
same run.

    python scripts/bench/opcua_fanout.py [--variables 5000] [--rate 1] [--clients 3] [--seconds 30]
        [--security None,SignAndEncrypt] [--feed publish,store] [--publish-ms 500] [--queue 1]
        [--client-watchdog 5] [--no-bare] [--profile DIR] [--experiment gc-freeze,shallow-copy] [--quick]

Every run is three kinds of process, so that nothing shares a GIL with the server it measures:
- the gateway process: the real ``NorthboundServer`` of a synthetic station (devices × 100 float
  properties with unit and range, a viewer user, history on) fed once per tick with a new value for
  every variable, either straight through ``publish()`` (``publish``) or through the gateway's
  normal path, ``SqliteStore.append`` with the history writer and the server as store listener
  (``store``); or, for the baseline, a bare asyncua ``Server`` with the same NodeIds whose values
  are written with ``write_attribute_value`` (``write``);
- ``--clients`` asyncua clients, each subscribing to every variable (one subscription, publishing
  interval ``--publish-ms``, monitored-item queue size ``--queue``) and counting the notifications
  of each tick (a value carries its tick: tick × 100,000 + variable index).  They log in as the
  viewer on the gateway, anonymously on the bare server; security None or Basic256Sha256
  SignAndEncrypt on both.  Their watchdog gives a silent server ``--client-watchdog`` seconds
  (asyncua's default, 1 s, drops the connection whenever the server's loop stalls longer).

CPU share: user + system time of the gateway process (getrusage, all its threads) over the
``--seconds`` window of ticks, as % of one core.  Delivered: notifications of the window's ticks that
reached a client, counted until 2 publishing intervals + 1 s after the window.  With queue size 1
a server that applies an update late coalesces it with the next one: that shows as a ratio < 1.
Loop stall: the longest time the server process's event loop ran nothing else.
All servers listen on 127.0.0.1 only, port 0.  ``--experiment`` changes every server process alike
(bare and gasiot) to measure a proposal; the default run measures the code as it is.

Target (the fan-out issue): delivery ratio ≥ 0.99 at 5,000 variables × 1 Hz × 3 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import logging
import math
import multiprocessing as mp
import os
import pstats
import resource
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

SCALE = 100_000  # value = tick × SCALE + variable index
PROPERTIES_PER_DEVICE = 100
GATEWAY_ID = "gw-fanout"
NS_URI = f"urn:gasiot:{GATEWAY_ID}:station"  # the gateway's namespace; the bare server registers the same
USER, PASSWORD = "scada1", "fanout-bench-pw"
CLIENT_URI = "urn:gasiot:bench:fanout-client"
SECURITY = {"None": "None", "SignAndEncrypt": "Basic256Sha256_SignAndEncrypt"}
START_TIMEOUT_S = 300.0  # building 5,000 variables and subscribing to them on a busy 2-core machine


@dataclass(frozen=True)
class Settings:
    variables: int
    rate: float
    clients: int
    seconds: float
    publish_ms: float
    queue: int
    watchdog_s: float
    profile: str | None
    experiments: tuple[str, ...] = ()

    @property
    def ticks(self) -> int:
        return max(1, round(self.seconds * self.rate))

    @property
    def devices(self) -> int:
        return math.ceil(self.variables / PROPERTIES_PER_DEVICE)

    def names(self) -> list[str]:
        """NodeId strings of the variables, in index order (the gateway's ``<device>.<property>``)."""
        per = PROPERTIES_PER_DEVICE
        return [f"dev{g // per}.p{g % per}" for g in range(self.variables)]


@dataclass(frozen=True)
class Scenario:
    server: str  # "bare" | "gasiot"
    feed: str  # "write" (bare) | "publish" | "store"
    security: str  # "None" | "SignAndEncrypt"

    @property
    def label(self) -> str:
        return f"{self.security}-{self.server}-{self.feed}"


@dataclass
class Result:
    scenario: Scenario
    expected: int
    delivered: int
    cpu_s: float
    wall_s: float
    late_max_ms: float
    stall_max_ms: float
    client_cpu_pct: float  # mean over the clients
    tick_delay_ms: list[float] = field(default_factory=list)  # per (client, tick): last arrival − tick due
    dropped: int = 0
    other: int = 0  # notifications that were not a value of a window tick (status changes, Bad values)

    @property
    def ratio(self) -> float:
        return self.delivered / self.expected if self.expected else 0.0

    @property
    def cpu_pct(self) -> float:
        return 100 * self.cpu_s / self.wall_s


# ---- shared helpers ---------------------------------------------------------------------------


async def receive(conn: Connection) -> Any:
    """The next message from the parent, without blocking the event loop (EOFError if it died)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = conn.fileno()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    return conn.recv()


def child(main: Any, *args: Any) -> None:
    """Process entry.  Ctrl-C is the parent's to handle (it terminates every child, see start());
    a child whose parent is gone ends at its next receive()."""
    logging.basicConfig(level=logging.WARNING, format="%(processName)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # plain-text password, revised timeouts: expected
    with contextlib.suppress(EOFError, BrokenPipeError):
        asyncio.run(main(*args))


# ---- the gateway process ----------------------------------------------------------------------


def write_station(s: Settings, folder: Path, security: str) -> Path:
    """A station of ``s.devices`` devices of a 100-float-property model, with an opcua_server."""
    from edge.northbound.users import hash_password

    models = folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    props = [
        {
            "id": f"p{i}",
            "name": {"zh": f"压力{i}", "en": f"Pressure {i}"},
            "type": "float",
            "unit": "kPa",
            "range": [0, 10_000_000],
        }
        for i in range(PROPERTIES_PER_DEVICE)
    ]
    model = {"id": "fanout_box", "version": 1, "name": {"zh": "基准", "en": "Fan-out bench"}, "properties": props}
    (models / "fanout_box.yaml").write_text(yaml.safe_dump(model, allow_unicode=True), encoding="utf-8")
    points = {f"p{i}": {"table": "holding", "address": 2 * i, "type": "float32"} for i in range(PROPERTIES_PER_DEVICE)}
    data = {
        "gateway": {"id": GATEWAY_ID, "cloud_url": "http://127.0.0.1:9", "data_dir": str(folder / "edge")},
        "models": [str(models)],
        "channels": [{"id": "link", "driver": "modbus_tcp", "host": "127.0.0.1", "port": 9}],  # never polled
        "devices": [
            {"id": f"dev{d}", "model": "fanout_box", "channel": "link", "unit_id": 1 + d % 247, "points": points}
            for d in range(s.devices)
        ],
        "opcua_server": {
            "endpoint": "opc.tcp://127.0.0.1:0/gasiot",
            "security": [SECURITY[security]],
            "users": [{"name": USER, "role": "viewer", "password_hash": hash_password(PASSWORD, log2_n=10)}],
        },
    }
    path = folder / "station.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class GasiotTarget:
    def __init__(self, s: Settings, scenario: Scenario, folder: Path) -> None:
        self.s, self.feed, self.folder = s, scenario.feed, folder
        self.server: Any = None
        self.store: Any = None
        self.points = [tuple(name.split(".")) for name in s.names()]

    async def start(self) -> str:
        from edge.config import load_station
        from edge.northbound.history import HistoryTable
        from edge.northbound.server import NorthboundServer
        from edge.store import SqliteStore

        station = load_station(self.folder / "station.yaml")
        self.store = SqliteStore(station.data_dir / "store.db", synchronous=station.config.store.synchronous)
        config = station.opcua_server
        assert config is not None
        # The gateway's commit path (edge/northbound/link.py): history inside the commit, the
        # server as listener after it.
        self.store.writers.append(HistoryTable(self.store.db, config.history.retention_days).write)
        self.server = NorthboundServer(station, self.store.path)
        await self.server.start()
        self.store.listeners.append(self.server.publish)
        return str(self.server.endpoint)

    async def tick(self, k: int) -> None:
        from gascore.records import Reading

        ts = int(time.time() * 1000)
        base = k * SCALE
        readings = [Reading(d, p, ts, float(base + g)) for g, (d, p) in enumerate(self.points)]
        if self.feed == "store":
            self.store.append(readings)
        else:
            self.server.publish(readings, [])

    @property
    def dropped(self) -> int:
        return int(self.server.dropped_updates) if self.server is not None else 0

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if self.store is not None:
            self.store.close()


class BareTarget:
    """The baseline: asyncua alone, the same NodeIds (Double), values written by the caller."""

    def __init__(self, s: Settings, scenario: Scenario, folder: Path) -> None:
        self.s, self.security, self.folder = s, scenario.security, folder
        self.server: Any = None
        self.nodeids: list[Any] = []
        self.dropped = 0

    async def start(self) -> str:
        from asyncua import Server, ua

        server = Server()
        await server.init()
        server.set_endpoint("opc.tcp://127.0.0.1:0/bare")
        if self.security == "None":
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            await server.load_certificate(str(self.folder / "bare-cert.der"))
            await server.load_private_key(str(self.folder / "bare-key.pem"))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        ns = await server.register_namespace(NS_URI)
        station = await server.nodes.objects.add_object(ua.NodeId("Station", ns), ua.QualifiedName("Station", ns))
        devices: dict[str, Any] = {}
        for name in self.s.names():
            device, prop = name.split(".")
            if device not in devices:
                devices[device] = await station.add_object(ua.NodeId(device, ns), ua.QualifiedName(device, ns))
            var = await devices[device].add_variable(
                ua.NodeId(name, ns), ua.QualifiedName(prop, ns), 0.0, ua.VariantType.Double
            )
            self.nodeids.append(var.nodeid)
        await server.start()
        self.server = server
        port = server.bserver._server.sockets[0].getsockname()[1]
        for ep in await server.get_endpoints():  # asyncua advertises ":0"
            ep.EndpointUrl = f"opc.tcp://127.0.0.1:{port}/bare"
        return f"opc.tcp://127.0.0.1:{port}/bare"

    async def tick(self, k: int) -> None:
        from asyncua import ua

        server, base = self.server, k * SCALE
        now = datetime.now(UTC)
        for g, nodeid in enumerate(self.nodeids):
            dv = ua.DataValue(
                ua.Variant(float(base + g), ua.VariantType.Double), SourceTimestamp=now, ServerTimestamp=now
            )
            await server.write_attribute_value(nodeid, dv)

    async def stop(self) -> None:
        if self.server is not None:
            clock = getattr(self.server.iserver, "time_task", None)
            if clock is not None:  # as NorthboundServer.stop: do not wait a second for the clock
                clock.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await clock
                self.server.iserver.time_task = None
            await self.server.stop()


EXPERIMENTS = {
    "gc-freeze": "gc.freeze() once the address space is built: the cyclic GC stops re-scanning it",
    "shallow-copy": "asyncua keeps a shallow copy, not a deepcopy, of each value per monitored item",
}


def shallow_copy_monitored_values() -> None:
    """The 'shallow-copy' experiment: what an asyncua without the deepcopy per notification would cost."""
    import copy

    from asyncua.server.monitored_item_service import MonitoredItemValues

    def set_current_datavalue(self: Any, cur_val: Any) -> None:
        self.old_dvalue = self.current_dvalue
        self.current_dvalue = copy.copy(cur_val)

    MonitoredItemValues.set_current_datavalue = set_current_datavalue  # type: ignore[method-assign]


async def serve(s: Settings, scenario: Scenario, folder: Path, conn: Connection) -> None:
    target = (BareTarget if scenario.server == "bare" else GasiotTarget)(s, scenario, folder)
    if "shallow-copy" in s.experiments:
        shallow_copy_monitored_values()
    try:
        endpoint = await target.start()
        if "gc-freeze" in s.experiments:
            gc.freeze()
        await target.tick(0)  # the values clients see when they subscribe (not measured)
        conn.send(("ready", endpoint))
        await receive(conn)  # go
        profile = cProfile.Profile() if s.profile else None
        period, lateness = 1 / s.rate, 0.0
        if profile is not None:
            profile.enable()
        stalls = [0.0]
        probe = asyncio.create_task(loop_stalls(stalls))
        t0, r0 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
        for k in range(1, s.ticks + 1):
            due = t0 + (k - 1) * period
            await asyncio.sleep(max(0.0, due - time.monotonic()))  # the update schedule
            lateness = max(lateness, time.monotonic() - due)
            await target.tick(k)
        await asyncio.sleep(max(0.0, t0 + s.ticks * period - time.monotonic()))  # to the window's end
        t1, r1 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
        probe.cancel()
        if profile is not None:
            profile.disable()
            dump_profile(profile, Path(s.profile or "."), scenario.label)
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        done = {"t0": t0, "cpu_s": cpu, "wall_s": t1 - t0, "late_s": lateness, "stall_s": stalls[0]}
        conn.send(("done", {**done, "dropped": target.dropped}))
        await receive(conn)  # stop
    finally:
        await target.stop()


async def loop_stalls(worst: list[float], every: float = 0.01) -> None:
    """The longest time the event loop did not run this probe beyond its due time (it cannot answer
    a Read or a Publish meanwhile)."""
    while True:
        due = time.monotonic() + every
        await asyncio.sleep(every)
        worst[0] = max(worst[0], time.monotonic() - due)


def dump_profile(profile: cProfile.Profile, folder: Path, label: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    profile.dump_stats(folder / f"{label}.prof")
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
    (folder / f"{label}.txt").write_text(text.getvalue(), encoding="utf-8")


# ---- a client process ---------------------------------------------------------------------------


async def subscribe(s: Settings, scenario: Scenario, endpoint: str, security: dict[str, str], conn: Connection) -> None:
    from asyncua import Client, ua
    from asyncua.common.subscription import DataChangeEvent
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    # The watchdog probes the server every watchdog_s and gives up on it after as long without an
    # answer (asyncua's default, 1 s, disconnects as soon as a tick blocks the server's loop longer).
    client = Client(endpoint, timeout=60, watchdog_intervall=s.watchdog_s)
    client.application_uri = CLIENT_URI
    if scenario.server == "gasiot":
        client.set_user(USER)
        client.set_password(PASSWORD)
    if security:
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=security["certificate"],
            private_key=security["private_key"],
            server_certificate=security["server_certificate"],
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )
    n = s.ticks
    counts = [0] * (n + 1)
    last = [0.0] * (n + 1)
    other = 0
    primed: set[int] = set()
    all_primed = asyncio.Event()
    async with client:
        ns = await client.get_namespace_index(NS_URI)
        # Iterator mode: no task per notification; a bound that one publish of every variable
        # (queue size 1 → at most one notification each) cannot fill while the consumer keeps up.
        sub = await client.create_subscription(s.publish_ms, queue_maxsize=8 * s.variables)

        async def consume() -> None:
            nonlocal other
            async for ev in sub:
                value = ev.value if isinstance(ev, DataChangeEvent) else None
                if value is None:
                    other += 1
                    continue
                k, g = divmod(int(value), SCALE)
                if 1 <= k <= n:
                    counts[k] += 1
                    last[k] = time.monotonic()
                elif k == 0 and not all_primed.is_set():
                    primed.add(g)
                    if len(primed) == s.variables:
                        all_primed.set()
                else:
                    other += 1

        consumer = asyncio.create_task(consume())
        try:
            nodes = [client.get_node(ua.NodeId(name, ns)) for name in s.names()]
            results = await sub.subscribe_data_change(nodes, queuesize=s.queue, sampling_interval=0.0)
            bad = [r for r in results if isinstance(r, ua.StatusCode)]
            if bad:
                raise RuntimeError(f"{len(bad)} monitored items refused, e.g. {bad[0]}")
            await asyncio.wait_for(all_primed.wait(), START_TIMEOUT_S)
            conn.send(("ready",))
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.monotonic()
            await receive(conn)  # stop
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / (time.monotonic() - t0)
            conn.send(("counts", {"counts": counts, "last": last, "other": other, "cpu": cpu}))
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer


# ---- the parent -----------------------------------------------------------------------------------


def start(proc: Any) -> None:
    """Start a child with Ctrl-C ignored from its first instruction (the parent stops it)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc.start()
    finally:
        signal.signal(signal.SIGINT, previous)


def tell(conn: Connection, tag: str, who: str) -> None:
    try:
        conn.send((tag,))
    except (BrokenPipeError, ConnectionResetError) as err:
        raise RuntimeError(f"{who} exited before {tag!r} (see its error above)") from err


def expect(conn: Connection, tag: str, timeout: float, who: str) -> tuple[Any, ...]:
    if not conn.poll(timeout):
        raise RuntimeError(f"{who}: no {tag!r} within {timeout:.0f} s")
    try:
        message = conn.recv()
    except EOFError as err:
        raise RuntimeError(f"{who} exited before {tag!r} (see its error above)") from err
    if message[0] != tag:
        raise RuntimeError(f"{who}: expected {tag!r}, got {message[0]!r}")
    return tuple(message[1:])


def prepare(s: Settings, scenario: Scenario, tmp: Path, client_pki: tuple[Path, Path]) -> tuple[Path, dict[str, str]]:
    """The scenario's folder (station file or bare certificate) and the clients' security files."""
    from drivers.opcua.security import create_self_signed
    from drivers.opcua.trust_dir import TrustDirectory

    folder = tmp / scenario.label
    folder.mkdir()
    if scenario.server == "gasiot":
        write_station(s, folder, scenario.security)
        pki = folder / "edge" / "pki"
        server_cert = pki / "opcua-server-cert.der"  # made by the server at its first start
        TrustDirectory(pki / "opcua-clients").trust(client_pki[0])
    else:
        server_cert = folder / "bare-cert.der"
        if scenario.security != "None":
            create_self_signed(
                server_cert, folder / "bare-key.pem", "urn:gasiot:bench:bare", hostnames=["127.0.0.1"], server=True
            )
    if scenario.security == "None":
        return folder, {}
    return folder, {
        "certificate": str(client_pki[0]),
        "private_key": str(client_pki[1]),
        "server_certificate": str(server_cert),
    }


def run(s: Settings, scenario: Scenario, tmp: Path, client_pki: tuple[Path, Path]) -> Result:
    ctx = mp.get_context("spawn")  # fresh interpreters: nothing of the parent's state in the measurement
    folder, security = prepare(s, scenario, tmp, client_pki)
    procs: list[Any] = []
    try:
        conn, child_conn = ctx.Pipe()
        gateway = ctx.Process(
            target=child, args=(serve, s, scenario, folder, child_conn), name=f"{scenario.label}-server"
        )
        start(gateway)
        procs.append(gateway)
        child_conn.close()  # so that recv() sees EOF when the child dies
        (endpoint,) = expect(conn, "ready", START_TIMEOUT_S, gateway.name)
        clients: list[Connection] = []
        for i in range(s.clients):
            c_conn, c_child = ctx.Pipe()
            proc = ctx.Process(
                target=child, args=(subscribe, s, scenario, endpoint, security, c_child), name=f"client{i}"
            )
            start(proc)
            procs.append(proc)
            c_child.close()
            clients.append(c_conn)
        for i, c_conn in enumerate(clients):
            expect(c_conn, "ready", START_TIMEOUT_S, f"client{i}")
        tell(conn, "go", gateway.name)
        (done,) = expect(conn, "done", s.seconds * 3 + 60, gateway.name)
        time.sleep(2 * s.publish_ms / 1000 + 1.0)  # the window's last publishes reach the clients
        delivered = other = 0
        client_cpu = 0.0
        delays: list[float] = []
        period = 1 / s.rate
        for i, c_conn in enumerate(clients):
            tell(c_conn, "stop", f"client{i}")
            (got,) = expect(c_conn, "counts", 60, f"client{i}")
            delivered += sum(got["counts"][1:])
            other += got["other"]
            client_cpu += 100 * got["cpu"] / s.clients
            delays += [
                (t - (done["t0"] + (k - 1) * period)) * 1000 for k, t in enumerate(got["last"]) if k >= 1 and t > 0
            ]
        for proc in procs[1:]:  # the clients disconnect first, while the server still runs
            proc.join(30)
        tell(conn, "stop", gateway.name)
        gateway.join(30)
        return Result(
            scenario,
            expected=s.ticks * s.variables * s.clients,
            delivered=delivered,
            cpu_s=done["cpu_s"],
            wall_s=done["wall_s"],
            late_max_ms=done["late_s"] * 1000,
            stall_max_ms=done["stall_s"] * 1000,
            client_cpu_pct=client_cpu,
            tick_delay_ms=delays,
            dropped=done["dropped"],
            other=other,
        )
    finally:
        for proc in reversed(procs):  # on errors and Ctrl-C: nothing outlives the run (clients first)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(s: Settings, results: list[Result]) -> None:
    print()
    head = (
        f"{'security':15s} {'server':6s} {'feed':7s} {'expected':>10s} {'delivered':>10s} {'ratio':>7s} {'CPU %':>6s} "
        f"{'client CPU %':>12s} {'loop stall':>10s} {'tick late':>9s} {'delay p50':>9s} {'delay max':>9s} "
        f"{'dropped':>7s} {'other':>6s}"
    )
    print(head)
    for r in results:
        sc = r.scenario
        print(
            f"{sc.security:15s} {sc.server:6s} {sc.feed:7s} {r.expected:>10,} {r.delivered:>10,} {r.ratio:>7.4f} "
            f"{r.cpu_pct:>6.1f} {r.client_cpu_pct:>12.1f} {r.stall_max_ms:>8.0f}ms {r.late_max_ms:>7.0f}ms "
            f"{pct(r.tick_delay_ms, 0.5):>7.0f}ms {max(r.tick_delay_ms, default=float('nan')):>7.0f}ms "
            f"{r.dropped:>7,} {r.other:>6,}"
        )
    print()
    print(
        f"{'variables':>9s} {'rate':>6s} {'clients':>7s} {'security':15s} {'feed':7s} {'expected':>10s} "
        f"{'delivered':>10s} {'delivery':>8s} {'target':>6s} {'gw CPU %':>8s} {'bare CPU %':>10s} {'CPU ratio':>9s} "
        f"{'bare delivery':>13s} {'delivery ratio':>14s}"
    )
    for r in results:
        sc = r.scenario
        if sc.server == "bare":
            continue
        bare = next((b for b in results if b.scenario.server == "bare" and b.scenario.security == sc.security), None)
        bare_cpu = f"{bare.cpu_pct:.1f}" if bare else "-"
        cpu_ratio = f"{r.cpu_pct / bare.cpu_pct:.2f}" if bare and bare.cpu_pct > 0 else "-"
        bare_ratio = f"{bare.ratio:.4f}" if bare else "-"
        delivery_ratio = f"{r.ratio / bare.ratio:.4f}" if bare and bare.ratio > 0 else "-"
        verdict = "ok" if r.ratio >= 0.99 else "SHORT"
        print(
            f"{s.variables:>9,} {s.rate:>4g}Hz {s.clients:>7} {sc.security:15s} {sc.feed:7s} {r.expected:>10,} "
            f"{r.delivered:>10,} {r.ratio:>8.4f} {verdict:>6s} {r.cpu_pct:>8.1f} {bare_cpu:>10s} {cpu_ratio:>9s} "
            f"{bare_ratio:>13s} {delivery_ratio:>14s}"
        )
    print()
    print(
        "delivery = delivered / expected (target ≥ 0.99); CPU % = server process user+system time over the "
        "window, % of one core;\nclient CPU % = the same for each client process from its ready to its stop, mean; "
        "ratios are gasiot / bare asyncua in the same run;\n'loop stall' = longest time the server's event loop ran "
        "nothing else (no Read, no Publish answered); 'tick late' = worst lateness of a tick;\n'delay' = per client "
        "and tick, last notification of the tick received − tick due; 'dropped' = updates dropped by the server's "
        "bounded queue;\n'other' = notifications that were not a window tick's value (Bad status, status changes)."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variables", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=1.0, help="updates of every variable per second")
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0, help="the measurement window")
    ap.add_argument("--security", default="None,SignAndEncrypt", help="comma-separated: None, SignAndEncrypt")
    ap.add_argument("--feed", default="publish,store", help="comma-separated gateway feeds: publish, store")
    ap.add_argument("--publish-ms", type=float, default=500.0, help="the clients' publishing interval")
    ap.add_argument("--queue", type=int, default=1, help="monitored-item queue size")
    ap.add_argument(
        "--client-watchdog", type=float, default=5.0, help="seconds without a server answer before a client gives up"
    )
    ap.add_argument("--no-bare", action="store_true", help="skip the bare asyncua baseline")
    ap.add_argument("--profile", metavar="DIR", help="cProfile the server process over the window into DIR")
    ap.add_argument(
        "--experiment",
        default="",
        help="comma-separated changes applied to every server process (bare and gasiot alike): "
        + "; ".join(f"{k}: {v}" for k, v in EXPERIMENTS.items()),
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: 500 variables, 5 s, security None")
    args = ap.parse_args()
    if args.quick:
        args.variables, args.seconds, args.security = 500, 5.0, "None"
    securities = [x for x in args.security.split(",") if x]
    feeds = [x for x in args.feed.split(",") if x]
    if not set(securities) <= set(SECURITY) or not set(feeds) <= {"publish", "store"} or not securities or not feeds:
        ap.error("--security takes None,SignAndEncrypt; --feed takes publish,store")
    experiments = tuple(x for x in args.experiment.split(",") if x)
    if not set(experiments) <= set(EXPERIMENTS):
        ap.error(f"--experiment takes {', '.join(EXPERIMENTS)}")
    if not 1 <= args.variables < SCALE or args.rate <= 0 or args.clients < 1 or args.seconds <= 0:
        ap.error(f"need 1 ≤ variables < {SCALE:,}, rate > 0, clients ≥ 1, seconds > 0")
    s = Settings(
        args.variables,
        args.rate,
        args.clients,
        args.seconds,
        args.publish_ms,
        args.queue,
        args.client_watchdog,
        args.profile,
        experiments,
    )
    scenarios = [
        Scenario(server, feed, security)
        for security in securities
        for server, feed in ([] if args.no_bare else [("bare", "write")]) + [("gasiot", f) for f in feeds]
    ]
    print(
        f"OPC-UA fan-out: {s.variables:,} variables ({s.devices} devices) × {s.rate:g} Hz → {s.clients} clients, "
        f"publishing {s.publish_ms:g} ms, queue {s.queue}, client watchdog {s.watchdog_s:g} s, {s.seconds:g} s window, "
        f"{os.cpu_count()} CPUs; "
        f"python {sys.version.split()[0]}" + (f"; experiments: {', '.join(s.experiments)}" if s.experiments else "")
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="opcua-fanout-") as tmp_dir:
        from drivers.opcua.security import create_self_signed

        tmp = Path(tmp_dir)
        client_pki = tmp / "client-cert.der", tmp / "client-key.pem"
        create_self_signed(*client_pki, CLIENT_URI, hostnames=["127.0.0.1"])
        for scenario in scenarios:
            t = time.monotonic()
            try:
                result = run(s, scenario, tmp, client_pki)
            except KeyboardInterrupt:
                raise SystemExit(f"interrupted during {scenario.label}; its processes are stopped") from None
            results.append(result)
            print(
                f"  {scenario.label:32s} delivered {result.ratio:.4f}, CPU {result.cpu_pct:5.1f} % "
                f"({time.monotonic() - t:.0f} s with setup)",
                flush=True,
            )
    report(s, results)
    if s.profile:
        print(f"profiles of the server processes: {s.profile}/<scenario>.prof and .txt (by own time)")


if __name__ == "__main__":
    main()

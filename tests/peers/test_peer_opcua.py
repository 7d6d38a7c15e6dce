"""Our OPC-UA driver against a server nobody on this project wrote: node-opcua (opcua_server.mjs).

node-opcua is installed from tests/peers/package-lock.json (`npm ci` in tests/peers, which CI runs;
this module runs it too when node_modules is missing).  Security None and Basic256Sha256
SignAndEncrypt; subscriptions; the server killed (SIGKILL) and started again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import socket
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from drivers.base import Sample, Subscription
from drivers.opcua import (
    OpcUaChannel,
    OpcUaDriver,
    OpcUaPoint,
    UntrustedServerError,
    create_self_signed,
)
from support.wait import eventually

pytestmark = pytest.mark.peer

HERE = Path(__file__).parent
SCRIPT = HERE / "opcua_server.mjs"
SERVER_URI = "urn:gasiot:test:node-opcua"  # APPLICATION_URI in opcua_server.mjs
EDGE_URI = "urn:gasiot:edge"
FAST = {"timeout_s": 3.0, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}
NAMES = ("Pressure", "Flow", "Counter", "Running", "Name", "Setpoint")


def node(name: str, **kw: Any) -> OpcUaPoint:
    return OpcUaPoint(node=f"ns=1;s=Station.{name}", **kw)


# ---------------------------------------------------------------------- the peer


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Certificates: node-opcua's server pair (PEM, as it wants them) and the gateway's pair."""
    folder = tmp_path_factory.mktemp("opcua-pki")
    server = create_self_signed(
        folder / "server.der",
        folder / "server-key.pem",
        SERVER_URI,
        hostnames=["127.0.0.1", "localhost", socket.gethostname()],
        server=True,
    )
    server_pem = folder / "server.pem"
    server_pem.write_bytes(x509.load_der_x509_certificate(server.certificate.read_bytes()).public_bytes(Encoding.PEM))
    gateway = create_self_signed(folder / "edge.der", folder / "edge-key.pem", EDGE_URI, hostnames=["127.0.0.1"])
    stranger = create_self_signed(folder / "other.der", folder / "other-key.pem", SERVER_URI, server=True)
    return {
        "server_der": server.certificate,
        "server_pem": server_pem,
        "server_key": server.private_key,
        "edge_cert": gateway.certificate,
        "edge_key": gateway.private_key,
        "stranger": stranger.certificate,
        "home": folder,
    }


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)
    lines.put("")


class NodeServer:
    """One opcua_server.mjs process; ``start`` again after ``kill`` reuses the port."""

    def __init__(self, node_bin: Path, pki: dict[str, Path], name: str) -> None:
        self._node = node_bin
        self._pki = pki
        self._home = pki["home"] / name
        self._home.mkdir(exist_ok=True)
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None
        self._log: IO[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [str(self._node), str(SCRIPT), "--port", str(self.port), "--pki", str(self._home / "pki")]
        args += ["--cert", str(self._pki["server_pem"]), "--key", str(self._pki["server_key"])]
        env = {**os.environ, "XDG_CONFIG_HOME": str(self._home)}  # node-opcua's PKI stays in tmp
        self._log = (self._home / "server.log").open("a")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        # A thread reads stdout to the end: the port line, warnings node-opcua prints before it, and
        # whatever comes later (a full pipe would block the server).
        lines: queue.Queue[str] = queue.Queue()
        self._drain = threading.Thread(target=_pump, args=(self.proc.stdout, lines), daemon=True)
        self._drain.start()
        deadline = time.monotonic() + 30
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if not line:  # EOF: the server exited
                break
            if line.startswith("listening "):
                self.port = int(line.split()[1])
                return
        pytest.fail(f"opcua_server.mjs did not start: {self._stop_and_read_stderr()}")

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, as when the machine loses power."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            if self._drain is not None:
                self._drain.join(timeout=10)  # EOF now that the process is gone
                self._drain = None
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _stop_and_read_stderr(self) -> str:
        self.kill()
        return (self._home / "server.log").read_text()[-2000:]


@pytest.fixture(scope="module")
def peer(node_opcua: Path, pki: dict[str, Path]) -> Iterator[NodeServer]:
    server = NodeServer(node_opcua, pki, "shared")
    server.start()
    yield server
    server.kill()


# ---------------------------------------------------------------------- helpers


class Recorder:
    def __init__(self) -> None:
        self.samples: dict[str, list[Sample]] = defaultdict(list)
        self.links: list[tuple[bool, str]] = []

    def on_samples(self, device: str, samples: list[Sample]) -> None:
        for sample in samples:
            self.samples[sample.key].append(sample)

    def on_link(self, device: str | None, up: bool, reason: str) -> None:
        self.links.append((up, reason))


@contextlib.asynccontextmanager
async def running(
    driver: OpcUaDriver, subscriptions: Sequence[Subscription[Any]], listener: Recorder
) -> AsyncIterator[None]:
    task = asyncio.create_task(driver.run(subscriptions, listener))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await driver.close()


def secure(endpoint: str, pki: dict[str, Path], trusted: Path) -> OpcUaChannel:
    return OpcUaChannel(
        endpoint=endpoint,
        security_policy="Basic256Sha256",
        security_mode="SignAndEncrypt",
        certificate=pki["edge_cert"],
        private_key=pki["edge_key"],
        trusted_server_certificates=[trusted],
        **FAST,
    )


SUBSCRIPTION = Subscription(
    "peer",
    1,
    (
        ("counter", node("Counter", sampling_interval_ms=100)),
        ("pressure", node("Pressure", sampling_interval_ms=100)),
        ("name", node("Name", sampling_interval_ms=500)),
    ),
)


def counters(recorder: Recorder) -> list[int]:
    return [s.value for s in recorder.samples["counter"] if isinstance(s.value, int)]


# ---------------------------------------------------------------------- tests


async def test_security_none_read_subscribe_write(peer: NodeServer) -> None:
    drv = OpcUaDriver(OpcUaChannel(endpoint=peer.endpoint, **FAST))
    recorder = Recorder()
    async with running(drv, [SUBSCRIPTION], recorder):
        samples = await drv.read(1, [(name, node(name)) for name in NAMES])
        assert [s.error for s in samples] == [None] * len(NAMES)
        values = {s.key: s.value for s in samples}
        assert values["Running"] is True and values["Name"] == "node-opcua peer"
        assert isinstance(values["Counter"], int) and isinstance(values["Pressure"], float)
        assert all(s.ts_ms is not None and s.ts_ms > 1_700_000_000_000 for s in samples)
        await eventually(lambda: len(set(counters(recorder))) >= 5, timeout=10, what="counter changes")
        assert counters(recorder) == sorted(counters(recorder))  # in order, none repeated
        assert recorder.samples["name"][0].value == "node-opcua peer"
        await drv.write(1, node("Setpoint"), 0.55)
        assert (await drv.read(1, [("sp", node("Setpoint"))]))[0].value == 0.55
        (ghost,) = await drv.read(1, [("ghost", OpcUaPoint(node="ns=1;s=Station.Nope"))])
        assert ghost.error == "BadNodeIdUnknown"
    assert drv.session_security is None  # closed
    assert recorder.links == [(True, "connected")]


async def test_basic256sha256_sign_and_encrypt(peer: NodeServer, pki: dict[str, Path]) -> None:
    drv = OpcUaDriver(secure(peer.endpoint, pki, pki["server_der"]))
    recorder = Recorder()
    async with running(drv, [SUBSCRIPTION], recorder):
        await eventually(lambda: len(set(counters(recorder))) >= 3, timeout=15, what="values over SignAndEncrypt")
        assert drv.session_security == "Basic256Sha256/SignAndEncrypt"
        (name,) = await drv.read(1, [("name", node("Name"))])
        assert name.value == "node-opcua peer"
    untrusting = OpcUaDriver(secure(peer.endpoint, pki, pki["stranger"]))
    with pytest.raises(UntrustedServerError):
        await untrusting.connect()


async def test_killed_and_restarted_server_subscriptions_come_back(node_opcua: Path, pki: dict[str, Path]) -> None:
    server = NodeServer(node_opcua, pki, "restart")
    server.start()
    drv = OpcUaDriver(secure(server.endpoint, pki, pki["server_der"]))
    recorder = Recorder()
    try:
        async with running(drv, [SUBSCRIPTION], recorder):
            await eventually(lambda: len(set(counters(recorder))) >= 3, timeout=15, what="values before the kill")
            before = (drv.statistics.subscriptions_created, drv.statistics.items_created)
            server.kill()
            await eventually(lambda: any(not up for up, _ in recorder.links), timeout=15, what="link down")
            seen = len(recorder.samples["counter"])
            server.start()  # same port, new process: every session and subscription is gone
            await eventually(lambda: len(recorder.samples["counter"]) >= seen + 3, timeout=20, what="values again")
            after = (drv.statistics.subscriptions_created, drv.statistics.items_created)
            assert after == (2 * before[0], 2 * before[1])
            assert drv.session_security == "Basic256Sha256/SignAndEncrypt"
    finally:
        server.kill()
    assert [up for up, _ in recorder.links] == [True, False, True]
    assert recorder.links[-1] == (True, "reconnected")
    assert drv.statistics.sessions == 2

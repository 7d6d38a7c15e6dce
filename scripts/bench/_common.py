"""Shared pieces of the benchmarks that run whole processes side by side: the libmodbus fleet
server, a `gasiot cloud serve` process with enrollment, station files, a local mosquitto, the
ThingsBoard IoT Gateway in its own venv, and /proc readings of another process's CPU and memory.

Everything listens on 127.0.0.1 only; every process started here is stopped by the context
manager that started it.  Built and downloaded things are cached under ``$GASIOT_BENCH_DIR``
(default /tmp/gasiot-bench): the fleet server binary and the ThingsBoard venv.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("GASIOT_BENCH_DIR", "/tmp/gasiot-bench"))
FLEET_SOURCE = Path(__file__).with_name("fleet_server.c")
TB_SPEC = "thingsboard-gateway==3.8.*"
TB_PYMODBUS = "3.9.2"  # the version its Modbus connector pip-installs at import unless present
TB_EXTRAS = ("pyserial", "pyserial-asyncio")  # the rest of what the connector would install
TB_SESSION_LIMITS = {"maxPayloadSize": 65536, "maxInflightMessages": 100, "rateLimits": {}, "gatewayRateLimits": {}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening while the block runs: connecting to it
    is refused at once (where a process must be pointed at a server that is not there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


# ---- another process's resources -------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


def spawn(command: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start a process (returns at once; the caller stops it with ``stop_process``)."""
    return subprocess.Popen(command, **kwargs)


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 20.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def library_versions(*names: str, python: str | None = None) -> dict[str, str]:
    """Installed versions of distributions, in this interpreter or another one."""
    code = (
        "import json, sys\nfrom importlib.metadata import version, PackageNotFoundError\nout = {}\n"
        "for n in sys.argv[1:]:\n    try: out[n] = version(n)\n    except PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    run = subprocess.run(
        [python or sys.executable, "-c", code, *names], capture_output=True, text=True, check=False, timeout=60
    )
    return json.loads(run.stdout) if run.returncode == 0 else {}


# ---- the libmodbus fleet server ----------------------------------------------------------------


def fleet_server_binary() -> Path:
    """Compile fleet_server.c (once per source version) with gcc and libmodbus."""
    source = FLEET_SOURCE.read_bytes()
    binary = WORK / f"fleet_server-{hashlib.sha256(source).hexdigest()[:12]}"
    if binary.exists():
        return binary
    WORK.mkdir(parents=True, exist_ok=True)
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "libmodbus"], capture_output=True, text=True, check=True
    ).stdout.split()
    tmp = binary.with_suffix(".tmp")
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", str(tmp), str(FLEET_SOURCE), *flags], check=True)
    tmp.rename(binary)
    return binary


class FleetServer:
    """N Modbus TCP slaves (one port each) in one libmodbus process."""

    def __init__(self, devices: int, registers: int) -> None:
        self.proc = subprocess.Popen(
            [str(fleet_server_binary()), str(devices), str(registers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        words = self.proc.stdout.readline().split()
        if not words or words[0] != "ports":
            stop_process(self.proc)
            raise RuntimeError("fleet server did not start")
        self.ports = [int(p) for p in words[1:]]

    def requests(self) -> int:
        """Requests answered since the previous call."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline().split()[1])

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()  # end of input: the server exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        stop_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> FleetServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- gasiot: cloud process, station files, enrollment ------------------------------------------

BENCH_MODEL = "bench_box"


def write_model(models_dir: Path, registers: int) -> Path:
    """A thing model with one float property per register, no range (every value is good)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    model = {
        "id": BENCH_MODEL,
        "version": 1,
        "name": {"zh": "基准箱", "en": "Benchmark box"},
        "properties": [
            {"id": f"r{i:03d}", "name": {"zh": f"寄存器{i}", "en": f"Register {i}"}, "type": "float"}
            for i in range(registers)
        ],
    }
    (models_dir / f"{BENCH_MODEL}.yaml").write_text(yaml.safe_dump(model, allow_unicode=True), encoding="utf-8")
    return models_dir


def write_station(
    path: Path,
    *,
    gateway_id: str,
    cloud_url: str,
    ports: list[int],
    registers: int,
    interval_s: float,
    sync: dict[str, Any] | None = None,
    synchronous: str = "FULL",
    commit_window_ms: int | None = None,
) -> Path:
    """A station of one regulator-like box per port: ``registers`` holding registers (uint16,
    scale 0.1) read in one request every ``interval_s``.  Store and sync sections keep their
    defaults (SQLite synchronous=FULL, cbor+zstd batches of 1000) unless told otherwise."""
    models = write_model(path.parent / "models", registers)
    points = {f"r{i:03d}": {"table": "holding", "address": i, "type": "uint16", "scale": 0.1} for i in range(registers)}
    data = {
        "gateway": {"id": gateway_id, "cloud_url": cloud_url, "data_dir": str(path.parent / f"data-{gateway_id}")},
        "models": [str(models)],
        "store": {
            "max_telemetry_rows": 5_000_000,
            "synchronous": synchronous,
            **({} if commit_window_ms is None else {"commit_window_ms": commit_window_ms}),
        },
        "sync": sync or {},
        "channels": [
            {"id": f"link{i}", "driver": "modbus_tcp", "host": "127.0.0.1", "port": p, "timeout_s": 2.0}
            for i, p in enumerate(ports)
        ],
        "devices": [
            {
                "id": f"box{i:03d}",
                "model": BENCH_MODEL,
                "channel": f"link{i}",
                "unit_id": 1,
                "poll_interval_s": interval_s,
                "points": points,
            }
            for i in range(len(ports))
        ],
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def edge_db(station: Path) -> Path:
    data = yaml.safe_load(station.read_text(encoding="utf-8"))
    return Path(data["gateway"]["data_dir"]) / "gateway.db"


def edge_readings(db: Path) -> int:
    """Readings ever committed to a gateway's store (its ``telemetry_appended_total`` counter, saved
    with each commit): 0 before the first."""
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute("SELECT value FROM counters WHERE name = 'telemetry_appended_total'").fetchone()
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    return int(row[0]) if row else 0


@dataclass
class Cloud:
    """A `gasiot cloud serve --insecure-dev` process on SQLite, loopback, a free port."""

    url: str
    admin_key: str
    db: Path
    proc: subprocess.Popen[str]
    tokens: int = field(default=0)

    def readings(self) -> int:
        """Readings stored so far (all gateways)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute("SELECT max(rowid) FROM readings").fetchone()
        return int(row[0] or 0)

    def enroll(self, station: Path, alg: str = "sm2-sm3") -> None:
        """Enroll a station's gateway as a technician does: a token, then `gasiot edge enroll`."""
        import urllib.request

        gateway_id = yaml.safe_load(station.read_text(encoding="utf-8"))["gateway"]["id"]
        request = urllib.request.Request(  # a loopback URL we started
            f"{self.url}/v1/enrollment-tokens",
            data=json.dumps({"gateway_id": gateway_id}).encode(),
            headers={"Authorization": f"Bearer {self.admin_key}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            token = json.loads(r.read())["token"]
        subprocess.run(
            [sys.executable, "-m", "gasiot", "edge", "enroll", str(station), "--token", token, "--alg", alg],
            check=True,
            capture_output=True,
            cwd=REPO,
            timeout=60,
        )


@contextlib.contextmanager
def cloud_process(tmp: Path) -> Iterator[Cloud]:
    db, key_file, log_path = tmp / "cloud.db", tmp / "admin.key", tmp / "cloud.log"
    command = [
        *(sys.executable, "-m", "gasiot", "cloud", "serve", "--db", f"sqlite:///{db}", "--listen", "127.0.0.1:0"),
        *("--admin-key-file", str(key_file), "--insecure-dev", "--log-level", "WARNING"),
    ]
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("gasiot cloud listening on "):
            raise RuntimeError(f"cloud did not start: {log_path.read_text()[-2000:]}")
        yield Cloud(line.split()[-1], key_file.read_text().strip(), db, proc)
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def gasiot_edge_command(station: Path) -> list[str]:
    return [sys.executable, "-m", "gasiot", "edge", "run", str(station), "--log-level", "WARNING"]


# ---- mosquitto and the ThingsBoard IoT Gateway -------------------------------------------------


@contextlib.contextmanager
def mosquitto(tmp: Path) -> Iterator[int]:
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n", encoding="utf-8")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)  # polling for a server we just started to listen
        yield port
    finally:
        stop_process(proc)


class TbUnavailable(RuntimeError):
    """The ThingsBoard gateway could not be installed or started here (the message says why)."""


def tb_python() -> Path:
    """The ThingsBoard gateway's own venv (created and installed from PyPI on first use), with the
    pymodbus its Modbus connector wants already there, so that it installs nothing at run time."""
    venv = WORK / "tb-venv"
    python = venv / "bin" / "python"
    check = (
        f"import thingsboard_gateway, pymodbus, serial_asyncio, sys; sys.exit(pymodbus.__version__ != {TB_PYMODBUS!r})"
    )
    if python.exists() and subprocess.run([str(python), "-c", check], capture_output=True, check=False).returncode == 0:
        return python
    WORK.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "-q", TB_SPEC, f"pymodbus=={TB_PYMODBUS}", *TB_EXTRAS],
    ]
    for step in steps:
        run = subprocess.run(step, capture_output=True, text=True, check=False, timeout=900)
        if run.returncode != 0:
            raise TbUnavailable(f"{' '.join(step[:4])}… failed: {run.stderr.strip()[-600:]}")
    if subprocess.run([str(python), "-c", check], capture_output=True, check=False).returncode != 0:
        raise TbUnavailable("thingsboard-gateway installed but does not import with pymodbus " + TB_PYMODBUS)
    return python


def tb_slave(name: str, port: int, registers: int, interval_s: float) -> dict[str, Any]:
    """One device of its Modbus connector: one time series per register (its design: one request
    per configured register), the same uint16 × 0.1 as the gasiot station."""
    return {
        **{"host": "127.0.0.1", "port": port, "type": "tcp", "method": "socket", "unitId": 1},
        **{"deviceName": name, "deviceType": "box", "timeout": 2, "byteOrder": "BIG", "wordOrder": "BIG"},
        **{"retries": 0, "pollPeriod": round(interval_s * 1000), "attributes": [], "attributeUpdates": [], "rpc": []},
        "timeseries": [
            {"tag": f"r{i:03d}", "type": "16uint", "functionCode": 3, "objectsCount": 1, "address": i, "divider": 10}
            for i in range(registers)
        ],
    }


@dataclass
class TbCounts:
    datapoints: int = 0
    messages: int = 0
    first_ts: float | None = None  # time.monotonic() of the first telemetry message
    rpcs: int = 0


class TbGateway:
    """The ThingsBoard IoT Gateway polling the fleet with its Modbus connector and publishing to
    a local mosquitto; an MQTT client here plays the platform: it answers the gateway's
    ``getSessionLimits`` RPC (the gateway publishes nothing before that answer) and counts the
    telemetry data points it receives.  The gateway's update check is pointed at a loopback port
    that refuses connections (its URL is a module constant: set before the service starts)."""

    def __init__(self, work: Path, mqtt_port: int, slaves: list[dict[str, Any]]) -> None:
        self.work, self.mqtt_port, self.slaves = work, mqtt_port, slaves
        self.counts = TbCounts()
        self.proc: subprocess.Popen[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._refuse = socket.socket()
        self._refuse.bind(("127.0.0.1", 0))

    def _configure(self, python: Path) -> Path:
        package = subprocess.run(
            [str(python), "-c", "import thingsboard_gateway, os; print(os.path.dirname(thingsboard_gateway.__file__))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        config = self.work / "config"
        shutil.rmtree(config, ignore_errors=True)
        shutil.copytree(Path(package) / "config", config)
        main = json.loads((config / "tb_gateway.json").read_text(encoding="utf-8"))
        main["thingsboard"].update(
            host="127.0.0.1",
            port=self.mqtt_port,
            remoteConfiguration=False,  # nothing comes from a platform here
            statistics={"enable": False, "statsSendPeriodInSeconds": 3600, "customStatsSendPeriodInSeconds": 3600},
            security={"type": "accessToken", "accessToken": "bench"},
        )
        main["connectors"] = [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}]
        (config / "tb_gateway.json").write_text(json.dumps(main, indent=2), encoding="utf-8")
        (config / "modbus.json").write_text(json.dumps({"master": {"slaves": self.slaves}}, indent=2), encoding="utf-8")
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        return config

    async def _platform(self, ready: asyncio.Event) -> None:
        import aiomqtt

        async with aiomqtt.Client("127.0.0.1", self.mqtt_port, max_queued_incoming_messages=0) as client:
            await client.subscribe("v1/devices/me/rpc/request/+", qos=1)
            await client.subscribe("v1/gateway/telemetry", qos=1)
            ready.set()
            async for message in client.messages:
                topic = str(message.topic)
                if topic == "v1/gateway/telemetry":
                    assert isinstance(message.payload, bytes | bytearray)
                    body = json.loads(message.payload)
                    if self.counts.first_ts is None:
                        self.counts.first_ts = time.monotonic()
                    self.counts.messages += 1
                    for entries in body.values():
                        for entry in entries if isinstance(entries, list) else [entries]:
                            values = entry.get("values", entry) if isinstance(entry, dict) else {}
                            self.counts.datapoints += len(values)
                elif topic.startswith("v1/devices/me/rpc/request/"):
                    self.counts.rpcs += 1
                    request_id = topic.rsplit("/", 1)[1]
                    await client.publish(
                        f"v1/devices/me/rpc/response/{request_id}", json.dumps(TB_SESSION_LIMITS), qos=1
                    )

    async def start(self) -> float:
        """Start the platform side, then the gateway; returns the monotonic time of the spawn."""
        python = tb_python()
        config = self._configure(python)
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._platform(ready))
        async with asyncio.timeout(10):
            await ready.wait()
        refused = f"http://127.0.0.1:{self._refuse.getsockname()[1]}"
        env = {
            **os.environ,
            "TB_GW_CONFIG_DIR": f"{config}{os.sep}",
            "HTTPS_PROXY": refused,  # anything else it might fetch over http(s) is refused too
            "HTTP_PROXY": refused,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        env.pop("VIRTUAL_ENV", None)
        code = (
            "import thingsboard_gateway.tb_utility.tb_updater as u\n"
            f"u.UPDATE_SERVICE_BASE_URL = {refused!r}\n"
            "from thingsboard_gateway.tb_gateway import main\nmain()\n"
        )
        with (self.work / "gateway.out").open("wb") as out:
            spawned = time.monotonic()
            self.proc = spawn([str(python), "-c", code], cwd=self.work, env=env, stdout=out, stderr=out)
        return spawned

    async def stop(self) -> None:
        if self.proc is not None:
            await asyncio.to_thread(stop_process, self.proc, 20.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._refuse.close()

    def log_tail(self, chars: int = 1500) -> str:
        path = self.work / "gateway.out"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


# ---- machine ------------------------------------------------------------------------------------


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return "unknown"

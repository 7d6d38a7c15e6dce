"""The `gasiot` command: edge, cloud, simulator, keys and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gasiot import logsetup

app = typer.Typer(no_args_is_help=True, add_completion=False, help="gasiot — city-gas edge gateway and cloud")
edge_app = typer.Typer(no_args_is_help=True, help="Station gateway: check, run, enroll")
cloud_app = typer.Typer(no_args_is_help=True, help="Cloud ingest and query service")
sim_app = typer.Typer(no_args_is_help=True, help="Simulated field devices")
keys_app = typer.Typer(no_args_is_help=True, help="Gateway key pairs")
app.add_typer(edge_app, name="edge")
app.add_typer(cloud_app, name="cloud")
app.add_typer(sim_app, name="sim")
app.add_typer(keys_app, name="keys")
provision_app = typer.Typer(no_args_is_help=True, help="Registry: organisations, stations, gateways (cloud API)")
app.add_typer(provision_app, name="provision")

CloudOpt = Annotated[str, typer.Option("--cloud", help="Cloud base URL")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="API or session token (default: $GASIOT_TOKEN)")]
CaOpt = Annotated[Path | None, typer.Option("--ca-file", help="CA of the cloud's TLS certificate")]

LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR")]
LogFormat = Annotated[str, typer.Option("--log-format", help="text or json")]
EventLoop = Annotated[str, typer.Option("--event-loop", help="auto (uvloop when installed), uvloop or asyncio")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _load_station(path: Path):  # type: ignore[no-untyped-def]
    from edge.config import load_station
    from gascore.yamldoc import ConfigError

    try:
        return load_station(path)
    except ConfigError as err:
        for p in err.problems:
            typer.secho(f"error: {p}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _run(coro: object) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)  # type: ignore[arg-type]


# ---- edge ------------------------------------------------------------------------------------


@edge_app.command("check")
def edge_check(config: Path) -> None:
    """Validate a station file and the thing models it uses; exit 2 on any error."""
    from edge.secret_files import check_secret_files

    station = _load_station(config)
    cfg = station.config
    secrets = check_secret_files(station)
    if secrets:
        raise _fail("\n".join(f"{config}: {p}" for p in secrets), code=2)
    points = sum(len(d.points) for d in cfg.devices)
    typer.echo(
        f"{config}: OK — gateway {cfg.gateway.id}, {len(cfg.channels)} channels, "
        f"{len(cfg.devices)} devices, {points} points"
    )


@edge_app.command("hash-password")
def edge_hash_password(
    password_stdin: Annotated[bool, typer.Option("--stdin", help="Read the password from standard input")] = False,
) -> None:
    """Hash an OPC-UA user's password for `opcua_server.users[].password_hash` (scrypt).
    Asks twice on a terminal; the password itself is never stored or printed."""
    from edge.northbound.users import hash_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise _fail("error: use at least 8 characters")
    typer.echo(hash_password(password))


@edge_app.command("schema")
def edge_schema() -> None:
    """Print the JSON Schema of station files (for editor completion)."""
    from edge.config import json_schema

    typer.echo(json.dumps(json_schema(), indent=2, ensure_ascii=False))


@edge_app.command("run")
def edge_run(
    config: Path, log_level: LogLevel = "INFO", log_format: LogFormat = "text", event_loop: EventLoop = "auto"
) -> None:
    """Run the gateway: poll devices, buffer in SQLite, sync to the cloud."""
    logsetup.configure(log_level, log_format)
    from edge import event_loop as loops
    from edge.datalock import DataDirLocked
    from edge.enroll import EnrollError
    from edge.runtime import Gateway, run_until_signalled
    from edge.secret_files import SecretFileError
    from gascore.crypto import KeyFileError

    try:  # checked before anything starts
        loop_choice = loops.parse_choice(event_loop)
        loops.loop_factory(loop_choice)
    except loops.EventLoopUnavailable as err:
        raise _fail(f"error: --event-loop: {err}") from None
    station = _load_station(config)
    try:
        gateway = Gateway.build(station)
    except SecretFileError as err:
        raise _fail(f"error: {err}") from None
    except (KeyFileError, EnrollError) as err:
        raise _fail(f"error: {err}\nhint: enroll first: gasiot edge enroll {config} --token TOKEN") from None
    except DataDirLocked as err:
        raise _fail(f"error: {err}") from None
    from edge.config import load_station

    code = 0
    with contextlib.suppress(KeyboardInterrupt):
        code = loops.run(run_until_signalled(gateway, load=lambda: load_station(config)), loop_choice)
    if code:
        raise typer.Exit(code)


@edge_app.command("enroll")
def edge_enroll(
    config: Path,
    token: Annotated[str, typer.Option(help="One-time enrollment token from the cloud")],
    cloud: Annotated[str | None, typer.Option(help="Cloud URL (default: gateway.cloud_url)")] = None,
    alg: Annotated[str, typer.Option(help="sm2-sm3 (default) or ed25519")] = "sm2-sm3",
    ca_file: Annotated[Path | None, typer.Option(help="CA of the cloud's TLS certificate (https)")] = None,
) -> None:
    """Generate this gateway's key pair and register it with the cloud (and get its TLS certificate)."""
    logsetup.configure("WARNING")
    from edge.enroll import EnrollError, enroll

    station = _load_station(config)
    if alg not in ("sm2-sm3", "ed25519"):
        raise _fail("error: --alg must be sm2-sm3 or ed25519")
    try:
        key_id = asyncio.run(
            enroll(
                cloud_url=cloud or station.config.gateway.cloud_url,
                gateway_id=station.config.gateway.id,
                token=token,
                key_file=station.key_file,
                alg=alg,  # type: ignore[arg-type]
                ca_file=ca_file or station.ca_file,
                payload_encryption=station.config.sync.codec.endswith("+sm4gcm"),
            )
        )
    except EnrollError as err:
        raise _fail(f"error: {err}") from None
    typer.echo(f"enrolled {station.config.gateway.id}: key id {key_id}, private key in {station.key_file}")


@edge_app.command("status")
def edge_status(
    config: Path, as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False
) -> None:
    """Show device status (online, last good read, counters, latency), what the store holds
    (per lane: buffered, oldest unsent record, last ack, sync lag) and the active alarms."""
    import time

    from edge.alarms import persist
    from edge.alarms.model import PRIORITIES
    from edge.cert_renewal import days_left
    from edge.health import lanes_of
    from edge.runtime import STORE_FILE
    from edge.store import SqliteStore, StoreDamaged
    from gascore.records import Lane

    station = _load_station(config)
    db = station.data_dir / STORE_FILE
    if not db.exists():
        raise _fail(f"error: no store at {db}: the gateway has not run yet")
    try:
        # Only look: a damaged file is the running gateway's to set aside, not this command's.
        store = SqliteStore(db, inspect=True)
    except StoreDamaged as err:
        raise _fail(f"error: the store is damaged ({err}); the gateway sets it aside when it finds it") from None
    try:
        now = time.time_ns() // 1_000_000
        lanes = lanes_of(store, exact=True)
        standing = persist.list_alarms(store.db)  # worst priority first, then oldest
        active = [a for a in standing if a.state.active]
        out = {
            "buffered": {lane.value: lanes[lane].depth for lane in Lane},
            "next_seq": {lane.value: store.lane_state(lane).next_seq for lane in Lane},
            "counters": store.counters(),
            "devices": {d: {"updated_ms": ts, **data} for d, (ts, data) in store.device_statuses().items()},
            "tls_certificate_days_left": days_left(station.data_dir),
            "now_ms": now,
            "oldest_unsent_ms": {lane.value: lanes[lane].oldest_unsent_ms for lane in Lane},
            "oldest_unsent_age_s": {lane.value: lanes[lane].oldest_age_s(now) for lane in Lane},
            "last_ack_ms": {lane.value: lanes[lane].last_ack_ms for lane in Lane},
            "sync_lag_s": {lane.value: lanes[lane].lag_s(now) for lane in Lane},
            "alarms": {
                "active": len(active),
                "unacked": sum(1 for a in standing if a.state.unacked),
                "by_priority": {p: sum(1 for a in active if a.priority == p) for p in PRIORITIES[::-1]},
                "top": [
                    {
                        "id": a.id,
                        "device": a.device,
                        "priority": a.priority,
                        "state": a.state.value,
                        "raised_ms": a.raised_ms,
                        "message_zh": a.message_zh,
                        "message_en": a.message_en,
                        "shelved": a.shelved_until_ms is not None,
                        "suppressed": a.suppressed,
                    }
                    for a in active[:5]
                ],
            },
        }
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    _print_status(station.config.gateway.id, out)


def _print_status(gateway_id: str, out: dict) -> None:  # type: ignore[type-arg]
    import time

    from rich.console import Console
    from rich.table import Table

    def age(ms: int | None) -> str:
        if ms is None:
            return "—"
        seconds = max(0.0, time.time() - ms / 1000)
        return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}min ago"

    table = Table(title=f"gateway {gateway_id}: devices")
    for column in ("device", "state", "since", "last good", "polls", "fail", "dev.err", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column in ("device", "state") else "right")
    for device, st in out["devices"].items():
        state = {True: "[green]online[/green]", False: f"[red]offline[/red] {st['reason']}", None: "unknown"}
        table.add_row(
            device,
            state[st["online"]],
            age(st["since_ms"]),
            age(st["last_good_ms"]),
            str(st["polls"]),
            str(st["failures"]),
            str(st["device_errors"]),
            str(st["latency_p50_ms"] or "—"),
            str(st["latency_p95_ms"] or "—"),
        )
    console = Console()
    console.print(table)

    def span(seconds: float | None) -> str:
        if seconds is None:
            return "never acked"
        return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.0f}min"

    lanes = Table(title="sync: what waits for the cloud")
    for column in ("lane", "buffered", "oldest unsent", "last ack", "sync lag", "next seq"):
        lanes.add_column(column, justify="left" if column == "lane" else "right")
    for lane in ("events", "telemetry"):
        lanes.add_row(
            lane,
            str(out["buffered"][lane]),
            age(out["oldest_unsent_ms"][lane]),
            age(out["last_ack_ms"][lane]),
            span(out["sync_lag_s"][lane]),
            str(out["next_seq"][lane]),
        )
    console.print(lanes)
    c = out["counters"]
    console.print(
        f"telemetry appended {c.get('telemetry_appended_total', 0)} · acked {c.get('telemetry_acked_total', 0)} · "
        f"dropped {c.get('telemetry_dropped_total', 0)}"
    )
    alarms = out["alarms"]
    worst = ", ".join(f"{n} {p}" for p, n in alarms["by_priority"].items() if n)
    worst = f" ({worst})" if worst else ""
    console.print(f"alarms: {alarms['active']} active{worst}, {alarms['unacked']} unacknowledged")
    for a in alarms["top"]:
        flags = " shelved" if a["shelved"] else " suppressed" if a["suppressed"] else ""
        console.print(
            f"  {a['priority']:<8} {a['id']}  {a['state']}{flags}  raised {age(a['raised_ms'])}  "
            f"{a['message_zh']} / {a['message_en']}",
            markup=False,
        )
    days = out.get("tls_certificate_days_left")
    if days is not None:
        style = "red" if days <= 30 else "green"
        console.print(
            f"TLS certificate: [{style}]expires in {days:.0f} days[/{style}]"
            + (" — renewal is due (automatic while the gateway runs)" if days <= 30 else "")
        )


def _store_db(config: Path) -> Any:
    import sqlite3

    from edge.runtime import STORE_FILE

    station = _load_station(config)
    path = station.data_dir / STORE_FILE
    if not path.exists():
        raise _fail(f"error: no store at {path}: the gateway has not run yet")
    return sqlite3.connect(path, timeout=10)


@edge_app.command("alarms")
def edge_alarms(
    config: Path, show_all: Annotated[bool, typer.Option("--all", help="Also alarms back to normal")] = False
) -> None:
    """List the gateway's alarms (state, priority, since, message, who acknowledged)."""
    from rich.console import Console

    from edge.alarms import persist

    db = _store_db(config)
    try:
        alarms = persist.list_alarms(db, active_only=not show_all)
    finally:
        db.close()
    Console().print(persist.format_alarms(alarms))


def _request(config: Path, kind: str, alarm_id: str, by: str, wait_s: float, **extra: Any) -> None:
    import time

    from edge.alarms import persist

    db = _store_db(config)
    try:
        with db:
            request_id = persist.enqueue_request(db, kind, alarm_id, by, now_ms=time.time_ns() // 1_000_000, **extra)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            request = persist.get_request(db, request_id)
            if request is not None and request.done_ms is not None:
                typer.echo(request.result)
                if not str(request.result).startswith("ok"):
                    raise typer.Exit(1)
                return
            time.sleep(0.2)  # waiting for the running gateway to apply the request
    except ValueError as err:
        raise _fail(f"error: {err}") from None
    finally:
        db.close()
    typer.echo(f"queued (request {request_id}): the gateway applies it when it runs (requests expire after 5 min)")


@edge_app.command("ack")
def edge_ack(
    config: Path,
    alarm_id: str,
    by: Annotated[str, typer.Option(help="Who acknowledges (kept in the audit trail)")],
    wait_s: Annotated[float, typer.Option(help="How long to wait for the running gateway")] = 10.0,
) -> None:
    """Acknowledge an alarm (applied by the running gateway; the cloud sees the same state)."""
    _request(config, "ack", alarm_id, by, wait_s)


@edge_app.command("shelve")
def edge_shelve(
    config: Path,
    alarm_id: str,
    by: Annotated[str, typer.Option(help="Who shelves it")],
    minutes: Annotated[float, typer.Option(help="How long (at most 24 h)")],
    reason: Annotated[str, typer.Option(help="Why (audited)")],
    wait_s: Annotated[float, typer.Option()] = 10.0,
) -> None:
    """Shelve an alarm for a while (it is still tracked, not annunciated)."""
    import time

    until = time.time_ns() // 1_000_000 + int(minutes * 60_000)
    _request(config, "shelve", alarm_id, by, wait_s, until_ms=until, reason=reason)


@edge_app.command("browse")
def edge_browse(
    endpoint: Annotated[str, typer.Argument(help="opc.tcp://host:port/path of the SCADA's OPC-UA server")],
    depth: Annotated[int, typer.Option(min=1, max=10, help="How many levels below the root")] = 3,
    root: Annotated[str, typer.Option(help="NodeId to start from (default: the Objects folder)")] = "i=85",
) -> None:
    """Print a SCADA's OPC-UA address space, so bindings can be written (security None)."""
    logsetup.configure("WARNING")
    from drivers.base import DriverError
    from drivers.opcua.browse import browse, format_browse

    try:
        entries = asyncio.run(browse(endpoint, depth=depth, root=root))
    except (DriverError, OSError, TimeoutError) as err:
        raise _fail(f"error: cannot browse {endpoint}: {err or type(err).__name__}") from None
    typer.echo(format_browse(entries))


# ---- cloud -----------------------------------------------------------------------------------


@cloud_app.command("serve")
def cloud_serve(
    db: Annotated[
        str, typer.Option(help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    ] = "sqlite:///data/cloud.db",
    listen: Annotated[str, typer.Option(help="HOST:PORT (port 0 = any free port)")] = "127.0.0.1:8080",
    admin_key_file: Annotated[Path | None, typer.Option(help="Create/reuse an admin API key here")] = None,
    cloud_key_file: Annotated[
        Path | None, typer.Option(help="Key that signs commands to gateways (default: next to the database)")
    ] = None,
    kek_file: Annotated[
        Path | None,
        typer.Option(help="Key that wraps gateways' payload keys in the database (default: next to the database)"),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Server certificate (PEM), e.g. from `gasiot keys issue-server`")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Server private key (PEM, mode 0600)")] = None,
    ca_dir: Annotated[
        Path | None, typer.Option(help="The utility CA (`gasiot keys ca-init`): issues and checks gateway certificates")
    ] = None,
    require_client_cert: Annotated[
        bool, typer.Option(help="Gateways must present a certificate from the CA (mutual TLS)")
    ] = False,
    insecure_dev: Annotated[bool, typer.Option(help="Plain HTTP for development; logs a warning")] = False,
    log_level: LogLevel = "INFO",
    log_format: LogFormat = "text",
) -> None:
    """Serve the ingest and query API (HTTPS; plain HTTP only with --insecure-dev)."""
    logsetup.configure(log_level, log_format)
    from cloud.server import ServeError, serve
    from gascore.crypto import CryptoError

    def ready(url: str) -> None:
        print(f"gasiot cloud listening on {url}", flush=True)  # noqa: T201 - tests and scripts read this

    try:
        _run(
            serve(
                db,
                listen,
                admin_key_file=admin_key_file,
                cloud_key_file=cloud_key_file,
                kek_file=kek_file,
                tls_cert=tls_cert,
                tls_key=tls_key,
                ca_dir=ca_dir,
                require_client_cert=require_client_cert,
                insecure_dev=insecure_dev,
                on_ready=ready,
            )
        )
    except (ServeError, CryptoError) as err:
        raise _fail(f"error: {err}") from None


@cloud_app.command("api-key")
def cloud_api_key(
    db: Annotated[str, typer.Option(help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB")],
    role: Annotated[str, typer.Option(help="admin, operator or viewer")] = "viewer",
    label: Annotated[str, typer.Option(help="Who or what uses this key")] = "",
) -> None:
    """Create an API key (printed once; only its hash is stored)."""
    from cloud.repository import ROLES, open_repository
    from cloud.server import create_api_key

    if role not in ROLES:
        raise _fail(f"error: --role must be one of {', '.join(ROLES)}")
    repo = open_repository(db)
    try:
        typer.echo(create_api_key(repo, role, label))  # type: ignore[arg-type]
    finally:
        repo.close()


@cloud_app.command("user-add")
def cloud_user_add(
    name: str,
    role: Annotated[str, typer.Option(help="viewer, integrator, operator, maintainer, auditor, admin")],
    db: Annotated[str, typer.Option(help="sqlite:///PATH or postgresql://…")] = "sqlite:///data/cloud.db",
    scopes: Annotated[str, typer.Option(help="'*' or org:<id>,station:<id>,…")] = "*",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
) -> None:
    """Create a user directly in the database (the first administrator; later ones via the API).
    The password policy applies; the act is written to the audit log."""
    import getpass

    from cloud.access import ScopeError
    from cloud.appkeys import now_ms
    from cloud.audit import DEFAULT_RULES, AuditLog
    from cloud.identity import IdentityError, IdentityStore
    from cloud.key_wrap import PayloadKeyWrap
    from cloud.sqldb import open_db

    password = (
        sys.stdin.readline().rstrip("\n")
        if password_stdin
        else typer.prompt("password", hide_input=True, confirmation_prompt=True)
    )
    database = open_db(db)
    try:
        IdentityStore(database, now_ms, PayloadKeyWrap.ephemeral()).create_user(
            name, role, password, scopes=scopes, created_by=f"cli:{getpass.getuser()}"
        )
        AuditLog(database, now_ms, rules=list(DEFAULT_RULES)).append(
            f"cli:{getpass.getuser()}",
            "user.create",
            target=f"user:{name}",
            detail={"role": role, "scopes": scopes},
            source="cli",
        )
    except (IdentityError, ScopeError) as err:
        raise _fail(f"error: {err}") from None
    finally:
        database.close()
    typer.echo(f"user {name} created ({role}, scopes {scopes}); turn on two-factor login at /v1/auth/totp")


@cloud_app.command("audit-verify")
def cloud_audit_verify(
    db: Annotated[str, typer.Option(help="sqlite:///PATH or postgresql://…")] = "sqlite:///data/cloud.db",
    expect_head: Annotated[
        str | None, typer.Option(help="SEQ:HASH written down earlier: the log must still extend it")
    ] = None,
) -> None:
    """Verify the audit log's SM3 chain; exit 1 naming the first broken entry."""
    from cloud.appkeys import now_ms
    from cloud.audit import AuditLog
    from cloud.sqldb import open_db

    head: tuple[int, str] | None = None
    if expect_head is not None:
        seq, _, digest = expect_head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise _fail("error: --expect-head is SEQ:HASH (the 64 hex digits verify printed)")
        head = (int(seq), digest)
    database = open_db(db)
    try:
        result = AuditLog(database, now_ms).verify(expect_head=head)
    finally:
        database.close()
    if not result.ok:
        raise _fail(f"audit log BROKEN: {result.problem} ({result.entries} entries verified before it)")
    typer.echo(f"audit log OK: {result.entries} entries; head {result.head_seq}:{result.head_hash}")


# ---- simulator -------------------------------------------------------------------------------


@sim_app.command("regulator")
def sim_regulator(
    port: Annotated[int, typer.Option(help="TCP port (0 = any free port)")] = 5020,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    scenario: Annotated[str, typer.Option(help="normal, overpressure, leak, comm_loss")] = "normal",
    seed: Annotated[int, typer.Option()] = 1,
) -> None:
    """Simulate a regulator box (调压箱) speaking Modbus TCP."""
    logsetup.configure("WARNING")
    from gasiot_sim.modbus_server import run_regulator

    def ready(bound: int) -> None:
        print(f"listening on {host}:{bound}", flush=True)  # noqa: T201

    _run(run_regulator(host, port, scenario=scenario, seed=seed, on_ready=ready))


_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@sim_app.command("scada", context_settings=_PASS_THROUGH)
def sim_scada(ctx: typer.Context) -> None:
    """Gate-station SCADA as an OPC-UA server (options: see `gasiot sim scada --help`)."""
    from gasiot_sim.scada_opcua import main as scada_main

    scada_main(ctx.args)


@sim_app.command("rtu-bus", context_settings=_PASS_THROUGH)
def sim_rtu_bus(ctx: typer.Context) -> None:
    """Regulator boxes on a simulated RS-485 bus (pty pair; options: `gasiot sim rtu-bus --help`)."""
    from gasiot_sim.rtu_bus import main as bus_main

    bus_main(ctx.args)


@sim_app.command("meters", context_settings=_PASS_THROUGH)
def sim_meters(ctx: typer.Context) -> None:
    """Smart gas meters publishing over MQTT (options: `gasiot sim meters --help`)."""
    from gasiot_sim.meter_mqtt import main as meters_main

    meters_main(ctx.args)


# ---- keys ------------------------------------------------------------------------------------


@keys_app.command("ca-init")
def keys_ca_init(directory: Path, name: Annotated[str, typer.Option()] = "gasiot utility CA") -> None:
    """Create the utility's CA (ECDSA P-256; key mode 0600). TLS uses ECDSA/RSA: Python's ssl has no SM suites."""
    from cloud.ca import init_ca
    from gascore.crypto import CryptoError

    try:
        ca = init_ca(directory, name=name)
    except CryptoError as err:
        raise _fail(f"error: {err}") from None
    typer.echo(f"CA created: {ca.cert_path}")


@keys_app.command("issue-server")
def keys_issue_server(
    ca_dir: Path,
    out_cert: Path,
    out_key: Path,
    host: Annotated[list[str], typer.Option(help="DNS names of the cloud")] = ["localhost"],  # noqa: B006
    ip: Annotated[list[str], typer.Option(help="IP addresses of the cloud")] = ["127.0.0.1"],  # noqa: B006
) -> None:
    """Issue the cloud's TLS server certificate from the utility CA."""
    from cloud.ca import load_ca
    from gascore.crypto import CryptoError
    from gascore.tls import write_private_pem, write_public_pem

    try:
        cert, key = load_ca(ca_dir).issue_server(host, ip)
        write_private_pem(out_key, key)
        write_public_pem(out_cert, cert)
    except CryptoError as err:
        raise _fail(f"error: {err}") from None
    typer.echo(f"server certificate {out_cert}, key {out_key}")


@keys_app.command("issue-opcua")
def keys_issue_opcua(
    ca_dir: Path,
    out_cert: Path,
    out_key: Path,
    application_uri: Annotated[str, typer.Option(help="The OPC-UA application URI (urn:…)")],
    host: Annotated[list[str], typer.Option(help="Host names / IPs in the certificate")] = ["localhost"],  # noqa: B006
    server: Annotated[bool, typer.Option(help="A server certificate (default: a client's)")] = False,
) -> None:
    """Issue an OPC-UA application certificate (RSA-2048, for Basic256Sha256) from the utility CA.
    Name the key file *.pem: asyncua reads other suffixes as DER."""
    from cloud.ca import load_ca
    from gascore.crypto import CryptoError
    from gascore.tls import write_private_pem, write_public_pem

    if out_key.suffix != ".pem":
        raise _fail("error: name the key file *.pem (asyncua decides the format by the suffix)")
    try:
        cert, key = load_ca(ca_dir).issue_opcua(application_uri, host, server=server)
        write_private_pem(out_key, key)
        write_public_pem(out_cert, cert)
    except CryptoError as err:
        raise _fail(f"error: {err}") from None
    typer.echo(f"OPC-UA {'server' if server else 'client'} certificate {out_cert}, key {out_key}")


@keys_app.command("revoke")
def keys_revoke(
    ca_dir: Path, gateway: Annotated[str, typer.Option(help="Revoke every certificate of this gateway")]
) -> None:
    """Revoke a gateway's certificates (its next request is refused)."""
    from cloud.ca import load_ca

    serials = load_ca(ca_dir).revoke_gateway(gateway)
    typer.echo(f"revoked {len(serials)} certificate(s) of {gateway}: {', '.join(serials) or '-'}")


@keys_app.command("list")
def keys_list(ca_dir: Path) -> None:
    """Certificates the CA issued, with expiry and revocation."""
    import dataclasses

    from cloud.ca import load_ca

    for rec in load_ca(ca_dir).issued():
        typer.echo(json.dumps({k: str(v) for k, v in dataclasses.asdict(rec).items()}, ensure_ascii=False))


@keys_app.command("renew")
def keys_renew(
    config: Path,
    force: Annotated[bool, typer.Option(help="Renew now, even with more than 30 days left")] = False,
) -> None:
    """Renew the gateway's TLS certificate over its mutual-TLS channel (the running gateway does
    this by itself 30 days before expiry; this is for doing it now)."""
    import datetime as dt

    from edge.cert_renewal import RENEW_BEFORE, RenewalError, days_left, renew_if_due
    from edge.tls_files import gateway_ssl_context
    from gascore.crypto import CryptoError

    station = _load_station(config)
    left = days_left(station.data_dir)
    if left is None:
        raise _fail(f"error: no TLS certificate in {station.data_dir}: enroll against an https cloud first")
    try:
        ctx = gateway_ssl_context(station.data_dir, station.config.gateway.cloud_url, station.ca_file)
        renewed = asyncio.run(
            renew_if_due(
                data_dir=station.data_dir,
                cloud_url=station.config.gateway.cloud_url,
                gateway_id=station.config.gateway.id,
                ssl_context=ctx,
                before=dt.timedelta(days=100_000) if force else RENEW_BEFORE,
            )
        )
    except (RenewalError, CryptoError) as err:
        raise _fail(f"error: {err}") from None
    now_left = days_left(station.data_dir)
    if renewed:
        typer.echo(f"renewed: the certificate now expires in {now_left:.0f} days (was {left:.0f})")
    else:
        typer.echo(f"not due: {left:.0f} days left (renewal starts at {RENEW_BEFORE.days}); --force renews now")


@keys_app.command("trust")
def keys_trust(
    trust_dir: Path,
    certificate: Annotated[str, typer.Argument(help="A certificate file, or a fingerprint prefix from `trusted`")],
) -> None:
    """Trust an OPC-UA peer: a certificate file, or one already in the directory (a rejected peer).
    Counts from the peer's next connection, without restarting the gateway."""
    from drivers.opcua.trust_dir import TrustDirectory, TrustDirError

    store = TrustDirectory(trust_dir)
    try:
        path = Path(certificate)
        entry = store.trust(path) if path.is_file() else store.trust_fingerprint(certificate)
    except (TrustDirError, OSError) as err:
        raise _fail(f"error: {err}") from None
    typer.echo(f"trusted {entry.subject} (SHA-256 {entry.fingerprint}), valid until {entry.not_after:%Y-%m-%d}")


@keys_app.command("distrust")
def keys_distrust(trust_dir: Path, fingerprint: str) -> None:
    """Move a certificate to revoked/: refused from now on, even when issued by a trusted CA."""
    from drivers.opcua.trust_dir import TrustDirectory, TrustDirError

    try:
        entry = TrustDirectory(trust_dir).distrust(fingerprint)
    except TrustDirError as err:
        raise _fail(f"error: {err}") from None
    typer.echo(f"revoked {entry.subject} (SHA-256 {entry.fingerprint})")


@keys_app.command("trusted")
def keys_trusted(
    trust_dir: Path, as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False
) -> None:
    """List an OPC-UA trust directory: trusted, rejected and revoked certificates, with expiry."""
    from rich.console import Console
    from rich.table import Table

    from drivers.opcua.trust_dir import TrustDirectory, TrustDirError

    try:
        entries = TrustDirectory(trust_dir).entries()
    except TrustDirError as err:
        raise _fail(f"error: {err}") from None
    if as_json:
        rows = [
            {
                "status": e.status,
                "fingerprint": e.fingerprint,
                "subject": e.subject,
                "issuer": e.issuer,
                "application_uri": e.application_uri,
                "not_after": e.not_after.isoformat(),
                "days_left": round(e.days_left, 1),
                "ca": e.is_ca,
            }
            for e in entries
        ]
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"OPC-UA trust list {trust_dir}")
    for column in ("status", "fingerprint", "subject", "application URI", "expires"):
        table.add_column(column)
    colour = {"trusted": "green", "rejected": "yellow", "revoked": "red"}
    for e in entries:
        expiry = f"{e.not_after:%Y-%m-%d}"
        if e.days_left <= 30:
            expiry = f"[red]{expiry} ({e.days_left:.0f} d)[/red]"
        table.add_row(
            f"[{colour[e.status]}]{e.status}[/{colour[e.status]}]" + (" CA" if e.is_ca else ""),
            e.fingerprint[:16],
            e.subject,
            e.application_uri or "—",
            expiry,
        )
    Console().print(table)


@keys_app.command("generate")
def keys_generate(out: Path, alg: Annotated[str, typer.Option(help="sm2-sm3 or ed25519")] = "sm2-sm3") -> None:
    """Generate a key pair into OUT (mode 0600)."""
    from gascore.crypto import CryptoError, generate_signer, write_key_file

    if alg not in ("sm2-sm3", "ed25519"):
        raise _fail("error: --alg must be sm2-sm3 or ed25519")
    signer = generate_signer(alg)  # type: ignore[arg-type]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_key_file(signer, out)
    except CryptoError as err:
        raise _fail(f"error: {err}") from None
    typer.echo(f"{alg} key {signer.key_id} written to {out}")


@keys_app.command("show")
def keys_show(path: Path) -> None:
    """Show the public key and key id of a key file (never the private key)."""
    from gascore.crypto import CryptoError, load_key_file

    try:
        signer = load_key_file(path)
    except CryptoError as err:
        raise _fail(f"error: {err}") from None
    typer.echo(
        json.dumps(
            {"alg": signer.alg, "key_id": signer.key_id, "public_key": signer.public_key_bytes().hex()},
            indent=2,
        )
    )


# ---- provision -------------------------------------------------------------------------------


def _provisioned(action: Any) -> None:
    from gasiot.provision import ProvisionError

    try:
        typer.echo(action())
    except ProvisionError as err:
        raise _fail(f"error: {err}") from None


@provision_app.command("org")
def provision_org(
    org_id: str,
    name: str = "",
    cloud: CloudOpt = "https://127.0.0.1:8443",
    token: TokenOpt = None,
    ca_file: CaOpt = None,
) -> None:
    """Add an organisation (a utility or a district)."""
    from gasiot.provision import add_org, api_from

    _provisioned(lambda: add_org(api_from(cloud, token, ca_file), org_id, name))


@provision_app.command("station")
def provision_station(
    station_id: str,
    org: Annotated[str, typer.Option(help="Organisation id")],
    type_: Annotated[str, typer.Option("--type", help="gate, regulating, gasification, lpg, cng, …")] = "other",
    name: str = "",
    lat: float | None = None,
    lon: float | None = None,
    cloud: CloudOpt = "https://127.0.0.1:8443",
    token: TokenOpt = None,
    ca_file: CaOpt = None,
) -> None:
    """Add a station."""
    from gasiot.provision import add_station, api_from

    row = {
        "id": station_id,
        "org_id": org,
        "type": type_,
        "name": name,
        "lat": "" if lat is None else str(lat),
        "lon": "" if lon is None else str(lon),
    }
    _provisioned(lambda: add_station(api_from(cloud, token, ca_file), row))


@provision_app.command("gateway")
def provision_gateway(
    gateway_id: str,
    station: Annotated[str, typer.Option(help="Station id")],
    cloud: CloudOpt = "https://127.0.0.1:8443",
    token: TokenOpt = None,
    ca_file: CaOpt = None,
) -> None:
    """Provision a gateway at a station and print its one-time enrollment token."""
    from gasiot.provision import add_gateway, api_from

    _provisioned(lambda: add_gateway(api_from(cloud, token, ca_file), gateway_id, station))


@provision_app.command("import")
def provision_import(
    csv_file: Path,
    cloud: CloudOpt = "https://127.0.0.1:8443",
    token: TokenOpt = None,
    ca_file: CaOpt = None,
    report: Annotated[Path | None, typer.Option(help="Write the per-row report (CSV) here")] = None,
) -> None:
    """Bulk import organisations, stations and gateways from CSV (columns: kind,id,org_id,
    station_id,name,type,lat,lon,address).  Good rows are kept; every failed row is reported
    with its line and reason; exit 1 if any failed."""
    import csv

    from rich.progress import Progress

    from gasiot.provision import ProvisionError, api_from, apply_row, read_rows

    try:
        api = api_from(cloud, token, ca_file)
        rows = list(read_rows(csv_file))
    except (ProvisionError, OSError) as err:
        raise _fail(f"error: {err}") from None
    results: list[tuple[int, str, str, str]] = []
    with Progress(transient=True) as progress:
        task = progress.add_task(f"importing {csv_file.name}", total=len(rows))
        for line, row in rows:
            try:
                results.append((line, row.get("id", ""), "ok", apply_row(api, row)))
            except ProvisionError as err:
                results.append((line, row.get("id", ""), "failed", str(err)))
            progress.advance(task)
    failed = [r for r in results if r[2] == "failed"]
    for line, ident, status, detail in results:
        colour = "red" if status == "failed" else "green"
        typer.secho(f"{csv_file}:{line} {ident}: {status} — {detail}", fg=colour, err=status == "failed")
    if report is not None:
        with report.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["line", "id", "status", "detail"])
            writer.writerows(results)
    typer.echo(f"{len(results) - len(failed)} of {len(results)} rows imported, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


# ---- demo ------------------------------------------------------------------------------------


@app.command("demo")
def demo(
    seconds: Annotated[float | None, typer.Option(help="Stop after N seconds (default: until Ctrl-C)")] = None,
    boxes: Annotated[int, typer.Option(min=1, max=20, help="Simulated regulator boxes")] = 3,
    workdir: Annotated[Path | None, typer.Option(help="Keep files here instead of a temp dir")] = None,
) -> None:
    """Simulated station → edge gateway → cloud on SQLite, with a live table and a loss summary."""
    logsetup.configure("WARNING")
    from gasiot.demo import run_demo

    ok = asyncio.run(run_demo(seconds=seconds, boxes=boxes, workdir=workdir))
    if not ok:
        raise typer.Exit(1)


def main() -> None:
    sys.exit(app())

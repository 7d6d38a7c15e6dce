"""Station configuration: the YAML a field technician writes for one gateway.

Validated with pydantic at the boundary (unknown keys are errors), then cross-checked against the
thing models: every error names file, line and field.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from drivers.registry import DRIVERS, DriverSpec
from edge.interlocks.config import InterlockConfig
from edge.northbound.config import OpcUaServerConfig
from edge.rules.config import StationRules
from edge.rules.engine import RuleEngine, station_engine
from edge.service_binding import ServiceBinding
from gascore.contract import Codec
from gascore.thingmodel import ModelLibrary, ThingModel
from gascore.yamldoc import ConfigError, Loc, Problem, YamlDocument, format_loc, load_yaml

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


_M = TypeVar("_M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Strict):
    id: Identifier = Field(description="Gateway identity, as enrolled in the cloud")
    name: str | None = None
    cloud_url: str = Field(pattern=r"^https?://", description="Base URL of the gasiot cloud")
    data_dir: Path = Field(Path("data"), description="Store and key live here (relative to this file)")
    key_file: Path | None = Field(None, description="Default: <data_dir>/gateway.key")
    ca_file: Path | None = Field(
        None,
        description="CA of the cloud's TLS certificate (default: ca.crt from enrollment, else system store)",
    )
    status_interval_s: float = Field(
        60.0, ge=1, le=86_400, description="How often device status is saved and sent to the cloud"
    )
    allow_insecure_http: bool = Field(
        False, description="Allow plain http:// to a non-loopback cloud (acks are then unauthenticated)"
    )

    @model_validator(mode="after")
    def _https_off_loopback(self) -> GatewaySection:
        url = urlsplit(self.cloud_url)
        if url.scheme == "http" and not _is_loopback(url.hostname or "") and not self.allow_insecure_http:
            raise ValueError(
                "cloud_url: use https:// for a cloud that is not on this machine "
                "(or set allow_insecure_http: true on a trusted network)"
            )
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StoreSection(_Strict):
    max_telemetry_rows: int = Field(2_000_000, ge=100, description="Disk bound for buffered telemetry")
    policy: Literal["drop_oldest_telemetry"] = "drop_oldest_telemetry"
    synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL survives power loss; NORMAL survives process crashes only"
    )
    commit_window_ms: int = Field(
        20,
        ge=0,
        le=1000,
        description="Poll cycles with only readings (no events, no alarm change) wait at most this long to share "
        "one transaction (one fsync) with other devices' cycles; anything else commits at once. 0: every cycle "
        "commits on its own",
    )
    integrity_check_s: float = Field(
        3600.0,
        ge=0,
        description="How often the running gateway reads the whole store file for damage (a quick_check on a "
        "connection of its own, in a worker thread); a damaged file is set aside and a fresh one started. "
        "0: only when the store opens",
    )


class SyncSection(_Strict):
    codec: Codec = "cbor+zstd"
    max_batch_records: int = Field(1000, ge=1, le=50_000)
    max_batch_age_s: float = Field(1.0, gt=0, le=3600)
    timeout_s: float = Field(10.0, gt=0, le=300)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    command_poll_s: float = Field(5.0, ge=0.5, le=3600, description="How often to ask the cloud for commands")


class HealthSection(_Strict):
    """The gateway's health surface: ``GET /metrics`` (Prometheus text) and ``GET /healthz``
    (JSON; 200 when ok, 503 when degraded).  Off unless the section is present; ``health: {}``
    serves on 127.0.0.1:9108.  There is no authentication, hence loopback unless ``allow_remote``."""

    allow_remote: bool = Field(
        False, description="Allow a listen address other than loopback (the endpoint has no authentication)"
    )
    listen: str = Field("127.0.0.1:9108", description="HOST:PORT to serve on; port 0 picks a free port (logged)")
    max_sync_silence_s: float = Field(
        300.0,
        gt=0,
        le=7 * 86_400,
        description="/healthz reports degraded when records wait and the cloud has acknowledged nothing for this long",
    )

    @field_validator("listen")
    @classmethod
    def _loopback_unless_allowed(cls, value: str, info: ValidationInfo) -> str:
        host, _ = split_listen(value)
        if not _is_loopback(host) and not info.data.get("allow_remote", False):
            raise ValueError(
                f"{host!r} is not a loopback address and the endpoint has no authentication; "
                "listen on 127.0.0.1 (or set health.allow_remote: true on a trusted network)"
            )
        return value


def split_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port).  Raises ValueError."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65_535:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:9108), not {value!r}")
    return host, int(port)


class BindingFields(BaseModel):
    """监测点关联, the driver-independent part: how a wire value becomes engineering units."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = Field(None, description="If given, must equal the thing model's unit")
    deadband: float | None = Field(None, ge=0, description="Absolute change needed to report")


def _channel_config(spec: DriverSpec) -> type[BaseModel]:
    return create_model(
        f"{spec.channel_model.__name__}Config",
        __base__=spec.channel_model,
        __config__=None,
        id=(Identifier, ...),
    )


def _binding(spec: DriverSpec) -> type[BaseModel]:
    return create_model(f"{spec.point_model.__name__}Binding", __base__=(spec.point_model, BindingFields))


CHANNEL_CONFIGS: dict[str, type[BaseModel]] = {name: _channel_config(spec) for name, spec in DRIVERS.items()}
BINDINGS: dict[str, type[BaseModel]] = {name: _binding(spec) for name, spec in DRIVERS.items()}
_channel_types = tuple(CHANNEL_CONFIGS.values())
if len(_channel_types) == 1:
    ChannelConfig: Any = _channel_types[0]
else:
    ChannelConfig = Annotated[Union[_channel_types], Field(discriminator="driver")]  # noqa: UP007


class Location(_Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class DeviceConfig(_Strict):
    id: Identifier
    model: str
    channel: str
    unit_id: int = Field(1, ge=0, le=255)
    poll_interval_s: float = Field(1.0, ge=0.05, le=86_400)
    max_silent_s: float = Field(60.0, gt=0, description="Report at least this often even without change")
    location: Location | None = None
    serial: str | None = Field(None, max_length=64, description="The device's serial number (sent to the registry)")
    points: dict[str, dict[str, Any]] = Field(
        min_length=1, description="property id → binding (fields depend on the channel's driver)"
    )
    services: dict[str, ServiceBinding] = Field(
        default_factory=dict, description="model service id → the writes that carry it out (edge/service_binding.py)"
    )


class StationConfig(_Strict):
    gateway: GatewaySection
    models: list[Path] = Field(default_factory=lambda: [Path("../models")])
    store: StoreSection = StoreSection()
    sync: SyncSection = SyncSection()
    health: HealthSection | None = Field(None, description="Metrics and health endpoint (off when absent)")
    channels: list[ChannelConfig] = Field(min_length=1)
    devices: list[DeviceConfig] = Field(min_length=1)
    rules: StationRules | None = Field(None, description="Rule packs, station rules, overrides (edge/rules/README.md)")
    interlocks: list[InterlockConfig] = Field(default_factory=list, description="Local control: condition → action")
    opcua_server: OpcUaServerConfig | None = Field(
        None, description="Northbound OPC-UA server for SCADA (off when absent; edge/northbound/README.md)"
    )


class Station:
    """A validated station: config, the thing models it binds to, and absolute paths."""

    def __init__(self, config: StationConfig, library: ModelLibrary, base_dir: Path, source: str) -> None:
        self.config = config
        self.library = library
        self.source = source
        self.data_dir = (base_dir / config.gateway.data_dir).resolve()
        key = config.gateway.key_file
        self.key_file = (base_dir / key).resolve() if key else self.data_dir / "gateway.key"
        self.ca_file = (base_dir / config.gateway.ca_file).resolve() if config.gateway.ca_file else None
        # Paths in channels (certificates, keys) are relative to the station file, like data_dir.
        self.channels: dict[str, Any] = {c.id: _resolve_paths(c, base_dir) for c in config.channels}
        self.opcua_server = _resolve_paths(config.opcua_server, base_dir) if config.opcua_server else None
        self.bindings: dict[str, dict[str, Any]] = {}  # device id → property id → validated binding
        self.rule_engine: RuleEngine | None = None  # built (and checked) at load time

    def model_of(self, device: DeviceConfig) -> ThingModel:
        model = self.library.get(device.model)
        assert model is not None, "checked at load time"
        return model


def _resolve_paths(model: _M, base_dir: Path) -> _M:
    update: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path):
            update[name] = (base_dir / value).resolve()
        elif isinstance(value, list) and value and all(isinstance(v, Path) for v in value):
            update[name] = [(base_dir / v).resolve() for v in value]
    return model.model_copy(update=update) if update else model


def json_schema() -> dict[str, Any]:
    """The station schema, with every driver's point binding offered for `points` values."""
    schema = StationConfig.model_json_schema()
    defs = schema.setdefault("$defs", {})
    options = []
    for name, model in BINDINGS.items():
        sub = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        sub["description"] = f"point binding for `driver: {name}` channels"
        defs[model.__name__] = sub
        options.append({"$ref": f"#/$defs/{model.__name__}"})
    defs["DeviceConfig"]["properties"]["points"]["additionalProperties"] = {"anyOf": options}
    return schema


def load_station(path: Path) -> Station:
    """Load and fully validate a station file.  Raises ConfigError listing every problem."""
    doc = load_yaml(path)
    try:
        config = StationConfig.model_validate(doc.data)
    except ValidationError as err:
        raise ConfigError(doc.problems_from(err)) from err
    base_dir = path.resolve().parent
    model_dirs = [(base_dir / m).resolve() for m in config.models]
    library = ModelLibrary.load(model_dirs)
    station = Station(config, library, base_dir, str(path))
    problems = _cross_check(station, doc)
    if not problems:
        devices = [(d.id, station.model_of(d)) for d in config.devices]
        try:
            station.rule_engine = station_engine(config.rules, devices, library, base_dir=base_dir, station_doc=doc)
        except ConfigError as err:
            problems += err.problems
        else:
            problems += _check_interlocks(station, doc)
    if problems:
        raise ConfigError(problems)
    return station


def _check_interlocks(station: Station, doc: YamlDocument) -> list[Problem]:
    problems: list[Problem] = []
    assert station.rule_engine is not None
    conditions = {cid for cid, _ in station.rule_engine.conditions()}
    computed = station.rule_engine.computed_points
    devices = {d.id: d for d in station.config.devices}
    seen: set[str] = set()

    def bad(loc: Loc, message: str) -> None:
        problems.append(Problem(doc.path, doc.line_of(loc), format_loc(loc), message))

    for i, lock in enumerate(station.config.interlocks):
        loc: Loc = ("interlocks", i)
        if lock.id in seen:
            bad((*loc, "id"), f"duplicate interlock id {lock.id!r}")
        seen.add(lock.id)
        if lock.when not in conditions:
            near = sorted(c for c in conditions if c.split(".")[0] == lock.when.split(".")[0])[:8]
            bad(
                (*loc, "when"),
                f"no rule condition {lock.when!r}" + (f" (this device has: {', '.join(near)})" if near else ""),
            )
        act = lock.action
        device = devices.get(act.device)
        if device is None:
            bad((*loc, "action", "device"), f"unknown device {act.device!r}")
        else:
            prop = station.model_of(device).properties.get(act.point)
            if prop is None or prop.access != "rw":
                bad((*loc, "action", "point"), f"{act.device}.{act.point} is not a writable (access: rw) property")
            elif act.point not in station.bindings.get(act.device, {}):
                bad((*loc, "action", "point"), f"{act.device}.{act.point} has no point binding to write to")
        rb = lock.readback
        if rb is not None and rb.device is not None:
            bound = station.bindings.get(rb.device, {})
            if rb.device not in devices:
                bad((*loc, "readback", "device"), f"unknown device {rb.device!r}")
            elif rb.point not in bound and rb.point not in computed.get(rb.device, []):
                bad((*loc, "readback", "point"), f"{rb.device}.{rb.point} is not measured (no binding)")
    return problems


def _cross_check(station: Station, doc: YamlDocument) -> list[Problem]:
    config, library = station.config, station.library
    problems: list[Problem] = []

    def bad(loc: Loc, message: str) -> None:
        problems.append(Problem(doc.path, doc.line_of(loc), format_loc(loc), message))

    channel_ids = [c.id for c in config.channels]
    for i, cid in enumerate(channel_ids):
        if channel_ids.index(cid) != i:
            bad(("channels", i, "id"), f"duplicate channel id {cid!r}")
    device_ids = [d.id for d in config.devices]
    for i, device in enumerate(config.devices):
        loc: Loc = ("devices", i)
        if device_ids.index(device.id) != i:
            bad((*loc, "id"), f"duplicate device id {device.id!r}")
        channel = station.channels.get(device.channel)
        if channel is None:
            bad((*loc, "channel"), f"unknown channel {device.channel!r} (defined: {', '.join(channel_ids)})")
        model = library.get(device.model)
        if model is None:
            bad((*loc, "model"), f"unknown thing model {device.model!r} (known: {', '.join(sorted(library.models))})")
        if channel is None or model is None:
            continue
        spec = DRIVERS[channel.driver]
        bindings = _validate_bindings(spec, device, doc, (*loc, "points"), problems)
        station.bindings[device.id] = bindings
        for key, binding in bindings.items():
            ploc: Loc = (*loc, "points", key)
            prop = model.properties.get(key)
            if prop is None:
                bad(ploc, f"model {model.id!r} has no property {key!r}")
                continue
            if binding.unit is not None and binding.unit != prop.unit:
                bad((*ploc, "unit"), f"unit {binding.unit!r} does not match model unit {prop.unit!r}")
            kind = spec.value_kind(binding)
            if kind != "any" and (prop.type == "bool") != (kind == "bool"):
                bad((*ploc, "type"), f"property {key!r} is {prop.type}; binding reads {getattr(binding, 'type', kind)}")
            elif kind == "number" and prop.type == "string":
                bad((*ploc, "type"), f"property {key!r} is a string; this binding carries numbers")
            if prop.type in ("bool", "string") and (binding.scale != 1.0 or binding.offset != 0.0):
                bad((*ploc, "scale"), f"scale/offset do not apply to a {prop.type} point")
        for key, message in spec.point_problems(channel, list(bindings.items())):
            bad((*loc, "points", key), message)
        for service_id, service_binding in device.services.items():
            _check_service(device, model, service_id, service_binding, (*loc, "services", service_id), bad)
    return problems


def _check_service(
    device: DeviceConfig, model: ThingModel, service_id: str, binding: ServiceBinding, loc: Loc, bad: Any
) -> None:
    service = model.services.get(service_id)
    if service is None:
        bad(loc, f"model {model.id!r} has no service {service_id!r} (has: {', '.join(model.services) or 'none'})")
        return
    inputs = {i.id for i in service.inputs}

    def check_ref(value: Any, vloc: Loc) -> None:
        if isinstance(value, str) and value.startswith("$") and value[1:] not in inputs:
            has = ", ".join(sorted(inputs)) or "none"
            bad(vloc, f"{value!r}: service {service_id!r} has no input {value[1:]!r} (has: {has})")

    for j, step in enumerate(binding.steps):
        prop = model.properties.get(step.point)
        if prop is None or prop.access != "rw":
            bad((*loc, "steps", j, "point"), f"{step.point!r} is not a writable property of model {model.id!r}")
        elif step.point not in device.points:
            bad((*loc, "steps", j, "point"), f"{step.point!r} is not bound in this device's points")
        check_ref(step.value, (*loc, "steps", j, "value"))
    for point, value in binding.expect.items():
        if point not in model.properties:
            bad((*loc, "expect", point), f"model {model.id!r} has no property {point!r}")
        elif point not in device.points:
            bad((*loc, "expect", point), f"{point!r} is not bound in this device's points")
        check_ref(value, (*loc, "expect", point))


def _validate_bindings(
    spec: DriverSpec, device: DeviceConfig, doc: YamlDocument, loc: Loc, problems: list[Problem]
) -> dict[str, Any]:
    model = BINDINGS[spec.name]
    out: dict[str, Any] = {}
    for key, raw in device.points.items():
        try:
            out[key] = model.model_validate(raw)
        except ValidationError as err:
            problems.extend(doc.problems_from(err, (*loc, key)))
    return out

"""The station as an OPC-UA address space::

    Objects/Station                         the gateway (DisplayName: its name)
      <device>                              one object per device (Description: model, zh/en)
        <property>                          a variable per thing-model property: English BrowseName,
                                            Chinese DisplayName, typed, EngineeringUnits + EURange
                                            (UNECE), EnumValues for enums; value, StatusCode from the
                                            quality, source timestamp; HistoryRead when enabled
        Diagnostics/Online, OfflineReason, LastGoodRead, Polls, Failures, DeviceErrors, LatencyP95Ms
        Set_<property>(value)               a method per writable property (operator)
        <service>(inputs…)                  a method per model service (engineer)

NodeIds are strings in the station namespace (``<device>.<property>``…), stable across restarts
and reloads, so a SCADA tag database keeps working.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from edge.config import Station
from edge.northbound.units import eu_information
from gascore.thingmodel import Property, ServiceInput

VARIANT: dict[str, ua.VariantType] = {
    "float": ua.VariantType.Double,
    "int": ua.VariantType.Int32,  # Int64 is beyond many SCADA drivers; station values fit in 32 bits
    "enum": ua.VariantType.Int32,
    "bool": ua.VariantType.Boolean,
    "string": ua.VariantType.String,
}

DIAGNOSTICS: dict[str, tuple[str, ua.VariantType, str]] = {
    # browse name → (status snapshot key, type, Chinese display name)
    "Online": ("online", ua.VariantType.Boolean, "在线"),
    "OfflineReason": ("reason", ua.VariantType.String, "离线原因"),
    "LastGoodRead": ("last_good_ms", ua.VariantType.DateTime, "最近成功读取"),
    "Polls": ("polls", ua.VariantType.UInt32, "轮询次数"),
    "Failures": ("failures", ua.VariantType.UInt32, "通信失败次数"),
    "DeviceErrors": ("device_errors", ua.VariantType.UInt32, "设备异常应答次数"),
    "LatencyP95Ms": ("latency_p95_ms", ua.VariantType.Double, "响应时间P95(ms)"),
}

MethodKind = Literal["write", "service"]
MethodHandler = Callable[[str, str, dict[str, Any]], Awaitable[str]]
"""(device, property or service, arguments) → outcome text; raises to refuse."""


@dataclass(frozen=True, slots=True)
class MethodTarget:
    kind: MethodKind
    device: str
    name: str  # property (write) or service id
    inputs: tuple[str, ...]  # argument names, in order


@dataclass
class StationNodes:
    namespace: int
    station: Node
    devices: dict[str, Node] = field(default_factory=dict)
    points: dict[tuple[str, str], tuple[Node, ua.VariantType]] = field(default_factory=dict)
    diagnostics: dict[str, dict[str, tuple[Node, ua.VariantType]]] = field(default_factory=dict)
    methods: dict[ua.NodeId, MethodTarget] = field(default_factory=dict)


def ns0(identifier: int) -> ua.NodeId:
    """A standard (namespace 0) node."""
    return ua.NodeId(ua.Int32(identifier), ua.Int16(0))


def node_id(ns: int, text: str) -> ua.NodeId:
    return ua.NodeId(ua.String(text), ua.Int16(ns))


_ZERO: dict[ua.VariantType, Any] = {
    ua.VariantType.Double: 0.0,
    ua.VariantType.Int32: 0,
    ua.VariantType.UInt32: 0,
    ua.VariantType.Boolean: False,
    ua.VariantType.String: "",
    ua.VariantType.DateTime: datetime(1601, 1, 1, tzinfo=UTC),
}


def placeholder(vtype: ua.VariantType) -> ua.Variant:
    """The value slot of a Bad status (asyncua keeps a variable's type on every write; clients
    ignore the value of a Bad DataValue)."""
    return ua.Variant(_ZERO[vtype], vtype)


def _initial(vtype: ua.VariantType) -> ua.DataValue:
    # Nothing read yet: an honest status, not a made-up zero.
    return ua.DataValue(placeholder(vtype), StatusCode=ua.StatusCode(ua.UInt32(StatusCodes.BadWaitingForInitialData)))


async def _describe(node: Node, display: str, description: str | None) -> None:
    await node.write_attribute(AttributeIds.DisplayName, ua.DataValue(ua.Variant(ua.LocalizedText(display, "zh-CN"))))
    if description:
        await node.write_attribute(
            AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(description, "en")))
        )


async def _add_property_variable(parent: Node, ns: int, device: str, prop: Property, history: bool) -> Node:
    vtype = VARIANT[prop.type]
    var = await parent.add_variable(
        node_id(ns, f"{device}.{prop.id}"), ua.QualifiedName(prop.id, ns), _ZERO[vtype], vtype
    )
    await var.write_attribute(AttributeIds.Value, _initial(vtype))
    await _describe(var, prop.name.zh, prop.name.en + (f" — {prop.description}" if prop.description else ""))
    access = ua.AccessLevel.CurrentRead.mask | (ua.AccessLevel.HistoryRead.mask if history else 0)
    await var.write_attribute(AttributeIds.AccessLevel, ua.DataValue(ua.Variant(access, ua.VariantType.Byte)))
    await var.write_attribute(AttributeIds.UserAccessLevel, ua.DataValue(ua.Variant(access, ua.VariantType.Byte)))
    await var.write_attribute(AttributeIds.Historizing, ua.DataValue(ua.Variant(history, ua.VariantType.Boolean)))
    if prop.unit:
        await var.add_property(
            node_id(ns, f"{device}.{prop.id}.EngineeringUnits"),
            ua.QualifiedName("EngineeringUnits", 0),
            eu_information(prop.unit),
            datatype=ns0(ObjectIds.EUInformation),
        )
    if prop.range is not None:
        await var.add_property(
            node_id(ns, f"{device}.{prop.id}.EURange"),
            ua.QualifiedName("EURange", 0),
            ua.Range(Low=float(prop.range[0]), High=float(prop.range[1])),
            datatype=ns0(ObjectIds.Range),
        )
    if prop.values:
        await var.add_property(
            node_id(ns, f"{device}.{prop.id}.EnumValues"),
            ua.QualifiedName("EnumValues", 0),
            [
                ua.EnumValueType(Value=code, DisplayName=ua.LocalizedText(label, "zh-CN"))
                for code, label in sorted(prop.values.items())
            ],
            datatype=ns0(ObjectIds.EnumValueType),
        )
    return var


def _argument(name: str, vtype: ua.VariantType, description: str) -> ua.Argument:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ns0(vtype.value)
    arg.ValueRank = -1
    arg.Description = ua.LocalizedText(description, "zh-CN")
    return arg


def _input_argument(inp: Property | ServiceInput, name: str) -> ua.Argument:
    unit = f" [{inp.unit}]" if inp.unit else ""
    span = f" ({inp.range[0]}–{inp.range[1]})" if inp.range else ""
    return _argument(name, VARIANT[inp.type], f"{inp.name.zh} / {inp.name.en}{unit}{span}")


# The outcome text starts with what happened; "unconfirmed" is Good (the write was made) with the
# detail in the output argument.
_CALL_STATUS = {"refused": StatusCodes.BadInvalidArgument, "failed": StatusCodes.BadDeviceFailure}

OUTCOME_ARGUMENT = _argument("outcome", ua.VariantType.String, "执行结果 / outcome (done, unconfirmed …)")


async def build_station(
    server: Server, ns: int, station: Station, *, history: bool, on_method: MethodHandler
) -> StationNodes:
    """Add the station's nodes under Objects; returns where everything is."""
    objects = server.nodes.objects
    gw = station.config.gateway
    root = await objects.add_object(node_id(ns, "Station"), ua.QualifiedName("Station", ns))
    await _describe(root, gw.name or gw.id, f"gasiot gateway {gw.id}")
    nodes = StationNodes(ns, root)
    for device in station.config.devices:
        await add_device(nodes, station, device.id, history=history, on_method=on_method)
    return nodes


async def add_device(
    nodes: StationNodes, station: Station, device_id: str, *, history: bool, on_method: MethodHandler
) -> None:
    ns = nodes.namespace
    device = next(d for d in station.config.devices if d.id == device_id)
    model = station.model_of(device)
    obj = await nodes.station.add_object(node_id(ns, device.id), ua.QualifiedName(device.id, ns))
    await _describe(obj, f"{device.id} {model.name.zh}", f"{model.name.en} ({model.id} v{model.version})")
    nodes.devices[device.id] = obj
    for prop in model.properties.values():
        var = await _add_property_variable(obj, ns, device.id, prop, history)
        nodes.points[(device.id, prop.id)] = (var, VARIANT[prop.type])
    diag = await obj.add_object(node_id(ns, f"{device.id}.Diagnostics"), ua.QualifiedName("Diagnostics", ns))
    await _describe(diag, "通信诊断", "communication diagnostics of this device")
    nodes.diagnostics[device.id] = {}
    for name, (_, vtype, zh) in DIAGNOSTICS.items():
        var = await diag.add_variable(
            node_id(ns, f"{device.id}.Diagnostics.{name}"), ua.QualifiedName(name, ns), _ZERO[vtype], vtype
        )
        await var.write_attribute(AttributeIds.Value, _initial(vtype))
        await _describe(var, zh, None)
        nodes.diagnostics[device.id][name] = (var, vtype)
    for prop in model.properties.values():
        if prop.access != "rw" or prop.id not in device.points:
            continue
        await _add_method(
            nodes,
            obj,
            f"{device.id}.Set_{prop.id}",
            f"Set_{prop.id}",
            f"设置 {prop.name.zh}",
            f"Write {prop.name.en}; the outcome says whether the device confirmed it",
            MethodTarget("write", device.id, prop.id, ("value",)),
            [_input_argument(prop, "value")],
            on_method,
        )
    for service in model.services.values():
        await _add_method(
            nodes,
            obj,
            f"{device.id}.{service.id}",
            service.id,
            service.name.zh,
            service.name.en + (f" — {service.description}" if service.description else ""),
            MethodTarget("service", device.id, service.id, tuple(i.id for i in service.inputs)),
            [_input_argument(i, i.id) for i in service.inputs],
            on_method,
        )


async def _add_method(
    nodes: StationNodes,
    parent: Node,
    text_id: str,
    browse: str,
    display: str,
    description: str,
    target: MethodTarget,
    inputs: Sequence[ua.Argument],
    on_method: MethodHandler,
) -> None:
    async def call(_parent: ua.NodeId, *args: ua.Variant) -> ua.CallMethodResult:
        values = dict(zip(target.inputs, (a.Value for a in args), strict=False))
        outcome = await on_method(target.device, target.name, values)
        result = ua.CallMethodResult()
        result.StatusCode = ua.StatusCode(ua.UInt32(_CALL_STATUS.get(outcome.partition(":")[0], StatusCodes.Good)))
        result.OutputArguments = [ua.Variant(outcome, ua.VariantType.String)]
        return result

    ns = nodes.namespace
    method = await parent.add_method(
        node_id(ns, text_id), ua.QualifiedName(browse, ns), call, list(inputs), [OUTCOME_ARGUMENT]
    )
    await _describe(method, display, description)
    nodes.methods[method.nodeid] = target


async def remove_device(server: Server, nodes: StationNodes, device_id: str) -> None:
    obj = nodes.devices.pop(device_id)
    await server.delete_nodes([obj], recursive=True)
    for key in [k for k in nodes.points if k[0] == device_id]:
        del nodes.points[key]
    nodes.diagnostics.pop(device_id, None)
    for nid in [n for n, t in nodes.methods.items() if t.device == device_id]:
        del nodes.methods[nid]


def to_variant_value(vtype: ua.VariantType, value: Any) -> Any:
    """A reading's value as the variable's type (scaling may have made an int a float)."""
    if value is None:
        return None
    if vtype is ua.VariantType.Double:
        return float(value)
    if vtype is ua.VariantType.Int32:
        return round(value) if isinstance(value, float) else int(value)
    if vtype is ua.VariantType.Boolean:
        return bool(value)
    return str(value)

"""Browse a server's address space so a technician can write bindings (``gasiot edge browse``).

One Browse request per tree level (BrowseNext for continuation points), then one Read for the
data type, access level and current value of every variable found.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds

from drivers.opcua.config import OpcUaChannel, parse_node_id
from drivers.opcua.security import load_trust
from drivers.opcua.session import OpcUaSession
from drivers.opcua.status import scalar_of

_BATCH = 500  # nodes per Browse / Read request


@dataclass(frozen=True, slots=True)
class BrowseEntry:
    """One node below the browse root, in tree (depth-first) order."""

    node_id: str  # as a point's `node:` takes it
    browse_name: str  # without the namespace prefix
    node_class: str  # Object, Variable, Method, ObjectType, …
    depth: int  # 1 = a child of the root
    parent: str | None  # node_id of the parent entry; None for children of the root
    data_type: str | None = None  # variables: Double, Boolean, … (or the type's NodeId)
    access: str | None = None  # variables: r, rw, w or -
    value: str | None = None  # variables: the current value, shortened


async def browse(
    endpoint: str,
    *,
    depth: int = 3,
    root: str = "i=85",
    channel: OpcUaChannel | None = None,
    include_standard: bool = False,
    max_nodes: int = 5000,
) -> list[BrowseEntry]:
    """The nodes up to ``depth`` levels below ``root`` (default: the Objects folder).

    ``channel`` supplies security and credentials (its endpoint is replaced by ``endpoint``);
    without it the connection is anonymous with security None.  Namespace-0 nodes (the Server
    object and its diagnostics) are left out unless ``include_standard``.  Stops after
    ``max_nodes`` entries.  Raises CommError / SecurityError like the driver.
    """
    if depth < 1:
        raise ValueError("depth must be >= 1")
    config = OpcUaChannel(endpoint=endpoint) if channel is None else channel.model_copy(update={"endpoint": endpoint})
    session = await OpcUaSession.open(config, await load_trust(config))
    try:
        found = await _walk(session, parse_node_id(root), depth, include_standard, max_nodes)
        return await _describe_variables(session, found)
    finally:
        await session.close()


async def _walk(
    session: OpcUaSession, root: ua.NodeId, depth: int, include_standard: bool, max_nodes: int
) -> list[tuple[BrowseEntry, ua.NodeId]]:
    children: dict[str | None, list[tuple[BrowseEntry, ua.NodeId]]] = defaultdict(list)
    seen = {root.to_string()}
    level: list[tuple[str | None, ua.NodeId]] = [(None, root)]
    count = 0
    for current_depth in range(1, depth + 1):
        next_level: list[tuple[str | None, ua.NodeId]] = []
        for start in range(0, len(level), _BATCH):
            batch = level[start : start + _BATCH]
            results = await _browse_many(session, [node_id for _, node_id in batch])
            for (parent, _), refs in zip(batch, results, strict=True):
                for ref in refs:
                    node_id = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex, ref.NodeId.NodeIdType)
                    text = node_id.to_string()
                    if text in seen or (node_id.NamespaceIndex == 0 and not include_standard):
                        continue
                    if count >= max_nodes:
                        return _tree_order(children)
                    seen.add(text)
                    count += 1
                    entry = BrowseEntry(
                        node_id=text,
                        browse_name=ref.BrowseName.Name or text,
                        node_class=ua.NodeClass(ref.NodeClass).name,
                        depth=current_depth,
                        parent=parent,
                    )
                    children[parent].append((entry, node_id))
                    next_level.append((text, node_id))
        level = next_level
        if not level:
            break
    return _tree_order(children)


async def _browse_many(session: OpcUaSession, node_ids: Sequence[ua.NodeId]) -> list[list[ua.ReferenceDescription]]:
    """Forward hierarchical references of every node, following continuation points."""
    params = ua.BrowseParameters(
        RequestedMaxReferencesPerNode=0,
        NodesToBrowse=[
            ua.BrowseDescription(
                NodeId=node_id,
                BrowseDirection=ua.BrowseDirection.Forward,
                ReferenceTypeId=ua.NodeId(ua.Int32(ObjectIds.HierarchicalReferences)),
                IncludeSubtypes=True,
                NodeClassMask=0,
                ResultMask=ua.BrowseResultMask.All,
            )
            for node_id in node_ids
        ],
    )
    uaclient = session.client.uaclient
    results = await session.call("browse", uaclient.browse(params))
    out = []
    for result in results:
        refs = list(result.References) if result.StatusCode.is_good() else []
        point = result.ContinuationPoint
        while point:
            more = await session.call(
                "browse next",
                uaclient.browse_next(
                    ua.BrowseNextParameters(ReleaseContinuationPoints=False, ContinuationPoints=[point])
                ),
            )
            refs.extend(more[0].References)
            point = more[0].ContinuationPoint
        out.append(refs)
    return out


def _tree_order(
    children: dict[str | None, list[tuple[BrowseEntry, ua.NodeId]]],
) -> list[tuple[BrowseEntry, ua.NodeId]]:
    out: list[tuple[BrowseEntry, ua.NodeId]] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        entry, node_id = stack.pop()
        out.append((entry, node_id))
        stack.extend(reversed(children.get(entry.node_id, [])))
    return out


async def _describe_variables(session: OpcUaSession, found: list[tuple[BrowseEntry, ua.NodeId]]) -> list[BrowseEntry]:
    variables = [(i, node_id) for i, (entry, node_id) in enumerate(found) if entry.node_class == "Variable"]
    attrs = (AttributeIds.DataType, AttributeIds.AccessLevel, AttributeIds.Value)
    described: dict[int, tuple[ua.DataValue, ...]] = {}
    per_request = max(1, _BATCH // len(attrs))
    for start in range(0, len(variables), per_request):
        batch = variables[start : start + per_request]
        params = ua.ReadParameters(
            TimestampsToReturn=ua.TimestampsToReturn.Neither,
            NodesToRead=[ua.ReadValueId(NodeId=node_id, AttributeId=attr) for _, node_id in batch for attr in attrs],
        )
        values = await session.call("read attributes", session.client.uaclient.read(params))
        for n, (index, _) in enumerate(batch):
            described[index] = tuple(values[n * len(attrs) : (n + 1) * len(attrs)])
    type_names = await _type_names(session, [dvs[0] for dvs in described.values()])
    out = []
    for index, (entry, _) in enumerate(found):
        if index not in described:
            out.append(entry)
            continue
        dtype, access, value = described[index]
        out.append(
            BrowseEntry(
                node_id=entry.node_id,
                browse_name=entry.browse_name,
                node_class=entry.node_class,
                depth=entry.depth,
                parent=entry.parent,
                data_type=type_names.get(_nodeid_text(dtype)),
                access=_access(access),
                value=_value_text(value),
            )
        )
    return out


async def _type_names(session: OpcUaSession, dtypes: list[ua.DataValue]) -> dict[str | None, str]:
    """DataType NodeId text → a readable name: built-in names for namespace 0, else the type's BrowseName."""
    names: dict[str | None, str] = {}
    custom: list[ua.NodeId] = []
    for dv in dtypes:
        node_id = dv.Value.Value if dv.Value is not None else None
        if not isinstance(node_id, ua.NodeId) or node_id.to_string() in names:
            continue
        if node_id.NamespaceIndex == 0 and isinstance(node_id.Identifier, int):
            names[node_id.to_string()] = ObjectIdNames.get(node_id.Identifier, node_id.to_string())
        else:
            names[node_id.to_string()] = node_id.to_string()
            custom.append(node_id)
    if custom:
        params = ua.ReadParameters(
            NodesToRead=[ua.ReadValueId(NodeId=node_id, AttributeId=AttributeIds.BrowseName) for node_id in custom]
        )
        for node_id, dv in zip(
            custom, await session.call("read type names", session.client.uaclient.read(params)), strict=True
        ):
            if dv.Value is not None and isinstance(dv.Value.Value, ua.QualifiedName) and dv.Value.Value.Name:
                names[node_id.to_string()] = dv.Value.Value.Name
    return names


def _nodeid_text(dv: ua.DataValue) -> str | None:
    value = dv.Value.Value if dv.Value is not None else None
    return value.to_string() if isinstance(value, ua.NodeId) else None


def _access(dv: ua.DataValue) -> str | None:
    bits = dv.Value.Value if dv.Value is not None else None
    if not isinstance(bits, int):
        return None
    readable, writable = bits & ua.AccessLevel.CurrentRead.mask, bits & ua.AccessLevel.CurrentWrite.mask
    return ("r" if readable else "") + ("w" if writable else "") or "-"


def _value_text(dv: ua.DataValue, limit: int = 40) -> str | None:
    if dv.StatusCode is not None and not dv.StatusCode.is_good():
        return dv.StatusCode.name
    value, error = scalar_of(dv.Value)
    text = repr(value) if error is None else (repr(dv.Value.Value) if dv.Value is not None else "null")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_browse(entries: Sequence[BrowseEntry]) -> str:
    """A readable tree, one node per line: name, class, data type and access, value, NodeId::

    GateStation  Object  ns=2;s=GateStation
    ├── Inlet  Object  ns=2;s=Inlet
    │   ├── Pressure  Double rw = 4.02  ns=2;s=Inlet.Pressure
    """
    children: dict[str | None, list[BrowseEntry]] = defaultdict(list)
    for entry in entries:
        children[entry.parent].append(entry)
    lines: list[str] = []

    def emit(parent: str | None, prefix: str) -> None:
        siblings = children.get(parent, [])
        for n, entry in enumerate(siblings):
            last = n == len(siblings) - 1
            branch = "" if parent is None else ("└── " if last else "├── ")
            lines.append(f"{prefix}{branch}{_describe(entry)}")
            emit(entry.node_id, prefix + ("" if parent is None else ("    " if last else "│   ")))

    emit(None, "")
    return "\n".join(lines)


def _describe(entry: BrowseEntry) -> str:
    if entry.node_class == "Variable":
        kind = f"{entry.data_type or '?'} {entry.access or '?'}"
        value = f" = {entry.value}" if entry.value is not None else ""
        return f"{entry.browse_name}  {kind}{value}  {entry.node_id}"
    return f"{entry.browse_name}  {entry.node_class}  {entry.node_id}"

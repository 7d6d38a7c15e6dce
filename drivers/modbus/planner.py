"""Turn a list of points into few read requests.

Each request covers one table and one contiguous address range; points of the same table that lie
close together share a request (reading a few unused registers costs far less than one more round
trip over a cellular link).  A point is always read whole by exactly one request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from drivers.modbus.codec import Decoder, decoder_for, whole_request_decoder
from drivers.modbus.config import BIT_TABLES, ModbusPoint, RegisterTable

Member = tuple[str, ModbusPoint]

_TABLE_ORDER: tuple[RegisterTable, ...] = ("holding", "input", "coil", "discrete")


# (key, offset of the first word in the response, offset past the last, bit or None, decoder or None)
Slot = tuple[str, int, int, int | None, Decoder | None]


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus read: ``count`` registers (or bits) of ``table`` from ``start``."""

    table: RegisterTable
    start: int
    count: int
    members: tuple[Member, ...]
    # Where each member sits in the response and how to decode it, resolved once per plan so
    # that every poll only slices and unpacks.
    layout: tuple[Slot, ...] = field(init=False, repr=False, compare=False)
    # When every member is a whole register value in one byte order: one struct call decodes them
    # all, in member order (None: decode member by member through ``layout``).
    keys: tuple[str, ...] = field(init=False, repr=False, compare=False)
    decode_all: Callable[[Sequence[int]], tuple[int | float, ...]] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        slots: list[Slot] = []
        for key, point in self.members:
            offset = point.address - self.start
            if self.table in BIT_TABLES or point.bit is not None:
                slots.append((key, offset, offset + 1, point.bit, None))
            else:
                decoder = decoder_for(point.type, point.byte_order, point.word_order)
                slots.append((key, offset, offset + point.width, None, decoder))
        object.__setattr__(self, "layout", tuple(slots))
        object.__setattr__(self, "keys", tuple(key for key, _ in self.members))
        decode_all = None
        if self.table not in BIT_TABLES and all(point.bit is None for _, point in self.members):
            fields = [
                (point.address - self.start, point.type, point.byte_order, point.word_order)
                for _, point in self.members
            ]
            decode_all = whole_request_decoder(self.count, fields)
        object.__setattr__(self, "decode_all", decode_all)

    @property
    def end(self) -> int:
        """Last address read (inclusive)."""
        return self.start + self.count - 1


def _end(point: ModbusPoint) -> int:
    return point.address + point.width - 1


def plan_reads(points: Sequence[Member], *, max_registers: int, max_bits: int, max_gap: int) -> list[ReadRequest]:
    """Group ``points`` into read requests, ordered by table then address.

    Raises ValueError for duplicate keys or a point wider than the request limit.
    """
    if max_registers < 1 or max_bits < 1 or max_gap < 0:
        raise ValueError("max_registers and max_bits must be >= 1, max_gap >= 0")
    seen: set[str] = set()
    by_table: dict[RegisterTable, list[Member]] = {}
    for key, point in points:
        if key in seen:
            raise ValueError(f"duplicate point key {key!r}")
        seen.add(key)
        by_table.setdefault(point.table, []).append((key, point))

    requests: list[ReadRequest] = []
    for table in _TABLE_ORDER:
        members = by_table.get(table)
        if not members:
            continue
        limit = max_bits if table in BIT_TABLES else max_registers
        members.sort(key=lambda m: (m[1].address, _end(m[1])))
        requests.extend(_coalesce(table, members, limit, max_gap))
    return requests


def _coalesce(table: RegisterTable, members: list[Member], limit: int, max_gap: int) -> list[ReadRequest]:
    """Greedy pass over members sorted by address: extend the open request while it stays in limits."""
    out: list[ReadRequest] = []
    group: list[Member] = []
    start = end = 0
    for key, point in members:
        if point.width > limit:
            raise ValueError(f"point {key!r} needs {point.width} registers; the request limit is {limit}")
        p_end = _end(point)
        if group:
            gap = point.address - end - 1  # negative when the point overlaps the open request
            new_end = max(end, p_end)
            if gap <= max_gap and new_end - start + 1 <= limit:
                group.append((key, point))
                end = new_end
                continue
            out.append(ReadRequest(table, start, end - start + 1, tuple(group)))
        group = [(key, point)]
        start, end = point.address, p_end
    if group:
        out.append(ReadRequest(table, start, end - start + 1, tuple(group)))
    return out


def find_overlaps(points: Sequence[Member]) -> list[tuple[str, str]]:
    """Pairs of keys (in input order) whose addresses overlap in the same table.

    Two single-bit points on one register overlap only when they name the same bit.
    """
    index = {key: i for i, (key, _) in enumerate(points)}
    ordered = sorted(points, key=lambda m: (m[1].table, m[1].address))
    pairs: list[tuple[str, str]] = []
    active: list[Member] = []  # earlier points of the same table that may still reach forward
    for key, point in ordered:
        active = [m for m in active if m[1].table == point.table and _end(m[1]) >= point.address]
        for other_key, other in active:
            if point.bit is not None and other.bit is not None and point.bit != other.bit:
                continue
            first, second = sorted((other_key, key), key=index.__getitem__)
            pairs.append((first, second))
        active.append((key, point))
    pairs.sort(key=lambda p: (index[p[0]], index[p[1]]))
    return pairs

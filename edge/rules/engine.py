"""The rule engine: readings in, condition changes and computed readings out.

Every rule bound to a device owns one or more *conditions* (``<device>.<rule id>``, thresholds
``<device>.<rule id>.<level>``).  A rule decides, for each reading, whether its condition holds
(true), does not hold (false) or cannot be judged (unknown: bad quality, no value).  The condition
then goes through the same small state machine for every kind:

- true while inactive starts the on-delay (``for_s``); when it expires the condition becomes
  active, stamped with the time the delay expired;
- false while active starts the off-delay (``off_delay_s``) the same way;
- going back before the delay expires cancels it; *unknown* cancels a running delay and keeps the
  current state (a bad value neither raises nor clears anything).

All time comes from the ``now_ms`` arguments (epoch milliseconds that must not go backwards);
the engine never reads a clock.  Rules are indexed by (device, point), so ``observe`` only touches
the rules, expressions and computed points a reading feeds.  Not thread-safe: call it from the
event loop.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge.rules.config import (
    EVENT_PRIORITY,
    CommLossRule,
    ComputedPoint,
    Level,
    LevelSpec,
    RateOfChangeRule,
    RuleKind,
    RulePack,
    Scope,
    StaleRule,
    StateRule,
    StationRules,
    StuckRule,
    ThresholdRule,
    Where,
    check_computed,
    check_rule,
    computed_type,
    duplicate_ids,
    enum_codes,
    load_packs,
    with_override,
)
from edge.rules.expr import Expression, Ref, parse_expression
from edge.rules.types import ConditionChange, Message, Priority
from gascore.records import Quality, QualityStatus, Reading, Value
from gascore.thingmodel import ModelLibrary, Property, ThingModel
from gascore.yamldoc import ConfigError, Loc, Problem, YamlDocument

_RANK: dict[Quality, int] = {
    q: (0 if q is Quality.GOOD else 1 if q.status is QualityStatus.UNCERTAIN else 2) for q in Quality
}
_GOOD = Quality.GOOD
_OUT_OF_RANGE = Quality.BAD_OUT_OF_RANGE
_LEVEL_TEXT: dict[str, tuple[str, str]] = {
    "hihi": ("超高高限", "high-high"),
    "hi": ("超高限", "high"),
    "lo": ("低于低限", "low"),
    "lolo": ("低于低低限", "low-low"),
}
_LEVEL_PRIORITY: dict[str, Priority] = {"hihi": "high", "lolo": "high", "hi": "medium", "lo": "medium"}


@dataclass(frozen=True, slots=True)
class RuleOutput:
    changes: list[ConditionChange]
    computed: list[Reading]


# ---- conditions -----------------------------------------------------------------------------


class _Cond:
    __slots__ = (
        "active",
        "cid",
        "deadline",
        "device",
        "gen",
        "inputs",
        "message",
        "off_ms",
        "on_ms",
        "owner",
        "priority",
        "rule",
        "source",
        "value",
    )

    def __init__(
        self,
        cid: str,
        device: str,
        rule: str,
        priority: Priority,
        message: Message,
        source: str,
        on_ms: int,
        off_ms: int,
    ) -> None:
        self.cid, self.device, self.rule = cid, device, rule
        self.priority, self.message, self.source = priority, message, source
        self.on_ms, self.off_ms = on_ms, off_ms
        self.active = False
        self.deadline: int | None = None
        self.gen = 0
        self.value: Value = None
        self.inputs: dict[str, Value] | None = None
        self.owner: _Level | _Expr | None = None  # whose hysteresis state follows a restored condition


Out = list[ConditionChange]


# ---- rules bound to a device ------------------------------------------------------------------


def _numeric(value: Value) -> bool:
    cls = value.__class__
    return cls is float or cls is int


class _Level:
    __slots__ = ("cond", "high", "limit", "raw")

    def __init__(self, cond: _Cond, limit: float, high: bool) -> None:
        self.cond, self.limit, self.high = cond, limit, high
        self.raw = False
        cond.owner = self


class _Threshold:
    __slots__ = ("deadband", "levels")

    def __init__(self, levels: list[_Level], deadband: float) -> None:
        self.levels, self.deadband = levels, deadband

    def on_reading(self, eng: RuleEngine, r: Reading, now: int, out: Out) -> None:
        v = r.value
        if not _numeric(v):
            for lvl in self.levels:
                eng._set(lvl.cond, None, now, v, None, out)
            return
        x: float = v  # type: ignore[assignment]
        bad = _RANK[r.quality] == 2
        db = self.deadband
        for lvl in self.levels:
            raw: bool | None
            if bad:
                # A bad value is neither high nor normal.  One exception, fail-safe: a value the
                # processing layer flagged as outside the sensor range *beyond* this level (a
                # saturated detector, a shorted 4-20 mA loop) raises it; it never clears it.
                beyond = x >= lvl.limit if lvl.high else x <= lvl.limit
                raw = True if r.quality is _OUT_OF_RANGE and beyond else None
            elif lvl.high:
                raw = x >= (lvl.limit - db if lvl.raw else lvl.limit)
            else:
                raw = x <= (lvl.limit + db if lvl.raw else lvl.limit)
            if raw is not None:
                lvl.raw = raw
            eng._set(lvl.cond, raw, now, v, None, out)


class _Rate:
    __slots__ = ("cond", "direction", "limit", "samples", "window_ms")

    def __init__(self, cond: _Cond, limit: float, window_ms: int, direction: str) -> None:
        self.cond, self.limit, self.window_ms, self.direction = cond, limit, window_ms, direction
        self.samples: deque[tuple[int, float]] = deque()

    def on_reading(self, eng: RuleEngine, r: Reading, now: int, out: Out) -> None:
        v = r.value
        if not _numeric(v) or _RANK[r.quality] == 2:
            eng._set(self.cond, None, now, v, None, out)
            return
        x: float = v  # type: ignore[assignment]
        ts, samples = r.ts_ms, self.samples
        if samples and ts <= samples[-1][0]:
            return  # repeated or out of order: no rate from it
        start = ts - self.window_ms
        while len(samples) > 1 and samples[0][0] < start:
            samples.popleft()
        samples.append((ts, x))
        if len(samples) < 2:
            return
        t0, x0 = samples[0]
        rate = (x - x0) * 1000.0 / (ts - t0)
        if self.direction == "rise":
            raw = rate > self.limit
        elif self.direction == "fall":
            raw = -rate > self.limit
        else:
            raw = abs(rate) > self.limit
        eng._set(self.cond, raw, now, rate, None, out)


class _Stuck:
    __slots__ = ("anchor", "cond", "run", "samples", "tolerance")

    def __init__(self, cond: _Cond, samples: int, tolerance: float) -> None:
        self.cond, self.samples, self.tolerance = cond, samples, tolerance
        self.anchor: float | None = None
        self.run = 0

    def on_reading(self, eng: RuleEngine, r: Reading, now: int, out: Out) -> None:
        v = r.value
        if r.quality is not _GOOD or not _numeric(v):
            return  # only good samples count, and others do not break a run
        x: float = v  # type: ignore[assignment]
        if self.anchor is not None and abs(x - self.anchor) <= self.tolerance:
            self.run += 1
        else:
            self.anchor, self.run = x, 1
        eng._set(self.cond, self.run >= self.samples, now, v, None, out)


class _Stale:
    __slots__ = ("after_ms", "cond", "last_good")

    def __init__(self, cond: _Cond, after_ms: int) -> None:
        self.cond, self.after_ms = cond, after_ms
        self.last_good: int | None = None

    def on_reading(self, eng: RuleEngine, r: Reading, now: int, out: Out) -> None:
        if r.quality is _GOOD and r.value is not None:
            self.last_good = now
            eng._set(self.cond, False, now, r.value, None, out)

    def check(self, eng: RuleEngine, now: int, out: Out) -> None:
        if self.last_good is None:
            self.last_good = now  # the clock starts with the engine's first call
        elif now - self.last_good >= self.after_ms:
            eng._set(self.cond, True, now, (now - self.last_good) / 1000.0, None, out)


class _State:
    __slots__ = ("cond", "equals")

    def __init__(self, cond: _Cond, equals: Any) -> None:
        self.cond, self.equals = cond, equals

    def on_reading(self, eng: RuleEngine, r: Reading, now: int, out: Out) -> None:
        v = r.value
        if v is None or _RANK[r.quality] == 2:
            eng._set(self.cond, None, now, v, None, out)
        else:
            eng._set(
                self.cond, v == self.equals and isinstance(v, bool) == isinstance(self.equals, bool), now, v, None, out
            )


class _Comm:
    __slots__ = ("cond",)

    def __init__(self, cond: _Cond) -> None:
        self.cond = cond


Resolve = Callable[[str, str], Reading | None]


def _input_name(ref: Ref) -> str:
    device, prop = ref
    return f"{device}.{prop}" if device else prop


class _Expr:
    __slots__ = ("clear", "cond", "dirty", "expr", "raw", "resolve")

    def __init__(self, cond: _Cond, expr: Expression, clear: Expression | None, resolve: Resolve) -> None:
        self.cond, self.expr, self.clear, self.resolve = cond, expr, clear, resolve
        self.raw = False
        self.dirty = False
        cond.owner = self

    def evaluate(self, eng: RuleEngine, now: int, out: Out) -> None:
        raw: bool | None
        if self.raw and self.clear is not None:
            res = self.clear.evaluate(self.resolve)
            raw = None if res.value is None else not res.value
        else:
            res = self.expr.evaluate(self.resolve)
            raw = None if res.value is None else bool(res.value)
        if raw is not None:
            self.raw = raw
        inputs = {_input_name(k): v for k, v in res.inputs.items()} if res.inputs else {}
        eng._set(self.cond, raw, now, None, inputs, out)


class _ComputedExpr:
    __slots__ = ("device", "dirty", "expr", "point", "rank", "resolve")

    def __init__(self, device: str, point: str, expr: Expression, resolve: Resolve) -> None:
        self.device, self.point, self.expr, self.resolve = device, point, expr, resolve
        self.rank = 0
        self.dirty = False

    def compute(self, now: int) -> Reading | None:
        res = self.expr.evaluate(self.resolve)
        if res.quality is None:
            return None  # an input has no value at all: nothing to report
        return Reading(self.device, self.point, res.ts_ms or now, res.value, res.quality)


class _Bucket:
    __slots__ = ("bad", "count", "hi", "last", "last_ts", "lo", "quality", "rank", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.lo = self.hi = 0.0
        self.last: Value = None
        self.last_ts = -(2**63)
        self.rank = 0
        self.quality = _GOOD
        self.bad: Quality | None = None

    def add(self, r: Reading, numeric_only: bool) -> None:
        q = r.quality
        rank = _RANK[q]
        v = r.value
        if rank == 2:
            self.bad = self.bad or q
            return
        if v is None or (numeric_only and not _numeric(v)):
            return
        if _numeric(v):
            x: float = v  # type: ignore[assignment]
            if self.count == 0 or x < self.lo:
                self.lo = x
            if self.count == 0 or x > self.hi:
                self.hi = x
            self.total += x
        self.count += 1
        if r.ts_ms >= self.last_ts:
            self.last_ts, self.last = r.ts_ms, v
        if rank > self.rank:
            self.rank, self.quality = rank, q


class _Aggregate:
    __slots__ = ("buckets", "closed_until", "device", "fn", "numeric_only", "point", "window_ms")

    def __init__(self, device: str, point: str, fn: str, window_ms: int) -> None:
        self.device, self.point, self.fn, self.window_ms = device, point, fn, window_ms
        self.numeric_only = fn != "last"
        self.buckets: dict[int, _Bucket] = {}
        self.closed_until = -(2**63)

    def add(self, r: Reading, now: int) -> None:
        w = self.window_ms
        start = r.ts_ms - r.ts_ms % w
        if start + w <= self.closed_until or start > now + w:
            return  # its window is already reported, or the timestamp is far in the future
        bucket = self.buckets.get(start)
        if bucket is None:
            bucket = self.buckets[start] = _Bucket()
        bucket.add(r, self.numeric_only)

    def close(self, now: int) -> list[Reading]:
        w = self.window_ms
        out: list[Reading] = []
        if self.buckets:
            for start in sorted(s for s in self.buckets if s + w <= now):
                b = self.buckets.pop(start)
                if b.count:
                    value: Value
                    if self.fn == "avg":
                        value = b.total / b.count
                    elif self.fn == "min":
                        value = b.lo
                    elif self.fn == "max":
                        value = b.hi
                    else:
                        value = b.last
                    out.append(Reading(self.device, self.point, start + w, value, b.quality))
                elif b.bad is not None:
                    out.append(Reading(self.device, self.point, start + w, None, b.bad))
        self.closed_until = max(self.closed_until, now - now % w)
        return out


class _Entry:
    """Everything one (device, point) feeds."""

    __slots__ = ("aggregates", "computed", "exprs", "handlers")

    def __init__(self) -> None:
        self.handlers: list[_Threshold | _Rate | _Stuck | _Stale | _State] = []
        self.computed: list[_ComputedExpr] = []
        self.exprs: list[_Expr] = []
        self.aggregates: list[_Aggregate] = []


# ---- build-time records --------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    """A rule or computed point bound to a device, with where it was written."""

    device: str
    spec: RuleKind | ComputedPoint
    where: Where
    origin: str  # ConditionChange.source
    in_station: bool  # written or overridden in the station file (may name other devices)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _name_of(model: ThingModel, computed: Mapping[str, ComputedPoint], prop: str) -> tuple[str, str]:
    p = model.properties.get(prop)
    if p is not None:
        return p.name.zh, p.name.en
    c = computed[prop]
    return c.name.zh, c.name.en


class RuleEngine:
    """Rules, expressions and computed points of one station.  Build with :meth:`build`."""

    def __init__(self) -> None:
        self._conds: list[_Cond] = []
        self._index: dict[str, dict[str, _Entry]] = {}
        self._latest: dict[str, dict[str, Reading]] = {}
        self._stale: list[_Stale] = []
        self._comm: dict[str, list[_Comm]] = {}
        self._aggregates: list[_Aggregate] = []
        self._computed_props: dict[str, dict[str, Property]] = {}
        self._timers: list[tuple[int, int, int, _Cond]] = []
        self._seq = itertools.count()
        self._dirty_computed: list[tuple[int, int, _ComputedExpr]] = []
        self._dirty_exprs: list[_Expr] = []
        self._started = False

    # -- public API

    @classmethod
    def build(
        cls,
        devices: Sequence[tuple[str, ThingModel]],
        packs: Sequence[RulePack],
        station: StationRules | None,
        *,
        source_file: str = "",
        station_doc: YamlDocument | None = None,
        station_loc: Loc = ("rules",),
    ) -> RuleEngine:
        """Bind ``packs`` (to every device whose model is, or extends, the pack's model) and the
        station's own rules, apply the station's overrides and check everything.  Pass the
        station's ``YamlDocument`` to get line numbers in station problems.  Raises ConfigError."""
        return _Builder(
            devices, packs, station, station_doc.path if station_doc else source_file, station_doc, station_loc
        ).build(cls())

    def observe(self, readings: Sequence[Reading], now_ms: int) -> RuleOutput:
        """Feed readings (after each poll cycle or push delivery).  Readings of points no rule
        uses are skipped at the cost of two dictionary look-ups."""
        changes: Out = []
        computed: list[Reading] = []
        self._advance(now_ms, changes)
        index = self._index
        for r in readings:
            points = index.get(r.device)
            if points is not None:
                entry = points.get(r.point)
                if entry is not None:
                    self._feed(entry, r, now_ms, changes)
        self._settle(now_ms, changes, computed)
        return RuleOutput(changes, computed)

    def device_link(self, device: str, online: bool, now_ms: int) -> RuleOutput:
        """The device went on- or offline (drives ``comm_loss`` rules)."""
        changes: Out = []
        self._advance(now_ms, changes)
        for rule in self._comm.get(device, ()):
            self._set(rule.cond, not online, now_ms, online, None, changes)
        return RuleOutput(changes, [])

    def tick(self, now_ms: int) -> RuleOutput:
        """Expire on/off delays, raise stale conditions and close aggregate windows (call ~1/s)."""
        changes: Out = []
        computed: list[Reading] = []
        self._advance(now_ms, changes)
        for stale in self._stale:
            stale.check(self, now_ms, changes)
        for agg in self._aggregates:
            if agg.buckets:
                for reading in agg.close(now_ms):
                    computed.append(reading)
                    self._feed_reading(reading, now_ms, changes)
            else:
                agg.closed_until = max(agg.closed_until, now_ms - now_ms % agg.window_ms)
        self._settle(now_ms, changes, computed)
        return RuleOutput(changes, computed)

    def restore_active(self, condition_ids: Iterable[str]) -> list[str]:
        """Mark conditions active without reporting a change — after a restart, the conditions
        whose alarms the alarm store still holds active, so the first value that no longer
        satisfies one clears it (a fresh engine starts with every condition inactive and would
        never report the clear).  Returns the ids this engine does not have (rules removed)."""
        by_id = {c.cid: c for c in self._conds}
        unknown = []
        for cid in condition_ids:
            c = by_id.get(cid)
            if c is None:
                unknown.append(cid)
                continue
            c.active, c.deadline = True, None
            if c.owner is not None:
                c.owner.raw = True
        return unknown

    @property
    def comm_rules(self) -> frozenset[str]:
        """Rule ids of communication-loss rules (their alarms are not suppressed when a device is offline)."""
        return frozenset(c.cond.rule for comms in self._comm.values() for c in comms)

    def conditions(self) -> list[tuple[str, bool]]:
        """Every condition and whether it is active (diagnostics)."""
        return [(c.cid, c.active) for c in self._conds]

    @property
    def computed_points(self) -> dict[str, list[str]]:
        """Device → ids of its computed points (store and sync them like measured points)."""
        return {device: list(points) for device, points in self._computed_props.items()}

    @property
    def computed_properties(self) -> dict[str, dict[str, Property]]:
        """Device → computed point id → a thing-model property describing it (name, unit, type)."""
        return {device: dict(points) for device, points in self._computed_props.items()}

    # -- machinery

    def _set(
        self, c: _Cond, raw: bool | None, now: int, value: Value, inputs: dict[str, Value] | None, out: Out
    ) -> None:
        if raw is None or raw == c.active:
            c.deadline = None  # cancels a running delay (the heap entry goes stale)
            return
        c.value, c.inputs = value, inputs
        if c.deadline is not None:
            return  # the delay is already running
        delay = c.on_ms if raw else c.off_ms
        if delay <= 0:
            self._flip(c, now, out)
        else:
            c.deadline = now + delay
            c.gen += 1
            heapq.heappush(self._timers, (c.deadline, next(self._seq), c.gen, c))

    @staticmethod
    def _flip(c: _Cond, ts: int, out: Out) -> None:
        c.active = not c.active
        c.deadline = None
        out.append(
            ConditionChange(
                c.cid, c.device, c.rule, c.active, ts, c.priority, c.message, c.value, dict(c.inputs or {}), c.source
            )
        )

    def _advance(self, now: int, out: Out) -> None:
        if not self._started:
            self._started = True
            for stale in self._stale:
                stale.last_good = now
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, gen, c = heapq.heappop(timers)
            if c.deadline == deadline and c.gen == gen:
                self._flip(c, deadline, out)

    def _feed_reading(self, r: Reading, now: int, out: Out) -> None:
        points = self._index.get(r.device)
        entry = points.get(r.point) if points is not None else None
        if entry is not None:
            self._feed(entry, r, now, out)

    def _feed(self, entry: _Entry, r: Reading, now: int, out: Out) -> None:
        if entry.computed or entry.exprs:
            latest = self._latest[r.device]
            prev = latest.get(r.point)
            if prev is None or r.ts_ms >= prev.ts_ms:
                latest[r.point] = r
            for c in entry.computed:
                if not c.dirty:
                    c.dirty = True
                    heapq.heappush(self._dirty_computed, (c.rank, next(self._seq), c))
            for e in entry.exprs:
                if not e.dirty:
                    e.dirty = True
                    self._dirty_exprs.append(e)
        for h in entry.handlers:
            h.on_reading(self, r, now, out)
        for a in entry.aggregates:
            a.add(r, now)

    def _settle(self, now: int, out: Out, computed: list[Reading]) -> None:
        """Recompute dirty computed points (inputs before dependents), then dirty expressions."""
        heap = self._dirty_computed
        while heap:
            _, _, c = heapq.heappop(heap)
            c.dirty = False
            reading = c.compute(now)
            if reading is not None:
                computed.append(reading)
                self._feed_reading(reading, now, out)
        if self._dirty_exprs:
            exprs, self._dirty_exprs = self._dirty_exprs, []
            for e in exprs:
                e.dirty = False
                e.evaluate(self, now, out)

    def _entry(self, device: str, point: str) -> _Entry:
        points = self._index.setdefault(device, {})
        entry = points.get(point)
        if entry is None:
            entry = points[point] = _Entry()
        return entry

    def _resolver(self, device: str) -> Resolve:
        latest = self._latest

        def resolve(dev: str, prop: str) -> Reading | None:
            points = latest.get(dev or device)
            return points.get(prop) if points is not None else None

        return resolve


# ---- building ---------------------------------------------------------------------------------


class _Builder:
    def __init__(
        self,
        devices: Sequence[tuple[str, ThingModel]],
        packs: Sequence[RulePack],
        station: StationRules | None,
        station_file: str,
        station_doc: YamlDocument | None,
        station_loc: Loc,
    ) -> None:
        self.devices = devices
        self.packs = packs
        self.station = station
        self.file = station_file or "<station>"
        self.doc = station_doc
        self.loc = station_loc
        self.problems: list[Problem] = []
        self.models: dict[str, ThingModel] = {}
        self.items: dict[str, list[_Item]] = {}

    def where(self, *sub: str | int) -> Where:
        return Where(self.file, self.doc, (*self.loc, *sub))

    def build(self, eng: RuleEngine) -> RuleEngine:
        for device, model in self.devices:
            if device in self.models:
                self.problems.append(Problem(self.file, None, "devices", f"device {device!r} given twice"))
            self.models[device] = model
            self.items[device] = []
        self.collect()
        self.check_duplicates()
        if self.station is not None:
            self.apply_overrides(self.station)
        scopes = self.scopes()
        self.check(scopes)
        order = self.computed_order()
        if self.problems:
            raise ConfigError(list(dict.fromkeys(self.problems)))
        self.instantiate(eng, scopes, order)
        return eng

    def collect(self) -> None:
        seen: dict[str, str] = {}
        for pack in self.packs:
            if pack.pack in seen:
                self.problems.append(
                    Where(pack.file, pack._doc, ()).problem(("pack",), f"pack {pack.pack!r} given twice")
                )
                continue
            seen[pack.pack] = pack.file
            targets = [d for d, m in self.models.items() if pack.model in m.lineage]
            for device in targets:
                for i, rule in enumerate(pack.rules):
                    origin = f"{pack.pack}: {rule.source or pack.source}"
                    self.items[device].append(
                        _Item(device, rule, Where(pack.file, pack._doc, ("rules", i)), origin, False)
                    )
                for i, point in enumerate(pack.computed):
                    origin = f"{pack.pack}: {point.source or pack.source}"
                    where = Where(pack.file, pack._doc, ("computed", i))
                    self.items[device].append(_Item(device, point, where, origin, False))
        station = self.station
        if station is None:
            return
        entries: list[tuple[str, int, str, RuleKind | ComputedPoint]] = [
            *(("rules", i, r.device, r) for i, r in enumerate(station.rules)),
            *(("computed", i, c.device, c) for i, c in enumerate(station.computed)),
        ]
        for section, i, device, spec in entries:
            where = self.where(section, i)
            if device not in self.items:
                self.problems.append(where.problem(("device",), f"no device {device!r} in this station"))
                continue
            origin = f"station: {spec.source}" if spec.source else f"station {self.file}"
            self.items[device].append(_Item(device, spec, where, origin, True))

    def check_duplicates(self) -> None:
        for items in self.items.values():
            self.problems += duplicate_ids([(it.spec.id, it.where) for it in items])

    def apply_overrides(self, station: StationRules) -> None:
        for device, patches in station.overrides.items():
            items = self.items.get(device)
            if items is None:
                self.problems.append(
                    self.where("overrides", device).problem((), f"no device {device!r} in this station")
                )
                continue
            by_id = {it.spec.id: i for i, it in enumerate(items)}
            for ident, patch in patches.items():
                where = self.where("overrides", device, ident)
                index = by_id.get(ident)
                if index is None:
                    known = ", ".join(sorted(by_id)) or "none"
                    self.problems.append(
                        where.problem((), f"device {device!r} has no rule or computed point {ident!r} (has: {known})")
                    )
                    continue
                item = items[index]
                try:
                    spec = with_override(item.spec, patch)
                except ValidationError as err:
                    self.problems += _problems(where, err)
                    continue
                except ValueError as err:
                    self.problems.append(where.problem((), str(err)))
                    continue
                items[index] = _Item(device, spec, where, f"{item.origin} (overridden by {self.file})", True)

    def scopes(self) -> dict[str, Scope]:
        props: dict[str, dict[str, str]] = {}
        for device, model in self.models.items():
            types: dict[str, str] = {k: p.type for k, p in model.properties.items()}
            for it in self.items[device]:
                if isinstance(it.spec, ComputedPoint) and it.spec.enabled and it.spec.id not in types:
                    types[it.spec.id] = computed_type(it.spec, types)
            props[device] = types
        scopes = {}
        for device, model in self.models.items():
            ranges = {k: p.range for k, p in model.properties.items() if p.range is not None}
            scopes[device] = Scope(model.id, props[device], model.events, ranges, props, enum_codes(model.properties))
        return scopes

    def check(self, scopes: dict[str, Scope]) -> None:
        for device, items in self.items.items():
            scope = scopes[device]
            pack_scope = Scope(scope.model, scope.props, scope.events, scope.ranges, None, scope.enums)
            model_props = self.models[device].properties
            for it in items:
                if not it.spec.enabled:
                    continue
                use = scope if it.in_station else pack_scope
                if isinstance(it.spec, ComputedPoint):
                    self.problems += check_computed(it.spec, use, it.where, model_props)
                else:
                    self.problems += check_rule(it.spec, use, it.where)

    def computed_order(self) -> dict[tuple[str, str], int]:
        """Rank every computed point so inputs come before the points computed from them."""
        nodes: dict[tuple[str, str], list[tuple[str, str]]] = {}
        wheres: dict[tuple[str, str], Where] = {}
        for device, items in self.items.items():
            for it in items:
                if isinstance(it.spec, ComputedPoint) and it.spec.enabled:
                    if it.spec.expr is not None:
                        refs = [(d or device, p) for d, p in parse_expression(it.spec.expr).refs]
                    else:
                        assert it.spec.aggregate is not None
                        refs = [(device, it.spec.aggregate.property)]
                    nodes[(device, it.spec.id)] = refs
                    wheres[(device, it.spec.id)] = it.where
        order: dict[tuple[str, str], int] = {}
        state: dict[tuple[str, str], int] = {}  # 1 visiting, 2 done

        def visit(node: tuple[str, str], path: list[tuple[str, str]]) -> None:
            if state.get(node) == 2:
                return
            if state.get(node) == 1:
                cycle = " → ".join(f"{d}.{p}" for d, p in [*path[path.index(node) :], node])
                self.problems.append(wheres[node].problem(("id",), f"computed points form a cycle: {cycle}"))
                return
            state[node] = 1
            for dep in nodes[node]:
                if dep in nodes:
                    visit(dep, [*path, node])
            state[node] = 2
            order[node] = len(order)

        for node in nodes:
            visit(node, [])
        return order

    def instantiate(self, eng: RuleEngine, scopes: dict[str, Scope], order: dict[tuple[str, str], int]) -> None:
        for device, items in self.items.items():
            model = self.models[device]
            computed = {it.spec.id: it.spec for it in items if isinstance(it.spec, ComputedPoint) and it.spec.enabled}
            for point in computed.values():
                kind = scopes[device].props[point.id]
                source = model.properties.get(point.aggregate.property) if point.aggregate else None
                eng._computed_props.setdefault(device, {})[point.id] = Property.model_validate(
                    {
                        "id": point.id,
                        "name": {"zh": point.name.zh, "en": point.name.en},
                        "type": kind,
                        "unit": point.unit,
                        "values": source.values if source is not None and kind == "enum" else None,
                    }
                )
            for it in items:
                if not it.spec.enabled:
                    continue
                if isinstance(it.spec, ComputedPoint):
                    self.add_computed(eng, device, it.spec, order[(device, it.spec.id)])
                else:
                    self.add_rule(eng, device, model, computed, it)

    def add_computed(self, eng: RuleEngine, device: str, point: ComputedPoint, rank: int) -> None:
        if point.aggregate is not None:
            agg = _Aggregate(device, point.id, point.aggregate.fn, _ms(point.aggregate.window_s))
            eng._entry(device, point.aggregate.property).aggregates.append(agg)
            eng._aggregates.append(agg)
            return
        assert point.expr is not None
        expr = parse_expression(point.expr)
        node = _ComputedExpr(device, point.id, expr, eng._resolver(device))
        node.rank = rank
        for d, p in expr.refs:
            eng._latest.setdefault(d or device, {})
            eng._entry(d or device, p).computed.append(node)

    def add_rule(
        self, eng: RuleEngine, device: str, model: ThingModel, computed: Mapping[str, ComputedPoint], it: _Item
    ) -> None:
        rule = it.spec
        assert not isinstance(rule, ComputedPoint)
        on_ms, off_ms = _ms(rule.for_s), _ms(rule.off_delay_s)

        def cond(suffix: str, priority: Priority, message: Message) -> _Cond:
            c = _Cond(f"{device}.{rule.id}{suffix}", device, rule.id, priority, message, it.origin, on_ms, off_ms)
            eng._conds.append(c)
            return c

        if isinstance(rule, ThresholdRule):
            subject = self.subject(model, computed, rule)
            levels = []
            for name, spec in rule.levels.items():
                priority, message = self.level_text(model, rule, name, spec, subject)
                levels.append(_Level(cond(f".{name}", priority, message), spec.value, name in ("hi", "hihi")))
            eng._entry(device, rule.property).handlers.append(_Threshold(levels, rule.deadband))
            return
        priority, message = self.rule_text(model, computed, rule)
        c = cond("", priority, message)
        if isinstance(rule, RateOfChangeRule):
            eng._entry(device, rule.property).handlers.append(
                _Rate(c, rule.max_per_s, _ms(rule.window_s), rule.direction)
            )
        elif isinstance(rule, StuckRule):
            eng._entry(device, rule.property).handlers.append(_Stuck(c, rule.samples, rule.tolerance))
        elif isinstance(rule, StaleRule):
            stale = _Stale(c, _ms(rule.after_s))
            eng._stale.append(stale)
            points = [rule.property] if rule.property else [*model.properties, *computed]
            for p in points:
                eng._entry(device, p).handlers.append(stale)
        elif isinstance(rule, StateRule):
            eng._entry(device, rule.property).handlers.append(_State(c, rule.equals))
        elif isinstance(rule, CommLossRule):
            eng._comm.setdefault(device, []).append(_Comm(c))
        else:
            expr = parse_expression(rule.expr)
            clear = parse_expression(rule.clear_expr) if rule.clear_expr else None
            node = _Expr(c, expr, clear, eng._resolver(device))
            for d, p in expr.refs | (clear.refs if clear else frozenset()):
                eng._latest.setdefault(d or device, {})
                eng._entry(d or device, p).exprs.append(node)

    # -- messages and priorities

    @staticmethod
    def subject(model: ThingModel, computed: Mapping[str, ComputedPoint], rule: RuleKind) -> tuple[str, str]:
        if rule.message is not None:
            return rule.message.zh, rule.message.en
        if rule.event is not None:
            name = model.events[rule.event].name
            return name.zh, name.en
        prop = getattr(rule, "property", None)
        if prop is None:
            return model.name.zh, model.name.en
        return _name_of(model, computed, prop)

    @staticmethod
    def level_text(
        model: ThingModel, rule: ThresholdRule, level: Level, spec: LevelSpec, subject: tuple[str, str]
    ) -> tuple[Priority, Message]:
        event = model.events[spec.event] if spec.event else None
        if spec.message is not None:
            message = Message(spec.message.zh, spec.message.en)
        elif event is not None:
            message = Message(event.name.zh, event.name.en)
        else:
            zh, en = _LEVEL_TEXT[level]
            message = Message(f"{subject[0]}{zh}", f"{subject[1]} {en}")
        priority: Priority
        if spec.priority is not None:
            priority = spec.priority
        elif event is not None:
            priority = EVENT_PRIORITY[event.level]
        elif rule.priority is not None:
            priority = rule.priority
        else:
            priority = _LEVEL_PRIORITY[level]
        return priority, message

    def rule_text(
        self, model: ThingModel, computed: Mapping[str, ComputedPoint], rule: RuleKind
    ) -> tuple[Priority, Message]:
        event = model.events[rule.event] if rule.event else None
        priority: Priority = rule.priority or (EVENT_PRIORITY[event.level] if event else "medium")
        if rule.message is not None:
            return priority, Message(rule.message.zh, rule.message.en)
        if event is not None:
            return priority, Message(event.name.zh, event.name.en)
        prop = getattr(rule, "property", None)
        zh, en = _name_of(model, computed, prop) if prop else ("", "")
        if isinstance(rule, RateOfChangeRule):
            return priority, Message(f"{zh}变化过快", f"{en} changing too fast")
        if isinstance(rule, StuckRule):
            return priority, Message(f"{zh}数值长时间不变(疑似卡死)", f"{en} stuck")
        if isinstance(rule, StaleRule):
            if prop is None:
                return priority, Message("设备无有效数据", "No good data from the device")
            return priority, Message(f"{zh}无有效数据", f"No good {en} data")
        if isinstance(rule, CommLossRule):
            return priority, Message("通讯中断", "Communication lost")
        if isinstance(rule, StateRule):
            return priority, Message(*_state_text(model, rule, zh, en))
        return priority, Message(f"规则 {rule.id}", f"Rule {rule.id}")


def _state_text(model: ThingModel, rule: StateRule, zh: str, en: str) -> tuple[str, str]:
    equals = rule.equals
    if equals is True:
        return zh, en
    if equals is False:
        return f"{zh}：否", f"{en}: no"
    prop = model.properties.get(rule.property)
    label = prop.values.get(equals) if prop is not None and prop.values and isinstance(equals, int) else None
    text = label if label is not None else str(equals)
    return f"{zh}：{text}", f"{en}: {text}"


def _problems(where: Where, err: ValidationError) -> list[Problem]:
    out = []
    for e in err.errors():
        message = "unknown key" if e["type"] == "extra_forbidden" else str(e["msg"]).removeprefix("Value error, ")
        out.append(where.problem(tuple(e["loc"]), message))
    return out


def station_engine(
    rules: StationRules | None,
    devices: Sequence[tuple[str, ThingModel]],
    library: ModelLibrary,
    *,
    base_dir: Path,
    station_doc: YamlDocument | None = None,
    station_loc: Loc = ("rules",),
) -> RuleEngine:
    """Load the packs a station's ``rules:`` section lists and build its engine (``rules`` None: an
    engine without rules).  Raises ConfigError naming the station file's lines."""
    if rules is None:
        return RuleEngine.build(devices, [], None, station_doc=station_doc, station_loc=station_loc)
    packs = load_packs(
        rules.packs,
        base_dir=base_dir,
        pack_dirs=rules.pack_dirs,
        library=library,
        station_doc=station_doc,
        loc=(*station_loc, "packs"),
    )
    return RuleEngine.build(devices, packs, rules, station_doc=station_doc, station_loc=station_loc)

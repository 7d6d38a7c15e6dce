"""Rule packs (configs/rules/*.yaml) and the station's ``rules:`` section.

Pydantic at the boundary (unknown keys are errors), then checks against the thing models that
name file, line and field: unknown property or event, a property of the wrong type, a bad
expression (with its column), level ordering, duplicate ids.  See edge/rules/README.md for the
format.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic import model_validator as _model_validator

from edge.rules.expr import Expression, parse_expression
from edge.rules.types import Priority
from gascore.records import EventLevel
from gascore.thingmodel import Event, ModelLibrary, Property
from gascore.yamldoc import ConfigError, Loc, Problem, YamlDocument, format_loc, load_yaml

PropertyId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
RuleId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
EventId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
PackId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]  # as edge.config
MAX_DELAY_S = 30 * 86_400
Seconds = Annotated[float, Field(ge=0, le=MAX_DELAY_S, allow_inf_nan=False)]
Number = Annotated[float, Field(allow_inf_nan=False)]

LEVELS = ("lolo", "lo", "hi", "hihi")
Level = Literal["lolo", "lo", "hi", "hihi"]
EVENT_PRIORITY: dict[EventLevel, Priority] = {
    EventLevel.INFO: "low",
    EventLevel.WARNING: "medium",
    EventLevel.MAJOR: "high",
    EventLevel.CRITICAL: "critical",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    """A message in both languages."""

    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


# ---- rules ----------------------------------------------------------------------------------


class LevelSpec(_Strict):
    value: Number
    priority: Priority | None = None
    message: Text | None = None
    event: EventId | None = Field(None, description="model event whose name is the message")


def _number_to_level(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"value": value}
    return value


LevelField = Annotated[LevelSpec | None, BeforeValidator(_number_to_level)]


class Levels(_Strict):
    """Any of hihi/hi/lo/lolo, each a number or ``{value, priority, message, event}``."""

    hihi: LevelField = None
    hi: LevelField = None
    lo: LevelField = None
    lolo: LevelField = None

    @_model_validator(mode="after")
    def _ordered(self) -> Levels:
        present = [(name, spec.value) for name in LEVELS if (spec := getattr(self, name)) is not None]
        if not present:
            raise ValueError("give at least one of hihi, hi, lo, lolo")
        for (low_name, low), (high_name, high) in itertools.pairwise(present):
            if not low < high:
                raise ValueError(
                    f"levels must satisfy lolo < lo < hi < hihi: {high_name} ({high:g}) is not above"
                    f" {low_name} ({low:g})"
                )
        return self

    def items(self) -> list[tuple[Level, LevelSpec]]:
        out: list[tuple[Level, LevelSpec]] = []
        for name in ("hi", "hihi", "lo", "lolo"):  # escalation order in both directions
            spec = getattr(self, name)
            if spec is not None:
                out.append((name, spec))
        return out


class RuleBase(_Strict):
    id: RuleId
    message: Text | None = Field(None, description="default: from `event`, else generated from the property name")
    event: EventId | None = Field(None, description="a model event: its name is the message, its level the priority")
    priority: Priority | None = None
    for_s: Seconds = Field(0.0, description="on-delay: the condition must hold this long before it becomes active")
    off_delay_s: Seconds = Field(0.0, description="off-delay: it must be gone this long before it clears")
    enabled: bool = True
    source: str | None = Field(None, min_length=1, description="citation, if different from the pack's")


class ThresholdRule(RuleBase):
    kind: Literal["threshold"]
    property: PropertyId
    levels: Levels
    deadband: float = Field(0.0, ge=0, allow_inf_nan=False, description="absolute hysteresis for clearing")


class RateOfChangeRule(RuleBase):
    kind: Literal["rate_of_change"]
    property: PropertyId
    max_per_s: float = Field(gt=0, allow_inf_nan=False, description="units per second")
    window_s: float = Field(60.0, gt=0, le=86_400, allow_inf_nan=False)
    direction: Literal["rise", "fall", "both"] = "both"


class StuckRule(RuleBase):
    kind: Literal["stuck"]
    property: PropertyId
    samples: int = Field(ge=2, le=1_000_000, description="this many good samples in a row without change")
    tolerance: float = Field(0.0, ge=0, allow_inf_nan=False, description="changes up to this count as unchanged")


class StaleRule(RuleBase):
    kind: Literal["stale"]
    property: PropertyId | None = Field(None, description="omit: any property of the device")
    after_s: float = Field(gt=0, le=MAX_DELAY_S, allow_inf_nan=False)


class CommLossRule(RuleBase):
    kind: Literal["comm_loss"]


class StateRule(RuleBase):
    kind: Literal["state"]
    property: PropertyId
    equals: Any = Field(description="bool, number or text, matching the property's type")

    @field_validator("equals")
    @classmethod
    def _scalar(cls, value: Any) -> Any:
        if not isinstance(value, bool | int | float | str):
            raise ValueError("equals must be true/false, a number or text")  # noqa: TRY004 - pydantic wants ValueError
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("equals must be a finite number")
        return value


def _check_expression(value: str | None) -> str | None:
    if value is not None:
        parse_expression(value)  # ExpressionError is a ValueError: pydantic reports it with the column
    return value


class ExpressionRule(RuleBase):
    kind: Literal["expression"]
    expr: str = Field(description="active when true")
    clear_expr: str | None = Field(None, description="once active, clears only when this is true (hysteresis)")

    _expr = field_validator("expr", "clear_expr")(_check_expression)


Rule = Annotated[
    ThresholdRule | RateOfChangeRule | StuckRule | StaleRule | CommLossRule | StateRule | ExpressionRule,
    Field(discriminator="kind"),
]
RuleKind = ThresholdRule | RateOfChangeRule | StuckRule | StaleRule | CommLossRule | StateRule | ExpressionRule


# ---- computed points ------------------------------------------------------------------------


class Aggregate(_Strict):
    fn: Literal["min", "max", "avg", "last"]
    property: PropertyId
    window_s: float = Field(gt=0, le=7 * 86_400, allow_inf_nan=False, description="e.g. 60, 900, 3600")

    @field_validator("window_s")
    @classmethod
    def _whole_ms(cls, value: float) -> float:
        if value * 1000 != round(value * 1000):
            raise ValueError("window_s must be a whole number of milliseconds")
        return value


class ComputedPoint(_Strict):
    id: PropertyId
    name: Text
    unit: str | None = None
    expr: str | None = None
    aggregate: Aggregate | None = None
    enabled: bool = True
    source: str | None = Field(None, min_length=1)

    _expr = field_validator("expr")(_check_expression)

    @_model_validator(mode="after")
    def _one_of(self) -> ComputedPoint:
        if (self.expr is None) == (self.aggregate is None):
            raise ValueError("give exactly one of `expr` and `aggregate`")
        return self


# ---- packs and the station section ------------------------------------------------------------


class RulePack(_Strict):
    """A rule pack: templates every device of ``model`` gets (when the station lists the pack)."""

    pack: PackId
    source: str = Field(min_length=1, description="citation: standard name and clause, or 'typical utility practice'")
    model: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="thing model (or a base model it extends)")
    description: str | None = None
    rules: list[Rule] = Field(default_factory=list)
    computed: list[ComputedPoint] = Field(default_factory=list)

    _doc: YamlDocument | None = PrivateAttr(None)

    @property
    def file(self) -> str:
        return self._doc.path if self._doc is not None else f"<pack {self.pack}>"


class _OnDevice(_Strict):
    device: DeviceId


class StationThresholdRule(ThresholdRule, _OnDevice): ...


class StationRateOfChangeRule(RateOfChangeRule, _OnDevice): ...


class StationStuckRule(StuckRule, _OnDevice): ...


class StationStaleRule(StaleRule, _OnDevice): ...


class StationCommLossRule(CommLossRule, _OnDevice): ...


class StationStateRule(StateRule, _OnDevice): ...


class StationExpressionRule(ExpressionRule, _OnDevice): ...


StationRule = Annotated[
    StationThresholdRule
    | StationRateOfChangeRule
    | StationStuckRule
    | StationStaleRule
    | StationCommLossRule
    | StationStateRule
    | StationExpressionRule,
    Field(discriminator="kind"),
]


class StationComputedPoint(ComputedPoint, _OnDevice): ...


class StationRules(_Strict):
    """The station file's ``rules:`` section."""

    packs: list[str] = Field(
        default_factory=list,
        description="pack ids (looked up as <pack_dir>/<id>.yaml) or paths to pack files, relative to the station file",
    )
    pack_dirs: list[Path] = Field(
        default_factory=lambda: [Path("../rules")], description="relative to the station file"
    )
    rules: list[StationRule] = Field(default_factory=list, description="extra rules, each for one `device`")
    computed: list[StationComputedPoint] = Field(default_factory=list)
    overrides: dict[DeviceId, dict[RuleId, dict[str, Any]]] = Field(
        default_factory=dict,
        description="device → rule or computed id → fields to change ({enabled: false} switches it off)",
    )


# ---- validation helpers -----------------------------------------------------------------------


def problems_from(doc: YamlDocument, err: ValidationError, prefix: Loc = ()) -> list[Problem]:
    """``YamlDocument.problems_from`` (kept as a name the rule loaders call)."""
    return doc.problems_from(err, prefix)


@dataclass(frozen=True, slots=True)
class Where:
    """Where a rule or computed point was written, so a problem can name its file and line."""

    file: str
    doc: YamlDocument | None
    loc: Loc

    def problem(self, sub: Loc, message: str) -> Problem:
        loc = (*self.loc, *sub)
        line = self.doc.line_of(loc) if self.doc is not None else None
        return Problem(self.file, line, format_loc(loc), message)


@dataclass(slots=True)
class Scope:
    """What a rule may refer to: the properties (id → type) and events of its device, and, for
    station rules, the other devices' properties (None in packs: templates name no devices)."""

    model: str
    props: dict[str, str]
    events: Mapping[str, Event]
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    devices: Mapping[str, Mapping[str, str]] | None = None
    enums: dict[str, frozenset[int]] = field(default_factory=dict)


NUMERIC = frozenset({"int", "float", "number"})


def model_scope(library: ModelLibrary, model_id: str) -> Scope | None:
    """Properties and events of a model; for an abstract base, those every concrete model shares."""
    model = library.get(model_id)
    if model is not None:
        return _scope_of(model_id, model.properties, model.events)
    heirs = [m for m in library.models.values() if model_id in m.lineage]
    if not heirs:
        return None
    props = {k: v for k, v in heirs[0].properties.items() if all(k in h.properties for h in heirs)}
    events = {k: v for k, v in heirs[0].events.items() if all(k in h.events for h in heirs)}
    return _scope_of(model_id, props, events)


def _scope_of(model_id: str, props: Mapping[str, Property], events: Mapping[str, Event]) -> Scope:
    return Scope(
        model_id,
        {k: p.type for k, p in props.items()},
        events,
        {k: p.range for k, p in props.items() if p.range is not None},
        enums=enum_codes(props),
    )


def enum_codes(props: Mapping[str, Property]) -> dict[str, frozenset[int]]:
    return {k: frozenset(p.values) for k, p in props.items() if p.values}


def computed_type(point: ComputedPoint, props: Mapping[str, str]) -> str:
    """'bool' or 'float' for an expression (from its form), the source type for ``last``."""
    if point.aggregate is not None:
        if point.aggregate.fn == "last":
            return props.get(point.aggregate.property, "float")
        return "float"
    assert point.expr is not None
    expr = parse_expression(point.expr)
    if expr.single_input is not None and expr.single_input[0] == "" and props.get(expr.single_input[1]) == "bool":
        return "bool"  # `expr: door_open` passes the bool through
    return "bool" if expr.kind == "bool" else "float"


def check_rule(rule: RuleKind, scope: Scope, where: Where) -> list[Problem]:
    """Check one rule against the model (and devices) it will run on."""
    problems: list[Problem] = []

    def bad(sub: Loc, message: str) -> None:
        problems.append(where.problem(sub, message))

    def need_property(prop: str | None, numeric: bool) -> None:
        if prop is None:
            return
        kind = scope.props.get(prop)
        if kind is None:
            bad(("property",), f"model {scope.model!r} has no property {prop!r}")
        elif numeric and kind not in NUMERIC:
            bad(("property",), f"{rule.kind} needs a number; {prop!r} is {kind}")

    def need_event(sub: Loc, event: str | None) -> None:
        if event is not None and event not in scope.events:
            known = ", ".join(sorted(scope.events)) or "none"
            bad(sub, f"model {scope.model!r} has no event {event!r} (events: {known})")

    need_event(("event",), rule.event)
    if isinstance(rule, ThresholdRule):
        need_property(rule.property, numeric=True)
        rng = scope.ranges.get(rule.property)
        for name, spec in rule.levels.items():
            need_event(("levels", name, "event"), spec.event)
            if rng is not None and not rng[0] <= spec.value <= rng[1]:
                bad(
                    ("levels", name),
                    f"{name} {spec.value:g} is outside the range of {rule.property!r} [{rng[0]:g}, {rng[1]:g}]"
                    " (check the unit)",
                )
    elif isinstance(rule, RateOfChangeRule | StuckRule):
        need_property(rule.property, numeric=True)
    elif isinstance(rule, StaleRule):
        need_property(rule.property, numeric=False)
    elif isinstance(rule, StateRule):
        need_property(rule.property, numeric=False)
        kind = scope.props.get(rule.property)
        if kind is not None:
            message = _equals_problem(kind, rule.equals)
            codes = scope.enums.get(rule.property)
            if not message and codes is not None and rule.equals not in codes:
                message = f"{rule.equals!r} is not a value of {rule.property!r} ({', '.join(map(str, sorted(codes)))})"
            if message:
                bad(("equals",), message)
    elif isinstance(rule, ExpressionRule):
        if rule.message is None and rule.event is None:
            bad(("message",), "an expression rule needs a `message` (or an `event`)")
        for key, text in (("expr", rule.expr), ("clear_expr", rule.clear_expr)):
            if text is not None:
                problems += check_refs(parse_expression(text), scope, where, (key,))
    return problems


def _equals_problem(kind: str, equals: Any) -> str:
    if kind == "bool" and not isinstance(equals, bool):
        return f"the property is a bool: equals must be true or false, not {equals!r}"
    if kind in NUMERIC | {"enum"} and (isinstance(equals, bool) or not isinstance(equals, int | float)):
        return f"the property is {kind}: equals must be a number, not {equals!r}"
    if kind == "string" and not isinstance(equals, str):
        return f"the property is text: equals must be text, not {equals!r}"
    return ""


def check_refs(expr: Expression, scope: Scope, where: Where, sub: Loc) -> list[Problem]:
    problems = []
    for device, prop in sorted(expr.refs):
        if not device:
            if prop not in scope.props:
                problems.append(where.problem(sub, f"model {scope.model!r} has no property {prop!r}"))
        elif scope.devices is None:
            problems.append(
                where.problem(sub, f"a pack cannot name a device ({device}.{prop}); put this in the station's rules")
            )
        elif device not in scope.devices:
            problems.append(where.problem(sub, f"no device {device!r} in this station"))
        elif prop not in scope.devices[device]:
            problems.append(where.problem(sub, f"device {device!r} has no property {prop!r}"))
    return problems


def check_computed(point: ComputedPoint, scope: Scope, where: Where, model_props: Iterable[str]) -> list[Problem]:
    problems: list[Problem] = []
    if point.id in set(model_props):
        problems.append(where.problem(("id",), f"{point.id!r} is already a property of model {scope.model!r}"))
    if point.expr is not None:
        problems += check_refs(parse_expression(point.expr), scope, where, ("expr",))
    elif point.aggregate is not None:
        prop = point.aggregate.property
        kind = scope.props.get(prop)
        if kind is None:
            problems.append(where.problem(("aggregate", "property"), f"model {scope.model!r} has no property {prop!r}"))
        elif point.aggregate.fn != "last" and kind not in NUMERIC:
            problems.append(
                where.problem(("aggregate", "fn"), f"{point.aggregate.fn} needs a number; {prop!r} is {kind}")
            )
        elif prop == point.id:
            problems.append(where.problem(("aggregate", "property"), "a point cannot aggregate itself"))
    return problems


def duplicate_ids(items: Sequence[tuple[str, Where]]) -> list[Problem]:
    """Rules and computed points of one device share one namespace (overrides address both)."""
    problems: list[Problem] = []
    first: dict[str, Where] = {}
    for ident, where in items:
        if ident in first:
            other = first[ident]
            line = other.doc.line_of(other.loc) if other.doc is not None else None
            at = f"{other.file}:{line}" if line else other.file
            problems.append(where.problem(("id",), f"duplicate id {ident!r} (also at {at})"))
        else:
            first[ident] = where
    return problems


def check_pack(pack: RulePack, library: ModelLibrary) -> list[Problem]:
    """Check a pack on its own against the model library (no devices: packs name none)."""
    doc, file = pack._doc, pack.file
    scope = model_scope(library, pack.model)
    if scope is None:
        known = ", ".join(sorted(library.models))
        return [Where(file, doc, ()).problem(("model",), f"unknown thing model {pack.model!r} (known: {known})")]
    model_props = list(scope.props)
    for point in pack.computed:
        scope.props.setdefault(point.id, computed_type(point, scope.props))
    problems: list[Problem] = []
    ids: list[tuple[str, Where]] = []
    for i, rule in enumerate(pack.rules):
        where = Where(file, doc, ("rules", i))
        ids.append((rule.id, where))
        problems += check_rule(rule, scope, where)
    for i, point in enumerate(pack.computed):
        where = Where(file, doc, ("computed", i))
        ids.append((point.id, where))
        problems += check_computed(point, scope, where, model_props)
    problems += duplicate_ids(ids)
    return problems


# ---- loading ----------------------------------------------------------------------------------


def load_pack(path: Path, library: ModelLibrary) -> RulePack:
    """Load and check one pack file.  Raises ConfigError listing every problem with its line."""
    doc = load_yaml(path)
    try:
        pack = RulePack.model_validate(doc.data)
    except ValidationError as err:
        raise ConfigError(problems_from(doc, err)) from err
    pack._doc = doc
    problems = check_pack(pack, library)
    if problems:
        raise ConfigError(problems)
    return pack


def load_packs(
    refs: Sequence[str],
    *,
    base_dir: Path,
    pack_dirs: Sequence[Path],
    library: ModelLibrary,
    station_doc: YamlDocument | None = None,
    loc: Loc = ("rules", "packs"),
) -> list[RulePack]:
    """Resolve the station's ``packs:`` list.  A ref with ``/`` or ending in ``.yaml`` is a path
    relative to ``base_dir``; otherwise it is a pack id, found as ``<dir>/<id>.yaml`` in the first
    of ``pack_dirs`` (relative to ``base_dir``) that has it.  Raises ConfigError."""
    file = station_doc.path if station_doc is not None else str(base_dir)
    where = Where(file, station_doc, loc)
    dirs = [(base_dir / d).resolve() for d in pack_dirs]
    problems: list[Problem] = []
    packs: list[RulePack] = []
    seen: dict[str, int] = {}
    for i, ref in enumerate(refs):
        by_path = "/" in ref or ref.endswith((".yaml", ".yml"))
        if by_path:
            path: Path | None = (base_dir / ref).resolve()
        else:
            path = next((d / f"{ref}.yaml" for d in dirs if (d / f"{ref}.yaml").is_file()), None)
            if path is None:
                problems.append(where.problem((i,), f"no rule pack {ref!r} in {', '.join(map(str, dirs))}"))
                continue
        assert path is not None
        try:
            pack = load_pack(path, library)
        except ConfigError as err:
            problems += err.problems
            continue
        if not by_path and pack.pack != ref:
            problems.append(where.problem((i,), f"{path} declares pack {pack.pack!r}, not {ref!r}"))
            continue
        if pack.pack in seen:
            problems.append(where.problem((i,), f"pack {pack.pack!r} listed twice (also item {seen[pack.pack]})"))
            continue
        seen[pack.pack] = i
        packs.append(pack)
    if problems:
        raise ConfigError(problems)
    return packs


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        old = out.get(key)
        out[key] = deep_merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


M = TypeVar("M", bound=BaseModel)


def with_override(item: M, patch: Mapping[str, Any]) -> M:
    """``item`` with ``patch`` merged in (nested mappings merge; ``levels: {lo: null}`` drops a level).
    Raises ValidationError (locations relative to the item) or ValueError."""
    fixed = sorted({"id", "kind", "device"} & set(patch))
    if fixed:
        raise ValueError(f"{', '.join(fixed)} cannot be overridden")
    levels = patch.get("levels")
    if isinstance(levels, Mapping):  # `hi: 25` changes the value and keeps the level's message/priority
        patch = {**patch, "levels": {k: _number_to_level(v) for k, v in levels.items()}}
    return type(item).model_validate(deep_merge(item.model_dump(), patch))

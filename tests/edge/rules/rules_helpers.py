"""Small models, packs and readings for the rule tests (time is always scripted)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.rules.config import RulePack, StationRules
from edge.rules.engine import RuleEngine, RuleOutput
from gascore.records import Quality, Reading, Value
from gascore.thingmodel import Event, ModelLibrary, Name, Property, ThingModel

ROOT = Path(__file__).resolve().parents[3]
SHIPPED_MODELS = ROOT / "configs" / "models"
SHIPPED_RULES = ROOT / "configs" / "rules"
GOOD = Quality.GOOD
BAD = Quality.BAD_COMM_FAILURE
UNCERTAIN = Quality.UNCERTAIN_STALE


def library() -> ModelLibrary:
    return ModelLibrary.load([SHIPPED_MODELS])


def make_model(model_id: str = "box") -> ThingModel:
    """p, q: numbers (p in [0, 100]); flag: bool; mode: enum; label: text; event `tripped`."""
    props = [
        Property(id="p", name=Name(zh="压力", en="Pressure"), type="float", unit="kPa", range=(0, 100)),
        Property(id="q", name=Name(zh="流量", en="Flow"), type="float", unit="m3/h"),
        Property(id="flag", name=Name(zh="阀门关闭", en="Valve closed"), type="bool"),
        Property(id="mode", name=Name(zh="模式", en="Mode"), type="enum", values={0: "停止", 1: "手动", 2: "自动"}),
        Property(id="label", name=Name(zh="标签", en="Label"), type="string"),
    ]
    events = [Event(id="tripped", name=Name(zh="切断", en="Tripped"), level="critical")]
    return ThingModel(
        id=model_id,
        version=1,
        name=Name(zh="测试箱", en="Test box"),
        lineage=(model_id,),
        properties={p.id: p for p in props},
        events={e.id: e for e in events},
        services={},
    )


BOX = make_model()


def pack(rules: Sequence[dict[str, Any]] = (), computed: Sequence[dict[str, Any]] = (), **kw: Any) -> RulePack:
    data = {"pack": "t", "source": "test", "model": "box", "rules": list(rules), "computed": list(computed), **kw}
    return RulePack.model_validate(data)


def build(
    rules: Sequence[dict[str, Any]] = (),
    computed: Sequence[dict[str, Any]] = (),
    *,
    devices: Sequence[str] = ("d1",),
    station: dict[str, Any] | None = None,
) -> RuleEngine:
    station_rules = StationRules.model_validate(station) if station is not None else None
    return RuleEngine.build([(d, BOX) for d in devices], [pack(rules, computed)], station_rules)


def rd(point: str, ts: int, value: Value, quality: Quality = GOOD, device: str = "d1") -> Reading:
    return Reading(device, point, ts, value, quality)


def feed(eng: RuleEngine, point: str, ts: int, value: Value, quality: Quality = GOOD, device: str = "d1") -> RuleOutput:
    """One reading, observed at its own timestamp."""
    return eng.observe([rd(point, ts, value, quality, device)], ts)


def flips(out: RuleOutput) -> list[tuple[str, bool, int]]:
    return [(c.condition_id, c.active, c.ts_ms) for c in out.changes]


def active(eng: RuleEngine) -> set[str]:
    return {cid for cid, on in eng.conditions() if on}

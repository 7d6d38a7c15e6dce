"""Golden cases: each file in cases/ starts with `# expect: <text>`.  Loading it must fail with a
problem that names this file and contains the text (``:line: field: message``), or succeed for
``OK``.  ``~text`` matches a problem in any file (e.g. in a pack the station lists).

``pack_*.yaml`` are rule packs; ``station_*.yaml`` hold a test-only ``devices: {id: model}`` map
and a station ``rules:`` section (pack_dirs point at the shipped configs/rules)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from rules_helpers import library

from edge.rules.config import StationRules, load_pack, problems_from
from edge.rules.engine import RuleEngine, station_engine
from gascore.yamldoc import ConfigError, load_yaml

CASES = sorted((Path(__file__).parent / "cases").glob("*.yaml"))
LIB = library()


def expectation(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: ")
    return first.removeprefix("# expect: ")


def load_case(path: Path) -> RuleEngine | None:
    if path.name.startswith("pack_"):
        load_pack(path, LIB)
        return None
    doc = load_yaml(path)
    devices = []
    for device, model in doc.data["devices"].items():
        found = LIB.get(model)
        assert found is not None, model
        devices.append((device, found))
    try:
        rules = StationRules.model_validate(doc.data["rules"])
    except ValidationError as err:
        raise ConfigError(problems_from(doc, err, ("rules",))) from err
    return station_engine(rules, devices, LIB, base_dir=path.parent, station_doc=doc)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_config_case(case: Path) -> None:
    expected = expectation(case)
    if expected == "OK":
        load_case(case)
        return
    with pytest.raises(ConfigError) as info:
        load_case(case)
    messages = [str(p) for p in info.value.problems]
    if expected.startswith("~"):
        assert any(expected[1:] in m for m in messages), messages
    else:
        assert any(m.startswith(str(case)) and expected in m for m in messages), messages


def test_the_ok_station_really_works() -> None:
    eng = load_case(Path(__file__).parent / "cases" / "station_ok.yaml")
    assert eng is not None
    conditions = dict(eng.conditions())
    assert "rbox-a.tamper" in conditions and "rbox-b.tamper" not in conditions
    assert "rbox-a.twin_deviation" in conditions and "det-1.comm_loss" in conditions
    assert eng.computed_points["rbox-a"] == [
        "outlet_deviation",
        "outlet_pressure_avg_15m",
        "flow_max_1h",
        "twin_total_flow",
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(
        "pack: many\nsource: test\nmodel: regulator_box\nrules:\n"
        "  - {id: a, kind: state, property: nope, equals: true}\n"
        "  - {id: b, kind: threshold, property: flow, levels: {hi: 99999}}\n"
        "  - {id: c, kind: expression, expr: 'x +', message: {zh: c, en: c}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_pack(path, LIB)
    lines = sorted(p.line or 0 for p in info.value.problems)
    assert lines == [7]  # pydantic stops at the structural error first ...
    path.write_text(path.read_text(encoding="utf-8").replace("'x +'", "'x + 1'"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_pack(path, LIB)
    assert sorted(p.line or 0 for p in info.value.problems) == [5, 6, 7]  # ... then every model problem


def test_build_without_a_document_still_names_the_file() -> None:
    rules = StationRules.model_validate({"overrides": {"nope": {"x": {"enabled": False}}}})
    with pytest.raises(ConfigError) as info:
        RuleEngine.build([], [], rules, source_file="station.yaml")
    assert [str(p) for p in info.value.problems] == [
        "station.yaml: rules.overrides.nope: no device 'nope' in this station"
    ]


def test_station_rules_schema_is_generated() -> None:
    schema = StationRules.model_json_schema()
    assert {"packs", "pack_dirs", "rules", "computed", "overrides"} <= set(schema["properties"])

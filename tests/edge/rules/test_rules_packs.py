"""The shipped gas rule packs: every pack loads against the shipped models and cites its source,
and each one behaves as its standard says (scripted time)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rules_helpers import SHIPPED_RULES, active, flips, library, rd

from edge.rules.config import RulePack, load_pack
from edge.rules.engine import RuleEngine
from edge.rules.types import Message
from gascore.records import Quality

LIB = library()
PACK_FILES = sorted(SHIPPED_RULES.glob("*.yaml"))
PACKS = {p.stem: load_pack(p, LIB) for p in PACK_FILES}
ALTERNATIVES = {"gas_detector_lel_10_25", "utility_tunnel"}  # same rule ids as gas_detector_lel


@pytest.mark.parametrize("path", PACK_FILES, ids=[p.stem for p in PACK_FILES])
def test_every_shipped_pack_loads_and_cites_its_source(path: Path) -> None:
    pack = load_pack(path, LIB)
    assert pack.pack == path.stem  # so a station can list it by id
    assert len(pack.source) > 10
    assert pack.rules or pack.computed
    for rule in pack.rules:
        assert rule.source is None or len(rule.source) > 10


def test_new_models_are_shipped() -> None:
    assert {"o2", "methane", "h2s", "co"} <= set(LIB.models["confined_space_monitor"].properties)
    cp = LIB.models["cp_test_post"]
    assert cp.properties["off_potential"].unit == "mV" and cp.properties["on_potential"].unit == "mV"


def engine(*names: str, devices: dict[str, str]) -> RuleEngine:
    models = []
    for device, model in devices.items():
        found = LIB.get(model)
        assert found is not None
        models.append((device, found))
    return RuleEngine.build(models, [PACKS[n] for n in names], None)


def packs_for(model: str) -> list[RulePack]:
    return [p for name, p in PACKS.items() if name not in ALTERNATIVES and p.model in LIB.models[model].lineage]


def test_all_packs_together_on_one_device_of_every_model() -> None:
    devices = [(f"{m}-1", model) for m, model in LIB.models.items()]
    packs = [p for name, p in PACKS.items() if name not in ALTERNATIVES]
    eng = RuleEngine.build(devices, packs, None)
    ids = {cid for cid, _ in eng.conditions()}
    for model in LIB.models:
        assert f"{model}-1.comm_loss" in ids  # the common pack reaches every model
        assert packs_for(model), model


def test_detector_level_1_at_20_and_level_2_at_50() -> None:
    eng = engine("gas_detector_lel", devices={"det": "gas_detector"})
    assert flips(eng.observe([rd("concentration", 1, 19.9, device="det")], 1)) == []
    out = eng.observe([rd("concentration", 2, 20.0, device="det")], 2)
    assert flips(out) == [("det.concentration.hi", True, 2)]
    assert (out.changes[0].message, out.changes[0].priority) == (Message("低限报警", "Low alarm"), "high")
    out = eng.observe([rd("concentration", 3, 50.0, device="det")], 3)
    assert flips(out) == [("det.concentration.hihi", True, 3)]
    assert (out.changes[0].message, out.changes[0].priority) == (Message("高限报警", "High alarm"), "critical")
    assert out.changes[0].source.startswith("gas_detector_lel: GB/T 50493-2019")
    assert flips(eng.observe([rd("concentration", 4, 48.5, device="det")], 4)) == []  # 2 %LEL deadband
    assert flips(eng.observe([rd("concentration", 5, 47.9, device="det")], 5)) == [("det.concentration.hihi", False, 5)]
    assert flips(eng.observe([rd("fault", 6, True, device="det")], 6)) == [("det.sensor_fault", True, 6)]


def test_detector_variant_10_25() -> None:
    eng = engine("gas_detector_lel_10_25", devices={"det": "gas_detector"})
    assert flips(eng.observe([rd("concentration", 1, 10.0, device="det")], 1)) == [("det.concentration.hi", True, 1)]
    assert flips(eng.observe([rd("concentration", 2, 25.0, device="det")], 2)) == [("det.concentration.hihi", True, 2)]


def test_utility_tunnel_alarm_at_20_and_shutoff_condition_at_35() -> None:
    eng = engine("utility_tunnel", devices={"tunnel-det-3": "gas_detector"})
    assert flips(eng.observe([rd("concentration", 1, 21.0, device="tunnel-det-3")], 1)) == [
        ("tunnel-det-3.concentration.hi", True, 1)
    ]
    out = eng.observe([rd("concentration", 2, 35.0, device="tunnel-det-3")], 2)
    assert flips(out) == [("tunnel-det-3.shutoff.hi", True, 2)]  # the interlock's condition
    assert out.changes[0].priority == "critical"
    assert "GB 50838-2015" in out.changes[0].source


def test_confined_space_oxygen_and_gases() -> None:
    eng = engine("confined_space", devices={"well-7": "confined_space_monitor"})
    out = eng.observe([rd("o2", 1, 19.4, device="well-7")], 1)
    assert flips(out) == [("well-7.o2.lo", True, 1)]
    assert (out.changes[0].message, out.changes[0].priority) == (Message("缺氧报警", "Oxygen deficiency"), "critical")
    assert flips(eng.observe([rd("o2", 2, 19.7, device="well-7")], 2)) == []  # 0.3 %vol deadband
    assert flips(eng.observe([rd("o2", 3, 20.9, device="well-7")], 3)) == [("well-7.o2.lo", False, 3)]
    assert flips(eng.observe([rd("o2", 4, 23.5, device="well-7")], 4)) == [("well-7.o2.hi", True, 4)]
    out = eng.observe(
        [
            rd("methane", 5, 10.0, device="well-7"),
            rd("h2s", 5, 15.0, device="well-7"),
            rd("co", 5, 30.0, device="well-7"),
        ],
        5,
    )
    assert flips(out) == [
        ("well-7.methane.hi", True, 5),
        ("well-7.h2s.hi", True, 5),
        ("well-7.h2s.hihi", True, 5),
        ("well-7.co.hi", True, 5),
    ]


def test_cathodic_protection_window() -> None:
    eng = engine("cathodic_protection", devices={"cp-12": "cp_test_post"})
    assert flips(eng.observe([rd("off_potential", 1, -950.0, device="cp-12")], 1)) == []
    out = eng.observe([rd("off_potential", 2, -820.0, device="cp-12")], 2)
    assert flips(out) == [("cp-12.off_potential.hi", True, 2)]
    assert out.changes[0].message.zh.startswith("欠保护")
    assert flips(eng.observe([rd("off_potential", 3, -855.0, device="cp-12")], 3)) == []  # 10 mV deadband
    assert flips(eng.observe([rd("off_potential", 4, -900.0, device="cp-12")], 4)) == [
        ("cp-12.off_potential.hi", False, 4)
    ]
    out = eng.observe([rd("off_potential", 5, -1250.0, device="cp-12")], 5)
    assert flips(out) == [("cp-12.off_potential.lo", True, 5)]
    assert out.changes[0].message.en.startswith("Over-protected")
    assert flips(eng.tick(5 + 2 * 86_400_000)) == [("cp-12.off_potential_stale", True, 5 + 2 * 86_400_000)]


def test_regulator_box_pack() -> None:
    eng = engine("regulator_box", devices={"rbox-a": "regulator_box"})
    base = [rd("setpoint", 0, 3.0, device="rbox-a"), rd("outlet_pressure", 0, 3.0, device="rbox-a")]
    assert eng.observe(base, 0).computed == [rd("outlet_deviation", 0, 0.0, device="rbox-a")]
    eng.observe([rd("outlet_pressure", 1_000, 3.4, device="rbox-a")], 1_000)  # +13 %
    assert flips(eng.tick(6_000)) == [("rbox-a.outlet_over_pressure", True, 6_000)]
    eng.observe([rd("outlet_pressure", 7_000, 3.2, device="rbox-a")], 7_000)  # +6.7 %: still over (hysteresis)
    assert flips(eng.observe([rd("outlet_pressure", 8_000, 3.1, device="rbox-a")], 8_000)) == [
        ("rbox-a.outlet_over_pressure", False, 8_000)
    ]
    eng.observe([rd("outlet_pressure", 9_000, 2.6, device="rbox-a")], 9_000)
    assert flips(eng.tick(19_000)) == [("rbox-a.outlet_under_pressure", True, 19_000)]
    eng.observe([rd("filter_dp", 20_000, 12.0, device="rbox-a")], 20_000)
    assert flips(eng.tick(80_000)) == [("rbox-a.filter_dp.hi", True, 80_000)]
    out = eng.observe(
        [rd("slam_shut_closed", 81_000, True, device="rbox-a"), rd("door_open", 81_000, True, device="rbox-a")], 81_000
    )
    by = {c.condition_id: c for c in out.changes}
    assert (by["rbox-a.slam_shut"].message, by["rbox-a.slam_shut"].priority) == (
        Message("切断阀动作", "Slam-shut tripped"),
        "critical",
    )
    assert (by["rbox-a.tamper"].message, by["rbox-a.tamper"].priority) == (
        Message("箱门非法开启", "Door opened (tamper)"),
        "high",
    )
    # box methane has a 2 s on-delay: nothing at once, both levels 2 s later
    assert flips(eng.observe([rd("box_methane", 82_000, 50.0, device="rbox-a")], 82_000)) == []
    assert flips(eng.tick(84_000)) == [
        ("rbox-a.box_methane.hi", True, 84_000),
        ("rbox-a.box_methane.hihi", True, 84_000),
    ]
    assert eng.tick(900_000).computed == [
        rd("outlet_pressure_avg_15m", 900_000, (3.0 + 3.4 + 3.2 + 3.1 + 2.6) / 5, device="rbox-a")
    ]


def test_smart_meter_pack() -> None:
    eng = engine("smart_meter", devices={"m-1": "smart_meter"})
    eng.observe([rd("flow", 0, 5.0, device="m-1")], 0)
    assert flips(eng.tick(60_000)) == [("m-1.large_flow.hi", True, 60_000)]
    eng.observe([rd("flow", 61_000, 0.01, device="m-1")], 61_000)  # a trickle from here on
    assert active(eng) == set()
    for hour in range(1, 3):
        eng.observe([rd("flow", 61_000 + hour * 3_600_000, 0.012, device="m-1")], 61_000 + hour * 3_600_000)
    out = eng.tick(61_000 + 3 * 3_600_000)
    assert flips(out) == [("m-1.micro_flow", True, 61_000 + 3 * 3_600_000)]
    assert out.changes[0].message == Message("微小流量泄漏", "Micro-flow leak")
    t = 20 * 3_600_000
    eng.observe([rd("flow", t, 0.0, device="m-1")], t)  # the trickle stopped
    eng.observe([rd("flow", t + 1_000, 0.8, device="m-1")], t + 1_000)  # now steady use for 4 h
    assert flips(eng.tick(t + 1_000 + 4 * 3_600_000)) == [("m-1.overlong_use", True, t + 1_000 + 4 * 3_600_000)]


def test_common_pack_comm_loss() -> None:
    eng = engine("common", devices={"m-1": "smart_meter", "det": "gas_detector"})
    eng.device_link("det", False, 0)
    out = eng.tick(60_000)
    assert flips(out) == [("det.comm_loss", True, 60_000)]
    assert out.changes[0].message == Message("设备离线", "Device offline")
    assert flips(eng.observe([rd("battery", 1, 9.0, device="m-1", quality=Quality.GOOD)], 60_001)) == [
        ("m-1.battery_low.lo", True, 60_001),
        ("m-1.battery_low.lolo", True, 60_001),
    ]

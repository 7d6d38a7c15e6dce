"""Thing-model schema: shipped models load, `extends` resolves, errors name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gascore.thingmodel import ModelLibrary
from gascore.yamldoc import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "models"


def test_shipped_models_load_and_inherit_the_common_base() -> None:
    lib = ModelLibrary.load([SHIPPED])
    assert {"regulator_box", "gas_detector"} <= set(lib.models)
    assert "common_device" not in lib.models  # abstract
    box = lib.models["regulator_box"]
    assert box.lineage == ("common_device", "regulator_box")
    for prop in (
        "online",
        "rssi",
        "battery",
        "fw_version",
        "inlet_pressure",
        "outlet_pressure",
        "temperature",
        "filter_dp",
        "slam_shut_closed",
        "relief_valve_open",
        "door_open",
        "box_methane",
    ):
        assert prop in box.properties, prop
    assert box.properties["inlet_pressure"].unit == "MPa" and box.properties["outlet_pressure"].unit == "kPa"
    assert box.properties["setpoint"].access == "rw"
    assert box.services["set_outlet_pressure"].inputs[0].id == "setpoint"
    det = lib.models["gas_detector"]
    assert det.properties["concentration"].unit == "%LEL"
    assert det.properties["alarm_level"].values == {0: "正常", 1: "低报", 2: "高报"}
    assert det.events["high_alarm"].level.value == "critical"


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    write(
        tmp_path,
        "m.yaml",
        "id: m\nversion: 1\nname: {zh: 甲, en: A}\nproperties:\n"
        "  - id: p\n    name: {zh: 乙, en: B}\n    type: float\n    range: [5, 1]\n",
    )
    with pytest.raises(ConfigError) as info:
        ModelLibrary.load([tmp_path])
    text = str(info.value)
    assert f"{tmp_path / 'm.yaml'}:5: properties[0]: range low 5.0 is above high 1.0" in text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("id: m\nversion: 1\nname: {zh: a, en: a}\nextends: nothing\n", "unknown base model 'nothing'"),
        (
            "id: m\nversion: 0\nname: {zh: a, en: a}\n",
            ":2: version: Input should be greater than or equal to 1",
        ),
        ("id: m\nversion: 1\nname: {zh: a, en: a}\ncolour: red\n", ":4: colour: unknown key"),
        (
            "id: m\nversion: 1\nname: {zh: a, en: a}\nproperties:\n  - {id: e, name: {zh: a, en: a}, type: enum}\n",
            "an enum property needs `values`",
        ),
        (
            "id: m\nversion: 1\nname: {zh: a, en: a}\nproperties:\n  - {id: a, name: {zh: a, en: a}, type: int}\n"
            "  - {id: a, name: {zh: a, en: a}, type: int}\n",
            "duplicate property id(s): a",
        ),
    ],
)
def test_model_problems(tmp_path: Path, body: str, expected: str) -> None:
    write(tmp_path, "m.yaml", body)
    with pytest.raises(ConfigError) as info:
        ModelLibrary.load([tmp_path])
    assert expected in str(info.value)


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "id: a\nversion: 1\nname: {zh: a, en: a}\nextends: b\n")
    write(tmp_path, "b.yaml", "id: b\nversion: 1\nname: {zh: b, en: b}\nextends: a\n")
    with pytest.raises(ConfigError, match="cycle"):
        ModelLibrary.load([tmp_path])

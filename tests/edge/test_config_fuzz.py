"""Fuzzing what a field technician can get wrong in a station file or a thing model (#8, bad
input): mutated copies of the shipped files and YAML of any shape give either a valid station or
a ConfigError whose every problem names the file — never another exception, never a traceback
for the technician."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import load_station
from gascore.thingmodel import ModelLibrary
from gascore.yamldoc import ConfigError

ROOT = Path(__file__).resolve().parents[2]
STATION = (ROOT / "configs" / "stations" / "demo-station.yaml").read_text(encoding="utf-8")
MODELS = ROOT / "configs" / "models"
MODEL = (MODELS / "regulator_box.yaml").read_text(encoding="utf-8")

TOKENS = ["", " ", ":", "- ", "[", "]", "{", "}", "'", '"', "&a", "*a", "!!python/object:os.system", "~",
          "-1", "1e999", "0x10", "nan", "是", "\t", "null", "yes", "99999999999999999999", "%"]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """The text with a few line-level edits: deleted, duplicated, re-indented lines and tokens
    spliced in where a technician's typo would put them."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(["delete", "duplicate", "indent", "dedent", "splice", "truncate"]))
        if edit == "delete":
            del lines[i]
        elif edit == "duplicate":
            lines.insert(i, lines[i])
        elif edit == "indent":
            lines[i] = " " * draw(st.integers(1, 3)) + lines[i]
        elif edit == "dedent":
            lines[i] = lines[i].lstrip()
        elif edit == "splice":
            at = draw(st.integers(0, len(lines[i])))
            token = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=8)))
            lines[i] = lines[i][:at] + token + lines[i][at:]
        else:
            lines = lines[: i + 1]
    return "\n".join(lines) + "\n"


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)


def check_station(tmp: Path, text: str) -> None:
    station_dir = tmp / "configs" / "stations"
    station_dir.mkdir(parents=True, exist_ok=True)
    if not (tmp / "configs" / "models").exists():
        shutil.copytree(MODELS, tmp / "configs" / "models")
    path = station_dir / "station.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_station(path)
    except ConfigError as err:
        assert err.problems
        assert all(p.file.endswith(".yaml") or "models" in p.file for p in err.problems), err.problems
        assert all(str(p) for p in err.problems)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(text=mutated(STATION))
def test_a_mutated_station_file_is_loaded_or_refused_with_its_problems(tmp_path: Path, text: str) -> None:
    check_station(tmp_path, text)


@FUZZ
@given(value=yaml_values)
def test_yaml_of_any_shape_as_a_station_file(tmp_path: Path, value: object) -> None:
    check_station(tmp_path, yaml.safe_dump(value, allow_unicode=True))


@FUZZ
@given(text=mutated(MODEL))
def test_a_mutated_thing_model_is_loaded_or_refused_with_its_problems(tmp_path: Path, text: str) -> None:
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    for f in MODELS.glob("*.yaml"):
        (folder / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "regulator_box.yaml").write_text(text, encoding="utf-8")
    try:
        ModelLibrary.load([folder])
    except ConfigError as err:
        assert err.problems and all(p.file.endswith(".yaml") for p in err.problems), err.problems

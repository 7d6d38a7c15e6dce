"""Thing-model (物模型) schema: properties, events and services of a device type.

Models are YAML files validated here; ``extends`` pulls in a common base (online, rssi, battery,
fw_version ...).  The schema is shared by edge (binding, range checks) and cloud (registry).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gascore.records import EventLevel
from gascore.yamldoc import ConfigError, Problem, load_yaml

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
PropertyType = Literal["int", "float", "bool", "enum", "string"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Name(_Strict):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Property(_Strict):
    id: Identifier
    name: Name
    type: PropertyType
    unit: str | None = None
    range: tuple[float, float] | None = None
    values: dict[int, str] | None = Field(default=None, description="enum: code -> label")
    access: Literal["r", "rw"] = "r"
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Property:
        if self.range is not None:
            if self.type not in ("int", "float"):
                raise ValueError(f"range is only allowed for int/float, not {self.type}")
            if self.range[0] > self.range[1]:
                raise ValueError(f"range low {self.range[0]} is above high {self.range[1]}")
        if self.type == "enum" and not self.values:
            raise ValueError("an enum property needs `values`")
        if self.type != "enum" and self.values is not None:
            raise ValueError("`values` is only allowed for enum properties")
        return self


class Event(_Strict):
    id: Identifier
    name: Name
    level: EventLevel = EventLevel.WARNING
    description: str | None = None


class ServiceInput(_Strict):
    id: Identifier
    name: Name
    type: PropertyType
    unit: str | None = None
    range: tuple[float, float] | None = None


class Service(_Strict):
    id: Identifier
    name: Name
    inputs: list[ServiceInput] = Field(default_factory=list)
    description: str | None = None


class ThingModelFile(_Strict):
    """A model as written in YAML (before ``extends`` is resolved)."""

    id: Identifier
    version: int = Field(ge=1)
    name: Name
    extends: Identifier | None = None
    abstract: bool = False
    properties: list[Property] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> ThingModelFile:
        for kind, items in (
            ("property", self.properties),
            ("event", self.events),
            ("service", self.services),
        ):
            ids = [i.id for i in items]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise ValueError(f"duplicate {kind} id(s): {', '.join(dup)}")
        return self


class ThingModel(_Strict):
    """A resolved model: own members plus everything inherited through ``extends``."""

    id: str
    version: int
    name: Name
    lineage: tuple[str, ...]
    properties: dict[str, Property]
    events: dict[str, Event]
    services: dict[str, Service]


def resolve(files: Mapping[str, ThingModelFile], model_id: str, _seen: tuple[str, ...] = ()) -> ThingModel:
    if model_id in _seen:
        raise ValueError(f"`extends` cycle: {' -> '.join((*_seen, model_id))}")
    mf = files.get(model_id)
    if mf is None:
        raise KeyError(model_id)
    props: dict[str, Property] = {}
    events: dict[str, Event] = {}
    services: dict[str, Service] = {}
    lineage: tuple[str, ...] = ()
    if mf.extends:
        base = resolve(files, mf.extends, (*_seen, model_id))
        props.update(base.properties)
        events.update(base.events)
        services.update(base.services)
        lineage = base.lineage
    props.update({p.id: p for p in mf.properties})
    events.update({e.id: e for e in mf.events})
    services.update({s.id: s for s in mf.services})
    return ThingModel(
        id=mf.id,
        version=mf.version,
        name=mf.name,
        lineage=(*lineage, mf.id),
        properties=props,
        events=events,
        services=services,
    )


class ModelLibrary:
    """All thing models found in one or more folders, resolved and ready to bind against."""

    def __init__(self, models: dict[str, ThingModel], sources: dict[str, str]) -> None:
        self.models = models
        self.sources = sources

    def get(self, model_id: str) -> ThingModel | None:
        return self.models.get(model_id)

    @classmethod
    def load(cls, folders: Iterable[Path]) -> ModelLibrary:
        files: dict[str, ThingModelFile] = {}
        sources: dict[str, str] = {}
        problems: list[Problem] = []
        for folder in folders:
            if not folder.is_dir():
                problems.append(Problem(str(folder), None, "", "model folder does not exist"))
                continue
            for path in sorted(folder.glob("*.yaml")):
                try:
                    doc = load_yaml(path)
                    mf = ThingModelFile.model_validate(doc.data)
                except ConfigError as err:
                    problems += err.problems
                    continue
                except ValidationError as err:
                    problems += doc.problems_from(err)
                    continue
                if mf.id in files:
                    problems.append(Problem(str(path), 1, "id", f"model {mf.id!r} also defined in {sources[mf.id]}"))
                    continue
                files[mf.id] = mf
                sources[mf.id] = str(path)
        models: dict[str, ThingModel] = {}
        for model_id, mf in files.items():
            try:
                models[model_id] = resolve(files, model_id)
            except KeyError as err:
                problems.append(Problem(sources[model_id], None, "extends", f"unknown base model {err.args[0]!r}"))
            except ValueError as err:
                problems.append(Problem(sources[model_id], None, "extends", str(err)))
            del mf
        if problems:
            raise ConfigError(problems)
        return cls({k: v for k, v in models.items() if not files[k].abstract}, sources)

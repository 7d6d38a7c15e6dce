"""YAML loading that remembers where every value came from, so validation errors can name the
file, line and field a technician has to fix."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

Loc = tuple[str | int, ...]


class ConfigError(Exception):
    """A configuration file is invalid.  ``problems`` lists every error, each with file and line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field or '(document)'}: {self.message}" if self.field else f"{where}: {self.message}"


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every mapping value and sequence item."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[Loc, int] = {}

    def walk(self, node: yaml.Node, loc: Loc) -> None:
        self.lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                self.lines[(*loc, key)] = key_node.start_mark.line + 1
                self.walk(value_node, (*loc, key))
                self.lines[(*loc, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*loc, index))


def _no_duplicate_keys(loader: _LineLoader, node: yaml.Node, path: str) -> list[Problem]:
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.value in seen:
                problems.append(Problem(path, key_node.start_mark.line + 1, str(key_node.value), "duplicate key"))
            seen.add(key_node.value)
            problems += _no_duplicate_keys(loader, value_node, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            problems += _no_duplicate_keys(loader, item, path)
    return problems


@dataclass(frozen=True, slots=True)
class YamlDocument:
    path: str
    data: Any
    lines: dict[Loc, int]

    def line_of(self, loc: Iterable[str | int]) -> int | None:
        """Line of the deepest known prefix of ``loc`` (pydantic locations may go deeper than YAML)."""
        parts = tuple(loc)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get(())

    def problems_from(self, err: ValidationError, prefix: Loc = ()) -> list[Problem]:
        out = []
        for e in err.errors():
            loc = self._document_loc((*prefix, *e["loc"]))
            out.append(Problem(self.path, self.line_of(loc), format_loc(loc), _message(e)))
        return out

    def _document_loc(self, loc: Loc) -> Loc:
        """Drop what pydantic inserts into error locations that is not in the document: the tag
        of a discriminated union member (``channels[0].mqtt.port``) and validator names.  A name
        that is not in the YAML but has more parts after it cannot be a key the user wrote."""
        kept: list[str | int] = []
        for i, part in enumerate(loc):
            last = i == len(loc) - 1
            if isinstance(part, str) and not last and (*kept, part) not in self.lines:
                continue
            kept.append(part)
        return tuple(kept)


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (check spelling; see `gasiot edge schema`)"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def format_loc(loc: Iterable[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_yaml(text: str, path: str) -> YamlDocument:
    try:
        loader = _LineLoader(text)
    except yaml.reader.ReaderError as err:  # a control character (a paste from a terminal, a bad editor)
        where = text.count("\n", 0, err.position) + 1
        raise ConfigError(
            [Problem(path, where, "", f"character {err.character:#06x} is not allowed in YAML (remove it)")]
        ) from err
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([Problem(path, None, "", "file is empty")])
        dups = _no_duplicate_keys(loader, node, path)
        if dups:
            raise ConfigError(dups)
        loader.walk(node, ())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([Problem(path, line, "", f"YAML syntax: {err.problem}")]) from err
    finally:
        loader.dispose()
    return YamlDocument(path, data, loader.lines)


def load_yaml(path: Path) -> YamlDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {err.strerror}")]) from err
    except UnicodeDecodeError as err:
        raise ConfigError([Problem(str(path), None, "", "file is not UTF-8 text")]) from err
    return parse_yaml(text, str(path))

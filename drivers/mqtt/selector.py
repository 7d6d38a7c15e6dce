"""JSONPath-like selectors for MQTT payloads: ``$.data.flow``, ``values[0].v``, ``$`` (the whole
payload).  Deliberately small: dotted keys and list indexes, parsed once at config time."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_PART = re.compile(r"""\.?([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]|\['([^']+)'\]""")


class SelectorError(ValueError):
    """The selector text is not valid."""


class Missing(Exception):
    """The payload has nothing at this selector."""


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    steps: tuple[str | int, ...]

    def pick(self, doc: Any) -> Any:
        node = doc
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(node, list) or step >= len(node):
                    raise Missing(self.text)
                node = node[step]
            else:
                if not isinstance(node, dict) or step not in node:
                    raise Missing(self.text)
                node = node[step]
        return node


def parse_selector(text: str) -> Selector:
    body = text.strip()
    if body.startswith("$"):
        body = body[1:]
    steps: list[str | int] = []
    pos = 0
    while pos < len(body):
        m = _PART.match(body, pos)
        if m is None or m.end() == pos:
            raise SelectorError(f"cannot parse selector {text!r} at {body[pos:]!r}")
        key, index, quoted = m.groups()
        steps.append(int(index) if index is not None else (key or quoted))
        pos = m.end()
    return Selector(text, tuple(steps))


def pick_all(selectors: Sequence[Selector], doc: Any) -> list[Any | Missing]:
    out: list[Any | Missing] = []
    for sel in selectors:
        try:
            out.append(sel.pick(doc))
        except Missing as missing:
            out.append(missing)
    return out

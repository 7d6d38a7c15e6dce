from __future__ import annotations

import pytest

from drivers.mqtt.selector import Missing, SelectorError, parse_selector


@pytest.mark.parametrize(
    ("text", "doc", "value"),
    [
        ("$", 5, 5),
        ("$.a", {"a": 1}, 1),
        ("a.b", {"a": {"b": True}}, True),
        ("$.values[1].v", {"values": [{"v": 1}, {"v": 2.5}]}, 2.5),
        ("$['odd key'].x", {"odd key": {"x": "s"}}, "s"),
    ],
)
def test_pick(text: str, doc: object, value: object) -> None:
    assert parse_selector(text).pick(doc) == value


@pytest.mark.parametrize("doc", [{}, {"a": 1}, {"a": {"b": []}}, [], None])
def test_missing(doc: object) -> None:
    with pytest.raises(Missing):
        parse_selector("$.a.b[0]").pick(doc)


@pytest.mark.parametrize("text", ["$..a", "a[", "a.[0]", "$.a b"])
def test_bad_selectors(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)

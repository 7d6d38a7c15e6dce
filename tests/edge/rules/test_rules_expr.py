"""The safe expression evaluator: what compiles, what does not (with the column), evaluation
without exceptions, quality propagation, and fuzzing."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.rules.expr import CALC_FAILED, ExpressionError, parse_expression
from gascore.records import Quality, Reading, Value

GOOD, BAD, UNCERTAIN = Quality.GOOD, Quality.BAD_COMM_FAILURE, Quality.UNCERTAIN_SUBSTITUTED


def env(values: dict[tuple[str, str], tuple[Value, Quality] | Value]):  # type: ignore[no-untyped-def]
    def resolve(device: str, prop: str) -> Reading | None:
        if (device, prop) not in values:
            return None
        item = values[(device, prop)]
        value, quality = item if isinstance(item, tuple) else (item, GOOD)
        return Reading(device or "self", prop, 100 + len(prop), value, quality)

    return resolve


def value_of(text: str, **props: Value) -> Value:
    return parse_expression(text).evaluate(env({("", k): v for k, v in props.items()})).value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("7 // 2 + 7 % 2", 4.0),
        ("2 ** 3 + 9 ** 0.5 + 2 ** -1", 11.5),
        ("-p + +p", 0.0),
        ("p / 4", 2.5),
        ("1 < p <= 10 < 11", True),
        ("1 < p < 5", False),
        ("p == 10 and not flag", True),
        ("flag or p > 5", True),
        ("1 if flag else 2", 2.0),
        ("abs(-p)", 10.0),
        ("min(p, 3, 7)", 3.0),
        ("max(p, 30)", 30.0),
        ("round(p / 3, 2)", 3.33),
        ("round(p / 3)", 3.0),
        ("sqrt(p * 10)", 10.0),
        ("clamp(p, 0, 5)", 5.0),
        ("clamp(p, 20, 50)", 20.0),
        ("flag + 1", 1.0),
        ("True and p != 3", True),
    ],
)
def test_allowed_forms(text: str, expected: Value) -> None:
    assert value_of(text, p=10, flag=False) == expected


def test_references_to_other_devices() -> None:
    expr = parse_expression('outlet_pressure - dev("rbox-b", "outlet_pressure") + rbox_c.setpoint + site.rbox.x')
    assert expr.refs == {
        ("", "outlet_pressure"),
        ("rbox-b", "outlet_pressure"),
        ("rbox_c", "setpoint"),
        ("site.rbox", "x"),
    }
    result = expr.evaluate(
        env(
            {
                ("", "outlet_pressure"): 3.0,
                ("rbox-b", "outlet_pressure"): 2.5,
                ("rbox_c", "setpoint"): 1,
                ("site.rbox", "x"): 0,
            }
        )
    )
    assert result.value == 1.5
    assert result.inputs == {
        ("", "outlet_pressure"): 3.0,
        ("rbox-b", "outlet_pressure"): 2.5,
        ("rbox_c", "setpoint"): 1,
        ("site.rbox", "x"): 0,
    }


def test_static_kind() -> None:
    assert parse_expression("a > 1").kind == "bool"
    assert parse_expression("a and b").kind == "bool"
    assert parse_expression("not a").kind == "bool"
    assert parse_expression("a * 2").kind == "number"
    assert parse_expression("(a > 1) if b else (a < 0)").kind == "bool"
    assert parse_expression("1 if b else a < 0").kind == "number"


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("a.__class__", 3, "names starting with '_'"),
        ("a . b.__x", 7, "names starting with '_'"),
        ("_a.b", 1, "names starting with '_'"),
        ("__import__('os')", 1, "unknown function '__import__'"),
        ("a + _x", 5, "names starting with '_'"),
        ("open('f')", 1, "unknown function 'open'"),
        ("a.b()", 1, "only abs, min, max"),
        ("x[0]", 1, "subscripts"),
        ('["rbox-b"].p', 1, "attributes are only allowed on device names"),
        ("lambda: 1", 1, "lambda"),
        ("[i for i in a]", 1, "comprehensions"),
        ("(a, b)", 1, "tuples"),
        ("'text'", 1, "text is not allowed"),
        ("None", 1, "NoneType literals"),
        ("1j", 1, "complex literals"),
        ("a ** b", 6, "exponent must be a number literal"),
        ("a ** 17", 6, "exponent larger than 16"),
        ("a @ b", 1, "MatMult"),
        ("a << 2", 1, "LShift"),
        ("~a", 1, "operator ~"),
        ("a is b", 6, "comparison Is"),
        ("a in b", 6, "comparison In"),
        ("min(a)", 1, "min() takes 2 to 16 arguments"),
        ("sqrt(a, b)", 1, "sqrt() takes 1 arguments"),
        ("round(a, b)", 10, "round() digits"),
        ("abs(x=1)", 7, "no keyword arguments"),
        ("dev('a')", 1, "two quoted texts"),
        ("dev('', 'p')", 5, "empty device id"),
        ("dev('a b', 'p')", 1, "not a device id"),
        ("dev('a', 'P')", 1, "not a property id"),
        ("abs", 1, "abs is a function"),
        ("(x := 1)", 2, "assignment"),
        ("f'{a}'", 1, "f-strings"),
        ("a +* b", 4, "syntax error"),
        ("  a +", 6, "syntax error"),
        ("9" * 400, 1, "number too large"),
        ("1e999", 1, "number too large"),
        ("a.b.C", 5, "not a property id"),
        ("(a + 1).b", 1, "attributes are only allowed on device names"),
        ("1 + 流量", 5, "not a property id"),
    ],
)
def test_rejected_forms_name_the_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    assert info.value.column == column, str(info.value)
    assert fragment in info.value.message
    assert str(info.value).startswith(f"column {column}: ")


@pytest.mark.parametrize(
    "text",
    ["", "   ", "\x00", "a" * 1001, "not " * 40 + "a", "-" * 40 + "a", "abs(" * 40 + "a" + ")" * 40],
)
def test_rejected_without_column(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse_expression(text)


def test_multi_line_yaml_text_is_one_line() -> None:
    assert parse_expression("a\n  + 1 if b\n  else 0").evaluate(env({("", "a"): 1, ("", "b"): True})).value == 2.0
    with pytest.raises(ExpressionError) as info:
        parse_expression("a +\n  + * 2")
    assert info.value.column == 9  # "a +   + * 2": the newline became a blank


def test_no_result_instead_of_exceptions() -> None:
    cases: list[tuple[str, dict[tuple[str, str], tuple[Value, Quality] | Value], str, Quality | None]] = [
        ("a / b", {("", "a"): 1, ("", "b"): 0}, "division by zero", CALC_FAILED),
        ("a // b", {("", "a"): 1, ("", "b"): 0}, "division by zero", CALC_FAILED),
        ("a % b", {("", "a"): 1, ("", "b"): 0.0}, "division by zero", CALC_FAILED),
        ("sqrt(a)", {("", "a"): -1}, "not defined", CALC_FAILED),
        ("b ** -1", {("", "b"): 0}, "not defined", CALC_FAILED),
        ("a * a * a", {("", "a"): 1e200}, "not a finite number", CALC_FAILED),
        ("a ** 16", {("", "a"): 1e200}, "too large", CALC_FAILED),
        ("a + 1", {}, "no value yet for a", None),
        ("a + dev('x-1', 'p')", {("", "a"): 1}, "no value yet for x-1.p", None),
        ("a + 1", {("", "a"): "text"}, "a is not a number", None),
        ("a + 1", {("", "a"): None}, "a is not a number", None),
        ("a + 1", {("", "a"): (7, BAD)}, "a is bad/comm_failure", BAD),
    ]
    for text, values, reason, quality in cases:
        result = parse_expression(text).evaluate(env(values))
        assert result.value is None, text
        assert reason in result.reason, (text, result.reason)
        assert result.quality == quality, text


def test_quality_is_the_worst_input() -> None:
    expr = parse_expression("a + b")
    assert expr.evaluate(env({("", "a"): 1, ("", "b"): 2})).quality is GOOD
    result = expr.evaluate(env({("", "a"): 1, ("", "b"): (2, UNCERTAIN)}))
    assert (result.value, result.quality) == (3.0, UNCERTAIN)
    result = expr.evaluate(env({("", "a"): (1, UNCERTAIN), ("", "b"): (2, Quality.BAD_SENSOR_FAULT)}))
    assert (result.value, result.quality) == (None, Quality.BAD_SENSOR_FAULT)
    assert parse_expression("2 * 3").evaluate(env({})).quality is GOOD


def test_short_circuit_reads_only_what_it_needs() -> None:
    # `b` is bad, but the branch that reads it is not taken: the result is good.
    values: dict[tuple[str, str], tuple[Value, Quality] | Value] = {("", "a"): 5, ("", "b"): (0, BAD)}
    result = parse_expression("a if a > 1 else b").evaluate(env(values))
    assert (result.value, result.quality, set(result.inputs or {})) == (5.0, GOOD, {("", "a")})
    assert parse_expression("a > 1 or b > 1").evaluate(env(values)).value is True
    assert parse_expression("a < 1 and b > 1").evaluate(env(values)).value is False
    assert parse_expression("a < 1 < b").evaluate(env(values)).value is False
    assert parse_expression("a > 1 and b > 1").evaluate(env(values)).quality is BAD


def test_newest_input_timestamp() -> None:
    result = parse_expression("a + bb").evaluate(env({("", "a"): 1, ("", "bb"): 2}))
    assert result.ts_ms == 102  # env stamps 100 + len(name)


# ---- fuzzing --------------------------------------------------------------------------------

EXPR_ALPHABET = "abpxyz_019.+-*/%()<>=!, '\"\n\tdevminaxroundsqrtclampifelsenotandorTrueFalse[]{}:@~^&|lambda"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=80), st.text(alphabet=EXPR_ALPHABET, max_size=60)))
def test_fuzz_random_text_only_raises_expression_error(text: str) -> None:
    with contextlib.suppress(ExpressionError):
        parse_expression(text)


NAMES = st.sampled_from(["a", "b", "p", "rbox_b.p", 'dev("x-1", "q")'])
NUMBERS = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300).map(repr),
    st.sampled_from(["0", "0.0", "True", "False", "1e308"]),
)
LEAVES = st.one_of(NAMES, NUMBERS)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(
        children,
        st.sampled_from(["+", "-", "*", "/", "//", "%", "<", "<=", ">", ">=", "==", "!=", "and", "or"]),
        children,
    )
    return st.one_of(
        binary.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "+", "not "]), children).map(lambda t: f"({t[0]}{t[1]})"),
        st.tuples(children, st.sampled_from(["2", "0.5", "-1", "16", "-16", "3"])).map(lambda t: f"({t[0]} ** {t[1]})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(st.sampled_from(["abs", "sqrt", "round"]), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(children, st.integers(-12, 12)).map(lambda t: f"round({t[0]}, {t[1]})"),
        st.tuples(st.sampled_from(["min", "max"]), st.lists(children, min_size=2, max_size=4)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
        st.tuples(children, children, children).map(lambda t: f"clamp({t[0]}, {t[1]}, {t[2]})"),
    )


EXPRESSIONS = st.recursive(LEAVES, _combine, max_leaves=12)
INPUT_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 0.0, -0.0, 1e308, -1e308, 5e-324]),
    st.text(max_size=5),
)
INPUTS = st.dictionaries(
    st.sampled_from([("", "a"), ("", "b"), ("", "p"), ("rbox_b", "p"), ("x-1", "q")]),
    st.tuples(INPUT_VALUES, st.sampled_from(list(Quality))),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS, INPUTS)
def test_fuzz_compiled_expressions_never_raise(text: str, inputs: dict[tuple[str, str], tuple[Value, Quality]]) -> None:
    try:
        expr = parse_expression(text)
    except ExpressionError:
        return  # e.g. nested deeper than allowed
    result = expr.evaluate(env(dict(inputs)))
    if result.value is None:
        assert result.reason
    else:
        assert isinstance(result.value, bool) or math.isfinite(result.value)
        assert result.quality is not None and result.quality.status.value != "bad"
    used = {k: inputs[k][1] for k in (result.inputs or {})}
    if result.value is not None and used:
        ranks = {"good": 0, "uncertain": 1, "bad": 2}
        worst = max(used.values(), key=lambda q: ranks[q.status.value])
        assert ranks[result.quality.status.value] == ranks[worst.status.value]  # type: ignore[union-attr]

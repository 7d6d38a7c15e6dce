"""A small, safe expression language for rules and computed points.

The text is parsed with Python's ``ast`` (``mode="eval"``) and only this subset is accepted:

- numbers and ``True``/``False``;
- property names of the rule's own device (``outlet_pressure``);
- properties of other devices: ``rbox_b.outlet_pressure`` when the device id is a plain name
  (dots allowed: ``site.rbox.outlet_pressure`` is device ``site.rbox``), or the quoted form
  ``dev("rbox-b", "outlet_pressure")`` for any device id (ids may contain ``-``);
- unary ``+ - not``; binary ``+ - * / // % **`` (the exponent must be a number literal with
  ``|exponent| <= 16``); chained comparisons ``< <= > >= == !=``; ``and``/``or``; ``a if c else b``;
- calls to ``abs``, ``min``, ``max``, ``round``, ``sqrt`` and ``clamp(x, lo, hi)``.

Anything else is an :class:`ExpressionError` at compile time, with the 1-based column.  The tree
is compiled once into nested closures; nothing is passed to ``eval``/``compile``.

Arithmetic is done in floating point (booleans count as 0/1), comparisons and ``and``/``or``/``not``
give booleans.  :meth:`Expression.evaluate` never raises: a missing input, an input with bad
quality, a division by zero or a result that is not a finite number give a :class:`Result` whose
``value`` is None and whose ``reason`` says why.  The result's quality is the worst quality of the
inputs that were read (good < uncertain < bad); ``a if c else b`` and ``and``/``or`` only read what
they need, as in Python.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NoReturn

from gascore.records import Quality, QualityStatus, Reading, Value

MAX_SOURCE_CHARS = 1000
MAX_DEPTH = 32
MAX_EXPONENT = 16.0
MAX_ROUND_DIGITS = 12

Ref = tuple[str, str]
"""An input: (device id, property id).  The device is ``""`` for the evaluating rule's own device."""

Resolver = Callable[[str, str], Reading | None]
"""Returns the latest reading of (device, property), device ``""`` meaning "this device"."""

Kind = Literal["bool", "number"]

_PROPERTY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RANK = {Quality.GOOD: 0}
_RANK.update({q: (1 if q.status is QualityStatus.UNCERTAIN else 2) for q in Quality if q is not Quality.GOOD})
CALC_FAILED = Quality.BAD_OUT_OF_RANGE  # quality of a result that could not be computed from good inputs


class ExpressionError(ValueError):
    """The expression text is not acceptable.  ``column`` is 1-based (None when unknown)."""

    def __init__(self, message: str, column: int | None = None) -> None:
        self.message = message
        self.column = column
        super().__init__(f"column {column}: {message}" if column else message)


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one evaluation.

    ``value`` is None when there is no result (``reason`` says why).  ``quality`` is the worst
    quality of the inputs read, the bad quality that stopped evaluation, :data:`CALC_FAILED` for an
    arithmetic failure, or None when an input had no value at all (nothing to report).
    ``inputs`` holds the values read, ``ts_ms`` the newest input timestamp (0 without inputs).
    """

    value: float | bool | None
    quality: Quality | None
    reason: str = ""
    inputs: dict[Ref, Value] | None = None
    ts_ms: int = 0


class _NoResult(Exception):  # internal control flow, never escapes evaluate()
    def __init__(self, reason: str, quality: Quality | None) -> None:
        self.reason = reason
        self.quality = quality


class _Ctx:
    __slots__ = ("inputs", "rank", "resolve", "ts", "worst")

    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve
        self.inputs: dict[Ref, Value] = {}
        self.worst = Quality.GOOD
        self.rank = 0
        self.ts = 0


Num = float | bool
Fn = Callable[[_Ctx], Num]


class Expression:
    """A compiled expression.  ``refs`` lists every input it may read; ``kind`` is its static type
    ("number" for a bare input, whose value passes through: ``single_input`` names it)."""

    __slots__ = ("_fn", "kind", "refs", "single_input", "source")

    def __init__(self, source: str, fn: Fn, refs: frozenset[Ref], kind: Kind, single_input: Ref | None = None) -> None:
        self.source = source
        self.refs = refs
        self.kind: Kind = kind
        self.single_input = single_input
        self._fn = fn

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(self, resolve: Resolver) -> Result:
        ctx = _Ctx(resolve)
        try:
            value = self._fn(ctx)
        except _NoResult as stop:
            return Result(None, stop.quality, stop.reason, ctx.inputs, ctx.ts)
        except (ArithmeticError, ValueError, TypeError) as err:  # defence in depth; the nodes guard
            return Result(None, CALC_FAILED, f"cannot compute: {err}", ctx.inputs, ctx.ts)
        return Result(value, ctx.worst, "", ctx.inputs, ctx.ts)


def parse_expression(source: str) -> Expression:
    """Compile ``source``.  Raises :class:`ExpressionError` (and nothing else) when it is not allowed."""
    if not isinstance(source, str):
        raise ExpressionError("an expression must be text")
    if len(source) > MAX_SOURCE_CHARS:
        raise ExpressionError(f"expression longer than {MAX_SOURCE_CHARS} characters")
    # YAML block scalars may wrap long expressions; columns then count in the joined line.
    text = source.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    if not text.strip():
        raise ExpressionError("empty expression")
    lead = len(text) - len(text.lstrip())  # eval mode refuses leading blanks ("unexpected indent")
    body = text[lead:]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "1and x", "\\d": a SyntaxError here, not a warning on stderr
            tree = ast.parse(body, mode="eval")
    except SyntaxError as err:
        column = (err.offset or len(body) + 1) + lead  # offset 0: the text ended too early
        raise ExpressionError(f"syntax error: {err.msg}", column) from None
    except (ValueError, RecursionError, MemoryError) as err:  # NUL bytes, absurd nesting
        raise ExpressionError(f"cannot parse: {type(err).__name__}") from None
    compiler = _Compiler(body, lead)
    fn, kind = compiler.node(tree.body, 0)
    refs = frozenset(compiler.refs)
    bare = isinstance(tree.body, ast.Name | ast.Attribute) or (
        isinstance(tree.body, ast.Call) and isinstance(tree.body.func, ast.Name) and tree.body.func.id == "dev"
    )
    return Expression(source, fn, refs, kind, next(iter(refs)) if bare else None)


# ---- compiler ------------------------------------------------------------------------------


_FUNCTIONS: dict[str, tuple[int, int]] = {  # name → (min args, max args)
    "abs": (1, 1),
    "min": (2, 16),
    "max": (2, 16),
    "round": (1, 2),
    "sqrt": (1, 1),
    "clamp": (3, 3),
}

_NOT_ALLOWED = {
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.Subscript: 'subscripts (write dev("device-id", "property") for another device)',
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Set: "sets",
    ast.Dict: "dicts",
    ast.NamedExpr: "assignment (:=)",
    ast.JoinedStr: "f-strings",
    ast.Starred: "*arguments",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slices",
}


class _Compiler:
    def __init__(self, text: str, lead: int) -> None:
        self.encoded = text.encode("utf-8", "surrogatepass")
        self.lead = lead
        self.refs: set[Ref] = set()

    def column(self, node: ast.AST) -> int | None:
        offset = getattr(node, "col_offset", None)
        return None if offset is None else self.column_at(offset)

    def column_at(self, offset: int) -> int:
        """1-based character column of a UTF-8 byte offset (what ``ast`` reports)."""
        return len(self.encoded[:offset].decode("utf-8", "ignore")) + 1 + self.lead

    def fail(self, node: ast.AST, message: str) -> NoReturn:
        raise ExpressionError(message, self.column(node))

    def node(self, node: ast.AST, depth: int) -> tuple[Fn, Kind]:
        if depth > MAX_DEPTH:
            self.fail(node, f"expression nested more than {MAX_DEPTH} levels deep")
        d = depth + 1
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name | ast.Attribute):
            return self.reference(node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, d)
        if isinstance(node, ast.BinOp):
            return self.binary(node, d)
        if isinstance(node, ast.Compare):
            return self.compare(node, d)
        if isinstance(node, ast.BoolOp):
            return self.boolean(node, d)
        if isinstance(node, ast.IfExp):
            return self.conditional(node, d)
        if isinstance(node, ast.Call):
            return self.call(node, d)
        what = _NOT_ALLOWED.get(type(node), type(node).__name__)
        self.fail(node, f"{what} not allowed in an expression")

    # -- leaves

    def constant(self, node: ast.Constant) -> tuple[Fn, Kind]:
        value = node.value
        if isinstance(value, bool):
            flag: bool = value
            return (lambda ctx: flag), "bool"
        if isinstance(value, int | float):
            try:
                number = float(value)
            except OverflowError:
                self.fail(node, "number too large")
            if not math.isfinite(number):
                self.fail(node, "number too large")
            return (lambda ctx: number), "number"
        if isinstance(value, str):
            self.fail(node, 'text is not allowed (only inside dev("device-id", "property"))')
        self.fail(node, f"{type(value).__name__} literals are not allowed")

    def reference(self, node: ast.Name | ast.Attribute) -> tuple[Fn, Kind]:
        parts: list[tuple[str, int]] = []  # (name, byte offset where it starts)
        cur: ast.AST = node
        while isinstance(cur, ast.Attribute):
            end = cur.end_col_offset if cur.end_col_offset is not None else cur.col_offset
            parts.append((cur.attr, end - len(cur.attr.encode())))
            cur = cur.value
        if not isinstance(cur, ast.Name):
            self.fail(node, 'attributes are only allowed on device names (device.property, or dev("id", "property"))')
        parts.append((cur.id, cur.col_offset))
        parts.reverse()
        for part, offset in parts:
            if part.startswith("_"):
                raise ExpressionError(f"names starting with '_' are not allowed: {part!r}", self.column_at(offset))
        names = [p for p, _ in parts]
        if len(names) == 1 and names[0] in _FUNCTIONS:
            self.fail(node, f"{names[0]} is a function: call it, e.g. {names[0]}(x)")
        if len(names) == 1 and names[0] == "dev":
            self.fail(node, 'dev is written dev("device-id", "property")')
        device, prop = ".".join(names[:-1]), names[-1]
        return self.make_ref(node, device, prop, self.column_at(parts[-1][1])), "number"

    def make_ref(self, node: ast.AST, device: str, prop: str, prop_column: int | None = None) -> Fn:
        if not _PROPERTY.match(prop):
            message = f"{prop!r} is not a property id (lower case letters, digits and _)"
            raise ExpressionError(message, prop_column or self.column(node))
        if device and not _DEVICE.match(device):
            self.fail(node, f"{device!r} is not a device id")
        ref: Ref = (device, prop)
        self.refs.add(ref)
        label = f"{device}.{prop}" if device else prop
        rank_of = _RANK

        def load(ctx: _Ctx) -> Num:
            reading = ctx.resolve(device, prop)
            if reading is None:
                raise _NoResult(f"no value yet for {label}", None)
            quality = reading.quality
            value = reading.value
            ctx.inputs[ref] = value
            if reading.ts_ms > ctx.ts:
                ctx.ts = reading.ts_ms
            rank = rank_of[quality]
            if rank > ctx.rank:
                ctx.rank, ctx.worst = rank, quality
            if rank == 2:
                raise _NoResult(f"{label} is {quality.value}", quality)
            if isinstance(value, bool):
                return value
            if isinstance(value, int | float):
                number = float(value)
                if math.isfinite(number):
                    return number
            raise _NoResult(f"{label} is not a number ({value!r})", None)

        return load

    # -- operators

    def unary(self, node: ast.UnaryOp, depth: int) -> tuple[Fn, Kind]:
        operand, _ = self.node(node.operand, depth)
        if isinstance(node.op, ast.Not):
            return (lambda ctx: not operand(ctx)), "bool"
        if isinstance(node.op, ast.USub):
            return (lambda ctx: -float(operand(ctx))), "number"
        if isinstance(node.op, ast.UAdd):
            return (lambda ctx: float(operand(ctx))), "number"
        self.fail(node, "operator ~ not allowed")

    def binary(self, node: ast.BinOp, depth: int) -> tuple[Fn, Kind]:
        left, _ = self.node(node.left, depth)
        op = node.op
        if isinstance(op, ast.Pow):
            exponent = _literal_number(node.right)
            if exponent is None:
                self.fail(node.right, "the exponent must be a number literal")
            if abs(exponent) > MAX_EXPONENT:
                self.fail(node.right, f"exponent larger than {MAX_EXPONENT:g}")
            return _guarded(lambda ctx: math.pow(left(ctx), exponent)), "number"
        right, _ = self.node(node.right, depth)
        fn: Fn
        if isinstance(op, ast.Add):
            fn = lambda ctx: float(left(ctx)) + float(right(ctx))  # noqa: E731
        elif isinstance(op, ast.Sub):
            fn = lambda ctx: float(left(ctx)) - float(right(ctx))  # noqa: E731
        elif isinstance(op, ast.Mult):
            fn = lambda ctx: float(left(ctx)) * float(right(ctx))  # noqa: E731
        elif isinstance(op, ast.Div):
            fn = lambda ctx: float(left(ctx)) / float(right(ctx))  # noqa: E731
        elif isinstance(op, ast.FloorDiv):
            fn = lambda ctx: float(left(ctx)) // float(right(ctx))  # noqa: E731
        elif isinstance(op, ast.Mod):
            fn = lambda ctx: float(left(ctx)) % float(right(ctx))  # noqa: E731
        else:
            self.fail(node, f"operator {type(op).__name__} not allowed")
        return _guarded(fn), "number"

    def compare(self, node: ast.Compare, depth: int) -> tuple[Fn, Kind]:
        first, _ = self.node(node.left, depth)
        steps: list[tuple[Callable[[Num, Num], bool], Fn]] = []
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            test = _COMPARE.get(type(op))
            if test is None:
                self.fail(comparator, f"comparison {type(op).__name__} not allowed")
            fn, _ = self.node(comparator, depth)
            steps.append((test, fn))
        if len(steps) == 1:
            test0, second = steps[0]
            return (lambda ctx: test0(first(ctx), second(ctx))), "bool"

        def chained(ctx: _Ctx) -> Num:
            left = first(ctx)
            for test, fn in steps:
                right = fn(ctx)
                if not test(left, right):
                    return False
                left = right
            return True

        return chained, "bool"

    def boolean(self, node: ast.BoolOp, depth: int) -> tuple[Fn, Kind]:
        parts = tuple(self.node(v, depth)[0] for v in node.values)
        if isinstance(node.op, ast.And):
            return (lambda ctx: all(p(ctx) for p in parts)), "bool"
        return (lambda ctx: any(p(ctx) for p in parts)), "bool"

    def conditional(self, node: ast.IfExp, depth: int) -> tuple[Fn, Kind]:
        test, _ = self.node(node.test, depth)
        body, kind_a = self.node(node.body, depth)
        orelse, kind_b = self.node(node.orelse, depth)
        kind: Kind = "bool" if kind_a == kind_b == "bool" else "number"
        return (lambda ctx: body(ctx) if test(ctx) else orelse(ctx)), kind

    def call(self, node: ast.Call, depth: int) -> tuple[Fn, Kind]:
        if not isinstance(node.func, ast.Name):
            self.fail(node, "only abs, min, max, round, sqrt, clamp and dev may be called")
        name = node.func.id
        if node.keywords:
            self.fail(node.keywords[0].value, f"{name}() takes no keyword arguments")
        if name == "dev":
            return self.dev(node), "number"
        arity = _FUNCTIONS.get(name)
        if arity is None:
            self.fail(node, f"unknown function {name!r} (allowed: {', '.join(_FUNCTIONS)}, dev)")
        lo, hi = arity
        if not lo <= len(node.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            self.fail(node, f"{name}() takes {want} arguments, not {len(node.args)}")
        if name == "round":
            digits = 0
            if len(node.args) == 2:
                literal = _literal_number(node.args[1])
                if literal is None or literal != int(literal) or abs(literal) > MAX_ROUND_DIGITS:
                    self.fail(node.args[1], f"round() digits must be a whole number literal up to {MAX_ROUND_DIGITS}")
                digits = int(literal)
            x, _ = self.node(node.args[0], depth)
            return _guarded(lambda ctx: float(round(float(x(ctx)), digits))), "number"
        args = tuple(self.node(a, depth)[0] for a in node.args)
        if name == "abs":
            (a,) = args
            return (lambda ctx: abs(float(a(ctx)))), "number"
        if name == "sqrt":
            (a,) = args
            return _guarded(lambda ctx: math.sqrt(a(ctx))), "number"
        if name == "clamp":
            x, low, high = args
            return (lambda ctx: min(max(float(x(ctx)), float(low(ctx))), float(high(ctx)))), "number"
        if name == "min":
            return (lambda ctx: min(float(a(ctx)) for a in args)), "number"
        return (lambda ctx: max(float(a(ctx)) for a in args)), "number"

    def dev(self, node: ast.Call) -> Fn:
        args = node.args
        if len(args) != 2 or not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
            self.fail(node, 'write dev("device-id", "property") with two quoted texts')
        device, prop = (a.value for a in args if isinstance(a, ast.Constant))
        if not device:
            self.fail(args[0], "empty device id")
        return self.make_ref(node, str(device), str(prop))


def _literal_number(node: ast.AST) -> float | None:
    sign = 1.0
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        if isinstance(node.op, ast.USub):
            sign = -sign
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        try:
            value = sign * float(node.value)
        except OverflowError:
            return None
        return value if math.isfinite(value) else None
    return None


def _guarded(fn: Fn) -> Fn:
    """Arithmetic that may fail or overflow: turn that into "no result"."""

    def run(ctx: _Ctx) -> Num:
        try:
            value = fn(ctx)
        except ZeroDivisionError:
            raise _NoResult("division by zero", CALC_FAILED) from None
        except OverflowError:
            raise _NoResult("result too large", CALC_FAILED) from None
        except ValueError:
            raise _NoResult(
                "not defined for these values (sqrt of a negative number, 0 ** -1, ...)", CALC_FAILED
            ) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise _NoResult("result is not a finite number", CALC_FAILED)
        return value

    return run


def _lt(a: Num, b: Num) -> bool:
    return a < b


def _le(a: Num, b: Num) -> bool:
    return a <= b


def _gt(a: Num, b: Num) -> bool:
    return a > b


def _ge(a: Num, b: Num) -> bool:
    return a >= b


def _eq(a: Num, b: Num) -> bool:
    return a == b


def _ne(a: Num, b: Num) -> bool:
    return a != b


_COMPARE: dict[type[ast.cmpop], Callable[[Num, Num], bool]] = {
    ast.Lt: _lt,
    ast.LtE: _le,
    ast.Gt: _gt,
    ast.GtE: _ge,
    ast.Eq: _eq,
    ast.NotEq: _ne,
}

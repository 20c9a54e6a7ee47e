"""The text form of schedules: a small expression language read by a real parser.

Grammar (Python expression syntax, of which only this subset is accepted)::

    spec     := seq
    seq      := sum ('>>' sum)*              # run one after the other, relative time
    sum      := term ('+' number)*           # shift by a constant
    term     := factor ('*' factor)*         # scale by a number, or multiply schedules
    factor   := call | number | '(' seq ')'
    call     := NAME '(' [args] ')'
    args     := arg (',' arg)* ; arg := value | NAME '=' value
    value    := seq | number | string | list | true | false | none
    list     := '[' [value (',' value)*] ']'

The text is parsed by `ast.parse(mode="eval")` and the tree is walked by hand: nothing in it is
ever evaluated as Python.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import math
import warnings
from typing import Any

from lrkit.schedules._base import Schedule, ScheduleError, _is_real, registry

MAX_SPEC_LENGTH = 10_000

_CONSTANT_NAMES = {"true": True, "false": False, "none": None, "null": None}


class SpecError(ScheduleError):
    """A schedule spec that cannot be read; the message points at the offending place.

    Attributes:
        spec: the text.
        position: character offset of the problem in `spec` (or None).
    """

    def __init__(self, message: str, spec: str = "", position: int | None = None) -> None:
        self.spec = spec
        self.position = position
        self.reason = message
        text = f"invalid schedule spec: {message}"
        if spec and position is not None and "\n" not in spec and len(spec) <= 200:
            text += f"\n  {spec}\n  {' ' * position}^"
        super().__init__(text)


def spec_names() -> list[str]:
    """Names usable as calls in a spec (every registered schedule except operators)."""
    return sorted(n for n in registry() if n not in _OPERATOR_TYPES)


_OPERATOR_TYPES = {"sequence", "affine", "product"}


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self._line_starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self._line_starts.append(i + 1)

    def pos(self, node: ast.AST) -> int | None:
        lineno = getattr(node, "lineno", None)
        col = getattr(node, "col_offset", None)
        if lineno is None or col is None:
            return None
        start = self._line_starts[lineno - 1] if lineno - 1 < len(self._line_starts) else 0
        line = self.text[start:].split("\n", 1)[0]
        # ast column offsets count UTF-8 bytes
        prefix = line.encode("utf-8")[:col].decode("utf-8", errors="ignore")
        return start + len(prefix)

    def fail(self, node: ast.AST, message: str) -> SpecError:
        return SpecError(message, self.text, self.pos(node))

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or v is None or isinstance(v, str):
                return v
            if isinstance(v, (int, float)):
                return v
            raise self.fail(node, f"unsupported literal {v!r}")
        if isinstance(node, ast.Name):
            if node.id.lower() in _CONSTANT_NAMES:
                return _CONSTANT_NAMES[node.id.lower()]
            if node.id in registry():
                raise self.fail(node, f"{node.id} needs arguments: {node.id}(...)")
            raise self.fail(node, f"unknown name {node.id!r}{_suggest(node.id)}")
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self.value(node.operand)
            if not _is_real(v):
                raise self.fail(node, "a sign can only be put in front of a number")
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(
            node, f"unsupported syntax ({type(node).__name__}); a spec is calls joined by >>, * and +"
        )

    def binop(self, node: ast.BinOp) -> Any:
        a, b = self.value(node.left), self.value(node.right)
        op = node.op
        try:
            if isinstance(op, ast.RShift):
                if isinstance(a, Schedule) and isinstance(b, Schedule):
                    return a >> b
                raise self.fail(node, ">> joins two schedules, e.g. warmup(10) >> cosine(0.1, steps=90)")
            if isinstance(op, ast.Mult):
                if _is_real(a) and _is_real(b):
                    return a * b
                if isinstance(a, Schedule) and (isinstance(b, Schedule) or _is_real(b)):
                    return a * b
                if _is_real(a) and isinstance(b, Schedule):
                    return a * b
                raise self.fail(node, "* multiplies schedules and numbers")
            if isinstance(op, ast.Add):
                if _is_real(a) and _is_real(b):
                    return a + b
                if isinstance(a, Schedule) and _is_real(b):
                    return a + b
                if _is_real(a) and isinstance(b, Schedule):
                    return b + a
                raise self.fail(
                    node, "+ adds a number to a schedule (a floor), e.g. cosine(0.1, steps=100) + 1e-5"
                )
            if isinstance(op, ast.Sub) and _is_real(a) and _is_real(b):
                return a - b
        except ScheduleError as e:
            if isinstance(e, SpecError):
                raise
            raise self.fail(node, str(e)) from None
        raise self.fail(node, f"unsupported operator {type(op).__name__}; use >>, * or +")

    def call(self, node: ast.Call) -> Schedule:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, "only plain schedule names can be called, e.g. cosine(...)")
        name = node.func.id
        cls = registry().get(name)
        if cls is None or name in _OPERATOR_TYPES:
            raise self.fail(
                node.func,
                f"unknown schedule {name!r}{_suggest(name)}; valid names: {', '.join(spec_names())}",
            )
        params = inspect.signature(cls).parameters
        positional = [p for p in params.values() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        args: dict[str, Any] = {}
        for i, a in enumerate(node.args):
            if isinstance(a, ast.Starred):
                raise self.fail(a, "* arguments are not supported")
            if i >= len(positional):
                raise self.fail(
                    a,
                    f"{name} takes at most {len(positional)} positional "
                    f"argument(s): {', '.join(p.name for p in positional)}",
                )
            args[positional[i].name] = self.value(a)
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail(kw.value, "** arguments are not supported")
            if kw.arg not in params:
                raise self.fail(
                    kw.value,
                    f"{name} has no argument {kw.arg!r}{_suggest(kw.arg, list(params))}; "
                    f"valid: {', '.join(params)}",
                )
            if kw.arg in args:
                raise self.fail(kw.value, f"{name}: argument {kw.arg!r} given twice")
            args[kw.arg] = self.value(kw.value)
        missing = [
            p.name for p in params.values() if p.default is inspect.Parameter.empty and p.name not in args
        ]
        if missing:
            raise self.fail(node, f"{name} needs {', '.join(repr(m) for m in missing)}")
        args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
        try:
            return cls(**args)
        except SpecError:
            raise
        except (ScheduleError, TypeError, OverflowError) as e:
            raise self.fail(node, str(e)) from None


def _suggest(word: str, options: list[str] | None = None) -> str:
    pool = options if options is not None else spec_names()
    close = difflib.get_close_matches(word, pool, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse(text: str) -> Schedule:
    """Read a schedule from its text form.

    >>> parse("warmup(10) >> cosine(0.1, steps=90)")(10)
    0.1

    Raises:
        SpecError: the text is not a valid spec; the message points at the place.
    """
    if isinstance(text, Schedule):
        return text
    if not isinstance(text, str):
        raise SpecError(f"a spec must be a string, got {type(text).__name__} {text!r}")
    if len(text) > MAX_SPEC_LENGTH:
        raise SpecError(f"spec is {len(text)} characters long; at most {MAX_SPEC_LENGTH} are read")
    stripped = text.strip()
    if not stripped:
        raise SpecError("the spec is empty; e.g. cosine(0.1, steps=1000)", text, 0)
    offset = len(text) - len(text.lstrip())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(stripped, mode="eval")
    except SyntaxError as e:
        pos = None
        if e.lineno == 1 and e.offset is not None:
            pos = offset + max(e.offset - 1, 0)
        raise SpecError(f"syntax error: {e.msg}", text, pos) from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as e:
        raise SpecError(f"cannot read the spec: {type(e).__name__}: {e}", text) from None
    reader = _Reader(text if offset == 0 else stripped)
    try:
        result = reader.value(tree.body)
    except SpecError as e:
        if offset and e.position is not None:
            raise SpecError(e.reason, text, e.position + offset) from None
        raise
    except RecursionError:
        raise SpecError("the spec is nested too deeply", text) from None
    if not isinstance(result, Schedule):
        raise SpecError(
            f"a spec must describe a schedule, got the value {result!r}; e.g. constant({result!r})"
            if _is_real(result)
            else f"a spec must describe a schedule, got {result!r}",
            text,
            offset,
        )
    try:
        result.check_complete()
    except ScheduleError as e:
        raise SpecError(str(e), text, offset) from None
    return result


# -- formatting --------------------------------------------------------------------------------

_PREC_SEQ, _PREC_SUM, _PREC_TERM, _PREC_ATOM = 0, 1, 2, 3


def _fmt_value(v: Any) -> str:
    if isinstance(v, Schedule):
        return _fmt(v, _PREC_SEQ)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else json.dumps(repr(v))  # a spec has no infinity
    if isinstance(v, tuple):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    return str(v)


def _fmt(s: Schedule, ctx: int) -> str:
    from lrkit.schedules._compose import Affine, Product, Sequence

    if isinstance(s, Sequence):
        text, prec = " >> ".join(_fmt(p, _PREC_SUM) for p in s.parts), _PREC_SEQ
    elif isinstance(s, Product):
        text, prec = " * ".join(_fmt(f, _PREC_ATOM) for f in s.factors), _PREC_TERM
    elif isinstance(s, Affine):
        inner = _fmt(s.schedule, _PREC_TERM)
        if s.scale == 1.0 and s.shift:
            text, prec = inner, _PREC_TERM
        else:
            inner = _fmt(s.schedule, _PREC_ATOM)
            text, prec = f"{s.scale!r} * {inner}", _PREC_TERM
        if s.shift:
            text, prec = f"{text} + {s.shift!r}", _PREC_SUM
    else:
        text, prec = _fmt_call(s), _PREC_ATOM
    return f"({text})" if prec < ctx else text


def _fmt_call(s: Schedule) -> str:
    params = inspect.signature(type(s)).parameters
    out: list[str] = []
    keyword = False
    n_positional = s.print_positional
    for f in dataclasses.fields(s):  # type: ignore[arg-type]
        v = getattr(s, f.name)
        has_default = f.default is not dataclasses.MISSING
        if has_default and type(v) is type(f.default) and v == f.default:
            keyword = True
            continue
        p = params[f.name]
        if (
            not keyword
            and len(out) < n_positional
            and not has_default
            and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        ):
            out.append(_fmt_value(v))
        else:
            keyword = True
            out.append(f"{f.name}={_fmt_value(v)}")
    return f"{s.name}({', '.join(out)})"


def format_spec(s: Schedule) -> str:
    """The text form of `s` (inverse of `parse`)."""
    return _fmt(s, _PREC_SEQ)

"""Reading MMSegmentation config files without executing them.

A config is Python text: top-level assignments of literals, `dict(...)` calls, names assigned before
in the same file, arithmetic, and comprehensions over such values (the zoo's ADE20K base builds its
test-time views with one). It is parsed with `ast` and only those forms are evaluated; anything else,
an import or a call of another function, is an error naming the file and line, and nothing runs.
`_base_` files (paths relative to the file) are read first and merged as mmengine merges them: dicts
key by key, a dict with `_delete_=True` replacing instead, any other value replacing.
"""
from __future__ import annotations

import ast
import operator
from pathlib import Path
from typing import Any

from ...errors import SegmenterError
from ..strict import _CONTAINERS, MAX_VALUE_DEPTH, MAX_VALUE_SIZE, Sizes
from .chain import MAX_FILE_BYTES, read_chain

MAX_WORK = 2_000_000  # steps (nodes, iterations, items built or compared) for one config file
MAX_INT_BITS = 256  # integers beyond this are not config values
MAX_DEPTH = 100  # nesting of expressions (the values they build: strict.MAX_VALUE_DEPTH)

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
_PLAIN_CALLS = {"dict": dict, "list": list, "tuple": tuple, "range": range}
# what evaluating can raise on values of the config's own making: a one-line error naming the line
_VALUE_ERRORS = (TypeError, ValueError, ArithmeticError, IndexError, KeyError, RecursionError, MemoryError)


class _Evaluator:
    """Evaluates the allowed expressions of one config file; `names` holds its assignments so far. Every value it
    builds is bounded (MAX_VALUE_SIZE, MAX_DEPTH, MAX_INT_BITS) and so is its work (MAX_WORK): checked before an
    operation that could exceed them runs, not after."""

    def __init__(self, source: str) -> None:
        self.source, self.names = source, {}
        self.sizes, self.depth, self.line = Sizes(), 0, 0

    def fail(self, node: ast.AST, what: str) -> SegmenterError:
        return SegmenterError(f"{self.source}:{getattr(node, 'lineno', '?')}: {what} is not allowed in a config "
                              "read without running it (only literals, dict(...), names assigned before, arithmetic "
                              "and comprehensions)")

    def error(self, what: str) -> SegmenterError:
        return SegmenterError(f"{self.source}:{self.line}: {what}")

    def spend(self, steps: int) -> None:
        self.sizes.steps += steps
        if self.sizes.steps > MAX_WORK:
            raise self.error(f"evaluating the config takes more than {MAX_WORK:,} steps; a config is a few "
                             "thousand values, not a computation")

    def check(self, value: Any) -> Any:
        """A value built here: refused when too large, too deep, or an integer too long."""
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
            raise self.error(f"an integer of {value.bit_length()} bits; config values are below 2**{MAX_INT_BITS}")
        if isinstance(value, (str, bytes) + _CONTAINERS):
            size, depth = self.sizes.of(value)
            self.spend(0)
            if size > MAX_VALUE_SIZE:
                raise self.error(f"a value of more than {MAX_VALUE_SIZE:,} items or characters (written out); a "
                                 "config does not hold such values")
            if depth > MAX_VALUE_DEPTH:
                raise self.error(f"a value nested more than {MAX_VALUE_DEPTH} levels deep")
        return value

    def value(self, node: ast.AST, scope: dict | None = None) -> Any:
        self.depth += 1
        self.line = getattr(node, "lineno", self.line)
        try:
            if self.depth > MAX_DEPTH:
                raise self.error(f"expressions nested more than {MAX_DEPTH} levels deep")
            self.spend(1)
            return self.check(self._value(node, self.names if scope is None else scope))
        finally:
            self.depth -= 1

    def _value(self, node: ast.AST, scope: dict) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in scope:
                return scope[node.id]
            raise self.error(f"name '{node.id}' is not assigned before it is used")
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            if any(isinstance(e, ast.Starred) for e in node.elts):
                raise self.fail(node, "unpacking with *")
            items = [self.value(e, scope) for e in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else set(items) if isinstance(node, ast.Set) else items
        if isinstance(node, ast.Dict):
            out = {}
            for k, v in zip(node.keys, node.values):
                if k is None:  # {**other}
                    out.update(self._mapping(v, scope))
                else:
                    out[self.value(k, scope)] = self.value(v, scope)
            return out
        if isinstance(node, ast.Call):
            return self._call(node, scope)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self.value(node.left, scope), self.value(node.right, scope)
            self._bound_binary(node.op, left, right)
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.value(node.operand, scope))
        if isinstance(node, ast.BoolOp):
            result = self.value(node.values[0], scope)
            for v in node.values[1:]:  # short-circuit, as Python evaluates it
                if (not result) if isinstance(node.op, ast.And) else result:
                    break
                result = self.value(v, scope)
            return result
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            left = self.value(node.left, scope)
            for op, right_node in zip(node.ops, node.comparators):
                right = self.value(right_node, scope)
                self.spend(min(self.sizes.of(left)[0], self.sizes.of(right)[0]) if type(op) not in
                           (ast.In, ast.NotIn) else self.sizes.of(right)[0])
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.value(node.body if self.value(node.test, scope) else node.orelse, scope)
        if isinstance(node, ast.Subscript):
            return self.value(node.value, scope)[self.value(node.slice, scope)]
        if isinstance(node, ast.Slice):
            return slice(*(None if p is None else self.value(p, scope) for p in (node.lower, node.upper, node.step)))
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            return self._comprehension(node, scope)
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                if isinstance(v, ast.FormattedValue):
                    if v.format_spec is not None or v.conversion != -1:
                        raise self.fail(v, "formatting in an f-string (a format spec or conversion)")
                    parts.append(str(self.value(v.value, scope)))
                else:
                    parts.append(v.value)
            return "".join(parts)
        raise self.fail(node, type(node).__name__)

    def _bound_binary(self, op: ast.operator, left: Any, right: Any) -> None:
        """Refuse, before it runs, an operation whose result would exceed the bounds (repetition, powers, long
        products) or that formats strings."""
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        if isinstance(op, ast.Mod) and isinstance(left, (str, bytes)):
            raise self.error("string formatting with % is not allowed in a config read without running it")
        if isinstance(op, ast.Pow) and isinstance(left, int) and isinstance(right, int) and right > 0 and \
                abs(left) > 1 and left.bit_length() * right > 2 * MAX_INT_BITS:
            raise self.error(f"{left}**{right} is too large for a config value")
        if isinstance(op, ast.Mult):
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > 2 * MAX_INT_BITS:
                    raise self.error("a product too large for a config value")
            elif not (number(left) and number(right)):
                seq, times = (left, right) if isinstance(right, int) else (right, left)
                if isinstance(times, int) and times > 0 and self.sizes.of(seq)[0] * times > MAX_VALUE_SIZE:
                    raise self.error(f"repeating a value {times} times gives more than {MAX_VALUE_SIZE:,} items or "
                                     "characters")
                self.spend(max(0, len(seq) * times) if isinstance(times, int) and hasattr(seq, "__len__") else 0)
        if isinstance(op, ast.Add) and not (number(left) and number(right)):
            if self.sizes.of(left)[0] + self.sizes.of(right)[0] > MAX_VALUE_SIZE:
                raise self.error(f"joining two values gives more than {MAX_VALUE_SIZE:,} items or characters")
            self.spend(len(left) + len(right) if hasattr(left, "__len__") and hasattr(right, "__len__") else 0)

    def _mapping(self, node: ast.AST, scope: dict) -> dict:
        value = self.value(node, scope)
        if not isinstance(value, dict):
            raise self.error("** needs a dict")
        return value

    def _call(self, node: ast.Call, scope: dict) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in _PLAIN_CALLS or node.func.id in scope:
            what = ast.unparse(node.func) if hasattr(ast, "unparse") else "a call"
            raise self.fail(node, f"calling {what}()")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, "unpacking with *")
        args = [self.value(a, scope) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                kwargs.update(self._mapping(kw.value, scope))
            else:
                kwargs[kw.arg] = self.value(kw.value, scope)
        for arg in args:  # list(range(10**9)) is refused before it is built
            if isinstance(arg, _CONTAINERS) and node.func.id != "range" and self.sizes.of(arg)[0] > MAX_VALUE_SIZE:
                raise self.error(f"{node.func.id}() of more than {MAX_VALUE_SIZE:,} items")
        return _PLAIN_CALLS[node.func.id](*args, **kwargs)

    def _comprehension(self, node, scope: dict) -> Any:
        results, size = [], [1]

        def walk(generators, local):
            if not generators:
                if isinstance(node, ast.DictComp):
                    item = (self.value(node.key, local), self.value(node.value, local))
                else:
                    item = self.value(node.elt, local)
                size[0] += self.sizes.of(item)[0]
                if size[0] > MAX_VALUE_SIZE:
                    raise self.error(f"a comprehension building more than {MAX_VALUE_SIZE:,} items or characters")
                results.append(item)
                return
            gen = generators[0]
            if gen.is_async:
                raise self.fail(node, "an async comprehension")
            for item in self.value(gen.iter, local):
                self.spend(1)
                inner = dict(local)
                self._bind(gen.target, item, inner)
                if all(self.value(cond, inner) for cond in gen.ifs):
                    walk(generators[1:], inner)

        walk(node.generators, dict(scope))
        if isinstance(node, ast.DictComp):
            return dict(results)
        return set(results) if isinstance(node, ast.SetComp) else results

    def _bind(self, target: ast.AST, value: Any, scope: dict) -> None:
        if isinstance(target, ast.Name):
            scope[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            if any(isinstance(t, ast.Starred) for t in target.elts):
                raise self.fail(target, "unpacking with *")
            if not isinstance(value, (list, tuple, str, range)):
                raise self.error(f"cannot unpack a {type(value).__name__} into {len(target.elts)} names")
            values = list(value)
            if len(values) != len(target.elts):
                raise self.error(f"cannot unpack {len(values)} values into {len(target.elts)} names")
            for t, v in zip(target.elts, values):
                self._bind(t, v, scope)
        else:
            raise self.fail(target, f"assigning to {type(target).__name__}")


def evaluate_config_text(text: str, source: str) -> dict:
    """The top-level assignments of a config's text, evaluated within bounds; `source` names it in errors."""
    if len(text) > MAX_FILE_BYTES:
        raise SegmenterError(f"{source}: a config of {len(text):,} characters; config files are below "
                             f"{MAX_FILE_BYTES:,}")
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as exc:
        raise SegmenterError(f"{source}:{exc.lineno}: not a Python config ({exc.msg})") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # a huge integer's text, or nesting the parser refuses
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise SegmenterError(f"{source}: not a readable Python config ({reason})") from None
    evaluator = _Evaluator(source)
    for statement in tree.body:
        evaluator.line = statement.lineno
        try:
            _statement(evaluator, statement)
        except SegmenterError:
            raise
        except _VALUE_ERRORS as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
            raise evaluator.error(f"cannot evaluate ({type(exc).__name__}: {reason})") from None
    evaluator.check(evaluator.names)
    return evaluator.names


def _statement(evaluator: _Evaluator, statement: ast.stmt) -> None:
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return  # a docstring or a bare string
    if isinstance(statement, ast.Assign):
        value = evaluator.value(statement.value)
        for target in statement.targets:
            evaluator._bind(target, value, evaluator.names)
        return
    if isinstance(statement, ast.AnnAssign) and statement.value is not None:
        evaluator._bind(statement.target, evaluator.value(statement.value), evaluator.names)
        return
    what = {ast.Import: "an import", ast.ImportFrom: "an import", ast.FunctionDef: "a function definition",
            ast.ClassDef: "a class definition", ast.Expr: "an expression statement"}.get(type(statement),
                                                                                         type(statement).__name__)
    raise evaluator.fail(statement, what)


def merge(base: dict, child: dict) -> dict:
    """mmengine's merge: nested dicts key by key; `_delete_=True` in a child dict replaces the base's."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and value.get("_delete_", False):
            out[key] = _strip_delete({k: v for k, v in value.items() if k != "_delete_"})
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = _strip_delete(value)
    return out


def _strip_delete(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_delete(v) for k, v in value.items() if k != "_delete_"}
    return value


def read_config(path: str | Path) -> dict:
    """The config of a file, its `_base_` files (relative to it) merged under it."""
    return read_config_files(path)[0]


def read_config_files(path: str | Path) -> tuple[dict, tuple[Path, ...]]:
    """The config of a file with its `_base_` files merged under it (mmengine's rules: the bases side by side, a
    key set by two of them refused, the file merged over them), and every file read for it."""
    return read_chain(path, _parse, _combine)


def _parse(path: Path, text: str) -> tuple[dict, object]:
    if "{{" in text and "_base_." in text:
        raise SegmenterError(f"{path}: uses {{{{_base_.name}}}} substitution, which is not read here; give the "
                             "config as mmengine dumps it (Config.dump) instead")
    names = evaluate_config_text(text, str(path))
    bases = names.pop("_base_", None)
    return {k: v for k, v in names.items() if not (isinstance(k, str) and k.startswith("__"))}, bases


def _combine(path: Path, own: dict, inherited: list[dict]) -> dict:
    merged: dict = {}
    for base in inherited:
        clash = sorted((k for k in set(merged) & set(base)), key=str)
        if clash:
            raise SegmenterError(f"{path}: its _base_ files both set '{clash[0]}'; mmengine refuses that too")
        merged.update(base)
    return merge(merged, own)

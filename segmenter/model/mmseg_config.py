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

from ..errors import SegmenterError

MAX_BASES = 32  # _base_ files in one chain: a loop is a mistake

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
_PLAIN_CALLS = {"dict": dict, "list": list, "tuple": tuple, "range": range}


class _Evaluator:
    """Evaluates the allowed expressions of one config file; `names` holds its assignments so far."""

    def __init__(self, source: str) -> None:
        self.source, self.names = source, {}

    def fail(self, node: ast.AST, what: str) -> SegmenterError:
        return SegmenterError(f"{self.source}:{getattr(node, 'lineno', '?')}: {what} is not allowed in a config "
                              "read without running it (only literals, dict(...), names assigned before, arithmetic "
                              "and comprehensions)")

    def value(self, node: ast.AST, scope: dict | None = None) -> Any:
        scope = self.names if scope is None else scope
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in scope:
                return scope[node.id]
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            raise SegmenterError(f"{self.source}:{node.lineno}: name '{node.id}' is not assigned before it is used")
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
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
            return self._apply(node, _BINARY[type(node.op)], self.value(node.left, scope),
                               self.value(node.right, scope))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return self._apply(node, _UNARY[type(node.op)], self.value(node.operand, scope))
        if isinstance(node, ast.BoolOp):
            values = [self.value(v, scope) for v in node.values]
            result = values[0]
            for v in values[1:]:
                result = (result and v) if isinstance(node.op, ast.And) else (result or v)
            return result
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            left = self.value(node.left, scope)
            for op, right_node in zip(node.ops, node.comparators):
                right = self.value(right_node, scope)
                if not self._apply(node, _COMPARE[type(op)], left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.value(node.body if self.value(node.test, scope) else node.orelse, scope)
        if isinstance(node, ast.Subscript):
            target, index = self.value(node.value, scope), self.value(node.slice, scope)
            try:
                return target[index]
            except (KeyError, IndexError, TypeError) as exc:
                raise SegmenterError(f"{self.source}:{node.lineno}: cannot index ({exc})") from None
        if isinstance(node, ast.Slice):
            return slice(*(None if p is None else self.value(p, scope) for p in (node.lower, node.upper, node.step)))
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            return self._comprehension(node, scope)
        if isinstance(node, ast.JoinedStr):
            return "".join(str(self.value(v.value, scope)) if isinstance(v, ast.FormattedValue) else v.value
                           for v in node.values)
        raise self.fail(node, type(node).__name__)

    def _apply(self, node: ast.AST, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - arithmetic on the config's own values
            raise SegmenterError(f"{self.source}:{node.lineno}: cannot evaluate ({exc})") from None

    def _mapping(self, node: ast.AST, scope: dict) -> dict:
        value = self.value(node, scope)
        if not isinstance(value, dict):
            raise SegmenterError(f"{self.source}:{node.lineno}: ** needs a dict")
        return value

    def _call(self, node: ast.Call, scope: dict) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in _PLAIN_CALLS or node.func.id in scope:
            what = ast.unparse(node.func) if hasattr(ast, "unparse") else "a call"
            raise self.fail(node, f"calling {what}()")
        args = [self.value(a, scope) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                kwargs.update(self._mapping(kw.value, scope))
            else:
                kwargs[kw.arg] = self.value(kw.value, scope)
        return self._apply(node, _PLAIN_CALLS[node.func.id], *args, **kwargs)

    def _comprehension(self, node, scope: dict) -> Any:
        results = []

        def walk(generators, local):
            if not generators:
                if isinstance(node, ast.DictComp):
                    results.append((self.value(node.key, local), self.value(node.value, local)))
                else:
                    results.append(self.value(node.elt, local))
                return
            gen = generators[0]
            if gen.is_async:
                raise self.fail(node, "an async comprehension")
            for item in self.value(gen.iter, local):
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
            values = list(value)
            if len(values) != len(target.elts):
                raise SegmenterError(f"{self.source}:{target.lineno}: cannot unpack {len(values)} values")
            for t, v in zip(target.elts, values):
                self._bind(t, v, scope)
        else:
            raise self.fail(target, f"assigning to {type(target).__name__}")


def evaluate_config_text(text: str, source: str) -> dict:
    """The top-level assignments of a config's text, evaluated; `source` names it in errors."""
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as exc:
        raise SegmenterError(f"{source}:{exc.lineno}: not a Python config ({exc.msg})") from None
    evaluator = _Evaluator(source)
    for statement in tree.body:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # a docstring or a bare string
        if isinstance(statement, ast.Assign):
            value = evaluator.value(statement.value)
            for target in statement.targets:
                evaluator._bind(target, value, evaluator.names)
            continue
        if isinstance(statement, ast.AnnAssign) and statement.value is not None:
            evaluator._bind(statement.target, evaluator.value(statement.value), evaluator.names)
            continue
        what = {ast.Import: "an import", ast.ImportFrom: "an import", ast.FunctionDef: "a function definition",
                ast.ClassDef: "a class definition", ast.Expr: "an expression statement"}.get(type(statement),
                                                                                             type(statement).__name__)
        raise evaluator.fail(statement, what)
    return evaluator.names


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


def read_config(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """The config of a file, its `_base_` files (relative to it) merged under it."""
    path = Path(path)
    if len(_chain) > MAX_BASES or path.resolve() in _chain:
        raise SegmenterError(f"{path}: _base_ files refer to each other in a loop")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        where = f" (the _base_ of {_chain[-1]})" if _chain else ""
        raise SegmenterError(f"{path}: config file not found{where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SegmenterError(f"{path}: cannot be read ({exc})") from None
    if "{{" in text and "_base_." in text:
        raise SegmenterError(f"{path}: uses {{{{_base_.name}}}} substitution, which is not read here; give the "
                             "config as mmengine dumps it (Config.dump) instead")
    names = evaluate_config_text(text, str(path))
    bases = names.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise SegmenterError(f"{path}: _base_ must be a file name or a list of them, got {bases!r}")
    merged: dict = {}
    for base in bases:
        inherited = read_config(path.parent / base, _chain + (path.resolve(),))
        clash = sorted(set(merged) & set(inherited))
        if clash:
            raise SegmenterError(f"{path}: its _base_ files both set '{clash[0]}'; mmengine refuses that too")
        merged.update(inherited)
    return merge(merged, {k: v for k, v in names.items() if not k.startswith("__")})

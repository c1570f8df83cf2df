"""Reading a publisher's settings strictly: every key known, every value of the type and range its code takes.

A section of a config (a backbone, a head, a data preprocessor) is read against a table of rules, one
per setting the publisher's class accepts. A rule checks the value's type and range and says whether
this package builds that value; settings that only matter in training are read and dropped. A key
without a rule, a value of the wrong type, and a value this package does not build are each an error
naming the file, the setting and what was found, so that no setting is silently taken as its default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import SegmenterError

MAX_VALUE_SIZE = 1_000_000  # items + characters of a config's value, shared parts counted where they appear (as JSON)
MAX_VALUE_DEPTH = 100  # nesting of a config's values
_CONTAINERS = (list, tuple, set, frozenset, dict, range)
MISSING = object()  # a setting the section leaves out: the rule's default applies
Rule = Callable[[Any, str, Path], Any]  # (value or MISSING, "section.key", source) -> the value to use


class Sizes:
    """Sizes and nesting depths of values: items and characters counted where they appear (a list repeated n times
    counts n times, as it would once written out), containers measured once (memo by identity)."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Any, int, int]] = {}  # id -> (the value, kept alive; size; depth)
        self.steps = 0

    def of(self, value: Any) -> tuple[int, int]:
        """(size, depth) of a value."""
        if isinstance(value, (str, bytes)):
            return len(value) + 1, 0
        if not isinstance(value, _CONTAINERS):
            return 1, 0
        found = self._memo.get(id(value))
        if found is not None and found[0] is value:
            return found[1], found[2]
        if isinstance(value, range):
            size, depth = len(value) + 1, 1
        else:
            parts = [p for kv in value.items() for p in kv] if isinstance(value, dict) else value
            size, depth = 1, 0
            for part in parts:
                s, d = self.of(part)
                size, depth = size + s, max(depth, d)
                if size > MAX_VALUE_SIZE:
                    break
            depth += 1
            self.steps += len(value)
        self._memo[id(value)] = (value, size, depth)
        return size, depth


def check_size(value: Any, source: Path | str, what: str) -> None:
    """A value read from a file (a config, a YAML document) must be of a config's size once written out: aliases
    and shared references that expand to more than MAX_VALUE_SIZE, or nesting deeper than MAX_VALUE_DEPTH, are
    refused."""
    try:
        size, depth = Sizes().of(value)
    except RecursionError:  # nested beyond Python's own limit, or a value that holds itself (a YAML alias)
        size, depth = 0, MAX_VALUE_DEPTH + 1
    if size > MAX_VALUE_SIZE or depth > MAX_VALUE_DEPTH:
        raise fail(source, f"{what} is larger than {MAX_VALUE_SIZE:,} items or characters once written out (or "
                   f"nested deeper than {MAX_VALUE_DEPTH}); not a config")


def fail(source: Path | str, what: str) -> SegmenterError:
    return SegmenterError(f"{source}: {what}")


def show(value: Any) -> str:
    """A value as an error shows it: its repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_section(section: Any, rules: dict[str, Rule], where: str, source: Path) -> dict[str, Any]:
    """The settings of one section, each through its rule; an unknown key is an error naming it."""
    if section is None or section is MISSING:
        section = {}
    if not isinstance(section, dict):
        raise fail(source, f"{where} must be a dict of settings, got {show(section)}")
    unknown = [k for k in section if k not in rules]
    if unknown:
        raise fail(source, f"{where}.{unknown[0]} is a setting this reader does not know (known: "
                   f"{', '.join(rules)}); it would change the model or be silently ignored")
    return {key: rule(section.get(key, MISSING), f"{where}.{key}", source) for key, rule in rules.items()}


def _checked(default: Any, check: Callable[[Any], bool], kind: str, supported: tuple = ()) -> Rule:
    def rule(value: Any, where: str, source: Path) -> Any:
        value = default if value is MISSING else value
        if value is MISSING:
            raise fail(source, f"{where} is missing; the publisher's code requires it")
        if value is None and default is None:  # an optional setting left out
            return None
        if not check(value):
            raise fail(source, f"{where} must be {kind}, got {show(value)}")
        if supported and value not in supported:
            raise fail(source, f"{where}={show(value)} is not supported (supported: "
                       f"{', '.join(map(show, supported))})")
        return value
    return rule


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(default: Any = MISSING, lo: int = 1, hi: int = 1 << 20, supported: tuple = ()) -> Rule:
    """An int from lo to hi (bools are not ints here)."""
    return _checked(default, lambda v: _is_int(v) and lo <= v <= hi, f"an integer from {lo} to {hi}", supported)


def number(default: Any = MISSING, lo: float = 0.0, hi: float = 1e6, above: bool = False) -> Rule:
    """An int or float within [lo, hi] (above: lo excluded)."""
    def ok(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and (v > lo if above else v >= lo) and v <= hi
    return _checked(default, ok, f"a number {'above' if above else 'from'} {lo:g} {'and at most' if above else 'to'} "
                    f"{hi:g}")


def boolean(default: Any = MISSING, supported: tuple = ()) -> Rule:
    return _checked(default, lambda v: isinstance(v, bool), "True or False", supported)


def choice(default: Any, *supported: Any) -> Rule:
    """One of the values this package builds (strings, or None)."""
    return _checked(default, lambda v: v is None or isinstance(v, (str, int, float, bool)), "a name or a number",
                    supported)


def named(*names: str) -> Rule:
    """A `type`: one of the names, with or without a registry scope ("mmseg.VisionTransformer")."""
    def rule(value: Any, where: str, source: Path) -> str:
        if value is MISSING or not isinstance(value, str) or value.rsplit(".", 1)[-1] not in names:
            raise fail(source, f"{where}={show(None if value is MISSING else value)} is not supported (supported: "
                       f"{', '.join(names)})")
        return value.rsplit(".", 1)[-1]
    return rule


def ignored(value: Any, where: str, source: Path) -> None:
    """A setting that only matters in training (dropout, initialisation, losses): read and dropped."""
    return None


def absent(what: str) -> Rule:
    """A setting this package builds only when left out (or None): anything else is refused, naming `what`."""
    def rule(value: Any, where: str, source: Path) -> None:
        if value is not MISSING and value is not None:
            raise fail(source, f"{where}={show(value)}: {what} is not supported; only models without it are read")
        return None
    return rule


def pair(default: Any = MISSING, lo: int = 1, hi: int = 1 << 16) -> Rule:
    """A size: an int, or (h, w) of two ints (a tuple of one counts as a square, as mmseg reads it)."""
    def rule(value: Any, where: str, source: Path) -> tuple[int, int] | None:
        value = default if value is MISSING else value
        if value is None and default is None:
            return None
        if value is MISSING:
            raise fail(source, f"{where} is missing; the publisher's code requires it")
        items = [value] * 2 if _is_int(value) else list(value) * (2 if len(value) == 1 else 1) \
            if isinstance(value, (list, tuple)) else None
        if items is None or len(items) != 2 or not all(_is_int(v) and lo <= v <= hi for v in items):
            raise fail(source, f"{where} must be a size (an integer, or two) from {lo} to {hi}, got {show(value)}")
        return items[0], items[1]
    return rule


def square(default: Any = MISSING, lo: int = 1, hi: int = 1 << 16) -> Rule:
    """A size whose height and width are equal: their common side."""
    read = pair(default, lo, hi)

    def rule(value: Any, where: str, source: Path) -> int:
        h, w = read(value, where, source)
        if h != w:
            raise fail(source, f"{where}={show(value)}: only square sizes are supported")
        return h
    return rule


def layer_norm(default_eps: float) -> Rule:
    """An mmcv/mmengine norm_cfg that builds a LayerNorm: its eps (requires_grad only matters in training)."""
    rules = {"type": choice(MISSING, "LN"), "eps": number(default_eps, 0.0, 1.0, above=True),
             "requires_grad": boolean(True), "elementwise_affine": boolean(True, (True,))}

    def rule(value: Any, where: str, source: Path) -> float:
        return read_section({"type": "LN"} if value is MISSING else value, rules, where, source)["eps"]
    return rule


def gelu(value: Any, where: str, source: Path) -> str:
    """An act_cfg that builds the exact (erf) GELU, as torch.nn.GELU() does."""
    rules = {"type": choice(MISSING, "GELU"), "approximate": choice("none", "none")}
    read_section({"type": "GELU"} if value is MISSING else value, rules, where, source)
    return "gelu"


def numbers(value: Any, where: str, source: Path, count: int = 3) -> tuple[float, ...]:
    """Per-channel values (mean, std): `count` numbers, or one that broadcasts over the channels (as a tensor of
    shape (1, 1, 1) does in mmseg's data preprocessor and a (1, 1) array in mmcv's imnormalize)."""
    items = list(value) if isinstance(value, (list, tuple)) else None
    if items is None or len(items) not in (1, count) or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        raise fail(source, f"{where} must be {count} numbers (or one, for every channel), got {show(value)}")
    return tuple(float(v) for v in (items * count if len(items) == 1 else items))

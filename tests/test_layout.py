"""The package's floors: every import goes to the same stage or a lower one, and no import cycle.

The stages, lowest first, are written here once. Imports inside functions count as much as those at the
top of a module: a lazy import that runs up the stairs is still one.
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "segmenter"
STAGES = [
    {"errors", "files", "progress", "system", "defaults", "extras"},  # helpers every stage may use
    {"model"},  # the network and its files
    {"data"},  # data sets, images, views, windows, a run's settings
    {"engines"},  # running exported models
    {"evaluation"},  # merge, score, metrics; the streaming and Ray routes
    {"fileroute"},  # the guide's steps between files, on evaluation's scoring
    {"outputs"},  # report, pictures, predictions
    {"serve"},  # the HTTP server on Ray Serve
    {"demo"},  # generated data
    {"api", "cli", "commands", "__init__"},  # what scripts and programs call, and the commands
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def stage_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for index, names in enumerate(STAGES):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no stage of test_layout.STAGES")


def imports_of(path: Path) -> set[str]:
    """The package modules a file imports (resolved to the longest existing module name)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        for target in targets:
            if target.split(".")[0] != "segmenter":
                continue
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_import_goes_down_or_level():
    wrong = []
    for name, path in sorted(MODULES.items()):
        for target in sorted(imports_of(path)):
            if target in ("segmenter",):
                continue
            if stage_of(target) > stage_of(name):
                wrong.append(f"{name} imports {target}")
    assert not wrong, "imports from a lower stage into a higher one:\n" + "\n".join(wrong)


def test_no_import_cycle():
    graph = {name: imports_of(path) - {"segmenter"} for name, path in MODULES.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_every_sub_package_says_what_it_owns():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and doc.count(". ") == 0 and doc.endswith("."), f"{init}: one sentence, please"

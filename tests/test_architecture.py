"""The shape of the package: subpackages along the pipeline, each importing only earlier ones;
small modules; no private name crossing a module boundary; one definition of every constant; no
import cycle; no name that hides a module; and docstrings that cite sections of docs/paper.md that
exist."""

from __future__ import annotations

import ast
import importlib
import re
from collections import defaultdict
from pathlib import Path

import pytest

import iteration_heads

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "iteration_heads"
MAX_LINES = 450

PIPELINE = [
    "tasks",
    "model",
    "training",
    "detection",
    "interventions",
    "auditing",
    "pathways",
    "viz",
    "runs",
    "experiments",
]
"""Each subpackage may import the shared internals and the subpackages before it, never after."""
SHARED = {"errors", "_io", "_torch", "_results", "passes", "memory"}
TOP = {"zoo": PIPELINE, "cli": [*PIPELINE, "zoo"], "__init__": [*PIPELINE, "zoo"]}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``import`` / ``from ... import`` in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


def test_modules_are_small() -> None:
    sizes = {module_name(p): len(p.read_text().splitlines()) for p in package_files()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_no_private_name_crosses_a_module_boundary() -> None:
    files = package_files() + sorted((ROOT / "tests").rglob("*.py"))
    files += sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "examples").glob("*.py"))
    crossing = [
        f"{path.relative_to(ROOT)}: from {module} import {name}"
        for path in files
        for module, names in imports(path)
        if module.startswith("iteration_heads")
        for name in names
        if name.startswith("_")
    ]
    assert crossing == []


def test_tests_and_scripts_use_public_modules_only() -> None:
    files = sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    private = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in [*files, *sorted((ROOT / "examples").glob("*.py"))]
        for module, _ in imports(path)
        if module.startswith("iteration_heads")
        and any(p.startswith("_") for p in module.split("."))
    ]
    assert private == []


def test_every_constant_is_defined_once() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in package_files():
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and re.fullmatch(r"[A-Z][A-Z0-9_]+", target.id):
                    where[target.id].append(module_name(path))
    assert {name: mods for name, mods in where.items() if len(mods) > 1} == {}


def subpackage(module: str) -> str:
    """``iteration_heads.detection.probes`` -> ``detection``; ``iteration_heads`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_subpackages_follow_the_pipeline() -> None:
    wrong = []
    for path in package_files():
        me = subpackage(module_name(path))
        allowed = (
            set(SHARED)
            | {me}
            | set(TOP.get(me, PIPELINE[: PIPELINE.index(me)] if me in PIPELINE else []))
        )
        for module, _ in imports(path):
            if module.startswith("iteration_heads."):
                other = subpackage(module)
                if other not in allowed:
                    wrong.append(f"{module_name(path)} imports {module}")
    assert wrong == []


def test_no_import_cycle() -> None:
    """Module-level and deferred imports alike; importing ``a.b.c`` also runs ``a.b``, except where
    ``a.b`` is already being imported (the importer's own ancestors)."""
    names = {module_name(p) for p in package_files()}
    graph: dict[str, set[str]] = {}
    for path in package_files():
        me = module_name(path)
        ancestors = {".".join(me.split(".")[:i]) for i in range(1, len(me.split(".")))}
        edges = set()
        for module, imported in imports(path):
            targets = [module] + [f"{module}.{n}" for n in imported]
            for target in targets:
                parts = target.split(".")
                for i in range(2, len(parts) + 1):
                    prefix = ".".join(parts[:i])
                    if prefix in names and prefix not in ancestors and prefix != me:
                        edges.add(prefix)
        graph[me] = edges
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_no_exported_name_hides_a_module() -> None:
    """``iteration_heads.detection.detector`` stays a module: no package exports a function or
    value under the name of one of its submodules."""
    for path in PACKAGE.rglob("__init__.py"):
        package = importlib.import_module(module_name(path))
        submodules = {p.stem for p in path.parent.glob("*.py")} | {
            p.name for p in path.parent.iterdir() if (p / "__init__.py").is_file()
        }
        for name in getattr(package, "__all__", []):
            value = getattr(package, name)
            if name in submodules:
                assert getattr(value, "__name__", "") == f"{package.__name__}.{name}", name


def test_constants_stay_reachable_on_their_modules() -> None:
    import iteration_heads.detection.scoring as scoring

    assert scoring.MIN_PEAKINESS == iteration_heads.detection.MIN_PEAKINESS == 0.5


def paper_sections() -> set[int]:
    text = (ROOT / "docs" / "paper.md").read_text()
    return {int(n) for n in re.findall(r"(?m)^## (\d+)\. ", text)}


def test_docstrings_cite_sections_of_docs_paper() -> None:
    sections = paper_sections()
    assert sections == set(range(1, 10))
    cited: dict[str, set[int]] = defaultdict(set)
    files = package_files() + sorted((ROOT / "examples").glob("*.py"))
    files += sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "docs").rglob("*.md"))
    for path in files:
        text = path.read_text()
        assert "PAPER.md" not in text, f"{path.relative_to(ROOT)} cites PAPER.md"
        for ref in re.findall(r"paper(?:\.md|\]\([./]*paper\.md\))? (§[\d§,\s\-–]+)", text):
            cited[str(path.relative_to(ROOT))] |= {int(n) for n in re.findall(r"\d+", ref)}
    assert cited, "no docstring cites docs/paper.md"
    missing = {p: sorted(c - sections) for p, c in cited.items() if c - sections}
    assert missing == {}

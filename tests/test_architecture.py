"""The layout the design promises, checked on the source: stages meet only through their
artifacts (a stage imports ``kit`` and itself, never another stage), modules import one
another without cycles, and every outside package imported is declared in pyproject.toml."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from tests.clone import REPO

STAGES = ("seeds", "dataset_builder", "training", "model_card", "space", "release")
PACKAGES = ("kit", *STAGES, "bench", "tests")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def _imported(path: Path) -> set[str]:
    """Every absolute module name imported anywhere in the file (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _project_edges(sources: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name resolved to its longest module)."""
    edges = {}
    for module, path in sources.items():
        targets = set()
        for name in _imported(path):
            parts = name.split(".")
            while parts and ".".join(parts) not in sources:
                parts.pop()
            if parts:
                targets.add(".".join(parts))
        edges[module] = targets - {module}
    return edges


def test_a_stage_imports_kit_and_itself_only() -> None:
    edges = _project_edges(_sources())
    crossing = sorted(
        (module, target)
        for module, targets in edges.items()
        if module.split(".")[0] in STAGES
        for target in targets
        if target.split(".")[0] not in ("kit", module.split(".")[0])
    )
    assert crossing == []
    kit_imports = {t for m, ts in edges.items() if m.startswith("kit") for t in ts}
    assert {t.split(".")[0] for t in kit_imports} <= {"kit"}


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among module-level imports' targets, if there is any."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(edges):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_cycles() -> None:
    """Package ``__init__`` re-exports aside, no module needs itself to load."""
    sources = _sources()
    edges = _project_edges(sources)
    assert _cycle(edges) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def _declared_distributions() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return {_normalized(re.match(r"[A-Za-z0-9_.-]+", r).group()) for r in requirements}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_outside_import_is_declared() -> None:
    providers = metadata.packages_distributions()
    declared = _declared_distributions()
    local = set(PACKAGES) | {p.stem for p in (REPO / "space" / "demo").glob("*.py")}
    undeclared = {}
    for module, path in _sources().items():
        for name in _imported(path):
            top = name.split(".")[0]
            if top in local or top in sys.stdlib_module_names or top == "__future__":
                continue
            distributions = {_normalized(d) for d in providers.get(top, [])}
            if not distributions & declared:
                undeclared.setdefault(top, module)
    assert undeclared == {}


def test_every_project_path_the_readme_names_exists() -> None:
    """The README names files of the repository (``kit/instructions.py``); each must exist."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    folders = "|".join((*PACKAGES, "configs"))
    named = set(re.findall(rf"`((?:{folders})/[^`\s<>*]*)`", readme))
    assert "kit/instructions.py" in named
    assert sorted(path for path in named if not (REPO / path).exists()) == []

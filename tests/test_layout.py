"""The code's layout as docs/design.md states it: imports point one way and never in a circle, and
no optimizer is stepped by hand outside the one training step."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "runners", "dashboard")


def modules() -> dict[str, Path]:
    found = {"registry": REPO / "registry.py"}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project's modules that ``path`` imports anywhere in it, in a function too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def test_no_module_imports_another_that_imports_it_back():
    edges = graph()
    assert edges["runners.grid"] and edges["runners.run"], "the check reads imports"

    def circle(start: str) -> list[str] | None:
        todo = [(start, [start])]
        seen = set()
        while todo:
            node, path = todo.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    return [*path, start]
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append((nxt, [*path, nxt]))
        return None

    # a package's __init__ that names its modules is not a circle of code
    packages = {name for name, path in modules().items() if path.name == "__init__.py"}
    circles = [c for c in map(circle, edges) if c and not packages & set(c)]
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize(("package", "never"), [("zoo", ("runners", "dashboard")), ("dashboard", ("runners",))])
def test_imports_point_one_way(package, never):
    edges = graph()
    wrong = {m: sorted(i for i in imported if i.split(".")[0] in never)
             for m, imported in edges.items() if m.split(".")[0] == package}
    assert not {m: w for m, w in wrong.items() if w}


def test_no_optimizer_is_stepped_by_hand_outside_the_training_step():
    stepped = re.compile(r"\b(opt|optimizer|optim)\.step\(\)")
    places = [f"{p.relative_to(REPO)}:{i}" for p in REPO.rglob("*.py") if ".venv" not in p.parts
              and "tests" not in p.parts for i, line in enumerate(p.read_text().splitlines(), 1) if stepped.search(line)]
    assert [p.split(":")[0] for p in places] == ["zoo/fit.py"], places  # zoo.fit.Step, the one step

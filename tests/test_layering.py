"""The import graph of vidprior, checked statically with ``ast`` (no imports run): every import points down the
layers (errors <- utils <- layers, data <- models <- engine <- quickstart, analysis <- cli), and no group of modules
imports itself round (a cycle), imports inside functions and ``TYPE_CHECKING`` blocks included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vidprior"

# sub-package (or top-level module) of vidprior -> its layer; a module may import its own sub-package and strictly
# lower layers only (so layers and data, both 2, never import each other). Names not listed (the package root, which
# gathers the public API) are not checked.
RANK: dict[str, int] = {
    "errors": 0,
    "utils": 1,
    "layers": 2,
    "data": 2,
    "models": 3,
    "engine": 4,
    "quickstart": 5,
    "analysis": 5,
    "commands": 6,  # the command line: the entry point over everything
    "cli": 6,
    "__main__": 7,
}
# cycles known and being removed, named module by module; nothing else may import itself round
KNOWN_CYCLES: list[set[str]] = [{"vidprior.quickstart.report", "vidprior.quickstart.run"}]


def _forbidden(own: str, target: str) -> bool:
    if own == target or own not in RANK or target not in RANK:
        return False
    return RANK[target] >= RANK[own]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, *, is_package: bool) -> list[tuple[int, str]]:
    """Absolute names of every module (or module attribute) imported anywhere in ``source``, with line numbers.

    ``from vidprior import models`` yields ``vidprior.models``; relative imports are resolved against ``module``.
    Imports inside functions and ``if TYPE_CHECKING:`` blocks count too.
    """
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "vidprior" else None


def violations(files: list[Path], root: Path) -> list[str]:
    out = []
    for path in files:
        module = _module_name(path, root)
        own = _subpackage(module)
        if own is None:
            continue
        for line, name in imported_modules(path.read_text(), module, is_package=path.name == "__init__.py"):
            target = _subpackage(name)
            if target is not None and _forbidden(own, target):
                out.append(f"{path.relative_to(root.parent)}:{line} {name}")
    return sorted(set(out))


def test_import_direction():
    files = sorted(PACKAGE.rglob("*.py"))
    for sub in ("layers", "models", "utils"):
        assert any(p.parent.name == sub for p in files), f"no sources found under vidprior/{sub}"
    found = violations(files, PACKAGE)
    assert not found, "imports against the layering:\n" + "\n".join(found)


def import_graph(files: list[Path], root: Path) -> dict[str, set[str]]:
    """Module -> the vidprior modules it names in an import (``from a import b`` names ``a.b`` when that is a module,
    else ``a``); the implicit import of parent packages is not an edge."""
    modules = {_module_name(p, root): p for p in files}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges = set()
        for _, name in imported_modules(path.read_text(), module, is_package=path.name == "__init__.py"):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                edges.add(name)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(group)
    return found


def test_no_import_cycles():
    files = sorted(PACKAGE.rglob("*.py"))
    graph = import_graph(files, PACKAGE)
    assert "vidprior.engine.trainer" in graph and "vidprior.engine.checkpoint" in graph["vidprior.engine.trainer"]
    found = [sorted(c) for c in cycles(graph) if c not in KNOWN_CYCLES]
    assert not found, "modules that import each other round:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [{"a", "b"}]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [{"a", "b", "c"}]),
        ({"a": {"a"}}, []),
    ],
)
def test_cycle_finder(graph, expected):
    assert cycles(graph) == expected


@pytest.mark.parametrize(
    ("source", "module", "is_package", "bad"),
    [
        ("import vidprior.models.inflate\n", "vidprior.layers.sts", False, True),
        ("from vidprior.models import inflate\n", "vidprior.layers.sts", False, True),
        ("from vidprior import models\n", "vidprior.layers.sts", False, True),
        ("from ..models import inflate\n", "vidprior.layers.sts", False, True),
        ("from .. import cli\n", "vidprior.layers", True, True),
        ("def f():\n    import vidprior.cli\n", "vidprior.layers.sts", False, True),
        ("from vidprior.errors import TransferError\n", "vidprior.layers.sts", False, False),
        ("from . import sts\nfrom .sts import STSConv3d\n", "vidprior.layers.convert", False, False),
        ("import torch.models\n", "vidprior.layers.sts", False, False),
        ("from vidprior.data.lists import Record\n", "vidprior.layers.sts", False, True),
        ("from vidprior.layers.sts import STATIC_MODES\n", "vidprior.data.formats", False, True),
        ("from vidprior.engine.jobs import run_test\n", "vidprior.models.x3d", False, True),
        ("from vidprior.quickstart.run import run\n", "vidprior.engine.jobs", False, True),
        ("from vidprior.quickstart.run import run\n", "vidprior.cli", False, False),
        ("from vidprior.engine.jobs import run_test\n", "vidprior.quickstart.run", False, False),
        ("from vidprior.cli import main\n", "vidprior.quickstart.run", False, True),
    ],
)
def test_checker_catches_every_import_form(tmp_path, source, module, is_package, bad):
    """The checker itself: each import form of a forbidden module is seen, allowed ones are not flagged."""
    parts = module.split(".")
    directory = tmp_path.joinpath(*parts[:-1]) if not is_package else tmp_path.joinpath(*parts)
    directory.mkdir(parents=True)
    path = directory / ("__init__.py" if is_package else f"{parts[-1]}.py")
    path.write_text(source)
    assert bool(violations([path], tmp_path / "vidprior")) is bad

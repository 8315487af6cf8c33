"""Import direction between the sub-packages of vidprior, checked statically with ``ast`` (no imports run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vidprior"

# sub-package -> sub-packages of vidprior it must not import from
FORBIDDEN: dict[str, set[str]] = {
    "layers": {"models", "engine", "cli", "data"},
    "models": {"engine", "cli"},
    "utils": {"layers", "models", "engine", "data", "cli"},
    "data": {"models", "engine", "cli"},
    "engine": {"cli"},
}


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
        banned = FORBIDDEN.get(own or "", set())
        if not banned:
            continue
        for line, name in imported_modules(path.read_text(), module, is_package=path.name == "__init__.py"):
            target = _subpackage(name)
            if target in banned:
                out.append(f"{path.relative_to(root.parent)}:{line} {name}")
    return sorted(set(out))


def test_import_direction():
    files = sorted(PACKAGE.rglob("*.py"))
    for sub in ("layers", "models", "utils"):
        assert any(p.parent.name == sub for p in files), f"no sources found under vidprior/{sub}"
    found = violations(files, PACKAGE)
    assert not found, "imports against the layering:\n" + "\n".join(found)


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

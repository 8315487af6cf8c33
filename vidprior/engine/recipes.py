"""Recipes shipped inside the package: ``-c NAME`` finds one when no such local file exists."""

from __future__ import annotations

import difflib
from pathlib import Path

from vidprior.errors import ConfigError

PACKAGED_RECIPES = Path(__file__).resolve().parents[1] / "configs"


def resolve_recipe(path: str | Path) -> Path:
    """The YAML file for ``-c PATH``: the local file when it exists, else the recipe shipped inside the package.

    ``configs/finetune/k400/slowonly50.yaml``, ``finetune/k400/slowonly50.yaml`` and ``finetune/k400/slowonly50``
    all name the packaged recipe, so an installed (non-editable) vidprior runs the documented commands from any
    working directory. A local file always wins, so a user's own edited copy is used as given.
    """
    local = Path(path)
    if local.is_file():
        return local
    rel = local.as_posix()
    for prefix in ("vidprior/configs/", "configs/", "./configs/"):
        if rel.startswith(prefix):
            rel = rel[len(prefix) :]
            break
    for candidate in (PACKAGED_RECIPES / rel, PACKAGED_RECIPES / f"{rel}.yaml"):
        if not local.is_absolute() and candidate.is_file():
            return candidate
    names = packaged_recipes()
    near = difflib.get_close_matches(rel.removesuffix(".yaml"), names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else f"; packaged recipes are in {PACKAGED_RECIPES}"
    raise ConfigError(f"config file {path} does not exist here, and no packaged recipe has that name{hint}")


def packaged_recipes() -> list[str]:
    """Names of the recipes shipped inside the package, as ``-c`` accepts them (``finetune/k400/slowonly50``)."""
    return sorted(p.relative_to(PACKAGED_RECIPES).with_suffix("").as_posix() for p in PACKAGED_RECIPES.rglob("*.yaml"))

"""Each analysis command has a page naming every option (registration in the CLI: the commands' own tests)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from vidprior.analysis.commands import COMMANDS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "commands"


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"vidprior {name}")
    next(add for n, _, add, _ in COMMANDS if n == name)(parser)
    return parser


@pytest.mark.parametrize("name", [c[0] for c in COMMANDS])
def test_every_option_is_on_the_command_page(name):
    page = (DOCS / f"{name}.md").read_text()
    assert page.startswith(f"# vidprior {name}\n")
    options = [s for a in _subparser(name)._actions for s in a.option_strings if s.startswith("--") and s != "--help"]
    missing = [o for o in options if f"`{o}" not in page]
    assert not missing, f"docs/commands/{name}.md does not mention {missing}"

"""The README keeps up with the code: every CLI command and justfile recipe is documented."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from kindle_store.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_cli_command_is_in_the_readme() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    commands = sorted(sub.choices)  # type: ignore[arg-type]
    assert [] == [c for c in commands if f"kindle-store {c}" not in README]


def test_every_just_recipe_is_in_the_readme() -> None:
    listing = subprocess.run(["just", "--summary"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    recipes = [r for r in listing.split() if r != "default"]
    assert [] == [r for r in recipes if not re.search(rf"just {re.escape(r)}\b", README)]

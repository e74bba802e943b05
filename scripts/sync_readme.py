"""Regenerate the generated parts of README.md: the settings table and the cookbook.

The cookbook's source is docs/cookbook.md, whose json blocks tests/test_cookbook.py runs.

    .venv/bin/python scripts/sync_readme.py

tests/test_readme.py fails when README.md is out of date.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from settings_table import settings_table

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COOKBOOK = ROOT / "docs" / "cookbook.md"


def fill(text: str, marker: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def cookbook() -> str:
    """The recipes of docs/cookbook.md, headings moved under the README's Cookbook."""
    text = COOKBOOK.read_text()
    recipes = text[text.index("\n## ", text.index("## How `page` works")) + 1 :]
    intro = (
        "Each recipe is also a test against a local server that pages the same way "
        "(`docs/cookbook.md`, `tests/test_cookbook.py`); page sizes are small there, use "
        "your API's largest.\n\n"
    )
    return intro + re.sub(r"(?m)^## ", "#### ", recipes)


def render(text: str) -> str:
    text = fill(text, "settings-table", settings_table())
    return fill(text, "cookbook", cookbook())


if __name__ == "__main__":
    README.write_text(render(README.read_text()))

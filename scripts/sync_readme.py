"""Regenerate the generated parts of README.md and docs/architecture.md.

README.md: the settings table (from the option table) and the cookbook (whose source is
docs/cookbook.md, whose json blocks tests/test_cookbook.py runs). docs/architecture.md:
the import graph (scripts/import_graph.py).

    .venv/bin/python scripts/sync_readme.py

tests/test_readme.py and tests/test_architecture.py fail when either is out of date.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from import_graph import graph_table
from settings_table import settings_table

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COOKBOOK = ROOT / "docs" / "cookbook.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


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


def render_architecture(text: str) -> str:
    return fill(text, "import-graph", graph_table())


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
    ARCHITECTURE.write_text(render_architecture(ARCHITECTURE.read_text()))

"""Regenerate the generated parts of README.md and docs/architecture.md.

README.md: the settings table (from the option table) and the cookbook (whose source is
docs/cookbook.md, whose json blocks tests/test_cookbook.py runs). docs/cookbook.md: the
YAML form of each json recipe, right after it, for meltano.yml (every string quoted, by
the emitter `tap-rhttp init` uses). docs/architecture.md: the import graph
(scripts/import_graph.py).

    .venv/bin/python scripts/sync_readme.py

tests/test_readme.py and tests/test_architecture.py fail when either is out of date.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from import_graph import graph_table
from settings_table import settings_table

from tap_rhttp.wizard.render import to_yaml

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
        "your API's largest. Each recipe is shown as JSON (for a config file) and as YAML "
        "for `meltano.yml`, every string quoted: an expression pasted unquoted breaks YAML "
        "(`ScannerError: mapping values are not allowed here`).\n\n"
    )
    return intro + re.sub(r"(?m)^## ", "#### ", recipes)


_RECIPE = re.compile(
    r"(^```json[ \t]*\n(.*?)^```[ \t]*\n)(\n```yaml\n.*?^```[ \t]*\n)?", re.S | re.M
)


def cookbook_yaml(text: str) -> str:
    """docs/cookbook.md with each json recipe followed by its YAML (replaced if present)."""

    def recipe(match: re.Match[str]) -> str:
        spec = json.loads(match.group(2))
        return f"{match.group(1)}\n```yaml\n{to_yaml({'streams': [spec]})}```\n"

    return _RECIPE.sub(recipe, text)


def render(text: str) -> str:
    text = fill(text, "settings-table", settings_table())
    return fill(text, "cookbook", cookbook())


def render_architecture(text: str) -> str:
    return fill(text, "import-graph", graph_table())


if __name__ == "__main__":
    COOKBOOK.write_text(cookbook_yaml(COOKBOOK.read_text()))
    README.write_text(render(README.read_text()))
    ARCHITECTURE.write_text(render_architecture(ARCHITECTURE.read_text()))

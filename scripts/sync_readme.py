"""Regenerate the generated parts of README.md: the settings table.

    .venv/bin/python scripts/sync_readme.py

tests/test_readme.py fails when README.md is out of date.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from settings_table import settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


def fill(text: str, marker: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def render(text: str) -> str:
    return fill(text, "settings-table", settings_table())


if __name__ == "__main__":
    README.write_text(render(README.read_text()))

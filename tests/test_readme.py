"""The README tells the truth: its generated table is current, its configs are valid."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tap_rhttp.config.load import load_specs
from tap_rhttp.config.options import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
sys.path.insert(0, str(ROOT / "scripts"))

from sync_readme import render  # noqa: E402

BLOCKS = re.findall(r"```json\n(.*?)```", README, re.S)
CONFIGS = [json.loads(block) for block in BLOCKS if '"streams"' in block]


def test_generated_sections_are_current() -> None:
    assert render(README) == README, "run: .venv/bin/python scripts/sync_readme.py"


def test_every_option_is_in_the_settings_table() -> None:
    for name in OPTIONS:
        assert f"| `{name}`" in README


@pytest.mark.parametrize("config", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_every_readme_config_is_valid(config: dict) -> None:
    assert load_specs(config)


def test_every_option_has_a_readme_example() -> None:
    used = set()
    for config in CONFIGS:
        for spec in config["streams"]:
            used |= set(spec)
    missing = set(OPTIONS) - used
    assert not missing, f"options without an example config in README: {sorted(missing)}"


def test_sample_config_is_valid() -> None:
    assert load_specs(json.loads((ROOT / "sample_config.json").read_text()))

"""The README tells the truth: its generated table is current, its configs are valid."""

from __future__ import annotations

import json
import os
import re
import shlex
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


SH_BLOCKS = re.findall(r"```(?:sh|bash)\n(.*?)```", README, re.S)
SHELL_WORDS = {"export", "set", ".", "cd"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _commands(block: str) -> list[list[str]]:
    """The simple commands of a shell block: continuation lines joined, split at ; && | &."""
    lines: list[str] = []
    for line in block.replace("\\\n", " ").splitlines():
        if lines and lines[-1].count("'") % 2:  # inside a quoted string: same command
            lines[-1] += " " + line
        else:
            lines.append(line)
    commands: list[list[str]] = []
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for token in lexer:
            if token and set(token) <= set(";&|"):
                commands.append(words)
                words = []
            else:
                words.append(token)
        commands.append(words)
    return [words for words in commands if words]


def test_every_readme_command_runs_from_the_repo_root() -> None:
    """Each `sh` block command is a repo script or venv binary (no bare `meltano`)."""
    problems = []
    for block in SH_BLOCKS:
        for words in _commands(block):
            while words and _ASSIGNMENT.match(words[0]):
                words = words[1:]  # VAR=value cmd ...
            if not words or words[0] in SHELL_WORDS or words[0] == "$PSQL":
                continue
            program = words[0]
            path = ROOT / program
            if "/" not in program or not (path.is_file() and os.access(path, os.X_OK)):
                problems.append(" ".join(words))
    assert not problems, f"commands that do not run as written from the repo root: {problems}"
    assert sum(len(_commands(block)) for block in SH_BLOCKS) > 20  # the check sees them

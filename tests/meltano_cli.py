"""Finding the real meltano CLI for the end-to-end tests (never skipped: failed if absent)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def meltano_bin() -> str:
    """$MELTANO_BIN, then .venv-meltano/bin/meltano, then PATH; fail the test otherwise."""
    candidates = [
        os.environ.get("MELTANO_BIN"),
        str(REPO_ROOT / ".venv-meltano" / "bin" / "meltano"),
        shutil.which("meltano"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "meltano not found ($MELTANO_BIN, .venv-meltano/bin/meltano, PATH): the end-to-end "
        "tests need the real CLI. Run scripts/bootstrap (scripts/test runs it), or "
        "python3 -m venv .venv-meltano && .venv-meltano/bin/pip install meltano==4.4.1",
        pytrace=False,
    )

"""The ``tap-rhttp`` command (the console script, and ``python -m tap_rhttp``)."""

from __future__ import annotations

from tap_rhttp.tap import TapRHTTP
from tap_rhttp.writer import STOP


def main() -> None:
    """Run the tap's command line (where SIGTERM/SIGINT stop it between pages)."""
    STOP.enable()
    TapRHTTP.cli()

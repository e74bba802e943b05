"""The ``tap-rhttp`` command (the console script, and ``python -m tap_rhttp``)."""

from __future__ import annotations

from tap_rhttp.tap import TapRHTTP


def main() -> None:
    """Run the tap's command line."""
    TapRHTTP.cli()

"""The ``tap-rhttp`` command: a head start for a plain sync, then the tap.

Kept apart from ``tap.py`` so that nothing imports singer-sdk before the head start is
running (see ``tap_rhttp.headstart``).
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the tap's command line."""
    from tap_rhttp import headstart

    headstart.begin(sys.argv[1:])
    from tap_rhttp.tap import TapRHTTP

    TapRHTTP.cli()

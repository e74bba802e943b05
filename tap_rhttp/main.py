"""The ``tap-rhttp`` command (the console script, and ``python -m tap_rhttp``).

``tap-rhttp init URL ...`` runs the config wizard (``tap_rhttp.wizard``); everything else
is the tap's singer-sdk command (``--config``, ``--discover``, ``--explain``, ...).
"""

from __future__ import annotations

import sys

from tap_rhttp.tap import TapRHTTP
from tap_rhttp.wizard.command import init_command
from tap_rhttp.writer import STOP


def main() -> None:
    """Run the tap's command line (or ``init``); SIGTERM/SIGINT stop a run between pages."""
    if sys.argv[1:2] == ["init"]:
        init_command.main(args=sys.argv[2:], prog_name="tap-rhttp init")
        return
    STOP.enable()
    TapRHTTP.cli()

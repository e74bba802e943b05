"""The ``tap-rhttp`` command (the console script, and ``python -m tap_rhttp``).

``tap-rhttp init URL ...`` runs the config wizard (``tap_rhttp.wizard``); everything else
is the tap's singer-sdk command (``--config``, ``--discover``, ``--explain``, ...).
singer-sdk is imported first, through ``tap_rhttp.sdk_imports``.
"""

from __future__ import annotations

import sys

from tap_rhttp import sdk_imports

sdk_imports.import_singer_sdk()  # first: without what only targets and BATCH files use

from tap_rhttp.tap import TapRHTTP  # noqa: E402
from tap_rhttp.wizard.command import init_command  # noqa: E402
from tap_rhttp.writer import STOP  # noqa: E402


def main() -> None:
    """Run the tap's command line (or ``init``); SIGTERM/SIGINT stop a run between pages."""
    if sys.argv[1:2] == ["init"]:
        init_command.main(args=sys.argv[2:], prog_name="tap-rhttp init")
        return
    STOP.enable()
    TapRHTTP.cli()

"""Run the tap as ``python -m tap_rhttp``."""

from __future__ import annotations

from tap_rhttp.main import main

main()

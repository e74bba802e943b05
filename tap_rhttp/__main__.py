"""Run the tap as ``python -m tap_rhttp``."""

from __future__ import annotations

from tap_rhttp.tap import TapRHTTP

TapRHTTP.cli()

"""tap-rhttp: RethinkDB's r.http request specs as Singer streams."""

from __future__ import annotations

__version__ = "0.1.0"

"""tap-rhttp: RethinkDB's r.http request specs as Singer streams.

Nothing happens at import. The package's layers, bottom to top, are drawn in
``docs/architecture.md``.
"""

from __future__ import annotations

#: The one source of the version: ``pyproject.toml`` reads it from here.
__version__ = "0.1.0"

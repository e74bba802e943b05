"""Importing singer-sdk without the libraries it loads for targets and BATCH files.

``import singer_sdk`` loads every part of the SDK, a tap's and a target's alike. Two of
the libraries it loads at import time do nothing in most tap runs:

- ``joblib``, imported by ``singer_sdk.target_base`` for a *target's* parallel drain
  (``Parallel``, ``delayed``, ``parallel_config``); a tap never calls them.
- ``upath`` (universal_pathlib, which loads ``fsspec``), imported by
  ``singer_sdk.helpers._batch`` for ``UPath``, called only when a stream writes BATCH
  files.

Together they are about a third of the SDK's import time, 70 ms of every start here:
on a short scheduled run, most of what separates the tap's first request from a
hand-written script's. :func:`import_singer_sdk` imports singer-sdk with a stand-in
module for each, whose names are :class:`Deferred`: a call imports the real library
then and calls the real name. After the import the stand-ins are gone from
``sys.modules``, so any later ``import upath`` or ``import joblib`` loads the real
library; only the SDK modules that imported the names during the import hold the
deferred ones, and they only call them.

The console script and ``python -m tap_rhttp`` (``tap_rhttp.main``) import singer-sdk
this way; code that imports ``tap_rhttp.tap`` directly imports it the usual way. The
names are singer-sdk 0.54's: ``tests/test_sdk_imports.py`` checks that they are still
all the SDK takes from these libraries, and only calls, and runs BATCH through a
deferred ``UPath``. A name the SDK starts importing that is not listed fails the import
loudly (``ImportError``), never silently.
"""

from __future__ import annotations

import importlib
import sys
import types
import typing as t

#: The libraries deferred, and the names singer-sdk imports from each at import time.
DEFERRED: t.Final[dict[str, tuple[str, ...]]] = {
    "joblib": ("Parallel", "delayed", "parallel_config"),
    "upath": ("UPath",),
}


class Deferred:
    """A name of a library not imported yet: calling it imports the library and calls
    the real name."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    def resolve(self) -> t.Any:
        """The real object (the library is imported at the first call)."""
        return getattr(importlib.import_module(self.module), self.name)

    def __call__(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<deferred {self.module}.{self.name}>"


def import_singer_sdk() -> None:
    """Import singer-sdk with :data:`DEFERRED`'s libraries deferred (see the module
    docstring); nothing happens when singer-sdk is imported already, and a library
    already imported is used as it is."""
    if "singer_sdk" in sys.modules:
        return
    placed: dict[str, types.ModuleType] = {}
    for module, names in DEFERRED.items():
        if module in sys.modules:
            continue
        stand_in = types.ModuleType(module, f"{module}, not imported yet (tap_rhttp.sdk_imports)")
        for name in names:
            setattr(stand_in, name, Deferred(module, name))
        sys.modules[module] = placed[module] = stand_in
    try:
        importlib.import_module("singer_sdk")
    finally:
        for module, stand_in in placed.items():
            if sys.modules.get(module) is stand_in:
                del sys.modules[module]

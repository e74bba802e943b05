"""Where each chain of a stream stands, as it goes into STATE: the resume position.

After each completely emitted page the stream saves, under its STATE key ``rhttp``, the
next request of every chain in progress and which chains are finished. It holds URLs,
params and, when pagination moved the request body (``page`` returned ``data``), that
body; never secrets, and a hash of the spec so a changed config never resumes from a
stale position. A next request whose URL path or body holds a secret gets no resume
position (a body's secret cannot be stripped and restored the way a query param can):
the chain would restart from its first page, and a WARNING says so.
"""

from __future__ import annotations

import hashlib
import logging
import typing as t

import orjson

from tap_rhttp.paging.paginator import PageRequest

if t.TYPE_CHECKING:
    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.redact import Redactor
    from tap_rhttp.run.chain import Page
    from tap_rhttp.types import JSON


def spec_hash(spec: RequestSpec, redactor: Redactor) -> str:
    """A short, secret-free fingerprint of a spec, to detect a changed config."""
    shown = redactor.value(dict(spec.raw))
    shown.pop("auth", None)
    text = orjson.dumps(shown, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(text).hexdigest()[:16]


class ResumeState:
    """Where each chain of a stream stands, as it goes into STATE.

    Shape (under the stream's state, key ``rhttp``)::

        {"spec": "<hash>", "chains": {"<key>": {"url": ..., "params": {...},
         "override": [...], "data": {...}, "requests": 3}}, "done": ["<key>", ...]}

    ``data`` is there only when pagination moved the body away from the spec's.
    """

    KEY = "rhttp"

    def __init__(
        self,
        spec: RequestSpec,
        redactor: Redactor,
        *,
        track_done: bool,
        logger: logging.Logger | None = None,
    ) -> None:
        self.spec = spec
        self.redactor = redactor
        self.logger = logger or logging.getLogger("tap-rhttp")
        self._warned = False
        self.hash = spec_hash(spec, redactor)
        self.track_done = track_done
        self.chains: dict[str, dict[str, JSON]] = {}
        self.done: list[str] = []

    def load(self, saved: JSON, logger: t.Any) -> None:
        """Adopt a saved position, unless the spec changed since it was saved."""
        if not isinstance(saved, dict):
            return
        if saved.get("spec") != self.hash:
            logger.warning(
                "stream %s: STATE holds a resume position for a different version of this "
                "spec (the config changed); starting from the first page.",
                self.spec.name,
            )
            return
        chains = saved.get("chains")
        self.chains = dict(chains) if isinstance(chains, dict) else {}
        done = saved.get("done")
        self.done = [str(d) for d in done] if isinstance(done, list) else []

    def start_of(self, key: str, spec: RequestSpec) -> tuple[PageRequest | None, int]:
        """The saved next request of a chain, with the spec's own params merged back."""
        saved = self.chains.get(key)
        if not saved:
            return None, 0
        params = {**dict(spec.params), **saved.get("params", {})}
        request = PageRequest(
            url=str(saved["url"]),
            params=params,
            override=frozenset(saved.get("override", ())),
            data=saved.get("data", spec.body),
        )
        return request, int(saved.get("requests", 0))

    def _secret_free(self, request: PageRequest, spec: RequestSpec) -> dict[str, JSON] | None:
        base, _, query = request.url.partition("?")
        if self.redactor.text(base) != base:
            return None  # a secret in the path: this position cannot be saved safely
        parts = [
            part
            for part in query.split("&")
            if part
            and not self.redactor.is_sensitive_param(part.split("=", 1)[0])
            and self.redactor.text(part) == part
        ]
        url = f"{base}?{'&'.join(parts)}" if parts else base
        own = dict(spec.params)
        params = {
            k: v
            for k, v in request.params.items()
            if own.get(k, object()) != v
            and not self.redactor.is_sensitive_param(k)
            and all(
                not isinstance(item, str) or self.redactor.text(item) == item
                for item in (v if isinstance(v, list) else (v,))
            )
        }
        override = sorted(k for k in request.override if not self.redactor.is_sensitive_param(k))
        saved: dict[str, JSON] = {"url": url, "params": params, "override": override}
        if request.data != spec.body:
            if self.redactor.value(request.data) != request.data:
                self._warn_secret_body()
                return None  # the body holds a secret: no position at all, rather than that
            saved["data"] = request.data
        return saved

    def _warn_secret_body(self) -> None:
        if self._warned:
            return
        self._warned = True
        self.logger.warning(
            "stream %s: the next request's body, as `page` moved it, holds a secret (a "
            "value of the config's secrets, or a field with a secret-looking name), so no "
            "resume position is saved in STATE for it: a killed run restarts that chain "
            "from its first page.",
            self.spec.name,
        )

    def advance(self, key: str, page: Page, spec: RequestSpec) -> None:
        """Record a completely emitted page: the chain's next request, or its end."""
        if page.next is None:
            self.finish(key)
            return
        saved = self._secret_free(page.next, spec)
        if saved is None:
            self.chains.pop(key, None)
            return
        saved["requests"] = page.number
        self.chains[key] = saved

    def finish(self, key: str) -> None:
        """A chain is over (or skipped)."""
        self.chains.pop(key, None)
        if self.track_done and key not in self.done:
            self.done.append(key)

    def to_state(self) -> dict[str, JSON] | None:
        """The STATE entry, or None when nothing is in progress."""
        if not self.chains and not self.done:
            return None
        return {"spec": self.hash, "chains": dict(self.chains), "done": list(self.done)}

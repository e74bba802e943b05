"""Where each chain of a stream stands, as it goes into STATE: the resume position.

After each completely emitted page the stream saves, under its STATE key ``rhttp``, the
next request of every chain in progress and which chains are finished. It holds URLs
and params only, never secrets, and a hash of the spec so a changed config never resumes
from a stale position. STATE files are edited and copied between environments, so a
saved position on another origin than the spec's (and not in its ``trusted_origins``) is
ignored, with one WARNING: the chain starts from its first page.
"""

from __future__ import annotations

import hashlib
import typing as t

import orjson

from tap_rhttp.http.origins import OriginPolicy, origin_of, origin_text
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
         "override": [...], "requests": 3}}, "done": ["<key>", ...]}
    """

    KEY = "rhttp"

    def __init__(self, spec: RequestSpec, redactor: Redactor, *, track_done: bool) -> None:
        self.spec = spec
        self.redactor = redactor
        self.hash = spec_hash(spec, redactor)
        self.track_done = track_done
        self.chains: dict[str, dict[str, JSON]] = {}
        self.done: list[str] = []
        self._logger: t.Any = None
        self._warned_origin = False

    def load(self, saved: JSON, logger: t.Any) -> None:
        """Adopt a saved position, unless the spec changed since it was saved."""
        self._logger = logger
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
        url = str(saved.get("url", ""))
        if not OriginPolicy(spec.url, spec.trusted_origins).trusts(url):
            self._ignore_foreign(url, spec)
            return None, 0
        params = {**dict(spec.params), **saved.get("params", {})}
        request = PageRequest(
            url=url,
            params=params,
            override=frozenset(saved.get("override", ())),
        )
        return request, int(saved.get("requests", 0))

    def _ignore_foreign(self, url: str, spec: RequestSpec) -> None:
        if self._warned_origin or self._logger is None:
            return
        self._warned_origin = True
        found = origin_of(url)
        own = origin_of(spec.url)
        self._logger.warning(
            "stream %s: STATE holds a resume position on %s, not on the stream's origin %s "
            "nor a trusted one; it is ignored and the chain starts from its first page.",
            spec.name,
            origin_text(found) if found is not None else "no valid origin",
            origin_text(own) if own is not None else spec.url,
        )

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
            and (not isinstance(v, str) or self.redactor.text(v) == v)
        }
        override = sorted(k for k in request.override if not self.redactor.is_sensitive_param(k))
        return {"url": url, "params": params, "override": override}

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

"""Where each chain of a stream stands, as it goes into STATE: the resume position.

After each completely emitted page the stream saves, under its STATE key ``rhttp``, the
next request of every chain in progress and which chains are finished, and a hash of the
spec so a changed config never resumes from a stale position.

The position is exact: every param the next request carries is saved as it is, whatever
its name (``pagination_token``, ``$skiptoken``, ``syncToken``, ``resumptionToken``,
``start_key`` are cursors, and a resume without them would start over). Only secret
values are withheld: a param holding a known secret (in any spelling), or under one of
:data:`~tap_rhttp.redact.CREDENTIAL_KEYS`, or under a name the config marked secret
with the config's own value. Such a param is saved as ``key=***REDACTED***`` and named
in ``withheld``; a resumed run puts the config's value back (from the spec's ``params``,
its ``url`` or its query-string API key). A secret the config cannot give back (the
server put one of our secrets into a next link under another name, or into the path)
means the position cannot be saved: the chain restarts from its first page on resume,
and a warning says so.

When pagination moved the request body (``page`` returned ``data``), the position holds
that body too. A body holding a secret is never saved (a body's secret cannot be
stripped and restored the way a query param can): the chain would restart from its
first page, and a warning says so.

STATE files are edited and copied between environments, so a saved position on another
origin than the spec's (and not in its ``trusted_origins``) is ignored, with one WARNING:
the chain starts from its first page.
"""

from __future__ import annotations

import hashlib
import typing as t
from urllib.parse import unquote_plus

import orjson

from tap_rhttp.formats.readers import dump_json
from tap_rhttp.http.origins import OriginPolicy, origin_of, origin_text
from tap_rhttp.http.urls import encode_pairs
from tap_rhttp.paging.paginator import PageRequest
from tap_rhttp.redact import MASK, is_credential_key

if t.TYPE_CHECKING:
    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.redact import Redactor
    from tap_rhttp.run.chain import Page
    from tap_rhttp.types import JSON


def spec_hash(spec: RequestSpec, redactor: Redactor) -> str:
    """A short, secret-free fingerprint of a spec, to detect a changed config.

    Masked with what the config alone teaches the redactor (``Redactor.config_view``), so
    it is the same in every run of the same config, whatever a run learns on the way.
    """
    shown = redactor.config_view().value(dict(spec.raw))
    shown.pop("auth", None)
    text = orjson.dumps(shown, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(text).hexdigest()[:16]


class ResumeState:
    """Where each chain of a stream stands, as it goes into STATE.

    Shape (under the stream's state, key ``rhttp``)::

        {"spec": "<hash>", "chains": {"<key>": {"url": ..., "params": {...},
         "override": [...], "data": {...}, "requests": 3, "withheld": [...]}},
         "done": ["<key>", ...]}

    ``data`` is there only when pagination moved the body away from the spec's.

    ``withheld`` (only when not empty) names the query params of ``url`` saved as
    ``key=***REDACTED***``, whose values come back from the config on resume.
    """

    KEY = "rhttp"

    def __init__(
        self,
        spec: RequestSpec,
        redactor: Redactor,
        *,
        track_done: bool,
        logger: t.Any = None,
    ) -> None:
        self.spec = spec
        self.logger = logger
        self._unsaved_warned: set[str] = set()
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
        url = str(saved["url"])
        withheld = saved.get("withheld")
        if withheld:
            restored = _restore(url, {str(k) for k in withheld}, _config_parts(spec))
            if restored is None:
                return None, 0
            url = restored
        request = PageRequest(
            url=url,
            params=params,
            override=frozenset(saved.get("override", ())),
            data=saved.get("data", spec.body),
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
        """The next request as STATE may hold it, or None when a secret cannot be withheld."""
        redactor = self.redactor
        base, sep, query = request.url.partition("?")
        if redactor.mentions_secret(base) or redactor.url(base) != base:
            return None  # a secret in the path or the userinfo: cannot be saved safely
        config = _config_parts(spec)
        parts: list[str] = []
        withheld: list[str] = []
        for part in query.split("&") if sep else []:
            raw_key, _, value = part.partition("=")
            key = unquote_plus(raw_key)
            secret = bool(value) and (
                redactor.mentions_secret(value)
                or is_credential_key(key)
                or (config.get(key) == part and redactor.is_credential_param(key))
            )
            if not secret:
                parts.append(part)
                continue
            if key not in config:
                return None
            parts.append(f"{raw_key}={MASK}")
            withheld.append(key)
        url = f"{base}?{'&'.join(parts)}" if sep else base
        own = dict(spec.params)
        params: dict[str, JSON] = {}
        for key, value in request.params.items():
            if own.get(key, object()) == value:
                continue  # the config's own value: merged back on resume
            for item in value if isinstance(value, list) else (value,):
                if isinstance(item, (str, int, float)) and not isinstance(item, bool):
                    text = str(item)
                    if text and (redactor.mentions_secret(text) or is_credential_key(key)):
                        return None
            params[key] = value
        # The names of the config's own secret params stay out too, as their values do.
        override = sorted(
            k
            for k in request.override
            if k in params or not (k in own and redactor.is_credential_param(k))
        )
        saved: dict[str, JSON] = {"url": url, "params": params, "override": override}
        if withheld:
            saved["withheld"] = sorted(set(withheld))
        if request.data != spec.body:
            if redactor.value(request.data) != request.data or redactor.mentions_secret(
                dump_json(request.data, default=str)
            ):
                self._warn_unsaved(
                    "body",
                    "the next request's body, as `page` moved it, holds a secret (a value of "
                    "the config's secrets, or a credential field), so no resume position is "
                    "saved in STATE for it",
                )
                return None  # the body holds a secret: no position at all, rather than that
            saved["data"] = request.data
        return saved

    def _warn_unsaved(self, key: str, why: str) -> None:
        """One WARNING per chain (or reason) that cannot keep a resume position."""
        if self.logger is None or key in self._unsaved_warned:
            return
        self._unsaved_warned.add(key)
        self.logger.warning(
            "stream %s: %s; a resumed run restarts this chain from its first page.",
            self.spec.name,
            why,
        )

    def advance(self, key: str, page: Page, spec: RequestSpec) -> None:
        """Record a completely emitted page: the chain's next request, or its end."""
        if page.next is None:
            self.finish(key)
            return
        saved = self._secret_free(page.next, spec)
        if saved is None:
            self.chains.pop(key, None)
            self._warn_unsaved(
                key,
                "the next request carries a secret that the config cannot give back (in "
                "its path, or under a param the config does not set), so its position is "
                "not saved in STATE",
            )
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


def _config_parts(spec: RequestSpec) -> dict[str, str]:
    """The query parts the config itself gives, by decoded key: ``key=value`` as sent."""
    parts: dict[str, str] = {}
    query = spec.url.partition("#")[0].partition("?")[2]
    for part in query.split("&"):
        if part:
            parts[unquote_plus(part.split("=", 1)[0])] = part
    for key, value in spec.params.items():
        if not isinstance(value, list):  # a repeated key cannot be restored part by part:
            parts[key] = encode_pairs({key: value})[0]  # a secret in one is never saved
    if spec.auth is not None:
        for key, value in spec.auth.query_params().items():
            parts[key] = encode_pairs({key: value})[0]
    return parts


def _restore(url: str, withheld: set[str], config: dict[str, str]) -> str | None:
    """Put the config's values back into the params a saved URL withheld."""
    base, sep, query = url.partition("?")
    if not sep:
        return url
    parts = []
    for part in query.split("&"):
        raw_key, _, value = part.partition("=")
        key = unquote_plus(raw_key)
        if key in withheld and value == MASK:
            if key not in config:
                return None
            part = config[key]
        parts.append(part)
    return f"{base}?{'&'.join(parts)}"

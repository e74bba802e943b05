"""TapRHTTP: the config schema, start-up validation, and one stream per r.http spec."""

from __future__ import annotations

import logging
import sys
import typing as t

from singer_sdk import Tap
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError

from tap_rhttp.chain import Chain
from tap_rhttp.errors import ConfigErrors, RHTTPError
from tap_rhttp.pagination import Paginator
from tap_rhttp.redact import RedactingFilter, Redactor
from tap_rhttp.schema import infer_schema, prepare_declared_schema
from tap_rhttp.spec import OPTIONS, RequestSpec, load_specs
from tap_rhttp.streams import RHTTPStream

if t.TYPE_CHECKING:
    import click

    from tap_rhttp.request import Response

try:
    from typing import override  # type: ignore[attr-defined]
except ImportError:  # Python < 3.12
    from typing_extensions import override


def _spec_properties(*, stream: bool) -> dict[str, t.Any]:
    props: dict[str, t.Any] = {}
    for name, option in OPTIONS.items():
        if not stream and name == "name":
            continue
        prop = dict(option.jsonschema)
        prop["description"] = option.description
        if option.default not in (None, ()):
            prop["description"] += f" Default: {option.default!r}."
        props[name] = prop
    props["attempts"] = {"type": "integer", "minimum": 1, "description": "Alias of `reattempts`."}
    return props


def config_schema() -> dict[str, t.Any]:
    """The tap's config JSON Schema, generated from the option table.

    No ``default`` keywords inside specs: the SDK would fill them into every stream and
    they would beat ``defaults``. Defaults are stated in the descriptions instead.
    """
    return {
        "type": "object",
        "properties": {
            "streams": {
                "type": "array",
                "description": "The r.http request specs; each becomes one stream.",
                "items": {
                    "type": "object",
                    "properties": _spec_properties(stream=True),
                    "required": ["name", "url"],
                },
            },
            "defaults": {
                "type": "object",
                "description": "Options applied to every stream; a stream's own value wins "
                "(`params` merge key by key).",
                "properties": _spec_properties(stream=False),
            },
        },
        "required": ["streams"],
    }


def build_redactor(specs: t.Sequence[RequestSpec]) -> Redactor:
    """One redactor that knows every secret in the config."""
    redactor = Redactor(
        secret_headers=[h for spec in specs for h in spec.secret_headers],
        secret_params=[
            spec.auth.name
            for spec in specs
            if spec.auth
            and spec.auth.type == "api_key"
            and spec.auth.location == "query"
            and spec.auth.name
        ],
    )
    for spec in specs:
        if spec.auth is not None:
            for secret in spec.auth.secrets():
                redactor.add_secret(secret)
            if spec.auth.type in ("basic", "digest"):
                redactor.add_basic_credentials(spec.auth.user or "", spec.auth.password or "")
        for name, value in spec.header:
            if value and redactor.is_sensitive_header(name):
                redactor.add_secret(value)
                scheme, _, credential = value.partition(" ")
                if credential.strip() and scheme.isalpha():
                    redactor.add_secret(credential.strip())
        for key, value in spec.params.items():
            if isinstance(value, str) and value and redactor.is_sensitive_param(key):
                redactor.add_secret(value)
    return redactor


class TapRHTTP(Tap):
    """Singer tap for RethinkDB r.http request specs."""

    name = "tap-rhttp"
    dynamic_catalog = True
    message_writer_class = MsgSpecWriter
    config_jsonschema = config_schema()

    _specs: list[RequestSpec]
    _redactor: Redactor

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        try:
            self._specs = load_specs(self.config)
        except ConfigErrors as exc:
            messages = [str(e) for e in exc.errors]
            if raise_errors:
                raise ConfigValidationError(
                    "Config validation failed", errors=messages, schema=self.config_jsonschema
                ) from None
            return messages
        self._redactor = build_redactor(self._specs)
        self._install_redaction()
        return super()._validate_config(raise_errors=raise_errors)

    def _install_redaction(self) -> None:
        """Redact every log line, whoever writes it (the SDK, requests, urllib3)."""
        log_filter = RedactingFilter(self._redactor)
        for logger in (logging.getLogger(), logging.getLogger(self.name)):
            for handler in logger.handlers:
                if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                    handler.addFilter(log_filter)

    @property
    def specs(self) -> list[RequestSpec]:
        """The validated specs (validated on first use when config checks were skipped)."""
        if not hasattr(self, "_specs"):
            self._specs = load_specs(self.config)
            self._redactor = build_redactor(self._specs)
        return self._specs

    @property
    def redactor(self) -> Redactor:
        """The config-wide redactor."""
        _ = self.specs
        return self._redactor

    def _catalog_schema(self, name: str) -> dict[str, t.Any] | None:
        catalog = self.input_catalog
        if catalog is None:
            return None
        entry = catalog.get(name)
        if entry is None or entry.schema is None:
            return None
        schema = entry.schema.to_dict()
        return schema if schema.get("properties") is not None else None

    def _sample(self, spec: RequestSpec, prefetched: dict[str, Response]) -> dict[str, t.Any]:
        """Infer a schema from the stream's first page, keeping the response for the sync."""
        chain = Chain(spec, self.redactor, self.logger)
        try:
            first = Paginator(spec, self.redactor).first()
            if first is None:
                return infer_schema([])
            response, _ = chain.fetch(first)
            _, records = chain.read(response)
            prefetched[chain.target(first)] = response
        finally:
            chain.close()
        if not records:
            self.logger.warning(
                "stream %s: the first page has no records, so no fields could be inferred; "
                "declare `schema` to type them (every field is still emitted).",
                spec.name,
            )
        return infer_schema(records)

    @override
    def discover_streams(self) -> list[RHTTPStream]:
        streams = []
        for spec in self.specs:
            prefetched: dict[str, Response] = {}
            schema = self._catalog_schema(spec.name)
            if schema is None:
                schema = (
                    prepare_declared_schema(spec.schema)
                    if spec.schema is not None
                    else self._sample(spec, prefetched)
                )
            streams.append(RHTTPStream(self, spec, schema, self.redactor, prefetched=prefetched))
        return streams

    @classmethod
    def _fail(cls, exc: RHTTPError) -> t.NoReturn:
        """Report an r.http error the way r.http does: its message, no traceback."""
        cls.logger.error("%s", exc)
        sys.exit(1)

    @classmethod
    @override
    def invoke(cls, **kwargs: t.Any) -> None:
        try:
            super().invoke(**kwargs)
        except RHTTPError as exc:
            cls._fail(exc)

    @classmethod
    @override
    def cb_discover(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        try:
            super().cb_discover(ctx, param, value)
        except RHTTPError as exc:
            cls._fail(exc)


if __name__ == "__main__":
    TapRHTTP.cli()

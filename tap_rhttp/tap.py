"""TapRHTTP: the config schema, start-up validation, and one stream per r.http spec."""

from __future__ import annotations

import gc
import itertools
import logging
import sys
import typing as t

from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError

from tap_rhttp import headstart
from tap_rhttp.chain import Chain
from tap_rhttp.errors import ConfigError, ConfigErrors, RHTTPError
from tap_rhttp.explain import add_explain_options
from tap_rhttp.pagination import Paginator
from tap_rhttp.redact import RedactingFilter, Redactor, build_redactor
from tap_rhttp.schema import infer_schema, prepare_declared_schema
from tap_rhttp.spec import OPTIONS, RequestSpec, load_specs
from tap_rhttp.streams import RHTTPStream
from tap_rhttp.templates import render_spec, template_context, template_env
from tap_rhttp.writer import BufferedMsgSpecWriter

if t.TYPE_CHECKING:
    import click

    from tap_rhttp.chain import Records
    from tap_rhttp.request import Response

try:
    from typing import override  # type: ignore[attr-defined]
except ImportError:  # Python < 3.12
    from typing_extensions import override


#: Records of a streamed first page (a body too large to parse whole) that inference reads.
SAMPLE_RECORDS = 5000


def _or_null(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """`schema`, or null (an option set to null is not set, as the tap's checks read it)."""
    kind = schema.get("type")
    if kind is not None and "enum" not in schema:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        return {**schema, "type": [*kinds, "null"]}
    if not schema:
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _spec_properties(*, stream: bool) -> dict[str, t.Any]:
    props: dict[str, t.Any] = {}
    for name, option in OPTIONS.items():
        if not stream and name == "name":
            continue
        prop = dict(option.jsonschema) if name in ("name", "url") else _or_null(option.jsonschema)
        prop["description"] = option.description
        if option.default not in (None, ()):
            prop["description"] += f" Default: {option.default!r}."
        props[name] = prop
    props["attempts"] = {
        "type": ["integer", "null"],
        "minimum": 1,
        "description": "Alias of `reattempts`.",
    }
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
            "secrets": {
                "type": ["object", "null"],
                "description": "Named secret values for `{{ secrets['name'] }}` templates; "
                "redacted everywhere.",
                "additionalProperties": {"type": "string"},
                "secret": True,
                "writeOnly": True,
            },
            "defaults": {
                "type": ["object", "null"],
                "description": "Options applied to every stream; a stream's own value wins "
                "(`params` merge key by key).",
                "properties": _spec_properties(stream=False),
            },
        },
        "required": ["streams"],
    }


class TapRHTTP(Tap):
    """Singer tap for RethinkDB r.http request specs."""

    name = "tap-rhttp"
    dynamic_catalog = True
    message_writer_class = BufferedMsgSpecWriter
    config_jsonschema = config_schema()

    _specs: list[RequestSpec]
    _redactor: Redactor

    def __init__(self, *args: t.Any, state: t.Any = None, **kwargs: t.Any) -> None:
        """Keep the input STATE at hand: the SDK discovers streams before loading it."""
        self._input_state = state if isinstance(state, dict) else {}
        super().__init__(*args, state=state, **kwargs)

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
        self._redactor = build_redactor(self._specs, self.config.get("secrets"))
        self._install_redaction()
        errors = super()._validate_config(raise_errors=raise_errors)
        if errors:
            headstart.discard("the config has errors", self.logger)
        else:
            headstart.confirm(self.config, self.logger)
        return errors

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
            self._redactor = build_redactor(self._specs, self.config.get("secrets"))
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

    def template_context(self) -> dict[str, t.Any]:
        """`config` (non-secret top-level settings) and `secrets` for templates."""
        return template_context(self.config)

    def _sample(
        self, spec: RequestSpec, prefetched: dict[str, Response], parent_rows: list[t.Any]
    ) -> list[dict[str, t.Any]]:
        """The stream's first page, for inference; the response is kept for the sync."""
        if spec.parent is not None and not parent_rows:
            self.logger.warning(
                "stream %s: its parent %s had no record to sample, so no fields could be "
                "inferred; declare `schema` to type them (every field is still emitted).",
                spec.name,
                spec.parent,
            )
            return []
        state = self.state or self._input_state
        saved = state.get("bookmarks", {}).get(spec.name, {})
        bookmark = saved.get("replication_key_value", spec.start_value)
        env = template_env(
            spec,
            self.template_context(),
            item=spec.for_each[0] if spec.for_each else None,
            row=parent_rows[0] if parent_rows else None,
            bookmark=bookmark,
        )
        rendered = render_spec(spec, env)
        head = headstart.current()
        page = (
            head.first_page(rendered) if head is not None and head.spec.name == spec.name else None
        )
        records: Records
        if page is not None:  # the head start's first page; it stays for the sync
            records = page.spooled if page.spooled is not None else page.records
        else:
            chain = Chain(rendered, self.redactor, self.logger, stream_bodies=True)
            try:
                first = Paginator(rendered, self.redactor).first()
                if first is None:
                    return []
                response, _ = chain.fetch(first)
                _, records = chain.read(response)
                prefetched[chain.target(first)] = response
            finally:
                chain.close()
        if not isinstance(records, list):  # a streamed first page: infer from its head
            records = list(itertools.islice(records, SAMPLE_RECORDS))
        if not records:
            self.logger.warning(
                "stream %s: the first page has no records, so no fields could be inferred; "
                "declare `schema` to type them (every field is still emitted).",
                spec.name,
            )
        return records

    def _ordered_specs(self) -> list[RequestSpec]:
        """Parents before their children (the config guarantees no cycles)."""
        done: dict[str, RequestSpec] = {}
        pending = list(self.specs)
        while pending:
            for spec in list(pending):
                if spec.parent is None or spec.parent in done:
                    done[spec.name] = spec
                    pending.remove(spec)
        return list(done.values())

    @staticmethod
    def parent_columns(
        spec: RequestSpec, by_name: dict[str, RequestSpec]
    ) -> tuple[tuple[str, str], ...]:
        """(parent field, child column) pairs copied into each child record."""
        if spec.parent is None:
            return ()
        if spec.parent_keys is not None:
            return spec.parent_keys
        return tuple((key, f"{spec.parent}_{key}") for key in by_name[spec.parent].primary_keys)

    @override
    def discover_streams(self) -> list[RHTTPStream]:
        specs = self._ordered_specs()
        by_name = {spec.name: spec for spec in specs}
        needs_sample = {
            spec.name
            for spec in specs
            if self._catalog_schema(spec.name) is None and spec.schema is None
        }
        for spec in specs:  # a child samples with its parent's first row
            if spec.name in needs_sample and spec.parent:
                needs_sample.add(spec.parent)
        samples: dict[str, list[dict[str, t.Any]]] = {}
        schemas: dict[str, dict[str, t.Any]] = {}
        classes: dict[str, type[RHTTPStream]] = {}
        streams = []
        for spec in specs:
            prefetched: dict[str, Response] = {}
            if spec.name in needs_sample:
                parent_rows = samples.get(spec.parent, []) if spec.parent else []
                samples[spec.name] = self._sample(spec, prefetched, parent_rows)
            schema = self._catalog_schema(spec.name)
            if schema is None:
                schema = (
                    prepare_declared_schema(spec.schema)
                    if spec.schema is not None
                    else infer_schema(samples.get(spec.name, []))
                )
                schema = self._with_parent_columns(spec, schema, by_name, schemas)
            self._check_replication_key(spec, schema)
            schemas[spec.name] = schema
            cls = type(
                f"RHTTPStream_{spec.name}",
                (RHTTPStream,),
                {
                    "parent_stream_type": classes.get(spec.parent) if spec.parent else None,
                    "state_partitioning_keys": [] if spec.parent else None,
                },
            )
            classes[spec.name] = cls
            streams.append(
                cls(
                    self,
                    spec,
                    schema,
                    self.redactor,
                    template_context=self.template_context(),
                    parent_columns=self.parent_columns(spec, by_name),
                    prefetched=prefetched,
                )
            )
        return streams

    def _with_parent_columns(
        self,
        spec: RequestSpec,
        schema: dict[str, t.Any],
        by_name: dict[str, RequestSpec],
        schemas: dict[str, dict[str, t.Any]],
    ) -> dict[str, t.Any]:
        columns = self.parent_columns(spec, by_name)
        if not columns:
            return schema
        parent_props = schemas.get(spec.parent or "", {}).get("properties", {})
        props = dict(schema.get("properties", {}))
        for field, column in columns:
            props.setdefault(column, parent_props.get(field, {}))
        return {**schema, "properties": props}

    def _check_replication_key(self, spec: RequestSpec, schema: dict[str, t.Any]) -> None:
        key = spec.replication_key
        if key is not None and key not in schema.get("properties", {}):
            raise ConfigErrors(
                [
                    ConfigError(
                        f"{spec.path}.replication_key",
                        f"replication key `{key}` is not a field of the stream's schema "
                        "(inferred from the first page, or declared).",
                        value=key,
                        allowed=", ".join(sorted(schema.get("properties", {}))) or "(none)",
                    )
                ]
            )

    @classmethod
    def _fail(cls, exc: RHTTPError) -> t.NoReturn:
        """Report an r.http error the way r.http does: its message, no traceback."""
        cls.logger.error("%s", exc)
        sys.exit(1)

    @classmethod
    @override
    def invoke(cls, **kwargs: t.Any) -> None:
        # One command is one process: what the imports built lives until exit, and at
        # the end everything does. gc.freeze() takes it out of the cyclic collector's
        # walks, during the run and at interpreter exit (about 0.1 s of a short run).
        gc.freeze()
        try:
            super().invoke(**kwargs)
        except RHTTPError as exc:
            cls._fail(exc)
        finally:
            gc.freeze()

    @classmethod
    @override
    def cb_discover(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        try:
            super().cb_discover(ctx, param, value)
        except RHTTPError as exc:
            cls._fail(exc)

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        """The SDK's command plus ``--explain [--pages N]`` (see ``tap_rhttp.explain``)."""
        return add_explain_options(cls, super().get_singer_command())


if __name__ == "__main__":
    TapRHTTP.cli()

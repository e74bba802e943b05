"""TapRHTTP: singer-sdk's tap around one :class:`~tap_rhttp.run.context.RunContext`.

The tap validates the config (the tap's own checks first, naming options as r.http
does, then the SDK's JSON Schema), builds the run context, and makes one
:class:`~tap_rhttp.streams.RHTTPStream` per spec in discovery, sampling its first pages
where a schema must be inferred. Errors of r.http end the run with one ERROR line.
"""

from __future__ import annotations

import gc
import pathlib
import sys
import typing as t

import click
from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError

from tap_rhttp import __version__
from tap_rhttp.config.checks import type_name
from tap_rhttp.config.jsonschema import config_schema
from tap_rhttp.errors import ConfigErrors, RHTTPError
from tap_rhttp.explain import add_explain_options
from tap_rhttp.redact import install_log_redaction
from tap_rhttp.run.context import RunContext
from tap_rhttp.sdk_compat import (
    TapHooks,
    load_json,
    quiet_startup_notice,
    replace_state_writer,
    sdk_version,
)
from tap_rhttp.streams import RHTTPStream
from tap_rhttp.writer import STOP, BufferedMsgSpecWriter, ChangedStateWriter

if t.TYPE_CHECKING:
    from tap_rhttp.redact import Redactor

try:
    from typing import override  # type: ignore[attr-defined]
except ImportError:  # Python < 3.12
    from typing_extensions import override


def config_file_problem(path: str) -> str | None:
    """What keeps a config file from being read as a JSON object (None: nothing)."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return "no such file."
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot be read: {exc}."
    try:
        value = load_json(text)
    except ValueError as exc:  # simplejson's JSONDecodeError; too many digits
        return f"is not valid JSON: {exc}."
    except RecursionError:
        return "is not valid JSON: nested too deeply."
    if not isinstance(value, dict):
        return f"should hold a JSON object (got {type_name(value)})."
    return None


class TapRHTTP(TapHooks, Tap):
    """Singer tap for RethinkDB r.http request specs."""

    name = "tap-rhttp"
    dynamic_catalog = True
    message_writer_class = BufferedMsgSpecWriter
    config_jsonschema = config_schema()

    @classmethod
    @override
    def get_plugin_version(cls) -> str:
        """The version in ``tap_rhttp/__init__.py`` (the only place it is kept): the SDK
        would look it up in the installed distributions' metadata, about 30 ms of every
        start."""
        return __version__

    @classmethod
    @override
    def get_sdk_version(cls) -> str:
        """singer-sdk's version, without scanning every installed distribution."""
        return sdk_version()

    _run: RunContext

    def __init__(self, *args: t.Any, state: t.Any = None, **kwargs: t.Any) -> None:
        """Keep the input STATE at hand: the SDK discovers streams before loading it.

        Also lowers singer-sdk's "Skipping parse of env var settings..." to DEBUG.
        """
        self._input_state = state if isinstance(state, dict) else {}
        quiet_startup_notice(self.logger)
        super().__init__(*args, state=state, **kwargs)
        if isinstance(self.message_writer, BufferedMsgSpecWriter):
            replace_state_writer(self, ChangedStateWriter(self.message_writer))
        STOP.install(self.logger)  # after singer-sdk's own handlers, which exit 0

    @override
    def check_config(self, *, raise_errors: bool) -> list[str]:
        """The tap's own checks (every problem at once), before the SDK's schema check."""
        try:
            self._run = RunContext(self.config, logger=self.logger)
        except ConfigErrors as exc:
            messages = [str(e) for e in exc.errors]
            if raise_errors:
                raise ConfigValidationError(
                    "Config validation failed", errors=messages, schema=self.config_jsonschema
                ) from None
            return messages
        self._install_redaction()
        return []

    def _install_redaction(self) -> None:
        """Redact every log record, whoever makes it and whatever handler prints it.

        A record factory (``redact.install_log_redaction``) rather than handler filters:
        a ``SINGER_SDK_LOG_CONFIG`` file may give any logger its own handler with
        ``propagate: false`` (urllib3 at DEBUG), and handlers added later, or
        ``logging.lastResort``, would go around filters set now.
        """
        install_log_redaction(self.run.redactor)

    @property
    def run(self) -> RunContext:
        """The run's context (built on first use when config checks were skipped)."""
        if not hasattr(self, "_run"):
            self._run = RunContext(self.config, logger=self.logger)
            self._install_redaction()
        return self._run

    @property
    def redactor(self) -> Redactor:
        """The config-wide redactor."""
        return self.run.redactor

    def _catalog_schema(self, name: str) -> dict[str, t.Any] | None:
        catalog = self.input_catalog
        if catalog is None:
            return None
        entry = catalog.get(name)
        if entry is None or entry.schema is None:
            return None
        schema = entry.schema.to_dict()
        return schema if schema.get("properties") is not None else None

    @override
    def discover_streams(self) -> list[RHTTPStream]:
        run = self.run
        specs = run.ordered_specs()
        needs_sample = {
            spec.name
            for spec in specs
            if self._catalog_schema(spec.name) is None and spec.schema is None
        }
        for spec in specs:  # a child samples with its parent's first row
            if spec.name in needs_sample and spec.parent:
                needs_sample.add(spec.parent)
        state = self.state or self._input_state
        samples: dict[str, list[dict[str, t.Any]]] = {}
        schemas: dict[str, dict[str, t.Any]] = {}
        classes: dict[str, type[RHTTPStream]] = {}
        streams = []
        for spec in specs:
            stream_run = run.stream(spec.name)
            if spec.name in needs_sample:
                samples[spec.name] = stream_run.sample(
                    bookmark=run.bookmark(spec, state),
                    parent_rows=samples.get(spec.parent, []) if spec.parent else [],
                    saved=run.saved_resume(spec, state),
                    first_rows=run.warm_children(spec, needs_sample, state),
                )
            schema = self._catalog_schema(spec.name)
            if schema is None:
                schema = run.schema(
                    spec, samples.get(spec.name, []), schemas.get(spec.parent or "")
                )
            schema = run.keep_columns(spec, schema, state)
            run.check_replication_key(spec, schema)
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
            streams.append(cls(self, stream_run, schema))
        return streams

    @classmethod
    def fail(cls, exc: RHTTPError) -> t.NoReturn:
        """Report an r.http error the way r.http does: its message, no traceback; exit 1."""
        cls.logger.error("%s", exc)
        sys.exit(1)

    @classmethod
    def fail_unexpected(cls, exc: BaseException) -> t.NoReturn:
        """Report any other failure as one ERROR line (the traceback at DEBUG); exit 1.

        A run must never end on a traceback as its main message, nor hang: whatever
        escaped (a full disk, memory running out, a bug) is named in one line.
        """
        if isinstance(exc, MemoryError):
            text = (
                "out of memory (MemoryError): a page too large to hold? "
                "Lower `max_body_bytes`, or give the tap more memory."
            )
        else:
            detail = " ".join(str(exc).split())
            detail = detail if len(detail) <= 500 else detail[:500] + " ..."
            text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        cls.logger.debug("the run failed on:", exc_info=exc)
        cls.logger.error(
            "tap-rhttp stopped on an unexpected error: %s (TAP_RHTTP_LOGLEVEL=debug logs where)",
            text,
        )
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
            cls.fail(exc)
        except (click.exceptions.Exit, click.ClickException, ConfigValidationError):
            raise  # click and singer-sdk report these themselves
        except Exception as exc:
            cls.fail_unexpected(exc)
        finally:
            gc.freeze()

    @classmethod
    @override
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> t.Any:
        """singer-sdk reads the ``--config`` files; its failures become one clear line.

        Each file is read as JSON first, so the message names the file and what is wrong
        with it (missing, unreadable, not JSON, not a JSON object), never a traceback.
        """
        for path in value:
            if path == "ENV":
                continue
            problem = config_file_problem(path)
            if problem is not None:
                cls.logger.error("--config %s: %s", path, problem)
                ctx.exit(1)
        return super().cb_config(ctx, param, value)

    @classmethod
    @override
    def cb_discover(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        try:
            super().cb_discover(ctx, param, value)
        except RHTTPError as exc:
            cls.fail(exc)
        except (click.exceptions.Exit, click.ClickException, ConfigValidationError):
            raise
        except Exception as exc:
            cls.fail_unexpected(exc)

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        """The SDK's command plus ``--explain [--pages N]`` (see ``tap_rhttp.explain``).

        ``tap-rhttp init`` is dispatched before this command (``tap_rhttp.main``); the
        help text points to it.
        """

        def make_run(options: dict[str, t.Any]) -> RunContext:
            config = options.get("config")
            tap = cls(
                config=config.config if config is not None else None,
                parse_env_config=config.parse_env if config is not None else False,
                validate_config=True,
                setup_mapper=False,
            )
            return tap.run

        command = add_explain_options(
            super().get_singer_command(),
            make_run=make_run,
            fail=cls.fail,
            fail_unexpected=cls.fail_unexpected,
        )
        command.epilog = (
            "To write a stream spec for an API: tap-rhttp init URL (tap-rhttp init --help)."
        )
        return command


if __name__ == "__main__":
    TapRHTTP.cli()

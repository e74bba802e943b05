"""Explain mode: what a run would request, see and infer, for a person debugging a config.

``tap-rhttp --config c.json --explain [--pages N]`` makes the first N requests of every
stream (default 3) and prints, per page, to stdout and for people (never Singer
messages):

- what applies to the stream's requests: the auth (its type only), the proxy (its
  password masked), the client certificate, the origins that receive the credentials,
  the response rules, and the rate limits (client-side and announced by the server);
- a ``curl`` command that repeats the request: method, headers, body and the exact URL,
  every secret replaced by the redactor's mask;
- the decoder (``result_format`` and its ``csv``/``xml`` options), and per page what the
  body was read as;
- the status, the `info` the page expression saw (``params``, ``header``, ``body`` cut
  short), what `page` returned and the next request it chose, or why the chain stopped;
- how many records the page held;

and, after each stream, the schema a run would use: inferred from every record seen
(with a note when a run's own sample, its first pages, infers a different one, and one on
the fields seen only as null, left untyped), or the declared ``schema``.

It runs the very code a sync runs: the tap's validation, then the run's
:class:`~tap_rhttp.run.context.RunContext` (its redactor, each stream's
:class:`~tap_rhttp.run.context.StreamRun`: the same chain tasks, chains, record shaping
and schema rules), and it prints what each :class:`~tap_rhttp.run.chain.Page` recorded
(what ``page`` saw and returned), so nothing is evaluated twice. Requests are capped
exactly: a chain yields a page before it fetches the next one, so stopping after N pages
sends N requests. Errors end the run with the message and exit status a normal run gives.

Rejected: a dry run that only prints planned requests. Pagination depends on responses,
and the questions people have ("why does it stop after one page?", "why is this column a
string?") are answered only by what the server actually sent.
"""

from __future__ import annotations

import shlex
import sys
import typing as t

import click
import orjson
import requests.auth
from urllib3.util import SKIP_HEADER

from tap_rhttp.config.windows import iso, window_value
from tap_rhttp.errors import ConfigErrors, RHTTPError
from tap_rhttp.formats.readers import dump_json
from tap_rhttp.paging.paginator import INFO_BODY_CHARS, Paginator
from tap_rhttp.redact import MASK
from tap_rhttp.run import graph
from tap_rhttp.schema.infer import (
    infer_schema,
    null_only_fields,
    prepare_declared_schema,
    with_overrides,
)

if t.TYPE_CHECKING:
    from tap_rhttp.config.spec import RequestSpec
    from tap_rhttp.paging.paginator import PageRequest
    from tap_rhttp.redact import Redactor
    from tap_rhttp.run.chain import Chain, Page
    from tap_rhttp.run.context import RunContext, StreamRun
    from tap_rhttp.run.fanout import ChainTask
    from tap_rhttp.types import JSON

#: Requests per stream when ``--pages`` is not given.
DEFAULT_PAGES = 3


def add_explain_options(
    command: click.Command,
    *,
    make_run: t.Callable[[dict[str, t.Any]], RunContext],
    fail: t.Callable[[RHTTPError], t.NoReturn],
    fail_unexpected: t.Callable[[Exception], t.NoReturn] | None = None,
) -> click.Command:
    """Give the tap's command ``--explain`` and ``--pages N``.

    The options are read after every other option is parsed (``--config``, ``--state``),
    by wrapping the command's callback: with ``--explain`` it runs an :class:`Explainer`
    instead of a sync.

    Args:
        command: the tap's command.
        make_run: builds the run's context from the command's parsed options; config
            errors raise ``ConfigValidationError`` there, so singer-sdk reports them
            exactly as for a sync.
        fail: reports an r.http error and exits, as a sync does.
        fail_unexpected: reports any other error in one line and exits, as a sync does
            (without it, such an error propagates).
    """
    command.params.extend(
        [
            click.Option(
                ["--explain"],
                is_flag=True,
                help="Make the first requests of each stream and print, for people, what "
                "was sent, received, paginated and inferred. No Singer messages.",
            ),
            click.Option(
                ["--pages"],
                type=click.IntRange(min=1),
                default=None,
                help=f"Requests per stream in --explain mode (default {DEFAULT_PAGES}).",
            ),
        ]
    )
    sync = command.callback
    assert sync is not None

    def callback(*, explain: bool = False, pages: int | None = None, **kwargs: t.Any) -> t.Any:
        if not explain or kwargs.get("about"):
            if pages is not None:
                raise click.UsageError("--pages applies only with --explain.")
            return sync(**kwargs)
        state_file = kwargs.get("state")
        state = orjson.loads(state_file.read()) if state_file is not None else {}
        run = make_run(kwargs)
        try:
            code = Explainer(run, pages or DEFAULT_PAGES, state=state).run()
        except RHTTPError as exc:
            sys.stdout.flush()
            fail(exc)
        except Exception as exc:  # one clear line, as a run reports it
            if fail_unexpected is None:
                raise
            sys.stdout.flush()
            fail_unexpected(exc)
        sys.exit(code)

    command.callback = callback
    return command


def _json(value: JSON) -> str:
    return dump_json(value, default=str).decode()


def _excerpt(redactor: Redactor, text: str, limit: int = INFO_BODY_CHARS) -> str:
    """`text` redacted, then cut (cutting first could leave the head of a secret)."""
    shown, cut = redactor.excerpt(text, limit)
    return f"{shown} ... ({len(text)} characters)" if cut else shown


def curl_command(chain: Chain, request: PageRequest, redactor: Redactor) -> str:
    """A ``curl`` command line that sends what the chain sends for `request`, redacted.

    Headers come from the request the client prepares (defaults, the spec's headers,
    auth, cookies the session holds now), so call it right before the request is made.
    Digest auth becomes ``--digest --user`` (its header needs the server's challenge).
    """
    spec = chain.spec
    url = chain.target(request)
    digest = isinstance(chain.client.auth, requests.auth.HTTPDigestAuth)
    # Preparing would step the digest auth's nonce counter: its header is left out.
    prepared = chain.client.prepare(url, auth=not digest, data=request.data)
    args = ["curl", "-i"]
    if spec.method == "HEAD":
        args.append("--head")
    else:
        args += ["-X", spec.method]
    lines = [" ".join([*args, shlex.quote(redactor.url(url))])]
    headers = redactor.headers(
        [(k, v) for k, v in prepared.headers.items() if k.lower() != "content-length"]
    )
    compressed = False
    for name, value in headers.items():
        if value == SKIP_HEADER:  # the user removed a default header
            lines.append(f"-H {shlex.quote(name + ':')}")
            continue
        if name.lower() == "accept-encoding" and ("gzip" in value or "deflate" in value):
            compressed = True
        lines.append(f"-H {shlex.quote(f'{name}: {value}')}")
    if digest and spec.auth is not None:
        user = f"{spec.auth.user or ''}:{MASK}"
        lines.append(f"--digest --user {shlex.quote(user)}")
    body = prepared.body
    if body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        lines.append(f"--data-binary {shlex.quote(redactor.text(text))}")
    if compressed:
        lines.append("--compressed")
    if spec.redirects > 0:
        lines.append(f"-L --max-redirs {spec.redirects}")
    if spec.timeout > 0:
        lines.append(f"--max-time {spec.timeout:g}")
    if spec.verify is False:
        lines.append("-k")
    elif isinstance(spec.verify, str):
        lines.append(f"--cacert {shlex.quote(spec.verify)}")
    if spec.client_cert:
        cert = spec.client_cert + (f":{MASK}" if spec.client_key_password else "")
        lines.append(f"--cert {shlex.quote(cert)}")
        if spec.client_key:
            lines.append(f"--key {shlex.quote(spec.client_key)}")
    if spec.proxy:
        lines.append(f"--proxy {shlex.quote(redactor.url(spec.proxy))}")
    return " \\\n    ".join(lines)


class Explainer:
    """Runs the first requests of every stream of a run and prints what happened.

    Args:
        run: the run's context, built from a validated config.
        pages: requests per stream.
        state: a Singer STATE, for the bookmarks templates see (optional).
        out: where the report goes (one string per line).
    """

    def __init__(
        self,
        run: RunContext,
        pages: int,
        *,
        state: dict[str, JSON] | None = None,
        out: t.Callable[[str], None] = click.echo,
    ) -> None:
        self.run_context = run
        self.pages = pages
        self.state = state or {}
        self.out = out
        self.redactor = run.redactor
        self.records: dict[str, list[dict[str, JSON]]] = {}
        self.schemas: dict[str, dict[str, JSON]] = {}
        self.problems = 0

    def run(self) -> int:
        """Explain every stream, parents before children; the exit status to use.

        Raises:
            RHTTPError: a request, format, expression or config error a run would fail on.
        """
        specs = self.run_context.ordered_specs()
        self.out(
            f"tap-rhttp --explain: {len(specs)} stream(s), at most {self.pages} request(s) "
            "each. This is a report, not Singer output; logs go to stderr."
        )
        for spec in specs:
            self.stream(spec)
        return 1 if self.problems else 0

    # ------------------------------------------------------------------ one stream

    def _excerpt(self, text: str, limit: int = INFO_BODY_CHARS) -> str:
        return _excerpt(self.redactor, text, limit)

    def _tasks(self, stream: StreamRun, bookmark: JSON) -> list[tuple[str, ChainTask]]:
        """(label, task) of each chain a run would start, in order."""
        spec = stream.spec
        if spec.parent is not None:
            rows = self.records.get(spec.parent, [])
            tasks = stream.tasks(bookmark=bookmark, rows=list(enumerate(rows)))
            return [(f"parent row {int(task.key) + 1} of {len(rows)} seen", task) for task in tasks]
        tasks = stream.tasks(bookmark=bookmark)
        if spec.windows is not None:
            return [(task.label, task) for task in tasks]
        if spec.for_each is not None:
            values = spec.for_each
            return [
                (
                    f"{task.label} = {_excerpt(stream.redactor, _json(values[int(task.key)]), 80)}",
                    task,
                )
                for task in tasks
            ]
        return [("", task) for task in tasks]

    def stream(self, spec: RequestSpec) -> None:
        """Explain one stream: its first requests, then its schema."""
        out = self.out
        stream = self.run_context.stream(spec.name)
        out("")
        out(f"== stream {spec.name} ({spec.path}) ==")
        paging = (
            f"page: {spec.page_source}, page_limit: {spec.page_limit}"
            if spec.page is not None
            else "no `page`: one request per chain"
        )
        out(f"{spec.method} {self.redactor.url(spec.url)}; {paging}")
        out(f"decoder: {spec.decoder.describe()}")
        for line in self.applies(stream):
            out(line)
        bookmark = self.run_context.bookmark(spec, self.state)
        if spec.replication_key is not None:
            out(f"bookmark ({spec.replication_key}): {_json(bookmark)}")
        if spec.windows is not None:
            self._windows(stream, bookmark)
        tasks = self._tasks(stream, bookmark)
        if stream.shard is not None:
            self._shard(stream, bookmark, tasks)
        if spec.parent is not None and not tasks:
            out(f"no request: the parent stream `{spec.parent}` gave no records here.")
        elif not tasks:
            out("no request: `for_each` is empty, so a run makes none (an empty stream).")
        seen: list[dict[str, JSON]] = []
        sampled: list[dict[str, JSON]] = []  # what a run's discovery would sample
        size = spec.schema_sample
        sent = 0
        for index, (label, task) in enumerate(tasks):
            if sent >= self.pages:
                out(f"not requested: {len(tasks) - index} more chain(s) (--pages {self.pages}).")
                break
            if label:
                out(f"-- chain {label}")
            if task.error is not None:
                self._failed(spec, task.error)
                continue
            assert task.spec is not None
            chain = stream.make_chain(task.spec, read_ahead=False, label=task.label)
            try:
                for page in self._pages(chain, task.spec, self.pages - sent):
                    sent += 1
                    try:
                        records = self._records(stream, page, task, bookmark)
                    finally:
                        page.close()
                    if sent <= size.pages:
                        sampled += records[: max(size.records - len(sampled), 0)]
                    seen += records
            except RHTTPError as exc:
                self._failed(spec, exc)
            finally:
                chain.close()
        self.records[spec.name] = seen
        out(f"== {spec.name}: {sent} request(s), {len(seen)} record(s)")
        self._schema(stream, seen, sampled)

    def applies(self, stream: StreamRun) -> list[str]:
        """What governs every request of a stream: auth, network, origins, rules, limits."""
        spec = stream.spec
        redact = self.redactor
        lines = []
        auth = spec.auth
        if auth is None:
            lines.append("auth: none")
        elif auth.type == "oauth2":
            scopes = f", scopes {' '.join(auth.scopes)}" if auth.scopes else ""
            cache = f", token_cache {auth.token_cache}" if auth.token_cache else ""
            lines.append(
                f"auth: oauth2 ({auth.grant} grant, token from "
                f"{redact.url(auth.token_url or '')}, client auth {auth.client_auth}"
                f"{scopes}{cache})"
            )
        elif auth.type == "api_key":
            lines.append(f"auth: api_key (in the {auth.location}, named {auth.name})")
        else:
            lines.append(f"auth: {auth.type}")
        if spec.proxy:
            lines.append(f"proxy: {redact.url(spec.proxy)}")
        else:
            lines.append("proxy: none set (HTTP_PROXY/HTTPS_PROXY/NO_PROXY apply)")
        if spec.client_cert:
            key = f", key {spec.client_key}" if spec.client_key else ""
            password = " (encrypted, password given)" if spec.client_key_password else ""
            lines.append(f"client certificate: {spec.client_cert}{key}{password}")
        trusted = ", ".join(spec.trusted_origins) if spec.trusted_origins else "none"
        lines.append(f"credentials go to: the stream's own origin; trusted_origins: {trusted}")
        if spec.response_rules:
            lines.append("response rules (the first match wins):")
            lines += [f"  {redact.text(rule.describe())}" for rule in spec.response_rules]
        else:
            lines.append("response rules: none")
        limits = [f"rate_limit {spec.rate_limit:g}/s"] if spec.rate_limit else []
        limits.append(
            "the server's X-RateLimit-*, RateLimit and Retry-After (403/429/503) "
            f"hold the stream, each wait at most {spec.retry_after_max:g} s (retry_after_max)"
        )
        if spec.max_retry_seconds is not None:
            limits.append(f"max_retry_seconds {spec.max_retry_seconds:g}")
        lines.append(f"rate limits: {'; '.join(limits)}")
        return lines

    def _windows(self, stream: StreamRun, bookmark: JSON) -> None:
        """The stream's time windows: how many, their span, the first and last."""
        spec = stream.spec
        assert spec.windows is not None
        windows = stream.windows(bookmark)
        lookback = f", lookback {spec.windows.lookback} s" if spec.windows.lookback else ""
        if not windows:
            self.out(f"windows: none (step {spec.windows.step} s{lookback}): nothing to fetch.")
            return
        self.out(
            f"windows: {len(windows)} of {spec.windows.step} s{lookback}, "
            f"{iso(windows[0][0])} .. {iso(windows[-1][1])} (now: {iso(self.run_context.now)})"
        )
        shown = windows if len(windows) <= 4 else [*windows[:2], *windows[-2:]]
        for i, (start, end) in enumerate(shown):
            if len(windows) > 4 and i == 2:
                self.out(f"  ... {len(windows) - 4} more")
            self.out(f"  {_json(window_value(start, end))}")

    def _shard(self, stream: StreamRun, bookmark: JSON, tasks: list[tuple[str, ChainTask]]) -> None:
        """This shard's share of the stream, in words."""
        shard, rule, spec = stream.shard, stream.shard_rule, stream.spec
        assert shard is not None
        head = f"shard {shard} (sha256 of each value's canonical JSON, mod {shard.count})"
        if rule == "values":
            total = len(stream.tasks(bookmark=bookmark, whole=True))
            kind = "windows (by start)" if spec.windows is not None else "`for_each` values"
            self.out(f"{head}: {len(tasks)} of {total} {kind} are this shard's.")
        elif rule == "zero":
            where = "this one" if shard.index == 0 else "not this one: no request here"
            self.out(f"{head}: no fan-out, so the stream runs in shard 0 only ({where}).")
        elif rule == "source":
            emits = "this one" if stream.emits else "not this one"
            self.out(
                f"{head}: read in every shard for its children's rows; its records are "
                f"emitted by shard 0 only ({emits})."
            )
        elif rule == "rows":
            rows = self.records.get(spec.parent or "", [])
            self.out(
                f"{head}: takes the parent rows whose primary key (or whole row) hashes here: "
                f"{len(tasks)} of the {len(rows)} parent row(s) seen."
            )
        else:
            self.out(f"{head}: runs every row its parent gives (the parent's chains are split).")

    def _failed(self, spec: RequestSpec, exc: Exception) -> None:
        """A chain failed: a run skips it with `on_error: skip`, else stops with the error."""
        first_line = self.redactor.text(str(exc)).split("\n", 1)[0]
        if spec.on_error == "skip":
            self.out(f"skipped (on_error: skip; a run goes on with the next chain): {first_line}")
            return
        self.out(f"error (a run stops here; the whole message is on stderr): {first_line}")
        raise exc

    def _pages(self, chain: Chain, spec: RequestSpec, budget: int) -> t.Iterator[Page]:
        """The chain's first `budget` pages, each printed; no request beyond them.

        Each request is printed (as curl) before it is sent, so a failing one is on
        screen above its error.
        """
        first = Paginator(spec, self.redactor).first()
        if first is None:
            self.out("no request: page_limit is 0.")
            return
        self._announce(chain, first, 1)
        pages = t.cast("t.Generator[Page, None, None]", chain.pages())
        try:
            for count, page in enumerate(pages, start=1):
                last = count >= budget
                self._page(chain, spec, page, capped=last)
                yield page
                if last:
                    return
                if page.next is not None:
                    self._announce(chain, page.next, page.number + 1)
        finally:
            pages.close()

    def _announce(self, chain: Chain, request: PageRequest, number: int) -> None:
        self.out(f"-- request {number}")
        self.out(f"$ {curl_command(chain, request, self.redactor)}")

    def _page(self, chain: Chain, spec: RequestSpec, page: Page, *, capped: bool) -> None:
        out = self.out
        response = page.response
        redacted_url = self.redactor.url(response.url)
        tries = f", {page.tries} tries" if page.tries > 1 else ""
        where = "" if response.url == chain.target(page.request) else f" from {redacted_url}"
        size = response.spool.size if response.spool is not None else len(response.body)
        out(
            f"status: {response.status}{where}, {size} bytes, "
            f"{response.header('Content-Type') or 'no Content-Type'}, "
            f"{response.elapsed:.3f} s{tries}"
        )
        if spec.method != "HEAD":
            how = spec.decoder.describe(response.header("Content-Type"), response=True)
            if not isinstance(page.records, list):
                how += " (streamed: a large body, parsed record by record)"
            out(f"read as: {how}")
        if spec.page is not None:
            info = page.step.info
            if info is None:  # `page` did not run (page_limit reached): what it would see
                info = Paginator(spec, self.redactor).info(page.request, response, page.body)
            out("info seen by `page`:")
            out(f"  params: {_json(self.redactor.value(dict(info['params'])))}")
            out(f"  header: {_json(self._header(info['header']))}")
            body = _excerpt(self.redactor, _json(info["body"]))
            out(f"  body:   {body}")
            if info.get("data") is not None:
                data = _excerpt(self.redactor, _json(self.redactor.value(info["data"])))
                out(f"  data:   {data}")
        out(f"next: {self._next(chain, spec, page, capped=capped)}")
        out(f"records: {len(page.records)}")

    def _header(self, header: dict[str, JSON]) -> dict[str, JSON]:
        shown: dict[str, JSON] = {}
        for name, value in header.items():
            if isinstance(value, dict):  # the parsed Link header
                shown[name] = {k: self.redactor.url(str(v)) for k, v in value.items()}
            else:
                shown[name] = self.redactor.headers({name: str(value)})[name]
        return shown

    def _next(self, chain: Chain, spec: RequestSpec, page: Page, *, capped: bool) -> str:
        """Where the chain goes after a page, in words (from what the page recorded)."""
        if spec.page is None:
            return "none: no `page` option, so one request."
        limit = spec.page_limit if spec.page_limit is not None else 1
        if limit != -1 and page.number >= limit:
            return f"none: page_limit {limit} reached."
        if page.failure is not None:
            first_line = self.redactor.text(str(page.failure)).split("\n", 1)[0]
            return f"none: `page` failed (the whole error follows): {first_line}"
        shown = _excerpt(self.redactor, _json(page.step.returned), 200)
        if page.next is None:
            return f"none: `page` returned {shown}, so this was the last page."
        target = self.redactor.url(chain.target(page.next))
        text = f"`page` returned {shown} -> {spec.method} {target}"
        if page.next.data != page.request.data:
            moved = _excerpt(self.redactor, _json(self.redactor.value(page.next.data)), 300)
            text += f" with body data {moved}"
        return f"{text} (not sent: --pages {self.pages} reached)" if capped else text

    def _records(
        self, stream: StreamRun, page: Page, task: ChainTask, bookmark: JSON
    ) -> list[dict[str, JSON]]:
        """The page's records as a run emits them (bookmark filter, parent columns)."""
        records = list(stream.shape(page, task, bookmark))
        dropped = len(page.records) - len(records)
        if dropped:
            self.out(f"  ({dropped} at or before the bookmark: a run drops them)")
        return records

    # ------------------------------------------------------------------ schema

    def _schema(
        self,
        stream: StreamRun,
        seen: list[dict[str, JSON]],
        sampled: list[dict[str, JSON]],
    ) -> None:
        out = self.out
        spec = stream.spec
        parent_schema = self.schemas.get(spec.parent or "")

        def run_schema(records: list[dict[str, JSON]]) -> dict[str, JSON]:
            inferred = with_overrides(infer_schema(records), spec.schema_overrides)
            return graph.with_parent_columns(inferred, stream.columns, parent_schema)

        inferred = run_schema(seen)
        if spec.schema is not None:
            schema = graph.with_parent_columns(
                with_overrides(prepare_declared_schema(spec.schema), spec.schema_overrides),
                stream.columns,
                parent_schema,
            )
            out("schema, declared in the config (a run uses it as is):")
            self._print_schema(schema)
            differ = _differing(schema, inferred) if seen else []
            if differ:
                out(f"note: the records seen would infer differently for: {', '.join(differ)}")
        else:
            schema = inferred
            out(f"schema a run would infer from the {len(seen)} record(s) seen:")
            self._print_schema(schema)
            size = spec.schema_sample
            differ = _differing(schema, run_schema(sampled))
            if differ:
                out(
                    f"note: a run infers from its sample (`schema_sample`: {size.pages} "
                    f"page(s), up to {size.records} record(s)), which types these fields "
                    f"differently: {', '.join(differ)}. Raise `schema_sample`, or give "
                    "them their types with `schema_overrides`, to make the types stable."
                )
            untyped = [f for f in null_only_fields(seen) if f not in spec.schema_overrides]
            if untyped:
                out(
                    f"note: only null in the records seen, so left untyped (no column "
                    f"yet): {', '.join(untyped)}. A run types such a field when a value "
                    f"arrives (`schema_drift: {spec.schema_drift}`"
                    + (
                        ": a new column"
                        if spec.schema_drift == "evolve"
                        else ": the run fails there"
                    )
                    + "); `schema_overrides` types it now."
                )
        self.schemas[spec.name] = schema
        try:
            graph.check_replication_key(spec, schema)
        except ConfigErrors as exc:
            self.problems += 1
            out(f"problem: {exc}")

    def _print_schema(self, schema: dict[str, JSON]) -> None:
        for line in _field_lines(schema.get("properties", {}), "  "):
            self.out(line)
        self.out(f"  JSON: {_json(schema)}")


def _type_text(node: dict[str, JSON]) -> str:
    kinds = node.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    words = []
    for kind in kinds or ["any"]:
        if kind == "array":
            items = node.get("items") or {}
            inner = _type_text(items).removesuffix(" or null") if items else ""
            kind = f"array of {inner}" if inner else "array"
        elif kind == "string" and node.get("format"):
            kind = f"string ({node['format']})"
        words.append(kind)
    return " or ".join(words)


def _field_lines(properties: dict[str, JSON], indent: str) -> t.Iterator[str]:
    """One line per field, nested fields indented under their object."""
    width = max((len(name) for name in properties), default=0)
    for name, node in properties.items():
        yield f"{indent}{name.ljust(width)}  {_type_text(node)}"
        items = node.get("items") or {}
        if node.get("properties"):
            yield from _field_lines(node["properties"], indent + "  ")
        elif items.get("properties"):
            yield from _field_lines(items["properties"], indent + "  ")


def _differing(a: dict[str, JSON], b: dict[str, JSON]) -> list[str]:
    """Top-level fields whose schema differs between two object schemas."""
    pa, pb = a.get("properties", {}), b.get("properties", {})
    return sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))

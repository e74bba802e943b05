"""``tap-rhttp init URL``: the command, and the report it prints.

The report goes to stdout, for a person: each choice with its reason, the ways to page
that were tried, then the stream spec as JSON (for a config file) and as YAML (for
``meltano.yml``), and where to put the secrets. Logs (a retried request) go to stderr,
redacted. Exit status: 0 when a spec was proposed (paged or not), 1 when the API could
not be read (the first request failed: r.http's error envelope on stderr), 2 for a
usage or config error.

No secret value is ever printed: auth values, sensitive headers and sensitive query
params are referenced as ``{{ secrets['name'] }}``, and the note at the end names the
secrets without their values. Every line is also searched for the secret values themselves
(in every encoding the redactor knows) and masked where one is found.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import typing as t

import click

from tap_rhttp.errors import ConfigErrors, RHTTPError
from tap_rhttp.redact import RedactingFilter, Redactor
from tap_rhttp.wizard import render
from tap_rhttp.wizard.probe import DEFAULT_MAX_REQUESTS, DEFAULT_PAGES, Probe, Start, propose

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON
    from tap_rhttp.wizard.probe import Proposal

_NAME_RE = re.compile(r"[^a-z0-9_]+")


def stream_name(url: str) -> str:
    """A stream name from a URL's last path segment (``/api/v2/tickets.json`` -> ``tickets``)."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    path = path.split("://", 1)[-1]
    segments = [s for s in path.split("/")[1:] if s]
    last = segments[-1].rsplit(".", 1)[0] if segments else ""
    name = _NAME_RE.sub("_", last.lower()).strip("_")
    if not name:
        return "records"
    return f"s_{name}" if name[0].isdigit() else name


def _pair(text: str, sep: str, option: str) -> tuple[str, str]:
    key, found, value = text.partition(sep)
    if not found or not key.strip():
        raise click.BadParameter(f"expected {option}, got {text!r}")
    return key.strip(), value.strip() if sep == ":" else value


def report(proposal: Proposal, start: Start) -> list[str]:
    """The lines the command prints for a proposal (before redaction)."""
    spec = proposal.spec
    name = spec["name"]
    lines = [
        f"tap-rhttp init: {proposal.requests} request(s), {proposal.pages} page(s), "
        f"{proposal.records} record(s) read; nothing was written.",
        "",
        "Choices:",
    ]
    for option, why in proposal.reasons:
        value = spec.get(option)
        if option == "schema":
            props = t.cast("dict[str, JSON]", t.cast("dict[str, JSON]", value)["properties"])
            shown = f"{len(props)} field(s): {', '.join(props) or '-'}"
        elif value is None:
            shown = "(not set)"
        else:
            shown = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"  {option}: {shown}")
        lines.append(f"      {why}")
    if proposal.tried and not (proposal.paged and len(proposal.tried) == 1):
        lines += ["", "Ways to page, tried in order:"]
        for tried in proposal.tried:
            mark = "yes" if tried.verified else "no "
            lines.append(f"  [{mark}] {tried.candidate.kind}: {tried.candidate.page}")
            lines.append(f"        {tried.candidate.reason}; {tried.outcome}")
    if not proposal.paged:
        lines += [
            "",
            "Cannot page this API: no way to page was confirmed by a second page, so the "
            "spec makes one request per run. If it does page, add `page` and `page_limit` "
            "(docs/cookbook.md) and check with tap-rhttp --config ... --explain.",
        ]
    for note in proposal.notes:
        lines.append(f"Note: {note}")
    lines += [
        "",
        '== The stream spec as JSON (an item of "streams" in a config file for --config)',
        render.to_json(spec).rstrip("\n"),
        "",
        "== The same in meltano.yml (merge into the tap-rhttp extractor's `config:`)",
    ]
    meltano = {"plugins": {"extractors": [{"name": "tap-rhttp", "config": {"streams": [spec]}}]}}
    if render.mentions_env_var(spec):
        lines.append(render.MELTANO_ENV_NOTE)
    lines.append(render.to_yaml(meltano).rstrip("\n"))
    if start.secrets:
        placeholders = {key: f"<the value of {start.given[key]}>" for key in start.secrets}
        shown = json.dumps(placeholders)
        lines += [
            "",
            "== Secrets (referenced as {{ secrets['...'] }} above, never written out)",
            f"With Meltano, in .env or the environment: TAP_RHTTP_SECRETS='{shown}'",
            f'In a config file for --config: "secrets": {shown}',
        ]
    lines += ["", f"Next: check the spec with tap-rhttp --config <file> --explain (stream {name})."]
    return lines


@click.command(
    name="init",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.argument("url")
@click.option("--name", help="Stream name (default: from the URL's last path segment).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A query param for every request (repeatable); secret-looking keys such as "
    "api_key become secret references.",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="A request header (repeatable); Authorization, *token*, *api-key* ... become "
    "secret references.",
)
@click.option("--bearer", metavar="TOKEN", help="Bearer token auth (a secret).")
@click.option("--basic", metavar="USER:PASS", help="HTTP Basic auth (the password is a secret).")
@click.option("--digest", metavar="USER:PASS", help="HTTP Digest auth (the password is a secret).")
@click.option("--timeout", type=click.FloatRange(min=0), help="Seconds per attempt (default 30).")
@click.option(
    "--pages",
    type=click.IntRange(2, 50),
    default=DEFAULT_PAGES,
    show_default=True,
    help="Pages to read once the pagination is verified (they feed keys and schema).",
)
@click.option(
    "--max-requests",
    type=click.IntRange(1, 200),
    default=DEFAULT_MAX_REQUESTS,
    show_default=True,
    help="Requests to make in all, trying ways to page included.",
)
def init_command(
    url: str,
    name: str | None,
    params: tuple[str, ...],
    headers: tuple[str, ...],
    bearer: str | None,
    basic: str | None,
    digest: str | None,
    timeout: float | None,
    pages: int,
    max_requests: int,
) -> None:
    """Propose a stream spec for the API at URL, from a few of its pages.

    Finds the records, the pagination (verified by following one more page), a primary
    key, a replication key and the schema; prints the spec as JSON and as meltano.yml
    YAML with a reason per choice. Requests follow the same rules as a run (timeout,
    reattempts with backoff, redirects); no secret is ever printed.
    """
    if sum(x is not None for x in (bearer, basic, digest)) > 1:
        raise click.UsageError("give at most one of --bearer, --basic and --digest")
    start = Start.build(
        url,
        name=name or stream_name(url),
        params=[_pair(p, "=", "KEY=VALUE") for p in params],
        headers=[_pair(h, ":", "'NAME: VALUE'") for h in headers],
        bearer=bearer,
        basic=_pair(basic, ":", "USER:PASS") if basic is not None else None,
        digest=_pair(digest, ":", "USER:PASS") if digest is not None else None,
        timeout=timeout,
    )
    logger = logging.getLogger("tap-rhttp.init")
    try:
        probe = Probe(start, max_requests=max_requests, logger=logger)
    except ConfigErrors as exc:
        for error in exc.errors:
            click.echo(f"tap-rhttp init: {error}", err=True)
        sys.exit(2)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(probe.redactor))
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        proposal = propose(probe, pages=pages)
    except RHTTPError as exc:
        click.echo(f"tap-rhttp init: {probe.redactor.text(str(exc))}", err=True)
        sys.exit(1)
    finally:
        logger.removeHandler(handler)
    values = Redactor(start.secrets.values())  # the values only: the report names options
    for line in report(proposal, start):
        click.echo(values.literals(line))

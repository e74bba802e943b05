"""The option table: one row per spec option, driving checks, JSON Schema and README.

:data:`OPTIONS` is read by ``load`` (which check validates an option, its default),
``jsonschema`` (the tap's ``config_jsonschema``, hence ``--about``) and
``scripts/settings_table.py`` (the README's settings table), so the three cannot drift
apart. Adding an option: see the checklist in ``docs/architecture.md``.
"""

from __future__ import annotations

import dataclasses
import typing as t

from tap_rhttp.config.checks import (
    METHODS,
    RATE_MAX,
    RATE_MIN,
    RESULT_FORMATS,
    SAMPLE_MAX,
    STREAM_NAME_RE,
    check_any,
    check_auth,
    check_bool,
    check_csv,
    check_for_each,
    check_header,
    check_method,
    check_name,
    check_on_error,
    check_page,
    check_parent_keys,
    check_proxy,
    check_rate,
    check_records_path,
    check_response_rules,
    check_result_format,
    check_scalar,
    check_scalar_map,
    check_schema,
    check_schema_drift,
    check_schema_overrides,
    check_schema_sample,
    check_string,
    check_string_list,
    check_trusted_origins,
    check_url,
    check_verify,
    check_xml,
    int_between,
    seconds,
)
from tap_rhttp.config.windows import check_windows
from tap_rhttp.http.auth import AUTH_TYPES, OAUTH2_CLIENT_AUTH, OAUTH2_GRANTS
from tap_rhttp.http.client import MAX_BODY_BYTES
from tap_rhttp.schema.drift import POLICIES as DRIFT_POLICIES
from tap_rhttp.schema.infer import SampleSize

if t.TYPE_CHECKING:
    from tap_rhttp.types import JSON


@dataclasses.dataclass(frozen=True)
class Option:
    """One spec option: how to check it, its default, and how to document it."""

    name: str
    check: t.Callable[[JSON, str, str], JSON]
    default: JSON
    description: str
    jsonschema: dict[str, JSON]
    secret: bool = False
    r_http: bool = True
    example: str = ""


_SCALAR = {"type": ["string", "number", "null"]}

# Upper bounds of the numeric options: each keeps one run within a day's waiting, a
# thread's timer (threading.TIMEOUT_MAX) and the machine's threads. Checked at load.
#: Seconds one attempt may take (a day).
TIMEOUT_MAX = 86400
#: Tries per request.
REATTEMPTS_MAX = 100
#: Redirect hops.
REDIRECTS_MAX = 100
#: Requests per chain (-1 is "no limit").
PAGE_LIMIT_MAX = 1_000_000_000
#: Seconds of the first backoff wait (an hour).
BACKOFF_BASE_MAX = 3600
#: Seconds of any one wait, backoff or `Retry-After` (a day).
WAIT_MAX = 86400
#: Seconds one request may take in all, its tries and waits included (a week).
RETRY_BUDGET_MAX = 7 * 86400
#: Chains fetched at once (worker threads).
MAX_CONCURRENCY_MAX = 64
#: `max_body_bytes` range: a KiB to a TiB.
MAX_BODY_BYTES_RANGE = (1 << 10, 1 << 40)

OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "name",
            check_name,
            None,
            "Stream (and table) name; letters, digits and `_`; unique.",
            {"type": "string", "pattern": STREAM_NAME_RE.pattern},
            r_http=False,
            example='"name": "posts"',
        ),
        Option(
            "url",
            check_url,
            None,
            "URL to request. No scheme means `http://`; only http and https.",
            {"type": "string"},
            example='"url": "https://api.example.com/posts"',
        ),
        Option(
            "method",
            check_method,
            "GET",
            "HTTP method: GET, HEAD, POST, PUT, PATCH or DELETE.",
            {"type": "string", "enum": [*METHODS, *(m.lower() for m in METHODS)]},
            example='"method": "POST"',
        ),
        Option(
            "params",
            check_scalar_map,
            None,
            "Query parameters (numbers, strings or null for `k=`), merged into the URL's "
            "own query; a key already in the URL is replaced, never sent twice. A list "
            "sends its key once per value, in order (`fields=a&fields=b`).",
            {
                "type": "object",
                "additionalProperties": {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]},
            },
            example='"params": {"q": "banana", "limit": 2, "fields": ["id", "name"]}',
        ),
        Option(
            "header",
            check_header,
            None,
            'Extra headers: an object (null removes a default header) or an array of "Name: '
            'value" lines. Defaults: `User-Agent: tap-rhttp/<version>`, '
            "`Accept-Encoding: gzip, deflate`.",
            {
                "anyOf": [
                    {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                    {"type": "array", "items": {"type": "string"}},
                ]
            },
            example='"header": {"Accept": "application/json"}',
        ),
        Option(
            "data",
            check_any,
            None,
            "Request body (not on GET/HEAD). POST: an object is form-encoded, a string is "
            "sent as is. PUT/PATCH/DELETE: a string is sent as is, anything else as JSON.",
            {},
            example='"data": {"player": "Bob", "game": "tic tac toe"}',
        ),
        Option(
            "json",
            check_any,
            None,
            "Request body sent as compact JSON with `Content-Type: application/json`, on "
            "POST too (not on GET/HEAD): any JSON value; `{{ }}` placeholders that fill a "
            "whole string keep their JSON type. Not with `data`.",
            {},
            r_http=False,
            example='"json": {"query": "{ items { id } }", "variables": {"first": 100}}',
        ),
        Option(
            "auth",
            check_auth,
            None,
            "Credentials: `basic`/`digest` (`user`, `pass`), `bearer` (`token`), "
            "`api_key` (`name`, `value`, `in`: header|query) or `oauth2` (`grant`, "
            "`token_url`, `client_id`, `client_secret`, `refresh_token`, `username`, "
            "`password`, `scopes`, `audience`, `extra`, `client_auth`: basic|body, "
            "`token_cache`). Secret.",
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": list(AUTH_TYPES)},
                    "user": {"type": "string"},
                    "pass": {"type": "string", "secret": True, "writeOnly": True},
                    "token": {"type": "string", "secret": True, "writeOnly": True},
                    "name": {"type": "string"},
                    "value": {"type": "string", "secret": True, "writeOnly": True},
                    "in": {"type": "string", "enum": ["header", "query"]},
                    "grant": {"type": "string", "enum": list(OAUTH2_GRANTS)},
                    "token_url": {"type": "string"},
                    "client_id": {"type": "string"},
                    "client_secret": {"type": "string", "secret": True, "writeOnly": True},
                    "refresh_token": {"type": "string", "secret": True, "writeOnly": True},
                    "username": {"type": "string"},
                    "password": {"type": "string", "secret": True, "writeOnly": True},
                    "scopes": {"type": ["array", "string"], "items": {"type": "string"}},
                    "audience": {"type": "string"},
                    "extra": {"type": "object"},
                    "client_auth": {"type": "string", "enum": list(OAUTH2_CLIENT_AUTH)},
                    "token_cache": {"type": "string"},
                },
            },
            secret=True,
            example='"auth": {"type": "digest", "user": "fred", "pass": "mxyzptlk"}',
        ),
        Option(
            "timeout",
            seconds(maximum=TIMEOUT_MAX),
            30.0,
            "Seconds one attempt may take, from connect to the last body byte. "
            f"0 disables the limit; at most {TIMEOUT_MAX}.",
            {"type": "number", "minimum": 0, "maximum": TIMEOUT_MAX},
            example='"timeout": 10',
        ),
        Option(
            "reattempts",
            int_between(1, REATTEMPTS_MAX),
            5,
            "Total tries per request (alias `attempts`), with backoff between them; "
            f"1 to {REATTEMPTS_MAX}.",
            {"type": "integer", "minimum": 1, "maximum": REATTEMPTS_MAX},
            example='"reattempts": 3',
        ),
        Option(
            "redirects",
            int_between(0, REDIRECTS_MAX),
            1,
            f"Redirect hops to follow; 0 makes any 3xx an error; at most {REDIRECTS_MAX}.",
            {"type": "integer", "minimum": 0, "maximum": REDIRECTS_MAX},
            example='"redirects": 2',
        ),
        Option(
            "verify",
            check_verify,
            True,
            "Verify the server's TLS certificate: true, false, or a path to a CA bundle.",
            {"type": ["boolean", "string"]},
            example='"verify": false',
        ),
        Option(
            "client_cert",
            check_string,
            None,
            "Client certificate for mutual TLS: a PEM file path (it may also hold the key).",
            {"type": "string"},
            r_http=False,
            example='"client_cert": "/etc/tap-rhttp/client.pem"',
        ),
        Option(
            "client_key",
            check_string,
            None,
            "The client certificate's private key, a PEM file path (needs `client_cert`).",
            {"type": "string"},
            r_http=False,
            example='"client_key": "/etc/tap-rhttp/client.key"',
        ),
        Option(
            "client_key_password",
            check_string,
            None,
            "Password of an encrypted client key. Secret.",
            {"type": "string", "secret": True, "writeOnly": True},
            secret=True,
            r_http=False,
            example='"client_key_password": "{{ secrets[\'client_key\'] }}"',
        ),
        Option(
            "proxy",
            check_proxy,
            None,
            "Proxy for the stream's requests: an http:// or https:// URL, user info allowed "
            "(a secret). Unset: `HTTP(S)_PROXY`/`NO_PROXY` from the environment apply.",
            {"type": "string", "secret": True, "writeOnly": True},
            secret=True,
            r_http=False,
            example='"proxy": "http://tap:{{ secrets[\'proxy\'] }}@proxy.internal:3128"',
        ),
        Option(
            "result_format",
            check_result_format,
            "auto",
            "How to read the body: auto, json, jsonp, text, binary (base64), csv, jsonl "
            "(NDJSON) or xml.",
            {"type": "string", "enum": list(RESULT_FORMATS)},
            example='"result_format": "jsonp"',
        ),
        Option(
            "csv",
            check_csv,
            None,
            "CSV bodies: `delimiter` (default `,`, a tab for text/tab-separated-values), "
            '`quotechar` (`"`, null: none), `escapechar`, `doublequote`, '
            "`skipinitialspace`, `header` (default true: the first row names the fields), "
            "`fieldnames`. Values are strings.",
            {
                "type": "object",
                "properties": {
                    "delimiter": {"type": "string", "minLength": 1, "maxLength": 1},
                    "quotechar": {"type": ["string", "null"], "maxLength": 1},
                    "escapechar": {"type": ["string", "null"], "maxLength": 1},
                    "doublequote": {"type": "boolean"},
                    "skipinitialspace": {"type": "boolean"},
                    "header": {"type": "boolean"},
                    "fieldnames": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            },
            r_http=False,
            example='"csv": {"delimiter": ";", "header": true}',
        ),
        Option(
            "xml",
            check_xml,
            None,
            "XML bodies: `records`, the element path of the records from the root "
            "(`channel/item`); `arrays`, element names that are always arrays.",
            {
                "type": "object",
                "properties": {
                    "records": {"type": "string"},
                    "arrays": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            },
            r_http=False,
            example='"xml": {"records": "channel/item", "arrays": ["category"]}',
        ),
        Option(
            "page",
            check_page,
            None,
            "Depagination: 'link-next' or a page expression of `info` "
            "(`params`, `header`, `body`, and `data`: the request body), returning the next "
            "URL, or `url`/`params`/`data` to merge. Needs `page_limit`.",
            {"type": "string"},
            example="\"page\": \"info['body']['meta']['next'].default(None)\"",
        ),
        Option(
            "page_limit",
            int_between(-1, PAGE_LIMIT_MAX),
            None,
            "Requests to make with `page`: -1 no limit, 0 none, n at most n "
            f"(up to {PAGE_LIMIT_MAX}). Needs `page`.",
            {"type": "integer", "minimum": -1, "maximum": PAGE_LIMIT_MAX},
            example='"page_limit": 5',
        ),
        Option(
            "records_path",
            check_records_path,
            None,
            "JSONPath to the records in each body (e.g. `$.items[*]`); default: the body.",
            {"type": "string"},
            r_http=False,
            example='"records_path": "$.items[*]"',
        ),
        Option(
            "primary_keys",
            check_string_list,
            (),
            "Fields that identify a record (targets upsert on them).",
            {"type": "array", "items": {"type": "string"}},
            r_http=False,
            example='"primary_keys": ["id"]',
        ),
        Option(
            "schema",
            check_schema,
            None,
            "JSON Schema of the records; default: inferred from discovery's sample "
            "(`schema_sample`).",
            {"type": "object"},
            r_http=False,
            example='"schema": {"properties": {"id": {"type": "integer"}}}',
        ),
        Option(
            "schema_sample",
            check_schema_sample,
            SampleSize(),
            "What discovery infers the schema from: up to `pages` pages (following "
            "`page`) and `records` records, whichever ends first; the sync reuses the "
            f"pages, never fetching them twice. At most {SAMPLE_MAX['pages']} pages and "
            f"{SAMPLE_MAX['records']} records.",
            {
                "type": "object",
                "properties": {
                    "pages": {"type": "integer", "minimum": 1, "maximum": SAMPLE_MAX["pages"]},
                    "records": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": SAMPLE_MAX["records"],
                    },
                },
                "additionalProperties": False,
            },
            r_http=False,
            example='"schema_sample": {"pages": 10, "records": 5000}',
        ),
        Option(
            "schema_overrides",
            check_schema_overrides,
            None,
            "JSON Schemas of some fields (field -> schema), replacing what inference gives "
            "them; the other fields are still inferred.",
            {"type": "object", "additionalProperties": {"type": "object"}},
            r_http=False,
            example='"schema_overrides": {"parent_id": {"type": ["integer", "null"]}}',
        ),
        Option(
            "schema_drift",
            check_schema_drift,
            "evolve",
            "A record that does not fit the schema: `evolve` adds columns, makes fields "
            "nullable and keeps a value of another type in a `<field>__v_<type>` column; "
            "`fail` stops before that page is emitted, naming the field.",
            {"type": "string", "enum": list(DRIFT_POLICIES)},
            r_http=False,
            example='"schema_drift": "fail"',
        ),
        Option(
            "secret_headers",
            check_string_list,
            (),
            "Header names whose values are secrets (Authorization, Cookie, *token*, "
            "*api-key* ... are always treated as secret).",
            {"type": "array", "items": {"type": "string"}},
            r_http=False,
            example='"secret_headers": ["X-Customer"]',
        ),
        Option(
            "trusted_origins",
            check_trusted_origins,
            (),
            "Other origins (`https://host[:port]`, no path) that also receive the stream's "
            "credentials. Every other origin a redirect or next-page URL leads to gets none: "
            "no auth, no secret or sensitive header, no cookie, no secret query value.",
            {"type": "array", "items": {"type": "string"}},
            r_http=False,
            example='"trusted_origins": ["https://api2.example.com"]',
        ),
        Option(
            "backoff_base",
            seconds(maximum=BACKOFF_BASE_MAX, allow_zero=False),
            1.0,
            "Upper bound in seconds of the first jittered wait between tries; doubles per try. "
            f"At most {BACKOFF_BASE_MAX}.",
            {"type": "number", "exclusiveMinimum": 0, "maximum": BACKOFF_BASE_MAX},
            r_http=False,
            example='"backoff_base": 0.5',
        ),
        Option(
            "backoff_max",
            seconds(maximum=WAIT_MAX, allow_zero=False),
            60.0,
            f"Cap in seconds on any one backoff wait; at most {WAIT_MAX}.",
            {"type": "number", "exclusiveMinimum": 0, "maximum": WAIT_MAX},
            r_http=False,
            example='"backoff_max": 30',
        ),
        Option(
            "retry_after_max",
            seconds(maximum=WAIT_MAX),
            300.0,
            "Longest `Retry-After` (seconds) honoured; a longer one fails fast. "
            f"At most {WAIT_MAX}.",
            {"type": "number", "minimum": 0, "maximum": WAIT_MAX},
            r_http=False,
            example='"retry_after_max": 120',
        ),
        Option(
            "max_retry_seconds",
            seconds(maximum=RETRY_BUDGET_MAX, allow_zero=False),
            None,
            "Longest time in seconds one request may take, all its tries and waits "
            "included, on top of `reattempts`: a retry that would pass it is not made. "
            f"At most {RETRY_BUDGET_MAX} (a week).",
            {"type": "number", "exclusiveMinimum": 0, "maximum": RETRY_BUDGET_MAX},
            r_http=False,
            example='"max_retry_seconds": 600',
        ),
        Option(
            "response_rules",
            check_response_rules,
            (),
            "What a response means beyond its status: a list of rules, each matching by "
            '`status` (a code, a class such as "4xx", or a list) and/or `when` (an '
            "expression of `response`: `status`, `header`, `body`), with an `action`: "
            "`retry`, `skip` (an empty page ends the chain), `fail` (with `message`) or "
            "`ok`. The first match wins; no match: the usual handling.",
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "status": {
                            "type": ["integer", "string", "array"],
                            "items": {"type": ["integer", "string"]},
                        },
                        "when": {"type": "string"},
                        "action": {"type": "string", "enum": ["retry", "skip", "fail", "ok"]},
                        "message": {"type": "string"},
                    },
                },
            },
            r_http=False,
            example='"response_rules": [{"status": 404, "action": "skip"}]',
        ),
        Option(
            "for_each",
            check_for_each,
            None,
            "Fan-out: run the spec once per value of this list, bound to `item` in templates "
            "(an empty list makes no request: an empty stream).",
            {"type": "array"},
            r_http=False,
            example='"for_each": [1, 2, 3]',
        ),
        Option(
            "parent",
            check_name,
            None,
            "Fan-out: the name of another stream; the spec runs once per parent record, "
            "bound to `row` in templates.",
            {"type": "string"},
            r_http=False,
            example='"parent": "users"',
        ),
        Option(
            "parent_keys",
            check_parent_keys,
            None,
            "Parent fields copied into each child record: a list (same names) or an object "
            "(parent field -> column). Default: the parent's primary keys as `<parent>_<key>`.",
            {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}]},
            r_http=False,
            example='"parent_keys": {"id": "user_id"}',
        ),
        Option(
            "windows",
            check_windows,
            None,
            "Fan-out over time: run the spec once per window of `step` from `start` to `end` "
            "(default: the run's now), bound to `window` (`start`, `end`: ISO 8601 UTC; "
            "`start_epoch`, `end_epoch`: seconds) in templates; an incremental run starts at "
            "its bookmark minus `lookback`. Instants: ISO 8601 date or date-time with offset, "
            "or a duration before now; durations: seconds or ISO 8601 `P1D`, `PT6H`.",
            {
                "type": "object",
                "properties": {
                    "start": {"type": ["string", "integer"]},
                    "end": {"type": ["string", "integer", "null"]},
                    "step": {"type": ["string", "integer"]},
                    "lookback": {"type": ["string", "integer"]},
                },
                # `start` and `step` are required: load_specs says so, naming the path.
                # A JSON Schema `required` here would make `--about` list
                # `defaults.windows.start` as a required setting of every config.
            },
            r_http=False,
            example='"windows": {"start": "2024-01-01", "step": "P1D", "lookback": "PT6H"}',
        ),
        Option(
            "on_error",
            check_on_error,
            "fail",
            "`fail` stops the run on a failed request chain; `skip` logs it, counts it and "
            "goes on with the next item/row (r.http's `.default()`).",
            {"type": "string", "enum": ["fail", "skip"]},
            r_http=False,
            example='"on_error": "skip"',
        ),
        Option(
            "replication_key",
            check_string,
            None,
            "Incremental: the field whose latest value is the bookmark (must be in the schema).",
            {"type": "string"},
            r_http=False,
            example='"replication_key": "updated_at"',
        ),
        Option(
            "start_value",
            check_scalar,
            None,
            "Incremental: the bookmark to use when STATE has none.",
            {"type": ["string", "number"]},
            r_http=False,
            example='"start_value": "2024-01-01T00:00:00Z"',
        ),
        Option(
            "filter_bookmark",
            check_bool,
            True,
            "Incremental: drop records whose replication key is at or before the bookmark.",
            {"type": "boolean"},
            r_http=False,
            example='"filter_bookmark": false',
        ),
        Option(
            "is_sorted",
            check_bool,
            False,
            "Incremental: the API returns records in replication-key order, so the bookmark "
            "advances as records arrive (and a sort error fails the run).",
            {"type": "boolean"},
            r_http=False,
            example='"is_sorted": true',
        ),
        Option(
            "max_concurrency",
            int_between(1, MAX_CONCURRENCY_MAX),
            1,
            "Fan-out: request chains (for_each values, or a child's parent rows) fetched at "
            f"once; 1 to {MAX_CONCURRENCY_MAX}.",
            {"type": "integer", "minimum": 1, "maximum": MAX_CONCURRENCY_MAX},
            r_http=False,
            example='"max_concurrency": 4',
        ),
        Option(
            "template_env",
            check_bool,
            False,
            "Allow `env` (the process environment) in `{{ }}` templates.",
            {"type": "boolean"},
            r_http=False,
            example='"template_env": true',
        ),
        Option(
            "rate_limit",
            check_rate,
            None,
            "Client-side limit: at most this many requests per second for the stream "
            f"({RATE_MIN} to {RATE_MAX:g}).",
            {"type": "number", "minimum": RATE_MIN, "maximum": RATE_MAX},
            r_http=False,
            example='"rate_limit": 5',
        ),
        Option(
            "max_body_bytes",
            int_between(*MAX_BODY_BYTES_RANGE),
            MAX_BODY_BYTES,
            "Most bytes one response body may have once decompressed (256 MiB); a larger "
            "body fails its page, not retried. Counted as the bytes arrive, spooled bodies "
            f"included. From {MAX_BODY_BYTES_RANGE[0]} to {MAX_BODY_BYTES_RANGE[1]}.",
            {
                "type": "integer",
                "minimum": MAX_BODY_BYTES_RANGE[0],
                "maximum": MAX_BODY_BYTES_RANGE[1],
            },
            r_http=False,
            example='"max_body_bytes": 1073741824',
        ),
    )
}

ALIASES = {"attempts": "reattempts"}
#: Options every stream spec must give (`--about` and the settings table say so).
REQUIRED = ("name", "url")
#: Options that may not appear under `defaults`.
NOT_IN_DEFAULTS = frozenset({"name"})
#: Object options merged key by key (stream over defaults); others are replaced whole.
MERGED = frozenset({"params"})

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
    RESULT_FORMATS,
    STREAM_NAME_RE,
    check_any,
    check_auth,
    check_bool,
    check_for_each,
    check_header,
    check_method,
    check_name,
    check_on_error,
    check_page,
    check_parent_keys,
    check_rate,
    check_records_path,
    check_result_format,
    check_scalar,
    check_scalar_map,
    check_schema,
    check_schema_drift,
    check_schema_overrides,
    check_schema_sample,
    check_string,
    check_string_list,
    check_url,
    check_verify,
    int_at_least,
    seconds,
)
from tap_rhttp.http.auth import AUTH_TYPES
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

OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "name",
            check_name,
            None,
            "Stream (and table) name; letters, digits and `_`. Required, unique.",
            {"type": "string", "pattern": STREAM_NAME_RE.pattern},
            r_http=False,
            example='"name": "posts"',
        ),
        Option(
            "url",
            check_url,
            None,
            "URL to request. No scheme means `http://`; only http and https. Required.",
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
            "own query; a key already in the URL is replaced, never sent twice.",
            {"type": "object", "additionalProperties": _SCALAR},
            example='"params": {"q": "banana", "limit": 2}',
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
            "auth",
            check_auth,
            None,
            "Credentials: `basic`/`digest` (`user`, `pass`), `bearer` (`token`) or "
            "`api_key` (`name`, `value`, `in`: header|query). Secret.",
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
                },
            },
            secret=True,
            example='"auth": {"type": "digest", "user": "fred", "pass": "mxyzptlk"}',
        ),
        Option(
            "timeout",
            seconds(),
            30.0,
            "Seconds one attempt may take, from connect to the last body byte. "
            "0 disables the limit.",
            {"type": "number", "minimum": 0},
            example='"timeout": 10',
        ),
        Option(
            "reattempts",
            int_at_least(1),
            5,
            "Total tries per request (alias `attempts`), with backoff between them.",
            {"type": "integer", "minimum": 1},
            example='"reattempts": 3',
        ),
        Option(
            "redirects",
            int_at_least(0),
            1,
            "Redirect hops to follow; 0 makes any 3xx an error.",
            {"type": "integer", "minimum": 0},
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
            "result_format",
            check_result_format,
            "auto",
            "How to read the body: auto, json, jsonp, text or binary (base64).",
            {"type": "string", "enum": list(RESULT_FORMATS)},
            example='"result_format": "jsonp"',
        ),
        Option(
            "page",
            check_page,
            None,
            "Depagination: 'link-next' or a page expression of `info` "
            "(`params`, `header`, `body`). Needs `page_limit`.",
            {"type": "string"},
            example="\"page\": \"info['body']['meta']['next'].default(None)\"",
        ),
        Option(
            "page_limit",
            int_at_least(-1),
            None,
            "Requests to make with `page`: -1 no limit, 0 none, n at most n. Needs `page`.",
            {"type": "integer", "minimum": -1},
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
            "pages, never fetching them twice.",
            {
                "type": "object",
                "properties": {
                    "pages": {"type": "integer", "minimum": 1},
                    "records": {"type": "integer", "minimum": 1},
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
            "backoff_base",
            seconds(allow_zero=False),
            1.0,
            "Upper bound in seconds of the first jittered wait between tries; doubles per try.",
            {"type": "number", "exclusiveMinimum": 0},
            r_http=False,
            example='"backoff_base": 0.5',
        ),
        Option(
            "backoff_max",
            seconds(allow_zero=False),
            60.0,
            "Cap in seconds on any one backoff wait.",
            {"type": "number", "exclusiveMinimum": 0},
            r_http=False,
            example='"backoff_max": 30',
        ),
        Option(
            "retry_after_max",
            seconds(),
            300.0,
            "Longest `Retry-After` (seconds) honoured; a longer one fails fast.",
            {"type": "number", "minimum": 0},
            r_http=False,
            example='"retry_after_max": 120',
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
            int_at_least(1),
            1,
            "Fan-out: request chains (for_each values) fetched at once.",
            {"type": "integer", "minimum": 1},
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
            "Client-side limit: at most this many requests per second for the stream.",
            {"type": "number", "exclusiveMinimum": 0},
            r_http=False,
            example='"rate_limit": 5',
        ),
    )
}

ALIASES = {"attempts": "reattempts"}
#: Options that may not appear under `defaults`.
NOT_IN_DEFAULTS = frozenset({"name"})
#: Object options merged key by key (stream over defaults); others are replaced whole.
MERGED = frozenset({"params"})

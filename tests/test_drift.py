"""Schema drift: every page is checked against the schema the stream emitted, and either
fitted to it in ways the target can follow (`evolve`) or stopped before it is emitted
(`fail`). Soundness is checked against jsonschema itself: a page the check passes
validates, record by record, against the schema the tap emitted for it."""

from __future__ import annotations

import copy
import datetime
import json
import logging
import random
import typing as t

import jsonschema
import pytest
from conftest import run_sync
from server import Reply, json_reply
from test_writer import Capture

from tap_rhttp.errors import SchemaDriftError
from tap_rhttp.formats.readers import parse_json
from tap_rhttp.http import body as http_body
from tap_rhttp.schema.drift import (
    SchemaCheck,
    column_schema,
    column_type,
    evolve,
    keep_columns,
    mismatches,
)
from tap_rhttp.schema.infer import MAX_DEPTH, infer_schema, is_date_time
from tap_rhttp.tap import TapRHTTP
from tap_rhttp.writer import RecordFastPath

if t.TYPE_CHECKING:
    from conftest import SyncResult

# ------------------------------------------------------------------ inference


def test_a_column_takes_the_kind_most_values_have() -> None:
    rows: list[dict[str, t.Any]] = [{"id": 1}, {"id": "a"}, {"id": "b"}, {"id": None}]
    assert infer_schema(rows)["properties"]["id"] == {"type": ["string", "null"]}
    tie: list[dict[str, t.Any]] = [
        {"v": 1},
        {"v": "a"},
    ]  # a tie goes by a fixed order: the same data, one schema
    assert infer_schema(tie) == infer_schema(list(reversed(tie)))
    assert infer_schema(tie)["properties"]["v"] == {"type": ["string", "null"]}
    numbers: list[dict[str, t.Any]] = [{"n": 1}, {"n": 2}, {"n": 2.5}, {"n": "x"}]
    assert infer_schema(numbers)["properties"]["n"] == {"type": ["number", "null"]}


def test_nested_fields_keep_every_kind_and_mixed_arrays_are_untyped() -> None:
    rows: list[dict[str, t.Any]] = [
        {"o": {"tier": 1, "tags": [1, "a"]}, "mixed": [1, "a", None], "ints": [1, 2.5]},
        {"o": {"tier": "gold", "tags": []}, "mixed": [], "ints": []},
    ]
    props = infer_schema(rows)["properties"]
    assert props["o"]["properties"]["tier"] == {"type": ["string", "integer", "null"]}
    assert props["o"]["properties"]["tags"] == {"type": ["array", "null"], "items": {}}
    assert props["mixed"] == {"type": ["array", "null"], "items": {}}
    assert column_type(props["mixed"]) == "jsonb[]"  # every item kept exactly
    assert props["ints"] == {"type": ["array", "null"], "items": {"type": ["number", "null"]}}


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2024-01-02T03:04:05Z", True),
        ("2024-01-02 03:04:05+02:00", True),
        ("2024-01-02T03:04:05.123456789+0530", True),
        ("2024-13-01T00:00:00Z", False),  # month 13: target-postgres could not parse it
        ("2024-02-30T00:00:00Z", False),
        ("2024-01-02T25:00:00Z", False),
        ("2024-01-02t03:04:05z", False),  # RFC 3339, but Python's parser refuses it
        ("2024-01-02", False),
        ("2024-01-02T03:04:05+24:00", False),
    ],
)
def test_date_times_are_what_a_target_parses(text: str, ok: bool) -> None:
    assert is_date_time(text) is ok
    if ok:
        datetime.datetime.fromisoformat(text)  # what target-postgres does with it


def test_inference_is_bounded_in_depth() -> None:
    deep: t.Any = 1
    for _ in range(200):
        deep = {"d": deep}
    schema = infer_schema([{"x": deep}])
    depth, node = 0, schema["properties"]["x"]
    while node.get("properties"):
        node = node["properties"]["d"]
        depth += 1
    assert depth <= MAX_DEPTH


# ------------------------------------------------------------------ the check is sound


_STRICT = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool)
    ),
)


def _validate(schema: dict[str, t.Any], record: dict[str, t.Any]) -> bool:
    """What target-postgres checks: jsonschema (a float, even 4.0, is not an integer: the
    target fails on it), its top-level timestamp parsing and bigint columns, and the
    fields its table would have (a non-null top-level field the schema lacks is lost)."""
    try:
        _STRICT(schema).validate(record)
    except jsonschema.ValidationError:
        return False
    for key, value in record.items():
        node = schema["properties"].get(key)
        if node is None:
            if value is not None and schema.get("additionalProperties"):
                return False
            continue
        if node.get("format") == "date-time" and isinstance(value, str):
            try:
                datetime.datetime.fromisoformat(value)
            except ValueError:
                return False
        integral = isinstance(value, int) and not isinstance(value, bool)
        if integral and "integer" in node["type"] and not -(2**63) <= value < 2**63:
            return False
    return True


def _value(rng: random.Random, depth: int) -> t.Any:
    scalars = [None, True, False, 0, 7, -3, 2**64, 2.5, 4.0, "x", "", "2024-01-02T03:04:05Z"]
    scalars += ["2024-13-01T00:00:00Z"]
    roll = rng.random()
    if depth <= 0 or roll < 0.55:
        return rng.choice(scalars)
    if roll < 0.75:
        return [_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {k: _value(rng, depth - 1) for k in rng.sample("pqr", rng.randint(0, 3))}


def _records(rng: random.Random, n: int) -> list[dict[str, t.Any]]:
    keys = "abcde"
    return [{k: _value(rng, 2) for k in rng.sample(keys, rng.randint(0, 5))} for _ in range(n)]


def test_the_check_passes_exactly_the_pages_that_validate_record_by_record() -> None:
    rng = random.Random(13)
    passed = failed = 0
    for _ in range(300):
        schema = infer_schema(_records(rng, rng.randint(0, 6)))
        check = SchemaCheck(schema)
        for _ in range(10):
            page = _records(rng, rng.randint(1, 4))
            fits = check.fits(page)
            assert fits == all(_validate(schema, r) for r in page), (schema, page)
            passed += fits
            failed += not fits
    assert passed > 150  # both outcomes, many times
    assert failed > 1000


def test_evolve_always_makes_the_page_fit_and_keeps_every_value() -> None:
    rng = random.Random(29)
    for _ in range(300):
        schema = infer_schema(_records(rng, rng.randint(0, 6)))
        page = _records(rng, rng.randint(1, 5))
        before = copy.deepcopy(page)
        evolution = evolve(schema, page)
        assert SchemaCheck(evolution.schema).fits(page)
        assert all(_validate(evolution.schema, r) for r in page), (evolution.schema, page)
        for old, new in zip(before, page, strict=True):
            kept = {k: v for k, v in new.items() if "__v_" not in k}
            moved = {k.split("__v_")[0]: v for k, v in new.items() if "__v_" in k}
            assert {**kept, **moved} == old  # every value, under its own or its variant name
            assert not set(kept) & set(moved)
        # a column never changes its type: only new columns and nullability
        for key, node in schema["properties"].items():
            assert column_type(evolution.schema["properties"][key]) == column_type(node)


# ------------------------------------------------------------------ evolve, case by case


def _schema(**props: t.Any) -> dict[str, t.Any]:
    return {"type": "object", "properties": props, "additionalProperties": True}


INT = {"type": ["integer", "null"]}


def test_integer_column_given_a_float_keeps_it_in_a_variant() -> None:
    page: list[dict[str, t.Any]] = [{"id": 1, "amount": 10}, {"id": 2, "amount": 2.5}]
    evolution = evolve(_schema(id=INT, amount=INT), page, keys={"id"})
    assert page == [{"id": 1, "amount": 10}, {"id": 2, "amount__v_number": 2.5}]
    assert evolution.schema["properties"]["amount"] == INT
    assert evolution.schema["properties"]["amount__v_number"] == {"type": ["number", "null"]}
    assert [(c.field, c.kind, c.column) for c in evolution.changes] == [
        ("amount", "variant", "amount__v_number")
    ]


def test_each_kind_of_drift() -> None:
    schema = {
        "type": "object",
        "additionalProperties": True,
        "required": ["id"],
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": ["string", "null"], "format": "date-time"},
            "name": {"type": ["string", "null"]},
            "customer": {
                "type": ["object", "null"],
                "properties": {"tier": INT},
                "additionalProperties": True,
            },
            "tags": {"type": ["array", "null"], "items": {"type": ["string", "null"]}},
            "lines": {
                "type": ["array", "null"],
                "items": {
                    "type": ["object", "null"],
                    "properties": {},
                    "additionalProperties": True,
                },
            },
        },
    }
    page: list[dict[str, t.Any]] = [
        {"id": None, "at": "soon", "name": {"first": "Ada"}, "new": 1, "late": None},
        {"customer": {"tier": "gold", "extra": 1}, "tags": ["a", 5], "lines": [{"a": 1}, 3]},
    ]
    evolution = evolve(schema, page)
    props = evolution.schema["properties"]
    assert props["id"] == {"type": ["integer", "null"]}  # nullable: same column
    assert evolution.schema["required"] == []  # the second record has no id
    assert props["new"] == INT  # a new column
    assert "late" not in props  # only null: still open
    assert props["customer"]["properties"]["tier"] == {"type": ["string", "integer", "null"]}
    assert column_type(props["lines"]) == "jsonb[]"
    assert page == [
        {"id": None, "at__v_string": "soon", "name__v_object": {"first": "Ada"}, "new": 1,
         "late": None},
        {"customer": {"tier": "gold", "extra": 1}, "tags__v_array": ["a", 5],
         "lines": [{"a": 1}, 3]},
    ]  # fmt: skip
    assert props["tags__v_array"] == {"type": ["array", "null"], "items": {}}
    assert column_type(props["tags__v_array"]) == "jsonb[]"
    assert column_type(props["name__v_object"]) == "jsonb"
    kinds = {(c.field, c.kind) for c in evolution.changes}
    assert kinds == {
        ("id", "nullable"),
        ("id", "optional"),
        ("new", "new"),
        ("at", "variant"),
        ("name", "variant"),
        ("customer", "widened"),
        ("tags", "variant"),
        ("lines", "widened"),
    }


def test_an_object_column_keeps_a_scalar_as_json() -> None:
    """jsonb holds any JSON value: widening keeps the column (no variant needed)."""
    schema = _schema(
        meta={"type": ["object", "null"], "properties": {}, "additionalProperties": True}
    )
    page: list[dict[str, t.Any]] = [{"meta": "plain"}, {"meta": 3}]
    evolution = evolve(schema, page)
    assert page == [{"meta": "plain"}, {"meta": 3}]
    assert column_type(evolution.schema["properties"]["meta"]) == "jsonb"


def test_a_huge_integer_goes_to_the_number_variant() -> None:
    page = [{"n": 2**70}]
    evolve(_schema(n=INT), page)
    assert page == [{"n__v_number": 2**70}]


def test_a_declared_boolean_is_conformed_as_singer_sdk_does_not_drift() -> None:
    declared = _schema(flag={"type": "boolean"})
    assert SchemaCheck(declared, coerce=True).fits([{"flag": 1}, {"flag": "no"}])
    assert not SchemaCheck(declared).fits([{"flag": 1}])  # the tap's own schema: drift


def test_mismatches_name_the_field_the_schema_type_and_the_value_type() -> None:
    schema = _schema(amount=INT, customer={"type": ["object", "null"], "properties": {"tier": INT}})
    found = mismatches(schema, [{"amount": 2.5, "customer": {"tier": "x"}, "new": [1]}])
    assert [(m.field, m.expected, m.found) for m in found] == [
        ("amount", "integer or null", "number"),
        ("customer", "object or null", "string at customer.tier"),
        ("new", "absent", "array"),
    ]


# ------------------------------------------------------------------ whole syncs


def _paged(server: t.Any, path: str, pages: list[list[dict[str, t.Any]]]) -> None:
    @server.route(path)
    def handler(request: t.Any) -> Reply:
        page = int(request.args.get("page", "1"))
        headers = [("Link", f'<{path}?page={page + 1}>; rel="next"')] if page < len(pages) else []
        return json_reply(pages[page - 1], headers=headers)


def _config(server: t.Any, path: str, **spec: t.Any) -> dict[str, t.Any]:
    stream = {"name": "s", "url": server.url + path, "page": "link-next", "page_limit": -1}
    return {"streams": [{**stream, "reattempts": 1, **spec}]}


def _lines(result: SyncResult) -> list[tuple[str, t.Any]]:
    """Each message as (type, record or the schema's property names)."""
    out: list[tuple[str, t.Any]] = []
    for m in result.messages:
        if m["type"] == "SCHEMA":
            out.append(("SCHEMA", sorted(m["schema"]["properties"])))
        elif m["type"] == "RECORD":
            out.append(("RECORD", m["record"]))
    return out


DRIFTING: list[list[dict[str, t.Any]]] = [
    [{"id": 1, "amount": 10, "note": None, "customer": {"tier": 1}}],
    [{"id": 2, "amount": 11, "note": None, "customer": {"tier": 2}}],
    [{"id": 3, "amount": 12, "note": None, "customer": {"tier": 3}}],
    [{"id": 4, "amount": 2.5, "note": "late", "customer": {"tier": 1, "since": 2020}}],
    [{"id": 5, "amount": 3.5, "note": "again", "extra": True, "customer": {"tier": "gold"}}],
]


def test_evolve_lands_every_value_and_says_so_once_per_field(
    server: t.Any, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    _paged(server, "/drift", DRIFTING)
    result = sync(_config(server, "/drift", primary_keys=["id"]))
    assert _lines(result) == [
        ("SCHEMA", ["amount", "customer", "id"]),
        ("RECORD", DRIFTING[0][0]),
        ("RECORD", DRIFTING[1][0]),
        ("RECORD", DRIFTING[2][0]),
        ("SCHEMA", ["amount", "amount__v_number", "customer", "id", "note"]),
        ("RECORD", {"id": 4, "amount__v_number": 2.5, "note": "late",
                    "customer": {"tier": 1, "since": 2020}}),
        ("SCHEMA", ["amount", "amount__v_number", "customer", "extra", "id", "note"]),
        ("RECORD", {"id": 5, "amount__v_number": 3.5, "note": "again", "extra": True,
                    "customer": {"tier": "gold"}}),
    ]  # fmt: skip
    schemas = result.of_type("SCHEMA")
    assert schemas[-1]["schema"]["properties"]["customer"]["properties"]["tier"] == {
        "type": ["string", "integer", "null"]
    }
    assert all(s["key_properties"] == ["id"] for s in schemas)
    warnings = [r.getMessage() for r in caplog.records if "schema_drift" in r.getMessage()]
    assert warnings == [
        "stream s: new field `note` (string or null) is not in the schema: added (a new "
        "column) (schema_drift: evolve).",
        "stream s: field `amount` is integer or null, got number: such values go to a new "
        "column `amount__v_number` (the column `amount` cannot change its type; the record "
        "leaves it null) (schema_drift: evolve).",
        "stream s: new field `extra` (boolean or null) is not in the schema: added (a new "
        "column) (schema_drift: evolve).",
        "stream s: field `customer` has a value its schema did not allow (customer.tier has "
        "a string); its column keeps any JSON value, so its schema widens to fit it "
        "(schema_drift: evolve).",
    ]
    assert len(server.log) == 5  # the sampled pages were not fetched again


def test_fail_stops_before_the_page_and_names_the_field(server: t.Any, sync: t.Any) -> None:
    _paged(server, "/drift-fail", DRIFTING)
    with pytest.raises(SchemaDriftError) as info:
        sync(_config(server, "/drift-fail", schema_drift="fail"))
    assert str(info.value) == (
        "Schema drift [stream s, page 4]: field `amount` is integer or null in the schema, "
        "but a record has a number (2.5). Nothing of this page was emitted "
        "(`schema_drift: fail`). Use `schema_drift: evolve` (the default) to keep every "
        "value, or give the field its type with `schema_overrides`."
    )
    assert (info.value.field, info.value.expected, info.value.found) == (
        "amount",
        "integer or null",
        "number",
    )


def test_fail_emits_nothing_of_the_drifting_page(server: t.Any, cli: t.Any) -> None:
    _paged(server, "/drift-fail-cli", DRIFTING)
    done = cli(_config(server, "/drift-fail-cli", schema_drift="fail"))
    assert done.code == 1
    records = [m["record"]["id"] for m in done.messages() if m["type"] == "RECORD"]
    assert records == [1, 2, 3]
    assert "Schema drift [stream s, page 4]: field `amount`" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_key_that_drifts_fails_naming_it(server: t.Any, sync: t.Any) -> None:
    pages: list[list[dict[str, t.Any]]] = [[{"id": 1}], [{"id": 2}], [{"id": 3}], [{"id": "x-4"}]]
    _paged(server, "/key-drift", pages)
    with pytest.raises(SchemaDriftError, match=r"field `id` is integer or null in the schema"):
        sync(_config(server, "/key-drift", primary_keys=["id"]))


def test_the_fast_path_and_the_sdk_write_the_same_drifted_lines(
    server: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _paged(server, "/drift-same", DRIFTING)
    config = _config(server, "/drift-same")
    fast = _raw_sync(config)
    monkeypatch.setattr(RecordFastPath, "for_stream", classmethod(lambda cls, s, w: (None, "off")))
    slow = _raw_sync(config)
    assert _without_time(fast) == _without_time(slow)
    assert any(b'"amount__v_number":2.5' in line for line in fast)


def _raw_sync(config: dict[str, t.Any]) -> list[bytes]:
    capture = Capture()
    TapRHTTP(config=config, parse_env_config=False, message_writer=capture).sync_all()
    return capture.take()


def _without_time(lines: list[bytes]) -> list[t.Any]:
    out = []
    for line in lines:
        message = parse_json(line)
        assert isinstance(message, dict)
        message.pop("time_extracted", None)
        out.append(message)
    return out


def test_a_catalog_of_the_taps_own_inference_is_not_coerced(server: t.Any, sync: t.Any) -> None:
    """Meltano hands the discovered catalog back: it is still the tap's own schema."""
    pages = [[{"id": 1, "ok": True}], [{"id": 2, "ok": 1}]]
    _paged(server, "/own-catalog", pages)
    config = _config(server, "/own-catalog", schema_sample={"pages": 1})
    discovered = sync(config).schema("s")
    catalog = {
        "streams": [
            {
                "tap_stream_id": "s",
                "stream": "s",
                "schema": discovered,
                "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}],
            }
        ]
    }
    result = sync(config, catalog=catalog)
    assert result.records("s") == [{"id": 1, "ok": True}, {"id": 2, "ok__v_number": 1}]
    declared = sync(
        {
            **config,
            "streams": [{**config["streams"][0], "schema": discovered | {"description": "mine"}}],
        }
    )
    assert declared.records("s") == [{"id": 1, "ok": True}, {"id": 2, "ok": True}]  # as the SDK


def test_a_streamed_page_is_checked_whole_before_any_of_it_is_written(
    server: t.Any, cli: t.Any, monkeypatch: pytest.MonkeyPatch, tmp_path: t.Any
) -> None:
    """A body too large for memory is read in batches: all are checked, then written."""
    big: list[dict[str, t.Any]] = [{"id": i, "n": i} for i in range(5000)]
    big[4321]["n"] = 0.5
    pages = [[{"id": -1, "n": 1}], big]
    _paged(server, "/streamed-drift", pages)
    config = _config(server, "/streamed-drift", schema_sample={"pages": 1}, schema_drift="fail")
    monkeypatch.setattr(http_body, "SPOOL_THRESHOLD", 1024)
    with pytest.raises(SchemaDriftError, match=r"\[stream s, page 2\]: field `n`"):
        run_sync(config)
    result = run_sync({"streams": [{**config["streams"][0], "schema_drift": "evolve"}]})
    records = result.records("s")
    assert len(records) == 5001
    assert records[4322] == {"id": 4321, "n__v_number": 0.5}
    schemas = result.of_type("SCHEMA")
    assert [sorted(s["schema"]["properties"]) for s in schemas] == [
        ["id", "n"],
        ["id", "n", "n__v_number"],
    ]
    first_drifted = next(
        i
        for i, m in enumerate(result.messages)
        if m["type"] == "SCHEMA" and "n__v_number" in json.dumps(m)
    )
    assert result.messages[first_drifted + 1]["record"]["id"] == 0  # before all of page 2


# ------------------------------------------------------------------ across runs


@pytest.mark.parametrize(
    "column",
    [
        *("bigint", "numeric", "boolean", "text", "timestamp", "date", "time", "uuid", "jsonb"),
        *("bigint[]", "text[]", "jsonb[]", "numeric[]"),
    ],
)
def test_a_kept_column_maps_back_to_its_type(column: str) -> None:
    node = column_schema(column)
    assert node is not None
    assert column_type(node) == column


def test_keep_columns_keeps_the_tables_types_and_lists_fields_earlier_runs_added() -> None:
    inferred = _schema(amount={"type": ["number", "null"]}, name={"type": ["string", "null"]})
    committed = {"amount": "bigint", "amount__v_number": "numeric", "name": "text", "x": "?"}
    kept, replaced = keep_columns(inferred, committed)
    assert replaced == ["amount"]
    assert kept["properties"] == {
        "amount": INT,
        "amount__v_number": {"type": ["number", "null"]},
        "name": {"type": ["string", "null"]},
    }


def test_a_later_run_keeps_the_column_an_earlier_run_made(
    server: t.Any, sync: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Run 1 made `amount` a bigint column; run 2's sample starts with a float: the column
    stays integer (target-postgres could not alter it), the float goes to its variant."""
    rows: list[list[dict[str, t.Any]]] = [[{"id": 1, "amount": 10}], [{"id": 2, "amount": 2.5}]]
    _paged(server, "/kept", rows)
    config = _config(server, "/kept", schema_sample={"pages": 1})
    first = sync(config)
    state = first.of_type("STATE")[-1]["value"]
    assert state["bookmarks"]["s"]["rhttp_columns"] == {
        "amount": "bigint",
        "amount__v_number": "numeric",
        "id": "bigint",
    }
    rows.reverse()
    caplog.set_level(logging.INFO)
    second = sync(config, state=state)
    assert second.schema("s")["properties"]["amount"] == INT
    assert second.records("s") == [{"id": 2, "amount__v_number": 2.5}, {"id": 1, "amount": 10}]
    assert "field `amount` keeps the column type `bigint` an earlier run gave it" in caplog.text
    fresh = sync(config)  # without STATE, this run's own sample decides
    assert fresh.schema("s")["properties"]["amount"] == {"type": ["number", "null"]}
    overrides = {"amount": {"type": ["string", "null"]}}
    overridden = sync(_config(server, "/kept", schema_overrides=overrides), state=state)
    assert overridden.schema("s")["properties"]["amount"] == overrides["amount"]  # as given


def test_a_declared_schema_gains_a_new_field_not_a_silent_drop(server: t.Any, sync: t.Any) -> None:
    """target-postgres keeps only the columns a schema lists: a new field is added."""
    _paged(server, "/declared-new", [[{"id": 1}], [{"id": 2, "late": "x"}]])
    declared = {"properties": {"id": {"type": "integer"}}}
    result = sync(_config(server, "/declared-new", schema=declared))
    assert _lines(result) == [
        ("SCHEMA", ["id"]),
        ("RECORD", {"id": 1}),
        ("SCHEMA", ["id", "late"]),
        ("RECORD", {"id": 2, "late": "x"}),
    ]
    closed = {**declared, "additionalProperties": False}  # the user's choice: singer-sdk
    result = sync(_config(server, "/declared-new", schema=closed))  # drops it, and says so
    assert _lines(result)[-1] == ("RECORD", {"id": 2})

"""A field the schema declares but a record leaves out fits, unless `required` lists it.

The page check read an absent key as null, so a declared non-nullable field that some
records lack failed the page, and `evolve`, which reads absence as fitting, found
nothing to change: the run stopped on "the evolved schema does not fit".
"""

from __future__ import annotations

import typing as t

from tap_rhttp.schema.drift import SchemaCheck, mismatches

SCHEMA: dict[str, t.Any] = {
    "properties": {"id": {"type": "integer"}, "pad": {"type": "string"}},
    "additionalProperties": True,
}


def test_an_absent_declared_field_fits() -> None:
    records: list[dict[str, t.Any]] = [{"id": 1}, {"id": 2, "pad": "x"}]
    assert SchemaCheck(SCHEMA).fits(records)
    assert mismatches(SCHEMA, records) == []


def test_a_present_null_still_does_not_fit() -> None:
    records: list[dict[str, t.Any]] = [{"id": 1}, {"id": 2, "pad": None}]
    assert not SchemaCheck(SCHEMA).fits(records)
    assert [m.field for m in mismatches(SCHEMA, records)] == ["pad"]


def test_an_absent_required_field_does_not_fit() -> None:
    schema = {**SCHEMA, "required": ["pad"]}
    assert not SchemaCheck(schema).fits([{"id": 1}])


def test_a_sync_with_an_absent_declared_field_runs(server: t.Any, sync: t.Any) -> None:
    config = {
        "streams": [
            {"name": "s", "url": server.url + "/records?n=2", "schema": SCHEMA},
        ]
    }
    assert [r["id"] for r in sync(config).records()] == [1, 2]

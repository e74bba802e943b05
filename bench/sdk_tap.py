"""A minimal singer-sdk tap for the same fixture API: the SDK's own idiomatic way.

One ``RESTStream`` with a declared schema, ``records_jsonpath``, the SDK's
``HeaderLinkPaginator`` with the documented ``get_url_params`` for Link pagination,
``partitions`` for S2's and S5's fan-out (one after another: a singer-sdk stream syncs
its partitions in sequence), and every default left alone (writer, retries,
type conformance). It is the reference point for "a singer-sdk tap", not a target.

Usage (run by ``bench/run.py``): ``python bench/sdk_tap.py --config <file>`` where the
config has ``base_url``, ``scenario`` (s1, s1m, s2, s3, s4 or s5; it has no child stream
for S6), ``run`` and ``values`` (S2's or S5's partitions).
"""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qsl

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.pagination import HeaderLinkPaginator
from singer_sdk.streams import RESTStream

if t.TYPE_CHECKING:
    from urllib.parse import ParseResult

FAN_OUT = ("s2", "s5")

SCHEMA = th.PropertiesList(
    th.Property("id", th.IntegerType),
    th.Property("name", th.StringType),
    th.Property("email", th.StringType),
    th.Property("active", th.BooleanType),
    th.Property("score", th.NumberType),
    th.Property("created_at", th.DateTimeType),
    th.Property("tags", th.ArrayType(th.StringType)),
    th.Property(
        "address",
        th.ObjectType(th.Property("city", th.StringType), th.Property("zip", th.StringType)),
    ),
    th.Property("bio", th.StringType),
).to_dict()


class BenchStream(RESTStream[t.Any]):
    records_jsonpath = "$[*]"
    primary_keys: t.ClassVar[list[str]] = ["id"]
    schema = SCHEMA

    @property
    def url_base(self) -> str:
        return str(self.config["base_url"])

    @property
    def path(self) -> str:  # type: ignore[override]
        scenario, run = self.config["scenario"], self.config["run"]
        return f"/{scenario}/{run}/{{v}}" if scenario in FAN_OUT else f"/{scenario}/{run}"

    @property
    def partitions(self) -> list[dict[str, t.Any]] | None:
        if self.config["scenario"] not in FAN_OUT:
            return None
        return [{"v": v} for v in self.config["values"]]

    def get_new_paginator(self) -> HeaderLinkPaginator:
        return HeaderLinkPaginator()

    def get_url_params(
        self, context: t.Mapping[str, t.Any] | None, next_page_token: ParseResult | None
    ) -> dict[str, t.Any]:
        return dict(parse_qsl(next_page_token.query)) if next_page_token else {}


class BenchTap(Tap):
    name = "tap-sdk-bench"
    config_jsonschema = th.PropertiesList(
        th.Property("base_url", th.StringType, required=True),
        th.Property("scenario", th.StringType, required=True),
        th.Property("run", th.StringType, required=True),
        th.Property("values", th.ArrayType(th.IntegerType)),
    ).to_dict()

    def discover_streams(self) -> list[BenchStream]:
        return [BenchStream(self, name=self.config["scenario"])]


if __name__ == "__main__":
    BenchTap.cli()

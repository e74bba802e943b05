"""The frozen :class:`RequestSpec`: one validated r.http call and its pipeline options.

Built only by :func:`tap_rhttp.config.load.load_specs`, which has checked every field;
everything downstream reads specs and never re-validates.
"""

from __future__ import annotations

import dataclasses
import typing as t

from tap_rhttp.config.checks import json_content_type
from tap_rhttp.formats.decoder import Decoder
from tap_rhttp.formats.delimited import CsvOptions
from tap_rhttp.formats.xmldoc import XmlOptions
from tap_rhttp.http.client import MAX_BODY_BYTES, RequestOptions
from tap_rhttp.schema.infer import SampleSize

if t.TYPE_CHECKING:
    from tap_rhttp.config.windows import Windows
    from tap_rhttp.expr import Expression
    from tap_rhttp.http.auth import Credentials
    from tap_rhttp.http.rules import ResponseRule
    from tap_rhttp.types import JSON, HeaderPairs


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    """One validated r.http spec: everything a stream needs to make its requests."""

    name: str
    path: str
    url: str
    method: str = "GET"
    params: t.Mapping[str, JSON] = dataclasses.field(default_factory=dict)
    header: HeaderPairs = ()
    data: JSON = None
    json: JSON = None
    auth: Credentials | None = None
    timeout: float = 30.0
    reattempts: int = 5
    redirects: int = 1
    verify: bool | str = True
    client_cert: str | None = None
    client_key: str | None = None
    client_key_password: str | None = dataclasses.field(default=None, repr=False)
    proxy: str | None = dataclasses.field(default=None, repr=False)
    result_format: str = "auto"
    csv: CsvOptions | None = None
    xml: XmlOptions | None = None
    page: Expression | None = None
    page_source: str | None = None
    page_limit: int | None = None
    records_path: str | None = None
    primary_keys: tuple[str, ...] = ()
    schema: dict[str, JSON] | None = None
    schema_sample: SampleSize = dataclasses.field(default_factory=SampleSize)
    schema_overrides: t.Mapping[str, JSON] = dataclasses.field(default_factory=dict)
    schema_drift: str = "evolve"
    secret_headers: tuple[str, ...] = ()
    trusted_origins: tuple[str, ...] = ()
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = 300.0
    max_retry_seconds: float | None = None
    response_rules: tuple[ResponseRule, ...] = ()
    rate_limit: float | None = None
    for_each: tuple[JSON, ...] | None = None
    parent: str | None = None
    parent_keys: tuple[tuple[str, str], ...] | None = None
    windows: Windows | None = None
    on_error: str = "fail"
    replication_key: str | None = None
    start_value: JSON = None
    filter_bookmark: bool = True
    is_sorted: bool = False
    max_concurrency: int = 1
    template_env: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    templates: t.Mapping[str, JSON] = dataclasses.field(default_factory=dict, repr=False)
    raw: t.Mapping[str, JSON] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def template_names(self) -> tuple[str, ...]:
        """The names `{{ }}` templates of this spec may use."""
        names = ["config", "secrets"]
        if self.for_each is not None:
            names.append("item")
        if self.parent is not None:
            names.append("row")
        if self.windows is not None:
            names.append("window")
        if self.replication_key is not None:
            names.append("bookmark")
        if self.template_env:
            names.append("env")
        return tuple(names)

    @property
    def decoder(self) -> Decoder:
        """How this spec reads its bodies: `result_format` with its `csv` and `xml`."""
        return Decoder(self.result_format, self.csv or CsvOptions(), self.xml or XmlOptions())

    @property
    def has_data(self) -> bool:
        """True when a request body is configured."""
        return self.body is not None

    @property
    def body(self) -> JSON:
        """The request body's data: `json`, else `data` (None: no body)."""
        return self.json if self.json is not None else self.data

    @property
    def json_body(self) -> bool:
        """The body goes out as JSON: `json`, or object/array `data` under a JSON type."""
        if self.json is not None:
            return True
        return isinstance(self.data, (dict, list)) and json_content_type(self.header)

    def request_options(self) -> RequestOptions:
        """What the transport needs to make this spec's requests."""
        return RequestOptions(
            method=self.method,
            header=self.header,
            data=self.body,
            json_body=self.json_body,
            credentials=self.auth,
            timeout=self.timeout,
            redirects=self.redirects,
            verify=self.verify,
            home=self.url,
            trusted_origins=self.trusted_origins,
            client_cert=self.client_cert,
            client_key=self.client_key,
            client_key_password=self.client_key_password,
            proxy=self.proxy,
            rules=self.response_rules,
            max_body_bytes=self.max_body_bytes,
        )

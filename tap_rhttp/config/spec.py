"""The frozen :class:`RequestSpec`: one validated r.http call and its pipeline options.

Built only by :func:`tap_rhttp.config.load.load_specs`, which has checked every field;
everything downstream reads specs and never re-validates.
"""

from __future__ import annotations

import dataclasses
import typing as t

from tap_rhttp.http.client import RequestOptions
from tap_rhttp.schema.infer import SampleSize

if t.TYPE_CHECKING:
    from tap_rhttp.expr import Expression
    from tap_rhttp.http.auth import Credentials
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
    auth: Credentials | None = None
    timeout: float = 30.0
    reattempts: int = 5
    redirects: int = 1
    verify: bool | str = True
    result_format: str = "auto"
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
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = 300.0
    rate_limit: float | None = None
    for_each: tuple[JSON, ...] | None = None
    parent: str | None = None
    parent_keys: tuple[tuple[str, str], ...] | None = None
    on_error: str = "fail"
    replication_key: str | None = None
    start_value: JSON = None
    filter_bookmark: bool = True
    is_sorted: bool = False
    max_concurrency: int = 1
    template_env: bool = False
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
        if self.replication_key is not None:
            names.append("bookmark")
        if self.template_env:
            names.append("env")
        return tuple(names)

    @property
    def has_data(self) -> bool:
        """True when a request body is configured."""
        return self.data is not None

    def request_options(self) -> RequestOptions:
        """What the transport needs to make this spec's requests."""
        return RequestOptions(
            method=self.method,
            header=self.header,
            data=self.data,
            credentials=self.auth,
            timeout=self.timeout,
            redirects=self.redirects,
            verify=self.verify,
        )

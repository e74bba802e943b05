"""The dlt peer: dlt's ``rest_api`` source, configured as its documentation shows.

Run by ``bench/run.py --peers`` in its own virtualenv (``bench/.peers/dlt``), never in
the project's: ``python bench/peers/dlt_rest_api.py '<job as JSON>'`` with keys
``scenario``, ``base`` (the fixture's URL), ``run``, ``values`` (S2's and S5's
``for_each`` values), ``width`` (extract workers), ``bucket`` (the filesystem
destination's directory) and ``pipelines_dir``.

Link pagination is the client's ``"paginator": "header_link"``; a fan-out (S2, S5) is a
dependent resource whose path parameter is resolved from a resource of the values, and a
child stream (S6) one resolved from the parent's ``id``, both ``parallelized`` on
``workers`` extract threads. The pipeline loads into the ``filesystem`` destination as
jsonl (dlt's own default compression), which the benchmark reads back to check every
record: extract, normalize and load are all inside the measured run, as they are in any
use of dlt.
"""

from __future__ import annotations

import json
import os
import sys
import typing as t

# Set before dlt is imported: no anonymous usage reports from a benchmark, and as many
# extract threads as the scenario's concurrency (dlt reads its config from the
# environment).
os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"


def resources(job: dict[str, t.Any]) -> list[t.Any]:
    import dlt

    scenario, run = job["scenario"], job["run"]
    if scenario in ("s2", "s5"):
        count = job["values"]

        @dlt.resource(name="values", selected=False)
        def values() -> t.Iterator[list[dict[str, int]]]:
            yield [{"v": v} for v in range(count)]  # one page: a dependent resource takes pages

        return [
            values,
            {
                "name": scenario,
                "parallelized": True,
                "endpoint": {
                    "path": f"{scenario}/{run}/{{v}}",
                    "params": {"v": {"type": "resolve", "resource": "values", "field": "v"}},
                    # a path ending in a resolved parameter reads as one entity to dlt,
                    # which then drops the client's paginator for a single page
                    "paginator": "header_link",
                },
            },
        ]
    if scenario == "s6":
        return [
            {"name": "parent", "endpoint": {"path": f"s6/{run}"}},
            {
                "name": "s6",
                "parallelized": True,
                "endpoint": {
                    "path": f"s6/{run}/{{id}}",
                    "params": {"id": {"type": "resolve", "resource": "parent", "field": "id"}},
                    "paginator": "single_page",
                },
            },
        ]
    endpoint: dict[str, t.Any] = {"path": f"{scenario}/{run}"}
    if scenario == "s4":
        endpoint["paginator"] = "single_page"
    return [{"name": scenario, "endpoint": endpoint}]


def main() -> None:
    job = json.loads(sys.argv[1])
    os.environ["EXTRACT__WORKERS"] = str(job["width"])

    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {"base_url": job["base"] + "/", "paginator": "header_link"},
            "resource_defaults": {"primary_key": "id", "write_disposition": "append"},
            "resources": resources(job),
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{job['run'].replace('-', '_')}",
        destination=dlt.destinations.filesystem(bucket_url=job["bucket"]),
        dataset_name="bench",
        pipelines_dir=job["pipelines_dir"],
    )
    info = pipeline.run(source, loader_file_format="jsonl")
    print(info, file=sys.stderr)


if __name__ == "__main__":
    main()

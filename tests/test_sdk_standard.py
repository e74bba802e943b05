"""singer-sdk's standard tap and stream tests, against the local loopback server.

`get_tap_test_class` builds its tests at import time, so the server starts at import
(module scope) and stops when the process exits (a daemon thread).
"""

from __future__ import annotations

from server import LocalServer
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_rhttp.tap import TapRHTTP

_SERVER = LocalServer().start()

CONFIG = {
    "streams": [
        {"name": "records", "url": _SERVER.url + "/records?n=5", "primary_keys": ["id"]},
        {
            "name": "linked",
            "url": _SERVER.url + "/pages/link?per_page=2&total=5",
            "page": "link-next",
            "page_limit": -1,
            "primary_keys": ["id"],
        },
        {
            "name": "seed_meta",
            "url": _SERVER.url + "/pages/meta?last=3",
            "records_path": "$.items[*]",
            "page": "lambda info: info['body']['meta']['next'].default(None)",
            "page_limit": 5,
        },
    ]
}

TestTapRHTTP = get_tap_test_class(
    tap_class=TapRHTTP,
    config=CONFIG,
    parse_env_config=False,
    suite_config=SuiteConfig(max_records_limit=None),
)

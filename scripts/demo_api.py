#!/usr/bin/env python3
"""A tiny read-only JSON API to try tap-rhttp against, with nothing but the standard library.

It serves two collections with Link-header pagination (RFC 8288), the way GitHub-style APIs
do it, so the stream specs in meltano.yml's `demo` environment need only
``"page": "link-next"``::

    GET /customers?page=1&per_page=5   12 customers
    GET /orders?page=1&per_page=10     25 orders
    GET /health                        {"ok": true}

Every page answers a JSON array and a ``Link`` header with ``rel="next"`` (absent on the last
page), ``rel="first"`` and ``rel="last"``, plus ``X-Total-Count``. The records hold what real
APIs hold: integers, floats, booleans, RFC 3339 timestamps, nulls, nested objects, arrays of
strings and arrays of objects. The data is generated from a fixed seed, so every run serves
the same records.

Run it::

    python3 scripts/demo_api.py                      # http://127.0.0.1:8765
    python3 scripts/demo_api.py --port 0 --port-file /tmp/port   # a free port, written there

It binds 127.0.0.1 only and logs one line per request to stderr (``--quiet`` to silence).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_PER_PAGE = 100
EPOCH = dt.datetime(2024, 3, 1, 8, 0, tzinfo=dt.timezone.utc)

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
CITIES = [
    ("London", "GB"),
    ("Amsterdam", "NL"),
    ("Lyon", "FR"),
    ("Porto", "PT"),
    ("Berlin", "DE"),
    ("Toronto", "CA"),
]
PRODUCTS = [
    ("TEA-001", "Sencha, 100 g", 8.5),
    ("TEA-002", "Assam, 250 g", 11.25),
    ("MUG-010", "Stoneware mug", 14.0),
    ("POT-020", "Cast-iron teapot", 49.9),
    ("SET-030", "Tasting set", 27.75),
]
STATUSES = ["pending", "paid", "shipped", "delivered", "refunded"]


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_customers(count: int = 12, seed: int = 7) -> list[dict[str, t.Any]]:
    """The customers, always the same for the same seed."""
    rng = random.Random(seed)
    customers = []
    for n in range(1, count + 1):
        first, last = FIRST[(n - 1) % len(FIRST)], LAST[(n * 3) % len(LAST)]
        city, country = CITIES[n % len(CITIES)]
        signed_up = EPOCH - dt.timedelta(days=rng.randint(30, 900), minutes=rng.randint(0, 1440))
        customers.append(
            {
                "id": n,
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}@example.com",
                "active": n % 5 != 0,
                "signed_up_at": _iso(signed_up),
                "credit_limit": round(rng.uniform(100, 5000), 2),
                "address": {
                    "city": city,
                    "country": country,
                    "postcode": f"{rng.randint(1000, 99999)}",
                },
                "tags": [tag for tag in ("vip", "newsletter", "wholesale") if rng.random() < 0.5]
                or ["new"],
            }
        )
    return customers


def make_orders(
    customers: list[dict[str, t.Any]], count: int = 25, seed: int = 11
) -> list[dict[str, t.Any]]:
    """The orders of those customers, always the same for the same seed."""
    rng = random.Random(seed)
    orders = []
    for n in range(1, count + 1):
        created = EPOCH + dt.timedelta(hours=n * 7, minutes=rng.randint(0, 59))
        status = STATUSES[rng.randrange(len(STATUSES))] if n > 2 else ("paid", "pending")[n - 1]
        items: list[dict[str, t.Any]] = []
        for _ in range(rng.randint(1, 3)):
            sku, title, price = PRODUCTS[rng.randrange(len(PRODUCTS))]
            items.append(
                {"sku": sku, "title": title, "quantity": rng.randint(1, 4), "unit_price": price}
            )
        total = round(sum(i["quantity"] * i["unit_price"] for i in items), 2)
        customer = customers[rng.randrange(len(customers))]
        shipped = status in ("shipped", "delivered")
        orders.append(
            {
                "id": 1000 + n,
                "customer_id": customer["id"],
                "status": status,
                "paid": status != "pending",
                "total": float(total),
                "currency": "EUR",
                "item_count": sum(i["quantity"] for i in items),
                "created_at": _iso(created),
                "updated_at": _iso(created + dt.timedelta(hours=rng.randint(1, 48))),
                "shipped_at": _iso(created + dt.timedelta(days=1)) if shipped else None,
                "shipping": {
                    "method": rng.choice(["post", "courier", "pickup"]),
                    "address": dict(customer["address"]),
                },
                "items": items,
                "coupon_codes": ["SPRING24"] if n % 4 == 0 else [],
            }
        )
    return orders


class DemoAPI(ThreadingHTTPServer):
    """The server: the collections and their default page sizes."""

    daemon_threads = True

    def __init__(self, port: int, *, quiet: bool = False) -> None:
        customers = make_customers()
        self.collections: dict[str, tuple[list[dict[str, t.Any]], int]] = {
            "/customers": (customers, 5),
            "/orders": (make_orders(customers), 10),
        }
        self.quiet = quiet
        super().__init__((HOST, port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: DemoAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: t.Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, value: t.Any, headers: t.Sequence[tuple[str, str]] = ()) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, text in headers:
            self.send_header(name, text)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/health":
            self._send(200, {"ok": True})
            return
        if parts.path not in self.server.collections:
            self._send(404, {"error": f"no such endpoint: {parts.path}"})
            return
        records, default_size = self.server.collections[parts.path]
        args = dict(parse_qsl(parts.query))
        try:
            page = int(args.get("page", "1"))
            size = int(args.get("per_page", str(default_size)))
        except ValueError:
            self._send(400, {"error": "page and per_page must be integers"})
            return
        if page < 1 or not 1 <= size <= MAX_PER_PAGE:
            self._send(400, {"error": f"page >= 1 and 1 <= per_page <= {MAX_PER_PAGE}"})
            return
        last = max(1, -(-len(records) // size))
        base = f"http://{self.headers.get('Host') or f'{HOST}:{self.server.server_port}'}"

        def link(number: int, rel: str) -> str:
            return f'<{base}{parts.path}?page={number}&per_page={size}>; rel="{rel}"'

        links = [link(page + 1, "next")] if page < last else []
        links += [link(1, "first"), link(last, "last")]
        headers = [("Link", ", ".join(links)), ("X-Total-Count", str(len(records)))]
        self._send(200, records[(page - 1) * size : page * size], headers)

    do_HEAD = do_GET


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    server = DemoAPI(args.port, quiet=args.quiet)
    port = server.server_port
    if args.port_file:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(args.port_file)  # readers never see a half-written file
    print(f"demo API on http://{HOST}:{port} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

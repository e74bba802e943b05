"""``tap-rhttp init URL``: a working stream spec from one URL.

An application on top of the run layer, like explain mode: it makes its requests through
the chains a run uses, so the same timeouts, reattempts, redirects, redaction and
request bounds apply. ``detect`` reads what a page says (records, ways to page, keys),
``probe`` makes the requests and verifies pagination on a real next page, ``render``
writes JSON and quoted YAML, ``command`` is the click command ``tap_rhttp.main`` runs for
``tap-rhttp init``.
"""

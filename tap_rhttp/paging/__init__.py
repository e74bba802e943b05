"""Depagination: ``link`` (the Link header as `info` shows it) and ``paginator`` (the one
expression paginator, `link-next` as its preset, `page_limit`, the loop guard)."""

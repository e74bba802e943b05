"""Moved to :mod:`tap_rhttp.expr`; kept until every import in the package points there."""

from tap_rhttp.expr import Expression, compile_expression, reql_type_name  # noqa: F401

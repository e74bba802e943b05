"""Compliance cases for the expression language, kept as data in ``data/expression_cases.json``.

Each case is ``{"expression", "info", "result"}`` or ``{"expression", "info", "error",
"error_type"}`` where ``error`` is a substring of the message. Results are compared as JSON
text, so ``2`` and ``2.0`` differ and ``True`` is not ``1``.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
import typing as t

import pytest

from tap_rhttp import errors
from tap_rhttp.expr import compile_expression
from tap_rhttp.expr.functions import _METHODS, _R_FUNCTIONS

CASES_PATH = pathlib.Path(__file__).parent / "data" / "expression_cases.json"
CASES: list[dict[str, t.Any]] = json.loads(CASES_PATH.read_text(encoding="utf-8"))


def _as_json(value: t.Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)


@pytest.mark.parametrize("case", CASES, ids=[case["expression"][:60] for case in CASES])
def test_case(case: dict[str, t.Any]) -> None:
    info = case["info"]
    pristine = copy.deepcopy(info)
    if "error" in case:
        error_type = getattr(errors, case["error_type"])
        with pytest.raises(error_type) as caught:
            compile_expression(case["expression"], path="case").evaluate({"info": info})
        assert case["error"] in str(caught.value)
        if case["error_type"] == "ExpressionError":
            assert not isinstance(caught.value, errors.NonExistenceError)
    else:
        expression = compile_expression(case["expression"], path="case")
        result = expression.evaluate({"info": info})
        assert _as_json(result) == _as_json(case["result"])
    assert info == pristine, "evaluation changed its input"


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 60
    for case in CASES:
        assert set(case) <= {"expression", "info", "result", "error", "error_type", "note"}
        assert ("result" in case) != ("error" in case)


@pytest.mark.parametrize("name", sorted(_METHODS))
def test_every_method_has_a_case(name: str) -> None:
    pattern = re.compile(rf"\.{re.escape(name)}\(")
    assert any(pattern.search(case["expression"]) for case in CASES if "result" in case)


@pytest.mark.parametrize("name", sorted(_R_FUNCTIONS))
def test_every_r_function_has_a_case(name: str) -> None:
    pattern = re.compile(rf"\br\.{re.escape(name)}\(")
    assert any(pattern.search(case["expression"]) for case in CASES)

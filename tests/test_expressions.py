"""Unit tests of the expression language: seed examples, ReQL semantics, reads(), carets."""

from __future__ import annotations

import copy
import json
import pathlib
import re
import typing as t

import pytest

from tap_rhttp import errors, expr
from tap_rhttp.expr import compile_expression
from tap_rhttp.expr.functions import _METHODS, _R_FUNCTIONS
from tap_rhttp.expr.regex import _compile_regex

MANUAL = pathlib.Path(__file__).resolve().parent.parent / "docs" / "expressions.md"

LINK_NEXT = "lambda info: info['header']['link']['rel=\"next\"'].default(None)"
SEED_EXAMPLES = [
    LINK_NEXT,
    "info['body']['meta']['next'].default(None)",
    "{'params': {'page': info['params']['page'] + 1}}",
    "r.branch(info['body']['items'].count() == 0, None, "
    "{'params': {'offset': info['params']['offset'] + 100}})",
]


def info(
    body: t.Any = None,
    *,
    params: dict[str, t.Any] | None = None,
    header: dict[str, t.Any] | None = None,
) -> dict[str, t.Any]:
    return {"params": params or {}, "header": header or {}, "body": body}


def run(source: str, env_info: t.Any = None, **names: t.Any) -> t.Any:
    env = {"info": env_info, **names}
    return compile_expression(source, path="streams[0].page", names=tuple(env)).evaluate(env)


def syntax_error(source: str, names: tuple[str, ...] = ("info",)) -> errors.ExpressionSyntaxError:
    with pytest.raises(errors.ExpressionSyntaxError) as caught:
        compile_expression(source, path="streams[0].page", names=names)
    return caught.value


# -- the seed page's examples, verbatim -------------------------------------------------


class TestSeedExamples:
    def test_link_next_finds_the_next_url(self) -> None:
        page = info(
            header={"link": {'rel="next"': "http://x/?page=2", 'rel="last"': "http://x/?page=9"}}
        )
        assert run(LINK_NEXT, page) == "http://x/?page=2"

    def test_link_next_without_next_link_is_null(self) -> None:
        assert run(LINK_NEXT, info(header={"link": {'rel="last"': "http://x/?page=9"}})) is None

    def test_link_next_without_link_header_is_null(self) -> None:
        assert run(LINK_NEXT, info(header={"content-type": "text/plain"})) is None

    def test_meta_next(self) -> None:
        assert run(SEED_EXAMPLES[1], info({"meta": {"next": "http://x/2"}})) == "http://x/2"
        assert run(SEED_EXAMPLES[1], info({"meta": {}})) is None
        assert run(SEED_EXAMPLES[1], info({"meta": {"next": None}})) is None

    def test_meta_next_on_a_body_without_meta_is_null(self) -> None:
        assert run(SEED_EXAMPLES[1], info({})) is None
        assert run(SEED_EXAMPLES[1], info(None)) is None

    def test_page_plus_one(self) -> None:
        assert run(SEED_EXAMPLES[2], info(params={"page": 1})) == {"params": {"page": 2}}

    def test_page_plus_one_without_page_is_a_non_existence_error(self) -> None:
        with pytest.raises(errors.NonExistenceError, match="No attribute `page` in object:"):
            run(SEED_EXAMPLES[2], info(params={"per_page": 10}))

    def test_offset_branch(self) -> None:
        more = info({"items": [1, 2]}, params={"offset": 0})
        assert run(SEED_EXAMPLES[3], more) == {"params": {"offset": 100}}
        assert run(SEED_EXAMPLES[3], info({"items": []}, params={"offset": 300})) is None

    @pytest.mark.parametrize("source", SEED_EXAMPLES)
    def test_seed_examples_also_compile_with_and_without_the_lambda(self, source: str) -> None:
        bare = source.removeprefix("lambda info: ")
        assert compile_expression(bare, path="p").reads("info")
        assert compile_expression(f"lambda info: {bare}", path="p").reads("info")


# -- ReQL truthiness ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        ("False", False),
        ("None", False),
        ("True", True),
        ("0", True),
        ("0.0", True),
        ("''", True),
        ("[]", True),
        ("{}", True),
        ("'false'", True),
    ],
)
def test_truthiness(value: str, truthy: bool) -> None:
    assert run(f"'yes' if {value} else 'no'") == ("yes" if truthy else "no")
    assert run(f"r.branch({value}, 'yes', 'no')") == ("yes" if truthy else "no")
    assert run(f"not {value}") is (not truthy)
    assert run(f"~{value}") is (not truthy)
    assert run(f"r.expr({value}).not_()") is (not truthy)


def test_and_or_return_an_operand_and_short_circuit() -> None:
    assert run("0 and 'second'") == "second"
    assert run("None and r.error('never')") is None
    assert run("'' or r.error('never')") == ""
    assert run("False or None or 7") == 7
    assert run("None & r.error('never')") is None
    assert run("0 | r.error('never')") == 0


def test_conditional_evaluates_one_branch_only() -> None:
    assert run("1 if True else r.error('never')") == 1
    assert run("r.error('never') if None else 2") == 2


def test_chained_comparison_stops_early() -> None:
    assert run("2 < 1 < r.error('never')") is False


# -- missing fields and .default -----------------------------------------------------------


class TestMissingFields:
    def test_missing_key_message_has_rethinkdb_wording_and_the_object(self) -> None:
        with pytest.raises(errors.NonExistenceError) as caught:
            run("info['body']['next']", info({"prev": 1}))
        assert str(caught.value) == 'No attribute `next` in object:\n{"prev":1}'

    def test_the_object_in_the_message_is_cut_short(self) -> None:
        body = {f"key{i}": "x" * 50 for i in range(1000)}
        with pytest.raises(errors.NonExistenceError) as caught:
            run("info['body']['next']", info(body))
        message = str(caught.value)
        assert message.startswith("No attribute `next` in object:\n{")
        assert message.endswith("...")
        assert len(message) < 300

    def test_subscript_of_null(self) -> None:
        with pytest.raises(errors.NonExistenceError) as caught:
            run("info['body']['a']", info(None))
        assert str(caught.value) == "Cannot perform bracket on a non-object non-sequence `null`."

    def test_index_out_of_bounds(self) -> None:
        with pytest.raises(errors.NonExistenceError, match=r"^Index out of bounds: 5$"):
            run("info['body'][5]", info([1, 2]))

    @pytest.mark.parametrize(
        "source",
        [
            "info['body']['a']['b']",
            "info['body']['list'][3]",
            "info['body']['none']['x']",
            "info['body']['none'] + 1",
            "info['body']['none'].count()",
            "info['body']['none'].upcase()",
        ],
    )
    def test_default_absorbs_non_existence(self, source: str) -> None:
        body = {"list": [1], "none": None}
        with pytest.raises(errors.NonExistenceError):
            run(source, info(body))
        assert run(f"({source}).default('fallback')", info(body)) == "fallback"

    @pytest.mark.parametrize(
        "source",
        [
            "info['body']['text']['x']",
            "info['body']['number'][0]",
            "info['body']['text'] + 1",
            "1 / 0",
            "r.error('custom')",
            "'x'.coerce_to('number')",
        ],
    )
    def test_default_does_not_absorb_other_errors(self, source: str) -> None:
        body = {"text": "abc", "number": 5}
        with pytest.raises(errors.ExpressionError) as caught:
            run(f"({source}).default('fallback')", info(body))
        assert not isinstance(caught.value, errors.NonExistenceError)

    def test_default_replaces_null(self) -> None:
        assert run("info['body']['a'].default(1)", info({"a": None})) == 1

    def test_default_keeps_false_and_zero(self) -> None:
        assert run("info['body']['a'].default(1)", info({"a": False})) is False
        assert run("info['body']['a'].default(1)", info({"a": 0})) == 0

    def test_default_is_lazy(self) -> None:
        assert run("info['body']['a'].default(r.error('not evaluated'))", info({"a": 2})) == 2

    def test_default_of_default(self) -> None:
        source = "info['body']['a'].default(info['body']['b']).default('c')"
        assert run(source, info({})) == "c"
        assert run(source, info({"b": "b"})) == "b"

    def test_error_inside_default_value_propagates(self) -> None:
        with pytest.raises(errors.NonExistenceError, match="No attribute `zzz`"):
            run("info['body']['a'].default(info['body']['zzz'])", info({}))


# -- numbers ---------------------------------------------------------------------------------


class TestNumbers:
    def test_integral_results_are_ints(self) -> None:
        assert run("6 / 3") == 2
        assert isinstance(run("6 / 3"), int)
        assert isinstance(run("info['body'] * 1", info(2.0)), int)

    def test_bool_is_not_a_number(self) -> None:
        for source in ("True + 1", "1 - False", "True * 2", "-True", "[True].sum()"):
            with pytest.raises(errors.ExpressionError, match="found BOOL"):
                run(source)

    def test_integer_results_beyond_max_int(self) -> None:
        assert run(f"{expr.MAX_INT} - 1 + 1") == expr.MAX_INT
        with pytest.raises(errors.ExpressionError, match="MAX_INT"):
            run(f"{expr.MAX_INT} + 1")
        with pytest.raises(errors.ExpressionError, match="MAX_INT"):
            run("info['body'] + 0", info(2**60))

    def test_big_integers_in_values_pass_through(self) -> None:
        assert run("info['body']['id']", info({"id": 2**60})) == 2**60

    def test_integer_literal_beyond_max_int_is_rejected_at_load(self) -> None:
        error = syntax_error(f"info['body'] + {2**53 + 1}")
        assert "MAX_INT" in str(error)
        assert error.column == 15

    def test_non_finite_results(self) -> None:
        with pytest.raises(errors.ExpressionError, match="not finite"):
            run("1e308 + 1e308")
        assert "not finite" in str(syntax_error("1e999"))

    def test_mod_truncates_toward_zero(self) -> None:
        assert [run(f"{a} % {b}") for a, b in [(7, 3), (-7, 3), (7, -3), (-7, -3)]] == [
            1,
            -1,
            1,
            -1,
        ]

    def test_rounding(self) -> None:
        assert [run(f"r.expr({x}).round()") for x in (0.5, 1.5, 2.5, -0.5, -1.49)] == [
            1,
            2,
            3,
            -1,
            -1,
        ]


# -- values and equality ------------------------------------------------------------------


def test_equality_distinguishes_bool_from_number() -> None:
    assert run("[True] == [1]") is False
    assert run("{'a': 0} == {'a': False}") is False
    assert run("[1.0, {'x': [2]}] == [1, {'x': [2.0]}]") is True


def test_ordering_only_between_numbers_or_strings() -> None:
    for source in ("[1] < [2]", "{} < {}", "True < False", "'1' < 2"):
        with pytest.raises(
            errors.ExpressionError, match="ordering needs two numbers or two strings"
        ):
            run(source)


def test_results_never_alias_literals_between_evaluations() -> None:
    expression = compile_expression("{'params': {'page': 1}}", path="p")
    first = expression.evaluate({"info": None})
    first["params"]["page"] = 99
    assert expression.evaluate({"info": None}) == {"params": {"page": 1}}


@pytest.mark.parametrize(
    "source",
    [
        "info['body'].append(4)",
        "info['body'] + [4]",
        "info['meta'].merge({'a': {'c': 3}})",
        "info['meta'].coerce_to('array')",
        "info['body'].slice(0)",
        "info['meta'].keys()",
    ],
)
def test_values_are_never_modified(source: str) -> None:
    env_info = {"body": [1, 2, 3], "meta": {"a": {"b": 1}}}
    pristine = copy.deepcopy(env_info)
    run(source, env_info)
    assert env_info == pristine


def test_merge_is_deep_and_copies_what_it_changes() -> None:
    env_info = {"meta": {"a": {"b": 1}, "keep": {"x": 1}}}
    result = run("info['meta'].merge({'a': {'c': 3}})", env_info)
    assert result == {"a": {"b": 1, "c": 3}, "keep": {"x": 1}}
    assert env_info["meta"]["a"] == {"b": 1}


def test_deep_values_need_no_recursion() -> None:
    deep: t.Any = 0
    for _ in range(50_000):
        deep = [deep]
    other: t.Any = 0
    for _ in range(50_000):
        other = [other]
    assert run("info['a'] == info['b']", {"a": deep, "b": other}) is True
    assert run("[info['a']].contains(info['b'])", {"a": deep, "b": other}) is True
    text = run("info['a'].coerce_to('string')", {"a": deep})
    assert text == "[" * 50_000 + "0" + "]" * 50_000
    with pytest.raises(errors.NonExistenceError, match=r"in object:\n\{\"a\":\[\[\[\["):
        run("info['x']", {"a": deep})


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "NULL"),
        (True, "BOOL"),
        (0, "NUMBER"),
        (1.5, "NUMBER"),
        ("", "STRING"),
        ([], "ARRAY"),
        ({}, "OBJECT"),
    ],
)
def test_reql_type_name(value: t.Any, name: str) -> None:
    assert expr.reql_type_name(value) == name


def test_reql_type_name_rejects_python_objects() -> None:
    with pytest.raises(errors.ExpressionError, match="Not a JSON value: a Python tuple"):
        expr.reql_type_name((1, 2))


# -- the method table ------------------------------------------------------------------------


def test_the_manual_table_lists_every_method_and_function() -> None:
    doc = MANUAL.read_text(encoding="utf-8")
    for name in _METHODS:
        assert re.search(rf"\.{re.escape(name)}\b", doc), name
    for name in _R_FUNCTIONS:
        assert re.search(rf"(r|\.)\.?{re.escape(name)}\b", doc), name


def test_split_keywords() -> None:
    assert run("'a b c'.split(max_splits=1)") == ["a", "b c"]
    assert run("'a-b'.split(sep='-', max_splits=0)") == ["a-b"]
    assert "two values for `sep`" in str(syntax_error("'a'.split('-', sep='-')"))


def test_match_groups_and_offsets_in_characters() -> None:
    result = run("'ünïcode-42'.match('(\\\\w+)-(\\\\d+)')")
    assert result == {
        "str": "ünïcode-42",
        "start": 0,
        "end": 10,
        "groups": [{"str": "ünïcode", "start": 0, "end": 7}, {"str": "42", "start": 8, "end": 10}],
    }


def test_match_agrees_with_python_re_on_ordinary_patterns() -> None:
    patterns = [
        r"(\w+)@(\w+)\.com",
        r"^(\d+)-(\d+)?$",
        r"<(.*?)>",
        r"<(.*)>",
        r"(a|ab)(c|bcd)(d*)",
        r"\bfoo\b",
    ]
    texts = ["me@example.com", "12-34", "12-", "<a><b>", "abcd", "a foo b", "", "x\n12-3"]
    for pattern in patterns:
        for text in texts:
            found = re.search(pattern, text)
            got = run("info[0].match(info[1])", [text, pattern])
            if found is None:
                assert got is None
            else:
                assert got["str"] == found.group(0)
                assert got["start"] == found.start()
                assert [g and g["str"] for g in got["groups"]] == list(found.groups())


def test_regexes_are_cached() -> None:
    _compile_regex.cache_clear()
    run("'abc'.match('b+') == 'abc'.match('b+')")
    assert _compile_regex.cache_info().hits >= 1


# -- names, environment, the Expression object ------------------------------------------


def test_other_names_for_templates() -> None:
    expression = compile_expression(
        "lambda row: row['id'].coerce_to('string') + '-' + item['x']",
        path="t",
        names=("row", "item"),
    )
    assert expression.evaluate({"row": {"id": 7}, "item": {"x": "y"}}) == "7-y"
    assert expression.names == frozenset({"row", "item"})


def test_a_name_missing_from_env_is_an_expression_error() -> None:
    expression = compile_expression("row['a']", path="t", names=("row",))
    with pytest.raises(errors.ExpressionError, match="`row` is not available here"):
        expression.evaluate({})


def test_a_single_name_may_be_given_as_a_string() -> None:
    assert compile_expression("row", path="t", names="row").names == frozenset({"row"})


def test_names_must_be_identifiers_and_not_r() -> None:
    for bad in ("r", "not", "a-b"):
        with pytest.raises(ValueError, match="cannot be an expression name"):
            compile_expression("1", path="p", names=(bad,))


def test_expression_object() -> None:
    first = compile_expression(LINK_NEXT, path="a")
    second = compile_expression(LINK_NEXT, path="b")
    assert str(first) == LINK_NEXT
    assert first.source == LINK_NEXT
    assert repr(first).startswith("Expression(")
    assert first == second
    assert hash(first) == hash(second)
    assert first != compile_expression("None", path="a")


def test_results_are_json() -> None:
    result = run(SEED_EXAMPLES[3], info({"items": [1]}, params={"offset": 5}))
    assert json.loads(json.dumps(result)) == result


# -- reads() ---------------------------------------------------------------------------------


class TestReads:
    def test_link_next(self) -> None:
        expression = compile_expression(LINK_NEXT, path="p")
        assert expression.reads("info")
        assert expression.reads("info", "header")
        assert expression.reads("info", "header", "link")
        assert expression.reads("info", "header", "link", 'rel="next"')
        assert not expression.reads("info", "header", "link", 'rel="last"')
        assert not expression.reads("info", "header", "date")
        assert not expression.reads("info", "body")
        assert not expression.reads("info", "params")

    def test_whole_value_uses_read_everything_under_them(self) -> None:
        expression = compile_expression("info['body'].count()", path="p")
        assert expression.reads("info", "body", "items", 0, "id")
        assert not expression.reads("info", "header")

    def test_computed_subscript_makes_it_unknowable(self) -> None:
        expression = compile_expression("info['body'][info['params']['key']]", path="p")
        assert expression.reads("info", "body", "anything")
        assert expression.reads("info", "params", "key")
        assert not expression.reads("info", "params", "other")
        assert not expression.reads("info", "header")

    def test_get_field_and_nth_with_constants_are_paths(self) -> None:
        expression = compile_expression("info['body'].get_field('items').nth(0)", path="p")
        assert expression.reads("info", "body", "items", 0)
        assert not expression.reads("info", "body", "meta")

    def test_passing_info_whole_reads_everything(self) -> None:
        expression = compile_expression("r.expr(info)['header']", path="p")
        assert expression.reads("info", "body")

    def test_unused_and_unknown_names(self) -> None:
        expression = compile_expression("{'params': {'page': 1}}", path="p")
        assert not expression.reads("info")
        assert not expression.reads("row")

    def test_string_keys_may_reach_into_arrays(self) -> None:
        expression = compile_expression("info['body']['items']['id']", path="p")
        assert expression.reads("info", "body", "items", 3)
        assert not expression.reads("info", "body", "meta")


# -- carets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "column", "fragment"),
    [
        ("open('/etc/passwd')", 0, "`open` is not allowed in an expression (names: info, r)"),
        ("info['a'] + open", 12, "`open` is not allowed"),
        ("info.body", 4, "attribute access `.body` is not allowed; use info['body']"),
        (
            "info['body'].lower()",
            12,
            "method `.lower()` is not supported; supported methods: .add,",
        ),
        ("info['é'].body", 9, "use info['é']['body']"),
        ("info[\n'a'].body", 10, "attribute access `.body`"),
        ("   info.x", 7, "attribute access `.x`"),
        ("info['a'] ** 2", 10, "`**`"),
        ("1 + 2 // 3", 6, "`//`"),
        ("'a' in info", 4, "`in`"),
        ("info is None", 5, "`is`"),
        ("r.nope(1)", 1, "`r.nope` is not supported; supported r functions: r.add,"),
        ("info['a'].default()", 9, "`.default()` takes 1 argument (got 0)"),
        ("info['a'].split(x=1)", 16, "`.split()` has no keyword `x` (keywords: sep, max_splits)"),
        ("info['a'].count(x=1)", 16, "`.count()` takes no keyword arguments"),
        ("info[", 4, "invalid syntax: '[' was never closed"),
        ("info['a']]", 9, "invalid syntax: unmatched ']'"),
    ],
)
def test_caret_columns(source: str, column: int, fragment: str) -> None:
    error = syntax_error(source)
    assert error.column == column
    assert fragment in str(error)
    assert error.expression == source
    assert error.path == "streams[0].page"
    lines = str(error).split("\n")
    assert lines[0].startswith("streams[0].page: ")
    assert lines[1] == "    " + source.replace("\n", " ")
    assert lines[2].startswith(" " * (4 + column) + "^")


def test_error_says_what_is_allowed() -> None:
    error = syntax_error("[x for x in info]")
    assert error.allowed is not None
    assert "Allowed:" in str(error)


def test_empty_expression() -> None:
    assert "empty" in str(syntax_error("   "))


def test_non_string_expression() -> None:
    with pytest.raises(errors.ExpressionSyntaxError, match="must be a string, not int"):
        compile_expression(t.cast("str", 5), path="p")

"""The attribute filter language: what each expression means, clear refusals, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.asl import search
from bridge.asl.search_filter import (
    MAX_FILTERS,
    OPERATORS,
    AttributeFilter,
    FilterError,
    equal_to,
    parse,
    parse_all,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customerId=abc", AttributeFilter("customerId", "=", "abc")),
        ("  customerId = abc  ", AttributeFilter("customerId", "=", "abc")),
        ("amount>=100", AttributeFilter("amount", ">=", 100.0)),
        ("amount<-1.5e3", AttributeFilter("amount", "<", -1500.0)),
        ("amount!=0", AttributeFilter("amount", "!=", 0.0)),
        ("amount<=7", AttributeFilter("amount", "<=", 7.0)),
        ("amount>7", AttributeFilter("amount", ">", 7.0)),
        ('zip="100"', AttributeFilter("zip", "=", "100")),
        ("zip^=12", AttributeFilter("zip", "^=", "12")),
        ("customerId^=ab", AttributeFilter("customerId", "^=", "ab")),
        ('note="a \\"b\\" \\\\ c"', AttributeFilter("note", "=", 'a "b" \\ c')),
        ('empty=""', AttributeFilter("empty", "=", "")),
        ("vip=true", AttributeFilter("vip", "=", "true")),
        ("a.b-c_d==x", AttributeFilter("a.b-c_d", "=", "=x")),
        ("name=Zoë Müller", AttributeFilter("name", "=", "Zoë Müller")),
        ("n=01", AttributeFilter("n", "=", "01")),
    ],
)
def test_expressions(text: str, expected: AttributeFilter) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "does not start with an attribute name"),
        ("=abc", "does not start with an attribute name"),
        ("1abc=x", "does not start with an attribute name"),
        ("customerId", "no operator"),
        ("customerId~x", "no operator"),
        ("customerId=", "no value"),
        ('customerId="abc', "not closed"),
        ('customerId="a"b', "follows the closing quote"),
        ('customerId="a\\nb"', "only"),
        ("customerId=a\x00b", "NUL"),
        ("customerId=\ud800", "surrogate"),
        ("a" * 65 + "=x", "an attribute name"),
        ("amount>1e999", "out of range"),
        ("a=" + "x" * (search.MAX_TEXT + 1), "at most"),
        ("a=" + "x" * 1000, "at most"),
    ],
)
def test_refusals_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(FilterError) as raised:
        parse(text)
    assert reason in str(raised.value)


def test_too_many_filters_are_refused_and_blanks_ignored() -> None:
    assert parse_all(["a=1", " ", ""]) == (AttributeFilter("a", "=", 1.0),)
    with pytest.raises(FilterError, match=f"at most {MAX_FILTERS}"):
        parse_all([f"a{index}=1" for index in range(MAX_FILTERS + 1)])


names = st.from_regex(search.NAME, fullmatch=True)
texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)
values = st.one_of(
    texts,
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-(10**15), 10**15).map(float),
)


@given(names, st.sampled_from(OPERATORS), values)
def test_a_filter_written_back_parses_to_itself(name: str, operator: str, value: object) -> None:
    if operator == "^=" and isinstance(value, float):
        return  # a prefix is text
    wanted = AttributeFilter(name, operator, value)  # type: ignore[arg-type]
    assert parse(wanted.text()) == wanted


@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused_with_a_filter_error(text: str) -> None:
    try:
        found = parse(text)
    except FilterError:
        return
    assert search.name_problem(found.name) is None
    assert found.operator in OPERATORS


@given(
    st.one_of(st.text(max_size=6), st.integers(-5, 5), st.booleans()),
    st.sampled_from(OPERATORS),
    st.one_of(st.text(max_size=3), st.integers(-5, 5).map(float)),
)
def test_matches_follows_the_index_columns(
    value: search.SearchValue, operator: str, wanted: str | float
) -> None:
    if operator == "^=" and isinstance(wanted, float):
        return
    given_filter = AttributeFilter("a", operator, wanted)  # type: ignore[arg-type]
    text, number = search.columns(value)
    result = given_filter.matches(value)
    if isinstance(wanted, float):
        assert result is (number is not None and given_filter.matches(number))
    elif text is None:
        assert result is False
    if operator == "^=" and text is not None and isinstance(wanted, str):
        assert result is text.startswith(wanted)


@given(
    names,
    st.one_of(
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=False, allow_infinity=False),
        texts,
    ),
)
def test_the_filter_a_page_shows_for_a_value_finds_it(name: str, value: search.SearchValue) -> None:
    shown = equal_to(name, value).text()
    assert parse(shown).matches(value)

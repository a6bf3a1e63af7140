"""Label keys, values and selectors as Kubernetes defines them (contracts/labels.py)."""

from __future__ import annotations

import pytest

from clusterflow.contracts.labels import (
    MAX_LABELS,
    Operator,
    Requirement,
    Selector,
    SelectorError,
    key_problem,
    label_problems,
    parse_selector,
    value_problem,
)


@pytest.mark.parametrize(
    "key",
    [
        "env",
        "a",
        "app.kubernetes.io/name",
        "example.com/Team_1",
        "x" * 63,
        ("a" * 63 + ".") * 3 + "a" * 61 + "/name",  # a 253-character prefix
        "A-b_c.D",
    ],
)
def test_valid_keys(key: str) -> None:
    assert key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "must not be empty"),
        ("x" * 64, "63 characters or less"),
        ("-env", "begin and end"),
        ("env-", "begin and end"),
        ("has space", "only letters"),
        ("/name", "prefix before '/' must not be empty"),
        ("Example.com/name", "DNS subdomain"),
        ("example.com/", "name must not be empty"),
        ("a/b/c", "DNS subdomain"),
        ("a" * 254 + "/name", "253 characters"),
        ("é", "only letters"),
    ],
)
def test_invalid_keys_say_what_is_wrong(key: str, fragment: str) -> None:
    problem = key_problem(key)
    assert problem is not None
    assert fragment in problem


def test_values_may_be_empty_but_follow_the_name_rule() -> None:
    assert value_problem("") is None
    assert value_problem("prod-1.a_b") is None
    assert value_problem("v" * 63) is None
    assert "63 characters" in (value_problem("v" * 64) or "")
    assert value_problem("prod/eu") is not None
    assert value_problem("_x") is not None


def test_label_problems_name_each_bad_label_and_the_count() -> None:
    problems = label_problems({"env": "prod", "bad key": "x", "team": "no way", "n": 3})
    assert [p.key for p in problems] == ["bad key", "team", "n"]
    assert "must be a string" in problems[2].message
    too_many = label_problems({f"k{i}": "v" for i in range(MAX_LABELS + 1)})
    assert [p.key for p in too_many] == [""]
    assert f"at most {MAX_LABELS}" in too_many[0].message


def test_parses_every_operator() -> None:
    selector = parse_selector("env=prod, tier==web,zone!=eu, team in (b,a,b), stage notin (dev), gpu, !legacy")
    assert selector.requirements == (
        Requirement("env", Operator.EQUALS, ("prod",)),
        Requirement("tier", Operator.EQUALS, ("web",)),
        Requirement("zone", Operator.NOT_EQUALS, ("eu",)),
        Requirement("team", Operator.IN, ("a", "b")),
        Requirement("stage", Operator.NOT_IN, ("dev",)),
        Requirement("gpu", Operator.EXISTS),
        Requirement("legacy", Operator.DOES_NOT_EXIST),
    )
    assert str(selector) == "env=prod,tier=web,zone!=eu,team in (a,b),stage notin (dev),gpu,!legacy"
    assert parse_selector(str(selector)) == selector


def test_empty_selector_matches_everything_and_empty_values_parse_as_kubernetes_does() -> None:
    assert parse_selector("") == Selector()
    assert parse_selector("   ") == Selector()
    assert Selector().matches({})
    assert parse_selector("env=").requirements == (Requirement("env", Operator.EQUALS, ("",)),)
    assert parse_selector("env in ()").requirements == (Requirement("env", Operator.IN, ("",)),)
    assert parse_selector("env in (a,)").requirements == (Requirement("env", Operator.IN, ("", "a")),)
    assert parse_selector("example.com/team in(a)").requirements[0].key == "example.com/team"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("env=prod,", "expected a label key, found the end"),
        (",env", "expected a label key, found ','"),
        ("env prod", "expected '=', '==', '!=', 'in' or 'notin' after 'env', found 'prod'"),
        ("env in a,b", "expected '(' after 'env in'"),
        ("env in (a b)", "expected ',' or ')'"),
        ("env in (a", "expected ',' or ')' in the values of 'env', found the end"),
        ("env in (", "expected a value for 'env', found the end"),
        ("env=prod=x", "expected ',' between requirements"),
        ("!", "expected a label key, found the end"),
        ("!env=prod", "expected ',' between requirements"),
        ("Bad Key=x", "expected '=', '==', '!=', 'in' or 'notin' after 'Bad'"),
        ("bad_=x", "begin and end"),
        ("env=not/valid", "label value 'not/valid'"),
        ("replicas>3", "ordering operators"),
        ("x" * 5000, "at most 4096 characters"),
        ("env=\x00", "NUL"),
        (",".join(f"k{i}" for i in range(40)), "at most 32 requirements"),
    ],
)
def test_bad_selectors_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "labels", "matches"),
    [
        ("env=prod", {"env": "prod"}, True),
        ("env=prod", {"env": "dev"}, False),
        ("env=prod", {}, False),
        ("env!=prod", {"env": "dev"}, True),
        ("env!=prod", {}, True),  # Kubernetes: a missing key is "not equal"
        ("env!=prod", {"env": "prod"}, False),
        ("team in (a,b)", {"team": "b"}, True),
        ("team in (a,b)", {"team": "c"}, False),
        ("team in (a,b)", {}, False),
        ("team notin (a,b)", {"team": "c"}, True),
        ("team notin (a,b)", {}, True),
        ("team notin (a,b)", {"team": "a"}, False),
        ("gpu", {"gpu": ""}, True),
        ("gpu", {}, False),
        ("!gpu", {}, True),
        ("!gpu", {"gpu": "true"}, False),
        ("env=prod,team in (a,b),!legacy", {"env": "prod", "team": "a"}, True),
        ("env=prod,team in (a,b),!legacy", {"env": "prod", "team": "a", "legacy": "1"}, False),
        ("env=", {"env": ""}, True),
        ("env=", {}, False),
    ],
)
def test_matching_follows_kubernetes(text: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_selector(text).matches(labels) is matches

"""Cluster labels and label selectors, exactly as Kubernetes defines them.

A cluster's labels (`metadata.labels` in the deploy document) are clusterflow's own metadata:
approval rules, fleet update runs and `GET /v1/clusters?labelSelector=` select clusters by
them. They are not the provisioner's tags (EKS/AKS tags, GKE resource labels), which clusterflow
writes onto the cloud's resources.

Keys and values follow Kubernetes' rules so a selector written for `kubectl` means the same
here; the selector grammar is Kubernetes' set-based syntax (`k=v`, `k==v`, `k!=v`,
`k in (a,b)`, `k notin (a,b)`, `k`, `!k`, comma = AND). The parser is standard library only so
every layer can use it: the API to refuse a bad selector (the problem names the requirement and
what is wrong), records to translate a `Selector` to SQL, workflows and approval rules to match
labels they already hold (`Selector.matches`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

MAX_LABELS: Final = 64
"""Labels on one cluster: enough for any sane scheme, small enough for every row and index."""
MAX_SELECTOR_LENGTH: Final = 4096
MAX_REQUIREMENTS: Final = 32
MAX_VALUES: Final = 64
"""Values in one `in (...)` / `notin (...)` set."""

_NAME: Final = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN: Final = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_NAME_RULE: Final = (
    "must be 63 characters or less, begin and end with a letter or digit, and contain only letters, digits, "
    "'-', '_' and '.'"
)


def key_problem(key: str) -> str | None:
    """Why `key` is not a valid Kubernetes label key (`[prefix/]name`), or None if it is."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return f"label key {key!r}: the prefix before '/' must not be empty"
        if len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix):
            return (
                f"label key {key!r}: the prefix {prefix!r} must be a DNS subdomain (lowercase letters, digits, "
                "'-' and '.', 253 characters or less)"
            )
    if not name:
        return f"label key {key!r}: the name must not be empty"
    if len(name) > 63 or not _NAME.fullmatch(name):
        return f"label key {key!r}: the name {name!r} {_NAME_RULE}"
    return None


def value_problem(value: str) -> str | None:
    """Why `value` is not a valid Kubernetes label value (empty, or a name), or None if it is."""
    if value == "":
        return None
    if len(value) > 63 or not _NAME.fullmatch(value):
        return f"label value {value!r} {_NAME_RULE}"
    return None


@dataclass(frozen=True)
class LabelProblem:
    """One invalid label: `key` is the label at fault, `message` says what is wrong."""

    key: str
    message: str


def label_problems(labels: Mapping[str, object]) -> list[LabelProblem]:
    """Every reason these labels are not a valid Kubernetes label map (empty when they are)."""
    problems: list[LabelProblem] = []
    if len(labels) > MAX_LABELS:
        problems.append(LabelProblem("", f"at most {MAX_LABELS} labels per cluster ({len(labels)} given)"))
    for key, value in labels.items():
        found = key_problem(key)
        if found is None:
            found = value_problem(value) if isinstance(value, str) else f"label {key!r}: the value must be a string"
        if found is not None:
            problems.append(LabelProblem(key, found))
    return problems


class Operator(StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclass(frozen=True)
class Requirement:
    """One comma-separated part of a selector. `values` holds one value for `=`/`!=`, the set for
    `in`/`notin` (sorted, unique) and nothing for exists/does-not-exist."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        # As in Kubernetes: `!=` and `notin` also match clusters that lack the key.
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case Operator.EQUALS | Operator.IN:
                return present and value in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return not present or value not in self.values
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present

    def __str__(self) -> str:
        match self.operator:
            case Operator.EQUALS | Operator.NOT_EQUALS:
                return f"{self.key}{self.operator.value}{self.values[0]}"
            case Operator.IN | Operator.NOT_IN:
                return f"{self.key} {self.operator.value} ({','.join(self.values)})"
            case Operator.EXISTS:
                return self.key
            case Operator.DOES_NOT_EXIST:
                return f"!{self.key}"


@dataclass(frozen=True)
class Selector:
    """Requirements that must all hold (an empty selector matches every cluster)."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


class SelectorError(ValueError):
    """A selector that does not parse or names an invalid key or value; the message says which
    requirement (by its text) and what is wrong."""


_TOKEN: Final = re.compile(r"\s*(?:(?P<op>==|!=|=|\(|\)|,|!)|(?P<word>[^\s=!(),]+))")


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:  # pragma: no cover - every character is an operator or part of a word
            raise SelectorError(f"unexpected character at position {position}")
        tokens.append(match.group("op") or match.group("word"))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.parts = _tokens(text)
        self.index = 0

    def peek(self) -> str | None:
        return self.parts[self.index] if self.index < len(self.parts) else None

    def take(self) -> str | None:
        part = self.peek()
        self.index += 1
        return part

    def fail(self, message: str) -> SelectorError:
        return SelectorError(f"{message} (in {self.text!r})")

    def key(self, part: str | None) -> str:
        if part is None or part in _OPERATORS:
            raise self.fail(f"expected a label key, found {_describe(part)}")
        if "<" in part or ">" in part:
            raise self.fail(f"{part!r}: ordering operators ('<', '>') are not supported")
        problem = key_problem(part)
        if problem is not None:
            raise self.fail(problem)
        return part

    def value(self, part: str | None, key: str) -> str:
        if part is None or part in _OPERATORS:
            raise self.fail(f"expected a value for {key!r}, found {_describe(part)}")
        problem = value_problem(part)
        if problem is not None:
            raise self.fail(problem)
        return part

    def value_set(self, key: str, operator: str) -> tuple[str, ...]:
        if self.take() != "(":
            raise self.fail(f"expected '(' after '{key} {operator}'")
        values: set[str] = set()
        expect_value = True
        while True:
            part = self.take()
            if part == ")":
                if expect_value:
                    values.add("")  # `()` and a trailing comma mean the empty value, as in Kubernetes
                break
            if part == ",":
                if expect_value:
                    values.add("")
                expect_value = True
                continue
            if not expect_value:
                raise self.fail(f"expected ',' or ')' in the values of {key!r}, found {_describe(part)}")
            values.add(self.value(part, key))
            expect_value = False
        if len(values) > MAX_VALUES:
            raise self.fail(f"at most {MAX_VALUES} values in one set ({len(values)} for {key!r})")
        return tuple(sorted(values))

    def requirement(self) -> Requirement:
        part = self.take()
        if part == "!":
            return Requirement(self.key(self.take()), Operator.DOES_NOT_EXIST)
        key = self.key(part)
        following = self.peek()
        if following is None or following == ",":
            return Requirement(key, Operator.EXISTS)
        self.take()
        if following in ("=", "=="):
            return Requirement(key, Operator.EQUALS, (self._single_value(key),))
        if following == "!=":
            return Requirement(key, Operator.NOT_EQUALS, (self._single_value(key),))
        if following in ("in", "notin"):
            operator = Operator.IN if following == "in" else Operator.NOT_IN
            return Requirement(key, operator, self.value_set(key, following))
        raise self.fail(f"expected '=', '==', '!=', 'in' or 'notin' after {key!r}, found {_describe(following)}")

    def _single_value(self, key: str) -> str:
        following = self.peek()
        if following is None or following == ",":
            return ""  # `env=` selects the empty value, as in Kubernetes
        return self.value(self.take(), key)

    def selector(self) -> Selector:
        requirements: list[Requirement] = []
        if not self.parts:
            return Selector()
        while True:
            requirements.append(self.requirement())
            if len(requirements) > MAX_REQUIREMENTS:
                raise self.fail(f"at most {MAX_REQUIREMENTS} requirements")
            part = self.take()
            if part is None:
                return Selector(tuple(requirements))
            if part != ",":
                raise self.fail(f"expected ',' between requirements, found {_describe(part)}")


_OPERATORS: Final = frozenset({"==", "!=", "=", "(", ")", ",", "!"})


def _describe(token: str | None) -> str:
    return "the end" if token is None else repr(token)


def parse_selector(text: str) -> Selector:
    """The selector `text` means (Kubernetes syntax); SelectorError saying what is wrong."""
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorError(f"a selector is at most {MAX_SELECTOR_LENGTH} characters ({len(text)} given)")
    if "\x00" in text:
        raise SelectorError("a selector must not contain NUL characters")
    return _Parser(text).selector()

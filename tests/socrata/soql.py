"""A small, safe subset of SoQL for the Socrata test server: parsed, never eval'd.

Follows https://dev.socrata.com/docs/queries/ (``$select``, ``$where``, ``$order``) and
https://dev.socrata.com/docs/datatypes/ for how values compare: numbers numerically,
text and floating timestamps as strings (ISO timestamps sort as text). Supported in
``$where``: comparisons ``= != <> < <= > >=``, ``IS [NOT] NULL``, ``AND``/``OR``/``NOT``,
parentheses, single-quoted strings (``''`` escapes a quote), numbers, ``true``/``false``.
Anything else is a :class:`SoqlError`, which the server turns into Socrata's 400
``query.compiler.malformed`` error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

Row = Mapping[str, Any]
# SQL's three-valued logic: None is "unknown" (a comparison with NULL), which NOT keeps
# unknown and a filter drops. Only a True keeps a row.
Predicate = Callable[[Row], bool | None]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<op><>|!=|<=|>=|=|<|>)|(?P<paren>[(),])|(?P<word>:?[A-Za-z_][A-Za-z0-9_]*))"
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class SoqlError(ValueError):
    """A query the test server does not understand (Socrata answers these with 400)."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise SoqlError(f"could not parse SoQL at character {pos}: {text[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        tokens.append(Token(kind, match.group(kind)))
        pos = match.end()
    return tokens


def compare_key(value: Any, data_type: str) -> Any:
    """The value a row compares by: Decimal for numbers, the string otherwise."""
    if value is None:
        return None
    if data_type in ("number", "double", "money", "percent"):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise SoqlError(f"{value!r} is not a number") from None
    if data_type == "checkbox":
        return value is True or str(value).lower() == "true"
    return str(value)


def _and(values: list[bool | None]) -> bool | None:
    if False in values:
        return False
    return None if None in values else True


def _or(values: list[bool | None]) -> bool | None:
    if True in values:
        return True
    return None if None in values else False


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


class _WhereParser:
    """Recursive descent: or_expr := and_expr (OR and_expr)*; and_expr := not_expr (AND ...)*."""

    def __init__(self, tokens: list[Token], types: Mapping[str, str]) -> None:
        self.tokens = tokens
        self.types = types
        self.pos = 0

    def peek_word(self) -> str:
        if self.pos < len(self.tokens) and self.tokens[self.pos].kind == "word":
            return self.tokens[self.pos].text.upper()
        return ""

    def take(self) -> Token:
        if self.pos >= len(self.tokens):
            raise SoqlError("SoQL $where ends too early")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Predicate:
        predicate = self.or_expr()
        if self.pos != len(self.tokens):
            raise SoqlError(f"unexpected {self.tokens[self.pos].text!r} in $where")
        return predicate

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.peek_word() == "OR":
            self.pos += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda row: _or([p(row) for p in parts]))

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.peek_word() == "AND":
            self.pos += 1
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else (lambda row: _and([p(row) for p in parts]))

    def not_expr(self) -> Predicate:
        if self.peek_word() == "NOT":
            self.pos += 1
            inner = self.not_expr()
            return lambda row: _not(inner(row))
        return self.atom()

    def atom(self) -> Predicate:
        token = self.take()
        if token.text == "(":
            inner = self.or_expr()
            if self.take().text != ")":
                raise SoqlError("unbalanced parentheses in $where")
            return inner
        if token.kind != "word" or token.text.upper() in ("AND", "OR", "NOT"):
            raise SoqlError(f"expected a column name in $where, got {token.text!r}")
        return self.comparison(token.text)

    def comparison(self, field: str) -> Predicate:
        if field not in self.types:
            raise SoqlError(f"no such column: {field}")
        data_type = self.types[field]
        if self.peek_word() == "IS":
            self.pos += 1
            negate = self.peek_word() == "NOT"
            self.pos += negate
            if self.peek_word() != "NULL":
                raise SoqlError("expected NULL after IS in $where")
            self.pos += 1
            return lambda row: (row.get(field) is None) != negate
        op = self.take()
        if op.kind != "op":
            raise SoqlError(f"expected a comparison after {field}, got {op.text!r}")
        literal = compare_key(self.literal(), data_type)
        check = _COMPARE[op.text]

        def predicate(row: Row) -> bool | None:
            value = compare_key(row.get(field), data_type)
            return None if value is None else check(value, literal)

        return predicate

    def literal(self) -> Any:
        token = self.take()
        if token.kind == "str":
            return token.text[1:-1].replace("''", "'")
        if token.kind == "num":
            return token.text
        if token.kind == "word" and token.text.lower() in ("true", "false"):
            return token.text.lower() == "true"
        raise SoqlError(f"expected a value in $where, got {token.text!r}")


def parse_where(text: str, types: Mapping[str, str]) -> Predicate:
    """``types`` maps each queryable field name (including ``:id``) to its data type."""
    return _WhereParser(tokenize(text), types).parse()


def parse_select(text: str, fields: list[str]) -> list[str]:
    """Plain column lists only (``*`` or ``a, b``); aliases and functions are not supported."""
    chosen: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if part == "*":
            chosen.extend(f for f in fields if not f.startswith(":"))
        elif part in fields:
            chosen.append(part)
        else:
            raise SoqlError(f"no such column in $select: {part}")
    return chosen


def parse_order(text: str, types: Mapping[str, str]) -> list[tuple[str, bool]]:
    """``a, b DESC`` -> [("a", False), ("b", True)] (field, descending)."""
    keys: list[tuple[str, bool]] = []
    for part in (p.strip() for p in text.split(",")):
        words = part.split()
        if not words or len(words) > 2 or words[0] not in types:
            raise SoqlError(f"cannot order by {part!r}")
        direction = words[1].upper() if len(words) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise SoqlError(f"cannot order by {part!r}")
        keys.append((words[0], direction == "DESC"))
    return keys

"""Infer a column's type from its distinct text values, vectorised with Arrow compute.

A type is suggested only when every non-empty value parses as it, with the same
patterns and strptime formats the extract's casting uses (``sources/cast.py``), so a
drafted spec never turns a value it has seen into a type error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

_INT = r"^\s*[-+]?\d+\s*$"
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_GEOPOINT = r"^\s*\(?\s*[-+]?\d+(\.\d+)?\s*,\s*[-+]?\d+(\.\d+)?\s*\)?\s*$"
# Words only: Y/N and 0/1 stay text and integers (a department's Y/N flag is not always
# a boolean, and casting 0/1 as booleans would hide counts).
_BOOLEAN = ["true", "false", "True", "False", "TRUE", "FALSE", "yes", "no", "Yes", "No"]
#: formats tried for timestamps, US portal exports first; day-first only when nothing else
#: reads a value (12/01 is December in a US city's export)
TIMESTAMP_FORMATS = [
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
]
DAY_FIRST = ["%d/%m/%Y %H:%M:%S", "%d/%m/%Y"]
#: integers this long are identifiers (ticket, case, phone-shaped numbers), kept as text
IDENTIFIER_DIGITS = 9


@dataclass
class Inferred:
    """What the values of one column parse as."""

    type: str
    formats: list[str] = field(default_factory=list)
    #: digits after the decimal point, at most (numbers and geopoints)
    decimals: int = 0


def _all_match(values: pa.Array, pattern: str) -> bool:
    return bool(pc.all(pc.match_substring_regex(values, pattern)).as_py())


def max_decimals(values: pa.Array) -> int:
    """Most digits after a decimal point in any value (0 when none has one)."""
    frac = pc.extract_regex(values, r"\.(?P<d>\d+)")
    lengths = pc.utf8_length(pc.struct_field(frac, "d"))
    found = pc.max(lengths).as_py()
    return int(found or 0)


def timestamp_formats(values: pa.Array) -> tuple[list[str], pa.Array | None]:
    """Every format some value needs, most used first, and the parsed values.

    Returns no formats when any value parses with none of them (the column is text).
    """
    stripped = pc.utf8_trim_whitespace(values)
    parsed = pa.nulls(len(values), pa.timestamp("s"))
    used: list[tuple[int, str]] = []
    for fmt in [*TIMESTAMP_FORMATS, *DAY_FIRST]:
        if fmt in DAY_FIRST and used and not pc.any(pc.is_null(parsed)).as_py():
            break
        attempt = pc.strptime(stripped, format=fmt, unit="s", error_is_null=True)
        fresh = pc.and_(pc.is_null(parsed), pc.is_valid(attempt))
        count = pc.sum(fresh).as_py() or 0
        if count:
            used.append((count, fmt))
            parsed = pc.coalesce(parsed, attempt)
    if not used or pc.any(pc.is_null(parsed)).as_py():
        return [], None
    return [fmt for _, fmt in sorted(used, key=lambda u: -u[0])], parsed


def _is_identifier_integer(values: pa.Array) -> bool:
    """Leading zeros (codes, ZIPs) or many digits (ticket numbers): text, not a quantity."""
    digits = pc.utf8_trim(pc.utf8_trim_whitespace(values), "+-")
    zero_led = pc.and_(pc.starts_with(digits, "0"), pc.greater(pc.utf8_length(digits), 1))
    long = pc.greater_equal(pc.utf8_length(digits), IDENTIFIER_DIGITS)
    return bool(pc.any(pc.or_(zero_led, long)).as_py())


def infer_type(distinct: pa.Array) -> Inferred:
    """The narrowest type every one of ``distinct`` (non-null text values) parses as."""
    if len(distinct) == 0:
        return Inferred("string")
    if bool(pc.all(pc.is_in(pc.utf8_trim_whitespace(distinct), pa.array(_BOOLEAN))).as_py()):
        return Inferred("boolean")
    if _all_match(distinct, _INT):
        return Inferred("string" if _is_identifier_integer(distinct) else "integer")
    if _all_match(distinct, _NUMBER):
        return Inferred("number", decimals=max_decimals(distinct))
    if _all_match(distinct, _GEOPOINT):
        return Inferred("geopoint", decimals=max_decimals(distinct))
    formats, parsed = timestamp_formats(distinct)
    if formats and parsed is not None:
        midnight = pc.equal(pc.floor_temporal(parsed, unit="day"), parsed)
        kind = "date" if pc.all(midnight).as_py() else "datetime"
        return Inferred(kind, formats=formats)
    return Inferred("string")

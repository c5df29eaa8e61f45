"""Output schemas of the Dataset Management API: an uploaded CSV's columns typed into a dataset's.

An input schema is the file as it came (every column text); an output schema maps each
input column through a transform (`` `col` ``, ``to_number(`col`)``, ...) to a Socrata type,
and counts the values that do not convert: ``error_count`` on the schema and on each
column's ``transform`` (the fields socrata-py 1.2.0 reads: ``OutputSchema.any_errors``,
``any_failed``, ``wait_for_finish``). A new dataset's types are guessed from the values, as
the DSMAPI does for an upload with no target; a revision on an existing dataset keeps that
dataset's column types, so a value that no longer parses is an error, not a retype.

Socrata's own pages for what is implemented here:

- Revisions, sources, input and output schemas, transforms:
  https://dev.socrata.com/publishers/dsmapi ("you cannot update a dataset via this API
  without routing through a revision"; the data transformation functions).
- The transform functions, one page each: https://dev.socrata.com/docs/transforms/to_number,
  .../to_boolean, .../to_floating_timestamp, .../to_point (WKT ``POINT (x y)`` converts;
  ``'(2, 2)'`` is a ``type_conversion_failed``, the error civicflow met with LA's
  ``(lat, lon)`` text). Not modelled: ``to_boolean('1')``/``('0')`` (true/false on its
  page; this server takes ``true``/``false`` only, which is what civicflow sends) and
  ``to_floating_timestamp``'s format-string argument.
- What each type accepts (numbers as numeric strings, checkbox ``true``/``false``, a
  floating timestamp as ISO 8601 without a zone, null as an absent value):
  https://support.socrata.com/hc/en-us/articles/360024040594-Dataset-Validation-for-Column-Data-Type-Values
  (the checks are :func:`tests.socrata.store.normalize`, shared with SODA writes).
- A new upload's types guessed ("the Socrata platform is designed to make its best guess
  as to what data type each column should be"):
  https://support.socrata.com/hc/en-us/articles/360015497374-Which-is-which-Unformatted-Data-Data-Types-Data-Transforms-and-Column-Formatting;
  the order of the guesses (:data:`_GUESS_ORDER`) is this server's.
- Field names from headers (:func:`field_name`: lower case, ``_`` for the rest): no
  Socrata page states the rule; this is the server's own reading.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

from tests.socrata.store import RowError, normalize

# transform function -> the Socrata type it produces (DSMAPI "output_soql_type").
FUNCTIONS = {
    "to_text": "text",
    "to_number": "number",
    "to_boolean": "checkbox",
    "to_floating_timestamp": "calendar_date",
    "to_point": "point",
    "to_url": "url",
}
TYPE_FUNCTION = {t: f for f, t in FUNCTIONS.items()}
_EXPR = re.compile(r"\s*(?:(?P<fn>to_\w+)\s*\(\s*)?`(?P<col>[^`]+)`\s*(?(fn)\))\s*")
_GUESS_ORDER = ("number", "checkbox", "calendar_date", "point")


class TransformError(ValueError):
    """A transform expression this server does not implement (named in the 400)."""


def field_name(header: str) -> str:
    """A display name as Socrata turns it into a field name: lower case, ``_`` for the rest."""
    return re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_") or "column"


def parse_csv(data: bytes) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of an uploaded CSV (UTF-8, a BOM allowed)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig")))
    rows = list(reader)
    if not rows:
        raise RowError("the uploaded file is empty: a header row is required")
    return rows[0], rows[1:]


def expression(column_field: str, soql_type: str) -> str:
    if soql_type == "text":
        return f"`{column_field}`"
    return f"{TYPE_FUNCTION[soql_type]}(`{column_field}`)"


def parse_expression(expr: str) -> tuple[str, str]:
    """(input field name, output type) of a transform expression."""
    match = _EXPR.fullmatch(expr or "")
    if match is None or (match["fn"] and match["fn"] not in FUNCTIONS):
        raise TransformError(
            f"transform {expr!r} is not supported by the test server: use `col` or "
            f"{', '.join(f + '(`col`)' for f in FUNCTIONS)}"
        )
    return match["col"], FUNCTIONS.get(match["fn"] or "to_text", "text")


def guess_type(values: list[str]) -> str:
    """The narrowest type every non-empty value converts to; text when none does."""
    present = [v for v in values if v != ""]
    for candidate in _GUESS_ORDER if present else ():
        if all(_converts(v, candidate) for v in present):
            return candidate
    return "text"


def _converts(value: str, soql_type: str) -> bool:
    try:
        normalize(value, soql_type, "")
    except RowError:
        return False
    return True


@dataclass
class OutputColumn:
    field_name: str
    display_name: str
    input_field: str
    soql_type: str
    position: int
    description: str = ""
    is_primary_key: bool = False
    error_count: int = 0


@dataclass
class Converted:
    """Every row converted: SODA 2 form rows, and the failing cells by row number."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[int, dict[str, str]] = field(default_factory=dict)  # row -> field -> message

    @property
    def good_rows(self) -> list[dict[str, Any]]:
        return [r for i, r in enumerate(self.rows) if i not in self.errors]


def convert(header: list[str], rows: list[list[str]], columns: list[OutputColumn]) -> Converted:
    """Apply the transforms column by column, counting the values that do not convert."""
    index = {field_name(h): i for i, h in enumerate(header)}
    out = Converted(rows=[{} for _ in rows])
    for column in columns:
        if column.input_field not in index:
            raise TransformError(
                f"transform of {column.field_name!r}: no input column {column.input_field!r}"
            )
        column.error_count = _convert_column(out, rows, index[column.input_field], column)
    return out


def _convert_column(out: Converted, rows: list[list[str]], at: int, column: OutputColumn) -> int:
    errors = 0
    for number, row in enumerate(rows):
        raw = row[at] if at < len(row) else ""
        if raw == "":
            continue
        try:
            out.rows[number][column.field_name] = normalize(raw, column.soql_type, "")
        except RowError:
            errors += 1
            # The message names the type, never the value: errors are listed per row number.
            out.errors.setdefault(number, {})[column.field_name] = (
                f"cannot convert to {column.soql_type}"
            )
    return errors

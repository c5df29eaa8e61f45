"""Apply declared types to an all-text table, vectorised with Arrow compute.

A value that does not parse becomes null here; the structure check reports it as a
type error at its row by comparing with the raw text (raw non-null, typed null).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from civicflow.spec.models import DatasetSpec, FieldSpec, TabularSource

_INT = r"^\s*[-+]?\d+\s*$"
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_GEOPOINT = r"^\s*\(?\s*[-+]?\d+(\.\d+)?\s*,\s*[-+]?\d+(\.\d+)?\s*\)?\s*$"
_TRUE = ["true", "True", "TRUE", "1", "Y", "y", "yes", "Yes", "YES"]
_FALSE = ["false", "False", "FALSE", "0", "N", "n", "no", "No", "NO"]
DEFAULT_TIMESTAMP_FORMATS = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]


def _where_matches(values: pa.ChunkedArray, pattern: str) -> pa.ChunkedArray:
    """Values that match ``pattern``; everything else becomes null."""
    ok = pc.match_substring_regex(values, pattern)
    return pc.if_else(ok, values, pa.scalar(None, pa.string()))


def _parse_timestamps(values: pa.ChunkedArray, formats: list[str]) -> pa.ChunkedArray:
    stripped = pc.utf8_trim_whitespace(values)
    parsed = [pc.strptime(stripped, format=fmt, unit="s", error_is_null=True) for fmt in formats]
    return parsed[0] if len(parsed) == 1 else pc.coalesce(*parsed)


def cast_column(
    values: pa.ChunkedArray, field: FieldSpec, default_formats: list[str]
) -> pa.ChunkedArray:
    kind = field.type
    if kind == "string":
        return values
    if kind == "integer":
        return pc.cast(pc.utf8_trim_whitespace(_where_matches(values, _INT)), pa.int64())
    if kind == "number":
        return pc.cast(pc.utf8_trim_whitespace(_where_matches(values, _NUMBER)), pa.float64())
    if kind == "boolean":
        stripped = pc.utf8_trim_whitespace(values)
        is_true = pc.is_in(stripped, value_set=pa.array(_TRUE))
        is_false = pc.is_in(stripped, value_set=pa.array(_FALSE))
        return pc.if_else(is_true, True, pc.if_else(is_false, False, pa.scalar(None, pa.bool_())))
    if kind in ("date", "datetime"):
        parsed = _parse_timestamps(values, field.formats or default_formats)
        return pc.floor_temporal(parsed, unit="day") if kind == "date" else parsed
    if kind == "geopoint":
        return _where_matches(values, _GEOPOINT)
    raise ValueError(f"field {field.name}: no caster for type {kind!r}")


_PANDAS_TYPES = {
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def cast_frame(spec: DatasetSpec, raw: pa.Table, first_row: int = 1) -> pd.DataFrame:
    """The typed frame: columns renamed to field names, index = 1-based data row number
    (``first_row``: the number of ``raw``'s first row, for a batch of a larger table).

    Fields whose source column is missing come out all-null (the structure check
    reports the missing column; casting does not fail on it).
    """
    formats = (
        spec.source.timestamp_formats
        if isinstance(spec.source, TabularSource)
        else DEFAULT_TIMESTAMP_FORMATS
    )
    columns: dict[str, pa.ChunkedArray] = {}
    for field in spec.fields:
        if field.source_name in raw.column_names:
            values = raw[field.source_name]
        else:
            values = pa.chunked_array([pa.nulls(raw.num_rows, pa.string())])
        columns[field.name] = cast_column(values, field, formats)
    typed = pa.table(columns)
    # Integers and booleans keep pandas' nullable dtypes; floats use NaN for missing,
    # which every downstream library (GX, pyproj, DuckDB) understands.
    frame = typed.to_pandas(types_mapper=_PANDAS_TYPES.get)
    frame.index = pd.RangeIndex(first_row, first_row + raw.num_rows, name="row")
    return frame

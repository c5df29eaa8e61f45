"""Rows to and from Socrata's CSV, column by column in Arrow (no Python per row).

Upload: UTC floating timestamps to the millisecond, ``YYYY-MM-DD`` dates,
``true``/``false``, points as WKT (longitude first); nulls are empty cells. The CSV is
written here rather than by ``DataFrame.to_csv``, whose timestamps carry nanoseconds
and zones Socrata's floating timestamps do not take. Download: every column as text,
points back in civicflow's ``(lat, lon)`` form so a plan compares like with like.
"""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from civicflow.spec.models import FieldSpec

_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_PAIR = rf"^\s*\(?\s*{_NUMBER}\s*,\s*{_NUMBER}\s*\)?\s*$"
_WKT = rf"^\s*POINT\s*\(\s*{_NUMBER}\s+{_NUMBER}\s*\)\s*$"


def write_csv(frame: pd.DataFrame, fields: list[FieldSpec]) -> bytes:
    """The upload CSV, column by column in Arrow: UTC floating timestamps to the
    millisecond, ``YYYY-MM-DD`` dates, ``true``/``false``; nulls are empty cells."""
    columns = {}
    for f in fields:
        array = pa.array(frame[f.name], from_pandas=True)
        if pa.types.is_timestamp(array.type):
            if array.type.tz is not None:
                array = pc.cast(array, pa.timestamp(array.type.unit, "UTC"))
                array = array.cast(pa.timestamp(array.type.unit))
            pattern = "%Y-%m-%d" if f.type == "date" else "%Y-%m-%dT%H:%M:%S"
            # to the millisecond, as the plan compares (diff._timestamps floors to ms)
            array = pc.strftime(array.cast(pa.timestamp("ms"), safe=False), format=pattern)
        elif not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
            array = array.cast(pa.string())
        if f.type == "geopoint":
            # civicflow's "(lat, lon)" as the WKT Socrata's point type reads: lon first
            array = pc.replace_substring_regex(array, pattern=_PAIR, replacement=r"POINT (\2 \1)")
        columns[f.name] = array
    out = io.BytesIO()
    pacsv.write_csv(pa.table(columns), out)
    return out.getvalue()


def as_pairs(rows: pa.Table, fields: list[FieldSpec]) -> pa.Table:
    """Live WKT points back in civicflow's "(lat, lon)" form, so the plan compares like
    with like."""
    for f in fields:
        if f.type == "geopoint" and f.name in rows.column_names:
            at = rows.column_names.index(f.name)
            pairs = pc.replace_substring_regex(rows[f.name], pattern=_WKT, replacement=r"(\2, \1)")
            rows = rows.set_column(at, f.name, pairs)
    return rows


def read_csv(data: bytes, fields: list[str]) -> pa.Table:
    if not data.strip():
        return pa.table({name: pa.array([], pa.string()) for name in fields})
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(fields, pa.string()), strings_can_be_null=True
    )
    return pacsv.read_csv(io.BytesIO(data), convert_options=options)

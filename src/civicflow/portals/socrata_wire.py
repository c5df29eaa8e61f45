"""Rows to and from Socrata's CSV, column by column in Arrow (no Python per row).

Upload: UTC floating timestamps to the millisecond, ``YYYY-MM-DD`` dates,
``true``/``false``, points as WKT (longitude first); nulls are empty cells. The CSV is
written here rather than by ``DataFrame.to_csv``, whose timestamps carry nanoseconds
and zones Socrata's floating timestamps do not take. Download: every column as text,
points back in civicflow's ``(lat, lon)`` form so a plan compares like with like.
"""

from __future__ import annotations

import io

import numpy as np
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
    return table_csv(wire_table(frame, fields))


def table_csv(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(table, out)
    return out.getvalue()


def json_rows(table: pa.Table) -> list[dict[str, str | None]]:
    """Rows for a SODA upsert: Socrata strings, null where the cell is empty (an upsert
    sets a field sent as null to null, and leaves a field not sent alone)."""
    rows: list[dict[str, str | None]] = table.to_pylist()
    return rows


def wire_table(frame: pd.DataFrame, fields: list[FieldSpec]) -> pa.Table:
    """``frame`` as Socrata strings, one Arrow string column per field (see write_csv)."""
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
    return pa.table(columns)


def merge_changes(
    live: pa.Table, upserts: pa.Table, deletes: pa.Table, key: list[str]
) -> tuple[pa.Table, int]:
    """The live rows (Socrata's CSV text) as deleting ``deletes`` and then upserting
    ``upserts`` by key leaves them, in order: an upserted row whose key is still live
    takes that row's place (Socrata's upsert updates a row where it stands), the others
    are appended in their order. Also how many live rows ``deletes`` removed; a key
    deleted and upserted again moves its row to the end and is not counted.

    Keys are compared as text, with a trailing ``.000`` (Socrata's milliseconds) dropped.
    """
    names = upserts.column_names
    schema = pa.schema([(n, pa.string()) for n in names])
    live, upserts = live.select(names).cast(schema), upserts.cast(schema)
    upsert_keys = _key_text(upserts, key).combine_chunks()
    live_keys = _key_text(live, key)
    gone = pc.is_in(live_keys, value_set=_key_text(deletes, key).combine_chunks())
    moved = pc.and_(gone, pc.is_in(live_keys, value_set=upsert_keys))
    deleted = int(pc.sum(gone).as_py() or 0) - int(pc.sum(moved).as_py() or 0)
    live = live.filter(pc.invert(gone))
    live_keys = _key_text(live, key).combine_chunks()
    # Rows of live ++ upserts to take: per live row itself or the upsert with its key,
    # then the upserts whose key is not live.
    replaced_by = pc.fill_null(pc.index_in(live_keys, value_set=upsert_keys), -1).to_numpy()
    kept = np.arange(live.num_rows)
    at = np.where(replaced_by < 0, kept, replaced_by + live.num_rows)
    new = pc.invert(pc.is_in(upsert_keys, value_set=live_keys)).to_numpy(zero_copy_only=False)
    order = np.concatenate([at, np.flatnonzero(new) + live.num_rows])
    return pa.concat_tables([live, upserts]).take(pa.array(order, pa.int64())), deleted


def _key_text(table: pa.Table, key: list[str]) -> pa.ChunkedArray:
    parts = [
        pc.replace_substring_regex(table[k].cast(pa.string()), pattern=r"\.0+$", replacement="")
        for k in key
    ]
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "\x1f")


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

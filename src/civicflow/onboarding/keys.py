"""Primary-key candidates: a column, or a few dimension columns together, unique and never empty.

Single columns come from the profile (distinct count equals row count, no nulls); a
compound key is looked for only when no single column qualifies, by asking DuckDB for
the distinct count of small combinations of dimension columns (text, dates, id-like
integers), never measures: a count next to a month is unique by accident.
"""

from __future__ import annotations

import re
from itertools import combinations
from math import prod

import duckdb
import pyarrow as pa

from civicflow.onboarding.facts import ColumnProfile

_ID_NAME = re.compile(r"(^|_)(id|number|num|no|nbr|key|code)$")
_MAX_PARTS = 4
_MAX_TRIES = 60


def _rank(col: ColumnProfile) -> tuple[int, int]:
    """Identifier names first, then text and integers, then anything else."""
    named = 0 if _ID_NAME.search(col.name) else 1
    typed = 0 if col.type in ("string", "integer") else 1
    return named, typed


def _dimensions(columns: list[ColumnProfile], rows: int) -> list[ColumnProfile]:
    dims = [
        c
        for c in columns
        if c.nulls == 0
        and 1 < c.distinct <= rows // 2
        and (
            c.type in ("string", "date", "datetime", "boolean")
            or (c.type == "integer" and _ID_NAME.search(c.name))
        )
    ]
    order = {"date": 0, "datetime": 0, "string": 1, "boolean": 1, "integer": 2}
    return sorted(dims, key=lambda c: (order[c.type], c.distinct))


def _quoted(header: str) -> str:
    return '"' + header.replace('"', '""') + '"'


def _compound(table: pa.Table, columns: list[ColumnProfile]) -> list[str] | None:
    rows = table.num_rows
    dims = _dimensions(columns, rows)
    con = duckdb.connect()
    try:
        con.register("t", table)
        tries = 0
        for size in range(2, min(_MAX_PARTS, len(dims)) + 1):
            for combo in combinations(dims, size):
                if prod(c.distinct for c in combo) < rows:
                    continue
                tries += 1
                if tries > _MAX_TRIES:
                    return None
                cols = ", ".join(_quoted(c.source) for c in combo)
                query = f"select count(*) from (select distinct {cols} from t)"
                if con.execute(query).fetchall()[0][0] == rows:
                    return [c.name for c in combo]
    finally:
        con.close()
    return None


def key_candidates(table: pa.Table, columns: list[ColumnProfile]) -> list[list[str]]:
    """Every single-column key, best first; else one compound key; else none."""
    if table.num_rows == 0:
        return []
    unique = sorted((c for c in columns if c.unique and c.type != "number"), key=_rank)
    # Text and id-named integers identify rows; a unique count or time is a coincidence,
    # taken only when no combination of dimensions is unique either.
    singles = [c for c in unique if c.type == "string" or _rank(c) == (0, 0)]
    if singles:
        return [[c.name] for c in singles]
    compound = _compound(table, columns)
    return [compound] if compound else [[c.name] for c in unique]

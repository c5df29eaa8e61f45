"""Profile an all-text Arrow table, one column at a time, with vectorised Arrow compute.

Each column is reduced to its distinct values and their counts first (one hash pass),
so type inference, ranges and enumerations work on the distinct values only: a
million-row column of a few hundred statuses costs one ``value_counts``.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from civicflow.onboarding.facts import MAX_LISTED, ColumnProfile, TableProfile
from civicflow.onboarding.infer import infer_type, max_decimals, timestamp_formats
from civicflow.onboarding.keys import key_candidates

log = logging.getLogger("civicflow.onboarding")

__all__ = ["ColumnProfile", "TableProfile", "profile_table", "snake_case"]

#: numbers departments write for "no value" (0 and 99999 among real coordinates or ages)
SENTINELS = (0.0, -1.0, 999.0, 9999.0, 99999.0, 999999.0, -999.0, -9999.0)


def snake_case(header: str) -> str:
    """``SRNumber`` -> ``sr_number``, ``Ticket number`` -> ``ticket_number``."""
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", header.strip())
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not text:
        return "column"
    return text if text[0].isalpha() else f"c_{text}"


def unique_names(headers: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for header in headers:
        base = snake_case(header)
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def _sentinels(numbers: np.ndarray, counts: np.ndarray) -> list[float]:
    """Values from SENTINELS that sit far outside the range of every other value."""
    found: list[float] = []
    for value in SENTINELS:
        rest = numbers[(numbers != value) & ~np.isin(numbers, found)]
        if value not in numbers or len(np.unique(rest)) < 3:
            continue
        lo, hi = float(rest.min()), float(rest.max())
        gap = lo - value if value < lo else value - hi if value > hi else -1.0
        if gap > 0 and gap > hi - lo:
            found.append(value)
    return found


def _numeric_stats(col: ColumnProfile, distinct: pa.Array, counts: np.ndarray) -> None:
    numbers = np.asarray(pc.cast(pc.utf8_trim_whitespace(distinct), pa.float64()), dtype=float)
    found = _sentinels(numbers, counts)
    is_sentinel = np.isin(numbers, found)
    if is_sentinel.any():
        col.sentinels = sorted(str(v) for v in np.asarray(distinct.filter(pa.array(is_sentinel))))
        col.sentinel_rows = int(counts[is_sentinel].sum())
    rest = numbers[~is_sentinel]
    if rest.size:
        col.minimum, col.maximum = float(rest.min()), float(rest.max())
        kept = distinct.filter(pa.array(~is_sentinel))
        col.decimals = max_decimals(kept) if col.type == "number" else 0


def _temporal_stats(col: ColumnProfile, distinct: pa.Array) -> None:
    _, parsed = timestamp_formats(distinct)
    if parsed is not None:
        lo, hi = pc.min_max(parsed).values()
        col.minimum, col.maximum = str(lo.as_py()), str(hi.as_py())


def profile_column(source: str, name: str, values: pa.ChunkedArray) -> ColumnProfile:
    counted = pc.value_counts(values.drop_null())
    distinct = counted.field("values")
    counts = np.asarray(counted.field("counts"), dtype=np.int64)
    order = np.argsort(-counts, kind="stable")
    inferred = infer_type(distinct)
    lengths = pc.mean(pc.utf8_length(values)).as_py()
    col = ColumnProfile(
        source=source,
        name=name,
        type=inferred.type,
        rows=len(values),
        nulls=values.null_count,
        distinct=len(distinct),
        formats=inferred.formats,
        decimals=inferred.decimals,
        mean_length=float(lengths or 0.0),
    )
    if len(distinct) <= MAX_LISTED:
        col.values = [str(v) for v in distinct.take(pa.array(order)).to_pylist()]
    if col.type in ("integer", "number"):
        _numeric_stats(col, distinct, counts)
    elif col.type in ("date", "datetime"):
        _temporal_stats(col, distinct)
    return col


def profile_table(table: pa.Table) -> TableProfile:
    """Profile every column of an all-text table (source headers as column names)."""
    names = unique_names(table.column_names)
    columns = []
    for header, name in zip(table.column_names, names, strict=True):
        columns.append(profile_column(header, name, table[header]))
        log.debug("profiled %s (%s)", name, columns[-1].type)
    log.info("profiled %d columns over %d rows", len(columns), table.num_rows)
    return TableProfile(table.num_rows, columns, key_candidates(table, columns))

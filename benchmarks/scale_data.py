"""Input files of the scale benchmark (``bench_scale.py``): the generated source, its
1 %-changed copy, and the filter values the portal load test uses.

- ``changed_copy``: the same file with a fixed share of its rows altered, for timing an
  incremental republish. Which rows change is decided by the seed alone (exactly
  ``round(rows * share)`` of them, at least one), and each chosen row's ``column``
  (a timestamp, ``UpdatedDate`` for 311: what a real refresh moves) goes forward one
  day, written back in the format it was read in (an empty value starts from
  ``fallback``, the creation time). Every other byte of the row is as it was: the keys
  stay, so the rows are updates, not inserts. Streamed in Arrow batches (flat memory).
- ``filter_pairs``: the most common (request type, council district) pairs of the file,
  the filters residents use on the portal.

Pure Arrow and NumPy, no civicflow import: the test runs it on tiny files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

#: the write options of ``civicflow.synth`` (every value quoted): unchanged rows keep
#: their bytes
WRITE_OPTIONS = pacsv.WriteOptions(quoting_style="needed")
BLOCK_BYTES = 16 << 20
STEP = timedelta(days=1)


def _names(path: Path) -> list[str]:
    with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)) as reader:
        return list(reader.schema.names)


def _reader(path: Path, include: Sequence[str] | None = None) -> pacsv.CSVStreamingReader:
    """Every column as text, empty values as empty strings (nothing re-typed)."""
    names = list(include) if include is not None else _names(path)
    return pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            include_columns=names,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def count_rows(path: Path) -> int:
    first = _names(path)[0]
    with _reader(path, [first]) as reader:
        return sum(batch.num_rows for batch in reader)


def changed_rows(rows: int, share: float, seed: int) -> np.ndarray:
    """The sorted row numbers a ``share`` of ``rows`` changes, from the seed alone."""
    if rows <= 0:
        return np.array([], dtype=np.int64)
    k = min(rows, max(1, round(rows * share)))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rows, size=k, replace=False)).astype(np.int64)


def _moved(value: str, formats: Sequence[str]) -> str | None:
    """``value`` one STEP later in its own format; None if no format reads it."""
    for fmt in formats:
        try:
            when = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return (when + STEP).strftime(fmt)
    return None


def changed_copy(
    source: Path,
    out: Path,
    *,
    column: str,
    formats: Sequence[str],
    seed: int,
    share: float = 0.01,
    fallback: str | None = None,
) -> int:
    """Write ``source`` to ``out`` with ``share`` of its rows' ``column`` one day later;
    returns how many rows changed. Written to a temporary name, then renamed."""
    chosen = changed_rows(count_rows(source), share, seed)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    changed = 0
    offset = 0
    try:
        with _reader(source) as reader:
            schema = reader.schema
            if column not in schema.names or (fallback and fallback not in schema.names):
                raise ValueError(f"{source}: no column {column!r} (or {fallback!r})")
            at = schema.get_field_index(column)
            with pacsv.CSVWriter(tmp, schema, write_options=WRITE_OPTIONS) as writer:
                for batch in reader:
                    n = batch.num_rows
                    lo, hi = np.searchsorted(chosen, [offset, offset + n])
                    local = chosen[lo:hi] - offset
                    if len(local):
                        batch = _change(batch, at, local, formats, fallback)
                        changed += len(local)
                    writer.write_batch(batch)
                    offset += n
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return changed


def _change(
    batch: pa.RecordBatch,
    at: int,
    local: np.ndarray,
    formats: Sequence[str],
    fallback: str | None,
) -> pa.RecordBatch:
    values = batch.column(at).take(pa.array(local)).to_pylist()
    starts = (
        batch.column(batch.schema.get_field_index(fallback)).take(pa.array(local)).to_pylist()
        if fallback
        else [""] * len(values)
    )
    new = []
    for value, start in zip(values, starts, strict=True):
        moved = _moved(value, formats) if value else None
        if moved is None and start:
            moved = _moved(start, formats)
        if moved is None:
            raise ValueError(f"row value {value!r} matches none of the formats {list(formats)}")
        new.append(moved)
    mask = np.zeros(batch.num_rows, dtype=bool)
    mask[local] = True
    column = pc.replace_with_mask(batch.column(at), pa.array(mask), pa.array(new, pa.string()))
    return batch.set_column(at, batch.schema.field(at), column)


def filter_pairs(
    source: Path, first: str, second: str, top: int = 40
) -> list[tuple[str, int, int]]:
    """The ``top`` most common (first, second as an integer, rows) pairs, most rows
    first (ties by value); rows where either is empty or ``second`` is not a whole
    number are left out."""
    with _reader(source, [first, second]) as reader:
        table = reader.read_all()
    whole = pc.match_substring_regex(table[second], r"^\d+$")
    keep = pc.and_(pc.not_equal(table[first], ""), whole)
    table = table.filter(keep)
    table = table.set_column(1, second, pc.cast(table[second], pa.int64()))
    counts = table.group_by([first, second]).aggregate([([], "count_all")])
    pairs = [
        (str(a), int(b), int(c))
        for a, b, c in zip(
            counts[first].to_pylist(),
            counts[second].to_pylist(),
            counts["count_all"].to_pylist(),
            strict=True,
        )
    ]
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return pairs[:top]

"""Synthetic source files at a city's sizes, shaped like a dataset's bundled raw file.

``civicflow bench generate --dataset ID --rows N --seed S`` (and the benchmarks) need
millions of rows that look like the department's export without repeating it: repeated
rows flatter every cache and make half the checks trivially equal. Each output row is a
real row of the bundled file drawn at random (so request types, departments, districts,
channels, missing coordinates and the rare bad rows keep their real shares and their
joint distribution), then

- its primary key is fresh and distinct (the source's prefix, numbers above its largest);
- every datetime field of the row is moved by one random offset within the year before
  the source's latest date, so the time to close (closed minus created) stays the row's
  own while the dates spread over a year, written back in the row's own source format.

Deterministic for a seed; vectorised with Arrow and NumPy, written in chunks so memory
stays flat in ``rows``. The output is a CSV with the source's headers, ready for
``civicflow publish ID --source FILE``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from civicflow.settings import Settings
from civicflow.sources import resolve_source_path
from civicflow.spec.models import CsvSource, DatasetSpec

CHUNK_ROWS = 200_000
SPREAD = timedelta(days=365)


class SynthError(ValueError):
    """The dataset cannot be generated from (names the spec key or file)."""


def _read_source(spec: DatasetSpec, settings: Settings) -> pa.Table:
    if not isinstance(spec.source, CsvSource):
        raise SynthError(f"{spec.id}: source.kind {spec.source.kind}: only csv sources generate")
    path = resolve_source_path(spec, settings)
    if not path.is_file():
        raise SynthError(f"{spec.id}: source.path {path} not found")
    header = pacsv.read_csv(path, read_options=pacsv.ReadOptions(skip_rows_after_names=10**9))
    types = {name: pa.string() for name in header.column_names}
    return pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )


def _key_maker(spec: DatasetSpec, values: pa.ChunkedArray) -> Callable[[int, int], pa.Array]:
    """Keys ``prefix + n`` for rows [start, stop), n above every number in the source."""
    found = pc.extract_regex(values, r"^(?P<prefix>.*?)(?P<number>\d+)$")
    if found.null_count:
        raise SynthError(
            f"{spec.id}: primary_key {spec.primary_key[0]}: values are not a prefix and a number"
        )
    prefixes = pc.unique(pc.struct_field(found, "prefix")).to_pylist()
    if len(prefixes) != 1:
        raise SynthError(f"{spec.id}: primary_key {spec.primary_key[0]}: more than one prefix")
    base = int(pc.max(pc.cast(pc.struct_field(found, "number"), pa.int64())).as_py()) + 1
    prefix = prefixes[0]

    def make(start: int, stop: int) -> pa.Array:
        numbers = pc.cast(pa.array(np.arange(base + start, base + stop)), pa.string())
        return pc.binary_join_element_wise(prefix, numbers, "") if prefix else numbers

    return make


def _two(values: pa.Array) -> pa.Array:
    return pc.utf8_lpad(pc.cast(values, pa.string()), 2, "0")


def _hour12(hours: pa.Array) -> pa.Array:
    """0-23 as on a 12-hour clock: 12, 1, ..., 11, 12, 1, ..., 11."""
    rest = pc.subtract(hours, pc.multiply(pc.divide(hours, 12), 12))  # integer division
    return pc.if_else(pc.equal(rest, 0), 12, rest)


#: each token from the timestamp's parts, vectorised (Arrow's strftime is ~10x slower)
_TOKENS: dict[str, Callable[[pa.Array], pa.Array]] = {
    "%Y": lambda t: pc.utf8_lpad(pc.cast(pc.year(t), pa.string()), 4, "0"),
    "%m": lambda t: _two(pc.month(t)),
    "%d": lambda t: _two(pc.day(t)),
    "%H": lambda t: _two(pc.hour(t)),
    "%I": lambda t: _two(_hour12(pc.hour(t))),
    "%M": lambda t: _two(pc.minute(t)),
    "%S": lambda t: _two(pc.second(t)),
    "%p": lambda t: pc.if_else(pc.less(pc.hour(t), 12), "AM", "PM"),
}


def _format(moved: pa.Array, fmt: str) -> pa.Array:
    """``strftime(moved, fmt)``: by parts where every token is one of ``_TOKENS``."""
    pieces = re.split(r"(%.)", fmt)
    if any(p.startswith("%") and p not in _TOKENS for p in pieces):
        return pc.strftime(moved, format=fmt)
    parts = [_TOKENS[p](moved) if p.startswith("%") else pa.scalar(p) for p in pieces if p != ""]
    return pc.binary_join_element_wise(*parts, "")


def _shift(column: pa.Array, formats: list[str], offsets: pa.Array) -> pa.Array:
    """Each value moved by its row's offset, written back in the format it was in."""
    out = column
    for fmt in formats:
        parsed = pc.strptime(column, format=fmt, unit="s", error_is_null=True)
        if parsed.null_count == len(parsed):
            continue
        moved = pc.add(parsed, offsets)
        text = _format(moved, fmt)
        out = pc.if_else(pc.is_valid(parsed), text, out)
    return out


def generate(
    spec: DatasetSpec,
    settings: Settings,
    rows: int,
    seed: int,
    out: Path,
    on_chunk: Callable[[int], None] | None = None,
) -> Path:
    """Write ``rows`` synthetic rows of ``spec``'s source to ``out`` (CSV); returns ``out``."""
    if rows < 1:
        raise SynthError(f"--rows {rows}: at least 1")
    if len(spec.primary_key) != 1:
        raise SynthError(f"{spec.id}: primary_key: generation needs a one-column key")
    source = _read_source(spec, settings)
    key_field = spec.field(spec.primary_key[0])
    key_name = key_field.source or key_field.name
    make_keys = _key_maker(spec, source[key_name])
    formats = (spec.source.timestamp_formats if isinstance(spec.source, CsvSource) else None) or []
    dated = [f.source or f.name for f in spec.fields if f.type in ("datetime", "date") and formats]
    rng = np.random.default_rng(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    options = pacsv.WriteOptions(quoting_style="needed")
    with pacsv.CSVWriter(out, source.schema, write_options=options) as writer:
        for start in range(0, rows, CHUNK_ROWS):
            stop = min(rows, start + CHUNK_ROWS)
            picked = source.take(pa.array(rng.integers(0, source.num_rows, stop - start)))
            seconds = rng.integers(-int(SPREAD.total_seconds()), 1, stop - start)
            offsets = pa.array(seconds.astype("timedelta64[s]"), type=pa.duration("s"))
            columns = []
            for name in source.column_names:
                column = picked[name].combine_chunks()
                if name == key_name:
                    column = make_keys(start, stop)
                elif name in dated:
                    column = _shift(column, formats, offsets)
                columns.append(column)
            writer.write_table(pa.Table.from_arrays(columns, schema=source.schema))
            if on_chunk is not None:
                on_chunk(stop)
    return out


def pattern_of(fmt: str) -> re.Pattern[str]:
    """A regex a value written with ``fmt`` matches (for tests of the written formats)."""
    parts = {"%m": r"\d{2}", "%d": r"\d{2}", "%Y": r"\d{4}", "%I": r"\d{2}", "%H": r"\d{2}"}
    parts |= {"%M": r"\d{2}", "%S": r"\d{2}", "%p": "(AM|PM)"}
    regex = re.escape(fmt)
    for token, sub in parts.items():
        regex = regex.replace(re.escape(token), sub)
    return re.compile(f"^{regex}$")

"""CSV drops: read with Arrow's multithreaded parser, every column as text.

Types are applied afterwards by ``cast.py`` so a bad value becomes a reported type
error at a known row instead of an unreadable file.
"""

from __future__ import annotations

import codecs
import csv as pycsv
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from civicflow.sources.base import ExtractError, register_source
from civicflow.spec.models import CsvSource, DatasetSpec

_CHUNK = 1 << 20


def check_encoding(path: Path, encoding: str) -> None:
    """Fail with the line and byte of the first undecodable byte (streamed, bounded memory)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    line = 1
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad = offset + exc.start
                line += chunk[: exc.start].count(b"\n")
                raise ExtractError(
                    f"{path}: not valid {encoding} text: byte 0x{chunk[exc.start]:02x} at offset {bad} (line {line})"
                ) from None
            offset += len(chunk)
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ExtractError(
                f"{path}: not valid {encoding} text: file ends inside a multi-byte character (line {line})"
            ) from None


def read_header(path: Path, source: CsvSource) -> list[str]:
    with path.open(encoding=source.encoding, newline="") as fh:
        try:
            header = next(pycsv.reader(fh, delimiter=source.delimiter))
        except StopIteration:
            raise ExtractError(f"{path}: file is empty (no header row)") from None
    if not any(h.strip() for h in header):
        raise ExtractError(f"{path}: the header row is blank")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        # Positions in public: a file whose header row is missing has data in it.
        positions = [str(i) for i, h in enumerate(header, 1) if h in dupes]
        raise ExtractError(
            f"{path}: duplicate column headers at positions {', '.join(positions)}",
            detail=f"duplicate headers: {', '.join(repr(d) for d in dupes)}",
        )
    return header


def _locate(path: Path, row: pacsv.InvalidRow, encoding: str) -> str:
    """Physical line of a malformed row. Arrow's parallel parser does not know it, so
    scan for the row's text; this runs only on the error path."""
    if row.number is not None:
        return str(row.number)
    with path.open(encoding=encoding, newline="") as fh:
        for number, line in enumerate(fh, 1):
            if line.rstrip("\r\n") == row.text:
                return str(number)
    return "?"


@register_source("csv")
class CsvReader:
    suffix = ".csv"

    def read(self, spec: DatasetSpec, raw_path: Path) -> pa.Table:
        ragged: list[pacsv.InvalidRow] = []
        options = _options(spec, raw_path, ragged)
        try:
            table = pacsv.read_csv(raw_path, **options)
        except pa.ArrowInvalid as exc:
            raise _unreadable(raw_path, exc) from None
        _check_rows(spec, raw_path, ragged, table.num_rows)
        return table

    def read_batches(self, spec: DatasetSpec, raw_path: Path, rows: int) -> Iterator[pa.Table]:
        """The file as tables of ``rows`` rows (the last may be shorter), parsed as it is
        read: memory holds a batch, not the file. A malformed row is found when its
        block is parsed, so the error comes when the batches end (the caller has not
        published anything yet): the same ExtractError as ``read``."""
        ragged: list[pacsv.InvalidRow] = []
        # Arrow's streaming reader parses about 32 blocks ahead: small blocks bound that
        options = _options(spec, raw_path, ragged, block_size=1 << 20)
        seen = 0
        pending: list[pa.RecordBatch] = []
        held = 0
        try:
            reader = pacsv.open_csv(raw_path, **options)
            for batch in reader:
                pending.append(batch)
                held += batch.num_rows
                while held >= rows:
                    # chunked, not combined: no copy of the rows, and nothing kept of
                    # a batch once it is handed on but the rows after it
                    table = pa.Table.from_batches(pending)
                    yield table.slice(0, rows)
                    seen += rows
                    rest = table.slice(rows)
                    pending, held = rest.to_batches(), rest.num_rows
        except pa.ArrowInvalid as exc:
            raise _unreadable(raw_path, exc) from None
        if held or not seen:
            schema = reader.schema if not pending else None
            last = pa.Table.from_batches(pending, schema=schema)
            _check_rows(spec, raw_path, ragged, seen + last.num_rows)
            yield last
        else:
            _check_rows(spec, raw_path, ragged, seen)


def _options(
    spec: DatasetSpec, raw_path: Path, ragged: list[pacsv.InvalidRow], block_size: int = 8 << 20
) -> dict[str, Any]:
    """Arrow's CSV options for the spec's source, every column as text; malformed rows
    are collected into ``ragged`` (and reported by ``_check_rows``)."""
    source = spec.source
    assert isinstance(source, CsvSource)
    if raw_path.stat().st_size == 0:
        raise ExtractError(f"{raw_path}: file is empty")
    check_encoding(raw_path, source.encoding)
    header = read_header(raw_path, source)

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        ragged.append(row)
        return "skip"

    return {
        "read_options": pacsv.ReadOptions(
            encoding=source.encoding, column_names=header, skip_rows=1, block_size=block_size
        ),
        "parse_options": pacsv.ParseOptions(
            delimiter=source.delimiter,
            newlines_in_values=True,
            invalid_row_handler=on_invalid_row,
        ),
        "convert_options": pacsv.ConvertOptions(
            column_types={h: pa.string() for h in header},
            null_values=source.null_values,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    }


def _unreadable(raw_path: Path, exc: pa.ArrowInvalid) -> ExtractError:
    # Arrow's message can quote the row's text: only the report keeps it.
    row = re.search(r"Row #(\d+)", str(exc))
    where = f" at row {row.group(1)}" if row else ""
    return ExtractError(
        f"{raw_path}: unreadable CSV{where} (the parser's message is in the run report)",
        detail=str(exc),
    )


def _check_rows(
    spec: DatasetSpec, raw_path: Path, ragged: list[pacsv.InvalidRow], rows: int
) -> None:
    """Refuse a file with malformed rows (naming their lines) or without data rows."""
    source = spec.source
    assert isinstance(source, CsvSource)
    if ragged:
        described = [
            f"line {_locate(raw_path, row, source.encoding)}: expected {row.expected_columns} columns, got {row.actual_columns}"
            for row in ragged[:5]
        ]
        shown = "; ".join(described) + (f"; and {len(ragged) - 5} more" if len(ragged) > 5 else "")
        raise ExtractError(
            f"{raw_path}: {len(ragged)} malformed row(s) (truncated or extra fields): {shown}"
        )
    if rows == 0:
        raise ExtractError(f"{raw_path}: has a header but no data rows")

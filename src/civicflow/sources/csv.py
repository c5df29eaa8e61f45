"""CSV drops: read with Arrow's multithreaded parser, every column as text.

Types are applied afterwards by ``cast.py`` so a bad value becomes a reported type
error at a known row instead of an unreadable file.
"""

from __future__ import annotations

import codecs
import csv as pycsv
import re
from pathlib import Path

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
        source = spec.source
        assert isinstance(source, CsvSource)
        if raw_path.stat().st_size == 0:
            raise ExtractError(f"{raw_path}: file is empty")
        check_encoding(raw_path, source.encoding)
        header = read_header(raw_path, source)

        ragged: list[pacsv.InvalidRow] = []

        def on_invalid_row(row: pacsv.InvalidRow) -> str:
            ragged.append(row)
            return "skip"

        try:
            table = pacsv.read_csv(
                raw_path,
                read_options=pacsv.ReadOptions(
                    encoding=source.encoding, column_names=header, skip_rows=1, block_size=8 << 20
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=source.delimiter,
                    newlines_in_values=True,
                    invalid_row_handler=on_invalid_row,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={h: pa.string() for h in header},
                    null_values=source.null_values,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
        except pa.ArrowInvalid as exc:
            # Arrow's message can quote the row's text: only the report keeps it.
            row = re.search(r"Row #(\d+)", str(exc))
            where = f" at row {row.group(1)}" if row else ""
            raise ExtractError(
                f"{raw_path}: unreadable CSV{where} (the parser's message is in the run report)",
                detail=str(exc),
            ) from None
        if ragged:
            described = [
                f"line {_locate(raw_path, row, source.encoding)}: expected {row.expected_columns} columns, got {row.actual_columns}"
                for row in ragged[:5]
            ]
            shown = "; ".join(described) + (
                f"; and {len(ragged) - 5} more" if len(ragged) > 5 else ""
            )
            raise ExtractError(
                f"{raw_path}: {len(ragged)} malformed row(s) (truncated or extra fields): {shown}"
            )
        if table.num_rows == 0:
            raise ExtractError(f"{raw_path}: has a header but no data rows")
        return table

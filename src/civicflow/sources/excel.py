"""Excel workbooks (.xlsx): one sheet by name, a header row, title and footer rows skipped.

openpyxl reads the sheet in read-only mode (streamed, one row at a time) with the
values Excel last computed (``data_only``). Every value comes out as the text the
shared casting reads (``cast.py``): whole numbers as ``12`` (Excel stores every number
as a float), dates as ``2024-05-01``, date-times as ``2024-05-01T13:45:00``, booleans
as ``true``/``false``, empty cells as null. Rows are turned into Arrow columns a batch
at a time, so Python holds at most one batch of cell values.

What a steward must fix is refused, naming the sheet and the cell (``B7``): a missing
sheet, a blank or duplicated header, merged cells in the header or data rows (read-only
mode keeps only a merge's first value, the others would silently be empty), Excel error
values (``#REF!``, ``#DIV/0!``, ...) and values in a column without a header. Public
messages name a column by its letter, and by its header only when the spec declares
that header (a misplaced ``header_row`` may point at a row of residents' data).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from openpyxl import load_workbook
from openpyxl.utils.cell import coordinate_to_tuple, get_column_letter, range_boundaries
from openpyxl.utils.exceptions import InvalidFileException

from civicflow.sources.base import ExtractError, register_source
from civicflow.spec.models import DatasetSpec, ExcelSource

log = logging.getLogger(__name__)

#: the values Excel shows for a formula that failed (and newer dynamic-array ones)
ERROR_CODES = (
    "#NULL!",
    "#DIV/0!",
    "#VALUE!",
    "#REF!",
    "#NAME?",
    "#NUM!",
    "#N/A",
    "#GETTING_DATA",
    "#SPILL!",
    "#CALC!",
)
_ERRORS = pa.array(ERROR_CODES)
_BATCH_ROWS = 50_000
_SHOWN = 5
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls (97-2003) and encrypted .xlsx
# <mergeCell ref="B3:C3"/>, with or without a namespace prefix
_MERGE = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="([A-Z]{1,3}[0-9]+(?::[A-Z]{1,3}[0-9]+)?)"')
# <c r="C7"><f>SUM(C1:C6)</f><v/></c>: a formula and no value (or an empty one)
_NS = rb"(?:\w+:)?"
_UNCOMPUTED = re.compile(
    rb"<" + _NS + rb"c\b([^>]*)>\s*<" + _NS + rb"f\b[^>]*?(?:/>|>[^<]*</" + _NS + rb"f>)\s*"
    rb"(?:<" + _NS + rb"v\s*/>|<" + _NS + rb"v>\s*</" + _NS + rb"v>)?\s*</" + _NS + rb"c>"
)
_CELL_REF = re.compile(rb'\br="([A-Z]{1,3}[0-9]+)"')
_CELL_TYPE = re.compile(rb'\bt="(\w+)"')
_FORMULA_TAGS = (b"<f>", b"<f ", b"<f/", b":f>", b":f ", b":f/")
_SCAN_TAIL = 8192


# -- values ---------------------------------------------------------------------------


def cell_text(value: Any) -> str | None:
    """One cell's value as the text the shared casting reads (None stays null)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, dt.time):
        return value.strftime("%H:%M:%S")
    return str(value)  # timedelta (a duration format) and anything newer


def _column_text(values: Iterable[Any]) -> pa.Array:
    # Most cells are text or empty: skip the call for those (this is the per-cell loop).
    return pa.array(
        [v if v is None or v.__class__ is str else cell_text(v) for v in values], pa.string()
    )


# -- where things are -----------------------------------------------------------------


@dataclass
class SheetPlace:
    """Names cells and columns of one sheet for messages (public and private)."""

    path: Path
    sheet: str
    header_row: int
    headers: list[str] = field(default_factory=list)
    declared: frozenset[str] = frozenset()

    def where(self) -> str:
        return f"{self.path}: sheet {self.sheet!r}"

    def column(self, index: int) -> str:
        """``column B`` or ``column B (Passenger_Count)`` when the spec declares that header."""
        letter = get_column_letter(index + 1)
        header = self.headers[index] if index < len(self.headers) else None
        return f"column {letter} ({header})" if header in self.declared else f"column {letter}"

    def cell(self, index: int, sheet_row: int) -> str:
        return f"{get_column_letter(index + 1)}{sheet_row}"


def _listed(items: Sequence[str], total: int) -> str:
    more = f" and {total - len(items)} more" if total > len(items) else ""
    return ", ".join(items) + more


# -- opening the workbook ---------------------------------------------------------------


def _not_a_workbook(path: Path, exc: Exception) -> ExtractError:
    with path.open("rb") as fh:
        magic = fh.read(len(_OLE2_MAGIC))
    hint = (
        "it is an old Excel 97-2003 .xls file or a password-protected workbook; save it "
        "as an unprotected .xlsx"
        if magic == _OLE2_MAGIC
        else "it is not an .xlsx workbook (a zip of sheets); save it from Excel as .xlsx"
    )
    return ExtractError(
        f"{path}: cannot be opened as an Excel workbook: {hint}",
        detail=f"{type(exc).__name__}: {exc}",
    )


@dataclass
class SheetXml:
    """What read-only mode does not tell: merged ranges, and formula cells that hold no
    computed value (a workbook saved by a program that does not calculate, such as
    openpyxl: ``data_only`` would read them as empty)."""

    merges: list[str] = field(default_factory=list)
    uncomputed: list[str] = field(default_factory=list)

    def take(self, buf: bytes, upto: int | None) -> None:
        """Record the tags that start in ``buf`` before ``upto`` (None: all of them)."""
        for m in _MERGE.finditer(buf):
            if upto is None or m.start() < upto:
                self.merges.append(m.group(1).decode())
        if not any(tag in buf for tag in _FORMULA_TAGS):
            return  # most chunks: values only, no formula to look at
        for m in _UNCOMPUTED.finditer(buf):
            attrs = m.group(1)
            ref, kind = _CELL_REF.search(attrs), _CELL_TYPE.search(attrs)
            # t="str" with an empty <v>: a formula whose computed value is ""
            if (upto is None or m.start() < upto) and ref and not (kind and kind[1] == b"str"):
                self.uncomputed.append(ref.group(1).decode())


def scan_sheet_xml(path: Path, part: str) -> SheetXml:
    """Stream the sheet's XML part once and scan it for merges and uncomputed formulas:
    cheaper than a second, non-read-only parse of the whole sheet. A tag cut by a chunk
    boundary is found in the next round, which starts with the previous chunk's tail."""
    found = SheetXml()
    tail = b""
    with zipfile.ZipFile(path) as archive, archive.open(part) as fh:
        while chunk := fh.read(1 << 20):
            buf = tail + chunk
            cut = max(0, len(buf) - _SCAN_TAIL)
            found.take(buf, cut)
            tail = buf[cut:]
    found.take(tail, None)
    return found


# -- reading ---------------------------------------------------------------------------


@dataclass
class SheetRows:
    """A sheet's data as Arrow columns, with what must be checked once the end is known."""

    columns: list[list[pa.Array]]
    rows: int = 0  # data rows read (blank trailing ones included)
    last_filled: int = 0  # the last data row holding any value
    errors: list[tuple[int, int, str]] = field(default_factory=list)  # (col, data row, code)
    error_rows: list[pa.Array] = field(default_factory=list)  # every error's data row, to count
    outside: list[tuple[int, int]] = field(default_factory=list)  # (col, data row)


def read_header(place: SheetPlace, row: Sequence[Any], merges: list[str]) -> list[str]:
    """The header cells up to the last filled one; a merged, blank or duplicate one is refused."""
    texts = [cell_text(v) for v in row]
    while texts and (texts[-1] is None or not texts[-1].strip()):
        texts.pop()
    place.headers = [t or "" for t in texts]
    check_header_merges(place, merges)
    r = place.header_row
    if not texts:
        raise ExtractError(f"{place.where()}: header row {r} is blank (source.header_row)")
    blank = [place.cell(i, r) for i, t in enumerate(texts) if t is None or not t.strip()]
    if blank:
        raise ExtractError(
            f"{place.where()}: empty column header in {_listed(blank[:_SHOWN], len(blank))} "
            f"(header row {r}); every column with data needs a header"
        )
    headers = place.headers
    dupes = sorted({h for h in headers if headers.count(h) > 1})
    if dupes:
        cells = [place.cell(i, r) for i, h in enumerate(headers) if h in dupes]
        raise ExtractError(
            f"{place.where()}: duplicate column headers in {', '.join(cells)} (header row {r})",
            detail=f"duplicate headers: {', '.join(repr(d) for d in dupes)}",
        )
    return headers


def _add_batch(data: SheetRows, batch: list[Sequence[Any]], width: int) -> None:
    """Turn a batch of rows into one Arrow array per column and note what to check."""
    first = data.rows + 1
    for offset, row in enumerate(batch):
        if any(v is not None and v != "" for v in row):
            data.last_filled = first + offset
        if len(row) > width:
            data.outside += [
                (width + i, first + offset) for i, v in enumerate(row[width:]) if v is not None
            ]
    padded = [tuple(row[:width]) + (None,) * (width - len(row)) for row in batch]
    for index, values in enumerate(zip(*padded, strict=True)):
        array = _column_text(values)
        bad = pc.indices_nonzero(pc.fill_null(pc.is_in(array, value_set=_ERRORS), False))
        data.errors += [
            (index, first + int(i), str(array[int(i)].as_py())) for i in bad.to_pylist()[:_SHOWN]
        ]
        data.error_rows.append(pc.add(bad, first))
        data.columns[index].append(array)
    data.rows += len(batch)


def read_rows(rows: Iterator[Sequence[Any]], width: int) -> SheetRows:
    data = SheetRows(columns=[[] for _ in range(width)])
    batch: list[Sequence[Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == _BATCH_ROWS:
            _add_batch(data, batch, width)
            batch = []
            log.debug("read %s rows", f"{data.rows:,}")
    if batch:
        _add_batch(data, batch, width)
    return data


# -- checks once the data rows are known ------------------------------------------------


def _merged(place: SheetPlace, merges: list[str], first: int, last: int) -> list[str]:
    """The merged ranges overlapping sheet rows ``first``..``last``, with their column."""
    hits = []
    for ref in merges:
        min_col, min_row, _, max_row = range_boundaries(ref)
        if min_col and min_row and max_row and min_row <= last and max_row >= first:
            hits.append(f"{ref} ({place.column(min_col - 1)})")
    return hits


def check_header_merges(place: SheetPlace, merges: list[str]) -> None:
    """Merged header cells are refused: the columns after the first would have no header."""
    hits = _merged(place, merges, place.header_row, place.header_row)
    if hits:
        raise ExtractError(
            f"{place.where()}: merged header cells {_listed(hits[:_SHOWN], len(hits))} "
            f"in header row {place.header_row}; unmerge them so each column has its own header"
        )


def check_data_merges(place: SheetPlace, merges: list[str], last: int) -> None:
    """Merged data cells are refused (titles and footers may merge): read-only mode keeps
    a merge's first value only, the other cells would silently be empty."""
    hits = _merged(place, merges, place.header_row + 1, place.header_row + last)
    if hits:
        raise ExtractError(
            f"{place.where()}: merged cells in the data rows {_listed(hits[:_SHOWN], len(hits))}: "
            "only a merge's first cell holds the value; unmerge them and fill every cell"
        )


def check_uncomputed(place: SheetPlace, refs: list[str], last: int) -> None:
    """Formulas without a computed value in data rows would read as empty cells: refused."""
    first_row, last_row = place.header_row + 1, place.header_row + last
    hits = []
    for ref in refs:
        col, row = coordinate_to_tuple(ref)[::-1]
        if first_row <= row <= last_row:
            hits.append(f"{ref} ({place.column(col - 1)})")
    if hits:
        raise ExtractError(
            f"{place.where()}: formulas without a computed value in "
            f"{_listed(hits[:_SHOWN], len(hits))}: the workbook was saved by a program that "
            "does not calculate; open and save it in Excel or LibreOffice"
        )


def check_values(place: SheetPlace, data: SheetRows, last: int) -> None:
    """Excel error values and values without a header, in data rows only (not the footer)."""
    row0 = place.header_row  # sheet row of data row n is row0 + n
    errors = sorted((r, c, code) for c, r, code in data.errors if r <= last)
    if errors:
        count = sum(pc.sum(pc.less_equal(rows, last)).as_py() or 0 for rows in data.error_rows)
        shown = [f"{place.cell(c, row0 + r)} ({place.column(c)}): {code}" for r, c, code in errors]
        raise ExtractError(
            f"{place.where()}: Excel error values in {_listed(shown[:_SHOWN], count)}; "
            "fix the formulas (or clear the cells) and export again"
        )
    outside = [(c, r) for c, r in data.outside if r <= last]
    if outside:
        cells = [place.cell(c, row0 + r) for c, r in outside]
        raise ExtractError(
            f"{place.where()}: values in {_listed(cells[:_SHOWN], len(cells))}, right of the "
            f"last column header ({get_column_letter(len(place.headers))}{row0}); give their "
            "column a header or clear them"
        )


def to_table(source: ExcelSource, place: SheetPlace, data: SheetRows, last: int) -> pa.Table:
    nulls = pa.array([v for v in source.null_values if v is not None], pa.string())
    columns = {}
    for name, chunks in zip(place.headers, data.columns, strict=True):
        values = pa.chunked_array(chunks, pa.string()).slice(0, last)
        # null_values as for a CSV ("" by default): an empty text cell is an empty value
        columns[name] = pc.if_else(pc.is_in(values, value_set=nulls), None, values)
    return pa.table(columns)


# -- the source -------------------------------------------------------------------------


def read_sheet(spec: DatasetSpec, raw_path: Path) -> pa.Table:
    source = spec.source
    assert isinstance(source, ExcelSource)
    declared = frozenset(f.source_name for f in spec.fields)
    place = SheetPlace(raw_path, source.sheet, source.header_row, declared=declared)
    try:
        with warnings.catch_warnings():
            # openpyxl warns about unsupported extensions and, quoting a cell's value,
            # about dates out of range (the cell becomes #VALUE!, which is reported).
            warnings.simplefilter("ignore")
            book = load_workbook(raw_path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise _not_a_workbook(raw_path, exc) from None
    try:
        if source.sheet not in book.sheetnames:
            raise ExtractError(
                f"{raw_path}: no sheet {source.sheet!r} (source.sheet); the workbook has "
                + ", ".join(repr(s) for s in book.sheetnames)
            )
        sheet = book[source.sheet]
        if not hasattr(sheet, "iter_rows"):
            raise ExtractError(f"{place.where()} is a chart sheet, not a sheet of cells")
        sheet.reset_dimensions()  # a stale <dimension> tag would cut rows off: read them all
        xml = scan_sheet_xml(raw_path, sheet._worksheet_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = sheet.iter_rows(min_row=source.header_row, values_only=True)
            header = next(rows, None)
            if header is None:
                raise ExtractError(
                    f"{place.where()}: has no row {source.header_row} (source.header_row)"
                )
            width = len(read_header(place, header, xml.merges))
            data = read_rows(rows, width)
    finally:
        book.close()
    last = data.last_filled - source.footer_rows
    check_data_merges(place, xml.merges, last)
    check_uncomputed(place, xml.uncomputed, last)
    check_values(place, data, last)
    if last <= 0:
        raise ExtractError(
            f"{place.where()}: has a header but no data rows"
            + (f" (after dropping {source.footer_rows} footer rows)" if source.footer_rows else "")
        )
    log.info("%s: %s data rows, %d columns", place.where(), f"{last:,}", width)
    return to_table(source, place, data, last)


@register_source("excel")
class ExcelReader:
    suffix = ".xlsx"

    def read(self, spec: DatasetSpec, raw_path: Path) -> pa.Table:
        return read_sheet(spec, raw_path)

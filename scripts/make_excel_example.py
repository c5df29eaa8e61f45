"""Generate the bundled Excel example: LAX passenger traffic as a department's workbook.

Reads the real LAX export in data/lax_passenger_traffic/ and writes
data/lax_passenger_workbook/lax_passenger_traffic_by_year.xlsx, shaped like the
spreadsheet a department mails every month: one sheet per year with a merged title
row, a note, a blank row, the header, one row per month, terminal, direction and
domestic/international, then a blank row, a totals row and a source note (the
footer). Dates are real Excel dates, counts real numbers.

The output is byte-for-byte deterministic (fixed document timestamps and zip entry
times), so re-running the script changes nothing in git unless the input changed:

    .venv/bin/python scripts/make_excel_example.py
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "data" / "lax_passenger_traffic" / "lax_passenger_traffic_by_terminal.csv"
OUTPUT = ROOT / "data" / "lax_passenger_workbook" / "lax_passenger_traffic_by_year.xlsx"
HEADER = ["Month", "Terminal", "Arrival/Departure", "Domestic/International", "Passengers"]
STAMP = datetime(2014, 5, 1)  # the export's extract date, as every timestamp in the file


def read_rows(path: Path) -> dict[int, list[tuple[datetime, str, str, str, int]]]:
    """The export's rows grouped by year, sorted by month, terminal and the two splits."""
    years: dict[int, list[tuple[datetime, str, str, str, int]]] = defaultdict(list)
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            month = datetime.strptime(row["ReportPeriod"], "%m/%d/%Y %I:%M:%S %p")
            years[month.year].append(
                (
                    month,
                    row["Terminal"],
                    row["Arrival_Departure"],
                    row["Domestic_International"],
                    int(row["Passenger_Count"]),
                )
            )
    return {year: sorted(rows) for year, rows in sorted(years.items())}


def add_year(book: Workbook, year: int, rows: list[tuple[datetime, str, str, str, int]]) -> None:
    sheet = book.create_sheet(str(year))
    sheet["A1"] = f"Los Angeles International Airport: passengers by terminal, {year}"
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.merge_cells("A1:E1")  # a merged title: allowed above the header
    sheet["A2"] = "Los Angeles World Airports, monthly report (counts as reported by LAWA)"
    sheet.append([])
    sheet.append(HEADER)
    for cell in sheet[4]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append(list(row))
        sheet.cell(sheet.max_row, 1).number_format = "mmm yyyy"
    sheet.append([])
    sheet.append(["Total", None, None, None, sum(r[4] for r in rows)])
    sheet.append(["Source: data.lacity.org export of 2014-05-01 (see SOURCE.md)"])
    for column, width in zip("ABCDE", (12, 36, 18, 22, 12), strict=True):
        sheet.column_dimensions[column].width = width
    sheet.freeze_panes = "A5"


def deterministic(xlsx: bytes) -> bytes:
    """The same workbook with fixed document timestamps and zip entry times."""
    fixed = STAMP.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(xlsx)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dest,
    ):
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(
                    rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>" + fixed, data
                )
            entry = zipfile.ZipInfo(info.filename, date_time=STAMP.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            dest.writestr(entry, data)
    return out.getvalue()


def main() -> None:
    book = Workbook()
    book.remove(book.active)
    for year, rows in read_rows(SOURCE).items():
        add_year(book, year, rows)
    book.properties.creator = "Los Angeles World Airports (derived by civicflow)"
    book.properties.created = STAMP
    buffer = io.BytesIO()
    book.save(buffer)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_bytes(deterministic(buffer.getvalue()))
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({OUTPUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()

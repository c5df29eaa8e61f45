"""Excel sources: real .xlsx workbooks written by openpyxl in each test, read through
``extract`` as a run reads them; each bad case names the sheet, the cell and the column.

The bundled example (data/lax_passenger_workbook) is published end to end to a real
Datasette portal and compared with the CSV it was derived from.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.chart import BarChart, Reference

from civicflow.pipeline import run_dataset
from civicflow.settings import Settings, load_settings
from civicflow.sources import ExtractError, extract
from civicflow.sources.excel import ERROR_CODES, cell_text
from civicflow.spec import find_dataset
from civicflow.spec.models import DatasetSpec

PROJECT = Path(__file__).resolve().parents[1]
SHEET = "Permits 2024"
HEADER = ["Permit", "Issued", "Fee", "Paid", "Applicant"]
# A resident's value that must never reach a public message.
SECRET = "Jane Q. Resident, 123 Main St"
FIELDS: list[dict[str, Any]] = [
    {"name": "permit", "source": "Permit", "type": "string", "description": "Permit number."},
    {"name": "issued", "source": "Issued", "type": "datetime", "description": "When issued."},
    {"name": "fee", "source": "Fee", "type": "number", "description": "Fee in dollars."},
    {"name": "paid", "source": "Paid", "type": "boolean", "description": "Whether paid."},
]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    return load_settings()


def make_spec(path: Path, **source: Any) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "id": "permits_xlsx",
            "title": "Building permits",
            "description": "Permits issued, from the department's workbook.",
            "department": "Building and Safety",
            "steward": {"name": "Steward", "email": "steward@lacity.example"},
            "license": "CC0-1.0",
            "update_frequency": "monthly",
            "category": "Housing",
            "source": {"kind": "excel", "path": str(path), "sheet": SHEET, **source},
            "fields": FIELDS,
        }
    )


def good_rows() -> list[list[Any]]:
    return [
        ["P-001", dt.datetime(2024, 1, 5, 13, 45), 120.0, True, SECRET],
        ["P-002", dt.date(2024, 2, 1), 99.5, False, None],
        ["P-003", dt.datetime(2024, 3, 9), 0, None, ""],
    ]


def workbook(
    path: Path,
    rows: list[list[Any]] | None = None,
    *,
    header: list[Any] | None = None,
    title: bool = True,
    footer: bool = True,
    merges: tuple[str, ...] = (),
) -> Path:
    """A department's sheet: merged title, note, blank row, header (row 4), rows, footer."""
    book = Workbook()
    book.active.title = "Read me"
    book.active["A1"] = "Instructions"
    sheet = book.create_sheet(SHEET)
    if title:
        sheet["A1"] = "Building permits issued, 2024"
        sheet.merge_cells("A1:E1")
        sheet["A2"] = "Prepared by the permit desk"
        sheet.append([])
    sheet.append(HEADER if header is None else header)
    for row in good_rows() if rows is None else rows:
        sheet.append(row)
    if footer:
        sheet.append([])
        sheet.append(["Total", None, "=SUM(C5:C7)"])
    for ref in merges:
        sheet.merge_cells(ref)
    book.save(path)
    return path


def extract_error(settings: Settings, spec: DatasetSpec) -> ExtractError:
    with pytest.raises(ExtractError) as caught:
        extract(spec, settings, "run-1")
    message = str(caught.value)
    assert SECRET not in message and "Jane" not in message
    return caught.value


# -- reading a good sheet ------------------------------------------------------------------


def test_title_rows_and_footer_are_skipped_and_values_come_out_typed(
    settings: Settings, tmp_path: Path
) -> None:
    path = workbook(tmp_path / "permits.xlsx")
    spec = make_spec(path, header_row=4, footer_rows=2)
    ext = extract(spec, settings, "run-1")
    assert ext.raw_path.suffix == ".xlsx"
    assert ext.raw_path.read_bytes() == path.read_bytes()
    assert ext.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ext.raw.column_names == HEADER
    assert ext.raw.to_pylist() == [
        {
            "Permit": "P-001",
            "Issued": "2024-01-05T13:45:00",
            "Fee": "120",
            "Paid": "true",
            "Applicant": SECRET,
        },
        {
            "Permit": "P-002",
            "Issued": "2024-02-01T00:00:00",
            "Fee": "99.5",
            "Paid": "false",
            "Applicant": None,
        },
        {
            "Permit": "P-003",
            "Issued": "2024-03-09T00:00:00",
            "Fee": "0",
            "Paid": None,
            "Applicant": None,
        },
    ]
    frame = ext.frame
    assert list(frame.index) == [1, 2, 3]
    assert frame.loc[1, "issued"] == pd.Timestamp("2024-01-05 13:45:00")
    assert frame["fee"].tolist() == [120.0, 99.5, 0.0]
    assert frame["paid"].tolist()[:2] == [True, False] and pd.isna(frame.loc[3, "paid"])


def test_trailing_blank_rows_are_not_footer_rows(settings: Settings, tmp_path: Path) -> None:
    path = workbook(tmp_path / "permits.xlsx", rows=[*good_rows(), [], [None, None]], footer=False)
    ext = extract(make_spec(path, header_row=4), settings, "run-1")
    assert ext.rows == 3


def test_a_blank_row_inside_the_data_is_kept_as_an_empty_row(
    settings: Settings, tmp_path: Path
) -> None:
    rows = good_rows()
    path = workbook(tmp_path / "permits.xlsx", rows=[rows[0], [], rows[1]], footer=False)
    ext = extract(make_spec(path, header_row=4), settings, "run-1")
    assert ext.raw.column("Permit").to_pylist() == ["P-001", None, "P-002"]


def test_cell_values_become_the_text_the_casting_reads() -> None:
    assert cell_text(12.0) == "12"
    assert cell_text(1e20) == "100000000000000000000"
    assert cell_text(0.1) == "0.1"
    assert cell_text(-3) == "-3"
    assert cell_text(True) == "true"
    assert cell_text(dt.datetime(2024, 5, 1, 8, 0, 1)) == "2024-05-01T08:00:01"
    assert cell_text(dt.date(2024, 5, 1)) == "2024-05-01"
    assert cell_text(dt.time(8, 30)) == "08:30:00"
    assert cell_text(None) is None


def test_header_row_one_and_no_footer_are_the_defaults(settings: Settings, tmp_path: Path) -> None:
    path = workbook(tmp_path / "permits.xlsx", title=False, footer=False)
    ext = extract(make_spec(path), settings, "run-1")
    assert ext.rows == 3 and ext.raw.column_names == HEADER


# -- bad workbooks: sheet, cell and column named --------------------------------------------


def test_a_missing_sheet_lists_the_sheets_there_are(settings: Settings, tmp_path: Path) -> None:
    path = workbook(tmp_path / "permits.xlsx")
    spec = make_spec(path, header_row=4).model_copy(
        update={"source": make_spec(path).source.model_copy(update={"sheet": "Permits 2025"})}
    )
    message = str(extract_error(settings, spec))
    assert "no sheet 'Permits 2025' (source.sheet)" in message
    assert "'Read me', 'Permits 2024'" in message
    assert "permits.xlsx" in message  # the file the steward gave, not the raw copy


def test_a_merged_header_names_sheet_cells_and_column(settings: Settings, tmp_path: Path) -> None:
    path = workbook(tmp_path / "permits.xlsx", merges=("B4:C4",))
    message = str(extract_error(settings, make_spec(path, header_row=4, footer_rows=2)))
    assert f"sheet {SHEET!r}" in message
    assert "merged header cells B4:C4 (column B (Issued))" in message
    assert "header row 4" in message


def test_a_merged_title_above_the_header_is_fine(settings: Settings, tmp_path: Path) -> None:
    path = workbook(tmp_path / "permits.xlsx", merges=("A2:E2",))
    assert extract(make_spec(path, header_row=4, footer_rows=2), settings, "run-1").rows == 3


def test_merged_data_cells_are_refused_not_read_as_empty(
    settings: Settings, tmp_path: Path
) -> None:
    path = workbook(tmp_path / "permits.xlsx", merges=("D5:D6",))
    message = str(extract_error(settings, make_spec(path, header_row=4, footer_rows=2)))
    assert f"sheet {SHEET!r}" in message
    assert "merged cells in the data rows D5:D6 (column D (Paid))" in message


@pytest.mark.parametrize("code", ["#REF!", "#DIV/0!", "#N/A", "#VALUE!", "#NAME?"])
def test_an_error_value_names_sheet_cell_column_and_code(
    settings: Settings, tmp_path: Path, code: str
) -> None:
    rows = good_rows()
    rows[2][2] = code  # C7: the third data row's Fee
    path = workbook(tmp_path / "permits.xlsx", rows=rows)
    message = str(extract_error(settings, make_spec(path, header_row=4, footer_rows=2)))
    assert f"sheet {SHEET!r}" in message
    assert f"Excel error values in C7 (column C (Fee)): {code}" in message


def test_error_values_in_undeclared_columns_name_the_column_by_letter_only(
    settings: Settings, tmp_path: Path
) -> None:
    rows = good_rows()
    rows[0][4] = "#REF!"
    path = workbook(tmp_path / "permits.xlsx", rows=rows)
    message = str(extract_error(settings, make_spec(path, header_row=4, footer_rows=2)))
    assert "E5 (column E): #REF!" in message
    assert "Applicant" not in message  # a header the spec does not declare stays private


def test_many_error_values_are_counted_not_all_listed(settings: Settings, tmp_path: Path) -> None:
    rows = [[f"P-{i:03d}", dt.date(2024, 1, 1), "#DIV/0!", True, None] for i in range(40)]
    path = workbook(tmp_path / "permits.xlsx", rows=rows, footer=False)
    message = str(extract_error(settings, make_spec(path, header_row=4)))
    assert "C5 (column C (Fee)): #DIV/0!" in message and "and 35 more" in message


def test_an_error_value_in_the_footer_is_skipped_with_it(
    settings: Settings, tmp_path: Path
) -> None:
    path = workbook(
        tmp_path / "permits.xlsx", rows=[*good_rows(), [], ["Total", None, "#REF!"]], footer=False
    )
    assert extract(make_spec(path, header_row=4, footer_rows=2), settings, "run-1").rows == 3


def test_every_excel_error_code_is_recognised(settings: Settings, tmp_path: Path) -> None:
    rows = [[f"P-{i}", None, code, None, None] for i, code in enumerate(ERROR_CODES)]
    path = workbook(tmp_path / "permits.xlsx", rows=rows, footer=False)
    message = str(extract_error(settings, make_spec(path, header_row=4)))
    assert f"and {len(ERROR_CODES) - 5} more" in message


def _as_excel_saves_it(path: Path, old: bytes, new: bytes) -> None:
    """Rewrite a sheet's XML as a calculating program would have saved it."""
    with zipfile.ZipFile(path) as src:
        parts = {info.filename: src.read(info.filename) for info in src.infolist()}
    sheet = "xl/worksheets/sheet2.xml"
    assert old in parts[sheet]
    parts[sheet] = parts[sheet].replace(old, new)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dest:
        for name, data in parts.items():
            dest.writestr(name, data)


def test_a_formula_without_a_computed_value_is_refused_not_read_as_empty(
    settings: Settings, tmp_path: Path
) -> None:
    rows = good_rows()
    rows[1][2] = "=C5*2"  # C6, saved by openpyxl: a formula and no value
    path = workbook(tmp_path / "permits.xlsx", rows=rows)
    spec = make_spec(path, header_row=4, footer_rows=2)
    message = str(extract_error(settings, spec))
    assert f"sheet {SHEET!r}: formulas without a computed value in C6 (column C (Fee))" in message
    # The footer's =SUM has no value either: it is skipped with the footer, not reported.
    assert "C10" not in message
    # Once a calculating program saved it, the computed value is read.
    _as_excel_saves_it(
        path, b'<c r="C6"><f>C5*2</f><v /></c>', b'<c r="C6"><f>C5*2</f><v>240</v></c>'
    )
    assert extract(spec, settings, "run-2").raw.column("Fee").to_pylist() == ["120", "240", "0"]


def test_a_formula_computing_an_empty_text_is_an_empty_value(
    settings: Settings, tmp_path: Path
) -> None:
    rows = good_rows()
    rows[0][2] = '=""'
    path = workbook(tmp_path / "permits.xlsx", rows=rows)
    _as_excel_saves_it(
        path, b'<c r="C5"><f>""</f><v /></c>', b'<c r="C5" t="str"><f>""</f><v></v></c>'
    )
    ext = extract(make_spec(path, header_row=4, footer_rows=2), settings, "run-1")
    assert ext.raw.column("Fee").to_pylist() == [None, "99.5", "0"]


def test_an_empty_header_names_its_cell(settings: Settings, tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "permits.xlsx", header=["Permit", "Issued", None, "Paid", "Applicant"]
    )
    message = str(extract_error(settings, make_spec(path, header_row=4, footer_rows=2)))
    assert f"sheet {SHEET!r}" in message
    assert "empty column header in C4 (header row 4)" in message


def test_duplicate_headers_name_their_cells_and_keep_the_names_private(
    settings: Settings, tmp_path: Path
) -> None:
    # header_row set one too low: the "header" is a data row, two cells of it equal
    rows = good_rows()
    rows[0][4] = rows[0][0]
    path = workbook(tmp_path / "permits.xlsx", rows=rows)
    error = extract_error(settings, make_spec(path, header_row=5, footer_rows=2))
    assert "duplicate column headers in A5, E5 (header row 5)" in str(error)
    assert "P-001" not in str(error)
    assert error.detail is not None and "P-001" in error.detail


def test_values_right_of_the_last_header_are_named(settings: Settings, tmp_path: Path) -> None:
    rows = good_rows()
    rows[1] = [*rows[1], None, SECRET]  # G6
    path = workbook(tmp_path / "permits.xlsx", rows=rows)
    message = str(extract_error(settings, make_spec(path, header_row=4, footer_rows=2)))
    assert "values in G6, right of the last column header (E4)" in message


def test_a_header_row_past_the_end_and_a_sheet_without_data(
    settings: Settings, tmp_path: Path
) -> None:
    path = workbook(tmp_path / "permits.xlsx")
    message = str(extract_error(settings, make_spec(path, header_row=40)))
    assert f"sheet {SHEET!r}: has no row 40 (source.header_row)" in message
    message = str(extract_error(settings, make_spec(path, header_row=4, footer_rows=5)))
    assert "has a header but no data rows (after dropping 5 footer rows)" in message


def test_a_chart_sheet_is_named_as_one(settings: Settings, tmp_path: Path) -> None:
    path = workbook(tmp_path / "permits.xlsx")
    book = load_workbook(path)
    chart = BarChart()
    chart.add_data(Reference(book[SHEET], min_col=3, min_row=4, max_row=7))
    book.create_chartsheet("Fees chart").add_chart(chart)
    book.save(path)
    spec = make_spec(path).model_copy(
        update={"source": make_spec(path).source.model_copy(update={"sheet": "Fees chart"})}
    )
    assert "sheet 'Fees chart' is a chart sheet, not a sheet of cells" in str(
        extract_error(settings, spec)
    )


def test_a_file_that_is_not_an_xlsx_is_named(settings: Settings, tmp_path: Path) -> None:
    text = tmp_path / "permits.xlsx"
    text.write_text("Permit,Issued\nP-001,2024-01-01\n")
    message = str(extract_error(settings, make_spec(text)))
    assert "cannot be opened as an Excel workbook" in message and "not an .xlsx workbook" in message
    # An old .xls (or an encrypted .xlsx) is an OLE2 compound file: say so.
    old = tmp_path / "old.xlsx"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)
    message = str(extract_error(settings, make_spec(old)))
    assert "old Excel 97-2003 .xls file or a password-protected workbook" in message


# -- the bundled example ----------------------------------------------------------------------


EXAMPLE = PROJECT / "data" / "lax_passenger_workbook" / "lax_passenger_traffic_by_year.xlsx"
EXPORT = PROJECT / "data" / "lax_passenger_traffic" / "lax_passenger_traffic_by_terminal.csv"


def test_the_example_workbook_is_what_the_script_generates(tmp_path: Path) -> None:
    script = (PROJECT / "scripts" / "make_excel_example.py").read_text()
    copy = tmp_path / "scripts" / "make_excel_example.py"
    copy.parent.mkdir()
    copy.write_text(script)
    (tmp_path / "data" / "lax_passenger_traffic").mkdir(parents=True)
    (tmp_path / "data" / "lax_passenger_traffic" / EXPORT.name).write_bytes(EXPORT.read_bytes())
    subprocess.run([sys.executable, str(copy)], check=True, capture_output=True)
    generated = tmp_path / "data" / "lax_passenger_workbook" / EXAMPLE.name
    assert generated.read_bytes() == EXAMPLE.read_bytes()


def test_the_example_publishes_the_2013_rows_of_the_export(
    portal_env: Settings, datasette_server: Any
) -> None:
    outcome = run_dataset(portal_env, "lax_passenger_workbook")
    assert outcome.outcome in ("published", "unchanged"), outcome.reason
    with EXPORT.open(encoding="utf-8", newline="") as fh:
        export = [r for r in csv.DictReader(fh) if r["ReportPeriod"][6:10] == "2013"]
    assert outcome.record.rows_in == len(export) == 442
    row = datasette_server.query(
        "select count(*) as n, sum(passenger_count) as total, min(month) as first, "
        "max(month) as last from lax_passenger_workbook"
    )[0]
    assert row["n"] == 442
    assert row["total"] == sum(int(r["Passenger_Count"]) for r in export)
    assert (row["first"], row["last"]) == ("2013-01-01", "2013-12-01")
    spec = find_dataset(portal_env.datasets_dir, "lax_passenger_workbook")
    assert spec.source.kind == "excel"

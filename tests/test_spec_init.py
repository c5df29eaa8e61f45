"""`civicflow spec init`: specs drafted from the data, marked where a person decides.

For each bundled raw file (the Excel workbook too, read with its hand-written spec's sheet,
header row and footer): the draft has marks and `check` refuses it naming file and key;
filling only the marked items gives a spec that passes `check` and publishes to a real
Datasette portal. The profiler is tested on small Arrow tables.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from typer.testing import CliRunner

from civicflow.cli import app
from civicflow.onboarding import draft_dataset, profile_table
from civicflow.onboarding.read import ReadOptions, SourceTable, _postgres
from civicflow.pipeline import run_dataset
from civicflow.settings import Settings, load_settings
from civicflow.spec import SpecError, find_dataset
from civicflow.spec.marks import MARK, find_marks

PROJECT = Path(__file__).resolve().parents[1]
runner = CliRunner()

BUNDLED = {
    "la311_service_requests": "MyLA311_Service_Request_Data_2017_Subset.csv",
    "code_enforcement_cases": "code_enforcement_cases.csv",
    "lax_passenger_traffic": "lax_passenger_traffic_by_terminal.csv",
    "neighborhood_councils": "la_neighborhood_councils_certified.geojson",
    "parking_citations": "la_parking_citations_subset.csv",
    "lax_passenger_workbook": "lax_passenger_traffic_by_year.xlsx",
}
#: the source keys `spec init` takes as options for a workbook (from the hand-written spec)
EXCEL_KEYS = ("sheet", "header_row", "footer_rows")
#: marked keys whose suggestion is a value in YAML flow syntax rather than text
TYPED = {"primary_key", "update_frequency", "enum", "null_values"}
PLAUSIBLE = {
    "title": "Drafted Dataset Onboarded in a Test",
    "description": "Rows of a bundled raw file, onboarded by spec init in a test.",
    "department": "Information Technology Agency",
    "name": "Open Data Steward",
    "email": "open-data@lacity.example",
    "license": "CC0-1.0",
    "category": "Testing",
}


def fill_marks(data: Any, path: tuple[Any, ...] = ()) -> Any:
    """Replace every marked value, and nothing else, with a plausible decision."""
    if isinstance(data, dict):
        return {k: fill_marks(v, (*path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [fill_marks(v, (*path, i)) for i, v in enumerate(data)]
    if not (isinstance(data, str) and data.startswith(MARK)):
        return data
    suggestion = data[len(MARK) :].strip()
    key = path[-1]
    if key in TYPED:
        return yaml.safe_load(suggestion)
    if key == "reason":
        return f"Reviewed in the onboarding test: {suggestion}"
    return PLAUSIBLE[key]


def _tmp_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    for sub in ("datasets", "expectations"):
        (project / sub).mkdir(parents=True)
    shutil.copy(PROJECT / "pyproject.toml", project / "pyproject.toml")
    return project


def _hand_written_source(bundled: str) -> dict[str, Any]:
    spec = yaml.safe_load((PROJECT / "datasets" / f"{bundled}.yaml").read_text())
    return dict(spec["source"])


def _source_options(bundled: str) -> list[str]:
    """`--sheet 2013 --header-row 4 --footer-rows 3` for a workbook, nothing otherwise."""
    source = _hand_written_source(bundled)
    if source["kind"] != "excel":
        return []
    present = [k for k in EXCEL_KEYS if k in source]
    return [arg for k in present for arg in (f"--{k.replace('_', '-')}", str(source[k]))]


def _init(project: Path, dataset_id: str, source: Path | str, *extra: str) -> Any:
    return runner.invoke(app, ["spec", "init", dataset_id, "--source", str(source), *extra])


@pytest.fixture
def tmp_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = _tmp_project(tmp_path)
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(project))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    return project


# -- every bundled raw file: draft, refuse, fill the marks, check, publish ---------------


@pytest.mark.parametrize("bundled", sorted(BUNDLED))
def test_bundled_file_drafts_a_spec_that_publishes_once_its_marks_are_decided(
    bundled: str, tmp_project: Path, datasette_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in datasette_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CIVICFLOW_HASH_KEY", "onboarding-test-hash-key-0123456789abcdef")
    raw = tmp_project / "data" / bundled / BUNDLED[bundled]
    raw.parent.mkdir(parents=True)
    shutil.copy(PROJECT / "data" / bundled / BUNDLED[bundled], raw)
    dataset_id = f"init_{bundled}"

    drafted = _init(tmp_project, dataset_id, raw, *_source_options(bundled))
    assert drafted.exit_code == 0, drafted.output
    spec_path = tmp_project / "datasets" / f"{dataset_id}.yaml"
    data = yaml.safe_load(spec_path.read_text())
    marks = find_marks(data)
    assert marks and f"{len(marks)} marked items" in drafted.output
    assert data["source"]["path"] == f"data/{bundled}/{BUNDLED[bundled]}"
    hand = _hand_written_source(bundled)
    if hand["kind"] == "excel":
        assert {k: data["source"][k] for k in EXCEL_KEYS} == {k: hand[k] for k in EXCEL_KEYS}

    refused = runner.invoke(app, ["check"])
    assert refused.exit_code == 2
    for mark in marks:
        assert f"{spec_path}:" in refused.output and f": {mark.key}: still marked" in refused.output
    with pytest.raises(SpecError, match="still marked"):
        find_dataset(tmp_project / "datasets", dataset_id)

    spec_path.write_text(yaml.safe_dump(fill_marks(data), sort_keys=False, allow_unicode=True))
    checked = runner.invoke(app, ["check"])
    assert checked.exit_code == 0, checked.output

    settings = load_settings()
    outcome = run_dataset(settings, dataset_id)
    assert outcome.outcome == "published", outcome.reason
    expected = len(_data_rows(raw, hand))
    assert outcome.record.rows_in == outcome.record.rows_out == expected
    assert datasette_server.row_count(dataset_id) == expected


def _data_rows(raw: Path, source: dict[str, Any]) -> list[Any]:
    """The data rows as another reader counts them (pandas, or the GeoJSON features)."""
    if raw.suffix == ".geojson":
        return list(json.loads(raw.read_text())["features"])
    import pandas as pd

    if raw.suffix == ".xlsx":
        sheet = pd.read_excel(
            raw,
            sheet_name=source["sheet"],
            header=source["header_row"] - 1,
            skipfooter=source["footer_rows"],
            dtype=str,
        )
        assert sheet.notna().all(axis=None)  # no blank or totals row left among the data
        return list(range(len(sheet)))
    return list(range(len(pd.read_csv(raw, dtype=str))))


# -- the profiler on small tables --------------------------------------------------------


def _table(**columns: Sequence[str | None]) -> pa.Table:
    return pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})


def _draft(table: pa.Table) -> Any:
    source = SourceTable(table, {"kind": "csv", "path": "data/x.csv"}, "data/x.csv", "x")
    return draft_dataset("x", source)


def test_every_timestamp_format_present_is_found_and_kept_for_the_column() -> None:
    mixed = ["12/31/2017 11:59:58 PM", "2018-01-02T08:15:00", "01/03/2018 07:00:00 AM"] * 3
    table = _table(CreatedDate=mixed, Day=["2018-01-02"] * 9)
    profile = profile_table(table)
    created = profile.column("created_date")
    assert created.type == "datetime"
    assert created.formats == ["%m/%d/%Y %I:%M:%S %p", "%Y-%m-%dT%H:%M:%S"]
    assert profile.column("day").type == "date"
    draft = _draft(table)
    assert draft.spec["source"]["timestamp_formats"][:2] == created.formats
    fields = {f["name"]: f for f in draft.spec["fields"]}
    assert fields["created_date"]["source"] == "CreatedDate"
    assert fields["day"]["formats"] == ["%Y-%m-%d"]


def test_a_value_no_format_reads_keeps_the_column_as_text() -> None:
    profile = profile_table(_table(when=["2018-01-02", "soon", "2018-01-03"]))
    assert profile.column("when").type == "string"


def test_primary_key_prefers_an_id_column_and_falls_back_to_a_compound_key() -> None:
    table = _table(
        Label=["a", "b", "c", "d"], RequestID=["7", "8", "9", "10"], Note=["x", None, "y", "z"]
    )
    assert profile_table(table).keys[0] == ["request_id"]
    draft = _draft(table)
    assert draft.spec["primary_key"] == f'{MARK} ["request_id"]'

    months = [f"2024-0{m}-01" for m in (1, 2, 3) for _ in range(4)]
    compound = _table(
        Month=months,
        Terminal=["T1", "T1", "T2", "T2"] * 3,
        Direction=["In", "Out"] * 6,
        Count=[str(n) for n in range(12)],
    )
    assert profile_table(compound).keys == [["month", "terminal", "direction"]]


def test_low_cardinality_text_becomes_an_enum_marked_when_it_has_three_or_more_values() -> None:
    status = (["Open", "Closed", "Cancelled"] * 10)[:30]
    table = _table(Status=status, Flag=["Y", "N"] * 15, Street=[f"S{i}" for i in range(30)])
    fields = {f["name"]: f for f in _draft(table).spec["fields"]}
    assert fields["status"]["constraints"]["enum"] == f'{MARK} ["Open", "Closed", "Cancelled"]'
    assert fields["flag"]["constraints"]["enum"] == ["Y", "N"]
    assert "constraints" not in fields["street"]


def test_zero_coordinates_among_real_ones_are_sentinels_suggested_as_null_values() -> None:
    lat = ["34.0732166", "0", "34.1159757", "33.9912345", "0", "34.2000001"]
    lon = ["-118.2668619", "0", "-118.1902740", "-118.3012345", "0", "-118.4000001"]
    table = _table(Latitude=lat, Longitude=lon, Age=["34", "0", "51", "27", "45", "62"])
    profile = profile_table(table)
    assert profile.column("latitude").sentinels == ["0"]
    assert profile.column("latitude").minimum == pytest.approx(33.9912345)
    assert profile.column("age").sentinels == []  # 0 sits next to real ages: a value
    draft = _draft(table)
    # The Age column holds a real 0, so "0" cannot be read as empty source-wide.
    assert "null_values" not in draft.spec["source"]
    fields = {f["name"]: f for f in _draft(table.drop(["Age"])).spec["fields"]}
    assert fields["latitude"].get("nullable", True) is True
    again = _draft(table.drop(["Age"]))
    assert again.spec["source"]["null_values"] == f'{MARK} ["", "0"]'


def test_personal_data_is_flagged_with_a_suggested_rule_and_a_marked_reason() -> None:
    n = 8
    table = _table(
        Address=[f"{1200 + i * 17} W MAIN ST, 90026" for i in range(n)],
        HouseNumber=[str(1200 + i * 17) for i in range(n)],
        ComplainantName=[f"Person {i}" for i in range(n)],
        ContactEmail=[f"someone{i}@example.com" for i in range(n)],
        Notes=[
            f"Visited on day {i}; spoke with Mr. Lopez at the door, call (213) 555-01{i:02d} back."
            for i in range(n)
        ],
        Latitude=[f"34.07{i}21664" for i in range(n)],
        Longitude=[f"-118.26{i}86190" for i in range(n)],
        Location=[f"(34.07{i}21664, -118.26{i}86190)" for i in range(n)],
        Status=["Open"] * n,
    )
    draft = _draft(table)
    fields = {f["name"]: f for f in draft.spec["fields"]}
    rule = {name: (f.get("privacy") or {}).get("rule") for name, f in fields.items()}
    assert fields["address"]["privacy"]["method"] == "hundred_block"
    assert fields["address"]["semantic"] == "address"
    assert rule["house_number"] == rule["complainant_name"] == rule["contact_email"] == "drop"
    assert rule["notes"] == "redact" and fields["notes"]["semantic"] == "free_text"
    assert "complainant_name" in fields["notes"]["privacy"]["redact_values_of"]
    for name in ("latitude", "longitude", "location"):
        assert fields[name]["privacy"]["decimals"] == 3 and fields[name]["precision"] == 3
    assert rule["status"] is None
    reasons = {m.key for m in draft.marks if m.key.endswith("privacy.reason")}
    assert len(reasons) == 8
    assert all(("decide:" in draft.comments[m.path]) for m in draft.marks)


def test_projected_coordinates_are_not_taken_for_degrees() -> None:
    table = _table(Latitude=["6463690", "99999", "6415432.1", "6426797.9", "99999"])
    col = profile_table(table).column("latitude")
    assert col.sentinels == ["99999"]
    field = _draft(table).spec["fields"][0]
    assert field["privacy"]["rule"] == "drop" and "semantic" not in field


def test_long_integers_are_identifiers_and_zip_codes_text() -> None:
    table = _table(TicketNumber=["1103341116", "1103700150"], ZipCode=["90026", "02134"])
    fields = {f["name"]: f for f in _draft(table).spec["fields"]}
    assert fields["ticket_number"]["type"] == "string"
    assert fields["zip_code"]["type"] == "string" and fields["zip_code"]["semantic"] == "zip_code"


def test_the_written_yaml_reads_back_as_the_draft_and_every_mark_has_its_comment() -> None:
    table = _table(
        Status=(["Open", "Closed", "Cancelled'"] * 10),
        Address=[f"{100 + i} N SPRING ST" for i in range(30)],
    )
    draft = _draft(table)
    text = draft.yaml()
    assert yaml.safe_load(text) == draft.spec
    marked_lines = [line for line in text.splitlines() if f"'{MARK}" in line]
    assert len(marked_lines) == len(draft.marks)
    assert all("  # decide: " in line for line in marked_lines)


# -- the mark refusal, the CLI ----------------------------------------------------------


def test_a_mark_anywhere_is_refused_naming_file_line_and_key(tmp_path: Path) -> None:
    spec = yaml.safe_load((PROJECT / "datasets" / "lax_passenger_traffic.yaml").read_text())
    spec["fields"][3]["description"] = f"{MARK} what this is"
    path = tmp_path / "datasets" / "lax_passenger_traffic.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SpecError) as caught:
        find_dataset(path.parent, "lax_passenger_traffic")
    (problem,) = caught.value.problems
    assert problem.file == path and problem.key == "fields.3.description" and problem.line
    assert "still marked CONFIRM:" in str(problem) and "what this is" not in str(problem)


def test_init_refuses_to_overwrite_without_force(tmp_project: Path) -> None:
    csv = tmp_project / "x.csv"
    csv.write_text("Case ID,Status\n1,Open\n2,Closed\n")
    assert _init(tmp_project, "cases", csv).exit_code == 0
    spec = tmp_project / "datasets" / "cases.yaml"
    spec.write_text(spec.read_text() + "# edited by the steward\n")
    again = _init(tmp_project, "cases", csv)
    assert again.exit_code == 2 and "--force" in again.output
    assert spec.read_text().endswith("# edited by the steward\n")
    assert _init(tmp_project, "cases", csv, "--force").exit_code == 0
    assert "edited by the steward" not in spec.read_text()
    suite = json.loads((tmp_project / "expectations" / "cases.json").read_text())
    assert suite["name"] == "cases" and suite["expectations"][0]["kwargs"] == {"column": "case_id"}


def test_init_refuses_a_bad_id_and_an_unknown_source(tmp_project: Path) -> None:
    csv = tmp_project / "x.csv"
    csv.write_text("a\n1\n")
    assert _init(tmp_project, "Not-Snake", csv).exit_code == 2
    odd = tmp_project / "x.parquet"
    odd.write_text("")
    result = _init(tmp_project, "odd", odd)
    assert result.exit_code == 1 and ".parquet" not in result.output.split(":")[-1]
    assert not (tmp_project / "datasets" / "odd.yaml").exists()


def test_a_postgres_password_is_used_for_the_read_and_never_written(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path, var_dir=tmp_path / "var", env={})
    url = "postgresql://reader:s3cret-pw@127.0.0.1:5432/city?table=public.permits"
    source, local, clean = _postgres(url, ReadOptions(), settings)
    assert source == {"kind": "postgres", "table": "public.permits"}
    assert clean == "postgresql://reader@127.0.0.1:5432/city"
    assert local.env["CIVICFLOW_POSTGRES_URL"] == clean
    assert local.env["CIVICFLOW_POSTGRES_PASSWORD"] == "s3cret-pw"
    assert "s3cret" not in json.dumps(source) and settings.env == {}


# -- the other source kinds: Excel, HTTP, PostgreSQL --------------------------------------

PERMITS = [
    ("PermitNumber", "Issued", "Status", "Valuation", "Address"),
    *[
        (
            f"24-{1000 + i}",
            f"2024-05-{1 + i % 28:02d}",
            ("Issued", "Finaled", "Expired")[i % 3],
            1500.5 + i,
            f"{1200 + i * 7} W MAIN ST",
        )
        for i in range(60)
    ],
]


def _publish_after_filling(project: Path, dataset_id: str, settings: Settings) -> None:
    spec_path = project / "datasets" / f"{dataset_id}.yaml"
    data = yaml.safe_load(spec_path.read_text())
    spec_path.write_text(yaml.safe_dump(fill_marks(data), sort_keys=False))
    checked = runner.invoke(app, ["check"])
    assert checked.exit_code == 0, checked.output
    outcome = run_dataset(settings, dataset_id)
    assert outcome.outcome == "published", outcome.reason
    assert outcome.record.rows_out == len(PERMITS) - 1


def _permit_fields(project: Path, dataset_id: str) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((project / "datasets" / f"{dataset_id}.yaml").read_text())
    return {f["name"]: f for f in data["fields"]}


def test_an_excel_sheet_with_a_title_row_is_drafted_and_publishes(
    tmp_project: Path, datasette_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import date

    from openpyxl import Workbook

    for key, value in datasette_server.env.items():
        monkeypatch.setenv(key, value)
    workbook = Workbook()
    workbook.active.title = "Cover"
    sheet = workbook.create_sheet("Permits")
    sheet.append(["Building permits issued, May 2024"])
    for row in PERMITS:
        cells = list(row)
        if cells[1] != "Issued":
            cells[1] = date.fromisoformat(str(cells[1]))
        sheet.append(cells)
    path = tmp_project / "permits.xlsx"
    workbook.save(path)

    result = _init(
        tmp_project, "init_excel_permits", path, "--sheet", "Permits", "--header-row", "2"
    )
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((tmp_project / "datasets" / "init_excel_permits.yaml").read_text())
    assert data["source"] == {
        "kind": "excel",
        "path": "permits.xlsx",
        "sheet": "Permits",
        "header_row": 2,
        # openpyxl stores a date as a midnight datetime: read as a date all the same
        "timestamp_formats": ["%Y-%m-%dT%H:%M:%S"],
    }
    fields = _permit_fields(tmp_project, "init_excel_permits")
    assert fields["issued"]["type"] == "date" and fields["valuation"]["type"] == "number"
    assert fields["address"]["privacy"]["method"] == "hundred_block"
    _publish_after_filling(tmp_project, "init_excel_permits", load_settings())


@pytest.fixture
def csv_server(tmp_path: Path) -> Any:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = "\n".join(",".join(str(v) for v in row) for row in PERMITS).encode() + b"\n"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/csv; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_csv_behind_a_url_is_drafted_as_an_http_source_and_publishes(
    tmp_project: Path,
    csv_server: str,
    tmp_path: Path,
    datasette_server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"{csv_server}/exports/permits.csv"
    result = _init(tmp_project, "init_http_permits", url)
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((tmp_project / "datasets" / "init_http_permits.yaml").read_text())
    assert data["source"]["kind"] == "http" and data["source"]["url"] == url
    assert data["source"]["format"] == "csv"
    assert _permit_fields(tmp_project, "init_http_permits")["permit_number"]["nullable"] is False
    assert not (tmp_path / "var").exists()  # the draft's download left nothing in var/
    for key, value in datasette_server.env.items():
        monkeypatch.setenv(key, value)
    _publish_after_filling(tmp_project, "init_http_permits", load_settings())


@pytest.mark.parametrize(
    "url",
    [
        "https://reader:pw@data.example.org/permits.csv",
        "https://data.example.org/permits.csv?api_key=abc123",
        "https://data.example.org/permits.csv?$$app_token=abc123",
    ],
)
def test_a_url_carrying_credentials_is_refused(tmp_project: Path, url: str) -> None:
    result = _init(tmp_project, "creds", url)
    assert result.exit_code == 1 and "credentials" in result.output
    assert "abc123" not in result.output and "pw@" not in result.output
    assert not (tmp_project / "datasets" / "creds.yaml").exists()


def test_a_postgres_table_is_drafted_without_its_password_and_publishes(
    tmp_project: Path, postgres_db, datasette_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with postgres_db.admin() as conn:
        conn.execute(
            "create table permits (permit_number text primary key, issued date, status text,"
            " valuation numeric, address text)"
        )
        with conn.cursor().copy("copy permits from stdin") as copy:
            for row in PERMITS[1:]:
                copy.write_row(row)
        conn.execute("grant select on permits to civicflow_reader")
    password = postgres_db.password
    secret_url = postgres_db.url.replace("civicflow_reader@", f"civicflow_reader:{password}@")
    result = runner.invoke(
        app, ["spec", "init", "init_pg_permits", "--source", f"{secret_url}?table=permits"]
    )
    assert result.exit_code == 0, result.output
    text = (tmp_project / "datasets" / "init_pg_permits.yaml").read_text()
    assert password not in text and password not in result.output
    data = yaml.safe_load(text)
    assert data["source"] == {
        "kind": "postgres",
        "table": "permits",
        "timestamp_formats": ["%Y-%m-%d"],
    }
    assert f"CIVICFLOW_POSTGRES_URL={postgres_db.url}" in text
    for key, value in {**datasette_server.env, **postgres_db.env}.items():
        monkeypatch.setenv(key, value)
    _publish_after_filling(tmp_project, "init_pg_permits", load_settings())

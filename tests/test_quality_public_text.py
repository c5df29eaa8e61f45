"""No source value reaches a public text: the ledger reason, the RunRecord, ``civicflow runs``.

Every value planted below is recognisable (it holds a marker found nowhere in the real
data). A rejected run must name the check, column, counts and rows in public, and keep
the planted values in its private report only (the report is checked too: the values
were seen, they were just not published).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from civicflow.cli import app
from civicflow.ledger import Ledger
from civicflow.pipeline import RunOutcome, run_dataset
from civicflow.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]
LA311 = "la311_service_requests"
COUNCILS = "neighborhood_councils"
CSV = PROJECT / "data" / LA311 / "MyLA311_Service_Request_Data_2017_Subset.csv"
MARK = "ZQXJ"  # in every planted text value; absent from the bundled data
DUP_KEY = "1-9990001112223"  # a planted key that fits the sr_number pattern


def public_texts(settings: Settings, outcome: RunOutcome, dataset: str) -> str:
    """Everything public about the run: its reason, its ledger row, ``civicflow runs``."""
    [record] = Ledger(settings.ledger_path).runs(dataset)
    assert record == outcome.record
    cli = CliRunner().invoke(app, ["runs", dataset])
    assert cli.exit_code == 0, cli.output
    row = json.dumps(dataclasses.asdict(record), default=str)
    return "\n".join([outcome.reason, row, cli.output])


def assert_private_only(public: str, report: Path, planted: list[str]) -> None:
    private = report.read_text(encoding="utf-8")
    for value in planted:
        assert value in private, f"{value!r} should be in the private report"
        assert value not in public, f"{value!r} leaked into a public text:\n{public}"


def plant(tmp_path: Path, new_column: bool = False) -> Path:
    frame = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    frame.loc[[2, 6], "SRNumber"] = DUP_KEY  # data rows 3 and 7: duplicate key
    frame.loc[49, "SRNumber"] = f"{MARK}-sr"  # row 50: pattern constraint
    frame.loc[99, "CD"] = f"{MARK}-cd"  # row 100: type error
    frame.loc[[9, 19], "Status"] = f"{MARK}-status"  # rows 10, 20: GX value set
    frame.loc[29, "RequestSource"] = f"{MARK}-source"  # row 30: GX value set (warning)
    # the most common mobile OS becomes a planted one: a GX observed value
    frame.loc[frame.index[frame["MobileOS"] == ""][:1500], "MobileOS"] = f"{MARK}-os"
    if new_column:  # an undeclared column (as a headerless file gives): schema drift
        frame[f"{MARK}-header"] = "x"
    path = tmp_path / "planted.csv"
    frame.to_csv(path, index=False)
    return path


def add_observed_value_check(settings: Settings) -> None:
    """A GX expectation whose result is an observed value (the most common mobile OS)."""
    path = settings.expectations_dir / f"{LA311}.json"
    suite = json.loads(path.read_text())
    suite["expectations"].append(
        {
            "type": "expect_column_most_common_value_to_be_in_set",
            "kwargs": {"column": "mobile_os", "value_set": ["iOS", "Android"]},
            "meta": {"severity": "warning"},
        }
    )
    path.write_text(json.dumps(suite))


def test_rejected_validation_publishes_checks_and_rows_not_values(project, tmp_path) -> None:
    add_observed_value_check(project)
    outcome = run_dataset(project, LA311, plant(tmp_path))
    assert outcome.outcome == "rejected"
    public = public_texts(project, outcome, LA311)
    for named in (
        "primary-key sr_number: 1 duplicate in 2 rows (rows 3 and 7)",
        "type-error cd: 1 value do not parse as integer (row 100)",
        "constraint-error sr_number: 1 value do not match the pattern",
        "expect_column_values_to_be_in_set status: 2 of 9,999 rows unexpected (rows 10 and 20)",
        "expect_column_most_common_value_to_be_in_set mobile_os: observed value outside",
    ):
        assert named in outcome.reason, f"{named!r} not in {outcome.reason}"
    assert outcome.report_path is not None
    assert f"report: {outcome.report_path}" in public  # the steward is pointed to the detail
    planted = [DUP_KEY, *(f"{MARK}-{c}" for c in ("sr", "cd", "status", "source", "os"))]
    assert_private_only(public, outcome.report_path, planted)
    assert MARK not in public


def test_schema_drift_rejects_first_naming_positions_not_headers(project, tmp_path) -> None:
    outcome = run_dataset(project, LA311, plant(tmp_path, new_column=True))
    assert outcome.outcome == "rejected"
    assert outcome.reason.splitlines() == [
        "REJECTED: schema drift (on_schema_change: fail): 1 new",
        "  new      the column at position 34: not in the spec",
    ]
    public = public_texts(project, outcome, LA311)
    assert outcome.report_path is not None
    assert_private_only(public, outcome.report_path, [f"{MARK}-header"])
    assert MARK not in public


def _csv_bytes(mutate) -> bytes:
    lines = CSV.read_bytes().split(b"\n")
    return b"\n".join(mutate(lines))


def _bad_utf8(lines: list[bytes]) -> list[bytes]:
    lines[41] = lines[41].replace(b",", f",{MARK}\xe9,".encode("latin-1"), 1)
    return lines


def _ragged(lines: list[bytes]) -> list[bytes]:
    lines[4] += f",{MARK}-extra-field".encode()
    return lines


def _duplicate_headers(lines: list[bytes]) -> list[bytes]:
    lines[0] = (
        lines[0].replace(b"Owner", f"{MARK}-h".encode()).replace(b"MobileOS", f"{MARK}-h".encode())
    )
    return lines


@pytest.mark.parametrize(
    ("mutate", "must_mention"),
    [
        (_bad_utf8, ["not valid utf-8", "line 42", "0xe9"]),
        (_ragged, ["1 malformed row", "line 5", "expected 33 columns, got 34"]),
        (_duplicate_headers, ["duplicate column headers at positions 5, 9"]),
    ],
    ids=["bad-utf8", "malformed-row", "duplicate-headers"],
)
def test_extract_errors_name_the_place_not_the_value(
    project, tmp_path, mutate, must_mention
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(_csv_bytes(mutate))
    outcome = run_dataset(project, LA311, path)
    assert outcome.outcome == "rejected" and outcome.reason.startswith("extract: ")
    public = public_texts(project, outcome, LA311)
    for words in must_mention:
        assert words in outcome.reason
    assert MARK not in public, public
    report = json.loads(outcome.report_path.read_text())
    assert report["stage"] == "extract" and report["passed"] is False


def test_duplicate_header_names_stay_in_the_report(project, tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(_csv_bytes(_duplicate_headers))
    outcome = run_dataset(project, LA311, path)
    assert_private_only(public_texts(project, outcome, LA311), outcome.report_path, [f"{MARK}-h"])


def _collection(geometry: object) -> str:
    feature = {
        "type": "Feature",
        "properties": {"NC_ID": 1, "NAME": "Test council"},
        "geometry": geometry,
    }
    return json.dumps({"type": "FeatureCollection", "features": [feature]})


@pytest.mark.parametrize(
    ("text", "must_mention"),
    [
        (
            _collection({"type": "Point", "coordinates": [f"{MARK}-x", 34.0]}),
            "row 1: bad geometry: coordinates are not numbers",
        ),
        (
            _collection({"type": f"{MARK}Circle", "coordinates": [1, 2]}),
            "row 1: bad geometry: geometry type is not supported",
        ),
        (json.dumps({"type": f"{MARK}Collection"}), "not a GeoJSON FeatureCollection"),
    ],
    ids=["text-coordinates", "unknown-geometry-type", "not-a-collection"],
)
def test_geojson_errors_name_the_feature_not_the_value(
    project, tmp_path, text, must_mention
) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    outcome = run_dataset(project, COUNCILS, path)
    assert outcome.outcome == "rejected"
    assert must_mention in outcome.reason
    assert_private_only(public_texts(project, outcome, COUNCILS), outcome.report_path, [MARK])


def test_no_structure_check_quotes_its_failing_values() -> None:
    """Every structure rule fails at once on planted values; no message quotes one."""
    from civicflow.quality.structure import check_structure
    from tests.test_quality_structure import CLEAN, SPEC, edited, make_extract

    columns = edited(
        SRNumber={1: f"{MARK}-1", 2: f"{MARK}-1"},  # pattern, key duplicate
        Created={3: f"{MARK}-date"},  # type
        Status={4: f"{MARK}-state"},  # enum
        Count={5: "12345"},  # maximum
        Code={1: f"{MARK}-long", 2: f"{MARK}-long"},  # maxLength, unique
    )
    columns[f"{MARK}-extra"] = list(CLEAN["SRNumber"])  # undeclared column
    checks = check_structure(SPEC, make_extract(columns)).checks
    failed = [c for c in checks if c.failed]
    names = {(c.name, c.details.get("constraint")) for c in failed}
    assert names >= {
        ("type-error", None),
        ("constraint-error", "pattern"),
        ("constraint-error", "enum"),
        ("constraint-error", "maximum"),
        ("constraint-error", "maxLength"),
        ("unique-error", "unique"),
        ("primary-key", None),
        ("extra-label", None),
    }
    for check in failed:
        values = [str(e["value"]) for e in check.examples]
        assert values, f"{check.name}: the report keeps the failing values"
        for value in values:
            assert value not in check.line(), f"{check.name} quotes {value!r}: {check.line()}"


def test_an_unexpected_error_keeps_its_message_in_the_private_report(project) -> None:
    """A library's exception may quote anything: the public reason names its type only."""
    from civicflow.spec import find_dataset

    spec = find_dataset(project.datasets_dir, LA311)
    # an encoding name no codec knows: the codec lookup fails with a LookupError
    odd = spec.model_copy(
        update={"source": spec.source.model_copy(update={"encoding": f"{MARK}-enc"})}
    )
    with pytest.raises(LookupError):
        run_dataset(project, LA311, CSV, spec=odd)
    [record] = Ledger(project.ledger_path).runs(LA311)
    assert record.outcome == "failed"
    assert record.reason.startswith("LookupError: unexpected error")
    assert record.report_path is not None
    report = json.loads(Path(record.report_path).read_text())
    assert report["stage"] == "failed" and f"{MARK}-enc" in report["error"]
    cli = CliRunner().invoke(app, ["runs", LA311])
    assert f"report: {record.report_path}" in cli.output
    assert MARK not in record.reason + cli.output

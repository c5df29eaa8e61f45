"""GX content checks: suite files, the la311 suite on the real data, bad suites."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from civicflow.quality import load_suite, validate
from civicflow.quality.expectations import expectation_columns
from civicflow.settings import Settings
from civicflow.sources import extract
from civicflow.sources.base import Extract
from civicflow.spec import DatasetSpec, SpecError, load_dataset

PROJECT_DIR = Path(__file__).resolve().parents[1]
EXPECTATIONS = PROJECT_DIR / "expectations"
LA311 = PROJECT_DIR / "datasets" / "la311_service_requests.yaml"
SUITES = sorted(EXPECTATIONS.glob("*.json"))


@pytest.fixture(scope="module")
def la311(tmp_path_factory) -> tuple[DatasetSpec, Extract]:
    spec = load_dataset(LA311)
    settings = Settings(project_dir=PROJECT_DIR, var_dir=tmp_path_factory.mktemp("var"))
    return spec, extract(spec, settings, run_id="quality-expectations")


@pytest.fixture(scope="module")
def la311_report(la311):
    spec, ext = la311
    return validate(spec, ext, EXPECTATIONS)


@pytest.fixture(scope="module")
def csv_frame() -> pd.DataFrame:
    """The CSV read independently with pandas, indexed by 1-based data row."""
    spec = load_dataset(LA311)
    df = pd.read_csv(
        PROJECT_DIR / spec.source.path, dtype=str, keep_default_na=False, na_values=[""]
    )
    df.index = pd.RangeIndex(1, len(df) + 1)
    return df


def content(report, type_: str, *columns: str):
    [check] = [
        c
        for c in report.checks
        if c.layer == "content" and c.name == type_ and c.columns == list(columns)
    ]
    return check


def test_la311_critical_checks_all_pass(la311_report):
    assert la311_report.passed, la311_report.summary()
    critical_content = [
        c for c in la311_report.checks if c.layer == "content" and c.severity == "critical"
    ]
    assert len(critical_content) >= 4 and all(c.success for c in critical_content)
    assert la311_report.summary().startswith("PASSED: ")


def test_la311_closed_before_created_warning_names_its_rows(la311_report, csv_frame):
    fmt = "%m/%d/%Y %I:%M:%S %p"
    created = pd.to_datetime(csv_frame["CreatedDate"], format=fmt)
    closed = pd.to_datetime(csv_frame["ClosedDate"], format=fmt)
    expected_rows = csv_frame.index[closed < created].tolist()
    assert expected_rows  # the real data does hold such rows

    check = content(
        la311_report,
        "expect_column_pair_values_a_to_be_greater_than_b",
        "closed_date",
        "created_date",
    )
    assert check.severity == "warning" and check.failed
    assert check.unexpected_count == len(expected_rows)
    assert [e["row"] for e in check.examples] == expected_rows[:20]
    first = check.examples[0]["value"]
    row = expected_rows[0]
    assert first == {
        "closed_date": closed[row].isoformat(),
        "created_date": created[row].isoformat(),
    }
    assert check in la311_report.failures("warning")


def test_la311_nulls_are_not_bounding_box_failures(la311_report, csv_frame):
    assert csv_frame["Latitude"].isna().sum() > 0 and csv_frame["CD"].isna().sum() > 0
    assert content(la311_report, "expect_column_values_to_be_between", "latitude").success
    assert content(la311_report, "expect_column_values_to_be_between", "longitude").success
    assert content(la311_report, "expect_column_values_to_be_between", "cd").success


def test_la311_report_is_json_safe(la311_report, tmp_path):
    text = json.dumps(la311_report.to_dict(), allow_nan=False)
    data = json.loads(text)
    assert data["rows"] == la311_report.rows and data["passed"] is True
    assert data["counts"]["critical"]["failed"] == 0
    assert data["counts"]["warning"]["failed"] == len(la311_report.failures("warning"))
    written = json.loads(la311_report.write(tmp_path / "r.json").read_text())
    assert written == data | {"duration_s": written["duration_s"]}


def test_critical_content_failure_rejects_at_its_row(la311):
    spec, ext = la311
    frame = ext.frame.copy()
    frame.loc[5, "status"] = "Pending"
    report = validate(
        spec, Extract(ext.dataset_id, "bad", ext.raw_path, ext.sha256, ext.raw, frame), EXPECTATIONS
    )
    assert not report.passed
    check = content(report, "expect_column_values_to_be_in_set", "status")
    assert check.severity == "critical" and check.examples == [{"row": 5, "value": "Pending"}]
    assert "REJECTED" in report.summary()


def test_integer_examples_stay_integers_and_row_conditions_see_other_columns(la311, tmp_path):
    spec, ext = la311
    frame = ext.frame.copy()
    frame.loc[8, "cd"] = 99
    suite = {
        "name": "la311_service_requests",
        "expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "cd", "min_value": 1, "max_value": 15},
                "meta": {"severity": "warning"},
            },
            # cd is null only where police_precinct is null too: the condition reads another column
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {
                    "column": "cd",
                    "row_condition": {
                        "type": "nullity",
                        "column": {"name": "police_precinct"},
                        "is_null": False,
                    },
                },
                "meta": {"severity": "critical"},
            },
        ],
    }
    (tmp_path / "la311_service_requests.json").write_text(json.dumps(suite))
    report = validate(
        spec, Extract(ext.dataset_id, "cd", ext.raw_path, ext.sha256, ext.raw, frame), tmp_path
    )
    [between, conditional] = [c for c in report.checks if c.layer == "content"]
    assert between.failed and between.examples == [{"row": 8, "value": 99}]
    assert isinstance(between.examples[0]["value"], int)
    assert conditional.success, conditional.message


# --- bad suite files ------------------------------------------------------------------------


def write_suite(tmp_path: Path, body: str | dict) -> Path:
    path = tmp_path / "la311_service_requests.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body, indent=2))
    return path


def good_expectation(**overrides):
    item = {
        "type": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "sr_number"},
        "meta": {"severity": "critical"},
    }
    return item | overrides


def problems(path: Path) -> dict[str, str]:
    spec = load_dataset(LA311)
    with pytest.raises(SpecError) as info:
        load_suite(path, spec)
    assert all(p.file == path for p in info.value.problems)
    assert str(path) in str(info.value)
    return {p.key: p.message for p in info.value.problems}


def test_suite_that_does_not_parse(tmp_path):
    path = write_suite(tmp_path, '{"name": "la311_service_requests",\n "expectations": [,]}')
    spec = load_dataset(LA311)
    with pytest.raises(SpecError) as info:
        load_suite(path, spec)
    [problem] = info.value.problems
    assert problem.file == path and problem.line == 2 and "JSON does not parse" in problem.message


def test_unknown_expectation_type(tmp_path):
    path = write_suite(
        tmp_path,
        {
            "name": "la311_service_requests",
            "expectations": [good_expectation(), good_expectation(type="expect_column_to_be_nice")],
        },
    )
    found = problems(path)
    assert (
        list(found) == ["expectations.1.type"]
        and "expect_column_to_be_nice" in found["expectations.1.type"]
    )


def test_unknown_column(tmp_path):
    bad = good_expectation(
        type="expect_column_pair_values_a_to_be_greater_than_b",
        kwargs={"column_A": "closed_at", "column_B": "created_date"},
    )
    path = write_suite(
        tmp_path,
        {
            "name": "la311_service_requests",
            "expectations": [good_expectation(), good_expectation(), bad],
        },
    )
    found = problems(path)
    assert (
        list(found) == ["expectations.2.kwargs.column_A"]
        and "closed_at" in found["expectations.2.kwargs.column_A"]
    )


def test_unknown_column_in_row_condition(tmp_path):
    condition = {
        "type": "comparison",
        "column": {"name": "stauts"},
        "operator": "==",
        "parameter": "Closed",
    }
    bad = good_expectation(kwargs={"column": "closed_date", "row_condition": condition})
    path = write_suite(tmp_path, {"name": "la311_service_requests", "expectations": [bad]})
    assert list(problems(path)) == ["expectations.0.kwargs.row_condition.column.name"]


@pytest.mark.parametrize("meta", [{}, {"severity": "fatal"}, None])
def test_missing_or_invalid_severity(tmp_path, meta):
    item = (
        good_expectation(meta=meta)
        if meta is not None
        else {k: v for k, v in good_expectation().items() if k != "meta"}
    )
    path = write_suite(tmp_path, {"name": "la311_service_requests", "expectations": [item]})
    assert list(problems(path)) == ["expectations.0.meta.severity"]


def test_invalid_kwargs_and_wrong_name(tmp_path):
    bad = good_expectation(
        type="expect_column_values_to_be_between", kwargs={"column": "cd", "min_value": "one"}
    )
    path = write_suite(tmp_path, {"name": "something_else", "expectations": [bad]})
    found = problems(path)
    assert "name" in found
    assert any(k.startswith("expectations.0.kwargs") for k in found)


def test_suite_without_matching_dataset_spec(tmp_path):
    (tmp_path / "expectations").mkdir()
    path = write_suite(
        tmp_path / "expectations",
        {"name": "la311_service_requests", "expectations": [good_expectation()]},
    )
    with pytest.raises(SpecError, match="no dataset spec"):
        load_suite(path)


# --- every suite in the project -------------------------------------------------------------


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_every_suite_loads_and_matches_its_dataset(path):
    spec = load_dataset(PROJECT_DIR / "datasets" / f"{path.stem}.yaml")
    suite = load_suite(path)
    data = json.loads(path.read_text())
    assert suite.name == data["name"] == path.stem
    assert len(suite.expectations) == len(data["expectations"])
    fields = {f.name for f in spec.fields}
    for i, item in enumerate(data["expectations"]):
        assert item["meta"]["severity"] in ("critical", "warning"), (
            f"{path}: expectations.{i} severity"
        )
        for key, column in expectation_columns(item["kwargs"]):
            assert column in fields, (
                f"{path}: expectations.{i}.kwargs.{key} = {column!r} is not a field"
            )


def test_suites_are_found():
    assert EXPECTATIONS / "la311_service_requests.json" in SUITES

"""Structure checks: each rule fails with its frictionless code at the right rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from frictionless import Schema

from civicflow.quality import QualityReport, table_schema, validate
from civicflow.quality.structure import check_structure
from civicflow.settings import Settings
from civicflow.sources import extract
from civicflow.sources.base import Extract
from civicflow.sources.cast import cast_frame
from civicflow.spec import DatasetSpec, load_dataset

PROJECT_DIR = Path(__file__).resolve().parents[1]
LA311 = PROJECT_DIR / "datasets" / "la311_service_requests.yaml"

SPEC = DatasetSpec.model_validate(
    {
        "id": "toy_requests",
        "title": "Toy requests",
        "description": "A small dataset that exercises every structure rule.",
        "department": "Testing",
        "steward": {"name": "Tester", "email": "t@example.org"},
        "license": "CC0-1.0",
        "update_frequency": "daily",
        "category": "Testing",
        "source": {"kind": "csv", "path": "toy.csv", "timestamp_formats": ["%Y-%m-%d %H:%M:%S"]},
        "primary_key": ["sr_number"],
        "expectation_suite": None,
        "fields": [
            {
                "name": "sr_number",
                "source": "SRNumber",
                "type": "string",
                "nullable": False,
                "description": "Request id.",
                "constraints": {"pattern": r"1-\d+"},
            },
            {
                "name": "created",
                "source": "Created",
                "type": "datetime",
                "nullable": False,
                "description": "Created at.",
            },
            {
                "name": "status",
                "source": "Status",
                "type": "string",
                "description": "Status.",
                "constraints": {"enum": ["Open", "Closed"]},
            },
            {
                "name": "count",
                "source": "Count",
                "type": "integer",
                "description": "How many.",
                "constraints": {"minimum": 0, "maximum": 10},
            },
            {
                "name": "code",
                "source": "Code",
                "type": "string",
                "description": "A code.",
                "constraints": {"min_length": 2, "max_length": 3, "unique": True},
            },
        ],
    }
)

CLEAN = {
    "SRNumber": ["1-101", "1-102", "1-103", "1-104", "1-105"],
    "Created": [
        "2024-01-01 08:00:00",
        "2024-01-02 09:00:00",
        "2024-01-03 10:00:00",
        "2024-01-04 11:00:00",
        "2024-01-05 12:00:00",
    ],
    "Status": ["Open", "Closed", "Open", None, "Closed"],
    "Count": ["0", "3", None, "10", "7"],
    "Code": ["AA", "AB", "AC", None, "ABC"],
}


def make_extract(columns: dict[str, list[str | None]], spec: DatasetSpec = SPEC) -> Extract:
    raw = pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
    return Extract(spec.id, "test-run", Path("toy.csv"), "0" * 64, raw, cast_frame(spec, raw))


def edited(**changes: dict[int, str | None]) -> dict[str, list[str | None]]:
    """CLEAN with ``{column: {1-based row: new value}}`` applied."""
    cols = {k: list(v) for k, v in CLEAN.items()}
    for column, rows in changes.items():
        for row, value in rows.items():
            cols[column][row - 1] = value
    return cols


def failures(ext: Extract, name: str, constraint: str | None = None):
    checks = check_structure(SPEC, ext).checks
    return [
        c
        for c in checks
        if c.name == name
        and c.failed
        and (constraint is None or c.details.get("constraint") == constraint)
    ]


def rows_of(check) -> list[int]:
    return [e["row"] for e in check.examples]


def test_table_schema_is_frictionless_table_schema():
    descriptor = table_schema(SPEC)
    schema = Schema.from_descriptor(descriptor)  # raises if it is not Table Schema
    assert schema.field_names == [f.name for f in SPEC.fields]
    assert schema.primary_key == ["sr_number"]
    by_name = {f["name"]: f for f in descriptor["fields"]}
    assert by_name["sr_number"]["source"] == "SRNumber"
    assert by_name["sr_number"]["constraints"] == {"required": True, "pattern": r"1-\d+"}
    assert by_name["created"]["format"] == "%Y-%m-%d %H:%M:%S"
    assert by_name["count"]["constraints"] == {"minimum": 0, "maximum": 10}
    assert by_name["code"]["constraints"] == {"minLength": 2, "maxLength": 3, "unique": True}
    assert "required" not in by_name["status"].get("constraints", {})


def test_la311_table_schema_notes_every_source_header():
    spec = load_dataset(LA311)
    schema = Schema.from_descriptor(table_schema(spec))
    header = pd.read_csv(PROJECT_DIR / spec.source.path, nrows=0).columns.tolist()
    assert [f.custom.get("source", f.name) for f in schema.fields] == header
    assert {f.name for f in schema.fields if f.required} == {
        f.name for f in spec.fields if not f.nullable
    }


def test_clean_extract_passes_every_structure_check():
    checks = check_structure(SPEC, make_extract(CLEAN)).checks
    assert checks and all(c.success for c in checks), [c.line() for c in checks if not c.success]
    names = {c.name for c in checks}
    assert {
        "missing-label",
        "extra-label",
        "type-error",
        "constraint-error",
        "unique-error",
        "primary-key",
    } <= names


def test_missing_column():
    cols = dict(CLEAN)
    del cols["Status"]
    result = check_structure(SPEC, make_extract(cols))
    [check] = [c for c in result.checks if c.name == "missing-label"]
    assert check.failed and check.columns == ["status"]
    assert check.examples == [{"row": None, "value": "Status"}]
    assert result.missing_fields == {"status"}
    # no cell checks on a column that is not there
    assert not [
        c for c in result.checks if c.name == "constraint-error" and c.columns == ["status"]
    ]


def test_extra_column():
    cols = {**CLEAN, "Surprise": ["x"] * 5}
    [check] = failures(make_extract(cols), "extra-label")
    assert check.examples[0]["value"] == "Surprise"
    # the label is source text (data, if the header row is missing): report only
    assert check.message == "1 source column not in the spec, at position 6"


def test_wrong_type_at_known_row():
    ext = make_extract(edited(Count={3: "three"}, Created={5: "yesterday"}))
    found = {c.columns[0]: c.examples for c in failures(ext, "type-error")}
    assert found == {
        "count": [{"row": 3, "value": "three"}],
        "created": [{"row": 5, "value": "yesterday"}],
    }


def test_required_null():
    [check] = failures(make_extract(edited(Created={2: None})), "constraint-error", "required")
    assert check.columns == ["created"] and rows_of(check) == [2]
    # an unparsable value is a type error, not also a required error
    assert not failures(make_extract(edited(Created={2: "nope"})), "constraint-error", "required")


def test_enum():
    [check] = failures(make_extract(edited(Status={4: "Pending"})), "constraint-error", "enum")
    assert check.examples == [{"row": 4, "value": "Pending"}]


def test_pattern():
    [check] = failures(
        make_extract(edited(SRNumber={1: "2-101", 3: "1-10x"})), "constraint-error", "pattern"
    )
    assert check.examples == [{"row": 1, "value": "2-101"}, {"row": 3, "value": "1-10x"}]


def test_minimum_maximum_and_lengths():
    ext = make_extract(edited(Count={1: "-1", 2: "11"}, Code={1: "A", 5: "ABCD"}))
    by = {c.details["constraint"]: c for c in failures(ext, "constraint-error")}
    assert by["minimum"].examples == [{"row": 1, "value": -1}]
    assert by["maximum"].examples == [{"row": 2, "value": 11}]
    assert by["minLength"].examples == [{"row": 1, "value": "A"}]
    assert by["maxLength"].examples == [{"row": 5, "value": "ABCD"}]


def test_unique_names_every_repeated_row():
    [check] = failures(make_extract(edited(Code={2: "AA", 5: "AA"})), "unique-error")
    assert rows_of(check) == [1, 2, 5]


def test_duplicate_primary_key_names_both_rows():
    [check] = failures(make_extract(edited(SRNumber={2: "1-105"})), "primary-key")
    assert check.examples == [{"row": 2, "value": "1-105"}, {"row": 5, "value": "1-105"}]
    assert "rows 2 and 5" in check.message and check.details["groups"] == 1


@pytest.fixture(scope="module")
def la311(tmp_path_factory) -> tuple[DatasetSpec, Extract]:
    spec = load_dataset(LA311)
    settings = Settings(project_dir=PROJECT_DIR, var_dir=tmp_path_factory.mktemp("var"))
    return spec, extract(spec, settings, run_id="quality-structure")


def test_real_la311_structure_passes(la311):
    spec, ext = la311
    checks = check_structure(spec, ext).checks
    assert all(c.success for c in checks), [c.line() for c in checks if not c.success]


def test_real_duplicate_sr_number_rejects_with_both_rows(la311):
    spec, ext = la311
    sr = ext.raw["SRNumber"]
    first = sr[3].as_py()  # data row 4
    values = pc.if_else(
        pa.array([i == 6 for i in range(ext.rows)]), first, sr
    )  # row 7 gets row 4's number
    raw = ext.raw.set_column(ext.raw.column_names.index("SRNumber"), "SRNumber", values)
    bad = Extract(ext.dataset_id, "dup", ext.raw_path, ext.sha256, raw, cast_frame(spec, raw))
    report = validate(spec, bad, PROJECT_DIR / "expectations")
    assert not report.passed
    [pk] = [c for c in report.failures("critical") if c.name == "primary-key"]
    assert pk.examples == [{"row": 4, "value": first}, {"row": 7, "value": first}]
    # one duplicate, one failure: not also a unique-error nor a GX uniqueness failure
    assert [c.name for c in report.failures("critical")] == ["primary-key"]
    # the public summary names rows, not the key value (that stays in the examples)
    lines = report.summary().splitlines()
    assert lines[0].startswith("REJECTED: 1 critical check failed")
    assert "  critical primary-key sr_number: 1 duplicate in 2 rows (rows 4 and 7)" in lines
    assert first not in report.summary()


def test_missing_column_skips_content_checks_on_it(la311, tmp_path):
    spec, ext = la311
    raw = ext.raw.drop_columns(["Status"])
    bad = Extract(ext.dataset_id, "no-status", ext.raw_path, ext.sha256, raw, cast_frame(spec, raw))
    report = validate(spec, bad, PROJECT_DIR / "expectations")
    assert not report.passed
    assert [c.name for c in report.failures("critical")] == ["missing-label"]
    skipped = [c for c in report.checks if c.status == "skipped"]
    assert skipped and all("status" in c.columns for c in skipped)
    assert any("status" in n for n in report.notes)
    # the report is plain JSON on disk
    written = json.loads(report.write(tmp_path / "report.json").read_text())
    assert written["passed"] is False and written["counts"]["critical"]["skipped"] == len(
        [c for c in skipped if c.severity == "critical"]
    )
    assert isinstance(report, QualityReport)

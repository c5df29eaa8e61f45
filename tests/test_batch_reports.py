"""Batch-merged validation and privacy reports equal the whole-table ones (issue 13, item 2).

On generated 311 rows (``civicflow bench generate``'s generator) with bad rows and
personal data planted in them, and on bundled datasets with a compound key, a unique
non-key field and a redact rule: every batch size, down to one row a batch and up to
the whole table, gives the report ``validate`` / ``protect`` give for the whole table.

GX costs about a second per validation call whatever the rows (more on a busy machine),
so the one-row-a-batch validation runs over the first rows only, where the plants are.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from civicflow import synth
from civicflow.privacy import protect
from civicflow.privacy.batches import frame_batches, protect_batches
from civicflow.privacy.scan import CoordinateShape
from civicflow.quality import QualityReport, validate
from civicflow.quality.batches import (
    duplicate_rows,
    merge_validation,
    plan_validation,
    split_extract,
    validate_batch,
    validate_batches,
)
from civicflow.settings import Settings, load_settings
from civicflow.sources import extract
from civicflow.sources.base import Extract
from civicflow.spec import DatasetSpec, find_dataset
from civicflow.spec.models import BadRowsSpec

PROJECT = Path(__file__).resolve().parents[1]
LA311 = "la311_service_requests"
ROWS = 3_000
#: rows validated one batch per row (every plant below is among them)
FIRST = 40

# (row, source column, value): 1-based data rows; the duplicate keys sit far apart
PLANTS: list[tuple[int, str, str]] = [
    (3, "CreatedDate", "not a date"),  # type-error + GX not-null (critical)
    (5, "Status", "Pending Review"),  # GX in_set (critical)
    (8, "CD", "99"),  # GX between (warning)
    (9, "Anonymous", "X"),  # enum constraint
    (11, "ZipCode", "9OO12"),  # pattern constraint + GX regex (warning)
    (12, "ActionTaken", "called back maria.lopez@example.com"),  # e-mail: blocks
    (17, "StreetName", "call 213-555-0134"),  # phone: blocks
    (21, "ActionTaken", "left a note for mlopez@example.org"),
    (23, "SRNumber", "not-a-key"),  # pattern constraint on the key
    (29, "Latitude", "34.05"),  # coarser than the rounding: fine
]
DUPLICATES = [(2, 37), (6, ROWS - 1)]  # (original, copy): within FIRST and across the table


def _normal(report: QualityReport) -> dict[str, Any]:
    data = report.to_dict()
    data.pop("duration_s")
    return data


def _failing_rows(report: QualityReport) -> list[list[int] | None]:
    return [None if c.rows is None else [int(r) for r in c.rows] for c in report.checks]


def assert_same_report(merged: QualityReport, whole: QualityReport) -> None:
    assert _normal(merged) == _normal(whole)
    assert merged.summary() == whole.summary()
    assert _failing_rows(merged) == _failing_rows(whole)  # what quarantine would hold


def _privacy(result: Any) -> dict[str, Any]:
    data = result.report.to_dict()
    data.pop("scan_seconds")
    data.pop("generated_at")
    return data


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    base = load_settings(PROJECT)
    env = {**base.env, "CIVICFLOW_HASH_KEY": "batch-test-hash-key-0123456789"}
    return dataclasses.replace(base, var_dir=tmp_path_factory.mktemp("var"), env=env)


@pytest.fixture(scope="module")
def la311_file(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Path:
    spec = find_dataset(settings.datasets_dir, LA311)
    path = tmp_path_factory.mktemp("synth") / "la311.csv"
    synth.generate(spec, settings, ROWS, seed=13, out=path)
    types = {name: pa.string() for name in pacsv.read_csv(path).column_names}
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
    columns = {name: table[name].to_pylist() for name in table.column_names}
    for row, column, value in PLANTS:
        columns[column][row - 1] = value
    for original, copy in DUPLICATES:
        columns["SRNumber"][copy - 1] = columns["SRNumber"][original - 1]
    pacsv.write_csv(pa.table(columns), path)
    return path


@pytest.fixture(scope="module")
def la311(settings: Settings, la311_file: Path) -> tuple[DatasetSpec, Extract]:
    spec = find_dataset(settings.datasets_dir, LA311)
    return spec, extract(spec, settings, "batch-test", la311_file)


def _head(ext: Extract, rows: int) -> Extract:
    return dataclasses.replace(ext, raw=ext.raw.slice(0, rows), frame=ext.frame.iloc[:rows])


def test_the_planted_rows_fail_where_planned(la311: tuple[DatasetSpec, Extract]) -> None:
    spec, ext = la311
    report = validate(spec, ext, PROJECT / "expectations")
    failed = {(c.name, tuple(c.columns)): c for c in report.failures()}
    key = failed[("primary-key", ("sr_number",))]
    assert key.details["groups"] == 2 and [e["row"] for e in key.examples] == [2, 37, 6, ROWS - 1]
    assert ("type-error", ("created_date",)) in failed
    assert ("expect_column_values_to_be_in_set", ("status",)) in failed
    assert ("expect_column_values_to_be_between", ("cd",)) in failed
    assert not report.passed


@pytest.mark.parametrize("size", [ROWS, 1_024, 333])
def test_validation_merged_from_batches_equals_the_whole_table(
    la311: tuple[DatasetSpec, Extract], size: int
) -> None:
    spec, ext = la311
    whole = validate(spec, ext, PROJECT / "expectations")
    merged = validate_batches(spec, split_extract(ext, size), PROJECT / "expectations")
    assert_same_report(merged, whole)


@pytest.mark.parametrize("size", [1, 3])
def test_validation_of_one_row_batches_equals_the_whole_table(
    la311: tuple[DatasetSpec, Extract], size: int
) -> None:
    spec, ext = la311
    head = _head(ext, FIRST)
    whole = validate(spec, head, PROJECT / "expectations")
    assert whole.failures("critical") and whole.failures("warning")
    merged = validate_batches(spec, split_extract(head, size), PROJECT / "expectations")
    assert_same_report(merged, whole)


def test_quarantine_rows_merge_too(la311: tuple[DatasetSpec, Extract]) -> None:
    """Every failing row of every row-level check (GX lists them all then)."""
    spec, ext = la311
    spec = spec.model_copy(update={"on_bad_rows": BadRowsSpec(action="quarantine", max_share=0.5)})
    head = _head(ext, FIRST)
    whole = validate(spec, head, PROJECT / "expectations")
    assert any(c.rows is not None and len(c.rows) for c in whole.checks if c.layer == "content")
    assert_same_report(
        validate_batches(spec, split_extract(head, 7), PROJECT / "expectations"), whole
    )


def test_a_duplicate_key_split_across_two_batches_is_found(
    la311: tuple[DatasetSpec, Extract],
) -> None:
    spec, ext = la311
    plan = plan_validation(spec, PROJECT / "expectations")
    batches = split_extract(ext, ROWS // 2)
    parts = [validate_batch(plan, b) for b in batches]
    # each half alone sees no duplicate of row 6's key: its copy is in the other half
    assert [e["row"] for e in _key_check(parts[0].structure.checks).examples] == [2, 37]
    assert _key_check(parts[1].structure.checks).status == "passed"
    wanted = duplicate_rows(plan, parts)
    assert 6 in wanted[0] and ROWS - 1 in wanted[1]
    assert len(wanted[0]) + len(wanted[1]) < 10  # only rows whose key hash repeats
    fetched = [b.frame.loc[wanted[i], ["sr_number"]] for i, b in enumerate(batches)]
    key = _key_check(merge_validation(plan, parts, fetched).checks)
    assert key.status == "failed" and key.details == {"groups": 2}
    assert [e["row"] for e in key.examples] == [2, 37, 6, ROWS - 1]
    assert "2 duplicates in 4 rows" in key.message


def _key_check(checks: list[Any]) -> Any:
    return next(c for c in checks if c.name == "primary-key")


def test_compound_keys_unique_fields_and_table_expectations(
    settings: Settings, tmp_path: Path
) -> None:
    """LAX's four-column key; the councils' unique name and their row-count expectation."""
    lax = find_dataset(settings.datasets_dir, "lax_passenger_traffic")
    ext = extract(lax, settings, "batch-lax", None)
    frame = ext.frame.copy()
    key = list(lax.primary_key)
    frame.loc[frame.index[-1], key] = frame.loc[frame.index[0], key].to_numpy()
    ext = dataclasses.replace(ext, frame=frame)
    whole = validate(lax, ext, settings.expectations_dir)
    assert _key_check(whole.checks).status == "failed"
    assert_same_report(
        validate_batches(lax, split_extract(ext, 1_000), settings.expectations_dir), whole
    )

    councils = find_dataset(settings.datasets_dir, "neighborhood_councils")
    ext = extract(councils, settings, "batch-nc", None)
    frame = ext.frame.copy()
    frame.loc[frame.index[-1], "name"] = frame.loc[frame.index[0], "name"]
    ext = dataclasses.replace(ext, frame=frame)
    whole = validate(councils, ext, settings.expectations_dir)
    assert any(c.name == "unique-error" and c.failed for c in whole.checks)
    for size in (ext.rows, 25):
        assert_same_report(
            validate_batches(councils, split_extract(ext, size), settings.expectations_dir),
            whole,
        )


@pytest.mark.parametrize("size", [ROWS, 512, 1])
def test_privacy_merged_from_batches_equals_the_whole_table(
    settings: Settings, la311: tuple[DatasetSpec, Extract], size: int
) -> None:
    spec, ext = la311
    frame = ext.frame if size > 1 else ext.frame.iloc[:FIRST]
    whole = protect(spec, frame, settings)
    assert whole.report.blocked and {f.detector for f in whole.report.blocking} >= {
        "email",
        "phone",
    }
    merged = protect_batches(spec, frame_batches(frame, size), settings)
    assert _privacy(merged) == _privacy(whole)
    assert merged.report.blocked == whole.report.blocked
    assert merged.report.summary() == whole.report.summary()
    pd.testing.assert_frame_equal(merged.frame, whole.frame)


@pytest.mark.parametrize(
    "dataset,size", [("code_enforcement_cases", 1), ("parking_citations", 700)]
)
def test_privacy_rules_of_other_datasets_merge(settings: Settings, dataset: str, size: int) -> None:
    """Redaction with other columns' values, drops, a keyed hash, generalised times."""
    spec = find_dataset(settings.datasets_dir, dataset)
    frame = extract(spec, settings, f"batch-{dataset}", None).frame
    if size == 1:
        frame = frame.iloc[:60]
    whole = protect(spec, frame, settings)
    merged = protect_batches(spec, frame_batches(frame, size), settings)
    assert _privacy(merged) == _privacy(whole)
    pd.testing.assert_frame_equal(merged.frame, whole.frame)


def test_an_undeclared_coordinate_column_is_judged_on_the_whole_column(
    settings: Settings,
) -> None:
    """The one whole-column decision of the scan: a batch that alone looks like no
    coordinates (or like coordinates) does not decide for the table."""
    spec = find_dataset(settings.datasets_dir, "parking_citations")
    frame = extract(spec, settings, "batch-coords", None).frame.iloc[:400].copy()
    fine = np.round(34.0 + np.arange(len(frame)) / 7919, 7)
    for coarse_rows, expect_findings in ((slice(0, 30), True), (slice(0, 100), False)):
        values = fine.copy()
        values[coarse_rows] = np.round(values[coarse_rows], 1)  # one batch: all coarse
        frame["fine_amount"] = values
        whole = protect(spec, frame, settings)
        found = [f for f in whole.report.findings if f.column == "fine_amount"]
        assert bool(found) == expect_findings
        merged = protect_batches(spec, frame_batches(frame, 50), settings)
        assert _privacy(merged) == _privacy(whole)


def test_coordinate_shapes_add_up() -> None:
    a = CoordinateShape(present=9, fine=9, out_of_range=0, max_abs=34.1)
    b = CoordinateShape(present=1, fine=0, out_of_range=0, max_abs=0.5)
    assert a.looks_like and not b.looks_like
    assert a.merge(b) == CoordinateShape(10, 9, 0, 34.1) and a.merge(b).looks_like
    assert not a.merge(CoordinateShape(1, 1, 1, 200.0)).looks_like

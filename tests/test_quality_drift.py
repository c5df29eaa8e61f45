"""Schema drift: each kind of drift under each on_schema_change setting, with its verdict.

Real extracts: the bundled MyLA311 file (2,000 rows) read by the csv source, changed the
way departments change their exports, written to CSV and extracted as a run does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from civicflow.pipeline import new_run_id
from civicflow.quality import validate
from civicflow.quality.drift import schema_drift
from civicflow.settings import Settings
from civicflow.sources import Extract, extract, get_source
from civicflow.spec import DatasetSpec, find_dataset

PROJECT = Path(__file__).resolve().parents[1]
SOURCE = PROJECT / "data/la311_service_requests/MyLA311_Service_Request_Data_2017_Subset.csv"
ROWS = 2_000
NEW_HEADER = "Council District Name"


def _base(spec: DatasetSpec) -> pa.Table:
    return get_source("csv").read(spec, SOURCE).slice(0, ROWS)


def _rename(table: pa.Table, old: str, new: str) -> pa.Table:
    """``old`` renamed ``new`` and moved last, as a re-export adding it anew would."""
    return table.drop_columns([old]).append_column(new, table[old])


def _new(t: pa.Table) -> pa.Table:
    return t.append_column(NEW_HEADER, t["CDMember"])


def _missing(t: pa.Table) -> pa.Table:
    return t.drop_columns(["MobileOS"])


def _renamed_by_name(t: pa.Table) -> pa.Table:
    # a free-text column: its values say nothing, its name does
    return _rename(t, "MobileOS", "Mobile OS")


def _renamed_by_values(t: pa.Table) -> pa.Table:
    return _rename(t, "CD", "Council")


def _retyped(t: pa.Table) -> pa.Table:
    # the export switched CreatedDate from "12/31/2017 11:59:58 PM" to ISO 8601
    parsed = pc.strptime(t["CreatedDate"], format="%m/%d/%Y %I:%M:%S %p", unit="s")
    iso = pc.strftime(parsed, format="%Y-%m-%dT%H:%M:%S")
    return t.set_column(t.column_names.index("CreatedDate"), "CreatedDate", iso)


def _dirty(t: pa.Table) -> pa.Table:
    # a few bad cells are bad rows (validation's job), not a changed column
    values = t["CD"].to_pylist()
    for i in (3, 50, 700, 1500, 1999):
        values[i] = "n/a"
    return t.set_column(t.column_names.index("CD"), "CD", pa.array(values, pa.string()))


CHANGES: dict[str, Callable[[pa.Table], pa.Table]] = {
    "none": lambda t: t,
    "new": _new,
    "missing": _missing,
    "renamed by name": _renamed_by_name,
    "renamed by values": _renamed_by_values,
    "retyped": _retyped,
    "dirty cells": _dirty,
}

# (change, setting, verdict, {kind: count}, renamed hint (field, position, why) or None)
TABLE = [
    ("none", "fail", "none", {}, None),
    ("none", "ignore_new", "none", {}, None),
    ("new", "fail", "rejected", {"new": 1}, None),
    ("new", "ignore_new", "reported", {"new": 1}, None),
    ("missing", "fail", "rejected", {"missing": 1}, None),
    ("missing", "ignore_new", "rejected", {"missing": 1}, None),
    (
        "renamed by name",
        "fail",
        "rejected",
        {"missing": 1, "new": 1},
        ("mobile_os", 33, "similar name"),
    ),
    (
        "renamed by name",
        "ignore_new",
        "rejected",
        {"missing": 1, "new": 1},
        ("mobile_os", 33, "similar name"),
    ),
    ("renamed by values", "fail", "rejected", {"missing": 1, "new": 1}, ("cd", 33, "values fit")),
    (
        "renamed by values",
        "ignore_new",
        "rejected",
        {"missing": 1, "new": 1},
        ("cd", 33, "values fit"),
    ),
    ("retyped", "fail", "rejected", {"retyped": 1}, None),
    ("retyped", "ignore_new", "rejected", {"retyped": 1}, None),
    ("dirty cells", "fail", "none", {}, None),
    ("dirty cells", "ignore_new", "none", {}, None),
]


@pytest.fixture
def la311(project: Settings) -> DatasetSpec:
    return find_dataset(project.datasets_dir, "la311_service_requests")


def run_extract(
    project: Settings, spec: DatasetSpec, change: str, tmp_path: Path
) -> tuple[DatasetSpec, Extract]:
    path = tmp_path / f"{change.replace(' ', '_')}.csv"
    pacsv.write_csv(CHANGES[change](_base(spec)), path)
    return spec, extract(spec, project, new_run_id(), source_path=path)


@pytest.mark.parametrize(("change", "setting", "verdict", "counts", "hint"), TABLE)
def test_drift_table(project, la311, tmp_path, change, setting, verdict, counts, hint) -> None:
    spec = la311.model_copy(update={"on_schema_change": setting})
    _, ext = run_extract(project, spec, change, tmp_path)
    drift = schema_drift(spec, ext.raw, ext.frame)
    assert drift.verdict() == verdict
    assert drift.rejects(spec.on_schema_change) is (verdict == "rejected")
    found = {
        kind: len(getattr(drift, kind))
        for kind in ("new", "missing", "retyped")
        if getattr(drift, kind)
    }
    assert found == counts
    if hint is None:
        assert drift.renamed == []
    else:
        assert [(r.field, r.position, r.why) for r in drift.renamed] == [hint]
        assert f"looks renamed to the column at position {hint[1]} ({hint[2]})" in drift.reason()


def test_renamed_by_name_and_values_names_both(project, la311, tmp_path) -> None:
    path = tmp_path / "created.csv"
    pacsv.write_csv(_rename(_base(la311), "CreatedDate", "Created Date"), path)
    ext = extract(la311, project, new_run_id(), source_path=path)
    drift = schema_drift(la311, ext.raw, ext.frame)
    assert [(r.field, r.position, r.why) for r in drift.renamed] == [
        ("created_date", 33, "similar name and values fit")
    ]


def test_retyped_counts_the_values_that_no_longer_parse(project, la311, tmp_path) -> None:
    spec, ext = run_extract(project, la311, "retyped", tmp_path)
    (retyped,) = schema_drift(spec, ext.raw, ext.frame).retyped
    assert (retyped.field, retyped.type) == ("created_date", "datetime")
    assert retyped.failed == retyped.present == ROWS
    assert f"{ROWS:,} of {ROWS:,} non-empty values no longer parse as datetime" in (
        schema_drift(spec, ext.raw, ext.frame).reason()
    )


def test_public_reason_never_quotes_a_new_header_or_a_value(project, la311, tmp_path) -> None:
    spec = la311.model_copy(update={"on_schema_change": "ignore_new"})
    _, ext = run_extract(project, spec, "new", tmp_path)
    drift = schema_drift(spec, ext.raw, ext.frame)
    reason = drift.reason()
    assert reason.splitlines() == [
        "schema drift reported (on_schema_change: ignore_new): 1 new",
        "  new      the column at position 34: not published",
    ]
    assert NEW_HEADER not in reason
    # the private diff names it, for the steward reading the run report
    assert f"  new      column {NEW_HEADER!r} at position 34: not published" in drift.lines()
    assert drift.to_dict()["new"] == [{"position": 34, "label": NEW_HEADER}]
    first_values = set(ext.raw[NEW_HEADER].slice(0, 50).to_pylist()) - {None}
    assert not any(v in reason for v in first_values)


def test_retyped_reason_names_fields_not_values(project, la311, tmp_path) -> None:
    spec, ext = run_extract(project, la311, "retyped", tmp_path)
    reason = schema_drift(spec, ext.raw, ext.frame).reason()
    assert reason.startswith("REJECTED: schema drift (on_schema_change: fail): 1 retyped")
    assert ext.raw["CreatedDate"][0].as_py() not in reason


def test_ignore_new_lets_validation_pass_with_a_warning(project, la311, tmp_path) -> None:
    """Structure reports the new column under both settings; only fail blocks on it."""
    for setting, passed, severity in (("fail", False, "critical"), ("ignore_new", True, "warning")):
        spec = la311.model_copy(update={"on_schema_change": setting})
        _, ext = run_extract(project, spec, "new", tmp_path)
        report = validate(spec, ext, project.expectations_dir)
        assert report.passed is passed, report.summary()
        (extra,) = [c for c in report.checks if c.name == "extra-label"]
        assert (extra.status, extra.severity) == ("failed", severity)
        # the new column is not in the typed frame, so it cannot be published
        assert list(ext.frame.columns) == [f.name for f in spec.fields]


def test_two_renames_at_once_pair_each_missing_column_with_its_own(project, la311, tmp_path):
    path = tmp_path / "two.csv"
    table = _rename(_rename(_base(la311), "MobileOS", "Mobile OS"), "CD", "Council")
    pacsv.write_csv(table, path)
    ext = extract(la311, project, new_run_id(), source_path=path)
    drift = schema_drift(la311, ext.raw, ext.frame)
    assert sorted((r.field, r.position, r.why) for r in drift.renamed) == [
        ("cd", 33, "values fit"),
        ("mobile_os", 32, "similar name"),
    ]
    lines = drift.reason().splitlines()
    assert lines[0] == "REJECTED: schema drift (on_schema_change: fail): 2 missing, 2 new"
    assert (
        "  missing  cd (source column 'CD') is not in the source; looks renamed to the column "
        "at position 33 (values fit)"
    ) in lines


def test_a_file_without_its_header_row_drifts_everywhere_but_quotes_no_data(
    project, la311, tmp_path
) -> None:
    """The first data row becomes the header: its values must stay out of the reason."""
    table = _base(la311)
    path = tmp_path / "headerless.csv"
    # distinct first-row values, so the reader accepts them as headers
    table = table.select([c for c in table.column_names if c not in ("Anonymous", "Direction")])
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(include_header=False))
    ext = extract(la311, project, new_run_id(), source_path=path)
    drift = schema_drift(la311, ext.raw, ext.frame)
    assert drift.verdict() == "rejected"
    # 31 columns came; one first-row value ("NC", a crew) happens to be a declared header,
    # whose values (crews, not council ids) no longer parse as integers
    assert (len(drift.missing), len(drift.new)) == (32, 30)
    assert [(r.field, r.failed == r.present) for r in drift.retyped] == [("nc", True)]
    reason = drift.reason()
    assert "  new      the column at position 1: not in the spec" in reason
    assert "           ... and 22 more" in reason and "           ... and 20 more" in reason
    declared = {f.source_name for f in la311.fields}  # spec text, public
    for header in set(ext.raw.column_names) - declared:
        assert repr(header) not in reason
    assert len(drift.lines()) == 1 + 32 + 1 + 30  # the private diff lists every column
    # the values still point typed fields at their columns
    hints = {r.field: r.position for r in drift.renamed if r.why == "values fit"}
    assert hints["created_date"] in range(1, 32)

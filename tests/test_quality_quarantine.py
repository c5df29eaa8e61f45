"""Bad rows quarantined: real validation of real extracts of the bundled MyLA311 file.

2,000 rows with bad cells planted the ways exports go wrong (a type error, a value
outside the suite's set, a broken pattern, a duplicated key): 0.5 % bad rows are held
back in a private file with their reasons and the rest is kept; 5 % reject the run.
"""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from civicflow.pipeline import new_run_id
from civicflow.quality import validate
from civicflow.quality.quarantine import quarantine_bad_rows, quarantine_path
from civicflow.settings import Settings
from civicflow.sources import Extract, extract, get_source
from civicflow.spec import DatasetSpec, find_dataset
from civicflow.spec.models import BadRowsSpec

PROJECT = Path(__file__).resolve().parents[1]
SOURCE = PROJECT / "data/la311_service_requests/MyLA311_Service_Request_Data_2017_Subset.csv"
ROWS = 2_000
MARK = "ZQXJ"  # in every planted value; absent from the bundled data


def _set(table: pa.Table, column: str, positions: list[int], value: str) -> pa.Table:
    values = table[column].to_pylist()
    for i in positions:
        values[i] = value
    return table.set_column(table.column_names.index(column), column, pa.array(values, pa.string()))


def plant(
    table: pa.Table, sizes: tuple[int, int, int, int]
) -> tuple[pa.Table, dict[int, set[str]]]:
    """Bad cells of four kinds in ``sizes`` rows each; the table and each bad row's reasons.

    The fourth kind copies the key of rows of the first, so both rows of a pair are bad.
    """
    rng = np.random.default_rng(10)
    picks = rng.choice(ROWS, size=sum(sizes), replace=False).tolist()
    ends = np.cumsum([0, *sizes]).tolist()
    kinds = [picks[a:b] for a, b in zip(ends, ends[1:], strict=False)]
    twins = kinds[0][: sizes[3]]
    table = _set(table, "CD", kinds[0], f"{MARK}-cd")  # not an integer
    table = _set(table, "Status", kinds[1], f"{MARK}-status")  # outside the suite's value set
    table = _set(table, "ZipCode", kinds[2], f"{MARK}1")  # pattern \d{5}
    srn = table["SRNumber"].to_pylist()
    for i, j in zip(kinds[3], twins, strict=True):
        srn[i] = srn[j]
    table = table.set_column(
        table.column_names.index("SRNumber"), "SRNumber", pa.array(srn, pa.string())
    )
    reasons: dict[int, set[str]] = {}
    for label, rows in (
        ("type-error cd", kinds[0]),
        ("expect_column_values_to_be_in_set status", kinds[1]),
        ("constraint-error pattern zip_code", kinds[2]),
        ("primary-key sr_number", kinds[3] + twins),
    ):
        for i in rows:
            reasons.setdefault(i + 1, set()).add(label)  # row numbers are 1-based
    return table, reasons


@pytest.fixture
def la311(project: Settings) -> DatasetSpec:
    spec = find_dataset(project.datasets_dir, "la311_service_requests")
    return spec.model_copy(update={"on_bad_rows": BadRowsSpec(action="quarantine", max_share=0.01)})


def run_extract(project: Settings, spec: DatasetSpec, table: pa.Table, tmp_path: Path) -> Extract:
    path = tmp_path / "la311.csv"
    pacsv.write_csv(table, path)
    return extract(spec, project, new_run_id(), source_path=path)


def base(spec: DatasetSpec) -> pa.Table:
    return get_source("csv").read(spec, SOURCE).slice(0, ROWS)


def test_half_a_percent_bad_rows_are_held_back_and_the_rest_kept(project, la311, tmp_path):
    table, planted = plant(base(la311), (3, 2, 3, 2))  # 10 rows bad of 2,000: 0.5 %
    assert len(planted) == 10
    ext = run_extract(project, la311, table, tmp_path)
    report = validate(la311, ext, project.expectations_dir)
    assert not report.passed
    held = quarantine_bad_rows(la311, ext, report, project)
    assert held is not None and held.accepted, held and held.reason
    assert held.rows == 10
    assert held.path == quarantine_path(project, la311.id, ext.run_id)
    assert held.reason == "10 of 2,000 rows quarantined (0.50%, max_share 1.00%)"

    # the good rows, with their row numbers as index, and nothing else
    assert held.frame is not None
    assert len(held.frame) == ROWS - 10
    assert set(held.frame.index).isdisjoint(planted)
    assert set(held.frame.index) | set(planted) == set(range(1, ROWS + 1))

    # the file: private, one line per bad row with its reasons and its raw source text
    assert stat.S_IMODE(held.path.stat().st_mode) == 0o600
    with held.path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["row"]) for r in rows] == sorted(planted)
    source_rows = table.to_pylist()
    for r in rows:
        n = int(r["row"])
        assert set(r["reasons"].split("; ")) == planted[n]
        expected = {k: ("" if v is None else v) for k, v in source_rows[n - 1].items()}
        assert {k: r[k] for k in table.column_names} == expected

    # the report says so, and the good rows pass validation on their own
    assert report.quarantined == 10
    assert report.summary().startswith("PASSED with 10 of 2,000 rows quarantined")
    written = json.loads(report.write(tmp_path / "report.json").read_text())
    assert written["quarantined"] == 10 and written["quarantine_path"] == str(held.path)
    assert all("rows" not in c for c in written["checks"])
    assert MARK not in report.summary() + held.reason  # public texts name no value
    assert MARK in held.path.read_text(encoding="utf-8")
    kept = held.frame.index.to_numpy() - 1
    clean = Extract(
        ext.dataset_id,
        ext.run_id,
        ext.raw_path,
        ext.sha256,
        ext.raw.take(pa.array(kept)),
        held.frame,
    )
    assert validate(la311, clean, project.expectations_dir).passed


def test_every_failing_row_is_kept_not_only_twenty_examples(project, la311, tmp_path):
    table, planted = plant(base(la311), (25, 25, 25, 25))  # more than 20 examples each
    ext = run_extract(project, la311, table, tmp_path)
    report = validate(la311, ext, project.expectations_dir)
    by_name = {(c.name, tuple(c.columns)): c for c in report.failures("critical")}
    type_error = by_name[("type-error", ("cd",))]
    in_set = by_name[("expect_column_values_to_be_in_set", ("status",))]
    assert len(type_error.examples) == 20 and type_error.rows is not None
    assert sorted(type_error.rows) == sorted(n for n, r in planted.items() if "type-error cd" in r)
    assert in_set.rows is not None and len(in_set.rows) == 25 == in_set.unexpected_count


def test_five_percent_bad_rows_reject_the_run_and_write_nothing(project, la311, tmp_path):
    table, planted = plant(base(la311), (30, 30, 20, 20))  # 100 bad rows of 2,000: 5 %
    assert len(planted) == 100
    ext = run_extract(project, la311, table, tmp_path)
    report = validate(la311, ext, project.expectations_dir)
    held = quarantine_bad_rows(la311, ext, report, project)
    assert held is not None and not held.accepted
    first = held.reason.splitlines()[0]
    assert first == (
        "REJECTED: 100 of 2,000 rows (5.00%) fail critical checks, above "
        "on_bad_rows.max_share 1.00%"
    )
    assert report.summary() in held.reason
    assert MARK not in held.reason
    assert held.frame is None and held.rows == 0 and report.quarantined == 0
    assert not quarantine_path(project, la311.id, ext.run_id).exists()


def test_reject_is_the_default(project, tmp_path):
    spec = find_dataset(project.datasets_dir, "la311_service_requests")
    assert spec.on_bad_rows.action == "reject"
    table, _ = plant(base(spec), (1, 1, 1, 1))
    ext = run_extract(project, spec, table, tmp_path)
    report = validate(spec, ext, project.expectations_dir)
    assert not report.passed
    # GX is not asked for every failing row when nothing will be quarantined
    in_set = [c for c in report.failures() if c.name == "expect_column_values_to_be_in_set"]
    assert in_set and all(c.rows is None for c in in_set)
    assert quarantine_bad_rows(spec, ext, report, project) is None
    assert not (project.var_dir / "quarantine").exists()


def test_a_missing_column_is_table_level_and_rejects(project, la311, tmp_path):
    table, _ = plant(base(la311), (1, 1, 1, 1))
    ext = run_extract(project, la311, table.drop_columns(["MobileOS"]), tmp_path)
    report = validate(la311, ext, project.expectations_dir)
    held = quarantine_bad_rows(la311, ext, report, project)
    assert held is not None and not held.accepted
    assert held.reason.splitlines()[0] == (
        "REJECTED: table-level critical check(s) failed (missing-label mobile_os); "
        "no row to quarantine"
    )
    assert not quarantine_path(project, la311.id, ext.run_id).exists()


def test_a_failed_table_expectation_rejects(project, la311, tmp_path):
    suite_path = project.expectations_dir / "la311_service_requests.json"
    suite = json.loads(suite_path.read_text())
    suite["expectations"].append(
        {
            "type": "expect_table_row_count_to_be_between",
            "kwargs": {"min_value": 5000},
            "meta": {"severity": "critical"},
        }
    )
    suite_path.write_text(json.dumps(suite))
    table, _ = plant(base(la311), (1, 1, 1, 1))
    ext = run_extract(project, la311, table, tmp_path)
    report = validate(la311, ext, project.expectations_dir)
    (count,) = [c for c in report.failures() if c.name == "expect_table_row_count_to_be_between"]
    assert count.rows is None and not count.row_level
    held = quarantine_bad_rows(la311, ext, report, project)
    assert held is not None and not held.accepted
    assert "expect_table_row_count_to_be_between" in held.reason.splitlines()[0]


def test_quarantine_file_keeps_both_when_a_source_header_is_row(project, la311, tmp_path):
    """A source column named like ours does not overwrite it."""
    spec = la311.model_copy(
        update={
            "fields": [
                f.model_copy(update={"source": "row"}) if f.name == "mobile_os" else f
                for f in la311.fields
            ]
        }
    )
    table, planted = plant(base(spec), (1, 1, 1, 1))
    table = table.rename_columns(["row" if c == "MobileOS" else c for c in table.column_names])
    ext = run_extract(project, spec, table, tmp_path)
    held = quarantine_bad_rows(spec, ext, validate(spec, ext, project.expectations_dir), project)
    assert held is not None and held.accepted and held.path is not None
    header = held.path.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:2] == ['"civicflow_row"', '"civicflow_reasons"'] and '"row"' in header
    assert held.rows == len(planted)


def test_an_incremental_extract_keeps_source_row_numbers(project, la311, tmp_path):
    """Only some rows extracted (newer than a watermark): numbers and raw text still match."""
    import dataclasses

    table, planted = plant(base(la311), (4, 3, 3, 0))
    full = run_extract(project, la311, table, tmp_path)
    positions = np.flatnonzero(np.arange(ROWS) % 3 != 1)  # as newer_than leaves them
    ext = dataclasses.replace(
        full, raw=full.raw.take(pa.array(positions)), frame=full.frame.iloc[positions]
    )
    report = validate(la311, ext, project.expectations_dir)
    held = quarantine_bad_rows(la311, ext, report, project)
    assert held is not None and held.accepted and held.path is not None
    with held.path.open(newline="", encoding="utf-8") as fh:
        rows = {int(r["row"]): r for r in csv.DictReader(fh)}
    kept = set((positions + 1).tolist())
    expected = set(planted) & kept
    assert set(rows) == expected and 0 < len(expected) < len(planted)
    for n, r in rows.items():
        assert {k: r[k] for k in ("SRNumber", "CD", "Status", "ZipCode")} == {
            k: table[k][n - 1].as_py() or "" for k in ("SRNumber", "CD", "Status", "ZipCode")
        }
        assert set(r["reasons"].split("; ")) == planted[n]
    assert held.frame is not None and set(held.frame.index) == kept - expected

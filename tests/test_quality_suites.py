"""One rule for a missing suite, one report per duplicate key.

- Every dataset has its expectation suite; without the file, ``validate`` refuses with a
  SpecError naming the dataset and the expected file (whether the spec names the suite or
  relies on the default), and the run ends ``failed`` with that reason.
- A duplicate key is one failure (primary-key): not also a ``unique`` constraint failure
  nor a GX uniqueness failure over the same columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from civicflow.ledger import Ledger
from civicflow.pipeline import run_dataset
from civicflow.quality import validate
from civicflow.settings import Settings
from civicflow.sources.base import Extract
from civicflow.sources.cast import cast_frame
from civicflow.spec import DatasetSpec, SpecError, load_dataset
from civicflow.spec.loader import missing_suite, require_suite, suite_file

PROJECT = Path(__file__).resolve().parents[1]
LA311 = "la311_service_requests"


def toy_spec(suite: str | None, *, unique: bool = True) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "id": "toy_keys",
            "title": "Toy keys",
            "description": "A key column and a value.",
            "department": "Testing",
            "steward": {"name": "Tester", "email": "t@example.org"},
            "license": "CC0-1.0",
            "update_frequency": "daily",
            "category": "Testing",
            "source": {"kind": "csv", "path": "toy.csv"},
            "primary_key": ["key"],
            "expectation_suite": suite,
            "fields": [
                {
                    "name": "key",
                    "type": "string",
                    "nullable": False,
                    "description": "Row key.",
                    "constraints": {"unique": True} if unique else None,
                },
                {"name": "pair_a", "type": "string", "description": "First of a pair."},
                {"name": "pair_b", "type": "string", "description": "Second of a pair."},
            ],
        }
    )


def toy_extract(spec: DatasetSpec, keys: list[str]) -> Extract:
    n = len(keys)
    raw = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "pair_a": pa.array(["a"] * n, pa.string()),
            "pair_b": pa.array([str(i) for i in range(n)], pa.string()),
        }
    )
    return Extract(spec.id, "toy-run", Path("toy.csv"), "0" * 64, raw, cast_frame(spec, raw))


def write_suite(folder: Path, name: str, expectations: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"name": name, "expectations": expectations}))
    return path


def expectation(etype: str, **kwargs: object) -> dict:
    return {"type": etype, "kwargs": kwargs, "meta": {"severity": "critical"}}


# --- a missing suite ------------------------------------------------------------------------


@pytest.mark.parametrize("named", ["toy_keys", "toy_keys_suite", None])
def test_validate_refuses_a_dataset_without_its_suite(tmp_path, named) -> None:
    spec = toy_spec(named)
    expected = tmp_path / f"{named or 'toy_keys'}.json"
    with pytest.raises(SpecError) as err:
        validate(spec, toy_extract(spec, ["1", "2"]), tmp_path)
    [problem] = err.value.problems
    assert problem.key == "expectation_suite"
    assert "dataset toy_keys has no expectation suite" in problem.message
    assert str(expected) in problem.message


def test_one_function_says_where_the_suite_is(tmp_path) -> None:
    spec = toy_spec(None)
    assert suite_file(spec, tmp_path) == tmp_path / "toy_keys.json"
    assert suite_file(toy_spec("other"), tmp_path) == tmp_path / "other.json"
    spec_path = tmp_path / "datasets" / "toy_keys.yaml"
    problem = missing_suite(spec, tmp_path, spec_path)
    assert problem is not None and problem.file == spec_path
    write_suite(
        tmp_path, "toy_keys", [expectation("expect_column_values_to_not_be_null", column="key")]
    )
    assert missing_suite(spec, tmp_path) is None
    assert require_suite(spec, tmp_path) == tmp_path / "toy_keys.json"


def test_check_points_at_the_spec_line(tmp_path) -> None:
    spec_path = PROJECT / "datasets" / f"{LA311}.yaml"
    spec = load_dataset(spec_path)
    problem = missing_suite(spec, tmp_path, spec_path)  # an empty expectations folder
    assert problem is not None and problem.file == spec_path
    line = spec_path.read_text().splitlines()[problem.line - 1]
    assert line.startswith("expectation_suite:")
    assert str(tmp_path / f"{LA311}.json") in str(problem)


def test_every_bundled_dataset_has_its_suite() -> None:
    for path in sorted((PROJECT / "datasets").glob("*.yaml")):
        spec = load_dataset(path)
        assert missing_suite(spec, PROJECT / "expectations", path) is None, spec.id


def test_a_run_without_its_suite_fails_as_a_spec_error(project) -> None:
    suite = project.expectations_dir / f"{LA311}.json"
    suite.unlink()
    with pytest.raises(SpecError, match=f"dataset {LA311} has no expectation suite"):
        run_dataset(project, LA311)
    last = Ledger(project.ledger_path).last(LA311)
    assert last is not None and last.outcome == "failed"
    assert last.reason.startswith("spec: ") and str(suite) in last.reason
    assert not project.raw_dir.exists(), "refused before any work"


# --- a duplicate key, reported once ---------------------------------------------------------


def test_duplicate_key_is_one_failure_whatever_the_suite_says(tmp_path) -> None:
    spec = toy_spec("toy_keys")  # key: primary key and a unique constraint
    write_suite(
        tmp_path,
        "toy_keys",
        [
            expectation("expect_column_values_to_be_unique", column="key"),
            expectation("expect_column_values_to_not_be_null", column="key"),
        ],
    )
    report = validate(spec, toy_extract(spec, ["1", "2", "2", "3"]), tmp_path)
    [failure] = report.failures()
    assert failure.name == "primary-key" and failure.unexpected_count == 2
    assert failure.message == "1 duplicate in 2 rows (rows 2 and 3)"
    assert not [c for c in report.checks if c.name == "unique-error"]
    ran = [c.name for c in report.checks if c.layer == "content"]
    assert ran == ["expect_column_values_to_not_be_null"]
    assert report.notes == [
        "expect_column_values_to_be_unique key: not run, the structure check covers it"
    ]


def test_uniqueness_over_other_columns_still_runs(tmp_path) -> None:
    spec = toy_spec("toy_keys", unique=False)
    write_suite(
        tmp_path,
        "toy_keys",
        [
            expectation("expect_column_values_to_be_unique", column="pair_a"),
            expectation("expect_compound_columns_to_be_unique", column_list=["pair_a", "pair_b"]),
        ],
    )
    report = validate(spec, toy_extract(spec, ["1", "2", "3"]), tmp_path)
    by_name = {c.name: c for c in report.checks if c.layer == "content"}
    assert by_name["expect_column_values_to_be_unique"].failed  # pair_a is all "a"
    assert by_name["expect_compound_columns_to_be_unique"].success
    assert not report.notes


def test_composite_key_duplicate_is_one_failure_on_the_real_lax_data(tmp_path) -> None:
    from civicflow.sources import extract

    spec = load_dataset(PROJECT / "datasets" / "lax_passenger_traffic.yaml")
    # the suite as a steward might write it: uniqueness over the key, again
    suite = json.loads((PROJECT / "expectations" / f"{spec.id}.json").read_text())
    key = list(spec.primary_key)
    suite["expectations"].append(
        expectation("expect_compound_columns_to_be_unique", column_list=key[::-1])
    )
    (tmp_path / f"{spec.id}.json").write_text(json.dumps(suite))
    settings = Settings(project_dir=PROJECT, var_dir=tmp_path / "var")
    ext = extract(spec, settings, "lax-dup")
    raw = ext.raw.take(pa.array([*range(ext.rows), 0]))  # the first row again, at the end
    dup = Extract(spec.id, "lax-dup", ext.raw_path, ext.sha256, raw, cast_frame(spec, raw))
    report = validate(spec, dup, tmp_path)
    assert [c.name for c in report.failures("critical")] == ["primary-key"]
    assert f"rows 1 and {ext.rows + 1}" in report.summary()
    [note] = report.notes
    assert note.startswith("expect_compound_columns_to_be_unique ")
